//! One run: build the world on the chosen backend, drive it to the end, check the invariants,
//! summarise, and write `events.parquet`, `summary.json`, `engine.json` and `report.html`.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::time::Instant;

use std::sync::Arc;

use qc_dispatch::{DispatchPolicy, DispatchRepo, Dispatcher, MemoryRepo, PgRepo};
use qc_eta::{EtaStore, MemoryEtaStore, RedisEtaStore};
use qc_inventory::pg::{reconcile, EventWriter};
use qc_inventory::redis_store::InventoryKeys;
use qc_inventory::store::HoldPolicy;
use qc_inventory::{MemoryStore, RedisStore, StockStore};
use qc_kit::config::{EnvSource, StoreConfig};
use qc_kit::ids::SequentialIds;
use qc_kit::redis_kit::{delete_prefix, KeyPrefix};
use serde::Serialize;

use crate::backend::{Blocking, Exec, Immediate};
use crate::engine::SimTime;
use crate::ids::{HubIx, OrderIx};
use crate::log::EventLog;
use crate::scenario::Scenario;
use crate::summary::*;
use crate::world::{Order, OrderState, SimError, World};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Memory,
    Live,
}

impl Backend {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "memory" => Some(Self::Memory),
            "live" => Some(Self::Live),
            _ => None,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::Live => "live",
        }
    }
}

#[derive(Debug, Clone)]
pub struct RunOptions {
    pub backend: Backend,
    /// Overrides `scenario.seed`.
    pub seed: Option<u64>,
    /// Live mode: keep the key prefix and schema after the run.
    pub keep: bool,
    /// Print progress to stderr.
    pub progress: bool,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            backend: Backend::Memory,
            seed: None,
            keep: false,
            progress: false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{0}")]
    Backend(String),
    #[error(transparent)]
    Sim(#[from] SimError),
    #[error("writing outputs: {0}")]
    Output(String),
}

/// Wall-clock figures (not deterministic, so outside summary.json).
#[derive(Debug, Clone, Serialize)]
pub struct EngineStats {
    pub events: u64,
    pub wall_ms: u64,
    pub events_per_s: f64,
    pub virtual_ms: i64,
    pub speedup: f64,
}

pub struct RunOutput {
    pub summary: Summary,
    pub log: EventLog,
    pub orders: Vec<Order>,
    pub engine: EngineStats,
}

/// Progress on stderr: a redrawn bar on a terminal, a plain line per 10% otherwise.
struct Progress {
    enabled: bool,
    tty: bool,
    total_ms: i64,
    last_decile: i64,
    started: Instant,
    last_draw: Option<Instant>,
}

impl Progress {
    fn new(enabled: bool, total_ms: i64) -> Self {
        Self {
            enabled,
            tty: std::io::stderr().is_terminal(),
            total_ms: total_ms.max(1),
            last_decile: -1,
            started: Instant::now(),
            last_draw: None,
        }
    }

    fn update(&mut self, t: SimTime, events: u64) {
        if !self.enabled {
            return;
        }
        let pct = (t.min(self.total_ms) * 100 / self.total_ms).clamp(0, 100);
        let rate = events as f64 / self.started.elapsed().as_secs_f64().max(1e-9);
        let clock = |ms: i64| {
            format!(
                "{:02}:{:02}:{:02}",
                ms / 3_600_000,
                ms / 60_000 % 60,
                ms / 1000 % 60
            )
        };
        if self.tty {
            // At most ten redraws a second, but always the final state.
            if pct < 100
                && self
                    .last_draw
                    .is_some_and(|d| d.elapsed().as_millis() < 100)
            {
                return;
            }
            self.last_draw = Some(Instant::now());
            let filled = (pct / 4) as usize;
            eprint!(
                "\r[{}{}] {pct:3}% virtual {} / {}  {:.2}M events/s ",
                "#".repeat(filled),
                " ".repeat(25 - filled),
                clock(t.min(self.total_ms)),
                clock(self.total_ms),
                rate / 1e6
            );
            let _ = std::io::stderr().flush();
        } else if pct / 10 > self.last_decile {
            self.last_decile = pct / 10;
            eprintln!(
                "progress {:3}%  virtual {}  events {events}",
                self.last_decile * 10,
                clock(t.min(self.total_ms))
            );
        }
    }

