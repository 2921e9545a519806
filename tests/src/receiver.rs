//! A real HTTP receiver on loopback for the tests: it records every request and answers
//! from a per-path script of replies (then `200`), so tests can make it fail, hang, reset
//! or redirect on cue.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::Notify;

/// How the receiver answers one request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// This status, empty body.
    Status(u16),
    /// This status with these headers.
    WithHeaders(u16, Vec<(&'static str, String)>),
    /// Never answer.
    Hang,
    /// Answer this status after this long.
    Delay(Duration, u16),
    /// Drop the connection without answering.
    Reset,
}

/// One request as received.
#[derive(Debug, Clone)]
pub struct Received {
    /// HTTP method.
    pub method: String,
    /// Path and query.
    pub path: String,
    /// All headers.
    pub headers: HeaderMap,
    /// The body, byte for byte.
    pub body: Bytes,
    /// When it arrived.
    pub at: Instant,
    /// When it arrived, Unix ms (to compare with times the engine reports).
    pub wall_ms: i64,
}

impl Received {
    /// A header as text ("" when absent).
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// The body parsed as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body of {} is not JSON ({e}): {}",
                self.path,
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

#[derive(Debug, Default)]
struct State {
    requests: Mutex<Vec<Received>>,
    scripts: Mutex<HashMap<String, VecDeque<Reply>>>,
    defaults: Mutex<HashMap<String, Reply>>,
    arrived: Notify,
}

/// The receiver; it stops when dropped.
#[derive(Debug)]
pub struct Receiver {
    addr: SocketAddr,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
    scheme: &'static str,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Receiver {
    /// Binds 127.0.0.1:0 and serves plain HTTP.
    pub async fn start() -> Self {
        Self::serve(None).await
    }

    /// Binds 127.0.0.1:0 and serves HTTPS with a fresh self-signed certificate for
    /// `127.0.0.1` and `localhost`; returns the certificate as PEM, for the engine to trust.
    pub async fn start_tls() -> (Self, String) {
        use tokio_rustls::rustls;
        let certified = rcgen::generate_simple_self_signed(vec![
            "127.0.0.1".to_owned(),
            "localhost".to_owned(),
        ])
        .expect("self-signed certificate");
        let key = rustls::pki_types::PrivateKeyDer::try_from(certified.signing_key.serialize_der())
            .expect("private key");
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(vec![certified.cert.der().clone()], key)
        .expect("server config");
        (Self::start_with_tls(config).await, certified.cert.pem())
    }

    /// Binds 127.0.0.1:0 and serves HTTPS with `config` (for a test's own CA, or a
    /// receiver that requires client certificates).
    pub async fn start_with_tls(config: tokio_rustls::rustls::ServerConfig) -> Self {
        Self::serve(Some(tokio_rustls::TlsAcceptor::from(Arc::new(config)))).await
    }

    async fn serve(tls: Option<tokio_rustls::TlsAcceptor>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the receiver");
        let addr = listener.local_addr().expect("bound address");
        let state = Arc::new(State::default());
        let shared = Arc::clone(&state);
        let scheme = if tls.is_some() { "https" } else { "http" };
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let state = Arc::clone(&shared);
                let tls = tls.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| handle(Arc::clone(&state), req));
                    let http = hyper::server::conn::http1::Builder::new();
                    match tls {
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(stream).await {
                                let _ = http.serve_connection(TokioIo::new(stream), service).await;
                            }
                        }
                        None => {
                            let _ = http.serve_connection(TokioIo::new(stream), service).await;
                        }
                    }
                });
            }
        });
        Self {
            addr,
            state,
            task,
            scheme,
        }
    }

    /// `http(s)://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("{}://{}{path}", self.scheme, self.addr)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Replies for the next requests to `path`, in order; after them, the default.
    pub fn script(&self, path: &str, replies: impl IntoIterator<Item = Reply>) {
        self.state
            .scripts
            .lock()
            .expect("lock")
            .entry(path.to_owned())
            .or_default()
            .extend(replies);
    }

    /// The reply for `path` once its script is used up (default `200`).
    pub fn set_default(&self, path: &str, reply: Reply) {
        self.state
            .defaults
            .lock()
            .expect("lock")
            .insert(path.to_owned(), reply);
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Received> {
        self.state.requests.lock().expect("lock").clone()
    }

    /// Requests to `path` so far.
    pub fn requests_to(&self, path: &str) -> Vec<Received> {
        self.requests()
            .into_iter()
            .filter(|r| r.path == path)
            .collect()
    }

    /// Waits until `done` holds for all requests received so far; panics after `timeout`.
    pub async fn wait_until(
        &self,
        timeout: Duration,
        what: &str,
        done: impl Fn(&[Received]) -> bool,
    ) {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.state.arrived.notified();
            if done(&self.requests()) {
                return;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() && !done(&self.requests())
            {
                panic!(
                    "waited {timeout:?} for {what}; got {} requests",
                    self.requests().len()
                );
            }
        }
    }

    /// Waits until at least `n` requests reached `path`, and returns them. Panics after
    /// `timeout` with what did arrive.
    pub async fn wait_for(&self, path: &str, n: usize, timeout: Duration) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.state.arrived.notified();
            let got = self.requests_to(path);
            if got.len() >= n {
                return got;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!(
                    "waited {timeout:?} for {n} requests to {path}, got {}: {:?}",
                    got.len(),
                    self.requests().iter().map(|r| &r.path).collect::<Vec<_>>()
                );
            }
        }
    }
}

async fn handle(
    state: Arc<State>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, std::io::Error> {
    let (parts, body) = req.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    let reply = {
        let mut scripts = state.scripts.lock().expect("lock");
        scripts.get_mut(&path).and_then(VecDeque::pop_front)
    }
    .or_else(|| state.defaults.lock().expect("lock").get(&path).cloned())
    .unwrap_or(Reply::Status(200));
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    state.requests.lock().expect("lock").push(Received {
        method: parts.method.to_string(),
        path,
        headers: parts.headers,
        body,
        at: Instant::now(),
        wall_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64),
    });
    state.arrived.notify_waiters();
    match reply {
        Reply::Status(code) => Ok(response(code, Vec::new())),
        Reply::WithHeaders(code, headers) => Ok(response(code, headers)),
        Reply::Delay(wait, code) => {
            tokio::time::sleep(wait).await;
            Ok(response(code, Vec::new()))
        }
        Reply::Hang => {
            std::future::pending::<()>().await;
            unreachable!()
        }
        Reply::Reset => Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "scripted reset",
        )),
    }
}

fn response(code: u16, headers: Vec<(&'static str, String)>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(b"ok")));
    *response.status_mut() = StatusCode::from_u16(code).expect("valid status");
    for (name, value) in headers {
        response
            .headers_mut()
            .insert(name, value.parse().expect("valid header value"));
    }
    response
}
