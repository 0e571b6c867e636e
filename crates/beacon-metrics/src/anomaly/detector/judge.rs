//! Judging the newest intervals: when a spike, drop or dark period opens,
//! and when it is over.

use super::super::stats::deviance_root;
use super::{secs_to_time, Detector, ZeroRun};
use crate::anomaly::{Anomaly, AnomalyKind, Event, Mode};

/// Standard deviations a spike must reach (at sensitivity 1).
const Z_SPIKE: f64 = 4.5;
/// Standard deviations a drop must reach: fewer than a spike, because
/// traffic has bursts (a bot, a link shared) but no sudden holes, and the
/// drop ratio guards the rest.
const Z_DROP: f64 = 4.0;
/// Extra standard deviations asked while the detector is cautious.
const Z_CAUTIOUS: f64 = 1.0;
/// A spike or drop whose recent evidence is below this many standard
/// deviations is back to normal.
const Z_CLOSE: f64 = 2.0;
/// ... and whose recent count is at most this much above the expected one
/// (spike) or at least this much of it (drop).
const CLOSE_SPIKE_RATIO: f64 = 1.25;
const CLOSE_DROP_RATIO: f64 = 0.8;
/// Relative error of a cautious detector's baseline.
const CAUTIOUS_ERROR: f64 = 0.3;
/// Natural log of the probability of a dark run that opens "dark" (1e-5).
const DARK_LOG_P: f64 = -11.5;

/// A window that passes the tests of a spike or drop.
#[derive(Debug, Clone, Copy)]
struct Window {
    kind: AnomalyKind,
    z: f64,
    len: usize,
    observed: f64,
    expected: f64,
}

impl Detector {
    /// Squared relative error added to the baseline's while it has seen
    /// each weekday at most once.
    pub(super) fn cautious_c2(&self) -> f64 {
        if self.mode() == Mode::Ready {
            0.0
        } else {
            CAUTIOUS_ERROR * CAUTIOUS_ERROR
        }
    }

    fn z(&self, observed: f64, expected: f64) -> f64 {
        let var = self.noise.variance(expected) + self.cautious_c2() * expected * expected;
        deviance_root(observed, expected) / (var / expected.max(1e-9)).max(1.0).sqrt()
    }

    /// Thresholds of a spike and a drop, in standard deviations.
    fn z_open(&self) -> (f64, f64) {
        let extra = if self.mode() == Mode::Ready {
            0.0
        } else {
            Z_CAUTIOUS
        };
        let s = self.config.sensitivity;
        (Z_SPIKE / s + extra, Z_DROP / s + extra)
    }

    pub(super) fn track_zero_run(&mut self, t: i64, observed: f64, mu: f64) {
        if observed > 0.0 {
            self.zero = ZeroRun::default();
            return;
        }
        if self.zero.len == 0 {
            self.zero.start = t;
        }
        // Page views come in visits: the chance of no event is the chance
        // of no visit, with the expected count taken one baseline error low.
        let low = mu * (1.0 - (self.noise.c2() + self.cautious_c2()).sqrt()).max(0.3);
        let visits = low * 2.0 / (self.noise.d() + 1.0);
        self.zero.len += 1;
        self.zero.expected += mu;
        self.zero.log_p -= visits;
    }

    fn close(&mut self, end: i64, events: &mut Vec<Event>) {
        let end = self.pending_end.take().map_or(end, |p| p.min(end));
        if let Some(mut a) = self.open.take() {
            // The interval that opened it was part of it, even when a dark
            // period that began there supersedes it.
            let end = end.max(a.start.timestamp() + self.step);
            a.end = Some(secs_to_time(end));
            events.push(Event::Closed(a));
            // Windows after an anomaly start afresh: its intervals are no
            // evidence of a new one.
            self.usable = self
                .usable
                .min(((self.last.unwrap_or(end) - end) / self.step + 1).max(0) as usize);
        }
    }

    pub(super) fn detect(&mut self, t: i64, observed: f64, events: &mut Vec<Event>) {
        let kind = self.open.as_ref().map(|a| a.kind);
        if kind == Some(AnomalyKind::Dark) {
            if observed > 0.0 {
                self.close(t, events);
            }
            return;
        }
        // A cautious detector may have learned an hour from a single burst:
        // ask for the square of the improbability.
        let cautious = if self.mode() == Mode::Ready { 1.0 } else { 2.0 };
        let dark_log_p = cautious * DARK_LOG_P / self.config.sensitivity;
        if self.zero.len >= self.min_len && self.zero.log_p <= dark_log_p {
            self.close(self.zero.start, events);
            self.usable = 0;
            let anomaly = Anomaly {
                kind: AnomalyKind::Dark,
                onset: secs_to_time(self.zero.start),
                start: secs_to_time(t),
                end: None,
                observed: 0,
                expected: self.zero.expected,
                severity: (-2.0 * self.zero.log_p).sqrt(),
            };
            events.push(Event::Opened(anomaly.clone()));
            self.open = Some(anomaly);
            return;
        }
        match kind {
            Some(k) => self.maybe_close(t, k, events),
            None => self.maybe_open(t, events),
        }
    }

