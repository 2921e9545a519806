//! Standard Webhooks signing: `webhook-signature: v1,<base64 HMAC-SHA256("{id}.{ts}.{body}")>`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::secret::Secret;

/// The prefix of a Standard Webhooks secret.
pub const SECRET_PREFIX: &str = "whsec_";

/// A decoded signing key. `Debug` does not print the key.
#[derive(Clone)]
pub struct SigningKey(Vec<u8>);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(***)")
    }
}

/// Shortest plain (non-`whsec_`) secret accepted.
pub const PLAIN_SECRET_MIN: usize = 16;

/// Why a secret cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    /// A plain secret shorter than `PLAIN_SECRET_MIN`.
    #[error(
        "a signing secret is `whsec_` and base64 (generate one with `wasmhook secret`), or a plain \
         secret of at least {PLAIN_SECRET_MIN} characters for receivers with their own signature \
         scheme (generate one with `wasmhook secret --plain`); this one is neither"
    )]
    TooShortPlain,
    /// A plain secret with blanks at its ends or control characters, which a receiver's
    /// copy would likely lose.
    #[error("a plain signing secret cannot start or end with blanks, or hold control characters")]
    BadPlain,
    /// The rest is not base64.
    #[error("the part after `whsec_` is not valid base64")]
    NotBase64,
    /// The key is too short to be safe.
    #[error(
        "the decoded secret is {0} bytes; use at least 24 (generate one with `wasmhook secret`)"
    )]
    TooShort(usize),
}

impl SigningKey {
    /// The key of a secret: for `whsec_…`, the base64-decoded rest (Standard Webhooks); for
    /// a plain secret (receivers with their own scheme, like GitHub's), its UTF-8 bytes.
    pub fn from_secret(secret: &Secret) -> Result<Self, SecretError> {
        let text = secret.expose();
        let Some(encoded) = text.strip_prefix(SECRET_PREFIX) else {
            if text.chars().count() < PLAIN_SECRET_MIN {
                return Err(SecretError::TooShortPlain);
            }
            if text.trim() != text || text.chars().any(char::is_control) {
                return Err(SecretError::BadPlain);
            }
            return Ok(Self(text.as_bytes().to_vec()));
        };
        let key = STANDARD
            .decode(encoded)
            .map_err(|_| SecretError::NotBase64)?;
        if key.len() < 24 {
            return Err(SecretError::TooShort(key.len()));
        }
        Ok(Self(key))
    }

    /// HMAC-SHA256 of `message` under this key: what the adapters' host HMAC import hands
    /// a guest. Only the MAC leaves this module; the key's bytes never do.
    pub fn mac(&self, message: &[u8]) -> [u8; 32] {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC accepts any key length");
        mac.update(message);
        mac.finalize().into_bytes().into()
    }

    /// One `v1,<base64>` signature of `body` for message `msg_id` at `timestamp`.
    pub fn sign(&self, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC accepts any key length");
        mac.update(msg_id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }
}

/// The `webhook-signature` header value: one signature per key, separated by spaces (more
/// than one while a secret is being rotated).
pub fn signature_header(keys: &[SigningKey], msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    keys.iter()
        .map(|k| k.sign(msg_id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A fresh random `whsec_` secret with a 32-byte key.
pub fn generate_secret() -> Secret {
    let key: [u8; 32] = rand::random();
    Secret::new(format!("{SECRET_PREFIX}{}", STANDARD.encode(key)))
}

/// A fresh random plain secret: 32 random bytes as 64 hex digits, for receivers that sign
/// with their own scheme and take the secret as text.
pub fn generate_plain_secret() -> Secret {
    let key: [u8; 32] = rand::random();
    Secret::new(key.iter().map(|b| format!("{b:02x}")).collect::<String>())
}

/// Whether a secret is a plain one (not `whsec_`), so a rotation replaces it with another
/// plain one.
pub fn is_plain(secret: &str) -> bool {
    !secret.starts_with(SECRET_PREFIX)
}

/// Checks `signature_header` against `body` with `key`, as a receiver would. Used by
/// `wasmhook verify`; the engine itself only signs.
pub fn verify(
    key: &SigningKey,
    msg_id: &str,
    timestamp: i64,
    body: &[u8],
    signature_header: &str,
) -> bool {
    let expected = key.sign(msg_id, timestamp, body);
    signature_header.split(' ').any(|candidate| {
        subtle::ConstantTimeEq::ct_eq(candidate.as_bytes(), expected.as_bytes()).into()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example from the Standard Webhooks specification.
    #[test]
    fn matches_the_specification_example() {
        let key = SigningKey::from_secret(&Secret::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"))
            .unwrap();
        let sig = key.sign(
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn rotation_header_carries_one_signature_per_key() {
        let a = SigningKey::from_secret(&generate_secret()).unwrap();
        let b = SigningKey::from_secret(&generate_secret()).unwrap();
        let header = signature_header(&[a.clone(), b.clone()], "msg_1", 5, b"x");
        assert_eq!(header.split(' ').count(), 2);
        assert!(verify(&a, "msg_1", 5, b"x", &header));
        assert!(verify(&b, "msg_1", 5, b"x", &header));
        assert!(!verify(&a, "msg_1", 6, b"x", &header));
        assert!(!verify(&a, "msg_1", 5, b"y", &header));
    }

    #[test]
    fn bad_secrets_say_why() {
        let err = |s: &str| SigningKey::from_secret(&Secret::new(s)).unwrap_err();
        assert_eq!(err("abc"), SecretError::TooShortPlain);
        assert_eq!(err(" sixteen chars ok"), SecretError::BadPlain);
        assert_eq!(err("sixteen\tchars ok"), SecretError::BadPlain);
        assert_eq!(err("whsec_!!!"), SecretError::NotBase64);
        assert_eq!(err("whsec_AAAA"), SecretError::TooShort(3));
        assert!(generate_secret().expose().starts_with("whsec_"));
    }

    #[test]
    fn a_plain_secret_is_its_own_key() {
        let plain = generate_plain_secret();
        assert_eq!(plain.expose().len(), 64);
        assert!(is_plain(plain.expose()));
        let key = SigningKey::from_secret(&Secret::new("it's a secret to everybody")).unwrap();
        let mut plain_hmac = Hmac::<Sha256>::new_from_slice(b"it's a secret to everybody").unwrap();
        plain_hmac.update(b"body");
        assert_eq!(
            key.mac(b"body"),
            <[u8; 32]>::from(plain_hmac.finalize().into_bytes())
        );
        assert!(!is_plain(generate_secret().expose()));
    }
}
