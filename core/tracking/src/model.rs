//! What Tracking reads and writes (09): a driver's GPS fix as sent over the WebSocket, the
//! position and status events it stores and publishes, and the reasons a fix is rejected.

use serde::{Deserialize, Serialize};
use std::time::{Duration, UNIX_EPOCH};

/// `order_id`, `driver_id`, `user_id`: `^[A-Za-z0-9_.-]{1,128}$` (safe in hash tags and token
/// messages).
pub fn valid_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// One fix as the device reported it. `timestamp_ms` is the device clock (epoch ms).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fix {
    pub lat: f64,
    pub lng: f64,
    /// Metres, 1-sigma.
    pub accuracy: f64,
    pub timestamp_ms: i64,
    /// m/s, if the device sent it.
    pub speed: Option<f64>,
    /// Degrees, if the device sent it.
    pub bearing: Option<f64>,
}

/// Why a fix was not accepted (09 "Validation", plus the filter's innovation gate). Rejections
/// are the client's fault: it must not resend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reject {
    InvalidMessage,
    IdentityMismatch,
    OrderClosed,
    OutOfBounds,
    InvalidSpeed,
    InvalidBearing,
    InvalidAccuracy,
    Stale,
    FutureTimestamp,
    OutOfOrder,
    Throttled,
    Duplicate,
    Jump,
    /// The filter's innovation gate: the fix is further from the predicted position than its
    /// uncertainty allows (Mahalanobis distance over the threshold).
    Outlier,
}

impl Reject {
    pub const ALL: [Reject; 14] = [
        Reject::InvalidMessage,
        Reject::IdentityMismatch,
        Reject::OrderClosed,
        Reject::OutOfBounds,
        Reject::InvalidSpeed,
        Reject::InvalidBearing,
        Reject::InvalidAccuracy,
        Reject::Stale,
        Reject::FutureTimestamp,
        Reject::OutOfOrder,
        Reject::Throttled,
        Reject::Duplicate,
        Reject::Jump,
        Reject::Outlier,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reject::InvalidMessage => "invalid_message",
            Reject::IdentityMismatch => "identity_mismatch",
            Reject::OrderClosed => "order_closed",
            Reject::OutOfBounds => "out_of_bounds",
            Reject::InvalidSpeed => "invalid_speed",
            Reject::InvalidBearing => "invalid_bearing",
            Reject::InvalidAccuracy => "invalid_accuracy",
            Reject::Stale => "stale",
            Reject::FutureTimestamp => "future_timestamp",
            Reject::OutOfOrder => "out_of_order",
            Reject::Throttled => "throttled",
            Reject::Duplicate => "duplicate",
            Reject::Jump => "jump",
            Reject::Outlier => "outlier",
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            Reject::InvalidMessage => "the frame is not a valid location message",
            Reject::IdentityMismatch => "driver_id or order_id differs from the connection's",
            Reject::OrderClosed => "the order is delivered or cancelled",
            Reject::OutOfBounds => "coordinates out of range or outside the service bounds",
            Reject::InvalidSpeed => "speed out of range",
            Reject::InvalidBearing => "bearing must be within [0, 360]",
            Reject::InvalidAccuracy => "accuracy out of range",
            Reject::Stale => "timestamp too old",
            Reject::FutureTimestamp => "timestamp in the future",
            Reject::OutOfOrder => "timestamp not after the last accepted fix",
            Reject::Throttled => "fixes arrive faster than the minimum interval",
            Reject::Duplicate => "no movement since the last accepted fix",
            Reject::Jump => "implausible speed since the last accepted fix",
            Reject::Outlier => "too far from the filtered track for its accuracy",
        }
    }
}

/// The order's tracking status (09 `POST /tracking/status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    Preparing,
    DriverAssigned,
    InTransit,
    Arrived,
    Delivered,
    Cancelled,
}

impl OrderStatus {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "preparing" => Self::Preparing,
            "driver_assigned" => Self::DriverAssigned,
            "in_transit" => Self::InTransit,
            "arrived" => Self::Arrived,
            "delivered" => Self::Delivered,
            "cancelled" => Self::Cancelled,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Preparing => "preparing",
            Self::DriverAssigned => "driver_assigned",
            Self::InTransit => "in_transit",
            Self::Arrived => "arrived",
            Self::Delivered => "delivered",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Delivered | Self::Cancelled)
    }
}

