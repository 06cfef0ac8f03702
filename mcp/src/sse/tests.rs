use proptest::prelude::*;

use super::*;

type Outcome = Result<SseEvent, SseError>;

fn drain(parser: &mut SseParser) -> Vec<Outcome> {
    std::iter::from_fn(|| parser.next_event()).collect()
}

/// Feeds `chunks` in order, draining after each, then finishes.
fn run<'a>(parser: &mut SseParser, chunks: impl IntoIterator<Item = &'a [u8]>) -> Vec<Outcome> {
    let mut out = Vec::new();
    for chunk in chunks {
        parser.push(chunk);
        out.extend(drain(parser));
        assert!(parser.buffered_len() <= 3 * parser.max_event_bytes + 3);
    }
    parser.finish();
    out.extend(drain(parser));
    out
}

fn parse(input: &str) -> Vec<Outcome> {
    run(&mut SseParser::new(1 << 20), [input.as_bytes()])
}

fn event(data: &str) -> SseEvent {
    SseEvent {
        event: None,
        data: data.to_owned(),
        id: None,
        retry: None,
    }
}

fn ok(data: &str) -> Outcome {
    Ok(event(data))
}

#[test]
fn parses_fields_per_the_standard() {
    assert_eq!(parse("data: hello\n\n"), [ok("hello")]);
    assert_eq!(parse("data:a\ndata:  b\ndata\n\n"), [ok("a\n b\n")]);
    assert_eq!(parse("data\n\n"), [ok("")]);
    let typed = SseEvent {
        event: Some("endpoint".into()),
        ..event("/messages?s=1")
    };
    assert_eq!(
        parse("event: endpoint\ndata: /messages?s=1\n\n"),
        [Ok(typed)]
    );
    // Unknown fields are ignored, the value keeps later colons, `event:` empty means message.
    assert_eq!(parse("foo: bar\nevent:\ndata: a:b: c\n\n"), [ok("a:b: c")]);
    // No data: nothing dispatched, and the event type does not leak into the next event.
    assert_eq!(parse("event: x\n\nevent\ndata: y\n\n"), [ok("y")]);
    // An unfinished event at the end of the stream is discarded.
    assert_eq!(parse("data: a\n\ndata: b\n"), [ok("a")]);
    assert_eq!(parse("data: a\n\ndata: b"), [ok("a")]);
}

#[test]
fn ids_are_sticky_and_retry_must_be_digits() {
    let input = "id: 1\ndata: a\n\ndata: b\n\nid: x\0y\ndata: c\n\nid\ndata: d\n\n\
                 retry: 1500\ndata: e\n\nretry: 15x\nretry: \nretry: 99999999999999999999\ndata: f\n\n";
    let with = |id: Option<&str>, retry: Option<u64>, data: &str| {
        Ok(SseEvent {
            id: id.map(Into::into),
            retry,
            ..event(data)
        })
    };
    let mut parser = SseParser::new(1 << 20);
    let expected = [
        with(Some("1"), None, "a"),
        with(Some("1"), None, "b"),
        with(Some("1"), None, "c"),
        with(None, None, "d"),
        with(None, Some(1500), "e"),
        with(None, None, "f"),
    ];
    assert_eq!(run(&mut parser, [input.as_bytes()]), expected);
    assert_eq!(parser.retry(), Some(1500));
    // `id` and `retry` in a block without data still take effect.
    assert_eq!(run(&mut parser, [&b"id: 42\nretry: 7\n\n"[..]]), []);
    assert_eq!(
        (parser.last_event_id(), parser.retry()),
        (Some("42"), Some(7))
    );
}

#[test]
fn line_endings_comments_and_bom() {
    let expected = [ok("a\nb"), ok("c")];
    for input in [
        "data: a\r\ndata: b\r\n\r\ndata: c\r\r",
        "data: a\rdata: b\n\rdata: c\n\n",
    ] {
        assert_eq!(parse(input), expected, "{input:?}");
    }
    // A CR ending one chunk and an LF starting the next are one line ending, not two.
    let mut parser = SseParser::new(100);
    assert_eq!(
        run(
            &mut parser,
            [&b"data: a\r"[..], b"\ndata: b\r", b"\n\r", b"\n"]
        ),
        [ok("a\nb")]
    );
    let mut parser = SseParser::new(100);
    let out = run(&mut parser, [&b":hi\n: keep-alive\ndata: x\n:\n\n"[..]]);
    assert_eq!((out, parser.comments()), (vec![ok("x")], 3));
    // A BOM is skipped at the very start only, even split across chunks.
    let mut parser = SseParser::new(100);
    assert_eq!(
        run(&mut parser, [&b"\xEF"[..], b"\xBB", b"\xBFdata: x\n\n"]),
        [ok("x")]
    );
    assert_eq!(parse("\u{FEFF}data: x\n\n\u{FEFF}data: y\n\n"), [ok("x")]);
}

