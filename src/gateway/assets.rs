//! The dashboard: the page at `GET /` and its files at `GET /assets/{file}`, embedded in the
//! binary from `src/gateway/assets/`, served by `root/gateway` without a token.
//!
//! The files carry no data: every view of the page reads the `/api/*` routes with the token
//! the page holds, and those stay token-only. So the page and its assets are
//! [`Access::Public`](super::routes::Access) routes (the `Host`/`Origin` guard still applies),
//! and an unauthenticated load can show the sign-in form.
//!
//! Every answer here carries the page's security headers ([`SECURITY_HEADERS`]): a strict
//! Content-Security-Policy (scripts, styles, connections and images from this origin only; no
//! inline script or style, no framing, no form posts, no `<base>`), `nosniff`, no referrer,
//! same-origin resource and opener policies, and `X-Frame-Options: DENY`.
//!
//! Caching: each file has a strong `ETag` (the first 16 hex digits of its SHA-256) and answers
//! `If-None-Match` with 304. The page and the dashboard's own scripts and styles are
//! `no-cache` (always revalidated, so a new binary's files are used at once); the vendored
//! libraries live in directories named by their version (`vendor/xterm-6.0.0/`) and are
//! cached for a year (`immutable`). Text files are gzipped for clients that accept it,
//! compressed once at their first request and kept (a few hundred KiB in all).

use std::sync::OnceLock;

use axum::body::Body;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use sha2::{Digest, Sha256};

use crate::http::response::error;

/// The Content-Security-Policy of the page and its files.
pub(crate) const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; font-src 'self'; manifest-src 'self'; \
     base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Headers on every answer of this module.
pub(crate) const SECURITY_HEADERS: [(&str, &str); 6] = [
    ("content-security-policy", CSP),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("cross-origin-resource-policy", "same-origin"),
    ("cross-origin-opener-policy", "same-origin"),
    ("x-frame-options", "DENY"),
];

/// `Cache-Control` of the page and the dashboard's own files: revalidate each time.
const REVALIDATE: &str = "no-cache";
/// `Cache-Control` of the versioned vendored files.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// One embedded file.
struct Asset {
    /// Its path under `/assets/` (`index.html` is also `/`).
    path: &'static str,
    body: &'static [u8],
    content_type: &'static str,
}

macro_rules! assets {
    ($($path:literal => $type:literal,)*) => {
        [$(Asset {
            path: $path,
            body: include_bytes!(concat!("assets/", $path)),
            content_type: $type,
        },)*]
    };
}

const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const TEXT: &str = "text/plain; charset=utf-8";

/// Every file of `src/gateway/assets/` (a test checks that none is missing).
static ASSETS: [Asset; 22] = assets! {
    "index.html" => "text/html; charset=utf-8",
    "app.css" => "text/css; charset=utf-8",
    "favicon.svg" => "image/svg+xml",
    "js/api.js" => "text/javascript; charset=utf-8",
    "js/app.js" => "text/javascript; charset=utf-8",
    "js/code.js" => "text/javascript; charset=utf-8",
    "js/dom.js" => "text/javascript; charset=utf-8",
    "js/events.js" => "text/javascript; charset=utf-8",
    "js/progress.js" => "text/javascript; charset=utf-8",
    "js/servers.js" => "text/javascript; charset=utf-8",
    "js/sessions.js" => "text/javascript; charset=utf-8",
    "js/sidecars.js" => "text/javascript; charset=utf-8",
    "js/signin.js" => "text/javascript; charset=utf-8",
    "js/tree.js" => "text/javascript; charset=utf-8",
    "js/treeview.js" => "text/javascript; charset=utf-8",
    "vendor/xterm-6.0.0/LICENSE" => "text/plain; charset=utf-8",
    "vendor/xterm-6.0.0/LICENSE.addon-fit" => "text/plain; charset=utf-8",
    "vendor/xterm-6.0.0/README.md" => "text/plain; charset=utf-8",
    "vendor/xterm-6.0.0/VERSION" => "text/plain; charset=utf-8",
    "vendor/xterm-6.0.0/addon-fit.mjs" => "text/javascript; charset=utf-8",
    "vendor/xterm-6.0.0/xterm.css" => "text/css; charset=utf-8",
    "vendor/xterm-6.0.0/xterm.mjs" => "text/javascript; charset=utf-8",
};

/// What is computed once per file: its `ETag` and its gzipped body (when smaller).
struct Prepared {
    etag: HeaderValue,
    gzip: Option<Vec<u8>>,
}

static PREPARED: [OnceLock<Prepared>; ASSETS.len()] = [const { OnceLock::new() }; ASSETS.len()];

fn prepared(index: usize) -> &'static Prepared {
    PREPARED[index].get_or_init(|| {
        let asset = &ASSETS[index];
        let digest = Sha256::digest(asset.body);
        let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        let etag = HeaderValue::from_str(&format!("\"{hex}\""))
            .unwrap_or_else(|_| HeaderValue::from_static("\"0\""));
        let compressible = [JS, CSS, TEXT, "text/html; charset=utf-8", "image/svg+xml"]
            .contains(&asset.content_type);
        let gzip = compressible.then(|| gzip(asset.body)).flatten();
        Prepared { etag, gzip }
    })
}

/// `body` gzipped, if that makes it smaller.
fn gzip(body: &[u8]) -> Option<Vec<u8>> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(body).ok()?;
    let out = encoder.finish().ok()?;
    (out.len() < body.len()).then_some(out)
}

/// `GET /`: the page.
pub(super) async fn index(headers: HeaderMap) -> Response {
    serve("index.html", &headers)
}

