//! The `cron_*` tools: scheduled tool calls, run by the scheduler (`root/scheduler`,
//! [`crate::scheduler`], which holds the jobs, their journal and the rules for missed and
//! overlapping runs).
//!
//! - `cron_add` `{schedule, tool, arguments?, tz?, name?}` (write): schedules `tool` with
//!   `arguments` on a 5- or 6-field cron expression in time zone `tz` (IANA, default `UTC`).
//!   The tool must be one the calling session can call (its client-token scope applies; under
//!   deferred loading it need not be activated); a bare name is resolved to the full one. The
//!   job keeps the session's workspace (cwd) and scope: its runs happen there, within it.
//!   A `cron_*` tool cannot be scheduled (rule `cron_recursion`); the caps refuse with rule
//!   `cron_limit`.
//! - `cron_list` (read): the jobs the session may see.
//! - `cron_update` `{id, schedule?, tz?, arguments?, enabled?, name?}` (write).
//! - `cron_remove` `{id}` (write).
//! - `cron_run` `{id}` (execute): runs the job now and answers with the run's record
//!   (`isError` when the run's outcome is not `ok`).
//! - `cron_runs` `{id, limit?}` (read): the job and its last runs, newest first (`limit`
//!   1–50, default 10).
//!
//! A session opened with a client token sees and changes only the jobs created under that
//! token; a session without one (the owner's `POST /session`) sees every job. Under
//! `autonomy = "read_only"` the wrapper refuses the write and execute ones.

use futures::future::BoxFuture;
use revka_actors::session::Session;
use revka_mcp::naming;
use serde_json::{Map, Value, json};

use super::{Args, Cx, PolicyTool, Registrar, failed, ok_text};
use crate::scheduler::{CronError, JobChange, NewJob, RUN_HISTORY, Scheduler, Viewer};
use crate::security::{Effect, Refusal};
use crate::tools::{BuiltinError, ToolRegistry};

/// Registers this group's tools.
pub(super) fn register(r: &mut Registrar<'_>) {
    let s = r.deps.scheduler.clone();
    r.add(CronAdd(s.clone()));
    r.add(CronList(s.clone()));
    r.add(CronUpdate(s.clone()));
    r.add(CronRemove(s.clone()));
    r.add(CronRun(s.clone()));
    r.add(CronRuns(s));
}

/// The prefix of the tools a job may not call.
const CRON_PREFIX: &str = "cron_";
/// `cron_runs`' default `limit`.
const DEFAULT_RUNS: u64 = 10;

/// A scheduler error as the tool's error: caps are refusals (rule `cron_limit`), bad values
/// argument errors, the rest failures.
fn to_builtin(e: CronError) -> BuiltinError {
    match e {
        CronError::Limit(message) => BuiltinError::Refused(Refusal::new("cron_limit", message)),
        CronError::Invalid(message) => BuiltinError::Arguments(message),
        other => BuiltinError::Failed(other.to_string()),
    }
}

/// Who the calling session is to the scheduler: its client token, if any.
fn viewer(session: &Session) -> Viewer {
    session.client().map(str::to_owned)
}

fn recursion(tool: &str) -> BuiltinError {
    BuiltinError::Refused(Refusal::new(
        "cron_recursion",
        format!("a cron job cannot call `{tool}`: the cron_* tools cannot schedule themselves"),
    ))
}

/// The full name of the tool `name` (full or bare) that `session` can call.
fn callable_tool(
    registry: &ToolRegistry,
    session: &Session,
    name: &str,
) -> Result<String, BuiltinError> {
    let names: Vec<String> = registry
        .searchable(session)
        .into_iter()
        .map(|t| t.name)
        .collect();
    match naming::resolve_bare(name, names.iter().map(String::as_str)) {
        naming::Resolution::Exact(n) | naming::Resolution::Unique(n) => Ok(n),
        naming::Resolution::Ambiguous(candidates) => Err(BuiltinError::Arguments(format!(
            "`tool` {name:?} is ambiguous: {} (give the full name)",
            candidates.join(", ")
        ))),
        naming::Resolution::NotFound => match registry.resolve(session, name) {
            Ok(_) => Ok(name.to_owned()),
            Err(e) => Err(BuiltinError::Failed(format!(
                "{e}: cron_add schedules a tool this session can call (tool_search finds them)"
            ))),
        },
    }
}

