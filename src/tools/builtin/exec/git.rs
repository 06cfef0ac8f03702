//! `git_operations`: status, diff, log, show, branch (list), add and commit in the session's
//! workspace, with an argv Revka builds (the caller gives values, never options) and git's
//! config kept from running programs. Runs through [`super::process`] like `shell`.

use futures::future::BoxFuture;
use serde_json::{Value, json};

use super::process::{self, Spec};
use crate::security::command::{CommandRules, locate};
use crate::security::{Effect, Refusal};
use crate::tools::BuiltinError;
use crate::tools::builtin::{Args, Cx, PolicyTool, failed, ok_text};

/// The operations, in the order the schema lists them.
const OPERATIONS: [&str; 7] = ["status", "diff", "log", "show", "branch", "add", "commit"];
/// `log`'s default and largest `max_count`.
const DEFAULT_COUNT: u64 = 20;
const MAX_COUNT: u64 = 1000;
/// The longest commit message.
const MAX_MESSAGE: usize = 64 * 1024;
/// Field and record separators of `log`'s format.
const FS: char = '\u{1f}';
const RS: char = '\u{1e}';

/// The `git_operations` tool.
pub(super) struct GitOperations;

impl PolicyTool for GitOperations {
    fn name(&self) -> &'static str {
        "git_operations"
    }

    fn description(&self) -> String {
        "Runs a git operation in the session's workspace, which must be inside a git \
         repository: `status` (branch and changed files), `diff` (working tree, or `staged`, or \
         against `revision`), `log` (`max_count` commits, default 20, of `revision` or HEAD), \
         `show` (a commit, default HEAD), `branch` (list), `add` (`paths`), `commit` \
         (`message`, optionally only `paths`). Revisions and paths are values, never options \
         (a leading `-` is refused); paths must stay in the workspace. Hooks, pagers, external \
         diff programs, filters and the repository's own program settings do not run. `add` and \
         `commit` write (refused under autonomy \"read_only\"). Killed at [security] \
         command_timeout_secs; output capped at max_output_bytes. Result: {operation, \
         exit_code, stdout, stderr, truncated, timed_out, duration_ms} plus parsed fields \
         (`entries` for status, `commits` for log, `branches` for branch)."
            .to_owned()
    }

    fn input_schema(&self) -> Value {
        json!({
            "type": "object",
            "properties": {
                "operation": { "type": "string", "enum": OPERATIONS },
                "paths": { "type": "array", "items": { "type": "string" }, "description": "Paths in the workspace (add: required; diff, log, show, commit: to limit to)." },
                "message": { "type": "string", "description": "The commit message (commit)." },
                "revision": { "type": "string", "description": "A revision or range: `HEAD~3`, `main..feature`, a hash (diff, log, show)." },
                "staged": { "type": "boolean", "description": "diff: the staged changes instead of the working tree." },
                "max_count": { "type": "integer", "minimum": 1, "maximum": MAX_COUNT, "description": "log: how many commits (default 20)." },
                "timeout_secs": { "type": "integer", "minimum": 1, "description": "Lower the timeout for this call." }
            },
            "required": ["operation"]
        })
    }

    fn effect(&self, args: &Value) -> Effect {
        match args.get("operation").and_then(Value::as_str) {
            Some("status" | "diff" | "log" | "show" | "branch") => Effect::Read,
            // add, commit, and what cannot be read: the most it could do.
            _ => Effect::Write,
        }
    }

    fn run(&self, cx: Cx, args: Value) -> BoxFuture<'static, Result<Value, BuiltinError>> {
        Box::pin(async move {
            let a = Args::new(&args)?;
            let operation = a.str("operation")?;
            if !OPERATIONS.contains(&operation) {
                return Err(BuiltinError::Arguments(format!(
                    "`operation` must be one of {}, not {operation:?}",
                    OPERATIONS.join(", ")
                )));
            }
            let timeout = super::timeout(&cx.policy, a.opt_u64("timeout_secs")?)?;
            let workspace = cx.workspace().to_owned();
            let paths = a.opt_strings("paths")?.unwrap_or_default();
            for p in &paths {
                check_path(&cx, p)?;
            }
            let revision = a.opt_str("revision")?;
            if let Some(r) = revision {
                check_revision(r)?;
            }
            let mut argv: Vec<String> = Vec::new();
            match operation {
                "status" => argv.extend(strs(&["status", "--porcelain=v1", "--branch", "-z"])),
                "diff" => {
                    argv.extend(strs(&[
                        "diff",
                        "--no-color",
                        "--no-ext-diff",
                        "--no-textconv",
                    ]));
                    if a.opt_bool("staged")?.unwrap_or(false) {
                        argv.push("--cached".into());
                    }
                    argv.extend(revision.map(str::to_owned));
                }
                "log" => {
                    let n = a.opt_u64("max_count")?.unwrap_or(DEFAULT_COUNT);
                    if !(1..=MAX_COUNT).contains(&n) {
                        return Err(BuiltinError::Arguments(format!(
                            "`max_count` must be 1 to {MAX_COUNT}"
                        )));
                    }
                    argv.extend(strs(&["log", "--no-color", "--no-ext-diff"]));
                    argv.push(format!("--max-count={n}"));
                    argv.push(format!("--format=%H{FS}%an{FS}%ae{FS}%aI{FS}%s{RS}"));
                    argv.extend(revision.map(str::to_owned));
                }
                "show" => {
                    argv.extend(strs(&[
                        "show",
                        "--no-color",
                        "--no-ext-diff",
                        "--no-textconv",
                        "--stat",
                        "--patch",
                    ]));
                    argv.push(revision.unwrap_or("HEAD").to_owned());
                }
                "branch" => argv.extend(strs(&[
                    "branch",
                    "--list",
                    "--no-color",
                    "--format=%(HEAD)%(refname:short)",
                ])),
                "add" => {
                    if paths.is_empty() {
                        return Err(BuiltinError::Arguments(
                            "`paths` is required for add (use [\".\"] for everything)".to_owned(),
                        ));
                    }
                    argv.push("add".into());
                }
                "commit" => {
                    let message = a.str("message")?;
                    if message.trim().is_empty() || message.len() > MAX_MESSAGE {
                        return Err(BuiltinError::Arguments(format!(
                            "`message` must be non-empty and at most {MAX_MESSAGE} bytes"
                        )));
                    }
                    if message.contains('\0') {
                        return Err(BuiltinError::Arguments(
                            "`message` holds a NUL byte".to_owned(),
                        ));
                    }
                    argv.extend(strs(&["commit", "--no-verify", "--no-gpg-sign"]));
                    argv.push(format!("--message={message}"));
                }
                _ => {}
            }
            if !paths.is_empty() && operation != "status" && operation != "branch" {
                argv.push("--".into());
                argv.extend(paths.iter().cloned());
            }
            let max_output = cx.policy.config().max_output();
            let env = git_env(&cx.policy.commands, &workspace);
            let Some(git) = locate("git") else {
                return Err(BuiltinError::Failed(format!(
                    "git is not installed (looked in {})",
                    crate::security::command::SAFE_PATH
                )));
            };
            let report = {
                let cx = cx.clone();
                move |elapsed: std::time::Duration, bytes: u64| {
                    cx.report(
                        elapsed.as_secs(),
                        None,
                        format!(
                            "git {operation}: {} s, {bytes} bytes so far",
                            elapsed.as_secs()
                        ),
                    );
                }
            };
            // Inside a repository?
            let probe = process::run(
                Spec {
                    program: git.clone(),
                    args: with_safety(&strs(&["rev-parse", "--show-toplevel"])),
                    cwd: workspace.clone(),
                    env: env.clone(),
                    timeout,
                    max_output: 64 * 1024,
                },
                &report,
            )
            .await
            .map_err(BuiltinError::Failed)?;
            if !probe.success() {
                return Err(BuiltinError::Failed(format!(
                    "the workspace {} is not inside a git repository: {}",
                    workspace.display(),
                    probe.stderr.trim()
                )));
            }
            let outcome = process::run(
                Spec {
                    program: git,
                    args: with_safety(&argv),
                    cwd: workspace,
                    env,
                    timeout,
                    max_output,
                },
                &report,
            )
            .await
            .map_err(BuiltinError::Failed)?;
            let mut structured = outcome.to_json();
            structured["operation"] = json!(operation);
            structured["repository"] = json!(probe.stdout.trim());
            if outcome.success() {
                match operation {
                    "status" => parse_status(&outcome.stdout, &mut structured),
                    "log" => structured["commits"] = parse_log(&outcome.stdout),
                    "branch" => structured["branches"] = parse_branches(&outcome.stdout),
                    _ => {}
                }
            }
            let text = if operation == "status" && outcome.success() {
                status_text(&structured)
            } else if operation == "log" && outcome.success() {
                log_text(&structured)
            } else {
                outcome.text()
            };
            Ok(if outcome.success() {
                ok_text(text, structured)
            } else {
                failed(text, structured)
            })
        })
    }
}

