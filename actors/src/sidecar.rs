//! The session-manager sidecar: its process under `root/sidecars/session_manager`, and the
//! daemon's HTTP client for its Unix socket.
//!
//! The sidecar (Node, `sidecars/session-manager/`) serves a REST API on a Unix socket. The
//! process actor starts it with the socket path in its environment, counts it ready when
//! `GET /health` answers 200, and restarts it when it exits or stops answering health checks
//! (liveness). [`SidecarClient`] speaks HTTP/1.1 over the socket: one connection per request
//! (the socket is local, so connecting is cheap and no pool can go stale across restarts),
//! bounded response bodies, a deadline per request, and errors that say what went wrong.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::Request;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde_json::Value;

use crate::process::{Liveness, ProbeFn, ProcessSpec, Readiness};

/// Largest response body read from the sidecar.
pub const MAX_RESPONSE: usize = 8 * 1024 * 1024;

/// Why a sidecar request failed.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum SidecarError {
    /// The socket is not there or refuses connections (not started, restarting).
    #[error("the session manager is not reachable at {socket}: {reason}")]
    Unreachable {
        /// The socket path.
        socket: String,
        /// The OS error.
        reason: String,
    },
    /// No complete answer within the deadline.
    #[error("the session manager did not answer {method} {path} within {secs}s")]
    Timeout {
        /// The method.
        method: String,
        /// The path.
        path: String,
        /// The deadline.
        secs: u64,
    },
    /// The connection broke, or the answer was not HTTP.
    #[error("the session manager's answer to {method} {path} was unusable: {reason}")]
    Protocol {
        /// The method.
        method: String,
        /// The path.
        path: String,
        /// What was wrong.
        reason: String,
    },
    /// It answered with an error status (the body's `error.message` when present).
    #[error("the session manager answered {status} to {method} {path}: {message}")]
    Status {
        /// The method.
        method: String,
        /// The path.
        path: String,
        /// The HTTP status.
        status: u16,
        /// Its error message.
        message: String,
    },
}

impl SidecarError {
    /// Whether this failure says something about the sidecar's health (the breaker counts it):
    /// everything but a 4xx answer, which is the caller's mistake.
    pub fn is_sidecar_fault(&self) -> bool {
        !matches!(self, Self::Status { status, .. } if (400..500).contains(status))
    }
}

/// An HTTP client for the sidecar's Unix socket.
#[derive(Debug, Clone)]
pub struct SidecarClient {
    socket: Arc<PathBuf>,
    timeout: Duration,
}

impl SidecarClient {
    /// A client for `socket` with a default per-request deadline.
    pub fn new(socket: impl Into<PathBuf>, timeout: Duration) -> Self {
        Self {
            socket: Arc::new(socket.into()),
            timeout,
        }
    }

