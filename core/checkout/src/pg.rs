//! The Postgres order repository (04 §Postgres): `checkout_orders` with its lines, the saga log,
//! and — in the confirming transaction — the `dispatch_queue` row and the outbox events. The
//! durable idempotency guard is `UNIQUE (user_id, idempotency_key)`. Times are bound from the
//! caller's clock.

use qc_kit::redis_kit::BackendError;
use serde_json::{json, Value};
use sqlx::{PgPool, Row as _};

use crate::ports::{Confirmation, OrderRecord, OrderRepo, OrderStatus};

#[derive(Debug, Clone)]
pub struct PgOrders {
    pool: PgPool,
}

impl PgOrders {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

fn pg(e: sqlx::Error) -> BackendError {
    e.into()
}

fn uuid(id: &str) -> Result<uuid::Uuid, BackendError> {
    uuid::Uuid::parse_str(id)
        .map_err(|_| BackendError::Postgres(format!("order id {id} is not a UUID").into()))
}

fn status(s: &str) -> Result<OrderStatus, BackendError> {
    Ok(match s {
        "pending" => OrderStatus::Pending,
        "confirmed" => OrderStatus::Confirmed,
        "cancelled" => OrderStatus::Cancelled,
        "failed" => OrderStatus::Failed,
        other => return Err(BackendError::Postgres(format!("bad status {other}").into())),
    })
}

const COLS: &str = "id::text AS id, user_id, idempotency_key, hub_id, status, payment_status,
    subtotal, discount, total, reservation_id::text AS reservation_id, transaction_id,
    applied_promos, delivery_lat, delivery_lng, priority, failed_step,
    (extract(epoch FROM created_at) * 1000)::bigint AS created_ms,
    (extract(epoch FROM updated_at) * 1000)::bigint AS updated_ms";

impl PgOrders {
    async fn read(
        &self,
        where_sql: &str,
        binds: &[&str],
    ) -> Result<Option<OrderRecord>, BackendError> {
        let sql = format!("SELECT {COLS} FROM checkout_orders WHERE {where_sql}");
        let mut q = sqlx::query(&sql).bind(binds[0]);
        for b in &binds[1..] {
            q = q.bind(*b);
        }
        let Some(r) = q.fetch_optional(&self.pool).await.map_err(pg)? else {
            return Ok(None);
        };
        let id: String = r.try_get("id").map_err(pg)?;
        let oid = uuid(&id)?;
        let items = sqlx::query(
            "SELECT sku, name, quantity, unit_price FROM checkout_order_items WHERE order_id = $1 ORDER BY line_no",
        )
        .bind(oid)
        .fetch_all(&self.pool)
        .await
        .map_err(pg)?
        .iter()
        .map(|i| {
            Ok((
                i.try_get::<String, _>("sku").map_err(pg)?,
                i.try_get::<Option<String>, _>("name").map_err(pg)?,
                i.try_get::<i32, _>("quantity").map_err(pg)? as u32,
                i.try_get::<i64, _>("unit_price").map_err(pg)?,
            ))
        })
        .collect::<Result<Vec<_>, BackendError>>()?;
        let timeline = sqlx::query(
            "SELECT step, action, outcome, (extract(epoch FROM at) * 1000)::bigint AS at_ms
             FROM checkout_saga_steps WHERE order_id = $1 ORDER BY id",
        )
        .bind(oid)
        .fetch_all(&self.pool)
        .await
        .map_err(pg)?
        .iter()
        .map(|s| {
            Ok((
                s.try_get::<String, _>("step").map_err(pg)?,
                s.try_get::<String, _>("action").map_err(pg)?,
                s.try_get::<String, _>("outcome").map_err(pg)? == "ok",
                s.try_get::<i64, _>("at_ms").map_err(pg)?,
            ))
        })
        .collect::<Result<Vec<_>, BackendError>>()?;
        let promos: Option<Value> = r.try_get("applied_promos").map_err(pg)?;
        Ok(Some(OrderRecord {
            order_id: id,
            user_id: r.try_get("user_id").map_err(pg)?,
            idempotency_key: r.try_get("idempotency_key").map_err(pg)?,
            hub_id: r.try_get("hub_id").map_err(pg)?,
            status: status(&r.try_get::<String, _>("status").map_err(pg)?)?,
            payment_status: r.try_get("payment_status").map_err(pg)?,
            items,
            subtotal: r.try_get("subtotal").map_err(pg)?,
            discount: r.try_get("discount").map_err(pg)?,
            total: r.try_get("total").map_err(pg)?,
            reservation_id: r.try_get("reservation_id").map_err(pg)?,
            transaction_id: r.try_get("transaction_id").map_err(pg)?,
            applied_promos: promos
                .and_then(|v| serde_json::from_value(v).ok())
                .unwrap_or_default(),
            lat: r.try_get("delivery_lat").map_err(pg)?,
            lng: r.try_get("delivery_lng").map_err(pg)?,
            priority: r.try_get::<i16, _>("priority").map_err(pg)? as u8,
            failed_step: r.try_get("failed_step").map_err(pg)?,
            created_at_ms: r.try_get("created_ms").map_err(pg)?,
            updated_at_ms: r.try_get("updated_ms").map_err(pg)?,
            timeline,
        }))
    }

