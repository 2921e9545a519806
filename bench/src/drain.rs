//! Drain scenarios: a backlog preloaded into the store, then delivered. The rate is counted
//! at the receiver, between the first and the last delivery.

use std::path::Path;

use crate::harness::{
    ChildEngine, Engine, peak_rss, preamble, preload, reset_peak_rss, store_bytes, subscription,
};
use crate::receiver::Receiver;

/// The adapter a drain's main subscription runs.
#[derive(Debug, Clone, Copy)]
pub struct Adapter<'a> {
    /// Plugin name.
    pub name: &'a str,
    /// The built component.
    pub path: &'a Path,
    /// More keys for the subscription (settings, `instance_reuse`, `cpu_budget`).
    pub keys: &'a str,
}

/// Deliveries per second for one drain.
pub async fn drain(
    receiver: &Receiver,
    path: &str,
    events: usize,
    adapter: Option<Adapter<'_>>,
    extra_subscriptions: &[(&str, String)],
    concurrency: usize,
) -> anyhow::Result<f64> {
    let shape = Shape {
        events,
        adapter,
        extra_subscriptions,
        concurrency,
        ..Shape::default()
    };
    Ok(drain_shaped(receiver, path, shape).await?.rate)
}

/// What a drain looks like.
#[derive(Debug, Clone, Copy)]
pub struct Shape<'a> {
    /// Events preloaded.
    pub events: usize,
    /// The main subscription's adapter.
    pub adapter: Option<Adapter<'a>>,
    /// More subscriptions, with a delivery for each event too.
    pub extra_subscriptions: &'a [(&'a str, String)],
    /// Subscriptions configured that match no event (they get no delivery).
    pub idle_subscriptions: usize,
    /// Bytes of each event's payload.
    pub payload_bytes: usize,
    /// Attempts in flight.
    pub concurrency: usize,
    /// Run the engine in a process of its own, so its peak RSS is its alone.
    pub own_process: bool,
}

impl Default for Shape<'_> {
    fn default() -> Self {
        Self {
            events: 0,
            adapter: None,
            extra_subscriptions: &[],
            idle_subscriptions: 0,
            payload_bytes: 1024,
            concurrency: 64,
            own_process: false,
        }
    }
}

/// The outcome of one drain.
#[derive(Debug, Clone, Copy)]
pub struct Drained {
    /// Deliveries per second at the receiver, all subscriptions together.
    pub rate: f64,
    /// Peak RSS while the engine drained, bytes: of the engine's own process with
    /// `own_process`, else of this whole process.
    pub peak_rss: u64,
    /// Store size on disk with the whole backlog pending, bytes.
    pub disk_bytes: u64,
    /// Deliveries in the backlog.
    pub deliveries: usize,
}

/// Preloads a backlog shaped by `shape`, starts the engine and measures the drain.
pub async fn drain_shaped(
    receiver: &Receiver,
    path: &str,
    shape: Shape<'_>,
) -> anyhow::Result<Drained> {
    let Shape {
        events,
        adapter,
        extra_subscriptions,
        idle_subscriptions,
        payload_bytes,
        concurrency,
        own_process,
    } = shape;
    let dir = tempfile::tempdir()?;
    std::fs::create_dir_all(dir.path().join("plugins"))?;
    let mut ids = vec!["main"];
    ids.extend(extra_subscriptions.iter().map(|(id, _)| *id));
    let clock = std::time::Instant::now();
    preload(dir.path(), &ids, events, payload_bytes).await?;
    eprintln!("preloaded {events} events in {:?}", clock.elapsed());
    let disk_bytes = store_bytes(dir.path());
    let mut config = preamble(concurrency);
    for i in 0..idle_subscriptions {
        config.push_str(&idle_subscription(i, &receiver.url("/idle")));
    }
    let main_keys = match adapter {
        Some(a) => {
            std::fs::copy(a.path, dir.path().join(format!("plugins/{}.wasm", a.name)))?;
            format!("plugin = \"{}\"\n{}", a.name, a.keys)
        }
        None => String::new(),
    };
    // Timing starts at the first delivery, so compiling the adapter is not counted.
    config.push_str(&subscription("main", &receiver.url(path), &main_keys));
    for (_, entry) in extra_subscriptions {
        config.push_str(entry);
    }
    // Deliveries that go to `path`: the main subscription's, and those of the extra
    // subscriptions that share its URL (a fan-out), not those sent elsewhere.
    let url = receiver.url(path);
    let sharing = extra_subscriptions
        .iter()
        .filter(|(_, entry)| entry.contains(&format!("\"{url}\"")))
        .count();
    let deliveries = events * (1 + sharing);
    let (seconds, peak_rss) = if own_process {
        let engine = ChildEngine::start(&config, dir.path())?;
        let seconds = receiver.wait_for(path, deliveries as u64).await;
        (seconds, engine.peak_rss())
    } else {
        reset_peak_rss();
        let engine = Engine::start(&config, dir.path()).await?;
        let seconds = receiver.wait_for(path, deliveries as u64).await;
        let peak = peak_rss();
        engine.stop().await?;
        (seconds, peak)
    };
    Ok(Drained {
        rate: (deliveries - 1) as f64 / seconds,
        peak_rss,
        disk_bytes,
        deliveries,
    })
}

/// A subscription that matches no benchmark event.
pub fn idle_subscription(i: usize, url: &str) -> String {
    subscription(&format!("idle-{i}"), url, "")
        .replace("events = [\"*\"]", &format!("events = [\"idle.n{i}.*\"]"))
}

/// The harm a black-hole endpoint does to a healthy one: the healthy subscription's drain
/// rate alone, then with a second subscription on every event whose endpoint never answers.
pub async fn dead_endpoint(
    receiver: &Receiver,
    events: usize,
    concurrency: usize,
) -> anyhow::Result<(f64, f64)> {
    let alone = drain(receiver, "/healthy-alone", events, None, &[], concurrency).await?;
    // `localhost` makes the black hole a different endpoint from the healthy 127.0.0.1.
    let dead_url = receiver.url("/blackhole").replace("127.0.0.1", "localhost");
    let dead = subscription("dead", &dead_url, "timeout = \"2s\"");
    let beside = drain(
        receiver,
        "/healthy-beside",
        events,
        None,
        &[("dead", dead)],
        concurrency,
    )
    .await?;
    Ok((alone, beside))
}
