//! Unit tests of the path rules: resolution, containment, forbidden paths, and the opens that
//! refuse a symlink or a hard link met at use time.

use std::os::unix::fs::{PermissionsExt, symlink};

use super::*;

struct Fixture {
    _root: tempfile::TempDir,
    ws: PathBuf,
    outside: PathBuf,
    revka_home: PathBuf,
    user_home: PathBuf,
}

fn fixture() -> Fixture {
    let root = tempfile::tempdir().unwrap();
    let base = std::fs::canonicalize(root.path()).unwrap();
    let ws = base.join("ws");
    let outside = base.join("outside");
    let revka_home = base.join("revka");
    let user_home = base.join("home");
    for d in [&ws, &outside, &revka_home, &user_home.join(".ssh")] {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::write(outside.join("secret.txt"), "outside secret").unwrap();
    std::fs::write(user_home.join(".ssh/id_rsa"), "key").unwrap();
    std::fs::write(ws.join("a.txt"), "hello").unwrap();
    Fixture {
        _root: root,
        ws,
        outside,
        revka_home,
        user_home,
    }
}

fn rules(f: &Fixture, config: &SecurityConfig) -> PathRules {
    PathRules::with_user_home(config, &f.revka_home, Some(f.user_home.clone())).unwrap()
}

fn refused_rule(r: Result<PathBuf, Refusal>) -> &'static str {
    r.expect_err("refused").rule
}

#[test]
fn wildcards_match_one_segment() {
    assert!(wildcard(b"*", b"1234"));
    assert!(wildcard(b"*.pem", b"key.pem"));
    assert!(!wildcard(b"*.pem", b"key.pem.txt"));
    assert!(wildcard(b"a*b*c", b"aXXbYc"));
    assert!(!wildcard(b"a*b", b"ac"));
    let f = fixture();
    let config = SecurityConfig {
        forbidden_paths: vec!["/proc/*/environ".into()],
        workspace_only: false,
        ..SecurityConfig::default()
    };
    let r = rules(&f, &config);
    assert!(r.is_forbidden(Path::new("/proc/1/environ")));
    assert!(!r.is_forbidden(Path::new("/proc/1/status")));
    assert!(!r.is_forbidden(Path::new("/proc/environ")));
    // /proc/self is a link to /proc/<pid>: resolved before the match.
    assert_eq!(
        refused_rule(r.resolve(&f.ws, "/proc/self/environ", Access::Read)),
        "forbidden_paths"
    );
}

#[test]
fn inside_paths_resolve_and_escapes_are_refused() {
    let f = fixture();
    let r = rules(&f, &SecurityConfig::default());
    assert_eq!(
        r.resolve(&f.ws, "a.txt", Access::Read).unwrap(),
        f.ws.join("a.txt")
    );
    assert_eq!(
        r.resolve(&f.ws, "./new/dir/../b.txt", Access::Write)
            .unwrap(),
        f.ws.join("new/b.txt")
    );
    assert_eq!(r.resolve(&f.ws, ".", Access::List).unwrap(), f.ws);
    for raw in [
        "../outside/secret.txt",
        "sub/../../outside/secret.txt",
        "/etc/passwd",
        "~",
        "~/.bashrc",
    ] {
        assert_eq!(
            refused_rule(r.resolve(&f.ws, raw, Access::Read)),
            "workspace_only",
            "{raw}"
        );
    }
    // Percent-encoded forms are names, not decoded: they stay inside.
    let encoded = r.resolve(&f.ws, "%2e%2e%2foutside", Access::Read).unwrap();
    assert_eq!(encoded, f.ws.join("%2e%2e%2foutside"));
    assert_eq!(refused_rule(r.resolve(&f.ws, "", Access::Read)), "path");
    assert_eq!(refused_rule(r.resolve(&f.ws, "a\0b", Access::Read)), "path");
    let long = "a/".repeat(3000);
    assert_eq!(refused_rule(r.resolve(&f.ws, &long, Access::Read)), "path");
}

