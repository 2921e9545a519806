//! Per-subscription rate limits. A delivery over its subscription's rate is not dropped
//! and spends no attempt: it is given the next free slot and waits in the store until
//! then, so a backlog drains at exactly the configured rate.
//!
//! The arithmetic is GCRA (the generic cell rate algorithm of ATM networks, also behind
//! the `governor` crate), with one difference: `governor` only answers "now or not yet",
//! and a durable queue needs a *reservation* (a slot each waiting delivery owns), or
//! every waiting delivery would be claimed and put back at every tick.

use std::collections::HashMap;
use std::sync::Mutex;

/// A rate: `per_second` deliveries a second, with bursts of up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Sustained deliveries per second.
    pub per_second: u32,
    /// How many may go back to back after an idle spell.
    pub burst: u32,
}

impl Rate {
    /// `per_second` a second, bursting up to one second's worth.
    pub fn per_second(per_second: u32) -> Self {
        Self {
            per_second: per_second.max(1),
            burst: per_second.max(1),
        }
    }

    /// This node's share when `nodes` nodes deliver for the same subscription: the rate
    /// and burst divided among them, at least one a second each.
    pub fn shared_by(self, nodes: usize) -> Self {
        let nodes = u32::try_from(nodes.max(1)).unwrap_or(u32::MAX);
        Self {
            per_second: (self.per_second / nodes).max(1),
            burst: (self.burst / nodes).max(1),
        }
    }

    fn interval_us(self) -> i64 {
        1_000_000 / i64::from(self.per_second.max(1))
    }
}

/// GCRA state for one rate, in microseconds. Pure: the caller passes the time.
#[derive(Debug, Clone)]
pub struct Gcra {
    rate: Rate,
    /// The theoretical arrival time of the next cell: when the bucket is empty again.
    tat_us: i64,
}

impl Gcra {
    /// A limiter with a full burst available.
    pub fn new(rate: Rate) -> Self {
        Self { rate, tat_us: 0 }
    }

    /// Reserves the next slot at or after `now_us` and returns it. The slot is `now_us`
    /// when the rate allows going at once.
    pub fn reserve(&mut self, now_us: i64) -> i64 {
        let interval = self.rate.interval_us();
        let tolerance = interval * i64::from(self.rate.burst.max(1) - 1);
        let tat = self.tat_us.max(now_us);
        let slot = (tat - tolerance).max(now_us);
        self.tat_us = tat + interval;
        slot
    }
}

/// What the limiter says about one delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// Go now.
    Now,
    /// Wait until this time (Unix ms); the slot is reserved for this delivery.
    At(i64),
}

/// The limiters of every rate-limited subscription, and the slots waiting deliveries hold.
#[derive(Debug, Default)]
pub struct RateLimits {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    limiters: HashMap<String, Gcra>,
    /// Delivery id to its reserved slot (Unix ms).
    reserved: HashMap<String, i64>,
}

/// Reservations older than this are forgotten (their delivery was deleted or replayed).
const STALE_RESERVATION_MS: i64 = 3_600_000;

impl RateLimits {
    /// Admits `delivery` of `subscription` at `now_ms` under `rate`. A delivery that comes
    /// back at or after its reserved slot goes without taking another one.
    pub fn admit(&self, subscription: &str, rate: Rate, delivery: &str, now_ms: i64) -> Slot {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(&slot) = inner.reserved.get(delivery) {
            if slot <= now_ms {
                inner.reserved.remove(delivery);
                return Slot::Now;
            }
            return Slot::At(slot);
        }
        let limiter = inner
            .limiters
            .entry(subscription.to_owned())
            .or_insert_with(|| Gcra::new(rate));
        if limiter.rate != rate {
            *limiter = Gcra::new(rate);
        }
        let slot_us = limiter.reserve(now_ms.saturating_mul(1000));
        // Round up: a delivery woken early would only be put back again.
        let slot_ms = (slot_us + 999) / 1000;
        if slot_ms <= now_ms {
            return Slot::Now;
        }
        if inner.reserved.len() >= 100_000 {
            inner
                .reserved
                .retain(|_, &mut slot| slot > now_ms - STALE_RESERVATION_MS);
        }
        inner.reserved.insert(delivery.to_owned(), slot_ms);
        Slot::At(slot_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_goes_at_once_then_one_per_interval() {
        let mut gcra = Gcra::new(Rate {
            per_second: 10,
            burst: 3,
        });
        let now = 5_000_000;
        let slots: Vec<i64> = (0..6).map(|_| gcra.reserve(now)).collect();
        assert_eq!(
            slots,
            [now, now, now, now + 100_000, now + 200_000, now + 300_000]
        );
        // After an idle second, the burst is back.
        let later = now + 2_000_000;
        assert_eq!(gcra.reserve(later), later);
    }

    #[test]
    fn sustained_rate_is_kept_over_a_long_backlog() {
        let mut gcra = Gcra::new(Rate::per_second(50));
        let now = 0;
        let last = (0..1_000).map(|_| gcra.reserve(now)).max().unwrap();
        // 1,000 deliveries at 50/s with a burst of 50: the last goes at (1000-50)/50 s.
        assert_eq!(last, 19_000_000);
    }

    #[test]
    fn waiting_deliveries_keep_their_slot_and_nothing_is_dropped() {
        let limits = RateLimits::default();
        let rate = Rate {
            per_second: 2,
            burst: 1,
        };
        assert_eq!(limits.admit("s", rate, "a", 1_000), Slot::Now);
        assert_eq!(limits.admit("s", rate, "b", 1_000), Slot::At(1_500));
        assert_eq!(limits.admit("s", rate, "c", 1_000), Slot::At(2_000));
        // Claimed again early: same slot, no new one taken.
        assert_eq!(limits.admit("s", rate, "b", 1_200), Slot::At(1_500));
        assert_eq!(limits.admit("s", rate, "b", 1_500), Slot::Now);
        assert_eq!(limits.admit("s", rate, "c", 2_000), Slot::Now);
        // Another subscription has its own budget.
        assert_eq!(limits.admit("t", rate, "d", 2_000), Slot::Now);
    }

    #[test]
    fn nodes_share_a_rate() {
        let rate = Rate::per_second(50);
        assert_eq!(rate.shared_by(1), rate);
        assert_eq!(rate.shared_by(2).per_second, 25);
        assert_eq!(rate.shared_by(3).per_second, 16);
        assert_eq!(Rate::per_second(2).shared_by(5).per_second, 1);
    }

    #[test]
    fn a_changed_rate_starts_afresh() {
        let limits = RateLimits::default();
        let slow = Rate {
            per_second: 1,
            burst: 1,
        };
        assert_eq!(limits.admit("s", slow, "a", 0), Slot::Now);
        assert_eq!(limits.admit("s", slow, "b", 0), Slot::At(1_000));
        let fast = Rate::per_second(100);
        assert_eq!(limits.admit("s", fast, "c", 0), Slot::Now);
    }
}
