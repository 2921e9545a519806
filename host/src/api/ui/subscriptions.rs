//! The Subscriptions page (list, create, enable/disable, test, rotate, delete) and a
//! subscription's detail (edit, recent deliveries with their attempts, retry). Reads go
//! through the API's own handlers; every change is a `/v1` call from the console script.

use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use serde::Deserialize;

use super::layout::{or_dash, page, percent, status};
use super::session::Session;
use crate::api::subscriptions::SubscriptionView;
use crate::api::{ApiError, AppState, deliveries, subscriptions as api};
use crate::store::DeliveryFilter;

/// Deliveries on a subscription's page.
const RECENT: usize = 25;

/// Rows on the list page; the filter finds the rest.
const ROWS: usize = 200;

/// Query of `GET /ui/subscriptions`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ListQuery {
    /// Only subscriptions whose id, URL or name contains this.
    q: Option<String>,
}

/// `GET /ui/subscriptions`.
pub async fn list(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    Query(query): Query<ListQuery>,
) -> Result<Response, ApiError> {
    let all = api::list(State(state)).await?.0.data;
    let needle = query.q.as_deref().map(str::trim).unwrap_or_default();
    let matching: Vec<&SubscriptionView> = all
        .iter()
        .filter(|s| {
            needle.is_empty()
                || s.id.contains(needle)
                || s.url.contains(needle)
                || s.name.as_deref().is_some_and(|n| n.contains(needle))
        })
        .collect();
    let subs = &matching[..matching.len().min(ROWS)];
    let body = html! {
        section {
            h2 { "New subscription" }
            form.grid #create data-api="POST /v1/subscriptions" data-then="secret" {
                label { "URL " input name="url" type="url" required placeholder="https://receiver.example/hook"; }
                label { "Event types " input name="events" data-type="list" required value="*" placeholder="host.*, cert.expiring"; }
                label { "Id (optional) " input name="id" placeholder="generated"; }
                label { "Name " input name="name"; }
                label { "Plugin " input name="plugin" placeholder="none: the standard envelope"; }
                label { "Settings (JSON) " input name="settings" data-type="json" placeholder="{\"channel\": \"#ops\"}"; }
                button type="submit" { "Create" }
            }
            (secret_box())
        }
        section {
            h2 { "Subscriptions (" (matching.len()) " of " (all.len()) ")" }
            form.filters method="get" action="/ui/subscriptions" {
                label { "Id, URL or name contains " input name="q" value=[query.q.as_deref()]; }
                button type="submit" { "Filter" }
                @if matching.len() > subs.len() { " " span { "Showing the first " (subs.len()) "; narrow the filter to see others." } }
            }
            table #subscriptions {
                thead { tr { th { "Id" } th { "URL" } th { "Events" } th { "Plugin" } th { "State" }
                    th { "Last delivery" } th { "Success (24 h)" } th { "Actions" } } }
                tbody {
                    @for s in subs { (row(s)) }
                }
            }
        }
    };
    Ok(page(&session, "/ui/subscriptions", "Subscriptions", body).into_response())
}

/// Where a rotated or new secret is shown, once, with a copy button.
fn secret_box() -> Markup {
    html! {
        div.secret #secret-box hidden {
            p { "The signing secret. It is shown this once: copy it now." }
            code #secret-value {}
            " "
            button #copy-secret type="button" { "Copy" }
        }
    }
}

