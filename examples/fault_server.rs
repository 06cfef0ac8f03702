//! `fault_server`: a stdio MCP server with fault-injection knobs.
//!
//! Integration tests of Revka's MCP client and supervisor spawn this binary to
//! provoke what misbehaving real-world servers do: crash mid-call, answer the
//! handshake slowly or with an unsupported protocol version, print garbage,
//! oversized or non-UTF-8 lines on stdout, flood stderr, shrug off SIGTERM,
//! leak grandchild processes, send server→client requests, refuse `ping`, flood
//! log messages, and stop reading stdin while staying alive (a hung server).
//!
//! Protocol: newline-delimited JSON-RPC 2.0 on stdin/stdout; logs go to stderr
//! only. Knobs are CLI flags, or `FAULT_<FLAG_IN_UPPER_SNAKE>` environment
//! variables (flags win). See `examples/README.md` for every knob and tool.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{self, Command, Stdio};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::Duration;

use serde_json::{Map, Value, json};

const SUPPORTED_VERSIONS: &[&str] = &["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"];
const LATEST_VERSION: &str = "2025-11-25";

/// The non-JSON line written by `--garbage-stdout` and the `garbage` tool.
const GARBAGE_LINE: &str = "this is not json";
/// How long a tool waits for the client to answer a server→client request.
const CLIENT_REPLY_TIMEOUT: Duration = Duration::from_secs(30);
/// Prefix of the opaque `tools/list` pagination cursor.
const CURSOR_PREFIX: &str = "fault-cursor-";

// JSON-RPC 2.0 error codes.
const PARSE_ERROR: i64 = -32700;
const INVALID_REQUEST: i64 = -32600;
const METHOD_NOT_FOUND: i64 = -32601;
const INVALID_PARAMS: i64 = -32602;

const USAGE: &str = "usage: fault_server [--crash-after N] [--exit-code C] [--exit-on-start C]
    [--exit-after MS] [--slow-init MS] [--slow-exit MS] [--protocol-version V] [--instructions TEXT]
    [--tools N] [--page-size M] [--garbage-stdout] [--ignore-sigterm] [--fork-grandchild PIDFILE]
    [--pid-file PATH] [--record PATH] [--flood-stderr BYTES] [--refuse-ping] [--logging]
Every flag can also be set as env var FAULT_<FLAG_IN_UPPER_SNAKE>; flags win.";

// ---------------------------------------------------------------------------
// Knobs
// ---------------------------------------------------------------------------

/// Every knob as (flag name, takes a value). Boolean knobs take none.
const KNOB_FLAGS: &[(&str, bool)] = &[
    ("crash-after", true),
    ("exit-code", true),
    ("exit-on-start", true),
    ("exit-after", true),
    ("slow-init", true),
    ("slow-exit", true),
    ("protocol-version", true),
    ("instructions", true),
    ("tools", true),
    ("page-size", true),
    ("garbage-stdout", false),
    ("ignore-sigterm", false),
    ("fork-grandchild", true),
    ("pid-file", true),
    ("record", true),
    ("flood-stderr", true),
    ("refuse-ping", false),
    ("logging", false),
];

/// The fault-injection configuration, fixed at start.
#[derive(Debug)]
struct Knobs {
    /// Successful `tools/call` responses before the next call crashes the process.
    crash_after: Option<u64>,
    /// Exit code used by `crash_after`.
    exit_code: i32,
    /// Exit with this code before reading anything.
    exit_on_start: Option<i32>,
    /// Exit with `exit_code` this many ms after start, whatever is going on.
    exit_after_ms: Option<u64>,
    /// Delay before answering `initialize`.
    slow_init_ms: u64,
    /// Delay between stdin closing and exiting: a server that takes its time to stop (with
    /// `ignore_sigterm`, only SIGKILL cuts it short).
    slow_exit_ms: u64,
    /// Answer `initialize` with exactly this version instead of negotiating.
    protocol_version: Option<String>,
    /// `instructions` field of the `initialize` result.
    instructions: Option<String>,
    /// Number of extra echo tools `tool_000`, `tool_001`, ….
    tools: u64,
    /// Page size of `tools/list`; 0 disables pagination.
    page_size: usize,
    /// Write a non-JSON line before every message on stdout.
    garbage_stdout: bool,
    /// Block SIGTERM so only SIGKILL ends the process.
    ignore_sigterm: bool,
    /// Spawn a `sleep` grandchild at start and write its pid here.
    fork_grandchild: Option<PathBuf>,
    /// Write our own pid here at start.
    pid_file: Option<PathBuf>,
    /// Append every received line here.
    record: Option<PathBuf>,
    /// Bytes of stderr lines written at start.
    flood_stderr: u64,
    /// Answer `ping` with -32601 (method not found), like a server without it.
    refuse_ping: bool,
    /// Declare the `logging` capability and answer `logging/setLevel` (which `--record` shows).
    logging: bool,
}

impl Knobs {
    /// Reads the knobs from `FAULT_*` env vars, overridden by CLI flags.
    fn from_env_and_args() -> Result<Self, String> {
        let settings = raw_settings(std::env::args().skip(1))?;
        Self::from_settings(&settings)
    }