#[test]
fn symlinks_are_resolved_before_the_check() {
    let f = fixture();
    let r = rules(&f, &SecurityConfig::default());
    symlink(f.outside.join("secret.txt"), f.ws.join("link.txt")).unwrap();
    symlink(&f.outside, f.ws.join("linkdir")).unwrap();
    symlink("a.txt", f.ws.join("inner.txt")).unwrap();
    symlink("loop2", f.ws.join("loop1")).unwrap();
    symlink("loop1", f.ws.join("loop2")).unwrap();
    assert_eq!(
        refused_rule(r.resolve(&f.ws, "link.txt", Access::Read)),
        "workspace_only"
    );
    assert_eq!(
        refused_rule(r.resolve(&f.ws, "linkdir/secret.txt", Access::Read)),
        "workspace_only"
    );
    assert_eq!(
        refused_rule(r.resolve(&f.ws, "linkdir/new.txt", Access::Write)),
        "workspace_only"
    );
    // A missing name followed by `..` comes back to resolve the link after it.
    assert_eq!(
        refused_rule(r.resolve(&f.ws, "nope/../linkdir/x", Access::Write)),
        "workspace_only"
    );
    assert_eq!(
        r.resolve(&f.ws, "inner.txt", Access::Read).unwrap(),
        f.ws.join("a.txt")
    );
    // Writes never go through a link, even one that stays inside.
    let refusal = r.resolve(&f.ws, "inner.txt", Access::Write).unwrap_err();
    assert_eq!(refusal.rule, "path");
    assert!(refusal.message.contains("symbolic link"), "{refusal}");
    assert_eq!(
        refused_rule(r.resolve(&f.ws, "loop1", Access::Read)),
        "path"
    );
}

#[test]
fn forbidden_paths_hold_inside_the_workspace_and_without_containment() {
    let f = fixture();
    std::fs::create_dir_all(f.ws.join("private/deeper")).unwrap();
    std::fs::write(f.ws.join("private/deeper/x"), "x").unwrap();
    let config = SecurityConfig {
        forbidden_paths: vec![format!("{}/private", f.ws.display()), "~/.ssh".into()],
        workspace_only: false,
        ..SecurityConfig::default()
    };
    let r = rules(&f, &config);
    assert_eq!(
        refused_rule(r.resolve(&f.ws, "private/deeper/x", Access::Read)),
        "forbidden_paths"
    );
    assert_eq!(
        refused_rule(r.resolve(&f.ws, "private", Access::List)),
        "forbidden_paths"
    );
    assert_eq!(
        refused_rule(r.resolve(&f.ws, "~/.ssh/id_rsa", Access::Read)),
        "forbidden_paths"
    );
    // Without containment, outside paths that are not forbidden resolve.
    assert!(
        r.resolve(&f.ws, "../outside/secret.txt", Access::Read)
            .is_ok()
    );
    // A symlink into a forbidden directory is caught on its target.
    symlink(f.user_home.join(".ssh"), f.ws.join("keys")).unwrap();
    assert_eq!(
        refused_rule(r.resolve(&f.ws, "keys/id_rsa", Access::Read)),
        "forbidden_paths"
    );
}

#[test]
fn revka_home_is_forbidden_whatever_the_list_says() {
    let f = fixture();
    let config = SecurityConfig {
        forbidden_paths: Vec::new(),
        ..SecurityConfig::default()
    };
    let r = rules(&f, &config);
    // A workspace under $REVKA_HOME gets nothing: the daemon's tokens live there.
    let ws = f.revka_home.join("work");
    std::fs::create_dir_all(&ws).unwrap();
    let refusal = r.resolve(&ws, "notes.txt", Access::Write).unwrap_err();
    assert_eq!(refusal.rule, "forbidden_paths");
    assert!(refusal.message.contains("$REVKA_HOME"), "{refusal}");
    // Reached through a symlinked name of the home too.
    let alias = f.ws.join("home-alias");
    symlink(&f.revka_home, &alias).unwrap();
    let config = SecurityConfig {
        workspace_only: false,
        forbidden_paths: Vec::new(),
        ..SecurityConfig::default()
    };
    let r = PathRules::with_user_home(&config, &alias, None).unwrap();
    assert_eq!(
        refused_rule(r.resolve(&f.ws, "../revka/config.toml", Access::Read)),
        "forbidden_paths"
    );
    // Patterns must be absolute.
    let bad = SecurityConfig {
        forbidden_paths: vec!["relative/dir".into()],
        ..SecurityConfig::default()
    };
    let err = PathRules::with_user_home(&bad, &f.revka_home, None).unwrap_err();
    assert!(err.contains("relative/dir"), "{err}");
}

