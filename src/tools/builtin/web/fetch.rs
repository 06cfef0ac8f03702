//! `web_fetch`: GETs a page through the SSRF-checked client ([`super::client`]) and returns
//! it as readable text: HTML converted by `html2text` (markdown-style headings, emphasis,
//! lists, and links as numbered footnotes), other text passed through, the title extracted.
//!
//! At most `max_file_bytes` of the body are read and converted, at most `max_output_bytes` of
//! text come back. The conversion runs on a blocking thread. A page nested absurdly deep would
//! cost the HTML parser time quadratic in its depth (its scope checks walk the stack of open
//! elements), so the source is cut where its elements nest deeper than [`MAX_DEPTH`]
//! ([`limit_nesting`]), and the parsed tree again at the same depth ([`cut_deep`]) before it
//! is rendered: time and memory stay bounded, and the result says the page was cut.

use std::sync::Arc;

use futures::future::BoxFuture;
use reqwest::header::{ACCEPT, HeaderValue};
use serde_json::{Value, json};
use url::Url;

use super::client::{self, Net, Request};
use super::http_request::parse_url;
use super::{deadline, timed_out};
use crate::security::Effect;
use crate::tools::BuiltinError;
use crate::tools::builtin::{Args, Cx, PolicyTool, capped, failed, ok_text};

/// Element nesting kept for the conversion; deeper content is dropped (and said so). Real
/// pages nest well under a hundred.
const MAX_DEPTH: usize = 256;

/// Elements that have no content (never on the stack of open elements).
const VOID: [&str; 16] = [
    "area", "base", "br", "col", "embed", "hr", "img", "input", "keygen", "link", "meta", "param",
    "source", "track", "wbr", "frame",
];

/// Elements whose end tag is optional (a sibling closes them): not counted as nesting.
const OPTIONAL_END: [&str; 14] = [
    "p", "li", "dt", "dd", "option", "optgroup", "tr", "td", "th", "thead", "tbody", "tfoot", "rt",
    "rp",
];

/// Elements whose content is raw text up to their end tag (`noscript` is not: the parser runs
/// with scripting off, so its content is markup).
const RAW_TEXT: [&str; 8] = [
    "script", "style", "textarea", "title", "xmp", "iframe", "noembed", "noframes",
];

/// The wrap width of converted text.
const WIDTH: usize = 100;

/// How much of the start of a page is searched for its `<title>`.
const TITLE_WINDOW: usize = 256 * 1024;

/// The longest title returned.
const MAX_TITLE: usize = 512;

/// The tool.
pub(super) struct WebFetch {
    net: Arc<Net>,
}

impl WebFetch {
    pub(super) fn new(net: Arc<Net>) -> Self {
        Self { net }
    }
}

impl PolicyTool for WebFetch {
    fn name(&self) -> &'static str {
        "web_fetch"
    }

    fn description(&self) -> String {
        let config = self.net.policy().config();
        format!(
            "Fetches a web page (GET) and returns it as readable text: HTML is converted to \
             text with markdown-style headings, lists and emphasis, links as numbered footnotes; \
             plain text, JSON and XML pass through; the page title is returned apart. Reads at \
             most {} bytes of the page and returns at most {} bytes of text (marked \
             `truncated`). Follows redirects (at most {}). Loopback, private, link-local and \
             other internal addresses are refused (after DNS resolution and on every redirect) \
             unless [security] allowed_hosts names them. Deadline: timeout_secs, at most {} s.",
            config.max_file_bytes,
            config.max_output_bytes,
            client::MAX_REDIRECTS,
            config.command_timeout_secs
        )
    }

    fn input_schema(&self) -> Value {
        json!({
            "type": "object",
            "properties": {
                "url": { "type": "string", "description": "An http:// or https:// URL." },
                "timeout_secs": {
                    "type": "integer",
                    "minimum": 1,
                    "description": "Deadline for the fetch; default and maximum [security] \
                                    command_timeout_secs."
                }
            },
            "required": ["url"],
            "additionalProperties": false
        })
    }

    fn effect(&self, _args: &Value) -> Effect {
        Effect::NetworkRead
    }

    fn run(&self, cx: Cx, args: Value) -> BoxFuture<'static, Result<Value, BuiltinError>> {
        let net = self.net.clone();
        Box::pin(async move { call(&net, &cx, &args).await })
    }
}

