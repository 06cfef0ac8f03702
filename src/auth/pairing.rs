//! [`PairingCodes`]: short one-time codes that a browser or script trades for a token.
//!
//! Part of the daemon's auth layer. The operator asks the daemon for a code (`revka pair`,
//! authenticated by the owner token) and types it where the new client asks for it; the
//! gateway listener (`root/gateway`) redeems it through [`PairingCodes::redeem`] and hands the
//! client a fresh token from the [`TokenStore`]. A wrong code is answered after the delay of the
//! [`FailureThrottle`](super::FailureThrottle), like any other wrong credential.
//!
//! Codes are 8 characters from an alphabet without the look-alikes `0 O 1 I L` (31 symbols,
//! about 40 bits), shown as `7KQ4-MX2P`. They are valid for a TTL, usable once, and at most
//! [`MAX_OUTSTANDING_CODES`] exist at a time. Each is minted for a [`Role`] (the token it is
//! traded for gets that role).
//!
//! **Guessing.** 40 bits are only safe if guesses are few, whatever the number of source
//! addresses an attacker rotates through: so failed redemptions are also counted globally. The
//! [`MAX_FAILED_REDEMPTIONS`]th failure within a [`REDEMPTION_WINDOW`] burns every outstanding
//! code (logged as a warning; `revka pair` mints a new one). An attacker thus tries fewer than
//! 10 guesses a minute against at most 8 codes: about one chance in eight million a day.

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use subtle::ConditionallySelectable;

use super::error::StoreError;
use super::role::Role;
use super::store::{TokenStore, validate_label};
use super::token::constant_time_eq;

/// How long a code is valid unless the caller says otherwise: 10 minutes.
pub const DEFAULT_PAIRING_TTL: Duration = Duration::from_secs(10 * 60);
/// A longer TTL given to [`PairingCodes::issue`] is shortened to this: 24 hours.
pub const MAX_PAIRING_TTL: Duration = Duration::from_secs(24 * 60 * 60);
/// Codes outstanding at most; issuing another drops the oldest.
pub const MAX_OUTSTANDING_CODES: usize = 8;
/// Failed redemptions (of well-formed codes, from any source) within a
/// [`REDEMPTION_WINDOW`] at which every outstanding code is burned.
pub const MAX_FAILED_REDEMPTIONS: usize = 10;
/// The window failed redemptions are counted in.
pub const REDEMPTION_WINDOW: Duration = Duration::from_secs(60);

/// The code alphabet: digits and capitals without `0 O 1 I L`.
pub(super) const ALPHABET: &[u8; 31] = b"23456789ABCDEFGHJKMNPQRSTUVWXYZ";
/// Symbols in a code.
const CODE_LEN: usize = 8;

/// A code in normalised form (uppercase, no separators).
type Code = [u8; CODE_LEN];

/// Why a pairing code was not accepted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PairError {
    /// The code existed but its TTL had passed (it is now consumed).
    #[error("the pairing code has expired; ask for a new one")]
    Expired,
    /// No such code outstanding (mistyped, already used, or dropped).
    #[error("invalid pairing code")]
    Invalid,
    /// No code is outstanding because too many failed attempts burned them all.
    #[error(
        "invalid pairing code; too many failed pairing attempts burned every outstanding \
         code: ask the owner for a new one (`revka pair`)"
    )]
    Burned,
    /// The label is unusable, or the new token could not be issued or persisted.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A redeemed code: the new token and what it may do.
#[derive(Clone, PartialEq, Eq)]
pub struct Redeemed {
    /// The token (`rvk_` + 64 hex digits), to hand to the client once.
    pub token: String,
    /// The role the code was minted for.
    pub role: Role,
}

impl fmt::Debug for Redeemed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Redeemed")
            .field("token", &"rvk_<redacted>")
            .field("role", &self.role)
            .finish()
    }
}

/// One outstanding code.
struct Outstanding {
    code: Code,
    expires_at: Instant,
    role: Role,
}

/// The codes and the count of failed guesses, under one lock.
#[derive(Default)]
struct Codes {
    outstanding: VecDeque<Outstanding>,
    /// When the failed redemptions of the current window happened, oldest first (at most
    /// [`MAX_FAILED_REDEMPTIONS`]).
    failures: VecDeque<Instant>,
    /// The codes were burned and none was issued since: failures say so.
    burned: bool,
}

/// The outstanding pairing codes, and the store their tokens come from.
///
/// Shared (`Arc`) by the gateway listener; every method takes `&self`.
pub struct PairingCodes {
    store: Arc<TokenStore>,
    codes: Mutex<Codes>,
}

impl fmt::Debug for PairingCodes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PairingCodes")
            .field("outstanding", &self.outstanding())
            .finish_non_exhaustive()
    }
}

impl PairingCodes {
    /// No codes yet; redeemed codes issue tokens from `store`.
    pub fn new(store: Arc<TokenStore>) -> Self {
        Self {
            store,
            codes: Mutex::new(Codes::default()),
        }
    }

    /// A new code for a [`Role::Viewer`] token, valid for `ttl` (at most
    /// [`MAX_PAIRING_TTL`]; usually [`DEFAULT_PAIRING_TTL`]), formatted `XXXX-XXXX`.
    ///
    /// # Panics
    ///
    /// If the OS random number generator fails.
    pub fn issue(&self, ttl: Duration) -> String {
        self.issue_at(Role::Viewer, ttl, Instant::now())
    }

    /// [`Self::issue`] for a token of `role`.
    ///
    /// # Panics
    ///
    /// If the OS random number generator fails.
    pub fn issue_for(&self, role: Role, ttl: Duration) -> String {
        self.issue_at(role, ttl, Instant::now())
    }

