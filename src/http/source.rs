//! Who a client is, for per-source limits ([`Source`]), and the per-source cap on open
//! connections of one listener (`Sources`).
//!
//! Part of the shared HTTP plumbing (`crate::http`). A source is what one client can cheaply
//! vary without becoming someone else: an IPv4 address; an IPv6 /64 (one host usually holds a
//! whole /64); and all of loopback as one, since any local process may bind any of
//! `127.0.0.0/8` (or `::1`) as its source address and so would otherwise get as many sources
//! as it likes.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};

/// One client, for per-source limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// Any loopback address: every local process.
    Loopback,
    /// An IPv4 address (an IPv4-mapped IPv6 address counts as its IPv4 address).
    V4(Ipv4Addr),
    /// The /64 prefix of an IPv6 address.
    V6(u64),
}

impl From<IpAddr> for Source {
    fn from(ip: IpAddr) -> Self {
        let ip = ip.to_canonical();
        if ip.is_loopback() {
            return Self::Loopback;
        }
        match ip {
            IpAddr::V4(v4) => Self::V4(v4),
            IpAddr::V6(v6) => Self::V6((v6.to_bits() >> 64) as u64),
        }
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Loopback => f.write_str("loopback"),
            Self::V4(ip) => write!(f, "{ip}"),
            Self::V6(prefix) => {
                let ip = std::net::Ipv6Addr::from_bits(u128::from(*prefix) << 64);
                write!(f, "{ip}/64")
            }
        }
    }
}

/// Open connections per source, for one listener.
#[derive(Debug, Default)]
pub(super) struct Sources {
    open: Mutex<HashMap<Source, Count>>,
}

#[derive(Debug, Default)]
struct Count {
    open: u32,
    /// Connections refused since one was last admitted: the first of a run is logged as a
    /// warning, the rest quietly (a flood must not flood the log).
    refused: u64,
}

/// A connection counted against its source; dropping it (when the socket closes, including
/// after an upgrade) gives the place back.
#[derive(Debug)]
pub(super) struct Slot {
    sources: Arc<Sources>,
    source: Source,
}

impl Sources {
    /// Counts a connection from `ip` if its source has fewer than `cap` open; `Err` is how many
    /// the source has had refused in a row, this one included.
    pub(super) fn admit(self: &Arc<Self>, ip: IpAddr, cap: u32) -> Result<Slot, u64> {
        let source = Source::from(ip);
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let count = open.entry(source).or_default();
        if count.open >= cap {
            count.refused += 1;
            return Err(count.refused);
        }
        count.open += 1;
        count.refused = 0;
        Ok(Slot {
            sources: self.clone(),
            source,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self
            .sources
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = open.get_mut(&self.source) {
            count.open = count.open.saturating_sub(1);
            if count.open == 0 {
                open.remove(&self.source);
            }
        }
    }
}

/// The answer to a connection past its source's cap, written without reading the request.
const REFUSED: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
retry-after: 1\r\nconnection: close\r\ncontent-length: 62\r\n\r\n\
{\"error\":\"too many open connections from this client; retry\"}\n";

/// Answers 503 to a connection past its source's cap (if the socket takes it at once: this
/// never waits on the client) and closes it. `refused` is how many in a row its source had
/// refused.
pub(super) fn refuse<L: super::Accept>(
    stream: L::Stream,
    peer: SocketAddr,
    refused: u64,
    cap: u32,
) {
    let source = Source::from(peer.ip());
    if refused == 1 {
        tracing::warn!(%source, %peer, cap, "too many open connections from one source; refusing more until some close");
    } else {
        tracing::debug!(%source, %peer, refused, "connection refused: too many open from its source");
    }
    L::try_write(&stream, REFUSED);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_group_loopback_and_ipv6_prefixes() {
        let source = |s: &str| Source::from(s.parse::<IpAddr>().unwrap());
        assert_eq!(source("127.0.0.1"), Source::Loopback);
        assert_eq!(source("127.9.8.7"), Source::Loopback);
        assert_eq!(source("::1"), Source::Loopback);
        assert_eq!(source("::ffff:127.0.0.2"), Source::Loopback);
        assert_eq!(source("::ffff:10.0.0.1"), source("10.0.0.1"));
        assert_ne!(source("10.0.0.1"), source("10.0.0.2"));
        assert_eq!(source("2001:db8:1:2::5"), source("2001:db8:1:2:ffff::9"));
        assert_ne!(source("2001:db8:1:2::5"), source("2001:db8:1:3::5"));
        assert_eq!(source("2001:db8:1:2::5").to_string(), "2001:db8:1:2::/64");
    }

    #[test]
    fn a_source_holds_at_most_its_cap_and_gets_places_back() {
        let sources = Arc::new(Sources::default());
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let other: IpAddr = "10.0.0.1".parse().unwrap();
        let a = sources.admit(ip, 2).unwrap();
        let _b = sources.admit("127.0.0.5".parse().unwrap(), 2).unwrap();
        assert_eq!(sources.admit(ip, 2).unwrap_err(), 1);
        assert_eq!(sources.admit(ip, 2).unwrap_err(), 2, "refusals in a row");
        let _c = sources
            .admit(other, 2)
            .expect("another source has its own count");
        drop(a);
        let _d = sources.admit(ip, 2).expect("a place given back");
        assert_eq!(sources.admit(ip, 2).unwrap_err(), 1, "the run starts again");
    }
}
