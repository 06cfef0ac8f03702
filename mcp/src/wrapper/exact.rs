//! Exact numbers: when a number written as decimal text can become a JSON value (serde_json's
//! [`Number`]: a 64-bit integer or a double) and be written out again with the same value.
//! Part of [`wrapper`](super): string coercion converts a string to a number only then, a
//! string of JSON text to an array or object only when every number in it survives, and raw
//! arguments are parsed only then too (the rules are in the wrapper's docs).
//!
//! "The same value" is the decimal value of the text, sign of zero included: `1.50` and `1.5`
//! are the same, `1.0000000000000000000001` and `1.0` are not, nor `-0` and `0`. What goes to
//! the server is the text serde_json writes for the number, so the check compares the input's
//! decimal value with that text's, digit by digit; no arithmetic on doubles is involved.

use serde_json::{Number, Value};

#[cfg(test)]
mod tests;

/// A decimal integer string (`[+-]?[0-9]+`, leading zeros allowed) that fits an `i64` or a
/// `u64`, as that integer. `-0` is `0`: an integer has one zero.
pub(super) fn parse_integer(s: &str) -> Option<Value> {
    if let Ok(n) = s.parse::<i64>() {
        return Some(n.into());
    }
    s.parse::<u64>().ok().map(Value::from)
}

/// A decimal number string as the JSON number with exactly its value: an integer if it is
/// one that fits 64 bits (and is not `-0`), else the nearest double, if serde_json writes that
/// double as the same decimal value. `None` for anything else (text that is not a decimal
/// number, `NaN`, `inf`, beyond a double's range, more digits than a double keeps).
pub(super) fn parse_number(s: &str) -> Option<Value> {
    let decimal = Decimal::parse(s)?;
    if !(decimal.negative && decimal.is_zero())
        && let Some(int) = parse_integer(s)
    {
        return Some(int);
    }
    let double: f64 = s.parse().ok()?;
    let number = Number::from_f64(double)?;
    same_as_written(&decimal, &number).then_some(Value::Number(number))
}

/// Whether a JSON number token (from valid JSON text) keeps its value when parsed into a
/// [`Value`] and written out again: a parse that does not would change the number.
fn survives_parsing(token: &str) -> bool {
    let digits = token.bytes().filter(u8::is_ascii_digit).count();
    let has_exponent = token.contains(['e', 'E']);
    let is_integer = !has_exponent && !token.contains('.');
    // Up to 18 digits an integer fits an `i64`; up to 15 significant digits a decimal in the
    // range these can write is one a double round-trips (`f64::DIGITS`).
    if (is_integer && digits <= 18) || (!has_exponent && digits <= 15) {
        return true;
    }
    let (Some(decimal), Ok(number)) = (Decimal::parse(token), token.parse::<Number>()) else {
        return false;
    };
    same_as_written(&decimal, &number)
}

/// Whether JSON text holds a number that parsing it into a [`Value`] would change (see
/// [`survives_parsing`]), in one pass over its bytes (digits inside strings do not count).
pub(super) fn has_inexact_number(text: &str) -> bool {
    // Where the number being read started, while one is.
    let mut start = None;
    for (at, byte) in super::raw::outside_strings(text).chain([(text.len(), b' ')]) {
        let in_number = matches!(byte, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E');
        match start {
            Some(from) if !in_number => {
                if !survives_parsing(&text[from..at]) {
                    return true;
                }
                start = None;
            }
            None if matches!(byte, b'-' | b'0'..=b'9') => start = Some(at),
            _ => {}
        }
    }
    false
}

/// Whether serde_json writes `number` with the value `decimal` has.
fn same_as_written(decimal: &Decimal<'_>, number: &Number) -> bool {
    let written = number.to_string();
    Decimal::parse(&written).is_some_and(|w| decimal.same_value(&w))
}

/// A decimal number as written: `[+-]? digits? ('.' digits?)? ([eE] [+-]? digits)?`, with at
/// least one digit before the exponent.
struct Decimal<'a> {
    negative: bool,
    /// The digits before the point.
    int: &'a str,
    /// The digits after the point.
    frac: &'a str,
    /// The exponent, saturated far beyond any double's (a value that large is no double's).
    exp: i64,
}

impl<'a> Decimal<'a> {
    fn parse(text: &'a str) -> Option<Self> {
        let (negative, rest) = match text.as_bytes().first()? {
            b'-' => (true, &text[1..]),
            b'+' => (false, &text[1..]),
            _ => (false, text),
        };
        let (mantissa, exp) = match rest.find(['e', 'E']) {
            Some(at) => (&rest[..at], Some(&rest[at + 1..])),
            None => (rest, None),
        };
        let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if int.len() + frac.len() == 0 || !all_digits(int) || !all_digits(frac) {
            return None;
        }
        let exp = match exp {
            None => 0,
            Some(e) => {
                let (sign, digits) = match e.as_bytes().first()? {
                    b'-' => (-1, &e[1..]),
                    b'+' => (1, &e[1..]),
                    _ => (1, e),
                };
                if digits.is_empty() || !all_digits(digits) {
                    return None;
                }
                let magnitude = digits.bytes().fold(0i64, |acc, d| {
                    (acc * 10 + i64::from(d - b'0')).min(1_000_000_000_000)
                });
                sign * magnitude
            }
        };
        Some(Decimal {
            negative,
            int,
            frac,
            exp,
        })
    }

    /// Every digit, the point left out.
    fn digits(&self) -> impl DoubleEndedIterator<Item = u8> + Clone + '_ {
        self.int.bytes().chain(self.frac.bytes())
    }

    fn is_zero(&self) -> bool {
        self.digits().all(|d| d == b'0')
    }

    /// The significant digits (from the first non-zero to the last non-zero: where they
    /// start, how many) and the power of ten of the point after the first of them; `None`
    /// for zero.
    fn significant(&self) -> Option<(usize, usize, i64)> {
        let lead = self.digits().position(|d| d != b'0')?;
        let trail = self.digits().rev().position(|d| d != b'0')?;
        let count = self.int.len() + self.frac.len() - lead - trail;
        // Lengths are at most a request's size: no overflow against the saturated exponent.
        let point = self.int.len() as i64 - lead as i64 + self.exp;
        Some((lead, count, point))
    }

    /// Whether both denote the same number, zero's sign included.
    fn same_value(&self, other: &Decimal<'_>) -> bool {
        if self.negative != other.negative {
            return false;
        }
        match (self.significant(), other.significant()) {
            (None, None) => true,
            (Some((a_lead, a_count, a_point)), Some((b_lead, b_count, b_point))) => {
                a_count == b_count
                    && a_point == b_point
                    && self
                        .digits()
                        .skip(a_lead)
                        .take(a_count)
                        .eq(other.digits().skip(b_lead).take(b_count))
            }
            _ => false,
        }
    }
}
