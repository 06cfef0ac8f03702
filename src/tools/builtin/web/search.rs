//! `web_search_tool`: web search through the provider of `[tools.web_search]`, results as
//! `{title, url, snippet}`.
//!
//! Providers: `searxng` (keyless, self-hosted: `base_url` required, its JSON output format
//! enabled), `brave` (Brave Search API, `api_key` sent as `X-Subscription-Token`) and `tavily`
//! (Tavily API, `api_key` sent as a bearer token). There is no keyless public default: with no
//! provider configured the tool is skipped with the reason. Requests go through the
//! SSRF-checked client ([`super::client`]), so a provider on an internal address must be in
//! `[security] allowed_hosts`.

use std::sync::Arc;

use futures::future::BoxFuture;
use reqwest::Method;
use serde_json::{Value, json};
use url::Url;

use super::client::{Net, Request};
use super::deadline;
use super::provider::{self, call_json};
use crate::config::ProviderConfig;
use crate::security::Effect;
use crate::tools::BuiltinError;
use crate::tools::builtin::{Args, Cx, PolicyTool, capped, ok_text};

const SECTION: &str = "tools.web_search";

/// Results returned by default, and at most.
const DEFAULT_RESULTS: u64 = 5;
const MAX_RESULTS: u64 = 20;

/// The longest title and snippet kept, in bytes.
const MAX_TITLE: usize = 300;
const MAX_SNIPPET: usize = 1000;

/// The longest query.
const MAX_QUERY: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Searxng,
    Brave,
    Tavily,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Self::Searxng => "searxng",
            Self::Brave => "brave",
            Self::Tavily => "tavily",
        }
    }
}

/// The tool, with its provider.
pub(super) struct WebSearch {
    net: Arc<Net>,
    kind: Kind,
    base: Url,
    key: Option<String>,
}

impl WebSearch {
    /// The tool for `cfg`, or why it cannot register.
    pub(super) fn new(net: Arc<Net>, cfg: &ProviderConfig) -> Result<Self, String> {
        let Some(name) = cfg
            .provider
            .as_deref()
            .map(str::trim)
            .filter(|p| !p.is_empty())
        else {
            return Err(format!(
                "no search provider: configure [{SECTION}] provider = \"searxng\" with base_url \
                 (self-hosted, keyless), or \"brave\" or \"tavily\" with api_key"
            ));
        };
        let (kind, default) = match name.to_ascii_lowercase().as_str() {
            "searxng" | "searx" => (Kind::Searxng, None),
            "brave" => (Kind::Brave, Some("https://api.search.brave.com")),
            "tavily" => (Kind::Tavily, Some("https://api.tavily.com")),
            _ => {
                return Err(format!(
                    "[{SECTION}] provider {name:?} is not known: use \"searxng\", \"brave\" or \
                     \"tavily\""
                ));
            }
        };
        let base = match (default, cfg.base_url.as_deref()) {
            (None, None) => {
                return Err(format!(
                    "[{SECTION}] provider \"searxng\" needs base_url (the instance's URL, with \
                     format json enabled in its settings)"
                ));
            }
            (default, value) => {
                provider::base_url(SECTION, "base_url", value, default.unwrap_or_default())?
            }
        };
        let key = provider::api_key(SECTION, cfg)?;
        if kind != Kind::Searxng && key.is_none() {
            return Err(format!(
                "provider {:?} needs an API key and [{SECTION}] api_key is not set",
                kind.name()
            ));
        }
        Ok(Self {
            net,
            kind,
            base,
            key,
        })
    }
}

