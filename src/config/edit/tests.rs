//! Tests of the config editor: layout kept, all-or-nothing, permissions, `${VAR}` untouched.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde_json::json;

use super::{ConfigFile, EditError, McpSwitch, NewServer, ServerEdit};
use crate::config::Transport;

/// A hand-written config with comments in every place an edit could disturb them.
const COMMENTED: &str = r#"# My revka config.

[mcp]
enabled = true   # on
handshake_timeout_secs = 30

# ---- servers ----

# The filesystem server.
[[mcp.servers]]
name = "fs"
command = "npx"  # via npx
args = ['-y', "@modelcontextprotocol/server-filesystem", "/tmp"]

# Git, pinned.
[[mcp.servers]]
name = "git"
command = "uvx"
args = ["mcp-server-git"]
[mcp.servers.restart]
max_restarts = 10

# ---- the rest ----
[gateway]
port = 8900 # fixed
"#;

fn env_with(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
    move |name| {
        vars.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| (*v).to_owned())
    }
}

fn write(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("config.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn stdio(name: &str, command: &str, args: &[&str]) -> NewServer {
    NewServer {
        name: name.to_owned(),
        command: Some(command.to_owned()),
        args: args.iter().map(|a| (*a).to_owned()).collect(),
        auto_connect: true,
        ..NewServer::default()
    }
}

#[test]
fn an_added_server_goes_after_the_last_one_and_nothing_else_moves() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), COMMENTED);
    let mut file = ConfigFile::open(&path).unwrap();
    let mut server = stdio("gh", "npx", &["-y", "@modelcontextprotocol/server-github"]);
    server.env = BTreeMap::from([("GITHUB_TOKEN".to_owned(), "${GITHUB_TOKEN}".to_owned())]);
    file.add_server(&server).unwrap();
    assert_eq!(file.enable_mcp_client().unwrap(), McpSwitch::AlreadyOn);
    let env = env_with(&[("GITHUB_TOKEN", "t")]);
    let committed = file.commit(&env, &["gh"]).unwrap();
    assert!(committed.unset_vars.is_empty());
    let text = std::fs::read_to_string(&path).unwrap();
    let added = "[mcp.servers.restart]
max_restarts = 10

[[mcp.servers]]
name = \"gh\"
command = \"npx\"
args = [\"-y\", \"@modelcontextprotocol/server-github\"]
env = { GITHUB_TOKEN = \"${GITHUB_TOKEN}\" }

# ---- the rest ----
";
    let expected = COMMENTED.replace(
        "[mcp.servers.restart]\nmax_restarts = 10\n\n# ---- the rest ----\n",
        added,
    );
    assert_eq!(text, expected);
    // The daemon's loader sees it, `${VAR}` expanded there only.
    let gh = &committed.loaded.config.mcp.servers[2];
    assert_eq!(gh.env["GITHUB_TOKEN"], "t");

    // Removing it gives back the original file, byte for byte.
    let mut file = ConfigFile::open(&path).unwrap();
    file.remove_server("gh").unwrap();
    file.commit(&env, &[]).unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), COMMENTED);
}

#[test]
fn removing_a_server_takes_its_own_comments_and_leaves_section_headings() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), COMMENTED);
    let mut file = ConfigFile::open(&path).unwrap();
    file.remove_server("fs").unwrap();
    let text = file.render();
    assert!(!text.contains("The filesystem server") && !text.contains("\"fs\""));
    assert!(
        text.contains("# ---- servers ----\n\n# Git, pinned.\n[[mcp.servers]]"),
        "{text}"
    );

    file.remove_server("git").unwrap();
    let text = file.render();
    assert!(
        !text.contains("Git, pinned") && !text.contains("max_restarts"),
        "{text}"
    );
    assert!(text.contains("# ---- servers ----"), "{text}");
    assert!(
        text.ends_with("# ---- the rest ----\n[gateway]\nport = 8900 # fixed\n"),
        "{text}"
    );
    file.commit(&|_| None, &[]).unwrap();

    let err = ConfigFile::open(&path)
        .unwrap()
        .remove_server("fs")
        .unwrap_err();
    assert!(
        matches!(&err, EditError::NotFound { configured, .. } if configured.is_empty()),
        "{err}"
    );
}

