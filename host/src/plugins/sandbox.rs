//! The sandbox adapters run in: one wasmtime `Engine` with the pooling allocator, a fresh
//! `Store` and instance per call (or a bounded, opt-in reuse of instances per subscription),
//! an epoch-based CPU budget, a memory cap per instance and a total for all of them, an
//! output cap, and a WASI context that grants nothing (no files, no network, no
//! environment). Calls run on the guest pool's own threads (`guest_pool`), never on the
//! engine's runtime. It knows no WIT version: `wit` picks the version a component
//! implements and converts its types.
//!
//! Over 500 lines on purpose: instantiation, the call, the instance reuse and the fault
//! classification all work on the same `Store` and limits, and read best together.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use wasmtime::component::{Component, Linker};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, Trap,
    UpdateDeadline,
};

use super::epoch::EpochTicker;
use super::guest_pool::GuestPool;
use super::host_state::{
    HostCallRefused, HostState, MemoryBudget, MemoryBudgetExhausted, MemoryLimitExceeded,
    MemoryShareExceeded,
};
use super::manifest::Manifest;
use super::wit::{self, AdapterInstance, AdapterPre, CallInput, PrepareError};
use super::{Action, AdapterInput, Fault, PluginLabel};
use crate::event::Event;
use crate::outbound::is_reserved_header;
use crate::signing::SigningKey;

/// How often the epoch advances. The CPU budget is counted in these ticks.
const TICK: Duration = Duration::from_millis(1);
/// Ticks a guest runs before it yields to the guest pool, so a slow adapter never holds a
/// guest thread for long: the others' calls wait at most about a millisecond per call in
/// front of them.
const SLICE_TICKS: u64 = 1;
/// Bytes of each pooled memory kept resident between instances. Keeping the first pages
/// mapped saves page faults on the next instantiation; 64 KiB measured best for the Slack
/// adapter (fresh instance about 70 µs, against 75 µs with none kept and no gain above).
const KEEP_RESIDENT: usize = 65536;
/// Idle reusable instances kept per plugin version and subscription.
const MAX_IDLE_PER_KEY: usize = 4;

/// Engine-wide sizing.
#[derive(Debug, Clone)]
pub struct SandboxLimits {
    /// Instances that may exist at once (pool slots).
    pub slots: u32,
    /// The largest memory cap any plugin gets; sizes the pool's memory slots.
    pub max_memory_bytes: u64,
    /// Memory all instances together may hold (`[plugins] total_memory_bytes`).
    pub total_memory_bytes: u64,
    /// Threads that run guests (`[plugins] guest_threads`; 0 for one less than the cores).
    pub guest_threads: usize,
}

/// Limits for one call, resolved from the subscription, the plugin's overrides and the
/// `[plugins]` defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallLimits {
    /// Time the call may run before it is interrupted.
    pub cpu_budget: Duration,
    /// Largest linear memory, in bytes.
    pub max_memory_bytes: u64,
    /// Largest request body plus headers an adapter may return, in bytes.
    pub max_output_bytes: usize,
    /// Reuse an instance for up to this many calls of one subscription; 0 for fresh ones.
    pub instance_reuse: u32,
    /// Calls of this plugin running at once, at most; more wait their turn, up to a queue.
    pub max_concurrent_calls: usize,
}

impl CallLimits {
    /// The limits of plugin `name`: its `[plugins.overrides.<name>]`, else `[plugins]`.
    pub fn for_plugin(config: &crate::config::PluginsConfig, name: &str) -> Self {
        let o = config.overrides.get(name).cloned().unwrap_or_default();
        Self {
            cpu_budget: o.cpu_budget.unwrap_or(config.cpu_budget).0,
            max_memory_bytes: o.max_memory_bytes.unwrap_or(config.max_memory_bytes),
            max_output_bytes: o.max_output_bytes.unwrap_or(config.max_output_bytes),
            instance_reuse: o.instance_reuse.unwrap_or(config.instance_reuse),
            max_concurrent_calls: o
                .max_concurrent_calls
                .unwrap_or(config.max_concurrent_calls)
                .max(1),
        }
    }
}

/// The shared sandbox: engine, linker, epoch clock, and idle reusable instances.
pub struct Sandbox {
    engine: Engine,
    linker: Linker<HostState>,
    limits: SandboxLimits,
    idle: Mutex<HashMap<(u64, String), Vec<Warm>>>,
    /// The engine-wide memory budget every instance takes from.
    budget: Arc<MemoryBudget>,
    /// The threads calls run on.
    pool: GuestPool,
    /// Advances the epoch while a guest runs; stops when the sandbox is dropped.
    ticker: EpochTicker,
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// A compiled adapter, type-checked against one supported world and ready to instantiate.
#[derive(Clone)]
pub struct Prepared {
    /// The WIT version it implements, e.g. `0.1.0`.
    pub world_version: &'static str,
    /// Unique per prepared component; keys its reusable instances.
    id: u64,
    pre: AdapterPre,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("world_version", &self.world_version)
            .finish()
    }
}