async fn call(net: &Net, cx: &Cx, args: &Value) -> Result<Value, BuiltinError> {
    let a = Args::new(args)?;
    let url = parse_url(a.str("url")?)?;
    let timeout = deadline(&a, net.policy())?;
    let config = net.policy().config();
    let (input_cap, output_cap) = (config.max_file(), config.max_output());
    let what = format!("GET {}", client::shown(&url));
    let mut request = Request::get(url);
    request.headers.insert(
        ACCEPT,
        HeaderValue::from_static(
            "text/html,application/xhtml+xml,text/plain;q=0.9,application/json;q=0.8,*/*;q=0.5",
        ),
    );
    let exchange = async {
        let mut response = net.send(request, &[]).await?;
        cx.report(
            1,
            Some(3),
            format!("HTTP {}, reading the page", response.status().as_u16()),
        );
        let (bytes, truncated) = client::read_capped(&mut response.inner, input_cap)
            .await
            .map_err(|e| client::body_failure(&e, &response.url))?;
        Ok::<_, BuiltinError>((response, bytes, truncated))
    };
    let (response, bytes, input_truncated) = tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| timed_out(&what, timeout))??;
    let status = response.status();
    let content_type = response.content_type();
    let media = client::media_type(content_type.as_deref());
    let final_url = client::shown_full(&response.url);
    let mut out = json!({
        "url": final_url,
        "status": status.as_u16(),
        "content_type": content_type,
        "bytes": bytes.len(),
        "input_truncated": input_truncated,
    });
    if !response.redirects.is_empty() {
        out["redirects"] = Value::Array(response.redirects.clone());
    }
    if client::is_binary(content_type.as_deref(), &bytes) {
        return Ok(failed(
            format!(
                "{final_url} answered HTTP {} with a binary body ({}, {} bytes read): not a \
                 page to read as text",
                status.as_u16(),
                content_type.as_deref().unwrap_or("no content type"),
                bytes.len()
            ),
            out,
        ));
    }
    let text = client::decode_text(&bytes, content_type.as_deref());
    let html = match media.as_deref() {
        Some("text/html" | "application/xhtml+xml") => true,
        Some(_) => false,
        None => looks_like_html(&text),
    };
    cx.report(
        2,
        Some(3),
        if html {
            "converting the HTML"
        } else {
            "reading the text"
        },
    );
    let (title, content, cut_deep) = if html {
        let title = title_of(&text);
        let page = response.url.clone();
        let converted = tokio::task::spawn_blocking(move || {
            convert(&text).map(|(text, cut)| (resolve_links(&text, &page), cut))
        })
        .await
        .map_err(|e| BuiltinError::Failed(format!("the HTML conversion stopped: {e}")))?
        .map_err(|e| {
            BuiltinError::Failed(format!("the HTML of {final_url} cannot be converted: {e}"))
        })?;
        (title, converted.0, converted.1)
    } else {
        (None, text, false)
    };
    let (content, truncated) = capped(content.as_bytes(), output_cap);
    out["title"] = json!(title);
    out["format"] = json!(if html { "markdown" } else { "text" });
    out["truncated"] = json!(truncated || input_truncated);
    if cut_deep {
        out["nesting_cut"] = json!(MAX_DEPTH);
    }
    let mut shown = String::new();
    if let Some(title) = &title {
        shown.push_str(&format!("# {title}\n"));
    }
    shown.push_str(&format!(
        "URL: {}\n\n",
        out["url"].as_str().unwrap_or_default()
    ));
    shown.push_str(&content);
    if truncated || input_truncated {
        shown.push_str("\n[… truncated]");
    }
    out["content"] = Value::String(content);
    if !status.is_success() {
        return Ok(failed(
            format!("HTTP {} from {}\n\n{shown}", status.as_u16(), out["url"]),
            out,
        ));
    }
    Ok(ok_text(shown, out))
}