#[test]
fn without_a_file_the_commented_template_is_the_start_and_the_file_is_owner_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    let mut file = ConfigFile::open(&path).unwrap();
    assert!(!file.existed());
    file.add_server(&stdio("fs", "npx", &["-y", "pkg"]))
        .unwrap();
    assert_eq!(file.enable_mcp_client().unwrap(), McpSwitch::TurnedOn);
    file.commit(&|_| None, &["fs"]).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.starts_with(crate::config::DEFAULT_TOML),
        "the template comes first"
    );
    assert_eq!(
        &text[crate::config::DEFAULT_TOML.len()..],
        "\n[mcp]\nenabled = true\n\n[[mcp.servers]]\nname = \"fs\"\ncommand = \"npx\"\nargs = [\"-y\", \"pkg\"]\n"
    );
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

#[test]
fn the_files_mode_is_kept_and_a_symlink_stays_a_symlink() {
    let dir = tempfile::tempdir().unwrap();
    let real = dir.path().join("dotfiles.toml");
    std::fs::write(&real, "[mcp]\nenabled = true\n").unwrap();
    std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o640)).unwrap();
    let link = dir.path().join("config.toml");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let mut file = ConfigFile::open(&link).unwrap();
    file.add_server(&stdio("fs", "npx", &[])).unwrap();
    file.commit(&|_| None, &["fs"]).unwrap();
    assert!(std::fs::symlink_metadata(&link).unwrap().is_symlink());
    assert!(
        std::fs::read_to_string(&real)
            .unwrap()
            .contains("name = \"fs\"")
    );
    let mode = std::fs::metadata(&real).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o640);
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers.len(), 2, "no temporary file left: {leftovers:?}");
}

#[test]
fn an_invalid_entry_is_refused_and_the_file_is_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), COMMENTED);
    let before = std::fs::read(&path).unwrap();

    let mut file = ConfigFile::open(&path).unwrap();
    let err = file.add_server(&stdio("a__b", "x", &[])).unwrap_err();
    assert!(matches!(err, EditError::BadName { .. }), "{err}");
    assert!(err.to_string().contains("`__` is reserved"), "{err}");
    let err = file.add_server(&stdio("git", "x", &[])).unwrap_err();
    assert!(matches!(err, EditError::Duplicate { .. }), "{err}");

    // Only the loader knows a URL is bad: the commit refuses it.
    let remote = NewServer {
        name: "web".to_owned(),
        transport: Transport::Http,
        url: Some("ftp://example.com".to_owned()),
        auto_connect: true,
        ..NewServer::default()
    };
    file.add_server(&remote).unwrap();
    let err = file.commit(&|_| None, &["web"]).unwrap_err();
    assert!(
        matches!(&err, EditError::InvalidServer { name, reason } if name == "web" && reason.contains("invalid URL")),
        "{err}"
    );
    assert_eq!(std::fs::read(&path).unwrap(), before);

    // A file that does not parse is not edited at all.
    std::fs::write(&path, "[mcp\n").unwrap();
    let err = ConfigFile::open(&path).unwrap_err();
    assert!(matches!(err, EditError::Syntax { .. }), "{err}");
    // Nor one the edit would leave invalid as a whole.
    std::fs::write(&path, "[gateway]\nhost = \"0.0.0.0\"\n").unwrap();
    let mut file = ConfigFile::open(&path).unwrap();
    file.add_server(&stdio("fs", "npx", &[])).unwrap();
    let err = file.commit(&|_| None, &["fs"]).unwrap_err();
    assert!(matches!(err, EditError::Invalid(_)), "{err}");
    assert!(err.to_string().contains("not a loopback address"), "{err}");
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "[gateway]\nhost = \"0.0.0.0\"\n"
    );
}

