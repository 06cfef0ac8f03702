//! Tests of the config layer: defaults, diagnostics, expansion, import, policies.
//!
//! Every test passes its environment as a map (never `std::env::set_var`), and checks
//! diagnostics by their exact text, since that text is what an operator reads.

mod defaults;
mod errors;
mod import;
mod policy;
mod servers;

use std::collections::HashMap;
use std::path::Path;

use super::{ConfigError, Loaded, parse};

/// The config file every test pretends to parse.
const ORIGIN: &str = "/home/u/.revka/config.toml";

/// A lookup over `pairs` only.
fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    move |name| map.get(name).cloned()
}

/// The environment of most tests: `HOME=/home/u`, nothing else.
fn home_env() -> impl Fn(&str) -> Option<String> {
    env_of(&[("HOME", "/home/u")])
}

/// Parses `text` as [`ORIGIN`] with `env`.
fn parse_with(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Loaded, ConfigError> {
    parse(text, Path::new(ORIGIN), env)
}

/// Parses `text` with [`home_env`], panicking with the error's text on failure.
fn ok(text: &str) -> Loaded {
    parse_with(text, &home_env()).unwrap_or_else(|e| panic!("unexpected error: {e}"))
}

/// The error text of parsing `text` with [`home_env`]: the file's error, or the reason of the
/// first invalid server (a bad server entry fails only that server).
fn err(text: &str) -> String {
    match parse_with(text, &home_env()) {
        Ok(loaded) => first_invalid(&loaded)
            .unwrap_or_else(|| panic!("expected an error, got {:#?}", loaded.config)),
        Err(e) => e.to_string(),
    }
}

/// The reason of the first invalid server, if any.
fn first_invalid(loaded: &Loaded) -> Option<String> {
    loaded
        .config
        .mcp
        .invalid_servers
        .first()
        .map(|s| s.reason.clone())
}
