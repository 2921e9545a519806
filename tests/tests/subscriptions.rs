//! Managed subscriptions through the API on the real binary: create with a generated
//! secret, reads that hide secrets, changes without a restart, secret rotation with two
//! signatures, the test endpoint, delete, config-managed subscriptions, and the SSRF guard
//! at create time.

use std::time::Duration;

use serde_json::Value;
use serde_json::json;
use wasmhook_tests::{Receiver, SECRET, Workdir, assert_refused, base_config, verify};

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread")]
async fn subscriptions_are_managed_through_the_api_without_restart() {
    let receiver = Receiver::start().await;
    let work = Workdir::new();
    work.write_config(&format!(
        "{}\n[[subscriptions]]\nid = \"from-config\"\nurl = \"{}\"\nevents = [\"config.*\"]\nsecret = \"{SECRET}\"\n",
        base_config(),
        receiver.url("/config")
    ));
    let engine = work.start().await;

    // Create: the secret is generated and shown once.
    let (status, created) = engine
        .post(
            "/v1/subscriptions",
            &json!({
                "name": "ops",
                "url": receiver.url("/api"),
                "events": ["host.*"],
                "settings": {"channel": "#ops", "routing_key": "R0UT1NG-KEY-123", "region": "eu"},
                "secret_settings": ["region"],
                "headers": {"Authorization": "Bearer s3cr3t-header", "X-Team": "ops"},
            }),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().expect("id").to_owned();
    assert!(id.starts_with("sub_"), "{id}");
    let secret = created["secret"].as_str().expect("secret").to_owned();
    assert!(secret.starts_with("whsec_"), "{secret}");
    assert_eq!(created["source"], "api");

    // Reads never show a secret: not the signing secret, not secret settings or headers.
    let (status, one) = engine.get(&format!("/v1/subscriptions/{id}")).await;
    assert_eq!(status, 200, "{one}");
    assert_eq!(one["settings"]["channel"], "#ops");
    assert_eq!(
        one["settings"]["routing_key"], "***",
        "named like a credential"
    );
    assert_eq!(one["settings"]["region"], "***", "declared secret");
    assert_eq!(one["headers"]["Authorization"], "***");
    assert_eq!(one["headers"]["X-Team"], "ops");
    let (_, all) = engine.get("/v1/subscriptions").await;
    assert_eq!(all["data"].as_array().expect("list").len(), 2, "{all}");
    for text in [one.to_string(), all.to_string()] {
        for leaked in ["whsec_", "R0UT1NG-KEY-123", "s3cr3t-header"] {
            assert!(!text.contains(leaked), "{leaked} in {text}");
        }
    }

    // Live at once: an event reaches the new subscription, signed with the returned secret.
    let answer = engine.publish(json!({"type": "host.up"})).await;
    assert_eq!(answer["deliveries"], 1, "{answer}");
    let got = receiver.wait_for("/api", 1, WAIT).await;
    verify(&secret, &got[0]).expect("signed with the created secret");
    assert_eq!(got[0].header("x-team"), "ops");
    assert_eq!(got[0].header("authorization"), "Bearer s3cr3t-header");

    // Rotation: both secrets sign during the grace period.
    let (status, rotated) = engine
        .post(
            &format!("/v1/subscriptions/{id}/rotate-secret"),
            &json!({"grace": "1h"}),
        )
        .await;
    assert_eq!(status, 200, "{rotated}");
    let new_secret = rotated["secret"].as_str().expect("secret").to_owned();
    assert_ne!(new_secret, secret);
    assert_eq!(
        rotated["signing_secrets"].as_array().expect("list").len(),
        2
    );
    engine.publish(json!({"type": "host.down"})).await;
    let got = receiver.wait_for("/api", 2, WAIT).await;
    verify(&new_secret, &got[1]).expect("the new secret signs");
    verify(&secret, &got[1]).expect("the old secret still signs during the grace");
    assert_eq!(got[1].header("webhook-signature").matches("v1,").count(), 2);

    // Change without a restart: new patterns route at once; unknown fields are named.
    let (status, patched) = engine
        .request(
            "PATCH",
            &format!("/v1/subscriptions/{id}"),
            Some(&json!({"events": ["db.*"], "name": null})),
        )
        .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["events"], json!(["db.*"]));
    assert!(patched.get("name").is_none(), "null removes: {patched}");
    let answer = engine.publish(json!({"type": "host.up"})).await;
    assert_eq!(answer["deliveries"], 0, "{answer}");
    let answer = engine.publish(json!({"type": "db.slow"})).await;
    assert_eq!(answer["deliveries"], 1, "{answer}");
    receiver.wait_for("/api", 3, WAIT).await;
    let (status, error) = engine
        .request(
            "PATCH",
            &format!("/v1/subscriptions/{id}"),
            Some(&json!({"evnts": ["x"]})),
        )
        .await;
    assert_eq!(status, 400, "{error}");
    assert_eq!(error["code"], "invalid_subscription");
    assert!(
        error["message"]
            .as_str()
            .expect("message")
            .contains("`evnts`"),
        "{error}"
    );
    // Past the document's `int32` (found by the contract test's fuzzing).
    let (status, error) = engine
        .request(
            "PATCH",
            &format!("/v1/subscriptions/{id}"),
            Some(&json!({"instance_reuse": 2_147_483_648_u64})),
        )
        .await;
    assert_refused(status, &error, "invalid_subscription", "`instance_reuse`");
    let (status, error) = engine
        .request(
            "PATCH",
            &format!("/v1/subscriptions/{id}"),
            Some(&json!({"secret": SECRET})),
        )
        .await;
    assert_eq!(
        (status, error["code"].as_str()),
        (400, Some("immutable_field"))
    );

    // The test endpoint sends a signed wasmhook.test event and reports the attempt.
    let (status, tested) = engine
        .post(&format!("/v1/subscriptions/{id}/test"), &json!({}))
        .await;
    assert_eq!(status, 200, "{tested}");
    assert_eq!(tested["status"], "delivered", "{tested}");
    assert_eq!(tested["attempts_log"][0]["status_code"], 200, "{tested}");
    let got = receiver.wait_for("/api", 4, WAIT).await;
    assert_eq!(got[3].json()["type"], "wasmhook.test");
    verify(&new_secret, &got[3]).expect("signed");

    // Config subscriptions are listed and marked, and only `enabled` changes through the API.
    let (_, config_sub) = engine.get("/v1/subscriptions/from-config").await;
    assert_eq!(config_sub["source"], "config", "{config_sub}");
    let (status, error) = engine
        .request(
            "PATCH",
            "/v1/subscriptions/from-config",
            Some(&json!({"url": receiver.url("/elsewhere")})),
        )
        .await;
    assert_eq!(
        (status, error["code"].as_str()),
        (409, Some("managed_by_config"))
    );
    let (status, disabled) = engine
        .request(
            "PATCH",
            "/v1/subscriptions/from-config",
            Some(&json!({"enabled": false})),
        )
        .await;
    assert_eq!(status, 200, "{disabled}");
    let answer = engine.publish(json!({"type": "config.x"})).await;
    assert_eq!(
        answer["deliveries"], 0,
        "a disabled subscription gets nothing: {answer}"
    );

    // Delete: gone from reads and from routing.
    let (status, _) = engine
        .request("DELETE", &format!("/v1/subscriptions/{id}"), None)
        .await;
    assert_eq!(status, 204);
    let (status, error) = engine.get(&format!("/v1/subscriptions/{id}")).await;
    assert_eq!(
        (status, error["code"].as_str()),
        (404, Some("subscription_not_found"))
    );
    let answer = engine.publish(json!({"type": "db.slow"})).await;
    assert_eq!(answer["deliveries"], 0, "{answer}");

    // Nothing secret reached the log either.
    let log = engine.log();
    for leaked in [
        secret.as_str(),
        new_secret.as_str(),
        "R0UT1NG-KEY-123",
        "s3cr3t-header",
    ] {
        assert!(!log.contains(leaked), "{leaked} in the log");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn create_refuses_internal_and_invalid_destinations() {
    let work = Workdir::new();
    // The default policy: no private networks.
    work.write_config("");
    let engine = work.start().await;
    for (url, reason) in [
        ("http://127.0.0.1:9/hook", "a loopback address"),
        ("http://localhost:9/hook", "a loopback address"),
        ("http://2130706433/hook", "a loopback address"),
        ("http://10.1.2.3/hook", "a private address"),
        (
            "http://169.254.169.254/latest/meta-data",
            "a cloud metadata address",
        ),
        ("http://100.64.0.1/", "a carrier-grade NAT address"),
        ("http://[::1]/", "a loopback address"),
        ("http://[::ffff:192.168.1.1]/", "a private address"),
        ("http://[fd00:ec2::254]/", "metadata"),
        ("http://[fc00::1]/", "unique local"),
        ("http://0.0.0.0/", "an unspecified address"),
        ("http://224.0.0.1/", "a multicast address"),
    ] {
        let (status, error) = engine
            .post("/v1/subscriptions", &json!({"url": url, "events": ["*"]}))
            .await;
        assert_eq!(status, 400, "{url}: {error}");
        assert_eq!(error["code"], "blocked_destination", "{url}: {error}");
        let message = error["message"].as_str().expect("message");
        assert!(message.contains(reason), "{url}: {message}");
        assert!(message.contains("allow_private_networks"), "{message}");
    }
    for (body, needle) in [
        (
            json!({"url": "ftp://example.com/", "events": ["*"]}),
            "http://",
        ),
        (
            json!({"url": "https://example.com/", "events": []}),
            "`events`",
        ),
        (
            json!({"url": "https://example.com/", "events": ["a..b"]}),
            "`events`",
        ),
        (
            json!({"url": "https://example.com/", "events": ["*"], "secret": "abc"}),
            "whsec_",
        ),
        (
            json!({"url": "https://example.com/", "events": ["*"], "plugin": "../x"}),
            "plugin",
        ),
        (
            json!({"url": "https://example.com/", "events": ["*"], "colour": 1}),
            "`colour`",
        ),
    ] {
        let (status, error) = engine.post("/v1/subscriptions", &body).await;
        assert_eq!(status, 400, "{body}: {error}");
        assert!(
            error["message"].as_str().expect("message").contains(needle),
            "{body}: {error}"
        );
    }
    let (status, error) = engine
        .post(
            "/v1/subscriptions",
            &json!({"url": "https://example.com/", "events": ["*"], "settings": {"big": "x".repeat(20_000)}}),
        )
        .await;
    assert_eq!(
        (status, error["code"].as_str()),
        (413, Some("settings_too_large")),
        "{error}"
    );
    let (_, list) = engine.get("/v1/subscriptions").await;
    assert_eq!(list["data"], json!([]), "nothing refused was stored");
}

#[tokio::test(flavor = "multi_thread")]
async fn payload_filters_choose_events_and_refuse_bad_expressions() {
    let receiver = Receiver::start().await;
    let work = Workdir::new();
    work.write_config(&base_config());
    let engine = work.start().await;

    for (filter, needle) in [
        ("data.severity ==", "not a valid CEL expression"),
        ("dat.severity == 'x'", "`dat`"),
        (
            "data.a.all(x, data.b.exists(y, x == y))",
            "inside another one's body",
        ),
    ] {
        let (status, error) = engine
            .post(
                "/v1/subscriptions",
                &json!({"url": receiver.url("/crit"), "events": ["*"], "filter": filter}),
            )
            .await;
        assert_eq!(status, 400, "{filter}: {error}");
        assert_eq!(error["code"], "invalid_subscription");
        let message = error["message"].as_str().expect("message");
        assert!(
            message.starts_with("`filter`") && message.contains(needle),
            "{filter}: {message}"
        );
    }

    let (status, created) = engine
        .post(
            "/v1/subscriptions",
            &json!({
                "id": "crit",
                "url": receiver.url("/crit"),
                "events": ["alert.*"],
                "filter": "data.severity == \"critical\" && data.region.startsWith(\"eu\")",
            }),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    for (data, wanted) in [
        (json!({"severity": "critical", "region": "eu-west-1"}), 1),
        (json!({"severity": "critical", "region": "us-east-1"}), 0),
        (json!({"severity": "warning", "region": "eu-west-1"}), 0),
        (json!({"region": "eu-west-1"}), 0),
    ] {
        let answer = engine
            .publish(json!({"type": "alert.raised", "data": data}))
            .await;
        assert_eq!(answer["deliveries"], wanted, "{data}: {answer}");
    }
    let got = receiver.wait_for("/crit", 1, WAIT).await;
    assert_eq!(got[0].json()["data"]["region"], "eu-west-1");

    // Dropping the filter takes effect at once.
    let (status, patched) = engine
        .request(
            "PATCH",
            "/v1/subscriptions/crit",
            Some(&json!({"filter": null})),
        )
        .await;
    assert_eq!(status, 200, "{patched}");
    let answer = engine
        .publish(json!({"type": "alert.raised", "data": {"severity": "info"}}))
        .await;
    assert_eq!(answer["deliveries"], 1, "{answer}");
    receiver.wait_for("/crit", 2, WAIT).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rate_limit_delays_deliveries_and_drops_none() {
    const EVENTS: usize = 30;
    const RATE: usize = 10;
    let receiver = Receiver::start().await;
    let work = Workdir::new();
    work.write_config(&base_config());
    let engine = work.start().await;
    let (status, created) = engine
        .post(
            "/v1/subscriptions",
            &json!({"id": "slow", "url": receiver.url("/slow"), "events": ["burst.*"], "rate_limit": RATE}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["rate_limit"], RATE);
    let events: Vec<Value> = (0..EVENTS)
        .map(|i| json!({"type": "burst.tick", "data": {"i": i}}))
        .collect();
    let (status, answer) = engine.post("/v1/events/batch", &Value::Array(events)).await;
    assert_eq!(status, 202, "{answer}");

    // Every delivery arrives, once, each on its first attempt (waiting spends none).
    let got = receiver.wait_for("/slow", EVENTS, WAIT).await;
    let ids: std::collections::HashSet<&str> = got.iter().map(|r| r.header("webhook-id")).collect();
    assert_eq!(ids.len(), EVENTS);
    // The receiver can see a request before the engine records its answer.
    for request in &got {
        let delivery = engine
            .wait_delivery(request.header("webhook-id"), WAIT, |d| {
                d["status"] == "delivered"
            })
            .await;
        assert_eq!(delivery["attempts"], 1, "{delivery}");
    }
    // And no faster than the limit: after a burst of RATE, one every 1/RATE s. This is a
    // lower bound, which a slow machine only makes easier to meet.
    let first = got.iter().map(|r| r.at).min().expect("first");
    let last = got.iter().map(|r| r.at).max().expect("last");
    let floor = Duration::from_millis(((EVENTS - RATE) * 1000 / RATE) as u64 * 9 / 10);
    assert!(
        last - first >= floor,
        "{EVENTS} deliveries at {RATE}/s took {:?}, under {floor:?}",
        last - first
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn after_the_rotation_grace_only_the_new_secret_signs() {
    let receiver = Receiver::start().await;
    let work = Workdir::new();
    work.write_config(&base_config());
    let engine = work.start().await;
    let (status, created) = engine
        .post(
            "/v1/subscriptions",
            &json!({"id": "rot", "url": receiver.url("/rot"), "events": ["*"], "secret": SECRET}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let (status, rotated) = engine
        .post(
            "/v1/subscriptions/rot/rotate-secret",
            &json!({"grace": "1s"}),
        )
        .await;
    assert_eq!(status, 200, "{rotated}");
    let new_secret = rotated["secret"].as_str().expect("secret").to_owned();

    // Publish until a delivery signed after the grace arrives (one signature): it verifies
    // with the new secret only.
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut seen = 0;
    loop {
        engine.publish(json!({"type": "rot.tick"})).await;
        seen += 1;
        let got = receiver.wait_for("/rot", seen, WAIT).await;
        let last = &got[seen - 1];
        verify(&new_secret, last).expect("the new secret always signs");
        let signatures = last.header("webhook-signature").matches("v1,").count();
        if signatures == 1 {
            assert!(
                verify(SECRET, last).is_err(),
                "the old secret must not verify after the grace"
            );
            break;
        }
        assert_eq!(signatures, 2, "during the grace both sign");
        verify(SECRET, last).expect("the old secret signs during the grace");
        assert!(
            tokio::time::Instant::now() < deadline,
            "the grace never ended"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, view) = engine.get("/v1/subscriptions/rot").await;
    assert!(!view.to_string().contains("whsec_"), "{view}");
}
