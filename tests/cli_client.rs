//! `revka client install | uninstall | list` with the real binary and `HOME` pointed at a
//! temporary directory: golden files show each client's own config file after an install
//! (every other entry, comment and the layout kept) and, after an uninstall, the original
//! byte for byte; invalid files are refused untouched; dry runs write nothing.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::harness::revka_bin;

const GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/client-install");

/// The command the golden files name.
const COMMAND: &str = "/opt/revka/bin/revka";

/// Each client, its golden file's name, and where it keeps its config under `HOME`.
const CLIENTS: [(&str, &str, &str); 6] = [
    ("claude-code", "claude-code.json", ".claude.json"),
    (
        "claude-desktop",
        "claude-desktop.json",
        if cfg!(target_os = "macos") {
            "Library/Application Support/Claude/claude_desktop_config.json"
        } else {
            ".config/Claude/claude_desktop_config.json"
        },
    ),
    ("cursor", "cursor.json", ".cursor/mcp.json"),
    (
        "vscode",
        "vscode.jsonc",
        if cfg!(target_os = "macos") {
            "Library/Application Support/Code/User/mcp.json"
        } else {
            ".config/Code/User/mcp.json"
        },
    ),
    ("codex", "codex.toml", ".codex/config.toml"),
    ("gemini", "gemini.json", ".gemini/settings.json"),
];

fn golden(name: &str) -> String {
    std::fs::read_to_string(Path::new(GOLDEN).join(name)).unwrap()
}

/// `claude-code.json` → `claude-code.installed.json`.
fn installed_name(name: &str) -> String {
    let (stem, ext) = name.split_once('.').unwrap();
    format!("{stem}.installed.{ext}")
}

/// A temporary `HOME` with no client variables leaking in from the test's environment.
struct Home {
    dir: tempfile::TempDir,
}

impl Home {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `HOME/rel`.
    fn file(&self, rel: &str) -> PathBuf {
        self.path().join(rel)
    }

    /// Writes `text` at `HOME/rel`, making its directories.
    fn put(&self, rel: &str, text: &str) -> PathBuf {
        let path = self.file(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        path
    }

    fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.file(rel)).unwrap()
    }

    /// Every client's golden file in place.
    fn with_goldens() -> Self {
        let home = Self::new();
        for (_, golden_name, rel) in CLIENTS {
            home.put(rel, &golden(golden_name));
        }
        home
    }

    /// The backups made of `HOME/rel`.
    fn backups(&self, rel: &str) -> Vec<PathBuf> {
        let path = self.file(rel);
        let prefix = format!(
            "{}.revka-backup-",
            path.file_name().unwrap().to_str().unwrap()
        );
        let mut found: Vec<PathBuf> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                p.file_name()
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .starts_with(&prefix)
            })
            .collect();
        found.sort();
        found
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(revka_bin());
        cmd.env("HOME", self.path()).env("NO_COLOR", "1");
        for var in [
            "REVKA_HOME",
            "REVKA_CONFIG",
            "RUST_LOG",
            "XDG_CONFIG_HOME",
            "CLAUDE_CONFIG_DIR",
            "CODEX_HOME",
            "GEMINI_CLI_HOME",
            "VSCODE_APPDATA",
            "VSCODE_PORTABLE",
        ] {
            cmd.env_remove(var);
        }
        cmd
    }

    /// Runs `revka <args>`; (exit code, stdout, stderr).
    fn revka(&self, args: &[&str]) -> (Option<i32>, String, String) {
        self.revka_with(args, &[])
    }

    fn revka_with(&self, args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String, String) {
        let mut cmd = self.command();
        cmd.envs(env.iter().copied());
        let out = cmd.args(args).output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

fn all_clients() -> Vec<&'static str> {
    CLIENTS.iter().map(|(c, _, _)| *c).collect()
}

fn args<'a>(verb: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["client", verb];
    args.extend(all_clients());
    args.extend(extra);
    args
}

