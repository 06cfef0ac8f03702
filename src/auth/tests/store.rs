//! The token store in memory: verification, `last_used_at`, listing, revoking, limits.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::super::token::{hash_token, to_hex};
use super::super::{MAX_TOKENS, RevokeError, Role, StoreError, TokenStore, Verified};
use super::{hash_with_id, home, open, write_tokens_file};

#[test]
fn verify_accepts_only_the_exact_live_token() {
    let home = home();
    let store = open(home.path());
    let issued = store.issue("laptop", Role::Operator).expect("issue");
    let other = store.issue("phone", Role::Operator).expect("issue");
    let token = issued.token.as_str();

    let flip = |i: usize| {
        let mut bytes = token.as_bytes().to_vec();
        bytes[i] = if bytes[i] == b'a' { b'b' } else { b'a' };
        String::from_utf8(bytes).expect("ascii")
    };
    let cases: Vec<(String, Option<&str>)> = vec![
        (token.to_owned(), Some(issued.id.as_str())),
        (other.token.clone(), Some(other.id.as_str())),
        (flip(4), None),
        (flip(40), None),
        (flip(token.len() - 1), None),
        (format!("Rvk_{}", &token[4..]), None),
        (token.to_uppercase(), None),
        (format!("{token} "), None),
        (token[..token.len() - 1].to_owned(), None),
        (format!("{token}0"), None),
        (String::new(), None),
        ("rvk_".to_owned(), None),
    ];
    for (presented, expected) in &cases {
        assert_eq!(
            store.verify(presented).as_ref().map(|id| id.as_str()),
            *expected,
            "{presented:?}"
        );
    }

    store.revoke(issued.id.as_str()).expect("revoke");
    assert_eq!(store.verify(token), None, "revoked");
    assert_eq!(
        store.verify(&other.token),
        Some(other.id),
        "others unaffected"
    );
}

#[test]
fn last_used_at_moves_at_most_once_a_minute_and_reaches_disk_lazily() {
    let home = home();
    let store = open(home.path());
    let issued = store.issue("cli", Role::Operator).expect("issue");
    let t0 = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let last_used = |store: &TokenStore| store.list()[0].last_used_at;

    assert_eq!(last_used(&store), None);
    assert!(!store.flush().expect("flush"), "nothing to flush yet");

    let steps = [
        (t0, t0),
        (t0 + Duration::from_secs(30), t0),
        (t0 + Duration::from_secs(59), t0),
        (
            t0 + Duration::from_millis(61_500),
            t0 + Duration::from_secs(61),
        ),
        (t0 + Duration::from_secs(62), t0 + Duration::from_secs(61)),
        (t0 - Duration::from_secs(3600), t0 + Duration::from_secs(61)),
    ];
    for (now, expected) in steps {
        assert_eq!(
            store.verify_at(&issued.token, now),
            Some(Verified {
                id: issued.id.clone(),
                role: Role::Operator
            })
        );
        assert_eq!(last_used(&store), Some(expected), "at {now:?}");
    }
    // Wrong tokens touch nothing.
    assert_eq!(
        store.verify_at("rvk_nope", t0 + Duration::from_secs(600)),
        None
    );
    assert_eq!(last_used(&store), Some(t0 + Duration::from_secs(61)));

    // Not on disk until flushed.
    assert_eq!(last_used(&open(home.path())), None);
    assert!(store.flush().expect("flush"));
    assert!(!store.flush().expect("flush"), "flushed once");
    assert_eq!(
        last_used(&open(home.path())),
        Some(t0 + Duration::from_secs(61))
    );

    // A change persists pending updates too.
    store.verify_at(&issued.token, t0 + Duration::from_secs(200));
    store.issue("another", Role::Operator).expect("issue");
    assert!(!store.flush().expect("flush"), "the issue wrote it");
    assert_eq!(
        last_used(&open(home.path())),
        Some(t0 + Duration::from_secs(200))
    );
}

#[test]
fn list_never_exposes_tokens_or_hashes() {
    let home = home();
    let store = open(home.path());
    store.ensure_owner_token(home.path()).expect("owner");
    let issued: Vec<_> = ["laptop", "phone"]
        .iter()
        .map(|label| store.issue(label, Role::Operator).expect("issue"))
        .collect();
    store.verify(&issued[0].token);
    store.revoke(issued[1].id.as_str()).expect("revoke");

    let list = store.list();
    assert_eq!(
        list.iter()
            .map(|i| (i.label.as_str(), i.revoked, i.file_token))
            .collect::<Vec<_>>(),
        [
            ("owner", false, true),
            ("laptop", false, false),
            ("phone", true, false)
        ]
    );
    let json = serde_json::to_string(&list).expect("json");
    let debug = format!("{list:?}");
    for new in &issued {
        let hash = to_hex(&hash_token(&new.token));
        for shown in [&json, &debug] {
            assert!(!shown.contains(&new.token[4..]), "token in {shown}");
            assert!(!shown.contains(&hash[8..]), "hash in {shown}");
        }
    }
    let value: serde_json::Value = serde_json::from_str(&json).expect("json");
    let keys: Vec<&str> = value[1]
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "created_at",
            "expired",
            "expires_at",
            "file_token",
            "id",
            "kind",
            "label",
            "last_used_at",
            "revoked",
            "role"
        ]
    );
    assert_eq!(value[1]["id"], issued[0].id.as_str());
    assert!(
        value[1]["created_at"]
            .as_str()
            .expect("string")
            .ends_with('Z')
    );
    assert!(value[1]["last_used_at"].is_string());
    assert!(value[2]["last_used_at"].is_null());
}

