//! systemd readiness, reload and watchdog notification (`sd_notify`), without libsystemd.
//!
//! Under systemd (`NOTIFY_SOCKET` set, `Type=notify` or `Type=notify-reload`) the daemon sends
//! `READY=1` once the supervision tree is up, `RELOADING=1` with `MONOTONIC_USEC=` when a
//! reload begins and `READY=1` (with a `STATUS=` line saying how it went) when it is done,
//! `STOPPING=1` when shutdown begins, and `WATCHDOG=1` while the root supervisor answers (see
//! [`crate::watchdog`], which decides when to ping). Outside systemd every call is a no-op. The
//! socket path may be a filesystem path or an abstract socket (`@name`).

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

    /// Sends `RELOADING=1` with `MONOTONIC_USEC=` (the time now on `CLOCK_MONOTONIC`, as
    /// `Type=notify-reload` requires to match the reload to the signal that asked for it).
    pub fn notify_reloading(&self) -> io::Result<()> {
        if !self.is_active() {
            return Ok(());
        }
        self.notify(&reloading_message(monotonic_now()?))
    }

    /// Sends `READY=1` after a reload, with `status` as the unit's `STATUS=` line (shown by
    /// `systemctl status`).
    pub fn notify_reloaded(&self, status: &str) -> io::Result<()> {
        self.notify(&format!("READY=1\nSTATUS={}", one_line(status)))
    }
}

/// The notification that a reload began at `monotonic` (time since boot on
/// `CLOCK_MONOTONIC`).
pub fn reloading_message(monotonic: Duration) -> String {
    format!("RELOADING=1\nMONOTONIC_USEC={}", monotonic.as_micros())
}

/// `CLOCK_MONOTONIC` now.
fn monotonic_now() -> io::Result<Duration> {
    let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)?;
    Ok(Duration::from(now))
}

/// `text` on one line: a newline would start another assignment of the message.
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
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

    #[test]
    fn watchdog_interval_is_half_the_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify").display().to_string();
        let _listener = UnixDatagram::bind(&path).unwrap();
        let n = Notifier::from_env(&env_of(&[
            ("NOTIFY_SOCKET", path),
            ("WATCHDOG_USEC", "4000000".into()),
        ]));
        assert_eq!(n.watchdog_interval(), Some(Duration::from_secs(2)));
    }

    #[test]
    fn reloading_carries_the_monotonic_time_and_ready_a_one_line_status() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify").display().to_string();
        let listener = UnixDatagram::bind(&path).unwrap();
        let n = Notifier::from_env(&env_of(&[("NOTIFY_SOCKET", path)]));
        let mut buf = [0u8; 256];

        let before = monotonic_now().unwrap();
        n.notify_reloading().unwrap();
        let after = monotonic_now().unwrap();
        let len = listener.recv(&mut buf).unwrap();
        let message = std::str::from_utf8(&buf[..len]).unwrap();
        let usec: u128 = message
            .strip_prefix("RELOADING=1\nMONOTONIC_USEC=")
            .unwrap_or_else(|| panic!("{message:?}"))
            .parse()
            .unwrap();
        assert!(
            before.as_micros() <= usec && usec <= after.as_micros(),
            "{usec} is the time of sending on CLOCK_MONOTONIC"
        );
        assert_eq!(
            reloading_message(Duration::from_millis(1_500)),
            "RELOADING=1\nMONOTONIC_USEC=1500000"
        );

        n.notify_reloaded("reload rejected:\nbad line").unwrap();
        let len = listener.recv(&mut buf).unwrap();
        assert_eq!(
            &buf[..len],
            b"READY=1\nSTATUS=reload rejected: bad line",
            "a newline in the status cannot start another assignment"
        );
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
