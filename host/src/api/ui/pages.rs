//! The Overview, Dead letters, Endpoints, Plugins (with each adapter's manifest) and Live
//! tail pages. Each reads through the services the API handlers use (the store's queries,
//! the endpoint and plugin listings); changes are `/v1` calls from the console script.

use axum::Extension;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use maud::html;
use serde::Deserialize;

use super::layout::{or_dash, page, status};
use super::session::Session;
use crate::api::query::parse_time;
use crate::api::{ApiError, AppState, deliveries, endpoints, plugins};
use crate::clock::now_ms;
use crate::store::{DeliveryFilter, DeliveryStatus};

/// Failing subscriptions listed on the overview at most.
const LISTED: usize = 20;

/// `GET /ui`: queue depth, subscriptions failing, circuits open, recent dead letters, and
/// live rates from the stream.
pub async fn overview(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
) -> Result<Response, ApiError> {
    let queue = state.store.queue_depth(now_ms()).await?;
    let health = state.store.subscription_health(None, now_ms()).await?;
    let total = state.subscriptions.catalog().len();
    let mut failing: Vec<_> = health
        .iter()
        .filter(|(_, h)| h.consecutive_failures > 0)
        .collect();
    failing.sort_by(|a, b| {
        b.1.consecutive_failures
            .cmp(&a.1.consecutive_failures)
            .then(a.0.cmp(b.0))
    });
    let circuits = endpoints::list(State(state.clone())).await.0.data;
    let open: Vec<_> = circuits.iter().filter(|e| e.circuit != "closed").collect();
    let dead = deliveries::page(
        &state,
        DeliveryFilter {
            status: Some(DeliveryStatus::DeadLetter),
            limit: 10,
            ..Default::default()
        },
    )
    .await?
    .0
    .data;
    let body = html! {
        section.cards {
            div.card { h2 { "Accepted / min" } p.big #rate-accepted { "0" } small { "events, live since this page opened" } }
            div.card { h2 { "Delivered / min" } p.big #rate-delivered { "0" } small { "attempts that succeeded" } }
            div.card { h2 { "Failed / min" } p.big #rate-failed { "0" } small { "retrying or dead-lettered" } }
            div.card { h2 { "Queue" } p.big { (queue.due) } small { "due now; " (queue.scheduled) " scheduled later" } }
            div.card { h2 { "Subscriptions" } p.big { (total) } small { (failing.len()) " failing" } }
        }
        div #rates data-stream="/v1/stream" {}
        section {
            h2 { "Failing subscriptions" }
            @if failing.is_empty() { p { "None." } }
            @if failing.len() > LISTED { p { "The first " (LISTED) " of " (failing.len()) "." } }
            ul { @for (id, h) in failing.iter().take(LISTED) {
                li { a href={"/ui/subscriptions/" (id)} { (id) } ": " (h.consecutive_failures) " failures in a row; "
                    (or_dash(h.last_error.as_deref())) }
            } }
            h2 { "Endpoints with an open circuit" }
            @if open.is_empty() { p { "None." } }
            ul { @for e in &open { li { (e.endpoint) ": " (e.circuit) } } }
            h2 { "Recent dead letters" }
            @if dead.is_empty() { p { "None." } }
            ul { @for d in &dead {
                li { code { (d.id) } " " (d.event_type) " → " a href={"/ui/subscriptions/" (d.subscription_id)} { (d.subscription_id) }
                    " · " (or_dash(d.last_error.as_deref())) }
            } }
        }
    };
    Ok(page(&session, "/ui", "Overview", body).into_response())
}

/// Query of `GET /ui/dead-letters`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct DeadLetterQuery {
    subscription_id: Option<String>,
    since: Option<String>,
    until: Option<String>,
}

/// `datetime-local` values (`2026-06-13T12:00`) are read as UTC; RFC 3339 as is.
fn form_time(name: &str, value: Option<&str>) -> Result<Option<i64>, ApiError> {
    let value = value.map(str::trim).filter(|v| !v.is_empty());
    let value = value.map(|v| match v.len() {
        16 => format!("{v}:00Z"),
        19 => format!("{v}Z"),
        _ => v.to_owned(),
    });
    parse_time(name, value.as_deref())
}

/// `GET /ui/dead-letters`: filter by subscription and time; replay a selection (each
/// retried) or the whole filtered range.
pub async fn dead_letters(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    Query(q): Query<DeadLetterQuery>,
) -> Result<Response, ApiError> {
    let subscription_id = q.subscription_id.filter(|s| !s.is_empty());
    let since = form_time("since", q.since.as_deref())?;
    let until = form_time("until", q.until.as_deref())?;
    let filter = DeliveryFilter {
        subscription_id: subscription_id.clone(),
        status: Some(DeliveryStatus::DeadLetter),
        since_ms: since,
        until_ms: until,
        limit: 100,
        ..Default::default()
    };
    let rows = deliveries::page(&state, filter).await?.0.data;
    let rfc = |ms: Option<i64>| ms.map(crate::clock::rfc3339);
    let body = html! {
        form.filters method="get" action="/ui/dead-letters" {
            label { "Subscription " input name="subscription_id" value=[subscription_id.as_deref()]; }
            label { "Since (UTC) " input name="since" placeholder="2026-06-13T12:00:00Z" value=[rfc(since)]; }
            label { "Until (UTC) " input name="until" placeholder="2026-06-13T13:00:00Z" value=[rfc(until)]; }
            button type="submit" { "Filter" }
        }
        form #replay-range data-api="POST /v1/dead-letters/replay" data-then="reload" {
            @if let Some(s) = &subscription_id { input type="hidden" name="subscription_id" value=(s); }
            @if let Some(t) = rfc(since) { input type="hidden" name="since" value=(t); }
            @if let Some(t) = rfc(until) { input type="hidden" name="until" value=(t); }
            button #replay-selected type="button" { "Replay selected" }
            " "
            button type="submit" { "Replay every dead letter matching the filter" }
        }
        table #dead-letters {
            thead { tr { th { input #pick-all type="checkbox" aria-label="Select all"; } th { "Delivery" } th { "Subscription" }
                th { "Event" } th { "Attempts" } th { "Last error" } th { "Created" } } }
            tbody {
                @for d in &rows {
                    tr {
                        td { input.pick type="checkbox" value=(d.id) aria-label={"Select " (d.id)}; }
                        td { code { (d.id) } }
                        td { a href={"/ui/subscriptions/" (d.subscription_id)} { (d.subscription_id) } }
                        td { (d.event_type) }
                        td { (d.attempts) }
                        td { (or_dash(d.last_error.as_deref())) }
                        td { (d.created_at) }
                    }
                }
            }
        }
        @if rows.is_empty() { p #no-dead-letters { "No dead letters match." } }
    };
    Ok(page(&session, "/ui/dead-letters", "Dead letters", body).into_response())
}

/// `GET /ui/endpoints`: circuit state, in flight, latency.
pub async fn endpoints(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
) -> Response {
    let list = endpoints::list(State(state)).await.0.data;
    let body = html! {
        @if list.is_empty() { p { "No endpoint has been called since the engine started." } }
        table #endpoints {
            thead { tr { th { "Endpoint" } th { "Circuit" } th { "Failures in a row" } th { "Open until" }
                th { "In flight" } th { "Limit" } th { "Latency" } } }
            tbody { @for e in &list {
                tr { td { (e.endpoint) } td { (status(e.circuit)) } td { (e.consecutive_failures) }
                    td { (or_dash(e.open_until.as_deref())) } td { (e.in_flight) } td { (e.concurrency_limit) }
                    td { (format!("{:.1} ms", e.latency_ms)) } }
            } }
        }
    };
    page(&session, "/ui/endpoints", "Endpoints", body).into_response()
}

/// `GET /ui/plugins`: what is loaded, and a dry run against a pasted event.
pub async fn plugins(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
) -> Response {
    let list = plugins::list(State(state)).await.0;
    let loaded: Vec<_> = list.data.iter().filter(|p| p.version.is_some()).collect();
    let sample = r#"{"type": "host.down", "data": {"host": "web-1", "reason": "disk full"}}"#;
    let body = html! {
        p { "Folder: " code { (list.dir.display()) } }
        table #plugins {
            thead { tr { th { "Name" } th { "Version" } th { "WIT" } th { "SHA-256" } th { "Calls" } th { "Errors" }
                th { "Load error" } th { "Manifest" } } }
            tbody { @for p in &list.data {
                tr { td { (p.name) } td { (or_dash(p.version)) } td { (or_dash(p.world_version)) }
                    td { code.hash { (or_dash(p.sha256.as_deref())) } } td { (p.calls) } td { (p.errors) }
                    td.err { (or_dash(p.last_error.as_deref())) }
                    td { @if let Some(m) = &p.manifest {
                        details { summary { (m.name) " " (m.version) }
                            pre.manifest { (serde_json::to_string_pretty(m).unwrap_or_default()) } }
                    } @else { "—" } } }
            } }
        }
        section {
            h2 { "Dry run" }
            p { "Runs the adapter on the event and shows the request it would send. Nothing is sent or stored." }
            form.grid #dry-run data-api="POST /v1/plugins/{plugin}/dry-run" data-then="result" {
                label { "Plugin " select name="plugin" { @for p in &loaded { option value=(p.name) { (p.name) } } } }
                label { "Subscription URL " input name="url" type="url" value="https://hooks.example.com/services/T000/B000/XXXX"; }
                label { "Settings (JSON) " input name="settings" data-type="json" value=r##"{"channel": "#ops"}"##; }
                label.wide { "Event (JSON) " textarea name="event" data-type="json" rows="6" { (sample) } }
                button type="submit" { "Dry run" }
            }
        }
        pre #result hidden {}
    };
    page(&session, "/ui/plugins", "Plugins", body).into_response()
}

