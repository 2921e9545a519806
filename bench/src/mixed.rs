//! Workloads as producers run them: events arriving while the engine delivers, on the
//! engine's default settings, with the engine in a process of its own so its CPU time can
//! be counted alone.
//!
//! - `mixed`: producers post batches while the engine drains what they posted.
//! - `end_to_end`: producers post one event per request; the rate is counted at the
//!   receiver.
//! - `latency`: one event per request at a fixed rate; publish-to-receipt percentiles,
//!   beside the engine's own count of slow write batches (`/metrics`), so a tail can be
//!   told from a stalled store.

use std::time::Instant;

use bytes::Bytes;

use crate::harness::{ChildEngine, share_out, subscription};
use crate::ingest::{Latency, client, event_json, metrics_text, paced_latencies, post};
use crate::receiver::Receiver;

/// Producers, as the workloads have them.
pub const PRODUCERS: usize = 32;
/// Events per batch in the mixed workload.
pub const BATCH: usize = 100;

/// The receiver's subscription on default settings (only loopback receivers allowed),
/// with `adapter` (`plugin = …` and its settings) and `extra` config appended.
fn defaults_config(url: &str, adapter: &str, extra: &str) -> String {
    format!(
        "[delivery]\nallow_private_networks = true\n{extra}\n\n{}",
        subscription("main", url, adapter)
    )
}

/// One run's figures.
#[derive(Debug, Clone, Copy)]
pub struct Run {
    /// Deliveries per second at the receiver, from the first publish to the last receipt.
    pub rate: f64,
    /// The engine's CPU time (user + system) per delivery, milliseconds.
    pub cpu_ms_per_delivery: f64,
    /// The part of it on the embedded store's writer thread.
    pub writer_cpu_ms_per_delivery: f64,
    /// The engine's process id, so a profile can keep its samples alone.
    pub engine_pid: u32,
    /// The engine's write batches in the measured part of the run.
    pub batches: u64,
}

/// Starts a child engine in a fresh folder; `plugin` is copied in as `<name>.wasm`.
fn engine(
    config: &str,
    plugin: Option<(&str, &str)>,
) -> anyhow::Result<(ChildEngine, tempfile::TempDir)> {
    let dir = tempfile::tempdir()?;
    std::fs::create_dir_all(dir.path().join("plugins"))?;
    if let Some((name, path)) = plugin {
        std::fs::copy(path, dir.path().join(format!("plugins/{name}.wasm")))?;
    }
    Ok((ChildEngine::start(config, dir.path())?, dir))
}

/// `PRODUCERS` producers post `events` events (in batches of `batch`, or one per request
/// with `batch` 1) to an engine on default settings plus `extra`, delivering to `path`;
/// measures the delivery rate and the engine's CPU per delivery.
pub async fn run(
    receiver: &Receiver,
    path: &str,
    events: u64,
    batch: usize,
    plugin: Option<(&str, &str, &str)>,
    extra: &str,
) -> anyhow::Result<Run> {
    let adapter = plugin.map_or(String::new(), |(name, _, settings)| {
        format!("plugin = \"{name}\"\n{settings}")
    });
    let config = defaults_config(&receiver.url(path), &adapter, extra);
    let (engine, _dir) = engine(&config, plugin.map(|(name, file, _)| (name, file)))?;
    let base = engine.base.clone();
    let client = client();
    // Warm the connections and the adapter.
    let one: http::Uri = format!("{base}/v1/events").parse()?;
    post(&client, &one, Bytes::from(event_json(0))).await?;
    receiver.wait_for(path, 1).await;
    let (cpu_before, writer_before) = (engine.cpu_seconds(), engine.writer_cpu_seconds());
    let batches_before = batches(&base).await?.count;
    let started = Instant::now();
    let url: http::Uri = if batch > 1 {
        format!("{base}/v1/events/batch").parse()?
    } else {
        one
    };
    let requests = (events as usize).div_ceil(batch) as u64;
    share_out(PRODUCERS, requests, move |r| {
        let (client, url) = (client.clone(), url.clone());
        let body = if batch > 1 {
            let first = 1 + r * batch as u64;
            let events: Vec<String> = (first..first + batch as u64).map(event_json).collect();
            format!("[{}]", events.join(","))
        } else {
            event_json(1 + r)
        };
        async move { post(&client, &url, Bytes::from(body)).await }
    })
    .await?;
    let total = requests * batch as u64;
    receiver.wait_for(path, total + 1).await;
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = engine.cpu_seconds() - cpu_before;
    let writer = engine.writer_cpu_seconds() - writer_before;
    let batches = batches(&base).await?.count - batches_before;
    Ok(Run {
        rate: total as f64 / elapsed,
        cpu_ms_per_delivery: 1e3 * cpu / total as f64,
        writer_cpu_ms_per_delivery: 1e3 * writer / total as f64,
        engine_pid: engine.pid(),
        batches,
    })
}