    fn from_settings(s: &HashMap<&str, String>) -> Result<Self, String> {
        Ok(Knobs {
            crash_after: number(s, "crash-after")?,
            exit_code: number(s, "exit-code")?.unwrap_or(1),
            exit_on_start: number(s, "exit-on-start")?,
            exit_after_ms: number(s, "exit-after")?,
            slow_init_ms: number(s, "slow-init")?.unwrap_or(0),
            slow_exit_ms: number(s, "slow-exit")?.unwrap_or(0),
            protocol_version: s.get("protocol-version").cloned(),
            instructions: s.get("instructions").cloned(),
            tools: number(s, "tools")?.unwrap_or(0),
            page_size: number(s, "page-size")?.unwrap_or(0),
            garbage_stdout: boolean(s, "garbage-stdout")?,
            ignore_sigterm: boolean(s, "ignore-sigterm")?,
            fork_grandchild: s.get("fork-grandchild").map(PathBuf::from),
            pid_file: s.get("pid-file").map(PathBuf::from),
            record: s.get("record").map(PathBuf::from),
            flood_stderr: number(s, "flood-stderr")?.unwrap_or(0),
            refuse_ping: boolean(s, "refuse-ping")?,
            logging: boolean(s, "logging")?,
        })
    }
}

/// `crash-after` → `FAULT_CRASH_AFTER`.
fn env_name(flag: &str) -> String {
    format!("FAULT_{}", flag.to_uppercase().replace('-', "_"))
}

/// Collects raw knob values: env vars first, then CLI flags, so flags win.
/// Accepts `--flag value` and `--flag=value`.
fn raw_settings(
    mut args: impl Iterator<Item = String>,
) -> Result<HashMap<&'static str, String>, String> {
    let mut settings = HashMap::new();
    for &(flag, _) in KNOB_FLAGS {
        if let Ok(value) = std::env::var(env_name(flag)) {
            settings.insert(flag, value);
        }
    }
    while let Some(arg) = args.next() {
        if arg == "--help" || arg == "-h" {
            eprintln!("{USAGE}");
            process::exit(0);
        }
        let Some(body) = arg.strip_prefix("--") else {
            return Err(format!("unexpected argument {arg:?}"));
        };
        let (name, inline) = match body.split_once('=') {
            Some((name, value)) => (name, Some(value.to_owned())),
            None => (body, None),
        };
        let &(flag, takes_value) = KNOB_FLAGS
            .iter()
            .find(|(flag, _)| *flag == name)
            .ok_or_else(|| format!("unknown flag --{name}"))?;
        let value = match (inline, takes_value) {
            (Some(value), _) => value,
            (None, true) => args
                .next()
                .ok_or_else(|| format!("--{flag} needs a value"))?,
            (None, false) => "true".to_owned(),
        };
        settings.insert(flag, value);
    }
    Ok(settings)
}

fn number<T: FromStr>(s: &HashMap<&str, String>, name: &str) -> Result<Option<T>, String> {
    s.get(name)
        .map(|v| {
            v.trim()
                .parse()
                .map_err(|_| format!("--{name}: not a number: {v:?}"))
        })
        .transpose()
}

fn boolean(s: &HashMap<&str, String>, name: &str) -> Result<bool, String> {
    match s
        .get(name)
        .map(|v| v.trim().to_ascii_lowercase())
        .as_deref()
    {
        None | Some("0" | "false" | "no" | "off") => Ok(false),
        Some("" | "1" | "true" | "yes" | "on") => Ok(true),
        Some(other) => Err(format!("--{name}: not a boolean: {other:?}")),
    }
}

// ---------------------------------------------------------------------------
// Startup faults
// ---------------------------------------------------------------------------

fn main() {
    let knobs = Knobs::from_env_and_args().unwrap_or_else(|e| fail(&format!("{e}\n{USAGE}")));
    if knobs.ignore_sigterm {
        // First, so SIGTERM cannot kill us at any point after start.
        ignore_sigterm();
    }
    if let Some(code) = knobs.exit_on_start {
        log(&format!("--exit-on-start: exiting with code {code}"));
        process::exit(code);
    }
    if let Some(path) = &knobs.pid_file {
        write_pid(path, process::id());
    }
    if knobs.flood_stderr > 0 {
        flood_stderr(knobs.flood_stderr);
    }
    if let Some(path) = &knobs.fork_grandchild {
        let pid = spawn_sleeper().unwrap_or_else(|e| fail(&format!("spawn grandchild: {e}")));
        write_pid(path, pid);
    }
    if let Some(ms) = knobs.exit_after_ms {
        let code = knobs.exit_code;
        thread::spawn(move || {
            thread::sleep(Duration::from_millis(ms));
            log(&format!("--exit-after {ms}: exiting with code {code}"));
            process::exit(code);
        });
    }
    let slow_exit = Duration::from_millis(knobs.slow_exit_ms);
    let server = Arc::new(Server::new(knobs));
    server.serve();
    if !slow_exit.is_zero() {
        log(&format!(
            "stdin closed; exiting in {} ms (--slow-exit)",
            slow_exit.as_millis()
        ));
        thread::sleep(slow_exit);
    }
    log("stdin closed; exiting");
}

/// Logs to stderr; stdout is reserved for protocol messages.
fn log(message: &str) {
    eprintln!("fault_server: {message}");
}

fn fail(message: &str) -> ! {
    log(message);
    process::exit(2);
}

