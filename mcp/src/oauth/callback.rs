//! The loopback redirect of the authorization code flow (RFC 8252 §7.3): a listener on
//! `127.0.0.1` that takes the browser's `GET /callback?code=…&state=…`. Part of
//! [`crate::oauth`]; opened by the authorizer for an interactive login only.
//!
//! - Only `/callback` counts; any other path (a browser's `/favicon.ico`) gets a 404 and the
//!   wait goes on.
//! - The `state` must match (compared in constant time); a mismatch, an `error` answer or a
//!   missing `code` ends the login with a precise error and a 400 page.
//! - Once a code was taken, later hits (a reload, a second tab) get a `410` page saying the
//!   authorization was already completed, for as long as the process keeps the listener.
//! - Each request head is read within 5 s and 8 KiB; the whole wait is bounded by the
//!   caller's timeout.

use std::collections::HashMap;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::OAuthError;

const MAX_HEAD: usize = 8 << 10;
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a used listener keeps answering late hits.
const LINGER: Duration = Duration::from_secs(60);

/// A bound callback listener.
#[derive(Debug)]
pub struct Callback {
    listener: TcpListener,
    port: u16,
}

/// What one request to the listener was.
enum Hit {
    Other,
    Callback(HashMap<String, String>),
}

impl Callback {
    /// Binds `127.0.0.1:port` (0: a free port).
    pub async fn bind(port: u16) -> Result<Self, OAuthError> {
        let listener = TcpListener::bind(("127.0.0.1", port)).await.map_err(|e| {
            OAuthError::Authorization(format!(
                "cannot listen for the redirect on 127.0.0.1:{port}: {e}"
            ))
        })?;
        let port = listener
            .local_addr()
            .map_err(|e| OAuthError::Authorization(format!("callback listener: {e}")))?
            .port();
        Ok(Self { listener, port })
    }

    /// `http://127.0.0.1:<port>/callback`.
    pub fn redirect_uri(&self) -> String {
        format!("http://127.0.0.1:{}/callback", self.port)
    }

    /// Waits up to `timeout` for the redirect carrying `state`; returns its code.
    pub async fn wait(self, state: &str, timeout: Duration) -> Result<String, OAuthError> {
        let outcome = tokio::time::timeout(timeout, self.accept_until_callback(state)).await;
        let result = match outcome {
            Ok(r) => r,
            Err(_) => Err(OAuthError::Authorization(format!(
                "no answer from the browser within {} s (the redirect to {} never came)",
                timeout.as_secs(),
                self.redirect_uri()
            ))),
        };
        // Late hits get a clear page rather than a refused connection, one at a time (each
        // read is bounded by READ_TIMEOUT), for LINGER at most.
        tokio::spawn(async move {
            let _ = tokio::time::timeout(LINGER, async {
                while let Ok((mut stream, _)) = self.listener.accept().await {
                    if let Ok(Hit::Callback(_)) = read_hit(&mut stream).await {
                        respond(
                            &mut stream,
                            410,
                            "This authorization was already completed; nothing was changed.",
                        )
                        .await;
                    } else {
                        respond(&mut stream, 404, "Not found.").await;
                    }
                }
            })
            .await;
        });
        result
    }

    async fn accept_until_callback(&self, state: &str) -> Result<String, OAuthError> {
        loop {
            let (mut stream, _) = self
                .listener
                .accept()
                .await
                .map_err(|e| OAuthError::Authorization(format!("callback listener: {e}")))?;
            let params = match read_hit(&mut stream).await {
                Ok(Hit::Callback(params)) => params,
                Ok(Hit::Other) => {
                    respond(&mut stream, 404, "Not found.").await;
                    continue;
                }
                Err(why) => {
                    tracing::debug!(%why, "unreadable request on the OAuth callback listener");
                    respond(&mut stream, 400, "Bad request.").await;
                    continue;
                }
            };
            if let Some(error) = params.get("error") {
                let description = params
                    .get("error_description")
                    .map(|d| format!(" ({})", crate::redact::text(d)))
                    .unwrap_or_default();
                respond(
                    &mut stream,
                    400,
                    "The authorization was not granted; see the terminal.",
                )
                .await;
                return Err(OAuthError::Authorization(format!(
                    "the authorization server answered error={}{description}",
                    crate::redact::text(error)
                )));
            }
            let given = params.get("state").map(String::as_str).unwrap_or("");
            if !same(given.as_bytes(), state.as_bytes()) {
                respond(&mut stream, 400, "The state of this answer does not match the login in progress; nothing was stored.").await;
                return Err(OAuthError::Authorization(
                    "the callback's state does not match the login in progress (a forged or stale redirect); nothing was stored".into(),
                ));
            }
            let Some(code) = params.get("code").filter(|c| !c.is_empty()) else {
                respond(
                    &mut stream,
                    400,
                    "The answer carries no authorization code.",
                )
                .await;
                return Err(OAuthError::Authorization(
                    "the callback carried no authorization code".into(),
                ));
            };
            respond(
                &mut stream,
                200,
                "Revka is authorized. You can close this window.",
            )
            .await;
            return Ok(code.clone());
        }
    }
}

/// Constant-time equality.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn read_hit(stream: &mut TcpStream) -> Result<Hit, String> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    let read = async {
        loop {
            let n = stream.read(&mut buf).await.map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("connection closed before the request head".to_owned());
            }
            head.extend_from_slice(&buf[..n]);
            if head.windows(4).any(|w| w == b"\r\n\r\n") || head.windows(2).any(|w| w == b"\n\n") {
                return Ok(());
            }
            if head.len() > MAX_HEAD {
                return Err("request head over 8 KiB".to_owned());
            }
        }
    };
    tokio::time::timeout(READ_TIMEOUT, read)
        .await
        .map_err(|_| "request head not sent within 5 s".to_owned())??;
    let text = String::from_utf8_lossy(&head);
    let line = text.lines().next().unwrap_or("");
    let mut parts = line.split(' ');
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return Err("malformed request line".to_owned());
    };
    if method != "GET" {
        return Ok(Hit::Other);
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    if path != "/callback" {
        return Ok(Hit::Other);
    }
    let mut params = HashMap::new();
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        params
            .entry(k.into_owned())
            .or_insert_with(|| v.into_owned());
    }
    Ok(Hit::Callback(params))
}

async fn respond(stream: &mut TcpStream, status: u16, message: &str) {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        _ => "Gone",
    };
    let body = format!(
        "<!doctype html><meta charset=utf-8><title>Revka</title><p>{}</p>\n",
        message.replace('&', "&amp;").replace('<', "&lt;")
    );
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nCache-Control: no-store\r\nReferrer-Policy: no-referrer\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(body.as_bytes()).await;
    let _ = stream.shutdown().await;
}
