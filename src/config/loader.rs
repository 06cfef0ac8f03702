//! The load pipeline: read → parse → `REVKA_HOME` defaults → paths → import → `${VAR}` →
//! environment overrides → validation.
//!
//! Part of the config layer; [`load`] and [`parse`] are its entry points, called once by the
//! daemon before anything binds or spawns. The result is a final [`Config`] plus warnings.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer};
use toml::de::DeTable;

use super::ConfigError;
use super::env::{self, EnvLookup, VarError};
use super::error::{Location, Site};
use super::import::{self, ServerSource};
use super::keypath::{self, KeyPath};
use super::schema::{Config, McpServerConfig, WrittenTarget};
use super::sidecar::SessionManagerConfig;
use super::validate;

/// The environment variable that overrides `gateway.request_timeout_secs`.
pub const GATEWAY_TIMEOUT_ENV: &str = "REVKA_GATEWAY_TIMEOUT_SECS";

/// A loaded, validated config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loaded {
    /// The effective config.
    pub config: Config,
    /// Problems that did not stop the load (unknown keys, capped values, keys that do not apply),
    /// each naming its key path; the daemon logs them at `warn`.
    pub warnings: Vec<String>,
    /// The file the config came from; `None` when no file exists and the defaults are used.
    pub source: Option<PathBuf>,
}

/// Loads the config: `path` (the `--config` override; must exist), else
/// `$REVKA_HOME/config.toml` when it exists, else the defaults. `env` is consulted for
/// `REVKA_HOME`, `HOME`, `${VAR}` references and `REVKA_GATEWAY_TIMEOUT_SECS`.
pub fn load(path: Option<&Path>, env: EnvLookup<'_>) -> Result<Loaded, ConfigError> {
    let (path, required) = match path {
        Some(p) => (p.to_path_buf(), true),
        None => (
            env::revka_home_with(env).join(super::CONFIG_FILE_NAME),
            false,
        ),
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => parse(&text, &path, env),
        Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => {
            let mut loaded = parse("", &path, env)?;
            loaded.source = None;
            Ok(loaded)
        }
        Err(source) => Err(ConfigError::Read { path, source }),
    }
}

/// Parses and validates config text. `origin` names the file in diagnostics, and relative
/// paths in the config are relative to its directory.
pub fn parse(text: &str, origin: &Path, env: EnvLookup<'_>) -> Result<Loaded, ConfigError> {
    let (doc, mut config, mut warnings) = parse_toml(text, origin)?;
    let site = Site {
        file: origin,
        doc: Some((text, &doc)),
    };
    fill_home_defaults(&mut config, &doc, &env::revka_home_with(env));
    let home = env("HOME").filter(|h| !h.is_empty());
    let base = origin.parent().unwrap_or(Path::new(""));
    resolve_paths(&mut config, site, home.as_deref(), base)?;

    let mut sources: Vec<ServerSource> = (0..config.mcp.servers.len())
        .map(|i| ServerSource {
            file: origin.to_path_buf(),
            base: KeyPath::keys(&["mcp", "servers"]).index(i),
            in_toml: true,
            named_by_key: false,
        })
        .collect();
    if let Some(file) = config.mcp.servers_file.clone() {
        let key = KeyPath::keys(&["mcp", "servers_file"]);
        let json = std::fs::read_to_string(&file)
            .map_err(|e| site.invalid(&key, format!("cannot read {}: {e}", file.display())))?;
        let mut imported = import::import(&json, &file)?;
        warnings.append(&mut imported.warnings);
        config.mcp.servers.append(&mut imported.servers);
        sources.append(&mut imported.sources);
    }
    for (server, source) in config.mcp.servers.iter_mut().zip(&sources) {
        let site = site_of(site, source);
        let dir = source.file.parent().unwrap_or(Path::new(""));
        resolve_roots(server, site, source, home.as_deref(), dir)?;
        expand_server(server, site, source, env)?;
    }

    apply_env_overrides(&mut config, env)?;
    validate::validate(&mut config, site, &sources, &mut warnings)?;
    Ok(Loaded {
        config,
        warnings,
        source: Some(origin.to_path_buf()),
    })
}

