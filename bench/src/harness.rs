//! Runs the engine in this process for a benchmark: preloads a backlog into the store
//! through the ingest service, then starts `wasmhook::engine::run` on 127.0.0.1:0 and stops
//! it afterwards.

use std::path::Path;
use std::sync::Arc;

use tokio::sync::{Notify, oneshot};
use wasmhook::clock::now_ms;
use wasmhook::config::{Config, DeliveryConfig, LimitsConfig, ProcessEnv};
use wasmhook::event::EventDraft;
use wasmhook::ingest::Ingest;
use wasmhook::metrics::Metrics;
use wasmhook::store::{EmbeddedStore, Store, StoredSubscription, SubscriptionSource};
use wasmhook::subscription::{StoredSecret, SubscriptionSpec, Subscriptions};

/// A running engine.
#[derive(Debug)]
pub struct Engine {
    /// `http://127.0.0.1:<port>`, for scenarios that publish through the API.
    #[allow(dead_code)]
    pub base: String,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Engine {
    /// Starts the engine on `config_toml`, with its store and plugins under `dir`.
    pub async fn start(config_toml: &str, dir: &Path) -> anyhow::Result<Self> {
        let mut config = Config::parse(config_toml)?;
        config.storage.path = dir.join("data");
        config.plugins.dir = dir.join("plugins");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            wasmhook::engine::run(config, &ProcessEnv, listener, async {
                let _ = stopped.await;
            })
            .await
        });
        Ok(Self {
            base,
            stop: Some(stop),
            task,
        })
    }

    /// Stops it and waits until it has.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.task).await?
    }
}

/// An engine in a process of its own (this binary, re-run as `engine-child`), so that its
/// memory can be measured alone.
#[derive(Debug)]
pub struct ChildEngine {
    child: std::process::Child,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
}

impl ChildEngine {
    /// Starts the engine on `config_toml` in `dir` and waits until it listens; its log goes
    /// to `<dir>/engine.log`.
    pub fn start(config_toml: &str, dir: &Path) -> anyhow::Result<Self> {
        use std::io::BufRead as _;
        std::fs::write(dir.join("wasmhook.toml"), config_toml)?;
        let mut child = std::process::Command::new(std::env::current_exe()?)
            .arg("engine-child")
            .arg("--dir")
            .arg(dir)
            .stdout(std::process::Stdio::piped())
            .stderr(std::fs::File::create(dir.join("engine.log"))?)
            .spawn()?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow::anyhow!("no stdout"))?;
        let mut line = String::new();
        std::io::BufReader::new(stdout).read_line(&mut line)?;
        let addr = line.trim().strip_prefix("listening on ").ok_or_else(|| {
            let log = std::fs::read_to_string(dir.join("engine.log")).unwrap_or_default();
            anyhow::anyhow!("the child engine did not start: {line}{log}")
        })?;
        Ok(Self {
            base: format!("http://{addr}"),
            child,
        })
    }

    /// The child's CPU time so far (user and system), seconds.
    pub fn cpu_seconds(&self) -> f64 {
        stat_cpu_seconds(Path::new(&format!("/proc/{}/stat", self.child.id())))
    }

    /// The CPU time so far of the child's SQLite writer thread (`wasmhook-store`), seconds;
    /// 0 when it has none. The part of the engine a store change acts on, so an A/B of such
    /// a change is not diluted by the rest of the engine's time.
    pub fn writer_cpu_seconds(&self) -> f64 {
        let tasks = std::fs::read_dir(format!("/proc/{}/task", self.child.id()));
        tasks
            .into_iter()
            .flatten()
            .flatten()
            .find(|task| {
                std::fs::read_to_string(task.path().join("comm"))
                    .is_ok_and(|comm| comm.trim_end() == "wasmhook-store")
            })
            .map_or(0.0, |task| stat_cpu_seconds(&task.path().join("stat")))
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The child's peak RSS so far, bytes.
    pub fn peak_rss(&self) -> u64 {
        vm_hwm(&format!("/proc/{}/status", self.child.id()))
    }
}

