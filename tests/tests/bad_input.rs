//! Bad input gets a clear error, and the engine keeps running: malformed events, oversized
//! bodies, unknown config keys, files that are not components, missing plugins, bad tokens.

use std::time::Duration;

use serde_json::{Value, json};
use wasmhook_tests::{
    Engine, Receiver, SECRET, SLACK, Workdir, assert_refused, base_config, run_cli,
    serve_should_fail,
};

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread")]
async fn malformed_events_get_a_4xx_that_says_why() {
    let work = Workdir::new();
    work.write_config(&format!(
        "{}\n[limits]\nmax_event_bytes = 1024\nmax_event_type_bytes = 16\n",
        base_config()
    ));
    let engine = work.start().await;

    let (status, body) = engine
        .post_raw("/v1/events", b"{\"type\": \"a.b\", \"data\": ".to_vec())
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["code"], "invalid_json");
    assert!(
        body["message"]
            .as_str()
            .expect("message")
            .contains("EOF while parsing"),
        "{body}"
    );

    let (status, body) = engine.post("/v1/events", &json!({"data": {"x": 1}})).await;
    assert_eq!(status, 400);
    assert_eq!(body["code"], "missing_type");
    assert!(
        body["message"]
            .as_str()
            .expect("message")
            .contains("has no `type`"),
        "{body}"
    );

    let (status, body) = engine.post("/v1/events", &json!({"type": "a..b"})).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("invalid_event_type"))
    );
    assert!(
        body["message"]
            .as_str()
            .expect("message")
            .contains("empty segment"),
        "{body}"
    );

    let (status, body) = engine
        .post("/v1/events", &json!({"type": "a", "payload": {}}))
        .await;
    assert_eq!(status, 400);
    assert!(
        body["message"]
            .as_str()
            .expect("message")
            .contains("unknown field `payload`"),
        "{body}"
    );

    let (status, body) = engine
        .post("/v1/events", &json!({"type": "a", "data": [1, 2]}))
        .await;
    assert_eq!((status, body["code"].as_str()), (400, Some("invalid_data")));

    let big = json!({"type": "a", "data": {"blob": "x".repeat(2000)}});
    let (status, body) = engine.post("/v1/events", &big).await;
    assert_eq!(status, 413);
    assert_eq!(body["code"], "body_too_large");
    assert!(
        body["message"]
            .as_str()
            .expect("message")
            .contains("1024-byte limit"),
        "{body}"
    );

    let (status, body) = engine
        .post("/v1/events", &json!({"type": "a.very.long.type.name"}))
        .await;
    assert_refused(status, &body, "invalid_event_type", "16-byte limit");

    let (status, body) = engine.get("/v1/nope").await;
    assert_eq!((status, body["code"].as_str()), (404, Some("not_found")));

    // Still serving after all of that.
    engine.publish(json!({"type": "still.alive"})).await;
}

#[test]
fn an_unknown_config_key_stops_startup_and_names_the_key() {
    let work = Workdir::new();
    let config = work.write_config("[delivery]\nretry_shedule = [\"5s\"]\n");
    let (_, stderr) = serve_should_fail(&config);
    assert!(stderr.contains("unknown field `retry_shedule`"), "{stderr}");
    assert!(
        stderr.contains("wasmhook.toml"),
        "the error names the file: {stderr}"
    );

    let config = work.write_config(&format!(
        "[[subscriptions]]\nid = \"s\"\nurl = \"http://x\"\nevents = [\"*\"]\nsecret = \"{SECRET}\"\nplugins = \"slack\"\n"
    ));
    let (_, stderr) = serve_should_fail(&config);
    assert!(stderr.contains("unknown field `plugins`"), "{stderr}");
}

