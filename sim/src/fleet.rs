//! Riders and dispatch in the twin. Every dispatch decision is the production one: orders enter
//! `qc_dispatch::Dispatcher` (over `MemoryRepo`, or `PgRepo` in live mode) and the batch timer,
//! the flush and its matcher, offers, timeouts, reassignments, re-pooling and deadlines all run
//! in the core. The world calls the core's job functions from engine events at the instants
//! they have work (the batch timer's next due time, an offer's expiry, a reassignment's due
//! time, an order's deadline) instead of polling, and plays only what is not production code:
//! riders answering offers, riding (hub → door → hub with a road factor, the time-of-day
//! traffic profile, traffic events and noise), shifts, and the driver app's state changes.

use qc_dispatch::model::{Item as DispatchItem, NewDriver, NewOrder};
use qc_dispatch::{
    BatchTimer, DispatchError, DispatchRepo, Dispatcher, DriverState, HubPoints, Notice,
};
use qc_eta::EtaStore;
use qc_geo::{haversine_km, Point};
use qc_inventory::StockStore;
use rand::Rng;
use rand_distr::{Distribution, Exp, LogNormal};

use crate::backend::Exec;
use crate::engine::SimTime;
use crate::ids::{HubIx, OrderIx, RiderIx};
use crate::log::kind;
use crate::scenario::{hour_slots, ClockTime, Scenario, Staff};
use crate::world::{Ev, OrderState, SimError, World, DAY_MS, DRAIN_LIMIT_MS, HOUR_MS};

/// A straight trip between two points, used to place a rider riding back to the hub.
#[derive(Debug, Clone, Copy)]
pub struct Trip {
    pub from: Point,
    pub to: Point,
    pub start: SimTime,
    pub end: SimTime,
}

/// A rider as the world sees them: where they are and what the app last reported. The
/// authoritative record (state, load, offers) is the Dispatcher's.
#[derive(Debug, Clone)]
pub struct Rider {
    /// The hub the rider rides back to between trips: where they started, then the hub of
    /// their last pickup.
    pub home: HubIx,
    pub state: DriverState,
    /// Where the rider was when `trip` started (or is, without a trip).
    pub pos: Point,
    pub trip: Option<Trip>,
    /// Bumped whenever a trip is abandoned, so its arrival event is ignored.
    pub trip_seq: u64,
    pub order: Option<OrderIx>,
    /// The open offer's assignment id.
    pub offer: Option<String>,
    /// Bumped with every offer, so a stale answer is ignored.
    pub offer_seq: u64,
    pub leaving: bool,
    pub deliveries: u64,
    pub busy_ms: i64,
    pub on_shift_ms: i64,
    busy_since: Option<SimTime>,
    on_since: Option<SimTime>,
    /// Virtual [start, end) windows the rider is on shift, in order and disjoint.
    pub shifts: Vec<(SimTime, SimTime)>,
}

impl Rider {
    /// On shift at `t`: a rider off shift finishes the current delivery, then goes offline.
    pub fn on_duty(&self, t: SimTime) -> bool {
        self.shifts.iter().any(|&(s, e)| s <= t && t < e)
    }
}

/// The fleet as the world keeps it: the production Dispatcher (over its repository) with the
/// state its service keeps beside it, the riders, and the counters.
pub struct Fleet<R> {
    pub dispatch: Dispatcher<R>,
    /// The batch timer the service's leader holds.
    pub(crate) timer: BatchTimer,
    /// Hub pickup points, as the service resolves them from Geo.
    pub(crate) hub_points: HubPoints,
    /// When a batch wake is scheduled (so at most one is).
    pub(crate) batch_wake: Option<SimTime>,
    /// Per hub: orders handed to Dispatch that no rider has accepted yet.
    pub(crate) awaiting_rider: Vec<u32>,
    pub riders: Vec<Rider>,
    pub stats: FleetStats,
}

impl<R> Fleet<R> {
    pub fn new(sc: &Scenario, dispatch: Dispatcher<R>) -> Self {
        Self {
            dispatch,
            timer: BatchTimer::new(
                (sc.dispatch.window_s * 1000.0).round() as i64,
                sc.dispatch.min_orders as usize,
            ),
            hub_points: sc
                .hubs
                .iter()
                .map(|h| {
                    let p = Point {
                        lat: h.lat,
                        lng: h.lng,
                    };
                    (h.id.clone(), p)
                })
                .collect(),
            batch_wake: None,
            awaiting_rider: vec![0; sc.hubs.len()],
            riders: riders_for(sc),
            stats: FleetStats::default(),
        }
    }
}

