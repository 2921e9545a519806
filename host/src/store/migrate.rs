//! `wasmhook migrate-store`: copies an embedded (SQLite) store into an empty PostgreSQL
//! database, so a single node can grow into several. Everything moves: subscriptions (with
//! their source and enabled state), events, deliveries in whatever state (pending ones keep
//! their due time and attempt count, dead letters stay replayable), and every attempt.
//!
//! Subscription specs are decrypted with the embedded store's keys and encrypted again with
//! the PostgreSQL nodes' key, so the two may differ.
//!
//! The engine must be stopped while it runs (the copy is of the file as it is), and the
//! target must hold no events yet, so two stores are never merged by accident.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use super::StoreError;
use super::postgres::{PostgresOptions, PostgresStore};
use super::sealed::{open_spec, seal_spec};
use crate::keyring::Keyring;

/// Rows copied per statement.
const PAGE: i64 = 5_000;

/// What was copied.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Copied {
    /// Subscriptions.
    pub subscriptions: u64,
    /// Events.
    pub events: u64,
    /// Deliveries.
    pub deliveries: u64,
    /// Attempts.
    pub attempts: u64,
}

/// One attempt to copy: delivery id, number, start and latency, status code, then error,
/// response body and plugin version.
type AttemptRow = (String, i32, [i64; 2], Option<i32>, [Option<String>; 3]);

