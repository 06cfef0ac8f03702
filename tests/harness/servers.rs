//! The binaries the tests run besides the daemon: the fixture servers, which cargo builds for
//! this test binary, and the official MCP servers and clients `.ci/test` installs.

use std::env;
use std::path::{Path, PathBuf};

/// The fixture server `name` (`fault_server` or `echo_server`, examples/README.md).
///
/// They are `[[bin]]` targets behind the `fixtures` feature, which this package's
/// dev-dependency on itself turns on: cargo builds them with this test binary and passes their
/// paths in `CARGO_BIN_EXE_*`, so a test never runs a stale fixture and never builds one.
pub fn fixture_server(name: &str) -> &'static Path {
    Path::new(match name {
        "fault_server" => env!("CARGO_BIN_EXE_fault_server"),
        "echo_server" => env!("CARGO_BIN_EXE_echo_server"),
        other => panic!("no fixture server named {other:?}"),
    })
}

/// The fault server's own tools (before `--tools N` adds `tool_000`…); other tests count by it.
pub const BUILTIN_TOOLS: [&str; 20] = [
    "echo",
    "add",
    "typed",
    "sleep",
    "hang",
    "hang_stdin",
    "progress",
    "crash",
    "garbage",
    "oversized",
    "invalid_utf8",
    "flood_stderr",
    "set_tools",
    "spawn_grandchild",
    "roots",
    "sample",
    "elicit",
    "ping_client",
    "slow_echo",
    "flood_logs",
];

/// Where `.ci/test` installed the official MCP servers and clients (`REVKA_TEST_CACHE`, else
/// `.cache/test-deps`). `None` when absent, unless `REVKA_REQUIRE_INTEROP=1` (set by `.ci/test`),
/// in which case a missing install fails the test instead of skipping it.
pub fn test_cache() -> Option<PathBuf> {
    let dir = env::var_os("REVKA_TEST_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".cache/test-deps"));
    let installed = dir.join("npm/node_modules/.bin").exists() && dir.join("venv/bin").exists();
    if installed {
        return Some(dir);
    }
    assert!(
        env::var("REVKA_REQUIRE_INTEROP").as_deref() != Ok("1"),
        "interop dependencies missing in {dir:?}; run .ci/test"
    );
    eprintln!("skipping: interop dependencies not installed (run .ci/test)");
    None
}

/// An installed npm binary (`mcp-server-everything`, ...).
pub fn npm_bin(cache: &Path, name: &str) -> PathBuf {
    cache.join("npm/node_modules/.bin").join(name)
}

/// An installed Python console script (`mcp-server-time`, ...).
pub fn venv_bin(cache: &Path, name: &str) -> PathBuf {
    cache.join("venv/bin").join(name)
}