fn id_schema() -> Value {
    json!({ "type": "string", "description": "The job's id (`cron-…`, from cron_add or cron_list)." })
}

struct CronAdd(Scheduler);

impl PolicyTool for CronAdd {
    fn name(&self) -> &'static str {
        "cron_add"
    }

    fn description(&self) -> String {
        "Schedules a tool call: `tool` with `arguments`, on the cron expression `schedule` (5 \
         fields `min hour day month weekday`, or 6 with leading seconds; names, ranges, steps, \
         L/W/#, @hourly/@daily…) in time zone `tz` (IANA, default UTC). The job runs in this \
         session's workspace with this session's tool scope, survives daemon restarts, and \
         records each run (cron_runs). A run missed while the daemon was down runs once on \
         start if less than an hour late, else is recorded as missed; runs never overlap. \
         cron_* tools cannot be scheduled."
            .into()
    }

    fn input_schema(&self) -> Value {
        json!({
            "type": "object",
            "properties": {
                "schedule": { "type": "string", "description": "A cron expression: `*/5 * * * *` (every 5 minutes), `0 9 * * MON-FRI`, `*/10 * * * * *` (every 10 seconds)." },
                "tool": { "type": "string", "description": "The tool to call (its full name, e.g. `fs__read_file`, or a unique bare name)." },
                "arguments": { "type": "object", "description": "The tool's arguments (at most 64 KiB)." },
                "tz": { "type": "string", "description": "IANA time zone the expression is read in (default `UTC`)." },
                "name": { "type": "string", "description": "A name for the job (default: the tool's)." },
            },
            "required": ["schedule", "tool"],
            "additionalProperties": false,
        })
    }

    fn effect(&self, _: &Value) -> Effect {
        Effect::Write
    }

    fn run(&self, cx: Cx, args: Value) -> BoxFuture<'static, Result<Value, BuiltinError>> {
        let scheduler = self.0.clone();
        Box::pin(async move {
            let a = Args::new(&args)?;
            let schedule = a.str("schedule")?.to_owned();
            let tool = a.str("tool")?.trim().to_owned();
            let arguments = Value::Object(a.opt_object("arguments")?.cloned().unwrap_or_default());
            let tz = a.opt_str("tz")?.map(|t| t.trim().to_owned());
            let name = a.opt_str("name")?.map(str::to_owned);
            if tool.starts_with(CRON_PREFIX) {
                return Err(recursion(&tool));
            }
            let registry = scheduler
                .registry()
                .ok_or_else(|| BuiltinError::Failed("the tool registry is not available".into()))?;
            let tool = callable_tool(&registry, &cx.session, &tool)?;
            if tool.starts_with(CRON_PREFIX) {
                return Err(recursion(&tool));
            }
            let job = NewJob {
                name,
                schedule,
                tz,
                tool,
                arguments,
                workspace: cx.workspace().to_owned(),
                scope: cx.session.scope().cloned(),
                owner: viewer(&cx.session),
            };
            let view = scheduler.add(job).await.map_err(to_builtin)?;
            let text = format!(
                "Added cron job {} ({} on `{}` {}); next run {}.",
                view["id"].as_str().unwrap_or_default(),
                view["tool"].as_str().unwrap_or_default(),
                view["schedule"].as_str().unwrap_or_default(),
                view["tz"].as_str().unwrap_or_default(),
                view["next_run"].as_str().unwrap_or("never"),
            );
            Ok(ok_text(text, json!({ "job": view })))
        })
    }
}

struct CronList(Scheduler);

