//! SSE fan-out over Redis pub/sub (09 "Events and Redis"): every event reaches every instance's
//! clients through the order's channel, including the ingesting instance's, so order and
//! content are the same everywhere. One subscriber connection per instance: SUBSCRIBE when an
//! order gets its first local client, UNSUBSCRIBE when its last one leaves. If the connection
//! drops, the hub reconnects with backoff, re-subscribes, and tells every client to re-read the
//! trail from the last event it sent.
//!
//! Each client has a bounded queue (09 "Backpressure"): on overflow the oldest queued position
//! is dropped, never a status event; a client that has not taken anything for the write timeout
//! while its queue overflows is disconnected.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use qc_tracking::OrderStatus;
use serde::Deserialize;
use tokio::sync::{mpsc, oneshot, Notify};

use crate::platform::ops::ServiceCtx;
use crate::platform::shutdown::Shutdown;

/// One event as published: its seq, whether it is a position, whether it ends the stream, and
/// its JSON (sent as SSE data without changes).
#[derive(Debug)]
pub struct Event {
    pub seq: i64,
    pub is_position: bool,
    pub terminal: bool,
    pub json: String,
}

impl Event {
    /// Reads the fields the stream needs from a published or stored event.
    pub fn parse(json: String) -> Option<Event> {
        #[derive(Deserialize)]
        struct Head<'a> {
            #[serde(rename = "type")]
            kind: &'a str,
            seq: i64,
            #[serde(default)]
            status: Option<&'a str>,
        }
        let (seq, is_position, terminal) = {
            let h: Head<'_> = serde_json::from_str(&json).ok()?;
            let terminal = h.kind == "status"
                && h.status
                    .and_then(OrderStatus::parse)
                    .is_some_and(OrderStatus::is_terminal);
            (h.seq, h.kind == "position", terminal)
        };
        Some(Event {
            seq,
            is_position,
            terminal,
            json,
        })
    }
}

/// What a client's queue yields.
#[derive(Debug, Clone)]
pub enum Item {
    Event(Arc<Event>),
    /// The subscriber connection was re-established: events may have been missed; re-read
    /// the trail after the last event sent.
    Resync,
    /// Shutdown, or the client was too slow: end the stream.
    Closed,
}

#[derive(Debug)]
struct QueueState {
    items: VecDeque<Item>,
    closed: bool,
    /// When the client last took an item (or joined).
    last_take: Instant,
}

/// One client's bounded queue.
#[derive(Debug)]
pub struct Queue {
    state: Mutex<QueueState>,
    notify: Notify,
    cap: usize,
}

/// What a push did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pushed {
    Queued,
    /// The oldest queued position was dropped to make room.
    DroppedOldest,
    /// The queue overflowed and the client has not read for the write timeout: disconnected.
    Disconnected,
}

