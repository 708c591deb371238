//! ETA in the twin (07-eta through `qc-eta`): every paid order gets its ETA at placement from the
//! same components, traffic filter and calibration the service runs, with the hub's live queue
//! and idle riders; Dispatch's re-estimate after the rider accepts is measured as a revision;
//! each delivery feeds the segment's traffic filter (the trip's DELIVERING → COMPLETED time, as
//! Dispatch observes it) and the calibration windows (the order's paid → delivered time). So the
//! twin runs the learning loop and measures how well the stated percentiles hold.

use std::collections::BTreeMap;

use qc_eta::calibrate::hour_band;
use qc_eta::compose::base_travel_s;
use qc_eta::engine::MIN_EXPECTED_S;
use qc_eta::kalman::{self, KfState, TrafficEstimate};
use qc_eta::model::segment;
use qc_eta::{predict, Calibrator, EtaRequest, Model, Offsets, Prediction, Source};
use qc_geo::Point;
use serde::{Deserialize, Serialize};

/// What the shopper was promised at placement, and what happened.
#[derive(Debug, Clone, PartialEq)]
pub struct Promise {
    pub placed_at: i64,
    pub hub: usize,
    pub band: u8,
    pub p50: f64,
    pub p80: f64,
    pub p95: f64,
    /// The Gaussian composition (no calibration), for comparison.
    pub raw: (f64, f64, f64),
    pub raw_p50: f64,
    pub sigma: f64,
    /// The historical mean order-to-door time of the hub at placement (the naive predictor).
    pub naive: Option<f64>,
    /// |re-estimated arrival after accept − promised arrival|, seconds.
    pub revision_s: Option<f64>,
    pub segment: String,
}

/// What the twin asks the ETA model: a hub, a customer, a basket and the hub's live state.
#[derive(Debug, Clone, PartialEq)]
pub struct Ask {
    pub hub: usize,
    pub hub_id: String,
    pub hub_point: Point,
    pub cust: Point,
    pub items: u32,
    pub queue_depth: u32,
    pub drivers_avail: u32,
    /// Epoch ms.
    pub now_ms: i64,
    pub band: u8,
}

impl Ask {
    /// The calibration band of virtual time `t` for a run starting at `start_of_day_ms`.
    pub fn band_at(start_of_day_ms: i64, t: i64) -> u8 {
        // Virtual time counts from the run's local midnight + start: offset 0.
        hour_band(qc_eta::engine::local_hour(start_of_day_ms + t, 0))
    }
}

/// One post-shift observation of an affected segment: the filter's multiplier right after it
/// and the trip's designed (noise-free) ratio.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ShiftObservation {
    pub k: u32,
    pub learned: f64,
    pub designed: f64,
}

#[derive(Debug, Default)]
pub struct EtaTwin {
    pub model: Option<Model>,
    pub kf: BTreeMap<String, KfState>,
    pub cal: Calibrator,
    /// Per hub: Σ and count of delivered order-to-door times.
    naive: BTreeMap<usize, (f64, u64)>,
    /// Per order.
    pub promises: BTreeMap<usize, Promise>,
    /// Delivered orders: (order, actual order-to-door s).
    pub outcomes: Vec<(usize, f64)>,
    /// Per segment, observations of trips a traffic event slowed.
    pub after_shift: BTreeMap<String, Vec<ShiftObservation>>,
}

impl EtaTwin {
    pub fn new(model: Model) -> Self {
        Self {
            model: Some(model),
            ..Self::default()
        }
    }

    fn model(&self) -> Model {
        self.model.unwrap_or(Model::FULL)
    }

    fn traffic(&self, hub_id: &str, seg: &str, now_ms: i64) -> TrafficEstimate {
        if self.model().traffic {
            kalman::estimate_two_level(
                self.kf.get(seg),
                self.kf.get(&format!("{hub_id}:*")),
                now_ms,
            )
        } else {
            TrafficEstimate::PRIOR
        }
    }

    fn offsets(&self, hub_id: &str, band: u8) -> (Offsets, Source) {
        if self.model().calibrate {
            self.cal.offsets(hub_id, band)
        } else {
            (Offsets::GAUSSIAN, Source::Prior)
        }
    }

    /// The prediction the ETA service would give for `ask`.
    pub fn predict(&self, ask: &Ask) -> Prediction {
        let req = EtaRequest {
            order_id: String::new(),
            hub_id: ask.hub_id.clone(),
            item_count: ask.items.clamp(1, 1000),
            hub: ask.hub_point,
            cust: ask.cust,
            queue_depth: ask.queue_depth,
            drivers_avail: ask.drivers_avail,
        };
        let seg = segment(&ask.hub_id, ask.cust);
        predict(
            &req,
            Some(self.traffic(&ask.hub_id, &seg, ask.now_ms)),
            self.offsets(&ask.hub_id, ask.band),
        )
    }

