//! The security policy of Revka's built-in tools (`[security]`): the one place that says
//! whether a tool may touch a path, run a program, reach a host, or act at all.
//!
//! Built once at boot from the config ([`Policy::new`]) and shared by every built-in tool
//! (`src/tools/builtin`). Each check answers `Ok` or a [`Refusal`] naming the rule that refused
//! (`autonomy`, `workspace_only`, `forbidden_paths`, `git_dir`, `allowed_commands`,
//! `shell_syntax`, `option`, `blocked_hosts`, `internal_address`, `max_actions_per_hour`, …); the tool wrapper turns a
//! refusal into an error result, records it in the run log and counts it in `/metrics`.
//!
//! - [`paths`]: workspace containment and forbidden paths, on canonical paths (symlinks
//!   resolved), and opening files without following a link swapped in after the check;
//! - [`command`]: the parsed command line of `shell` and `git_operations` against
//!   `allowed_commands`, shell syntax and option smuggling, and the scrubbed environment;
//! - [`net`]: SSRF checks after DNS resolution and on every redirect;
//! - here: autonomy ([`Policy::permit`]) and the per-session action budget
//!   ([`Policy::charge`]).

pub mod command;
pub mod net;
pub mod paths;

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::{Autonomy, SecurityConfig};

/// Why the policy refused something: the rule, and what it refused (never a secret).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("refused by the security policy ({rule}): {message}")]
pub struct Refusal {
    /// The rule: a `[security]` key (`workspace_only`, `forbidden_paths`, `allowed_commands`,
    /// `autonomy`, `max_actions_per_hour`, `allowed_hosts`, `blocked_hosts`) or a fixed rule
    /// (`shell_syntax`, `option`, `internal_address`, `path`, `scheme`, `git_dir`), or a cron
    /// rule (`cron_recursion`, `cron_limit`, `owner_revoked`).
    pub rule: &'static str,
    /// What was refused and why, for the caller.
    pub message: String,
}

impl Refusal {
    /// A refusal by `rule`.
    pub fn new(rule: &'static str, message: impl Into<String>) -> Self {
        Self {
            rule,
            message: message.into(),
        }
    }
}

/// What a tool call does, for the autonomy check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Reads files, lists, computes: allowed at every autonomy.
    Read,
    /// Writes files or repository state, or changes scheduled jobs.
    Write,
    /// Runs a program chosen by the caller.
    Execute,
    /// Reads from the network (`GET`, `HEAD`, a search, a fetch).
    NetworkRead,
    /// Sends to the network something that may change state (`POST`, `PUT`, `DELETE`, …).
    NetworkWrite,
    /// Acts on the desktop (opens a browser window, takes a screenshot).
    Desktop,
}

impl Effect {
    /// Its name in audit records.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
            Self::Execute => "execute",
            Self::NetworkRead => "network_read",
            Self::NetworkWrite => "network_write",
            Self::Desktop => "desktop",
        }
    }

    /// Whether the effect only reads.
    pub fn reads_only(self) -> bool {
        matches!(self, Self::Read | Self::NetworkRead)
    }
}

/// The built-in tools' policy, compiled from `[security]`.
#[derive(Debug)]
pub struct Policy {
    config: SecurityConfig,
    /// `$REVKA_HOME`: always forbidden.
    home: PathBuf,
    /// Path rules.
    pub paths: paths::PathRules,
    /// Command rules.
    pub commands: command::CommandRules,
    /// Network rules.
    pub net: net::NetRules,
    limiter: ActionLimiter,
}

impl Policy {
    /// The policy of `config`, with `home` as `$REVKA_HOME`. `Err` names the key and value
    /// that cannot be used (a forbidden path or host pattern that does not parse).
    pub fn new(config: &SecurityConfig, home: &Path) -> Result<Self, String> {
        Ok(Self {
            paths: paths::PathRules::new(config, home)?,
            commands: command::CommandRules::new(config)?,
            net: net::NetRules::new(config)?,
            limiter: ActionLimiter::new(config.max_actions_per_hour, Duration::from_secs(3600)),
            config: config.clone(),
            home: home.to_owned(),
        })
    }

    /// The settings it was built from.
    pub fn config(&self) -> &SecurityConfig {
        &self.config
    }

    /// `$REVKA_HOME`.
    pub fn home(&self) -> &Path {
        &self.home
    }

    /// The autonomy level.
    pub fn autonomy(&self) -> Autonomy {
        self.config.autonomy
    }

