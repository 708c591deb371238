//! Riders and dispatch in the twin (06-dispatch through `qc-dispatch`): picked orders wait in a
//! per-hub pool that flushes in batches, the matcher offers them to idle riders (at the hub or
//! riding back to it), riders answer, reject or let offers time out, rejected orders are
//! reassigned with backoff, and riders travel hub → door → hub with a road factor, the
//! time-of-day traffic profile and noise. Every rider transition is checked against the
//! driver state machine.

use qc_dispatch::matching::{cost, greedy, optimal, total, Assignment, CostInput, CostMatrix};
use qc_dispatch::{check_transition, next_reassignment, DriverState, Matcher, OrderEffect, Via};
use qc_geo::{haversine_km, Point};
use qc_inventory::StockStore;
use rand::Rng;
use rand_distr::{Distribution, Exp, LogNormal};

use crate::backend::Exec;
use crate::engine::SimTime;
use crate::log::kind;
use crate::scenario::{parse_clock_ms, Scenario};
use crate::world::{Ev, OrderState, World, DAY_MS, HOUR_MS};

/// A straight trip between two points, used to place a rider riding back to the hub.
#[derive(Debug, Clone, Copy)]
pub struct Trip {
    pub from: Point,
    pub to: Point,
    pub start: SimTime,
    pub end: SimTime,
}

#[derive(Debug, Clone)]
pub struct Rider {
    pub hub: usize,
    pub state: DriverState,
    /// Where the rider was when `trip` started (or is, without a trip).
    pub pos: Point,
    pub trip: Option<Trip>,
    /// Bumped whenever a trip is abandoned, so its arrival event is ignored.
    pub trip_seq: u64,
    pub order: Option<usize>,
    pub skipped: u32,
    pub leaving: bool,
    pub deliveries: u64,
    pub busy_ms: i64,
    pub on_shift_ms: i64,
    busy_since: Option<SimTime>,
    on_since: Option<SimTime>,
    /// Virtual [start, end) of the rider's shift.
    pub shift: (SimTime, SimTime),
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
    pub pickup_km: f64,
    pub pickups: u64,
    pub greedy_cost: f64,
    pub optimal_cost: f64,
    pub compared_batches: u64,
    pub illegal_transitions: u64,
    pub illegal_details: Vec<String>,
}

