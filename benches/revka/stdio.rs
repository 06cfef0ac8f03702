//! The baseline: the load generator talking to the echo server directly over stdio, with the
//! same JSON-RPC calls Revka forwards.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use crate::stats::Latencies;

/// A stdio MCP server run by the load generator.
pub struct StdioServer {
    pub child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    line: String,
}

const INIT: &str = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"revka-bench","version":"0"}}}"#;
const INITIALIZED: &str = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;

impl StdioServer {
    /// Spawns `program` and completes the handshake.
    pub async fn start(program: &Path, args: &[&str]) -> anyhow::Result<Self> {
        Self::start_with_env(program, args, &[]).await
    }

    /// [`StdioServer::start`] with extra environment variables (`revka mcp serve --stdio`
    /// needs the daemon's `REVKA_HOME`).
    pub async fn start_with_env(
        program: &Path,
        args: &[&str],
        env: &[(&str, &Path)],
    ) -> anyhow::Result<Self> {
        let mut child = Command::new(program)
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("spawn {}", program.display()))?;
        let mut server = Self {
            stdin: child.stdin.take().context("stdin")?,
            stdout: BufReader::new(child.stdout.take().context("stdout")?),
            child,
            line: String::new(),
        };
        server.send(INIT).await?;
        server.recv().await?;
        server.send(INITIALIZED).await?;
        Ok(server)
    }

    pub fn pid(&self) -> i32 {
        self.child.id().map_or(0, |p| p as i32)
    }

    async fn send(&mut self, line: &str) -> anyhow::Result<()> {
        self.stdin.write_all(line.as_bytes()).await?;
        self.stdin.write_all(b"\n").await?;
        self.stdin.flush().await?;
        Ok(())
    }

    async fn recv(&mut self) -> anyhow::Result<&str> {
        self.line.clear();
        if self.stdout.read_line(&mut self.line).await? == 0 {
            bail!("the server closed stdout");
        }
        Ok(&self.line)
    }

    /// One `tools/call`, answered.
    pub async fn call(&mut self, id: u64, tool: &str, arguments: &str) -> anyhow::Result<()> {
        self.send(&call_line(id, tool, arguments)).await?;
        let answer = self.recv().await?;
        if !crate::http::is_success(answer.as_bytes()) {
            bail!("call failed: {answer}");
        }
        Ok(())
    }

    /// One `tools/call`, answered, the notifications before its answer skipped (a tool
    /// activation is preceded by `tools/list_changed`).
    pub async fn call_through(
        &mut self,
        id: u64,
        tool: &str,
        arguments: &str,
    ) -> anyhow::Result<String> {
        self.send(&call_line(id, tool, arguments)).await?;
        loop {
            let line = self.recv().await?;
            if answer_id(line) == Some(id) {
                return Ok(line.to_owned());
            }
        }
    }

    /// Calls in a closed loop with `window` requests in flight on the one pipe, until
    /// `until`: every answer is timed from its request and immediately replaced by a new one.
    pub async fn closed_loop(
        &mut self,
        window: usize,
        until: Instant,
        tool: &str,
        arguments: &str,
    ) -> anyhow::Result<(Latencies, u64)> {
        let mut lat = Latencies::default();
        let mut errors = 0;
        let mut sent_at = vec![Instant::now(); window];
        let mut next_id = 1u64;
        let mut in_flight = 0usize;
        let mut batch = String::new();
        for (slot, sent) in sent_at.iter_mut().enumerate() {
            batch.push_str(&call_line((slot as u64) << 32 | next_id, tool, arguments));
            batch.push('\n');
            *sent = Instant::now();
            next_id += 1;
            in_flight += 1;
        }
        self.stdin.write_all(batch.as_bytes()).await?;
        self.stdin.flush().await?;
        while in_flight > 0 {
            let answer = self.recv().await?;
            let now = Instant::now();
            // A notification (the bridge relays its session's `GET /mcp` stream, e.g. the
            // `tools/list_changed` of the activation) answers nothing.
            if answer_id(answer).is_none() && answer.contains("\"method\":") {
                continue;
            }
            let slot = answer_id(answer).context("answer without an id")? >> 32;
            if !crate::http::is_success(answer.as_bytes()) {
                errors += 1;
            }
            let slot = slot as usize;
            lat.record(now - sent_at[slot]);
            in_flight -= 1;
            if now < until {
                let line = call_line((slot as u64) << 32 | next_id, tool, arguments);
                next_id += 1;
                sent_at[slot] = Instant::now();
                self.send(&line).await?;
                in_flight += 1;
            }
        }
        Ok((lat, errors))
    }

    /// Closes stdin and waits for the exit.
    pub async fn stop(mut self) {
        drop(self.stdin);
        let _ = tokio::time::timeout(Duration::from_secs(2), self.child.wait()).await;
        let _ = self.child.kill().await;
    }
}

fn call_line(id: u64, tool: &str, arguments: &str) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"{tool}","arguments":{arguments}}}}}"#
    )
}

/// The numeric id of an answer line (`"id":N`).
fn answer_id(line: &str) -> Option<u64> {
    let at = line.find("\"id\":")? + 5;
    let digits: String = line[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}
