//! The ETA-accuracy regression gate (10 §6, issue #5): fixed scenarios and seeds under
//! `scenarios/regression/`, their ETA metrics compared with the committed baseline
//! `reports/baselines/eta_accuracy.json` within stated tolerances. `sim eta-gate` runs it (exit 1
//! on a regression); `sim eta-gate --bless` rewrites the baseline on purpose.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::eta::EtaInfo;
use crate::run::{run, RunOptions};
use crate::scenario::Scenario;

pub const BASELINE: &str = "reports/baselines/eta_accuracy.json";
pub const SCENARIOS: &[&str] = &[
    "scenarios/regression/lunch.toml",
    "scenarios/regression/rain.toml",
];

/// What may move before the gate fails.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tolerances {
    /// MAE may exceed the baseline's by at most this fraction.
    pub mae_rel: f64,
    /// Absolute bands for each coverage.
    pub coverage_p50: (f64, f64),
    pub coverage_p80: (f64, f64),
    pub coverage_p95: (f64, f64),
    /// MAE must stay at least this fraction below the naive predictor's (same run).
    pub min_improvement_vs_naive: f64,
    /// After a traffic shift, the median learned multiplier of slowed segments must be within
    /// 10 % of the true one from this observation on.
    pub shift_max_observations: u32,
    /// The share of orders whose shown ETA moved ≥ 2 min after placement may not exceed this.
    #[serde(default = "d_max_revision_rate")]
    pub max_revision_rate: f64,
    /// ... nor the baseline's by more than this (absolute).
    #[serde(default = "d_revision_rate_abs")]
    pub revision_rate_abs: f64,
}

fn d_max_revision_rate() -> f64 {
    0.05
}
fn d_revision_rate_abs() -> f64 {
    0.02
}

impl Default for Tolerances {
    fn default() -> Self {
        Self {
            mae_rel: 0.05,
            coverage_p50: (0.45, 0.55),
            coverage_p80: (0.77, 0.83),
            coverage_p95: (0.93, 0.97),
            min_improvement_vs_naive: 0.20,
            shift_max_observations: 3,
            max_revision_rate: d_max_revision_rate(),
            revision_rate_abs: d_revision_rate_abs(),
        }
    }
}

/// One scenario's accepted figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub seed: u64,
    pub orders: u64,
    pub mae_s: f64,
    pub bias_s: f64,
    pub naive_mae_s: f64,
    pub mae_improvement_vs_naive: f64,
    pub coverage_p50: f64,
    pub coverage_p80: f64,
    pub coverage_p95: f64,
    #[serde(default)]
    pub revision_rate: f64,
    pub shift_observations_to_10pct: Option<u32>,
}

