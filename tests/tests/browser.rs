//! Web pages against the API. Without a token the engine listens on loopback only, and a
//! page in the operator's browser must still not be able to use it: a cross-site
//! `text/plain` POST (no CORS preflight) and DNS rebinding (the page's own name pointed at
//! 127.0.0.1) are refused, while tools and a same-origin page keep working. The bearer
//! scheme is case-insensitive.

use serde_json::json;
use wasmhook_tests::raw::{self, RawResponse};
use wasmhook_tests::{Engine, Workdir, base_config, serve_should_fail_with};

/// `method path` with `headers` and `body`, on a connection of its own.
async fn send(
    engine: &Engine,
    method: &str,
    path: &str,
    headers: &[&str],
    body: &str,
) -> RawResponse {
    let mut request = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    for h in headers {
        request.push_str(h);
        request.push_str("\r\n");
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    raw::exchange(&engine.base, request.as_bytes()).await
}

#[tokio::test(flavor = "multi_thread")]
async fn an_open_api_refuses_cross_site_pages_and_rebound_host_names() {
    let work = Workdir::new();
    let config = work.write_config(&base_config());
    let engine = Engine::start(&config, &[]).await;
    assert!(
        engine.log().contains("no [server] api_token"),
        "{}",
        engine.log()
    );
    let authority = engine.base.trim_start_matches("http://").to_owned();
    let host = format!("Host: {authority}");
    let subscription = json!({"url": "http://127.0.0.1:9/x", "events": ["*"]}).to_string();

    // The attack from the report: a form-like cross-site POST creating a subscription.
    let r = send(
        &engine,
        "POST",
        "/v1/subscriptions",
        &[
            &host,
            "Origin: http://evil.example",
            "Content-Type: text/plain",
        ],
        &subscription,
    )
    .await;
    assert_eq!(
        (r.status, r.json["code"].as_str()),
        (403, Some("cross_origin")),
        "{}",
        r.head
    );
    // Even saying JSON does not help a foreign page (it would need a preflight anyway).
    let r = send(
        &engine,
        "POST",
        "/v1/events",
        &[
            &host,
            "Origin: http://evil.example",
            "Content-Type: application/json",
        ],
        r#"{"id": "evt_csrf", "type": "a.b"}"#,
    )
    .await;
    assert_eq!(
        (r.status, r.json["code"].as_str()),
        (403, Some("cross_origin"))
    );
    let r = send(
        &engine,
        "DELETE",
        "/v1/subscriptions/x",
        &[&host, "Origin: null"],
        "",
    )
    .await;
    assert_eq!(r.status, 403);

    // Without an Origin (a tool, or an old browser), a body must still be declared JSON.
    let r = send(
        &engine,
        "POST",
        "/v1/subscriptions",
        &[&host, "Content-Type: text/plain"],
        &subscription,
    )
    .await;
    assert_eq!(
        (r.status, r.json["code"].as_str()),
        (415, Some("unsupported_media_type"))
    );
    let r = send(
        &engine,
        "POST",
        "/v1/events",
        &[&host],
        r#"{"type": "a.b"}"#,
    )
    .await;
    assert_eq!(r.status, 415);

    // DNS rebinding: the request reaches 127.0.0.1 but names the attacker's host.
    for path in ["/v1/subscriptions", "/healthz", "/metrics"] {
        let r = send(&engine, "GET", path, &["Host: rebind.evil.example:80"], "").await;
        assert_eq!(
            (r.status, r.json["code"].as_str()),
            (403, Some("host_not_allowed")),
            "{path}"
        );
        assert!(
            r.json["message"]
                .as_str()
                .unwrap_or_default()
                .contains("[server] api_token"),
            "{}",
            r.json
        );
    }

    // Nothing was created or published.
    let (_, list) = engine.get("/v1/subscriptions").await;
    assert_eq!(list["data"], json!([]), "{list}");
    let accepted = engine
        .publish(json!({"id": "evt_csrf", "type": "a.b"}))
        .await;
    assert_eq!(accepted["duplicate"], false);

    // Tools and the engine's own pages keep working, under every loopback name.
    let port = authority.rsplit(':').next().expect("port");
    for (name, origin) in [
        (authority.clone(), None),
        (
            format!("localhost:{port}"),
            Some(format!("http://localhost:{port}")),
        ),
        (authority.clone(), Some(format!("http://{authority}"))),
    ] {
        let mut headers = vec![
            format!("Host: {name}"),
            "Content-Type: application/json; charset=utf-8".into(),
        ];
        headers.extend(origin.map(|o| format!("Origin: {o}")));
        let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
        let r = send(
            &engine,
            "POST",
            "/v1/events",
            &headers,
            r#"{"type": "a.b"}"#,
        )
        .await;
        assert_eq!(r.status, 202, "{name}: {}", r.head);
    }
    // A bodiless POST needs no content type.
    let r = send(&engine, "POST", "/v1/dead-letters/replay", &[&host], "").await;
    assert_eq!(r.status, 202, "{}", r.head);
}

#[test]
fn without_a_token_the_engine_refuses_to_listen_beyond_loopback() {
    let work = Workdir::new();
    let config = work.write_config(&base_config());
    for listen in ["0.0.0.0:0", "[::]:0"] {
        let (_, stderr) = serve_should_fail_with(&config, &[("WASMHOOK_LISTEN", listen)]);
        assert!(stderr.contains("no [server] api_token"), "{stderr}");
        assert!(stderr.contains("listen on 127.0.0.1"), "{stderr}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn with_a_token_any_address_and_name_serve_and_the_scheme_is_case_insensitive() {
    let work = Workdir::new();
    let config = work.write_config(&base_config());
    let engine = Engine::start(
        &config,
        &[
            ("WASMHOOK_LISTEN", "0.0.0.0:0"),
            ("WASMHOOK_API_TOKEN", "t0ken"),
        ],
    )
    .await;
    assert!(!engine.log().contains("no [server] api_token"));
    let port = engine.base.rsplit(':').next().expect("port").to_owned();
    let base = format!("http://127.0.0.1:{port}");
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let response = raw::exchange(
            &base,
            format!(
                "POST /v1/events HTTP/1.1\r\nHost: hooks.example.com\r\nConnection: close\r\n\
                 Authorization: {scheme} t0ken\r\nContent-Type: application/json\r\nContent-Length: 15\r\n\r\n\
                 {{\"type\": \"a.b\"}}"
            )
            .as_bytes(),
        )
        .await;
        assert_eq!(response.status, 202, "{scheme}: {}", response.head);
    }
    let response = raw::exchange(
        &base,
        b"GET /v1/subscriptions HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Basic dDBrZW4=\r\n\r\n",
    )
    .await;
    assert_eq!(response.status, 401);
}
