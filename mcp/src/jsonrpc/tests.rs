use proptest::prelude::*;
use serde_json::json;
use serde_json::value::to_raw_value;

use super::*;

fn raw(json: &str) -> Box<RawValue> {
    RawValue::from_string(json.to_owned()).unwrap()
}

fn parse(line: &str) -> Result<Incoming, ParseError> {
    parse_message(line.as_bytes())
}

fn line(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap()
}

fn nested(depth: usize) -> String {
    format!("{}{}", "[".repeat(depth), "]".repeat(depth))
}

#[test]
fn serialises_outgoing_messages_to_one_line() {
    let request = Request::new(7u64, "tools/call", Some(raw(r#"{"name":"x"}"#)));
    assert_eq!(
        line(request.to_line()),
        r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"x"}}"#
    );
    let request = Request::new("a\"b", "ping", None);
    assert_eq!(
        line(request.to_line()),
        r#"{"jsonrpc":"2.0","id":"a\"b","method":"ping"}"#
    );
    let note = Notification::new("notifications/initialized", None);
    assert_eq!(
        line(note.to_line()),
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#
    );
    let ok = Response::success(Id::from(-3i64), raw("null"));
    assert_eq!(
        line(ok.to_line()),
        r#"{"jsonrpc":"2.0","id":-3,"result":null}"#
    );
    let err = Response::error(None, ErrorObject::parse_error("bad").with_data(json!([1])));
    assert_eq!(
        line(err.to_line()),
        r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"bad","data":[1]}}"#
    );
}

#[test]
fn pretty_raw_params_still_make_one_line() {
    let params = raw("{\n  \"text\": \"a\\nb\",\r\n  \"n\": [1,\r 2]\n}");
    let out = Request::new(1u64, "m", Some(params)).to_line();
    assert!(!out.contains(&b'\n') && !out.contains(&b'\r'));
    let Incoming::Request(req) = parse_message(&out).unwrap() else {
        panic!("not a request")
    };
    let params: Value = serde_json::from_str(req.params.unwrap().get()).unwrap();
    assert_eq!(params, json!({"text": "a\nb", "n": [1, 2]}));
}

