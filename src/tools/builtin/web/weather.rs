//! `weather`: current conditions and a short daily forecast for a place name or coordinates,
//! from the provider of `[tools.weather]`.
//!
//! Providers: `open-meteo` (the default, keyless: its geocoding API turns a name into
//! coordinates, its forecast API answers), and `openweathermap` (`api_key` required; its
//! geocoding, current weather and 5-day/3-hour forecast APIs, the forecast summed up per day).
//! `base_url` replaces the provider's host (for a mirror or a test server); with Open-Meteo the
//! geocoding host is `geocoding_url`, else `base_url` when set, else Open-Meteo's public one.
//! Requests go through the SSRF-checked client ([`super::client`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use futures::future::BoxFuture;
use serde_json::{Value, json};
use url::Url;

use super::client::{Net, Request};
use super::deadline;
use super::provider::{self, call_json, number};
use crate::config::ProviderConfig;
use crate::security::Effect;
use crate::tools::BuiltinError;
use crate::tools::builtin::{Args, Cx, PolicyTool, ok_text};

const SECTION: &str = "tools.weather";

/// Forecast days by default, and at most.
const DEFAULT_DAYS: u64 = 3;
const MAX_DAYS: u64 = 7;

/// The longest place name.
const MAX_LOCATION: usize = 200;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    OpenMeteo,
    OpenWeatherMap,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Self::OpenMeteo => "open-meteo",
            Self::OpenWeatherMap => "openweathermap",
        }
    }
}

/// The tool, with its provider.
pub(super) struct Weather {
    net: Arc<Net>,
    kind: Kind,
    base: Url,
    geocoding: Url,
    key: Option<String>,
}

impl Weather {
    /// The tool for `cfg`, or why it cannot register.
    pub(super) fn new(net: Arc<Net>, cfg: &ProviderConfig) -> Result<Self, String> {
        let name = cfg
            .provider
            .as_deref()
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .unwrap_or("open-meteo")
            .to_ascii_lowercase();
        let kind = match name.as_str() {
            "open-meteo" | "openmeteo" | "open_meteo" => Kind::OpenMeteo,
            "openweathermap" | "owm" => Kind::OpenWeatherMap,
            _ => {
                return Err(format!(
                    "[{SECTION}] provider {name:?} is not known: use \"open-meteo\" (keyless, \
                     the default) or \"openweathermap\" (with api_key)"
                ));
            }
        };
        let base_default = match kind {
            Kind::OpenMeteo => "https://api.open-meteo.com",
            Kind::OpenWeatherMap => "https://api.openweathermap.org",
        };
        let base = provider::base_url(SECTION, "base_url", cfg.base_url.as_deref(), base_default)?;
        let geocoding = match kind {
            Kind::OpenMeteo => provider::base_url(
                SECTION,
                "geocoding_url",
                cfg.geocoding_url.as_deref().or(cfg.base_url.as_deref()),
                "https://geocoding-api.open-meteo.com",
            )?,
            Kind::OpenWeatherMap => base.clone(),
        };
        let key = provider::api_key(SECTION, cfg)?;
        if kind == Kind::OpenWeatherMap && key.is_none() {
            return Err(format!(
                "provider \"openweathermap\" needs an API key and [{SECTION}] api_key is not set \
                 (or use the keyless provider \"open-meteo\")"
            ));
        }
        Ok(Self {
            net,
            kind,
            base,
            geocoding,
            key,
        })
    }
}

impl PolicyTool for Weather {
    fn name(&self) -> &'static str {
        "weather"
    }

    fn description(&self) -> String {
        format!(
            "Current weather and a daily forecast (default {DEFAULT_DAYS} days, at most \
             {MAX_DAYS}) for a place name (\"Berlin\", \"Paris, France\") or latitude and \
             longitude, from {}. Returns temperature, feels-like, humidity, precipitation, wind \
             and conditions now, and per day the conditions, min/max temperature and \
             precipitation. Units metric (default) or imperial.",
            self.kind.name()
        )
    }

    fn input_schema(&self) -> Value {
        json!({
            "type": "object",
            "properties": {
                "location": {
                    "type": "string",
                    "description": "A place name, optionally with region or country after a \
                                    comma. Either this or latitude and longitude."
                },
                "latitude": { "type": "number", "minimum": -90, "maximum": 90 },
                "longitude": { "type": "number", "minimum": -180, "maximum": 180 },
                "days": {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": MAX_DAYS,
                    "description": format!("Forecast days (default {DEFAULT_DAYS}).")
                },
                "units": { "type": "string", "enum": ["metric", "imperial"] },
                "timeout_secs": {
                    "type": "integer",
                    "minimum": 1,
                    "description": "Deadline; default and maximum [security] command_timeout_secs."
                }
            },
            "additionalProperties": false
        })
    }

    fn effect(&self, _args: &Value) -> Effect {
        Effect::NetworkRead
    }

    fn run(&self, cx: Cx, args: Value) -> BoxFuture<'static, Result<Value, BuiltinError>> {
        let tool = Provider {
            net: self.net.clone(),
            kind: self.kind,
            base: self.base.clone(),
            geocoding: self.geocoding.clone(),
            key: self.key.clone(),
        };
        Box::pin(async move { tool.call(&cx, &args).await })
    }
}

