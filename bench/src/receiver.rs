//! The benchmark's receiver: a hyper server on loopback that answers `200` at once, counts
//! requests per path, and never answers paths marked as black holes.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::Notify;

/// Requests seen on one path.
#[derive(Debug, Default)]
pub struct PathStats {
    /// How many.
    pub count: AtomicU64,
    /// When the first and the latest arrived.
    pub first_last: Mutex<Option<(Instant, Instant)>>,
    /// On `/versioned…` paths: when each request arrived and the adapter version in its body.
    pub versions: Mutex<Vec<(Instant, u64)>>,
    /// On `/latency…` paths: microseconds from publishing (`data.sent_us` in the envelope,
    /// on the clock of `harness::micros`) to arrival.
    pub latencies_us: Mutex<Vec<u64>>,
}

/// The receiver.
#[derive(Debug)]
pub struct Receiver {
    addr: SocketAddr,
    paths: Arc<Mutex<HashMap<String, Arc<PathStats>>>>,
    arrived: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Receiver {
    /// Binds 127.0.0.1:0; paths starting with `/blackhole` hang forever.
    pub async fn start() -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let paths: Arc<Mutex<HashMap<String, Arc<PathStats>>>> = Arc::default();
        let arrived = Arc::new(Notify::new());
        let (p, a) = (Arc::clone(&paths), Arc::clone(&arrived));
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let (paths, arrived) = (Arc::clone(&p), Arc::clone(&a));
                tokio::spawn(async move {
                    let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let (paths, arrived) = (Arc::clone(&paths), Arc::clone(&arrived));
                        async move {
                            let path = req.uri().path().to_owned();
                            let body = req
                                .into_body()
                                .collect()
                                .await
                                .map(|c| c.to_bytes())
                                .unwrap_or_default();
                            if path.starts_with("/blackhole") {
                                std::future::pending::<()>().await;
                            }
                            let stats = Arc::clone(
                                paths.lock().expect("lock").entry(path.clone()).or_default(),
                            );
                            let now = Instant::now();
                            {
                                let mut fl = stats.first_last.lock().expect("lock");
                                let first = fl.map_or(now, |(f, _)| f);
                                *fl = Some((first, now));
                            }
                            if path.starts_with("/versioned") {
                                // Bodies of the versioned test adapter name their version.
                                let version = serde_json::from_slice::<serde_json::Value>(&body)
                                    .ok()
                                    .and_then(|v| v["version"].as_u64());
                                if let Some(v) = version {
                                    stats.versions.lock().expect("lock").push((now, v));
                                }
                            }
                            if path.starts_with("/latency") {
                                let arrived_us = crate::harness::micros();
                                let sent = serde_json::from_slice::<serde_json::Value>(&body)
                                    .ok()
                                    .and_then(|v| v["data"]["sent_us"].as_u64());
                                if let Some(sent) = sent {
                                    stats
                                        .latencies_us
                                        .lock()
                                        .expect("lock")
                                        .push(arrived_us.saturating_sub(sent));
                                }
                            }
                            stats.count.fetch_add(1, Ordering::Relaxed);
                            arrived.notify_waiters();
                            Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(
                                Bytes::from_static(b"ok"),
                            )))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Self {
            addr,
            paths,
            arrived,
            task,
        })
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The counters of `path`.
    pub fn stats(&self, path: &str) -> Arc<PathStats> {
        Arc::clone(
            self.paths
                .lock()
                .expect("lock")
                .entry(path.to_owned())
                .or_default(),
        )
    }

    /// Waits until a request on `path` from adapter version `version` arrives after `since`;
    /// returns when it arrived.
    pub async fn wait_version(&self, path: &str, version: u64, since: Instant) -> Instant {
        let stats = self.stats(path);
        loop {
            let notified = self.arrived.notified();
            let found = stats
                .versions
                .lock()
                .expect("lock")
                .iter()
                .find(|(at, v)| *v == version && *at >= since)
                .map(|(at, _)| *at);
            if let Some(at) = found {
                return at;
            }
            notified.await;
        }
    }

    /// Waits until `path` has seen `n` requests; returns the seconds between the first and
    /// the `n`-th.
    pub async fn wait_for(&self, path: &str, n: u64) -> f64 {
        let stats = self.stats(path);
        loop {
            let notified = self.arrived.notified();
            if stats.count.load(Ordering::Relaxed) >= n {
                break;
            }
            notified.await;
        }
        let (first, last) = stats
            .first_last
            .lock()
            .expect("lock")
            .expect("requests arrived");
        (last - first).as_secs_f64()
    }
}
