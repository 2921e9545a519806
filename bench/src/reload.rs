//! Hot-reload delay under a steady flow of events: the time from a new adapter file landing
//! in the plugins folder until the receiver gets the first request the new version built.
//! Half the swaps rename a staged file over the old one (as a deploy tool would), half
//! rewrite the file in place. The delay includes the debounce (`reload_debounce`, default
//! 200 ms), the compile (no compile cache, as for new code) and one delivery.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::harness::{Engine, subscription};
use crate::receiver::Receiver;

/// Reload delays in milliseconds: (by rename, in place), each sorted.
pub async fn delays(
    receiver: &Receiver,
    versions: [&Path; 3],
    swaps: usize,
) -> anyhow::Result<(Vec<f64>, Vec<f64>)> {
    let dir = tempfile::tempdir()?;
    let plugins = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins)?;
    let live = plugins.join("hot.wasm");
    std::fs::copy(versions[0], &live)?;
    let path = "/versioned-reload";
    let config = format!(
        "[plugins]\ncompile_cache = false\n\n[delivery]\nallow_private_networks = true\n\n{}",
        subscription("hot", &receiver.url(path), "plugin = \"hot\"")
    );
    let engine = Engine::start(&config, dir.path()).await?;

    // A steady flow: one event every 5 ms, until the swaps are done.
    let running = Arc::new(AtomicBool::new(true));
    let publisher = {
        let running = Arc::clone(&running);
        let url: http::Uri = format!("{}/v1/events", engine.base).parse()?;
        tokio::spawn(async move {
            let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
            let mut tick = tokio::time::interval(Duration::from_millis(5));
            while running.load(Ordering::Relaxed) {
                tick.tick().await;
                let request = http::Request::post(url.clone())
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from_static(
                        b"{\"type\":\"bench.reload\"}",
                    )))?;
                client.request(request).await?.into_body().collect().await?;
            }
            anyhow::Ok(())
        })
    };
    receiver.wait_version(path, 1, Instant::now()).await;

    let (mut renamed, mut in_place) = (Vec::new(), Vec::new());
    for swap in 0..swaps {
        // Versions 2, 3, 1, 2, …: each swap brings a version other than the serving one.
        let version = (swap + 1) % 3 + 1;
        let bytes = std::fs::read(versions[version - 1])?;
        let started = if swap % 2 == 0 {
            let staged = plugins.join(".hot.wasm.tmp");
            std::fs::write(&staged, &bytes)?;
            let started = Instant::now();
            std::fs::rename(&staged, &live)?;
            started
        } else {
            let started = Instant::now();
            std::fs::write(&live, &bytes)?;
            started
        };
        let at = tokio::time::timeout(
            Duration::from_secs(30),
            receiver.wait_version(path, version as u64, started),
        )
        .await
        .map_err(|_| anyhow::anyhow!("version {version} never delivered"))?;
        let ms = (at - started).as_secs_f64() * 1e3;
        if swap % 2 == 0 {
            renamed.push(ms);
        } else {
            in_place.push(ms);
        }
    }
    running.store(false, Ordering::Relaxed);
    publisher.await??;
    engine.stop().await?;
    renamed.sort_by(f64::total_cmp);
    in_place.sort_by(f64::total_cmp);
    Ok((renamed, in_place))
}
