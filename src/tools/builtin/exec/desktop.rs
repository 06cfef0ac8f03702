//! `screenshot` and `browser_open`: the desktop through the platform's own programs, each
//! registered only when this machine has a way (otherwise skipped with the reason, listed in
//! `/health`).
//!
//! - `browser_open` opens an http(s) URL with `$BROWSER` (the daemon's), `xdg-open` (Linux,
//!   only with a display: `DISPLAY` or `WAYLAND_DISPLAY`) or `open` (macOS).
//! - `screenshot` captures the desktop (`grim` on Wayland; `import`, `scrot` or
//!   `gnome-screenshot` on X11; `screencapture` on macOS) or, given a `url`, renders that page
//!   with a headless Chromium/Chrome (`--headless --screenshot`), and returns the PNG as an MCP
//!   image content block, at most `[security] max_file_bytes`.

use std::path::PathBuf;
use std::time::Duration;

use base64::Engine;
use futures::future::BoxFuture;
use serde_json::{Value, json};

use super::process::{self, ScratchDir, Spec};
use crate::security::command::{SAFE_PATH, locate};
use crate::security::{Effect, Policy};
use crate::tools::BuiltinError;
use crate::tools::builtin::{Args, Cx, PolicyTool, Registrar};

/// Headless browsers looked for, in order.
const HEADLESS: [&str; 6] = [
    "chromium",
    "chromium-browser",
    "google-chrome",
    "google-chrome-stable",
    "chrome",
    "headless_shell",
];
/// The display variables a desktop program gets (and nothing else of the daemon's).
const DISPLAY_VARS: [&str; 6] = [
    "DISPLAY",
    "WAYLAND_DISPLAY",
    "XDG_RUNTIME_DIR",
    "XAUTHORITY",
    "DBUS_SESSION_BUS_ADDRESS",
    "XDG_SESSION_TYPE",
];
/// How long the browser launcher may take to hand the URL over.
const LAUNCH_TIMEOUT: Duration = Duration::from_secs(15);
/// The largest headless viewport side.
const MAX_SIDE: u64 = 4096;

/// Registers the tools this machine has a way for.
pub(super) fn register(r: &mut Registrar<'_>) {
    match launcher() {
        Ok(launcher) => r.add(BrowserOpen { launcher }),
        Err(reason) => r.skip("browser_open", &reason),
    }
    let desktop = desktop_capture();
    let headless = HEADLESS.iter().find_map(|n| locate(n));
    match (&desktop, &headless) {
        (Err(reason), None) => r.skip(
            "screenshot",
            &format!("{reason}, and no headless browser found: install chromium (looked for {} in {SAFE_PATH})", HEADLESS.join(", ")),
        ),
        _ => r.add(Screenshot {
            desktop: desktop.ok(),
            headless,
        }),
    }
}

fn env_set(name: &str) -> bool {
    std::env::var_os(name).is_some_and(|v| !v.is_empty())
}

/// Whether a graphical display is there (Linux) — always on macOS.
fn has_display() -> bool {
    cfg!(target_os = "macos") || env_set("DISPLAY") || env_set("WAYLAND_DISPLAY")
}

/// How to open a URL: the program and its arguments (`%s` is the URL; appended otherwise).
#[derive(Debug, Clone)]
struct Launcher {
    program: PathBuf,
    args: Vec<String>,
}

fn launcher() -> Result<Launcher, String> {
    if let Ok(browser) = std::env::var("BROWSER")
        && let Some(first) = browser.split(':').find(|s| !s.trim().is_empty())
    {
        let mut words = first.split_whitespace();
        let name = words.next().unwrap_or_default();
        let program = if name.starts_with('/') {
            Some(PathBuf::from(name)).filter(|p| p.is_file())
        } else {
            locate(name)
        };
        if let Some(program) = program {
            return Ok(Launcher {
                program,
                args: words.map(str::to_owned).collect(),
            });
        }
    }
    if cfg!(target_os = "macos") {
        return locate("open")
            .map(|program| Launcher {
                program,
                args: Vec::new(),
            })
            .ok_or_else(|| "`open` not found and $BROWSER is unset".to_owned());
    }
    if !has_display() {
        return Err(
            "no display (DISPLAY and WAYLAND_DISPLAY are unset) and $BROWSER is unset: nothing \
             can open a browser window on this machine"
                .to_owned(),
        );
    }
    locate("xdg-open")
        .map(|program| Launcher {
            program,
            args: Vec::new(),
        })
        .ok_or_else(|| {
            format!("a display is set but xdg-open is not installed (looked in {SAFE_PATH}) and $BROWSER is unset")
        })
}

