//! The expected count of an interval: a weekly profile (weekday x time of
//! day) backed by a daily one while weeks are few, times a level that
//! follows slow growth and unusual days.

const WEEK: i64 = 7 * 86_400;
const DAY: i64 = 86_400;

/// Weeks the weekly profile remembers (its samples' effective count).
const WEEK_MEMORY: f64 = 4.0;
/// Days the daily profile remembers.
const DAY_MEMORY: f64 = 14.0;
/// Weeks of samples at which a weekly bin and the pooled estimate weigh
/// the same.
const WEEK_SHRINK: f64 = 3.0;
/// Half-life of the level, in seconds: slow enough that a holiday does not
/// make the next ordinary day look like a spike.
const LEVEL_HALF_LIFE: f64 = 3.0 * 86_400.0;
/// Half-life of the day's own level, in seconds: days differ by several
/// percent, and a few hours tell which kind of day today is.
const DAY_LEVEL_HALF_LIFE: f64 = 3.0 * 3600.0;
/// How far the day's level may stray from the slow level: far enough for
/// an ordinary busy or quiet day, not so far that it absorbs a drop.
const DAY_LEVEL_RANGE: f64 = 1.6;
/// Events the level's prior (1.0) is worth: small series keep level 1.
const LEVEL_PRIOR: f64 = 30.0;

#[derive(Debug, Clone, Copy, Default)]
struct Bin {
    mean: f32,
    n: f32,
}

impl Bin {
    fn learn(&mut self, x: f64, cap: f64) {
        let n = (f64::from(self.n) + 1.0).min(cap);
        let mean = f64::from(self.mean);
        self.mean = (mean + (x - mean) / n) as f32;
        self.n = n as f32;
    }
}

/// Seasonal baseline of one series.
#[derive(Debug, Clone)]
pub(crate) struct Baseline {
    step: i64,
    bin: i64,
    week: Box<[Bin]>,
    day: Box<[Bin]>,
    week_cap: f64,
    day_cap: f64,
    level_decay: f64,
    level_obs: f64,
    level_exp: f64,
    day_decay: f64,
    day_obs: f64,
    day_exp: f64,
}

impl Baseline {
    /// A baseline for intervals of `step` seconds (`step` divides a day).
    pub(crate) fn new(step: i64) -> Self {
        // Hour-wide bins (or one interval when the step is longer): fine
        // enough for the daily rhythm, coarse enough that every bin gets
        // several samples a week.
        let bin = step.max(3600);
        let per_day = (DAY / bin).max(1) as usize;
        let samples_per_bin = (bin / step) as f64;
        Self {
            step,
            bin,
            week: vec![Bin::default(); per_day * 7].into_boxed_slice(),
            day: vec![Bin::default(); per_day].into_boxed_slice(),
            week_cap: WEEK_MEMORY * samples_per_bin,
            day_cap: DAY_MEMORY * samples_per_bin,
            level_decay: 0.5f64.powf(step as f64 / LEVEL_HALF_LIFE),
            level_obs: 0.0,
            level_exp: 0.0,
            day_decay: 0.5f64.powf(step as f64 / DAY_LEVEL_HALF_LIFE),
            day_obs: 0.0,
            day_exp: 0.0,
        }
    }

