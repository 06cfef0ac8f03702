//! The files the daemon writes in `$REVKA_HOME`, end to end with the real binary: a home
//! others can write in is refused, links planted at the lock file and the token store are
//! refused, and links planted at the files it replaces (discovery files, owner token) and at
//! its run log are never written through.

use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::harness::{TestDaemon, TestHome, try_within};

const EXIT: Duration = Duration::from_secs(30);

/// A file outside the home, the target of planted links; its contents must never change.
fn victim(dir: &Path) -> PathBuf {
    let path = dir.join("victim");
    std::fs::write(&path, "precious\n").unwrap();
    path
}

#[test]
fn a_home_others_can_write_in_is_refused_naming_owner_mode_and_fix() {
    let home = TestHome::new();
    std::fs::set_permissions(home.path(), std::fs::Permissions::from_mode(0o770)).unwrap();
    let mut daemon = TestDaemon::spawn(&home, &[]);
    assert_eq!(daemon.wait(EXIT).code(), Some(1), "{}", daemon.stderr());
    let err = daemon.stderr();
    let uid = nix::unistd::geteuid().as_raw();
    for want in [
        format!("refusing to use {}", home.path().display()),
        "writable by its group or others".to_owned(),
        format!("owner uid {uid}, mode 0770"),
        format!("chmod 700 '{}'", home.path().display()),
    ] {
        assert!(err.contains(&want), "wanted {want:?} in:\n{err}");
    }
    assert!(
        !home.path().join("daemon.lock").exists(),
        "refused before anything is written"
    );
    // The operator commands refuse it too: its gateway.json could send the owner token
    // anywhere.
    let out = home.command().arg("status").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("refusing to use"), "{err}");
}

#[test]
fn a_link_planted_at_the_lock_file_is_refused_and_its_target_kept() {
    let home = TestHome::new();
    let outside = tempfile::tempdir().unwrap();
    let target = victim(outside.path());
    symlink(&target, home.path().join("daemon.lock")).unwrap();
    let mut daemon = TestDaemon::spawn(&home, &[]);
    assert_eq!(daemon.wait(EXIT).code(), Some(1), "{}", daemon.stderr());
    let want = format!(
        "{} is a symbolic link",
        home.path().join("daemon.lock").display()
    );
    assert!(daemon.stderr().contains(&want), "{}", daemon.stderr());
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "precious\n");
}

/// The token store decides who is let in: a link there is refused, not read through (it could
/// lead to a store of someone else's choosing) and not written through.
#[test]
fn a_link_planted_at_the_token_store_is_refused_and_its_target_kept() {
    let home = TestHome::new();
    let outside = tempfile::tempdir().unwrap();
    let target = victim(outside.path());
    symlink(&target, home.path().join("gateway_tokens.json")).unwrap();
    let mut daemon = TestDaemon::spawn(&home, &[]);
    assert_eq!(daemon.wait(EXIT).code(), Some(1), "{}", daemon.stderr());
    let want = format!(
        "{} is a symbolic link",
        home.path().join("gateway_tokens.json").display()
    );
    assert!(daemon.stderr().contains(&want), "{}", daemon.stderr());
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "precious\n");
}

#[test]
fn links_planted_at_the_files_the_daemon_writes_are_never_written_through() {
    let home = TestHome::new();
    let outside = tempfile::tempdir().unwrap();
    let target = victim(outside.path());
    let replaced = ["mcp.json", "gateway.json", "gateway.token"];
    for name in replaced {
        symlink(&target, home.path().join(name)).unwrap();
    }
    let runlogs = home.path().join("operator_mcp/runlogs");
    std::fs::create_dir_all(&runlogs).unwrap();
    let run_log = runlogs.join("run.jsonl");
    symlink(&target, &run_log).unwrap();

    let mut daemon = TestDaemon::start(&home, &[]);
    // Files replaced whole: the link is replaced by the daemon's own file.
    for name in replaced {
        let path = home.path().join(name);
        assert!(
            try_within(Duration::from_secs(10), || std::fs::symlink_metadata(&path)
                .is_ok_and(|m| m.is_file()))
            .is_some(),
            "{name} still a link"
        );
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{name}");
    }
    daemon.signal(Signal::SIGTERM);
    assert_eq!(daemon.wait(EXIT).code(), Some(0), "{}", daemon.stderr());
    // The run log, opened in place, refused its link (the daemon ran on and said why).
    assert!(std::fs::symlink_metadata(&run_log).unwrap().is_symlink());
    assert!(
        daemon.stderr().contains("run.jsonl is a symbolic link"),
        "{}",
        daemon.stderr()
    );
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "precious\n");
}
