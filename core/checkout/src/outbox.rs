//! The outbox relay (04 "Background jobs"): events written with their order are claimed when
//! due, published to the event stream, and marked sent; a failed publish is retried after
//! min(2^attempts, 300) s ±20 % and the event is dead after its 10th failure. At least once:
//! consumers dedupe on `event_id` ([`StreamConsumer`]). [`relay_once`] is the job function the service's loop and the
//! simulator both call.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Mutex;

use qc_kit::redis_kit::BackendError;
use serde_json::Value;

/// Failures after which an event is dead.
pub const MAX_ATTEMPTS: i32 = 10;
/// How long a claim keeps other relays off an event.
pub const CLAIM_MS: i64 = 30_000;

#[derive(Debug, Clone, PartialEq)]
pub struct OutboxEvent {
    pub event_id: String,
    pub aggregate_id: String,
    pub event_type: String,
    pub payload: Value,
    pub created_at_ms: i64,
    pub attempts: i32,
}

/// The outbox table's side of the relay.
pub trait Outbox: Send + Sync {
    /// Up to `limit` pending events due at `now_ms`, oldest first, claimed (their next attempt
    /// pushed [`CLAIM_MS`] ahead, so concurrent relays take different events).
    fn claim_due(
        &self,
        now_ms: i64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<OutboxEvent>, BackendError>> + Send;
    fn mark_sent(
        &self,
        event_id: &str,
        now_ms: i64,
    ) -> impl Future<Output = Result<(), BackendError>> + Send;
    /// Records a failure: retry at `next_ms`, or dead.
    fn mark_failed(
        &self,
        event_id: &str,
        attempts: i32,
        next_ms: i64,
        dead: bool,
        error: &str,
    ) -> impl Future<Output = Result<(), BackendError>> + Send;
}

/// Where events go (the `checkout:events` stream).
pub trait EventSink: Send + Sync {
    fn publish(&self, e: &OutboxEvent) -> impl Future<Output = Result<(), String>> + Send;
}

/// What one pass did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RelayPass {
    pub sent: usize,
    pub failed: usize,
    pub dead: usize,
}

/// The retry delay after `attempts` failures: min(2^attempts, 300) s, ±20 % by a hash of the
/// event id (deterministic, and different events spread out).
pub fn backoff_ms(event_id: &str, attempts: i32) -> i64 {
    let base = 2f64.powi(attempts.clamp(0, 30)).min(300.0) * 1000.0;
    let h = event_id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let jitter = (h % 4001) as f64 / 10_000.0 - 0.2;
    (base * (1.0 + jitter)).round() as i64
}

/// One relay pass: claims due events, publishes each, records the outcome.
pub async fn relay_once<O: Outbox, S: EventSink>(
    outbox: &O,
    sink: &S,
    now_ms: i64,
    limit: usize,
) -> Result<RelayPass, BackendError> {
    let mut pass = RelayPass::default();
    for e in outbox.claim_due(now_ms, limit).await? {
        match sink.publish(&e).await {
            Ok(()) => {
                outbox.mark_sent(&e.event_id, now_ms).await?;
                pass.sent += 1;
            }
            Err(why) => {
                let attempts = e.attempts + 1;
                let dead = attempts >= MAX_ATTEMPTS;
                outbox
                    .mark_failed(
                        &e.event_id,
                        attempts,
                        now_ms + backoff_ms(&e.event_id, attempts),
                        dead,
                        &why,
                    )
                    .await?;
                if dead {
                    pass.dead += 1;
                } else {
                    pass.failed += 1;
                }
            }
        }
    }
    Ok(pass)
}

/// A sink in memory that can be made to fail (tests, the twin).
#[derive(Debug, Default)]
pub struct MemorySink {
    pub down: Mutex<bool>,
    pub published: Mutex<Vec<OutboxEvent>>,
}

impl EventSink for MemorySink {
    async fn publish(&self, e: &OutboxEvent) -> Result<(), String> {
        if *self.down.lock().unwrap_or_else(|p| p.into_inner()) {
            return Err("stream unavailable".into());
        }
        self.published
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(e.clone());
        Ok(())
    }
}

