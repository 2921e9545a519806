//! Signatures for receivers with their own scheme (GitHub's `X-Hub-Signature-256`, …),
//! computed by the engine with the subscription's signing secrets. The keys never enter the
//! adapter: it only ever sees the MACs.
//!
//! ```
//! use wasmhook_adapter::signing::{hex, hmac_sha256};
//! # wasmhook_adapter::testing::set_signing_secrets(&["a plain secret of some length"]);
//! let body = br#"{"action":"opened"}"#;
//! let header: Vec<String> = hmac_sha256(body).iter().map(|mac| format!("sha256={}", hex(mac))).collect();
//! assert_eq!(header.len(), 1); // two while a rotated-out secret is still in its grace period
//! ```

use base64::Engine as _;

/// HMAC-SHA256 of `message` under each active signing secret of the subscription, newest
/// first: one MAC normally, two while a rotation's grace period runs. The key is the
/// secret's bytes: the base64-decoded part of a `whsec_` secret, or a plain secret's text.
/// The engine allows 64 calls per attempt and 4 MiB per message.
pub fn hmac_sha256(message: &[u8]) -> Vec<Vec<u8>> {
    #[cfg(target_arch = "wasm32")]
    return crate::bindings::wasmhook::adapter::signing::hmac_sha256(message);
    #[cfg(not(target_arch = "wasm32"))]
    return crate::testing::hmac_sha256(message);
}

/// Lower-case hex, as GitHub-style signatures use.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Standard base64 with padding.
pub fn base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings() {
        assert_eq!(hex(&[0, 15, 255]), "000fff");
        assert_eq!(base64(b"hi"), "aGk=");
    }
}
