//! The token store on disk: `$REVKA_HOME/gateway_tokens.json`.
//!
//! Part of the daemon's auth layer ([`crate::auth`]); only [`super::store`] calls it, never on
//! the request path. The file holds hashes, never tokens:
//!
//! ```json
//! { "version": 2,
//!   "tokens": [ { "hash": "<64 hex>", "label": "laptop", "created_at": "2026-06-18T00:00:00Z",
//!                 "last_used_at": "2026-06-18T00:05:00Z", "revoked": false,
//!                 "role": "operator", "owner": false },
//!               { "hash": "<64 hex>", "label": "editor", "created_at": "2026-06-18T00:00:00Z",
//!                 "revoked": false, "kind": "client", "tools": ["fs__*"],
//!                 "expires_at": "2026-07-18T00:00:00Z" } ] }
//! ```
//!
//! `owner` marks the token of `$REVKA_HOME/gateway.token` (the one the next daemon start
//! revokes), not its role. A record without `role` was written before tokens had roles; it is
//! migrated on load to the least privilege that keeps it working: `owner` for the token of
//! `gateway.token`, `operator` for a paired token.
//!
//! A record with `"kind": "client"` is a client token: no `role`, an optional `tools` scope
//! and `expires_at`; a record without `kind` is a gateway token. A file holding a client
//! token is written as version 2, every other file as version 1 (the format before client
//! tokens, byte for byte): an older daemon refuses a version-2 file whole, rather than reading
//! a client token, which has no role, as a paired gateway token and migrating it to
//! `operator`. Both versions are read.
//!
//! Every write replaces the file atomically with mode 0600 ([`revka_actors::fs::write_atomic`]):
//! readers see the old file or the new one, never a partial one, and a link planted at its
//! path is replaced, never written through. Loading refuses a link there
//! ([`revka_actors::fs::read_in_place`]): the file decides who is let in, so it must be the
//! daemon's own.

use std::collections::HashSet;
use std::io;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use revka_actors::fs;
use serde::{Deserialize, Serialize};

use revka_actors::session::ToolScope;

use super::error::StoreError;
use super::role::Role;
use super::store::{Kind, Record};
use super::token::{from_hex, to_hex};

/// The file format of files without client tokens, the only one older daemons read.
const VERSION: u32 = 1;
/// The file format of files with client tokens.
const CLIENT_VERSION: u32 = 2;

/// The `kind` of a client token's record.
const CLIENT_KIND: &str = "client";
/// The `kind` of a gateway token's record, also the meaning of no `kind`.
const GATEWAY_KIND: &str = "gateway";

/// The whole file.
#[derive(Serialize, Deserialize)]
struct TokensFile {
    version: u32,
    tokens: Vec<StoredToken>,
}

/// One token as stored.
#[derive(Serialize, Deserialize)]
struct StoredToken {
    hash: String,
    label: String,
    created_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_used_at: Option<String>,
    #[serde(default)]
    revoked: bool,
    /// Absent in files written before tokens had roles.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    role: Option<Role>,
    /// The token of `gateway.token` (the key keeps the name older files use).
    #[serde(default, rename = "owner")]
    file_token: bool,
    /// `client` for a client token; absent (or `gateway`) for a gateway token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kind: Option<String>,
    /// A client token's tool scope; absent: every tool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tools: Option<Vec<String>>,
    /// When it expires; absent: never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expires_at: Option<String>,
}

/// What [`load`] read.
#[derive(Debug, Default)]
pub(super) struct Loaded {
    /// The records, in file order.
    pub(super) records: Vec<Record>,
    /// How many records had no role and were given one.
    pub(super) migrated: usize,
}