/// The event stream in Redis: `XADD <prefix>checkout:events MAXLEN ~ 1000000`.
#[derive(Debug, Clone)]
pub struct RedisSink {
    pub conn: redis::aio::ConnectionManager,
    pub stream: String,
    pub timeout_ms: u64,
}

impl EventSink for RedisSink {
    async fn publish(&self, e: &OutboxEvent) -> Result<(), String> {
        let mut cmd = redis::cmd("XADD");
        cmd.arg(&self.stream)
            .arg("MAXLEN")
            .arg("~")
            .arg(1_000_000)
            .arg("*")
            .arg("event_id")
            .arg(&e.event_id)
            .arg("event_type")
            .arg(&e.event_type)
            .arg("aggregate_id")
            .arg(&e.aggregate_id)
            .arg("payload")
            .arg(e.payload.to_string())
            .arg("created_at")
            .arg(e.created_at_ms);
        let r: Result<String, _> =
            qc_kit::redis_kit::bounded(self.timeout_ms, cmd.query_async(&mut self.conn.clone()))
                .await;
        r.map(|_| ()).map_err(|e| e.to_string())
    }
}

/// What one consumer pass did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Consumed {
    /// Events handed to the handler (each `event_id` once).
    pub handled: usize,
    /// Entries whose `event_id` was already handled (the relay's at-least-once repeats).
    pub duplicates: usize,
}

/// A consumer of the event stream as a member of a consumer group: every entry is read, the
/// handler sees each `event_id` once (ids already handled are kept under
/// `<seen_prefix><event_id>` for 7 days), and the entry is acknowledged after. An entry whose
/// handler failed stays pending and is read again by the next pass (own pending entries are
/// read before new ones), so a consumer that dies mid-event loses nothing. A consumer that dies
/// between its handler's effect and the seen mark runs that handler again on restart: handlers
/// with effects outside Redis record the `event_id` with the effect (one transaction).
#[derive(Debug, Clone)]
pub struct StreamConsumer {
    pub conn: redis::aio::ConnectionManager,
    pub stream: String,
    pub group: String,
    pub consumer: String,
    pub seen_prefix: String,
    pub timeout_ms: u64,
}

const SEEN_TTL_MS: i64 = 7 * 86_400_000;

impl StreamConsumer {
    async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, String> {
        qc_kit::redis_kit::bounded(self.timeout_ms, cmd.query_async(&mut self.conn.clone()))
            .await
            .map_err(|e| e.to_string())
    }

    /// Reads up to `count` entries (this consumer's unacknowledged ones first) and hands each
    /// new event to `handle`. Stops at the first handler error (that entry stays pending).
    pub async fn consume_once<F, Fut>(
        &self,
        count: usize,
        mut handle: F,
    ) -> Result<Consumed, String>
    where
        F: FnMut(OutboxEvent) -> Fut,
        Fut: Future<Output = Result<(), String>>,
    {
        let mut create = redis::cmd("XGROUP");
        create
            .arg("CREATE")
            .arg(&self.stream)
            .arg(&self.group)
            .arg("0")
            .arg("MKSTREAM");
        if let Err(e) = self.query::<()>(&create).await {
            if !e.contains("BUSYGROUP") {
                return Err(e);
            }
        }
        let mut out = Consumed::default();
        let mut entries = Vec::new();
        for from in ["0", ">"] {
            let mut read = redis::cmd("XREADGROUP");
            read.arg("GROUP")
                .arg(&self.group)
                .arg(&self.consumer)
                .arg("COUNT")
                .arg(count)
                .arg("STREAMS")
                .arg(&self.stream)
                .arg(from);
            let v: redis::Value = self.query(&read).await?;
            entries = qc_kit::redis_kit::stream_reply(&v)
                .into_iter()
                .flat_map(|(_, e)| e)
                .collect::<Vec<_>>();
            if !entries.is_empty() {
                break;
            }
        }
        for (entry_id, f) in entries {
            let field = |k: &str| f.get(k).cloned().unwrap_or_default();
            let event = OutboxEvent {
                event_id: field("event_id"),
                aggregate_id: field("aggregate_id"),
                event_type: field("event_type"),
                payload: serde_json::from_str(&field("payload")).unwrap_or(Value::Null),
                created_at_ms: field("created_at").parse().unwrap_or(0),
                attempts: 0,
            };
            let seen = format!("{}{}", self.seen_prefix, event.event_id);
            let done: bool = self.query(redis::cmd("EXISTS").arg(&seen)).await?;
            if done {
                out.duplicates += 1;
            } else {
                handle(event).await?;
                self.query::<()>(
                    redis::cmd("SET")
                        .arg(&seen)
                        .arg(1)
                        .arg("PX")
                        .arg(SEEN_TTL_MS),
                )
                .await?;
                out.handled += 1;
            }
            self.query::<()>(
                redis::cmd("XACK")
                    .arg(&self.stream)
                    .arg(&self.group)
                    .arg(&entry_id),
            )
            .await?;
        }
        Ok(out)
    }
}

