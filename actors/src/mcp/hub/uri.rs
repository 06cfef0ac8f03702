//! Resource URIs as Revka's clients see them, and matching a URI against a resource template.
//!
//! Part of the hub ([`super::McpHub`]); pure logic, no state. A resource (or a template's
//! `uriTemplate`) that exactly one server offers is shown to clients as the server wrote it. One
//! that two or more servers offer is shown as `revka://<server>/<original>`: the server's name
//! (config names hold no `/`), a slash, then the original exactly as it was, so stripping the
//! prefix up to the first `/` after the scheme gives it back ([`split_explicit`]). The same
//! form is accepted on `resources/read`, `resources/subscribe` and `completion/complete` for any
//! URI of any server, as an explicit route.
//!
//! [`template_matches`] decides whether a `resources/read` of a URI that no list names can be
//! sent to the server of a template: RFC 6570 templates, matched loosely (literal text must be
//! equal; a `{var}` takes one or more characters other than `/`, `?` and `#`; `{+var}` and
//! `{#var}` take any characters; `{/var}`, `{.var}`, `{;var}`, `{?var}` and `{&var}` take any,
//! possibly none).

/// The scheme of the explicit form.
pub const SCHEME: &str = "revka://";

/// A template with more expressions than this matches nothing (bounds the backtracking).
const MAX_EXPRESSIONS: usize = 16;

/// The explicit form of `uri` of `server`: `revka://<server>/<uri>`.
pub fn explicit(server: &str, uri: &str) -> String {
    format!("{SCHEME}{server}/{uri}")
}

/// The server and original URI of an explicit form, if `uri` is one (`revka://<server>/<rest>`
/// with a non-empty server name).
pub fn split_explicit(uri: &str) -> Option<(&str, &str)> {
    let rest = uri.strip_prefix(SCHEME)?;
    let (server, original) = rest.split_once('/')?;
    (!server.is_empty()).then_some((server, original))
}

/// One piece of a parsed template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part<'a> {
    /// Text that must appear as is.
    Literal(&'a str),
    /// An expression: what it may take.
    Expression {
        /// It may take `/`, `?` and `#` (reserved and fragment expansion, path segments,
        /// queries).
        any: bool,
        /// It may take nothing at all.
        empty: bool,
    },
}

/// The parts of `template`, or `None` when it is not well formed (an unclosed `{`) or has too
/// many expressions.
fn parse(template: &str) -> Option<Vec<Part<'_>>> {
    let mut parts = Vec::new();
    let mut rest = template;
    while !rest.is_empty() {
        match rest.find('{') {
            None => {
                parts.push(Part::Literal(rest));
                break;
            }
            Some(open) => {
                if open > 0 {
                    parts.push(Part::Literal(&rest[..open]));
                }
                let close = open + rest[open..].find('}')?;
                let expression = &rest[open + 1..close];
                let part = match expression.chars().next() {
                    Some('+' | '#') => Part::Expression {
                        any: true,
                        empty: false,
                    },
                    Some('/' | '.' | ';' | '?' | '&') => Part::Expression {
                        any: true,
                        empty: true,
                    },
                    _ => Part::Expression {
                        any: false,
                        empty: false,
                    },
                };
                parts.push(part);
                rest = &rest[close + 1..];
            }
        }
    }
    let expressions = parts
        .iter()
        .filter(|p| matches!(p, Part::Expression { .. }))
        .count();
    (expressions <= MAX_EXPRESSIONS).then_some(parts)
}

/// Whether `uri` is one that `template` can expand to (see the module docs for how loosely).
pub fn template_matches(template: &str, uri: &str) -> bool {
    parse(template).is_some_and(|parts| matches_parts(&parts, uri))
}

fn matches_parts(parts: &[Part<'_>], uri: &str) -> bool {
    let Some((first, rest)) = parts.split_first() else {
        return uri.is_empty();
    };
    match *first {
        Part::Literal(text) => uri
            .strip_prefix(text)
            .is_some_and(|after| matches_parts(rest, after)),
        Part::Expression { any, empty } => {
            // Every end the expression can have, shortest first.
            let limit = if any {
                uri.len()
            } else {
                uri.find(['/', '?', '#']).unwrap_or(uri.len())
            };
            let start = usize::from(!empty);
            (start..=limit)
                .filter(|&end| uri.is_char_boundary(end))
                .any(|end| matches_parts(rest, &uri[end..]))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_explicit_form_is_reversible() {
        for (server, uri) in [
            ("ev", "demo://resource/static/document/a.md"),
            ("fs.main", "file:///tmp/x y"),
            ("a", ""),
            ("a", "revka://b/c"),
        ] {
            let shown = explicit(server, uri);
            assert_eq!(split_explicit(&shown), Some((server, uri)), "{shown}");
        }
        assert_eq!(split_explicit("demo://x"), None);
        assert_eq!(split_explicit("revka://"), None);
        assert_eq!(split_explicit("revka:///x"), None);
        assert_eq!(split_explicit("revka://noslash"), None);
    }

    #[test]
    fn templates_match_literal_text_and_expressions() {
        let t = "demo://resource/dynamic/text/{resourceId}";
        assert!(template_matches(t, "demo://resource/dynamic/text/12"));
        assert!(!template_matches(t, "demo://resource/dynamic/text/"));
        assert!(!template_matches(t, "demo://resource/dynamic/text/1/2"));
        assert!(!template_matches(t, "demo://resource/dynamic/blob/12"));
        let t = "test://template/{id}/data";
        assert!(template_matches(t, "test://template/42/data"));
        assert!(!template_matches(t, "test://template/42/other"));
        assert!(template_matches("file:///{+path}", "file:///a/b/c.txt"));
        assert!(template_matches("db://{table}{?limit}", "db://users"));
        assert!(template_matches(
            "db://{table}{?limit}",
            "db://users?limit=3"
        ));
        assert!(template_matches("x://{a}-{b}", "x://é-ü"));
        assert!(template_matches("plain://exact", "plain://exact"));
        assert!(!template_matches("plain://exact", "plain://exactly"));
        assert!(!template_matches("broken://{x", "broken://{x"));
        // Too many expressions: nothing, rather than a long search.
        let many = "{a}".repeat(MAX_EXPRESSIONS + 1);
        assert!(!template_matches(&many, &"x".repeat(40)));
    }
}
