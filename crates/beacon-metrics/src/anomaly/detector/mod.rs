//! [`Detector`]: one series, fed interval by interval.

mod judge;

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};

use super::baseline::Baseline;
use super::stats::Noise;
use super::{Anomaly, AnomalyError, AnomalyKind, DetectorConfig, Event, Mode};

/// Width, in seconds, of the windows the noise model learns from (30 min).
const NOISE_WINDOW: i64 = 1800;
/// Half-life of the noise model, in seconds (two weeks).
const NOISE_HALF_LIFE: i64 = 14 * 86_400;
/// History before the detector opens anything, and before it stops being
/// cautious, in seconds.
const LEARNING: i64 = 86_400;
const CAUTIOUS: i64 = 14 * 86_400;

/// Whether an interval may teach the baseline, decided once it is older
/// than the longest evidence window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Taint {
    #[default]
    Clean,
    /// Part of a spike or drop: learned only within one standard deviation.
    Anomaly,
    /// Part of a dark period: not learned at all.
    Dark,
}

#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    t: i64,
    observed: f64,
    expected: f64,
    taint: Taint,
}

#[derive(Debug, Clone, Copy, Default)]
struct ZeroRun {
    start: i64,
    len: usize,
    expected: f64,
    log_p: f64,
}

/// Anomaly detector of one series of counts per interval.
///
/// Feed it every interval in time order, each once it is complete: the
/// count with [`observe`](Self::observe), or [`gap`](Self::gap) when the
/// count is unknown (Beacon could not see the traffic). It learns the
/// series' weekly rhythm and noise as it goes (and from
/// [`warm`](Self::warm)ed history), and reports anomalies as they open and
/// close. Memory is fixed at construction (a few kilobytes).
#[derive(Debug, Clone)]
pub struct Detector {
    config: DetectorConfig,
    step: i64,
    min_len: usize,
    max_len: usize,
    close_len: usize,
    noise_len: usize,
    baseline: Baseline,
    noise: Noise,
    /// The latest intervals, oldest first from `head` once full; an
    /// interval is learned when it leaves, so that an anomaly found within
    /// the longest window never taught the baseline its first intervals.
    ring: Box<[Slot]>,
    head: usize,
    filled: usize,
    usable: usize,
    first: Option<i64>,
    last: Option<i64>,
    learned: u64,
    gaps: u64,
    zero: ZeroRun,
    open: Option<Anomaly>,
    /// Start of the normal run that will end the open spike or drop if it
    /// lasts the quiet period.
    pending_end: Option<i64>,
    quiet: i64,
}