    /// The mutable fields of an order, inside `tx`.
    async fn write(
        tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
        o: &OrderRecord,
        at_ms: i64,
    ) -> Result<(), BackendError> {
        sqlx::query(
            "UPDATE checkout_orders SET status = $2, payment_status = $3, discount = $4, total = $5,
                 reservation_id = $6::uuid, transaction_id = $7, applied_promos = $8, failed_step = $9,
                 updated_at = to_timestamp($10::float8 / 1000)
             WHERE id = $1",
        )
        .bind(uuid(&o.order_id)?)
        .bind(o.status.as_str())
        .bind(&o.payment_status)
        .bind(o.discount)
        .bind(o.total)
        .bind(&o.reservation_id)
        .bind(&o.transaction_id)
        .bind(json!(o.applied_promos))
        .bind(&o.failed_step)
        .bind(at_ms)
        .execute(&mut **tx)
        .await
        .map_err(pg)?;
        Ok(())
    }
}

impl OrderRepo for PgOrders {
    async fn create(&self, o: &OrderRecord) -> Result<Option<OrderRecord>, BackendError> {
        let mut tx = self.pool.begin().await.map_err(pg)?;
        let inserted = sqlx::query(
            "INSERT INTO checkout_orders (id, user_id, idempotency_key, hub_id, status, payment_status,
                 subtotal, discount, total, reservation_id, delivery_lat, delivery_lng, priority,
                 created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::uuid, $11, $12, $13,
                 to_timestamp($14::float8 / 1000), to_timestamp($14::float8 / 1000))
             ON CONFLICT (user_id, idempotency_key) DO NOTHING",
        )
        .bind(uuid(&o.order_id)?)
        .bind(&o.user_id)
        .bind(&o.idempotency_key)
        .bind(&o.hub_id)
        .bind(o.status.as_str())
        .bind(&o.payment_status)
        .bind(o.subtotal)
        .bind(o.discount)
        .bind(o.total)
        .bind(&o.reservation_id)
        .bind(o.lat)
        .bind(o.lng)
        .bind(i16::from(o.priority))
        .bind(o.created_at_ms)
        .execute(&mut *tx)
        .await
        .map_err(pg)?
        .rows_affected();
        if inserted == 0 {
            tx.rollback().await.map_err(pg)?;
            return self
                .read(
                    "user_id = $1 AND idempotency_key = $2",
                    &[&o.user_id, &o.idempotency_key],
                )
                .await;
        }
        for (i, (sku, name, q, price)) in o.items.iter().enumerate() {
            sqlx::query(
                "INSERT INTO checkout_order_items (order_id, line_no, sku, name, quantity, unit_price)
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(uuid(&o.order_id)?)
            .bind(i as i32)
            .bind(sku)
            .bind(name)
            .bind(*q as i32)
            .bind(*price)
            .execute(&mut *tx)
            .await
            .map_err(pg)?;
        }
        tx.commit().await.map_err(pg)?;
        Ok(None)
    }

