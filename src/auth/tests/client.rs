//! Client tokens in the store: a kind apart from gateway tokens, scopes, expiry on an injected
//! clock, revocation, the file (version 2 only with client tokens; old files load), the cap.

use std::fs;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::super::{
    CLIENT_TOKEN_PREFIX, ClientGrant, MAX_CLIENT_TOKEN_TTL, MAX_TOKENS, RevokeError, Role,
    StoreError, TOKENS_FILE, TokenKind, ToolScope, Verified,
};
use super::{hash_with_id, home, open, write_tokens_file};

fn scope(patterns: &[&str]) -> ToolScope {
    ToolScope::new(patterns.iter().copied()).expect("valid scope")
}

/// A fixed instant, so that expiry is decided by the test's clock alone.
fn t0() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

#[test]
fn client_and_gateway_tokens_never_stand_in_for_each_other() {
    let home = home();
    let store = open(home.path());
    let owner_id = store.ensure_owner_token(home.path()).expect("owner");
    let owner = super::super::read_owner_token(home.path()).expect("owner token");
    let mut gateway = vec![(owner_id, Role::Owner, owner)];
    for role in Role::ALL {
        let new = store.issue(role.as_str(), role).expect("issue");
        gateway.push((new.id, role, new.token));
    }
    let open_client = store.issue_client("zed", None, None).expect("client");
    let scoped = store
        .issue_client("ci", Some(scope(&["fs__*", "health"])), None)
        .expect("client");

    for (id, role, token) in &gateway {
        assert!(token.starts_with("rvk_"), "{token}");
        assert_eq!(
            store.verify_caller(token),
            Some(Verified {
                id: id.clone(),
                role: *role
            })
        );
        assert_eq!(
            store.verify_client(token),
            None,
            "{role} is no client token"
        );
    }
    for (new, name, tools) in [
        (&open_client, "zed", None),
        (&scoped, "ci", Some(scope(&["fs__*", "health"]))),
    ] {
        let hex = new
            .token
            .strip_prefix(CLIENT_TOKEN_PREFIX)
            .expect("rvkc_ prefix");
        assert_eq!(hex.len(), 64);
        assert!(hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')));
        assert_eq!(store.verify_caller(&new.token), None, "no gateway token");
        assert_eq!(store.verify(&new.token), None);
        assert_eq!(
            store.verify_client(&new.token),
            Some(ClientGrant {
                id: new.id.clone(),
                name: name.to_owned(),
                scope: tools,
                expires_at: None,
            })
        );
    }
    // Only the exact token: one changed digit, the gateway prefix, a cut are nothing.
    let token = &scoped.token;
    let mut flipped = token.clone().into_bytes();
    flipped[40] = if flipped[40] == b'a' { b'b' } else { b'a' };
    for wrong in [
        String::from_utf8(flipped).expect("ascii"),
        token.replacen(CLIENT_TOKEN_PREFIX, "rvk_", 1),
        token[..token.len() - 1].to_owned(),
        token.to_uppercase(),
        String::new(),
    ] {
        assert_eq!(store.verify_client(&wrong), None, "{wrong:?}");
    }

    let kinds: Vec<(TokenKind, Option<Role>, Option<Vec<String>>)> = store
        .list()
        .into_iter()
        .map(|t| (t.kind, t.role, t.tools.map(Vec::from)))
        .collect();
    assert_eq!(kinds.len(), 6);
    assert!(
        kinds[..4]
            .iter()
            .all(|(kind, role, tools)| *kind == TokenKind::Gateway
                && role.is_some()
                && tools.is_none())
    );
    assert_eq!(kinds[4], (TokenKind::Client, None, None));
    assert_eq!(
        kinds[5],
        (
            TokenKind::Client,
            None,
            Some(vec!["fs__*".to_owned(), "health".to_owned()])
        )
    );
}

#[test]
fn client_tokens_expire_at_their_time_by_the_clock_given() {
    let home = home();
    let store = open(home.path());
    let hour = Duration::from_secs(3600);
    // A fraction of a second is dropped: expiry is whole seconds, like every time stored.
    let new = store
        .issue_client_at("ci", None, Some(hour + Duration::from_millis(500)), t0())
        .expect("issue");
    let never = store
        .issue_client_at("zed", None, None, t0())
        .expect("issue");

    let at = |offset: Duration| store.verify_client_at(&new.token, t0() + offset);
    assert!(at(Duration::ZERO).is_some());
    assert!(at(hour - Duration::from_secs(1)).is_some());
    assert_eq!(at(hour), None, "expired at its time");
    assert_eq!(at(hour * 24), None);
    assert!(
        store
            .verify_client_at(&never.token, t0() + hour * 24 * 3650)
            .is_some(),
        "no expiry: never expires"
    );

    let info = |now: SystemTime| {
        store
            .list_at(now)
            .into_iter()
            .find(|t| t.id == new.id)
            .expect("listed")
    };
    assert_eq!(info(t0()).expires_at, Some(t0() + hour));
    assert!(!info(t0()).expired);
    assert!(info(t0() + hour).expired);
    assert_eq!(
        info(t0()).last_used_at,
        Some(t0() + hour - Duration::from_secs(1)),
        "uses are recorded"
    );
    // The expired token can still be revoked, and nothing else changed.
    store
        .revoke(new.id.as_str())
        .expect("revoke an expired token");

    for (ttl, expected) in [
        (
            Duration::ZERO,
            "invalid expiry 0s: must be at least 1 second",
        ),
        (
            Duration::from_millis(999),
            "invalid expiry 999ms: must be at least 1 second",
        ),
        (
            MAX_CLIENT_TOKEN_TTL + Duration::from_secs(1),
            "must be at most 10 years (leave it out for a token that never expires)",
        ),
    ] {
        let error = store
            .issue_client_at("x", None, Some(ttl), t0())
            .expect_err("invalid expiry");
        assert!(
            matches!(error, StoreError::InvalidExpiry { .. }),
            "{error:?}"
        );
        assert!(error.to_string().ends_with(expected), "{error}");
    }
    store
        .issue_client_at("longest", None, Some(MAX_CLIENT_TOKEN_TTL), t0())
        .expect("10 years is allowed");
}

#[test]
fn client_tokens_are_revoked_like_gateway_tokens() {
    let home = home();
    let store = open(home.path());
    let client = store.issue_client("zed", None, None).expect("issue");
    let gateway = store.issue("laptop", Role::Operator).expect("issue");
    let revoked = store.revoke(client.id.as_str()).expect("revoke");
    assert!(revoked.revoked);
    assert_eq!(revoked.kind, TokenKind::Client);
    assert_eq!(store.verify_client(&client.token), None);
    assert!(matches!(
        store.revoke(client.id.as_str()),
        Err(RevokeError::AlreadyRevoked(id)) if id == client.id
    ));
    assert!(store.verify(&gateway.token).is_some(), "others unaffected");
    assert_eq!(open(home.path()).verify_client(&client.token), None);
}

#[test]
fn client_tokens_round_trip_through_the_file_as_version_2() {
    let home = home();
    let file = home.path().join(TOKENS_FILE);
    let store = open(home.path());
    store.ensure_owner_token(home.path()).expect("owner");
    store.issue("laptop", Role::Viewer).expect("issue");
    let text = fs::read_to_string(&file).expect("read");
    assert!(text.contains(r#""version": 1"#), "no client token: {text}");
    for key in ["kind", "tools", "expires_at"] {
        assert!(!text.contains(key), "the format of old files: {text}");
    }

    let scoped = store
        .issue_client_at(
            "ci",
            Some(scope(&["fs__*", "time__get_current_time"])),
            Some(Duration::from_secs(86_400)),
            t0(),
        )
        .expect("issue");
    let open_client = store.issue_client("zed", None, None).expect("issue");
    store.verify_client(&open_client.token).expect("verify");
    store.flush().expect("flush");

    let text = fs::read_to_string(&file).expect("read");
    assert!(text.contains(r#""version": 2"#), "{text}");
    assert!(text.contains(r#""kind": "client""#), "{text}");
    assert!(
        text.contains(
            "\"tools\": [\n        \"fs__*\",\n        \"time__get_current_time\"\n      ]"
        ),
        "{text}"
    );
    assert!(
        text.contains(r#""expires_at": "2027-01-16T08:00:00Z""#),
        "{text}"
    );
    for new in [&scoped, &open_client] {
        assert!(!text.contains(&new.token[5..]), "clear token on disk");
    }
    let client_records = text.split(r#""kind": "client""#).count() - 1;
    assert_eq!(client_records, 2);

    let reopened = open(home.path());
    assert_eq!(reopened.list_at(t0()), store.list_at(t0()));
    assert_eq!(
        reopened
            .verify_client_at(&scoped.token, t0())
            .and_then(|g| g.scope)
            .map(Vec::from),
        Some(vec![
            "fs__*".to_owned(),
            "time__get_current_time".to_owned()
        ])
    );
    assert_eq!(reopened.verify_caller(&scoped.token), None);
    assert!(reopened.verify_client(&open_client.token).is_some());
}

#[test]
fn an_old_file_loads_and_its_tokens_stay_gateway_tokens() {
    let home = home();
    let records = [
        (hash_with_id("0000aaaa", 'a'), "laptop", false),
        (hash_with_id("0000bbbb", 'b'), "phone", true),
    ];
    write_tokens_file(home.path(), &records);
    let store = open(home.path());
    let listed = store.list();
    assert_eq!(listed.len(), 2);
    for info in &listed {
        assert_eq!(info.kind, TokenKind::Gateway);
        assert_eq!(info.tools, None);
        assert_eq!(info.expires_at, None);
        assert!(!info.expired);
    }
    // A client token issued now joins them; the file becomes version 2 and still holds both.
    store.issue_client("zed", None, None).expect("issue");
    let reopened = open(home.path());
    let kinds: Vec<TokenKind> = reopened.list().into_iter().map(|t| t.kind).collect();
    assert_eq!(
        kinds,
        [TokenKind::Gateway, TokenKind::Gateway, TokenKind::Client]
    );
}

#[test]
fn a_client_record_that_is_not_what_revka_writes_is_refused_with_its_place() {
    let hash = "ab".repeat(32);
    let record = |extra: &str| {
        format!(
            r#"{{"version":2,"tokens":[{{"hash":"{hash}","label":"x","created_at":"2026-01-01T00:00:00Z"{extra}}}]}}"#
        )
    };
    let cases = [
        (
            record(r#","kind":"client","role":"owner""#),
            "tokens[0].role: a client token has no role",
        ),
        (
            record(r#","kind":"client","owner":true"#),
            "tokens[0].owner: a client token is never the owner token",
        ),
        (
            record(r#","kind":"robot""#),
            r#"tokens[0].kind: unknown kind "robot" (expected "gateway" or "client")"#,
        ),
        (
            record(r#","role":"viewer","tools":["fs__*"]"#),
            "tokens[0].tools: only a client token has a tool scope",
        ),
        (
            record(r#","kind":"client","tools":["a*b"]"#),
            "tokens[0].tools: tools[0]: invalid pattern \"a*b\"",
        ),
        (
            record(r#","kind":"client","tools":[]"#),
            "tokens[0].tools: tools: a tool scope needs at least one pattern",
        ),
        (
            record(r#","kind":"client","expires_at":"tomorrow""#),
            "tokens[0].expires_at: not an RFC 3339 time",
        ),
        (
            r#"{"version":3,"tokens":[]}"#.to_owned(),
            "unsupported version 3 (expected 1 or 2)",
        ),
    ];
    for (json, expected) in cases {
        let home = home();
        fs::write(home.path().join(TOKENS_FILE), &json).expect("write");
        let error = super::super::TokenStore::open(home.path()).expect_err("corrupt");
        assert!(matches!(error, StoreError::Corrupt { .. }), "{error:?}");
        assert!(error.to_string().contains(expected), "{json}: {error}");
    }
}

#[test]
fn the_cap_counts_both_kinds_and_prunes_expired_client_tokens_first() {
    let home = home();
    let store = open(home.path());
    let hour = Duration::from_secs(3600);
    let expiring = store
        .issue_client_at("short-lived", None, Some(hour), t0())
        .expect("issue");
    let live = store.issue_client("zed", None, None).expect("issue");
    drop(store);
    // Fill the rest of the cap with gateway tokens, written directly.
    let text = fs::read_to_string(home.path().join(TOKENS_FILE)).expect("read");
    let file: serde_json::Value = serde_json::from_str(&text).expect("json");
    let mut tokens = file["tokens"].as_array().expect("tokens").clone();
    for i in tokens.len()..MAX_TOKENS {
        tokens.push(serde_json::json!({
            "hash": hash_with_id(&format!("{i:08x}"), 'f'),
            "label": "bulk",
            "created_at": "2026-01-01T00:00:00Z",
            "role": "viewer",
        }));
    }
    let full = serde_json::json!({ "version": 2, "tokens": tokens });
    fs::write(home.path().join(TOKENS_FILE), full.to_string()).expect("write");
    let store = open(home.path());
    assert_eq!(store.list().len(), MAX_TOKENS);

    // While the short-lived token is live, the store is full for both kinds.
    let before = t0() + hour - Duration::from_secs(1);
    assert!(matches!(
        store.issue_client_at("one too many", None, None, before),
        Err(StoreError::Full)
    ));
    // Once it has expired, it is pruned to make room; the live client token stays.
    let new = store
        .issue_client_at("fits", None, None, t0() + hour)
        .expect("issue after expiry");
    let ids: Vec<_> = store.list().into_iter().map(|t| t.id).collect();
    assert_eq!(ids.len(), MAX_TOKENS);
    assert!(!ids.contains(&expiring.id), "the expired token was pruned");
    assert!(ids.contains(&live.id) && ids.contains(&new.id));
    assert!(matches!(
        store.issue("no room", Role::Viewer),
        Err(StoreError::Full)
    ));
}