/// What one call needs of the tool.
struct Provider {
    net: Arc<Net>,
    kind: Kind,
    base: Url,
    geocoding: Url,
    key: Option<String>,
}

/// What the caller asked for.
struct Ask {
    place: Option<String>,
    coordinates: Option<(f64, f64)>,
    days: u64,
    imperial: bool,
    timeout: Duration,
}

/// A place with its coordinates.
#[derive(Debug, Clone, PartialEq)]
struct Place {
    name: Option<String>,
    region: Option<String>,
    country: Option<String>,
    latitude: f64,
    longitude: f64,
    timezone: Option<String>,
}

impl Place {
    fn json(&self) -> Value {
        json!({
            "name": self.name,
            "region": self.region,
            "country": self.country,
            "latitude": self.latitude,
            "longitude": self.longitude,
            "timezone": self.timezone,
        })
    }

    fn label(&self) -> String {
        let parts: Vec<&str> = [&self.name, &self.region, &self.country]
            .into_iter()
            .filter_map(|p| p.as_deref())
            .collect();
        if parts.is_empty() {
            format!("{:.4}, {:.4}", self.latitude, self.longitude)
        } else {
            parts.join(", ")
        }
    }
}

fn ask(net: &Net, args: &Value) -> Result<Ask, BuiltinError> {
    let a = Args::new(args)?;
    let place = a
        .opt_str("location")?
        .map(str::trim)
        .filter(|p| !p.is_empty());
    if place.is_some_and(|p| p.len() > MAX_LOCATION) {
        return Err(BuiltinError::Arguments(format!(
            "`location` is longer than {MAX_LOCATION} bytes"
        )));
    }
    let coordinate = |key: &str, limit: f64| -> Result<Option<f64>, BuiltinError> {
        match a.value(key) {
            None => Ok(None),
            Some(v) => match number(v) {
                Some(n) if n.abs() <= limit => Ok(Some(n)),
                _ => Err(BuiltinError::Arguments(format!(
                    "`{key}` must be a number between -{limit} and {limit}"
                ))),
            },
        }
    };
    let coordinates = match (
        coordinate("latitude", 90.0)?,
        coordinate("longitude", 180.0)?,
    ) {
        (Some(lat), Some(lon)) => Some((lat, lon)),
        (None, None) => None,
        _ => {
            return Err(BuiltinError::Arguments(
                "`latitude` and `longitude` go together".to_owned(),
            ));
        }
    };
    if place.is_none() && coordinates.is_none() {
        return Err(BuiltinError::Arguments(
            "give `location` (a place name) or `latitude` and `longitude`".to_owned(),
        ));
    }
    let days = a.opt_u64("days")?.unwrap_or(DEFAULT_DAYS);
    if !(1..=MAX_DAYS).contains(&days) {
        return Err(BuiltinError::Arguments(format!(
            "`days` must be between 1 and {MAX_DAYS}"
        )));
    }
    let imperial = match a.opt_str("units")? {
        None | Some("metric") => false,
        Some("imperial") => true,
        Some(other) => {
            return Err(BuiltinError::Arguments(format!(
                "`units` must be \"metric\" or \"imperial\", not {other:?}"
            )));
        }
    };
    Ok(Ask {
        place: place.map(str::to_owned),
        coordinates,
        days,
        imperial,
        timeout: deadline(&a, net.policy())?,
    })
}

