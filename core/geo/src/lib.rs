//! Geo domain (02-geo): pure rules here (validated points, haversine distance, H3 cells via
//! h3o, hub eligibility and scoring with deterministic tie-breaks, the ETA rule, the
//! coverage-ring walk that builds the cell index). The port [`HubStore`] (registry, cell index,
//! winner cache, version) has two adapters, [`RedisPgHubs`] (over [`registry`]) and
//! [`MemoryHubs`], both checked by [`conformance`].

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
pub mod memory;
pub mod registry;
pub mod store;

use std::cmp::Ordering;

pub use h3o::{CellIndex, Resolution};
pub use memory::MemoryHubs;
use serde::{Deserialize, Serialize};
pub use store::{CellLookup, HubStore, RedisPgHubs};

/// Mean Earth radius used by the haversine formula (02 §3).
pub const EARTH_RADIUS_KM: f64 = 6371.0;
/// Res-9 circumradius allowance when deciding whether a cell belongs to a hub's coverage.
pub const COVERAGE_SLACK_KM: f64 = 0.25;
/// Scores closer than this are ties.
pub const SCORE_EPSILON: f64 = 1e-9;
/// A ring walk never goes further than this (a 50 km radius needs ~300 res-9 rings).
pub const MAX_RINGS: u32 = 400;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GeoError {
    #[error("{0}")]
    Invalid(String),
}

fn invalid(msg: impl Into<String>) -> GeoError {
    GeoError::Invalid(msg.into())
}

/// A finite coordinate within range.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Point {
    pub lat: f64,
    pub lng: f64,
}

impl Point {
    pub fn new(lat: f64, lng: f64) -> Result<Self, GeoError> {
        if !lat.is_finite() || !(-90.0..=90.0).contains(&lat) {
            return Err(invalid(format!(
                "lat must be a number within [-90, 90], got {lat}"
            )));
        }
        if !lng.is_finite() || !(-180.0..=180.0).contains(&lng) {
            return Err(invalid(format!(
                "lng must be a number within [-180, 180], got {lng}"
            )));
        }
        Ok(Self { lat, lng })
    }

    /// The point `east_km` east and `north_km` north of this one (local flat approximation,
    /// fine at city scale); latitude is clamped to the valid range.
    pub fn offset_km(self, east_km: f64, north_km: f64) -> Point {
        let km_per_deg = EARTH_RADIUS_KM * std::f64::consts::PI / 180.0;
        let lat = (self.lat + north_km / km_per_deg).clamp(-90.0, 90.0);
        let lng = self.lng + east_km / (km_per_deg * self.lat.to_radians().cos().max(1e-6));
        Point {
            lat,
            lng: (lng + 540.0).rem_euclid(360.0) - 180.0,
        }
    }

    /// The H3 cell containing the point.
    pub fn cell(self, resolution: Resolution) -> CellIndex {
        h3o::LatLng::new(self.lat, self.lng)
            .expect("validated finite coordinates")
            .to_cell(resolution)
    }
}

/// The centre of a cell.
pub fn cell_center(cell: CellIndex) -> Point {
    let ll = h3o::LatLng::from(cell);
    Point {
        lat: ll.lat(),
        lng: ll.lng(),
    }
}

/// Great-circle distance: a = sin²(Δφ/2) + cos φ1·cos φ2·sin²(Δλ/2); d = 2R·atan2(√a, √(1−a)).
pub fn haversine_km(a: Point, b: Point) -> f64 {
    let (p1, p2) = (a.lat.to_radians(), b.lat.to_radians());
    let dp = p2 - p1;
    let dl = (b.lng - a.lng).to_radians();
    let h = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_KM * h.sqrt().atan2((1.0 - h).sqrt())
}

/// A dark store as geo sees it (02 §2 field names).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hub {
    pub id: String,
    #[serde(default)]
    pub name: String,
    pub lat: f64,
    pub lng: f64,
    pub max_radius_km: f64,
    #[serde(default)]
    pub priority: i32,
    /// Normalised stock availability, 0..1.
    #[serde(default)]
    pub stock: f64,
    /// Normalised rider availability, 0..1.
    #[serde(default)]
    pub rider_avail: f64,
    #[serde(default = "yes")]
    pub active: bool,
}

