//! Helpers for the end-to-end tests: the built components, a real receiver, the real
//! engine binary, and an independent signature check.
//!
//! - `receiver`: an HTTP receiver on loopback with scripted replies.
//! - `engine`: starts `wasmhook serve` in a temporary folder.
//! - `postgres`: the test PostgreSQL server and a fresh database on it.
//! - `raw`: raw HTTP/1.1 over TCP, for requests a client library will not send.
//! - `openapi`: checks a delivered request against the document's `webhooks` schemas.

pub mod engine;
pub mod openapi;
pub mod postgres;
pub mod raw;
pub mod receiver;

pub use engine::{Engine, Workdir, run_cli, serve_should_fail, serve_should_fail_with};
pub use receiver::{Received, Receiver, Reply};

/// Asserts an API answer is a 400 with error `code` whose message contains `says`.
pub fn assert_refused(status: u16, body: &serde_json::Value, code: &str, says: &str) {
    assert_eq!((status, body["code"].as_str()), (400, Some(code)), "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| m.contains(says)),
        "{body}"
    );
}

/// The bundled Slack adapter, built by build.rs.
pub const SLACK: &str = env!("WASMHOOK_PLUGIN_SLACK");
/// The bundled PagerDuty adapter.
pub const PAGERDUTY: &str = env!("WASMHOOK_PLUGIN_PAGERDUTY");
/// The settings-steered test adapter.
pub const PROBE: &str = env!("WASMHOOK_GUEST_PROBE");
/// The bundled GitHub-style signature adapter (WIT 0.2.0, host HMAC).
pub const GITHUB_SIGNATURE: &str = env!("WASMHOOK_PLUGIN_GITHUB_SIGNATURE");
/// The Slack adapter as it shipped for WIT 0.1.0, built from its old source.
pub const SLACK_V0_1_0: &str = env!("WASMHOOK_GUEST_SLACK_V0_1_0");
/// The adapter that misbehaves on purpose (`mode` setting).
pub const HOSTILE: &str = env!("WASMHOOK_GUEST_HOSTILE");

/// Lower-case hex of HMAC-SHA256(`key`, `message`), computed here with the `hmac` crate,
/// independently of the engine, as a GitHub-style receiver computes it.
pub fn hmac_sha256_hex(key: &[u8], message: &[u8]) -> String {
    use hmac::Mac as _;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).expect("any key length");
    mac.update(message);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Versions 1, 2 and 3 of an adapter whose body names its version.
pub const VERSIONED: [&str; 3] = [
    env!("WASMHOOK_GUEST_VERSIONED_1"),
    env!("WASMHOOK_GUEST_VERSIONED_2"),
    env!("WASMHOOK_GUEST_VERSIONED_3"),
];

/// A fixed signing secret for tests.
pub const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
/// Another one, for rotation and mismatch tests.
pub const OTHER_SECRET: &str = "whsec_dGhpcyBpcyBhbm90aGVyIHNlY3JldCBrZXkh";

/// Checks a delivered request's signature with the `standardwebhooks` crate, an
/// implementation independent of the engine's own signing code.
pub fn verify(secret: &str, request: &Received) -> Result<(), String> {
    let webhook =
        standardwebhooks::Webhook::new(secret).map_err(|e| format!("bad secret: {e:?}"))?;
    webhook
        .verify(&request.body, &request.headers)
        .map_err(|e| format!("{e:?}"))
}

/// A fixed storage key for tests (32 bytes, base64), for stores shared by several nodes.
pub const STORAGE_KEY: &str = "d2FzbWhvb2sgdGVzdCBzdG9yYWdlIGtleSwgMzIgYiE=";

/// A config preamble: private networks allowed (the receiver is on loopback), quick retries.
pub fn base_config() -> String {
    "[delivery]\nallow_private_networks = true\nretry_schedule = [\"10ms\"]\n".to_owned()
}

/// The Microsoft Teams example adapter in JavaScript, built by
/// `scripts/build-example-adapters`.
pub const TEAMS_JS: &str = env!("WASMHOOK_EXAMPLE_TEAMS");
/// The Discord example adapter in Python, built by `scripts/build-example-adapters`.
pub const DISCORD_PY: &str = env!("WASMHOOK_EXAMPLE_DISCORD");

/// The path of an example adapter built outside cargo; panics with the command that builds
/// it when it is missing, so a test never passes by skipping it.
pub fn example_adapter(path: &str) -> &str {
    assert!(
        std::path::Path::new(path).is_file(),
        "{path} is missing: run scripts/build-example-adapters (scripts/test runs it for you)"
    );
    path
}
