//! Runs the wasmhook engine inside this program: no HTTP API, no listening socket of the
//! engine's. It starts a receiver of its own on loopback (standing in for a customer's
//! endpoint), publishes events in process, checks that every delivery arrives with a valid
//! Standard Webhooks signature, and checks that the only listening socket this process
//! holds is the receiver's.
//!
//! `cargo run -p wasmhook-example-embedded` prints what it checked and exits 0, or says
//! what failed and exits 1. Its test (`tests/runs.rs`) runs it in CI.

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use wasmhook::config::{Config, ProcessEnv};
use wasmhook::engine::Engine;
use wasmhook::event::EventDraft;

/// How many events the example publishes.
const EVENTS: usize = 20;
/// The subscription's signing secret (a fixed example; generate your own).
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let receiver = Receiver::start().await?;
    let storage = tempfile::tempdir()?;

    // The same TOML `wasmhook serve` reads; here it is a string, but any `Config` value works.
    let config = Config::parse(&format!(
        r#"
        [storage]
        path = "{storage}"
        [plugins]
        dir = "{storage}/plugins"
        [delivery]
        allow_private_networks = true   # the receiver is on loopback

        [[subscriptions]]
        id = "orders"
        url = "http://{addr}/hooks"
        events = ["order.*"]
        secret = "{SECRET}"
        "#,
        storage = storage.path().display(),
        addr = receiver.addr,
    ))?;
    let engine = Engine::start(config, &ProcessEnv).await?;

    for n in 0..EVENTS {
        let draft = EventDraft::new("order.paid", &serde_json::json!({ "order": n }))
            .with_id(format!("order-{n}-paid"));
        // Returns once the event and its delivery are durable.
        let accepted = engine.publish(draft).await?;
        ensure!(
            accepted.results[0].deliveries == 1,
            "event {n} matched no subscription"
        );
    }
    // Publishing the same id again is idempotent: no second delivery.
    let again = engine
        .publish(
            EventDraft::new("order.paid", &serde_json::json!({ "order": 0 }))
                .with_id("order-0-paid"),
        )
        .await?;
    ensure!(again.results[0].duplicate, "a repeated id was stored twice");

    let orders = receiver.wait_for(EVENTS, Duration::from_secs(30)).await?;
    let listening = listening_ports()?;
    engine.shutdown().await?;

    ensure!(
        orders == (0..EVENTS as u64).collect::<BTreeSet<_>>(),
        "the receiver got orders {orders:?}"
    );
    ensure!(
        listening == BTreeSet::from([receiver.addr.port()]),
        "this process listens on ports {listening:?}; only the receiver's ({}) was expected",
        receiver.addr.port()
    );
    println!(
        "published {EVENTS} events in process; the receiver got {} signed deliveries; \
         the only listening socket is the receiver's (port {})",
        orders.len(),
        receiver.addr.port()
    );
    Ok(())
}

/// A loopback receiver that checks each request's signature with the `standardwebhooks`
/// crate, as a real receiver would, and records the `order` of every valid one.
struct Receiver {
    addr: std::net::SocketAddr,
    seen: Arc<Mutex<Result<BTreeSet<u64>, String>>>,
    arrived: Arc<Notify>,
}

impl Receiver {
    async fn start() -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let webhook =
            Arc::new(standardwebhooks::Webhook::new(SECRET).map_err(|e| anyhow::anyhow!("{e:?}"))?);
        let seen = Arc::new(Mutex::new(Ok(BTreeSet::new())));
        let arrived = Arc::new(Notify::new());
        let (s, a) = (Arc::clone(&seen), Arc::clone(&arrived));
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (webhook, seen, arrived) =
                    (Arc::clone(&webhook), Arc::clone(&s), Arc::clone(&a));
                let service = service_fn(move |req: Request<Incoming>| {
                    let (webhook, seen, arrived) = (
                        Arc::clone(&webhook),
                        Arc::clone(&seen),
                        Arc::clone(&arrived),
                    );
                    async move {
                        let (parts, body) = req.into_parts();
                        let body = body
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        let order = webhook
                            .verify(&body, &parts.headers)
                            .map_err(|e| format!("a delivery with a bad signature: {e:?}"))
                            .and_then(|()| {
                                let event: serde_json::Value = serde_json::from_slice(&body)
                                    .map_err(|e| format!("a delivery that is not JSON: {e}"))?;
                                event["data"]["order"].as_u64().ok_or_else(|| {
                                    format!("a delivery without data.order: {event}")
                                })
                            });
                        let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
                        match order {
                            Ok(order) => {
                                if let Ok(set) = &mut *seen {
                                    set.insert(order);
                                }
                            }
                            Err(e) => *seen = Err(e),
                        }
                        drop(seen);
                        arrived.notify_one();
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
                    }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service),
                );
            }
        });
        Ok(Self {
            addr,
            seen,
            arrived,
        })
    }

    /// The orders received, once `n` have arrived (or the first bad delivery).
    async fn wait_for(&self, n: usize, timeout: Duration) -> anyhow::Result<BTreeSet<u64>> {
        tokio::time::timeout(timeout, async {
            loop {
                let arrived = self.arrived.notified();
                match &*self.seen.lock().unwrap_or_else(|e| e.into_inner()) {
                    Err(e) => bail!("{e}"),
                    Ok(set) if set.len() >= n => return Ok(set.clone()),
                    Ok(_) => {}
                }
                arrived.await;
            }
        })
        .await
        .with_context(|| format!("fewer than {n} deliveries arrived within {timeout:?}"))?
    }
}

/// The TCP ports this process listens on: the socket inodes among its open files, looked
/// up in `/proc/self/net/tcp{,6}` where the state is `0A` (LISTEN).
fn listening_ports() -> anyhow::Result<BTreeSet<u16>> {
    let mut inodes = BTreeSet::new();
    for fd in std::fs::read_dir("/proc/self/fd").context("this check needs Linux's /proc")? {
        let target = std::fs::read_link(fd?.path()).unwrap_or_default();
        if let Some(inode) = target
            .to_str()
            .and_then(|t| t.strip_prefix("socket:["))
            .and_then(|t| t.strip_suffix(']'))
        {
            inodes.insert(inode.to_owned());
        }
    }
    let mut ports = BTreeSet::new();
    for table in ["/proc/self/net/tcp", "/proc/self/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
            if fields.len() > 9 && fields[3] == "0A" && inodes.contains(fields[9]) {
                let port = fields[1].rsplit(':').next().unwrap_or_default();
                ports.insert(u16::from_str_radix(port, 16)?);
            }
        }
    }
    Ok(ports)
}
