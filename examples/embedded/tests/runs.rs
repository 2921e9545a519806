//! Runs the embedded example as CI does: it must exit 0, having checked its own deliveries
//! and sockets.

#[test]
fn the_embedded_example_delivers_signed_events_without_listening() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_embedded"))
        .output()
        .expect("the example runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the example failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("the only listening socket is the receiver's"),
        "{stdout}"
    );
}
