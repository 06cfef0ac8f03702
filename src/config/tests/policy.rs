//! `[supervisor]` and `restart` overrides, converted into `revka_actors::supervisor` policies.

use std::time::Duration;

use revka_actors::supervisor::{Backoff, Intensity, RestartPolicy, RestartType, Shutdown};

use super::*;
use crate::config::{RestartOverride, SupervisorConfig};

#[test]
fn supervisor_defaults_are_the_standard_policy_and_intensity() {
    let sup = SupervisorConfig::default();
    assert_eq!(sup.policy(), RestartPolicy::standard());
    assert_eq!(sup.intensity(), Intensity::default());
    assert_eq!(sup.shutdown_grace(), Duration::from_secs(30));
}

#[test]
fn supervisor_keys_convert_into_the_policy() {
    let text = "[supervisor]\nrestart = \"transient\"\nmax_restarts = 9\nwindow_secs = 120\n\
                backoff_min_ms = 250\nbackoff_max_ms = 8000\nreset_after_secs = 45\n\
                shutdown_timeout_ms = 1500\nintensity = 12\nintensity_period_secs = 20\n\
                shutdown_grace_secs = 7\n";
    let sup = ok(text).config.supervisor;
    assert_eq!(
        sup.policy(),
        RestartPolicy {
            restart: RestartType::Transient,
            max_restarts: 9,
            window: Duration::from_secs(120),
            backoff: Backoff {
                min: Duration::from_millis(250),
                max: Duration::from_secs(8),
                reset_after: Duration::from_secs(45),
            },
            shutdown: Shutdown::Timeout(Duration::from_millis(1500)),
        }
    );
    assert_eq!(
        sup.intensity(),
        Intensity {
            max_restarts: 12,
            period: Duration::from_secs(20)
        }
    );
    assert_eq!(sup.shutdown_grace(), Duration::from_secs(7));
}

#[test]
fn overrides_replace_only_the_keys_they_set() {
    let base = RestartPolicy::standard();
    let brutal = base.with_shutdown(Shutdown::BrutalKill);
    let ms = Duration::from_millis;
    let table: Vec<(RestartOverride, RestartPolicy, RestartPolicy)> = vec![
        (RestartOverride::default(), base, base),
        (
            RestartOverride {
                restart: Some(RestartType::Temporary),
                ..Default::default()
            },
            base,
            base.with_restart(RestartType::Temporary),
        ),
        (
            RestartOverride {
                max_restarts: Some(1),
                window_secs: Some(5),
                ..Default::default()
            },
            base,
            RestartPolicy {
                max_restarts: 1,
                window: Duration::from_secs(5),
                ..base
            },
        ),
        (
            RestartOverride {
                backoff_min_ms: Some(10),
                backoff_max_ms: Some(20),
                reset_after_secs: Some(1),
                ..Default::default()
            },
            base,
            RestartPolicy {
                backoff: Backoff {
                    min: ms(10),
                    max: ms(20),
                    reset_after: Duration::from_secs(1),
                },
                ..base
            },
        ),
        (
            RestartOverride {
                shutdown_timeout_ms: Some(900),
                ..Default::default()
            },
            base,
            base.with_shutdown(Shutdown::Timeout(ms(900))),
        ),
        (
            RestartOverride {
                brutal_kill: Some(true),
                ..Default::default()
            },
            base,
            brutal,
        ),
        // Back from a brutal kill: the given timeout, else the standard 5 s.
        (
            RestartOverride {
                brutal_kill: Some(false),
                ..Default::default()
            },
            brutal,
            base,
        ),
        (
            RestartOverride {
                shutdown_timeout_ms: Some(700),
                ..Default::default()
            },
            brutal,
            base.with_shutdown(Shutdown::Timeout(ms(700))),
        ),
        // An untouched brutal kill stays one.
        (
            RestartOverride {
                max_restarts: Some(2),
                ..Default::default()
            },
            brutal,
            RestartPolicy {
                max_restarts: 2,
                ..brutal
            },
        ),
    ];
    for (ov, from, want) in table {
        assert_eq!(ov.apply(from), want, "{ov:?} over {from:?}");
    }
}

#[test]
fn servers_and_the_session_manager_get_their_overrides() {
    let text = "[mcp]\nenabled = true\n[supervisor]\nmax_restarts = 4\n\
                [[mcp.servers]]\nname = \"plain\"\ncommand = \"x\"\n\
                [[mcp.servers]]\nname = \"flaky\"\ncommand = \"x\"\n\
                restart = { restart = \"transient\", max_restarts = 20, brutal_kill = true }\n\
                [session_manager.restart]\nshutdown_timeout_ms = 10000\n";
    let config = ok(text).config;
    let base = config.supervisor.policy();
    assert_eq!(base.max_restarts, 4);
    assert_eq!(config.mcp.servers[0].policy(&config.supervisor), base);
    assert_eq!(
        config.mcp.servers[1].policy(&config.supervisor),
        RestartPolicy {
            restart: RestartType::Transient,
            max_restarts: 20,
            shutdown: Shutdown::BrutalKill,
            ..base
        }
    );
    assert_eq!(
        config.session_manager.policy(&config.supervisor),
        base.with_shutdown(Shutdown::Timeout(Duration::from_secs(10)))
    );
}
