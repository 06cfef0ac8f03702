//! Every kind of config error, checked by its exact text: file, `line:column`, key path, and
//! what was expected.

use super::*;

/// `(config text, the error's exact Display)`.
const CASES: &[(&str, &str)] = &[
    // Types and shapes (serde), positioned at the offending value.
    (
        "# a comment\n[supervisor]\nmax_restarts = \"five\"\n",
        "/home/u/.revka/config.toml:3:16: supervisor.max_restarts: invalid type: string \"five\", expected u32",
    ),
    (
        "[gateway]\nport = 70000\n",
        "/home/u/.revka/config.toml:2:8: gateway.port: invalid value: integer `70000`, expected u16",
    ),
    (
        "mcp = 1\n",
        "/home/u/.revka/config.toml:1:7: mcp: invalid type: integer `1`, expected an [mcp] table",
    ),
    (
        "[[mcp.servers]]\ncommand = \"x\"\n",
        "/home/u/.revka/config.toml:1:1: mcp.servers[0]: missing field `name`",
    ),
    (
        "[[mcp.servers]]\nname = \"x\"\ntransport = \"tcp\"\n",
        "/home/u/.revka/config.toml:3:13: mcp.servers[0].transport: unknown transport; expected one of \"stdio\", \"http\", \"sse\", \"url\"",
    ),
    (
        "[session_manager.retry_queue]\non_full = \"drop\"\n",
        "/home/u/.revka/config.toml:2:11: session_manager.retry_queue.on_full: unknown variant `drop`, expected `reject` or `dead_letter_oldest`",
    ),
    (
        "[runtime]\nworker_threads = -1\n",
        "/home/u/.revka/config.toml:2:18: runtime.worker_threads: invalid value: integer `-1`, expected u32",
    ),
    (
        "[runtime]\nworker_threads = 1000\n",
        "/home/u/.revka/config.toml:2:18: runtime.worker_threads: must be at most 256 (0 picks half the CPUs)",
    ),
    // [agents]
    (
        "[agents]\nmax_fallback_agents = 0\n",
        "/home/u/.revka/config.toml:2:23: agents.max_fallback_agents: must be between 1 and 1024",
    ),
    (
        "[agents]\ncodex_approvals = \"ask\"\n",
        "/home/u/.revka/config.toml:2:19: agents.codex_approvals: unknown policy \"ask\"; expected one of \"deny\", \"sandboxed\", \"accept\"",
    ),
    (
        "[agents]\nmax_cost_usd_per_session = -1.5\n",
        "/home/u/.revka/config.toml:2:28: agents.max_cost_usd_per_session: must be a finite number ≥ 0 (0 = no limit), not -1.5",
    ),
    (
        "[agents]\nclaude_command = []\n",
        "/home/u/.revka/config.toml:2:18: agents.claude_command: must name a program (e.g. [\"claude\"])",
    ),
    (
        "[agents]\nfallback = \"yes\"\n",
        "/home/u/.revka/config.toml:2:12: agents.fallback: invalid type: string \"yes\", expected a boolean",
    ),
    (
        "[agents]\nmax_tokens_per_session = -3\n",
        "/home/u/.revka/config.toml:2:26: agents.max_tokens_per_session: invalid value: integer `-3`, expected u64",
    ),
    // TOML syntax.
    (
        "[gateway\nport = 1\n",
        "/home/u/.revka/config.toml:1:9: unclosed table, expected `]`",
    ),
    (
        "[mcp]\nenabled = true\n[mcp]\n",
        "/home/u/.revka/config.toml:3:2: duplicate key `mcp`",
    ),
    // Servers.
    (
        "[[mcp.servers]]\nname = \"fs\"\n",
        "/home/u/.revka/config.toml:1:1: mcp.servers[0].command: required for transport \"stdio\"",
    ),
    (
        "[[mcp.servers]]\nname = \"r\"\ntransport = \"sse\"\n",
        "/home/u/.revka/config.toml:1:1: mcp.servers[0].url: required for transport \"sse\"",
    ),
    (
        "[[mcp.servers]]\nname = \"git__hub\"\ncommand = \"x\"\n",
        "/home/u/.revka/config.toml:2:8: mcp.servers[0].name: invalid server name \"git__hub\": `__` is reserved as the separator in tool names (<server>__<tool>)",
    ),
    (
        "[[mcp.servers]]\nname = \"my server\"\ncommand = \"x\"\n",
        "/home/u/.revka/config.toml:2:8: mcp.servers[0].name: invalid server name \"my server\": ' ' is not allowed (use ASCII letters, digits, `_`, `-` and `.`)",
    ),
    (
        "[[mcp.servers]]\nname = \"\"\ncommand = \"x\"\n",
        "/home/u/.revka/config.toml:2:8: mcp.servers[0].name: must not be empty",
    ),
    (
        "[[mcp.servers]]\nname = \"fs\"\ncommand = \"a\"\n[[mcp.servers]]\nname = \"fs\"\ncommand = \"b\"\n",
        "/home/u/.revka/config.toml:5:8: mcp.servers[1].name: duplicate server name \"fs\" (first defined at mcp.servers[0].name)",
    ),
    (
        "[[mcp.servers]]\nname = \"r\"\ntransport = \"http\"\nurl = \"https://example.com/mcp\"\nheaders = { \"X-Token\" = \"a\\nb\" }\n",
        "/home/u/.revka/config.toml:5:25: mcp.servers[0].headers.X-Token: invalid HTTP header value: only visible ASCII, spaces and tabs are allowed (no CR/LF)",
    ),
    (
        "[[mcp.servers]]\nname = \"r\"\ntransport = \"http\"\nurl = \"https://example.com/mcp\"\nheaders = { \"X Token\" = \"v\" }\n",
        "/home/u/.revka/config.toml:5:25: mcp.servers[0].headers.\"X Token\": invalid HTTP header name \"X Token\"",
    ),
    (
        "[[mcp.servers]]\nname = \"r\"\ntransport = \"http\"\nurl = \"ftp://example.com\"\n",
        "/home/u/.revka/config.toml:4:7: mcp.servers[0].url: invalid URL \"ftp://example.com\": scheme \"ftp\" is not http or https",
    ),
    (
        "[[mcp.servers]]\nname = \"r\"\ntransport = \"url\"\nurl = \"https:///mcp\"\n",
        "/home/u/.revka/config.toml:4:7: mcp.servers[0].url: invalid URL \"https:///mcp\": no host",
    ),
    (
        "[[mcp.servers]]\nname = \"fs\"\ncommand = \"x\"\ntool_timeout_secs = 0\n",
        "/home/u/.revka/config.toml:4:21: mcp.servers[0].tool_timeout_secs: must be greater than 0",
    ),
    (
        "[[mcp.servers]]\nname = \"a\"\ncommand = \"x\"\n[[mcp.servers]]\nname = \"b\"\ncommand = \"x\"\n\
         [[mcp.servers]]\nname = \"c\"\ncommand = \"npx\"\nenv = { GITHUB_TOKEN = \"${GITHUB_TOKEN}\" }\n",
        "/home/u/.revka/config.toml:10:24: mcp.servers[2].env.GITHUB_TOKEN: environment variable GITHUB_TOKEN is not set",
    ),
    (
        "[[mcp.servers]]\nname = \"a\"\ncommand = \"x\"\nargs = [\"--token\", \"${TOKEN\"]\n",
        "/home/u/.revka/config.toml:4:20: mcp.servers[0].args[1]: unterminated `${` (write `$${` for a literal `${`)",
    ),
    (
        "[[mcp.servers]]\nname = \"a\"\ncommand = \"x\"\nrestart = { backoff_max_ms = 50 }\n",
        "/home/u/.revka/config.toml:4:30: mcp.servers[0].restart.backoff_max_ms: backoff_min_ms (100 ms) is greater than backoff_max_ms (50 ms)",
    ),
    // Sections.
    (
        "[gateway]\nhost = \"0.0.0.0\"\n",
        "/home/u/.revka/config.toml:2:8: gateway.host: \"0.0.0.0\" is not a loopback address; set gateway.allow_public_bind = true to expose the gateway to the network",
    ),
    (
        "[mcp_server]\nhost = \"0.0.0.0\"\n",
        "/home/u/.revka/config.toml:2:8: mcp_server.host: \"0.0.0.0\" is not a loopback address; set mcp_server.allow_public_bind = true to expose every tool to the network",
    ),
    (
        "[mcp_server]\nhost = \"0.0.0.0\"\nallow_public_bind = true\nrequire_token = false\n",
        "/home/u/.revka/config.toml:4:17: mcp_server.require_token: must be true when mcp_server.host (\"0.0.0.0\") is not a loopback address: without a token anyone on the network could call every tool",
    ),
    (
        "[mcp_server]\nhost = \"my-laptop\"\n",
        "/home/u/.revka/config.toml:2:8: mcp_server.host: \"my-laptop\" is not an IP address (or localhost)",
    ),
    (
        "[gateway]\nallowed_origins = [\"http://localhost:3000/\"]\n",
        "/home/u/.revka/config.toml:2:20: gateway.allowed_origins[0]: invalid origin \"http://localhost:3000/\": an origin has no path, query or fragment (not even a trailing `/`)",
    ),
    (
        "[gateway]\nallowed_origins = [\"https://a.example\", \"ftp://b.example\"]\n",
        "/home/u/.revka/config.toml:2:41: gateway.allowed_origins[1]: invalid origin \"ftp://b.example\": scheme \"ftp\" is not http or https",
    ),
    (
        "[supervisor]\nbackoff_min_ms = 5000\nbackoff_max_ms = 100\n",
        "/home/u/.revka/config.toml:2:18: supervisor.backoff_min_ms: backoff_min_ms (5000 ms) is greater than backoff_max_ms (100 ms)",
    ),
    (
        "[supervisor]\nwindow_secs = 0\n",
        "/home/u/.revka/config.toml:2:15: supervisor.window_secs: must be greater than 0",
    ),
    (
        "[session_manager]\nrestart = { shutdown_timeout_ms = 0 }\n",
        "/home/u/.revka/config.toml:2:35: session_manager.restart.shutdown_timeout_ms: must be greater than 0 (use brutal_kill = true to kill at once)",
    ),
    (
        "[session_manager.breaker]\nrecovery_timeout_secs = 60\nmax_recovery_timeout_secs = 30\n",
        "/home/u/.revka/config.toml:3:29: session_manager.breaker.max_recovery_timeout_secs: must be at least recovery_timeout_secs (60)",
    ),
    (
        "[session_manager]\ncommand = []\n",
        "/home/u/.revka/config.toml:2:11: session_manager.command: must name a program (e.g. [\"node\", \"session-manager.js\"])",
    ),
    (
        "[operator]\ntool_timeout_secs = 0\n",
        "/home/u/.revka/config.toml:2:21: operator.tool_timeout_secs: must be greater than 0",
    ),
    (
        "[http]\nheader_read_timeout_secs = 0\n",
        "/home/u/.revka/config.toml:2:28: http.header_read_timeout_secs: must be between 1 and 86400 (a day)",
    ),
    (
        "[http]\nkeepalive_idle_secs = 100000\n",
        "/home/u/.revka/config.toml:2:23: http.keepalive_idle_secs: must be between 1 and 86400 (a day)",
    ),
    (
        "[http]\nmax_connections_per_source = 0\n",
        "/home/u/.revka/config.toml:2:30: http.max_connections_per_source: must be greater than 0",
    ),
    (
        "[sessions]\ncreate_per_minute = 0\n",
        "/home/u/.revka/config.toml:2:21: sessions.create_per_minute: must be greater than 0",
    ),
    (
        "[mcp]\nservers_file = \"nope.json\"\n",
        "/home/u/.revka/config.toml:2:16: mcp.servers_file: cannot read /home/u/.revka/nope.json: No such file or directory (os error 2)",
    ),
];

