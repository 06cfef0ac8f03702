//! The shared serve loop on real sockets, with a small router: graceful stop, the client's
//! address for handlers, bodies that arrive in pieces in time, and requests on one kept-alive
//! connection. (The listeners' own tests cover the slow clients: `mcp_server` and `gateway`.)

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::ConnectInfo;
use axum::routing::{get, post};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::testing::{CLOSE_BOUND, Raw};
use super::{Limits, WithPeer, serve};

/// Serves a test router with `limits`; the address, the stop token, the serve task, and the
/// notify that lets `GET /held` answer.
async fn start(
    limits: Limits,
) -> (
    SocketAddr,
    CancellationToken,
    tokio::task::JoinHandle<std::io::Result<()>>,
    Arc<Notify>,
) {
    let release = Arc::new(Notify::new());
    let held = release.clone();
    let router = Router::new()
        .route(
            "/len",
            post(|body: Bytes| async move { body.len().to_string() }),
        )
        .route(
            "/peer",
            get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.to_string() }),
        )
        .route(
            "/held",
            get(move || async move {
                held.notified().await;
                "released"
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let task = tokio::spawn(serve(
        listener,
        move || limits,
        move |peer| WithPeer::new(router.clone(), peer),
        stop.clone(),
    ));
    (addr, stop, task, release)
}

fn one_second() -> Limits {
    Limits {
        header_read: Duration::from_secs(1),
        body_read: Duration::from_secs(1),
        keepalive_idle: Duration::from_secs(1),
        max_connections_per_source: 16,
    }
}

/// A stop closes idle connections at once, lets a request in progress finish (its client gets
/// the whole answer), refuses new connections, and the serve loop returns once all are done.
#[tokio::test(flavor = "multi_thread")]
async fn a_stop_lets_requests_in_progress_finish() {
    let (addr, stop, task, release) = start(Limits::default()).await;
    let mut idle = Raw::connect(addr).await;
    let mut busy = Raw::connect(addr).await;
    busy.send(b"GET /held HTTP/1.1\r\nHost: x\r\n\r\n").await;
    // The idle connection has been accepted once a request on it is answered.
    idle.send(b"GET /peer HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let mut buf = [0u8; 1024];
    let n = tokio::io::AsyncReadExt::read(idle.stream_mut(), &mut buf)
        .await
        .unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200 "));

    stop.cancel();
    idle.until_closed(CLOSE_BOUND, "an idle connection at a stop")
        .await;
    assert!(!task.is_finished(), "a request is still in progress");
    release.notify_one();
    let answer = busy
        .until_closed(CLOSE_BOUND, "a busy connection at a stop")
        .await;
    assert!(
        answer.starts_with("HTTP/1.1 200 ") && answer.ends_with("released"),
        "the answer in full: {answer}"
    );
    tokio::time::timeout(CLOSE_BOUND, task)
        .await
        .expect("the loop returns once the connections are done")
        .unwrap()
        .unwrap();
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no longer listening"
    );
}

/// Handlers get the client's address; requests follow each other on one kept-alive
/// connection; a body that arrives in pieces, within the body timeout, is read in full.
#[tokio::test(flavor = "multi_thread")]
async fn kept_alive_requests_and_bodies_in_pieces_are_served() {
    let (addr, stop, _task, _) = start(one_second()).await;
    let mut c = Raw::connect(addr).await;
    let local = c.stream_mut().local_addr().unwrap();
    c.send(b"GET /peer HTTP/1.1\r\nHost: x\r\n\r\n").await;
    c.send(b"POST /len HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n01234")
        .await;
    // The first answer is out before the rest of the second body is sent.
    let mut seen = String::new();
    let mut buf = [0u8; 1024];
    while !seen.contains(&local.to_string()) {
        let n = tokio::io::AsyncReadExt::read(c.stream_mut(), &mut buf)
            .await
            .unwrap();
        assert!(n > 0, "closed early: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    c.send(b"56789").await;
    c.send(b"POST /len HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc")
        .await;
    let rest = c.until_closed(CLOSE_BOUND, "Connection: close").await;
    let answers: Vec<&str> = rest.split("HTTP/1.1 ").skip(1).collect();
    assert_eq!(answers.len(), 2, "{rest}");
    assert!(
        answers[0].starts_with("200 ") && answers[0].ends_with("\r\n\r\n10"),
        "{rest}"
    );
    assert!(
        answers[1].starts_with("200 ") && answers[1].ends_with("\r\n\r\n3"),
        "{rest}"
    );
    stop.cancel();
}

/// The limits are read for each accepted connection: a change (a reload) applies to the next
/// connection, and the ones already open keep theirs.
#[tokio::test(flavor = "multi_thread")]
async fn limits_are_read_for_each_new_connection() {
    use std::sync::atomic::{AtomicU32, Ordering};
    let cap = Arc::new(AtomicU32::new(1));
    let read = cap.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let router = Router::new().route("/", get(|| async { "ok" }));
    tokio::spawn(serve(
        listener,
        move || Limits {
            max_connections_per_source: read.load(Ordering::SeqCst),
            ..Limits::default()
        },
        move |_| router.clone(),
        stop.clone(),
    ));
    let _first = Raw::connect(addr).await;
    let mut refused = Raw::connect(addr).await;
    let answer = refused.until_closed(CLOSE_BOUND, "past a cap of 1").await;
    assert!(answer.starts_with("HTTP/1.1 503 "), "{answer}");
    cap.store(2, Ordering::SeqCst);
    let mut admitted = Raw::connect(addr).await;
    admitted
        .send(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await;
    let answer = admitted
        .until_closed(CLOSE_BOUND, "within a cap of 2")
        .await;
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    stop.cancel();
}
