//! The network tools (`http_request`, `web_fetch`, `weather`, `web_search_tool`) end to end
//! through the official Python SDK client, against loopback stand-ins ([`fake`]): the
//! positive calls, and the adversarial suite (SSRF to loopback in every spelling, to the
//! metadata address, through names and redirects; credentials across hosts; size and time
//! caps; read-only autonomy), each refusal asserted by its rule and by a listener that saw no
//! connection.

mod fake;

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use self::fake::{BRAVE_KEY, Counter, Fake, OWM_KEY, TAVILY_KEY};
use crate::harness::{Served, assert_refused, eventually_async, sdk_tool_calls, workspace};

/// `call` succeeded; its structured content.
#[track_caller]
fn structured(call: &Value) -> &Value {
    assert_eq!(call["is_error"], false, "{call}");
    &call["structured"]
}

/// The names of this machine that `/etc/hosts` maps to a loopback address (other than
/// `localhost`), e.g. the host's own name.
fn loopback_names() -> Vec<String> {
    let hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
    let mut names = Vec::new();
    for line in hosts.lines() {
        let line = line.split('#').next().unwrap_or_default();
        let mut fields = line.split_whitespace();
        let Some(addr) = fields.next() else { continue };
        if addr
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
        {
            for name in fields {
                if name != "localhost" && !names.iter().any(|n| n == name) {
                    names.push(name.to_owned());
                }
            }
        }
    }
    names
}