    /// The promise at placement (virtual time `t`).
    pub fn promise(&mut self, o: usize, t: i64, ask: &Ask) {
        let p = self.predict(ask);
        let g = |z: f64| p.raw_p50 + z * p.sigma;
        let naive = self.naive.get(&ask.hub).map(|(s, n)| s / *n as f64);
        self.promises.insert(
            o,
            Promise {
                placed_at: t,
                hub: ask.hub,
                band: ask.band,
                p50: p.p50,
                p80: p.p80,
                p95: p.p95,
                raw: (p.raw_p50, g(qc_eta::compose::Z80), g(qc_eta::compose::Z95)),
                raw_p50: p.raw_p50,
                sigma: p.sigma,
                naive,
                revision_s: None,
                segment: p.segment,
            },
        );
    }

    /// Dispatch's `calculate` after the rider accepted (07 §8): sticky for 30 s on the same
    /// fingerprint, else a fresh estimate from now. Records how far the promised arrival moved.
    pub fn re_estimate(&mut self, o: usize, t: i64, ask: &Ask) {
        let Some(pr) = self.promises.get(&o) else {
            return;
        };
        let revision = if t - pr.placed_at < qc_eta::store::STICKY_MS {
            0.0
        } else {
            let promised = pr.placed_at as f64 / 1000.0 + pr.p50;
            (t as f64 / 1000.0 + self.predict(ask).p50 - promised).abs()
        };
        self.promises.get_mut(&o).expect("present").revision_s = Some(revision);
    }

    /// A delivery: the trip feeds the traffic filter, the order's time the calibration and the
    /// naive mean. `shifted` says whether a traffic event slowed this trip (the shift check).
    #[allow(clippy::too_many_arguments)]
    pub fn delivered(
        &mut self,
        o: usize,
        t: i64,
        epoch_ms: i64,
        hub_id: &str,
        hub: Point,
        cust: Point,
        travel_s: f64,
        designed_ratio: f64,
        shifted: bool,
    ) {
        let base = base_travel_s(hub, cust);
        let seg = segment(hub_id, cust);
        if self.model().traffic && base >= MIN_EXPECTED_S {
            let hub_key = format!("{hub_id}:*");
            let (s, h) = kalman::update_two_level(
                self.kf.get(&seg).copied(),
                self.kf.get(&hub_key).copied(),
                epoch_ms + t,
                travel_s / base,
            );
            self.kf.insert(hub_key, h);
            self.kf.insert(seg.clone(), s);
            if shifted {
                let obs = self.after_shift.entry(seg).or_default();
                obs.push(ShiftObservation {
                    k: obs.len() as u32 + 1,
                    learned: s.x.exp().clamp(kalman::CLAMP.0, kalman::CLAMP.1),
                    designed: designed_ratio,
                });
            }
        }
        let Some(pr) = self.promises.get(&o) else {
            return;
        };
        let actual = (t - pr.placed_at) as f64 / 1000.0;
        let score = (actual - pr.raw_p50) / pr.sigma.max(1e-9);
        self.cal.observe(hub_id, pr.band, score);
        if self.model().calibrate {
            self.cal
                .outcome(hub_id, [actual > pr.p50, actual > pr.p80, actual > pr.p95]);
        }
        let e = self.naive.entry(pr.hub).or_insert((0.0, 0));
        e.0 += actual;
        e.1 += 1;
        self.outcomes.push((o, actual));
    }
}

/// One bin of the error histogram: [lo_min, lo_min + 1) minutes of (actual − p50).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bin {
    pub lo_min: i32,
    pub count: u64,
}

/// The traffic-shift check (issue #5): how the learned multiplier of segments slowed by a
/// traffic event approaches the true (designed, noise-free) one, observation by observation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ShiftCheck {
    /// Segments with at least one slowed trip.
    pub segments: u64,
    /// Per k-th slowed observation of a segment (k = 1.. while at least
    /// [`SHIFT_MIN_SEGMENTS`] segments have k): the median over segments of learned / true,
    /// and the median |learned / true − 1|.
    pub by_observation: Vec<ShiftStep>,
    /// The first k from which the median learned / true stays within 10 % of 1.
    pub observations_to_10pct: Option<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ShiftStep {
    pub k: u32,
    pub segments: u64,
    pub median_ratio: f64,
    pub median_abs_error: f64,
}