/// Parses TOML into the spanned document (for positions) and the typed config, with a warning
/// for every unknown key.
fn parse_toml<'t>(
    text: &'t str,
    origin: &Path,
) -> Result<(DeTable<'t>, Config, Vec<String>), ConfigError> {
    let syntax = |e: toml::de::Error| {
        let mut message = e.message().trim().to_owned();
        let span = e.span();
        // toml says only "duplicate key"; name it.
        if let Some(key) = span
            .clone()
            .and_then(|s| text.get(s))
            .filter(|_| message == "duplicate key")
        {
            message = format!("duplicate key `{}`", key.trim());
        }
        ConfigError::Syntax {
            location: Location {
                file: origin.to_path_buf(),
                line_col: span.map(|s| keypath::line_col(text, s.start)),
            },
            message,
        }
    };
    let doc = DeTable::parse(text).map_err(syntax)?.into_inner();
    let de = toml::de::Deserializer::parse(text).map_err(syntax)?;
    let mut ignored = Vec::new();
    let config: Config = deserialize_tracked(de, &mut ignored).map_err(|e| {
        let path = KeyPath::from_tracked(e.path());
        let inner = e.into_inner();
        let site = Site {
            file: origin,
            doc: Some((text, &doc)),
        };
        let mut location = site.locate(&path);
        if let Some(span) = inner.span() {
            location.line_col = Some(keypath::line_col(text, span.start));
        }
        ConfigError::Schema {
            location,
            key: path.to_string(),
            message: inner.message().trim().to_owned(),
        }
    })?;
    let warnings = ignored
        .iter()
        .map(|p| format!("unknown key {p} (ignored)"))
        .collect();
    Ok((doc, config, warnings))
}

/// Applies the environment variables that override keys.
fn apply_env_overrides(config: &mut Config, env: EnvLookup<'_>) -> Result<(), ConfigError> {
    let Some(value) = env(GATEWAY_TIMEOUT_ENV).filter(|v| !v.trim().is_empty()) else {
        return Ok(());
    };
    match value.trim().parse::<u64>() {
        Ok(secs) if secs > 0 => {
            config.gateway.request_timeout_secs = secs;
            Ok(())
        }
        _ => Err(ConfigError::EnvOverride {
            var: GATEWAY_TIMEOUT_ENV.to_owned(),
            key: "gateway.request_timeout_secs".to_owned(),
            message: format!("{value:?} is not a positive whole number of seconds"),
        }),
    }
}

/// Deserializes `T`, recording the key path of an error and of every ignored (unknown) key.
pub(crate) fn deserialize_tracked<'de, D, T>(
    de: D,
    ignored: &mut Vec<KeyPath>,
) -> Result<T, serde_path_to_error::Error<D::Error>>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    let mut record = |path: serde_ignored::Path<'_>| ignored.push(KeyPath::from_ignored(&path));
    serde_path_to_error::deserialize(serde_ignored::Deserializer::new(de, &mut record))
}

/// The site to report a server's problems against: the TOML file, or its JSON file.
pub(crate) fn site_of<'a>(toml: Site<'a>, source: &'a ServerSource) -> Site<'a> {
    if source.in_toml {
        toml
    } else {
        Site {
            file: &source.file,
            doc: None,
        }
    }
}

/// Replaces the `REVKA_HOME`-relative defaults the file does not set with ones under `home`
/// (deserialization filled them from the process environment).
fn fill_home_defaults(config: &mut Config, doc: &DeTable<'_>, home: &Path) {
    let absent = |keys: &[&str]| !keypath::exists(doc, &KeyPath::keys(keys));
    config.mcp.oauth_dir = home.join("oauth");
    if absent(&["operator", "mcp_path"]) {
        config.operator.mcp_path = home.join("operator_mcp").join("run_operator_mcp.py");
    }
    if absent(&["session_manager", "command"]) {
        config.session_manager.command = SessionManagerConfig::default_command(home);
    }
    if absent(&["session_manager", "socket_path"]) {
        config.session_manager.socket_path = SessionManagerConfig::default_socket_path(home);
    }
}

