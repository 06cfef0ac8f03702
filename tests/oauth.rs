//! OAuth 2.1 for remote MCP servers (issue 26), end to end against `examples/oauth_server.py`:
//! an OAuth-protected MCP server (the official Python SDK's `MCPServer` behind bearer auth) with
//! a small authorization server of our own, run on loopback from the test cache's venv.
//!
//! - the fixture itself passes the official SDK client's OAuth flow (`tests/oauth/sdk_client.py`:
//!   login, a call, expiry, refresh with rotation, revocation), so the tests below measure Revka
//!   against a server known to be right;
//! - `revka mcp login` (the browser played by a `$BROWSER` script that follows the authorization
//!   redirect) stores the tokens owner-only; the daemon calls the server with them, refreshes
//!   them past expiry without a person (rotation followed), and no token text reaches its logs,
//!   run log, API or CLI output;
//! - a revoked refresh token turns the server `failed` with the hint "run `revka mcp login
//!   remote`" in `/api/actors` and `/api/health`, without a restart loop, and a new login brings
//!   it back; `revka mcp logout` forgets the tokens;
//! - bad input: a token endpoint answering HTML or hanging, authorization server metadata too
//!   large or malformed, protected resource metadata naming another resource, a callback with a
//!   wrong `state`, each a precise error with nothing stored; a callback hit twice logs in once.
//!
//! Every test skips when the venv is missing (fails under `REVKA_REQUIRE_INTEROP=1`, see
//! [`test_cache`]). Waits are generous; the figures seen are printed, not asserted.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{
    Gateway, Session, TestDaemon, TestHome, next_id, test_cache, try_within, try_within_async,
    venv_bin,
};

/// How long a login that should succeed or fail by itself may take before the test kills it.
const LOGIN: Duration = Duration::from_secs(120);
/// How long a wait for the daemon to reach a state may take.
const SLOW: Duration = Duration::from_secs(120);

// ==== The fixture ====

/// `examples/oauth_server.py` running from the test cache's venv: its URLs (from the JSON line
/// it prints at start) and its admin API. Killed on drop.
struct OAuthFixture {
    child: Child,
    mcp: String,
    admin: String,
    stderr: PathBuf,
    http: reqwest::Client,
}

impl OAuthFixture {
    /// Starts the fixture with `args` (`--access-ttl 2`, a bad-input mode), its stderr in `work`.
    fn start(cache: &Path, work: &Path, args: &[&str]) -> Self {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/oauth_server.py");
        let stderr = work.join("oauth_server.stderr");
        let mut child = Command::new(venv_bin(cache, "python"))
            .arg(&script)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(File::create(&stderr).unwrap())
            .spawn()
            .expect("spawn examples/oauth_server.py");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(Duration::from_secs(60)).unwrap_or_default();
        let Ok(urls) = serde_json::from_str::<Value>(&line) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "oauth_server.py {args:?} printed no start line ({line:?}); stderr:\n{}",
                std::fs::read_to_string(&stderr).unwrap_or_default()
            );
        };
        let fixture = Self {
            child,
            mcp: urls["mcp"].as_str().unwrap().to_owned(),
            admin: urls["admin"].as_str().unwrap().to_owned(),
            stderr,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
        };
        eprintln!(
            "oauth fixture {args:?}: mcp {}, admin {}",
            fixture.mcp, fixture.admin
        );
        fixture
    }

    /// `GET /admin/stats`: grant and registration counts, live tokens, every token issued.
    async fn stats(&self) -> Value {
        let response = self
            .http
            .get(format!("{}/stats", self.admin))
            .send()
            .await
            .expect("the fixture's admin API answers");
        response.json().await.unwrap()
    }

    /// `POST /admin/revoke`: every access and refresh token is dead from now on.
    async fn revoke(&self) {
        let response = self
            .http
            .post(format!("{}/revoke", self.admin))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// A `[[mcp.servers]]` config naming the fixture as server `remote`.
    fn config(&self) -> String {
        format!(
            r#"
[mcp]
enabled = true

[[mcp.servers]]
name = "remote"
transport = "http"
url = "{}"
"#,
            self.mcp
        )
    }
}

impl Drop for OAuthFixture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every secret the fixture ever handed out: access and refresh tokens, authorization codes,
/// client secrets.
fn secrets_of(stats: &Value) -> Vec<String> {
    ["tokens", "secrets"]
        .iter()
        .flat_map(|key| stats[key].as_array().cloned().unwrap_or_default())
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect()
}

/// Panics if `text` (what `what` shows) contains one of `secrets`.
fn assert_no_secret(what: &str, text: &str, secrets: &[String]) {
    for secret in secrets {
        assert!(
            !text.contains(secret.as_str()),
            "{what} shows the secret {secret}"
        );
    }
}

// ==== A test's home, scripts and CLI runs ====