/// The link footnotes of converted text (`[3]: /docs`) with relative targets resolved
/// against the page's URL.
fn resolve_links(text: &str, page: &Url) -> String {
    let mut out = String::with_capacity(text.len() + 256);
    for line in text.split_inclusive('\n') {
        let resolved = line
            .strip_prefix('[')
            .and_then(|rest| rest.split_once("]: "))
            .filter(|(n, _)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|(n, target)| {
                let target = target.trim_end();
                let absolute = page.join(target).ok()?;
                (absolute.as_str() != target).then(|| format!("[{n}]: {absolute}\n"))
            });
        out.push_str(resolved.as_deref().unwrap_or(line));
    }
    out
}

/// Whether text without a content type starts like an HTML document.
fn looks_like_html(text: &str) -> bool {
    let start: String = text
        .trim_start()
        .chars()
        .take(512)
        .collect::<String>()
        .to_ascii_lowercase();
    start.starts_with("<!doctype html") || start.starts_with("<html") || start.contains("<head")
}

/// The text of the first `<title>` in the start of `html`, entities decoded, whitespace
/// collapsed; `None` when there is none or it is empty.
fn title_of(html: &str) -> Option<String> {
    let mut end = html.len().min(TITLE_WINDOW);
    while !html.is_char_boundary(end) {
        end -= 1;
    }
    let window = &html[..end];
    let lower = window.to_ascii_lowercase();
    let open = lower.find("<title")?;
    let after = open + lower[open..].find('>')? + 1;
    let close = after + lower[after..].find("</title")?;
    let raw = &window[after..close];
    let decoded = decode_entities(raw);
    let title = decoded.split_whitespace().collect::<Vec<_>>().join(" ");
    if title.is_empty() {
        return None;
    }
    let (title, _) = capped(title.as_bytes(), MAX_TITLE);
    Some(title)
}

