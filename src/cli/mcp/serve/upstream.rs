//! The bridge's side towards the daemon: when a session ([`Link`]) is made and replaced, the
//! client's handshake kept for replays, and `--start-daemon`. Part of [`super`].
//!
//! The current [`Link`] (endpoint, session, credentials) is read without waiting by every
//! message; only finding a daemon and minting a session are serialised (one connector at a
//! time), so when the daemon goes away the requests that notice it wait for one
//! reconnection, not one each. Links are numbered: a request that failed on link `n` asks for
//! a reconnection *from `n`*, and finds link `n + 1` in place if another task already made it.
//!
//! While a link is up, two tasks go with it: the server stream (`GET /mcp`, [`super::stream`])
//! and a keep-alive `ping` after a minute without traffic, which keeps the daemon's idle
//! timeout from ending a live client's session and notices a restart without a request. Both
//! only *report* a lost link ([`Upstream::report_lost`]); the reconnection is made by the
//! bridge's keeper task, never by a task that the new link will abort.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::json;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tokio_util::sync::CancellationToken;

use super::http1::{Answer, PostError};
use super::io::Output;
use super::link::{Link, link_gone};
use super::spawn::Starter;

/// How long a request that found the daemon gone waits for it to come back.
pub(super) const RECONNECT_PATIENCE: Duration = Duration::from_secs(30);
/// The first wait between looks for a daemon; it doubles up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// A link without traffic for this long is pinged.
pub(super) const KEEPALIVE: Duration = Duration::from_secs(60);
/// Connecting to a loopback daemon either works at once or not at all.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// JSON-RPC error code of "no daemon to talk to" (the server-defined range).
pub(super) const NO_DAEMON: i64 = -32000;

/// What the bridge is told at start-up.
#[derive(Debug)]
pub(crate) struct BridgeConfig {
    /// `$REVKA_HOME`, where `mcp.json` is.
    pub(super) home: PathBuf,
    /// The session's working directory: the bridge's own (the client's project), if it has one.
    pub(super) cwd: Option<PathBuf>,
    /// `--start-daemon`.
    pub(super) start: Option<Starter>,
    /// How long a lost daemon is waited for ([`RECONNECT_PATIENCE`]; shorter in tests).
    pub(super) patience: Duration,
    /// How long a link may be idle before a ping ([`KEEPALIVE`]).
    pub(super) keepalive: Duration,
}

impl BridgeConfig {
    /// The configuration of `revka mcp serve --stdio`.
    pub(crate) fn new(home: PathBuf, cwd: Option<PathBuf>, start: Option<Starter>) -> Self {
        Self {
            home,
            cwd,
            start,
            patience: RECONNECT_PATIENCE,
            keepalive: KEEPALIVE,
        }
    }
}

/// Why the bridge has no session with a daemon. The message is what the client is told.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum UpstreamError {
    /// No `mcp.json`, or the daemon it names does not answer.
    #[error(
        "no Revka daemon is running for {home}{detail}: start it with `revka daemon`, or \
         `revka service start` if it is installed as a service (or give the bridge \
         `--start-daemon`)"
    )]
    NoDaemon {
        /// `$REVKA_HOME`.
        home: String,
        /// What was found instead, e.g. ` (mcp.json names http://…, which refuses connections)`.
        detail: String,
    },
    /// The daemon went away and no daemon answered within the patience.
    #[error(
        "the Revka daemon for {home} stopped and none answered within {secs} s: start it with \
         `revka daemon`, or `revka service start` if it is installed as a service"
    )]
    Lost {
        /// `$REVKA_HOME`.
        home: String,
        /// The patience, in seconds.
        secs: u64,
    },
    /// The daemon answered, but would not open a session (rate limit, session cap, ...).
    #[error("the Revka daemon at {url} refused a session: HTTP {status}: {message}")]
    Refused {
        /// The daemon's base URL.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The daemon's reason.
        message: String,
    },
    /// `mcp.json` names something the bridge will not send a session to.
    #[error("{path} names {url}, which is not a loopback http URL; refusing to use it")]
    NotLoopback {
        /// The discovery file.
        path: String,
        /// The URL it names.
        url: String,
    },
    /// `--start-daemon` could not start one.
    #[error("could not start `revka daemon`: {reason}")]
    StartFailed {
        /// What went wrong, with where the daemon's output went.
        reason: String,
    },
}

