//! The report: runs the scenarios a command asks for and writes each one's section of
//! docs/BENCHMARKS.md, in Markdown.
//!
//! Over 500 lines on purpose: one section writer per scenario, each short, in the order
//! the report prints them; the scenarios themselves live in their own modules.

use std::fmt::Write as _;

use crate::targets::Targets;
use crate::{DISCORD, SLACK, Scale, TEAMS};
use crate::{
    adapters, baseline, cluster, console, drain, harness, ingest, mixed, receiver, reload, sources,
};

pub async fn run(scenario: &str, scale: Scale) -> anyhow::Result<String> {
    let canary_before = (scenario == "all").then(canary);
    let receiver = receiver::Receiver::start().await?;
    let mut out = String::new();
    writeln!(out, "## Run\n\n{}\n", machine())?;
    // Where `all` puts its canary line, once it has timed the canary again at the end.
    let run_section_end = out.len();
    if scenario == "adapters" {
        // Needs no network: run it alone, so a profile of it shows only the sandbox.
        let mut targets = Targets::default();
        return adapter_report(&mut out, scale, &mut targets)
            .await
            .map(|()| out);
    }
    if scenario == "console" {
        return console_report(&mut out, scale).await.map(|()| out);
    }
    if scenario == "sources" {
        sources::report(&mut out, &receiver, scale.ingest_events).await?;
        return Ok(out);
    }
    if scenario == "reload" {
        return reload_report(&mut out, &receiver, scale)
            .await
            .map(|()| out);
    }
    if let Some(which) = scenario.strip_prefix("profile-drain-") {
        // One drain and nothing else, for `perf record` or callgrind.
        let adapter = (which == "slack").then(|| drain::Adapter {
            name: "slack",
            path: std::path::Path::new(SLACK),
            keys: "settings = { channel = \"#ops\" }",
        });
        let rate = drain::drain(
            &receiver,
            "/profile",
            scale.drain_events,
            adapter,
            &[],
            scale.concurrency,
        )
        .await?;
        writeln!(out, "drain ({which}): {rate:.0} deliveries/s")?;
        return Ok(out);
    }
    if let Some(which) = scenario.strip_prefix("profile-mixed-") {
        // One producers' workload on defaults, for `perf record`; the engine is a child
        // process, whose pid lets the profile keep the engine's samples alone.
        let batch = if which == "single" { 1 } else { mixed::BATCH };
        let path = format!("/profile-mixed-{which}");
        let run = mixed::run(&receiver, &path, scale.producer_events, batch, None, "").await?;
        writeln!(
            out,
            "mixed ({which}): {:.0} deliveries/s, {:.3} ms engine CPU per delivery ({:.3} ms on the store's writer thread), {} write batches ({:.1} events per batch), engine pid {}",
            run.rate,
            run.cpu_ms_per_delivery,
            run.writer_cpu_ms_per_delivery,
            run.batches,
            scale.producer_events as f64 / run.batches.max(1) as f64,
            run.engine_pid
        )?;
        return Ok(out);
    }
    if let Some(rate) = scenario.strip_prefix("profile-latency-") {
        // Publish-to-receipt at a steady rate on defaults, alone; the engine's pid goes to
        // stderr before the events flow, for `strace -p` or `perf record -p`.
        let rate: u64 = rate.parse()?;
        let path = format!("/latency-profile-{rate}");
        let (l, b) =
            mixed::latency(&receiver, &path, scale.producer_latency_events, rate, true).await?;
        writeln!(
            out,
            "latency at {rate}/s: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} events); \
             write batches {}, {} over {} ms, slowest {}",
            l.p50_us as f64 / 1e3,
            l.p99_us as f64 / 1e3,
            l.max_us as f64 / 1e3,
            l.events,
            b.count,
            b.slow,
            mixed::SLOW_BATCH_MS,
            b.slowest()
        )?;
        return Ok(out);
    }
    let base = baseline::run(&receiver, scale.baseline_requests, scale.concurrency).await?;
    writeln!(
        out,
        "## Baseline\n\nRaw hyper client, 1 KiB POSTs, concurrency {}, keep-alive: **{:.0} requests/s**; \
         one at a time: {:.0} µs round trip.\n",
        scale.concurrency, base.rate, base.rtt_us
    )?;
    let mut targets = Targets::default();
    let all = scenario == "all";
    if all || scenario == "drain" {
        drain_report(&mut out, &receiver, base.rate, scale, &mut targets).await?;
    }
    if all || scenario == "ingest" {
        let r = ingest::ingest(&receiver, scale.ingest_events, 1000, scale.concurrency).await?;
        writeln!(
            out,
            "## Ingest\n\n\
             Events accepted durably (the `202` comes after the commit's `fsync`) per second: {} single-event POSTs \
             from {} clients, then as many in batches of 1,000 from 4 clients. 1 KiB events, each matching one \
             subscription, so each also writes a delivery (whose adapter is absent, so deliveries wait instead of \
             competing for the CPU).\n\n\
             | How | Events/s | vs baseline requests/s |\n|---|---|---|\n\
             | One event per POST | {:.0} | {:.0}% |\n| 1,000 events per POST | {:.0} | {:.0}% |\n",
            scale.ingest_events,
            scale.concurrency,
            r.single,
            100.0 * r.single / base.rate,
            r.batched,
            100.0 * r.batched / base.rate,
        )?;
        targets.ingest = Some(r);
        targets.baseline = base.rate;
    }
    if all || scenario == "latency" {
        let l = ingest::latency(&receiver, scale.latency_events, 1000).await?;
        writeln!(
            out,
            "## Latency\n\n\
             From `POST /v1/events` being sent to the receiver getting the delivery, at a steady 1,000 events/s \
             ({} events, one per request, no adapter), beside the baseline's round trip.\n\n\
             | p50 | p99 | max | Baseline round trip |\n|---|---|---|---|\n\
             | {} | {} | {} | {:.0} µs |\n",
            l.events,
            micros(l.p50_us as f64),
            micros(l.p99_us as f64),
            micros(l.max_us as f64),
            base.rtt_us,
        )?;
    }
    if all || scenario == "curves" {
        curves_report(&mut out, &receiver, base.rate, scale, &mut targets).await?;
    }
    if all || scenario == "memory" {
        memory_report(&mut out, &receiver, base.rate, scale, &mut targets).await?;
    }
    if all {
        adapter_report(&mut out, scale, &mut targets).await?;
    }
    if all || scenario == "postgres" {
        let server = cluster::Server::get()?;
        let mut rows = String::new();
        for nodes in 1..=3 {
            let rate = cluster::drain(
                &server,
                &receiver,
                nodes,
                scale.postgres_events,
                scale.concurrency,
            )
            .await?;
            writeln!(
                rows,
                "| {nodes} | {rate:.0} | {:.0}% |",
                100.0 * rate / base.rate
            )?;
        }
        writeln!(
            out,
            "## PostgreSQL, 1 to 3 nodes\n\n\
             {} events preloaded into one PostgreSQL database (a local server on the same machine, `fsync` on), \
             then drained by 1, 2 and 3 engine nodes, each a process of its own with concurrency {}, claiming with \
             `FOR UPDATE SKIP LOCKED`. No adapter.\n\n\
             | Nodes | Deliveries/s | vs baseline |\n|---|---|---|\n{rows}",
            scale.postgres_events, scale.concurrency
        )?;
    }
    if all || scenario == "dead-endpoint" {
        let (alone, beside) =
            drain::dead_endpoint(&receiver, scale.dead_endpoint_events, scale.concurrency).await?;
        writeln!(
            out,
            "## A dead endpoint beside a healthy one\n\n\
             {} events preloaded; the healthy subscription's drain rate (no adapter), alone and with a second \
             subscription on every event whose endpoint never answers (timeout 2 s, circuit opens after 5 failures).\n\n\
             | Case | Deliveries/s to the healthy endpoint | vs baseline |\n|---|---|---|\n\
             | Healthy alone | {alone:.0} | {:.0}% |\n| Beside a black hole | {beside:.0} | {:.0}% |\n\n\
             The black hole costs the healthy endpoint {:.0}% of its rate.\n",
            scale.dead_endpoint_events,
            100.0 * alone / base.rate,
            100.0 * beside / base.rate,
            100.0 * (1.0 - beside / alone),
        )?;
    }
    if all || scenario == "producers" {
        mixed::report(&mut out, &receiver, base.rate, scale, &mut targets).await?;
    }
    if all {
        reload_report(&mut out, &receiver, scale).await?;
        console_report(&mut out, scale).await?;
        sources::report(&mut out, &receiver, scale.ingest_events).await?;
        targets.baseline = base.rate;
        out.push_str(&targets.table());
    }
    if let Some(before) = canary_before {
        let after = canary();
        let (before, after) = (before.as_secs_f64() * 1e3, after.as_secs_f64() * 1e3);
        let line = format!(
            "A pure-CPU canary (a fixed loop, the fastest of three rounds) took {before:.1} ms before the \
             first scenario and {after:.1} ms after the last ({:+.0}%). The machine changed speed during a run \
             whose canary moved much, and its figures do not compare with a steady run's.\n\n",
            100.0 * (after / before - 1.0)
        );
        out.insert_str(run_section_end, &line);
    }
    Ok(out)
}

