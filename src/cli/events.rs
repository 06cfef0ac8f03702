//! `revka events [-f|--follow] [--since N] [--path PREFIX] [--json]`: the running daemon's
//! supervision event log (`GET /api/events` of its gateway), one line per event.
//!
//! Without `-f` it prints the events the daemon keeps (after `--since`) and exits; with `-f`
//! it then follows the gateway's SSE stream until interrupted. When the stream ends (the
//! daemon stops or restarts) it says so on stderr, waits for the daemon to answer again and
//! carries on: after `Last-Event-ID` when it is the same daemon, from the start of the new
//! daemon's log when the daemon was restarted (its sequence numbers start over).
//!
//! A line is `17:40:00.123  root/mcp_servers/mcp:fs  exited  backing_off  restarts=3
//! abnormal  reason=...` (the time is UTC, as the daemon recorded it); `--json` prints each
//! event as the gateway sends it, one JSON object per line. The daemon is found as for the
//! other operator commands ([`super::remote`]: `gateway.json`, the owner token).

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use reqwest::StatusCode;
use revka_mcp::sse::SseParser;
use serde::Deserialize;
use serde_json::Value;

use super::remote::{REQUEST_TIMEOUT, RemoteError, encode_segment, read_gateway_file};
use crate::auth::{OWNER_TOKEN_FILE, read_owner_token};

/// The largest page the gateway serves (the whole ring).
const PAGE: usize = revka_actors::events::CAPACITY;
/// How long to wait between attempts to reach the daemon again while following.
const RECONNECT: Duration = Duration::from_secs(2);
/// The longest SSE event accepted from the gateway.
const MAX_EVENT: usize = 1 << 20;

/// `revka events` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct EventsArgs {
    /// Keep printing events as they happen, until interrupted (reconnects when the daemon
    /// restarts).
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Only the events after this sequence number.
    #[arg(long, value_name = "N")]
    pub since: Option<u64>,
    /// Only the events of this actor and its subtree, e.g. `root/mcp_servers`.
    #[arg(long, value_name = "PREFIX")]
    pub path: Option<String>,
    /// Print each event as one JSON object per line.
    #[arg(long)]
    pub json: bool,
}

