//! `revka mcp serve --stdio`: a stdio MCP server that relays everything to the running daemon.
//!
//! For clients that only spawn stdio servers (`command = "revka", args = ["mcp", "serve",
//! "--stdio"]`). Part of `revka mcp` ([`super`]); it runs in the client's process tree, not in
//! the daemon's supervision tree, and holds one session of the daemon's MCP server
//! ([`crate::mcp_http`]) for as long as the client keeps its stdin open.
//!
//! - **Finding the daemon** (`upstream`): `$REVKA_HOME/mcp.json` names the endpoint (it must be
//!   a loopback `http` URL); `POST /session` with the bridge's working directory mints the
//!   session, and every client message is then `POST /mcp` with `Authorization: Bearer` and
//!   `X-Revka-Session` (the two-header flow, which needs no credential shared beforehand).
//!   The session is minted on the first message; an idle bridge pings it every minute so the
//!   daemon's idle timeout never ends the session of a live client.
//! - **Relaying** (`relay`): stdin is newline-delimited JSON-RPC, each line capped at 4 MiB
//!   ([`LineReader`]); a line's kind, id and method are read in one pass over its top level
//!   (`scan`), with the full parse for anything else. Every message is POSTed as it came, byte for byte (ids included);
//!   requests run concurrently, each in its own task. An answer is relayed as it arrives: a
//!   JSON body as one line, an SSE stream (a `tools/call`: progress, then the response) one
//!   event per line. A notification's POST is accepted before any later message is sent, so
//!   the daemon sees them in the client's order (`notifications/cancelled` excepted: it is
//!   never held back). Every request ends with exactly one response, unless the client
//!   cancelled it. A malformed line is answered with a JSON-RPC error with `id: null` (-32700
//!   for bytes that are not JSON, -32600 for JSON that is not a message), never a crash.
//! - **Server-to-client messages** (`stream`): `GET /mcp` of the session, when the daemon has
//!   it, relayed line by line (reopened with `Last-Event-ID`); a daemon answering 404/405 has
//!   none, and the messages that precede a `tools/call` answer still reach the client. The
//!   client's answers to server requests are POSTed like any other message.
//! - **Cancellation**: `notifications/cancelled` is relayed, and the call's HTTP stream is
//!   dropped (the daemon also cancels a call whose connection closes). When stdin closes (or on
//!   SIGTERM, SIGINT, SIGHUP, or stdout closing) the bridge stops reading, drops every request
//!   in flight, ends its session (`DELETE /session/{id}`, 2 s at most) and exits 0, with no
//!   task or process left behind.
//! - **Daemon restarts**: a request that finds the daemon gone (connection refused, or 401: the
//!   session is unknown) waits up to 30 s for `mcp.json` to name a daemon that answers, mints a
//!   new session, replays the client's `initialize` and `notifications/initialized` (answers
//!   swallowed), sends the client `notifications/tools/list_changed`, and is retried. A
//!   `tools/call` that was already sent is never retried (it may have had effects): it is
//!   answered with an error saying so. The server stream and the keep-alive ping notice a
//!   restart without a request.
//! - **No daemon**: every request (`initialize` first) is answered with an error (-32000) that
//!   names `revka daemon` and `revka service start`; each later request looks again, so a
//!   daemon started afterwards is found. With `--start-daemon` the bridge starts `revka daemon`
//!   itself (`spawn`): detached in its own session, so it outlives the bridge and the client's
//!   process-group kill; output appended to `$REVKA_HOME/logs/revka.{out,err}.log`.
//! - **Batches** (`batch`): a JSON array is split and relayed message by message, and the
//!   responses are written back as one array, only when the negotiated protocol version is
//!   2025-03-26 (the only one with JSON-RPC batching: 2025-06-18 removed it); otherwise it is
//!   answered with -32600.
//! - **HTTP** (`http1`): every `POST /mcp` goes on the bridge's own small HTTP/1.1 client (a
//!   pool of kept-alive connections, each answer read by the task that waits for it) to the
//!   daemon's owner-only Unix socket when `mcp.json` names one owned by the same user (less
//!   CPU per message than loopback TCP), else, or once the socket refuses, to its TCP port.
//!   `POST /session`, `DELETE` and the server stream use reqwest over TCP (no proxy, no
//!   redirects).
//! - **Output** (`io`): stdout carries only protocol lines, written by one task (so lines never
//!   interleave); logs go to stderr, at `warn` unless `--log-level`/`RUST_LOG` say otherwise.
//!   Stdin and stdout are read and written without a blocking thread when they are pipes or
//!   sockets, which is what every client gives a stdio server.

mod answer;
mod batch;
mod http1;
mod io;
mod link;
mod relay;
mod scan;
mod spawn;
mod stream;
mod upstream;

#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use crate::config;

pub(crate) use relay::Bridge;
pub(crate) use upstream::BridgeConfig;

/// `revka mcp serve` arguments.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Speak MCP on stdin/stdout (the only transport: the daemon itself serves HTTP).
    #[arg(long, required = true)]
    pub stdio: bool,
    /// Start `revka daemon` (detached, logging to $REVKA_HOME/logs/) when none is running.
    #[arg(long)]
    pub start_daemon: bool,
}

/// Runs the bridge until stdin closes or a signal arrives. `config` is `--config`, passed on to
/// a daemon the bridge starts.
pub fn run(config: Option<PathBuf>, args: ServeArgs) -> ExitCode {
    let home = config::revka_home();
    // One thread: the bridge only forwards, and a second one would cost a wake-up per call.
    let runtime = match crate::cli::runtime(crate::cli::Threads::Current) {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let code = runtime.block_on(async move {
        let (input, output) = match (io::stdin(), io::stdout()) {
            (Ok(input), Ok(output)) => (input, output),
            (Err(e), _) | (_, Err(e)) => {
                eprintln!("revka: cannot use stdin/stdout: {e}");
                return ExitCode::FAILURE;
            }
        };
        let cwd = std::env::current_dir().ok();
        let start = args
            .start_daemon
            .then(|| spawn::Starter::new(&home, config));
        let config = BridgeConfig::new(home, cwd, start);
        Bridge::run(config, input, output, shutdown_signal()).await;
        ExitCode::SUCCESS
    });
    // A read of a stdin that is neither a pipe nor a socket runs on a blocking thread: do not
    // wait for it.
    runtime.shutdown_timeout(Duration::from_millis(100));
    code
}

/// Resolves on SIGTERM, SIGINT or SIGHUP (a closed terminal): the bridge then stops as when
/// stdin closes.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let kinds = [
        SignalKind::terminate(),
        SignalKind::interrupt(),
        SignalKind::hangup(),
    ];
    let mut streams = Vec::new();
    for kind in kinds {
        match signal(kind) {
            Ok(s) => streams.push(s),
            Err(e) => tracing::warn!(error = %e, "cannot listen for a signal"),
        }
    }
    if streams.is_empty() {
        return std::future::pending().await;
    }
    let waits = streams.iter_mut().map(|s| Box::pin(s.recv()));
    futures::future::select_all(waits).await;
}
