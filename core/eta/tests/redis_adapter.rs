//! The Redis adapter against a live Redis: the shared conformance suite, a fresh prefix per
//! check; the filter scripts must agree with the pure filter to 1e-12.

use qc_eta::{conformance, RedisEtaStore};
use qc_kit::testing::Prefixes;

#[tokio::test]
async fn redis_store_conforms() {
    let prefixes = Prefixes::default();
    conformance::run_all(|| async {
        let (conn, prefix) = prefixes.fresh().await;
        RedisEtaStore::new(conn, prefix, 2000)
    })
    .await;
    prefixes.cleanup().await;
}
