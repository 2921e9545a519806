//! The engine's configuration: one typed struct, loaded in layers (defaults, then the TOML
//! file, then `WASMHOOK_*` environment variables) and validated once, at load.
//!
//! Every key is documented in `docs/configuration.md`; keep the two in step.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};

use crate::secret::Secret;

/// The whole configuration file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The HTTP API.
    pub server: ServerConfig,
    /// Where events and deliveries are kept.
    pub storage: StorageConfig,
    /// Where adapters are loaded from.
    pub plugins: PluginsConfig,
    /// How requests are sent and retried.
    pub delivery: DeliveryConfig,
    /// Input limits on the ingest API.
    pub limits: LimitsConfig,
    /// How long finished deliveries, dead letters and events are kept.
    pub retention: RetentionConfig,
    /// OpenTelemetry traces.
    pub telemetry: TelemetryConfig,
    /// The operator console at `/ui`.
    pub ui: UiConfig,
    /// Subscriptions declared in the file.
    pub subscriptions: Vec<SubscriptionConfig>,
    /// Where the engine consumes events from besides its API (NATS JetStream).
    pub sources: Vec<crate::source::SourceConfig>,
    /// The event type catalog: names, descriptions and JSON Schemas for `data`.
    pub event_types: Vec<crate::event::catalog::EventTypeConfig>,
}

/// `[server]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address of the HTTP API. Port 0 picks a free port; the bound address is logged.
    pub listen: SocketAddr,
    /// When set, `/v1/*` requires `Authorization: Bearer <token>`. Also `WASMHOOK_API_TOKEN`.
    pub api_token: Option<Secret>,
    /// More admin tokens, each as good as `api_token` (for example one per operator or
    /// tool, so one can be revoked without the others).
    pub api_tokens: Vec<Secret>,
    /// Named tokens, each with a scope: `[[server.tokens]]`.
    pub tokens: Vec<TokenConfig>,
    /// Whether `/metrics` needs a token too. `/healthz` and `/openapi.json` never do.
    pub metrics_require_token: bool,
    /// Origins (`https://hooks.example.com`) whose pages may send state-changing requests,
    /// besides the engine's own origin; for a console behind a proxy that rewrites `Host`.
    pub allowed_origins: Vec<String>,
    /// How long a client may take to send a request's headers, from the connection's
    /// start or from the first byte of a later request.
    pub header_read_timeout: HumanDuration,
    /// How long a kept-alive connection may wait for its next request.
    pub idle_timeout: HumanDuration,
    /// How long a client may take to send a request's whole body.
    pub body_read_timeout: HumanDuration,
    /// Most connections at once; default: 1,024, or half the open-file limit if that is
    /// lower. At the cap, the connection idle the longest is closed for a new one.
    pub max_connections: Option<usize>,
    /// Set from `WASMHOOK_API_TOKEN`, which replaces `api_token`; kept apart so the
    /// token's name in logs says where it came from.
    #[serde(skip)]
    pub env_api_token: Option<Secret>,
}

/// One `[[server.tokens]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// Shown in the logs of what the token changed; unique.
    pub name: String,
    /// What the token may do.
    pub scope: Scope,
    /// The token itself.
    #[serde(default)]
    pub token: Option<Secret>,
    /// Name of an environment variable holding the token, instead of `token`.
    #[serde(default)]
    pub token_env: Option<String>,
}

/// What a token may do. Each scope is a set of routes; `admin` holds them all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// `POST /v1/events` and `POST /v1/events/batch`: for producers.
    Publish,
    /// Every `GET` (and `/metrics`): for dashboards.
    Read,
    /// Everything.
    Admin,
}

impl Scope {
    /// The config and API spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Publish => "publish",
            Self::Read => "read",
            Self::Admin => "admin",
        }
    }
}

/// An accepted token with its name and scope, resolved from the config.
#[derive(Debug, Clone)]
pub struct ApiToken {
    /// `[[server.tokens]] name`, or where a legacy admin token came from (`api_token`,
    /// `api_tokens[1]`, `WASMHOOK_API_TOKEN`).
    pub name: String,
    /// What it may do.
    pub scope: Scope,
    /// The token.
    pub secret: Secret,
}

impl ServerConfig {
    /// Whether no token of any kind is configured, leaving the API open to whoever
    /// reaches it.
    pub fn is_open(&self) -> bool {
        self.api_token.is_none()
            && self.env_api_token.is_none()
            && self.api_tokens.is_empty()
            && self.tokens.is_empty()
    }

    /// Every accepted token, with its name and scope; empty means the API is open.
    /// `api_token`, `api_tokens` and `WASMHOOK_API_TOKEN` are admin tokens. Environment
    /// variables named by `token_env` are read here, so call it once, at load.
    pub fn api_tokens(&self, env: &dyn Env) -> anyhow::Result<Vec<ApiToken>> {
        let admin = |name: String, secret: &Secret| ApiToken {
            name,
            scope: Scope::Admin,
            secret: secret.clone(),
        };
        let mut tokens: Vec<ApiToken> = match (&self.env_api_token, &self.api_token) {
            (Some(secret), _) => vec![admin("WASMHOOK_API_TOKEN".into(), secret)],
            (None, Some(secret)) => vec![admin("api_token".into(), secret)],
            (None, None) => Vec::new(),
        };
        for (i, secret) in self.api_tokens.iter().enumerate() {
            tokens.push(admin(format!("api_tokens[{i}]"), secret));
        }
        for t in &self.tokens {
            let secret = match (&t.token, &t.token_env) {
                (Some(secret), None) => secret.clone(),
                (None, Some(var)) => Secret::new(env.var(var).with_context(|| {
                    format!(
                        "[[server.tokens]] `{}`: environment variable {var} (token_env) is not set",
                        t.name
                    )
                })?),
                _ => bail!(
                    "[[server.tokens]] `{}`: set exactly one of `token` and `token_env`",
                    t.name
                ),
            };
            tokens.push(ApiToken {
                name: t.name.clone(),
                scope: t.scope,
                secret,
            });
        }
        for (i, t) in tokens.iter().enumerate() {
            if t.secret.expose().is_empty() {
                bail!("token `{}` is empty", t.name);
            }
            if let Some(other) = tokens[..i].iter().find(|o| o.name == t.name) {
                bail!(
                    "[[server.tokens]] name `{}` appears twice; names must be unique",
                    other.name
                );
            }
            if let Some(other) = tokens[..i].iter().find(|o| o.secret == t.secret) {
                bail!(
                    "tokens `{}` and `{}` have the same value; give each its own, so its name and scope are clear",
                    other.name,
                    t.name
                );
            }
        }
        Ok(tokens)
    }

