//! The metric 4-state constant-velocity Kalman filter (09 "Kalman filter"), with adaptive R and
//! an innovation gate: a fix whose Mahalanobis distance from the predicted position exceeds
//! `gate_sigma` is an outlier and leaves the filter unchanged. Pure: a step returns the new
//! filter, so the caller commits it only after the fix is stored.

use nalgebra::{Matrix2, Matrix2x4, Matrix4, Vector2, Vector4};

use crate::model::{Fix, Reject};
use crate::validate::EARTH_RADIUS_M;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KfParams {
    /// `TRACKING_KF_Q`: process noise intensity, m²/s³.
    pub q: f64,
    /// `TRACKING_KF_MIN_SIGMA_M`: σ = max(accuracy, this).
    pub min_sigma_m: f64,
    /// `TRACKING_KF_GATE_SIGMA`: Mahalanobis distance over which a fix is an outlier (0 = off).
    /// 5 rejects a Gaussian fix with probability e^(-12.5) ≈ 4e-6.
    pub gate_sigma: f64,
    /// A gap longer than this between device timestamps re-seeds the filter.
    pub reset_gap_ms: i64,
    /// `TRACKING_KF_DEVICE_SPEED_SIGMA` (m/s): a seed takes the device's reported speed and
    /// bearing (phones measure speed by Doppler, to about a metre per second) as its velocity
    /// with this uncertainty; 0 ignores them. Without them the seed's velocity is 0 ± 10 m/s
    /// and the gate stays wide open for the next fixes, letting outliers in while the filter is
    /// young.
    pub device_speed_sigma: f64,
}

impl Default for KfParams {
    fn default() -> Self {
        Self {
            q: 1.0,
            min_sigma_m: 3.0,
            gate_sigma: 5.0,
            reset_gap_ms: 30_000,
            device_speed_sigma: 2.0,
        }
    }
}

/// Innovations (Mahalanobis) above this are checked against the phone's Doppler speed.
const DOPPLER_CHECK_SIGMA: f64 = 3.0;

/// Below this reported speed (m/s) a device's bearing is not used to seed the velocity.
const SEED_MIN_SPEED: f64 = 1.0;

/// Re-anchor the tangent plane when the state is this far from its origin.
const REANCHOR_M: f64 = 50_000.0;

/// The filtered position as the events carry it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Output {
    pub lat: f64,
    pub lng: f64,
    /// m/s.
    pub speed: f64,
    /// Degrees in [0, 360).
    pub bearing: f64,
}

/// One `(driver_id, order_id)`'s filter: state `[n, e, v_n, v_e]` in a local tangent plane.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Filter {
    lat0: f64,
    lng0: f64,
    x: Vector4<f64>,
    p: Matrix4<f64>,
    pub last_ts_ms: i64,
    bearing: f64,
    /// Updates since the seed.
    pub updates: u32,
    /// The Mahalanobis distance of the fix that made this state (0 for a seed; infinite for a
    /// seed that replaced a seed it disagreed with).
    pub innovation: f64,
}

fn cos_lat(lat0: f64) -> f64 {
    lat0.to_radians().cos().max(0.01)
}

fn h() -> Matrix2x4<f64> {
    Matrix2x4::new(1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0)
}

impl Filter {
    fn local(&self, lat: f64, lng: f64) -> Vector2<f64> {
        let n = (lat - self.lat0).to_radians() * EARTH_RADIUS_M;
        let e = (lng - self.lng0).to_radians() * EARTH_RADIUS_M * cos_lat(self.lat0);
        Vector2::new(n, e)
    }

    fn geo(&self, n: f64, e: f64) -> (f64, f64) {
        let lat = self.lat0 + (n / EARTH_RADIUS_M).to_degrees();
        let lng = self.lng0 + (e / (EARTH_RADIUS_M * cos_lat(self.lat0))).to_degrees();
        (lat, lng)
    }

    fn sigma(fix: &Fix, params: &KfParams) -> f64 {
        fix.accuracy.max(params.min_sigma_m)
    }

    /// Seeds at `fix` (the first fix, after a gap, or a jump recovery): the output is the raw fix.
    /// The velocity is the device's when it reports a speed and bearing while moving, else
    /// 0 ± 10 m/s (a standing rider may set off at any moment, in any direction).
    pub fn seed(fix: &Fix, params: &KfParams) -> (Filter, Output) {
        let s2 = Self::sigma(fix, params).powi(2);
        let sv = params.device_speed_sigma;
        let (vn, ve, pv) = match (fix.speed, fix.bearing) {
            (Some(v), Some(b)) if sv > 0.0 && v >= SEED_MIN_SPEED => {
                let b = b.to_radians();
                (v * b.cos(), v * b.sin(), sv * sv)
            }
            // Standing (too slow for a bearing): about still.
            (Some(v), _) if sv > 0.0 && v < SEED_MIN_SPEED => (0.0, 0.0, sv * sv),
            _ => (0.0, 0.0, 100.0),
        };
        let f = Filter {
            lat0: fix.lat,
            lng0: fix.lng,
            x: Vector4::new(0.0, 0.0, vn, ve),
            p: Matrix4::from_diagonal(&Vector4::new(s2, s2, pv, pv)),
            last_ts_ms: fix.timestamp_ms,
            bearing: fix.bearing.unwrap_or(0.0),
            updates: 0,
            innovation: 0.0,
        };
        let out = Output {
            lat: fix.lat,
            lng: fix.lng,
            speed: fix.speed.unwrap_or(0.0),
            bearing: f.bearing,
        };
        (f, out)
    }