#[test]
fn revoke_takes_a_unique_prefix_of_at_least_4_hex_digits() {
    let home = home();
    write_tokens_file(
        home.path(),
        &[
            (hash_with_id("abcd1111", '0'), "one", false),
            (hash_with_id("abcd2222", '0'), "two", false),
            (hash_with_id("ef012345", '0'), "three", false),
            (hash_with_id("99990000", '0'), "old", true),
        ],
    );
    let store = open(home.path());
    let steps: &[(&str, Result<&str, &str>)] = &[
        (
            "abcd",
            Err("token id \"abcd\" is ambiguous: it matches abcd1111, abcd2222"),
        ),
        (
            "abc",
            Err("invalid token id \"abc\": expected 4 to 8 hex digits"),
        ),
        (
            "abcd11112",
            Err("invalid token id \"abcd11112\": expected 4 to 8 hex digits"),
        ),
        (
            "abcg",
            Err("invalid token id \"abcg\": expected 4 to 8 hex digits"),
        ),
        ("", Err("invalid token id \"\": expected 4 to 8 hex digits")),
        ("1234", Err("no token has an id starting with \"1234\"")),
        ("9999", Err("token 99990000 is already revoked")),
        ("ABCD1", Ok("abcd1111")),
        ("abcd1111", Err("token abcd1111 is already revoked")),
        // Only one live token matches now.
        ("abcd", Ok("abcd2222")),
        (" ef01 ", Ok("ef012345")),
    ];
    for (prefix, expected) in steps {
        let got = store
            .revoke(prefix)
            .map(|info| {
                assert!(info.revoked);
                info.id.to_string()
            })
            .map_err(|e| e.to_string());
        assert_eq!(
            got.as_ref().map(String::as_str).map_err(String::as_str),
            *expected,
            "{prefix:?}"
        );
    }
    assert!(matches!(
        store.revoke("abcd"),
        Err(RevokeError::AlreadyRevoked(_))
    ));
    // Persisted.
    let reopened = open(home.path());
    assert!(reopened.list().iter().all(|info| info.revoked));
}

#[test]
fn at_most_256_tokens_pruning_the_oldest_revoked_first() {
    let home = home();
    let records: Vec<(String, &str, bool)> = (0..MAX_TOKENS)
        .map(|i| (hash_with_id(&format!("{i:08x}"), 'f'), "bulk", false))
        .collect();
    write_tokens_file(home.path(), &records);
    let store = open(home.path());

    let full = store
        .issue("one too many", Role::Operator)
        .expect_err("full");
    assert!(matches!(full, StoreError::Full), "{full:?}");
    assert_eq!(
        full.to_string(),
        "too many tokens: 256 live tokens exist; revoke one first"
    );

    for id in ["00000007", "00000003"] {
        store.revoke(id).expect("revoke");
    }
    store
        .issue("fits", Role::Operator)
        .expect("issue after revoking");
    let ids: Vec<String> = store.list().iter().map(|i| i.id.to_string()).collect();
    assert_eq!(ids.len(), MAX_TOKENS);
    assert!(
        !ids.contains(&"00000003".to_owned()),
        "oldest revoked pruned"
    );
    assert!(ids.contains(&"00000007".to_owned()), "newer revoked kept");
    store.issue("fits too", Role::Operator).expect("issue");
    assert!(matches!(
        store.issue("no room", Role::Operator),
        Err(StoreError::Full)
    ));
    assert_eq!(open(home.path()).list().len(), MAX_TOKENS);
}

#[test]
fn labels_are_trimmed_and_validated() {
    let home = home();
    let store = open(home.path());
    let long = "x".repeat(65);
    let cases: &[(&str, Result<&str, &str>)] = &[
        ("  laptop  ", Ok("laptop")),
        ("Émile's phone", Ok("Émile's phone")),
        (&long[..64], Ok(&long[..64])),
        ("", Err("must not be empty")),
        ("   ", Err("must not be empty")),
        (&long, Err("longer than 64 characters")),
        ("a\nb", Err("contains control characters")),
    ];
    for (label, expected) in cases {
        match (store.issue(label, Role::Operator), expected) {
            (Ok(new), Ok(want)) => {
                let info = store.list().into_iter().find(|i| i.id == new.id);
                assert_eq!(info.expect("listed").label, *want);
            }
            (Err(StoreError::InvalidLabel { label: got, reason }), Err(want)) => {
                assert_eq!((got.as_str(), reason), (*label, *want));
            }
            (got, want) => panic!("{label:?}: got {got:?}, want {want:?}"),
        }
    }
    assert_eq!(store.list().len(), 3);
}

#[test]
fn created_at_is_whole_seconds_and_recent() {
    let home = home();
    let store = open(home.path());
    let before = SystemTime::now() - Duration::from_secs(1);
    store.issue("t", Role::Operator).expect("issue");
    let created = store.list()[0].created_at;
    assert!(created >= before && created <= SystemTime::now());
    let since_epoch = created.duration_since(UNIX_EPOCH).expect("after epoch");
    assert_eq!(since_epoch.subsec_nanos(), 0);
}
