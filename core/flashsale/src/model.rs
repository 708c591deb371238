//! Flash-sale types (03): a sale's configuration, reservations and their states, what the
//! store answers, the waiting room's view of a user, and input checks.

use serde::{Deserialize, Serialize};

/// Limits of 03's init-product.
pub const MAX_BUCKETS: u32 = 64;
pub const MAX_QTY: u32 = 10;
pub const MIN_TTL_S: u32 = 30;
pub const MAX_TTL_S: u32 = 3600;
/// An admission pass's life, the admission job's batch and period, the waiting room's cleanup
/// age and a slot lease (03 "Background jobs", "Lua scripts").
pub const PASS_MS: i64 = 60_000;
pub const ADMIT_BATCH: u32 = 10;
pub const ADMIT_EVERY_MS: i64 = 500;
pub const WAITING_MAX_AGE_MS: i64 = 600_000;
pub const SLOT_LEASE_MS: i64 = 900_000;
/// The reaper expires a reservation this long after its `expires_at` (03: 15 s), every 10 s.
pub const REAP_GRACE_MS: i64 = 15_000;
pub const REAP_EVERY_MS: i64 = 10_000;
/// Arrivals before opening join the randomised pre-queue: each gets a uniformly random score in
/// the minute before opening, so all of them come before anyone who arrives after opening, in
/// random order (and the 10-minute cleanup reaches them no sooner than 9 minutes after opening).
pub const PREQUEUE_SPAN_MS: i64 = 60_000;

/// `POST /admin/flash-sale/init-product`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SaleConfig {
    pub product_id: String,
    pub total_stock: i64,
    pub bucket_count: u32,
    pub max_slots: u32,
    /// Units a user may hold (reserved + confirmed); 0 = no limit.
    pub per_user_limit: u32,
    pub reservation_ttl_s: u32,
    /// When the sale opens (ms); arrivals before it join the randomised pre-queue.
    pub opens_at_ms: i64,
}

impl SaleConfig {
    /// 03's defaults for a product with `total_stock` units opening at `opens_at_ms`.
    pub fn new(product_id: &str, total_stock: i64, opens_at_ms: i64) -> Self {
        Self {
            product_id: product_id.into(),
            total_stock,
            bucket_count: 10,
            max_slots: 1000,
            per_user_limit: 0,
            reservation_ttl_s: 300,
            opens_at_ms,
        }
    }

    /// The first problem with this configuration, as (field, rule).
    pub fn problem(&self) -> Option<(&'static str, &'static str)> {
        if !valid_id(&self.product_id) {
            return Some(("product_id", "1–64 characters of [A-Za-z0-9_.-]"));
        }
        if self.total_stock < 0 || self.total_stock > 1_000_000_000 {
            return Some(("total_stock", "0..1,000,000,000"));
        }
        if !(1..=MAX_BUCKETS).contains(&self.bucket_count) {
            return Some(("bucket_count", "1..64"));
        }
        if self.max_slots == 0 {
            return Some(("max_slots", "at least 1"));
        }
        if !(MIN_TTL_S..=MAX_TTL_S).contains(&self.reservation_ttl_s) {
            return Some(("reservation_ttl_seconds", "30..3600"));
        }
        if self.opens_at_ms < 0 {
            return Some(("opens_at", "epoch ms ≥ 0"));
        }
        None
    }
}

/// Ids are `[A-Za-z0-9_.-]{1,64}` (no `:` or `|`, so they never break a key or a token).
pub fn valid_id(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// A device fingerprint: 1..128 printable ASCII characters other than `|`.
pub fn valid_device(s: &str) -> bool {
    (1..=128).contains(&s.len()) && s.bytes().all(|b| (0x21..0x7f).contains(&b) && b != b'|')
}

/// One reservation request, as the reserve script takes it.
#[derive(Debug, Clone, PartialEq)]
pub struct ReserveCmd {
    pub product_id: String,
    pub user_id: String,
    pub device: String,
    pub quantity: u32,
    pub reservation_id: String,
    pub order_id: String,
    pub now_ms: i64,
}

/// What a reservation attempt got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reserve {
    Reserved {
        remaining: i64,
        expires_at_ms: i64,
    },
    /// Sold out, not open yet, or others are waiting and the caller holds no pass: wait.
    Queue,
    /// The user would hold more than the per-user limit.
    LimitExceeded,
    NotFound,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Reserved,
    Confirmed,
    Released,
    Expired,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Reserved => "reserved",
            Status::Confirmed => "confirmed",
            Status::Released => "released",
            Status::Expired => "expired",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "reserved" => Status::Reserved,
            "confirmed" => Status::Confirmed,
            "released" => Status::Released,
            "expired" => Status::Expired,
            _ => return None,
        })
    }
}

/// The answer of a confirm, release or expiry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    /// Done now (confirm: the order to write).
    Done {
        product_id: String,
        user_id: String,
        quantity: u32,
        order_id: String,
    },
    /// Already in the target state (a repeat).
    Already {
        order_id: String,
    },
    NotFound,
    NotOwner,
    /// Confirm of a released, expired or overdue reservation; release of a confirmed one.
    Conflict(Status),
}

/// A user's place in the waiting room.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueueView {
    pub status: &'static str,
    /// 1-based while queued, else 0.
    pub position: u64,
    pub total_in_queue: u64,
}

/// A sale's counters (`GET /admin/flash-sale/stock`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StockView {
    pub product_id: String,
    pub initial_stock: i64,
    pub remaining: i64,
    pub reserved_qty: i64,
    pub confirmed_qty: i64,
    pub queue_length: u64,
    pub epoch: i64,
    pub opens_at_ms: i64,
}

/// A reservation as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reservation {
    pub id: String,
    pub product_id: String,
    pub user_id: String,
    pub device: String,
    pub quantity: u32,
    pub status: Status,
    pub expires_at_ms: i64,
    pub order_id: String,
}

/// FNV-1a 32 of the device fingerprint picks the first bucket a reservation tries (03 R).
pub fn primary_bucket(device: &str, buckets: u32) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in device.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h % buckets.max(1)
}

/// Units per bucket at init: `total div n`, the first `total mod n` one more.
pub fn split(total: i64, n: u32) -> Vec<i64> {
    let n = i64::from(n.max(1));
    (0..n)
        .map(|i| total / n + i64::from(i < total % n))
        .collect()
}
