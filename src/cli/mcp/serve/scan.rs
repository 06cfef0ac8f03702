//! What the relay needs of a client's line, read in one pass without parsing it into values.
//! Part of [`super`].
//!
//! The relay forwards a message byte for byte; it only needs its kind, its id and its method
//! (a request's task is registered by id, a `tools/call` is never sent twice, a notification
//! holds back later messages). The full parse ([`parse_message`]) builds every member and
//! checks the params' JSON: most of the bridge's instructions per message once the rest was
//! made lean. [`light`] reads the top level of the object and walks over the values,
//! checking them as JSON as it goes (strings, literals, numbers, nesting), and gives up
//! (`None`) on anything it does not take on: a response, a duplicated member, an escaped
//! member name or method, `initialize` and `notifications/cancelled` (whose params the relay
//! reads), nesting deeper than 64, or anything that is not valid JSON. The caller then runs
//! the full parse, which answers every malformed line exactly as before.
//!
//! [`parse_message`]: revka_mcp::jsonrpc::parse_message

use revka_mcp::jsonrpc::Id;
use serde_json::value::RawValue;

/// A request or a notification, as the relay needs it.
#[derive(Debug, PartialEq)]
pub(super) struct Light<'a> {
    /// The id's JSON text; `None` for a notification.
    pub(super) id: Option<&'a str>,
    /// The method, which had no escapes.
    pub(super) method: &'a str,
}

impl Light<'_> {
    /// The request's [`Id`], if it is one.
    pub(super) fn id(&self) -> Option<Id> {
        let text = self.id?;
        if let Ok(n) = text.parse::<u64>()
            && !text.starts_with('0')
        {
            return Some(Id::from(n));
        }
        let raw: &RawValue = serde_json::from_str(text).ok()?;
        Id::from_json(raw)
    }
}

/// Reads a line's kind, id and method; `None` when the full parse must decide (module docs).
pub(super) fn light(line: &[u8]) -> Option<Light<'_>> {
    let text = std::str::from_utf8(line).ok()?;
    let mut s = Scanner { b: line, at: 0 };
    s.space();
    s.eat(b'{')?;
    let (mut version, mut id, mut method, mut params) = (false, None, None, false);
    s.space();
    if s.peek()? == b'}' {
        return None;
    }
    loop {
        s.space();
        let key = s.plain_string()?;
        s.space();
        s.eat(b':')?;
        s.space();
        let start = s.at;
        s.value()?;
        let value = &text[start..s.at];
        match key {
            b"jsonrpc" if !version && value == "\"2.0\"" => version = true,
            b"id" if id.is_none() && !value.starts_with(['{', '[', 't', 'f', 'n']) => {
                id = Some(value)
            }
            b"method" if method.is_none() => method = Some(value),
            b"params" if !params && (value.starts_with(['{', '[']) || value == "null") => {
                params = true
            }
            b"jsonrpc" | b"id" | b"method" | b"params" | b"result" | b"error" => return None,
            _ => {}
        }
        s.space();
        match s.next()? {
            b',' => {}
            b'}' => break,
            _ => return None,
        }
    }
    s.space();
    if s.at != line.len() || !version {
        return None;
    }
    let method = method?.strip_prefix('"')?.strip_suffix('"')?;
    if method.contains('\\') || matches!(method, "initialize" | "notifications/cancelled") {
        return None;
    }
    Some(Light { id, method })
}