/// A desktop screenshot program: the program and its arguments before the output file.
#[derive(Debug, Clone)]
struct Capture {
    program: PathBuf,
    args: Vec<&'static str>,
}

fn desktop_capture() -> Result<Capture, String> {
    let found = |name: &str, args: &[&'static str]| {
        locate(name).map(|program| Capture {
            program,
            args: args.to_vec(),
        })
    };
    if cfg!(target_os = "macos") {
        return found("screencapture", &["-x"]).ok_or_else(|| "screencapture not found".into());
    }
    if env_set("WAYLAND_DISPLAY")
        && let Some(c) = found("grim", &[])
    {
        return Ok(c);
    }
    if env_set("DISPLAY") {
        return found("import", &["-window", "root"])
            .or_else(|| found("scrot", &["--overwrite"]))
            .or_else(|| found("gnome-screenshot", &["-f"]))
            .ok_or_else(|| {
                "a display is set but no screenshot program is installed (grim, import, scrot, gnome-screenshot)".to_owned()
            });
    }
    Err("no display to capture (DISPLAY and WAYLAND_DISPLAY are unset)".to_owned())
}

/// An http(s) URL checked by the network rules ([`crate::security::net::NetRules`]): the
/// scheme, `blocked_hosts`, and every address its host resolves to (`internal_address` unless
/// `allowed_hosts` names it). The browser resolves the name again and follows its own
/// redirects and subresources, which are not checked: the screenshot's SSRF guard is this
/// first check only.
async fn check_url(policy: &Policy, raw: &str) -> Result<reqwest::Url, BuiltinError> {
    let url = reqwest::Url::parse(raw)
        .map_err(|e| BuiltinError::Arguments(format!("`url` is not a URL: {e}")))?;
    policy.net.check_url(&url)?;
    if let Some(url::Host::Domain(name)) = url.host() {
        let port = url.port_or_known_default().unwrap_or(80);
        let addrs: Vec<std::net::SocketAddr> = tokio::net::lookup_host((name, port))
            .await
            .map_err(|e| BuiltinError::Failed(format!("cannot resolve `{name}`: {e}")))?
            .collect();
        policy.net.check_resolved(name, &addrs)?;
    }
    Ok(url)
}

/// The display variables of the daemon plus a fixed PATH and `HOME`.
fn desktop_env(home: &std::path::Path) -> Vec<(String, String)> {
    let mut env = vec![
        ("PATH".to_owned(), SAFE_PATH.to_owned()),
        ("HOME".to_owned(), home.display().to_string()),
        ("LANG".to_owned(), "C.UTF-8".to_owned()),
    ];
    for var in DISPLAY_VARS {
        if let Ok(v) = std::env::var(var) {
            env.push((var.to_owned(), v));
        }
    }
    env
}

/// The `browser_open` tool.
struct BrowserOpen {
    launcher: Launcher,
}

