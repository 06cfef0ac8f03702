//! [`TokenStore`]: the daemon's bearer tokens, hashed, in memory and in
//! `$REVKA_HOME/gateway_tokens.json`.
//!
//! Part of the daemon's auth layer. Two kinds of token share the store, its file, its cap and
//! its listing and revocation, and never stand in for each other: **gateway** tokens (with a
//! [`Role`]), which the gateway listener (`root/gateway`) checks on every request with
//! [`TokenStore::verify_caller`], and **client** tokens (with an optional tool scope and
//! expiry), which the MCP server checks on its standard flow with
//! [`TokenStore::verify_client`] (see `client`). The pairing flow and the CLI's token commands
//! call the rest. The records live behind a `RwLock`: verification takes a read lock and never
//! touches the disk. Changes (issue, revoke, owner rotation) are written to a copy, persisted,
//! then swapped in, serialised by a separate writer lock so the disk write never holds up
//! verification. `last_used_at` moves at most once a [`LAST_USED_RESOLUTION`] and reaches the
//! disk lazily: with the next change, or with [`TokenStore::flush`].

use std::fs;
use std::mem;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, SystemTime};

use revka_actors::session::ToolScope;
use subtle::{Choice, ConditionallySelectable};

use super::error::{RevokeError, StoreError};
use super::info::{TokenInfo, TokenKind, Verified};
use super::persist::{self, whole_seconds};
use super::role::Role;
use super::token::{
    NewToken, TOKEN_PREFIX, TokenHash, TokenId, constant_time_eq, generate_token, hash_token,
};

/// The token store's file name under `$REVKA_HOME`.
pub const TOKENS_FILE: &str = "gateway_tokens.json";
/// The owner token's file name under `$REVKA_HOME`.
pub const OWNER_TOKEN_FILE: &str = "gateway.token";
/// The label of the owner token.
pub const OWNER_LABEL: &str = "owner";
/// Tokens kept at most, of both kinds, revoked and expired ones included (the oldest of those
/// are pruned first).
pub const MAX_TOKENS: usize = 256;
/// Characters in a label at most.
pub const MAX_LABEL_CHARS: usize = 64;
/// `last_used_at` is updated at most this often per token.
pub const LAST_USED_RESOLUTION: Duration = Duration::from_secs(60);

/// One token as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Record {
    pub(super) hash: TokenHash,
    pub(super) label: String,
    pub(super) created_at: SystemTime,
    pub(super) last_used_at: Option<SystemTime>,
    pub(super) revoked: bool,
    /// Which kind of token it is, and so what it may do.
    pub(super) kind: Kind,
    /// It is (or was) the token of `$REVKA_HOME/gateway.token`: the one the next rotation
    /// revokes. Independent of the role; never set on a client token.
    pub(super) file_token: bool,
    /// From this time on it authenticates nothing (whole seconds); `None`: never.
    pub(super) expires_at: Option<SystemTime>,
}

/// What a token is for. A token of one kind is refused wherever the other is expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Kind {
    /// A gateway token with its role.
    Gateway(Role),
    /// A client token for the MCP server's standard flow, limited to a tool scope if it has
    /// one.
    Client(Option<ToolScope>),
}

impl Record {
    pub(super) fn id(&self) -> TokenId {
        TokenId::of(&self.hash)
    }

    /// Whether it still authenticates at `now`: neither revoked nor expired.
    pub(super) fn live_at(&self, now: SystemTime) -> bool {
        !self.revoked && self.expires_at.is_none_or(|t| now < t)
    }

    fn info(&self, now: SystemTime) -> TokenInfo {
        let (kind, role, tools) = match &self.kind {
            Kind::Gateway(role) => (TokenKind::Gateway, Some(*role), None),
            Kind::Client(scope) => (TokenKind::Client, None, scope.clone()),
        };
        TokenInfo {
            id: self.id(),
            label: self.label.clone(),
            created_at: self.created_at,
            last_used_at: self.last_used_at,
            revoked: self.revoked,
            kind,
            role,
            file_token: self.file_token,
            tools,
            expires_at: self.expires_at,
            expired: self.expires_at.is_some_and(|t| t <= now),
        }
    }
}

