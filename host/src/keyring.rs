//! `Keyring`: the keys that encrypt secrets at rest, and the sealed text they produce.
//!
//! Any module that must keep a secret on disk or in a database seals it here:
//! `keys.seal(context, plaintext)` gives a printable string, `keys.open(context, sealed)`
//! gives the bytes back. The store seals every subscription spec (signing secrets, secret
//! settings and headers, URL credentials all live there) with the subscription id as
//! context.
//!
//! - **Cipher.** XChaCha20-Poly1305 (RustCrypto `chacha20poly1305`): an AEAD, so a changed
//!   byte is detected, and its 24-byte nonces can be drawn at random for every value with
//!   no counter to keep and no realistic chance of reuse, across any number of nodes.
//! - **Sealed text.** `whsealed:v1:<key id>:<base64url(nonce ‖ ciphertext ‖ tag)>`. The
//!   version lets the format change later; the key id says which key to open it with, so
//!   several keys can be configured at once (rotation).
//! - **Context.** The caller's context string is the associated data: a value sealed for
//!   one row cannot be copied into another and still open.
//! - **Keys.** 32 random bytes, written in base64. The first key of the ring seals; every
//!   key opens. A key's id is derived from the key (the first 8 hex digits of a SHA-256 of
//!   it), so ids cannot disagree between nodes and need no configuration.

use std::fmt;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use sha2::{Digest, Sha256};

use crate::config::{Backend, StorageConfig};

/// Bytes in a key.
pub const KEY_LEN: usize = 32;
/// Bytes in a nonce.
const NONCE_LEN: usize = 24;
/// The start of every sealed value of this format version.
const PREFIX: &str = "whsealed:v1:";

/// Why keys could not be loaded or a value could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyringError {
    /// A configured key is not 32 bytes of base64.
    #[error(
        "{source_name} is not a storage key: a key is 32 random bytes in base64 (make one with `openssl rand -base64 32`)"
    )]
    BadKey {
        /// Where the key came from (a file or variable name).
        source_name: String,
    },
    /// No key at all.
    #[error("no storage key is configured")]
    Empty,
    /// The value was sealed with a key the ring does not hold.
    #[error(
        "it was encrypted with key {key_id}, which is not configured (keys configured: {configured}); \
         add the key it was written with to [storage] encryption_key_files or WASMHOOK_ENCRYPTION_KEYS"
    )]
    UnknownKey {
        /// The id in the sealed value.
        key_id: String,
        /// The ids the ring holds.
        configured: String,
    },
    /// The key id matched but the value does not open: it was altered, or copied from
    /// another row.
    #[error(
        "it does not decrypt with key {key_id}: the stored value was altered or belongs to another record"
    )]
    Tampered {
        /// The key tried.
        key_id: String,
    },
    /// Not sealed text at all.
    #[error("it is not a sealed value (expected `whsealed:v1:<key id>:<data>`)")]
    Malformed,
}

/// One key, with its id.
#[derive(Clone)]
struct Key {
    id: String,
    cipher: XChaCha20Poly1305,
}

/// The configured keys; the first seals, all open. `Debug` shows only the key ids.
#[derive(Clone)]
pub struct Keyring {
    keys: Vec<Key>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("key_ids", &self.ids())
            .finish()
    }
}

/// The id of a key: 8 hex digits of a SHA-256 over a fixed label and the key. It tells
/// keys apart and reveals nothing usable about the key.
fn key_id(key: &[u8; KEY_LEN]) -> String {
    let digest = Sha256::new()
        .chain_update(b"wasmhook storage key id\0")
        .chain_update(key)
        .finalize();
    digest[..4].iter().map(|b| format!("{b:02x}")).collect()
}