#[test]
fn unset_variables_are_reported_not_refused_and_stay_references() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    let mut file = ConfigFile::open(&path).unwrap();
    let remote = NewServer {
        name: "web".to_owned(),
        transport: Transport::Http,
        url: Some("https://${HOST}/mcp".to_owned()),
        headers: BTreeMap::from([("Authorization".into(), "Bearer ${TOKEN}".into())]),
        auto_connect: true,
        ..NewServer::default()
    };
    file.add_server(&remote).unwrap();
    let committed = file.commit(&|_| None, &["web"]).unwrap();
    assert_eq!(committed.unset_vars, ["HOST", "TOKEN"]);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("url = \"https://${HOST}/mcp\""), "{text}");
    assert!(
        text.contains("headers = { Authorization = \"Bearer ${TOKEN}\" }"),
        "{text}"
    );
}

#[test]
fn the_mcp_switch_is_turned_on_only_when_the_file_does_not_set_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "[mcp]\nenabled = false # not yet\n");
    let mut file = ConfigFile::open(&path).unwrap();
    assert_eq!(file.enable_mcp_client().unwrap(), McpSwitch::LeftOff);
    assert_eq!(file.render(), "[mcp]\nenabled = false # not yet\n");

    let path = write(dir.path(), "mcp = 1\n");
    let mut file = ConfigFile::open(&path).unwrap();
    let err = file.enable_mcp_client().unwrap_err();
    assert!(matches!(err, EditError::Shape { .. }), "{err}");
}

#[test]
fn the_session_manager_is_enabled_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let text = "# sidecar\n[session_manager]\nenabled = false  # for now\nliveness_failures = 5\n";
    let path = write(dir.path(), text);
    let mut file = ConfigFile::open(&path).unwrap();
    assert!(file.enable_session_manager().unwrap());
    assert!(!file.enable_session_manager().unwrap(), "already on");
    let loaded = file.commit(&|_| None, &[]).unwrap().loaded;
    assert!(loaded.config.session_manager.enabled);
    assert_eq!(loaded.config.session_manager.liveness_failures, 5);
    let written = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        written,
        "# sidecar\n[session_manager]\nenabled = true  # for now\nliveness_failures = 5\n"
    );
}

#[test]
fn servers_written_as_an_inline_array_are_edited_in_that_form() {
    let dir = tempfile::tempdir().unwrap();
    let text = "[mcp]\nenabled = true\nservers = [{ name = \"a\", command = \"x\" }]\n";
    let path = write(dir.path(), text);
    let mut file = ConfigFile::open(&path).unwrap();
    assert_eq!(file.server_names(), ["a"]);
    file.add_server(&stdio("b", "y", &["1"])).unwrap();
    assert_eq!(file.server_names(), ["a", "b"]);
    let loaded = file.commit(&|_| None, &["b"]).unwrap().loaded;
    assert_eq!(loaded.config.mcp.servers.len(), 2);
    let mut file = ConfigFile::open(&path).unwrap();
    file.remove_server("a").unwrap();
    assert_eq!(file.server_names(), ["b"]);
}

fn edit(json: serde_json::Value) -> ServerEdit {
    ServerEdit::from_json(json.to_string().as_bytes()).unwrap()
}

