//! Defaults: the embedded `config/default.toml`, `REVKA_HOME`, paths, `load`, and printing.

use std::collections::BTreeSet;
use std::fs;
use std::path::PathBuf;

use super::*;
use crate::config::{
    Config, DEFAULT_TOML, MAX_TOOL_ITERATIONS_ENV, McpServerConfig, OnFull, RuntimeConfig,
    Transport, load, process_env, revka_home_with,
};

/// `config/default.toml` with every `# key = value` / `# [table]` line uncommented.
fn uncommented_defaults() -> String {
    DEFAULT_TOML
        .lines()
        .map(|line| match line.strip_prefix("# ") {
            Some(rest) if rest.starts_with('[') || is_assignment(rest) => rest,
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `snake_key = …`.
fn is_assignment(line: &str) -> bool {
    line.split_once(" = ").is_some_and(|(key, _)| {
        !key.is_empty() && key.chars().all(|c| c.is_ascii_lowercase() || c == '_')
    })
}

/// Every leaf key path of a TOML document.
fn leaf_keys(text: &str) -> BTreeSet<String> {
    fn walk(prefix: &str, table: &toml::Table, out: &mut BTreeSet<String>) {
        for (key, value) in table {
            let path = if prefix.is_empty() {
                key.clone()
            } else {
                format!("{prefix}.{key}")
            };
            match value {
                toml::Value::Table(t) => walk(&path, t, out),
                _ => {
                    out.insert(path);
                }
            }
        }
    }
    let mut out = BTreeSet::new();
    walk("", &toml::from_str(text).expect("valid TOML"), &mut out);
    out
}

#[test]
fn the_embedded_default_config_is_the_defaults() {
    let loaded = ok(DEFAULT_TOML);
    assert_eq!(
        loaded.config,
        Config::default_in(Path::new("/home/u/.revka"))
    );
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);

    // With the real environment, it is `Config::default()` (bar the timeout override).
    let env = |name: &str| (name != "REVKA_GATEWAY_TIMEOUT_SECS").then(|| process_env(name))?;
    assert_eq!(
        parse_with(DEFAULT_TOML, &env).unwrap().config,
        Config::default()
    );
}

#[test]
fn the_default_config_documents_every_key_at_its_default() {
    let text = uncommented_defaults();
    let loaded = ok(&text);
    assert_eq!(
        loaded.config,
        Config::default_in(Path::new("/home/u/.revka"))
    );
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let documented = leaf_keys(&text);
    let all = leaf_keys(&Config::default().to_toml());
    assert_eq!(documented, all, "config/default.toml must show every key");
}

#[test]
fn the_examples_in_the_default_config_are_valid() {
    let text: String = uncommented_defaults()
        .lines()
        .filter(|line| !line.contains("servers_file"))
        .map(|line| line.strip_prefix("## ").unwrap_or(line))
        .collect::<Vec<_>>()
        .join("\n");
    let env = env_of(&[
        ("HOME", "/home/u"),
        ("GITHUB_TOKEN", "g"),
        ("REMOTE_TOOLS_TOKEN", "r"),
    ]);
    let loaded = parse_with(&text, &env).unwrap_or_else(|e| panic!("{e}"));
    // `[mcp] enabled` is still at its default.
    assert_eq!(
        loaded.warnings,
        ["mcp.enabled is false: none of the 3 configured MCP server(s) will connect"]
    );
    let names: Vec<&str> = loaded
        .config
        .mcp
        .servers
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(names, ["filesystem", "issues", "remote-tools"]);
    assert_eq!(
        loaded.config.mcp.servers[2].headers["Authorization"],
        "Bearer r"
    );
}

#[test]
fn documented_defaults() {
    let c = Config::default_in(Path::new("/r"));
    let numbers: &[(&str, u64, u64)] = &[
        (
            "mcp.handshake_timeout_secs",
            c.mcp.handshake_timeout_secs,
            60,
        ),
        (
            "sessions.idle_timeout_secs",
            c.sessions.idle_timeout_secs,
            1800,
        ),
        (
            "sessions.max_sessions",
            c.sessions.max_sessions.into(),
            1024,
        ),
        ("gateway.port", c.gateway.port.into(), 0),
        ("mcp_server.port", c.mcp_server.port.into(), 0),
        (
            "gateway.request_timeout_secs",
            c.gateway.request_timeout_secs,
            30,
        ),
        (
            "operator.max_tool_iterations",
            c.operator.max_tool_iterations.into(),
            80,
        ),
        (
            "operator.tool_timeout_secs",
            c.operator.tool_timeout_secs,
            600,
        ),
        (
            "session_manager.startup_timeout_secs",
            c.session_manager.startup_timeout_secs,
            15,
        ),
        (
            "session_manager.liveness_interval_secs",
            c.session_manager.liveness_interval_secs,
            10,
        ),
        (
            "session_manager.liveness_failures",
            c.session_manager.liveness_failures.into(),
            3,
        ),
        (
            "breaker.failure_threshold",
            c.session_manager.breaker.failure_threshold.into(),
            3,
        ),
        (
            "breaker.recovery_timeout_secs",
            c.session_manager.breaker.recovery_timeout_secs,
            10,
        ),
        (
            "breaker.max_recovery_timeout_secs",
            c.session_manager.breaker.max_recovery_timeout_secs,
            300,
        ),
        (
            "breaker.half_open_max_calls",
            c.session_manager.breaker.half_open_max_calls.into(),
            1,
        ),
        (
            "breaker.probe_timeout_secs",
            c.session_manager.breaker.probe_timeout_secs,
            10,
        ),
        (
            "retry_queue.capacity",
            c.session_manager.retry_queue.capacity.into(),
            1000,
        ),
        (
            "retry_queue.max_retries",
            c.session_manager.retry_queue.max_retries.into(),
            3,
        ),
        (
            "retry_queue.backoff_min_secs",
            c.session_manager.retry_queue.backoff_min_secs,
            2,
        ),
        (
            "retry_queue.backoff_max_secs",
            c.session_manager.retry_queue.backoff_max_secs,
            30,
        ),
        (
            "retry_queue.attempt_timeout_secs",
            c.session_manager.retry_queue.attempt_timeout_secs,
            30,
        ),
        (
            "retry_queue.concurrency",
            c.session_manager.retry_queue.concurrency.into(),
            4,
        ),
        (
            "retry_queue.dead_letter_capacity",
            c.session_manager.retry_queue.dead_letter_capacity.into(),
            1000,
        ),
        (
            "supervisor.max_restarts",
            c.supervisor.max_restarts.into(),
            5,
        ),
        ("supervisor.window_secs", c.supervisor.window_secs, 60),
        (
            "supervisor.backoff_min_ms",
            c.supervisor.backoff_min_ms,
            100,
        ),
        (
            "supervisor.backoff_max_ms",
            c.supervisor.backoff_max_ms,
            30_000,
        ),
        (
            "supervisor.reset_after_secs",
            c.supervisor.reset_after_secs,
            300,
        ),
        (
            "supervisor.shutdown_timeout_ms",
            c.supervisor.shutdown_timeout_ms,
            5000,
        ),
        ("supervisor.intensity", c.supervisor.intensity.into(), 30),
        (
            "supervisor.intensity_period_secs",
            c.supervisor.intensity_period_secs,
            60,
        ),
        (
            "supervisor.shutdown_grace_secs",
            c.supervisor.shutdown_grace_secs,
            30,
        ),
    ];
    for (key, got, want) in numbers {
        assert_eq!(got, want, "{key}");
    }
    let flags = [
        ("mcp.enabled", c.mcp.enabled, false),
        ("mcp.deferred_loading", c.mcp.deferred_loading, true),
        ("gateway.enabled", c.gateway.enabled, true),
        (
            "gateway.allow_public_bind",
            c.gateway.allow_public_bind,
            false,
        ),
        (
            "mcp_server.allow_public_bind",
            c.mcp_server.allow_public_bind,
            false,
        ),
        ("mcp_server.require_token", c.mcp_server.require_token, true),
        ("operator.enabled", c.operator.enabled, true),
        ("session_manager.enabled", c.session_manager.enabled, false),
    ];
    for (key, got, want) in flags {
        assert_eq!(got, want, "{key}");
    }
    assert_eq!(c.gateway.host, "127.0.0.1");
    assert_eq!(c.mcp_server.host, "127.0.0.1");
    assert_eq!(c.operator.python, "python3");
    assert_eq!(c.session_manager.retry_queue.on_full, OnFull::Reject);
    assert!(c.mcp.roots.is_empty() && c.mcp.servers.is_empty() && c.mcp.servers_file.is_none());
    let server = McpServerConfig::default();
    assert_eq!(
        (
            server.transport.known().unwrap(),
            server.tool_timeout_secs,
            server.auto_connect
        ),
        (Transport::Stdio, 180, true)
    );
}

#[test]
fn revka_home_comes_from_the_environment() {
    let table: &[(&[(&str, &str)], &str)] = &[
        (&[("HOME", "/home/u")], "/home/u/.revka"),
        (
            &[("HOME", "/home/u"), ("REVKA_HOME", "/srv/revka")],
            "/srv/revka",
        ),
        (
            &[("HOME", "/home/u"), ("REVKA_HOME", "~/alt")],
            "/home/u/alt",
        ),
        (&[("HOME", "/home/u"), ("REVKA_HOME", "")], "/home/u/.revka"),
        (&[], ".revka"),
    ];
    for (pairs, want) in table {
        assert_eq!(
            revka_home_with(&env_of(pairs)),
            PathBuf::from(want),
            "{pairs:?}"
        );
    }
}

#[test]
fn home_relative_defaults_follow_revka_home() {
    let env = env_of(&[("HOME", "/home/u"), ("REVKA_HOME", "/srv/revka")]);
    let c = parse_with("", &env).unwrap().config;
    assert_eq!(
        c.operator.mcp_path,
        Path::new("/srv/revka/operator_mcp/run_operator_mcp.py")
    );
    assert_eq!(
        c.session_manager.command,
        [
            "node",
            "/srv/revka/operator_mcp/session-manager/session-manager.js"
        ]
    );
    assert_eq!(
        c.session_manager.socket_path,
        Path::new("/srv/revka/operator_mcp/session-manager.sock")
    );
    assert_eq!(c, Config::default_in(Path::new("/srv/revka")));
    // A key the file sets is kept.
    let c = parse_with("[operator]\nmcp_path = \"/opt/op.py\"\n", &env)
        .unwrap()
        .config;
    assert_eq!(c.operator.mcp_path, Path::new("/opt/op.py"));
}

#[test]
fn paths_expand_tilde_and_resolve_against_the_config_dir() {
    let text = "[mcp]\nroots = [\"~/code\", \"rel/dir\", \"/abs\"]\n\
                [operator]\nmcp_path = \"~/op/run.py\"\n\
                [session_manager]\ncommand = [\"~/bin/node\", \"~/sm.js\", \"--x=~/no\"]\n\
                socket_path = \"sm.sock\"\n\
                [[mcp.servers]]\nname = \"a\"\ncommand = \"x\"\nroots = [\"~\"]\n";
    let c = ok(text).config;
    let roots: Vec<&Path> = c.mcp.roots.iter().map(PathBuf::as_path).collect();
    assert_eq!(
        roots,
        [
            Path::new("/home/u/code"),
            Path::new("/home/u/.revka/rel/dir"),
            Path::new("/abs")
        ]
    );
    assert_eq!(c.operator.mcp_path, Path::new("/home/u/op/run.py"));
    assert_eq!(
        c.session_manager.command,
        ["/home/u/bin/node", "/home/u/sm.js", "--x=~/no"]
    );
    assert_eq!(
        c.session_manager.socket_path,
        Path::new("/home/u/.revka/sm.sock")
    );
    assert_eq!(c.mcp.servers[0].roots, Some(vec![PathBuf::from("/home/u")]));
    assert_eq!(
        c.mcp.servers[0].effective_roots(&c.mcp),
        [PathBuf::from("/home/u")]
    );

    let e = parse_with("[operator]\nmcp_path = \"~/op.py\"\n", &env_of(&[])).unwrap_err();
    assert_eq!(
        e.to_string(),
        "/home/u/.revka/config.toml:2:12: operator.mcp_path: cannot expand `~` in ~/op.py: HOME \
         is not set"
    );
}

#[test]
fn load_uses_revka_home_or_the_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().to_str().unwrap().to_owned();
    let env = env_of(&[("HOME", "/home/u"), ("REVKA_HOME", &home)]);
    // No file: the defaults, no source.
    let loaded = load(None, &env).unwrap();
    assert_eq!(loaded.source, None);
    assert_eq!(loaded.config, Config::default_in(dir.path()));
    assert!(loaded.warnings.is_empty());
    // A file: it is used.
    let path = dir.path().join("config.toml");
    fs::write(&path, "[gateway]\nport = 8787\n").unwrap();
    let loaded = load(None, &env).unwrap();
    assert_eq!(loaded.source.as_deref(), Some(path.as_path()));
    assert_eq!(loaded.config.gateway.port, 8787);
    // An explicit path wins.
    let other = dir.path().join("other.toml");
    fs::write(&other, "[gateway]\nport = 9000\n").unwrap();
    assert_eq!(load(Some(&other), &env).unwrap().config.gateway.port, 9000);
}

#[test]
fn operator_processes_get_max_tool_iterations_in_their_environment() {
    let env = env_of(&[("HOME", "/home/u"), ("REVKA_HOME", "/srv/revka")]);
    let c = parse_with("[operator]\nmax_tool_iterations = 12\n", &env)
        .unwrap()
        .config;
    assert_eq!(
        c.operator.process_env(Path::new("/srv/revka")),
        [
            ("REVKA_HOME".to_owned(), "/srv/revka".to_owned()),
            (MAX_TOOL_ITERATIONS_ENV.to_owned(), "12".to_owned()),
        ]
    );
    assert_eq!(
        MAX_TOOL_ITERATIONS_ENV,
        "REVKA_OPERATOR_MAX_TOOL_ITERATIONS"
    );
    let default = Config::default_in(Path::new("/h")).operator;
    assert_eq!(default.process_env(Path::new("/h"))[1].1, "80");
}

#[test]
fn runtime_workers_default_to_half_the_cpus() {
    let auto = RuntimeConfig::default();
    assert_eq!(auto.worker_threads, 0);
    let picks: Vec<usize> = [0, 1, 2, 3, 4, 8, 64]
        .into_iter()
        .map(|cpus| auto.worker_threads(cpus))
        .collect();
    assert_eq!(picks, [1, 1, 1, 2, 2, 4, 32]);
    let fixed = RuntimeConfig { worker_threads: 3 };
    assert_eq!(fixed.worker_threads(64), 3);
}

/// `require_token = false` on a loopback bind is accepted, with a warning that says what it
/// means; a fixed port and `localhost` are kept as given.
#[test]
fn an_mcp_endpoint_without_tokens_is_loopback_only_and_warned_about() {
    let loaded = ok("[mcp_server]\nhost = \"localhost\"\nport = 8765\nrequire_token = false\n");
    assert_eq!(
        loaded.warnings,
        [
            "mcp_server.require_token = false: any local process can open a session on /mcp \
             without a token and call every tool, as with a stdio server"
        ]
    );
    let endpoint = &loaded.config.mcp_server;
    assert_eq!(
        endpoint.bind_addr().unwrap(),
        "127.0.0.1:8765".parse().unwrap()
    );
    assert_eq!(
        ok("[mcp_server]\nhost = \"[::1]\"\n")
            .config
            .mcp_server
            .bind_addr()
            .unwrap(),
        "[::1]:0".parse().unwrap()
    );
    let public = ok("[mcp_server]\nhost = \"0.0.0.0\"\nallow_public_bind = true\n");
    assert_eq!(
        public.warnings,
        [
            "mcp_server.host: binding the non-loopback address \"0.0.0.0\" (allow_public_bind = true)"
        ]
    );
}
