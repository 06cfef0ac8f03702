//! `revka mcp login | logout`, and the browser step of every command that authorizes: OAuth
//! for remote MCP servers on the command line. Part of `revka mcp` ([`super`]); the flows
//! themselves are `revka_mcp::oauth`.
//!
//! - `login <name>`: a new authorization of server `name` (discovery, client identity, PKCE,
//!   the browser, the loopback callback), stored in `$REVKA_HOME/oauth/<name>.json`; then a
//!   running daemon is asked to restart that server so it uses the new tokens at once.
//! - `logout <name>`: the stored tokens forgotten, and the daemon's connection restarted so it
//!   stops using them.
//! - The browser: `$BROWSER` (a `:`-separated list of commands, each given the URL, or with
//!   `%s` replaced by it, as command-line tools read it); else `open` on macOS, `xdg-open`
//!   where a display is set; the URL is always printed on stderr, so a headless machine can
//!   open it elsewhere (the redirect must then reach this machine's loopback).

use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::Duration;

use revka_mcp::oauth::{AuthState, Authorizer, Interactive, OAuthError, OAuthSpec, UserAgent};
use revka_mcp::spec::{ServerSpec, TransportSpec};

use crate::cli::remote::{Gateway, RemoteError};
use crate::config::{self, Config, server_spec};
use crate::mcp_servers::http_client;

/// Opens URLs for a person: see the [module documentation](self).
#[derive(Debug, Default)]
pub(super) struct Browser;

impl UserAgent for Browser {
    fn open(&self, url: &str) -> Result<(), String> {
        eprintln!("To authorize, open this URL in a browser:\n  {url}");
        let commands: Vec<String> = match std::env::var("BROWSER") {
            Ok(b) if !b.trim().is_empty() => b.split(':').map(str::to_owned).collect(),
            _ if cfg!(target_os = "macos") => vec!["open".to_owned()],
            _ if std::env::var_os("DISPLAY").is_some()
                || std::env::var_os("WAYLAND_DISPLAY").is_some() =>
            {
                vec!["xdg-open".to_owned()]
            }
            _ => {
                eprintln!("(no $BROWSER and no display: waiting for the redirect)");
                return Ok(());
            }
        };
        for command in commands.iter().map(|c| c.trim()).filter(|c| !c.is_empty()) {
            let child = Command::new("/bin/sh")
                .args(["-c", &browser_script(command), "revka-browser", url])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn();
            match child {
                Ok(mut child) => {
                    // Reaped in the background: a browser may keep running.
                    std::thread::spawn(move || child.wait());
                    return Ok(());
                }
                Err(e) => eprintln!("(cannot run `{command}`: {e})"),
            }
        }
        eprintln!("(no browser could be started: open the URL yourself)");
        Ok(())
    }
}

/// The shell text that runs one `$BROWSER` entry on the URL, which is `$1`: never spliced
/// into the text (an authorization server names the URL), only referred to.
fn browser_script(command: &str) -> String {
    if command.contains("%s") {
        command.replace("%s", "\"$1\"")
    } else {
        format!("{command} \"$1\"")
    }
}

/// `spec`'s OAuth with a person at a browser (for `login`, `call` and `test`).
pub(super) fn interactive(spec: &mut ServerSpec) {
    if let Some(oauth) = &mut spec.oauth {
        oauth.interactive = Some(Interactive(Arc::new(Browser)));
    }
}

/// The server's URL and OAuth spec, or why it has none.
fn oauth_of(spec: &ServerSpec) -> Result<(String, OAuthSpec), String> {
    let url = match &spec.transport {
        TransportSpec::Http { url, .. } => url.clone(),
        _ => {
            return Err(format!(
                "server `{}` is not an http server: OAuth does not apply",
                spec.name
            ));
        }
    };
    let oauth = spec.oauth.clone().ok_or_else(|| {
        format!(
            "server `{}` does not use OAuth (it has an Authorization header of its own, or [mcp.servers.oauth] enabled = false)",
            spec.name
        )
    })?;
    Ok((url, oauth))
}

/// The stored state of `spec`'s authorization (`None`: OAuth does not apply).
pub(super) fn state(spec: &ServerSpec) -> Option<Result<AuthState, OAuthError>> {
    let (url, oauth) = oauth_of(spec).ok()?;
    Some(revka_mcp::oauth::stored_state(&oauth, &url))
}

