//! Tests of the fallback agents: the parsers on transcripts, then real runs of the fake CLI
//! (`examples/fake_agent_cli.py`) under a real `root/agents` supervisor.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ractor::Actor;
use revka_actors::StatusNode;
use revka_actors::supervisor::{
    Intensity, RestartPolicy, Strategy, SupervisorActor, SupervisorArguments,
};
use serde_json::{Value, json};

use super::parse::{Backend, Parsed, Parser, Usage, cut};
use super::*;

// ---------------------------------------------------------------------------------------
// Parsers

fn parse_all(backend: Backend, lines: &[&str]) -> (Parser, Vec<Parsed>) {
    let mut p = Parser::new(backend);
    let mut out = Vec::new();
    for l in lines {
        out.extend(p.line(&serde_json::from_str(l).unwrap()));
    }
    (p, out)
}

fn kinds(parsed: &[Parsed]) -> Vec<&'static str> {
    parsed
        .iter()
        .map(|p| match p {
            Parsed::Event { kind, .. } => *kind,
            Parsed::Usage(_) => "usage",
        })
        .collect()
}

fn ev(parsed: &[Parsed], i: usize) -> (&'static str, Option<String>, Value) {
    match &parsed[i] {
        Parsed::Event { kind, text, data } => (*kind, text.clone(), Value::Object(data.clone())),
        Parsed::Usage(_) => panic!("usage at {i}"),
    }
}

const CLAUDE_TOOL: &[&str] = &[
    r#"{"type":"system","subtype":"init","session_id":"s-1","model":"claude-x","cwd":"/","tools":[]}"#,
    r#"{"type":"assistant","session_id":"s-1","message":{"model":"claude-x","content":[{"type":"text","text":"Let me look."},{"type":"tool_use","id":"toolu_1","name":"Bash","input":{"command":"ls"}}]}}"#,
    r#"{"type":"user","session_id":"s-1","message":{"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_1","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}],"is_error":true}]}}"#,
    r#"{"type":"assistant","session_id":"s-1","message":{"content":[{"type":"thinking","thinking":"hm"},{"type":"text","text":"Done."}]}}"#,
    r#"{"type":"result","subtype":"success","is_error":false,"result":"Done.","session_id":"s-1","num_turns":2,"duration_ms":40,"total_cost_usd":0.25,"usage":{"input_tokens":100,"output_tokens":20,"cache_read_input_tokens":7,"cache_creation_input_tokens":3}}"#,
];

#[test]
fn claude_stream_json_becomes_timeline_events() {
    let (p, out) = parse_all(Backend::Claude, CLAUDE_TOOL);
    assert_eq!(
        kinds(&out),
        [
            "output",
            "assistant",
            "tool_use",
            "tool_result",
            "output",
            "assistant",
            "usage",
            "result"
        ]
    );
    assert_eq!(p.session_id.as_deref(), Some("s-1"));
    assert_eq!(p.model.as_deref(), Some("claude-x"));
    assert!(p.finished && !p.failed);
    let (_, text, data) = ev(&out, 2);
    assert_eq!(text.as_deref(), Some("Bash"));
    assert_eq!(
        data,
        json!({"id": "toolu_1", "name": "Bash", "input": {"command": "ls"}})
    );
    let (_, text, data) = ev(&out, 3);
    assert_eq!(text.as_deref(), Some("a\nb"));
    assert_eq!(data, json!({"tool_use_id": "toolu_1", "is_error": true}));
    let (_, _, data) = ev(&out, 4);
    assert_eq!(data["cli_type"], "assistant/thinking");
    assert_eq!(
        out[6],
        Parsed::Usage(Usage {
            input_tokens: 100,
            output_tokens: 20,
            cache_read_input_tokens: 7,
            cache_creation_input_tokens: 3,
            cost_usd: Some(0.25),
        })
    );
    let (_, text, data) = ev(&out, 7);
    assert_eq!(text.as_deref(), Some("Done."));
    assert_eq!(data["is_error"], false);
    assert_eq!(data["num_turns"], 2);
    assert_eq!(data["cost_usd"], 0.25);
    assert_eq!(data["session_id"], "s-1");
}

#[test]
fn a_claude_error_result_is_a_result_and_a_backend_error() {
    let (p, out) = parse_all(
        Backend::Claude,
        &[
            r#"{"type":"result","subtype":"error_max_turns","is_error":true,"session_id":"s","total_cost_usd":0.1,"usage":{}}"#,
        ],
    );
    assert!(p.finished && p.failed);
    assert_eq!(kinds(&out), ["usage", "result", "error"]);
    let (_, text, data) = ev(&out, 2);
    assert_eq!(text.as_deref(), Some("claude: error_max_turns"));
    assert_eq!(data["reason"], "backend");
}

