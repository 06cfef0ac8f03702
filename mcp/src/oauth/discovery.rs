//! Finding a server's authorization server (MCP authorization spec 2025-11-25, "Authorization
//! Server Discovery"). Part of [`crate::oauth`]; run by the authorizer on the first `401`.
//!
//! 1. **Protected resource metadata** (RFC 9728): the challenge's `resource_metadata` URL
//!    (same origin as the MCP server), else `/.well-known/oauth-protected-resource/<path>`,
//!    else `/.well-known/oauth-protected-resource` at the server's origin. Its `resource`
//!    must be the server's URL or a prefix of it on the same origin (the `resource` parameter
//!    sent is that value); its first `authorization_servers` entry is the issuer.
//! 2. **Authorization server metadata**: for an issuer with a path `/p`, in this order
//!    `/.well-known/oauth-authorization-server/p`, `/.well-known/openid-configuration/p`,
//!    `/p/.well-known/openid-configuration`; without a path `/.well-known/oauth-authorization-
//!    server`, then `/.well-known/openid-configuration`. The document's `issuer` must be that
//!    issuer.
//! 3. **2025-03-26 servers** (no protected resource metadata anywhere): the authorization
//!    server is the MCP server's origin; its metadata at `/.well-known/oauth-authorization-server`,
//!    or, when there is none, the default endpoints `/authorize`, `/token` and `/register`.
//!
//! Every document is fetched with a [`REQUEST_TIMEOUT`](super::REQUEST_TIMEOUT), capped at
//! [`MAX_DOCUMENT`](super::MAX_DOCUMENT), must be a JSON object, and every endpoint it names
//! must be `https` (plain `http` only on a loopback host). A `4xx` moves to the next
//! well-known location; a `5xx`, a timeout or a malformed document is an error (an outage
//! must not turn into the back-compat path).

use reqwest::header::ACCEPT;
use serde_json::Value;
use url::Url;

use super::challenge::{Challenge, split_scopes};
use super::{MAX_DOCUMENT, OAuthError, request_timeout};
use crate::redact;

/// What discovery found.
#[derive(Debug, Clone)]
pub(super) struct Discovered {
    /// The `resource` parameter (RFC 8707) to send.
    pub(super) resource: String,
    /// `scopes_supported` of the protected resource metadata.
    pub(super) scopes_supported: Vec<String>,
    /// The authorization server.
    pub(super) server: ServerMetadata,
}

/// The parts of authorization server metadata Revka uses.
#[derive(Debug, Clone)]
pub(super) struct ServerMetadata {
    /// The issuer (the authorization server's identifier; `aud` of client assertions).
    pub(super) issuer: String,
    pub(super) authorization_endpoint: Option<Url>,
    pub(super) token_endpoint: Url,
    pub(super) registration_endpoint: Option<Url>,
    /// `token_endpoint_auth_methods_supported` (`None`: absent, RFC 8414's default applies).
    pub(super) auth_methods: Option<Vec<String>>,
    /// `client_id_metadata_document_supported`.
    pub(super) client_id_metadata_documents: bool,
    /// Whether S256 PKCE is supported (listed, or default endpoints of a 2025-03-26 server).
    pub(super) s256: bool,
}

/// Runs discovery for the MCP server at `server_url`, given the challenge of its `401`
/// (`None`: the server did not challenge; then it must publish protected resource metadata,
/// since the 2025-03-26 fallback would guess endpoints of a server that needs no
/// authorization).
pub(super) async fn discover(
    http: &reqwest::Client,
    server_url: &Url,
    challenge: Option<&Challenge>,
) -> Result<Discovered, OAuthError> {
    match protected_resource(http, server_url, challenge).await? {
        Some((resource, issuer, scopes_supported)) => {
            let server = authorization_server(http, &issuer).await?;
            Ok(Discovered {
                resource,
                scopes_supported,
                server,
            })
        }
        None if challenge.is_none() => Err(OAuthError::NotRequired(format!(
            "the MCP server at {} does not ask for authorization (no 401, no protected resource metadata)",
            redact::url(server_url.as_str())
        ))),
        None => {
            let server = legacy_authorization_server(http, server_url).await?;
            Ok(Discovered {
                resource: canonical(server_url),
                scopes_supported: Vec::new(),
                server,
            })
        }
    }
}

