//! The status tree's families, read at scrape time: each actor's state and restarts for the
//! bounded part of the tree, and the actors of sessions counted by kind and state.
//!
//! Part of [`Telemetry`](super::Telemetry). The tree under `root/sessions` grows with clients
//! (a session actor per session, its operator supervisor, connection and process below it), so
//! it never appears by path: a path there holds a session id, and a series per session would
//! both leak the ids to anyone who can scrape and grow without bound. Those actors are counted
//! in `revka_session_actors{kind,state}` instead.

use std::collections::BTreeMap;

use revka_actors::metrics::{Metrics, MetricsError, Row, one_hot};
use revka_actors::{ActorState, StatusNode};

/// The subtrees whose children come and go with clients: the node itself is exported by path,
/// everything below it only in aggregate.
pub(super) const PER_SESSION: &[&str] = &["root/sessions"];

/// Visits every actor of the bounded tree with `actor` (parents first) and every actor below a
/// [`PER_SESSION`] node with `session`.
fn walk(
    node: &StatusNode,
    actor: &mut dyn FnMut(&StatusNode),
    session: &mut dyn FnMut(&StatusNode),
) {
    actor(node);
    let per_session = PER_SESSION.contains(&node.path());
    for child in node.children() {
        if per_session {
            child.walk(session);
        } else {
            walk(&child, actor, session);
        }
    }
}

/// Registers `revka_actor_state`, `revka_actor_restarts_total` and `revka_session_actors` over
/// the tree rooted at `root`.
pub(super) fn register(metrics: &Metrics, root: &StatusNode) -> Result<(), MetricsError> {
    let tree = root.clone();
    metrics.register_gauge_fn(
        "revka_actor_state",
        "State of each supervised actor outside sessions: 1 for its current state, 0 for the others.",
        &["path", "kind", "state"],
        Box::new(move || {
            let mut rows = Vec::new();
            walk(
                &tree,
                &mut |n| {
                    let labels = [n.path(), n.kind()];
                    one_hot(&mut rows, &labels, &ActorState::ALL, n.state(), ActorState::as_str);
                },
                &mut |_| {},
            );
            rows
        }),
    )?;
    let tree = root.clone();
    metrics.register_counter_fn(
        "revka_actor_restarts_total",
        "Restarts of each supervised actor outside sessions since its supervisor created it.",
        &["path", "kind"],
        Box::new(move || {
            let mut rows = Vec::new();
            walk(
                &tree,
                &mut |n| {
                    let labels = vec![n.path().to_owned(), n.kind().to_owned()];
                    rows.push((labels, n.restarts() as f64));
                },
                &mut |_| {},
            );
            rows
        }),
    )?;
    let tree = root.clone();
    metrics.register_gauge_fn(
        "revka_session_actors",
        "Actors of MCP sessions (the sessions themselves and what runs under them), by kind and state.",
        &["kind", "state"],
        Box::new(move || session_actor_rows(&tree)),
    )
}

/// One row per kind seen below the per-session subtrees (and always `session`) and state.
fn session_actor_rows(root: &StatusNode) -> Vec<Row> {
    let mut counts: BTreeMap<&'static str, [u64; ActorState::ALL.len()]> = BTreeMap::new();
    counts.insert("session", Default::default());
    walk(root, &mut |_| {}, &mut |n| {
        let by_state = counts.entry(n.kind()).or_default();
        if let Some(i) = ActorState::ALL.iter().position(|&s| s == n.state()) {
            by_state[i] += 1;
        }
    });
    let mut rows = Vec::new();
    for (kind, by_state) in counts {
        for (state, n) in ActorState::ALL.iter().zip(by_state) {
            rows.push((vec![kind.to_owned(), state.as_str().to_owned()], n as f64));
        }
    }
    rows
}