    fn maybe_close(&mut self, t: i64, kind: AnomalyKind, events: &mut Vec<Event>) {
        if let Some(end) = self.pending_end {
            // Normal since `end`: the same anomaly again within the quiet
            // period continues it (a holiday is one drop, not ten).
            let since = ((t - end) / self.step + 1) as usize;
            let again = self
                .best_window(since.min(self.usable))
                .is_some_and(|b| b.kind == kind);
            if again {
                self.pending_end = None;
            } else if t + self.step - end >= self.quiet {
                self.close(end, events);
            }
            return;
        }
        if self.usable < self.close_len {
            return;
        }
        let (o, e) = self.window(self.close_len);
        let z = self.z(o, e);
        // Close to the expected count, and within the count noise of it:
        // far from the thresholds that opened it, so that it does not flap.
        let back = match kind {
            AnomalyKind::Spike => z < Z_CLOSE && o < e * CLOSE_SPIKE_RATIO,
            _ => z > -Z_CLOSE && o > e * CLOSE_DROP_RATIO,
        };
        if back {
            // It ended no earlier than the interval after the one that
            // opened it.
            let opened = self.open.as_ref().map_or(t, |a| a.start.timestamp());
            self.pending_end =
                Some((t - self.step * (self.close_len as i64 - 1)).max(opened + self.step));
        }
    }

    /// The strongest window of the newest `usable` intervals that passes
    /// every test of a spike or drop.
    fn best_window(&self, usable: usize) -> Option<Window> {
        if usable < self.min_len {
            return None;
        }
        // Sustained: each of the newest `min_len` intervals is at least
        // halfway to the ratio of a spike (or of a drop).
        let cap = self.ring.len();
        let high = (1.0 + self.config.spike_ratio) / 2.0;
        let low = (1.0 + self.config.drop_ratio) / 2.0;
        let side = |back: usize| {
            let s = self.ring[(self.head + cap - 1 - back) % cap];
            if s.observed >= s.expected * high {
                std::cmp::Ordering::Greater
            } else if s.observed <= s.expected * low {
                std::cmp::Ordering::Less
            } else {
                std::cmp::Ordering::Equal
            }
        };
        let above = (0..self.min_len).all(|b| side(b).is_gt());
        let below = (0..self.min_len).all(|b| side(b).is_lt());
        if !above && !below {
            return None;
        }
        let (z_spike, z_drop) = self.z_open();
        let mut best: Option<Window> = None;
        // Windows grow back from the newest interval: running sums.
        let (mut o, mut e) = self.window(self.min_len - 1);
        for len in self.min_len..=self.max_len.min(usable) {
            let slot = self.ring[(self.head + cap - len) % cap];
            o += slot.observed;
            e += slot.expected;
            let z = self.z(o, e);
            // The window starts inside the anomaly: its first interval is
            // on the anomaly's side too.
            let first = side(len - 1);
            let spike = above
                && first.is_gt()
                && z >= z_spike
                && o >= e * self.config.spike_ratio
                && o - e >= self.config.min_change;
            let drop = below
                && first.is_lt()
                && z <= -z_drop
                && o <= e * self.config.drop_ratio
                && e - o >= self.config.min_change
                && o > 0.0;
            if (spike || drop) && best.is_none_or(|b| z.abs() > b.z.abs()) {
                let kind = if spike {
                    AnomalyKind::Spike
                } else {
                    AnomalyKind::Drop
                };
                best = Some(Window {
                    kind,
                    z,
                    len,
                    observed: o,
                    expected: e,
                });
            }
        }
        best
    }

    fn maybe_open(&mut self, t: i64, events: &mut Vec<Event>) {
        if let Some(w) = self.best_window(self.usable) {
            let anomaly = Anomaly {
                kind: w.kind,
                onset: secs_to_time(t - self.step * (w.len as i64 - 1)),
                start: secs_to_time(t),
                end: None,
                observed: w.observed.round() as u64,
                expected: w.expected,
                severity: w.z.abs(),
            };
            events.push(Event::Opened(anomaly.clone()));
            self.open = Some(anomaly);
        }
    }
}