/// The stored, published and streamed position event (09 "Events and Redis").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PositionEvent {
    #[serde(rename = "type")]
    pub kind: String,
    pub seq: i64,
    pub order_id: String,
    pub driver_id: String,
    pub lat: f64,
    pub lng: f64,
    pub speed: f64,
    pub bearing: f64,
    pub accuracy: f64,
    pub raw_lat: f64,
    pub raw_lng: f64,
    pub timestamp: String,
    pub received_at: String,
}

/// The status event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusEvent {
    #[serde(rename = "type")]
    pub kind: String,
    pub seq: i64,
    pub order_id: String,
    pub status: OrderStatus,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub driver_id: Option<String>,
    pub timestamp: String,
}

/// RFC 3339 UTC with milliseconds (`2026-06-22T10:30:05.000Z`).
pub fn rfc3339_ms(epoch_ms: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(epoch_ms.max(0) as u64);
    humantime::format_rfc3339_millis(t).to_string()
}

/// Parses an RFC 3339 timestamp into epoch ms; `None` if malformed or before 1970.
pub fn parse_rfc3339_ms(s: &str) -> Option<i64> {
    let t = humantime::parse_rfc3339_weak(s).ok()?;
    let ms = t.duration_since(UNIX_EPOCH).ok()?.as_millis();
    i64::try_from(ms).ok()
}

/// A WebSocket text frame, parsed: the fix, and the ids it names (which must equal the
/// connection's). Unknown fields are ignored; a missing or mistyped field is `invalid_message`.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    pub fix: Fix,
    pub driver_id: Option<String>,
    pub order_id: Option<String>,
    /// The timestamp as sent (echoed in the reply).
    pub timestamp: String,
}

impl Frame {
    pub fn parse(text: &str) -> Result<Frame, (Reject, Option<String>)> {
        #[derive(Deserialize)]
        struct Raw {
            lat: f64,
            lng: f64,
            accuracy: f64,
            timestamp: String,
            #[serde(default)]
            speed: Option<f64>,
            #[serde(default)]
            bearing: Option<f64>,
            #[serde(default)]
            driver_id: Option<String>,
            #[serde(default)]
            order_id: Option<String>,
        }
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|_| (Reject::InvalidMessage, None))?;
        let echoed = value
            .get("timestamp")
            .and_then(|t| t.as_str())
            .map(str::to_string);
        if !value.is_object() {
            return Err((Reject::InvalidMessage, None));
        }
        let raw: Raw =
            serde_json::from_value(value).map_err(|_| (Reject::InvalidMessage, echoed.clone()))?;
        let timestamp_ms =
            parse_rfc3339_ms(&raw.timestamp).ok_or((Reject::InvalidMessage, echoed))?;
        Ok(Frame {
            fix: Fix {
                lat: raw.lat,
                lng: raw.lng,
                accuracy: raw.accuracy,
                timestamp_ms,
                speed: raw.speed,
                bearing: raw.bearing,
            },
            driver_id: raw.driver_id,
            order_id: raw.order_id,
            timestamp: raw.timestamp,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_follow_the_pattern() {
        assert!(valid_id("ord_xyz-1.2"));
        assert!(!valid_id(""));
        assert!(!valid_id("a{b}"));
        assert!(!valid_id(&"a".repeat(129)));
    }

    #[test]
    fn frames_parse_or_are_invalid_messages() {
        let f = Frame::parse(
            r#"{"lat":-6.2088,"lng":106.8456,"speed":8.5,"bearing":90,"accuracy":12,"timestamp":"2026-06-22T10:30:00Z","extra":1}"#,
        )
        .unwrap();
        assert_eq!(f.fix.speed, Some(8.5));
        assert_eq!(f.fix.timestamp_ms, 1_782_124_200_000);
        assert_eq!(rfc3339_ms(f.fix.timestamp_ms), "2026-06-22T10:30:00.000Z");
        for bad in [
            "not json",
            "[1,2]",
            r#"{"lat":"x","lng":1,"accuracy":1,"timestamp":"2026-06-22T10:30:00Z"}"#,
            r#"{"lng":1,"accuracy":1,"timestamp":"2026-06-22T10:30:00Z"}"#,
        ] {
            assert_eq!(
                Frame::parse(bad).unwrap_err().0,
                Reject::InvalidMessage,
                "{bad}"
            );
        }
        let (r, ts) =
            Frame::parse(r#"{"lat":1,"lng":1,"accuracy":1,"timestamp":"yesterday"}"#).unwrap_err();
        assert_eq!(
            (r, ts.as_deref()),
            (Reject::InvalidMessage, Some("yesterday"))
        );
    }
}
