//! Tests of the hub's resources, templates and prompts: naming, the URI scheme, routing,
//! change announcements, and the scope rule.

use std::sync::Arc;
use std::time::Duration;

use revka_mcp::protocol::ServerHello;
use serde_json::{Value, json};

use super::*;
use crate::status::{ActorState, StatusNode};

use super::tests::spec;

/// A registered server that declared `capabilities` and offers `catalog`.
fn server(hub: &McpHub, root: &StatusNode, name: &str, catalog: Catalog) -> Arc<ServerEntry> {
    let entry = hub.register(
        spec(name),
        root.child(&format!("mcp:{name}"), "mcp_server", None),
    );
    *entry.hello.write().unwrap() = Some(ServerHello {
        capabilities: json!({ "resources": { "subscribe": true }, "prompts": {} }),
        ..ServerHello::default()
    });
    hub.set_catalog(&entry, catalog, None);
    entry
}

fn resources(uris: &[&str]) -> Vec<Value> {
    uris.iter()
        .map(|u| json!({ "uri": u, "name": u }))
        .collect()
}

fn templates(uris: &[&str]) -> Vec<Value> {
    uris.iter()
        .map(|u| json!({ "uriTemplate": u, "name": u }))
        .collect()
}

fn prompts(names: &[&str]) -> Vec<Value> {
    names
        .iter()
        .map(|n| json!({ "name": n, "description": format!("prompt {n}") }))
        .collect()
}

/// Prompts take the tools' names: `<server>__<prompt>`, sanitised, collisions reported; a bare
/// name resolves when one server has it, and is ambiguous when several do.
#[test]
fn prompts_are_named_and_resolved_like_tools() {
    let root = StatusNode::root("root", "supervisor");
    let hub = McpHub::new();
    let catalog = |names: &[&str]| Catalog {
        prompts: prompts(names),
        ..Catalog::default()
    };
    server(&hub, &root, "a", catalog(&["greet", "only-a", "x.y"]));
    server(&hub, &root, "b", catalog(&["greet", "x_y"]));
    let table = hub.surface();
    let names: Vec<&str> = table.prompts.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        ["a__greet", "a__only-a", "a__x_y", "b__greet", "b__x_y"]
    );
    assert_eq!(table.prompts["a__greet"].def["name"], "a__greet");
    assert_eq!(table.prompts["a__greet"].def["description"], "prompt greet");
    assert_eq!(table.prompts["a__x_y"].prompt, "x.y");

    let route = hub.route_prompt("only-a").unwrap();
    assert_eq!(
        (route.name.as_str(), route.prompt.as_str()),
        ("a__only-a", "only-a")
    );
    assert_eq!(
        hub.route_prompt("b__greet").unwrap().server.spec().name,
        "b"
    );
    assert!(matches!(
        hub.route_prompt("greet"),
        Err(SurfaceError::AmbiguousPrompt { candidates, .. }) if candidates == ["a__greet", "b__greet"]
    ));
    assert!(matches!(
        hub.route_prompt("nope"),
        Err(SurfaceError::UnknownPrompt(name)) if name == "nope"
    ));

    // Among the prompts a scope shows: a bare name resolves among them, a hidden one is
    // unknown.
    let only_a = |n: &str| n.starts_with("a__");
    assert_eq!(
        hub.route_visible_prompt("greet", only_a).unwrap().name,
        "a__greet"
    );
    assert!(matches!(
        hub.route_visible_prompt("b__greet", only_a),
        Err(SurfaceError::UnknownPrompt(name)) if name == "b__greet"
    ));

    // `c.d` and `c_d` both sanitise to `c_d__p`: the first in (server, prompt) order stays.
    server(&hub, &root, "c.d", catalog(&["p"]));
    server(&hub, &root, "c_d", catalog(&["p"]));
    let table = hub.surface();
    assert_eq!(table.prompts["c_d__p"].server.spec().name, "c.d");
    assert_eq!(table.collisions.len(), 1, "{:?}", table.collisions);
}