/// The server URL as a resource identifier: without fragment (and without a lone trailing
/// slash on an empty path).
pub(super) fn canonical(url: &Url) -> String {
    let mut u = url.clone();
    u.set_fragment(None);
    let s = u.to_string();
    if u.path() == "/" && u.query().is_none() {
        s.trim_end_matches('/').to_owned()
    } else {
        s
    }
}

/// Whether `url` may carry OAuth traffic: `https`, or `http` to a loopback host.
pub(super) fn secure_enough(url: &Url) -> bool {
    match url.scheme() {
        "https" => true,
        "http" => match url.host() {
            Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            None => false,
        },
        _ => false,
    }
}

fn same_origin(a: &Url, b: &Url) -> bool {
    a.origin() == b.origin()
}

/// `(resource, issuer, scopes_supported)` from the protected resource metadata, or `None`
/// when the server publishes none (a 2025-03-26 server).
async fn protected_resource(
    http: &reqwest::Client,
    server_url: &Url,
    challenge: Option<&Challenge>,
) -> Result<Option<(String, Url, Vec<String>)>, OAuthError> {
    let mut candidates = Vec::new();
    if let Some(link) = challenge.and_then(|c| c.resource_metadata.as_deref()) {
        let url = server_url.join(link.trim()).map_err(|_| {
            OAuthError::Protocol(format!(
                "the WWW-Authenticate resource_metadata `{}` is not a URL",
                redact::url(link)
            ))
        })?;
        if !same_origin(&url, server_url) {
            return Err(OAuthError::Protocol(format!(
                "the WWW-Authenticate resource_metadata {} is on another origin than the MCP server {}",
                redact::url(url.as_str()),
                redact::url(server_url.as_str())
            )));
        }
        candidates.push(url);
    } else {
        let path = server_url.path().trim_end_matches('/');
        if !path.is_empty() {
            candidates.push(well_known(
                server_url,
                &format!("/.well-known/oauth-protected-resource{path}"),
            ));
        }
        candidates.push(well_known(
            server_url,
            "/.well-known/oauth-protected-resource",
        ));
    }
    for url in candidates {
        let Some(doc) = fetch_json(http, &url, "protected resource metadata").await? else {
            continue;
        };
        let shown = redact::url(url.as_str());
        let resource = doc.get("resource").and_then(Value::as_str).ok_or_else(|| {
            OAuthError::Protocol(format!(
                "protected resource metadata at {shown} has no `resource`"
            ))
        })?;
        check_resource(resource, server_url, &shown)?;
        let issuer = doc
            .get("authorization_servers")
            .and_then(Value::as_array)
            .and_then(|a| a.first())
            .and_then(Value::as_str)
            .ok_or_else(|| {
                OAuthError::Protocol(format!(
                    "protected resource metadata at {shown} names no authorization_servers"
                ))
            })?;
        let issuer = endpoint_url(issuer, &shown, "authorization_servers[0]")?;
        let scopes = strings(doc.get("scopes_supported"));
        return Ok(Some((resource.to_owned(), issuer, scopes)));
    }
    Ok(None)
}

/// RFC 9728 §3.3, with the MCP SDKs' allowance for a resource that covers the server's URL:
/// same origin, and the resource's path a prefix (by segments) of the server's path.
fn check_resource(resource: &str, server_url: &Url, shown: &str) -> Result<(), OAuthError> {
    let mismatch = || {
        OAuthError::Protocol(format!(
            "protected resource metadata at {shown} is for resource {}, not for {}",
            redact::url(resource),
            redact::url(server_url.as_str())
        ))
    };
    let parsed = Url::parse(resource).map_err(|_| mismatch())?;
    if !same_origin(&parsed, server_url) {
        return Err(mismatch());
    }
    let theirs = parsed.path().trim_end_matches('/');
    let ours = server_url.path().trim_end_matches('/');
    if ours == theirs || ours.starts_with(&format!("{theirs}/")) {
        Ok(())
    } else {
        Err(mismatch())
    }
}

