//! Managed subscriptions through the API on the real binary: create with a generated
//! secret, reads that hide secrets, changes without a restart, secret rotation with two
//! signatures, the test endpoint, delete, config-managed subscriptions, and the SSRF guard
//! at create time.

use std::time::Duration;

use serde_json::json;
use wasmhook_tests::{Receiver, SECRET, Workdir, base_config, verify};

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