/// Catches SIGTERM with a handler that only logs, so the default action
/// (terminate) never runs. A handler rather than a blocked mask or `SIG_IGN`:
/// both of those are inherited by spawned children, while handlers reset to
/// the default on exec, so grandchildren still die on SIGTERM. Tokio installs
/// the handler without unsafe code; it stays for the life of the process.
fn ignore_sigterm() {
    use tokio::signal::unix::{SignalKind, signal};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build();
    let runtime = runtime.unwrap_or_else(|e| fail(&format!("tokio runtime: {e}")));
    let mut sigterm = {
        let _context = runtime.enter();
        signal(SignalKind::terminate()).unwrap_or_else(|e| fail(&format!("catch SIGTERM: {e}")))
    };
    thread::spawn(move || {
        runtime.block_on(async {
            while sigterm.recv().await.is_some() {
                log("received SIGTERM; ignoring it (--ignore-sigterm)");
            }
        });
    });
}

fn write_pid(path: &Path, pid: u32) {
    if let Err(e) = std::fs::write(path, format!("{pid}\n")) {
        fail(&format!("write pid to {}: {e}", path.display()));
    }
}

/// Spawns `sleep 10000` in our process group (not detached), so tests can
/// check that the supervisor kills whole groups. A thread reaps it if it dies
/// while we live, so it does not linger as a zombie.
fn spawn_sleeper() -> io::Result<u32> {
    let mut child = Command::new("sleep")
        .arg("10000")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let pid = child.id();
    thread::spawn(move || child.wait());
    Ok(pid)
}

/// Writes exactly `bytes` bytes of numbered lines to stderr, as fast as
/// possible (a full pipe blocks us, which is what the tests want to provoke).
fn flood_stderr(bytes: u64) {
    let mut err = BufWriter::with_capacity(64 * 1024, io::stderr().lock());
    let mut remaining = usize::try_from(bytes).unwrap_or(usize::MAX);
    let mut n: u64 = 0;
    while remaining > 0 {
        let line = format!("flood line {n:08} {}\n", "x".repeat(60));
        let take = line.len().min(remaining);
        // A shortened last line still ends with a newline.
        let written = err
            .write_all(&line.as_bytes()[..take - 1])
            .and_then(|()| err.write_all(b"\n"));
        if written.is_err() {
            return;
        }
        remaining -= take;
        n += 1;
    }
    let _ = err.flush();
}

// ---------------------------------------------------------------------------
// Server: message loop and stdout writer
// ---------------------------------------------------------------------------

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

struct Server {
    knobs: Knobs,
    /// The only way to stdout, so lines from concurrent call threads never interleave.
    stdout: Mutex<io::Stdout>,
    /// `--record` file, written by the reader thread only (`&File` is `Write`).
    record: Option<File>,
    /// Names of the extra echo tools (`--tools`, replaced by `set_tools`).
    extra_tools: Mutex<Vec<String>>,
    /// Successful `tools/call` responses so far, for `--crash-after`.
    completed_calls: AtomicU64,
    /// In-flight `tools/call`s by the JSON text of their id; a send cancels.
    in_flight: Mutex<HashMap<String, Sender<()>>>,
    /// Server→client requests awaiting the client's response, by id.
    pending: Mutex<HashMap<String, Sender<Value>>>,
    next_request_id: AtomicU64,
}

impl Server {
    fn new(knobs: Knobs) -> Self {
        let record = knobs.record.as_deref().map(|path| {
            let file = OpenOptions::new().create(true).append(true).open(path);
            file.unwrap_or_else(|e| fail(&format!("open {}: {e}", path.display())))
        });
        let extra_tools = Mutex::new(tool_names("tool", knobs.tools));
        Server {
            knobs,
            stdout: Mutex::new(io::stdout()),
            record,
            extra_tools,
            completed_calls: AtomicU64::new(0),
            in_flight: Mutex::new(HashMap::new()),
            pending: Mutex::new(HashMap::new()),
            next_request_id: AtomicU64::new(1),
        }
    }

    /// Reads stdin line by line until EOF. Lines are bytes, not `String`s, so
    /// invalid UTF-8 becomes a parse error instead of killing the loop.
    fn serve(self: &Arc<Self>) {
        let mut input = io::stdin().lock();
        let mut line = Vec::new();
        loop {
            line.clear();
            match input.read_until(b'\n', &mut line) {
                Ok(0) => return,
                Ok(_) => self.handle_line(trim_line_end(&line)),
                Err(e) => return log(&format!("read stdin: {e}")),
            }
        }
    }

    fn handle_line(self: &Arc<Self>, line: &[u8]) {
        if line.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        self.record(line);
        match serde_json::from_slice(line) {
            Ok(Value::Object(message)) => self.handle_message(message),
            Ok(_) => self.respond_error(Value::Null, INVALID_REQUEST, "not a JSON-RPC object"),
            Err(e) => self.respond_error(Value::Null, PARSE_ERROR, &format!("parse error: {e}")),
        }
    }

    /// Appends the line exactly as received; flushed at once (a `File` is
    /// unbuffered) so tests can read it while we run.
    fn record(&self, line: &[u8]) {
        if let Some(mut file) = self.record.as_ref()
            && let Err(e) = file.write_all(line).and_then(|()| file.write_all(b"\n"))
        {
            log(&format!("record: {e}"));
        }
    }

    fn handle_message(self: &Arc<Self>, mut message: Map<String, Value>) {
        let id = message.remove("id");
        let params = message.remove("params").unwrap_or(Value::Null);
        let method = match message.get("method") {
            None => None,
            Some(Value::String(method)) => Some(method.clone()),
            Some(_) => {
                let id = id.unwrap_or(Value::Null);
                return self.respond_error(id, INVALID_REQUEST, "method must be a string");
            }
        };
        match (method, id) {
            (Some(method), Some(id)) => self.handle_request(&method, id, &params),
            (Some(method), None) => self.handle_notification(&method, &params),
            (None, Some(id)) => self.route_client_response(&id, message),
            (None, None) => self.respond_error(Value::Null, INVALID_REQUEST, "no method and no id"),
        }
    }