/// Decodes the character references a title holds in practice: the XML five, `&nbsp;` and
/// numeric ones.
fn decode_entities(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        let Some(semi) = tail[..tail.len().min(12)].find(';') else {
            out.push('&');
            rest = &tail[1..];
            continue;
        };
        let entity = &tail[1..semi];
        let decoded = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            "nbsp" => Some(' '),
            _ => entity
                .strip_prefix("#x")
                .or_else(|| entity.strip_prefix("#X"))
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .or_else(|| entity.strip_prefix('#').and_then(|d| d.parse().ok()))
                .and_then(char::from_u32),
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &tail[semi + 1..];
            }
            None => {
                out.push('&');
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// HTML to text: the source cut where it nests deeper than [`MAX_DEPTH`], parsed, the tree
/// cut at [`MAX_DEPTH`], rendered. Also whether anything was cut.
fn convert(html: &str) -> Result<(String, bool), String> {
    let config = html2text::config::plain()
        .allow_width_overflow()
        .no_link_wrapping();
    let (html, source_cut) = limit_nesting(html, MAX_DEPTH);
    let dom = config
        .parse_html(html.as_bytes())
        .map_err(|e| e.to_string())?;
    let cut = cut_deep(&dom.document) || source_cut;
    let tree = config.dom_to_render_tree(&dom).map_err(|e| e.to_string())?;
    let text = config
        .render_to_string(tree, WIDTH)
        .map_err(|e| e.to_string())?;
    Ok((text, cut))
}

/// `html` up to the first start tag that would nest elements deeper than `max` (counted as an
/// HTML parser would, roughly: void elements and elements with optional end tags do not nest,
/// an end tag closes up to its element, raw-text elements and comments are skipped, `/>`
/// closes only inside SVG and MathML), and whether it was cut there. One pass, linear.
fn limit_nesting(html: &str, max: usize) -> (&str, bool) {
    let bytes = html.as_bytes();
    let mut stack: Vec<String> = Vec::new();
    let mut i = 0;
    while let Some(offset) = bytes[i..].iter().position(|&b| b == b'<') {
        let start = i + offset;
        let rest = &bytes[start..];
        if rest.starts_with(b"<!--") {
            match find(bytes, start + 4, b"-->") {
                Some(end) => i = end + 3,
                None => break,
            }
            continue;
        }
        if rest.starts_with(b"<!") || rest.starts_with(b"<?") {
            match bytes[start..].iter().position(|&b| b == b'>') {
                Some(end) => i = start + end + 1,
                None => break,
            }
            continue;
        }
        let closing = rest.starts_with(b"</");
        let name_start = start + if closing { 2 } else { 1 };
        let name_len = bytes[name_start..]
            .iter()
            .take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b':' | b'_'))
            .count();
        if name_len == 0 || !bytes[name_start].is_ascii_alphabetic() {
            i = start + 1;
            continue;
        }
        let name = html[name_start..name_start + name_len].to_ascii_lowercase();
        let Some(end) = tag_end(bytes, name_start + name_len) else {
            break;
        };
        i = end + 1;
        if closing {
            if let Some(at) = stack.iter().rposition(|open| *open == name) {
                stack.truncate(at);
            }
            continue;
        }
        if RAW_TEXT.contains(&name.as_str()) {
            let close = format!("</{name}");
            match find_ci(bytes, i, close.as_bytes()) {
                Some(at) => i = at,
                None => break,
            }
            continue;
        }
        let foreign = stack.iter().any(|open| open == "svg" || open == "math");
        let self_closing = end > 0 && bytes[end - 1] == b'/';
        if VOID.contains(&name.as_str())
            || OPTIONAL_END.contains(&name.as_str())
            || (foreign && self_closing)
        {
            continue;
        }
        stack.push(name);
        if stack.len() > max {
            return (&html[..start], true);
        }
    }
    (html, false)
}

/// The `>` that ends a tag whose attributes start at `from` (quoted values skipped).
fn tag_end(bytes: &[u8], from: usize) -> Option<usize> {
    let mut quote: Option<u8> = None;
    let mut last = b' ';
    for (at, &b) in bytes.iter().enumerate().skip(from) {
        match quote {
            Some(q) if b == q => quote = None,
            Some(_) => {}
            None if (b == b'"' || b == b'\'') && last == b'=' => quote = Some(b),
            None if b == b'>' => return Some(at),
            None => {}
        }
        if !b.is_ascii_whitespace() {
            last = b;
        }
    }
    None
}

/// The first `needle` in `bytes` at or after `from`.
fn find(bytes: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    bytes
        .get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|at| from + at)
}

/// [`find`], ASCII case-insensitive.
fn find_ci(bytes: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    bytes
        .get(from..)?
        .windows(needle.len())
        .position(|w| w.eq_ignore_ascii_case(needle))
        .map(|at| from + at)
}