impl PolicyTool for WebSearch {
    fn name(&self) -> &'static str {
        "web_search_tool"
    }

    fn description(&self) -> String {
        format!(
            "Searches the web with the configured provider ({}) and returns up to {MAX_RESULTS} \
             results (default {DEFAULT_RESULTS}), each {{title, url, snippet}}.",
            self.kind.name()
        )
    }

    fn input_schema(&self) -> Value {
        json!({
            "type": "object",
            "properties": {
                "query": { "type": "string", "description": "What to search for." },
                "max_results": {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": MAX_RESULTS,
                    "description": format!("How many results (default {DEFAULT_RESULTS}).")
                },
                "timeout_secs": {
                    "type": "integer",
                    "minimum": 1,
                    "description": "Deadline; default and maximum [security] command_timeout_secs."
                }
            },
            "required": ["query"],
            "additionalProperties": false
        })
    }

    fn effect(&self, _args: &Value) -> Effect {
        Effect::NetworkRead
    }

    fn run(&self, _cx: Cx, args: Value) -> BoxFuture<'static, Result<Value, BuiltinError>> {
        let net = self.net.clone();
        let (kind, base, key) = (self.kind, self.base.clone(), self.key.clone());
        Box::pin(async move { search(&net, kind, &base, key.as_deref(), &args).await })
    }
}

async fn search(
    net: &Net,
    kind: Kind,
    base: &Url,
    key: Option<&str>,
    args: &Value,
) -> Result<Value, BuiltinError> {
    let a = Args::new(args)?;
    let query = a.str("query")?.trim();
    if query.is_empty() {
        return Err(BuiltinError::Arguments("`query` is empty".to_owned()));
    }
    if query.len() > MAX_QUERY {
        return Err(BuiltinError::Arguments(format!(
            "`query` is longer than {MAX_QUERY} bytes"
        )));
    }
    let count = a.opt_u64("max_results")?.unwrap_or(DEFAULT_RESULTS);
    if !(1..=MAX_RESULTS).contains(&count) {
        return Err(BuiltinError::Arguments(format!(
            "`max_results` must be between 1 and {MAX_RESULTS}"
        )));
    }
    let timeout = deadline(&a, net.policy())?;
    let request = match kind {
        Kind::Searxng => {
            let mut url = provider::endpoint(base, "search");
            url.query_pairs_mut()
                .append_pair("q", query)
                .append_pair("format", "json")
                .append_pair("pageno", "1");
            Request::get(url)
        }
        Kind::Brave => {
            let mut url = provider::endpoint(base, "res/v1/web/search");
            url.query_pairs_mut()
                .append_pair("q", query)
                .append_pair("count", &count.to_string());
            let mut request = Request::get(url);
            request.headers = provider::header("x-subscription-token", key.unwrap_or_default())?;
            request
        }
        Kind::Tavily => {
            let url = provider::endpoint(base, "search");
            let mut request = Request::get(url);
            request.method = Method::POST;
            request.headers = provider::header(
                "authorization",
                &format!("Bearer {}", key.unwrap_or_default()),
            )?;
            request.headers.insert(
                reqwest::header::CONTENT_TYPE,
                reqwest::header::HeaderValue::from_static("application/json"),
            );
            let body = json!({ "query": query, "max_results": count, "search_depth": "basic" });
            request.body = Some(body.to_string().into());
            request
        }
    };
    let answer = call_json(net, kind.name(), request, key, timeout).await?;
    let max_output = net.policy().config().max_output();
    let results = parse(kind, &answer, count as usize);
    let mut text = format!(
        "{} results for {query:?} ({}):\n",
        results.len(),
        kind.name()
    );
    let mut shown = Vec::new();
    for (i, r) in results.into_iter().enumerate() {
        let line = format!(
            "\n{}. {}\n   {}\n   {}\n",
            i + 1,
            r["title"].as_str().unwrap_or_default(),
            r["url"].as_str().unwrap_or_default(),
            r["snippet"].as_str().unwrap_or_default()
        );
        if text.len() + line.len() > max_output {
            break;
        }
        text.push_str(&line);
        shown.push(r);
    }
    Ok(ok_text(
        text,
        json!({ "provider": kind.name(), "query": query, "results": shown }),
    ))
}

