//! The crate's layout rule, checked: the faces do not import each other.
//!
//! The MCP server (`mcp_http`, `root/mcp_http`) and the gateway (`gateway`, `root/gateway`)
//! are two faces of the daemon, and `tools` is the registry the MCP server serves. Each depends
//! on the shared plumbing (`http`, `auth`, `health`) and on `tree`, never on another face: the
//! MCP server never names the gateway, the gateway never names the MCP server, and the tools
//! name neither. (The MCP server does use `tools`: that is what it serves.)
//!
//! The test reads the sources of each face (`src/<face>.rs` and everything under
//! `src/<face>/`) and refuses any path to a forbidden module: `crate::<face>`,
//! `revka::<face>`, a `super::` chain ending in one, or one named inside `crate::{...}`.
//! Comments count too, so a doc link cannot point across either. An exception names its file
//! and says why; an exception no longer needed fails as well, so the list stays true.

use std::path::{Path, PathBuf};

/// Which module may not name which.
const FORBIDDEN: &[(&str, &str)] = &[
    ("mcp_http", "gateway"),
    ("gateway", "mcp_http"),
    ("tools", "gateway"),
    ("tools", "mcp_http"),
];

/// Files allowed to name a module they otherwise may not: (file, module, why).
const EXCEPTIONS: &[(&str, &str, &str)] = &[(
    "src/gateway/tests/listener.rs",
    "mcp_http",
    "test code only: the proxy's end-to-end tests serve the real MCP server listener behind \
     the gateway (in the daemon the proxy reaches it over HTTP, through mcp.json)",
)];

/// Every `.rs` file of module `face`: `src/<face>.rs` and the files under `src/<face>/`.
fn sources(src: &Path, face: &str) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let mut files = vec![src.join(format!("{face}.rs"))];
    walk(&src.join(face), &mut files);
    files.retain(|f| f.is_file());
    files
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Whether `text` names module `target` of the crate root: `crate::target`, `revka::target`,
/// `super::target` (from a module at any depth, which only the root's `target` can be: no face
/// has a child of that name), or `target` inside a `crate::{...}` group.
fn names(text: &str, target: &str) -> bool {
    let whole = |rest: &str| !rest.starts_with(is_ident);
    for prefix in ["crate::", "revka::", "super::"] {
        let needle = format!("{prefix}{target}");
        let mut from = 0;
        while let Some(at) = text[from..].find(&needle) {
            let start = from + at;
            let end = start + needle.len();
            let before_ok = !text[..start].ends_with(is_ident);
            if before_ok && whole(&text[end..]) {
                return true;
            }
            from = end;
        }
    }
    // `crate::{a, target::x, ...}`: any word of the group.
    let mut from = 0;
    while let Some(at) = text[from..].find("crate::{") {
        let open = from + at + "crate::".len();
        let mut depth = 0;
        let mut close = text.len();
        for (i, c) in text[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        close = open + i;
                        break;
                    }
                }
                _ => {}
            }
        }
        if text[open..close]
            .split(|c: char| !is_ident(c))
            .any(|w| w == target)
        {
            return true;
        }
        from = close;
    }
    false
}

#[test]
fn no_face_names_another() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let src = root.join("src");
    let mut crossings = Vec::new();
    let mut used = vec![false; EXCEPTIONS.len()];
    for (face, other) in FORBIDDEN {
        let files = sources(&src, face);
        assert!(
            files.len() > 1,
            "no sources of `{face}` under {}: has the module moved?",
            src.display()
        );
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            if !names(&text, other) {
                continue;
            }
            let relative = file
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            match EXCEPTIONS
                .iter()
                .position(|(f, o, _)| *f == relative && o == other)
            {
                Some(i) => used[i] = true,
                None => crossings.push(format!("{relative} names `{other}`")),
            }
        }
    }
    assert!(
        crossings.is_empty(),
        "a face imports another (move the shared piece to `http`, `auth` or its own module): \
         {crossings:#?}"
    );
    for ((file, other, _), used) in EXCEPTIONS.iter().zip(used) {
        assert!(used, "stale exception: {file} no longer names `{other}`");
    }
}

#[test]
fn the_scan_sees_every_spelling_of_a_path() {
    for text in [
        "use crate::gateway::auth::Role;",
        "crate::gateway::health_report(&root)",
        "use revka::gateway;",
        "use super::super::gateway::Gateway;",
        "use crate::{config::Config, gateway::listener};",
        "use crate::{\n    gateway,\n    tree::Services,\n};",
        "//! see [`crate::gateway`]",
    ] {
        assert!(names(text, "gateway"), "{text}");
    }
    for text in [
        "use crate::gateway_file::X;",
        "use crate::http::GATEWAY_FILE;",
        "the gateway (`root/gateway`) writes gateway.json",
        "use crate::{config::Config, tree::Services};",
        "use mycrate::gateway::X;",
    ] {
        assert!(!names(text, "gateway"), "{text}");
    }
}