    async fn get(&self, order_id: &str) -> Result<Option<OrderRecord>, BackendError> {
        if uuid::Uuid::parse_str(order_id).is_err() {
            return Ok(None);
        }
        self.read("id = $1::uuid", &[order_id]).await
    }

    async fn by_key(&self, user_id: &str, key: &str) -> Result<Option<OrderRecord>, BackendError> {
        self.read("user_id = $1 AND idempotency_key = $2", &[user_id, key])
            .await
    }

    async fn step(
        &self,
        order_id: &str,
        step: &str,
        action: &str,
        ok: bool,
        at_ms: i64,
    ) -> Result<(), BackendError> {
        sqlx::query(
            "INSERT INTO checkout_saga_steps (order_id, step, action, outcome, at)
             VALUES ($1, $2, $3, $4, to_timestamp($5::float8 / 1000))",
        )
        .bind(uuid(order_id)?)
        .bind(step)
        .bind(action)
        .bind(if ok { "ok" } else { "error" })
        .bind(at_ms)
        .execute(&self.pool)
        .await
        .map_err(pg)?;
        Ok(())
    }

    async fn update(&self, o: &OrderRecord) -> Result<(), BackendError> {
        let mut tx = self.pool.begin().await.map_err(pg)?;
        Self::write(&mut tx, o, o.updated_at_ms).await?;
        tx.commit().await.map_err(pg)
    }

    async fn queued(&self, order_id: &str) -> Result<Option<(Value, u8)>, BackendError> {
        let r = sqlx::query("SELECT payload, priority FROM dispatch_queue WHERE order_id = $1")
            .bind(order_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(pg)?;
        r.map(|r| {
            Ok((
                r.try_get::<Value, _>("payload").map_err(pg)?,
                r.try_get::<i16, _>("priority").map_err(pg)? as u8,
            ))
        })
        .transpose()
    }

    async fn events(&self, order_id: &str) -> Result<Vec<String>, BackendError> {
        sqlx::query_scalar::<_, String>(
            "SELECT event_type FROM checkout_outbox WHERE aggregate_id = $1 ORDER BY created_at, seq",
        )
        .bind(uuid(order_id)?)
        .fetch_all(&self.pool)
        .await
        .map_err(pg)
    }

    async fn claim_stale(
        &self,
        now_ms: i64,
        idle_ms: i64,
        limit: usize,
    ) -> Result<Vec<OrderRecord>, BackendError> {
        let ids: Vec<String> = sqlx::query_scalar(
            "UPDATE checkout_orders SET updated_at = to_timestamp($1::float8 / 1000)
             WHERE id IN (SELECT id FROM checkout_orders
                          WHERE status = 'pending' AND updated_at <= to_timestamp(($1 - $2)::float8 / 1000)
                          ORDER BY created_at, id LIMIT $3 FOR UPDATE SKIP LOCKED)
             RETURNING id::text",
        )
        .bind(now_ms)
        .bind(idle_ms)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(pg)?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(o) = self.read("id = $1::uuid", &[&id]).await? {
                out.push(o);
            }
        }
        out.sort_by(|a, b| (a.created_at_ms, &a.order_id).cmp(&(b.created_at_ms, &b.order_id)));
        Ok(out)
    }

