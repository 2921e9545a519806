//! The SSRF guard on the real binary: receivers on internal addresses are refused by
//! default and reached once allowlisted; the connector judges every address a name
//! resolves to at connect time (so a subscription whose host is internal by the time it is
//! attempted fails with a clear error, whatever it was when created); an adapter's URL
//! override goes through the same guard; redirects are never followed.
//!
//! Create-time refusals of `localhost`, `[::1]`, `[::ffff:…]`, decimal IPs and the
//! metadata addresses are in `subscriptions.rs`.

use serde_json::{Value, json};
use wasmhook_tests::{Engine, PROBE, Receiver, Reply, Workdir};

/// Creates a subscription and asserts it was accepted.
async fn create(engine: &Engine, body: Value) {
    let (status, answer) = engine.post("/v1/subscriptions", &body).await;
    assert_eq!(status, 201, "{body} -> {answer}");
}

fn error_of(attempt: &Value) -> &str {
    attempt["error"].as_str().unwrap_or("")
}

#[tokio::test(flavor = "multi_thread")]
async fn internal_destinations_are_refused_at_create_and_at_every_connect() {
    let receiver = Receiver::start().await;
    let port = receiver.addr().port();
    receiver.set_default(
        "/redirect",
        Reply::WithHeaders(302, vec![("location", receiver.url("/internal"))]),
    );
    let work = Workdir::new();
    work.install_plugin("probe", PROBE);

    // 1. The default policy refuses a receiver on 127.0.0.1.
    work.write_config("");
    let engine = work.start().await;
    let (status, error) = engine
        .post(
            "/v1/subscriptions",
            &json!({"url": receiver.url("/direct"), "events": ["*"]}),
        )
        .await;
    assert_eq!(status, 400, "{error}");
    assert_eq!(error["code"], "blocked_destination");
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.contains("127.0.0.1") && m.contains("a loopback address")),
        "{error}"
    );
    drop(engine);

    // 2. Allowlisted, it is reached: directly, by a name and by a decimal address.
    work.write_config(
        "[delivery]\nallowed_cidrs = [\"127.0.0.0/8\", \"::1/128\"]\nretry_schedule = [\"1h\"]\n",
    );
    let engine = work.start().await;
    for (id, url) in [
        ("direct", receiver.url("/direct")),
        ("by-name", format!("http://localhost:{port}/by-name")),
        ("decimal", format!("http://2130706433:{port}/decimal")),
    ] {
        create(&engine, json!({"id": id, "url": url, "events": ["none"]})).await;
        let attempt = engine.test_ping(id).await;
        assert_eq!(attempt["status_code"], 200, "{id}: {attempt}");
    }
    assert_eq!(receiver.requests_to("/direct").len(), 1);
    assert_eq!(receiver.requests_to("/by-name").len(), 1);
    assert_eq!(receiver.requests_to("/decimal").len(), 1);

    // An adapter's URL override meets the same guard at connect time: internal addresses
    // outside the allowlist are refused, and nothing reaches them.
    for (id, target, reason) in [
        (
            "mapped",
            format!("http://[::ffff:127.0.0.1]:{port}/evil"),
            "a loopback address",
        ),
        (
            "metadata",
            "http://169.254.169.254/latest/meta-data".to_owned(),
            "a cloud metadata address",
        ),
        (
            "metadata-v6",
            "http://[fd00:ec2::254]/latest/meta-data".to_owned(),
            "a cloud metadata address",
        ),
    ] {
        create(
            &engine,
            json!({"id": id, "url": receiver.url("/direct"), "events": ["none"],
                   "plugin": "probe", "settings": {"url": target}}),
        )
        .await;
        let attempt = engine.test_ping(id).await;
        assert_eq!(attempt["status_code"], Value::Null, "{id}: {attempt}");
        let error = error_of(&attempt);
        assert!(
            error.contains("refused to connect") && error.contains(reason),
            "{id}: {attempt}"
        );
        assert!(
            error.contains("allowed_cidrs"),
            "says how to allow it: {error}"
        );
    }
    assert!(receiver.requests_to("/evil").is_empty());
    assert_eq!(
        receiver.requests_to("/direct").len(),
        1,
        "no override fell back to the subscription URL"
    );

    // A redirect is not followed, even to an allowed address: the attempt records the 302.
    create(
        &engine,
        json!({"id": "redirect", "url": receiver.url("/redirect"), "events": ["none"]}),
    )
    .await;
    let attempt = engine.test_ping("redirect").await;
    assert_eq!(attempt["status_code"], 302, "{attempt}");
    assert_eq!(receiver.requests_to("/redirect").len(), 1);
    assert!(
        receiver.requests_to("/internal").is_empty(),
        "the redirect was followed"
    );
    drop(engine);

    // 3. The policy is tightened: the stored subscriptions now point at internal addresses.
    // Every attempt is refused at connect time, naming the host, the address and why, and
    // the engine keeps running.
    work.write_config("[delivery]\nretry_schedule = [\"1h\"]\n");
    let engine = work.start().await;
    for (id, host) in [
        ("direct", "127.0.0.1"),
        ("by-name", "localhost"),
        ("decimal", "2130706433"),
    ] {
        let attempt = engine.test_ping(id).await;
        let error = error_of(&attempt);
        assert!(
            error.contains(&format!("refused to connect to {host} "))
                && error.contains("a loopback address"),
            "{id}: {attempt}"
        );
    }
    assert_eq!(receiver.requests_to("/direct").len(), 1);
    assert_eq!(receiver.requests_to("/by-name").len(), 1);
    assert_eq!(receiver.requests_to("/decimal").len(), 1);
    for url in [
        format!("http://[::1]:{port}/"),
        format!("http://[::ffff:127.0.0.1]:{port}/"),
        "http://169.254.169.254/".to_owned(),
        format!("http://2130706433:{port}/"),
        format!("http://localhost:{port}/"),
    ] {
        let (status, error) = engine
            .post("/v1/subscriptions", &json!({"url": url, "events": ["*"]}))
            .await;
        assert_eq!(
            (status, error["code"].as_str()),
            (400, Some("blocked_destination")),
            "{url}: {error}"
        );
    }
    let (status, _) = engine.get("/healthz").await;
    assert_eq!(status, 200);
    // The test pings that were refused wait for a retry; none is lost.
    let (_, pending) = engine
        .get("/v1/deliveries?subscription_id=direct&status=pending")
        .await;
    assert!(!pending["data"].as_array().expect("list").is_empty());
}
