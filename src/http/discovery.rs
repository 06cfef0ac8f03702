//! Discovery files (seeds 001 and 003): `{url, pid, started_at}` documents in `$REVKA_HOME`
//! that say where a listener of the running daemon is bound; `mcp.json` also names the MCP
//! server's owner-only Unix socket (`socket`, [`super::unix`]) when it has one.
//!
//! Part of the shared HTTP plumbing ([`crate::http`]). The MCP server (`root/mcp_http`) writes
//! `mcp.json` ([`DISCOVERY_FILE`]) once bound, the gateway (`root/gateway`) writes
//! `gateway.json`; the gateway's proxy and the CLI (`revka doctor`, `revka mcp serve`) read
//! `mcp.json` to find the MCP endpoint. Written atomically with mode 0600
//! ([`revka_actors::fs::write_atomic`]), so a concurrent reader sees either the old document
//! or the new one, never a partial one, and a link planted at its path is replaced, never
//! written through. Removed on a graceful stop, but only if it still names this process:
//! another daemon's file is left alone.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use revka_actors::fs;
use revka_actors::status::rfc3339;
use serde::{Deserialize, Serialize};

/// The discovery file's name in `$REVKA_HOME`.
pub const DISCOVERY_FILE: &str = "mcp.json";

/// The discovery document. Only `url` is guaranteed; older writers may omit the others.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Discovery {
    /// The MCP endpoint, `http://127.0.0.1:<port>/mcp`.
    pub url: String,
    /// The daemon's pid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// When the daemon started serving (RFC 3339, UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// The MCP server's Unix socket, serving what `url` serves, to local clients: an absolute
    /// path. Absent when the socket could not be bound, and from older daemons.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub socket: Option<PathBuf>,
}

/// Writes `home/mcp.json` atomically with mode 0600.
pub fn write_discovery(home: &Path, url: &str) -> std::io::Result<()> {
    write_mcp_discovery(home, url, None)
}

/// Writes `home/mcp.json` atomically with mode 0600, naming the Unix socket too, if any.
pub fn write_mcp_discovery(home: &Path, url: &str, socket: Option<&Path>) -> std::io::Result<()> {
    write_document(&home.join(DISCOVERY_FILE), url, socket)
}

/// Writes a discovery document (`mcp.json`, `gateway.json`) at `path`, atomically, mode 0600.
pub fn write_discovery_file(path: &Path, url: &str) -> std::io::Result<()> {
    write_document(path, url, None)
}

fn write_document(path: &Path, url: &str, socket: Option<&Path>) -> std::io::Result<()> {
    let doc = Discovery {
        url: url.to_owned(),
        pid: Some(std::process::id()),
        started_at: Some(rfc3339(SystemTime::now())),
        socket: socket.map(Path::to_owned),
    };
    let text = serde_json::to_vec_pretty(&doc).map_err(std::io::Error::other)?;
    fs::write_atomic(path, &text, fs::PRIVATE_FILE)?;
    Ok(())
}

/// Reads `home/mcp.json`, if present and valid.
pub fn read_discovery(home: &Path) -> Option<Discovery> {
    read_discovery_file(&home.join(DISCOVERY_FILE))
}

/// Reads a discovery document, if present and valid.
pub fn read_discovery_file(path: &Path) -> Option<Discovery> {
    let text = std::fs::read(path).ok()?;
    serde_json::from_slice(&text).ok()
}

/// Removes `home/mcp.json` if it names this process.
pub fn remove_discovery(home: &Path) {
    remove_discovery_file(&home.join(DISCOVERY_FILE));
}

/// Removes a discovery document if it names this process.
pub fn remove_discovery_file(path: &Path) {
    match read_discovery_file(path) {
        Some(doc) if doc.pid == Some(std::process::id()) => {
            if let Err(e) = std::fs::remove_file(path) {
                tracing::warn!(error = %e, "cannot remove the discovery file");
            }
        }
        Some(_) => tracing::info!("the discovery file names another process; left in place"),
        None => {}
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    #[test]
    fn written_owner_only_and_removed_only_if_ours() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read_discovery(dir.path()).is_none(), "absent until written");
        write_discovery(dir.path(), "http://127.0.0.1:1/mcp").unwrap();
        let path = dir.path().join(DISCOVERY_FILE);
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let doc = read_discovery(dir.path()).unwrap();
        assert_eq!(doc.url, "http://127.0.0.1:1/mcp");
        assert_eq!(doc.pid, Some(std::process::id()));
        assert!(doc.started_at.unwrap().ends_with('Z'));
        assert_eq!(doc.socket, None, "no socket unless named");
        let socket = dir.path().join("mcp.sock");
        write_mcp_discovery(dir.path(), "http://127.0.0.1:1/mcp", Some(&socket)).unwrap();
        assert_eq!(read_discovery(dir.path()).unwrap().socket, Some(socket));

        std::fs::write(&path, r#"{"url":"http://127.0.0.1:2/mcp","pid":1}"#).unwrap();
        remove_discovery(dir.path());
        assert!(path.exists(), "another process's file is left alone");
        write_discovery(dir.path(), "http://127.0.0.1:3/mcp").unwrap();
        remove_discovery(dir.path());
        assert!(!path.exists());
    }

    /// Links planted at the file and at a temporary name a writer could predict: none is
    /// written through.
    #[test]
    fn links_planted_at_the_discovery_file_are_replaced_not_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let target = outside.path().join("victim");
        std::fs::write(&target, "precious").unwrap();
        let path = dir.path().join(DISCOVERY_FILE);
        let predictable = dir
            .path()
            .join(format!(".{DISCOVERY_FILE}.{}.tmp", std::process::id()));
        for link in [&path, &predictable] {
            std::os::unix::fs::symlink(&target, link).unwrap();
        }
        write_discovery(dir.path(), "http://127.0.0.1:1/mcp").unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "precious");
        assert!(std::fs::symlink_metadata(&path).unwrap().is_file());
        assert_eq!(
            read_discovery(dir.path()).unwrap().url,
            "http://127.0.0.1:1/mcp"
        );
    }

    #[test]
    fn a_concurrent_reader_never_sees_a_partial_document() {
        let dir = tempfile::tempdir().unwrap();
        write_discovery(dir.path(), "http://127.0.0.1:1/mcp").unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let reader = {
            let (path, stop) = (dir.path().to_owned(), stop.clone());
            std::thread::spawn(move || {
                let mut reads = 0;
                while !stop.load(Ordering::Relaxed) {
                    let text = std::fs::read(path.join(DISCOVERY_FILE)).expect("always present");
                    serde_json::from_slice::<Discovery>(&text).expect("always complete");
                    reads += 1;
                }
                reads
            })
        };
        for port in 0..500 {
            write_discovery(dir.path(), &format!("http://127.0.0.1:{port}/mcp")).unwrap();
        }
        stop.store(true, Ordering::Relaxed);
        assert!(reader.join().unwrap() > 0);
    }
}
