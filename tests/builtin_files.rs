//! The file tools (`file_read`, `file_write`, `file_edit`, `glob_search`, `content_search`,
//! `pdf_read`, `image_info`) end to end: each through the official Python SDK client in a
//! session whose workspace is a temporary directory, and the adversarial path suite (raw
//! JSON-RPC, so it runs without the Python test dependencies): traversal, absolute paths,
//! `~`, encoded forms, symlink and hard-link escapes, forbidden paths inside the workspace,
//! `$REVKA_HOME`, and `read_only` autonomy; each refusal by its rule name, with nothing outside
//! read or written, an audit line in the run log and the refusal counted in `/metrics`.

use std::os::unix::fs::symlink;
use std::path::Path;

use serde_json::{Value, json};

use crate::harness::{Served, Session, eventually_async, next_id, sdk_tool_calls, workspace};

const TOOLS: &str = "file_read,file_write,file_edit,glob_search,content_search,pdf_read,image_info";

/// A PDF of one text line per page, with a correct cross-reference table.
pub fn tiny_pdf(pages: &[&str]) -> Vec<u8> {
    let n = pages.len();
    // Objects: 1 catalog, 2 page tree, 3 font, then a page and its content per page.
    let kids: Vec<String> = (0..n).map(|i| format!("{} 0 R", 4 + 2 * i)).collect();
    let mut objects = vec![
        "<< /Type /Catalog /Pages 2 0 R >>".to_owned(),
        format!("<< /Type /Pages /Kids [{}] /Count {n} >>", kids.join(" ")),
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>"
            .to_owned(),
    ];
    for (i, text) in pages.iter().enumerate() {
        let content = format!("BT /F1 12 Tf 72 720 Td ({text}) Tj ET");
        objects.push(format!(
            "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 \
             0 R >> >> /Contents {} 0 R >>",
            5 + 2 * i
        ));
        objects.push(format!(
            "<< /Length {} >>\nstream\n{content}\nendstream",
            content.len()
        ));
    }
    let mut out = b"%PDF-1.4\n".to_vec();
    let mut offsets = Vec::new();
    for (i, body) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.extend_from_slice(format!("{} 0 obj\n{body}\nendobj\n", i + 1).as_bytes());
    }
    let xref = out.len();
    out.extend_from_slice(
        format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes(),
    );
    for off in offsets {
        out.extend_from_slice(format!("{off:010} 00000 n \n").as_bytes());
    }
    out.extend_from_slice(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
            objects.len() + 1
        )
        .as_bytes(),
    );
    out
}

