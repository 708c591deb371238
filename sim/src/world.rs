//! The world: a city, hubs, a Zipf catalog with restocking, Poisson demand shaped by a 24-hour
//! profile and a spatial model, shoppers whose baskets take multi-item holds through the
//! inventory core, payments, abandonment (holds expire through the inventory reaper in virtual
//! time), `c` pickers per hub serving a FIFO queue, and the hand-over to Dispatch (`fleet`)
//! and ETA (`eta`) through their cores. Every run terminates: an order still waiting for a
//! picker at its deadline is lost, Dispatch fails orders past theirs, and a bounded drain ends
//! whatever is left with a reason.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use qc_dispatch::{DispatchRepo, Dispatcher};
use qc_eta::EtaStore;
use qc_geo::Point;
use qc_inventory::jobs::reap_once;
use qc_inventory::*;
use rand::Rng;
use rand_distr::{Distribution, Exp, LogNormal, Poisson};

use crate::backend::Exec;
use crate::engine::{Queue, SimTime};
use crate::eta::EtaTwin;
use crate::fleet::Fleet;
use crate::ids::{HubIx, OrderIx, RiderIx};
use crate::log::{kind, EventLog};
use crate::rng::{Stream, Streams};
use crate::scenario::{hour_slots, PickDistribution, Scenario};