fn well_known(base: &Url, path: &str) -> Url {
    let mut u = base.clone();
    u.set_path(path);
    u.set_query(None);
    u.set_fragment(None);
    u
}

/// The metadata of the authorization server `issuer`, from the well-known URLs in the spec's
/// order; its `issuer` must be `issuer`.
async fn authorization_server(
    http: &reqwest::Client,
    issuer: &Url,
) -> Result<ServerMetadata, OAuthError> {
    let path = issuer.path().trim_end_matches('/');
    let candidates = if path.is_empty() {
        vec![
            well_known(issuer, "/.well-known/oauth-authorization-server"),
            well_known(issuer, "/.well-known/openid-configuration"),
        ]
    } else {
        vec![
            well_known(
                issuer,
                &format!("/.well-known/oauth-authorization-server{path}"),
            ),
            well_known(issuer, &format!("/.well-known/openid-configuration{path}")),
            well_known(issuer, &format!("{path}/.well-known/openid-configuration")),
        ]
    };
    for url in &candidates {
        if let Some(doc) = fetch_json(http, url, "authorization server metadata").await? {
            let shown = redact::url(url.as_str());
            let meta = server_metadata(&doc, &shown)?;
            if meta.issuer.trim_end_matches('/') != issuer.as_str().trim_end_matches('/') {
                return Err(OAuthError::Protocol(format!(
                    "authorization server metadata at {shown} is for issuer {}, not {}",
                    redact::url(&meta.issuer),
                    redact::url(issuer.as_str())
                )));
            }
            return Ok(meta);
        }
    }
    Err(OAuthError::Protocol(format!(
        "no authorization server metadata for {} (tried {})",
        redact::url(issuer.as_str()),
        candidates
            .iter()
            .map(|u| u.path().to_owned())
            .collect::<Vec<_>>()
            .join(", ")
    )))
}

/// A 2025-03-26 server: metadata at its origin, else the default endpoints there.
async fn legacy_authorization_server(
    http: &reqwest::Client,
    server_url: &Url,
) -> Result<ServerMetadata, OAuthError> {
    let url = well_known(server_url, "/.well-known/oauth-authorization-server");
    if let Some(doc) = fetch_json(http, &url, "authorization server metadata").await? {
        return server_metadata(&doc, &redact::url(url.as_str()));
    }
    let origin = well_known(server_url, "/");
    let at = |p: &str| well_known(&origin, p);
    Ok(ServerMetadata {
        issuer: origin.as_str().trim_end_matches('/').to_owned(),
        authorization_endpoint: Some(at("/authorize")),
        token_endpoint: at("/token"),
        registration_endpoint: Some(at("/register")),
        auth_methods: None,
        client_id_metadata_documents: false,
        s256: true,
    })
}

fn server_metadata(doc: &Value, shown: &str) -> Result<ServerMetadata, OAuthError> {
    let text = |key: &str| doc.get(key).and_then(Value::as_str);
    let issuer = text("issuer").ok_or_else(|| {
        OAuthError::Protocol(format!(
            "authorization server metadata at {shown} has no `issuer`"
        ))
    })?;
    let endpoint = |key: &str| -> Result<Option<Url>, OAuthError> {
        text(key).map(|v| endpoint_url(v, shown, key)).transpose()
    };
    let token_endpoint = endpoint("token_endpoint")?.ok_or_else(|| {
        OAuthError::Protocol(format!(
            "authorization server metadata at {shown} has no `token_endpoint`"
        ))
    })?;
    let methods = doc.get("code_challenge_methods_supported");
    Ok(ServerMetadata {
        issuer: issuer.to_owned(),
        authorization_endpoint: endpoint("authorization_endpoint")?,
        token_endpoint,
        registration_endpoint: endpoint("registration_endpoint")?,
        auth_methods: doc
            .get("token_endpoint_auth_methods_supported")
            .map(|v| strings(Some(v))),
        client_id_metadata_documents: doc
            .get("client_id_metadata_document_supported")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        s256: strings(methods).iter().any(|m| m == "S256"),
    })
}

