//! The event log: one row per domain event, columnar, written as `events.parquet`, with a
//! running hash over a canonical encoding (the summary carries it).

use std::path::Path;

use polars::prelude::*;

use crate::engine::SimTime;
use crate::rng::{fnv, FNV_OFFSET};

/// What a row records (the `kind` column holds its name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    OrderPlaced,
    Unserviceable,
    Stockout,
    Abandoned,
    PaymentFailed,
    HoldExpiredAtPayment,
    Paid,
    PickStarted,
    HandedOver,
    Restock,
    HoldsExpired,
    HubSample,
    Delivered,
    DispatchFailed,
    RiderSample,
    NothingFound,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::OrderPlaced => "order_placed",
            Kind::Unserviceable => "unserviceable",
            Kind::Stockout => "stockout",
            Kind::Abandoned => "abandoned",
            Kind::PaymentFailed => "payment_failed",
            Kind::HoldExpiredAtPayment => "hold_expired_at_payment",
            Kind::Paid => "paid",
            Kind::PickStarted => "pick_started",
            Kind::HandedOver => "handed_over",
            Kind::Restock => "restock",
            Kind::HoldsExpired => "holds_expired",
            Kind::HubSample => "hub_sample",
            Kind::Delivered => "delivered",
            Kind::DispatchFailed => "dispatch_failed",
            Kind::RiderSample => "rider_sample",
            Kind::NothingFound => "nothing_found",
        }
    }
}

/// The kinds by their row names, as the world writes them.
pub mod kind {
    use super::Kind;
    pub const ORDER_PLACED: Kind = Kind::OrderPlaced;
    pub const UNSERVICEABLE: Kind = Kind::Unserviceable;
    pub const STOCKOUT: Kind = Kind::Stockout;
    pub const ABANDONED: Kind = Kind::Abandoned;
    pub const PAYMENT_FAILED: Kind = Kind::PaymentFailed;
    pub const HOLD_EXPIRED_AT_PAYMENT: Kind = Kind::HoldExpiredAtPayment;
    pub const PAID: Kind = Kind::Paid;
    pub const PICK_STARTED: Kind = Kind::PickStarted;
    pub const HANDED_OVER: Kind = Kind::HandedOver;
    pub const RESTOCK: Kind = Kind::Restock;
    pub const HOLDS_EXPIRED: Kind = Kind::HoldsExpired;
    pub const HUB_SAMPLE: Kind = Kind::HubSample;
    pub const DELIVERED: Kind = Kind::Delivered;
    pub const DISPATCH_FAILED: Kind = Kind::DispatchFailed;
    pub const RIDER_SAMPLE: Kind = Kind::RiderSample;
    pub const NOTHING_FOUND: Kind = Kind::NothingFound;
}

/// Columns: `t_ms`, `kind`, `order_id` (-1 if none), `hub` ("" if none), `sku` ("" if none),
/// `qty`, `value_ms` (a duration or a second quantity; meaning by kind, see scenarios/README.md).
#[derive(Debug, Default)]
pub struct EventLog {
    t_ms: Vec<i64>,
    kind: Vec<Kind>,
    order_id: Vec<i64>,
    /// Hub and SKU names, interned: codes into `strings` (a run names few of them).
    hub: Vec<u32>,
    sku: Vec<u32>,
    strings: Vec<String>,
    codes: std::collections::HashMap<String, u32>,
    qty: Vec<i64>,
    value_ms: Vec<i64>,
    hash: u64,
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
        kind: Kind,
        order: Option<u64>,
        hub: &str,
        sku: &str,
        qty: i64,
        value_ms: i64,
    ) {
        let order = order.map_or(-1, |o| o as i64);
        let mut h = self.hash;
        h = fnv(h, &t.to_le_bytes());
        h = fnv(h, kind.as_str().as_bytes());
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
        let (hub, sku) = (self.code(hub), self.code(sku));
        self.hub.push(hub);
        self.sku.push(sku);
        self.qty.push(qty);
        self.value_ms.push(value_ms);
    }

    fn code(&mut self, s: &str) -> u32 {
        // A run names a few hubs and many SKUs; hubs come first and most rows name one.
        if let Some(c) = self.strings.iter().take(64).position(|x| x == s) {
            return c as u32;
        }
        if let Some(c) = self.codes.get(s) {
            return *c;
        }
        let c = self.strings.len() as u32;
        self.strings.push(s.to_string());
        self.codes.insert(s.to_string(), c);
        c
    }

    fn names(&self, codes: &[u32]) -> Vec<&str> {
        codes
            .iter()
            .map(|c| self.strings[*c as usize].as_str())
            .collect()
    }

    pub fn len(&self) -> usize {
        self.t_ms.len()
    }

    pub fn is_empty(&self) -> bool {
        self.t_ms.is_empty()
    }

    /// (order, time) of every failure row (`dispatch_failed`: lost orders, with the reason in
    /// `sku`).
    pub fn failures(&self) -> Vec<(u64, SimTime)> {
        (0..self.len())
            .filter(|i| self.kind[*i] == kind::DISPATCH_FAILED && self.order_id[*i] >= 0)
            .map(|i| (self.order_id[i] as u64, self.t_ms[i]))
            .collect()
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
                Column::new(
                    "kind".into(),
                    self.kind.iter().map(|k| k.as_str()).collect::<Vec<_>>(),
                ),
                Column::new("order_id".into(), &self.order_id),
                Column::new("hub".into(), self.names(&self.hub)),
                Column::new("sku".into(), self.names(&self.sku)),
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
