//! Loopback stand-ins for the network tools' tests: [`Fake`], one HTTP server that answers as
//! a web site (pages, an echo, redirects, a flood, a stall, a binary) and as the providers
//! (Open-Meteo, OpenWeatherMap, SearXNG, Brave) in the JSON shapes their real APIs answer,
//! recording every request; and [`Counter`], a listener that only counts the connections it
//! accepts (the proof that a refused request made none).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// The keys the fake providers accept.
pub const BRAVE_KEY: &str = "brave-test-key-5f3a9c";
pub const OWM_KEY: &str = "owm-test-key-81b2d7";
pub const TAVILY_KEY: &str = "tvly-test-key-c0ffee42";

/// A fake site and provider on a loopback address.
pub struct Fake {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Value>>>,
}

impl Fake {
    /// Serves on `ip` (a loopback address), any port.
    pub async fn start(ip: &str) -> Self {
        let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let app = axum::Router::new()
            .fallback(answer)
            .with_state(seen.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, seen }
    }

    /// `http://ip:port`.
    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The requests received so far: `{method, path, query, headers, body}` each.
    pub fn requests(&self) -> Vec<Value> {
        self.seen.lock().unwrap().clone()
    }

    /// The requests received for `path`.
    pub fn requests_to(&self, path: &str) -> Vec<Value> {
        self.requests()
            .into_iter()
            .filter(|r| r["path"] == path)
            .collect()
    }
}

/// A listener that counts accepted connections and closes each at once.
pub struct Counter {
    pub addr: SocketAddr,
    count: Arc<AtomicUsize>,
}

impl Counter {
    /// Listens on `ip`, any port; `None` when the address cannot be bound here (no IPv6).
    pub async fn bind(ip: &str) -> Option<Self> {
        let listener = tokio::net::TcpListener::bind((ip, 0)).await.ok()?;
        let addr = listener.local_addr().unwrap();
        let count = Arc::new(AtomicUsize::new(0));
        let counted = count.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                drop(stream);
            }
        });
        Some(Self { addr, count })
    }

    /// Connections accepted so far.
    pub fn count(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }
}

