//! Offer cost and matching (06 §5): greedy, and optimal by Kuhn–Munkres on the same matrix.
//! The optimal matcher is guarded so it can neither panic (the smaller side is always the rows,
//! costs are finite integers that cannot overflow) nor loop (no infinities or NaN), and falls
//! back to greedy past its size budget; the budget is a size, not a clock, so results stay
//! deterministic.

use std::cmp::Ordering;

use pathfinding::prelude::{kuhn_munkres_min, Matrix};
use qc_geo::{haversine_km, Point};
use serde::Serialize;

/// Inputs to one (order, driver) cost.
#[derive(Debug, Clone, Copy)]
pub struct CostInput {
    /// Pickup point (the hub), else the delivery location.
    pub pickup: Point,
    pub driver: Point,
    pub driver_load: u32,
    pub driver_max_load: u32,
    /// 1..=9 (clamped).
    pub priority: u8,
    pub skipped_count: u32,
}

/// Lower is better (06 §5, weights 0.3, 0.3, 0.2, 0.1, 0.1).
pub fn cost(c: &CostInput) -> f64 {
    let d_km = haversine_km(c.driver, c.pickup);
    let eta_s = d_km * 1000.0 / 8.33;
    let priority = f64::from(c.priority.clamp(1, 9));
    0.3 * (d_km / 10.0).min(1.0)
        + 0.3 * (eta_s / 1200.0).min(1.0)
        + 0.2 * f64::from(c.driver_load) / f64::from(c.driver_max_load.max(1))
        + 0.1 * (-0.125 * (priority - 1.0))
        + 0.1 * -(0.1 * f64::from(c.skipped_count)).min(0.5)
}

/// One chosen (order, driver) pair.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Assignment {
    pub order: usize,
    pub driver: usize,
    pub cost: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Matcher {
    Greedy,
    Optimal,
}

/// `costs[o][d]`; `None` = not allowed (e.g. the driver is excluded from that order).
pub type CostMatrix = Vec<Vec<Option<f64>>>;

/// Repeatedly takes the cheapest remaining pair; ties go to the earlier order (its index, as
/// orders are given oldest first), then the smaller driver index.
pub fn greedy(costs: &CostMatrix) -> Vec<Assignment> {
    let mut pairs: Vec<Assignment> = costs
        .iter()
        .enumerate()
        .flat_map(|(o, row)| {
            row.iter().enumerate().filter_map(move |(d, c)| {
                c.filter(|c| c.is_finite()).map(|cost| Assignment {
                    order: o,
                    driver: d,
                    cost,
                })
            })
        })
        .collect();
    pairs.sort_by(|a, b| {
        a.cost
            .total_cmp(&b.cost)
            .then(a.order.cmp(&b.order))
            .then(a.driver.cmp(&b.driver))
    });
    let (mut used_o, mut used_d) = (
        vec![false; costs.len()],
        vec![false; costs.first().map_or(0, Vec::len)],
    );
    let mut out = Vec::new();
    for p in pairs {
        if !used_o[p.order] && !used_d[p.driver] {
            used_o[p.order] = true;
            used_d[p.driver] = true;
            out.push(p);
        }
    }
    out.sort_by_key(|a| a.order);
    out
}

/// Larger than any real cost: marks a forbidden pair inside the solver.
const FORBIDDEN: i64 = 1_000_000_000;
/// Costs become integers in millionths; real costs lie within about [-0.2, 0.8].
const SCALE: f64 = 1_000_000.0;
/// The largest side the optimal matcher takes (O(n³)); beyond it, greedy. 200 × 200 solves in
/// a few ms (BENCHMARKS.md); batches are at most 50 orders.
pub const OPTIMAL_MAX_SIDE: usize = 250;

fn to_units(c: Option<f64>) -> i64 {
    match c {
        Some(c) if c.is_finite() => {
            ((c * SCALE).round() as i64).clamp(-FORBIDDEN + 1, FORBIDDEN - 1)
        }
        _ => FORBIDDEN,
    }
}

/// Minimum total cost among matchings of maximum size that use only allowed pairs. Greedy
/// when a side exceeds `OPTIMAL_MAX_SIDE`.
pub fn optimal(costs: &CostMatrix) -> Vec<Assignment> {
    let (n_o, n_d) = (costs.len(), costs.first().map_or(0, Vec::len));
    if n_o == 0 || n_d == 0 {
        return Vec::new();
    }
    if n_o.max(n_d) > OPTIMAL_MAX_SIDE {
        return greedy(costs);
    }
    // Rows must not outnumber columns: put the smaller side on the rows.
    let transpose = n_o > n_d;
    let (rows, cols) = if transpose { (n_d, n_o) } else { (n_o, n_d) };
    let at = |r: usize, c: usize| if transpose { costs[c][r] } else { costs[r][c] };
    let mut values = Vec::with_capacity(rows * cols);
    for r in 0..rows {
        for c in 0..cols {
            values.push(to_units(at(r, c)));
        }
    }
    let matrix = Matrix::from_vec(rows, cols, values).expect("rows * cols values");
    let (_, cols_for_rows) = kuhn_munkres_min(&matrix);
    let mut out: Vec<Assignment> = cols_for_rows
        .iter()
        .enumerate()
        .filter_map(|(r, &c)| {
            let (o, d) = if transpose { (c, r) } else { (r, c) };
            costs[o][d]
                .filter(|x| x.is_finite())
                .map(|cost| Assignment {
                    order: o,
                    driver: d,
                    cost,
                })
        })
        .collect();
    out.sort_by_key(|a| a.order);
    out
}

