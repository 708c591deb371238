//! Postgres helpers: create the database when it is missing, isolate a schema, apply the
//! platform migrations under sqlx's advisory lock (safe when several instances start at once).

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgPool};

use crate::config::{check_schema_name, StoreConfig};
use crate::redis_kit::{BackendError, Cause};

/// The platform migrations in `migrations/`.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations");

/// Connects (creating the database and schema if needed) and applies the migrations.
pub async fn connect_and_migrate(
    cfg: &StoreConfig,
    max_connections: u32,
) -> Result<PgPool, BackendError> {
    let pool = connect(cfg, max_connections).await?;
    MIGRATOR
        .run(&pool)
        .await
        .map_err(|e| BackendError::Postgres(Cause::context("migrations failed", e)))?;
    Ok(pool)
}

/// Connects to `DATABASE_URL` with `search_path` set to the configured schema.
pub async fn connect(cfg: &StoreConfig, max_connections: u32) -> Result<PgPool, BackendError> {
    check_schema_name(&cfg.db_schema).map_err(|m| BackendError::Postgres(m.into()))?;
    let base = PgConnectOptions::from_str(&cfg.database_url)
        .map_err(|e| BackendError::Postgres(Cause::context("bad DATABASE_URL", e)))?;
    let shown = crate::redis_kit::redact_url(&cfg.database_url);
    ensure_database(&base).await.map_err(|e| match e {
        BackendError::Postgres(m) => {
            BackendError::Postgres(m.annotated(format!(" (DATABASE_URL {shown})")))
        }
        other => other,
    })?;
    if cfg.db_schema != "public" {
        ensure_schema(&base, &cfg.db_schema).await?;
    }
    let opts = base.options([("search_path", cfg.db_schema.as_str())]);
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(3))
        .connect_with(opts)
        .await
        .map_err(|e| BackendError::Postgres(Cause::context("cannot reach Postgres", e)))
}

/// Creates the database named in the URL when it does not exist; a concurrent creator is fine.
async fn ensure_database(base: &PgConnectOptions) -> Result<(), BackendError> {
    let name = base.get_database().unwrap_or("postgres").to_string();
    let probe = tokio::time::timeout(Duration::from_secs(5), base.connect()).await;
    match probe {
        Ok(Ok(conn)) => {
            conn.close().await.ok();
            return Ok(());
        }
        Ok(Err(e)) if is_missing_database(&e) => {}
        Ok(Err(e)) => {
            return Err(BackendError::Postgres(Cause::context(
                format!("cannot reach Postgres (database {name:?})"),
                e,
            )))
        }
        Err(_) => {
            return Err(BackendError::Postgres(
                format!("Postgres did not answer within 5 s (database {name:?})").into(),
            ))
        }
    }
    let mut admin = base
        .clone()
        .database("postgres")
        .connect()
        .await
        .map_err(|e| BackendError::Postgres(Cause::context("cannot reach Postgres", e)))?;
    let ident = name.replace('"', "\"\"");
    match sqlx::query(&format!("CREATE DATABASE \"{ident}\""))
        .execute(&mut admin)
        .await
    {
        Ok(_) => tracing::info!(database = %name, "created missing database"),
        Err(e) if sql_state(&e).as_deref() == Some("42P04") || is_unique(&e) => {}
        Err(e) => return Err(BackendError::Postgres(Cause::context("CREATE DATABASE", e))),
    }
    admin.close().await.ok();
    Ok(())
}

async fn ensure_schema(base: &PgConnectOptions, schema: &str) -> Result<(), BackendError> {
    let mut conn = base.connect().await?;
    // Concurrent `IF NOT EXISTS` can still race on the catalog's unique index.
    match sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))
        .execute(&mut conn)
        .await
    {
        Ok(_) => {}
        Err(e) if is_unique(&e) || sql_state(&e).as_deref() == Some("42P06") => {}
        Err(e) => return Err(e.into()),
    }
    conn.close().await.ok();
    Ok(())
}

/// Drops a schema and everything in it (test and simulator clean-up).
pub async fn drop_schema(cfg: &StoreConfig) -> Result<(), BackendError> {
    check_schema_name(&cfg.db_schema).map_err(|m| BackendError::Postgres(m.into()))?;
    if cfg.db_schema == "public" {
        return Err(BackendError::Postgres(
            "refusing to drop schema public".into(),
        ));
    }
    let base = PgConnectOptions::from_str(&cfg.database_url).map_err(BackendError::from)?;
    let mut conn = base.connect().await?;
    sqlx::query(&format!("DROP SCHEMA IF EXISTS {} CASCADE", cfg.db_schema))
        .execute(&mut conn)
        .await?;
    conn.close().await.ok();
    Ok(())
}

fn sql_state(e: &sqlx::Error) -> Option<String> {
    e.as_database_error()
        .and_then(|d| d.code())
        .map(|c| c.into_owned())
}

fn is_unique(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .is_some_and(|d| d.is_unique_violation())
}

fn is_missing_database(e: &sqlx::Error) -> bool {
    sql_state(e).as_deref() == Some("3D000")
}

/// `SELECT 1` with an upper bound, for readiness.
pub async fn ping(pool: &PgPool, timeout_ms: u64) -> Result<(), BackendError> {
    match tokio::time::timeout(
        Duration::from_millis(timeout_ms),
        sqlx::query("SELECT 1").execute(pool),
    )
    .await
    {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.into()),
        Err(_) => Err(BackendError::Timeout("postgres", timeout_ms)),
    }
}
