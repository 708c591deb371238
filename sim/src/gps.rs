//! GPS in the twin (issue #11): while a rider carries an order, their phone sends a fix every
//! `gps.interval_s` along the true path, with Gaussian noise, outliers, dropouts and a clock
//! skew, each from its own random stream. Every fix goes through the production
//! [`qc_tracking::Tracker`] (validation, Kalman filter, innovation gate, store). The twin only
//! measures: raw and filtered error against the true path, outliers caught, good fixes refused.
//! Tracking's store is the memory adapter, or Redis in live mode.

use qc_geo::Point;
use qc_kit::redis_kit::BackendError;
use qc_tracking::{
    haversine_m, Fix, IngestError, KfParams, Limits, MemoryTrackingStore, OrderStatus,
    PositionEvent, RedisTrackingStore, StatusChange, StatusEvent, Tracker, TrackingStore,
};
use rand::Rng;
use rand_distr::{Distribution, Normal};

pub use reports::summary::GpsInfo;

use crate::rng::{Stream, Streams};
use crate::scenario::Gps;

/// Tracking's store in a run: the memory adapter, or Redis in live mode (so live runs measure
/// the ingest path). Delegation only.
pub enum TwinTrackingStore {
    Memory(MemoryTrackingStore),
    Redis(RedisTrackingStore),
}

impl TrackingStore for TwinTrackingStore {
    async fn status(&self, order_id: &str) -> Result<Option<StatusEvent>, BackendError> {
        match self {
            Self::Memory(s) => s.status(order_id).await,
            Self::Redis(s) => s.status(order_id).await,
        }
    }

    async fn append_position(
        &self,
        event: PositionEvent,
    ) -> Result<Option<PositionEvent>, BackendError> {
        match self {
            Self::Memory(s) => s.append_position(event).await,
            Self::Redis(s) => s.append_position(event).await,
        }
    }

    async fn set_status(
        &self,
        order_id: &str,
        status: OrderStatus,
        driver_id: Option<&str>,
        timestamp: &str,
    ) -> Result<StatusChange, BackendError> {
        match self {
            Self::Memory(s) => s.set_status(order_id, status, driver_id, timestamp).await,
            Self::Redis(s) => s.set_status(order_id, status, driver_id, timestamp).await,
        }
    }

    async fn position(&self, order_id: &str) -> Result<Option<PositionEvent>, BackendError> {
        match self {
            Self::Memory(s) => s.position(order_id).await,
            Self::Redis(s) => s.position(order_id).await,
        }
    }

    async fn history(
        &self,
        order_id: &str,
        after_seq: i64,
        limit: usize,
    ) -> Result<Vec<PositionEvent>, BackendError> {
        match self {
            Self::Memory(s) => s.history(order_id, after_seq, limit).await,
            Self::Redis(s) => s.history(order_id, after_seq, limit).await,
        }
    }
}

/// A phone's Doppler speed and its bearing: 1-sigma errors.
pub const SPEED_SIGMA: f64 = 0.5;
pub const BEARING_SIGMA_DEG: f64 = 5.0;

/// Fixes of one order kept for the report's error-over-a-trip chart.
const TRIP_SAMPLE_MAX: usize = 400;

/// The phones and the tracking service they talk to.
pub struct GpsTwin {
    pub cfg: Gps,
    pub tracker: Tracker<TwinTrackingStore>,
    noise: Stream,
    velocity: Stream,
    outliers: Stream,
    dropouts: Stream,
    /// Each rider's constant clock offset, ms.
    skew_ms: Vec<i64>,
    info: GpsInfo,
    sq_raw: f64,
    sq_good: f64,
    sq_filtered: f64,
    good: u64,
    trip_order: Option<usize>,
    trip_t0: i64,
}

impl GpsTwin {
    pub fn new(cfg: &Gps, streams: &Streams, riders: usize) -> Self {
        let mut clock = streams.stream("gps-clock");
        let skew = Normal::new(0.0, cfg.clock_skew_s * 1000.0).expect("validated σ");
        Self {
            cfg: cfg.clone(),
            tracker: Tracker::new(
                TwinTrackingStore::Memory(MemoryTrackingStore::new()),
                Limits::default(),
                KfParams::default(),
            ),
            noise: streams.stream("gps-noise"),
            velocity: streams.stream("gps-velocity"),
            outliers: streams.stream("gps-outliers"),
            dropouts: streams.stream("gps-dropouts"),
            skew_ms: (0..riders)
                .map(|_| skew.sample(&mut clock).round() as i64)
                .collect(),
            info: GpsInfo::default(),
            sq_raw: 0.0,
            sq_good: 0.0,
            sq_filtered: 0.0,
            good: 0,
            trip_order: None,
            trip_t0: 0,
        }
    }

    /// Live mode: Tracking's state in Redis (a fresh tracker, before any fix).
    pub fn use_redis(&mut self, store: RedisTrackingStore) {
        self.tracker = Tracker::new(
            TwinTrackingStore::Redis(store),
            Limits::default(),
            KfParams::default(),
        );
    }