/// The results of a provider's answer, at most `count`, as `{title, url, snippet}`.
fn parse(kind: Kind, answer: &Value, count: usize) -> Vec<Value> {
    let (list, snippet_key) = match kind {
        Kind::Searxng => (&answer["results"], "content"),
        Kind::Brave => (&answer["web"]["results"], "description"),
        Kind::Tavily => (&answer["results"], "content"),
    };
    list.as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|item| {
                    let url = item["url"].as_str()?.trim();
                    let parsed = Url::parse(url).ok()?;
                    if !matches!(parsed.scheme(), "http" | "https") {
                        return None;
                    }
                    let title = clean(item["title"].as_str().unwrap_or(url), MAX_TITLE);
                    let snippet = clean(item[snippet_key].as_str().unwrap_or(""), MAX_SNIPPET);
                    Some(json!({ "title": title, "url": url, "snippet": snippet }))
                })
                .take(count)
                .collect()
        })
        .unwrap_or_default()
}

/// Text from a provider: tags (Brave's `<strong>`) removed, common entities decoded,
/// whitespace collapsed, cut at `max` bytes.
fn clean(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_tag = false;
    for c in text.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => in_tag = false,
            _ if !in_tag => out.push(c),
            _ => {}
        }
    }
    let out = out
        .replace("&amp;", "&")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&#x27;", "'");
    let collapsed = out.split_whitespace().collect::<Vec<_>>().join(" ");
    capped(collapsed.as_bytes(), max).0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_provider_answer_becomes_results() {
        let searx = json!({ "query": "q", "results": [
            { "url": "https://a.example/", "title": "A", "content": "about a", "engine": "x" },
            { "url": "javascript:alert(1)", "title": "bad", "content": "" },
            { "url": "https://b.example/", "title": "B", "content": "about b" },
        ]});
        let got = parse(Kind::Searxng, &searx, 5);
        assert_eq!(got.len(), 2);
        assert_eq!(
            got[0],
            json!({ "title": "A", "url": "https://a.example/", "snippet": "about a" })
        );
        let brave = json!({ "type": "search", "web": { "type": "search", "results": [
            { "title": "Rust <strong>lang</strong>", "url": "https://rust-lang.org/",
              "description": "A <strong>language</strong> &amp; more", "age": "1 day" },
        ]}});
        assert_eq!(
            parse(Kind::Brave, &brave, 5),
            vec![
                json!({ "title": "Rust lang", "url": "https://rust-lang.org/",
                          "snippet": "A language & more" })
            ]
        );
        let tavily = json!({ "query": "q", "results": [
            { "title": "T1", "url": "https://t1.example/", "content": "c1", "score": 0.9 },
            { "title": "T2", "url": "https://t2.example/", "content": "c2", "score": 0.8 },
        ], "response_time": 1.0 });
        assert_eq!(parse(Kind::Tavily, &tavily, 1).len(), 1);
        assert!(parse(Kind::Brave, &json!({}), 5).is_empty());
    }

    #[test]
    fn registration_says_what_is_missing() {
        let home = tempfile::tempdir().unwrap();
        let policy = Arc::new(
            crate::security::Policy::new(&crate::config::SecurityConfig::default(), home.path())
                .unwrap(),
        );
        let net = Arc::new(Net::new(policy).unwrap());
        let reason = |cfg: ProviderConfig| WebSearch::new(net.clone(), &cfg).err().unwrap();
        assert!(
            reason(ProviderConfig::default()).contains("[tools.web_search] provider"),
            "{}",
            reason(ProviderConfig::default())
        );
        let brave = ProviderConfig {
            provider: Some("brave".into()),
            ..ProviderConfig::default()
        };
        let why = reason(brave);
        assert!(
            why.contains("[tools.web_search] api_key is not set"),
            "{why}"
        );
        let searx = ProviderConfig {
            provider: Some("searxng".into()),
            ..ProviderConfig::default()
        };
        assert!(reason(searx).contains("needs base_url"));
        let odd = ProviderConfig {
            provider: Some("duckduckgo".into()),
            ..ProviderConfig::default()
        };
        assert!(reason(odd).contains("not known"));
        let ok = ProviderConfig {
            provider: Some("tavily".into()),
            api_key: Some("tvly-secret".into()),
            ..ProviderConfig::default()
        };
        assert!(WebSearch::new(net.clone(), &ok).is_ok());
    }
}
