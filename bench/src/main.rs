//! `wasmhook-bench`: measures the engine against a raw hyper baseline in one run, and
//! writes the figures to docs/BENCHMARKS.md.
//!
//! `cargo run --release -p wasmhook-bench -- all` runs everything; `--smoke` runs tiny
//! counts (for CI, to keep the harness from rotting; its figures mean nothing).
//!
//! # Layout
//!
//! - `report`: runs the scenarios and writes their sections; `targets`: the targets table.
//! - `baseline`: the raw hyper POST loop every figure is compared with.
//! - `drain`, `ingest`, `adapters`, `reload`, `cluster`: the scenarios (`cluster` is the
//!   PostgreSQL mode with several nodes); `mixed`: producers posting while the engine
//!   delivers, on default settings, with the engine's CPU time per delivery; `console`: the
//!   console's page times on a store with 10,000 subscriptions and 1M deliveries;
//!   `sources`: HTTP, in-process and NATS ingest from one run (NATS from `scripts/nats-server`).
//! - `harness`: engines in this process or in child processes, preloading, RSS and disk.
//! - `receiver`: the loopback receiver that counts and times deliveries.

mod adapters;
mod baseline;
mod cluster;
mod console;
mod drain;
mod harness;
mod ingest;
mod mixed;
mod receiver;
mod reload;
mod report;
mod sources;
mod targets;

use std::path::PathBuf;

use clap::Parser;

#[derive(Debug, Parser)]
struct Args {
    /// What to run: `all`, or one of `baseline`, `drain`, `ingest`, `latency`, `curves`,
    /// `memory`, `postgres`, `adapters`, `dead-endpoint`, `reload`, `producers`, `console`; `profile-drain-none` and
    /// `profile-drain-slack` run one drain alone, for a profiler; `profile-mixed-single` and
    /// `profile-mixed-batch` one producers' workload; `profile-latency-<rate>` publish-to-receipt
    /// times at that rate.
    #[arg(default_value = "all")]
    scenario: String,
    /// Tiny counts, to check the harness works; the figures are meaningless.
    #[arg(long)]
    smoke: bool,
    /// Where to write the report (only `all` writes it).
    #[arg(long, default_value = "docs/BENCHMARKS.md")]
    out: PathBuf,
    /// Internal: with scenario `engine-child`, the folder whose `wasmhook.toml` the child
    /// engine runs (the memory scenario measures an engine process of its own).
    #[arg(long, hide = true)]
    dir: Option<PathBuf>,
}

/// How many of each thing a run uses.
#[derive(Debug, Clone, Copy)]
struct Scale {
    baseline_requests: u64,
    dead_endpoint_events: usize,
    drain_events: usize,
    adapter_calls: usize,
    /// Calls for JavaScript and Python on fresh instances, which take milliseconds each.
    slow_adapter_calls: usize,
    reload_swaps: usize,
    concurrency: usize,
    ingest_events: u64,
    latency_events: usize,
    /// Deliveries per point of the fan-out and idle-subscription curves.
    curve_deliveries: usize,
    fan_out: [usize; 3],
    idle: [usize; 3],
    /// Payload sizes, with how many events each.
    payloads: [(usize, usize); 3],
    backlogs: [usize; 3],
    /// Events drained by 1, 2 and 3 PostgreSQL nodes.
    postgres_events: usize,
    /// Events per producers' run (mixed and end to end).
    producer_events: u64,
    /// Events per latency point of the producers' section.
    producer_latency_events: usize,
    /// Subscriptions and finished deliveries in the store the console's pages are timed on.
    console_subscriptions: usize,
    console_deliveries: usize,
}