/// An instance with its store, between calls.
struct Warm {
    store: Store<HostState>,
    instance: AdapterInstance,
    uses: u32,
}

/// What one call is about.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    /// Which plugin version, for messages.
    pub label: &'a PluginLabel,
    /// The event.
    pub event: &'a Event,
    /// The subscription's side.
    pub input: &'a AdapterInput<'a>,
    /// The delivery, for log lines.
    pub delivery_id: &'a str,
    /// The limits.
    pub limits: CallLimits,
}

/// A call that owns what it needs, so it can run on the guest pool's threads.
#[derive(Debug, Clone)]
pub struct OwnedCall {
    /// Which plugin version.
    pub label: PluginLabel,
    /// The event.
    pub event: Event,
    /// The subscription's id.
    pub subscription_id: String,
    /// The subscription's URL.
    pub url: String,
    /// The subscription's settings (with the manifest's defaults filled in).
    pub settings: Vec<(String, String)>,
    /// The attempt number, from 1.
    pub attempt: u32,
    /// Unix seconds of the attempt (`webhook-timestamp`).
    pub timestamp: i64,
    /// The subscription's active signing keys, newest first, for the host's HMAC import.
    pub signing_keys: Vec<SigningKey>,
    /// The delivery, for log lines.
    pub delivery_id: String,
    /// The limits.
    pub limits: CallLimits,
}

impl Sandbox {
    /// Builds the engine and linker.
    pub fn new(limits: SandboxLimits) -> anyhow::Result<Self> {
        let mut pool = PoolingAllocationConfig::default();
        let slots = limits.slots.max(1);
        pool.total_component_instances(slots)
            .total_core_instances(slots.saturating_mul(4))
            .total_memories(slots.saturating_mul(2))
            .total_tables(slots.saturating_mul(4))
            .total_stacks(slots)
            .max_core_instances_per_component(64)
            .max_memories_per_component(8)
            .max_tables_per_component(16)
            .max_memory_size(usize::try_from(limits.max_memory_bytes)?)
            // A fresh instance per delivery is the default, so make slot reuse cheap: keep
            // the first pages of memories, tables and stacks resident (zeroed in place
            // instead of unmapped and faulted in again). The rest is decommitted when the
            // instance goes, not batched: a batch would leave a memory bomb's pages resident
            // after the adapters' memory budget was given back.
            .linear_memory_keep_resident(KEEP_RESIDENT)
            .table_keep_resident(KEEP_RESIDENT / 8)
            .async_stack_keep_resident(KEEP_RESIDENT / 8)
            .decommit_batch_size(1)
            .pagemap_scan(wasmtime::Enabled::Auto);
        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .epoch_interruption(true)
            // wasmtime's default, said out loud because fresh instances depend on it: a
            // slot maps the component's initial memory copy-on-write instead of copying
            // its data segments in. Measured (docs/BENCHMARKS.md): without it a fresh
            // JavaScript instance costs 3.4x as much and a Python one 3.9x.
            .memory_init_cow(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config)?;
        let mut linker = Linker::new(&engine);
        wit::add_to_linker(&mut linker)?;
        let ticker = EpochTicker::start(engine.clone(), TICK)?;
        Ok(Self {
            engine,
            linker,
            budget: Arc::new(MemoryBudget::new(limits.total_memory_bytes)),
            pool: GuestPool::new(limits.guest_threads)?,
            limits,
            idle: Mutex::default(),
            ticker,
        })
    }

    /// The engine, for compiling and for the compile cache's compatibility key.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Compiles `bytes` to native code. CPU-heavy: call it off the async runtime.
    pub fn compile(&self, bytes: &[u8]) -> Result<Component, PrepareError> {
        if !bytes.starts_with(b"\0asm") {
            return Err(PrepareError::NotAComponent(
                "the file does not start with the wasm magic bytes `\\0asm`".into(),
            ));
        }
        // Bytes 4..8: a core module has version 1 there; a component has its layer.
        if bytes.get(4..8) == Some(&[1, 0, 0, 0]) {
            return Err(PrepareError::NotAComponent(
                "it is a core wasm module; wrap it into a component (cargo build --target wasm32-wasip2, \
                 jco componentize, componentize-py, or `wasm-tools component new`)"
                    .into(),
            ));
        }
        Component::new(&self.engine, bytes)
            .map_err(|e| PrepareError::NotAComponent(format!("{e:#}")))
    }

