//! JSON-RPC 2.0 messages, as MCP uses them.
//!
//! Outgoing messages ([`Request`], [`Notification`], [`Response`]) serialise to one line of
//! compact JSON with [`Request::to_line`] and friends. Incoming lines are classified by
//! [`parse_message`] in one pass; `params` and `result` stay raw JSON ([`RawValue`]) so a result
//! can be forwarded to a client without ever building a [`Value`] tree.
//!
//! Request ids ([`Id`]) keep the exact JSON text they came as, so that every answer carries its
//! request's id byte for byte (a 60-digit number is not turned into a double).
//!
//! Leniencies, each deliberate: `"params": null` is read as no params and `"error": null` as no
//! error (some servers send `"error": null` next to a result); unknown members are ignored; a
//! response's id may be `null` (the JSON-RPC reply to a request whose id could not be read).
//! Batches (top-level arrays) are rejected: MCP removed them.
//!
//! Nesting depth: the members this layer interprets (the top level, `id`, `method`, `error`)
//! are parsed with serde_json's recursion limit, so a deeply nested message is an error, never a
//! stack overflow. `params` and `result` are skipped by serde_json's iterative scanner and kept
//! opaque: arbitrarily deep values there are accepted without recursion, and whoever later
//! deserialises them gets serde_json's recursion limit error.

mod id;
mod parse;
#[cfg(test)]
mod tests;

use std::borrow::Cow;

use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;
use serde_json::value::RawValue;

pub use id::Id;
pub use parse::{ParseError, json_string, parse_message, plain_string};

/// The JSON-RPC protocol version: the value of every message's `jsonrpc` member.
pub const VERSION: &str = "2.0";

/// A JSON-RPC error object: the `error` member of a failed [`Response`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[error("JSON-RPC error {code}: {message}")]
pub struct ErrorObject {
    /// The error code; see the associated constants for the reserved ones.
    pub code: i64,
    /// A short description of the error.
    pub message: String,
    /// Additional information; `"data": null` is read as `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

impl ErrorObject {
    /// Invalid JSON was received.
    pub const PARSE_ERROR: i64 = -32700;
    /// The JSON sent is not a valid request object.
    pub const INVALID_REQUEST: i64 = -32600;
    /// The method does not exist or is not available.
    pub const METHOD_NOT_FOUND: i64 = -32601;
    /// Invalid method parameters.
    pub const INVALID_PARAMS: i64 = -32602;
    /// Internal JSON-RPC error.
    pub const INTERNAL_ERROR: i64 = -32603;

    /// An error with this code and message and no data.
    pub fn new(code: i64, message: impl Into<String>) -> Self {
        ErrorObject {
            code,
            message: message.into(),
            data: None,
        }
    }

    /// This error with `data` attached.
    pub fn with_data(mut self, data: Value) -> Self {
        self.data = Some(data);
        self
    }

    /// A [`PARSE_ERROR`](Self::PARSE_ERROR).
    pub fn parse_error(message: impl Into<String>) -> Self {
        Self::new(Self::PARSE_ERROR, message)
    }

    /// An [`INVALID_REQUEST`](Self::INVALID_REQUEST).
    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(Self::INVALID_REQUEST, message)
    }

    /// A [`METHOD_NOT_FOUND`](Self::METHOD_NOT_FOUND) naming the method.
    pub fn method_not_found(method: &str) -> Self {
        Self::new(
            Self::METHOD_NOT_FOUND,
            format!("method not found: {method}"),
        )
    }

    /// An [`INVALID_PARAMS`](Self::INVALID_PARAMS).
    pub fn invalid_params(message: impl Into<String>) -> Self {
        Self::new(Self::INVALID_PARAMS, message)
    }

    /// An [`INTERNAL_ERROR`](Self::INTERNAL_ERROR).
    pub fn internal_error(message: impl Into<String>) -> Self {
        Self::new(Self::INTERNAL_ERROR, message)
    }
}

/// A request: a call the peer answers with a [`Response`] carrying the same id.
#[derive(Debug, Clone)]
pub struct Request {
    /// The id the response will carry.
    pub id: Id,
    /// The method name.
    pub method: Cow<'static, str>,
    /// The parameters (an object or an array), as raw JSON.
    pub params: Option<Box<RawValue>>,
}

/// A notification: a one-way message, never answered.
#[derive(Debug, Clone)]
pub struct Notification {
    /// The method name.
    pub method: Cow<'static, str>,
    /// The parameters (an object or an array), as raw JSON.
    pub params: Option<Box<RawValue>>,
}

/// A response to a [`Request`].
#[derive(Debug, Clone)]
pub struct Response {
    /// The id of the request answered; `None` is JSON `null`, allowed only in an error response to
    /// a request whose id could not be read.
    pub id: Option<Id>,
    /// The result as raw JSON, or the error.
    pub result: Result<Box<RawValue>, ErrorObject>,
}

