//! ETA in the twin (07-eta through `qc-eta`'s engine over its store: `MemoryEtaStore`, or
//! `RedisEtaStore` in live mode). Every paid order is promised an ETA at payment by
//! `engine::calculate` with the hub's live queue and idle riders; Dispatch's stage-aware
//! re-estimates after the rider accepts and at pickup go through the same `calculate` (the
//! shown ETA moves only when it leaves the promise's tolerance); each delivery is
//! `engine::observe`d with the ride (DELIVERING → COMPLETED) and the delivery time, as Dispatch
//! reports it, which teaches the traffic filters and the calibration. The twin keeps only the
//! measurements: what was promised, what was shown, what happened.

use std::collections::BTreeMap;

use qc_dispatch::DispatchRepo;
use qc_eta::calibrate::hour_band;
use qc_eta::engine::{self, local_hour, EtaResult, ObserveInput};
use qc_eta::kalman;
use qc_eta::model::{CalculateInput, Stage};
use qc_eta::{EtaStore, Model};
use qc_inventory::StockStore;
pub use reports::summary::{Bin, EtaInfo, ShiftCheck, ShiftStep};

use crate::backend::Exec;
use crate::engine::SimTime;
use crate::ids::{HubIx, OrderIx};
use crate::world::{SimError, World};

/// What the shopper was promised at payment, and what they were shown later.
#[derive(Debug, Clone, PartialEq)]
pub struct Promise {
    pub placed_at: SimTime,
    pub hub: HubIx,
    pub p50: f64,
    pub p80: f64,
    pub p95: f64,
    /// The Gaussian composition (no calibration), for comparison.
    pub raw: (f64, f64, f64),
    /// The historical mean order-to-door time of the hub at placement (the naive predictor).
    pub naive: Option<f64>,
    /// The largest move of the shown arrival since the promise, seconds (None: never
    /// re-estimated).
    pub moved_s: Option<f64>,
}

/// One post-shift observation of an affected segment: the filter's multiplier right after it
/// and the trip's designed (noise-free) ratio.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ShiftObservation {
    pub k: u32,
    pub learned: f64,
    pub designed: f64,
}

/// ETA in the twin: the service's store (all model state lives there) and the measurements.
#[derive(Debug)]
pub struct EtaTwin<E> {
    pub store: E,
    pub model: Model,
    /// Per hub: Σ and count of delivered order-to-door times.
    naive: BTreeMap<HubIx, (f64, u64)>,
    pub promises: BTreeMap<OrderIx, Promise>,
    /// Delivered orders: (order, actual payment-to-door s).
    pub outcomes: Vec<(OrderIx, f64)>,
    /// Per segment, observations of trips a traffic event slowed.
    pub after_shift: BTreeMap<String, Vec<ShiftObservation>>,
    /// Segments the filters learnt.
    pub segments: std::collections::BTreeSet<String>,
}

impl<E> EtaTwin<E> {
    pub fn new(store: E, model: Model) -> Self {
        Self {
            store,
            model,
            naive: BTreeMap::new(),
            promises: BTreeMap::new(),
            outcomes: Vec::new(),
            after_shift: BTreeMap::new(),
            segments: std::collections::BTreeSet::new(),
        }
    }

    pub fn model(&self) -> Model {
        self.model
    }
}

/// The twin's virtual day starts at local midnight of the epoch: local hour = UTC hour.
pub(crate) const SIM_UTC_OFFSET_MIN: i32 = 0;