/// A fixed piece of pure-CPU work, timed: the fastest of three rounds. Timed before the
/// first scenario of `all` and after the last, it tells whether the machine slowed during
/// the run. These VMs did, by up to three times for code on the CPU alone, while the
/// loopback baseline moved much less, so the baseline alone cannot tell.
fn canary() -> std::time::Duration {
    (0..3)
        .map(|_| {
            let started = std::time::Instant::now();
            let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
            let mut sum = 0u64;
            for _ in 0..20_000_000 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                sum = sum.wrapping_add(std::hint::black_box(x));
            }
            std::hint::black_box(sum);
            started.elapsed()
        })
        .min()
        .expect("three rounds")
}

/// The console's pages on a large store.
async fn console_report(out: &mut String, scale: Scale) -> anyhow::Result<()> {
    let pages = console::page_times(scale.console_subscriptions, scale.console_deliveries).await?;
    writeln!(
        out,
        "## Console pages\n\n\
         Each `/ui` page fetched {} times with a signed-in session, on a store holding {} subscriptions and {} \
         finished deliveries (nine in ten delivered, the rest dead letters). The time is the loopback round trip \
         of the whole page, an upper bound on the server-side render time; the target is under 200 ms.\n\n\
         | Page | Median | Slowest | Size |\n|---|---|---|---|",
        5, scale.console_subscriptions, scale.console_deliveries
    )?;
    for p in &pages {
        writeln!(
            out,
            "| `{}` | {:.1} ms | {:.1} ms | {} KiB |",
            p.path,
            p.median_ms,
            p.max_ms,
            p.bytes / 1024
        )?;
    }
    out.push('\n');
    Ok(())
}

