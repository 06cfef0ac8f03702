//! A small hand-written URL resolver, used by the HTTP transports of the MCP connection actors
//! (`root/mcp_servers/mcp:<name>`): enough of RFC 3986 to resolve the legacy SSE `endpoint`
//! event and discovery documents against their own URL, and to compare origins.
//!
//! Only absolute `http`/`https` URLs of the form `scheme://authority[/path][?query]` are
//! accepted as bases and results; fragments are dropped (they are never sent over HTTP).
//! References may be absolute, scheme-relative (`//host/p`), absolute paths (`/p`), relative
//! paths (`p`, `../p`), query-only (`?q`) or empty; dot segments are removed as in RFC 3986
//! §5.2.4. Percent-encoding is left as is.

/// An absolute `http`/`https` URL split into its parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Parts {
    /// `http` or `https`, lowercased.
    pub(crate) scheme: String,
    /// `[userinfo@]host[:port]`, as written.
    pub(crate) authority: String,
    /// Starts with `/`; `/` when the URL has no path.
    pub(crate) path: String,
    /// The query without its `?`, if any.
    pub(crate) query: Option<String>,
}

impl std::fmt::Display for Parts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}{}", self.scheme, self.authority, self.path)?;
        if let Some(q) = &self.query {
            write!(f, "?{q}")?;
        }
        Ok(())
    }
}

fn is_scheme(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

fn split_query(s: &str) -> (&str, Option<&str>) {
    match s.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (s, None),
    }
}

fn strip_fragment(s: &str) -> &str {
    s.split_once('#').map_or(s, |(before, _)| before)
}

/// Parses an absolute `http`/`https` URL.
pub(crate) fn parse(url: &str) -> Result<Parts, String> {
    let url = url.trim();
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("`{url}` contains whitespace or control characters"));
    }
    let (scheme, rest) = url
        .split_once("://")
        .filter(|(s, _)| is_scheme(s))
        .ok_or_else(|| format!("`{url}` is not an absolute URL"))?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return Err(format!(
            "unsupported scheme `{scheme}` in `{url}` (expected http or https)"
        ));
    }
    let rest = strip_fragment(rest);
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..end];
    if authority
        .rsplit_once('@')
        .map_or(authority, |(_, h)| h)
        .is_empty()
    {
        return Err(format!("`{url}` has no host"));
    }
    let (path, query) = split_query(&rest[end..]);
    Ok(Parts {
        scheme,
        authority: authority.to_owned(),
        path: if path.is_empty() {
            "/".into()
        } else {
            path.into()
        },
        query: query.map(str::to_owned),
    })
}

/// Resolves `reference` against the absolute URL `base` (RFC 3986 §5.2).
pub(crate) fn resolve(base: &str, reference: &str) -> Result<String, String> {
    let base = parse(base)?;
    let reference = reference.trim();
    if reference
        .chars()
        .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(format!(
            "`{reference}` contains whitespace or control characters"
        ));
    }
    let reference = strip_fragment(reference);
    let scheme_end = reference.find([':', '/', '?']);
    if scheme_end.is_some_and(|i| reference[i..].starts_with(':') && is_scheme(&reference[..i])) {
        return parse(reference).map(|p| p.to_string());
    }
    if let Some(rest) = reference.strip_prefix("//") {
        return parse(&format!("{}://{rest}", base.scheme)).map(|p| p.to_string());
    }
    let (ref_path, ref_query) = split_query(reference);
    let (path, query) = if ref_path.is_empty() {
        let query = ref_query.map(str::to_owned).or(base.query);
        (base.path, query)
    } else if ref_path.starts_with('/') {
        (remove_dot_segments(ref_path), ref_query.map(str::to_owned))
    } else {
        let dir = &base.path[..=base.path.rfind('/').unwrap_or(0)];
        let merged = format!("{dir}{ref_path}");
        (remove_dot_segments(&merged), ref_query.map(str::to_owned))
    };
    Ok(Parts {
        path,
        query,
        ..base
    }
    .to_string())
}

/// Removes `.` and `..` segments from an absolute path (RFC 3986 §5.2.4).
fn remove_dot_segments(path: &str) -> String {
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let mut out: Vec<&str> = Vec::with_capacity(segments.len());
    for (i, segment) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        match *segment {
            "." => {}
            ".." => {
                out.pop();
            }
            s => {
                out.push(s);
                continue;
            }
        }
        if last {
            out.push(""); // `/a/b/..` is the directory `/a/`
        }
    }
    format!("/{}", out.join("/"))
}

/// `scheme://host:port`, with the host lowercased, userinfo dropped and the default port
/// filled in, so equal origins compare equal.
pub(crate) fn origin(url: &str) -> Result<String, String> {
    let parts = parse(url)?;
    let host_port = parts
        .authority
        .rsplit_once('@')
        .map_or(parts.authority.as_str(), |(_, h)| h);
    let (host, port) = match host_port.rfind(':') {
        // A colon inside `[…]` belongs to an IPv6 address, not to the port.
        Some(i) if !host_port[i..].contains(']') => (&host_port[..i], &host_port[i + 1..]),
        _ => (host_port, ""),
    };
    let port: u16 = if port.is_empty() {
        if parts.scheme == "https" { 443 } else { 80 }
    } else {
        port.parse()
            .map_err(|_| format!("invalid port `{port}` in `{url}`"))?
    };
    Ok(format!(
        "{}://{}:{port}",
        parts.scheme,
        host.to_ascii_lowercase()
    ))
}

/// Whether two URLs have the same origin (invalid URLs never do).
pub(crate) fn same_origin(a: &str, b: &str) -> bool {
    matches!((origin(a), origin(b)), (Ok(a), Ok(b)) if a == b)
}
