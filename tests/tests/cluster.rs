//! Several real `wasmhook` processes sharing one PostgreSQL database (the server comes from
//! `WASMHOOK_TEST_DATABASE_URL`, which `scripts/test` sets after starting a throwaway
//! cluster; each test creates a database of its own in it):
//! - three nodes take events, one is killed with SIGKILL mid-stream, and every accepted
//!   event still reaches the right receiver, with duplicates bounded by what the dead node
//!   had in flight;
//! - a subscription created through one node is used by another, and `/v1/plugins` shows
//!   each node's plugin hashes.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use wasmhook_tests::postgres::{connect, database};
use wasmhook_tests::{Engine, Receiver, Reply, SECRET, SLACK, Workdir};

const WAIT: Duration = Duration::from_secs(60);
/// Attempts in flight per node.
const CONCURRENCY: usize = 16;

/// The config of one node.
fn node_config(url: &str, receiver: &Receiver) -> String {
    format!(
        "[storage]\nbackend = \"postgres\"\nurl = \"{url}\"\nlease = \"2s\"\nheartbeat = \"500ms\"\n\
         encryption_key_files = [\"storage.key\"]\n\
         [delivery]\nallow_private_networks = true\nretry_schedule = [\"100ms\"]\nmax_attempts = 20\n\
         concurrency = {CONCURRENCY}\n\
         [[subscriptions]]\nid = \"a\"\nurl = \"{}\"\nevents = [\"a.*\"]\nsecret = \"{SECRET}\"\n\
         [[subscriptions]]\nid = \"b\"\nurl = \"{}\"\nevents = [\"b.*\"]\nsecret = \"{SECRET}\"\n",
        receiver.url("/a"),
        receiver.url("/b"),
    )
}