/// A test's `REVKA_HOME` naming the fixture, and a separate work directory for the scripts and
/// captured output (outside the home, so the home holds only what Revka wrote).
struct Setup {
    home: TestHome,
    work: tempfile::TempDir,
}

impl Setup {
    fn new(fixture_config: &str) -> Self {
        let home = TestHome::new();
        home.write_config(fixture_config);
        Self {
            home,
            work: tempfile::tempdir().unwrap(),
        }
    }

    fn work(&self) -> &Path {
        self.work.path()
    }

    fn oauth_dir(&self) -> PathBuf {
        self.home.path().join("oauth")
    }

    fn token_file(&self) -> PathBuf {
        self.oauth_dir().join("remote.json")
    }

    /// Writes an executable shell script `name` into the work directory.
    fn script(&self, name: &str, body: &str) -> PathBuf {
        let path = self.work().join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    /// A `$BROWSER` that plays the person approving: records the authorization URL in
    /// `browser.log`, then follows it and the authorization server's redirect to the callback.
    fn approving_browser(&self) -> PathBuf {
        let log = self.work().join("browser.log");
        self.script(
            "approve.sh",
            &format!(
                "# Plays the person approving in a browser: follows the authorization URL and the\n\
                 # redirect to Revka's loopback callback.\n\
                 printf '%s\\n' \"$1\" >> '{log}'\n\
                 exec curl -sS --noproxy '*' -o /dev/null -L --max-time 60 \"$1\"\n",
                log = log.display()
            ),
        )
    }

    /// A `$BROWSER` that only records that it was run (for commands that must never open one).
    fn recording_browser(&self) -> PathBuf {
        let log = self.work().join("unexpected-browser.log");
        self.script(
            "never.sh",
            &format!(
                "# Must never run: records the URL it was given and fails.\n\
                 printf '%s\\n' \"$1\" >> '{}'\nexit 1\n",
                log.display()
            ),
        )
    }

    /// The URLs the recording browser was given (none when it never ran).
    fn unexpected_browser_runs(&self) -> String {
        std::fs::read_to_string(self.work().join("unexpected-browser.log")).unwrap_or_default()
    }

    /// The authorization URLs the approving browser was given.
    fn authorization_urls(&self) -> Vec<String> {
        std::fs::read_to_string(self.work().join("browser.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Runs `revka <args>` on this home with `env`, killing it (and its process group: the
    /// browser script) after `timeout`.
    fn run(&self, args: &[&str], env: &[(&str, &str)], timeout: Duration) -> Ran {
        static RUNS: AtomicU64 = AtomicU64::new(0);
        let n = RUNS.fetch_add(1, Ordering::Relaxed);
        let (out, err) = (
            self.work().join(format!("cli-{n}.stdout")),
            self.work().join(format!("cli-{n}.stderr")),
        );
        let mut cmd = self.home.command();
        cmd.args(args)
            .env("RUST_LOG", "off")
            .stdin(Stdio::null())
            .stdout(File::create(&out).unwrap())
            .stderr(File::create(&err).unwrap())
            .process_group(0);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let started = Instant::now();
        let mut child = cmd.spawn().expect("spawn revka");
        let status = try_within(timeout, || child.try_wait().unwrap());
        if status.is_none() {
            let _ = killpg(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
            let _ = child.wait();
        }
        let ran = Ran {
            args: args.join(" "),
            code: status.and_then(|s| s.code()),
            timed_out: status.is_none(),
            stdout: std::fs::read_to_string(&out).unwrap_or_default(),
            stderr: std::fs::read_to_string(&err).unwrap_or_default(),
            elapsed: started.elapsed(),
        };
        eprintln!(
            "`revka {}`: exit {:?}{} in {:?}",
            ran.args,
            ran.code,
            if ran.timed_out {
                " (killed: timed out)"
            } else {
                ""
            },
            ran.elapsed
        );
        ran
    }

    /// `revka mcp login remote` with `browser` as `$BROWSER`, logs at `log_level`.
    fn login(&self, browser: &Path, log_level: &str) -> Ran {
        self.run(
            &["mcp", "login", "remote"],
            &[
                ("BROWSER", browser.to_str().unwrap()),
                ("RUST_LOG", log_level),
            ],
            LOGIN,
        )
    }

    /// A login that must succeed: exit 0 and a line on stdout naming the server.
    fn login_ok(&self, browser: &Path, log_level: &str) -> Ran {
        let ran = self.login(browser, log_level);
        assert_eq!(ran.code, Some(0), "login failed: {ran}");
        assert!(
            ran.stdout.contains("remote"),
            "stdout names the server: {ran}"
        );
        ran
    }

    /// `revka mcp list --json`'s row for `remote` (and the whole run); the browser recorder as
    /// `$BROWSER`, so a list that started a login would be seen.
    fn list_row(&self) -> (Value, Ran) {
        let never = self.recording_browser();
        let ran = self.run(
            &["mcp", "list", "--json"],
            &[("BROWSER", never.to_str().unwrap())],
            LOGIN,
        );
        assert!(!ran.timed_out, "{ran}");
        let rows: Vec<Value> = serde_json::from_str(&ran.stdout)
            .unwrap_or_else(|e| panic!("`mcp list --json` is not JSON ({e}): {ran}"));
        let row = rows
            .into_iter()
            .find(|r| r["name"] == "remote")
            .unwrap_or_else(|| panic!("no row for remote: {ran}"));
        eprintln!("mcp list --json: {row}");
        (row, ran)
    }

    /// The files under `$REVKA_HOME/oauth` (none when the directory is absent).
    fn stored(&self) -> Vec<PathBuf> {
        files_under(&self.oauth_dir())
    }

    /// Panics unless nothing is stored under `$REVKA_HOME/oauth`.
    fn assert_nothing_stored(&self, what: &str) {
        let stored = self.stored();
        assert!(
            stored.is_empty(),
            "{what}: nothing may be stored, yet {stored:?}"
        );
    }

    /// Every file the daemon and the CLI wrote under `$REVKA_HOME`, the token store aside: the
    /// daemon's log (`daemon.stderr`), the run log, discovery files, state.
    fn files_outside_the_store(&self) -> Vec<PathBuf> {
        let store = self.oauth_dir();
        files_under(self.home.path())
            .into_iter()
            .filter(|f| !f.starts_with(&store))
            .collect()
    }

    /// Panics if any file under `$REVKA_HOME` but the token store contains one of `secrets`;
    /// returns how many files and bytes were searched.
    fn assert_no_secret_in_home(&self, secrets: &[String]) -> (usize, usize) {
        let files = self.files_outside_the_store();
        let mut bytes = 0;
        for file in &files {
            let Ok(content) = std::fs::read(file) else {
                continue; // a socket
            };
            bytes += content.len();
            let content = String::from_utf8_lossy(&content);
            for secret in secrets {
                assert!(
                    !content.contains(secret.as_str()),
                    "{} contains the secret {secret}",
                    file.display()
                );
            }
        }
        (files.len(), bytes)
    }
}

/// A finished (or killed) CLI run.
struct Ran {
    args: String,
    code: Option<i32>,
    timed_out: bool,
    stdout: String,
    stderr: String,
    elapsed: Duration,
}

impl Ran {
    /// Both streams, lowercased, for matching error text.
    fn text(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr).to_lowercase()
    }

    /// Panics unless the command failed by itself (non-zero exit, not killed) with a message
    /// that, for each group of `words`, contains one of the group's words (lowercase).
    fn assert_failed(&self, what: &str, words: &[&[&str]]) {
        assert!(
            !self.timed_out,
            "{what}: the command did not give up by itself: {self}"
        );
        assert!(
            matches!(self.code, Some(c) if c != 0),
            "{what}: a non-zero exit: {self}"
        );
        let text = self.text();
        assert!(
            words
                .iter()
                .all(|group| group.iter().any(|w| text.contains(w))),
            "{what}: the error names one of each of {words:?}: {self}"
        );
    }
}

impl std::fmt::Display for Ran {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`revka {}` exit {:?}{} after {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.args,
            self.code,
            if self.timed_out { " (killed)" } else { "" },
            self.elapsed,
            tail(&self.stdout),
            tail(&self.stderr)
        )
    }
}

/// The last 4 KiB of `text`, for failure messages.
fn tail(text: &str) -> &str {
    let mut start = text.len().saturating_sub(4096);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        match entry.file_type() {
            Ok(t) if t.is_dir() => out.extend(files_under(&path)),
            Ok(_) => out.push(path),
            Err(_) => {}
        }
    }
    out
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

// ==== The running daemon ====

/// A daemon of the test's home, its MCP endpoint and gateway.
struct Running {
    daemon: TestDaemon,
    url: String,
    base: String,
    gateway: Gateway,
    http: reqwest::Client,
}

impl Running {
    async fn start(setup: &Setup, env: &[(&str, &str)]) -> Self {
        let daemon = TestDaemon::start(&setup.home, env);
        let discovery = setup.home.path().join("mcp.json");
        try_within_async(SLOW, async || discovery.exists())
            .await
            .unwrap_or_else(|| panic!("mcp.json never written; stderr:\n{}", daemon.stderr()));
        let doc: Value = serde_json::from_slice(&std::fs::read(&discovery).unwrap()).unwrap();
        let url = doc["url"].as_str().unwrap().to_owned();
        Self {
            base: url.trim_end_matches("/mcp").to_owned(),
            url,
            gateway: Gateway::of_started(setup.home.path()).await,
            daemon,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(120))
                .build()
                .unwrap(),
        }
    }

    /// A new session (`POST /session`).
    async fn session(&self) -> Session {
        let response = self
            .http
            .post(format!("{}/session", self.base))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.unwrap();
        Session {
            url: self.url.clone(),
            id: body["session_id"].as_str().unwrap().to_owned(),
            token: body["token"].as_str().unwrap().to_owned(),
            http: self.http.clone(),
        }
    }

    /// A session with `remote__whoami` activated (deferred loading: `tool_search select:`),
    /// once the daemon has the server's tools; `None` if it never does within `timeout`.
    async fn whoami_session(&self, timeout: Duration) -> Option<Session> {
        let session = self.session().await;
        let query = json!({ "query": "select:remote__whoami" });
        try_within_async(timeout, async || {
            let text = session.call_text("tool_search", query.clone()).await;
            !text.contains("Not found") && text.contains("remote__whoami")
        })
        .await?;
        Some(session)
    }

    /// The server node `remote` in `/api/actors`.
    async fn node(&self) -> Value {
        self.gateway.server_node("remote").await
    }

    /// The `remote` entry of `/api/health`, and the whole report.
    async fn health_entry(&self) -> (Value, Value) {
        let (_, health) = self.gateway.api("/api/health").await;
        let entry = health["mcp_servers"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|s| s["name"] == "mcp:remote")
            .cloned()
            .unwrap_or(Value::Null);
        (entry, health)
    }
}

/// A `tools/call` of `tool`: the result's text, or the error (a JSON-RPC error, an `isError`
/// result, or no answer), whether the daemon answers with JSON or an SSE stream.
async fn call_tool(session: &Session, tool: &str, arguments: Value) -> Result<String, String> {
    let params = json!({ "name": tool, "arguments": arguments });
    let answer = session
        .final_message(next_id(), "tools/call", params)
        .await?;
    if let Some(error) = answer.get("error") {
        return Err(error.to_string());
    }
    let text = answer["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    if answer["result"]["isError"] == true {
        Err(text)
    } else {
        Ok(text)
    }
}

/// `remote__whoami`'s answer, parsed: `{client_id, scopes}`.
async fn whoami(session: &Session) -> Result<Value, String> {
    let text = call_tool(session, "remote__whoami", json!({})).await?;
    serde_json::from_str(&text).map_err(|e| format!("whoami answered {text:?}: {e}"))
}

/// The one client the fixture registered (dynamic registration), by id.
fn registered_client(stats: &Value) -> String {
    let clients = stats["clients"].as_array().unwrap();
    assert!(!clients.is_empty(), "no client registered: {stats}");
    clients.last().unwrap()["client_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

// ==== The fixture, checked with the official SDK client ====

#[test]
fn the_fixture_passes_the_official_sdk_clients_oauth_flow() {
    let Some(cache) = test_cache() else { return };
    let work = tempfile::tempdir().unwrap();
    let fixture = OAuthFixture::start(&cache, work.path(), &["--access-ttl", "2"]);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oauth/sdk_client.py");
    let out = work.path().join("sdk_client.out");
    let err = work.path().join("sdk_client.err");
    let mut child = Command::new(venv_bin(&cache, "python"))
        .arg(&script)
        .args([&fixture.mcp, &fixture.admin])
        .stdin(Stdio::null())
        .stdout(File::create(&out).unwrap())
        .stderr(File::create(&err).unwrap())
        .spawn()
        .unwrap();
    let status = try_within(Duration::from_secs(300), || child.try_wait().unwrap());
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let (stdout, stderr) = (
        std::fs::read_to_string(&out).unwrap_or_default(),
        std::fs::read_to_string(&err).unwrap_or_default(),
    );
    eprintln!("sdk_client.py:\n{stdout}");
    assert!(
        status.is_some_and(|s| s.success()),
        "sdk_client.py failed ({status:?}):\n{stdout}\n{stderr}\nfixture stderr:\n{}",
        fixture.stderr()
    );
    assert!(stdout.contains(r#""step": "done""#), "{stdout}");
}

// ==== Revka against the fixture ====

#[tokio::test(flavor = "multi_thread")]
async fn login_call_expiry_silent_refresh_and_no_token_in_logs() {
    let Some(cache) = test_cache() else { return };
    let work = tempfile::tempdir().unwrap();
    let fixture = OAuthFixture::start(&cache, work.path(), &["--access-ttl", "2"]);
    let setup = Setup::new(&fixture.config());
    let browser = setup.approving_browser();

    // Login: the browser step, the tokens stored owner-only.
    let login = setup.login_ok(&browser, "debug");
    assert!(
        setup.token_file().is_file(),
        "{} written",
        setup.token_file().display()
    );
    assert_eq!(mode(&setup.token_file()), 0o600, "token file mode");
    assert_eq!(mode(&setup.oauth_dir()), 0o700, "token dir mode");
    let urls = setup.authorization_urls();
    assert_eq!(urls.len(), 1, "one authorization: {urls:?}");
    let authorization = url::Url::parse(&urls[0]).unwrap();
    let query: std::collections::HashMap<_, _> = authorization.query_pairs().into_owned().collect();
    eprintln!("authorization request: {query:?}");
    assert_eq!(query.get("response_type").map(String::as_str), Some("code"));
    assert_eq!(
        query.get("code_challenge_method").map(String::as_str),
        Some("S256")
    );
    assert!(query.get("code_challenge").is_some_and(|c| c.len() >= 43));
    assert!(query.get("state").is_some_and(|s| !s.is_empty()));
    assert_eq!(
        query.get("resource"),
        Some(&fixture.mcp),
        "RFC 8707 resource"
    );
    let redirect = query.get("redirect_uri").cloned().unwrap_or_default();
    assert!(
        redirect.starts_with("http://127.0.0.1:") && redirect.ends_with("/callback"),
        "loopback redirect: {redirect}"
    );
    let after_login = fixture.stats().await;
    eprintln!(
        "after login: grants {}, registrations {}",
        after_login["grants"], after_login["registrations"]
    );
    assert_eq!(after_login["grants"]["authorization_code"], 1);
    let first_refresh = after_login["refresh_tokens"][0]
        .as_str()
        .unwrap()
        .to_owned();
    let client_id = registered_client(&after_login);

    let (row, list) = setup.list_row();
    assert_eq!(row["auth"], "authorized", "{list}");
    // What the CLI refreshed so far (the list may have, past the 2 s): the daemon's come on top.
    let refreshed_before = fixture.stats().await["grants"]["refresh_token"]
        .as_u64()
        .unwrap();

    // The daemon calls the server with the stored tokens, refreshing past each expiry.
    let never = setup.recording_browser();
    let running = Running::start(
        &setup,
        &[("BROWSER", never.to_str().unwrap()), ("RUST_LOG", "debug")],
    )
    .await;
    let Some(session) = running.whoami_session(SLOW).await else {
        panic!(
            "remote__whoami never available; daemon stderr:\n{}",
            tail(&running.daemon.stderr())
        );
    };
    let me = whoami(&session).await.expect("whoami through the daemon");
    eprintln!("whoami: {me}");
    assert_eq!(me["client_id"], client_id.as_str());
    assert_eq!(me["scopes"], json!(["mcp:tools"]));
    for round in 1..=3 {
        tokio::time::sleep(Duration::from_secs(3)).await; // past the 2 s access token
        let started = Instant::now();
        let me = whoami(&session).await.unwrap_or_else(|e| {
            panic!(
                "whoami after expiry (round {round}) failed: {e}\ndaemon stderr:\n{}",
                tail(&running.daemon.stderr())
            )
        });
        let stats = fixture.stats().await;
        eprintln!(
            "round {round}: whoami in {:?}, grants {}, rs {}, live {}",
            started.elapsed(),
            stats["grants"],
            stats["rs"],
            stats["live"]
        );
        assert_eq!(me["client_id"], client_id.as_str());
    }
    let stats = fixture.stats().await;
    assert!(
        stats["grants"]["refresh_token"].as_u64().unwrap() > refreshed_before,
        "the daemon refreshed ({refreshed_before} refreshes before it started): {}",
        stats["grants"]
    );
    assert_eq!(
        stats["grants"]["authorization_code"], 1,
        "no new authorization: the daemon never logs in by itself"
    );

    // Rotation followed: the store holds a refresh token issued after the login's.
    let stored = std::fs::read_to_string(setup.token_file()).unwrap();
    assert!(
        !stored.contains(&first_refresh),
        "the login's refresh token was rotated out of the store"
    );
    let current = stats["refresh_tokens"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .find(|t| stored.contains(t))
        .expect("the store holds a refresh token the fixture issued");
    let live = stats["live_refresh_tokens"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t == current);
    eprintln!("stored refresh token is the fixture's live one: {live}");
    assert_eq!(mode(&setup.token_file()), 0o600, "mode kept on rewrite");
    // The connection's details show the stored authorization (never a token).
    let oauth = running.node().await["details"]["oauth"].clone();
    assert_eq!(oauth["state"], "authorized", "{oauth}");
    assert_eq!(oauth["scope"], "mcp:tools", "{oauth}");
    assert!(
        oauth["expires_in_secs"].as_u64().is_some_and(|s| s <= 2),
        "{oauth}"
    );
    assert!(
        setup.unexpected_browser_runs().is_empty(),
        "the daemon opened a browser: {}",
        setup.unexpected_browser_runs()
    );

    // No token text anywhere: logs, run log, API, CLI output.
    let secrets = secrets_of(&fixture.stats().await);
    eprintln!("{} secrets issued", secrets.len());
    let (_, tree) = running.gateway.api("/api/actors").await;
    assert_no_secret("/api/actors", &tree.to_string(), &secrets);
    let (_, health) = running.health_entry().await;
    assert_no_secret("/api/health", &health.to_string(), &secrets);
    assert_no_secret(
        "`revka mcp login`",
        &format!("{}{}", login.stdout, login.stderr),
        &secrets,
    );
    assert_no_secret(
        "`revka mcp list --json`",
        &format!("{}{}", list.stdout, list.stderr),
        &secrets,
    );
    for args in [
        &["mcp", "list"][..],
        &["mcp", "get", "remote"],
        &["mcp", "get", "remote", "--json"],
    ] {
        let ran = setup.run(args, &[("RUST_LOG", "debug")], LOGIN);
        assert_no_secret(
            &format!("`revka {}`", args.join(" ")),
            &format!("{}{}", ran.stdout, ran.stderr),
            &secrets,
        );
    }
    let (files, bytes) = setup.assert_no_secret_in_home(&secrets);
    eprintln!("no secret in {files} files ({bytes} bytes) under REVKA_HOME");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_revoked_refresh_token_fails_the_server_with_the_login_hint() {
    let Some(cache) = test_cache() else { return };
    let work = tempfile::tempdir().unwrap();
    let fixture = OAuthFixture::start(&cache, work.path(), &[]);
    let setup = Setup::new(&fixture.config());
    let browser = setup.approving_browser();
    setup.login_ok(&browser, "off");

    let never = setup.recording_browser();
    let running = Running::start(&setup, &[("BROWSER", never.to_str().unwrap())]).await;
    let session = running
        .whoami_session(SLOW)
        .await
        .expect("remote__whoami available");
    whoami(&session).await.expect("a good call first");

    // Every token revoked: the access token is refused, its refresh is `invalid_grant`.
    fixture.revoke().await;
    let failed_call = whoami(&session).await;
    eprintln!("the call after revocation: {failed_call:?}");
    assert!(failed_call.is_err(), "a call with revoked tokens fails");

    let started = Instant::now();
    let node = try_within_async(SLOW, async || {
        let node = running.node().await;
        (node["state"] == "failed").then_some(node)
    })
    .await
    .unwrap_or_else(|| {
        panic!(
            "remote never `failed`; daemon stderr:\n{}",
            tail(&running.daemon.stderr())
        )
    });
    eprintln!("failed after {:?}: {node}", started.elapsed());
    assert!(
        node["last_failure"]
            .to_string()
            .contains("revka mcp login remote"),
        "the failure says to log in again: {node}"
    );
    assert_eq!(
        node["details"]["oauth"]["state"], "expired",
        "the refused refresh is recorded: {node}"
    );
    let (entry, health) = running.health_entry().await;
    assert_eq!(entry["state"], "failed", "{health}");
    assert!(
        entry.to_string().contains("revka mcp login remote"),
        "/api/health names the server and the hint: {health}"
    );

    // No restart loop: the count stays put while the server waits for a person.
    let restarts = node["restarts"].as_u64().unwrap_or(0);
    tokio::time::sleep(Duration::from_secs(6)).await;
    let later = running.node().await;
    eprintln!(
        "restarts: {restarts} at failure, {} six seconds later (state {})",
        later["restarts"], later["state"]
    );
    assert_eq!(later["state"], "failed", "{later}");
    assert_eq!(
        later["restarts"].as_u64().unwrap_or(0),
        restarts,
        "no restart loop: {later}"
    );
    let stats = fixture.stats().await;
    eprintln!(
        "fixture after revocation: grants {}, errors {}",
        stats["grants"], stats["errors"]
    );
    assert!(
        setup.unexpected_browser_runs().is_empty(),
        "the daemon opened a browser: {}",
        setup.unexpected_browser_runs()
    );

    // A new login restarts the server in the running daemon; calls work again.
    let relogin = setup.login_ok(&browser, "off");
    let started = Instant::now();
    let again = try_within_async(SLOW, async || {
        let session = running.whoami_session(Duration::from_secs(5)).await?;
        whoami(&session).await.ok()
    })
    .await;
    let Some(me) = again else {
        panic!(
            "calls never worked again after the new login ({relogin}); node {}; daemon stderr:\n{}",
            running.node().await,
            tail(&running.daemon.stderr())
        );
    };
    eprintln!(
        "whoami again {:?} after the new login: {me}",
        started.elapsed()
    );
    let node = running.node().await;
    eprintln!(
        "node after the new login: state {}, restarts {}",
        node["state"], node["restarts"]
    );

    // The failure path leaked no token either.
    let secrets = secrets_of(&fixture.stats().await);
    let (files, bytes) = setup.assert_no_secret_in_home(&secrets);
    eprintln!("no secret in {files} files ({bytes} bytes) under REVKA_HOME");
}

#[tokio::test(flavor = "multi_thread")]
async fn logout_forgets_the_tokens() {
    let Some(cache) = test_cache() else { return };
    let work = tempfile::tempdir().unwrap();
    let fixture = OAuthFixture::start(&cache, work.path(), &[]);
    let setup = Setup::new(&fixture.config());
    setup.login_ok(&setup.approving_browser(), "off");
    assert!(setup.token_file().is_file());

    let logout = setup.run(&["mcp", "logout", "remote"], &[], LOGIN);
    assert_eq!(logout.code, Some(0), "{logout}");
    assert!(!setup.token_file().exists(), "the token file is gone");
    assert!(setup.stored().is_empty(), "{:?}", setup.stored());

    let (row, list) = setup.list_row();
    assert_eq!(row["auth"], "needs login", "{list}");
    let never = setup.recording_browser();
    let text = setup.run(
        &["mcp", "list"],
        &[("BROWSER", never.to_str().unwrap())],
        LOGIN,
    );
    assert!(text.stdout.contains("needs login"), "{text}");
    assert!(
        setup.unexpected_browser_runs().is_empty(),
        "`mcp list` opened a browser: {}",
        setup.unexpected_browser_runs()
    );
    assert!(
        setup.stored().is_empty(),
        "list stored nothing: {:?}",
        setup.stored()
    );
    let stats = fixture.stats().await;
    eprintln!(
        "fixture: grants {}, registrations {}",
        stats["grants"], stats["registrations"]
    );
}

// ==== Bad input: a precise error, nothing stored ====

/// The authorization server metadata's path (RFC 8414), and the protected resource metadata's
/// (RFC 9728, for the resource `/mcp`).
const AS_METADATA: &str = "/.well-known/oauth-authorization-server";
const PRM: &str = "/.well-known/oauth-protected-resource/mcp";

/// Whether the fixture served `path` (so a failure came from what it served there).
fn fetched(stats: &Value, path: &str) -> bool {
    stats["requests"][path].as_u64().unwrap_or(0) > 0
}

/// Logs in against a fixture started with `flags` (the approving browser); returns the run, the
/// setup and the fixture's stats after it. `None` when the test cache is missing.
async fn bad_login(flags: &[&str], timeout: Duration) -> Option<(Ran, Setup, Value)> {
    let cache = test_cache()?;
    let work = tempfile::tempdir().unwrap();
    let fixture = OAuthFixture::start(&cache, work.path(), flags);
    let setup = Setup::new(&fixture.config());
    let browser = setup.approving_browser();
    let ran = setup.run(
        &["mcp", "login", "remote"],
        &[("BROWSER", browser.to_str().unwrap())],
        timeout,
    );
    let stats = fixture.stats().await;
    eprintln!(
        "{flags:?}: {ran}\nfixture: grants {}, registrations {}, authorizations {}, token requests {}",
        stats["grants"], stats["registrations"], stats["authorizations"], stats["token_requests"]
    );
    Some((ran, setup, stats))
}

#[tokio::test(flavor = "multi_thread")]
async fn login_refuses_a_token_endpoint_answering_html() {
    let Some((ran, setup, stats)) = bad_login(&["--token-html"], LOGIN).await else {
        return;
    };
    ran.assert_failed(
        "token endpoint HTML",
        &[&["token"], &["html", "content-type", "json"]],
    );
    assert!(stats["token_requests"].as_u64().unwrap() >= 1, "{stats}");
    setup.assert_nothing_stored("token endpoint HTML");
}

#[tokio::test(flavor = "multi_thread")]
async fn login_gives_up_on_a_hanging_token_endpoint() {
    // No login timeout on the CLI surface: the client's own request timeout must end it.
    let Some((ran, setup, stats)) = bad_login(&["--token-hang"], Duration::from_secs(300)).await
    else {
        return;
    };
    ran.assert_failed(
        "hanging token endpoint",
        &[&["token"], &["timed out", "timeout"]],
    );
    assert!(stats["token_requests"].as_u64().unwrap() >= 1, "{stats}");
    setup.assert_nothing_stored("hanging token endpoint");
}

/// A login against the fixture started with `flag` fails naming one word of each of `groups`,
/// after reading `document` and before asking anything of the authorization server; nothing
/// is stored.
async fn refused_before_authorizing(flag: &str, what: &str, groups: &[&[&str]], document: &str) {
    let Some((ran, setup, stats)) = bad_login(&[flag], LOGIN).await else {
        return;
    };
    ran.assert_failed(what, groups);
    assert!(
        fetched(&stats, document),
        "{what}: {document} was read: {stats}"
    );
    assert_eq!(stats["registrations"], 0, "{what}: no registration");
    assert_eq!(stats["authorizations"], 0, "{what}: no authorization");
    setup.assert_nothing_stored(what);
}

#[tokio::test(flavor = "multi_thread")]
async fn login_refuses_huge_authorization_server_metadata() {
    refused_before_authorizing(
        "--metadata-huge",
        "2 MiB metadata",
        &[
            &["metadata", "oauth-authorization-server"],
            &["too large", "too big", "exceeds", "larger than", "limit"],
        ],
        AS_METADATA,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn login_refuses_malformed_authorization_server_metadata() {
    refused_before_authorizing(
        "--metadata-malformed",
        "malformed metadata",
        &[
            &["metadata", "oauth-authorization-server"],
            &["json", "malformed", "invalid", "parse", "eof"],
        ],
        AS_METADATA,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn login_refuses_metadata_of_another_resource() {
    refused_before_authorizing(
        "--prm-other-resource",
        "PRM of another resource",
        &[&["resource"], &["other.example"]],
        PRM,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn login_refuses_a_callback_with_a_wrong_state() {
    let Some(cache) = test_cache() else { return };
    let work = tempfile::tempdir().unwrap();
    let fixture = OAuthFixture::start(&cache, work.path(), &[]);
    let setup = Setup::new(&fixture.config());
    let status = setup.work().join("forged.status");
    let browser = setup.script(
        "forge_state.sh",
        &format!(
            "# Approves, then delivers the callback with its state replaced (a forged or mixed-up\n\
             # response).\n\
             loc=$(curl -sS --noproxy '*' --max-time 60 -o /dev/null -w '%{{redirect_url}}' \"$1\")\n\
             case \"$loc\" in\n\
               *state=*) bad=$(printf '%s' \"$loc\" | sed 's/state=[^&]*/state=forged-state/') ;;\n\
               *) bad=\"$loc&state=forged-state\" ;;\n\
             esac\n\
             curl -sS --noproxy '*' --max-time 60 -o /dev/null -w '%{{http_code}}' \"$bad\" > '{}'\n",
            status.display()
        ),
    );
    let ran = setup.run(
        &["mcp", "login", "remote"],
        &[("BROWSER", browser.to_str().unwrap())],
        LOGIN,
    );
    eprintln!(
        "forged callback answered HTTP {}",
        std::fs::read_to_string(&status).unwrap_or_default()
    );
    ran.assert_failed("wrong state", &[&["state"]]);
    let stats = fixture.stats().await;
    eprintln!(
        "fixture: grants {}, authorizations {}",
        stats["grants"], stats["authorizations"]
    );
    assert_eq!(stats["authorizations"], 1, "the browser step ran");
    assert_eq!(
        stats["grants"]["authorization_code"], 0,
        "the code of a callback with a wrong state is never exchanged"
    );
    setup.assert_nothing_stored("wrong state");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_callback_hit_twice_logs_in_once() {
    let Some(cache) = test_cache() else { return };
    let work = tempfile::tempdir().unwrap();
    let fixture = OAuthFixture::start(&cache, work.path(), &[]);
    let setup = Setup::new(&fixture.config());
    let statuses = setup.work().join("twice.status");
    let browser = setup.script(
        "twice.sh",
        &format!(
            "# Approves, then delivers the same callback twice (a reload, a replay).\n\
             loc=$(curl -sS --noproxy '*' --max-time 60 -o /dev/null -w '%{{redirect_url}}' \"$1\")\n\
             first=$(curl -sS --noproxy '*' --max-time 60 -o /dev/null -w '%{{http_code}}' \"$loc\")\n\
             second=$(curl -sS --noproxy '*' --max-time 60 -o /dev/null -w '%{{http_code}}' \"$loc\")\n\
             echo \"$first $second\" > '{}'\n",
            statuses.display()
        ),
    );
    let ran = setup.run(
        &["mcp", "login", "remote"],
        &[("BROWSER", browser.to_str().unwrap())],
        LOGIN,
    );
    assert_eq!(ran.code, Some(0), "the first callback logs in: {ran}");
    assert!(setup.token_file().is_file());
    // The script may still be on its second hit when the login returns.
    let codes = try_within(Duration::from_secs(30), || {
        std::fs::read_to_string(&statuses)
            .ok()
            .filter(|s| s.ends_with('\n'))
    })
    .expect("the browser script finished");
    eprintln!(
        "callback answers (first, second; 000 = refused): {}",
        codes.trim()
    );
    let codes: Vec<u16> = codes
        .split_whitespace()
        .map(|c| c.parse().unwrap_or(0))
        .collect();
    assert!(
        (200..400).contains(&codes[0]),
        "the first callback is accepted: {codes:?}"
    );
    assert!(
        !(200..400).contains(&codes[1]),
        "the second hit gets an error (or finds the listener gone): {codes:?}"
    );
    let stats = fixture.stats().await;
    eprintln!(
        "fixture: grants {}, errors {}",
        stats["grants"], stats["errors"]
    );
    assert_eq!(
        stats["grants"]["authorization_code"], 1,
        "one code exchanged"
    );
    assert!(
        stats["errors"].get("invalid_grant").is_none(),
        "the code was never replayed: {stats}"
    );
}