/// Segments an observation count needs to be reported in the shift check.
pub const SHIFT_MIN_SEGMENTS: usize = 20;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EtaInfo {
    pub model: String,
    /// Delivered orders placed after the warm-up (what the figures below are over).
    pub orders: u64,
    pub mae_s: f64,
    /// Mean (p50 − actual): positive is pessimistic.
    pub bias_s: f64,
    pub coverage_p50: f64,
    pub coverage_p80: f64,
    pub coverage_p95: f64,
    /// The Gaussian composition's coverage on the same orders (what calibration corrects).
    pub gaussian_coverage_p50: f64,
    pub gaussian_coverage_p80: f64,
    pub gaussian_coverage_p95: f64,
    /// MAE of the hub's historical mean order-to-door time (orders with a history).
    pub naive_mae_s: f64,
    /// 1 − MAE / naive MAE on the orders both predicted.
    pub mae_improvement_vs_naive: f64,
    /// Share of orders whose promised arrival moved ≥ 2 min at Dispatch's re-estimate.
    pub revised_2min_share: f64,
    pub segments_learned: u64,
    pub error_histogram: Vec<Bin>,
    pub shift: Option<ShiftCheck>,
}

fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    v[(v.len() - 1) / 2]
}

/// The ETA section of the summary: orders placed at or after `warmup`.
pub fn summarise(twin: &EtaTwin, warmup: i64, kind: &str) -> EtaInfo {
    let mut rows = Vec::new();
    for (o, actual) in &twin.outcomes {
        if let Some(p) = twin.promises.get(o) {
            if p.placed_at >= warmup {
                rows.push((p, *actual));
            }
        }
    }
    let n = rows.len() as f64;
    let share = |f: &dyn Fn(&Promise, f64) -> bool| {
        if rows.is_empty() {
            0.0
        } else {
            round4(rows.iter().filter(|(p, a)| f(p, *a)).count() as f64 / n)
        }
    };
    let mean = |f: &dyn Fn(&Promise, f64) -> f64| {
        if rows.is_empty() {
            0.0
        } else {
            round4(rows.iter().map(|(p, a)| f(p, *a)).sum::<f64>() / n)
        }
    };
    let with_naive: Vec<&(&Promise, f64)> =
        rows.iter().filter(|(p, _)| p.naive.is_some()).collect();
    let (mae_both, naive_mae) = if with_naive.is_empty() {
        (0.0, 0.0)
    } else {
        let k = with_naive.len() as f64;
        (
            with_naive
                .iter()
                .map(|(p, a)| (p.p50 - a).abs())
                .sum::<f64>()
                / k,
            with_naive
                .iter()
                .map(|(p, a)| (p.naive.unwrap_or(0.0) - a).abs())
                .sum::<f64>()
                / k,
        )
    };
    let revised: Vec<f64> = rows.iter().filter_map(|(p, _)| p.revision_s).collect();
    let mut bins: BTreeMap<i32, u64> = BTreeMap::new();
    for (p, a) in &rows {
        let m = ((a - p.p50) / 60.0).floor().clamp(-20.0, 20.0) as i32;
        *bins.entry(m).or_default() += 1;
    }
    let shift = (!twin.after_shift.is_empty()).then(|| {
        let mut steps = Vec::new();
        for k in 1.. {
            let at: Vec<&ShiftObservation> = twin
                .after_shift
                .values()
                .filter_map(|v| v.get(k - 1))
                .collect();
            if at.len() < SHIFT_MIN_SEGMENTS {
                break;
            }
            steps.push(ShiftStep {
                k: k as u32,
                segments: at.len() as u64,
                median_ratio: round4(median(at.iter().map(|o| o.learned / o.designed).collect())),
                median_abs_error: round4(median(
                    at.iter()
                        .map(|o| (o.learned / o.designed - 1.0).abs())
                        .collect(),
                )),
            });
        }
        let settled = steps
            .iter()
            .rposition(|s| (s.median_ratio - 1.0).abs() > 0.10)
            .map_or(0, |i| i + 1);
        ShiftCheck {
            segments: twin.after_shift.len() as u64,
            observations_to_10pct: steps.get(settled).map(|s| s.k),
            by_observation: steps,
        }
    });
    EtaInfo {
        model: kind.to_string(),
        orders: rows.len() as u64,
        mae_s: mean(&|p, a| (p.p50 - a).abs()),
        bias_s: mean(&|p, a| p.p50 - a),
        coverage_p50: share(&|p, a| a <= p.p50),
        coverage_p80: share(&|p, a| a <= p.p80),
        coverage_p95: share(&|p, a| a <= p.p95),
        gaussian_coverage_p50: share(&|p, a| a <= p.raw.0),
        gaussian_coverage_p80: share(&|p, a| a <= p.raw.1),
        gaussian_coverage_p95: share(&|p, a| a <= p.raw.2),
        naive_mae_s: round4(naive_mae),
        mae_improvement_vs_naive: if naive_mae > 0.0 {
            round4(1.0 - mae_both / naive_mae)
        } else {
            0.0
        },
        revised_2min_share: if revised.is_empty() {
            0.0
        } else {
            round4(revised.iter().filter(|r| **r >= 120.0).count() as f64 / revised.len() as f64)
        },
        segments_learned: twin.kf.len() as u64,
        error_histogram: bins
            .into_iter()
            .map(|(lo_min, count)| Bin { lo_min, count })
            .collect(),
        shift,
    }
}