#[test]
fn unknown_types_are_kept_as_output() {
    let (_, out) = parse_all(
        Backend::Claude,
        &[
            r#"{"type":"stream_event","event":{}}"#,
            r#"{"type":"system","subtype":"compact_boundary"}"#,
            r#"{"no_type":1}"#,
        ],
    );
    let types: Vec<Value> = (0..3).map(|i| ev(&out, i).2["cli_type"].clone()).collect();
    assert_eq!(
        types,
        [
            json!("stream_event"),
            json!("system/compact_boundary"),
            json!("?")
        ]
    );
    let (_, out) = parse_all(
        Backend::Codex,
        &[
            r#"{"type":"item.plan.delta","item_id":"x","delta":"d"}"#,
            r#"{"type":"item.completed","item":{"id":"t","type":"todo_list","items":[]}}"#,
        ],
    );
    assert_eq!(ev(&out, 0).2["cli_type"], "item.plan.delta");
    assert_eq!(ev(&out, 1).2["cli_type"], "item.completed/todo_list");
}

const CODEX_TOOL: &[&str] = &[
    r#"{"type":"thread.started","thread_id":"th-9"}"#,
    r#"{"type":"turn.started"}"#,
    r#"{"type":"item.completed","item":{"id":"r","type":"reasoning","text":"thinking"}}"#,
    r#"{"type":"item.started","item":{"id":"c1","type":"command_execution","command":"ls","aggregated_output":"","exit_code":null,"status":"in_progress"}}"#,
    r#"{"type":"item.updated","item":{"id":"c1","type":"command_execution","command":"ls","aggregated_output":"a","exit_code":null,"status":"in_progress"}}"#,
    r#"{"type":"item.completed","item":{"id":"c1","type":"command_execution","command":"ls","aggregated_output":"a\n","exit_code":2,"status":"failed"}}"#,
    r#"{"type":"item.completed","item":{"id":"m1","type":"mcp_tool_call","server":"revka","tool":"echo","arguments":{"x":1},"result":{"content":[{"type":"text","text":"ok"}],"structured_content":null},"error":null,"status":"completed"}}"#,
    r#"{"type":"item.completed","item":{"id":"f1","type":"file_change","changes":[{"path":"a.rs","kind":"update"}],"status":"completed"}}"#,
    r#"{"type":"item.completed","item":{"id":"a1","type":"agent_message","text":"All done."}}"#,
    r#"{"type":"turn.completed","usage":{"input_tokens":120,"cached_input_tokens":20,"output_tokens":30}}"#,
];

/// The events of the codex "tool" transcript, in order.
const CODEX_TOOL_KINDS: [&str; 11] = [
    "output",
    "output",
    "tool_use",
    "tool_result",
    "tool_use",
    "tool_result",
    "tool_use",
    "tool_result",
    "assistant",
    "usage",
    "result",
];

#[test]
fn codex_exec_jsonl_becomes_timeline_events() {
    let (p, out) = parse_all(Backend::Codex, CODEX_TOOL);
    assert_eq!(kinds(&out), CODEX_TOOL_KINDS);
    assert_eq!(p.thread_id.as_deref(), Some("th-9"));
    assert!(p.finished && !p.failed);
    assert_eq!(ev(&out, 1).2["cli_type"], "reasoning");
    let (_, text, data) = ev(&out, 2);
    assert_eq!(text.as_deref(), Some("command_execution"));
    assert_eq!(data["input"]["command"], "ls");
    let (_, text, data) = ev(&out, 3);
    assert_eq!(text.as_deref(), Some("a\n"));
    assert_eq!(data, json!({"tool_use_id": "c1", "is_error": true}));
    let (_, text, data) = ev(&out, 4);
    assert_eq!(text.as_deref(), Some("revka/echo"));
    assert_eq!(data["input"]["arguments"], json!({"x": 1}));
    assert_eq!(ev(&out, 5).1.as_deref(), Some("ok"));
    assert_eq!(ev(&out, 7).1.as_deref(), Some("update a.rs"));
    assert_eq!(
        out[9],
        Parsed::Usage(Usage {
            input_tokens: 100,
            output_tokens: 30,
            cache_read_input_tokens: 20,
            cache_creation_input_tokens: 0,
            cost_usd: None,
        })
    );
    let (_, text, data) = ev(&out, 10);
    assert_eq!(text.as_deref(), Some("All done."));
    assert_eq!(data["thread_id"], "th-9");
    assert!(data.get("cost_usd").is_none());
}

