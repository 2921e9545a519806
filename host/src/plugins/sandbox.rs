//! The sandbox adapters run in: one wasmtime `Engine` with the pooling allocator, a fresh
//! `Store` and instance per call, an epoch-based CPU budget, a memory cap and an output cap,
//! and a WASI context that grants nothing (no files, no network, no environment).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, Trap,
    UpdateDeadline,
};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::{SUPPORTED_VERSIONS, v0_1_0};
use super::{Action, AdapterInput, Fault, OutboundRequest, PluginLabel};
use crate::event::Event;
use crate::subscription::is_reserved_header;

/// How often the epoch advances. The CPU budget is counted in these ticks.
const TICK: Duration = Duration::from_millis(1);
/// Ticks a guest runs before it yields to the async runtime, so a slow adapter never holds
/// a runtime thread for long.
const SLICE_TICKS: u64 = 5;
/// Most of a guest's stderr kept for error messages (a Rust panic message lands there).
const STDERR_CAPTURE: usize = 16 << 10;
/// Log lines one call may write; the rest are dropped, so a chatty guest cannot flood logs.
const LOG_LINES_PER_CALL: u32 = 100;
/// Longest log line kept.
const LOG_LINE_MAX: usize = 4 << 10;

/// Limits applied to every call.
#[derive(Debug, Clone)]
pub struct SandboxLimits {
    /// Time one call may run before it is interrupted.
    pub cpu_budget: Duration,
    /// Largest linear memory, in bytes.
    pub max_memory_bytes: u64,
    /// Largest request body plus headers an adapter may return, in bytes.
    pub max_output_bytes: usize,
    /// Instances that may exist at once (pool slots).
    pub slots: u32,
}

/// The shared sandbox: engine, linker and epoch clock.
pub struct Sandbox {
    engine: Engine,
    linker: Linker<HostState>,
    limits: SandboxLimits,
    /// Kept only so the epoch clock stops when the sandbox is dropped.
    _ticker: EpochTicker,
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
    pre: PreparedWorld,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("world_version", &self.world_version)
            .finish()
    }
}

/// One variant per supported WIT version.
#[derive(Clone)]
enum PreparedWorld {
    V0_1_0(v0_1_0::AdapterPre<HostState>),
}

/// Per-call state inside the store.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: MemoryLimiter,
    /// Ticks this call has used; compared with the budget at every slice.
    ticks_used: u64,
    log: LogSink,
}

impl std::fmt::Debug for HostState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostState")
            .field("plugin", &self.log.plugin)
            .field("ticks_used", &self.ticks_used)
            .finish_non_exhaustive()
    }
}

struct LogSink {
    plugin: Arc<str>,
    delivery_id: Arc<str>,
    lines_left: u32,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl v0_1_0::wasmhook::adapter::types::Host for HostState {}

impl v0_1_0::wasmhook::adapter::log::Host for HostState {
    fn log(&mut self, level: v0_1_0::wasmhook::adapter::log::Level, message: String) {
        use v0_1_0::wasmhook::adapter::log::Level;
        let sink = &mut self.log;
        if sink.lines_left == 0 {
            return;
        }
        sink.lines_left -= 1;
        let mut message = message;
        if message.len() > LOG_LINE_MAX {
            let mut cut = LOG_LINE_MAX;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
        }
        let (plugin, delivery) = (&*sink.plugin, &*sink.delivery_id);
        match level {
            Level::Trace => {
                tracing::trace!(target: "wasmhook::adapter", plugin, delivery, "{message}")
            }
            Level::Debug => {
                tracing::debug!(target: "wasmhook::adapter", plugin, delivery, "{message}")
            }
            Level::Info => {
                tracing::info!(target: "wasmhook::adapter", plugin, delivery, "{message}")
            }
            Level::Warn => {
                tracing::warn!(target: "wasmhook::adapter", plugin, delivery, "{message}")
            }
            Level::Error => {
                tracing::error!(target: "wasmhook::adapter", plugin, delivery, "{message}")
            }
        }
    }
}

/// Caps linear memory; growing past the cap traps with `MemoryLimitExceeded`, which the
/// caller turns into a typed fault.
struct MemoryLimiter {
    max_bytes: u64,
}

/// Raised inside the guest when it tries to grow memory past its cap.
#[derive(Debug, thiserror::Error)]
#[error("memory limit exceeded")]
struct MemoryLimitExceeded;

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired as u64 > self.max_bytes {
            return Err(wasmtime::Error::new(MemoryLimitExceeded));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}

/// Advances the engine's epoch every `TICK` on a background thread until dropped.
struct EpochTicker {
    stop: Arc<AtomicBool>,
}

impl EpochTicker {
    fn start(engine: Engine) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        std::thread::Builder::new()
            .name("wasmhook-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(TICK);
                    engine.increment_epoch();
                }
            })?;
        Ok(Self { stop })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Why a component cannot be used as an adapter.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    /// Not a WebAssembly component (a core module, or not wasm at all).
    #[error("not a WebAssembly component: {0}")]
    NotAComponent(String),
    /// A component, but not of a world this engine runs.
    #[error("{0}")]
    WrongWorld(String),
}