/// Σ cost of a matching.
pub fn total(m: &[Assignment]) -> f64 {
    m.iter().map(|a| a.cost).sum()
}

/// Orders the better of two matchings first: more pairs, then lower total cost.
pub fn compare(a: &[Assignment], b: &[Assignment]) -> Ordering {
    b.len().cmp(&a.len()).then(total(a).total_cmp(&total(b)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn m(rows: &[&[f64]]) -> CostMatrix {
        rows.iter()
            .map(|r| r.iter().map(|c| Some(*c)).collect())
            .collect()
    }

    #[test]
    fn the_reference_counterexample() {
        // 06 §9.6: X–A 1, X–B 2, Y–A 2, Y–B 5 km → greedy 6, optimal 4.
        let costs = m(&[&[1.0, 2.0], &[2.0, 5.0]]);
        assert_eq!(total(&greedy(&costs)), 6.0);
        assert_eq!(total(&optimal(&costs)), 4.0);
    }

    #[test]
    fn rectangular_and_forbidden_pairs() {
        // More orders than drivers (transposed inside), and a forbidden pair.
        let costs: CostMatrix = vec![vec![Some(0.5)], vec![None], vec![Some(0.1)]];
        let o = optimal(&costs);
        assert_eq!(
            o,
            vec![Assignment {
                order: 2,
                driver: 0,
                cost: 0.1
            }]
        );
        // Only forbidden pairs: nothing is assigned, nothing panics.
        let none: CostMatrix = vec![vec![None, None], vec![None, Some(f64::NAN)]];
        assert!(optimal(&none).is_empty() && greedy(&none).is_empty());
        assert!(optimal(&vec![]).is_empty());
        assert!(optimal(&vec![vec![]]).is_empty());
    }

    #[test]
    fn extreme_costs_neither_panic_nor_loop() {
        let costs: CostMatrix = vec![
            vec![Some(f64::INFINITY), Some(1e300)],
            vec![Some(-1e300), Some(f64::NEG_INFINITY)],
        ];
        let o = optimal(&costs);
        assert!(o.iter().all(|a| a.cost.is_finite()));
    }

    #[test]
    fn cost_follows_the_formula() {
        let p = Point::new(-6.2, 106.84).unwrap();
        let base = CostInput {
            pickup: p,
            driver: p,
            driver_load: 0,
            driver_max_load: 1,
            priority: 1,
            skipped_count: 0,
        };
        assert_eq!(cost(&base), 0.0);
        let far = CostInput {
            driver: p.offset_km(0.0, 20.0),
            ..base
        };
        assert!(
            (cost(&far) - 0.6).abs() < 1e-9,
            "distance and eta terms saturate at 0.3 each"
        );
        let urgent = CostInput {
            priority: 99,
            ..base
        };
        assert!((cost(&urgent) + 0.1).abs() < 1e-9, "priority clamps at 9");
        let skipped = CostInput {
            skipped_count: 50,
            ..base
        };
        assert!(
            (cost(&skipped) + 0.05).abs() < 1e-9,
            "fairness bonus capped"
        );
    }

    proptest! {
        /// Optimal is never worse than greedy, both are valid matchings of maximum size.
        #[test]
        fn optimal_never_loses_to_greedy(n_o in 1usize..8, n_d in 1usize..8, seed in any::<u64>()) {
            let mut x = seed | 1;
            let mut next = || { x ^= x << 13; x ^= x >> 7; x ^= x << 17; x };
            let costs: CostMatrix = (0..n_o).map(|_| (0..n_d).map(|_| {
                let v = next();
                (v % 10 != 0).then(|| (v % 1000) as f64 / 1000.0)
            }).collect()).collect();
            let (g, o) = (greedy(&costs), optimal(&costs));
            for m in [&g, &o] {
                let mut os: Vec<usize> = m.iter().map(|a| a.order).collect();
                let mut ds: Vec<usize> = m.iter().map(|a| a.driver).collect();
                os.dedup(); ds.sort(); ds.dedup();
                prop_assert_eq!(os.len(), m.len());
                prop_assert_eq!(ds.len(), m.len());
                prop_assert!(m.iter().all(|a| costs[a.order][a.driver].is_some()));
            }
            prop_assert!(o.len() >= g.len());
            if o.len() == g.len() {
                prop_assert!(total(&o) <= total(&g) + 1e-9);
            }
        }
    }
}
