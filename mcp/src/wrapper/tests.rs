use proptest::prelude::*;
use serde_json::json;
use serde_json::value::RawValue;

use super::*;

fn prepare(schema: Value, args: Value) -> Value {
    prepare_arguments(&schema, args).unwrap()
}

/// Coerces `{"v": value}` against a schema whose property `v` is `property`.
fn coerce_property(property: Value, value: Value) -> Value {
    let schema = json!({"type": "object", "properties": {"v": property}});
    prepare(schema, json!({ "v": value }))["v"].take()
}

#[test]
fn coerces_primitive_strings_to_the_declared_type() {
    let cases = [
        // (declared type, input, expected)
        (json!("integer"), json!("5"), json!(5)),
        (json!("integer"), json!(" -12 "), json!(-12)),
        (json!("integer"), json!("+7"), json!(7)),
        (
            json!("integer"),
            json!("18446744073709551615"),
            json!(u64::MAX),
        ),
        (json!("integer"), json!("5.5"), json!("5.5")),
        (json!("integer"), json!("5.0"), json!("5.0")),
        (json!("integer"), json!("5e0"), json!("5e0")),
        (json!("integer"), json!("0x10"), json!("0x10")),
        (
            json!("integer"),
            json!("99999999999999999999"),
            json!("99999999999999999999"),
        ),
        (json!("integer"), json!(""), json!("")),
        (json!("number"), json!("2.5"), json!(2.5)),
        (json!("number"), json!("5"), json!(5)),
        (json!("number"), json!("-1e3"), json!(-1000.0)),
        (json!("number"), json!("NaN"), json!("NaN")),
        (json!("number"), json!("inf"), json!("inf")),
        (json!("number"), json!("five"), json!("five")),
        (json!("boolean"), json!("true"), json!(true)),
        (json!("boolean"), json!("FALSE"), json!(false)),
        (json!("boolean"), json!(" True "), json!(true)),
        (json!("boolean"), json!("1"), json!("1")),
        (json!("boolean"), json!("yes"), json!("yes")),
        (json!("null"), json!("null"), json!(null)),
        (json!("array"), json!("[1, \"a\"]"), json!([1, "a"])),
        (json!("array"), json!("[1,"), json!("[1,")),
        (json!("array"), json!("{\"a\":1}"), json!("{\"a\":1}")),
        (json!("object"), json!("{\"a\": 1}"), json!({"a": 1})),
        (json!("object"), json!("[1]"), json!("[1]")),
        (json!("object"), json!("\"x\""), json!("\"x\"")),
        (json!("string"), json!("5"), json!("5")),
    ];
    for (ty, input, expected) in cases {
        let got = coerce_property(json!({ "type": ty }), input.clone());
        assert_eq!(got, expected, "type {ty}, input {input}");
    }
}

#[test]
fn values_of_the_right_type_and_non_strings_are_untouched() {
    let cases = [
        (json!("integer"), json!(5)),
        (json!("integer"), json!(5.0)),
        (json!("integer"), json!(true)),
        (json!("number"), json!(5)),
        (json!("string"), json!(5)),
        (json!("string"), json!(null)),
        (json!("boolean"), json!(1)),
        (json!("array"), json!({"a": 1})),
        (json!("object"), json!([1])),
        (json!("garbage"), json!("5")),
        (json!(17), json!("5")),
    ];
    for (ty, input) in cases {
        let got = coerce_property(json!({ "type": ty }), input.clone());
        assert_eq!(got, input, "type {ty}");
    }
    assert_eq!(coerce_property(json!({}), json!("5")), json!("5"));
    assert_eq!(coerce_property(json!(true), json!("5")), json!("5"));
}

#[test]
fn nullable_and_multi_type_lists() {
    let cases = [
        (json!(["integer", "null"]), json!("5"), json!(5)),
        (json!(["integer", "null"]), json!("null"), json!(null)),
        (json!(["integer", "null"]), json!("x"), json!("x")),
        (json!(["string", "null"]), json!("null"), json!("null")),
        (json!(["string", "integer"]), json!("5"), json!("5")),
        (json!(["boolean", "array"]), json!("[true]"), json!([true])),
        (json!(["boolean", 3, "bogus"]), json!("false"), json!(false)),
    ];
    for (ty, input, expected) in cases {
        let got = coerce_property(json!({ "type": ty }), input.clone());
        assert_eq!(got, expected, "type {ty}, input {input}");
    }
}

