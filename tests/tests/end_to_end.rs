//! Events in, adapter-shaped and signed requests out: the real binary, real components,
//! a real receiver, and signatures checked by an independent verifier.

use std::time::Duration;

use serde_json::{Value, json};
use wasmhook_tests::{
    PAGERDUTY, PROBE, Receiver, Reply, SECRET, SLACK, Workdir, base_config, verify,
};

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread")]
async fn slack_pagerduty_and_envelope_arrive_signed_and_shaped() {
    let receiver = Receiver::start().await;
    let work = Workdir::new();
    work.install_plugin("slack", SLACK);
    work.install_plugin("pagerduty", PAGERDUTY);
    work.write_config(&format!(
        r##"{base}
[[subscriptions]]
id = "ops-slack"
url = "{slack}"
events = ["host.*"]
secret = "{SECRET}"
plugin = "slack"
settings = {{ channel = "#ops" }}

[[subscriptions]]
id = "oncall"
url = "{pd}"
events = ["host.down"]
secret = "{SECRET}"
plugin = "pagerduty"
headers = {{ x-team = "sre" }}
settings = {{ routing_key = "R0UTING", dedup_fields = "host" }}

[[subscriptions]]
id = "raw"
url = "{raw}"
events = ["*"]
secret = "{SECRET}"
"##,
        base = base_config(),
        slack = receiver.url("/slack"),
        pd = receiver.url("/pd"),
        raw = receiver.url("/raw"),
    ));
    let engine = work.start().await;

    // Sent as raw text so the envelope check below can compare `data` byte for byte.
    let (status, accepted) = engine
        .post_raw(
            "/v1/events",
            br#"{"id": "evt_down_1", "type": "host.down", "data": {"summary": "web-1 is down", "host": "web-1", "severity": "critical"}}"#.to_vec(),
        )
        .await;
    assert_eq!(status, 202);
    assert_eq!(
        accepted,
        json!({"id": "evt_down_1", "deliveries": 3, "duplicate": false})
    );

    let slack = &receiver.wait_for("/slack", 1, WAIT).await[0];
    let pd = &receiver.wait_for("/pd", 1, WAIT).await[0];
    let raw = &receiver.wait_for("/raw", 1, WAIT).await[0];

    for request in [slack, pd, raw] {
        verify(SECRET, request)
            .unwrap_or_else(|e| panic!("{} failed verification: {e}", request.path));
        assert_eq!(request.method, "POST");
        assert!(request.header("webhook-id").starts_with("msg_"));
        assert_eq!(request.header("content-type"), "application/json");
        assert!(request.header("user-agent").starts_with("wasmhook/"));
    }
    // Verification must actually depend on the secret.
    assert!(verify(wasmhook_tests::OTHER_SECRET, slack).is_err());

    let message = slack.json();
    assert_eq!(message["channel"], "#ops");
    assert_eq!(message["text"], "host.down: web-1 is down");
    assert_eq!(message["blocks"][0]["type"], "header");
    assert_eq!(message["blocks"][0]["text"]["text"], "host.down");
    assert_eq!(message["blocks"][1]["text"]["text"], "web-1 is down");
    let fields: Vec<&str> = message["blocks"][2]["fields"]
        .as_array()
        .expect("fields")
        .iter()
        .map(|f| f["text"].as_str().expect("text"))
        .collect();
    assert_eq!(
        fields,
        ["*host*\nweb-1", "*severity*\ncritical"],
        "payload order is kept"
    );

    let alert = pd.json();
    assert_eq!(pd.header("x-team"), "sre");
    assert_eq!(alert["routing_key"], "R0UTING");
    assert_eq!(alert["event_action"], "trigger");
    assert_eq!(alert["dedup_key"], "host:web-1");
    assert_eq!(alert["payload"]["severity"], "critical");
    assert_eq!(alert["payload"]["summary"], "web-1 is down");
    assert_eq!(alert["payload"]["source"], "web-1");

    // The envelope is exact: id, type, timestamp, data, in that order, data byte for byte.
    let envelope: Value = raw.json();
    let timestamp = envelope["timestamp"]
        .as_str()
        .expect("timestamp")
        .to_owned();
    assert!(
        timestamp.ends_with('Z') && timestamp.len() == 20,
        "{timestamp}"
    );
    assert_eq!(
        String::from_utf8(raw.body.to_vec()).expect("utf-8"),
        format!(
            r#"{{"id":"evt_down_1","type":"host.down","timestamp":"{timestamp}","data":{{"summary": "web-1 is down", "host": "web-1", "severity": "critical"}}}}"#
        )
    );

    // An event only the wildcard subscription wants reaches only it.
    engine
        .publish(json!({"type": "cert.expiring", "data": {"cn": "a.example"}}))
        .await;
    let raws = receiver.wait_for("/raw", 2, WAIT).await;
    assert_eq!(raws[1].json()["type"], "cert.expiring");
    assert_eq!(receiver.requests_to("/slack").len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_receiver_that_fails_twice_gets_the_third_attempt() {
    let receiver = Receiver::start().await;
    receiver.script("/flaky", [Reply::Status(500), Reply::Status(503)]);
    let work = Workdir::new();
    work.write_config(&format!(
        "{}\n[[subscriptions]]\nid = \"flaky\"\nurl = \"{}\"\nevents = [\"*\"]\nsecret = \"{SECRET}\"\nmax_attempts = 5\n",
        base_config(),
        receiver.url("/flaky")
    ));
    let engine = work.start().await;
    engine
        .publish(json!({"id": "evt_retry", "type": "a.b"}))
        .await;

    let got = receiver.wait_for("/flaky", 3, WAIT).await;
    let ids: Vec<&str> = got.iter().map(|r| r.header("webhook-id")).collect();
    assert!(
        ids.iter().all(|id| *id == ids[0]),
        "webhook-id must be stable across attempts: {ids:?}"
    );
    for r in &got {
        verify(SECRET, r).expect("every attempt is signed");
    }
    let delivery = engine
        .wait_delivery(ids[0], WAIT, |d| d["status"] == "delivered")
        .await;
    assert_eq!(delivery["attempts"], 3);
    let codes: Vec<&Value> = delivery["attempts_log"]
        .as_array()
        .expect("log")
        .iter()
        .map(|a| &a["status_code"])
        .collect();
    assert_eq!(codes, [&json!(500), &json!(503), &json!(200)]);
    assert_eq!(
        receiver.requests_to("/flaky").len(),
        3,
        "no attempt after success"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_receiver_that_always_fails_ends_in_dead_letters() {
    let receiver = Receiver::start().await;
    receiver.set_default("/down", Reply::Status(500));
    let work = Workdir::new();
    work.write_config(&format!(
        "{}\n[[subscriptions]]\nid = \"down\"\nurl = \"{}\"\nevents = [\"*\"]\nsecret = \"{SECRET}\"\nmax_attempts = 3\n",
        base_config(),
        receiver.url("/down")
    ));
    let engine = work.start().await;
    engine
        .publish(json!({"id": "evt_dead", "type": "a.b"}))
        .await;

    let got = receiver.wait_for("/down", 3, WAIT).await;
    let id = got[0].header("webhook-id").to_owned();
    let delivery = engine
        .wait_delivery(&id, WAIT, |d| d["status"] == "dead_letter")
        .await;
    assert_eq!(delivery["attempts"], 3);
    assert_eq!(delivery["last_error"], "the receiver answered HTTP 500");
    let (_, listed) = engine.get("/v1/deliveries?status=dead_letter").await;
    assert_eq!(listed["data"][0]["id"], json!(id));
    assert_eq!(
        receiver.requests_to("/down").len(),
        3,
        "no attempt beyond max_attempts"
    );
    assert!(
        engine.log().contains("delivery is now a dead letter"),
        "{}",
        engine.log()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn adapters_can_skip_fail_and_override_within_the_rules() {
    let receiver = Receiver::start().await;
    let work = Workdir::new();
    work.install_plugin("probe", PROBE);
    let sub = |id: &str, settings: &str| {
        format!(
            "[[subscriptions]]\nid = \"{id}\"\nurl = \"{}\"\nevents = [\"{id}.*\"]\nsecret = \"{SECRET}\"\nplugin = \"probe\"\nmax_attempts = 2\nsettings = {{ {settings} }}\n",
            receiver.url(&format!("/{id}"))
        )
    };
    work.write_config(&format!(
        "{}\n{}{}{}{}{}",
        base_config(),
        sub("echo", "label = \"blue\", log = \"hello from the probe\""),
        sub("skip", "mode = \"skip\""),
        sub(
            "fail",
            "mode = \"error\", message = \"no route for this event\""
        ),
        sub(
            "moved",
            &format!("url = \"{}\", method = \"PUT\"", receiver.url("/elsewhere"))
        ),
        sub(
            "forge",
            "header_name = \"webhook-signature\", header_value = \"v1,forged\""
        ),
    ));
    let engine = work.start().await;

    // The adapter sees the event and the subscription's context exactly.
    let accepted = engine
        .publish(json!({"id": "evt_echo", "type": "echo.x", "data": {"n": 1}}))
        .await;
    assert_eq!(accepted["deliveries"], 1);
    let echo_request = receiver.wait_for("/echo", 1, WAIT).await.remove(0);
    let echoed = echo_request.json();
    assert_eq!(echoed["event"]["id"], "evt_echo");
    assert_eq!(echoed["event"]["type"], "echo.x");
    assert_eq!(echoed["event"]["data"], json!({"n": 1}));
    assert_eq!(echoed["context"]["subscription_id"], "echo");
    assert_eq!(echoed["context"]["url"], receiver.url("/echo"));
    assert_eq!(
        echoed["context"]["settings"],
        json!([["label", "blue"], ["log", "hello from the probe"]])
    );
    // WIT 0.2.0 also passes the message id, the attempt and the very timestamp the engine
    // signs, so an adapter can sign a receiver's own scheme over them.
    assert_eq!(
        echoed["context"]["message_id"],
        echo_request.header("webhook-id")
    );
    assert_eq!(echoed["context"]["attempt"], 1);
    assert_eq!(
        echoed["context"]["timestamp"].to_string(),
        echo_request.header("webhook-timestamp")
    );

    // Skip is recorded as skipped, not failed, and nothing is sent.
    engine
        .publish(json!({"id": "evt_skip", "type": "skip.x"}))
        .await;
    let skipped = &engine.deliveries_of("evt_skip").await[0];
    let skipped = engine
        .wait_delivery(skipped["id"].as_str().expect("id"), WAIT, |d| {
            d["status"] == "skipped"
        })
        .await;
    assert!(
        skipped["last_error"]
            .as_str()
            .expect("reason")
            .contains("probe skipped skip.x")
    );

    // An adapter error is a failed attempt, retried, then a dead letter naming the plugin.
    engine
        .publish(json!({"id": "evt_fail", "type": "fail.x"}))
        .await;
    let failed = &engine.deliveries_of("evt_fail").await[0];
    let failed = engine
        .wait_delivery(failed["id"].as_str().expect("id"), WAIT, |d| {
            d["status"] == "dead_letter"
        })
        .await;
    assert_eq!(failed["attempts"], 2);
    assert_eq!(
        failed["last_error"],
        "plugin `probe` v1 returned an error: no route for this event"
    );
    assert!(
        failed["attempts_log"][0]["plugin_version"]
            .as_str()
            .expect("version")
            .starts_with("probe v1 sha256:")
    );

    // URL and method overrides are honoured.
    engine.publish(json!({"type": "moved.x"})).await;
    let moved = &receiver.wait_for("/elsewhere", 1, WAIT).await[0];
    assert_eq!(moved.method, "PUT");
    verify(SECRET, moved).expect("signed");

    // An adapter cannot set the signature headers.
    engine
        .publish(json!({"id": "evt_forge", "type": "forge.x"}))
        .await;
    let forged = &engine.deliveries_of("evt_forge").await[0];
    let forged = engine
        .wait_delivery(forged["id"].as_str().expect("id"), WAIT, |d| {
            d["status"] == "dead_letter"
        })
        .await;
    assert!(
        forged["last_error"]
            .as_str()
            .expect("error")
            .contains("header `webhook-signature` is set by the engine"),
        "{forged}"
    );
    assert!(receiver.requests_to("/forge").is_empty());
    assert!(
        engine.log().contains("hello from the probe"),
        "adapter log lines reach the engine log"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn https_receivers_work_and_untrusted_certificates_are_refused() {
    let (receiver, ca_pem) = Receiver::start_tls().await;
    let work = Workdir::new();
    std::fs::write(work.path().join("ca.pem"), &ca_pem).expect("write ca");
    let subs = format!(
        "[[subscriptions]]\nid = \"tls\"\nurl = \"{}\"\nevents = [\"*\"]\nsecret = \"{SECRET}\"\nmax_attempts = 1\n",
        receiver.url("/secure")
    );
    // Without the CA the certificate is not trusted and the attempt fails with a TLS error.
    work.write_config(&format!("{}\n{subs}", base_config()));
    let engine = work.start().await;
    engine
        .publish(json!({"id": "evt_untrusted", "type": "a.b"}))
        .await;
    let delivery = &engine.deliveries_of("evt_untrusted").await[0];
    let delivery = engine
        .wait_delivery(delivery["id"].as_str().expect("id"), WAIT, |d| {
            d["status"] == "dead_letter"
        })
        .await;
    assert!(
        delivery["last_error"]
            .as_str()
            .expect("error")
            .contains("certificate"),
        "{delivery}"
    );
    drop(engine);

    // With `tls_ca_file` it is, and the request arrives signed.
    work.write_config(&format!(
        "{}tls_ca_file = \"ca.pem\"\n\n{subs}",
        base_config()
    ));
    let engine = work.start().await;
    engine
        .publish(json!({"type": "a.b", "data": {"over": "tls"}}))
        .await;
    let got = &receiver.wait_for("/secure", 1, WAIT).await[0];
    verify(SECRET, got).expect("signed");
    assert_eq!(got.json()["data"]["over"], "tls");
}
