//! MCP protocol vocabulary the client needs: versions, the initialize exchange, tool pages,
//! progress notifications, and tool error results.
//!
//! Everything a server sends that Revka only forwards (tool definitions, results, server info,
//! capabilities) stays raw JSON, so fields newer than this code reach clients untouched.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Value, json};

/// The newest protocol version Revka speaks; offered in `initialize`.
pub const LATEST_PROTOCOL_VERSION: &str = "2025-11-25";

/// Every protocol version Revka accepts, newest first.
pub const SUPPORTED_PROTOCOL_VERSIONS: [&str; 4] =
    ["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];

/// Whether `version` is one Revka speaks.
pub fn is_supported(version: &str) -> bool {
    SUPPORTED_PROTOCOL_VERSIONS.contains(&version)
}

/// A root Revka announces to servers (`roots/list`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Root {
    /// A `file://` URI.
    pub uri: String,
    /// Optional display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl Root {
    /// A root for a local directory.
    pub fn from_path(path: &std::path::Path) -> Self {
        Self {
            uri: format!("file://{}", path.display()),
            name: path.file_name().map(|n| n.to_string_lossy().into_owned()),
        }
    }
}

/// The key of Revka's extension under `capabilities.experimental` (the spec's extension point).
pub const REVKA_EXTENSION: &str = "revka";

/// The version of federation Revka speaks: `capabilities.experimental.revka.federation`.
///
/// Revka's MCP client declares it in every `initialize`; a Revka serving that session answers
/// with the same key in its own `capabilities.experimental`, and serves the session its whole
/// tool list (within the client token's scope) without deferral behind `tool_search`, since
/// the near Revka defers on its own side. Any other server ignores it, as the spec says
/// unknown experimental capabilities are ignored.
pub const FEDERATION_VERSION: u64 = 1;

/// The `capabilities.experimental` entry declaring federation.
pub fn federation_capability() -> Value {
    json!({ REVKA_EXTENSION: { "federation": FEDERATION_VERSION } })
}

/// Whether `capabilities` (of an `initialize`'s params or result) declare a federation
/// version Revka speaks (`capabilities.experimental.revka.federation`, an integer from 1 to
/// [`FEDERATION_VERSION`]).
pub fn declares_federation(capabilities: &Value) -> bool {
    capabilities
        .get("experimental")
        .and_then(|e| e.get(REVKA_EXTENSION))
        .and_then(|r| r.get("federation"))
        .and_then(Value::as_u64)
        .is_some_and(|v| (1..=FEDERATION_VERSION).contains(&v))
}

/// What Revka offers a server in its `initialize` capabilities: the requests it can have
/// answered ([`crate::client::Peer::offers`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Offers {
    /// `roots`: it answers `roots/list` (configured roots, a session's working directory).
    pub roots: bool,
    /// `sampling`: it relays `sampling/createMessage` to a client that can answer it.
    pub sampling: bool,
    /// `elicitation`: it relays `elicitation/create` to a client (or a person) that can answer.
    pub elicitation: bool,
}

impl Offers {
    /// Nothing beyond the base protocol.
    pub const NONE: Offers = Offers {
        roots: false,
        sampling: false,
        elicitation: false,
    };
}

/// The `initialize` params Revka sends: the capabilities it `offers`, and the federation
/// extension ([`FEDERATION_VERSION`]).
pub fn initialize_params(offers: Offers) -> Value {
    let mut capabilities = json!({ "experimental": federation_capability() });
    if offers.sampling {
        capabilities["sampling"] = json!({});
    }
    if offers.elicitation {
        capabilities["elicitation"] = json!({});
    }
    if offers.roots {
        capabilities["roots"] = json!({ "listChanged": false });
    }
    json!({
        "protocolVersion": LATEST_PROTOCOL_VERSION,
        "capabilities": capabilities,
        "clientInfo": { "name": "revka", "version": env!("CARGO_PKG_VERSION") },
    })
}