/// Who asks for a link: the client's `initialize` is itself the handshake, so a new link made
/// for it replays nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Purpose {
    /// The client's `initialize`.
    Initialize,
    /// Any other message.
    Other,
}

/// The connector's state, behind [`Upstream::connecting`].
#[derive(Debug, Default)]
struct Connector {
    /// The number of the last link made.
    generation: u64,
    /// A reconnection from this link gave up: later ones from it look once, without waiting.
    gave_up: Option<u64>,
}

/// The bridge's view of the daemon; see the [module documentation](self).
#[derive(Debug)]
pub(super) struct Upstream {
    config: BridgeConfig,
    /// A client for a loopback daemon: never through a proxy, never following a redirect.
    pub(super) http: reqwest::Client,
    /// Where `notifications/tools/list_changed` goes after a reconnection.
    out: Output,
    /// The current link; `None` before the first and after a reconnection gave up.
    link: Mutex<Option<Arc<Link>>>,
    /// Held while a daemon is looked for and a session minted.
    connecting: tokio::sync::Mutex<Connector>,
    /// The tasks of the current link (server stream, keep-alive), aborted when it is replaced.
    link_tasks: Mutex<Vec<AbortHandle>>,
    /// The client's `initialize` request, as it sent it: replayed on every new session.
    hello: Mutex<Option<Bytes>>,
    /// The label of new sessions: `stdio bridge`, with the client's name once it is known.
    label: Mutex<String>,
    /// The protocol version the daemon agreed with the client.
    version: Mutex<Option<String>>,
    /// Cancelled once a daemon answered the client's `initialize`: server streams open only
    /// then (a server message must not reach the client before its handshake's answer).
    initialized: CancellationToken,
    /// When a request last went to the daemon (ms since `epoch`), for the keep-alive.
    last_post: AtomicU64,
    epoch: Instant,
    /// Where a link's tasks report that it is lost (read by the bridge's keeper).
    lost: mpsc::UnboundedSender<u64>,
}

