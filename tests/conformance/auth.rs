//! The conformance suite's client-mode `auth/*` scenarios, with `revka mcp` as the OAuth client.
//!
//! For each scenario the suite starts an MCP server (one tool, `test-tool`) behind a fake
//! authorization server and runs `<venv python> tests/conformance/auth_client.py <serverUrl>`.
//! That wrapper writes a fresh `REVKA_HOME/config.toml` (server `conformance`, `transport =
//! "http"`, the suite's URL; `[mcp.servers.oauth]` from the scenario's context; `[mcp.oauth]
//! client_metadata_url` = the suite's CIMD URL), sets `BROWSER` to `tests/conformance/browser.sh`
//! (it follows the fake `/authorize`'s redirect to Revka's loopback callback), and runs `revka
//! mcp call conformance__test-tool --timeout 30`, which must discover, register, authorize and
//! call by itself. One scenario at a time.
//!
//! | scenario                                     | what the suite checks                                          | `[mcp.servers.oauth]`                 | revka exits |
//! |----------------------------------------------|----------------------------------------------------------------|---------------------------------------|-------------|
//! | **2025-11-25**                               |                                                                |                                       |             |
//! | `auth/metadata-default`                      | PRM at `/.well-known/oauth-protected-resource/mcp` (named in `WWW-Authenticate`), RFC 8414 AS metadata, DCR, PKCE | - | 0 |
//! | `auth/metadata-var1`                         | the same PRM not named in `WWW-Authenticate`; OIDC discovery   | -                                     | 0           |
//! | `auth/metadata-var2`                         | PRM at the root well-known URL; an issuer with a path (`/tenant1`) | -                                 | 0           |
//! | `auth/metadata-var3`                         | PRM at a custom URL from `WWW-Authenticate`; OIDC discovery under `/tenant1` | -                       | 0           |
//! | `auth/basic-cimd`                            | the CIMD URL as `client_id` where the AS supports it           | - (`[mcp.oauth] client_metadata_url`)     | 0           |
//! | `auth/scope-from-www-authenticate`           | the `scope` of the 401's `WWW-Authenticate`                    | -                                     | 0           |
//! | `auth/scope-from-scopes-supported`           | else every scope in the PRM's `scopes_supported`               | -                                     | 0           |
//! | `auth/scope-omitted-when-undefined`          | else no `scope` at all                                         | -                                     | 0           |
//! | `auth/scope-step-up`                         | re-authorization with more scopes on a 403 `insufficient_scope`| -                                     | 0           |
//! | `auth/scope-retry-limit`                     | at most 3 authorizations when the 403s never end               | -                                     | any         |
//! | `auth/token-endpoint-auth-basic`, `-post`, `-none` | the AS's token endpoint auth method; `resource` (RFC 8707) | -                                  | 0           |
//! | `auth/pre-registration`                      | the configured client, Basic auth, no DCR                      | `client_id`, `client_secret`          | 0           |
//! | **2025-03-26**                               |                                                                |                                       |             |
//! | `auth/2025-03-26-oauth-metadata-backcompat`  | no PRM: AS metadata at the server's root                       | -                                     | 0           |
//! | `auth/2025-03-26-oauth-endpoint-fallback`    | no metadata: `/authorize`, `/token`, `/register` at the root   | -                                     | 0           |
//! | **extension** (SEP-1046)                     |                                                                |                                       |             |
//! | `auth/client-credentials-basic`              | `client_credentials` grant, `client_secret_basic`              | `client_id`, `client_secret`, `grant` | 0           |
//! | `auth/client-credentials-jwt`                | `client_credentials` grant, `private_key_jwt` (ES256)          | `client_id`, `private_key_file`, `signing_alg`, `grant` | 0 |
//! | **draft** (a test of their own)              |                                                                |                                       |             |
//! | `auth/resource-mismatch`                     | no authorization when the PRM's `resource` is another server's | -                                     | any         |
//! | `auth/offline-access-scope`                  | `offline_access` asked for when the AS lists it (SEP-2207)     | -                                     | 0           |
//! | `auth/offline-access-not-supported`          | and not when it does not                                       | -                                     | 0           |
//! | **not run**                                  |                                                                |                                       |             |
//! | `auth/cross-app-access-complete-flow`        | an IdP's ID token exchanged for an ID-JAG (SEP-990): Revka has no such grant | |             |
//!
//! `grant` is `"client_credentials"`; PRM: protected resource metadata (RFC 9728); AS:
//! authorization server; DCR: dynamic client registration; CIMD: Client ID Metadata Document.
//! Where the table says `-`, there is no `[mcp.servers.oauth]` table: Revka registers itself
//! (CIMD where the AS supports it, else DCR). `any`: the suite's `allowClientError`.
//!
//! The client secret reaches `revka` only through its environment (`${VAR}` in config.toml),
//! the private key only as a 0600 file in the temporary home.
//!
//! A scenario passes when its checks hold at least one SUCCESS and no FAILURE (as in
//! [`super::client`]) and, unless the suite allows the client to fail there
//! (`allowClientError`: `scope-retry-limit`, `resource-mismatch`), `revka` exited 0 (the
//! wrapper reports the exit status in a file). `resource-mismatch` passes a client that makes
//! no authorization request, so it also needs the check that `revka` fetched the protected
//! resource metadata (else a client that fails before discovery would pass it). WARNINGs are
//! printed, not failed. The tests print a table of scenario -> outcome, with the failed
//! checks' descriptions.
//!
//! Every `auth/*` scenario the suite lists is in exactly one list here (run or not run), each
//! under the spec version the suite lists it for: a suite upgrade that adds, drops or moves
//! one fails [`the_auth_scenario_lists_match_the_suite`], so it is looked at.
//!
//! Run alone: `REVKA_TEST_CACHE=… cargo test --test integration conformance::auth --
//! --nocapture`.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use super::suite::{Outcome, Suite};
use crate::harness::{revka_bin, venv_bin};