#[test]
fn replacing_an_entry_keeps_its_place_its_comments_and_every_other_byte() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), COMMENTED);
    let mut file = ConfigFile::open(&path).unwrap();
    assert_eq!(
        file.version(),
        super::fingerprint(Some(COMMENTED.as_bytes()))
    );
    let added = file
        .put_server(
            "fs",
            &edit(json!({ "name": "fs", "command": "uvx", "args": ["mcp-fs", "${ROOT}"] })),
        )
        .unwrap();
    assert!(!added);
    file.commit_live(&env_with(&[("ROOT", "/tmp")]), Some("fs"))
        .unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let expected = COMMENTED.replace(
        "command = \"npx\"  # via npx\nargs = ['-y', \"@modelcontextprotocol/server-filesystem\", \"/tmp\"]",
        "command = \"uvx\"  # via npx\nargs = [\"mcp-fs\", \"${ROOT}\"]",
    );
    assert_ne!(expected, COMMENTED);
    assert_eq!(text, expected);

    // A sub-table keeps its form and its place; keys the edit does not name stay.
    let mut file = ConfigFile::open(&path).unwrap();
    assert_ne!(
        file.version(),
        super::fingerprint(Some(COMMENTED.as_bytes()))
    );
    file.put_server(
        "git",
        &edit(json!({ "restart": { "max_restarts": 3 }, "tool_timeout_secs": 60 })),
    )
    .unwrap();
    file.commit_live(&env_with(&[("ROOT", "/tmp")]), Some("git"))
        .unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.contains(
            "# Git, pinned.\n[[mcp.servers]]\nname = \"git\"\ncommand = \"uvx\"\nargs = [\"mcp-server-git\"]\ntool_timeout_secs = 60\n[mcp.servers.restart]\nmax_restarts = 3\n\n# ---- the rest ----\n[gateway]\nport = 8900 # fixed\n"
        ),
        "{text}"
    );
    assert!(text.starts_with("# My revka config.\n\n[mcp]\nenabled = true   # on\n"));
}

#[test]
fn an_entry_reads_back_as_written_and_a_new_one_goes_after_the_last() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), COMMENTED);
    let mut file = ConfigFile::open(&path).unwrap();
    let entries = file.server_entries();
    assert_eq!(entries.len(), 2);
    assert_eq!(
        serde_json::Value::Object(entries[1].clone()),
        json!({ "name": "git", "command": "uvx", "args": ["mcp-server-git"],
                "restart": { "max_restarts": 10 } })
    );
    let body = json!({
        "name": "web", "transport": "http", "url": "https://${HOST}/mcp",
        "headers": { "Authorization": "Bearer ${TOKEN}" }, "command": null,
        "allowed_tools": ["read_*"], "restart": { "brutal_kill": true },
    });
    assert!(file.put_server("web", &edit(body)).unwrap());
    let text = file.render();
    assert!(
        text.contains(
            "max_restarts = 10\n\n[[mcp.servers]]\nname = \"web\"\ntransport = \"http\"\nurl = \"https://${HOST}/mcp\"\nheaders = { Authorization = \"Bearer ${TOKEN}\" }\nallowed_tools = [\"read_*\"]\nrestart = { brutal_kill = true }\n\n# ---- the rest ----"
        ),
        "{text}"
    );
    let entries = file.server_entries();
    assert_eq!(entries[2]["url"], "https://${HOST}/mcp", "not expanded");
    // The daemon's environment lacks the variables: refused, pointing at the reference.
    let err = file.commit_live(&|_| None, Some("web")).unwrap_err();
    assert!(matches!(err, EditError::Invalid(_)), "{err}");
    assert!(
        err.to_string()
            .contains("config.toml:26:7: mcp.servers[2].url: environment variable HOST"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), COMMENTED);
    let env = env_with(&[("HOST", "example.com"), ("TOKEN", "t")]);
    file.commit_live(&env, Some("web")).unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
}

