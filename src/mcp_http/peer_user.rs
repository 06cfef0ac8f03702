//! Which local user is on the other end of a loopback TCP connection.
//!
//! Part of the MCP server (`root/mcp_http`). Loopback TCP carries no identity, but on Linux the
//! kernel lists every socket with its owner's uid in `/proc/net/tcp` and `/proc/net/tcp6`; the
//! client's end of a connection to us is the established socket whose local address is the
//! peer address we accepted. `POST /session` and token-less standard sessions use it to refuse
//! other users of the machine: a session can run Revka's built-in tools (`shell`,
//! `file_write`), so it must belong to the daemon's own user. Elsewhere (macOS) the owner cannot
//! be read this way and the answer is "unknown": the threat model there stays the seed's.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// What is known of a loopback peer's owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PeerUser {
    /// The daemon's own user.
    Same,
    /// Another user (the uid).
    Other(u32),
    /// Not known (not loopback, not Linux, or the socket is already gone).
    Unknown,
}

/// The owner of the loopback connection from `peer`, compared with the daemon's user.
pub(crate) fn peer_user(peer: SocketAddr) -> PeerUser {
    if !peer.ip().is_loopback() && !is_mapped_loopback(peer.ip()) {
        return PeerUser::Unknown;
    }
    match socket_uid(peer) {
        Some(uid) if uid == nix::unistd::geteuid().as_raw() => PeerUser::Same,
        Some(uid) => PeerUser::Other(uid),
        None => PeerUser::Unknown,
    }
}

/// Why a session may not be opened from `peer`, when another user of the machine owns it.
pub(crate) fn refuse_other_user(peer: SocketAddr) -> Option<String> {
    match peer_user(peer) {
        PeerUser::Other(uid) => {
            tracing::warn!(uid, %peer, "session refused: the client belongs to another user");
            Some(format!(
                "sessions are only for the daemon's own user; this client runs as uid {uid}"
            ))
        }
        PeerUser::Same | PeerUser::Unknown => None,
    }
}

fn is_mapped_loopback(ip: IpAddr) -> bool {
    matches!(ip, IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()))
}

/// The uid owning the established socket whose local address is `addr`.
fn socket_uid(addr: SocketAddr) -> Option<u32> {
    if !cfg!(target_os = "linux") {
        return None;
    }
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .find_map(|table| {
            let text = std::fs::read_to_string(table).ok()?;
            find_uid(&text, addr)
        })
}

/// The uid of the established (`01`) entry of a `/proc/net/tcp{,6}` table whose local address
/// is `addr`.
fn find_uid(table: &str, addr: SocketAddr) -> Option<u32> {
    table.lines().skip(1).find_map(|line| {
        let mut fields = line.split_whitespace();
        let _slot = fields.next()?;
        let local = parse_addr(fields.next()?)?;
        let _remote = fields.next()?;
        let state = fields.next()?;
        // tx:rx queues, timer, retransmits, then the uid.
        let uid = fields.nth(3)?;
        (state == "01" && same_endpoint(local, addr)).then(|| uid.parse().ok())?
    })
}

/// Whether two endpoints are the same, an IPv4 address and its IPv6-mapped form alike.
fn same_endpoint(a: SocketAddr, b: SocketAddr) -> bool {
    let canonical = |ip: IpAddr| match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    a.port() == b.port() && canonical(a.ip()) == canonical(b.ip())
}

/// `0100007F:1F90` (IPv4) or 32 hex digits `:port` (IPv6): the address as the kernel prints it,
/// each 32-bit word in the machine's byte order.
fn parse_addr(text: &str) -> Option<SocketAddr> {
    let (ip, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |i: usize| -> Option<[u8; 4]> {
        let hex = ip.get(i * 8..i * 8 + 8)?;
        Some(u32::from_str_radix(hex, 16).ok()?.to_ne_bytes())
    };
    let ip = match ip.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(0)?)),
        32 => {
            let mut bytes = [0u8; 16];
            for i in 0..4 {
                bytes[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            IpAddr::V6(Ipv6Addr::from(bytes))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_of_our_own_is_ours() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (_server, peer) = listener.accept().unwrap();
        assert_eq!(peer, client.local_addr().unwrap());
        let expected = if cfg!(target_os = "linux") {
            PeerUser::Same
        } else {
            PeerUser::Unknown
        };
        assert_eq!(peer_user(peer), expected);
    }

    #[test]
    fn entries_are_read_by_address_and_state() {
        let local = u32::from_ne_bytes([127, 0, 0, 1]);
        let table = format!(
            "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
             \x20  0: {local:08X}:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1\n\
             \x20  1: {local:08X}:C350 {local:08X}:1F90 01 00000000:00000000 00:00000000 00000000  1001        0 2 1\n"
        );
        let peer: SocketAddr = "127.0.0.1:50000".parse().unwrap();
        assert_eq!(find_uid(&table, peer), Some(1001));
        // The listening socket (state 0A) is not a peer.
        assert_eq!(find_uid(&table, "127.0.0.1:8080".parse().unwrap()), None);
        assert!(same_endpoint(
            "[::ffff:127.0.0.1]:5".parse().unwrap(),
            "127.0.0.1:5".parse().unwrap()
        ));
        assert_eq!(peer_user("10.0.0.1:5".parse().unwrap()), PeerUser::Unknown);
    }
}
