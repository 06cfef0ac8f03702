//! JSON servers files: both shapes, `[mcp] servers_file`, and errors that name the JSON file.

use std::fs;

use super::*;
use crate::config::{McpServerConfig, Transport, import_servers_json};

/// Revka's own shape (seed 004).
const SEED_SHAPE: &str = r#"{
  "servers": [
    {
      "name": "github",
      "transport": "stdio",
      "command": "npx",
      "args": ["-y", "@modelcontextprotocol/server-github"],
      "env": { "GITHUB_TOKEN": "${GITHUB_TOKEN}" },
      "auto_connect": true
    },
    {
      "name": "remote-tools",
      "transport": "http",
      "url": "https://mcp.example.com/tools",
      "auto_connect": false
    }
  ]
}"#;

/// The Claude Desktop / Cursor shape, keys deliberately not in alphabetical order.
const NAMED_SHAPE: &str = r#"{
  "mcpServers": {
    "zeta": { "command": "uvx", "args": ["mcp-server-fetch"], "env": { "A": "1" } },
    "alpha": { "url": "https://a.example.com/mcp", "headers": { "Authorization": "Bearer x" } },
    "legacy": { "type": "sse", "url": "https://b.example.com/sse", "disabled": true },
    "streamy": { "type": "streamable-http", "url": "https://c.example.com/mcp" },
    "camel": { "type": "streamableHttp", "url": "https://d.example.com/mcp" },
    "explicit": { "type": "stdio", "command": "node", "args": ["server.js"] }
  }
}"#;

#[test]
fn the_seed_shape_imports_as_is() {
    let servers = import_servers_json(SEED_SHAPE, Path::new("/x/servers.json")).unwrap();
    assert_eq!(
        servers,
        [
            McpServerConfig {
                name: "github".into(),
                command: Some("npx".into()),
                args: vec!["-y".into(), "@modelcontextprotocol/server-github".into()],
                env: [("GITHUB_TOKEN".into(), "${GITHUB_TOKEN}".into())].into(),
                ..McpServerConfig::default()
            },
            McpServerConfig {
                name: "remote-tools".into(),
                transport: Transport::Http.into(),
                url: Some("https://mcp.example.com/tools".into()),
                auto_connect: false,
                ..McpServerConfig::default()
            },
        ]
    );
}

#[test]
fn the_mcp_servers_shape_imports_in_file_order() {
    let servers = import_servers_json(NAMED_SHAPE, Path::new("/x/claude.json")).unwrap();
    let summary: Vec<(&str, Transport, bool)> = servers
        .iter()
        .map(|s| {
            (
                s.name.as_str(),
                s.transport.known().unwrap(),
                s.auto_connect,
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("zeta", Transport::Stdio, true),
            ("alpha", Transport::Http, true),
            ("legacy", Transport::Sse, false),
            ("streamy", Transport::Http, true),
            ("camel", Transport::Http, true),
            ("explicit", Transport::Stdio, true),
        ]
    );
    assert_eq!(servers[0].args, ["mcp-server-fetch"]);
    assert_eq!(servers[0].env["A"], "1");
    assert_eq!(servers[1].headers["Authorization"], "Bearer x");
    assert_eq!(servers[1].tool_timeout_secs, 180);
}

#[test]
fn json_errors_name_the_json_file_position_and_key() {
    let origin = Path::new("/x/servers.json");
    let cases = [
        (
            "{\"servers\": [\n  {\"name\": \"a\",, }\n]}",
            "/x/servers.json:2:16: key must be a string",
        ),
        (
            "{\"servers\": [{\"name\": \"a\", \"args\": \"-y\"}]}",
            "/x/servers.json:1:39: servers[0].args: invalid type: string \"-y\", expected a sequence",
        ),
        (
            "{\"mcpServers\": {\"a\": {\"type\": \"websocket\"}}}",
            "/x/servers.json:1:41: mcpServers.a.type: unknown variant `websocket`, expected one of `stdio`, `http`, `streamable-http`, `streamableHttp`, `sse`",
        ),
        (
            "{\"servers\": [{\"command\": \"x\"}]}",
            "/x/servers.json:1:29: servers[0]: missing field `name`",
        ),
        (
            "{\"tools\": []}",
            "/x/servers.json: (root): expected a `servers` array or an `mcpServers` object",
        ),
        (
            "{\"servers\": []} trailing",
            "/x/servers.json:1:17: trailing characters",
        ),
    ];
    for (json, want) in cases {
        let e = import_servers_json(json, origin).unwrap_err();
        assert_eq!(e.to_string(), want, "json: {json}");
    }
}

/// A config dir holding `config.toml` text and `servers.json`.
fn config_dir(toml: &str, json: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join("mcp")).unwrap();
    fs::write(dir.path().join("mcp/servers.json"), json).unwrap();
    let path = dir.path().join("config.toml");
    fs::write(&path, toml).unwrap();
    (dir, path)
}

