//! `echo_server`: a minimal, fast stdio MCP server for benchmarks.
//!
//! One tool, `echo`, whose text result is the JSON of its arguments. Speed
//! comes from doing little: blocking std IO on the main thread only, borrowed
//! `RawValue`s instead of `serde_json::Value` trees (ids and arguments are
//! copied through verbatim), precomputed static JSON, and one `BufWriter`
//! flushed once per response.
//!
//! Protocol: newline-delimited JSON-RPC 2.0 on stdin/stdout; exits 0 on stdin
//! EOF. Handles `initialize`, `notifications/initialized`, `ping`,
//! `tools/list` and `tools/call`.

use std::borrow::Cow;
use std::io::{self, BufRead, BufWriter, Write};

use serde::{Deserialize, Serialize};
use serde_json::error::Category;
use serde_json::value::RawValue;

const SUPPORTED_VERSIONS: &[&str] = &["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"];
const LATEST_VERSION: &str = "2025-11-25";

const PARSE_ERROR: i64 = -32700;
const INVALID_REQUEST: i64 = -32600;
const METHOD_NOT_FOUND: i64 = -32601;
const INVALID_PARAMS: i64 = -32602;

const TOOLS_LIST: &str = r#"{"tools":[{"name":"echo","description":"Returns the JSON of its arguments.","inputSchema":{"type":"object","properties":{"text":{"type":"string"}}}}]}"#;
const CAPABILITIES: &str = r#"{"tools":{"listChanged":true}}"#;
const EMPTY_OBJECT: &str = "{}";

/// Any incoming message. Everything is borrowed from the input line; a
/// `null` id parses as `None` (treated like a notification).
#[derive(Deserialize)]
struct Incoming<'a> {
    #[serde(borrow, default)]
    id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    method: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    params: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct CallParams<'a> {
    #[serde(borrow)]
    name: Cow<'a, str>,
    #[serde(borrow, default)]
    arguments: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct InitParams<'a> {
    #[serde(borrow, default, rename = "protocolVersion")]
    protocol_version: Option<Cow<'a, str>>,
}

#[derive(Serialize)]
struct Response<'a, R: Serialize> {
    jsonrpc: &'static str,
    id: &'a RawValue,
    result: R,
}

#[derive(Serialize)]
struct ErrorResponse<'a> {
    jsonrpc: &'static str,
    /// `None` serializes as `null` (parse errors have no id).
    id: Option<&'a RawValue>,
    error: RpcError<'a>,
}

#[derive(Serialize)]
struct RpcError<'a> {
    code: i64,
    message: &'a str,
}

#[derive(Serialize)]
struct CallResult<'a> {
    content: [TextContent<'a>; 1],
    #[serde(rename = "isError")]
    is_error: bool,
}

#[derive(Serialize)]
struct TextContent<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    text: &'a str,
}

#[derive(Serialize)]
struct InitResult<'a> {
    #[serde(rename = "protocolVersion")]
    protocol_version: &'a str,
    capabilities: &'a RawValue,
    #[serde(rename = "serverInfo")]
    server_info: ServerInfo,
}

#[derive(Serialize)]
struct ServerInfo {
    name: &'static str,
    version: &'static str,
}

/// Precomputed static results, parsed once at start.
struct Statics {
    tools_list: Box<RawValue>,
    capabilities: Box<RawValue>,
    empty: Box<RawValue>,
}

impl Statics {
    fn new() -> Self {
        let raw =
            |json: &str| RawValue::from_string(json.to_owned()).expect("static JSON is valid");
        Statics {
            tools_list: raw(TOOLS_LIST),
            capabilities: raw(CAPABILITIES),
            empty: raw(EMPTY_OBJECT),
        }
    }
}

fn main() -> io::Result<()> {
    let statics = Statics::new();
    let mut input = io::stdin().lock();
    let mut out = BufWriter::with_capacity(64 * 1024, io::stdout().lock());
    let mut line = Vec::with_capacity(4096);
    loop {
        line.clear();
        if input.read_until(b'\n', &mut line)? == 0 {
            return Ok(());
        }
        let message = line.trim_ascii();
        if !message.is_empty() {
            handle(message, &statics, &mut out)?;
        }
    }
}

fn handle(line: &[u8], statics: &Statics, out: &mut impl Write) -> io::Result<()> {
    let message: Incoming<'_> = match serde_json::from_slice(line) {
        Ok(message) => message,
        // Valid JSON of the wrong shape is an invalid request, not a parse error.
        Err(e) if e.classify() == Category::Data => {
            return write_error(out, None, INVALID_REQUEST, "invalid request");
        }
        Err(_) => return write_error(out, None, PARSE_ERROR, "parse error"),
    };
    // Notifications (incl. notifications/initialized) and stray responses get no answer.
    let (Some(id), Some(method)) = (message.id, message.method.as_deref()) else {
        return Ok(());
    };
    match method {
        "tools/call" => call(out, id, message.params),
        "ping" => write_result(out, id, &*statics.empty),
        "tools/list" => write_result(out, id, &*statics.tools_list),
        "initialize" => initialize(out, id, message.params, statics),
        other => {
            let text = format!("method not found: {other}");
            write_error(out, Some(id), METHOD_NOT_FOUND, &text)
        }
    }
}

fn call(out: &mut impl Write, id: &RawValue, params: Option<&RawValue>) -> io::Result<()> {
    let Some(params) = params.and_then(|p| serde_json::from_str::<CallParams<'_>>(p.get()).ok())
    else {
        return write_error(out, Some(id), INVALID_PARAMS, "invalid tools/call params");
    };
    if params.name != "echo" {
        let text = format!("unknown tool: {}", params.name);
        return write_error(out, Some(id), INVALID_PARAMS, &text);
    }
    let text = params.arguments.map_or("{}", RawValue::get);
    let content = [TextContent { kind: "text", text }];
    write_result(
        out,
        id,
        CallResult {
            content,
            is_error: false,
        },
    )
}

fn initialize(
    out: &mut impl Write,
    id: &RawValue,
    params: Option<&RawValue>,
    statics: &Statics,
) -> io::Result<()> {
    let requested = params.and_then(|p| serde_json::from_str::<InitParams<'_>>(p.get()).ok());
    let requested = requested.and_then(|p| p.protocol_version);
    let protocol_version = match requested.as_deref() {
        Some(v) if SUPPORTED_VERSIONS.contains(&v) => v,
        _ => LATEST_VERSION,
    };
    let result = InitResult {
        protocol_version,
        capabilities: &statics.capabilities,
        server_info: ServerInfo {
            name: "echo_server",
            version: env!("CARGO_PKG_VERSION"),
        },
    };
    write_result(out, id, result)
}

fn write_result(out: &mut impl Write, id: &RawValue, result: impl Serialize) -> io::Result<()> {
    write_line(
        out,
        &Response {
            jsonrpc: "2.0",
            id,
            result,
        },
    )
}

fn write_error(
    out: &mut impl Write,
    id: Option<&RawValue>,
    code: i64,
    message: &str,
) -> io::Result<()> {
    let error = RpcError { code, message };
    write_line(
        out,
        &ErrorResponse {
            jsonrpc: "2.0",
            id,
            error,
        },
    )
}

fn write_line(out: &mut impl Write, message: &impl Serialize) -> io::Result<()> {
    serde_json::to_writer(&mut *out, message)?;
    out.write_all(b"\n")?;
    out.flush()
}
