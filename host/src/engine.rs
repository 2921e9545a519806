//! Wires the parts together into an [`Engine`] (store, subscriptions, plugins, scheduler,
//! all under one stop signal) and serves the HTTP API over it ([`run`]).
//!
//! Over 500 lines because it is the one place that builds every part in order and hands
//! each the others it needs; split, the start-up order would be spread over files.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use crate::api::{self, AppState, AppStateInner};
use crate::clock::now_ms;
use crate::cluster::{Cluster, follow_subscriptions, heartbeat_loop};
use crate::config::Backend;
use crate::config::{Config, Env};
use crate::delivery::adapter_breakers::AdapterBreakers;
use crate::delivery::attempt::plugin_park_key;
use crate::delivery::breaker::BreakerConfig;
use crate::delivery::client::vet_destination;
use crate::delivery::rate_limit::RateLimits;
use crate::delivery::ssrf::NetworkPolicy;
use crate::delivery::{Deliverer, EndpointLimits, Endpoints, HttpClient, Scheduler};
use crate::event::EventDraft;
use crate::event::catalog::EventTypes;
use crate::feed::Feed;
use crate::ingest::{Accepted, Ingest, IngestError};
use crate::metrics::Metrics;
use crate::ops::{self, OpsEmitter, OpsEvent, PluginLoaded, PluginRejected};
use crate::outbound::parse_target_url;
use crate::plugins::watcher::{self, Change, Watch};
use crate::plugins::{CallLimits, CompileCache, Registry, Sandbox, SandboxLimits, SettingsCheck};
use crate::store::{
    DisablePolicy, EmbeddedStore, PgTls, PostgresOptions, PostgresStore, SealedStore, Store,
    StoredSubscription, SubscriptionSource, default_node_id,
};
use crate::subscription::{SubscriptionSpec, Subscriptions};

/// `wasmhook/<version>`, sent as `user-agent`.
pub const USER_AGENT: &str = concat!("wasmhook/", env!("CARGO_PKG_VERSION"));

/// Spare sandbox slots beyond the delivery concurrency, for test pings and dry runs.
const SPARE_SLOTS: u32 = 16;

/// Builds the sandbox described by `config`: one pool slot per attempt that can be in
/// flight, each memory slot as large as the largest memory cap of any plugin.
pub fn sandbox(config: &Config) -> anyhow::Result<Sandbox> {
    let largest_memory = config
        .plugins
        .overrides
        .values()
        .filter_map(|o| o.max_memory_bytes)
        .fold(config.plugins.max_memory_bytes, u64::max);
    Sandbox::new(SandboxLimits {
        slots: u32::try_from(config.delivery.concurrency)
            .unwrap_or(u32::MAX)
            .saturating_add(SPARE_SLOTS),
        max_memory_bytes: largest_memory,
        total_memory_bytes: config.plugins.total_memory_bytes,
        guest_threads: config.plugins.guest_threads,
    })
}

/// The plugin registry for `config`, with its compile cache under the storage folder.
pub fn registry(config: &Config) -> anyhow::Result<Registry> {
    let sandbox = Arc::new(sandbox(config)?);
    let cache = if config.plugins.compile_cache {
        let dir = config.storage.path.join("plugin-cache");
        match CompileCache::open(&dir, sandbox.engine()) {
            Ok(cache) => Some(cache),
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "compile cache unavailable; plugins are compiled at every start");
                None
            }
        }
    } else {
        None
    };
    Ok(Registry::new(sandbox, config.plugins.clone(), cache))
}

