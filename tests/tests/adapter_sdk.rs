//! WIT 0.2.0 through the real engine: a 0.1.0 adapter built from its old source beside its
//! 0.2.0 port, settings checked against manifests (config load, API create and patch),
//! and the host HMAC import: GitHub-style signatures that verify with a plain HMAC before
//! and during a rotation, while a hostile adapter hunting for the key finds nothing.

use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};
use wasmhook_tests::{
    Engine, GITHUB_SIGNATURE, HOSTILE, PAGERDUTY, PROBE, Received, Receiver, SECRET, SLACK,
    SLACK_V0_1_0, Workdir, assert_refused, base_config, hmac_sha256_hex, serve_should_fail, verify,
};

const WAIT: Duration = Duration::from_secs(60);

fn subscription(id: &str, url: &str, extra: &str) -> String {
    format!(
        "[[subscriptions]]\nid = \"{id}\"\nurl = \"{url}\"\nevents = [\"*\"]\nsecret = \"{SECRET}\"\n{extra}\n"
    )
}

/// The 0.1.0 Slack adapter, built from the source it shipped with, and its 0.2.0 port run
/// side by side in one engine and send the same message.
#[tokio::test(flavor = "multi_thread")]
async fn a_0_1_0_adapter_runs_beside_its_0_2_0_port() {
    let receiver = Receiver::start().await;
    let work = Workdir::new();
    work.install_plugin("slack-old", SLACK_V0_1_0);
    work.install_plugin("slack", SLACK);
    let settings = "settings = { channel = \"#ops\", fields = \"host,region\", title = \"Alert\" }";
    work.write_config(&format!(
        "{}\n{}{}",
        base_config(),
        subscription(
            "old",
            &receiver.url("/old"),
            &format!("plugin = \"slack-old\"\n{settings}")
        ),
        subscription(
            "new",
            &receiver.url("/new"),
            &format!("plugin = \"slack\"\n{settings}")
        ),
    ));
    let engine = work.start().await;

    let (_, plugins) = engine.get("/v1/plugins").await;
    let world = |name: &str| {
        plugins["data"]
            .as_array()
            .expect("list")
            .iter()
            .find(|p| p["name"] == name)
            .map(|p| (p["world_version"].clone(), p["manifest"].clone()))
            .unwrap_or_else(|| panic!("{name} in {plugins}"))
    };
    assert_eq!(world("slack-old"), (json!("0.1.0"), Value::Null));
    let (version, manifest) = world("slack");
    assert_eq!(version, "0.2.0");
    assert_eq!(manifest["name"], "slack", "{manifest}");

    engine
        .publish(json!({"id": "evt_both", "type": "host.down",
            "data": {"summary": "web-1 stopped answering", "host": "web-1", "region": "eu"}}))
        .await;
    let old = receiver.wait_for("/old", 1, WAIT).await.remove(0);
    let new = receiver.wait_for("/new", 1, WAIT).await.remove(0);
    for request in [&old, &new] {
        verify(SECRET, request).expect("signed");
    }
    assert_eq!(old.json()["blocks"][0]["text"]["text"], "Alert");
    assert_eq!(
        old.body, new.body,
        "the port sends byte for byte what the 0.1.0 adapter sends"
    );
}

