//! systemd readiness and watchdog notification (`sd_notify`), without libsystemd.
//!
//! Under systemd (`NOTIFY_SOCKET` set, `Type=notify`) the daemon sends `READY=1` once the
//! supervision tree is up, `STOPPING=1` when shutdown begins, and `WATCHDOG=1` every half of
//! `WATCHDOG_USEC` while it runs. Outside systemd every call is a no-op. The socket path may be
//! a filesystem path or an abstract socket (`@name`).

use std::io;
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

/// A connection to the service manager's notification socket, if there is one.
#[derive(Debug)]
pub struct Notifier {
    socket: Option<(UnixDatagram, String)>,
    watchdog: Option<Duration>,
}

impl Notifier {
    /// Reads `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID` through `env`.
    pub fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Self {
        let socket = env("NOTIFY_SOCKET")
            .filter(|p| !p.is_empty())
            .and_then(|path| UnixDatagram::unbound().ok().map(|s| (s, path)));
        let pid_matches = env("WATCHDOG_PID")
            .and_then(|p| p.parse::<u32>().ok())
            .is_none_or(|pid| pid == std::process::id());
        let watchdog = env("WATCHDOG_USEC")
            .and_then(|us| us.parse::<u64>().ok())
            .filter(|&us| us > 0 && pid_matches)
            .map(Duration::from_micros);
        Self { socket, watchdog }
    }

    /// Whether a service manager is listening.
    pub fn is_active(&self) -> bool {
        self.socket.is_some()
    }

    /// How often to send `WATCHDOG=1`: half the watchdog timeout, when one is set.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.socket.as_ref().and(self.watchdog).map(|w| w / 2)
    }

    /// Sends a raw notification (`READY=1`, `STOPPING=1`, `STATUS=...`).
    pub fn notify(&self, state: &str) -> io::Result<()> {
        let Some((socket, path)) = &self.socket else {
            return Ok(());
        };
        send(socket, path, state.as_bytes())
    }

    /// Sends `WATCHDOG=1` every [`Self::watchdog_interval`] until the future is dropped.
    pub async fn run_watchdog(&self) {
        let Some(interval) = self.watchdog_interval() else {
            return std::future::pending().await;
        };
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            if let Err(e) = self.notify("WATCHDOG=1") {
                tracing::warn!(error = %e, "watchdog notification failed");
            }
        }
    }
}

#[cfg(target_os = "linux")]
fn send(socket: &UnixDatagram, path: &str, msg: &[u8]) -> io::Result<()> {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::SocketAddr;
    let addr = match path.strip_prefix('@') {
        Some(name) => SocketAddr::from_abstract_name(name.as_bytes())?,
        None => SocketAddr::from_pathname(path)?,
    };
    socket.send_to_addr(msg, &addr).map(drop)
}

#[cfg(not(target_os = "linux"))]
fn send(socket: &UnixDatagram, path: &str, msg: &[u8]) -> io::Result<()> {
    socket.send_to(msg, path).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &[(&'static str, String)]) -> impl Fn(&str) -> Option<String> {
        let pairs = pairs.to_vec();
        move |k| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone())
    }

    #[test]
    fn inactive_without_notify_socket() {
        let n = Notifier::from_env(&env_of(&[("WATCHDOG_USEC", "1000000".into())]));
        assert!(!n.is_active());
        assert_eq!(n.watchdog_interval(), None);
        n.notify("READY=1").unwrap();
    }

    #[test]
    fn watchdog_is_ignored_for_another_pid() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify").display().to_string();
        let _listener = UnixDatagram::bind(&path).unwrap();
        let n = Notifier::from_env(&env_of(&[
            ("NOTIFY_SOCKET", path),
            ("WATCHDOG_USEC", "1000000".into()),
            ("WATCHDOG_PID", "1".into()),
        ]));
        assert!(n.is_active());
        assert_eq!(n.watchdog_interval(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn ready_then_watchdog_at_half_the_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify").display().to_string();
        let listener = tokio::net::UnixDatagram::bind(&path).unwrap();
        let n = Notifier::from_env(&env_of(&[
            ("NOTIFY_SOCKET", path),
            ("WATCHDOG_USEC", "4000000".into()),
        ]));
        assert_eq!(n.watchdog_interval(), Some(Duration::from_secs(2)));
        n.notify("READY=1").unwrap();
        let mut buf = [0u8; 64];
        let len = listener.recv(&mut buf).await.unwrap();
        assert_eq!(&buf[..len], b"READY=1");

        let watchdog = tokio::spawn(async move { n.run_watchdog().await });
        let mut times = Vec::new();
        for _ in 0..4 {
            let len = listener.recv(&mut buf).await.unwrap();
            assert_eq!(&buf[..len], b"WATCHDOG=1");
            times.push(tokio::time::Instant::now());
        }
        for pair in times.windows(2) {
            assert_eq!(
                pair[1] - pair[0],
                Duration::from_secs(2),
                "pinged at half of WATCHDOG_USEC"
            );
        }
        watchdog.abort();
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn abstract_socket_addresses_work() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("revka-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let listener = UnixDatagram::bind_addr(&addr).unwrap();
        let n = Notifier::from_env(&env_of(&[("NOTIFY_SOCKET", format!("@{name}"))]));
        n.notify("STOPPING=1").unwrap();
        let mut buf = [0u8; 64];
        let len = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"STOPPING=1");
    }
}