#[test]
fn codex_failures_are_backend_errors() {
    let (p, out) = parse_all(
        Backend::Codex,
        &[r#"{"type":"turn.failed","error":{"message":"quota"}}"#],
    );
    assert!(p.finished && p.failed);
    assert_eq!(kinds(&out), ["result", "error"]);
    assert_eq!(ev(&out, 1).1.as_deref(), Some("codex: quota"));
    let (p, out) = parse_all(Backend::Codex, &[r#"{"type":"error","message":"boom"}"#]);
    assert!(!p.finished && p.failed);
    assert_eq!(ev(&out, 0).2["reason"], "backend");
}

#[test]
fn tool_results_are_cut_and_marked() {
    let long = "é".repeat(40_000); // 80,000 bytes
    let c = cut(&long, parse::TOOL_RESULT_CAP);
    assert!(c.len() < parse::TOOL_RESULT_CAP + 64);
    assert!(
        c.ends_with("[cut: 80000 bytes in all]"),
        "{}",
        &c[c.len() - 40..]
    );
    assert_eq!(cut("short", 10), "short");
}

#[test]
fn mcp_servers_are_checked_and_become_codex_overrides() {
    let servers = json!({
        "revka": {"type": "http", "url": "http://127.0.0.1:1/mcp", "headers": {"Authorization": "Bearer s3cret"}},
        "fs": {"type": "stdio", "command": "npx", "args": ["-y", "fs \"x\""], "env": {"REVKA_TEST_FORWARDED_K": "v"}},
    });
    let map = validate_mcp_servers(&servers).unwrap();
    let (o, env) = codex_overrides(map);
    let real: Vec<&str> = o.iter().map(|(r, _)| r.as_str()).collect();
    assert_eq!(
        real,
        [
            r#"mcp_servers.fs.command="npx""#,
            r#"mcp_servers.fs.args=["-y","fs \"x\""]"#,
            r#"mcp_servers.fs.env_vars=["REVKA_TEST_FORWARDED_K"]"#,
            r#"mcp_servers.revka.url="http://127.0.0.1:1/mcp""#,
            r#"mcp_servers.revka.env_http_headers={ "Authorization" = "REVKA_MCP_HEADER_1" }"#,
        ]
    );
    // No secret on the command line: they travel in the run's environment.
    assert!(
        o.iter()
            .all(|(r, s)| !r.contains("s3cret") && !s.contains("s3cret"))
    );
    assert_eq!(
        env,
        [
            ("REVKA_TEST_FORWARDED_K".to_owned(), "v".to_owned()),
            ("REVKA_MCP_HEADER_1".to_owned(), "Bearer s3cret".to_owned()),
        ]
    );
    for (bad, why) in [
        (json!([]), "must be an object"),
        (
            json!({"a b": {"type": "http", "url": "u"}}),
            "bad server name",
        ),
        (json!({"a": {"type": "sse", "url": "u"}}), "type must be"),
        (json!({"a": {"type": "http"}}), "needs a url"),
        (
            json!({"a": {"type": "stdio", "command": "x", "args": [1]}}),
            "strings only",
        ),
    ] {
        let e = validate_mcp_servers(&bad).unwrap_err();
        assert!(e.contains(why), "{e}");
    }
}

#[test]
fn argv_follows_the_clis() {
    let agent = test_agent(Backend::Claude);
    let cmd = vec!["claude".to_owned()];
    let (real, shown) = run::argv(Backend::Claude, &cmd, &agent, Some("s-1"), "-rm all");
    assert_eq!(
        real,
        [
            "claude",
            "-p",
            "--output-format",
            "stream-json",
            "--verbose",
            "--model",
            "opus",
            "--allowedTools",
            "Read,Bash(git:*)",
            "--append-system-prompt",
            "be brief",
            "--resume",
            "s-1",
            "--",
            "-rm all"
        ]
    );
    assert_eq!(shown.last().unwrap(), "<prompt>");
    let agent = test_agent(Backend::Codex);
    let (real, _) = run::argv(Backend::Codex, &["codex".into()], &agent, Some("th"), "go");
    assert_eq!(
        real,
        [
            "codex",
            "exec",
            "--json",
            "--skip-git-repo-check",
            "--model",
            "opus",
            "-C",
            "/tmp",
            "resume",
            "th",
            "--",
            "go"
        ]
    );
}

fn test_agent(backend: Backend) -> Agent {
    Agent {
        id: "fb_0".into(),
        name: "t".into(),
        backend,
        created_at: String::new(),
        order: 0,
        cwd: "/tmp".into(),
        model: Some("opus".into()),
        allowed_tools: vec!["Read".into(), "Bash(git:*)".into()],
        system_prompt: Some("be brief".into()),
        owner_session: None,
        claude_mcp: None,
        codex_overrides: Vec::new(),
        codex_env: Vec::new(),
        budget: (None, None),
        max_events: 10,
        dir: Mutex::new(None),
        st: Mutex::new(State::default()),
    }
}

// ---------------------------------------------------------------------------------------
// Real runs of the fake CLI

fn fixture() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/fake_agent_cli.py")
        .display()
        .to_string()
}

struct Rig {
    agents: FallbackAgents,
    items: Arc<Mutex<Vec<Value>>>,
    home: tempfile::TempDir,
    log: PathBuf,
}

/// A `root` with `root/agents` under it; the fake CLI as both backends, logging its argv.
async fn rig(tune: impl FnOnce(&mut FallbackConfig)) -> Rig {
    let home = tempfile::tempdir().unwrap();
    let log = home.path().join("argv.log");
    let command = vec![
        "env".to_owned(),
        format!("FAKE_AGENT_LOG={}", log.display()),
        fixture(),
    ];
    let mut config = FallbackConfig {
        claude_command: command.clone(),
        codex_command: command,
        kill_grace: Duration::from_millis(1500),
        home: home.path().to_owned(),
        ..FallbackConfig::default()
    };
    tune(&mut config);
    let items = Arc::new(Mutex::new(Vec::new()));
    let sink = items.clone();
    let agents = FallbackAgents::new(config, Arc::new(move |v| sink.lock().unwrap().push(v)));
    let root = StatusNode::root("root", "supervisor");
    let args = SupervisorArguments {
        node: root,
        strategy: Strategy::OneForOne,
        intensity: Intensity::default(),
        children: vec![agents.supervisor_spec(RestartPolicy::standard())],
    };
    SupervisorActor::spawn(None, SupervisorActor, args)
        .await
        .unwrap();
    for _ in 0..500 {
        if agents.inner.supervisor.read().unwrap().is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Rig {
        agents,
        items,
        home,
        log,
    }
}

fn req(backend: &str, prompt: &str) -> CreateAgent {
    CreateAgent {
        backend: backend.into(),
        prompt: prompt.into(),
        cwd: Some(std::env::temp_dir()),
        ..CreateAgent::default()
    }
}

/// Waits until the agent's run has ended; its object.
async fn settled(agents: &FallbackAgents, id: &str) -> Value {
    for _ in 0..2000 {
        let a = agents.get(id).expect("the agent");
        if a["status"] != "running" {
            return a;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("agent {id} still running: {}", agents.get(id).unwrap());
}

fn timeline(agents: &FallbackAgents, id: &str) -> Vec<Value> {
    let mut all = Vec::new();
    let mut since = 0;
    loop {
        let page = agents.events(id, since, MAX_PAGE).unwrap();
        let events = page["events"].as_array().unwrap().clone();
        if events.is_empty() {
            return all;
        }
        since = page["next"].as_u64().unwrap();
        all.extend(events);
    }
}

fn types(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect()
}

fn logged(log: &Path) -> Vec<Vec<String>> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn exists(pid: u64) -> bool {
    // A zombie is as good as gone: the reaper takes it.
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        !s.rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}

async fn gone(pid: u64) {
    for _ in 0..1000 {
        if !exists(pid) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("process {pid} is still there");
}

/// The `fake.pid` line of a slow run: (the CLI's pid, its grandchild's).
async fn pids(agents: &FallbackAgents, id: &str) -> (u64, u64) {
    for _ in 0..1000 {
        for e in timeline(agents, id) {
            if e["data"]["cli_type"] == "fake.pid" {
                let line: Value = serde_json::from_str(e["text"].as_str().unwrap()).unwrap();
                return (
                    line["pid"].as_u64().unwrap(),
                    line["grandchild"].as_u64().unwrap(),
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no fake.pid line");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claude_agent_runs_and_resumes_its_session() {
    let rig = rig(|_| {}).await;
    let a = rig.agents.create(req("claude", "tool")).await.unwrap();
    let id = a["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("fb_") && id.len() == 13, "{id}");
    assert_eq!(a["path"], "fallback");
    assert_eq!(a["backend"], "claude");
    let argv: Vec<String> = serde_json::from_value(a["argv"].clone()).unwrap();
    assert!(
        argv.ends_with(&["--".into(), "<prompt>".into()]),
        "{argv:?}"
    );
    assert!(argv.contains(&"stream-json".to_owned()));
    let a = settled(&rig.agents, &id).await;
    assert_eq!(a["status"], "idle", "{a}");
    let session = a["session_id"].as_str().unwrap().to_owned();
    assert_eq!(a["model"], "claude-fake-1");
    assert_eq!(a["usage"]["cost_usd"], 0.001);
    assert_eq!(a["usage"]["input_tokens"], 10);
    assert_eq!(a["usage"]["runs"], 1);
    let events = timeline(&rig.agents, &id);
    assert_eq!(a["event_count"], events.len());
    assert_eq!(a["dropped"], 0);
    assert!(a["last_pid"].is_u64() && a.get("pid").is_none(), "{a}");
    assert_eq!(
        types(&events),
        [
            "status",
            "prompt",
            "status",
            "output",
            "assistant",
            "tool_use",
            "tool_result",
            "assistant",
            "usage",
            "result",
            "status"
        ]
    );
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e["seq"], i as u64 + 1);
    }
    assert_eq!(events[5]["data"]["input"], json!({"command": "echo hi"}));
    assert_eq!(events[6]["text"], "hi");
    assert_eq!(events[6]["data"]["tool_use_id"], "toolu_01");
    assert_eq!(events[8]["data"]["totals"]["cost_usd"], 0.001);
    assert_eq!(events[9]["text"], "It printed hi.");
    assert_eq!(events[10]["data"]["status"], "idle");
    // Every event went out as a feed item, in order.
    let items = rig.items.lock().unwrap().clone();
    assert_eq!(items.len(), events.len());
    assert_eq!(items[4]["source"], "fallback");
    assert_eq!(items[4]["kind"], "agent_event");
    assert_eq!(items[4]["agent"]["id"], id);
    assert_eq!(items[4]["event"], events[4]);

    // The follow-up resumes the session.
    let q = rig.agents.query(&id, "hello").await.unwrap();
    assert_eq!(q["queued"], false);
    assert_eq!(q["agent"]["id"], id);
    let a = settled(&rig.agents, &id).await;
    assert_eq!(a["usage"]["runs"], 2);
    assert!((a["usage"]["cost_usd"].as_f64().unwrap() - 0.002).abs() < 1e-9);
    let runs = logged(&rig.log);
    assert_eq!(runs.len(), 2);
    assert!(!runs[0].contains(&"--resume".to_owned()));
    let i = runs[1].iter().position(|a| a == "--resume").unwrap();
    assert_eq!(runs[1][i + 1], session);
    assert_eq!(runs[1].last().unwrap(), "hello");
    let last = timeline(&rig.agents, &id);
    assert_eq!(
        last.iter().rev().nth(1).unwrap()["text"],
        "Hello from fake claude"
    );
    let closed = rig.agents.close(&id).await.unwrap();
    assert_eq!(closed["deleted"], true);
    assert_eq!(closed["agent"]["status"], "exited");
    assert!(rig.agents.get(&id).is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_codex_agent_runs_and_resumes_its_thread() {
    let rig = rig(|_| {}).await;
    let mut r = req("codex", "tool");
    r.model = Some("gpt-fake".into());
    let a = rig.agents.create(r).await.unwrap();
    let id = a["id"].as_str().unwrap().to_owned();
    let a = settled(&rig.agents, &id).await;
    assert_eq!(a["status"], "idle", "{a}");
    let thread = a["thread_id"].as_str().unwrap().to_owned();
    assert_eq!(a["usage"]["cost_usd"], Value::Null);
    assert_eq!(a["usage"]["input_tokens"], 10);
    assert_eq!(a["usage"]["cache_read_input_tokens"], 2);
    let events = timeline(&rig.agents, &id);
    let t = types(&events);
    assert_eq!(t[3..t.len() - 1], CODEX_TOOL_KINDS);
    assert_eq!(t.last().map(String::as_str), Some("status"));
    assert_eq!(events[6]["text"], "hi\n");
    assert_eq!(events[7]["text"], "revka/list");
    rig.agents.query(&id, "hello").await.unwrap();
    settled(&rig.agents, &id).await;
    let runs = logged(&rig.log);
    assert_eq!(runs.len(), 2);
    assert!(
        runs[0].starts_with(&["exec".into(), "--json".into()]),
        "{:?}",
        runs[0]
    );
    assert!(runs[0].contains(&"gpt-fake".to_owned()));
    let i = runs[1].iter().position(|a| a == "resume").unwrap();
    assert_eq!(runs[1][i + 1], thread);
    assert_eq!(runs[1].last().unwrap(), "hello");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupt_ends_the_run_and_its_group() {
    let rig = rig(|_| {}).await;
    for backend in ["claude", "codex"] {
        let a = rig.agents.create(req(backend, "slow")).await.unwrap();
        let id = a["id"].as_str().unwrap().to_owned();
        let (pid, grandchild) = pids(&rig.agents, &id).await;
        assert_eq!(rig.agents.get(&id).unwrap()["pid"], pid);
        let busy = rig.agents.query(&id, "hello").await.unwrap_err();
        assert!(matches!(busy, FallbackError::Busy(_)), "{busy}");
        let r = rig.agents.interrupt(&id).await.unwrap();
        assert_eq!(r["interrupted"], true);
        gone(pid).await;
        gone(grandchild).await;
        let a = settled(&rig.agents, &id).await;
        assert_eq!(a["status"], "idle");
        let events = timeline(&rig.agents, &id);
        assert!(types(&events).contains(&"interrupt".to_owned()));
        assert_eq!(events.last().unwrap()["data"]["reason"], "interrupted");
        // Nothing runs now.
        let r = rig.agents.interrupt(&id).await.unwrap();
        assert_eq!(r, json!({"interrupted": false}));
        // It takes new prompts.
        rig.agents.query(&id, "hello").await.unwrap();
        assert_eq!(settled(&rig.agents, &id).await["status"], "idle");
    }
}

/// A CLI that answered and exited ends its run kill_grace later even when a descendant that
/// left its process group still holds its stdout open (the run would otherwise stay
/// `running` until that process ends).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_ends_after_its_cli_exits_though_an_escaped_descendant_holds_its_output() {
    let rig = rig(|_| {}).await;
    let a = rig.agents.create(req("claude", "escape")).await.unwrap();
    let id = a["id"].as_str().unwrap().to_owned();
    let mut escaped = None;
    for _ in 0..1000 {
        escaped = timeline(&rig.agents, &id)
            .iter()
            .filter(|e| e["data"]["cli_type"] == "fake.pid")
            .find_map(|e| {
                serde_json::from_str::<Value>(e["text"].as_str()?).ok()?["escaped"].as_u64()
            });
        if escaped.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let escaped = escaped.expect("the escaped pid");
    let a = settled(&rig.agents, &id).await;
    assert_eq!(a["status"], "idle", "{a}");
    assert!(types(&timeline(&rig.agents, &id)).contains(&"result".to_owned()));
    assert!(exists(escaped), "the test's premise: it still runs");
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(escaped as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stubborn_run_is_killed_after_the_grace() {
    let rig = rig(|c| c.kill_grace = Duration::from_millis(300)).await;
    let a = rig.agents.create(req("claude", "stubborn")).await.unwrap();
    let id = a["id"].as_str().unwrap().to_owned();
    let (pid, grandchild) = pids(&rig.agents, &id).await;
    let r = rig.agents.interrupt(&id).await.unwrap();
    assert_eq!(r["interrupted"], true);
    gone(pid).await;
    gone(grandchild).await;
    assert_eq!(settled(&rig.agents, &id).await["status"], "idle");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_errors_and_bad_backends_leave_other_agents_alone() {
    let rig = rig(|c| c.max_events = 500).await;
    let healthy = rig.agents.create(req("codex", "slow")).await.unwrap();
    let healthy = healthy["id"].as_str().unwrap().to_owned();
    let (healthy_pid, _) = pids(&rig.agents, &healthy).await;
    for (backend, prompt, reason) in [
        ("claude", "error", "backend"),
        ("codex", "error", "backend"),
        ("claude", "garbage", "protocol"),
        ("codex", "garbage", "protocol"),
        ("claude", "die", "died"),
        ("codex", "die", "died"),
        ("claude", "flood", "flood"),
    ] {
        let a = rig.agents.create(req(backend, prompt)).await.unwrap();
        let id = a["id"].as_str().unwrap().to_owned();
        let pid = a["pid"].as_u64().unwrap();
        let a = settled(&rig.agents, &id).await;
        assert_eq!(a["status"], "error", "{backend} {prompt}: {a}");
        assert_eq!(a["last_error"]["reason"], reason, "{backend} {prompt}: {a}");
        gone(pid).await;
        let events = timeline(&rig.agents, &id);
        let status = events.last().unwrap();
        assert_eq!(status["data"]["reason"], reason);
        match prompt {
            "garbage" => assert!(
                a["last_error"]["message"]
                    .as_str()
                    .unwrap()
                    .ends_with("this is not JSON"),
                "{a}"
            ),
            "die" => {
                let m = a["last_error"]["message"].as_str().unwrap();
                assert!(m.contains("exited with status 3"), "{m}");
                assert!(m.contains("fatal: the fake agent crashed"), "{m}");
            }
            "flood" => {
                assert!(events.len() <= 500);
                let page = rig.agents.events(&id, 0, 10).unwrap();
                assert!(
                    page["dropped"].as_u64().unwrap() > 99_000,
                    "{}",
                    page["dropped"]
                );
            }
            _ => {}
        }
        // It takes new prompts.
        rig.agents.query(&id, "hello").await.unwrap();
        assert_eq!(settled(&rig.agents, &id).await["status"], "idle");
        rig.agents.close(&id).await.unwrap();
    }
    assert!(exists(healthy_pid));
    assert_eq!(rig.agents.get(&healthy).unwrap()["status"], "running");
    rig.agents.close(&healthy).await.unwrap();
    gone(healthy_pid).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spent_budget_stops_the_run_and_refuses_prompts() {
    let rig = rig(|c| c.max_tokens = Some(100)).await;
    let a = rig.agents.create(req("codex", "usage 500")).await.unwrap();
    let id = a["id"].as_str().unwrap().to_owned();
    let pid = a["pid"].as_u64().unwrap();
    assert_eq!(a["budget"], json!({"max_tokens": 100}));
    let a = settled(&rig.agents, &id).await;
    assert_eq!(a["status"], "error");
    assert_eq!(a["last_error"]["reason"], "budget_exceeded");
    gone(pid).await;
    let events = timeline(&rig.agents, &id);
    let budget = events.iter().find(|e| e["type"] == "budget").unwrap();
    assert_eq!(budget["data"]["used"]["tokens"], 500);
    assert_eq!(budget["data"]["limit"], json!({"max_tokens": 100}));
    assert!(
        budget["text"]
            .as_str()
            .unwrap()
            .starts_with("budget exceeded: ")
    );
    let e = rig.agents.query(&id, "hello").await.unwrap_err();
    assert!(matches!(e, FallbackError::BudgetExceeded(_)), "{e}");

    let rig = rig_cost().await;
    let a = rig.agents.create(req("claude", "usage 50")).await.unwrap();
    let id = a["id"].as_str().unwrap().to_owned();
    let a = settled(&rig.agents, &id).await;
    assert_eq!(a["last_error"]["reason"], "budget_exceeded", "{a}");
}

async fn rig_cost() -> Rig {
    rig(|c| c.max_cost_usd = Some(0.01)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_refused_with_precise_errors() {
    let rig = rig(|c| c.max_agents = 1).await;
    let e = rig.agents.create(req("gemini", "hi")).await.unwrap_err();
    assert_eq!(
        e.to_string(),
        "unknown backend \"gemini\" (one of: claude, codex)"
    );
    let mut r = req("claude", "hi");
    r.cwd = Some("relative".into());
    assert!(matches!(
        rig.agents.create(r).await,
        Err(FallbackError::Invalid(_))
    ));
    let mut r = req("claude", "hi");
    r.cwd = Some("/no/such/dir".into());
    assert!(matches!(
        rig.agents.create(r).await,
        Err(FallbackError::Invalid(_))
    ));
    let mut r = req("claude", "hi");
    r.mcp_servers = Some(json!({"x": {"type": "ftp"}}));
    assert!(matches!(
        rig.agents.create(r).await,
        Err(FallbackError::Invalid(_))
    ));

    let a = rig.agents.create(req("claude", "slow")).await.unwrap();
    let id = a["id"].as_str().unwrap().to_owned();
    let e = rig.agents.create(req("codex", "hi")).await.unwrap_err();
    assert!(matches!(e, FallbackError::TooMany(1)), "{e}");
    rig.agents.close(&id).await.unwrap();
    let a = rig.agents.create(req("codex", "hello")).await.unwrap();
    settled(&rig.agents, a["id"].as_str().unwrap()).await;
    assert!(matches!(
        rig.agents.query("fb_nope", "x").await,
        Err(FallbackError::NotFound(_))
    ));

    let rig = self::rig(|c| c.claude_command = vec!["/no/such/claude".into()]).await;
    let e = rig.agents.create(req("claude", "hi")).await.unwrap_err();
    assert_eq!(
        e.to_string(),
        "cannot start `/no/such/claude`: no executable file there"
    );
    assert_eq!(rig.agents.live(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_servers_reach_the_clis_and_their_files_go_with_the_agent() {
    let rig = rig(|_| {}).await;
    let servers = json!({"revka": {"type": "http", "url": "http://127.0.0.1:9/mcp",
                                   "headers": {"Authorization": "Bearer s3cret"}}});
    let mut r = req("claude", "hello");
    r.mcp_servers = Some(servers.clone());
    let a = rig.agents.create(r).await.unwrap();
    let id = a["id"].as_str().unwrap().to_owned();
    let dir = rig.home.path().join("agents").join(&id);
    let file = dir.join("mcp.json");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
        0o700
    );
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let written: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(written, json!({"mcpServers": servers}));
    settled(&rig.agents, &id).await;
    let runs = logged(&rig.log);
    let i = runs[0].iter().position(|a| a == "--mcp-config").unwrap();
    assert_eq!(runs[0][i + 1], file.display().to_string());
    rig.agents.close(&id).await.unwrap();
    assert!(!dir.exists());

    let mut r = req("codex", "hello");
    r.mcp_servers = Some(servers);
    let a = rig.agents.create(r).await.unwrap();
    let shown = a["argv"].to_string();
    assert!(!shown.contains("s3cret"), "{shown}");
    settled(&rig.agents, a["id"].as_str().unwrap()).await;
    let runs = logged(&rig.log);
    assert!(runs[1].contains(&r#"mcp_servers.revka.url="http://127.0.0.1:9/mcp""#.to_owned()));
    // The header's value is not on the command line codex got, but in its environment.
    assert!(
        runs[1].iter().all(|arg| !arg.contains("s3cret")),
        "{:?}",
        runs[1]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_kills_every_run() {
    let rig = rig(|_| {}).await;
    let mut all = Vec::new();
    for backend in ["claude", "codex"] {
        let a = rig.agents.create(req(backend, "slow")).await.unwrap();
        all.push(pids(&rig.agents, a["id"].as_str().unwrap()).await);
    }
    rig.agents.shutdown().await;
    for (pid, grandchild) in all {
        gone(pid).await;
        gone(grandchild).await;
    }
    let e = rig.agents.create(req("claude", "hello")).await.unwrap_err();
    assert!(matches!(e, FallbackError::ShuttingDown));
}

#[test]
fn directories_left_by_a_killed_daemon_are_removed() {
    let home = tempfile::tempdir().unwrap();
    let parent = home.path().join("agents");
    let stale = parent.join("fb_0123456789");
    let other = parent.join("not-an-agent");
    std::fs::create_dir_all(&stale).unwrap();
    std::fs::write(stale.join("mcp.json"), "{}").unwrap();
    std::fs::create_dir_all(&other).unwrap();
    let config = FallbackConfig {
        home: home.path().to_owned(),
        ..FallbackConfig::default()
    };
    let _agents = FallbackAgents::new(config, Arc::new(|_| {}));
    assert!(!stale.exists());
    assert!(other.exists());
}

#[tokio::test]
async fn the_daemons_secrets_are_removed_from_a_runs_environment() {
    // A supervisor is needed for a plan only; nothing is started here.
    let root = StatusNode::root("root", "supervisor");
    let (sup, _) = SupervisorActor::spawn(
        None,
        SupervisorActor,
        SupervisorArguments {
            node: root,
            strategy: Strategy::OneForOne,
            intensity: Intensity::default(),
            children: Vec::new(),
        },
    )
    .await
    .unwrap();
    let agent = test_agent(Backend::Claude);
    let plan = run::RunPlan {
        run: 1,
        program: "/bin/claude".into(),
        args: vec!["-p".into(), "--".into(), "hi".into()],
        shown: vec!["claude".into(), "-p".into(), "--".into(), "<prompt>".into()],
        cwd: "/tmp".into(),
        kill_grace: Duration::from_secs(1),
        line_cap: 1024,
        supervisor: sup.clone(),
    };
    let spec = run::process_spec_without(&agent, &plan, vec!["REVKA_GATEWAY_TOKEN".into()]);
    assert!(spec.program.ends_with("env"), "{}", spec.program);
    assert_eq!(
        spec.args,
        [
            "-u",
            "REVKA_GATEWAY_TOKEN",
            "--",
            "/bin/claude",
            "-p",
            "--",
            "hi"
        ]
    );
    assert_eq!(spec.command_line(), "claude -p -- <prompt>");
    assert_eq!(spec.env, [("REVKA_AGENT_ID".to_owned(), "fb_0".to_owned())]);
    assert_eq!(spec.cwd.as_deref(), Some(Path::new("/tmp")));
    let spec = run::process_spec_without(&agent, &plan, Vec::new());
    assert_eq!(spec.program, "/bin/claude");
    assert_eq!(spec.args, ["-p", "--", "hi"]);
    // The process tree's marker is the process actor's to set, never removed.
    assert!(!run::scrubbed_names().contains(&revka_actors::process::TREE_VAR.to_owned()));
    sup.stop(None);
}
