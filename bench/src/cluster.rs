//! The PostgreSQL mode: 1, 2 and 3 engine nodes, each a process of its own, draining one
//! backlog from one PostgreSQL database. The server is `WASMHOOK_BENCH_DATABASE_URL`, or a
//! throwaway cluster that `scripts/pg-cluster` starts (and installs, when missing) for the
//! run; each point gets a fresh database in it.

use std::sync::Arc;
use std::time::Duration;

use wasmhook::store::{PgTls, PostgresOptions, PostgresStore};

use crate::harness::{ChildEngine, ScriptServer, preload_into, subscription};
use crate::receiver::Receiver;

/// A PostgreSQL server for the run; stops the throwaway cluster when dropped.
#[derive(Debug)]
pub struct Server {
    /// `postgres://…/postgres`.
    pub url: String,
    _throwaway: Option<ScriptServer>,
}

impl Server {
    /// `WASMHOOK_BENCH_DATABASE_URL`, or a throwaway cluster from `scripts/pg-cluster`.
    pub fn get() -> anyhow::Result<Self> {
        if let Ok(url) = std::env::var("WASMHOOK_BENCH_DATABASE_URL") {
            return Ok(Self {
                url,
                _throwaway: None,
            });
        }
        let cluster = ScriptServer::start("pg-cluster")?;
        Ok(Self {
            url: cluster.url.clone(),
            _throwaway: Some(cluster),
        })
    }

    /// A fresh database; its URL.
    async fn database(&self, name: &str) -> anyhow::Result<String> {
        let (client, connection) =
            tokio_postgres::connect(&self.url, tokio_postgres::NoTls).await?;
        tokio::spawn(connection);
        // Two statements: DROP DATABASE cannot share a transaction with anything.
        client
            .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .await?;
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await?;
        let base = self.url.split('?').next().unwrap_or(&self.url);
        let server = &base[..base.rfind('/').unwrap_or(base.len())];
        Ok(format!("{server}/{name}"))
    }
}

/// Deliveries per second with `nodes` nodes draining `events` preloaded events.
pub async fn drain(
    server: &Server,
    receiver: &Receiver,
    nodes: usize,
    events: usize,
    concurrency: usize,
) -> anyhow::Result<f64> {
    let url = server.database(&format!("wasmhook_bench_{nodes}")).await?;
    let store = PostgresStore::open(
        PostgresOptions {
            url: url.clone(),
            pool_size: 4,
            node_id: "bench-preload".into(),
            heartbeat: Duration::from_secs(5),
            lease: Duration::from_secs(30),
            tls: PgTls::default(),
        },
        wasmhook::clock::now_ms(),
    )
    .await?;
    preload_into(Arc::new(store), &["main"], events, 1024).await?;
    let path = format!("/pg-{nodes}");
    // Every node needs the same storage key.
    let key_dir = tempfile::tempdir()?;
    let key_file = key_dir.path().join("storage.key");
    std::fs::write(&key_file, wasmhook::keyring::generate_key())?;
    let config = format!(
        "[storage]\nbackend = \"postgres\"\nurl = \"{url}\"\npool_size = 16\nencryption_key_files = [\"{}\"]\n\n\
         [delivery]\nallow_private_networks = true\nconcurrency = {}\nendpoint_concurrency = {concurrency}\n\n{}",
        key_file.display(),
        concurrency * 2,
        subscription("main", &receiver.url(&path), "")
    );
    let dirs: Vec<tempfile::TempDir> = (0..nodes)
        .map(|_| tempfile::tempdir())
        .collect::<Result<_, _>>()?;
    let mut children = Vec::new();
    for dir in &dirs {
        std::fs::create_dir_all(dir.path().join("plugins"))?;
        children.push(ChildEngine::start(&config, dir.path())?);
    }
    let seconds = receiver.wait_for(&path, events as u64).await;
    drop(children);
    Ok((events - 1) as f64 / seconds)
}
