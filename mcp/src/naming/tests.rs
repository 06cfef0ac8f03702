use proptest::prelude::*;

use super::*;

#[test]
fn sanitises_to_the_allowed_alphabet() {
    let cases = [
        ("filesystem", "read_file", "filesystem__read_file"),
        ("remote-tools", "do-it", "remote-tools__do-it"),
        ("a.b", "c", "a_b__c"),
        ("srv", "tool name/with:stuff", "srv__tool_name_with_stuff"),
        ("srv", "é€😀", "srv_____"),
        ("srv", "", "srv__"),
        ("", "tool", "__tool"),
        ("Srv09", "AZaz09_-", "Srv09__AZaz09_-"),
    ];
    for (server, tool, expected) in cases {
        assert_eq!(exposed_name(server, tool), expected, "{server:?} {tool:?}");
    }
}

#[test]
fn sixty_four_characters_are_kept_as_is() {
    let tool = "t".repeat(64 - "srv__".len());
    let name = exposed_name("srv", &tool);
    assert_eq!(name.len(), 64);
    assert_eq!(name, format!("srv__{tool}"));
}

#[test]
fn longer_names_are_cut_with_a_hash_to_exactly_64() {
    let tool = "t".repeat(60);
    let name = exposed_name("srv", &tool);
    assert_eq!(name.len(), MAX_NAME_LEN);
    let (head, hash) = name.split_at(55);
    assert_eq!(head, format!("srv__{}", "t".repeat(50)));
    assert!(hash.starts_with('_'));
    assert!(
        hash[1..]
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
    );
    assert_eq!(hash.len(), 9);
}

#[test]
fn the_hash_is_fnv1a_of_the_unsanitised_original() {
    // FNV-1a 64 reference values.
    assert_eq!(fnv1a64(&[b""]), 0xcbf2_9ce4_8422_2325);
    assert_eq!(fnv1a64(&[b"a"]), 0xaf63_dc4c_8601_ec8c);
    assert_eq!(fnv1a64(&[b"foo", b"bar"]), fnv1a64(&[b"foobar"]));
    let tool = "x".repeat(70);
    let hash = fnv1a64(&[format!("srv__{tool}").as_bytes()]);
    let folded = ((hash >> 32) ^ (hash & 0xffff_ffff)) as u32;
    assert!(exposed_name("srv", &tool).ends_with(&format!("_{folded:08x}")));
}

#[test]
fn hashed_names_are_stable() {
    // Pinned (computed independently): these must never change between releases or platforms.
    let tool = "a".repeat(70);
    assert_eq!(
        exposed_name("srv", &tool),
        format!("srv__{}_a5ceb777", "a".repeat(50))
    );
    let tool = format!("é{}", "t".repeat(70));
    assert_eq!(
        exposed_name("fs", &tool),
        format!("fs___{}_d352f9c8", "t".repeat(50))
    );
}

#[test]
fn originals_that_sanitise_alike_get_different_hashes() {
    let a = exposed_name("srv", &format!("{}.x", "t".repeat(60)));
    let b = exposed_name("srv", &format!("{}_x", "t".repeat(60)));
    assert_eq!(a.len(), 64);
    assert_eq!(a[..55], b[..55]);
    assert_ne!(a, b);
}

#[test]
fn validates_server_names() {
    let good = [
        "filesystem",
        "remote-tools",
        "a.b",
        "A-9_z",
        "x",
        &"s".repeat(64),
    ];
    for name in good {
        assert_eq!(validate_server_name(name), Ok(()), "{name:?}");
    }
    assert_eq!(validate_server_name(""), Err(NameError::Empty));
    assert!(matches!(
        validate_server_name(&"s".repeat(65)),
        Err(NameError::TooLong { len: 65, .. })
    ));
    assert!(matches!(
        validate_server_name("my server"),
        Err(NameError::InvalidChar {
            found: ' ',
            index: 2,
            ..
        })
    ));
    assert!(matches!(
        validate_server_name("sérvér"),
        Err(NameError::InvalidChar {
            found: 'é',
            index: 1,
            ..
        })
    ));
    for name in ["a__b", "a._b", "a_.b", "a..b", "__a"] {
        assert!(
            matches!(
                validate_server_name(name),
                Err(NameError::DoubleUnderscore { .. })
            ),
            "{name:?}"
        );
    }
    for name in ["a_", "a."] {
        assert!(
            matches!(
                validate_server_name(name),
                Err(NameError::TrailingUnderscore { .. })
            ),
            "{name:?}"
        );
    }
}

