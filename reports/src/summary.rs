//! A run's `summary.json`, typed: the simulator computes it, the run report reads it. Everything
//! here is a pure function of scenario, seed and code, except `latency` (live mode only).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

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
    pub eta: EtaInfo,
    /// GPS through Tracking (issue #11); all zero with GPS off.
    #[serde(default)]
    pub gps: GpsInfo,
    #[serde(default)]
    pub promo: PromoInfo,
    /// Every paying shopper through the checkout saga (issue #13).
    #[serde(default)]
    pub checkout: CheckoutInfo,
    /// Shoppers searching through the search core (issue #14); all zero when nobody searches.
    #[serde(default)]
    pub search: SearchInfo,
    /// The flash sale (issue #15); all zero without one.
    #[serde(default)]
    pub flash_sale: FlashSaleInfo,
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

/// Rounds to three decimals (what the summaries store).
pub fn round3(x: f64) -> f64 {
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
    /// a minimum number of segments have k): the median over segments of learned / true,
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
    /// Share of orders whose shown ETA moved by ≥ 2 min after placement (issue #9).
    pub revision_rate: f64,
    pub segments_learned: u64,
    pub error_histogram: Vec<Bin>,
    pub shift: Option<ShiftCheck>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LatencySummary {
    pub count: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
}

/// The `checkout` section of `summary.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CheckoutInfo {
    /// Checkout calls (first sends, retries and double submits), and the sagas they ran.
    pub calls: u64,
    pub sagas: u64,
    pub confirmed: u64,
    /// confirmed / sagas.
    pub conversion: f64,
    /// Sagas that did not confirm, by the step that failed (`charge_payment`, ...), and by
    /// answer code (`PAYMENT_FAILED`, `PAYMENT_UNAVAILABLE`, `RESERVATION_EXPIRED`, ...).
    pub failed_by_step: BTreeMap<String, u64>,
    pub failed_by_code: BTreeMap<String, u64>,
    /// Failed sagas whose done steps were all undone, and those left `failed` (must be 0).
    pub compensated: u64,
    pub compensation_failures: u64,
    /// Answers served from a stored outcome or the key's order (double submits, retries).
    pub replays: u64,
    /// Retries with the same key after a 503.
    pub retries: u64,
    /// Outbox events written, relayed to the stream, and the relay's lag (virtual ms).
    pub events: u64,
    pub events_sent: u64,
    pub outbox_lag_p50_ms: i64,
    pub outbox_lag_max_ms: i64,
    /// At the end, from the gateway's ledger and the orders: charges with neither a confirmed
    /// order nor a refund, and confirmed orders without their `dispatch_queue` row. Both 0.
    pub charges_without_order: u64,
    pub confirmed_without_dispatch_row: u64,
}

/// How searches went for one kind of query (or all of them).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SearchRow {
    pub searches: u64,
    /// Searches that matched nothing (08's last tier: popular products instead).
    pub zero_results: u64,
    /// Where the wanted product came: first, in the top three, on the first page.
    pub top1: u64,
    pub top3: u64,
    pub first_page: u64,
    /// Sum of 1/rank of the wanted product (0 when it is not on the first page).
    pub reciprocal_rank_sum: f64,
    /// The counts over `searches`; `mrr` is the mean reciprocal rank.
    pub zero_result_rate: f64,
    pub top1_rate: f64,
    pub top3_rate: f64,
    pub first_page_rate: f64,
    pub mrr: f64,
}

impl SearchRow {
    /// Counts one search: whether it matched anything and the wanted product's rank on the
    /// first page (1-based).
    pub fn count(&mut self, matched: bool, rank: Option<usize>) {
        self.searches += 1;
        self.zero_results += u64::from(!matched);
        if let Some(r) = rank {
            self.top1 += u64::from(r == 1);
            self.top3 += u64::from(r <= 3);
            self.first_page += 1;
            self.reciprocal_rank_sum += 1.0 / r as f64;
        }
    }

    /// Fills the rates from the counts.
    pub fn finish(&mut self) {
        let n = self.searches.max(1) as f64;
        let r = |x: f64| (x / n * 10_000.0).round() / 10_000.0;
        self.zero_result_rate = r(self.zero_results as f64);
        self.top1_rate = r(self.top1 as f64);
        self.top3_rate = r(self.top3 as f64);
        self.first_page_rate = r(self.first_page as f64);
        self.mrr = r(self.reciprocal_rank_sum);
        self.reciprocal_rank_sum = (self.reciprocal_rank_sum * 1e6).round() / 1e6;
    }
}

