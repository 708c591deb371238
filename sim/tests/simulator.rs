//! The simulator's guarantees: determinism, end-of-run invariants (and that the checker bites),
//! agreement with queueing theory, and clear errors for bad input.

use std::path::{Path, PathBuf};
use std::process::Command;

use qc_inventory::store::HoldPolicy;
use qc_inventory::*;
use sim::run::{run, run_with_store, write_outputs, Backend, RunOptions};
use sim::scenario::Scenario;

fn scenario(name: &str) -> Scenario {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../scenarios")
        .join(name);
    Scenario::load(&path, &[]).unwrap()
}

/// The smoke scenario run on the memory backend with `seed`.
fn smoke_with_seed(seed: u64) -> sim::run::RunOutput {
    let opts = RunOptions {
        seed: Some(seed),
        ..RunOptions::default()
    };
    run(&scenario("smoke.toml"), &opts).unwrap()
}

fn outputs(sc: &Scenario, opts: &RunOptions) -> (tempfile::TempDir, sim::run::RunOutput) {
    let dir = tempfile::tempdir().unwrap();
    let out = run(sc, opts).unwrap();
    write_outputs(&out, dir.path()).unwrap();
    (dir, out)
}

fn bytes(dir: &Path, file: &str) -> Vec<u8> {
    std::fs::read(dir.join(file)).unwrap()
}

#[test]
fn same_scenario_and_seed_give_byte_identical_outputs() {
    let sc = scenario("smoke.toml");
    let opts = RunOptions::default();
    let (a, out_a) = outputs(&sc, &opts);
    let (b, _) = outputs(&sc, &opts);
    assert!(
        out_a.summary.orders.placed > 50,
        "the smoke run does something"
    );
    assert_eq!(
        bytes(a.path(), "events.parquet"),
        bytes(b.path(), "events.parquet")
    );
    assert_eq!(
        bytes(a.path(), "summary.json"),
        bytes(b.path(), "summary.json")
    );
    let (c, out_c) = outputs(
        &sc,
        &RunOptions {
            seed: Some(7),
            ..RunOptions::default()
        },
    );
    assert_ne!(
        bytes(a.path(), "events.parquet"),
        bytes(c.path(), "events.parquet")
    );
    assert_ne!(out_a.summary.event_log_hash, out_c.summary.event_log_hash);
    assert_eq!(out_c.summary.scenario.seed, 7);
}

#[test]
fn every_run_ends_with_the_invariants_holding() {
    for seed in 1..=5 {
        let out = smoke_with_seed(seed);
        let s = &out.summary;
        assert!(s.invariants.hold(), "seed {seed}: {:?}", s.invariants);
        assert_eq!(s.orders.in_progress, 0);
        let o = &s.orders;
        assert_eq!(
            o.placed,
            o.delivered
                + o.cancelled_dispatch
                + o.cancelled_stockout
                + o.cancelled_payment
                + o.cancelled_abandoned
                + o.cancelled_hold_expired
                + o.unserviceable,
            "every order is in exactly one terminal state"
        );
        let inv = &s.inventory;
        assert_eq!(
            inv.units_initial + inv.units_restocked,
            inv.units_available_at_end + inv.units_held_at_end + inv.units_sold,
            "stock is conserved"
        );
        assert_eq!(
            inv.units_held_at_end, 0,
            "every abandoned hold expired through the reaper"
        );
        assert!(
            inv.expired_by_reaper >= o.cancelled_abandoned,
            "abandoned holds expire through the reaper"
        );
    }
}

