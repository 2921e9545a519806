//! What lives inside each adapter's `Store`: the empty WASI context, the log sink, the memory
//! limiter, the CPU-budget counter, the stderr tail, and the subscription's signing keys,
//! which only the host's HMAC function reads (they never enter the guest).

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use wasmtime::component::ResourceTable;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::signing::SigningKey;

/// Most of a guest's stderr kept for error messages (a Rust panic message lands there).
const STDERR_TAIL: usize = 16 << 10;
/// Log lines one call may write; the rest are dropped, so a chatty guest cannot flood logs.
const LOG_LINES_PER_CALL: u32 = 100;
/// Longest log line kept.
const LOG_LINE_MAX: usize = 4 << 10;
/// HMAC calls one adapter call may make.
const HMAC_CALLS_PER_CALL: u32 = 64;
/// Largest message one HMAC call may sign.
const HMAC_MESSAGE_MAX: usize = 4 << 20;

/// Per-store state. A store lives for one call, or for several when instance reuse is on;
/// `begin_call` resets what is per call.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    /// Caps linear memory.
    pub limiter: MemoryLimiter,
    /// Epoch ticks this call has used.
    pub ticks_used: u64,
    /// Epoch ticks this call may use.
    pub budget_ticks: u64,
    log: LogSink,
    /// The last bytes the guest wrote to stderr.
    pub stderr: StderrTail,
    /// The subscription's active signing keys for this call, newest first. Read only by
    /// `hmac_sha256`; no import hands them to the guest.
    signing_keys: Vec<SigningKey>,
    /// HMAC calls left in this call.
    hmac_calls_left: u32,
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

impl HostState {
    /// A state that grants nothing: no preopened folders, no environment, no sockets. Its
    /// memory counts against `budget`, the engine-wide total for adapters.
    pub fn new(plugin: &str, budget: Arc<MemoryBudget>) -> Self {
        let stderr = StderrTail::default();
        let wasi = WasiCtx::builder().stderr(stderr.clone()).build();
        Self {
            wasi,
            table: ResourceTable::new(),
            limiter: MemoryLimiter {
                max_bytes: 0,
                share: budget.share(plugin),
                budget,
                held: 0,
                last_grant: 0,
            },
            ticks_used: 0,
            budget_ticks: 0,
            log: LogSink {
                plugin: Arc::from(plugin),
                delivery_id: Arc::from(""),
                lines_left: 0,
            },
            stderr,
            signing_keys: Vec::new(),
            hmac_calls_left: 0,
        }
    }

    /// Resets the per-call counters and limits, and holds this call's signing keys.
    pub fn begin_call(
        &mut self,
        delivery_id: &str,
        budget_ticks: u64,
        max_memory_bytes: u64,
        signing_keys: &[SigningKey],
    ) {
        self.ticks_used = 0;
        self.budget_ticks = budget_ticks;
        self.limiter.max_bytes = max_memory_bytes;
        self.log.delivery_id = Arc::from(delivery_id);
        self.log.lines_left = LOG_LINES_PER_CALL;
        self.signing_keys = signing_keys.to_vec();
        self.hmac_calls_left = HMAC_CALLS_PER_CALL;
    }

    /// Writes one adapter log line to the engine's log, tagged with the plugin and the
    /// delivery; at most `LOG_LINES_PER_CALL` per call, each cut to `LOG_LINE_MAX`.
    pub fn log(&mut self, level: LogLevel, message: &str) {
        let sink = &mut self.log;
        if sink.lines_left == 0 {
            return;
        }
        sink.lines_left -= 1;
        let message = crate::text::truncate(message, LOG_LINE_MAX);
        let (plugin, delivery) = (&*sink.plugin, &*sink.delivery_id);
        match level {
            LogLevel::Trace => {
                tracing::trace!(target: "wasmhook::adapter", plugin, delivery, "{message}")
            }
            LogLevel::Debug => {
                tracing::debug!(target: "wasmhook::adapter", plugin, delivery, "{message}")
            }
            LogLevel::Info => {
                tracing::info!(target: "wasmhook::adapter", plugin, delivery, "{message}")
            }
            LogLevel::Warn => {
                tracing::warn!(target: "wasmhook::adapter", plugin, delivery, "{message}")
            }
            LogLevel::Error => {
                tracing::error!(target: "wasmhook::adapter", plugin, delivery, "{message}")
            }
        }
    }

    /// HMAC-SHA256 of `message` under each of this call's signing keys, newest first. Only
    /// the MACs leave the host. Refused (the guest traps) past `HMAC_CALLS_PER_CALL` calls
    /// or for a message over `HMAC_MESSAGE_MAX` bytes, so a guest cannot burn host CPU
    /// outside its epoch budget.
    pub fn hmac_sha256(&mut self, message: &[u8]) -> Result<Vec<Vec<u8>>, HostCallRefused> {
        if message.len() > HMAC_MESSAGE_MAX {
            return Err(HostCallRefused(format!(
                "hmac-sha256 was asked to sign {} bytes; the limit is {HMAC_MESSAGE_MAX}",
                message.len()
            )));
        }
        if self.hmac_calls_left == 0 {
            return Err(HostCallRefused(format!(
                "hmac-sha256 was called more than {HMAC_CALLS_PER_CALL} times in one call"
            )));
        }
        self.hmac_calls_left -= 1;
        Ok(self
            .signing_keys
            .iter()
            .map(|key| key.mac(message).to_vec())
            .collect())
    }
}

