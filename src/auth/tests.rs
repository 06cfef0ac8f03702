//! Tests of the daemon's auth layer: tokens, the store and its file, the owner token, client
//! tokens, pairing codes, the failed-attempt limiter.
//!
//! Every test works in its own temporary `$REVKA_HOME`; time is injected (`verify_at`,
//! `issue_at`, `redeem_at`, the limiter's `now`) so nothing sleeps.

mod client;
mod limiter;
mod owner;
mod pairing;
mod persist;
mod store;
mod token;

use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use tempfile::TempDir;

use super::{TOKENS_FILE, TokenStore};

/// A fresh, empty `$REVKA_HOME`.
fn home() -> TempDir {
    tempfile::tempdir().expect("temp dir")
}

/// The store of `home`.
fn open(home: &Path) -> Arc<TokenStore> {
    Arc::new(TokenStore::open(home).expect("open token store"))
}

/// The permission bits of `path`.
fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}

/// A hash (64 hex digits) whose id is `id` (8 hex digits), padded with `fill`.
fn hash_with_id(id: &str, fill: char) -> String {
    let mut hash = id.to_owned();
    while hash.len() < 64 {
        hash.push(fill);
    }
    hash
}

/// Writes a token file of `(hash, label, revoked)` records into `home`.
fn write_tokens_file(home: &Path, records: &[(String, &str, bool)]) {
    let mut tokens = String::new();
    for (i, (hash, label, revoked)) in records.iter().enumerate() {
        if i > 0 {
            tokens.push(',');
        }
        write!(
            tokens,
            r#"{{"hash":"{hash}","label":"{label}","created_at":"2026-01-01T00:00:00Z","revoked":{revoked}}}"#
        )
        .expect("write to string");
    }
    let json = format!(r#"{{"version":1,"tokens":[{tokens}]}}"#);
    std::fs::write(home.join(TOKENS_FILE), json).expect("write token file");
}