/// Virtual epoch of the scenario's day: Monday 2026-01-05 00:00 UTC, in ms.
pub const DAY_EPOCH_MS: i64 = 1_767_571_200_000;
pub(crate) const DAY_MS: i64 = 86_400_000;
pub(crate) const HOUR_MS: i64 = 3_600_000;
/// How long after the end of demand the run may drain: whatever is not terminal then ends
/// (`DRAIN_LIMIT`). Deadlines end every order well before; this bounds a run whatever happens.
pub(crate) const DRAIN_LIMIT_MS: i64 = 3 * HOUR_MS;
/// The inventory reaper's period in the service: a lapsed hold is reaped at the first tick at
/// or after `expires_at + grace`. The twin runs the reaper at those ticks only.
pub const REAPER_INTERVAL_MS: i64 = 5_000;
const SAMPLE_INTERVAL_MS: i64 = 60_000;

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("store: {0}")]
    Store(#[from] InventoryError),
    #[error("dispatch store: {0}")]
    Dispatch(#[source] qc_kit::redis_kit::BackendError),
    #[error("eta store: {0}")]
    Eta(#[source] qc_kit::redis_kit::BackendError),
    #[error("tracking store: {0}")]
    Tracking(#[source] qc_kit::redis_kit::BackendError),
    #[error("the store answered {0}, which the model never expects")]
    Unexpected(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderState {
    /// Holding stock, waiting for payment.
    Held,
    Paid,
    Picking,
    /// Picked; in the hub's dispatch pool or waiting for a reassignment.
    AwaitingRider,
    /// Offered to a rider who has not answered yet.
    Offered,
    /// A rider accepted: riding to the hub, picking up, or delivering.
    OutForDelivery,
    /// Terminal: at the customer's door.
    Delivered,
    /// Terminal: Dispatch failed it (`failure_reason`: its deadline passed with no rider).
    DispatchFailed,
    /// Terminal: lost before Dispatch (`failure_reason`: not picked by its deadline, or the
    /// run's drain limit).
    Lost,
    /// Terminal, with dispatch off (`dispatch.enabled = false`): handed over after picking.
    HandedOver,
    /// Terminal: the shopper left; the hold expires through the reaper.
    Abandoned,
    /// Terminal: payment declined; the hold was released.
    PaymentFailed,
    /// Terminal: paid after the hold lapsed.
    HoldExpired,
    /// Terminal: some line could not be held.
    Stockout,
}

impl OrderState {
    pub fn is_terminal(self) -> bool {
        !matches!(
            self,
            Self::Held
                | Self::Paid
                | Self::Picking
                | Self::AwaitingRider
                | Self::Offered
                | Self::OutForDelivery
        )
    }
}

#[derive(Debug, Clone)]
pub struct Order {
    pub id: u64,
    /// The hub Geo chose (demand no hub covers is counted in `World::unserviceable`, and never
    /// becomes an order).
    pub hub: HubIx,
    pub placed_at: SimTime,
    pub lines: Vec<(usize, u32)>,
    pub rid: Option<ReservationId>,
    pub state: OrderState,
    pub paid_at: Option<SimTime>,
    pub pick_started_at: Option<SimTime>,
    pub handed_over_at: Option<SimTime>,
    pub location: Point,
    pub delivered_at: Option<SimTime>,
    pub rider: Option<RiderIx>,
    pub offers: u32,
    pub failure_reason: Option<String>,
    /// When the rider left the hub with it (DELIVERING), and the trip's noise-free duration
    /// (ride + handover), seconds.
    pub out_at: Option<SimTime>,
    pub designed_trip_s: f64,
    /// The shopper (`u<user>`).
    pub user: u32,
}

impl Order {
    pub fn units(&self) -> u32 {
        self.lines.iter().map(|l| l.1).sum()
    }
}

#[derive(Debug)]
pub struct HubState {
    pub id: HubId,
    pub pickers: u32,
    pub busy: u32,
    pub queue: VecDeque<OrderIx>,
    /// Σ busy pickers × time, for utilisation.
    pub busy_ms: i64,
    last_change: SimTime,
}

/// Per (hub, sku) units, for the conservation check.
#[derive(Debug, Default, Clone, Copy)]
pub struct Ledger {
    pub initial: i64,
    pub restocked: i64,
    pub sold: i64,
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Ev {
    Arrival,
    Checkout(OrderIx),
    PickDone(OrderIx),
    /// The order's deadline: lost if still waiting for a picker.
    PickDeadline(OrderIx),
    Restock(HubIx),
    Reap,
    Sample,
    /// Dispatch's batch timer is due.
    BatchWake,
    /// A rider answers offer number `.1` (stale if they have had another since).
    OfferAnswer(RiderIx, u64, bool),
    /// An offer's deadline: the offer sweeper runs.
    OfferExpiry,
    /// A reassignment attempt is due: the reassignment scheduler runs.
    ReassignWake,
    /// An order's delivery deadline: the deadline sweeper runs.
    DeadlineWake,
    RiderAtHub(RiderIx),
    PickupDone(RiderIx),
    Delivered(RiderIx),
    BackAtHub(RiderIx, u64),
    ShiftStart(RiderIx),
    ShiftEnd(RiderIx),
    /// The phone of a rider carrying this order sends its next fix (stale once the rider has
    /// no longer got the order).
    GpsFix(RiderIx, OrderIx),
    /// A local hour starts: hubs with hourly picker profiles change their picker count.
    StaffHour,
    /// A shopper answered 503 sends the same checkout again with the same key.
    CheckoutRetry(OrderIx),
    /// Checkout's outbox relay runs.
    Relay,
    DrainDeadline,
}

pub(crate) struct Rngs {
    demand: Stream,
    spatial: Stream,
    basket: Stream,
    shoppers: Stream,
    checkout: Stream,
    payment: Stream,
    picking: Stream,
    ids: Stream,
    pub(crate) riding: Stream,
    pub(crate) traffic: Stream,
    pub(crate) offers: Stream,
    retries: Stream,
    checkout_ids: Stream,
}

/// The simulation state; `run` drives it to the end. `S`, `R` and `E` are the inventory,
/// dispatch and ETA ports (memory adapters, or Redis/Postgres in live mode); `X` runs their
/// futures.
pub struct World<'a, S: StockStore, R: DispatchRepo, E: EtaStore, X: Exec> {
    pub(crate) sc: &'a Scenario,
    store: &'a S,
    pub exec: X,
    pub(crate) q: Queue<Ev>,
    pub(crate) rng: Rngs,
    /// Riders and Dispatch (`fleet`).
    pub fleet: Fleet<R>,
    /// When the last order finished picking (the end of the pickers' working period).
    pub last_pick_done: SimTime,
    pub hubs: Vec<HubState>,
    /// The hubs as geo sees them (stock and rider availability are not modelled yet: 1.0).
    geo_hubs: Vec<qc_geo::Hub>,
    pub skus: Vec<Sku>,
    zipf_cdf: Vec<f64>,
    pub orders: Vec<Order>,
    pub log: EventLog,
    pub ledger: BTreeMap<(usize, usize), Ledger>,
    /// Latest `expires_at` (virtual ms) of any hold taken: the reaper keeps running past it.
    last_hold_expiry: SimTime,
    /// Reaper ticks scheduled (virtual ms), so a tick is scheduled once.
    reap_ticks: BTreeSet<SimTime>,
    pub(crate) in_flight: u64,
    pub expired_by_reaper: u64,
    /// Demand no hub covers (02: not serviceable), never an order.
    pub unserviceable: u64,
    /// Holds found past their expiry by a payment (release or confirm) rather than the reaper.
    pub expired_lazily: u64,
    pub released: u64,
    pub confirmed: u64,
    duration_ms: i64,
    pub(crate) epoch_ms: i64,
    /// ETA: the service's store and the twin's measurements (`eta`).
    pub eta: EtaTwin<E>,
    /// The riders' phones and Tracking (`gps`); none with GPS or dispatch off.
    pub gps: Option<crate::gps::GpsTwin>,
    /// The shoppers' promos and the promo core (`promo`); none unless `promo.enabled`.
    pub promo: Option<crate::promo::PromoTwin>,
    /// Checkout's production parts (`checkout`): every paying shopper goes through them.
    pub checkout: crate::checkout::CheckoutTwin<'a, S>,
    /// Shoppers who search for their basket through the search core (`search`).
    pub search: Option<crate::search::SearchTwin>,
    /// Checkout bodies of shoppers who will retry after a 503, by order.
    retry_bodies: BTreeMap<usize, serde_json::Value>,
    relay_pending: bool,
}

fn zipf_cdf(n: u32, s: f64) -> Vec<f64> {
    let w: Vec<f64> = (1..=n).map(|k| 1.0 / f64::from(k).powf(s)).collect();
    let total: f64 = w.iter().sum();
    let mut acc = 0.0;
    w.iter()
        .map(|x| {
            acc += x / total;
            acc
        })
        .collect()
}

impl<'a, S: StockStore, R: DispatchRepo, E: EtaStore, X: Exec> World<'a, S, R, E, X> {
    pub fn new(
        sc: &'a Scenario,
        store: &'a S,
        dispatch: Dispatcher<R>,
        eta_store: E,
        exec: X,
        seed: u64,
    ) -> Self {
        let streams = Streams::new(seed);
        let hubs = sc
            .hubs
            .iter()
            .map(|h| HubState {
                id: HubId::parse(&h.id).expect("validated"),
                pickers: h.pickers().at(sc.start_hour()),
                busy: 0,
                queue: VecDeque::new(),
                busy_ms: 0,
                last_change: 0,
            })
            .collect();
        // The twin's catalog: the generated assortment, sku k at Zipf rank k.
        let catalog = qc_catalog::generate::assortment(sc.catalog.skus as usize, seed);
        let sku_names: Vec<String> = catalog.iter().map(|g| g.sku.clone()).collect();
        let prices: Vec<i64> = (0..sku_names.len())
            .map(|i| crate::promo::PromoTwin::price(i, sc.catalog.price_min, sc.catalog.price_max))
            .collect();
        let fleet = Fleet::new(sc, dispatch);
        let promo = sc
            .promo
            .enabled
            .then(|| crate::promo::PromoTwin::new(&sc.promo, &streams, 0));
        let mut checkout = crate::checkout::CheckoutTwin::new(
            store,
            crate::checkout::price_list(&sku_names, |i| prices[i]),
            sc.demand.hold_ttl_s,
        );
        checkout.saga.promos =
            crate::promo::TwinPromos::new(promo.as_ref().map(crate::promo::PromoTwin::core));
        let search = (sc.search.share > 0.0)
            .then(|| crate::search::SearchTwin::new(&sc.search, &catalog, &prices, &streams));
        let gps = (sc.gps.enabled && sc.dispatch.enabled)
            .then(|| crate::gps::GpsTwin::new(&sc.gps, &streams, fleet.riders.len()));
        Self {
            sc,
            store,
            exec,
            q: Queue::new(),
            rng: Rngs {
                demand: streams.stream("demand"),
                spatial: streams.stream("spatial"),
                basket: streams.stream("baskets"),
                shoppers: streams.stream("shoppers"),
                checkout: streams.stream("checkout"),
                payment: streams.stream("payments"),
                picking: streams.stream("picking"),
                ids: streams.stream("ids"),
                riding: streams.stream("riding"),
                traffic: streams.stream("traffic"),
                offers: streams.stream("offers"),
                retries: streams.stream("checkout-retries"),
                checkout_ids: streams.stream("checkout-ids"),
            },
            fleet,
            gps,
            promo,
            checkout,
            search,
            retry_bodies: BTreeMap::new(),
            relay_pending: false,
            last_pick_done: 0,
            hubs,
            geo_hubs: sc
                .hubs
                .iter()
                .map(|h| qc_geo::Hub {
                    id: h.id.clone(),
                    name: String::new(),
                    lat: h.lat,
                    lng: h.lng,
                    max_radius_km: h.max_radius_km,
                    priority: 0,
                    stock: 1.0,
                    rider_avail: 1.0,
                    active: true,
                })
                .collect(),
            skus: sku_names
                .iter()
                .map(|n| Sku::parse(n).expect("valid sku"))
                .collect(),
            zipf_cdf: zipf_cdf(sc.catalog.skus, sc.catalog.zipf_exponent),
            orders: Vec::new(),
            log: EventLog::new(),
            ledger: BTreeMap::new(),
            last_hold_expiry: 0,
            reap_ticks: BTreeSet::new(),
            in_flight: 0,
            expired_by_reaper: 0,
            unserviceable: 0,
            expired_lazily: 0,
            released: 0,
            confirmed: 0,
            duration_ms: sc.duration_ms(),
            epoch_ms: DAY_EPOCH_MS + sc.start_of_day_ms(),
            eta: EtaTwin::new(eta_store, sc.eta.model.model()),
        }
    }

    /// The cores' clock: the virtual epoch plus virtual time.
    pub(crate) fn now_ms(&self) -> i64 {
        self.epoch_ms + self.q.now()
    }

    /// A SKU's initial (and restock) level at a hub.
    fn sku_level(&self, hub: usize, sku: usize) -> i64 {
        let c = &self.sc.catalog;
        let mean = c.initial_stock as f64 * self.sc.hubs[hub].stock_multiplier;
        let share = if c.stock_by_popularity {
            let p = self.zipf_cdf[sku]
                - if sku == 0 {
                    0.0
                } else {
                    self.zipf_cdf[sku - 1]
                };
            p * self.skus.len() as f64
        } else {
            1.0
        };
        ((mean * share).round() as i64).max(c.min_stock)
    }

    /// Loads initial stock and schedules the first events.
    pub fn start(&mut self) -> Result<(), SimError> {
        for h in 0..self.hubs.len() {
            for s in 0..self.skus.len() {
                let on_hand = self.sku_level(h, s);
                let cmd = SetStockCommand {
                    hub_id: self.hubs[h].id.clone(),
                    sku: self.skus[s].clone(),
                    on_hand,
                    buckets: 1,
                    reason: StockSetReason::AdminSet,
                    actor: "sim".into(),
                };
                let now = self.now_ms();
                let store = self.store;
                self.exec.run("set_stock", store.set_stock(now, &cmd))?;
                self.ledger.entry((h, s)).or_default().initial = on_hand;
            }
        }
        if let Some(t) = self.next_arrival(0) {
            self.q.at(t, Ev::Arrival);
        }
        let restock = self.sc.restock_every_ms();
        if restock > 0 {
            for h in 0..self.hubs.len() {
                self.q.at(restock, Ev::Restock(HubIx(h)));
            }
        }
        self.q.at(SAMPLE_INTERVAL_MS, Ev::Sample);
        let horizon = self.duration_ms + DRAIN_LIMIT_MS;
        if self.sc.hubs.iter().any(|h| h.pickers_by_hour.is_some()) {
            // Every hour boundary after the start (the first hour's pickers are set at start).
            for (_, t, _) in hour_slots(self.sc.start_of_day_ms(), 0, horizon).skip(1) {
                self.q.at(t, Ev::StaffHour);
            }
        }
        self.q.at(horizon, Ev::DrainDeadline);
        self.start_fleet()
    }

    /// Runs to the end: arrivals stop at the duration; the run drains until every order is
    /// terminal and every abandoned hold has expired. `progress` sees (virtual now, events).
    pub fn run(&mut self, mut progress: impl FnMut(SimTime, u64)) -> Result<(), SimError> {
        self.start()?;
        while let Some((t, ev)) = self.q.pop() {
            match ev {
                Ev::Arrival => self.on_arrival(t)?,
                Ev::Checkout(o) => self.on_checkout(t, o)?,
                Ev::PickDone(o) => self.on_pick_done(t, o)?,
                Ev::PickDeadline(o) => self.on_pick_deadline(t, o),
                Ev::Restock(h) => self.on_restock(t, h)?,
                Ev::Reap => self.on_reap(t)?,
                Ev::Sample => self.on_sample(t),
                Ev::BatchWake => self.on_batch_wake(t)?,
                Ev::OfferAnswer(r, seq, accept) => self.on_offer_answer(t, r, seq, accept)?,
                Ev::OfferExpiry => self.on_offer_expiry(t)?,
                Ev::ReassignWake => self.on_reassign_wake(t)?,
                Ev::DeadlineWake => self.on_deadline_wake(t)?,
                Ev::RiderAtHub(r) => self.on_rider_at_hub(t, r)?,
                Ev::PickupDone(r) => self.on_pickup_done(t, r)?,
                Ev::Delivered(r) => self.on_delivered(t, r)?,
                Ev::BackAtHub(r, seq) => self.on_back_at_hub(r, seq)?,
                Ev::ShiftStart(r) => self.on_shift_start(t, r)?,
                Ev::ShiftEnd(r) => self.on_shift_end(t, r)?,
                Ev::StaffHour => self.on_staff_hour(t),
                Ev::CheckoutRetry(o) => self.on_checkout_retry(o)?,
                Ev::Relay => self.on_relay(t)?,
                Ev::GpsFix(r, o) => self.on_gps_fix(t, r, o)?,
                Ev::DrainDeadline => self.on_drain_deadline(t),
            }
            if self.q.processed().is_multiple_of(256) {
                progress(t, self.q.processed());
            }
        }
        progress(self.q.now(), self.q.processed());
        Ok(())
    }

    pub fn store(&self) -> &'a S {
        self.store
    }

    pub fn events_processed(&self) -> u64 {
        self.q.processed()
    }

    pub fn now(&self) -> SimTime {
        self.q.now()
    }

    /// Periodic work continues until the run has nothing left to finish: arrivals are over,
    /// every order is terminal, and every hold ever taken is past expiry + grace (so the reaper
    /// has returned all abandoned stock).
    fn finished(&self) -> bool {
        let grace_ms = i64::from(self.store.policy().grace_s) * 1000;
        self.q.now() >= self.duration_ms
            && self.in_flight == 0
            && self.q.now() > self.last_hold_expiry + grace_ms
    }

    fn rate_per_ms(&self, t: SimTime) -> f64 {
        let hour = (((self.sc.start_of_day_ms() + t) % DAY_MS) / HOUR_MS) as usize;
        self.sc.demand.orders_per_hour * self.sc.demand.hourly_profile[hour] / HOUR_MS as f64
    }

    /// Next arrival of the non-homogeneous Poisson process (piecewise constant per local hour;
    /// exact: the exponential is memoryless, so a draw crossing an hour restarts there).
    fn next_arrival(&mut self, from: SimTime) -> Option<SimTime> {
        let mut t = from;
        loop {
            if t >= self.duration_ms {
                return None;
            }
            let day_ms = self.sc.start_of_day_ms() + t;
            let boundary = t + (HOUR_MS - day_ms.rem_euclid(HOUR_MS));
            let rate = self.rate_per_ms(t);
            if rate <= 0.0 {
                t = boundary;
                continue;
            }
            let dt = Exp::new(rate)
                .expect("positive rate")
                .sample(&mut self.rng.demand);
            let next = t as f64 + dt;
            if next < boundary as f64 {
                let next = (next.ceil() as i64).max(t);
                return (next < self.duration_ms).then_some(next);
            }
            t = boundary;
        }
    }

    fn sample_location(&mut self) -> Point {
        let d = &self.sc.demand;
        let r = &mut self.rng.spatial;
        let city = Point {
            lat: self.sc.city.lat,
            lng: self.sc.city.lng,
        };
        if d.hotspots.is_empty() || r.random::<f64>() < d.uniform_weight {
            let radius = self.sc.city.radius_km * r.random::<f64>().sqrt();
            let angle = r.random::<f64>() * std::f64::consts::TAU;
            return city.offset_km(radius * angle.cos(), radius * angle.sin());
        }
        let total: f64 = d.hotspots.iter().map(|h| h.weight).sum();
        let mut pick = r.random::<f64>() * total;
        let spot = d
            .hotspots
            .iter()
            .find(|h| {
                pick -= h.weight;
                pick <= 0.0
            })
            .unwrap_or(&d.hotspots[d.hotspots.len() - 1]);
        let gauss = |r: &mut Stream| {
            // Box-Muller.
            let (u1, u2): (f64, f64) = (r.random::<f64>().max(1e-12), r.random());
            (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
        };
        let (e, n) = (gauss(r) * spot.radius_km, gauss(r) * spot.radius_km);
        Point {
            lat: spot.lat,
            lng: spot.lng,
        }
        .offset_km(e, n)
    }

    /// The hub geo would choose for `p` (02 §3: eligibility, score, tie-breaks), if any.
    fn serving_hub(&self, p: Point) -> Option<HubIx> {
        let winner = qc_geo::best(p, &self.geo_hubs, qc_geo::Weights::default())?;
        self.geo_hubs
            .iter()
            .position(|h| h.id == winner.hub.id)
            .map(HubIx)
    }

    fn sample_basket(&mut self) -> Vec<(usize, u32)> {
        let d = &self.sc.demand;
        let r = &mut self.rng.basket;
        let extra = if d.basket_mean_items > 1.0 {
            Poisson::new(d.basket_mean_items - 1.0)
                .expect("positive mean")
                .sample(r) as u32
        } else {
            0
        };
        let want = (1 + extra)
            .min(d.basket_max_items)
            .min(self.skus.len() as u32) as usize;
        let mut lines: Vec<(usize, u32)> = Vec::with_capacity(want);
        let mut tries = 0;
        while lines.len() < want && tries < 20 * want {
            tries += 1;
            let u: f64 = r.random();
            let sku = self
                .zipf_cdf
                .partition_point(|c| *c < u)
                .min(self.skus.len() - 1);
            if lines.iter().all(|l| l.0 != sku) {
                lines.push((sku, r.random_range(1..=d.quantity_max)));
            }
        }
        lines
    }

    fn on_arrival(&mut self, t: SimTime) -> Result<(), SimError> {
        if let Some(next) = self.next_arrival(t + 1) {
            self.q.at(next, Ev::Arrival);
        }
        let id = self.orders.len() as u64;
        let loc = self.sample_location();
        let Some(h) = self.serving_hub(loc) else {
            self.unserviceable += 1;
            self.log.push(t, kind::UNSERVICEABLE, None, "", "", 0, 0);
            return Ok(());
        };
        let mut lines = self.sample_basket();
        let searching = self.search.as_mut().is_some_and(|s| s.searches());
        if let Some(search) = self.search.as_mut().filter(|_| searching) {
            let hub = &self.hubs[h.0].id;
            let now = self.epoch_ms + t;
            lines = search
                .shop(&mut self.exec, self.store, hub, lines, now)
                .map_err(SimError::Unexpected)?;
            if lines.is_empty() {
                self.log
                    .push(t, kind::NOTHING_FOUND, None, hub.as_str(), "", 0, 0);
                return Ok(());
            }
        }
        let mut order = Order {
            id,
            hub: h,
            placed_at: t,
            lines,
            rid: None,
            // Set below by the hold's outcome.
            state: OrderState::Stockout,
            paid_at: None,
            pick_started_at: None,
            handed_over_at: None,
            location: loc,
            delivered_at: None,
            rider: None,
            offers: 0,
            failure_reason: None,
            out_at: None,
            designed_trip_s: 0.0,
            user: 0,
        };
        let hub_id = self.hubs[h.0].id.clone();
        self.log.push(
            t,
            kind::ORDER_PLACED,
            Some(id),
            hub_id.as_str(),
            "",
            i64::from(order.units()),
            order.lines.len() as i64,
        );
        let user = self.rng.shoppers.random_range(0..self.sc.demand.shoppers);
        order.user = user;
        let rid = ReservationId::from_uuid(
            uuid::Builder::from_random_bytes(self.rng.ids.random()).into_uuid(),
        );
        let cmd = ReserveCommand {
            reservation_id: rid.clone(),
            hub_id: hub_id.clone(),
            cart_id: CartId::parse(&format!("o{id}")).expect("valid"),
            user_id: UserId::parse(&format!("u{user}")).expect("valid"),
            items: order
                .lines
                .iter()
                .map(|(s, q)| Item {
                    sku: self.skus[*s].clone(),
                    quantity: *q,
                })
                .collect(),
            ttl_s: self.sc.demand.hold_ttl_s,
            idempotency_key: None,
        };
        let now = self.now_ms();
        let store = self.store;
        match self.exec.run("reserve", store.reserve(now, &cmd)) {
            Ok(ReserveOutcome::Reserved {
                remaining,
                expires_at_ms,
            }) => {
                debug_assert!(remaining.iter().all(|r| *r >= 0), "oversell: {remaining:?}");
                order.rid = Some(rid);
                let expiry = expires_at_ms - self.epoch_ms;
                self.last_hold_expiry = self.last_hold_expiry.max(expiry);
                if self.rng.checkout.random::<f64>() < self.sc.demand.abandonment_rate {
                    order.state = OrderState::Abandoned;
                    self.log
                        .push(t, kind::ABANDONED, Some(id), hub_id.as_str(), "", 0, 0);
                    self.reap_after(expiry);
                } else {
                    order.state = OrderState::Held;
                    self.in_flight += 1;
                    let mean = self.sc.demand.checkout_delay_mean_s * 1000.0;
                    let delay = if mean > 0.0 {
                        Exp::new(1.0 / mean)
                            .expect("positive")
                            .sample(&mut self.rng.checkout)
                            .round() as i64
                    } else {
                        0
                    };
                    if t + delay >= expiry {
                        // The shopper pays after the hold lapsed: the reaper may get there first.
                        self.reap_after(expiry);
                    }
                    self.q.after(delay, Ev::Checkout(OrderIx(id as usize)));
                }
            }
            Ok(ReserveOutcome::Replay { .. }) => {
                unreachable!("the simulator sends no idempotency keys")
            }
            Err(InventoryError::InsufficientStock { sku, .. })
            | Err(InventoryError::SkuNotFound { sku }) => {
                order.state = OrderState::Stockout;
                self.log.push(
                    t,
                    kind::STOCKOUT,
                    Some(id),
                    hub_id.as_str(),
                    sku.as_str(),
                    0,
                    0,
                );
            }
            Err(e) => return Err(e.into()),
        }
        self.orders.push(order);
        Ok(())
    }

    /// Schedules the reaper tick that sweeps a hold lapsing at virtual `expiry` (once per tick).
    fn reap_after(&mut self, expiry: SimTime) {
        let grace_ms = i64::from(self.store.policy().grace_s) * 1000;
        let due = expiry + grace_ms;
        let tick =
            (due + REAPER_INTERVAL_MS - 1).div_euclid(REAPER_INTERVAL_MS) * REAPER_INTERVAL_MS;
        if self.reap_ticks.insert(tick) {
            self.q.at(tick.max(self.q.now()), Ev::Reap);
        }
    }

    /// The shopper pays: the app sends the checkout (taking over the cart's hold) through the
    /// production checkout flow; a double tap sends it twice, a 503 may be retried later with
    /// the same key.
    fn on_checkout(&mut self, t: SimTime, oi: OrderIx) -> Result<(), SimError> {
        if !self.sc.checkout.enabled {
            return self.pay_without_checkout(t, oi);
        }
        let o = oi.0;
        let h = self.orders[o].hub;
        let hub_id = self.hubs[h.0].id.clone();
        let rid = self.orders[o].rid.clone().expect("held orders have a hold");
        let now = self.now_ms();
        let id = Some(o as u64);
        let declined = self.rng.payment.random::<f64>() < self.sc.demand.payment_failure_rate;
        let down = self.rng.retries.random::<f64>() < self.sc.checkout.gateway_timeout_rate;
        let user = self.orders[o].user;
        let lines: Vec<(String, u32)> = self.orders[o]
            .lines
            .iter()
            .map(|(s, q)| (self.skus[*s].to_string(), *q))
            .collect();
        let loc = self.orders[o].location;
        let body = crate::checkout::body(
            &format!("u{user}"),
            hub_id.as_str(),
            &lines,
            if declined { "tok_decline" } else { "tok_visa" },
            loc.lat,
            loc.lng,
            Some(&rid.to_string()),
        );
        let key = format!("o{o}");
        let order_id = self.new_uuid();
        let token = self.new_uuid();
        let prices = &self.checkout.saga.catalog.0;
        let subtotal: i64 = lines
            .iter()
            .map(|(s, q)| prices.get(s).copied().unwrap_or(0) * i64::from(*q))
            .sum();
        let who = self.promo.as_mut().and_then(|p| p.cart_for(user, subtotal));
        if let Some((_, cart)) = &who {
            self.checkout.saga.promos.bring(&order_id, cart.clone());
        }
        let co = &self.checkout;
        let answer = self
            .exec
            .run(
                "checkout",
                co.call(&body, &key, &token, &order_id, down, now),
            )
            .map_err(SimError::Unexpected)?;
        self.checkout.record(&answer, false);
        let (out, released) = self.checkout.saga.promos.take(&order_id);
        if let (Some(p), Some((who, _))) = (self.promo.as_mut(), who) {
            p.record(who, out, released, answer.status == 201);
        }
        // What became of the cart's hold, from its record.
        let store = self.store;
        if let Some(r) = self
            .exec
            .run("reservation", store.reservation(&hub_id, &rid))?
        {
            if r.expired_at == Some(now) {
                self.expired_lazily += 1;
            }
            if r.released_at == Some(now) {
                self.released += 1;
            }
        }
        let terminal = answer.status != 503;
        if terminal && self.rng.retries.random::<f64>() < self.sc.checkout.double_submit_rate {
            let (order_id, token) = (self.new_uuid(), self.new_uuid());
            let co = &self.checkout;
            let again = self
                .exec
                .run(
                    "checkout",
                    co.call(&body, &key, &token, &order_id, down, now),
                )
                .map_err(SimError::Unexpected)?;
            self.checkout.record(&again, false);
        }
        self.in_flight -= u64::from(answer.status != 201);
        match (answer.status, answer.code()) {
            (201, _) => {
                self.schedule_relay(t);
                self.paid(t, oi)?;
            }
            (402, _) => {
                self.orders[o].state = OrderState::PaymentFailed;
                self.log
                    .push(t, kind::PAYMENT_FAILED, id, hub_id.as_str(), "", 0, 0);
            }
            (503, Some(code)) => {
                let order = &mut self.orders[o];
                order.state = OrderState::PaymentFailed;
                order.failure_reason = Some(code.to_string());
                self.log
                    .push(t, kind::PAYMENT_FAILED, id, hub_id.as_str(), code, 0, 0);
                if self.rng.retries.random::<f64>() < self.sc.checkout.retry_share {
                    self.retry_bodies.insert(o, body);
                    let after = (self.sc.checkout.retry_after_s * 1000.0).round() as i64;
                    self.q.after(after, Ev::CheckoutRetry(oi));
                }
            }
            (409, Some("RESERVATION_EXPIRED")) => {
                self.orders[o].state = OrderState::HoldExpired;
                self.log.push(
                    t,
                    kind::HOLD_EXPIRED_AT_PAYMENT,
                    id,
                    hub_id.as_str(),
                    "",
                    0,
                    0,
                );
            }
            (status, code) => {
                return Err(SimError::Unexpected(format!(
                    "checkout of order {o} answered {status} {code:?}: {}",
                    answer.body
                )))
            }
        }
        Ok(())
    }

    /// The order is paid and its stock sold: the hub starts on it.
    fn paid(&mut self, t: SimTime, oi: OrderIx) -> Result<(), SimError> {
        let (o, h) = (oi.0, self.orders[oi.0].hub);
        self.confirmed += 1;
        for (s, q) in self.orders[o].lines.clone() {
            self.ledger.entry((h.0, s)).or_default().sold += i64::from(q);
        }
        let order = &mut self.orders[o];
        order.state = OrderState::Paid;
        order.paid_at = Some(t);
        let placed = order.placed_at;
        let hub_id = self.hubs[h.0].id.clone();
        self.log.push(
            t,
            kind::PAID,
            Some(o as u64),
            hub_id.as_str(),
            "",
            0,
            t - placed,
        );
        self.promise_eta(t, oi)?;
        self.enqueue_pick(t, h, oi);
        Ok(())
    }

    /// `checkout.enabled = false` (a model without checkout, such as M/M/c): paying confirms
    /// the cart's hold through the inventory core, and a lapsed hold loses the order.
    fn pay_without_checkout(&mut self, t: SimTime, oi: OrderIx) -> Result<(), SimError> {
        let (o, h) = (oi.0, self.orders[oi.0].hub);
        let hub_id = self.hubs[h.0].id.clone();
        let rid = self.orders[o].rid.clone().expect("held orders have a hold");
        let now = self.now_ms();
        let store = self.store;
        match self.exec.run(
            "confirm",
            store.transition(now, &hub_id, &rid, Action::Confirm),
        )? {
            TransitionOutcome::Done | TransitionOutcome::Already(_) => self.paid(t, oi),
            TransitionOutcome::Expired => {
                let res = self
                    .exec
                    .run("reservation", store.reservation(&hub_id, &rid))?;
                if res.and_then(|r| r.expired_at) == Some(now) {
                    self.expired_lazily += 1;
                }
                self.orders[o].state = OrderState::HoldExpired;
                self.in_flight -= 1;
                self.log.push(
                    t,
                    kind::HOLD_EXPIRED_AT_PAYMENT,
                    Some(o as u64),
                    hub_id.as_str(),
                    "",
                    0,
                    0,
                );
                Ok(())
            }
            other => Err(SimError::Unexpected(format!(
                "{other:?} to a confirm of order {o}"
            ))),
        }
    }

    /// A shopper answered 503 tries again with the same key: the order the first call left
    /// answers (04's durable guard), nothing runs twice.
    fn on_checkout_retry(&mut self, oi: OrderIx) -> Result<(), SimError> {
        let Some(body) = self.retry_bodies.remove(&oi.0) else {
            return Ok(());
        };
        let (order_id, token) = (self.new_uuid(), self.new_uuid());
        let now = self.now_ms();
        let co = &self.checkout;
        let a = self
            .exec
            .run(
                "checkout",
                co.call(&body, &format!("o{}", oi.0), &token, &order_id, false, now),
            )
            .map_err(SimError::Unexpected)?;
        self.checkout.record(&a, true);
        if a.status == 201 {
            return Err(SimError::Unexpected(format!(
                "a retry of order {} confirmed after its first call was undone",
                oi.0
            )));
        }
        Ok(())
    }

    /// The relay runs at the next whole relay period, unless a run is already due.
    fn schedule_relay(&mut self, t: SimTime) {
        if !self.relay_pending {
            self.relay_pending = true;
            let every = ((self.sc.checkout.relay_every_s * 1000.0).round() as i64).max(1);
            self.q.at((t / every + 1) * every, Ev::Relay);
        }
    }

    fn on_relay(&mut self, t: SimTime) -> Result<(), SimError> {
        let now = self.now_ms();
        let co = &self.checkout;
        let waiting = self
            .exec
            .run("outbox.relay", co.relay(now))
            .map_err(SimError::Unexpected)?;
        self.relay_pending = false;
        if waiting {
            self.schedule_relay(t);
        }
        Ok(())
    }

    fn new_uuid(&mut self) -> String {
        uuid::Builder::from_random_bytes(self.rng.checkout_ids.random())
            .into_uuid()
            .to_string()
    }

    fn account_busy(&mut self, t: SimTime, h: HubIx) {
        let hub = &mut self.hubs[h.0];
        hub.busy_ms += i64::from(hub.busy) * (t - hub.last_change);
        hub.last_change = t;
    }

    fn enqueue_pick(&mut self, t: SimTime, h: HubIx, o: OrderIx) {
        if self.hubs[h.0].busy < self.hubs[h.0].pickers {
            self.start_pick(t, h, o);
        } else {
            self.hubs[h.0].queue.push_back(o);
            let paid = self.orders[o.0].paid_at.unwrap_or(t);
            let deadline = (self.sc.dispatch.deadline_min * 60_000.0).round() as i64;
            self.q.at((paid + deadline).max(t), Ev::PickDeadline(o));
        }
    }

    /// A paid order still waiting for a picker at its deadline is lost (its stock stays sold:
    /// the shopper is refunded outside the twin). Bounds the picking queue under overload.
    fn on_pick_deadline(&mut self, t: SimTime, o: OrderIx) {
        if self.orders[o.0].state != OrderState::Paid {
            return;
        }
        let h = self.orders[o.0].hub;
        self.hubs[h.0].queue.retain(|x| *x != o);
        self.lose(t, o, OrderState::Lost, "NOT_PICKED_BY_DEADLINE".into());
    }

    /// Ends a non-terminal order with `state` and `reason`, in the log too.
    pub(crate) fn lose(&mut self, t: SimTime, o: OrderIx, state: OrderState, reason: String) {
        let order = &mut self.orders[o.0];
        if order.state.is_terminal() {
            return;
        }
        if matches!(order.state, OrderState::AwaitingRider | OrderState::Offered) {
            let h = order.hub.0;
            self.fleet.awaiting_rider[h] = self.fleet.awaiting_rider[h].saturating_sub(1);
        }
        let order = &mut self.orders[o.0];
        order.state = state;
        self.log.push(
            t,
            kind::DISPATCH_FAILED,
            Some(o.0 as u64),
            self.hubs[order.hub.0].id.as_str(),
            &reason,
            0,
            0,
        );
        self.orders[o.0].failure_reason = Some(reason);
        self.in_flight -= 1;
    }

    fn pick_duration_ms(&mut self, units: u32) -> i64 {
        let p = &self.sc.picking;
        let mean_s = p.base_s + p.per_item_s * f64::from(units);
        let secs = match p.distribution {
            PickDistribution::Fixed => mean_s,
            PickDistribution::Exponential => Exp::new(1.0 / mean_s)
                .expect("positive")
                .sample(&mut self.rng.picking),
            PickDistribution::Lognormal => {
                let sigma2 = (1.0 + p.cv * p.cv).ln();
                LogNormal::new(mean_s.ln() - sigma2 / 2.0, sigma2.sqrt())
                    .expect("valid")
                    .sample(&mut self.rng.picking)
            }
        };
        ((secs * 1000.0).round() as i64).max(1)
    }

    pub(crate) fn start_pick(&mut self, t: SimTime, h: HubIx, o: OrderIx) {
        self.account_busy(t, h);
        self.hubs[h.0].busy += 1;
        let units = self.orders[o.0].units();
        let order = &mut self.orders[o.0];
        order.state = OrderState::Picking;
        order.pick_started_at = Some(t);
        let wait = t - order.paid_at.unwrap_or(t);
        self.log.push(
            t,
            kind::PICK_STARTED,
            Some(o.0 as u64),
            self.hubs[h.0].id.as_str(),
            "",
            0,
            wait,
        );
        let d = self.pick_duration_ms(units);
        self.q.after(d, Ev::PickDone(o));
    }

    fn on_pick_done(&mut self, t: SimTime, o: OrderIx) -> Result<(), SimError> {
        let h = self.orders[o.0].hub;
        self.account_busy(t, h);
        self.hubs[h.0].busy -= 1;
        self.last_pick_done = t;
        let order = &mut self.orders[o.0];
        order.handed_over_at = Some(t);
        let pick = t - order.pick_started_at.unwrap_or(t);
        let hub_id = self.hubs[h.0].id.as_str();
        self.log
            .push(t, kind::HANDED_OVER, Some(o.0 as u64), hub_id, "", 0, pick);
        if self.hubs[h.0].busy < self.hubs[h.0].pickers {
            if let Some(next) = self.hubs[h.0].queue.pop_front() {
                self.start_pick(t, h, next);
            }
        }
        if self.sc.dispatch.enabled {
            self.fleet.awaiting_rider[h.0] += 1;
            self.enqueue_dispatch(t, o)
        } else {
            self.orders[o.0].state = OrderState::HandedOver;
            self.in_flight -= 1;
            Ok(())
        }
    }

    fn on_restock(&mut self, t: SimTime, hi: HubIx) -> Result<(), SimError> {
        let h = hi.0;
        let hub_id = self.hubs[h].id.clone();
        for s in 0..self.skus.len() {
            let to = self.sku_level(h, s);
            let below = (to as f64 * self.sc.catalog.restock_below).ceil() as i64;
            let store = self.store;
            let sku = self.skus[s].clone();
            let level = self.exec.run("stock", store.stock(&hub_id, &sku))?;
            if level.available < below {
                let add = to - level.available;
                let cmd = SetStockCommand {
                    hub_id: hub_id.clone(),
                    sku: sku.clone(),
                    on_hand: level.on_hand() + add,
                    buckets: 1,
                    reason: StockSetReason::AdminSet,
                    actor: "restock".into(),
                };
                let now = self.now_ms();
                self.exec.run("set_stock", store.set_stock(now, &cmd))?;
                self.ledger.entry((h, s)).or_default().restocked += add;
                self.log.push(
                    t,
                    kind::RESTOCK,
                    None,
                    hub_id.as_str(),
                    sku.as_str(),
                    add,
                    0,
                );
            }
        }
        if !self.finished() {
            self.q.after(self.sc.restock_every_ms(), Ev::Restock(hi));
        }
        Ok(())
    }

    fn on_reap(&mut self, t: SimTime) -> Result<(), SimError> {
        let now = self.now_ms();
        let store = self.store;
        let report = self.exec.run("reap", reap_once(store, now, 100))?;
        if report.expired > 0 {
            self.expired_by_reaper += report.expired;
            self.log.push(
                t,
                kind::HOLDS_EXPIRED,
                None,
                "",
                "",
                report.expired as i64,
                0,
            );
        }
        self.reap_ticks.remove(&t);
        if report.expired as usize >= 100 {
            // A full batch: more may be due at this tick.
            self.reap_after(t - i64::from(self.store.policy().grace_s) * 1000 + 1);
        }
        Ok(())
    }

    fn on_sample(&mut self, t: SimTime) {
        for h in (0..self.hubs.len()).map(HubIx) {
            let hub = &self.hubs[h.0];
            let id = hub.id.as_str();
            self.log.push(
                t,
                kind::HUB_SAMPLE,
                None,
                id,
                "",
                hub.queue.len() as i64,
                i64::from(hub.busy),
            );
            let (busy_riders, on_shift) = self.rider_counts(h);
            self.log
                .push(t, kind::RIDER_SAMPLE, None, id, "", busy_riders, on_shift);
        }
        if !self.finished() {
            self.q.after(SAMPLE_INTERVAL_MS, Ev::Sample);
        }
    }

    /// The drain limit: whatever has not ended yet ends now, with the reason.
    /// Hourly picker profiles: the new hour's pickers take the queue; when fewer are on duty,
    /// pickers finish the order in hand and the queue waits for the rest.
    fn on_staff_hour(&mut self, t: SimTime) {
        let hour = (((self.sc.start_of_day_ms() + t) % DAY_MS) / HOUR_MS) as usize;
        for h in (0..self.hubs.len()).map(HubIx) {
            let staff = self.sc.hubs[h.0].pickers();
            if matches!(staff, crate::scenario::Staff::Flat(_)) {
                continue;
            }
            self.account_busy(t, h);
            self.hubs[h.0].pickers = staff.at(hour);
            while self.hubs[h.0].busy < self.hubs[h.0].pickers {
                let Some(next) = self.hubs[h.0].queue.pop_front() else {
                    break;
                };
                self.start_pick(t, h, next);
            }
        }
    }

    fn on_drain_deadline(&mut self, t: SimTime) {
        for o in (0..self.orders.len()).map(OrderIx) {
            if !self.orders[o.0].state.is_terminal() {
                let h = self.orders[o.0].hub;
                self.hubs[h.0].queue.retain(|x| *x != o);
                self.lose(t, o, OrderState::Lost, "DRAIN_LIMIT".into());
            }
        }
    }

    /// Closes the busy-time accounting at the end of the run.
    pub fn close(&mut self) {
        let t = self.q.now();
        // Riders are measured over the demand period and its deliveries, not the idle tail in
        // which the run waits for the last holds to expire.
        let fleet_end = self
            .orders
            .iter()
            .filter_map(|o| o.delivered_at)
            .max()
            .unwrap_or(0)
            .max(self.duration_ms)
            .min(t);
        for h in (0..self.hubs.len()).map(HubIx) {
            self.account_busy(t, h);
        }
        self.close_fleet(fleet_end);
    }
}