    async fn confirm(
        &self,
        o: &OrderRecord,
        c: &Confirmation,
        at_ms: i64,
    ) -> Result<(), BackendError> {
        let mut tx = self.pool.begin().await.map_err(pg)?;
        Self::write(&mut tx, o, at_ms).await?;
        sqlx::query(
            "INSERT INTO dispatch_queue (order_id, hub_id, priority, payload, available_at, created_at)
             VALUES ($1, $2, $3, $4, to_timestamp($5::float8 / 1000), to_timestamp($5::float8 / 1000))
             ON CONFLICT (order_id) DO NOTHING",
        )
        .bind(&o.order_id)
        .bind(&o.hub_id)
        .bind(i16::from(c.priority))
        .bind(&c.dispatch_payload)
        .bind(at_ms)
        .execute(&mut *tx)
        .await
        .map_err(pg)?;
        for (i, (kind, payload)) in c.events.iter().enumerate() {
            sqlx::query(
                "INSERT INTO checkout_outbox (id, aggregate_id, event_type, payload, next_attempt_at, created_at)
                 VALUES ($1, $2, $3, $4, to_timestamp($5::float8 / 1000), to_timestamp($5::float8 / 1000))
                 ON CONFLICT (id) DO NOTHING",
            )
            // Deterministic per (order, event): a retried confirmation cannot duplicate events.
            .bind(uuid::Uuid::new_v5(
                &uuid(&o.order_id)?,
                format!("{i}:{kind}").as_bytes(),
            ))
            .bind(uuid(&o.order_id)?)
            .bind(kind)
            .bind(payload)
            .bind(at_ms)
            .execute(&mut *tx)
            .await
            .map_err(pg)?;
        }
        tx.commit().await.map_err(pg)
    }
}

/// The outbox relay's side of `checkout_outbox`: claims by pushing `next_attempt_at` ahead
/// under `FOR UPDATE SKIP LOCKED`, so concurrent relays take different events and no
/// transaction is held while publishing.
impl crate::outbox::Outbox for PgOrders {
    async fn claim_due(
        &self,
        now_ms: i64,
        limit: usize,
    ) -> Result<Vec<crate::outbox::OutboxEvent>, BackendError> {
        let rows = sqlx::query(
            "UPDATE checkout_outbox SET next_attempt_at = to_timestamp(($1 + $3)::float8 / 1000)
             WHERE id IN (SELECT id FROM checkout_outbox
                          WHERE status = 'pending' AND next_attempt_at <= to_timestamp($1::float8 / 1000)
                          ORDER BY created_at, seq LIMIT $2 FOR UPDATE SKIP LOCKED)
             RETURNING id::text AS id, aggregate_id::text AS aggregate_id, event_type, payload,
                 (extract(epoch FROM created_at) * 1000)::bigint AS created_ms, attempts, seq",
        )
        .bind(now_ms)
        .bind(limit as i64)
        .bind(crate::outbox::CLAIM_MS)
        .fetch_all(&self.pool)
        .await
        .map_err(pg)?;
        let mut out = rows
            .iter()
            .map(|r| {
                Ok((
                    r.try_get::<i64, _>("seq").map_err(pg)?,
                    crate::outbox::OutboxEvent {
                        event_id: r.try_get("id").map_err(pg)?,
                        aggregate_id: r.try_get("aggregate_id").map_err(pg)?,
                        event_type: r.try_get("event_type").map_err(pg)?,
                        payload: r.try_get("payload").map_err(pg)?,
                        created_at_ms: r.try_get("created_ms").map_err(pg)?,
                        attempts: r.try_get("attempts").map_err(pg)?,
                    },
                ))
            })
            .collect::<Result<Vec<_>, BackendError>>()?;
        // RETURNING has no order: the order written (created_at, then seq).
        out.sort_by_key(|(seq, e)| (e.created_at_ms, *seq));
        let out = out.into_iter().map(|(_, e)| e).collect();
        Ok(out)
    }

    async fn mark_sent(&self, event_id: &str, now_ms: i64) -> Result<(), BackendError> {
        sqlx::query(
            "UPDATE checkout_outbox SET status = 'sent', sent_at = to_timestamp($2::float8 / 1000)
             WHERE id = $1 AND status = 'pending'",
        )
        .bind(uuid(event_id)?)
        .bind(now_ms)
        .execute(&self.pool)
        .await
        .map_err(pg)?;
        Ok(())
    }