fn yes() -> bool {
    true
}

impl Hub {
    pub fn point(&self) -> Point {
        Point {
            lat: self.lat,
            lng: self.lng,
        }
    }

    /// Checks every field against 02 §2.
    pub fn validate(&self) -> Result<(), GeoError> {
        let id_ok = !self.id.is_empty()
            && self.id.len() <= 64
            && self
                .id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if !id_ok {
            return Err(invalid("id must be 1-64 characters of [A-Za-z0-9_.-]"));
        }
        if self.name.chars().count() > 128 {
            return Err(invalid("name must be at most 128 characters"));
        }
        Point::new(self.lat, self.lng)?;
        if !(self.max_radius_km > 0.0 && self.max_radius_km <= 50.0) {
            return Err(invalid(format!(
                "max_radius_km must be within (0, 50], got {}",
                self.max_radius_km
            )));
        }
        for (name, v) in [("stock", self.stock), ("rider_avail", self.rider_avail)] {
            if !(0.0..=1.0).contains(&v) {
                return Err(invalid(format!("{name} must be within [0, 1], got {v}")));
            }
        }
        Ok(())
    }
}

/// Score weights (`GEO_W_DISTANCE/STOCK/RIDER`), summing to 1.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Weights {
    pub distance: f64,
    pub stock: f64,
    pub rider: f64,
}

impl Default for Weights {
    fn default() -> Self {
        Self {
            distance: 0.4,
            stock: 0.4,
            rider: 0.2,
        }
    }
}

impl Weights {
    pub fn new(distance: f64, stock: f64, rider: f64) -> Result<Self, GeoError> {
        let all = [distance, stock, rider];
        if all.iter().any(|w| !(0.0..=1.0).contains(w))
            || ((distance + stock + rider) - 1.0).abs() > 1e-6
        {
            return Err(invalid("score weights must be within [0, 1] and sum to 1"));
        }
        Ok(Self {
            distance,
            stock,
            rider,
        })
    }
}

/// An eligible hub for a point, with its distance and score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate<'a> {
    pub hub: &'a Hub,
    pub distance_km: f64,
    pub score: f64,
}

/// The hub's candidacy for `p`: active and within its radius (inclusive), else `None`.
pub fn evaluate<'a>(p: Point, hub: &'a Hub, w: Weights) -> Option<Candidate<'a>> {
    if !hub.active {
        return None;
    }
    let d = haversine_km(p, hub.point());
    if d > hub.max_radius_km {
        return None;
    }
    let dist_norm = (1.0 - d / hub.max_radius_km).max(0.0);
    Some(Candidate {
        hub,
        distance_km: d,
        score: w.distance * dist_norm + w.stock * hub.stock + w.rider * hub.rider_avail,
    })
}

/// Which of two candidates wins: the higher score; on a tie (|Δ| < 1e-9) the smaller
/// distance, then the lower priority, then the smaller id.
pub fn better(a: &Candidate<'_>, b: &Candidate<'_>) -> Ordering {
    if (a.score - b.score).abs() >= SCORE_EPSILON {
        return b.score.total_cmp(&a.score);
    }
    a.distance_km
        .total_cmp(&b.distance_km)
        .then(a.hub.priority.cmp(&b.hub.priority))
        .then_with(|| a.hub.id.cmp(&b.hub.id))
}

/// The best eligible hub for `p` among `hubs` (order of `hubs` never matters).
pub fn best<'a>(
    p: Point,
    hubs: impl IntoIterator<Item = &'a Hub>,
    w: Weights,
) -> Option<Candidate<'a>> {
    hubs.into_iter()
        .filter_map(|h| evaluate(p, h, w))
        .min_by(|a, b| better(a, b))
}

/// eta_minutes = 7 + ceil(d / 25 km/h · 60).
pub fn eta_minutes(distance_km: f64) -> u32 {
    7 + (distance_km / 25.0 * 60.0).ceil().max(0.0) as u32
}

