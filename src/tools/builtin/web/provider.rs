//! Provider settings of `weather` and `web_search_tool` (`[tools.weather]`,
//! `[tools.web_search]`): base URLs checked at registration, `${VAR}` API keys expanded from
//! the daemon's environment (the config loader leaves these fields as written), and the JSON
//! call every provider makes through the SSRF-checked client.
//!
//! A key is never shown: error texts mask it, and registration reasons name the variable, not
//! its value.

use std::time::Duration;

use reqwest::header::{ACCEPT, HeaderMap, HeaderValue};
use serde_json::Value;
use url::Url;

use super::client::{self, Net, Request};
use super::timed_out;
use crate::config::{ProviderConfig, VarError, process_env};
use crate::tools::BuiltinError;

/// The most bytes of a provider's answer read (JSON of a few results).
const MAX_ANSWER: usize = 4 * 1024 * 1024;

/// `cfg.base_url` (or `default`) as an http(s) URL; `Err` says which key is wrong.
pub(super) fn base_url(
    section: &str,
    key: &str,
    value: Option<&str>,
    default: &str,
) -> Result<Url, String> {
    let text = value
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .unwrap_or(default);
    let url =
        Url::parse(text).map_err(|e| format!("[{section}] {key} {text:?} is not a URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(format!(
            "[{section}] {key} {text:?} is not an http:// or https:// URL with a host"
        ));
    }
    if url.query().is_some() || !url.username().is_empty() || url.password().is_some() {
        return Err(format!(
            "[{section}] {key} must not hold a query or credentials (put a key in api_key)"
        ));
    }
    Ok(url)
}

/// `base` with `path` appended to its own path (`https://h/searx` + `search` =
/// `https://h/searx/search`).
pub(super) fn endpoint(base: &Url, path: &str) -> Url {
    let mut url = base.clone();
    let joined = format!(
        "{}/{}",
        base.path().trim_end_matches('/'),
        path.trim_start_matches('/')
    );
    url.set_path(&joined);
    url
}

/// The API key of `cfg`, `${VAR}` references expanded from the process environment; `None`
/// when it is unset or empty. `Err` names the variable that is not set.
pub(super) fn api_key(section: &str, cfg: &ProviderConfig) -> Result<Option<String>, String> {
    api_key_with(section, cfg, &process_env)
}

fn api_key_with(
    section: &str,
    cfg: &ProviderConfig,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<String>, String> {
    let Some(raw) = cfg.api_key.as_deref() else {
        return Ok(None);
    };
    let key = expand(raw, env).map_err(|why| format!("[{section}] api_key: {why}"))?;
    let key = key.trim().to_owned();
    if key.is_empty() {
        return Ok(None);
    }
    if HeaderValue::from_str(&key).is_err() {
        return Err(format!(
            "[{section}] api_key holds a character a header cannot carry"
        ));
    }
    Ok(Some(key))
}

/// `${VAR}` expanded from `env` (`$${` is a literal `${`) by the config loader's own
/// expansion; an empty variable counts as unset.
fn expand(raw: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let set = |name: &str| env(name).filter(|v| !v.is_empty());
    crate::config::expand_vars(raw, &set).map_err(|e| match e {
        VarError::Missing(name) => format!("it refers to ${{{name}}}, which is not set"),
        other => other.message(),
    })
}

/// Calls a provider: `request` through the checked client within `timeout`, the answer read
/// (at most [`MAX_ANSWER`] bytes) and parsed as JSON. A non-2xx status is an error quoting
/// the start of the answer; `secret` is masked in every message.
pub(super) async fn call_json(
    net: &Net,
    provider: &str,
    mut request: Request,
    secret: Option<&str>,
    timeout: Duration,
) -> Result<Value, BuiltinError> {
    request
        .headers
        .entry(ACCEPT)
        .or_insert(HeaderValue::from_static("application/json"));
    let secrets: Vec<&str> = secret.into_iter().collect();
    let what = format!("the {provider} request to {}", client::shown(&request.url));
    let exchange = async {
        let mut response = net.send(request, &secrets).await?;
        let (bytes, truncated) = client::read_capped(&mut response.inner, MAX_ANSWER)
            .await
            .map_err(|e| client::body_failure(&e, &response.url))?;
        Ok::<_, BuiltinError>((response, bytes, truncated))
    };
    let (response, bytes, truncated) = tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| timed_out(&what, timeout))??;
    let status = response.status();
    if !status.is_success() {
        let (start, _) = crate::tools::builtin::capped(&bytes, 300);
        return Err(BuiltinError::Failed(client::mask(
            &format!(
                "{provider} answered HTTP {} from {}: {}",
                status.as_u16(),
                client::shown(&response.url),
                start.trim()
            ),
            &secrets,
        )));
    }
    if truncated {
        return Err(BuiltinError::Failed(format!(
            "{provider}'s answer is larger than {MAX_ANSWER} bytes"
        )));
    }
    serde_json::from_slice(&bytes).map_err(|e| {
        BuiltinError::Failed(format!(
            "{provider} answered with something that is not JSON ({e}) from {}",
            client::shown(&response.url)
        ))
    })
}

