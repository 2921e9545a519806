//! Per-delivery adapter overhead: the time one `transform` call costs in a fresh instance,
//! in a reused instance, and the cost of building the envelope with no adapter, measured
//! with the engine's own sandbox and limits.

use std::path::Path;
use std::time::Instant;

use wasmhook::config::Config;
use wasmhook::event::Event;
use wasmhook::plugins::{AdapterInput, Call, CallLimits, PluginLabel};

/// Mean microseconds per call.
#[derive(Debug, Clone, Copy)]
pub struct Overhead {
    /// A fresh instance per call.
    pub fresh_us: f64,
    /// One instance reused for every call.
    pub reused_us: f64,
    /// No adapter: the standard envelope.
    pub none_us: f64,
}

/// A 1 KiB event like the drain scenarios use.
pub fn sample_event() -> Event {
    let pad = "x".repeat(900);
    Event {
        id: "evt_0193a1b2c3d4e5f60718293a4b5c6d7e".into(),
        kind: "host.down".into(),
        created_at_ms: 1_781_352_000_000,
        data: format!(
            "{{\"summary\":\"web-1 stopped answering\",\"host\":\"web-1\",\"severity\":\"critical\",\"region\":\"eu-west\",\"pad\":\"{pad}\"}}"
        ),
    }
}

/// Measures sequential calls of the component at `path` with `settings`: `fresh_calls` on
/// fresh instances, `reused_calls` on one reused instance (and as many envelopes).
pub async fn overhead(
    path: &Path,
    settings: &[(String, String)],
    fresh_calls: usize,
    reused_calls: usize,
    config: &Config,
) -> anyhow::Result<Overhead> {
    let sandbox = wasmhook::engine::sandbox(config)?;
    let bytes = std::fs::read(path)?;
    let component = sandbox.compile(&bytes)?;
    let prepared = sandbox.prepare(&component)?;
    let name = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("adapter");
    let label = PluginLabel {
        name: name.to_owned(),
        version: 1,
        hash: String::new(),
    };
    let event = sample_event();
    let input = AdapterInput {
        subscription_id: "bench",
        url: "https://receiver.example.com/hook",
        settings,
        attempt: 1,
        timestamp: event.created_at_ms / 1000,
        signing_keys: &[],
    };
    let mut limits = CallLimits::for_plugin(&config.plugins, name);
    let mut run = |reuse: u32| {
        limits.instance_reuse = reuse;
        Call {
            label: &label,
            event: &event,
            input: &input,
            delivery_id: "msg_bench",
            limits,
        }
    };
    // Warm up: first calls touch fresh pool slots and lazy runtime state.
    for _ in 0..fresh_calls.min(200) / 10 + 1 {
        sandbox.transform(&prepared, run(0)).await?;
    }
    let started = Instant::now();
    for _ in 0..fresh_calls {
        sandbox.transform(&prepared, run(0)).await?;
    }
    let fresh_us = started.elapsed().as_secs_f64() * 1e6 / fresh_calls as f64;
    let calls = reused_calls;
    sandbox.transform(&prepared, run(u32::MAX)).await?;
    let started = Instant::now();
    for _ in 0..calls {
        sandbox.transform(&prepared, run(u32::MAX)).await?;
    }
    let reused_us = started.elapsed().as_secs_f64() * 1e6 / calls as f64;
    let started = Instant::now();
    let mut bytes = 0;
    for _ in 0..calls {
        bytes += std::hint::black_box(event.envelope()).len();
    }
    let none_us = started.elapsed().as_secs_f64() * 1e6 / calls as f64;
    std::hint::black_box(bytes);
    Ok(Overhead {
        fresh_us,
        reused_us,
        none_us,
    })
}
