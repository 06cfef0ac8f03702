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
