//! The rule repository port (05 §7, §8): rules are the system of record in Postgres, versioned,
//! with an audit row per write (create, replace, expire). Adapters: [`MemoryRules`] here and
//! [`PgRules`]; both pass `conformance::rules_conform`.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Mutex;

use qc_kit::redis_kit::BackendError;
use serde_json::{json, Value};
use sqlx::{PgPool, Row as _};

use crate::engine::Rule;
use crate::rule::{rfc3339, RuleBody, Status};

/// One audit row.
#[derive(Debug, Clone, PartialEq)]
pub struct Audit {
    pub version: i64,
    pub action: String,
    pub body: Value,
    pub at_ms: i64,
}

impl Rule {
    /// The rule as the API shows it.
    pub fn to_json(&self) -> Value {
        let mut v = self.body.to_json();
        v["id"] = json!(self.id);
        v["created_at"] = json!(rfc3339(self.created_at_ms));
        v["updated_at"] = json!(rfc3339(self.updated_at_ms));
        v["version"] = json!(self.version);
        v
    }
}

pub trait RuleRepo: Send + Sync {
    /// Stores a new rule (version 1) and its `create` audit row.
    fn create(&self, rule: &Rule) -> impl Future<Output = Result<(), BackendError>> + Send;
    /// Full replace (counters are elsewhere and kept): version + 1, a `replace` audit row.
    /// None if the rule does not exist.
    fn replace(
        &self,
        id: &str,
        body: &RuleBody,
        now_ms: i64,
    ) -> impl Future<Output = Result<Option<Rule>, BackendError>> + Send;
    fn get(&self, id: &str) -> impl Future<Output = Result<Option<Rule>, BackendError>> + Send;
    /// Every rule, priority desc then id asc.
    fn list(&self) -> impl Future<Output = Result<Vec<Rule>, BackendError>> + Send;
    fn audit(&self, id: &str) -> impl Future<Output = Result<Vec<Audit>, BackendError>> + Send;
    /// Rules whose `end_at` has passed become `expired` (terminal); returns how many.
    fn expire_due(&self, now_ms: i64) -> impl Future<Output = Result<usize, BackendError>> + Send;
}

fn sorted(mut v: Vec<Rule>) -> Vec<Rule> {
    v.sort_by(|a, b| b.body.priority.cmp(&a.body.priority).then(a.id.cmp(&b.id)));
    v
}

/// Rules by id, and each rule's audit rows.
type Book = (BTreeMap<String, Rule>, BTreeMap<String, Vec<Audit>>);

#[derive(Debug, Default)]
pub struct MemoryRules {
    inner: Mutex<Book>,
}

impl MemoryRules {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Book> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl RuleRepo for MemoryRules {
    async fn create(&self, rule: &Rule) -> Result<(), BackendError> {
        let mut g = self.lock();
        if g.0.contains_key(&rule.id) {
            return Err(BackendError::Postgres(
                format!("rule {} exists", rule.id).into(),
            ));
        }
        g.0.insert(rule.id.clone(), rule.clone());
        g.1.entry(rule.id.clone()).or_default().push(Audit {
            version: rule.version,
            action: "create".into(),
            body: rule.body.to_json(),
            at_ms: rule.created_at_ms,
        });
        Ok(())
    }

    async fn replace(
        &self,
        id: &str,
        body: &RuleBody,
        now_ms: i64,
    ) -> Result<Option<Rule>, BackendError> {
        let mut g = self.lock();
        let Some(r) = g.0.get_mut(id) else {
            return Ok(None);
        };
        r.body = body.clone();
        r.version += 1;
        r.updated_at_ms = now_ms;
        let out = r.clone();
        g.1.entry(id.to_string()).or_default().push(Audit {
            version: out.version,
            action: "replace".into(),
            body: body.to_json(),
            at_ms: now_ms,
        });
        Ok(Some(out))
    }

    async fn get(&self, id: &str) -> Result<Option<Rule>, BackendError> {
        Ok(self.lock().0.get(id).cloned())
    }

    async fn list(&self) -> Result<Vec<Rule>, BackendError> {
        Ok(sorted(self.lock().0.values().cloned().collect()))
    }

    async fn audit(&self, id: &str) -> Result<Vec<Audit>, BackendError> {
        Ok(self.lock().1.get(id).cloned().unwrap_or_default())
    }

