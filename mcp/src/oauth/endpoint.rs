//! Talking to the authorization server's endpoints: client identity (pre-registered, Client
//! ID Metadata Document, dynamic registration RFC 7591) and token requests with the client
//! authentication the server's metadata allows. Part of [`crate::oauth`], used by the
//! authorizer.
//!
//! A token answer must be `200` JSON within [`MAX_DOCUMENT`](super::MAX_DOCUMENT) with an
//! `access_token` of `token_type` `Bearer`; an error answer is reported by its `error` and
//! `error_description` only (masked, cut to 200 characters); a success body is never quoted.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use reqwest::header::{ACCEPT, AUTHORIZATION};
use serde_json::{Value, json};
use url::Url;

use super::discovery::{read_document, request_error};
use super::store::ClientRecord;
use super::{OAuthError, OAuthSpec, Secret, jwt, request_timeout};
use crate::redact;

/// How the client authenticates at the token endpoint.
pub(super) const BASIC: &str = "client_secret_basic";
pub(super) const POST: &str = "client_secret_post";
pub(super) const NONE: &str = "none";
pub(super) const PRIVATE_KEY_JWT: &str = "private_key_jwt";

/// What the authorization server told Revka about itself that a token request needs later
/// (kept in the store so a refresh needs no discovery).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(super) struct TokenTarget {
    pub(super) issuer: String,
    pub(super) token_endpoint: String,
    pub(super) resource: String,
}

/// A token endpoint's answer.
#[derive(Debug, Clone)]
pub(super) struct TokenAnswer {
    pub(super) access_token: Secret,
    pub(super) refresh_token: Option<Secret>,
    pub(super) expires_in: Option<u64>,
    pub(super) scope: Option<String>,
}

/// The method for a client holding a secret, from what the server supports (RFC 8414's
/// default, `client_secret_basic`, when it says nothing).
pub(super) fn secret_method(supported: Option<&[String]>) -> &'static str {
    match supported {
        None => BASIC,
        Some(list) if list.iter().any(|m| m == BASIC) => BASIC,
        Some(list) if list.iter().any(|m| m == POST) => POST,
        Some(list) if list.iter().any(|m| m == NONE) => NONE,
        Some(_) => BASIC,
    }
}

/// Registers a client (RFC 7591) for `redirect_uri` (absent for client credentials).
pub(super) async fn register(
    http: &reqwest::Client,
    endpoint: &Url,
    spec: &OAuthSpec,
    supported: Option<&[String]>,
    redirect_uri: Option<&str>,
) -> Result<ClientRecord, OAuthError> {
    let shown = redact::url(endpoint.as_str());
    let method = match supported {
        Some(list) if list.iter().any(|m| m == NONE) => NONE,
        Some(list) => secret_method(Some(list)),
        None => NONE,
    };
    let mut body = json!({
        "client_name": spec.client_name,
        "token_endpoint_auth_method": method,
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
    });
    if let Some(uri) = redirect_uri {
        body["redirect_uris"] = json!([uri]);
    }
    let resp = http
        .post(endpoint.clone())
        .header(ACCEPT, "application/json")
        .json(&body)
        .timeout(request_timeout())
        .send()
        .await
        .map_err(|e| request_error("client registration", &shown, &e))?;
    let status = resp.status();
    if !status.is_success() {
        return Err(endpoint_error(resp, "client registration", &shown).await);
    }
    let doc = read_document(resp, "client registration", &shown).await?;
    let client_id = doc
        .get("client_id")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            OAuthError::Protocol(format!(
                "client registration at {shown} answered without a client_id"
            ))
        })?;
    let secret = doc
        .get("client_secret")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(Secret::new);
    let method = match doc
        .get("token_endpoint_auth_method")
        .and_then(Value::as_str)
    {
        Some(m) => m.to_owned(),
        None if secret.is_some() => BASIC.to_owned(),
        None => NONE.to_owned(),
    };
    Ok(ClientRecord {
        client_id: client_id.to_owned(),
        client_secret: secret,
        auth_method: method,
        registered: true,
    })
}