    fn handle_request(self: &Arc<Self>, method: &str, id: Value, params: &Value) {
        match method {
            "initialize" => self.initialize(id, params),
            "ping" if self.knobs.refuse_ping => {
                self.respond_error(id, METHOD_NOT_FOUND, "method not found: ping")
            }
            "ping" => self.respond(id, json!({})),
            "logging/setLevel" if self.knobs.logging => self.respond(id, json!({})),
            "tools/list" => self.list_tools(id, params),
            "tools/call" => self.start_call(id, params),
            other => {
                self.respond_error(id, METHOD_NOT_FOUND, &format!("method not found: {other}"))
            }
        }
    }

    fn handle_notification(&self, method: &str, params: &Value) {
        match method {
            "notifications/cancelled" => self.cancel(params),
            "notifications/initialized" => log("client initialized"),
            other => log(&format!("ignoring notification {other}")),
        }
    }

    // --- writing -----------------------------------------------------------

    /// Writes one protocol message (preceded by garbage under `--garbage-stdout`).
    fn send(&self, message: &Value) {
        self.send_line(&serde_json::to_vec(message).expect("a Value always serializes"));
    }

    fn send_line(&self, line: &[u8]) {
        let mut out = lock(&self.stdout);
        if self.knobs.garbage_stdout {
            let _ = writeln!(out, "{GARBAGE_LINE}");
        }
        // A write error means the client closed our stdout; stdin EOF follows.
        let _ = out.write_all(line).and_then(|()| out.write_all(b"\n"));
        let _ = out.flush();
    }

    /// Writes a line as-is, bypassing `--garbage-stdout` (used by fault tools).
    fn write_raw_line(&self, line: &[u8]) {
        let mut out = lock(&self.stdout);
        let _ = out.write_all(line).and_then(|()| out.write_all(b"\n"));
        let _ = out.flush();
    }

    fn respond(&self, id: Value, result: Value) {
        self.send(&json!({"jsonrpc": "2.0", "id": id, "result": result}));
    }

    fn respond_error(&self, id: Value, code: i64, message: &str) {
        let error = json!({"code": code, "message": message});
        self.send(&json!({"jsonrpc": "2.0", "id": id, "error": error}));
    }

    fn notify(&self, method: &str, params: Value) {
        let mut message = json!({"jsonrpc": "2.0", "method": method});
        if !params.is_null() {
            message["params"] = params;
        }
        self.send(&message);
    }

    // --- initialize and tools/list ------------------------------------------

    fn initialize(&self, id: Value, params: &Value) {
        thread::sleep(Duration::from_millis(self.knobs.slow_init_ms));
        let requested = params.get("protocolVersion").and_then(Value::as_str);
        let version = match &self.knobs.protocol_version {
            Some(forced) => forced.as_str(),
            None => negotiate_version(requested),
        };
        let mut result = json!({
            "protocolVersion": version,
            "capabilities": {"tools": {"listChanged": true}},
            "serverInfo": {"name": "fault_server", "version": env!("CARGO_PKG_VERSION")},
        });
        if self.knobs.logging {
            result["capabilities"]["logging"] = json!({});
        }
        if let Some(instructions) = &self.knobs.instructions {
            result["instructions"] = json!(instructions);
        }
        self.respond(id, result);
    }

    fn list_tools(&self, id: Value, params: &Value) {
        let mut tools = builtin_tools();
        tools.extend(lock(&self.extra_tools).iter().map(|name| extra_tool(name)));
        match paginate(tools, params.get("cursor"), self.knobs.page_size) {
            Ok(result) => self.respond(id, result),
            Err(message) => self.respond_error(id, INVALID_PARAMS, &message),
        }
    }

    // --- tools/call -----------------------------------------------------------

    /// Runs on the reader thread: applies `--crash-after`, registers the call
    /// for cancellation (before any cancel can be read), then runs the tool
    /// on its own thread so slow tools do not block other messages.
    fn start_call(self: &Arc<Self>, id: Value, params: &Value) {
        if let Some(limit) = self.knobs.crash_after
            && self.completed_calls.load(Ordering::SeqCst) >= limit
        {
            log(&format!("--crash-after {limit}: crashing mid-call"));
            process::exit(self.knobs.exit_code);
        }
        let call = match Call::parse(id.clone(), params) {
            Ok(call) => call,
            Err(message) => return self.respond_error(id, INVALID_PARAMS, &message),
        };
        if call.name == "hang_stdin" {
            // On this thread, the only one reading stdin: nothing is read meanwhile.
            return self.hang_stdin(&call);
        }
        let (cancel, cancelled) = mpsc::channel();
        lock(&self.in_flight).insert(call.id.to_string(), cancel);
        let server = Arc::clone(self);
        thread::spawn(move || server.finish_call(call, &cancelled));
    }

    fn finish_call(&self, call: Call, cancelled: &Receiver<()>) {
        if call.name == "flood_logs" {
            lock(&self.in_flight).remove(&call.id.to_string());
            return self.flood_logs(call);
        }
        let reply = self.run_tool(&call, cancelled);
        lock(&self.in_flight).remove(&call.id.to_string());
        match reply {
            Reply::Result(result) => {
                self.count_success();
                self.respond(call.id, result);
            }
            Reply::Line(line) => {
                self.count_success();
                self.send_line(&line);
            }
            Reply::Error(code, message) => self.respond_error(call.id, code, &message),
            Reply::Silent => {}
        }
    }

