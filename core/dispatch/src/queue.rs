//! The `dispatch_queue` contract (00-platform): Checkout inserts a row in the transaction that
//! confirms an order; Dispatch instances claim rows with `FOR UPDATE SKIP LOCKED`, so two
//! claimers never take the same row, and turn each into an order (idempotent on `order_id`).

use sqlx::{PgPool, Row as _};

use crate::model::{Invalid, NewOrder, OrderInput};
use crate::pg::repo_error;
use crate::repo::RepoError;

/// Attempts before a row fails for good (00: "5 attempts → failed + alert").
pub const MAX_ATTEMPTS: i32 = 5;
/// A claim older than this is abandoned (its claimer died) and goes back to pending.
pub const STALE_CLAIM_MS: i64 = 60_000;

#[derive(Debug, Clone, PartialEq)]
pub struct Claimed {
    pub id: i64,
    pub order_id: String,
    pub hub_id: String,
    pub priority: i16,
    pub payload: serde_json::Value,
    /// Including this claim.
    pub attempts: i32,
}

impl Claimed {
    /// The order this row asks for: the payload validated as `POST /dispatch/order` would,
    /// with `order_id`, `hub_id` and `priority` taken from the row's columns.
    pub fn to_order(&self) -> Result<NewOrder, Invalid> {
        let mut body = self.payload.clone();
        let obj = body
            .as_object_mut()
            .ok_or_else(|| Invalid("payload must be a JSON object".into()))?;
        obj.insert("order_id".into(), self.order_id.clone().into());
        obj.insert("hub_id".into(), self.hub_id.clone().into());
        obj.insert("priority".into(), i64::from(self.priority).into());
        let input: OrderInput =
            serde_json::from_value(body).map_err(|e| Invalid(format!("payload: {e}")))?;
        input.validate(String::new)
    }
}

/// What happened to one claimed row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    Done,
    /// Back to pending, available again after the backoff.
    Retry {
        after_ms: i64,
    },
    Failed,
}

/// Claims up to `limit` available rows for `instance`.
pub async fn claim(
    pool: &PgPool,
    instance: &str,
    now_ms: i64,
    limit: usize,
) -> Result<Vec<Claimed>, RepoError> {
    let rows = sqlx::query(
        "UPDATE dispatch_queue q SET status = 'claimed', attempts = q.attempts + 1, claimed_by = $1,
                claimed_at = to_timestamp($2::float8 / 1000)
         WHERE q.id IN (SELECT id FROM dispatch_queue
                        WHERE status = 'pending' AND available_at <= to_timestamp($2::float8 / 1000)
                        ORDER BY priority DESC, id LIMIT $3 FOR UPDATE SKIP LOCKED)
         RETURNING q.id, q.order_id, q.hub_id, q.priority, q.payload, q.attempts",
    )
    .bind(instance)
    .bind(now_ms)
    .bind(limit as i64)
    .fetch_all(pool)
    .await
    .map_err(repo_error)?;
    let mut out = rows
        .iter()
        .map(|r| {
            Ok(Claimed {
                id: r.try_get("id")?,
                order_id: r.try_get("order_id")?,
                hub_id: r.try_get("hub_id")?,
                priority: r.try_get("priority")?,
                payload: r.try_get("payload")?,
                attempts: r.try_get("attempts")?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()
        .map_err(repo_error)?;
    out.sort_by(|a, b| b.priority.cmp(&a.priority).then(a.id.cmp(&b.id)));
    Ok(out)
}

/// Settles a row this instance claimed: done; or, on `error`, failed when `permanent` or out of
/// attempts, else pending again after 2^attempts s. A row whose claim was taken over (it went
/// stale and another instance claimed it) is left to its new claimer.
pub async fn settle(
    pool: &PgPool,
    instance: &str,
    row: &Claimed,
    error: Option<(&str, bool)>,
    now_ms: i64,
) -> Result<Settled, RepoError> {
    let (status, after_ms, settled) = match error {
        None => ("done", 0, Settled::Done),
        Some((_, permanent)) if permanent || row.attempts >= MAX_ATTEMPTS => {
            ("failed", 0, Settled::Failed)
        }
        Some(_) => {
            let after_ms = 1000i64 << row.attempts.clamp(0, 20);
            ("pending", after_ms, Settled::Retry { after_ms })
        }
    };
    sqlx::query(
        "UPDATE dispatch_queue SET status = $3, last_error = $4,
                available_at = CASE WHEN $3 = 'pending' THEN to_timestamp(($5::float8 + $6) / 1000) ELSE available_at END
         WHERE id = $1 AND status = 'claimed' AND claimed_by = $2",
    )
    .bind(row.id)
    .bind(instance)
    .bind(status)
    .bind(error.map(|(e, _)| e))
    .bind(now_ms)
    .bind(after_ms as f64)
    .execute(pool)
    .await
    .map_err(repo_error)?;
    Ok(settled)
}

/// Returns claims older than [`STALE_CLAIM_MS`] to pending; how many.
pub async fn release_stale(pool: &PgPool, now_ms: i64) -> Result<u64, RepoError> {
    let r = sqlx::query(
        "UPDATE dispatch_queue SET status = 'pending', claimed_by = NULL
         WHERE status = 'claimed' AND claimed_at <= to_timestamp(($1::float8 - $2) / 1000)",
    )
    .bind(now_ms)
    .bind(STALE_CLAIM_MS as f64)
    .execute(pool)
    .await
    .map_err(repo_error)?;
    Ok(r.rows_affected())
}

/// Checkout's side of the contract (00): insert in the order-confirming transaction, with
/// `ON CONFLICT (order_id) DO NOTHING`. Here for tests, tools and the simulator's live mode.
pub async fn enqueue(
    pool: &PgPool,
    order_id: &str,
    hub_id: &str,
    priority: i16,
    payload: &serde_json::Value,
    now_ms: i64,
) -> Result<bool, RepoError> {
    let r = sqlx::query(
        "INSERT INTO dispatch_queue (order_id, hub_id, priority, payload, available_at, created_at)
         VALUES ($1, $2, $3, $4, to_timestamp($5::float8 / 1000), to_timestamp($5::float8 / 1000))
         ON CONFLICT (order_id) DO NOTHING",
    )
    .bind(order_id)
    .bind(hub_id)
    .bind(priority)
    .bind(payload)
    .bind(now_ms)
    .execute(pool)
    .await
    .map_err(repo_error)?;
    Ok(r.rows_affected() == 1)
}
