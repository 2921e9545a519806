//! The API contract, checked by machine against the running engine:
//! - the OpenAPI document served at `/openapi.json` is the one checked in at
//!   `docs/openapi.json` and the one `wasmhook openapi` prints;
//! - real deliveries (the standard envelope and an adapter's request) validate against the
//!   document's `webhooks` schemas, headers included;
//! - schemathesis (from PyPI, installed by `scripts/setup-contract-tests`) generates API
//!   tests from the document and runs them against the engine: every status code, content
//!   type and response body must match the document, schema-violating input must be
//!   refused, auth must not be ignorable, and nothing may answer 5xx.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use wasmhook_tests::openapi::check_webhook;
use wasmhook_tests::{Receiver, SECRET, SLACK, Workdir, run_cli, verify};

const WAIT: Duration = Duration::from_secs(30);
const TOKEN: &str = "contract-test-token";

/// The schemathesis CLI in the venv `scripts/setup-contract-tests` creates.
fn schemathesis() -> std::path::PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("contract/.venv/bin/schemathesis");
    assert!(
        path.is_file(),
        "{} is missing: run scripts/setup-contract-tests (scripts/test runs it for you)",
        path.display()
    );
    path
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_and_the_deliveries_keep_to_the_openapi_document() {
    let receiver = Receiver::start().await;
    let work = Workdir::new();
    work.install_plugin("slack", SLACK);
    work.write_config(&format!(
        "[server]\napi_token = \"{TOKEN}\"\n\
         [delivery]\nallow_private_networks = true\nretry_schedule = [\"10ms\"]\ntimeout = \"2s\"\n\
         [[subscriptions]]\nid = \"envelope\"\nurl = \"{}\"\nevents = [\"host.*\"]\nsecret = \"{SECRET}\"\n\
         [[subscriptions]]\nid = \"slack\"\nurl = \"{}\"\nevents = [\"host.*\"]\nsecret = \"{SECRET}\"\n\
         plugin = \"slack\"\nsettings = {{ channel = \"#ops\" }}\n",
        receiver.url("/envelope"),
        receiver.url("/slack"),
    ));
    let mut engine = work.start().await;
    engine.authorize(TOKEN);

    // One document: served, printed by the CLI, and checked in.
    let served: Value = reqwest::get(format!("{}/openapi.json", engine.base))
        .await
        .expect("GET /openapi.json")
        .json()
        .await
        .expect("JSON");
    assert_eq!(served["openapi"], "3.1.0");
    let (ok, printed, err) = run_cli(&["openapi"]);
    assert!(ok, "{err}");
    let printed: Value = serde_json::from_str(&printed).expect("JSON");
    assert_eq!(
        served, printed,
        "`wasmhook openapi` prints the served document"
    );
    let checked_in = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.json");
    let checked_in: Value =
        serde_json::from_str(&std::fs::read_to_string(&checked_in).expect("docs/openapi.json"))
            .expect("JSON");
    assert!(
        served == checked_in,
        "docs/openapi.json is out of date: run `cargo run -p wasmhook -- openapi > docs/openapi.json`"
    );

    // Real deliveries validate against the `webhooks` schemas.
    for i in 0..3 {
        engine
            .publish(json!({"type": "host.enrolled", "data": {"host": format!("web-{i}"), "n": i}}))
            .await;
    }
    engine
        .publish(json!({"id": "producer-id-42", "type": "host.down", "data": {}}))
        .await;
    for request in receiver.wait_for("/envelope", 4, WAIT).await {
        verify(SECRET, &request).expect("signed");
        check_webhook(&served, "event", &request).unwrap_or_else(|e| panic!("{e}"));
    }
    for request in receiver.wait_for("/slack", 4, WAIT).await {
        verify(SECRET, &request).expect("signed");
        check_webhook(&served, "adapted-event", &request).unwrap_or_else(|e| panic!("{e}"));
    }
    // The metrics count them: events, finished deliveries, attempt and adapter latency,
    // queue depth and circuits.
    let metrics = reqwest::get(format!("{}/metrics", engine.base))
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("text");
    for needle in [
        "wasmhook_events_ingested_total 4",
        "wasmhook_deliveries_finished_total{outcome=\"delivered\"}",
        "wasmhook_attempt_duration_seconds_bucket",
        "wasmhook_plugin_invocations_total{plugin=\"slack\",result=\"ok\"} 4",
        "wasmhook_plugin_call_duration_seconds_count{plugin=\"slack\"} 4",
        "wasmhook_queue_depth{state=\"due\"}",
        "wasmhook_queue_depth{state=\"scheduled\"}",
        "wasmhook_circuit_state{endpoint=",
        "wasmhook_store_commit_duration_seconds_bucket{le=\"0.0005\"}",
    ] {
        assert!(metrics.contains(needle), "{needle} missing:\n{metrics}");
    }
    // The embedded store's write batches: each of the four events was committed before
    // its POST was answered, one after the other.
    let commits: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("wasmhook_store_commit_duration_seconds_count "))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no commit count:\n{metrics}"));
    assert!(commits >= 4, "{commits} commits:\n{metrics}");

    // The checks above can fail: a body or a header the document forbids is caught.
    let genuine = receiver.requests_to("/envelope")[0].clone();
    let mut forged = genuine.clone();
    forged.body = bytes::Bytes::from_static(br#"{"id":"evt_1","type":"a..b","data":{}}"#);
    assert!(check_webhook(&served, "event", &forged).is_err());
    let mut forged = genuine.clone();
    forged
        .headers
        .insert("webhook-signature", "v0,abc".parse().expect("header"));
    assert!(check_webhook(&served, "event", &forged).is_err());

    // schemathesis: API tests generated from the document, against this engine.
    let scratch = tempfile::tempdir().expect("tempdir");
    let mut command = std::process::Command::new(schemathesis());
    command
        .current_dir(scratch.path())
        .arg("--no-color")
        .arg("--config-file")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("contract/schemathesis.toml"))
        .args(["run", &format!("{}/openapi.json", engine.base)])
        .args(["--header", &format!("Authorization: Bearer {TOKEN}")])
        .args(["--max-examples", "30"]);
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("join")
        .expect("run schemathesis");
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "schemathesis found contract violations:\n{report}\n{}\nengine log:\n{}",
        String::from_utf8_lossy(&output.stderr),
        engine.log()
    );
    // Every operation was tested (schemathesis leaves out the document's own URL, which it
    // loaded the document from, and the config turns off `GET /v1/stream`, an endless
    // answer that tests/tests/stream.rs covers).
    let operations: usize = served["paths"]
        .as_object()
        .expect("paths")
        .values()
        .map(|item| item.as_object().map_or(0, |methods| methods.len()))
        .sum();
    let tested: usize = report
        .lines()
        .find_map(|line| line.trim().strip_prefix("Tested: "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    assert!(
        tested >= operations - 2,
        "only {tested} of {operations} operations were tested:\n{report}"
    );

    // The engine is still healthy and still delivering after the fuzzing.
    let before = receiver.requests_to("/envelope").len();
    engine.publish(json!({"type": "host.up"})).await;
    receiver.wait_for("/envelope", before + 1, WAIT).await;
}