/// How loud an adapter's log line is, whatever WIT version it came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    /// Very detailed tracing.
    Trace,
    /// Developer detail.
    Debug,
    /// Normal operation.
    Info,
    /// Worked around.
    Warn,
    /// Failed.
    Error,
}

/// A host function refused a guest's request; the guest traps with this message.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct HostCallRefused(pub String);

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// The memory all adapter instances together may hold (`[plugins] total_memory_bytes`).
/// Each instance's limiter takes from it as its memories grow and gives it all back when
/// the instance is dropped. One plugin's instances together may hold at most half of it,
/// so a memory bomb cannot leave the other adapters without memory.
#[derive(Debug)]
pub struct MemoryBudget {
    limit: u64,
    used: AtomicU64,
    /// Bytes held per plugin name.
    shares: Mutex<std::collections::HashMap<String, Arc<AtomicU64>>>,
}

/// Which limit a grow would break.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Short {
    /// The plugin's share (half the budget): the plugin's own doing.
    Share,
    /// The whole budget: the engine is short.
    Total,
}

impl MemoryBudget {
    /// A budget of `limit` bytes, none used.
    pub fn new(limit: u64) -> Self {
        Self {
            limit,
            used: AtomicU64::new(0),
            shares: Mutex::default(),
        }
    }

    /// The most one plugin's instances may hold together.
    pub fn share_limit(&self) -> u64 {
        self.limit / 2
    }

    /// The counter of what `plugin`'s instances hold.
    fn share(&self, plugin: &str) -> Arc<AtomicU64> {
        let mut shares = self.shares.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(shares.entry(plugin.to_owned()).or_default())
    }

    /// Bytes held by live instances now.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// The limit.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    fn try_take(&self, share: &AtomicU64, bytes: u64) -> Result<(), Short> {
        let before = share.fetch_add(bytes, Ordering::AcqRel);
        if before.saturating_add(bytes) > self.share_limit() {
            share.fetch_sub(bytes, Ordering::AcqRel);
            return Err(Short::Share);
        }
        let before = self.used.fetch_add(bytes, Ordering::AcqRel);
        if before.saturating_add(bytes) > self.limit {
            self.used.fetch_sub(bytes, Ordering::AcqRel);
            share.fetch_sub(bytes, Ordering::AcqRel);
            return Err(Short::Total);
        }
        Ok(())
    }

    fn give_back(&self, share: &AtomicU64, bytes: u64) {
        share.fetch_sub(bytes, Ordering::AcqRel);
        self.used.fetch_sub(bytes, Ordering::AcqRel);
    }
}

/// Caps one instance's linear memory, and all instances' together. Growing past the
/// instance's cap traps with `MemoryLimitExceeded`, past the total with
/// `MemoryBudgetExhausted`; the sandbox turns each into its own typed fault.
#[derive(Debug)]
pub struct MemoryLimiter {
    max_bytes: u64,
    budget: Arc<MemoryBudget>,
    /// What this instance's plugin holds, all its instances together.
    share: Arc<AtomicU64>,
    /// Bytes this instance took from the budget.
    held: u64,
    /// The last grant, given back if wasmtime then fails the grow itself.
    last_grant: u64,
}

impl Drop for MemoryLimiter {
    fn drop(&mut self) {
        self.budget.give_back(&self.share, self.held);
    }
}

/// Raised inside the guest when it tries to grow memory past its cap.
#[derive(Debug, thiserror::Error)]
#[error("memory limit exceeded")]
pub struct MemoryLimitExceeded;

/// Raised inside the guest when its plugin's instances together would hold more than
/// their share of the total budget; the sandbox reports it as the plugin's memory limit.
#[derive(Debug, thiserror::Error)]
#[error("the plugin's share of the adapters' memory budget is used up")]
pub struct MemoryShareExceeded {
    /// The share, bytes.
    pub limit_bytes: u64,
}

/// Raised inside the guest when every adapter instance together holds the total budget.
#[derive(Debug, thiserror::Error)]
#[error("the adapters' total memory budget is in use")]
pub struct MemoryBudgetExhausted;

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired as u64 > self.max_bytes {
            return Err(wasmtime::Error::new(MemoryLimitExceeded));
        }
        let extra = (desired as u64).saturating_sub(current as u64);
        match self.budget.try_take(&self.share, extra) {
            Ok(()) => {}
            Err(Short::Share) => {
                return Err(wasmtime::Error::new(MemoryShareExceeded {
                    limit_bytes: self.budget.share_limit(),
                }));
            }
            Err(Short::Total) => return Err(wasmtime::Error::new(MemoryBudgetExhausted)),
        }
        self.held += extra;
        self.last_grant = extra;
        Ok(true)
    }

    fn memory_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        self.held -= self.last_grant;
        self.budget.give_back(&self.share, self.last_grant);
        self.last_grant = 0;
        Ok(())
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