/// A classified incoming message.
#[derive(Debug, Clone)]
pub enum Incoming {
    /// A request from the peer, which expects a response.
    Request(Request),
    /// A notification from the peer.
    Notification(Notification),
    /// A response to one of our requests.
    Response(Response),
}

impl Request {
    /// A request; `params` is raw JSON, e.g. from [`serde_json::value::to_raw_value`].
    pub fn new(
        id: impl Into<Id>,
        method: impl Into<Cow<'static, str>>,
        params: Option<Box<RawValue>>,
    ) -> Self {
        Request {
            id: id.into(),
            method: method.into(),
            params,
        }
    }

    /// The request as one line of compact JSON, without the trailing newline.
    ///
    /// The line never contains CR or LF: serde_json escapes them in strings, and any in raw
    /// `params` (a pretty-printed value, e.g. from a multi-line SSE `data` field) are insignificant
    /// whitespace and become spaces.
    pub fn to_line(&self) -> Vec<u8> {
        to_line(self, raw_len(&self.params) + self.method.len())
    }
}

impl Notification {
    /// A notification; `params` is raw JSON, e.g. from [`serde_json::value::to_raw_value`].
    pub fn new(method: impl Into<Cow<'static, str>>, params: Option<Box<RawValue>>) -> Self {
        Notification {
            method: method.into(),
            params,
        }
    }

    /// The notification as one line of JSON, without the trailing newline.
    pub fn to_line(&self) -> Vec<u8> {
        to_line(self, raw_len(&self.params) + self.method.len())
    }
}

impl Response {
    /// A successful response carrying `result` (raw JSON).
    pub fn success(id: Id, result: Box<RawValue>) -> Self {
        Response {
            id: Some(id),
            result: Ok(result),
        }
    }

    /// An error response; `id` is `None` only if the request's id could not be read.
    pub fn error(id: Option<Id>, error: ErrorObject) -> Self {
        Response {
            id,
            result: Err(error),
        }
    }

    /// The response as one line of JSON, without the trailing newline.
    pub fn to_line(&self) -> Vec<u8> {
        let hint = self.result.as_ref().map_or(64, |raw| raw.get().len());
        to_line(self, hint)
    }
}

#[derive(Serialize)]
struct WireCall<'a, P: ?Sized> {
    jsonrpc: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a Id>,
    method: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    params: Option<&'a P>,
}

/// A request as one line, like [`Request::to_line`], with its params serialised straight into
/// the line: no raw value is built (and copied) first. The hot path of every tool call.
pub fn request_line<P: Serialize + ?Sized>(id: u64, method: &str, params: Option<&P>) -> Vec<u8> {
    let id = Id::from(id);
    let call = WireCall {
        jsonrpc: VERSION,
        id: Some(&id),
        method,
        params,
    };
    to_line(&call, 192 + method.len())
}

#[derive(Serialize)]
struct WireResponse<'a> {
    jsonrpc: &'static str,
    id: Option<&'a Id>,
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a ErrorObject>,
}

impl Serialize for Request {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let params = self.params.as_deref();
        WireCall {
            jsonrpc: VERSION,
            id: Some(&self.id),
            method: &self.method,
            params,
        }
        .serialize(serializer)
    }
}

impl Serialize for Notification {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let params = self.params.as_deref();
        WireCall {
            jsonrpc: VERSION,
            id: None,
            method: &self.method,
            params,
        }
        .serialize(serializer)
    }
}

impl Serialize for Response {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let (result, error) = match &self.result {
            Ok(raw) => (Some(&**raw), None),
            Err(e) => (None, Some(e)),
        };
        WireResponse {
            jsonrpc: VERSION,
            id: self.id.as_ref(),
            result,
            error,
        }
        .serialize(serializer)
    }
}

fn raw_len(raw: &Option<Box<RawValue>>) -> usize {
    raw.as_ref().map_or(0, |r| r.get().len())
}

/// Serialises compactly, then turns any CR or LF into a space. serde_json escapes them inside
/// strings, so they can only come from a pretty-printed [`RawValue`] (e.g. an SSE `data` field
/// spanning lines), where they are insignificant whitespace: the output is always one line.
fn to_line<T: Serialize>(message: &T, payload_len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload_len + 64);
    // Cannot fail: writing to a Vec, and every member is a string, number, raw JSON or `Value`.
    serde_json::to_writer(&mut out, message).expect("serialising a JSON-RPC message");
    for byte in &mut out {
        if matches!(*byte, b'\n' | b'\r') {
            *byte = b' ';
        }
    }
    out
}