#[test]
fn name_errors_explain_themselves() {
    let message = validate_server_name("a__b").unwrap_err().to_string();
    assert!(
        message.contains("\"a__b\"") && message.contains("__"),
        "{message}"
    );
    let message = validate_server_name("a b").unwrap_err().to_string();
    assert!(
        message.contains("' '") && message.contains("allowed"),
        "{message}"
    );
    let message = validate_server_name(&"s".repeat(70))
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("70") && message.contains("64"),
        "{message}"
    );
}

#[test]
fn tool_names_reports_collisions_in_sorted_order() {
    // Given out of order: the sorted first of each colliding group keeps the name.
    let names = ToolNames::build([
        ("a_b", "x"),
        ("fs", "read"),
        ("a.b", "x"),
        ("a-b", "x"),
        ("fs", "read"),
        ("fs", "re.ad"),
        ("fs", "re_ad"),
    ]);
    let pair = |s: &str, t: &str| (s.to_owned(), t.to_owned());
    assert_eq!(
        names.collisions(),
        [
            Collision {
                exposed: "a_b__x".into(),
                kept: pair("a.b", "x"),
                dropped: pair("a_b", "x"),
            },
            Collision {
                exposed: "fs__re_ad".into(),
                kept: pair("fs", "re.ad"),
                dropped: pair("fs", "re_ad"),
            },
        ]
    );
    assert_eq!(
        names.names().collect::<Vec<_>>(),
        ["a-b__x", "a_b__x", "fs__re_ad", "fs__read"]
    );
    assert_eq!(names.len(), 4);
    assert_eq!(names.original("a_b__x"), Some(("a.b", "x")));
    assert_eq!(names.exposed("a.b", "x"), Some("a_b__x"));
    assert_eq!(
        names.exposed("a_b", "x"),
        None,
        "the dropped pair has no name"
    );
    assert_eq!(names.exposed("nope", "x"), None);
    assert_eq!(names.iter().next(), Some(("a-b__x", ("a-b", "x"))));
}

#[test]
fn tool_names_of_nothing_is_empty() {
    let names = ToolNames::build(Vec::<(String, String)>::new());
    assert!(names.is_empty());
    assert!(names.collisions().is_empty());
}

#[test]
fn resolves_exact_unique_ambiguous_and_missing_names() {
    let names = [
        "fs__read_file",
        "git__status",
        "a__extract_text",
        "b__extract_text",
        "x__y__z",
    ];
    let resolve = |name: &str| resolve_bare(name, names.iter().copied());
    assert_eq!(
        resolve("fs__read_file"),
        Resolution::Exact("fs__read_file".into())
    );
    assert_eq!(
        resolve("read_file"),
        Resolution::Unique("fs__read_file".into())
    );
    assert_eq!(resolve("status"), Resolution::Unique("git__status".into()));
    assert_eq!(
        resolve("extract_text"),
        Resolution::Ambiguous(vec!["a__extract_text".into(), "b__extract_text".into()])
    );
    assert_eq!(resolve("y__z"), Resolution::Unique("x__y__z".into()));
    assert_eq!(
        resolve("z"),
        Resolution::NotFound,
        "only the part after the first __"
    );
    assert_eq!(
        resolve("file"),
        Resolution::NotFound,
        "suffixes are whole tool names"
    );
    assert_eq!(resolve("missing"), Resolution::NotFound);
    assert_eq!(resolve(""), Resolution::NotFound);
    assert_eq!(resolve_bare("x", std::iter::empty()), Resolution::NotFound);
}

