//! The records Dispatch keeps (06 §2, §4): orders, drivers, assignments (offers) and the driver
//! state log, plus the validated inputs that create them. Times are epoch ms; every stored row
//! carries a `version` that adapters compare-and-set on each write.

use qc_geo::Point;
use serde::{Deserialize, Serialize};

use crate::state::DriverState;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OrderStatus {
    Pending,
    Assigned,
    Dispatched,
    Delivered,
    Failed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AssignmentStatus {
    Pending,
    Accepted,
    Rejected,
    Timeout,
    Cancelled,
}

macro_rules! text_enum {
    ($t:ty { $($v:ident = $s:literal),+ $(,)? }) => {
        impl $t {
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$v => $s),+ }
            }
            pub fn parse(s: &str) -> Option<Self> {
                match s { $($s => Some(Self::$v),)+ _ => None }
            }
        }
    };
}

text_enum!(OrderStatus {
    Pending = "PENDING",
    Assigned = "ASSIGNED",
    Dispatched = "DISPATCHED",
    Delivered = "DELIVERED",
    Failed = "FAILED",
});

text_enum!(AssignmentStatus {
    Pending = "PENDING",
    Accepted = "ACCEPTED",
    Rejected = "REJECTED",
    Timeout = "TIMEOUT",
    Cancelled = "CANCELLED",
});

