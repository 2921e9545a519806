//! Logs on stderr: `--log-format text` (colours only on a terminal, and never with
//! `NO_COLOR`) or `json` (one object a line, for log shippers). `RUST_LOG` picks the level.
//! `serve` adds the OpenTelemetry layer when `[telemetry]` asks for it.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::Registry;
use tracing_subscriber::filter::{FilterExt as _, LevelFilter, filter_fn};
use tracing_subscriber::layer::{Filter, Layer as _, SubscriberExt as _};
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::telemetry;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `fields` (with `message`), `span`s.
    Json,
}

/// Whether text logs may use ANSI colours: only on a terminal, and never when `NO_COLOR`
/// is set to anything (<https://no-color.org>).
pub fn use_colour(stderr_is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    stderr_is_terminal && no_color.is_none_or(|v| v.is_empty())
}

/// The log filter when `RUST_LOG` is unset, for most commands.
pub const DEFAULT_FILTER: &str = "info,cranelift=warn,wasmtime=warn";

/// Installs the global subscriber; `default_filter` applies when `RUST_LOG` is unset. With
/// `tracer`, spans are also exported through it. (The layer is there from the start:
/// `tracing_subscriber::reload` would hide it from `OpenTelemetrySpanExt`, which finds it
/// by downcasting.) Each layer has a filter of its own: the exporter's is the level filter
/// alone, the log's also leaves out the per-event spans ([`telemetry::PER_EVENT_SPANS`]),
/// so that without an exporter no layer wants them and they are never made.
pub fn init(
    format: LogFormat,
    default_filter: &str,
    tracer: Option<opentelemetry_sdk::trace::Tracer>,
) {
    let colour = use_colour(
        super::output::stderr_is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
    );
    let traces = tracer.map(|t| {
        tracing_opentelemetry::layer::<Registry>()
            .with_tracer(t)
            .with_filter(level_filter(default_filter))
    });
    let registry = tracing_subscriber::registry().with(traces);
    let logs = log_filter(level_filter(default_filter));
    let result = match format {
        LogFormat::Text => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_target(false)
                    .with_ansi(colour)
                    .with_filter(logs),
            )
            .try_init(),
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_writer(std::io::stderr)
                    .with_current_span(true)
                    .with_filter(logs),
            )
            .try_init(),
    };
    // Only fails when a subscriber is already set (a test harness); that one stays.
    let _ = result;
}

/// `RUST_LOG`, or `default_filter` when it is unset.
fn level_filter(default_filter: &str) -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter))
}

/// The log's filter: `level`, without the per-event spans.
fn log_filter<S>(level: EnvFilter) -> impl Filter<S> + Send + Sync + 'static
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    // The hint says this part never lowers the level. Without one, `And` has no hint
    // either, the global maximum becomes TRACE, and `log`'s follows it: every `log::trace!`
    // of cranelift then reached the filter, and compiling an adapter took 3.4 times as long.
    level.and(
        filter_fn(|meta| !(meta.is_span() && telemetry::PER_EVENT_SPANS.contains(&meta.name())))
            .with_max_level_hint(LevelFilter::TRACE),
    )
}

#[cfg(test)]
mod tests {
    use std::ffi::OsStr;

    use tracing::Metadata;
    use tracing_subscriber::filter::LevelFilter;
    use tracing_subscriber::layer::Filter;
    use tracing_subscriber::{EnvFilter, Registry};

    use super::{log_filter, use_colour};
    use crate::telemetry::{ATTEMPT_SPAN, INGEST_SPAN};

    /// The callsite of the span `make` makes, under a subscriber that takes every span.
    /// (Whether `info_span!` makes a span also depends on every other subscriber in the
    /// process, which parallel tests set, so the filters' answers are checked instead.)
    fn span_meta(make: fn() -> tracing::Span) -> &'static Metadata<'static> {
        let span = tracing::subscriber::with_default(tracing_subscriber::registry(), make);
        span.metadata()
            .expect("a subscriber without filters takes every span")
    }

    #[test]
    fn the_log_never_wants_the_per_event_spans_and_an_exporter_does() {
        let attempt = span_meta(|| tracing::info_span!(ATTEMPT_SPAN, attempt = 1));
        let ingest = span_meta(|| tracing::info_span!(INGEST_SPAN));
        let other = span_meta(|| tracing::info_span!("reload"));
        let log = log_filter::<Registry>(EnvFilter::new("info"));
        let exporter = EnvFilter::new("info");
        for meta in [attempt, ingest] {
            // Never, for the callsite: with no exporter, no layer wants it, so
            // `info_span!` does not make it.
            assert!(log.callsite_enabled(meta).is_never(), "{}", meta.name());
            assert!(!Filter::<Registry>::callsite_enabled(&exporter, meta).is_never());
        }
        assert!(!log.callsite_enabled(other).is_never());
    }

    #[test]
    fn the_log_filter_keeps_the_level_hint() {
        // `log` records (cranelift's, at trace) are cut by this hint before any filter runs.
        let log = log_filter::<Registry>(EnvFilter::new("info,cranelift=warn"));
        assert_eq!(log.max_level_hint(), Some(LevelFilter::INFO));
    }

    #[test]
    fn colours_only_on_a_terminal_without_no_color() {
        assert!(use_colour(true, None));
        assert!(!use_colour(false, None));
        assert!(!use_colour(true, Some(OsStr::new("1"))));
        // An empty NO_COLOR does not count, as the convention says.
        assert!(use_colour(true, Some(OsStr::new(""))));
    }
}