impl Entry {
    pub fn of(seed: u64, m: &EtaInfo) -> Self {
        Self {
            seed,
            orders: m.orders,
            mae_s: m.mae_s,
            bias_s: m.bias_s,
            naive_mae_s: m.naive_mae_s,
            mae_improvement_vs_naive: m.mae_improvement_vs_naive,
            coverage_p50: m.coverage_p50,
            coverage_p80: m.coverage_p80,
            coverage_p95: m.coverage_p95,
            revision_rate: m.revision_rate,
            shift_observations_to_10pct: m.shift.as_ref().and_then(|s| s.observations_to_10pct),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    pub tolerances: Tolerances,
    /// By scenario name.
    pub scenarios: BTreeMap<String, Entry>,
}

/// Every way `got` regresses against `base` (empty when it passes), each naming the metric,
/// the value, the baseline and the tolerance.
pub fn check(name: &str, got: &EtaInfo, base: &Baseline) -> Vec<String> {
    let t = &base.tolerances;
    let mut out = Vec::new();
    let Some(b) = base.scenarios.get(name) else {
        return vec![format!(
            "{name}: no baseline entry (run `sim eta-gate --bless` to record one)"
        )];
    };
    let limit = b.mae_s * (1.0 + t.mae_rel);
    if got.mae_s > limit {
        out.push(format!(
            "{name}: mae_s {:.1} exceeds the baseline {:.1} by more than the tolerance {:.0}% (limit {:.1})",
            got.mae_s,
            b.mae_s,
            t.mae_rel * 100.0,
            limit
        ));
    }
    for (metric, v, (lo, hi), was) in [
        (
            "coverage_p50",
            got.coverage_p50,
            t.coverage_p50,
            b.coverage_p50,
        ),
        (
            "coverage_p80",
            got.coverage_p80,
            t.coverage_p80,
            b.coverage_p80,
        ),
        (
            "coverage_p95",
            got.coverage_p95,
            t.coverage_p95,
            b.coverage_p95,
        ),
    ] {
        if !(lo..=hi).contains(&v) {
            out.push(format!(
                "{name}: {metric} {v:.3} is outside the tolerance band [{lo}, {hi}] (baseline {was:.3})"
            ));
        }
    }
    let revision_limit = t
        .max_revision_rate
        .min(b.revision_rate + t.revision_rate_abs);
    if got.revision_rate > revision_limit {
        out.push(format!(
            "{name}: revision_rate {:.3} exceeds the limit {revision_limit:.3} (tolerance: at most \
             {:.2}, and at most {:.2} above the baseline {:.3})",
            got.revision_rate, t.max_revision_rate, t.revision_rate_abs, b.revision_rate
        ));
    }
    if got.mae_improvement_vs_naive < t.min_improvement_vs_naive {
        out.push(format!(
            "{name}: mae_improvement_vs_naive {:.3} is below the tolerance {:.2} (baseline {:.3}; MAE {:.1} s vs naive {:.1} s)",
            got.mae_improvement_vs_naive,
            t.min_improvement_vs_naive,
            b.mae_improvement_vs_naive,
            got.mae_s,
            got.naive_mae_s
        ));
    }
    if b.shift_observations_to_10pct.is_some() {
        let k = got.shift.as_ref().and_then(|s| s.observations_to_10pct);
        let baseline = b.shift_observations_to_10pct.unwrap_or(0);
        match k {
            None => out.push(format!(
                "{name}: shift_observations_to_10pct: the learned multiplier never came within 10% \
                 of the true one (tolerance: by observation {}; baseline {baseline})",
                t.shift_max_observations
            )),
            Some(k) if k > t.shift_max_observations => out.push(format!(
                "{name}: shift_observations_to_10pct {k} exceeds the tolerance {} (baseline {baseline})",
                t.shift_max_observations
            )),
            Some(_) => {}
        }
    }
    out
}

/// One regression scenario's ETA figures (memory backend), with `--set` style overrides.
pub fn measure(
    root: &Path,
    scenario: &str,
    overrides: &[String],
) -> Result<(String, u64, EtaInfo), String> {
    let path = root.join(scenario);
    let sc = Scenario::load(&path, overrides).map_err(|e| format!("{}: {e}", path.display()))?;
    let out = run(&sc, &RunOptions::default()).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok((sc.scenario.name.clone(), sc.scenario.seed, out.summary.eta))
}

pub fn load_baseline(root: &Path) -> Result<Baseline, String> {
    let path = root.join(BASELINE);
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// The figures as a table (what the gate and the test print).
pub fn table(rows: &[(String, EtaInfo)]) -> String {
    let mut s = String::from(
        "scenario        orders    MAE s   naive s  vs naive   bias s    p50    p80    p95  revised  shift k\n",
    );
    for (name, m) in rows {
        s.push_str(&format!(
            "{name:<14} {:>7} {:>8.1} {:>9.1} {:>8.1}% {:>8.1} {:>6.3} {:>6.3} {:>6.3} {:>7.1}%  {}\n",
            m.orders,
            m.mae_s,
            m.naive_mae_s,
            m.mae_improvement_vs_naive * 100.0,
            m.bias_s,
            m.coverage_p50,
            m.coverage_p80,
            m.coverage_p95,
            m.revision_rate * 100.0,
            m.shift
                .as_ref()
                .and_then(|s| s.observations_to_10pct)
                .map_or("-".to_string(), |k| k.to_string())
        ));
    }
    s
}

/// Runs every regression scenario and checks it; Ok(report) when all pass, Err(report with
/// the violations) otherwise. With `bless`, writes the figures as the new baseline instead.
pub fn gate(root: &Path, bless: bool) -> Result<String, String> {
    let mut rows = Vec::new();
    let mut entries = BTreeMap::new();
    for sc in SCENARIOS {
        let (name, seed, m) = measure(root, sc, &[])?;
        entries.insert(name.clone(), Entry::of(seed, &m));
        rows.push((name, m));
    }
    let report = table(&rows);
    if bless {
        let tolerances = load_baseline(root)
            .map(|b| b.tolerances)
            .unwrap_or_default();
        let base = Baseline {
            tolerances,
            scenarios: entries,
        };
        let path = root.join(BASELINE);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        let text = serde_json::to_string_pretty(&base).map_err(|e| e.to_string())? + "\n";
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
        return Ok(format!("{report}baseline written to {}", path.display()));
    }
    let base = load_baseline(root)?;
    let violations: Vec<String> = rows
        .iter()
        .flat_map(|(name, m)| check(name, m, &base))
        .collect();
    if violations.is_empty() {
        Ok(report)
    } else {
        Err(format!("{report}{}", violations.join("\n")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> EtaInfo {
        EtaInfo {
            orders: 1000,
            mae_s: 100.0,
            naive_mae_s: 150.0,
            mae_improvement_vs_naive: 0.33,
            coverage_p50: 0.5,
            coverage_p80: 0.8,
            coverage_p95: 0.95,
            ..EtaInfo::default()
        }
    }

    #[test]
    fn each_rule_names_metric_baseline_and_tolerance() {
        let base = Baseline {
            tolerances: Tolerances::default(),
            scenarios: BTreeMap::from([("s".to_string(), Entry::of(1, &info()))]),
        };
        assert!(check("s", &info(), &base).is_empty());
        let mut worse = info();
        worse.mae_s = 105.1;
        worse.coverage_p95 = 0.92;
        worse.mae_improvement_vs_naive = 0.1;
        let v = check("s", &worse, &base);
        assert_eq!(v.len(), 3, "{v:?}");
        assert!(
            v[0].contains("mae_s 105.1") && v[0].contains("baseline 100.0") && v[0].contains("5%")
        );
        assert!(
            v[1].contains("coverage_p95 0.920")
                && v[1].contains("[0.93, 0.97]")
                && v[1].contains("baseline 0.950")
        );
        assert!(v[2].contains("mae_improvement_vs_naive"));
        let mut ok = info();
        ok.mae_s = 105.0;
        assert!(
            check("s", &ok, &base).is_empty(),
            "exactly at the tolerance passes"
        );
        assert!(check("other", &info(), &base)[0].contains("no baseline entry"));
    }
}