#[test]
fn types_implied_without_type() {
    assert_eq!(
        coerce_property(json!({"enum": [1, 2, 3]}), json!("2")),
        json!(2)
    );
    assert_eq!(
        coerce_property(json!({"const": true}), json!("true")),
        json!(true)
    );
    assert_eq!(
        coerce_property(json!({"enum": ["1", 2]}), json!("2")),
        json!("2")
    );
    assert_eq!(
        coerce_property(
            json!({"properties": {"n": {"type": "integer"}}}),
            json!("{\"n\":\"1\"}")
        ),
        json!({"n": 1})
    );
    assert_eq!(
        coerce_property(json!({"items": {"type": "integer"}}), json!("[\"1\"]")),
        json!([1])
    );
}

#[test]
fn coerces_nested_objects_and_parsed_values_recursively() {
    let schema = json!({
        "type": "object",
        "properties": {
            "outer": {
                "type": "object",
                "properties": {
                    "count": {"type": "integer"},
                    "flags": {"type": "array", "items": {"type": "boolean"}},
                },
            },
            "name": {"type": "string"},
        },
    });
    let args = json!({
        "outer": {"count": "3", "flags": ["true", "false", "maybe"], "extra": "7"},
        "name": "42",
        "unknown": "1",
    });
    let expected = json!({
        "outer": {"count": 3, "flags": [true, false, "maybe"], "extra": "7"},
        "name": "42",
        "unknown": "1",
    });
    assert_eq!(prepare(schema.clone(), args), expected);
    // The same, with the nested object itself string-encoded.
    let args = json!({"outer": "{\"count\": \"3\", \"flags\": \"[\\\"true\\\"]\"}"});
    assert_eq!(
        prepare(schema, args),
        json!({"outer": {"count": 3, "flags": [true]}})
    );
}

#[test]
fn additional_properties_apply_to_other_members() {
    let schema = json!({
        "type": "object",
        "properties": {"s": {"type": "string"}},
        "additionalProperties": {"type": "number"},
    });
    assert_eq!(
        prepare(schema, json!({"s": "1", "a": "1.5", "b": "x"})),
        json!({"s": "1", "a": 1.5, "b": "x"})
    );
    let closed = json!({"type": "object", "additionalProperties": false});
    assert_eq!(prepare(closed, json!({"a": "1"})), json!({"a": "1"}));
}

#[test]
fn coerces_array_items_and_tuples() {
    let items = json!({"type": "array", "items": {"type": "integer"}});
    assert_eq!(
        coerce_property(items, json!(["1", 2, "x"])),
        json!([1, 2, "x"])
    );

    let tuple = json!({
        "type": "array",
        "prefixItems": [{"type": "integer"}, {"type": "boolean"}],
        "items": {"type": "number"},
    });
    assert_eq!(
        coerce_property(tuple.clone(), json!(["1", "true", "2.5", "3"])),
        json!([1, true, 2.5, 3])
    );
    assert_eq!(coerce_property(tuple, json!("[\"1\"]")), json!([1]));

    let old_tuple = json!({
        "type": "array",
        "items": [{"type": "boolean"}, {"type": "integer"}],
        "additionalItems": {"type": "null"},
    });
    assert_eq!(
        coerce_property(old_tuple, json!(["false", "4", "null", "x"])),
        json!([false, 4, null, "x"])
    );
    let prefix_only = json!({"prefixItems": [{"type": "integer"}]});
    assert_eq!(
        coerce_property(prefix_only, json!(["1", "2"])),
        json!([1, "2"])
    );
}