/// The `search` section of `summary.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SearchInfo {
    /// Shoppers who searched for their basket.
    pub shoppers: u64,
    pub all: SearchRow,
    /// By query kind: `exact`, `english`, `prefix`, `typo`.
    pub by_kind: BTreeMap<String, SearchRow>,
    /// Items taken from a search that did not show the wanted product on the first page (the
    /// first in-stock result instead), items dropped (nothing matched or nothing in stock), and
    /// shoppers who left with an empty basket (no order).
    pub substituted: u64,
    pub dropped: u64,
    pub shoppers_left: u64,
}

/// The `flash_sale` section of `summary.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FlashSaleInfo {
    pub units: u64,
    /// Units confirmed (paid) by humans and by bots; still reserved at the end (must be 0 after
    /// the reaper); units sold beyond the stock (must be 0).
    pub units_to_humans: u64,
    pub units_to_bots: u64,
    pub humans_share: f64,
    pub reserved_at_end: u64,
    pub oversell: u64,
    /// Confirmed orders recorded by the order store (= units confirmed).
    pub orders_recorded: u64,
    pub humans: u64,
    pub humans_with_units: u64,
    /// Humans refused at least once as bots (false positives), and their share.
    pub humans_blocked: u64,
    pub humans_blocked_share: f64,
    pub bots: u64,
    /// Bots refused at least once as bots, and their share; bots that got a unit.
    pub bots_blocked: u64,
    pub bots_blocked_share: f64,
    pub bots_with_units: u64,
    /// Requests by humans and bots (token mints and checkouts), and answers by code.
    pub human_requests: u64,
    pub bot_requests: u64,
    pub answers: BTreeMap<String, u64>,
    /// Humans' seconds from first queued to admitted.
    pub queue_wait_s: Dist,
    /// Spearman rank correlation of admission order with arrival order, for humans who arrived
    /// after opening and were admitted from the queue (1 = strictly first come, first served).
    pub fairness: f64,
    pub admitted: u64,
    pub expired: u64,
}

/// The `promo` section of `summary.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PromoInfo {
    /// Orders that tried the promos, got a discount, were flagged as a ring's.
    pub orders_tried: u64,
    pub orders_discounted: u64,
    pub orders_flagged: u64,
    /// Rules applied (an order may get several), and given back by releases.
    pub redemptions: u64,
    pub releases: u64,
    /// Rupiah granted at checkout (before releases), and per discounted order.
    pub discount_total: i64,
    pub discount_per_order: f64,
    /// Per rule, from the counters at the end: redemptions held, money spent vs budget.
    pub rules: Vec<PromoRuleInfo>,
    /// Σ max(0, spent − budget): must be 0.
    pub overspend: i64,
    /// Rings in the scenario; those that shopped; those with more accounts shopping than
    /// `ring_max_accounts` (only these can be told from a household); of these, those with an
    /// account flagged.
    pub rings: u64,
    pub rings_active: u64,
    pub rings_detectable: u64,
    pub rings_caught: u64,
    pub rings_caught_share: f64,
    /// Honest accounts that tried promos, and those flagged.
    pub honest_shoppers: u64,
    pub honest_flagged: u64,
    pub honest_flagged_share: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PromoRuleInfo {
    pub rule: String,
    pub redemptions: i64,
    pub spent: i64,
    /// 0 = no budget.
    pub budget: i64,
    pub overspend: i64,
}

/// The `gps` section of `summary.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GpsInfo {
    pub fixes_sent: u64,
    pub dropped: u64,
    pub accepted: u64,
    /// Fixes the twin displaced on purpose, and how many Tracking refused.
    pub outliers_sent: u64,
    pub outliers_rejected: u64,
    /// Ordinary (noise-only) fixes Tracking refused, by reason.
    pub good_rejected: BTreeMap<String, u64>,
    pub good_rejected_per_10k: f64,
    pub outliers_rejected_share: f64,
    /// RMSE against the true position, metres: every fix sent (what a map showing raw fixes
    /// would show), the noise-only fixes, and Tracking's filtered output for accepted fixes.
    pub raw_rmse_m: f64,
    pub raw_good_rmse_m: f64,
    pub filtered_rmse_m: f64,
    /// 1 − filtered / raw.
    pub filtered_improvement: f64,
    /// One order's fixes: (seconds since its first fix, raw error m, filtered error m or −1 if
    /// refused).
    pub trip: Vec<(f64, f64, f64)>,
}