const WITH_FILE: &str = "[mcp]\nenabled = true\nservers_file = \"mcp/servers.json\"\n\
                         [[mcp.servers]]\nname = \"first\"\ncommand = \"x\"\n";

#[test]
fn servers_file_is_relative_to_the_config_and_appended_after_toml_servers() {
    let (dir, path) = config_dir(WITH_FILE, SEED_SHAPE);
    let env = env_of(&[("HOME", "/home/u"), ("GITHUB_TOKEN", "ghp_1")]);
    let loaded = crate::config::load(Some(&path), &env).unwrap();
    let names: Vec<&str> = loaded
        .config
        .mcp
        .servers
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(names, ["first", "github", "remote-tools"]);
    // Imported servers get `${VAR}` expansion too.
    assert_eq!(loaded.config.mcp.servers[1].env["GITHUB_TOKEN"], "ghp_1");
    assert_eq!(
        loaded.config.mcp.servers_file.as_deref(),
        Some(dir.path().join("mcp/servers.json").as_path())
    );
    assert_eq!(loaded.source.as_deref(), Some(path.as_path()));
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
}

#[test]
fn imported_servers_are_validated_against_the_json_file() {
    let cases = [
        // Missing variable: named with the JSON file and the JSON key.
        (
            SEED_SHAPE,
            "servers.json: servers[0].env.GITHUB_TOKEN: environment variable GITHUB_TOKEN is not set",
        ),
        // Duplicate across TOML and JSON.
        (
            r#"{"mcpServers": {"first": {"command": "y"}}}"#,
            "servers.json: mcpServers.first: duplicate server name \"first\" (first defined at mcp.servers[0].name)",
        ),
        (
            r#"{"mcpServers": {"a__b": {"command": "y"}}}"#,
            "servers.json: mcpServers.a__b: invalid server name \"a__b\": `__` is reserved as the separator in tool names (<server>__<tool>)",
        ),
        (
            r#"{"mcpServers": {"r": {"url": "https://e.com", "headers": {"X": "a\r\nb"}}}}"#,
            "servers.json: mcpServers.r.headers.X: invalid HTTP header value: only visible ASCII, spaces and tabs are allowed (no CR/LF)",
        ),
        (
            r#"{"mcpServers": {"r": {"args": ["x"]}}}"#,
            "servers.json: mcpServers.r.command: required for transport \"stdio\"",
        ),
    ];
    for (json, want) in cases {
        let (dir, path) = config_dir(WITH_FILE, json);
        let got = match crate::config::load(Some(&path), &home_env()) {
            Ok(loaded) => super::first_invalid(&loaded).expect("an invalid server"),
            Err(e) => e.to_string(),
        };
        let want = format!("{}/mcp/{want}", dir.path().display());
        assert_eq!(got, want);
    }
}

#[test]
fn duplicates_inside_the_json_file_and_unknown_json_keys() {
    let json = r#"{"mcpServers": {"a": {"command": "y", "alwaysAllow": []}},
                   "servers": [{"name": "a", "command": "z"}]}"#;
    let (dir, path) = config_dir(
        "[mcp]\nenabled = true\nservers_file = \"mcp/servers.json\"\n",
        json,
    );
    let e = crate::config::load(Some(&path), &home_env()).unwrap_err();
    let file = dir.path().join("mcp/servers.json");
    assert_eq!(
        e.to_string(),
        format!(
            "{f}: mcpServers.a: duplicate server name \"a\" (first defined at {f}: servers[0].name)",
            f = file.display()
        )
    );
    let json = r#"{"mcpServers": {"a": {"command": "y", "alwaysAllow": []}}, "$schema": "x"}"#;
    let (_dir, path) = config_dir(
        "[mcp]\nenabled = true\nservers_file = \"mcp/servers.json\"\n",
        json,
    );
    let loaded = crate::config::load(Some(&path), &home_env()).unwrap();
    let file = path.parent().unwrap().join("mcp/servers.json");
    let mut warnings = loaded.warnings;
    warnings.sort();
    assert_eq!(
        warnings,
        [
            format!("{}: unknown key \"$schema\" (ignored)", file.display()),
            format!(
                "{}: unknown key mcpServers.a.alwaysAllow (ignored)",
                file.display()
            ),
        ]
    );
}