    /// [`Self::issue_for`] at `now` (for tests). Drops expired codes, then the oldest ones
    /// while [`MAX_OUTSTANDING_CODES`] are outstanding.
    ///
    /// # Panics
    ///
    /// If the OS random number generator fails.
    pub fn issue_at(&self, role: Role, ttl: Duration, now: Instant) -> String {
        let mut codes = self.lock();
        codes.burned = false;
        let outstanding = &mut codes.outstanding;
        outstanding.retain(|c| c.expires_at > now);
        let code = loop {
            let code = random_code();
            if !outstanding.iter().any(|c| c.code == code) {
                break code;
            }
        };
        while outstanding.len() >= MAX_OUTSTANDING_CODES {
            outstanding.pop_front();
        }
        outstanding.push_back(Outstanding {
            code,
            expires_at: now + ttl.min(MAX_PAIRING_TTL),
            role,
        });
        format_code(&code)
    }

    /// Trades `code` (any case; dashes and spaces ignored) for a new token labelled `label`,
    /// with the role the code was minted for.
    ///
    /// The code is compared with every outstanding code in constant time and consumed when it
    /// matches, expired or not. A bad label is rejected before the code is looked at, so it
    /// does not burn the code; a store failure after that (full, disk error) does. A
    /// well-formed code that matches nothing counts towards [`MAX_FAILED_REDEMPTIONS`].
    pub fn redeem(&self, code: &str, label: &str) -> Result<Redeemed, PairError> {
        self.redeem_at(code, label, Instant::now())
    }

    /// [`Self::redeem`] at `now` (for tests).
    pub fn redeem_at(&self, code: &str, label: &str, now: Instant) -> Result<Redeemed, PairError> {
        validate_label(label)?;
        let presented = normalise(code).ok_or(PairError::Invalid)?;
        let (expired, role) = {
            let mut codes = self.lock();
            // 1-based index of the match; 0 for none. Selected without branching on secrets.
            let mut found = 0u32;
            for (i, outstanding) in codes.outstanding.iter().enumerate() {
                let position = u32::try_from(i + 1).unwrap_or(u32::MAX);
                found
                    .conditional_assign(&position, constant_time_eq(&outstanding.code, &presented));
            }
            let index = usize::try_from(found).ok().and_then(|f| f.checked_sub(1));
            let Some(consumed) = index.and_then(|i| codes.outstanding.remove(i)) else {
                return Err(codes.failed(now));
            };
            (consumed.expires_at <= now, consumed.role)
        };
        if expired {
            return Err(PairError::Expired);
        }
        let token = self.store.issue(label, role)?.token;
        Ok(Redeemed { token, role })
    }

    /// Codes outstanding, counting expired ones not yet dropped.
    pub fn outstanding(&self) -> usize {
        self.lock().outstanding.len()
    }

    fn lock(&self) -> MutexGuard<'_, Codes> {
        self.codes.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Codes {
    /// Counts a failed guess at `now`; burns every outstanding code at the
    /// [`MAX_FAILED_REDEMPTIONS`]th within the window. The error to answer with.
    fn failed(&mut self, now: Instant) -> PairError {
        while self
            .failures
            .front()
            .is_some_and(|&t| now.saturating_duration_since(t) >= REDEMPTION_WINDOW)
        {
            self.failures.pop_front();
        }
        self.failures.push_back(now);
        if self.failures.len() >= MAX_FAILED_REDEMPTIONS {
            let burned = self.outstanding.len();
            self.outstanding.clear();
            self.failures.clear();
            self.burned = true;
            tracing::warn!(
                failures = MAX_FAILED_REDEMPTIONS,
                window_secs = REDEMPTION_WINDOW.as_secs(),
                burned,
                "too many failed pairing attempts: every outstanding pairing code was burned; \
                 mint a new one with `revka pair`"
            );
        }
        if self.burned {
            PairError::Burned
        } else {
            PairError::Invalid
        }
    }
}

/// `code` uppercased without dashes and whitespace, if that leaves exactly 8 ASCII symbols.
pub(super) fn normalise(code: &str) -> Option<Code> {
    let mut out = [0u8; CODE_LEN];
    let mut symbols = code
        .chars()
        .filter(|c| *c != '-' && !c.is_whitespace())
        .map(|c| c.to_ascii_uppercase());
    for slot in &mut out {
        let c = symbols.next()?;
        *slot = u8::try_from(c).ok().filter(u8::is_ascii)?;
    }
    symbols.next().is_none().then_some(out)
}

/// A uniformly random code (rejection sampling over OS random bytes).
fn random_code() -> Code {
    // The largest multiple of the alphabet size that fits a byte: 248 = 8 × 31.
    const LIMIT: u8 = (256 / ALPHABET.len() * ALPHABET.len()) as u8;
    let mut code = [0u8; CODE_LEN];
    let mut filled = 0;
    while filled < CODE_LEN {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes).expect("the OS random number generator failed");
        for b in bytes.into_iter().filter(|&b| b < LIMIT) {
            if filled == CODE_LEN {
                break;
            }
            code[filled] = ALPHABET[usize::from(b) % ALPHABET.len()];
            filled += 1;
        }
    }
    code
}

/// `XXXX-XXXX`.
fn format_code(code: &Code) -> String {
    let (head, tail) = code.split_at(CODE_LEN / 2);
    format!(
        "{}-{}",
        String::from_utf8_lossy(head),
        String::from_utf8_lossy(tail)
    )
}
