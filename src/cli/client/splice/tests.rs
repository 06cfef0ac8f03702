//! The splice editor on the shapes config files come in: every edit is checked as exact text,
//! then removed again to give back the original byte for byte.

use super::{Document, Json, SpliceError, new_document};
use crate::cli::client::clients::Format;

fn entry() -> Json {
    Json::Map(vec![
        ("command".to_owned(), Json::Str("/bin/revka".to_owned())),
        (
            "args".to_owned(),
            Json::List(vec!["mcp".into(), "serve".into(), "--stdio".into()]),
        ),
    ])
}

/// Adding `revka` to `path` of `before` gives `after`; adding it again changes nothing;
/// removing it gives `before` back.
fn round_trip(format: Format, path: &[&str], before: &str, after: &str) {
    let doc = Document::parse(before, format).unwrap();
    let added = doc.upsert(path, "revka", &entry()).unwrap();
    assert_eq!(added, after, "after adding:\n{added}");
    let doc = Document::parse(&added, format).expect("the result parses");
    assert_eq!(doc.get(path, "revka"), Some(&entry().to_value()));
    assert_eq!(
        doc.upsert(path, "revka", &entry()).unwrap(),
        after,
        "twice = once"
    );
    let removed = doc.remove(path, "revka").unwrap().expect("it is there");
    assert_eq!(removed, before, "after removing:\n{removed}");
}

#[test]
fn a_member_goes_after_the_last_and_a_line_comment_stays_on_its_line() {
    round_trip(
        Format::Jsonc,
        &["mcpServers"],
        "{\n  \"mcpServers\": {\n    \"a\": {\"command\": \"x\"} // the first\n  },\n  \"other\": 1\n}\n",
        "{\n  \"mcpServers\": {\n    \"a\": {\"command\": \"x\"}, // the first\n    \"revka\": {\n      \"command\": \"/bin/revka\",\n      \"args\": [\"mcp\", \"serve\", \"--stdio\"]\n    }\n  },\n  \"other\": 1\n}\n",
    );
}

#[test]
fn a_file_with_trailing_commas_gets_one_after_the_new_member() {
    round_trip(
        Format::Jsonc,
        &["servers"],
        "{\n    \"servers\": {\n        \"a\": {\n            \"type\": \"stdio\",\n        },\n    },\n}",
        "{\n    \"servers\": {\n        \"a\": {\n            \"type\": \"stdio\",\n        },\n        \"revka\": {\n            \"command\": \"/bin/revka\",\n            \"args\": [\"mcp\", \"serve\", \"--stdio\"]\n        },\n    },\n}",
    );
}

#[test]
fn an_empty_object_opens_up_and_closes_again() {
    round_trip(
        Format::Json,
        &["mcpServers"],
        "{\n  \"mcpServers\": {},\n  \"x\": true\n}\n",
        "{\n  \"mcpServers\": {\n    \"revka\": {\n      \"command\": \"/bin/revka\",\n      \"args\": [\"mcp\", \"serve\", \"--stdio\"]\n    }\n  },\n  \"x\": true\n}\n",
    );
}

#[test]
fn a_missing_container_is_added_to_its_parent() {
    let before = "{\n  \"theme\": \"dark\" /* mine */\n}\n";
    let doc = Document::parse(before, Format::Jsonc).unwrap();
    let added = doc.upsert(&["mcpServers"], "revka", &entry()).unwrap();
    assert_eq!(
        added,
        "{\n  \"theme\": \"dark\", /* mine */\n  \"mcpServers\": {\n    \"revka\": {\n      \"command\": \"/bin/revka\",\n      \"args\": [\"mcp\", \"serve\", \"--stdio\"]\n    }\n  }\n}\n"
    );
    // Removing the entry leaves the (now empty) container: it may have been the user's.
    let removed = Document::parse(&added, Format::Jsonc)
        .unwrap()
        .remove(&["mcpServers"], "revka")
        .unwrap()
        .unwrap();
    assert_eq!(
        removed,
        "{\n  \"theme\": \"dark\", /* mine */\n  \"mcpServers\": {}\n}\n"
    );
    // An empty top-level object.
    let doc = Document::parse("{}", Format::Json).unwrap();
    assert_eq!(
        doc.upsert(&["mcpServers"], "revka", &entry()).unwrap(),
        new_document(&["mcpServers"], "revka", &entry()).trim_end()
    );
}