async fn curves_report(
    out: &mut String,
    receiver: &receiver::Receiver,
    baseline: f64,
    scale: Scale,
    targets: &mut Targets,
) -> anyhow::Result<()> {
    let c = scale.concurrency;
    let d = scale.curve_deliveries;
    writeln!(
        out,
        "## Curves\n\nHow the drain rate (deliveries/s at the receiver, no adapter, 1 KiB events, concurrency {c}) \
         changes as the work grows.\n"
    )?;
    // Fan-out: every event matches N subscriptions, all to one receiver path.
    let mut rows = String::new();
    for n in scale.fan_out {
        let path = format!("/fan-{n}");
        let url = receiver.url(&path);
        let extra: Vec<(String, String)> = (1..n)
            .map(|i| {
                (
                    format!("fan-{i}"),
                    harness::subscription(&format!("fan-{i}"), &url, ""),
                )
            })
            .collect();
        let extra: Vec<(&str, String)> = extra
            .iter()
            .map(|(id, e)| (id.as_str(), e.clone()))
            .collect();
        let shape = drain::Shape {
            events: d / n,
            extra_subscriptions: &extra,
            concurrency: c,
            ..drain::Shape::default()
        };
        let r = drain::drain_shaped(receiver, &path, shape).await?;
        writeln!(
            rows,
            "| {n} | {} | {:.0} | {:.0}% |",
            d / n,
            r.rate,
            100.0 * r.rate / baseline
        )?;
    }
    writeln!(
        out,
        "### Subscriptions matching each event\n\n{d} deliveries in all.\n\n\
         | Matching | Events | Deliveries/s | vs baseline |\n|---|---|---|---|\n{rows}"
    )?;
    // Idle subscriptions: configured, matching nothing. Drain, and batched ingest through
    // the router.
    let mut rows = String::new();
    let mut points = Vec::new();
    for n in scale.idle {
        let path = format!("/idle-drain-{n}");
        let shape = drain::Shape {
            events: d,
            idle_subscriptions: n,
            concurrency: c,
            ..drain::Shape::default()
        };
        let r = drain::drain_shaped(receiver, &path, shape).await?;
        let idle: String = (0..n)
            .map(|i| drain::idle_subscription(i, &receiver.url("/idle")))
            .collect();
        let i =
            ingest::ingest_with(receiver, scale.ingest_events / 2, 1000, c, &idle, true).await?;
        points.push((n, r.rate));
        writeln!(
            rows,
            "| {n} | {:.0} | {:.0}% | {:.0} |",
            r.rate,
            100.0 * r.rate / baseline,
            i.batched
        )?;
    }
    if let (Some(&(a, ra)), Some(&(z, rz))) = (points.first(), points.last()) {
        targets.idle = Some((a, ra, z, rz));
    }
    writeln!(
        out,
        "### Subscriptions configured but not matching\n\n\
         One subscription matches every event; the others each have their own pattern that none matches. \
         Routing looks patterns up in a segment trie, so its cost follows the event type's depth, not the \
         number of subscriptions. Ingest is batched POSTs through the router.\n\n\
         | Idle subscriptions | Drain, deliveries/s | vs baseline | Ingest, events/s |\n|---|---|---|---|\n{rows}"
    )?;
    // Payload size.
    let mut rows = String::new();
    for (bytes, events) in scale.payloads {
        let path = format!("/payload-{bytes}");
        let shape = drain::Shape {
            events,
            payload_bytes: bytes,
            concurrency: c,
            ..drain::Shape::default()
        };
        let r = drain::drain_shaped(receiver, &path, shape).await?;
        writeln!(
            rows,
            "| {} KiB | {events} | {:.0} | {:.0}% | {:.0} MiB/s |",
            bytes >> 10,
            r.rate,
            100.0 * r.rate / baseline,
            r.rate * bytes as f64 / (1 << 20) as f64
        )?;
    }
    writeln!(
        out,
        "### Payload size\n\nThe baseline posts 1 KiB bodies; larger payloads cost copying, hashing and I/O.\n\n\
         | Payload | Events | Deliveries/s | vs baseline | Payload throughput |\n|---|---|---|---|---|\n{rows}"
    )?;
    Ok(())
}

