//! Adding, replacing and removing one member of a JSON or JSONC file by splicing its text,
//! so everything else stays byte for byte: comments, key order, indentation, line endings,
//! trailing commas and the final newline.
//!
//! Part of `revka client` ([`super`]). A [`Document`] is the original text, the same text
//! with comments blanked, and with trailing commas blanked too ([`crate::cli::jsonc`]: every
//! byte offset is unchanged), plus the spans of its objects and members ([`parse`]); new
//! values are rendered in the file's own style ([`render`]). An edit is a few replacements of
//! byte ranges of the original:
//!
//! - a new member goes after the last one, on its own line at the last one's indentation,
//!   rendered in the file's indentation unit and line ending; the comma goes where the file
//!   puts them (after the previous member, or trailing when the file ends its objects with
//!   one), and a comment at the end of the previous member's line stays on that line;
//! - a replaced member keeps its key and position, only its value changes;
//! - a removed member takes its own lines (and the comma it brought), so removing what was
//!   added gives back the original text;
//! - an object written on one line gets the member on that line, compact;
//! - a missing container object (`"mcpServers"`) is added as a member of its parent.
//!
//! Only a file that is empty or new is written whole (two-space indentation).

use super::clients::Format;

mod parse;
mod render;
#[cfg(test)]
mod tests;

use parse::{Member, Object};
pub(super) use render::{Json, new_document};
use render::{Style, compact, indent_unit, pretty, quote};

/// Why a JSON file cannot be edited.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpliceError {
    /// The text is not valid JSON (or JSONC, for a client that allows comments).
    #[error("not valid {format}: {source}")]
    Syntax {
        /// `JSON` or `JSON with comments`.
        format: &'static str,
        /// serde_json's message, with line and column.
        #[source]
        source: serde_json::Error,
    },
    /// A value on the way to the entry is not an object (the top level, or `mcpServers`).
    #[error("{0} is not a JSON object")]
    NotAnObject(String),
    /// A key on the way to the entry, or the entry itself, is written twice: which one the
    /// client uses is not certain, so neither is touched.
    #[error("`{0}` appears more than once; remove the duplicate by hand")]
    Duplicate(String),
}

/// One replacement of a byte range of the original text.
#[derive(Debug)]
struct Edit {
    start: usize,
    end: usize,
    with: String,
}

/// A parsed JSON or JSONC text, ready to splice.
#[derive(Debug)]
pub(super) struct Document<'t> {
    /// The file as read.
    text: &'t str,
    /// `text` with comments blanked: a comma here outside `plain`'s is a trailing comma.
    uncommented: String,
    /// `text` with comments and trailing commas blanked: plain JSON, same offsets.
    plain: String,
    /// The top-level object.
    root: Object,
    /// The whole document, for reading entries.
    value: serde_json::Value,
    style: Style,
}

impl<'t> Document<'t> {
    /// Parses `text` (not empty: see [`new_document`]) as `format` ([`Format::Json`] refuses
    /// comments and trailing commas, [`Format::Jsonc`] allows them) and requires an object at
    /// the top.
    pub(super) fn parse(text: &'t str, format: Format) -> Result<Self, SpliceError> {
        let mut uncommented = crate::cli::jsonc::blank_comments(text);
        let mut plain = crate::cli::jsonc::strip(text);
        // A byte-order mark is kept in the text and read as whitespace.
        if text.starts_with('\u{feff}') {
            let bom = '\u{feff}'.len_utf8();
            uncommented.replace_range(..bom, &" ".repeat(bom));
            plain.replace_range(..bom, &" ".repeat(bom));
        }
        let (checked, name) = match format {
            Format::Json => (text.trim_start_matches('\u{feff}'), "JSON"),
            _ => (plain.as_str(), "JSON with comments"),
        };
        let value: serde_json::Value =
            serde_json::from_str(checked).map_err(|source| SpliceError::Syntax {
                format: name,
                source,
            })?;
        let root = parse::document(&plain)
            .ok()
            .and_then(|v| v.object)
            .ok_or_else(|| SpliceError::NotAnObject("the top level".to_owned()))?;
        let style = Style {
            nl: if text.contains("\r\n") { "\r\n" } else { "\n" },
            unit: indent_unit(&plain),
            // One line holding members; a bare `{}` is a new file, not a minified one.
            minified: !text.trim_end().contains('\n') && !root.members.is_empty(),
        };
        Ok(Self {
            text,
            uncommented,
            plain,
            root,
            value,
            style,
        })
    }

    /// The value at `path` then `key`, when there is one.
    pub(super) fn get(&self, path: &[&str], key: &str) -> Option<&serde_json::Value> {
        let mut value = &self.value;
        for name in path {
            value = value.get(name)?;
        }
        value.get(key)
    }