impl PolicyTool for BrowserOpen {
    fn name(&self) -> &'static str {
        "browser_open"
    }

    fn description(&self) -> String {
        format!(
            "Opens an http(s) URL in the desktop's browser (here with `{}`). Other schemes are \
             refused. The launcher must hand the URL over within {} s. Result: {{url, \
             launcher}}.",
            self.launcher.program.display(),
            LAUNCH_TIMEOUT.as_secs()
        )
    }

    fn input_schema(&self) -> Value {
        json!({
            "type": "object",
            "properties": { "url": { "type": "string", "description": "An http:// or https:// URL." } },
            "required": ["url"]
        })
    }

    fn effect(&self, _args: &Value) -> Effect {
        Effect::Desktop
    }

    fn run(&self, cx: Cx, args: Value) -> BoxFuture<'static, Result<Value, BuiltinError>> {
        let launcher = self.launcher.clone();
        Box::pin(async move {
            let a = Args::new(&args)?;
            let url = check_url(&cx.policy, a.str("url")?).await?;
            let mut argv: Vec<String> = launcher
                .args
                .iter()
                .map(|a| a.replace("%s", url.as_str()))
                .collect();
            if !launcher.args.iter().any(|a| a.contains("%s")) {
                argv.push(url.to_string());
            }
            let home = std::env::var("HOME").unwrap_or_else(|_| "/".to_owned());
            // The browser outlives the launcher: its own group, not killed afterwards.
            let mut child = tokio::process::Command::new(&launcher.program)
                .args(&argv)
                .env_clear()
                .envs(desktop_env(std::path::Path::new(&home)))
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .process_group(0)
                .spawn()
                .map_err(|e| {
                    BuiltinError::Failed(format!(
                        "cannot start {}: {e}",
                        launcher.program.display()
                    ))
                })?;
            let status = match tokio::time::timeout(LAUNCH_TIMEOUT, child.wait()).await {
                Ok(Ok(status)) => Some(status),
                Ok(Err(e)) => {
                    return Err(BuiltinError::Failed(format!(
                        "waiting for the launcher: {e}"
                    )));
                }
                // Still running (a browser started directly): it keeps the window; reap later.
                Err(_) => {
                    tokio::spawn(async move {
                        let _ = child.wait().await;
                    });
                    None
                }
            };
            if let Some(status) = status
                && !status.success()
            {
                return Err(BuiltinError::Failed(format!(
                    "{} could not open the URL ({status})",
                    launcher.program.display()
                )));
            }
            let structured =
                json!({ "url": url.as_str(), "launcher": launcher.program.display().to_string() });
            Ok(crate::tools::builtin::ok_text(
                format!("opened {url}"),
                structured,
            ))
        })
    }
}

/// The `screenshot` tool.
struct Screenshot {
    desktop: Option<Capture>,
    headless: Option<PathBuf>,
}