async fn memory_report(
    out: &mut String,
    receiver: &receiver::Receiver,
    baseline: f64,
    scale: Scale,
    targets: &mut Targets,
) -> anyhow::Result<()> {
    let mut rows = String::new();
    let mut points = Vec::new();
    for n in scale.backlogs {
        let path = format!("/backlog-{n}");
        let shape = drain::Shape {
            events: n,
            concurrency: scale.concurrency,
            own_process: true,
            ..drain::Shape::default()
        };
        let r = drain::drain_shaped(receiver, &path, shape).await?;
        points.push((n, r));
        writeln!(
            rows,
            "| {n} | {:.0} | {:.0}% | {:.0} MiB | {:.0} MiB | {:.0} |",
            r.rate,
            100.0 * r.rate / baseline,
            r.peak_rss as f64 / (1 << 20) as f64,
            r.disk_bytes as f64 / (1 << 20) as f64,
            r.disk_bytes as f64 / r.deliveries as f64,
        )?;
    }
    if let (Some((a, ra)), Some((z, rz))) = (points.first(), points.last()) {
        targets.backlog = Some((*a, ra.rate, *z, rz.rate, rz.peak_rss));
    }
    writeln!(
        out,
        "## Backlog and memory\n\n\
         A backlog of pending deliveries (1 KiB events, one subscription, no adapter) preloaded into the store, \
         then drained by an engine in a process of its own. Peak RSS is that process's `VmHWM` at the end of \
         the drain. Disk is the store's files with the whole backlog pending; per delivery it includes the \
         1 KiB event it carries.\n\n\
         | Pending deliveries | Deliveries/s | vs baseline | Peak RSS | Store on disk | Bytes per pending delivery |\n\
         |---|---|---|---|---|---|\n{rows}"
    )?;
    Ok(())
}

