//! Chaos tests against the real daemon (issue 8, item 2), bounded in time for CI.
//!
//! - `sigkill_chaos_never_hangs_a_call_and_every_kill_is_one_restart`: 8 sessions call tools in
//!   a loop (fast `echo`, short `slow_echo` and `sleep`) on two stdio servers (two
//!   `fault_server` instances) while a killer SIGKILLs one server's current process (its pid
//!   from introspection) every ~200 ms for `REVKA_CHAOS_SECS` seconds (default 20); every
//!   fourth time it also kills the next process as soon as it appears, mid-handshake. Every
//!   call returns (a result or an error) within its timeout; the untouched server answers
//!   every call correctly; the daemon never crashes (same pid, answers `/api/health`, no panic
//!   in its log); the killed server's restart count equals the kills that hit a live process
//!   (the reasoning is at the killer); after a SIGTERM no process of the daemon's tree and no
//!   zombie is left.
//! - `a_crash_looping_server_fails_while_the_other_keeps_serving`: a server that exits 300 ms
//!   after every start reaches `failed` after exactly `max_restarts` restarts, calls to it get
//!   the precise reason, `/api/health` says `degraded`, and the healthy server answers every
//!   call throughout.
//!
//! Processes are traced with a unique marker variable in the daemon's environment, which every
//! descendant inherits (see [`ProcTracker`]).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{
    Gateway, Served, Session, TestDaemon, TestHome, eventually_async, fixture_server,
    try_within_async, within,
};

/// The marker variable given to the daemon (and so inherited by every process it spawns).
const MARK_VAR: &str = "REVKA_CHAOS_MARK";
/// `tool_timeout_secs` of every server in these tests.
const TOOL_TIMEOUT: Duration = Duration::from_secs(5);
/// A call that has not returned this long after it was sent counts as hung. Above the tool
/// timeout by a margin for a loaded CI machine; a hang is forever, not 5 s late.
const HANG_LIMIT: Duration = Duration::from_secs(15);

// ---------------------------------------------------------------------------
// The daemon under test
// ---------------------------------------------------------------------------

/// A daemon with a marked environment, its MCP endpoint and its gateway.
struct Chaos {
    served: Served,
    mark: String,
    gateway: Gateway,
    tracker: ProcTracker,
}

impl Chaos {
    /// Starts the daemon on `servers` (TOML appended after `[mcp]` and `[supervisor]`) and waits
    /// until each of `tools` can be activated.
    async fn start(servers: &str, tools: &[&str]) -> Self {
        let home = TestHome::new();
        home.write_config(&format!(
            r#"
[mcp]
enabled = true

# Generous: the killed server restarts about every 200 ms and must never exhaust the tree.
[supervisor]
intensity = 100000
intensity_period_secs = 60
{servers}
"#
        ));
        let mut random = [0u8; 8];
        getrandom::fill(&mut random).expect("getrandom");
        let mark = format!("chaos-{}", u64::from_le_bytes(random));
        let daemon = TestDaemon::start(&home, &[(MARK_VAR, &mark)]);
        let (mcp_json, gateway_json) = (
            home.path().join("mcp.json"),
            home.path().join("gateway.json"),
        );
        assert!(
            try_within_async(Duration::from_secs(30), async || mcp_json.exists()
                && gateway_json.exists())
            .await
            .is_some(),
            "mcp.json and gateway.json written; stderr:\n{}",
            daemon.stderr()
        );
        let doc: Value = serde_json::from_slice(&std::fs::read(&mcp_json).unwrap()).unwrap();
        let url = doc["url"].as_str().unwrap().to_owned();
        let served = Served {
            base: url.trim_end_matches("/mcp").to_owned(),
            url,
            record: home.path().join("unused-record.jsonl"),
            home,
            daemon,
            http: reqwest::Client::new(),
        };
        for tool in tools {
            served.wait_for_tool(tool).await;
        }
        let gateway = Gateway::of(served.home.path());
        let tracker = ProcTracker::new(&mark);
        tracker.add(served.daemon.child.id() as i32);
        let chaos = Self {
            served,
            mark,
            gateway,
            tracker,
        };
        chaos.tracker.scan();
        chaos
    }

    fn daemon_pid(&self) -> u32 {
        self.served.daemon.child.id()
    }

