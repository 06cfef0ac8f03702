//! Parsing and classifying incoming lines: one serde pass over the members, then checks.

use std::borrow::Cow;

use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

use super::{ErrorObject, Id, Incoming, Notification, Request, Response, VERSION};

/// Why an incoming line is not a valid JSON-RPC message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// The line is not valid UTF-8.
    #[error("message is not valid UTF-8: {0}")]
    InvalidUtf8(#[source] std::str::Utf8Error),
    /// The line is not valid JSON, a member has the wrong shape, a member is duplicated, or the
    /// message nests deeper than serde_json's recursion limit.
    #[error("message is not valid JSON: {0}")]
    Json(#[source] serde_json::Error),
    /// The top-level value is not an object (batches are not supported).
    #[error("message must be a JSON object, got {kind}")]
    NotAnObject {
        /// The JSON type found.
        kind: &'static str,
    },
    /// The `jsonrpc` member is missing.
    #[error("message has no \"jsonrpc\" member (must be \"2.0\")")]
    MissingVersion,
    /// The `jsonrpc` member is not `"2.0"`.
    #[error("message's \"jsonrpc\" member must be \"2.0\", got {found}")]
    WrongVersion {
        /// The member's JSON text, cut to 32 bytes.
        found: String,
    },
    /// The `id` is not a string or a number (or is `null` on a request).
    #[error("message's \"id\" must be a string or a number, got {kind}")]
    InvalidId {
        /// The JSON type found (or "a string with an invalid escape").
        kind: &'static str,
    },
    /// The `method` is not a string.
    #[error("message's \"method\" must be a string, got {kind}")]
    MethodNotString {
        /// The JSON type found.
        kind: &'static str,
    },
    /// The `params` are not an object or an array.
    #[error("message's \"params\" must be an object or an array, got {kind}")]
    InvalidParams {
        /// The JSON type found.
        kind: &'static str,
    },
    /// The `error` member is not a valid error object.
    #[error("message's \"error\" is not a valid error object: {0}")]
    InvalidErrorObject(#[source] serde_json::Error),
    /// A response with both `result` and `error`.
    #[error("response has both \"result\" and \"error\"")]
    ResultAndError,
    /// A message with `method` and also `result` or `error`.
    #[error("message has both \"method\" and \"result\"/\"error\"")]
    MethodAndResult,
    /// A response without an `id` member.
    #[error("response has no \"id\" member")]
    MissingResponseId,
    /// Neither `method` nor `result`/`error`: not a request, notification or response.
    #[error("message has neither \"method\" nor \"result\"/\"error\"")]
    NotAMessage,
}

impl ParseError {
    /// The JSON-RPC error code to answer with: [`ErrorObject::PARSE_ERROR`] for bytes that are
    /// not JSON, [`ErrorObject::INVALID_REQUEST`] for JSON that is not a valid message.
    pub fn code(&self) -> i64 {
        match self {
            ParseError::InvalidUtf8(_) | ParseError::Json(_) => ErrorObject::PARSE_ERROR,
            _ => ErrorObject::INVALID_REQUEST,
        }
    }
}

/// Every member, in one pass. The `present` deserialiser keeps `null` apart from a missing member.
#[derive(Deserialize)]
struct RawMessage<'a> {
    #[serde(borrow, default, deserialize_with = "present")]
    jsonrpc: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    id: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    method: Option<&'a RawValue>,
    #[serde(default, deserialize_with = "present")]
    params: Option<Box<RawValue>>,
    #[serde(default, deserialize_with = "present")]
    result: Option<Box<RawValue>>,
    #[serde(borrow, default, deserialize_with = "present")]
    error: Option<&'a RawValue>,
}

fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// The JSON type of a valid JSON text (serde_json trims whitespace around raw values).
fn kind(json: &str) -> &'static str {
    match json.as_bytes().first() {
        Some(b'{') => "object",
        Some(b'[') => "array",
        Some(b'"') => "string",
        Some(b't' | b'f') => "boolean",
        Some(b'n') => "null",
        _ => "number",
    }
}

