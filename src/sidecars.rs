//! The sidecars subtree, `root/sidecars` (`rest_for_one`; drawn in `docs/architecture.md`):
//! `session_manager` (the Node sidecar, with readiness and liveness on its Unix socket), then
//! `breaker:session_manager` (guards every daemon → sidecar call), then
//! `retry:session_manager` (the persistent queue of sidecar mutations to retry).
//!
//! With `rest_for_one`, the breaker and the queue restart after their sidecar restarts; their
//! state lives in shared handles, so a restart of the actors keeps it (the queue also survives
//! a daemon restart through its journal). [`SidecarServices::request`] is the one way the daemon
//! talks to the session manager: through the breaker, with a 4xx answer counted as the caller's
//! mistake and everything else as a sidecar fault — including an answer that is not what the
//! API promises (not JSON, too large, or not an object with the expected [`Field`]s), which
//! is an error result for the caller and a failure for the breaker.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use futures::future::BoxFuture;
use revka_actors::breaker::{
    BreakerError, BreakerHandle, BreakerRegistry, BreakerState, breaker_spec,
};
use revka_actors::process::child_spec;
use revka_actors::retry_queue::{
    Executor, Operation, QueueConfig, RetryQueueHandle, retry_queue_spec,
};
use revka_actors::sidecar::{
    SessionManagerSpec, SidecarClient, SidecarError, session_manager_process,
};
use revka_actors::supervisor::{ChildContext, ChildSpec, RestartPolicy};
use revka_actors::{ActorState, StatusNode};
use revka_mcp::wrapper::json_kind;
use serde_json::{Value, json};

use crate::agents::feed::Feed;
use crate::config::plan::SidecarPlan;

/// Outcomes of queued operations kept for `get_retry_queue_status` (newest last).
pub const RECENT_OUTCOMES: usize = 100;

/// Default deadline of one sidecar request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a sidecar call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SidecarCallError {
    /// The session manager is not enabled in the config.
    #[error("the session manager is not enabled ([session_manager] enabled = false)")]
    Disabled,
    /// The breaker is open: the sidecar failed recently; the call was not attempted.
    #[error("{0}")]
    Open(String),
    /// The call was attempted and failed.
    #[error(transparent)]
    Sidecar(SidecarError),
    /// The call failed or was rejected while the sidecar's process is not running: the
    /// failure, then what the supervisor knows of the process.
    #[error("{cause}; {process}")]
    Down {
        /// The failure itself.
        cause: Box<SidecarCallError>,
        /// The process's state, restarts and last failure.
        process: String,
    },
}

impl SidecarCallError {
    /// Whether queueing the call for later makes sense (the sidecar is down, not the request
    /// wrong).
    pub fn is_unavailable(&self) -> bool {
        match self {
            Self::Open(_) => true,
            Self::Sidecar(e) => e.is_sidecar_fault(),
            Self::Down { .. } => true,
            Self::Disabled => false,
        }
    }

    /// Whether the request surely never reached the session manager (the breaker refused it,
    /// or nothing accepted the connection), so running it elsewhere cannot do it twice. A
    /// timeout or a broken answer may come after the sidecar acted.
    pub fn never_reached(&self) -> bool {
        match self {
            Self::Open(_) | Self::Disabled => true,
            Self::Sidecar(e) => matches!(e, SidecarError::Unreachable { .. }),
            Self::Down { cause, .. } => cause.never_reached(),
        }
    }
}