/// Decodes a key written in base64 (padded or not, surrounding whitespace ignored).
pub fn parse_key(text: &str, source_name: &str) -> Result<[u8; KEY_LEN], KeyringError> {
    let text = text.trim();
    STANDARD
        .decode(text)
        .or_else(|_| STANDARD_NO_PAD.decode(text))
        .ok()
        .and_then(|bytes| <[u8; KEY_LEN]>::try_from(bytes).ok())
        .ok_or_else(|| KeyringError::BadKey {
            source_name: source_name.to_owned(),
        })
}

/// A new random key, in base64, as a key file holds it.
pub fn generate_key() -> String {
    STANDARD.encode(rand::random::<[u8; KEY_LEN]>())
}

impl Keyring {
    /// A ring of `keys`; the first seals. The same key given twice counts once.
    pub fn new(keys: impl IntoIterator<Item = [u8; KEY_LEN]>) -> Result<Self, KeyringError> {
        let mut ring: Vec<Key> = Vec::new();
        for key in keys {
            let id = key_id(&key);
            if ring.iter().all(|k| k.id != id) {
                ring.push(Key {
                    id,
                    cipher: XChaCha20Poly1305::new(&key.into()),
                });
            }
        }
        if ring.is_empty() {
            return Err(KeyringError::Empty);
        }
        Ok(Self { keys: ring })
    }

    /// The id of the key that seals.
    pub fn primary_id(&self) -> &str {
        &self.keys[0].id
    }

    /// Every key id, sealing key first.
    pub fn ids(&self) -> Vec<&str> {
        self.keys.iter().map(|k| k.id.as_str()).collect()
    }

    /// Seals `plaintext` for `context` with the first key.
    pub fn seal(&self, context: &str, plaintext: &[u8]) -> String {
        let key = &self.keys[0];
        let nonce = rand::random::<[u8; NONCE_LEN]>();
        let ciphertext = key
            .cipher
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: plaintext,
                    aad: context.as_bytes(),
                },
            )
            .expect("XChaCha20-Poly1305 encrypts any message that fits in memory");
        let mut data = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        data.extend_from_slice(&nonce);
        data.extend_from_slice(&ciphertext);
        format!("{PREFIX}{}:{}", key.id, URL_SAFE_NO_PAD.encode(data))
    }

    /// Opens a value `seal` made for the same `context`, with whichever key sealed it.
    pub fn open(&self, context: &str, sealed: &str) -> Result<Vec<u8>, KeyringError> {
        let (key_id, data) = split(sealed)?;
        let key =
            self.keys
                .iter()
                .find(|k| k.id == key_id)
                .ok_or_else(|| KeyringError::UnknownKey {
                    key_id: key_id.to_owned(),
                    configured: self.ids().join(", "),
                })?;
        let data = URL_SAFE_NO_PAD
            .decode(data)
            .map_err(|_| KeyringError::Malformed)?;
        if data.len() < NONCE_LEN {
            return Err(KeyringError::Malformed);
        }
        let (nonce, ciphertext) = data.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| KeyringError::Malformed)?;
        key.cipher
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: ciphertext,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| KeyringError::Tampered {
                key_id: key.id.clone(),
            })
    }

    /// Whether `value` is sealed with the sealing key; a value sealed with an older key,
    /// or not sealed at all, should be sealed again.
    pub fn is_current(&self, value: &str) -> bool {
        split(value).is_ok_and(|(id, _)| id == self.primary_id())
    }
}

/// Whether `value` is sealed text (of any key), as opposed to plain text.
pub fn is_sealed(value: &str) -> bool {
    value.starts_with(PREFIX)
}

/// `(key id, data)` of sealed text.
fn split(sealed: &str) -> Result<(&str, &str), KeyringError> {
    sealed
        .strip_prefix(PREFIX)
        .and_then(|rest| rest.split_once(':'))
        .ok_or(KeyringError::Malformed)
}

/// The key file the embedded store creates in its folder when no key is configured.
pub const GENERATED_KEY_FILE: &str = "encryption.key";