/// Parses and classifies one line (without its line terminator).
///
/// One pass: the members land in a struct of optional fields, `params` and `result` as raw JSON
/// (no [`Value`](serde_json::Value) tree), then the message is classified. The leniencies and
/// the nesting-depth behaviour are described in the [module documentation](super).
pub fn parse_message(line: &[u8]) -> Result<Incoming, ParseError> {
    let text = std::str::from_utf8(line).map_err(ParseError::InvalidUtf8)?;
    let trimmed = text.trim_start_matches([' ', '\t', '\n', '\r']);
    if let Some(b'[' | b'"' | b't' | b'f' | b'n' | b'-' | b'0'..=b'9') = trimmed.bytes().next() {
        // Only valid JSON has a type: `this is not json` is a parse error, not a boolean. (A raw
        // value is checked without recursion, as unknown members are, so deep nesting is fine.)
        serde_json::from_str::<&RawValue>(text).map_err(ParseError::Json)?;
        return Err(ParseError::NotAnObject {
            kind: kind(trimmed),
        });
    }
    let raw: RawMessage<'_> = serde_json::from_str(text).map_err(ParseError::Json)?;

    match raw.jsonrpc {
        None => return Err(ParseError::MissingVersion),
        Some(v) if is_version(v) => {}
        Some(v) => {
            let mut found = v.get().to_owned();
            if found.len() > 32 {
                let cut = (0..=32)
                    .rev()
                    .find(|&i| found.is_char_boundary(i))
                    .unwrap_or(0);
                found.truncate(cut);
                found.push('…');
            }
            return Err(ParseError::WrongVersion { found });
        }
    }
    // `Some(None)` is an explicit `null`.
    let id = raw.id.map(parse_id).transpose()?;
    let error = raw.error.filter(|e| e.get() != "null");

    if let Some(method) = raw.method {
        if raw.result.is_some() || error.is_some() {
            return Err(ParseError::MethodAndResult);
        }
        let method = match kind(method.get()) {
            "string" => Cow::Owned(json_string(method).map_err(ParseError::Json)?),
            kind => return Err(ParseError::MethodNotString { kind }),
        };
        let params = match raw.params {
            Some(p) if p.get() == "null" => None,
            Some(p) => match kind(p.get()) {
                "object" | "array" => Some(p),
                kind => return Err(ParseError::InvalidParams { kind }),
            },
            None => None,
        };
        return Ok(match id {
            None => Incoming::Notification(Notification { method, params }),
            Some(Some(id)) => Incoming::Request(Request { id, method, params }),
            Some(None) => return Err(ParseError::InvalidId { kind: "null" }),
        });
    }

    let result = match (raw.result, error) {
        (Some(_), Some(_)) => return Err(ParseError::ResultAndError),
        (Some(result), None) => Ok(result),
        (None, Some(error)) => Err(serde_json::from_str::<ErrorObject>(error.get())
            .map_err(ParseError::InvalidErrorObject)?),
        (None, None) => return Err(ParseError::NotAMessage),
    };
    let id = id.ok_or(ParseError::MissingResponseId)?;
    Ok(Incoming::Response(Response { id, result }))
}

/// Whether a `jsonrpc` member is `"2.0"` (also spelt with escapes).
fn is_version(raw: &RawValue) -> bool {
    raw.get() == "\"2.0\""
        || (raw.get().starts_with('"')
            && serde_json::from_str::<String>(raw.get()).is_ok_and(|s| s == VERSION))
}

/// The text of a raw JSON string. One with no escape is its own text between the quotes (a
/// raw value is valid JSON, so it holds no bare quote or control character): no parse.
pub fn json_string(raw: &RawValue) -> Result<String, serde_json::Error> {
    match plain_string(raw.get()) {
        Some(text) => Ok(text.to_owned()),
        None => serde_json::from_str(raw.get()),
    }
}

/// The text between the quotes of an escape-free JSON string literal.
pub fn plain_string(literal: &str) -> Option<&str> {
    let inner = literal.strip_prefix('"')?.strip_suffix('"')?;
    (!inner.contains(['\\', '"'])).then_some(inner)
}

/// `Ok(None)` for `null`. A number or a string is kept as its exact text ([`Id`]); a string
/// whose escapes do not decode to text (a lone surrogate, `"\ud800"`) is refused.
fn parse_id(raw: &RawValue) -> Result<Option<Id>, ParseError> {
    match kind(raw.get()) {
        "null" => Ok(None),
        "number" | "string" => Id::from_json(raw).map(Some).ok_or(ParseError::InvalidId {
            kind: "a string with an invalid escape",
        }),
        kind => Err(ParseError::InvalidId { kind }),
    }
}
