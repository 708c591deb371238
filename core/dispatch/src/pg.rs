//! Postgres adapter of [`DispatchRepo`] (the system of record, 06 §4): one transaction per
//! [`Write`], every update guarded by `version`, the partial unique indexes refusing a second
//! live assignment. Times are epoch ms bound from the caller's clock.

use qc_geo::Point;
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Postgres, Row as _, Transaction};

use qc_kit::redis_kit::BackendError;

use crate::model::*;
use crate::repo::{DispatchRepo, RepoError, Row, Write};
use crate::state::DriverState;

#[derive(Debug, Clone)]
pub struct PgRepo {
    pool: PgPool,
}

impl PgRepo {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// The rows a "due by now" query (`$1` = now, `$2` = limit) returns, read by `row`.
    async fn due_rows<T>(
        &self,
        sql: &str,
        now_ms: i64,
        limit: usize,
        row: fn(&PgRow) -> Result<T, RepoError>,
    ) -> Result<Vec<T>, RepoError> {
        let rows = sqlx::query(sql)
            .bind(now_ms)
            .bind(limit as i64)
            .fetch_all(&self.pool)
            .await
            .map_err(repo_error)?;
        rows.iter().map(row).collect()
    }
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

/// Maps a database error: uniqueness, deadlocks and serialization failures are conflicts.
pub fn repo_error(e: sqlx::Error) -> RepoError {
    if let sqlx::Error::Database(db) = &e {
        if matches!(db.code().as_deref(), Some("23505" | "40P01" | "40001")) {
            return RepoError::Conflict(db.message().to_string());
        }
    }
    RepoError::Backend(e.into())
}

const ORDER_COLS: &str = "id, customer_id, hub_id, items, total, priority, status,
    (extract(epoch FROM created_at) * 1000)::bigint AS created_ms, delivery_lat, delivery_lng,
    pickup_lat, pickup_lng, assigned_driver_id, current_assignment_id, batch_id, reassign_count,
    failure_reason, excluded, (extract(epoch FROM pooled_at) * 1000)::bigint AS pooled_ms,
    (extract(epoch FROM reassign_due_at) * 1000)::bigint AS due_ms,
    (extract(epoch FROM deliver_by) * 1000)::bigint AS deliver_by_ms, repooled, version";

const DRIVER_COLS: &str =
    "id, name, lat, lng, (extract(epoch FROM loc_at) * 1000)::bigint AS loc_ms,
    status, load, max_load, total_deliveries,
    (extract(epoch FROM last_assigned_at) * 1000)::bigint AS last_ms, skipped_count,
    current_assignment_id, version";

const ASSIGNMENT_COLS: &str = "id, order_id, driver_id, status, score, attempt,
    (extract(epoch FROM created_at) * 1000)::bigint AS created_ms,
    (extract(epoch FROM expires_at) * 1000)::bigint AS expires_ms,
    (extract(epoch FROM accepted_at) * 1000)::bigint AS accepted_ms,
    (extract(epoch FROM rejected_at) * 1000)::bigint AS rejected_ms,
    (extract(epoch FROM finished_at) * 1000)::bigint AS finished_ms, version";

fn bad(what: &str) -> RepoError {
    RepoError::Backend(BackendError::Postgres(
        format!("unreadable {what} row").into(),
    ))
}

fn point(lat: Option<f64>, lng: Option<f64>) -> Option<Point> {
    Point::new(lat?, lng?).ok()
}

fn order_row(r: &PgRow) -> Result<Order, RepoError> {
    let g = |e: sqlx::Error| RepoError::Backend(e.into());
    let items: sqlx::types::Json<Vec<Item>> = r.try_get("items").map_err(g)?;
    let excluded: sqlx::types::Json<Vec<String>> = r.try_get("excluded").map_err(g)?;
    let status: String = r.try_get("status").map_err(g)?;
    Ok(Order {
        id: r.try_get("id").map_err(g)?,
        customer_id: r.try_get("customer_id").map_err(g)?,
        hub_id: r.try_get("hub_id").map_err(g)?,
        items: items.0,
        total: r.try_get("total").map_err(g)?,
        priority: u8::try_from(r.try_get::<i16, _>("priority").map_err(g)?)
            .map_err(|_| bad("order"))?,
        status: OrderStatus::parse(&status).ok_or_else(|| bad("order"))?,
        created_at: r.try_get("created_ms").map_err(g)?,
        delivery_location: point(
            r.try_get("delivery_lat").map_err(g)?,
            r.try_get("delivery_lng").map_err(g)?,
        )
        .ok_or_else(|| bad("order"))?,
        pickup_location: point(
            r.try_get("pickup_lat").map_err(g)?,
            r.try_get("pickup_lng").map_err(g)?,
        ),
        assigned_driver_id: r.try_get("assigned_driver_id").map_err(g)?,
        current_assignment_id: r.try_get("current_assignment_id").map_err(g)?,
        batch_id: r.try_get("batch_id").map_err(g)?,
        reassign_count: u32::try_from(r.try_get::<i32, _>("reassign_count").map_err(g)?)
            .map_err(|_| bad("order"))?,
        failure_reason: r.try_get("failure_reason").map_err(g)?,
        excluded: excluded.0,
        pooled_at: r.try_get("pooled_ms").map_err(g)?,
        reassign_due_at: r.try_get("due_ms").map_err(g)?,
        deliver_by: r.try_get("deliver_by_ms").map_err(g)?,
        repooled: u32::try_from(r.try_get::<i32, _>("repooled").map_err(g)?)
            .map_err(|_| bad("order"))?,
        version: r.try_get("version").map_err(g)?,
    })
}

fn driver_row(r: &PgRow) -> Result<Driver, RepoError> {
    let g = |e: sqlx::Error| RepoError::Backend(e.into());
    let status: String = r.try_get("status").map_err(g)?;
    let u = |v: i32| u32::try_from(v).map_err(|_| bad("driver"));
    Ok(Driver {
        id: r.try_get("id").map_err(g)?,
        name: r.try_get("name").map_err(g)?,
        location: point(r.try_get("lat").map_err(g)?, r.try_get("lng").map_err(g)?),
        loc_at: r.try_get("loc_ms").map_err(g)?,
        status: DriverState::parse(&status).ok_or_else(|| bad("driver"))?,
        load: u(r.try_get("load").map_err(g)?)?,
        max_load: u(r.try_get("max_load").map_err(g)?)?,
        total_deliveries: u64::try_from(r.try_get::<i64, _>("total_deliveries").map_err(g)?)
            .map_err(|_| bad("driver"))?,
        last_assigned_at: r.try_get("last_ms").map_err(g)?,
        skipped_count: u(r.try_get("skipped_count").map_err(g)?)?,
        current_assignment_id: r.try_get("current_assignment_id").map_err(g)?,
        version: r.try_get("version").map_err(g)?,
    })
}

fn assignment_row(r: &PgRow) -> Result<Assignment, RepoError> {
    let g = |e: sqlx::Error| RepoError::Backend(e.into());
    let status: String = r.try_get("status").map_err(g)?;
    Ok(Assignment {
        id: r.try_get("id").map_err(g)?,
        order_id: r.try_get("order_id").map_err(g)?,
        driver_id: r.try_get("driver_id").map_err(g)?,
        status: AssignmentStatus::parse(&status).ok_or_else(|| bad("assignment"))?,
        score: r.try_get("score").map_err(g)?,
        attempt: u32::try_from(r.try_get::<i32, _>("attempt").map_err(g)?)
            .map_err(|_| bad("assignment"))?,
        created_at: r.try_get("created_ms").map_err(g)?,
        expires_at: r.try_get("expires_ms").map_err(g)?,
        accepted_at: r.try_get("accepted_ms").map_err(g)?,
        rejected_at: r.try_get("rejected_ms").map_err(g)?,
        finished_at: r.try_get("finished_ms").map_err(g)?,
        version: r.try_get("version").map_err(g)?,
    })
}

/// `to_timestamp` of an optional epoch-ms parameter.
macro_rules! ts {
    ($n:literal) => {
        concat!("to_timestamp($", $n, "::float8 / 1000)")
    };
}

async fn write_order(
    tx: &mut Transaction<'_, Postgres>,
    row: &Row<Order>,
) -> Result<u64, sqlx::Error> {
    let (o, insert) = row.parts();
    let sql = if insert {
        concat!(
            "INSERT INTO dispatch_orders (id, customer_id, hub_id, items, total, priority, status, created_at,
             delivery_lat, delivery_lng, pickup_lat, pickup_lng, assigned_driver_id, current_assignment_id,
             batch_id, reassign_count, failure_reason, excluded, pooled_at, reassign_due_at, version,
             deliver_by, repooled)
             VALUES ($1, $2, $3, $4, $5, $6, $7, ", ts!(8), ", $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, ",
            ts!(19), ", ", ts!(20), ", $21, ", ts!(22), ", $23)"
        )
    } else {
        concat!(
            "UPDATE dispatch_orders SET customer_id = $2, hub_id = $3, items = $4, total = $5, priority = $6,
             status = $7, created_at = ", ts!(8), ", delivery_lat = $9, delivery_lng = $10, pickup_lat = $11,
             pickup_lng = $12, assigned_driver_id = $13, current_assignment_id = $14, batch_id = $15,
             reassign_count = $16, failure_reason = $17, excluded = $18, pooled_at = ", ts!(19), ",
             reassign_due_at = ", ts!(20), ", version = $21, deliver_by = ", ts!(22), ", repooled = $23
             WHERE id = $1 AND version = $21 - 1"
        )
    };
    let r = sqlx::query(sql)
        .bind(&o.id)
        .bind(&o.customer_id)
        .bind(&o.hub_id)
        .bind(sqlx::types::Json(&o.items))
        .bind(o.total)
        .bind(i16::from(o.priority))
        .bind(o.status.as_str())
        .bind(o.created_at)
        .bind(o.delivery_location.lat)
        .bind(o.delivery_location.lng)
        .bind(o.pickup_location.map(|p| p.lat))
        .bind(o.pickup_location.map(|p| p.lng))
        .bind(&o.assigned_driver_id)
        .bind(&o.current_assignment_id)
        .bind(&o.batch_id)
        .bind(o.reassign_count as i32)
        .bind(&o.failure_reason)
        .bind(sqlx::types::Json(&o.excluded))
        .bind(o.pooled_at)
        .bind(o.reassign_due_at)
        .bind(o.version)
        .bind(o.deliver_by)
        .bind(o.repooled as i32)
        .execute(&mut **tx)
        .await?;
    Ok(r.rows_affected())
}

async fn write_driver(
    tx: &mut Transaction<'_, Postgres>,
    row: &Row<Driver>,
) -> Result<u64, sqlx::Error> {
    let (d, insert) = row.parts();
    let sql = if insert {
        concat!(
            "INSERT INTO drivers (id, name, lat, lng, loc_at, status, load, max_load, total_deliveries,
             last_assigned_at, skipped_count, current_assignment_id, version)
             VALUES ($1, $2, $3, $4, ", ts!(5), ", $6, $7, $8, $9, ", ts!(10), ", $11, $12, $13)"
        )
    } else {
        concat!(
            "UPDATE drivers SET name = $2, lat = $3, lng = $4, loc_at = ",
            ts!(5),
            ", status = $6, load = $7,
             max_load = $8, total_deliveries = $9, last_assigned_at = ",
            ts!(10),
            ", skipped_count = $11,
             current_assignment_id = $12, version = $13
             WHERE id = $1 AND version = $13 - 1"
        )
    };
    let r = sqlx::query(sql)
        .bind(&d.id)
        .bind(&d.name)
        .bind(d.location.map(|p| p.lat))
        .bind(d.location.map(|p| p.lng))
        .bind(d.loc_at)
        .bind(d.status.as_str())
        .bind(d.load as i32)
        .bind(d.max_load as i32)
        .bind(d.total_deliveries as i64)
        .bind(d.last_assigned_at)
        .bind(d.skipped_count as i32)
        .bind(&d.current_assignment_id)
        .bind(d.version)
        .execute(&mut **tx)
        .await?;
    Ok(r.rows_affected())
}

