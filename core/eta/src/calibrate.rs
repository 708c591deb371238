//! Calibration beyond the spec (07 §9.2): split-conformal quantiles of the normalised residual
//! r = (actual − p50) / σ_T observed on delivered orders, per hub and hour band, so the stated
//! p50/p80/p95 hold their coverage when the Gaussian composition is biased or mis-shaped. Each
//! key keeps a sliding window of recent scores; a key with too few scores falls back to the
//! hub's scores, then to every hub's, then to the uncalibrated composition (the cold-start prior).

#[cfg(test)]
use std::collections::{BTreeMap, VecDeque};

/// Scores kept per key (recent ones win: traffic and load drift through the day).
pub const WINDOW: usize = 400;
/// Scores a key needs before its quantiles are used.
pub const MIN_SCORES: usize = 40;
/// The stated levels.
pub const LEVELS: [f64; 3] = [0.5, 0.8, 0.95];
/// Step of each adaptive level (adaptive conformal inference, Gibbs & Candès 2021). The p50
/// level stays put: moving it trades MAE for p50 coverage, and its plain conformal median holds.
pub const ACI_GAMMA: [f64; 3] = [0.0, 0.01, 0.01];
/// Bounds of an adaptive level.
pub const ACI_BOUNDS: (f64, f64) = (0.01, 0.999);

/// The levels a hub's quantiles are read at, adapted to its observed misses: after each
/// delivery, level += γ·(miss − (1 − stated)). Sliding-window conformal alone over-covers when
/// slow orders come in bursts (a burst inflates the window's tail for the next few hundred
/// orders); this keeps the long-run coverage at the stated level under such drift.
pub fn adapt(levels: [f64; 3], missed: [bool; 3]) -> [f64; 3] {
    let mut out = levels;
    for i in 0..3 {
        let miss = if missed[i] { 1.0 } else { 0.0 };
        out[i] = (levels[i] + ACI_GAMMA[i] * (miss - (1.0 - LEVELS[i])))
            .clamp(ACI_BOUNDS.0, ACI_BOUNDS.1);
    }
    out
}

/// 4-hour bands of the local hour: 0..=5.
pub fn hour_band(hour: u32) -> u8 {
    (hour.min(23) / 4) as u8
}

/// Where a prediction's quantiles came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    HubBand,
    Hub,
    Global,
    /// Too few scores anywhere: the Gaussian composition as is.
    Prior,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::HubBand => "hub_band",
            Source::Hub => "hub",
            Source::Global => "global",
            Source::Prior => "prior",
        }
    }
}

/// Residual quantiles in units of σ_T at the stated levels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Offsets {
    pub q50: f64,
    pub q80: f64,
    pub q95: f64,
}

impl Offsets {
    /// The Gaussian composition's own offsets.
    pub const GAUSSIAN: Offsets = Offsets {
        q50: 0.0,
        q80: crate::compose::Z80,
        q95: crate::compose::Z95,
    };

    /// Keeps calibration within [`MAX_SHIFT`] of the model's own quantiles and strictly
    /// ordered ([`MIN_GAP`] apart), whatever the score windows hold: one hub's odd data, or a
    /// burst of impossible observations, can move a promise only so far.
    pub fn bounded(self) -> Offsets {
        let g = Offsets::GAUSSIAN;
        let clamp = |q: f64, model: f64, (down, up): (f64, f64)| {
            if q.is_finite() {
                q.clamp(model - down, model + up)
            } else {
                model
            }
        };
        let q50 = clamp(self.q50, g.q50, MAX_SHIFT[0]);
        let q80 = clamp(self.q80, g.q80, MAX_SHIFT[1]).max(q50 + MIN_GAP);
        let q95 = clamp(self.q95, g.q95, MAX_SHIFT[2]).max(q80 + MIN_GAP);
        Offsets { q50, q80, q95 }
    }
}

/// How far (down, up), in σ_T, calibration may move p50, p80 and p95 from the Gaussian
/// composition's. The median moves least: it is the promise.
pub const MAX_SHIFT: [(f64, f64); 3] = [(1.5, 2.0), (1.5, 3.0), (1.5, 4.0)];
/// The least distance between consecutive stated quantiles, in σ_T.
pub const MIN_GAP: f64 = 0.05;

/// The split-conformal quantile at level `q`: the ⌈(n + 1)·q⌉-th smallest score (the largest
/// when that rank exceeds n). `scores` need not be sorted.
pub fn conformal_quantile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let n = sorted.len();
    let rank = (((n + 1) as f64) * q).ceil() as usize;
    Some(sorted[rank.clamp(1, n) - 1])
}

/// Offsets from a window of scores read at `levels`, or None below [`MIN_SCORES`].
pub fn offsets(scores: &[f64], levels: [f64; 3]) -> Option<Offsets> {
    if scores.len() < MIN_SCORES {
        return None;
    }
    let mut s: Vec<f64> = scores.iter().copied().filter(|x| x.is_finite()).collect();
    s.sort_by(f64::total_cmp);
    Some(Offsets {
        q50: conformal_quantile(&s, levels[0])?,
        q80: conformal_quantile(&s, levels[1])?,
        q95: conformal_quantile(&s, levels[2])?,
    })
}

