//! The API's connections against clients that hold them without finishing a request: idle
//! connections, partial heads and bodies that never come cannot starve legitimate requests,
//! even with a low open-file limit, and the server closes them. A declared body over the
//! limit is refused before it is sent, and a request with both `Content-Length` and
//! `Transfer-Encoding` is refused and its connection closed. A head that ends on `\n\r\n`
//! across two reads is answered, not dropped.

use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;
use wasmhook_tests::raw::{self, parse_response, read_until_closed};
use wasmhook_tests::{Engine, Workdir, base_config};

/// Generous bound for a legitimate answer while the attack holds its connections.
const ANSWER_BOUND: Duration = Duration::from_secs(10);

/// How an attacking connection misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Attack {
    /// Connects and sends nothing.
    Idle,
    /// Sends part of a head, never the end.
    PartialHead,
    /// Sends a head declaring 1000 bytes of body, then 10 of them.
    SlowBody,
}

async fn attacker(base: &str, attack: Attack) -> TcpStream {
    let mut stream = raw::connect(base).await;
    let bytes: &[u8] = match attack {
        Attack::Idle => b"",
        Attack::PartialHead => b"POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: 1",
        Attack::SlowBody => {
            b"POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
              Content-Length: 1000\r\n\r\n{\"type\": \""
        }
    };
    stream.write_all(bytes).await.expect("write");
    stream
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_partial_and_slow_connections_cannot_starve_the_api() {
    let work = Workdir::new();
    let config = work.write_config(&format!(
        "[server]\nheader_read_timeout = \"2s\"\nidle_timeout = \"3s\"\nbody_read_timeout = \"3s\"\n\n{}",
        base_config()
    ));
    // 256 open files: the default connection cap becomes 128.
    let engine = Engine::start_under(&config, &[], Some("ulimit -n 256")).await;
    let base = engine.base.clone();

    // 300 bad connections, 100 of each kind, all held open by this test.
    let mut held = Vec::new();
    for attack in [Attack::Idle, Attack::PartialHead, Attack::SlowBody] {
        for _ in 0..100 {
            held.push((attack, attacker(&base, attack).await));
        }
    }

    // Legitimate requests, each on a new connection, are answered meanwhile.
    let client = reqwest::Client::builder()
        .timeout(ANSWER_BOUND)
        .pool_max_idle_per_host(0)
        .build()
        .expect("client");
    for i in 0..10 {
        let started = Instant::now();
        let answer = client
            .post(format!("{base}/v1/events"))
            .json(&json!({"id": format!("evt_legit_{i}"), "type": "a.b"}))
            .send()
            .await;
        let answer = answer.unwrap_or_else(|e| {
            panic!(
                "request {i} was not answered within {ANSWER_BOUND:?} while 300 connections were held: {e}\n{}",
                engine.log()
            )
        });
        assert_eq!(answer.status(), 202, "request {i}");
        eprintln!("legitimate request {i} answered in {:?}", started.elapsed());
    }

    // The server closes every bad connection (timeouts of 2-3 s here; eviction for some);
    // a body that never came gets 408 body_timeout first.
    let closing = held.into_iter().map(|(attack, mut stream)| {
        tokio::spawn(async move {
            let got = read_until_closed(&mut stream, Duration::from_secs(60)).await;
            (attack, got)
        })
    });
    let mut timed_out_bodies = 0;
    for task in closing.collect::<Vec<_>>() {
        let (attack, got) = task.await.expect("join");
        let got = got.unwrap_or_else(|| panic!("a {attack:?} connection was never closed"));
        match attack {
            Attack::SlowBody => {
                let response = parse_response(&got).expect("an answer before the close");
                assert_eq!(response.status, 408, "{}", response.head);
                assert_eq!(response.json["code"], "body_timeout");
                timed_out_bodies += 1;
            }
            Attack::Idle | Attack::PartialHead => {
                assert!(
                    got.is_empty(),
                    "{attack:?}: {:?}",
                    String::from_utf8_lossy(&got)
                );
            }
        }
    }
    assert_eq!(timed_out_bodies, 100);

    // Nothing of the attack was stored; the engine still answers.
    let (status, _) = engine.get("/v1/deliveries").await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kept_alive_connection_is_closed_after_the_idle_timeout_not_before() {
    let work = Workdir::new();
    let config = work.write_config(&format!(
        "[server]\nheader_read_timeout = \"1s\"\nidle_timeout = \"30s\"\n\n{}",
        base_config()
    ));
    let engine = Engine::start(&config, &[]).await;
    let mut stream = raw::connect(&engine.base).await;
    let get = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    stream.write_all(get).await.expect("write");
    // The answer comes and the connection stays open past the header timeout: waiting
    // for a next request is idle time, not a late head.
    assert!(
        read_until_closed(&mut stream, Duration::from_secs(3))
            .await
            .is_none(),
        "the connection was closed before the idle timeout"
    );
    stream
        .write_all(get)
        .await
        .expect("a second request on the same connection");
    // A head started but never finished is closed after the header timeout.
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .await
        .expect("write");
    let got = read_until_closed(&mut stream, Duration::from_secs(20))
        .await
        .expect("closed after the header timeout");
    assert_eq!(parse_response(&got).expect("the second answer").status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_declared_body_over_the_limit_is_refused_before_it_is_sent() {
    let work = Workdir::new();
    let config = work.write_config(&base_config());
    let engine = Engine::start(&config, &[]).await;
    // 10 MB declared, nothing sent: the answer comes at once, on each endpoint with its
    // own limit.
    for path in ["/v1/events", "/v1/subscriptions"] {
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
             Content-Length: 10000000\r\n\r\n"
        );
        let response = raw::exchange(&engine.base, request.as_bytes()).await;
        assert_eq!(response.status, 413, "{path}: {}", response.head);
        assert_eq!(response.json["code"], "body_too_large");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_with_both_content_length_and_transfer_encoding_is_refused() {
    let work = Workdir::new();
    let config = work.write_config(&base_config());
    let engine = Engine::start(&config, &[]).await;
    let event = br#"{"id": "evt_smuggled", "type": "a.b"}"#;
    for order in [
        "Content-Length: 5\r\nTransfer-Encoding: chunked",
        "Transfer-Encoding: chunked\r\nContent-Length: 5",
    ] {
        let mut request = format!(
            "POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n{order}\r\n\r\n{:x}\r\n",
            event.len()
        )
        .into_bytes();
        request.extend_from_slice(event);
        request.extend_from_slice(b"\r\n0\r\n\r\n");
        // No `Connection: close`: the server must close it by itself.
        let response = raw::exchange(&engine.base, &request).await;
        assert_eq!(response.status, 400, "{order}: {}", response.head);
        assert_eq!(response.json["code"], "ambiguous_length");
        assert!(
            response
                .head
                .to_ascii_lowercase()
                .contains("connection: close"),
            "{}",
            response.head
        );
    }
    // Nothing was stored: the same id is new.
    let accepted = engine
        .publish(json!({"id": "evt_smuggled", "type": "a.b"}))
        .await;
    assert_eq!(accepted["duplicate"], false);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_head_ended_by_a_bare_line_feed_across_two_reads_is_answered() {
    let work = Workdir::new();
    let config = work.write_config(&base_config());
    let engine = Engine::start(&config, &[]).await;
    let mut stream = raw::connect(&engine.base).await;
    // hyper takes `\n\r\n` for the end of this head and answers it at once, then waits for
    // the rest of the next head (`X`); the engine's own scan of the head waits for
    // `\r\n\r\n`, which the next read brings.
    stream
        .write_all(b"GET /healthz HTTP/1.1\n\r\nX")
        .await
        .expect("write");
    let mut first = Vec::new();
    while !first.windows(4).any(|w| w == b"\r\n\r\n") {
        let mut buf = [0u8; 4096];
        let n = tokio::io::AsyncReadExt::read(&mut stream, &mut buf)
            .await
            .expect("read");
        assert!(n > 0, "closed before the first answer");
        first.extend_from_slice(&buf[..n]);
    }
    // (403: a request without `Host` is refused; any answer will do.)
    parse_response(&first).expect("the first answer");
    // Not a request line: hyper answers 400 and closes. The engine used to panic in the
    // connection's task here (counting back past the bytes just read), which dropped the
    // connection unanswered.
    stream.write_all(b"-Y: a\r\n\r\n").await.expect("write");
    let rest = read_until_closed(&mut stream, ANSWER_BOUND)
        .await
        .expect("closed after the answer");
    let rest = String::from_utf8_lossy(&rest);
    assert!(rest.contains("HTTP/1.1 400"), "{rest:?}");
    assert!(!engine.log().contains("panicked"), "{}", engine.log());
}