    /// Counted before the response is written: once a client sees the
    /// response, its next call must already observe the new count.
    fn count_success(&self) {
        self.completed_calls.fetch_add(1, Ordering::SeqCst);
    }

    fn cancel(&self, params: &Value) {
        let Some(request_id) = params.get("requestId") else {
            return log("notifications/cancelled without requestId");
        };
        match lock(&self.in_flight).remove(&request_id.to_string()) {
            Some(cancel) => {
                let _ = cancel.send(());
            }
            None => log(&format!("cancel for unknown request {request_id}")),
        }
    }

    fn run_tool(&self, call: &Call, cancelled: &Receiver<()>) -> Reply {
        let args = &call.args;
        let outcome = match call.name.as_str() {
            "echo" => Ok(echo(args)),
            "add" => add(args),
            "typed" => Ok(typed(args)),
            "sleep" => sleep_tool(args),
            "slow_echo" => slow_echo(args),
            "hang" => Ok(hang(&call.id, cancelled)),
            "progress" => self.progress(call),
            "crash" => crash(args),
            "garbage" => Ok(self.garbage()),
            "oversized" => oversized(call),
            "invalid_utf8" => Ok(self.invalid_utf8()),
            "flood_stderr" => flood_stderr_tool(args),
            "set_tools" => self.set_tools(args),
            "spawn_grandchild" => spawn_grandchild_tool(),
            "roots" => self.ask_client("roots/list", json!({})),
            "sample" => self.ask_client("sampling/createMessage", sample_params()),
            "elicit" => self.ask_client("elicitation/create", elicit_params()),
            "ping_client" => self.ask_client("ping", Value::Null),
            name if lock(&self.extra_tools).iter().any(|t| t == name) => Ok(echo(args)),
            unknown => Ok(unknown_tool(unknown)),
        };
        // Bad arguments are a tool-level error (`isError: true`), not a JSON-RPC one.
        outcome.unwrap_or_else(|message| Reply::Result(tool_result(&message, true)))
    }

    // --- tools that need the server ----------------------------------------------

    fn progress(&self, call: &Call) -> Result<Reply, String> {
        let steps = u64_arg(&call.args, "steps", Some(5))?;
        let interval = Duration::from_millis(u64_arg(&call.args, "interval_ms", Some(10))?);
        let stamp = match call.args.get("stamp") {
            None => false,
            Some(value) => value
                .as_bool()
                .ok_or_else(|| format!("stamp must be a boolean, got {value}"))?,
        };
        for i in 1..=steps {
            thread::sleep(interval);
            // The token is echoed as the same JSON value (number stays number).
            if let Some(token) = &call.progress_token {
                // With `stamp`, the message says when it was sent (Unix µs), so that a reader
                // on the same machine can tell how long the notification took to reach it.
                let message = if stamp {
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap_or_default();
                    format!("step {i} at {}", now.as_micros())
                } else {
                    format!("step {i}")
                };
                let params = json!({
                    "progressToken": token, "progress": i, "total": steps,
                    "message": message,
                });
                self.notify("notifications/progress", params);
            }
        }
        Ok(text("done"))
    }

    /// Stops reading stdin while staying alive (a deadlocked or wedged server): requests,
    /// pings and cancellations pile up unread. With `progress_ms`, sends progress for this
    /// call meanwhile (when it has a token); with `ms`, answers after that long and reads
    /// again, else never.
    fn hang_stdin(&self, call: &Call) {
        let (ms, progress_ms) = match hang_stdin_args(&call.args) {
            Ok(args) => args,
            Err(message) => return self.respond(call.id.clone(), tool_result(&message, true)),
        };
        log(&format!(
            "hang_stdin: not reading stdin (ms {ms:?}, progress_ms {progress_ms})"
        ));
        let start = std::time::Instant::now();
        let until = ms.map(|ms| start + Duration::from_millis(ms));
        let step = match progress_ms {
            0 => Duration::from_secs(3600),
            ms => Duration::from_millis(ms),
        };
        let mut sent = 0u64;
        loop {
            let now = std::time::Instant::now();
            if until.is_some_and(|until| now >= until) {
                break;
            }
            thread::sleep(until.map_or(step, |until| step.min(until - now)));
            if let (Some(token), true) = (&call.progress_token, progress_ms > 0) {
                sent += 1;
                let params = json!({"progressToken": token, "progress": sent,
                    "message": format!("still busy, not reading stdin ({sent})")});
                self.notify("notifications/progress", params);
            }
        }
        self.count_success();
        let took = start.elapsed().as_millis();
        self.respond(
            call.id.clone(),
            tool_result(&format!("read stdin again after {took} ms"), false),
        );
    }

    fn garbage(&self) -> Reply {
        self.write_raw_line(GARBAGE_LINE.as_bytes());
        text("wrote a garbage line")
    }

    fn invalid_utf8(&self) -> Reply {
        self.write_raw_line(b"invalid utf-8: \xff\xfe\xc3\x28 end");
        text("wrote an invalid UTF-8 line")
    }

