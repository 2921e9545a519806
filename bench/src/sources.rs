//! Where events come from besides HTTP (issue 18): published in process through the
//! embedded [`wasmhook::Engine`], and consumed from a NATS JetStream stream, each beside
//! HTTP ingest measured in the same run on the same config (one subscription whose
//! deliveries wait, so the figures are ingest alone, as in `ingest`).
//!
//! NATS comes from `scripts/nats-server` (Debian's nats-server, installed when missing).

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use wasmhook::config::{Config, ProcessEnv};
use wasmhook::event::EventDraft;

use crate::harness::{Engine, ScriptServer, preamble, share_out, subscription};
use crate::ingest::{self, client, event_data};
use crate::receiver::Receiver;

/// Batches per request or call, as in `ingest`.
const BATCH: usize = 100;
/// Concurrent single-event producers, as in `ingest`.
const PRODUCERS: usize = 32;

/// The config every run uses, the HTTP rows' own (`ingest::ingest_with` with
/// [`PRODUCERS`]): one subscription that parks its deliveries, `concurrency = 64`. On the
/// default 256 the in-process batches ran 25 to 30% slower with the HTTP rows unchanged
/// (three alternating pairs), which made the rows compare settings, not producers.
fn config(receiver: &Receiver, extra: &str) -> String {
    format!(
        "{}{}{extra}",
        preamble(PRODUCERS),
        subscription(
            "parked",
            &receiver.url("/ingest-parked"),
            "plugin = \"absent\""
        )
    )
}

/// Events per second through the embedded engine: single `publish` calls from
/// [`PRODUCERS`] tasks, then `publish_batch` of [`BATCH`] from 4.
async fn in_process(receiver: &Receiver, events: u64) -> anyhow::Result<(f64, f64)> {
    let dir = tempfile::tempdir()?;
    let mut config = Config::parse(&config(receiver, ""))?;
    config.storage.path = dir.path().join("data");
    config.plugins.dir = dir.path().join("plugins");
    std::fs::create_dir_all(&config.plugins.dir)?;
    let engine = Arc::new(wasmhook::Engine::start(config, &ProcessEnv).await?);
    let draft = |n: u64| EventDraft {
        id: None,
        kind: "bench.ingest".into(),
        data: Some(event_data(n)),
    };

    let shared = Arc::clone(&engine);
    let took = share_out(PRODUCERS, events, move |n| {
        let engine = Arc::clone(&shared);
        async move { engine.publish(draft(n)).await.map(drop).map_err(Into::into) }
    })
    .await?;
    let single = events as f64 / took.as_secs_f64();

    let batches = (events as usize).div_ceil(BATCH) as u64;
    let shared = Arc::clone(&engine);
    let took = share_out(4, batches, move |b| {
        let engine = Arc::clone(&shared);
        let first = events + b * BATCH as u64;
        async move {
            let drafts = (first..first + BATCH as u64).map(draft).collect();
            engine
                .publish_batch(drafts)
                .await
                .map(drop)
                .map_err(Into::into)
        }
    })
    .await?;
    let batched = (batches * BATCH as u64) as f64 / took.as_secs_f64();
    let engine = Arc::into_inner(engine).expect("every producer has finished");
    engine.shutdown().await?;
    Ok((single, batched))
}

/// The engine's `wasmhook_events_ingested_total`.
async fn ingested(client: &ingest::HttpClient, base: &str) -> anyhow::Result<u64> {
    Ok(ingest::metrics_text(client, base)
        .await?
        .lines()
        .find_map(|l| l.strip_prefix("wasmhook_events_ingested_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0))
}

/// Events per second consumed from a JetStream stream that already holds `events`
/// messages: from the first committed event to the last, as the engine's counter says.
async fn nats(receiver: &Receiver, events: u64) -> anyhow::Result<f64> {
    let nats = ScriptServer::start("nats-server")?;
    let js = jetstream::new(async_nats::connect(&nats.url).await?);
    js.create_stream(jetstream::stream::Config {
        name: "BENCH".into(),
        subjects: vec!["bench.>".into()],
        ..Default::default()
    })
    .await?;
    for chunk in (0..events).collect::<Vec<_>>().chunks(1_000) {
        let mut acks = Vec::with_capacity(chunk.len());
        for &n in chunk {
            acks.push(js.publish("bench.ingest", event_data(n).into()).await?);
        }
        for ack in acks {
            ack.await?;
        }
    }
    let dir = tempfile::tempdir()?;
    std::fs::create_dir_all(dir.path().join("plugins"))?;
    let source = format!(
        "[[sources]]\nid = \"bench\"\nkind = \"nats\"\nurl = \"{}\"\nstream = \"BENCH\"\n",
        nats.url
    );
    let engine = Engine::start(&config(receiver, &source), dir.path()).await?;
    let client = client();
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut first = None;
    loop {
        let n = ingested(&client, &engine.base).await?;
        if n > 0 && first.is_none() {
            first = Some((Instant::now(), n));
        }
        if n >= events {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {n} of {events} NATS messages became events in 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (t0, n0) = first.expect("the counter moved");
    let rate = (events - n0) as f64 / t0.elapsed().as_secs_f64().max(1e-3);
    engine.stop().await?;
    Ok(rate)
}

/// The section: HTTP, in-process and NATS ingest from one run.
pub async fn report(out: &mut String, receiver: &Receiver, events: u64) -> anyhow::Result<()> {
    use std::fmt::Write as _;
    let http = ingest::ingest_with(receiver, events, BATCH, PRODUCERS, "", false).await?;
    let (single, batched) = in_process(receiver, events).await?;
    let nats = nats(receiver, events).await?;
    writeln!(
        out,
        "## Event sources: HTTP, in process, NATS\n\n\
         Events committed per second (each with one delivery that waits, so this is ingest alone), {events} 1 KiB \
         events per row, all on the settings of the ingest section (`concurrency = {}`, `endpoint_concurrency = \
         {PRODUCERS}`), from one run. Single events come from {PRODUCERS} concurrent \
         producers, batches of {BATCH} from 4. NATS: a JetStream stream already holding the messages, consumed by \
         one `[[sources]]` entry (durable pull consumer, batches of up to 256, the default, up to three committing at once, each message \
         acknowledged after its commit); its rate \
         runs from the first committed event to the last.\n\n\
         | Producer | Events/s | vs HTTP, same shape |\n|---|---|---|\n\
         | HTTP, one event per `POST /v1/events` | {:.0} | 100% |\n\
         | In process, one `Engine::publish` per event | {single:.0} | {:.0}% |\n\
         | HTTP, batches of {BATCH} (`POST /v1/events/batch`) | {:.0} | 100% |\n\
         | In process, `Engine::publish_batch` of {BATCH} | {batched:.0} | {:.0}% |\n\
         | NATS JetStream source | {nats:.0} | {:.0}% of HTTP batches |\n",
        PRODUCERS * 2,
        http.single,
        100.0 * single / http.single,
        http.batched,
        100.0 * batched / http.batched,
        100.0 * nats / http.batched,
    )?;
    Ok(())
}
