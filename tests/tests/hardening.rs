//! Defects found by attacking the engine from outside (issue 13), one test each, against
//! the real binary: each fails on the code before its fix. After every attack the engine
//! must still deliver what it accepted.
//!
//! Over 500 lines on purpose: it is the list of defects, one test each, sharing a few
//! helpers, and reads best as one file beside the table in `docs/security.md`.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use wasmhook_tests::{
    Engine, HOSTILE, Receiver, SECRET, Workdir, assert_refused, base_config, raw,
};

const WAIT: Duration = Duration::from_secs(30);

/// A config with one envelope subscription to `receiver`'s `/hook`.
fn config_to(receiver: &Receiver, extra: &str) -> String {
    format!(
        "{}\n{extra}\n[[subscriptions]]\nid = \"hook\"\nurl = \"{}\"\nevents = [\"*\"]\nsecret = \"{SECRET}\"\n",
        base_config(),
        receiver.url("/hook")
    )
}

/// Publishes one good event and waits for it at the receiver: the engine still works.
async fn still_delivers(engine: &Engine, receiver: &Receiver, id: &str) {
    engine
        .publish(json!({"type": "still.alive", "id": id, "data": {}}))
        .await;
    receiver
        .wait_until(WAIT, "the event after the attack", |r| {
            r.iter().any(|r| r.path == "/hook" && r.json()["id"] == id)
        })
        .await;
}