fn strs(s: &[&str]) -> Vec<String> {
    s.iter().map(|s| (*s).to_owned()).collect()
}

/// `git` options Revka always puts first: no pager, no hooks, no fsmonitor, no external
/// programs from config, literal pathspecs.
fn with_safety(argv: &[String]) -> Vec<String> {
    let mut out = strs(&["--no-pager", "--literal-pathspecs"]);
    for (key, value) in crate::security::command::GIT_OVERRIDES {
        out.push("-c".into());
        out.push(format!("{key}={value}"));
    }
    out.extend(argv.iter().cloned());
    out
}

/// The shell's environment plus git's own switches.
fn git_env(rules: &CommandRules, workspace: &std::path::Path) -> Vec<(String, String)> {
    let mut env = rules.environment(workspace);
    env.push(("GIT_LITERAL_PATHSPECS".into(), "1".into()));
    env.push(("GIT_OPTIONAL_LOCKS".into(), "0".into()));
    env
}

/// A path operand: a value (no leading `-`, no pathspec magic), inside the workspace.
fn check_path(cx: &Cx, path: &str) -> Result<(), BuiltinError> {
    if path.is_empty() || path.contains('\0') {
        return Err(BuiltinError::Arguments(
            "`paths` holds an empty string or a NUL byte".to_owned(),
        ));
    }
    if path.starts_with('-') {
        return Err(Refusal::new(
            "option",
            format!(
                "the path `{}` starts with `-`; paths are values, not options (write `./{}`)",
                super::shown(path),
                super::shown(path)
            ),
        )
        .into());
    }
    if path.starts_with(':') {
        return Err(Refusal::new(
            "path",
            format!(
                "`{}`: pathspec magic (`:(top)`, `:/`) is refused",
                super::shown(path)
            ),
        )
        .into());
    }
    // A relative path without `..` that does not exist cannot lead out; any other is
    // resolved (symlinks followed) and must stay in the workspace.
    super::check_operand(&cx.policy, cx.workspace(), path)?;
    Ok(())
}