#[test]
fn nested_paths_are_created_level_by_level() {
    let before = "{\n  \"projects\": {\n    \"/p\": {\n      \"allowedTools\": []\n    }\n  }\n}\n";
    let doc = Document::parse(before, Format::Json).unwrap();
    let path = ["projects", "/p", "mcpServers"];
    let added = doc.upsert(&path, "revka", &entry()).unwrap();
    assert_eq!(
        added,
        "{\n  \"projects\": {\n    \"/p\": {\n      \"allowedTools\": [],\n      \"mcpServers\": {\n        \"revka\": {\n          \"command\": \"/bin/revka\",\n          \"args\": [\"mcp\", \"serve\", \"--stdio\"]\n        }\n      }\n    }\n  }\n}\n"
    );
    let doc = Document::parse(&added, Format::Json).unwrap();
    assert_eq!(doc.get(&path, "revka"), Some(&entry().to_value()));
    assert_eq!(
        doc.remove(&["projects", "/q", "mcpServers"], "revka")
            .unwrap(),
        None
    );
}

#[test]
fn a_replaced_value_keeps_its_key_place_and_neighbours() {
    let before = "{\n  \"mcpServers\": {\n    // ours, outdated\n    \"revka\": {\"command\": \"/old/revka\"},\n    \"b\": {}\n  }\n}\n";
    let doc = Document::parse(before, Format::Jsonc).unwrap();
    assert_eq!(
        doc.upsert(&["mcpServers"], "revka", &entry()).unwrap(),
        "{\n  \"mcpServers\": {\n    // ours, outdated\n    \"revka\": {\n      \"command\": \"/bin/revka\",\n      \"args\": [\"mcp\", \"serve\", \"--stdio\"]\n    },\n    \"b\": {}\n  }\n}\n"
    );
}

#[test]
fn removing_the_first_middle_or_only_member() {
    let remove = |text: &str| {
        Document::parse(text, Format::Jsonc)
            .unwrap()
            .remove(&["s"], "revka")
            .unwrap()
            .unwrap()
    };
    assert_eq!(
        remove("{\"s\": {\n  \"revka\": 1, // ours\n  \"b\": 2\n}}"),
        "{\"s\": {\n  \"b\": 2\n}}"
    );
    assert_eq!(
        remove("{\"s\": {\n  \"a\": 1,\n  \"revka\": {\n    \"x\": [1]\n  },\n  \"b\": 2\n}}"),
        "{\"s\": {\n  \"a\": 1,\n  \"b\": 2\n}}"
    );
    assert_eq!(remove("{\"s\": {\n  \"revka\": 1\n}}"), "{\"s\": {}}");
    // Not on a line of its own: only the member and its comma go.
    assert_eq!(
        remove("{\"s\": {\n  \"a\": 1, \"revka\": 2, \"b\": 3\n}}"),
        "{\"s\": {\n  \"a\": 1, \"b\": 3\n}}"
    );
    assert_eq!(
        remove("{\"s\": {\n  \"a\": 1, \"revka\": 2\n}}"),
        "{\"s\": {\n  \"a\": 1\n}}"
    );
    // A comment that stands between members stays.
    assert_eq!(
        remove("{\"s\": {\n  \"a\": 1,\n  /* keep */\n  \"revka\": 2\n}}"),
        "{\"s\": {\n  \"a\": 1\n  /* keep */\n}}"
    );
    let doc = Document::parse("{\"s\": {\"a\": 1}}", Format::Json).unwrap();
    assert_eq!(
        doc.remove(&["s"], "revka").unwrap(),
        None,
        "nothing to remove"
    );
    assert_eq!(doc.remove(&["t"], "revka").unwrap(), None, "no container");
}

#[test]
fn a_block_comment_after_the_last_member_is_not_split() {
    round_trip(
        Format::Jsonc,
        &["s"],
        "{\"s\": {\n  \"a\": 1 /* one\n  two */\n}}",
        "{\"s\": {\n  \"a\": 1,\n  \"revka\": {\n    \"command\": \"/bin/revka\",\n    \"args\": [\"mcp\", \"serve\", \"--stdio\"]\n  } /* one\n  two */\n}}",
    );
    // A `}` on the last member's line.
    round_trip(
        Format::Json,
        &["s"],
        "{\"s\": {\n  \"a\": 1}}",
        "{\"s\": {\n  \"a\": 1,\n  \"revka\": {\n    \"command\": \"/bin/revka\",\n    \"args\": [\"mcp\", \"serve\", \"--stdio\"]\n  }}}",
    );
}