/// Whether `revka` must exit 0 in a scenario.
#[derive(Clone, Copy, PartialEq)]
enum Client {
    /// The whole call succeeds.
    Succeeds,
    /// The suite's `allowClientError`: the right behaviour is to give up with an error.
    MayFail,
}

/// One scenario to run.
struct AuthScenario {
    name: &'static str,
    client: Client,
    /// Checks that must hold a SUCCESS besides the scenario's verdict: where the verdict is
    /// that the client did not do something, they show it got far enough to decide.
    needs: &'static [&'static str],
}

const fn ok(name: &'static str) -> AuthScenario {
    AuthScenario {
        name,
        client: Client::Succeeds,
        needs: &[],
    }
}

const fn gives_up(name: &'static str, needs: &'static [&'static str]) -> AuthScenario {
    AuthScenario {
        name,
        client: Client::MayFail,
        needs,
    }
}

/// The 2025-11-25 authorization spec: discovery variants, CIMD, scope selection, token
/// endpoint authentication, pre-registration.
const SPEC_2025_11_25: [AuthScenario; 14] = [
    ok("auth/metadata-default"),
    ok("auth/metadata-var1"),
    ok("auth/metadata-var2"),
    ok("auth/metadata-var3"),
    ok("auth/basic-cimd"),
    ok("auth/scope-from-www-authenticate"),
    ok("auth/scope-from-scopes-supported"),
    ok("auth/scope-omitted-when-undefined"),
    ok("auth/scope-step-up"),
    // Its own checks fail a client that never authorized at all.
    gives_up("auth/scope-retry-limit", &[]),
    ok("auth/token-endpoint-auth-basic"),
    ok("auth/token-endpoint-auth-post"),
    ok("auth/token-endpoint-auth-none"),
    ok("auth/pre-registration"),
];

/// The 2025-03-26 spec: no protected resource metadata; metadata or default endpoints at the
/// server's root.
const SPEC_2025_03_26: [AuthScenario; 2] = [
    ok("auth/2025-03-26-oauth-metadata-backcompat"),
    ok("auth/2025-03-26-oauth-endpoint-fallback"),
];

/// The client-credentials extension (SEP-1046): machine-to-machine, no browser.
const EXTENSION: [AuthScenario; 2] = [
    ok("auth/client-credentials-jwt"),
    ok("auth/client-credentials-basic"),
];

/// Draft-spec scenarios (not scored by the suite), run and reported by a test of their own.
const DRAFT: [AuthScenario; 3] = [
    // Passes when no authorization request is made: that revka read the protected resource
    // metadata shows the refusal is its own, not a failure before discovery.
    gives_up("auth/resource-mismatch", &["prm-pathbased-requested"]),
    ok("auth/offline-access-scope"),
    ok("auth/offline-access-not-supported"),
];

/// Listed by the suite, not run, and why.
const NOT_RUN: [(&str, &str); 1] = [(
    "auth/cross-app-access-complete-flow",
    "an enterprise IdP's ID token exchanged for an ID-JAG (SEP-990): Revka has no such grant",
)];

/// The suite's tag for each list (a scenario is listed under it).
const GROUPS: [(&str, &[AuthScenario]); 4] = [
    ("2025-11-25", &SPEC_2025_11_25),
    ("2025-03-26", &SPEC_2025_03_26),
    ("extension", &EXTENSION),
    ("draft", &DRAFT),
];

/// How long the suite lets the client run: above `revka mcp call --timeout 30` and the
/// wrapper's own 50 s deadline, so that those, with their messages, come first.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);

/// The client command's wrapper (see its docstring).
fn wrapper() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conformance/auth_client.py")
}