/// A revision: a value of git's ref and revision syntax, never an option.
fn check_revision(rev: &str) -> Result<(), BuiltinError> {
    if rev.starts_with('-') {
        return Err(Refusal::new(
            "option",
            format!(
                "the revision `{}` starts with `-`; revisions are values, not options",
                super::shown(rev)
            ),
        )
        .into());
    }
    let ok_char = |c: char| c.is_ascii_alphanumeric() || "/._~^@{}:+-".contains(c);
    if rev.is_empty() || rev.len() > 256 || !rev.chars().all(ok_char) {
        return Err(BuiltinError::Arguments(format!(
            "`revision` {:?} is not a revision (letters, digits and / . _ ~ ^ @ {{ }} : + -, at \
             most 256)",
            super::shown(rev)
        )));
    }
    Ok(())
}

/// `status --porcelain=v1 --branch -z` into `branch` and `entries`.
fn parse_status(out: &str, structured: &mut Value) {
    let mut entries = Vec::new();
    let mut fields = out.split('\0').filter(|f| !f.is_empty());
    while let Some(field) = fields.next() {
        if let Some(branch) = field.strip_prefix("## ") {
            structured["branch"] = json!(branch);
            continue;
        }
        if field.len() < 4 || !field.is_char_boundary(3) {
            continue;
        }
        let (code, path) = field.split_at(3);
        let mut entry = json!({
            "index": code[0..1].trim(),
            "worktree": code[1..2].trim(),
            "path": path,
        });
        // A rename or copy names its origin in the next field.
        if code.starts_with(['R', 'C'])
            && let Some(from) = fields.next()
        {
            entry["from"] = json!(from);
        }
        entries.push(entry);
    }
    structured["entries"] = json!(entries);
}