/// Query of `GET /ui/tail`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct TailQuery {
    types: Option<String>,
    subscription_id: Option<String>,
}

/// `GET /ui/tail`: accepted events and delivery outcomes as they happen (`/v1/stream`).
pub async fn tail(Extension(session): Extension<Session>, Query(q): Query<TailQuery>) -> Response {
    let query = url_pairs(&[
        ("types", q.types.as_deref()),
        ("subscription_id", q.subscription_id.as_deref()),
    ]);
    let stream = format!("/v1/stream?{query}");
    let body = html! {
        form.filters method="get" action="/ui/tail" {
            label { "Types " input name="types" placeholder="host.*, cert.*" value=[q.types.as_deref()]; }
            label { "Subscription " input name="subscription_id" value=[q.subscription_id.as_deref()]; }
            button type="submit" { "Filter" }
            " " span #tail-state { "connecting…" }
        }
        table #tail data-stream=(stream) {
            thead { tr { th { "Time" } th { "Kind" } th { "Type" } th { "Event" } th { "Subscription" } th { "Outcome" } } }
            tbody {}
        }
    };
    page(&session, "/ui/tail", "Live tail", body).into_response()
}

/// `a=b&c=d` of the pairs that have a non-empty value, percent-encoded.
fn url_pairs(pairs: &[(&str, Option<&str>)]) -> String {
    pairs
        .iter()
        .filter_map(|(k, v)| v.filter(|v| !v.trim().is_empty()).map(|v| (k, v)))
        .map(|(k, v)| {
            let encoded: String = v
                .bytes()
                .map(|b| match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' => {
                        (b as char).to_string()
                    }
                    _ => format!("%{b:02X}"),
                })
                .collect();
            format!("{k}={encoded}")
        })
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_times_take_datetime_local_as_utc() {
        assert_eq!(
            form_time("since", Some("1970-01-01T00:01")).unwrap(),
            Some(60_000)
        );
        assert_eq!(form_time("since", Some("")).unwrap(), None);
        assert_eq!(
            form_time("since", Some("nope")).unwrap_err().code,
            "invalid_time"
        );
    }

    #[test]
    fn stream_queries_are_encoded() {
        assert_eq!(
            url_pairs(&[
                ("types", Some("host.*, a&b")),
                ("subscription_id", Some(""))
            ]),
            "types=host.*%2C%20a%26b"
        );
    }
}