#[test]
fn an_invalid_subscription_stops_startup_with_the_reason() {
    let work = Workdir::new();
    let config = work.write_config(&format!(
        "[[subscriptions]]\nid = \"s\"\nurl = \"ftp://x\"\nevents = [\"*\"]\nsecret = \"{SECRET}\"\n"
    ));
    let (_, stderr) = serve_should_fail(&config);
    assert!(stderr.contains("subscription `s`"), "{stderr}");
    assert!(
        stderr.contains("must start with http:// or https://"),
        "{stderr}"
    );
    // The SSRF guard holds config-file subscriptions to the same rule as the API.
    let config = work.write_config(&format!(
        "[[subscriptions]]\nid = \"internal\"\nurl = \"http://127.0.0.1:9/hook\"\nevents = [\"*\"]\nsecret = \"{SECRET}\"\n"
    ));
    let (_, stderr) = serve_should_fail(&config);
    assert!(
        stderr.contains("subscription `internal`") && stderr.contains("a loopback address"),
        "{stderr}"
    );
    assert!(stderr.contains("allow_private_networks"), "{stderr}");
    // And a bad payload filter is named too.
    let config = work.write_config(&format!(
        "[[subscriptions]]\nid = \"f\"\nurl = \"https://example.com/\"\nevents = [\"*\"]\nsecret = \"{SECRET}\"\nfilter = \"data.x ==\"\n"
    ));
    let (_, stderr) = serve_should_fail(&config);
    assert!(
        stderr.contains("subscription `f`") && stderr.contains("not a valid CEL expression"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_file_that_is_not_a_component_is_rejected_with_a_reason() {
    let receiver = Receiver::start().await;
    let work = Workdir::new();
    std::fs::write(work.plugins().join("broken.wasm"), b"this is not wasm").expect("write");
    // A core module: valid wasm, but not a component.
    std::fs::write(work.plugins().join("core.wasm"), b"\0asm\x01\0\0\0").expect("write");
    work.install_plugin("slack", SLACK);
    work.write_config(&format!(
        "{}\n[[subscriptions]]\nid = \"ok\"\nurl = \"{}\"\nevents = [\"*\"]\nsecret = \"{SECRET}\"\nplugin = \"slack\"\n",
        base_config(),
        receiver.url("/ok")
    ));
    let engine = work.start().await;
    let (_, plugins) = engine.get("/v1/plugins").await;
    let find = |name: &str| {
        plugins["data"]
            .as_array()
            .expect("list")
            .iter()
            .find(|p| p["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} missing from {plugins}"))
    };
    let broken = find("broken");
    assert!(
        broken["last_error"]
            .as_str()
            .expect("error")
            .contains("does not start with the wasm magic bytes"),
        "{broken}"
    );
    assert!(
        find("core")["last_error"]
            .as_str()
            .expect("error")
            .contains("core wasm module")
    );
    assert_eq!(find("slack")["world_version"], "0.2.0");
    assert_eq!(
        find("slack")["manifest"]["name"],
        "slack",
        "the manifest is listed"
    );
    assert!(
        engine.log().contains("rejected plugin file"),
        "{}",
        engine.log()
    );

    // The good plugin still delivers.
    engine
        .publish(json!({"type": "x.y", "data": {"summary": "fine"}}))
        .await;
    receiver.wait_for("/ok", 1, WAIT).await;

    // The CLI says the same without an engine.
    let broken_path = work.plugins().join("broken.wasm");
    let (ok, _, stderr) = run_cli(&["plugin", "check", broken_path.to_str().expect("utf-8")]);
    assert!(!ok);
    assert!(
        stderr.contains("not a usable adapter") && stderr.contains("magic bytes"),
        "{stderr}"
    );
    let (ok, stdout, _) = run_cli(&["plugin", "check", SLACK]);
    assert!(ok);
    assert!(
        stdout.contains("implements: wasmhook:adapter/adapter@0.2.0"),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_event_for_a_missing_plugin_is_accepted_and_waits_with_a_clear_status() {
    let receiver = Receiver::start().await;
    let work = Workdir::new();
    work.write_config(&format!(
        "{}\n[[subscriptions]]\nid = \"teams\"\nurl = \"{}\"\nevents = [\"*\"]\nsecret = \"{SECRET}\"\nplugin = \"teams\"\n",
        base_config(),
        receiver.url("/teams")
    ));
    let engine = work.start().await;
    assert!(
        engine
            .log()
            .contains("the subscription's plugin is not loaded"),
        "{}",
        engine.log()
    );

    let (status, body) = engine
        .post("/v1/events", &json!({"id": "evt_wait", "type": "a.b"}))
        .await;
    assert_eq!(status, 202);
    let warning = body["warnings"][0].as_str().expect("warning");
    assert!(
        warning.contains("subscription `teams`: plugin `teams` is not loaded (no teams.wasm in"),
        "{body}"
    );
    let delivery = &engine.deliveries_of("evt_wait").await[0];
    let delivery = engine
        .wait_delivery(delivery["id"].as_str().expect("id"), WAIT, |d| {
            !d["last_error"].is_null()
        })
        .await;
    assert_eq!(delivery["status"], "pending");
    assert_eq!(delivery["attempts"], 0, "waiting spends no attempt");
    assert!(
        delivery["last_error"]
            .as_str()
            .expect("error")
            .starts_with("waiting for plugin `teams`: it is not loaded"),
        "{delivery}"
    );
    assert!(receiver.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_token_guards_v1_but_not_healthz() {
    let work = Workdir::new();
    work.write_config(&format!(
        "[server]\napi_tokens = [\"second-operator\", \"ci-tool\"]\n\n{}",
        base_config()
    ));
    let config = work.path().join("wasmhook.toml");
    let engine = Engine::start(&config, &[("WASMHOOK_API_TOKEN", "t0ken")]).await;
    let client = reqwest::Client::new();
    let url = format!("{}/v1/events", engine.base);
    let event = json!({"type": "a.b"});
    let status = |r: reqwest::Response| r.status().as_u16();
    assert_eq!(
        status(client.post(&url).json(&event).send().await.expect("send")),
        401
    );
    assert_eq!(
        status(
            client
                .post(&url)
                .bearer_auth("wrong")
                .json(&event)
                .send()
                .await
                .expect("send")
        ),
        401
    );
    assert_eq!(
        status(
            client
                .post(&url)
                .bearer_auth("t0ken")
                .json(&event)
                .send()
                .await
                .expect("send")
        ),
        202
    );
    // Each of several admin tokens works; a missing or wrong one gets a bare 401.
    for token in ["second-operator", "ci-tool"] {
        let response = client
            .post(&url)
            .bearer_auth(token)
            .json(&event)
            .send()
            .await
            .expect("send");
        assert_eq!(status(response), 202, "{token}");
    }
    let response = client
        .get(format!("{}/v1/subscriptions", engine.base))
        .bearer_auth("ci-too")
        .send()
        .await
        .expect("send");
    assert_eq!(response.status().as_u16(), 401);
    let body: Value = response.json().await.expect("json");
    assert_eq!(
        body,
        json!({"code": "unauthorized", "message": "a valid bearer token is required"})
    );
    // /healthz, /metrics and /openapi.json are open; an unknown path under /v1 is not
    // told apart from a known one.
    for (path, want) in [
        ("/healthz", 200),
        ("/metrics", 200),
        ("/openapi.json", 200),
        ("/v1/no-such-thing", 401),
    ] {
        let got = status(
            client
                .get(format!("{}{path}", engine.base))
                .send()
                .await
                .expect("send"),
        );
        assert_eq!(got, want, "{path}");
    }
    drop(engine);
    // `[server] metrics_require_token` closes /metrics too.
    work.write_config(&format!(
        "[server]\nmetrics_require_token = true\n\n{}",
        base_config()
    ));
    let engine = Engine::start(&config, &[("WASMHOOK_API_TOKEN", "t0ken")]).await;
    let metrics = format!("{}/metrics", engine.base);
    assert_eq!(
        status(client.get(&metrics).send().await.expect("send")),
        401
    );
    let response = client
        .get(&metrics)
        .bearer_auth("t0ken")
        .send()
        .await
        .expect("send");
    assert_eq!(status(response), 200);

    // `wasmhook send` takes the token from the environment or --token.
    let (ok, stdout, stderr) = run_cli(&[
        "send",
        "--type",
        "a.b",
        "--data",
        "{\"k\":1}",
        "--server",
        &engine.base,
        "--token",
        "t0ken",
        "--output",
        "json",
    ]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("\"deliveries\": 0"), "{stdout}");
    let (ok, _, stderr) = run_cli(&["send", "--type", "a.b", "--server", &engine.base]);
    assert!(!ok);
    assert!(stderr.contains("HTTP 401"), "{stderr}");
}