/// Starts hot reload. When a plugin (re)appears, the deliveries waiting for it are made due
/// and the scheduler is woken, so a dropped-in file is live within the debounce time.
fn watch_plugins(
    registry: &Arc<Registry>,
    store: &Arc<dyn Store>,
    wake: &Arc<Notify>,
    ops: &OpsEmitter,
    debounce: Duration,
) -> anyhow::Result<Watch> {
    let (store, wake, ops) = (Arc::clone(store), Arc::clone(wake), ops.clone());
    let handle = tokio::runtime::Handle::current();
    let reports = Arc::clone(registry);
    let watch = watcher::watch(Arc::clone(registry), debounce, move |change| {
        match &change {
            Change::Loaded(name) => {
                if let Some(plugin) = reports.get(name) {
                    ops.emit(OpsEvent::PluginLoaded(PluginLoaded {
                        plugin: name.clone(),
                        version: plugin.label.version,
                        sha256: plugin.sha256.clone(),
                        world_version: plugin.world_version.to_owned(),
                    }));
                }
            }
            Change::Rejected { name, error } => ops.emit(OpsEvent::PluginRejected(PluginRejected {
                plugin: name.clone(),
                error: error.clone(),
            })),
            Change::Removed(_) => {}
        }
        if let Change::Loaded(name) = change {
            let (store, wake) = (Arc::clone(&store), Arc::clone(&wake));
            handle.spawn(async move {
                match store.unpark(&plugin_park_key(&name), now_ms()).await {
                    Ok(0) => {}
                    Ok(n) => {
                        tracing::info!(plugin = %name, deliveries = n, "resuming deliveries that waited for the plugin");
                        wake.notify_one();
                    }
                    Err(e) => tracing::error!(plugin = %name, error = %e, "cannot resume waiting deliveries"),
                }
            });
        }
    })
    .context("cannot watch the plugins folder")?;
    Ok(watch)
}

/// The config file's subscriptions, validated (their settings against their adapter's
/// manifest too, when it is loaded), as store records.
fn config_subscriptions(
    config: &Config,
    env: &dyn Env,
    registry: &Registry,
) -> anyhow::Result<Vec<StoredSubscription>> {
    let now = now_ms();
    config
        .subscriptions
        .iter()
        .map(|c| {
            let mut spec = SubscriptionSpec::from_config(c, env)
                .and_then(|spec| {
                    spec.build(&c.id, SubscriptionSource::Config, &config.delivery)?;
                    if let Some(plugin) = &spec.plugin {
                        spec.check_cpu_budget(
                            CallLimits::for_plugin(&config.plugins, plugin).cpu_budget,
                        )?;
                    }
                    Ok(spec)
                })
                .map_err(|e| anyhow::anyhow!("subscription `{}`: {e}", c.id))?;
            if let Some(plugin) = &spec.plugin {
                let check = registry
                    .check_settings(plugin, &spec.settings)
                    .map_err(|e| anyhow::anyhow!("subscription `{}`: {e}", c.id))?;
                if let SettingsCheck::Checked { secret } = check {
                    spec.add_secret_settings(secret);
                }
            }
            Ok(StoredSubscription {
                id: c.id.clone(),
                source: SubscriptionSource::Config,
                spec: spec.to_json(),
                enabled: true,
                disabled_reason: None,
                created_at_ms: now,
                updated_at_ms: now,
            })
        })
        .collect()
}

/// Holds the config file's subscription URLs to the SSRF guard, as the API does: a URL that
/// is or resolves to a blocked address stops the start, naming the subscription.
async fn vet_config_destinations(config: &Config, policy: &NetworkPolicy) -> anyhow::Result<()> {
    for sub in &config.subscriptions {
        let Ok(uri) = parse_target_url(&sub.url) else {
            continue; // already refused by config_subscriptions
        };
        match vet_destination(policy, &uri).await {
            Ok(None) => {}
            Ok(Some(warning)) => tracing::warn!(subscription = %sub.id, "{warning}"),
            Err(reason) => anyhow::bail!("subscription `{}`: {reason}", sub.id),
        }
    }
    Ok(())
}

/// Opens the store `[storage]` names, with subscription specs encrypted by the keys it
/// configures (see `keyring::for_storage`).
pub async fn open_store(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    let keys = crate::keyring::for_storage(&config.storage)?;
    let backend = open_backend(config).await?;
    let store = SealedStore::open(backend, keys).await?;
    tracing::info!(
        key = store.keys().primary_id(),
        keys = store.keys().ids().len(),
        "subscription secrets are encrypted at rest"
    );
    Ok(Arc::new(store))
}