/// The most specific offsets with enough scores among (hub and band, hub, every hub).
pub fn pick(band: &[f64], hub: &[f64], all: &[f64], levels: [f64; 3]) -> (Offsets, Source) {
    if let Some(o) = offsets(band, levels) {
        return (o, Source::HubBand);
    }
    if let Some(o) = offsets(hub, levels) {
        return (o, Source::Hub);
    }
    if let Some(o) = offsets(all, levels) {
        return (o, Source::Global);
    }
    (Offsets::GAUSSIAN, Source::Prior)
}

/// In-process score windows: the reference the stores' windows are tested against (the
/// simulator and the service both go through an [`crate::EtaStore`]).
#[cfg(test)]
#[derive(Debug, Clone, Default)]
pub struct Calibrator {
    by_band: BTreeMap<(String, u8), VecDeque<f64>>,
    by_hub: BTreeMap<String, VecDeque<f64>>,
    all: VecDeque<f64>,
    levels: BTreeMap<String, [f64; 3]>,
}

#[cfg(test)]
fn push(w: &mut VecDeque<f64>, x: f64) {
    if w.len() == WINDOW {
        w.pop_front();
    }
    w.push_back(x);
}

#[cfg(test)]
impl Calibrator {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records the residual of one delivered order.
    pub fn observe(&mut self, hub: &str, band: u8, score: f64) {
        if !score.is_finite() {
            return;
        }
        push(
            self.by_band.entry((hub.to_string(), band)).or_default(),
            score,
        );
        push(self.by_hub.entry(hub.to_string()).or_default(), score);
        push(&mut self.all, score);
    }

    /// Adapts the hub's levels to whether a delivered order beat its p50, p80, p95.
    pub fn outcome(&mut self, hub: &str, missed: [bool; 3]) {
        let l = self.levels.entry(hub.to_string()).or_insert(LEVELS);
        *l = adapt(*l, missed);
    }

    /// The hub's current levels.
    pub fn levels(&self, hub: &str) -> [f64; 3] {
        self.levels.get(hub).copied().unwrap_or(LEVELS)
    }

    /// The most specific offsets with enough scores.
    pub fn offsets(&self, hub: &str, band: u8) -> (Offsets, Source) {
        let v = |w: Option<&VecDeque<f64>>| -> Vec<f64> {
            w.map(|w| w.iter().copied().collect()).unwrap_or_default()
        };
        pick(
            &v(self.by_band.get(&(hub.to_string(), band))),
            &v(self.by_hub.get(hub)),
            &v(Some(&self.all)),
            self.levels(hub),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_adapt_to_misses() {
        let l = adapt(LEVELS, [true, false, true]);
        assert_eq!(l[0], 0.5, "the median does not adapt");
        assert!((l[1] - (0.8 - ACI_GAMMA[1] * 0.2)).abs() < 1e-12);
        assert!((l[2] - (0.95 + ACI_GAMMA[2] * 0.95)).abs() < 1e-12);
        let mut c = Calibrator::new();
        for _ in 0..2000 {
            c.outcome("h", [false; 3]);
        }
        assert_eq!(c.levels("h"), [0.5, ACI_BOUNDS.0, ACI_BOUNDS.0]);
        assert_eq!(c.levels("other"), LEVELS);
    }

    #[test]
    fn conformal_ranks() {
        let s: Vec<f64> = (1..=9).map(f64::from).collect();
        assert_eq!(conformal_quantile(&s, 0.5), Some(5.0));
        assert_eq!(conformal_quantile(&s, 0.8), Some(8.0));
        assert_eq!(
            conformal_quantile(&s, 0.95),
            Some(9.0),
            "rank 10 > n: the largest"
        );
        assert_eq!(conformal_quantile(&[], 0.5), None);
    }

    /// Skewed residuals (exponential, not Gaussian): over many calibration windows the
    /// calibrated offsets cover fresh draws at the stated rates (the conformal guarantee is
    /// on average over windows); the Gaussian offsets do not.
    #[test]
    fn coverage_holds_on_skewed_residuals() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut draw = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let u = (x >> 11) as f64 / (1u64 << 53) as f64;
            -(1.0 - u).ln() - 0.3
        };
        let (rounds, fresh_n) = (60, 2000);
        let mut covered = [0usize; 3];
        let mut cal = Calibrator::new();
        for _ in 0..rounds {
            cal = Calibrator::new();
            for _ in 0..WINDOW {
                cal.observe("h", 3, draw());
            }
            let (o, src) = cal.offsets("h", 3);
            assert_eq!(src, Source::HubBand);
            for _ in 0..fresh_n {
                let r = draw();
                for (i, q) in [o.q50, o.q80, o.q95].into_iter().enumerate() {
                    covered[i] += usize::from(r <= q);
                }
            }
        }
        for (i, level) in LEVELS.into_iter().enumerate() {
            let c = covered[i] as f64 / (rounds * fresh_n) as f64;
            assert!((c - level).abs() < 0.01, "{level}: {c}");
        }
        let gaussian_p50 = (0..fresh_n)
            .filter(|_| draw() <= Offsets::GAUSSIAN.q50)
            .count();
        assert!(
            (gaussian_p50 as f64 / fresh_n as f64 - 0.5).abs() > 0.1,
            "the Gaussian p50 is off here"
        );
        assert_eq!(cal.offsets("other", 3).1, Source::Global);
        assert_eq!(
            Calibrator::new().offsets("h", 0),
            (Offsets::GAUSSIAN, Source::Prior)
        );
    }
}
