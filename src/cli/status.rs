//! `revka status`: the running daemon's supervision tree, one line per actor.
//!
//! [`render_tree`] is a pure function of a [`Snapshot`], the current time and whether to use
//! colour, so it is tested with fixtures:
//!
//! ```text
//! root             running      up 3d 4h
//! ├── mcp_servers  running      up 3d 4h
//! │   ├── mcp:fs   running      up 2h 10m  ↻ 1
//! │   └── mcp:git  backing_off  for 4s  ↻ 3  last failure 4s ago: exited with status 1  next restart in 2.1s
//! └── gateway      failed       for 3m  ↻ 5  last failure 3m 2s ago: address in use
//! ```
//!
//! Colour (green running; yellow starting, backing off, stopping; red failed; dim stopped)
//! uses plain ANSI codes, only on a terminal and only when `NO_COLOR` is unset or empty
//! ([`use_color`]).

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use revka_actors::{ActorState, Snapshot};

#[cfg(test)]
mod tests;

const RESET: &str = "\x1b[0m";
const GREEN: &str = "\x1b[32m";
const YELLOW: &str = "\x1b[33m";
const RED: &str = "\x1b[31m";
const DIM: &str = "\x1b[2m";

/// At most this many characters of a failure reason are shown (its first line).
const MAX_REASON_CHARS: usize = 120;

pub use crate::logging::use_color;

/// Renders `snapshot` and its subtree as an indented tree, one line per actor, each line
/// ending in `\n`. `now` is the current wall-clock time (for "how long ago").
pub fn render_tree(snapshot: &Snapshot, now: SystemTime, color: bool) -> String {
    let mut rows = Vec::new();
    collect(snapshot, String::new(), String::new(), &mut rows);
    let width = rows.iter().map(|(name, _)| name.chars().count()).max();
    let width = width.unwrap_or(0);
    let state_width = rows.iter().map(|(_, n)| n.state.as_str().len()).max();
    let state_width = state_width.unwrap_or(0);
    let mut out = String::new();
    for (name, node) in rows {
        let pad = width - name.chars().count();
        let _ = write!(out, "{name}{:pad$}  ", "");
        let state = node.state.as_str();
        let state_pad = state_width - state.len();
        match state_color(node.state).filter(|_| color) {
            Some(code) => {
                let _ = write!(out, "{code}{state}{RESET}");
            }
            None => out.push_str(state),
        }
        let details = details(node, now, color);
        if details.is_empty() {
            out.push('\n');
        } else {
            let _ = writeln!(out, "{:state_pad$}  {details}", "");
        }
    }
    out
}

/// Flattens the tree depth first into `(prefix + id, node)` rows.
fn collect<'a>(
    node: &'a Snapshot,
    branch: String,
    indent: String,
    rows: &mut Vec<(String, &'a Snapshot)>,
) {
    rows.push((format!("{branch}{}", sanitize(&node.id)), node));
    let count = node.children.len();
    for (i, child) in node.children.iter().enumerate() {
        let last = i + 1 == count;
        let branch = format!("{indent}{}", if last { "└── " } else { "├── " });
        let indent = format!("{indent}{}", if last { "    " } else { "│   " });
        collect(child, branch, indent, rows);
    }
}

/// The part of a line after the state: uptime or time in state, restarts, failure, restart due.
fn details(node: &Snapshot, now: SystemTime, color: bool) -> String {
    let mut parts: Vec<String> = Vec::new();
    match node.uptime_secs {
        Some(secs) if node.state == ActorState::Running => {
            parts.push(format!("up {}", human_duration(Duration::from_secs(secs))));
        }
        _ => {
            if let Some(since) = elapsed_since(&node.state_since, now) {
                parts.push(format!("for {}", human_duration(since)));
            }
        }
    }
    if node.restarts > 0 {
        parts.push(format!("↻ {}", node.restarts));
    }
    let troubled = matches!(node.state, ActorState::Failed | ActorState::BackingOff);
    if let Some(failure) = node.last_failure.as_ref().filter(|_| troubled) {
        let ago = match elapsed_since(&failure.at, now) {
            Some(d) if d.as_secs() == 0 => " just now".to_owned(),
            Some(d) => format!(" {} ago", human_duration(d)),
            None => String::new(),
        };
        let text = format!("last failure{ago}: {}", short_reason(&failure.reason));
        parts.push(if color && node.state == ActorState::Failed {
            format!("{RED}{text}{RESET}")
        } else {
            text
        });
    }
    if node.state == ActorState::BackingOff
        && let Some(ms) = node.next_restart_in_ms
    {
        parts.push(format!(
            "next restart in {}",
            precise_duration(Duration::from_millis(ms))
        ));
    }
    parts.join("  ")
}

fn state_color(state: ActorState) -> Option<&'static str> {
    Some(match state {
        ActorState::Running => GREEN,
        ActorState::Starting | ActorState::BackingOff | ActorState::Stopping => YELLOW,
        ActorState::Failed => RED,
        ActorState::Stopped => DIM,
    })
}

/// How long before `now` the RFC 3339 time `at` was; zero when it is in the future (clock
/// skew), `None` when it does not parse.
fn elapsed_since(at: &str, now: SystemTime) -> Option<Duration> {
    let at = humantime::parse_rfc3339_weak(at).ok()?;
    Some(now.duration_since(at).unwrap_or(Duration::ZERO))
}

/// A duration to whole seconds in its two largest units, a zero second unit omitted:
/// `3d 4h`, `2h 10m`, `12m 5s`, `10m`, `42s`.
pub fn human_duration(d: Duration) -> String {
    let secs = d.as_secs();
    let (days, hours, mins, s) = (secs / 86_400, secs / 3_600 % 24, secs / 60 % 60, secs % 60);
    let (major, minor) = if days > 0 {
        ((days, 'd'), (hours, 'h'))
    } else if hours > 0 {
        ((hours, 'h'), (mins, 'm'))
    } else if mins > 0 {
        ((mins, 'm'), (s, 's'))
    } else {
        return format!("{s}s");
    };
    if minor.0 == 0 {
        format!("{}{}", major.0, major.1)
    } else {
        format!("{}{} {}{}", major.0, major.1, minor.0, minor.1)
    }
}

/// A short duration with a tenth of a second (`2.1s`); a minute and more as [`human_duration`].
pub fn precise_duration(d: Duration) -> String {
    if d < Duration::from_secs(60) {
        format!("{:.1}s", d.as_secs_f64())
    } else {
        human_duration(d)
    }
}

/// The first line of a failure reason, control characters replaced, at most
/// [`MAX_REASON_CHARS`] characters.
fn short_reason(reason: &str) -> String {
    let first = reason.trim().lines().next().unwrap_or("");
    let mut out = sanitize(first);
    if out.chars().count() > MAX_REASON_CHARS || reason.trim().lines().nth(1).is_some() {
        out = out.chars().take(MAX_REASON_CHARS).collect();
        out.push('…');
    }
    out
}

/// Replaces control characters (escape sequences from a server's output, say) by spaces.
fn sanitize(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}
