//! The command line as operators script it, on the real binary against a real engine:
//! every `subscriptions` command with `--output json` parsed here, tables by default, a
//! closed pipe (`wasmhook … | head -1`), shell completions and the man page, and logs
//! without colours (or as JSON) when stderr is not a terminal.

use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use wasmhook_tests::engine::bin;
use wasmhook_tests::{Engine, Receiver, Workdir, base_config, run_cli, verify};

const WAIT: Duration = Duration::from_secs(30);

/// Runs `wasmhook <args> --server <engine> --output json` and parses what it printed.
fn json_cli(engine: &Engine, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["--server", &engine.base, "--output", "json"]);
    let (ok, stdout, stderr) = run_cli(&all);
    assert!(ok, "wasmhook {all:?} failed: {stderr}");
    serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("wasmhook {all:?} printed no JSON ({e}): {stdout}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn every_subscriptions_command_works_against_a_running_engine() {
    let receiver = Receiver::start().await;
    let work = Workdir::new();
    work.write_config(&base_config());
    let engine = work.start().await;
    let url = receiver.url("/cli");

    // create: flags become the API body; the secret is shown this once.
    let created = json_cli(
        &engine,
        &[
            "subscriptions",
            "create",
            "--id",
            "ops",
            "--url",
            &url,
            "--events",
            "host.*,cert.expiring",
            "--name",
            "Ops",
            "--set",
            "channel=#ops",
            "--header",
            "X-Team=core",
            "--rate-limit",
            "50",
        ],
    );
    assert_eq!(created["id"], "ops", "{created}");
    assert_eq!(
        created["events"],
        serde_json::json!(["host.*", "cert.expiring"])
    );
    assert_eq!(created["settings"]["channel"], "#ops");
    assert_eq!(created["headers"]["X-Team"], "core");
    assert_eq!(created["rate_limit"], 50);
    let secret = created["secret"].as_str().expect("secret shown at create");
    assert!(secret.starts_with("whsec_"), "{secret}");

    // list and get, as JSON and as the default table.
    let list = json_cli(&engine, &["subscriptions", "list"]);
    let ids: Vec<&str> = list["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter_map(|s| s["id"].as_str())
        .collect();
    assert_eq!(ids, ["ops"], "{list}");
    assert!(!list.to_string().contains(secret), "list shows the secret");
    let got = json_cli(&engine, &["subscriptions", "get", "ops"]);
    assert_eq!(got["name"], "Ops");
    assert!(got.get("secret").is_none(), "{got}");
    let (ok, table, stderr) = run_cli(&["subscriptions", "list", "--server", &engine.base]);
    assert!(ok, "{stderr}");
    let mut lines = table.lines();
    let header = lines.next().expect("header row");
    for column in ["ID", "ENABLED", "URL", "EVENTS"] {
        assert!(header.contains(column), "{table}");
    }
    let row = lines.next().expect("one row");
    assert!(
        row.contains("ops") && row.contains(&url) && row.contains("host.*,cert.expiring"),
        "{table}"
    );

    // update: disable, change the filter, clear the rate limit, enable again.
    let updated = json_cli(
        &engine,
        &[
            "subscriptions",
            "update",
            "ops",
            "--disable",
            "--filter",
            "data.level > 1",
            "--clear",
            "rate_limit",
        ],
    );
    assert_eq!(updated["enabled"], false, "{updated}");
    assert_eq!(updated["filter"], "data.level > 1");
    assert!(updated.get("rate_limit").is_none(), "{updated}");
    let updated = json_cli(&engine, &["subscriptions", "update", "ops", "--enable"]);
    assert_eq!(updated["enabled"], true, "{updated}");

    // test: a signed wasmhook.test reaches the receiver; the command exits 0.
    let tested = json_cli(&engine, &["subscriptions", "test", "ops"]);
    assert_eq!(tested["status"], "delivered", "{tested}");
    let got = receiver.wait_for("/cli", 1, WAIT).await;
    assert_eq!(got[0].json()["type"], "wasmhook.test");
    verify(secret, &got[0]).expect("signed with the secret shown at create");

    // rotate-secret: a new secret, shown once, with the old one's end.
    let rotated = json_cli(
        &engine,
        &["subscriptions", "rotate-secret", "ops", "--grace", "1h"],
    );
    let new_secret = rotated["secret"].as_str().expect("new secret");
    assert!(new_secret.starts_with("whsec_") && new_secret != secret);
    assert!(rotated["previous_expires_at"].is_string(), "{rotated}");

    // delete, then get fails with the engine's message and a non-zero exit.
    let deleted = json_cli(&engine, &["subscriptions", "delete", "ops"]);
    assert_eq!(deleted["deleted"], true, "{deleted}");
    let (ok, _, stderr) = run_cli(&["subscriptions", "get", "ops", "--server", &engine.base]);
    assert!(!ok);
    assert!(stderr.contains("HTTP 404"), "{stderr}");

    // create without --url names what is missing; a test of a failing receiver exits 1.
    let (ok, _, stderr) = run_cli(&[
        "subscriptions",
        "create",
        "--events",
        "a.b",
        "--server",
        &engine.base,
    ]);
    assert!(!ok);
    assert!(stderr.contains("needs --url"), "{stderr}");
    receiver.set_default("/down", wasmhook_tests::Reply::Status(503));
    json_cli(
        &engine,
        &[
            "subscriptions",
            "create",
            "--id",
            "down",
            "--url",
            &receiver.url("/down"),
            "--events",
            "*",
        ],
    );
    let (ok, stdout, stderr) =
        run_cli(&["subscriptions", "test", "down", "--server", &engine.base]);
    assert!(!ok, "a failed test attempt must fail the command: {stdout}");
    assert!(stderr.contains("not delivered"), "{stderr}");

    // The engine's log went to a pipe: no ANSI colour codes in it.
    assert!(!engine.log().contains('\u{1b}'), "{}", engine.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn engine_commands_print_json_on_request_and_health_answers() {
    let work = Workdir::new();
    work.write_config(&base_config());
    let engine = work.start().await;
    let sent = json_cli(&engine, &["send", "--type", "a.b", "--data", "{\"k\":1}"]);
    assert_eq!(sent["deliveries"], 0, "{sent}");
    assert!(sent["id"].as_str().is_some_and(|id| id.starts_with("evt_")));
    let health = json_cli(&engine, &["health"]);
    assert_eq!(health["status"], "ok", "{health}");
    let endpoints = json_cli(&engine, &["endpoints"]);
    assert!(endpoints["data"].is_array(), "{endpoints}");
    let deliveries = json_cli(&engine, &["deliveries", "list"]);
    assert!(deliveries["data"].is_array(), "{deliveries}");
    let dead = json_cli(&engine, &["dead-letters", "list"]);
    assert!(dead["data"].is_array(), "{dead}");
    // The same answers as tables: a field per row for one object.
    let (ok, table, stderr) = run_cli(&["health", "--server", &engine.base]);
    assert!(ok, "{stderr}");
    assert!(
        table
            .lines()
            .any(|l| l.trim().starts_with("status") && l.trim().ends_with("ok")),
        "{table}"
    );
    // Nothing listens here: health fails.
    let (ok, _, stderr) = run_cli(&["health", "--server", "http://127.0.0.1:9"]);
    assert!(!ok);
    assert!(stderr.contains("cannot reach the engine"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn json_logs_are_one_object_per_line() {
    let work = Workdir::new();
    work.write_config(&base_config());
    let config = work.path().join("wasmhook.toml");
    let engine = Engine::start(&config, &[("WASMHOOK_LOG_FORMAT", "json")]).await;
    let log = engine.log();
    let lines: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(
        lines.iter().any(|l| l["fields"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("listening on http://"))
            && l["level"] == "INFO"),
        "{log}"
    );
}

#[test]
fn a_closed_pipe_ends_the_command_quietly() {
    // `openapi` prints more than a pipe holds, so the write after `head` exits fails.
    let script = format!("set -o pipefail; '{}' openapi | head -1", bin().display());
    let out = Command::new("bash")
        .args(["-c", &script])
        .output()
        .expect("run bash");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {:?}: {stderr}", out.status);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1);
}

#[test]
fn completions_and_man_pages_come_from_the_cli_definitions() {
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef wasmhook"),
        ("fish", "complete -c wasmhook"),
    ] {
        let (ok, script, stderr) = run_cli(&["completions", shell]);
        assert!(ok, "{shell}: {stderr}");
        assert!(script.contains(marker), "{shell}: {script}");
        for command in ["subscriptions", "rotate-secret", "migrate-store", "output"] {
            assert!(script.contains(command), "{shell} completes no {command}");
        }
    }
    // bash accepts its script.
    let (_, script, _) = run_cli(&["completions", "bash"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("wasmhook.bash");
    std::fs::write(&file, script).expect("write");
    let status = Command::new("bash")
        .arg("-n")
        .arg(&file)
        .status()
        .expect("bash -n");
    assert!(status.success(), "bash rejects the completion script");

    let (ok, page, stderr) = run_cli(&["man"]);
    assert!(ok, "{stderr}");
    assert!(
        page.starts_with(".ie") || page.contains(".TH wasmhook"),
        "{page}"
    );
    assert!(page.contains("subscriptions"), "{page}");
    let (ok, _, stderr) = run_cli(&["man", "--dir", dir.path().to_str().expect("utf-8")]);
    assert!(ok, "{stderr}");
    for page in [
        "wasmhook.1",
        "wasmhook-serve.1",
        "wasmhook-subscriptions-create.1",
    ] {
        assert!(dir.path().join(page).is_file(), "{page} not written");
    }
}
