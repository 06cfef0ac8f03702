//! The guards in front of every handler: the exact-origin rule with `[gateway]
//! allowed_origins`, and the body cap of routes that never read their body.

use std::net::SocketAddr;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Request, StatusCode};
use serde_json::Value;
use tower::ServiceExt;

use super::super::origin::check;
use super::gateway_in;
use crate::config::{Config, normalise_origin};

fn headers(host: &str, origin: Option<&str>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert("host", HeaderValue::from_str(host).unwrap());
    if let Some(origin) = origin {
        headers.insert("origin", HeaderValue::from_str(origin).unwrap());
    }
    headers
}

/// A present `Origin` must be the gateway's own, `http://<Host name>:<bound port>`, or a
/// configured one; any other loopback origin is another site.
#[test]
fn only_the_gateways_own_origin_and_the_configured_ones_pass() {
    let bound: SocketAddr = "127.0.0.1:8787".parse().unwrap();
    let v6: SocketAddr = "[::1]:8787".parse().unwrap();
    let allowed = vec!["http://localhost:5173".to_owned()];
    let cases: &[(SocketAddr, &str, Option<&str>, bool)] = &[
        (bound, "127.0.0.1:8787", None, true),
        (bound, "127.0.0.1:8787", Some("http://127.0.0.1:8787"), true),
        (bound, "localhost:8787", Some("http://localhost:8787"), true),
        (bound, "localhost:8787", Some("http://LocalHost:8787"), true),
        (v6, "[::1]:8787", Some("http://[::1]:8787"), true),
        // The configured origin.
        (bound, "127.0.0.1:8787", Some("http://localhost:5173"), true),
        // Other loopback origins: another port, another scheme, another name for the host.
        (
            bound,
            "127.0.0.1:8787",
            Some("http://localhost:3000"),
            false,
        ),
        (
            bound,
            "127.0.0.1:8787",
            Some("http://127.0.0.1:3000"),
            false,
        ),
        (
            bound,
            "127.0.0.1:8787",
            Some("https://127.0.0.1:8787"),
            false,
        ),
        (
            bound,
            "127.0.0.1:8787",
            Some("http://localhost:8787"),
            false,
        ),
        (bound, "127.0.0.1:8787", Some("http://127.0.0.1"), false),
        (
            bound,
            "127.0.0.1:8787",
            Some("http://127.0.0.1:8787/"),
            false,
        ),
        (bound, "127.0.0.1:8787", Some("null"), false),
        (bound, "127.0.0.1:8787", Some("http://evil.example"), false),
        // A Host that names another port does not make that port the gateway's.
        (
            bound,
            "127.0.0.1:3000",
            Some("http://127.0.0.1:3000"),
            false,
        ),
        // DNS rebinding: the Host itself is refused.
        (bound, "evil.example:8787", None, false),
    ];
    for (bound, host, origin, ok) in cases {
        let got = check(&headers(host, *origin), *bound, &allowed);
        assert_eq!(got.is_ok(), *ok, "Host {host}, Origin {origin:?}: {got:?}");
    }
    let refused = check(
        &headers("127.0.0.1:8787", Some("http://localhost:3000")),
        bound,
        &[],
    );
    assert_eq!(
        refused.unwrap_err(),
        "Origin \"http://localhost:3000\" is not this gateway's origin (http://127.0.0.1:8787) \
         nor one of [gateway] allowed_origins"
    );
}

#[test]
fn origins_are_compared_in_the_form_browsers_send() {
    for (input, normal) in [
        ("http://localhost:3000", "http://localhost:3000"),
        ("HTTPS://Dash.Example.com", "https://dash.example.com"),
        ("https://dash.example.com:443", "https://dash.example.com"),
        ("http://127.0.0.1:80", "http://127.0.0.1"),
        ("http://[::1]:8080", "http://[::1]:8080"),
        ("http://[::FFFF:7f00:1]", "http://[::ffff:7f00:1]"),
    ] {
        assert_eq!(normalise_origin(input).as_deref(), Ok(normal), "{input}");
    }
    for (input, problem) in [
        ("localhost:3000", "expected scheme://host[:port]"),
        ("ftp://a.example", "scheme \"ftp\" is not http or https"),
        ("http://a.example/", "no path"),
        ("http://a.example?x", "no path, query"),
        ("http://u@a.example", "no user info"),
        ("http://", "no host"),
        ("http://a..example", "is not a host name"),
        ("http://a.example:0", "port \"0\""),
        ("http://a.example:+80", "port \"+80\""),
        ("http://a.example:99999", "port \"99999\""),
        ("http://[nope]", "is not an IPv6 address"),
        ("http://a .example", "whitespace"),
    ] {
        let err = normalise_origin(input).unwrap_err();
        assert!(err.contains(problem), "{input}: {err}");
    }
    let loaded = crate::config::parse(
        "[gateway]\nallowed_origins = [\"HTTP://LOCALHOST:5173\", \"https://d.example:443\"]\n",
        std::path::Path::new("/home/u/.revka/config.toml"),
        &|_: &str| None,
    )
    .unwrap();
    assert_eq!(
        loaded.config.gateway.allowed_origins,
        ["http://localhost:5173", "https://d.example"]
    );
}

/// Every body is capped, also that of a route that ignores it: a reload is not run for an
/// oversized request.
#[tokio::test]
async fn a_reload_with_a_body_over_64_kib_is_refused_with_413_before_reloading() {
    let home = tempfile::tempdir().unwrap();
    let (app, services, token) = gateway_in(home.path(), Config::default_in(home.path()));
    let request = Request::builder()
        .method("POST")
        .uri("/api/reload")
        .header("host", "127.0.0.1:9")
        .header("authorization", format!("Bearer {token}"))
        .body(Body::from(vec![b'x'; 65 * 1024]))
        .unwrap();
    let response = app.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(response.headers()["connection"], "close");
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
        .await
        .unwrap();
    let body: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(body["error"], "request body exceeds 64 KiB");
    assert!(
        services.reloads.lock().unwrap().is_empty(),
        "nothing was reloaded"
    );
}