#[test]
fn install_writes_each_clients_golden_file_and_uninstall_gives_back_the_original() {
    let home = Home::with_goldens();
    let (code, out, err) = home.revka(&args("install", &["--command", COMMAND]));
    assert_eq!(code, Some(0), "{out}{err}");
    for (client, golden_name, rel) in CLIENTS {
        assert_eq!(
            home.read(rel),
            golden(&installed_name(golden_name)),
            "{client} after install"
        );
        let path = home.file(rel);
        assert!(
            out.contains(&format!(
                "{client}: added the `revka` server to {}",
                path.display()
            )),
            "{out}"
        );
        let backups = home.backups(rel);
        assert_eq!(backups.len(), 1, "{client}: {backups:?}");
        assert_eq!(
            std::fs::read_to_string(&backups[0]).unwrap(),
            golden(golden_name)
        );
    }

    // A second install changes nothing and says so.
    let (code, out, err) = home.revka(&args("install", &["--command", COMMAND]));
    assert_eq!(code, Some(0), "{out}{err}");
    for (client, golden_name, rel) in CLIENTS {
        assert!(
            out.contains(&format!(
                "{client}: {} already has the `revka` server; nothing to change",
                home.file(rel).display()
            )),
            "{out}"
        );
        assert_eq!(home.read(rel), golden(&installed_name(golden_name)));
        assert_eq!(
            home.backups(rel).len(),
            1,
            "no backup when nothing is written"
        );
    }

    let (code, out, err) = home.revka(&args("uninstall", &[]));
    assert_eq!(code, Some(0), "{out}{err}");
    for (client, golden_name, rel) in CLIENTS {
        assert_eq!(
            home.read(rel),
            golden(golden_name),
            "{client}: byte for byte"
        );
        assert!(
            out.contains(&format!("{client}: removed the `revka` server")),
            "{out}"
        );
    }
    let (code, out, _) = home.revka(&args("uninstall", &[]));
    assert_eq!(code, Some(0));
    assert_eq!(
        out.matches("has no `revka` server; nothing to remove")
            .count(),
        6,
        "{out}"
    );
}

#[test]
fn an_invalid_file_is_refused_with_the_parsers_message_and_left_untouched() {
    let home = Home::new();
    let cases = [
        // Claude Desktop reads strict JSON: a comment makes the file invalid.
        (
            "claude-desktop",
            CLIENTS[1].2,
            "{\n  // mine\n  \"mcpServers\": {}\n}\n",
            "not valid JSON: ",
        ),
        (
            "cursor",
            CLIENTS[2].2,
            "{\"mcpServers\": {\"a\": {}\n",
            "not valid JSON with comments: ",
        ),
        (
            "vscode",
            CLIENTS[3].2,
            "{\n\t\"servers\": {\n\t\t\"a\" {}\n\t}\n}\n",
            "line 3 column",
        ),
        (
            "codex",
            CLIENTS[4].2,
            "[mcp_servers.a\ncommand = \"x\"\n",
            "not valid TOML: ",
        ),
        (
            "gemini",
            CLIENTS[5].2,
            "[\"not\", \"an object\"]\n",
            "the top level is not a JSON object",
        ),
        (
            "claude-code",
            CLIENTS[0].2,
            "{\"mcpServers\": []}\n",
            "`mcpServers` is not a JSON object",
        ),
    ];
    for (client, rel, text, why) in cases {
        let path = home.put(rel, text);
        for verb in ["install", "uninstall"] {
            let (code, out, err) = home.revka(&["client", verb, client]);
            assert_eq!(code, Some(1), "{client} {verb}: {out}{err}");
            assert!(
                err.contains(&format!(
                    "revka client {verb}: {client}: {}: ",
                    path.display()
                )),
                "{err}"
            );
            assert!(err.contains(why), "{client}: {err}");
            assert!(err.contains("nothing was changed"), "{err}");
            assert_eq!(home.read(rel), text, "{client}: untouched");
            assert!(
                home.backups(rel).is_empty(),
                "{client}: no backup of a refused file"
            );
        }
    }
    // `list` shows the reason instead of skipping the file.
    let (code, out, _) = home.revka(&["client", "list"]);
    assert_eq!(code, Some(0));
    assert!(
        out.contains("codex: ") && out.contains("not valid TOML"),
        "{out}"
    );
}