/// An endpoint named by a document: an absolute URL, `https` or loopback `http`.
fn endpoint_url(value: &str, shown: &str, key: &str) -> Result<Url, OAuthError> {
    let url = Url::parse(value.trim()).map_err(|_| {
        OAuthError::Protocol(format!(
            "`{key}` in {shown} is not an absolute URL: `{}`",
            redact::url(value)
        ))
    })?;
    if !secure_enough(&url) {
        return Err(OAuthError::Protocol(format!(
            "`{key}` in {shown} is {}: OAuth endpoints must use https (http only on a loopback host)",
            redact::url(url.as_str())
        )));
    }
    Ok(url)
}

/// A JSON array of strings (anything else: empty), as a scope-like list.
fn strings(v: Option<&Value>) -> Vec<String> {
    let joined = v
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default();
    split_scopes(Some(&joined))
}

/// GETs a JSON document: `Ok(None)` on a `4xx` (not published here), an error on anything
/// else that is not a JSON object within the size cap.
pub(super) async fn fetch_json(
    http: &reqwest::Client,
    url: &Url,
    what: &str,
) -> Result<Option<Value>, OAuthError> {
    let shown = redact::url(url.as_str());
    let resp = http
        .get(url.clone())
        .header(ACCEPT, "application/json")
        .timeout(request_timeout())
        .send()
        .await
        .map_err(|e| request_error(what, &shown, &e))?;
    let status = resp.status();
    if status.is_client_error() {
        tracing::debug!(url = %shown, %status, "no {what} here");
        return Ok(None);
    }
    if !status.is_success() {
        return Err(OAuthError::Protocol(format!(
            "{what} at {shown}: HTTP {status}"
        )));
    }
    let body = read_document(resp, what, &shown).await?;
    Ok(Some(body))
}

/// Reads a JSON object body within [`MAX_DOCUMENT`], refusing other content types.
pub(super) async fn read_document(
    mut resp: reqwest::Response,
    what: &str,
    shown: &str,
) -> Result<Value, OAuthError> {
    let status = resp.status();
    let kind = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    if !kind.is_empty() && !kind.contains("json") {
        return Err(OAuthError::Protocol(format!(
            "{what} at {shown} answered {kind} (HTTP {status}), not JSON"
        )));
    }
    let too_large = || {
        OAuthError::Protocol(format!(
            "{what} at {shown} is larger than {} KiB",
            MAX_DOCUMENT >> 10
        ))
    };
    if resp
        .content_length()
        .is_some_and(|n| n > MAX_DOCUMENT as u64)
    {
        return Err(too_large());
    }
    let mut body = Vec::new();
    loop {
        match tokio::time::timeout(request_timeout(), resp.chunk()).await {
            Err(_) => {
                return Err(OAuthError::Protocol(format!(
                    "{what} at {shown}: no data for {} s",
                    request_timeout().as_secs()
                )));
            }
            Ok(Err(e)) => return Err(request_error(what, shown, &e)),
            Ok(Ok(None)) => break,
            Ok(Ok(Some(chunk))) => {
                if body.len() + chunk.len() > MAX_DOCUMENT {
                    return Err(too_large());
                }
                body.extend_from_slice(&chunk);
            }
        }
    }
    match serde_json::from_slice::<Value>(&body) {
        Ok(v) if v.is_object() => Ok(v),
        Ok(_) => Err(OAuthError::Protocol(format!(
            "{what} at {shown} is not a JSON object"
        ))),
        Err(e) => Err(OAuthError::Protocol(format!(
            "{what} at {shown} is malformed JSON: {e}"
        ))),
    }
}

/// A request that failed on the network, naming what and where (never reqwest's own URL,
/// which is unmasked).
pub(super) fn request_error(what: &str, shown: &str, e: &reqwest::Error) -> OAuthError {
    if e.is_timeout() {
        return OAuthError::Protocol(format!(
            "{what} at {shown} timed out: no answer within {} s",
            request_timeout().as_secs()
        ));
    }
    let mut innermost = String::from("request failed");
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = source {
        innermost = s.to_string();
        source = s.source();
    }
    OAuthError::Protocol(format!("{what} at {shown}: {innermost}"))
}
