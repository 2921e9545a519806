//! Drain scenarios: a backlog preloaded into the store, then delivered. The rate is counted
//! at the receiver, between the first and the last delivery.

use std::path::Path;

use crate::harness::{Engine, preamble, preload, subscription};
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
    let dir = tempfile::tempdir()?;
    std::fs::create_dir_all(dir.path().join("plugins"))?;
    let mut ids = vec!["main"];
    ids.extend(extra_subscriptions.iter().map(|(id, _)| *id));
    preload(dir.path(), &ids, events, 1024).await?;
    let mut config = preamble(concurrency);
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
    let engine = Engine::start(&config, dir.path()).await?;
    let seconds = receiver.wait_for(path, events as u64).await;
    engine.stop().await?;
    Ok((events - 1) as f64 / seconds)
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
