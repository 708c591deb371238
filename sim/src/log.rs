//! The event log: one row per domain event, columnar, written as `events.parquet`, with a
//! running hash over a canonical encoding (the summary carries it).

use std::path::Path;

use polars::prelude::*;

use crate::engine::SimTime;

/// Kinds of rows (the `kind` column).
pub mod kind {
    pub const ORDER_PLACED: &str = "order_placed";
    pub const UNSERVICEABLE: &str = "unserviceable";
    pub const STOCKOUT: &str = "stockout";
    pub const ABANDONED: &str = "abandoned";
    pub const PAYMENT_FAILED: &str = "payment_failed";
    pub const HOLD_EXPIRED_AT_PAYMENT: &str = "hold_expired_at_payment";
    pub const PAID: &str = "paid";
    pub const PICK_STARTED: &str = "pick_started";
    pub const HANDED_OVER: &str = "handed_over";
    pub const RESTOCK: &str = "restock";
    pub const HOLDS_EXPIRED: &str = "holds_expired";
    pub const HUB_SAMPLE: &str = "hub_sample";
    pub const DELIVERED: &str = "delivered";
    pub const DISPATCH_FAILED: &str = "dispatch_failed";
    pub const RIDER_SAMPLE: &str = "rider_sample";
}

/// Columns: `t_ms`, `kind`, `order_id` (-1 if none), `hub` ("" if none), `sku` ("" if none),
/// `qty`, `value_ms` (a duration or a second quantity; meaning by kind, see scenarios/README.md).
#[derive(Debug, Default)]
pub struct EventLog {
    t_ms: Vec<i64>,
    kind: Vec<&'static str>,
    order_id: Vec<i64>,
    hub: Vec<String>,
    sku: Vec<String>,
    qty: Vec<i64>,
    value_ms: Vec<i64>,
    hash: u64,
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

fn fnv(mut h: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        h = (h ^ u64::from(*b)).wrapping_mul(FNV_PRIME);
    }
    h
}

impl EventLog {
    pub fn new() -> Self {
        Self {
            hash: FNV_OFFSET,
            ..Self::default()
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub fn push(
        &mut self,
        t: SimTime,
        kind: &'static str,
        order: Option<u64>,
        hub: &str,
        sku: &str,
        qty: i64,
        value_ms: i64,
    ) {
        let order = order.map_or(-1, |o| o as i64);
        let mut h = self.hash;
        h = fnv(h, &t.to_le_bytes());
        h = fnv(h, kind.as_bytes());
        h = fnv(h, &order.to_le_bytes());
        h = fnv(h, hub.as_bytes());
        h = fnv(h, &[0]);
        h = fnv(h, sku.as_bytes());
        h = fnv(h, &[0]);
        h = fnv(h, &qty.to_le_bytes());
        h = fnv(h, &value_ms.to_le_bytes());
        self.hash = h;
        self.t_ms.push(t);
        self.kind.push(kind);
        self.order_id.push(order);
        self.hub.push(hub.to_string());
        self.sku.push(sku.to_string());
        self.qty.push(qty);
        self.value_ms.push(value_ms);
    }

    pub fn len(&self) -> usize {
        self.t_ms.len()
    }

    pub fn is_empty(&self) -> bool {
        self.t_ms.is_empty()
    }

    /// Hex of the running hash over every row in order.
    pub fn hash_hex(&self) -> String {
        format!("{:016x}", self.hash)
    }

    pub fn to_frame(&self) -> PolarsResult<DataFrame> {
        DataFrame::new(
            self.t_ms.len(),
            vec![
                Column::new("t_ms".into(), &self.t_ms),
                Column::new("kind".into(), &self.kind),
                Column::new("order_id".into(), &self.order_id),
                Column::new("hub".into(), &self.hub),
                Column::new("sku".into(), &self.sku),
                Column::new("qty".into(), &self.qty),
                Column::new("value_ms".into(), &self.value_ms),
            ],
        )
    }

    pub fn write_parquet(&self, path: &Path) -> PolarsResult<()> {
        let mut df = self.to_frame()?;
        let file = std::fs::File::create(path)?;
        ParquetWriter::new(file).finish(&mut df)?;
        Ok(())
    }
}