    /// The text with `key` set to `value` in the object at `path` (each missing object on
    /// the way added).
    pub(super) fn upsert(
        &self,
        path: &[&str],
        key: &str,
        value: &Json,
    ) -> Result<String, SpliceError> {
        let mut object = &self.root;
        for (depth, name) in path.iter().enumerate() {
            match find(object, name)? {
                Some((_, member)) => object = nested(member, &path[..=depth])?,
                None => {
                    let mut missing = Json::Map(vec![(key.to_owned(), value.clone())]);
                    for outer in path[depth + 1..].iter().rev() {
                        missing = Json::Map(vec![((*outer).to_owned(), missing)]);
                    }
                    return Ok(self.apply(self.insert(object, name, &missing)));
                }
            }
        }
        let edits = match find(object, key)? {
            Some((_, member)) => vec![self.replace(object, member, value)],
            None => self.insert(object, key, value),
        };
        Ok(self.apply(edits))
    }

    /// The text without `key` in the object at `path`; `None` when it is not there.
    pub(super) fn remove(&self, path: &[&str], key: &str) -> Result<Option<String>, SpliceError> {
        let mut object = &self.root;
        for (depth, name) in path.iter().enumerate() {
            match find(object, name)? {
                Some((_, member)) => object = nested(member, &path[..=depth])?,
                None => return Ok(None),
            }
        }
        match find(object, key)? {
            Some((index, _)) => Ok(Some(self.apply(self.cut(object, index)))),
            None => Ok(None),
        }
    }

    /// Applies non-overlapping edits, listed in text order, to the original text (from the
    /// end, so offsets stay valid; of two insertions at one offset, the first listed comes
    /// first).
    fn apply(&self, mut edits: Vec<Edit>) -> String {
        edits.reverse();
        edits.sort_by_key(|e| std::cmp::Reverse(e.start));
        let mut out = self.text.to_owned();
        for edit in edits {
            out.replace_range(edit.start..edit.end, &edit.with);
        }
        out
    }

    /// Whether `object` is written on one line.
    fn one_line(&self, object: &Object) -> bool {
        !self.text[object.open..object.close].contains('\n')
    }

    /// `"key": value` rendered for a member indented by `indent`.
    fn member(&self, key: &str, value: &Json, indent: &str) -> String {
        let colon = if self.style.minified { ":" } else { ": " };
        let value = if self.style.minified {
            compact(value, true)
        } else {
            pretty(value, indent, &self.style)
        };
        format!("{}{colon}{value}", quote(key))
    }

    /// Replaces a member's value, keeping its key and place.
    fn replace(&self, object: &Object, member: &Member, value: &Json) -> Edit {
        let with = if self.one_line(object) || self.style.minified {
            compact(value, self.style.minified)
        } else {
            pretty(value, line_indent(self.text, member.key_start), &self.style)
        };
        Edit {
            start: member.value.start,
            end: member.value.end,
            with,
        }
    }

    /// Adds `key` after the last member of `object`.
    fn insert(&self, object: &Object, key: &str, value: &Json) -> Vec<Edit> {
        let nl = self.style.nl;
        let at = |pos: usize, with: String| Edit {
            start: pos,
            end: pos,
            with,
        };
        let Some(last) = object.members.last() else {
            let outer = line_indent(self.text, object.open);
            let indent = format!("{outer}{}", self.style.unit);
            let member = self.member(key, value, &indent);
            let inner = &self.text[object.open + 1..object.close];
            if self.style.minified {
                return vec![at(object.open + 1, member)];
            }
            if inner.trim().is_empty() {
                return vec![Edit {
                    start: object.open + 1,
                    end: object.close,
                    with: format!("{nl}{indent}{member}{nl}{outer}"),
                }];
            }
            // Only comments inside: the member goes after the `{` line's comment.
            let pos = self.line_end(object.open + 1, object.close);
            let pos = pos.unwrap_or(object.open + 1);
            return vec![at(pos, format!("{nl}{indent}{member}"))];
        };
        if self.one_line(object) || self.style.minified {
            let tight = self.style.minified;
            let (colon, sep) = if tight { (":", ",") } else { (": ", ", ") };
            let member = format!("{}{colon}{}", quote(key), compact(value, tight));
            return vec![at(last.value.end, format!("{sep}{member}"))];
        }
        let indent = line_indent(self.text, last.key_start);
        let member = self.member(key, value, indent);
        match self.trailing_comma(last.value.end, object.close) {
            // The file ends its objects with a comma: so does the new last member.
            Some(comma) => {
                let pos = self.line_end(comma + 1, object.close).unwrap_or(comma + 1);
                vec![at(pos, format!("{nl}{indent}{member},"))]
            }
            None => match self.line_end(last.value.end, object.close) {
                Some(pos) => vec![
                    at(last.value.end, ",".to_owned()),
                    at(pos, format!("{nl}{indent}{member}")),
                ],
                None => vec![at(last.value.end, format!(",{nl}{indent}{member}"))],
            },
        }
    }

