//! The `exec` group of built-in tools (`shell`, `git_operations`, `calculator`, `screenshot`,
//! `browser_open`), end to end: each through the official Python SDK client, and the
//! adversarial suite (command injection, option smuggling, programs not allowed, path operands
//! escaping the workspace, environment leaks, output floods, fork explosions, timeouts,
//! cancellation, read-only autonomy), every refusal asserted by its rule.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::{
    Served, Session, assert_refused, next_id, sdk_tool_calls, try_within_async, workspace,
};

/// Runs `git` in `dir` (test setup).
fn git(dir: &Path, args: &[&str]) {
    let out = std::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {out:?}");
}

/// A git repository with one commit and a committer identity of its own (the tools run with
/// `HOME` = the workspace, so no global identity is read).
fn repository(dir: &Path) {
    git(dir, &["init", "-q", "-b", "main"]);
    git(dir, &["config", "user.name", "Test Person"]);
    git(dir, &["config", "user.email", "test@example.com"]);
    std::fs::write(dir.join("a.txt"), "alpha\n").unwrap();
    git(dir, &["add", "a.txt"]);
    git(dir, &["commit", "-q", "-m", "first"]);
}

/// The processes (pid, command line) carrying the marker of a run of the daemon `daemon`.
fn tool_processes(daemon: u32) -> Vec<(i32, String)> {
    let needle = format!("REVKA_TOOL_RUN={daemon}.");
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(env) = std::fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        if env.windows(needle.len()).any(|w| w == needle.as_bytes()) {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            found.push((pid, String::from_utf8_lossy(&cmd).replace('\0', " ")));
        }
    }
    found
}

/// Processes whose process group is `pgid` (zombies included).
fn group_members(pgid: i64) -> Vec<i32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            && let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..])
            && rest.split_whitespace().nth(2) == Some(&pgid.to_string())
        {
            found.push(pid);
        }
    }
    found
}

/// Waits until no process of a tool run of `served` is left; panics with them otherwise.
async fn nothing_left(served: &Served, what: &str) {
    let daemon = served.daemon.child.id();
    let gone = try_within_async(Duration::from_secs(10), async || {
        tool_processes(daemon).is_empty()
    })
    .await;
    assert!(
        gone.is_some(),
        "{what}: processes left behind: {:?}",
        tool_processes(daemon)
    );
}

/// Activates `tools` in `session` (deferred loading).
async fn activate(session: &Session, tools: &str) {
    let text = session
        .call_text("tool_search", json!({ "query": format!("select:{tools}") }))
        .await;
    assert!(!text.contains("Not found"), "{text}");
}

/// A raw `tools/call`: the result object.
async fn call(session: &Session, tool: &str, arguments: Value) -> Value {
    let events = session.call(next_id(), tool, arguments, None).await;
    events
        .iter()
        .filter_map(|e| serde_json::from_str::<Value>(&e.data).ok())
        .find_map(|m| m.get("result").cloned())
        .unwrap_or_else(|| panic!("no result in {events:?}"))
}

/// A result for a message: its structured part without the (maybe huge) output.
fn brief(result: &Value) -> Value {
    let mut s = result["structuredContent"].clone();
    for key in ["stdout", "stderr"] {
        if let Some(text) = s[key].as_str() {
            s[key] = json!(text.chars().take(200).collect::<String>());
        }
    }
    s
}

fn text_of(result: &Value) -> String {
    result["content"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["text"].as_str())
        .collect()
}

const SECRET: &str = "sekrit-value-that-must-not-leak-4242";

