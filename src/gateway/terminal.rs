//! `GET /ws/terminal` and `GET /api/terminal/launchers`: the Code tab's terminals on the
//! gateway (`root/gateway`), each a terminal of `root/terminals` ([`crate::terminal`]).
//!
//! Both need the owner role (a terminal runs any command as the daemon's user). The WebSocket
//! passes the gateway's Origin check before the upgrade like every route, and takes its token
//! from `Authorization` or the `bearer.<token>` subprotocol, offered together with
//! [`TERMINAL_PROTOCOL`], which is the one the upgrade selects (never the token).
//!
//! Query: `launcher` (default `shell`), `cwd` (absolute, an existing directory; default the
//! daemon's `$HOME`), `cols` and `rows` (1-1000, default 80 × 24). Anything wrong is a 400
//! before the upgrade; past `[terminal] max_terminals` a 503.
//!
//! Frames, server → client: first the text frame
//! `{"type":"ready","id":"term:<id>","path":"root/terminals/term:<id>","launcher":…,"command":[…],"session_id":…|null,"cwd":…}`,
//! then binary frames of output (at most 64 KiB each), and when the terminal's output ends
//! `{"type":"exit","code":N|null,"signal":"SIGKILL"|null}` and a close (1000). Client → server:
//! binary frames are input; text frames are `{"type":"input","data":"…"}` or
//! `{"type":"resize","cols":C,"rows":R}`. A resize out of bounds, or any other text, is
//! answered `{"type":"error","message":"…"}` and changes nothing. A frame over 64 KiB closes
//! the socket (the page sends pastes in chunks).
//!
//! Backpressure both ways: input waits in a small bounded queue and the socket is not read
//! while the queue is full (the PTY is not draining), so a 10 MB paste never holds more than
//! a few frames in the daemon; output is read from the PTY only as fast as the socket takes
//! it. Closing the socket ends the terminal and kills its processes.

use std::path::PathBuf;
use std::time::Duration;