/// The virtual [start, end) of a shift given as local "HH:MM" times, for a run starting at
/// `start_of_day_ms`; equal times mean all day. Only the occurrence that is current at the
/// run's start, or the next one, is used.
pub fn shift_window(start: &str, end: &str, start_of_day_ms: i64) -> (SimTime, SimTime) {
    let (s, e) = (
        parse_clock_ms(start).unwrap_or(0),
        parse_clock_ms(end).unwrap_or(0),
    );
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

pub fn riders_for(sc: &Scenario) -> Vec<Rider> {
    let shares: Vec<f64> = sc.riders.shifts.iter().map(|s| s.share).collect();
    let mut riders = Vec::new();
    for (h, hub) in sc.hubs.iter().enumerate() {
        for k in 0..hub.riders {
            let sh = &sc.riders.shifts[shift_of(k, hub.riders, &shares)];
            riders.push(Rider {
                hub: h,
                state: DriverState::Offline,
                pos: Point {
                    lat: hub.lat,
                    lng: hub.lng,
                },
                trip: None,
                trip_seq: 0,
                order: None,
                skipped: 0,
                leaving: false,
                deliveries: 0,
                busy_ms: 0,
                on_shift_ms: 0,
                busy_since: None,
                on_since: None,
                shift: shift_window(&sh.start, &sh.end, sc.start_of_day_ms()),
            });
        }
    }
    riders
}

fn busy(s: DriverState) -> bool {
    !matches!(s, DriverState::Idle | DriverState::Offline)
}

impl<S: StockStore, X: Exec> World<'_, S, X> {
    /// Schedules shift starts and ends.
    pub(crate) fn start_fleet(&mut self) {
        for r in 0..self.riders.len() {
            let (start, end) = self.riders[r].shift;
            self.q.at(start, Ev::ShiftStart(r));
            if end != i64::MAX {
                self.q.at(end.max(start), Ev::ShiftEnd(r));
            }
        }
    }

    /// Moves a rider if the state machine allows it; an illegal request is recorded as an
    /// invariant violation and changes nothing.
    fn move_rider(
        &mut self,
        t: SimTime,
        r: usize,
        to: DriverState,
        via: Via,
    ) -> Option<OrderEffect> {
        let from = self.riders[r].state;
        match check_transition(from, to, via) {
            Ok(effect) => {
                let rider = &mut self.riders[r];
                if busy(to) && !busy(from) {
                    rider.busy_since = Some(t);
                }
                if !busy(to) && busy(from) {
                    rider.busy_ms += t - rider.busy_since.take().unwrap_or(t);
                }
                if from == DriverState::Offline {
                    rider.on_since = Some(t);
                }
                if to == DriverState::Offline {
                    rider.on_shift_ms += t - rider.on_since.take().unwrap_or(t);
                }
                rider.state = to;
                Some(effect)
            }
            Err(e) => {
                self.fleet.illegal_transitions += 1;
                if self.fleet.illegal_details.len() < 10 {
                    self.fleet
                        .illegal_details
                        .push(format!("rider {r} at {t} ms: {e}"));
                }
                None
            }
        }
    }

    fn hub_point(&self, h: usize) -> Point {
        Point {
            lat: self.sc.hubs[h].lat,
            lng: self.sc.hubs[h].lng,
        }
    }

    /// Where a rider is now (interpolated along a trip back to the hub).
    fn rider_pos(&self, r: usize, t: SimTime) -> Point {
        let rider = &self.riders[r];
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

    /// Virtual [start, end) of traffic event `i`.
    pub(crate) fn event_window(&self, i: usize) -> (SimTime, SimTime) {
        let ev = &self.sc.traffic.events[i];
        let s = parse_clock_ms(&ev.start).unwrap_or(0);
        let start = (s - self.sc.start_of_day_ms()).rem_euclid(DAY_MS);
        let end = ev.end.as_deref().map_or(i64::MAX, |e| {
            start + (parse_clock_ms(e).unwrap_or(0) - s).rem_euclid(DAY_MS)
        });
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

    /// A picked order joins its hub's pool.
    pub(crate) fn enqueue_dispatch(&mut self, t: SimTime, o: usize) {
        let h = self.orders[o].hub.expect("picked orders have a hub");
        self.orders[o].state = OrderState::AwaitingRider;
        self.pools[h].push_back(o);
        if self.pools[h].len() >= self.sc.dispatch.min_orders as usize {
            self.flush(t, h);
        } else if !self.armed[h] {
            self.armed[h] = true;
            self.q.after(
                (self.sc.dispatch.window_s * 1000.0).round() as i64,
                Ev::Flush(h),
            );
        }
    }

    pub(crate) fn on_flush_timer(&mut self, t: SimTime, h: usize) {
        self.armed[h] = false;
        self.flush(t, h);
    }

    fn idle_riders(&self, h: usize) -> Vec<usize> {
        (0..self.riders.len())
            .filter(|r| {
                self.riders[*r].hub == h
                    && self.riders[*r].state == DriverState::Idle
                    && !self.riders[*r].leaving
            })
            .collect()
    }

    fn cost_row(&self, t: SimTime, o: usize, candidates: &[usize]) -> Vec<Option<f64>> {
        let h = self.orders[o].hub.expect("hub");
        let pickup = self.hub_point(h);
        candidates
            .iter()
            .map(|r| {
                (!self.orders[o].excluded.contains(r)).then(|| {
                    cost(&CostInput {
                        pickup,
                        driver: self.rider_pos(*r, t),
                        driver_load: 0,
                        driver_max_load: 1,
                        priority: 1,
                        skipped_count: self.riders[*r].skipped,
                    })
                })
            })
            .collect()
    }

    /// One batch: the oldest orders of the pool against the hub's idle riders.
    fn flush(&mut self, t: SimTime, h: usize) {
        let batch: Vec<usize> = self.pools[h]
            .iter()
            .take(self.sc.dispatch.max_batch as usize)
            .copied()
            .collect();
        let candidates = self.idle_riders(h);
        if !batch.is_empty() && !candidates.is_empty() {
            let costs: CostMatrix = batch
                .iter()
                .map(|o| self.cost_row(t, *o, &candidates))
                .collect();
            let (g, opt) = (greedy(&costs), optimal(&costs));
            if g.len() == opt.len() && !g.is_empty() {
                self.fleet.greedy_cost += total(&g);
                self.fleet.optimal_cost += total(&opt);
                self.fleet.compared_batches += 1;
            }
            let chosen: Vec<Assignment> = match self.sc.dispatch.matcher {
                Matcher::Greedy => g,
                Matcher::Optimal => opt,
            };
            self.fleet.batches += 1;
            self.fleet.batched_orders += chosen.len() as u64;
            if chosen.len() > 1 {
                self.fleet.orders_in_multi_order_batches += chosen.len() as u64;
            }
            let picked: Vec<usize> = chosen.iter().map(|a| candidates[a.driver]).collect();
            for a in &chosen {
                let o = batch[a.order];
                self.pools[h].retain(|x| *x != o);
                self.offer(t, o, candidates[a.driver]);
            }
            for r in candidates {
                if !picked.contains(&r) {
                    self.riders[r].skipped += 1;
                }
            }
        }
        if !self.pools[h].is_empty() && !self.armed[h] {
            self.armed[h] = true;
            self.q.after(
                (self.sc.dispatch.window_s * 1000.0).round() as i64,
                Ev::Flush(h),
            );
        }
    }

    fn offer(&mut self, t: SimTime, o: usize, r: usize) {
        let pos = self.rider_pos(r, t);
        if self
            .move_rider(t, r, DriverState::Assigned, Via::Matcher)
            .is_none()
        {
            return;
        }
        let h = self.orders[o].hub.expect("hub");
        let hub = self.hub_point(h);
        let rider = &mut self.riders[r];
        rider.pos = pos;
        rider.trip = None;
        rider.trip_seq += 1;
        rider.order = Some(o);
        rider.skipped = 0;
        self.fleet.offers += 1;
        self.fleet.pickup_km += haversine_km(pos, hub);
        self.fleet.pickups += 1;
        let order = &mut self.orders[o];
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
        let timeout_ms = (rd.offer_timeout_s * 1000.0).round() as i64;
        let accept = self.rng.offers.random::<f64>() < rd.accept_probability;
        if answer_ms >= timeout_ms {
            self.q.after(timeout_ms, Ev::OfferTimeout(o, r));
        } else {
            self.q.after(answer_ms, Ev::OfferAnswer(o, r, accept));
        }
    }

    pub(crate) fn on_offer_answer(&mut self, t: SimTime, o: usize, r: usize, accept: bool) {
        if !accept {
            self.fleet.offers_rejected += 1;
            self.close_offer(t, o, r);
            return;
        }
        if self
            .move_rider(t, r, DriverState::ToHub, Via::Accept)
            .is_none()
        {
            return;
        }
        self.orders[o].state = OrderState::OutForDelivery;
        self.re_estimate_eta(t, o);
        let h = self.riders[r].hub;
        let (from, to) = (self.riders[r].pos, self.hub_point(h));
        let d = self.travel_ms(from, to, t);
        self.q.after(d, Ev::RiderAtHub(r));
    }

    pub(crate) fn on_offer_timeout(&mut self, t: SimTime, o: usize, r: usize) {
        self.fleet.offers_timed_out += 1;
        self.close_offer(t, o, r);
    }

    /// Reject or timeout: the rider is free again (riding back if away), the order is
    /// reassigned with backoff, this rider excluded.
    fn close_offer(&mut self, t: SimTime, o: usize, r: usize) {
        if self
            .move_rider(t, r, DriverState::Idle, Via::Reject)
            .is_none()
        {
            return;
        }
        self.riders[r].order = None;
        self.ride_back(t, r);
        self.orders[o].excluded.push(r);
        self.orders[o].state = OrderState::AwaitingRider;
        self.schedule_reassignment(o);
    }

    fn schedule_reassignment(&mut self, o: usize) {
        match next_reassignment(self.orders[o].reassign_count) {
            Some((k, delay)) => {
                self.orders[o].reassign_count = k;
                self.fleet.reassignments += 1;
                self.q.after(delay, Ev::Reassign(o));
            }
            None => self.fail_dispatch(o, "MAX_REASSIGNMENTS"),
        }
    }

    pub(crate) fn on_reassign(&mut self, t: SimTime, o: usize) {
        let h = self.orders[o].hub.expect("hub");
        let candidates = self.idle_riders(h);
        let row = vec![self.cost_row(t, o, &candidates)];
        match greedy(&row).first() {
            Some(a) => self.offer(t, o, candidates[a.driver]),
            None => self.schedule_reassignment(o),
        }
    }

    fn fail_dispatch(&mut self, o: usize, reason: &'static str) {
        let order = &mut self.orders[o];
        order.state = OrderState::DispatchFailed;
        order.failure_reason = Some(reason);
        self.in_flight -= 1;
        let hub = order
            .hub
            .map(|h| self.hubs[h].id.to_string())
            .unwrap_or_default();
        self.log.push(
            self.q.now(),
            kind::DISPATCH_FAILED,
            Some(o as u64),
            &hub,
            reason,
            0,
            0,
        );
    }

    pub(crate) fn on_rider_at_hub(&mut self, t: SimTime, r: usize) {
        if self
            .move_rider(t, r, DriverState::Picking, Via::Api)
            .is_some()
        {
            self.riders[r].pos = self.hub_point(self.riders[r].hub);
            self.q.after(
                (self.sc.riders.pickup_s * 1000.0).round() as i64,
                Ev::PickupDone(r),
            );
        }
    }

    pub(crate) fn on_pickup_done(&mut self, t: SimTime, r: usize) {
        if self
            .move_rider(t, r, DriverState::Delivering, Via::Api)
            .is_none()
        {
            return;
        }
        let o = self.riders[r]
            .order
            .expect("delivering riders carry an order");
        let (from, to) = (self.riders[r].pos, self.orders[o].location);
        let handover_ms = (self.sc.riders.handover_s * 1000.0).round() as i64;
        let designed = self.designed_travel_ms(from, to, t) + handover_ms as f64;
        self.orders[o].out_at = Some(t);
        self.orders[o].designed_trip_s = designed / 1000.0;
        let d = self.travel_ms(from, to, t) + handover_ms;
        self.q.after(d, Ev::Delivered(r));
    }

    pub(crate) fn on_delivered(&mut self, t: SimTime, r: usize) {
        let Some(effect) = self.move_rider(t, r, DriverState::Completed, Via::Api) else {
            return;
        };
        debug_assert_eq!(effect, OrderEffect::Deliver);
        let o = self.riders[r].order.take().expect("a delivered order");
        self.riders[r].pos = self.orders[o].location;
        self.riders[r].deliveries += 1;
        let order = &mut self.orders[o];
        order.state = OrderState::Delivered;
        order.delivered_at = Some(t);
        order.rider = Some(r);
        self.in_flight -= 1;
        self.observe_eta(t, o);
        let hub = self.hubs[self.riders[r].hub].id.to_string();
        self.log.push(
            t,
            kind::DELIVERED,
            Some(o as u64),
            &hub,
            "",
            0,
            t - self.orders[o].placed_at,
        );
        if self.riders[r].leaving || t >= self.riders[r].shift.1 {
            self.move_rider(t, r, DriverState::Offline, Via::Api);
        } else if self.move_rider(t, r, DriverState::Idle, Via::Api).is_some() {
            self.ride_back(t, r);
        }
    }

    /// An idle rider away from the hub rides back (and can be matched on the way).
    fn ride_back(&mut self, t: SimTime, r: usize) {
        let hub = self.hub_point(self.riders[r].hub);
        let from = self.rider_pos(r, t);
        if haversine_km(from, hub) < 0.01 {
            self.riders[r].pos = hub;
            self.riders[r].trip = None;
            return;
        }
        let d = self.travel_ms(from, hub, t);
        let rider = &mut self.riders[r];
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
    }

    pub(crate) fn on_back_at_hub(&mut self, r: usize, seq: u64) {
        let rider = &mut self.riders[r];
        if rider.trip_seq == seq && rider.state == DriverState::Idle {
            if let Some(tr) = rider.trip.take() {
                rider.pos = tr.to;
            }
        }
    }

    pub(crate) fn on_shift_start(&mut self, t: SimTime, r: usize) {
        if self.move_rider(t, r, DriverState::Idle, Via::Api).is_some() {
            self.riders[r].pos = self.hub_point(self.riders[r].hub);
            let h = self.riders[r].hub;
            if !self.pools[h].is_empty() && !self.armed[h] {
                self.flush(t, h);
            }
        }
    }

    pub(crate) fn on_shift_end(&mut self, t: SimTime, r: usize) {
        if self.riders[r].state == DriverState::Idle {
            self.move_rider(t, r, DriverState::Offline, Via::Api);
        } else {
            self.riders[r].leaving = true;
        }
    }

    /// Orders still waiting long after the end with no rider to take them fail.
    pub(crate) fn on_drain_deadline(&mut self) {
        for o in 0..self.orders.len() {
            if self.orders[o].state == OrderState::AwaitingRider {
                if let Some(h) = self.orders[o].hub {
                    self.pools[h].retain(|x| *x != o);
                }
                self.fail_dispatch(o, "NO_RIDER");
            }
        }
    }

    /// Closes busy and on-shift accounting at `t` (time after it is not counted).
    pub(crate) fn close_fleet(&mut self, t: SimTime) {
        for rider in &mut self.riders {
            if let Some(s) = rider.busy_since.take() {
                rider.busy_ms += (t - s).max(0);
            }
            if let Some(s) = rider.on_since.take() {
                rider.on_shift_ms += (t - s).max(0);
            }
        }
    }

    fn idle_count(&self, h: usize) -> u32 {
        self.idle_riders(h).len() as u32
    }

    /// The ETA model's inputs for order `o` at `t`, with `queue_depth` as the caller counts it.
    fn eta_ask(&self, t: SimTime, o: usize, queue_depth: u32) -> crate::eta::Ask {
        let h = self.orders[o].hub.expect("hub");
        crate::eta::Ask {
            hub: h,
            hub_id: self.hubs[h].id.to_string(),
            hub_point: self.hub_point(h),
            cust: self.orders[o].location,
            items: self.orders[o].units(),
            queue_depth,
            drivers_avail: self.idle_count(h),
            now_ms: self.epoch_ms + t,
            band: crate::eta::Ask::band_at(self.sc.start_of_day_ms(), t),
        }
    }

    /// The ETA shown at placement: the hub's backlog (waiting to be picked, being picked,
    /// waiting for a rider) and its idle riders, as the service would be called.
    pub(crate) fn promise_eta(&mut self, t: SimTime, h: usize, o: usize) {
        let backlog =
            self.hubs[h].queue.len() as u32 + self.hubs[h].busy + self.pools[h].len() as u32;
        let ask = self.eta_ask(t, o, backlog);
        self.eta.promise(o, t, &ask);
    }

    /// Dispatch's re-estimate after accept (queue = the hub's pool, drivers = idle riders).
    fn re_estimate_eta(&mut self, t: SimTime, o: usize) {
        let h = self.orders[o].hub.expect("hub");
        let ask = self.eta_ask(t, o, self.pools[h].len() as u32);
        self.eta.re_estimate(o, t, &ask);
    }

    /// A delivery feeds the traffic filter and the calibration.
    fn observe_eta(&mut self, t: SimTime, o: usize) {
        let h = self.orders[o].hub.expect("hub");
        let (hub, cust) = (self.hub_point(h), self.orders[o].location);
        let travel_s = (t - self.orders[o].out_at.unwrap_or(t)) as f64 / 1000.0;
        let base = qc_eta::compose::base_travel_s(hub, cust);
        let designed = self.orders[o].designed_trip_s / base.max(1e-9);
        let out = self.orders[o].out_at.unwrap_or(t);
        let shifted = self.event_factor(hub, cust, out) != 1.0;
        let hub_id = self.hubs[h].id.to_string();
        let epoch = self.epoch_ms;
        self.eta
            .delivered(o, t, epoch, &hub_id, hub, cust, travel_s, designed, shifted);
    }

    /// Per hub: riders busy and riders on shift.
    pub(crate) fn rider_counts(&self, h: usize) -> (i64, i64) {
        let mine = self.riders.iter().filter(|r| r.hub == h);
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
        let eleven = 11 * HOUR_MS;
        assert_eq!(shift_window("00:00", "00:00", eleven), (0, i64::MAX));
        // Already on at 11:00 until 15:00.
        assert_eq!(shift_window("10:00", "15:00", eleven), (0, 4 * HOUR_MS));
        // Starts later.
        assert_eq!(
            shift_window("12:30", "16:00", eleven),
            (HOUR_MS + HOUR_MS / 2, 5 * HOUR_MS)
        );
        // Overnight shift covering the start.
        assert_eq!(shift_window("22:00", "12:00", eleven), (0, HOUR_MS));
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
