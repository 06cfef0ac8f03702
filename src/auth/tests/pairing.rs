//! Pairing codes: format, redemption with the code's role, one use, expiry, normalisation, the
//! outstanding bound, the global budget of failed guesses.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::super::pairing::{ALPHABET, normalise};
use super::super::{
    DEFAULT_PAIRING_TTL, MAX_FAILED_REDEMPTIONS, MAX_OUTSTANDING_CODES, PairError, PairingCodes,
    REDEMPTION_WINDOW, Role, StoreError, TokenStore,
};
use super::{home, open};

fn codes() -> (tempfile::TempDir, Arc<TokenStore>, PairingCodes) {
    let home = home();
    let store = open(home.path());
    let codes = PairingCodes::new(store.clone());
    (home, store, codes)
}

#[test]
fn codes_are_8_unambiguous_symbols_with_a_dash() {
    let (_home, _store, codes) = codes();
    let mut seen = std::collections::HashSet::new();
    for _ in 0..300 {
        let code = codes.issue(DEFAULT_PAIRING_TTL);
        assert_eq!(code.len(), 9, "{code}");
        assert_eq!(&code[4..5], "-", "{code}");
        for b in code.bytes().filter(|&b| b != b'-') {
            assert!(ALPHABET.contains(&b), "{code}");
            assert!(!b"0O1IL".contains(&b), "{code}");
        }
        seen.insert(code);
    }
    assert!(
        seen.len() > 295,
        "codes repeat: {} unique of 300",
        seen.len()
    );
    assert_eq!(codes.outstanding(), MAX_OUTSTANDING_CODES);
    assert_eq!(ALPHABET.len(), 31);
}

#[test]
fn a_code_is_redeemed_once_for_a_working_token() {
    let (_home, store, codes) = codes();
    let code = codes.issue(DEFAULT_PAIRING_TTL);
    let redeemed = codes.redeem(&code, " tablet ").expect("redeem");
    assert_eq!(
        redeemed.role,
        Role::Viewer,
        "a code is for a viewer by default"
    );
    let id = store.verify(&redeemed.token).expect("the new token works");
    let info = store
        .list()
        .into_iter()
        .find(|i| i.id == id)
        .expect("listed");
    assert_eq!(
        (info.label.as_str(), info.file_token, info.role),
        ("tablet", false, Some(Role::Viewer))
    );

    assert!(matches!(
        codes.redeem(&code, "again"),
        Err(PairError::Invalid)
    ));
    assert_eq!(codes.outstanding(), 0);
    assert_eq!(store.list().len(), 1);
}

#[test]
fn codes_expire_after_their_ttl() {
    let (_home, _store, codes) = codes();
    let t0 = Instant::now();
    let ttl = DEFAULT_PAIRING_TTL;
    let cases = [
        (Duration::ZERO, true),
        (ttl - Duration::from_secs(1), true),
        (ttl, false),
        (ttl + Duration::from_secs(3600), false),
    ];
    for (after, valid) in cases {
        let code = codes.issue_at(Role::Viewer, ttl, t0);
        let got = codes.redeem_at(&code, "x", t0 + after);
        match (got, valid) {
            (Ok(_), true) | (Err(PairError::Expired), false) => {}
            (got, _) => panic!("after {after:?}: {got:?}"),
        }
        // Consumed either way.
        let again = codes.redeem_at(&code, "x", t0 + after);
        assert!(matches!(again, Err(PairError::Invalid)), "{again:?}");
    }
    assert_eq!(
        PairError::Expired.to_string(),
        "the pairing code has expired; ask for a new one"
    );

    // Huge TTLs are capped at 24 hours rather than overflowing.
    let code = codes.issue_at(Role::Viewer, Duration::MAX, t0);
    let late = codes.redeem_at(&code, "x", t0 + Duration::from_secs(25 * 3600));
    assert!(matches!(late, Err(PairError::Expired)), "{late:?}");
}

#[test]
fn codes_are_normalised_before_comparison() {
    let cases: &[(&str, Option<&str>)] = &[
        ("7KQ4-MX2P", Some("7KQ4MX2P")),
        ("7kq4-mx2p", Some("7KQ4MX2P")),
        ("7KQ4MX2P", Some("7KQ4MX2P")),
        (" 7KQ4 MX2P ", Some("7KQ4MX2P")),
        ("7-K-Q-4--M-X-2-P", Some("7KQ4MX2P")),
        ("7KQ4\tMX2P\n", Some("7KQ4MX2P")),
        ("7KQ4-MX2", None),
        ("7KQ4-MX2PP", None),
        ("", None),
        ("----", None),
        ("7KQ4-MX2é", None),
    ];
    for (input, expected) in cases {
        let got = normalise(input);
        let got = got.as_ref().map(|c| std::str::from_utf8(c).expect("ascii"));
        assert_eq!(got, *expected, "{input:?}");
    }

    let (_home, store, codes) = codes();
    for variant in [
        |c: &str| c.to_lowercase(),
        |c: &str| c.replace('-', ""),
        |c: &str| c.replace('-', " "),
        |c: &str| format!("  {}  ", c.to_lowercase().replace('-', " - ")),
    ] {
        let code = codes.issue(DEFAULT_PAIRING_TTL);
        let redeemed = codes.redeem(&variant(&code), "x").expect(&code);
        assert!(store.verify(&redeemed.token).is_some());
    }
}