use axum::Json;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use axum::extract::{Extension, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::json;

use super::server::{Caller, Gateway};
use crate::http::response::error;
use crate::terminal::{MAX_FRAME, OpenError, OpenRequest, Opened, SIZE_RANGE, Terminals};

/// The subprotocol `GET /ws/terminal` selects.
pub const TERMINAL_PROTOCOL: &str = "revka.terminal.v1";
/// How long writing one frame to the client may take before the terminal is closed.
const SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the exit status may take to arrive once the output has ended.
const EXIT_WAIT: Duration = Duration::from_secs(5);
/// How long the closing handshake may take.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// The `/ws/terminal` query, as text: each value is checked with a precise message.
#[derive(Debug, Default, Deserialize)]
pub(super) struct TerminalQuery {
    launcher: Option<String>,
    cwd: Option<String>,
    cols: Option<String>,
    rows: Option<String>,
}

/// `GET /api/terminal/launchers`: every launcher, whether its program is found, whether it is
/// built in.
pub(super) async fn launchers(State(gw): State<Gateway>) -> Response {
    let config = gw.services().config.get();
    let list = crate::terminal::launcher::list(&config.terminal);
    let mut response = Json(json!(list)).into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    response
}

/// `GET /ws/terminal`: opens a terminal and serves it over the WebSocket.
pub(super) async fn ws_terminal(
    State(gw): State<Gateway>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<TerminalQuery>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    if let Err(message) = check_subprotocols(&headers) {
        return error(StatusCode::BAD_REQUEST, message);
    }
    let request = match parse(q, caller.id.as_str()) {
        Ok(request) => request,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    let opened = match Terminals::open(gw.services(), request).await {
        Ok(opened) => opened,
        Err(e) => {
            let status = match &e {
                OpenError::UnknownLauncher { .. } => StatusCode::BAD_REQUEST,
                OpenError::TooMany(_) | OpenError::Unavailable(_) => {
                    StatusCode::SERVICE_UNAVAILABLE
                }
                OpenError::Start(_) => StatusCode::INTERNAL_SERVER_ERROR,
            };
            tracing::warn!(error = %e, "terminal not opened");
            return error(status, e.to_string());
        }
    };
    // If the upgrade never happens, the closure is dropped with `opened`, which ends it.
    ws.protocols([TERMINAL_PROTOCOL])
        .max_message_size(MAX_FRAME)
        .max_frame_size(MAX_FRAME)
        .on_upgrade(move |socket| serve(socket, opened))
}

/// The request of a query, or what is wrong with it.
fn parse(q: TerminalQuery, owner: &str) -> Result<OpenRequest, String> {
    let size = |name: &str, value: Option<String>, default: u16| -> Result<u16, String> {
        let Some(value) = value else {
            return Ok(default);
        };
        value
            .trim()
            .parse::<u16>()
            .ok()
            .filter(|n| SIZE_RANGE.contains(n))
            .ok_or_else(|| {
                format!(
                    "{name} must be a whole number from {} to {}, got {value:?}",
                    SIZE_RANGE.start(),
                    SIZE_RANGE.end()
                )
            })
    };
    let cols = size("cols", q.cols, 80)?;
    let rows = size("rows", q.rows, 24)?;
    let cwd = match q.cwd.filter(|c| !c.is_empty()) {
        Some(cwd) => PathBuf::from(cwd),
        None => std::env::var_os("HOME")
            .map(PathBuf::from)
            .filter(|h| h.is_absolute())
            .unwrap_or_else(|| PathBuf::from("/")),
    };
    if !cwd.is_absolute() {
        return Err(format!(
            "cwd must be an absolute path, got {:?}",
            cwd.display().to_string()
        ));
    }
    let cwd = match std::fs::canonicalize(&cwd) {
        Ok(c) if c.is_dir() => c,
        Ok(_) => {
            return Err(format!(
                "cwd {:?} is not a directory",
                cwd.display().to_string()
            ));
        }
        Err(e) => return Err(format!("cwd {:?}: {e}", cwd.display().to_string())),
    };
    Ok(OpenRequest {
        launcher: q
            .launcher
            .filter(|l| !l.is_empty())
            .unwrap_or_else(|| crate::terminal::launcher::SHELL.to_owned()),
        cwd,
        cols,
        rows,
        owner: owner.to_owned(),
    })
}

/// Refuses a `bearer.<token>` subprotocol offered without [`TERMINAL_PROTOCOL`], the one the
/// gateway selects (see [`super::ws::check_subprotocols`]).
fn check_subprotocols(headers: &HeaderMap) -> Result<(), String> {
    super::ws::check_subprotocols(headers, TERMINAL_PROTOCOL)
}

/// A client's text frame.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum ClientFrame {
    Input { data: String },
    Resize { cols: i64, rows: i64 },
}

/// Why the socket loop ended.
enum End {
    /// The terminal's output ended: send the exit frame and close.
    Output,
    /// The client closed or vanished, or is too slow: just end the terminal.
    Client,
}

/// Serves one terminal until either side ends; the terminal ends with it.
async fn serve(mut socket: WebSocket, opened: Opened) {
    let ready = json!({
        "type": "ready",
        "id": opened.id,
        "path": opened.path,
        "launcher": opened.launcher,
        "command": opened.command,
        "session_id": opened.session_id,
        "cwd": opened.cwd,
    });
    if send(&mut socket, Message::Text(ready.to_string().into()))
        .await
        .is_err()
    {
        return;
    }
    let mut opened = opened;
    if let End::Client = pump(&mut socket, &mut opened).await {
        tracing::debug!(path = %opened.path, "terminal WebSocket closed by the client");
    }
    // Dropping `opened` ends the terminal (if its process has not already).
}

/// Moves bytes until the output ends or the client goes; then, after an output end, the exit
/// frame and the close.
async fn pump(socket: &mut WebSocket, opened: &mut Opened) -> End {
    let input = opened.io.input.clone();
    let mut permit: Option<tokio::sync::mpsc::OwnedPermit<Bytes>> = None;
    // Set once the PTY's writer has stopped: input is dropped from then on, while the output
    // drains and the socket is still read (for a close, a resize).
    let mut writer_gone = false;
    let end = loop {
        tokio::select! {
            chunk = opened.io.output.recv() => match chunk {
                Some(chunk) => {
                    if send(socket, Message::Binary(chunk)).await.is_err() {
                        break End::Client;
                    }
                }
                None => break End::Output,
            },
            // Room in the input queue first: the socket is read only when a frame can go on.
            reserved = input.clone().reserve_owned(), if permit.is_none() && !writer_gone => {
                match reserved {
                    Ok(p) => permit = Some(p),
                    // The writer stopped (the PTY is gone): the output is about to end.
                    Err(_) => writer_gone = true,
                }
            },
            message = socket.recv(), if permit.is_some() || writer_gone => match message {
                Some(Ok(Message::Binary(data))) => {
                    if !data.is_empty()
                        && let Some(p) = permit.take()
                    {
                        p.send(data);
                    }
                }
                Some(Ok(Message::Text(text))) => {
                    match serde_json::from_str::<ClientFrame>(text.as_str()) {
                        Ok(ClientFrame::Input { data }) => {
                            if !data.is_empty()
                                && let Some(p) = permit.take()
                            {
                                p.send(Bytes::from(data));
                            }
                        }
                        Ok(ClientFrame::Resize { cols, rows }) => {
                            let fits = |n: i64| u16::try_from(n).ok().filter(|n| SIZE_RANGE.contains(n));
                            let refusal = match (fits(cols), fits(rows)) {
                                (Some(c), Some(r)) => opened
                                    .io
                                    .resize(c, r)
                                    .err()
                                    .map(|e| format!("cannot resize the terminal: {e}")),
                                _ => Some(format!(
                                    "resize refused: cols and rows must be from {} to {}, got \
                                     {cols}x{rows}; the terminal keeps its size",
                                    SIZE_RANGE.start(),
                                    SIZE_RANGE.end()
                                )),
                            };
                            if let Some(message) = refusal
                                && send_error(socket, &message).await.is_err()
                            {
                                break End::Client;
                            }
                        }
                        Err(e) => {
                            let message = format!(
                                "unknown frame: expected {{\"type\":\"input\",\"data\":…}} or \
                                 {{\"type\":\"resize\",\"cols\":…,\"rows\":…}} ({e})"
                            );
                            if send_error(socket, &message).await.is_err() {
                                break End::Client;
                            }
                        }
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break End::Client,
                Some(Ok(_)) => {} // pings and pongs
            },
        }
    };
    if let End::Output = end {
        let mut exit = opened.io.exit.clone();
        let status = tokio::time::timeout(EXIT_WAIT, exit.wait_for(Option::is_some))
            .await
            .ok()
            .and_then(|r| r.ok().and_then(|e| *e));
        let signal =
            status
                .and_then(|e| e.signal)
                .map(|s| match nix::sys::signal::Signal::try_from(s) {
                    Ok(sig) => sig.as_str().to_owned(),
                    Err(_) => format!("signal {s}"),
                });
        let frame = json!({
            "type": "exit",
            "code": status.and_then(|e| e.code),
            "signal": signal,
        });
        if send(socket, Message::Text(frame.to_string().into()))
            .await
            .is_ok()
        {
            let close = CloseFrame {
                code: close_code::NORMAL,
                reason: "the terminal ended".into(),
            };
            if send(socket, Message::Close(Some(close))).await.is_ok() {
                let _ = tokio::time::timeout(CLOSE_GRACE, socket.recv()).await;
            }
        }
    }
    end
}

/// Sends one frame within [`SEND_TIMEOUT`].
async fn send(socket: &mut WebSocket, message: Message) -> Result<(), ()> {
    match tokio::time::timeout(SEND_TIMEOUT, socket.send(message)).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(()),
    }
}

/// Sends `{"type":"error","message":…}`.
async fn send_error(socket: &mut WebSocket, message: &str) -> Result<(), ()> {
    let frame = json!({ "type": "error", "message": message });
    send(socket, Message::Text(frame.to_string().into())).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(pairs: &[(&str, &str)]) -> TerminalQuery {
        let mut q = TerminalQuery::default();
        for (k, v) in pairs {
            let v = Some((*v).to_owned());
            match *k {
                "launcher" => q.launcher = v,
                "cwd" => q.cwd = v,
                "cols" => q.cols = v,
                "rows" => q.rows = v,
                _ => unreachable!(),
            }
        }
        q
    }

    #[test]
    fn the_query_is_checked_before_the_upgrade() {
        let dir = tempfile::tempdir().unwrap();
        let cwd = dir.path().to_str().unwrap();
        let ok = parse(query(&[("cwd", cwd)]), "t").unwrap();
        assert_eq!((ok.cols, ok.rows, ok.launcher.as_str()), (80, 24, "shell"));
        for (pairs, want) in [
            (vec![("cwd", "relative/dir")], "absolute"),
            (vec![("cwd", "/no/such/dir/anywhere")], "No such file"),
            (vec![("cwd", cwd), ("cols", "0")], "cols must be"),
            (vec![("cwd", cwd), ("rows", "100000")], "rows must be"),
            (vec![("cwd", cwd), ("cols", "wide")], "cols must be"),
        ] {
            let e = parse(query(&pairs), "t").unwrap_err();
            assert!(e.contains(want), "{pairs:?}: {e}");
        }
        let file = dir.path().join("f");
        std::fs::write(&file, "").unwrap();
        let e = parse(query(&[("cwd", file.to_str().unwrap())]), "t").unwrap_err();
        assert!(e.contains("not a directory"), "{e}");
    }

    #[test]
    fn a_bearer_subprotocol_needs_the_terminal_one() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            "bearer.abc".parse().unwrap(),
        );
        assert!(check_subprotocols(&headers).is_err());
        headers.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            "revka.terminal.v1, bearer.abc".parse().unwrap(),
        );
        assert!(check_subprotocols(&headers).is_ok());
    }
}