    /// Checks `component` against the supported worlds and prepares it for instantiation.
    pub fn prepare(&self, component: &Component) -> Result<Prepared, PrepareError> {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        let pre = AdapterPre::new(&self.engine, &self.linker, component)?;
        Ok(Prepared {
            world_version: pre.version(),
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            pre,
        })
    }

    /// Calls the adapter's `manifest` export (WIT 0.2.0 and later) in a fresh instance
    /// under `limits`; `None` for older adapters, which have no manifest.
    pub async fn manifest(
        &self,
        prepared: &Prepared,
        label: &PluginLabel,
        limits: &CallLimits,
    ) -> Result<Option<Manifest>, Fault> {
        if !prepared.pre.has_manifest() {
            return Ok(None);
        }
        let _running = self.ticker.guest_running();
        let mut warm = self
            .instantiate(prepared, label)
            .await
            .map_err(|e| classify_fault(label, &e, limits, ""))?;
        let budget_ticks = (limits.cpu_budget.as_millis() as u64).max(1);
        warm.store
            .data_mut()
            .begin_call("", budget_ticks, limits.max_memory_bytes, &[]);
        warm.store.set_epoch_deadline(SLICE_TICKS.min(budget_ticks));
        let result = warm.instance.manifest(&mut warm.store).await;
        result.map_err(|e| classify_fault(label, &e, limits, &warm.store.data().stderr.text()))
    }

    /// Drops the idle instances of a prepared component that no longer serves.
    pub fn forget(&self, prepared: &Prepared) {
        self.idle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|(id, _), _| *id != prepared.id);
    }

    /// Bytes all adapter instances hold now, and the budget.
    pub fn memory(&self) -> (u64, u64) {
        (self.budget.used(), self.budget.limit())
    }

    /// Threads that run guests.
    pub fn guest_threads(&self) -> usize {
        self.pool.threads()
    }

    /// Runs `transform` on the guest pool (its probation lane with `on_probation`). When
    /// `cancelled` completes first (the subscription was deleted), the call is interrupted
    /// at its next slice and the answer is `Fault::Cancelled`.
    pub async fn run(
        self: &Arc<Self>,
        prepared: Prepared,
        call: OwnedCall,
        on_probation: bool,
        cancelled: impl Future<Output = ()>,
    ) -> Result<Action, Fault> {
        let label = call.label.clone();
        let sandbox = Arc::clone(self);
        let work = async move {
            let input = AdapterInput {
                subscription_id: &call.subscription_id,
                url: &call.url,
                settings: &call.settings,
                attempt: call.attempt,
                timestamp: call.timestamp,
                signing_keys: &call.signing_keys,
            };
            let borrowed = Call {
                label: &call.label,
                event: &call.event,
                input: &input,
                delivery_id: &call.delivery_id,
                limits: call.limits,
            };
            sandbox.transform(&prepared, borrowed).await
        };
        let mut task = if on_probation {
            self.pool.spawn_on_probation(work)
        } else {
            self.pool.spawn(work)
        };
        tokio::select! {
            joined = task.wait() => joined.unwrap_or_else(|e| Err(Fault::Trap {
                plugin: label,
                detail: format!("the call failed in the engine: {e}"),
            })),
            () = cancelled => Err(Fault::Cancelled { plugin: label }),
        }
    }

    /// Runs `transform` in a fresh instance (or a reused one, if the limits allow) and
    /// checks what it returned.
    pub async fn transform(&self, prepared: &Prepared, call: Call<'_>) -> Result<Action, Fault> {
        let _running = self.ticker.guest_running();
        let key = (prepared.id, call.input.subscription_id.to_owned());
        let reusable = if call.limits.instance_reuse > 0 {
            self.take_idle(&key)
        } else {
            None
        };
        let mut warm = match reusable {
            Some(warm) => warm,
            None => self
                .instantiate(prepared, call.label)
                .await
                .map_err(|e| classify_fault(call.label, &e, &call.limits, ""))?,
        };
        let budget_ticks = (call.limits.cpu_budget.as_millis() as u64).max(1);
        warm.store.data_mut().begin_call(
            call.delivery_id,
            budget_ticks,
            call.limits.max_memory_bytes,
            call.input.signing_keys,
        );
        warm.store.set_epoch_deadline(SLICE_TICKS.min(budget_ticks));
        let input = CallInput {
            event: call.event,
            subscription_id: call.input.subscription_id,
            url: call.input.url,
            settings: call.input.settings,
            message_id: call.delivery_id,
            attempt: call.input.attempt,
            timestamp: call.input.timestamp,
        };
        let result = warm.instance.transform(&mut warm.store, &input).await;
        match result {
            Ok(answer) => {
                warm.uses += 1;
                if warm.uses < call.limits.instance_reuse {
                    self.put_idle(key, warm);
                }
                let action = answer.map_err(|message| Fault::Returned {
                    plugin: call.label.clone(),
                    message,
                })?;
                check_output(call.label, &call.limits, action)
            }
            // A trapped instance is never reused.
            Err(e) => Err(classify_fault(
                call.label,
                &e,
                &call.limits,
                &warm.store.data().stderr.text(),
            )),
        }
    }

    async fn instantiate(
        &self,
        prepared: &Prepared,
        label: &PluginLabel,
    ) -> wasmtime::Result<Warm> {
        let mut store = Store::new(
            &self.engine,
            HostState::new(&label.name, Arc::clone(&self.budget)),
        );
        store.limiter(|s| &mut s.limiter);
        store.epoch_deadline_callback(|mut ctx| {
            let state = ctx.data_mut();
            state.ticks_used += SLICE_TICKS.min(state.budget_ticks);
            if state.ticks_used >= state.budget_ticks {
                return Ok(UpdateDeadline::Interrupt);
            }
            let next = SLICE_TICKS.min(state.budget_ticks - state.ticks_used);
            Ok(UpdateDeadline::YieldCustom(
                next,
                Box::pin(tokio::task::yield_now()),
            ))
        });
        // Instantiation runs guest start functions too: give it the default budget.
        store
            .data_mut()
            .begin_call("", 1_000, self.limits.max_memory_bytes, &[]);
        store.set_epoch_deadline(SLICE_TICKS);
        let instance = prepared.pre.instantiate(&mut store).await?;
        Ok(Warm {
            store,
            instance,
            uses: 0,
        })
    }

    fn take_idle(&self, key: &(u64, String)) -> Option<Warm> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let warm = idle.get_mut(key)?.pop()?;
        warm.store.data().stderr.clear();
        Some(warm)
    }

    fn put_idle(&self, key: (u64, String), warm: Warm) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let list = idle.entry(key).or_default();
        if list.len() < MAX_IDLE_PER_KEY {
            list.push(warm);
        }
    }
}

