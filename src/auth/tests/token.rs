//! Token format, randomness, hashing, ids, and the constant-time comparison helper.

use std::collections::HashSet;

use super::super::NewToken;
use super::super::token::{
    TokenId, constant_time_eq, from_hex, generate_token, hash_token, to_hex,
};

#[test]
fn tokens_are_rvk_and_64_lowercase_hex_digits_and_never_repeat() {
    let tokens: Vec<String> = (0..1000)
        .map(|_| generate_token("rvk_").expect("OS randomness"))
        .collect();
    for token in &tokens {
        let hex = token.strip_prefix("rvk_").expect("rvk_ prefix");
        assert_eq!(hex.len(), 64, "{token}");
        assert!(
            hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')),
            "{token}"
        );
    }
    let unique: HashSet<&String> = tokens.iter().collect();
    assert_eq!(unique.len(), 1000);
    // 256 random bits: every hex digit shows up at every few positions across 1000 tokens.
    for position in [4, 30, 67] {
        let digits: HashSet<u8> = tokens.iter().map(|t| t.as_bytes()[position]).collect();
        assert_eq!(digits.len(), 16, "position {position}");
    }
}

#[test]
fn the_id_is_the_first_8_hex_digits_of_the_sha256() {
    // SHA-256("abc") = ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad
    let hash = hash_token("abc");
    assert_eq!(
        to_hex(&hash),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    let id = TokenId::of(&hash);
    assert_eq!(id.as_str(), "ba7816bf");
    assert_eq!(id.to_string(), "ba7816bf");
    assert_eq!(serde_json::to_string(&id).expect("json"), r#""ba7816bf""#);
}

#[test]
fn constant_time_eq_is_equality() {
    let cases: &[(&[u8], &[u8], bool)] = &[
        (b"", b"", true),
        (b"a", b"a", true),
        (&[7; 32], &[7; 32], true),
        (b"abcd", b"abce", false),
        (b"abcd", b"bbcd", false),
        (&[0; 32], &[0; 31], false),
        (b"abc", b"", false),
    ];
    for (a, b, equal) in cases {
        assert_eq!(bool::from(constant_time_eq(a, b)), *equal, "{a:?} vs {b:?}");
    }
}

#[test]
fn hex_round_trips_and_rejects_everything_else() {
    let bytes: [u8; 4] = [0x00, 0x7f, 0xa0, 0xff];
    assert_eq!(to_hex(&bytes), "007fa0ff");
    assert_eq!(from_hex::<4>("007fa0ff"), Some(bytes));
    for bad in [
        "007FA0FF",
        "007fa0f",
        "007fa0ff0",
        "007fa0fg",
        "",
        "+07fa0ff",
    ] {
        assert_eq!(from_hex::<4>(bad), None, "{bad:?}");
    }
}

#[test]
fn new_token_debug_does_not_print_the_token() {
    let token = generate_token("rvk_").expect("OS randomness");
    let new = NewToken {
        id: TokenId::of(&hash_token(&token)),
        token: token.clone(),
    };
    let debug = format!("{new:?}");
    assert!(!debug.contains(&token[4..]), "{debug}");
    assert!(debug.contains(new.id.as_str()), "{debug}");
}
