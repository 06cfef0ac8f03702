//! `revka mcp add | remove | import | get` with the real binary: golden files show that a
//! hand-written config keeps its comments and layout, invalid entries leave the file untouched,
//! and a running daemon picks the change up at once.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::harness::{Served, TestHome, fixture_server, try_within_async};

const GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/mcp-edit");

fn golden(name: &str) -> String {
    std::fs::read_to_string(Path::new(GOLDEN).join(name)).unwrap()
}

/// Runs `revka --config <config> <args>` with `home` as `REVKA_HOME` (no daemon there unless
/// the test starts one) and a quiet log; (exit code, stdout, stderr).
fn revka(home: &TestHome, config: Option<&Path>, args: &[&str]) -> (Option<i32>, String, String) {
    revka_in(home, config, args, None)
}

fn revka_in(
    home: &TestHome,
    config: Option<&Path>,
    args: &[&str],
    cwd: Option<&Path>,
) -> (Option<i32>, String, String) {
    let mut cmd = home.command();
    cmd.env_remove("RUST_LOG").env("NO_COLOR", "1");
    if let Some(config) = config {
        cmd.arg("--config").arg(config);
    }
    if let Some(dir) = cwd {
        cmd.current_dir(dir);
    }
    let out = cmd.args(args).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A home with the commented golden config as `config.toml`.
fn home_with_golden() -> (TestHome, PathBuf) {
    let home = TestHome::new();
    let path = home.write_config(&golden("config.toml"));
    (home, path)
}

#[test]
fn mcp_add_and_remove_keep_comments_and_layout() {
    let (home, config) = home_with_golden();
    let (code, out, err) = revka(
        &home,
        Some(&config),
        &[
            "mcp",
            "add",
            "gh",
            "-e",
            "GITHUB_TOKEN=${GITHUB_TOKEN}",
            "--",
            "npx",
            "-y",
            "@modelcontextprotocol/server-github",
        ],
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("added server `gh`"), "{out}");
    assert!(
        out.contains("the daemon is not running: the change applies when it starts"),
        "{out}"
    );
    assert_eq!(
        std::fs::read_to_string(&config).unwrap(),
        golden("after-add.toml")
    );

    let (code, out, err) = revka(&home, Some(&config), &["mcp", "remove", "gh"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("removed server `gh`"), "{out}");
    assert_eq!(
        std::fs::read_to_string(&config).unwrap(),
        golden("config.toml"),
        "add then remove gives back the file, byte for byte"
    );
}

#[test]
fn mcp_import_from_a_vscode_project_keeps_the_layout_and_says_what_it_skipped() {
    let (home, config) = home_with_golden();
    let project = home.path().join("project");
    std::fs::create_dir_all(project.join(".vscode")).unwrap();
    std::fs::write(project.join(".vscode/mcp.json"), golden("vscode-mcp.json")).unwrap();

    // A dry run changes nothing.
    let args = ["mcp", "import", ".vscode/mcp.json", "--dry-run"];
    let (code, out, err) = revka_in(&home, Some(&config), &args, Some(&project));
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("would add memory\nwould add context\n"),
        "{out}"
    );
    assert_eq!(
        std::fs::read_to_string(&config).unwrap(),
        golden("config.toml")
    );

    let args = ["mcp", "import", ".vscode/mcp.json"];
    let (code, out, err) = revka_in(&home, Some(&config), &args, Some(&project));
    assert_eq!(code, Some(0), "{err}");
    for line in [
        "add memory\n",
        "add context\n",
        "skip perplexity: `${input:api-key}` is a prompt only the editor can answer",
        "skip fs: already configured\n",
        "skip @scope/ui: invalid server name \"@scope/ui\"",
        "imported 2 server(s) into ",
    ] {
        assert!(out.contains(line), "{line:?} in:\n{out}");
    }
    assert!(err.contains("${CONTEXT_TOKEN} is not set here"), "{err}");
    let written = std::fs::read_to_string(&config).unwrap();
    let project = std::fs::canonicalize(&project).unwrap();
    let masked = written.replace(&project.display().to_string(), "<PROJECT>");
    assert_eq!(masked, golden("after-import.toml"));
}

#[test]
fn mcp_import_reads_claude_desktops_config_from_the_users_home() {
    let home = TestHome::new();
    let user = home.path().join("user");
    let dir = if cfg!(target_os = "macos") {
        user.join("Library/Application Support/Claude")
    } else {
        user.join(".config/Claude")
    };
    std::fs::create_dir_all(&dir).unwrap();
    let fault = fixture_server("fault_server");
    let desktop = serde_json::json!({
        "globalShortcut": "",
        "mcpServers": {
            "fault": { "command": fault, "args": ["--instructions", "hi"] },
            "off": { "command": "x", "disabled": true },
        }
    });
    std::fs::write(dir.join("claude_desktop_config.json"), desktop.to_string()).unwrap();
    let out = home
        .command()
        .env_remove("RUST_LOG")
        .env_remove("XDG_CONFIG_HOME")
        .env("HOME", &user)
        .args(["mcp", "import", "claude-desktop"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("add fault\nadd off\n"), "{stdout}");
    // No config file before: the commented template, then the servers, the client on.
    let written = std::fs::read_to_string(home.path().join("config.toml")).unwrap();
    assert!(written.starts_with("# Revka configuration"), "{written}");
    assert!(
        written.ends_with(&format!(
            "[mcp]\nenabled = true\n\n[[mcp.servers]]\nname = \"fault\"\ncommand = \"{}\"\nargs = \
             [\"--instructions\", \"hi\"]\n\n[[mcp.servers]]\nname = \"off\"\ncommand = \"x\"\n\
             auto_connect = false\n",
            fault.display()
        )),
        "{written}"
    );
    // The imported server works as configured.
    let (code, out, err) = revka(&home, None, &["mcp", "test", "fault"]);
    assert_eq!(code, Some(0), "{out}{err}");
}

#[test]
fn mcp_add_refuses_an_invalid_entry_without_touching_the_file() {
    let (home, config) = home_with_golden();
    let before = std::fs::read(&config).unwrap();
    let modified = std::fs::metadata(&config).unwrap().modified().unwrap();
    let cases: [(&[&str], i32, &str); 6] = [
        (
            &["mcp", "add", "bad name", "--", "x"],
            64,
            "invalid server name \"bad name\"",
        ),
        (&["mcp", "add", "a__b", "--", "x"], 64, "`__` is reserved"),
        (
            &["mcp", "add", "fs", "--", "x"],
            64,
            "a server named `fs` already exists",
        ),
        (&["mcp", "add", "nothing"], 2, "missing the command"),
        (
            &[
                "mcp",
                "add",
                "web",
                "--transport",
                "http",
                "ftp://example.com",
            ],
            64,
            "server `web` would be invalid",
        ),
        (
            &[
                "mcp",
                "add",
                "web",
                "https://example.com",
                "-H",
                "Bad Header: 1",
            ],
            64,
            "invalid HTTP header name",
        ),
    ];
    for (args, want, message) in cases {
        let (code, out, err) = revka(&home, Some(&config), args);
        assert_eq!(code, Some(want), "{args:?}: {out}{err}");
        assert!(err.contains(message), "{args:?}: {message:?} in {err}");
        assert!(out.is_empty(), "{args:?}: {out}");
        assert_eq!(std::fs::read(&config).unwrap(), before, "{args:?}");
    }
    assert_eq!(
        std::fs::metadata(&config).unwrap().modified().unwrap(),
        modified
    );
    let leftovers = std::fs::read_dir(home.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".tmp")
        })
        .count();
    assert_eq!(leftovers, 0, "no temporary file left behind");

    let (code, _, err) = revka(&home, Some(&config), &["mcp", "remove", "nope"]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("no server named `nope`") && err.contains("(configured there: fs, time)"),
        "{err}"
    );
    assert_eq!(std::fs::read(&config).unwrap(), before);
}