/// A cursor over a line.
struct Scanner<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Scanner<'a> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.at).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.at += 1;
        Some(b)
    }

    fn eat(&mut self, want: u8) -> Option<()> {
        (self.next()? == want).then_some(())
    }

    /// Skips JSON whitespace.
    fn space(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.at += 1;
        }
    }

    /// Moves past the next quote or backslash of a string, and returns it; `None` if a control
    /// character (not allowed in a JSON string) comes before it.
    fn past_special(&mut self) -> Option<u8> {
        let rest = self.b.get(self.at..)?;
        let skip = memchr::memchr2(b'"', b'\\', rest)?;
        // No early exit: this loop is vectorised.
        if rest[..skip]
            .iter()
            .fold(false, |control, &b| control | (b < 0x20))
        {
            return None;
        }
        self.at += skip + 1;
        Some(rest[skip])
    }

    /// A string with no escape (a member name): its bytes between the quotes.
    fn plain_string(&mut self) -> Option<&'a [u8]> {
        self.eat(b'"')?;
        let start = self.at;
        match self.past_special()? {
            b'"' => Some(&self.b[start..self.at - 1]),
            _ => None,
        }
    }

    /// Walks over a string (at its opening quote), checking its escapes.
    fn string(&mut self) -> Option<()> {
        self.eat(b'"')?;
        loop {
            match self.past_special()? {
                b'"' => return Some(()),
                b'\\' => match self.next()? {
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => {}
                    b'u' => {
                        let hex = self.b.get(self.at..self.at + 4)?;
                        if !hex.iter().all(u8::is_ascii_hexdigit) {
                            return None;
                        }
                        self.at += 4;
                    }
                    _ => return None,
                },
                _ => return None,
            }
        }
    }

    /// Walks over any JSON value, checking it; objects and arrays up to 64 deep.
    fn value(&mut self) -> Option<()> {
        // One bit per open container: set for an object, clear for an array.
        let mut stack: u64 = 0;
        let mut depth = 0u32;
        loop {
            // A value.
            match self.peek()? {
                b'{' | b'[' => {
                    let object = self.next()? == b'{';
                    if depth == 64 {
                        return None;
                    }
                    stack = (stack << 1) | u64::from(object);
                    depth += 1;
                    self.space();
                    let close = if object { b'}' } else { b']' };
                    if self.peek()? == close {
                        self.at += 1;
                        stack >>= 1;
                        depth -= 1;
                    } else {
                        if object {
                            self.member_name()?;
                        }
                        continue;
                    }
                }
                b'"' => self.string()?,
                b't' => self.literal(b"true")?,
                b'f' => self.literal(b"false")?,
                b'n' => self.literal(b"null")?,
                _ => self.number()?,
            }
            // After a value: the end of the containers it closes, or the next one.
            loop {
                if depth == 0 {
                    return Some(());
                }
                self.space();
                let object = stack & 1 == 1;
                match (self.next()?, object) {
                    (b',', true) => {
                        self.space();
                        self.member_name()?;
                        break;
                    }
                    (b',', false) => {
                        self.space();
                        break;
                    }
                    (b'}', true) | (b']', false) => {
                        stack >>= 1;
                        depth -= 1;
                    }
                    _ => return None,
                }
            }
        }
    }

    /// A member's name and its colon, up to its value.
    fn member_name(&mut self) -> Option<()> {
        self.string()?;
        self.space();
        self.eat(b':')?;
        self.space();
        Some(())
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        let end = self.at + word.len();
        (self.b.get(self.at..end)? == word).then(|| self.at = end)
    }

    /// A number as JSON writes it: `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`.
    fn number(&mut self) -> Option<()> {
        if self.peek()? == b'-' {
            self.at += 1;
        }
        match self.next()? {
            b'0' => {}
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        if self.peek() == Some(b'.') {
            self.at += 1;
            self.first_digit()?;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.at += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.at += 1;
            }
            self.first_digit()?;
        }
        Some(())
    }

    fn first_digit(&mut self) -> Option<()> {
        if !self.next()?.is_ascii_digit() {
            return None;
        }
        self.digits();
        Some(())
    }

    fn digits(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.at += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use revka_mcp::jsonrpc::{Incoming, parse_message};

    use super::*;

    #[test]
    fn requests_and_notifications_are_read_in_any_member_order() {
        let cases = [
            (
                r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"a","arguments":{"x":[1,2.5e-3,{"y":null}],"s":"q\"\u00e9\n"}}}"#,
                Some("7"),
                "tools/call",
            ),
            (
                r#" { "method" : "tools/list" , "params" : { } , "jsonrpc" : "2.0" , "id" : "a-1" } "#,
                Some("\"a-1\""),
                "tools/list",
            ),
            (
                r#"{"method":"notifications/progress","params":{"progressToken":1,"progress":0.5},"jsonrpc":"2.0"}"#,
                None,
                "notifications/progress",
            ),
            (
                r#"{"jsonrpc":"2.0","id":-1.5E+3,"method":"ping","params":null,"extra":[true,false,[]]}"#,
                Some("-1.5E+3"),
                "ping",
            ),
        ];
        for (line, id, method) in cases {
            let light = light(line.as_bytes()).unwrap_or_else(|| panic!("{line}"));
            assert_eq!(light, Light { id, method }, "{line}");
            // The full parse agrees.
            match parse_message(line.as_bytes()).unwrap() {
                Incoming::Request(r) => {
                    assert_eq!(r.method, method);
                    assert_eq!(light.id().unwrap().key(), r.id.key());
                }
                Incoming::Notification(n) => {
                    assert_eq!(n.method, method);
                    assert!(light.id.is_none());
                }
                Incoming::Response(_) => panic!("{line}"),
            }
        }
    }

    /// Every line the light read declines goes to the full parse; none of these may be taken,
    /// whether the full parse accepts them (responses, the methods whose params the relay reads,
    /// escapes in names) or not (anything that is not valid JSON, or not a valid message).
    #[test]
    fn what_the_full_parse_must_judge_is_declined() {
        let deep = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"m","params":{}1{}}}"#,
            "[".repeat(70),
            "]".repeat(70)
        );
        let lines = [
            r#"{"jsonrpc":"2.0","id":1,"result":{}}"#,
            r#"{"jsonrpc":"2.0","id":1,"error":{"code":1,"message":"x"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}"#,
            r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"to\u006fls/call"}"#,
            r#"{"jsonrpc":"2.0","i\u0064":1,"method":"ping"}"#,
            r#"{"jsonrpc":"2.0","id":1,"id":2,"method":"ping"}"#,
            r#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#,
            r#"{"jsonrpc":"2.0","id":{},"method":"ping"}"#,
            r#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#,
            r#"{"id":1,"method":"ping"}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":7}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"ping","params":3}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"ping","params":{"a":tru}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"ping","params":{"a":[}]}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"ping","params":{"a":01}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"ping","params":{"a":"\x"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"ping","params":{"a":1,}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"ping","params":{"a" 1}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"ping"} x"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"ping""#,
            "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"p\ting\"}",
            r#"{}"#,
            r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#,
            "this is not json",
            &deep,
        ];
        for line in lines {
            assert_eq!(light(line.as_bytes()), None, "{line}");
        }
        assert_eq!(
            light(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"\xff\"}"),
            None
        );
    }

    #[test]
    fn ids_are_the_ones_the_full_parse_makes() {
        for id in [
            "0",
            "1",
            "18446744073709551615",
            "-3",
            "1.0",
            "\"x\"",
            "\"\\u0041\"",
        ] {
            let line = format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"ping"}}"#);
            let Ok(Incoming::Request(full)) = parse_message(line.as_bytes()) else {
                panic!("{line}");
            };
            let light = light(line.as_bytes()).unwrap().id().unwrap();
            assert_eq!(light.json(), full.id.json(), "{line}");
            assert_eq!(light.key(), full.id.key(), "{line}");
        }
    }
}
