//! The supervision tree's shape as a value: which actors and supervisors a [`DaemonPlan`]
//! runs, with which strategies, restart policies and children.
//!
//! Part of the plan. `tree.rs` (the daemon's) turns each [`NodePlan`] into a child spec, and a
//! nested supervisor asks the current plan for its children each time it starts, so the tree
//! the daemon runs is the one [`DaemonPlan::tree`] returns (a unit test there checks the two
//! agree). [`NodePlan::render`] draws it for tests.
//!
//! `root` (`one_for_one`) has, in start order: `mcp_servers` (one child per server),
//! `sidecars` (`rest_for_one`: session manager, breaker, retry queue), `sessions` (temporary
//! session children, started at run time), `terminals` (the Code tab's temporary terminal
//! children), `mcp_http` and, when `[gateway] enabled`, `gateway`.

use revka_actors::retry_queue::QueueConfig;
use revka_actors::sidecar::SessionManagerSpec;
use revka_actors::supervisor::{Intensity, RestartPolicy, RestartType, Shutdown, Strategy};

use super::{DaemonPlan, ServerPlan};
use crate::config::InvalidServer;

/// One node of the supervision tree.
#[derive(Debug, Clone, PartialEq)]
pub struct NodePlan {
    /// Unique among its siblings: the last segment of its path (`root/mcp_servers/mcp:a`).
    pub id: String,
    /// When it is restarted and how it is stopped (unused for `root`, which nothing restarts).
    pub policy: RestartPolicy,
    /// Registered but left stopped until asked (`auto_connect = false`).
    pub manual: bool,
    /// What runs there.
    pub kind: NodeKind,
}

/// What runs at a node.
#[derive(Debug, Clone, PartialEq)]
pub enum NodeKind {
    /// A supervisor and its children, in start order.
    Supervisor {
        /// How a child's failure affects its siblings.
        strategy: Strategy,
        /// Restarts tolerated before it gives up and fails upward.
        intensity: Intensity,
        /// Its children, in start order.
        children: Vec<NodePlan>,
    },
    /// `root/sessions`: a `one_for_one` supervisor whose temporary children, the sessions (and
    /// their operators), are started at run time.
    Sessions,
    /// `root/terminals`: a `one_for_one` supervisor whose temporary children, the Code tab's
    /// terminals (`term:<id>`), are started at run time.
    Terminals,
    /// `root/progress`: the broadcaster of the sessions' progress events.
    Progress,
    /// An HTTP listener: `mcp_http` or `gateway`.
    Listener,
    /// A valid MCP server's connection actor.
    McpConnection(Box<ServerPlan>),
    /// An invalid server entry: a child that fails to start with the validation error, never
    /// restarted, so it shows as failed with its reason.
    InvalidServer(InvalidServer),
    /// The session manager's process.
    SessionManager(SessionManagerSpec),
    /// The circuit breaker in front of the session manager.
    Breaker,
    /// The retry queue of session-manager mutations.
    RetryQueue(QueueConfig),
}

impl NodeKind {
    /// The actor kind introspection shows for it (the child spec's `kind`).
    pub fn name(&self) -> &'static str {
        match self {
            Self::Supervisor { .. } | Self::Sessions | Self::Terminals => "supervisor",
            Self::Progress => "broadcaster",
            Self::Listener => "listener",
            Self::McpConnection(_) | Self::InvalidServer(_) => "mcp_connection",
            Self::SessionManager(_) => "process",
            Self::Breaker => "breaker",
            Self::RetryQueue(_) => "retry_queue",
        }
    }
}

impl NodePlan {
    /// The child with `id`, if any.
    pub fn child(&self, id: &str) -> Option<&NodePlan> {
        match &self.kind {
            NodeKind::Supervisor { children, .. } => children.iter().find(|c| c.id == id),
            _ => None,
        }
    }

    /// The children (none for anything but a supervisor).
    pub fn children(&self) -> &[NodePlan] {
        match &self.kind {
            NodeKind::Supervisor { children, .. } => children,
            _ => &[],
        }
    }

    /// The subtree, one node a line, indented two spaces a level:
    /// `id (kind[, strategy], restart[, manual][, what else])`.
    pub fn render(&self) -> String {
        let mut out = String::new();
        self.render_into(0, &mut out);
        out
    }

