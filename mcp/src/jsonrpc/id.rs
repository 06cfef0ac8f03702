//! Request ids ([`Id`]), kept as the exact JSON text they came in, so that an answer carries
//! the same bytes its request did. Part of [`jsonrpc`](super).

use std::borrow::Cow;
use std::fmt;
use std::hash::{Hash, Hasher};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Number;
use serde_json::value::RawValue;

use super::parse::{json_string, plain_string};

#[cfg(test)]
mod tests;

/// A request id: a JSON number or string, kept so that it is echoed exactly as sent.
///
/// JSON-RPC 2.0 lets an id be a string, a number or `null`, and a reply must carry the same
/// value; MCP narrows it to a string or an integer, never `null`. Revka accepts any string or
/// number on a request (`null` only on a response, see [`parse_message`](super::parse_message))
/// and echoes it byte for byte: a number beyond 64 bits or double precision (`1234…` with 60
/// digits), a fraction (`1.0`), an exponent (`1E+2`), `-0` or a string written with escapes
/// (`"a\u0041"`) comes back exactly as sent, not as the double or the text a parse would make
/// of it. Every path that echoes an id uses this type: the daemon's `POST /mcp` answers, its
/// answers to servers' requests, a call cut at the gateway's ceiling, progress tokens.
///
/// An integer in `i64::MIN..=u64::MAX` written plainly (the only way JSON writes it: no sign,
/// leading zero, fraction or exponent, and not `-0`) is held as that integer: Revka's own ids
/// and nearly every client's are, and they cost no allocation. Any other id is held as its
/// JSON text.
///
/// Two ids are equal when their JSON text is: `1` and `1.0` differ, as do `"A"` and
/// `"\u0041"`. [`Id::key`] is the text with string escapes normalised, for matching an id the
/// peer may spell differently the second time (`notifications/cancelled`).
///
/// Serialise an id with serde_json's writer (`to_writer`, `to_string`, `to_vec`): it writes
/// the held text. `serde_json::to_value` and `json!` would parse it into a
/// [`Value`](serde_json::Value), whose numbers are doubles.
#[derive(Clone)]
pub struct Id(Repr);

#[derive(Clone)]
enum Repr {
    /// An integer of at most 64 bits, which JSON writes in one way only: its value is its text.
    Int(Number),
    /// Any other id, as its JSON text: a string literal (escapes and all), or a number with a
    /// fraction, an exponent, more than 64 bits, or `-0`.
    Text(Box<RawValue>),
}

impl Id {
    /// The id a JSON value makes: `Some` for a number, and for a string whose escapes are
    /// valid (a lone surrogate `"\ud800"` is not text); `None` for anything else.
    pub fn from_json(raw: &RawValue) -> Option<Id> {
        let text = raw.get();
        match text.as_bytes().first()? {
            b'"' => {
                if text.contains('\\') {
                    json_string(raw).ok()?;
                }
                Some(Id(Repr::Text(raw.to_owned())))
            }
            b'-' | b'0'..=b'9' => Some(Id::number(raw)),
            _ => None,
        }
    }

    /// The id of a JSON number's raw text.
    fn number(raw: &RawValue) -> Id {
        let text = raw.get();
        if !text.contains(['.', 'e', 'E']) && text != "-0" {
            if let Ok(n) = text.parse::<u64>() {
                return Id(Repr::Int(n.into()));
            }
            if let Ok(n) = text.parse::<i64>() {
                return Id(Repr::Int(n.into()));
            }
        }
        Id(Repr::Text(raw.to_owned()))
    }

    /// The id as a `u64`, if it is a non-negative integer of at most 64 bits.
    pub fn as_u64(&self) -> Option<u64> {
        match &self.0 {
            Repr::Int(n) => n.as_u64(),
            Repr::Text(_) => None,
        }
    }

    /// The id as an `i64`, if it is an integer in range.
    pub fn as_i64(&self) -> Option<i64> {
        match &self.0 {
            Repr::Int(n) => n.as_i64(),
            Repr::Text(_) => None,
        }
    }

    /// The text of a string id, escapes decoded (borrowed when it has none).
    pub fn as_str(&self) -> Option<Cow<'_, str>> {
        let Repr::Text(raw) = &self.0 else {
            return None;
        };
        let literal = raw.get();
        if !literal.starts_with('"') {
            return None;
        }
        match plain_string(literal) {
            Some(text) => Some(Cow::Borrowed(text)),
            // Checked when the id was made: its escapes decode.
            None => json_string(raw).ok().map(Cow::Owned),
        }
    }

    /// The id's JSON text, exactly as it will be echoed.
    pub fn json(&self) -> Cow<'_, str> {
        match &self.0 {
            Repr::Int(n) => Cow::Owned(n.to_string()),
            Repr::Text(raw) => Cow::Borrowed(raw.get()),
        }
    }

    /// The key to match this id by: its JSON text, with a string's escapes normalised (as
    /// serde_json writes the decoded text), so that `"A"` and `"\u0041"` match. Numbers are
    /// matched by their text.
    pub fn key(&self) -> Cow<'_, str> {
        match &self.0 {
            Repr::Text(raw) if raw.get().starts_with('"') && raw.get().contains('\\') => {
                match self.as_str() {
                    Some(text) => Cow::Owned(serde_json::to_string(&*text).unwrap_or_default()),
                    None => Cow::Borrowed(raw.get()),
                }
            }
            _ => self.json(),
        }
    }
}

impl From<u64> for Id {
    fn from(n: u64) -> Self {
        Id(Repr::Int(n.into()))
    }
}

impl From<i64> for Id {
    fn from(n: i64) -> Self {
        Id(Repr::Int(n.into()))
    }
}

/// A string id, written as serde_json writes the string.
impl From<&str> for Id {
    fn from(s: &str) -> Self {
        let literal = serde_json::to_string(s).expect("a string serialises");
        Id(Repr::Text(
            RawValue::from_string(literal).expect("a string literal is JSON"),
        ))
    }
}

impl From<String> for Id {
    fn from(s: String) -> Self {
        Id::from(s.as_str())
    }
}

impl PartialEq for Id {
    fn eq(&self, other: &Self) -> bool {
        match (&self.0, &other.0) {
            (Repr::Int(a), Repr::Int(b)) => a == b,
            (Repr::Text(a), Repr::Text(b)) => a.get() == b.get(),
            // A plain 64-bit integer is never held as text.
            _ => false,
        }
    }
}

impl Eq for Id {}

impl Hash for Id {
    fn hash<H: Hasher>(&self, state: &mut H) {
        match &self.0 {
            Repr::Int(n) => n.hash(state),
            Repr::Text(raw) => raw.get().hash(state),
        }
    }
}

/// Writes the id's JSON text: `7`, `1.0`, `"abc"` (quoted, escapes as sent).
impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Repr::Int(n) => fmt::Display::fmt(n, f),
            Repr::Text(raw) => f.write_str(raw.get()),
        }
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Id({self})")
    }
}

/// Writes the held text with serde_json's serialiser (see [`Id`]).
impl Serialize for Id {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match &self.0 {
            Repr::Int(n) => n.serialize(serializer),
            Repr::Text(raw) => raw.serialize(serializer),
        }
    }
}

/// Reads a string or a number, keeping its text; only serde_json's deserialiser can do so.
impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = Box::<RawValue>::deserialize(deserializer)?;
        Id::from_json(&raw).ok_or_else(|| {
            serde::de::Error::invalid_value(
                serde::de::Unexpected::Other(raw.get()),
                &"a JSON-RPC id (a string or a number)",
            )
        })
    }
}
