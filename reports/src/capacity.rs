//! The capacity report of a sweep (10-simulator §5): each SLO metric against the varied
//! parameter with its mean and 95% confidence band over replications, the SLO line and the
//! recommended value; two varied keys give a heat map of the SLO margin. The typed summary here
//! is what `sweep.json` holds, so the simulator writes it and this page reads it.

use serde::{Deserialize, Serialize};

use crate::charts;
use crate::{esc, ReportError};

/// `sweep.json`: a function of the scenario, the grid and the runs' results only (no timings,
/// thread counts or shards), so a sharded sweep merges into the same bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepSummary {
    pub scenario: String,
    /// The scenario's seed; replication k of every grid point runs with `seeds[k]`.
    pub seed: u64,
    pub seeds: Vec<u64>,
    /// Identifies the sweep (scenario text, overrides, grid, replications).
    pub fingerprint: String,
    pub replications: u32,
    /// The varied keys, in `--vary` order.
    pub keys: Vec<String>,
    /// Every grid point, in grid order (the last key varies fastest).
    pub points: Vec<PointSummary>,
    /// One varied key: the smallest value whose bands meet every SLO (none if no value does).
    pub recommended: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PointSummary {
    /// The value of each varied key.
    pub values: Vec<f64>,
    pub metrics: Vec<MetricBand>,
    /// Every metric's band is within its SLO, and every run's invariants held.
    pub meets: bool,
    pub invariants_ok: bool,
}

/// One SLO metric at one grid point over the replications. Every SLO is an upper bound
/// (actual ≤ target), so the band meets it when its upper end does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricBand {
    pub name: String,
    pub target: f64,
    pub mean: f64,
    pub lo: f64,
    pub hi: f64,
    pub n: u32,
    pub meets: bool,
}

impl MetricBand {
    /// Mean and 95% Student-t band of `samples` against `target`.
    pub fn of(name: &str, target: f64, samples: &[f64]) -> Self {
        let (mean, half) = mean_and_half_width(samples);
        let hi = mean + half;
        Self {
            name: name.to_string(),
            target,
            mean,
            lo: mean - half,
            hi,
            n: samples.len() as u32,
            meets: hi <= target,
        }
    }

    /// How far the band's upper end is below the target, as a share of the target (negative:
    /// the SLO is missed).
    pub fn margin(&self) -> f64 {
        if self.target > 0.0 {
            (self.target - self.hi) / self.target
        } else if self.hi <= 0.0 {
            0.0
        } else {
            -1.0
        }
    }
}

/// The sample mean and the half-width of its two-sided 95% confidence interval (Student t with
/// n − 1 degrees of freedom). One sample has no spread to estimate: its band is infinitely wide.
pub fn mean_and_half_width(samples: &[f64]) -> (f64, f64) {
    let n = samples.len();
    if n == 0 {
        return (f64::NAN, f64::INFINITY);
    }
    let mean = samples.iter().sum::<f64>() / n as f64;
    if n == 1 {
        return (mean, f64::INFINITY);
    }
    let var = samples.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    (mean, t975(n - 1) * (var / n as f64).sqrt())
}

/// The 97.5% quantile of Student's t with `df` degrees of freedom: a table to 30, then the
/// Cornish-Fisher expansion around the normal (error < 1e-4 beyond 30).
pub fn t975(df: usize) -> f64 {
    const TABLE: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
        2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
        2.052, 2.048, 2.045, 2.042,
    ];
    if df == 0 {
        return f64::INFINITY;
    }
    if df <= 30 {
        return TABLE[df - 1];
    }
    let (z, v): (f64, f64) = (1.959_964, df as f64);
    z + (z.powi(3) + z) / (4.0 * v)
        + (5.0 * z.powi(5) + 16.0 * z.powi(3) + 3.0 * z) / (96.0 * v * v)
}

