//! The console in a real browser: Debian's headless Chromium, driven by Playwright
//! (`tests/browser/console.mjs`), against the real engine and a loopback receiver. It
//! signs in, creates a subscription, publishes, watches the live tail and the deliveries,
//! replays a dead letter from the Dead letters page, rotates the secret and dry-runs the
//! Slack adapter; it fails on any console error. Screenshots go to
//! `target/ui-screenshots`. `scripts/setup` installs Chromium and playwright-core.

use std::path::Path;
use std::process::Command;

use wasmhook_tests::{Receiver, Reply, SLACK, Workdir, base_config};

const TOKEN: &str = "browser-admin-token";

#[tokio::test(flavor = "multi_thread")]
async fn an_operator_runs_the_console_in_chromium() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let browser_dir = root.join("tests/browser");
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists() && browser_dir.join("node_modules/playwright-core").exists(),
        "Chromium ({chromium}) or playwright-core (tests/browser/node_modules) is missing; run scripts/setup"
    );
    let receiver = Receiver::start().await;
    // The receiver fails the first message until it is a dead letter (two attempts with the
    // base config's one-step retry schedule); later requests succeed.
    receiver.script("/hook", [Reply::Status(500), Reply::Status(500)]);
    let work = Workdir::new();
    work.install_plugin("slack", SLACK);
    work.write_config(&format!(
        "[server]\napi_token = \"{TOKEN}\"\n\n{}",
        base_config()
    ));
    let engine = work.start().await;
    let shots = root.join("target/ui-screenshots");
    let base = engine.base.clone();
    let url = receiver.url("/hook");
    let output = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg("console.mjs")
            .current_dir(&browser_dir)
            .env("WASMHOOK_BASE", base)
            .env("WASMHOOK_TOKEN", TOKEN)
            .env("RECEIVER_URL", url)
            .env("SCREENSHOT_DIR", &shots)
            .env("CHROMIUM", chromium)
            .output()
            .expect("run node")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the browser test failed:\n{stdout}\n{stderr}\nengine log:\n{}",
        engine.log()
    );
    assert!(stdout.contains("console browser test passed"), "{stdout}");
    // What the receiver got: the first message twice (failed, retried, failed), the
    // accepted one, then the first again, replayed.
    let got: Vec<String> = receiver
        .requests_to("/hook")
        .iter()
        .map(|r| r.header("webhook-id").to_owned())
        .collect();
    assert_eq!(got.len(), 4, "{got:?}");
    assert_eq!(got[0], got[1], "the failed message was retried: {got:?}");
    assert_ne!(got[0], got[2], "{got:?}");
}