async fn write_assignment(
    tx: &mut Transaction<'_, Postgres>,
    row: &Row<Assignment>,
) -> Result<u64, sqlx::Error> {
    let (a, insert) = row.parts();
    let sql = if insert {
        concat!(
            "INSERT INTO dispatch_assignments (id, order_id, driver_id, status, score, attempt, created_at,
             expires_at, accepted_at, rejected_at, finished_at, version)
             VALUES ($1, $2, $3, $4, $5, $6, ", ts!(7), ", ", ts!(8), ", ", ts!(9), ", ", ts!(10), ", ",
            ts!(11), ", $12)"
        )
    } else {
        concat!(
            "UPDATE dispatch_assignments SET order_id = $2, driver_id = $3, status = $4, score = $5,
             attempt = $6, created_at = ", ts!(7), ", expires_at = ", ts!(8), ", accepted_at = ", ts!(9), ",
             rejected_at = ", ts!(10), ", finished_at = ", ts!(11), ", version = $12
             WHERE id = $1 AND version = $12 - 1"
        )
    };
    let r = sqlx::query(sql)
        .bind(&a.id)
        .bind(&a.order_id)
        .bind(&a.driver_id)
        .bind(a.status.as_str())
        .bind(a.score)
        .bind(a.attempt as i32)
        .bind(a.created_at)
        .bind(a.expires_at)
        .bind(a.accepted_at)
        .bind(a.rejected_at)
        .bind(a.finished_at)
        .bind(a.version)
        .execute(&mut **tx)
        .await?;
    Ok(r.rows_affected())
}

