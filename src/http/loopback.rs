//! The loopback `Host`/`Origin` checks against DNS rebinding, shared by both listeners.
//!
//! Part of the shared HTTP plumbing ([`crate::http`]). A browser tricked into resolving
//! `evil.example` to 127.0.0.1 still sends `Host: evil.example` and
//! `Origin: http://evil.example`, so on a loopback bind every request must name a loopback
//! host. The MCP server (`root/mcp_http`) runs `check_loopback` on every request (its guard
//! answers 403): a present `Origin` must be a loopback origin; on a public bind
//! (`[mcp_server] allow_public_bind`), where clients name the machine as they reach it, any
//! `Host` is taken, and a present `Origin` must still be a loopback one: no web page elsewhere
//! may call the endpoint. The gateway (`root/gateway`) asks `is_loopback_host` of `Host` on a
//! loopback bind and holds `Origin` to its own origin instead.

use axum::http::{HeaderMap, header};

/// Whether `host` (a `Host` header value: name or IP, optional port) is a loopback name.
pub(crate) fn is_loopback_host(host: &str) -> bool {
    let host = host.trim();
    let name = if let Some(rest) = host.strip_prefix('[') {
        // [::1]:port
        match rest.split_once(']') {
            Some((name, tail)) if tail.is_empty() || tail.starts_with(':') => name,
            _ => return false,
        }
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name,
            Some(_) => return false,
            None => host,
        }
    };
    // The two spellings nearly every client sends, before the general IP parse.
    name == "127.0.0.1"
        || name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Whether `origin` (an `Origin` header value) is `http(s)://<loopback>[:port]`.
pub(crate) fn is_loopback_origin(origin: &str) -> bool {
    let rest = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    match rest {
        Some(authority) if !authority.contains('/') && !authority.contains('@') => {
            is_loopback_host(authority)
        }
        _ => false,
    }
}

/// What the guard asks of a request's `Host`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hosts {
    /// A loopback name: the server is bound to a loopback address.
    Loopback,
    /// Any (present) `Host`: the server is bound to a public address.
    Any,
}

/// Checks `Host` and `Origin` of a request; `Err` is the reason to refuse it.
pub(crate) fn check_loopback(headers: &HeaderMap, hosts: Hosts) -> Result<(), String> {
    // `from_utf8`, not `to_str`: a non-ASCII byte fails the loopback test below either way.
    let host = headers
        .get(header::HOST)
        .and_then(|h| std::str::from_utf8(h.as_bytes()).ok());
    match host {
        Some(h) if hosts == Hosts::Any || is_loopback_host(h) => {}
        Some(h) => return Err(format!("Host {h:?} is not a loopback name")),
        None => return Err("missing Host header".into()),
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        if !is_loopback_origin(origin) {
            return Err(format!("Origin {origin:?} is not a loopback origin"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts_and_origins() {
        for ok in [
            "127.0.0.1",
            "127.0.0.1:8080",
            "localhost",
            "LOCALHOST:1",
            "[::1]",
            "[::1]:9",
            "127.1.2.3:5",
        ] {
            assert!(is_loopback_host(ok), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:80",
            "10.0.0.1",
            "[::2]:1",
            "localhost.evil.com",
            "127.0.0.1:x",
            "[::1]x",
            "",
        ] {
            assert!(!is_loopback_host(bad), "{bad}");
        }
        for ok in [
            "http://localhost:3000",
            "https://127.0.0.1",
            "http://[::1]:5",
        ] {
            assert!(is_loopback_origin(ok), "{ok}");
        }
        for bad in [
            "null",
            "http://evil.example",
            "file://",
            "http://localhost@evil.com",
            "http://localhost/x",
            "localhost",
        ] {
            assert!(!is_loopback_origin(bad), "{bad}");
        }
    }

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.insert(name, value.parse().unwrap());
        }
        headers
    }

    /// On a public bind clients name the machine as they reach it: any `Host` passes, but no
    /// web page from elsewhere may call the endpoint.
    #[test]
    fn a_public_bind_takes_any_host_but_only_loopback_origins() {
        let lan = headers(&[(header::HOST, "192.168.1.5:8765")]);
        assert!(check_loopback(&lan, Hosts::Any).is_ok());
        assert_eq!(
            check_loopback(&lan, Hosts::Loopback).unwrap_err(),
            "Host \"192.168.1.5:8765\" is not a loopback name"
        );
        let page = headers(&[
            (header::HOST, "192.168.1.5:8765"),
            (header::ORIGIN, "http://192.168.1.5:8765"),
        ]);
        assert!(check_loopback(&page, Hosts::Any).is_err());
        let local = headers(&[
            (header::HOST, "192.168.1.5:8765"),
            (header::ORIGIN, "http://localhost:3000"),
        ]);
        assert!(check_loopback(&local, Hosts::Any).is_ok());
        assert!(
            check_loopback(&HeaderMap::new(), Hosts::Any).is_err(),
            "a Host is needed"
        );
    }
}
