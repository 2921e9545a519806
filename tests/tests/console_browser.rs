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
    // The first request is refused for good (a dead letter at once); later ones succeed.
    receiver.script("/hook", [Reply::Status(400)]);
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
    // What the receiver got: the refused request, the accepted one, the replay.
    assert_eq!(receiver.requests_to("/hook").len(), 3);
}
