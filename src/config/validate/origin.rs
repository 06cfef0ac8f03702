//! Web origins (`scheme://host[:port]`): the check of `[gateway] allowed_origins`, and the
//! normal form the gateway compares `Origin` headers in.
//!
//! Part of the config layer's validation step; the gateway's Origin guard uses the same
//! [`normalise_origin`] on each request's `Origin`, so a configured origin matches exactly what
//! a browser sends for it: lowercase scheme and host, no default port, nothing after the
//! authority.

use std::net::Ipv6Addr;

/// `origin` in normal form (`https://dash.example.com`, `http://127.0.0.1:8080`,
/// `http://[::1]:3000`), or what is wrong with it.
///
/// Only `http` and `https`; no user info, path (not even `/`), query or fragment; the host is
/// a DNS name, an IPv4 address or a bracketed IPv6 address; the port, if any, is 1 to 65535
/// and dropped when it is the scheme's default.
pub(crate) fn normalise_origin(origin: &str) -> Result<String, String> {
    if origin.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("contains whitespace or control characters".to_owned());
    }
    let (scheme, authority) = origin
        .split_once("://")
        .ok_or("expected scheme://host[:port], e.g. https://dash.example.com")?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" => 80,
        "https" => 443,
        _ => return Err(format!("scheme {scheme:?} is not http or https")),
    };
    if authority.contains(['/', '?', '#']) {
        return Err("an origin has no path, query or fragment (not even a trailing `/`)".into());
    }
    if authority.contains('@') {
        return Err("an origin has no user info".into());
    }
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => {
            let (host, after) = v6.split_once(']').ok_or("unterminated `[` in the host")?;
            if host.parse::<Ipv6Addr>().is_err() {
                return Err(format!("[{host}] is not an IPv6 address"));
            }
            let port = match after {
                "" => None,
                _ => Some(after.strip_prefix(':').ok_or("junk after `]`")?),
            };
            (format!("[{}]", host.to_ascii_lowercase()), port)
        }
        None => {
            let (host, port) = match authority.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            };
            let name_ok = |label: &str| {
                !label.is_empty()
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            };
            if host.is_empty() {
                return Err("no host".into());
            }
            if !host.split('.').all(name_ok) {
                return Err(format!("{host:?} is not a host name or IPv4 address"));
            }
            (host.to_ascii_lowercase(), port)
        }
    };
    let port = match port {
        None => None,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 && p.bytes().all(|b| b.is_ascii_digit()) => {
                (n != default_port).then_some(n)
            }
            _ => return Err(format!("port {p:?} is not a number from 1 to 65535")),
        },
    };
    Ok(match port {
        Some(port) => format!("{scheme}://{host}:{port}"),
        None => format!("{scheme}://{host}"),
    })
}
