//! The token store: one JSON file per server in `$REVKA_HOME/oauth/` (`<server>.json`), part
//! of [`crate::oauth`]. Read and written by the daemon's connection actors (refresh) and by
//! `revka mcp login | logout | list | call` alike.
//!
//! - The directory is created `0700` and files are written `0600`, atomically (a temporary
//!   file in the same directory, fsynced, renamed over the old one, the directory fsynced), so
//!   a crash leaves the old record or the new one, never half of one.
//! - A record is for one server *URL*: if the config points the name elsewhere, the record
//!   does not apply (it is as if there were none).
//! - `<server>.lock` serialises refreshes and logins across processes (`flock`), so a refresh
//!   token that rotates is spent once: whoever takes the lock re-reads the record first and
//!   uses what another process stored meanwhile.
//! - Files are capped at [`MAX_RECORD`] when read. Secrets inside print as `***`.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::endpoint::TokenTarget;
use super::{OAuthError, Secret};

/// The largest record file read.
pub const MAX_RECORD: u64 = 256 << 10;
const VERSION: u32 = 1;

/// Seconds since the Unix epoch.
pub(super) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The client Revka is at the authorization server.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(super) struct ClientRecord {
    pub(super) client_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) client_secret: Option<Secret>,
    /// `client_secret_basic`, `client_secret_post`, `none` or `private_key_jwt`.
    pub(super) auth_method: String,
    /// Registered dynamically (a new login registers again).
    #[serde(default)]
    pub(super) registered: bool,
}

/// The tokens.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(super) struct TokenRecord {
    pub(super) access_token: Secret,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) refresh_token: Option<Secret>,
    /// When the access token expires (Unix seconds); `None`: the server did not say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) expires_at: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) scope: Option<String>,
    pub(super) obtained_at: u64,
}

/// One server's record.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(super) struct Record {
    pub(super) version: u32,
    pub(super) server: String,
    /// The MCP server URL the tokens are for.
    pub(super) url: String,
    /// `authorization_code` or `client_credentials`.
    pub(super) grant: String,
    pub(super) target: TokenTarget,
    pub(super) client: ClientRecord,
    pub(super) tokens: TokenRecord,
    /// Set when a refresh was refused: the tokens are dead until the next login.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) refresh_failed: Option<String>,
}

impl Record {
    pub(super) fn new(
        server: &str,
        url: &str,
        grant: &str,
        target: TokenTarget,
        client: ClientRecord,
        tokens: TokenRecord,
    ) -> Self {
        Self {
            version: VERSION,
            server: server.to_owned(),
            url: url.to_owned(),
            grant: grant.to_owned(),
            target,
            client,
            tokens,
            refresh_failed: None,
        }
    }

    /// Whether the access token is past its expiry (or within `margin` of it).
    pub(super) fn expires_within(&self, margin: Duration) -> bool {
        self.tokens
            .expires_at
            .is_some_and(|at| now().saturating_add(margin.as_secs()) >= at)
    }
}

/// A server's authorization as `revka mcp list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthState {
    /// A usable access token (or one that a refresh token can renew).
    Authorized {
        /// Seconds until the access token expires, if the server said.
        expires_in: Option<u64>,
        /// The granted scopes.
        scope: Option<String>,
    },
    /// The access token expired and there is no way to renew it without a person (no refresh
    /// token, or the last refresh was refused).
    Expired,
    /// Nothing stored for this server's URL.
    NeedsLogin,
}

impl AuthState {
    /// `authorized`, `expired` or `needs login`.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Authorized { .. } => "authorized",
            Self::Expired => "expired",
            Self::NeedsLogin => "needs login",
        }
    }
}

/// The token files of one directory.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

