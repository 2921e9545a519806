//! The outbound HTTP client: hyper with pooled keep-alive connections, rustls for https,
//! and a connector that resolves names itself and refuses internal addresses (see `ssrf`)
//! at connect time, directly or through a CONNECT proxy (see `proxy`). Redirects are never
//! followed, and response bodies are read only up to a cap.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::Uri;
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

use super::proxy::{Proxy, Route};
use super::ssrf::NetworkPolicy;
use crate::outbound::port_of;
use crate::secret::redact_url;

/// How much of a response body is kept on the attempt record.
pub const RESPONSE_SNIPPET_BYTES: usize = 4 << 10;

/// What the receiver answered.
#[derive(Debug, Clone)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// The raw `Retry-After` header, if any.
    pub retry_after: Option<String>,
    /// The start of the body, lossily decoded.
    pub body_snippet: String,
}

/// Why no response was received.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The attempt ran past its time limit.
    #[error("no response within {}", humantime::format_duration(*.0))]
    Timeout(Duration),
    /// The SSRF guard refused every address of the host.
    #[error("{0}")]
    Blocked(String),
    /// Connecting, TLS, writing or reading failed.
    #[error("{0}")]
    Network(String),
}

/// A connection attempt refused by the guard.
#[derive(Debug, thiserror::Error)]
#[error(
    "refused to connect to {host} ({ip}): it is {reason}; allow it with [delivery] allow_private_networks or allowed_cidrs"
)]
pub struct BlockedAddress {
    host: String,
    ip: IpAddr,
    reason: &'static str,
}

/// Resolves, filters through the policy and connects, for every new connection: directly,
/// or through the proxy when one is set and the destination is not in `no_proxy`.
#[derive(Debug, Clone)]
pub struct GuardedConnector {
    policy: Arc<NetworkPolicy>,
    proxy: Option<Arc<Proxy>>,
}

type ConnectFuture =
    Pin<Box<dyn Future<Output = Result<TokioIo<TcpStream>, std::io::Error>> + Send>>;

impl tower_service::Service<Uri> for GuardedConnector {
    type Response = TokioIo<TcpStream>;
    type Error = std::io::Error;
    type Future = ConnectFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let policy = Arc::clone(&self.policy);
        let route = self.proxy.as_ref().and_then(|p| p.route(&uri));
        Box::pin(async move {
            match route {
                Some(route) => tunnel(&policy, route, uri).await,
                None => connect(&policy, &uri).await,
            }
        })
    }
}

/// The host of `uri` (without IPv6 brackets) and the addresses it stands for: itself when
/// it is an IP literal, otherwise what the system resolver answers. Used at connect time
/// and when a subscription is created, so both judge the same addresses.
pub async fn resolve(uri: &Uri) -> Result<(&str, Vec<SocketAddr>), std::io::Error> {
    let host = uri.host().ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "the URL has no host")
    })?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = port_of(uri);
    let addrs = match host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => tokio::net::lookup_host((host, port)).await?.collect(),
    };
    Ok((host, addrs))
}

/// A subscription URL that is, or resolves to, an address the policy blocks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{url}` goes to {ip}, {reason}; the engine does not deliver to internal networks \
     unless [delivery] allow_private_networks or allowed_cidrs allows it"
)]
pub struct BlockedDestination {
    /// The URL.
    pub url: String,
    /// The blocked address it goes to.
    pub ip: IpAddr,
    /// What kind of address that is.
    pub reason: &'static str,
}

/// How long name resolution may take when a destination is vetted.
const VET_RESOLVE_TIMEOUT: Duration = Duration::from_secs(3);

/// Vets a subscription's URL before it is stored: refused (`Err`, saying why) when its host
/// is, or resolves to, any address `policy` blocks, even if it also has a public one. A
/// host that does not resolve now is allowed with a warning (`Ok(Some)`): deliveries fail
/// until it does. The connector checks again at every connect, so a host that turns
/// internal later still fails.
pub async fn vet_destination(
    policy: &NetworkPolicy,
    uri: &Uri,
) -> Result<Option<String>, BlockedDestination> {
    let addresses = match tokio::time::timeout(VET_RESOLVE_TIMEOUT, resolve(uri)).await {
        Ok(Ok((_, addrs))) => addrs,
        Ok(Err(e)) => {
            return Ok(Some(format!(
                "`{}` does not resolve right now ({e}); deliveries fail until it does",
                redact_url(&uri.to_string())
            )));
        }
        Err(_) => {
            return Ok(Some(format!(
                "resolving `{}` took over {VET_RESOLVE_TIMEOUT:?}; deliveries fail until it resolves",
                redact_url(&uri.to_string())
            )));
        }
    };
    for ip in addresses.iter().map(SocketAddr::ip) {
        if let Some(reason) = policy.blocked(ip) {
            return Err(BlockedDestination {
                url: redact_url(&uri.to_string()),
                ip,
                reason,
            });
        }
    }
    Ok(None)
}

async fn connect(policy: &NetworkPolicy, uri: &Uri) -> Result<TokioIo<TcpStream>, std::io::Error> {
    let invalid = |msg: &str| std::io::Error::new(std::io::ErrorKind::InvalidInput, msg.to_owned());
    let (host, addrs) = resolve(uri).await?;
    let mut last_err = None;
    for addr in addrs {
        if let Some(reason) = policy.blocked(addr.ip()) {
            last_err.get_or_insert_with(|| {
                std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    BlockedAddress {
                        host: host.to_owned(),
                        ip: addr.ip(),
                        reason,
                    },
                )
            });
            continue;
        }
        match TcpStream::connect(addr).await {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                return Ok(TokioIo::new(stream));
            }
            Err(e) => last_err = Some(e),
        }
    }
    Err(last_err.unwrap_or_else(|| invalid(&format!("`{host}` resolved to no address"))))
}

