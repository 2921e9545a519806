//! Adapters written in JavaScript (componentize-js) and Python (componentize-py) with the
//! helper modules in sdk/ run through the real engine to a real receiver, on fresh instances
//! and with instance reuse, against the same `wit/` as the Rust adapters.
//!
//! The components are built by `scripts/build-example-adapters` from `examples/adapters/`.

use std::time::Duration;

use serde_json::{Value, json};
use wasmhook_tests::{
    DISCORD_PY, Engine, Receiver, SECRET, TEAMS_JS, Workdir, base_config, example_adapter, verify,
};

/// Compiling a JS or Python component takes seconds (tens of seconds in a debug build).
const WAIT: Duration = Duration::from_secs(300);
const EVENTS: usize = 12;

fn subscription(id: &str, url: &str, extra: &str) -> String {
    format!(
        "[[subscriptions]]\nid = \"{id}\"\nurl = \"{url}\"\nevents = [\"host.*\"]\nsecret = \"{SECRET}\"\n{extra}\n"
    )
}

/// Publishes the events. `json!` sorts object keys, so the adapters see `data` in the order
/// attempt, host, severity, summary, tags; the engine passes `data` through byte for byte.
async fn publish_events(engine: &Engine) -> Vec<Value> {
    let mut events = Vec::new();
    for i in 0..EVENTS {
        let event = json!({
            "id": format!("evt_{i}"),
            "type": "host.down",
            "data": {
                "summary": format!("web-{i} stopped answering"),
                "host": format!("web-{i}"),
                "severity": "critical",
                "attempt": i,
                "tags": ["ignored", "because", "not", "scalar"],
            },
        });
        engine.publish(event.clone()).await;
        events.push(event);
    }
    events
}

/// Every event arrived once at `path`, signed, as JSON; returns the bodies by event index.
async fn delivered(receiver: &Receiver, path: &str) -> Vec<(usize, Value)> {
    let got = receiver.wait_for(path, EVENTS, WAIT).await;
    let mut bodies = Vec::new();
    for request in &got {
        verify(SECRET, request).unwrap_or_else(|e| panic!("{path}: bad signature: {e}"));
        assert_eq!(request.method, "POST");
        assert_eq!(request.header("content-type"), "application/json");
        let id = request.header("webhook-id").to_owned();
        let body = request.json();
        bodies.push((id, body));
    }
    bodies.sort_by(|a, b| a.0.cmp(&b.0));
    bodies.dedup_by(|a, b| a.0 == b.0);
    assert_eq!(bodies.len(), EVENTS, "{path}: each event once");
    // Index the bodies by the event they came from, through the summary the adapters copy.
    let mut indexed: Vec<(usize, Value)> = bodies
        .into_iter()
        .map(|(_, body)| {
            let text = body.to_string();
            let i = (0..EVENTS)
                .rev()
                .find(|i| text.contains(&format!("web-{i} stopped answering")))
                .unwrap_or_else(|| panic!("{path}: no summary in {body}"));
            (i, body)
        })
        .collect();
    indexed.sort_by_key(|(i, _)| *i);
    indexed
}

fn check_teams(i: usize, body: &Value) {
    assert_eq!(body["type"], "message", "{body}");
    let attachment = &body["attachments"][0];
    assert_eq!(
        attachment["contentType"], "application/vnd.microsoft.card.adaptive",
        "{body}"
    );
    let card = &attachment["content"];
    assert_eq!(card["type"], "AdaptiveCard");
    assert_eq!(card["version"], "1.4");
    let blocks = card["body"].as_array().expect("card body");
    assert_eq!(blocks[0]["text"], "Ops alerts", "title from settings");
    assert_eq!(blocks[0]["color"], "attention", "theme_color from settings");
    assert_eq!(blocks[1]["text"], format!("web-{i} stopped answering"));
    assert_eq!(blocks[2]["type"], "FactSet");
    let facts = &blocks[2]["facts"];
    assert_eq!(
        facts,
        &json!([
            {"title": "attempt", "value": i.to_string()},
            {"title": "host", "value": format!("web-{i}")},
            {"title": "severity", "value": "critical"},
        ]),
        "scalar fields become facts; the summary and arrays do not"
    );
}