/// What a new token is, besides its label and secret.
#[derive(Debug)]
pub(super) struct Template {
    /// Its kind.
    pub(super) kind: Kind,
    /// It is the token of `gateway.token`.
    pub(super) file_token: bool,
    /// When it expires (whole seconds).
    pub(super) expires_at: Option<SystemTime>,
}

/// The in-memory state.
#[derive(Debug)]
struct State {
    records: Vec<Record>,
    /// `last_used_at` changed since the last write.
    dirty: bool,
}

/// The gateway's bearer tokens, hashed: verification in memory, changes persisted atomically.
///
/// Shared (`Arc`) by the gateway listener, the pairing flow and the token commands.
#[derive(Debug)]
pub struct TokenStore {
    path: PathBuf,
    state: RwLock<State>,
    /// Serialises changes and writes, so verification never waits for the disk.
    writer: Mutex<()>,
}

impl TokenStore {
    /// Loads `home/gateway_tokens.json` (no file: no tokens). An unreadable or corrupt file
    /// is an error naming it; the caller decides whether to start without tokens.
    ///
    /// Records written before tokens had roles get one (see the file format's migration): the
    /// token of `gateway.token` `owner`, every paired token `operator`, which keeps its tool
    /// calls working but takes away anything that spawns a process. That is logged once: the
    /// store is marked changed, so the next write records the roles.
    pub fn open(home: &Path) -> Result<Self, StoreError> {
        let path = home.join(TOKENS_FILE);
        let loaded = persist::load(&path)?;
        if loaded.migrated > 0 {
            tracing::warn!(
                file = %path.display(),
                tokens = loaded.migrated,
                "gateway tokens from before roles: paired tokens become `operator` (tool calls, \
                 restarts; no spawning, reloads or token management), the owner token `owner`; \
                 pair again with `revka pair --role ...` for another role"
            );
        }
        Ok(Self {
            path,
            state: RwLock::new(State {
                records: loaded.records,
                dirty: loaded.migrated > 0,
            }),
            writer: Mutex::new(()),
        })
    }

    /// The store's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The id of the live gateway token `presented` is, if any: never a client token (see
    /// [`Self::verify_client`]), a revoked or an expired one.
    ///
    /// Hashes `presented` and compares the hash with every stored hash in constant time (all
    /// of them, whatever matches); no disk I/O. Records the use at most once a
    /// [`LAST_USED_RESOLUTION`], in memory only (see [`Self::flush`]).
    pub fn verify(&self, presented: &str) -> Option<TokenId> {
        self.verify_at(presented, SystemTime::now())
            .map(|verified| verified.id)
    }

    /// [`Self::verify`], with the token's role, found in the same pass.
    pub fn verify_caller(&self, presented: &str) -> Option<Verified> {
        self.verify_at(presented, SystemTime::now())
    }

    /// [`Self::verify_caller`] at `now`.
    pub(crate) fn verify_at(&self, presented: &str, now: SystemTime) -> Option<Verified> {
        let gateway = |kind: &Kind| matches!(kind, Kind::Gateway(_));
        self.find_live(presented, now, gateway, |record| match record.kind {
            Kind::Gateway(role) => Some(Verified {
                id: record.id(),
                role,
            }),
            Kind::Client(_) => None,
        })
    }

    /// What `grant` makes of the live record of a kind `accepts` whose token `presented` is;
    /// records the use (see [`Self::verify`]).
    ///
    /// Every record is compared, in constant time, whatever matches: whether a record is live
    /// and of the wanted kind is no secret, but is folded in without a branch on the
    /// comparison all the same, so the time taken depends only on the records, not on the
    /// presented token.
    pub(super) fn find_live<T>(
        &self,
        presented: &str,
        now: SystemTime,
        accepts: impl Fn(&Kind) -> bool,
        grant: impl FnOnce(&Record) -> Option<T>,
    ) -> Option<T> {
        let hash = hash_token(presented);
        let (granted, stale) = {
            let state = self.read();
            // 1-based index of the match; 0 for none. Selected without branching on secrets.
            let mut found = 0u32;
            for (i, record) in state.records.iter().enumerate() {
                let usable = record.live_at(now) && accepts(&record.kind);
                let hit = constant_time_eq(&record.hash, &hash) & Choice::from(u8::from(usable));
                let position = u32::try_from(i + 1).unwrap_or(u32::MAX);
                found.conditional_assign(&position, hit);
            }
            let record = state
                .records
                .get(usize::try_from(found).ok()?.checked_sub(1)?)?;
            (grant(record)?, needs_touch(record.last_used_at, now))
        };
        if stale {
            let mut state = self.write();
            if let Some(record) = state.records.iter_mut().find(|r| r.hash == hash)
                && needs_touch(record.last_used_at, now)
            {
                record.last_used_at = Some(whole_seconds(now));
                state.dirty = true;
            }
        }
        Some(granted)
    }

