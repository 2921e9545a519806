//! What an adapter author does, with the real CLI: `plugin new` in Rust, JavaScript and
//! Python, the scaffold's own build and unit tests, `plugin check`, and a delivery through a
//! running engine verified with an independent library; a dry run that is byte for byte the
//! engine, with its request checks, logs and warnings; `plugin watch`; `wasmhook wit`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{Value, json};
use wasmhook_tests::engine::bin;
use wasmhook_tests::{
    Engine, GITHUB_SIGNATURE, PROBE, Receiver, SECRET, SLACK, SLACK_V0_1_0, VERSIONED, Workdir,
    base_config, verify,
};

/// Building and compiling JavaScript and Python components takes minutes on a loaded
/// 2-core machine in a debug build.
const WAIT: Duration = Duration::from_secs(600);

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the workspace")
        .to_path_buf()
}

/// Runs `program args` in `dir` with `env`; panics with its output when it fails.
fn run_ok(dir: &Path, program: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let output = command(dir, program, args, env).output().expect("run");
    assert!(
        output.status.success(),
        "`{} {}` failed in {}:\n{}\n{}",
        program.display(),
        args.join(" "),
        dir.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn command(dir: &Path, program: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(program);
    cmd.args(args).current_dir(dir).env_remove("RUST_LOG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// `wasmhook args` in `dir`, with a compile cache of the test's own.
fn wasmhook(dir: &Path, cache: &Path, args: &[&str]) -> Output {
    let cache = cache.to_str().expect("utf-8");
    command(dir, &bin(), args, &[("WASMHOOK_CACHE_DIR", cache)])
        .output()
        .expect("run wasmhook")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `plugin new` in each language, the scaffold's own unit tests and build command, `plugin
/// check`, then the scaffold's own config snippet in a real engine delivering to a
/// receiver that checks the signature with the `standardwebhooks` crate.
#[tokio::test(flavor = "multi_thread")]
async fn plugin_new_builds_checks_and_delivers_in_rust_javascript_and_python() {
    let root = workspace_root();
    let scratch = tempfile::tempdir().expect("tempdir");
    // The language toolchains the suite already installed (scripts/build-example-adapters):
    // a second project on a machine reuses them rather than downloading them again.
    let js_modules = root.join("examples/adapters/js/node_modules");
    let python_venv = root.join("examples/adapters/python/.venv");
    for needed in [&js_modules, &python_venv] {
        assert!(
            needed.exists(),
            "{} is missing: run scripts/build-example-adapters (scripts/test does)",
            needed.display()
        );
    }
    // Rust builds share one target folder across runs (cargo's CARGO_TARGET_DIR).
    let rust_target = root.join("target/scaffolded-adapters");
    let rust_target = rust_target.to_str().expect("utf-8");

    let started = std::time::Instant::now();
    let step = |lang: &str, what: &str| {
        eprintln!("{lang}: {what} at {:.1} s", started.elapsed().as_secs_f64());
    };
    for lang in ["rust", "js", "python"] {
        let name = format!("chat-{lang}");
        let dir = scratch.path().join(&name);
        // Each engine gets a store of its own (the sample event's id is fixed), whose
        // compile cache is the author's.
        let store = scratch.path().join(format!("store-{lang}"));
        let cache = store.join("plugin-cache");
        let out = wasmhook(
            scratch.path(),
            &cache,
            &["plugin", "new", &name, "--lang", lang],
        );
        assert!(out.status.success(), "plugin new: {}", text(&out.stderr));
        for file in ["README.md", "sample-event.json", "wasmhook.toml"] {
            assert!(dir.join(file).is_file(), "{lang}: {file}");
        }
        step(lang, "scaffolded");
        let shell = Path::new("sh");
        match lang {
            "rust" => {
                assert!(
                    dir.join("vendor/wasmhook-adapter/wit/v0.2.0/adapter.wit")
                        .is_file()
                );
                run_ok(
                    &dir,
                    Path::new("cargo"),
                    &["test", "--quiet"],
                    &[("CARGO_TARGET_DIR", rust_target)],
                );
            }
            "js" => {
                assert!(
                    dir.join("wit/adapter.wit").is_file() && dir.join("wasmhook.d.ts").is_file()
                );
                std::os::unix::fs::symlink(&js_modules, dir.join("node_modules")).expect("link");
                run_ok(&dir, shell, &["-c", "npm test --silent"], &[]);
            }
            _ => {
                assert!(dir.join("wit/adapter.wit").is_file());
                std::os::unix::fs::symlink(&python_venv, dir.join(".venv")).expect("link");
                run_ok(&dir, Path::new("python3"), &["-m", "unittest", "-q"], &[]);
            }
        }

        step(lang, "unit tests passed");
        // The scaffold's one build command.
        let out = command(
            &dir,
            &bin(),
            &["plugin", "build"],
            &[
                ("WASMHOOK_CACHE_DIR", cache.to_str().expect("utf-8")),
                ("CARGO_TARGET_DIR", rust_target),
            ],
        )
        .output()
        .expect("plugin build");
        assert!(
            out.status.success(),
            "{lang}: plugin build:\n{}\n{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        step(lang, "built");
        let wasm = dir.join(format!("{name}.wasm"));
        assert!(wasm.is_file(), "{lang}: {}", wasm.display());
        let out = wasmhook(
            &dir,
            &cache,
            &["plugin", "check", wasm.to_str().expect("utf-8")],
        );
        let stdout = text(&out.stdout);
        assert!(out.status.success(), "{lang}: {}", text(&out.stderr));
        assert!(
            stdout.contains("implements: wasmhook:adapter/adapter@0.2.0")
                && stdout.contains(&format!("manifest: {name}"))
                && stdout.contains("  channel (string, required): The channel to post to"),
            "{lang}: {stdout}"
        );

        // The scaffold's config snippet, pointed at a real receiver. Its store goes where
        // the engine's compile cache is the one `plugin build` filled, so the engine loads
        // the component without compiling it again (the language_adapters test covers
        // the engine's own compile of JavaScript and Python components).
        let receiver = Receiver::start().await;
        let snippet = std::fs::read_to_string(dir.join("wasmhook.toml")).expect("snippet");
        let config = snippet
            .replace("http://127.0.0.1:9000/hook", &receiver.url("/hook"))
            .replace(
                "path = \".wasmhook-data\"",
                &format!("path = \"{}\"", store.display()),
            );
        assert_ne!(
            config, snippet,
            "the snippet names a receiver URL and a store"
        );
        assert!(config.contains(&store.display().to_string()), "{config}");
        std::fs::write(dir.join("wasmhook.toml"), config).expect("write");
        let engine = Engine::start(&dir.join("wasmhook.toml"), &[("WEBHOOK_SECRET", SECRET)]).await;
        let sample: Value = serde_json::from_slice(
            &std::fs::read(dir.join("sample-event.json")).expect("sample event"),
        )
        .expect("json");
        engine.publish(sample).await;
        let got = receiver.wait_for("/hook", 1, WAIT).await.remove(0);
        step(lang, "delivered");
        verify(SECRET, &got).unwrap_or_else(|e| panic!("{lang}: bad signature: {e}"));
        assert_eq!(got.header("content-type"), "application/json", "{lang}");
        assert_eq!(
            got.json(),
            json!({"channel": "#ops", "text": "host.down: web-1 stopped answering",
                   "fields": {"host": "web-1", "severity": "critical", "region": "eu-west"}}),
            "{lang}"
        );
        drop(engine);
    }
}

/// What `plugin run --raw` prints is byte for byte what the engine delivers, for a 0.2.0
/// adapter and for a 0.1.0 one, given the delivered envelope (with its `timestamp`).
#[tokio::test(flavor = "multi_thread")]
async fn a_dry_run_prints_the_bytes_the_engine_sends() {
    let receiver = Receiver::start().await;
    let work = Workdir::new();
    work.install_plugin("envelope", GITHUB_SIGNATURE);
    work.install_plugin("slack", SLACK);
    work.install_plugin("slack-old", SLACK_V0_1_0);
    let sub = |id: &str, plugin: &str, settings: &str| {
        format!(
            "[[subscriptions]]\nid = \"{id}\"\nurl = \"{}\"\nevents = [\"*\"]\nsecret = \"{SECRET}\"\nplugin = \"{plugin}\"\nsettings = {{ {settings} }}\n",
            receiver.url(&format!("/{id}"))
        )
    };
    let slack_settings = "channel = \"#ops\", fields = \"host, zone\"";
    work.write_config(&format!(
        "{}\n{}{}{}",
        base_config(),
        sub("envelope", "envelope", ""),
        sub("slack", "slack", slack_settings),
        sub("slack-old", "slack-old", slack_settings),
    ));
    let engine = work.start().await;
    engine
        .publish(json!({"id": "evt_raw", "type": "host.down",
            "data": {"summary": "web-1 <down> & out", "host": "web-1", "zone": 3.50, "n": [1]}}))
        .await;
    let envelope = receiver.wait_for("/envelope", 1, WAIT).await.remove(0);
    let event_file = work.path().join("delivered.json");
    std::fs::write(&event_file, &envelope.body).expect("write");
    let cache = work.path().join("cache");

    for (id, plugin) in [("slack", SLACK), ("slack-old", SLACK_V0_1_0)] {
        let delivered = receiver
            .wait_for(&format!("/{id}"), 1, WAIT)
            .await
            .remove(0);
        let out = wasmhook(
            work.path(),
            &cache,
            &[
                "plugin",
                "run",
                plugin,
                "--raw",
                "--event",
                event_file.to_str().expect("utf-8"),
                "--set",
                "channel=#ops",
                "--set",
                "fields=host, zone",
            ],
        );
        assert!(out.status.success(), "{id}: {}", text(&out.stderr));
        assert_eq!(
            text(&out.stdout),
            text(&delivered.body),
            "{id}: the dry run's bytes are the delivered bytes"
        );
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains("POST https://receiver.example/webhook")
                && stderr.contains("content-type: application/json")
                && stderr.contains("webhook-signature: v1,"),
            "{id}: the request line and headers go to stderr: {stderr}"
        );
    }
    drop(engine);

    // The signature shown is the engine's: with the subscription's secret given, it
    // verifies over the raw bytes.
    let raw = wasmhook(
        work.path(),
        &cache,
        &[
            "plugin",
            "run",
            SLACK,
            "--raw",
            "--event",
            event_file.to_str().expect("utf-8"),
            "--set",
            "channel=#ops",
            "--secret",
            SECRET,
        ],
    );
    assert!(raw.status.success(), "{}", text(&raw.stderr));
    let mut signed = http::HeaderMap::new();
    for line in text(&raw.stderr).lines() {
        if let Some((k, v)) = line.split_once(": ")
            && k.starts_with("webhook-")
        {
            signed.insert(
                http::HeaderName::try_from(k).expect("name"),
                v.parse().expect("value"),
            );
        }
    }
    standardwebhooks::Webhook::new(SECRET)
        .expect("secret")
        .verify(&raw.stdout, &signed)
        .expect("the dry run's signature verifies");
}

/// A dry run refuses what the engine refuses, shows the adapter's logs without RUST_LOG,
/// warns when content-type and body disagree, and compiles through its cache.
#[test]
fn a_dry_run_applies_the_engines_checks_and_shows_logs() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let dir = scratch.path();
    let cache = dir.join("cache");
    let event = dir.join("event.json");
    std::fs::write(
        &event,
        br#"{"type": "host.down", "data": {"host": "web-1"}}"#,
    )
    .expect("write");
    let event = event.to_str().expect("utf-8");
    let run = |extra: &[&str]| {
        let mut args = vec!["plugin", "run", PROBE, "--event", event];
        args.extend_from_slice(extra);
        let out = wasmhook(dir, &cache, &args);
        (out.status.success(), text(&out.stdout), text(&out.stderr))
    };

    let (ok, stdout, stderr) = run(&["--set", "log=hello from a dry run", "--set", "label=x"]);
    assert!(ok, "{stderr}");
    assert!(
        stderr.contains("hello from a dry run"),
        "adapter logs show: {stderr}"
    );
    let echoed: Value = serde_json::from_str(&stdout).expect("json");
    assert_eq!(
        echoed["body"]["context"]["settings"],
        json!([["label", "x"], ["log", "hello from a dry run"]])
    );
    assert_eq!(
        echoed["body"]["context"]["message_id"],
        echoed["headers"]["webhook-id"]
    );

    let refused = [
        (
            vec!["--url", "http://127.0.0.1:9/hook"],
            "the engine would refuse to connect: `http://127.0.0.1:9/hook` goes to 127.0.0.1",
        ),
        (
            vec!["--set", "url=ftp://elsewhere/"],
            "the engine would not send this request",
        ),
        (
            vec![
                "--set",
                "header_name=webhook-id",
                "--set",
                "header_value=forged",
            ],
            "header `webhook-id` is set by the engine",
        ),
        (
            vec!["--set", "mode=echoo"],
            "setting `mode`: `echoo` is not one of `echo`, `skip`, `error` (did you mean `echo`?)",
        ),
        (vec!["--set", "lable=x"], "did you mean `label`?"),
        (
            vec!["--set", "mode=error", "--set", "message=nope"],
            "returned an error: nope",
        ),
    ];
    for (extra, expected) in refused {
        let (ok, _, stderr) = run(&extra);
        assert!(!ok, "{extra:?} must fail");
        assert!(stderr.contains(expected), "{extra:?}: {stderr}");
    }

    let (ok, _, stderr) = run(&[
        "--set",
        "header_name=content-type",
        "--set",
        "header_value=text/plain",
    ]);
    assert!(ok, "{stderr}");
    assert!(
        stderr.contains("warning: the body is JSON but content-type is `text/plain`"),
        "{stderr}"
    );

    // The compile cache: the second look at a component loads native code instead of
    // compiling it.
    let check = || text(&wasmhook(dir, &cache, &["plugin", "check", SLACK]).stdout);
    let first = check();
    assert!(!first.contains("from the compile cache"), "{first}");
    let second = check();
    assert!(second.contains("(from the compile cache)"), "{second}");
}

#[test]
fn wasmhook_wit_prints_the_published_wit() {
    let root = workspace_root();
    let dir = tempfile::tempdir().expect("tempdir");
    for (args, file) in [
        (vec!["wit"], "wit/v0.2.0/adapter.wit"),
        (vec!["wit", "--version", "0.1.0"], "wit/v0.1.0/adapter.wit"),
    ] {
        let out = wasmhook(dir.path(), dir.path(), &args);
        assert!(out.status.success());
        let published = std::fs::read_to_string(root.join(file)).expect("wit");
        assert_eq!(text(&out.stdout), published, "{args:?}");
    }
    let out = wasmhook(dir.path(), dir.path(), &["wit", "--out", "wit"]);
    assert!(out.status.success());
    assert!(dir.path().join("wit/v0.2.0/adapter.wit").is_file());
    let out = wasmhook(dir.path(), dir.path(), &["wit", "--version", "7.0.0"]);
    assert!(text(&out.stderr).contains("this engine has 0.1.0, 0.2.0"));
}

/// `plugin watch` reruns when the adapter file is replaced, as a build replaces it.
#[test]
fn plugin_watch_reruns_on_every_change() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let dir = scratch.path();
    let wasm = dir.join("shaper.wasm");
    std::fs::copy(VERSIONED[0], &wasm).expect("copy");
    let event = dir.join("event.json");
    std::fs::write(&event, br#"{"type": "a.b"}"#).expect("write");
    let mut child = command(
        dir,
        &bin(),
        &["plugin", "watch", "shaper.wasm", "--event", "event.json"],
        &[(
            "WASMHOOK_CACHE_DIR",
            dir.join("cache").to_str().expect("utf-8"),
        )],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("spawn");
    let (tx, rx) = mpsc::channel::<String>();
    for stream in [
        Box::new(child.stdout.take().expect("stdout")) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().expect("stderr")),
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
    }
    // Waits until every needle has been seen, in any order: stdout and stderr come through
    // two threads, so "watching" (stderr) may arrive before the JSON (stdout) printed
    // ahead of it.
    let wait_for_all = |needles: &[&str]| {
        let mut missing: Vec<&str> = needles.to_vec();
        let mut seen = Vec::new();
        while !missing.is_empty() {
            match rx.recv_timeout(WAIT) {
                Ok(line) => {
                    missing.retain(|needle| !line.contains(needle));
                    seen.push(line);
                }
                Err(_) => panic!("{missing:?} never came; output:\n{}", seen.join("\n")),
            }
        }
    };
    let wait_for = |needle: &str| wait_for_all(&[needle]);
    wait_for_all(&["\"version\": 1", "watching"]);
    for (i, source) in VERSIONED.iter().enumerate().skip(1) {
        let tmp = dir.join(".shaper.wasm.partial");
        std::fs::copy(source, &tmp).expect("copy");
        std::fs::rename(&tmp, &wasm).expect("rename");
        wait_for(&format!("\"version\": {}", i + 1));
    }
    let _ = child.kill();
    let _ = child.wait();
}
