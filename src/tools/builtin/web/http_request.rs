//! `http_request`: one HTTP request with the caller's method, headers and body, through the
//! SSRF-checked client ([`super::client`]); the status, headers and body text come back, the
//! body capped at `max_output_bytes` and a binary body summarised instead of dumped.
//!
//! `GET`, `HEAD` and `OPTIONS` are network reads; every other method may change state, so
//! `read_only` autonomy refuses it (the wrapper's `autonomy` rule, from [`HttpRequest::effect`]).

use std::sync::Arc;

use bytes::Bytes;
use futures::future::BoxFuture;
use reqwest::Method;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use url::Url;

use super::client::{self, Net, Request};
use super::{deadline, timed_out};
use crate::security::Effect;
use crate::tools::BuiltinError;
use crate::tools::builtin::{Args, Cx, PolicyTool, ok_text};

/// The methods the tool sends.
const METHODS: [&str; 7] = ["GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE"];

/// The longest request body.
const MAX_BODY: usize = 8 * 1024 * 1024;

/// The tool.
pub(super) struct HttpRequest {
    net: Arc<Net>,
}

impl HttpRequest {
    pub(super) fn new(net: Arc<Net>) -> Self {
        Self { net }
    }
}

/// The method of `args`, upper case; `GET` when absent.
fn method_of(args: &Value) -> Option<String> {
    match args.get("method") {
        None | Some(Value::Null) => Some("GET".to_owned()),
        Some(Value::String(m)) => Some(m.trim().to_ascii_uppercase()),
        Some(_) => None,
    }
}

impl PolicyTool for HttpRequest {
    fn name(&self) -> &'static str {
        "http_request"
    }

    fn description(&self) -> String {
        let config = self.net.policy().config();
        format!(
            "Sends one HTTP(S) request and returns the status, the response headers and the \
             body as text (at most {} bytes, marked `truncated` when cut; a binary body is \
             summarised by type, size and SHA-256). Methods: {}. GET, HEAD and OPTIONS only \
             read; the others are refused under read-only autonomy. Redirects are followed (at \
             most {}); headers that may carry credentials are dropped when a redirect leaves \
             the origin. Loopback, private, link-local and other internal addresses are refused \
             (after DNS resolution and on every redirect) unless [security] allowed_hosts names \
             them. Deadline: timeout_secs, at most {} s.",
            config.max_output_bytes,
            METHODS.join(", "),
            client::MAX_REDIRECTS,
            config.command_timeout_secs
        )
    }

    fn input_schema(&self) -> Value {
        json!({
            "type": "object",
            "properties": {
                "url": { "type": "string", "description": "An http:// or https:// URL." },
                "method": {
                    "type": "string",
                    "enum": METHODS,
                    "description": "The HTTP method; default GET."
                },
                "headers": {
                    "type": "object",
                    "additionalProperties": { "type": "string" },
                    "description": "Request headers (Host, Content-Length and hop-by-hop \
                                    headers are set by the client)."
                },
                "body": { "type": "string", "description": "The request body, as text." },
                "timeout_secs": {
                    "type": "integer",
                    "minimum": 1,
                    "description": "Deadline for the whole request, redirects and body \
                                    included; default and maximum [security] \
                                    command_timeout_secs."
                },
                "follow_redirects": {
                    "type": "boolean",
                    "description": "Follow redirects (default true); false returns the 3xx."
                }
            },
            "required": ["url"],
            "additionalProperties": false
        })
    }

    fn effect(&self, args: &Value) -> Effect {
        if args.is_null() {
            // No arguments yet (the tool's definition): the most it could do.
            return Effect::NetworkWrite;
        }
        match method_of(args).as_deref() {
            Some("GET" | "HEAD" | "OPTIONS") => Effect::NetworkRead,
            _ => Effect::NetworkWrite,
        }
    }

    fn run(&self, cx: Cx, args: Value) -> BoxFuture<'static, Result<Value, BuiltinError>> {
        let net = self.net.clone();
        Box::pin(async move { call(&net, &cx, &args).await })
    }
}