    /// Issues a new gateway token labelled `label` with `role` and persists it.
    pub fn issue(&self, label: &str, role: Role) -> Result<NewToken, StoreError> {
        let template = Template {
            kind: Kind::Gateway(role),
            file_token: false,
            expires_at: None,
        };
        self.issue_with(label, TOKEN_PREFIX, template, SystemTime::now())
    }

    /// Issues a token starting with `prefix`; the token of `gateway.token` (`file_token`)
    /// revokes the previous ones in the same change.
    pub(super) fn issue_with(
        &self,
        label: &str,
        prefix: &str,
        template: Template,
        now: SystemTime,
    ) -> Result<NewToken, StoreError> {
        let label = validate_label(label)?;
        self.mutate(|records| {
            if template.file_token {
                records
                    .iter_mut()
                    .filter(|r| r.file_token)
                    .for_each(|r| r.revoked = true);
            }
            make_room(records, now)?;
            // Ids are 32 bits of the hash; draw again on the rare collision so ids stay unique.
            let (token, hash) = loop {
                let token = generate_token(prefix).map_err(StoreError::Random)?;
                let hash = hash_token(&token);
                if !records.iter().any(|r| r.hash[..4] == hash[..4]) {
                    break (token, hash);
                }
            };
            records.push(Record {
                hash,
                label,
                created_at: whole_seconds(now),
                last_used_at: None,
                revoked: false,
                kind: template.kind,
                file_token: template.file_token,
                expires_at: template.expires_at,
            });
            Ok(NewToken {
                id: TokenId::of(&hash),
                token,
            })
        })
    }

    /// Every token, oldest first, as [`TokenInfo`] (no secrets).
    pub fn list(&self) -> Vec<TokenInfo> {
        self.list_at(SystemTime::now())
    }

    /// [`Self::list`] at `now` (which decides `expired`).
    pub(crate) fn list_at(&self, now: SystemTime) -> Vec<TokenInfo> {
        self.read().records.iter().map(|r| r.info(now)).collect()
    }