fn status_text(structured: &Value) -> String {
    let mut text = format!(
        "branch: {}\n",
        structured["branch"].as_str().unwrap_or("(unknown)")
    );
    let entries = structured["entries"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if entries.is_empty() {
        text.push_str("nothing to commit, working tree clean\n");
    }
    for e in entries {
        let code = format!(
            "{}{}",
            e["index"].as_str().filter(|s| !s.is_empty()).unwrap_or(" "),
            e["worktree"]
                .as_str()
                .filter(|s| !s.is_empty())
                .unwrap_or(" ")
        );
        text.push_str(&format!(
            "{code} {}\n",
            e["path"].as_str().unwrap_or_default()
        ));
    }
    text
}

fn parse_log(out: &str) -> Value {
    let commits: Vec<Value> = out
        .split(RS)
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .filter_map(|record| {
            let f: Vec<&str> = record.split(FS).collect();
            (f.len() == 5).then(|| {
                json!({ "hash": f[0], "author": f[1], "email": f[2], "date": f[3], "subject": f[4] })
            })
        })
        .collect();
    json!(commits)
}

fn log_text(structured: &Value) -> String {
    let mut text = String::new();
    for c in structured["commits"]
        .as_array()
        .cloned()
        .unwrap_or_default()
    {
        text.push_str(&format!(
            "{} {} {} {}\n",
            c["hash"]
                .as_str()
                .unwrap_or_default()
                .get(..12)
                .unwrap_or_default(),
            c["date"].as_str().unwrap_or_default(),
            c["author"].as_str().unwrap_or_default(),
            c["subject"].as_str().unwrap_or_default(),
        ));
    }
    if structured["truncated"] == true {
        text.push_str("[output truncated]\n");
    }
    text
}

fn parse_branches(out: &str) -> Value {
    let branches: Vec<Value> = out
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let current = l.starts_with('*');
            json!({ "name": l.get(1..).unwrap_or_default().trim(), "current": current })
        })
        .collect();
    json!(branches)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revisions_are_values() {
        check_revision("HEAD~2..main").unwrap();
        check_revision("v1.0^{commit}").unwrap();
        assert!(matches!(
            check_revision("--output=/tmp/x"),
            Err(BuiltinError::Refused(r)) if r.rule == "option"
        ));
        assert!(matches!(
            check_revision("HEAD; id"),
            Err(BuiltinError::Arguments(_))
        ));
    }

    #[test]
    fn status_and_log_parse() {
        let mut s = json!({});
        parse_status(
            "## main...origin/main\0 M a.txt\0R  new\0old\0?? b\0",
            &mut s,
        );
        assert_eq!(s["branch"], "main...origin/main");
        assert_eq!(s["entries"][0]["worktree"], "M");
        assert_eq!(s["entries"][1]["from"], "old");
        assert_eq!(s["entries"][2]["path"], "b");
        let log = parse_log(&format!("abc{FS}A{FS}a@x{FS}2024{FS}first{RS}\n"));
        assert_eq!(log[0]["subject"], "first");
        let b = parse_branches("*main\n feature\n");
        assert_eq!(b[0]["current"], true);
        assert_eq!(b[1]["name"], "feature");
    }
}
