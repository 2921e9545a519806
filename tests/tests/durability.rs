//! At-least-once delivery: crashes, restarts, bad receivers, failing endpoints, replay.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use wasmhook_tests::{
    Engine, Receiver, Reply, SECRET, VERSIONED, Workdir, base_config, run_cli, verify,
};

const WAIT: Duration = Duration::from_secs(60);

fn subscription(id: &str, url: &str, extra: &str) -> String {
    format!(
        "[[subscriptions]]\nid = \"{id}\"\nurl = \"{url}\"\nevents = [\"*\"]\nsecret = \"{SECRET}\"\n{extra}\n"
    )
}

/// The one delivery of `event_id`, once `done` holds for it.
async fn delivery_of(engine: &Engine, event_id: &str, done: impl Fn(&Value) -> bool) -> Value {
    let list = engine.deliveries_of(event_id).await;
    assert_eq!(list.len(), 1, "{list:?}");
    let id = list[0]["id"].as_str().expect("id").to_owned();
    engine.wait_delivery(&id, WAIT, done).await
}

fn ms(rfc3339: &Value) -> i64 {
    let t = humantime::parse_rfc3339(rfc3339.as_str().expect("a time")).expect("RFC 3339");
    t.duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as i64
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_mid_stream_loses_no_accepted_event() {
    const EVENTS: usize = 3000;
    const CONCURRENCY: usize = 64;
    const KILLS: usize = 2;
    let receiver = Receiver::start().await;
    let work = Workdir::new();
    work.write_config(&format!(
        "[delivery]\nallow_private_networks = true\nretry_schedule = [\"50ms\"]\nconcurrency = {CONCURRENCY}\n\n{}{}",
        subscription("a", &receiver.url("/a"), ""),
        subscription("b", &receiver.url("/b"), ""),
    ));
    let accepted = Arc::new(Mutex::new(HashSet::new()));
    let (count_tx, mut count_rx) = tokio::sync::watch::channel(0usize);
    let count_tx = Arc::new(count_tx);
    let per_round = EVENTS / (KILLS + 1);
    for round in 0..=KILLS {
        let mut engine = work.start().await;
        let first = round * per_round;
        let last = if round < KILLS {
            first + per_round
        } else {
            EVENTS
        };
        // Four publishers at once, so the kill lands with requests in flight.
        let ids: Vec<usize> = (first..last).collect();
        let mut publishers = Vec::new();
        for chunk in ids.chunks(ids.len().div_ceil(4)) {
            let chunk = chunk.to_vec();
            let base = engine.base.clone();
            let accepted = Arc::clone(&accepted);
            let count_tx = Arc::clone(&count_tx);
            publishers.push(tokio::spawn(async move {
                let client = reqwest::Client::new();
                for i in chunk {
                    let event =
                        json!({"id": format!("evt_{i}"), "type": "load.test", "data": {"i": i}});
                    let sent = client
                        .post(format!("{base}/v1/events"))
                        .json(&event)
                        .send()
                        .await;
                    if sent.is_ok_and(|r| r.status() == 202) {
                        let mut set = accepted.lock().expect("lock");
                        set.insert(format!("evt_{i}"));
                        count_tx.send_replace(set.len());
                    }
                }
            }));
        }
        if round < KILLS {
            // Kill halfway through this round's events, while they are being published
            // and delivered.
            // (Publishing the rest of this round then fails: those events are not accepted.)
            let before = *count_rx.borrow_and_update();
            count_rx
                .wait_for(|n| *n >= before + per_round / 2)
                .await
                .expect("publishers report progress");
            let status = engine.signal(9);
            assert!(!status.success(), "SIGKILL ends the process");
        }
        for p in publishers {
            p.await.expect("publisher");
        }
        if round == KILLS {
            let accepted: HashSet<String> = accepted.lock().expect("lock").clone();
            let expected = accepted.len() * 2;
            receiver
                .wait_until(
                    Duration::from_secs(180),
                    "every accepted event at both subscriptions",
                    |reqs| {
                        let got: HashSet<(String, String)> = reqs
                            .iter()
                            .map(|r| {
                                (
                                    r.path.clone(),
                                    r.json()["id"].as_str().unwrap_or("").to_owned(),
                                )
                            })
                            .filter(|(_, id)| accepted.contains(id))
                            .collect();
                        got.len() >= expected
                    },
                )
                .await;
            let reqs = receiver.requests();
            let mut per_key: HashMap<(String, String), usize> = HashMap::new();
            for r in &reqs {
                verify(SECRET, r).expect("every request is signed");
                *per_key
                    .entry((
                        r.path.clone(),
                        r.json()["id"].as_str().unwrap_or("").to_owned(),
                    ))
                    .or_default() += 1;
            }
            let duplicates: usize = per_key.values().map(|n| n - 1).sum();
            let bound = KILLS * CONCURRENCY;
            eprintln!(
                "crash test: {} events accepted of {EVENTS}, {} requests received, {duplicates} duplicates (bound {bound})",
                accepted.len(),
                reqs.len()
            );
            assert!(accepted.len() > EVENTS / 2, "most events were accepted");
            assert!(
                duplicates <= bound,
                "{duplicates} duplicates; at most {CONCURRENCY} attempts are in flight per kill"
            );
            drop(engine);
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn retry_after_is_honoured() {
    let receiver = Receiver::start().await;
    receiver.script(
        "/busy",
        [Reply::WithHeaders(503, vec![("retry-after", "2".into())])],
    );
    let work = Workdir::new();
    work.write_config(&format!(
        "{}\n{}",
        base_config(),
        subscription("busy", &receiver.url("/busy"), "")
    ));
    let engine = work.start().await;
    engine.publish(json!({"id": "evt_ra", "type": "a.b"})).await;
    let got = receiver.wait_for("/busy", 2, WAIT).await;
    let gap = got[1].at - got[0].at;
    assert!(
        gap >= Duration::from_millis(1900),
        "retried after {gap:?}, before Retry-After: 2"
    );
    delivery_of(&engine, "evt_ra", |d| d["status"] == "delivered").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hang_past_the_timeout_and_a_reset_are_retried() {
    let receiver = Receiver::start().await;
    receiver.script("/hang", [Reply::Hang]);
    receiver.script("/reset", [Reply::Reset]);
    let work = Workdir::new();
    work.write_config(&format!(
        "{}\n{}{}",
        base_config(),
        subscription("hang", &receiver.url("/hang"), "timeout = \"300ms\""),
        subscription("reset", &receiver.url("/reset"), ""),
    ));
    let engine = work.start().await;
    engine
        .publish(json!({"id": "evt_fault", "type": "a.b"}))
        .await;
    receiver.wait_for("/hang", 2, WAIT).await;
    receiver.wait_for("/reset", 2, WAIT).await;
    for d in engine.deliveries_of("evt_fault").await {
        let detail = engine
            .wait_delivery(d["id"].as_str().expect("id"), WAIT, |d| {
                d["status"] == "delivered"
            })
            .await;
        let first = detail["attempts_log"][0]["error"]
            .as_str()
            .expect("first attempt failed")
            .to_owned();
        match detail["subscription_id"].as_str() {
            Some("hang") => assert_eq!(first, "no response within 300ms"),
            Some("reset") => assert!(
                first.contains("connection") || first.contains("closed") || first.contains("reset"),
                "{first}"
            ),
            other => panic!("{other:?}"),
        }
        assert_eq!(detail["attempts"], 2);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn gone_disables_the_subscription_and_bad_request_dead_letters_at_once() {
    let receiver = Receiver::start().await;
    receiver.script("/gone", [Reply::Status(410)]);
    receiver.script("/bad", [Reply::Status(400)]);
    let work = Workdir::new();
    work.write_config(&format!(
        "{}\n{}{}",
        base_config(),
        subscription("gone", &receiver.url("/gone"), "max_attempts = 5"),
        subscription("bad", &receiver.url("/bad"), "max_attempts = 5"),
    ));
    let engine = work.start().await;
    engine
        .publish(json!({"id": "evt_gone", "type": "a.b"}))
        .await;
    for d in engine.deliveries_of("evt_gone").await {
        let detail = engine
            .wait_delivery(d["id"].as_str().expect("id"), WAIT, |d| {
                d["status"] == "dead_letter"
            })
            .await;
        assert_eq!(detail["attempts"], 1, "no retry for {detail}");
    }
    // 410 disabled `gone`: a new event no longer creates a delivery for it; `bad` still works.
    let answer = engine
        .publish(json!({"id": "evt_after", "type": "a.b"}))
        .await;
    assert_eq!(answer["deliveries"], 1);
    assert_eq!(
        engine.deliveries_of("evt_after").await[0]["subscription_id"],
        "bad"
    );
    assert!(
        engine.log().contains("subscription disabled"),
        "{}",
        engine.log()
    );
    // It stays disabled across a restart (the config does not re-enable it).
    drop(engine);
    let engine = work.start().await;
    let answer = engine
        .publish(json!({"id": "evt_restart", "type": "a.b"}))
        .await;
    assert_eq!(answer["deliveries"], 1);
    assert_eq!(receiver.requests_to("/gone").len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fixed_adapter_fixes_the_pending_delivery() {
    let receiver = Receiver::start().await;
    let work = Workdir::new();
    work.install_plugin("shaper", VERSIONED[0]);
    work.write_config(&format!(
        "{}\n{}",
        "[delivery]\nallow_private_networks = true\nretry_schedule = [\"1s\"]\n",
        subscription(
            "shaped",
            &receiver.url("/shaped"),
            "plugin = \"shaper\"\nmax_attempts = 100\nsettings = { broken_versions = \"1\" }"
        ),
    ));
    let engine = work.start().await;
    engine
        .publish(json!({"id": "evt_fixme", "type": "a.b", "data": {"k": 1}}))
        .await;
    let failing = delivery_of(&engine, "evt_fixme", |d| d["attempts"].as_u64() >= Some(1)).await;
    assert_eq!(failing["status"], "pending");
    assert!(
        failing["last_error"]
            .as_str()
            .expect("error")
            .contains("returned an error: version 1 is broken"),
        "{failing}"
    );
    assert!(receiver.requests().is_empty());

    // Replace the plugin with a fixed version and restart: the pending retry succeeds.
    drop(engine);
    work.install_plugin("shaper", VERSIONED[1]);
    let engine = work.start().await;
    let got = receiver.wait_for("/shaped", 1, WAIT).await;
    assert_eq!(got[0].json()["version"], 2);
    assert_eq!(got[0].json()["event_id"], "evt_fixme");
    delivery_of(&engine, "evt_fixme", |d| d["status"] == "delivered").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_endpoint_does_not_hold_up_a_healthy_one() {
    const EVENTS: usize = 200;
    let receiver = Receiver::start().await;
    receiver.set_default("/blackhole", Reply::Hang);
    let work = Workdir::new();
    // Retries wait a random share of 30s (full jitter), so a warm-up delivery can spend a
    // second attempt within the test; ten attempts keep every one pending.
    work.write_config(&format!(
        "[delivery]\nallow_private_networks = true\nretry_schedule = [\"30s\"]\nmax_attempts = 10\nconcurrency = 16\n\
         endpoint_concurrency = 4\nbreaker_failures = 3\nbreaker_cooldown = \"1h\"\n\n{}{}",
        subscription(
            "dead",
            &receiver.url("/blackhole").replace("127.0.0.1", "localhost"),
            "timeout = \"300ms\""
        ),
        subscription("healthy", &receiver.url("/healthy"), ""),
    ));
    let engine = work.start().await;
    let find_dead = |endpoints: &Value| {
        endpoints["data"]
            .as_array()
            .expect("list")
            .iter()
            .find(|e| {
                e["endpoint"]
                    .as_str()
                    .is_some_and(|e| e.starts_with("http://localhost"))
            })
            .cloned()
    };

    // Phase 1: a few events time out at the black hole until its circuit opens.
    let warmup: Vec<Value> = (0..8)
        .map(|i| json!({"id": format!("warm_{i}"), "type": "a.b"}))
        .collect();
    assert_eq!(
        engine
            .post("/v1/events/batch", &Value::Array(warmup))
            .await
            .0,
        202
    );
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (_, endpoints) = engine.get("/v1/endpoints").await;
        if find_dead(&endpoints).is_some_and(|e| e["circuit"] == "open") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the circuit never opened: {endpoints}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let sent_to_dead = receiver.requests_to("/blackhole").len();
    assert!(
        sent_to_dead <= 3 + 4,
        "{sent_to_dead} requests reached the black hole"
    );

    // Phase 2: with the circuit open, every healthy delivery arrives and nothing more is
    // sent into the black hole.
    let events: Vec<Value> = (0..EVENTS)
        .map(|i| json!({"id": format!("evt_{i}"), "type": "a.b"}))
        .collect();
    assert_eq!(
        engine
            .post("/v1/events/batch", &Value::Array(events))
            .await
            .0,
        202
    );
    let healthy = receiver.wait_for("/healthy", EVENTS + 8, WAIT).await;
    let ids: HashSet<&str> = healthy.iter().map(|r| r.header("webhook-id")).collect();
    assert_eq!(
        ids.len(),
        EVENTS + 8,
        "every healthy delivery arrived exactly once"
    );
    assert_eq!(receiver.requests_to("/blackhole").len(), sent_to_dead);
    let (_, endpoints) = engine.get("/v1/endpoints").await;
    assert_eq!(find_dead(&endpoints).expect("tracked")["circuit"], "open");
    let metrics = reqwest_text(&engine, "/metrics").await;
    assert!(
        metrics.contains("wasmhook_circuit_state{endpoint=\"http://localhost:"),
        "{metrics}"
    );

    // The black hole's deliveries become failed attempts waiting for the circuit, not lost.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (_, pending) = engine
            .get("/v1/deliveries?subscription_id=dead&status=pending&limit=1000")
            .await;
        let pending = pending["data"].as_array().expect("list").clone();
        assert_eq!(pending.len(), EVENTS + 8, "none is lost or given up");
        let refused = pending
            .iter()
            .filter(|d| {
                d["last_error"]
                    .as_str()
                    .is_some_and(|e| e.contains("circuit"))
            })
            .count();
        if refused >= EVENTS {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {refused} refused by the open circuit"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn reqwest_text(engine: &Engine, path: &str) -> String {
    reqwest::get(format!("{}{path}", engine.base))
        .await
        .expect("GET")
        .text()
        .await
        .expect("text")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scheduled_retry_fires_at_its_time_after_a_restart() {
    let receiver = Receiver::start().await;
    receiver.script(
        "/later",
        [Reply::WithHeaders(503, vec![("retry-after", "4".into())])],
    );
    let work = Workdir::new();
    work.write_config(&format!(
        "{}\n{}",
        base_config(),
        subscription("later", &receiver.url("/later"), "")
    ));
    let mut engine = work.start().await;
    engine
        .publish(json!({"id": "evt_later", "type": "a.b"}))
        .await;
    let scheduled = delivery_of(&engine, "evt_later", |d| d["attempts"] == 1).await;
    let due_ms = ms(&scheduled["next_attempt_at"]);
    engine.signal(9);

    let engine = work.start().await;
    let got = receiver.wait_for("/later", 2, WAIT).await;
    assert!(
        got[1].wall_ms >= due_ms,
        "fired {} ms before its time",
        due_ms - got[1].wall_ms
    );
    assert_eq!(got[0].header("webhook-id"), got[1].header("webhook-id"));
    delivery_of(&engine, "evt_later", |d| d["status"] == "delivered").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replayed_dead_letter_keeps_its_webhook_id_and_duplicates_are_ignored() {
    let receiver = Receiver::start().await;
    receiver.script("/r", [Reply::Status(400)]);
    let work = Workdir::new();
    work.write_config(&format!(
        "{}\n{}",
        base_config(),
        subscription("r", &receiver.url("/r"), "")
    ));
    let engine = work.start().await;

    let first = engine
        .publish(json!({"id": "evt_dup", "type": "a.b"}))
        .await;
    let again = engine
        .publish(json!({"id": "evt_dup", "type": "a.b", "data": {"changed": true}}))
        .await;
    assert_eq!(
        first,
        json!({"id": "evt_dup", "deliveries": 1, "duplicate": false})
    );
    assert_eq!(
        again,
        json!({"id": "evt_dup", "deliveries": 1, "duplicate": true})
    );
    delivery_of(&engine, "evt_dup", |d| d["status"] == "dead_letter").await;

    let (ok, stdout, stderr) = run_cli(&["dead-letters", "list", "--server", &engine.base]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("evt_dup"), "{stdout}");
    let (ok, stdout, stderr) = run_cli(&[
        "dead-letters",
        "replay",
        "--subscription",
        "r",
        "--server",
        &engine.base,
        "--output",
        "json",
    ]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("\"replayed\": 1"), "{stdout}");

    let got = receiver.wait_for("/r", 2, WAIT).await;
    assert_eq!(got[0].header("webhook-id"), got[1].header("webhook-id"));
    assert_eq!(
        got[1].json()["data"],
        json!({}),
        "the duplicate's data was not stored"
    );
    let done = delivery_of(&engine, "evt_dup", |d| d["status"] == "delivered").await;
    assert_eq!(done["attempts"], 2);
    assert_eq!(
        receiver.requests_to("/r").len(),
        2,
        "one event, one delivery"
    );

    // A manual retry of a delivered delivery sends it once more, same id.
    let id = done["id"].as_str().expect("id");
    let (ok, _, stderr) = run_cli(&["deliveries", "retry", id, "--server", &engine.base]);
    assert!(ok, "{stderr}");
    let got = receiver.wait_for("/r", 3, WAIT).await;
    assert_eq!(got[2].header("webhook-id"), id);
    let (ok, _, stderr) = run_cli(&["deliveries", "retry", "msg_nope", "--server", &engine.base]);
    assert!(!ok);
    assert!(stderr.contains("no delivery `msg_nope`"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_lets_attempts_finish_and_leaves_the_rest_for_the_next_start() {
    let receiver = Receiver::start().await;
    receiver.script("/slow", [Reply::Delay(Duration::from_millis(800), 200)]);
    receiver.script("/stuck", [Reply::Hang]);
    let work = Workdir::new();
    work.write_config(&format!(
        "{}shutdown_grace = \"2s\"\n\n{}{}",
        base_config(),
        subscription("slow", &receiver.url("/slow"), "timeout = \"60s\""),
        subscription("stuck", &receiver.url("/stuck"), "timeout = \"60s\""),
    ));
    let mut engine = work.start().await;
    engine
        .publish(json!({"id": "evt_term", "type": "a.b"}))
        .await;
    receiver.wait_for("/slow", 1, WAIT).await;
    receiver.wait_for("/stuck", 1, WAIT).await;
    let status = engine.signal(15);
    assert!(
        status.success(),
        "a graceful stop exits 0: {status:?}\n{}",
        engine.log()
    );
    assert!(
        engine.log().contains("waiting for attempts in flight"),
        "{}",
        engine.log()
    );

    // The slow attempt finished within the grace period; the stuck one runs again.
    let engine = work.start().await;
    receiver.wait_for("/stuck", 2, WAIT).await;
    let deliveries = engine.deliveries_of("evt_term").await;
    let slow = deliveries
        .iter()
        .find(|d| d["subscription_id"] == "slow")
        .expect("slow");
    assert_eq!(slow["status"], "delivered");
    assert_eq!(
        receiver.requests_to("/slow").len(),
        1,
        "the finished attempt is not repeated"
    );
}