#[tokio::test(flavor = "multi_thread")]
async fn http_tools_work_and_stay_inside_their_rules() {
    let site = Fake::start("127.0.0.1").await;
    let other = Fake::start("127.0.0.3").await;
    let unlisted = Counter::bind("127.0.0.2").await.expect("127.0.0.2 binds");
    let blocked = Counter::bind("127.0.0.5").await.expect("127.0.0.5 binds");
    let served = Served::start(&format!(
        r#"
[security]
allowed_hosts = ["127.0.0.1", "127.0.0.3", "127.0.0.5"]
blocked_hosts = ["127.0.0.5"]
max_output_bytes = 65536
command_timeout_secs = 20

[tools.weather]
base_url = "{site}"

[tools.web_search]
provider = "searxng"
base_url = "{site}/"
"#,
        site = site.base()
    ))
    .await;
    let (_dir, ws) = workspace();
    let session = served.session_in(&ws).await;
    let base = site.base();
    let secret = "Bearer s3cr3t-token-0123456789";
    let calls = json!([
        // 0: GET with a header.
        { "tool": "http_request", "arguments": {
            "url": format!("{base}/echo?x=1"), "headers": { "X-Test": "yes" } } },
        // 1: POST with a body.
        { "tool": "http_request", "arguments": {
            "url": format!("{base}/echo"), "method": "POST",
            "headers": { "Content-Type": "application/json" }, "body": "{\"hello\":1}" } },
        // 2: a page, as text.
        { "tool": "web_fetch", "arguments": { "url": format!("{base}/page") } },
        // 3: weather for a place name with a country.
        { "tool": "weather", "arguments": { "location": "Berlin, Germany", "days": 2 } },
        // 4: a search.
        { "tool": "web_search_tool", "arguments": { "query": "rust language", "max_results": 1 } },
        // 5: a redirect to a loopback address not in allowed_hosts.
        { "tool": "http_request", "arguments": {
            "url": format!("{base}/redirect?to=http://127.0.0.2:{}/x", unlisted.port()) } },
        // 6: a redirect to another allowed host: credentials dropped.
        { "tool": "http_request", "arguments": {
            "url": format!("{base}/redirect?to={}/echo", other.base()),
            "headers": { "Authorization": secret, "Cookie": "session=abc",
                         "X-Api-Key": "k-9f8e7d6c", "Accept": "application/json" } } },
        // 7: a redirect on the same origin: credentials kept.
        { "tool": "http_request", "arguments": {
            "url": format!("{base}/redirect?to=/echo&status=307"), "method": "POST",
            "body": "again", "headers": { "Authorization": secret } } },
        // 8: a blocked host, even though allowed.
        { "tool": "http_request", "arguments": {
            "url": format!("http://127.0.0.5:{}/", blocked.port()) } },
        // 9: a body larger than max_output_bytes.
        { "tool": "http_request", "arguments": { "url": format!("{base}/big") } },
        // 10: a server that does not answer in time.
        { "tool": "http_request", "arguments": { "url": format!("{base}/slow"), "timeout_secs": 1 } },
        // 11: a redirect loop.
        { "tool": "http_request", "arguments": { "url": format!("{base}/loop") } },
        // 12: a binary body.
        { "tool": "http_request", "arguments": { "url": format!("{base}/binary") } },
        // 13: not http.
        { "tool": "web_fetch", "arguments": { "url": "file:///etc/passwd" } },
        // 14: a deadline above command_timeout_secs.
        { "tool": "http_request", "arguments": { "url": format!("{base}/echo"), "timeout_secs": 3600 } },
        // 15: a redirect to a loopback address not in allowed_hosts, by web_fetch.
        { "tool": "web_fetch", "arguments": {
            "url": format!("{base}/redirect?to=http://127.0.0.2:{}/", unlisted.port()) } },
        // 16: a Host header cannot be smuggled.
        { "tool": "http_request", "arguments": {
            "url": format!("{base}/echo"), "headers": { "Host": "metadata.internal" } } },
        // 17: plain text passes through web_fetch.
        { "tool": "web_fetch", "arguments": { "url": format!("{base}/plain") } },
    ]);
    let started = Instant::now();
    let Some(out) = sdk_tool_calls(&served, &session, calls).await else {
        eprintln!("skipping: the Python SDK test dependencies are not installed");
        return;
    };
    let elapsed = started.elapsed();
    let calls = out["calls"].as_array().unwrap();
    for name in ["http_request", "web_fetch", "weather", "web_search_tool"] {
        assert!(
            out["tools"].as_array().unwrap().iter().any(|t| t == name),
            "{name} listed: {}",
            out["tools"]
        );
    }

    // 0: GET.
    let get = structured(&calls[0]);
    assert_eq!(get["status"], 200);
    let echoed: Value = serde_json::from_str(get["body"].as_str().unwrap()).unwrap();
    assert_eq!(echoed["method"], "GET");
    assert_eq!(echoed["query"]["x"], "1");
    assert_eq!(echoed["headers"]["x-test"], "yes");
    assert_eq!(get["headers"]["content-type"], "application/json");
    assert!(
        calls[0]["text"]
            .as_str()
            .unwrap()
            .starts_with("HTTP 200 OK")
    );

    // 1: POST.
    let post = structured(&calls[1]);
    let echoed: Value = serde_json::from_str(post["body"].as_str().unwrap()).unwrap();
    assert_eq!(echoed["method"], "POST");
    assert_eq!(echoed["body"], "{\"hello\":1}");
    assert_eq!(echoed["headers"]["content-type"], "application/json");

    // 2: web_fetch.
    let page = structured(&calls[2]);
    assert_eq!(page["title"], "Revka & the Web");
    assert_eq!(page["format"], "markdown");
    let content = page["content"].as_str().unwrap();
    assert!(content.contains("# Fetching pages"), "{content}");
    assert!(content.contains("**HTML**"), "{content}");
    assert!(content.contains("https://example.com/docs"), "{content}");
    // A relative link is resolved against the page.
    assert!(content.contains(&format!("[1]: {base}/\n")), "{content}");
    assert!(!content.contains("script text"), "{content}");
    assert!(
        calls[2]["text"]
            .as_str()
            .unwrap()
            .starts_with("# Revka & the Web")
    );

    // 3: weather.
    let weather = structured(&calls[3]);
    assert_eq!(weather["provider"], "open-meteo");
    assert_eq!(weather["location"]["country"], "Germany");
    assert_eq!(weather["current"]["temperature"], 3.4);
    assert_eq!(weather["current"]["conditions"], "overcast");
    assert_eq!(weather["forecast"].as_array().unwrap().len(), 2);
    assert_eq!(weather["forecast"][1]["conditions"], "slight rain");
    assert_eq!(weather["units"]["temperature"], "°C");
    let forecast_asked = site.requests_to("/v1/forecast");
    assert_eq!(forecast_asked[0]["query"]["latitude"], "52.52437");
    assert_eq!(forecast_asked[0]["query"]["forecast_days"], "2");
    assert_eq!(site.requests_to("/v1/search")[0]["query"]["name"], "Berlin");

    // 4: search.
    let search = structured(&calls[4]);
    assert_eq!(search["provider"], "searxng");
    assert_eq!(
        search["results"],
        json!([{ "title": "Rust Programming Language", "url": "https://www.rust-lang.org/",
                 "snippet": "A language empowering everyone." }])
    );
    let searched = site.requests_to("/search");
    assert_eq!(searched[0]["query"]["q"], "rust language");
    assert_eq!(searched[0]["query"]["format"], "json");

    // 5: redirect to an unlisted loopback address: refused, no connection.
    assert_refused(&calls[5], "internal_address");
    assert!(
        calls[5]["text"].as_str().unwrap().contains("redirect 1"),
        "{}",
        calls[5]
    );

    // 6: cross-host redirect drops credentials.
    let hop = structured(&calls[6]);
    assert_eq!(hop["url"], format!("{}/echo", other.base()));
    let arrived = &other.requests_to("/echo")[0]["headers"];
    for header in ["authorization", "cookie", "x-api-key"] {
        assert!(
            arrived.get(header).is_none(),
            "{header} forwarded: {arrived}"
        );
    }
    assert_eq!(arrived["accept"], "application/json");
    let dropped = hop["dropped_headers"].as_array().unwrap();
    assert_eq!(dropped.len(), 3, "{dropped:?}");
    assert_eq!(hop["redirects"][0]["status"], 302);
    // The first host had them.
    let first = site.requests_to("/redirect");
    assert!(
        first
            .iter()
            .any(|r| r["headers"]["authorization"] == secret)
    );

    // 7: a same-origin 307 keeps the method, the body and the credentials.
    let same = structured(&calls[7]);
    let echoed: Value = serde_json::from_str(same["body"].as_str().unwrap()).unwrap();
    assert_eq!(echoed["method"], "POST");
    assert_eq!(echoed["body"], "again");
    assert_eq!(echoed["headers"]["authorization"], secret);

    // 8: blocked wins over allowed.
    assert_refused(&calls[8], "blocked_hosts");

    // 9: the body cap.
    let big = structured(&calls[9]);
    assert_eq!(big["truncated"], true);
    assert_eq!(big["body_bytes"], 65536);
    assert_eq!(big["body"].as_str().unwrap().len(), 65536);

    // 10: the deadline.
    assert_eq!(calls[10]["is_error"], true, "{}", calls[10]);
    assert!(
        calls[10]["text"]
            .as_str()
            .unwrap()
            .contains("timed out after 1 s"),
        "{}",
        calls[10]
    );
    assert!(
        elapsed < Duration::from_secs(60),
        "the batch took {elapsed:?}"
    );

    // 11: the redirect cap.
    assert_eq!(calls[11]["is_error"], true);
    assert!(
        calls[11]["text"]
            .as_str()
            .unwrap()
            .contains("stopped after 5 redirects")
    );
    assert_eq!(site.requests_to("/loop").len(), 6);

    // 12: binary summarised.
    let binary = structured(&calls[12]);
    assert_eq!(binary["body"], Value::Null);
    assert_eq!(binary["binary"]["bytes"], 20);
    assert!(calls[12]["text"].as_str().unwrap().contains("binary body"));

    // 13: scheme.
    assert_refused(&calls[13], "scheme");

    // 14: deadline above the policy's.
    assert_eq!(calls[14]["is_error"], true);
    assert!(
        calls[14]["text"]
            .as_str()
            .unwrap()
            .contains("command_timeout_secs")
    );

    // 15: web_fetch re-checks redirects too.
    assert_refused(&calls[15], "internal_address");

    // 16: Host cannot be set.
    assert_eq!(calls[16]["is_error"], true);
    assert!(
        calls[16]["text"]
            .as_str()
            .unwrap()
            .contains("cannot be set")
    );

    // 17: plain text.
    let plain = structured(&calls[17]);
    assert_eq!(plain["format"], "text");
    assert_eq!(plain["content"], "just text\n");

    // No refused request reached its listener.
    assert_eq!(unlisted.count(), 0, "a connection reached 127.0.0.2");
    assert_eq!(blocked.count(), 0, "a connection reached the blocked host");

    // Refusals are counted by rule.
    let metrics = served.metrics_text().await;
    for rule in ["internal_address", "blocked_hosts", "scheme"] {
        assert!(
            metrics
                .lines()
                .any(|l| l.starts_with("revka_builtin_refusals_total")
                    && l.contains(&format!("rule=\"{rule}\""))),
            "no refusal metric for {rule}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn ssrf_is_refused_before_any_connection() {
    // The fake providers live on 127.0.0.9, the one loopback address allowed; the target of
    // every attack listens on 127.0.0.1 (and ::1 where there is IPv6) and counts connections.
    let providers = Fake::start("127.0.0.9").await;
    let target = Counter::bind("127.0.0.1").await.expect("127.0.0.1 binds");
    let target6 = Counter::bind("::1").await;
    let served = Served::start_with_env(
        &format!(
            r#"
[security]
autonomy = "read_only"
allowed_hosts = ["127.0.0.9"]

[tools.weather]
provider = "openweathermap"
base_url = "{p}"
api_key = "${{REVKA_TEST_OWM_KEY}}"

[tools.web_search]
provider = "brave"
base_url = "{p}"
api_key = "${{REVKA_TEST_BRAVE_KEY}}"
"#,
            p = providers.base()
        ),
        &[
            ("REVKA_TEST_OWM_KEY", OWM_KEY),
            ("REVKA_TEST_BRAVE_KEY", BRAVE_KEY),
        ],
    )
    .await;
    let (_dir, ws) = workspace();
    let session = served.session_in(&ws).await;
    let port = target.port();
    let mut attacks: Vec<String> = [
        "127.0.0.1",
        "2130706433",
        "0177.0.0.1",
        "0x7f.1",
        "0x7f000001",
        "017700000001",
        "127.1",
        "127.0.0.1.",
        "0.0.0.0",
        "0",
        "[::ffff:127.0.0.1]",
        "[::ffff:7f00:1]",
        "localhost",
        "LOCALHOST.",
    ]
    .iter()
    .map(|host| format!("http://{host}:{port}/"))
    .collect();
    for name in loopback_names() {
        attacks.push(format!("http://{name}:{port}/"));
    }
    attacks.push(format!("http://user:pw@127.0.0.1:{port}/"));
    attacks.push(format!("https://127.0.0.1:{port}/"));
    // The cloud metadata address, plain and in decimal (refused before any packet is sent).
    attacks.push("http://169.254.169.254/latest/meta-data/".to_owned());
    attacks.push("http://2852039166/latest/meta-data/".to_owned());
    attacks.push("http://[::ffff:169.254.169.254]/".to_owned());
    if let Some(t6) = &target6 {
        attacks.push(format!("http://[::1]:{}/", t6.port()));
        attacks.push(format!("http://[::]:{}/", t6.port()));
    }
    let mut calls: Vec<Value> = Vec::new();
    for url in &attacks {
        calls.push(json!({ "tool": "http_request", "arguments": { "url": url } }));
    }
    let fixed = calls.len();
    calls.extend([
        // fixed+0: web_fetch through a name.
        json!({ "tool": "web_fetch", "arguments": { "url": format!("http://localhost:{port}/") } }),
        // fixed+1: a redirect from the allowed host to a name that resolves to loopback.
        json!({ "tool": "http_request", "arguments": {
            "url": format!("{}/redirect?to=http://localhost:{port}/", providers.base()) } }),
        // fixed+2: a redirect to an odd spelling of loopback.
        json!({ "tool": "web_fetch", "arguments": {
            "url": format!("{}/redirect?to=http://0x7f.1:{port}/", providers.base()) } }),
        // fixed+3: read_only refuses a POST (by the autonomy rule, before anything is sent).
        json!({ "tool": "http_request", "arguments": {
            "url": format!("{}/echo", providers.base()), "method": "POST", "body": "x" } }),
        // fixed+4: and lets a GET of an allowed host through.
        json!({ "tool": "http_request", "arguments": {
            "url": format!("{}/echo", providers.base()), "method": "get" } }),
        // fixed+5: Brave, its key from the environment.
        json!({ "tool": "web_search_tool", "arguments": { "query": "tokio" } }),
        // fixed+6: OpenWeatherMap for a place name.
        json!({ "tool": "weather", "arguments": { "location": "London", "days": 2 } }),
        // fixed+7: OpenWeatherMap for coordinates, imperial.
        json!({ "tool": "weather", "arguments": {
            "latitude": 51.5, "longitude": -0.12, "units": "imperial", "days": 1 } }),
        // fixed+8: DELETE is refused under read_only too.
        json!({ "tool": "http_request", "arguments": {
            "url": format!("http://127.0.0.1:{port}/"), "method": "DELETE" } }),
    ]);
    let Some(out) = sdk_tool_calls(&served, &session, Value::Array(calls)).await else {
        eprintln!("skipping: the Python SDK test dependencies are not installed");
        return;
    };
    let calls = out["calls"].as_array().unwrap();
    for (url, call) in attacks.iter().zip(calls) {
        assert_refused(call, "internal_address");
        assert!(
            !call["text"].as_str().unwrap_or_default().contains("pw@"),
            "{url}: the userinfo is echoed: {call}"
        );
    }
    assert_refused(&calls[fixed], "internal_address");
    assert_refused(&calls[fixed + 1], "internal_address");
    assert!(
        calls[fixed + 1]["text"]
            .as_str()
            .unwrap()
            .contains("localhost")
    );
    assert_refused(&calls[fixed + 2], "internal_address");
    assert_refused(&calls[fixed + 3], "autonomy");
    assert!(
        providers
            .requests_to("/echo")
            .iter()
            .all(|r| r["method"] != "POST"),
        "the POST was sent"
    );
    let get = structured(&calls[fixed + 4]);
    assert_eq!(get["status"], 200);
    assert_eq!(get["method"], "GET");

    let search = structured(&calls[fixed + 5]);
    assert_eq!(search["provider"], "brave");
    assert_eq!(
        search["results"][0]["title"],
        "Tokio - An asynchronous Rust runtime"
    );
    assert_eq!(
        search["results"][0]["snippet"],
        "Tokio is an asynchronous runtime."
    );
    let brave = providers.requests_to("/res/v1/web/search");
    assert_eq!(brave[0]["headers"]["x-subscription-token"], BRAVE_KEY);
    assert_eq!(brave[0]["query"]["q"], "tokio");

    let london = structured(&calls[fixed + 6]);
    assert_eq!(london["provider"], "openweathermap");
    assert_eq!(london["location"]["name"], "London");
    assert_eq!(london["current"]["temperature"], 8.2);
    assert_eq!(london["current"]["conditions"], "light rain");
    assert_eq!(london["forecast"].as_array().unwrap().len(), 2);
    assert_eq!(london["units"]["wind_speed"], "m/s");
    let coords = structured(&calls[fixed + 7]);
    assert_eq!(coords["units"]["temperature"], "°F");
    assert_eq!(coords["units"]["precipitation"], "mm");
    assert_eq!(coords["forecast"].as_array().unwrap().len(), 1);
    assert!(
        providers
            .requests_to("/data/2.5/weather")
            .iter()
            .any(|r| r["query"]["units"] == "imperial")
    );
    assert_refused(&calls[fixed + 8], "autonomy");

    // No key in anything the caller saw.
    let everything = out.to_string();
    assert!(!everything.contains(BRAVE_KEY), "the Brave key leaked");
    assert!(
        !everything.contains(OWM_KEY),
        "the OpenWeatherMap key leaked"
    );

    // Not one connection reached the target.
    assert_eq!(target.count(), 0, "a connection reached 127.0.0.1");
    if let Some(t6) = &target6 {
        assert_eq!(t6.count(), 0, "a connection reached ::1");
    }
    // The audit recorded the refusals by rule, and never a key.
    let run_log = served.home.path().join("operator_mcp/runlogs/run.jsonl");
    let audit = eventually_async("the refusals in the run log", async || {
        let text = std::fs::read_to_string(&run_log).unwrap_or_default();
        (text.contains("\"builtin_call\"") && text.contains("\"rule\":\"autonomy\""))
            .then_some(text)
    })
    .await;
    assert!(audit.contains("\"rule\":\"internal_address\""));
    assert!(!audit.contains(BRAVE_KEY) && !audit.contains(OWM_KEY));
}

#[tokio::test(flavor = "multi_thread")]
async fn providers_skip_with_the_reason_or_serve_with_their_key() {
    let tavily = Fake::start("127.0.0.1").await;
    let served = Served::start_with_env(
        &format!(
            r#"
[security]
allowed_hosts = ["127.0.0.1"]

[tools.weather]
provider = "openweathermap"

[tools.web_search]
provider = "tavily"
base_url = "{}"
api_key = "${{REVKA_TEST_TAVILY_KEY}}"
"#,
            tavily.base()
        ),
        &[("REVKA_TEST_TAVILY_KEY", TAVILY_KEY)],
    )
    .await;
    let health = served.health().await;
    let skipped = health["skipped_tools"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let weather = skipped
        .iter()
        .find(|s| s["tool"] == "weather")
        .unwrap_or_else(|| panic!("weather not skipped: {health}"));
    assert!(
        weather["reason"]
            .as_str()
            .unwrap()
            .contains("[tools.weather] api_key is not set"),
        "{weather}"
    );
    assert!(
        !skipped.iter().any(|s| s["tool"] == "web_search_tool"),
        "{health}"
    );
    let (_dir, ws) = workspace();
    let session = served.session_in(&ws).await;
    let calls = json!([
        { "tool": "web_search_tool", "arguments": { "query": "axum", "max_results": 2 } },
    ]);
    let Some(out) = sdk_tool_calls(&served, &session, calls).await else {
        eprintln!("skipping: the Python SDK test dependencies are not installed");
        return;
    };
    let search = structured(&out["calls"][0]);
    assert_eq!(search["provider"], "tavily");
    assert_eq!(search["results"].as_array().unwrap().len(), 2);
    assert_eq!(
        search["results"][0],
        json!({ "title": "Axum docs", "url": "https://docs.rs/axum",
                "snippet": "Ergonomic and modular web framework." })
    );
    let asked = tavily.requests_to("/search");
    assert_eq!(asked[0]["method"], "POST");
    let body: Value = serde_json::from_str(asked[0]["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["query"], "axum");
    assert_eq!(body["max_results"], 2);
    assert!(
        !out.to_string().contains(TAVILY_KEY),
        "the Tavily key leaked"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn unconfigured_providers_are_skipped_with_the_reason() {
    // No [tools.web_search] provider; a weather key naming an unset variable.
    let served = Served::start(
        r#"
[tools.weather]
provider = "openweathermap"
api_key = "${REVKA_TEST_UNSET_KEY}"
"#,
    )
    .await;
    let health = served.health().await;
    let reason = |tool: &str| {
        health["skipped_tools"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["tool"] == tool).cloned())
            .unwrap_or_else(|| panic!("{tool} not skipped: {health}"))["reason"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let search = reason("web_search_tool");
    assert!(
        search.contains("configure [tools.web_search] provider"),
        "{search}"
    );
    let weather = reason("weather");
    assert!(
        weather.contains(
            "[tools.weather] api_key: it refers to ${REVKA_TEST_UNSET_KEY}, which is not set"
        ),
        "{weather}"
    );
}