    async fn mark_failed(
        &self,
        event_id: &str,
        attempts: i32,
        next_ms: i64,
        dead: bool,
        error: &str,
    ) -> Result<(), BackendError> {
        sqlx::query(
            "UPDATE checkout_outbox SET attempts = $2, next_attempt_at = to_timestamp($3::float8 / 1000),
                 last_error = $4, status = CASE WHEN $5 THEN 'dead' ELSE status END
             WHERE id = $1 AND status = 'pending'",
        )
        .bind(uuid(event_id)?)
        .bind(attempts)
        .bind(next_ms)
        .bind(error)
        .bind(dead)
        .execute(&self.pool)
        .await
        .map_err(pg)?;
        Ok(())
    }
}

/// One transaction per payment event: the processed marker, the order locked, the payment
/// status and its outbox event; anything refused rolls the marker back with it.
impl crate::webhook::PaymentEvents for PgOrders {
    async fn apply_payment_event(
        &self,
        e: &crate::webhook::PaymentEvent,
        now_ms: i64,
    ) -> Result<crate::webhook::Applied, BackendError> {
        use crate::webhook::Applied;
        let Ok(oid) = uuid::Uuid::parse_str(&e.order_id) else {
            return Ok(Applied::UnknownOrder);
        };
        let mut tx = self.pool.begin().await.map_err(pg)?;
        let fresh = sqlx::query(
            "INSERT INTO checkout_processed_webhooks (transaction_id, order_id, event_status, received_at)
             VALUES ($1, $2, $3, to_timestamp($4::float8 / 1000)) ON CONFLICT DO NOTHING",
        )
        .bind(&e.transaction_id)
        .bind(oid)
        .bind(if e.succeeded { "succeeded" } else { "failed" })
        .bind(now_ms)
        .execute(&mut *tx)
        .await
        .map_err(pg)?
        .rows_affected();
        if fresh == 0 {
            tx.rollback().await.map_err(pg)?;
            return Ok(Applied::AlreadyProcessed);
        }
        let row = sqlx::query(
            "SELECT status, total, currency FROM checkout_orders WHERE id = $1 FOR UPDATE",
        )
        .bind(oid)
        .fetch_optional(&mut *tx)
        .await
        .map_err(pg)?;
        let Some(row) = row else {
            tx.rollback().await.map_err(pg)?;
            return Ok(Applied::UnknownOrder);
        };
        let (status, total, currency): (String, i64, String) = (
            row.try_get("status").map_err(pg)?,
            row.try_get("total").map_err(pg)?,
            row.try_get("currency").map_err(pg)?,
        );
        if total != e.amount || currency.trim() != e.currency {
            tx.rollback().await.map_err(pg)?;
            return Ok(Applied::AmountMismatch);
        }
        let (payment, event) = crate::webhook::transition(&status, e.succeeded);
        sqlx::query(
            "UPDATE checkout_orders SET payment_status = $2, updated_at = to_timestamp($3::float8 / 1000)
             WHERE id = $1",
        )
        .bind(oid)
        .bind(payment)
        .bind(now_ms)
        .execute(&mut *tx)
        .await
        .map_err(pg)?;
        sqlx::query(
            "INSERT INTO checkout_outbox (id, aggregate_id, event_type, payload, next_attempt_at, created_at)
             VALUES ($1, $2, $3, $4, to_timestamp($5::float8 / 1000), to_timestamp($5::float8 / 1000))
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(uuid::Uuid::new_v5(&oid, format!("webhook:{}:{event}", e.transaction_id).as_bytes()))
        .bind(oid)
        .bind(event)
        .bind(json!({"order_id": e.order_id, "transaction_id": e.transaction_id, "amount": e.amount}))
        .bind(now_ms)
        .execute(&mut *tx)
        .await
        .map_err(pg)?;
        tx.commit().await.map_err(pg)?;
        Ok(Applied::Done)
    }
}