#[test]
fn crlf_files_get_crlf_lines() {
    round_trip(
        Format::Json,
        &["mcpServers"],
        "{\r\n  \"mcpServers\": {\r\n    \"a\": {}\r\n  }\r\n}\r\n",
        "{\r\n  \"mcpServers\": {\r\n    \"a\": {},\r\n    \"revka\": {\r\n      \"command\": \"/bin/revka\",\r\n      \"args\": [\"mcp\", \"serve\", \"--stdio\"]\r\n    }\r\n  }\r\n}\r\n",
    );
    round_trip(
        Format::Json,
        &["mcpServers"],
        "{\r\n  \"mcpServers\": {}\r\n}",
        "{\r\n  \"mcpServers\": {\r\n    \"revka\": {\r\n      \"command\": \"/bin/revka\",\r\n      \"args\": [\"mcp\", \"serve\", \"--stdio\"]\r\n    }\r\n  }\r\n}",
    );
}

#[test]
fn a_line_comment_before_a_crlf_keeps_its_line_ending() {
    round_trip(
        Format::Jsonc,
        &["s"],
        "{\r\n  \"s\": {\r\n    \"a\": 1 // one\r\n  }\r\n}\r\n",
        "{\r\n  \"s\": {\r\n    \"a\": 1, // one\r\n    \"revka\": {\r\n      \"command\": \"/bin/revka\",\r\n      \"args\": [\"mcp\", \"serve\", \"--stdio\"]\r\n    }\r\n  }\r\n}\r\n",
    );
}

#[test]
fn a_trailing_comma_right_before_the_closing_brace() {
    round_trip(
        Format::Jsonc,
        &["s"],
        "{\"s\": {\"a\": {\n  \"x\": 1\n},}}",
        // At the indentation of the line the last member's key is on.
        "{\"s\": {\"a\": {\n  \"x\": 1\n},\n\"revka\": {\n  \"command\": \"/bin/revka\",\n  \"args\": [\"mcp\", \"serve\", \"--stdio\"]\n},}}",
    );
}

#[test]
fn tab_indented_files_get_tabs() {
    round_trip(
        Format::Jsonc,
        &["servers"],
        "{\n\t\"servers\": {\n\t\t\"a\": {}\n\t}\n}\n",
        "{\n\t\"servers\": {\n\t\t\"a\": {},\n\t\t\"revka\": {\n\t\t\t\"command\": \"/bin/revka\",\n\t\t\t\"args\": [\"mcp\", \"serve\", \"--stdio\"]\n\t\t}\n\t}\n}\n",
    );
}

#[test]
fn one_line_objects_and_minified_files_stay_on_one_line() {
    round_trip(
        Format::Json,
        &["mcpServers"],
        "{\n  \"mcpServers\": { \"a\": {} },\n  \"b\": 1\n}\n",
        "{\n  \"mcpServers\": { \"a\": {}, \"revka\": {\"command\": \"/bin/revka\", \"args\": [\"mcp\", \"serve\", \"--stdio\"]} },\n  \"b\": 1\n}\n",
    );
    round_trip(
        Format::Json,
        &["mcpServers"],
        "{\"mcpServers\":{\"a\":{}},\"b\":1}",
        "{\"mcpServers\":{\"a\":{},\"revka\":{\"command\":\"/bin/revka\",\"args\":[\"mcp\",\"serve\",\"--stdio\"]}},\"b\":1}",
    );
    let doc = Document::parse("{\"b\":1}", Format::Json).unwrap();
    assert_eq!(
        doc.upsert(&["mcpServers"], "revka", &entry()).unwrap(),
        "{\"b\":1,\"mcpServers\":{\"revka\":{\"command\":\"/bin/revka\",\"args\":[\"mcp\",\"serve\",\"--stdio\"]}}}"
    );
}

#[test]
fn comments_before_inside_and_after_are_kept() {
    round_trip(
        Format::Jsonc,
        &["servers"],
        "// user settings ☕\n{\n  /* servers */ \"servers\": { // none yet\n  },\n  \"x\": \"//not a comment\" // end\n}\n// bye\n",
        "// user settings ☕\n{\n  /* servers */ \"servers\": { // none yet\n    \"revka\": {\n      \"command\": \"/bin/revka\",\n      \"args\": [\"mcp\", \"serve\", \"--stdio\"]\n    }\n  },\n  \"x\": \"//not a comment\" // end\n}\n// bye\n",
    );
}

