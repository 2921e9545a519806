//! The physical limit: a raw hyper client POSTing 1 KiB bodies to the same receiver at the
//! same concurrency, with pooled keep-alive connections. Every engine figure is reported as
//! a ratio to this one, measured in the same run.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::receiver::Receiver;

/// Requests per second, and the mean round-trip time in microseconds at concurrency 1.
#[derive(Debug, Clone, Copy)]
pub struct Baseline {
    /// Requests per second at the benchmark's concurrency.
    pub rate: f64,
    /// Mean round trip with one request at a time, microseconds.
    pub rtt_us: f64,
}

/// Posts `total` 1 KiB bodies with `concurrency` workers.
pub async fn run(receiver: &Receiver, total: u64, concurrency: usize) -> anyhow::Result<Baseline> {
    let rate = post_loop(receiver, "/baseline", total, concurrency).await?;
    let rtt = post_loop(receiver, "/baseline-rtt", (total / 10).max(100), 1).await?;
    Ok(Baseline {
        rate,
        rtt_us: 1e6 / rtt,
    })
}

async fn post_loop(
    receiver: &Receiver,
    path: &str,
    total: u64,
    concurrency: usize,
) -> anyhow::Result<f64> {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let body = Bytes::from(vec![b'x'; 1024]);
    let url: http::Uri = receiver.url(path).parse()?;
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (client, body, url, next) =
            (client.clone(), body.clone(), url.clone(), Arc::clone(&next));
        workers.push(tokio::spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < total {
                let request = http::Request::post(url.clone())
                    .header("content-type", "application/json")
                    .body(Full::new(body.clone()))?;
                let response = client.request(request).await?;
                response.into_body().collect().await?;
            }
            anyhow::Ok(())
        }));
    }
    for w in workers {
        w.await??;
    }
    Ok(total as f64 / started.elapsed().as_secs_f64())
}