/// The engine binary's allocator, so that an engine run in this process (or as this
/// binary's `engine-child`) allocates as `wasmhook` does.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.scenario == "engine-child" {
        return harness::engine_child(args.dir.as_deref());
    }
    let scale = if args.smoke {
        Scale {
            baseline_requests: 500,
            dead_endpoint_events: 200,
            drain_events: 200,
            adapter_calls: 20,
            slow_adapter_calls: 5,
            reload_swaps: 2,
            concurrency: 16,
            ingest_events: 200,
            latency_events: 100,
            curve_deliveries: 200,
            fan_out: [1, 2, 5],
            idle: [2, 10, 50],
            payloads: [(1 << 10, 100), (16 << 10, 50), (256 << 10, 10)],
            backlogs: [100, 300, 1000],
            postgres_events: 200,
            producer_events: 1_000,
            producer_latency_events: 50,
            console_subscriptions: 20,
            console_deliveries: 2_000,
        }
    } else {
        Scale {
            baseline_requests: 200_000,
            dead_endpoint_events: 20_000,
            drain_events: 100_000,
            adapter_calls: 20_000,
            slow_adapter_calls: 300,
            reload_swaps: 10,
            concurrency: 64,
            ingest_events: 50_000,
            latency_events: 10_000,
            curve_deliveries: 30_000,
            fan_out: [1, 10, 100],
            idle: [10, 1_000, 10_000],
            payloads: [(1 << 10, 30_000), (16 << 10, 10_000), (256 << 10, 2_000)],
            backlogs: [10_000, 100_000, 1_000_000],
            postgres_events: 30_000,
            producer_events: 60_000,
            producer_latency_events: 2_000,
            console_subscriptions: 10_000,
            console_deliveries: 1_000_000,
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    if matches!(args.scenario.as_str(), "all" | "adapters" | "drain") {
        build_example_adapters()?;
    }
    let report = runtime.block_on(report::run(&args.scenario, scale))?;
    print!("{report}");
    if args.scenario == "all" {
        // A run that lost a section must not pass for a good one (CI runs `--smoke all`).
        for section in [
            "## Baseline",
            "## Drain rate",
            "## Ingest",
            "## Latency",
            "### Subscriptions matching each event",
            "### Subscriptions configured but not matching",
            "### Payload size",
            "## Backlog and memory",
            "## PostgreSQL, 1 to 3 nodes",
            "## Adapter overhead per delivery",
            "## A dead endpoint beside a healthy one",
            "## Hot reload",
            "## Console pages",
            "## Producers posting while the engine delivers",
            "## Event sources: HTTP, in process, NATS",
            "## Targets",
        ] {
            anyhow::ensure!(
                report.contains(section),
                "the report has no `{section}` section"
            );
        }
    }
    if args.scenario == "all" && !args.smoke {
        let doc = std::fs::read_to_string(&args.out).unwrap_or_default();
        std::fs::write(&args.out, splice(&doc, &report))?;
        eprintln!("wrote {}", args.out.display());
    }
    Ok(())
}

const START: &str = "<!-- generated by wasmhook-bench: start -->";
const END: &str = "<!-- generated by wasmhook-bench: end -->";

/// Replaces the generated part of `doc` (between the markers) with `report`, keeping the
/// hand-written analysis around it; appends it when there are no markers yet.
fn splice(doc: &str, report: &str) -> String {
    let generated = format!("{START}\n{report}{END}");
    match (doc.find(START), doc.find(END)) {
        (Some(a), Some(b)) if a < b => format!("{}{generated}{}", &doc[..a], &doc[b + END.len()..]),
        _ => format!("{doc}\n{generated}\n"),
    }
}

/// The JavaScript and Python example adapters are built by a script (npm and PyPI); run it
/// when their components are missing, so one command works from a fresh clone.
fn build_example_adapters() -> anyhow::Result<()> {
    if std::path::Path::new(TEAMS).is_file() && std::path::Path::new(DISCORD).is_file() {
        return Ok(());
    }
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../scripts/build-example-adapters"
    );
    eprintln!("building the JavaScript and Python example adapters with {script}");
    let status = std::process::Command::new(script).status()?;
    anyhow::ensure!(status.success(), "{script} failed ({status})");
    Ok(())
}

const SLACK: &str = env!("WASMHOOK_PLUGIN_SLACK");
const TEAMS: &str = env!("WASMHOOK_EXAMPLE_TEAMS");
const DISCORD: &str = env!("WASMHOOK_EXAMPLE_DISCORD");
