//! What a person sees first, with the real binary: the daemon's start-up banner on an empty
//! home (a golden file, variable parts masked), syslog priorities only on the journal stream,
//! `NO_COLOR` in the log, quiet one-shot commands, completions and the man page.

use std::os::unix::fs::MetadataExt;
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::harness::{TestDaemon, TestHome, fixture_server};

const EXIT: Duration = Duration::from_secs(30);

/// The banner's lines from a daemon's text log, with the parts that change between runs
/// (home, pid, version, ports, pairing code) masked.
fn banner(log: &str, home: &std::path::Path, pid: u32) -> String {
    let mut out = String::new();
    for line in log.lines() {
        let Some((_, text)) = line.split_once(" revka::banner: ") else {
            continue;
        };
        let mut text = text
            .replace(&home.display().to_string(), "<HOME>")
            .replace(&format!("pid {pid},"), "pid <PID>,")
            .replace(env!("CARGO_PKG_VERSION"), "<VERSION>");
        while let Some(at) = text.find("127.0.0.1:") {
            let start = at + "127.0.0.1:".len();
            let digits = text[start..].find(|c: char| !c.is_ascii_digit());
            let end = start + digits.unwrap_or(text.len() - start);
            text.replace_range(at..end, "<ADDR>");
        }
        // How many built-in tools could not register depends on the machine (a display, a
        // headless browser): the count is not part of the banner's shape.
        if let Some(at) = text.find(" built-in tool(s) not registered") {
            let start = text[..at]
                .rfind(|c: char| !c.is_ascii_digit())
                .map_or(0, |i| i + 1);
            text.replace_range(start..at, "<N>");
        }
        if let Some(at) = text.find("pairing code: ") {
            let start = at + "pairing code: ".len();
            text.replace_range(start..start + "XXXX-XXXX".len(), "<CODE>");
        }
        out.push_str(&text);
        out.push('\n');
    }
    out
}

#[test]
fn first_run_on_an_empty_home_prints_the_banner() {
    let home = TestHome::new();
    let mut daemon = TestDaemon::start(&home, &[]);
    let pid = daemon.child.id();
    daemon.signal(Signal::SIGTERM);
    assert_eq!(daemon.wait(EXIT).code(), Some(0), "{}", daemon.stderr());
    let log = daemon.stderr();
    let golden = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/golden/first-run-banner.txt"
    );
    assert_eq!(
        banner(&log, home.path(), pid),
        std::fs::read_to_string(golden).unwrap(),
        "log:\n{log}"
    );
    // The tools that cannot register are counted there, not logged one by one at info.
    assert!(!log.contains("tool not registered"), "{log}");
    assert!(
        !log.contains("gateway pairing code"),
        "folded into the banner: {log}"
    );
}

/// The daemon's log lines when its stderr is a file and `JOURNAL_STREAM` is `stream`
/// (`None`: unset); `stream` may name that very file (`"match"`).
fn daemon_log(stream: Option<&str>) -> String {
    let home = TestHome::new();
    // An unknown key: a warning at start-up, next to the info lines.
    home.write_config("[mcp]\nbogus = 1\n");
    // TestDaemon writes stderr to this file; create it first to learn its device and inode.
    let stderr = home.path().join("daemon.stderr");
    std::fs::write(&stderr, "").unwrap();
    let meta = std::fs::metadata(&stderr).unwrap();
    let value = match stream {
        Some("match") => Some(format!("{}:{}", meta.dev(), meta.ino())),
        Some(other) => Some(other.to_owned()),
        None => None,
    };
    let env: Vec<(&str, &str)> = value
        .iter()
        .map(|v| ("JOURNAL_STREAM", v.as_str()))
        .collect();
    let mut daemon = TestDaemon::start(&home, &env);
    assert_eq!(
        std::fs::metadata(&stderr).unwrap().ino(),
        meta.ino(),
        "the same file"
    );
    daemon.signal(Signal::SIGTERM);
    assert_eq!(daemon.wait(EXIT).code(), Some(0), "{}", daemon.stderr());
    daemon.stderr()
}

