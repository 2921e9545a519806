//! The on-disk compile cache: compiled components keyed by the `.wasm` file's SHA-256 and
//! the engine's compatibility hash, so a restart loads native code in milliseconds instead
//! of compiling for seconds.
//!
//! Loading native code is only safe for bytes wasmtime itself produced, so every entry is
//! sealed with an HMAC-SHA256 under a random key the engine creates in the cache folder
//! (mode 0600). An entry whose seal does not verify is deleted and recompiled, never loaded.

use std::hash::{Hash, Hasher};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use sha2::Sha256;
use wasmtime::Engine;
use wasmtime::component::Component;

const MAC_LEN: usize = 32;

/// The cache folder and its sealing key.
pub struct CompileCache {
    dir: PathBuf,
    key: [u8; 32],
    /// Hex of the engine's compatibility hash: wasmtime version, target and settings.
    compat: String,
}

impl std::fmt::Debug for CompileCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompileCache")
            .field("dir", &self.dir)
            .field("compat", &self.compat)
            .finish_non_exhaustive()
    }
}

impl CompileCache {
    /// Opens (or creates) the cache in `dir` for `engine`.
    pub fn open(dir: &Path, engine: &Engine) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let key_path = dir.join("seal.key");
        let key = match std::fs::read(&key_path) {
            Ok(bytes) if bytes.len() == 32 => {
                let mut key = [0u8; 32];
                key.copy_from_slice(&bytes);
                key
            }
            _ => {
                let key: [u8; 32] = rand::random();
                let tmp = dir.join(format!(".seal.key.{}", std::process::id()));
                write_private(&tmp, &key)?;
                std::fs::rename(&tmp, &key_path)?;
                key
            }
        };
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Ok(Self {
            dir: dir.to_path_buf(),
            key,
            compat: format!("{:016x}", hasher.finish()),
        })
    }

    fn entry(&self, sha256: &str) -> PathBuf {
        self.dir.join(format!("{sha256}-{}.cwasm", self.compat))
    }

    fn seal(&self, name: &Path, bytes: &[u8]) -> [u8; MAC_LEN] {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("any key length");
        mac.update(name.file_name().map_or(&[][..], |n| n.as_encoded_bytes()));
        mac.update(bytes);
        mac.finalize().into_bytes().into()
    }

    /// The cached component for `sha256`, if a sealed entry for this engine exists.
    pub fn load(&self, engine: &Engine, sha256: &str) -> Option<Component> {
        let path = self.entry(sha256);
        let file = std::fs::read(&path).ok()?;
        if file.len() < MAC_LEN {
            let _ = std::fs::remove_file(&path);
            return None;
        }
        let (mac, bytes) = file.split_at(MAC_LEN);
        let expected = self.seal(&path, bytes);
        if !bool::from(subtle::ConstantTimeEq::ct_eq(mac, &expected[..])) {
            tracing::warn!(path = %path.display(), "compile cache entry was not written by this engine; deleting it");
            let _ = std::fs::remove_file(&path);
            return None;
        }
        // SAFETY: `Component::deserialize` trusts its input to be native code produced by
        // `Component::serialize` for a compatible engine. The seal proves these bytes were
        // written by an engine holding this cache's private key, which only ever seals
        // the output of `Component::serialize`; the file name pins the engine's
        // compatibility hash, and wasmtime checks it again while deserializing.
        #[allow(unsafe_code)]
        let component = unsafe { Component::deserialize(engine, bytes) };
        match component {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "unusable compile cache entry; deleting it");
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    }

    /// Seals and writes `component` for `sha256`. Failures only cost a recompile later.
    pub fn store(&self, sha256: &str, component: &Component) {
        let path = self.entry(sha256);
        let result = (|| -> anyhow::Result<()> {
            let bytes = component.serialize()?;
            let mac = self.seal(&path, &bytes);
            let tmp = self
                .dir
                .join(format!(".{sha256}.{}.tmp", std::process::id()));
            let mut file = std::fs::File::create(&tmp)?;
            file.write_all(&mac)?;
            file.write_all(&bytes)?;
            file.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            Ok(())
        })();
        if let Err(e) = result {
            tracing::warn!(path = %path.display(), error = %e, "cannot write the compile cache");
        }
    }
}

/// Writes a file readable by its owner only.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}
