//! Runs the engine in this process for a benchmark: preloads a backlog straight into the
//! store, then starts `wasmhook::engine::run` on 127.0.0.1:0 and stops it afterwards.

use std::path::Path;

use tokio::sync::oneshot;
use wasmhook::config::{Config, ProcessEnv};
use wasmhook::event::{Event, new_id, now_ms};
use wasmhook::store::{EmbeddedStore, NewDelivery, NewEvent, Store};

/// A running engine.
#[derive(Debug)]
pub struct Engine {
    /// `http://127.0.0.1:<port>`, for scenarios that publish through the API.
    #[allow(dead_code)]
    pub base: String,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Engine {
    /// Starts the engine on `config_toml`, with its store and plugins under `dir`.
    pub async fn start(config_toml: &str, dir: &Path) -> anyhow::Result<Self> {
        let mut config = Config::parse(config_toml)?;
        config.storage.path = dir.join("data");
        config.plugins.dir = dir.join("plugins");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            wasmhook::engine::run(config, &ProcessEnv, listener, async {
                let _ = stopped.await;
            })
            .await
        });
        Ok(Self {
            base,
            stop: Some(stop),
            task,
        })
    }

    /// Stops it and waits until it has.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.task).await?
    }
}

/// Writes `events` events with one delivery per subscription in `subscriptions` into the
/// store under `dir`, in batches, as ingest would. The payload is `payload_bytes` long.
pub async fn preload(
    dir: &Path,
    subscriptions: &[&str],
    events: usize,
    payload_bytes: usize,
) -> anyhow::Result<()> {
    let store = EmbeddedStore::open(&dir.join("data"), now_ms())?;
    let pad = "x".repeat(payload_bytes.saturating_sub(40));
    let mut i = 0;
    while i < events {
        let batch: Vec<NewEvent> = (i..(i + 1000).min(events))
            .map(|n| NewEvent {
                event: Event {
                    id: format!("evt_{n}"),
                    kind: "bench.event".into(),
                    created_at_ms: now_ms(),
                    data: format!("{{\"n\":{n},\"summary\":\"event {n}\",\"pad\":\"{pad}\"}}"),
                },
                deliveries: subscriptions
                    .iter()
                    .map(|s| NewDelivery {
                        id: new_id("msg"),
                        subscription_id: (*s).to_owned(),
                    })
                    .collect(),
            })
            .collect();
        i += batch.len();
        store.ingest(batch).await?;
    }
    Ok(())
}

/// The `[[subscriptions]]` entry of a benchmark subscription.
pub fn subscription(id: &str, url: &str, extra: &str) -> String {
    format!(
        "[[subscriptions]]\nid = \"{id}\"\nurl = \"{url}\"\nevents = [\"*\"]\nsecret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"\n{extra}\n"
    )
}

/// A config preamble: `concurrency` attempts per endpoint (the baseline's concurrency),
/// twice that across endpoints, as the defaults (256 and 32) also leave room.
pub fn preamble(concurrency: usize) -> String {
    format!(
        "[delivery]\nallow_private_networks = true\nconcurrency = {}\nendpoint_concurrency = {concurrency}\n\n",
        concurrency * 2
    )
}
