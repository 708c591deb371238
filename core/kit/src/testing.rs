//! Test isolation helpers: a fresh key prefix and Postgres schema per test, removed afterwards,
//! so tests share one Redis and one Postgres and still run in parallel.

use redis::aio::ConnectionManager;

use crate::config::{EnvSource, StoreConfig};
use crate::redis_kit::{connect, KeyPrefix};
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

/// Fresh key prefixes on the test Redis, one per store a conformance suite makes, all deleted
/// by [`Prefixes::cleanup`].
#[derive(Debug, Default)]
pub struct Prefixes {
    made: std::sync::Mutex<Vec<(ConnectionManager, KeyPrefix)>>,
}

impl Prefixes {
    /// A connection and a prefix no other test uses.
    pub async fn fresh(&self) -> (ConnectionManager, KeyPrefix) {
        let cfg = isolated_store_config();
        let conn = redis_for_test(&cfg).await;
        let prefix = KeyPrefix::new(cfg.key_prefix.clone());
        self.made
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((conn.clone(), prefix.clone()));
        (conn, prefix)
    }

    /// Deletes every key under every prefix handed out.
    pub async fn cleanup(self) {
        let made = self.made.into_inner().unwrap_or_else(|p| p.into_inner());
        for (mut conn, prefix) in made {
            delete_prefix(&mut conn, &prefix)
                .await
                .expect("test keys deleted");
        }
    }
}

/// A loopback port that was free a moment ago (for a child process or server to bind).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}
