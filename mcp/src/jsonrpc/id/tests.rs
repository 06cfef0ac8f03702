//! Ids keep their exact JSON text from parse to echo, whatever their spelling: numbers beyond
//! 64 bits or double precision, fractions, exponents, `-0`, strings with escapes.

use proptest::prelude::*;
use serde_json::value::RawValue;

use super::super::{ErrorObject, Id, Incoming, ParseError, Response, parse_message};

/// The response Revka writes to a request carrying `id` (its JSON text).
fn echo(id: &str) -> String {
    let line = format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"ping"}}"#);
    let req = match parse_message(line.as_bytes()) {
        Ok(Incoming::Request(req)) => req,
        other => panic!("{id}: {other:?}"),
    };
    let result = RawValue::from_string("{}".to_owned()).unwrap();
    String::from_utf8(Response::success(req.id, result).to_line()).unwrap()
}

fn echoed(id: &str) -> String {
    format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{{}}}}"#)
}

const SIXTY_DIGITS: &str = "123456789012345678901234567890123456789012345678901234567890";

#[test]
fn ids_are_echoed_byte_for_byte() {
    let negative = format!("-{SIXTY_DIGITS}");
    for id in [
        "0",
        "7",
        "-7",
        "18446744073709551615",
        "-9223372036854775808",
        SIXTY_DIGITS,
        &negative,
        "18446744073709551616",
        "-9223372036854775809",
        "9007199254740993",
        "1.0",
        "1.50",
        "0.1",
        "1.0000000000000000000001",
        "1e2",
        "1E+2",
        "2.555555555e79",
        "5e-324",
        "1e400",
        "-1e-400",
        "-0",
        "-0.0",
        r#""""#,
        r#""call-7""#,
        r#""a\u0041\n""#,
        r#""\/""#,
        r#""é""#,
        r#""\u00e9""#,
        r#""\ud83d\ude00""#,
    ] {
        assert_eq!(echo(id), echoed(id), "{id}");
    }
}

#[test]
fn response_ids_keep_their_text() {
    for id in [SIXTY_DIGITS, "1.0", "-0", r#""r\u0041""#] {
        let line = format!(r#"{{"jsonrpc":"2.0","id":{id},"result":1}}"#);
        let Ok(Incoming::Response(resp)) = parse_message(line.as_bytes()) else {
            panic!("{id}")
        };
        assert_eq!(resp.id.unwrap().to_string(), id);
    }
}

#[test]
fn ids_of_other_types_are_still_refused() {
    for (id, kind) in [
        ("true", "boolean"),
        ("{}", "object"),
        ("[1]", "array"),
        ("null", "null"),
    ] {
        let line = format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"m"}}"#);
        match parse_message(line.as_bytes()) {
            Err(ParseError::InvalidId { kind: k }) => assert_eq!(k, kind, "{id}"),
            other => panic!("{id}: {other:?}"),
        }
    }
    // A string id must be text: a lone surrogate escape is not.
    let lone = r#"{"jsonrpc":"2.0","id":"\ud800","method":"m"}"#;
    let error = parse_message(lone.as_bytes()).unwrap_err();
    assert_eq!(
        error.to_string(),
        r#"message's "id" must be a string or a number, got a string with an invalid escape"#
    );
    assert_eq!(error.code(), ErrorObject::INVALID_REQUEST);
}

fn id(text: &str) -> Id {
    Id::from_json(&RawValue::from_string(text.to_owned()).unwrap()).unwrap()
}

#[test]
fn plain_64_bit_integers_are_numbers_and_the_rest_is_text() {
    assert_eq!(id("18446744073709551615").as_u64(), Some(u64::MAX));
    assert_eq!(id("-9223372036854775808").as_i64(), Some(i64::MIN));
    assert_eq!(id("7"), Id::from(7u64));
    for text in [SIXTY_DIGITS, "18446744073709551616", "7.0", "7e0", "-0"] {
        assert_eq!(id(text).as_u64(), None, "{text}");
        assert_eq!(id(text).as_i64(), None, "{text}");
        assert_eq!(id(text).json(), text);
    }
    assert_eq!(id(r#""a\u0041""#).as_str().as_deref(), Some("aA"));
    assert_eq!(id("7").as_str(), None);
    assert_eq!(Id::from("a\"b").json(), r#""a\"b""#);
    assert_eq!(format!("{:?}", id(r#""x""#)), r#"Id("x")"#);
    let read: Id = serde_json::from_str(SIXTY_DIGITS).unwrap();
    assert_eq!(serde_json::to_string(&read).unwrap(), SIXTY_DIGITS);
}

/// Equality is textual; the key matches a string by its value, a number by its text.
#[test]
fn keys_match_strings_by_value_and_numbers_by_text() {
    assert_ne!(id(r#""A""#), id(r#""\u0041""#));
    assert_eq!(id(r#""A""#).key(), id(r#""\u0041""#).key());
    assert_eq!(id(r#""\/\u00e9""#).key(), r#""/é""#);
    assert_eq!(id("7").key(), "7");
    assert_eq!(id(SIXTY_DIGITS).key(), SIXTY_DIGITS);
    assert_ne!(id("1").key(), id("1.0").key());
}

/// A JSON number in any spelling the grammar allows.
fn number_literal() -> impl Strategy<Value = String> {
    (
        "-?",
        "0|[1-9][0-9]{0,70}",
        "(\\.[0-9]{1,30})?",
        "([eE][+-]?[0-9]{1,4})?",
    )
        .prop_map(|(sign, int, frac, exp)| format!("{sign}{int}{frac}{exp}"))
}

/// A JSON string literal for some text, each character written as itself, as a `\u` escape
/// (a surrogate pair beyond the BMP), or as a short escape, at random.
fn string_literal() -> impl Strategy<Value = String> {
    prop::collection::vec((any::<char>(), 0..3u8), 0..12).prop_map(|chars| {
        let mut out = String::from("\"");
        for (c, how) in chars {
            let short = match c {
                '"' => Some("\\\""),
                '\\' => Some("\\\\"),
                '/' => Some("\\/"),
                '\n' => Some("\\n"),
                '\t' => Some("\\t"),
                '\r' => Some("\\r"),
                '\u{8}' => Some("\\b"),
                '\u{c}' => Some("\\f"),
                _ => None,
            };
            let must_escape = matches!(c, '"' | '\\') || c < ' ';
            match (how, short) {
                (0, _) if !must_escape => out.push(c),
                (2, Some(short)) => out.push_str(short),
                _ => {
                    let mut units = [0u16; 2];
                    for unit in c.encode_utf16(&mut units) {
                        out.push_str(&format!("\\u{unit:04x}"));
                    }
                }
            }
        }
        out.push('"');
        out
    })
}

proptest! {
    #[test]
    fn numeric_ids_echo_byte_for_byte(id in number_literal()) {
        prop_assert_eq!(echo(&id), echoed(&id));
    }

    #[test]
    fn string_ids_echo_byte_for_byte(literal in string_literal()) {
        prop_assert_eq!(echo(&literal), echoed(&literal));
        let text: String = serde_json::from_str(&literal).unwrap();
        let parsed = id(&literal);
        prop_assert_eq!(parsed.key(), serde_json::to_string(&text).unwrap());
        let decoded = parsed.as_str();
        prop_assert_eq!(decoded.as_deref(), Some(text.as_str()));
    }
}
