//! JSON with comments and trailing commas (the config files of VS Code, Cursor and Gemini CLI)
//! made plain JSON.
//!
//! Shared by the command line's readers of other clients' files: `revka mcp import` reads
//! servers from them, `revka client` edits them in place. Comments and trailing commas become
//! spaces of the same width in bytes, so every byte offset, line and column stays where it
//! was: a parse error still points at the right spot, and a position found in the plain text
//! is the same position in the original.

/// `text` with `//` and `/* */` comments and trailing commas blanked out (strings untouched).
pub(crate) fn strip(text: &str) -> String {
    let uncommented = blank_comments(text);
    blank_trailing_commas(&uncommented)
}

/// Replaces comments with spaces (newlines kept, strings and commas untouched): the text in
/// which a trailing comma can still be told from a comma inside a comment.
pub(crate) fn blank_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    let mut in_string = false;
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            match c {
                '\\' => {
                    if let Some(escaped) = chars.next() {
                        out.push(escaped);
                    }
                }
                '"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match (c, chars.peek()) {
            ('"', _) => {
                in_string = true;
                out.push(c);
            }
            ('/', Some('/')) => {
                out.push(' ');
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                        break;
                    }
                    blank(&mut out, c);
                }
            }
            ('/', Some('*')) => {
                chars.next();
                out.push_str("  ");
                let mut last = ' ';
                for c in chars.by_ref() {
                    blank(&mut out, c);
                    if last == '*' && c == '/' {
                        break;
                    }
                    last = c;
                }
            }
            _ => out.push(c),
        }
    }
    out
}

/// Pushes a character of a comment as it is blanked: line breaks (`\n`, `\r`) stay, the rest
/// become as many spaces as the character has bytes, so byte offsets after it are unchanged.
fn blank(out: &mut String, c: char) {
    if matches!(c, '\n' | '\r') {
        out.push(c);
    } else {
        out.extend(std::iter::repeat_n(' ', c.len_utf8()));
    }
}

/// Replaces a `,` followed (after whitespace) by `}` or `]` with a space.
fn blank_trailing_commas(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut in_string = false;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if in_string {
            out.push(c);
            if c == '\\' {
                if let Some(&next) = chars.get(i + 1) {
                    out.push(next);
                    i += 1;
                }
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if c == ',' {
            let next = chars[i + 1..].iter().find(|c| !c.is_whitespace());
            out.push(if matches!(next, Some('}' | ']')) {
                ' '
            } else {
                ','
            });
        } else {
            out.push(c);
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::strip;

    #[test]
    fn comments_and_trailing_commas_go_and_strings_stay() {
        let jsonc = r#"{
  // the servers
  "servers": {
    "a": { "command": "npx", "args": ["-y", "//not a comment", "/* nor this */"], },
    /* block
       comment */ "b": { "url": "http://x/\"//\"" },
  },
}"#;
        let json = strip(jsonc);
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(value["servers"]["a"]["args"][1], "//not a comment");
        assert_eq!(value["servers"]["a"]["args"][2], "/* nor this */");
        assert_eq!(value["servers"]["b"]["url"], "http://x/\"//\"");
        assert_eq!(json.lines().count(), jsonc.lines().count(), "lines kept");
        assert_eq!(strip("{\"a\": [1, 2 , ] }"), "{\"a\": [1, 2   ] }");
    }

    #[test]
    fn byte_offsets_survive_multibyte_characters_in_comments() {
        let jsonc = "{ // café ☕\n  \"a\": /* é */ 1, }";
        let json = strip(jsonc);
        assert_eq!(json.len(), jsonc.len());
        assert_eq!(json.find("\"a\""), jsonc.find("\"a\""));
        assert_eq!(json.find('1'), jsonc.find('1'));
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(value["a"], 1);
    }
}