/// Expands `~` in every path-valued key the file sets outside `[[mcp.servers]]`, and makes
/// relative paths relative to `base`.
fn resolve_paths(
    config: &mut Config,
    site: Site<'_>,
    home: Option<&str>,
    base: &Path,
) -> Result<(), ConfigError> {
    let resolve = |path: &mut PathBuf, key: KeyPath| -> Result<(), ConfigError> {
        *path = env::resolve_path(path, home, base).map_err(|m| site.invalid(&key, m))?;
        Ok(())
    };
    let roots = KeyPath::keys(&["mcp", "roots"]);
    for (i, root) in config.mcp.roots.iter_mut().enumerate() {
        resolve(root, roots.index(i))?;
    }
    if let Some(file) = &mut config.mcp.servers_file {
        resolve(file, KeyPath::keys(&["mcp", "servers_file"]))?;
    }
    // Defaults under REVKA_HOME are used as they are; only paths the file writes are resolved.
    let written = |key: &KeyPath| site.doc.is_some_and(|(_, doc)| keypath::exists(doc, key));
    let key = KeyPath::keys(&["operator", "mcp_path"]);
    if written(&key) {
        resolve(&mut config.operator.mcp_path, key)?;
    }
    let key = KeyPath::keys(&["session_manager", "socket_path"]);
    if written(&key) {
        resolve(&mut config.session_manager.socket_path, key)?;
    }
    let command = KeyPath::keys(&["session_manager", "command"]);
    for (i, arg) in config.session_manager.command.iter_mut().enumerate() {
        if arg == "~" || arg.starts_with("~/") {
            let expanded = env::expand_tilde(Path::new(arg.as_str()), home)
                .map_err(|m| site.invalid(&command.index(i), m))?;
            *arg = expanded.to_string_lossy().into_owned();
        }
    }
    Ok(())
}

/// Resolves a server's own `roots` like every other path, relative to `base` (the directory of
/// the file the server is written in).
fn resolve_roots(
    server: &mut McpServerConfig,
    site: Site<'_>,
    source: &ServerSource,
    home: Option<&str>,
    base: &Path,
) -> Result<(), ConfigError> {
    for (i, root) in server.roots.iter_mut().flatten().enumerate() {
        *root = env::resolve_path(root, home, base)
            .map_err(|m| site.invalid(&source.path(&KeyPath::keys(&["roots"]).index(i)), m))?;
    }
    Ok(())
}

/// Expands `${VAR}` in a server's `args`, `url`, `env` values and `headers` values, keeping
/// `args` and `url` as written for display ([`McpServerConfig::written`]).
fn expand_server(
    server: &mut McpServerConfig,
    site: Site<'_>,
    source: &ServerSource,
    env: EnvLookup<'_>,
) -> Result<(), ConfigError> {
    let expand = |value: &mut String, rel: KeyPath| -> Result<(), ConfigError> {
        let path = source.path(&rel);
        *value = env::expand_vars(value, env).map_err(|e| match e {
            VarError::Missing(var) => ConfigError::MissingEnvVar {
                location: site.locate(&path),
                key: path.to_string(),
                var,
            },
            other => site.invalid(&path, other.message()),
        })?;
        Ok(())
    };
    server.written = Some(WrittenTarget {
        args: server.args.clone(),
        url: server.url.clone(),
    });
    for (i, arg) in server.args.iter_mut().enumerate() {
        expand(arg, KeyPath::keys(&["args"]).index(i))?;
    }
    if let Some(url) = &mut server.url {
        expand(url, KeyPath::keys(&["url"]))?;
    }
    for (name, value) in &mut server.env {
        expand(value, KeyPath::keys(&["env", name]))?;
    }
    for (name, value) in &mut server.headers {
        expand(value, KeyPath::keys(&["headers", name]))?;
    }
    if let Some(secret) = server.oauth.as_mut().and_then(|o| o.client_secret.as_mut()) {
        expand(secret, KeyPath::keys(&["oauth", "client_secret"]))?;
    }
    Ok(())
}
