//! The six validation factors and the jump rule (09 "Validation"), as a pure function of the
//! limits, the driver's last accepted fix and the clock. Every limit is configuration; together
//! with the filter's innovation gate they cover Traccar's filter set (invalid, zero, duplicate,
//! future, accuracy, distance, max speed, min period).

use crate::model::{Fix, Reject};

/// Earth radius in metres (09: R = 6 371 000 m, Geo's radius).
pub const EARTH_RADIUS_M: f64 = qc_geo::EARTH_RADIUS_KM * 1000.0;

/// Great-circle distance in metres (Geo's haversine).
pub fn haversine_m(lat1: f64, lng1: f64, lat2: f64, lng2: f64) -> f64 {
    let p = |lat, lng| qc_geo::Point { lat, lng };
    qc_geo::haversine_km(p(lat1, lng1), p(lat2, lng2)) * 1000.0
}

/// The limits, each an env variable of the service (README).
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// `TRACKING_BOUNDS` (min_lat, min_lng, max_lat, max_lng); default the whole globe.
    pub bounds: (f64, f64, f64, f64),
    /// `TRACKING_MAX_SPEED_MPS`: a reported speed above this is refused, and so is a fix implying
    /// it since the last accepted one (the jump test).
    pub max_speed_mps: f64,
    /// `TRACKING_MAX_ACCURACY_M`.
    pub max_accuracy_m: f64,
    /// `TRACKING_MAX_AGE_SECS`, `TRACKING_MAX_FUTURE_SECS`, in ms.
    pub max_age_ms: i64,
    pub max_future_ms: i64,
    /// `TRACKING_MIN_INTERVAL_SECS` (Traccar's min period), in ms.
    pub min_interval_ms: i64,
    /// `TRACKING_MIN_MOVE_M` (Traccar's duplicate / distance filter).
    pub min_move_m: f64,
    /// `TRACKING_REJECT_ZERO`: refuse (0, 0), a device's "no fix" (Traccar's zero filter).
    pub reject_zero: bool,
    /// After this many consecutive `jump` (or `outlier`) rejections the next fix passing the
    /// other checks is accepted and the filter re-seeded at it.
    pub jump_recovery: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            bounds: (-90.0, -180.0, 90.0, 180.0),
            max_speed_mps: 55.6,
            max_accuracy_m: 500.0,
            max_age_ms: 30_000,
            max_future_ms: 5_000,
            min_interval_ms: 2_000,
            min_move_m: 0.5,
            reject_zero: true,
            jump_recovery: 3,
        }
    }
}

/// What the validator remembers of a driver: the last accepted fix and the count of consecutive
/// jump (or outlier) rejections.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct DriverTrack {
    pub last: Option<(i64, f64, f64)>,
    pub jumps: u32,
}

/// A fix that passed: whether it is the recovery from a run of jumps (the filter re-seeds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Passed {
    pub recovery: bool,
}