/// A JPEG header with an EXIF block (`Make` = `RevkaCam`) and a 320×200 frame; no pixels.
pub fn tiny_jpeg_with_exif() -> Vec<u8> {
    let make = b"RevkaCam\0";
    let mut tiff = b"MM\0\x2a\0\0\0\x08".to_vec();
    tiff.extend_from_slice(&1u16.to_be_bytes()); // one entry
    tiff.extend_from_slice(&0x010Fu16.to_be_bytes()); // Make
    tiff.extend_from_slice(&2u16.to_be_bytes()); // ASCII
    tiff.extend_from_slice(&(make.len() as u32).to_be_bytes());
    tiff.extend_from_slice(&26u32.to_be_bytes()); // value offset: after the IFD
    tiff.extend_from_slice(&0u32.to_be_bytes()); // no next IFD
    tiff.extend_from_slice(make);
    let mut app1 = b"Exif\0\0".to_vec();
    app1.extend_from_slice(&tiff);
    let mut out = vec![0xFF, 0xD8, 0xFF, 0xE1];
    out.extend_from_slice(&((app1.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(&app1);
    // SOF0: 8-bit, 200 high, 320 wide, 3 components.
    out.extend_from_slice(&[0xFF, 0xC0, 0x00, 0x11, 0x08]);
    out.extend_from_slice(&200u16.to_be_bytes());
    out.extend_from_slice(&320u16.to_be_bytes());
    out.extend_from_slice(&[0x03, 1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1]);
    out.extend_from_slice(&[0xFF, 0xD9]);
    out
}

/// A workspace with text, code, an ignored directory, a binary file, a PDF and a JPEG.
fn populate(ws: &Path) {
    std::fs::write(ws.join("notes.txt"), "one\ntwo\nthree\nfour\nfive\n").unwrap();
    std::fs::create_dir_all(ws.join("src/nested")).unwrap();
    std::fs::write(
        ws.join("src/main.rs"),
        "fn main() {\n    println!(\"needle\");\n}\n",
    )
    .unwrap();
    std::fs::write(ws.join("src/nested/lib.rs"), "pub fn Needle() {}\n").unwrap();
    std::fs::write(ws.join(".gitignore"), "ignored/\n").unwrap();
    std::fs::create_dir_all(ws.join("ignored")).unwrap();
    std::fs::write(ws.join("ignored/skip.rs"), "needle in an ignored file\n").unwrap();
    std::fs::write(ws.join("blob.bin"), b"needle\0\x01\x02binary").unwrap();
    std::fs::write(
        ws.join("doc.pdf"),
        tiny_pdf(&["Hello page one", "Second page here"]),
    )
    .unwrap();
    std::fs::write(ws.join("photo.jpg"), tiny_jpeg_with_exif()).unwrap();
    std::fs::write(
        ws.join("broken.pdf"),
        b"%PDF-1.4\n1 0 obj << /Type /Catalog garbage",
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_tools_end_to_end_through_the_python_sdk() {
    let (_dir, ws) = workspace();
    populate(&ws);
    let served = Served::start("").await;
    let session = served.session_in(&ws).await;
    let calls = json!([
        { "tool": "file_read", "arguments": { "path": "notes.txt", "start_line": 2, "end_line": 3 } },
        { "tool": "file_read", "arguments": { "path": "notes.txt", "offset": 3, "limit": 10 } },
        { "tool": "file_read", "arguments": { "path": "blob.bin" } },
        { "tool": "file_write", "arguments": { "path": "out/deeper/new.txt", "content": "alpha\nbeta\nalpha\n" } },
        { "tool": "file_edit", "arguments": { "path": "out/deeper/new.txt", "old_string": "beta", "new_string": "gamma" } },
        { "tool": "file_edit", "arguments": { "path": "out/deeper/new.txt", "old_string": "alpha", "new_string": "delta" } },
        { "tool": "file_edit", "arguments": { "path": "out/deeper/new.txt", "old_string": "alpha", "new_string": "delta", "replace_all": true } },
        { "tool": "file_edit", "arguments": { "path": "out/deeper/new.txt", "old_string": "absent", "new_string": "x" } },
        { "tool": "glob_search", "arguments": { "pattern": "**/*.rs" } },
        { "tool": "content_search", "arguments": { "pattern": "needle", "case_insensitive": true } },
        { "tool": "content_search", "arguments": { "pattern": "needle", "glob": "*.rs", "max_results": 1 } },
        { "tool": "pdf_read", "arguments": { "path": "doc.pdf" } },
        { "tool": "pdf_read", "arguments": { "path": "doc.pdf", "start_page": 2 } },
        { "tool": "pdf_read", "arguments": { "path": "broken.pdf" } },
        { "tool": "image_info", "arguments": { "path": "photo.jpg" } },
        { "tool": "file_read", "arguments": { "path": 7 } },
    ]);
    let Some(out) = sdk_tool_calls(&served, &session, calls).await else {
        eprintln!("skipping: the Python test dependencies are not installed");
        return;
    };
    let tools: Vec<&str> = out["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for t in TOOLS.split(',') {
        assert!(tools.contains(&t), "{t} listed: {tools:?}");
    }
    let c = |i: usize| out["calls"][i].clone();

    // file_read: a line range, offset/limit, binary refused with metadata.
    let r = c(0);
    assert_eq!(r["is_error"], false, "{r}");
    assert_eq!(r["structured"]["content"], "two\nthree\n", "{r}");
    assert_eq!(r["structured"]["total_lines"], 5);
    assert_eq!(r["structured"]["lines"], 2);
    assert_eq!(r["structured"]["path"], "notes.txt");
    assert_eq!(r["structured"]["truncated"], false);
    assert_eq!(c(1)["structured"]["content"], "four\nfive\n", "{}", c(1));
    let r = c(2);
    assert_eq!(r["is_error"], true, "{r}");
    assert!(r["text"].as_str().unwrap().contains("binary"), "{r}");
    assert_eq!(r["structured"]["binary"], true);

    // file_write then file_edit: parents created, exact match, multiple matches refused
    // unless replace_all, zero matches an error; each edit carries a diff.
    let r = c(3);
    assert_eq!(r["is_error"], false, "{r}");
    assert_eq!(r["structured"]["created"], true);
    let r = c(4);
    assert_eq!(r["is_error"], false, "{r}");
    let diff = r["structured"]["diff"].as_str().unwrap();
    assert!(diff.contains("-beta") && diff.contains("+gamma"), "{diff}");
    assert!(diff.contains("a/out/deeper/new.txt"), "{diff}");
    let r = c(5);
    assert_eq!(r["is_error"], true, "{r}");
    assert!(r["text"].as_str().unwrap().contains("2 times"), "{r}");
    let r = c(6);
    assert_eq!(r["is_error"], false, "{r}");
    assert_eq!(r["structured"]["replacements"], 2);
    assert_eq!(c(7)["is_error"], true);
    assert_eq!(
        std::fs::read_to_string(ws.join("out/deeper/new.txt")).unwrap(),
        "delta\ngamma\ndelta\n"
    );

    // glob_search honours .gitignore.
    let r = c(8);
    assert_eq!(r["is_error"], false, "{r}");
    assert_eq!(
        r["structured"]["matches"],
        json!(["src/main.rs", "src/nested/lib.rs"]),
        "{r}"
    );

    // content_search: case-insensitive, ignored and binary files skipped, capped.
    let r = c(9);
    assert_eq!(r["is_error"], false, "{r}");
    let paths: Vec<&str> = r["structured"]["matches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["src/main.rs", "src/nested/lib.rs"], "{r}");
    assert_eq!(r["structured"]["matches"][0]["line"], 2);
    // blob.bin and photo.jpg (NUL bytes in their heads).
    assert_eq!(r["structured"]["skipped"]["binary"], 2, "{r}");
    let r = c(10);
    assert_eq!(r["structured"]["count"], 1, "{r}");
    assert_eq!(r["structured"]["truncated"], false, "{r}");

    // pdf_read: text per page, a page range, a broken file as an error.
    let r = c(11);
    assert_eq!(r["is_error"], false, "{r}");
    assert_eq!(r["structured"]["page_count"], 2);
    let pages = r["structured"]["pages"].as_array().unwrap();
    assert!(
        pages[0]["text"]
            .as_str()
            .unwrap()
            .contains("Hello page one"),
        "{r}"
    );
    assert!(
        pages[1]["text"].as_str().unwrap().contains("Second page"),
        "{r}"
    );
    let r = c(12);
    assert_eq!(r["structured"]["pages"].as_array().unwrap().len(), 1, "{r}");
    assert_eq!(r["structured"]["pages"][0]["page"], 2);
    let r = c(13);
    assert_eq!(r["is_error"], true, "{r}");
    assert!(
        r["text"]
            .as_str()
            .unwrap()
            .contains("could not be read as a PDF"),
        "{r}"
    );

    // image_info: format, size and EXIF, no decoding.
    let r = c(14);
    assert_eq!(r["is_error"], false, "{r}");
    assert_eq!(r["structured"]["format"], "jpeg");
    assert_eq!(r["structured"]["width"], 320);
    assert_eq!(r["structured"]["height"], 200);
    assert!(
        r["structured"]["exif"]["Make"]
            .as_str()
            .unwrap()
            .contains("RevkaCam"),
        "{r}"
    );

    // Arguments of the wrong shape: a precise error.
    let r = c(15);
    assert_eq!(r["is_error"], true, "{r}");
    let text = format!("{}{}", r["text"], r["error"]);
    assert!(text.contains("path"), "{r}");
}

/// A call's result (the `result` object of its answer).
async fn call(session: &Session, tool: &str, arguments: Value) -> Value {
    let events = session.call(next_id(), tool, arguments, None).await;
    events
        .iter()
        .filter_map(|e| serde_json::from_str::<Value>(&e.data).ok())
        .find_map(|m| m.get("result").cloned())
        .unwrap_or_else(|| panic!("{tool} answered no result: {events:?}"))
}

/// Asserts `result` is an error refused by `rule`, and that it shows none of `secret`.
#[track_caller]
fn assert_refused(result: &Value, rule: &str, secret: &str) {
    let text = result["content"][0]["text"].as_str().unwrap_or_default();
    assert_eq!(result["isError"], true, "{result}");
    assert!(
        text.contains(&format!("({rule})")),
        "expected a refusal by {rule}: {text}"
    );
    assert!(!text.contains(secret), "the secret leaked: {text}");
}

async fn activate(session: &Session) {
    let text = session
        .call_text("tool_search", json!({ "query": format!("select:{TOOLS}") }))
        .await;
    assert!(text.contains("file_read"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adversarial_paths_are_refused_by_their_rule_and_audited() {
    let (_root, root) = workspace();
    let ws = root.join("ws");
    let outside = root.join("outside");
    std::fs::create_dir_all(ws.join("private")).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    const SECRET: &str = "TOP-SECRET-OUTSIDE";
    std::fs::write(outside.join("secret.txt"), SECRET).unwrap();
    std::fs::write(ws.join("private/inner.txt"), "PRIVATE-INSIDE").unwrap();
    std::fs::write(ws.join("ok.txt"), "fine").unwrap();
    symlink(outside.join("secret.txt"), ws.join("link.txt")).unwrap();
    symlink(&outside, ws.join("linkdir")).unwrap();
    symlink("ok.txt", ws.join("inner-link.txt")).unwrap();
    std::fs::hard_link(outside.join("secret.txt"), ws.join("hard.txt")).unwrap();
    std::fs::create_dir_all(ws.join("%2e%2e")).unwrap();

    let served = Served::start(&format!(
        "[security]\nforbidden_paths = [\"{}\", \"~/.ssh\"]\n",
        ws.join("private").display()
    ))
    .await;
    let session = served.session_in(&ws).await;
    activate(&session).await;

    let absolute = outside.join("secret.txt").display().to_string();
    let reads = [
        ("../outside/secret.txt", "workspace_only"),
        ("sub/../../outside/secret.txt", "workspace_only"),
        (absolute.as_str(), "workspace_only"),
        ("/etc/passwd", "workspace_only"),
        ("~/.ssh/id_rsa", "workspace_only"),
        ("link.txt", "workspace_only"),
        ("linkdir/secret.txt", "workspace_only"),
        ("hard.txt", "workspace_only"),
        ("private/inner.txt", "forbidden_paths"),
        ("", "path"),
        ("a\0b", "path"),
    ];
    for (path, rule) in reads {
        let r = call(&session, "file_read", json!({ "path": path })).await;
        assert_refused(&r, rule, SECRET);
        assert!(!r.to_string().contains("PRIVATE-INSIDE"), "{r}");
        assert!(!r.to_string().contains("root:x:0:0"), "{r}");
    }
    // Percent-encoded forms are not decoded: a literal name inside the workspace.
    for path in [
        "%2e%2e/outside/secret.txt",
        "..%2foutside%2fsecret.txt",
        "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    ] {
        let r = call(&session, "file_read", json!({ "path": path })).await;
        let text = r["content"][0]["text"].as_str().unwrap_or_default();
        assert_eq!(r["isError"], true, "{r}");
        assert!(text.contains("does not exist"), "{path}: {text}");
        assert!(!text.contains(SECRET), "{text}");
    }

    // Writes and edits: through a symlink, into a symlinked directory, over a hard link,
    // outside, into a forbidden directory.
    let writes = [
        ("../outside/secret.txt", "workspace_only"),
        ("link.txt", "workspace_only"),
        ("linkdir/planted.txt", "workspace_only"),
        ("hard.txt", "workspace_only"),
        ("private/planted.txt", "forbidden_paths"),
        ("~/.ssh/authorized_keys", "workspace_only"),
        ("inner-link.txt", "path"),
    ];
    for (path, rule) in writes {
        let r = call(
            &session,
            "file_write",
            json!({ "path": path, "content": "PWNED" }),
        )
        .await;
        assert_refused(&r, rule, SECRET);
        let r = call(
            &session,
            "file_edit",
            json!({ "path": path, "old_string": SECRET, "new_string": "PWNED" }),
        )
        .await;
        assert_refused(&r, rule, SECRET);
    }
    assert_eq!(
        std::fs::read_to_string(outside.join("secret.txt")).unwrap(),
        SECRET
    );
    assert!(!outside.join("planted.txt").exists());
    assert!(!ws.join("private/planted.txt").exists());
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 1);
    assert_eq!(std::fs::read_to_string(ws.join("ok.txt")).unwrap(), "fine");

    // Listing and searching never leave the workspace nor show forbidden paths.
    let r = call(&session, "glob_search", json!({ "pattern": "../**" })).await;
    assert_refused(&r, "workspace_only", SECRET);
    let r = call(&session, "glob_search", json!({ "pattern": "/etc/*" })).await;
    assert_refused(&r, "workspace_only", SECRET);
    let r = call(
        &session,
        "glob_search",
        json!({ "pattern": "**", "path": ".." }),
    )
    .await;
    assert_refused(&r, "workspace_only", SECRET);
    let r = call(&session, "glob_search", json!({ "pattern": "**" })).await;
    let listed = r["structuredContent"]["matches"].to_string();
    assert!(!listed.contains("private"), "{listed}");
    assert!(listed.contains("ok.txt"), "{listed}");
    assert!(!listed.contains("secret"), "{listed}");
    let r = call(
        &session,
        "content_search",
        json!({ "pattern": "SECRET|PRIVATE" }),
    )
    .await;
    assert_eq!(r["structuredContent"]["count"], 0, "{r}");
    assert!(!r.to_string().contains(SECRET), "{r}");
    let r = call(
        &session,
        "content_search",
        json!({ "pattern": "x", "path": "private" }),
    )
    .await;
    assert_refused(&r, "forbidden_paths", SECRET);
    let r = call(
        &session,
        "pdf_read",
        json!({ "path": "linkdir/secret.txt" }),
    )
    .await;
    assert_refused(&r, "workspace_only", SECRET);
    let r = call(&session, "image_info", json!({ "path": "/etc/passwd" })).await;
    assert_refused(&r, "workspace_only", SECRET);

    // $REVKA_HOME: outside this workspace (workspace_only), and forbidden to a session whose
    // workspace is under it.
    let home = served.home.path().to_owned();
    let r = call(
        &session,
        "file_read",
        json!({ "path": home.join("config.toml") }),
    )
    .await;
    assert_refused(&r, "workspace_only", "[mcp]");
    let under = std::fs::canonicalize(&home).unwrap().join("work");
    std::fs::create_dir_all(&under).unwrap();
    let inside_home = served.session_in(&under).await;
    activate(&inside_home).await;
    let r = call(
        &inside_home,
        "file_read",
        json!({ "path": "../config.toml" }),
    )
    .await;
    assert_refused(&r, "workspace_only", "[mcp]");
    let r = call(
        &inside_home,
        "file_write",
        json!({ "path": "x.txt", "content": "x" }),
    )
    .await;
    assert_refused(&r, "forbidden_paths", "[mcp]");
    assert!(
        r["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("$REVKA_HOME")
    );
    assert!(!under.join("x.txt").exists());

    // The audit: a `builtin_call` line refused by its rule, and the refusal counted.
    let runlog = home.join("operator_mcp/runlogs/run.jsonl");
    eventually_async("the refusal in the run log", async || {
        std::fs::read_to_string(&runlog).is_ok_and(|text| {
            text.lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .any(|v| {
                    v["kind"] == "builtin_call"
                        && v["tool"] == "file_read"
                        && v["decision"] == "refused"
                        && v["rule"] == "workspace_only"
                        && v["session"] == session.id.as_str()
                })
        })
    })
    .await;
    let metrics = served.metrics_text().await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("revka_builtin_refusals_total")
                && l.contains("tool=\"file_read\"")
                && l.contains("rule=\"workspace_only\"")),
        "{metrics}"
    );
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("revka_builtin_refusals_total")
                && l.contains("tool=\"file_write\"")
                && l.contains("rule=\"forbidden_paths\"")),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_autonomy_refuses_writes_and_the_caps_hold() {
    let (_dir, ws) = workspace();
    std::fs::write(ws.join("a.txt"), "keep").unwrap();
    let long: String = (1..=100).map(|i| format!("line {i:03}\n")).collect();
    std::fs::write(ws.join("long.txt"), &long).unwrap();
    std::fs::write(ws.join("big.pdf"), tiny_pdf(&["x"; 60])).unwrap();
    let served = Served::start(
        "[security]\nautonomy = \"read_only\"\nmax_output_bytes = 64\nmax_file_bytes = 512\n",
    )
    .await;
    let session = served.session_in(&ws).await;
    activate(&session).await;
    let r = call(
        &session,
        "file_write",
        json!({ "path": "b.txt", "content": "x" }),
    )
    .await;
    assert_refused(&r, "autonomy", "keep");
    let r = call(
        &session,
        "file_edit",
        json!({ "path": "a.txt", "old_string": "keep", "new_string": "lost" }),
    )
    .await;
    assert_refused(&r, "autonomy", "lost");
    assert_eq!(std::fs::read_to_string(ws.join("a.txt")).unwrap(), "keep");
    assert!(!ws.join("b.txt").exists());
    // Reads still work.
    let r = call(&session, "file_read", json!({ "path": "a.txt" })).await;
    assert_eq!(r["isError"], Value::Null, "{r}");
    assert_eq!(r["structuredContent"]["content"], "keep");
    // max_output_bytes cuts at a line boundary and says so; lines are counted over at most
    // max_file_bytes.
    let r = call(&session, "file_read", json!({ "path": "long.txt" })).await;
    let s = &r["structuredContent"];
    assert_eq!(s["truncated"], true, "{r}");
    assert_eq!(
        s["content"], "line 001\nline 002\nline 003\nline 004\nline 005\nline 006\nline 007\n",
        "{r}"
    );
    assert_eq!(s["lines"], 7);
    assert_eq!(
        s["total_lines"],
        Value::Null,
        "800 bytes, over max_file_bytes: {r}"
    );
    let r = call(
        &session,
        "file_read",
        json!({ "path": "long.txt", "start_line": 50, "limit": 2 }),
    )
    .await;
    assert_eq!(
        r["structuredContent"]["content"], "line 050\nline 051\n",
        "{r}"
    );
    // max_file_bytes refuses what is parsed whole.
    let r = call(&session, "pdf_read", json!({ "path": "big.pdf" })).await;
    assert_eq!(r["isError"], true, "{r}");
    assert!(r.to_string().contains("max_file_bytes"), "{r}");
    let r = call(&session, "content_search", json!({ "pattern": "line" })).await;
    assert_eq!(r["structuredContent"]["skipped"]["too_large"], 2, "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_containment_the_forbidden_paths_still_hold() {
    let (_root, root) = workspace();
    let ws = root.join("ws");
    let outside = root.join("outside");
    std::fs::create_dir_all(&ws).unwrap();
    std::fs::create_dir_all(outside.join("vault")).unwrap();
    std::fs::write(outside.join("open.txt"), "readable").unwrap();
    std::fs::write(outside.join("vault/key"), "VAULT-KEY").unwrap();
    std::fs::hard_link(outside.join("vault/key"), ws.join("alias")).unwrap();
    let served = Served::start(&format!(
        "[security]\nworkspace_only = false\nforbidden_paths = [\"{}\", \"/proc/*/environ\"]\n",
        outside.join("vault").display()
    ))
    .await;
    let session = served.session_in(&ws).await;
    activate(&session).await;
    // Containment is lifted: outside paths that are not forbidden are read and written.
    let r = call(
        &session,
        "file_read",
        json!({ "path": "../outside/open.txt" }),
    )
    .await;
    assert_eq!(r["structuredContent"]["content"], "readable", "{r}");
    assert_eq!(
        r["structuredContent"]["path"],
        outside.join("open.txt").display().to_string(),
        "outside paths are shown absolute"
    );
    let r = call(
        &session,
        "file_write",
        json!({ "path": "../outside/new.txt", "content": "made" }),
    )
    .await;
    assert_eq!(r["isError"], Value::Null, "{r}");
    assert_eq!(
        std::fs::read_to_string(outside.join("new.txt")).unwrap(),
        "made"
    );
    // The forbidden paths are not lifted: directly, through a hard link, $REVKA_HOME, /proc.
    let r = call(
        &session,
        "file_read",
        json!({ "path": "../outside/vault/key" }),
    )
    .await;
    assert_refused(&r, "forbidden_paths", "VAULT-KEY");
    let r = call(&session, "file_read", json!({ "path": "alias" })).await;
    assert_refused(&r, "forbidden_paths", "VAULT-KEY");
    let config = served.home.path().join("config.toml");
    let r = call(&session, "file_read", json!({ "path": config })).await;
    assert_refused(&r, "forbidden_paths", "[mcp]");
    let r = call(
        &session,
        "file_read",
        json!({ "path": "/proc/self/environ" }),
    )
    .await;
    assert_refused(&r, "forbidden_paths", "REVKA_HOME=");
    let r = call(
        &session,
        "glob_search",
        json!({ "pattern": "**", "path": "../outside" }),
    )
    .await;
    let listed = r["structuredContent"]["matches"].to_string();
    assert!(
        listed.contains("open.txt") && !listed.contains("vault"),
        "{listed}"
    );
}