#[test]
fn any_of_and_one_of_pick_the_right_branch() {
    let cases = [
        // A value that fits a branch is left alone.
        (
            json!([{"type": "string"}, {"type": "integer"}]),
            json!("5"),
            json!("5"),
        ),
        (
            json!([{"type": "integer"}, {"type": "string"}]),
            json!("5"),
            json!("5"),
        ),
        (
            json!([{"type": "integer"}, {"type": "boolean"}]),
            json!(7),
            json!(7),
        ),
        // Otherwise the first branch that converts the string.
        (
            json!([{"type": "boolean"}, {"type": "integer"}]),
            json!("5"),
            json!(5),
        ),
        (
            json!([{"type": "integer"}, {"type": "boolean"}]),
            json!("true"),
            json!(true),
        ),
        (
            json!([{"type": "integer"}, {"type": "null"}]),
            json!("null"),
            json!(null),
        ),
        (
            json!([{"type": "number"}, {"type": "integer"}]),
            json!("2"),
            json!(2),
        ),
        (
            json!([{"type": "integer"}, {"type": "boolean"}]),
            json!("x"),
            json!("x"),
        ),
        // An unconstrained branch accepts anything.
        (
            json!([{"description": "any"}, {"type": "integer"}]),
            json!("5"),
            json!("5"),
        ),
        // Nested alternatives count as one branch.
        (
            json!([{"anyOf": [{"type": "integer"}, {"type": "null"}]}]),
            json!("3"),
            json!(3),
        ),
        (
            json!([{"anyOf": [{"type": "string"}]}, {"type": "integer"}]),
            json!("3"),
            json!("3"),
        ),
        // Garbage branches are skipped.
        (json!([7, null, {"type": "integer"}]), json!("3"), json!(3)),
    ];
    for (branches, input, expected) in cases {
        for key in ["anyOf", "oneOf"] {
            let got = coerce_property(json!({ key: branches.clone() }), input.clone());
            assert_eq!(got, expected, "{key} {branches}, input {input}");
        }
    }
    assert_eq!(coerce_property(json!({"anyOf": 5}), json!("5")), json!("5"));
}

#[test]
fn any_of_reaches_into_the_fitting_object_branch() {
    let property = json!({"anyOf": [
        {"type": "null"},
        {"type": "object", "properties": {"n": {"type": "integer"}}},
    ]});
    assert_eq!(
        coerce_property(property.clone(), json!({"n": "1"})),
        json!({"n": 1})
    );
    assert_eq!(
        coerce_property(property.clone(), json!("{\"n\":\"2\"}")),
        json!({"n": 2})
    );
    assert_eq!(coerce_property(property, json!("null")), json!(null));
}

#[test]
fn all_of_applies_every_branch() {
    let property = json!({"allOf": [
        {"properties": {"a": {"type": "integer"}}},
        {"properties": {"b": {"type": "boolean"}}},
    ]});
    assert_eq!(
        coerce_property(property, json!({"a": "1", "b": "true"})),
        json!({"a": 1, "b": true})
    );
}

#[test]
fn follows_local_refs() {
    let schema = json!({
        "type": "object",
        "properties": {
            "a": {"$ref": "#/$defs/count"},
            "b": {"$ref": "#/definitions/point"},
            "c": {"type": "array", "items": {"$ref": "#/$defs/count"}},
            "d": {"$ref": "#/$defs/a~1b"},
            "e": {"$ref": "https://example.com/schema"},
            "f": {"$ref": "#/$defs/missing"},
            "g": {"$ref": 5},
            "h": {"anyOf": [{"$ref": "#/$defs/count"}, {"type": "null"}]},
        },
        "$defs": {"count": {"type": "integer"}, "a/b": {"type": "boolean"}},
        "definitions": {"point": {"type": "object", "properties": {"x": {"type": "number"}}}},
    });
    let args = json!({
        "a": "1", "b": "{\"x\": \"1.5\"}", "c": ["2", "3"], "d": "true",
        "e": "1", "f": "1", "g": "1", "h": "4",
    });
    let expected = json!({
        "a": 1, "b": {"x": 1.5}, "c": [2, 3], "d": true,
        "e": "1", "f": "1", "g": "1", "h": 4,
    });
    assert_eq!(prepare(schema, args), expected);
}