async fn call(net: &Net, cx: &Cx, args: &Value) -> Result<Value, BuiltinError> {
    let a = Args::new(args)?;
    let url_text = a.str("url")?;
    let url = parse_url(url_text)?;
    let method_name = match method_of(args) {
        Some(m) => m,
        None => a.str("method").map(str::to_owned)?,
    };
    if !METHODS.contains(&method_name.as_str()) {
        return Err(BuiltinError::Arguments(format!(
            "`method` must be one of {}, not {method_name:?}",
            METHODS.join(", ")
        )));
    }
    let method = Method::from_bytes(method_name.as_bytes())
        .map_err(|_| BuiltinError::Arguments(format!("`method` {method_name:?} is not valid")))?;
    let headers = client::caller_headers(a.opt_object("headers")?)?;
    let body = a.opt_str("body")?;
    if body.is_some_and(|b| b.len() > MAX_BODY) {
        return Err(BuiltinError::Arguments(format!(
            "`body` is longer than {MAX_BODY} bytes"
        )));
    }
    if body.is_some() && (method == Method::GET || method == Method::HEAD) {
        return Err(BuiltinError::Arguments(format!(
            "`body` is not sent with {method}; use POST, PUT or PATCH"
        )));
    }
    let follow_redirects = a.opt_bool("follow_redirects")?.unwrap_or(true);
    let timeout = deadline(&a, net.policy())?;
    let cap = net.policy().config().max_output();
    let what = format!("{method} {}", client::shown(&url));
    let request = Request {
        method: method.clone(),
        url,
        headers,
        body: body.map(|b| Bytes::from(b.to_owned())),
        follow_redirects,
    };
    // The header values the caller sent, masked if an error message would show one.
    let secrets: Vec<String> = request
        .headers
        .values()
        .filter_map(|v| v.to_str().ok())
        .map(str::to_owned)
        .collect();
    let exchange = async {
        let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
        let mut response = net.send(request, &secrets).await?;
        cx.report(
            1,
            Some(2),
            format!("HTTP {}, reading the body", response.status().as_u16()),
        );
        let (bytes, truncated) = if method == Method::HEAD {
            (Vec::new(), false)
        } else {
            client::read_capped(&mut response.inner, cap)
                .await
                .map_err(|e| client::body_failure(&e, &response.url))?
        };
        Ok::<_, BuiltinError>((response, bytes, truncated))
    };
    let (response, bytes, truncated) = tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| timed_out(&what, timeout))??;
    Ok(result(&method, &response, &bytes, truncated))
}

/// `text` as an http(s) URL, or a precise argument error.
pub(super) fn parse_url(text: &str) -> Result<Url, BuiltinError> {
    let url = Url::parse(text.trim())
        .map_err(|e| BuiltinError::Arguments(format!("`url` is not a valid absolute URL ({e})")))?;
    Ok(url)
}

fn result(method: &Method, response: &client::Response, bytes: &[u8], truncated: bool) -> Value {
    let status = response.status();
    let content_type = response.content_type();
    let mut out = json!({
        "status": status.as_u16(),
        "reason": status.canonical_reason().unwrap_or(""),
        "ok": status.is_success(),
        "method": method.as_str(),
        "url": client::shown_full(&response.url),
        "headers": client::headers_json(response.inner.headers()),
        "content_type": content_type,
        "body_bytes": bytes.len(),
        "truncated": truncated,
    });
    if !response.redirects.is_empty() {
        out["redirects"] = Value::Array(response.redirects.clone());
    }
    if !response.dropped_headers.is_empty() {
        out["dropped_headers"] = json!(response.dropped_headers);
    }
    let head = format!(
        "HTTP {} {}{}",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        content_type
            .as_deref()
            .map(|c| format!(" ({c})"))
            .unwrap_or_default()
    );
    let text = if bytes.is_empty() {
        out["body"] = Value::String(String::new());
        head
    } else if client::is_binary(content_type.as_deref(), bytes) {
        let digest = Sha256::digest(bytes);
        let sha: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        out["body"] = Value::Null;
        out["binary"] = json!({
            "bytes": bytes.len(),
            "sha256": sha,
            "complete": !truncated,
        });
        format!(
            "{head}\n\n[binary body: {} bytes{}, sha256 {sha}; not shown]",
            bytes.len(),
            if truncated { " read (more unread)" } else { "" }
        )
    } else {
        let body = client::decode_text(bytes, content_type.as_deref());
        let text = format!(
            "{head}\n\n{body}{}",
            if truncated {
                "\n[… truncated at max_output_bytes]"
            } else {
                ""
            }
        );
        out["body"] = Value::String(body);
        text
    };
    ok_text(text, out)
}
