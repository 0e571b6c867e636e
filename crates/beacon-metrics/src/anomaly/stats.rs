//! Count statistics: how surprising a window's count is, and the noise model
//! learned from the series' own residuals.

/// Signed root of the Poisson deviance of `observed` against `expected`:
/// close to a standard normal deviate for counts of any size, with the
/// skew of small counts (3 instead of 1 is much less surprising than 1
/// instead of 3).
pub(crate) fn deviance_root(observed: f64, expected: f64) -> f64 {
    let e = expected.max(1e-9);
    let o = observed.max(0.0);
    let dev = if o > 0.0 {
        2.0 * (o * (o / e).ln() - (o - e))
    } else {
        2.0 * e
    };
    let r = dev.max(0.0).sqrt();
    if o >= e {
        r
    } else {
        -r
    }
}

/// The variance of a window's count as `d * E + c2 * E^2`: `d` is the
/// clustering of page views (a visitor views several pages, so counts vary
/// more than a Poisson count of the same mean), `c2` the squared relative
/// error of the baseline itself (days differ, the rhythm drifts).
///
/// Both are fitted by weighted least squares of `(O - E)^2 / E` on `E` over
/// recent windows, with exponential forgetting, and shrunk towards a
/// conservative prior while few windows were seen.
#[derive(Debug, Clone)]
pub(crate) struct Noise {
    decay: f64,
    n: f64,
    sw: f64,
    swx: f64,
    swy: f64,
    swxx: f64,
    swxy: f64,
    d: f64,
    c2: f64,
}

/// Prior clustering: two to three page views per visit.
const D0: f64 = 3.0;
/// Prior baseline error: 15% either way.
const C2_0: f64 = 0.15 * 0.15;
/// Windows of evidence the prior is worth.
const PRIOR_N: f64 = 600.0;

impl Noise {
    /// A model that forgets with a half-life of `half_life` samples.
    pub(crate) fn new(half_life: f64) -> Self {
        Self {
            decay: 0.5f64.powf(1.0 / half_life.max(1.0)),
            n: 0.0,
            sw: 0.0,
            swx: 0.0,
            swy: 0.0,
            swxx: 0.0,
            swxy: 0.0,
            d: D0,
            c2: C2_0,
        }
    }

    /// Clustering factor (at least 1).
    pub(crate) fn d(&self) -> f64 {
        self.d
    }

    /// Squared relative baseline error.
    pub(crate) fn c2(&self) -> f64 {
        self.c2
    }

    /// Variance of a window with `expected` events.
    pub(crate) fn variance(&self, expected: f64) -> f64 {
        self.d * expected + self.c2 * expected * expected
    }

    /// Learns from one normal window.
    pub(crate) fn learn(&mut self, observed: f64, expected: f64) {
        if expected < 0.05 {
            return;
        }
        let x = expected;
        let ratio = self.d + self.c2 * x;
        // One extreme window (a bot, a burst) must not make the model deaf:
        // cap its weight in the fit.
        let y = ((observed - x).powi(2) / x).min(25.0 * ratio);
        let w = 1.0 / (ratio * ratio);
        let k = self.decay;
        self.n = self.n * k + 1.0;
        self.sw = self.sw * k + w;
        self.swx = self.swx * k + w * x;
        self.swy = self.swy * k + w * y;
        self.swxx = self.swxx * k + w * x * x;
        self.swxy = self.swxy * k + w * x * y;
        self.refit();
    }

    fn refit(&mut self) {
        if self.sw <= 0.0 {
            return;
        }
        let mx = self.swx / self.sw;
        let my = self.swy / self.sw;
        let vxx = self.swxx / self.sw - mx * mx;
        let vxy = self.swxy / self.sw - mx * my;
        // The slope is only identified when the expected counts vary enough
        // (the daily rhythm does that); else keep the prior's.
        let slope = if vxx > (0.1 * mx).powi(2) && vxx > 1e-9 {
            vxy / vxx
        } else {
            C2_0
        };
        let slope = slope.clamp(0.0, 1.0);
        let intercept = (my - slope * mx).clamp(1.0, 30.0);
        let trust = self.n / (self.n + PRIOR_N);
        self.d = trust * intercept + (1.0 - trust) * D0;
        // The baseline error never counts as smaller than 3%: days differ.
        self.c2 = (trust * slope + (1.0 - trust) * C2_0).max(0.03 * 0.03);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn deviance_root_is_zero_at_the_expectation_and_signed() {
        assert!(deviance_root(10.0, 10.0).abs() < 1e-12);
        assert!(deviance_root(20.0, 10.0) > 2.5);
        assert!(deviance_root(3.0, 10.0) < -2.5);
        assert!((deviance_root(0.0, 8.0) + 4.0).abs() < 1e-12);
    }

    #[test]
    fn small_counts_are_less_surprising_upwards_than_a_normal_guess() {
        // 4 events where 1 was expected: a naive z-score says 3 sigma.
        let r = deviance_root(4.0, 1.0);
        assert!(r < 2.5 && r > 2.0, "{r}");
    }

    #[test]
    fn noise_learns_clustering_from_compound_counts() {
        let mut noise = Noise::new(5000.0);
        // Deterministic residuals whose mean square is 4 * E: clustering 4.
        for i in 0..20_000 {
            let e = 2.0 + (i % 10) as f64;
            let sign = if i % 2 == 0 { 1.0 } else { -1.0 };
            noise.learn(e + sign * (4.0 * e).sqrt(), e);
        }
        assert!((noise.d() - 4.0).abs() < 0.3, "d = {}", noise.d());
        assert!(noise.c2() < 0.01, "c2 = {}", noise.c2());
    }
}
