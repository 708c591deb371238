//! Small geodesy for the simulator: haversine distance and offsets in km.

use std::f64::consts::PI;

pub const EARTH_RADIUS_KM: f64 = 6371.0088;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LatLng {
    pub lat: f64,
    pub lng: f64,
}

/// Great-circle distance.
pub fn haversine_km(a: LatLng, b: LatLng) -> f64 {
    let (la1, la2) = (a.lat.to_radians(), b.lat.to_radians());
    let dlat = la2 - la1;
    let dlng = (b.lng - a.lng).to_radians();
    let h = (dlat / 2.0).sin().powi(2) + la1.cos() * la2.cos() * (dlng / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_KM * h.sqrt().min(1.0).asin()
}

/// The point `east_km` east and `north_km` north of `origin` (local flat approximation).
pub fn offset(origin: LatLng, east_km: f64, north_km: f64) -> LatLng {
    let km_per_deg = EARTH_RADIUS_KM * PI / 180.0;
    LatLng {
        lat: origin.lat + north_km / km_per_deg,
        lng: origin.lng + east_km / (km_per_deg * origin.lat.to_radians().cos().max(1e-6)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_distance() {
        // Monas to Bundaran HI, Jakarta: about 2.2 km.
        let d = haversine_km(
            LatLng {
                lat: -6.1754,
                lng: 106.8272,
            },
            LatLng {
                lat: -6.1951,
                lng: 106.8231,
            },
        );
        assert!((d - 2.24).abs() < 0.05, "{d}");
    }

    #[test]
    fn offsets_round_trip_through_haversine() {
        let o = LatLng {
            lat: -6.2,
            lng: 106.8,
        };
        let p = offset(o, 3.0, 4.0);
        assert!((haversine_km(o, p) - 5.0).abs() < 0.01);
    }
}