#[test]
fn a_byte_order_mark_is_kept() {
    round_trip(
        Format::Json,
        &["s"],
        "\u{feff}{\n  \"s\": {}\n}\n",
        "\u{feff}{\n  \"s\": {\n    \"revka\": {\n      \"command\": \"/bin/revka\",\n      \"args\": [\"mcp\", \"serve\", \"--stdio\"]\n    }\n  }\n}\n",
    );
}

#[test]
fn strange_values_escape_and_keys_are_matched_unescaped() {
    let value = Json::Map(vec![(
        "command".to_owned(),
        Json::Str("/opt/my \"tools\"/revka\\bin".to_owned()),
    )]);
    let doc = Document::parse("{\"mcp\\u0053ervers\": {}}", Format::Json).unwrap();
    let added = doc.upsert(&["mcpServers"], "revka", &value).unwrap();
    // A file on one line is edited on one line, without spaces.
    assert!(
        added.contains(r#""command":"/opt/my \"tools\"/revka\\bin""#),
        "{added}"
    );
    assert!(
        added.starts_with("{\"mcp\\u0053ervers\": {"),
        "the key as written: {added}"
    );
}

#[test]
fn what_cannot_be_edited_is_refused_with_the_reason() {
    let err = |text: &str, format: Format| {
        match Document::parse(text, format) {
            Ok(doc) => doc.upsert(&["mcpServers"], "revka", &entry()).unwrap_err(),
            Err(e) => e,
        }
        .to_string()
    };
    let comment = "{\n  // no\n  \"mcpServers\": {}\n}";
    let message = err(comment, Format::Json);
    assert!(message.starts_with("not valid JSON: "), "{message}");
    assert!(message.contains("line 2 column"), "{message}");
    assert!(
        Document::parse(comment, Format::Jsonc).is_ok(),
        "JSONC allows it"
    );
    let bad = err("{\"mcpServers\": {\"a\" 1}}", Format::Jsonc);
    assert!(bad.starts_with("not valid JSON with comments: "), "{bad}");
    assert_eq!(
        err("[1]", Format::Json),
        "the top level is not a JSON object"
    );
    assert_eq!(
        err("{\"mcpServers\": []}", Format::Json),
        "`mcpServers` is not a JSON object"
    );
    assert_eq!(
        err("{\"mcpServers\": {}, \"mcpServers\": {}}", Format::Json),
        "`mcpServers` appears more than once; remove the duplicate by hand"
    );
    let twice = "{\"mcpServers\": {\"revka\": 1, \"revka\": 2}}";
    let doc = Document::parse(twice, Format::Json).unwrap();
    assert!(matches!(
        doc.remove(&["mcpServers"], "revka"),
        Err(SpliceError::Duplicate(_))
    ));
}

#[test]
fn a_new_file_is_two_space_json() {
    assert_eq!(
        new_document(&["mcpServers"], "revka", &entry()),
        "{\n  \"mcpServers\": {\n    \"revka\": {\n      \"command\": \"/bin/revka\",\n      \"args\": [\"mcp\", \"serve\", \"--stdio\"]\n    }\n  }\n}\n"
    );
}

/// Writes random JSON(C) documents in random styles, for [`random_documents_round_trip`].
struct Gen {
    rng: fastrand::Rng,
    jsonc: bool,
    unit: &'static str,
    nl: &'static str,
}

impl Gen {
    fn string(&mut self) -> String {
        const PIECES: [&str; 8] = ["a", "revka", "//", "/*", "*/", "\\\"", "{,}", "é☕"];
        let n = self.rng.usize(0..4);
        let s: String = (0..n)
            .map(|_| PIECES[self.rng.usize(..PIECES.len())])
            .collect();
        format!("\"{s}\"")
    }

    fn comment(&mut self, line_ok: bool) -> String {
        if !self.jsonc || self.rng.u8(..4) != 0 {
            return String::new();
        }
        if line_ok && self.rng.bool() {
            format!(" // note {}{}", self.rng.u8(..), "☕")
        } else {
            " /* note, } */".to_owned()
        }
    }

    fn value(&mut self, depth: usize, indent: &str) -> String {
        match self.rng.u8(..if depth > 3 { 4 } else { 6 }) {
            0 => self.rng.i32(..).to_string(),
            1 => self.string(),
            2 => ["true", "false", "null"][self.rng.usize(..3)].to_owned(),
            3 => {
                let items: Vec<String> = (0..self.rng.usize(0..3)).map(|_| self.string()).collect();
                format!("[{}]", items.join(", "))
            }
            _ => {
                let n = self.rng.usize(0..4);
                let members: Vec<(String, String)> = (0..n)
                    .map(|i| (format!("\"k{i}\""), String::new()))
                    .collect();
                self.object(members, depth + 1, indent)
            }
        }
    }

    /// An object of `members` (key, value; an empty value is drawn at random).
    fn object(&mut self, members: Vec<(String, String)>, depth: usize, indent: &str) -> String {
        let one_line = self.rng.u8(..4) == 0;
        let inner = format!("{indent}{}", self.unit);
        let mut out = String::from("{");
        let n = members.len();
        for (i, (key, value)) in members.into_iter().enumerate() {
            let value = if value.is_empty() {
                self.value(depth, &inner)
            } else {
                value
            };
            let last = i + 1 == n;
            let comma = if !last || (self.jsonc && self.rng.u8(..3) == 0) {
                ","
            } else {
                ""
            };
            if one_line {
                let c = self.comment(false);
                out.push_str(&format!(
                    "{}{key}: {value}{comma}{c}",
                    if i == 0 { "" } else { " " }
                ));
            } else {
                let c = self.comment(true);
                out.push_str(&format!("{}{inner}{key}: {value}{comma}{c}", self.nl));
            }
        }
        if !one_line && n > 0 {
            out.push_str(&format!("{}{indent}", self.nl));
        }
        out.push('}');
        out
    }
}

/// Random documents in random styles (indentation, line endings, one-line objects, comments,
/// trailing commas, the servers object missing, empty or full): adding the entry changes
/// nothing else, adding it again changes nothing, and removing it gives back the original,
/// byte for byte when the servers object had members.
#[test]
fn random_documents_round_trip() {
    let mut rng = fastrand::Rng::with_seed(0x0072_6576_6b61);
    for round in 0..1000 {
        let mut g = Gen {
            jsonc: rng.bool(),
            unit: ["  ", "    ", "\t"][rng.usize(..3)],
            nl: if rng.u8(..4) == 0 { "\r\n" } else { "\n" },
            rng: fastrand::Rng::with_seed(rng.u64(..)),
        };
        let servers = g.rng.u8(..3);
        let mut members: Vec<(String, String)> = (0..g.rng.usize(0..4))
            .map(|i| (format!("\"top{i}\""), String::new()))
            .collect();
        if servers > 0 {
            let inner: Vec<(String, String)> =
                (0..if servers == 1 { 0 } else { g.rng.usize(1..4) })
                    .map(|i| (format!("\"s{i}\""), String::new()))
                    .collect();
            let unit = g.unit;
            let servers_object = g.object(inner, 1, unit);
            let at = g.rng.usize(..=members.len());
            members.insert(at, ("\"mcpServers\"".to_owned(), servers_object));
        }
        let lead = g.comment(true);
        let root = g.object(members, 0, "");
        let text = format!("{lead}{nl}{root}{nl}", nl = g.nl);
        let format = if g.jsonc { Format::Jsonc } else { Format::Json };
        let context = format!("round {round}:\n{text}");

        let doc = Document::parse(&text, format).unwrap_or_else(|e| panic!("{e}\n{context}"));
        let mut expected = doc.value.clone();
        if expected.get("mcpServers").is_none() {
            expected["mcpServers"] = serde_json::json!({});
        }
        assert_eq!(
            doc.remove(&["mcpServers"], "revka").unwrap(),
            None,
            "{context}"
        );
        let added = doc.upsert(&["mcpServers"], "revka", &entry()).unwrap();
        let context = format!("{context}\n--- added:\n{added}");
        let after = Document::parse(&added, format).unwrap_or_else(|e| panic!("{e}\n{context}"));
        let mut without = after.value.clone();
        assert_eq!(
            without["mcpServers"]
                .as_object_mut()
                .unwrap()
                .remove("revka"),
            Some(entry().to_value()),
            "{context}"
        );
        assert_eq!(without, expected, "nothing else changed\n{context}");
        assert_eq!(
            after.upsert(&["mcpServers"], "revka", &entry()).unwrap(),
            added,
            "twice = once\n{context}"
        );
        let removed = after.remove(&["mcpServers"], "revka").unwrap().unwrap();
        let context = format!("{context}\n--- removed:\n{removed}");
        let back = Document::parse(&removed, format).unwrap_or_else(|e| panic!("{e}\n{context}"));
        assert_eq!(back.value, expected, "{context}");
        if servers == 2 {
            assert_eq!(removed, text, "byte for byte\n{context}");
        }
    }
}
