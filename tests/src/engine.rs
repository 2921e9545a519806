//! Runs the real `wasmhook` binary for a test: writes its config into a temporary folder,
//! starts `wasmhook serve` on port 0, waits until `/healthz` answers, and kills it on drop.

use std::future::Future;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use serde_json::Value;

/// The binary under test: `wasmhook` next to the test executable's `deps/` folder (cargo
/// builds this package's binary before its integration tests).
pub fn bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/<test>");
    dir.join(format!("wasmhook{}", std::env::consts::EXE_SUFFIX))
}

/// How long an engine may take to start (a debug build compiles every plugin).
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// A folder holding a config, `plugins/` and `data/`; it outlives engine restarts.
#[derive(Debug)]
pub struct Workdir {
    dir: tempfile::TempDir,
}

impl Default for Workdir {
    fn default() -> Self {
        Self::new()
    }
}

impl Workdir {
    /// A fresh folder with an empty `plugins/`.
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("wasmhook-test-")
            .tempdir()
            .expect("tempdir");
        std::fs::create_dir_all(dir.path().join("plugins")).expect("plugins dir");
        Self { dir }
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The plugins folder.
    pub fn plugins(&self) -> PathBuf {
        self.path().join("plugins")
    }

    /// Copies a built component into `plugins/<name>.wasm`.
    pub fn install_plugin(&self, name: &str, built: &str) {
        std::fs::copy(built, self.plugins().join(format!("{name}.wasm"))).expect("copy plugin");
    }

    /// Writes [`crate::STORAGE_KEY`] to `storage.key`, for a config that says
    /// `encryption_key_files = ["storage.key"]`; returns its path.
    pub fn write_storage_key(&self) -> PathBuf {
        let path = self.path().join("storage.key");
        std::fs::write(&path, crate::STORAGE_KEY).expect("write storage key");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                .expect("chmod storage key");
        }
        path
    }

    /// Writes `wasmhook.toml`.
    pub fn write_config(&self, toml: &str) -> PathBuf {
        let path = self.path().join("wasmhook.toml");
        std::fs::write(&path, toml).expect("write config");
        path
    }

    /// Starts the engine on the config in this folder.
    pub async fn start(&self) -> Engine {
        Engine::start(&self.path().join("wasmhook.toml"), &[]).await
    }
}

/// A running engine process.
#[derive(Debug)]
pub struct Engine {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    log: Arc<Mutex<String>>,
    http: reqwest::Client,
}

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `wasmhook <args>`, or, with `shell`, `sh -c '<shell>; exec wasmhook <args>'` (to start
/// it under `ulimit` limits or with signals ignored).
fn command(args: &[&str], shell: Option<&str>) -> Command {
    match shell {
        None => {
            let mut cmd = Command::new(bin());
            cmd.args(args);
            cmd
        }
        Some(shell) => {
            let mut cmd = Command::new("sh");
            cmd.arg("-c")
                .arg(format!("{shell}; exec \"$0\" \"$@\""))
                .arg(bin())
                .args(args);
            cmd
        }
    }
}

/// Spawns `wasmhook <args>` and collects stderr into `log`; `ready` gets the listen address.
fn spawn(
    args: &[&str],
    env: &[(&str, &str)],
    shell: Option<&str>,
) -> (Child, Arc<Mutex<String>>, mpsc::Receiver<String>) {
    let mut cmd = command(args, shell);
    cmd.env("WASMHOOK_LISTEN", "127.0.0.1:0")
        .env("RUST_LOG", "info")
        // Plain log lines, so tests can match `field=value`.
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn wasmhook");
    let stderr = child.stderr.take().expect("piped stderr");
    let log = Arc::new(Mutex::new(String::new()));
    let (tx, rx) = mpsc::channel();
    let sink = Arc::clone(&log);
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            // The address ends the text line, or the message string of a JSON line.
            if let Some(addr) = line.split("listening on http://").nth(1) {
                let addr = addr.split('"').next().unwrap_or(addr);
                let _ = tx.send(addr.trim().to_owned());
            }
            let mut log = sink.lock().expect("lock");
            log.push_str(&line);
            log.push('\n');
        }
    });
    (child, log, rx)
}