/// The keys `[storage]` configures, in order: `WASMHOOK_ENCRYPTION_KEYS`, then
/// `encryption_key_files`. A listed file that is missing is an error.
pub fn configured_keys(storage: &StorageConfig) -> anyhow::Result<Vec<[u8; KEY_LEN]>> {
    let mut keys = Vec::new();
    for key in &storage.encryption_keys {
        keys.push(parse_key(key.expose(), "WASMHOOK_ENCRYPTION_KEYS")?);
    }
    for file in &storage.encryption_key_files {
        keys.push(read_key_file(file)?.ok_or_else(|| {
            anyhow::anyhow!(
                "[storage] encryption_key_files: {} does not exist (make a key with `openssl rand -base64 32 > {0}`)",
                file.display()
            )
        })?);
    }
    Ok(keys)
}

/// The keyring of the store `[storage]` describes.
///
/// - Configured keys come first; the first of them encrypts.
/// - Embedded, with no key configured: the key in `<path>/encryption.key` encrypts,
///   created (mode 0600) at the first start, with a warning that it sits beside the data.
///   With keys configured, that file's key, if there is one, still decrypts, so rows it
///   sealed keep opening until they are sealed again with the configured key.
/// - PostgreSQL: a key must be configured, because every node must hold the same one.
pub fn for_storage(storage: &StorageConfig) -> anyhow::Result<Keyring> {
    use anyhow::Context as _;
    let mut keys = configured_keys(storage)?;
    let generated = storage.path.join(GENERATED_KEY_FILE);
    match storage.backend {
        Backend::Postgres if keys.is_empty() => anyhow::bail!(
            "the PostgreSQL store needs a storage key, the same on every node, to encrypt subscription secrets: \
             set [storage] encryption_key_files = [\"/etc/wasmhook/storage.key\"] (a file holding `openssl rand -base64 32`) \
             or WASMHOOK_ENCRYPTION_KEYS"
        ),
        Backend::Postgres => {}
        Backend::Embedded if keys.is_empty() => {
            std::fs::create_dir_all(&storage.path).with_context(|| {
                format!(
                    "cannot create the storage folder {}",
                    storage.path.display()
                )
            })?;
            keys.push(read_or_create_key_file(&generated)?);
            tracing::warn!(
                key_file = %generated.display(),
                "subscription secrets are encrypted with a key kept beside the database; anyone who can read the \
                 storage folder can read them. Keep the key elsewhere: set [storage] encryption_key_files"
            );
        }
        Backend::Embedded => keys.extend(read_key_file(&generated)?),
    }
    Ok(Keyring::new(keys)?)
}

/// Reads one key file; `None` when it does not exist.
pub fn read_key_file(path: &Path) -> anyhow::Result<Option<[u8; KEY_LEN]>> {
    use anyhow::Context as _;
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(e).with_context(|| format!("cannot read the key file {}", path.display()));
        }
    };
    warn_if_readable_by_others(path);
    Ok(Some(parse_key(&text, &path.display().to_string())?))
}