#[test]
fn each_error_names_file_position_key_and_expectation() {
    for (text, want) in CASES {
        assert_eq!(err(text), *want, "config:\n{text}");
    }
}

#[test]
fn errors_expose_their_kind_location_and_key() {
    let e = parse_with("[supervisor]\nmax_restarts = -1\n", &home_env()).unwrap_err();
    assert!(matches!(e, ConfigError::Schema { .. }), "{e:?}");
    assert_eq!(e.key(), Some("supervisor.max_restarts"));
    let loc = e.location().expect("a location");
    assert_eq!(loc.file, Path::new(ORIGIN));
    assert_eq!(loc.line_col, Some((2, 16)));

    let e = parse_with("[gateway\n", &home_env()).unwrap_err();
    assert!(matches!(e, ConfigError::Syntax { .. }), "{e:?}");
    assert_eq!(e.key(), None);

    let text = "[[mcp.servers]]\nname = \"a\"\ncommand = \"x\"\nargs = [\"${NOPE}\"]\n";
    let e = parse_with(text, &home_env()).unwrap_err();
    match &e {
        ConfigError::MissingEnvVar { key, var, .. } => {
            assert_eq!(
                (key.as_str(), var.as_str()),
                ("mcp.servers[0].args[0]", "NOPE")
            );
        }
        other => panic!("expected MissingEnvVar, got {other:?}"),
    }

    let e = parse_with("[gateway]\nhost = \"example.com\"\n", &home_env()).unwrap_err();
    assert!(matches!(e, ConfigError::Invalid { .. }), "{e:?}");
    assert_eq!(e.key(), Some("gateway.host"));
}