#[test]
fn recursive_schemas_are_followed_and_cycles_terminate() {
    let tree = json!({
        "type": "object",
        "properties": {"root": {"$ref": "#/$defs/node"}},
        "$defs": {"node": {
            "type": "object",
            "properties": {
                "value": {"type": "integer"},
                "children": {"type": "array", "items": {"$ref": "#/$defs/node"}},
            },
        }},
    });
    let args = json!({"root": {"value": "1", "children": [{"value": "2", "children": []}]}});
    assert_eq!(
        prepare(tree, args),
        json!({"root": {"value": 1, "children": [{"value": 2, "children": []}]}})
    );

    let cycles = [
        json!({"$ref": "#"}),
        json!({"$ref": "#/$defs/a", "$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}}}),
        json!({"anyOf": [{"$ref": "#"}, {"$ref": "#"}, {"$ref": "#"}]}),
        json!({"oneOf": [{"$ref": "#"}, {"$ref": "#"}], "allOf": [{"$ref": "#"}, {"$ref": "#"}]}),
        json!({"properties": {"x": {"anyOf": [{"$ref": "#/properties/x"}, {"$ref": "#/properties/x"}]}}}),
    ];
    for schema in cycles {
        let got = prepare(schema.clone(), json!({"x": "1", "approved": true}));
        assert_eq!(got, json!({"x": "1"}), "{schema}");
    }
}

/// Regression (found by the `wrapper_coerce` fuzz target's "preparing twice is preparing once"
/// check): a string converted by a node's own `type` skipped the `properties` of the node's
/// `$ref` target, which had only seen the string; a second preparation then converted `a`.
#[test]
fn subschemas_that_saw_a_string_apply_to_what_it_became() {
    let schema = json!({
        "properties": {"v": {"$ref": "#/$defs/t", "type": "object"}},
        "$defs": {"t": {"type": ["string", "object"], "properties": {"a": {"type": "integer"}}}},
    });
    let once = prepare(schema.clone(), json!({"v": "{\"a\": \"1\"}"}));
    assert_eq!(once, json!({"v": {"a": 1}}));
    assert_eq!(prepare(schema, once.clone()), once);

    // Likewise an `allOf` branch before the one that converts the string.
    let property = json!({"allOf": [
        {"type": ["string", "object"], "properties": {"a": {"type": "integer"}}},
        {"type": "object"},
    ]});
    assert_eq!(
        coerce_property(property, json!("{\"a\": \"1\"}")),
        json!({"a": 1})
    );
}

/// Regression (found the same way): the work budget grows with the value, so when coercion ran
/// out of it, a second preparation of the now larger value (`x` parsed into 100 items) had more
/// budget and converted `y`, which the first had not reached. Running out now forwards the value
/// unchanged, whatever had been converted before.
#[test]
fn running_out_of_budget_forwards_the_value_unchanged() {
    let costly = vec![json!({}); BASE_BUDGET + 100 * BUDGET_PER_VALUE];
    let schema = json!({
        "properties": {
            "n": {"type": "integer"},
            "x": {"type": "array"},
            "y": {"$ref": "#/$defs/costly", "allOf": [{"type": "integer"}]},
        },
        "$defs": {"costly": {"allOf": costly}},
    });
    let x = format!("[{}]", vec!["0"; 100].join(","));
    let args = json!({"n": "1", "x": x, "y": "2", "approved": true});
    let once = prepare(schema.clone(), args);
    assert_eq!(
        once,
        json!({"n": "1", "x": x, "y": "2"}),
        "only `approved` removed"
    );
    assert_eq!(prepare(schema.clone(), once.clone()), once);

    // Without the costly `$ref` everything converts, within the same budget.
    let mut cheap = schema;
    cheap["properties"]["y"] = json!({"type": "integer"});
    let expected = json!({"n": 1, "x": vec![0; 100], "y": 2});
    assert_eq!(
        prepare(cheap, json!({"n": "1", "x": x, "y": "2"})),
        expected
    );
}

#[test]
fn approved_is_stripped_unless_declared() {
    let undeclared = json!({"type": "object", "properties": {"path": {"type": "string"}}});
    assert_eq!(
        prepare(undeclared, json!({"path": "/tmp", "approved": true})),
        json!({"path": "/tmp"})
    );
    let declared = json!({"type": "object", "properties": {"approved": {"type": "boolean"}}});
    assert_eq!(
        prepare(declared, json!({"approved": "true"})),
        json!({"approved": true})
    );
    let via_ref = json!({
        "$ref": "#/$defs/args",
        "$defs": {"args": {"properties": {"approved": {}}}},
    });
    assert_eq!(
        prepare(via_ref, json!({"approved": 1})),
        json!({"approved": 1})
    );
    let via_all_of = json!({"allOf": [{"properties": {"approved": {}}}]});
    assert_eq!(
        prepare(via_all_of, json!({"approved": 1})),
        json!({"approved": 1})
    );
    // Only the top level is Revka's: a nested "approved" is the tool's own.
    assert_eq!(
        prepare(
            json!({}),
            json!({"inner": {"approved": true}, "approved": false})
        ),
        json!({"inner": {"approved": true}})
    );
    assert_eq!(prepare(json!(null), json!({"approved": true})), json!({}));
}

#[test]
fn arguments_must_be_an_object() {
    assert_eq!(prepare(json!({}), Value::Null), json!({}));
    let cases = [
        (json!([1]), "an array"),
        (json!("{}"), "a string"),
        (json!(1), "a number"),
        (json!(true), "a boolean"),
    ];
    for (args, kind) in cases {
        let err = prepare_arguments(&json!({}), args).unwrap_err();
        assert_eq!(err, ArgumentError::NotAnObject { kind });
        assert_eq!(
            err.to_string(),
            format!("tool arguments must be a JSON object, got {kind}")
        );
    }
}

#[test]
fn unknown_members_and_keywords_survive() {
    let schema = json!({
        "type": "object",
        "x-vendor": {"type": "integer"},
        "properties": {"n": {"type": "integer", "minimum": 10, "x-note": "?"}},
    });
    let args = json!({"n": "3", "meta": {"deep": ["1", {"k": "true"}]}});
    assert_eq!(
        prepare(schema, args),
        json!({"n": 3, "meta": {"deep": ["1", {"k": "true"}]}})
    );
}

#[test]
fn very_deep_values_are_cut_off_not_overflowed() {
    let mut schema = json!({"type": "integer"});
    let mut value = json!("1");
    for _ in 0..200 {
        schema = json!({"type": "object", "properties": {"a": schema}});
        value = json!({ "a": value });
    }
    let out = coerce(&schema, value.clone());
    assert_eq!(out, value, "deeper than MAX_DEPTH stays unconverted");
}

/// Arguments arrive as JSON text and leave as JSON text: a number must keep its value through
/// parsing, coercion and serialising (serde_json's `float_roundtrip`; see the jsonrpc tests).
#[test]
fn numbers_keep_their_value_from_text_to_text() {
    let schema =
        json!({"type": "object", "properties": {"x": {"type": "number"}, "s": {"type": "number"}}});
    for (text, value) in [
        ("2.555555555e79", 2.555555555e79),
        ("9.764829805038653e-160", 9.764829805038653e-160),
        ("1.7976931348623157e308", f64::MAX),
    ] {
        let args: Value = serde_json::from_str(&format!(r#"{{"x":{text},"s":"{text}"}}"#)).unwrap();
        let out: Value = serde_json::from_str(&prepare(schema.clone(), args).to_string()).unwrap();
        assert_eq!(out["x"].as_f64(), Some(value), "{text}");
        assert_eq!(out["s"].as_f64(), Some(value), "coerced {text}");
    }
}

#[test]
fn detects_error_results() {
    let cases = [
        (json!({"content": [], "isError": true}), true),
        (json!({"content": [], "isError": false}), false),
        (json!({"content": []}), false),
        (json!({"isError": "true"}), false),
        (json!({"isError": null}), false),
        (json!([{"isError": true}]), false),
        (json!(null), false),
    ];
    for (result, expected) in cases {
        assert_eq!(result_is_error(&result), expected, "{result}");
        let raw = serde_json::value::to_raw_value(&result).unwrap();
        assert_eq!(raw_result_is_error(&raw), expected, "raw {result}");
    }
}

#[test]
fn detects_error_results_in_raw_text_as_a_parse_would() {
    let cases = [
        (r#"{"content":[],"isError":true}"#, true),
        (r#"{ "content" : [ ] , "isError" : true }  "#, true),
        (r#"{"isError":true,"content":[]}"#, true),
        (r#"{"isError":true}"#, true),
        (r#"{"isError":false,"isError":true}"#, true),
        (r#"{"isError":true,"content":[],"isError":false}"#, false),
        (r#"{"is\u0045rror":true}"#, true),
        (r#"{"content":[{"isError":true}]}"#, false),
        (r#"{"content":"x\",\"isError\":true}"}"#, false),
        (r#"{"x\"isError":true}"#, false),
        (r#"{"note":",\"isError\":true}"}"#, false),
        (r#"{"isError":"true"}"#, false),
        (r#"{"isError":[true]}"#, false),
        (r#"[true]"#, false),
        (r#""isError""#, false),
    ];
    for (text, expected) in cases {
        let raw: Box<RawValue> = serde_json::from_str(text).unwrap();
        let parsed: Value = serde_json::from_str(text).unwrap();
        assert_eq!(result_is_error(&parsed), expected, "parsed {text}");
        assert_eq!(raw_result_is_error(&raw), expected, "raw {text}");
    }
}

/// Arbitrary JSON, small.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        "[a-z0-9 .$#/\"{}\\[\\]-]{0,8}".prop_map(Value::from),
        prop_oneof![
            Just("integer"),
            Just("number"),
            Just("boolean"),
            Just("null"),
            Just("string"),
            Just("array"),
            Just("object"),
            Just("5"),
            Just("true"),
            Just("null"),
            Just("[1]"),
            Just("{\"a\":\"1\"}"),
            Just("#"),
            Just("#/$defs/a"),
            Just("#/properties/a"),
        ]
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        let key = prop_oneof![
            Just("type"),
            Just("properties"),
            Just("items"),
            Just("prefixItems"),
            Just("anyOf"),
            Just("oneOf"),
            Just("allOf"),
            Just("$ref"),
            Just("$defs"),
            Just("enum"),
            Just("const"),
            Just("additionalProperties"),
            Just("additionalItems"),
            Just("a"),
            Just("approved"),
        ];
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            proptest::collection::btree_map(key, inner, 0..5).prop_map(|m| {
                Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
            }),
        ]
    })
}

/// Well-formed schemas over a few shapes, with `$defs` the `$ref`s can point at.
fn sensible_schema() -> impl Strategy<Value = Value> {
    let primitive = prop_oneof![
        Just("integer"),
        Just("number"),
        Just("boolean"),
        Just("null"),
        Just("string"),
    ]
    .prop_map(|t| json!({ "type": t }));
    let node = primitive.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::btree_map("[ab]", inner.clone(), 0..3)
                .prop_map(|props| json!({"type": "object", "properties": props})),
            inner
                .clone()
                .prop_map(|items| json!({"type": "array", "items": items})),
            proptest::collection::vec(inner.clone(), 1..3)
                .prop_map(|branches| json!({ "anyOf": branches })),
            (inner.clone(), any::<bool>()).prop_map(|(schema, nullable)| {
                let mut schema = schema;
                if nullable && let Some(Value::String(t)) = schema.get("type").cloned() {
                    schema["type"] = json!([t, "null"]);
                }
                schema
            }),
            Just(json!({"$ref": "#/$defs/a"})),
        ]
    });
    (
        proptest::collection::btree_map("[ab]", node.clone(), 0..3),
        node,
    )
        .prop_map(
            |(props, def)| json!({"type": "object", "properties": props, "$defs": {"a": def}}),
        )
}

/// Object schemas whose properties are strings, untyped, or string among other types: the
/// shapes the coercion shortcut accepts, plus near misses it must refuse.
fn string_schema() -> impl Strategy<Value = Value> {
    let property = prop_oneof![
        Just(json!({"type": "string"})),
        Just(json!({"type": "string", "description": "d"})),
        Just(json!({"type": ["integer", "string"]})),
        Just(json!({"description": "anything"})),
        Just(json!({})),
        Just(json!(true)),
        Just(json!({"type": "integer"})),
        Just(json!({"enum": ["a", 1]})),
        Just(json!({"type": "string", "anyOf": [{"type": "integer"}]})),
        Just(json!({"properties": {"x": {"type": "integer"}}})),
        Just(json!({"type": ["string", "array"], "items": {"type": "integer"}})),
        Just(json!({"type": ["string", "object"], "properties": {"n": {"type": "integer"}}})),
    ];
    (
        proptest::collection::btree_map("[ab]", property, 0..3),
        any::<bool>(),
    )
        .prop_map(|(props, typed)| {
            let mut schema = json!({ "properties": props, "required": ["a"] });
            if typed {
                schema["type"] = json!("object");
            }
            schema
        })
}

/// Argument values likely to need coercion.
fn args_like() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(json!("5")),
        Just(json!("2.5")),
        Just(json!("true")),
        Just(json!("null")),
        Just(json!("[\"1\", \"false\"]")),
        Just(json!("{\"a\": \"1\", \"b\": \"[2]\"}")),
        Just(json!("x")),
        Just(json!(3)),
        Just(json!(null)),
        Just(json!(false)),
    ];
    let value = leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..3).prop_map(Value::from),
            proptest::collection::btree_map("[ab]", inner, 0..3)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    });
    proptest::collection::btree_map("[ab]|approved", value, 0..4)
        .prop_map(|m| Value::Object(m.into_iter().collect()))
}

proptest! {
    #[test]
    fn never_panics_on_arbitrary_schemas_and_arguments(schema in any_json(), args in any_json()) {
        let is_object = args.is_object() || args.is_null();
        let out = prepare_arguments(&schema, args);
        prop_assert_eq!(out.is_ok(), is_object);
        if let Ok(out) = out {
            prop_assert!(out.is_object());
        }
    }

    #[test]
    fn coercion_of_arbitrary_values_never_panics(schema in any_json(), value in any_json()) {
        let _ = coerce(&schema, value);
    }

    #[test]
    fn preparing_twice_is_preparing_once(schema in sensible_schema(), args in args_like()) {
        let once = prepare_arguments(&schema, args).unwrap();
        let twice = prepare_arguments(&schema, once.clone()).unwrap();
        prop_assert_eq!(twice, once);
    }

    #[test]
    fn preparing_twice_is_preparing_once_even_for_arbitrary_schemas(
        schema in any_json(),
        args in args_like(),
    ) {
        let once = prepare_arguments(&schema, args).unwrap();
        let twice = prepare_arguments(&schema, once.clone()).unwrap();
        prop_assert_eq!(twice, once);
    }

    /// The shortcut that skips coercion is exact: when it says nothing can convert, coercion
    /// indeed leaves the arguments (an object: the shortcut is taken for nothing else) as
    /// they are.
    #[test]
    fn skipped_coercion_would_have_changed_nothing(
        schema in prop_oneof![sensible_schema(), string_schema(), any_json()],
        args in prop_oneof![args_like(), any_json()],
    ) {
        if !may_convert(&schema) && args.is_object() {
            prop_assert_eq!(coerce(&schema, args.clone()), args);
        }
    }

    #[test]
    fn untyped_schemas_change_nothing_but_approved(args in args_like()) {
        let mut expected = args.clone();
        expected.as_object_mut().unwrap().remove("approved");
        prop_assert_eq!(prepare_arguments(&json!({}), args).unwrap(), expected);
    }
}

#[test]
fn the_coercion_shortcut_takes_only_schemas_that_cannot_convert() {
    for schema in [
        json!({}),
        json!({"type": "object"}),
        json!({"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}),
        json!({"properties": {"a": {"description": "any"}, "b": {"type": ["null", "string"]}}}),
    ] {
        assert!(!may_convert(&schema), "{schema}");
    }
    for schema in [
        json!({"properties": {"n": {"type": "integer"}}}),
        json!({"properties": {"o": {"properties": {"n": {"type": "integer"}}}}}),
        json!({"properties": {"e": {"enum": [1, 2]}}}),
        json!({"properties": {"s": {"type": "string", "anyOf": [{"type": "number"}]}}}),
        json!({"$ref": "#/$defs/a", "$defs": {"a": {"properties": {"n": {"type": "integer"}}}}}),
        json!({"type": "object", "additionalProperties": {"type": "integer"}}),
        json!({"type": ["object", "null"], "properties": {}}),
        // `string` among the types does not excuse what applies to the others.
        json!({"properties": {"a": {"type": ["string", "array"], "items": {"type": "integer"}}}}),
        json!({"properties": {"a": {"type": ["string", "object"], "properties": {"n": {"type": "integer"}}}}}),
    ] {
        assert!(may_convert(&schema), "{schema}");
    }
    let schema =
        json!({"properties": {"a": {"type": ["string", "array"], "items": {"type": "integer"}}}});
    assert_eq!(
        prepare_arguments(&schema, json!({"a": ["5"]})).unwrap(),
        json!({"a": [5]})
    );
    // Skipped or not, the result is the same.
    let schema = json!({"properties": {"text": {"type": "string"}}});
    let args = json!({"text": "5", "approved": true, "extra": "true"});
    assert_eq!(
        prepare_arguments(&schema, args).unwrap(),
        json!({"text": "5", "extra": "true"})
    );
}

// ==== Raw arguments ====

fn raw(text: &str) -> Result<RawArguments, ArgumentError> {
    RawArguments::new(&RawValue::from_string(text.to_owned()).unwrap())
}

/// What `prepare` makes of raw `text`: `Ok(true, value)` when it was forwarded raw.
fn prepare_raw(schema: &Value, text: &str) -> (bool, Value) {
    let prepared = super::prepare(schema, Arguments::Raw(raw(text).unwrap())).unwrap();
    let forwarded_raw = matches!(prepared, Arguments::Raw(_));
    (forwarded_raw, prepared.into_value())
}

#[test]
fn raw_arguments_are_forwarded_as_sent_only_when_preparing_changes_nothing() {
    let strings = json!({"type": "object", "properties": {"text": {"type": "string"}}});
    // Kept raw, byte for byte: spacing, key order, duplicate keys, numbers beyond f64.
    let text = r#"{ "text" : "5",  "n": 123456789012345678901234567890, "text": "again" }"#;
    let prepared = super::prepare(&strings, Arguments::Raw(raw(text).unwrap())).unwrap();
    let Arguments::Raw(kept) = &prepared else {
        panic!("parsed although nothing changes: {prepared:?}")
    };
    assert_eq!(kept.get(), text);
    assert_eq!(
        serde_json::to_string(&prepared).unwrap(),
        text,
        "serialised verbatim"
    );

    // `approved` at the top level, even spelt with an escape, is stripped (so parsed)...
    for text in [
        r#"{"text": "a", "approved": true}"#,
        r#"{"text": "a", "appro\u0076ed": true}"#,
    ] {
        assert_eq!(
            prepare_raw(&strings, text),
            (false, json!({"text": "a"})),
            "{text}"
        );
    }
    // ...unless the schema declares it; a nested one is the tool's own.
    let declared = json!({"properties": {"approved": {}}});
    assert_eq!(
        prepare_raw(&declared, r#"{"approved": 1}"#),
        (true, json!({"approved": 1}))
    );
    assert_eq!(
        prepare_raw(&strings, r#"{"inner": {"approved": true}}"#),
        (true, json!({"inner": {"approved": true}}))
    );
    // A schema under which something may convert: parsed and coerced.
    let integers = json!({"properties": {"n": {"type": "integer"}}});
    assert_eq!(
        prepare_raw(&integers, r#"{"n": "5"}"#),
        (false, json!({"n": 5}))
    );
    // No arguments, or `null`, are `{}`.
    assert_eq!(RawArguments::empty().get(), "{}");
    assert_eq!(prepare_raw(&strings, "null"), (true, json!({})));
}

#[test]
fn raw_arguments_must_be_an_object_within_the_nesting_limit() {
    for (text, kind) in [
        ("[1]", "an array"),
        (r#""{}""#, "a string"),
        ("-1.5", "a number"),
        ("false", "a boolean"),
    ] {
        assert_eq!(
            raw(text).unwrap_err(),
            ArgumentError::NotAnObject { kind },
            "{text}"
        );
    }
    // The arguments object is level 1; brackets inside strings do not count.
    let nest = |levels: usize| {
        format!(
            r#"{{"s": "[[[{{\"]]", "a": {}1{}}}"#,
            "[".repeat(levels - 1),
            "]".repeat(levels - 1)
        )
    };
    let deepest = raw(&nest(MAX_NESTING)).unwrap();
    let value = Arguments::Raw(deepest).into_value();
    assert_eq!(
        value["s"],
        json!("[[[{\"]]"),
        "the deepest accepted still parses"
    );
    let err = raw(&nest(MAX_NESTING + 1)).unwrap_err();
    assert_eq!(err, ArgumentError::TooDeep { limit: MAX_NESTING });
    assert_eq!(
        err.to_string(),
        "tool arguments nest deeper than 127 levels"
    );
}

proptest! {
    /// Raw or parsed, preparing gives the same arguments.
    #[test]
    fn raw_and_parsed_arguments_prepare_alike(
        schema in prop_oneof![sensible_schema(), string_schema(), any_json()],
        args in args_like(),
    ) {
        let text = args.to_string();
        let (_, from_raw) = prepare_raw(&schema, &text);
        prop_assert_eq!(from_raw, prepare_arguments(&schema, args).unwrap());
    }

    /// A raw result is an error result exactly when its parsed form is.
    #[test]
    fn raw_and_parsed_results_agree_on_is_error(
        members in proptest::collection::vec(
            (prop_oneof![Just("isError".to_owned()), "[a-zA-Z\"]{0,8}"], any_json()),
            0..5,
        ),
        spaced in any::<bool>(),
    ) {
        let mut text = String::from("{");
        for (i, (key, value)) in members.iter().enumerate() {
            if i > 0 {
                text.push(',');
            }
            let sep = if spaced { " : " } else { ":" };
            text.push_str(&format!("{}{sep}{value}", Value::from(key.as_str())));
        }
        text.push('}');
        let raw: Box<RawValue> = serde_json::from_str(&text).unwrap();
        let parsed: Value = serde_json::from_str(&text).unwrap();
        prop_assert_eq!(raw_result_is_error(&raw), result_is_error(&parsed), "{}", text);
    }
}
