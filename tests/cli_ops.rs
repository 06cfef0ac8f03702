//! `revka status | restart | pair | tokens` against the real daemon, through its gateway.

use crate::mcp_server::Served;

fn revka(served: &Served, args: &[&str]) -> (Option<i32>, String, String) {
    let out = served
        .home
        .command()
        .env("RUST_LOG", "off")
        .env("NO_COLOR", "1")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn operating_the_running_daemon_from_the_cli() {
    let served = Served::start("").await;
    let (code, out, err) = revka(&served, &["status"]);
    assert_eq!(code, Some(0), "{err}");
    for line in [
        "root",
        "mcp_servers",
        "mcp:fault",
        "sessions",
        "mcp_http",
        "gateway",
    ] {
        assert!(out.contains(line), "{line} in:\n{out}");
    }
    assert!(out.contains("running"), "{out}");
    let (code, json, _) = revka(&served, &["status", "--json"]);
    assert_eq!(code, Some(0));
    let snapshot: revka_actors::Snapshot = serde_json::from_str(&json).unwrap();
    assert_eq!(snapshot.path, "root");

    let (code, out, err) = revka(&served, &["restart", "root/mcp_servers/mcp:fault"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("restarted root/mcp_servers/mcp:fault"),
        "{out}"
    );
    let (code, _, err) = revka(&served, &["restart", "root/nope"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("no actor at `root/nope`"), "{err}");

    let (code, out, _) = revka(&served, &["pair"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("pairing code: "), "{out}");
    assert!(out.contains("for a token with the viewer role"), "{out}");
    let (code, out, _) = revka(&served, &["pair", "--role", "operator"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("for a token with the operator role"), "{out}");
    let (code, _, err) = revka(&served, &["pair", "--role", "admin"]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("unknown role \"admin\": expected viewer, operator or owner"),
        "{err}"
    );
    let (code, out, _) = revka(&served, &["tokens", "list"]);
    assert_eq!(code, Some(0));
    let header: Vec<&str> = out.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["ID", "LABEL", "ROLE", "CREATED", "LAST", "USED", "FLAGS"]
    );
    assert!(out.contains("  owner  "), "{out}");
    assert!(out.contains("gateway.token"), "{out}");
}

#[test]
fn without_a_daemon_the_cli_says_so() {
    let home = crate::util::TestHome::new();
    let out = home.command().args(["status"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not running"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