fn secs_to_time(t: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(t, 0)
        .single()
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

impl Detector {
    /// A detector with no history (it starts in [`Mode::Learning`]).
    pub fn new(config: DetectorConfig) -> Result<Self, AnomalyError> {
        let step = config.step_secs()?;
        let min_len = config.intervals(config.min_duration, step);
        let max_len = config.intervals(config.max_window, step).max(min_len);
        let close_len = config.intervals(config.close_after, step);
        let noise_len = ((NOISE_WINDOW / step).max(1)) as usize;
        let cap = max_len.max(close_len) + noise_len;
        Ok(Self {
            step,
            min_len,
            max_len,
            close_len,
            noise_len,
            baseline: Baseline::new(step),
            noise: Noise::new((NOISE_HALF_LIFE / step) as f64),
            ring: vec![Slot::default(); cap].into_boxed_slice(),
            head: 0,
            filled: 0,
            usable: 0,
            first: None,
            last: None,
            learned: 0,
            gaps: 0,
            zero: ZeroRun::default(),
            open: None,
            pending_end: None,
            quiet: (config.quiet_after.as_secs() as i64).max(step),
            config,
        })
    }

    /// The configuration it was built with.
    pub fn config(&self) -> &DetectorConfig {
        &self.config
    }

    /// History learned so far (intervals counted or warmed, gaps excluded).
    pub fn history(&self) -> Duration {
        Duration::from_secs(self.learned * self.step as u64)
    }

    /// How much it trusts its baseline, from [`history`](Self::history).
    pub fn mode(&self) -> Mode {
        let secs = self.learned as i64 * self.step;
        if secs < LEARNING {
            Mode::Learning
        } else if secs < CAUTIOUS {
            Mode::Cautious
        } else {
            Mode::Ready
        }
    }

    /// The open anomaly, if any (at most one per series).
    pub fn open(&self) -> Option<&Anomaly> {
        self.open.as_ref()
    }

    /// The noise model learned so far: `(clustering, baseline_error)`, where
    /// a window expecting `E` events varies by about
    /// `sqrt(clustering * E + (baseline_error * E)^2)`.
    pub fn noise(&self) -> (f64, f64) {
        (self.noise.d(), self.noise.c2().sqrt())
    }

    /// Observed and expected events over the newest intervals covering
    /// `span` (fewer after a gap or an anomaly's end); `None` when there
    /// are none.
    pub fn recent(&self, span: Duration) -> Option<(f64, f64)> {
        let len = self.config.intervals(span, self.step).min(self.usable);
        (len > 0).then(|| self.window(len))
    }

    /// Intervals recorded as gaps so far.
    pub fn gaps(&self) -> u64 {
        self.gaps
    }

    /// Expected count of the interval starting at `t`, if known.
    pub fn expected(&self, t: DateTime<Utc>) -> Option<f64> {
        self.baseline.expected(t.timestamp())
    }

    /// Approximate bytes this detector occupies.
    pub fn memory_bytes(&self) -> usize {
        std::mem::size_of::<Self>() - std::mem::size_of::<Baseline>()
            + self.baseline.memory_bytes()
            + self.ring.len() * std::mem::size_of::<Slot>()
    }

    /// Checks that `t` is the next interval or later, and records skipped
    /// intervals as a gap. Returns `t` in seconds.
    fn advance(&mut self, t: DateTime<Utc>) -> Result<i64, AnomalyError> {
        let secs = t.timestamp();
        if let Some(first) = self.first {
            if (secs - first).rem_euclid(self.step) != 0 || t.timestamp_subsec_nanos() != 0 {
                return Err(AnomalyError::Misaligned(t));
            }
        } else {
            if t.timestamp_subsec_nanos() != 0 {
                return Err(AnomalyError::Misaligned(t));
            }
            self.first = Some(secs);
        }
        if let Some(last) = self.last {
            if secs <= last {
                return Err(AnomalyError::OutOfOrder {
                    at: t,
                    last: secs_to_time(last),
                });
            }
            if secs > last + self.step {
                self.gaps += ((secs - last) / self.step - 1) as u64;
                self.break_windows();
            }
        }
        self.last = Some(secs);
        Ok(secs)
    }

    fn break_windows(&mut self) {
        self.usable = 0;
        self.zero = ZeroRun::default();
    }

    /// Records that the count of the interval starting at `t` is unknown:
    /// windows restart after it, nothing opens or closes, nothing is learned.
    pub fn gap(&mut self, t: DateTime<Utc>) -> Result<(), AnomalyError> {
        self.advance(t)?;
        self.gaps += 1;
        self.break_windows();
        Ok(())
    }

    /// Feeds the count of the complete interval starting at `t`; returns the
    /// anomalies it closed and opened there, in that order.
    pub fn observe(&mut self, t: DateTime<Utc>, count: u64) -> Result<Vec<Event>, AnomalyError> {
        let secs = self.advance(t)?;
        Ok(self.step_in(secs, count as f64, true))
    }

    /// Learns from history before any [`observe`](Self::observe): `counts[i]`
    /// is the count of the bucket of `width` starting at
    /// `start + i * width`, `None` where unknown. `width` is a whole number
    /// of steps (e.g. the 15-minute rollups for a 5-minute step): a wider
    /// bucket's count is spread evenly over its steps. Opens nothing.
    pub fn warm(
        &mut self,
        start: DateTime<Utc>,
        width: Duration,
        counts: &[Option<u64>],
    ) -> Result<(), AnomalyError> {
        let w = width.as_secs() as i64;
        if width.subsec_nanos() != 0 || w < self.step || w % self.step != 0 {
            return Err(AnomalyError::BadHistoryWidth);
        }
        let k = (w / self.step) as usize;
        for (i, count) in counts.iter().enumerate() {
            let t0 = start + chrono::Duration::seconds(w * i as i64);
            match count {
                None => {
                    for j in 0..k {
                        self.gap(t0 + chrono::Duration::seconds(self.step * j as i64))?;
                    }
                }
                Some(c) if k == 1 => {
                    let secs = self.advance(t0)?;
                    self.step_in(secs, *c as f64, false);
                }
                Some(c) => self.warm_coarse(t0, k, *c as f64)?,
            }
        }
        Ok(())
    }

    fn warm_coarse(&mut self, t0: DateTime<Utc>, k: usize, count: f64) -> Result<(), AnomalyError> {
        let share = count / k as f64;
        let mut expected = Some(0.0);
        for j in 0..k {
            let secs = self.advance(t0 + chrono::Duration::seconds(self.step * j as i64))?;
            let mu = self.baseline.expected(secs);
            expected = expected.zip(mu).map(|(a, b)| a + b);
            let x = match mu {
                Some(mu) => self.clip(share, mu, 4.0),
                None => share,
            };
            self.baseline.learn(secs, x);
            self.learned += 1;
        }
        if let Some(e) = expected {
            self.noise.learn(count, e);
        }
        // Coarse history says nothing about the last few intervals' order.
        self.break_windows();
        Ok(())
    }

    fn clip(&self, x: f64, mu: f64, sds: f64) -> f64 {
        if self.mode() == Mode::Learning {
            return x;
        }
        // At least the spread of a count of one, so that a baseline near
        // zero can still learn that traffic arrived.
        let sd = self.noise.variance(mu.max(1.0)).sqrt();
        x.clamp((mu - sds * sd).max(0.0), mu + sds * sd)
    }

    fn push(&mut self, t: i64, observed: f64, expected: f64) {
        let cap = self.ring.len();
        if self.filled == cap {
            self.learn_oldest();
        }
        self.ring[self.head] = Slot {
            t,
            observed,
            expected,
            taint: Taint::Clean,
        };
        self.head = (self.head + 1) % cap;
        self.filled = (self.filled + 1).min(cap);
        self.usable = (self.usable + 1).min(cap);
    }

    /// Learns the oldest interval of the full ring. Nothing from a dark
    /// period (it says nothing about the traffic), little from a spike or
    /// drop (a lasting change still becomes the new normal, slowly),
    /// robustly otherwise.
    fn learn_oldest(&mut self) {
        let cap = self.ring.len();
        let s = self.ring[self.head];
        match s.taint {
            Taint::Dark => return,
            Taint::Anomaly => {
                let x = self.clip(s.observed, s.expected, 1.0);
                self.baseline.learn(s.t, x);
                return;
            }
            Taint::Clean => {
                let x = self.clip(s.observed, s.expected, 4.0);
                self.baseline.learn(s.t, x);
            }
        }
        // The noise model learns from the clean window this interval starts.
        let (mut o, mut e) = (0.0, 0.0);
        for k in 0..self.noise_len {
            let next = self.ring[(self.head + k) % cap];
            if next.taint != Taint::Clean || next.t != s.t + self.step * k as i64 {
                return;
            }
            o += next.observed;
            e += next.expected;
        }
        self.noise.learn(o, e);
    }

    /// Marks the intervals of the open anomaly, from its onset.
    fn taint_open(&mut self) {
        let Some((onset, kind)) = self.open.as_ref().map(|a| (a.onset.timestamp(), a.kind)) else {
            return;
        };
        let taint = if kind == AnomalyKind::Dark {
            Taint::Dark
        } else {
            Taint::Anomaly
        };
        let cap = self.ring.len();
        for back in 0..self.filled {
            let slot = &mut self.ring[(self.head + cap - 1 - back) % cap];
            if slot.t < onset {
                break;
            }
            slot.taint = taint;
        }
    }

    /// Sum of the newest `len` slots.
    fn window(&self, len: usize) -> (f64, f64) {
        let cap = self.ring.len();
        (0..len).fold((0.0, 0.0), |(o, e), back| {
            let s = self.ring[(self.head + cap - 1 - back) % cap];
            (o + s.observed, e + s.expected)
        })
    }

    fn step_in(&mut self, t: i64, observed: f64, detect: bool) -> Vec<Event> {
        let mut events = Vec::new();
        let Some(mu) = self.baseline.expected(t) else {
            self.baseline.learn(t, observed);
            self.learned += 1;
            self.break_windows();
            return events;
        };
        self.push(t, observed, mu);
        self.track_zero_run(t, observed, mu);
        if detect && self.mode() != Mode::Learning {
            self.detect(t, observed, &mut events);
        }
        self.taint_open();
        self.learned += 1;
        events
    }
}