#[test]
fn utf8_split_across_chunks_decodes_and_invalid_is_replaced() {
    let input = "data: é€😀\n\n".as_bytes();
    let mut parser = SseParser::new(100);
    assert_eq!(run(&mut parser, input.chunks(1)), [ok("é€😀")]);
    let mut parser = SseParser::new(100);
    let out = run(&mut parser, [&b"data: a\xffb\xe2\x82\n\n"[..]]);
    assert_eq!(out, [ok("a\u{FFFD}b\u{FFFD}")]);
}

#[test]
fn oversized_lines_and_events_are_reported_once_and_skipped() {
    let error = SseError::EventTooLarge { limit: 16 };
    let too_large: Outcome = Err(error.clone());
    // A long line, whole or split.
    let input = b"data: 0123456789abcdef\nid: 5\ndata: x\n\ndata: ok\n\n";
    for size in [1, 3, input.len()] {
        let mut parser = SseParser::new(16);
        assert_eq!(
            run(&mut parser, input.chunks(size)),
            [too_large.clone(), ok("ok")]
        );
        assert_eq!(
            parser.last_event_id(),
            None,
            "fields of a discarded event are ignored"
        );
    }
    // An event whose lines fit but whose data does not.
    let mut parser = SseParser::new(16);
    let out = run(
        &mut parser,
        [&b"data: 0123456\ndata: 0123456\ndata: 0\n\ndata: ok\n\n"[..]],
    );
    assert_eq!(out, [too_large.clone(), ok("ok")]);
    // An over-long comment is skipped without harming the event around it.
    let mut parser = SseParser::new(16);
    let out = run(
        &mut parser,
        [&b"data: a\n: 0123456789abcdefghij\ndata: b\n\n"[..]],
    );
    assert_eq!((out, parser.comments()), (vec![ok("a\nb")], 1));
    assert_eq!(
        error.to_string(),
        "server-sent event larger than the limit of 16 bytes"
    );
}

/// Fuzz regression (sse_parser): invalid UTF-8 decodes to U+FFFD, three bytes for one, so an
/// `event` or `id` line within the limit could decode to three times it, past the documented
/// bound of the buffer. The limit applies to decoded field values, as it does to `data`.
#[test]
fn fields_that_decode_larger_than_the_limit_are_too_large() {
    let too_large: Outcome = Err(SseError::EventTooLarge { limit: 16 });
    for field in ["event", "id"] {
        let mut parser = SseParser::new(16);
        let mut input = format!("{field}:").into_bytes();
        input.extend_from_slice(&[0xff; 10]); // 16 bytes on the wire, 30 decoded
        input.extend_from_slice(b"\ndata: x\n\ndata: ok\n\n");
        parser.push(&input);
        assert!(parser.buffered_len() <= 3 * 16);
        assert_eq!(drain(&mut parser), [too_large.clone(), ok("ok")], "{field}");
        assert_eq!(parser.last_event_id(), None);
    }
    // Exactly the limit, decoded, is fine.
    let mut parser = SseParser::new(16);
    parser.push(b"event:\xff\xff\xff\xff\xff\n");
    parser.push(b"id:\xff\xff\xff\xff\xff\ndata: x\n\n");
    let replaced = "\u{FFFD}".repeat(5);
    assert_eq!(
        drain(&mut parser),
        [Ok(SseEvent {
            event: Some(replaced.clone()),
            id: Some(replaced),
            ..event("x")
        })]
    );
}

#[test]
fn a_flood_without_line_end_stays_bounded() {
    let limit = 1 << 20;
    let mut parser = SseParser::new(limit);
    parser.push(b"data: ");
    let chunk = vec![b'x'; 64 * 1024];
    let mut errors = 0;
    for _ in 0..(100 << 20) / chunk.len() {
        parser.push(&chunk);
        errors += drain(&mut parser).len();
        assert!(parser.buffered_len() <= limit);
    }
    assert_eq!(errors, 1);
    parser.push(b"\n\ndata: ok\n\n");
    assert_eq!(drain(&mut parser), [ok("ok")]);
}

#[test]
fn finish_reports_discarded_input_and_resets_for_a_new_stream() {
    let mut parser = SseParser::new(100);
    parser.push(b"data: a\n\n");
    assert!(!parser.finish());
    parser.push(b"id: 3\ndata: b");
    assert!(parser.finish());
    parser.push(b"\xEF\xBB\xBFdata: c\n\n");
    assert!(!parser.finish());
    assert_eq!(
        drain(&mut parser),
        [
            ok("a"),
            Ok(SseEvent {
                id: Some("3".into()),
                ..event("c")
            })
        ]
    );
}

/// One generated event and how it is written.
#[derive(Debug, Clone)]
struct Gen {
    comment: Option<String>,
    event: Option<String>,
    id: Option<String>,
    retry: Option<u64>,
    data: Vec<String>,
    /// Write `field:value` rather than `field: value` where that keeps the value.
    tight: bool,
}

fn no_newlines() -> impl Strategy<Value = String> {
    any::<String>().prop_map(|s| s.replace(['\r', '\n'], ""))
}