    /// Refuses a non-loopback listen address when no token is set: the API would be open
    /// to the network.
    pub fn check_listen(&self, addr: SocketAddr) -> anyhow::Result<()> {
        if self.is_open() && !addr.ip().to_canonical().is_loopback() {
            bail!(
                "[server] listen = \"{addr}\" is reachable from other machines, and no [server] api_token is \
                 set: anyone who can reach it could publish events and create subscriptions. Set [server] \
                 api_token (or WASMHOOK_API_TOKEN, or [[server.tokens]]), or listen on 127.0.0.1"
            );
        }
        Ok(())
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            api_token: None,
            api_tokens: Vec::new(),
            tokens: Vec::new(),
            metrics_require_token: false,
            allowed_origins: Vec::new(),
            header_read_timeout: HumanDuration(Duration::from_secs(10)),
            idle_timeout: HumanDuration(Duration::from_secs(60)),
            body_read_timeout: HumanDuration(Duration::from_secs(60)),
            max_connections: None,
            env_api_token: None,
        }
    }
}

/// `[storage]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// `embedded` (one SQLite file, one node) or `postgres` (several nodes, one database).
    pub backend: Backend,
    /// Folder of the embedded store, and of the compile cache with either backend.
    /// Relative paths are relative to the config file.
    pub path: PathBuf,
    /// `postgres://user:password@host:port/database` for the `postgres` backend. Also
    /// `WASMHOOK_DATABASE_URL`, which selects the `postgres` backend by itself.
    pub url: Option<Secret>,
    /// PostgreSQL connections this node keeps in its pool.
    pub pool_size: usize,
    /// How long a claimed delivery stays leased to this node without a renewal
    /// (`postgres`); a node that dies holds its deliveries at most this long.
    pub lease: HumanDuration,
    /// How often this node renews its leases and reports itself (`postgres`).
    pub heartbeat: HumanDuration,
    /// This node's id (`postgres`); default `<hostname>-<pid>-<random>`. A fixed id lets a
    /// restarted node take back its own leases at once instead of waiting for them to end.
    pub node_id: Option<String>,
    /// Files each holding a 32-byte key (base64) that encrypts secrets at rest. The first
    /// encrypts; all decrypt, so a new key can be put first while old rows still open.
    /// Relative paths are relative to the config file.
    pub encryption_key_files: Vec<PathBuf>,
    /// Keys from `WASMHOOK_ENCRYPTION_KEYS` (comma-separated base64); they come before the
    /// files' keys. Never read from the file.
    #[serde(skip)]
    pub encryption_keys: Vec<Secret>,
    /// TLS to PostgreSQL: `disable`, `prefer`, `require` or `verify-full`. Overrides the
    /// URL's `sslmode`; default `prefer` as in libpq.
    pub sslmode: Option<SslMode>,
    /// PEM CA certificates that sign the PostgreSQL server's certificate (`verify-full`);
    /// without it, the system roots. Relative paths are relative to the config file.
    pub ca_file: Option<PathBuf>,
}

/// How the PostgreSQL connection uses TLS (libpq's `sslmode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SslMode {
    /// Plain TCP.
    Disable,
    /// TLS when the server offers it, without checking its certificate; plain otherwise.
    #[default]
    Prefer,
    /// TLS or no connection; the certificate is not checked (protects against passive
    /// listening only).
    Require,
    /// TLS or no connection, with the server's certificate checked against the CA and the
    /// URL's host name.
    VerifyFull,
}

impl SslMode {
    /// Parses libpq's spelling.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "disable" => Ok(Self::Disable),
            "prefer" => Ok(Self::Prefer),
            "require" => Ok(Self::Require),
            "verify-full" => Ok(Self::VerifyFull),
            "allow" | "verify-ca" => Err(format!(
                "sslmode `{text}` is not supported: use `verify-full` (checks the CA and the host name), `require` or `disable`"
            )),
            _ => Err(format!(
                "unknown sslmode `{text}`: use `disable`, `prefer`, `require` or `verify-full`"
            )),
        }
    }

    /// libpq's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Prefer => "prefer",
            Self::Require => "require",
            Self::VerifyFull => "verify-full",
        }
    }
}

/// Where the engine keeps its state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// One SQLite file; no server. One engine process.
    #[default]
    Embedded,
    /// One PostgreSQL database shared by any number of engine nodes.
    Postgres,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            backend: Backend::Embedded,
            path: PathBuf::from("./data"),
            url: None,
            pool_size: 16,
            lease: HumanDuration(Duration::from_secs(30)),
            heartbeat: HumanDuration(Duration::from_secs(5)),
            node_id: None,
            encryption_key_files: Vec::new(),
            encryption_keys: Vec::new(),
            sslmode: None,
            ca_file: None,
        }
    }
}

