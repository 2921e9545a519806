//! Egress through an HTTP proxy on the real binary: a real CONNECT proxy on loopback,
//! written here, carries plain and TLS deliveries; `NO_PROXY` sends a destination around
//! it; and the SSRF guard still refuses an internal destination before the proxy is asked.
//! A receiver requiring mutual TLS, with a CA the test makes, takes deliveries from the
//! subscriptions that carry a client certificate it issued and refuses the others.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
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

/// The test's own PKI: a CA, a server certificate for 127.0.0.1 and a client certificate,
/// both issued by it.
struct Pki {
    ca_pem: String,
    server: rcgen::Certificate,
    server_key: rcgen::KeyPair,
    ca_der: Vec<u8>,
    client_pem: String,
    client_key_pem: String,
}

impl Pki {
    fn new() -> Self {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
            KeyPair,
        };
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca = CertificateParams::new(Vec::new()).expect("CA params");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "wasmhook test CA");
        let ca_cert = ca.self_signed(&ca_key).expect("CA certificate");
        let issuer = Issuer::new(ca, ca_key);
        let server_key = KeyPair::generate().expect("server key");
        let mut server = CertificateParams::new(vec!["127.0.0.1".to_owned()]).expect("params");
        server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server = server.signed_by(&server_key, &issuer).expect("server cert");
        let client_key = KeyPair::generate().expect("client key");
        let mut client = CertificateParams::new(Vec::new()).expect("params");
        client
            .distinguished_name
            .push(DnType::CommonName, "wasmhook test client");
        client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let client = client.signed_by(&client_key, &issuer).expect("client cert");
        Self {
            ca_pem: ca_cert.pem(),
            ca_der: ca_cert.der().to_vec(),
            server,
            server_key,
            client_pem: client.pem(),
            client_key_pem: client_key.serialize_pem(),
        }
    }

    /// A server that requires a client certificate issued by the CA.
    fn mtls_server(&self) -> tokio_rustls::rustls::ServerConfig {
        use tokio_rustls::rustls;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(rustls::pki_types::CertificateDer::from(self.ca_der.clone()))
            .expect("CA root");
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            roots.into(),
            provider.clone(),
        )
        .build()
        .expect("client verifier");
        let key = rustls::pki_types::PrivateKeyDer::try_from(self.server_key.serialize_der())
            .expect("server key");
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_client_cert_verifier(verifier)
            .with_single_cert(vec![self.server.der().clone()], key)
            .expect("server config")
    }
}

/// True when `text` shows any of the private key's material.
fn leaks_key(text: &str, key_pem: &str) -> bool {
    let body: String = key_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    text.contains("PRIVATE KEY") || text.contains(&body[..32])
}

#[tokio::test(flavor = "multi_thread")]
async fn an_mtls_receiver_takes_deliveries_only_with_a_client_certificate() {
    let pki = Pki::new();
    let receiver = Receiver::start_with_tls(pki.mtls_server()).await;
    let work = Workdir::new();
    for (name, text) in [
        ("ca.pem", &pki.ca_pem),
        ("client.crt", &pki.client_pem),
        ("client.key", &pki.client_key_pem),
    ] {
        std::fs::write(work.path().join(name), text).expect("write PEM");
    }
    // The guard stays on: only 127.0.0.1 is allowed.
    work.write_config(&format!(
        "[delivery]\nallowed_cidrs = [\"127.0.0.1/32\"]\nretry_schedule = [\"10ms\"]\n\
         tls_ca_file = \"ca.pem\"\n\n\
         [[subscriptions]]\nid = \"file\"\nurl = \"{}\"\nevents = [\"a.*\"]\nsecret = \"{SECRET}\"\n\
         client_certificate_file = \"client.crt\"\nclient_key_file = \"client.key\"\n",
        receiver.url("/file"),
    ));
    let engine = work.start().await;

    // From the config file: the certificate files are read and presented.
    engine
        .publish(json!({"type": "a.b", "data": {"mtls": true}}))
        .await;
    let got = &receiver.wait_for("/file", 1, WAIT).await[0];
    verify(SECRET, got).expect("signed, over mutual TLS");

    // Through the API: one subscription with the certificate, one without.
    let certificate = json!({"certificate": pki.client_pem, "private_key": pki.client_key_pem});
    let (status, created) = engine
        .post(
            "/v1/subscriptions",
            &json!({"id": "api", "url": receiver.url("/api"), "events": ["none"],
                    "client_certificate": certificate}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    assert!(
        !leaks_key(&created.to_string(), &pki.client_key_pem),
        "{created}"
    );
    let (status, bare) = engine
        .post(
            "/v1/subscriptions",
            &json!({"id": "bare", "url": receiver.url("/bare"), "events": ["none"]}),
        )
        .await;
    assert_eq!(status, 201, "{bare}");
    let attempt = engine.test_ping("api").await;
    assert_eq!(attempt["status_code"], 200, "{attempt}");
    assert_eq!(receiver.requests_to("/api").len(), 1);
    let attempt = engine.test_ping("bare").await;
    assert_eq!(attempt["status_code"], Value::Null, "{attempt}");
    assert!(
        !attempt["error"].as_str().unwrap_or_default().is_empty(),
        "{attempt}"
    );
    assert!(
        receiver.requests_to("/bare").is_empty(),
        "accepted without a certificate"
    );

    // Reads describe the certificate and never show the key; nor do the logs.
    let (status, one) = engine.get("/v1/subscriptions/api").await;
    assert_eq!(status, 200, "{one}");
    assert_eq!(
        one["client_certificate"]["subject"], "CN=wasmhook test client",
        "{one}"
    );
    assert_eq!(one["client_certificate"]["issuer"], "CN=wasmhook test CA");
    let (status, list) = engine.get("/v1/subscriptions").await;
    assert_eq!(status, 200, "{list}");
    for text in [one.to_string(), list.to_string(), engine.log()] {
        assert!(
            !leaks_key(&text, &pki.client_key_pem),
            "the key leaked: {text}"
        );
    }

    // A patch of another field keeps the certificate; `null` removes it.
    let (status, patched) = engine
        .request(
            "PATCH",
            "/v1/subscriptions/api",
            Some(&json!({"events": ["other"]})),
        )
        .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(engine.test_ping("api").await["status_code"], 200);
    let (status, patched) = engine
        .request(
            "PATCH",
            "/v1/subscriptions/api",
            Some(&json!({"client_certificate": null})),
        )
        .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["subscription"]["client_certificate"], Value::Null);
    assert_eq!(engine.test_ping("api").await["status_code"], Value::Null);
    assert_eq!(receiver.requests_to("/api").len(), 2);

    // A bad pair is refused with the fix; the guard still refuses an internal address.
    let (status, answer) = engine
        .post(
            "/v1/subscriptions",
            &json!({"url": receiver.url("/x"), "events": ["*"],
                    "client_certificate": {"certificate": pki.client_pem, "private_key": pki.ca_pem}}),
        )
        .await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["code"], "invalid_subscription", "{answer}");
    let (status, answer) = engine
        .post(
            "/v1/subscriptions",
            &json!({"url": "https://127.0.0.2:9/", "events": ["*"], "client_certificate": certificate}),
        )
        .await;
    assert_eq!(status, 400, "{answer}");
}
