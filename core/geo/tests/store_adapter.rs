//! The Redis + Postgres adapter of the hub store against live stores: the shared conformance
//! suite, each check on a fresh key prefix and schema.

use std::sync::Mutex;

use qc_geo::registry::GeoKeys;
use qc_geo::{conformance, RedisPgHubs};
use qc_kit::config::StoreConfig;
use qc_kit::redis_kit::KeyPrefix;
use qc_kit::testing::{delete_prefix, isolated_store_config, redis_for_test};

async fn fresh(made: &Mutex<Vec<StoreConfig>>) -> RedisPgHubs {
    let cfg = isolated_store_config();
    let conn = redis_for_test(&cfg).await;
    let mut c = conn.clone();
    qc_kit::scripts::preload(&mut c).await.unwrap();
    let pool = qc_kit::pg::connect_and_migrate(&cfg, 4)
        .await
        .unwrap_or_else(|e| panic!("{e}\nstart Postgres with scripts/test.sh"));
    let keys = GeoKeys::new(KeyPrefix::new(cfg.key_prefix.clone()));
    made.lock().unwrap().push(cfg);
    RedisPgHubs {
        conn,
        pool,
        keys,
        timeout_ms: 2000,
        lookup_timeout_ms: 2000,
    }
}

#[tokio::test]
async fn redis_pg_hubs_conform() {
    let made = Mutex::new(Vec::new());
    conformance::run_all(|| fresh(&made)).await;
    let cfgs: Vec<StoreConfig> = made.lock().unwrap().drain(..).collect();
    for cfg in cfgs {
        let mut conn = redis_for_test(&cfg).await;
        delete_prefix(&mut conn, &KeyPrefix::new(cfg.key_prefix.clone()))
            .await
            .unwrap();
        qc_kit::pg::drop_schema(&cfg).await.unwrap();
    }
}
