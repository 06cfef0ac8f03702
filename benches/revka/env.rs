//! Where the harness finds its binaries (the daemon, the fixture servers, the other gateways)
//! and what it prints about the machine before any figure.

use std::path::PathBuf;
use std::process::Command;

/// The `revka` binary cargo built for this benchmark, or `REVKA_BENCH_BIN`.
pub fn revka_bin() -> PathBuf {
    // `REVKA_BENCH_BIN` measures another build (e.g. the previous commit's) with this harness.
    std::env::var_os("REVKA_BENCH_BIN")
        .map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_revka")), PathBuf::from)
}

/// A fixture server (`echo_server`, `fault_server`): `[[bin]]` targets that cargo builds for
/// the benchmark with the same profile (the `fixtures` feature, on for benchmarks).
pub fn example(name: &str) -> anyhow::Result<PathBuf> {
    let path = match name {
        "echo_server" => env!("CARGO_BIN_EXE_echo_server"),
        "fault_server" => env!("CARGO_BIN_EXE_fault_server"),
        other => anyhow::bail!("no fixture server named {other:?}"),
    };
    Ok(PathBuf::from(path))
}

/// Where `.ci/bench` installed supergateway and mcp-proxy (`REVKA_BENCH_DEPS`, default
/// `.cache/bench-deps` in the repository).
pub fn deps_dir() -> PathBuf {
    std::env::var_os("REVKA_BENCH_DEPS").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".cache/bench-deps"),
        PathBuf::from,
    )
}

/// `supergateway`'s launcher and version, if installed.
pub fn supergateway() -> Option<(PathBuf, String)> {
    let dir = deps_dir().join("node_modules");
    let bin = dir.join(".bin/supergateway");
    let manifest = std::fs::read_to_string(dir.join("supergateway/package.json")).ok()?;
    let version = serde_json::from_str::<serde_json::Value>(&manifest).ok()?["version"]
        .as_str()?
        .to_owned();
    bin.exists().then_some((bin, version))
}

/// `mcp-proxy`'s launcher and version, if installed.
pub fn mcp_proxy() -> Option<(PathBuf, String)> {
    let bin = deps_dir().join("venv/bin/mcp-proxy");
    let pip = deps_dir().join("venv/bin/pip");
    let out = Command::new(pip)
        .args(["show", "mcp-proxy"])
        .output()
        .ok()?;
    let version = String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("Version: ").map(str::to_owned))?;
    bin.exists().then_some((bin, version))
}

fn first_line(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .and_then(|o| {
            let text = if o.stdout.is_empty() {
                o.stderr
            } else {
                o.stdout
            };
            String::from_utf8_lossy(&text)
                .lines()
                .next()
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "not found".into())
}

/// The header printed before any figure: the machine and the versions involved.
pub fn print_machine() {
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
            })
        })
        .unwrap_or_else(|| "unknown".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("MemTotal:")
                    .and_then(|v| v.trim().trim_end_matches(" kB").parse::<u64>().ok())
            })
        })
        .map_or(0.0, |kib| kib as f64 / (1024.0 * 1024.0));
    println!(
        "# machine: {cores} cores ({cpu}), {mem_gib:.1} GiB, Linux {}",
        kernel.trim()
    );
    println!(
        "# revka {} ({}); {}",
        env!("CARGO_PKG_VERSION"),
        if cfg!(debug_assertions) {
            "debug build!"
        } else {
            "release build"
        },
        first_line("rustc", &["--version"])
    );
    let sg = supergateway().map_or_else(|| "not installed".into(), |(_, v)| v);
    let mp = mcp_proxy().map_or_else(|| "not installed".into(), |(_, v)| v);
    println!(
        "# node {}; {}; supergateway {sg}; mcp-proxy {mp}",
        first_line("node", &["--version"]),
        first_line("python3", &["--version"]),
    );
    println!("# load generator: one thread (tokio current_thread), its CPU use printed per run");
}