/// One token request: `form` plus the client's authentication; `grant` names it in errors.
pub(super) async fn token(
    http: &reqwest::Client,
    target: &TokenTarget,
    client: &ClientRecord,
    spec: &OAuthSpec,
    mut form: Vec<(&'static str, String)>,
    grant: &'static str,
) -> Result<TokenAnswer, OAuthError> {
    let shown = redact::url(&target.token_endpoint);
    let mut request = http
        .post(&target.token_endpoint)
        .header(ACCEPT, "application/json")
        .timeout(request_timeout());
    match client.auth_method.as_str() {
        PRIVATE_KEY_JWT => {
            let path = spec.private_key_file.as_ref().ok_or_else(|| {
                OAuthError::Protocol(
                    "private_key_jwt needs [mcp.servers.oauth] private_key_file".into(),
                )
            })?;
            let pem = read_key(path)?;
            let assertion = jwt::assertion(
                pem.expose(),
                spec.signing_alg.as_deref(),
                &client.client_id,
                &target.issuer,
            )?;
            form.push((
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".into(),
            ));
            form.push(("client_assertion", assertion));
        }
        BASIC if client.client_secret.is_some() => {
            // RFC 6749 §2.3.1: both parts form-urlencoded before base64.
            let enc =
                |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            let secret = client.client_secret.as_ref().map_or("", Secret::expose);
            let pair = format!("{}:{}", enc(&client.client_id), enc(secret));
            request = request.header(AUTHORIZATION, format!("Basic {}", STANDARD.encode(pair)));
        }
        POST if client.client_secret.is_some() => {
            form.push(("client_id", client.client_id.clone()));
            let secret = client.client_secret.as_ref().map_or("", Secret::expose);
            form.push(("client_secret", secret.to_owned()));
        }
        _ => form.push(("client_id", client.client_id.clone())),
    }
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form.iter().map(|(k, v)| (*k, v.as_str())))
        .finish();
    let resp = request
        .header(
            reqwest::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .body(body)
        .send()
        .await
        .map_err(|e| request_error("the token endpoint", &shown, &e))?;
    if !resp.status().is_success() {
        return Err(
            match endpoint_error(resp, "the token endpoint", &shown).await {
                OAuthError::Refused {
                    endpoint,
                    error,
                    description,
                    ..
                } => OAuthError::Refused {
                    endpoint,
                    what: format!("the {grant} grant"),
                    error,
                    description,
                },
                other => other,
            },
        );
    }
    let doc = read_document(resp, "the token endpoint", &shown).await?;
    let access = doc
        .get("access_token")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            OAuthError::Protocol(format!(
                "the token endpoint at {shown} answered without an access_token"
            ))
        })?;
    match doc.get("token_type").and_then(Value::as_str) {
        Some(t) if t.eq_ignore_ascii_case("bearer") => {}
        Some(t) => {
            return Err(OAuthError::Protocol(format!(
                "the token endpoint at {shown} issued a `{}` token; only Bearer tokens are supported",
                redact::text(t)
            )));
        }
        None => {
            return Err(OAuthError::Protocol(format!(
                "the token endpoint at {shown} answered without a token_type"
            )));
        }
    }
    Ok(TokenAnswer {
        access_token: Secret::new(access),
        refresh_token: doc
            .get("refresh_token")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(Secret::new),
        expires_in: doc.get("expires_in").and_then(|v| {
            v.as_u64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        }),
        scope: doc.get("scope").and_then(Value::as_str).map(str::to_owned),
    })
}

/// The private key file (at most 64 KiB), as a secret.
fn read_key(path: &std::path::Path) -> Result<Secret, OAuthError> {
    use std::io::Read;
    let bad = |e: String| OAuthError::Protocol(format!("private key {}: {e}", path.display()));
    let file = std::fs::File::open(path).map_err(|e| bad(e.to_string()))?;
    let mut text = String::new();
    file.take(64 << 10)
        .read_to_string(&mut text)
        .map_err(|e| bad(e.to_string()))?;
    Ok(Secret::new(text))
}

/// An error answer: the OAuth `error` (and description) when the body is a JSON error, else
/// the status and content type. Never more of the body.
async fn endpoint_error(resp: reqwest::Response, what: &str, shown: &str) -> OAuthError {
    let status = resp.status();
    let kind = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if kind.contains("json")
        && let Ok(doc) = read_document(resp, what, shown).await
        && let Some(error) = doc.get("error").and_then(Value::as_str)
    {
        let cut = |s: &str| {
            let masked = redact::text(s);
            masked.chars().take(200).collect::<String>()
        };
        return OAuthError::Refused {
            endpoint: shown.to_owned(),
            what: what.to_owned(),
            error: cut(error),
            description: doc
                .get("error_description")
                .and_then(Value::as_str)
                .map(cut),
        };
    }
    let kind = if kind.is_empty() {
        String::new()
    } else {
        format!(" ({kind})")
    };
    OAuthError::Protocol(format!("{what} at {shown} answered HTTP {status}{kind}"))
}