/// Every `auth/*` scenario the suite lists is in exactly one list here, under the tag the
/// suite lists it for.
#[tokio::test(flavor = "multi_thread")]
async fn the_auth_scenario_lists_match_the_suite() {
    let Some(suite) = Suite::find() else { return };
    let listed = suite.client_scenarios().await;
    let suite_auth: BTreeSet<&str> = listed
        .keys()
        .map(String::as_str)
        .filter(|n| n.starts_with("auth/"))
        .collect();
    let mut ours = BTreeSet::new();
    for (tag, scenarios) in GROUPS {
        for s in scenarios {
            assert!(ours.insert(s.name), "{} is listed twice", s.name);
            if let Some(tags) = listed.get(s.name) {
                assert!(
                    tags.contains(tag),
                    "{} is listed for {tags:?} by the suite, here for {tag}",
                    s.name
                );
            }
        }
    }
    for (name, _) in NOT_RUN {
        assert!(ours.insert(name), "{name} is listed twice");
    }
    let new: Vec<_> = suite_auth.difference(&ours).collect();
    let gone: Vec<_> = ours.difference(&suite_auth).collect();
    assert!(
        new.is_empty() && gone.is_empty(),
        "the suite's auth scenarios differ from this module's lists: new in the suite {new:?}, \
         no longer in the suite {gone:?}"
    );
}

/// One scenario's run: its checks, revka's exit status, what the suite and the client printed.
struct Run {
    name: &'static str,
    client: Client,
    needs: &'static [&'static str],
    checks: Vec<Value>,
    /// `exit N` or `signal N` as the wrapper wrote it; `None` when it wrote nothing (it did not
    /// run, or was killed).
    status: Option<String>,
    output: String,
}

