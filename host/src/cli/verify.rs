//! `wasmhook verify`: check a Standard Webhooks signature the way a receiver should.

use std::io::Read as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;

use crate::clock::now_ms;
use crate::secret::Secret;
use crate::signing::{SigningKey, verify};

use super::output::outln;

/// Arguments of `verify`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The subscription's `whsec_` secret.
    #[arg(long, env = "WASMHOOK_SECRET", hide_env_values = true)]
    secret: String,
    /// The `webhook-id` header.
    #[arg(long)]
    id: String,
    /// The `webhook-timestamp` header (Unix seconds).
    #[arg(long)]
    timestamp: i64,
    /// The `webhook-signature` header.
    #[arg(long)]
    signature: String,
    /// File holding the exact body; standard input when absent.
    #[arg(long)]
    body: Option<PathBuf>,
    /// Largest accepted clock difference, against replayed requests.
    #[arg(long, default_value = "5m")]
    tolerance: humantime::Duration,
}

/// Prints `valid` and exits 0, or says why not and exits 1.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let key = SigningKey::from_secret(&Secret::new(args.secret))?;
    let body = match &args.body {
        Some(path) => {
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?
        }
        None => {
            let mut buf = Vec::new();
            std::io::stdin().read_to_end(&mut buf)?;
            buf
        }
    };
    let skew = (now_ms() / 1000 - args.timestamp).unsigned_abs();
    if skew > args.tolerance.as_secs() {
        outln!(
            "invalid: the timestamp is {skew}s away from now (tolerance {})",
            args.tolerance
        )?;
        return Ok(ExitCode::FAILURE);
    }
    if verify(&key, &args.id, args.timestamp, &body, &args.signature) {
        outln!("valid")?;
        Ok(ExitCode::SUCCESS)
    } else {
        outln!("invalid: no signature matches this secret and body")?;
        Ok(ExitCode::FAILURE)
    }
}