    fn set_tools(&self, args: &Value) -> Result<Reply, String> {
        let count = u64_arg(args, "count", None)?;
        *lock(&self.extra_tools) = tool_names("dyn", count);
        self.notify("notifications/tools/list_changed", Value::Null);
        Ok(text(&format!("now {count} dynamic tools")))
    }

    /// Answers first, then sends `count` log messages (`notifications/message` at `level`,
    /// numbered in `data`) as fast as stdout takes them: once the answer is out they relate
    /// to no call, as a server's own background logging does.
    fn flood_logs(&self, call: Call) {
        let args = flood_logs_args(&call.args);
        let (count, level) = match args {
            Ok(args) => args,
            Err(message) => return self.respond(call.id, tool_result(&message, true)),
        };
        self.count_success();
        let answer = format!("flooding {count} log messages at {level}");
        self.respond(call.id, tool_result(&answer, false));
        for i in 0..count {
            let params =
                json!({"level": level, "logger": "fault_server", "data": format!("flood {i}")});
            self.notify("notifications/message", params);
        }
    }

    /// Sends a server→client request and answers with the JSON of the
    /// client's `result` (or `error`). The reader thread routes the response.
    fn ask_client(&self, method: &str, params: Value) -> Result<Reply, String> {
        let n = self.next_request_id.fetch_add(1, Ordering::Relaxed);
        let id = format!("srv-{n}");
        let (tx, rx) = mpsc::channel();
        lock(&self.pending).insert(id.clone(), tx);
        let mut request = json!({"jsonrpc": "2.0", "id": id, "method": method});
        if !params.is_null() {
            request["params"] = params;
        }
        self.send(&request);
        let response = rx.recv_timeout(CLIENT_REPLY_TIMEOUT);
        lock(&self.pending).remove(&id);
        let response = response.map_err(|_| format!("client did not answer {method}"))?;
        let payload = response.get("result").or_else(|| response.get("error"));
        Ok(text(&payload.unwrap_or(&Value::Null).to_string()))
    }

    fn route_client_response(&self, id: &Value, response: Map<String, Value>) {
        let key = id.as_str().map_or_else(|| id.to_string(), str::to_owned);
        match lock(&self.pending).remove(&key) {
            Some(waiter) => {
                let _ = waiter.send(Value::Object(response));
            }
            None => log(&format!("response to unknown request {id}")),
        }
    }
}