impl Run {
    /// `None` when the scenario passed, else why not.
    fn failure(&self) -> Option<String> {
        let outcome = Outcome::of(&self.checks);
        if !matches!(outcome, Outcome::Passed) {
            return Some(outcome.to_string());
        }
        let missing: Vec<&str> = self
            .needs
            .iter()
            .copied()
            .filter(|id| {
                !self
                    .checks
                    .iter()
                    .any(|c| c["id"] == *id && c["status"] == "SUCCESS")
            })
            .collect();
        if !missing.is_empty() {
            return Some(format!(
                "checks passed, but without a SUCCESS for {missing:?} (the client stopped earlier)"
            ));
        }
        match (self.client, self.status.as_deref()) {
            (Client::MayFail, _) | (Client::Succeeds, Some("exit 0")) => None,
            (Client::Succeeds, Some(status)) => Some(format!("checks passed, but revka: {status}")),
            (Client::Succeeds, None) => {
                Some("checks passed, but the wrapper reported no exit status".to_owned())
            }
        }
    }

    /// The table's row: the name, the verdict, then each warning on a line of its own.
    fn row(&self) -> String {
        let verdict = self
            .failure()
            .unwrap_or_else(|| match self.status.as_deref() {
                Some("exit 0") => "passed".to_owned(),
                other => format!(
                    "passed (revka gave up as allowed: {})",
                    other.unwrap_or("?")
                ),
            });
        let mut row = format!("{:<44} {verdict}\n", self.name);
        for c in self.checks.iter().filter(|c| c["status"] == "WARNING") {
            row.push_str(&format!(
                "{:<44}   warning {}: {}\n",
                "",
                c["id"].as_str().unwrap_or("?"),
                c["description"].as_str().unwrap_or("(no description)")
            ));
        }
        row
    }
}

/// Runs `scenarios` one at a time with `revka mcp` as the client.
async fn run_all(suite: &Suite, scenarios: &[&[AuthScenario]]) -> Vec<Run> {
    // `exec`: the suite runs the command through `sh -c` and on its timeout kills that shell,
    // which would leave the wrapper and revka running (and the suite waiting for their output).
    let command = format!(
        "exec {} {}",
        venv_bin(&suite.cache, "python").display(),
        wrapper().display()
    );
    let mut runs = Vec::new();
    for scenario in scenarios.iter().flat_map(|s| s.iter()) {
        let dir = tempfile::tempdir().unwrap();
        let status_file = dir.path().join("status");
        let envs: [(&str, &Path); 2] = [
            ("REVKA_BIN", Path::new(revka_bin())),
            ("AUTH_CLIENT_STATUS", &status_file),
        ];
        let (checks, output) = suite
            .run_client_checks(scenario.name, &command, &envs, Some(CLIENT_TIMEOUT))
            .await;
        let status = std::fs::read_to_string(&status_file)
            .ok()
            .map(|s| s.trim().to_owned());
        let run = Run {
            name: scenario.name,
            client: scenario.client,
            needs: scenario.needs,
            checks,
            status,
            output,
        };
        print!("{}", run.row());
        runs.push(run);
    }
    runs
}