#[test]
fn expiry_counts_match_the_stores_records() {
    // Slow payers against short holds: some holds lapse before payment.
    let sc = Scenario::load(
        &scenario_path("smoke.toml"),
        &[
            "demand.hold_ttl_s=40".into(),
            "demand.checkout_delay_mean_s=60".into(),
        ],
    )
    .unwrap();
    let store = MemoryStore::new(HoldPolicy::default());
    let out = run_with_store(&sc, &store, &RunOptions::default()).unwrap();
    let s = &out.summary;
    assert!(s.invariants.hold(), "{:?}", s.invariants);
    assert!(
        s.inventory.expired_at_payment > 0,
        "the scenario exercises late payment"
    );
    let mut expired = 0;
    let mut held_again = 0;
    for o in &out.orders {
        let (Some(rid), h) = (&o.rid, o.hub) else {
            continue;
        };
        let hub = HubId::parse(&s.hubs[h.0].hub).unwrap();
        let r = futures::executor::block_on(store.reservation(&hub, rid))
            .unwrap()
            .unwrap();
        assert!(
            r.status.is_terminal(),
            "order {} hold still {:?}",
            o.id,
            r.status
        );
        expired += u64::from(r.status == ReservationStatus::Expired);
        held_again += u64::from(r.status == ReservationStatus::Expired && o.paid_at.is_some());
    }
    assert_eq!(
        s.inventory.expired_by_reaper + s.inventory.expired_at_payment,
        expired
    );
    // Checkout holds the stock again once when the cart's hold lapsed (04 step 5): some late
    // payers still get their order.
    assert!(held_again > 0, "no late payer was held again");
}

/// A store that "forgets" to deduct confirmed units: the conservation check must catch it.
struct LeakyConfirm(MemoryStore);

impl StockStore for LeakyConfirm {
    async fn set_stock(
        &self,
        now_ms: i64,
        cmd: &SetStockCommand,
    ) -> Result<StockSetResult, InventoryError> {
        self.0.set_stock(now_ms, cmd).await
    }
    async fn stock(&self, hub: &HubId, sku: &Sku) -> Result<StockLevel, InventoryError> {
        self.0.stock(hub, sku).await
    }
    async fn reserve(
        &self,
        now_ms: i64,
        cmd: &ReserveCommand,
    ) -> Result<ReserveOutcome, InventoryError> {
        self.0.reserve(now_ms, cmd).await
    }
    async fn transition(
        &self,
        now_ms: i64,
        hub: &HubId,
        rid: &ReservationId,
        action: Action,
    ) -> Result<TransitionOutcome, InventoryError> {
        // The bug: a confirm releases the units instead of selling them.
        let action = if action == Action::Confirm {
            Action::Release
        } else {
            action
        };
        self.0.transition(now_ms, hub, rid, action).await
    }
    async fn reservation(
        &self,
        hub: &HubId,
        rid: &ReservationId,
    ) -> Result<Option<Reservation>, InventoryError> {
        self.0.reservation(hub, rid).await
    }
    async fn locate(&self, rid: &ReservationId) -> Result<Option<HubId>, InventoryError> {
        self.0.locate(rid).await
    }
    async fn due_expiries(
        &self,
        now_ms: i64,
        hub: &HubId,
        limit: usize,
    ) -> Result<Vec<ReservationId>, InventoryError> {
        self.0.due_expiries(now_ms, hub, limit).await
    }
    async fn hubs(&self) -> Result<Vec<HubId>, InventoryError> {
        self.0.hubs().await
    }
    fn policy(&self) -> HoldPolicy {
        self.0.policy()
    }
}

#[test]
fn the_invariant_checker_catches_a_store_that_loses_sales() {
    let sc = scenario("smoke.toml");
    let out = run_with_store(
        &sc,
        &LeakyConfirm(MemoryStore::new(HoldPolicy::default())),
        &RunOptions::default(),
    )
    .unwrap();
    let inv = &out.summary.invariants;
    assert!(!inv.hold());
    assert!(inv.conservation_violations > 0, "{inv:?}");
    assert!(
        inv.details.iter().any(|d| d.contains("not conserved")),
        "{inv:?}"
    );
}