impl Queue {
    fn new(cap: usize) -> Self {
        Self {
            state: Mutex::new(QueueState {
                items: VecDeque::with_capacity(cap),
                closed: false,
                last_take: Instant::now(),
            }),
            notify: Notify::new(),
            cap,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn push(&self, item: Item, write_timeout: Duration) -> Pushed {
        let mut st = self.lock();
        if st.closed {
            return Pushed::Queued;
        }
        let mut outcome = Pushed::Queued;
        if st.items.len() >= self.cap {
            if st.last_take.elapsed() >= write_timeout {
                st.closed = true;
                st.items.clear();
                drop(st);
                self.notify.notify_one();
                return Pushed::Disconnected;
            }
            let oldest = st
                .items
                .iter()
                .position(|i| matches!(i, Item::Event(e) if e.is_position));
            if let Some(i) = oldest {
                st.items.remove(i);
                outcome = Pushed::DroppedOldest;
            }
        }
        st.items.push_back(item);
        drop(st);
        self.notify.notify_one();
        outcome
    }

    fn close(&self) {
        self.lock().closed = true;
        self.notify.notify_one();
    }

    /// Items waiting (for tests and metrics).
    pub fn len(&self) -> usize {
        self.lock().items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The next item; waits for one.
    pub async fn next(&self) -> Item {
        loop {
            {
                let mut st = self.lock();
                if let Some(i) = st.items.pop_front() {
                    st.last_take = Instant::now();
                    return i;
                }
                if st.closed {
                    return Item::Closed;
                }
            }
            self.notify.notified().await;
        }
    }
}

/// Why a client could not join.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JoinError {
    /// 20 streams on this order on this instance (429).
    OrderFull,
    /// `TRACKING_MAX_SSE` on this instance (503).
    InstanceFull,
    /// Shutting down, or the subscriber connection is down (503).
    Unavailable(String),
}

#[derive(Debug)]
enum Cmd {
    Subscribe(String, oneshot::Sender<Result<(), String>>),
    Unsubscribe(String),
}

/// Limits of the fan-out (09 "Backpressure").
#[derive(Debug, Clone)]
pub struct FanoutLimits {
    pub queue: usize,
    pub per_order: usize,
    pub total: usize,
    pub write_timeout: Duration,
}

#[derive(Debug, Default)]
struct Registry {
    orders: HashMap<String, Vec<Arc<Queue>>>,
    total: usize,
}

/// The instance's fan-out: local clients per order and the pub/sub hub feeding them.
#[derive(Debug)]
pub struct Fanout {
    registry: Mutex<Registry>,
    cmds: mpsc::UnboundedSender<Cmd>,
    limits: FanoutLimits,
    /// Where drops and slow disconnects are counted.
    ctx: Arc<ServiceCtx>,
    subscribe_timeout: Duration,
}

/// A client's place in the fan-out; leaving (drop) unsubscribes the order when it was the last.
#[derive(Debug)]
pub struct Subscription {
    fanout: Arc<Fanout>,
    order_id: String,
    pub queue: Arc<Queue>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.fanout.leave(&self.order_id, &self.queue);
    }
}

impl Fanout {
    /// The fan-out and its hub task (subscriber connection to `redis_url`; channels are
    /// `channel_prefix` + order id).
    pub fn start(
        redis_url: String,
        channel_prefix: String,
        limits: FanoutLimits,
        subscribe_timeout: Duration,
        ctx: Arc<ServiceCtx>,
    ) -> (Arc<Fanout>, tokio::task::JoinHandle<()>) {
        let shutdown = ctx.shutdown.clone();
        let (tx, rx) = mpsc::unbounded_channel();
        let fanout = Arc::new(Fanout {
            registry: Mutex::default(),
            cmds: tx,
            limits,
            ctx,
            subscribe_timeout,
        });
        let hub = tokio::spawn(hub(fanout.clone(), redis_url, channel_prefix, rx, shutdown));
        (fanout, hub)
    }

    fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Local clients (`tracking_sse_subscribers`).
    pub fn clients(&self) -> usize {
        self.registry().total
    }

    /// The longest client queue right now (bounded by the queue size).
    pub fn max_queued(&self) -> usize {
        let reg = self.registry();
        reg.orders
            .values()
            .flatten()
            .map(|q| q.len())
            .max()
            .unwrap_or(0)
    }

    /// Joins `order_id`'s stream: registered locally first, then subscribed (so nothing
    /// published after this returns is missed).
    pub async fn join(self: &Arc<Self>, order_id: &str) -> Result<Subscription, JoinError> {
        let queue = Arc::new(Queue::new(self.limits.queue));
        {
            let mut reg = self.registry();
            if reg.total >= self.limits.total {
                return Err(JoinError::InstanceFull);
            }
            let list = reg.orders.entry(order_id.to_string()).or_default();
            if list.len() >= self.limits.per_order {
                return Err(JoinError::OrderFull);
            }
            list.push(queue.clone());
            reg.total += 1;
        }
        let sub = Subscription {
            fanout: self.clone(),
            order_id: order_id.to_string(),
            queue,
        };
        let (ack, done) = oneshot::channel();
        if self
            .cmds
            .send(Cmd::Subscribe(order_id.to_string(), ack))
            .is_err()
        {
            return Err(JoinError::Unavailable("shutting down".into()));
        }
        match tokio::time::timeout(self.subscribe_timeout, done).await {
            Ok(Ok(Ok(()))) => Ok(sub),
            Ok(Ok(Err(e))) => Err(JoinError::Unavailable(e)),
            Ok(Err(_)) => Err(JoinError::Unavailable("shutting down".into())),
            Err(_) => Err(JoinError::Unavailable("subscribe timed out".into())),
        }
    }

