//! Revka's benchmark harness: `cargo bench --bench revka -- [scenario...] [--secs N]`
//! (or `.ci/bench`, which first installs supergateway and mcp-proxy and builds the examples).
//!
//! Scenarios: `throughput` (Revka over HTTP and through its stdio bridge, against direct stdio,
//! supergateway and mcp-proxy), `restart`
//! (kill -9 of a stdio server to the first successful call again), `sessions` (RSS per idle
//! session), `fanout` (progress to 100 subscribers while other sessions call), `startup`
//! (exec to `mcp.json`, with 0 and 20 servers; idle RSS), `soak` (mixed load for
//! `--soak-secs`, RSS and fds every 30 s). No argument runs all but `soak`.
//!
//! It prints figures and the machine they were measured on; it never fails on a figure. The
//! load generator is this process, on one thread (tokio `current_thread`), and prints its own
//! CPU use so a saturated generator is visible.

mod daemon;
mod env;
mod fanout;
mod http;
mod procs;
mod restart;
mod sessions;
mod soak;
mod startup;
mod stats;
mod stdio;
mod throughput;

use std::time::Duration;

/// Options from the command line.
pub struct Options {
    /// Seconds per throughput run.
    pub secs: u64,
    /// Kills in the restart scenario.
    pub kills: usize,
    /// Sessions in the sessions scenario.
    pub sessions: usize,
    /// Length of the soak.
    pub soak_secs: u64,
    /// Throughput targets to run (`direct,revka,revka-std,revka-stdio,supergateway,mcp-proxy`;
    /// default all).
    pub targets: Vec<String>,
}

const ALL: &[&str] = &["throughput", "restart", "sessions", "fanout", "startup"];

fn parse() -> anyhow::Result<(Vec<String>, Options)> {
    let mut opts = Options {
        secs: 5,
        kills: 50,
        sessions: 10_000,
        soak_secs: 600,
        targets: throughput::TARGETS
            .iter()
            .map(|t| (*t).to_owned())
            .collect(),
    };
    let mut scenarios = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut number = |name: &str| -> anyhow::Result<u64> {
            let v = args
                .next()
                .ok_or_else(|| anyhow::anyhow!("{name} needs a value"))?;
            v.parse()
                .map_err(|_| anyhow::anyhow!("{name}: not a number: {v}"))
        };
        match arg.as_str() {
            // `cargo bench` passes --bench to harness = false targets.
            "--bench" => {}
            "--secs" => opts.secs = number("--secs")?,
            "--kills" => opts.kills = number("--kills")? as usize,
            "--sessions" => opts.sessions = number("--sessions")? as usize,
            "--soak-secs" => opts.soak_secs = number("--soak-secs")?,
            "--targets" => {
                let list = args
                    .next()
                    .ok_or_else(|| anyhow::anyhow!("--targets needs a value"))?;
                opts.targets = list.split(',').map(str::to_owned).collect();
                if let Some(bad) = opts
                    .targets
                    .iter()
                    .find(|t| !throughput::TARGETS.contains(&t.as_str()))
                {
                    anyhow::bail!(
                        "--targets: unknown target {bad:?} (known: {})",
                        throughput::TARGETS.join(",")
                    );
                }
            }
            "-h" | "--help" => {
                println!(
                    "usage: cargo bench --bench revka -- [{}|soak ...] [--secs N] [--kills N] [--sessions N] [--soak-secs N] [--targets direct,revka,revka-std,revka-stdio,supergateway,mcp-proxy]",
                    ALL.join("|")
                );
                std::process::exit(0);
            }
            s if ALL.contains(&s) || s == "soak" => scenarios.push(s.to_owned()),
            other => anyhow::bail!("unknown argument {other:?} (try --help)"),
        }
    }
    if scenarios.is_empty() {
        scenarios = ALL.iter().map(|s| (*s).to_owned()).collect();
    }
    Ok((scenarios, opts))
}

fn main() -> anyhow::Result<()> {
    let (scenarios, opts) = parse()?;
    env::print_machine();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    for scenario in &scenarios {
        let result = runtime.block_on(async {
            match scenario.as_str() {
                "throughput" => {
                    throughput::run(Duration::from_secs(opts.secs), &opts.targets).await
                }
                "restart" => restart::run(opts.kills).await,
                "sessions" => sessions::run(opts.sessions).await,
                "fanout" => fanout::run(Duration::from_secs(opts.secs)).await,
                "startup" => startup::run().await,
                "soak" => soak::run(Duration::from_secs(opts.soak_secs)).await,
                _ => unreachable!(),
            }
        });
        if let Err(e) = result {
            println!("{scenario}: could not run: {e:#}");
        }
    }
    Ok(())
}