fn changed(n: u64, what: &str) -> Result<(), RepoError> {
    if n == 1 {
        Ok(())
    } else {
        Err(RepoError::Conflict(format!(
            "{what} changed since it was read"
        )))
    }
}

/// Rows in a fixed order (by id), so concurrent writers lock in the same order.
fn sorted<T>(rows: &[Row<T>], id: impl Fn(&T) -> &str) -> Vec<&Row<T>> {
    let mut v: Vec<&Row<T>> = rows.iter().collect();
    v.sort_by(|a, b| id(a.get()).cmp(id(b.get())));
    v
}

impl PgRepo {
    async fn apply(&self, w: &Write) -> Result<(), RepoError> {
        let mut tx = self.pool.begin().await.map_err(repo_error)?;
        for r in sorted(&w.drivers, |d| &d.id) {
            changed(
                write_driver(&mut tx, r).await.map_err(repo_error)?,
                "driver",
            )?;
        }
        for r in sorted(&w.orders, |o| &o.id) {
            changed(write_order(&mut tx, r).await.map_err(repo_error)?, "order")?;
        }
        // Updates first: an assignment that stops being live frees its order and driver.
        let (updates, inserts): (Vec<_>, Vec<_>) = sorted(&w.assignments, |a| &a.id)
            .into_iter()
            .partition(|r| matches!(r, Row::Update(_)));
        for r in updates.into_iter().chain(inserts) {
            changed(
                write_assignment(&mut tx, r).await.map_err(repo_error)?,
                "assignment",
            )?;
        }
        for e in &w.events {
            sqlx::query(concat!(
                "INSERT INTO driver_state_events (driver_id, from_state, to_state, reason, at)
                 VALUES ($1, $2, $3, $4, ",
                ts!(5),
                ")"
            ))
            .bind(&e.driver_id)
            .bind(e.from_state.map(DriverState::as_str))
            .bind(e.to_state.as_str())
            .bind(&e.reason)
            .bind(e.at)
            .execute(&mut *tx)
            .await
            .map_err(repo_error)?;
        }
        tx.commit().await.map_err(repo_error)
    }
}

impl PgRepo {
    /// One row by primary key: `SELECT {cols} FROM {table} WHERE id = $1`.
    async fn by_id<T>(
        &self,
        cols: &str,
        table: &str,
        id: &str,
        read: fn(&PgRow) -> Result<T, RepoError>,
    ) -> Result<Option<T>, RepoError> {
        let sql = format!("SELECT {cols} FROM {table} WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(repo_error)?;
        row.as_ref().map(read).transpose()
    }
}

impl DispatchRepo for PgRepo {
    async fn order(&self, id: &str) -> Result<Option<Order>, RepoError> {
        self.by_id(ORDER_COLS, "dispatch_orders", id, order_row)
            .await
    }