/// Logs in first when nothing usable is stored, so the browser step does not race the
/// handshake's timeout (a person may take minutes).
pub(super) async fn ensure_authorized(
    spec: &ServerSpec,
    http: &reqwest::Client,
) -> Result<(), String> {
    let Ok((url, oauth)) = oauth_of(spec) else {
        return Ok(());
    };
    if oauth.interactive.is_none() || oauth.grant == revka_mcp::oauth::Grant::ClientCredentials {
        return Ok(());
    }
    match revka_mcp::oauth::stored_state(&oauth, &url) {
        Ok(AuthState::Authorized { .. }) => return Ok(()),
        Ok(_) => {}
        Err(e) => return Err(e.to_string()),
    }
    let authorizer = Authorizer::new(oauth, &url, http.clone()).map_err(|e| e.to_string())?;
    match authorizer.login().await {
        Ok(_) => Ok(()),
        // A server that does not ask for authorization needs none.
        Err(OAuthError::NotRequired(_)) => Ok(()),
        Err(e) => Err(format!("{}: {e}", spec.name)),
    }
}

fn find_spec(config: &Config, name: &str) -> Result<ServerSpec, String> {
    let server = config
        .mcp
        .servers
        .iter()
        .find(|s| s.name == name)
        .ok_or_else(|| format!("no server named `{name}` in the config"))?;
    server_spec(server, &config.mcp)
        .map_err(|e| format!("{name}: invalid configuration: {}", e.reason))
}

/// `revka mcp login <name>`.
pub(super) async fn login(config: &Config, name: &str) -> ExitCode {
    let mut spec = match find_spec(config, name) {
        Ok(s) => s,
        Err(e) => return fail(&e),
    };
    interactive(&mut spec);
    let (url, oauth) = match oauth_of(&spec) {
        Ok(x) => x,
        Err(e) => return fail(&e),
    };
    let authorizer = match Authorizer::new(oauth, &url, http_client()) {
        Ok(a) => a,
        Err(e) => return fail(&e.to_string()),
    };
    match authorizer.login().await {
        Ok(granted) => {
            let scope = granted
                .scope
                .map(|s| format!(", scope `{s}`"))
                .unwrap_or_default();
            let expiry = granted
                .expires_in
                .map(|s| {
                    format!(
                        ", expires in {}",
                        humantime::format_duration(Duration::from_secs(s))
                    )
                })
                .unwrap_or_default();
            let refresh = if granted.refreshable {
                ", renewed automatically"
            } else {
                ""
            };
            println!("authorized `{name}`{scope}{expiry}{refresh}");
            restart_in_daemon(name).await;
            ExitCode::SUCCESS
        }
        Err(e) => fail(&format!("login to `{name}` failed: {e}")),
    }
}

/// `revka mcp logout <name>`.
pub(super) async fn logout(config: &Config, name: &str) -> ExitCode {
    let spec = match find_spec(config, name) {
        Ok(s) => s,
        Err(e) => return fail(&e),
    };
    let oauth = match oauth_of(&spec) {
        Ok((_, oauth)) => oauth,
        Err(e) => return fail(&e),
    };
    match revka_mcp::oauth::Store::new(&oauth.store_dir).remove(name) {
        Ok(true) => {
            println!("logged out of `{name}`: its tokens are forgotten");
            restart_in_daemon(name).await;
            ExitCode::SUCCESS
        }
        Ok(false) => {
            println!("`{name}` had no stored tokens");
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e.to_string()),
    }
}

/// Asks a running daemon to reconnect `name` (with the new tokens, or none).
async fn restart_in_daemon(name: &str) {
    let home = config::revka_home();
    let gateway = match Gateway::connect_with_timeout(&home, Duration::from_secs(10)) {
        Ok(g) => g,
        Err(RemoteError::NotRunning { .. } | RemoteError::Stale { .. }) => return,
        Err(e) => {
            eprintln!(
                "warning: cannot reach the daemon ({e}); restart `{name}` there to use the change"
            );
            return;
        }
    };
    let path = format!("root/mcp_servers/mcp:{name}");
    match gateway.restart(&path).await {
        Ok(_) => println!("the daemon reconnects `{name}`"),
        Err(e) => eprintln!(
            "warning: the daemon did not restart `{name}` ({e}); restart it there to use the change"
        ),
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("revka: {message}");
    ExitCode::FAILURE
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both `$BROWSER` forms get the URL as one argument, whatever it contains.
    #[test]
    fn a_browser_entry_gets_the_url_as_an_argument_never_as_shell_text() {
        let url = "https://as.example/authorize?a=1&b=$(touch /tmp/revka-pwned);x `id` 'q\"";
        for command in ["echo", "echo %s"] {
            let out = Command::new("/bin/sh")
                .args(["-c", &browser_script(command), "revka-browser", url])
                .output()
                .unwrap();
            assert_eq!(
                String::from_utf8_lossy(&out.stdout).trim_end(),
                url,
                "{command}"
            );
        }
    }
}
