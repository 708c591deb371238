//! The Redis adapter against a live Redis: the shared conformance suite, a fresh prefix per
//! check; the filter scripts must agree with the pure filter to 1e-12.

use std::sync::Mutex;

use qc_eta::{conformance, RedisEtaStore};
use qc_kit::redis_kit::KeyPrefix;
use qc_kit::testing::{delete_prefix, isolated_store_config, redis_for_test};

#[tokio::test]
async fn redis_store_conforms() {
    let made: Mutex<Vec<(redis::aio::ConnectionManager, KeyPrefix)>> = Mutex::new(Vec::new());
    conformance::run_all(|| async {
        let cfg = isolated_store_config();
        let conn = redis_for_test(&cfg).await;
        let prefix = KeyPrefix::new(cfg.key_prefix.clone());
        made.lock().unwrap().push((conn.clone(), prefix.clone()));
        RedisEtaStore::new(conn, prefix, 2000)
    })
    .await;
    let all: Vec<_> = made.lock().unwrap().drain(..).collect();
    for (mut conn, prefix) in all {
        delete_prefix(&mut conn, &prefix).await.unwrap();
    }
}
