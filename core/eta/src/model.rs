//! Inputs (validated as 07 §2 says), the prediction, and how one is made from the components,
//! the traffic estimate and the calibration offsets.

use qc_geo::Point;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::calibrate::{Offsets, Source};
use crate::compose::{base_travel_s, compose, picking, queue, travel, Part};
use crate::geohash;
use crate::kalman::TrafficEstimate;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

/// `POST /eta/calculate` as it arrives; unknown fields are ignored.
#[derive(Debug, Clone, Deserialize)]
pub struct CalculateInput {
    pub order_id: String,
    pub hub_id: String,
    pub item_count: i64,
    pub hub_lat: f64,
    pub hub_lng: f64,
    pub cust_lat: f64,
    pub cust_lng: f64,
    pub queue_depth: i64,
    pub drivers_avail: i64,
    pub hour: Option<i64>,
    pub weekday: Option<i64>,
    /// Ours: `placed` (default), `assigned` or `picked_up`; see [`Stage`].
    pub stage: Option<String>,
    /// Ours, with `assigned`: picking is already done.
    pub picked: Option<bool>,
    /// Ours, with `assigned`: where the rider is (their ride to the hub is counted).
    pub rider_lat: Option<f64>,
    pub rider_lng: Option<f64>,
}

impl CalculateInput {
    /// A request at placement (no stage, rider, hour or weekday), as Checkout sends it;
    /// `hub` and `cust` are (lat, lng).
    pub fn placed(
        order_id: impl Into<String>,
        hub_id: impl Into<String>,
        item_count: i64,
        hub: (f64, f64),
        cust: (f64, f64),
        queue_depth: i64,
        drivers_avail: i64,
    ) -> Self {
        Self {
            order_id: order_id.into(),
            hub_id: hub_id.into(),
            item_count,
            hub_lat: hub.0,
            hub_lng: hub.1,
            cust_lat: cust.0,
            cust_lng: cust.1,
            queue_depth,
            drivers_avail,
            hour: None,
            weekday: None,
            stage: None,
            picked: None,
            rider_lat: None,
            rider_lng: None,
        }
    }
}

/// How far along the order is, so an estimate counts only the stages still ahead of it (and,
/// measured from now, is conditioned on the time already spent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// At payment: picking, waiting for a rider, travel. This answer is the promise.
    Placed,
    /// A rider accepted: picking (unless done) and travel; no wait for a rider.
    Assigned { picked: bool },
    /// The rider left the hub with it: travel only.
    PickedUp,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Placed => "placed",
            Stage::Assigned { .. } => "assigned",
            Stage::PickedUp => "picked_up",
        }
    }
}

/// The fastest a rider can plausibly cover straight-line distance in a city, m/s (60 km/h).
/// Below `distance / this` a trip cannot have happened; an ETA never promises less.
pub const MAX_PLAUSIBLE_SPEED_MPS: f64 = 16.7;

/// The least time the trip hub → customer can take, seconds.
pub fn travel_lower_bound_s(hub: Point, cust: Point) -> f64 {
    qc_geo::haversine_km(hub, cust) * 1000.0 / MAX_PLAUSIBLE_SPEED_MPS
}

/// A validated request.
#[derive(Debug, Clone, PartialEq)]
pub struct EtaRequest {
    pub order_id: String,
    pub hub_id: String,
    pub item_count: u32,
    pub hub: Point,
    pub cust: Point,
    pub queue_depth: u32,
    pub drivers_avail: u32,
    pub stage: Stage,
    /// With `Stage::Assigned`: the rider's position, for their ride to the hub.
    pub rider: Option<Point>,
}

/// 07 §2: finite, in range, exact (0, 0) refused.
pub fn location(field: &str, lat: f64, lng: f64) -> Result<Point, Invalid> {
    if lat == 0.0 && lng == 0.0 {
        return Err(Invalid(format!("{field}: (0, 0) is not a real location")));
    }
    Point::new(lat, lng).map_err(|e| Invalid(format!("{field}: {e}")))
}

/// An id that goes into a Redis key: `[A-Za-z0-9_.-]`, 1..=max characters.
pub fn key_id(field: &str, v: &str, max: usize) -> Result<(), Invalid> {
    let ok = !v.is_empty()
        && v.len() <= max
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(Invalid(format!(
            "{field} must be 1-{max} characters of [A-Za-z0-9_.-]"
        )))
    }
}