    async fn driver(&self, id: &str) -> Result<Option<Driver>, RepoError> {
        self.by_id(DRIVER_COLS, "drivers", id, driver_row).await
    }

    async fn assignment(&self, id: &str) -> Result<Option<Assignment>, RepoError> {
        self.by_id(ASSIGNMENT_COLS, "dispatch_assignments", id, assignment_row)
            .await
    }

    async fn driver_events(&self, driver_id: &str) -> Result<Vec<DriverEvent>, RepoError> {
        let rows = sqlx::query(
            "SELECT driver_id, from_state, to_state, reason, (extract(epoch FROM at) * 1000)::bigint AS at_ms
             FROM driver_state_events WHERE driver_id = $1 ORDER BY id",
        )
        .bind(driver_id)
        .fetch_all(&self.pool)
        .await
        .map_err(repo_error)?;
        rows.iter()
            .map(|r| {
                let g = |e: sqlx::Error| RepoError::Backend(e.into());
                let from: Option<String> = r.try_get("from_state").map_err(g)?;
                let to: String = r.try_get("to_state").map_err(g)?;
                Ok(DriverEvent {
                    driver_id: r.try_get("driver_id").map_err(g)?,
                    from_state: match from {
                        Some(s) => Some(DriverState::parse(&s).ok_or_else(|| bad("event"))?),
                        None => None,
                    },
                    to_state: DriverState::parse(&to).ok_or_else(|| bad("event"))?,
                    at: r.try_get("at_ms").map_err(g)?,
                    reason: r.try_get("reason").map_err(g)?,
                })
            })
            .collect()
    }