/// Enforces the output cap and the request rules the WIT documents.
fn check_output(label: &PluginLabel, limits: &CallLimits, action: Action) -> Result<Action, Fault> {
    let Action::Deliver(request) = &action else {
        return Ok(action);
    };
    let size = request.body.len()
        + request
            .headers
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum::<usize>()
        + request.url.as_ref().map_or(0, String::len);
    if size > limits.max_output_bytes {
        return Err(Fault::OutputTooLarge {
            plugin: label.clone(),
            size,
            limit: limits.max_output_bytes,
        });
    }
    let invalid = |reason: String| Fault::InvalidOutput {
        plugin: label.clone(),
        reason,
    };
    if !matches!(request.method.as_str(), "POST" | "PUT" | "PATCH") {
        return Err(invalid(format!(
            "method `{}` is not one of POST, PUT, PATCH",
            request.method
        )));
    }
    for (name, value) in &request.headers {
        if is_reserved_header(name) {
            return Err(invalid(format!(
                "header `{name}` is set by the engine or the connection; adapters cannot set it"
            )));
        }
        if http::HeaderName::try_from(name.as_str()).is_err()
            || http::HeaderValue::try_from(value.as_str()).is_err()
        {
            return Err(invalid(format!(
                "header `{name}` is not a valid HTTP header"
            )));
        }
    }
    Ok(action)
}

/// Turns a wasmtime error from instantiating or calling into a typed fault.
fn classify_fault(
    label: &PluginLabel,
    e: &wasmtime::Error,
    limits: &CallLimits,
    stderr: &str,
) -> Fault {
    if let Some(share) = e.downcast_ref::<MemoryShareExceeded>() {
        return Fault::MemoryLimit {
            plugin: label.clone(),
            limit_bytes: share.limit_bytes,
        };
    }
    if e.downcast_ref::<MemoryBudgetExhausted>().is_some() {
        return Fault::MemoryBudget {
            plugin: label.clone(),
        };
    }
    if e.downcast_ref::<MemoryLimitExceeded>().is_some() {
        return Fault::MemoryLimit {
            plugin: label.clone(),
            limit_bytes: limits.max_memory_bytes,
        };
    }
    if let Some(refused) = e.downcast_ref::<HostCallRefused>() {
        return Fault::Trap {
            plugin: label.clone(),
            detail: refused.to_string(),
        };
    }
    match e.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => Fault::CpuBudget {
            plugin: label.clone(),
            budget: limits.cpu_budget,
        },
        Some(trap) => Fault::Trap {
            plugin: label.clone(),
            detail: if stderr.is_empty() {
                trap.to_string()
            } else {
                format!("{trap}; stderr: {}", crate::text::truncate(stderr, 1000))
            },
        },
        None => Fault::Instantiate {
            plugin: label.clone(),
            detail: format!("{e:#}"),
        },
    }
}
