//! Hot-reload delay: the time from a new `.wasm` file appearing in the plugins folder (by
//! rename, as a deploy tool would do it) until `/v1/plugins` shows the new version serving.
//! It includes the debounce (`reload_debounce`, default 200 ms) and the compile.

use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::harness::Engine;

/// Reload delays in milliseconds, one per swap, sorted.
pub async fn delays(a: &Path, b: &Path, swaps: usize) -> anyhow::Result<Vec<f64>> {
    let dir = tempfile::tempdir()?;
    let plugins = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins)?;
    std::fs::copy(a, plugins.join("hot.wasm"))?;
    // No compile cache: every swap compiles, as a deploy of new code would.
    let engine = Engine::start("[plugins]\ncompile_cache = false\n", dir.path()).await?;
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let url: http::Uri = format!("{}/v1/plugins", engine.base).parse()?;
    let version = || async {
        let response = client.get(url.clone()).await?;
        let body = response.into_body().collect().await?.to_bytes();
        let list: serde_json::Value = serde_json::from_slice(&body)?;
        let found = list["data"]
            .as_array()
            .and_then(|l| l.iter().find(|p| p["name"] == "hot"))
            .and_then(|p| p["version"].as_u64());
        anyhow::Ok(found.unwrap_or(0))
    };
    let wait_for = |want: u64| async move {
        let deadline = Instant::now() + Duration::from_secs(30);
        while version().await? < want {
            anyhow::ensure!(
                Instant::now() < deadline,
                "plugin version {want} never loaded"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        anyhow::Ok(())
    };
    wait_for(1).await?;
    let mut delays = Vec::new();
    for swap in 0..swaps {
        let source = if swap % 2 == 0 { b } else { a };
        let staged = plugins.join(".hot.wasm.tmp");
        std::fs::copy(source, &staged)?;
        let started = Instant::now();
        std::fs::rename(&staged, plugins.join("hot.wasm"))?;
        wait_for(swap as u64 + 2).await?;
        delays.push(started.elapsed().as_secs_f64() * 1e3);
    }
    engine.stop().await?;
    delays.sort_by(f64::total_cmp);
    Ok(delays)
}
