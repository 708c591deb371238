//! Test isolation helpers: a fresh key prefix and Postgres schema per test, removed afterwards,
//! so tests share one Redis and one Postgres and still run in parallel.

use redis::aio::ConnectionManager;

use crate::config::{EnvSource, StoreConfig};
use crate::redis_kit::{connect, KeyPrefix};

/// Store settings from the environment (defaults: local Redis and Postgres) with a unique
/// `t<random>:` key prefix and `t_<random>` schema.
pub fn isolated_store_config() -> StoreConfig {
    let env = EnvSource::from_process();
    let mut r = env.reader();
    let mut cfg = StoreConfig::read(&mut r);
    r.finish().expect("test environment configuration");
    let tag = uuid::Uuid::new_v4().simple().to_string();
    cfg.key_prefix = format!("t{}:", &tag[..12]);
    cfg.db_schema = format!("t_{}", &tag[..12]);
    cfg
}

/// A Redis connection for a test, with a clear message when Redis is not running.
pub async fn redis_for_test(cfg: &StoreConfig) -> ConnectionManager {
    connect(&cfg.redis_url, cfg.redis_timeout_ms.max(2000))
        .await
        .unwrap_or_else(|e| {
            panic!("{e}\nstart Redis with scripts/test.sh (it starts Redis and Postgres)")
        })
}

/// Deletes every key under `prefix`.
pub async fn delete_prefix(
    conn: &mut ConnectionManager,
    prefix: &KeyPrefix,
) -> redis::RedisResult<u64> {
    assert!(!prefix.as_str().is_empty(), "refusing to delete every key");
    let keys = keys_under(conn, prefix).await?;
    for chunk in keys.chunks(1000) {
        let _: () = redis::cmd("DEL").arg(chunk).query_async(conn).await?;
    }
    Ok(keys.len() as u64)
}

/// Keys under `prefix`, sorted (for asserting that nothing changed).
pub async fn keys_under(
    conn: &mut ConnectionManager,
    prefix: &KeyPrefix,
) -> redis::RedisResult<Vec<String>> {
    let mut cursor: u64 = 0;
    let mut all = Vec::new();
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{}*", prefix.as_str()))
            .arg("COUNT")
            .arg(1000)
            .query_async(conn)
            .await?;
        all.extend(keys);
        if next == 0 {
            all.sort();
            return Ok(all);
        }
        cursor = next;
    }
}

/// A loopback port that was free a moment ago (for a child process or server to bind).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}