/// What `wasmhook_store_commit_duration_seconds` says of an engine's write batches.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Batches {
    /// Batches committed.
    pub count: u64,
    /// Those over `SLOW_BATCH_MS`.
    pub slow: u64,
    /// The upper bound of the slowest batch's bucket, milliseconds (`None`: past the last
    /// bucket).
    pub slowest_ms: Option<f64>,
}

/// A write batch slower than this holds up the events behind it past the p99 target at
/// half the peak (10 ms).
pub const SLOW_BATCH_MS: f64 = 16.0;

impl Batches {
    /// Reads the histogram from a `/metrics` text: its buckets are cumulative, by `le`.
    pub fn of(metrics: &str) -> Option<Self> {
        let buckets: Vec<(f64, u64)> = metrics
            .lines()
            .filter_map(|l| l.strip_prefix("wasmhook_store_commit_duration_seconds_bucket{le=\""))
            .filter_map(|l| {
                let (le, count) = l.split_once("\"} ")?;
                Some((le.parse().ok()?, count.trim().parse().ok()?))
            })
            .collect();
        let &(_, count) = buckets.last()?;
        let upto = |ms: f64| {
            buckets
                .iter()
                .filter(|(le, _)| *le * 1e3 <= ms + 1e-6)
                .map(|&(_, n)| n)
                .max()
                .unwrap_or(0)
        };
        let slowest = buckets.iter().find(|&&(_, n)| n == count).map(|b| b.0);
        Some(Self {
            count,
            slow: count - upto(SLOW_BATCH_MS),
            slowest_ms: slowest.filter(|le| le.is_finite()).map(|le| le * 1e3),
        })
    }

    /// The slowest batch as a table cell.
    pub fn slowest(&self) -> String {
        match self.slowest_ms {
            Some(ms) => format!("≤ {} ms", (ms * 1e3).round() / 1e3),
            None => "over 8 s".into(),
        }
    }
}

/// The engine's write batches so far.
async fn batches(base: &str) -> anyhow::Result<Batches> {
    Batches::of(&metrics_text(&client(), base).await?)
        .ok_or_else(|| anyhow::anyhow!("the engine's /metrics has no write batch histogram"))
}

/// Publishes `events` events at `per_second`, one per request, to an engine on default
/// settings, and measures publish-to-receipt times, and the engine's write batches over
/// its life (the run and one warm-up event).
pub async fn latency(
    receiver: &Receiver,
    path: &str,
    events: usize,
    per_second: u64,
    announce_pid: bool,
) -> anyhow::Result<(Latency, Batches)> {
    anyhow::ensure!(
        path.starts_with("/latency"),
        "the receiver times /latency paths only"
    );
    let config = defaults_config(&receiver.url(path), "", "");
    let (engine, _dir) = engine(&config, None)?;
    if announce_pid {
        // For a profiler or tracer to attach before the events flow.
        eprintln!("engine pid {}", engine.pid());
    }
    let latency = paced_latencies(receiver, path, &engine.base, events, per_second).await?;
    Ok((latency, batches(&engine.base).await?))
}

/// Everything the producers' section measured, for the targets table.
#[derive(Debug, Clone, Copy)]
pub struct Figures {
    /// Batched ingest while draining, no adapter.
    pub mixed: Run,
    /// The same with the Slack adapter on fresh instances.
    pub mixed_slack: Run,
    /// Single-event POSTs, no adapter.
    pub end_to_end: Run,
    /// Latency at 200 events/s.
    pub light: Latency,
    /// Latency at half the end-to-end peak.
    pub half_peak: Latency,
}