/// Checks factors 1-6 in order; the first failure is returned. Boundary values pass.
pub fn check(
    limits: &Limits,
    track: &DriverTrack,
    fix: &Fix,
    now_ms: i64,
) -> Result<Passed, Reject> {
    // 1. bounds
    let (min_lat, min_lng, max_lat, max_lng) = limits.bounds;
    if !fix.lat.is_finite()
        || !fix.lng.is_finite()
        || !(-90.0..=90.0).contains(&fix.lat)
        || !(-180.0..=180.0).contains(&fix.lng)
        || !(min_lat..=max_lat).contains(&fix.lat)
        || !(min_lng..=max_lng).contains(&fix.lng)
        || (limits.reject_zero && fix.lat == 0.0 && fix.lng == 0.0)
    {
        return Err(Reject::OutOfBounds);
    }
    // 2. sensor
    if let Some(s) = fix.speed {
        if !(s.is_finite() && (0.0..=limits.max_speed_mps).contains(&s)) {
            return Err(Reject::InvalidSpeed);
        }
    }
    if let Some(b) = fix.bearing {
        if !(b.is_finite() && (0.0..=360.0).contains(&b)) {
            return Err(Reject::InvalidBearing);
        }
    }
    // 3. accuracy
    if !(fix.accuracy.is_finite() && (0.0..=limits.max_accuracy_m).contains(&fix.accuracy)) {
        return Err(Reject::InvalidAccuracy);
    }
    // 4. freshness
    if now_ms - fix.timestamp_ms > limits.max_age_ms {
        return Err(Reject::Stale);
    }
    if fix.timestamp_ms - now_ms > limits.max_future_ms {
        return Err(Reject::FutureTimestamp);
    }
    let Some((last_ts, last_lat, last_lng)) = track.last else {
        return Ok(Passed { recovery: false });
    };
    // 5. rate
    if fix.timestamp_ms <= last_ts {
        return Err(Reject::OutOfOrder);
    }
    let dt_ms = fix.timestamp_ms - last_ts;
    if dt_ms < limits.min_interval_ms {
        return Err(Reject::Throttled);
    }
    // 6. movement
    let d = haversine_m(last_lat, last_lng, fix.lat, fix.lng);
    if d < limits.min_move_m {
        return Err(Reject::Duplicate);
    }
    let recovery = track.jumps >= limits.jump_recovery;
    if !recovery && d / (dt_ms as f64 / 1000.0) > limits.max_speed_mps {
        return Err(Reject::Jump);
    }
    Ok(Passed { recovery })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000_000;

    fn fix(lat: f64, lng: f64, ts: i64) -> Fix {
        Fix {
            lat,
            lng,
            accuracy: 10.0,
            timestamp_ms: ts,
            speed: None,
            bearing: None,
        }
    }

    fn after(lat: f64, lng: f64, ts: i64) -> DriverTrack {
        DriverTrack {
            last: Some((ts, lat, lng)),
            jumps: 0,
        }
    }

    #[test]
    fn each_factor_in_order_with_boundaries_passing() {
        let l = Limits::default();
        let first = DriverTrack::default();
        let ok = |t: &DriverTrack, f: Fix| check(&l, t, &f, NOW);
        assert!(ok(&first, fix(-6.2, 106.8, NOW)).is_ok());
        assert_eq!(ok(&first, fix(90.5, 0.1, NOW)), Err(Reject::OutOfBounds));
        assert_eq!(
            ok(&first, fix(f64::NAN, 1.0, NOW)),
            Err(Reject::OutOfBounds)
        );
        assert_eq!(ok(&first, fix(0.0, 0.0, NOW)), Err(Reject::OutOfBounds));
        assert!(ok(&first, fix(90.0, 180.0, NOW)).is_ok());
        let mut f = fix(-6.2, 106.8, NOW);
        f.speed = Some(55.6);
        assert!(ok(&first, f).is_ok());
        f.speed = Some(55.7);
        assert_eq!(ok(&first, f), Err(Reject::InvalidSpeed));
        f.speed = None;
        f.bearing = Some(360.5);
        assert_eq!(ok(&first, f), Err(Reject::InvalidBearing));
        f.bearing = None;
        f.accuracy = 500.0;
        assert!(ok(&first, f).is_ok());
        f.accuracy = -1.0;
        assert_eq!(ok(&first, f), Err(Reject::InvalidAccuracy));
        assert!(ok(&first, fix(-6.2, 106.8, NOW - 30_000)).is_ok());
        assert_eq!(
            ok(&first, fix(-6.2, 106.8, NOW - 30_001)),
            Err(Reject::Stale)
        );
        assert_eq!(
            ok(&first, fix(-6.2, 106.8, NOW + 5_001)),
            Err(Reject::FutureTimestamp)
        );
        // Rate and movement need a previous fix.
        let t = after(-6.2, 106.8, NOW - 10_000);
        assert_eq!(
            ok(&t, fix(-6.2, 106.8, NOW - 10_000)),
            Err(Reject::OutOfOrder)
        );
        assert_eq!(
            ok(&t, fix(-6.2, 106.8, NOW - 8_001)),
            Err(Reject::Throttled)
        );
        assert_eq!(ok(&t, fix(-6.2, 106.8, NOW)), Err(Reject::Duplicate));
        // 10 s at 55 m/s is 550 m: passes; 1 km is a jump.
        assert!(ok(&t, fix(-6.2 + 550.0 / 111_195.0, 106.8, NOW)).is_ok());
        assert_eq!(
            ok(&t, fix(-6.2 + 1000.0 / 111_195.0, 106.8, NOW)),
            Err(Reject::Jump)
        );
    }

    #[test]
    fn after_three_jumps_the_next_fix_is_a_recovery() {
        let l = Limits::default();
        let mut t = after(-6.2, 106.8, NOW - 10_000);
        t.jumps = 3;
        let far = fix(-6.1, 106.8, NOW);
        assert_eq!(check(&l, &t, &far, NOW), Ok(Passed { recovery: true }));
    }

    #[test]
    fn haversine_matches_a_degree_of_latitude() {
        let d = haversine_m(0.0, 0.0, 1.0, 0.0);
        assert!((d - 111_194.9).abs() < 0.5, "{d}");
    }
}
