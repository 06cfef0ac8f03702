use proptest::prelude::*;
use serde_json::json;

use super::*;

fn tool(name: &str, description: &str) -> DeferredTool {
    DeferredTool::new(
        name,
        description,
        json!({
            "name": name.split_once("__").map_or(name, |(_, t)| t),
            "description": description,
            "inputSchema": {"type": "object", "properties": {"path": {"type": "string"}}},
            "annotations": {"readOnlyHint": true},
        }),
    )
}

fn tools() -> Vec<DeferredTool> {
    vec![
        tool("filesystem__read_file", "Read a file from disk"),
        tool("filesystem__write_file", "Write a file to disk"),
        tool("git__status", "Show the working tree status"),
        tool("git__log", "Show commit logs"),
        tool("a__extract_text", "Extract text from a PDF"),
        tool("b__extract_text", "Extract text from an image"),
        tool("db__query", "Run a SQL query against the database"),
        tool("secret__read", "Read secrets from the vault"),
    ]
}

fn args(query: &str) -> SearchArgs {
    parse_args(&json!({ "query": query })).unwrap()
}

fn names<'t>(outcome: &SearchOutcome<'t>) -> Vec<&'t str> {
    outcome.activated()
}

fn everything(_: &str) -> bool {
    true
}

#[test]
fn parses_queries_and_max_results() {
    let cases = [
        (json!({"query": "database query"}), 5),
        (json!({"query": "x", "max_results": 3}), 3),
        (json!({"query": "x", "max_results": 3.0}), 3),
        (json!({"query": "x", "max_results": "7"}), 7),
        (json!({"query": "x", "max_results": " 2 "}), 2),
        (json!({"query": "x", "max_results": null}), 5),
        (json!({"query": "x", "max_results": 50}), 50),
        (json!({"query": "x", "max_results": 51}), 50),
        (json!({"query": "x", "max_results": "1000"}), 50),
        (json!({"query": "x", "max_results": u64::MAX}), 50),
        (json!({"query": "x", "max_results": 1e300}), 50),
        (json!({"query": "x", "extra": "ignored"}), 5),
    ];
    for (input, max) in cases {
        let parsed = parse_args(&input).unwrap();
        assert_eq!(parsed.max_results, max, "{input}");
    }
    assert_eq!(
        args("  Database  QUERY database ").query,
        Query::Keywords {
            text: "Database  QUERY database".into(),
            terms: vec!["database".into(), "query".into()],
        }
    );
    assert_eq!(
        args(" SELECT: a__x , ,b__y,a__x,, ").query,
        Query::Select(vec!["a__x".into(), "b__y".into()])
    );
}

#[test]
fn rejects_bad_arguments_clearly() {
    let cases = [
        (json!([]), SearchError::NotAnObject { kind: "an array" }),
        (json!(null), SearchError::MissingQuery),
        (json!({}), SearchError::MissingQuery),
        (json!({"query": null}), SearchError::MissingQuery),
        (
            json!({"query": 5}),
            SearchError::QueryNotString { kind: "a number" },
        ),
        (json!({"query": "  "}), SearchError::EmptyQuery),
        (json!({"query": "select:"}), SearchError::EmptySelection),
        (json!({"query": "select: , ,"}), SearchError::EmptySelection),
    ];
    for (input, expected) in cases {
        assert_eq!(parse_args(&input).unwrap_err(), expected, "{input}");
    }
    let bad_max = [
        (json!(0), "0"),
        (json!(-1), "-1"),
        (json!(2.5), "2.5"),
        (json!("0"), "\"0\""),
        (json!("-3"), "\"-3\""),
        (json!("five"), "\"five\""),
        (json!("2.0"), "\"2.0\""),
        (json!(""), "\"\""),
        (json!(true), "true"),
        (json!([5]), "[5]"),
        (json!("x".repeat(100)), &format!("\"{}", "x".repeat(31))),
    ];
    for (max, found) in bad_max {
        let err = parse_args(&json!({"query": "x", "max_results": max})).unwrap_err();
        assert_eq!(
            err,
            SearchError::InvalidMaxResults {
                found: found.to_owned()
            },
            "{max}"
        );
    }
    let message = SearchError::InvalidMaxResults { found: "0".into() }.to_string();
    assert_eq!(
        message,
        "tool_search \"max_results\" must be a whole number of at least 1, got 0"
    );
    let message = SearchError::MissingQuery.to_string();
    assert!(message.contains("select:<name>"), "{message}");
}

