//! [`ToolRunner`]: how the daemon runs a cron job, through the same path as a session's
//! call.
//!
//! Part of the scheduler ([`super`]): its actor spawns one run at a time per job and hands it
//! here. A run:
//! 1. spends one action of the job's own hourly budget (`[security] max_actions_per_hour`,
//!    keyed `cron:<job>`): a job cannot out-run the policy by its schedule;
//! 2. opens a session in the session table (label `cron:<job>`, cwd = the job's workspace,
//!    scope = its creator's client-token scope), registered as in use for the run, and ends
//!    it afterwards (also when the run is dropped);
//! 3. refuses a tool outside that scope, activates the tool in the session (deferred loading)
//!    and resolves it with [`ToolRegistry::resolve`], waiting up to [`SERVER_WAIT`] for the
//!    tool's server when it is registered but not connected yet (a catch-up run right after
//!    the daemon starts);
//! 4. runs it with [`ToolRegistry::execute`] (the built-in tools' policy gates, audit,
//!    panic guard and call ceiling apply as for any session's call).
//!
//! The outcome is `ok`, `error` (`isError`, unknown tool, no session) or `refused` (scope,
//! security policy, budget).

use std::path::Path;
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use futures::future::BoxFuture;
use revka_actors::session::{NewSession, Sessions};
use revka_mcp::wrapper::{RawArguments, raw_result_is_error};
use serde_json::value::RawValue;

use super::{Job, Outcome, RunResult, Runner};
use crate::security::Policy;
use crate::tools::{ToolContext, ToolRegistry};

/// How long a run waits for its tool's server to connect (when it is registered but not
/// connected).
pub const SERVER_WAIT: Duration = Duration::from_secs(30);

/// The daemon's [`Runner`].
pub struct ToolRunner {
    sessions: Arc<Sessions>,
    policy: Arc<Policy>,
    registry: Arc<OnceLock<Weak<ToolRegistry>>>,
}

impl ToolRunner {
    /// Runs in sessions of `sessions`, within `policy`, through the registry once attached.
    pub fn new(
        sessions: Arc<Sessions>,
        policy: Arc<Policy>,
        registry: Arc<OnceLock<Weak<ToolRegistry>>>,
    ) -> Self {
        Self {
            sessions,
            policy,
            registry,
        }
    }
}

impl Runner for ToolRunner {
    fn run(&self, job: &Job, run_id: &str) -> BoxFuture<'static, RunResult> {
        let (sessions, policy) = (self.sessions.clone(), self.policy.clone());
        let registry = self.registry.get().and_then(Weak::upgrade);
        let (job, run_id) = (job.clone(), run_id.to_owned());
        Box::pin(async move { run(sessions, policy, registry, job, run_id).await })
    }
}

fn error(text: impl Into<String>) -> RunResult {
    RunResult {
        outcome: Outcome::Error,
        result: text.into(),
    }
}

fn refused(text: impl Into<String>) -> RunResult {
    RunResult {
        outcome: Outcome::Refused,
        result: text.into(),
    }
}

/// Ends the run's session when dropped, and forgets its action budget (the job's own,
/// `cron:<job>`, is what limits its runs).
struct EndSession<'a> {
    sessions: &'a Sessions,
    policy: &'a Policy,
    id: String,
}

impl Drop for EndSession<'_> {
    fn drop(&mut self) {
        self.sessions.end(&self.id, "cron run finished");
        self.policy.forget(&self.id);
    }
}

async fn run(
    sessions: Arc<Sessions>,
    policy: Arc<Policy>,
    registry: Option<Arc<ToolRegistry>>,
    job: Job,
    run_id: String,
) -> RunResult {
    if policy.charge(&format!("cron:{}", job.id)).is_err() {
        return refused(format!(
            "refused by the security policy (max_actions_per_hour): this job ran {} times in the \
             last hour, the limit of [security] max_actions_per_hour; this run is skipped",
            policy.config().max_actions_per_hour
        ));
    }
    let Some(registry) = registry else {
        return error("the tool registry is not available (the daemon is starting or stopping)");
    };
    if !job.workspace.is_dir() {
        return error(format!(
            "the job's workspace {} no longer exists (or is not a directory)",
            job.workspace.display()
        ));
    }
    let mut new = NewSession::new(Arc::<Path>::from(job.workspace.as_path()))
        .with_label(Some(format!("cron:{}", job.id)));
    new.scope = job.scope.clone().map(Arc::new);
    let session = match sessions.create(new).await {
        Ok((session, _token)) => session,
        Err(e) => return error(format!("cannot open a session for the run: {e}")),
    };
    let _end = EndSession {
        sessions: &sessions,
        policy: &policy,
        id: session.id().to_owned(),
    };
    let guard = match session.begin_call(&format!("\"{run_id}\"")) {
        Ok(guard) => guard,
        Err(e) => return error(format!("cannot register the run's call: {e}")),
    };
    if !session.in_scope(&job.tool) {
        return refused(format!(
            "refused (scope): the tool `{}` is outside the tool scope of the client token that \
             created the job",
            job.tool
        ));
    }
    wait_for_server(&registry, &job.tool).await;
    registry.activate(&session, [job.tool.as_str()]);
    let resolved = match registry.resolve(&session, &job.tool) {
        Ok(resolved) => resolved,
        Err(e) => return error(e.to_string()),
    };
    let arguments = match RawValue::from_string(job.arguments.to_string())
        .map_err(|e| e.to_string())
        .and_then(|raw| RawArguments::new(&raw).map_err(|e| e.to_string()))
    {
        Ok(arguments) => arguments,
        Err(e) => return error(format!("the job's arguments cannot be sent: {e}")),
    };
    let ctx = ToolContext {
        session: session.clone(),
        registry: registry.clone(),
        progress: Arc::new(|_| {}),
        relay: None,
    };
    let result = tokio::select! {
        result = ToolRegistry::execute(resolved, ctx, arguments) => result,
        () = guard.cancelled().cancelled() => return error("cancelled: the run's session ended"),
    };
    let text = result.get().to_owned();
    if !raw_result_is_error(&result) {
        RunResult {
            outcome: Outcome::Ok,
            result: text,
        }
    } else if text.contains("refused by the security policy (") {
        refused(text)
    } else {
        error(text)
    }
}

/// When `tool` belongs to a registered server that is not connected yet, waits (at most
/// [`SERVER_WAIT`]) until the tool is in the hub's table.
async fn wait_for_server(registry: &ToolRegistry, tool: &str) {
    let hub = registry.hub();
    let waiting = hub.servers().iter().any(|s| {
        tool.strip_prefix(s.spec().name.as_str())
            .is_some_and(|rest| rest.starts_with("__"))
            && s.client().is_none()
    });
    if !waiting || hub.tools().tools.contains_key(tool) {
        return;
    }
    let mut changes = hub.subscribe();
    let _ = tokio::time::timeout(SERVER_WAIT, async {
        while !hub.tools().tools.contains_key(tool) {
            if let Err(tokio::sync::broadcast::error::RecvError::Closed) = changes.recv().await {
                return;
            }
        }
    })
    .await;
}