    fn finish(&self) {
        if self.enabled && self.tty {
            eprintln!();
        }
    }
}

/// Runs a scenario to the end.
pub fn run(sc: &Scenario, opts: &RunOptions) -> Result<RunOutput, RunError> {
    let seed = opts.seed.unwrap_or(sc.scenario.seed);
    match opts.backend {
        Backend::Memory => run_with_store(sc, &MemoryStore::new(HoldPolicy::default()), opts),
        Backend::Live => run_live(sc, seed, opts),
    }
}

/// The production Dispatcher over `repo`, with the scenario's policy and deterministic ids.
pub fn dispatcher_for<R: DispatchRepo>(sc: &Scenario, repo: R) -> Dispatcher<R> {
    let policy = DispatchPolicy {
        offer_timeout_ms: (sc.riders.offer_timeout_s * 1000.0).round() as i64,
        max_batch: sc.dispatch.max_batch as usize,
        matcher: sc.dispatch.matcher,
        deadline_ms: (sc.dispatch.deadline_min * 60_000.0).round() as i64,
    };
    Dispatcher::new(repo, policy).with_ids(Arc::new(SequentialIds::new("a")))
}

/// Runs on any stock store whose operations complete at once (the memory adapter, or a test
/// double), with the memory adapters of Dispatch and ETA.
pub fn run_with_store<S: StockStore>(
    sc: &Scenario,
    store: &S,
    opts: &RunOptions,
) -> Result<RunOutput, RunError> {
    let seed = opts.seed.unwrap_or(sc.scenario.seed);
    let world = World::new(
        sc,
        store,
        dispatcher_for(sc, MemoryRepo::new()),
        MemoryEtaStore::new(),
        Immediate,
        seed,
    );
    let mut out = drive(sc, seed, opts, world, |_, _| Ok(0))?;
    if sc.flash_sale.enabled {
        out.summary.flash_sale = crate::flash::FlashTwin::new(
            &sc.flash_sale,
            qc_flashsale::MemoryFlash::new(),
            qc_kit::idempotency::MemoryIdempotency::default(),
            qc_flashsale::orders::MemoryOrders::default(),
            &mut Immediate,
            &crate::rng::Streams::new(seed),
            crate::world::DAY_EPOCH_MS + sc.start_of_day_ms(),
        )
        .run()
        .map_err(RunError::Backend)?;
    }
    Ok(out)
}

fn run_live(sc: &Scenario, seed: u64, opts: &RunOptions) -> Result<RunOutput, RunError> {
    let env = EnvSource::from_process();
    let mut r = env.reader();
    let mut cfg = StoreConfig::read(&mut r);
    r.finish().map_err(|e| RunError::Backend(e.to_string()))?;
    let tag = uuid::Uuid::new_v4().simple().to_string();
    cfg.key_prefix = format!("sim{}:", &tag[..10]);
    cfg.db_schema = format!("sim_{}", &tag[..10]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| RunError::Backend(format!("runtime: {e}")))?;
    let how = "start local Redis and Postgres with scripts/ensure-stores.sh, or set REDIS_URL / DATABASE_URL";
    let (conn, pool) = rt.block_on(async {
        let conn = qc_kit::redis_kit::connect(&cfg.redis_url, 2000)
            .await
            .map_err(|e| RunError::Backend(format!("live backend: {e}; {how}")))?;
        let pool = qc_kit::pg::connect_and_migrate(&cfg, 4)
            .await
            .map_err(|e| RunError::Backend(format!("live backend: {e}; {how}")))?;
        Ok::<_, RunError>((conn, pool))
    })?;
    let prefix = KeyPrefix::new(cfg.key_prefix.clone());
    let keys = InventoryKeys::new(prefix.clone());
    let store = RedisStore::new(conn.clone(), prefix.clone(), HoldPolicy::default(), 5000);
    let mut world = World::new(
        sc,
        &store,
        dispatcher_for(sc, PgRepo::new(pool.clone())),
        RedisEtaStore::new(conn.clone(), prefix.clone(), 5000).with_windows_cache_ms(0),
        Blocking::new(rt),
        seed,
    );
    if let Some(g) = world.gps.as_mut() {
        g.use_redis(qc_tracking::RedisTrackingStore::new(
            conn.clone(),
            prefix.clone(),
            5000,
        ));
    }
    if let Some(p) = world.promo.as_mut() {
        p.use_redis(qc_promo::RedisCounters::new(
            conn.clone(),
            prefix.clone(),
            5000,
        ));
        world.checkout.saga.promos = crate::promo::TwinPromos::new(Some(p.core()));
    }
    world
        .checkout
        .go_live(pool.clone(), conn.clone(), prefix.clone());
    let result = drive(
        sc,
        seed,
        opts,
        world,
        |exec: &mut Blocking, hubs: &[qc_inventory::HubId]| {
            // Let the event writer catch up, then compare Postgres with Redis hub by hub.
            exec.rt
                .block_on(async {
                    let writer_conn = qc_kit::redis_kit::connect(&cfg.redis_url, 5000)
                        .await
                        .map_err(|e| e.to_string())?;
                    let mut writer = EventWriter::new(
                        writer_conn,
                        pool.clone(),
                        keys.clone(),
                        "sim".into(),
                        5000,
                    );
                    writer.drain().await.map_err(|e| e.to_string())?;
                    let mut drift = 0;
                    let mut c = conn.clone();
                    for hub in hubs {
                        let report = reconcile(&pool, &store, &mut c, &keys, hub, 5000)
                            .await
                            .map_err(|e| e.to_string())?;
                        drift += report.mismatches.len() as u64;
                    }
                    Ok::<u64, String>(drift)
                })
                .map_err(RunError::Backend)
        },
    );
    let result = match result {
        Ok(mut out) if sc.flash_sale.enabled => {
            // The city's runtime is gone with its world: a fresh one, with its own connections.
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            let (fconn, fpool) = rt.block_on(async {
                let c = qc_kit::redis_kit::connect(&cfg.redis_url, 5000).await;
                let p = qc_kit::pg::connect(&cfg, 2).await;
                match (c, p) {
                    (Ok(c), Ok(p)) => Ok((c, p)),
                    (Err(e), _) | (_, Err(e)) => {
                        Err(RunError::Backend(format!("live backend: {e}")))
                    }
                }
            })?;
            let mut exec = Blocking::new(rt);
            let flash = crate::flash::FlashTwin::new(
                &sc.flash_sale,
                qc_flashsale::RedisFlash::new(fconn.clone(), prefix.clone(), 5000),
                qc_kit::idempotency::RedisIdempotency {
                    conn: fconn,
                    prefix: prefix.clone(),
                    timeout_ms: 5000,
                    scope: "flash",
                },
                qc_flashsale::orders::PgOrders { pool: fpool },
                &mut exec,
                &crate::rng::Streams::new(seed),
                crate::world::DAY_EPOCH_MS + sc.start_of_day_ms(),
            )
            .run()
            .map_err(RunError::Backend)?;
            out.summary.flash_sale = flash;
            out.summary.latency.extend(exec.latency());
            Ok(out)
        }
        other => other,
    };
    if !opts.keep {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        // The run's runtime is gone: the clean-up connects on its own.
        rt.block_on(async {
            if let Ok(mut c) = qc_kit::redis_kit::connect(&cfg.redis_url, 5000).await {
                let _ = delete_prefix(&mut c, &prefix).await;
            }
            let _ = qc_kit::pg::drop_schema(&cfg).await;
        });
    } else if opts.progress {
        eprintln!(
            "kept live state: QC_KEY_PREFIX={} QC_DB_SCHEMA={}",
            cfg.key_prefix, cfg.db_schema
        );
    }
    result
}

/// Drives a world to the end and summarises it; `drift` checks Redis against Postgres (live).
fn drive<S: StockStore, R: DispatchRepo, E: EtaStore, X: Exec>(
    sc: &Scenario,
    seed: u64,
    opts: &RunOptions,
    mut world: World<'_, S, R, E, X>,
    drift: impl FnOnce(&mut X, &[qc_inventory::HubId]) -> Result<u64, RunError>,
) -> Result<RunOutput, RunError> {
    let started = Instant::now();
    let mut progress = Progress::new(opts.progress, sc.duration_ms());
    world.run(|t, n| progress.update(t, n))?;
    progress.finish();
    world.close();
    let wall = started.elapsed();
    let hubs: Vec<qc_inventory::HubId> = world.hubs.iter().map(|h| h.id.clone()).collect();
    let mut invariants = check_invariants(&mut world)?;
    invariants.dispatch_refusals = world.fleet.stats.refused;
    invariants
        .details
        .extend(world.fleet.stats.refused_details.iter().cloned());
    invariants.redis_pg_drift = drift(&mut world.exec, &hubs)?;
    if invariants.redis_pg_drift > 0 {
        invariants.details.push(format!(
            "{} Redis/Postgres mismatches after reconciliation",
            invariants.redis_pg_drift
        ));
    }
    let summary = summarise(sc, seed, opts.backend, &mut world, invariants)?;
    let events = world.events_processed();
    let virtual_ms = world.now();
    let engine = EngineStats {
        events,
        wall_ms: wall.as_millis() as u64,
        events_per_s: (events as f64 / wall.as_secs_f64().max(1e-9)).round(),
        virtual_ms,
        speedup: (virtual_ms as f64 / (wall.as_secs_f64() * 1000.0).max(1e-9)).round(),
    };
    Ok(RunOutput {
        summary,
        log: std::mem::take(&mut world.log),
        orders: std::mem::take(&mut world.orders),
        engine,
    })
}

/// End-of-run invariants: no oversell, every order terminal, stock conserved per (hub, sku).
fn check_invariants<S: StockStore, R: DispatchRepo, E: EtaStore, X: Exec>(
    world: &mut World<'_, S, R, E, X>,
) -> Result<Invariants, RunError> {
    let mut inv = Invariants::default();
    let note = |inv: &mut Invariants, msg: String| {
        if inv.details.len() < 20 {
            inv.details.push(msg);
        }
    };
    inv.non_terminal_orders = world
        .orders
        .iter()
        .filter(|o| !o.state.is_terminal())
        .count() as u64;
    if inv.non_terminal_orders > 0 {
        let n = inv.non_terminal_orders;
        note(
            &mut inv,
            format!("{n} orders did not reach a terminal state"),
        );
    }
    // Every order the world saw delivered or failed by Dispatch is so in Dispatch's records.
    for o in (0..world.orders.len()).map(OrderIx) {
        let expected = match world.orders[o.0].state {
            OrderState::Delivered => qc_dispatch::model::OrderStatus::Delivered,
            OrderState::DispatchFailed => qc_dispatch::model::OrderStatus::Failed,
            _ => continue,
        };
        let key = o.key();
        let rec = {
            let d = &world.fleet.dispatch;
            world.exec.run("dispatch.order", d.order(&key))
        };
        let agrees = rec.as_ref().is_ok_and(|r| {
            r.status == expected
                && (expected != qc_dispatch::model::OrderStatus::Failed
                    || r.failure_reason == world.orders[o.0].failure_reason)
        });
        if !agrees {
            inv.dispatch_drift += 1;
            note(
                &mut inv,
                format!(
                    "order {key} ended {:?} in the world but Dispatch has {:?}",
                    world.orders[o.0].state,
                    rec.map(|r| (r.status, r.failure_reason))
                ),
            );
        }
    }
    let ledger: Vec<((usize, usize), crate::world::Ledger)> =
        world.ledger.iter().map(|(k, v)| (*k, *v)).collect();
    for ((h, s), l) in ledger {
        let (hub, sku) = (world.hubs[h].id.clone(), world.skus[s].clone());
        let level = world
            .exec
            .run("stock", world_store(world).stock(&hub, &sku))
            .map_err(SimError::from)?;
        if level.counter_sum < 0 || l.sold > l.initial + l.restocked {
            inv.oversell += 1;
            note(
                &mut inv,
                format!(
                    "oversell at {hub}/{sku}: counter {}, sold {} of {}",
                    level.counter_sum,
                    l.sold,
                    l.initial + l.restocked
                ),
            );
        }
        if l.initial + l.restocked != level.counter_sum + level.reserved + l.sold {
            inv.conservation_violations += 1;
            note(
                &mut inv,
                format!(
                    "stock not conserved at {hub}/{sku}: initial {} + restocked {} != available {} + held {} + sold {}",
                    l.initial, l.restocked, level.counter_sum, level.reserved, l.sold
                ),
            );
        }
    }
    Ok(inv)
}

fn world_store<'a, S: StockStore, R: DispatchRepo, E: EtaStore, X: Exec>(
    world: &World<'a, S, R, E, X>,
) -> &'a S {
    world.store()
}

