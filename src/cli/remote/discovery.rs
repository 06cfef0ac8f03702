//! The gateway's discovery file, `$REVKA_HOME/gateway.json`, and whether the daemon it names
//! is still alive.
//!
//! Part of the operator commands' gateway client ([`super::Gateway`]).

use std::path::Path;

use revka_actors::fs::FsError;
use serde::Deserialize;

use super::RemoteError;

/// The gateway's discovery file in `$REVKA_HOME`.
pub const GATEWAY_FILE: &str = "gateway.json";

/// The discovery document the daemon writes once the gateway is bound.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Discovery {
    /// The gateway's base URL, `http://127.0.0.1:<port>`.
    pub url: String,
    /// The daemon's pid.
    #[serde(default)]
    pub pid: Option<u32>,
    /// When the daemon started serving (RFC 3339).
    #[serde(default)]
    pub started_at: Option<String>,
}

/// Reads `home/gateway.json` and checks that the process it names is alive. A home others can
/// write in is refused first ([`RemoteError::UnsafeHome`]): whoever can replace this file
/// chooses where the owner token is sent.
pub fn read_gateway_file(home: &Path) -> Result<Discovery, RemoteError> {
    let path = home.join(GATEWAY_FILE);
    match revka_actors::fs::check_private_dir(home) {
        Err(FsError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            return Err(RemoteError::NotRunning { path });
        }
        Err(e) => return Err(RemoteError::UnsafeHome(e)),
        Ok(()) => {}
    }
    let text = match std::fs::read(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(RemoteError::NotRunning { path });
        }
        Err(e) => {
            let reason = e.to_string();
            return Err(RemoteError::BadDiscovery { path, reason });
        }
    };
    let discovery: Discovery = match serde_json::from_slice(&text) {
        Ok(d) => d,
        Err(e) => {
            let reason = format!("not a gateway discovery document: {e}");
            return Err(RemoteError::BadDiscovery { path, reason });
        }
    };
    if !(discovery.url.starts_with("http://") || discovery.url.starts_with("https://")) {
        let reason = format!("url {:?} is not an http(s) URL", discovery.url);
        return Err(RemoteError::BadDiscovery { path, reason });
    }
    match discovery.pid {
        Some(pid) if !pid_alive(pid) => Err(RemoteError::Stale { path, pid }),
        _ => Ok(discovery),
    }
}

/// Whether a process `pid` exists (`kill(pid, 0)`; `EPERM` means it does, under another user).
pub fn pid_alive(pid: u32) -> bool {
    use nix::errno::Errno;
    use nix::sys::signal::kill;
    use nix::unistd::Pid;
    // 0 and values past i32::MAX would address process groups, not one process.
    match i32::try_from(pid) {
        Ok(raw) if raw > 0 => !matches!(kill(Pid::from_raw(raw), None), Err(Errno::ESRCH)),
        _ => false,
    }
}
