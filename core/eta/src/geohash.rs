//! The standard base-32 geohash (07 §5 segments use 6 characters, about 1.2 × 0.6 km).

const BASE32: &[u8; 32] = b"0123456789bcdefghjkmnpqrstuvwxyz";

/// Geohash of `len` characters (longitude bit first).
pub fn encode(lat: f64, lng: f64, len: usize) -> String {
    let (mut lat_r, mut lng_r) = ((-90.0f64, 90.0f64), (-180.0f64, 180.0f64));
    let mut out = String::with_capacity(len);
    let (mut bits, mut ch, mut even) = (0u8, 0usize, true);
    while out.len() < len {
        let (r, v) = if even {
            (&mut lng_r, lng)
        } else {
            (&mut lat_r, lat)
        };
        let mid = (r.0 + r.1) / 2.0;
        ch <<= 1;
        if v >= mid {
            ch |= 1;
            r.0 = mid;
        } else {
            r.1 = mid;
        }
        even = !even;
        bits += 1;
        if bits == 5 {
            out.push(BASE32[ch] as char);
            bits = 0;
            ch = 0;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        // Reference values from the geohash definition (geohash.org).
        assert_eq!(encode(57.64911, 10.40744, 11), "u4pruydqqvj");
        assert_eq!(encode(42.6, -5.6, 5), "ezs42");
        assert_eq!(encode(-6.25, 106.85, 6).len(), 6);
        assert_eq!(encode(-6.25, 106.85, 6), encode(-6.2500001, 106.8500001, 6));
    }
}
