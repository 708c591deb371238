//! Inventory types: validated ids, holds, stock levels, transitions and stream events.

use std::fmt;

use qc_kit::ids::validate_id;
use serde::{Deserialize, Serialize};

use crate::error::InventoryError;

macro_rules! id_type {
    ($name:ident, $field:literal) => {
        #[doc = concat!("A validated `", $field, "` (`[A-Za-z0-9_.-]{1,64}`).")]
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn parse(value: &str) -> Result<Self, InventoryError> {
                validate_id($field, value).map_err(|e| InventoryError::Invalid(e.to_string()))?;
                Ok(Self(value.to_string()))
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

id_type!(HubId, "hub_id");
id_type!(Sku, "sku");
id_type!(CartId, "cart_id");
id_type!(UserId, "user_id");

/// A reservation id: a UUID in canonical lower-case form.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ReservationId(String);

impl ReservationId {
    pub fn parse(value: &str) -> Result<Self, InventoryError> {
        uuid::Uuid::parse_str(value)
            .map(|u| Self(u.hyphenated().to_string()))
            .map_err(|_| InventoryError::Invalid("reservation_id must be a UUID".into()))
    }
    pub fn new_random() -> Self {
        Self(uuid::Uuid::new_v4().to_string())
    }
    /// From caller-supplied UUID bits (the simulator draws them from its seeded streams).
    pub fn from_uuid(u: uuid::Uuid) -> Self {
        Self(u.hyphenated().to_string())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ReservationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An opaque client retry key (visible ASCII, 1..=128).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn parse(value: &str) -> Result<Self, InventoryError> {
        if !value.is_empty()
            && value.len() <= 128
            && value.bytes().all(|b| (0x21..0x7f).contains(&b))
        {
            Ok(Self(value.to_string()))
        } else {
            Err(InventoryError::Invalid(
                "Idempotency-Key must be 1-128 visible ASCII characters".into(),
            ))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ReservationStatus {
    Reserved,
    Confirmed,
    Released,
    Expired,
}

impl ReservationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reserved => "RESERVED",
            Self::Confirmed => "CONFIRMED",
            Self::Released => "RELEASED",
            Self::Expired => "EXPIRED",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "RESERVED" => Some(Self::Reserved),
            "CONFIRMED" => Some(Self::Confirmed),
            "RELEASED" => Some(Self::Released),
            "EXPIRED" => Some(Self::Expired),
            _ => None,
        }
    }
    pub fn is_terminal(self) -> bool {
        self != Self::Reserved
    }
}

impl fmt::Display for ReservationStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One line of a hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    pub sku: Sku,
    pub quantity: u32,
}

/// A validated request to hold stock (see [`crate::rules::validate_reserve`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReserveCommand {
    pub reservation_id: ReservationId,
    pub hub_id: HubId,
    pub cart_id: CartId,
    pub user_id: UserId,
    pub items: Vec<Item>,
    pub ttl_s: u32,
    pub idempotency_key: Option<IdempotencyKey>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReserveOutcome {
    /// A new hold; `remaining[i]` is item i's available stock after the hold.
    Reserved {
        expires_at_ms: i64,
        remaining: Vec<i64>,
    },
    /// The idempotency key was seen: this is the original hold's id.
    Replay { reservation_id: ReservationId },
}

/// Why on-hand stock was set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StockSetReason {
    AdminSet,
    CycleCount,
}

impl StockSetReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AdminSet => "ADMIN_SET",
            Self::CycleCount => "CYCLE_COUNT",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ADMIN_SET" => Some(Self::AdminSet),
            "CYCLE_COUNT" => Some(Self::CycleCount),
            _ => None,
        }
    }
}

/// Set on-hand (held units included) and the bucket layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetStockCommand {
    pub hub_id: HubId,
    pub sku: Sku,
    pub on_hand: i64,
    pub buckets: u8,
    pub reason: StockSetReason,
    pub actor: String,
}

/// Counter and held units after a stock set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StockSetResult {
    pub counter: i64,
    pub reserved: i64,
}

/// The stock read contract (01 §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct StockLevel {
    /// Σ max(0, counter) over the SKU's counter keys.
    pub available: i64,
    /// Units in active holds.
    pub reserved: i64,
    /// Σ counter (may be negative): on hand = counters + reserved.
    pub counter_sum: i64,
    pub buckets: u8,
    /// Whether any counter key exists.
    pub exists: bool,
}

impl StockLevel {
    pub fn on_hand(&self) -> i64 {
        self.counter_sum + self.reserved
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Release,
    Confirm,
    Expire,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Release => "release",
            Self::Confirm => "confirm",
            Self::Expire => "expire",
        }
    }
}

/// What a transition script did (01 §4 "transition").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransitionOutcome {
    /// The action took effect.
    Done,
    NotFound,
    /// The hold was past expires_at + grace: it expired now (or, for confirm, was expired).
    Expired,
    /// expire on a hold that is not yet due.
    NotDue,
    /// expire on a terminal hold: removed from the expiry set, nothing else.
    Skip(ReservationStatus),
    /// The action had already taken effect (or release on an expired/released hold).
    Already(ReservationStatus),
    InvalidState(ReservationStatus),
}

/// A reservation as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reservation {
    pub reservation_id: ReservationId,
    pub hub_id: HubId,
    pub cart_id: CartId,
    pub user_id: UserId,
    pub status: ReservationStatus,
    /// Aggregated per SKU, sorted by SKU.
    pub items: Vec<Item>,
    pub created_at: i64,
    pub expires_at: i64,
    pub confirmed_at: Option<i64>,
    pub released_at: Option<i64>,
    pub expired_at: Option<i64>,
}

/// An entry of a hub's event stream (01 §6), in the order Redis applied it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InventoryEvent {
    StockSet {
        reason: StockSetReason,
        at_ms: i64,
        sku: Sku,
        on_hand: i64,
        buckets: u8,
        actor: String,
    },
    Reservation {
        status: ReservationStatus,
        at_ms: i64,
        reservation_id: ReservationId,
        cart_id: CartId,
        user_id: UserId,
        created_at: i64,
        expires_at: i64,
        items: Vec<Item>,
    },
}
