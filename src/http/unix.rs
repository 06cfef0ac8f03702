//! The MCP server's owner-only Unix socket, `$REVKA_HOME/mcp.sock`: the same service as its
//! TCP listener, for clients on this machine (the stdio bridge) at a lower cost per message
//! than loopback TCP.
//!
//! Part of the shared HTTP plumbing ([`crate::http`]); the MCP server's listener
//! (`root/mcp_http`) binds it once its TCP address is bound, serves it with the same loop
//! ([`super::serve`]) and guard (its peers are loopback clients, [`super::UNIX_PEER`], held to
//! the loopback `Host`/`Origin` checks whatever the TCP bind), publishes its path in
//! `mcp.json`, and removes it on a graceful stop.
//!
//! **Who can connect.** Connecting to a Unix socket needs write permission on its file: it is
//! made mode 0600, in `$REVKA_HOME` (0700), so only the daemon's user can. The socket is bound
//! at a temporary name in the same directory, given its mode, and only then renamed over
//! `mcp.sock`: the name never points at a socket with looser permissions, and whatever was at
//! it (the socket of a daemon that died without removing it, or anything planted there) is
//! replaced in one step, never followed or connected to. A graceful stop removes the file only
//! if it is still the one this daemon bound (its device and inode): a later daemon's is left.
//!
//! Both ends of the socket drive their connections as [`ReadWoken`] streams (woken for
//! reading only: a Unix socket would otherwise wake each writer every time its peer reads).

mod stream;

pub use stream::ReadWoken;

use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

/// The socket's name in `$REVKA_HOME`.
pub const SOCKET_FILE: &str = "mcp.sock";

/// The file of a socket this daemon bound, to remove on a graceful stop.
#[derive(Debug, Clone)]
pub struct SocketFile {
    path: PathBuf,
    /// Its device and inode: the file at `path` is this one only while they match.
    id: (u64, u64),
}

impl SocketFile {
    /// Where it is bound.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Removes the file, if the one at its path is still this one.
    pub fn remove(&self) {
        match std::fs::symlink_metadata(&self.path) {
            Ok(meta) if (meta.dev(), meta.ino()) == self.id => {
                if let Err(e) = std::fs::remove_file(&self.path) {
                    tracing::warn!(error = %e, path = %self.path.display(), "cannot remove the MCP socket");
                }
            }
            Ok(_) => {
                tracing::info!(path = %self.path.display(), "the MCP socket is another daemon's; left in place")
            }
            Err(_) => {}
        }
    }
}

/// Binds an owner-only (0600) socket at `path`, replacing whatever is there (module docs).
/// The listener is non-blocking, ready for tokio.
pub fn bind_private(path: &Path) -> io::Result<(UnixListener, SocketFile)> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map_or_else(|| SOCKET_FILE.into(), |n| n.to_string_lossy());
    let temporary = dir.join(format!(".{name}.{}", std::process::id()));
    match std::fs::remove_file(&temporary) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let listener = UnixListener::bind(&temporary)?;
    let placed = (|| {
        std::fs::set_permissions(&temporary, std::fs::Permissions::from_mode(0o600))?;
        let meta = std::fs::symlink_metadata(&temporary)?;
        std::fs::rename(&temporary, path)?;
        listener.set_nonblocking(true)?;
        Ok((meta.dev(), meta.ino()))
    })();
    match placed {
        Ok(id) => Ok((
            listener,
            SocketFile {
                path: path.to_owned(),
                id,
            },
        )),
        Err(e) => {
            let _ = std::fs::remove_file(&temporary);
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::FileTypeExt;

    use super::*;

    #[test]
    fn bound_owner_only_over_a_stale_socket_and_removed_only_if_ours() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(SOCKET_FILE);
        // A dead daemon's socket: bound, then its listener gone.
        drop(UnixListener::bind(&path).unwrap());
        let (listener, file) = bind_private(&path).unwrap();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        std::os::unix::net::UnixStream::connect(&path).expect("the new socket answers");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary file left"
        );

        // A later daemon's socket at the path is left alone.
        let (_later, later_file) = bind_private(&path).unwrap();
        file.remove();
        assert!(path.exists());
        later_file.remove();
        assert!(!path.exists());
        drop(listener);
    }

    #[test]
    fn a_link_planted_at_the_path_is_replaced_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let target = outside.path().join("victim");
        std::fs::write(&target, "precious").unwrap();
        let path = dir.path().join(SOCKET_FILE);
        std::os::unix::fs::symlink(&target, &path).unwrap();
        let (_listener, _file) = bind_private(&path).unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "precious");
        assert!(
            std::fs::symlink_metadata(&path)
                .unwrap()
                .file_type()
                .is_socket()
        );
    }
}