/// A log level of MCP logging (`logging/setLevel`, `notifications/message`): the syslog
/// severities of RFC 5424, ordered from the most verbose (`Debug`) to the least.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LogLevel {
    /// Detailed debugging information.
    Debug,
    /// General information.
    Info,
    /// Normal but significant events.
    Notice,
    /// Warning conditions.
    Warning,
    /// Error conditions.
    Error,
    /// Critical conditions.
    Critical,
    /// Action must be taken immediately.
    Alert,
    /// The system is unusable.
    Emergency,
}

impl LogLevel {
    /// Every level, most verbose first.
    pub const ALL: [LogLevel; 8] = [
        LogLevel::Debug,
        LogLevel::Info,
        LogLevel::Notice,
        LogLevel::Warning,
        LogLevel::Error,
        LogLevel::Critical,
        LogLevel::Alert,
        LogLevel::Emergency,
    ];

    /// The level's name on the wire (`"warning"`).
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Notice => "notice",
            LogLevel::Warning => "warning",
            LogLevel::Error => "error",
            LogLevel::Critical => "critical",
            LogLevel::Alert => "alert",
            LogLevel::Emergency => "emergency",
        }
    }

    /// The level named `name` (exactly as on the wire), if any.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|l| l.as_str() == name)
    }

    /// The level's rank, 0 (`Debug`) to 7 (`Emergency`).
    pub fn rank(self) -> u8 {
        self as u8
    }

    /// The level of rank `rank` ([`LogLevel::rank`]).
    pub fn from_rank(rank: u8) -> Option<Self> {
        Self::ALL.get(usize::from(rank)).copied()
    }

    /// The level of a `notifications/message`'s params, if they name one.
    pub fn of_message(params: Option<&RawValue>) -> Option<Self> {
        #[derive(serde::Deserialize)]
        struct Message<'a> {
            #[serde(borrow)]
            level: Option<&'a str>,
        }
        let message: Message<'_> = serde_json::from_str(params?.get()).ok()?;
        Self::parse(message.level?)
    }
}

/// What a server told us in its `initialize` result.
#[derive(Debug, Clone, Default)]
pub struct ServerHello {
    /// The negotiated protocol version.
    pub protocol_version: String,
    /// `serverInfo`, as sent.
    pub server_info: Value,
    /// `capabilities`, as sent.
    pub capabilities: Value,
    /// `instructions`, if any (shown to Revka's own clients).
    pub instructions: Option<String>,
}

/// A malformed or unacceptable answer from a server.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProtocolError {
    /// The server chose a protocol version Revka does not speak.
    #[error("server answered initialize with unsupported protocol version `{0}` (Revka supports {list})", list = SUPPORTED_PROTOCOL_VERSIONS.join(", "))]
    UnsupportedVersion(String),
    /// A result did not have the expected shape.
    #[error("invalid {what} result: {detail}")]
    InvalidResult {
        /// Which result.
        what: &'static str,
        /// What was wrong.
        detail: String,
    },
}

/// Reads an `initialize` result and checks the version.
pub fn parse_initialize_result(raw: &RawValue) -> Result<ServerHello, ProtocolError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Init {
        protocol_version: String,
        #[serde(default)]
        capabilities: Value,
        #[serde(default)]
        server_info: Value,
        #[serde(default)]
        instructions: Option<String>,
    }
    let init: Init = serde_json::from_str(raw.get()).map_err(|e| ProtocolError::InvalidResult {
        what: "initialize",
        detail: e.to_string(),
    })?;
    if !is_supported(&init.protocol_version) {
        return Err(ProtocolError::UnsupportedVersion(init.protocol_version));
    }
    Ok(ServerHello {
        protocol_version: init.protocol_version,
        server_info: init.server_info,
        capabilities: init.capabilities,
        instructions: init.instructions.filter(|i| !i.trim().is_empty()),
    })
}

/// One page of `tools/list`.
#[derive(Debug, Clone, Default)]
pub struct ToolPage {
    /// Tool definitions, as sent (each an object with at least a string `name`).
    pub tools: Vec<Value>,
    /// The cursor of the next page, if any.
    pub next_cursor: Option<String>,
}

