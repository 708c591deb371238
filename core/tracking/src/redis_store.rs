//! The Redis adapter of [`TrackingStore`] (09 "Events and Redis"). Per order, under the tag
//! `{<order_id>}`: `seq` (INCR counter), `pos` (latest position), `trail` (zset by seq, newest
//! 500) and `status`; events are published on `tracking:order:<order_id>`. A position is one
//! script (`lua/tracking_position.lua`: the closed check, INCR, SET, ZADD, trim, PEXPIREs and
//! PUBLISH in one round trip), and so is a status change (`lua/tracking_status.lua`), so neither
//! is taken after a terminal status.

use qc_kit::redis_kit::{bounded, BackendError, KeyPrefix};
use qc_kit::scripts::{TRACKING_POSITION, TRACKING_STATUS};
use redis::aio::ConnectionManager;

use crate::model::{OrderStatus, PositionEvent, StatusEvent};
use crate::store::{StatusChange, TrackingStore, TRAIL_MAX};

/// Retention (GC only): the latest position 2 h, trail, seq and status 24 h.
pub const POS_TTL_MS: i64 = 7_200_000;
pub const TRAIL_TTL_MS: i64 = 86_400_000;

#[derive(Debug, Clone)]
pub struct RedisTrackingStore {
    conn: ConnectionManager,
    prefix: KeyPrefix,
    timeout_ms: u64,
    trail_max: usize,
}

fn unreadable(what: &str, e: impl std::fmt::Display) -> BackendError {
    BackendError::Redis(format!("unreadable {what}: {e}").into())
}

impl RedisTrackingStore {
    pub fn new(conn: ConnectionManager, prefix: KeyPrefix, timeout_ms: u64) -> Self {
        Self {
            conn,
            prefix,
            timeout_ms,
            trail_max: TRAIL_MAX,
        }
    }

    /// `TRACKING_TRAIL_MAX`: positions kept per order (default [`TRAIL_MAX`]).
    pub fn with_trail_max(mut self, trail_max: usize) -> Self {
        self.trail_max = trail_max.max(1);
        self
    }

    fn key(&self, order_id: &str, what: &str) -> String {
        self.prefix.key(&format!("tracking:{{{order_id}}}:{what}"))
    }

    /// The pub/sub channel of an order's events (what SSE instances subscribe to).
    pub fn channel(&self, order_id: &str) -> String {
        self.prefix.key(&format!("tracking:order:{order_id}"))
    }

    pub fn connection(&self) -> ConnectionManager {
        self.conn.clone()
    }
}

impl TrackingStore for RedisTrackingStore {
    async fn status(&self, order_id: &str) -> Result<Option<StatusEvent>, BackendError> {
        let v: Option<String> = bounded(
            self.timeout_ms,
            redis::cmd("GET")
                .arg(self.key(order_id, "status"))
                .query_async(&mut self.conn.clone()),
        )
        .await?;
        v.map(|j| serde_json::from_str(&j).map_err(|e| unreadable("status", e)))
            .transpose()
    }

    async fn append_position(
        &self,
        mut event: PositionEvent,
    ) -> Result<Option<PositionEvent>, BackendError> {
        let order_id = event.order_id.clone();
        let json = serde_json::to_string(&event).expect("an event serialises");
        // The script writes the seq it takes between the head and the rest of the event.
        let rest = json
            .strip_prefix(&format!("{{\"type\":\"position\",\"seq\":{}", event.seq))
            .expect("a position event starts with its type and seq");
        let mut inv = TRACKING_POSITION.prepare_invoke();
        inv.key(self.key(&order_id, "status"))
            .key(self.key(&order_id, "seq"))
            .key(self.key(&order_id, "pos"))
            .key(self.key(&order_id, "trail"))
            .arg(rest)
            .arg(self.channel(&order_id))
            .arg(POS_TTL_MS)
            .arg(TRAIL_TTL_MS)
            .arg(self.trail_max);
        let seq: i64 = bounded(self.timeout_ms, inv.invoke_async(&mut self.conn.clone())).await?;
        if seq == 0 {
            return Ok(None);
        }
        event.seq = seq;
        Ok(Some(event))
    }

    async fn set_status(
        &self,
        order_id: &str,
        status: OrderStatus,
        driver_id: Option<&str>,
        timestamp: &str,
    ) -> Result<StatusChange, BackendError> {
        let mut inv = TRACKING_STATUS.prepare_invoke();
        inv.key(self.key(order_id, "status"))
            .key(self.key(order_id, "seq"))
            .arg(order_id)
            .arg(status.as_str())
            .arg(driver_id.unwrap_or(""))
            .arg(timestamp)
            .arg(self.channel(order_id))
            .arg(TRAIL_TTL_MS);
        let (stored, json): (i64, String) =
            bounded(self.timeout_ms, inv.invoke_async(&mut self.conn.clone())).await?;
        let event: StatusEvent =
            serde_json::from_str(&json).map_err(|e| unreadable("status", e))?;
        Ok(if stored == 1 {
            StatusChange::Done(event)
        } else {
            StatusChange::Closed(event)
        })
    }

    async fn position(&self, order_id: &str) -> Result<Option<PositionEvent>, BackendError> {
        let v: Option<String> = bounded(
            self.timeout_ms,
            redis::cmd("GET")
                .arg(self.key(order_id, "pos"))
                .query_async(&mut self.conn.clone()),
        )
        .await?;
        v.map(|j| serde_json::from_str(&j).map_err(|e| unreadable("position", e)))
            .transpose()
    }

    async fn history(
        &self,
        order_id: &str,
        after_seq: i64,
        limit: usize,
    ) -> Result<Vec<PositionEvent>, BackendError> {
        let v: Vec<String> = bounded(
            self.timeout_ms,
            redis::cmd("ZRANGEBYSCORE")
                .arg(self.key(order_id, "trail"))
                .arg(format!("({after_seq}"))
                .arg("+inf")
                .arg("LIMIT")
                .arg(0)
                .arg(limit)
                .query_async(&mut self.conn.clone()),
        )
        .await?;
        v.iter()
            .map(|j| serde_json::from_str(j).map_err(|e| unreadable("trail", e)))
            .collect()
    }
}
