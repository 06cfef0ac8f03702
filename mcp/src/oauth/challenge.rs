//! The `Bearer` challenge of a `WWW-Authenticate` header (RFC 6750 §3, RFC 9728 §5.1): the
//! parameters an MCP client acts on. Part of [`crate::oauth`]; read by the authorizer on each
//! `401`/`403` the HTTP transports hand it.

/// A header longer than this is not read (its parameters are ignored).
const MAX_HEADER: usize = 8 << 10;

/// What a `Bearer` challenge asks for. Absent parameters are `None`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Challenge {
    /// `resource_metadata`: where the protected resource metadata is (RFC 9728).
    pub resource_metadata: Option<String>,
    /// `scope`: the scopes the request needs, space-separated.
    pub scope: Option<String>,
    /// `error`: `invalid_token`, `insufficient_scope`, …
    pub error: Option<String>,
    /// `error_description`.
    pub error_description: Option<String>,
}

impl Challenge {
    /// The `Bearer` challenge among the header's challenges, if there is one.
    pub fn parse(header: &str) -> Option<Self> {
        if header.len() > MAX_HEADER {
            return None;
        }
        let mut p = Parser { rest: header };
        let mut found = None;
        while let Some(scheme) = p.scheme() {
            let params = p.params();
            if scheme.eq_ignore_ascii_case("bearer") && found.is_none() {
                let mut c = Challenge::default();
                for (name, value) in params {
                    let slot = match name.to_ascii_lowercase().as_str() {
                        "resource_metadata" => &mut c.resource_metadata,
                        "scope" => &mut c.scope,
                        "error" => &mut c.error,
                        "error_description" => &mut c.error_description,
                        _ => continue,
                    };
                    slot.get_or_insert(value);
                }
                found = Some(c);
            }
        }
        found
    }

    /// Whether the server says the token lacks scope (a step-up may help).
    pub fn insufficient_scope(&self) -> bool {
        self.error.as_deref() == Some("insufficient_scope")
    }

    /// The scopes asked for, split.
    pub fn scopes(&self) -> Vec<String> {
        split_scopes(self.scope.as_deref())
    }
}

/// A space-separated scope string as a list, without empty items or repeats.
pub(crate) fn split_scopes(scope: Option<&str>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for s in scope.unwrap_or_default().split_ascii_whitespace() {
        if !out.iter().any(|o| o == s) {
            out.push(s.to_owned());
        }
    }
    out
}

struct Parser<'a> {
    rest: &'a str,
}

impl<'a> Parser<'a> {
    fn skip(&mut self, chars: &[char]) {
        self.rest = self.rest.trim_start_matches(|c: char| chars.contains(&c));
    }

    fn token(&mut self) -> &'a str {
        let end = self
            .rest
            .find(|c: char| c.is_ascii_whitespace() || matches!(c, ',' | '=' | '"'))
            .unwrap_or(self.rest.len());
        let (token, rest) = self.rest.split_at(end);
        self.rest = rest;
        token
    }

    /// The next challenge's scheme.
    fn scheme(&mut self) -> Option<&'a str> {
        loop {
            self.skip(&[' ', '\t', ',']);
            if self.rest.is_empty() {
                return None;
            }
            let token = self.token();
            if !token.is_empty() {
                return Some(token);
            }
            // Not a token start (a stray '=' or '"'): drop one character.
            let mut chars = self.rest.chars();
            chars.next();
            self.rest = chars.as_str();
        }
    }

    /// The `name=value` parameters after a scheme, up to the next scheme.
    fn params(&mut self) -> Vec<(String, String)> {
        let mut params = Vec::new();
        loop {
            self.skip(&[' ', '\t', ',']);
            let save = self.rest;
            let name = self.token();
            let after = self.rest.trim_start_matches([' ', '\t']);
            if name.is_empty() || !after.starts_with('=') {
                self.rest = save; // the next challenge's scheme (or the end)
                return params;
            }
            self.rest = after[1..].trim_start_matches([' ', '\t']);
            let value = if let Some(quoted) = self.rest.strip_prefix('"') {
                let mut value = String::new();
                let mut chars = quoted.char_indices();
                let mut end = quoted.len();
                while let Some((i, c)) = chars.next() {
                    match c {
                        '\\' => {
                            if let Some((_, next)) = chars.next() {
                                value.push(next);
                            }
                        }
                        '"' => {
                            end = i + 1;
                            break;
                        }
                        c => value.push(c),
                    }
                }
                self.rest = &quoted[end.min(quoted.len())..];
                value
            } else {
                self.token().to_owned()
            };
            params.push((name.to_owned(), value));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_bearer_parameters_among_other_challenges() {
        let c = Challenge::parse(
            r#"Basic realm="x", Bearer realm="mcp", scope="mcp:basic mcp:write", resource_metadata="http://h/.well-known/oauth-protected-resource/mcp", error="insufficient_scope", error_description="needs \"write\"""#,
        )
        .unwrap();
        assert_eq!(c.scope.as_deref(), Some("mcp:basic mcp:write"));
        assert_eq!(
            c.resource_metadata.as_deref(),
            Some("http://h/.well-known/oauth-protected-resource/mcp")
        );
        assert!(c.insufficient_scope());
        assert_eq!(c.error_description.as_deref(), Some(r#"needs "write""#));
        assert_eq!(c.scopes(), ["mcp:basic", "mcp:write"]);
    }

    #[test]
    fn token_values_a_bare_scheme_and_garbage() {
        let c = Challenge::parse("bearer error=invalid_token").unwrap();
        assert_eq!(c.error.as_deref(), Some("invalid_token"));
        assert_eq!(Challenge::parse("Bearer").unwrap(), Challenge::default());
        assert_eq!(Challenge::parse("Basic realm=\"x\""), None);
        assert_eq!(Challenge::parse("=\"\"\"==,,"), None);
        let unterminated = Challenge::parse("Bearer scope=\"a b").unwrap();
        assert_eq!(unterminated.scope.as_deref(), Some("a b"));
        assert_eq!(Challenge::parse(&"a".repeat(MAX_HEADER + 1)), None);
    }
}