    async fn expire_due(&self, now_ms: i64) -> Result<usize, BackendError> {
        let mut g = self.lock();
        let (rules, audit) = &mut *g;
        let mut n = 0;
        for r in rules.values_mut() {
            if r.body.status != Status::Expired && r.body.end_at_ms.is_some_and(|e| e < now_ms) {
                r.body.status = Status::Expired;
                r.version += 1;
                r.updated_at_ms = now_ms;
                audit.entry(r.id.clone()).or_default().push(Audit {
                    version: r.version,
                    action: "expire".into(),
                    body: r.body.to_json(),
                    at_ms: now_ms,
                });
                n += 1;
            }
        }
        Ok(n)
    }
}

/// Postgres adapter (`promo_rules`, `promo_rule_audit`). Times are epoch ms from the Clock.
#[derive(Debug, Clone)]
pub struct PgRules {
    pool: PgPool,
}

fn pg(e: sqlx::Error) -> BackendError {
    e.into()
}

const COLS: &str = "id, name, conditions, priority, effect, limits, stackable, exclusivity_group,
    max_stackable, (extract(epoch FROM start_at) * 1000)::bigint AS start_ms,
    (extract(epoch FROM end_at) * 1000)::bigint AS end_ms, status,
    (extract(epoch FROM created_at) * 1000)::bigint AS created_ms,
    (extract(epoch FROM updated_at) * 1000)::bigint AS updated_ms, version";

fn row(r: &sqlx::postgres::PgRow) -> Result<Rule, BackendError> {
    let time = |c: &str| -> Result<Value, BackendError> {
        Ok(r.try_get::<Option<i64>, _>(c)
            .map_err(pg)?
            .map_or(Value::Null, |ms| json!(rfc3339(ms))))
    };
    let body = json!({
        "name": r.try_get::<String, _>("name").map_err(pg)?,
        "conditions": r.try_get::<Value, _>("conditions").map_err(pg)?,
        "priority": r.try_get::<i64, _>("priority").map_err(pg)?,
        "effect": r.try_get::<Value, _>("effect").map_err(pg)?,
        "limits": r.try_get::<Value, _>("limits").map_err(pg)?,
        "stackable": r.try_get::<bool, _>("stackable").map_err(pg)?,
        "exclusivity_group": r.try_get::<Option<String>, _>("exclusivity_group").map_err(pg)?,
        "max_stackable": r.try_get::<i32, _>("max_stackable").map_err(pg)?,
        "start_at": time("start_ms")?,
        "end_at": time("end_ms")?,
    });
    let mut parsed = RuleBody::parse(&body)
        .map_err(|e| BackendError::Postgres(format!("stored rule unreadable: {e}").into()))?;
    let status: String = r.try_get("status").map_err(pg)?;
    parsed.status = Status::parse(&status)
        .ok_or_else(|| BackendError::Postgres(format!("bad status {status}").into()))?;
    Ok(Rule {
        id: r.try_get("id").map_err(pg)?,
        body: parsed,
        created_at_ms: r.try_get("created_ms").map_err(pg)?,
        updated_at_ms: r.try_get("updated_ms").map_err(pg)?,
        version: r.try_get("version").map_err(pg)?,
    })
}

impl PgRules {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    async fn write_audit(
        tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
        id: &str,
        version: i64,
        action: &str,
        body: &Value,
        at_ms: i64,
    ) -> Result<(), BackendError> {
        sqlx::query(
            "INSERT INTO promo_rule_audit (rule_id, version, action, body, at)
             VALUES ($1, $2, $3, $4, to_timestamp($5::float8 / 1000))",
        )
        .bind(id)
        .bind(version)
        .bind(action)
        .bind(body)
        .bind(at_ms)
        .execute(&mut **tx)
        .await
        .map_err(pg)?;
        Ok(())
    }
}

/// Binds a body's columns after `$1` = id: $2 name … $11 status.
fn bind_body<'q>(
    q: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    b: &'q RuleBody,
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    q.bind(&b.name)
        .bind(b.conditions.to_json())
        .bind(b.priority)
        .bind(b.effect.to_json())
        .bind(b.limits_json())
        .bind(b.stackable)
        .bind(&b.exclusivity_group)
        .bind(b.max_stackable as i32)
        .bind(b.start_at_ms)
        .bind(b.end_at_ms)
        .bind(b.status.as_str())
}

