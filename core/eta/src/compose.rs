//! The three components and their Gaussian composition (07 §5), deterministic: identical inputs
//! and filter state give identical output.

use qc_geo::{haversine_km, Point};

use crate::kalman::TrafficEstimate;

/// Base riding speed of the travel component, m/s (30 km/h).
pub const BASE_SPEED_MPS: f64 = 8.33;
pub const Z80: f64 = 0.8416;
pub const Z95: f64 = 1.6449;
/// Orders slower than this at p50 are flagged `over_sla`.
pub const SLA_S: f64 = 1800.0;

/// A component's mean and standard deviation, seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Part {
    pub mean: f64,
    pub sd: f64,
}

/// Picking: μ = 60 + 30N, σ = 10·√N·(1 + 0.3·max(N/10 − 1, 0)).
pub fn picking(items: u32) -> Part {
    let n = f64::from(items);
    let m = 1.0 + 0.3 * (n / 10.0 - 1.0).max(0.0);
    Part {
        mean: 60.0 + 30.0 * n,
        sd: 10.0 * n.sqrt() * m,
    }
}

/// Queue: μ = 2·max(Q / max(1.5·D, 1), 1), σ = μ.
pub fn queue(queue_depth: u32, drivers_avail: u32) -> Part {
    let mean = 2.0 * (f64::from(queue_depth) / (1.5 * f64::from(drivers_avail)).max(1.0)).max(1.0);
    Part { mean, sd: mean }
}

/// Straight-line base travel time hub → customer at 30 km/h, seconds.
pub fn base_travel_s(hub: Point, cust: Point) -> f64 {
    haversine_km(hub, cust) * 1000.0 / BASE_SPEED_MPS
}

/// Travel: base × m̂, σ = μ·s.
pub fn travel(base_s: f64, t: TrafficEstimate) -> Part {
    let mean = base_s * t.multiplier;
    Part {
        mean,
        sd: mean * t.s2.sqrt(),
    }
}

/// p50 = Σμ; σ_T = √Σσ²; the stated quantiles under the Gaussian assumption.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Composed {
    pub p50: f64,
    pub sigma: f64,
    pub p80: f64,
    pub p95: f64,
}

pub fn compose(parts: &[Part]) -> Composed {
    let p50: f64 = parts.iter().map(|p| p.mean).sum();
    let sigma = parts.iter().map(|p| p.sd * p.sd).sum::<f64>().sqrt();
    Composed {
        p50,
        sigma,
        p80: p50 + Z80 * sigma,
        p95: p50 + Z95 * sigma,
    }
}

/// `~{s}s`, `~{m}m {s}s` (`~{m}m`), `~{h}h {m}m` (`~{h}h`), truncating.
pub fn formatted(p50_s: f64) -> String {
    let total = p50_s.max(0.0) as u64;
    let (h, m, s) = (total / 3600, total % 3600 / 60, total % 60);
    match (h, m, s) {
        (0, 0, s) => format!("~{s}s"),
        (0, m, 0) => format!("~{m}m"),
        (0, m, s) => format!("~{m}m {s}s"),
        (h, 0, _) => format!("~{h}h"),
        (h, m, _) => format!("~{h}h {m}m"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worked_example() {
        // 07 §5: N 5, Q 3, D 5, hub -6.2/106.816666, cust -6.25/106.85, no filter data.
        let hub = Point::new(-6.2, 106.816666).unwrap();
        let cust = Point::new(-6.25, 106.85).unwrap();
        let base = base_travel_s(hub, cust);
        assert!((base * BASE_SPEED_MPS - 6669.93).abs() < 0.01, "{base}");
        let c = compose(&[
            picking(5),
            queue(3, 5),
            travel(base, TrafficEstimate::PRIOR),
        ]);
        let r2 = |x: f64| (x * 100.0).round() / 100.0;
        assert_eq!(
            (r2(c.p50), r2(c.p80), r2(c.p95)),
            (1012.71, 1256.42, 1489.03)
        );
        assert_eq!(formatted(c.p50), "~16m 52s");
    }

    #[test]
    fn formats() {
        assert_eq!(formatted(59.9), "~59s");
        assert_eq!(formatted(120.0), "~2m");
        assert_eq!(formatted(3600.0), "~1h");
        assert_eq!(formatted(3725.0), "~1h 2m");
        assert_eq!(queue(0, 0).mean, 2.0);
        assert_eq!(queue(30, 4).mean, 10.0);
        assert!((picking(20).sd - 10.0 * 20f64.sqrt() * 1.3).abs() < 1e-9);
    }
}