/// Headers with one value set (a provider's key header).
pub(super) fn header(name: &'static str, value: &str) -> Result<HeaderMap, BuiltinError> {
    let mut map = HeaderMap::new();
    let mut value = HeaderValue::from_str(value)
        .map_err(|_| BuiltinError::Failed(format!("the {name} header value is not valid")))?;
    value.set_sensitive(true);
    map.insert(name, value);
    Ok(map)
}

/// A number from a JSON value (a number, or a number in a string).
pub(super) fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .filter(|f: &f64| f.is_finite())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_expand_from_the_environment_and_name_a_missing_variable() {
        let env = |name: &str| (name == "SET").then(|| "k-123".to_owned());
        let cfg = |key: &str| ProviderConfig {
            api_key: Some(key.to_owned()),
            ..ProviderConfig::default()
        };
        assert_eq!(
            api_key_with("tools.web_search", &cfg("${SET}"), &env).unwrap(),
            Some("k-123".to_owned())
        );
        assert_eq!(
            api_key_with("tools.web_search", &cfg("plain"), &env).unwrap(),
            Some("plain".to_owned())
        );
        assert_eq!(
            api_key_with("tools.web_search", &cfg(""), &env).unwrap(),
            None
        );
        let err = api_key_with("tools.web_search", &cfg("${UNSET}"), &env).unwrap_err();
        assert!(err.contains("${UNSET}") && err.contains("not set"), "{err}");
        assert!(err.contains("[tools.web_search] api_key"), "{err}");
        assert!(api_key_with("s", &cfg("${1X}"), &env).is_err());
        assert_eq!(
            api_key_with("s", &cfg("$${LIT}"), &env).unwrap(),
            Some("${LIT}".to_owned())
        );
        // The config's Debug never shows a key.
        let shown = format!("{:?}", cfg("sk-live-0123456789"));
        assert!(!shown.contains("sk-live"), "{shown}");
        assert!(shown.contains("api_key: Some(\"***\")"), "{shown}");
    }

    #[test]
    fn base_urls_are_checked_and_joined() {
        let base = base_url(
            "tools.web_search",
            "base_url",
            Some("http://h:8/searx/"),
            "x",
        )
        .unwrap();
        assert_eq!(
            endpoint(&base, "search").as_str(),
            "http://h:8/searx/search"
        );
        let base = base_url("s", "base_url", None, "https://api.example.com").unwrap();
        assert_eq!(
            endpoint(&base, "/v1/forecast").as_str(),
            "https://api.example.com/v1/forecast"
        );
        assert!(base_url("s", "base_url", Some("ftp://h/"), "x").is_err());
        assert!(base_url("s", "base_url", Some("not a url"), "x").is_err());
        assert!(base_url("s", "base_url", Some("https://u:p@h/"), "x").is_err());
    }
}
