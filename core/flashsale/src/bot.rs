//! The bot score (issue #15): a number in [0, 1] from what a user's recent requests look like —
//! their rate, how regular their timing is, how many device fingerprints they rotate through,
//! and how new the account is — with the weights and the blocking threshold in configuration.
//! Humans are slow and irregular on one phone with an old account; scripts are fast, regular,
//! rotate fingerprints and run on fresh accounts.

/// What the store saw of one user in the recent window.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Signals {
    /// Request times (ms) in the window, oldest first, this request included.
    pub times_ms: Vec<i64>,
    /// Distinct device fingerprints the user used in the window.
    pub devices: u32,
    /// Account age in days, when the gateway says (`None`: unknown, counts as neither).
    pub account_age_days: Option<f64>,
}

/// Weights of the four signals and the threshold at or above which a request is refused.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BotPolicy {
    pub w_rate: f64,
    pub w_regularity: f64,
    pub w_rotation: f64,
    pub w_new_account: f64,
    /// Requests per second counted as fully bot-like.
    pub rate_cap_per_s: f64,
    pub block_at: f64,
}

impl Default for BotPolicy {
    fn default() -> Self {
        Self {
            w_rate: 0.3,
            w_regularity: 0.3,
            w_rotation: 0.25,
            w_new_account: 0.15,
            rate_cap_per_s: 5.0,
            block_at: 0.6,
        }
    }
}

/// The per-signal parts and the score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Score {
    pub rate: f64,
    pub regularity: f64,
    pub rotation: f64,
    pub new_account: f64,
    pub score: f64,
}

/// Requests needed before timing regularity counts (fewer intervals say nothing).
pub const MIN_FOR_REGULARITY: usize = 6;

impl BotPolicy {
    pub fn score(&self, s: &Signals) -> Score {
        let n = s.times_ms.len();
        let span_s = match (s.times_ms.first(), s.times_ms.last()) {
            (Some(a), Some(b)) if b > a => (b - a) as f64 / 1000.0,
            _ => 0.0,
        };
        let rate = if n >= 3 && span_s > 0.0 {
            ((n - 1) as f64 / span_s / self.rate_cap_per_s).min(1.0)
        } else {
            0.0
        };
        // Coefficient of variation of the gaps: people are irregular (CV near 1), a loop is not.
        let regularity = if n >= MIN_FOR_REGULARITY {
            let gaps: Vec<f64> = s
                .times_ms
                .windows(2)
                .map(|w| (w[1] - w[0]) as f64)
                .collect();
            let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
            let var = gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / gaps.len() as f64;
            let cv = if mean > 0.0 { var.sqrt() / mean } else { 0.0 };
            (1.0 - cv / 0.5).clamp(0.0, 1.0)
        } else {
            0.0
        };
        let rotation = (f64::from(s.devices.saturating_sub(1)) / 3.0).min(1.0);
        let new_account = match s.account_age_days {
            Some(d) if d < 1.0 => 1.0,
            Some(d) if d < 7.0 => 0.5,
            _ => 0.0,
        };
        let score = self.w_rate * rate
            + self.w_regularity * regularity
            + self.w_rotation * rotation
            + self.w_new_account * new_account;
        Score {
            rate,
            regularity,
            rotation,
            new_account,
            score: score.clamp(0.0, 1.0),
        }
    }

    pub fn blocks(&self, s: &Signals) -> bool {
        self.score(s).score >= self.block_at
    }

    /// The weights are non-negative, sum to 1, and the threshold is in (0, 1].
    pub fn checked(self) -> Result<Self, String> {
        let w = [
            self.w_rate,
            self.w_regularity,
            self.w_rotation,
            self.w_new_account,
        ];
        if w.iter().any(|x| !(x.is_finite() && *x >= 0.0))
            || (w.iter().sum::<f64>() - 1.0).abs() > 1e-6
        {
            return Err(format!(
                "bot weights must be non-negative and sum to 1, got {w:?}"
            ));
        }
        let ok = self.block_at > 0.0 && self.block_at <= 1.0 && self.rate_cap_per_s > 0.0;
        if !ok {
            return Err("bot block threshold must be in (0, 1] and the rate cap positive".into());
        }
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every(ms: i64, n: usize, jitter: impl Fn(usize) -> i64) -> Vec<i64> {
        (0..n).map(|i| i as i64 * ms + jitter(i)).collect()
    }

    #[test]
    fn a_regular_fast_rotating_new_account_is_a_bot_and_a_person_is_not() {
        let p = BotPolicy::default();
        let bot = Signals {
            times_ms: every(100, 20, |_| 0),
            devices: 5,
            account_age_days: Some(0.2),
        };
        let s = p.score(&bot);
        assert!(s.score >= 0.95 && p.blocks(&bot), "{s:?}");
        // A person: a few taps seconds apart, irregular, one phone, an old account.
        let human = Signals {
            times_ms: vec![0, 2_300, 2_900, 7_800, 8_400, 15_000],
            devices: 1,
            account_age_days: Some(400.0),
        };
        let h = p.score(&human);
        assert!(h.score < 0.2 && !p.blocks(&human), "{h:?}");
        // A regular loop on one phone, slow and old: the timing alone does not block.
        let slow_loop = Signals {
            times_ms: every(2_000, 10, |_| 0),
            devices: 1,
            account_age_days: None,
        };
        let l = p.score(&slow_loop);
        assert!(
            (l.regularity - 1.0).abs() < 1e-9 && !p.blocks(&slow_loop),
            "{l:?}"
        );
        // Jitter hides regularity.
        let jittered = Signals {
            times_ms: every(100, 20, |i| [0, 80, 10, 95, 40][i % 5]),
            devices: 1,
            account_age_days: None,
        };
        assert!(p.score(&jittered).regularity < 0.5);
        assert!(BotPolicy { w_rate: 0.5, ..p }.checked().is_err());
        assert!(p.checked().is_ok());
    }
}