/// Runs `revka events` against the daemon of `home`.
pub fn run(home: &Path, args: &EventsArgs) -> ExitCode {
    let runtime = match crate::cli::runtime(crate::cli::Threads::Current) {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let mut out = std::io::stdout();
    let result = runtime.block_on(async {
        if args.follow {
            follow(home, args, &mut out).await
        } else {
            list(home, args, &mut out).await
        }
    });
    runtime.shutdown_timeout(Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // stdout was closed (`revka events | head`): done.
        Err(Failure::Output) => ExitCode::SUCCESS,
        Err(Failure::Remote(e)) => {
            eprintln!("revka: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Why the command stopped.
#[derive(Debug)]
enum Failure {
    /// The daemon could not be asked, or refused.
    Remote(RemoteError),
    /// Standard output is gone.
    Output,
}

impl From<RemoteError> for Failure {
    fn from(e: RemoteError) -> Self {
        Self::Remote(e)
    }
}

/// The daemon's gateway, as this command reaches it.
struct Client {
    url: String,
    token: String,
    token_path: std::path::PathBuf,
    pid: Option<u32>,
    http: reqwest::Client,
}

impl Client {
    fn connect(home: &Path) -> Result<Self, RemoteError> {
        let discovery = read_gateway_file(home)?;
        let token = read_owner_token(home).map_err(RemoteError::Token)?;
        let url = discovery.url.trim_end_matches('/').to_owned();
        // No overall timeout (a followed stream lasts), but a bounded connect; a local daemon:
        // never through a proxy, and never a redirect elsewhere with the owner token.
        let http = reqwest::Client::builder()
            .connect_timeout(REQUEST_TIMEOUT)
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| RemoteError::Unreachable {
                url: url.clone(),
                reason: super::remote::error_chain(&e),
            })?;
        Ok(Self {
            url,
            token,
            token_path: home.join(OWNER_TOKEN_FILE),
            pid: discovery.pid,
            http,
        })
    }

    /// `GET /api/events?…`, its response once its status is a success.
    async fn get(
        &self,
        query: &str,
        last_event_id: Option<u64>,
        timeout: Option<Duration>,
    ) -> Result<reqwest::Response, RemoteError> {
        let mut request = self
            .http
            .get(format!("{}/api/events?{query}", self.url))
            .bearer_auth(&self.token);
        if let Some(timeout) = timeout {
            request = request.timeout(timeout);
        }
        if let Some(id) = last_event_id {
            request = request
                .header(reqwest::header::ACCEPT, "text/event-stream")
                .header("last-event-id", id.to_string());
        }
        let response = request.send().await.map_err(|e| self.transport(&e))?;
        let status = response.status();
        if status == StatusCode::UNAUTHORIZED {
            return Err(RemoteError::Unauthorized {
                path: self.token_path.clone(),
            });
        }
        if !status.is_success() {
            let body = response.json::<Value>().await.ok();
            let message = body
                .as_ref()
                .and_then(|b| b.get("error"))
                .and_then(Value::as_str)
                .map_or_else(|| format!("the gateway answered {status}"), str::to_owned);
            return Err(RemoteError::Api {
                status,
                message,
                body,
            });
        }
        Ok(response)
    }

    fn transport(&self, e: &reqwest::Error) -> RemoteError {
        if e.is_timeout() {
            RemoteError::Timeout {
                url: self.url.clone(),
                timeout: REQUEST_TIMEOUT,
            }
        } else {
            RemoteError::Unreachable {
                url: self.url.clone(),
                reason: super::remote::error_chain(e),
            }
        }
    }
}

/// The query string of a request.
fn query(since: Option<u64>, path: Option<&str>, follow: bool) -> String {
    let mut parts = Vec::new();
    if follow {
        parts.push("follow=true".to_owned());
    } else {
        parts.push(format!("limit={PAGE}"));
    }
    if let Some(since) = since {
        parts.push(format!("since={since}"));
    }
    if let Some(path) = path.map(str::trim).filter(|p| !p.is_empty()) {
        parts.push(format!("path={}", encode_segment(path)));
    }
    parts.join("&")
}

/// A page of `GET /api/events`.
#[derive(Debug, Deserialize)]
struct Page {
    events: Vec<Value>,
    next: u64,
    oldest: u64,
    #[serde(default)]
    gap: bool,
}

/// Prints the events kept after `--since`, a page at a time.
async fn list(home: &Path, args: &EventsArgs, out: &mut impl Write) -> Result<(), Failure> {
    let client = Client::connect(home)?;
    let mut since = args.since.unwrap_or(0);
    let mut first = true;
    loop {
        let url = format!("{}/api/events", client.url);
        let response = client
            .get(
                &query(Some(since), args.path.as_deref(), false),
                None,
                Some(REQUEST_TIMEOUT),
            )
            .await?;
        let page: Page = response.json().await.map_err(|e| RemoteError::Decode {
            url,
            reason: e.to_string(),
        })?;
        if first && page.gap {
            eprintln!(
                "revka: events {}..{} are no longer kept (the daemon keeps the last {PAGE})",
                since + 1,
                page.oldest.saturating_sub(1)
            );
        }
        first = false;
        for event in &page.events {
            print_event(out, event, args.json)?;
        }
        if page.events.len() < PAGE || page.next <= since {
            return Ok(());
        }
        since = page.next;
    }
}

/// Follows the stream until interrupted (module docs).
async fn follow(home: &Path, args: &EventsArgs, out: &mut impl Write) -> Result<(), Failure> {
    // The first connection must work: a daemon that is not running is an error, as for
    // `revka status`.
    let mut client = Client::connect(home)?;
    let mut since = args.since;
    let mut last_id: Option<u64> = None;
    let mut reconnecting = false;
    let mut connected_once = false;
    loop {
        let resume = last_id;
        match client
            .get(&query(since, args.path.as_deref(), true), resume, None)
            .await
        {
            Ok(response) => {
                connected_once = true;
                if reconnecting {
                    eprintln!("revka: reconnected to the daemon's event stream");
                }
                read_stream(response, out, args.json, &mut last_id).await?;
                eprintln!("revka: the daemon's event stream ended; reconnecting…");
            }
            // The daemon does not answer, or refuses, from the start: as for `revka status`.
            Err(e) if !connected_once => return Err(e.into()),
            Err(_) => {}
        }
        reconnecting = true;
        // Wait for a daemon to answer again: the same one (resume after the last event) or a
        // new one (its log starts over: read it from the start).
        loop {
            tokio::time::sleep(RECONNECT).await;
            let Ok(next) = Client::connect(home) else {
                continue;
            };
            if next.pid != client.pid {
                eprintln!(
                    "revka: the daemon restarted (pid {}); its event log starts over",
                    next.pid.map_or_else(|| "?".to_owned(), |p| p.to_string())
                );
                since = None;
                last_id = None;
            }
            client = next;
            break;
        }
    }
}

/// Prints the events of one stream until it ends; `last_id` follows the events printed.
async fn read_stream(
    mut response: reqwest::Response,
    out: &mut impl Write,
    json: bool,
    last_id: &mut Option<u64>,
) -> Result<(), Failure> {
    let mut parser = SseParser::new(MAX_EVENT);
    loop {
        let chunk = match response.chunk().await {
            Ok(Some(chunk)) => chunk,
            Ok(None) | Err(_) => return Ok(()),
        };
        parser.push(&chunk);
        while let Some(event) = parser.next_event() {
            let Ok(event) = event else {
                return Ok(()); // an oversized event: start again after the last one printed
            };
            match event.event.as_deref() {
                Some("supervision") => {
                    let Ok(value) = serde_json::from_str::<Value>(&event.data) else {
                        continue;
                    };
                    if let Some(seq) = value.get("seq").and_then(Value::as_u64) {
                        *last_id = Some(seq);
                    }
                    print_event(out, &value, json)?;
                }
                Some("gap") => {
                    let gap: Value = serde_json::from_str(&event.data).unwrap_or(Value::Null);
                    eprintln!(
                        "revka: events {}..{} were lost (this reader fell behind the daemon's log)",
                        gap["missed_from"], gap["missed_to"]
                    );
                }
                _ => {}
            }
        }
    }
}

fn print_event(out: &mut impl Write, event: &Value, json: bool) -> Result<(), Failure> {
    let line = if json {
        event.to_string()
    } else {
        human_line(event)
    };
    writeln!(out, "{line}")
        .and_then(|()| out.flush())
        .map_err(|_| Failure::Output)
}

/// `17:40:00.123  root/mcp_servers/mcp:fs  exited  backing_off  restarts=3  ...`.
fn human_line(event: &Value) -> String {
    let text = |key: &str| event.get(key).and_then(Value::as_str).unwrap_or("?");
    let at = text("at");
    // `2026-12-07T17:40:00.123Z` → `17:40:00.123`.
    let time = at
        .split_once('T')
        .map_or(at, |(_, time)| time.trim_end_matches('Z'));
    let mut line = format!(
        "{time}  {}  {}  {}  restarts={}",
        text("path"),
        text("kind"),
        text("state"),
        event.get("restarts").and_then(Value::as_u64).unwrap_or(0)
    );
    for key in ["attempt", "delay_ms", "after_ms"] {
        if let Some(n) = event.get(key).and_then(Value::as_u64) {
            line.push_str(&format!("  {key}={n}"));
        }
    }
    if event.get("abnormal").and_then(Value::as_bool) == Some(true) {
        line.push_str("  abnormal");
    }
    for key in ["detail", "reason"] {
        if let Some(s) = event.get(key).and_then(Value::as_str) {
            line.push_str(&format!("  {key}={}", s.replace('\n', " ")));
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_line_per_event_with_the_fields_it_has() {
        let event = json!({
            "seq": 42, "at": "2026-12-07T17:40:00.123Z", "path": "root/mcp_servers/mcp:fs",
            "kind": "exited", "state": "backing_off", "restarts": 3,
            "reason": "process exited\nwith status 1", "abnormal": true,
        });
        assert_eq!(
            human_line(&event),
            "17:40:00.123  root/mcp_servers/mcp:fs  exited  backing_off  restarts=3  abnormal  \
             reason=process exited with status 1"
        );
        let event = json!({
            "seq": 43, "at": "2026-12-07T17:40:00.373Z", "path": "root/mcp_servers/mcp:fs",
            "kind": "restart_scheduled", "state": "backing_off", "restarts": 3,
            "delay_ms": 250, "attempt": 2,
        });
        assert_eq!(
            human_line(&event),
            "17:40:00.373  root/mcp_servers/mcp:fs  restart_scheduled  backing_off  restarts=3  \
             attempt=2  delay_ms=250"
        );
    }

    #[test]
    fn queries_page_or_follow() {
        assert_eq!(
            query(Some(7), Some("root/mcp_servers"), false),
            "limit=4096&since=7&path=root%2Fmcp_servers"
        );
        assert_eq!(query(None, None, true), "follow=true");
    }
}