/// A held `<server>.lock`: released on drop.
#[derive(Debug)]
pub(super) struct Lock(#[allow(dead_code)] File);

impl Store {
    /// The store in `dir` (created on first write).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The record file of `server`.
    pub fn path(&self, server: &str) -> PathBuf {
        self.dir.join(format!("{server}.json"))
    }

    fn store_error(&self, what: &str, path: &Path, e: &std::io::Error) -> OAuthError {
        OAuthError::Store(format!("{what} {}: {e}", path.display()))
    }

    /// The record of `server` for `url`, if one is stored for that URL.
    pub(super) fn load(&self, server: &str, url: &str) -> Result<Option<Record>, OAuthError> {
        let path = self.path(server);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.store_error("cannot read", &path, &e)),
        };
        let meta = file
            .metadata()
            .map_err(|e| self.store_error("cannot read", &path, &e))?;
        if meta.len() > MAX_RECORD {
            return Err(OAuthError::Store(format!(
                "{} is larger than {} KiB; remove it and log in again",
                path.display(),
                MAX_RECORD >> 10
            )));
        }
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(path = %path.display(), "token file readable by others: made owner-only");
            let _ = fs::set_permissions(&path, fs::Permissions::from_mode(0o600));
        }
        let record: Record = serde_json::from_reader(std::io::Read::take(file, MAX_RECORD))
            .map_err(|e| {
                OAuthError::Store(format!(
                    "{} is not a token record ({e}); remove it and log in again",
                    path.display()
                ))
            })?;
        Ok((record.url == url && record.server == server).then_some(record))
    }

    /// Writes `record` atomically, owner-only.
    pub(super) fn save(&self, record: &Record) -> Result<(), OAuthError> {
        self.ensure_dir()?;
        let path = self.path(&record.server);
        let tmp = self.dir.join(format!(
            ".{}.{}.tmp",
            record.server,
            super::pkce::random(6)?
        ));
        let bytes = serde_json::to_vec_pretty(record)
            .map_err(|e| OAuthError::Store(format!("cannot encode the record: {e}")))?;
        let write = || -> std::io::Result<()> {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            fs::rename(&tmp, &path)?;
            File::open(&self.dir)?.sync_all()
        };
        write().map_err(|e| {
            let _ = fs::remove_file(&tmp);
            self.store_error("cannot write", &path, &e)
        })
    }

    /// Forgets `server`'s tokens (and its lock file); whether there were any.
    pub fn remove(&self, server: &str) -> Result<bool, OAuthError> {
        let _ = fs::remove_file(self.dir.join(format!("{server}.lock")));
        let path = self.path(server);
        match fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(self.store_error("cannot remove", &path, &e)),
        }
    }

    /// `server`'s state for `url`, from the store alone (no network).
    pub fn state(&self, server: &str, url: &str) -> Result<AuthState, OAuthError> {
        let Some(record) = self.load(server, url)? else {
            return Ok(AuthState::NeedsLogin);
        };
        let expired = record.expires_within(Duration::ZERO);
        let renewable = record.refresh_failed.is_none()
            && (record.tokens.refresh_token.is_some() || record.grant == "client_credentials");
        if record.refresh_failed.is_some() || (expired && !renewable) {
            return Ok(AuthState::Expired);
        }
        Ok(AuthState::Authorized {
            expires_in: record.tokens.expires_at.map(|at| at.saturating_sub(now())),
            scope: record.tokens.scope.clone(),
        })
    }

    fn ensure_dir(&self) -> Result<(), OAuthError> {
        fs::create_dir_all(&self.dir)
            .map_err(|e| self.store_error("cannot create", &self.dir, &e))?;
        let meta =
            fs::metadata(&self.dir).map_err(|e| self.store_error("cannot read", &self.dir, &e))?;
        if meta.permissions().mode() & 0o777 != 0o700 {
            fs::set_permissions(&self.dir, fs::Permissions::from_mode(0o700))
                .map_err(|e| self.store_error("cannot restrict", &self.dir, &e))?;
        }
        Ok(())
    }

    /// Takes `server`'s lock (waiting for another process that holds it).
    pub(super) async fn lock(&self, server: &str) -> Result<Lock, OAuthError> {
        self.ensure_dir()?;
        let path = self.dir.join(format!("{server}.lock"));
        let shown = path.display().to_string();
        tokio::task::spawn_blocking(move || -> std::io::Result<Lock> {
            let f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(&path)?;
            f.lock()?;
            Ok(Lock(f))
        })
        .await
        .map_err(|e| OAuthError::Store(format!("cannot lock {shown}: {e}")))?
        .map_err(|e| OAuthError::Store(format!("cannot lock {shown}: {e}")))
    }
}