impl Provider {
    async fn call(&self, cx: &Cx, args: &Value) -> Result<Value, BuiltinError> {
        let ask = ask(&self.net, args)?;
        let place = match (ask.coordinates, &ask.place) {
            (Some((latitude, longitude)), _) => Place {
                name: ask.place.clone(),
                region: None,
                country: None,
                latitude,
                longitude,
                timezone: None,
            },
            (None, Some(name)) => {
                cx.report(1, Some(2), format!("looking up {name:?}"));
                self.geocode(name, ask.timeout).await?
            }
            (None, None) => unreachable_args()?,
        };
        cx.report(2, Some(2), "fetching the forecast");
        let mut report = match self.kind {
            Kind::OpenMeteo => self.open_meteo(&place, &ask).await?,
            Kind::OpenWeatherMap => self.openweathermap(&place, &ask).await?,
        };
        let text = summary(&report);
        report["provider"] = json!(self.kind.name());
        Ok(ok_text(text, report))
    }

    fn secret(&self) -> Option<&str> {
        self.key.as_deref()
    }

    async fn geocode(&self, name: &str, timeout: Duration) -> Result<Place, BuiltinError> {
        let (head, qualifier) = match name.split_once(',') {
            Some((h, q)) => (h.trim(), Some(q.trim().to_lowercase())),
            None => (name, None),
        };
        let candidates: Vec<Place> = match self.kind {
            Kind::OpenMeteo => {
                let mut url = provider::endpoint(&self.geocoding, "v1/search");
                url.query_pairs_mut()
                    .append_pair("name", head)
                    .append_pair("count", if qualifier.is_some() { "10" } else { "1" })
                    .append_pair("language", "en")
                    .append_pair("format", "json");
                let answer = call_json(
                    &self.net,
                    "open-meteo geocoding",
                    Request::get(url),
                    None,
                    timeout,
                )
                .await?;
                answer["results"]
                    .as_array()
                    .map(|r| r.iter().filter_map(open_meteo_place).collect())
                    .unwrap_or_default()
            }
            Kind::OpenWeatherMap => {
                let mut url = provider::endpoint(&self.base, "geo/1.0/direct");
                url.query_pairs_mut()
                    .append_pair("q", name)
                    .append_pair("limit", "1")
                    .append_pair("appid", self.secret().unwrap_or_default());
                let answer = call_json(
                    &self.net,
                    "openweathermap geocoding",
                    Request::get(url),
                    self.secret(),
                    timeout,
                )
                .await?;
                answer
                    .as_array()
                    .map(|r| r.iter().filter_map(owm_place).collect())
                    .unwrap_or_default()
            }
        };
        let chosen = match &qualifier {
            Some(q) if !q.is_empty() => candidates
                .iter()
                .find(|p| {
                    [&p.region, &p.country]
                        .into_iter()
                        .flatten()
                        .any(|v| v.to_lowercase().contains(q.as_str()))
                })
                .or(candidates.first()),
            _ => candidates.first(),
        };
        chosen.cloned().ok_or_else(|| {
            BuiltinError::Failed(format!(
                "no place named {name:?} was found by {}'s geocoding",
                self.kind.name()
            ))
        })
    }