/// Reads a `tools/list` result. Entries without a string `name` are dropped with a warning.
pub fn parse_tools_page(raw: &RawValue) -> Result<ToolPage, ProtocolError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Page {
        tools: Vec<Value>,
        #[serde(default)]
        next_cursor: Option<String>,
    }
    let page: Page = serde_json::from_str(raw.get()).map_err(|e| ProtocolError::InvalidResult {
        what: "tools/list",
        detail: e.to_string(),
    })?;
    let tools = page
        .tools
        .into_iter()
        .filter(|t| {
            let ok = t
                .get("name")
                .and_then(Value::as_str)
                .is_some_and(|n| !n.is_empty());
            if !ok {
                tracing::warn!(tool = %t, "tool without a name ignored");
            }
            ok
        })
        .collect();
    Ok(ToolPage {
        tools,
        next_cursor: page.next_cursor.filter(|c| !c.is_empty()),
    })
}

/// A progress notification for one call, with its values as sent.
#[derive(Debug, Clone, PartialEq)]
pub struct ProgressUpdate {
    /// Progress so far (a JSON number).
    pub progress: Value,
    /// Total, when known.
    pub total: Option<Value>,
    /// Status line, when sent.
    pub message: Option<String>,
}

/// A tool result reporting an error: `{content: [{type: text, text}], isError: true}`.
pub fn tool_error_result(message: &str) -> Box<RawValue> {
    let value = json!({ "content": [{ "type": "text", "text": message }], "isError": true });
    RawValue::from_string(value.to_string()).expect("serialised JSON is valid")
}

/// Converts a JSON value to a raw value: serialised once, not parsed again.
pub fn to_raw(value: &Value) -> Box<RawValue> {
    serde_json::value::to_raw_value(value).expect("a JSON value always serialises")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(v: Value) -> Box<RawValue> {
        to_raw(&v)
    }

    #[test]
    fn initialize_declares_federation_and_only_known_versions_count() {
        let params = initialize_params(Offers {
            roots: true,
            ..Offers::NONE
        });
        assert!(declares_federation(&params["capabilities"]));
        assert_eq!(params["capabilities"]["roots"]["listChanged"], false);
        for other in [
            json!({}),
            json!({ "experimental": {} }),
            json!({ "experimental": { "revka": { "federation": 0 } } }),
            json!({ "experimental": { "revka": { "federation": 2 } } }),
            json!({ "experimental": { "revka": { "federation": "1" } } }),
            json!({ "experimental": { "other": { "federation": 1 } } }),
        ] {
            assert!(!declares_federation(&other), "{other}");
        }
    }

    #[test]
    fn initialize_accepts_supported_versions_only() {
        for v in SUPPORTED_PROTOCOL_VERSIONS {
            let hello = parse_initialize_result(&raw(
                json!({"protocolVersion": v, "instructions": "use me"}),
            ))
            .unwrap();
            assert_eq!(hello.protocol_version, v);
            assert_eq!(hello.instructions.as_deref(), Some("use me"));
        }
        let err =
            parse_initialize_result(&raw(json!({"protocolVersion": "1999-01-01"}))).unwrap_err();
        assert_eq!(err, ProtocolError::UnsupportedVersion("1999-01-01".into()));
        assert!(err.to_string().contains("2024-11-05"));
        assert!(parse_initialize_result(&raw(json!({"capabilities": {}}))).is_err());
    }

    #[test]
    fn tool_pages_keep_unknown_fields_and_drop_nameless_tools() {
        let page = parse_tools_page(&raw(json!({
            "tools": [{"name": "a", "title": "A", "annotations": {"readOnlyHint": true}}, {"description": "no name"}],
            "nextCursor": "2"
        })))
        .unwrap();
        assert_eq!(page.tools.len(), 1);
        assert_eq!(page.tools[0]["annotations"]["readOnlyHint"], true);
        assert_eq!(page.next_cursor.as_deref(), Some("2"));
        assert!(
            parse_tools_page(&raw(json!({"tools": [], "nextCursor": ""})))
                .unwrap()
                .next_cursor
                .is_none()
        );
        assert!(parse_tools_page(&raw(json!({"nope": 1}))).is_err());
    }

    #[test]
    fn error_results_are_tool_results() {
        let v: Value = serde_json::from_str(tool_error_result("boom").get()).unwrap();
        assert_eq!(v["isError"], true);
        assert_eq!(v["content"][0]["text"], "boom");
    }
}
