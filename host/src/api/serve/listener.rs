//! The accept loop: a slot per connection up to the cap; at the cap, the connection idle
//! the longest is closed to make room (as nginx reuses idle keep-alive connections), and
//! when none is idle new clients wait in the kernel's backlog. On shutdown it stops
//! accepting, closes idle connections, and waits for requests in flight.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::connection::{self, Conn};
use super::limits::ServeLimits;

/// The open connections, for eviction.
#[derive(Debug, Default)]
struct Table {
    conns: Mutex<HashMap<u64, Arc<Conn>>>,
    next: AtomicU64,
}

impl Table {
    fn insert(&self, conn: Arc<Conn>) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(id, conn);
        id
    }

    fn remove(&self, id: u64) {
        self.lock().remove(&id);
    }

    /// Asks the connection idle the longest to close; false if none is idle.
    fn evict_longest_idle(&self) -> bool {
        let conns = self.lock();
        let oldest = conns
            .values()
            .filter_map(|c| c.idle_since().map(|since| (since, c)))
            .min_by_key(|(since, _)| *since);
        match oldest {
            Some((_, conn)) => {
                conn.evict();
                true
            }
            None => false,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Conn>>> {
        self.conns.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Serves `router` on `listener` within `limits` until `shutdown` completes, then waits
/// for the requests in flight (as `axum::serve(..).with_graceful_shutdown(..)` does).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ServeLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let graceful = GracefulShutdown::new();
    let table = Arc::new(Table::default());
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let mut last_warning: Option<Instant> = None;
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_failed(&e, &table, &mut last_warning).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let slot = match Arc::clone(&slots).try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                if !table.evict_longest_idle() {
                    warn_at_most_every_minute(&mut last_warning, || {
                        tracing::warn!(
                            max_connections = limits.max_connections,
                            "every API connection is busy at [server] max_connections; new clients wait"
                        );
                    });
                }
                tokio::select! {
                    slot = Arc::clone(&slots).acquire_owned() => match slot {
                        Ok(slot) => slot,
                        Err(_) => break, // never closed
                    },
                    () = &mut shutdown => break,
                }
            }
        };
        let _ = stream.set_nodelay(true);
        let conn = Arc::new(Conn::new());
        let id = table.insert(Arc::clone(&conn));
        let (router, table, watcher) = (router.clone(), Arc::clone(&table), graceful.watcher());
        tokio::spawn(async move {
            connection::run(stream, peer, router, limits, conn, watcher).await;
            table.remove(id);
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// After a failed accept: out of file descriptors makes room by closing an idle connection
/// and waits a moment (the error repeats at once otherwise); a connection the client
/// already reset is skipped.
async fn accept_failed(error: &std::io::Error, table: &Table, last_warning: &mut Option<Instant>) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionReset, Interrupted};
    if matches!(
        error.kind(),
        ConnectionAborted | ConnectionReset | Interrupted
    ) {
        return;
    }
    let out_of_files = matches!(error.raw_os_error(), Some(libc::EMFILE | libc::ENFILE));
    warn_at_most_every_minute(last_warning, || {
        if out_of_files {
            tracing::warn!(error = %error, "cannot accept an API connection: out of file descriptors; \
                lower [server] max_connections or raise the open-file limit");
        } else {
            tracing::error!(error = %error, "cannot accept an API connection");
        }
    });
    if out_of_files {
        table.evict_longest_idle();
    }
    tokio::time::sleep(Duration::from_millis(if out_of_files { 50 } else { 1000 })).await;
}

fn warn_at_most_every_minute(last: &mut Option<Instant>, warn: impl FnOnce()) {
    if last.is_none_or(|at| at.elapsed() >= Duration::from_secs(60)) {
        warn();
        *last = Some(Instant::now());
    }
}
