//! The NATS JetStream source: a durable pull consumer whose messages become events. A
//! message is acknowledged only after its event is committed, so a crash in between
//! redelivers it, and the event id (the message id) makes the second ingest a no-op. A
//! message that can never become an event is counted, logged with its reason and
//! terminated (`AckKind::Term`), so it never blocks the stream.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, PullConsumer, pull};
use async_nats::jetstream::{self, AckKind, Message};
use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;
use tokio::sync::watch;

use crate::ingest::Ingest;
use crate::metrics::Metrics;
use crate::source::SourceConfig;
use crate::source::message::{Incoming, draft};

/// The longest wait between reconnection tries.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Batches being committed at once. One at a time left the store's group commit with a
/// single job per `fsync`; a few let their commits share one, as concurrent HTTP producers'
/// do. Below the consumer's `max_ack_pending` of four batches, so that one more can be
/// pulled while these commit.
const COMMITS_IN_FLIGHT: usize = 3;

/// Why consuming stopped; the source reconnects after it.
#[derive(Debug, thiserror::Error)]
enum SourceError {
    #[error("cannot connect to NATS at {url}: {source}")]
    Connect {
        url: String,
        source: async_nats::ConnectError,
    },
    #[error("no JetStream stream `{stream}` (create it, or fix [[sources]] stream): {source}")]
    Stream {
        stream: String,
        source: jetstream::context::GetStreamError,
    },
    #[error("cannot create or resume the durable consumer `{consumer}`: {source}")]
    Consumer {
        consumer: String,
        source: jetstream::stream::ConsumerError,
    },
    #[error("cannot pull messages: {0}")]
    Pull(String),
    #[error("the message stream ended")]
    Ended,
}

/// Consumes `config`'s stream into `ingest` until `stop` turns true, reconnecting with
/// backoff after any failure.
pub async fn run(
    config: SourceConfig,
    ingest: Arc<Ingest>,
    metrics: Metrics,
    mut stop: watch::Receiver<bool>,
) {
    let url = crate::secret::redact_url(&config.url);
    let mut backoff = Duration::from_millis(200);
    loop {
        // `consume` settles the batches being committed before it returns.
        match consume(&config, &ingest, &metrics, &mut stop).await {
            Ok(()) => return,
            Err(e) => {
                tracing::error!(source = %config.id, url, error = %e, retry_in = ?backoff,
                    "NATS source stopped; retrying");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// One connection's worth of consuming, up to `COMMITS_IN_FLIGHT` batches committing at
/// once; `Ok` once `stop` is seen.
async fn consume(
    config: &SourceConfig,
    ingest: &Ingest,
    metrics: &Metrics,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), SourceError> {
    let client = async_nats::ConnectOptions::new()
        .name("wasmhook")
        .connect(config.url.as_str())
        .await
        .map_err(|source| SourceError::Connect {
            url: crate::secret::redact_url(&config.url),
            source,
        })?;
    let js = jetstream::new(client);
    let stream = js
        .get_stream(&config.stream)
        .await
        .map_err(|source| SourceError::Stream {
            stream: config.stream.clone(),
            source,
        })?;
    let consumer: PullConsumer = stream
        .get_or_create_consumer(
            &config.consumer,
            pull::Config {
                durable_name: Some(config.consumer.clone()),
                ack_policy: AckPolicy::Explicit,
                ack_wait: config.ack_wait.0,
                filter_subject: config.subject.clone().unwrap_or_default(),
                // Room for a few batches in flight while one commits.
                max_ack_pending: i64::try_from(config.batch * 4).unwrap_or(i64::MAX),
                ..Default::default()
            },
        )
        .await
        .map_err(|source| SourceError::Consumer {
            consumer: config.consumer.clone(),
            source,
        })?;
    let messages = consumer
        .stream()
        .max_messages_per_batch(config.batch)
        .messages()
        .await
        .map_err(|e| SourceError::Pull(e.to_string()))?;
    tracing::info!(source = %config.id, stream = %config.stream, consumer = %config.consumer,
        "consuming from NATS JetStream");
    let mut batches = messages.ready_chunks(config.batch);
    let mut committing = FuturesUnordered::new();
    let ended = loop {
        let batch = tokio::select! {
            // Settled first, so a batch's commit is sent to the store before the next's.
            biased;
            Some(()) = committing.next(), if !committing.is_empty() => continue,
            _ = stop.wait_for(|s| *s) => break Ok(()),
            batch = batches.next(), if committing.len() < COMMITS_IN_FLIGHT => match batch {
                Some(batch) => batch,
                None => break Err(SourceError::Ended),
            },
        };
        let mut good = Vec::with_capacity(batch.len());
        for message in batch {
            match message {
                Ok(message) => good.push(message),
                // Heartbeats missed and the like: the stream carries on or ends.
                Err(e) => tracing::warn!(source = %config.id, error = %e, "pulling messages"),
            }
        }
        committing.push(commit(config, ingest, metrics, good));
    };
    // Whatever ends consuming, the batches being committed are settled first.
    while committing.next().await.is_some() {}
    ended
}

/// Ingests `messages` under one commit and settles each: acknowledged once committed,
/// terminated when it can never become an event, redelivered later when the store failed.
async fn commit(config: &SourceConfig, ingest: &Ingest, metrics: &Metrics, messages: Vec<Message>) {
    let mut drafts = Vec::with_capacity(messages.len());
    // Per message: `Ok(())` when its draft is in `drafts` (in order), else why not.
    let mut readable = Vec::with_capacity(messages.len());
    for message in &messages {
        let sequence = message
            .info()
            .map(|i| i.stream_sequence)
            .unwrap_or_default();
        let msg_id = message
            .headers
            .as_ref()
            .and_then(|h| h.get(async_nats::header::NATS_MESSAGE_ID))
            .map(|v| v.as_str());
        let incoming = Incoming {
            subject: message.subject.as_str(),
            msg_id,
            stream: &config.stream,
            sequence,
            payload: &message.payload,
        };
        readable.push(
            draft(config, &incoming)
                .map(|d| drafts.push(d))
                .map_err(|e| (e.code(), e.to_string())),
        );
    }
    let mut ingested = match ingest.publish_each(drafts).await {
        Ok(results) => results.into_iter(),
        Err(e) => {
            tracing::error!(source = %config.id, error = %e, messages = messages.len(),
                "cannot store events; the messages are redelivered later");
            for message in &messages {
                let _ = message
                    .ack_with(AckKind::Nak(Some(Duration::from_secs(1))))
                    .await;
            }
            return;
        }
    };
    for (message, readable) in messages.iter().zip(readable) {
        let outcome = readable.and_then(|()| {
            ingested
                .next()
                .map(|r| r.map_err(|e| (e.code(), e.to_string())))
                .unwrap_or(Err(("internal", "no result from ingest".to_owned())))
        });
        match outcome {
            Ok(result) => {
                metrics.source_message(
                    &config.id,
                    if result.duplicate {
                        "duplicate"
                    } else {
                        "accepted"
                    },
                );
                if let Err(e) = message.ack().await {
                    // The event is committed; a redelivery is a duplicate ingest, a no-op.
                    tracing::warn!(source = %config.id, error = %e, "cannot acknowledge a committed message");
                }
            }
            Err((code, reason)) => {
                metrics.source_rejected(&config.id, code);
                tracing::warn!(source = %config.id, subject = %message.subject, code, reason,
                    sequence = message.info().map(|i| i.stream_sequence).unwrap_or_default(),
                    "a message cannot become an event; it is terminated");
                let _ = message.ack_with(AckKind::Term).await;
            }
        }
    }
}