    /// Whether the autonomy level allows `effect` (`read_only` allows reads only).
    pub fn permit(&self, tool: &str, effect: Effect) -> Result<(), Refusal> {
        if self.config.autonomy == Autonomy::ReadOnly && !effect.reads_only() {
            return Err(Refusal::new(
                "autonomy",
                format!(
                    "`{tool}` would {} and autonomy is \"read_only\"",
                    match effect {
                        Effect::Write => "write",
                        Effect::Execute => "run a program",
                        Effect::NetworkWrite => "send a request that may change state",
                        Effect::Desktop => "act on the desktop",
                        Effect::Read | Effect::NetworkRead => "read",
                    }
                ),
            ));
        }
        Ok(())
    }

    /// Spends one action of `session`'s hourly budget, or refuses when it is spent.
    pub fn charge(&self, session: &str) -> Result<(), Refusal> {
        self.limiter.charge(session, Instant::now())
    }

    /// Forgets an ended session's budget.
    pub fn forget(&self, session: &str) {
        self.limiter.forget(session);
    }
}

/// Sessions tracked at most by the action budget; past it the entries idle for the whole
/// window go, then the least recently active one.
const MAX_TRACKED: usize = 4096;

/// A sliding-window count of actions per session.
#[derive(Debug)]
struct ActionLimiter {
    max: u32,
    window: Duration,
    seen: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl ActionLimiter {
    fn new(max: u32, window: Duration) -> Self {
        Self {
            max,
            window,
            seen: Mutex::new(HashMap::new()),
        }
    }

    fn charge(&self, session: &str, now: Instant) -> Result<(), Refusal> {
        if self.max == 0 {
            return Ok(());
        }
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if seen.len() >= MAX_TRACKED && !seen.contains_key(session) {
            let window = self.window;
            seen.retain(|_, times| {
                times
                    .back()
                    .is_some_and(|t| now.duration_since(*t) < window)
            });
            // Still full of sessions active this hour: the least recently active one goes
            // (its budget restarts; the table stays bounded).
            if seen.len() >= MAX_TRACKED
                && let Some(oldest) = seen
                    .iter()
                    .min_by_key(|(_, times)| times.back().copied())
                    .map(|(k, _)| k.clone())
            {
                seen.remove(&oldest);
            }
        }
        let times = seen.entry(session.to_owned()).or_default();
        while times
            .front()
            .is_some_and(|t| now.duration_since(*t) >= self.window)
        {
            times.pop_front();
        }
        if times.len() >= self.max as usize {
            let wait = times
                .front()
                .map(|t| self.window.saturating_sub(now.duration_since(*t)))
                .unwrap_or_default();
            return Err(Refusal::new(
                "max_actions_per_hour",
                format!(
                    "this session made {} built-in tool calls in the last hour (the limit); \
                     the next is allowed in {} s",
                    self.max,
                    wait.as_secs().max(1)
                ),
            ));
        }
        times.push_back(now);
        Ok(())
    }

    fn forget(&self, session: &str) {
        self.seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(session);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_slides_and_names_its_rule() {
        let limiter = ActionLimiter::new(2, Duration::from_secs(60));
        let t0 = Instant::now();
        limiter.charge("a", t0).unwrap();
        limiter.charge("a", t0 + Duration::from_secs(1)).unwrap();
        let refused = limiter
            .charge("a", t0 + Duration::from_secs(2))
            .unwrap_err();
        assert_eq!(refused.rule, "max_actions_per_hour");
        assert!(refused.message.contains("58 s"), "{refused}");
        // Another session has its own budget.
        limiter.charge("b", t0 + Duration::from_secs(2)).unwrap();
        // The first call leaves the window.
        limiter.charge("a", t0 + Duration::from_secs(61)).unwrap();
    }

    #[test]
    fn the_budget_table_stays_bounded_when_every_session_is_active() {
        let limiter = ActionLimiter::new(5, Duration::from_secs(3600));
        let t0 = Instant::now();
        for i in 0..MAX_TRACKED + 10 {
            limiter
                .charge(&format!("s{i}"), t0 + Duration::from_millis(i as u64))
                .unwrap();
        }
        let seen = limiter.seen.lock().unwrap();
        assert_eq!(seen.len(), MAX_TRACKED);
        assert!(
            !seen.contains_key("s0"),
            "the least recently active went first"
        );
        assert!(seen.contains_key(&format!("s{}", MAX_TRACKED + 9)));
    }

    #[test]
    fn read_only_permits_reads_only() {
        let config = SecurityConfig {
            autonomy: Autonomy::ReadOnly,
            ..SecurityConfig::default()
        };
        let home = tempfile::tempdir().unwrap();
        let policy = Policy::new(&config, home.path()).unwrap();
        policy.permit("file_read", Effect::Read).unwrap();
        policy.permit("web_fetch", Effect::NetworkRead).unwrap();
        let refused = policy.permit("file_write", Effect::Write).unwrap_err();
        assert_eq!(refused.rule, "autonomy");
        assert!(refused.message.contains("read_only"));
        assert!(policy.permit("shell", Effect::Execute).is_err());
    }
}