/// Drops every node deeper than [`MAX_DEPTH`] (an explicit stack, no recursion); whether any
/// was dropped.
fn cut_deep(root: &html2text::Handle) -> bool {
    let mut cut = false;
    let mut stack = vec![(root.clone(), 0usize)];
    while let Some((node, depth)) = stack.pop() {
        if depth >= MAX_DEPTH {
            let mut children = node.children.borrow_mut();
            if !children.is_empty() {
                cut = true;
                // Dropped one by one from the end, so their own subtrees are dropped by
                // html2text's iterative `Drop`, not by recursion here.
                children.clear();
            }
            continue;
        }
        for child in node.children.borrow().iter() {
            stack.push((child.clone(), depth + 1));
        }
    }
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_becomes_readable_text_with_its_title() {
        let page = "<!DOCTYPE html><html><head><title> Tom &amp; Jerry &#8211; \n home</title>\
                    <style>body{color:red}</style><script>var secret=1;</script></head>\
                    <body><h1>Welcome</h1><p>Some <b>bold</b> text and a \
                    <a href=\"https://example.com/x\">link</a>.</p><ul><li>one</li><li>two</li>\
                    </ul></body></html>";
        assert_eq!(title_of(page).as_deref(), Some("Tom & Jerry – home"));
        let (text, cut) = convert(page).unwrap();
        assert!(!cut);
        assert!(text.contains("# Welcome"), "{text}");
        assert!(text.contains("**bold**"), "{text}");
        assert!(text.contains("[link][1]"), "{text}");
        assert!(text.contains("https://example.com/x"), "{text}");
        assert!(text.contains("* one"), "{text}");
        assert!(!text.contains("secret"), "{text}");
        assert!(!text.contains("color:red"), "{text}");
    }

    #[test]
    fn absurd_nesting_converts_quickly_without_overflowing_the_stack() {
        let depth = 100_000;
        for (open, close) in [
            ("<div><blockquote>", "</blockquote></div>"),
            ("<b>", "</b>"),
            ("<div/>", ""),
            ("<ul><li>x", "</ul>"),
        ] {
            let page = format!(
                "<html><body><p>top</p>{}deep{}</body></html>",
                open.repeat(depth),
                close.repeat(depth)
            );
            let started = std::time::Instant::now();
            // On a thread with a small stack, as a tokio blocking thread has.
            let (text, cut) = std::thread::Builder::new()
                .stack_size(2 * 1024 * 1024)
                .spawn(move || convert(&page))
                .unwrap()
                .join()
                .unwrap()
                .unwrap();
            assert!(cut, "{open}");
            assert!(text.contains("top"), "{open}: {text:.200}");
            assert!(
                text.len() < 10 * 1024 * 1024,
                "{open}: {} bytes",
                text.len()
            );
            assert!(
                started.elapsed() < std::time::Duration::from_secs(20),
                "{open}: {:?}",
                started.elapsed()
            );
        }
    }

    #[test]
    fn nesting_is_counted_as_a_parser_would() {
        let ok = "<html><head><title>t</title><script>if (a<b) { x = '<div>'; }</script>\
                  </head><body><!-- <div><div> --><p>a<p>b<br><img src=x><ul><li>1<li>2</ul>\
                  <svg><path d='M0 0'/><path/></svg><a title=\"x>y\">z</a></body></html>";
        assert_eq!(limit_nesting(ok, 6), (ok, false));
        let deep = "<div><div><div>inside</div></div></div>";
        assert_eq!(limit_nesting(deep, 2), ("<div><div>", true));
        assert_eq!(limit_nesting(deep, 3), (deep, false));
        // Unclosed and misnested tags.
        assert_eq!(
            limit_nesting("<div><span></div><div>", 2),
            ("<div><span></div><div>", false)
        );
        assert_eq!(limit_nesting("< div <<", 1), ("< div <<", false));
    }

    #[test]
    fn relative_links_are_resolved() {
        let page = Url::parse("https://example.com/a/b.html").unwrap();
        let text = "see [x][1] and [y][2]\n\n[1]: /\n[2]: c.html\n[3]: https://o.example/\n";
        assert_eq!(
            resolve_links(text, &page),
            "see [x][1] and [y][2]\n\n[1]: https://example.com/\n\
             [2]: https://example.com/a/c.html\n[3]: https://o.example/\n"
        );
    }

    #[test]
    fn no_title_and_odd_entities() {
        assert_eq!(title_of("<p>no title</p>"), None);
        assert_eq!(title_of("<title>  </title>"), None);
        assert_eq!(
            decode_entities("a &bogus; b &#x41;&#66;&"),
            "a &bogus; b AB&"
        );
        assert!(looks_like_html("  <!doctype HTML><p>x"));
        assert!(!looks_like_html("{\"json\": true}"));
    }
}