/// `GET /assets/{*path}`: one of the page's files; 404 for any other path.
pub(super) async fn asset(Path(path): Path<String>, headers: HeaderMap) -> Response {
    serve(&path, &headers)
}

fn serve(path: &str, headers: &HeaderMap) -> Response {
    let Some(index) = ASSETS.iter().position(|a| a.path == path) else {
        let mut response = error(StatusCode::NOT_FOUND, format!("no asset {path:?}"));
        add_security_headers(response.headers_mut());
        return response;
    };
    let asset = &ASSETS[index];
    let prepared = prepared(index);
    let cache = if path.starts_with("vendor/") {
        IMMUTABLE
    } else {
        REVALIDATE
    };
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|tags| {
            tags.split(',')
                .map(|t| t.trim().trim_start_matches("W/"))
                .any(|t| t == "*" || t.as_bytes() == prepared.etag.as_bytes())
        });
    let (status, body, gzipped) = if fresh {
        (StatusCode::NOT_MODIFIED, Body::empty(), false)
    } else {
        match &prepared.gzip {
            Some(gz) if accepts_gzip(headers) => (StatusCode::OK, Body::from(&gz[..]), true),
            _ => (StatusCode::OK, Body::from(asset.body), false),
        }
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let out = response.headers_mut();
    out.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    out.insert(header::ETAG, prepared.etag.clone());
    out.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    out.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    if gzipped {
        out.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    add_security_headers(out);
    response
}

/// Whether `Accept-Encoding` lists `gzip` with a non-zero quality.
fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|coding| {
            let mut parts = coding.split(';').map(str::trim);
            let name = parts.next().unwrap_or_default();
            let zero = parts.any(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            (name.eq_ignore_ascii_case("gzip") || name == "*") && !zero
        })
}

fn add_security_headers(out: &mut HeaderMap) {
    for (name, value) in SECURITY_HEADERS {
        out.insert(name, HeaderValue::from_static(value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every file of the assets directory is embedded, and nothing else.
    #[test]
    fn every_file_of_the_assets_directory_is_embedded() {
        fn walk(dir: &std::path::Path, base: &std::path::Path, out: &mut Vec<String>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    walk(&path, base, out);
                } else {
                    let rel = path.strip_prefix(base).unwrap();
                    out.push(rel.to_string_lossy().into_owned());
                }
            }
        }
        let base = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/gateway/assets");
        let mut files = Vec::new();
        walk(&base, &base, &mut files);
        files.sort();
        let mut embedded: Vec<String> = ASSETS.iter().map(|a| a.path.to_owned()).collect();
        embedded.sort();
        assert_eq!(files, embedded);
    }

    /// The page has no inline script, no inline style and no event-handler attribute (the CSP
    /// would refuse them), and loads nothing from another origin.
    #[test]
    fn the_page_has_nothing_inline_and_nothing_foreign() {
        let html = std::str::from_utf8(ASSETS[0].body)
            .unwrap()
            .to_ascii_lowercase();
        assert!(!html.contains("<style"), "no <style> element");
        assert!(!html.contains(" style="), "no style attribute");
        for (i, _) in html.match_indices(" on") {
            let name: String = html[i + 3..]
                .chars()
                .take_while(char::is_ascii_alphabetic)
                .collect();
            let after = &html[i + 3 + name.len()..];
            assert!(!after.starts_with('='), "event-handler attribute on{name}");
        }
        assert!(!html.contains("http:") && !html.contains("https:") && !html.contains("//"));
        for script in html.split("<script").skip(1) {
            let tag = &script[..script.find('>').unwrap()];
            assert!(tag.contains("src="), "inline script: <script{tag}>");
            let after = &script[script.find('>').unwrap() + 1..];
            assert!(after.trim_start().starts_with("</script>"));
        }
        for asset in &ASSETS {
            if asset.content_type == JS && !asset.path.starts_with("vendor/") {
                let text = std::str::from_utf8(asset.body).unwrap();
                for bad in ["eval(", "new Function", "innerHTML", ".cookie"] {
                    assert!(!text.contains(bad), "{} uses {bad}", asset.path);
                }
            }
        }
    }

    #[test]
    fn gzip_is_offered_only_when_accepted() {
        let mut h = HeaderMap::new();
        assert!(!accepts_gzip(&h));
        h.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("gzip, deflate, br"),
        );
        assert!(accepts_gzip(&h));
        h.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("br, gzip;q=0"),
        );
        assert!(!accepts_gzip(&h));
        h.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("identity"),
        );
        assert!(!accepts_gzip(&h));
    }

    #[test]
    fn answers_carry_their_type_cache_policy_etag_and_security_headers() {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("gzip"));
        let page = serve("index.html", &h);
        assert_eq!(page.status(), StatusCode::OK);
        assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
        assert_eq!(page.headers()["cache-control"], "no-cache");
        assert_eq!(page.headers()["content-encoding"], "gzip");
        assert_eq!(page.headers()["content-security-policy"], CSP);
        assert_eq!(page.headers()["x-frame-options"], "DENY");
        let vendor = serve("vendor/xterm-6.0.0/xterm.mjs", &HeaderMap::new());
        assert_eq!(vendor.headers()["cache-control"], IMMUTABLE);
        assert!(vendor.headers().get("content-encoding").is_none());
        let etag = vendor.headers()["etag"].clone();
        h.insert(header::IF_NONE_MATCH, etag);
        let again = serve("vendor/xterm-6.0.0/xterm.mjs", &h);
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
        let missing = serve("../Cargo.toml", &HeaderMap::new());
        assert_eq!(missing.status(), StatusCode::NOT_FOUND);
        assert_eq!(missing.headers()["x-content-type-options"], "nosniff");
    }
}
