//! `shell`: runs one allowed program (or, under `autonomy = "full"`, a checked shell line) in
//! the session's workspace, through [`super::process`].

use futures::future::BoxFuture;
use serde_json::{Value, json};

use super::process::{self, Spec};
use crate::security::Effect;
use crate::security::command::{CommandRules, Plan, locate};
use crate::tools::BuiltinError;
use crate::tools::builtin::{Args, Cx, PolicyTool, failed, ok_text};

/// The `shell` tool.
pub(super) struct Shell;

impl PolicyTool for Shell {
    fn name(&self) -> &'static str {
        "shell"
    }

    fn description(&self) -> String {
        "Runs a program in the session's workspace and returns its output. Give `command` (a \
         command line, parsed like a POSIX shell would: quotes and backslashes work) or `argv` \
         (the program and its arguments, passed as they are). The program must be a bare name \
         in [security] allowed_commands; no shell runs it, so shell syntax (`;`, `&&`, `|`, \
         redirections, `$( )`, backquotes, `$VAR`, newlines) is refused unless autonomy is \
         \"full\", where each program of the line is still checked. Options that run other \
         programs or write files (`git -c`, `find -exec`, `rg --pre`, `sort -o`, …) are refused, \
         and path operands must stay in the workspace. The program gets a fresh environment \
         (PATH, HOME = the workspace, USER, LANG/LC_ALL = C.UTF-8, TERM = dumb), no stdin, its \
         own process group, killed with it at the timeout ([security] command_timeout_secs, or \
         `timeout_secs` when lower) or when the call is cancelled. stdout and stderr are each \
         capped at [security] max_output_bytes (marked `truncated`). Progress is reported every \
         second. Result: {exit_code, signal, stdout, stderr, stdout_bytes, stderr_bytes, \
         truncated, timed_out, duration_ms}; a non-zero exit is an error result with the \
         output."
            .to_owned()
    }

    fn input_schema(&self) -> Value {
        json!({
            "type": "object",
            "properties": {
                "command": {
                    "type": "string",
                    "description": "The command line, e.g. `git log --oneline -n 5` or `grep -rn 'fn main' src`."
                },
                "argv": {
                    "type": "array",
                    "items": { "type": "string" },
                    "description": "The program and its arguments, instead of `command` (never run by a shell)."
                },
                "timeout_secs": {
                    "type": "integer",
                    "minimum": 1,
                    "description": "Kill the program after this many seconds (only lowers [security] command_timeout_secs)."
                }
            }
        })
    }

    fn effect(&self, _args: &Value) -> Effect {
        Effect::Execute
    }

    fn run(&self, cx: Cx, args: Value) -> BoxFuture<'static, Result<Value, BuiltinError>> {
        Box::pin(async move {
            let a = Args::new(&args)?;
            let command = a.opt_str("command")?;
            let argv = match a.value("argv") {
                Some(Value::Array(_)) | None => a.opt_strings("argv")?,
                Some(_) => {
                    return Err(BuiltinError::Arguments(
                        "`argv` must be an array of strings".to_owned(),
                    ));
                }
            };
            let timeout = super::timeout(&cx.policy, a.opt_u64("timeout_secs")?)?;
            let workspace = cx.workspace().to_owned();
            let policy = cx.policy.clone();
            let paths = |raw: &str| super::check_operand(&policy, &workspace, raw);
            let rules = &cx.policy.commands;
            let plan = match (command, argv) {
                (Some(_), Some(_)) => {
                    return Err(BuiltinError::Arguments(
                        "give `command` or `argv`, not both".to_owned(),
                    ));
                }
                (None, None) => {
                    return Err(BuiltinError::Arguments(
                        "`command` (a string) or `argv` (an array of strings) is required"
                            .to_owned(),
                    ));
                }
                (Some(line), None) => {
                    if line.trim().is_empty() {
                        return Err(BuiltinError::Arguments("`command` is empty".to_owned()));
                    }
                    rules.check_line(line, &paths)?
                }
                (None, Some(argv)) => {
                    if argv.iter().any(|a| a.contains('\0')) {
                        return Err(BuiltinError::Arguments(
                            "`argv` holds a NUL byte".to_owned(),
                        ));
                    }
                    rules.check_argv(&argv, &paths)?;
                    Plan::Direct(argv)
                }
            };
            let plan = match plan {
                Plan::Direct(mut argv) => {
                    crate::security::command::harden(&mut argv);
                    Plan::Direct(argv)
                }
                shell => shell,
            };
            let (program, run_args, shown) = match &plan {
                Plan::Direct(argv) => (argv[0].as_str(), argv[1..].to_vec(), json!(argv)),
                Plan::Shell { line, .. } => {
                    ("sh", vec!["-c".to_owned(), line.clone()], json!(line))
                }
            };
            let Some(path) = locate(program) else {
                return Err(BuiltinError::Failed(format!(
                    "`{program}` is allowed but not installed (looked in {})",
                    crate::security::command::SAFE_PATH
                )));
            };
            let spec = Spec {
                program: path,
                args: run_args,
                cwd: workspace.clone(),
                env: CommandRules::environment(rules, &workspace),
                timeout,
                max_output: cx.policy.config().max_output(),
            };
            let report = {
                let cx = cx.clone();
                move |elapsed: std::time::Duration, bytes: u64| {
                    cx.report(
                        elapsed.as_secs(),
                        None,
                        format!(
                            "running for {} s, {bytes} bytes of output so far",
                            elapsed.as_secs()
                        ),
                    );
                }
            };
            let outcome = process::run(spec, &report)
                .await
                .map_err(BuiltinError::Failed)?;
            let mut structured = outcome.to_json();
            structured["command"] = shown;
            if let Plan::Shell { programs, .. } = &plan {
                structured["programs"] = json!(programs);
            }
            let text = outcome.text();
            Ok(if outcome.success() {
                ok_text(text, structured)
            } else {
                failed(text, structured)
            })
        })
    }
}
