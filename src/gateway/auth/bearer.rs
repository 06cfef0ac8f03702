//! Where a request carries its token: the `Authorization` header and the WebSocket
//! subprotocol list.
//!
//! Part of the gateway's auth layer; the gateway listener (`root/gateway`) calls these on the
//! raw header values before [`TokenStore::verify`](super::TokenStore::verify). Browsers cannot
//! set headers on a WebSocket handshake, so the dashboard offers the token as a subprotocol
//! `bearer.<token>` (the listener must then echo that subprotocol back) or as `?token=`.

/// The token of an `Authorization: Bearer <token>` header value.
///
/// The scheme is case-insensitive, surrounding whitespace is ignored; `None` for another
/// scheme, an empty token, or a token with whitespace inside.
pub fn extract_bearer(header: &str) -> Option<&str> {
    let header = header.trim();
    let scheme_end = header.find(|c: char| c.is_ascii_whitespace())?;
    let (scheme, rest) = header.split_at(scheme_end);
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    non_empty_token(rest.trim())
}

/// The token of the first `bearer.<token>` entry of a `Sec-WebSocket-Protocol` value (a
/// comma-separated list); the `bearer.` prefix is case-insensitive.
pub fn bearer_from_subprotocols(header: &str) -> Option<&str> {
    const PREFIX: &str = "bearer.";
    header.split(',').map(str::trim).find_map(|protocol| {
        let prefix = protocol.get(..PREFIX.len())?;
        if !prefix.eq_ignore_ascii_case(PREFIX) {
            return None;
        }
        non_empty_token(&protocol[PREFIX.len()..])
    })
}

/// `token` if it is non-empty and has no whitespace.
fn non_empty_token(token: &str) -> Option<&str> {
    (!token.is_empty() && !token.contains(|c: char| c.is_whitespace())).then_some(token)
}