    /// Approximate heap and inline bytes.
    pub(crate) fn memory_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + (self.week.len() + self.day.len()) * std::mem::size_of::<Bin>()
    }

    /// The profile's estimate for the bin `i` of the week, if it has any:
    /// the weekly bin, shrunk towards the daily shape times the weekday's
    /// level. The latter pools seven times the samples, so it is steadier;
    /// the weekly bin keeps what is particular to one weekday's hours.
    fn profile_at(&self, i: usize) -> Option<f64> {
        let per_day = self.day.len();
        let w = self.week[i];
        let d = self.day[i % per_day];
        if w.n == 0.0 && d.n == 0.0 {
            return None;
        }
        if d.n == 0.0 {
            return Some(f64::from(w.mean));
        }
        let pooled = f64::from(d.mean) * self.weekday_factor(i / per_day);
        if w.n == 0.0 {
            return Some(pooled);
        }
        let weeks = f64::from(w.n) * self.step as f64 / self.bin as f64;
        let trust = weeks / (weeks + WEEK_SHRINK);
        Some(trust * f64::from(w.mean) + (1.0 - trust) * pooled)
    }

    /// Traffic of weekday `day` relative to the average day, 1 until every
    /// bin of that day has been seen.
    fn weekday_factor(&self, day: usize) -> f64 {
        let per_day = self.day.len();
        let bins = &self.week[day * per_day..(day + 1) * per_day];
        if per_day == 1 || bins.iter().any(|b| b.n == 0.0) {
            return 1.0;
        }
        let week: f64 = bins.iter().map(|b| f64::from(b.mean)).sum();
        let all: f64 = self.day.iter().map(|b| f64::from(b.mean)).sum();
        if all > 0.0 {
            (week / all).clamp(0.2, 5.0)
        } else {
            1.0
        }
    }

    fn bin_of(&self, t: i64) -> usize {
        (t.rem_euclid(WEEK) / self.bin) as usize
    }

    /// Expected count of the interval starting at `t` before the level,
    /// interpolated between neighbouring bins; `None` before any history.
    fn profile(&self, t: i64) -> Option<f64> {
        let bins = self.week.len();
        if bins == 7 || self.bin == self.step {
            return self.profile_at(self.bin_of(t));
        }
        // Position of the interval's middle, in bins, from the first bin's
        // middle.
        let mid = (t + self.step / 2).rem_euclid(WEEK) as f64;
        let pos = mid / self.bin as f64 - 0.5;
        let lo = pos.floor();
        let frac = pos - lo;
        let i0 = (lo as i64).rem_euclid(bins as i64) as usize;
        let i1 = (i0 + 1) % bins;
        match (self.profile_at(i0), self.profile_at(i1)) {
            (Some(a), Some(b)) => Some(a + (b - a) * frac),
            (a, b) => a.or(b),
        }
    }

    /// The level: recent counts over the profile's, near 1 unless growth or
    /// an unusual day moved the traffic.
    pub(crate) fn level(&self) -> f64 {
        let slow =
            ((self.level_obs + LEVEL_PRIOR) / (self.level_exp + LEVEL_PRIOR)).clamp(0.25, 4.0);
        let today = (self.day_obs + LEVEL_PRIOR) / (self.day_exp + LEVEL_PRIOR);
        today.clamp(slow / DAY_LEVEL_RANGE, slow * DAY_LEVEL_RANGE)
    }

    /// Expected count of the interval starting at `t` (Unix seconds).
    pub(crate) fn expected(&self, t: i64) -> Option<f64> {
        self.profile(t).map(|p| p * self.level())
    }

    /// Learns the count `x` of the interval starting at `t`.
    pub(crate) fn learn(&mut self, t: i64, x: f64) {
        if let Some(p) = self.profile(t) {
            self.level_obs = self.level_obs * self.level_decay + x;
            self.level_exp = self.level_exp * self.level_decay + p;
            self.day_obs = self.day_obs * self.day_decay + x;
            self.day_exp = self.day_exp * self.day_decay + p;
        }
        let i = self.bin_of(t);
        let day_len = self.day.len();
        self.week[i].learn(x, self.week_cap);
        self.day[i % day_len].learn(x, self.day_cap);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_baseline_without_history_expects_nothing_known() {
        assert_eq!(Baseline::new(300).expected(0), None);
    }

    #[test]
    fn the_baseline_learns_the_daily_rhythm() {
        let mut b = Baseline::new(300);
        // Three weeks: 10 per interval from 08:00 to 20:00, 1 otherwise.
        let rate = |t: i64| {
            if (8..20).contains(&(t.rem_euclid(DAY) / 3600)) {
                10.0
            } else {
                1.0
            }
        };
        let mut t = 0;
        while t < 3 * WEEK {
            b.learn(t, rate(t));
            t += 300;
        }
        let noon = 3 * WEEK + 12 * 3600;
        let night = 3 * WEEK + 3 * 3600;
        assert!((b.expected(noon).unwrap() - 10.0).abs() < 0.2);
        assert!((b.expected(night).unwrap() - 1.0).abs() < 0.1);
    }

    #[test]
    fn the_level_follows_a_lasting_rise() {
        let mut b = Baseline::new(300);
        let mut t = 0;
        while t < 2 * WEEK {
            b.learn(t, 100.0);
            t += 300;
        }
        let end = t + 2 * 86_400;
        while t < end {
            b.learn(t, 130.0);
            t += 300;
        }
        let e = b.expected(t).unwrap();
        assert!(e > 125.0 && e < 135.0, "{e}");
    }
}