#[tokio::test(flavor = "multi_thread")]
async fn shell_git_and_calculator_through_the_python_sdk() {
    let served = Served::start_with_env(
        r#"
[security]
allowed_commands = ["ls", "cat", "echo", "git", "find", "rg", "sort", "env", "printenv", "sleep", "wc"]
"#,
        &[("REVKA_SECRET_TEST", SECRET), ("GITHUB_TOKEN", SECRET)],
    )
    .await;
    let (_dir, ws) = workspace();
    repository(&ws);
    std::fs::write(ws.join("a.txt"), "alpha\nmore\n").unwrap();
    std::fs::write(ws.join("new.txt"), "new\n").unwrap();
    let session = served.session_in(&ws).await;
    let calls = json!([
        { "tool": "shell", "arguments": { "command": "echo hello 'quoted; word'" } },
        { "tool": "shell", "arguments": { "argv": ["cat", "a.txt"] } },
        { "tool": "shell", "arguments": { "command": "ls no-such-file" } },
        { "tool": "shell", "arguments": { "command": "sleep 2.2" } },
        { "tool": "shell", "arguments": { "command": "env" } },
        { "tool": "shell", "arguments": { "argv": ["printenv"] } },
        { "tool": "calculator", "arguments": { "expression": "2 * (3 + 4) ^ 2" } },
        { "tool": "calculator", "arguments": { "expression": "1 / 0" } },
        { "tool": "git_operations", "arguments": { "operation": "status" } },
        { "tool": "git_operations", "arguments": { "operation": "add", "paths": ["new.txt"] } },
        { "tool": "git_operations", "arguments": { "operation": "commit", "message": "second: add new.txt" } },
        { "tool": "git_operations", "arguments": { "operation": "log", "max_count": 5 } },
        { "tool": "git_operations", "arguments": { "operation": "diff" } },
        { "tool": "git_operations", "arguments": { "operation": "show", "revision": "HEAD" } },
        { "tool": "git_operations", "arguments": { "operation": "branch" } },
        { "tool": "shell", "arguments": { "command": "git log --oneline -n 1" } },
    ]);
    let Some(out) = sdk_tool_calls(&served, &session, calls).await else {
        return;
    };
    let c = out["calls"].as_array().unwrap();
    for name in ["shell", "git_operations", "calculator"] {
        assert!(
            out["tools"].as_array().unwrap().contains(&json!(name)),
            "{out}"
        );
    }
    // shell: quotes are data, no shell runs.
    assert_eq!(c[0]["is_error"], false, "{}", c[0]);
    assert_eq!(c[0]["text"], "hello quoted; word\n");
    assert_eq!(c[0]["structured"]["exit_code"], 0);
    assert_eq!(c[0]["structured"]["truncated"], false);
    assert_eq!(c[1]["text"], "alpha\nmore\n");
    // A non-zero exit is an error result with the output.
    assert_eq!(c[2]["is_error"], true);
    assert_eq!(c[2]["structured"]["exit_code"], 2);
    assert!(
        c[2]["text"].as_str().unwrap().contains("no-such-file"),
        "{}",
        c[2]
    );
    // Progress while it runs.
    assert_eq!(c[3]["is_error"], false, "{}", c[3]);
    let progress = c[3]["progress"].as_array().unwrap();
    assert!(!progress.is_empty(), "no progress: {}", c[3]);
    assert!(
        progress[0]["message"]
            .as_str()
            .unwrap()
            .contains("bytes of output"),
        "{progress:?}"
    );
    // The environment is fresh: none of the daemon's variables.
    for i in [4, 5] {
        let text = c[i]["text"].as_str().unwrap();
        assert!(!text.contains(SECRET), "leaked: {text}");
        assert!(!text.contains("REVKA_SECRET_TEST"), "{text}");
        assert!(!text.contains("GITHUB_TOKEN"), "{text}");
        assert!(!text.contains("REVKA_HOME"), "{text}");
        assert!(text.contains(&format!("HOME={}\n", ws.display())), "{text}");
        assert!(text.contains("TERM=dumb"), "{text}");
        assert!(text.contains("LC_ALL=C.UTF-8"), "{text}");
        assert!(text.contains("PATH=/usr/local/bin:/usr/bin:/bin"), "{text}");
    }
    // calculator
    assert_eq!(c[6]["text"], "98");
    assert_eq!(c[6]["structured"]["result"], 98.0);
    assert_eq!(c[7]["is_error"], true);
    assert!(
        c[7]["text"]
            .as_str()
            .unwrap()
            .contains("division by zero at position 3")
    );
    // git_operations
    let status = &c[8]["structured"];
    assert_eq!(c[8]["is_error"], false, "{}", c[8]);
    assert!(
        status["branch"].as_str().unwrap().starts_with("main"),
        "{status}"
    );
    let entries = status["entries"].as_array().unwrap();
    assert!(
        entries
            .iter()
            .any(|e| e["path"] == "new.txt" && e["worktree"] == "?"),
        "{status}"
    );
    assert!(
        entries
            .iter()
            .any(|e| e["path"] == "a.txt" && e["worktree"] == "M"),
        "{status}"
    );
    assert_eq!(c[9]["is_error"], false, "{}", c[9]);
    assert_eq!(c[10]["is_error"], false, "{}", c[10]);
    let commits = c[11]["structured"]["commits"].as_array().unwrap();
    assert_eq!(commits.len(), 2, "{}", c[11]);
    assert_eq!(commits[0]["subject"], "second: add new.txt");
    assert_eq!(commits[1]["author"], "Test Person");
    assert!(
        c[12]["text"].as_str().unwrap().contains("+more"),
        "{}",
        c[12]
    );
    assert!(
        c[13]["text"]
            .as_str()
            .unwrap()
            .contains("second: add new.txt"),
        "{}",
        c[13]
    );
    assert_eq!(
        c[14]["structured"]["branches"][0],
        json!({ "name": "main", "current": true })
    );
    assert!(
        c[15]["text"]
            .as_str()
            .unwrap()
            .contains("second: add new.txt"),
        "{}",
        c[15]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_adversarial_suite_is_refused_by_rule() {
    let served = Served::start(
        r#"
[security]
allowed_commands = ["ls", "cat", "echo", "git", "find", "rg", "sort", "env", "grep"]
"#,
    )
    .await;
    let (dir, ws) = workspace();
    let ws = ws.join("ws");
    std::fs::create_dir(&ws).unwrap();
    repository(&ws);
    std::fs::write(dir.path().join("outside.txt"), "outside\n").unwrap();
    std::os::unix::fs::symlink("/etc", ws.join("etc-link")).unwrap();
    std::os::unix::fs::symlink(dir.path().join("outside.txt"), ws.join("out-link")).unwrap();
    let session = served.session_in(&ws).await;
    let shell = |command: &str| json!({ "tool": "shell", "arguments": { "command": command } });
    let argv = |argv: &[&str]| json!({ "tool": "shell", "arguments": { "argv": argv } });
    let cases: Vec<(Value, &str)> = vec![
        // Command injection: shell syntax, no shell runs.
        (shell("ls; touch pwned"), "shell_syntax"),
        (shell("ls && touch pwned"), "shell_syntax"),
        (shell("ls || touch pwned"), "shell_syntax"),
        (shell("ls | cat"), "shell_syntax"),
        (shell("echo `touch pwned`"), "shell_syntax"),
        (shell("echo $(touch pwned)"), "shell_syntax"),
        (shell("echo \"$(touch pwned)\""), "shell_syntax"),
        (shell("ls\ntouch pwned"), "shell_syntax"),
        (shell("echo ${HOME}"), "shell_syntax"),
        (shell("echo x > pwned"), "shell_syntax"),
        (shell("ls &"), "shell_syntax"),
        // Programs not allowed.
        (shell("touch pwned"), "allowed_commands"),
        (shell("/bin/ls"), "allowed_commands"),
        (argv(&["/usr/bin/touch", "pwned"]), "allowed_commands"),
        (shell("sh -c 'touch pwned'"), "allowed_commands"),
        (shell("env touch pwned"), "allowed_commands"),
        // Option smuggling.
        (shell("git -c core.pager='touch pwned' log"), "option"),
        (shell("git --config-env=core.pager=HOME log"), "option"),
        (shell("git -C /tmp status"), "option"),
        (shell("git --git-dir=/tmp/x status"), "option"),
        (
            shell("git fetch --upload-pack='touch pwned' origin"),
            "option",
        ),
        (shell("git diff --output=pwned"), "option"),
        (shell("git grep -O foo"), "option"),
        (shell("git config core.fsmonitor 'touch pwned'"), "option"),
        (shell("find . -exec touch pwned ';'"), "option"),
        (shell("find . -delete"), "option"),
        (shell("find -- . -execdir touch pwned \\;"), "option"),
        (shell("rg --pre 'touch' alpha"), "option"),
        (shell("rg --pre=touch alpha"), "option"),
        (shell("sort -o pwned a.txt"), "option"),
        (shell("sort --output=pwned a.txt"), "option"),
        (argv(&["env", "-S", "touch pwned"]), "option"),
        // Symlink escapes by following links while walking the tree.
        (shell("grep -R root ."), "option"),
        (shell("find -L . -name passwd"), "option"),
        (shell("rg --follow root"), "option"),
        // Path operands that leave the workspace.
        (shell("cat /etc/passwd"), "workspace_only"),
        (shell("cat ../outside.txt"), "workspace_only"),
        (shell("cat ~/.ssh/id_rsa"), "workspace_only"),
        (shell("cat etc-link/passwd"), "workspace_only"),
        (shell("cat out-link"), "workspace_only"),
        (shell("grep -r root /etc"), "workspace_only"),
        (shell("grep --file=/etc/passwd x a.txt"), "workspace_only"),
        (shell("find / -name passwd"), "workspace_only"),
        (argv(&["ls", "--", "/"]), "workspace_only"),
        // git_operations: values, never options.
        (
            json!({ "tool": "git_operations", "arguments": { "operation": "log", "revision": "--output=pwned" } }),
            "option",
        ),
        (
            json!({ "tool": "git_operations", "arguments": { "operation": "add", "paths": ["--chmod=+x"] } }),
            "option",
        ),
        (
            json!({ "tool": "git_operations", "arguments": { "operation": "add", "paths": ["../outside.txt"] } }),
            "workspace_only",
        ),
        (
            json!({ "tool": "git_operations", "arguments": { "operation": "diff", "paths": ["/etc/passwd"] } }),
            "workspace_only",
        ),
        (
            json!({ "tool": "git_operations", "arguments": { "operation": "add", "paths": [":(top)x"] } }),
            "path",
        ),
    ];
    let calls: Vec<Value> = cases.iter().map(|(c, _)| c.clone()).collect();
    let Some(out) = sdk_tool_calls(&served, &session, json!(calls)).await else {
        return;
    };
    let results = out["calls"].as_array().unwrap();
    for ((case, rule), result) in cases.iter().zip(results) {
        assert_eq!(result["is_error"], true, "{case} was not refused: {result}");
        let text = result["text"].as_str().unwrap_or_default();
        assert!(
            text.contains(&format!("refused by the security policy ({rule})")),
            "{case}: expected rule {rule}, got: {text}"
        );
    }
    // Nothing ran.
    assert!(!ws.join("pwned").exists());
    // The refusals are counted by rule.
    let metrics = served.metrics_text().await;
    for rule in [
        "shell_syntax",
        "allowed_commands",
        "option",
        "workspace_only",
    ] {
        assert!(
            metrics.contains(&format!("rule=\"{rule}\"")),
            "no {rule} in /metrics"
        );
    }
    // Wrong argument shapes get precise errors.
    activate(&session, "shell").await;
    let result = call(&session, "shell", json!({ "argv": 3 })).await;
    assert_eq!(result["isError"], true);
    assert!(text_of(&result).contains("`argv` must be an array of strings"));
    let result = call(&session, "shell", json!({})).await;
    assert!(
        text_of(&result).contains("`command` (a string) or `argv`"),
        "{result}"
    );
    let result = call(
        &session,
        "shell",
        json!({ "command": "ls", "argv": ["ls"] }),
    )
    .await;
    assert!(text_of(&result).contains("not both"), "{result}");
}

#[tokio::test(flavor = "multi_thread")]
async fn floods_forks_timeouts_and_cancels_leave_nothing_behind() {
    let served = Served::start(
        r#"
[security]
allowed_commands = ["yes", "python3", "sleep"]
max_output_bytes = 65536
command_timeout_secs = 30
"#,
    )
    .await;
    if which("python3").is_none() {
        eprintln!("python3 is not installed: skipping");
        return;
    }
    let daemon = served.daemon.child.id();
    let (_dir, ws) = workspace();
    let session = served.session_in(&ws).await;
    activate(&session, "shell").await;

    // An output flood that ends by itself: capped and marked.
    let flood = call(
        &session,
        "shell",
        json!({ "argv": ["python3", "-c", "import sys\nfor _ in range(200): sys.stdout.write('x' * 50000)\nsys.stderr.write('e' * 100000)"] }),
    )
    .await;
    let s = &flood["structuredContent"];
    assert_ne!(flood["isError"], true, "{}", brief(&flood));
    assert_eq!(s["truncated"], true);
    assert_eq!(s["stdout"].as_str().unwrap().len(), 65536);
    assert_eq!(s["stdout_bytes"], 10_000_000);
    assert_eq!(s["stderr"].as_str().unwrap().len(), 65536);
    assert_eq!(s["stderr_bytes"], 100_000);

    // An endless flood: capped, killed at the timeout, nothing left.
    let endless = call(
        &session,
        "shell",
        json!({ "command": "yes", "timeout_secs": 2 }),
    )
    .await;
    let s = &endless["structuredContent"];
    assert_eq!(endless["isError"], true, "{}", brief(&endless));
    assert_eq!(s["timed_out"], true);
    assert_eq!(s["truncated"], true);
    assert!(s["stdout_bytes"].as_u64().unwrap() > 65536);
    assert_eq!(s["stdout"].as_str().unwrap().len(), 65536);
    assert!(text_of(&endless).contains("timed out after"));
    assert!(group_members(s["pid"].as_i64().unwrap()).is_empty());
    nothing_left(&served, "yes").await;

    // A fork explosion: children in the group, children in groups and sessions of their own,
    // grandchildren; all killed at the timeout.
    let script = "import os, sys, time\n\
        for i in range(24):\n\
        \x20   if os.fork() == 0:\n\
        \x20       if i % 3 == 1: os.setpgid(0, 0)\n\
        \x20       if i % 3 == 2: os.setsid()\n\
        \x20       if os.fork() == 0: time.sleep(300)\n\
        \x20       time.sleep(300)\n\
        print('forked', flush=True)\n\
        time.sleep(300)\n";
    let call_started = std::time::Instant::now();
    let forks = call(
        &session,
        "shell",
        json!({ "argv": ["python3", "-c", script], "timeout_secs": 3 }),
    )
    .await;
    let s = &forks["structuredContent"];
    assert_eq!(s["timed_out"], true, "{}", brief(&forks));
    assert_eq!(s["stdout"], "forked\n");
    assert!(call_started.elapsed() < Duration::from_secs(20));
    assert!(group_members(s["pid"].as_i64().unwrap()).is_empty());
    nothing_left(&served, "fork explosion").await;

    // A daemonized child whose parent exits at once: found by its marker and killed.
    let daemonize = "import os, time\n\
        if os.fork() == 0:\n\
        \x20   os.setsid()\n\
        \x20   if os.fork() == 0: time.sleep(300)\n\
        \x20   os._exit(0)\n\
        time.sleep(0.5)\n\
        print('parent done')\n";
    let escaped = call(
        &session,
        "shell",
        json!({ "argv": ["python3", "-c", daemonize] }),
    )
    .await;
    assert_ne!(escaped["isError"], true, "{}", brief(&escaped));
    nothing_left(&served, "daemonized grandchild").await;

    // Cancel by notification: the program's group is killed.
    let id = next_id();
    let pending = tokio::spawn({
        let session = session.clone();
        let id = id.clone();
        async move {
            session
                .call(id, "shell", json!({ "argv": ["sleep", "300"] }), None)
                .await
        }
    });
    let started = try_within_async(Duration::from_secs(10), async || {
        !tool_processes(daemon).is_empty()
    })
    .await;
    assert!(started.is_some(), "the program started");
    let resp = session
        .post()
        .body(
            json!({ "jsonrpc": "2.0", "method": "notifications/cancelled", "params": { "requestId": id, "reason": "test" } })
                .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), reqwest::StatusCode::ACCEPTED);
    let _ = tokio::time::timeout(Duration::from_secs(10), pending)
        .await
        .expect("the cancelled call's stream ends");
    nothing_left(&served, "cancelled by notification").await;

    // Cancel by hanging up mid-call.
    let body = json!({ "jsonrpc": "2.0", "id": next_id(), "method": "tools/call", "params": { "name": "shell", "arguments": { "argv": ["sleep", "301"] } } });
    let resp = session.post().body(body.to_string()).send().await.unwrap();
    let started = try_within_async(Duration::from_secs(10), async || {
        tool_processes(daemon)
            .iter()
            .any(|(_, cmd)| cmd.contains("301"))
    })
    .await;
    assert!(started.is_some(), "the program started");
    drop(resp);
    nothing_left(&served, "cancelled by hanging up").await;
}

fn which(program: &str) -> Option<PathBuf> {
    ["/usr/local/bin", "/usr/bin", "/bin"]
        .iter()
        .map(|d| Path::new(d).join(program))
        .find(|p| p.exists())
}

#[tokio::test(flavor = "multi_thread")]
async fn read_only_refuses_programs_and_writes_by_autonomy() {
    let served = Served::start(
        r#"
[security]
autonomy = "read_only"
"#,
    )
    .await;
    let (_dir, ws) = workspace();
    repository(&ws);
    let session = served.session_in(&ws).await;
    let calls = json!([
        { "tool": "shell", "arguments": { "command": "ls" } },
        { "tool": "git_operations", "arguments": { "operation": "commit", "message": "x" } },
        { "tool": "git_operations", "arguments": { "operation": "add", "paths": ["a.txt"] } },
        { "tool": "git_operations", "arguments": { "operation": "status" } },
        { "tool": "git_operations", "arguments": { "operation": "log" } },
        { "tool": "calculator", "arguments": { "expression": "sqrt(2) ^ 2" } },
        { "tool": "screenshot", "arguments": { "url": "http://example.com/" } },
    ]);
    let Some(out) = sdk_tool_calls(&served, &session, calls).await else {
        return;
    };
    let c = out["calls"].as_array().unwrap();
    assert_refused(&c[0], "autonomy");
    assert!(c[0]["text"].as_str().unwrap().contains("read_only"));
    assert_refused(&c[1], "autonomy");
    assert_refused(&c[2], "autonomy");
    assert_eq!(c[3]["is_error"], false, "{}", c[3]);
    assert_eq!(c[4]["structured"]["commits"][0]["subject"], "first");
    assert_eq!(c[5]["is_error"], false);
    if out["tools"]
        .as_array()
        .unwrap()
        .contains(&json!("screenshot"))
    {
        assert_refused(&c[6], "autonomy");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn full_autonomy_checks_every_program_and_screenshots_a_local_page() {
    let page = serve_page().await;
    let served = Served::start(
        r#"
[security]
autonomy = "full"
allowed_commands = ["echo", "wc", "cat", "ls", "grep"]
allowed_hosts = ["127.0.0.1"]
"#,
    )
    .await;
    let (_dir, ws) = workspace();
    std::fs::write(ws.join("a.txt"), "one\ntwo\nthree\n").unwrap();
    let session = served.session_in(&ws).await;
    let shell = |command: &str| json!({ "tool": "shell", "arguments": { "command": command } });
    let calls = json!([
        shell("cat a.txt | grep t | wc -l"),
        shell("echo made > out.txt && cat out.txt"),
        shell("echo $(cat a.txt | wc -l) lines"),
        shell("ls && touch pwned"),
        shell("echo $(touch pwned)"),
        shell("echo `touch pwned`"),
        shell("echo x > /tmp/revka-pwned"),
        shell("echo $HOME"),
        shell("X=1 ls"),
        shell("cat <<EOF"),
        shell("if true; then touch pwned; fi"),
        { "tool": "screenshot", "arguments": { "url": page, "width": 320, "height": 200 } },
        { "tool": "screenshot", "arguments": { "url": "file:///etc/passwd" } },
        { "tool": "screenshot", "arguments": { "url": "http://169.254.169.254/latest/meta-data/" } },
        { "tool": "browser_open", "arguments": { "url": "https://example.com/" } },
    ]);
    let Some(out) = sdk_tool_calls(&served, &session, calls).await else {
        return;
    };
    let c = out["calls"].as_array().unwrap();
    assert_eq!(c[0]["is_error"], false, "{}", c[0]);
    assert_eq!(c[0]["text"], "2\n");
    assert_eq!(c[0]["structured"]["programs"], json!(["cat", "grep", "wc"]));
    assert_eq!(c[1]["text"], "made\n", "{}", c[1]);
    assert_eq!(
        std::fs::read_to_string(ws.join("out.txt")).unwrap(),
        "made\n"
    );
    assert_eq!(c[2]["text"], "3 lines\n", "{}", c[2]);
    for i in [3, 4, 5] {
        assert_refused(&c[i], "allowed_commands");
    }
    assert_refused(&c[6], "workspace_only");
    for i in [7, 8, 9, 10] {
        assert_refused(&c[i], "shell_syntax");
    }
    assert!(!ws.join("pwned").exists());
    assert!(!Path::new("/tmp/revka-pwned").exists());

    // screenshot: registered when chromium (or a display) is there, skipped with the reason
    // otherwise; browser_open needs a display or $BROWSER, which this machine may not have.
    let health = served.health().await;
    let skipped = health["skipped_tools"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let reason = |tool: &str| {
        skipped
            .iter()
            .find(|s| s["tool"] == tool)
            .and_then(|s| s["reason"].as_str())
            .map(str::to_owned)
    };
    let tools = out["tools"].as_array().unwrap();
    if tools.contains(&json!("screenshot")) {
        let shot = &c[11];
        assert_eq!(shot["is_error"], false, "{shot}");
        assert_eq!(shot["structured"]["width"], 320, "{shot}");
        assert_eq!(shot["structured"]["height"], 200, "{shot}");
        assert!(shot["structured"]["bytes"].as_u64().unwrap() > 100);
        assert_refused(&c[12], "scheme");
        assert_refused(&c[13], "internal_address");
    } else {
        let why = reason("screenshot").expect("screenshot is listed as skipped");
        assert!(why.contains("install chromium"), "{why}");
    }
    let no_display = std::env::var_os("DISPLAY").is_none()
        && std::env::var_os("WAYLAND_DISPLAY").is_none()
        && std::env::var_os("BROWSER").is_none();
    if no_display && !cfg!(target_os = "macos") {
        assert!(!tools.contains(&json!("browser_open")));
        let why = reason("browser_open").expect("browser_open is listed as skipped");
        assert!(why.contains("no display"), "{why}");
    }
}

/// A one-page HTTP server on 127.0.0.1 (every request gets the same small page).
async fn serve_page() -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let _ = socket.read(&mut buf).await;
                let body = "<html><body style=\"background:#3a6\"><h1>Revka</h1></body></html>";
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(resp.as_bytes()).await;
            });
        }
    });
    format!("http://{addr}/")
}
