//! `GET /v1/stream`: Server-Sent Events of accepted events and delivery outcomes, read
//! from the in-process [`Feed`](crate::feed::Feed), filtered by type pattern and
//! subscription, resumable with `Last-Event-ID` within the feed's in-memory backlog.

// utoipa's expansion of `params(StreamQuery)` qualifies the type needlessly.
#![allow(unused_qualifications)]

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures_util::{Stream, StreamExt as _};
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;
use utoipa::IntoParams;

use super::openapi::ErrorBody;
use super::query::query_error;
use super::{ApiError, AppState};
use crate::feed::{Entry, Feed, FeedFilter, Resume};
use crate::router::validate_pattern;

/// Most patterns in `types`.
const MAX_PATTERNS: usize = 32;

/// Query of `GET /v1/stream`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StreamQuery {
    /// Comma-separated event-type patterns, as in a subscription's `events` (`host.*,cert.expiring`).
    /// Default: every type.
    types: Option<String>,
    /// Only items about this subscription: events routed to it, and its deliveries'
    /// outcomes.
    subscription_id: Option<String>,
}

/// Streams accepted events and delivery outcomes as they happen.
///
/// Each SSE message has an `id` (`<boot>-<sequence>`), an `event` name and JSON `data`:
///
/// - `ready`: sent once, first, when the stream is listening (`data: {}`);
/// - `event.accepted`: an event was stored, with the subscriptions it was routed to;
/// - `delivery.outcome`: an attempt was recorded (`delivered`, `retrying`, `dead_letter`,
///   `skipped`, `cancelled`); waits that spend no attempt are not reported;
/// - `gap`: items were missed (the `Last-Event-ID` is older than the node's backlog of
///   the last 1,024 items, is from before a restart, or the reader fell behind).
///
/// Reconnecting with `Last-Event-ID` replays what the node still holds after that id.
/// The feed is per node and in memory: a stream shows what the node answering it
/// accepts and delivers. For the full history, page `/v1/deliveries`.
#[utoipa::path(
    get, path = "/stream", tag = "operations", operation_id = "stream",
    params(
        StreamQuery,
        ("Last-Event-ID" = Option<String>, Header, description = "The last id received, to resume after it"),
    ),
    responses(
        (status = 200, description = "An endless `text/event-stream`", content_type = "text/event-stream", body = crate::feed::FeedItem),
        (status = 400, description = "A bad pattern or query (`invalid_pattern`, `invalid_query`)", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
    )
)]
pub async fn stream(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<StreamQuery>, QueryRejection>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let Query(query) = query.map_err(query_error)?;
    let patterns = parse_patterns(query.types.as_deref())?;
    let filter = FeedFilter::new(&patterns, query.subscription_id);
    let last_id = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty());
    let (replay, resume, receiver) = state.feed.subscribe(last_id);
    let mut first = vec![SseEvent::default().event("ready").data("{}")];
    if resume == Resume::Gap {
        first.push(gap(
            "the Last-Event-ID is not in this node's backlog; some items were missed",
        ));
    }
    first.extend(
        replay
            .iter()
            .filter(|e| filter.admits(&e.item))
            .map(|e| message(&state.feed, e)),
    );
    let live = Live {
        feed: state.feed.clone(),
        filter,
        receiver,
        stopping: state.stopping.clone(),
    };
    let stream =
        futures_util::stream::iter(first.into_iter().map(Ok))
            .chain(futures_util::stream::unfold(live, |mut live| async move {
                live.next().await.map(|event| (Ok(event), live))
            }));
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

/// The live part of one stream.
struct Live {
    feed: Feed,
    filter: FeedFilter,
    receiver: tokio::sync::broadcast::Receiver<Entry>,
    stopping: tokio::sync::watch::Receiver<bool>,
}

impl Live {
    /// The next message to send; `None` ends the stream (shutdown).
    async fn next(&mut self) -> Option<SseEvent> {
        loop {
            if *self.stopping.borrow() {
                return None;
            }
            let received = tokio::select! {
                r = self.receiver.recv() => r,
                _ = self.stopping.changed() => return None,
            };
            match received {
                Ok(entry) if self.filter.admits(&entry.item) => {
                    return Some(message(&self.feed, &entry));
                }
                Ok(_) => {}
                Err(RecvError::Lagged(n)) => {
                    return Some(gap(&format!(
                        "this reader fell {n} items behind and missed them"
                    )));
                }
                Err(RecvError::Closed) => return None,
            }
        }
    }
}

fn message(feed: &Feed, entry: &Entry) -> SseEvent {
    SseEvent::default()
        .id(feed.id(entry))
        .event(entry.item.name())
        .data(serde_json::to_string(&*entry.item).unwrap_or_default())
}

fn gap(message: &str) -> SseEvent {
    SseEvent::default()
        .event("gap")
        .data(serde_json::json!({ "message": message }).to_string())
}

/// The patterns of `types`, each checked as a subscription's would be.
fn parse_patterns(types: Option<&str>) -> Result<Vec<String>, ApiError> {
    let patterns: Vec<String> = types
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect();
    if patterns.len() > MAX_PATTERNS {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_pattern",
            format!("`types` lists at most {MAX_PATTERNS} patterns"),
        ));
    }
    for p in &patterns {
        validate_pattern(p).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_pattern",
                format!("`types`: `{p}`: {e}"),
            )
        })?;
    }
    Ok(patterns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_are_comma_separated_valid_patterns() {
        assert!(parse_patterns(None).unwrap().is_empty());
        assert_eq!(
            parse_patterns(Some("host.*, cert.expiring,")).unwrap(),
            ["host.*", "cert.expiring"]
        );
        let err = parse_patterns(Some("host..x")).unwrap_err();
        assert_eq!(err.code, "invalid_pattern");
        let many = vec!["a"; MAX_PATTERNS + 1].join(",");
        assert_eq!(
            parse_patterns(Some(&many)).unwrap_err().code,
            "invalid_pattern"
        );
    }
}