/// Opens the backend `[storage]` names, as it is (specs as the backend holds them).
async fn open_backend(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    let storage = &config.storage;
    Ok(match storage.backend {
        Backend::Embedded => Arc::new(EmbeddedStore::open(&storage.path, now_ms())?),
        Backend::Postgres => {
            let url = storage
                .url
                .as_ref()
                .context("[storage] backend = \"postgres\" needs a url")?;
            let options = PostgresOptions {
                url: url.expose().to_owned(),
                pool_size: storage.pool_size,
                node_id: storage.node_id.clone().unwrap_or_else(default_node_id),
                heartbeat: storage.heartbeat.0,
                lease: storage.lease.0,
                tls: PgTls {
                    sslmode: storage.sslmode,
                    ca_file: storage.ca_file.clone(),
                },
            };
            let store = PostgresStore::open(options, now_ms()).await?;
            tracing::info!(node = store.node_id(), "using the PostgreSQL store");
            Arc::new(store)
        }
    })
}

/// A running engine without a listener: store, subscriptions, plugins, scheduler and the
/// background loops, under one stop signal. A program embeds it to publish in process
/// ([`Engine::publish`]); `wasmhook serve` puts the HTTP API in front of the same value
/// ([`run`]).
#[derive(Debug)]
pub struct Engine {
    /// What the API's handlers reach; also the engine's own handles (ingest, store, …).
    state: AppState,
    /// Tells every background loop to stop.
    stop_tx: watch::Sender<bool>,
    /// Ends open `/v1/stream` answers when shutdown begins, so they do not hold it up.
    stop_streams: Arc<watch::Sender<bool>>,
    /// The loops to wait for at shutdown, in the order they stop.
    tasks: Tasks,
}

/// The engine's background work.
#[derive(Debug)]
struct Tasks {
    scheduler: JoinHandle<()>,
    others: Vec<JoinHandle<()>>,
    /// Ends when every operational-event emitter is gone.
    publisher: JoinHandle<()>,
    /// Hot reload; dropping it stops watching.
    watch: Watch,
}