/// `std::sync::Mutex::lock`, recovering from poison (nothing here is left half-updated).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Upstream {
    /// The upstream of a bridge; lost links are reported on the returned receiver.
    pub(super) fn new(config: BridgeConfig, out: Output) -> (Self, mpsc::UnboundedReceiver<u64>) {
        let (lost, lost_rx) = mpsc::unbounded_channel();
        let http = reqwest::Client::builder()
            .user_agent(concat!("revka-stdio-bridge/", env!("CARGO_PKG_VERSION")))
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            // Below the daemon's keep-alive idle (120 s): the bridge closes first, so it never
            // reuses a connection the daemon is closing.
            .pool_idle_timeout(Duration::from_secs(60))
            // Plain HTTP to a loopback daemon only (`link::loopback_url`): reading the system's
            // CA certificates was ~10 ms of every bridge's start for nothing.
            .tls_built_in_root_certs(false)
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        let upstream = Self {
            config,
            http,
            out,
            link: Mutex::new(None),
            connecting: tokio::sync::Mutex::new(Connector::default()),
            link_tasks: Mutex::new(Vec::new()),
            hello: Mutex::new(None),
            label: Mutex::new("stdio bridge".to_owned()),
            version: Mutex::new(None),
            initialized: CancellationToken::new(),
            last_post: AtomicU64::new(0),
            epoch: Instant::now(),
            lost,
        };
        (upstream, lost_rx)
    }

    /// The current link, if there is one.
    pub(super) fn current(&self) -> Option<Arc<Link>> {
        lock(&self.link).clone()
    }

    /// The current link, or a new one (one look for a daemon, starting one with
    /// `--start-daemon`).
    pub(super) async fn link(
        self: &Arc<Self>,
        purpose: Purpose,
    ) -> Result<Arc<Link>, UpstreamError> {
        if let Some(link) = self.current() {
            return Ok(link);
        }
        let mut connector = self.connecting.lock().await;
        if let Some(link) = self.current() {
            return Ok(link);
        }
        self.establish(&mut connector, Duration::ZERO, purpose)
            .await
    }

    /// A link other than `failed`: the one another task already made, or a new one, waiting
    /// for a daemon up to the patience (once per lost link: later callers look only once).
    pub(super) async fn reconnect(
        self: &Arc<Self>,
        failed: u64,
    ) -> Result<Arc<Link>, UpstreamError> {
        let mut connector = self.connecting.lock().await;
        match self.current() {
            Some(link) if link.generation != failed => return Ok(link),
            Some(_) => drop(self.drop_link()),
            None => {}
        }
        let patience = if connector.gave_up == Some(failed) {
            Duration::ZERO
        } else {
            self.config.patience
        };
        tracing::warn!(link = failed, "the daemon went away; reconnecting");
        let result = self
            .establish(&mut connector, patience, Purpose::Other)
            .await;
        match &result {
            Ok(link) => tracing::warn!(link = link.generation, "reconnected to the daemon"),
            Err(e) => {
                connector.gave_up = Some(failed);
                tracing::warn!(error = %e, "no daemon came back");
            }
        }
        result.map_err(|e| match e {
            UpstreamError::NoDaemon { home, .. } if !patience.is_zero() => UpstreamError::Lost {
                home,
                secs: patience.as_secs(),
            },
            other => other,
        })
    }

    /// Reports that link `generation` is lost (its server stream or keep-alive found the
    /// daemon gone); the bridge's keeper reconnects.
    pub(super) fn report_lost(&self, generation: u64) {
        let _ = self.lost.send(generation);
    }

    /// Looks for a daemon until one answers or `patience` runs out, then installs the new link
    /// (replaying the client's handshake unless `purpose` is that handshake).
    async fn establish(
        self: &Arc<Self>,
        connector: &mut Connector,
        patience: Duration,
        purpose: Purpose,
    ) -> Result<Arc<Link>, UpstreamError> {
        let mut deadline = Instant::now() + patience;
        let mut backoff = MIN_BACKOFF;
        let session = loop {
            let label = lock(&self.label).clone();
            let opened = Link::open(
                &self.http,
                &self.config.home,
                self.config.cwd.as_deref(),
                &label,
                connector.generation + 1,
            )
            .await;
            let error = match opened {
                Ok(link) => break link,
                Err(e) => e,
            };
            if let (UpstreamError::NoDaemon { .. }, Some(starter)) = (&error, &self.config.start) {
                match starter.start() {
                    Ok(true) => deadline = deadline.max(Instant::now() + starter.patience()),
                    Ok(false) => {}
                    Err(e) => return Err(e),
                }
            }
            if let Some(starter) = &self.config.start
                && let Some(e) = starter.failed()
            {
                return Err(e);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(error);
            }
            tokio::time::sleep(backoff.min(left)).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        };
        let link = Arc::new(session);
        let replaced = connector.generation > 0;
        connector.generation = link.generation;
        let hello = lock(&self.hello).clone();
        if purpose == Purpose::Other
            && let Some(hello) = hello.clone()
        {
            self.replay(&link, hello).await;
        }
        *lock(&self.link) = Some(link.clone());
        self.start_link_tasks(&link);
        if replaced && hello.is_some() {
            // The new daemon's tools (and this new session's activations) may differ.
            let note = json!({ "jsonrpc": "2.0", "method": "notifications/tools/list_changed" });
            self.out.send(Bytes::from(note.to_string())).await;
        }
        Ok(link)
    }

    /// Replays the client's handshake on a new session; the answers are not the client's.
    async fn replay(&self, link: &Link, hello: Bytes) {
        const INITIALIZED: &[u8] = br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
        for body in [hello, Bytes::from_static(INITIALIZED)] {
            if link.post_small(body).await.is_none() {
                tracing::debug!("replaying the handshake failed");
            }
        }
    }

    /// POSTs one message on `link`; the answer's body is the caller's to read.
    pub(super) async fn post(&self, link: &Link, body: Bytes) -> Result<Answer, PostError> {
        self.touch();
        link.post(body).await
    }

    /// Whether the daemon still answers on `link`: a `ping` answered 200.
    pub(super) async fn check(&self, link: &Link) -> bool {
        link.alive().await
    }

    /// Notes traffic on the link (for the keep-alive).
    fn touch(&self) {
        let now = self.epoch.elapsed().as_millis() as u64;
        self.last_post.store(now, Ordering::Relaxed);
    }

    /// Time since the last POST.
    fn idle(&self) -> Duration {
        let last = Duration::from_millis(self.last_post.load(Ordering::Relaxed));
        self.epoch.elapsed().saturating_sub(last)
    }

    /// Keeps the client's `initialize` for replays, and its name for session labels.
    pub(super) fn remember_hello(&self, line: &Bytes, client_name: Option<&str>) {
        *lock(&self.hello) = Some(line.clone());
        if let Some(name) = client_name.filter(|n| !n.trim().is_empty()) {
            // The daemon allows 200 characters.
            let name: String = name.trim().chars().take(150).collect();
            *lock(&self.label) = format!("stdio bridge ({name})");
        }
    }

    /// A daemon answered the client's `initialize`, agreeing on `version`.
    pub(super) fn initialized(&self, version: Option<String>) {
        *lock(&self.version) = version;
        self.initialized.cancel();
    }

    /// Resolves once a daemon answered the client's `initialize`.
    pub(super) async fn handshake_done(&self) {
        self.initialized.cancelled().await;
    }

    /// The protocol version the daemon agreed on, if `initialize` was answered.
    pub(super) fn version(&self) -> Option<String> {
        lock(&self.version).clone()
    }

    /// Starts the tasks that go with `link`: the server stream and the keep-alive.
    fn start_link_tasks(self: &Arc<Self>, link: &Arc<Link>) {
        let stream = tokio::spawn(super::stream::listen(
            self.clone(),
            link.clone(),
            self.out.clone(),
        ));
        let keepalive = tokio::spawn(keepalive(self.clone(), link.clone()));
        let mut tasks = lock(&self.link_tasks);
        for old in tasks.drain(..) {
            old.abort();
        }
        tasks.push(stream.abort_handle());
        tasks.push(keepalive.abort_handle());
    }

    /// Forgets the current link and stops its tasks.
    fn drop_link(&self) -> Option<Arc<Link>> {
        for task in lock(&self.link_tasks).drain(..) {
            task.abort();
        }
        lock(&self.link).take()
    }

    /// Ends the session (best effort, [`DELETE_TIMEOUT`] at most) and stops the link's tasks.
    pub(super) async fn close(&self) {
        let Some(link) = self.drop_link() else {
            return;
        };
        link.end(&self.http).await;
    }
}

/// Pings the daemon whenever the link has been idle for the keep-alive period; a daemon that
/// is gone (or no longer knows the session) is reported, every period until the link is
/// replaced.
async fn keepalive(up: Arc<Upstream>, link: Arc<Link>) {
    let every = up.config.keepalive;
    loop {
        let idle = up.idle();
        if idle < every {
            tokio::time::sleep(every - idle).await;
            continue;
        }
        up.touch();
        let gone = link_gone(&link).await;
        if gone {
            // The keeper looks again and reconnects, which aborts this task; if the daemon
            // answers it after all, pinging goes on.
            up.report_lost(link.generation);
        }
    }
}