/// `[plugins]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PluginsConfig {
    /// Folder holding `<name>.wasm` adapters. Relative paths are relative to the config file.
    pub dir: PathBuf,
    /// CPU budget of one adapter call; the call traps when it is spent.
    pub cpu_budget: HumanDuration,
    /// Largest linear memory one adapter instance may grow to, in bytes.
    pub max_memory_bytes: u64,
    /// Largest request (body, headers and URL) an adapter may return, in bytes.
    pub max_output_bytes: usize,
    /// Memory all adapter instances together may hold, in bytes. An instance that would
    /// take more waits (its delivery is tried again shortly, without spending an attempt).
    pub total_memory_bytes: u64,
    /// Threads adapters run on, apart from the engine's own; 0 picks one less than the
    /// cores (at least one), so a busy adapter never takes the last core from ingest and
    /// delivery.
    pub guest_threads: usize,
    /// Calls of one plugin running at once, at most. More wait their turn in a short queue;
    /// beyond it a delivery is tried again shortly, without spending an attempt.
    pub max_concurrent_calls: usize,
    /// Reuse one instance for up to this many deliveries of the same subscription (0: a
    /// fresh instance for every delivery). State can then carry over between deliveries of
    /// one subscription, never across subscriptions.
    pub instance_reuse: u32,
    /// Keep compiled adapters on disk (under the storage folder), so a restart does not
    /// compile them again.
    pub compile_cache: bool,
    /// How long the folder must be quiet after a change before it is reloaded.
    pub reload_debounce: HumanDuration,
    /// Largest plugin file that is read, in bytes. JavaScript and Python components are
    /// 12 to 40 MB; anything bigger is refused before it is read.
    pub max_plugin_bytes: u64,
    /// Per-plugin limits, by plugin name: `[plugins.overrides.teams]`.
    pub overrides: BTreeMap<String, PluginOverride>,
}

impl Default for PluginsConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("./plugins"),
            cpu_budget: HumanDuration(Duration::from_millis(100)),
            max_memory_bytes: 64 << 20,
            max_output_bytes: 1 << 20,
            total_memory_bytes: 1 << 30,
            guest_threads: 0,
            max_concurrent_calls: 4,
            instance_reuse: 0,
            compile_cache: true,
            reload_debounce: HumanDuration(Duration::from_millis(200)),
            max_plugin_bytes: 64 << 20,
            overrides: BTreeMap::new(),
        }
    }
}

/// `[plugins.overrides.<name>]`: limits for one plugin; unset keys use `[plugins]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginOverride {
    /// CPU budget of one call.
    pub cpu_budget: Option<HumanDuration>,
    /// Memory cap, bytes.
    pub max_memory_bytes: Option<u64>,
    /// Output cap, bytes.
    pub max_output_bytes: Option<usize>,
    /// Instance reuse count.
    pub instance_reuse: Option<u32>,
    /// Calls running at once.
    pub max_concurrent_calls: Option<usize>,
}

/// The shortest wait a retry schedule may hold: shorter ones turned one failing delivery
/// into a hot loop of attempts.
pub const MIN_RETRY_STEP: Duration = Duration::from_millis(10);
/// The most attempts a delivery may be given.
pub const MAX_ATTEMPTS: u32 = 100;
/// The most steps a retry schedule may list.
pub const MAX_SCHEDULE_STEPS: usize = 100;

/// Checks a retry schedule and attempt budget against the bounds above; the message says
/// which rule and the fix.
pub fn check_retry_bounds(
    schedule: &[HumanDuration],
    max_attempts: Option<u32>,
) -> Result<(), String> {
    if schedule.is_empty() {
        return Err("`retry_schedule` is empty; list at least one wait, like [\"5s\"]".into());
    }
    if schedule.len() > MAX_SCHEDULE_STEPS {
        return Err(format!(
            "`retry_schedule` lists {} waits; at most {MAX_SCHEDULE_STEPS} (the last one repeats)",
            schedule.len()
        ));
    }
    if let Some(step) = schedule.iter().find(|d| d.0 < MIN_RETRY_STEP) {
        return Err(format!(
            "`retry_schedule` waits {}; each wait must be at least {}ms",
            step.compact(),
            MIN_RETRY_STEP.as_millis()
        ));
    }
    match max_attempts {
        Some(0) => Err("`max_attempts` must be at least 1".into()),
        Some(n) if n > MAX_ATTEMPTS => Err(format!(
            "`max_attempts` is {n}; at most {MAX_ATTEMPTS} (a dead letter can be replayed for more)"
        )),
        _ => Ok(()),
    }
}

/// `[delivery]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveryConfig {
    /// Waits between attempts: the first retry waits the first entry, and so on. Each wait
    /// gets full jitter. The last entry repeats if `max_attempts` asks for more attempts.
    pub retry_schedule: Vec<HumanDuration>,
    /// Attempts before a delivery becomes a dead letter. Default: schedule length + 1.
    pub max_attempts: Option<u32>,
    /// Time limit of one HTTP attempt, from connect to the end of the response headers.
    pub timeout: HumanDuration,
    /// Allow receivers on loopback, private, link-local and other internal addresses.
    pub allow_private_networks: bool,
    /// Internal ranges allowed even when `allow_private_networks` is false, e.g. `10.1.0.0/16`.
    pub allowed_cidrs: Vec<ipnet::IpNet>,
    /// Extra PEM CA certificates trusted for https receivers (a private CA), besides the
    /// system roots. Relative paths are relative to the config file.
    pub tls_ca_file: Option<PathBuf>,
    /// On shutdown, how long attempts in flight may run before the engine stops anyway;
    /// whatever is unfinished is attempted again at the next start.
    pub shutdown_grace: HumanDuration,
    /// Attempts in flight at once, across all subscriptions.
    pub concurrency: usize,
    /// Attempts in flight to one endpoint (`scheme://host:port`) at once.
    pub endpoint_concurrency: usize,
    /// Consecutive failures (network errors, timeouts, 408, 429, 5xx) that open an
    /// endpoint's circuit.
    pub breaker_failures: u32,
    /// How long an open circuit waits before it lets one probe through.
    pub breaker_cooldown: HumanDuration,
    /// How long a rotated-out secret keeps signing beside the new one.
    pub secret_rotation_grace: HumanDuration,
    /// An HTTP proxy every delivery goes through, `http://[user:password@]host:port`
    /// (CONNECT tunnels). Also `WASMHOOK_PROXY`. A secret: it may hold credentials.
    pub proxy: Option<Secret>,
    /// Destinations reached directly instead of through `proxy`, in `NO_PROXY` syntax:
    /// host names (with their subdomains), IP addresses, CIDR ranges, `*`. Default: the
    /// `NO_PROXY` (or `no_proxy`) environment variable.
    pub no_proxy: Option<Vec<String>>,
    /// Disables a subscription whose attempts have all failed for this long (with at least
    /// `disable_after_failures` of them), as Svix does after 5 days; `0s` never does. A
    /// `410 Gone` disables at once whatever this says.
    pub disable_after: HumanDuration,
    /// Failed attempts in a row needed too, so a subscription that gets one event a week is
    /// not disabled for two failures.
    pub disable_after_failures: u32,
}