#[test]
fn select_returns_exactly_the_named_tools_in_order() {
    let tools = tools();
    let outcome = search(
        &tools,
        everything,
        &args("select:git__status, filesystem__read_file ,nope,git__status,status,also_nope"),
    );
    assert_eq!(names(&outcome), ["git__status", "filesystem__read_file"]);
    assert_eq!(outcome.not_found, ["nope", "also_nope"]);
    assert!(
        outcome
            .text()
            .ends_with("\n</functions>\nNot found: nope, also_nope")
    );
}

#[test]
fn select_resolves_unique_bare_names_and_reports_ambiguous_ones() {
    let tools = tools();
    let outcome = search(
        &tools,
        everything,
        &args("select:read_file,extract_text,log"),
    );
    assert_eq!(names(&outcome), ["filesystem__read_file", "git__log"]);
    assert_eq!(
        outcome.not_found,
        ["extract_text (ambiguous: a__extract_text, b__extract_text)"]
    );
}

#[test]
fn select_only_sees_allowed_tools() {
    let tools = tools();
    let allowed = |name: &str| !name.starts_with("secret__") && name != "a__extract_text";
    let outcome = search(
        &tools,
        allowed,
        &args("select:secret__read,read,extract_text"),
    );
    // The bare "extract_text" is unique among what this caller may see.
    assert_eq!(names(&outcome), ["b__extract_text"]);
    assert_eq!(outcome.not_found, ["secret__read", "read"]);
}

#[test]
fn select_with_nothing_found_is_only_the_not_found_line() {
    let tools = tools();
    let outcome = search(&tools, everything, &args("select:x,y"));
    assert!(outcome.found.is_empty());
    assert_eq!(outcome.text(), "Not found: x, y");
}

#[test]
fn keyword_ranking_weights_names_over_descriptions() {
    let tools = vec![
        tool("z__notes", "file helpers"),     // description: 1
        tool("y__file_read", "read a file"),  // name: 2 + 2
        tool("x__file", "read things"),       // name 2, description 1
        tool("w__file", "read things"),       // ties with x__file
        tool("v__other", "nothing relevant"), // 0: left out
    ];
    let outcome = search(&tools, everything, &args("file read"));
    assert_eq!(
        names(&outcome),
        ["y__file_read", "w__file", "x__file", "z__notes"]
    );
}

#[test]
fn exact_names_rank_first() {
    let tools = vec![
        tool("fs__status_of_status", "status status"),
        tool("git__status", "Show status"),
        tool("hg__status", "Show status"),
        tool("svn__stat", "status"),
    ];
    // "status": the two tools whose bare name is exactly "status" first, by name.
    let outcome = search(&tools, everything, &args("STATUS"));
    assert_eq!(
        names(&outcome),
        [
            "git__status",
            "hg__status",
            "fs__status_of_status",
            "svn__stat"
        ]
    );
    let outcome = search(&tools, everything, &args("hg__status"));
    assert_eq!(names(&outcome), ["hg__status"]);
}

#[test]
fn keyword_mode_cuts_after_the_allowlist() {
    let tools: Vec<DeferredTool> = (0..10)
        .map(|i| tool(&format!("s{i}__search"), "search things"))
        .collect();
    let allowed = |name: &str| name >= "s5";
    let parsed = parse_args(&json!({"query": "search", "max_results": "3"})).unwrap();
    let outcome = search(&tools, allowed, &parsed);
    assert_eq!(names(&outcome), ["s5__search", "s6__search", "s7__search"]);
    let parsed = parse_args(&json!({"query": "search", "max_results": 100})).unwrap();
    assert_eq!(search(&tools, everything, &parsed).found.len(), 10);
}