    /// The socket path.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> Result<Value, SidecarError> {
        self.request("GET", path, None, self.timeout).await
    }

    /// `POST path` with a JSON body.
    pub async fn post(&self, path: &str, body: &Value) -> Result<Value, SidecarError> {
        self.request("POST", path, Some(body), self.timeout).await
    }

    /// `DELETE path`.
    pub async fn delete(&self, path: &str) -> Result<Value, SidecarError> {
        self.request("DELETE", path, None, self.timeout).await
    }

    /// A request with its own deadline (long polls need more than the default).
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        timeout: Duration,
    ) -> Result<Value, SidecarError> {
        self.request_keyed(method, path, body, timeout, None).await
    }

    /// [`Self::request`] with an `Idempotency-Key` header: the session manager answers a
    /// mutation repeated under the same key with its first answer instead of running it again
    /// (retries of a queued operation send its id).
    pub async fn request_keyed(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        timeout: Duration,
        idempotency_key: Option<&str>,
    ) -> Result<Value, SidecarError> {
        let exchange = self.exchange(method, path, body, idempotency_key);
        match tokio::time::timeout(timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(SidecarError::Timeout {
                method: method.to_owned(),
                path: path.to_owned(),
                secs: timeout.as_secs(),
            }),
        }
    }

    /// `GET path` of an event stream (`text/event-stream`): the response body as it arrives,
    /// for a relay that passes it on unbuffered. The connection lives as long as the body;
    /// `timeout` bounds only the connection and the response head. A non-2xx answer is read
    /// (bounded) and returned as [`SidecarError::Status`].
    pub async fn stream(
        &self,
        path: &str,
        last_event_id: Option<&str>,
        timeout: Duration,
    ) -> Result<SidecarStream, SidecarError> {
        let head = async {
            let (mut sender, driver) = self.connect("GET", path).await?;
            let protocol = |reason: String| SidecarError::Protocol {
                method: "GET".into(),
                path: path.to_owned(),
                reason,
            };
            let mut request = Request::builder()
                .method("GET")
                .uri(path)
                .header("host", "session-manager")
                .header("accept", "text/event-stream");
            if let Some(id) = last_event_id {
                request = request.header("last-event-id", id);
            }
            let request = request
                .body(Full::new(Bytes::new()))
                .map_err(|e| protocol(e.to_string()))?;
            let response = sender
                .send_request(request)
                .await
                .map_err(|e| protocol(e.to_string()))?;
            let status = response.status().as_u16();
            if !(200..300).contains(&status) {
                let bytes = Limited::new(response.into_body(), 64 * 1024)
                    .collect()
                    .await
                    .map(|c| c.to_bytes())
                    .unwrap_or_default();
                let message = serde_json::from_slice::<Value>(&bytes)
                    .ok()
                    .and_then(|v| {
                        v.pointer("/error/message")
                            .and_then(Value::as_str)
                            .map(str::to_owned)
                    })
                    .unwrap_or_else(|| "no message".into());
                return Err(SidecarError::Status {
                    method: "GET".into(),
                    path: path.to_owned(),
                    status,
                    message,
                });
            }
            Ok(SidecarStream {
                body: response.into_body(),
                _driver: driver,
            })
        };
        match tokio::time::timeout(timeout, head).await {
            Ok(result) => result,
            Err(_) => Err(SidecarError::Timeout {
                method: "GET".into(),
                path: path.to_owned(),
                secs: timeout.as_secs(),
            }),
        }
    }

    /// A fresh HTTP/1.1 connection to the socket: its request sender, and the task driving it
    /// (aborted when dropped).
    async fn connect(
        &self,
        method: &str,
        path: &str,
    ) -> Result<(SendRequest<Full<Bytes>>, AbortOnDrop), SidecarError> {
        let stream = tokio::net::UnixStream::connect(self.socket.as_path())
            .await
            .map_err(|e| SidecarError::Unreachable {
                socket: self.socket.display().to_string(),
                reason: e.to_string(),
            })?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| SidecarError::Protocol {
                method: method.to_owned(),
                path: path.to_owned(),
                reason: e.to_string(),
            })?;
        let driver = AbortOnDrop(tokio::spawn(async move {
            let _ = connection.await;
        }));
        Ok((sender, driver))
    }

    async fn exchange(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        idempotency_key: Option<&str>,
    ) -> Result<Value, SidecarError> {
        let protocol = |reason: String| SidecarError::Protocol {
            method: method.to_owned(),
            path: path.to_owned(),
            reason,
        };
        let (mut sender, driver) = self.connect(method, path).await?;
        let payload = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "session-manager")
            .header("content-type", "application/json")
            .header("accept", "application/json");
        if let Some(key) = idempotency_key {
            request = request.header("idempotency-key", key);
        }
        let request = request
            .body(Full::new(payload))
            .map_err(|e| protocol(e.to_string()))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| protocol(e.to_string()));
        let result = match response {
            Ok(response) => {
                let status = response.status().as_u16();
                let collected = Limited::new(response.into_body(), MAX_RESPONSE)
                    .collect()
                    .await;
                let bytes = collected
                    .map_err(|e| protocol(format!("reading the body: {e}")))?
                    .to_bytes();
                let value: Value = if bytes.is_empty() {
                    Value::Null
                } else {
                    serde_json::from_slice(&bytes)
                        .map_err(|e| protocol(format!("not JSON: {e}")))?
                };
                if (200..300).contains(&status) {
                    Ok(value)
                } else {
                    let message = value
                        .pointer("/error/message")
                        .or_else(|| value.get("error"))
                        .and_then(Value::as_str)
                        .unwrap_or("no message")
                        .to_owned();
                    Err(SidecarError::Status {
                        method: method.to_owned(),
                        path: path.to_owned(),
                        status,
                        message,
                    })
                }
            }
            Err(e) => Err(e),
        };
        drop(driver);
        result
    }
}

/// An event stream of the sidecar, open ([`SidecarClient::stream`]): its body, and the task
/// driving its connection (ended with it).
#[derive(Debug)]
pub struct SidecarStream {
    /// The response body, read frame by frame.
    pub body: hyper::body::Incoming,
    _driver: AbortOnDrop,
}

/// Aborts a task when dropped.
#[derive(Debug)]
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What the session manager needs to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionManagerSpec {
    /// The program and its arguments (`["node", ".../session-manager.js"]`).
    pub command: Vec<String>,
    /// The socket it serves.
    pub socket: PathBuf,
    /// `$REVKA_HOME`, passed on.
    pub home: PathBuf,
    /// Ready deadline.
    pub startup_timeout: Duration,
    /// Liveness check interval.
    pub liveness_interval: Duration,
    /// Liveness failures tolerated.
    pub liveness_failures: u32,
}

/// The process spec of the session manager: socket passed as `--socket` and in
/// `REVKA_SM_SOCKET`, ready when `GET /health` answers, live while it keeps answering.
pub fn session_manager_process(spec: &SessionManagerSpec) -> ProcessSpec {
    let (program, args) = match spec.command.split_first() {
        Some((program, args)) => (program.clone(), args.to_vec()),
        None => (String::new(), Vec::new()),
    };
    let mut process = ProcessSpec::new(program, args);
    process.args.push("--socket".into());
    process.args.push(spec.socket.display().to_string());
    process.env = vec![
        ("REVKA_SM_SOCKET".into(), spec.socket.display().to_string()),
        ("REVKA_HOME".into(), spec.home.display().to_string()),
    ];
    let health = health_probe(SidecarClient::new(
        &spec.socket,
        spec.liveness_interval.max(Duration::from_secs(1)),
    ));
    process.readiness = Some(Readiness {
        probe: health.clone(),
        interval: Duration::from_millis(50),
        timeout: spec.startup_timeout,
    });
    process.liveness = Some(Liveness {
        probe: health,
        interval: spec.liveness_interval,
        failures: spec.liveness_failures.max(1),
    });
    process
}

/// A probe that passes when `GET /health` answers `{"status": "ok"}`.
pub fn health_probe(client: SidecarClient) -> ProbeFn {
    Arc::new(move || {
        let client = client.clone();
        Box::pin(async move { matches!(client.get("/health").await, Ok(v) if v["status"] == "ok") })
    })
}

#[cfg(test)]
mod tests;