impl PolicyTool for Screenshot {
    fn name(&self) -> &'static str {
        "screenshot"
    }

    fn description(&self) -> String {
        let mut ways = Vec::new();
        if let Some(d) = &self.desktop {
            ways.push(format!(
                "without `url`, the desktop (with {})",
                d.program.display()
            ));
        }
        if let Some(h) = &self.headless {
            ways.push(format!(
                "with `url` (http or https), that page rendered by a headless browser ({}) in a \
                 `width`×`height` viewport (default 1280×800)",
                h.display()
            ));
        }
        format!(
            "Takes a screenshot and returns it as a PNG image: {}. At most [security] \
             max_file_bytes; killed at command_timeout_secs. Result: an image block and \
             {{source, width, height, bytes}}.",
            ways.join("; ")
        )
    }

    fn input_schema(&self) -> Value {
        json!({
            "type": "object",
            "properties": {
                "url": { "type": "string", "description": "An http(s) page to render headless instead of the desktop." },
                "width": { "type": "integer", "minimum": 100, "maximum": MAX_SIDE },
                "height": { "type": "integer", "minimum": 100, "maximum": MAX_SIDE },
                "timeout_secs": { "type": "integer", "minimum": 1 }
            }
        })
    }

    fn effect(&self, _args: &Value) -> Effect {
        Effect::Desktop
    }

    fn run(&self, cx: Cx, args: Value) -> BoxFuture<'static, Result<Value, BuiltinError>> {
        let desktop = self.desktop.clone();
        let headless = self.headless.clone();
        Box::pin(async move {
            let a = Args::new(&args)?;
            let timeout = super::timeout(&cx.policy, a.opt_u64("timeout_secs")?)?;
            let side = |key: &str, default: u64| -> Result<u64, BuiltinError> {
                let v = a.opt_u64(key)?.unwrap_or(default);
                if !(100..=MAX_SIDE).contains(&v) {
                    return Err(BuiltinError::Arguments(format!(
                        "`{key}` must be 100 to {MAX_SIDE}"
                    )));
                }
                Ok(v)
            };
            let (width, height) = (side("width", 1280)?, side("height", 800)?);
            let scratch = ScratchDir::new("screenshot").map_err(BuiltinError::Failed)?;
            let out = scratch.path().join("shot.png");
            let (spec, source) = match (a.opt_str("url")?, &desktop, &headless) {
                (Some(raw), _, Some(browser)) => {
                    let url = check_url(&cx.policy, raw).await?;
                    let profile = scratch.path().join("profile");
                    let mut args = vec![
                        "--headless".to_owned(),
                        "--disable-gpu".to_owned(),
                        "--hide-scrollbars".to_owned(),
                        "--no-first-run".to_owned(),
                        "--no-default-browser-check".to_owned(),
                        "--disable-extensions".to_owned(),
                        "--disable-sync".to_owned(),
                        "--disable-background-networking".to_owned(),
                        "--disable-component-update".to_owned(),
                        "--mute-audio".to_owned(),
                        format!("--user-data-dir={}", profile.display()),
                        format!("--window-size={width},{height}"),
                        format!("--screenshot={}", out.display()),
                    ];
                    // Chromium refuses to run as root with its sandbox on.
                    if nix::unistd::geteuid().is_root() {
                        args.push("--no-sandbox".to_owned());
                    }
                    args.push(url.to_string());
                    (
                        Spec {
                            program: browser.clone(),
                            args,
                            cwd: scratch.path().to_owned(),
                            env: desktop_env(scratch.path()),
                            timeout,
                            max_output: 64 * 1024,
                        },
                        url.to_string(),
                    )
                }
                (Some(_), _, None) => {
                    return Err(BuiltinError::Arguments(
                        "`url` needs a headless browser, and none is installed (install chromium); \
                         without `url` the desktop is captured"
                            .to_owned(),
                    ));
                }
                (None, Some(capture), _) => {
                    let mut args: Vec<String> =
                        capture.args.iter().map(|s| (*s).to_owned()).collect();
                    args.push(out.display().to_string());
                    let home = std::env::var("HOME").unwrap_or_else(|_| "/".to_owned());
                    (
                        Spec {
                            program: capture.program.clone(),
                            args,
                            cwd: scratch.path().to_owned(),
                            env: desktop_env(std::path::Path::new(&home)),
                            timeout,
                            max_output: 64 * 1024,
                        },
                        "desktop".to_owned(),
                    )
                }
                (None, None, _) => {
                    return Err(BuiltinError::Arguments(
                        "`url` is required: there is no display to capture here, only a \
                         headless browser"
                            .to_owned(),
                    ));
                }
            };
            let report = {
                let cx = cx.clone();
                move |elapsed: Duration, _bytes: u64| {
                    cx.report(
                        elapsed.as_secs(),
                        None,
                        format!("capturing for {} s", elapsed.as_secs()),
                    );
                }
            };
            let outcome = process::run(spec, &report)
                .await
                .map_err(BuiltinError::Failed)?;
            if outcome.timed_out {
                return Err(BuiltinError::Failed(format!(
                    "the screenshot did not finish in {} s; its processes were killed",
                    timeout.as_secs()
                )));
            }
            let max = cx.policy.config().max_file();
            let len = std::fs::metadata(&out).map(|m| m.len()).map_err(|_| {
                BuiltinError::Failed(format!(
                    "no image was written ({}): {}",
                    outcome.status_line(),
                    outcome
                        .stderr
                        .lines()
                        .rev()
                        .take(3)
                        .collect::<Vec<_>>()
                        .join(" | ")
                ))
            })?;
            if len > max as u64 {
                return Err(BuiltinError::Failed(format!(
                    "the screenshot is {len} bytes, over [security] max_file_bytes ({max})"
                )));
            }
            let png = std::fs::read(&out)
                .map_err(|e| BuiltinError::Failed(format!("reading the screenshot: {e}")))?;
            let Some((w, h)) = png_size(&png) else {
                return Err(BuiltinError::Failed(
                    "the screenshot program wrote something that is not a PNG".to_owned(),
                ));
            };
            let data = base64::engine::general_purpose::STANDARD.encode(&png);
            let structured =
                json!({ "source": source, "width": w, "height": h, "bytes": png.len() });
            Ok(json!({
                "content": [
                    { "type": "image", "data": data, "mimeType": "image/png" },
                    { "type": "text", "text": format!("screenshot of {source}: {w}×{h} PNG, {} bytes", png.len()) },
                ],
                "structuredContent": structured,
            }))
        })
    }
}

/// Width and height from a PNG's IHDR chunk.
fn png_size(png: &[u8]) -> Option<(u32, u32)> {
    if png.len() < 24 || &png[..8] != b"\x89PNG\r\n\x1a\n" || &png[12..16] != b"IHDR" {
        return None;
    }
    let w = u32::from_be_bytes(png[16..20].try_into().ok()?);
    let h = u32::from_be_bytes(png[20..24].try_into().ok()?);
    Some((w, h))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn png_dimensions() {
        let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
        png.extend(640u32.to_be_bytes());
        png.extend(480u32.to_be_bytes());
        assert_eq!(png_size(&png), Some((640, 480)));
        assert_eq!(png_size(b"GIF89a"), None);
    }
}