/// A field a session-manager answer must have (every answer is a JSON object).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// A string.
    Str(&'static str),
    /// `true` or `false`.
    Bool(&'static str),
    /// A number.
    Number(&'static str),
    /// An array.
    Array(&'static str),
    /// An object.
    Object(&'static str),
}

/// Checks that `value` is a JSON object with `fields`; says what is wrong otherwise.
pub fn check_shape(value: &Value, fields: &[Field]) -> Result<(), String> {
    let Some(object) = value.as_object() else {
        return Err(format!("expected a JSON object, got {}", json_kind(value)));
    };
    for field in fields {
        let (name, want, fits): (&str, &str, fn(&Value) -> bool) = match *field {
            Field::Str(n) => (n, "a string", Value::is_string),
            Field::Bool(n) => (n, "a boolean", Value::is_boolean),
            Field::Number(n) => (n, "a number", Value::is_number),
            Field::Array(n) => (n, "an array", Value::is_array),
            Field::Object(n) => (n, "an object", Value::is_object),
        };
        match object.get(name) {
            None => return Err(format!("`{name}` is missing (expected {want})")),
            Some(v) if !fits(v) => {
                return Err(format!("`{name}` is {}, expected {want}", json_kind(v)));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// The daemon's handles on the session manager.
#[derive(Debug, Clone)]
pub struct SidecarServices {
    /// Whether the session manager runs at all.
    pub enabled: bool,
    /// The HTTP client of its socket.
    pub client: SidecarClient,
    /// The breaker guarding it.
    pub breaker: BreakerHandle,
    /// The retry queue of its mutations.
    pub queue: RetryQueueHandle,
    /// Every breaker, for metrics.
    pub breakers: BreakerRegistry,
    /// The session manager's command line (for the diagnosis of a process that is down).
    command: Arc<Vec<String>>,
    /// The session manager's status node, once its supervisor has started it.
    process: Arc<RwLock<Option<StatusNode>>>,
    /// The agent feed (`/ws/agents/events`): queued operations' outcomes are published on it.
    pub feed: Feed,
    /// The last [`RECENT_OUTCOMES`] outcomes of queued operations (success or dead letter).
    outcomes: Arc<Mutex<VecDeque<Value>>>,
}

impl SidecarServices {
    /// Handles for the planned session manager.
    pub fn new(plan: &SidecarPlan) -> Self {
        let breaker = BreakerHandle::new("session_manager", plan.breaker);
        let breakers = BreakerRegistry::new();
        breakers.insert("session_manager", breaker.clone());
        Self {
            enabled: plan.enabled,
            client: SidecarClient::new(&plan.process.socket, REQUEST_TIMEOUT),
            breaker,
            queue: RetryQueueHandle::new(),
            breakers,
            command: Arc::new(plan.process.command.clone()),
            process: Arc::new(RwLock::new(None)),
            feed: Feed::new(),
            outcomes: Arc::default(),
        }
    }

    /// The recent outcomes of queued operations, oldest first: `{operation_id, operation,
    /// ok, result?, error?, at}`.
    pub fn recent_outcomes(&self) -> Vec<Value> {
        self.outcomes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .cloned()
            .collect()
    }

    /// Records a queued operation's outcome and publishes it as a `queued_outcome` item.
    fn record_outcome(&self, op: &Operation, outcome: Result<Value, String>) {
        let mut item = json!({
            "source": "revka", "kind": "queued_outcome", "operation_id": op.id,
            "operation": op.payload.get("operation").cloned().unwrap_or(json!("sidecar_request")),
            "ok": outcome.is_ok(),
            "attempts": op.attempts,
            "at": revka_actors::status::rfc3339(std::time::SystemTime::now()),
        });
        if let Some(session) = op.payload.get("session").filter(|s| s.is_string()) {
            item["session"] = session.clone();
        }
        match outcome {
            Ok(result) => item["result"] = result,
            Err(error) => item["error"] = json!(error),
        }
        {
            let mut outcomes = self.outcomes.lock().unwrap_or_else(PoisonError::into_inner);
            outcomes.push_back(item.clone());
            while outcomes.len() > RECENT_OUTCOMES {
                outcomes.pop_front();
            }
        }
        self.feed.publish(item);
    }

    /// What is wrong with the session manager's process, if it is not running: its state,
    /// restarts and last failure as the supervisor recorded them, and a script argument that
    /// does not exist. `None` while it runs (or before its first start).
    pub fn process_problem(&self) -> Option<String> {
        let node = self
            .process
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()?;
        let state = node.state();
        if state == ActorState::Running {
            return None;
        }
        let mut out = format!(
            "the session manager process is {state} after {} restart(s)",
            node.restarts()
        );
        if let Some(failure) = node.last_failure() {
            out.push_str(&format!("; last failure: {failure}"));
        }
        if let Some(script) = self.command.iter().skip(1).find(|a| is_script(a))
            && !Path::new(script).exists()
        {
            out.push_str(&format!(
                "; its script {script} does not exist ([session_manager] command)"
            ));
        }
        out.push_str(&format!(" (`revka status --path {}`)", node.path()));
        Some(out)
    }

    /// Whether the session manager's supervisor gave up on its process (`failed`: restarts
    /// used up; it does not come back without an operator).
    pub fn gave_up(&self) -> bool {
        self.process
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .is_some_and(|node| node.state() == ActorState::Failed)
    }

    /// One request to the session manager, through the breaker; the answer must be a JSON
    /// object.
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        timeout: Option<Duration>,
    ) -> Result<Value, SidecarCallError> {
        self.request_shaped(method, path, body, timeout, &[]).await
    }

    /// [`Self::request`] whose answer must also have `fields`. An answer of another shape is a
    /// [`SidecarError::Protocol`] error, counted by the breaker as a failure.
    pub async fn request_shaped(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        timeout: Option<Duration>,
        fields: &[Field],
    ) -> Result<Value, SidecarCallError> {
        self.request_keyed(method, path, body, timeout, fields, None)
            .await
    }

    /// [`Self::request_shaped`] with an idempotency key (see
    /// [`SidecarClient::request_keyed`]): a mutation that may be queued and retried sends the
    /// id of its operation on every attempt, the first included, so none runs twice.
    pub async fn request_keyed(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        timeout: Option<Duration>,
        fields: &[Field],
        idempotency_key: Option<&str>,
    ) -> Result<Value, SidecarCallError> {
        if !self.enabled {
            return Err(SidecarCallError::Disabled);
        }
        let timeout = timeout.unwrap_or(REQUEST_TIMEOUT);
        let call = async {
            let value = self
                .client
                .request_keyed(method, path, body.as_ref(), timeout, idempotency_key)
                .await?;
            check_shape(&value, fields).map_err(|why| SidecarError::Protocol {
                method: method.to_owned(),
                path: path.to_owned(),
                reason: format!("unexpected answer: {why}"),
            })?;
            Ok(value)
        };
        // A 4xx is the caller's mistake: the sidecar answered, so it counts as healthy.
        let healthy = |r: &Result<Value, SidecarError>| {
            r.as_ref().map_or_else(|e| !e.is_sidecar_fault(), |_| true)
        };
        let probe_timeout = self.breaker.config().probe_timeout;
        let admitted = if timeout > probe_timeout && self.breaker.state() != BreakerState::Closed {
            // A call that may outlast `probe_timeout` (a long-poll) must not be the probe: it
            // would count as failed against a healthy sidecar. `GET /health` probes instead,
            // and the call then runs on the breaker it left (closed, or rejected at once).
            let probe = self.client.request("GET", "/health", None, probe_timeout);
            match self.breaker.call_classified(probe, healthy).await {
                Err(e @ (BreakerError::Open(_) | BreakerError::ProbeTimeout)) => Err(e),
                Ok(_) | Err(BreakerError::Inner(_)) => Ok(()),
            }
        } else {
            Ok(())
        };
        let result = match admitted {
            Ok(()) => self.breaker.call_classified(call, healthy).await,
            Err(e) => Err(e),
        };
        let error = match result {
            Ok(v) => return Ok(v),
            Err(BreakerError::Open(rejected)) => SidecarCallError::Open(rejected.to_string()),
            Err(BreakerError::ProbeTimeout) => SidecarCallError::Open(
                "the circuit breaker's probe of the session manager timed out".into(),
            ),
            Err(BreakerError::Inner(e)) => SidecarCallError::Sidecar(e),
        };
        Err(match self.process_problem() {
            Some(process) if error.is_unavailable() => SidecarCallError::Down {
                cause: Box::new(error),
                process,
            },
            _ => error,
        })
    }

    /// A fresh operation id: the idempotency key of a mutation that may be queued.
    pub fn operation_id() -> String {
        format!("op-{}", unique_suffix())
    }

    /// Queues a mutation under `id` (from [`Self::operation_id`], the key its first attempt
    /// was sent with) to retry when the sidecar is back. Returns the id. `operation` names it
    /// (`create_agent`, …) and `session` is the MCP session that asked, for the outcome.
    ///
    /// With `rest_for_one` the queue actor is down while its sidecar restarts (backoff up to
    /// `backoff_max`); the handle then appends the mutation to the queue's inbox on disk, and
    /// the queue's next start queues it. Only before the queue's first start can the handle not
    /// take it: give the supervisor a moment to start the queue, then fail.
    pub async fn enqueue(
        &self,
        id: String,
        method: &str,
        path: &str,
        body: Option<Value>,
        operation: Option<&str>,
        session: Option<&str>,
    ) -> Result<String, String> {
        use revka_actors::retry_queue::EnqueueError;
        let op = Operation::new(
            &id,
            "sidecar_request",
            json!({
                "method": method, "path": path, "body": body,
                "operation": operation, "session": session,
            }),
        );
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            match self.queue.enqueue(op.clone()).await {
                Ok(_) => return Ok(id),
                Err(EnqueueError::Unavailable(e))
                    if !self.queue.accepts_while_down()
                        && tokio::time::Instant::now() < deadline =>
                {
                    tracing::debug!(error = %e, "retry queue not started yet; waiting to enqueue");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(EnqueueError::Unavailable(e)) if !self.queue.accepts_while_down() => {
                    return Err(format!(
                        "the retry queue is unavailable: {e}; it has not started within 5 s (`revka status --path root/sidecars/retry:session_manager`)"
                    ));
                }
                Err(e) => return Err(e.to_string()),
            }
        }
    }

    /// The session manager's process, `root/sidecars/<id>`, with `env` (from `[agents]`:
    /// [`crate::config::AgentsConfig::sidecar_env`]) added to its environment. Its start
    /// records the process's status node, for [`Self::process_problem`].
    pub fn process_child(
        &self,
        id: &str,
        process: &SessionManagerSpec,
        env: &[(String, String)],
        policy: RestartPolicy,
    ) -> ChildSpec {
        let mut spec = session_manager_process(process);
        spec.env.extend(env.iter().cloned());
        let mut sidecar = child_spec(id, spec, policy);
        let (start, slot) = (sidecar.start.clone(), self.process.clone());
        sidecar.start = Arc::new(move |ctx: ChildContext| {
            *slot.write().unwrap_or_else(PoisonError::into_inner) = Some(ctx.node.clone());
            start(ctx)
        });
        sidecar
    }

    /// The breaker's actor, `root/sidecars/<id>`: its state lives in [`Self::breaker`].
    pub fn breaker_child(&self, id: &str, policy: RestartPolicy) -> ChildSpec {
        breaker_spec(id, self.breaker.clone(), policy)
    }

    /// The retry queue's actor, `root/sidecars/<id>`, replaying through [`Self::request_keyed`].
    pub fn retry_queue_child(
        &self,
        id: &str,
        queue: QueueConfig,
        policy: RestartPolicy,
    ) -> ChildSpec {
        let executor: Arc<dyn Executor> = Arc::new(SidecarExecutor {
            services: self.clone(),
            max_retries: queue.max_retries,
            attempt_timeout: queue.attempt_timeout,
        });
        retry_queue_spec(id, queue, executor, self.queue.clone(), policy)
    }
}

/// Replays queued sidecar mutations through the breaker, and records each one's outcome: its
/// success (with the sidecar's answer), or its last failure when the queue dead-letters it
/// (the attempt numbered past `max_retries`).
struct SidecarExecutor {
    services: SidecarServices,
    max_retries: u32,
    /// The queue's deadline of one attempt: the executor's own ends a little earlier, so a
    /// last attempt that times out is still recorded.
    attempt_timeout: Duration,
}

impl Executor for SidecarExecutor {
    fn execute(&self, op: &Operation) -> BoxFuture<'static, Result<(), String>> {
        let services = self.services.clone();
        let last = op.attempts > self.max_retries;
        let limit = self
            .attempt_timeout
            .saturating_sub(Duration::from_millis(100))
            .max(Duration::from_millis(1));
        let op = op.clone();
        Box::pin(async move {
            let outcome = match tokio::time::timeout(limit, Self::attempt(&services, &op)).await {
                Ok(outcome) => outcome,
                Err(_) => Err(format!(
                    "attempt timed out after {}",
                    humantime::format_duration(limit)
                )),
            };
            match outcome {
                Ok(answer) => {
                    services.record_outcome(&op, Ok(answer));
                    Ok(())
                }
                Err(e) => {
                    if last {
                        services.record_outcome(&op, Err(e.clone()));
                    }
                    Err(e)
                }
            }
        })
    }

    /// While the breaker is open the queue waits for its next probe instead of spending the
    /// operations' retries on rejections. (The breaker's own actor or any call moves it to
    /// half_open on time; the queue's next attempt may then be the probe.)
    fn unavailable_for(&self) -> Option<Duration> {
        self.services.breaker.advance();
        let status = self.services.breaker.status();
        (status.state == BreakerState::Open)
            .then(|| Duration::from_millis(status.next_probe_in_ms.unwrap_or(0)))
    }
}

impl SidecarExecutor {
    /// One attempt of `op`: the sidecar's answer.
    async fn attempt(services: &SidecarServices, op: &Operation) -> Result<Value, String> {
        let payload = op.payload.clone();
        let id = op.id.clone();
        {
            let method = payload["method"]
                .as_str()
                .ok_or("operation without a method")?
                .to_owned();
            let path = payload["path"]
                .as_str()
                .ok_or("operation without a path")?
                .to_owned();
            let body = payload.get("body").cloned().filter(|b| !b.is_null());
            // The operation id is the idempotency key: an attempt that timed out after the
            // sidecar acted is answered again, not acted on twice.
            services
                .request_keyed(&method, &path, body, None, &[], Some(&id))
                .await
                .map_err(|e| e.to_string())
        }
    }
}

/// Whether a command-line argument names a script file (an absolute `.js`, `.mjs` or `.cjs`
/// path).
fn is_script(arg: &str) -> bool {
    let path = PathBuf::from(arg);
    path.is_absolute()
        && path
            .extension()
            .is_some_and(|e| e == "js" || e == "mjs" || e == "cjs")
}

fn unique_suffix() -> String {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        return format!("{nanos:x}");
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, DaemonPlan};

    /// Only a call that surely never reached the session manager may run elsewhere (the CLI
    /// fallback): after a timeout or a 5xx the sidecar may have acted. All of them may be
    /// queued (the queue's retries carry the idempotency key).
    #[test]
    fn only_a_call_that_never_reached_the_sidecar_counts_as_never_reached() {
        let unreachable = SidecarError::Unreachable {
            socket: "/s".into(),
            reason: "refused".into(),
        };
        let timeout = SidecarError::Timeout {
            method: "POST".into(),
            path: "/agents".into(),
            secs: 30,
        };
        let failed = SidecarError::Status {
            method: "POST".into(),
            path: "/agents".into(),
            status: 500,
            message: "boom".into(),
        };
        let down = |cause: SidecarCallError| SidecarCallError::Down {
            cause: Box::new(cause),
            process: "backing_off".into(),
        };
        for (error, never) in [
            (SidecarCallError::Open("open".into()), true),
            (SidecarCallError::Sidecar(unreachable.clone()), true),
            (down(SidecarCallError::Sidecar(unreachable)), true),
            (SidecarCallError::Sidecar(timeout.clone()), false),
            (down(SidecarCallError::Sidecar(timeout)), false),
            (SidecarCallError::Sidecar(failed), false),
        ] {
            assert_eq!(error.never_reached(), never, "{error}");
            assert!(error.is_unavailable(), "{error}");
        }
    }

    #[test]
    fn a_process_that_is_down_is_described_with_its_failure_and_missing_script() {
        let home = tempfile::tempdir().unwrap();
        let mut config = Config::default_in(home.path());
        let script = home.path().join("gone/session-manager.js");
        config.session_manager.command = vec!["node".into(), script.display().to_string()];
        let services = SidecarServices::new(&DaemonPlan::new(&config, home.path()).sidecars);
        assert_eq!(services.process_problem(), None, "not started yet");
        let node = StatusNode::root("session_manager", "process");
        *services.process.write().unwrap() = Some(node.clone());
        node.set_state(ActorState::Running);
        assert_eq!(services.process_problem(), None, "running");
        node.record_failure("process exited with status 1");
        node.record_restart(Duration::from_secs(1));
        node.set_state(ActorState::BackingOff);
        assert_eq!(
            services.process_problem().unwrap(),
            format!(
                "the session manager process is backing_off after 1 restart(s); last failure: \
                 process exited with status 1; its script {} does not exist ([session_manager] \
                 command) (`revka status --path session_manager`)",
                script.display()
            )
        );
        assert!(is_script("/a/b.mjs") && is_script("/a/b.cjs") && is_script("/a/b.js"));
        assert!(!is_script("b.js") && !is_script("/a/b.py") && !is_script("--socket"));
    }

    /// A fake session manager on a Unix socket: `/health` answers at once, `/slow` after 1.5 s;
    /// every request line is recorded.
    async fn fake_sidecar(socket: &Path) -> Arc<std::sync::Mutex<Vec<String>>> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::UnixListener::bind(socket).unwrap();
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let record = seen.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let record = record.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let head = String::from_utf8_lossy(&head);
                    let mut line = head.lines().next().unwrap_or_default().to_owned();
                    if let Some(key) = head
                        .lines()
                        .find_map(|l| l.strip_prefix("idempotency-key: "))
                    {
                        line.push_str(&format!(" key={key}"));
                    }
                    record.lock().unwrap().push(line.clone());
                    if line.contains("/slow") {
                        tokio::time::sleep(Duration::from_millis(1500)).await;
                    }
                    let body = r#"{"ok":true}"#;
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                         content-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = stream.write_all(answer.as_bytes()).await;
                });
            }
        });
        seen
    }

    /// Services whose session manager is [`fake_sidecar`] in `home`, with `breaker` settings.
    async fn with_fake_sidecar(
        home: &Path,
        breaker: impl FnOnce(&mut crate::config::BreakerConfig),
    ) -> (SidecarServices, Arc<std::sync::Mutex<Vec<String>>>) {
        let mut config = Config::default_in(home);
        let socket = home.join("sm.sock");
        config.session_manager.enabled = true;
        config.session_manager.socket_path = socket.clone();
        breaker(&mut config.session_manager.breaker);
        let services = SidecarServices::new(&DaemonPlan::new(&config, home).sidecars);
        let seen = fake_sidecar(&socket).await;
        (services, seen)
    }

    /// A call that may outlast `probe_timeout` (a long-poll) is not made the half-open probe,
    /// which it would fail against a healthy sidecar: `GET /health` probes first, the breaker
    /// closes, and the long call then runs to its end.
    #[tokio::test]
    async fn a_long_call_is_not_the_probe_a_health_check_is() {
        let home = tempfile::tempdir().unwrap();
        let (services, seen) = with_fake_sidecar(home.path(), |b| {
            b.failure_threshold = 1;
            b.recovery_timeout_secs = 1;
            b.probe_timeout_secs = 1;
        })
        .await;
        services.breaker.record_failure();
        assert_eq!(services.breaker.state(), BreakerState::Open);
        tokio::time::sleep(Duration::from_millis(1100)).await;

        let long = services
            .request_shaped("GET", "/slow", None, Some(Duration::from_secs(10)), &[])
            .await;
        assert_eq!(long.unwrap(), json!({ "ok": true }));
        assert_eq!(services.breaker.state(), BreakerState::Closed);
        assert_eq!(
            *seen.lock().unwrap(),
            ["GET /health HTTP/1.1", "GET /slow HTTP/1.1"]
        );

        // A short call is its own probe, as before.
        services.breaker.record_failure();
        tokio::time::sleep(Duration::from_millis(1100)).await;
        seen.lock().unwrap().clear();
        let short = services
            .request_shaped("GET", "/quick", None, Some(Duration::from_millis(500)), &[])
            .await;
        assert!(short.is_ok(), "{short:?}");
        assert_eq!(services.breaker.state(), BreakerState::Closed);
        assert_eq!(*seen.lock().unwrap(), ["GET /quick HTTP/1.1"]);
    }

    /// Every attempt of a queued operation carries its id as `Idempotency-Key`, so the session
    /// manager answers a retry of a mutation that already happened instead of repeating it.
    #[tokio::test]
    async fn a_queued_operation_is_sent_with_its_id_as_idempotency_key() {
        let home = tempfile::tempdir().unwrap();
        let (services, seen) = with_fake_sidecar(home.path(), |_| {}).await;
        let op = Operation::new(
            "op-abc",
            "sidecar_request",
            json!({ "method": "POST", "path": "/chat/rooms", "body": { "name": "r" } }),
        );
        SidecarExecutor {
            services: services.clone(),
            max_retries: 3,
            attempt_timeout: Duration::from_secs(30),
        }
        .execute(&op)
        .await
        .unwrap();
        let outcomes = services.recent_outcomes();
        assert_eq!(outcomes.len(), 1);
        assert_eq!(outcomes[0]["operation_id"], "op-abc");
        assert_eq!(outcomes[0]["ok"], true);
        assert_eq!(outcomes[0]["result"], json!({ "ok": true }));
        let key = SidecarServices::operation_id();
        services
            .request_keyed("POST", "/agents", None, None, &[], Some(&key))
            .await
            .unwrap();
        services
            .request("GET", "/health", None, None)
            .await
            .unwrap();
        assert_eq!(
            *seen.lock().unwrap(),
            [
                "POST /chat/rooms HTTP/1.1 key=op-abc".to_owned(),
                format!("POST /agents HTTP/1.1 key={key}"),
                "GET /health HTTP/1.1".to_owned(),
            ]
        );
    }

    #[test]
    fn answers_of_the_wrong_shape_are_named_precisely() {
        let fields = [Field::Str("id"), Field::Array("agents"), Field::Bool("ok")];
        let good = json!({ "id": "a", "agents": [], "ok": true, "extra": 1 });
        assert_eq!(check_shape(&good, &fields), Ok(()));
        assert_eq!(check_shape(&json!({}), &[]), Ok(()));
        for (value, why) in [
            (json!([1]), "expected a JSON object, got an array"),
            (Value::Null, "expected a JSON object, got null"),
            (json!("x"), "expected a JSON object, got a string"),
            (
                json!({ "agents": [] }),
                "`id` is missing (expected a string)",
            ),
            (
                json!({ "id": 3, "agents": [] }),
                "`id` is a number, expected a string",
            ),
            (
                json!({ "id": "a", "agents": {} }),
                "`agents` is an object, expected an array",
            ),
            (
                json!({ "id": "a", "agents": [], "ok": null }),
                "`ok` is null, expected a boolean",
            ),
        ] {
            assert_eq!(check_shape(&value, &fields), Err(why.to_owned()), "{value}");
        }
        assert_eq!(
            check_shape(&json!({ "n": "1", "o": 1 }), &[Field::Number("n")]),
            Err("`n` is a string, expected a number".to_owned())
        );
        assert_eq!(
            check_shape(&json!({ "o": [] }), &[Field::Object("o")]),
            Err("`o` is an array, expected an object".to_owned())
        );
    }
}
