//! The console's security, against the real engine over HTTP: no session means no page
//! and no API call; sign-in takes an admin token and sets an `HttpOnly`, `SameSite=Strict`
//! cookie; a change without the CSRF token, or from another site, is refused; pages send
//! a strict CSP; no secret appears in any served page; sign-out ends the session; and
//! `[ui] enabled = false` turns the console off. The browser test is `console_browser.rs`.

use serde_json::{Value, json};
use wasmhook_tests::{Engine, SECRET, Workdir, base_config};

const TOKEN: &str = "console-admin-token";

/// Every page of the console, for a subscription `ops`.
const PAGES: [&str; 7] = [
    "/ui",
    "/ui/subscriptions",
    "/ui/subscriptions/ops",
    "/ui/dead-letters",
    "/ui/endpoints",
    "/ui/plugins",
    "/ui/tail",
];

struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: String,
}

async fn send(
    engine: &Engine,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> Answer {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut request = client.request(method, format!("{}{path}", engine.base));
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body.to_string());
    }
    let response = request.send().await.expect("request");
    Answer {
        status: response.status().as_u16(),
        headers: response.headers().clone(),
        body: response.text().await.expect("body"),
    }
}

async fn sign_in(engine: &Engine, token: &str) -> Answer {
    send(
        engine,
        "POST",
        "/ui/login",
        &[],
        Some(json!({"token": token})),
    )
    .await
}

