//! Where a request carries its token: the `Authorization` header and the WebSocket
//! subprotocol list.
//!
//! Part of the shared HTTP plumbing ([`crate::http`]): the gateway listener (`root/gateway`)
//! calls these on the raw header values before [`TokenStore::verify_caller`], and the MCP
//! server (`root/mcp_http`) takes the session or client token of every `/mcp` request with
//! [`extract_bearer_bytes`]. Browsers cannot set headers on a WebSocket handshake, so the
//! dashboard offers the token as a subprotocol `bearer.<token>` next to the fixed subprotocol
//! the listener selects (so the token is never echoed back), or as `?token=`.
//!
//! [`TokenStore::verify_caller`]: crate::auth::TokenStore::verify_caller

#[cfg(test)]
mod tests;

/// The token of an `Authorization: Bearer <token>` header value.
///
/// The scheme is case-insensitive, surrounding whitespace is ignored; `None` for another
/// scheme, an empty token, or a token with whitespace or a byte that is not visible ASCII.
pub fn extract_bearer(header: &str) -> Option<&str> {
    extract_bearer_bytes(header.as_bytes())
}

/// [`extract_bearer`] on a raw header value (`HeaderValue::as_bytes`): the hot path of every
/// MCP request, so it works on bytes, with no UTF-8 or Unicode-whitespace pass.
pub fn extract_bearer_bytes(header: &[u8]) -> Option<&str> {
    let header = header.trim_ascii();
    let scheme_end = header.iter().position(u8::is_ascii_whitespace)?;
    let (scheme, rest) = header.split_at(scheme_end);
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return None;
    }
    let token = rest.trim_ascii_start();
    if token.is_empty() || !token.iter().all(u8::is_ascii_graphic) {
        return None;
    }
    // Visible ASCII only: always UTF-8.
    std::str::from_utf8(token).ok()
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