impl PolicyTool for CronList {
    fn name(&self) -> &'static str {
        "cron_list"
    }

    fn description(&self) -> String {
        "Lists the scheduled tool calls (cron jobs) this session may see: id, name, schedule, \
         time zone, tool, arguments, enabled, next and last run."
            .into()
    }

    fn input_schema(&self) -> Value {
        json!({ "type": "object", "properties": {}, "additionalProperties": false })
    }

    fn effect(&self, _: &Value) -> Effect {
        Effect::Read
    }

    fn run(&self, cx: Cx, args: Value) -> BoxFuture<'static, Result<Value, BuiltinError>> {
        let scheduler = self.0.clone();
        Box::pin(async move {
            Args::new(&args)?;
            let jobs = scheduler
                .list(viewer(&cx.session))
                .await
                .map_err(to_builtin)?;
            let lines: Vec<String> = jobs
                .iter()
                .map(|j| {
                    format!(
                        "{} {} `{}` {} → {} (next {})",
                        j["id"].as_str().unwrap_or_default(),
                        if j["enabled"] == true {
                            "enabled"
                        } else {
                            "disabled"
                        },
                        j["schedule"].as_str().unwrap_or_default(),
                        j["tz"].as_str().unwrap_or_default(),
                        j["tool"].as_str().unwrap_or_default(),
                        j["next_run"].as_str().unwrap_or("none"),
                    )
                })
                .collect();
            let text = if lines.is_empty() {
                "No cron jobs.".to_owned()
            } else {
                lines.join("\n")
            };
            let count = jobs.len();
            Ok(ok_text(text, json!({ "jobs": jobs, "count": count })))
        })
    }
}

struct CronUpdate(Scheduler);

impl PolicyTool for CronUpdate {
    fn name(&self) -> &'static str {
        "cron_update"
    }

    fn description(&self) -> String {
        "Changes a cron job: its `schedule`, `tz`, `arguments`, `name`, or `enabled` (false \
         pauses it; enabling again does not catch up the paused time). A new schedule or time \
         zone counts from now."
            .into()
    }

    fn input_schema(&self) -> Value {
        json!({
            "type": "object",
            "properties": {
                "id": id_schema(),
                "schedule": { "type": "string", "description": "A new cron expression (5 or 6 fields)." },
                "tz": { "type": "string", "description": "A new IANA time zone." },
                "arguments": { "type": "object", "description": "New arguments for the tool (replace the old ones)." },
                "enabled": { "type": "boolean", "description": "false pauses the job, true resumes it." },
                "name": { "type": "string", "description": "A new name." },
            },
            "required": ["id"],
            "additionalProperties": false,
        })
    }

    fn effect(&self, _: &Value) -> Effect {
        Effect::Write
    }

    fn run(&self, cx: Cx, args: Value) -> BoxFuture<'static, Result<Value, BuiltinError>> {
        let scheduler = self.0.clone();
        Box::pin(async move {
            let a = Args::new(&args)?;
            let id = a.str("id")?.to_owned();
            let change = JobChange {
                schedule: a.opt_str("schedule")?.map(str::to_owned),
                tz: a.opt_str("tz")?.map(|t| t.trim().to_owned()),
                arguments: a.opt_object("arguments")?.cloned().map(Value::Object),
                enabled: a.opt_bool("enabled")?,
                name: a.opt_str("name")?.map(str::to_owned),
            };
            if change.schedule.is_none()
                && change.tz.is_none()
                && change.arguments.is_none()
                && change.enabled.is_none()
                && change.name.is_none()
            {
                return Err(BuiltinError::Arguments(
                    "nothing to change: give at least one of `schedule`, `tz`, `arguments`, \
                     `enabled`, `name`"
                        .into(),
                ));
            }
            let view = scheduler
                .update(viewer(&cx.session), id, change)
                .await
                .map_err(to_builtin)?;
            let text = format!(
                "Updated cron job {}; next run {}.",
                view["id"].as_str().unwrap_or_default(),
                view["next_run"].as_str().unwrap_or("none"),
            );
            Ok(ok_text(text, json!({ "job": view })))
        })
    }
}

struct CronRemove(Scheduler);

impl PolicyTool for CronRemove {
    fn name(&self) -> &'static str {
        "cron_remove"
    }

    fn description(&self) -> String {
        "Removes a cron job and its run history (a run in progress finishes unrecorded).".into()
    }

    fn input_schema(&self) -> Value {
        json!({
            "type": "object",
            "properties": { "id": id_schema() },
            "required": ["id"],
            "additionalProperties": false,
        })
    }

    fn effect(&self, _: &Value) -> Effect {
        Effect::Write
    }

    fn run(&self, cx: Cx, args: Value) -> BoxFuture<'static, Result<Value, BuiltinError>> {
        let scheduler = self.0.clone();
        Box::pin(async move {
            let a = Args::new(&args)?;
            let id = a.str("id")?.to_owned();
            let view = scheduler
                .remove(viewer(&cx.session), id)
                .await
                .map_err(to_builtin)?;
            let text = format!(
                "Removed cron job {}.",
                view["id"].as_str().unwrap_or_default()
            );
            Ok(ok_text(text, json!({ "removed": view })))
        })
    }
}