async fn drain_report(
    out: &mut String,
    receiver: &receiver::Receiver,
    baseline: f64,
    scale: Scale,
    targets: &mut Targets,
) -> anyhow::Result<()> {
    let events = scale.drain_events;
    let c = scale.concurrency;
    let none = drain::drain(receiver, "/drain-none", events, None, &[], c).await?;
    let defaults = drain::drain(receiver, "/drain-defaults", events, None, &[], 0).await?;
    let slack = drain::Adapter {
        name: "slack",
        path: std::path::Path::new(SLACK),
        keys: "settings = { channel = \"#ops\" }",
    };
    let slack = drain::drain(receiver, "/drain-slack", events, Some(slack), &[], c).await?;
    let teams = drain::Adapter {
        name: "teams",
        path: std::path::Path::new(TEAMS),
        keys: "instance_reuse = 1000",
    };
    let teams = drain::drain(receiver, "/drain-teams", events, Some(teams), &[], c).await?;
    targets.drain_none = Some(none);
    targets.drain_defaults = Some(defaults);
    targets.drain_slack = Some(slack);
    writeln!(
        out,
        "## Drain rate\n\n\
         {events} events preloaded on one subscription, then delivered: each delivery is signed, POSTed \
         (concurrency {c}) and its attempt recorded durably.\n\n\
         | Case | Deliveries/s | vs baseline |\n|---|---|---|\n\
         | No adapter | {none:.0} | {:.0}% |\n\
         | No adapter, the engine's default settings | {defaults:.0} | {:.0}% |\n\
         | Rust `slack`, fresh instance per delivery | {slack:.0} | {:.0}% |\n\
         | JavaScript `teams`, instance reused (1,000 calls) | {teams:.0} | {:.0}% |\n",
        100.0 * none / baseline,
        100.0 * defaults / baseline,
        100.0 * slack / baseline,
        100.0 * teams / baseline,
    )?;
    Ok(())
}

async fn reload_report(
    out: &mut String,
    receiver: &receiver::Receiver,
    scale: Scale,
) -> anyhow::Result<()> {
    let versions = [
        std::path::Path::new(env!("WASMHOOK_GUEST_VERSIONED_1")),
        std::path::Path::new(env!("WASMHOOK_GUEST_VERSIONED_2")),
        std::path::Path::new(env!("WASMHOOK_GUEST_VERSIONED_3")),
    ];
    let (renamed, in_place) = reload::delays(receiver, versions, scale.reload_swaps).await?;
    let row = |label: &str, d: &[f64]| {
        format!(
            "| {label} | {} | {:.0} ms | {:.0} ms |\n",
            d.len(),
            d[d.len() / 2],
            d[d.len() - 1]
        )
    };
    writeln!(
        out,
        "## Hot reload\n\n\
         From a new version of an adapter landing in the plugins folder to the receiver getting the first \
         request that version built, while events flow at 200/s. No compile cache (new code is compiled), \
         default 200 ms debounce.\n\n\
         | How the file lands | Swaps | Median | Max |\n|---|---|---|---|\n{}{}",
        row("Renamed over the old file", &renamed),
        row("Rewritten in place", &in_place),
    )?;
    Ok(())
}

async fn adapter_report(
    out: &mut String,
    scale: Scale,
    targets: &mut Targets,
) -> anyhow::Result<()> {
    let config = wasmhook::config::Config::default();
    let mut rows = String::new();
    for (label, path, settings, fresh_calls) in [
        (
            "Rust `slack`",
            SLACK,
            vec![("channel".to_owned(), "#ops".to_owned())],
            scale.adapter_calls,
        ),
        (
            "JavaScript `teams`",
            TEAMS,
            vec![("title".to_owned(), "Ops".to_owned())],
            scale.slow_adapter_calls,
        ),
        (
            "Python `discord`",
            DISCORD,
            vec![("username".to_owned(), "ops-bot".to_owned())],
            scale.slow_adapter_calls,
        ),
    ] {
        let o = adapters::overhead(
            std::path::Path::new(path),
            &settings,
            fresh_calls,
            scale.adapter_calls,
            &config,
        )
        .await?;
        if label.starts_with("Rust") {
            targets.rust_fresh_us = Some(o.fresh_us);
        }
        writeln!(
            rows,
            "| {label} | {} | {} | {:.2} µs |",
            micros(o.fresh_us),
            micros(o.reused_us),
            o.none_us
        )?;
    }
    writeln!(
        out,
        "## Adapter overhead per delivery\n\n\
         One `transform` call on a 1 KiB event, one call after another, through the engine's sandbox \
         (pooling allocator, CPU budget, memory cap, output checks): {} calls on fresh instances for Rust and \
         {} for JavaScript and Python, {} on one reused instance. \"No adapter\" is building the standard \
         envelope instead.\n\n\
         | Adapter | Fresh instance | Reused instance | No adapter (envelope) |\n|---|---|---|---|\n{rows}",
        scale.adapter_calls, scale.slow_adapter_calls, scale.adapter_calls
    )?;
    Ok(())
}

/// Microseconds, or milliseconds when large.
fn micros(us: f64) -> String {
    if us >= 1000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else {
        format!("{us:.1} µs")
    }
}

/// CPU model, core count and memory, from /proc.
fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0 / 1024.0);
    format!(
        "Machine: {cpu}, {cores} cores, {mem_gib:.0} GiB. Engine and receiver share the machine."
    )
}
