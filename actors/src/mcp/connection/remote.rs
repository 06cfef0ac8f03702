//! Opening the remote transports: Streamable HTTP, legacy SSE, and `url` discovery, which
//! tries the Streamable HTTP endpoint it finds and falls back to SSE when that endpoint turns
//! out not to be streamable (404, 405, 415, or an SSE-only answer).

use std::sync::Arc;

use revka_mcp::client::{Inbound, McpClient, Peer, Transport, TransportError};
use revka_mcp::http::{self, HttpEndpoint, StreamableHttp};
use revka_mcp::oauth::Authorizer;
use revka_mcp::redact;
use revka_mcp::spec::{ServerSpec, TransportSpec};
use tokio::time::Instant;

use super::connect::{Opened, attempt};
use super::{Connected, McpError};

/// Connects to a remote server and runs the handshake.
pub(super) async fn connect(
    spec: &ServerSpec,
    http: &reqwest::Client,
    path: &str,
    deadline: Instant,
    peer: Option<Arc<dyn Peer>>,
) -> Result<Connected, McpError> {
    let connect_err = |reason: String| McpError::Connect {
        server: spec.name.clone(),
        reason,
    };
    // The configured URL is named by its config form (masked); discovered ones by their own.
    let shown = spec.shown();
    let configured = |url: &str, headers: &[(String, String)]| HttpEndpoint {
        shown: shown
            .as_url()
            .map_or_else(|| redact::url(url), str::to_owned),
        ..HttpEndpoint::new(url, headers.to_vec())
    };
    match &spec.transport {
        TransportSpec::Http { url, headers } => {
            let opened = streamable(spec, path, configured(url, headers), http);
            attempt(spec, opened, deadline, peer.clone())
                .await
                .map_err(|(e, _)| e)
        }
        TransportSpec::Sse { url, headers } => {
            let opened = sse(spec, path, configured(url, headers), http, deadline)
                .await
                .map_err(|e| connect_err(e.to_string()))?;
            attempt(spec, opened, deadline, peer.clone())
                .await
                .map_err(|(e, _)| e)
        }
        TransportSpec::Url { url, headers } => {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let document = configured(url, headers);
            let found = http::discover(&document, http, remaining)
                .await
                .map_err(|e| connect_err(format!("discovery at {} failed: {e}", document.shown)))?;
            let mut last = None;
            if let Some(target) = &found.streamable {
                let endpoint = HttpEndpoint::new(target.as_str(), headers.clone());
                tracing::info!(server = %spec.name, %path, endpoint = %endpoint.shown, "discovered a Streamable HTTP endpoint");
                match attempt(
                    spec,
                    streamable(spec, path, endpoint, http),
                    deadline,
                    peer.clone(),
                )
                .await
                {
                    Ok(connected) => return Ok(connected),
                    Err((e, false)) => return Err(e),
                    Err((e, true)) => {
                        tracing::info!(server = %spec.name, %path, error = %e, "endpoint is not streamable; trying SSE");
                        last = Some(e);
                    }
                }
            }
            // An endpoint of unknown kind is also tried as SSE at the same URL.
            let Some(target) = found.sse.or(found.streamable) else {
                return Err(last.unwrap_or_else(|| {
                    connect_err(format!(
                        "discovery document at {} names no endpoint",
                        document.shown
                    ))
                }));
            };
            let endpoint = HttpEndpoint::new(target, headers.clone());
            tracing::info!(server = %spec.name, %path, endpoint = %endpoint.shown, "using the legacy SSE endpoint");
            let opened = sse(spec, path, endpoint, http, deadline)
                .await
                .map_err(|e| connect_err(e.to_string()))?;
            attempt(spec, opened, deadline, peer.clone())
                .await
                .map_err(|(e, _)| e)
        }
        TransportSpec::Stdio { .. } => Err(connect_err("stdio is not a remote transport".into())),
    }
}

fn streamable(
    spec: &ServerSpec,
    path: &str,
    endpoint: HttpEndpoint,
    http: &reqwest::Client,
) -> Opened {
    let (inbound, events) = Inbound::at(&spec.name, path, spec.roots.clone());
    let auth = spec.oauth.as_ref().and_then(|oauth| {
        match Authorizer::new(oauth.clone(), &endpoint.url, http.clone()) {
            Ok(a) => Some(a),
            Err(e) => {
                tracing::warn!(server = %spec.name, error = %e, "OAuth not set up");
                None
            }
        }
    });
    let transport: Arc<dyn Transport> =
        StreamableHttp::with_auth(endpoint, http.clone(), inbound.clone(), auth);
    Opened {
        client: Arc::new(McpClient::new(inbound, transport.clone())),
        transport,
        events,
        process: None,
        exit: None,
    }
}

async fn sse(
    spec: &ServerSpec,
    path: &str,
    endpoint: HttpEndpoint,
    http: &reqwest::Client,
    deadline: Instant,
) -> Result<Opened, TransportError> {
    let (inbound, events) = Inbound::at(&spec.name, path, spec.roots.clone());
    let remaining = deadline.saturating_duration_since(Instant::now());
    let transport: Arc<dyn Transport> =
        http::connect_legacy_sse(endpoint, http.clone(), inbound.clone(), remaining).await?;
    Ok(Opened {
        client: Arc::new(McpClient::new(inbound, transport.clone())),
        transport,
        events,
        process: None,
        exit: None,
    })
}