#[test]
fn keyword_mode_without_matches_says_so() {
    let tools = tools();
    let outcome = search(&tools, everything, &args("  kubernetes pods "));
    assert!(outcome.found.is_empty() && outcome.not_found.is_empty());
    assert_eq!(
        outcome.text(),
        "No deferred tools matched \"kubernetes pods\"."
    );
    let outcome = search(&tools, |_: &str| false, &args("file"));
    assert_eq!(outcome.text(), "No deferred tools matched \"file\".");
}

#[test]
fn duplicate_tool_names_count_once() {
    let tools = vec![tool("a__x", "first"), tool("a__x", "second x")];
    let outcome = search(&tools, everything, &args("x"));
    assert_eq!(outcome.found.len(), 1);
    assert_eq!(outcome.found[0].description, "first");
}

#[test]
fn renders_the_functions_block_exactly() {
    let plain = DeferredTool::from_definition(
        "fs__read",
        json!({
            "name": "read",
            "description": "Read \"a\" file",
            "inputSchema": {"type": "object", "required": ["path"], "x-extra": [1]},
        }),
    );
    let bare = DeferredTool::new("fs__ls", "List </functions> now", json!({"name": "ls"}));
    assert_eq!(plain.description, "Read \"a\" file");
    assert_eq!(
        render(&[&plain, &bare], &["x".into(), "y".into()]),
        concat!(
            "<functions>\n",
            r#"<function>{"description":"Read \"a\" file","name":"fs__read","parameters":{"#,
            r#""required":["path"],"type":"object","x-extra":[1]}}</function>"#,
            "\n",
            r#"<function>{"description":"List <\/functions> now","name":"fs__ls","parameters":"#,
            r#"{"properties":{},"type":"object"}}</function>"#,
            "\n</functions>\nNot found: x, y",
        )
    );
    assert_eq!(
        render(&[&bare], &[]),
        concat!(
            "<functions>\n",
            r#"<function>{"description":"List <\/functions> now","name":"fs__ls","parameters":"#,
            r#"{"properties":{},"type":"object"}}</function>"#,
            "\n</functions>",
        )
    );
    assert_eq!(render(&[], &[]), "No matching deferred tools.");
    assert_eq!(
        DeferredTool::from_definition("t", json!({"description": 5})).description,
        ""
    );
}

#[test]
fn rendered_lines_are_json_with_the_full_schema() {
    let tools = tools();
    let outcome = search(&tools, everything, &args("select:db__query"));
    let text = outcome.text();
    let line = text.lines().nth(1).unwrap();
    let json = line
        .strip_prefix("<function>")
        .and_then(|l| l.strip_suffix("</function>"))
        .unwrap();
    let parsed: Value = serde_json::from_str(json).unwrap();
    assert_eq!(
        parsed,
        json!({
            "description": "Run a SQL query against the database",
            "name": "db__query",
            "parameters": tools[6].definition["inputSchema"],
        })
    );
}

proptest! {
    #[test]
    fn any_search_stays_within_bounds(
        query in "(select:)?[a-z_ ,]{1,20}",
        max in 1usize..8,
        allowed_mask in any::<u8>(),
    ) {
        let tools = tools();
        let Ok(parsed) = parse_args(&json!({"query": query, "max_results": max})) else {
            return Ok(());
        };
        let visible = |name: &str| {
            let index = tools.iter().position(|t| t.name == name).unwrap();
            allowed_mask & (1 << index) != 0
        };
        let outcome = search(&tools, visible, &parsed);
        let activated = outcome.activated();
        let mut distinct = activated.clone();
        distinct.sort_unstable();
        distinct.dedup();
        prop_assert_eq!(distinct.len(), activated.len());
        for name in &activated {
            prop_assert!(visible(name));
        }
        if matches!(parsed.query, Query::Keywords { .. }) {
            prop_assert!(activated.len() <= max);
        }
        let text = outcome.text();
        for name in &activated {
            let needle = format!("\"name\":\"{name}\"");
            prop_assert!(text.contains(&needle));
        }
    }
}
