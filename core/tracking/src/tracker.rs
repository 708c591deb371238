//! The application layer (09): a fix goes validate → filter → persist → publish, and the
//! validator's and filter's state is committed only once the store has taken the fix. The
//! service's WebSocket handler and the simulator's riders both call [`Tracker::ingest`].

use std::collections::HashMap;
use std::sync::Mutex;

use qc_kit::redis_kit::BackendError;

use crate::kalman::{Filter, KfParams};
use crate::model::{rfc3339_ms, Fix, OrderStatus, PositionEvent, Reject, StatusEvent};
use crate::store::{StatusChange, TrackingStore};
use crate::validate::{check, DriverTrack, Limits};

/// Drivers (and their filters) idle this long are forgotten (09: 10 min).
pub const IDLE_EVICT_MS: i64 = 600_000;
/// A refused fix replaces the last accepted one when it fits the track before that one within
/// this Mahalanobis distance, and better than the last one did.
const ROLLBACK_SIGMA: f64 = 3.0;
/// How often ingest sweeps idle drivers.
const SWEEP_EVERY_MS: i64 = 60_000;

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The client's fault; do not resend.
    #[error("rejected: {}", .0.as_str())]
    Rejected(Reject),
    /// The store failed; nothing changed; the client may retry.
    #[error(transparent)]
    Store(#[from] BackendError),
}

#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// 409: the order is already delivered or cancelled.
    #[error("order already {}", .0.status.as_str())]
    Closed(StatusEvent),
    #[error(transparent)]
    Store(#[from] BackendError),
}

#[derive(Debug, Default)]
struct DriverState {
    track: DriverTrack,
    /// Per order: the filter, and the filter as it was before its last update (for the
    /// one-step rollback).
    filters: HashMap<String, Track>,
    touched_ms: i64,
}

/// One order's filter state.
#[derive(Debug, Clone, Copy)]
struct Track {
    filter: Filter,
    /// The filter before its last update (the one-step rollback).
    before: Option<Filter>,
    /// The last fix the filter refused, while nothing has been accepted since (the pair rule).
    refused: Option<Fix>,
}

#[derive(Debug, Default)]
struct State {
    drivers: HashMap<String, DriverState>,
    last_sweep_ms: i64,
}

#[derive(Debug)]
pub struct Tracker<S> {
    store: S,
    limits: Limits,
    kf: KfParams,
    state: Mutex<State>,
}