/// Erlang C: mean wait in queue for M/M/c, in seconds.
fn erlang_c_wait_s(c: u32, lambda_per_h: f64, mean_pick_s: f64) -> f64 {
    let mu = 3600.0 / mean_pick_s;
    let a = lambda_per_h / mu;
    let mut term = 1.0;
    let mut sum = 0.0;
    for k in 0..c {
        if k > 0 {
            term *= a / f64::from(k);
        }
        sum += term;
    }
    let top = term * a / f64::from(c) * f64::from(c) / (f64::from(c) - a);
    let p_wait = top / (sum + top);
    p_wait / (f64::from(c) * mu - lambda_per_h) * 3600.0
}

#[test]
fn picking_queue_wait_agrees_with_erlang_c() {
    // scenarios/mmc.toml: rho = 0.8, ~23,000 customers in the simulated week.
    let sc = scenario("mmc.toml");
    let (c, lambda, pick_s) = (
        sc.hubs[0].pickers().at(sc.start_hour()),
        sc.demand.orders_per_hour,
        sc.picking.base_s,
    );
    let out = run(&sc, &RunOptions::default()).unwrap();
    assert!(out.summary.invariants.hold());
    let warmup = sc.warmup_ms();
    let waits: Vec<f64> = out
        .orders
        .iter()
        .filter(|o| o.placed_at >= warmup)
        .filter_map(|o| Some((o.pick_started_at? - o.paid_at?) as f64 / 1000.0))
        .collect();
    assert!(waits.len() > 20_000, "{} customers", waits.len());
    // Batch means over 20 consecutive batches give a 95% confidence interval for the mean.
    let batches = 20;
    let size = waits.len() / batches;
    let means: Vec<f64> = (0..batches)
        .map(|b| waits[b * size..(b + 1) * size].iter().sum::<f64>() / size as f64)
        .collect();
    let mean = means.iter().sum::<f64>() / batches as f64;
    let var = means.iter().map(|m| (m - mean).powi(2)).sum::<f64>() / (batches - 1) as f64;
    let half_width = 2.093 * (var / batches as f64).sqrt();
    let theory = erlang_c_wait_s(c, lambda, pick_s);
    println!("M/M/{c} λ={lambda}/h pick={pick_s}s: simulated Wq {mean:.1} s ± {half_width:.1} (95%), Erlang C {theory:.1} s");
    // Hand-computed: a = 2.4, C(3, 2.4) = 0.6472, Wq = C / (c·mu - lambda) = 0.6472 / 36 h.
    assert!((theory - 64.72).abs() < 0.05, "formula check: {theory}");
    assert!(
        (mean - theory).abs() <= half_width,
        "simulated {mean:.1} ± {half_width:.1} vs Erlang C {theory:.1}"
    );
}

fn sim_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_sim"))
}

fn scenario_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../scenarios")
        .join(name)
}

