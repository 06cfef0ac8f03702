//! The caller's own token: `GET /api/whoami` says who it is, `POST /api/logout` revokes it
//! (not the owner token of `gateway.token`: 409); the dashboard's page needs no token.

use axum::http::{Method, StatusCode};

use super::roles::Fixture;
use crate::auth::Role;

#[tokio::test(start_paused = true)]
async fn whoami_names_the_callers_token_and_logout_revokes_it() {
    let fixture = Fixture::new();
    let operator = fixture.token(Role::Operator).to_owned();
    let (status, me) = fixture
        .send(&Method::GET, "/api/whoami", Some(&operator), "")
        .await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["role"], "operator");
    assert_eq!(me["label"], "operator");
    assert_eq!(me["kind"], "gateway");
    assert_eq!(me["file_token"], false);
    let id = me["id"].as_str().unwrap().to_owned();
    assert_eq!(id.len(), 8);

    let (status, body) = fixture
        .send(&Method::POST, "/api/logout", Some(&operator), "")
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["revoked"], id.as_str());
    let (status, _) = fixture
        .send(&Method::GET, "/api/whoami", Some(&operator), "")
        .await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "a revoked token is refused"
    );
    // The other tokens are untouched.
    let viewer = fixture.token(Role::Viewer).to_owned();
    let (status, me) = fixture
        .send(&Method::GET, "/api/whoami", Some(&viewer), "")
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["role"], "viewer");
}

#[tokio::test]
async fn the_owner_token_of_the_file_is_not_revoked_by_logout() {
    let fixture = Fixture::new();
    let owner = fixture.token(Role::Owner).to_owned();
    let (status, me) = fixture
        .send(&Method::GET, "/api/whoami", Some(&owner), "")
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["role"], "owner");
    assert_eq!(me["file_token"], true);
    let (status, body) = fixture
        .send(&Method::POST, "/api/logout", Some(&owner), "")
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(body["error"].as_str().unwrap().contains("gateway.token"));
    let (status, _) = fixture
        .send(&Method::GET, "/api/whoami", Some(&owner), "")
        .await;
    assert_eq!(status, StatusCode::OK, "still valid");
    let (status, _) = fixture.send(&Method::POST, "/api/logout", None, "").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}