    /// A new session with `tools` activated.
    async fn session(&self, tools: &[&str]) -> Session {
        let session = self.served.session().await;
        let text = session
            .call_text(
                "tool_search",
                json!({ "query": format!("select:{}", tools.join(",")) }),
            )
            .await;
        assert!(
            !text.contains("Not found") && tools.iter().all(|t| text.contains(t)),
            "activation of {tools:?}: {text}"
        );
        session
    }

    /// The daemon still runs under the pid it started with and answers `/api/health` and the
    /// MCP endpoint's `/health`. Returns the `/api/health` body.
    async fn assert_daemon_alive(&mut self) -> Value {
        assert!(
            self.served.daemon.child.try_wait().unwrap().is_none(),
            "the daemon exited; stderr:\n{}",
            self.served.daemon.stderr()
        );
        let health: Value = self
            .served
            .http
            .get(format!("{}/health", self.served.base))
            .send()
            .await
            .expect("/health answers")
            .json()
            .await
            .unwrap();
        assert_eq!(health["pid"], self.daemon_pid(), "same daemon process");
        let (status, body) = self.gateway.api("/api/health").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    /// SIGTERM, exit 0, then nothing of the daemon's tree is left: no process carrying the
    /// marker, no zombie of a process it ever had. `running` are the servers that have a
    /// process now: first the scan must see them and the daemon, so an empty result later is
    /// not an empty scan.
    async fn stop_and_assert_nothing_left(mut self, running: &[&str]) {
        let mut expected = vec![self.daemon_pid() as i32];
        for name in running {
            expected.push(
                self.gateway
                    .server_pid(name)
                    .await
                    .expect("a running server's pid"),
            );
        }
        let marked = self.tracker.scan();
        for pid in &expected {
            assert!(
                marked.contains(pid),
                "pid {pid} carries the marker: {marked:?}"
            );
        }
        self.served.daemon.signal(Signal::SIGTERM);
        let status = self.served.daemon.wait(Duration::from_secs(60));
        assert_eq!(
            status.code(),
            Some(0),
            "daemon exit; stderr:\n{}",
            self.served.daemon.stderr()
        );
        let log = self.served.daemon.stderr();
        assert!(
            !log.contains("panicked"),
            "a panic in the daemon's log:\n{log}"
        );
        // PID 1 of this sandbox reaps lazily; anything that slipped to it may linger briefly.
        let mut leftovers = Vec::new();
        let clean = try_within_async(Duration::from_secs(20), async || {
            leftovers = self.tracker.leftovers();
            leftovers.is_empty()
        })
        .await
        .is_some();
        assert!(
            clean,
            "left after the daemon stopped (marker {}): {leftovers:#?}",
            self.mark
        );
        eprintln!(
            "chaos: after stop, nothing left of {} traced processes",
            self.tracker.len()
        );
    }
}

/// The fault fixture as server `name`, with a finite tool timeout and extra keys.
fn server(name: &str, args: &str, restart: &str) -> String {
    format!(
        "\n[[mcp.servers]]\nname = \"{name}\"\ncommand = \"{}\"\nargs = {args}\ntool_timeout_secs = {}\n{restart}\n",
        fixture_server("fault_server").display(),
        TOOL_TIMEOUT.as_secs()
    )
}

// ---------------------------------------------------------------------------
// Calls
// ---------------------------------------------------------------------------

/// How one tool call ended.
#[derive(Debug)]
enum Outcome {
    /// A result with `isError: false`.
    Ok(String),
    /// A result with `isError: true`.
    ToolError(String),
    /// A JSON-RPC error.
    RpcError(String),
    /// No well-formed answer (HTTP failure, bad body, no final message).
    Broken(String),
    /// Nothing within [`HANG_LIMIT`].
    Hung,
}

/// One `tools/call`, never panicking, bounded by [`HANG_LIMIT`].
async fn call(session: &Session, id: u64, name: &str, arguments: Value) -> (Outcome, Duration) {
    let started = Instant::now();
    let params = json!({ "name": name, "arguments": arguments });
    let exchange = session.final_message(id, "tools/call", params);
    let outcome = match tokio::time::timeout(HANG_LIMIT, exchange).await {
        Err(_) => Outcome::Hung,
        Ok(Err(e)) => Outcome::Broken(e),
        Ok(Ok(message)) => {
            if let Some(error) = message.get("error") {
                Outcome::RpcError(error.to_string())
            } else {
                let text = message["result"]["content"][0]["text"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                if message["result"]["isError"] == json!(true) {
                    Outcome::ToolError(text)
                } else {
                    Outcome::Ok(text)
                }
            }
        }
    };
    (outcome, started.elapsed())
}

/// A call of the rotation and the success text it must get.
fn pick(server: &str, session: usize, i: u64) -> (String, Value, String) {
    let text = format!("s{session}-c{i}");
    let ms = 10 + (i * 7 + session as u64 * 13) % 50;
    match i % 4 {
        0 | 1 => (
            format!("{server}__echo"),
            json!({ "text": text }),
            json!({ "text": text }).to_string(),
        ),
        2 => (
            format!("{server}__slow_echo"),
            json!({ "text": text, "ms": ms }),
            text,
        ),
        _ => (
            format!("{server}__sleep"),
            json!({ "ms": ms }),
            format!("slept {ms} ms"),
        ),
    }
}

/// Outcomes of the calls to one server.
#[derive(Debug, Default)]
struct Tally {
    ok: u64,
    /// Successes whose text was not the expected one (a crossed or corrupted answer).
    wrong: Vec<String>,
    /// Error results and JSON-RPC errors, by message with digits masked.
    errors: BTreeMap<String, u64>,
    broken: Vec<String>,
    hung: u64,
    max_latency: Duration,
}

impl Tally {
    fn record(&mut self, outcome: Outcome, expected: &str, latency: Duration) {
        self.max_latency = self.max_latency.max(latency);
        match outcome {
            Outcome::Ok(text) if text == expected => self.ok += 1,
            Outcome::Ok(text) => self.wrong.push(format!("{text:?}, expected {expected:?}")),
            Outcome::ToolError(text) | Outcome::RpcError(text) => {
                *self.errors.entry(mask_digits(&text)).or_default() += 1;
            }
            Outcome::Broken(e) => self.broken.push(e),
            Outcome::Hung => self.hung += 1,
        }
    }

    fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    fn total(&self) -> u64 {
        self.ok
            + self.wrong.len() as u64
            + self.error_count()
            + self.broken.len() as u64
            + self.hung
    }

    fn merge(&mut self, other: Tally) {
        self.ok += other.ok;
        self.wrong.extend(other.wrong);
        for (k, v) in other.errors {
            *self.errors.entry(k).or_default() += v;
        }
        self.broken.extend(other.broken);
        self.hung += other.hung;
        self.max_latency = self.max_latency.max(other.max_latency);
    }

    fn report(&self, server: &str) {
        eprintln!(
            "chaos: {server}: {} calls, {} ok, {} errors, {} wrong, {} broken, {} hung, max latency {:?}",
            self.total(),
            self.ok,
            self.error_count(),
            self.wrong.len(),
            self.broken.len(),
            self.hung,
            self.max_latency
        );
        for (message, n) in &self.errors {
            eprintln!("chaos:   {n:>5} × {message}");
        }
    }

    /// Every call answered, well-formed, and every success correct.
    fn assert_no_hang_no_garbage(&self, server: &str) {
        assert_eq!(self.hung, 0, "{server}: calls hung");
        assert!(
            self.broken.is_empty(),
            "{server}: broken answers: {:?}",
            self.broken
        );
        assert!(
            self.wrong.is_empty(),
            "{server}: wrong answers: {:?}",
            self.wrong
        );
    }
}

/// `pid 1234 exited` → `pid # exited`, so error messages group by kind.
fn mask_digits(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_number = false;
    for c in text.chars().take(300) {
        if c.is_ascii_digit() {
            if !in_number {
                out.push('#');
            }
            in_number = true;
        } else {
            in_number = false;
            out.push(c);
        }
    }
    out
}

/// Runs `sessions` callers until `stop` is set; caller `k` sends to `targets[(i + k) % len]`.
fn spawn_callers(
    sessions: Vec<Session>,
    targets: &'static [&'static str],
    stop: Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<HashMap<&'static str, Tally>>> {
    sessions
        .into_iter()
        .enumerate()
        .map(|(k, session)| {
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut tallies: HashMap<&'static str, Tally> = HashMap::new();
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let server = targets[(i as usize + k) % targets.len()];
                    let (tool, args, expected) = pick(server, k, i);
                    let (outcome, latency) = call(&session, i + 100, &tool, args).await;
                    tallies
                        .entry(server)
                        .or_default()
                        .record(outcome, &expected, latency);
                    i += 1;
                }
                tallies
            })
        })
        .collect()
}

