//! `GET /v1/stream` against the real engine: accepted events and delivery outcomes arrive
//! as Server-Sent Events, filtered by type pattern and subscription, a reconnect with
//! `Last-Event-ID` replays what followed, and the stream needs the token like the rest of
//! `/v1`.

use std::time::Duration;

use serde_json::{Value, json};
use wasmhook_tests::{Engine, Receiver, Reply, SECRET, Workdir, base_config};

const WAIT: Duration = Duration::from_secs(30);
const TOKEN: &str = "stream-test-token";

/// One SSE message.
#[derive(Debug, Clone)]
struct Message {
    id: Option<String>,
    event: String,
    data: Value,
}

/// An open `text/event-stream` answer, read message by message.
struct Sse {
    response: reqwest::Response,
    buffer: String,
}

impl Sse {
    async fn open(engine: &Engine, query: &str, last_id: Option<&str>) -> Self {
        let mut request = reqwest::Client::new()
            .get(format!("{}/v1/stream{query}", engine.base))
            .bearer_auth(TOKEN);
        if let Some(id) = last_id {
            request = request.header("last-event-id", id);
        }
        let response = request.send().await.expect("GET /v1/stream");
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["content-type"]
                .to_str()
                .expect("content-type"),
            "text/event-stream"
        );
        let mut sse = Self {
            response,
            buffer: String::new(),
        };
        // The stream is listening once `ready` arrives: publishing after it cannot be missed.
        assert_eq!(sse.next().await.event, "ready");
        sse
    }

    /// The next message (keep-alive comments skipped); panics after [`WAIT`].
    async fn next(&mut self) -> Message {
        tokio::time::timeout(WAIT, async {
            loop {
                if let Some(end) = self.buffer.find("\n\n") {
                    let block: String = self.buffer.drain(..end + 2).collect();
                    if let Some(message) = parse(&block) {
                        return message;
                    }
                    continue;
                }
                let chunk = self
                    .response
                    .chunk()
                    .await
                    .expect("read the stream")
                    .expect("the stream ended");
                self.buffer
                    .push_str(std::str::from_utf8(&chunk).expect("UTF-8 stream"));
            }
        })
        .await
        .expect("no SSE message in time")
    }
}

fn parse(block: &str) -> Option<Message> {
    let (mut id, mut event, mut data) = (None, String::from("message"), String::new());
    for line in block.lines() {
        if let Some(v) = line.strip_prefix("id:") {
            id = Some(v.trim().to_owned());
        } else if let Some(v) = line.strip_prefix("event:") {
            event = v.trim().to_owned();
        } else if let Some(v) = line.strip_prefix("data:") {
            data.push_str(v.trim_start());
        }
    }
    (!data.is_empty()).then(|| Message {
        id,
        event,
        data: serde_json::from_str(&data).expect("JSON data"),
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn the_stream_shows_accepted_events_and_outcomes_filtered_and_resumable() {
    let receiver = Receiver::start().await;
    receiver.set_default("/refuses", Reply::Status(400));
    let work = Workdir::new();
    work.write_config(&format!(
        r#"[server]
api_token = "{TOKEN}"

{base}
[[subscriptions]]
id = "hosts"
url = "{ok}"
events = ["host.*"]
secret = "{SECRET}"

[[subscriptions]]
id = "certs"
url = "{refuses}"
events = ["cert.*"]
secret = "{SECRET}"
"#,
        base = base_config(),
        ok = receiver.url("/ok"),
        refuses = receiver.url("/refuses"),
    ));
    let mut engine = work.start().await;

    // The stream is `/v1`: no token, no stream; a bad pattern is a 400 with a code.
    let anonymous = reqwest::get(format!("{}/v1/stream", engine.base))
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    engine.authorize(TOKEN);
    let (status, body) = engine.get("/v1/stream?types=host..x").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("invalid_pattern"))
    );

    let mut hosts = Sse::open(&engine, "?types=host.*", None).await;
    let mut certs = Sse::open(&engine, "?subscription_id=certs", None).await;
    // Published first, so if the type filter let it through it would come first.
    let cert = engine.publish(json!({"type": "cert.expiring"})).await;
    let host = engine.publish(json!({"type": "host.up"})).await;

    let host_accepted = hosts.next().await;
    assert_eq!(host_accepted.event, "event.accepted", "{host_accepted:?}");
    assert_eq!(host_accepted.data["event_id"], host["id"]);
    assert_eq!(host_accepted.data["event_type"], "host.up");
    assert_eq!(host_accepted.data["subscriptions"], json!(["hosts"]));
    let delivered = hosts.next().await;
    assert_eq!(delivered.event, "delivery.outcome", "{delivered:?}");
    assert_eq!(delivered.data["event_id"], host["id"]);
    assert_eq!(delivered.data["subscription_id"], "hosts");
    assert_eq!(delivered.data["outcome"], "delivered");
    assert_eq!(delivered.data["status_code"], 200);
    assert_eq!(receiver.requests_to("/ok").len(), 1);

    // The subscription filter: only the certificate's event and its dead letter.
    let accepted = certs.next().await;
    assert_eq!(
        (accepted.event.as_str(), &accepted.data["event_id"]),
        ("event.accepted", &cert["id"])
    );
    let refused = certs.next().await;
    assert_eq!(refused.event, "delivery.outcome");
    assert_eq!(refused.data["outcome"], "dead_letter");
    assert_eq!(refused.data["status_code"], 400);

    // Reconnecting after the accepted event replays the outcome that followed it.
    let mut resumed = Sse::open(&engine, "?types=host.*", host_accepted.id.as_deref()).await;
    let replayed = resumed.next().await;
    assert_eq!(replayed.id, delivered.id);
    assert_eq!(replayed.data, delivered.data);

    // An id the node does not hold (another process's) is reported as a gap.
    let mut stale = Sse::open(&engine, "?types=none.such", Some("00000000-1")).await;
    assert_eq!(stale.next().await.event, "gap");
}