/// Dispatch counters for the summary.
#[derive(Debug, Default, Clone)]
pub struct FleetStats {
    pub batches: u64,
    pub batched_orders: u64,
    pub orders_in_multi_order_batches: u64,
    pub offers: u64,
    pub offers_rejected: u64,
    pub offers_timed_out: u64,
    pub reassignments: u64,
    pub repooled: u64,
    pub pickup_km: f64,
    pub pickups: u64,
    pub greedy_cost: f64,
    pub optimal_cost: f64,
    pub compared_batches: u64,
    /// Dispatcher refusals the twin never expects (illegal transitions included).
    pub refused: u64,
    pub refused_details: Vec<String>,
}

/// The virtual [start, end) of a shift given as local "HH:MM" times, for a run starting at
/// `start_of_day_ms`; equal times mean all day. Only the occurrence that is current at the
/// run's start, or the next one, is used.
pub fn shift_window(start: ClockTime, end: ClockTime, start_of_day_ms: i64) -> (SimTime, SimTime) {
    let (s, e) = (start.ms(), end.ms());
    if s == e {
        return (0, i64::MAX);
    }
    let dur = (e - s).rem_euclid(DAY_MS);
    let offset = (s - start_of_day_ms).rem_euclid(DAY_MS);
    if offset - DAY_MS + dur > 0 {
        (0, offset - DAY_MS + dur)
    } else {
        (offset, offset + dur)
    }
}

/// Which shift rider `k` of `n` at a hub works: the shift whose cumulative share covers it.
pub fn shift_of(k: u32, n: u32, shares: &[f64]) -> usize {
    let total: f64 = shares.iter().sum();
    let x = (f64::from(k) + 0.5) / f64::from(n.max(1)) * total;
    let mut acc = 0.0;
    for (i, s) in shares.iter().enumerate() {
        acc += s;
        if x < acc {
            return i;
        }
    }
    shares.len() - 1
}

/// The windows in which rider `k` of an hourly profile works: the local hours whose count is
/// above `k`, consecutive hours merged, from the run's start to `horizon` (a window still open
/// there never ends).
pub fn hourly_windows(
    k: u32,
    staff: Staff<'_>,
    start_of_day_ms: i64,
    horizon: SimTime,
) -> Vec<(SimTime, SimTime)> {
    let mut windows: Vec<(SimTime, SimTime)> = Vec::new();
    for (hour, start, end) in hour_slots(start_of_day_ms, 0, horizon) {
        if k < staff.at(hour) {
            match windows.last_mut() {
                Some(w) if w.1 == start => w.1 = end,
                _ => windows.push((start, end)),
            }
        }
    }
    if let Some(w) = windows.last_mut().filter(|w| w.1 >= horizon) {
        w.1 = i64::MAX;
    }
    windows
}

pub fn riders_for(sc: &Scenario) -> Vec<Rider> {
    if !sc.dispatch.enabled {
        return Vec::new();
    }
    let shares: Vec<f64> = sc.riders.shifts.iter().map(|s| s.share).collect();
    let horizon = sc.duration_ms() + DRAIN_LIMIT_MS;
    let mut riders = Vec::new();
    for (h, hub) in sc.hubs.iter().enumerate() {
        let staff = hub.riders();
        for k in 0..staff.pool() {
            let shifts = match staff {
                Staff::Flat(n) => {
                    let sh = &sc.riders.shifts[shift_of(k, n, &shares)];
                    vec![shift_window(sh.start, sh.end, sc.start_of_day_ms())]
                }
                Staff::Hourly(_) => hourly_windows(k, staff, sc.start_of_day_ms(), horizon),
            };
            riders.push(Rider {
                home: HubIx(h),
                state: DriverState::Offline,
                pos: Point {
                    lat: hub.lat,
                    lng: hub.lng,
                },
                trip: None,
                trip_seq: 0,
                order: None,
                offer: None,
                offer_seq: 0,
                leaving: false,
                deliveries: 0,
                busy_ms: 0,
                on_shift_ms: 0,
                busy_since: None,
                on_since: None,
                shifts,
            });
        }
    }
    riders
}

fn busy(s: DriverState) -> bool {
    !matches!(s, DriverState::Idle | DriverState::Offline)
}

/// Runs one Dispatcher call through the executor (`$op` names it in the latency table).
macro_rules! dispatch {
    ($w:ident, $op:literal, |$d:ident| $call:expr) => {{
        let $d = &$w.fleet.dispatch;
        $w.exec.run($op, $call)
    }};
}