/// Reads an [`AttemptRow`] from the columns of `r` from `first` on.
fn attempt_row(r: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<AttemptRow> {
    Ok((
        r.get(first)?,
        r.get(first + 1)?,
        [r.get(first + 2)?, r.get(first + 3)?],
        r.get(first + 4)?,
        [r.get(first + 5)?, r.get(first + 6)?, r.get(first + 7)?],
    ))
}

/// Inserts one page of attempts into PostgreSQL.
async fn copy_attempts(
    tx: &tokio_postgres::Transaction<'_>,
    rows: &[AttemptRow],
) -> Result<(), StoreError> {
    let ids: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    let numbers: Vec<i32> = rows.iter().map(|r| r.1).collect();
    let started: Vec<i64> = rows.iter().map(|r| r.2[0]).collect();
    let latency: Vec<i64> = rows.iter().map(|r| r.2[1]).collect();
    let codes: Vec<Option<i32>> = rows.iter().map(|r| r.3).collect();
    let text = |i: usize| rows.iter().map(|r| r.4[i].as_deref()).collect::<Vec<_>>();
    let (errors, bodies, plugins) = (text(0), text(1), text(2));
    tx.execute(
        "INSERT INTO attempts (delivery_id, attempt, started_at, latency_us, status_code, error, response_body, plugin_version)
         SELECT * FROM UNNEST($1::text[], $2::int[], $3::bigint[], $4::bigint[], $5::int[], $6::text[], $7::text[], $8::text[])",
        &[&ids, &numbers, &started, &latency, &codes, &errors, &bodies, &plugins],
    )
    .await?;
    Ok(())
}

/// Whether `table` has `column`.
fn has_column(sqlite: &Connection, table: &str, column: &str) -> Result<bool, StoreError> {
    super::embedded::has_column(sqlite, table, column).map_err(sqlite_err)
}

fn sqlite_err(e: rusqlite::Error) -> StoreError {
    StoreError::Database(format!("reading the embedded store: {e}"))
}

/// The keys of a migration: subscription specs are opened with `source` (the embedded
/// store's keys; `None` when it has none, as a store written before encryption) and sealed
/// again with `target`'s first key.
#[derive(Debug)]
pub struct MigrationKeys {
    /// Opens the embedded store's specs.
    pub source: Option<Keyring>,
    /// Seals them for PostgreSQL.
    pub target: Keyring,
}

impl Copied {
    /// Events, deliveries and attempts together: the rows the progress counts.
    pub fn rows(&self) -> u64 {
        self.events + self.deliveries + self.attempts
    }
}

/// Told after every page: what is copied so far, and the rows to copy in all.
pub type Progress<'a> = &'a mut dyn FnMut(&Copied, u64);

/// Copies the embedded store in folder `dir` into the PostgreSQL database `target`
/// describes (its `node_id` and timings are not used), calling `progress` as it goes.
pub async fn embedded_to_postgres(
    dir: &Path,
    target: PostgresOptions,
    keys: &MigrationKeys,
    progress: Progress<'_>,
) -> Result<Copied, StoreError> {
    let file = dir.join("wasmhook.db");
    if !file.is_file() {
        return Err(StoreError::Open {
            path: file.display().to_string(),
            reason: "no embedded store here ([storage] path of the old config)".into(),
        });
    }
    let sqlite =
        Connection::open_with_flags(&file, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(sqlite_err)?;
    let options = PostgresOptions {
        pool_size: 2,
        node_id: "migrate-store".into(),
        heartbeat: Duration::from_secs(5),
        lease: Duration::from_secs(30),
        ..target
    };
    let target = PostgresStore::open(options, crate::clock::now_ms()).await?;
    let mut client = target.pool().get().await?;
    let existing: i64 = client
        .query_one("SELECT COUNT(*) FROM events", &[])
        .await?
        .get(0);
    if existing > 0 {
        return Err(StoreError::Database(format!(
            "the PostgreSQL database already holds {existing} events; migrate into an empty one"
        )));
    }
    // A store last opened by an engine older than a column has no such column.
    let has_traceparent = has_column(&sqlite, "events", "traceparent")?;
    let has_first_attempts = has_column(&sqlite, "deliveries", "first_started_at")?;
    // Since the integer keys, a delivery names its event by the event's `seq`.
    let event_id = if has_column(&sqlite, "deliveries", "event_seq")? {
        "(SELECT e.id FROM events e WHERE e.seq = deliveries.event_seq)"
    } else {
        "event_id"
    };
    let total: i64 = sqlite
        .query_row(
            &format!(
                "SELECT (SELECT COUNT(*) FROM events) + (SELECT COUNT(*) FROM deliveries) + (SELECT COUNT(*) FROM attempts) + {}",
                if has_first_attempts {
                    "(SELECT COUNT(*) FROM deliveries WHERE first_started_at IS NOT NULL)"
                } else {
                    "0"
                }
            ),
            [],
            |r| r.get(0),
        )
        .map_err(sqlite_err)?;
    let total = u64::try_from(total).unwrap_or(0);
    let tx = client.transaction().await?;
    let mut copied = Copied::default();

    // Subscriptions.
    let mut stmt = sqlite
        .prepare("SELECT id, source, spec, enabled, disabled_reason, created_at, updated_at FROM subscriptions")
        .map_err(sqlite_err)?;
    let subs = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, bool>(3)?,
                r.get::<_, Option<String>>(4)?,
                r.get::<_, i64>(5)?,
                r.get::<_, i64>(6)?,
            ))
        })
        .map_err(sqlite_err)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(sqlite_err)?;
    for (id, source, spec, enabled, reason, created, updated) in &subs {
        let spec = match &keys.source {
            Some(source) => open_spec(source, id, spec)?,
            None if !crate::keyring::is_sealed(spec) => spec.clone(),
            None => {
                return Err(StoreError::Undecryptable {
                    id: id.clone(),
                    reason: "it is encrypted and no key is configured or in the store's folder"
                        .into(),
                });
            }
        };
        let spec = seal_spec(&keys.target, id, &spec);
        tx.execute(
            "INSERT INTO subscriptions (id, source, spec, enabled, disabled_reason, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (id) DO UPDATE SET source = excluded.source, spec = excluded.spec, enabled = excluded.enabled,
                 disabled_reason = excluded.disabled_reason, updated_at = excluded.updated_at",
            &[id, source, &spec, enabled, reason, created, updated],
        )
        .await?;
    }
    copied.subscriptions = subs.len() as u64;

    // Events, deliveries and attempts, a page at a time in rowid order.
    let select_events = format!(
        "SELECT rowid, id, type, created_at, data, delivery_count, {} FROM events WHERE rowid > ?1 ORDER BY rowid LIMIT ?2",
        if has_traceparent {
            "traceparent"
        } else {
            "NULL"
        }
    );
    let mut last = 0i64;
    loop {
        let mut stmt = sqlite.prepare_cached(&select_events).map_err(sqlite_err)?;
        let rows = stmt
            .query_map([last, PAGE], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, i32>(5)?,
                    r.get::<_, Option<String>>(6)?,
                ))
            })
            .map_err(sqlite_err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(sqlite_err)?;
        let Some(end) = rows.last().map(|r| r.0) else {
            break;
        };
        last = end;
        let ids: Vec<&str> = rows.iter().map(|r| r.1.as_str()).collect();
        let kinds: Vec<&str> = rows.iter().map(|r| r.2.as_str()).collect();
        let times: Vec<i64> = rows.iter().map(|r| r.3).collect();
        let data: Vec<&str> = rows.iter().map(|r| r.4.as_str()).collect();
        let counts: Vec<i32> = rows.iter().map(|r| r.5).collect();
        let traces: Vec<Option<&str>> = rows.iter().map(|r| r.6.as_deref()).collect();
        tx.execute(
            "INSERT INTO events (id, type, created_at, data, delivery_count, traceparent)
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::text[], $5::int[], $6::text[])",
            &[&ids, &kinds, &times, &data, &counts, &traces],
        )
        .await?;
        copied.events += rows.len() as u64;
        progress(&copied, total);
    }
    let select_deliveries = format!(
        "SELECT rowid, id, {event_id}, event_type, subscription_id, status, attempts, run_start,
                next_attempt_at, last_error, last_status, parked_on, created_at, updated_at
         FROM deliveries WHERE rowid > ?1 ORDER BY rowid LIMIT ?2"
    );
    let mut last = 0i64;
    loop {
        let mut stmt = sqlite
            .prepare_cached(&select_deliveries)
            .map_err(sqlite_err)?;
        let rows = stmt
            .query_map([last, PAGE], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    [
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, String>(4)?,
                        r.get::<_, String>(5)?,
                    ],
                    [r.get::<_, i32>(6)?, r.get::<_, i32>(7)?],
                    r.get::<_, i64>(8)?,
                    (r.get::<_, Option<String>>(9)?, r.get::<_, Option<i32>>(10)?),
                    r.get::<_, Option<String>>(11)?,
                    [r.get::<_, i64>(12)?, r.get::<_, i64>(13)?],
                ))
            })
            .map_err(sqlite_err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(sqlite_err)?;
        let Some(end) = rows.last().map(|r| r.0) else {
            break;
        };
        last = end;
        let text = |i: usize| rows.iter().map(|r| r.1[i].as_str()).collect::<Vec<_>>();
        let (ids, events, types, subs, statuses) = (text(0), text(1), text(2), text(3), text(4));
        let attempts: Vec<i32> = rows.iter().map(|r| r.2[0]).collect();
        let run_start: Vec<i32> = rows.iter().map(|r| r.2[1]).collect();
        let next_at: Vec<i64> = rows.iter().map(|r| r.3).collect();
        let errors: Vec<Option<&str>> = rows.iter().map(|r| r.4.0.as_deref()).collect();
        let last_status: Vec<Option<i32>> = rows.iter().map(|r| r.4.1).collect();
        let parked: Vec<Option<&str>> = rows.iter().map(|r| r.5.as_deref()).collect();
        let created: Vec<i64> = rows.iter().map(|r| r.6[0]).collect();
        let updated: Vec<i64> = rows.iter().map(|r| r.6[1]).collect();
        tx.execute(
            "INSERT INTO deliveries (id, event_id, event_type, subscription_id, status, attempts, run_start,
                 next_attempt_at, last_error, last_status, parked_on, created_at, updated_at)
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int[],
                 $7::int[], $8::bigint[], $9::text[], $10::int[], $11::text[], $12::bigint[], $13::bigint[])",
            &[
                &ids, &events, &types, &subs, &statuses, &attempts, &run_start, &next_at, &errors,
                &last_status, &parked, &created, &updated,
            ],
        )
        .await?;
        copied.deliveries += rows.len() as u64;
        progress(&copied, total);
    }
    let mut after = (String::new(), 0i64);
    loop {
        let mut stmt = sqlite
            .prepare_cached(
                "SELECT delivery_id, attempt, started_at, latency_us, status_code, error, response_body, plugin_version
                 FROM attempts WHERE (delivery_id, attempt) > (?1, ?2) ORDER BY delivery_id, attempt LIMIT ?3",
            )
            .map_err(sqlite_err)?;
        let rows = stmt
            .query_map(rusqlite::params![after.0, after.1, PAGE], |r| {
                attempt_row(r, 0)
            })
            .map_err(sqlite_err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(sqlite_err)?;
        let Some(end) = rows.last() else {
            break;
        };
        after = (end.0.clone(), i64::from(end.1));
        copy_attempts(&tx, &rows).await?;
        copied.attempts += rows.len() as u64;
        progress(&copied, total);
    }
    // The first attempts kept in their delivery rows (see the embedded store's schema).
    if has_first_attempts {
        let mut last = 0i64;
        loop {
            let mut stmt = sqlite
                .prepare_cached(
                    "SELECT rowid, id, 1, first_started_at, first_latency_us, first_status, NULL,
                            first_response_body, first_plugin_version
                     FROM deliveries WHERE rowid > ?1 AND first_started_at IS NOT NULL ORDER BY rowid LIMIT ?2",
                )
                .map_err(sqlite_err)?;
            let rows = stmt
                .query_map([last, PAGE], |r| {
                    Ok((r.get::<_, i64>(0)?, attempt_row(r, 1)?))
                })
                .map_err(sqlite_err)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(sqlite_err)?;
            let Some(end) = rows.last() else {
                break;
            };
            last = end.0;
            let rows: Vec<AttemptRow> = rows.into_iter().map(|(_, row)| row).collect();
            copy_attempts(&tx, &rows).await?;
            copied.attempts += rows.len() as u64;
            progress(&copied, total);
        }
    }
    tx.batch_execute("SELECT nextval('subscriptions_version'); NOTIFY wasmhook_subscriptions")
        .await?;
    tx.commit().await?;
    Ok(copied)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::EmbeddedStore;
    use crate::store::conformance::{
        create_schema, postgres_options, postgres_schema, postgres_url,
    };
    use crate::store::embedded::store_before_integer_keys;

    /// Copies the store in `dir` into a schema of its own and returns its deliveries'
    /// `(id, event_id)`.
    async fn migrate(url: &str, dir: &Path) -> Vec<(String, String)> {
        let schema = postgres_schema();
        create_schema(url, &schema).await;
        let keys = MigrationKeys {
            source: None,
            target: Keyring::new([[7; crate::keyring::KEY_LEN]]).expect("keyring"),
        };
        let options = postgres_options(url, &schema, "migrate-test");
        let copied = embedded_to_postgres(dir, options.clone(), &keys, &mut |_, _| {})
            .await
            .expect("migrate");
        assert_eq!((copied.events, copied.deliveries), (2, 2));
        let target = PostgresStore::open(options, 0).await.expect("open");
        let client = target.pool().get().await.expect("connection");
        client
            .query("SELECT id, event_id FROM deliveries ORDER BY id", &[])
            .await
            .expect("deliveries")
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect()
    }

    /// A store copies with each delivery's event id, whether an engine of this version
    /// rebuilt it with integer keys or it is still in the text-keyed layout.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn deliveries_keep_their_event_ids_in_either_layout() {
        let Some(url) = postgres_url() else { return };
        let expected = [
            ("msg_due".to_owned(), "evt_due".to_owned()),
            ("msg_old".to_owned(), "evt_old".to_owned()),
        ];
        let dir = tempfile::tempdir().expect("temp dir");
        store_before_integer_keys(dir.path(), "");
        assert_eq!(migrate(&url, dir.path()).await, expected, "text keys");
        drop(EmbeddedStore::open(dir.path(), 0).expect("rebuilds"));
        assert_eq!(migrate(&url, dir.path()).await, expected, "integer keys");
    }
}