fn arb_event() -> impl Strategy<Value = Gen> {
    (
        prop::option::of(no_newlines()),
        prop::option::of(no_newlines().prop_filter("empty is `message`", |t| !t.is_empty())),
        prop::option::of(prop_oneof![
            no_newlines(),
            Just(String::new()),
            Just("a\0b".to_owned())
        ]),
        prop::option::of(any::<u64>()),
        prop::collection::vec(no_newlines(), 1..4),
        any::<bool>(),
    )
        .prop_map(|(comment, event, id, retry, data, tight)| Gen {
            comment,
            event,
            id,
            retry,
            data,
            tight,
        })
}

/// The stream's lines, each with its terminator (0: LF, 1: CR, 2: CRLF).
fn serialise(events: &[Gen], bom: bool, ends: &[u8]) -> Vec<u8> {
    let mut lines = Vec::new();
    for g in events {
        let field = |name: &str, value: &str| {
            let sep = if g.tight && !value.starts_with(' ') {
                ":"
            } else {
                ": "
            };
            format!("{name}{sep}{value}")
        };
        lines.extend(g.comment.as_ref().map(|c| format!(":{c}")));
        lines.extend(g.event.as_ref().map(|e| field("event", e)));
        lines.extend(g.id.as_ref().map(|i| field("id", i)));
        lines.extend(g.retry.map(|r| field("retry", &r.to_string())));
        lines.extend(g.data.iter().map(|d| field("data", d)));
        lines.push(String::new());
    }
    let mut out = if bom {
        b"\xEF\xBB\xBF".to_vec()
    } else {
        Vec::new()
    };
    let mut after_cr = false;
    for (i, line) in lines.iter().enumerate() {
        let mut end = ends[i % ends.len()];
        // A CR then an empty LF-terminated line would read as one CRLF.
        if after_cr && line.is_empty() && end == 0 {
            end = 2;
        }
        out.extend_from_slice(line.as_bytes());
        out.extend_from_slice([&b"\n"[..], b"\r", b"\r\n"][usize::from(end)]);
        after_cr = end == 1;
    }
    out
}

fn expected(events: &[Gen]) -> Vec<Outcome> {
    let mut last_id = String::new();
    events
        .iter()
        .map(|g| {
            if let Some(id) = g.id.as_ref().filter(|id| !id.contains('\0')) {
                last_id.clone_from(id);
            }
            Ok(SseEvent {
                event: g.event.clone(),
                data: g.data.join("\n"),
                id: Some(last_id.clone()).filter(|id| !id.is_empty()),
                retry: g.retry,
            })
        })
        .collect()
}

fn split_at<'a>(input: &'a [u8], cuts: &[prop::sample::Index]) -> Vec<&'a [u8]> {
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c.index(input.len() + 1)).collect();
    cuts.sort_unstable();
    cuts.push(input.len());
    let mut start = 0;
    cuts.into_iter()
        .map(|end| {
            let chunk = &input[start..end];
            start = end;
            chunk
        })
        .collect()
}

proptest! {
    #[test]
    fn serialised_events_parse_back_under_any_chunking(
        events in prop::collection::vec(arb_event(), 0..6),
        bom in any::<bool>(),
        ends in prop::collection::vec(0u8..3, 1..8),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..16),
    ) {
        let input = serialise(&events, bom, &ends);
        let comments = events.iter().filter(|g| g.comment.is_some()).count() as u64;
        let mut whole = SseParser::new(1 << 20);
        prop_assert_eq!(run(&mut whole, [&input[..]]), expected(&events));
        prop_assert_eq!(whole.comments(), comments);
        let mut split = SseParser::new(1 << 20);
        prop_assert_eq!(run(&mut split, split_at(&input, &cuts)), expected(&events));
        prop_assert_eq!(split.comments(), comments);
    }

    #[test]
    fn any_bytes_parse_the_same_under_any_chunking(
        input in prop::collection::vec(
            prop_oneof![
                4 => any::<u8>(),
                2 => prop::sample::select(&b"\n\r:data event id retry \xEF\xBB\xBF"[..]),
            ],
            0..300,
        ),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..16),
        limit in 1usize..64,
    ) {
        let mut whole = SseParser::new(limit);
        whole.push(&input);
        let whole_out = drain(&mut whole);
        let mut split = SseParser::new(limit);
        let mut split_out = Vec::new();
        for chunk in split_at(&input, &cuts) {
            split.push(chunk);
            split_out.extend(drain(&mut split));
        }
        prop_assert!(whole.buffered_len() <= 3 * limit && split.buffered_len() <= 3 * limit);
        for event in whole_out.iter().flatten() {
            prop_assert!(event.data.len() < limit);
            prop_assert!(event.event.as_ref().is_none_or(|e| e.len() <= limit));
            prop_assert!(event.id.as_ref().is_none_or(|id| id.len() <= limit));
        }
        prop_assert_eq!(whole_out, split_out);
        prop_assert_eq!(whole.comments(), split.comments());
        prop_assert_eq!(whole.last_event_id(), split.last_event_id());
        prop_assert_eq!(whole.retry(), split.retry());
        prop_assert_eq!(whole.finish(), split.finish());
    }
}