#[test]
fn bad_scenarios_name_the_key_and_exit_non_zero() {
    let cases: [(&[&str], &str); 5] = [
        (&["--set", "demand.orders_per_hourz=5"], "orders_per_hourz"),
        (
            &["--set", "demand.orders_per_hour=-3"],
            "demand.orders_per_hour: must be within",
        ),
        (&["--set", "hubs[1].lat=-7.0"], "hubs[1].lat: hub is"),
        (
            &["--set", "hubs[0].pickers=0"],
            "hubs[0].pickers: zero pickers with demand",
        ),
        (
            &["--set", "catalog.restock_below=2"],
            "catalog.restock_below",
        ),
    ];
    for (args, expected) in cases {
        for command in ["validate", "run"] {
            let out = Command::new(sim_bin())
                .arg(command)
                .arg(scenario_path("smoke.toml"))
                .args(args)
                .output()
                .unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{command} {args:?}: {err}");
            assert!(err.contains(expected), "{command} {args:?}: {err}");
            assert!(!err.contains("panicked"), "{err}");
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("unknown.toml");
    std::fs::write(
        &bad,
        std::fs::read_to_string(scenario_path("smoke.toml"))
            .unwrap()
            .replace("[picking]", "[picking]\nspeed = 3"),
    )
    .unwrap();
    let out = Command::new(sim_bin())
        .args(["validate"])
        .arg(&bad)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(err.contains("picking") && err.contains("speed"), "{err}");
}

#[test]
fn an_unreachable_live_backend_names_the_url_and_how_to_start_it() {
    let port = qc_kit::testing::free_port();
    let out = Command::new(sim_bin())
        .args(["run"])
        .arg(scenario_path("smoke.toml"))
        .args(["--backend", "live", "--quiet"])
        .env("REDIS_URL", format!("redis://127.0.0.1:{port}/"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
    assert!(err.contains("scripts/ensure-stores.sh"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn memory_and_live_backends_agree_on_every_domain_outcome() {
    // Long enough for the ETA calibration windows to fill (≥ 40 deliveries): the live store
    // must not let wall time decide an answer (its windows cache is off in the twin).
    let sc = Scenario::load(
        &scenario_path("smoke.toml"),
        &[
            "scenario.duration=\"2h\"".into(),
            "demand.orders_per_hour=120".into(),
            "promo.enabled=true".into(),
            "promo.rings.count=3".into(),
            "checkout.gateway_timeout_rate=0.05".into(),
            "checkout.double_submit_rate=0.05".into(),
        ],
    )
    .unwrap();
    let memory = run(&sc, &RunOptions::default()).unwrap();
    let live = run(
        &sc,
        &RunOptions {
            backend: Backend::Live,
            ..RunOptions::default()
        },
    )
    .unwrap();
    let strip = |s: &sim::summary::Summary| {
        let mut v = serde_json::to_value(s).unwrap();
        let o = v.as_object_mut().unwrap();
        o.remove("latency");
        o.remove("engine");
        v
    };
    assert_eq!(strip(&memory.summary), strip(&live.summary));
    assert!(
        live.summary.invariants.hold(),
        "{:?}",
        live.summary.invariants
    );
    for op in [
        "reserve",
        "dispatch.create_order",
        "dispatch.flush",
        "dispatch.accept",
        "dispatch.driver_state",
        "eta.calculate",
        "eta.observe",
        "tracking.ingest",
        "tracking.status",
        "checkout",
        "outbox.relay",
        "promo.usage",
    ] {
        assert!(
            live.summary.latency.contains_key(op),
            "live mode measures {op}: {:?}",
            live.summary.latency.keys()
        );
    }
    assert!(live.summary.orders.delivered > 100 && live.summary.eta.orders > 60);
    // Every paying shopper went through the checkout saga, over Postgres and Redis here.
    let c = &live.summary.checkout;
    assert!(c.confirmed > 100 && c.replays > 0 && c.retries > 0, "{c:?}");
    assert!(c.failed_by_code.contains_key("PAYMENT_FAILED"), "{c:?}");
    assert!(
        c.failed_by_code.contains_key("PAYMENT_UNAVAILABLE"),
        "{c:?}"
    );
    assert_eq!(
        c.compensated + c.compensation_failures,
        c.sagas - c.confirmed
    );
    assert_eq!(
        (
            c.compensation_failures,
            c.charges_without_order,
            c.confirmed_without_dispatch_row
        ),
        (0, 0, 0)
    );
    assert_eq!(c.events_sent, c.events, "the relay delivered every event");
    assert!(
        live.summary.gps.fixes_sent > 1000,
        "GPS ran through Redis too"
    );
    assert!(memory.summary.latency.is_empty());
    assert_eq!(live.summary.engine.backend, "live");
}

#[test]
fn the_report_is_self_contained_with_every_chart() {
    let sc = scenario("smoke.toml");
    let (dir, _) = outputs(&sc, &RunOptions::default());
    let html = std::fs::read_to_string(dir.path().join("report.html")).unwrap();
    assert_eq!(
        html.matches("<svg").count(),
        9,
        "orders, click-to-door CDF, queue, wait histogram, riders, ETA calibration, ETA error, \
         GPS error over a trip, fill rate"
    );
    for chart in [
        "ETA calibration: stated quantile vs observed",
        "ETA error",
        "Position error over one order",
    ] {
        assert!(html.contains(chart), "{chart}");
    }
    for section in [
        "Orders",
        "Service levels",
        "Picking",
        "Riders and dispatch",
        "ETA accuracy",
        "GPS tracking",
        "Hubs",
        "Inventory",
        "Invariants",
        "Store latency",
    ] {
        assert!(html.contains(&format!("<h2>{section}</h2>")), "{section}");
    }
    assert!(
        !html.contains("<script") && !html.contains("<link") && !html.contains("src=\"http"),
        "no external resources"
    );
    assert!(
        html.contains("central") && html.contains("north"),
        "per-hub rows"
    );
}

#[test]
fn every_order_that_reaches_dispatch_is_delivered_or_fails_with_a_reason() {
    for seed in [3, 4] {
        let out = smoke_with_seed(seed);
        let s = &out.summary;
        assert!(s.invariants.hold(), "{:?}", s.invariants);
        assert_eq!(
            (s.invariants.dispatch_refusals, s.invariants.dispatch_drift),
            (0, 0)
        );
        let dispatched: Vec<_> = out
            .orders
            .iter()
            .filter(|o| o.handed_over_at.is_some())
            .collect();
        assert!(dispatched.len() > 30);
        for o in dispatched {
            match o.state {
                sim::world::OrderState::Delivered => {
                    let d = o.delivered_at.expect("delivered time");
                    assert!(
                        d > o.handed_over_at.unwrap() && o.rider.is_some(),
                        "order {}",
                        o.id
                    );
                }
                sim::world::OrderState::DispatchFailed => {
                    assert!(o.failure_reason.is_some(), "order {}", o.id)
                }
                other => panic!("order {} ended {other:?}", o.id),
            }
        }
        assert!(s.dispatch.optimal_cost <= s.dispatch.greedy_cost + 1e-9);
        assert!(s.service.click_to_door_s.p50 > s.service.click_to_handover_s.p50);
    }
}

#[test]
fn riders_answer_offers_and_rejections_are_reassigned() {
    // Riders who mostly refuse: offers are rejected and reassigned with backoff; after the
    // last attempt an order goes back to the pool, so orders still reach the door.
    let sc = Scenario::load(
        &scenario_path("smoke.toml"),
        &["riders.accept_probability=0.3".into()],
    )
    .unwrap();
    let out = run(&sc, &RunOptions::default()).unwrap();
    let s = &out.summary;
    assert!(s.invariants.hold(), "{:?}", s.invariants);
    assert!(
        s.riders.offers_rejected > s.riders.offers / 2,
        "{:?}",
        s.riders
    );
    assert!(
        s.riders.reassignments > 0 && s.riders.repooled > 0,
        "{:?}",
        s.riders
    );
    assert!(out
        .orders
        .iter()
        .any(|o| o.offers > 4 && o.delivered_at.is_some()));
}

/// Issue #9: a paid order that can still be delivered never fails for the reassignment limit
/// alone; it fails only when its deadline passes, with that reason.
#[test]
fn an_understaffed_city_fails_no_order_for_the_retry_limit() {
    let sc = scenario("understaffed.toml");
    let out = run(&sc, &RunOptions::default()).unwrap();
    let s = &out.summary;
    assert!(s.invariants.hold(), "{:?}", s.invariants);
    let by_limit = s
        .orders
        .lost_by_reason
        .get("MAX_REASSIGNMENTS")
        .copied()
        .unwrap_or(0);
    println!(
        "understaffed: {} paid orders, {} delivered, {} failed for the reassignment limit, lost {:?}, re-pooled {}",
        s.orders.delivered + s.orders.cancelled_dispatch,
        s.orders.delivered,
        by_limit,
        s.orders.lost_by_reason,
        s.riders.repooled
    );
    assert_eq!(by_limit, 0);
    assert!(s.riders.repooled > 0, "the scenario exhausts reassignments");
    let deadline_ms = (sc.dispatch.deadline_min * 60_000.0) as i64;
    let late: Vec<_> = out
        .orders
        .iter()
        .filter(|o| o.failure_reason.as_deref() == Some("DEADLINE_PASSED"))
        .collect();
    assert!(!late.is_empty(), "an understaffed city misses deadlines");
    for o in &late {
        assert_eq!(o.state, sim::world::OrderState::DispatchFailed);
        assert!(o.delivered_at.is_none());
    }
    // Nobody is failed before their deadline: every paid order was delivered, or lost at or
    // after paid + deadline (the event log's time of the failure).
    for o in out.orders.iter().filter(|o| o.paid_at.is_some()) {
        assert!(
            o.delivered_at.is_some() || o.failure_reason.is_some(),
            "order {} ended {:?}",
            o.id,
            o.state
        );
    }
    let failed_at = out.log.failures();
    for (id, t) in failed_at {
        let o = &out.orders[id as usize];
        assert!(
            t >= o.paid_at.unwrap() + deadline_ms,
            "order {id} failed early"
        );
    }
}

/// Overload is a scenario, not a crash: far past capacity the run still terminates, every
/// order ends with a reason, and the loss is reported.
#[test]
fn an_overloaded_city_terminates_and_reports_the_loss() {
    let sc = Scenario::load(
        &scenario_path("smoke.toml"),
        &["demand.orders_per_hour=1200".into()],
    )
    .unwrap();
    let out = run(&sc, &RunOptions::default()).unwrap();
    let s = &out.summary;
    assert!(s.invariants.hold(), "{:?}", s.invariants);
    assert_eq!(s.orders.in_progress, 0);
    let lost: u64 = s.orders.lost_by_reason.values().sum();
    println!(
        "overloaded smoke: placed {}, delivered {}, lost {:?}",
        s.orders.placed, s.orders.delivered, s.orders.lost_by_reason
    );
    assert!(
        lost > 0
            && s.orders
                .lost_by_reason
                .contains_key("NOT_PICKED_BY_DEADLINE")
    );
    assert!(
        !s.orders.lost_by_reason.contains_key("DRAIN_LIMIT"),
        "deadlines end it first"
    );
    // The run's length is bounded by the scenario, not by the backlog.
    assert!(out.engine.virtual_ms <= sc.duration_ms() + 3 * 3_600_000);
}

/// Issue #11's GPS check in the twin, on the city (20 hubs, 10,000 orders, ~1.1 M fixes):
/// σ = 10 m noise, 2% outliers of 200 m, every fix through the tracking core. The issue's
/// targets: filtered RMSE ≥ 50% below raw; ≥ 99% of outliers rejected; ≤ 1 good fix rejected as
/// wrong per 10 000 (the no-movement `duplicate` filter, working as configured, refuses another
/// ~2 per 10 000 standing fixes; reported apart).
#[test]
fn gps_fixes_through_tracking_cut_the_error_and_catch_outliers() {
    let out = run(&scenario("city.toml"), &RunOptions::default()).unwrap();
    let g = out.summary.gps;
    let good = g.fixes_sent - g.outliers_sent;
    let wrong: u64 = g
        .good_rejected
        .iter()
        .filter(|(reason, _)| reason.as_str() != "duplicate")
        .map(|(_, n)| n)
        .sum();
    let wrong_per_10k = wrong as f64 * 10_000.0 / good as f64;
    println!(
        "city: {} fixes, raw RMSE {} m (noise only {} m), filtered {} m ({:.1}% lower); outliers \
         rejected {}/{} ({:.2}%); good fixes refused {:?}: as wrong {wrong_per_10k:.2} per 10k",
        g.fixes_sent,
        g.raw_rmse_m,
        g.raw_good_rmse_m,
        g.filtered_rmse_m,
        g.filtered_improvement * 100.0,
        g.outliers_rejected,
        g.outliers_sent,
        g.outliers_rejected_share * 100.0,
        g.good_rejected
    );
    assert!(g.fixes_sent > 1_000_000, "{} fixes", g.fixes_sent);
    assert!(g.dropped > 0 && g.accepted < g.fixes_sent);
    assert!(g.filtered_improvement >= 0.5, "{g:?}");
    assert!(g.filtered_rmse_m < g.raw_good_rmse_m, "{g:?}");
    assert!(
        g.outliers_rejected_share >= 0.99,
        "{}/{}",
        g.outliers_rejected,
        g.outliers_sent
    );
    assert!(wrong_per_10k <= 1.0, "{wrong}/{good}");
}

/// Issue #12 in the twin: every order through the promo core (apply at checkout, release when
/// it does not go through), with fraud rings. Budgets are never overspent (the new-user offer's
/// runs out, exactly); rings are caught once more of their accounts shop than the limit, and
/// honest households are not flagged.
#[test]
fn promos_in_the_twin_never_overspend_and_catch_rings_not_households() {
    let sc = Scenario::load(
        &scenario_path("lunch-peak.toml"),
        &[
            "promo.enabled=true".into(),
            "promo.rings.count=10".into(),
            "gps.enabled=false".into(),
        ],
    )
    .unwrap();
    let p = run(&sc, &RunOptions::default()).unwrap().summary.promo;
    println!(
        "promo: {} orders tried, {} discounted (Rp {} each), {} rules applied, {} given back; \
         rings {} shopping, {} detectable, {} caught ({:.0}%); honest {} of {} flagged; overspend Rp {}",
        p.orders_tried,
        p.orders_discounted,
        p.discount_per_order,
        p.redemptions,
        p.releases,
        p.rings_active,
        p.rings_detectable,
        p.rings_caught,
        p.rings_caught_share * 100.0,
        p.honest_flagged,
        p.honest_shoppers,
        p.overspend
    );
    for r in &p.rules {
        println!(
            "  {}: {} held, spent {} of {}",
            r.rule, r.redemptions, r.spent, r.budget
        );
        assert!(r.budget == 0 || r.spent <= r.budget, "{r:?}");
    }
    assert_eq!(p.overspend, 0);
    assert!(
        p.rules.iter().any(|r| r.budget > 0 && r.spent == r.budget),
        "a budget ran out, so the bound was tested"
    );
    assert!(
        p.releases > 0,
        "abandoned and failed orders gave quota back"
    );
    assert!(p.rings_detectable >= 5, "{p:?}");
    assert!(p.rings_caught_share >= 0.9, "{p:?}");
    assert!(p.honest_flagged_share <= 0.02, "{p:?}");
}

#[test]
fn shoppers_who_search_find_what_they_want_and_substitute_what_is_out_of_stock() {
    // A thousand products (many sizes and variants of each kind), everyone searching.
    let sc = Scenario::load(
        &scenario_path("smoke.toml"),
        &["catalog.skus=1000".into(), "search.share=1".into()],
    )
    .unwrap();
    let s = run(&sc, &RunOptions::default()).unwrap().summary.search;
    for (kind, r) in s.by_kind.iter().chain([(&"all".to_string(), &s.all)]) {
        println!(
            "search {kind}: {} searches, zero results {:.1}%, first {:.1}%, top 3 {:.1}%, first page {:.1}%, MRR {:.3}",
            r.searches,
            r.zero_result_rate * 100.0,
            r.top1_rate * 100.0,
            r.top3_rate * 100.0,
            r.first_page_rate * 100.0,
            r.mrr
        );
    }
    assert_eq!(
        s.by_kind.keys().collect::<Vec<_>>(),
        ["english", "exact", "prefix", "typo"]
    );
    assert_eq!(
        s.all.searches,
        s.by_kind.values().map(|r| r.searches).sum::<u64>()
    );
    assert!(s.all.searches >= 150, "{s:?}");
    // What the judged queries promise, seen from the shoppers' side.
    assert_eq!(s.all.zero_results, 0, "{s:?}");
    assert!(s.all.first_page_rate >= 0.95, "{s:?}");
    for (kind, r) in &s.by_kind {
        assert!(r.top3_rate >= 0.7, "{kind}: {r:?}");
    }

    // Stock so thin that shoppers see products out of stock and take another.
    let thin = Scenario::load(
        &scenario_path("smoke.toml"),
        &[
            "catalog.skus=1000".into(),
            "search.share=1".into(),
            "catalog.initial_stock=1".into(),
            "catalog.min_stock=0".into(),
            "catalog.restock_every=\"0s\"".into(),
        ],
    )
    .unwrap();
    let t = run(&thin, &RunOptions::default()).unwrap().summary;
    println!(
        "thin stock: {} substituted, {} dropped, {} left with nothing, {} stockouts",
        t.search.substituted, t.search.dropped, t.search.shoppers_left, t.orders.cancelled_stockout
    );
    assert!(t.search.substituted > 0, "{:?}", t.search);
}

#[test]
fn a_flash_sale_goes_to_humans_blocks_bots_and_never_oversells() {
    let sc = scenario("flash-sale.toml");
    let f = run(&sc, &RunOptions::default()).unwrap().summary.flash_sale;
    println!(
        "flash sale: {} units, {} to humans ({:.1}%), {} to bots; oversell {}; bots blocked {} of {} ({:.1}%), \
         humans falsely blocked {} of {} ({:.2}%); queue wait p50 {:.0} s p90 {:.0} s; fairness {:.3}; \
         requests: humans {}, bots {}",
        f.units,
        f.units_to_humans,
        f.humans_share * 100.0,
        f.units_to_bots,
        f.oversell,
        f.bots_blocked,
        f.bots,
        f.bots_blocked_share * 100.0,
        f.humans_blocked,
        f.humans,
        f.humans_blocked_share * 100.0,
        f.queue_wait_s.p50,
        f.queue_wait_s.p90,
        f.fairness,
        f.human_requests,
        f.bot_requests
    );
    assert_eq!(f.oversell, 0);
    assert_eq!(
        f.reserved_at_end, 0,
        "the reaper returned every unpaid unit"
    );
    assert_eq!(f.orders_recorded, f.units_to_humans + f.units_to_bots);
    assert!(f.units_to_humans + f.units_to_bots <= f.units);
    assert!(f.bots_blocked_share >= 0.95, "{f:?}");
    assert!(f.humans_blocked_share <= 0.01, "{f:?}");
    assert!(f.humans_share >= 0.9, "{f:?}");
    assert!(
        f.units_to_humans >= f.units * 9 / 10,
        "the sale sold out to people: {f:?}"
    );
    assert!(
        f.bot_requests >= 10 * f.human_requests,
        "bots hammer: {f:?}"
    );
    assert!(
        f.fairness >= 0.99,
        "first come, first served after opening: {f:?}"
    );
}

#[test]
fn the_flash_sale_runs_alike_on_memory_and_on_redis_and_postgres() {
    let small = [
        "flash_sale.humans=300".to_string(),
        "flash_sale.units=40".into(),
        "flash_sale.bots=4".into(),
        "flash_sale.lasts=\"5m\"".into(),
        "search.share=0".into(),
    ];
    let sc = Scenario::load(&scenario_path("flash-sale.toml"), &small).unwrap();
    let memory = run(&sc, &RunOptions::default()).unwrap().summary.flash_sale;
    let live = run(
        &sc,
        &RunOptions {
            backend: Backend::Live,
            ..RunOptions::default()
        },
    )
    .unwrap()
    .summary;
    assert!(
        live.latency.contains_key("flash.checkout"),
        "{:?}",
        live.latency.keys()
    );
    assert_eq!(memory, live.flash_sale);
    assert_eq!(
        memory.units_to_humans + memory.units_to_bots,
        40,
        "{memory:?}"
    );
}