    /// Revokes the token (of either kind, expired or not) whose id starts with `id_prefix` (4
    /// to 8 hex digits, any case) and persists the change.
    pub fn revoke(&self, id_prefix: &str) -> Result<TokenInfo, RevokeError> {
        let prefix = id_prefix.trim().to_ascii_lowercase();
        if !(4..=8).contains(&prefix.len()) || !prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(RevokeError::InvalidPrefix(id_prefix.to_owned()));
        }
        self.mutate(|records| {
            let matching: Vec<usize> = (0..records.len())
                .filter(|&i| records[i].id().as_str().starts_with(&prefix))
                .collect();
            let live: Vec<usize> = matching
                .iter()
                .copied()
                .filter(|&i| !records[i].revoked)
                .collect();
            match (live.as_slice(), matching.first()) {
                ([i], _) => {
                    records[*i].revoked = true;
                    Ok(records[*i].info(SystemTime::now()))
                }
                ([], Some(&i)) => Err(RevokeError::AlreadyRevoked(records[i].id())),
                ([], None) => Err(RevokeError::Unknown(prefix.clone())),
                (many, _) => Err(RevokeError::Ambiguous {
                    prefix: prefix.clone(),
                    matches: many.iter().map(|&i| records[i].id()).collect(),
                }),
            }
        })
    }

    /// Rotates the owner token: revokes every previous token of `gateway.token`, issues a new
    /// one labelled [`OWNER_LABEL`] with the [`Role::Owner`] role, persists the store, then writes the token to `home/gateway.token`
    /// (mode 0600, atomically) so the CLI of the same account can authenticate without
    /// pairing. Called at each daemon start, with the store's own `$REVKA_HOME`, so an old
    /// leaked file is useless.
    pub fn ensure_owner_token(&self, home: &Path) -> Result<TokenId, StoreError> {
        let template = Template {
            kind: Kind::Gateway(Role::Owner),
            file_token: true,
            expires_at: None,
        };
        let new = self.issue_with(OWNER_LABEL, TOKEN_PREFIX, template, SystemTime::now())?;
        let path = home.join(OWNER_TOKEN_FILE);
        let token = format!("{}\n", new.token);
        revka_actors::fs::write_atomic(&path, token.as_bytes(), revka_actors::fs::PRIVATE_FILE)
            .map_err(|e| StoreError::Write {
                path,
                source: e.into_io(),
            })?;
        Ok(new.id)
    }

    /// Writes pending `last_used_at` updates to disk; `Ok(false)` when there were none. The
    /// gateway calls it periodically and at shutdown.
    pub fn flush(&self) -> Result<bool, StoreError> {
        let _writer = lock(&self.writer);
        let records = {
            let mut state = self.write();
            if !mem::take(&mut state.dirty) {
                return Ok(false);
            }
            state.records.clone()
        };
        persist::save(&self.path, &records).inspect_err(|_| self.write().dirty = true)?;
        Ok(true)
    }

    /// Applies `change` to a copy of the records, persists the copy, then swaps it in
    /// (keeping `last_used_at` updates made meanwhile). Nothing changes if either step fails.
    fn mutate<T, E: From<StoreError>>(
        &self,
        change: impl FnOnce(&mut Vec<Record>) -> Result<T, E>,
    ) -> Result<T, E> {
        let _writer = lock(&self.writer);
        let (mut records, was_dirty) = {
            let mut state = self.write();
            (state.records.clone(), mem::take(&mut state.dirty))
        };
        let outcome = change(&mut records).and_then(|value| {
            persist::save(&self.path, &records)
                .map(|()| value)
                .map_err(E::from)
        });
        let mut state = self.write();
        if outcome.is_ok() {
            for record in &mut records {
                let newer = state
                    .records
                    .iter()
                    .find(|r| r.hash == record.hash)
                    .and_then(|r| r.last_used_at);
                record.last_used_at = record.last_used_at.max(newer);
            }
            state.records = records;
        } else {
            state.dirty |= was_dirty;
        }
        outcome
    }

    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The owner token in `home/gateway.token`, for the CLI.
pub fn read_owner_token(home: &Path) -> Result<String, StoreError> {
    let path = home.join(OWNER_TOKEN_FILE);
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(source) => return Err(StoreError::Read { path, source }),
    };
    let token = text.trim();
    let well_formed = token.strip_prefix(TOKEN_PREFIX).is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    });
    if !well_formed {
        let message = format!("expected {TOKEN_PREFIX} followed by 64 lowercase hex digits");
        return Err(StoreError::Corrupt { path, message });
    }
    Ok(token.to_owned())
}

/// Whether a use at `now` should move `last_used_at`.
fn needs_touch(last_used_at: Option<SystemTime>, now: SystemTime) -> bool {
    last_used_at.is_none_or(|t| {
        now.duration_since(t)
            .is_ok_and(|d| d >= LAST_USED_RESOLUTION)
    })
}

/// Prunes the oldest revoked or expired tokens until a new one fits; [`StoreError::Full`] if
/// every token is live at `now`.
fn make_room(records: &mut Vec<Record>, now: SystemTime) -> Result<(), StoreError> {
    while records.len() >= MAX_TOKENS {
        let oldest_dead = records.iter().position(|r| !r.live_at(now));
        records.remove(oldest_dead.ok_or(StoreError::Full)?);
    }
    Ok(())
}

/// `label` trimmed, if it is usable.
pub(super) fn validate_label(label: &str) -> Result<String, StoreError> {
    let trimmed = label.trim();
    let reason = if trimmed.is_empty() {
        "must not be empty"
    } else if trimmed.chars().count() > MAX_LABEL_CHARS {
        "longer than 64 characters"
    } else if trimmed.chars().any(char::is_control) {
        "contains control characters"
    } else {
        return Ok(trimmed.to_owned());
    };
    Err(StoreError::InvalidLabel {
        label: label.to_owned(),
        reason,
    })
}

fn lock(mutex: &Mutex<()>) -> MutexGuard<'_, ()> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
