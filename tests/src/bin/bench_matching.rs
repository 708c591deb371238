//! Matcher benchmark (BENCHMARKS.md): optimal (Kuhn–Munkres) vs greedy on random 200 × 200
//! batches of real offer costs (drivers and pickups scattered over 10 km), p50/p99 per solve,
//! and the greedy − optimal cost gap.
//!
//! `cargo run --release -p qc-tests --bin bench_matching -- [batches] [side]`

use std::time::Instant;

use qc_dispatch::matching::{cost, greedy, optimal, total, CostInput, CostMatrix};
use qc_geo::Point;

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let batches = args.first().copied().unwrap_or(200);
    let side = args.get(1).copied().unwrap_or(200);
    let centre = Point::new(-6.2, 106.84).unwrap();
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut unit = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x >> 11) as f64 / (1u64 << 53) as f64
    };
    let (mut t_opt, mut t_greedy, mut gaps) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..batches {
        let pickups: Vec<Point> = (0..side)
            .map(|_| centre.offset_km(unit() * 10.0 - 5.0, unit() * 10.0 - 5.0))
            .collect();
        let drivers: Vec<Point> = (0..side)
            .map(|_| centre.offset_km(unit() * 10.0 - 5.0, unit() * 10.0 - 5.0))
            .collect();
        let costs: CostMatrix = pickups
            .iter()
            .map(|p| {
                drivers
                    .iter()
                    .map(|d| {
                        Some(cost(&CostInput {
                            pickup: *p,
                            driver: *d,
                            driver_load: 0,
                            driver_max_load: 1,
                            priority: 1,
                            skipped_count: 0,
                        }))
                    })
                    .collect()
            })
            .collect();
        let t = Instant::now();
        let o = optimal(&costs);
        t_opt.push(t.elapsed().as_secs_f64() * 1000.0);
        let t = Instant::now();
        let g = greedy(&costs);
        t_greedy.push(t.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(o.len(), side);
        gaps.push((total(&g) - total(&o)) / total(&o).abs().max(1e-9));
    }
    let pct = |v: &mut Vec<f64>, q: f64| {
        v.sort_by(f64::total_cmp);
        v[((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1]
    };
    println!("{batches} batches of {side} x {side}:");
    println!(
        "  optimal  p50 {:.2} ms  p99 {:.2} ms",
        pct(&mut t_opt, 0.5),
        pct(&mut t_opt, 0.99)
    );
    println!(
        "  greedy   p50 {:.2} ms  p99 {:.2} ms",
        pct(&mut t_greedy, 0.5),
        pct(&mut t_greedy, 0.99)
    );
    println!(
        "  greedy costs more than optimal by: mean {:.1}%, p50 {:.1}%, max {:.1}%",
        gaps.iter().sum::<f64>() / gaps.len() as f64 * 100.0,
        pct(&mut gaps, 0.5) * 100.0,
        pct(&mut gaps, 1.0) * 100.0
    );
}