#[test]
fn exact_beats_a_bare_match() {
    // "status" is both an exposed name and the bare suffix of another.
    let names = ["git__status", "status"];
    assert_eq!(
        resolve_bare("status", names.iter().copied()),
        Resolution::Exact("status".into())
    );
}

#[test]
fn duplicate_candidates_are_not_ambiguous() {
    let names = ["fs__read", "fs__read"];
    assert_eq!(
        resolve_bare("read", names.iter().copied()),
        Resolution::Unique("fs__read".into())
    );
}

proptest! {
    #[test]
    fn exposed_names_are_valid_bounded_and_deterministic(server in ".{0,40}", tool in ".{0,80}") {
        let name = exposed_name(&server, &tool);
        prop_assert!(!name.is_empty());
        prop_assert!(name.len() <= MAX_NAME_LEN);
        prop_assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'));
        prop_assert_eq!(&name, &exposed_name(&server, &tool));
        let unhashed = server.chars().count() + 2 + tool.chars().count();
        prop_assert_eq!(name.len(), unhashed.min(MAX_NAME_LEN));
    }

    #[test]
    fn valid_server_names_split_back(
        server in "[A-Za-z0-9-]{1,8}([._][A-Za-z0-9-]{1,8}){0,3}",
        tool in "[A-Za-z0-9_-]{0,20}",
    ) {
        prop_assert_eq!(validate_server_name(&server), Ok(()));
        let name = exposed_name(&server, &tool);
        let (head, tail) = name.split_once(SEPARATOR).unwrap();
        prop_assert_eq!(head, server.replace('.', "_"));
        prop_assert_eq!(bare_suffix(&name), Some(tail));
        prop_assert_eq!(tail, tool);
    }

    #[test]
    fn every_pair_is_named_or_reported(
        pairs in proptest::collection::vec(("[ab._-]{1,3}", "[xy._-]{1,3}"), 0..20),
    ) {
        let names = ToolNames::build(pairs.clone());
        let mut distinct = pairs.clone();
        distinct.sort();
        distinct.dedup();
        prop_assert_eq!(names.len() + names.collisions().len(), distinct.len());
        for (server, tool) in &distinct {
            let exposed = exposed_name(server, tool);
            let owner = names.original(&exposed).unwrap();
            if owner != (server.as_str(), tool.as_str()) {
                let dropped = (server.clone(), tool.clone());
                let collision = names.collisions().iter().find(|c| c.dropped == dropped).unwrap();
                prop_assert_eq!(&collision.exposed, &exposed);
                prop_assert!(collision.kept < dropped);
            }
        }
        let mut reversed = pairs;
        reversed.reverse();
        let rebuilt = ToolNames::build(reversed);
        prop_assert_eq!(rebuilt.collisions(), names.collisions());
    }
}

/// A federated Revka's tools arrive already named `<server>__<tool>` and are prefixed again:
/// `far__fault__echo`. The name stays as is within 64 characters, is hashed (and routed back to
/// the far's name) beyond, and its bare suffix is the far's own name.
#[test]
fn a_federated_double_prefix_is_kept_bounded_and_routed_back() {
    assert_eq!(exposed_name("far", "fault__echo"), "far__fault__echo");
    assert_eq!(bare_suffix("far__fault__echo"), Some("fault__echo"));
    assert_eq!(
        resolve_bare("fault__echo", ["far__fault__echo", "near__echo"]),
        Resolution::Unique("far__fault__echo".into())
    );
    assert_eq!(
        resolve_bare("echo", ["far__fault__echo"]),
        Resolution::NotFound
    );

    let long = format!("kumiho-memory__{}", "t".repeat(50));
    let names = ToolNames::build([("far", long.as_str()), ("far", "fault__echo")]);
    let exposed = names.exposed("far", &long).unwrap().to_owned();
    assert_eq!(exposed.len(), MAX_NAME_LEN);
    assert!(exposed.starts_with("far__kumiho-memory__t"), "{exposed}");
    assert_eq!(names.original(&exposed), Some(("far", long.as_str())));
    assert_eq!(
        names.original("far__fault__echo"),
        Some(("far", "fault__echo"))
    );
    assert!(names.collisions().is_empty());
}
