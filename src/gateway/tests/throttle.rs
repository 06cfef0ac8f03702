//! Failed attempts, on tokio's paused clock: each waits longer than the one before from the
//! same source (every loopback address being one), a wrong pairing code too; past
//! [`MAX_DELAYED_FAILURES`] waiting ones the answer is 429 at once; and none of it ever holds
//! up or refuses a valid token.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use axum::http::{Request, StatusCode};
use serde_json::Value;
use tempfile::TempDir;
use tokio::time::Instant;
use tower::ServiceExt;

use super::super::Gateway;
use crate::auth::{MAX_DELAYED_FAILURES, read_owner_token};
use crate::config::Config;
use crate::tree::Services;

const MS: Duration = Duration::from_millis(1);

struct Fixture {
    _home: TempDir,
    gateway: Gateway,
    router: Router,
    owner: String,
}

impl Fixture {
    fn new() -> Self {
        let home = tempfile::tempdir().unwrap();
        let services = Services::new(Config::default_in(home.path()), home.path(), None).unwrap();
        services.tokens.ensure_owner_token(home.path()).unwrap();
        let owner = read_owner_token(home.path()).unwrap();
        let gateway = Gateway::new(services, "127.0.0.1:9".parse().unwrap());
        let router = gateway.clone().router();
        Self {
            _home: home,
            gateway,
            router,
            owner,
        }
    }

    /// `GET /api/actors` from `peer` with `token` (none: no `Authorization`): the status, the
    /// body, and how long the answer took.
    fn actors(
        &self,
        peer: &str,
        token: Option<&str>,
    ) -> impl Future<Output = (StatusCode, Value, Duration)> + Send + 'static {
        let mut request = Request::builder()
            .uri("/api/actors")
            .header("host", "127.0.0.1:9");
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        self.send(peer, request.body(Body::empty()).unwrap())
    }

    /// `POST /pair` with `code`, from `peer`.
    fn pair(
        &self,
        peer: &str,
        code: &str,
    ) -> impl Future<Output = (StatusCode, Value, Duration)> + Send + 'static {
        let request = Request::builder()
            .method("POST")
            .uri("/pair")
            .header("host", "127.0.0.1:9")
            .header("x-pairing-code", code)
            .body(Body::empty())
            .unwrap();
        self.send(peer, request)
    }

    fn send(
        &self,
        peer: &str,
        request: Request<Body>,
    ) -> impl Future<Output = (StatusCode, Value, Duration)> + Send + 'static {
        let peer: SocketAddr = peer.parse().unwrap();
        let app = self.router.clone().layer(MockConnectInfo(peer));
        async move {
            let started = Instant::now();
            let response = app.oneshot(request).await.unwrap();
            let took = started.elapsed();
            let status = response.status();
            let retry_after = response.headers().get("retry-after").cloned();
            let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
                .await
                .unwrap();
            let mut body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            if let Some(v) = retry_after {
                body["retry_after"] = Value::from(v.to_str().unwrap());
            }
            (status, body, took)
        }
    }
}

/// The finding: ten bad tokens from any local process used to lock the owner out for five
/// minutes. Now any number of them only slow themselves down.
#[tokio::test(start_paused = true)]
async fn a_valid_token_is_never_refused_however_many_bad_ones_came_before() {
    let fixture = Fixture::new();
    // Many at once, then many in a row, from the address every local process shares.
    let burst: Vec<_> = (0..20)
        .map(|_| tokio::spawn(fixture.actors("127.0.0.1:40000", Some("rvk_wrong"))))
        .collect();
    for task in burst {
        let (status, body, _) = task.await.unwrap();
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    }
    for _ in 0..12 {
        let (status, _, took) = fixture.actors("127.0.0.1:40001", Some("rvk_wrong")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(took >= 3200 * MS, "{took:?}");
    }
    let (status, body, took) = fixture
        .actors("127.0.0.1:40002", Some(&fixture.owner))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["path"], "root");
    assert_eq!(took, Duration::ZERO, "not delayed either");
}

/// Each failure of a source waits twice as long as the one before, up to the cap, and the
/// source is the whole loopback range: rotating through `127.0.0.0/8` and `::1` does not start
/// over. Another source starts at the first delay.
#[tokio::test(start_paused = true)]
async fn failures_wait_longer_and_longer_even_from_rotating_loopback_addresses() {
    let fixture = Fixture::new();
    let peers = [
        "127.0.0.1:1000",
        "127.0.0.2:1000",
        "127.1.2.3:1000",
        "[::1]:1000",
        "127.0.0.9:1000",
        "127.0.0.10:1000",
        "127.0.0.11:1000",
    ];
    let mut waited = Vec::new();
    for peer in peers {
        let (status, _, took) = fixture.actors(peer, Some("rvk_wrong")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        waited.push(took);
    }
    assert_eq!(
        waited,
        [100, 200, 400, 800, 1600, 3200, 3200].map(|ms| ms * MS)
    );
    let (_, _, took) = fixture.actors("192.0.2.1:1000", Some("rvk_wrong")).await;
    assert_eq!(took, 100 * MS, "another source");
    // A wrong pairing code is a failure of the same kind.
    let (status, body, took) = fixture.pair("127.0.0.1:1000", "2222-2222").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["error"], "pairing failed: invalid pairing code");
    assert_eq!(took, 3200 * MS);
    // No token at all is no guess: answered at once, and not counted.
    let (status, _, took) = fixture.actors("192.0.2.2:1000", None).await;
    assert_eq!((status, took), (StatusCode::UNAUTHORIZED, Duration::ZERO));
    let (_, _, took) = fixture.actors("192.0.2.2:1000", Some("rvk_wrong")).await;
    assert_eq!(took, 100 * MS, "the first counted failure");
}

/// At most [`MAX_DELAYED_FAILURES`] failures wait at once: past that, 429 at once, so an
/// attacker cannot keep more requests asleep; the owner is served all the while.
#[tokio::test(start_paused = true)]
async fn past_64_waiting_failures_the_answer_is_429_at_once() {
    let fixture = Fixture::new();
    let waiting: Vec<_> = (0..MAX_DELAYED_FAILURES)
        .map(|i| {
            let peer = format!("198.51.100.{}:1000", i % 200 + 1);
            tokio::spawn(fixture.actors(&peer, Some("rvk_wrong")))
        })
        .collect();
    // Until every one of them holds a permit (no time passes: nothing else is running).
    while fixture.gateway.inner.delayed.available_permits() > 0 {
        tokio::task::yield_now().await;
    }
    let (status, body, took) = fixture.actors("203.0.113.1:1000", Some("rvk_wrong")).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(took, Duration::ZERO);
    assert_eq!(body["retry_after"], "1");
    assert_eq!(
        body["error"],
        "too many failed authentication attempts in progress; retry in 1 s"
    );
    let (status, _, took) = fixture.actors("127.0.0.1:1000", Some(&fixture.owner)).await;
    assert_eq!((status, took), (StatusCode::OK, Duration::ZERO));
    for task in waiting {
        let (status, _, _) = task.await.unwrap();
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(
        fixture.gateway.inner.delayed.available_permits(),
        MAX_DELAYED_FAILURES,
        "every permit returned"
    );
}