impl<S: StockStore, R: DispatchRepo, E: EtaStore, X: Exec> World<'_, S, R, E, X> {
    /// The request Dispatch (or Checkout) would send for order `o` at `stage`, with the hub's
    /// queue as the caller counts it and its idle riders.
    fn eta_request(
        &self,
        o: OrderIx,
        queue_depth: u32,
        stage: Stage,
        rider: Option<qc_geo::Point>,
    ) -> CalculateInput {
        let h = self.orders[o.0].hub;
        let hub = &self.sc.hubs[h.0];
        let cust = self.orders[o.0].location;
        CalculateInput {
            stage: Some(stage.as_str().into()),
            picked: matches!(stage, Stage::Assigned { picked: true }).then_some(true),
            rider_lat: rider.map(|p| p.lat),
            rider_lng: rider.map(|p| p.lng),
            ..CalculateInput::placed(
                o.key(),
                hub.id.clone(),
                i64::from(self.orders[o.0].units().clamp(1, 1000)),
                (hub.lat, hub.lng),
                (cust.lat, cust.lng),
                i64::from(queue_depth),
                i64::from(self.idle_count(h)),
            )
        }
    }

    fn calculate(&mut self, input: CalculateInput) -> Result<EtaResult, SimError> {
        let req = input
            .validate()
            .map_err(|e| SimError::Unexpected(format!("ETA request refused: {e}")))?;
        let now = self.now_ms();
        let band = hour_band(local_hour(now, SIM_UTC_OFFSET_MIN));
        let model = self.eta.model();
        let store = &self.eta.store;
        Ok(self.exec.run(
            "eta.calculate",
            engine::calculate(store, &req, now, band, model),
        ))
    }

    /// The promise at payment: the hub's backlog (waiting to be picked, being picked, waiting
    /// for a rider) and its idle riders, as Checkout would ask.
    pub(crate) fn promise_eta(&mut self, t: SimTime, o: OrderIx) -> Result<(), SimError> {
        if !self.sc.dispatch.enabled {
            return Ok(());
        }
        let h = self.orders[o.0].hub;
        let waiting = self.fleet.awaiting_rider[h.0];
        let backlog = self.hubs[h.0].queue.len() as u32 + self.hubs[h.0].busy + waiting;
        let r = self.calculate(self.eta_request(o, backlog, Stage::Placed, None))?;
        let g = |z: f64| r.raw_p50_s + z * r.sigma_s;
        let naive = self.eta.naive.get(&h).map(|(s, n)| s / *n as f64);
        self.eta.promises.insert(
            o,
            Promise {
                placed_at: t,
                hub: h,
                p50: r.eta_p50_s,
                p80: r.eta_p80_s,
                p95: r.eta_p95_s,
                raw: (
                    r.raw_p50_s,
                    g(qc_eta::compose::Z80),
                    g(qc_eta::compose::Z95),
                ),
                naive,
                moved_s: None,
            },
        );
        Ok(())
    }

    /// Dispatch's stage-aware re-estimate (with the rider's position after an accept); records
    /// how far the shown arrival moved.
    pub(crate) fn re_estimate_eta(
        &mut self,
        o: OrderIx,
        stage: Stage,
        rider: Option<qc_geo::Point>,
    ) -> Result<(), SimError> {
        let Some(pr) = self.eta.promises.get(&o) else {
            return Ok(());
        };
        let promised = pr.placed_at as f64 / 1000.0 + pr.p50;
        let h = pr.hub;
        let waiting = self.fleet.awaiting_rider[h.0];
        let r = self.calculate(self.eta_request(o, waiting, stage, rider))?;
        let shown = (r.computed_at - self.epoch_ms) as f64 / 1000.0 + r.eta_p50_s;
        let moved = (shown - promised).abs();
        let pr = self.eta.promises.get_mut(&o).expect("present");
        pr.moved_s = Some(pr.moved_s.unwrap_or(0.0).max(moved));
        Ok(())
    }

    /// A delivery, reported as Dispatch does: the ride feeds the segment's traffic filter and
    /// the delivery time the calibration; the twin records the outcome.
    pub(crate) fn observe_eta(&mut self, t: SimTime, o: OrderIx) -> Result<(), SimError> {
        let Some(pr) = self.eta.promises.get(&o).cloned() else {
            return Ok(());
        };
        let hub = &self.sc.hubs[pr.hub.0];
        let (hub_pt, cust) = (
            qc_geo::Point {
                lat: hub.lat,
                lng: hub.lng,
            },
            self.orders[o.0].location,
        );
        let out = self.orders[o.0].out_at.unwrap_or(t);
        let ride_s = ((t - out) as f64 / 1000.0).max(0.001);
        let input = ObserveInput {
            hub_id: hub.id.clone(),
            hub_lat: hub.lat,
            hub_lng: hub.lng,
            cust_lat: cust.lat,
            cust_lng: cust.lng,
            actual_travel_s: ride_s.min(7200.0),
            observed_at: Some(self.now_ms()),
            order_id: Some(o.key()),
            actual_total_s: None,
            delivered_at: Some(self.now_ms()),
        };
        let now = self.now_ms();
        let store = &self.eta.store;
        let observed = self
            .exec
            .run(
                "eta.observe",
                engine::observe(store, input, now, SIM_UTC_OFFSET_MIN),
            )
            .map_err(|e| SimError::Unexpected(format!("ETA observation refused: {e}")))?
            .map_err(SimError::Eta)?;
        if observed.applied {
            self.eta.segments.insert(observed.segment.clone());
            if self.event_factor(hub_pt, cust, out) != 1.0 {
                let base = qc_eta::compose::base_travel_s(hub_pt, cust);
                let designed = self.orders[o.0].designed_trip_s / base.max(1e-9);
                let obs = self.eta.after_shift.entry(observed.segment).or_default();
                obs.push(ShiftObservation {
                    k: obs.len() as u32 + 1,
                    learned: observed.x.exp().clamp(kalman::CLAMP.0, kalman::CLAMP.1),
                    designed,
                });
            }
        }
        let actual = (t - pr.placed_at) as f64 / 1000.0;
        let e = self.eta.naive.entry(pr.hub).or_insert((0.0, 0));
        e.0 += actual;
        e.1 += 1;
        self.eta.outcomes.push((o, actual));
        Ok(())
    }
}

/// Segments an observation count needs to be reported in the shift check.
pub const SHIFT_MIN_SEGMENTS: usize = 20;

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
pub fn summarise<E>(twin: &EtaTwin<E>, warmup: i64, kind: &str) -> EtaInfo {
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
        revision_rate: share(&|p, _| p.moved_s.is_some_and(|m| m >= 120.0)),
        segments_learned: twin.segments.len() as u64,
        error_histogram: bins
            .into_iter()
            .map(|(lo_min, count)| Bin { lo_min, count })
            .collect(),
        shift,
    }
}