/// The outbox in memory (the twin's; tests). Pending rows are indexed by their next attempt,
/// so a relay pass costs what is due, not what was ever written.
#[derive(Debug, Default)]
pub struct MemoryOutbox {
    inner: Mutex<Rows>,
}

#[derive(Debug, Default)]
struct Rows {
    /// event id → row
    rows: BTreeMap<String, Row>,
    /// (next attempt, event id) of every pending row
    pending: std::collections::BTreeSet<(i64, String)>,
}

/// (event with a null payload, the payload as JSON text as the table keeps it, status, next
/// attempt, order written)
type Row = (OutboxEvent, String, &'static str, i64, u64);

fn event_of(r: &Row) -> OutboxEvent {
    OutboxEvent {
        payload: serde_json::from_str(&r.1).unwrap_or(Value::Null),
        ..r.0.clone()
    }
}

impl MemoryOutbox {
    fn lock(&self) -> std::sync::MutexGuard<'_, Rows> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds an event (once per id), due at `due_ms`.
    pub fn add(&self, mut e: OutboxEvent, due_ms: i64) {
        let mut r = self.lock();
        if r.rows.contains_key(&e.event_id) {
            return;
        }
        let seq = r.rows.len() as u64;
        let payload = std::mem::take(&mut e.payload).to_string();
        r.pending.insert((due_ms, e.event_id.clone()));
        r.rows
            .insert(e.event_id.clone(), (e, payload, "pending", due_ms, seq));
    }

    /// Every event in the order written, with its status.
    pub fn events(&self) -> Vec<(OutboxEvent, &'static str)> {
        let r = self.lock();
        let mut all: Vec<_> = r.rows.values().collect();
        all.sort_by_key(|r| r.4);
        all.into_iter().map(|r| (event_of(r), r.2)).collect()
    }

    /// Status of each event.
    pub fn statuses(&self) -> BTreeMap<String, &'static str> {
        self.lock()
            .rows
            .iter()
            .map(|(k, v)| (k.clone(), v.2))
            .collect()
    }
}

impl Rows {
    /// Moves a pending row's next attempt (or takes it off the index when it is no longer
    /// pending).
    fn set(&mut self, id: &str, next_ms: i64, status: &'static str) {
        let Some(row) = self.rows.get_mut(id) else {
            return;
        };
        if row.2 != "pending" {
            return;
        }
        self.pending.remove(&(row.3, id.to_string()));
        row.3 = next_ms;
        row.2 = status;
        if status == "pending" {
            self.pending.insert((next_ms, id.to_string()));
        }
    }
}

