//! `wasmhook serve`: run the engine until SIGINT or SIGTERM.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;

use super::logging::LogFormat;
use crate::config::{Config, ProcessEnv};

/// Arguments of `serve`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The TOML config file. Without it, defaults and WASMHOOK_* variables apply.
    #[arg(long, short)]
    config: Option<PathBuf>,
}

/// Loads the config, binds the listener and runs until a signal arrives.
pub fn run(args: Args, log_format: LogFormat) -> anyhow::Result<ExitCode> {
    let config = Config::load(args.config.as_deref(), &ProcessEnv);
    // Kept until the engine stops; dropping it flushes the spans still batched.
    let telemetry = match &config {
        Ok(config) => crate::telemetry::Telemetry::start(&config.telemetry)
            .context("cannot set up OpenTelemetry ([telemetry])")?,
        Err(_) => None,
    };
    super::logging::init(
        log_format,
        super::logging::DEFAULT_FILTER,
        telemetry.as_ref().map(|t| t.tracer()),
    );
    let config = config?;
    if let Some(endpoint) = telemetry
        .as_ref()
        .and(config.telemetry.otlp_endpoint.as_deref())
    {
        tracing::info!(
            endpoint = %crate::secret::redact_url(endpoint),
            "exporting traces over OTLP"
        );
    }
    super::runtime()?.block_on(async {
        let listener = tokio::net::TcpListener::bind(config.server.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.server.listen))?;
        crate::engine::run(config, &ProcessEnv, listener, shutdown_signal()).await
    })?;
    drop(telemetry);
    Ok(ExitCode::SUCCESS)
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return std::future::pending().await,
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
