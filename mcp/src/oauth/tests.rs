//! The OAuth flows over real sockets against one small axum server that is both an
//! OAuth-protected MCP endpoint and its authorization server, with switches for every kind of
//! bad answer; the browser is a task that follows the authorization redirect. (The official
//! conformance suite's `auth/*` scenarios run in the integration tests.)

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use super::store::Store;
use super::*;

/// How the mock misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
enum Bad {
    #[default]
    Nothing,
    HugeMetadata,
    MalformedMetadata,
    ForeignResource,
    ForeignResourceMetadata,
    TokenHtml,
    TokenHang,
    NoPkce,
    /// No authorization at all: /mcp answers anyone, no protected resource metadata.
    Open,
}

#[derive(Default)]
struct Mock {
    base: String,
    bad: Bad,
    expires_in: u64,
    challenge: Option<String>,
    access: Vec<String>,
    refresh: Option<String>,
    refresh_revoked: bool,
    grants: HashMap<String, u32>,
    counter: u32,
}

type Shared = Arc<Mutex<Mock>>;

async fn serve(bad: Bad, expires_in: u64) -> (String, Shared) {
    let mock = Arc::new(Mutex::new(Mock {
        bad,
        expires_in,
        ..Mock::default()
    }));
    let app = Router::new()
        .route("/mcp", post(mcp))
        .route("/.well-known/oauth-protected-resource/mcp", get(prm))
        .route("/.well-known/oauth-authorization-server", get(as_metadata))
        .route("/register", post(register))
        .route("/authorize", get(authorize))
        .route("/token", post(token))
        .with_state(mock.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    mock.lock().unwrap().base = base.clone();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, mock)
}

async fn mcp(State(m): State<Shared>, headers: HeaderMap) -> Response {
    let m = m.lock().unwrap();
    if m.bad == Bad::Open {
        return axum::Json(json!({"jsonrpc": "2.0", "id": 0, "result": {}})).into_response();
    }
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if token.is_some_and(|t| m.access.iter().any(|a| a == t)) {
        return axum::Json(json!({"jsonrpc": "2.0", "id": 0, "result": {}})).into_response();
    }
    let metadata = if m.bad == Bad::ForeignResourceMetadata {
        "http://127.0.0.2:9/.well-known/oauth-protected-resource/mcp".to_owned()
    } else {
        format!("{}/.well-known/oauth-protected-resource/mcp", m.base)
    };
    (
        StatusCode::UNAUTHORIZED,
        [(
            "www-authenticate",
            format!(r#"Bearer resource_metadata="{metadata}", scope="mcp:tools""#),
        )],
        axum::Json(json!({"error": "invalid_token"})),
    )
        .into_response()
}

async fn prm(State(m): State<Shared>) -> Response {
    let m = m.lock().unwrap();
    if m.bad == Bad::Open {
        return StatusCode::NOT_FOUND.into_response();
    }
    let resource = if m.bad == Bad::ForeignResource {
        "https://elsewhere.example/mcp".to_owned()
    } else {
        format!("{}/mcp", m.base)
    };
    axum::Json(json!({"resource": resource, "authorization_servers": [m.base]})).into_response()
}

async fn as_metadata(State(m): State<Shared>) -> Response {
    let m = m.lock().unwrap();
    match m.bad {
        Bad::HugeMetadata => {
            let pad = "x".repeat(MAX_DOCUMENT + 10);
            axum::Json(json!({"issuer": m.base, "pad": pad})).into_response()
        }
        Bad::MalformedMetadata => {
            ([("content-type", "application/json")], "{\"issuer\": ").into_response()
        }
        _ => {
            let mut doc = json!({
                "issuer": m.base,
                "authorization_endpoint": format!("{}/authorize", m.base),
                "token_endpoint": format!("{}/token", m.base),
                "registration_endpoint": format!("{}/register", m.base),
                "code_challenge_methods_supported": ["S256"],
                "token_endpoint_auth_methods_supported": ["none"],
            });
            if m.bad == Bad::NoPkce {
                doc.as_object_mut()
                    .unwrap()
                    .remove("code_challenge_methods_supported");
            }
            axum::Json(doc).into_response()
        }
    }
}

async fn register(axum::Json(body): axum::Json<Value>) -> Response {
    assert_eq!(body["token_endpoint_auth_method"], "none");
    assert!(
        body["redirect_uris"][0]
            .as_str()
            .unwrap()
            .starts_with("http://127.0.0.1:")
    );
    (
        StatusCode::CREATED,
        axum::Json(json!({"client_id": "client-1"})),
    )
        .into_response()
}

async fn authorize(State(m): State<Shared>, Query(q): Query<HashMap<String, String>>) -> Response {
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["client_id"], "client-1");
    assert_eq!(q["scope"], "mcp:tools");
    let mut m = m.lock().unwrap();
    assert_eq!(q["resource"], format!("{}/mcp", m.base));
    m.challenge = Some(q["code_challenge"].clone());
    let to = format!("{}?code=code-1&state={}", q["redirect_uri"], q["state"]);
    (StatusCode::FOUND, [("location", to)]).into_response()
}