/// The records in `path`; none when the file does not exist.
pub(super) fn load(path: &Path) -> Result<Loaded, StoreError> {
    // Read without following a link: the file decides who is let in.
    let bytes = match fs::read_in_place(path).map_err(fs::FsError::into_io) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Loaded::default()),
        Err(source) => {
            return Err(StoreError::Read {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    parse(&bytes).map_err(|message| StoreError::Corrupt {
        path: path.to_path_buf(),
        message,
    })
}

/// The records in a file's contents, or why they are not a valid token store.
fn parse(bytes: &[u8]) -> Result<Loaded, String> {
    let file: TokensFile = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    if file.version != VERSION && file.version != CLIENT_VERSION {
        return Err(format!(
            "unsupported version {} (expected {VERSION} or {CLIENT_VERSION})",
            file.version
        ));
    }
    let mut seen = HashSet::new();
    let mut records = Vec::with_capacity(file.tokens.len());
    let mut migrated = 0;
    for (index, stored) in file.tokens.into_iter().enumerate() {
        let at = |field: &str, problem: &str| format!("tokens[{index}].{field}: {problem}");
        let hash = from_hex::<32>(&stored.hash)
            .ok_or_else(|| at("hash", "expected 64 lowercase hex digits"))?;
        if !seen.insert(hash) {
            return Err(at("hash", "duplicate token"));
        }
        let created_at = parse_time(&stored.created_at)
            .map_err(|e| at("created_at", &format!("not an RFC 3339 time: {e}")))?;
        let last_used_at = match stored.last_used_at.as_deref() {
            None => None,
            Some(t) => Some(
                parse_time(t)
                    .map_err(|e| at("last_used_at", &format!("not an RFC 3339 time: {e}")))?,
            ),
        };
        let expires_at = match stored.expires_at.as_deref() {
            None => None,
            Some(t) => Some(
                parse_time(t)
                    .map_err(|e| at("expires_at", &format!("not an RFC 3339 time: {e}")))?,
            ),
        };
        let kind = match stored.kind.as_deref() {
            None | Some(GATEWAY_KIND) => {
                if stored.tools.is_some() {
                    return Err(at("tools", "only a client token has a tool scope"));
                }
                Kind::Gateway(stored.role.unwrap_or_else(|| {
                    migrated += 1;
                    if stored.file_token {
                        Role::Owner
                    } else {
                        Role::Operator
                    }
                }))
            }
            Some(CLIENT_KIND) => {
                if stored.role.is_some() {
                    return Err(at("role", "a client token has no role"));
                }
                if stored.file_token {
                    return Err(at("owner", "a client token is never the owner token"));
                }
                let scope = stored
                    .tools
                    .map(ToolScope::new)
                    .transpose()
                    .map_err(|e| at("tools", &e.to_string()))?;
                Kind::Client(scope)
            }
            Some(other) => {
                return Err(at(
                    "kind",
                    &format!(
                        "unknown kind {other:?} (expected {GATEWAY_KIND:?} or {CLIENT_KIND:?})"
                    ),
                ));
            }
        };
        records.push(Record {
            hash,
            label: stored.label,
            created_at,
            last_used_at,
            revoked: stored.revoked,
            kind,
            file_token: stored.file_token,
            expires_at,
        });
    }
    Ok(Loaded { records, migrated })
}

/// Writes `records` to `path` atomically, mode 0600.
pub(super) fn save(path: &Path, records: &[Record]) -> Result<(), StoreError> {
    let clients = records.iter().any(|r| matches!(r.kind, Kind::Client(_)));
    let file = TokensFile {
        version: if clients { CLIENT_VERSION } else { VERSION },
        tokens: records
            .iter()
            .map(|r| {
                let (role, kind, tools) = match &r.kind {
                    Kind::Gateway(role) => (Some(*role), None, None),
                    Kind::Client(scope) => (
                        None,
                        Some(CLIENT_KIND.to_owned()),
                        scope.clone().map(Vec::from),
                    ),
                };
                StoredToken {
                    hash: to_hex(&r.hash),
                    label: r.label.clone(),
                    created_at: rfc3339(r.created_at),
                    last_used_at: r.last_used_at.map(rfc3339),
                    revoked: r.revoked,
                    role,
                    file_token: r.file_token,
                    kind,
                    tools,
                    expires_at: r.expires_at.map(rfc3339),
                }
            })
            .collect(),
    };
    let mut json = serde_json::to_vec_pretty(&file).expect("the token file always serialises");
    json.push(b'\n');
    fs::write_atomic(path, &json, fs::PRIVATE_FILE).map_err(|e| StoreError::Write {
        path: path.to_path_buf(),
        source: e.into_io(),
    })
}

/// `t` as RFC 3339 in UTC, whole seconds (`2026-06-18T00:00:00Z`).
pub(super) fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// An RFC 3339 time.
fn parse_time(s: &str) -> Result<SystemTime, humantime::TimestampError> {
    humantime::parse_rfc3339(s)
}

/// `t` without its fraction of a second: what survives a round trip through the file.
pub(super) fn whole_seconds(t: SystemTime) -> SystemTime {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => UNIX_EPOCH + Duration::from_secs(d.as_secs()),
        Err(_) => t,
    }
}