impl Engine {
    /// Starts `wasmhook serve --config <config>` and waits until it is healthy.
    pub async fn start(config: &Path, env: &[(&str, &str)]) -> Self {
        Self::start_under(config, env, None).await
    }

    /// As [`Engine::start`], with the engine exec'd from `sh -c '<shell>; exec …'`, such as
    /// `ulimit -n 256` to start it with a low open-file limit.
    pub async fn start_under(config: &Path, env: &[(&str, &str)], shell: Option<&str>) -> Self {
        let config = config.to_str().expect("utf-8 path").to_owned();
        let (mut child, log, ready) = spawn(&["serve", "--config", &config], env, shell);
        let addr = tokio::task::spawn_blocking(move || ready.recv_timeout(START_TIMEOUT))
            .await
            .expect("join");
        let addr = match addr {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "wasmhook did not start; its log:\n{}",
                    log.lock().expect("lock")
                );
            }
        };
        let engine = Self {
            child,
            base: format!("http://{addr}"),
            log,
            http: reqwest::Client::new(),
        };
        let health = engine
            .http
            .get(format!("{}/healthz", engine.base))
            .send()
            .await;
        assert!(
            health.is_ok_and(|r| r.status() == 200),
            "/healthz did not answer 200; log:\n{}",
            engine.log()
        );
        engine
    }

    /// Sends `Authorization: Bearer <token>` with every request from now on.
    pub fn authorize(&mut self, token: &str) {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            reqwest::header::AUTHORIZATION,
            format!("Bearer {token}").parse().expect("header value"),
        );
        self.http = reqwest::Client::builder()
            .default_headers(headers)
            .build()
            .expect("client");
    }

    /// Everything the engine logged so far.
    pub fn log(&self) -> String {
        self.log.lock().expect("lock").clone()
    }

    /// Polls the log until `done` holds for it; panics with the log after `timeout`.
    pub async fn wait_log(&self, timeout: Duration, what: &str, done: impl Fn(&str) -> bool) {
        let what = format!("the log, waiting for {what},");
        poll_until(&what, timeout, || async { self.log() }, |log| done(log)).await;
    }

    /// Bytes the engine process has read through any read call so far (`rchar` of
    /// `/proc/<pid>/io`): files, sockets and pipes alike.
    pub fn bytes_read(&self) -> u64 {
        let io = std::fs::read_to_string(format!("/proc/{}/io", self.pid())).expect("proc io");
        io.lines()
            .find_map(|l| l.strip_prefix("rchar: "))
            .and_then(|v| v.trim().parse().ok())
            .expect("rchar in /proc/<pid>/io")
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal and waits for the process to exit; returns its exit status.
    pub fn signal(&mut self, signal: i32) -> std::process::ExitStatus {
        send_signal(self.child.id(), signal);
        self.child.wait().expect("wait")
    }

    /// `POST path` with a JSON body; returns status and JSON answer.
    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.post_raw(path, body.to_string().into_bytes()).await
    }

    /// `POST path` with raw bytes.
    pub async fn post_raw(&self, path: &str, body: Vec<u8>) -> (u16, Value) {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("POST");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Any method with an optional JSON body; returns status and JSON answer.
    pub async fn request(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// `GET path`; returns status and JSON answer.
    pub async fn get(&self, path: &str) -> (u16, Value) {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("GET");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// `GET path`; the JSON answer whatever the status.
    async fn get_json(&self, path: &str) -> Value {
        self.get(path).await.1
    }

    /// Publishes an event and asserts it was accepted; returns the answer.
    pub async fn publish(&self, event: Value) -> Value {
        let (status, body) = self.post("/v1/events", &event).await;
        assert_eq!(status, 202, "publish {event} -> {body}");
        body
    }

    /// The `/v1/plugins` entry of plugin `name`, or null when the engine knows none.
    pub async fn plugin_info(&self, name: &str) -> Value {
        let (_, plugins) = self.get("/v1/plugins").await;
        plugins["data"]
            .as_array()
            .expect("plugin list")
            .iter()
            .find(|p| p["name"] == name)
            .cloned()
            .unwrap_or(Value::Null)
    }

    /// Polls `/v1/plugins` until `done` holds for plugin `name`; panics after `timeout`.
    pub async fn wait_plugin(
        &self,
        name: &str,
        timeout: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let what = format!("plugin {name}");
        poll_until(&what, timeout, || self.plugin_info(name), done).await
    }

    /// Runs a subscription's test ping (`POST /v1/subscriptions/{id}/test`), asserts its
    /// first attempt ended, and returns that attempt.
    pub async fn test_ping(&self, id: &str) -> Value {
        let (status, detail) = self
            .post(
                &format!("/v1/subscriptions/{id}/test"),
                &serde_json::json!({}),
            )
            .await;
        assert_eq!(status, 200, "{id}: {detail}");
        detail["attempts_log"][0].clone()
    }

    /// The deliveries of one event.
    pub async fn deliveries_of(&self, event_id: &str) -> Vec<Value> {
        let (status, body) = self
            .get(&format!("/v1/deliveries?event_id={event_id}"))
            .await;
        assert_eq!(status, 200, "{body}");
        body["data"].as_array().cloned().unwrap_or_default()
    }

    /// Waits until each of `subscription`'s deliveries (there must be `count`) is a dead
    /// letter; returns them with their attempts.
    pub async fn dead_letters_of(
        &self,
        subscription: &str,
        count: usize,
        timeout: Duration,
    ) -> Vec<Value> {
        let (_, list) = self
            .get(&format!(
                "/v1/deliveries?subscription_id={subscription}&limit=1000"
            ))
            .await;
        let list = list["data"].as_array().cloned().unwrap_or_default();
        assert_eq!(list.len(), count, "deliveries of {subscription}");
        let mut dead = Vec::new();
        for d in list {
            let id = d["id"].as_str().expect("id");
            dead.push(
                self.wait_delivery(id, timeout, |d| d["status"] == "dead_letter")
                    .await,
            );
        }
        dead
    }

    /// Polls `GET /v1/deliveries/{id}` until `done` holds for it; panics after `timeout`.
    pub async fn wait_delivery(
        &self,
        id: &str,
        timeout: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let (what, path) = (format!("delivery {id}"), format!("/v1/deliveries/{id}"));
        poll_until(&what, timeout, || self.get_json(&path), done).await
    }
}

/// Calls `probe` every 20 ms until `done` holds for its answer, and returns that answer;
/// panics with `what` and the last answer after `timeout`.
async fn poll_until<T: std::fmt::Display, F: Future<Output = T>>(
    what: &str,
    timeout: Duration,
    mut probe: impl FnMut() -> F,
    done: impl Fn(&T) -> bool,
) -> T {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let answer = probe().await;
        if done(&answer) {
            return answer;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} did not reach the expected state in {timeout:?}: {answer}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs `wasmhook <args>` to completion; returns (success, stdout, stderr).
pub fn run_cli(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(bin())
        .args(args)
        .output()
        .expect("run wasmhook");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Starts `wasmhook serve` expecting it to fail; returns its exit status and stderr.
pub fn serve_should_fail(config: &Path) -> (std::process::ExitStatus, String) {
    serve_should_fail_with(config, &[])
}

/// As [`serve_should_fail`], with environment variables (which may override
/// `WASMHOOK_LISTEN`). An engine that starts instead of failing is killed, and the test
/// fails, after the start timeout.
pub fn serve_should_fail_with(
    config: &Path,
    env: &[(&str, &str)],
) -> (std::process::ExitStatus, String) {
    let child = Command::new(bin())
        .args(["serve", "--config", config.to_str().expect("utf-8")])
        .env("WASMHOOK_LISTEN", "127.0.0.1:0")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run wasmhook");
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let Ok(out) = rx.recv_timeout(START_TIMEOUT) else {
        send_signal(pid, 9);
        panic!("serve was expected to fail, but it was still running after {START_TIMEOUT:?}");
    };
    let out = out.expect("wait for wasmhook");
    assert!(!out.status.success(), "serve was expected to fail");
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Sends `signal` to `pid` with the system `kill`, which keeps this crate free of `unsafe`.
fn send_signal(pid: u32, signal: i32) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{signal} {pid} failed");
}
