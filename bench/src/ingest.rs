//! Ingest and latency through the HTTP API.
//!
//! - Ingest: events accepted durably per second (`202` only after the commit), posted one
//!   per request or in batches. Each event matches one subscription, so each also writes a
//!   delivery; that subscription's adapter is absent, so its deliveries wait in the store
//!   (parked after one claim) instead of competing for the CPU: the figure is ingest alone.
//! - Latency: events published one per request at a fixed rate; each carries its send
//!   time, and the receiver records when its delivery arrived.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::harness::{Engine, micros, preamble, share_out, subscription};
use crate::receiver::Receiver;

pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

pub fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// One 1 KiB event as JSON.
pub fn event_json(n: u64) -> String {
    format!(r#"{{"type":"bench.ingest","data":{}}}"#, event_data(n))
}

/// The `data` of ingest event `n`: about 1 KiB, the same whoever publishes it (HTTP, the
/// embedded engine or NATS).
pub fn event_data(n: u64) -> String {
    format!(r#"{{"n":{n},"pad":"{}"}}"#, "x".repeat(960))
}

pub async fn post(client: &HttpClient, url: &http::Uri, body: Bytes) -> anyhow::Result<()> {
    let request = http::Request::post(url.clone())
        .header("content-type", "application/json")
        .body(Full::new(body))?;
    let response = client.request(request).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    anyhow::ensure!(
        status == http::StatusCode::ACCEPTED,
        "publish answered {status}: {}",
        String::from_utf8_lossy(&body)
    );
    Ok(())
}

/// The engine's `/metrics` text.
pub async fn metrics_text(client: &HttpClient, base: &str) -> anyhow::Result<String> {
    let response = client.get(format!("{base}/metrics").parse()?).await?;
    let body = response.into_body().collect().await?.to_bytes();
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// Events accepted per second: single-event POSTs and batches of `batch`.
#[derive(Debug, Clone, Copy)]
pub struct Ingest {
    /// One event per request.
    pub single: f64,
    /// `batch` events per request.
    pub batched: f64,
}

/// Runs both ingest measurements against one engine: `events` single POSTs with
/// `concurrency` clients, then `events` more in batches of `batch` with 4 clients.
pub async fn ingest(
    receiver: &Receiver,
    events: u64,
    batch: usize,
    concurrency: usize,
) -> anyhow::Result<Ingest> {
    ingest_with(receiver, events, batch, concurrency, "", false).await
}

/// As `ingest`, with `extra_config` (more subscriptions) appended to the engine's config;
/// `batched_only` skips the single-event POSTs (their figure is then 0).
pub async fn ingest_with(
    receiver: &Receiver,
    events: u64,
    batch: usize,
    concurrency: usize,
    extra_config: &str,
    batched_only: bool,
) -> anyhow::Result<Ingest> {
    let dir = tempfile::tempdir()?;
    std::fs::create_dir_all(dir.path().join("plugins"))?;
    let config = format!(
        "{}{}{extra_config}",
        preamble(concurrency),
        subscription(
            "parked",
            &receiver.url("/ingest-parked"),
            "plugin = \"absent\""
        )
    );
    let engine = Engine::start(&config, dir.path()).await?;
    let client = client();
    let single = if batched_only {
        0.0
    } else {
        single_posts(&client, &engine.base, events, concurrency).await?
    };
    let batched = batched_posts(&client, &engine.base, events, batch).await?;
    engine.stop().await?;
    Ok(Ingest { single, batched })
}

async fn single_posts(
    client: &HttpClient,
    base: &str,
    events: u64,
    concurrency: usize,
) -> anyhow::Result<f64> {
    let url: http::Uri = format!("{base}/v1/events").parse()?;
    let client = client.clone();
    let took = share_out(concurrency, events, move |n| {
        let (client, url) = (client.clone(), url.clone());
        async move { post(&client, &url, Bytes::from(event_json(n))).await }
    })
    .await?;
    Ok(events as f64 / took.as_secs_f64())
}

async fn batched_posts(
    client: &HttpClient,
    base: &str,
    events: u64,
    batch: usize,
) -> anyhow::Result<f64> {
    let url: http::Uri = format!("{base}/v1/events/batch").parse()?;
    let batches = (events as usize).div_ceil(batch) as u64;
    let client = client.clone();
    let took = share_out(4, batches, move |b| {
        let (client, url) = (client.clone(), url.clone());
        async move {
            let first = events + b * batch as u64;
            let body: Vec<String> = (first..first + batch as u64).map(event_json).collect();
            post(&client, &url, Bytes::from(format!("[{}]", body.join(",")))).await
        }
    })
    .await?;
    Ok((batches * batch as u64) as f64 / took.as_secs_f64())
}

/// Ingest-to-delivery latency percentiles, in microseconds.
#[derive(Debug, Clone, Copy)]
pub struct Latency {
    /// Median.
    pub p50_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// Worst.
    pub max_us: u64,
    /// Events measured.
    pub events: usize,
}

impl Latency {
    /// The percentiles of `sorted`, publish-to-receipt times in microseconds, ascending.
    fn of(sorted: &[u64]) -> anyhow::Result<Self> {
        anyhow::ensure!(!sorted.is_empty(), "no latency was recorded");
        let at = |q: f64| sorted[((sorted.len() as f64 * q) as usize).min(sorted.len() - 1)];
        Ok(Self {
            p50_us: at(0.50),
            p99_us: at(0.99),
            max_us: sorted[sorted.len() - 1],
            events: sorted.len(),
        })
    }
}

/// Warms the engine at `base` with one event, then publishes `events` events at
/// `per_second`, one per request, each carrying its send time, and waits until the
/// receiver has them all at `path` (a `/latency…` path, which it times). Returns their
/// publish-to-receipt percentiles.
pub async fn paced_latencies(
    receiver: &Receiver,
    path: &str,
    base: &str,
    events: usize,
    per_second: u64,
) -> anyhow::Result<Latency> {
    let url: http::Uri = format!("{base}/v1/events").parse()?;
    let client = client();
    // Warm the connection pool and the engine.
    post(&client, &url, Bytes::from(event_json(0))).await?;
    receiver.wait_for(path, 1).await;
    let stats = receiver.stats(path);
    stats.latencies_us.lock().expect("lock").clear();
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / per_second.max(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut sends = Vec::with_capacity(events);
    for n in 0..events {
        tick.tick().await;
        let (client, url) = (client.clone(), url.clone());
        sends.push(tokio::spawn(async move {
            let body = format!(
                r#"{{"type":"bench.latency","data":{{"n":{n},"sent_us":{}}}}}"#,
                micros()
            );
            post(&client, &url, Bytes::from(body)).await
        }));
    }
    for s in sends {
        s.await??;
    }
    receiver.wait_for(path, events as u64 + 1).await;
    let mut all = stats.latencies_us.lock().expect("lock").clone();
    all.sort_unstable();
    Latency::of(&all)
}

/// Publishes `events` events at `per_second`, one per request, each to one subscription
/// without an adapter, and measures publish-to-arrival times at the receiver.
pub async fn latency(
    receiver: &Receiver,
    events: usize,
    per_second: u64,
) -> anyhow::Result<Latency> {
    let dir = tempfile::tempdir()?;
    std::fs::create_dir_all(dir.path().join("plugins"))?;
    let path = "/latency";
    let config = format!(
        "{}{}",
        preamble(64),
        subscription("latency", &receiver.url(path), "")
    );
    let engine = Engine::start(&config, dir.path()).await?;
    let latency = paced_latencies(receiver, path, &engine.base, events, per_second).await;
    engine.stop().await?;
    latency
}