/// Defect 6: a 63 MB batch of five million tiny events used to be parsed in full (5 s of
/// CPU, 1.3 GB) before its `400`. Now the body cap refuses it, and a batch under the cap
/// stops parsing at event 1,001.
#[tokio::test(flavor = "multi_thread")]
async fn an_oversized_batch_is_refused_without_parsing_it() {
    let receiver = Receiver::start().await;
    let work = Workdir::new();
    work.write_config(&config_to(&receiver, ""));
    let engine = work.start().await;

    // 63 MB of five million tiny events, chunked (no `Content-Length` to refuse it by):
    // the body cap stops the read; the engine answers `413` and closes while the rest is
    // still being sent, so the writer's errors after that are expected.
    let tiny = br#"{"type":"a"},"#;
    let mut chunk = Vec::with_capacity(1 << 20);
    while chunk.len() + tiny.len() <= 1 << 20 {
        chunk.extend_from_slice(tiny);
    }
    let stream = raw::connect(&engine.base).await;
    let (mut read, mut write) = stream.into_split();
    let writer = tokio::spawn(async move {
        let head = "POST /v1/events/batch HTTP/1.1\r\nHost: 127.0.0.1\r\n\
                    Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
        write.write_all(head.as_bytes()).await?;
        write.write_all(b"1\r\n[\r\n").await?;
        for _ in 0..63 {
            write
                .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                .await?;
            write.write_all(&chunk).await?;
            write.write_all(b"\r\n").await?;
        }
        write.write_all(b"0\r\n\r\n").await
    });
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(WAIT, async {
        while !answer.windows(4).any(|w| w == b"\r\n\r\n") || !answer.ends_with(b"}") {
            match read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .expect("an answer while the body was still coming");
    let answer = raw::parse_response(&answer).expect("an HTTP answer");
    assert_eq!(answer.status, 413, "{}", answer.head);
    assert_eq!(answer.json["code"], "body_too_large");
    writer.abort();

    // Under the body cap, but 200,000 events: refused at the first event past 1,000.
    let mut body = String::from("[");
    body.push_str(&r#"{"type":"a"},"#.repeat(200_000));
    body.pop();
    body.push(']');
    let (status, answer) = engine.post_raw("/v1/events/batch", body.into_bytes()).await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (400, Some("batch_too_large")),
        "{answer}"
    );
    still_delivers(&engine, &receiver, "after-batches").await;
}

/// Defect 11: payloads the engine's own adapters cannot parse were accepted. Each now gets
/// a `400` with a stable code, and `"data": null` gets `invalid_data` as documented.
#[tokio::test(flavor = "multi_thread")]
async fn payloads_adapters_cannot_parse_are_refused() {
    let receiver = Receiver::start().await;
    let work = Workdir::new();
    work.write_config(&config_to(&receiver, "[limits]\nmax_event_bytes = 1048576"));
    let engine = work.start().await;

    let deep = format!(
        r#"{{"type":"a","data":{{"x":{}}}}}"#,
        "[".repeat(100_000) + &"]".repeat(100_000)
    );
    let cases: [(&str, Vec<u8>); 4] = [
        ("data_too_deep", deep.into_bytes()),
        (
            "invalid_unicode",
            br#"{"type":"a","data":{"s":"\ud800"}}"#.to_vec(),
        ),
        (
            "invalid_number",
            br#"{"type":"a","data":{"n":1e999999}}"#.to_vec(),
        ),
        ("invalid_data", br#"{"type":"a","data":null}"#.to_vec()),
    ];
    for (code, body) in cases {
        let (status, answer) = engine.post_raw("/v1/events", body).await;
        assert_eq!(
            (status, answer["code"].as_str()),
            (400, Some(code)),
            "{answer}"
        );
        assert!(
            answer["message"]
                .as_str()
                .is_some_and(|m| m.contains("data")),
            "{answer}"
        );
    }
    // The same rules hold inside a batch, naming the event.
    let batch = br#"[{"type":"a"},{"type":"a","data":{"n":-1e400}}]"#.to_vec();
    let (status, answer) = engine.post_raw("/v1/events/batch", batch).await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (400, Some("invalid_number"))
    );
    assert!(
        answer["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("event 1:")),
        "{answer}"
    );
    let (_, list) = engine.get("/v1/deliveries?limit=10").await;
    assert_eq!(list["data"], Value::Array(vec![]), "nothing was stored");
    still_delivers(&engine, &receiver, "after-payloads").await;
}

/// Defect 1: the embedded store's lease was sized at start from the config (twice the
/// timeout plus 30 s), so an attempt under a longer timeout set later through the API
/// outlived it and the same webhook was sent again, while the first was still running.
#[tokio::test(flavor = "multi_thread")]
async fn a_long_attempt_is_never_sent_twice_at_once() {
    let receiver = Receiver::start().await;
    // Before the fix this made the lease 2 × 1 s + 100 ms + 30 s.
    let work = Workdir::new();
    work.write_config(&format!("{}timeout = \"1s\"\n", base_config()));
    let engine = work.start().await;
    let (status, created) = engine
        .post(
            "/v1/subscriptions",
            &json!({"id": "slow", "url": receiver.url("/slow"), "events": ["*"], "timeout": "5m"}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    receiver.script(
        "/slow",
        [wasmhook_tests::Reply::Delay(Duration::from_secs(40), 200)],
    );
    engine
        .publish(json!({"type": "slow.job", "id": "evt_slow", "data": {}}))
        .await;
    let delivery = engine.deliveries_of("evt_slow").await[0]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let done = engine
        .wait_delivery(&delivery, Duration::from_secs(90), |d| {
            d["status"] == "delivered"
        })
        .await;
    let sent = receiver.requests_to("/slow");
    assert_eq!(
        sent.len(),
        1,
        "the same webhook-id was sent {} times: {:?}",
        sent.len(),
        sent.iter()
            .map(|r| r.header("webhook-id"))
            .collect::<Vec<_>>()
    );
    assert_eq!(done["attempts"], 1, "{done}");
}

/// Defect 9: twenty concurrent creates with one id got four `201`s, each with its own
/// secret, and only the last survived. Exactly one create may win; the others get `409`,
/// and the secret that signs is the one the winner was given.
#[tokio::test(flavor = "multi_thread")]
async fn concurrent_creates_with_one_id_have_one_winner() {
    let receiver = Receiver::start().await;
    let work = Workdir::new();
    work.write_config(&base_config());
    let engine = std::sync::Arc::new(work.start().await);
    let creates = (0..20).map(|_| {
        let engine = std::sync::Arc::clone(&engine);
        let url = receiver.url("/race");
        tokio::spawn(async move {
            engine
                .post(
                    "/v1/subscriptions",
                    &json!({"id": "race", "url": url, "events": ["*"]}),
                )
                .await
        })
    });
    let answers: Vec<(u16, Value)> = futures_util::future::join_all(creates)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let winners: Vec<&Value> = answers
        .iter()
        .filter(|(s, _)| *s == 201)
        .map(|(_, b)| b)
        .collect();
    assert_eq!(winners.len(), 1, "{answers:?}");
    assert!(
        answers
            .iter()
            .all(|(s, b)| *s == 201 || (*s == 409 && b["code"] == "subscription_exists")),
        "{answers:?}"
    );
    let secret = winners[0]["secret"].as_str().expect("secret").to_owned();
    engine
        .publish(json!({"type": "race.won", "data": {}}))
        .await;
    let got = receiver.wait_for("/race", 1, WAIT).await;
    wasmhook_tests::verify(&secret, &got[0]).expect("signed with the winner's secret");
}

/// Defect 7: `retry_schedule: ["0ms"]` with `max_attempts: 4294967295` was accepted, and an
/// adapter error tripped no breaker: one event made 19,592 attempts in 10 s. The bounds are
/// refused at create, and an adapter that keeps failing waits out a cooldown.
#[tokio::test(flavor = "multi_thread")]
async fn a_failing_adapter_cannot_spin_the_retry_loop() {
    let receiver = Receiver::start().await;
    let work = Workdir::new();
    work.install_plugin("probe", wasmhook_tests::PROBE);
    work.write_config(&format!(
        "{}max_attempts = 100\nbreaker_failures = 3\nbreaker_cooldown = \"1h\"\n\n\
         [[subscriptions]]\nid = \"broken\"\nurl = \"{}\"\nevents = [\"*\"]\nsecret = \"{SECRET}\"\n\
         plugin = \"probe\"\nsettings = {{ mode = \"error\" }}\n",
        base_config(),
        receiver.url("/broken")
    ));
    let engine = work.start().await;

    for (field, value) in [
        ("retry_schedule", json!(["0ms"])),
        ("max_attempts", json!(4_294_967_295u64)),
        ("retry_schedule", json!(vec!["1s"; 101])),
    ] {
        let mut body = json!({"url": receiver.url("/x"), "events": ["*"]});
        body[field] = value;
        let (status, answer) = engine.post("/v1/subscriptions", &body).await;
        assert_eq!(
            (status, answer["code"].as_str()),
            (400, Some("invalid_subscription")),
            "{field}: {answer}"
        );
        assert!(
            answer["message"]
                .as_str()
                .is_some_and(|m| m.contains(field)),
            "{answer}"
        );
    }

    engine
        .publish(json!({"type": "spin.me", "id": "evt_spin", "data": {}}))
        .await;
    let delivery = engine.deliveries_of("evt_spin").await[0]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    // With 10 ms retries and 100 attempts, the old code ran every attempt within a second
    // or so; now the third failure in a row parks the delivery for the cooldown.
    let parked = engine
        .wait_delivery(&delivery, WAIT, |d| {
            d["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("failed repeatedly"))
        })
        .await;
    assert_eq!(parked["status"], "pending", "{parked}");
    assert_eq!(parked["attempts"], 3, "{parked}");
    assert!(receiver.requests_to("/broken").is_empty());
}

/// CPU seconds the engine's adapter threads (`wasmhook-guest` and `wasmhook-probation`)
/// have used, user and system, from `/proc/<pid>/task/*/stat`.
fn guest_cpu_seconds(pid: u32) -> f64 {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("tasks");
    let mut ticks = 0.0;
    for task in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state …`: the name may hold spaces; utime and stime are the 12th
        // and 13th fields after it, in clock ticks (100 per second).
        let Some((head, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        if !head.contains("(wasmhook-guest") && !head.contains("(wasmhook-probat") {
            continue;
        }
        let fields: Vec<f64> = rest
            .split_whitespace()
            .map(|f| f.parse().unwrap_or(0.0))
            .collect();
        ticks += fields[11] + fields[12];
    }
    ticks / 100.0
}

/// Defect 4: a subscription could set `cpu_budget: "999999999d"` over the operator's
/// plugin budget, and its spinning calls kept running after it was deleted. Now the
/// plugin's budget is a ceiling, and deleting a subscription interrupts its calls.
#[tokio::test(flavor = "multi_thread")]
async fn a_subscription_cannot_raise_its_budget_and_deleting_it_stops_its_calls() {
    let receiver = Receiver::start().await;
    let work = Workdir::new();
    work.install_plugin("hostile", HOSTILE);
    // A long operator budget, so that only the deletion can end the spin in time.
    work.write_config(&config_to(
        &receiver,
        "[plugins.overrides.hostile]\ncpu_budget = \"5m\"\n",
    ));
    let engine = work.start().await;
    let spinner = |budget: Option<&str>| {
        let mut body = json!({
            "id": "spinner", "url": receiver.url("/spin"), "events": ["spin.*"],
            "plugin": "hostile", "settings": {"mode": "spin"}, "max_attempts": 1,
        });
        if let Some(budget) = budget {
            body["cpu_budget"] = json!(budget);
        }
        body
    };
    let (status, answer) = engine
        .post("/v1/subscriptions", &spinner(Some("999999999d")))
        .await;
    assert_refused(status, &answer, "invalid_subscription", "cpu_budget");
    let (status, answer) = engine.post("/v1/subscriptions", &spinner(None)).await;
    assert_eq!(status, 201, "{answer}");

    let before = guest_cpu_seconds(engine.pid());
    engine
        .publish(json!({"type": "spin.now", "id": "evt_spin", "data": {}}))
        .await;
    // Readiness: the guest is spinning once the adapter threads have burnt a second of CPU.
    let deadline = tokio::time::Instant::now() + WAIT;
    while guest_cpu_seconds(engine.pid()) - before < 1.0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the adapter never ran"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let delivery = engine.deliveries_of("evt_spin").await[0]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let (status, answer) = engine
        .request("DELETE", "/v1/subscriptions/spinner", None)
        .await;
    assert_eq!(status, 204, "{answer}");
    // The delivery is cancelled, and the running call is interrupted long before the
    // five-minute budget would end it: the adapter threads go quiet (a spinning guest,
    // sliced and yielding, uses about half a second of CPU in every second here; idle
    // threads use none).
    let done = engine
        .wait_delivery(&delivery, WAIT, |d| d["status"] != "pending")
        .await;
    assert_eq!(done["status"], "cancelled", "{done}");
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let start = guest_cpu_seconds(engine.pid());
        tokio::time::sleep(Duration::from_secs(1)).await;
        if guest_cpu_seconds(engine.pid()) - start < 0.1 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the deleted subscription's adapter call kept spinning"
        );
    }
    still_delivers(&engine, &receiver, "evt_after_spin").await;
}

/// Defect 10: a URL with credentials or a `?token=` was shown in reads and logged, header
/// values were redacted by name only, and a config parse error printed the offending line.
#[tokio::test(flavor = "multi_thread")]
async fn secrets_in_urls_headers_and_config_errors_stay_hidden() {
    let receiver = Receiver::start().await;
    let work = Workdir::new();
    work.write_config(&base_config());
    let engine = work.start().await;
    let url = receiver
        .url("/hook?token=t0k3n-in-query&v=2")
        .replace("http://", "http://user:pa55word@");
    let (status, created) = engine
        .post(
            "/v1/subscriptions",
            &json!({
                "id": "leaky", "url": url, "events": ["*"],
                "headers": {"X-Auth": "h3ader-secret", "X-Trace": "visible"},
                "secret_settings": ["X-Auth"],
            }),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let (_, one) = engine.get("/v1/subscriptions/leaky").await;
    let (_, all) = engine.get("/v1/subscriptions").await;
    for shown in [created.to_string(), one.to_string(), all.to_string()] {
        for secret in ["t0k3n-in-query", "pa55word", "h3ader-secret"] {
            assert!(!shown.contains(secret), "{secret} shown in {shown}");
        }
    }
    assert!(
        one["url"].as_str().is_some_and(|u| u.contains("token=***")),
        "{one}"
    );
    assert_eq!(one["headers"]["X-Trace"], "visible");
    // The receiver still gets the real URL and header.
    engine.publish(json!({"type": "a.b", "data": {}})).await;
    let got = receiver
        .wait_for("/hook?token=t0k3n-in-query&v=2", 1, WAIT)
        .await;
    assert_eq!(got[0].header("x-auth"), "h3ader-secret");
    let log = engine.log();
    for secret in ["t0k3n-in-query", "pa55word", "h3ader-secret"] {
        assert!(!log.contains(secret), "{secret} in the log:\n{log}");
    }

    let bad = Workdir::new();
    let config = bad.write_config("[server]\napi_tokens = \"sup3r-s3cret-t0ken\"\n");
    let (status, stderr) = wasmhook_tests::serve_should_fail(&config);
    assert!(!status.success());
    assert!(stderr.contains("line 2"), "{stderr}");
    assert!(!stderr.contains("sup3r-s3cret-t0ken"), "{stderr}");
}

/// Defect 12, the outbound half: local-use NAT64 (`64:ff9b:1::/48`) was not blocked, and
/// hop-by-hop headers passed through from subscriptions and adapters.
#[tokio::test(flavor = "multi_thread")]
async fn nat64_and_hop_by_hop_headers_are_refused() {
    let receiver = Receiver::start().await;
    let work = Workdir::new();
    work.install_plugin("probe", wasmhook_tests::PROBE);
    work.write_config(&format!(
        "[delivery]\nallowed_cidrs = [\"127.0.0.0/8\"]\nretry_schedule = [\"1h\"]\n\n\
         [[subscriptions]]\nid = \"hop\"\nurl = \"{}\"\nevents = [\"*\"]\nsecret = \"{SECRET}\"\n\
         plugin = \"probe\"\nsettings = {{ header_name = \"Keep-Alive\", header_value = \"timeout=5\" }}\n",
        receiver.url("/hop")
    ));
    let engine = work.start().await;
    let (status, answer) = engine
        .post(
            "/v1/subscriptions",
            &json!({"url": "http://[64:ff9b:1::a00:1]/hook", "events": ["*"]}),
        )
        .await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (400, Some("blocked_destination")),
        "{answer}"
    );
    for name in ["Keep-Alive", "Proxy-Connection", "Expect"] {
        let (status, answer) = engine
            .post(
                "/v1/subscriptions",
                &json!({"url": receiver.url("/x"), "events": ["*"], "headers": {name: "1"}}),
            )
            .await;
        assert_eq!(status, 400, "{name}: {answer}");
    }
    engine
        .publish(json!({"type": "a.b", "id": "evt_hop", "data": {}}))
        .await;
    let delivery = engine.deliveries_of("evt_hop").await[0]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let failed = engine
        .wait_delivery(&delivery, WAIT, |d| d["attempts"] == 1)
        .await;
    assert!(
        failed["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("Keep-Alive")),
        "{failed}"
    );
    assert!(receiver.requests_to("/hop").is_empty());
}

/// Events per load run, and their pace.
const LOAD_EVENTS: usize = 300;
/// Rounds of each run, interleaved; each figure is the best of its rounds, so one stall of
/// the shared machine (a few hundred milliseconds, seen in runs with no adapter at all)
/// cannot decide the test. Five, not three: a p99 of 300 events is its third-worst
/// sample, and with three rounds a full suite once saw every hostile round's publish p99
/// above 10.5 ms beside a calm best of 5.3 ms (alone, six runs gave 9.2 to 11.0 ms).
const LOAD_ROUNDS: usize = 5;
const LOAD_EVERY: Duration = Duration::from_millis(25);
/// Adapter memory for all instances together in the isolation runs; a memory bomb may
/// reach its 64 MiB per-instance cap in two instances at once, no more.
const ADAPTER_BUDGET: u64 = 128 << 20;

/// What one load run measured.
#[derive(Debug)]
struct Load {
    publish_p99: Duration,
    envelope_p99: Duration,
    slack_p99: Duration,
    peak_rss: u64,
}

/// The best of each figure over several rounds (the largest peak RSS, to stay strict).
fn best(rounds: &[Load]) -> Load {
    let min = |f: fn(&Load) -> Duration| rounds.iter().map(f).min().expect("rounds");
    Load {
        publish_p99: min(|l| l.publish_p99),
        envelope_p99: min(|l| l.envelope_p99),
        slack_p99: min(|l| l.slack_p99),
        peak_rss: rounds.iter().map(|l| l.peak_rss).max().expect("rounds"),
    }
}

fn p99(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[(samples.len() * 99 / 100).min(samples.len() - 1)]
}

fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<u64>().ok())
        .expect("VmHWM")
        * 1024
}

/// Publishes `LOAD_EVENTS` events at a steady pace to a healthy envelope subscription and
/// a healthy Slack one, plus, with `hostile`, a spinning adapter and a memory bomb on
/// every event; measures publish and publish-to-receipt latency on default settings.
async fn load_run(receiver: &Receiver, run: &str, hostile: bool) -> Load {
    let work = Workdir::new();
    work.install_plugin("slack", wasmhook_tests::SLACK);
    work.install_plugin("hostile", HOSTILE);
    let sub = |id: &str, path: &str, extra: &str| {
        format!(
            "[[subscriptions]]\nid = \"{id}\"\nurl = \"{}\"\nevents = [\"load.*\"]\nsecret = \"{SECRET}\"\n{extra}\n",
            receiver.url(path)
        )
    };
    let mut config = format!(
        "[delivery]\nallow_private_networks = true\nretry_schedule = [\"1s\"]\n\n\
         [plugins]\ntotal_memory_bytes = {ADAPTER_BUDGET}\n\n{}{}",
        sub("envelope", &format!("/{run}/envelope"), ""),
        sub(
            "slack",
            &format!("/{run}/slack"),
            "plugin = \"slack\"\nsettings = { channel = \"#load\" }"
        ),
    );
    if hostile {
        config.push_str(&sub(
            "spin",
            "/hostile",
            "plugin = \"hostile\"\nsettings = { mode = \"spin\" }",
        ));
        config.push_str(&sub(
            "bomb",
            "/hostile",
            "plugin = \"hostile\"\nsettings = { mode = \"membomb\" }",
        ));
    }
    work.write_config(&config);
    let engine = work.start().await;
    let mut sent = std::collections::HashMap::new();
    let mut publish = Vec::with_capacity(LOAD_EVENTS);
    let mut pace = tokio::time::interval(LOAD_EVERY);
    for n in 0..LOAD_EVENTS {
        pace.tick().await;
        let id = format!("evt_{run}_{n}");
        let started = std::time::Instant::now();
        engine
            .publish(json!({"type": "load.event", "id": id, "data": {"summary": id}}))
            .await;
        publish.push(started.elapsed());
        sent.insert(id, started);
    }
    let latency = |path: &str, id_of: &dyn Fn(&wasmhook_tests::Received) -> String| {
        let got = receiver.requests_to(path);
        got.iter()
            .map(|r| r.at.duration_since(sent[&id_of(r)]))
            .collect::<Vec<_>>()
    };
    receiver
        .wait_for(&format!("/{run}/envelope"), LOAD_EVENTS, WAIT)
        .await;
    receiver
        .wait_for(&format!("/{run}/slack"), LOAD_EVENTS, WAIT)
        .await;
    let envelope = latency(&format!("/{run}/envelope"), &|r| {
        r.json()["id"].as_str().expect("id").to_owned()
    });
    let slack = latency(&format!("/{run}/slack"), &|r| {
        let text = r.json()["text"].as_str().expect("text").to_owned();
        text.rsplit(": ").next().expect("id").to_owned()
    });
    Load {
        publish_p99: p99(publish),
        envelope_p99: p99(envelope),
        slack_p99: p99(slack),
        peak_rss: peak_rss(engine.pid()),
    }
}

/// Defect 4 and acceptance 2: a spinning adapter and a memory bomb on every event must not
/// slow ingest or healthy deliveries (with and without an adapter) beyond twice the same
/// run without them, and adapter memory stays within its total budget. Latencies under
/// 5 ms count as 5 ms, so scheduler noise on a shared 2-core machine cannot fail the test;
/// each p99 is the best of `LOAD_ROUNDS` interleaved rounds.
#[tokio::test(flavor = "multi_thread")]
async fn hostile_adapters_leave_ingest_and_healthy_deliveries_alone() {
    const FLOOR: Duration = Duration::from_millis(5);
    let receiver = Receiver::start().await;
    let mut calm_rounds = Vec::new();
    let mut hostile_rounds = Vec::new();
    for round in 0..LOAD_ROUNDS {
        calm_rounds.push(load_run(&receiver, &format!("calm{round}"), false).await);
        hostile_rounds.push(load_run(&receiver, &format!("hostile{round}"), true).await);
    }
    let (calm, hostile) = (best(&calm_rounds), best(&hostile_rounds));
    eprintln!("without hostile adapters: {calm:?}\nwith them: {hostile:?}");
    for (what, with, without) in [
        ("publish", hostile.publish_p99, calm.publish_p99),
        ("envelope delivery", hostile.envelope_p99, calm.envelope_p99),
        ("Slack delivery", hostile.slack_p99, calm.slack_p99),
    ] {
        assert!(
            with <= without.max(FLOOR) * 2,
            "{what} p99 {with:?} with hostile adapters, {without:?} without"
        );
    }
    assert!(
        hostile.peak_rss <= calm.peak_rss + ADAPTER_BUDGET + (32 << 20),
        "peak RSS {} MiB with the memory bomb, {} MiB without, budget {} MiB",
        hostile.peak_rss >> 20,
        calm.peak_rss >> 20,
        ADAPTER_BUDGET >> 20
    );
}