fn code(answer: &Answer) -> String {
    serde_json::from_str::<Value>(&answer.body).unwrap_or_default()["code"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// The `content` of `<meta name="csrf-token">`.
fn csrf_of(html: &str) -> String {
    let start = html
        .find(r#"name="csrf-token" content=""#)
        .expect("csrf meta")
        + 27;
    html[start..][..html[start..].find('"').expect("end of the csrf meta")].to_owned()
}

async fn engine(extra: &str) -> (Workdir, Engine) {
    let work = Workdir::new();
    work.write_config(&format!(
        "[server]\napi_token = \"{TOKEN}\"\n{extra}\n{}",
        base_config()
    ));
    let engine = work.start().await;
    (work, engine)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_console_needs_a_session_a_csrf_token_and_never_shows_a_secret() {
    let (_work, mut engine) = engine("").await;

    // No session: every page sends the browser to sign in, and the API answers 401.
    for path in PAGES {
        let r = send(&engine, "GET", path, &[], None).await;
        assert_eq!(r.status, 303, "{path}");
        assert_eq!(r.headers["location"], "/ui/login", "{path}");
        assert!(!r.body.contains("<table"), "{path}");
    }
    let r = send(&engine, "GET", "/v1/subscriptions", &[], None).await;
    assert_eq!((r.status, code(&r).as_str()), (401, "unauthorized"));
    let r = send(&engine, "GET", "/v1/stream", &[], None).await;
    assert_eq!(r.status, 401);
    let login = send(&engine, "GET", "/ui/login", &[], None).await;
    assert_eq!(login.status, 200);
    let csp = login.headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe"),
        "{csp}"
    );
    assert!(!login.body.contains("<script>"), "no inline script");

    // Sign-in: a wrong token is refused; the admin token gets a strict cookie.
    let r = sign_in(&engine, "nope").await;
    assert_eq!((r.status, code(&r).as_str()), (401, "unauthorized"));
    let r = sign_in(&engine, TOKEN).await;
    assert_eq!(r.status, 204);
    let set_cookie = r.headers["set-cookie"].to_str().unwrap().to_owned();
    assert!(set_cookie.contains("HttpOnly"), "{set_cookie}");
    assert!(set_cookie.contains("SameSite=Strict"), "{set_cookie}");
    let cookie = set_cookie.split(';').next().unwrap().to_owned();
    let with_cookie = [("cookie", cookie.as_str())];

    // A subscription with a known secret and a secret setting, created through the API.
    // (`engine.post` and `engine.get` carry the bearer token from now on; `send` never does.)
    engine.authorize(TOKEN);
    let (status, created) = engine
        .post(
            "/v1/subscriptions",
            &json!({"id": "ops", "url": "http://127.0.0.1:9/hook", "events": ["*"],
                    "secret": SECRET, "settings": {"api_key": "s3cr3t-setting"},
                    "secret_settings": ["api_key"]}),
        )
        .await;
    assert_eq!(status, 201, "{created}");

    // Every page renders with the session, with the CSP, and shows no secret.
    let mut csrf = String::new();
    for path in PAGES {
        let r = send(&engine, "GET", path, &with_cookie, None).await;
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        assert!(r.headers.contains_key("content-security-policy"), "{path}");
        for secret in [SECRET, "whsec_", "s3cr3t-setting", TOKEN] {
            assert!(!r.body.contains(secret), "{path} shows {secret}");
        }
        csrf = csrf_of(&r.body);
    }

    // The session works for the API, but a change needs the CSRF token.
    let r = send(&engine, "GET", "/v1/subscriptions", &with_cookie, None).await;
    assert_eq!(r.status, 200);
    let patch = Some(json!({"enabled": false}));
    let r = send(
        &engine,
        "PATCH",
        "/v1/subscriptions/ops",
        &with_cookie,
        patch.clone(),
    )
    .await;
    assert_eq!(r.status, 401, "no CSRF token: {}", r.body);
    let wrong = [("cookie", cookie.as_str()), ("x-csrf-token", "forged")];
    let r = send(
        &engine,
        "PATCH",
        "/v1/subscriptions/ops",
        &wrong,
        patch.clone(),
    )
    .await;
    assert_eq!(r.status, 401, "wrong CSRF token: {}", r.body);
    let r = send(&engine, "POST", "/ui/logout", &with_cookie, None).await;
    assert_eq!((r.status, code(&r).as_str()), (403, "csrf_failed"));
    // A cross-site page: refused for its origin, whatever it sends.
    let host = engine.base.trim_start_matches("http://").to_owned();
    let cross = [
        ("cookie", cookie.as_str()),
        ("x-csrf-token", csrf.as_str()),
        ("origin", "http://evil.example"),
        ("host", host.as_str()),
    ];
    let r = send(
        &engine,
        "PATCH",
        "/v1/subscriptions/ops",
        &cross,
        patch.clone(),
    )
    .await;
    assert_eq!((r.status, code(&r).as_str()), (403, "cross_origin"));
    // The console itself: cookie and token from the same origin.
    let good = [("cookie", cookie.as_str()), ("x-csrf-token", csrf.as_str())];
    let r = send(&engine, "PATCH", "/v1/subscriptions/ops", &good, patch).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let (_, ops) = engine.get("/v1/subscriptions/ops").await;
    assert_eq!(ops["enabled"], false);

    // Sign-out ends the session for pages and the API.
    let r = send(&engine, "POST", "/ui/logout", &good, None).await;
    assert_eq!(r.status, 204);
    assert!(
        r.headers["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    let r = send(&engine, "GET", "/ui", &with_cookie, None).await;
    assert_eq!(r.status, 303);
    let r = send(&engine, "GET", "/v1/subscriptions", &with_cookie, None).await;
    assert_eq!(r.status, 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_console_can_be_switched_off() {
    let (_work, engine) = engine("\n[ui]\nenabled = false\n").await;
    for path in ["/ui", "/ui/login", "/ui/assets/console.js"] {
        let r = send(&engine, "GET", path, &[], None).await;
        assert_eq!((r.status, code(&r).as_str()), (404, "not_found"), "{path}");
    }
    let r = sign_in(&engine, TOKEN).await;
    assert_eq!(r.status, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_read_token_signs_in_to_a_read_only_console_and_a_publish_token_cannot() {
    let (_work, engine) = engine(
        "\n[[server.tokens]]\nname = \"viewer\"\nscope = \"read\"\ntoken = \"viewer-token-0123456789\"\n\
         \n[[server.tokens]]\nname = \"producer\"\nscope = \"publish\"\ntoken = \"producer-token-0123456789\"\n",
    )
    .await;
    let r = sign_in(&engine, "producer-token-0123456789").await;
    assert_eq!((r.status, code(&r).as_str()), (401, "unauthorized"));
    let r = sign_in(&engine, "viewer-token-0123456789").await;
    assert_eq!(r.status, 204);
    let set_cookie = r.headers["set-cookie"].to_str().unwrap().to_owned();
    let cookie = set_cookie.split(';').next().unwrap().to_owned();
    let page = send(
        &engine,
        "GET",
        "/ui/subscriptions",
        &[("cookie", &cookie)],
        None,
    )
    .await;
    assert_eq!(page.status, 200);
    let csrf = csrf_of(&page.body);
    let session = [("cookie", cookie.as_str()), ("x-csrf-token", csrf.as_str())];
    let r = send(&engine, "GET", "/v1/subscriptions", &session, None).await;
    assert_eq!(r.status, 200);
    let create = json!({"url": "http://127.0.0.1:9/hook", "events": ["*"]});
    let r = send(&engine, "POST", "/v1/subscriptions", &session, Some(create)).await;
    assert_eq!(
        (r.status, code(&r).as_str()),
        (403, "insufficient_scope"),
        "{}",
        r.body
    );
    assert!(r.body.contains("console:viewer"), "{}", r.body);
}