    async fn open_meteo(&self, place: &Place, ask: &Ask) -> Result<Value, BuiltinError> {
        let mut url = provider::endpoint(&self.base, "v1/forecast");
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("latitude", &place.latitude.to_string())
                .append_pair("longitude", &place.longitude.to_string())
                .append_pair(
                    "current",
                    "temperature_2m,relative_humidity_2m,apparent_temperature,precipitation,\
                     weather_code,wind_speed_10m,wind_direction_10m",
                )
                .append_pair(
                    "daily",
                    "weather_code,temperature_2m_max,temperature_2m_min,precipitation_sum,\
                     precipitation_probability_max",
                )
                .append_pair("timezone", "auto")
                .append_pair("forecast_days", &ask.days.to_string());
            if ask.imperial {
                q.append_pair("temperature_unit", "fahrenheit")
                    .append_pair("wind_speed_unit", "mph")
                    .append_pair("precipitation_unit", "inch");
            }
        }
        let answer = call_json(
            &self.net,
            "open-meteo",
            Request::get(url),
            None,
            ask.timeout,
        )
        .await?;
        let now = &answer["current"];
        if !now.is_object() {
            return Err(BuiltinError::Failed(
                "open-meteo's answer has no `current` conditions".to_owned(),
            ));
        }
        let code = now["weather_code"].as_u64();
        let current = json!({
            "time": now["time"],
            "temperature": number(&now["temperature_2m"]),
            "feels_like": number(&now["apparent_temperature"]),
            "humidity": number(&now["relative_humidity_2m"]),
            "precipitation": number(&now["precipitation"]),
            "wind_speed": number(&now["wind_speed_10m"]),
            "wind_direction": number(&now["wind_direction_10m"]),
            "weather_code": code,
            "conditions": code.map(wmo),
        });
        let daily = &answer["daily"];
        let at = |key: &str, i: usize| daily[key].get(i).and_then(number);
        let forecast: Vec<Value> = daily["time"]
            .as_array()
            .map(|days| {
                days.iter()
                    .enumerate()
                    .take(ask.days as usize)
                    .map(|(i, date)| {
                        let code = daily["weather_code"].get(i).and_then(Value::as_u64);
                        json!({
                            "date": date,
                            "conditions": code.map(wmo),
                            "weather_code": code,
                            "temperature_max": at("temperature_2m_max", i),
                            "temperature_min": at("temperature_2m_min", i),
                            "precipitation": at("precipitation_sum", i),
                            "precipitation_probability": at("precipitation_probability_max", i),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mut place = place.clone();
        if place.timezone.is_none() {
            place.timezone = answer["timezone"].as_str().map(str::to_owned);
        }
        Ok(json!({
            "location": place.json(),
            "label": place.label(),
            "units": if ask.imperial {
                units(true, "mph", "inch")
            } else {
                units(false, "km/h", "mm")
            },
            "current": current,
            "forecast": forecast,
        }))
    }

    async fn openweathermap(&self, place: &Place, ask: &Ask) -> Result<Value, BuiltinError> {
        let query = |path: &str, extra: &[(&str, String)]| {
            let mut url = provider::endpoint(&self.base, path);
            {
                let mut q = url.query_pairs_mut();
                q.append_pair("lat", &place.latitude.to_string())
                    .append_pair("lon", &place.longitude.to_string())
                    .append_pair("units", if ask.imperial { "imperial" } else { "metric" });
                for (k, v) in extra {
                    q.append_pair(k, v);
                }
                q.append_pair("appid", self.secret().unwrap_or_default());
            }
            url
        };
        let now = call_json(
            &self.net,
            "openweathermap",
            Request::get(query("data/2.5/weather", &[])),
            self.secret(),
            ask.timeout,
        )
        .await?;
        let steps = (ask.days * 8).min(40).to_string();
        let later = call_json(
            &self.net,
            "openweathermap",
            Request::get(query("data/2.5/forecast", &[("cnt", steps)])),
            self.secret(),
            ask.timeout,
        )
        .await?;
        let offset = number(&later["city"]["timezone"])
            .or_else(|| number(&now["timezone"]))
            .unwrap_or(0.0) as i64;
        let current = json!({
            "time": now["dt"].as_i64().map(|t| local_time(t, offset)),
            "temperature": number(&now["main"]["temp"]),
            "feels_like": number(&now["main"]["feels_like"]),
            "humidity": number(&now["main"]["humidity"]),
            "precipitation": number(&now["rain"]["1h"]).or(Some(0.0)),
            "wind_speed": number(&now["wind"]["speed"]),
            "wind_direction": number(&now["wind"]["deg"]),
            "weather_code": now["weather"][0]["id"],
            "conditions": now["weather"][0]["description"],
        });
        let forecast = owm_days(&later, offset, ask.days as usize);
        let mut place = place.clone();
        if place.name.is_none() {
            place.name = now["name"]
                .as_str()
                .filter(|n| !n.is_empty())
                .map(str::to_owned);
        }
        if place.country.is_none() {
            place.country = now["sys"]["country"].as_str().map(str::to_owned);
        }
        Ok(json!({
            "location": place.json(),
            "label": place.label(),
            // OpenWeatherMap gives precipitation in mm whatever the units.
            "units": units(ask.imperial, if ask.imperial { "mph" } else { "m/s" }, "mm"),
            "current": current,
            "forecast": forecast,
        }))
    }
}

/// Arguments checked by [`ask`] always hold a place or coordinates.
fn unreachable_args() -> Result<Place, BuiltinError> {
    Err(BuiltinError::Arguments(
        "give `location` or `latitude` and `longitude`".to_owned(),
    ))
}

fn units(imperial: bool, wind: &str, precipitation: &str) -> Value {
    json!({
        "temperature": if imperial { "°F" } else { "°C" },
        "wind_speed": wind,
        "precipitation": precipitation,
        "humidity": "%",
    })
}

fn open_meteo_place(r: &Value) -> Option<Place> {
    Some(Place {
        name: r["name"].as_str().map(str::to_owned),
        region: r["admin1"].as_str().map(str::to_owned),
        country: r["country"]
            .as_str()
            .or(r["country_code"].as_str())
            .map(str::to_owned),
        latitude: number(&r["latitude"])?,
        longitude: number(&r["longitude"])?,
        timezone: r["timezone"].as_str().map(str::to_owned),
    })
}

fn owm_place(r: &Value) -> Option<Place> {
    Some(Place {
        name: r["name"].as_str().map(str::to_owned),
        region: r["state"].as_str().map(str::to_owned),
        country: r["country"].as_str().map(str::to_owned),
        latitude: number(&r["lat"])?,
        longitude: number(&r["lon"])?,
        timezone: None,
    })
}

/// `unix` seconds at `offset` seconds from UTC, as `YYYY-MM-DDTHH:MM`.
fn local_time(unix: i64, offset: i64) -> String {
    let t = (unix + offset).max(0) as u64;
    let stamp = humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(t)).to_string();
    stamp.get(..16).unwrap_or(&stamp).to_owned()
}

/// OpenWeatherMap's 3-hourly forecast summed up per local day: min/max temperature, the
/// highest chance of precipitation, the precipitation sum, the conditions nearest midday.
fn owm_days(answer: &Value, offset: i64, days: usize) -> Vec<Value> {
    #[derive(Default)]
    struct Day {
        min: Option<f64>,
        max: Option<f64>,
        pop: Option<f64>,
        precipitation: f64,
        conditions: Option<(i64, Value, Value)>,
    }
    let mut by_day: BTreeMap<String, Day> = BTreeMap::new();
    for step in answer["list"].as_array().into_iter().flatten() {
        let Some(dt) = step["dt"].as_i64() else {
            continue;
        };
        let local = local_time(dt, offset);
        let (date, hour) = (
            local.get(..10).unwrap_or_default().to_owned(),
            local
                .get(11..13)
                .and_then(|h| h.parse::<i64>().ok())
                .unwrap_or(0),
        );
        let day = by_day.entry(date).or_default();
        let lo = number(&step["main"]["temp_min"]).or_else(|| number(&step["main"]["temp"]));
        let hi = number(&step["main"]["temp_max"]).or_else(|| number(&step["main"]["temp"]));
        day.min = min_opt(day.min, lo);
        day.max = max_opt(day.max, hi);
        day.pop = max_opt(day.pop, number(&step["pop"]).map(|p| (p * 100.0).round()));
        day.precipitation +=
            number(&step["rain"]["3h"]).unwrap_or(0.0) + number(&step["snow"]["3h"]).unwrap_or(0.0);
        let distance = (hour - 12).abs();
        if day
            .conditions
            .as_ref()
            .is_none_or(|(d, _, _)| distance < *d)
        {
            day.conditions = Some((
                distance,
                step["weather"][0]["id"].clone(),
                step["weather"][0]["description"].clone(),
            ));
        }
    }
    by_day
        .into_iter()
        .take(days)
        .map(|(date, d)| {
            let (code, conditions) = d
                .conditions
                .map(|(_, code, text)| (code, text))
                .unwrap_or((Value::Null, Value::Null));
            json!({
                "date": date,
                "conditions": conditions,
                "weather_code": code,
                "temperature_max": d.max,
                "temperature_min": d.min,
                "precipitation": (d.precipitation * 100.0).round() / 100.0,
                "precipitation_probability": d.pop,
            })
        })
        .collect()
}

fn min_opt(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn max_opt(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// A WMO weather interpretation code (Open-Meteo's `weather_code`) in words.
fn wmo(code: u64) -> &'static str {
    match code {
        0 => "clear sky",
        1 => "mainly clear",
        2 => "partly cloudy",
        3 => "overcast",
        45 => "fog",
        48 => "depositing rime fog",
        51 => "light drizzle",
        53 => "moderate drizzle",
        55 => "dense drizzle",
        56 => "light freezing drizzle",
        57 => "dense freezing drizzle",
        61 => "slight rain",
        63 => "moderate rain",
        65 => "heavy rain",
        66 => "light freezing rain",
        67 => "heavy freezing rain",
        71 => "slight snow fall",
        73 => "moderate snow fall",
        75 => "heavy snow fall",
        77 => "snow grains",
        80 => "slight rain showers",
        81 => "moderate rain showers",
        82 => "violent rain showers",
        85 => "slight snow showers",
        86 => "heavy snow showers",
        95 => "thunderstorm",
        96 => "thunderstorm with slight hail",
        99 => "thunderstorm with heavy hail",
        _ => "unknown conditions",
    }
}

/// The report in a few lines.
fn summary(report: &Value) -> String {
    let u = &report["units"];
    let (t, w, p) = (
        u["temperature"].as_str().unwrap_or_default(),
        u["wind_speed"].as_str().unwrap_or_default(),
        u["precipitation"].as_str().unwrap_or_default(),
    );
    let n = |v: &Value| {
        v.as_f64()
            .map_or_else(|| "?".to_owned(), |f| format!("{f:.1}"))
    };
    let c = &report["current"];
    let mut text = format!(
        "{}: {} {t} (feels like {} {t}), {}, humidity {} %, wind {} {w}, precipitation {} {p}\n",
        report["label"].as_str().unwrap_or_default(),
        n(&c["temperature"]),
        n(&c["feels_like"]),
        c["conditions"].as_str().unwrap_or("conditions unknown"),
        n(&c["humidity"]),
        n(&c["wind_speed"]),
        n(&c["precipitation"]),
    );
    for day in report["forecast"].as_array().into_iter().flatten() {
        text.push_str(&format!(
            "{}: {}, {} to {} {t}, precipitation {} {p}{}\n",
            day["date"].as_str().unwrap_or_default(),
            day["conditions"].as_str().unwrap_or("?"),
            n(&day["temperature_min"]),
            n(&day["temperature_max"]),
            n(&day["precipitation"]),
            day["precipitation_probability"]
                .as_f64()
                .map(|p| format!(" ({p:.0} % chance)"))
                .unwrap_or_default(),
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owm_steps_are_summed_up_per_local_day() {
        let base = 1_717_200_000; // 2024-06-01T00:00:00Z
        let step = |h: i64, t: f64, rain: f64, code: u64, text: &str| {
            json!({ "dt": base + h * 3600, "main": { "temp": t, "temp_min": t - 1.0,
                    "temp_max": t + 1.0 }, "pop": 0.25, "rain": { "3h": rain },
                    "weather": [{ "id": code, "description": text }] })
        };
        let answer = json!({ "city": { "timezone": 7200 }, "list": [
            step(0, 10.0, 0.0, 800, "clear sky"),
            step(9, 20.0, 1.5, 500, "light rain"),
            step(21, 12.0, 0.5, 801, "few clouds"),
            step(24, 11.0, 0.0, 802, "scattered clouds"),
        ]});
        let days = owm_days(&answer, 7200, 3);
        assert_eq!(days.len(), 2, "{days:?}");
        assert_eq!(days[0]["date"], "2024-06-01");
        assert_eq!(days[0]["temperature_min"], 9.0);
        assert_eq!(days[0]["temperature_max"], 21.0);
        assert_eq!(days[0]["conditions"], "light rain");
        assert_eq!(days[0]["precipitation"], 2.0);
        assert_eq!(days[0]["precipitation_probability"], 25.0);
        assert_eq!(days[1]["date"], "2024-06-02");
    }

    #[test]
    fn codes_and_summary() {
        assert_eq!(wmo(2), "partly cloudy");
        assert_eq!(wmo(1234), "unknown conditions");
        let report = json!({
            "label": "Berlin, Germany",
            "units": units(false, "km/h", "mm"),
            "current": { "temperature": 12.5, "feels_like": 10.0, "humidity": 70,
                         "wind_speed": 11.2, "precipitation": 0.0, "conditions": "overcast" },
            "forecast": [{ "date": "2024-06-01", "conditions": "slight rain",
                           "temperature_min": 9.0, "temperature_max": 15.0,
                           "precipitation": 1.2, "precipitation_probability": 60 }],
        });
        let text = summary(&report);
        assert!(text.starts_with("Berlin, Germany: 12.5 °C"), "{text}");
        assert!(
            text.contains("2024-06-01: slight rain, 9.0 to 15.0 °C"),
            "{text}"
        );
        assert!(text.contains("(60 % chance)"), "{text}");
    }
}
