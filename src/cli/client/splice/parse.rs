//! Where each object and member of a JSON text is, by byte offset.
//!
//! Part of the splice editor ([`super`]). It reads the *plain* text (comments and trailing
//! commas blanked by [`crate::cli::jsonc`], every offset unchanged), which the caller has
//! already checked is valid JSON; this parser only records spans, and still fails cleanly
//! rather than panicking on anything else.

/// An object: its braces and its members in file order (duplicates kept).
#[derive(Debug)]
pub(super) struct Object {
    /// Offset of `{`.
    pub(super) open: usize,
    /// Offset of `}`.
    pub(super) close: usize,
    /// The members, as written.
    pub(super) members: Vec<Member>,
}

/// One `"key": value` of an object.
#[derive(Debug)]
pub(super) struct Member {
    /// The key, unescaped.
    pub(super) key: String,
    /// Offset of the key's opening quote.
    pub(super) key_start: usize,
    /// The value.
    pub(super) value: Value,
}

/// A value's span, and its members when it is an object.
#[derive(Debug)]
pub(super) struct Value {
    /// Offset of its first byte.
    pub(super) start: usize,
    /// Offset just past its last byte.
    pub(super) end: usize,
    /// The object, when the value is one.
    pub(super) object: Option<Object>,
}

/// Nesting deeper than this is refused (serde_json's own limit is 128).
const MAX_DEPTH: usize = 128;

/// The document's top-level value, or the offset where the text stops being JSON.
pub(super) fn document(plain: &str) -> Result<Value, usize> {
    let mut parser = Parser {
        text: plain.as_bytes(),
        pos: 0,
        depth: 0,
    };
    let value = parser.value()?;
    parser.skip_ws();
    if parser.pos != parser.text.len() {
        return Err(parser.pos);
    }
    Ok(value)
}

/// A cursor over the plain text.
struct Parser<'t> {
    text: &'t [u8],
    pos: usize,
    depth: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.text.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn expect(&mut self, byte: u8) -> Result<(), usize> {
        self.skip_ws();
        if self.peek() == Some(byte) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.pos)
        }
    }

    fn value(&mut self) -> Result<Value, usize> {
        self.skip_ws();
        let start = self.pos;
        let object = match self.peek().ok_or(start)? {
            b'{' => Some(self.object()?),
            b'[' => {
                self.array()?;
                None
            }
            b'"' => {
                self.string()?;
                None
            }
            _ => {
                self.scalar()?;
                None
            }
        };
        Ok(Value {
            start,
            end: self.pos,
            object,
        })
    }

    fn nest(&mut self) -> Result<(), usize> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.pos);
        }
        Ok(())
    }

    fn object(&mut self) -> Result<Object, usize> {
        self.nest()?;
        let open = self.pos;
        self.pos += 1;
        let mut members = Vec::new();
        self.skip_ws();
        if self.peek() != Some(b'}') {
            loop {
                self.skip_ws();
                let key_start = self.pos;
                if self.peek() != Some(b'"') {
                    return Err(self.pos);
                }
                self.string()?;
                let key_end = self.pos;
                let key = serde_json::from_slice(&self.text[key_start..key_end])
                    .map_err(|_| key_start)?;
                self.expect(b':')?;
                let value = self.value()?;
                members.push(Member {
                    key,
                    key_start,
                    value,
                });
                self.skip_ws();
                match self.peek() {
                    Some(b',') => self.pos += 1,
                    Some(b'}') => break,
                    _ => return Err(self.pos),
                }
            }
        }
        let close = self.pos;
        self.pos += 1;
        self.depth -= 1;
        Ok(Object {
            open,
            close,
            members,
        })
    }

    fn array(&mut self) -> Result<(), usize> {
        self.nest()?;
        self.pos += 1;
        self.skip_ws();
        if self.peek() != Some(b']') {
            loop {
                self.value()?;
                self.skip_ws();
                match self.peek() {
                    Some(b',') => self.pos += 1,
                    Some(b']') => break,
                    _ => return Err(self.pos),
                }
            }
        }
        self.pos += 1;
        self.depth -= 1;
        Ok(())
    }

    /// A string, from its opening quote to just past its closing one.
    fn string(&mut self) -> Result<(), usize> {
        let start = self.pos;
        self.pos += 1;
        loop {
            match self.peek().ok_or(start)? {
                b'"' => {
                    self.pos += 1;
                    return Ok(());
                }
                b'\\' => self.pos += 2,
                _ => self.pos += 1,
            }
        }
    }

    /// A number, `true`, `false` or `null`: everything up to the next delimiter.
    fn scalar(&mut self) -> Result<(), usize> {
        let start = self.pos;
        while let Some(b) = self.peek() {
            if matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r') {
                break;
            }
            self.pos += 1;
        }
        if self.pos == start {
            return Err(start);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::document;

    #[test]
    fn spans_of_objects_members_and_values() {
        let text = r#" {"a": [1, {"x": 2}], "b\u0021": {"c": "}\"{", "d": {}} , "e": null}"#;
        let root = document(text).unwrap();
        let obj = root.object.as_ref().unwrap();
        assert_eq!(obj.open, 1);
        assert_eq!(obj.close, text.len() - 1);
        let keys: Vec<&str> = obj.members.iter().map(|m| m.key.as_str()).collect();
        assert_eq!(keys, ["a", "b!", "e"], "keys are unescaped");
        let a = &obj.members[0];
        assert_eq!(&text[a.value.start..a.value.end], r#"[1, {"x": 2}]"#);
        assert!(a.value.object.is_none());
        let b = &obj.members[1];
        assert!(text[b.key_start..].starts_with(r#""b\u0021""#));
        let inner = b.value.object.as_ref().unwrap();
        assert_eq!(
            &text[inner.members[0].value.start..inner.members[0].value.end],
            r#""}\"{""#
        );
        let d = &inner.members[1].value;
        assert_eq!(&text[d.start..d.end], "{}");
        assert!(d.object.as_ref().unwrap().members.is_empty());
        assert_eq!(
            &text[obj.members[2].value.start..obj.members[2].value.end],
            "null"
        );
    }

    #[test]
    fn what_is_not_json_is_an_offset_not_a_panic() {
        assert_eq!(document("").unwrap_err(), 0);
        assert_eq!(document("{\"a\": 1").unwrap_err(), 7);
        assert_eq!(document("{\"a\" 1}").unwrap_err(), 5);
        assert_eq!(document("{} x").unwrap_err(), 3);
        assert!(document("\"unterminated").is_err());
        assert!(document(&"[".repeat(200)).is_err(), "too deep");
    }
}