fn row(s: &SubscriptionView) -> Markup {
    let id = &s.id;
    let health = &s.health;
    let last = match (health.last_result, health.last_status) {
        (Some(result), Some(code)) => format!("{result} ({code})"),
        (Some(result), None) => result.to_owned(),
        (None, _) => "—".to_owned(),
    };
    html! {
        tr data-id=(id) {
            td { a href={"/ui/subscriptions/" (id)} { (id) } }
            td.url { (s.url) }
            td { (s.events.join(", ")) }
            td { (or_dash(s.plugin.as_deref())) }
            td { @if s.enabled { (status("enabled")) } @else { (status("disabled")) } }
            td.last { (last) }
            td { (percent(health.success_rate_24h)) }
            td.actions {
                @if s.enabled {
                    button data-api={"PATCH /v1/subscriptions/" (id)} data-body=r#"{"enabled":false}"# data-then="reload" { "Disable" }
                } @else {
                    button data-api={"PATCH /v1/subscriptions/" (id)} data-body=r#"{"enabled":true}"# data-then="reload" { "Enable" }
                }
                button data-api={"POST /v1/subscriptions/" (id) "/test"} data-then="result" { "Send test" }
                button.rotate data-api={"POST /v1/subscriptions/" (id) "/rotate-secret"} data-body="{}" data-then="secret" { "Rotate secret" }
                button.danger data-api={"DELETE /v1/subscriptions/" (id)} data-confirm={"Delete " (id) "?"} data-then="reload" { "Delete" }
            }
        }
    }
}

/// `GET /ui/subscriptions/{id}`.
pub async fn detail(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let sub = api::get(State(state.clone()), Path(id.clone())).await?.0;
    let filter = DeliveryFilter {
        subscription_id: Some(id.clone()),
        limit: RECENT,
        ..Default::default()
    };
    let recent = deliveries::page(&state, filter).await?.0.data;
    let mut details = Vec::with_capacity(recent.len());
    for d in &recent {
        if let Some(detail) = state.store.delivery(&d.id).await? {
            details.push(detail);
        }
    }
    let body = html! {
        section {
            dl.facts {
                dt { "URL" } dd { (sub.url) }
                dt { "Events" } dd { (sub.events.join(", ")) }
                dt { "Plugin" } dd { (or_dash(sub.plugin.as_deref())) }
                dt { "State" } dd { @if sub.enabled { "enabled" } @else { "disabled: " (sub.disabled_reason.as_deref().unwrap_or("by an operator")) } }
                dt { "Source" } dd { (format!("{:?}", sub.source).to_lowercase()) }
                dt { "Signing secrets" } dd { (sub.signing_secrets.len()) " (never shown; rotate to get a new one)" }
                dt { "Success (1 h / 24 h)" } dd { (percent(sub.health.success_rate_1h)) " / " (percent(sub.health.success_rate_24h)) }
            }
        }
        section {
            h2 { "Edit" }
            form.grid #edit data-api={"PATCH /v1/subscriptions/" (id)} data-then="reload" {
                label { "URL " input name="url" type="url" value=(sub.url); }
                label { "Event types " input name="events" data-type="list" value=(sub.events.join(", ")); }
                label { "Name " input name="name" value=[sub.name.as_deref()]; }
                label { "Filter " input name="filter" value=[sub.filter.as_deref()]; }
                button type="submit" { "Save" }
            }
        }
        section {
            h2 { "Recent deliveries" }
            table #deliveries {
                thead { tr { th { "Delivery" } th { "Event" } th { "Status" } th { "Attempts" } th { "Created" } th {} } }
                tbody {
                    @for d in &details {
                        tr data-delivery=(d.delivery.id) {
                            td { code { (d.delivery.id) } }
                            td { (d.delivery.event_type) " " code { (d.delivery.event_id) } }
                            td { (status(d.delivery.status.as_str())) }
                            td { (d.delivery.attempts) }
                            td { (d.delivery.created_at) }
                            td { button data-api={"POST /v1/deliveries/" (d.delivery.id) "/retry"} data-then="reload" { "Retry" } }
                        }
                        @for a in &d.attempts_log {
                            tr.attempt {
                                td {} td colspan="5" {
                                    "#" (a.attempt) " · " (a.started_at) " · " (or_dash(a.status_code)) " · "
                                    (format!("{:.1} ms", a.latency_us as f64 / 1000.0))
                                    @if let Some(v) = &a.plugin_version { " · " (v) }
                                    @if let Some(e) = &a.error { " · " span.err { (e) } }
                                    @if let Some(b) = &a.response_body { br; code.snippet { (b) } }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    let title = format!("Subscription {id}");
    Ok(page(&session, "/ui/subscriptions", &title, body).into_response())
}