    pub fn interval_ms(&self) -> i64 {
        (self.cfg.interval_s * 1000.0).round() as i64
    }

    /// What the phone of `rider` reports at epoch `now_ms` when it truly is at `truth`: `None` when
    /// the fix is lost (counted); else the fix and whether it is a deliberate outlier.
    /// `motion` is the rider's true speed (m/s) and bearing (degrees) when riding; the phone
    /// reports both (Doppler), with noise of [`SPEED_SIGMA`] and [`BEARING_SIGMA_DEG`], and
    /// speed 0 without a bearing when standing.
    pub fn next_fix(
        &mut self,
        rider: usize,
        truth: Point,
        motion: Option<(f64, f64)>,
        now_ms: i64,
    ) -> Option<(Fix, bool)> {
        if self.dropouts.random::<f64>() < self.cfg.dropout_rate {
            self.info.dropped += 1;
            return None;
        }
        let n01 = Normal::new(0.0, 1.0).expect("unit normal");
        let (mut dn, mut de) = (
            n01.sample(&mut self.noise) * self.cfg.sigma_m,
            n01.sample(&mut self.noise) * self.cfg.sigma_m,
        );
        let outlier = self.outliers.random::<f64>() < self.cfg.outlier_rate;
        if outlier {
            let angle = self.outliers.random::<f64>() * std::f64::consts::TAU;
            dn += self.cfg.outlier_m * angle.cos();
            de += self.cfg.outlier_m * angle.sin();
        }
        let at = truth.offset_km(de / 1000.0, dn / 1000.0);
        let (speed, bearing) = match motion {
            Some((v, b)) => (
                (v + n01.sample(&mut self.velocity) * SPEED_SIGMA).max(0.0),
                Some((b + n01.sample(&mut self.velocity) * BEARING_SIGMA_DEG).rem_euclid(360.0)),
            ),
            None => (0.0, None),
        };
        Some((
            Fix {
                lat: at.lat,
                lng: at.lng,
                accuracy: self.cfg.sigma_m,
                timestamp_ms: now_ms + self.skew_ms[rider],
                speed: Some(speed),
                bearing,
            },
            outlier,
        ))
    }

    /// The outcome of one fix through the tracker: measured against `truth`.
    pub fn record(
        &mut self,
        order: usize,
        now_ms: i64,
        truth: Point,
        fix: &Fix,
        outlier: bool,
        outcome: &Result<qc_tracking::PositionEvent, IngestError>,
    ) -> Result<(), qc_kit::redis_kit::BackendError> {
        let raw = haversine_m(truth.lat, truth.lng, fix.lat, fix.lng);
        self.info.fixes_sent += 1;
        self.sq_raw += raw * raw;
        if outlier {
            self.info.outliers_sent += 1;
        } else {
            self.good += 1;
            self.sq_good += raw * raw;
        }
        let filtered = match outcome {
            Ok(e) => {
                self.info.accepted += 1;
                let d = haversine_m(truth.lat, truth.lng, e.lat, e.lng);
                self.sq_filtered += d * d;
                d
            }
            Err(IngestError::Rejected(r)) => {
                if outlier {
                    self.info.outliers_rejected += 1;
                } else {
                    *self
                        .info
                        .good_rejected
                        .entry(r.as_str().to_string())
                        .or_default() += 1;
                }
                -1.0
            }
            Err(IngestError::Store(e)) => return Err(e.clone()),
        };
        if self.trip_order.is_none() {
            (self.trip_order, self.trip_t0) = (Some(order), now_ms);
        }
        if self.trip_order == Some(order) && self.info.trip.len() < TRIP_SAMPLE_MAX {
            let t = (now_ms - self.trip_t0) as f64 / 1000.0;
            self.info.trip.push((t, round2(raw), round2(filtered)));
        }
        Ok(())
    }

    pub fn summarise(&self) -> GpsInfo {
        let mut info = self.info.clone();
        let rms = |sq: f64, n: u64| {
            if n == 0 {
                0.0
            } else {
                round2((sq / n as f64).sqrt())
            }
        };
        info.raw_rmse_m = rms(self.sq_raw, info.fixes_sent);
        info.raw_good_rmse_m = rms(self.sq_good, self.good);
        info.filtered_rmse_m = rms(self.sq_filtered, info.accepted);
        info.filtered_improvement = if info.raw_rmse_m > 0.0 {
            round4(1.0 - info.filtered_rmse_m / info.raw_rmse_m)
        } else {
            0.0
        };
        info.outliers_rejected_share = if info.outliers_sent > 0 {
            round4(info.outliers_rejected as f64 / info.outliers_sent as f64)
        } else {
            0.0
        };
        let good_rejected: u64 = info.good_rejected.values().sum();
        info.good_rejected_per_10k = if self.good > 0 {
            round4(good_rejected as f64 * 10_000.0 / self.good as f64)
        } else {
            0.0
        };
        info
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}