impl DeliveryConfig {
    /// The egress proxy, if one is set.
    pub fn egress_proxy(&self) -> anyhow::Result<Option<crate::delivery::proxy::Proxy>> {
        let Some(url) = &self.proxy else {
            return Ok(None);
        };
        let no_proxy = self.no_proxy.as_deref().unwrap_or_default().join(",");
        crate::delivery::proxy::Proxy::new(url.expose(), &no_proxy)
            .map(Some)
            .map_err(|e| anyhow::anyhow!(e))
    }
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        let schedule = ["5s", "5m", "30m", "2h", "5h", "10h", "14h", "20h", "24h"];
        Self {
            retry_schedule: schedule
                .iter()
                .map(|s| HumanDuration::parse(s).expect("default schedule parses"))
                .collect(),
            max_attempts: None,
            timeout: HumanDuration(Duration::from_secs(15)),
            allow_private_networks: false,
            allowed_cidrs: Vec::new(),
            tls_ca_file: None,
            shutdown_grace: HumanDuration(Duration::from_secs(30)),
            concurrency: 256,
            endpoint_concurrency: 32,
            breaker_failures: 5,
            breaker_cooldown: HumanDuration(Duration::from_secs(30)),
            secret_rotation_grace: HumanDuration(Duration::from_secs(24 * 3600)),
            disable_after: HumanDuration(Duration::from_secs(5 * 24 * 3600)),
            disable_after_failures: 10,
            proxy: None,
            no_proxy: None,
        }
    }
}

/// `[telemetry]`: OpenTelemetry traces over OTLP/HTTP, off unless `otlp_endpoint` is set.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// The collector's OTLP/HTTP endpoint, `http://127.0.0.1:4318` (`/v1/traces` is
    /// added unless given). Also `WASMHOOK_OTLP_ENDPOINT`.
    pub otlp_endpoint: Option<String>,
    /// `service.name` on every span.
    pub service_name: String,
    /// How long one export may take.
    pub timeout: HumanDuration,
    /// Headers sent with every export (for a collector that wants a key). Never logged.
    pub headers: BTreeMap<String, String>,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            otlp_endpoint: None,
            service_name: "wasmhook".into(),
            timeout: HumanDuration(Duration::from_secs(10)),
            headers: BTreeMap::new(),
        }
    }
}

/// `[ui]`: the operator console.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UiConfig {
    /// Whether `/ui` is served. Signing in needs an admin token (`[server] api_token`).
    pub enabled: bool,
    /// How long a console session lasts after sign-in.
    pub session_ttl: HumanDuration,
}

impl Default for UiConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            session_ttl: HumanDuration(Duration::from_secs(12 * 3600)),
        }
    }
}

impl fmt::Debug for TelemetryConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TelemetryConfig")
            .field(
                "otlp_endpoint",
                &self.otlp_endpoint.as_deref().map(crate::secret::redact_url),
            )
            .field("service_name", &self.service_name)
            .field("timeout", &self.timeout)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// `[retention]`: what is purged, and when. Pending deliveries are never purged.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Delivered, skipped and cancelled deliveries (with their attempts) are purged this
    /// long after they were created; `0s` keeps them forever.
    pub delivered: HumanDuration,
    /// Dead letters (with their attempts) are purged this long after they were created;
    /// `0s` keeps them forever.
    pub dead_letters: HumanDuration,
    /// How often purging runs. An event goes once none of its deliveries is left and it is
    /// older than `delivered` (its id keeps publishing idempotent until then).
    pub interval: HumanDuration,
    /// Rows deleted per transaction, so a purge never holds the store for long.
    pub batch: usize,
    /// Bytes of a receiver's response body kept on each attempt.
    pub response_body_bytes: usize,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            delivered: HumanDuration(Duration::from_secs(7 * 24 * 3600)),
            dead_letters: HumanDuration(Duration::from_secs(30 * 24 * 3600)),
            interval: HumanDuration(Duration::from_secs(60)),
            batch: 1000,
            response_body_bytes: 1024,
        }
    }
}

/// `[limits]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Largest accepted `POST /v1/events` body, in bytes (each event's `data` in a batch).
    pub max_event_bytes: usize,
    /// Largest accepted `POST /v1/events/batch` body, in bytes. A larger one is refused as
    /// soon as its `Content-Length` says so, or once that many bytes have arrived.
    pub max_batch_bytes: usize,
    /// Longest event type, in bytes (1 to 1024). The syntax is fixed: dot-separated
    /// segments of `[A-Za-z0-9_-]`, because subscription patterns match segment by segment.
    pub max_event_type_bytes: usize,
    /// Largest total size of one subscription's settings (keys and values), in bytes.
    pub max_settings_bytes: usize,
    /// Most subscriptions the engine holds.
    pub max_subscriptions: usize,
}