    fn render_into(&self, depth: usize, out: &mut String) {
        let mut facts = vec![self.kind.name().to_owned()];
        match &self.kind {
            NodeKind::Supervisor { strategy, .. } => {
                facts.push(strategy_name(*strategy).to_owned());
            }
            NodeKind::Sessions | NodeKind::Terminals => {
                facts.push(strategy_name(Strategy::OneForOne).to_owned());
            }
            _ => {}
        }
        if depth > 0 {
            facts.push(restart_name(self.policy.restart).to_owned());
        }
        if self.manual {
            facts.push("manual".to_owned());
        }
        match &self.kind {
            NodeKind::Sessions => facts.push("temporary session children".to_owned()),
            NodeKind::Terminals => facts.push("temporary terminal children".to_owned()),
            NodeKind::InvalidServer(_) => facts.push("fails to start".to_owned()),
            _ => {}
        }
        if self.policy.shutdown == Shutdown::BrutalKill {
            facts.push("brutal_kill".to_owned());
        }
        out.push_str(&format!(
            "{}{} ({})\n",
            "  ".repeat(depth),
            self.id,
            facts.join(", ")
        ));
        for child in self.children() {
            child.render_into(depth + 1, out);
        }
    }
}

impl DaemonPlan {
    /// The whole supervision tree, from `root`.
    pub fn tree(&self) -> NodePlan {
        let sup = &self.supervision;
        let mut children = vec![
            NodePlan {
                id: "progress".into(),
                policy: sup.permanent(),
                manual: false,
                kind: NodeKind::Progress,
            },
            self.mcp_servers(),
            self.sidecars_node(),
            NodePlan {
                id: "sessions".into(),
                policy: sup.nested_supervisor(),
                manual: false,
                kind: NodeKind::Sessions,
            },
            NodePlan {
                id: "terminals".into(),
                policy: sup.nested_supervisor(),
                manual: false,
                kind: NodeKind::Terminals,
            },
            NodePlan {
                id: "mcp_http".into(),
                policy: sup.permanent(),
                manual: false,
                kind: NodeKind::Listener,
            },
        ];
        if self.listeners.gateway.enabled {
            children.push(NodePlan {
                id: "gateway".into(),
                policy: sup.permanent(),
                manual: false,
                kind: NodeKind::Listener,
            });
        }
        NodePlan {
            id: "root".into(),
            policy: sup.permanent(),
            manual: false,
            kind: NodeKind::Supervisor {
                strategy: Strategy::OneForOne,
                intensity: sup.intensity,
                children,
            },
        }
    }

    /// `root/mcp_servers`: one connection per server while `[mcp] enabled`, valid ones first.
    fn mcp_servers(&self) -> NodePlan {
        let children = self
            .mcp
            .running()
            .map(|server| match server {
                Ok(server) => NodePlan {
                    id: format!("mcp:{}", server.name()),
                    policy: server.policy,
                    manual: !server.auto_connect,
                    kind: NodeKind::McpConnection(Box::new(server.clone())),
                },
                Err(invalid) => NodePlan {
                    id: format!("mcp:{}", invalid.name),
                    policy: super::invalid_server_policy(),
                    manual: false,
                    kind: NodeKind::InvalidServer(invalid.clone()),
                },
            })
            .collect();
        self.supervisor("mcp_servers", Strategy::OneForOne, children)
    }

    /// `root/sidecars`: the session manager, its breaker, its retry queue (`rest_for_one`: the
    /// breaker and queue restart after their sidecar); empty while it is disabled.
    fn sidecars_node(&self) -> NodePlan {
        let sc = &self.sidecars;
        let support = self.supervision.permanent();
        let children = if sc.enabled {
            vec![
                NodePlan {
                    id: "session_manager".into(),
                    policy: sc.policy,
                    manual: false,
                    kind: NodeKind::SessionManager(sc.process.clone()),
                },
                NodePlan {
                    id: "breaker:session_manager".into(),
                    policy: support,
                    manual: false,
                    kind: NodeKind::Breaker,
                },
                NodePlan {
                    id: "retry:session_manager".into(),
                    policy: support,
                    manual: false,
                    kind: NodeKind::RetryQueue(sc.queue.clone()),
                },
            ]
        } else {
            Vec::new()
        };
        self.supervisor("sidecars", Strategy::RestForOne, children)
    }

    fn supervisor(&self, id: &str, strategy: Strategy, children: Vec<NodePlan>) -> NodePlan {
        NodePlan {
            id: id.into(),
            policy: self.supervision.nested_supervisor(),
            manual: false,
            kind: NodeKind::Supervisor {
                strategy,
                intensity: self.supervision.intensity,
                children,
            },
        }
    }
}

fn strategy_name(strategy: Strategy) -> &'static str {
    match strategy {
        Strategy::OneForOne => "one_for_one",
        Strategy::OneForAll => "one_for_all",
        Strategy::RestForOne => "rest_for_one",
    }
}

fn restart_name(restart: RestartType) -> &'static str {
    match restart {
        RestartType::Permanent => "permanent",
        RestartType::Transient => "transient",
        RestartType::Temporary => "temporary",
    }
}