impl Sandbox {
    /// Builds the engine and linker for `limits`.
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
            .max_memory_size(usize::try_from(limits.max_memory_bytes)?);
        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .epoch_interruption(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        v0_1_0::Adapter::add_to_linker::<HostState, wasmtime::component::HasSelf<HostState>>(
            &mut linker,
            |s| s,
        )?;
        let ticker = EpochTicker::start(engine.clone())?;
        Ok(Self {
            engine,
            linker,
            limits,
            _ticker: ticker,
        })
    }

    /// The engine, for compiling and for the compile cache's compatibility key.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The limits every call runs under.
    pub fn limits(&self) -> &SandboxLimits {
        &self.limits
    }

    /// Compiles `bytes` to native code. CPU-heavy: call it off the async runtime.
    pub fn compile(&self, bytes: &[u8]) -> Result<Component, PrepareError> {
        if !bytes.starts_with(b"\0asm") {
            return Err(PrepareError::NotAComponent(
                "the file does not start with the wasm magic bytes `\\0asm`".into(),
            ));
        }
        // Byte 4..8: a core module has version 1; a component has layer 1 there.
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

    /// Checks `component` against each supported world and prepares it for instantiation.
    pub fn prepare(&self, component: &Component) -> Result<Prepared, PrepareError> {
        let declared = declared_version(&self.engine, component);
        if let Some(version) = &declared
            && !SUPPORTED_VERSIONS.contains(&version.as_str())
        {
            return Err(PrepareError::WrongWorld(format!(
                "the component implements wasmhook:adapter@{version}, which this engine does not run; \
                 supported versions: {}",
                SUPPORTED_VERSIONS.join(", ")
            )));
        }
        let pre = self
            .linker
            .instantiate_pre(component)
            .map_err(|e| wrong_world(&e))?;
        let pre = v0_1_0::AdapterPre::new(pre).map_err(|e| wrong_world(&e))?;
        Ok(Prepared {
            world_version: "0.1.0",
            pre: PreparedWorld::V0_1_0(pre),
        })
    }

    /// Runs `transform` in a fresh instance and checks what it returned.
    pub async fn transform(
        &self,
        prepared: &Prepared,
        label: &PluginLabel,
        event: &Event,
        input: &AdapterInput<'_>,
        delivery_id: &str,
    ) -> Result<Action, Fault> {
        let stderr = MemoryOutputPipe::new(STDERR_CAPTURE);
        let mut store = self.new_store(label, delivery_id, stderr.clone());
        let raw = match &prepared.pre {
            PreparedWorld::V0_1_0(pre) => {
                let result = async {
                    let instance = pre.instantiate_async(&mut store).await?;
                    let event = v0_1_0::Event {
                        id: event.id.clone(),
                        type_: event.kind.clone(),
                        timestamp: event.timestamp(),
                        data: event.data.clone(),
                    };
                    let context = v0_1_0::Context {
                        subscription_id: input.subscription_id.to_owned(),
                        url: input.url.to_owned(),
                        settings: input.settings.to_vec(),
                    };
                    instance.call_transform(&mut store, &event, &context).await
                }
                .await;
                match result {
                    Ok(Ok(v0_1_0::Action::Deliver(r))) => Ok(Action::Deliver(OutboundRequest {
                        method: r.method,
                        url: r.url,
                        headers: r.headers,
                        body: r.body,
                    })),
                    Ok(Ok(v0_1_0::Action::Skip(reason))) => Ok(Action::Skip(reason)),
                    Ok(Err(e)) => Err(Fault::Returned {
                        plugin: label.clone(),
                        message: e.message,
                    }),
                    Err(e) => Err(classify_fault(label, &e, &self.limits, &stderr)),
                }
            }
        };
        raw.and_then(|action| self.check_output(label, action))
    }

    fn new_store(
        &self,
        label: &PluginLabel,
        delivery_id: &str,
        stderr: MemoryOutputPipe,
    ) -> Store<HostState> {
        let wasi = WasiCtx::builder().stderr(stderr).build();
        let state = HostState {
            wasi,
            table: ResourceTable::new(),
            limiter: MemoryLimiter {
                max_bytes: self.limits.max_memory_bytes,
            },
            ticks_used: 0,
            log: LogSink {
                plugin: Arc::from(label.name.as_str()),
                delivery_id: Arc::from(delivery_id),
                lines_left: LOG_LINES_PER_CALL,
            },
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);
        let budget_ticks = (self.limits.cpu_budget.as_millis() as u64).max(1);
        store.set_epoch_deadline(SLICE_TICKS.min(budget_ticks));
        store.epoch_deadline_callback(move |mut ctx| {
            let state = ctx.data_mut();
            state.ticks_used += SLICE_TICKS.min(budget_ticks);
            if state.ticks_used >= budget_ticks {
                return Ok(UpdateDeadline::Interrupt);
            }
            let next = SLICE_TICKS.min(budget_ticks - state.ticks_used);
            Ok(UpdateDeadline::YieldCustom(
                next,
                Box::pin(tokio::task::yield_now()),
            ))
        });
        store
    }

    /// Enforces the output cap and the request rules the WIT documents.
    fn check_output(&self, label: &PluginLabel, action: Action) -> Result<Action, Fault> {
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
        if size > self.limits.max_output_bytes {
            return Err(Fault::OutputTooLarge {
                plugin: label.clone(),
                size,
                limit: self.limits.max_output_bytes,
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
                    "header `{name}` is set by the engine; adapters cannot set it"
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
}

/// The `wasmhook:adapter@X` version a component names in its imports or exports, if any.
fn declared_version(engine: &Engine, component: &Component) -> Option<String> {
    let ty = component.component_type();
    let names = ty
        .imports(engine)
        .map(|(name, _)| name.to_owned())
        .chain(ty.exports(engine).map(|(name, _)| name.to_owned()));
    names
        .filter_map(|name| name.strip_prefix("wasmhook:adapter/").map(str::to_owned))
        .find_map(|rest| rest.split_once('@').map(|(_, v)| v.to_owned()))
}

fn wrong_world(e: &wasmtime::Error) -> PrepareError {
    PrepareError::WrongWorld(format!(
        "the component does not implement the wasmhook:adapter world (supported versions: {}): {e:#}",
        SUPPORTED_VERSIONS.join(", ")
    ))
}

/// Turns a wasmtime error from instantiating or calling into a typed fault.
fn classify_fault(
    label: &PluginLabel,
    e: &wasmtime::Error,
    limits: &SandboxLimits,
    stderr: &MemoryOutputPipe,
) -> Fault {
    if e.downcast_ref::<MemoryLimitExceeded>().is_some() {
        return Fault::MemoryLimit {
            plugin: label.clone(),
            limit_bytes: limits.max_memory_bytes,
        };
    }
    match e.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => Fault::CpuBudget {
            plugin: label.clone(),
            budget: limits.cpu_budget,
        },
        Some(trap) => {
            let output = String::from_utf8_lossy(&stderr.contents())
                .trim()
                .to_owned();
            Fault::Trap {
                plugin: label.clone(),
                detail: if output.is_empty() {
                    trap.to_string()
                } else {
                    format!("{trap}; stderr: {}", crate::text::truncate(&output, 1000))
                },
            }
        }
        None => Fault::Instantiate {
            plugin: label.clone(),
            detail: format!("{e:#}"),
        },
    }
}
