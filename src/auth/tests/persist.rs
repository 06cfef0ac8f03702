//! The token file: round trip, 0600, atomic replacement, corrupt and unreadable files.

use std::fs;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;

use super::super::token::{hash_token, to_hex};
use super::super::{Role, StoreError, TOKENS_FILE, TokenStore};
use super::{hash_with_id, home, mode, open, write_tokens_file};

#[test]
fn round_trip_keeps_everything_with_mode_0600_and_no_clear_tokens() {
    let home = home();
    let store = open(home.path());
    let file = home.path().join(TOKENS_FILE);
    assert!(!file.exists(), "nothing written before the first change");

    let owner = store.ensure_owner_token(home.path()).expect("owner");
    let a = store.issue("laptop", Role::Viewer).expect("issue");
    let b = store.issue("phone", Role::Owner).expect("issue");
    store.revoke(b.id.as_str()).expect("revoke");
    store.verify(&a.token).expect("verify");
    store.flush().expect("flush");

    assert_eq!(mode(&file), 0o600);
    let text = fs::read_to_string(&file).expect("read");
    for new in [&a, &b] {
        assert!(!text.contains(&new.token[4..]), "clear token on disk");
        assert!(
            text.contains(&to_hex(&hash_token(&new.token))),
            "hash on disk"
        );
    }

    let reopened = open(home.path());
    assert_eq!(reopened.list(), store.list());
    let roles: Vec<_> = reopened
        .list()
        .iter()
        .map(|t| (t.role, t.file_token))
        .collect();
    assert_eq!(
        roles,
        [
            (Some(Role::Owner), true),
            (Some(Role::Viewer), false),
            (Some(Role::Owner), false)
        ]
    );
    assert_eq!(reopened.verify(&a.token), Some(a.id));
    assert_eq!(reopened.verify(&b.token), None);
    assert_eq!(reopened.list()[0].id, owner);
    let leftovers: Vec<_> = fs::read_dir(home.path())
        .expect("read dir")
        .map(|e| e.expect("entry").file_name())
        .filter(|name| name.to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

#[test]
fn the_store_file_is_always_loadable_while_tokens_are_issued() {
    let home = home();
    let store = open(home.path());
    store.issue("first", Role::Operator).expect("issue");
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let (dir, done) = (home.path().to_path_buf(), done.clone());
        thread::spawn(move || {
            let mut last = 0;
            while !done.load(Ordering::Acquire) {
                let count = TokenStore::open(&dir)
                    .expect("always loadable")
                    .list()
                    .len();
                assert!(count >= last, "went back from {last} to {count}");
                last = count;
            }
        })
    };
    for i in 0..40 {
        store
            .issue(&format!("t{i}"), Role::Operator)
            .expect("issue");
    }
    done.store(true, Ordering::Release);
    reader.join().expect("reader panicked");
    assert_eq!(open(home.path()).list().len(), 41);
}

#[test]
fn corrupt_files_are_errors_naming_the_file() {
    let good = hash_with_id("abcdef01", '0');
    let cases: Vec<(String, &str)> = vec![
        (String::new(), "EOF while parsing"),
        ("{".to_owned(), "EOF while parsing"),
        ("not json".to_owned(), "expected ident"),
        (r#"{"tokens":[]}"#.to_owned(), "missing field `version`"),
        (r#"{"version":3,"tokens":[]}"#.to_owned(), "unsupported version 3 (expected 1 or 2)"),
        (
            format!(r#"{{"version":1,"tokens":[{{"hash":"{}","label":"x","created_at":"2026-01-01T00:00:00Z"}}]}}"#, good.to_uppercase()),
            "tokens[0].hash: expected 64 lowercase hex digits",
        ),
        (
            r#"{"version":1,"tokens":[{"hash":"abcd","label":"x","created_at":"2026-01-01T00:00:00Z"}]}"#.to_owned(),
            "tokens[0].hash: expected 64 lowercase hex digits",
        ),
        (
            format!(r#"{{"version":1,"tokens":[{{"hash":"{good}","label":"x","created_at":"yesterday"}}]}}"#),
            "tokens[0].created_at: not an RFC 3339 time",
        ),
        (
            format!(r#"{{"version":1,"tokens":[{{"hash":"{good}","label":"x","created_at":"2026-01-01T00:00:00Z","last_used_at":"soon"}}]}}"#),
            "tokens[0].last_used_at: not an RFC 3339 time",
        ),
        (
            format!(r#"{{"version":1,"tokens":[{{"hash":"{good}","label":"x","created_at":"2026-01-01T00:00:00Z"}},{{"hash":"{good}","label":"y","created_at":"2026-01-01T00:00:00Z"}}]}}"#),
            "tokens[1].hash: duplicate token",
        ),
    ];
    for (contents, expected) in cases {
        let home = home();
        let file = home.path().join(TOKENS_FILE);
        fs::write(&file, &contents).expect("write");
        let err = TokenStore::open(home.path()).expect_err(&contents);
        let StoreError::Corrupt { path, message } = &err else {
            panic!("{contents:?}: {err:?}");
        };
        assert_eq!(path, &file);
        assert!(message.contains(expected), "{contents:?}: {message}");
        let shown = err.to_string();
        assert!(
            shown.starts_with(&format!("{}: corrupt gateway token file: ", file.display())),
            "{shown}"
        );
    }
}

#[test]
fn a_valid_hand_written_file_loads() {
    let home = home();
    write_tokens_file(home.path(), &[(hash_with_id("0123abcd", '1'), "x", false)]);
    let list = open(home.path()).list();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].id.as_str(), "0123abcd");
    assert_eq!(list[0].last_used_at, None);
    assert!(!list[0].file_token);
}

/// A file written before tokens had roles: the token of `gateway.token` becomes `owner`, paired
/// tokens `operator` (they keep calling tools, but cannot spawn anything); the roles reach the
/// file with the next write, so the migration happens (and is logged) once.
#[test]
fn records_without_a_role_load_with_the_least_privilege_that_keeps_them_working() {
    let home = home();
    let file = home.path().join(TOKENS_FILE);
    let record = |id: &str, label: &str, owner: bool| {
        format!(
            r#"{{"hash":"{}","label":"{label}","created_at":"2026-01-01T00:00:00Z","revoked":false,"owner":{owner}}}"#,
            hash_with_id(id, '2')
        )
    };
    let old = format!(
        r#"{{"version":1,"tokens":[{},{}]}}"#,
        record("0000aaaa", "owner", true),
        record("0000bbbb", "laptop", false)
    );
    fs::write(&file, old).expect("write");
    let store = open(home.path());
    let roles: Vec<_> = store
        .list()
        .into_iter()
        .map(|t| (t.label, t.role, t.file_token))
        .collect();
    assert_eq!(
        roles,
        [
            ("owner".to_owned(), Some(Role::Owner), true),
            ("laptop".to_owned(), Some(Role::Operator), false)
        ]
    );
    assert!(store.flush().expect("flush"), "the migration is written");
    let text = fs::read_to_string(&file).expect("read");
    assert!(text.contains(r#""role": "operator""#), "{text}");
    assert!(text.contains(r#""role": "owner""#), "{text}");
    assert!(
        !open(home.path()).flush().expect("flush"),
        "nothing left to migrate"
    );
}

#[test]
fn unreadable_and_unwritable_files_are_errors_naming_the_file() {
    let home = home();
    let file = home.path().join(TOKENS_FILE);
    fs::create_dir(&file).expect("a directory where the file should be");
    let err = TokenStore::open(home.path()).expect_err("a directory is not a token file");
    assert!(
        matches!(&err, StoreError::Read { path, .. } if *path == file),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .starts_with(&format!("cannot read {}: ", file.display()))
    );

    let gone = home.path().join("missing");
    let store = TokenStore::open(&gone).expect("no file is no tokens");
    let err = store
        .issue("x", Role::Operator)
        .expect_err("the directory does not exist");
    let expected = gone.join(TOKENS_FILE);
    assert!(
        matches!(&err, StoreError::Write { path, .. } if *path == expected),
        "{err:?}"
    );
    assert!(store.list().is_empty(), "a failed write changes nothing");
}
