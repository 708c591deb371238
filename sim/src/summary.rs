//! `summary.json`: what a run measured, computed from the world after the run. Everything here
//! is a pure function of scenario, seed and code, except `latency` (live mode only).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::backend::LatencySummary;
use crate::world::{Order, OrderState};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub scenario: ScenarioInfo,
    pub orders: Orders,
    pub service: Service,
    pub inventory: Inventory,
    pub hubs: Vec<HubRow>,
    /// The most requested SKUs (up to 50) with their fill rate.
    pub skus: Vec<SkuRow>,
    pub riders: Riders,
    pub dispatch: DispatchInfo,
    /// ETA accuracy after the warm-up (10 §4, issue #5).
    pub eta: crate::eta::EtaInfo,
    pub slo: Vec<SloRow>,
    pub invariants: Invariants,
    /// Store-operation latency (live backend only; empty in memory).
    pub latency: BTreeMap<String, LatencySummary>,
    /// Deterministic engine figures (wall-clock speed is in engine.json).
    pub engine: EngineInfo,
    /// FNV-1a 64 over the event log's rows, in order.
    pub event_log_hash: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScenarioInfo {
    pub name: String,
    pub seed: u64,
    pub start: String,
    pub duration_ms: i64,
    pub warmup_ms: i64,
    pub hubs: usize,
    pub skus: usize,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Orders {
    pub placed: u64,
    pub delivered: u64,
    /// With dispatch off: picked and handed over (the order's end).
    pub handed_over: u64,
    /// Paid, but not delivered: Dispatch failed it, or it was lost before (see `lost_by_reason`).
    pub cancelled_dispatch: u64,
    /// Paid orders that did not reach the door, by reason (`DEADLINE_PASSED`,
    /// `NOT_PICKED_BY_DEADLINE`, `DRAIN_LIMIT`).
    pub lost_by_reason: BTreeMap<String, u64>,
    pub cancelled_stockout: u64,
    pub cancelled_payment: u64,
    pub cancelled_abandoned: u64,
    pub cancelled_hold_expired: u64,
    pub unserviceable: u64,
    /// Orders not in a terminal state at the end (must be 0).
    pub in_progress: u64,
}

/// Percentiles of a sample (nearest rank), seconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Dist {
    pub count: u64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

impl Dist {
    pub fn of(mut xs: Vec<f64>) -> Self {
        if xs.is_empty() {
            return Self::default();
        }
        xs.sort_by(f64::total_cmp);
        let q = |p: f64| xs[(((p * xs.len() as f64).ceil() as usize).max(1) - 1).min(xs.len() - 1)];
        Self {
            count: xs.len() as u64,
            mean: round3(xs.iter().sum::<f64>() / xs.len() as f64),
            p50: round3(q(0.50)),
            p90: round3(q(0.90)),
            p95: round3(q(0.95)),
            p99: round3(q(0.99)),
            max: round3(xs[xs.len() - 1]),
        }
    }
}

/// Service metrics over orders placed after the warm-up.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Service {
    /// Paid → a picker starts.
    pub pick_wait_s: Dist,
    pub pick_time_s: Dist,
    /// Order placed → handed over to a rider's pool.
    pub click_to_handover_s: Dist,
    /// Order placed → at the customer's door.
    pub click_to_door_s: Dist,
    /// Shares of delivered orders (placed after the warm-up) at the door within 10 / 15 min.
    pub within_10_min: f64,
    pub within_15_min: f64,
    /// Busy picker time / available picker time, all hubs.
    pub picker_utilisation: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Inventory {
    pub reservations: u64,
    pub confirmed: u64,
    pub released: u64,
    pub expired_by_reaper: u64,
    pub expired_at_payment: u64,
    pub stockout_orders: u64,
    pub units_initial: i64,
    pub units_restocked: i64,
    pub units_sold: i64,
    pub units_available_at_end: i64,
    pub units_held_at_end: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HubRow {
    pub hub: String,
    pub pickers: u32,
    pub riders: u32,
    pub placed: u64,
    pub delivered: u64,
    pub stockouts: u64,
    pub pick_wait_p90_s: f64,
    pub picker_utilisation: f64,
    pub click_to_door_p90_s: f64,
    pub rider_utilisation: f64,
}

/// The fleet (06-dispatch through the simulator).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Riders {
    pub riders: usize,
    /// Busy time (offered until free again) / time on shift.
    pub utilisation: f64,
    pub orders_per_rider_hour: f64,
    pub offers: u64,
    pub offers_rejected: u64,
    pub offers_timed_out: u64,
    pub reassignments: u64,
    /// Orders back in the pool after their reassignment attempts ran out.
    pub repooled: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DispatchInfo {
    pub matcher: String,
    pub batches: u64,
    /// Share of dispatched orders offered in a batch that matched more than one order.
    pub batching_rate: f64,
    /// Mean rider → hub distance at the time of the offer.
    pub mean_pickup_km: f64,
    /// Σ cost of the greedy and of the optimal matching on the same batches (those where both
    /// matched the same number of orders).
    pub greedy_cost: f64,
    pub optimal_cost: f64,
    /// (greedy − optimal) / optimal, in percent.
    pub greedy_gap_pct: f64,
    pub compared_batches: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SkuRow {
    pub sku: String,
    /// Orders that asked for this SKU.
    pub requested: u64,
    /// Of those, orders that got their hold.
    pub filled: u64,
    pub fill_rate: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SloRow {
    pub name: String,
    pub target: f64,
    pub actual: f64,
    pub met: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Invariants {
    /// (hub, sku) pairs whose counter went below zero or sold more than was stocked.
    pub oversell: u64,
    /// Orders not in a terminal state at the end.
    pub non_terminal_orders: u64,
    /// (hub, sku) pairs where initial + restocked != available + held + sold.
    pub conservation_violations: u64,
    /// Live mode: Redis/Postgres disagreements after the writer caught up (0 in memory).
    pub redis_pg_drift: u64,
    /// Requests Dispatch refused that the twin never expects: illegal rider transitions, stale
    /// offers (must be 0).
    pub dispatch_refusals: u64,
    /// Orders whose end in the world differs from Dispatch's record of them (must be 0).
    pub dispatch_drift: u64,
    /// The first few violations, in words.
    pub details: Vec<String>,
}

impl Invariants {
    pub fn hold(&self) -> bool {
        self.oversell == 0
            && self.non_terminal_orders == 0
            && self.conservation_violations == 0
            && self.redis_pg_drift == 0
            && self.dispatch_refusals == 0
            && self.dispatch_drift == 0
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EngineInfo {
    pub backend: String,
    pub events: u64,
    pub log_rows: u64,
}

/// Counts by terminal state (unserviceable demand is the caller's to add: it is no order).
pub fn order_counts(orders: &[Order]) -> Orders {
    let mut o = Orders::default();
    for order in orders {
        match order.state {
            OrderState::Delivered => o.delivered += 1,
            OrderState::DispatchFailed | OrderState::Lost => {
                o.cancelled_dispatch += 1;
                let reason = order.failure_reason.clone().unwrap_or_default();
                *o.lost_by_reason.entry(reason).or_default() += 1;
            }
            OrderState::HandedOver => o.handed_over += 1,
            OrderState::Stockout => o.cancelled_stockout += 1,
            OrderState::PaymentFailed => o.cancelled_payment += 1,
            OrderState::Abandoned => o.cancelled_abandoned += 1,
            OrderState::HoldExpired => o.cancelled_hold_expired += 1,
            OrderState::Held
            | OrderState::Paid
            | OrderState::Picking
            | OrderState::AwaitingRider
            | OrderState::Offered
            | OrderState::OutForDelivery => o.in_progress += 1,
        }
    }
    o.placed = orders.len() as u64;
    o
}

/// Service percentiles over orders placed at or after `warmup_ms`.
/// Click-to-door seconds of delivered orders placed at or after `warmup_ms`.
pub fn click_to_door(orders: &[Order], warmup_ms: i64) -> Vec<f64> {
    orders
        .iter()
        .filter(|o| o.placed_at >= warmup_ms)
        .filter_map(|o| o.delivered_at.map(|d| (d - o.placed_at) as f64 / 1000.0))
        .collect()
}

pub fn service(orders: &[Order], warmup_ms: i64) -> (Dist, Dist, Dist) {
    let mut wait = Vec::new();
    let mut pick = Vec::new();
    let mut total = Vec::new();
    for o in orders.iter().filter(|o| o.placed_at >= warmup_ms) {
        if let (Some(paid), Some(started)) = (o.paid_at, o.pick_started_at) {
            wait.push((started - paid) as f64 / 1000.0);
        }
        if let (Some(started), Some(done)) = (o.pick_started_at, o.handed_over_at) {
            pick.push((done - started) as f64 / 1000.0);
        }
        if let Some(done) = o.handed_over_at {
            total.push((done - o.placed_at) as f64 / 1000.0);
        }
    }
    (Dist::of(wait), Dist::of(pick), Dist::of(total))
}

/// Fill rate of the `limit` most requested SKUs (ties by SKU name).
pub fn sku_rows(orders: &[Order], sku_names: &[String], limit: usize) -> Vec<SkuRow> {
    let mut req: BTreeMap<usize, (u64, u64)> = BTreeMap::new();
    for o in orders {
        for (s, _) in &o.lines {
            let e = req.entry(*s).or_default();
            e.0 += 1;
            if o.state != OrderState::Stockout {
                e.1 += 1;
            }
        }
    }
    let mut rows: Vec<SkuRow> = req
        .into_iter()
        .map(|(s, (r, f))| SkuRow {
            sku: sku_names[s].clone(),
            requested: r,
            filled: f,
            fill_rate: round3(f as f64 / r as f64),
        })
        .collect();
    rows.sort_by(|a, b| {
        b.requested
            .cmp(&a.requested)
            .then_with(|| a.sku.cmp(&b.sku))
    });
    rows.truncate(limit);
    rows
}

pub fn ratio(num: f64, den: f64) -> f64 {
    if den > 0.0 {
        round3(num / den)
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let d = Dist::of((1..=100).map(f64::from).collect());
        assert_eq!(
            (d.p50, d.p90, d.p99, d.max, d.mean),
            (50.0, 90.0, 99.0, 100.0, 50.5)
        );
        assert_eq!(Dist::of(vec![]).count, 0);
        assert_eq!(Dist::of(vec![7.0]).p99, 7.0);
    }
}
