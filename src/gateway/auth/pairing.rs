//! [`PairingCodes`]: short one-time codes that a browser or script trades for a token.
//!
//! Part of the gateway's auth layer. The operator asks the daemon for a code (`revka pair`,
//! authenticated by the owner token) and types it where the new client asks for it; the
//! gateway listener (`root/gateway`) redeems it through [`PairingCodes::redeem`] and hands the
//! client a fresh token from the [`TokenStore`]. Redemption attempts should go through the
//! [`FailedAuthLimiter`](super::FailedAuthLimiter) like any other credential.
//!
//! Codes are 8 characters from an alphabet without the look-alikes `0 O 1 I L` (31 symbols,
//! about 40 bits), shown as `7KQ4-MX2P`. They are valid for a TTL, usable once, and at most
//! [`MAX_OUTSTANDING_CODES`] exist at a time.

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use subtle::ConditionallySelectable;

use super::error::StoreError;
use super::store::{TokenStore, validate_label};
use super::token::constant_time_eq;

/// How long a code is valid unless the caller says otherwise: 10 minutes.
pub const DEFAULT_PAIRING_TTL: Duration = Duration::from_secs(10 * 60);
/// A longer TTL given to [`PairingCodes::issue`] is shortened to this: 24 hours.
pub const MAX_PAIRING_TTL: Duration = Duration::from_secs(24 * 60 * 60);
/// Codes outstanding at most; issuing another drops the oldest.
pub const MAX_OUTSTANDING_CODES: usize = 8;

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
    /// The label is unusable, or the new token could not be issued or persisted.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One outstanding code.
struct Outstanding {
    code: Code,
    expires_at: Instant,
}

/// The outstanding pairing codes, and the store their tokens come from.
///
/// Shared (`Arc`) by the gateway listener; every method takes `&self`.
pub struct PairingCodes {
    store: Arc<TokenStore>,
    codes: Mutex<VecDeque<Outstanding>>,
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
            codes: Mutex::new(VecDeque::with_capacity(MAX_OUTSTANDING_CODES)),
        }
    }

    /// A new code, valid for `ttl` (at most [`MAX_PAIRING_TTL`]; usually
    /// [`DEFAULT_PAIRING_TTL`]), formatted `XXXX-XXXX`.
    ///
    /// # Panics
    ///
    /// If the OS random number generator fails.
    pub fn issue(&self, ttl: Duration) -> String {
        self.issue_at(ttl, Instant::now())
    }

    /// [`Self::issue`] at `now` (for tests). Drops expired codes, then the oldest ones while
    /// [`MAX_OUTSTANDING_CODES`] are outstanding.
    ///
    /// # Panics
    ///
    /// If the OS random number generator fails.
    pub fn issue_at(&self, ttl: Duration, now: Instant) -> String {
        let mut codes = self.lock();
        codes.retain(|c| c.expires_at > now);
        let code = loop {
            let code = random_code();
            if !codes.iter().any(|c| c.code == code) {
                break code;
            }
        };
        while codes.len() >= MAX_OUTSTANDING_CODES {
            codes.pop_front();
        }
        codes.push_back(Outstanding {
            code,
            expires_at: now + ttl.min(MAX_PAIRING_TTL),
        });
        format_code(&code)
    }

    /// Trades `code` (any case; dashes and spaces ignored) for a new token labelled `label`.
    ///
    /// The code is compared with every outstanding code in constant time and consumed when it
    /// matches, expired or not. A bad label is rejected before the code is looked at, so it
    /// does not burn the code; a store failure after that (full, disk error) does.
    pub fn redeem(&self, code: &str, label: &str) -> Result<String, PairError> {
        self.redeem_at(code, label, Instant::now())
    }

    /// [`Self::redeem`] at `now` (for tests).
    pub fn redeem_at(&self, code: &str, label: &str, now: Instant) -> Result<String, PairError> {
        validate_label(label)?;
        let presented = normalise(code).ok_or(PairError::Invalid)?;
        let expired = {
            let mut codes = self.lock();
            // 1-based index of the match; 0 for none. Selected without branching on secrets.
            let mut found = 0u32;
            for (i, outstanding) in codes.iter().enumerate() {
                let position = u32::try_from(i + 1).unwrap_or(u32::MAX);
                found
                    .conditional_assign(&position, constant_time_eq(&outstanding.code, &presented));
            }
            let index = usize::try_from(found)
                .ok()
                .and_then(|f| f.checked_sub(1))
                .ok_or(PairError::Invalid)?;
            let consumed = codes.remove(index).ok_or(PairError::Invalid)?;
            consumed.expires_at <= now
        };
        if expired {
            return Err(PairError::Expired);
        }
        Ok(self.store.issue(label)?.token)
    }

    /// Codes outstanding, counting expired ones not yet dropped.
    pub fn outstanding(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> MutexGuard<'_, VecDeque<Outstanding>> {
        self.codes.lock().unwrap_or_else(PoisonError::into_inner)
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
