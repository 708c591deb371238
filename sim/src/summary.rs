//! `summary.json`: what a run measured, computed from the world after the run. Everything here
//! is a pure function of scenario, seed and code, except `latency` (live mode only).

use std::collections::BTreeMap;

pub use reports::summary::round3;
pub use reports::summary::{
    DispatchInfo, Dist, EngineInfo, HubRow, Invariants, Inventory, Orders, Riders, ScenarioInfo,
    Service, SkuRow, SloRow, Summary,
};

use crate::world::{Order, OrderState};

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