/// Output rounding, half away from zero.
pub fn round_to(x: f64, decimals: i32) -> f64 {
    let f = 10f64.powi(decimals);
    (x * f).round() / f
}

/// The cells a hub covers: rings k = 0, 1, 2… around its cell, keeping cells whose centre is
/// within radius + 0.25 km, stopping after the first ring that adds nothing. A superset: the
/// exact radius check always runs at lookup.
pub fn coverage_cells(hub: &Hub, resolution: Resolution) -> Vec<CellIndex> {
    let origin = hub.point().cell(resolution);
    let reach = hub.max_radius_km + COVERAGE_SLACK_KM;
    let mut cells = Vec::new();
    for k in 0..=MAX_RINGS {
        let ring: Vec<CellIndex> = if k == 0 {
            vec![origin]
        } else {
            origin.grid_ring::<Vec<_>>(k)
        };
        let before = cells.len();
        cells.extend(
            ring.into_iter()
                .filter(|c| haversine_km(hub.point(), cell_center(*c)) <= reach),
        );
        if cells.len() == before {
            break;
        }
    }
    cells.sort_unstable();
    cells.dedup();
    cells
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hub(id: &str, lat: f64, lng: f64, r: f64) -> Hub {
        Hub {
            id: id.into(),
            name: String::new(),
            lat,
            lng,
            max_radius_km: r,
            priority: 0,
            stock: 0.5,
            rider_avail: 0.5,
            active: true,
        }
    }

    #[test]
    fn the_spec_example_cell() {
        let p = Point::new(-6.2, 106.84).unwrap();
        assert_eq!(p.cell(Resolution::Nine).to_string(), "898c1079d57ffff");
    }

    #[test]
    fn points_are_validated() {
        assert!(Point::new(0.0, 0.0).is_ok(), "0 is a valid coordinate");
        for (lat, lng) in [
            (91.0, 0.0),
            (-90.1, 0.0),
            (0.0, 180.5),
            (f64::NAN, 0.0),
            (0.0, f64::INFINITY),
        ] {
            assert!(Point::new(lat, lng).is_err(), "{lat},{lng}");
        }
    }

    #[test]
    fn haversine_known_distance() {
        let a = Point::new(-6.1754, 106.8272).unwrap();
        let b = Point::new(-6.1951, 106.8231).unwrap();
        assert!((haversine_km(a, b) - 2.24).abs() < 0.02);
        assert_eq!(haversine_km(a, a), 0.0);
    }

    #[test]
    fn eligibility_is_active_and_inclusive_radius() {
        let h = hub("a", -6.2, 106.84, 1.0);
        let edge = Point::new(-6.2 + 1.0 / 111.19492664455873, 106.84).unwrap();
        let d = haversine_km(edge, h.point());
        let mut exact = h.clone();
        exact.max_radius_km = d;
        assert!(
            evaluate(edge, &exact, Weights::default()).is_some(),
            "d == radius is eligible"
        );
        exact.max_radius_km = d - 1e-9;
        assert!(evaluate(edge, &exact, Weights::default()).is_none());
        let mut off = h.clone();
        off.active = false;
        assert!(evaluate(h.point(), &off, Weights::default()).is_none());
    }

    #[test]
    fn ties_go_to_distance_then_priority_then_id() {
        let p = Point::new(-6.2, 106.84).unwrap();
        // Same score (stock/rider compensate distance), different distances.
        let mut near = hub("z-near", -6.2, 106.841, 3.0);
        let mut far = hub("a-far", -6.2, 106.85, 3.0);
        let w = Weights::new(0.0, 1.0, 0.0).unwrap();
        near.stock = 0.7;
        far.stock = 0.7;
        assert_eq!(best(p, [&far, &near], w).unwrap().hub.id, "z-near");
        // Same score and distance: lower priority wins, then smaller id.
        let mut b = hub("b", -6.2, 106.841, 3.0);
        let mut a = hub("a", -6.2, 106.841, 3.0);
        b.priority = -1;
        assert_eq!(best(p, [&a, &b], w).unwrap().hub.id, "b");
        b.priority = 0;
        a.priority = 0;
        assert_eq!(best(p, [&b, &a], w).unwrap().hub.id, "a");
        // A real score difference beats distance.
        far.stock = 0.9;
        assert_eq!(best(p, [&near, &far], w).unwrap().hub.id, "a-far");
    }

    #[test]
    fn offsets_round_trip_through_haversine() {
        let o = Point::new(-6.2, 106.8).unwrap();
        assert!((haversine_km(o, o.offset_km(3.0, 4.0)) - 5.0).abs() < 0.01);
        let wrapped = Point::new(0.0, 179.99).unwrap().offset_km(5.0, 0.0);
        assert!(Point::new(wrapped.lat, wrapped.lng).is_ok() && wrapped.lng < 0.0);
    }

    #[test]
    fn eta_and_rounding() {
        assert_eq!(eta_minutes(0.0), 7);
        assert_eq!(eta_minutes(1.16), 10);
        assert_eq!(eta_minutes(25.0), 67);
        assert_eq!(round_to(1.155, 2), 1.16);
        assert_eq!(round_to(-0.0005, 3), -0.001);
    }

    #[test]
    fn coverage_sizes_match_the_spec() {
        // 02 §3: r = 1 → 48 cells, 3 → 309, 5 → 812, 10 → 3 091 (near the equator; allow 5%).
        for (r, expected) in [(1.0, 48.0), (3.0, 309.0), (5.0, 812.0), (10.0, 3091.0)] {
            let n = coverage_cells(&hub("h", -6.2, 106.84, r), Resolution::Nine).len() as f64;
            assert!(
                (n - expected).abs() / expected < 0.05,
                "r = {r}: {n} cells, spec {expected}"
            );
        }
    }

    #[test]
    fn hubs_are_validated() {
        let mut h = hub("ok", -6.2, 106.84, 3.0);
        assert!(h.validate().is_ok());
        h.max_radius_km = 0.0;
        assert!(h.validate().is_err());
        h.max_radius_km = 3.0;
        h.stock = 1.5;
        assert!(h.validate().is_err());
        h.stock = 0.5;
        h.id = "a:b".into();
        assert!(h.validate().is_err());
        assert!(Weights::new(0.5, 0.5, 0.1).is_err());
    }

    proptest! {
        /// Every point within a hub's radius lies in one of its coverage cells.
        #[test]
        fn coverage_contains_every_point_in_radius(r in 0.3f64..4.0, bearing in 0.0f64..std::f64::consts::TAU, frac in 0.0f64..1.0) {
            let h = hub("h", -6.2, 106.84, r);
            let cells = coverage_cells(&h, Resolution::Nine);
            let d = r * frac;
            let p = Point::new(-6.2 + d * bearing.cos() / 111.195, 106.84 + d * bearing.sin() / (111.195 * (-6.2f64).to_radians().cos())).unwrap();
            if haversine_km(p, h.point()) <= r {
                prop_assert!(cells.binary_search(&p.cell(Resolution::Nine)).is_ok());
            }
        }

        /// The winner does not depend on the order hubs are offered in.
        #[test]
        fn best_is_order_independent(seed in 0u64..1000) {
            let p = Point::new(-6.2, 106.84).unwrap();
            let hubs: Vec<Hub> = (0..6).map(|i| {
                let x = ((seed + i * 7919) % 1000) as f64 / 1000.0;
                let mut h = hub(&format!("h{i}"), -6.2 + x * 0.02, 106.84 + (1.0 - x) * 0.02, 3.0);
                h.stock = ((seed + i) % 3) as f64 / 2.0;
                h
            }).collect();
            let fwd = best(p, hubs.iter(), Weights::default()).map(|c| c.hub.id.clone());
            let rev = best(p, hubs.iter().rev(), Weights::default()).map(|c| c.hub.id.clone());
            prop_assert_eq!(fwd, rev);
        }
    }
}
