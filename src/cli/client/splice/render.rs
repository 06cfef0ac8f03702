//! Values as the splice editor writes them, in the file's own style.
//!
//! Part of the splice editor ([`super`]): [`Json`] is what is written (objects in the order
//! given, unlike serde_json's sorted maps), [`Style`] what the file does (line ending,
//! indentation unit, minified or not), and [`pretty`] / [`compact`] turn one into text.

/// A value as it is written: objects keep the order given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(in crate::cli::client) enum Json {
    /// A string.
    Str(String),
    /// An array of strings.
    List(Vec<String>),
    /// An object, in this order.
    Map(Vec<(String, Json)>),
}

#[cfg(test)]
impl Json {
    /// The same value as serde_json's (for comparing with what a file holds).
    pub(in crate::cli::client) fn to_value(&self) -> serde_json::Value {
        match self {
            Json::Str(s) => s.as_str().into(),
            Json::List(items) => items.iter().map(String::as_str).collect(),
            Json::Map(members) => members
                .iter()
                .map(|(k, v)| (k.clone(), v.to_value()))
                .collect::<serde_json::Map<_, _>>()
                .into(),
        }
    }
}

/// How the file writes what it writes.
#[derive(Debug)]
pub(super) struct Style {
    /// `\r\n` when the file uses it, else `\n`.
    pub(super) nl: &'static str,
    /// One level of indentation: a tab, or the file's smallest indentation in spaces.
    pub(super) unit: String,
    /// The whole file, with members, is on one line: added values are compact, without
    /// spaces.
    pub(super) minified: bool,
}

/// The file for a new or empty one: `{ path…: { key: value } }`, two-space indented.
pub(in crate::cli::client) fn new_document(path: &[&str], key: &str, value: &Json) -> String {
    let mut doc = Json::Map(vec![(key.to_owned(), value.clone())]);
    for name in path.iter().rev() {
        doc = Json::Map(vec![((*name).to_owned(), doc)]);
    }
    let style = Style {
        nl: "\n",
        unit: "  ".to_owned(),
        minified: false,
    };
    format!("{}\n", pretty(&doc, "", &style))
}

/// A tab when the file indents with tabs, else its smallest indentation in spaces (two when
/// nothing is indented).
pub(super) fn indent_unit(plain: &str) -> String {
    let mut smallest: Option<usize> = None;
    for line in plain.lines() {
        let content = line.trim_start_matches([' ', '\t']);
        if content.trim().is_empty() {
            continue;
        }
        let indent = &line[..line.len() - content.len()];
        if indent.starts_with('\t') {
            return "\t".to_owned();
        }
        if !indent.is_empty() {
            smallest = Some(smallest.map_or(indent.len(), |s| s.min(indent.len())));
        }
    }
    " ".repeat(smallest.unwrap_or(2))
}

/// A JSON string literal.
pub(super) fn quote(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

/// `value` on several lines, its inner lines indented one unit more than `indent` (the
/// indentation of the line it starts on). Arrays of strings stay on one line.
pub(super) fn pretty(value: &Json, indent: &str, style: &Style) -> String {
    match value {
        Json::Map(members) if !members.is_empty() => {
            let inner = format!("{indent}{}", style.unit);
            let lines: Vec<String> = members
                .iter()
                .map(|(k, v)| format!("{inner}{}: {}", quote(k), pretty(v, &inner, style)))
                .collect();
            let nl = style.nl;
            format!("{{{nl}{}{nl}{indent}}}", lines.join(&format!(",{nl}")))
        }
        other => compact(other, false),
    }
}

/// `value` on one line: `{"a": ["b", "c"]}`, or without spaces when `tight`.
pub(super) fn compact(value: &Json, tight: bool) -> String {
    let (colon, comma) = if tight { (":", ",") } else { (": ", ", ") };
    match value {
        Json::Str(s) => quote(s),
        Json::List(items) => {
            let items: Vec<String> = items.iter().map(|s| quote(s)).collect();
            format!("[{}]", items.join(comma))
        }
        Json::Map(members) => {
            let members: Vec<String> = members
                .iter()
                .map(|(k, v)| format!("{}{colon}{}", quote(k), compact(v, tight)))
                .collect();
            format!("{{{}}}", members.join(comma))
        }
    }
}
