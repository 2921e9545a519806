//! Egress through an HTTP proxy on the real binary: a real CONNECT proxy on loopback,
//! written here, carries plain and TLS deliveries; `NO_PROXY` sends a destination around
//! it; and the SSRF guard still refuses an internal destination before the proxy is asked.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use wasmhook_tests::{Engine, PROBE, Receiver, SECRET, Workdir, verify};

const WAIT: Duration = Duration::from_secs(30);

/// A CONNECT proxy: records each request line, dials the target and splices the bytes.
struct ConnectProxy {
    addr: std::net::SocketAddr,
    seen: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ConnectProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ConnectProxy {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("addr");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(tunnel(client, Arc::clone(&log)));
            }
        });
        Self { addr, seen, task }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The request lines received, such as `CONNECT 127.0.0.1:4567 HTTP/1.1`.
    fn seen(&self) -> Vec<String> {
        self.seen.lock().expect("lock").clone()
    }
}

async fn tunnel(mut client: TcpStream, log: Arc<Mutex<Vec<String>>>) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if client.read_exact(&mut byte).await.is_err() || head.len() > 8192 {
            return;
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let line = head.lines().next().unwrap_or_default().to_owned();
    log.lock().expect("lock").push(line.clone());
    let mut parts = line.split_whitespace();
    let (Some("CONNECT"), Some(target)) = (parts.next(), parts.next()) else {
        let _ = client
            .write_all(b"HTTP/1.1 405 Method Not Allowed\r\ncontent-length: 0\r\n\r\n")
            .await;
        return;
    };
    let Ok(mut upstream) = TcpStream::connect(target).await else {
        let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n").await;
        return;
    };
    if client
        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        .await
        .is_ok()
    {
        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn deliveries_go_through_the_proxy_and_the_guard_still_holds() {
    let proxy = ConnectProxy::start().await;
    let plain = Receiver::start().await;
    let (tls, ca_pem) = Receiver::start_tls().await;
    let work = Workdir::new();
    work.install_plugin("probe", PROBE);
    std::fs::write(work.path().join("ca.pem"), ca_pem).expect("write CA");
    // Only 127.0.0.1 is allowed, so the guard has something to refuse; the proxy itself is
    // the operator's and is not judged.
    work.write_config(&format!(
        "[delivery]\nallowed_cidrs = [\"127.0.0.1/32\"]\nretry_schedule = [\"10ms\"]\n\
         tls_ca_file = \"ca.pem\"\nproxy = \"{}\"\n\n\
         [[subscriptions]]\nid = \"plain\"\nurl = \"{}\"\nevents = [\"a.*\"]\nsecret = \"{SECRET}\"\n\n\
         [[subscriptions]]\nid = \"tls\"\nurl = \"{}\"\nevents = [\"a.*\"]\nsecret = \"{SECRET}\"\n",
        proxy.url(),
        plain.url("/plain"),
        tls.url("/tls"),
    ));
    let engine = work.start().await;
    engine
        .publish(json!({"type": "a.b", "data": {"via": "proxy"}}))
        .await;
    let got = &plain.wait_for("/plain", 1, WAIT).await[0];
    verify(SECRET, got).expect("signed");
    let got = &tls.wait_for("/tls", 1, WAIT).await[0];
    verify(SECRET, got).expect("signed, over TLS inside the tunnel");
    assert_eq!(got.json()["data"]["via"], "proxy");
    let seen = proxy.seen();
    for receiver in [&plain, &tls] {
        let line = format!("CONNECT 127.0.0.1:{} HTTP/1.1", receiver.addr().port());
        assert!(seen.contains(&line), "the proxy saw {seen:?}, not {line}");
    }

    // An adapter steering the request to an internal address outside the allowlist is
    // refused by the guard before any tunnel is asked for.
    let (status, answer) = engine
        .post(
            "/v1/subscriptions",
            &json!({"id": "steered", "url": plain.url("/plain"), "events": ["none"],
                    "plugin": "probe", "settings": {"url": "http://127.0.0.2:9/evil"}}),
        )
        .await;
    assert_eq!(status, 201, "{answer}");
    let attempt = engine.test_ping("steered").await;
    let error = attempt["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("refused to connect") && error.contains("127.0.0.2"),
        "{attempt}"
    );
    assert!(
        !proxy.seen().iter().any(|l| l.contains("127.0.0.2")),
        "the proxy was asked for a blocked destination: {:?}",
        proxy.seen()
    );
    // And a subscription to one is refused at create, proxy or not.
    let (status, answer) = engine
        .post(
            "/v1/subscriptions",
            &json!({"url": "http://127.0.0.2:9/evil", "events": ["*"]}),
        )
        .await;
    assert_eq!(status, 400, "{answer}");
    drop(engine);

    // NO_PROXY (here from the environment) sends a destination around the proxy.
    let before = proxy.seen().len();
    let config = work.path().join("wasmhook.toml");
    let engine = Engine::start(&config, &[("NO_PROXY", "127.0.0.1")]).await;
    engine.publish(json!({"type": "a.c", "data": {}})).await;
    plain.wait_for("/plain", 2, WAIT).await;
    tls.wait_for("/tls", 2, WAIT).await;
    assert_eq!(
        proxy.seen().len(),
        before,
        "NO_PROXY=127.0.0.1 still went through the proxy: {:?}",
        proxy.seen()
    );
}