struct CronRun(Scheduler);

impl PolicyTool for CronRun {
    fn name(&self) -> &'static str {
        "cron_run"
    }

    fn description(&self) -> String {
        "Runs a cron job now (enabled or not), waits for it, and answers with the run's record \
         (an error result when the run failed or was refused). Refused while a run of the job \
         is going."
            .into()
    }

    fn input_schema(&self) -> Value {
        json!({
            "type": "object",
            "properties": { "id": id_schema() },
            "required": ["id"],
            "additionalProperties": false,
        })
    }

    fn effect(&self, _: &Value) -> Effect {
        Effect::Execute
    }

    fn run(&self, cx: Cx, args: Value) -> BoxFuture<'static, Result<Value, BuiltinError>> {
        let scheduler = self.0.clone();
        Box::pin(async move {
            let a = Args::new(&args)?;
            let id = a.str("id")?.to_owned();
            let run = scheduler
                .run_now(viewer(&cx.session), id.clone())
                .await
                .map_err(to_builtin)?;
            let view = run.view();
            let text = format!(
                "Ran cron job {id}: {} in {} ms.\n{}",
                run.outcome.as_str(),
                run.duration_ms,
                run.result
            );
            let structured = json!({ "id": id, "run": view });
            Ok(if run.outcome == crate::scheduler::Outcome::Ok {
                ok_text(text, structured)
            } else {
                failed(text, structured)
            })
        })
    }
}

struct CronRuns(Scheduler);

impl PolicyTool for CronRuns {
    fn name(&self) -> &'static str {
        "cron_runs"
    }

    fn description(&self) -> String {
        format!(
            "Shows a cron job's recent runs, newest first: run_id, trigger (schedule, catch_up, \
             manual), scheduled_for, started_at, duration_ms, outcome (ok, error, refused, \
             missed, skipped_overlap) and the start of the result. The last {RUN_HISTORY} runs \
             are kept."
        )
    }

    fn input_schema(&self) -> Value {
        json!({
            "type": "object",
            "properties": {
                "id": id_schema(),
                "limit": { "type": "integer", "minimum": 1, "maximum": RUN_HISTORY, "description": "How many runs (default 10)." },
            },
            "required": ["id"],
            "additionalProperties": false,
        })
    }

    fn effect(&self, _: &Value) -> Effect {
        Effect::Read
    }

    fn run(&self, cx: Cx, args: Value) -> BoxFuture<'static, Result<Value, BuiltinError>> {
        let scheduler = self.0.clone();
        Box::pin(async move {
            let a = Args::new(&args)?;
            let id = a.str("id")?.to_owned();
            let limit = a.opt_u64("limit")?.unwrap_or(DEFAULT_RUNS);
            if limit == 0 || limit > RUN_HISTORY as u64 {
                return Err(BuiltinError::Arguments(format!(
                    "`limit` must be 1 to {RUN_HISTORY}, not {limit}"
                )));
            }
            let (job, runs) = scheduler
                .runs(viewer(&cx.session), id, limit as usize)
                .await
                .map_err(to_builtin)?;
            let views: Vec<Value> = runs.iter().map(|r| r.view()).collect();
            let lines: Vec<String> = runs
                .iter()
                .map(|r| {
                    format!(
                        "{} {} {} ({} ms)",
                        r.run_id,
                        crate::scheduler::schedule::rfc3339(r.started_at),
                        r.outcome.as_str(),
                        r.duration_ms
                    )
                })
                .collect();
            let text = if lines.is_empty() {
                format!(
                    "Cron job {} has not run yet.",
                    job["id"].as_str().unwrap_or_default()
                )
            } else {
                lines.join("\n")
            };
            let mut structured = Map::new();
            structured.insert("job".into(), job);
            structured.insert("runs".into(), Value::Array(views));
            Ok(ok_text(text, Value::Object(structured)))
        })
    }
}
