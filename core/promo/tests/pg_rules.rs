//! The Postgres rule repository against a live Postgres (a fresh schema): the shared
//! conformance suite.

use qc_kit::testing::isolated_store_config;
use qc_promo::{conformance, PgRules};

#[tokio::test]
async fn postgres_rules_conform() {
    let cfg = isolated_store_config();
    let pool = qc_kit::pg::connect_and_migrate(&cfg, 2)
        .await
        .unwrap_or_else(|e| panic!("{e}\nstart Postgres with scripts/test.sh"));
    conformance::rules_conform(PgRules::new(pool.clone())).await;
    pool.close().await;
    qc_kit::pg::drop_schema(&cfg).await.unwrap();
}