#[test]
fn a_dry_run_prints_the_diff_and_writes_nothing() {
    let home = Home::with_goldens();
    let rel = CLIENTS[4].2;
    let (code, out, err) = home.revka(&[
        "client",
        "install",
        "codex",
        "--dry-run",
        "--command",
        COMMAND,
    ]);
    assert_eq!(code, Some(0), "{err}");
    let path = home.file(rel).display().to_string();
    assert!(
        out.contains(&format!(
            "--- {path}\n+++ {path}\n@@ -15,6 +15,10 @@\n [mcp_servers.context7.env]\n CONTEXT7_API_KEY = \"ctx7-redacted\"\n \n+[mcp_servers.revka]\n+command = \"/opt/revka/bin/revka\"\n+args = [\"mcp\", \"serve\", \"--stdio\"]\n+\n [profiles.fast]\n model = \"gpt-5-mini\"\n approval_policy = \"never\"\n"
        )),
        "{out}"
    );
    assert!(out.contains("would add the `revka` server to"), "{out}");
    assert!(out.contains("dry run, nothing written"), "{out}");
    assert_eq!(home.read(rel), golden("codex.toml"));
    assert!(home.backups(rel).is_empty());

    home.revka(&["client", "install", "codex", "--command", COMMAND]);
    let (code, out, _) = home.revka(&["client", "uninstall", "codex", "--dry-run"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("-[mcp_servers.revka]\n"), "{out}");
    assert!(
        out.contains("would remove the `revka` server from"),
        "{out}"
    );
    assert_eq!(home.read(rel), golden("codex.installed.toml"));
    assert_eq!(home.backups(rel).len(), 1, "only the install's");
}

#[test]
fn an_entry_that_runs_something_else_is_replaced_only_with_force() {
    let home = Home::with_goldens();
    let rel = CLIENTS[2].2;
    home.revka(&["client", "install", "cursor", "--command", "/old/revka"]);
    let before = home.read(rel);

    let (code, out, err) = home.revka(&["client", "install", "cursor", "--command", COMMAND]);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(
        err.contains("already has a `revka` server that runs /old/revka; pass --force"),
        "{err}"
    );
    assert!(
        out.contains(
            "-      \"command\": \"/old/revka\",\n+      \"command\": \"/opt/revka/bin/revka\","
        ),
        "the diff: {out}"
    );
    assert_eq!(home.read(rel), before, "untouched without --force");

    let (code, out, err) = home.revka(&[
        "client",
        "install",
        "cursor",
        "--force",
        "--command",
        COMMAND,
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("replaced the `revka` server in") && out.contains("(it ran /old/revka)"),
        "{out}"
    );
    assert_eq!(home.read(rel), golden("cursor.installed.json"));
    assert_eq!(home.backups(rel).len(), 2);
}

#[test]
fn a_client_that_is_not_installed_gets_a_file_only_with_create() {
    let home = Home::new();
    let rel = CLIENTS[5].2;
    let (code, _, err) = home.revka(&["client", "install", "gemini", "--command", COMMAND]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("Gemini CLI does not seem to be installed"),
        "{err}"
    );
    assert!(err.contains("pass --create"), "{err}");
    assert!(!home.file(".gemini").exists(), "nothing created");

    let (code, out, err) = home.revka(&[
        "client",
        "install",
        "gemini",
        "--create",
        "--command",
        COMMAND,
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert!(!out.contains("backup"), "nothing to back up: {out}");
    let text = home.read(rel);
    assert_eq!(
        text,
        "{\n  \"mcpServers\": {\n    \"revka\": {\n      \"command\": \"/opt/revka/bin/revka\",\n      \"args\": [\"mcp\", \"serve\", \"--stdio\"]\n    }\n  }\n}\n"
    );
    let mode = std::fs::metadata(home.file(rel))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600, "a new user file is owner-only");

    // Installed (its directory exists) but without a file: no --create needed.
    std::fs::create_dir_all(home.file(".cursor")).unwrap();
    let (code, _, err) = home.revka(&["client", "install", "cursor", "--command", COMMAND]);
    assert_eq!(code, Some(0), "{err}");
    assert!(home.file(CLIENTS[2].2).exists());
}

#[test]
fn list_shows_each_client_and_whether_its_entry_runs_this_revka() {
    let home = Home::with_goldens();
    std::fs::remove_file(home.file(CLIENTS[5].2)).unwrap();
    // This executable, as install finds it by default.
    let (code, _, err) = home.revka(&["client", "install", "vscode"]);
    assert_eq!(code, Some(0), "{err}");
    home.revka(&[
        "client",
        "install",
        "cursor",
        "--command",
        "/elsewhere/revka",
    ]);

    let (code, out, err) = home.revka(&["client", "list", "--json"]);
    assert_eq!(code, Some(0), "{err}");
    let rows: Vec<Value> = serde_json::from_str(&out).unwrap();
    let row = |name: &str| rows.iter().find(|r| r["client"] == name).unwrap().clone();
    let vscode = row("vscode");
    assert_eq!(vscode["entry"]["current"], true, "{vscode}");
    assert_eq!(vscode["entry"]["this_revka"], true);
    let exe = std::fs::canonicalize(revka_bin()).unwrap();
    assert_eq!(
        vscode["entry"]["command"],
        exe.to_str().unwrap(),
        "the absolute path of this revka"
    );
    let cursor = row("cursor");
    assert_eq!(cursor["entry"]["command"], "/elsewhere/revka");
    assert_eq!(cursor["entry"]["this_revka"], false);
    assert_eq!(row("claude-code")["entry"], Value::Null);
    assert_eq!(row("claude-code")["exists"], true);
    let gemini = row("gemini");
    assert_eq!(
        (gemini["exists"].clone(), gemini["installed"].clone()),
        (Value::Bool(false), Value::Bool(true))
    );

    let (code, out, _) = home.revka(&["client", "list"]);
    assert_eq!(code, Some(0));
    let line = |client: &str| {
        out.lines()
            .find(|l| l.starts_with(client))
            .unwrap()
            .to_owned()
    };
    assert!(line("vscode ").contains(" yes "), "{out}");
    assert!(
        line("cursor ").contains("yes, runs /elsewhere/revka"),
        "{out}"
    );
    assert!(line("claude-code ").contains(" no "), "{out}");
    assert!(line("gemini ").contains("no (no config file)"), "{out}");
}

#[test]
fn a_revka_home_that_is_not_the_default_goes_into_the_entry() {
    let home = Home::with_goldens();
    let revka_home = home.file("elsewhere");
    let env = [("REVKA_HOME", revka_home.to_str().unwrap())];
    let (code, _, err) = home.revka_with(
        &[
            "client",
            "install",
            "claude-desktop",
            "codex",
            "--command",
            COMMAND,
        ],
        &env,
    );
    assert_eq!(code, Some(0), "{err}");
    let desktop: Value = serde_json::from_str(&home.read(CLIENTS[1].2)).unwrap();
    assert_eq!(
        desktop["mcpServers"]["revka"]["env"]["REVKA_HOME"],
        revka_home.to_str().unwrap()
    );
    assert!(
        home.read(CLIENTS[4].2).contains(&format!(
            "env = {{ REVKA_HOME = \"{}\" }}",
            revka_home.display()
        )),
        "{}",
        home.read(CLIENTS[4].2)
    );
    // The default home is not spelt out, and an entry for another home differs from it.
    let (code, _, err) = home.revka_with(
        &["client", "install", "claude-desktop", "--command", COMMAND],
        &[("REVKA_HOME", "~/.revka")],
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("pass --force"), "{err}");
}

#[test]
fn project_files_are_written_in_the_project_and_shareable() {
    let home = Home::new();
    let project = home.file("app");
    std::fs::create_dir_all(&project).unwrap();
    let mut cmd = home.command();
    let out = cmd
        .current_dir(&project)
        .args(["client", "install", "--project", "vscode", "claude-code"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("note: the entry names this machine's revka"),
        "{stdout}"
    );
    let vscode = project.join(".vscode/mcp.json");
    let text = std::fs::read_to_string(&vscode).unwrap();
    assert!(
        text.starts_with("{\n  \"servers\": {\n    \"revka\": {\n      \"type\": \"stdio\","),
        "{text}"
    );
    let mode = std::fs::metadata(&vscode).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o644, "a project file is meant to be shared");
    assert!(project.join(".mcp.json").exists());

    let in_project = format!("--project={}", project.display());
    let (code, _, err) = home.revka(&["client", "install", "claude-desktop", &in_project]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("Claude Desktop has no project-level config file"),
        "{err}"
    );
    let (code, _, err) = home.revka(&["client", "install", "cursor", "--project=/nonexistent/dir"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("project directory /nonexistent/dir"), "{err}");
}
