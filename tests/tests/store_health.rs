//! `/healthz` tells the truth about the store: when it cannot write, the answer is `503`
//! with the reason, not `200`. The store is made to fail for real: the engine runs with a
//! small file-size limit (`ulimit -f`) and `SIGXFSZ` ignored, so its writes fail with
//! `EFBIG` once the database files reach the limit.

use std::time::Duration;

use serde_json::json;
use wasmhook_tests::{Engine, Workdir, base_config};

#[tokio::test(flavor = "multi_thread")]
async fn healthz_answers_503_while_the_store_cannot_write() {
    let work = Workdir::new();
    let config = work.write_config(&base_config());
    // 2 MiB per file (ulimit -f counts 512-byte blocks).
    let engine = Engine::start_under(&config, &[], Some("ulimit -f 4096; trap '' XFSZ")).await;
    let (status, body) = engine.get("/healthz").await;
    assert_eq!(status, 200, "{body}");

    // Fill the store until a write fails.
    let payload = "x".repeat(64 << 10);
    let mut refused = None;
    for i in 0..1000 {
        let (status, body) = engine
            .post(
                "/v1/events",
                &json!({"id": format!("evt_{i}"), "type": "a.b", "data": {"fill": payload}}),
            )
            .await;
        if status != 202 {
            refused = Some((status, body));
            break;
        }
    }
    let (status, body) = refused.expect("the store refused a write under a 2 MiB file limit");
    assert_eq!(
        (status, body["code"].as_str()),
        (503, Some("store_unavailable")),
        "{body}"
    );

    // /healthz sees it. A few small writes may still fit in what is left, so wait for it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let body = loop {
        let (status, body) = engine.get("/healthz").await;
        if status == 503 {
            break body;
        }
        assert_eq!(status, 200, "{body}");
        assert!(
            tokio::time::Instant::now() < deadline,
            "/healthz kept answering 200 while the store refused writes"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(body["code"], "store_unwritable", "{body}");
    let message = body["message"].as_str().expect("message");
    assert!(message.contains("the store cannot write"), "{message}");
    assert!(
        message.contains("full") || message.contains("I/O"),
        "{message}"
    );
}
