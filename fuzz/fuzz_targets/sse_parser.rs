//! The SSE parser on arbitrary bytes in arbitrary chunks (split UTF-8, CR/LF/CRLF split across
//! chunks, BOMs, giant lines and events over a small limit).
//!
//! Checked: chunking never changes the outcome (events, errors, comments, last event id, retry,
//! what `finish` reports); buffered bytes stay within 3 × the limit; no dispatched event is
//! larger than the limit; and after `finish` the parser reads a fresh valid stream correctly.

#![no_main]

#[path = "../common/plan.rs"]
mod plan;

use revka_mcp::sse::{SseError, SseEvent, SseParser};

fn drain(parser: &mut SseParser, out: &mut Vec<Result<SseEvent, SseError>>) {
    while let Some(event) = parser.next_event() {
        out.push(event);
    }
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&limit, data)) = data.split_first() else {
        return;
    };
    let limit = usize::from(limit) + 1;
    let (plan, stream) = plan::split(data);

    let mut whole = SseParser::new(limit);
    let mut whole_out = Vec::new();
    whole.push(stream);
    assert!(whole.buffered_len() <= 3 * limit);
    drain(&mut whole, &mut whole_out);

    let mut split = SseParser::new(limit);
    let mut split_out = Vec::new();
    for chunk in plan::chunks(&plan, stream) {
        split.push(chunk);
        assert!(split.buffered_len() <= 3 * limit);
        drain(&mut split, &mut split_out);
    }

    assert_eq!(whole_out, split_out);
    assert_eq!(whole.comments(), split.comments());
    assert_eq!(whole.last_event_id(), split.last_event_id());
    assert_eq!(whole.retry(), split.retry());
    for event in whole_out.iter().flatten() {
        assert!(event.data.len() < limit, "data over the limit");
        assert!(event.event.as_ref().is_none_or(|e| e.len() <= limit));
        assert!(event.id.as_ref().is_none_or(|id| id.len() <= limit));
    }
    assert_eq!(whole.finish(), split.finish());

    // A new stream after `finish` parses from a clean state.
    if limit >= "data: ok".len() {
        split.push(b"data: ok\n\n");
        let mut fresh = Vec::new();
        drain(&mut split, &mut fresh);
        assert_eq!(fresh.len(), 1, "{fresh:?}");
        let event = fresh.pop().unwrap().expect("a valid event");
        assert_eq!((event.data.as_str(), event.event), ("ok", None));
    }
});