fn trim_line_end(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn negotiate_version(requested: Option<&str>) -> &str {
    match requested {
        Some(v) if SUPPORTED_VERSIONS.contains(&v) => v,
        _ => LATEST_VERSION,
    }
}

// ---------------------------------------------------------------------------
// Tool catalog and pagination
// ---------------------------------------------------------------------------

/// The built-in tools as (name, description, JSON of the schema's
/// `properties`, required arguments). All `inputSchema`s are objects.
#[rustfmt::skip]
const BUILTIN_TOOLS: &[(&str, &str, &str, &[&str])] = &[
    ("echo", "Returns the JSON of its arguments.", r#"{"text": {"type": "string"}}"#, &[]),
    ("add", "Returns a + b; strictly integers, else isError.",
        r#"{"a": {"type": "integer"}, "b": {"type": "integer"}}"#, &["a", "b"]),
    ("typed", "Returns the JSON of its arguments; isError if any type is wrong.",
        r#"{"n": {"type": "integer"}, "f": {"type": "number"}, "flag": {"type": "boolean"},
            "list": {"type": "array", "items": {"type": "integer"}}, "obj": {"type": "object"},
            "maybe": {"type": ["integer", "null"]}}"#, &[]),
    ("sleep", "Sleeps ms milliseconds, then answers.", r#"{"ms": {"type": "integer"}}"#, &["ms"]),
    ("hang", "Never answers; stops when cancelled.", "{}", &[]),
    ("hang_stdin", "Stops reading stdin (for ms, else for good), with progress every progress_ms.",
        r#"{"ms": {"type": "integer"}, "progress_ms": {"type": "integer"}}"#, &[]),
    ("progress", "Sends progress notifications when given a progressToken, then answers done; with stamp, each message ends with `at <Unix µs>`.",
        r#"{"steps": {"type": "integer"}, "interval_ms": {"type": "integer"}, "stamp": {"type": "boolean"}}"#, &[]),
    ("crash", "Exits at once with code (default 1), without answering.",
        r#"{"code": {"type": "integer"}}"#, &[]),
    ("garbage", "Writes a non-JSON line to stdout, then answers.", "{}", &[]),
    ("oversized", "Answers with a single stdout line of exactly `bytes` bytes.",
        r#"{"bytes": {"type": "integer"}}"#, &["bytes"]),
    ("invalid_utf8", "Writes a line of invalid UTF-8 to stdout, then answers.", "{}", &[]),
    ("flood_stderr", "Writes `bytes` bytes to stderr, then answers.",
        r#"{"bytes": {"type": "integer"}}"#, &["bytes"]),
    ("set_tools", "Replaces the extra tools by dyn_000…, sends tools/list_changed.",
        r#"{"count": {"type": "integer"}}"#, &["count"]),
    ("spawn_grandchild", "Spawns `sleep 10000` in our process group; answers its pid.", "{}", &[]),
    ("roots", "Sends roots/list to the client; answers the JSON of its reply.", "{}", &[]),
    ("sample", "Sends sampling/createMessage to the client; answers its reply.", "{}", &[]),
    ("elicit", "Sends elicitation/create to the client; answers its reply.", "{}", &[]),
    ("ping_client", "Sends ping to the client; answers the JSON of its reply.", "{}", &[]),
    ("slow_echo", "Sleeps ms milliseconds, then answers text.",
        r#"{"text": {"type": "string"}, "ms": {"type": "integer"}}"#, &["text", "ms"]),
    ("flood_logs", "Answers, then sends count (default 1000) log messages at level (default info) as fast as it can.",
        r#"{"count": {"type": "integer"}, "level": {"type": "string"}}"#, &[]),
];

fn tool(name: &str, description: &str, properties: Value, required: &[&str]) -> Value {
    let mut schema = json!({"type": "object", "properties": properties, "required": required});
    if name == "typed" {
        // Strict, so tests can tell whether a client passes stray arguments.
        schema["additionalProperties"] = json!(false);
    }
    json!({"name": name, "description": description, "inputSchema": schema})
}

fn builtin_tools() -> Vec<Value> {
    let parse = |json: &str| serde_json::from_str(json).expect("BUILTIN_TOOLS holds valid JSON");
    let spec = |&(name, description, properties, required): &(&str, &str, &str, &[&str])| {
        tool(name, description, parse(properties), required)
    };
    BUILTIN_TOOLS.iter().map(spec).collect()
}

fn extra_tool(name: &str) -> Value {
    let properties = json!({"text": {"type": "string"}});
    tool(
        name,
        "Extra tool; returns the JSON of its arguments.",
        properties,
        &[],
    )
}

/// `tool_000`, `tool_001`, … (or `dyn_…`).
fn tool_names(prefix: &str, count: u64) -> Vec<String> {
    (0..count).map(|i| format!("{prefix}_{i:03}")).collect()
}

/// Slices `tools` into the page starting at `cursor`. Cursors are opaque to
/// clients; we validate them strictly so tests can check error handling.
fn paginate(tools: Vec<Value>, cursor: Option<&Value>, page_size: usize) -> Result<Value, String> {
    let start = match cursor {
        None | Some(Value::Null) => 0,
        Some(cursor) => decode_cursor(cursor, tools.len(), page_size)?,
    };
    if page_size == 0 {
        return Ok(json!({"tools": tools}));
    }
    let end = (start + page_size).min(tools.len());
    let mut result = json!({"tools": &tools[start..end]});
    if end < tools.len() {
        result["nextCursor"] = json!(format!("{CURSOR_PREFIX}{end}"));
    }
    Ok(result)
}

fn decode_cursor(cursor: &Value, total: usize, page_size: usize) -> Result<usize, String> {
    let offset = cursor
        .as_str()
        .and_then(|c| c.strip_prefix(CURSOR_PREFIX))
        .and_then(|n| n.parse::<usize>().ok())
        .filter(|&n| page_size > 0 && n > 0 && n < total && n % page_size == 0);
    offset.ok_or_else(|| format!("invalid cursor: {cursor}"))
}

// ---------------------------------------------------------------------------
// Tool calls
// ---------------------------------------------------------------------------

/// One parsed `tools/call` request.
struct Call {
    id: Value,
    name: String,
    /// Always an object (`{}` when absent).
    args: Value,
    /// `params._meta.progressToken`, kept as the exact JSON value.
    progress_token: Option<Value>,
}

impl Call {
    fn parse(id: Value, params: &Value) -> Result<Self, String> {
        let name = params
            .get("name")
            .and_then(Value::as_str)
            .ok_or("missing tool name")?;
        let args = match params.get("arguments") {
            None | Some(Value::Null) => json!({}),
            Some(args @ Value::Object(_)) => args.clone(),
            Some(_) => return Err("arguments must be an object".into()),
        };
        let progress_token = params.pointer("/_meta/progressToken").cloned();
        Ok(Call {
            id,
            name: name.to_owned(),
            args,
            progress_token,
        })
    }
}

/// What a tool produced.
enum Reply {
    /// A successful response with this `result`.
    Result(Value),
    /// A complete, already-serialized response line.
    Line(Vec<u8>),
    /// A JSON-RPC error response.
    Error(i64, String),
    /// No response at all (cancelled `hang`).
    Silent,
}

/// Unknown tools are a JSON-RPC error, unlike bad arguments.
fn unknown_tool(name: &str) -> Reply {
    Reply::Error(INVALID_PARAMS, format!("unknown tool: {name}"))
}

fn tool_result(text: &str, is_error: bool) -> Value {
    json!({"content": [{"type": "text", "text": text}], "isError": is_error})
}

fn text(text: &str) -> Reply {
    Reply::Result(tool_result(text, false))
}

/// An integer argument ≥ 0; `default` applies when it is absent.
fn u64_arg(args: &Value, key: &str, default: Option<u64>) -> Result<u64, String> {
    match (args.get(key), default) {
        (None, Some(default)) => Ok(default),
        (None, None) => Err(format!("missing argument {key}")),
        (Some(value), _) => value
            .as_u64()
            .ok_or_else(|| format!("{key} must be a non-negative integer, got {value}")),
    }
}

fn echo(args: &Value) -> Reply {
    text(&args.to_string())
}

/// Strict on purpose: `"2"` or `2.0` is an error, so tests can tell whether
/// the client coerced arguments to the schema's types.
fn add(args: &Value) -> Result<Reply, String> {
    let operand = |key: &str| match args.get(key) {
        Some(value) => value
            .as_i64()
            .ok_or_else(|| format!("{key} must be an integer, got {value}")),
        None => Err(format!("missing argument {key}")),
    };
    let sum = operand("a")?.checked_add(operand("b")?).ok_or("overflow")?;
    Ok(text(&sum.to_string()))
}

/// Returns the JSON of its arguments; `isError: true` plus a second content
/// item listing the problems if any argument has the wrong type.
fn typed(args: &Value) -> Reply {
    let problems = typed_problems(args);
    let mut content = vec![json!({"type": "text", "text": args.to_string()})];
    if !problems.is_empty() {
        content.push(json!({"type": "text", "text": problems.join("; ")}));
    }
    Reply::Result(json!({"content": content, "isError": !problems.is_empty()}))
}

fn typed_problems(args: &Value) -> Vec<String> {
    type Check = fn(&Value) -> bool;
    const CHECKS: &[(&str, Check, &str)] = &[
        ("n", is_integer, "an integer"),
        ("f", Value::is_number, "a number"),
        ("flag", Value::is_boolean, "a boolean"),
        ("list", is_integer_array, "an array of integers"),
        ("obj", Value::is_object, "an object"),
        ("maybe", is_integer_or_null, "an integer or null"),
    ];
    let Some(args) = args.as_object() else {
        return vec!["arguments must be an object".into()];
    };
    args.iter()
        .filter_map(
            |(key, value)| match CHECKS.iter().find(|(name, ..)| name == key) {
                None => Some(format!("unexpected argument {key}")),
                Some((_, check, _)) if check(value) => None,
                Some((_, _, expected)) => Some(format!("{key} must be {expected}, got {value}")),
            },
        )
        .collect()
}

fn is_integer(value: &Value) -> bool {
    value.is_i64() || value.is_u64()
}

fn is_integer_or_null(value: &Value) -> bool {
    value.is_null() || is_integer(value)
}

fn is_integer_array(value: &Value) -> bool {
    value
        .as_array()
        .is_some_and(|items| items.iter().all(is_integer))
}

fn sleep_tool(args: &Value) -> Result<Reply, String> {
    let ms = u64_arg(args, "ms", None)?;
    thread::sleep(Duration::from_millis(ms));
    Ok(text(&format!("slept {ms} ms")))
}

/// Like `sleep`, but answers with `text` so concurrency tests can tell calls apart.
fn slow_echo(args: &Value) -> Result<Reply, String> {
    let ms = u64_arg(args, "ms", Some(0))?;
    let message = args
        .get("text")
        .and_then(Value::as_str)
        .ok_or("text must be a string")?;
    thread::sleep(Duration::from_millis(ms));
    Ok(text(message))
}

/// Waits for `notifications/cancelled`; never answers. The sender lives in
/// `Server::in_flight`, so `recv` returns only when the call is cancelled.
fn hang(id: &Value, cancelled: &Receiver<()>) -> Reply {
    if cancelled.recv().is_ok() {
        eprintln!("cancelled {id}");
    }
    Reply::Silent
}

/// `hang_stdin`'s `ms` (absent: for good) and `progress_ms` (0: no progress).
fn hang_stdin_args(args: &Value) -> Result<(Option<u64>, u64), String> {
    let ms = match args.get("ms") {
        None => None,
        Some(_) => Some(u64_arg(args, "ms", None)?),
    };
    Ok((ms, u64_arg(args, "progress_ms", Some(0))?))
}

fn crash(args: &Value) -> Result<Reply, String> {
    let code = match args.get("code") {
        None => 1,
        Some(code) => code
            .as_i64()
            .and_then(|c| i32::try_from(c).ok())
            .ok_or("code must be an i32")?,
    };
    log(&format!("crash tool: exiting with code {code}"));
    process::exit(code);
}

/// Pads the text so the response line (without its newline) is exactly
/// `bytes` long, or as short as possible when `bytes` is smaller.
fn oversized(call: &Call) -> Result<Reply, String> {
    let bytes = u64_arg(&call.args, "bytes", None)?;
    let bytes = usize::try_from(bytes).map_err(|_| "bytes too large")?;
    let line = |text: &str| {
        let response = json!({"jsonrpc": "2.0", "id": call.id, "result": tool_result(text, false)});
        serde_json::to_vec(&response).expect("a Value always serializes")
    };
    let padding = bytes.saturating_sub(line("").len());
    Ok(Reply::Line(line(&"x".repeat(padding))))
}

fn flood_stderr_tool(args: &Value) -> Result<Reply, String> {
    let bytes = u64_arg(args, "bytes", None)?;
    flood_stderr(bytes);
    Ok(text(&format!("wrote {bytes} bytes to stderr")))
}

fn spawn_grandchild_tool() -> Result<Reply, String> {
    let pid = spawn_sleeper().map_err(|e| format!("spawn sleep: {e}"))?;
    Ok(text(&pid.to_string()))
}

/// `flood_logs`'s `count` and `level`.
fn flood_logs_args(args: &Value) -> Result<(u64, String), String> {
    let count = u64_arg(args, "count", Some(1000))?;
    let level = match args.get("level") {
        None => "info".to_owned(),
        Some(Value::String(level)) => level.clone(),
        Some(other) => return Err(format!("level must be a string, got {other}")),
    };
    Ok((count, level))
}

fn sample_params() -> Value {
    json!({
        "messages": [{"role": "user", "content": {"type": "text", "text": "Say hello."}}],
        "maxTokens": 16,
    })
}

fn elicit_params() -> Value {
    json!({
        "message": "What is your name?",
        "requestedSchema": {"type": "object", "properties": {"name": {"type": "string"}}},
    })
}
