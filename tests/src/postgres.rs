//! The PostgreSQL server of the tests: `WASMHOOK_TEST_DATABASE_URL`, which `scripts/test`
//! sets after starting a throwaway cluster. A test takes a fresh database of its own on it.
//! Without the variable the PostgreSQL tests skip with a note, unless
//! `WASMHOOK_REQUIRE_POSTGRES` is set (as `scripts/test` does), which makes that a failure.

/// The test server's URL, or `None` (with a note) when there is none.
pub fn server_url() -> Option<String> {
    match std::env::var("WASMHOOK_TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var_os("WASMHOOK_REQUIRE_POSTGRES").is_none(),
                "WASMHOOK_REQUIRE_POSTGRES is set but WASMHOOK_TEST_DATABASE_URL is not"
            );
            eprintln!(
                "skipped: no PostgreSQL (set WASMHOOK_TEST_DATABASE_URL, or run scripts/test)"
            );
            None
        }
    }
}

/// A fresh database on the test server, or `None` (with a note) when there is none.
pub async fn database() -> Option<String> {
    let url = server_url()?;
    let name = format!("wasmhook_{}_{}", std::process::id(), rand_suffix());
    connect(&url)
        .await
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create database");
    // Same server, other database: replace the path of the URL.
    let base = url.split('?').next().unwrap_or(&url);
    let server = &base[..base.rfind('/').expect("URL has a database")];
    Some(format!("{server}/{name}"))
}

/// A plain connection to `url`, driven in the background.
pub async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect to the test server");
    tokio::spawn(connection);
    client
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64 % 1_000_000_007);
    nanos * 100 + N.fetch_add(1, Ordering::Relaxed) % 100
}
