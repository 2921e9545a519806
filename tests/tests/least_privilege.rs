//! Least privilege, against the real binary and the real stores:
//! - scoped tokens: a publish token only publishes, a read token only reads, an admin
//!   token does everything, and the logs name the token behind each change;
//! - secrets at rest: the SQLite file (with its WAL) and the PostgreSQL table never hold a
//!   subscription's signing secret, secret settings or secret headers in plain text, the
//!   engine still signs correctly after a restart, rows from before encryption are
//!   encrypted at start, and a wrong key stops the start with a clear error;
//! - TLS to PostgreSQL: a server that the test gives a certificate of its own making, and
//!   that refuses plain connections; `verify-full` with the right CA and `require` connect,
//!   `verify-full` with another CA and `disable` are refused, each with a clear message.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};
use wasmhook_tests::postgres::{connect, database, server_url};
use wasmhook_tests::{Engine, Receiver, SECRET, Workdir, serve_should_fail};

const WAIT: Duration = Duration::from_secs(30);

/// A secret setting's value (secret because `secret_settings` names it).
const SETTING_CANARY: &str = "setting-canary-7d1f0a";
/// A secret header's value (secret because its name holds `key`).
const HEADER_CANARY: &str = "header-canary-93c2be";
/// The key part of [`SECRET`], as it would appear in a plaintext spec.
fn secret_canary() -> &'static str {
    SECRET.trim_start_matches("whsec_")
}

/// The files under `paths` (recursively) whose bytes contain `needle`.
fn files_containing(paths: &[PathBuf], needle: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack: Vec<PathBuf> = paths.to_vec();
    while let Some(path) = stack.pop() {
        if path.is_dir() {
            for entry in std::fs::read_dir(&path).expect("read dir") {
                stack.push(entry.expect("entry").path());
            }
        } else if let Ok(bytes) = std::fs::read(&path)
            && bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
        {
            found.push(path);
        }
    }
    found
}