#[test]
fn a_directory_swapped_for_a_symlink_after_the_check_is_not_followed() {
    let f = fixture();
    let r = rules(&f, &SecurityConfig::default());
    std::fs::create_dir(f.ws.join("sub")).unwrap();
    std::fs::write(f.ws.join("sub/secret.txt"), "inside").unwrap();
    // The check: an inside path.
    let checked = r.resolve(&f.ws, "sub/secret.txt", Access::Read).unwrap();
    let to_write = r.resolve(&f.ws, "sub/new.txt", Access::Write).unwrap();
    // The swap: `sub` becomes a link to the outside directory.
    std::fs::rename(f.ws.join("sub"), f.ws.join("sub.old")).unwrap();
    symlink(&f.outside, f.ws.join("sub")).unwrap();
    // The use: refused, not followed.
    let err = r.open_read(&checked).unwrap_err();
    match err {
        PathError::Refused(refusal) => {
            assert_eq!(refusal.rule, "workspace_only");
            assert!(refusal.message.contains("symbolic link"), "{refusal}");
        }
        other => panic!("expected a refusal, got {other}"),
    }
    let err = r.write_atomic(&f.ws, &to_write, b"payload").unwrap_err();
    assert!(matches!(err, PathError::Refused(_)), "{err}");
    assert!(!f.outside.join("new.txt").exists());
    assert_eq!(
        std::fs::read_to_string(f.outside.join("secret.txt")).unwrap(),
        "outside secret"
    );
    // A file swapped for a link at the last component: refused too.
    let checked = r.resolve(&f.ws, "a.txt", Access::Read).unwrap();
    std::fs::remove_file(f.ws.join("a.txt")).unwrap();
    symlink(f.outside.join("secret.txt"), f.ws.join("a.txt")).unwrap();
    assert!(matches!(r.open_read(&checked), Err(PathError::Refused(_))));
    assert!(matches!(
        r.write_atomic(&f.ws, &checked, b"x"),
        Err(PathError::Refused(_))
    ));
    assert_eq!(
        std::fs::read_to_string(f.outside.join("secret.txt")).unwrap(),
        "outside secret"
    );
}

#[test]
fn hard_links_are_refused_for_reads_and_writes() {
    let f = fixture();
    let r = rules(&f, &SecurityConfig::default());
    std::fs::hard_link(f.outside.join("secret.txt"), f.ws.join("hard.txt")).unwrap();
    let checked = r.resolve(&f.ws, "hard.txt", Access::Read).unwrap();
    let Err(PathError::Refused(refusal)) = r.open_read(&checked) else {
        panic!("a hard-linked file is refused");
    };
    assert_eq!(refusal.rule, "workspace_only");
    assert!(refusal.message.contains("hard link"), "{refusal}");
    assert!(matches!(
        r.write_atomic(&f.ws, &checked, b"overwrite"),
        Err(PathError::Refused(_))
    ));
    assert_eq!(
        std::fs::read_to_string(f.outside.join("secret.txt")).unwrap(),
        "outside secret"
    );
}

#[test]
fn writes_are_atomic_create_parents_and_keep_the_mode() {
    let f = fixture();
    let r = rules(&f, &SecurityConfig::default());
    let path = r.resolve(&f.ws, "deep/er/new.txt", Access::Write).unwrap();
    assert!(r.write_atomic(&f.ws, &path, b"one").unwrap());
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "one");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
    assert!(!r.write_atomic(&f.ws, &path, b"two").unwrap());
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "two");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o640);
    // No temporary file is left behind.
    let names: Vec<_> = std::fs::read_dir(f.ws.join("deep/er"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
    // Reading a directory is an error, not a refusal.
    let dir = r.resolve(&f.ws, "deep", Access::Read).unwrap();
    assert!(matches!(r.open_read(&dir), Err(PathError::Io { .. })));
    assert_eq!(display(&f.ws, &path), "deep/er/new.txt");
    assert_eq!(display(&f.ws, &f.ws), ".");
}

#[test]
fn a_repositorys_git_directory_is_read_but_never_written() {
    let f = fixture();
    std::fs::create_dir_all(f.ws.join(".git/hooks")).unwrap();
    std::fs::write(f.ws.join(".git/config"), "[core]\n").unwrap();
    let r = rules(&f, &SecurityConfig::default());
    r.resolve(&f.ws, ".git/config", Access::Read).unwrap();
    for raw in [".git/config", ".git/hooks/pre-commit", "sub/../.git/x"] {
        assert_eq!(
            refused_rule(r.resolve(&f.ws, raw, Access::Write)),
            "git_dir",
            "{raw}"
        );
    }
    // A file merely named like it elsewhere is fine.
    r.resolve(&f.ws, "docs/.gitignore", Access::Write).unwrap();
}