#[test]
fn a_missing_explicit_config_file_is_a_read_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent.toml");
    let e = super::super::load(Some(&path), &home_env()).unwrap_err();
    assert!(matches!(e, ConfigError::Read { .. }), "{e:?}");
    assert!(
        e.to_string()
            .starts_with(&format!("{}: cannot read: ", path.display())),
        "{e}"
    );
}

#[test]
fn a_bad_server_entry_fails_that_server_alone() {
    let text = r#"
[mcp]
enabled = true

[[mcp.servers]]
name = "good"
command = "server"

[[mcp.servers]]
name = "nocommand"

[[mcp.servers]]
name = "weird"
transport = "carrier-pigeon"
command = "x"

[[mcp.servers]]
name = "badheader"
transport = "http"
url = "https://example.com/mcp"
headers = { "X-Token" = "a\nb" }
"#;
    let loaded = ok(text);
    let names: Vec<&str> = loaded
        .config
        .mcp
        .servers
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(names, ["good"]);
    let invalid: Vec<(&str, &str)> = loaded
        .config
        .mcp
        .invalid_servers
        .iter()
        .map(|s| (s.name.as_str(), s.reason.as_str()))
        .collect();
    assert_eq!(invalid.len(), 3);
    assert_eq!(invalid[0].0, "nocommand");
    assert!(
        invalid[0]
            .1
            .contains("mcp.servers[1].command: required for transport \"stdio\""),
        "{}",
        invalid[0].1
    );
    assert!(
        invalid[1]
            .1
            .contains("mcp.servers[2].transport: unknown transport"),
        "{}",
        invalid[1].1
    );
    assert!(
        invalid[2]
            .1
            .contains("mcp.servers[3].headers.X-Token: invalid HTTP header value"),
        "{}",
        invalid[2].1
    );
    // A bad name still makes the whole file invalid: there is no server to show it as.
    assert!(parse_with("[[mcp.servers]]\nname = \"a__b\"\n", &home_env()).is_err());
}