impl Drop for ChildEngine {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `engine-child` scenario: runs the engine on `<dir>/wasmhook.toml` with its store and
/// plugins under `dir`, prints `listening` when it does, and runs until killed.
pub fn engine_child(dir: Option<&Path>) -> anyhow::Result<()> {
    let dir = dir.ok_or_else(|| anyhow::anyhow!("engine-child needs --dir"))?;
    let mut config = Config::parse(&std::fs::read_to_string(dir.join("wasmhook.toml"))?)?;
    config.storage.path = dir.join("data");
    config.plugins.dir = dir.join("plugins");
    // Logs as `wasmhook serve` does on its defaults, into `<dir>/engine.log`.
    wasmhook::cli::init_default_logging();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        println!("listening on {}", listener.local_addr()?);
        wasmhook::engine::run(config, &ProcessEnv, listener, std::future::pending()).await
    })
}

/// Writes `events` events with one delivery per subscription in `subscriptions` into the
/// store under `dir`, in batches, through the ingest service. The payload is
/// `payload_bytes` long.
pub async fn preload(
    dir: &Path,
    subscriptions: &[&str],
    events: usize,
    payload_bytes: usize,
) -> anyhow::Result<()> {
    let store = EmbeddedStore::open(&dir.join("data"), now_ms())?;
    preload_into(Arc::new(store), subscriptions, events, payload_bytes).await
}

/// A preloaded event's `data`: exactly `bytes` long (at least its fields) whatever `n`,
/// so the largest payload stays within `[limits] max_event_bytes` (256 KiB by default).
pub fn preload_data(n: usize, bytes: usize) -> String {
    let head = format!("{{\"n\":{n},\"summary\":\"event {n}\",\"pad\":\"");
    let fill = bytes.saturating_sub(head.len() + 2);
    format!("{head}{}\"}}", "x".repeat(fill))
}

/// As `preload`, into any store. Each id in `subscriptions` is stored as a config-file
/// subscription to `bench.*` first, so ingest routes to it; the engine's own config,
/// which names the same ids, replaces those records when it starts.
pub async fn preload_into(
    store: Arc<dyn Store>,
    subscriptions: &[&str],
    events: usize,
    payload_bytes: usize,
) -> anyhow::Result<()> {
    let now = now_ms();
    let placeholder = SubscriptionSpec {
        url: "http://127.0.0.1:9/preloaded".into(),
        events: vec!["bench.*".into()],
        secrets: vec![StoredSecret {
            secret: wasmhook::signing::generate_secret().expose().to_owned(),
            expires_at_ms: None,
        }],
        ..SubscriptionSpec::default()
    };
    let records = subscriptions
        .iter()
        .map(|id| StoredSubscription {
            id: (*id).to_owned(),
            source: SubscriptionSource::Config,
            spec: placeholder.to_json(),
            enabled: true,
            disabled_reason: None,
            created_at_ms: now,
            updated_at_ms: now,
        })
        .collect();
    store.sync_config_subscriptions(records).await?;
    let catalog = Subscriptions::load(Arc::clone(&store), DeliveryConfig::default()).await?;
    let ingest = Ingest::new(
        store,
        Arc::new(catalog),
        None,
        Arc::new(Notify::new()),
        Metrics::default(),
        LimitsConfig::default().event_limits(),
    );
    let mut i = 0;
    while i < events {
        let batch: Vec<EventDraft> = (i..(i + 1000).min(events))
            .map(|n| EventDraft {
                id: Some(format!("evt_{n}")),
                kind: "bench.event".into(),
                data: Some(preload_data(n, payload_bytes)),
            })
            .collect();
        i += batch.len();
        ingest.publish_batch(batch, None).await?;
    }
    Ok(())
}

/// Microseconds since the benchmark started, on one monotonic clock shared by publishers
/// and the receiver (they run in this process).
pub fn micros() -> u64 {
    static START: std::sync::LazyLock<std::time::Instant> =
        std::sync::LazyLock::new(std::time::Instant::now);
    START.elapsed().as_micros() as u64
}

/// The process's peak resident set size so far, in bytes (`VmHWM`).
pub fn peak_rss() -> u64 {
    vm_hwm("/proc/self/status")
}