impl Engine {
    /// Validates `config`, opens the store, loads subscriptions and plugins, and starts
    /// delivering. Opens no listening socket.
    pub async fn start(config: Config, env: &dyn Env) -> anyhow::Result<Self> {
        config.validate()?;
        let browser =
            api::browser::BrowserPolicy::new(&config.server).map_err(anyhow::Error::msg)?;
        let policy = NetworkPolicy {
            allow_private: config.delivery.allow_private_networks,
            allowlist: config.delivery.allowed_cidrs.clone(),
        };
        // Plugins load first, so the config's settings are checked against their manifests
        // before anything is stored.
        let registry = Arc::new(registry(&config)?);
        let loader = Arc::clone(&registry);
        tokio::task::spawn_blocking(move || loader.load_all())
            .await
            .context("loading plugins panicked")?;
        let from_config = config_subscriptions(&config, env, &registry)?;
        vet_config_destinations(&config, &policy).await?;
        let store = open_store(&config).await?;
        store.sync_config_subscriptions(from_config).await?;
        let subscriptions =
            Arc::new(Subscriptions::load(Arc::clone(&store), config.delivery.clone()).await?);
        let wake = Arc::new(Notify::new());
        let (ops, reports) = ops::channel();
        let watch = watch_plugins(
            &registry,
            &store,
            &wake,
            &ops,
            config.plugins.reload_debounce.0,
        )?;
        for sub in subscriptions.catalog().iter() {
            if let Some(plugin) = &sub.plugin
                && registry.get(plugin).is_none()
            {
                tracing::warn!(subscription = %sub.id, plugin, dir = %config.plugins.dir.display(),
                    "the subscription's plugin is not loaded; its deliveries wait until it is");
            }
        }

        let proxy = config.delivery.egress_proxy()?;
        if let Some(proxy) = &proxy {
            tracing::info!(proxy = proxy.shown(), "deliveries go through the proxy");
        }
        let client = HttpClient::with_proxy(
            policy.clone(),
            config.delivery.tls_ca_file.as_deref(),
            proxy,
        )?;
        let metrics = Metrics::default();
        let breaker = BreakerConfig {
            failure_threshold: config.delivery.breaker_failures,
            cooldown: config.delivery.breaker_cooldown.0,
        };
        let endpoints = Arc::new(Endpoints::new(EndpointLimits {
            breaker,
            concurrency: config.delivery.endpoint_concurrency,
        }));
        // The embedded store's leases only guard against claiming twice within this process,
        // so they last until the attempt is recorded, however long it runs (a subscription
        // created later may have a longer timeout than any known now). PostgreSQL leases are
        // renewed by the heartbeat, so they can be short: that is how long a dead node holds
        // its deliveries.
        let lease = match config.storage.backend {
            Backend::Embedded => Duration::MAX,
            Backend::Postgres => config.storage.lease.0,
        };
        let cluster = Arc::new(Cluster::default());
        cluster.beat(store.as_ref(), &registry, now_ms()).await;
        let deliverer = Arc::new(Deliverer {
            subscriptions: Arc::clone(&subscriptions),
            endpoints: Arc::clone(&endpoints),
            adapter_breakers: AdapterBreakers::new(breaker),
            ops: ops.clone(),
            response_body_bytes: config.retention.response_body_bytes,
            disable_policy: DisablePolicy {
                after_ms: i64::try_from(config.delivery.disable_after.0.as_millis())
                    .unwrap_or(i64::MAX),
                min_failures: config.delivery.disable_after_failures,
            },
            registry: Arc::clone(&registry),
            rate_limits: RateLimits::default(),
            cluster: Arc::clone(&cluster),
            client,
            metrics: metrics.clone(),
            user_agent: http::HeaderValue::from_static(USER_AGENT),
        });
        let feed = Feed::new();
        let scheduler = Scheduler {
            feed: Some(feed.clone()),
            store: Arc::clone(&store),
            deliverer: Arc::clone(&deliverer),
            wake: Arc::clone(&wake),
            concurrency: config.delivery.concurrency,
            lease,
            shutdown_grace: config.delivery.shutdown_grace.0,
        };

        let (stop_tx, stop_rx) = watch::channel(false);
        let mut others = vec![
            tokio::spawn(heartbeat_loop(
                Arc::clone(&cluster),
                Arc::clone(&store),
                Arc::clone(&registry),
                config.storage.heartbeat.0,
                stop_rx.clone(),
            )),
            tokio::spawn(deliverer.disable_failing_loop(Arc::clone(&store), stop_rx.clone())),
            tokio::spawn(crate::retention::run(
                Arc::clone(&store),
                config.retention.clone(),
                stop_rx.clone(),
            )),
            tokio::spawn(follow_subscriptions(
                Arc::clone(&store),
                Arc::clone(&subscriptions),
                Arc::clone(&wake),
                stop_rx.clone(),
            )),
        ];
        let ingest = Arc::new(
            Ingest::new(
                Arc::clone(&store),
                Arc::clone(&subscriptions),
                Some(Arc::clone(&registry)),
                Arc::clone(&wake),
                metrics.clone(),
                config.limits.event_limits(),
            )
            .with_event_types(Arc::new(
                EventTypes::new(&config.event_types).map_err(anyhow::Error::msg)?,
            ))
            .with_feed(feed.clone()),
        );
        let publisher = tokio::spawn(ops::run(reports, Arc::clone(&ingest)));
        for source in &config.sources {
            others.push(tokio::spawn(crate::source::nats::run(
                source.clone(),
                Arc::clone(&ingest),
                metrics.clone(),
                stop_rx.clone(),
            )));
        }
        // Plugins rejected at start are news too (hot reloads report themselves).
        for plugin in registry.list() {
            if let Some(error) = plugin.last_error {
                ops.emit(OpsEvent::PluginRejected(PluginRejected {
                    plugin: plugin.name,
                    error,
                }));
            }
        }
        let (stop_streams, streams_stopping) = watch::channel(false);
        let state = AppState::new(AppStateInner {
            feed,
            stopping: streams_stopping,
            sessions: config
                .ui
                .enabled
                .then(|| Arc::new(api::ui::Sessions::new(config.ui.session_ttl.0))),
            store,
            ingest,
            subscriptions,
            registry,
            cluster,
            endpoints,
            metrics,
            wake,
            api_tokens: config.server.api_tokens(env)?,
            metrics_require_token: config.server.metrics_require_token,
            limits: config.limits.clone(),
            network: policy,
            browser,
            store_probe: Arc::default(),
            ops,
        });
        let scheduler = tokio::spawn(scheduler.run(stop_rx));
        Ok(Self {
            state,
            stop_tx,
            stop_streams: Arc::new(stop_streams),
            tasks: Tasks {
                scheduler,
                others,
                publisher,
                watch,
            },
        })
    }