/// Prints the table and fails on any scenario that did not pass, with its output.
fn report(title: &str, runs: &[Run]) {
    let table: String = runs.iter().map(Run::row).collect();
    println!("\n{title}:\n{table}");
    let failures: Vec<String> = runs
        .iter()
        .filter_map(|r| {
            let why = r.failure()?;
            Some(format!("=== {}: {why}\n{}", r.name, r.output))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{title}: {} of {} scenarios did not pass\n{table}\n{}",
        failures.len(),
        runs.len(),
        failures.join("\n\n")
    );
}

/// Every 2025-11-25, 2025-03-26 and client-credentials scenario passes with `revka mcp` as
/// the client.
#[tokio::test(flavor = "multi_thread")]
async fn revka_mcp_passes_the_auth_scenarios() {
    let Some(suite) = Suite::find() else { return };
    let runs = run_all(&suite, &[&SPEC_2025_11_25, &SPEC_2025_03_26, &EXTENSION]).await;
    report("auth scenarios (2025-11-25, 2025-03-26, extension)", &runs);
}

/// The draft-spec scenarios (resource mismatch, offline access), reported on their own.
#[tokio::test(flavor = "multi_thread")]
async fn revka_mcp_passes_the_draft_auth_scenarios() {
    let Some(suite) = Suite::find() else { return };
    let runs = run_all(&suite, &[&DRAFT]).await;
    report("draft auth scenarios", &runs);
}

/// One run of the wrapper with the stand-in revka: its result, and the directory the stand-in
/// recorded into.
struct Recorded {
    result: std::process::Output,
    out: tempfile::TempDir,
}

impl Recorded {
    /// A file the stand-in (or the wrapper: `status`) wrote, if it did.
    fn read(&self, file: &str) -> Option<String> {
        std::fs::read_to_string(self.out.path().join(file)).ok()
    }
}

/// The wrapper, with a stand-in for `revka` that records what it was given: the config it
/// writes for each kind of scenario, the secret only in the environment, the key file 0600
/// in a 0700 home that is removed afterwards, `BROWSER`, the arguments, revka's exit status
/// passed on and reported; a context it cannot map is refused.
#[test]
fn the_wrapper_writes_each_scenarios_config() {
    let Some(cache) = crate::harness::test_cache() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("fake-revka");
    std::fs::write(
        &fake,
        r#"#!/bin/sh
# Stand-in for revka: records what the wrapper gave it, exits 3.
out="$FAKE_REVKA_OUT"
cp "$REVKA_HOME/config.toml" "$out/config.toml"
if [ -f "$REVKA_HOME/client-key.pem" ]; then
    cp "$REVKA_HOME/client-key.pem" "$out/key"
    stat -c %a "$REVKA_HOME/client-key.pem" > "$out/key.mode"
fi
stat -c %a "$REVKA_HOME" > "$out/home.mode"
printf '%s' "$REVKA_HOME" > "$out/home"
printf '%s\n' "$@" > "$out/args"
printf '%s' "${REVKA_CONFORMANCE_CLIENT_SECRET-unset}" > "$out/secret"
printf '%s' "${MCP_CONFORMANCE_CONTEXT-unset}" > "$out/context"
printf '%s' "$BROWSER" > "$out/browser"
exit 3
"#,
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let url = "http://localhost:9/mcp";
    let run = |scenario: &str, context: Option<&str>| {
        let out = tempfile::tempdir().unwrap();
        let mut cmd = Command::new(venv_bin(&cache, "python"));
        cmd.arg(wrapper())
            .arg(url)
            .env("REVKA_BIN", &fake)
            .env("FAKE_REVKA_OUT", out.path())
            .env("AUTH_CLIENT_STATUS", out.path().join("status"))
            .env("MCP_CONFORMANCE_SCENARIO", scenario)
            .env_remove("MCP_CONFORMANCE_CONTEXT")
            .env_remove("REVKA_CONFORMANCE_CLIENT_SECRET");
        if let Some(context) = context {
            cmd.env("MCP_CONFORMANCE_CONTEXT", context);
        }
        let result = cmd.output().unwrap();
        Recorded { result, out }
    };

    // A scenario without context: no oauth table, the CIMD URL, the call.
    let rec = run("auth/metadata-default", None);
    let read = |f: &str| rec.read(f);
    let stderr = String::from_utf8_lossy(&rec.result.stderr).into_owned();
    assert_eq!(rec.result.status.code(), Some(3), "{stderr}");
    assert_eq!(read("status").as_deref(), Some("exit 3\n"));
    let config: toml::Table = read("config.toml").unwrap().parse().unwrap();
    let server = &config["mcp"]["servers"][0];
    assert_eq!(server["name"].as_str(), Some("conformance"));
    assert_eq!(server["transport"].as_str(), Some("http"));
    assert_eq!(server["url"].as_str(), Some(url));
    assert!(server.get("oauth").is_none(), "{config}");
    assert_eq!(
        config["mcp"]["oauth"]["client_metadata_url"].as_str(),
        Some("https://conformance-test.local/client-metadata.json")
    );
    assert_eq!(
        read("args").unwrap(),
        "mcp\ncall\nconformance__test-tool\n--timeout\n30\n"
    );
    assert!(
        read("browser")
            .unwrap()
            .ends_with("tests/conformance/browser.sh")
    );
    assert_eq!(read("home.mode").unwrap().trim(), "700");
    assert_eq!(read("secret").unwrap(), "unset");
    assert!(
        !Path::new(&read("home").unwrap()).exists(),
        "the temporary REVKA_HOME is removed"
    );

    // Pre-registration: client_id, the secret through the environment only.
    let context = r#"{"name":"auth/pre-registration","client_id":"pre-registered-client","client_secret":"pre-registered-secret"}"#;
    let rec = run("auth/pre-registration", Some(context));
    let read = |f: &str| rec.read(f);
    assert_eq!(rec.result.status.code(), Some(3));
    let text = read("config.toml").unwrap();
    assert!(!text.contains("pre-registered-secret"), "{text}");
    let config: toml::Table = text.parse().unwrap();
    let oauth = &config["mcp"]["servers"][0]["oauth"];
    assert_eq!(oauth["client_id"].as_str(), Some("pre-registered-client"));
    assert_eq!(
        oauth["client_secret"].as_str(),
        Some("${REVKA_CONFORMANCE_CLIENT_SECRET}")
    );
    assert!(oauth.get("grant").is_none(), "{text}");
    assert_eq!(read("secret").unwrap(), "pre-registered-secret");
    assert_eq!(read("context").unwrap(), "unset");

    // Client credentials with a secret.
    let context = r#"{"name":"auth/client-credentials-basic","client_id":"conformance-test-client","client_secret":"conformance-test-secret"}"#;
    let rec = run("auth/client-credentials-basic", Some(context));
    let read = |f: &str| rec.read(f);
    let config: toml::Table = read("config.toml").unwrap().parse().unwrap();
    let oauth = &config["mcp"]["servers"][0]["oauth"];
    assert_eq!(oauth["grant"].as_str(), Some("client_credentials"));
    assert_eq!(oauth["client_id"].as_str(), Some("conformance-test-client"));
    assert_eq!(read("secret").unwrap(), "conformance-test-secret");

    // Client credentials with a private key: a 0600 file, the algorithm.
    let pem = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg\n-----END PRIVATE KEY-----\n";
    let context = serde_json::json!({
        "name": "auth/client-credentials-jwt",
        "client_id": "conformance-test-client",
        "private_key_pem": pem,
        "signing_algorithm": "ES256",
    })
    .to_string();
    let rec = run("auth/client-credentials-jwt", Some(&context));
    let read = |f: &str| rec.read(f);
    let text = read("config.toml").unwrap();
    assert!(!text.contains("PRIVATE KEY"), "{text}");
    let config: toml::Table = text.parse().unwrap();
    let oauth = &config["mcp"]["servers"][0]["oauth"];
    assert_eq!(oauth["grant"].as_str(), Some("client_credentials"));
    assert_eq!(oauth["signing_alg"].as_str(), Some("ES256"));
    assert!(oauth.get("client_secret").is_none(), "{text}");
    let key_file = oauth["private_key_file"].as_str().unwrap();
    assert!(key_file.starts_with(&read("home").unwrap()), "{key_file}");
    assert_eq!(read("key").unwrap(), pem);
    assert_eq!(read("key.mode").unwrap().trim(), "600");

    // A context it cannot map (cross-app access): refused before revka runs.
    let context = r#"{"name":"auth/cross-app-access-complete-flow","client_id":"c","client_secret":"s","idp_id_token":"t"}"#;
    let rec = run("auth/cross-app-access-complete-flow", Some(context));
    let read = |f: &str| rec.read(f);
    let stderr = String::from_utf8_lossy(&rec.result.stderr).into_owned();
    assert_eq!(rec.result.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("idp_id_token"), "{stderr}");
    assert_eq!(read("status").as_deref(), Some("setup failed\n"));
    assert!(read("config.toml").is_none());
}