async fn join_callers(
    callers: Vec<tokio::task::JoinHandle<HashMap<&'static str, Tally>>>,
) -> HashMap<&'static str, Tally> {
    let mut all: HashMap<&'static str, Tally> = HashMap::new();
    for caller in callers {
        for (server, tally) in caller.await.expect("caller task") {
            all.entry(server).or_default().merge(tally);
        }
    }
    all
}

// ---------------------------------------------------------------------------
// Processes of the daemon's tree
// ---------------------------------------------------------------------------

/// One `/proc/<pid>/stat`: state, parent, start time (clock ticks since boot; with the pid it
/// names one process across pid reuse).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stat {
    comm: String,
    state: char,
    ppid: i32,
    start: u64,
}

fn read_stat(pid: i32) -> Option<Stat> {
    let raw = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid …`; comm may contain spaces and parentheses.
    let open = raw.find('(')?;
    let close = raw.rfind(')')?;
    let comm = raw[open + 1..close].to_owned();
    let fields: Vec<&str> = raw[close + 1..].split_whitespace().collect();
    Some(Stat {
        comm,
        state: fields.first()?.chars().next()?,
        ppid: fields.get(1)?.parse().ok()?,
        start: fields.get(19)?.parse().ok()?,
    })
}

fn all_pids() -> Vec<i32> {
    std::fs::read_dir("/proc")
        .map(|dir| {
            dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

fn has_mark(pid: i32, needle: &[u8]) -> bool {
    // Unreadable (another user's process, or gone): not ours.
    std::fs::read(format!("/proc/{pid}/environ"))
        .is_ok_and(|env| env.split(|&b| b == 0).any(|var| var == needle))
}

/// Every process seen carrying the marker (and every killed server process), by pid and start
/// time, to find their zombies later (a zombie's environ is empty).
struct ProcTracker {
    needle: Vec<u8>,
    seen: Mutex<HashMap<i32, u64>>,
}

impl ProcTracker {
    fn new(mark: &str) -> Self {
        Self {
            needle: format!("{MARK_VAR}={mark}").into_bytes(),
            seen: Mutex::new(HashMap::new()),
        }
    }

    fn add(&self, pid: i32) {
        if let Some(stat) = read_stat(pid) {
            self.seen.lock().unwrap().insert(pid, stat.start);
        }
    }

    fn len(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    /// Records every live process carrying the marker, and returns their pids.
    fn scan(&self) -> Vec<i32> {
        let me = std::process::id() as i32;
        let marked: Vec<i32> = all_pids()
            .into_iter()
            .filter(|&pid| pid != me && has_mark(pid, &self.needle))
            .collect();
        for &pid in &marked {
            self.add(pid);
        }
        marked
    }

    /// What is left: live processes carrying the marker, and zombies that are (by pid and start
    /// time) a traced process or a child of one.
    fn leftovers(&self) -> Vec<(i32, Stat)> {
        let me = std::process::id() as i32;
        let seen = self.seen.lock().unwrap().clone();
        let traced_pids: HashSet<i32> = seen.keys().copied().collect();
        all_pids()
            .into_iter()
            .filter(|&pid| pid != me)
            .filter_map(|pid| Some((pid, read_stat(pid)?)))
            .filter(|(pid, stat)| {
                let traced = seen.get(pid) == Some(&stat.start);
                if stat.state == 'Z' {
                    traced || traced_pids.contains(&stat.ppid)
                } else {
                    has_mark(*pid, &self.needle)
                }
            })
            .collect()
    }
}

/// The killer's record.
#[derive(Debug, Default)]
struct Killer {
    /// Every pid killed, with its start time.
    killed: Vec<(i32, u64)>,
    ticks: u64,
    /// kill(2) failed: the process was gone already.
    missed: u64,
    /// Kills of a process that had just been spawned (mid-handshake, most likely).
    early: u64,
}

impl Killer {
    fn was_killed(&self, pid: i32) -> bool {
        self.killed.iter().any(|&(p, _)| p == pid)
    }

    /// SIGKILLs `pid` unless it is none or was killed before; whether a kill counted.
    fn kill(&mut self, pid: Option<i32>) -> bool {
        let Some(pid) = pid.filter(|&p| !self.was_killed(p)) else {
            return false;
        };
        let start = read_stat(pid).map_or(0, |s| s.start);
        match kill(Pid::from_raw(pid), Signal::SIGKILL) {
            Ok(()) => {
                self.killed.push((pid, start));
                true
            }
            Err(_) => {
                self.missed += 1;
                false
            }
        }
    }
}

// ---------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------

const CHAOS_SERVERS: &[&str] = &["victim", "steady"];

fn chaos_secs() -> u64 {
    std::env::var("REVKA_CHAOS_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20)
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_chaos_never_hangs_a_call_and_every_kill_is_one_restart() {
    let started = Instant::now();
    let secs = chaos_secs();
    // The victim restarts after every kill: a limit it cannot reach, a short backoff so a new
    // process is usually up before the next kill (backoff min..max, cold start a few ms).
    let restart = "restart = { max_restarts = 100000, window_secs = 60, backoff_min_ms = 10, backoff_max_ms = 50 }";
    let servers = format!(
        "{}{}",
        server("victim", "[]", restart),
        server("steady", "[]", "")
    );
    let tools: Vec<String> = CHAOS_SERVERS
        .iter()
        .flat_map(|s| ["echo", "slow_echo", "sleep"].map(|t| format!("{s}__{t}")))
        .collect();
    let tools: Vec<&str> = tools.iter().map(String::as_str).collect();
    let mut chaos = Chaos::start(&servers, &tools).await;
    let health = chaos.assert_daemon_alive().await;
    assert_eq!(health["status"], "healthy", "{health}");
    let restarts_before = chaos.gateway.server_node("victim").await["restarts"]
        .as_u64()
        .unwrap();
    assert_eq!(restarts_before, 0);

    let mut sessions = Vec::new();
    for _ in 0..8 {
        sessions.push(chaos.session(&tools).await);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let callers = spawn_callers(sessions, CHAOS_SERVERS, stop.clone());

    // The killer. A kill counts when `kill(2)` succeeded on the pid introspection showed as the
    // victim's process and that pid was never killed before. Why that is exact:
    // - Nothing else ends a victim process during the run (no reload, no stop, no crash knob,
    //   handshake and tool timeouts far away), so every process that dies was killed by us,
    //   and each of those deaths fails its connection actor exactly once (whether it was
    //   connected or still in its handshake: a failed start is counted too), which is one
    //   restart.
    // - Introspection keeps showing the last pid until the next process is spawned. That pid
    //   may still be a zombie the daemon has not reaped yet, and kill(2) succeeds on a zombie:
    //   without the "never killed before" rule that second kill would be counted without a
    //   restart. Every other dead pid shown is also one we killed, so the rule covers them.
    // - A pid that was never killed is a live process: only our kills end processes, so it
    //   cannot be dying, and its kill is one death.
    // - kill(2) failing (ESRCH: reaped meanwhile) is not counted.
    // - A new process reusing a killed pid would be skipped (not killed), never miscounted;
    //   the start time from /proc is recorded for the zombie scan.
    let killer = {
        let gateway = chaos.gateway.clone();
        tokio::spawn(async move {
            let current_pid = || gateway.server_pid("victim");
            let deadline = Instant::now() + Duration::from_secs(secs);
            let mut k = Killer::default();
            let mut tick = tokio::time::interval(Duration::from_millis(200));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            while Instant::now() < deadline {
                tick.tick().await;
                k.ticks += 1;
                // Most kills land on a connected server. Every fourth tick also waits for the
                // next process and kills it at once, mid-handshake.
                if !k.kill(current_pid().await) || k.ticks % 4 != 0 {
                    continue;
                }
                let give_up = Instant::now() + Duration::from_millis(150);
                while Instant::now() < give_up {
                    let pid = current_pid().await;
                    if pid.is_some_and(|p| !k.was_killed(p)) {
                        if k.kill(pid) {
                            k.early += 1;
                        }
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
            k
        })
    };
    // Meanwhile, trace the daemon's processes (for the zombie scan after the stop).
    let Killer {
        killed,
        ticks,
        missed,
        early,
    } = {
        let mut killer = killer;
        loop {
            tokio::select! {
                done = &mut killer => break done.expect("killer task"),
                _ = tokio::time::sleep(Duration::from_millis(500)) => {
                    chaos.tracker.scan();
                }
            }
        }
    };
    {
        let mut seen = chaos.tracker.seen.lock().unwrap();
        for &(pid, start) in &killed {
            seen.insert(pid, start);
        }
    }
    stop.store(true, Ordering::Relaxed);
    let tallies = join_callers(callers).await;
    let kills = killed.len() as u64;

    // The victim is up again with a process we did not kill, and its restarts are our kills.
    let node = eventually_async("the victim running again after the chaos", async || {
        let node = chaos.gateway.server_node("victim").await;
        let pid = chaos.gateway.server_pid("victim").await;
        (node["state"] == "running" && pid.is_some_and(|p| killed.iter().all(|&(k, _)| k != p)))
            .then_some(node)
    })
    .await;
    let restarts = node["restarts"].as_u64().unwrap();
    eprintln!(
        "chaos: {secs} s, {ticks} killer ticks, {kills} kills ({early} mid-handshake), {missed} kills that found no process, {restarts} restarts"
    );
    // For the report: why the victim's connection ended, as the daemon logged it.
    let mut reasons: BTreeMap<String, u64> = BTreeMap::new();
    for line in chaos.served.daemon.stderr().lines() {
        if line.contains("mcp:victim") && line.contains("restart scheduled") {
            let reason = line.split(" reason=").nth(1).unwrap_or(line);
            let reason = reason.split(" attempt=").next().unwrap_or(reason);
            *reasons.entry(mask_digits(reason)).or_default() += 1;
        }
    }
    for (reason, n) in &reasons {
        eprintln!("chaos:   restart {n:>4} × {reason}");
    }
    let steady = tallies.get("steady").expect("calls to steady");
    let victim = tallies.get("victim").expect("calls to victim");
    victim.report("victim (killed)");
    steady.report("steady");
    assert_eq!(
        restarts, kills,
        "restarts of the victim equal the kills that hit a live process"
    );
    assert!(
        kills >= (secs / 2).max(1),
        "the chaos happened: {kills} kills in {secs} s"
    );
    let steady_node = chaos.gateway.server_node("steady").await;
    assert_eq!(
        (&steady_node["state"], &steady_node["restarts"]),
        (&json!("running"), &json!(0))
    );

    victim.assert_no_hang_no_garbage("victim");
    steady.assert_no_hang_no_garbage("steady");
    assert!(victim.ok > 0, "the victim served calls between kills");
    assert_eq!(steady.error_count(), 0, "steady: every call succeeds");
    assert!(steady.ok > 0);
    // A victim error names the server: its death (exit status, the connection closed), its
    // restart, or its reconnect.
    for message in victim.errors.keys() {
        assert!(message.contains("victim"), "imprecise error: {message}");
    }

    // A fresh call to the victim now succeeds.
    let session = chaos.session(&["victim__echo"]).await;
    let (outcome, _) = call(&session, 1, "victim__echo", json!({ "text": "after" })).await;
    assert!(
        matches!(&outcome, Outcome::Ok(t) if t.contains("after")),
        "{outcome:?}"
    );

    let health = chaos.assert_daemon_alive().await;
    assert_eq!(health["status"], "healthy", "{health}");
    chaos
        .stop_and_assert_nothing_left(&["victim", "steady"])
        .await;
    eprintln!("chaos: wall time {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crash_looping_server_fails_while_the_other_keeps_serving() {
    let started = Instant::now();
    // `crashy` handshakes, then exits with 42 after 300 ms, on every start.
    let restart = "restart = { max_restarts = 3, window_secs = 60, backoff_min_ms = 50, backoff_max_ms = 200 }";
    let servers = format!(
        "{}{}",
        server(
            "crashy",
            r#"["--exit-after", "300", "--exit-code", "42"]"#,
            restart
        ),
        server("steady", "[]", "")
    );
    let tools = [
        "crashy__echo",
        "crashy__slow_echo",
        "crashy__sleep",
        "steady__echo",
        "steady__slow_echo",
        "steady__sleep",
    ];
    let mut chaos = Chaos::start(&servers, &tools).await;

    static TARGETS: &[&str] = &["steady", "crashy", "steady"];
    let mut sessions = Vec::new();
    for _ in 0..6 {
        sessions.push(chaos.session(&tools).await);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let callers = spawn_callers(sessions, TARGETS, stop.clone());

    let node = eventually_async("crashy `failed`", async || {
        chaos.tracker.scan();
        let node = chaos.gateway.server_node("crashy").await;
        (node["state"] == "failed").then_some(node)
    })
    .await;
    // The healthy server keeps serving a while after that, with the failed one in the mix.
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    let tallies = join_callers(callers).await;
    let steady = tallies.get("steady").expect("calls to steady");
    let crashy = tallies.get("crashy").expect("calls to crashy");
    crashy.report("crashy");
    steady.report("steady");

    assert_eq!(
        node["restarts"], 3,
        "max_restarts restarts, then failed: {node}"
    );
    let last_failure = node["last_failure"].to_string();
    assert!(last_failure.contains("42"), "{node}");
    steady.assert_no_hang_no_garbage("steady");
    crashy.assert_no_hang_no_garbage("crashy");
    assert_eq!(steady.error_count(), 0, "steady: every call succeeds");
    assert!(steady.ok > 0);
    assert!(crashy.error_count() > 0);
    for message in crashy.errors.keys() {
        assert!(
            message.contains("server `crashy`"),
            "imprecise error: {message}"
        );
    }

    // A call now fails at once with the precise reason.
    let session = chaos.session(&["crashy__echo"]).await;
    let (outcome, latency) = call(&session, 1, "crashy__echo", json!({ "text": "x" })).await;
    match &outcome {
        Outcome::ToolError(text) => assert!(
            text.starts_with(
                "server `crashy` failed: process exited with status 42 (stderr: fault_server: --exit-after 300"
            ),
            "{text}"
        ),
        other => panic!("a call to a failed server: {other:?}"),
    }
    eprintln!("chaos: a call to the failed server answered in {latency:?}: {outcome:?}");

    let health = chaos.assert_daemon_alive().await;
    assert_eq!(health["status"], "degraded", "{health}");
    let states: BTreeMap<String, Value> = health["mcp_servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["name"].as_str().unwrap().to_owned(), s["state"].clone()))
        .collect();
    assert_eq!(states["mcp:crashy"], "failed", "{health}");
    assert_eq!(states["mcp:steady"], "running", "{health}");
    let steady_node = chaos.gateway.server_node("steady").await;
    assert_eq!(steady_node["restarts"], 0);

    chaos.stop_and_assert_nothing_left(&["steady"]).await;
    eprintln!("chaos: wall time {:?}", started.elapsed());
}

#[test]
fn helpers_mask_digits_and_parse_proc_stat() {
    assert_eq!(mask_digits("pid 1234 exited 9"), "pid # exited #");
    let stat = read_stat(std::process::id() as i32).expect("own stat");
    assert!("RS".contains(stat.state), "{stat:?}");
    assert_eq!(stat.ppid, nix::unistd::getppid().as_raw());
}

/// The leftover scan is not vacuous: it sees a marked process, then its zombie, then nothing.
#[test]
fn the_tracker_finds_a_marked_process_and_its_zombie() {
    let mark = format!("selftest-{}", std::process::id());
    let tracker = ProcTracker::new(&mark);
    let mut child = std::process::Command::new("sleep")
        .arg("30")
        .env(MARK_VAR, &mark)
        .spawn()
        .expect("spawn sleep");
    let pid = child.id() as i32;
    within(Duration::from_secs(5), "the marked process is seen", || {
        tracker.scan().contains(&pid)
    });
    assert!(tracker.leftovers().iter().any(|(p, _)| *p == pid));
    kill(Pid::from_raw(pid), Signal::SIGKILL).unwrap();
    // Not reaped yet: a zombie, found by pid and start time although its environ is empty.
    within(Duration::from_secs(5), "the zombie is found", || {
        tracker
            .leftovers()
            .iter()
            .any(|(p, s)| *p == pid && s.state == 'Z')
    });
    child.wait().unwrap();
    assert!(tracker.leftovers().is_empty(), "{:?}", tracker.leftovers());
}