#[test]
fn on_the_journal_stream_each_line_carries_its_syslog_priority() {
    let log = daemon_log(Some("match"));
    let lines: Vec<&str> = log.lines().collect();
    assert!(!lines.is_empty());
    for line in &lines {
        assert!(
            ["<3>", "<4>", "<6>", "<7>"]
                .iter()
                .any(|p| line.starts_with(p)),
            "no priority: {line:?}"
        );
    }
    let warning = lines.iter().find(|l| l.contains("unknown key")).unwrap();
    assert!(
        warning.starts_with("<4>") && warning.contains(" WARN "),
        "{warning}"
    );
    let banner = lines.iter().find(|l| l.contains("revka::banner")).unwrap();
    assert!(
        banner.starts_with("<6>") && banner.contains(" INFO "),
        "{banner}"
    );
}

#[test]
fn without_the_journal_stream_there_is_no_prefix() {
    // Unset, or inherited from a unit while stderr is something else: plain lines.
    for stream in [None, Some("1:1"), Some("garbage")] {
        let log = daemon_log(stream);
        assert!(log.contains("unknown key"), "{log}");
        assert!(
            log.lines().all(|l| !l.starts_with('<')),
            "{stream:?}:\n{log}"
        );
    }
}

fn home_with_fault_server() -> TestHome {
    let home = TestHome::new();
    home.write_config(&format!(
        "[mcp]\nenabled = true\n\n[[mcp.servers]]\nname = \"fault\"\ncommand = \"{}\"\n",
        fixture_server("fault_server").display()
    ));
    home
}

#[test]
fn mcp_list_prints_its_table_and_no_info_lines_by_default() {
    let home = home_with_fault_server();
    let out = home
        .command()
        .env_remove("RUST_LOG")
        .args(["mcp", "list"])
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stdout.contains("fault  [stdio]  ok, "), "{stdout}");
    assert_eq!(stderr, "", "nothing logged below warn");

    // The same command at info shows what the default hides.
    let out = home
        .command()
        .env_remove("RUST_LOG")
        .args(["--log-level", "info", "mcp", "list"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("process started"), "{stderr}");
}

/// `revka --log-level info mcp list` run on a pseudo-terminal (python's `pty`), with `env`;
/// everything the terminal showed.
fn on_a_terminal(home: &TestHome, env: &[(&str, &str)]) -> String {
    let mut cmd = std::process::Command::new("python3");
    cmd.args([
        "-c",
        "import pty, sys; sys.exit(pty.spawn(sys.argv[1:]) >> 8)",
        crate::harness::revka_bin(),
        "--log-level",
        "info",
        "mcp",
        "list",
    ])
    .env("REVKA_HOME", home.path())
    .env_remove("RUST_LOG")
    .env_remove("NO_COLOR")
    .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("python3 runs");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn no_color_turns_ansi_off_in_the_log_on_a_terminal() {
    let home = home_with_fault_server();
    let coloured = on_a_terminal(&home, &[]);
    assert!(coloured.contains("process started"), "{coloured}");
    assert!(
        coloured.contains("\x1b["),
        "a terminal gets colour: {coloured:?}"
    );
    for value in ["1", "true"] {
        let plain = on_a_terminal(&home, &[("NO_COLOR", value)]);
        assert!(plain.contains("process started"), "{plain}");
        assert!(!plain.contains('\x1b'), "NO_COLOR={value}: {plain:?}");
    }
    // An empty NO_COLOR does not count (no-color.org).
    let empty = on_a_terminal(&home, &[("NO_COLOR", "")]);
    assert!(empty.contains("\x1b["), "{empty:?}");
}

#[test]
fn completions_generate_for_every_shell_and_the_man_page_renders() {
    let home = TestHome::new();
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let out = home
            .command()
            .args(["completions", shell])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{shell}");
        let script = String::from_utf8_lossy(&out.stdout);
        assert!(
            script.contains("revka") && script.contains("import"),
            "{shell}:\n{script}"
        );
        assert!(out.stderr.is_empty(), "{shell}");
    }
    let out = home
        .command()
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "an unknown shell is a usage error"
    );

    let out = home.command().arg("man").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let page = String::from_utf8_lossy(&out.stdout);
    assert!(
        page.contains(".TH revka 1") && page.contains("completions"),
        "{page}"
    );
    let dir = home.path().join("man1");
    let out = home
        .command()
        .args(["man", "--dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(dir.join("revka-mcp-import.1").is_file());
}