    fn leave(&self, order_id: &str, queue: &Arc<Queue>) {
        let mut reg = self.registry();
        let Some(list) = reg.orders.get_mut(order_id) else {
            return;
        };
        let before = list.len();
        list.retain(|q| !Arc::ptr_eq(q, queue));
        let removed = before - list.len();
        let empty = list.is_empty();
        if empty {
            reg.orders.remove(order_id);
        }
        reg.total -= removed;
        drop(reg);
        if empty {
            let _ = self.cmds.send(Cmd::Unsubscribe(order_id.to_string()));
        }
    }

    /// Delivers one published event to the order's local clients.
    fn deliver(&self, order_id: &str, event: Arc<Event>) {
        let queues: Vec<Arc<Queue>> = match self.registry().orders.get(order_id) {
            Some(l) => l.clone(),
            None => return,
        };
        for q in queues {
            match q.push(Item::Event(event.clone()), self.limits.write_timeout) {
                Pushed::Queued => {}
                Pushed::DroppedOldest => self.ctx.metrics.count(
                    "tracking_sse_events_dropped_total",
                    "Positions dropped from full SSE client queues (oldest first).",
                    vec![],
                    1.0,
                ),
                Pushed::Disconnected => {
                    self.ctx.metrics.count(
                        "tracking_sse_slow_disconnects_total",
                        "SSE clients disconnected for not reading while their queue overflowed.",
                        vec![],
                        1.0,
                    );
                    self.leave(order_id, &q);
                }
            }
        }
    }

    fn broadcast(&self, item: &Item) {
        let reg = self.registry();
        for q in reg.orders.values().flatten() {
            match item {
                Item::Closed => q.close(),
                other => {
                    q.push(other.clone(), self.limits.write_timeout);
                }
            }
        }
    }

    fn subscribed_orders(&self) -> Vec<String> {
        self.registry().orders.keys().cloned().collect()
    }