impl LimitsConfig {
    /// What each published event is held to.
    pub fn event_limits(&self) -> crate::event::EventLimits {
        crate::event::EventLimits {
            max_type_bytes: self.max_event_type_bytes,
            max_data_bytes: self.max_event_bytes,
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_event_bytes: 256 << 10,
            max_batch_bytes: 8 << 20,
            max_event_type_bytes: crate::event::DEFAULT_TYPE_LEN,
            max_settings_bytes: 16 << 10,
            max_subscriptions: 10_000,
        }
    }
}

/// One `[[subscriptions]]` entry. `Debug` leaves out setting and header values, which may
/// be credentials.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionConfig {
    /// Stable id, used in delivery records and the API.
    pub id: String,
    /// Where requests are sent (http or https).
    pub url: String,
    /// Event-type patterns: `cert.expiring`, `host.*`, `*`.
    pub events: Vec<String>,
    /// A human name, shown by the API.
    #[serde(default)]
    pub name: Option<String>,
    /// A CEL expression over the event (`data`, `event`); only events for which it is
    /// true are delivered, e.g. `data.severity == "critical"`.
    #[serde(default)]
    pub filter: Option<String>,
    /// Most deliveries a second to this subscription; more wait their turn, none is dropped.
    #[serde(default)]
    pub rate_limit: Option<u32>,
    /// The signing secret, `whsec_<base64>`.
    #[serde(default)]
    pub secret: Option<Secret>,
    /// Name of an environment variable holding the signing secret, instead of `secret`.
    #[serde(default)]
    pub secret_env: Option<String>,
    /// The adapter: a file name in the plugins folder, without `.wasm`.
    #[serde(default)]
    pub plugin: Option<String>,
    /// Extra request headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Settings passed to the adapter.
    #[serde(default)]
    pub settings: BTreeMap<String, SettingValue>,
    /// Overrides `[delivery] retry_schedule`.
    #[serde(default)]
    pub retry_schedule: Option<Vec<HumanDuration>>,
    /// Overrides `[delivery] max_attempts`.
    #[serde(default)]
    pub max_attempts: Option<u32>,
    /// Overrides `[delivery] timeout`.
    #[serde(default)]
    pub timeout: Option<HumanDuration>,
    /// Overrides the plugin's CPU budget for this subscription.
    #[serde(default)]
    pub cpu_budget: Option<HumanDuration>,
    /// Overrides the plugin's instance reuse for this subscription.
    #[serde(default)]
    pub instance_reuse: Option<u32>,
    /// Settings whose values are secret (never shown by the API or in logs), besides those
    /// whose names already say so (`*key*`, `*token*`, `*secret*`, `*password*`).
    #[serde(default)]
    pub secret_settings: Vec<String>,
    /// A PEM client certificate (then any intermediates) presented to a receiver that
    /// requires mutual TLS; with `client_key_file`. Relative paths are relative to the
    /// config file.
    #[serde(default)]
    pub client_certificate_file: Option<PathBuf>,
    /// The PEM private key of `client_certificate_file`.
    #[serde(default)]
    pub client_key_file: Option<PathBuf>,
}

impl fmt::Debug for SubscriptionConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SubscriptionConfig")
            .field("id", &self.id)
            .field("url", &crate::secret::redact_url(&self.url))
            .field("events", &self.events)
            .field("filter", &self.filter)
            .field("plugin", &self.plugin)
            .field("rate_limit", &self.rate_limit)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("settings", &self.settings.keys().collect::<Vec<_>>())
            .field("client_certificate_file", &self.client_certificate_file)
            .finish_non_exhaustive()
    }
}

impl<'de> Deserialize<'de> for SslMode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Self::parse(&String::deserialize(deserializer)?).map_err(de::Error::custom)
    }
}

/// A duration written the human way: `500ms`, `5s`, `30m`, `2h`, `1day`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct HumanDuration(pub Duration);

/// A duration that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration `{text}` ({reason}): write it like `500ms`, `5s`, `10m` or `2h`")]
pub struct DurationError {
    /// The text as written.
    pub text: String,
    /// What the parser said.
    pub reason: String,
}

impl HumanDuration {
    /// Parses `5s`, `10m`, `2h 30m`, ...
    pub fn parse(text: &str) -> Result<Self, DurationError> {
        humantime::parse_duration(text)
            .map(Self)
            .map_err(|e| DurationError {
                text: text.to_owned(),
                reason: e.to_string(),
            })
    }
}

impl HumanDuration {
    /// The shortest exact spelling in whole units: `1d`, `2h30m`, `500ms`, `0s`. Both
    /// `parse` and the API take it back.
    pub fn compact(self) -> String {
        let mut ms = self.0.as_millis();
        if ms == 0 {
            return "0s".into();
        }
        let mut out = String::new();
        for (unit, size) in [
            ("d", 86_400_000),
            ("h", 3_600_000),
            ("m", 60_000),
            ("s", 1000),
            ("ms", 1),
        ] {
            if ms >= size {
                out.push_str(&format!("{}{unit}", ms / size));
                ms %= size;
            }
        }
        out
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(de::Error::custom)
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.compact())
    }
}

/// An adapter setting. TOML strings, numbers and booleans are accepted and passed to the
/// adapter as text, because the WIT carries settings as string pairs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct SettingValue(pub String);

impl<'de> Deserialize<'de> for SettingValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Scalar;
        impl Visitor<'_> for Scalar {
            type Value = SettingValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string, number or boolean (adapter settings are passed as text)")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(SettingValue(v.to_owned()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(SettingValue(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(SettingValue(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Ok(SettingValue(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                Ok(SettingValue(v.to_string()))
            }
        }
        deserializer.deserialize_any(Scalar)
    }
}

/// A TOML error as `line L, column C: message`, without the source line the `toml` crate
/// would quote, and with quoted values in the message (`invalid type: string "…"`)
/// replaced by `***`: either could be a secret.
fn describe_toml_error(text: &str, e: &toml::de::Error) -> String {
    let mut message = String::with_capacity(e.message().len());
    let mut quoted = false;
    for c in e.message().trim_end().chars() {
        if c == '"' {
            if !quoted {
                message.push_str("\"***");
            } else {
                message.push('"');
            }
            quoted = !quoted;
        } else if !quoted {
            message.push(c);
        }
    }
    match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            format!("line {line}, column {column}: {message}")
        }
        None => message,
    }
}