impl Outbox for MemoryOutbox {
    async fn claim_due(&self, now_ms: i64, limit: usize) -> Result<Vec<OutboxEvent>, BackendError> {
        let mut r = self.lock();
        let mut due: Vec<(i64, u64, String)> = r
            .pending
            .iter()
            .take_while(|(at, _)| *at <= now_ms)
            .map(|(_, id)| {
                let row = &r.rows[id];
                (row.0.created_at_ms, row.4, id.clone())
            })
            .collect();
        // The order written, as the Postgres adapter's (created_at, seq).
        due.sort_unstable();
        due.truncate(limit);
        Ok(due
            .into_iter()
            .map(|(_, _, id)| {
                r.set(&id, now_ms + CLAIM_MS, "pending");
                event_of(&r.rows[&id])
            })
            .collect())
    }

    async fn mark_sent(&self, event_id: &str, _now_ms: i64) -> Result<(), BackendError> {
        self.lock().set(event_id, 0, "sent");
        Ok(())
    }

    async fn mark_failed(
        &self,
        event_id: &str,
        attempts: i32,
        next_ms: i64,
        dead: bool,
        _error: &str,
    ) -> Result<(), BackendError> {
        let mut r = self.lock();
        if let Some(row) = r.rows.get_mut(event_id) {
            row.0.attempts = attempts;
        }
        r.set(event_id, next_ms, if dead { "dead" } else { "pending" });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::executor::block_on;
    use serde_json::json;

    fn event(i: u32) -> OutboxEvent {
        OutboxEvent {
            event_id: format!("e{i}"),
            aggregate_id: "o1".into(),
            event_type: "order.confirmed".into(),
            payload: json!({"i": i}),
            created_at_ms: i64::from(i),
            attempts: 0,
        }
    }

    #[test]
    fn backoff_doubles_to_five_minutes_within_twenty_percent() {
        for (attempts, base) in [(1, 2_000.0), (3, 8_000.0), (9, 300_000.0), (10, 300_000.0)] {
            let d = backoff_ms("evt-1", attempts) as f64;
            assert!((base * 0.8..=base * 1.2).contains(&d), "{attempts}: {d}");
        }
        assert_ne!(backoff_ms("a", 3), backoff_ms("b", 3), "spread");
    }

    #[test]
    fn events_wait_while_the_stream_is_down_and_arrive_once_it_recovers() {
        let (outbox, sink) = (MemoryOutbox::default(), MemorySink::default());
        for i in 0..3 {
            outbox.add(event(i), 0);
        }
        *sink.down.lock().unwrap() = true;
        let p = block_on(relay_once(&outbox, &sink, 1_000, 100)).unwrap();
        assert_eq!((p.sent, p.failed), (0, 3));
        // Not due again before the backoff.
        assert_eq!(
            block_on(relay_once(&outbox, &sink, 1_001, 100)).unwrap(),
            RelayPass::default()
        );
        *sink.down.lock().unwrap() = false;
        let p = block_on(relay_once(&outbox, &sink, 10_000, 100)).unwrap();
        assert_eq!(p.sent, 3);
        let ids: Vec<String> = sink
            .published
            .lock()
            .unwrap()
            .iter()
            .map(|e| e.event_id.clone())
            .collect();
        assert_eq!(ids, ["e0", "e1", "e2"], "oldest first");
        assert!(outbox.statuses().values().all(|s| *s == "sent"));
    }

    #[test]
    fn an_event_is_dead_after_its_tenth_failure() {
        let (outbox, sink) = (MemoryOutbox::default(), MemorySink::default());
        outbox.add(event(0), 0);
        *sink.down.lock().unwrap() = true;
        let mut now = 0;
        let mut dead = 0;
        for _ in 0..MAX_ATTEMPTS {
            now += 400_000;
            dead += block_on(relay_once(&outbox, &sink, now, 100)).unwrap().dead;
        }
        assert_eq!(dead, 1);
        assert_eq!(outbox.statuses()["e0"], "dead");
        *sink.down.lock().unwrap() = false;
        assert_eq!(
            block_on(relay_once(&outbox, &sink, now + 400_000, 100))
                .unwrap()
                .sent,
            0
        );
    }
}