/// User and system CPU time of a `/proc/<pid>/stat` or `/proc/<pid>/task/<tid>/stat`
/// file, seconds (its clock ticks are 1/100 s on Linux); 0 when unreadable.
fn stat_cpu_seconds(path: &Path) -> f64 {
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    // The fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the whole line, 11 and 12 counting from 0
    // after `)`.
    (ticks(11) + ticks(12)) / 100.0
}

/// `VmHWM` of a `/proc/<pid>/status` file, in bytes; 0 when unreadable.
fn vm_hwm(status: &str) -> u64 {
    std::fs::read_to_string(status)
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// Resets the peak RSS to the current RSS, so the next `peak_rss` covers only what
/// follows (Linux: writing 5 to `/proc/self/clear_refs`).
pub fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Bytes the store under `dir` takes on disk (database, WAL and shared memory).
pub fn store_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir.join("data"))
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with("wasmhook.db"))
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// The `[[subscriptions]]` entry of a benchmark subscription.
pub fn subscription(id: &str, url: &str, extra: &str) -> String {
    format!(
        "[[subscriptions]]\nid = \"{id}\"\nurl = \"{url}\"\nevents = [\"*\"]\nsecret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"\n{extra}\n"
    )
}

/// A config preamble: `concurrency` attempts per endpoint (the baseline's concurrency),
/// twice that across endpoints, as the defaults also leave room; 0 keeps the engine's
/// defaults.
pub fn preamble(concurrency: usize) -> String {
    if concurrency == 0 {
        return "[delivery]\nallow_private_networks = true\n\n".into();
    }
    format!(
        "[delivery]\nallow_private_networks = true\nconcurrency = {}\nendpoint_concurrency = {concurrency}\n\n",
        concurrency * 2
    )
}

/// A throwaway server started by one of the repository's scripts (`scripts/pg-cluster`,
/// `scripts/nats-server`): `start` prints `<url> <folder>` once it accepts clients, and
/// `stop <folder>` removes it, which happens when this is dropped.
#[derive(Debug)]
pub struct ScriptServer {
    /// What `start` printed first: the URL clients connect to.
    pub url: String,
    dir: String,
    script: std::path::PathBuf,
}

impl ScriptServer {
    /// Runs `scripts/<name> start` (which installs the server from Debian when missing).
    pub fn start(name: &str) -> anyhow::Result<Self> {
        let script = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../scripts")
            .join(name);
        let out = std::process::Command::new(&script).arg("start").output()?;
        anyhow::ensure!(
            out.status.success(),
            "scripts/{name} start failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let line = String::from_utf8(out.stdout)?;
        let (url, dir) = line
            .trim()
            .split_once(' ')
            .ok_or_else(|| anyhow::anyhow!("scripts/{name} printed `{line}`"))?;
        Ok(Self {
            url: url.to_owned(),
            dir: dir.to_owned(),
            script,
        })
    }
}

impl Drop for ScriptServer {
    fn drop(&mut self) {
        let _ = std::process::Command::new(&self.script)
            .args(["stop", &self.dir])
            .status();
    }
}

/// Runs `job(0)` to `job(jobs - 1)` on `workers` concurrent tasks, each taking the next
/// number as it finishes one (as producers share out work), and returns how long they
/// took together.
pub async fn share_out<F, Fut>(
    workers: usize,
    jobs: u64,
    job: F,
) -> anyhow::Result<std::time::Duration>
where
    F: Fn(u64) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send,
{
    use std::sync::atomic::{AtomicU64, Ordering};
    let next = Arc::new(AtomicU64::new(0));
    let started = std::time::Instant::now();
    let mut tasks = Vec::with_capacity(workers);
    for _ in 0..workers {
        let (job, next) = (job.clone(), Arc::clone(&next));
        tasks.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= jobs {
                    return anyhow::Ok(());
                }
                job(n).await?;
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(started.elapsed())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preloaded_data_is_exactly_the_payload_size_for_any_event_number() {
        for n in [0, 7, 1_999, 999_999] {
            let data = preload_data(n, 256 << 10);
            assert_eq!(data.len(), 256 << 10, "event {n}");
            serde_json::from_str::<serde_json::Value>(&data).expect("JSON");
        }
    }
}
