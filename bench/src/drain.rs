//! Drain scenarios: a backlog preloaded into the store, then delivered. The rate is counted
//! at the receiver, between the first and the last delivery.

use crate::harness::{Engine, preamble, preload, subscription};
use crate::receiver::Receiver;

/// Deliveries per second for one drain.
pub async fn drain(
    receiver: &Receiver,
    path: &str,
    events: usize,
    extra_subscriptions: &[(&str, String)],
    concurrency: usize,
) -> anyhow::Result<f64> {
    let dir = tempfile::tempdir()?;
    std::fs::create_dir_all(dir.path().join("plugins"))?;
    let mut ids = vec!["main"];
    ids.extend(extra_subscriptions.iter().map(|(id, _)| *id));
    preload(dir.path(), &ids, events, 1024).await?;
    let mut config = preamble(concurrency);
    config.push_str(&subscription("main", &receiver.url(path), ""));
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
    let alone = drain(receiver, "/healthy-alone", events, &[], concurrency).await?;
    // `localhost` makes the black hole a different endpoint from the healthy 127.0.0.1.
    let dead_url = receiver.url("/blackhole").replace("127.0.0.1", "localhost");
    let dead = subscription("dead", &dead_url, "timeout = \"2s\"");
    let beside = drain(
        receiver,
        "/healthy-beside",
        events,
        &[("dead", dead)],
        concurrency,
    )
    .await?;
    Ok((alone, beside))
}