fn check_discord(i: usize, body: &Value) {
    assert_eq!(body["content"], format!("web-{i} stopped answering"));
    assert_eq!(body["username"], "ops-bot", "username from settings");
    let embed = &body["embeds"][0];
    assert_eq!(embed["title"], "host.down");
    assert_eq!(embed["footer"]["text"], format!("evt_{i}"));
    assert!(
        embed["timestamp"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')),
        "{body}"
    );
    assert_eq!(
        embed["fields"],
        json!([
            {"name": "attempt", "value": i.to_string(), "inline": true},
            {"name": "host", "value": format!("web-{i}"), "inline": true},
            {"name": "severity", "value": "critical", "inline": true},
        ]),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn javascript_and_python_adapters_deliver_fresh_and_reused() {
    let teams = example_adapter(TEAMS_JS);
    let discord = example_adapter(DISCORD_PY);
    let receiver = Receiver::start().await;
    let work = Workdir::new();
    work.install_plugin("teams", teams);
    work.install_plugin("discord", discord);

    let mut config = base_config();
    // The misconfigured Discord adapter fails every call, and all its events must become
    // dead letters within the wait, not queue behind the adapter breaker's cooldowns.
    config.push_str("breaker_failures = 1000\n");
    // Fresh JS and Python instances take milliseconds; give them room on a loaded machine.
    config.push_str("\n[plugins.overrides.teams]\ncpu_budget = \"2s\"\n");
    config.push_str("\n[plugins.overrides.discord]\ncpu_budget = \"2s\"\n\n");
    let teams_settings = "settings = { title = \"Ops alerts\", theme_color = \"Attention\" }";
    let discord_settings = "settings = { username = \"ops-bot\" }";
    for (id, plugin, settings, reuse) in [
        ("teams-fresh", "teams", teams_settings, 0),
        ("teams-reused", "teams", teams_settings, 5),
        ("discord-fresh", "discord", discord_settings, 0),
        ("discord-reused", "discord", discord_settings, 5),
    ] {
        config.push_str(&subscription(
            id,
            &receiver.url(&format!("/{id}")),
            &format!("plugin = \"{plugin}\"\ninstance_reuse = {reuse}\n{settings}"),
        ));
    }
    // An adapter error thrown from JavaScript, or raised in Python, through the helper
    // modules becomes the attempt's error.
    config.push_str(&subscription(
        "teams-misconfigured",
        &receiver.url("/teams-misconfigured"),
        "plugin = \"teams\"\nmax_attempts = 1\nsettings = { theme_color = \"purple\" }",
    ));
    config.push_str(&subscription(
        "discord-misconfigured",
        &receiver.url("/discord-misconfigured"),
        "plugin = \"discord\"\nmax_attempts = 1\nsettings = { avatar_url = \"http://cdn.example/a.png\" }",
    ));
    work.write_config(&config);
    let engine = work.start().await;

    let events = publish_events(&engine).await;
    for id in ["teams-fresh", "teams-reused"] {
        for (i, body) in delivered(&receiver, &format!("/{id}")).await {
            check_teams(i, &body);
        }
    }
    for id in ["discord-fresh", "discord-reused"] {
        for (i, body) in delivered(&receiver, &format!("/{id}")).await {
            check_discord(i, &body);
        }
    }

    let misconfigured = engine
        .dead_letters_of("teams-misconfigured", events.len(), WAIT)
        .await;
    for d in misconfigured {
        let error = d["last_error"].as_str().expect("error");
        assert!(
            error.contains(
                "setting theme_color: \"purple\" is not one of default, dark, light, accent, good, warning, attention"
            ),
            "{error}"
        );
    }
    assert!(receiver.requests_to("/teams-misconfigured").is_empty());
    for d in engine
        .dead_letters_of("discord-misconfigured", events.len(), WAIT)
        .await
    {
        let error = d["last_error"].as_str().expect("error");
        assert!(
            error.contains("setting avatar_url: Discord loads avatars over https only"),
            "{error}"
        );
    }

    let (_, plugins) = engine.get("/v1/plugins").await;
    for name in ["teams", "discord"] {
        let info = plugins["data"]
            .as_array()
            .expect("list")
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("{name} in {plugins}"));
        assert_eq!(info["world_version"], "0.2.0", "{info}");
        assert_eq!(info["manifest"]["name"], name, "{info}");
        assert!(info["last_error"].is_null(), "{info}");
        let calls = info["calls"].as_u64().expect("calls") as usize;
        assert!(calls >= 2 * EVENTS, "{info}");
    }
}