    fn has_clients(&self, order_id: &str) -> bool {
        self.registry().orders.contains_key(order_id)
    }
}

/// The hub: owns the subscriber connection, applies (un)subscribe commands, routes messages.
async fn hub(
    fanout: Arc<Fanout>,
    redis_url: String,
    channel_prefix: String,
    mut cmds: mpsc::UnboundedReceiver<Cmd>,
    shutdown: Shutdown,
) {
    let mut backoff = Duration::from_millis(50);
    let mut first = true;
    loop {
        if shutdown.is_triggered() {
            break;
        }
        let connected = async {
            let client = redis::Client::open(redis_url.as_str())?;
            client.get_async_pubsub().await
        };
        let pubsub = tokio::select! {
            r = tokio::time::timeout(Duration::from_secs(2), connected) => r,
            _ = shutdown.wait() => break,
        };
        let (mut sink, mut stream) = match pubsub {
            Ok(Ok(p)) => p.split(),
            failed => {
                let why = match failed {
                    Ok(Err(e)) => e.to_string(),
                    _ => "connect timed out".into(),
                };
                tracing::warn!(error = %why, "tracking subscriber connection failed; retrying");
                // Commands that arrive meanwhile fail fast rather than wait.
                let until = tokio::time::sleep(backoff);
                tokio::pin!(until);
                loop {
                    tokio::select! {
                        _ = &mut until => break,
                        _ = shutdown.wait() => break,
                        c = cmds.recv() => match c {
                            Some(Cmd::Subscribe(_, ack)) => { let _ = ack.send(Err("pub/sub unavailable".into())); }
                            Some(Cmd::Unsubscribe(_)) => {}
                            None => return,
                        },
                    }
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        backoff = Duration::from_millis(50);
        let mut resubscribed = true;
        for order in fanout.subscribed_orders() {
            if sink
                .subscribe(format!("{channel_prefix}{order}"))
                .await
                .is_err()
            {
                resubscribed = false;
            }
        }
        if !resubscribed {
            continue;
        }
        if !first {
            tracing::info!("tracking subscriber connection re-established");
            fanout.broadcast(&Item::Resync);
        }
        first = false;
        loop {
            tokio::select! {
                _ = shutdown.wait() => {
                    fanout.broadcast(&Item::Closed);
                    return;
                }
                c = cmds.recv() => match c {
                    Some(Cmd::Subscribe(order, ack)) => {
                        let r = sink.subscribe(format!("{channel_prefix}{order}")).await;
                        let _ = ack.send(r.map_err(|e| e.to_string()));
                    }
                    Some(Cmd::Unsubscribe(order)) => {
                        if !fanout.has_clients(&order) {
                            let _ = sink.unsubscribe(format!("{channel_prefix}{order}")).await;
                        }
                    }
                    None => return,
                },
                m = stream.next() => {
                    let Some(m) = m else {
                        tracing::warn!("tracking subscriber connection lost; reconnecting");
                        break;
                    };
                    let channel = m.get_channel_name();
                    let Some(order) = channel.strip_prefix(channel_prefix.as_str()) else { continue };
                    let Ok(payload) = m.get_payload::<String>() else { continue };
                    if let Some(e) = Event::parse(payload) {
                        fanout.deliver(order, Arc::new(e));
                    }
                }
            }
        }
    }
    fanout.broadcast(&Item::Closed);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(seq: i64, position: bool) -> Item {
        Item::Event(Arc::new(Event {
            seq,
            is_position: position,
            terminal: false,
            json: String::new(),
        }))
    }

    fn seqs(q: &Queue) -> Vec<i64> {
        q.lock()
            .items
            .iter()
            .map(|i| match i {
                Item::Event(e) => e.seq,
                _ => -1,
            })
            .collect()
    }

    #[test]
    fn a_full_queue_drops_its_oldest_position_and_keeps_statuses() {
        let q = Queue::new(3);
        let t = Duration::from_secs(10);
        assert_eq!(q.push(event(1, false), t), Pushed::Queued);
        assert_eq!(q.push(event(2, true), t), Pushed::Queued);
        assert_eq!(q.push(event(3, true), t), Pushed::Queued);
        assert_eq!(q.push(event(4, true), t), Pushed::DroppedOldest);
        assert_eq!(seqs(&q), [1, 3, 4]);
        assert_eq!(q.push(event(5, false), t), Pushed::DroppedOldest);
        assert_eq!(q.push(event(6, false), t), Pushed::DroppedOldest);
        assert_eq!(seqs(&q), [1, 5, 6]);
    }

    #[test]
    fn a_client_that_reads_nothing_for_the_write_timeout_is_disconnected() {
        let q = Queue::new(2);
        q.push(event(1, true), Duration::ZERO);
        q.push(event(2, true), Duration::ZERO);
        assert_eq!(q.push(event(3, true), Duration::ZERO), Pushed::Disconnected);
        assert!(q.is_empty());
        let next = futures::executor::block_on(q.next());
        assert!(matches!(next, Item::Closed));
    }

    #[test]
    fn published_events_are_read_for_seq_and_end_of_stream() {
        let p = Event::parse(r#"{"type":"position","seq":7,"lat":1}"#.into()).unwrap();
        assert!((p.seq, p.is_position, p.terminal) == (7, true, false));
        let s = Event::parse(r#"{"type":"status","seq":8,"status":"delivered"}"#.into()).unwrap();
        assert!((s.seq, s.is_position, s.terminal) == (8, false, true));
        let s = Event::parse(r#"{"type":"status","seq":9,"status":"in_transit"}"#.into()).unwrap();
        assert!(!s.terminal);
        assert!(Event::parse("nope".into()).is_none());
    }
}
