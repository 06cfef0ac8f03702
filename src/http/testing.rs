//! Test support for the two listeners: a raw TCP client that sends exactly the bytes it is given
//! (a partial request head, a partial body, nothing at all) and watches for the server closing
//! the connection, and a daemon's services with both listeners serving on real sockets.

use std::net::SocketAddr;
use std::time::Duration;

use ractor::Actor;
use revka_actors::StatusNode;
use revka_actors::supervisor::{Intensity, Strategy, SupervisorActor, SupervisorArguments};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::tree::Services;

/// How long a test waits for a connection to be closed by a timeout of about a second: far
/// longer than the timeout, so a slow machine cannot fail the test, and far shorter than
/// "indefinitely", which is what an unbounded read looks like.
pub(crate) const CLOSE_BOUND: Duration = Duration::from_secs(20);

/// A client connection that writes raw bytes.
pub(crate) struct Raw {
    stream: TcpStream,
}

impl Raw {
    /// Connects to `addr`.
    pub(crate) async fn connect(addr: SocketAddr) -> Self {
        Self {
            stream: TcpStream::connect(addr).await.expect("connect"),
        }
    }

    /// A connection made by the test itself (say, from another local address).
    pub(crate) fn from_stream(stream: TcpStream) -> Self {
        Self { stream }
    }

    /// The socket, to read an answer before the connection closes.
    pub(crate) fn stream_mut(&mut self) -> &mut TcpStream {
        &mut self.stream
    }

    /// Writes `bytes` (and nothing else).
    pub(crate) async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
    }

    /// Writes `bytes`, which may fail if the server has closed the connection.
    pub(crate) async fn try_send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes).await
    }

    /// Reads until the server closes the connection and returns what it sent. Panics if the
    /// connection is still open after `bound`: `what` says what the server should have done.
    pub(crate) async fn until_closed(&mut self, bound: Duration, what: &str) -> String {
        let mut received = Vec::new();
        let read = async {
            let mut buf = [0u8; 4096];
            loop {
                match self.stream.read(&mut buf).await {
                    Ok(0) | Err(_) => break, // closed (a reset also means closed)
                    Ok(n) => received.extend_from_slice(&buf[..n]),
                }
            }
        };
        if tokio::time::timeout(bound, read).await.is_err() {
            panic!(
                "{what}: the connection is still open after {bound:?} (received {:?})",
                String::from_utf8_lossy(&received)
            );
        }
        String::from_utf8_lossy(&received).into_owned()
    }
}

/// Services over `config` in a fresh `$REVKA_HOME`, with a running `sessions` supervisor (so
/// `POST /session` works) and progress broadcaster (so event streams open). Keep the returned directory alive as long as the services.
pub(crate) async fn services(config: impl FnOnce(&mut Config)) -> (Services, tempfile::TempDir) {
    let home = tempfile::tempdir().expect("tempdir");
    let mut cfg = Config::default_in(home.path());
    config(&mut cfg);
    let services = Services::new(cfg, home.path(), None).expect("services");
    let args = SupervisorArguments {
        node: StatusNode::root("sessions", "supervisor"),
        strategy: Strategy::OneForOne,
        intensity: Intensity::default(),
        children: Vec::new(),
    };
    let (sup, _) = SupervisorActor::spawn(None, SupervisorActor, args)
        .await
        .expect("sessions supervisor");
    services.sessions.attach_supervisor(sup);
    // The broadcaster under a supervisor on the services' root node, as in the daemon
    // (`root/progress`).
    let args = SupervisorArguments {
        node: services.status_root.clone(),
        strategy: Strategy::OneForOne,
        intensity: Intensity::default(),
        children: vec![revka_actors::progress::progress_spec(
            services.sessions.progress().clone(),
            revka_actors::supervisor::RestartPolicy::standard(),
        )],
    };
    SupervisorActor::spawn(None, SupervisorActor, args)
        .await
        .expect("a supervisor of the progress broadcaster");
    (services, home)
}

/// Serves `spec` (a listener's spec) on a fresh loopback port until the returned token is
/// cancelled; returns the address.
pub(crate) async fn serve(
    spec: revka_actors::listener::ListenerSpec,
) -> (SocketAddr, CancellationToken) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("local address");
    let stop = CancellationToken::new();
    tokio::spawn((spec.serve)(listener, stop.clone()));
    (addr, stop)
}

/// Sets every `[http]` timeout of `config` to one second.
pub(crate) fn one_second_timeouts(config: &mut Config) {
    config.http.header_read_timeout_secs = 1;
    config.http.body_read_timeout_secs = 1;
    config.http.keepalive_idle_secs = 1;
}

/// What a listener's slow-client test sends, to a route of that listener.
pub(crate) struct SlowRequests<'a> {
    /// A request head that stops in the middle.
    pub(crate) partial_head: &'a [u8],
    /// A whole head announcing a body of 100 bytes, and the start of that body.
    pub(crate) partial_body: &'a [u8],
    /// A whole request, answered, after which the connection stays idle.
    pub(crate) whole: &'a [u8],
}

/// What the slow clients that get an answer read before their connection was closed (the
/// other two read nothing, as [`slow_clients`] checks).
pub(crate) struct SlowClients {
    /// The one that stopped in the middle of its body.
    pub(crate) partial_body: String,
    /// The one kept alive, idle after its answer.
    pub(crate) idle: String,
}

/// Runs the four slow clients against `addr` at once, each until its connection is closed
/// (at most [`CLOSE_BOUND`]), and checks what every listener must do: the silent and the
/// partial-head clients are closed without an answer, the partial-body one is answered 408.
pub(crate) async fn slow_clients(addr: SocketAddr, requests: SlowRequests<'_>) -> SlowClients {
    let (silent, partial_head, partial_body, idle) = tokio::join!(
        slow_client(addr, b"", "a connection that sends nothing"),
        slow_client(addr, requests.partial_head, "a request head that stops"),
        slow_client(addr, requests.partial_body, "a request body that stops"),
        slow_client(addr, requests.whole, "an idle kept-alive connection"),
    );
    assert_eq!(silent, "", "closed without an answer");
    assert_eq!(partial_head, "", "closed without an answer");
    assert!(
        partial_body.starts_with("HTTP/1.1 408 "),
        "a stalled body is answered 408: {partial_body}"
    );
    SlowClients { partial_body, idle }
}

/// One slow client: connects, sends `bytes` (if any), and reads until the server closes.
async fn slow_client(addr: SocketAddr, bytes: &[u8], what: &str) -> String {
    let mut c = Raw::connect(addr).await;
    if !bytes.is_empty() {
        c.send(bytes).await;
    }
    c.until_closed(CLOSE_BOUND, what).await
}