    async fn pool(&self, limit: usize) -> Result<Vec<Order>, RepoError> {
        let sql = format!(
            "SELECT {ORDER_COLS} FROM dispatch_orders
             WHERE pooled_at IS NOT NULL AND status = 'PENDING' ORDER BY pooled_at, id LIMIT $1"
        );
        let rows = sqlx::query(&sql)
            .bind(limit as i64)
            .fetch_all(&self.pool)
            .await
            .map_err(repo_error)?;
        rows.iter().map(order_row).collect()
    }

    async fn pool_stats(&self) -> Result<(usize, Option<i64>), RepoError> {
        let row = sqlx::query(
            "SELECT count(*) AS n, (extract(epoch FROM min(pooled_at)) * 1000)::bigint AS oldest
             FROM dispatch_orders WHERE pooled_at IS NOT NULL AND status = 'PENDING'",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(repo_error)?;
        let n: i64 = row.try_get("n").map_err(repo_error)?;
        Ok((n as usize, row.try_get("oldest").map_err(repo_error)?))
    }

    async fn hub_pool_len(&self, hub_id: &str) -> Result<usize, RepoError> {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM dispatch_orders
             WHERE pooled_at IS NOT NULL AND status = 'PENDING' AND hub_id = $1",
        )
        .bind(hub_id)
        .fetch_one(&self.pool)
        .await
        .map_err(repo_error)?;
        Ok(n as usize)
    }

    async fn candidates(&self) -> Result<Vec<Driver>, RepoError> {
        let sql = format!(
            "SELECT {DRIVER_COLS} FROM drivers
             WHERE status = 'IDLE' AND lat IS NOT NULL AND lng IS NOT NULL AND load < max_load ORDER BY id"
        );
        let rows = sqlx::query(&sql)
            .fetch_all(&self.pool)
            .await
            .map_err(repo_error)?;
        rows.iter().map(driver_row).collect()
    }

    async fn due_offers(&self, now_ms: i64, limit: usize) -> Result<Vec<Assignment>, RepoError> {
        let sql = format!(
            "SELECT {ASSIGNMENT_COLS} FROM dispatch_assignments
             WHERE status = 'PENDING' AND finished_at IS NULL AND expires_at <= {}
             ORDER BY expires_at, id LIMIT $2",
            ts!(1)
        );
        self.due_rows(&sql, now_ms, limit, assignment_row).await
    }

    async fn due_reassignments(&self, now_ms: i64, limit: usize) -> Result<Vec<Order>, RepoError> {
        let sql = format!(
            "SELECT {ORDER_COLS} FROM dispatch_orders
             WHERE reassign_due_at <= {} ORDER BY reassign_due_at, id LIMIT $2",
            ts!(1)
        );
        self.due_rows(&sql, now_ms, limit, order_row).await
    }

    async fn overdue(&self, now_ms: i64, limit: usize) -> Result<Vec<Order>, RepoError> {
        let sql = format!(
            "SELECT {ORDER_COLS} FROM dispatch_orders
             WHERE status = 'PENDING' AND deliver_by IS NOT NULL AND deliver_by <= {}
             ORDER BY deliver_by, id LIMIT $2",
            ts!(1)
        );
        self.due_rows(&sql, now_ms, limit, order_row).await
    }

    async fn commit(&self, w: &Write) -> Result<(), RepoError> {
        self.apply(w).await
    }
}