async fn token(State(m): State<Shared>, body: String) -> Response {
    let f: HashMap<String, String> = url::form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    let bad = m.lock().unwrap().bad;
    match bad {
        Bad::TokenHtml => {
            return ([("content-type", "text/html")], "<html>login</html>").into_response();
        }
        Bad::TokenHang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        _ => {}
    }
    let mut m = m.lock().unwrap();
    let grant = f["grant_type"].clone();
    *m.grants.entry(grant.clone()).or_default() += 1;
    let refused = |e: &str| {
        (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": e, "error_description": "no"})),
        )
            .into_response()
    };
    match grant.as_str() {
        "authorization_code" => {
            let verifier = &f["code_verifier"];
            if m.challenge.as_deref() != Some(&super::pkce::s256(verifier)) || f["code"] != "code-1"
            {
                return refused("invalid_grant");
            }
        }
        "refresh_token" => {
            if m.refresh_revoked || m.refresh.as_deref() != Some(&f["refresh_token"]) {
                return refused("invalid_grant");
            }
        }
        _ => return refused("unsupported_grant_type"),
    }
    assert_eq!(f["resource"], format!("{}/mcp", m.base));
    m.counter += 1;
    let (access, refresh) = (format!("at-{}", m.counter), format!("rt-{}", m.counter));
    m.access.push(access.clone());
    m.refresh = Some(refresh.clone());
    axum::Json(json!({
        "access_token": access, "token_type": "Bearer", "refresh_token": refresh,
        "expires_in": m.expires_in, "scope": "mcp:tools"
    }))
    .into_response()
}

/// A browser: follows the authorization redirect to the callback, optionally changing the
/// `state` first or hitting the callback twice; records what the callback answered.
#[derive(Default)]
struct Follow {
    forge_state: bool,
    twice: bool,
    answers: Arc<Mutex<Vec<u16>>>,
}

impl UserAgent for Follow {
    fn open(&self, url: &str) -> Result<(), String> {
        let (url, forge, twice, answers) = (
            url.to_owned(),
            self.forge_state,
            self.twice,
            self.answers.clone(),
        );
        tokio::spawn(async move {
            let http = reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap();
            let resp = http.get(&url).send().await.unwrap();
            let mut callback = resp.headers()["location"].to_str().unwrap().to_owned();
            if forge {
                callback = callback.replace("state=", "state=forged");
            }
            for _ in 0..if twice { 2 } else { 1 } {
                let status = http.get(&callback).send().await.unwrap().status().as_u16();
                answers.lock().unwrap().push(status);
            }
        });
        Ok(())
    }
}

/// The mock with 2 s tokens, and a login to it stored in a new directory.
async fn logged_in() -> (String, Shared, tempfile::TempDir) {
    let (base, mock) = serve(Bad::Nothing, 2).await;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("{base}/mcp");
    let login = authorizer(dir.path(), &url, Some(Follow::default()));
    login.login().await.unwrap();
    (url, mock, dir)
}

/// An authorizer of the mock's server, storing under `dir`; `agent` plays the person.
fn authorizer(dir: &std::path::Path, url: &str, agent: Option<Follow>) -> Arc<Authorizer> {
    Authorizer::new(spec(dir, agent), url, reqwest::Client::new()).unwrap()
}

