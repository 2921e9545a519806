//! The targets the issues set, filled in as the scenarios run, and the table that says which
//! are met.

use crate::ingest;

/// The figures the issue sets targets for, filled in as the scenarios run.
#[derive(Debug, Default)]
pub struct Targets {
    pub baseline: f64,
    pub drain_none: Option<f64>,
    /// Preloaded drain, no adapter, on the engine's default settings.
    pub drain_defaults: Option<f64>,
    /// The producers' section.
    pub producers: Option<crate::mixed::Figures>,
    pub drain_slack: Option<f64>,
    pub ingest: Option<ingest::Ingest>,
    /// Drain rate with the fewest and the most idle subscriptions.
    pub idle: Option<(usize, f64, usize, f64)>,
    /// Drain rate with the smallest and the largest backlog, and the peak RSS with it.
    pub backlog: Option<(usize, f64, usize, f64, u64)>,
    pub rust_fresh_us: Option<f64>,
}

impl Targets {
    pub fn table(&self) -> String {
        let b = self.baseline;
        let mut rows = String::new();
        let mut row = |target: &str, figure: String, met: Option<bool>| {
            let verdict = match met {
                Some(true) => "**met**",
                Some(false) => "**missed**",
                None => "not measured",
            };
            rows.push_str(&format!("| {target} | {figure} | {verdict} |\n"));
        };
        let ratio = |v: Option<f64>| v.map(|v| v / b);
        let pct =
            |v: Option<f64>| v.map_or("–".into(), |v| format!("{:.0}% of baseline", 100.0 * v));
        let slack = ratio(self.drain_slack);
        row(
            "Drain, Slack adapter on a fresh instance ≥ 70% of baseline",
            pct(slack),
            slack.map(|r| r >= 0.70),
        );
        let none = ratio(self.drain_none);
        row(
            "Drain, no adapter ≥ 85% of baseline",
            pct(none),
            none.map(|r| r >= 0.85),
        );
        let batched = self.ingest.map(|i| i.batched);
        row(
            "Ingest, batched ≥ 20,000 events/s",
            batched.map_or("–".into(), |v| format!("{v:.0} events/s")),
            batched.map(|v| v >= 20_000.0),
        );
        let single = ratio(self.ingest.map(|i| i.single));
        row(
            "Ingest, single POSTs ≥ 60% of baseline requests/s",
            pct(single),
            single.map(|r| r >= 0.60),
        );
        row(
            "Routing: drain falls ≤ 10% from 10 to 10,000 idle subscriptions",
            self.idle.map_or("–".into(), |(a, ra, z, rz)| {
                format!(
                    "{ra:.0}/s with {a}, {rz:.0}/s with {z} ({:+.0}%)",
                    100.0 * (rz / ra - 1.0)
                )
            }),
            self.idle.map(|(_, ra, _, rz)| rz >= 0.9 * ra),
        );
        row(
            "Backlog: drain at the largest backlog within 15% of the smallest",
            self.backlog.map_or("–".into(), |(a, ra, z, rz, _)| {
                format!(
                    "{ra:.0}/s at {a}, {rz:.0}/s at {z} ({:+.0}%)",
                    100.0 * (rz / ra - 1.0)
                )
            }),
            self.backlog.map(|(_, ra, _, rz, _)| rz >= 0.85 * ra),
        );
        row(
            "Peak RSS with the largest backlog < 200 MiB",
            self.backlog.map_or("–".into(), |b| {
                format!("{:.0} MiB", b.4 as f64 / (1 << 20) as f64)
            }),
            self.backlog.map(|b| b.4 < 200 << 20),
        );
        if let Some(p) = self.producers {
            let e2e = p.end_to_end.rate / b;
            row(
                "Single-event POSTs delivered end to end, no adapter, defaults ≥ 30%",
                pct(Some(e2e)),
                Some(e2e >= 0.30),
            );
            let mixed = p.mixed.rate / b;
            let preloaded = self.drain_defaults.unwrap_or(f64::NAN);
            row(
                "Batched ingest while draining, no adapter: drain ≥ 30% and within 15% of the preloaded drain",
                format!(
                    "{:.0}% ({:.0}/s against {preloaded:.0}/s preloaded)",
                    100.0 * mixed,
                    p.mixed.rate
                ),
                Some(mixed >= 0.30 && p.mixed.rate >= 0.85 * preloaded),
            );
            let slack = p.mixed_slack.rate / b;
            row(
                "Same, Slack adapter on fresh instances ≥ 20%",
                pct(Some(slack)),
                Some(slack >= 0.20),
            );
            row(
                "Publish-to-receipt p99 at 200 events/s < 1.5 ms",
                format!("{:.2} ms", p.light.p99_us as f64 / 1e3),
                Some(p.light.p99_us < 1_500),
            );
            row(
                "Publish-to-receipt p99 at half the end-to-end peak < 10 ms",
                format!("{:.2} ms", p.half_peak.p99_us as f64 / 1e3),
                Some(p.half_peak.p99_us < 10_000),
            );
            row(
                "Engine CPU per event delivered end to end, no adapter ≤ 0.08 ms",
                format!("{:.3} ms", p.end_to_end.cpu_ms_per_delivery),
                Some(p.end_to_end.cpu_ms_per_delivery <= 0.08),
            );
        }
        let defaults = ratio(self.drain_defaults);
        row(
            "Preloaded drain, no adapter, defaults ≥ 40%",
            pct(defaults),
            defaults.map(|r| r >= 0.40),
        );
        row(
            "Rust adapter on a fresh instance ≤ 20 µs per delivery",
            self.rust_fresh_us
                .map_or("–".into(), |us| format!("{us:.1} µs")),
            self.rust_fresh_us.map(|us| us <= 20.0),
        );
        format!(
            "## Targets\n\nComputed by the run above.\n\n| Target | This run | |\n|---|---|---|\n{rows}\n"
        )
    }
}