/// A URI one server offers is shown as it is; one that several offer is shown as
/// `revka://<server>/<uri>` on each, and both forms route back to the server's own URI.
#[test]
fn shared_uris_take_the_explicit_form_and_route_back() {
    let root = StatusNode::root("root", "supervisor");
    let hub = McpHub::new();
    let catalog = |uris: &[&str], tpls: &[&str]| Catalog {
        resources: resources(uris),
        templates: templates(tpls),
        ..Catalog::default()
    };
    server(
        &hub,
        &root,
        "one",
        catalog(
            &["file:///shared", "one://only"],
            &["one://t/{id}", "x://{id}"],
        ),
    );
    server(
        &hub,
        &root,
        "two",
        catalog(&["file:///shared", "two://only"], &["x://{id}"]),
    );
    let table = hub.surface();
    let shown: Vec<&str> = table.resources.iter().map(|r| r.exposed.as_str()).collect();
    assert_eq!(
        shown,
        [
            "revka://one/file:///shared",
            "one://only",
            "revka://two/file:///shared",
            "two://only"
        ]
    );
    assert_eq!(table.resources[0].def["uri"], "revka://one/file:///shared");
    let shown: Vec<&str> = table.templates.iter().map(|r| r.exposed.as_str()).collect();
    assert_eq!(
        shown,
        [
            "one://t/{id}",
            "revka://one/x://{id}",
            "revka://two/x://{id}"
        ]
    );

    let route = |uri: &str| {
        let r = hub.route_uri(uri).unwrap();
        (r.server.spec().name.clone(), r.original, r.explicit)
    };
    assert_eq!(
        route("one://only"),
        ("one".into(), "one://only".into(), false)
    );
    assert_eq!(
        route("revka://two/file:///shared"),
        ("two".into(), "file:///shared".into(), true)
    );
    // The explicit form routes any URI of any server, listed or not.
    assert_eq!(
        route("revka://one/one://only"),
        ("one".into(), "one://only".into(), true)
    );
    assert_eq!(
        route("revka://two/new://x"),
        ("two".into(), "new://x".into(), true)
    );
    // An unlisted URI goes by the templates that match it, when one server's do.
    assert_eq!(
        route("one://t/7"),
        ("one".into(), "one://t/7".into(), false)
    );
    assert!(matches!(
        hub.route_uri("x://7"),
        Err(SurfaceError::AmbiguousResource { servers, .. }) if servers == ["one", "two"]
    ));
    // A session that sees only `one` is routed among `one`'s templates, and never told of
    // `two`; one that sees neither finds nothing.
    let only_one = |s: &ServerEntry| s.spec().name == "one";
    let r = hub.route_uri_among("x://7", &only_one).unwrap();
    assert_eq!(r.server.spec().name, "one");
    assert!(matches!(
        hub.route_uri_among("x://7", &|_| false),
        Err(SurfaceError::ResourceNotFound(_))
    ));
    let err = hub.route_uri("file:///shared").unwrap_err();
    assert!(matches!(&err, SurfaceError::ResourceNotFound(u) if u == "file:///shared"));
    assert_eq!(err.to_string(), "Resource not found: file:///shared");
    // A completion's template routes by its exposed form, back to the server's template.
    let r = hub.route_template("revka://two/x://{id}").unwrap();
    assert_eq!(
        (r.server.spec().name.as_str(), r.original.as_str()),
        ("two", "x://{id}")
    );
    assert_eq!(r.exposed("x://5"), "revka://two/x://5");

    // Once `two` is gone, the shared URI is `one`'s alone and shown as it is.
    hub.remove("two");
    let table = hub.surface();
    assert_eq!(table.resources[0].exposed, "file:///shared");
    // With one server declaring resources, an unknown URI goes to it.
    assert_eq!(
        route("any://thing"),
        ("one".into(), "any://thing".into(), false)
    );
}

/// A change announces the part that changed, once; an unchanged re-read announces nothing; a
/// part re-read leaves the other part alone.
#[test]
fn catalog_changes_are_announced_by_part() {
    let root = StatusNode::root("root", "supervisor");
    let hub = McpHub::new();
    let entry = server(&hub, &root, "s", Catalog::default());
    let mut changes = hub.surface_changes();
    let both = Catalog {
        resources: resources(&["r://1"]),
        templates: vec![],
        prompts: prompts(&["p"]),
    };
    hub.set_catalog(&entry, both.clone(), None);
    assert_eq!(changes.try_recv().ok(), Some(CatalogPart::Resources));
    assert_eq!(changes.try_recv().ok(), Some(CatalogPart::Prompts));
    hub.set_catalog(&entry, both, None);
    assert!(changes.try_recv().is_err(), "nothing changed");

    let new_prompts = Catalog {
        prompts: prompts(&["p", "q"]),
        ..Catalog::default()
    };
    hub.set_catalog(&entry, new_prompts, Some(CatalogPart::Prompts));
    assert_eq!(changes.try_recv().ok(), Some(CatalogPart::Prompts));
    assert!(changes.try_recv().is_err());
    assert_eq!(entry.catalog().resources.len(), 1, "resources kept");
    assert_eq!(hub.surface().prompts.len(), 2);
}

/// A request to a server that is backing off fails at once with the tool calls' error.
#[tokio::test]
async fn requests_to_a_restarting_server_fail_fast() {
    let root = StatusNode::root("root", "supervisor");
    let hub = McpHub::new();
    let entry = server(&hub, &root, "s", Catalog::default());
    entry.node().record_restart(Duration::from_secs(5));
    entry.node().set_state(ActorState::BackingOff);
    let started = std::time::Instant::now();
    let err = McpHub::request(&entry, "resources/read", json!({ "uri": "r://1" }))
        .await
        .unwrap_err();
    assert!(matches!(err, SurfaceError::Unavailable(_)), "{err}");
    assert_eq!(
        err.to_string(),
        "server `s` is restarting, next attempt in 5 s"
    );
    assert!(started.elapsed() < Duration::from_millis(500));
}

/// A scope names a server when one of its patterns could match one of the server's tools.
#[test]
fn a_scope_names_a_server_by_its_tool_prefix() {
    let names = |patterns: &[&str], server: &str| {
        let patterns: Vec<String> = patterns.iter().map(|p| (*p).to_owned()).collect();
        scope_names_server(&patterns, server)
    };
    assert!(names(&["fs__*"], "fs"));
    assert!(names(&["fs__read_file"], "fs"));
    assert!(names(&["f*"], "fs"));
    assert!(names(&["*"], "fs"));
    assert!(names(&["fs_main__*"], "fs.main"));
    assert!(!names(&["fs__*"], "fsx"));
    assert!(!names(&["fsx__*"], "fs"));
    assert!(!names(&["health"], "fs"));
    assert!(!names(&["fs"], "fs"));
}
