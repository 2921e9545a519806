//! Files in the plugins folder that are not adapters: junk dropped in while running is
//! rejected once (the engine's own reads of it must not reload it again and again), and
//! special files at start (a FIFO, a symlink to `/dev/zero`, an oversized file) neither
//! block startup nor get read without bound.

use std::time::Duration;

use wasmhook_tests::{VERSIONED, Workdir, base_config};

const WAIT: Duration = Duration::from_secs(60);

fn rejections_of(log: &str, name: &str) -> usize {
    log.lines()
        .filter(|l| l.contains("rejected plugin file") && l.contains(&format!("/{name}.wasm")))
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_junk_plugin_is_rejected_once_and_real_changes_still_reload() {
    let work = Workdir::new();
    work.write_config(&format!(
        "{}\n[plugins]\nreload_debounce = \"50ms\"\n",
        base_config()
    ));
    let engine = work.start().await;

    // 16 MiB of junk: every needless reload would read all of it again.
    let junk_size = 16 << 20;
    let junk: Vec<u8> = (0..junk_size).map(|i| (i * 7 % 251) as u8).collect();
    // Written aside and renamed in, so that its own arrival is one file event.
    let aside = work.plugins().join(".junk.wasm.partial");
    std::fs::write(&aside, &junk).expect("write junk");
    std::fs::rename(&aside, work.plugins().join("junk.wasm")).expect("rename junk");
    let info = engine
        .wait_plugin("junk", WAIT, |p| !p["last_error"].is_null())
        .await;
    assert!(
        info["last_error"]
            .as_str()
            .expect("error")
            .contains("not a WebAssembly component"),
        "{info}"
    );
    // Real changes, one after another, each waited for: each is a real reload, and together
    // they span many debounce periods in which the junk file must stay quiet. The reads are
    // counted from the first change on: the rename that brought the junk in can reach the
    // watcher as two events a debounce tick apart (seen once under a loaded CI), and the
    // second one reads the file again to find its bytes unchanged. That is one read, not
    // the reload loop this test is about; by the first change it is over, since the
    // watcher handles events in order.
    let changes = [1, 2, 0, 1, 2, 0];
    let mut read_after_rejection = 0;
    for (n, version) in changes.iter().enumerate() {
        std::fs::write(
            work.plugins().join("shaper.wasm"),
            std::fs::read(VERSIONED[*version]).expect("read guest"),
        )
        .expect("write shaper");
        engine
            .wait_plugin("shaper", WAIT, |p| p["version"] == n as u64 + 1)
            .await;
        if n == 0 {
            read_after_rejection = engine.bytes_read();
        }
    }

    let log = engine.log();
    assert_eq!(rejections_of(&log, "junk"), 1, "{log}");
    let loads = log
        .lines()
        .filter(|l| l.contains("loaded plugin") && l.contains("shaper"))
        .count();
    assert_eq!(loads, changes.len(), "{log}");
    let read_since = engine.bytes_read() - read_after_rejection;
    assert!(
        read_since < junk_size as u64,
        "the engine read {read_since} bytes while only {} small plugin versions changed: \
         it is reading the {junk_size}-byte junk file again",
        changes.len() - 1
    );

    // The same junk bytes written again are still the same rejected bytes: no new error.
    std::fs::write(work.plugins().join("junk.wasm"), &junk).expect("rewrite junk");
    std::fs::write(
        work.plugins().join("shaper.wasm"),
        std::fs::read(VERSIONED[1]).expect("read guest"),
    )
    .expect("write shaper");
    engine
        .wait_plugin("shaper", WAIT, |p| p["version"] == changes.len() as u64 + 1)
        .await;
    assert_eq!(rejections_of(&engine.log(), "junk"), 1, "{}", engine.log());

    // Different junk is a real change: rejected (and logged) once more.
    std::fs::write(work.plugins().join("junk.wasm"), b"still not wasm").expect("write");
    engine
        .wait_log(WAIT, "the second rejection", |log| {
            rejections_of(log, "junk") == 2
        })
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn special_files_in_the_plugins_folder_neither_block_nor_flood_startup() {
    let work = Workdir::new();
    work.write_config(&format!(
        "{}\n[plugins]\nmax_plugin_bytes = 1048576\n",
        base_config()
    ));
    let plugins = work.plugins();
    // A FIFO with no writer: a blocking open would wait forever.
    let made = std::process::Command::new("mkfifo")
        .arg(plugins.join("x.wasm"))
        .status()
        .expect("run mkfifo");
    assert!(made.success());
    // A symlink to an endless device.
    std::os::unix::fs::symlink("/dev/zero", plugins.join("zero.wasm")).expect("symlink");
    // A regular file one byte over the limit.
    std::fs::write(plugins.join("big.wasm"), vec![0u8; (1 << 20) + 1]).expect("write big");
    // A symlink to a real adapter is fine.
    let real = work.path().join("shaper-v1.wasm");
    std::fs::copy(VERSIONED[0], &real).expect("copy");
    std::os::unix::fs::symlink(&real, plugins.join("shaper.wasm")).expect("symlink");

    let engine = work.start().await;
    let read_at_start = engine.bytes_read();

    assert_eq!(engine.plugin_info("shaper").await["version"], 1);
    for (name, want) in [
        ("x", "is a FIFO, not a regular file"),
        ("zero", "is a character device, not a regular file"),
        ("big", "is 1048577 bytes, over the 1048576-byte limit"),
    ] {
        let info = engine.plugin_info(name).await;
        let error = info["last_error"].as_str().unwrap_or_default();
        assert!(error.contains(want), "{name}: {info}");
        assert!(info["version"].is_null(), "{name}: {info}");
    }
    assert!(
        read_at_start < 64 << 20,
        "the engine read {read_at_start} bytes while starting: it read a special file"
    );
    let log = engine.log();
    for name in ["x", "zero", "big"] {
        assert_eq!(rejections_of(&log, name), 1, "{log}");
    }
}

#[test]
fn plugin_check_refuses_a_fifo_instead_of_waiting_for_a_writer() {
    let work = Workdir::new();
    let fifo = work.path().join("x.wasm");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("run mkfifo");
    assert!(made.success());
    let mut child = std::process::Command::new(wasmhook_tests::engine::bin())
        .args(["plugin", "check"])
        .arg(&fifo)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run wasmhook plugin check");
    // A blocking open never returns: fail the test instead of hanging it.
    let (tx, rx) = std::sync::mpsc::channel();
    let pid = child.id();
    let mut stderr = child.stderr.take().expect("stderr");
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
        let _ = tx.send((child.wait(), text));
    });
    let Ok((status, stderr)) = rx.recv_timeout(WAIT) else {
        let _ = std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status();
        panic!("`wasmhook plugin check` on a FIFO did not finish: it is waiting for a writer");
    };
    assert!(!status.expect("wait").success(), "{stderr}");
    assert!(stderr.contains("is a FIFO, not a regular file"), "{stderr}");
}