    /// Publishes one event; returns once it is durable (stored with one delivery per
    /// matching subscription). Publishing the same `id` again returns the first result.
    pub async fn publish(&self, draft: EventDraft) -> Result<Accepted, IngestError> {
        self.state.ingest.publish(draft, None).await
    }

    /// Publishes up to [`crate::event::MAX_BATCH_EVENTS`] events under one commit; if any
    /// is invalid, none is stored.
    pub async fn publish_batch(&self, drafts: Vec<EventDraft>) -> Result<Accepted, IngestError> {
        self.state.ingest.publish_batch(drafts, None).await
    }

    /// The ingest service, for producers that run beside the engine (NATS sources).
    pub fn ingest(&self) -> &Arc<Ingest> {
        &self.state.ingest
    }

    /// The engine's Prometheus metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.state.metrics
    }

    /// The HTTP API over this engine, to serve on a listener of the caller's choosing.
    pub fn router(&self) -> axum::Router {
        api::router(self.state.clone())
    }

    /// Stops delivering: attempts in flight finish within `[delivery] shutdown_grace`, and
    /// what the engine reported about itself is published before it returns.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let Self {
            state,
            stop_tx,
            stop_streams,
            tasks,
        } = self;
        let _ = stop_streams.send(true);
        let _ = stop_tx.send(true);
        tasks.scheduler.await.context("the scheduler panicked")?;
        for task in tasks.others {
            let _ = task.await;
        }
        // Every emitter is gone with the scheduler, the watcher and the state; what they
        // reported is published.
        drop(tasks.watch);
        drop(state);
        let _ = tasks.publisher.await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// Runs the engine with its HTTP API on `listener` until `shutdown` completes: stops
/// accepting requests, lets attempts in flight finish within `[delivery] shutdown_grace`,
/// and returns.
pub async fn run(
    config: Config,
    env: &dyn Env,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    config.server.check_listen(listener.local_addr()?)?;
    let open_files = rlimit::getrlimit(rlimit::Resource::NOFILE)
        .ok()
        .map(|(soft, _)| soft)
        .filter(|&soft| soft != rlimit::INFINITY);
    let serve_limits =
        api::serve::ServeLimits::new(&config.server, open_files).map_err(anyhow::Error::msg)?;
    let open = config.server.is_open();
    let engine = Engine::start(config, env).await?;

    let addr = listener.local_addr()?;
    if open {
        tracing::warn!(
            "no [server] api_token: the API is open to every process on this machine, so it listens on \
             loopback only and answers only loopback host names; set api_token to serve the network"
        );
    }
    tracing::info!(
        max_connections = serve_limits.max_connections,
        open_file_limit = open_files.map_or("unlimited".to_owned(), |n| n.to_string()),
        "API connection cap"
    );
    tracing::info!("wasmhook listening on http://{addr}");
    let stop_streams = Arc::clone(&engine.stop_streams);
    api::serve::serve(listener, engine.router(), serve_limits, async move {
        shutdown.await;
        let _ = stop_streams.send(true);
        tracing::info!("shutting down: no new events are accepted");
    })
    .await;
    engine.shutdown().await
}

// Producers share one embedded engine across tasks (`Arc<Engine>`): keep it `Send + Sync`.
const _: fn() = || {
    fn shared<T: Send + Sync>() {}
    shared::<Engine>();
};
