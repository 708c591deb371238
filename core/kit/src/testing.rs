//! Test isolation helpers: a fresh key prefix and Postgres schema per test, removed afterwards,
//! so tests share one Redis and one Postgres and still run in parallel.

use redis::aio::ConnectionManager;

use crate::config::{EnvSource, StoreConfig};
use crate::redis_kit::connect;
pub use crate::redis_kit::{delete_prefix, keys_under};

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

/// A loopback port that was free a moment ago (for a child process or server to bind).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}
