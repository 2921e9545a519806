//! The event type catalog (`[[event_types]]`): events of a declared type are held to its
//! JSON Schema (refused naming the field, or accepted with a warning), `/v1/event-types`
//! lists the catalog, and what receivers get validates against the schemas the served
//! OpenAPI document gives for each type.

use std::time::Duration;

use serde_json::{Value, json};
use wasmhook_tests::openapi::{check, check_webhook};
use wasmhook_tests::{Receiver, SECRET, Workdir, base_config, verify};

const WAIT: Duration = Duration::from_secs(60);

const TYPES: &str = r#"
[[event_types]]
name = "host.enrolled"
description = "A host joined the mesh."
schema = { type = "object", required = ["host", "ip"], properties = { host = { type = "string", minLength = 1 }, ip = { type = "string" }, tags = { type = "array", items = { type = "string" } } } }

[[event_types]]
name = "cert.expiring"
description = "A certificate expires soon."
schema = { type = "object", required = ["serial", "days"], properties = { serial = { type = "string" }, days = { type = "integer", minimum = 0 } } }

[[event_types]]
name = "cert.note"
description = "Free-form; violations only warn."
mode = "warn"
schema = { type = "object", required = ["text"] }
"#;

#[tokio::test(flavor = "multi_thread")]
async fn declared_types_are_validated_listed_and_documented() {
    let receiver = Receiver::start().await;
    let work = Workdir::new();
    work.write_config(&format!(
        "{}\n[[subscriptions]]\nid = \"all\"\nurl = \"{}\"\nevents = [\">\"]\nsecret = \"{SECRET}\"\n{TYPES}",
        base_config(),
        receiver.url("/hook"),
    ));
    let engine = work.start().await;

    // Valid events of both types are accepted.
    let valid = [
        json!({"type": "host.enrolled", "data": {"host": "web-1", "ip": "10.0.0.5", "tags": ["edge"]}}),
        json!({"type": "cert.expiring", "data": {"serial": "0a:1b", "days": 7}}),
    ];
    for event in &valid {
        let (status, body) = engine.post("/v1/events", event).await;
        assert_eq!(status, 202, "{body}");
    }

    // Invalid ones are refused with a stable code and a message naming the field.
    for (event, field) in [
        (
            json!({"type": "host.enrolled", "data": {"host": 5, "ip": "10.0.0.5"}}),
            "data.host",
        ),
        (
            json!({"type": "host.enrolled", "data": {"host": "web-1", "ip": "x", "tags": ["a", 2]}}),
            "data.tags[1]",
        ),
        (
            json!({"type": "cert.expiring", "data": {"serial": "0a", "days": -1}}),
            "data.days",
        ),
        (
            json!({"type": "cert.expiring", "data": {"serial": "0a"}}),
            "data",
        ),
    ] {
        let (status, body) = engine.post("/v1/events", &event).await;
        assert_eq!(status, 400, "{event}: {body}");
        assert_eq!(body["code"], "schema_violation", "{body}");
        let message = body["message"].as_str().expect("message");
        assert!(message.contains(&format!("`{field}`")), "{message}");
    }
    // In a batch, the error names the event's index too, and nothing is stored.
    let (status, body) = engine
        .post(
            "/v1/events/batch",
            &json!([valid[0], {"type": "cert.expiring", "data": {"serial": 1, "days": 1}}]),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"]
            .as_str()
            .expect("message")
            .starts_with("event 1: `data.serial`"),
        "{body}"
    );

    // `warn` mode accepts, with the violation among the warnings.
    let (status, body) = engine
        .post("/v1/events", &json!({"type": "cert.note", "data": {}}))
        .await;
    assert_eq!(status, 202, "{body}");
    assert!(body["warnings"].to_string().contains("`data`"), "{body}");

    // The catalog.
    let (status, list) = engine.get("/v1/event-types").await;
    assert_eq!(status, 200, "{list}");
    let names: Vec<&str> = list["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|t| t["name"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(names, ["cert.expiring", "cert.note", "host.enrolled"]);
    assert_eq!(list["data"][2]["description"], "A host joined the mesh.");
    assert_eq!(list["data"][2]["schema"]["required"], json!(["host", "ip"]));
    assert_eq!(list["data"][1]["mode"], "warn");

    // What receivers got validates against the served document's schema for its type.
    let document: Value = reqwest::get(format!("{}/openapi.json", engine.base))
        .await
        .expect("openapi")
        .json()
        .await
        .expect("json");
    let requests = receiver.wait_for("/hook", 3, WAIT).await;
    for request in &requests {
        verify(SECRET, request).expect("signed");
        let kind = request.json()["type"].as_str().expect("type").to_owned();
        let checked = check_webhook(&document, &kind, request);
        if kind == "cert.note" {
            // Accepted in `warn` mode although it breaks the schema: the document says so.
            assert!(
                checked.is_err(),
                "the warn-mode event should not fit its schema"
            );
        } else {
            checked.unwrap_or_else(|e| panic!("{e}"));
        }
    }
    // …and those schemas are the declared ones: a body breaking one does not validate.
    let schema = &document["webhooks"]["host.enrolled"]["post"]["requestBody"]["content"]["application/json"]
        ["schema"];
    let mut bad = requests
        .iter()
        .map(|r| r.json())
        .find(|b| b["type"] == "host.enrolled")
        .expect("a host.enrolled delivery");
    bad["data"]["host"] = json!(5);
    assert!(check(&document, schema, &bad, "a bad body").is_err());
    let mut wrong_type = bad.clone();
    wrong_type["data"]["host"] = json!("web-1");
    wrong_type["type"] = json!("cert.expiring");
    assert!(check(&document, schema, &wrong_type, "another type's body").is_err());
}