impl<S: TrackingStore> Tracker<S> {
    pub fn new(store: S, limits: Limits, kf: KfParams) -> Self {
        Self {
            store,
            limits,
            kf,
            state: Mutex::new(State::default()),
        }
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts a jump or outlier toward the recovery rule and, for an outlier, remembers the fix
    /// for the pair rule (the only state a rejection changes).
    fn count_jump(&self, driver_id: &str, refused: Option<(&str, &Fix)>, now_ms: i64) {
        let mut st = self.state();
        let d = st.drivers.entry(driver_id.to_string()).or_default();
        d.track.jumps += 1;
        d.touched_ms = now_ms;
        if let Some((order_id, fix)) = refused {
            if let Some(t) = d.filters.get_mut(order_id) {
                t.refused = Some(*fix);
            }
        }
    }

    /// A track seeded at the earlier refused fix `first`, stepped to `fix`, if they agree.
    fn pair(&self, first: &Fix, fix: &Fix) -> Option<(Filter, crate::kalman::Output)> {
        if fix.timestamp_ms - first.timestamp_ms > self.kf.reset_gap_ms {
            return None;
        }
        let (seed, _) = Filter::seed(first, &self.kf);
        seed.step(fix, &self.kf)
            .ok()
            .filter(|(next, _)| next.innovation <= ROLLBACK_SIGMA)
    }

    /// One fix of `driver_id` on `order_id` (the connection's ids, already checked against the
    /// frame's). Returns the stored event with its `seq`.
    pub async fn ingest(
        &self,
        driver_id: &str,
        order_id: &str,
        fix: &Fix,
        now_ms: i64,
    ) -> Result<PositionEvent, IngestError> {
        let (track, filter) = {
            let mut st = self.state();
            if now_ms - st.last_sweep_ms >= SWEEP_EVERY_MS {
                st.drivers
                    .retain(|_, d| now_ms - d.touched_ms < IDLE_EVICT_MS);
                st.last_sweep_ms = now_ms;
            }
            let d = st.drivers.get(driver_id);
            (
                d.map(|d| d.track).unwrap_or_default(),
                d.and_then(|d| d.filters.get(order_id).copied()),
            )
        };
        let passed = match check(&self.limits, &track, fix, now_ms) {
            Ok(p) => p,
            Err(Reject::Jump) => {
                self.count_jump(driver_id, None, now_ms);
                return Err(IngestError::Rejected(Reject::Jump));
            }
            Err(r) => return Err(IngestError::Rejected(r)),
        };
        // The filter after this fix, and the one before it (kept for a rollback).
        let (filter, before, out) = match filter {
            Some(Track {
                filter: f,
                before: prev,
                refused,
            }) if !passed.recovery && !f.stale_for(fix, &self.kf) => {
                match f.step(fix, &self.kf) {
                    Ok((next, out)) => (next, Some(f), out),
                    // One-step rollback: a fix the filter refuses but the filter before its
                    // last update takes means that last fix was the outlier (typically one
                    // taken while the filter was young and its velocity unknown). The track
                    // continues without it, so the good fixes after it are not refused.
                    Err(r) => match prev.map(|p| (p, p.step(fix, &self.kf))) {
                        Some((p, Ok((next, out))))
                            if next.innovation <= ROLLBACK_SIGMA
                                && next.innovation < f.innovation =>
                        {
                            (next, Some(p), out)
                        }
                        // The pair rule: two refused fixes in a row that agree with each other
                        // (a track seeded at the first takes the second closely) mean the
                        // filter is wrong, not them: its seed was an outlier, or the rider set
                        // off or turned harder than the model allows. Outliers scatter, so two
                        // in a row almost never agree.
                        _ => match refused.and_then(|q| self.pair(&q, fix)) {
                            Some((next, out)) => (next, None, out),
                            // A seed and the next fix disagree: one of them is an outlier and
                            // two points cannot say which. Trust the newer (the position a
                            // customer wants), keeping the seed for the rollback: if the newer
                            // was the outlier, the fix after it rolls the track back.
                            None if f.updates == 0 => {
                                let (mut seed, out) = Filter::seed(fix, &self.kf);
                                seed.innovation = f64::INFINITY;
                                (seed, Some(f), out)
                            }
                            None => {
                                self.count_jump(driver_id, Some((order_id, fix)), now_ms);
                                return Err(IngestError::Rejected(r));
                            }
                        },
                    },
                }
            }
            _ => {
                let (f, out) = Filter::seed(fix, &self.kf);
                (f, None, out)
            }
        };
        let event = PositionEvent {
            kind: "position".into(),
            seq: 0,
            order_id: order_id.to_string(),
            driver_id: driver_id.to_string(),
            lat: round7(out.lat),
            lng: round7(out.lng),
            speed: round2(out.speed),
            bearing: round2(out.bearing),
            accuracy: fix.accuracy,
            raw_lat: fix.lat,
            raw_lng: fix.lng,
            timestamp: rfc3339_ms(fix.timestamp_ms),
            received_at: rfc3339_ms(now_ms),
        };
        // The store refuses a closed order atomically with the write (09's "order open" check).
        let Some(stored) = self.store.append_position(event).await? else {
            return Err(IngestError::Rejected(Reject::OrderClosed));
        };
        let mut st = self.state();
        if !st.drivers.contains_key(driver_id) {
            st.drivers
                .insert(driver_id.to_string(), DriverState::default());
        }
        let d = st.drivers.get_mut(driver_id).expect("inserted above");
        d.track = DriverTrack {
            last: Some((fix.timestamp_ms, fix.lat, fix.lng)),
            jumps: 0,
        };
        let track = Track {
            filter,
            before,
            refused: None,
        };
        match d.filters.get_mut(order_id) {
            Some(slot) => *slot = track,
            None => {
                d.filters.insert(order_id.to_string(), track);
            }
        }
        d.touched_ms = now_ms;
        Ok(stored)
    }

    /// Dispatch's status change (09 `POST /tracking/status`).
    pub async fn set_status(
        &self,
        order_id: &str,
        status: OrderStatus,
        driver_id: Option<&str>,
        now_ms: i64,
    ) -> Result<StatusEvent, StatusError> {
        match self
            .store
            .set_status(order_id, status, driver_id, &rfc3339_ms(now_ms))
            .await?
        {
            StatusChange::Done(e) => Ok(e),
            StatusChange::Closed(e) => Err(StatusError::Closed(e)),
        }
    }

    pub async fn position(&self, order_id: &str) -> Result<Option<PositionEvent>, BackendError> {
        self.store.position(order_id).await
    }

    pub async fn history(
        &self,
        order_id: &str,
        after_seq: i64,
        limit: usize,
    ) -> Result<Vec<PositionEvent>, BackendError> {
        self.store.history(order_id, after_seq, limit).await
    }

    /// Drivers held in memory (for metrics and the eviction test).
    pub fn drivers_in_memory(&self) -> usize {
        self.state().drivers.len()
    }
}

/// ~1 cm.
fn round7(x: f64) -> f64 {
    (x * 1e7).round() / 1e7
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryTrackingStore;
    use futures::executor::block_on;

    const T0: i64 = 1_800_000_000_000;

    fn fix(i: i64, dlat_m: f64) -> Fix {
        Fix {
            lat: -6.2 + (i as f64 * 50.0 + dlat_m) / 111_195.0,
            lng: 106.8,
            accuracy: 8.0,
            timestamp_ms: T0 + i * 5_000,
            speed: None,
            bearing: None,
        }
    }

    fn tracker() -> Tracker<MemoryTrackingStore> {
        Tracker::new(
            MemoryTrackingStore::new(),
            Limits::default(),
            KfParams::default(),
        )
    }

    #[test]
    fn accepted_fixes_get_increasing_seqs_and_rejections_store_nothing() {
        let t = tracker();
        for i in 0..5 {
            let e = block_on(t.ingest("d1", "o1", &fix(i, 0.0), T0 + i * 5_000)).unwrap();
            assert_eq!(e.seq, i + 1);
        }
        // Same timestamp again: out of order, nothing stored.
        let r = block_on(t.ingest("d1", "o1", &fix(4, 3.0), T0 + 20_000));
        assert!(matches!(r, Err(IngestError::Rejected(Reject::OutOfOrder))));
        assert_eq!(block_on(t.history("o1", 0, 500)).unwrap().len(), 5);
        assert_eq!(block_on(t.position("o1")).unwrap().unwrap().seq, 5);
    }

    #[test]
    fn a_lone_outlier_is_refused_and_two_agreeing_fixes_move_the_track() {
        let t = tracker();
        for i in 0..6 {
            block_on(t.ingest("d1", "o1", &fix(i, 0.0), T0 + i * 5_000)).unwrap();
        }
        // A lone fix 200 m off: a plausible speed, but far from the track for 8 m fixes.
        let r = block_on(t.ingest("d1", "o1", &fix(6, 200.0), T0 + 30_000));
        assert!(
            matches!(r, Err(IngestError::Rejected(Reject::Outlier))),
            "{r:?}"
        );
        // The track goes on; then the rider turns into a parallel street 200 m off: the first
        // fix there is refused, the second agrees with it and moves the track (the pair rule).
        block_on(t.ingest("d1", "o1", &fix(7, 0.0), T0 + 35_000)).unwrap();
        let r = block_on(t.ingest("d1", "o1", &fix(8, 200.0), T0 + 40_000));
        assert!(
            matches!(r, Err(IngestError::Rejected(Reject::Outlier))),
            "{r:?}"
        );
        let e = block_on(t.ingest("d1", "o1", &fix(9, 200.0), T0 + 45_000)).unwrap();
        assert_eq!(e.seq, 8);
        let truth = fix(9, 200.0);
        let err = crate::validate::haversine_m(e.lat, e.lng, truth.lat, truth.lng);
        assert!(err < 20.0, "{err} m from the new street");
        // Two refused outliers in a row that scatter do not agree: both refused.
        let mut a = fix(10, 200.0);
        a.lng += 200.0 / 110_000.0;
        let mut b = fix(11, 200.0);
        b.lng -= 200.0 / 110_000.0;
        for (x, now) in [(a, T0 + 50_000), (b, T0 + 55_000)] {
            let r = block_on(t.ingest("d1", "o1", &x, now));
            assert!(
                matches!(r, Err(IngestError::Rejected(Reject::Outlier))),
                "{r:?}"
            );
        }
    }

    #[test]
    fn an_outlier_taken_by_a_young_filter_is_rolled_back_by_the_next_good_fix() {
        let t = tracker();
        block_on(t.ingest("d1", "o1", &fix(0, 0.0), T0)).unwrap();
        // The second fix is 150 m off: the seed knows no velocity yet, so the gate takes it.
        let bad = block_on(t.ingest("d1", "o1", &fix(1, 150.0), T0 + 5_000)).unwrap();
        assert!(bad.speed > 20.0, "{bad:?}");
        // The next good fix does not fit that track, but fits the one before it: the track
        // continues from there instead of refusing it.
        let good = block_on(t.ingest("d1", "o1", &fix(2, 0.0), T0 + 10_000)).unwrap();
        assert_eq!(good.seq, 3);
        let truth = fix(2, 0.0);
        let err = crate::validate::haversine_m(good.lat, good.lng, truth.lat, truth.lng);
        assert!(err < 40.0, "{err} m from the true position");
    }

    #[test]
    fn a_seed_that_disagrees_with_the_next_fix_gives_way_and_is_kept_for_the_rollback() {
        let moving = |i: i64, off: f64| Fix {
            speed: Some(10.0),
            bearing: Some(0.0),
            ..fix(i, off)
        };
        // The seed is an outlier 200 m off; its phone velocity makes its gate tight, so the
        // next (good) fix disagrees: the newer wins and the track goes on from it.
        let t = tracker();
        block_on(t.ingest("d1", "o1", &moving(0, 200.0), T0)).unwrap();
        for i in 1..4 {
            let e = block_on(t.ingest("d1", "o1", &moving(i, 0.0), T0 + i * 5_000));
            assert!(e.is_ok(), "good fix {i} taken: {e:?}");
        }
        // The other way round: a good seed, then an outlier (taken: two points cannot tell),
        // then the good fix rolls the track back to the seed's.
        let t = tracker();
        block_on(t.ingest("d1", "o1", &moving(0, 0.0), T0)).unwrap();
        block_on(t.ingest("d1", "o1", &moving(1, 200.0), T0 + 5_000)).unwrap();
        let e = block_on(t.ingest("d1", "o1", &moving(2, 0.0), T0 + 10_000)).unwrap();
        let truth = fix(2, 0.0);
        let err = crate::validate::haversine_m(e.lat, e.lng, truth.lat, truth.lng);
        assert!(err < 20.0, "{err} m from the true position");
    }

    #[test]
    fn after_three_jumps_the_next_fix_re_seeds_the_filter() {
        let t = tracker();
        for i in 0..4 {
            block_on(t.ingest("d1", "o1", &fix(i, 0.0), T0 + i * 5_000)).unwrap();
        }
        for i in 4..7 {
            let r = block_on(t.ingest("d1", "o1", &fix(i, 2_000.0), T0 + i * 5_000));
            assert!(
                matches!(r, Err(IngestError::Rejected(Reject::Jump))),
                "{r:?}"
            );
        }
        let e = block_on(t.ingest("d1", "o1", &fix(7, 2_000.0), T0 + 35_000)).unwrap();
        assert_eq!(
            (e.lat, e.speed),
            (round7(e.raw_lat), 0.0),
            "seeded at the raw fix"
        );
    }

    #[test]
    fn a_closed_order_takes_no_fixes_and_no_status_change() {
        let t = tracker();
        block_on(t.set_status("o1", OrderStatus::DriverAssigned, Some("d1"), T0)).unwrap();
        let done = block_on(t.set_status("o1", OrderStatus::Delivered, Some("d1"), T0)).unwrap();
        assert_eq!(done.seq, 2);
        let again = block_on(t.set_status("o1", OrderStatus::Cancelled, None, T0));
        assert!(matches!(again, Err(StatusError::Closed(e)) if e.status == OrderStatus::Delivered));
        let r = block_on(t.ingest("d1", "o1", &fix(0, 0.0), T0));
        assert!(matches!(r, Err(IngestError::Rejected(Reject::OrderClosed))));
    }

    #[test]
    fn idle_drivers_are_forgotten() {
        let t = tracker();
        block_on(t.ingest("d1", "o1", &fix(0, 0.0), T0)).unwrap();
        let later = T0 + IDLE_EVICT_MS + SWEEP_EVERY_MS;
        let mut f = fix(0, 0.0);
        f.timestamp_ms = later;
        block_on(t.ingest("d2", "o2", &f, later)).unwrap();
        assert_eq!(t.drivers_in_memory(), 1);
    }
}