impl OrderStatus {
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Delivered | Self::Failed)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    pub product_id: String,
    #[serde(default)]
    pub name: String,
    pub quantity: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Order {
    pub id: String,
    pub customer_id: String,
    pub hub_id: String,
    pub items: Vec<Item>,
    pub total: i64,
    pub priority: u8,
    pub status: OrderStatus,
    pub created_at: i64,
    pub delivery_location: Point,
    pub pickup_location: Option<Point>,
    pub assigned_driver_id: Option<String>,
    pub current_assignment_id: Option<String>,
    pub batch_id: Option<String>,
    pub reassign_count: u32,
    pub failure_reason: Option<String>,
    /// Drivers whose offer for this order closed; never offered it again.
    pub excluded: Vec<String>,
    /// In the batch pool since this instant (first matching only).
    pub pooled_at: Option<i64>,
    /// A reassignment attempt is due at this instant.
    pub reassign_due_at: Option<i64>,
    /// The order's delivery deadline: past it, an order still waiting for a rider fails
    /// (`DEADLINE_PASSED`); before it, no retry limit fails a deliverable order.
    pub deliver_by: Option<i64>,
    /// Times the order went back to the pool after its reassignment attempts ran out.
    pub repooled: u32,
    pub version: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Driver {
    pub id: String,
    pub name: String,
    pub location: Option<Point>,
    pub loc_at: Option<i64>,
    pub status: DriverState,
    pub load: u32,
    pub max_load: u32,
    pub total_deliveries: u64,
    pub last_assigned_at: Option<i64>,
    pub skipped_count: u32,
    pub current_assignment_id: Option<String>,
    pub version: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Assignment {
    pub id: String,
    pub order_id: String,
    pub driver_id: String,
    pub status: AssignmentStatus,
    pub score: f64,
    pub attempt: u32,
    pub created_at: i64,
    pub expires_at: i64,
    pub accepted_at: Option<i64>,
    pub rejected_at: Option<i64>,
    /// Set when the assignment stops being live: its offer closed, or its order was delivered
    /// or failed. At most one live assignment per order and per driver.
    pub finished_at: Option<i64>,
    pub version: i64,
}

impl Assignment {
    pub fn is_live(&self) -> bool {
        self.finished_at.is_none()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct DriverEvent {
    pub driver_id: String,
    /// None on registration.
    pub from_state: Option<DriverState>,
    pub to_state: DriverState,
    pub at: i64,
    pub reason: Option<String>,
}

/// A validated order to create (06 §2 `POST /dispatch/order`, or a `dispatch_queue` row).
#[derive(Debug, Clone, PartialEq)]
pub struct NewOrder {
    pub id: String,
    pub customer_id: String,
    pub hub_id: String,
    pub items: Vec<Item>,
    pub total: i64,
    pub priority: u8,
    pub delivery_location: Point,
    pub pickup_location: Option<Point>,
    /// The delivery deadline (epoch ms); None takes the policy's default from creation.
    pub deliver_by: Option<i64>,
}

/// A validated driver registration.
#[derive(Debug, Clone, PartialEq)]
pub struct NewDriver {
    pub id: String,
    pub name: String,
    pub location: Option<Point>,
    pub max_load: u32,
}

/// Why input was refused, naming the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

/// Items per order accepted (a cap on request size, far above any real basket).
pub const MAX_ITEMS: usize = 500;

pub fn check_id(field: &'static str, v: &str) -> Result<(), Invalid> {
    qc_kit::validate_id(field, v).map_err(|e| Invalid(e.to_string()))
}

/// 06 §2: finite, in range, and not exactly (0, 0) (a single 0 is valid).
pub fn check_location(field: &str, lat: f64, lng: f64) -> Result<Point, Invalid> {
    if lat == 0.0 && lng == 0.0 {
        return Err(Invalid(format!("{field} (0, 0) is not a real location")));
    }
    Point::new(lat, lng).map_err(|e| Invalid(format!("{field}: {e}")))
}

/// Raw order fields as they arrive (HTTP body or queue payload).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderInput {
    pub order_id: Option<String>,
    pub customer_id: String,
    pub hub_id: String,
    pub items: Vec<Item>,
    pub delivery_location: LatLng,
    pub pickup_location: Option<LatLng>,
    #[serde(default)]
    pub total: i64,
    pub priority: Option<i64>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LatLng {
    pub lat: f64,
    pub lng: f64,
}

impl OrderInput {
    /// Validates every field; a missing `order_id` becomes `fallback_id`. Priority is clamped
    /// into 1..=9.
    pub fn validate(self, fallback_id: impl FnOnce() -> String) -> Result<NewOrder, Invalid> {
        let id = self.order_id.unwrap_or_else(fallback_id);
        check_id("order_id", &id)?;
        check_id("customer_id", &self.customer_id)?;
        check_id("hub_id", &self.hub_id)?;
        if self.items.is_empty() {
            return Err(Invalid("items must hold at least one item".into()));
        }
        if self.items.len() > MAX_ITEMS {
            return Err(Invalid(format!("items holds more than {MAX_ITEMS} lines")));
        }
        for (i, it) in self.items.iter().enumerate() {
            if it.product_id.is_empty() || it.product_id.len() > 128 {
                return Err(Invalid(format!(
                    "items[{i}].product_id must be 1-128 characters"
                )));
            }
            if it.name.len() > 256 {
                return Err(Invalid(format!("items[{i}].name is longer than 256 bytes")));
            }
            if it.quantity < 1 {
                return Err(Invalid(format!("items[{i}].quantity must be at least 1")));
            }
        }
        if self.total < 0 {
            return Err(Invalid("total must be >= 0 (whole rupiah)".into()));
        }
        let d = self.delivery_location;
        let delivery_location = check_location("delivery_location", d.lat, d.lng)?;
        let pickup_location = match self.pickup_location {
            Some(p) => Some(check_location("pickup_location", p.lat, p.lng)?),
            None => None,
        };
        Ok(NewOrder {
            id,
            customer_id: self.customer_id,
            hub_id: self.hub_id,
            items: self.items,
            total: self.total,
            priority: self.priority.unwrap_or(1).clamp(1, 9) as u8,
            delivery_location,
            pickup_location,
            deliver_by: None,
        })
    }
}

impl NewOrder {
    /// Σ quantity.
    pub fn item_count(&self) -> u64 {
        self.items.iter().map(|i| u64::from(i.quantity)).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(json: &str) -> Result<NewOrder, String> {
        let raw: OrderInput = serde_json::from_str(json).map_err(|e| e.to_string())?;
        raw.validate(|| "generated".into()).map_err(|e| e.0)
    }

    #[test]
    fn orders_validate_every_field() {
        let ok = r#"{"customer_id":"c1","hub_id":"h1","items":[{"product_id":"p","quantity":2}],
                     "delivery_location":{"lat":-6.2,"lng":0},"priority":42}"#;
        let o = input(ok).unwrap();
        assert_eq!((o.id.as_str(), o.priority, o.total), ("generated", 9, 0));
        for (bad, needle) in [
            (ok.replace("\"lng\":0", "\"lng\":181"), "delivery_location"),
            (ok.replace("-6.2", "0"), "(0, 0)"),
            (ok.replace("\"quantity\":2", "\"quantity\":0"), "quantity"),
            (ok.replace("\"h1\"", "\"h 1\""), "hub_id"),
            (
                ok.replace("[{\"product_id\":\"p\",\"quantity\":2}]", "[]"),
                "items",
            ),
            (ok.replace("\"priority\":42", "\"total\":-1"), "total"),
        ] {
            let e = input(&bad).unwrap_err();
            assert!(e.contains(needle), "{bad}: {e}");
        }
        assert_eq!(input(&ok.replace("42", "-3")).unwrap().priority, 1);
    }

    #[test]
    fn text_forms_round_trip() {
        for s in ["PENDING", "ASSIGNED", "DISPATCHED", "DELIVERED", "FAILED"] {
            assert_eq!(OrderStatus::parse(s).unwrap().as_str(), s);
        }
        for s in ["PENDING", "ACCEPTED", "REJECTED", "TIMEOUT", "CANCELLED"] {
            assert_eq!(AssignmentStatus::parse(s).unwrap().as_str(), s);
        }
        assert_eq!(OrderStatus::parse("pending"), None);
    }
}
