//! NATS JetStream sources against a real `nats-server` (started by `scripts/nats-server`,
//! which installs it from Debian when missing): every message becomes exactly one event
//! and one delivery, across a SIGKILL, and poison messages are reported without stopping
//! the rest.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream;
use wasmhook_tests::{Receiver, SECRET, Workdir, base_config, verify};

const WAIT: Duration = Duration::from_secs(180);

/// A NATS server with JetStream on a free loopback port, stopped when dropped.
struct Nats {
    url: String,
    dir: String,
}

impl Nats {
    fn start() -> Self {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/nats-server");
        let out = Command::new(&script)
            .arg("start")
            .output()
            .expect("run scripts/nats-server");
        assert!(
            out.status.success(),
            "scripts/nats-server start failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let line = String::from_utf8(out.stdout).expect("utf-8");
        let (url, dir) = line.trim().split_once(' ').expect("`<url> <dir>`");
        Self {
            url: url.to_owned(),
            dir: dir.to_owned(),
        }
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/nats-server");
        let _ = Command::new(script).args(["stop", &self.dir]).status();
    }
}

/// Publishes `messages` (subject, optional `Nats-Msg-Id`, payload) and returns the stream
/// sequence of each, once JetStream has stored them all.
async fn publish(
    js: &jetstream::Context,
    messages: Vec<(String, Option<String>, Vec<u8>)>,
) -> Vec<u64> {
    let mut sequences = Vec::with_capacity(messages.len());
    for chunk in messages.chunks(500) {
        let mut acks = Vec::with_capacity(chunk.len());
        for (subject, msg_id, payload) in chunk {
            let mut headers = HeaderMap::new();
            if let Some(id) = msg_id {
                headers.insert(async_nats::header::NATS_MESSAGE_ID, id.as_str());
            }
            let ack = js
                .publish_with_headers(subject.clone(), headers, payload.clone().into())
                .await
                .expect("publish");
            acks.push(ack);
        }
        for ack in acks {
            sequences.push(ack.await.expect("stored by JetStream").sequence);
        }
    }
    sequences
}

/// The engine's counter `name` with `labels` from `/metrics`, 0 when absent.
async fn counter(base: &str, name: &str, labels: &str) -> u64 {
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let prefix = if labels.is_empty() {
        format!("{name} ")
    } else {
        format!("{name}{{{labels}}} ")
    };
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map_or(0, |v| v.trim().parse().expect("a number"))
}

#[tokio::test(flavor = "multi_thread")]
async fn every_message_is_delivered_once_across_a_sigkill_and_poison_is_reported() {
    const BEFORE: usize = 9_000;
    const AFTER: usize = 1_000;
    let nats = Nats::start();
    let js = jetstream::new(async_nats::connect(&nats.url).await.expect("connect"));
    js.create_stream(jetstream::stream::Config {
        name: "ORDERS".into(),
        subjects: vec!["orders.>".into()],
        ..Default::default()
    })
    .await
    .expect("create the stream");

    let receiver = Receiver::start().await;
    let work = Workdir::new();
    work.write_config(&format!(
        "{}concurrency = 64\n\n[[subscriptions]]\nid = \"orders\"\nurl = \"{}\"\nevents = [\"orders.>\"]\nsecret = \"{SECRET}\"\n\n\
         [[sources]]\nid = \"bus\"\nkind = \"nats\"\nurl = \"{}\"\nstream = \"ORDERS\"\nbatch = 100\n",
        base_config(),
        receiver.url("/hook"),
        nats.url,
    ));

    // Half carry a `Nats-Msg-Id`, half are keyed by their stream sequence.
    let message = |i: usize| {
        let id = i.is_multiple_of(2).then(|| format!("order-{i}"));
        (
            "orders.placed".to_owned(),
            id,
            format!("{{\"i\":{i}}}").into_bytes(),
        )
    };
    let first: Vec<_> = (0..BEFORE).map(message).collect();
    let sequences = publish(&js, first.clone()).await;
    // The event id each message must become, by `data.i`.
    let mut expected: HashMap<u64, String> = HashMap::new();
    for (i, ((_, id, _), seq)) in first.iter().zip(&sequences).enumerate() {
        expected.insert(i as u64, id.clone().unwrap_or(format!("ORDERS-{seq}")));
    }

    // SIGKILL as soon as the engine has committed its first batch, while it is still
    // consuming the stream.
    let mut engine = work.start().await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let n = counter(&engine.base, "wasmhook_events_ingested_total", "").await;
        if n > 0 {
            println!("killed after {n} of {BEFORE} events were committed");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "nothing ingested; log:\n{}",
            engine.log()
        );
        tokio::task::yield_now().await;
    }
    engine.signal(9);

    let engine = work.start().await;
    // Poison (not JSON; a subject that is no event type), then more good messages.
    publish(
        &js,
        vec![
            (
                "orders.placed".into(),
                Some("poison-1".into()),
                b"not json".to_vec(),
            ),
            (
                "orders.bad!type".into(),
                Some("poison-2".into()),
                b"{}".to_vec(),
            ),
        ],
    )
    .await;
    let rest: Vec<_> = (BEFORE..BEFORE + AFTER).map(message).collect();
    let sequences = publish(&js, rest.clone()).await;
    for (i, ((_, id, _), seq)) in rest.iter().zip(&sequences).enumerate() {
        expected.insert(
            (BEFORE + i) as u64,
            id.clone().unwrap_or(format!("ORDERS-{seq}")),
        );
    }

    let distinct_events = |requests: &[wasmhook_tests::Received]| {
        requests
            .iter()
            .map(|r| r.json()["id"].as_str().unwrap_or_default().to_owned())
            .collect::<HashSet<_>>()
            .len()
    };
    receiver
        .wait_until(WAIT, "a delivery of every message", |r| {
            distinct_events(r) >= BEFORE + AFTER
        })
        .await;

    let requests = receiver.requests();
    let mut deliveries = HashSet::new();
    let mut events = HashMap::new();
    for r in &requests {
        verify(SECRET, r).expect("a valid signature");
        let body = r.json();
        let i = body["data"]["i"].as_u64().expect("data.i");
        let id = body["id"].as_str().expect("id").to_owned();
        assert_eq!(body["type"], "orders.placed");
        assert_eq!(expected.get(&i), Some(&id), "message {i} became event {id}");
        // A delivery retried after the kill keeps its webhook-id; a second event for the
        // same message would bring a second one.
        deliveries.insert(r.header("webhook-id").to_owned());
        events
            .entry(id)
            .or_insert_with(HashSet::new)
            .insert(r.header("webhook-id").to_owned());
    }
    assert_eq!(events.len(), BEFORE + AFTER, "one event per message");
    assert_eq!(
        deliveries.len(),
        BEFORE + AFTER,
        "exactly one event (one delivery) per message id"
    );
    assert!(events.values().all(|d| d.len() == 1));

    // The poison was reported, each with its reason, and did not stop the rest.
    let rejected = |reason: &'static str| {
        let base = engine.base.clone();
        async move {
            counter(
                &base,
                "wasmhook_source_messages_rejected_total",
                &format!("source=\"bus\",reason=\"{reason}\""),
            )
            .await
        }
    };
    assert_eq!(rejected("invalid_json").await, 1);
    assert_eq!(rejected("invalid_event_type").await, 1);
    let log = engine.log();
    assert!(log.contains("the payload is not JSON"), "{log}");
    assert!(
        log.contains("invalid event type `orders.bad!type`"),
        "{log}"
    );
}