/// Opens a CONNECT tunnel to `uri` through the proxy, after holding the destination to the
/// guard: its host is resolved here, and any internal address refuses it, as a direct
/// connection would. When the name does not resolve here (egress networks often leave name
/// resolution to the proxy), the proxy decides; an IP literal is always judged.
async fn tunnel(
    policy: &NetworkPolicy,
    route: Route,
    uri: Uri,
) -> Result<TokioIo<TcpStream>, std::io::Error> {
    if let Ok((host, addrs)) = resolve(&uri).await {
        for addr in addrs {
            if let Some(reason) = policy.blocked(addr.ip()) {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    BlockedAddress {
                        host: host.to_owned(),
                        ip: addr.ip(),
                        reason,
                    },
                ));
            }
        }
    }
    let mut tunnel =
        hyper_util::client::legacy::connect::proxy::Tunnel::new(route.proxy.clone(), ProxyDialer);
    if let Some(auth) = route.auth {
        tunnel = tunnel.with_auth(auth);
    }
    tower_service::Service::call(&mut tunnel, uri)
        .await
        .map_err(|e| {
            std::io::Error::other(format!(
                "through the proxy {}: {}",
                route.proxy,
                describe(&e)
            ))
        })
}

/// The cause chain of an error on one line.
fn describe(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

/// Connects to the proxy itself. The proxy is the operator's own infrastructure (usually on
/// an internal address), so the guard does not judge it.
#[derive(Debug, Clone, Copy)]
struct ProxyDialer;

impl tower_service::Service<Uri> for ProxyDialer {
    type Response = TokioIo<TcpStream>;
    type Error = std::io::Error;
    type Future = ConnectFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, proxy: Uri) -> Self::Future {
        let open = NetworkPolicy {
            allow_private: true,
            allowlist: Vec::new(),
        };
        Box::pin(async move { connect(&open, &proxy).await })
    }
}

/// The pooled client used for every delivery.
#[derive(Debug, Clone)]
pub struct HttpClient {
    inner: Client<HttpsConnector<GuardedConnector>, Full<Bytes>>,
}

impl HttpClient {
    /// A client under `policy`, trusting the system roots plus the PEM certificates in
    /// `extra_ca_file`, if given.
    pub fn new(policy: NetworkPolicy, extra_ca_file: Option<&Path>) -> anyhow::Result<Self> {
        Self::with_proxy(policy, extra_ca_file, None)
    }

    /// Like `new`, sending through `proxy` (except its `no_proxy` destinations).
    pub fn with_proxy(
        policy: NetworkPolicy,
        extra_ca_file: Option<&Path>,
        proxy: Option<Proxy>,
    ) -> anyhow::Result<Self> {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;

        let mut roots = rustls::RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        for cert in native.certs {
            let _ = roots.add(cert);
        }
        if let Some(path) = extra_ca_file {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .map_err(|e| anyhow::anyhow!("cannot read CA file {}: {e}", path.display()))?
                .collect::<Result<_, _>>()
                .map_err(|e| anyhow::anyhow!("invalid PEM in CA file {}: {e}", path.display()))?;
            for cert in certs {
                roots.add(cert)?;
            }
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(GuardedConnector {
                policy: Arc::new(policy),
                proxy: proxy.map(Arc::new),
            });
        let inner = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .build(https);
        Ok(Self { inner })
    }

    /// Sends `request` and reads the status, `Retry-After` and the start of the body, all
    /// within `timeout`.
    pub async fn send(
        &self,
        request: http::Request<Full<Bytes>>,
        timeout: Duration,
    ) -> Result<Response, SendError> {
        self.send_reading(request, timeout, RESPONSE_SNIPPET_BYTES)
            .await
    }

    /// Like `send`, but keeps up to `body_limit` bytes of the response body.
    pub async fn send_reading(
        &self,
        request: http::Request<Full<Bytes>>,
        timeout: Duration,
        body_limit: usize,
    ) -> Result<Response, SendError> {
        match tokio::time::timeout(timeout, self.exchange(request, body_limit)).await {
            Ok(result) => result,
            Err(_) => Err(SendError::Timeout(timeout)),
        }
    }

    async fn exchange(
        &self,
        request: http::Request<Full<Bytes>>,
        body_limit: usize,
    ) -> Result<Response, SendError> {
        let response = self
            .inner
            .request(request)
            .await
            .map_err(|e| classify(&e))?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let mut body = response.into_body();
        let mut snippet = Vec::new();
        while snippet.len() < body_limit {
            match body.frame().await {
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        let room = body_limit - snippet.len();
                        snippet.extend_from_slice(&data[..data.len().min(room)]);
                    }
                }
                // A broken body after the status line still counts as the status.
                Some(Err(_)) | None => break,
            }
        }
        Ok(Response {
            status,
            retry_after,
            body_snippet: String::from_utf8_lossy(&snippet).into_owned(),
        })
    }
}

/// Names the real cause of a hyper client error: the guard's refusal, or the deepest
/// I/O error, instead of hyper's generic wrapper text.
fn classify(e: &hyper_util::client::legacy::Error) -> SendError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    let mut deepest = e.to_string();
    while let Some(err) = source {
        if let Some(blocked) = err.downcast_ref::<BlockedAddress>() {
            return SendError::Blocked(blocked.to_string());
        }
        deepest = err.to_string();
        source = err.source();
    }
    if e.is_connect() {
        SendError::Network(format!("cannot connect: {deepest}"))
    } else {
        SendError::Network(deepest)
    }
}