fn query_of(req: &Request) -> BTreeMap<String, String> {
    url::form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

fn headers_of(headers: &HeaderMap) -> Value {
    let mut map = serde_json::Map::new();
    for (name, value) in headers {
        map.insert(
            name.as_str().to_owned(),
            Value::String(String::from_utf8_lossy(value.as_bytes()).into_owned()),
        );
    }
    Value::Object(map)
}

fn json_answer(status: StatusCode, body: Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

async fn answer(State(seen): State<Arc<Mutex<Vec<Value>>>>, req: Request) -> Response {
    let method = req.method().as_str().to_owned();
    let path = req.uri().path().to_owned();
    let query = query_of(&req);
    let headers = headers_of(req.headers());
    let body = axum::body::to_bytes(req.into_body(), 1 << 20)
        .await
        .unwrap_or_default();
    let body = String::from_utf8_lossy(&body).into_owned();
    let record = json!({
        "method": method, "path": path, "query": query, "headers": headers, "body": body,
    });
    seen.lock().unwrap().push(record.clone());
    let q = |k: &str| query.get(k).cloned().unwrap_or_default();
    match path.as_str() {
        "/echo" => json_answer(StatusCode::OK, record),
        "/page" => ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], PAGE).into_response(),
        "/plain" => ([(header::CONTENT_TYPE, "text/plain")], "just text\n").into_response(),
        "/redirect" => {
            let status = q("status").parse().unwrap_or(302);
            Response::builder()
                .status(status)
                .header(header::LOCATION, q("to"))
                .body(Body::empty())
                .unwrap()
        }
        "/loop" => Response::builder()
            .status(302)
            .header(header::LOCATION, "/loop")
            .body(Body::empty())
            .unwrap(),
        "/big" => (
            [(header::CONTENT_TYPE, "text/plain")],
            "0123456789".repeat(100_000),
        )
            .into_response(),
        "/slow" => {
            tokio::time::sleep(Duration::from_secs(60)).await;
            "late".into_response()
        }
        "/binary" => (
            [(header::CONTENT_TYPE, "image/png")],
            b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01".to_vec(),
        )
            .into_response(),
        // Open-Meteo geocoding.
        "/v1/search" => {
            if q("name") == "Berlin" {
                json_answer(
                    StatusCode::OK,
                    json!({ "results": [
                        { "id": 4_348_599, "name": "Berlin", "latitude": 41.6215,
                          "longitude": -72.7457, "elevation": 50.0, "feature_code": "PPL",
                          "country_code": "US", "timezone": "America/New_York",
                          "country": "United States", "admin1": "Connecticut" },
                        { "id": 2_950_159, "name": "Berlin", "latitude": 52.52437,
                          "longitude": 13.41053, "elevation": 74.0, "feature_code": "PPLC",
                          "country_code": "DE", "timezone": "Europe/Berlin",
                          "population": 3_426_354, "country": "Germany",
                          "admin1": "Land Berlin" }
                    ], "generationtime_ms": 0.5 }),
                )
            } else {
                json_answer(StatusCode::OK, json!({ "generationtime_ms": 0.3 }))
            }
        }
        // Open-Meteo forecast.
        "/v1/forecast" => json_answer(
            StatusCode::OK,
            json!({
                "latitude": 52.52, "longitude": 13.419998, "generationtime_ms": 0.1,
                "utc_offset_seconds": 3600, "timezone": "Europe/Berlin",
                "timezone_abbreviation": "GMT+1", "elevation": 38.0,
                "current_units": { "time": "iso8601", "interval": "seconds",
                    "temperature_2m": "°C", "relative_humidity_2m": "%",
                    "apparent_temperature": "°C", "precipitation": "mm", "weather_code": "wmo code",
                    "wind_speed_10m": "km/h", "wind_direction_10m": "°" },
                "current": { "time": "2026-12-07T21:00", "interval": 900,
                    "temperature_2m": 3.4, "relative_humidity_2m": 87,
                    "apparent_temperature": 0.1, "precipitation": 0.0, "weather_code": 3,
                    "wind_speed_10m": 11.9, "wind_direction_10m": 250 },
                "daily_units": { "time": "iso8601", "weather_code": "wmo code",
                    "temperature_2m_max": "°C", "temperature_2m_min": "°C",
                    "precipitation_sum": "mm", "precipitation_probability_max": "%" },
                "daily": {
                    "time": ["2026-12-07", "2026-12-08", "2026-12-09"],
                    "weather_code": [3, 61, 71],
                    "temperature_2m_max": [4.1, 5.0, 1.2],
                    "temperature_2m_min": [1.0, 2.2, -1.5],
                    "precipitation_sum": [0.0, 3.2, 1.1],
                    "precipitation_probability_max": [10, 80, 55]
                }
            }),
        ),
        // Tavily: a POST with a JSON body and a bearer key.
        "/search" if method == "POST" => {
            if headers["authorization"] != format!("Bearer {TAVILY_KEY}").as_str() {
                return json_answer(
                    StatusCode::UNAUTHORIZED,
                    json!({ "detail": { "error": "Unauthorized: missing or invalid API key." } }),
                );
            }
            let asked: Value = serde_json::from_str(&body).unwrap_or_default();
            json_answer(
                StatusCode::OK,
                json!({
                    "query": asked["query"], "follow_up_questions": null, "answer": null,
                    "images": [],
                    "results": [
                        { "title": "Axum docs", "url": "https://docs.rs/axum",
                          "content": "Ergonomic and modular web framework.", "score": 0.98,
                          "raw_content": null },
                        { "title": "Hyper", "url": "https://hyper.rs/",
                          "content": "A fast HTTP implementation.", "score": 0.9,
                          "raw_content": null }
                    ],
                    "response_time": 1.2
                }),
            )
        }
        // SearXNG.
        "/search" => json_answer(
            StatusCode::OK,
            json!({
                "query": q("q"), "number_of_results": 0,
                "results": [
                    { "url": "https://www.rust-lang.org/", "title": "Rust Programming Language",
                      "content": "A language empowering everyone.", "engine": "duckduckgo",
                      "engines": ["duckduckgo"], "positions": [1], "score": 1.0,
                      "category": "general" },
                    { "url": "https://doc.rust-lang.org/book/", "title": "The Rust Book",
                      "content": "An introductory book about Rust.", "engine": "bing",
                      "engines": ["bing"], "positions": [2], "score": 0.5,
                      "category": "general" }
                ],
                "answers": [], "corrections": [], "infoboxes": [], "suggestions": [],
                "unresponsive_engines": []
            }),
        ),
        // Brave Search API.
        "/res/v1/web/search" => {
            if headers["x-subscription-token"] != BRAVE_KEY {
                return json_answer(
                    StatusCode::UNAUTHORIZED,
                    json!({ "type": "ErrorResponse", "error": { "code": "SUBSCRIPTION_TOKEN_INVALID",
                            "detail": "The provided subscription token is invalid.", "status": 401 } }),
                );
            }
            json_answer(
                StatusCode::OK,
                json!({
                    "type": "search",
                    "query": { "original": q("q") },
                    "web": { "type": "search", "results": [
                        { "title": "Tokio - An asynchronous <strong>Rust</strong> runtime",
                          "url": "https://tokio.rs/", "is_source_local": false,
                          "description": "Tokio is an <strong>asynchronous</strong> runtime.",
                          "age": "2 days", "language": "en", "family_friendly": true }
                    ]}
                }),
            )
        }
        // OpenWeatherMap.
        "/geo/1.0/direct" | "/data/2.5/weather" | "/data/2.5/forecast" if q("appid") != OWM_KEY => {
            json_answer(
                StatusCode::UNAUTHORIZED,
                json!({ "cod": 401, "message": "Invalid API key. Please see https://openweathermap.org/faq#error401 for more info." }),
            )
        }
        "/geo/1.0/direct" => json_answer(
            StatusCode::OK,
            json!([{ "name": "London", "local_names": { "en": "London" }, "lat": 51.5073219,
                     "lon": -0.1276474, "country": "GB", "state": "England" }]),
        ),
        "/data/2.5/weather" => json_answer(
            StatusCode::OK,
            json!({
                "coord": { "lon": -0.1276, "lat": 51.5073 },
                "weather": [{ "id": 500, "main": "Rain", "description": "light rain", "icon": "10n" }],
                "base": "stations",
                "main": { "temp": 8.2, "feels_like": 6.1, "temp_min": 7.0, "temp_max": 9.1,
                          "pressure": 1012, "humidity": 91 },
                "visibility": 10000, "wind": { "speed": 4.1, "deg": 220 },
                "rain": { "1h": 0.4 }, "clouds": { "all": 100 }, "dt": 1_796_670_000,
                "sys": { "country": "GB", "sunrise": 1_796_630_000, "sunset": 1_796_660_000 },
                "timezone": 0, "id": 2_643_743, "name": "London", "cod": 200
            }),
        ),
        "/data/2.5/forecast" => {
            let list: Vec<Value> = (0..16)
                .map(|i| {
                    json!({
                        "dt": 1_796_688_000 + i * 10_800,
                        "main": { "temp": 7.0 + i as f64 * 0.1, "temp_min": 6.0,
                                  "temp_max": 8.0 + i as f64 * 0.1, "humidity": 90 },
                        "weather": [{ "id": 803, "main": "Clouds", "description": "broken clouds" }],
                        "pop": 0.3, "dt_txt": ""
                    })
                })
                .collect();
            json_answer(
                StatusCode::OK,
                json!({ "cod": "200", "message": 0, "cnt": list.len(), "list": list,
                        "city": { "id": 2_643_743, "name": "London", "country": "GB",
                                  "timezone": 0 } }),
            )
        }
        _ => (StatusCode::NOT_FOUND, "no such page").into_response(),
    }
}

const PAGE: &str = "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">\
<title>Revka &amp; the Web</title><style>body { color: red }</style>\
<script>var leaked = \"script text\";</script></head>\
<body><nav><a href=\"/\">Home</a></nav><h1>Fetching pages</h1>\
<p>Revka turns <b>HTML</b> into <em>readable</em> text, with \
<a href=\"https://example.com/docs\">links</a> kept.</p>\
<h2>Steps</h2><ol><li>fetch</li><li>convert</li></ol></body></html>";