    /// Whether `fix` needs a fresh seed rather than a step (a gap in device time).
    pub fn stale_for(&self, fix: &Fix, params: &KfParams) -> bool {
        fix.timestamp_ms - self.last_ts_ms > params.reset_gap_ms
    }

    /// Predicts to the fix's time and updates with it; an outlier (innovation gate) is refused
    /// and the filter stays as it was.
    pub fn step(&self, fix: &Fix, params: &KfParams) -> Result<(Filter, Output), Reject> {
        let dt = ((fix.timestamp_ms - self.last_ts_ms) as f64 / 1000.0).max(0.1);
        let f = Matrix4::new(
            1.0, 0.0, dt, 0.0, //
            0.0, 1.0, 0.0, dt, //
            0.0, 0.0, 1.0, 0.0, //
            0.0, 0.0, 0.0, 1.0,
        );
        let (q11, q12, q22) = (
            params.q * dt.powi(3) / 3.0,
            params.q * dt.powi(2) / 2.0,
            params.q * dt,
        );
        let q = Matrix4::new(
            q11, 0.0, q12, 0.0, //
            0.0, q11, 0.0, q12, //
            q12, 0.0, q22, 0.0, //
            0.0, q12, 0.0, q22,
        );
        let x = f * self.x;
        let p = f * self.p * f.transpose() + q;
        let s2 = Self::sigma(fix, params).powi(2);
        let r = Matrix2::from_diagonal(&Vector2::new(s2, s2));
        let h = h();
        let s = h * p * h.transpose() + r;
        let s_inv = s.try_inverse().ok_or(Reject::Outlier)?;
        let y = self.local(fix.lat, fix.lng) - h * x;
        let d2 = (y.transpose() * s_inv * y)[(0, 0)];
        // A NaN distance (a degenerate fix) is refused too.
        if d2.is_nan() || (params.gate_sigma > 0.0 && d2 > params.gate_sigma * params.gate_sigma) {
            return Err(Reject::Outlier);
        }
        let k = p * h.transpose() * s_inv;
        let x = x + k * y;
        let i_kh = Matrix4::identity() - k * h;
        let p = i_kh * p * i_kh.transpose() + k * r * k.transpose();
        let mut next = Filter {
            x,
            p,
            last_ts_ms: fix.timestamp_ms,
            updates: self.updates + 1,
            innovation: d2.sqrt(),
            ..*self
        };
        if x[0].abs() > REANCHOR_M || x[1].abs() > REANCHOR_M {
            let (lat, lng) = next.geo(x[0], x[1]);
            (next.lat0, next.lng0) = (lat, lng);
            next.x[0] = 0.0;
            next.x[1] = 0.0;
        }
        let (lat, lng) = next.geo(next.x[0], next.x[1]);
        let speed = next.x[2].hypot(next.x[3]);
        // Doppler consistency: a fix far from the prediction that would drag the filtered
        // velocity far from the one the phone measured is an outlier (multipath moves a
        // position, not the Doppler velocity). With a bearing (moving) the vectors are compared,
        // else the speeds.
        let sv = params.device_speed_sigma;
        if let Some(v) = fix.speed.filter(|v| sv > 0.0 && v.is_finite()) {
            let off = match fix.bearing.filter(|b| b.is_finite() && v >= SEED_MIN_SPEED) {
                Some(b) => {
                    let b = b.to_radians();
                    (next.x[2] - v * b.cos()).hypot(next.x[3] - v * b.sin())
                }
                None => (speed - v).abs(),
            };
            if d2 > DOPPLER_CHECK_SIGMA * DOPPLER_CHECK_SIGMA && off > 3.0 * sv {
                return Err(Reject::Outlier);
            }
        }
        next.bearing = if speed < 0.5 {
            fix.bearing.unwrap_or(self.bearing)
        } else {
            next.x[3].atan2(next.x[2]).to_degrees().rem_euclid(360.0)
        };
        Ok((
            next,
            Output {
                lat,
                lng,
                speed,
                bearing: next.bearing,
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::haversine_m;

    fn fix(lat: f64, lng: f64, ts: i64, accuracy: f64) -> Fix {
        Fix {
            lat,
            lng,
            accuracy,
            timestamp_ms: ts,
            speed: None,
            bearing: None,
        }
    }

    /// 10 m/s due east from Jakarta, a fix a second.
    fn east(i: i64) -> Fix {
        let lng = 106.8
            + (10.0 * i as f64) / (EARTH_RADIUS_M * (-6.2f64).to_radians().cos()) * 180.0
                / std::f64::consts::PI;
        fix(-6.2, lng, i * 1000, 5.0)
    }

    #[test]
    fn a_far_fix_that_would_contradict_the_phones_doppler_speed_is_an_outlier() {
        let kf = KfParams::default();
        // A steady 10 m/s east track, then a 10 s gap (a lost fix) widens the gate.
        let mut f = Filter::seed(&east(0), &kf).0;
        for i in 1..=10 {
            let mut x = east(i * 5);
            x.timestamp_ms = i * 5_000;
            x.accuracy = 10.0;
            f = f.step(&x, &kf).unwrap().0;
        }
        let mut far = east(60);
        far.timestamp_ms = 60_000;
        far.accuracy = 10.0;
        far.lat += 120.0 / 111_195.0;
        // Without a reported speed the widened gate takes it; with the phone saying 10 m/s, the
        // pull it would give the speed contradicts the Doppler reading.
        assert!(f.step(&far, &kf).is_ok());
        far.speed = Some(10.0);
        far.bearing = Some(90.0);
        assert_eq!(f.step(&far, &kf).unwrap_err(), Reject::Outlier);
        let mut good = east(60);
        good.timestamp_ms = 60_000;
        good.accuracy = 10.0;
        good.speed = Some(10.0);
        good.bearing = Some(90.0);
        assert!(f.step(&good, &kf).is_ok());
    }

    #[test]
    fn a_seed_with_the_devices_velocity_gates_an_outlier_at_the_second_fix() {
        let kf = KfParams::default();
        // 8 m/s east, fixes 5 s apart, 10 m accuracy; the second fix 200 m north of the truth.
        let mut first = east(0);
        first.accuracy = 10.0;
        let mut second = east(4);
        second.timestamp_ms = 5_000;
        second.accuracy = 10.0;
        second.lat += 200.0 / 111_195.0;
        let blind = Filter::seed(&first, &kf).0;
        assert!(blind.step(&second, &kf).is_ok(), "0 ± 10 m/s lets it in");
        first.speed = Some(8.0);
        first.bearing = Some(90.0);
        let (seeded, out) = Filter::seed(&first, &kf);
        assert_eq!(out.speed, 8.0);
        assert_eq!(seeded.step(&second, &kf).unwrap_err(), Reject::Outlier);
        // The true second fix passes.
        let mut good = east(4);
        good.timestamp_ms = 5_000;
        good.accuracy = 10.0;
        assert!(seeded.step(&good, &kf).is_ok());
        // Off: the spec's seed.
        let off = KfParams {
            device_speed_sigma: 0.0,
            ..kf
        };
        assert!(Filter::seed(&first, &off).0.step(&second, &off).is_ok());
    }

    #[test]
    fn a_straight_track_reads_its_speed_within_five_fixes() {
        let p = KfParams::default();
        let (mut f, _) = Filter::seed(&east(0), &p);
        let mut out = None;
        for i in 1..=5 {
            let (g, o) = f.step(&east(i), &p).unwrap();
            f = g;
            out = Some(o);
        }
        let o = out.unwrap();
        assert!((o.speed - 10.0).abs() < 1.5, "{o:?}");
        assert!((o.bearing - 90.0).abs() < 5.0, "{o:?}");
    }

    #[test]
    fn a_lone_outlier_moves_the_output_less_than_itself_and_less_when_less_accurate() {
        let p = KfParams {
            gate_sigma: 0.0,
            ..KfParams::default()
        };
        let mut f = Filter::seed(&east(0), &p).0;
        for i in 1..=10 {
            f = f.step(&east(i), &p).unwrap().0;
        }
        let truth = east(11);
        let shifted = |acc: f64| {
            let mut x = truth;
            x.lat += 30.0 / 111_195.0;
            x.accuracy = acc;
            let o = f.step(&x, &p).unwrap().1;
            haversine_m(o.lat, o.lng, truth.lat, truth.lng)
        };
        let (sharp, vague) = (shifted(5.0), shifted(25.0));
        assert!(sharp < 30.0 && vague < sharp, "{sharp} {vague}");
    }

    #[test]
    fn the_gate_refuses_a_200_m_outlier_and_leaves_the_filter_unchanged() {
        let p = KfParams::default();
        let mut f = Filter::seed(&east(0), &p).0;
        for i in 1..=10 {
            f = f.step(&east(i), &p).unwrap().0;
        }
        let mut x = east(11);
        x.lat += 200.0 / 111_195.0;
        assert_eq!(f.step(&x, &p), Err(Reject::Outlier));
        assert!(f.step(&east(11), &p).is_ok());
    }
}