#[tokio::test(flavor = "multi_thread")]
async fn mcp_add_and_remove_reload_a_running_daemon() {
    let served = Served::start("").await;
    let status = |served: &Served| revka(&served.home, None, &["status"]).1;
    let server = fixture_server("fault_server").display().to_string();
    let (code, out, err) = revka(&served.home, None, &["mcp", "add", "extra", "--", &server]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("reloaded the running daemon:"), "{out}");
    assert!(
        out.contains("mcp:extra"),
        "the reload report names it: {out}"
    );
    assert!(
        try_within_async(Duration::from_secs(30), async || {
            status(&served)
                .lines()
                .any(|l| l.contains("mcp:extra") && l.contains("running"))
        })
        .await
        .is_some(),
        "{}",
        status(&served)
    );
    let (code, out, _) = revka(&served.home, None, &["mcp", "get", "extra"]);
    assert_eq!(code, Some(0));
    assert!(
        out.contains("mcp:extra") && out.contains("running"),
        "{out}"
    );

    let (code, out, err) = revka(&served.home, None, &["mcp", "remove", "extra"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("reloaded the running daemon:"), "{out}");
    assert!(
        try_within_async(Duration::from_secs(30), async || !status(&served)
            .contains("mcp:extra"))
        .await
        .is_some(),
        "{}",
        status(&served)
    );
}

#[test]
fn install_with_the_session_manager_offers_or_makes_the_config_edit() {
    let home = TestHome::new();
    let text = "# mine\n[session_manager]\nenabled = false  # not yet\n";
    let config = home.write_config(text);
    // A stand-in for npm: the real `npm ci` would download the Claude Agent SDK with its
    // ~400 MB native binary (the install's npm step has unit tests of its own). It records
    // its arguments and leaves what a finished `npm ci` leaves.
    let npm = home.path().join("fake-npm");
    std::fs::write(
        &npm,
        "#!/bin/sh\necho \"$@\" >> \"$0.log\"\n\
         mkdir -p node_modules/@anthropic-ai/claude-agent-sdk\n\
         echo '{}' > node_modules/@anthropic-ai/claude-agent-sdk/package.json\n",
    )
    .unwrap();
    std::fs::set_permissions(&npm, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let install = |extra: &[&str]| {
        let mut args = vec![
            "install",
            "--sidecars-only",
            "--skip-operator",
            "--with-session-manager",
            "--from-source",
            env!("CARGO_MANIFEST_DIR"),
        ];
        args.extend_from_slice(extra);
        // stdin is not a terminal: no question, only the command to run.
        let out = home
            .command()
            .env_remove("RUST_LOG")
            .env("REVKA_NPM", &npm)
            .args(&args)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        (out.status.code(), stdout, stderr)
    };
    let (code, out, err) = install(&[]);
    assert_eq!(code, Some(0), "{out}{err}");
    let ran = std::fs::read_to_string(home.path().join("fake-npm.log")).unwrap();
    assert_eq!(
        ran.lines().next(),
        Some("ci --omit=dev --no-audit --no-fund")
    );
    assert!(
        out.contains("--with-session-manager --enable` does it"),
        "{out}"
    );
    assert_eq!(std::fs::read_to_string(&config).unwrap(), text);

    let (code, out, err) = install(&["--dry-run", "--enable"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains("would: set [session_manager] enabled = true"),
        "{out}"
    );
    assert_eq!(std::fs::read_to_string(&config).unwrap(), text);

    let (code, out, err) = install(&["--enable"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains("set [session_manager] enabled = true in "),
        "{out}"
    );
    assert_eq!(
        std::fs::read_to_string(&config).unwrap(),
        "# mine\n[session_manager]\nenabled = true  # not yet\n"
    );
    let (code, out, _) = install(&["--enable"]);
    assert_eq!(code, Some(0));
    assert!(
        out.contains("ok: [session_manager] enabled = true"),
        "{out}"
    );

    let out = home
        .command()
        .args(["install", "--sidecars-only", "--enable"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "--enable needs --with-session-manager"
    );
}