/// Creates, through the API, a subscription with a signing secret, a secret setting and a
/// secret header.
async fn create_secret_subscription(engine: &Engine, receiver: &Receiver) {
    let (status, body) = engine
        .post(
            "/v1/subscriptions",
            &json!({
                "id": "vault",
                "url": receiver.url("/vault"),
                "events": ["vault.*"],
                "secret": SECRET,
                "settings": {"channel": SETTING_CANARY},
                "secret_settings": ["channel"],
                "headers": {"x-api-key": HEADER_CANARY},
            }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
}

/// Publishes one event and checks the delivery carries the secret header and a signature
/// made with [`SECRET`].
async fn delivers_signed(engine: &Engine, receiver: &Receiver, n: usize) {
    engine
        .publish(json!({"type": "vault.opened", "data": {"n": n}}))
        .await;
    let got = receiver.wait_for("/vault", n, WAIT).await;
    let last = got.last().expect("a request");
    wasmhook_tests::verify(SECRET, last).expect("signed with the subscription's secret");
    assert_eq!(last.header("x-api-key"), HEADER_CANARY);
}

fn embedded_files(work: &Workdir) -> Vec<PathBuf> {
    ["wasmhook.db", "wasmhook.db-wal", "wasmhook.db-shm"]
        .iter()
        .map(|f| work.path().join("data").join(f))
        .filter(|p| p.exists())
        .collect()
}

fn assert_no_plaintext(files: &[PathBuf]) {
    assert!(!files.is_empty());
    for canary in [secret_canary(), SETTING_CANARY, HEADER_CANARY] {
        let found = files_containing(files, canary);
        assert!(found.is_empty(), "{canary} in plain text in {found:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_embedded_store_holds_no_plaintext_secret_and_signs_after_a_restart() {
    let receiver = Receiver::start().await;
    let work = Workdir::new();
    work.write_config(&wasmhook_tests::base_config());
    let engine = work.start().await;
    create_secret_subscription(&engine, &receiver).await;
    delivers_signed(&engine, &receiver, 1).await;

    // No key configured: the engine made one beside the database, private, and said so.
    let key_file = work.path().join("data/encryption.key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&key_file)
            .expect("key file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    assert!(
        engine
            .log()
            .contains("encrypted with a key kept beside the database"),
        "{}",
        engine.log()
    );
    // Checked while the engine runs (the WAL is live) and after it stopped.
    assert_no_plaintext(&embedded_files(&work));
    drop(engine);
    assert_no_plaintext(&embedded_files(&work));

    let engine = work.start().await;
    delivers_signed(&engine, &receiver, 2).await;
    drop(engine);

    // Another key in place of the one the rows were sealed with: a clear refusal.
    std::fs::write(&key_file, wasmhook::keyring::generate_key()).expect("replace the key");
    let (_, stderr) = serve_should_fail(&work.path().join("wasmhook.toml"));
    assert!(
        stderr.contains("cannot decrypt subscription `vault`"),
        "{stderr}"
    );
    assert!(stderr.contains("which is not configured"), "{stderr}");
    assert!(stderr.contains("encryption_key_files"), "{stderr}");
}

/// What the engine logs when it encrypted rows again at start.
const RESEALED: &str = "encrypted subscriptions with the current storage key";

/// Writes a config with `[storage] encryption_key_files = key_files` and starts it.
async fn start_with_key_files(work: &Workdir, key_files: &[&str]) -> Engine {
    work.write_config(&format!(
        "[storage]\nencryption_key_files = {key_files:?}\n{}",
        wasmhook_tests::base_config()
    ));
    work.start().await
}

#[tokio::test(flavor = "multi_thread")]
async fn rows_from_before_encryption_are_encrypted_at_start_and_keys_rotate() {
    use wasmhook::store::{EmbeddedStore, Store, StoredSubscription, SubscriptionSource};
    let receiver = Receiver::start().await;
    let work = Workdir::new();
    // An older engine wrote the spec in plain text.
    let spec = json!({
        "url": receiver.url("/vault"),
        "events": ["vault.*"],
        "headers": {"x-api-key": HEADER_CANARY},
        "settings": {"channel": SETTING_CANARY},
        "secret_settings": ["channel"],
        "secrets": [{"secret": SECRET}],
    });
    {
        let store = EmbeddedStore::open(&work.path().join("data"), 0).expect("open");
        store
            .put_subscription(StoredSubscription {
                id: "vault".into(),
                source: SubscriptionSource::Api,
                spec: spec.to_string(),
                enabled: true,
                disabled_reason: None,
                created_at_ms: 0,
                updated_at_ms: 0,
            })
            .await
            .expect("put");
    }
    assert!(!files_containing(&embedded_files(&work), HEADER_CANARY).is_empty());

    // Start with a configured key: the row is encrypted with it, and the old bytes are gone.
    work.write_storage_key();
    let engine = start_with_key_files(&work, &["storage.key"]).await;
    assert!(engine.log().contains(RESEALED), "{}", engine.log());
    assert_no_plaintext(&embedded_files(&work));
    delivers_signed(&engine, &receiver, 1).await;
    drop(engine);

    // Rotation: a new key first, the old one after it. Rows move to the new key at start,
    // after which the old key can go.
    std::fs::write(
        work.path().join("new.key"),
        wasmhook::keyring::generate_key(),
    )
    .expect("new key");
    let engine = start_with_key_files(&work, &["new.key", "storage.key"]).await;
    assert!(engine.log().contains(RESEALED), "{}", engine.log());
    drop(engine);
    let engine = start_with_key_files(&work, &["new.key"]).await;
    delivers_signed(&engine, &receiver, 2).await;
    assert_no_plaintext(&embedded_files(&work));
}

// --- Scoped tokens --------------------------------------------------------------------

/// An engine with a publish, a read and an admin token, plus the legacy `api_token`.
async fn scoped_engine(work: &Workdir) -> Engine {
    work.write_config(&format!(
        "[server]\napi_token = \"legacy-admin\"\nmetrics_require_token = true\n\
         [[server.tokens]]\nname = \"producer\"\nscope = \"publish\"\ntoken = \"pub-token\"\n\
         [[server.tokens]]\nname = \"grafana\"\nscope = \"read\"\ntoken_env = \"GRAFANA_TOKEN\"\n\
         [[server.tokens]]\nname = \"ops\"\nscope = \"admin\"\ntoken = \"ops-token\"\n\
         {}",
        wasmhook_tests::base_config()
    ));
    Engine::start(
        &work.path().join("wasmhook.toml"),
        &[("GRAFANA_TOKEN", "read-token")],
    )
    .await
}

/// `method path` with `token`; returns status and JSON answer.
async fn call(
    engine: &Engine,
    token: Option<&str>,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let client = reqwest::Client::new();
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut request = client.request(method, format!("{}{path}", engine.base));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// `method path` with `token`, asserting the status; returns the JSON answer.
async fn expect(
    engine: &Engine,
    token: Option<&str>,
    method: &str,
    path: &str,
    body: Option<Value>,
    status: u16,
) -> Value {
    let (got, answer) = call(engine, token, method, path, body).await;
    assert_eq!(got, status, "{method} {path}: {answer}");
    answer
}

/// `method path` with `token`, asserting a `403 insufficient_scope` that names `scope`.
async fn forbidden(
    engine: &Engine,
    token: Option<&str>,
    method: &str,
    path: &str,
    body: Option<Value>,
    scope: &str,
) {
    let answer = expect(engine, token, method, path, body, 403).await;
    assert_eq!(answer["code"], "insufficient_scope", "{answer}");
    let message = answer["message"].as_str().expect("message");
    assert!(message.contains(&format!("scope `{scope}`")), "{message}");
}

#[tokio::test(flavor = "multi_thread")]
async fn each_token_does_what_its_scope_allows_and_changes_are_logged_with_its_name() {
    let receiver = Receiver::start().await;
    let work = Workdir::new();
    let engine = scoped_engine(&work).await;
    let sub = json!({"id": "s", "url": receiver.url("/s"), "events": ["s.*"], "secret": SECRET});
    let event = json!({"type": "s.x"});
    let (pub_token, read_token) = (Some("pub-token"), Some("read-token"));

    // Publish token: publishes, and nothing else.
    expect(
        &engine,
        pub_token,
        "POST",
        "/v1/events",
        Some(event.clone()),
        202,
    )
    .await;
    expect(
        &engine,
        pub_token,
        "POST",
        "/v1/events/batch",
        Some(json!([event])),
        202,
    )
    .await;
    forbidden(&engine, pub_token, "GET", "/v1/subscriptions", None, "read").await;
    forbidden(
        &engine,
        pub_token,
        "POST",
        "/v1/subscriptions",
        Some(sub.clone()),
        "admin",
    )
    .await;
    forbidden(&engine, pub_token, "GET", "/metrics", None, "read").await;

    // Admin token: creates.
    expect(
        &engine,
        Some("ops-token"),
        "POST",
        "/v1/subscriptions",
        Some(sub),
        201,
    )
    .await;

    // Read token: reads everything, changes nothing.
    for path in [
        "/v1/subscriptions",
        "/v1/subscriptions/s",
        "/v1/deliveries",
        "/v1/dead-letters",
        "/v1/endpoints",
        "/v1/plugins",
    ] {
        expect(&engine, read_token, "GET", path, None, 200).await;
    }
    let metrics = reqwest::Client::new()
        .get(format!("{}/metrics", engine.base))
        .bearer_auth("read-token")
        .send()
        .await
        .expect("metrics");
    assert_eq!(metrics.status(), 200);
    let event = json!({"type": "s.x"});
    forbidden(
        &engine,
        read_token,
        "POST",
        "/v1/events",
        Some(event),
        "publish",
    )
    .await;
    forbidden(
        &engine,
        read_token,
        "DELETE",
        "/v1/subscriptions/s",
        None,
        "admin",
    )
    .await;
    let replay = "/v1/dead-letters/replay";
    forbidden(
        &engine,
        read_token,
        "POST",
        replay,
        Some(json!({})),
        "admin",
    )
    .await;

    // No token, or a wrong one: 401, whatever the route.
    for token in [None, Some("pub-token2"), Some("ops-toke")] {
        let body = expect(&engine, token, "GET", "/v1/subscriptions", None, 401).await;
        assert_eq!(body["code"], "unauthorized");
    }
    // Open paths stay open.
    expect(&engine, None, "GET", "/healthz", None, 200).await;

    // Every change names the token that made it.
    let (ops, legacy) = (Some("ops-token"), Some("legacy-admin"));
    let patch = json!({"name": "renamed"});
    expect(
        &engine,
        ops,
        "PATCH",
        "/v1/subscriptions/s",
        Some(patch),
        200,
    )
    .await;
    let rotate = "/v1/subscriptions/s/rotate-secret";
    expect(&engine, ops, "POST", rotate, Some(json!({})), 200).await;
    let event = json!({"type": "s.y"});
    expect(&engine, pub_token, "POST", "/v1/events", Some(event), 202).await;
    receiver.wait_for("/s", 1, WAIT).await;
    let page = expect(
        &engine,
        ops,
        "GET",
        "/v1/deliveries?subscription_id=s",
        None,
        200,
    )
    .await;
    let id = page["data"][0]["id"]
        .as_str()
        .expect("a delivery")
        .to_owned();
    engine
        .wait_delivery(&id, WAIT, |d| d["status"] != "pending")
        .await;
    let retry = format!("/v1/deliveries/{id}/retry");
    expect(&engine, legacy, "POST", &retry, Some(json!({})), 202).await;
    let replay = json!({"subscription_id": "s"});
    expect(
        &engine,
        ops,
        "POST",
        "/v1/dead-letters/replay",
        Some(replay),
        202,
    )
    .await;
    expect(&engine, legacy, "DELETE", "/v1/subscriptions/s", None, 204).await;
    // One audit line per change, naming the token; none for publishing or reading. The
    // log arrives through a pipe, so wait for the last change's line.
    engine
        .wait_log(WAIT, "the audit line of the last change", |log| {
            log.contains("method=DELETE path=/v1/subscriptions/s status=204")
        })
        .await;
    let log = engine.log();
    let audit: Vec<&str> = log.lines().filter(|l| l.contains("api change")).collect();
    for (method, path, status, token) in [
        ("POST", "/v1/subscriptions", 201, "ops"),
        ("PATCH", "/v1/subscriptions/s", 200, "ops"),
        ("POST", "/v1/subscriptions/s/rotate-secret", 200, "ops"),
        ("POST", retry.as_str(), 202, "api_token"),
        ("POST", "/v1/dead-letters/replay", 202, "ops"),
        ("DELETE", "/v1/subscriptions/s", 204, "api_token"),
    ] {
        let expected = format!("method={method} path={path} status={status} token={token}");
        assert!(
            audit.iter().any(|l| l.ends_with(&expected)),
            "no audit line `{expected}`:\n{log}"
        );
    }
    assert_eq!(audit.len(), 6, "{log}");
    // A refusal is logged too, with the scope it lacked.
    assert!(
        log.lines().any(|l| l.contains("api request refused")
            && l.contains("token=grafana")
            && l.contains("needed=admin")),
        "{log}"
    );
}

// --- PostgreSQL: secrets at rest ------------------------------------------------------

/// The files that hold table `table` of the database at `url` (its heap and its TOAST
/// table), after a checkpoint wrote them out.
async fn table_files(url: &str, table: &str) -> Vec<PathBuf> {
    let client = connect(url).await;
    client
        .batch_execute("CHECKPOINT")
        .await
        .expect("checkpoint");
    let data: String = client
        .query_one("SHOW data_directory", &[])
        .await
        .expect("data_directory")
        .get(0);
    let rows = client
        .query(
            "SELECT pg_relation_filepath(c.oid) FROM pg_class c WHERE c.oid = $1::text::regclass
             UNION ALL
             SELECT pg_relation_filepath(c.reltoastrelid) FROM pg_class c
             WHERE c.oid = $1::text::regclass AND c.reltoastrelid <> 0",
            &[&table],
        )
        .await
        .expect("relation paths");
    rows.iter()
        .map(|r| Path::new(&data).join(r.get::<_, String>(0)))
        .collect()
}

/// The write-ahead log segments written since `since`.
async fn recent_wal(url: &str, since: std::time::SystemTime) -> Vec<PathBuf> {
    let client = connect(url).await;
    let data: String = client
        .query_one("SHOW data_directory", &[])
        .await
        .expect("data_directory")
        .get(0);
    std::fs::read_dir(Path::new(&data).join("pg_wal"))
        .expect("pg_wal")
        .filter_map(Result::ok)
        .filter(|e| {
            e.metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t >= since)
                && e.path().is_file()
        })
        .map(|e| e.path())
        .collect()
}

fn postgres_config(url: &str, key_file: &str) -> String {
    format!(
        "[storage]\nbackend = \"postgres\"\nurl = \"{url}\"\nencryption_key_files = [\"{key_file}\"]\n{}",
        wasmhook_tests::base_config()
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn the_postgres_table_holds_no_plaintext_secret_and_every_node_needs_the_key() {
    let (Some(server), Some(url)) = (server_url(), database().await) else {
        return;
    };
    let started = std::time::SystemTime::now() - Duration::from_secs(1);
    let receiver = Receiver::start().await;
    let work = Workdir::new();

    // Without a key, PostgreSQL refuses to start, naming the setting.
    work.write_config(&format!(
        "[storage]\nbackend = \"postgres\"\nurl = \"{url}\"\n{}",
        wasmhook_tests::base_config()
    ));
    let (_, stderr) = serve_should_fail(&work.path().join("wasmhook.toml"));
    assert!(
        stderr.contains("needs a storage key, the same on every node"),
        "{stderr}"
    );
    assert!(stderr.contains("encryption_key_files"), "{stderr}");

    work.write_storage_key();
    work.write_config(&postgres_config(&url, "storage.key"));
    let engine = work.start().await;
    create_secret_subscription(&engine, &receiver).await;
    delivers_signed(&engine, &receiver, 1).await;

    let client = connect(&url).await;
    let spec: String = client
        .query_one("SELECT spec FROM subscriptions WHERE id = 'vault'", &[])
        .await
        .expect("row")
        .get(0);
    assert!(spec.starts_with("whsealed:v1:"), "{spec}");
    let mut files = table_files(&url, "subscriptions").await;
    files.extend(recent_wal(&server, started).await);
    assert_no_plaintext(&files);

    drop(engine);
    let engine = work.start().await;
    delivers_signed(&engine, &receiver, 2).await;
    drop(engine);

    // A node with another key cannot read the rows, and says which key they need.
    let other = Workdir::new();
    std::fs::write(
        other.path().join("other.key"),
        wasmhook::keyring::generate_key(),
    )
    .expect("key");
    other.write_config(&postgres_config(&url, "other.key"));
    let (_, stderr) = serve_should_fail(&other.path().join("wasmhook.toml"));
    assert!(
        stderr.contains("cannot decrypt subscription `vault`"),
        "{stderr}"
    );
    assert!(stderr.contains("which is not configured"), "{stderr}");
}

// --- TLS to PostgreSQL ----------------------------------------------------------------

/// A CA, in PEM, with the issuer that signs with it.
struct Ca {
    pem: String,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

fn ca(name: &str) -> Ca {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = params.self_signed(&key).expect("self-signed");
    Ca {
        pem: cert.pem(),
        issuer: rcgen::Issuer::new(params, key),
    }
}

/// A PostgreSQL cluster of its own that accepts only TLS connections, with a certificate
/// for `localhost` and `127.0.0.1` signed by `ca`; stopped on drop.
struct SslCluster {
    url: String,
    dir: String,
}

impl SslCluster {
    fn start(ca: &Ca, files: &Path) -> Self {
        let params = rcgen::CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])
            .expect("params");
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &ca.issuer).expect("sign");
        let (cert_file, key_file) = (files.join("server.crt"), files.join("server.key"));
        std::fs::write(&cert_file, cert.pem()).expect("write cert");
        std::fs::write(&key_file, key.serialize_pem()).expect("write key");
        let out = std::process::Command::new(scripts().join("pg-cluster"))
            .args(["start", "--ssl"])
            .arg(&cert_file)
            .arg(&key_file)
            .output()
            .expect("run scripts/pg-cluster");
        assert!(
            out.status.success(),
            "scripts/pg-cluster start --ssl failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let printed = String::from_utf8(out.stdout).expect("utf-8");
        let (url, dir) = printed.trim().split_once(' ').expect("`<url> <dir>`");
        Self {
            url: url.to_owned(),
            dir: dir.to_owned(),
        }
    }
}

impl Drop for SslCluster {
    fn drop(&mut self) {
        let _ = std::process::Command::new(scripts().join("pg-cluster"))
            .args(["stop", &self.dir])
            .status();
    }
}

fn scripts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts")
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_tls_verifies_the_server_and_says_why_a_connection_is_refused() {
    // The PostgreSQL tests run where `scripts/test` set them up (and installed the server).
    if server_url().is_none() {
        return;
    }
    let files = tempfile::tempdir().expect("tempdir");
    let right = ca("wasmhook test CA");
    let cluster = SslCluster::start(&right, files.path());
    let ca_file = files.path().join("ca.pem");
    std::fs::write(&ca_file, &right.pem).expect("write CA");
    let other_ca_file = files.path().join("other-ca.pem");
    std::fs::write(&other_ca_file, ca("another CA").pem).expect("write CA");
    let receiver = Receiver::start().await;

    let config = |tls: &str| {
        let work = Workdir::new();
        work.write_storage_key();
        work.write_config(&format!(
            "[storage]\nbackend = \"postgres\"\nurl = \"{}\"\nencryption_key_files = [\"storage.key\"]\n{tls}\n{}",
            cluster.url,
            wasmhook_tests::base_config()
        ));
        work
    };

    // verify-full with the CA that signed the server's certificate: connected, and works.
    let work = config(&format!(
        "sslmode = \"verify-full\"\nca_file = \"{}\"",
        ca_file.display()
    ));
    let engine = work.start().await;
    assert!(
        engine
            .log()
            .contains("connected to PostgreSQL sslmode=\"verify-full\""),
        "{}",
        engine.log()
    );
    create_secret_subscription(&engine, &receiver).await;
    delivers_signed(&engine, &receiver, 1).await;
    drop(engine);

    // require (here from the URL): encrypted, certificate not checked.
    let work = Workdir::new();
    work.write_storage_key();
    work.write_config(&format!(
        "[storage]\nbackend = \"postgres\"\nurl = \"{}?sslmode=require\"\nencryption_key_files = [\"storage.key\"]\n{}",
        cluster.url,
        wasmhook_tests::base_config()
    ));
    let engine = work.start().await;
    delivers_signed(&engine, &receiver, 2).await;
    drop(engine);

    // verify-full with a CA that did not sign it: refused, naming the fix.
    let work = config(&format!(
        "sslmode = \"verify-full\"\nca_file = \"{}\"",
        other_ca_file.display()
    ));
    let (_, stderr) = serve_should_fail(&work.path().join("wasmhook.toml"));
    assert!(stderr.contains("invalid peer certificate"), "{stderr}");
    assert!(
        stderr.contains("ca_file must hold the CA that signed it"),
        "{stderr}"
    );

    // A plain connection to a server that requires TLS: refused, naming the fix.
    let work = config("sslmode = \"disable\"");
    let (_, stderr) = serve_should_fail(&work.path().join("wasmhook.toml"));
    assert!(stderr.contains("no pg_hba.conf entry"), "{stderr}");
    assert!(
        stderr.contains("the server accepts only TLS connections"),
        "{stderr}"
    );
}
