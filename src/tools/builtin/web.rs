//! The network tools of the built-in baseline: `http_request`, `web_fetch`, `weather` and
//! `web_search_tool`.
//!
//! Part of Revka's own tools ([`super`]): each is a [`super::PolicyTool`] run behind the
//! autonomy gate and the action budget. They share one HTTP client (`client::Net`) that is
//! SSRF-safe: every URL and every redirect hop is checked against `[security] allowed_hosts` /
//! `blocked_hosts` ([`crate::security::net`]), names are resolved by a resolver that refuses
//! internal addresses before any connection, proxies are never used, redirects are capped and
//! drop credentials when the origin changes. Responses are read up to a cap
//! (`max_output_bytes` for what is returned, `max_file_bytes` for what is converted) and
//! within a deadline (`command_timeout_secs`, or a shorter `timeout_secs`).
//!
//! - `http_request`: any method, headers and body; status, headers and body text back.
//! - `fetch`: `web_fetch`, a page as readable text with markdown-style structure.
//! - `weather`: current conditions and a short forecast from `[tools.weather]`'s provider.
//! - `search`: `web_search_tool`, results from `[tools.web_search]`'s provider.
//! - `provider`: provider settings (base URLs, `${VAR}` API keys).

mod client;
mod fetch;
mod http_request;
mod provider;
mod search;
mod weather;

use std::sync::Arc;
use std::time::Duration;

use super::{Args, Registrar};
use crate::security::Policy;
use crate::tools::BuiltinError;

/// Registers this group's tools.
pub(super) fn register(r: &mut Registrar<'_>) {
    let net = match client::Net::new(r.deps.policy.clone()) {
        Ok(net) => Arc::new(net),
        Err(why) => {
            for name in ["http_request", "web_fetch", "weather", "web_search_tool"] {
                r.skip(name, &why);
            }
            return;
        }
    };
    r.add(http_request::HttpRequest::new(net.clone()));
    r.add(fetch::WebFetch::new(net.clone()));
    let tools = r.deps.tools.clone();
    if !tools.weather.enabled {
        r.skip("weather", "disabled by [tools.weather] enabled = false");
    } else {
        match weather::Weather::new(net.clone(), &tools.weather) {
            Ok(tool) => r.add(tool),
            Err(why) => r.skip("weather", &why),
        }
    }
    if !tools.web_search.enabled {
        r.skip(
            "web_search_tool",
            "disabled by [tools.web_search] enabled = false",
        );
    } else {
        match search::WebSearch::new(net, &tools.web_search) {
            Ok(tool) => r.add(tool),
            Err(why) => r.skip("web_search_tool", &why),
        }
    }
}

/// The deadline of one call: `timeout_secs` when given (at least 1, at most
/// `command_timeout_secs`), else `command_timeout_secs`.
fn deadline(args: &Args<'_>, policy: &Policy) -> Result<Duration, BuiltinError> {
    let max = policy.config().command_timeout_secs.max(1);
    match args.opt_u64("timeout_secs")? {
        None => Ok(Duration::from_secs(max)),
        Some(0) => Err(BuiltinError::Arguments(
            "`timeout_secs` must be at least 1".to_owned(),
        )),
        Some(n) if n > max => Err(BuiltinError::Arguments(format!(
            "`timeout_secs` must be at most {max} ([security] command_timeout_secs)"
        ))),
        Some(n) => Ok(Duration::from_secs(n)),
    }
}

/// The error of a call that ran out of time.
fn timed_out(what: &str, after: Duration) -> BuiltinError {
    BuiltinError::Failed(format!(
        "{what} timed out after {} s (no answer within the deadline; the connection was closed)",
        after.as_secs()
    ))
}