#[test]
fn unknown_codes_and_bad_labels() {
    let (_home, _store, codes) = codes();
    let code = codes.issue(DEFAULT_PAIRING_TTL);
    let other = if code.starts_with('2') {
        "3333-3333"
    } else {
        "2222-2222"
    };
    for wrong in [other, "", "nope", "0000-0000"] {
        assert!(
            matches!(codes.redeem(wrong, "x"), Err(PairError::Invalid)),
            "{wrong:?}"
        );
    }
    assert_eq!(PairError::Invalid.to_string(), "invalid pairing code");

    // A bad label is rejected without burning the code.
    let err = codes.redeem(&code, "  ").expect_err("empty label");
    assert!(
        matches!(err, PairError::Store(StoreError::InvalidLabel { .. })),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "invalid token label \"  \": must not be empty"
    );
    codes
        .redeem(&code, "ok")
        .expect("the code survived the bad label");
}

#[test]
fn at_most_8_codes_are_outstanding_and_the_oldest_is_dropped() {
    let (_home, _store, codes) = codes();
    let t0 = Instant::now();
    let issued: Vec<String> = (0..=MAX_OUTSTANDING_CODES)
        .map(|_| codes.issue_at(Role::Viewer, DEFAULT_PAIRING_TTL, t0))
        .collect();
    assert_eq!(codes.outstanding(), MAX_OUTSTANDING_CODES);
    assert!(matches!(
        codes.redeem_at(&issued[0], "x", t0),
        Err(PairError::Invalid)
    ));
    for code in &issued[1..] {
        codes.redeem_at(code, "x", t0).expect(code);
    }
    assert_eq!(codes.outstanding(), 0);

    // Expired codes make room first.
    codes.issue_at(Role::Viewer, Duration::from_secs(1), t0);
    codes.issue_at(Role::Viewer, Duration::from_secs(1), t0);
    codes.issue_at(
        Role::Viewer,
        DEFAULT_PAIRING_TTL,
        t0 + Duration::from_secs(2),
    );
    assert_eq!(codes.outstanding(), 1);
    assert!(!format!("{codes:?}").contains('-'), "Debug shows no codes");
}

#[test]
fn a_code_gives_its_token_the_role_it_was_minted_for() {
    let (_home, store, codes) = codes();
    for role in Role::ALL {
        let code = codes.issue_for(role, DEFAULT_PAIRING_TTL);
        let redeemed = codes.redeem(&code, "device").expect("redeem");
        assert_eq!(redeemed.role, role);
        let verified = store.verify_caller(&redeemed.token).expect("works");
        assert_eq!(verified.role, role);
        assert!(
            !format!("{redeemed:?}").contains(&redeemed.token[4..]),
            "Debug shows no token"
        );
    }
}

/// 40-bit codes stay out of reach of guessing from any number of sources: the 10th failed
/// guess within a minute, from anywhere, burns every outstanding code, and later guesses are
/// told so; fewer failures, spread out, burn nothing; a new code starts over.
#[test]
fn ten_failed_guesses_in_a_minute_burn_every_outstanding_code() {
    let (_home, _store, codes) = codes();
    let t0 = Instant::now();
    let good = codes.issue_at(Role::Operator, DEFAULT_PAIRING_TTL, t0);
    let other = codes.issue_at(Role::Viewer, DEFAULT_PAIRING_TTL, t0);
    let wrong = |i: usize| {
        // Well-formed codes that are not outstanding.
        let c = char::from(b"23456789ABCDEFGH"[i % 16]);
        let guess = format!("{c}{c}{c}{c}-{c}{c}{c}Z");
        assert!(guess != good && guess != other);
        guess
    };
    // Spread over more than a window: nothing is burned.
    let step = REDEMPTION_WINDOW / u32::try_from(MAX_FAILED_REDEMPTIONS - 1).expect("small")
        + Duration::from_millis(1);
    for i in 0..MAX_FAILED_REDEMPTIONS + 5 {
        let at = t0 + step * u32::try_from(i).expect("small");
        let got = codes.redeem_at(&wrong(i), "x", at);
        assert!(matches!(got, Err(PairError::Invalid)), "{i}: {got:?}");
    }
    assert_eq!(codes.outstanding(), 2, "spread-out failures burn nothing");

    // Ten within a window: both codes are burned, with a message that says so.
    let t1 = t0 + REDEMPTION_WINDOW * 10;
    for i in 0..MAX_FAILED_REDEMPTIONS - 1 {
        let got = codes.redeem_at(&wrong(i), "x", t1);
        assert!(matches!(got, Err(PairError::Invalid)), "{i}: {got:?}");
        assert_eq!(codes.outstanding(), 2);
    }
    let got = codes.redeem_at(&wrong(0), "x", t1);
    assert!(matches!(got, Err(PairError::Burned)), "{got:?}");
    assert_eq!(codes.outstanding(), 0);
    let got = codes.redeem_at(&good, "x", t1);
    assert!(
        matches!(got, Err(PairError::Burned)),
        "the right code is gone too"
    );
    assert!(got.unwrap_err().to_string().contains("`revka pair`"));

    // A new code works, and failures count from zero again.
    let fresh = codes.issue_at(Role::Viewer, DEFAULT_PAIRING_TTL, t1);
    let got = codes.redeem_at(&wrong(1), "x", t1);
    assert!(matches!(got, Err(PairError::Invalid)), "{got:?}");
    codes
        .redeem_at(&fresh, "x", t1)
        .expect("the new code works");
}