/// Reads environment variables; a seam so tests can load without touching the process env.
pub trait Env: Sync {
    /// The variable's value, if set and valid UTF-8.
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment.
#[derive(Debug, Clone, Copy)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    }
}

impl Config {
    /// Loads `path` (or only defaults and environment when `None`), applies `WASMHOOK_*`
    /// overrides, resolves relative paths against the file's folder, and validates.
    pub fn load(path: Option<&Path>, env: &dyn Env) -> anyhow::Result<Self> {
        let (mut config, base) = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read config file {}", path.display()))?;
                let config = Self::parse(&text)
                    .with_context(|| format!("invalid config file {}", path.display()))?;
                let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
                (config, base)
            }
            None => (Self::default(), PathBuf::new()),
        };
        config.storage.path = base.join(&config.storage.path);
        config.plugins.dir = base.join(&config.plugins.dir);
        config.delivery.tls_ca_file = config.delivery.tls_ca_file.map(|f| base.join(f));
        for sub in &mut config.subscriptions {
            for file in [&mut sub.client_certificate_file, &mut sub.client_key_file] {
                *file = file.take().map(|f| base.join(f));
            }
        }
        config.storage.ca_file = config.storage.ca_file.map(|f| base.join(f));
        for file in &mut config.storage.encryption_key_files {
            *file = base.join(&*file);
        }
        config.apply_env(env)?;
        config.validate()?;
        config.server.api_tokens(env)?;
        Ok(config)
    }

    /// Parses TOML text. Unknown keys are an error naming the key. The error gives the
    /// line and column but never echoes the file's text, which may hold a token.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        toml::from_str(text).map_err(|e| anyhow::anyhow!(describe_toml_error(text, &e)))
    }

    fn apply_env(&mut self, env: &dyn Env) -> anyhow::Result<()> {
        if let Some(token) = env.var("WASMHOOK_API_TOKEN") {
            self.server.env_api_token = Some(Secret::new(token));
        }
        if let Some(keys) = env.var("WASMHOOK_ENCRYPTION_KEYS") {
            self.storage.encryption_keys = keys
                .split(',')
                .map(str::trim)
                .filter(|k| !k.is_empty())
                .map(Secret::new)
                .collect();
        }
        if let Some(listen) = env.var("WASMHOOK_LISTEN") {
            self.server.listen = listen.parse().with_context(|| {
                format!("WASMHOOK_LISTEN=`{listen}` is not an address like 127.0.0.1:8080")
            })?;
        }
        if let Some(path) = env.var("WASMHOOK_STORAGE_PATH") {
            self.storage.path = PathBuf::from(path);
        }
        if let Some(url) = env.var("WASMHOOK_DATABASE_URL") {
            self.storage.url = Some(Secret::new(url));
            self.storage.backend = Backend::Postgres;
        }
        if let Some(dir) = env.var("WASMHOOK_PLUGINS_DIR") {
            self.plugins.dir = PathBuf::from(dir);
        }
        if let Some(endpoint) = env.var("WASMHOOK_OTLP_ENDPOINT") {
            self.telemetry.otlp_endpoint = Some(endpoint);
        }
        if let Some(proxy) = env.var("WASMHOOK_PROXY") {
            self.delivery.proxy = Some(Secret::new(proxy));
        }
        if self.delivery.no_proxy.is_none()
            && let Some(list) = env.var("NO_PROXY").or_else(|| env.var("no_proxy"))
        {
            self.delivery.no_proxy = Some(list.split(',').map(|s| s.trim().to_owned()).collect());
        }
        Ok(())
    }

    /// Checks what types cannot: limits that must be positive. Subscriptions are checked
    /// when they are built (`subscription::Subscription::from_config`). [`Config::load`]
    /// calls it; [`crate::engine::Engine::start`] calls it for configs built in code.
    pub fn validate(&self) -> anyhow::Result<()> {
        self.server.check_listen(self.server.listen)?;
        for (key, value) in [
            ("header_read_timeout", self.server.header_read_timeout),
            ("idle_timeout", self.server.idle_timeout),
            ("body_read_timeout", self.server.body_read_timeout),
        ] {
            if value.0 < Duration::from_millis(100) {
                bail!("[server] {key} must be at least 100ms");
            }
        }
        if self.server.max_connections == Some(0) {
            bail!("[server] max_connections must be at least 1");
        }
        if self.delivery.concurrency == 0 {
            bail!("[delivery] concurrency must be at least 1");
        }
        self.delivery.egress_proxy()?;
        if self.storage.backend == Backend::Postgres {
            if self.storage.url.is_none() {
                bail!(
                    "[storage] backend = \"postgres\" needs url = \"postgres://…\" (or WASMHOOK_DATABASE_URL)"
                );
            }
            if self.storage.pool_size < 2 {
                bail!("[storage] pool_size must be at least 2");
            }
            if self.storage.heartbeat.0.is_zero()
                || self.storage.lease.0 < self.storage.heartbeat.0 * 2
            {
                bail!(
                    "[storage] lease must be at least twice heartbeat, so a live node renews its leases in time"
                );
            }
        }
        if self.delivery.endpoint_concurrency == 0 || self.delivery.breaker_failures == 0 {
            bail!("[delivery] endpoint_concurrency and breaker_failures must be at least 1");
        }
        check_retry_bounds(&self.delivery.retry_schedule, self.delivery.max_attempts)
            .map_err(|e| anyhow::anyhow!("[delivery] {e}"))?;
        if self.delivery.timeout.0.is_zero() {
            bail!("[delivery] timeout must be longer than 0s");
        }
        if self.limits.max_event_bytes < 64 {
            bail!("[limits] max_event_bytes must be at least 64");
        }
        if self.limits.max_batch_bytes < self.limits.max_event_bytes {
            bail!("[limits] max_batch_bytes must be at least max_event_bytes");
        }
        if !(1..=crate::event::MAX_TYPE_LEN).contains(&self.limits.max_event_type_bytes) {
            bail!(
                "[limits] max_event_type_bytes must be between 1 and {}",
                crate::event::MAX_TYPE_LEN
            );
        }
        if self.retention.interval.0 < Duration::from_millis(100) || self.retention.batch == 0 {
            bail!("[retention] interval must be at least 100ms and batch at least 1");
        }
        if self.retention.response_body_bytes > 64 << 10 {
            bail!("[retention] response_body_bytes must be at most 65536");
        }
        if self.plugins.total_memory_bytes < self.plugins.max_memory_bytes {
            bail!("[plugins] total_memory_bytes must be at least max_memory_bytes");
        }
        if self.plugins.max_concurrent_calls == 0 {
            bail!("[plugins] max_concurrent_calls must be at least 1");
        }
        if self.plugins.max_plugin_bytes < 8 {
            bail!("[plugins] max_plugin_bytes must be at least 8 (a component header)");
        }
        if self.plugins.cpu_budget.0 < Duration::from_millis(1) {
            bail!("[plugins] cpu_budget must be at least 1ms");
        }
        for (name, o) in &self.plugins.overrides {
            if o.cpu_budget.is_some_and(|b| b.0 < Duration::from_millis(1)) {
                bail!("[plugins.overrides.{name}] cpu_budget must be at least 1ms");
            }
        }
        crate::event::catalog::EventTypes::new(&self.event_types).map_err(anyhow::Error::msg)?;
        let mut sources = std::collections::HashSet::new();
        for source in &self.sources {
            source.validate().map_err(anyhow::Error::msg)?;
            if !sources.insert(source.id.as_str()) {
                bail!(
                    "[[sources]] id `{}` appears twice; ids must be unique",
                    source.id
                );
            }
        }
        let mut seen = std::collections::HashSet::new();
        for sub in &self.subscriptions {
            if !seen.insert(sub.id.as_str()) {
                bail!(
                    "[[subscriptions]] id `{}` appears twice; ids must be unique",
                    sub.id
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct FakeEnv(Vec<(&'static str, &'static str)>);
    impl Env for FakeEnv {
        fn var(&self, name: &str) -> Option<String> {
            self.0
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn empty_file_gives_documented_defaults() {
        let c = Config::parse("").unwrap();
        assert_eq!(c.server.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.storage.path, PathBuf::from("./data"));
        assert_eq!(c.plugins.dir, PathBuf::from("./plugins"));
        assert_eq!(c.delivery.timeout.0, Duration::from_secs(15));
        assert_eq!(c.delivery.retry_schedule.len(), 9);
        assert_eq!(c.delivery.retry_schedule[0].0, Duration::from_secs(5));
        assert!(!c.delivery.allow_private_networks);
        assert_eq!(c.limits.max_event_bytes, 256 * 1024);
        assert_eq!(c.server.header_read_timeout.0, Duration::from_secs(10));
        assert_eq!(c.plugins.max_plugin_bytes, 64 << 20);
    }

    #[test]
    fn without_a_token_only_loopback_may_be_listened_on() {
        let open = ServerConfig::default();
        for addr in [
            "127.0.0.1:8080",
            "[::1]:8080",
            "127.0.0.2:0",
            "[::ffff:127.0.0.1]:1",
        ] {
            open.check_listen(addr.parse().unwrap()).unwrap();
        }
        for addr in ["0.0.0.0:8080", "[::]:8080", "10.1.2.3:80"] {
            let err = open.check_listen(addr.parse().unwrap()).unwrap_err();
            assert!(err.to_string().contains("[server] api_token"), "{err}");
        }
        let guarded = ServerConfig {
            api_token: Some(Secret::new("t")),
            ..ServerConfig::default()
        };
        guarded
            .check_listen("0.0.0.0:8080".parse().unwrap())
            .unwrap();
        let err = Config::parse("[server]\nlisten = \"0.0.0.0:8080\"\n")
            .unwrap()
            .validate()
            .unwrap_err();
        assert!(err.to_string().contains("no [server] api_token"), "{err}");
    }

    #[test]
    fn unknown_keys_are_named() {
        let err =
            Config::parse("[server]\nlisten = \"127.0.0.1:0\"\nlisten_port = 3\n").unwrap_err();
        assert!(
            err.to_string().contains("unknown field `listen_port`"),
            "{err}"
        );
        let err = Config::parse("[deliveri]\n").unwrap_err();
        assert!(
            err.to_string().contains("unknown field `deliveri`"),
            "{err}"
        );
        let err = Config::parse(
            "[[subscriptions]]\nid=\"a\"\nurl=\"http://x\"\nevents=[\"*\"]\nplugn=\"slack\"\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("unknown field `plugn`"), "{err}");
    }

    #[test]
    fn durations_and_settings_parse() {
        let c = Config::parse(
            r##"
            [delivery]
            retry_schedule = ["1s", "2m"]
            timeout = "500ms"
            [[subscriptions]]
            id = "s"
            url = "http://example.com"
            events = ["host.*"]
            settings = { channel = "#ops", limit = 3, urgent = true }
            "##,
        )
        .unwrap();
        assert_eq!(c.delivery.retry_schedule[1].0, Duration::from_secs(120));
        assert_eq!(c.delivery.timeout.0, Duration::from_millis(500));
        let s = &c.subscriptions[0].settings;
        assert_eq!(s["limit"].0, "3");
        assert_eq!(s["urgent"].0, "true");
        let err = Config::parse("[delivery]\ntimeout = \"5 parsecs\"\n").unwrap_err();
        assert!(
            err.to_string().contains("invalid duration `5 parsecs`"),
            "{err}"
        );
        let err =
            Config::parse("[[subscriptions]]\nid=\"a\"\nurl=\"u\"\nevents=[]\nsettings={x=[1]}\n")
                .unwrap_err();
        assert!(
            err.to_string().contains("string, number or boolean"),
            "{err}"
        );
    }

    #[test]
    fn environment_overrides_the_file_and_paths_follow_the_file() {
        let dir = std::env::temp_dir().join(format!("wasmhook-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("wasmhook.toml");
        std::fs::write(&file, "[server]\napi_token = \"from-file\"\n").unwrap();
        let env = FakeEnv(vec![
            ("WASMHOOK_API_TOKEN", "from-env"),
            ("WASMHOOK_LISTEN", "127.0.0.1:0"),
        ]);
        let c = Config::load(Some(&file), &env).unwrap();
        let tokens = c.server.api_tokens(&env).unwrap();
        assert_eq!(tokens.len(), 1);
        assert_eq!(tokens[0].secret.expose(), "from-env");
        assert_eq!(tokens[0].name, "WASMHOOK_API_TOKEN");
        assert_eq!(tokens[0].scope, Scope::Admin);
        assert_eq!(c.server.listen.port(), 0);
        assert_eq!(c.storage.path, dir.join("./data"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn parse_errors_never_echo_the_file() {
        for text in [
            "[server]\napi_token = \"s3cr3t-t0ken\n",
            "[server]\napi_tokens = \"s3cr3t-t0ken\"\n",
            "[server]\napi_token = \"s3cr3t-t0ken\"\nlisten = 5\n",
        ] {
            let err = Config::parse(text).unwrap_err().to_string();
            assert!(!err.contains("s3cr3t"), "{err}");
            assert!(err.starts_with("line "), "{err}");
        }
        let err = Config::parse("[server]\napi_tokens = \"s3cr3t\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 2") && err.contains("\"***\""), "{err}");
    }

    #[test]
    fn duplicate_subscription_ids_are_rejected() {
        let text = "[[subscriptions]]\nid=\"a\"\nurl=\"http://x\"\nevents=[\"*\"]\n".repeat(2);
        let c = Config::parse(&text).unwrap();
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("`a` appears twice")
        );
    }

    #[test]
    fn tokens_have_names_and_scopes_and_legacy_ones_are_admin() {
        let c = Config::parse(
            r#"
            [server]
            api_token = "a"
            api_tokens = ["b"]
            [[server.tokens]]
            name = "ci"
            scope = "publish"
            token = "c"
            [[server.tokens]]
            name = "grafana"
            scope = "read"
            token_env = "GRAFANA_TOKEN"
            "#,
        )
        .unwrap();
        let env = FakeEnv(vec![("GRAFANA_TOKEN", "d")]);
        let tokens = c.server.api_tokens(&env).unwrap();
        let seen: Vec<(&str, Scope, &str)> = tokens
            .iter()
            .map(|t| (t.name.as_str(), t.scope, t.secret.expose()))
            .collect();
        assert_eq!(
            seen,
            [
                ("api_token", Scope::Admin, "a"),
                ("api_tokens[0]", Scope::Admin, "b"),
                ("ci", Scope::Publish, "c"),
                ("grafana", Scope::Read, "d"),
            ]
        );
        let err = c.server.api_tokens(&FakeEnv(vec![])).unwrap_err();
        assert!(err.to_string().contains("GRAFANA_TOKEN"), "{err}");
    }

    #[test]
    fn bad_tokens_are_refused_at_load() {
        let err =
            Config::parse("[[server.tokens]]\nname = \"x\"\nscope = \"owner\"\ntoken = \"t\"\n")
                .unwrap_err();
        assert!(err.to_string().contains("unknown variant `owner`"), "{err}");
        let refusal = |text: &str| {
            Config::parse(text)
                .unwrap()
                .server
                .api_tokens(&FakeEnv(vec![]))
                .unwrap_err()
                .to_string()
        };
        let token = "[[server.tokens]]\nname = \"x\"\nscope = \"read\"\n";
        let err = refusal(&format!("{token}token = \"t\"\n").repeat(2));
        assert!(err.contains("`x` appears twice"), "{err}");
        let err = refusal(&format!(
            "[server]\napi_token = \"t\"\n{token}token = \"t\"\n"
        ));
        assert!(err.contains("same value"), "{err}");
        let err = refusal(token);
        assert!(err.contains("exactly one of"), "{err}");
    }

    #[test]
    fn sslmode_takes_libpq_spellings_and_names_the_unsupported() {
        let c = Config::parse("[storage]\nsslmode = \"verify-full\"\n").unwrap();
        assert_eq!(c.storage.sslmode, Some(SslMode::VerifyFull));
        let err = Config::parse("[storage]\nsslmode = \"verify-ca\"\n").unwrap_err();
        assert!(err.to_string().contains("not supported"), "{err}");
        let err = Config::parse("[storage]\nsslmode = \"on\"\n").unwrap_err();
        assert!(err.to_string().contains("unknown sslmode `on`"), "{err}");
    }

    #[test]
    fn encryption_keys_come_from_files_and_the_environment() {
        let dir = std::env::temp_dir().join(format!("wasmhook-config-keys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("wasmhook.toml");
        std::fs::write(
            &file,
            "[storage]\nencryption_key_files = [\"keys/new.key\", \"/abs/old.key\"]\n",
        )
        .unwrap();
        let env = FakeEnv(vec![("WASMHOOK_ENCRYPTION_KEYS", "k1, k2")]);
        let c = Config::load(Some(&file), &env).unwrap();
        assert_eq!(
            c.storage.encryption_key_files,
            [dir.join("keys/new.key"), PathBuf::from("/abs/old.key")]
        );
        let keys: Vec<&str> = c
            .storage
            .encryption_keys
            .iter()
            .map(Secret::expose)
            .collect();
        assert_eq!(keys, ["k1", "k2"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