/// A stderr that keeps only its last `STDERR_TAIL` bytes and never refuses a write, so a
/// chatty guest neither fills memory nor traps.
#[derive(Debug, Clone, Default)]
pub struct StderrTail(Arc<Mutex<VecDeque<u8>>>);

impl StderrTail {
    /// What is kept, lossily decoded.
    pub fn text(&self) -> String {
        let bytes = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let (a, b) = bytes.as_slices();
        let mut all = a.to_vec();
        all.extend_from_slice(b);
        String::from_utf8_lossy(&all).trim().to_owned()
    }

    /// Forgets what was written.
    pub fn clear(&self) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

impl IsTerminal for StderrTail {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for StderrTail {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl tokio::io::AsyncWrite for StderrTail {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let mut tail = self.0.lock().unwrap_or_else(|p| p.into_inner());
        tail.extend(buf.iter().copied());
        let excess = tail.len().saturating_sub(STDERR_TAIL);
        tail.drain(..excess);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[test]
    fn instances_share_the_memory_budget_and_give_it_back() {
        use wasmtime::ResourceLimiter as _;
        let budget = Arc::new(MemoryBudget::new(100 << 20));
        let state = |plugin: &str| {
            let mut s = HostState::new(plugin, Arc::clone(&budget));
            s.begin_call("d", 1, 64 << 20, &[]);
            s
        };
        let (mut a1, mut a2, mut b, mut c) = (state("a"), state("a"), state("b"), state("c"));
        assert!(a1.limiter.memory_growing(0, 40 << 20, None).unwrap());
        assert_eq!(budget.used(), 40 << 20);
        let err = a2.limiter.memory_growing(0, 20 << 20, None).unwrap_err();
        assert!(
            err.downcast_ref::<MemoryShareExceeded>().is_some(),
            "one plugin holds at most half"
        );
        assert!(b.limiter.memory_growing(0, 45 << 20, None).unwrap());
        let err = c.limiter.memory_growing(0, 20 << 20, None).unwrap_err();
        assert!(err.downcast_ref::<MemoryBudgetExhausted>().is_some());
        let err = a1
            .limiter
            .memory_growing(40 << 20, 65 << 20, None)
            .unwrap_err();
        assert!(err.downcast_ref::<MemoryLimitExceeded>().is_some());
        drop(a1);
        assert_eq!(
            budget.used(),
            45 << 20,
            "a dropped instance gives its memory back"
        );
        assert!(c.limiter.memory_growing(0, 20 << 20, None).unwrap());
        c.limiter
            .memory_grow_failed(wasmtime::Error::msg("pool full"))
            .unwrap();
        assert_eq!(
            budget.used(),
            45 << 20,
            "a grow wasmtime failed is given back"
        );
    }

    #[tokio::test]
    async fn stderr_keeps_only_its_tail() {
        let tail = StderrTail::default();
        let mut writer = tail.clone();
        writer.write_all(&vec![b'a'; STDERR_TAIL]).await.unwrap();
        writer.write_all(b"the end").await.unwrap();
        let text = tail.text();
        assert_eq!(text.len(), STDERR_TAIL);
        assert!(text.ends_with("the end"));
        tail.clear();
        assert!(tail.text().is_empty());
    }

    #[test]
    fn hmac_uses_every_key_newest_first_and_is_bounded() {
        let mut state = HostState::new("p", Arc::new(MemoryBudget::new(64 << 20)));
        let key = |text: &str| SigningKey::from_secret(&crate::secret::Secret::new(text)).unwrap();
        let (new, old) = (b"the-new-key-0123", b"the-old-key-0123");
        state.begin_call(
            "msg_1",
            10,
            1 << 20,
            &[key("the-new-key-0123"), key("the-old-key-0123")],
        );
        let macs = state.hmac_sha256(b"body").unwrap();
        let expected = |key: &[u8]| {
            use hmac::{Hmac, Mac};
            let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
            mac.update(b"body");
            mac.finalize().into_bytes().to_vec()
        };
        assert_eq!(macs, vec![expected(new), expected(old)]);
        assert!(state.hmac_sha256(&vec![0; HMAC_MESSAGE_MAX + 1]).is_err());
        for _ in 1..HMAC_CALLS_PER_CALL {
            state.hmac_sha256(b"x").unwrap();
        }
        let refused = state.hmac_sha256(b"x").unwrap_err();
        assert!(refused.to_string().contains("more than 64 times"));
        state.begin_call("msg_2", 10, 1 << 20, &[]);
        assert_eq!(state.hmac_sha256(b"x").unwrap(), Vec::<Vec<u8>>::new());
    }
}