fn summarise<S: StockStore, R: DispatchRepo, E: EtaStore, X: Exec>(
    sc: &Scenario,
    seed: u64,
    backend: Backend,
    world: &mut World<'_, S, R, E, X>,
    invariants: Invariants,
) -> Result<Summary, RunError> {
    let warmup = sc.warmup_ms();
    let mut orders = order_counts(&world.orders);
    orders.unserviceable = world.unserviceable;
    orders.placed += world.unserviceable;
    let (pick_wait_s, pick_time_s, click_to_handover_s) = service(&world.orders, warmup);
    let door_s = click_to_door(&world.orders, warmup);
    let door = Dist::of(door_s.clone());
    // Pickers are measured over their working period: until the last order was picked.
    let elapsed = world.last_pick_done.max(1);
    let picker_ms = |i: usize| {
        sc.hubs[i]
            .pickers()
            .person_ms(sc.start_of_day_ms(), 0, elapsed)
    };
    let capacity: i64 = (0..world.hubs.len()).map(picker_ms).sum();
    let busy: i64 = world.hubs.iter().map(|h| h.busy_ms).sum();
    let mut inventory = Inventory {
        reservations: world.orders.iter().filter(|o| o.rid.is_some()).count() as u64,
        confirmed: world.confirmed,
        released: world.released,
        expired_by_reaper: world.expired_by_reaper,
        expired_at_payment: world.expired_lazily,
        stockout_orders: orders.cancelled_stockout,
        ..Inventory::default()
    };
    for l in world.ledger.values() {
        inventory.units_initial += l.initial;
        inventory.units_restocked += l.restocked;
        inventory.units_sold += l.sold;
    }
    let pairs: Vec<(usize, usize)> = world.ledger.keys().copied().collect();
    for (h, s) in pairs {
        let (hub, sku) = (world.hubs[h].id.clone(), world.skus[s].clone());
        let level = world
            .exec
            .run("stock", world_store(world).stock(&hub, &sku))
            .map_err(SimError::from)?;
        inventory.units_available_at_end += level.counter_sum;
        inventory.units_held_at_end += level.reserved;
    }
    let hubs = world
        .hubs
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let mine: Vec<Order> = world
                .orders
                .iter()
                .filter(|o| o.hub == HubIx(i))
                .cloned()
                .collect();
            let counts = order_counts(&mine);
            let riders: Vec<&crate::fleet::Rider> = world
                .fleet
                .riders
                .iter()
                .filter(|r| r.home == HubIx(i))
                .collect();
            HubRow {
                hub: h.id.to_string(),
                pickers: sc.hubs[i].pickers().pool(),
                riders: riders.len() as u32,
                placed: counts.placed,
                delivered: counts.delivered,
                stockouts: counts.cancelled_stockout,
                pick_wait_p90_s: service(&mine, warmup).0.p90,
                picker_utilisation: ratio(h.busy_ms as f64, picker_ms(i) as f64),
                click_to_door_p90_s: Dist::of(click_to_door(&mine, warmup)).p90,
                rider_utilisation: ratio(
                    riders.iter().map(|r| r.busy_ms).sum::<i64>() as f64,
                    riders.iter().map(|r| r.on_shift_ms).sum::<i64>() as f64,
                ),
            }
        })
        .collect();
    let sku_names: Vec<String> = world.skus.iter().map(ToString::to_string).collect();
    let served = (orders.placed - orders.unserviceable) as f64;
    let stockout_rate = ratio(orders.cancelled_stockout as f64, served);
    let lost_rate = ratio(
        orders.cancelled_dispatch as f64,
        (orders.delivered + orders.handed_over + orders.cancelled_dispatch) as f64,
    );
    let slo = vec![
        SloRow {
            name: "stockout_rate".into(),
            target: sc.slo.max_stockout_rate,
            actual: stockout_rate,
            met: stockout_rate <= sc.slo.max_stockout_rate,
        },
        SloRow {
            name: "lost_rate".into(),
            target: sc.slo.max_lost_rate,
            actual: lost_rate,
            met: lost_rate <= sc.slo.max_lost_rate,
        },
        SloRow {
            name: "pick_wait_p90_s".into(),
            target: sc.slo.pick_wait_p90_s,
            actual: pick_wait_s.p90,
            met: pick_wait_s.p90 <= sc.slo.pick_wait_p90_s,
        },
        SloRow {
            name: "click_to_door_p90_min".into(),
            target: sc.slo.click_to_door_p90_min,
            actual: ratio(door.p90, 60.0),
            met: door.p90 <= sc.slo.click_to_door_p90_min * 60.0,
        },
    ];
    let f = &world.fleet.stats;
    let on_shift_ms: i64 = world.fleet.riders.iter().map(|r| r.on_shift_ms).sum();
    let riders = Riders {
        riders: world.fleet.riders.len(),
        utilisation: ratio(
            world.fleet.riders.iter().map(|r| r.busy_ms).sum::<i64>() as f64,
            on_shift_ms as f64,
        ),
        orders_per_rider_hour: ratio(orders.delivered as f64, on_shift_ms as f64 / 3_600_000.0),
        offers: f.offers,
        offers_rejected: f.offers_rejected,
        offers_timed_out: f.offers_timed_out,
        reassignments: f.reassignments,
        repooled: f.repooled,
    };
    let dispatch = DispatchInfo {
        matcher: format!("{:?}", sc.dispatch.matcher).to_lowercase(),
        batches: f.batches,
        batching_rate: ratio(
            f.orders_in_multi_order_batches as f64,
            f.batched_orders as f64,
        ),
        mean_pickup_km: ratio(f.pickup_km, f.pickups as f64),
        greedy_cost: (f.greedy_cost * 1000.0).round() / 1000.0,
        optimal_cost: (f.optimal_cost * 1000.0).round() / 1000.0,
        greedy_gap_pct: ratio(
            (f.greedy_cost - f.optimal_cost) * 100.0,
            f.optimal_cost.abs(),
        ),
        compared_batches: f.compared_batches,
    };
    let checkout = {
        let co = &world.checkout;
        let audit = world
            .exec
            .run("checkout.audit", co.audit())
            .map_err(SimError::Unexpected)?;
        co.summarise(audit)
    };
    Ok(Summary {
        scenario: ScenarioInfo {
            name: sc.scenario.name.clone(),
            seed,
            start: sc.scenario.start.to_string(),
            duration_ms: sc.duration_ms(),
            warmup_ms: warmup,
            hubs: world.hubs.len(),
            skus: world.skus.len(),
        },
        orders,
        service: Service {
            pick_wait_s,
            pick_time_s,
            click_to_handover_s,
            within_10_min: ratio(
                door_s.iter().filter(|s| **s <= 600.0).count() as f64,
                door_s.len() as f64,
            ),
            within_15_min: ratio(
                door_s.iter().filter(|s| **s <= 900.0).count() as f64,
                door_s.len() as f64,
            ),
            click_to_door_s: door,
            picker_utilisation: ratio(busy as f64, capacity as f64),
        },
        inventory,
        riders,
        dispatch,
        eta: crate::eta::summarise(&world.eta, warmup, sc.eta.model.as_str()),
        gps: world
            .gps
            .as_ref()
            .map(crate::gps::GpsTwin::summarise)
            .unwrap_or_default(),
        promo: {
            let now = world.now_ms();
            match world.promo.as_ref() {
                Some(p) => p.summarise(&mut world.exec, now),
                None => Default::default(),
            }
        },
        checkout,
        search: world
            .search
            .as_ref()
            .map(crate::search::SearchTwin::summarise)
            .unwrap_or_default(),
        // Run after the city (`run_with_store`, `run_live`): a sale of its own.
        flash_sale: Default::default(),
        hubs,
        skus: sku_rows(&world.orders, &sku_names, 50),
        slo,
        invariants,
        latency: world.exec.latency(),
        engine: EngineInfo {
            backend: backend.name().into(),
            events: world.events_processed(),
            log_rows: world.log.len() as u64,
        },
        event_log_hash: world.log.hash_hex(),
    })
}

/// Writes the run folder: events.parquet, summary.json, engine.json, report.html.
pub fn write_outputs(out: &RunOutput, dir: &Path) -> Result<(), RunError> {
    let err = |e: &dyn std::fmt::Display| RunError::Output(format!("{}: {e}", dir.display()));
    std::fs::create_dir_all(dir).map_err(|e| err(&e))?;
    out.log
        .write_parquet(&dir.join("events.parquet"))
        .map_err(|e| err(&e))?;
    let summary = serde_json::to_string_pretty(&out.summary).map_err(|e| err(&e))? + "\n";
    std::fs::write(dir.join("summary.json"), summary).map_err(|e| err(&e))?;
    let engine = serde_json::to_string_pretty(&out.engine).map_err(|e| err(&e))? + "\n";
    std::fs::write(dir.join("engine.json"), engine).map_err(|e| err(&e))?;
    reports::render_run(dir).map_err(|e| err(&e))?;
    Ok(())
}