/// Writes a new random key to `path`, readable by its owner only, unless one is there
/// already; returns the key either way.
pub fn read_or_create_key_file(path: &Path) -> anyhow::Result<[u8; KEY_LEN]> {
    use anyhow::Context as _;
    use std::io::Write as _;
    if let Some(key) = read_key_file(path)? {
        return Ok(key);
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let text = generate_key();
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot create the key file {}", path.display()))?;
    file.write_all(format!("{text}\n").as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write the key file {}", path.display()))?;
    Ok(parse_key(&text, &path.display().to_string())?)
}

/// Logs a warning when a key file can be read by its group or by anyone.
fn warn_if_readable_by_others(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        if let Ok(meta) = std::fs::metadata(path)
            && meta.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(
                file = %path.display(),
                "the storage key file can be read by other users; `chmod 600` it"
            );
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> [u8; KEY_LEN] {
        [n; KEY_LEN]
    }

    #[test]
    fn sealed_values_open_with_the_same_context_only() {
        let ring = Keyring::new([key(1)]).unwrap();
        let sealed = ring.seal("subscription:a", b"whsec_abc");
        assert!(sealed.starts_with(&format!("whsealed:v1:{}:", ring.primary_id())));
        assert!(!sealed.contains("whsec_abc"));
        assert_eq!(ring.open("subscription:a", &sealed).unwrap(), b"whsec_abc");
        assert_eq!(
            ring.open("subscription:b", &sealed),
            Err(KeyringError::Tampered {
                key_id: ring.primary_id().to_owned()
            })
        );
    }

    #[test]
    fn every_seal_uses_a_fresh_nonce() {
        let ring = Keyring::new([key(1)]).unwrap();
        assert_ne!(ring.seal("c", b"same"), ring.seal("c", b"same"));
    }

    #[test]
    fn a_changed_byte_is_detected() {
        let ring = Keyring::new([key(1)]).unwrap();
        let sealed = ring.seal("c", b"secret");
        let mut bytes = sealed.into_bytes();
        let last = bytes.len() - 2;
        bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
        let altered = String::from_utf8(bytes).unwrap();
        assert!(matches!(
            ring.open("c", &altered),
            Err(KeyringError::Tampered { .. })
        ));
    }

    #[test]
    fn the_first_key_seals_and_every_key_opens() {
        let old = Keyring::new([key(1)]).unwrap();
        let rotated = Keyring::new([key(2), key(1)]).unwrap();
        let by_old = old.seal("c", b"x");
        assert_eq!(rotated.open("c", &by_old).unwrap(), b"x");
        assert!(!rotated.is_current(&by_old));
        let by_new = rotated.seal("c", b"x");
        assert!(rotated.is_current(&by_new));
        let err = old.open("c", &by_new).unwrap_err();
        assert!(matches!(err, KeyringError::UnknownKey { .. }));
        let message = err.to_string();
        assert!(message.contains(rotated.primary_id()), "{message}");
        assert!(message.contains("encryption_key_files"), "{message}");
    }

    #[test]
    fn plain_text_is_neither_sealed_nor_current() {
        let ring = Keyring::new([key(1)]).unwrap();
        assert!(!is_sealed("{\"url\":\"https://x\"}"));
        assert!(!ring.is_current("{\"url\":\"https://x\"}"));
        assert_eq!(ring.open("c", "{}"), Err(KeyringError::Malformed));
        assert_eq!(
            ring.open("c", "whsealed:v1:nothing"),
            Err(KeyringError::Malformed)
        );
    }

    #[test]
    fn key_ids_are_stable_and_distinct() {
        assert_eq!(key_id(&key(1)), key_id(&key(1)));
        assert_ne!(key_id(&key(1)), key_id(&key(2)));
        assert_eq!(key_id(&key(1)).len(), 8);
        let ring = Keyring::new([key(1), key(1), key(2)]).unwrap();
        assert_eq!(ring.ids().len(), 2);
        assert_eq!(Keyring::new([]).unwrap_err(), KeyringError::Empty);
        assert!(!format!("{ring:?}").contains("[1, 1"));
    }

    #[test]
    fn keys_parse_from_base64_only_at_the_right_length() {
        let text = generate_key();
        assert!(parse_key(&format!("  {text}\n"), "f").is_ok());
        assert!(parse_key(text.trim_end_matches('='), "f").is_ok());
        let err = parse_key("c2hvcnQ=", "/etc/k").unwrap_err();
        assert!(err.to_string().contains("/etc/k"), "{err}");
        assert!(err.to_string().contains("openssl rand -base64 32"), "{err}");
        assert!(parse_key("not base64!", "f").is_err());
    }

    #[test]
    fn a_created_key_file_is_private_and_reused() {
        let dir = tempfile_dir();
        let path = dir.join("encryption.key");
        let first = read_or_create_key_file(&path).unwrap();
        let again = read_or_create_key_file(&path).unwrap();
        assert_eq!(first, again);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert_eq!(read_key_file(&dir.join("absent")).unwrap(), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn tempfile_dir() -> std::path::PathBuf {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("wasmhook-keyring-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
