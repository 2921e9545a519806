//! Console page times with a large store (issue 17: every page under 200 ms server-side
//! with 10,000 subscriptions and 1M deliveries). The store is filled in this process:
//! subscriptions through the store, events through the ingest service (each routed to
//! every subscription), and every delivery finished by recording an attempt (nine in ten
//! delivered, one in ten dead-lettered), as a busy engine's store looks. Then the engine
//! starts on it and each page is fetched with a signed-in session; the time is the
//! loopback round trip of the whole page, an upper bound on the server's render time.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::Notify;
use wasmhook::clock::now_ms;
use wasmhook::config::{DeliveryConfig, LimitsConfig};
use wasmhook::event::EventDraft;
use wasmhook::ingest::Ingest;
use wasmhook::metrics::Metrics;
use wasmhook::store::{
    AttemptRecord, EmbeddedStore, NextState, Store, StoredSubscription, SubscriptionSource,
};
use wasmhook::subscription::{StoredSecret, SubscriptionSpec, Subscriptions};

use crate::harness::Engine;

const TOKEN: &str = "bench-console-token";

/// Fetches of each page; the median and the slowest are reported.
const ROUNDS: usize = 5;

/// One page's times, in milliseconds.
#[derive(Debug)]
pub struct PageTime {
    /// The path fetched.
    pub path: String,
    /// The median of [`ROUNDS`] fetches.
    pub median_ms: f64,
    /// The slowest.
    pub max_ms: f64,
    /// The page's size in bytes.
    pub bytes: usize,
}

/// Fills a store with `subscriptions` and `deliveries` (rounded to whole events), starts
/// the engine on it and times every console page.
pub async fn page_times(subscriptions: usize, deliveries: usize) -> anyhow::Result<Vec<PageTime>> {
    let dir = tempfile::tempdir()?;
    fill(dir.path(), subscriptions, deliveries).await?;
    let config =
        format!("[server]\napi_token = \"{TOKEN}\"\n\n[delivery]\nallow_private_networks = true\n");
    let engine = Engine::start(&config, dir.path()).await?;
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let cookie = sign_in(&client, &engine.base).await?;
    let probe = format!("sub_{:05}", subscriptions / 2);
    let paths = [
        "/ui".to_owned(),
        "/ui/subscriptions".to_owned(),
        format!("/ui/subscriptions/{probe}"),
        "/ui/dead-letters".to_owned(),
        format!("/ui/dead-letters?subscription_id={probe}"),
        "/ui/endpoints".to_owned(),
        "/ui/plugins".to_owned(),
        "/ui/tail".to_owned(),
    ];
    let mut out = Vec::new();
    for path in paths {
        let mut times = Vec::with_capacity(ROUNDS);
        let mut bytes = 0;
        for _ in 0..ROUNDS {
            let request = http::Request::get(format!("{}{path}", engine.base))
                .header("cookie", &cookie)
                .body(Full::new(Bytes::new()))?;
            let start = Instant::now();
            let response = client.request(request).await?;
            let status = response.status();
            let body = response.into_body().collect().await?.to_bytes();
            times.push(start.elapsed().as_secs_f64() * 1000.0);
            anyhow::ensure!(status == 200, "{path}: {status}");
            bytes = body.len();
        }
        times.sort_by(f64::total_cmp);
        out.push(PageTime {
            path,
            median_ms: times[ROUNDS / 2],
            max_ms: times[ROUNDS - 1],
            bytes,
        });
    }
    engine.stop().await?;
    Ok(out)
}

async fn sign_in(
    client: &Client<HttpConnector, Full<Bytes>>,
    base: &str,
) -> anyhow::Result<String> {
    // The engine may still be starting: try until it answers.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let request = http::Request::post(format!("{base}/ui/login"))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(format!("{{\"token\":\"{TOKEN}\"}}"))))?;
        match client.request(request).await {
            Ok(response) if response.status() == 204 => {
                let cookie = response.headers()["set-cookie"].to_str()?;
                return Ok(cookie.split(';').next().unwrap_or_default().to_owned());
            }
            Ok(response) => anyhow::bail!("sign-in answered {}", response.status()),
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// The store under `dir`: `subscriptions` API subscriptions to `bench.*`, and events
/// routed to all of them until there are `deliveries`, every one finished.
async fn fill(dir: &Path, subscriptions: usize, deliveries: usize) -> anyhow::Result<()> {
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(&dir.join("data"), now_ms())?);
    let now = now_ms();
    let spec = SubscriptionSpec {
        url: "http://127.0.0.1:9/console-bench".into(),
        events: vec!["bench.*".into()],
        secrets: vec![StoredSecret {
            secret: wasmhook::signing::generate_secret().expose().to_owned(),
            expires_at_ms: None,
        }],
        ..SubscriptionSpec::default()
    }
    .to_json();
    for i in 0..subscriptions {
        store
            .put_subscription(StoredSubscription {
                id: format!("sub_{i:05}"),
                source: SubscriptionSource::Api,
                spec: spec.clone(),
                enabled: true,
                disabled_reason: None,
                created_at_ms: now,
                updated_at_ms: now,
            })
            .await?;
    }
    let catalog = Subscriptions::load(Arc::clone(&store), DeliveryConfig::default()).await?;
    let ingest = Ingest::new(
        Arc::clone(&store),
        Arc::new(catalog),
        None,
        Arc::new(Notify::new()),
        Metrics::default(),
        LimitsConfig::default().event_limits(),
    );
    let events = deliveries.div_ceil(subscriptions.max(1));
    for n in 0..events {
        ingest
            .publish(
                EventDraft {
                    id: Some(format!("evt_console_{n}")),
                    kind: "bench.console".into(),
                    data: Some(format!("{{\"n\":{n}}}")),
                },
                None,
            )
            .await?;
        finish_due(store.as_ref()).await?;
    }
    Ok(())
}

/// Records one attempt for every due delivery: nine in ten delivered, the rest dead letters.
async fn finish_due(store: &dyn Store) -> anyhow::Result<()> {
    loop {
        let claim = store.claim_due(now_ms(), 10_000, Duration::MAX).await?;
        if claim.deliveries.is_empty() {
            return Ok(());
        }
        let records = claim
            .deliveries
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let delivered = i % 10 != 0;
                AttemptRecord {
                    delivery_id: d.id.clone(),
                    subscription_id: d.subscription_id.clone(),
                    receiver: Some(delivered),
                    attempt: 1,
                    started_at_ms: now_ms(),
                    latency_us: 1_500,
                    status_code: Some(if delivered { 200 } else { 400 }),
                    error: (!delivered).then(|| "the receiver answered 400".to_owned()),
                    response_body: None,
                    plugin_version: None,
                    next: if delivered {
                        NextState::Delivered
                    } else {
                        NextState::DeadLetter
                    },
                    parked_on: None,
                }
            })
            .collect();
        store.record(records).await?;
    }
}