#[test]
fn classifies_requests_notifications_and_responses() {
    let msg = parse(r#" {"jsonrpc":"2.0","id":"x","method":"roots/list","params":{"a":[1, 2]}} "#);
    let Ok(Incoming::Request(req)) = msg else {
        panic!("{msg:?}")
    };
    assert_eq!((req.id, &*req.method), (Id::from("x"), "roots/list"));
    assert_eq!(req.params.unwrap().get(), r#"{"a":[1, 2]}"#);

    let msg = parse(r#"{"method":"notifications/progress","jsonrpc":"2.0","params":[]}"#);
    let Ok(Incoming::Notification(note)) = msg else {
        panic!("{msg:?}")
    };
    assert_eq!(
        (&*note.method, note.params.unwrap().get()),
        ("notifications/progress", "[]")
    );

    let msg = parse(r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[]},"extra":{"x":[true]}}"#);
    let Ok(Incoming::Response(resp)) = msg else {
        panic!("{msg:?}")
    };
    assert_eq!(resp.id, Some(Id::from(1u64)));
    assert_eq!(resp.result.unwrap().get(), r#"{"tools":[]}"#);

    let msg = parse(
        r#"{"jsonrpc":"2.0","id":2,"error":{"code":-32601,"message":"nope","data":{"m":"x"}}}"#,
    );
    let Ok(Incoming::Response(resp)) = msg else {
        panic!("{msg:?}")
    };
    let expected =
        ErrorObject::new(ErrorObject::METHOD_NOT_FOUND, "nope").with_data(json!({"m": "x"}));
    assert_eq!(resp.result.unwrap_err(), expected);
}

#[test]
fn null_members() {
    // A null result is a valid success, not a missing one.
    let Ok(Incoming::Response(resp)) = parse(r#"{"jsonrpc":"2.0","id":1,"result":null}"#) else {
        panic!()
    };
    assert_eq!(resp.result.unwrap().get(), "null");
    // A null id is allowed on responses (errors about unreadable requests) only.
    let msg = parse(r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"x"}}"#);
    let Ok(Incoming::Response(resp)) = msg else {
        panic!("{msg:?}")
    };
    assert_eq!(resp.id, None);
    let msg = parse(r#"{"jsonrpc":"2.0","id":null,"method":"m"}"#);
    assert!(
        matches!(msg, Err(ParseError::InvalidId { kind: "null" })),
        "{msg:?}"
    );
    // `"error": null` next to a result and `"params": null` are tolerated.
    let msg = parse(r#"{"jsonrpc":"2.0","id":1,"result":5,"error":null}"#);
    assert!(
        matches!(msg, Ok(Incoming::Response(Response { result: Ok(_), .. }))),
        "{msg:?}"
    );
    let msg = parse(r#"{"jsonrpc":"2.0","method":"m","params":null}"#);
    assert!(
        matches!(
            msg,
            Ok(Incoming::Notification(Notification { params: None, .. }))
        ),
        "{msg:?}"
    );
}

#[test]
fn ids_keep_their_json_type_and_text() {
    let cases = [
        "0",
        "-9223372036854775808",
        "18446744073709551615",
        "1.5",
        "1.0",
        "1e2",
        "1e30",
        "123456789012345678901234567890",
        "1e400",
        r#""7""#,
        r#""a\u0041\n""#,
    ];
    for input in cases {
        let msg = parse(&format!(
            r#"{{"jsonrpc":"2.0","id":{input},"method":"ping"}}"#
        ));
        let Ok(Incoming::Request(req)) = msg else {
            panic!("{input}: {msg:?}")
        };
        let reply = Response::success(req.id.clone(), raw("{}"));
        let expected = format!(r#"{{"jsonrpc":"2.0","id":{input},"result":{{}}}}"#);
        assert_eq!(line(reply.to_line()), expected, "{input}");
        assert_eq!(req.id.to_string(), input);
    }
    assert_ne!(Id::from(1u64), Id::from("1"));
    assert_eq!(Id::from(u64::MAX).as_u64(), Some(u64::MAX));
    assert_eq!(Id::from(-1i64).as_i64(), Some(-1));
    assert_eq!(Id::from("s").as_str().as_deref(), Some("s"));
    let id: Id = serde_json::from_str("12").unwrap();
    assert_eq!(id, Id::from(12u64));
    assert!(serde_json::from_str::<Id>("true").is_err());
}

/// Fuzz regression (jsonrpc_message): a numeric id that is not an `i64`/`u64` must echo the same
/// value. It was parsed into a double, and serde_json's default float parser is off by an ulp
/// for long mantissas or large exponents, so the echoed text read back as another number. Ids
/// are now echoed as the text they came as, so they keep their value whatever the parser.
#[test]
fn float_ids_echo_the_same_value() {
    let found_by_fuzzing = format!("2555555555{}2049638230412172401", "0".repeat(62));
    for input in [
        "2.555555555e79",
        "1.7976931348623157e308",
        "5e-324",
        &found_by_fuzzing,
    ] {
        let msg = parse(&format!(
            r#"{{"jsonrpc":"2.0","id":{input},"method":"ping"}}"#
        ));
        let Ok(Incoming::Request(req)) = msg else {
            panic!("{input}: {msg:?}")
        };
        let echoed = Response::success(req.id.clone(), raw("{}")).to_line();
        let Ok(Incoming::Response(back)) = parse_message(&echoed) else {
            panic!("{input}: {}", line(echoed))
        };
        assert_eq!(back.id.as_ref(), Some(&req.id), "{input}");
        assert_eq!(back.id.unwrap().to_string(), input);
    }
}

#[test]
fn rejects_invalid_messages_precisely() {
    type Check = fn(&ParseError) -> bool;
    let cases: &[(&str, Check)] = &[
        (r#"{"id":1,"method":"m"}"#, |e| {
            matches!(e, ParseError::MissingVersion)
        }),
        (
            r#"{"jsonrpc":"1.0","id":1,"method":"m"}"#,
            |e| matches!(e, ParseError::WrongVersion { found } if found == r#""1.0""#),
        ),
        (r#"{"jsonrpc":2.0,"method":"m"}"#, |e| {
            matches!(e, ParseError::WrongVersion { .. })
        }),
        (r#"{"jsonrpc":"2.0","id":{},"method":"m"}"#, |e| {
            matches!(e, ParseError::InvalidId { kind: "object" })
        }),
        (r#"{"jsonrpc":"2.0","id":[1],"result":1}"#, |e| {
            matches!(e, ParseError::InvalidId { kind: "array" })
        }),
        (r#"{"jsonrpc":"2.0","id":true,"method":"m"}"#, |e| {
            matches!(e, ParseError::InvalidId { kind: "boolean" })
        }),
        (r#"{"jsonrpc":"2.0","id":1,"method":7}"#, |e| {
            matches!(e, ParseError::MethodNotString { kind: "number" })
        }),
        (r#"{"jsonrpc":"2.0","method":"m","params":"x"}"#, |e| {
            matches!(e, ParseError::InvalidParams { kind: "string" })
        }),
        (
            r#"{"jsonrpc":"2.0","id":1,"result":1,"error":{"code":1,"message":"x"}}"#,
            |e| matches!(e, ParseError::ResultAndError),
        ),
        (r#"{"jsonrpc":"2.0","id":1,"method":"m","result":1}"#, |e| {
            matches!(e, ParseError::MethodAndResult)
        }),
        (r#"{"jsonrpc":"2.0","id":1}"#, |e| {
            matches!(e, ParseError::NotAMessage)
        }),
        (r#"{"jsonrpc":"2.0","result":1}"#, |e| {
            matches!(e, ParseError::MissingResponseId)
        }),
        (
            r#"{"jsonrpc":"2.0","id":1,"error":{"code":"x","message":"m"}}"#,
            |e| matches!(e, ParseError::InvalidErrorObject(_)),
        ),
        (r#"[{"jsonrpc":"2.0","method":"m"}]"#, |e| {
            matches!(e, ParseError::NotAnObject { kind: "array" })
        }),
        ("42", |e| {
            matches!(e, ParseError::NotAnObject { kind: "number" })
        }),
        ("true", |e| {
            matches!(e, ParseError::NotAnObject { kind: "boolean" })
        }),
        // Not JSON at all, though the first byte could start a non-object value.
        ("this is not json-rpc", |e| matches!(e, ParseError::Json(_))),
        ("nul", |e| matches!(e, ParseError::Json(_))),
        ("[1,", |e| matches!(e, ParseError::Json(_))),
        (&"[".repeat(100_000), |e| matches!(e, ParseError::Json(_))),
        (r#"{"jsonrpc":"2.0","jsonrpc":"2.0","method":"m"}"#, |e| {
            matches!(e, ParseError::Json(_))
        }),
        (r#"{"jsonrpc":"2.0","method":"m"} x"#, |e| {
            matches!(e, ParseError::Json(_))
        }),
        ("", |e| matches!(e, ParseError::Json(_))),
        ("{", |e| matches!(e, ParseError::Json(_))),
    ];
    for (input, check) in cases {
        let err = parse(input).expect_err(input);
        assert!(check(&err), "{input}: {err:?}");
        assert!(!err.to_string().is_empty());
    }
    let err = parse_message(b"{\"jsonrpc\":\"2.0\",\"method\":\"\xff\"}").unwrap_err();
    assert!(matches!(err, ParseError::InvalidUtf8(_)), "{err:?}");
    assert_eq!(err.code(), ErrorObject::PARSE_ERROR);
    assert_eq!(ParseError::NotAMessage.code(), ErrorObject::INVALID_REQUEST);
    // Escaped spelling of the version is still "2.0"; a long wrong one is cut.
    assert!(parse(r#"{"jsonrpc":"2\u002e0","method":"m"}"#).is_ok());
    let long = format!(r#"{{"jsonrpc":"{}","method":"m"}}"#, "é".repeat(100));
    let Err(ParseError::WrongVersion { found }) = parse(&long) else {
        panic!()
    };
    assert!(found.len() <= 32 + '…'.len_utf8(), "{found}");
}

#[test]
fn deep_nesting_never_overflows_the_stack() {
    let deep = nested(100_000);
    assert!(matches!(
        parse(&deep),
        Err(ParseError::NotAnObject { kind: "array" })
    ));
    let in_id = format!(r#"{{"jsonrpc":"2.0","id":{deep},"method":"m"}}"#);
    assert!(matches!(
        parse(&in_id),
        Err(ParseError::InvalidId { kind: "array" })
    ));
    let in_data =
        format!(r#"{{"jsonrpc":"2.0","id":1,"error":{{"code":1,"message":"m","data":{deep}}}}}"#);
    assert!(matches!(
        parse(&in_data),
        Err(ParseError::InvalidErrorObject(_))
    ));
    let objects = format!("{}1{}", r#"{"a":"#.repeat(100_000), "}".repeat(100_000));
    assert!(matches!(parse(&objects), Err(ParseError::MissingVersion)));
    // Opaque raw members are skipped iteratively and kept as they are; interpreting them later
    // hits serde_json's recursion limit.
    let in_result = format!(r#"{{"jsonrpc":"2.0","id":1,"result":{deep}}}"#);
    let Ok(Incoming::Response(resp)) = parse(&in_result) else {
        panic!()
    };
    let result = resp.result.unwrap();
    assert_eq!(result.get().len(), deep.len());
    assert!(serde_json::from_str::<Value>(result.get()).is_err());
}

#[test]
fn error_objects() {
    let cases = [
        (ErrorObject::parse_error("p"), -32700),
        (ErrorObject::invalid_request("r"), -32600),
        (ErrorObject::method_not_found("tools/x"), -32601),
        (ErrorObject::invalid_params("a"), -32602),
        (ErrorObject::internal_error("i"), -32603),
    ];
    for (error, code) in cases {
        assert_eq!(error.code, code);
    }
    let error = ErrorObject::method_not_found("tools/x");
    assert_eq!(
        error.to_string(),
        "JSON-RPC error -32601: method not found: tools/x"
    );
}

fn arb_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (any::<i32>(), 0..8i32).prop_map(|(m, e)| Value::from(f64::from(m) / 2f64.powi(e))),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((any::<String>(), inner), 0..6)
                .prop_map(|members| Value::Object(members.into_iter().collect())),
        ]
    })
}

fn arb_id() -> impl Strategy<Value = Id> {
    prop_oneof![
        any::<i64>().prop_map(Id::from),
        any::<u64>().prop_map(Id::from),
        (any::<i32>(), 1..8i32).prop_map(|(m, e)| {
            serde_json::from_str::<Id>(&(f64::from(m) / 2f64.powi(e)).to_string()).unwrap()
        }),
        any::<String>().prop_map(Id::from),
    ]
}

fn arb_params() -> impl Strategy<Value = Option<Box<RawValue>>> {
    let structured = prop_oneof![
        prop::collection::vec(arb_value(), 0..4).prop_map(Value::Array),
        prop::collection::vec((any::<String>(), arb_value()), 0..4)
            .prop_map(|members| Value::Object(members.into_iter().collect())),
    ];
    prop::option::of(structured.prop_map(|v| to_raw_value(&v).unwrap()))
}

fn arb_error() -> impl Strategy<Value = ErrorObject> {
    (any::<i64>(), any::<String>(), prop::option::of(arb_value())).prop_map(
        |(code, message, data)| ErrorObject {
            code,
            message,
            data: data.filter(|d| !d.is_null()),
        },
    )
}

fn raw_text(raw: &Option<Box<RawValue>>) -> Option<&str> {
    raw.as_deref().map(RawValue::get)
}

/// Bytes that look like JSON-RPC often enough to reach the classifier.
fn jsonish() -> impl Strategy<Value = Vec<u8>> {
    const TOKENS: &[&[u8]] = &[
        b"{",
        b"}",
        b"[",
        b"]",
        b",",
        b":",
        br#""jsonrpc""#,
        br#""2.0""#,
        br#""id""#,
        br#""method""#,
        br#""params""#,
        br#""result""#,
        br#""error""#,
        br#""code""#,
        br#""message""#,
        b"null",
        b"true",
        b"1",
        b"-1.5e3",
        b"\"",
        b"\\",
        b" ",
        b"\xff",
        b"\xc3",
    ];
    let token = prop::sample::select(TOKENS);
    prop::collection::vec(token, 0..40).prop_map(|tokens| tokens.concat())
}

proptest! {
    #[test]
    fn parse_never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = parse_message(&bytes);
    }

    #[test]
    fn parse_never_panics_on_jsonish_bytes(bytes in jsonish()) {
        let _ = parse_message(&bytes);
    }

    #[test]
    fn numeric_ids_round_trip_exactly(f in any::<f64>().prop_filter("finite", |f| f.is_finite())) {
        for text in [format!("{f:e}"), format!("{f:?}")] {
            let msg = parse(&format!(r#"{{"jsonrpc":"2.0","id":{text},"method":"m"}}"#));
            let Ok(Incoming::Request(req)) = msg else {
                return Err(TestCaseError::fail(format!("{text}: {msg:?}")));
            };
            prop_assert_eq!(req.id.to_string(), text.clone());
            let echoed = Response::success(req.id.clone(), raw("1")).to_line();
            let Ok(Incoming::Response(back)) = parse_message(&echoed) else {
                return Err(TestCaseError::fail(line(echoed)));
            };
            prop_assert_eq!(back.id, Some(req.id));
        }
    }

    #[test]
    fn requests_round_trip(id in arb_id(), method in any::<String>(), params in arb_params()) {
        let request = Request::new(id, method, params);
        let out = request.to_line();
        prop_assert!(!out.contains(&b'\n'));
        let Ok(Incoming::Request(back)) = parse_message(&out) else {
            return Err(TestCaseError::fail(format!("not a request: {}", line(out))));
        };
        prop_assert_eq!(&back.id, &request.id);
        prop_assert_eq!(&back.method, &request.method);
        prop_assert_eq!(raw_text(&back.params), raw_text(&request.params));
        prop_assert_eq!(back.to_line(), out);
    }

    #[test]
    fn notifications_round_trip(method in any::<String>(), params in arb_params()) {
        let note = Notification::new(method, params);
        let out = note.to_line();
        let Ok(Incoming::Notification(back)) = parse_message(&out) else {
            return Err(TestCaseError::fail(format!("not a notification: {}", line(out))));
        };
        prop_assert_eq!(&back.method, &note.method);
        prop_assert_eq!(raw_text(&back.params), raw_text(&note.params));
    }

    #[test]
    fn responses_round_trip(
        id in prop::option::of(arb_id()),
        result in prop_oneof![
            arb_value().prop_map(|v| Ok(to_raw_value(&v).unwrap())),
            arb_error().prop_map(Err),
        ],
    ) {
        let response = Response { id, result };
        let out = response.to_line();
        let Ok(Incoming::Response(back)) = parse_message(&out) else {
            return Err(TestCaseError::fail(format!("not a response: {}", line(out))));
        };
        prop_assert_eq!(&back.id, &response.id);
        match (&back.result, &response.result) {
            (Ok(a), Ok(b)) => prop_assert_eq!(a.get(), b.get()),
            (Err(a), Err(b)) => prop_assert_eq!(a, b),
            _ => prop_assert!(false, "result and error swapped"),
        }
    }
}

#[test]
fn a_json_string_without_escapes_is_read_in_place_and_any_other_is_parsed() {
    for (literal, text) in [
        (r#""tools/call""#, "tools/call"),
        (r#""""#, ""),
        (r#""é ü""#, "é ü"),
        (r#""a\"b""#, "a\"b"),
        (r#""\u00e9\n""#, "é\n"),
        (r#""back\\slash""#, "back\\slash"),
    ] {
        assert_eq!(json_string(&raw(literal)).unwrap(), text, "{literal}");
    }
    assert_eq!(plain_string(r#""plain""#), Some("plain"));
    assert_eq!(plain_string(r#""a\"b""#), None, "an escape is parsed");
    assert_eq!(plain_string("\""), None);
    assert_eq!(plain_string("12"), None);
    assert!(json_string(&raw("12")).is_err(), "not a string");
}

proptest! {
    /// Whatever the string, the in-place read agrees with serde_json's.
    #[test]
    fn json_string_agrees_with_serde(s in any::<String>()) {
        let literal = raw(&serde_json::to_string(&s).unwrap());
        prop_assert_eq!(json_string(&literal).unwrap(), s);
    }
}