impl<S: StockStore, R: DispatchRepo, E: EtaStore, X: Exec> World<'_, S, R, E, X> {
    /// Registers every rider (OFFLINE at their hub) and schedules shift starts and ends.
    pub(crate) fn start_fleet(&mut self) -> Result<(), SimError> {
        let now = self.now_ms();
        for r in 0..self.fleet.riders.len() {
            let new = NewDriver {
                id: RiderIx(r).key(),
                name: String::new(),
                location: Some(self.fleet.riders[r].pos),
                max_load: 1,
            };
            let out = dispatch!(self, "dispatch.register_driver", |d| d
                .register_driver(new, now));
            self.accept_result(out)?;
            for i in 0..self.fleet.riders[r].shifts.len() {
                let (start, end) = self.fleet.riders[r].shifts[i];
                self.q.at(start, Ev::ShiftStart(RiderIx(r)));
                if end != i64::MAX {
                    self.q.at(end.max(start), Ev::ShiftEnd(RiderIx(r)));
                }
            }
        }
        Ok(())
    }

    /// A Dispatcher answer: a store failure stops the run; a refusal the twin never expects
    /// (an illegal transition, a stale offer) is recorded as an invariant violation.
    fn accept_result<T>(&mut self, r: Result<T, DispatchError>) -> Result<Option<T>, SimError> {
        match r {
            Ok(v) => Ok(Some(v)),
            Err(DispatchError::Backend(m)) => Err(SimError::Dispatch(m)),
            Err(e) => {
                self.fleet.stats.refused += 1;
                if self.fleet.stats.refused_details.len() < 10 {
                    let t = self.q.now();
                    self.fleet
                        .stats
                        .refused_details
                        .push(format!("dispatch refused at {t} ms: {e}"));
                }
                Ok(None)
            }
        }
    }

    /// The rider's app moves them (`POST /dispatch/driver/state`); the notices it causes are
    /// applied. False if Dispatch refused.
    fn app_state(&mut self, t: SimTime, r: RiderIx, to: DriverState) -> Result<bool, SimError> {
        let (id, now) = (r.key(), self.now_ms());
        let out = dispatch!(self, "dispatch.driver_state", |d| d
            .driver_state(&id, to, None, now));
        match self.accept_result(out)? {
            Some(out) => {
                self.mirror(t, r, to);
                self.apply(t, out.notices)?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Keeps the world's view of a rider's state (for busy-time accounting) in step.
    fn mirror(&mut self, t: SimTime, r: RiderIx, to: DriverState) {
        let rider = &mut self.fleet.riders[r.0];
        let from = rider.state;
        if busy(to) && !busy(from) {
            rider.busy_since = Some(t);
        }
        if !busy(to) && busy(from) {
            rider.busy_ms += t - rider.busy_since.take().unwrap_or(t);
        }
        if from == DriverState::Offline && to != DriverState::Offline {
            rider.on_since = Some(t);
        }
        if to == DriverState::Offline && from != DriverState::Offline {
            rider.on_shift_ms += t - rider.on_since.take().unwrap_or(t);
            rider.leaving = false;
        }
        rider.state = to;
    }

    /// What Dispatch announced, as the world lives it.
    fn apply(&mut self, t: SimTime, notices: Vec<Notice>) -> Result<(), SimError> {
        let mut repooled = false;
        for n in notices {
            self.track_status(&n)?;
            let order = n.order_id.as_deref().and_then(OrderIx::parse);
            let rider = n.driver_id.as_deref().and_then(RiderIx::parse);
            match (n.kind, order, rider) {
                ("order.assigned", Some(o), Some(r)) => {
                    let aid = n.assignment_id.unwrap_or_default();
                    self.offered(t, o, r, aid, n.due_at.unwrap_or(n.at));
                }
                ("assignment.timeout", Some(o), Some(r)) => {
                    self.fleet.stats.offers_timed_out += 1;
                    self.offer_closed(t, o, r)?;
                }
                ("assignment.rejected" | "assignment.cancelled", Some(o), Some(r)) => {
                    self.offer_closed(t, o, r)?;
                }
                ("order.reassign_scheduled", Some(_), _) => {
                    self.fleet.stats.reassignments += 1;
                    let due = n.due_at.unwrap_or(n.at) - self.epoch_ms;
                    self.q.at(due.max(t), Ev::ReassignWake);
                }
                ("order.repooled", Some(o), _) => {
                    self.fleet.stats.repooled += 1;
                    self.orders[o.0].state = OrderState::AwaitingRider;
                    repooled = true;
                }
                ("order.failed", Some(o), _) => {
                    let reason = n.reason.unwrap_or_else(|| "DISPATCH_FAILED".into());
                    self.lose(t, o, OrderState::DispatchFailed, reason);
                }
                _ => {}
            }
        }
        if repooled {
            self.batch_tick(t)?;
        }
        Ok(())
    }

    /// A picked order enters Dispatch (as Checkout's `dispatch_queue` row would), with its
    /// delivery deadline counted from payment.
    pub(crate) fn enqueue_dispatch(&mut self, t: SimTime, o: OrderIx) -> Result<(), SimError> {
        let h = self.orders[o.0].hub;
        self.orders[o.0].state = OrderState::AwaitingRider;
        let paid = self.orders[o.0].paid_at.unwrap_or(t);
        let deliver_by = self.epoch_ms + paid + self.fleet.dispatch.policy.deadline_ms;
        let new = NewOrder {
            id: o.key(),
            customer_id: format!("c{:07}", o.0),
            hub_id: self.hubs[h.0].id.to_string(),
            items: self.orders[o.0]
                .lines
                .iter()
                .map(|(s, q)| DispatchItem {
                    product_id: self.skus[*s].to_string(),
                    name: String::new(),
                    quantity: *q,
                })
                .collect(),
            total: 0,
            priority: 1,
            delivery_location: self.orders[o.0].location,
            pickup_location: None,
            deliver_by: Some(deliver_by),
        };
        let now = self.now_ms();
        let out = dispatch!(self, "dispatch.create_order", |d| d.create_order(new, now));
        self.accept_result(out)?;
        self.q
            .at((deliver_by - self.epoch_ms).max(t), Ev::DeadlineWake);
        self.batch_tick(t)
    }

    /// The batch job (06 §5): flush if the timer says so, then wake again when it next can.
    pub(crate) fn batch_tick(&mut self, t: SimTime) -> Result<(), SimError> {
        let now = self.now_ms();
        let due = {
            let (d, timer) = (&self.fleet.dispatch, &mut self.fleet.timer);
            self.exec.run("dispatch.batch_due", d.batch_due(timer, now))
        };
        if self.accept_result(due)? == Some(true) {
            let out = {
                let (d, timer, hubs) = (
                    &self.fleet.dispatch,
                    &mut self.fleet.timer,
                    &self.fleet.hub_points,
                );
                self.exec
                    .run("dispatch.flush", d.flush_and_rearm(timer, now, hubs))
            };
            if let Some(out) = self.accept_result(out)? {
                let r = &out.value;
                if r.matched > 0 {
                    self.fleet.stats.batches += 1;
                    self.fleet.stats.batched_orders += r.matched as u64;
                    if r.matched > 1 {
                        self.fleet.stats.orders_in_multi_order_batches += r.matched as u64;
                    }
                }
                if r.greedy.0 == r.optimal.0 && r.greedy.0 > 0 {
                    self.fleet.stats.greedy_cost += r.greedy.1;
                    self.fleet.stats.optimal_cost += r.optimal.1;
                    self.fleet.stats.compared_batches += 1;
                }
                self.apply(t, out.notices)?;
            }
        }
        if let Some(next) = self.fleet.timer.next_due() {
            let at = (next - self.epoch_ms).max(t);
            if self.fleet.batch_wake.is_none_or(|w| w > at || w < t) {
                self.fleet.batch_wake = Some(at);
                self.q.at(at, Ev::BatchWake);
            }
        }
        Ok(())
    }

    pub(crate) fn on_batch_wake(&mut self, t: SimTime) -> Result<(), SimError> {
        if self.fleet.batch_wake == Some(t) {
            self.fleet.batch_wake = None;
        }
        self.batch_tick(t)
    }

    /// The offer sweeper's pass at an offer's deadline.
    pub(crate) fn on_offer_expiry(&mut self, t: SimTime) -> Result<(), SimError> {
        let now = self.now_ms();
        let out = dispatch!(self, "dispatch.expire_offers", |d| d.expire_offers(now));
        if let Some(out) = self.accept_result(out)? {
            self.apply(t, out.notices)?;
        }
        Ok(())
    }

    /// The reassignment scheduler's pass when an attempt is due.
    pub(crate) fn on_reassign_wake(&mut self, t: SimTime) -> Result<(), SimError> {
        let now = self.now_ms();
        let out = {
            let (d, hubs) = (&self.fleet.dispatch, &self.fleet.hub_points);
            self.exec
                .run("dispatch.run_reassignments", d.run_reassignments(now, hubs))
        };
        if let Some(out) = self.accept_result(out)? {
            self.apply(t, out.notices)?;
        }
        Ok(())
    }

    /// The deadline sweeper's pass when an order's deadline comes.
    pub(crate) fn on_deadline_wake(&mut self, t: SimTime) -> Result<(), SimError> {
        let now = self.now_ms();
        let out = dispatch!(self, "dispatch.expire_overdue", |d| d.expire_overdue(now));
        if let Some(out) = self.accept_result(out)? {
            self.apply(t, out.notices)?;
        }
        Ok(())
    }

    fn hub_point(&self, h: HubIx) -> Point {
        Point {
            lat: self.sc.hubs[h.0].lat,
            lng: self.sc.hubs[h.0].lng,
        }
    }

    /// Where a rider is now (interpolated along a trip back to the hub).
    fn rider_pos(&self, r: RiderIx, t: SimTime) -> Point {
        let rider = &self.fleet.riders[r.0];
        match rider.trip {
            Some(tr) if tr.end > tr.start => {
                let f = ((t - tr.start) as f64 / (tr.end - tr.start) as f64).clamp(0.0, 1.0);
                Point {
                    lat: tr.from.lat + (tr.to.lat - tr.from.lat) * f,
                    lng: tr.from.lng + (tr.to.lng - tr.from.lng) * f,
                }
            }
            Some(tr) => tr.to,
            None => rider.pos,
        }
    }

    /// The rider's true speed (m/s) and bearing (degrees) while riding a leg; None standing.
    fn rider_motion(&self, r: RiderIx, t: SimTime) -> Option<(f64, f64)> {
        let tr = self.fleet.riders[r.0].trip?;
        if !(tr.start..tr.end).contains(&t) {
            return None;
        }
        let km = qc_geo::haversine_km(tr.from, tr.to);
        let (dn, de) = (
            tr.to.lat - tr.from.lat,
            (tr.to.lng - tr.from.lng) * tr.from.lat.to_radians().cos(),
        );
        let bearing = de.atan2(dn).to_degrees().rem_euclid(360.0);
        Some((km * 1e6 / (tr.end - tr.start) as f64, bearing))
    }

    /// Virtual [start, end) of traffic event `i`.
    pub(crate) fn event_window(&self, i: usize) -> (SimTime, SimTime) {
        let ev = &self.sc.traffic.events[i];
        let s = ev.start.ms();
        let start = (s - self.sc.start_of_day_ms()).rem_euclid(DAY_MS);
        let end = ev
            .end
            .map_or(i64::MAX, |e| start + (e.ms() - s).rem_euclid(DAY_MS));
        (start, end)
    }

    /// The mean riding speed (km/h) at `t` for a trip from → to: the hour's profile and every
    /// traffic event active there.
    fn mean_speed_kmh(&self, from: Point, to: Point, t: SimTime) -> f64 {
        let hour = (((self.sc.start_of_day_ms() + t) % DAY_MS) / HOUR_MS) as usize;
        self.sc.riders.speed_kmh
            * self.sc.traffic.hourly_speed[hour]
            * self.event_factor(from, to, t)
    }

    /// The product of the speed factors of the traffic events covering the trip's midpoint.
    pub(crate) fn event_factor(&self, from: Point, to: Point, t: SimTime) -> f64 {
        let mid = Point {
            lat: (from.lat + to.lat) / 2.0,
            lng: (from.lng + to.lng) / 2.0,
        };
        let mut speed = 1.0;
        for (i, ev) in self.sc.traffic.events.iter().enumerate() {
            let (start, end) = self.event_window(i);
            let inside = match (ev.lat, ev.lng, ev.radius_km) {
                (Some(lat), Some(lng), Some(r)) => haversine_km(mid, Point { lat, lng }) <= r,
                _ => true,
            };
            if inside && start <= t && t < end {
                speed *= ev.speed_factor;
            }
        }
        speed
    }

    /// Noise-free riding time, ms.
    fn designed_travel_ms(&self, from: Point, to: Point, t: SimTime) -> f64 {
        let km = self.sc.riders.road_factor * haversine_km(from, to);
        km / self.mean_speed_kmh(from, to, t).max(1.0) * HOUR_MS as f64
    }

    /// Road travel time with the hour's traffic, traffic events and noise.
    fn travel_ms(&mut self, from: Point, to: Point, t: SimTime) -> i64 {
        let rd = &self.sc.riders;
        let lognormal = |cv: f64| {
            let s2 = (1.0 + cv * cv).ln();
            LogNormal::new(-s2 / 2.0, s2.sqrt()).expect("valid")
        };
        let speed =
            self.mean_speed_kmh(from, to, t) * lognormal(rd.speed_cv).sample(&mut self.rng.riding);
        let noise = lognormal(self.sc.traffic.noise_cv).sample(&mut self.rng.traffic);
        let km = rd.road_factor * haversine_km(from, to);
        ((km / speed.max(1.0) * HOUR_MS as f64) * noise).round() as i64
    }

    /// Dispatch offered `o` to `r`: the rider stops where they are, and will answer, reject, or
    /// let the offer run out.
    fn offered(&mut self, t: SimTime, o: OrderIx, r: RiderIx, assignment: String, expires: i64) {
        let pos = self.rider_pos(r, t);
        let hub = self.orders[o.0].hub;
        let hub = self.hub_point(hub);
        self.mirror(t, r, DriverState::Assigned);
        let rider = &mut self.fleet.riders[r.0];
        rider.pos = pos;
        rider.trip = None;
        rider.trip_seq += 1;
        rider.order = Some(o);
        rider.offer = Some(assignment);
        rider.offer_seq += 1;
        let seq = rider.offer_seq;
        self.fleet.stats.offers += 1;
        self.fleet.stats.pickup_km += haversine_km(pos, hub);
        self.fleet.stats.pickups += 1;
        let order = &mut self.orders[o.0];
        order.state = OrderState::Offered;
        order.offers += 1;
        let rd = &self.sc.riders;
        let answer_ms = if rd.answer_mean_s > 0.0 {
            (Exp::new(1.0 / (rd.answer_mean_s * 1000.0))
                .expect("positive")
                .sample(&mut self.rng.offers))
            .round() as i64
        } else {
            0
        };
        let accept = self.rng.offers.random::<f64>() < rd.accept_probability;
        let expires = expires - self.epoch_ms;
        if t + answer_ms >= expires {
            self.q.at(expires.max(t), Ev::OfferExpiry);
        } else {
            self.q.after(answer_ms, Ev::OfferAnswer(r, seq, accept));
        }
    }

    pub(crate) fn on_offer_answer(
        &mut self,
        t: SimTime,
        r: RiderIx,
        seq: u64,
        accept: bool,
    ) -> Result<(), SimError> {
        let rider = &self.fleet.riders[r.0];
        let (Some(aid), Some(o)) = (rider.offer.clone(), rider.order) else {
            return Ok(());
        };
        if rider.offer_seq != seq {
            return Ok(());
        }
        let (did, now) = (r.key(), self.now_ms());
        if !accept {
            self.fleet.stats.offers_rejected += 1;
            let out = dispatch!(self, "dispatch.reject", |d| d
                .reject(&aid, &did, None, None, now));
            if let Some(out) = self.accept_result(out)? {
                self.apply(t, out.notices)?;
            }
            return Ok(());
        }
        let out = dispatch!(self, "dispatch.accept", |d| d.accept(&aid, &did, now));
        let Some(accepted) = self.accept_result(out)? else {
            return Ok(());
        };
        self.mirror(t, r, DriverState::ToHub);
        self.fleet.riders[r.0].offer = None;
        // Dispatch knows no home hubs: a rider works from the hub of their last pickup.
        self.fleet.riders[r.0].home = self.orders[o.0].hub;
        self.orders[o.0].state = OrderState::OutForDelivery;
        let at = Some(self.fleet.riders[r.0].pos);
        self.re_estimate_eta(o, qc_eta::model::Stage::Assigned { picked: true }, at)?;
        let hub = self.hub_point(self.orders[o.0].hub);
        let from = self.fleet.riders[r.0].pos;
        let d = self.travel_ms(from, hub, t);
        self.fleet.riders[r.0].trip = Some(Trip {
            from,
            to: hub,
            start: t,
            end: t + d,
        });
        self.q.after(d, Ev::RiderAtHub(r));
        if let Some(g) = &self.gps {
            self.q.after(g.interval_ms(), Ev::GpsFix(r, o));
        }
        self.apply(t, accepted.notices)
    }

    /// What Dispatch posts to Tracking for a notice (06 §8, [`Notice::tracking_status`]),
    /// through the tracking core; with GPS off there is no Tracking in the run.
    fn track_status(&mut self, n: &Notice) -> Result<(), SimError> {
        let now = self.now_ms();
        let (Some(g), Some(oid)) = (self.gps.as_mut(), n.order_id.as_deref()) else {
            return Ok(());
        };
        let Some(status) = n
            .tracking_status()
            .and_then(qc_tracking::OrderStatus::parse)
        else {
            return Ok(());
        };
        let out = self.exec.run(
            "tracking.status",
            g.tracker
                .set_status(oid, status, n.driver_id.as_deref(), now),
        );
        match out {
            Ok(_) => Ok(()),
            Err(qc_tracking::StatusError::Store(e)) => Err(SimError::Tracking(e)),
            Err(qc_tracking::StatusError::Closed(e)) => Err(SimError::Unexpected(format!(
                "Tracking refused {} for order {oid}: already {}",
                status.as_str(),
                e.status.as_str()
            ))),
        }
    }

    /// The phone of a rider carrying `o` sends a fix of where the rider truly is, through
    /// Tracking; the next one is due an interval later while the rider still has the order.
    pub(crate) fn on_gps_fix(
        &mut self,
        t: SimTime,
        r: RiderIx,
        o: OrderIx,
    ) -> Result<(), SimError> {
        if self.fleet.riders[r.0].order != Some(o) {
            return Ok(());
        }
        let truth = self.rider_pos(r, t);
        let motion = self.rider_motion(r, t);
        let now = self.now_ms();
        let Some(g) = self.gps.as_mut() else {
            return Ok(());
        };
        self.q.after(g.interval_ms(), Ev::GpsFix(r, o));
        let Some((fix, outlier)) = g.next_fix(r.0, truth, motion, now) else {
            return Ok(());
        };
        let (rid, oid) = (r.key(), o.key());
        let out = self
            .exec
            .run("tracking.ingest", g.tracker.ingest(&rid, &oid, &fix, now));
        g.record(o.0, now, truth, &fix, outlier, &out)
            .map_err(SimError::Tracking)
    }

    /// Reject or timeout: the rider is free again (riding back if away); Dispatch has already
    /// scheduled the order's next attempt, re-pooled it, or failed it.
    fn offer_closed(&mut self, t: SimTime, o: OrderIx, r: RiderIx) -> Result<(), SimError> {
        self.mirror(t, r, DriverState::Idle);
        let rider = &mut self.fleet.riders[r.0];
        rider.order = None;
        rider.offer = None;
        if self.orders[o.0].state == OrderState::Offered {
            self.orders[o.0].state = OrderState::AwaitingRider;
        }
        if self.fleet.riders[r.0].leaving || !self.fleet.riders[r.0].on_duty(t) {
            self.app_state(t, r, DriverState::Offline)?;
        } else {
            self.ride_back(t, r)?;
        }
        Ok(())
    }

    pub(crate) fn on_rider_at_hub(&mut self, t: SimTime, r: RiderIx) -> Result<(), SimError> {
        if self.app_state(t, r, DriverState::Picking)? {
            let o = self.fleet.riders[r.0]
                .order
                .expect("a rider at the hub has an order");
            self.fleet.riders[r.0].pos = self.hub_point(self.orders[o.0].hub);
            self.fleet.riders[r.0].trip = None;
            self.q.after(
                (self.sc.riders.pickup_s * 1000.0).round() as i64,
                Ev::PickupDone(r),
            );
        }
        Ok(())
    }

    pub(crate) fn on_pickup_done(&mut self, t: SimTime, r: RiderIx) -> Result<(), SimError> {
        if !self.app_state(t, r, DriverState::Delivering)? {
            return Ok(());
        }
        let o = self.fleet.riders[r.0]
            .order
            .expect("delivering riders carry an order");
        self.re_estimate_eta(o, qc_eta::model::Stage::PickedUp, None)?;
        let (from, to) = (self.fleet.riders[r.0].pos, self.orders[o.0].location);
        let handover_ms = (self.sc.riders.handover_s * 1000.0).round() as i64;
        let designed = self.designed_travel_ms(from, to, t) + handover_ms as f64;
        self.orders[o.0].out_at = Some(t);
        self.orders[o.0].designed_trip_s = designed / 1000.0;
        let ride = self.travel_ms(from, to, t);
        self.fleet.riders[r.0].trip = Some(Trip {
            from,
            to,
            start: t,
            end: t + ride,
        });
        self.q.after(ride + handover_ms, Ev::Delivered(r));
        Ok(())
    }

    pub(crate) fn on_delivered(&mut self, t: SimTime, r: RiderIx) -> Result<(), SimError> {
        if !self.app_state(t, r, DriverState::Completed)? {
            return Ok(());
        }
        let o = self.fleet.riders[r.0]
            .order
            .take()
            .expect("a delivered order");
        let here = self.orders[o.0].location;
        self.fleet.riders[r.0].pos = here;
        self.fleet.riders[r.0].trip = None;
        self.fleet.riders[r.0].deliveries += 1;
        let order = &mut self.orders[o.0];
        order.state = OrderState::Delivered;
        order.delivered_at = Some(t);
        order.rider = Some(r);
        self.in_flight -= 1;
        self.observe_eta(t, o)?;
        let h = self.orders[o.0].hub;
        let hub = self.hubs[h.0].id.to_string();
        self.log.push(
            t,
            kind::DELIVERED,
            Some(o.0 as u64),
            &hub,
            "",
            0,
            t - self.orders[o.0].placed_at,
        );
        if self.fleet.riders[r.0].leaving || !self.fleet.riders[r.0].on_duty(t) {
            self.app_state(t, r, DriverState::Offline)?;
        } else if self.app_state(t, r, DriverState::Idle)? {
            self.report_location(r, here)?;
            self.ride_back(t, r)?;
        }
        Ok(())
    }

    /// The rider app's location report (what the matcher sees of an idle rider).
    fn report_location(&mut self, r: RiderIx, p: Point) -> Result<(), SimError> {
        let (id, now) = (r.key(), self.now_ms());
        let out = dispatch!(self, "dispatch.set_location", |d| d
            .set_location(&id, p, now));
        self.accept_result(out)?;
        Ok(())
    }

    /// An idle rider away from their hub rides back (and can be matched on the way).
    fn ride_back(&mut self, t: SimTime, r: RiderIx) -> Result<(), SimError> {
        let hub = self.hub_point(self.fleet.riders[r.0].home);
        let from = self.rider_pos(r, t);
        if haversine_km(from, hub) < 0.01 {
            self.fleet.riders[r.0].pos = hub;
            self.fleet.riders[r.0].trip = None;
            return Ok(());
        }
        let d = self.travel_ms(from, hub, t);
        let rider = &mut self.fleet.riders[r.0];
        rider.pos = from;
        rider.trip = Some(Trip {
            from,
            to: hub,
            start: t,
            end: t + d,
        });
        rider.trip_seq += 1;
        let seq = rider.trip_seq;
        self.q.after(d, Ev::BackAtHub(r, seq));
        Ok(())
    }

    pub(crate) fn on_back_at_hub(&mut self, r: RiderIx, seq: u64) -> Result<(), SimError> {
        let rider = &mut self.fleet.riders[r.0];
        if rider.trip_seq == seq && rider.state == DriverState::Idle {
            if let Some(tr) = rider.trip.take() {
                rider.pos = tr.to;
                self.report_location(r, tr.to)?;
            }
        }
        Ok(())
    }

    pub(crate) fn on_shift_start(&mut self, t: SimTime, r: RiderIx) -> Result<(), SimError> {
        let rider = &mut self.fleet.riders[r.0];
        if rider.leaving {
            // Back on shift before the last delivery of the previous one ended: stay.
            rider.leaving = false;
            return Ok(());
        }
        if rider.state == DriverState::Offline && self.app_state(t, r, DriverState::Idle)? {
            self.fleet.riders[r.0].pos = self.hub_point(self.fleet.riders[r.0].home);
        }
        Ok(())
    }

    pub(crate) fn on_shift_end(&mut self, t: SimTime, r: RiderIx) -> Result<(), SimError> {
        if self.fleet.riders[r.0].state == DriverState::Idle {
            self.app_state(t, r, DriverState::Offline)?;
        } else {
            self.fleet.riders[r.0].leaving = true;
        }
        Ok(())
    }

    /// Closes busy and on-shift accounting at `t` (time after it is not counted).
    pub(crate) fn close_fleet(&mut self, t: SimTime) {
        for rider in &mut self.fleet.riders {
            if let Some(s) = rider.busy_since.take() {
                rider.busy_ms += (t - s).max(0);
            }
            if let Some(s) = rider.on_since.take() {
                rider.on_shift_ms += (t - s).max(0);
            }
        }
    }

    /// Idle riders based at hub `h` (what the ETA request's `drivers_avail` counts).
    pub(crate) fn idle_count(&self, h: HubIx) -> u32 {
        self.fleet
            .riders
            .iter()
            .filter(|r| r.home == h && r.state == DriverState::Idle && !r.leaving)
            .count() as u32
    }

    /// Per hub: riders busy and riders on shift.
    pub(crate) fn rider_counts(&self, h: HubIx) -> (i64, i64) {
        let mine = self.fleet.riders.iter().filter(|r| r.home == h);
        let busy_n = mine.clone().filter(|r| busy(r.state)).count() as i64;
        let on = mine.filter(|r| r.state != DriverState::Offline).count() as i64;
        (busy_n, on)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shift_windows_relative_to_the_run_start() {
        let at = |s: &str| ClockTime::try_from(s.to_string()).unwrap();
        let eleven = 11 * HOUR_MS;
        assert_eq!(
            shift_window(at("00:00"), at("00:00"), eleven),
            (0, i64::MAX)
        );
        // Already on at 11:00 until 15:00.
        assert_eq!(
            shift_window(at("10:00"), at("15:00"), eleven),
            (0, 4 * HOUR_MS)
        );
        // Starts later.
        assert_eq!(
            shift_window(at("12:30"), at("16:00"), eleven),
            (HOUR_MS + HOUR_MS / 2, 5 * HOUR_MS)
        );
        // Overnight shift covering the start.
        assert_eq!(shift_window(at("22:00"), at("12:00"), eleven), (0, HOUR_MS));
    }

    #[test]
    fn hourly_profiles_give_each_rider_merged_windows() {
        let mut hours = [0u32; 24];
        (hours[11], hours[12], hours[13], hours[14], hours[15]) = (2, 3, 1, 3, 1);
        let staff = Staff::Hourly(&hours);
        // The run starts at 11:30 and lasts 4 hours (horizon 15:30).
        let (sod, horizon) = (11 * HOUR_MS + HOUR_MS / 2, 4 * HOUR_MS);
        let half = HOUR_MS / 2;
        // Rider 0 works 11:30-15:30 without a break; the window reaches the horizon: open.
        assert_eq!(hourly_windows(0, staff, sod, horizon), vec![(0, i64::MAX)]);
        // Rider 1: 11:30-13:00, then 14:00-15:00 (hour 15 has nobody).
        assert_eq!(
            hourly_windows(1, staff, sod, horizon),
            vec![
                (0, half + HOUR_MS),
                (half + 2 * HOUR_MS, half + 3 * HOUR_MS)
            ]
        );
        // Rider 2 works hours 12 and 14 only.
        assert_eq!(
            hourly_windows(2, staff, sod, horizon),
            vec![
                (half, half + HOUR_MS),
                (half + 2 * HOUR_MS, half + 3 * HOUR_MS)
            ]
        );
        assert!(hourly_windows(3, staff, sod, horizon).is_empty());
        // Person-time agrees with the windows: 2×0.5 + 3 + 1 + 3 + 1×0.5 = 8.5 rider-hours.
        assert_eq!(staff.person_ms(sod, 0, horizon), 8 * HOUR_MS + half);
    }

    #[test]
    fn riders_split_over_shifts_by_share() {
        let shares = [1.0, 3.0];
        let counts = (0..8).fold([0, 0], |mut c, k| {
            c[shift_of(k, 8, &shares)] += 1;
            c
        });
        assert_eq!(counts, [2, 6]);
    }
}