/// A subscription whose settings do not fit its adapter's manifest never reaches a
/// delivery: the config is refused at load and the API refuses create and patch, each
/// naming the setting and the adapter.
#[tokio::test(flavor = "multi_thread")]
async fn settings_are_checked_against_the_manifest_at_config_load_and_by_the_api() {
    let receiver = Receiver::start().await;
    let work = Workdir::new();
    work.install_plugin("pagerduty", PAGERDUTY);
    work.install_plugin("slack", SLACK);
    work.install_plugin("probe", PROBE);

    // Config load: a missing required setting and a misspelled one stop the start.
    for (settings, plugin, expected) in [
        (
            "{ dedup_fields = \"host\" }",
            "pagerduty",
            "subscription `bad`: plugin `pagerduty` (pagerduty 0.2.0) refuses these settings: \
             setting `routing_key` is required and missing (The integration key of the PagerDuty service)",
        ),
        (
            "{ chanel = \"#ops\" }",
            "slack",
            "subscription `bad`: plugin `slack` (slack 0.2.0) refuses these settings: \
             `chanel` is not one of its settings; did you mean `channel`?",
        ),
    ] {
        let config = work.write_config(&format!(
            "{}\n{}",
            base_config(),
            subscription(
                "bad",
                &receiver.url("/bad"),
                &format!("plugin = \"{plugin}\"\nsettings = {settings}")
            )
        ));
        let (_, stderr) = serve_should_fail(&config);
        assert!(stderr.contains(expected), "{stderr}");
    }

    work.install_plugin("swap", PROBE);
    work.write_config(&format!(
        "{}\n{}{}",
        base_config(),
        subscription(
            "ok",
            &receiver.url("/ok"),
            "plugin = \"slack\"\nsettings = { channel = \"#ops\" }"
        ),
        subscription(
            "swapped",
            &receiver.url("/swapped"),
            "plugin = \"swap\"\nmax_attempts = 1\nsettings = { label = \"x\" }"
        ),
    ));
    let engine = work.start().await;

    // A plugin reloaded with a manifest the subscription no longer fits: the attempt fails
    // with the reason, without running the adapter.
    let tmp = work.plugins().join(".swap.wasm.partial");
    std::fs::copy(PAGERDUTY, &tmp).expect("copy");
    std::fs::rename(&tmp, work.plugins().join("swap.wasm")).expect("rename");
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (_, plugins) = engine.get("/v1/plugins").await;
        let swapped = plugins["data"]
            .as_array()
            .expect("list")
            .iter()
            .any(|p| p["name"] == "swap" && p["manifest"]["name"] == "pagerduty");
        if swapped {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{plugins}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (_, answer) = engine
        .post("/v1/subscriptions/swapped/test", &json!({}))
        .await;
    assert_eq!(
        answer["last_error"],
        "plugin `swap` v2 (pagerduty 0.2.0) refuses this subscription's settings: \
         `label` is not one of its settings; it takes `routing_key`, `resolve_on`, \
         `acknowledge_on`, `skip_on`, `dedup_fields`, `severity_field`, `default_severity`, \
         `source`; setting `routing_key` is required and missing \
         (The integration key of the PagerDuty service)",
        "{answer}"
    );
    assert!(receiver.requests_to("/swapped").is_empty());
    let create = |plugin: &str, settings: Value| json!({"url": receiver.url("/api"), "events": ["*"], "plugin": plugin, "settings": settings});

    // API create.
    let (status, body) = engine
        .post(
            "/v1/subscriptions",
            &create("pagerduty", json!({"dedup_fields": "host"})),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("invalid_settings")),
        "{body}"
    );
    let message = body["message"].as_str().expect("message");
    assert!(
        message.contains("plugin `pagerduty` (pagerduty 0.2.0)")
            && message.contains("setting `routing_key` is required and missing"),
        "{message}"
    );
    let (status, body) = engine
        .post(
            "/v1/subscriptions",
            &create("slack", json!({"chanel": "#ops"})),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"]
            .as_str()
            .expect("message")
            .contains("`chanel` is not one of its settings; did you mean `channel`?"),
        "{body}"
    );
    let (status, body) = engine
        .post(
            "/v1/subscriptions",
            &create(
                "pagerduty",
                json!({"routing_key": "R0UT", "default_severity": "error", "skip_on": "a.*"}),
            ),
        )
        .await;
    assert_eq!(status, 201, "a valid subscription is created: {body}");
    let pd = body["id"].as_str().expect("id").to_owned();

    // API patch: replacing the settings without the required one, or with a typo.
    let (status, body) = engine
        .request(
            "PATCH",
            &format!("/v1/subscriptions/{pd}"),
            Some(&json!({"settings": {"skip_on": "b.*"}})),
        )
        .await;
    assert_refused(
        status,
        &body,
        "invalid_settings",
        "`routing_key` is required",
    );
    let (status, body) = engine
        .request(
            "PATCH",
            &format!("/v1/subscriptions/{pd}"),
            Some(&json!({"settings": {"routing_key": "R0UT", "skip_onn": "b.*"}})),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"]
            .as_str()
            .expect("message")
            .contains("did you mean `skip_on`?"),
        "{body}"
    );

    // A setting the manifest declares secret is hidden although its name does not say so.
    let (status, body) = engine
        .post(
            "/v1/subscriptions",
            &create("probe", json!({"passcode": "open-sesame", "label": "x"})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (_, read) = engine
        .get(&format!(
            "/v1/subscriptions/{}",
            body["id"].as_str().expect("id")
        ))
        .await;
    assert_eq!(read["settings"]["passcode"], "***", "{read}");
    assert_eq!(read["settings"]["label"], "x", "{read}");
    assert!(!engine.log().contains("open-sesame"));

    // A plugin that is not loaded cannot be checked yet: accepted, with a warning.
    let (status, body) = engine
        .post(
            "/v1/subscriptions",
            &create("absent", json!({"anything": "goes"})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert!(
        body["warnings"]
            .to_string()
            .contains("plugin `absent` is not loaded"),
        "{body}"
    );
}

/// The header a GitHub-style receiver checks, as it checks it: HMAC-SHA256 of the body
/// with the secret's text as key, in hex.
fn hub_signature(secret: &str, request: &Received) -> String {
    format!(
        "sha256={}",
        hmac_sha256_hex(secret.as_bytes(), &request.body)
    )
}

/// Rotates a subscription's secret through the API; returns the new secret.
async fn rotate(engine: &Engine, id: &str) -> String {
    let (status, body) = engine
        .post(
            &format!("/v1/subscriptions/{id}/rotate-secret"),
            &json!({"grace": "1h"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body["secret"].as_str().expect("secret").to_owned()
}

/// Creates a subscription through the API with a chosen secret.
async fn create(
    engine: &Engine,
    id: &str,
    url: String,
    secret: &str,
    plugin: &str,
    settings: Value,
) {
    let (status, body) = engine
        .post(
            "/v1/subscriptions",
            &json!({"id": id, "url": url, "events": ["*"], "secret": secret,
                    "plugin": plugin, "settings": settings}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
}

/// Where the hostile hunter's report starts in its request body: after the last
/// separator (the first is the literal in the hunter's own data section).
fn report_start(body: &[u8]) -> usize {
    12 + body
        .windows(12)
        .rposition(|w| w == b"\n--report--\n")
        .expect("the hunter's report")
}

/// The hostile hunter's report at the end of its request body.
fn report(body: &[u8]) -> Value {
    serde_json::from_slice(&body[report_start(body)..]).expect("report")
}

#[tokio::test(flavor = "multi_thread")]
async fn host_signing_serves_github_style_receivers_and_never_shows_the_key() {
    let receiver = Receiver::start().await;
    let work = Workdir::new();
    work.install_plugin("github", GITHUB_SIGNATURE);
    work.install_plugin("hostile", HOSTILE);
    // The hunter sends its whole linear memory: let its output be that large.
    work.write_config(&format!(
        "{}\n[plugins.overrides.hostile]\nmax_output_bytes = 67108864\ncpu_budget = \"10s\"\n",
        base_config()
    ));
    let engine = work.start().await;

    let plain = "a-plain-secret-for-github-1";
    let plain_all = "a-plain-secret-for-github-2";
    let plain_hunt = "a-plain-secret-for-the-hunt";
    for (id, secret, plugin, settings) in [
        (
            "gh",
            plain,
            "github",
            json!({"event_header": "X-GitHub-Event"}),
        ),
        ("gh-all", plain_all, "github", json!({"signatures": "all"})),
        ("hunt", plain_hunt, "hostile", json!({"mode": "keyhunt"})),
        ("hunt-whsec", SECRET, "hostile", json!({"mode": "keyhunt"})),
        ("flood", plain_hunt, "hostile", json!({"mode": "hmacflood"})),
    ] {
        let url = receiver.url(&format!("/{id}"));
        create(&engine, id, url, secret, plugin, settings).await;
    }

    // Before a rotation: one signature, a plain HMAC of the body with the secret's text.
    engine
        .publish(json!({"id": "evt_before", "type": "pull_request.opened", "data": {"number": 7}}))
        .await;
    let before = receiver.wait_for("/gh", 1, WAIT).await.remove(0);
    assert_eq!(
        before.header("x-hub-signature-256"),
        hub_signature(plain, &before)
    );
    assert_eq!(before.header("x-github-event"), "pull_request.opened");
    assert_eq!(
        before.json(),
        json!({"id": "evt_before", "type": "pull_request.opened",
               "timestamp": before.json()["timestamp"], "data": {"number": 7}}),
        "the body is the standard envelope"
    );
    // The Standard Webhooks signature is there too, keyed with the plain secret's bytes.
    let as_whsec = format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(plain)
    );
    verify(&as_whsec, &before).expect("standard signature with a plain secret");

    // During a rotation: the new secret is plain too, and signs; `all` carries both.
    let new_gh = rotate(&engine, "gh").await;
    let new_all = rotate(&engine, "gh-all").await;
    let new_hunt = rotate(&engine, "hunt").await;
    for secret in [&new_gh, &new_all, &new_hunt] {
        assert!(
            !secret.starts_with("whsec_") && secret.len() == 64,
            "{secret}"
        );
    }
    engine
        .publish(json!({"id": "evt_during", "type": "push", "data": {"ref": "main"}}))
        .await;
    let during = receiver.wait_for("/gh", 2, WAIT).await.remove(1);
    assert_eq!(
        during.header("x-hub-signature-256"),
        hub_signature(&new_gh, &during)
    );
    let all = receiver.wait_for("/gh-all", 2, WAIT).await.remove(1);
    assert_eq!(
        all.header("x-hub-signature-256"),
        format!(
            "{}, {}",
            hub_signature(&new_all, &all),
            hub_signature(plain_all, &all)
        ),
        "newest first, then the secret in its grace period"
    );

    // The hunter saw only MACs: one per active secret, and no key anywhere in its memory,
    // its output or the engine's log.
    let whsec_key = base64::engine::general_purpose::STANDARD
        .decode(SECRET.trim_start_matches("whsec_"))
        .expect("base64");
    // `hunt` got one event signed before its rotation and one during it, in either order
    // (the hunter is slow, and the second may overtake the first): the later-signed one
    // is the one whose report has the most MACs, and it must have two.
    let during_rotation = receiver
        .wait_for("/hunt", 2, WAIT)
        .await
        .into_iter()
        .max_by_key(|hunt| report(&hunt.body)["macs"][0].as_array().map_or(0, Vec::len))
        .expect("two hunts");
    let hunts = [
        (receiver.wait_for("/hunt-whsec", 2, WAIT).await.remove(0), 1),
        (during_rotation, 2),
    ];
    let secrets: [&[u8]; 6] = [
        plain.as_bytes(),
        plain_hunt.as_bytes(),
        new_hunt.as_bytes(),
        SECRET.as_bytes(),
        SECRET.trim_start_matches("whsec_").as_bytes(),
        &whsec_key,
    ];
    for (hunt, keys) in &hunts {
        let body = &hunt.body;
        let start = report_start(body);
        assert!(
            start > 1 << 20,
            "the whole linear memory was sent ({start} bytes)"
        );
        let report = report(body);
        for macs in report["macs"].as_array().expect("macs") {
            assert_eq!(macs.as_array().expect("list").len(), *keys, "{report}");
        }
        for secret in secrets {
            assert!(
                find(body, secret).is_none(),
                "a key leaked into the adapter"
            );
        }
    }
    let log = engine.log();
    assert!(
        log.contains("keyhunt found"),
        "the hunter's log line is there"
    );
    for secret in secrets {
        assert!(
            !log.contains(&*String::from_utf8_lossy(secret)),
            "a key in the log"
        );
    }

    // Calling the import without end traps, with the reason.
    let flood = engine.dead_letters_of("flood", 2, WAIT).await;
    assert!(
        flood[0]["last_error"]
            .as_str()
            .expect("error")
            .contains("hmac-sha256 was called more than 64 times in one call"),
        "{flood:?}"
    );
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