    /// Removes member `index` of `object` with its comma (and its lines, when it has them to
    /// itself).
    fn cut(&self, object: &Object, index: usize) -> Vec<Edit> {
        let member = &object.members[index];
        let next = object.members.get(index + 1);
        let prev = index.checked_sub(1).map(|i| &object.members[i]);
        let remove = |start: usize, end: usize| Edit {
            start,
            end,
            with: String::new(),
        };
        if self.one_line(object) || self.style.minified {
            return vec![match (prev, next) {
                (_, Some(next)) => remove(member.key_start, next.key_start),
                (Some(prev), None) => remove(prev.value.end, member.value.end),
                (None, None) => remove(member.key_start, member.value.end),
            }];
        }
        let trailing = self.trailing_comma(member.value.end, object.close);
        let mut end = match next {
            Some(_) => self
                .comma_after(member.value.end)
                .map_or(member.value.end, |c| c + 1),
            None => trailing.map_or(member.value.end, |c| c + 1),
        };
        let line_start = line_start(self.text, member.key_start);
        let own_line = self.text[line_start..member.key_start].trim().is_empty();
        let line_end = self.line_end(end, object.close).filter(|_| own_line);
        let mut start = match line_end {
            Some(pos) => {
                end = pos
                    + if self.text[pos..].starts_with("\r\n") {
                        2
                    } else {
                        1
                    };
                line_start
            }
            // Something follows on the line: a member after this one keeps its place on it...
            None if next.is_some() => {
                end +=
                    self.text[end..].len() - self.text[end..].trim_start_matches([' ', '\t']).len();
                member.key_start
            }
            // ...and the last one, alone at the start of its line before the `}`, goes with
            // the line break before it.
            None if own_line && line_start > 0 => {
                let crlf = self.text[..line_start].ends_with("\r\n");
                line_start - if crlf { 2 } else { 1 }
            }
            None => member.key_start,
        };
        let mut edits = Vec::new();
        // The last member without a trailing comma: the comma before it was its own.
        if let (None, None, Some(prev)) = (next, trailing, prev)
            && let Some(comma) = self.comma_after(prev.value.end)
        {
            if line_end.is_some() {
                edits.push(remove(comma, comma + 1));
            } else {
                start = comma;
            }
        }
        // An object left empty is written `{}`.
        if object.members.len() == 1 {
            let before = &self.text[object.open + 1..start];
            let after = &self.text[end..object.close];
            if before.trim().is_empty() && after.trim().is_empty() {
                start = object.open + 1;
                end = object.close;
            }
        }
        edits.push(remove(start, end));
        edits
    }

    /// The real comma after `pos` (whitespace and comments between), if the next thing is one.
    fn comma_after(&self, pos: usize) -> Option<usize> {
        let rest = &self.plain[pos..];
        let skipped = rest.len() - rest.trim_start().len();
        (rest[skipped..].starts_with(',')).then_some(pos + skipped)
    }

    /// The trailing comma between a last member's value at `pos` and its object's `}`.
    fn trailing_comma(&self, pos: usize, close: usize) -> Option<usize> {
        self.uncommented[pos..close].find(',').map(|i| pos + i)
    }

    /// Where the line after `pos` ends (its `\r\n` or `\n`), when nothing but whitespace and
    /// comments follow `pos` on it, it ends before `limit`, and the line break is not inside a
    /// block comment.
    fn line_end(&self, pos: usize, limit: usize) -> Option<usize> {
        let newline = pos + self.uncommented[pos..limit].find('\n')?;
        // Read `\r` from the original: in a line comment it was blanked with the comment.
        let end = if newline > pos && self.text.as_bytes()[newline - 1] == b'\r' {
            newline - 1
        } else {
            newline
        };
        if !self.uncommented[pos..end].trim().is_empty()
            || !ends_outside_comment(&self.text[pos..newline])
        {
            return None;
        }
        Some(end)
    }
}

/// The member named `key`, with its index; an error when there are several.
fn find<'o>(object: &'o Object, key: &str) -> Result<Option<(usize, &'o Member)>, SpliceError> {
    let mut found = object
        .members
        .iter()
        .enumerate()
        .filter(|(_, m)| m.key == key);
    let first = found.next();
    if found.next().is_some() {
        return Err(SpliceError::Duplicate(key.to_owned()));
    }
    Ok(first)
}

/// The object a member holds, or which key is not one.
fn nested<'o>(member: &'o Member, path: &[&str]) -> Result<&'o Object, SpliceError> {
    member
        .value
        .object
        .as_ref()
        .ok_or_else(|| SpliceError::NotAnObject(format!("`{}`", path.join("."))))
}

/// Whether a run of whitespace and comments ends outside a block comment.
fn ends_outside_comment(text: &str) -> bool {
    let mut rest = text;
    loop {
        match (rest.find("//"), rest.find("/*")) {
            (Some(line), block) if block.is_none_or(|b| line < b) => return true,
            (_, Some(block)) => match rest[block + 2..].find("*/") {
                Some(close) => rest = &rest[block + 2 + close + 2..],
                None => return false,
            },
            _ => return true,
        }
    }
}

/// The offset of the start of the line holding `pos`.
fn line_start(text: &str, pos: usize) -> usize {
    text[..pos].rfind('\n').map_or(0, |i| i + 1)
}

/// The indentation of the line holding `pos`.
fn line_indent(text: &str, pos: usize) -> &str {
    let line = &text[line_start(text, pos)..];
    &line[..line.len() - line.trim_start_matches([' ', '\t']).len()]
}
