//! `[supervisor]` and `restart` overrides, converted into `revka_actors::supervisor` policies.

use std::time::Duration;

use revka_actors::supervisor::{Backoff, Intensity, RestartPolicy, RestartType, Shutdown};
use revka_mcp::spec::{PingPolicy, ServerSpec};

use super::*;
use crate::config::{DaemonPlan, server_spec};
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

/// The liveness probe: `[supervisor]` sets every server's, a server's `restart` table overrides
/// it key by key, `0` turns it off, and the daemon's spec carries it (a one-off probe's not).
#[test]
fn ping_keys_set_each_servers_liveness_probe() {
    let secs = Duration::from_secs;
    let defaults = SupervisorConfig::default();
    assert_eq!(defaults.ping(), PingPolicy::standard());
    assert_eq!(
        (defaults.ping_interval_secs, defaults.ping_failures),
        (30, 3)
    );

    let text = "[mcp]\nenabled = true\n[supervisor]\nping_interval_secs = 12\nping_failures = 5\n\
                [[mcp.servers]]\nname = \"plain\"\ncommand = \"x\"\n\
                [[mcp.servers]]\nname = \"slow\"\ncommand = \"x\"\n\
                restart = { ping_interval_secs = 120 }\n\
                [[mcp.servers]]\nname = \"quiet\"\ncommand = \"x\"\n\
                restart = { ping_interval_secs = 0, max_restarts = 9 }\n\
                [[mcp.servers]]\nname = \"strict\"\ncommand = \"x\"\n\
                restart = { ping_failures = 1 }\n";
    let config = ok(text).config;
    let ping = |i: usize| config.mcp.servers[i].ping(&config.supervisor);
    let policy = |interval, failures| PingPolicy { interval, failures };
    assert_eq!(config.supervisor.ping(), policy(secs(12), 5));
    assert_eq!(ping(0), policy(secs(12), 5));
    assert_eq!(ping(1), policy(secs(120), 5));
    assert_eq!(ping(2), policy(secs(0), 5));
    assert!(ping(2).is_off());
    assert_eq!(
        config.mcp.servers[2]
            .policy(&config.supervisor)
            .max_restarts,
        9
    );
    assert_eq!(ping(3), policy(secs(12), 1));

    // The daemon runs the probe; a one-off handshake does not.
    let server = &config.mcp.servers[1];
    let plan = DaemonPlan::new(&config, Path::new("/home/u/.revka"));
    let supervised = &plan.mcp.servers[1].as_ref().unwrap().spec;
    assert_eq!(supervised.ping, policy(secs(120), 5));
    assert_eq!(
        server_spec(server, &config.mcp).unwrap().ping,
        PingPolicy::OFF
    );
    assert_eq!(
        ServerSpec {
            ping: PingPolicy::OFF,
            ..supervised.clone()
        },
        server_spec(server, &config.mcp).unwrap()
    );
}

/// Out-of-range ping keys are precise errors: in `[supervisor]` they fail the file, in a
/// server's table that server only; the session manager has its own probe.
#[test]
fn ping_keys_out_of_range_are_precise_errors() {
    for (text, want) in [
        (
            "[supervisor]\nping_interval_secs = 3601\n",
            "supervisor.ping_interval_secs: must be at most 3600 (0 turns the probe off)",
        ),
        (
            "[supervisor]\nping_failures = 0\n",
            "supervisor.ping_failures: must be at least 1 (ping_interval_secs = 0 turns the \
             probe off)",
        ),
        (
            "[supervisor]\nping_failures = 101\n",
            "supervisor.ping_failures: must be at most 100",
        ),
        (
            "[[mcp.servers]]\nname = \"s\"\ncommand = \"x\"\nrestart = { ping_failures = 0 }\n",
            "mcp.servers[0].restart.ping_failures: must be at least 1 (ping_interval_secs = 0 \
             turns the probe off)",
        ),
        (
            "[[mcp.servers]]\nname = \"s\"\ncommand = \"x\"\n\
             restart = { ping_interval_secs = 86400 }\n",
            "mcp.servers[0].restart.ping_interval_secs: must be at most 3600 (0 turns the \
             probe off)",
        ),
        (
            "[session_manager.restart]\nping_interval_secs = 5\n",
            "session_manager.restart.ping_interval_secs: applies to MCP servers only; the \
             session manager's probe is session_manager.liveness_interval_secs and \
             liveness_failures",
        ),
        ("[supervisor]\nping_interval_secs = -1\n", "invalid value"),
    ] {
        let got = err(text);
        assert!(got.contains(want), "{text}\n got: {got}\nwant: {want}");
    }
    // The bounds themselves are fine.
    let config = ok("[supervisor]\nping_interval_secs = 3600\nping_failures = 100\n").config;
    assert_eq!(config.supervisor.ping().interval, Duration::from_secs(3600));
    assert!(
        ok("[supervisor]\nping_interval_secs = 0\n")
            .config
            .supervisor
            .ping()
            .is_off()
    );
}