#[test]
fn an_invalid_edit_is_refused_with_its_location_and_the_file_is_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), COMMENTED);
    let before = std::fs::read(&path).unwrap();
    let env = |_: &str| None;

    // A stdio server without a command: an invalid entry.
    let mut file = ConfigFile::open(&path).unwrap();
    file.put_server("fs", &edit(json!({ "command": null })))
        .unwrap();
    let err = file.commit_live(&env, Some("fs")).unwrap_err();
    let EditError::InvalidServer { name, reason } = &err else {
        panic!("{err}");
    };
    assert_eq!(name, "fs");
    assert!(
        reason.contains("config.toml:10:1: mcp.servers[0]"),
        "{reason}"
    );
    assert_eq!(file.locate_server("fs"), Some((10, 1)));

    // An unknown transport.
    let mut file = ConfigFile::open(&path).unwrap();
    file.put_server("git", &edit(json!({ "transport": "pigeon" })))
        .unwrap();
    let err = file.commit_live(&env, Some("git")).unwrap_err();
    assert!(
        matches!(&err, EditError::InvalidServer { reason, .. } if reason.contains("config.toml:20:13: mcp.servers[1].transport")),
        "{err}"
    );

    // A name that breaks the rules makes the whole file invalid.
    let mut file = ConfigFile::open(&path).unwrap();
    file.put_server("a__b", &edit(json!({ "command": "x" })))
        .unwrap();
    let err = file.commit_live(&env, Some("a__b")).unwrap_err();
    assert!(matches!(err, EditError::Invalid(_)), "{err}");
    assert!(err.to_string().contains("config.toml:"), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), before);
}

#[test]
fn moving_an_entry_to_a_remote_transport_drops_its_local_keys() {
    let dir = tempfile::tempdir().unwrap();
    let text = "[mcp]\nenabled = true\n\n[[mcp.servers]]\nname = \"s\" # mine\ncommand = \"x\"\nargs = [\"1\"]\nenv = { A = \"1\" }\nauto_connect = false\nfuture_key = 1\n";
    let path = write(dir.path(), text);
    let mut file = ConfigFile::open(&path).unwrap();
    file.put_server(
        "s",
        &edit(json!({ "transport": "sse", "url": "https://example.com/sse" })),
    )
    .unwrap();
    assert_eq!(
        file.render(),
        "[mcp]\nenabled = true\n\n[[mcp.servers]]\nname = \"s\" # mine\nauto_connect = false\nfuture_key = 1\ntransport = \"sse\"\nurl = \"https://example.com/sse\"\n"
    );
    // And back, with `env` given: it is set, `headers` was never there.
    file.put_server(
        "s",
        &edit(json!({ "transport": "stdio", "command": "y", "env": { "B": "2" } })),
    )
    .unwrap();
    assert_eq!(
        file.render(),
        "[mcp]\nenabled = true\n\n[[mcp.servers]]\nname = \"s\" # mine\nauto_connect = false\nfuture_key = 1\ntransport = \"stdio\"\ncommand = \"y\"\nenv = { B = \"2\" }\n"
    );
    // A table's keys are replaced in place, its form kept.
    file.put_server("s", &edit(json!({ "env": { "C": "3", "B": "2" } })))
        .unwrap();
    assert!(
        file.render()
            .ends_with("command = \"y\"\nenv = { B = \"2\", C = \"3\" }\n"),
        "{}",
        file.render()
    );
}

#[test]
fn an_edit_body_is_checked_before_anything_is_touched() {
    for (body, says) in [
        ("{", "EOF"),
        ("[]", "got an array"),
        ("{\"comand\": \"x\"}", "unknown field `comand`"),
        ("{\"args\": \"x\"}", "expected a sequence"),
        (
            "{\"restart\": {\"max_restarts\": [1]}}",
            "restart.max_restarts",
        ),
        ("{\"timeout_ms\": 1000}", "unknown field `timeout_ms`"),
    ] {
        let err = ServerEdit::from_json(body.as_bytes()).unwrap_err();
        assert!(err.contains(says), "{body}: {err}");
    }
    let edit = edit(json!({ "name": "x", "url": null }));
    assert_eq!(edit.name(), Some("x"));
}

#[test]
fn the_version_is_the_files_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    let file = ConfigFile::open(&path).unwrap();
    assert_eq!(file.version(), "absent");
    assert_eq!(super::fingerprint(None), "absent");
    std::fs::write(&path, "").unwrap();
    let file = ConfigFile::open(&path).unwrap();
    assert_eq!(
        file.version(),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
}