fn spec(dir: &std::path::Path, agent: Option<Follow>) -> OAuthSpec {
    let mut spec = OAuthSpec::new("remote", dir.join("oauth"));
    spec.interactive = agent.map(|a| Interactive(Arc::new(a)));
    spec.login_timeout = Duration::from_secs(10);
    spec
}

fn stored(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir.join("oauth"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".json"))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn login_stores_owner_only_tokens_and_a_refresh_rotates_them() {
    let (base, mock) = serve(Bad::Nothing, 2).await;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("{base}/mcp");
    let auth = authorizer(dir.path(), &url, Some(Follow::default()));
    let granted = auth.login().await.unwrap();
    assert_eq!(granted.scope.as_deref(), Some("mcp:tools"));
    assert!(granted.refreshable);
    let file = dir.path().join("oauth/remote.json");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&file), 0o600);
    assert_eq!(mode(&dir.path().join("oauth")), 0o700);
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.contains("\"at-1\"") && text.contains("\"rt-1\""),
        "{text}"
    );
    assert_eq!(
        stored_state(&spec(dir.path(), None), &url).unwrap().label(),
        "authorized"
    );
    // The lifetime is 2 s: renewed at half of it, with the refresh token rotated.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let header = auth.bearer().await.unwrap().unwrap();
    assert_eq!(header.to_str().unwrap(), "Bearer at-2");
    assert_eq!(mock.lock().unwrap().grants["refresh_token"], 1);
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.contains("\"rt-2\"") && !text.contains("\"rt-1\""),
        "{text}"
    );
    // Secrets never print.
    let debug = format!(
        "{:?}",
        Store::new(dir.path().join("oauth")).load("remote", &url)
    );
    assert!(
        !debug.contains("at-2") && !debug.contains("rt-2"),
        "{debug}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_refresh_is_recorded_and_asks_for_a_login() {
    let (url, mock, dir) = logged_in().await;
    mock.lock().unwrap().refresh_revoked = true;
    // The daemon's side: no person.
    let daemon = authorizer(dir.path(), &url, None);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let err = daemon.bearer().await.unwrap_err().to_string();
    assert!(
        err.contains("invalid_grant") && err.ends_with("run `revka mcp login remote`"),
        "{err}"
    );
    assert_eq!(
        stored_state(&spec(dir.path(), None), &url).unwrap(),
        AuthState::Expired
    );
    // The next connection fails at once (no token is sent, the 401 cannot be answered).
    assert!(daemon.bearer().await.unwrap().is_none());
    let err = daemon.challenged(401, None, None).await.unwrap_err();
    assert!(matches!(err, OAuthError::NeedsLogin { .. }), "{err}");
    assert_eq!(
        mock.lock().unwrap().grants["refresh_token"],
        1,
        "refused once, not retried"
    );
}