fn ranged(field: &str, v: i64, lo: i64, hi: i64) -> Result<u32, Invalid> {
    if (lo..=hi).contains(&v) {
        Ok(v as u32)
    } else {
        Err(Invalid(format!("{field} must be {lo}-{hi}, got {v}")))
    }
}

impl CalculateInput {
    pub fn validate(self) -> Result<EtaRequest, Invalid> {
        key_id("order_id", &self.order_id, 128)?;
        key_id("hub_id", &self.hub_id, 64)?;
        if let Some(h) = self.hour {
            ranged("hour", h, 0, 23)?;
        }
        if let Some(w) = self.weekday {
            ranged("weekday", w, 0, 6)?;
        }
        let stage = match self.stage.as_deref() {
            None | Some("placed") => Stage::Placed,
            Some("assigned") => Stage::Assigned {
                picked: self.picked.unwrap_or(false),
            },
            Some("picked_up") => Stage::PickedUp,
            Some(other) => {
                return Err(Invalid(format!(
                    "stage must be placed, assigned or picked_up, got {other:?}"
                )))
            }
        };
        let rider = match (self.rider_lat, self.rider_lng) {
            (Some(lat), Some(lng)) => Some(location("rider", lat, lng)?),
            (None, None) => None,
            _ => return Err(Invalid("rider_lat and rider_lng go together".into())),
        };
        Ok(EtaRequest {
            item_count: ranged("item_count", self.item_count, 1, 1000)?,
            hub: location("hub", self.hub_lat, self.hub_lng)?,
            cust: location("cust", self.cust_lat, self.cust_lng)?,
            queue_depth: ranged("queue_depth", self.queue_depth, 0, 100_000)?,
            drivers_avail: ranged("drivers_avail", self.drivers_avail, 0, 100_000)?,
            order_id: self.order_id,
            hub_id: self.hub_id,
            stage,
            rider,
        })
    }
}

/// The traffic segment: `hub_id:geohash6(cust)`.
pub fn segment(hub_id: &str, cust: Point) -> String {
    format!("{hub_id}:{}", geohash::encode(cust.lat, cust.lng, 6))
}

impl EtaRequest {
    pub fn segment(&self) -> String {
        segment(&self.hub_id, self.cust)
    }

    /// The sticky fingerprint: SHA-256 of `hub_id|hub_lat|hub_lng|cust_lat|cust_lng|item_count`
    /// with coordinates at 4 dp (queue and drivers do not break stickiness).
    pub fn fingerprint(&self) -> String {
        let s = format!(
            "{}|{:.4}|{:.4}|{:.4}|{:.4}|{}",
            self.hub_id, self.hub.lat, self.hub.lng, self.cust.lat, self.cust.lng, self.item_count
        );
        hex::encode(Sha256::digest(s.as_bytes()))
    }
}

/// One ETA, seconds.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    pub p50: f64,
    pub p80: f64,
    pub p95: f64,
    pub picking_s: f64,
    pub queue_s: f64,
    pub travel_s: f64,
    /// The Gaussian composition's p50 and σ_T (what residuals are measured against).
    pub raw_p50: f64,
    pub sigma: f64,
    pub multiplier: f64,
    pub segment: String,
    pub source: Source,
    /// Components that used a fallback (the travel filter unreadable: its prior).
    pub fallback: Vec<&'static str>,
}

impl Prediction {
    pub fn buffer_s(&self) -> f64 {
        self.p95 - self.p50
    }

    /// The calibration score of an observed order-to-door time.
    pub fn score(&self, actual_s: f64) -> f64 {
        (actual_s - self.raw_p50) / self.sigma.max(1e-9)
    }
}