async fn start_nodes(url: &str, receiver: &Receiver, n: usize) -> (Vec<Workdir>, Vec<Engine>) {
    let mut dirs = Vec::new();
    let mut nodes = Vec::new();
    for _ in 0..n {
        let work = Workdir::new();
        work.write_storage_key();
        work.write_config(&node_config(url, receiver));
        nodes.push(work.start().await);
        dirs.push(work);
    }
    (dirs, nodes)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_killed_mid_stream_loses_no_accepted_event() {
    const EVENTS: usize = 3000;
    let Some(url) = database().await else { return };
    let receiver = Receiver::start().await;
    // A slowish receiver keeps attempts in flight on every node, so the kill catches some.
    for path in ["/a", "/b"] {
        receiver.set_default(path, Reply::Delay(Duration::from_millis(20), 200));
    }
    let (_dirs, mut nodes) = start_nodes(&url, &receiver, 3).await;
    let bases: Vec<String> = nodes.iter().map(|n| n.base.clone()).collect();

    // Publish through all three nodes, round robin, eight producers at once. A producer
    // whose node is gone sends the same event (same id: idempotent) to the next node.
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let accepted_before_kill = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut producers = Vec::new();
    for _ in 0..8 {
        let (bases, next) = (bases.clone(), std::sync::Arc::clone(&next));
        let counter = std::sync::Arc::clone(&accepted_before_kill);
        producers.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut accepted = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= EVENTS {
                    return accepted;
                }
                let kind = if i % 2 == 0 { "a.tick" } else { "b.tick" };
                let event = json!({"id": format!("evt-{i}"), "type": kind, "data": {"i": i}});
                let mut sent = false;
                for k in 0..bases.len() {
                    let base = &bases[(i + k) % bases.len()];
                    let answer = http
                        .post(format!("{base}/v1/events"))
                        .json(&event)
                        .send()
                        .await;
                    if answer.is_ok_and(|r| r.status() == 202) {
                        sent = true;
                        break;
                    }
                }
                assert!(sent, "no node accepted event {i}");
                counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                accepted.push((format!("evt-{i}"), kind));
            }
        }));
    }
    // Kill node 1 once a third of the events are in, while it delivers.
    while accepted_before_kill.load(std::sync::atomic::Ordering::Relaxed) < EVENTS / 3 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let status = nodes[1].signal(9);
    assert!(!status.success(), "node 1 was killed: {status:?}");
    let mut accepted: Vec<(String, &str)> = Vec::new();
    for p in producers {
        accepted.extend(p.await.expect("producer"));
    }
    assert_eq!(accepted.len(), EVENTS);

    // Every accepted event arrives at the receiver of its type: the survivors take over the
    // dead node's leases when they end.
    let wanted: HashSet<(String, String)> = accepted
        .iter()
        .map(|(id, kind)| (id.clone(), format!("/{}", &kind[..1])))
        .collect();
    // A request's (event id, receiver path).
    let key = |r: &wasmhook_tests::Received| {
        (
            r.json()["id"].as_str().unwrap_or("").to_owned(),
            r.path.clone(),
        )
    };
    receiver
        .wait_until(WAIT, "every accepted event delivered", |requests| {
            wanted.is_subset(&requests.iter().map(key).collect())
        })
        .await;
    let requests = receiver.requests();
    for r in &requests {
        let body = r.json();
        let kind = body["type"].as_str().expect("type");
        assert_eq!(
            r.path,
            format!("/{}", &kind[..1]),
            "delivered to the wrong receiver"
        );
    }
    // Duplicates: only what node 1 had in flight (attempts running, and records not yet
    // written) when it died can be sent twice.
    let mut counts: HashMap<(String, String), usize> = HashMap::new();
    for k in requests.iter().map(key) {
        *counts.entry(k).or_default() += 1;
    }
    let duplicates: usize = counts.values().map(|n| n - 1).sum();
    eprintln!(
        "{} requests for {} deliveries: {duplicates} duplicates",
        requests.len(),
        wanted.len()
    );
    assert!(
        duplicates <= 3 * CONCURRENCY,
        "{duplicates} duplicates, more than node 1 could have had in flight"
    );
    // The survivors still answer, and agree the dead node is gone.
    let (status, _) = nodes[0].get("/healthz").await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_subscription_created_on_one_node_is_used_by_another() {
    let Some(url) = database().await else { return };
    let receiver = Receiver::start().await;
    let (dirs, nodes) = start_nodes(&url, &receiver, 2).await;
    let (a, b) = (&nodes[0], &nodes[1]);

    let (status, created) = a
        .post(
            "/v1/subscriptions",
            &json!({"id": "prop", "url": receiver.url("/prop"), "events": ["prop.*"], "secret": SECRET}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let created_at = Instant::now();
    // Node B routes to it as soon as it has heard of the change (LISTEN/NOTIFY, or the
    // 500 ms poll); publish through B until it does.
    let deadline = created_at + Duration::from_secs(10);
    loop {
        let answer = b.publish(json!({"type": "prop.made"})).await;
        if answer["deliveries"] == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node B never routed to the new subscription"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    eprintln!(
        "node B used the subscription {:?} after node A created it",
        created_at.elapsed()
    );
    receiver.wait_for("/prop", 1, WAIT).await;

    // A change and a delete propagate the same way.
    let (status, _) = a
        .request(
            "PATCH",
            "/v1/subscriptions/prop",
            Some(&json!({"events": ["other.*"]})),
        )
        .await;
    assert_eq!(status, 200);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let answer = b.publish(json!({"type": "prop.made"})).await;
        if answer["deliveries"] == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "node B kept the old patterns");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // /v1/plugins shows both nodes and their plugins; they disagree once only A has Slack.
    dirs[0].install_plugin("slack", SLACK);
    let deadline = Instant::now() + Duration::from_secs(20);
    let plugins: Value = loop {
        let (_, plugins) = b.get("/v1/plugins").await;
        let nodes = plugins["nodes"].as_array().cloned().unwrap_or_default();
        let has_slack = nodes.iter().any(|n| {
            n["plugins"]["slack"]
                .as_str()
                .is_some_and(|h| h.len() == 64)
        });
        if nodes.len() == 2 && has_slack {
            break plugins;
        }
        assert!(Instant::now() < deadline, "never saw both nodes: {plugins}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(plugins["nodes_agree"], false, "{plugins}");
    assert_eq!(
        plugins["nodes"]
            .as_array()
            .expect("nodes")
            .iter()
            .filter(|n| n["this_node"] == true)
            .count(),
        1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn migrate_store_moves_an_embedded_store_into_postgres() {
    let Some(url) = database().await else { return };
    let receiver = Receiver::start().await;
    receiver.script(
        "/m",
        [Reply::Status(500), Reply::Status(500), Reply::Status(500)],
    );
    let work = Workdir::new();
    let config =
        work.write_config("[delivery]\nallow_private_networks = true\nretry_schedule = [\"1h\"]\n");
    let engine = work.start().await;
    let (status, created) = engine
        .post(
            "/v1/subscriptions",
            &json!({"id": "api-sub", "url": receiver.url("/m"), "events": ["m.*"], "secret": SECRET}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    for i in 0..4 {
        engine
            .publish(json!({"id": format!("m-{i}"), "type": "m.x"}))
            .await;
    }
    receiver.wait_for("/m", 4, WAIT).await;
    // Three failed and wait an hour; one was delivered.
    let deadline = Instant::now() + WAIT;
    loop {
        let (_, page) = engine.get("/v1/deliveries?status=pending").await;
        let (_, done) = engine.get("/v1/deliveries?status=delivered").await;
        if page["data"].as_array().map_or(0, Vec::len) == 3
            && done["data"].as_array().map_or(0, Vec::len) == 1
        {
            break;
        }
        assert!(Instant::now() < deadline, "{page}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(engine);

    let (ok, stdout, stderr) = wasmhook_tests::run_cli(&[
        "migrate-store",
        "--config",
        config.to_str().expect("path"),
        "--to",
        &url,
    ]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("1 subscriptions, 4 events, 4 deliveries and 4 attempts"),
        "{stdout}"
    );
    // No key was configured: the copy is sealed with the key the embedded store made,
    // and the next step says every node needs it.
    let generated = work.path().join("data/encryption.key");
    assert!(
        stdout.contains("data/encryption.key to each node"),
        "{stdout}"
    );
    let client = connect(&url).await;
    let spec: String = client
        .query_one("SELECT spec FROM subscriptions WHERE id = 'api-sub'", &[])
        .await
        .expect("row")
        .get(0);
    assert!(spec.starts_with("whsealed:v1:"), "{spec}");
    assert!(!spec.contains(SECRET));
    // Into a database that already has events: refused.
    let (ok, _, stderr) = wasmhook_tests::run_cli(&[
        "migrate-store",
        "--config",
        config.to_str().expect("path"),
        "--to",
        &url,
    ]);
    assert!(!ok);
    assert!(stderr.contains("already holds 4 events"), "{stderr}");

    // A PostgreSQL node carries on where the embedded engine stopped.
    let node_dir = Workdir::new();
    std::fs::copy(&generated, node_dir.path().join("storage.key")).expect("copy the key");
    node_dir.write_config(&format!(
        "[storage]\nbackend = \"postgres\"\nurl = \"{url}\"\nencryption_key_files = [\"storage.key\"]\n\
         [delivery]\nallow_private_networks = true\nretry_schedule = [\"1h\"]\n"
    ));
    let node = node_dir.start().await;
    let (_, sub) = node.get("/v1/subscriptions/api-sub").await;
    assert_eq!(sub["source"], "api", "{sub}");
    let (_, pending) = node.get("/v1/deliveries?status=pending").await;
    let pending = pending["data"].as_array().expect("list").clone();
    assert_eq!(pending.len(), 3);
    let id = pending[0]["id"].as_str().expect("id");
    let (_, detail) = node.get(&format!("/v1/deliveries/{id}")).await;
    assert_eq!(detail["attempts_log"][0]["status_code"], 500, "{detail}");
    let (status, _) = node
        .post(&format!("/v1/deliveries/{id}/retry"), &json!({}))
        .await;
    assert_eq!(status, 202);
    node.wait_delivery(id, WAIT, |d| d["status"] == "delivered")
        .await;
    let got = receiver.requests_to("/m");
    let last = got.last().expect("request");
    assert_eq!(
        last.header("webhook-id"),
        id,
        "the same webhook-id after the move"
    );
    wasmhook_tests::verify(SECRET, last).expect("signed with the migrated secret");
}