impl RuleRepo for PgRules {
    async fn create(&self, rule: &Rule) -> Result<(), BackendError> {
        let mut tx = self.pool.begin().await.map_err(pg)?;
        let q = sqlx::query(
            "INSERT INTO promo_rules (id, name, conditions, priority, effect, limits, stackable,
                 exclusivity_group, max_stackable, start_at, end_at, status, created_at, updated_at, version)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9,
                 to_timestamp($10::float8 / 1000), to_timestamp($11::float8 / 1000), $12,
                 to_timestamp($13::float8 / 1000), to_timestamp($13::float8 / 1000), $14)",
        )
        .bind(&rule.id);
        bind_body(q, &rule.body)
            .bind(rule.created_at_ms)
            .bind(rule.version)
            .execute(&mut *tx)
            .await
            .map_err(pg)?;
        Self::write_audit(
            &mut tx,
            &rule.id,
            rule.version,
            "create",
            &rule.body.to_json(),
            rule.created_at_ms,
        )
        .await?;
        tx.commit().await.map_err(pg)
    }

    async fn replace(
        &self,
        id: &str,
        body: &RuleBody,
        now_ms: i64,
    ) -> Result<Option<Rule>, BackendError> {
        let mut tx = self.pool.begin().await.map_err(pg)?;
        let sql = format!(
            "UPDATE promo_rules SET name = $2, conditions = $3, priority = $4, effect = $5,
                 limits = $6, stackable = $7, exclusivity_group = $8, max_stackable = $9,
                 start_at = to_timestamp($10::float8 / 1000), end_at = to_timestamp($11::float8 / 1000),
                 status = $12, updated_at = to_timestamp($13::float8 / 1000), version = version + 1
             WHERE id = $1 RETURNING {COLS}"
        );
        let q = sqlx::query(&sql).bind(id);
        let Some(r) = bind_body(q, body)
            .bind(now_ms)
            .fetch_optional(&mut *tx)
            .await
            .map_err(pg)?
        else {
            return Ok(None);
        };
        let rule = row(&r)?;
        Self::write_audit(
            &mut tx,
            id,
            rule.version,
            "replace",
            &body.to_json(),
            now_ms,
        )
        .await?;
        tx.commit().await.map_err(pg)?;
        Ok(Some(rule))
    }

    async fn get(&self, id: &str) -> Result<Option<Rule>, BackendError> {
        sqlx::query(&format!("SELECT {COLS} FROM promo_rules WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(pg)?
            .as_ref()
            .map(row)
            .transpose()
    }

    async fn list(&self) -> Result<Vec<Rule>, BackendError> {
        sqlx::query(&format!(
            "SELECT {COLS} FROM promo_rules ORDER BY priority DESC, id ASC"
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(pg)?
        .iter()
        .map(row)
        .collect()
    }

    async fn audit(&self, id: &str) -> Result<Vec<Audit>, BackendError> {
        let rows = sqlx::query(
            "SELECT version, action, body, (extract(epoch FROM at) * 1000)::bigint AS at_ms
             FROM promo_rule_audit WHERE rule_id = $1 ORDER BY version",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await
        .map_err(pg)?;
        rows.iter()
            .map(|r| {
                Ok(Audit {
                    version: r.try_get("version").map_err(pg)?,
                    action: r.try_get("action").map_err(pg)?,
                    body: r.try_get("body").map_err(pg)?,
                    at_ms: r.try_get("at_ms").map_err(pg)?,
                })
            })
            .collect()
    }

    async fn expire_due(&self, now_ms: i64) -> Result<usize, BackendError> {
        let mut tx = self.pool.begin().await.map_err(pg)?;
        let rows = sqlx::query(&format!(
            "UPDATE promo_rules SET status = 'expired', version = version + 1,
                 updated_at = to_timestamp($1::float8 / 1000)
             WHERE status <> 'expired' AND end_at < to_timestamp($1::float8 / 1000)
             RETURNING {COLS}"
        ))
        .bind(now_ms)
        .fetch_all(&mut *tx)
        .await
        .map_err(pg)?;
        for r in &rows {
            let rule = row(r)?;
            Self::write_audit(
                &mut tx,
                &rule.id,
                rule.version,
                "expire",
                &rule.body.to_json(),
                now_ms,
            )
            .await?;
        }
        tx.commit().await.map_err(pg)?;
        Ok(rows.len())
    }
}