/// Composes the components of the stages still ahead; `traffic` None means the filter could
/// not be read (its prior is used and "travel" reported as a fallback); `offsets` place the
/// stated quantiles, bounded ([`Offsets::bounded`]). Whatever the offsets, p50 is at least the
/// trip's physical lower bound and p50 < p80 < p95.
pub fn predict(
    req: &EtaRequest,
    traffic: Option<TrafficEstimate>,
    (offsets, source): (Offsets, Source),
) -> Prediction {
    let mut fallback = Vec::new();
    let t = traffic.unwrap_or_else(|| {
        fallback.push("travel");
        TrafficEstimate::PRIOR
    });
    let none = Part { mean: 0.0, sd: 0.0 };
    let base = base_travel_s(req.hub, req.cust);
    let (pk, q, tr) = match req.stage {
        Stage::Placed => (
            picking(req.item_count),
            queue(req.queue_depth, req.drivers_avail),
            travel(base, t),
        ),
        // After placement the estimate is of one trip, not of the multiplier: its spread is
        // the trip-to-trip noise as well as what the filter does not know.
        Stage::Assigned { picked } => {
            let pk = if picked {
                none
            } else {
                picking(req.item_count)
            };
            let to_hub = req
                .rider
                .map_or(none, |r| trip(base_travel_s(r, req.hub), t));
            let ahead = [to_hub, PICKUP, trip(base, t)];
            (pk, none, sum(&ahead))
        }
        Stage::PickedUp => (none, none, trip(base, t)),
    };
    let c = compose(&[pk, q, tr]);
    let o = offsets.bounded();
    let floor = travel_lower_bound_s(req.hub, req.cust);
    let p50 = (c.p50 + o.q50 * c.sigma).max(floor);
    let p80 = (c.p50 + o.q80 * c.sigma).max(p50 + MIN_STEP_S);
    let p95 = (c.p50 + o.q95 * c.sigma).max(p80 + MIN_STEP_S);
    Prediction {
        p50,
        p80,
        p95,
        picking_s: pk.mean,
        queue_s: q.mean,
        travel_s: tr.mean,
        raw_p50: c.p50,
        sigma: c.sigma,
        multiplier: t.multiplier,
        segment: req.segment(),
        source,
        fallback,
    }
}

/// The least gap between stated quantiles, seconds (they are reported to 0.01 s).
pub const MIN_STEP_S: f64 = 1.0;

/// Collecting the order at the hub once the rider is there (before `picked_up`), seconds.
pub const PICKUP: Part = Part {
    mean: 60.0,
    sd: 30.0,
};

/// One trip of `base_s` at the learned traffic: the filter's uncertainty and the trip noise.
fn trip(base_s: f64, t: TrafficEstimate) -> Part {
    let mean = base_s * t.multiplier;
    Part {
        mean,
        sd: mean * (t.s2 + crate::kalman::R).sqrt(),
    }
}