/// Renders `capacity.html` (self-contained: inline SVG, no network).
pub fn capacity_html(s: &SweepSummary) -> Result<String, ReportError> {
    let mut body = String::new();
    body += &format!(
        "<h1>Capacity: {}</h1><p>{} grid point(s) × {} replication(s); seeds {:?} (the same for \
         every grid point: common random numbers). Bands are 95% Student-t intervals of the mean \
         over replications; a value meets an SLO when the band's upper end is within it.</p>",
        esc(&s.scenario),
        s.points.len(),
        s.replications,
        s.seeds
    );
    body += &match (s.keys.len(), s.recommended) {
        (1, Some(v)) => format!(
            "<p class=\"rec\" id=\"recommended\">Recommended <b>{} = {v}</b>: the smallest value \
             whose bands meet every SLO.</p>",
            esc(&s.keys[0])
        ),
        (1, None) => "<p class=\"rec miss\" id=\"recommended\">No value in the grid meets every \
                      SLO: widen the range.</p>"
            .to_string(),
        _ => String::new(),
    };
    if s.keys.len() == 1 {
        let names: Vec<&str> = s
            .points
            .first()
            .map(|p| p.metrics.iter().map(|m| m.name.as_str()).collect())
            .unwrap_or_default();
        for (i, name) in names.iter().enumerate() {
            let rows: Vec<(f64, f64, f64, f64)> = s
                .points
                .iter()
                .map(|p| {
                    let m = &p.metrics[i];
                    // An infinite band (one replication) is drawn as the mean alone.
                    let (lo, hi) = if m.hi.is_finite() {
                        (m.lo, m.hi)
                    } else {
                        (m.mean, m.mean)
                    };
                    (p.values[0], m.mean, lo, hi)
                })
                .collect();
            let target = s.points[0].metrics[i].target;
            body += "<div class=\"chart band\">";
            body += &charts::band(name, &s.keys[0], name, &rows, target, s.recommended)?;
            body += "</div>";
        }
    } else if s.keys.len() == 2 {
        body += &heat_map(s);
    }
    body += &table(s);
    Ok(format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Capacity: {}</title><style>\
         body{{font-family:sans-serif;margin:24px;color:#222}} table{{border-collapse:collapse}} \
         td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}} .rec{{font-size:1.2em}} \
         .miss{{color:#b00}} .no{{color:#b00}}</style></head><body>{body}</body></html>",
        esc(&s.scenario)
    ))
}

/// Two varied keys: the worst SLO margin of each grid point, green where every band meets.
fn heat_map(s: &SweepSummary) -> String {
    let mut xs: Vec<f64> = s.points.iter().map(|p| p.values[0]).collect();
    let mut ys: Vec<f64> = s.points.iter().map(|p| p.values[1]).collect();
    for v in [&mut xs, &mut ys] {
        v.sort_by(f64::total_cmp);
        v.dedup();
    }
    let (cw, ch, left, top) = (80.0, 36.0, 120.0, 40.0);
    let w = left + cw * xs.len() as f64 + 20.0;
    let h = top + ch * ys.len() as f64 + 50.0;
    let mut svg = format!(
        "<svg id=\"heatmap\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\">\
         <text x=\"{left}\" y=\"20\" font-size=\"16\">worst SLO margin (share of target; green \
         meets every SLO)</text>"
    );
    for p in &s.points {
        let xi = xs.iter().position(|x| *x == p.values[0]).unwrap_or(0) as f64;
        let yi = ys.iter().position(|y| *y == p.values[1]).unwrap_or(0) as f64;
        let margin = p
            .metrics
            .iter()
            .map(MetricBand::margin)
            .fold(f64::INFINITY, f64::min);
        let strength = margin.abs().min(1.0);
        let fill = if p.meets {
            format!("rgba(44,160,44,{:.2})", 0.25 + 0.75 * strength)
        } else {
            format!("rgba(214,39,40,{:.2})", 0.25 + 0.75 * strength)
        };
        let (x, y) = (left + xi * cw, top + yi * ch);
        svg += &format!(
            "<rect x=\"{x}\" y=\"{y}\" width=\"{cw}\" height=\"{ch}\" fill=\"{fill}\" \
             stroke=\"#fff\"/><text x=\"{}\" y=\"{}\" font-size=\"12\" \
             text-anchor=\"middle\">{:+.0}%</text>",
            x + cw / 2.0,
            y + ch / 2.0 + 4.0,
            margin * 100.0
        );
    }
    for (i, x) in xs.iter().enumerate() {
        svg += &format!(
            "<text x=\"{}\" y=\"{}\" font-size=\"12\" text-anchor=\"middle\">{x}</text>",
            left + cw * (i as f64 + 0.5),
            top + ch * ys.len() as f64 + 16.0
        );
    }
    for (i, y) in ys.iter().enumerate() {
        svg += &format!(
            "<text x=\"{}\" y=\"{}\" font-size=\"12\" text-anchor=\"end\">{y}</text>",
            left - 8.0,
            top + ch * (i as f64 + 0.5) + 4.0
        );
    }
    svg += &format!(
        "<text x=\"{}\" y=\"{}\" font-size=\"13\" text-anchor=\"middle\">{}</text>\
         <text x=\"10\" y=\"{}\" font-size=\"13\">{}</text></svg>",
        left + cw * xs.len() as f64 / 2.0,
        top + ch * ys.len() as f64 + 38.0,
        esc(&s.keys[0]),
        top - 6.0,
        esc(&s.keys[1])
    );
    svg
}

/// Every grid point with each metric's mean [lo, hi] against its target.
fn table(s: &SweepSummary) -> String {
    let mut t = String::from("<h2>Grid</h2><table id=\"grid\"><tr>");
    for k in &s.keys {
        t += &format!("<th>{}</th>", esc(k));
    }
    if let Some(p) = s.points.first() {
        for m in &p.metrics {
            t += &format!("<th>{} (≤ {})</th>", esc(&m.name), m.target);
        }
    }
    t += "<th>meets</th></tr>";
    for p in &s.points {
        t += "<tr>";
        for v in &p.values {
            t += &format!("<td>{v}</td>");
        }
        for m in &p.metrics {
            let cls = if m.meets { "" } else { " class=\"no\"" };
            t += &format!("<td{cls}>{:.3} [{:.3}, {:.3}]</td>", m.mean, m.lo, m.hi);
        }
        t += &format!("<td>{}</td></tr>", if p.meets { "yes" } else { "no" });
    }
    t + "</table>"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn student_t_band() {
        // Samples 1..=5: mean 3, s = √2.5, half-width t(4)·s/√5 = 2.776 · 0.7071.
        let (m, h) = mean_and_half_width(&[1.0, 2.0, 3.0, 4.0, 5.0]);
        assert_eq!(m, 3.0);
        assert!((h - 2.776 * (2.5f64 / 5.0).sqrt()).abs() < 1e-9);
        assert!((t975(1000) - 1.9623).abs() < 1e-3);
        assert!(t975(31) < t975(30) && t975(31) > 2.03);
        assert!(mean_and_half_width(&[4.0]).1.is_infinite());
    }

    #[test]
    fn band_meets_only_when_its_upper_end_does() {
        let m = MetricBand::of("x", 10.0, &[8.0, 9.0, 10.0]);
        assert!(m.mean < 10.0 && m.hi > 10.0 && !m.meets);
        assert!(MetricBand::of("x", 10.0, &[8.0, 8.1, 7.9]).meets);
    }
}
