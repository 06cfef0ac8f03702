//! Coercion converts a string to a number only when the number has exactly the value the
//! string wrote, and raw arguments never lose a number on their way through Revka.

use proptest::prelude::*;
use serde_json::value::RawValue;
use serde_json::{Value, json};

use crate::wrapper::{Arguments, RawArguments, prepare, prepare_arguments};

/// What `{"v": "<text>"}` becomes under a schema whose `v` is of type `ty`, as forwarded text.
fn coerced(ty: &str, text: &str) -> String {
    let schema = json!({"type": "object", "properties": {"v": {"type": ty}}});
    let out = prepare_arguments(&schema, json!({ "v": text })).unwrap();
    out["v"].to_string()
}

#[test]
fn integer_strings_convert_when_they_fit_64_bits() {
    let mut wrong = Vec::new();
    for (text, forwarded) in [
        ("5", "5"),
        (" -12 ", "-12"),
        ("+7", "7"),
        ("007", "7"),
        ("-0", "0"),
        ("9007199254740993", "9007199254740993"),
        ("18446744073709551615", "18446744073709551615"),
        ("-9223372036854775808", "-9223372036854775808"),
        ("18446744073709551616", r#""18446744073709551616""#),
        ("-9223372036854775809", r#""-9223372036854775809""#),
        ("5.0", r#""5.0""#),
        ("5e0", r#""5e0""#),
        ("0x10", r#""0x10""#),
        ("", r#""""#),
    ] {
        let got = coerced("integer", text);
        if got != forwarded {
            wrong.push(format!("{text:?} became {got}, not {forwarded}"));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

#[test]
fn number_strings_convert_only_to_the_value_they_wrote() {
    let mut wrong = Vec::new();
    for (text, forwarded) in [
        // Integers in 64 bits stay integers, whatever their size.
        ("5", "5"),
        ("9007199254740993", "9007199254740993"),
        ("007", "7"),
        ("+7", "7"),
        // A decimal whose nearest double writes back as the same decimal.
        ("0.1", "0.1"),
        ("2.5", "2.5"),
        ("1.0", "1.0"),
        ("1.50", "1.5"),
        (".5", "0.5"),
        ("1e3", "1000.0"),
        ("1E+2", "100.0"),
        ("-1e3", "-1000.0"),
        ("100000000000000000000", "1e+20"),
        ("2.555555555e79", "2.555555555e+79"),
        ("1.7976931348623157e308", "1.7976931348623157e+308"),
        ("5e-324", "5e-324"),
        ("0e999999", "0.0"),
        // Zero keeps its sign, as a double has one.
        ("-0", "-0.0"),
        ("-0.0", "-0.0"),
        // No double has these values: the string goes to the server as it came.
        ("1.0000000000000000000001", r#""1.0000000000000000000001""#),
        ("9007199254740993.0", r#""9007199254740993.0""#),
        ("99999999999999999999", r#""99999999999999999999""#),
        ("0.30000000000000000001", r#""0.30000000000000000001""#),
        ("1e-400", r#""1e-400""#),
        ("1e400", r#""1e400""#),
        ("-1e99999999999999999999", r#""-1e99999999999999999999""#),
        // Not numbers.
        ("NaN", r#""NaN""#),
        ("inf", r#""inf""#),
        ("infinity", r#""infinity""#),
        ("1e", r#""1e""#),
        (".", r#"".""#),
        ("1.2.3", r#""1.2.3""#),
        ("five", r#""five""#),
    ] {
        let got = coerced("number", text);
        if got != forwarded {
            wrong.push(format!("{text:?} became {got}, not {forwarded}"));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

/// A string of JSON text becomes the array or object only if every number in it keeps its
/// value; strings inside it are coerced as usual.
#[test]
fn json_text_strings_convert_only_when_their_numbers_survive() {
    let sixty = "123456789012345678901234567890123456789012345678901234567890";
    for (ty, text, forwarded) in [
        ("array", "[0.1, 2, -0]", "[0.1,2,-0.0]"),
        (
            "array",
            "[1.0000000000000000000001]",
            r#""[1.0000000000000000000001]""#,
        ),
        ("array", "[1e400]", r#""[1e400]""#),
        (
            "object",
            r#"{"a": 18446744073709551615}"#,
            r#"{"a":18446744073709551615}"#,
        ),
        (
            "object",
            &format!(r#"{{"a": {sixty}}}"#),
            &format!(r#""{{\"a\": {sixty}}}""#),
        ),
        ("object", r#"{"a": "1e-400"}"#, r#"{"a":"1e-400"}"#),
    ] {
        assert_eq!(coerced(ty, text), forwarded, "{ty} {text}");
    }
}

fn raw(text: &str) -> RawArguments {
    RawArguments::new(&RawValue::from_string(text.to_owned()).unwrap()).unwrap()
}

/// What `prepare` forwards for raw arguments `text`, as text.
fn forwarded(schema: &Value, text: &str) -> String {
    let prepared = prepare(schema, Arguments::Raw(raw(text))).unwrap();
    serde_json::to_string(&prepared).unwrap()
}

/// Arguments holding a number that a parsed JSON value cannot hold (beyond 64-bit integers,
/// more digits than a double keeps, beyond a double's range) are forwarded as they came, less
/// a top-level `approved`: never with that number changed, never emptied.
#[test]
fn arguments_with_numbers_no_double_holds_are_forwarded_as_sent() {
    let integers = json!({"type": "object", "properties": {"n": {"type": "integer"}}});
    for text in [
        r#"{"n": "5", "x": 1e400}"#,
        r#"{"n": "5", "x": 123456789012345678901234567890123456789012345678901234567890}"#,
        r#"{"n": "5", "x": [1.0000000000000000000001]}"#,
        r#"{"n": "5", "x": {"deep": -1e-400}}"#,
    ] {
        assert_eq!(forwarded(&integers, text), text);
    }
    assert_eq!(
        forwarded(&integers, r#"{"n": "5", "approved": true, "x": 1e400}"#),
        r#"{"n":"5","x":1e400}"#,
        "approved is still removed"
    );
    // Numbers a double holds exactly do not stop coercion.
    assert_eq!(
        forwarded(
            &integers,
            r#"{"n": "5", "x": 0.1, "y": 18446744073709551615}"#
        ),
        r#"{"n":5,"x":0.1,"y":18446744073709551615}"#
    );
}

/// The value of decimal text `±digits × 10^exp`, with the digits' leading and trailing zeros
/// moved into the exponent: `(negative, digits, exp)`, and `(negative, "", 0)` for zero. The
/// tests' own reading of a decimal, written apart from the one under test.
fn value_of(text: &str) -> Option<(bool, String, i64)> {
    let text = text.trim();
    let (negative, rest) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let (mantissa, exp) = match rest.split_once(['e', 'E']) {
        Some((mantissa, exp)) => (mantissa, exp.parse::<i64>().ok()?),
        None => (rest, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let all = format!("{int}{frac}");
    if all.is_empty() || !all.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let significant = all.trim_start_matches('0');
    let digits = significant.trim_end_matches('0');
    if digits.is_empty() {
        return Some((negative, String::new(), 0));
    }
    let exp = exp - frac.len() as i64 + (significant.len() - digits.len()) as i64;
    Some((negative, digits.to_owned(), exp))
}

/// Decimal text of every shape: signs, leading zeros, no digits on one side of the point, long
/// mantissas, exponents far beyond a double's, surrounding spaces; and some that is not one.
fn decimal_text() -> impl Strategy<Value = String> {
    let exponent = ("[eE]", "[+-]?", 0..400u32).prop_map(|(e, sign, n)| format!("{e}{sign}{n}"));
    (
        " ?[+-]?0{0,3}",
        "[0-9]{0,25}",
        prop::option::of("\\.[0-9]{0,25}"),
        prop::option::of(exponent),
        " ?",
    )
        .prop_map(|(head, int, frac, exp, tail)| {
            format!(
                "{head}{int}{}{}{tail}",
                frac.unwrap_or_default(),
                exp.unwrap_or_default()
            )
        })
}

proptest! {
    /// A string becomes a number only with exactly its value (zero's sign included for a
    /// number, an integer having one zero); otherwise it is forwarded as it came.
    #[test]
    fn a_converted_string_has_exactly_the_value_it_wrote(text in decimal_text()) {
        let quoted = Value::from(text.as_str()).to_string();
        for ty in ["number", "integer"] {
            let out = coerced(ty, &text);
            if out == quoted {
                continue;
            }
            let (Some(wrote), Some(got)) = (value_of(&text), value_of(&out)) else {
                return Err(TestCaseError::fail(format!("{ty}: {text:?} became {out}")));
            };
            let zero = wrote.1.is_empty();
            let same = if ty == "integer" && zero { got.1.is_empty() } else { wrote == got };
            prop_assert!(same, "{}: {:?} became {}", ty, text, out);
            if ty == "integer" {
                prop_assert!(!out.contains(['.', 'e']), "an integer: {}", out);
            }
        }
    }

    /// Every 64-bit integer, however written, converts to itself.
    #[test]
    fn integers_of_64_bits_convert_to_themselves(
        n in prop_oneof![any::<i64>().prop_map(i128::from), any::<u64>().prop_map(i128::from)],
        plus in any::<bool>(),
        zeros in 0..3usize,
    ) {
        let sign = if n < 0 { "-" } else if plus { "+" } else { "" };
        let text = format!("{sign}{}{}", "0".repeat(zeros), n.unsigned_abs());
        prop_assert_eq!(coerced("integer", &text), n.to_string());
        prop_assert_eq!(coerced("number", &text), n.to_string());
    }

    /// Every finite double written as serde_json writes it converts to that double under
    /// `number`. Written as Rust writes it (shortest digits too, but a tie between two
    /// shortest spellings may be broken the other way), it converts to that double, or stays a
    /// string when serde_json would write another decimal for it.
    #[test]
    fn doubles_convert_to_themselves(f in any::<f64>().prop_filter("finite", |f| f.is_finite())) {
        let written = serde_json::Number::from_f64(f).unwrap().to_string();
        for text in [written.clone(), format!("{f}"), format!("{f:e}"), format!("{f:?}")] {
            let out = coerced("number", &text);
            if out == serde_json::to_string(&text).unwrap() {
                prop_assert_ne!(value_of(&text), value_of(&written), "{} not converted", text);
                continue;
            }
            let back: f64 = out.parse().map_err(|_| TestCaseError::fail(format!("{text} became {out}")))?;
            prop_assert_eq!(back.to_bits(), f.to_bits(), "{} became {}", text, out);
        }
    }

    /// Whatever numbers raw arguments hold, the text forwarded keeps each of them: parsed
    /// (and coerced) when every number survives a parse, else as sent.
    #[test]
    fn raw_arguments_never_change_a_number(number in decimal_text(), other in decimal_text()) {
        let Some(_) = value_of(&number).filter(|_| serde_json::from_str::<&RawValue>(number.trim()).is_ok()) else {
            return Ok(());
        };
        let number = number.trim();
        let integers = json!({"type": "object", "properties": {"n": {"type": "integer"}}});
        let text = format!(r#"{{"n": "7", "x": {number}, "s": {}}}"#, Value::from(other.as_str()));
        let out = forwarded(&integers, &text);
        let x = out.split(r#""x":"#).nth(1).and_then(|rest| rest.split([',', '}']).next());
        let x = x.map(str::trim).ok_or_else(|| TestCaseError::fail(out.clone()))?;
        prop_assert_eq!(value_of(x), value_of(number), "{} became {}", text, out);
        prop_assert!(out == text || out.contains(r#""n":7"#), "{}", out);
    }
}