/// Independent parts as one.
fn sum(parts: &[Part]) -> Part {
    Part {
        mean: parts.iter().map(|p| p.mean).sum(),
        sd: parts.iter().map(|p| p.sd * p.sd).sum::<f64>().sqrt(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calibrate::Offsets;

    fn input() -> CalculateInput {
        serde_json::from_str(
            r#"{"order_id":"o-1","hub_id":"h1","item_count":5,"hub_lat":-6.2,"hub_lng":106.816666,
                "cust_lat":-6.25,"cust_lng":106.85,"queue_depth":3,"drivers_avail":5,"extra":true}"#,
        )
        .unwrap()
    }

    #[test]
    fn validation_names_the_field() {
        assert!(input().validate().is_ok(), "unknown fields are ignored");
        type Mutation = Box<dyn Fn(&mut CalculateInput)>;
        let cases: Vec<(Mutation, &str)> = vec![
            (Box::new(|i| i.item_count = 0), "item_count"),
            (Box::new(|i| i.item_count = 1001), "item_count"),
            (Box::new(|i| i.queue_depth = -1), "queue_depth"),
            (Box::new(|i| i.drivers_avail = 100_001), "drivers_avail"),
            (Box::new(|i| i.hub_lat = 91.0), "hub"),
            (Box::new(|i| i.cust_lng = f64::NAN), "cust"),
            (Box::new(|i| (i.cust_lat, i.cust_lng) = (0.0, 0.0)), "cust"),
            (Box::new(|i| i.order_id = "a:b".into()), "order_id"),
            (Box::new(|i| i.hour = Some(24)), "hour"),
        ];
        for (mutate, field) in cases {
            let mut i = input();
            mutate(&mut i);
            let e = i.validate().unwrap_err().0;
            assert!(e.starts_with(field), "{e}");
        }
        let mut zero = input();
        (zero.queue_depth, zero.drivers_avail, zero.cust_lat) = (0, 0, 0.0);
        assert!(
            zero.validate().is_ok(),
            "0 queue, 0 drivers and a single 0 coordinate are fine"
        );
    }

    #[test]
    fn fingerprint_ignores_queue_and_rounds_coordinates() {
        let a = input().validate().unwrap();
        let mut b = a.clone();
        b.queue_depth = 99;
        b.cust.lat += 0.00001;
        assert_eq!(a.fingerprint(), b.fingerprint());
        b.item_count = 6;
        assert_ne!(a.fingerprint(), b.fingerprint());
    }

    #[test]
    fn offsets_place_the_quantiles() {
        let r = input().validate().unwrap();
        let g = predict(&r, None, (Offsets::GAUSSIAN, Source::Prior));
        assert_eq!(g.fallback, ["travel"]);
        assert!((g.p50 - 1012.71).abs() < 0.01 && (g.p95 - 1489.03).abs() < 0.01);
        let with = |q50, q80, q95| {
            predict(
                &r,
                Some(TrafficEstimate::PRIOR),
                (Offsets { q50, q80, q95 }, Source::Hub),
            )
        };
        let shifted = with(0.5, 0.3, 2.0);
        assert!((shifted.p50 - (g.raw_p50 + 0.5 * g.sigma)).abs() < 1e-9);
        assert!(
            shifted.p80 > shifted.p50 && shifted.p95 > shifted.p80,
            "quantiles never cross"
        );
        assert!((shifted.score(shifted.raw_p50 + 2.0 * shifted.sigma) - 2.0).abs() < 1e-9);
        // Absurd offsets (a window of impossible observations) move p50 at most 1.5 σ down, and
        // never below the trip's physical lower bound.
        let absurd = with(-40.0, -39.0, -0.5);
        let down = crate::calibrate::MAX_SHIFT[0].0;
        assert!((absurd.p50 - (g.raw_p50 - down * g.sigma)).abs() < 1e-9);
        assert!(absurd.p50 >= travel_lower_bound_s(r.hub, r.cust));
        assert!(absurd.p50 < absurd.p80 && absurd.p80 < absurd.p95);
        let nan = with(f64::NAN, f64::INFINITY, f64::NEG_INFINITY);
        assert_eq!((nan.p50, nan.p80, nan.p95), (g.p50, g.p80, g.p95));
    }

    #[test]
    fn stages_count_only_what_is_ahead() {
        let mut r = input().validate().unwrap();
        let placed = predict(
            &r,
            Some(TrafficEstimate::PRIOR),
            (Offsets::GAUSSIAN, Source::Prior),
        );
        r.stage = Stage::Assigned { picked: false };
        let assigned = predict(
            &r,
            Some(TrafficEstimate::PRIOR),
            (Offsets::GAUSSIAN, Source::Prior),
        );
        r.stage = Stage::Assigned { picked: true };
        let picked = predict(
            &r,
            Some(TrafficEstimate::PRIOR),
            (Offsets::GAUSSIAN, Source::Prior),
        );
        r.stage = Stage::PickedUp;
        let out = predict(
            &r,
            Some(TrafficEstimate::PRIOR),
            (Offsets::GAUSSIAN, Source::Prior),
        );
        // Assigned: no wait for a rider, but the pickup at the hub is still ahead.
        assert!((placed.raw_p50 - assigned.raw_p50 - (placed.queue_s - PICKUP.mean)).abs() < 1e-9);
        assert_eq!(assigned.queue_s, 0.0);
        assert_eq!((picked.picking_s, picked.queue_s), (0.0, 0.0));
        assert!((picked.raw_p50 - PICKUP.mean - placed.travel_s).abs() < 1e-9);
        assert!((out.raw_p50 - placed.travel_s).abs() < 1e-9);
        assert!(out.sigma < picked.sigma && picked.sigma < assigned.sigma);
        // A rider away from the hub: their ride there is counted.
        r.stage = Stage::Assigned { picked: true };
        r.rider = Some(r.hub.offset_km(2.0, 0.0));
        let away = predict(
            &r,
            Some(TrafficEstimate::PRIOR),
            (Offsets::GAUSSIAN, Source::Prior),
        );
        let leg = base_travel_s(r.rider.unwrap(), r.hub);
        assert!((away.raw_p50 - picked.raw_p50 - leg).abs() < 1e-9);
        let mut half = input();
        half.stage = Some("assigned".into());
        half.rider_lat = Some(-6.2);
        assert!(half.validate().unwrap_err().0.contains("rider_lng"));
        let mut bad = input();
        bad.stage = Some("delivered".into());
        assert!(bad.validate().unwrap_err().0.starts_with("stage"));
    }
}