/// Runs the producers' workloads and writes their section.
pub async fn report(
    out: &mut String,
    receiver: &Receiver,
    baseline: f64,
    scale: crate::Scale,
    targets: &mut crate::targets::Targets,
) -> anyhow::Result<()> {
    use std::fmt::Write as _;
    let slack = Some(("slack", crate::SLACK, "settings = { channel = \"#ops\" }"));
    let n = scale.producer_events;
    let mixed = run(receiver, "/mixed-none", n, BATCH, None, "").await?;
    let mixed_slack = run(receiver, "/mixed-slack", n, BATCH, slack, "").await?;
    let tuned = run(
        receiver,
        "/mixed-tuned",
        n,
        BATCH,
        None,
        "endpoint_concurrency = 64",
    )
    .await?;
    let purging = run(
        receiver,
        "/mixed-purging",
        n,
        BATCH,
        None,
        "\n[retention]\ndelivered = \"1s\"\ninterval = \"1s\"",
    )
    .await?;
    let end_to_end = run(receiver, "/e2e-none", n, 1, None, "").await?;
    let e2e_slack = run(receiver, "/e2e-slack", n, 1, slack, "").await?;
    let (light, light_batches) = latency(
        receiver,
        "/latency-200",
        scale.producer_latency_events,
        200,
        false,
    )
    .await?;
    let half = ((end_to_end.rate / 2.0) as u64).max(1);
    let half_events = (half as usize * 10)
        .min(n as usize)
        .max(scale.producer_latency_events);
    let (half_peak, half_batches) =
        latency(receiver, "/latency-half", half_events, half, false).await?;
    let pct = |r: f64| 100.0 * r / baseline;
    let row = |label: &str, r: Run| {
        format!(
            "| {label} | {:.0} | {:.0}% | {:.3} ms |\n",
            r.rate,
            pct(r.rate),
            r.cpu_ms_per_delivery
        )
    };
    writeln!(
        out,
        "## Producers posting while the engine delivers\n\n\
         The engine on its default settings in a process of its own, one subscription, 1 KiB events, {PRODUCERS} \
         producers posting {n} events while the engine delivers them; the rate is counted at the receiver from the \
         first publish to the last delivery, and the engine's CPU time (user and system, from `/proc`) is divided by \
         the deliveries.\n\n\
         | Workload | Deliveries/s | vs baseline | Engine CPU per delivery |\n|---|---|---|---|\n{}{}{}{}{}{}\n\
         Publish-to-receipt latency, one event per request at a steady rate, no adapter, with the engine's \
         write batches (`wasmhook_store_commit_duration_seconds`): one slower than {SLOW_BATCH_MS} ms holds up \
         every event behind it.\n\n\
         | Rate | Events | p50 | p99 | Write batches | Over {SLOW_BATCH_MS} ms | Slowest |\n|---|---|---|---|---|---|---|\n\
         | 200 events/s | {} | {:.2} ms | {:.2} ms | {} | {} | {} |\n\
         | {half} events/s (half the end-to-end peak) | {} | {:.2} ms | {:.2} ms | {} | {} | {} |\n",
        row("Batches of 100, no adapter", mixed),
        row(
            "Batches of 100, Slack adapter, fresh instances",
            mixed_slack
        ),
        row(
            "Batches of 100, no adapter, `endpoint_concurrency = 64`",
            tuned
        ),
        row(
            "Batches of 100, no adapter, purging every second (`[retention] delivered = \"1s\"`)",
            purging
        ),
        row("One event per POST, no adapter", end_to_end),
        row(
            "One event per POST, Slack adapter, fresh instances",
            e2e_slack
        ),
        light.events,
        light.p50_us as f64 / 1e3,
        light.p99_us as f64 / 1e3,
        light_batches.count,
        light_batches.slow,
        light_batches.slowest(),
        half_peak.events,
        half_peak.p50_us as f64 / 1e3,
        half_peak.p99_us as f64 / 1e3,
        half_batches.count,
        half_batches.slow,
        half_batches.slowest(),
    )?;
    targets.producers = Some(Figures {
        mixed,
        mixed_slack,
        end_to_end,
        light,
        half_peak,
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_batches_are_read_from_the_cumulative_buckets() {
        let metrics = "# TYPE wasmhook_store_commit_duration_seconds histogram
wasmhook_store_commit_duration_seconds_sum 1.2
wasmhook_store_commit_duration_seconds_count 10
wasmhook_store_commit_duration_seconds_bucket{le=\"0.004\"} 6
wasmhook_store_commit_duration_seconds_bucket{le=\"0.008\"} 7
wasmhook_store_commit_duration_seconds_bucket{le=\"0.016\"} 8
wasmhook_store_commit_duration_seconds_bucket{le=\"0.032\"} 9
wasmhook_store_commit_duration_seconds_bucket{le=\"0.256\"} 10
wasmhook_store_commit_duration_seconds_bucket{le=\"+Inf\"} 10
";
        let b = Batches::of(metrics).expect("histogram");
        assert_eq!((b.count, b.slow), (10, 2));
        assert_eq!(b.slowest(), "≤ 256 ms");
        let past = metrics.replace("0.256\"} 10", "0.256\"} 9");
        assert_eq!(Batches::of(&past).expect("histogram").slowest(), "over 8 s");
        assert_eq!(Batches::of("wasmhook_events_ingested_total 3"), None);
    }
}