/// The refresher renews an idle connection's token ahead of expiry, and returns the login
/// hint once the refresh is refused (the transport then ends the connection with it).
#[tokio::test(flavor = "multi_thread")]
async fn the_refresher_renews_ahead_of_expiry_and_returns_when_the_token_dies() {
    let (url, mock, dir) = logged_in().await;
    let daemon = authorizer(dir.path(), &url, None);
    assert_eq!(
        daemon.bearer().await.unwrap().unwrap().to_str().unwrap(),
        "Bearer at-1"
    );
    let refresher = tokio::spawn(daemon.clone().run_refresher());
    // The mock counts a grant as it answers it; the token is adopted a moment later (a loaded
    // machine showed the gap): wait for both.
    let header = || {
        daemon
            .current_header()
            .and_then(|h| h.to_str().ok().map(str::to_owned))
    };
    for _ in 0..400 {
        if mock.lock().unwrap().grants.get("refresh_token") == Some(&2)
            && header().as_deref() == Some("Bearer at-3")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(
        mock.lock().unwrap().grants["refresh_token"],
        2,
        "renewed twice while idle"
    );
    assert_eq!(
        daemon.current_header().unwrap().to_str().unwrap(),
        "Bearer at-3"
    );
    mock.lock().unwrap().refresh_revoked = true;
    let dead = tokio::time::timeout(Duration::from_secs(10), refresher)
        .await
        .expect("the refresher returns")
        .unwrap();
    assert!(matches!(dead, OAuthError::NeedsLogin { .. }), "{dead}");
    assert!(
        dead.to_string().ends_with("run `revka mcp login remote`"),
        "{dead}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_documents_and_token_endpoints_are_precise_errors_and_store_nothing() {
    for (bad, want) in [
        (Bad::HugeMetadata, "is larger than 256 KiB"),
        (Bad::MalformedMetadata, "is malformed JSON"),
        (
            Bad::ForeignResource,
            "is for resource https://elsewhere.example/mcp",
        ),
        (
            Bad::ForeignResourceMetadata,
            "is on another origin than the MCP server",
        ),
        (Bad::NoPkce, "does not support PKCE with S256"),
        (Bad::TokenHtml, "answered text/html (HTTP 200 OK), not JSON"),
        (Bad::TokenHang, "timed out: no answer within 2 s"),
    ] {
        let (base, _mock) = serve(bad, 3600).await;
        let dir = tempfile::tempdir().unwrap();
        let url = format!("{base}/mcp");
        let auth = authorizer(dir.path(), &url, Some(Follow::default()));
        let err = auth.login().await.unwrap_err().to_string();
        assert!(err.contains(want), "{bad:?}: {err}");
        assert!(stored(dir.path()).is_empty(), "{bad:?}: nothing stored");
    }
}

/// Waits (at most 10 s) until the browser task saw `n` answers.
async fn wait_for(answers: &Mutex<Vec<u16>>, n: usize) {
    for _ in 0..500 {
        if answers.lock().unwrap().len() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_forged_state_fails_the_login_and_a_second_callback_hit_is_refused() {
    let (base, _mock) = serve(Bad::Nothing, 3600).await;
    let url = format!("{base}/mcp");

    let dir = tempfile::tempdir().unwrap();
    let forged = Follow {
        forge_state: true,
        ..Follow::default()
    };
    let answers = forged.answers.clone();
    let auth = authorizer(dir.path(), &url, Some(forged));
    let err = auth.login().await.unwrap_err().to_string();
    assert!(err.contains("state does not match"), "{err}");
    wait_for(&answers, 1).await;
    assert_eq!(*answers.lock().unwrap(), [400]);
    assert!(stored(dir.path()).is_empty());

    let dir = tempfile::tempdir().unwrap();
    let twice = Follow {
        twice: true,
        ..Follow::default()
    };
    let answers = twice.answers.clone();
    let auth = authorizer(dir.path(), &url, Some(twice));
    auth.login().await.unwrap();
    wait_for(&answers, 2).await;
    assert_eq!(*answers.lock().unwrap(), [200, 410]);
    assert_eq!(stored(dir.path()), ["remote.json"]);
}

/// A server that asks for no authorization is not authorized: `login` says so (and `revka
/// mcp call` takes it as nothing to do), without guessing 2025-03-26 default endpoints.
#[tokio::test(flavor = "multi_thread")]
async fn a_server_that_asks_for_nothing_is_not_authorized() {
    let (base, mock) = serve(Bad::Open, 3600).await;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("{base}/mcp");
    let err = authorizer(dir.path(), &url, Some(Follow::default()))
        .login()
        .await
        .unwrap_err();
    assert!(matches!(err, OAuthError::NotRequired(_)), "{err}");
    assert!(
        err.to_string().contains("does not ask for authorization"),
        "{err}"
    );
    assert!(mock.lock().unwrap().grants.is_empty());
    assert!(stored(dir.path()).is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_person_a_401_is_a_login_hint_and_nothing_is_stored() {
    let (base, _mock) = serve(Bad::Nothing, 3600).await;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("{base}/mcp");
    let auth = authorizer(dir.path(), &url, None);
    assert!(auth.bearer().await.unwrap().is_none());
    let err = auth
        .challenged(401, Some(r#"Bearer scope="mcp:tools""#), None)
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "the server requires authorization (HTTP 401) and no token is stored: run `revka mcp login remote`"
    );
    assert!(stored(dir.path()).is_empty());
}
