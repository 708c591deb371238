//! The Postgres catalog against a live Postgres (a fresh schema): the shared conformance suite.

use qc_catalog::{conformance, PgCatalog};
use qc_kit::testing::isolated_store_config;

#[tokio::test]
async fn postgres_catalog_conforms() {
    let cfg = isolated_store_config();
    let pool = qc_kit::pg::connect_and_migrate(&cfg, 2)
        .await
        .unwrap_or_else(|e| panic!("{e}\nstart Postgres with scripts/test.sh"));
    conformance::catalog_conforms(PgCatalog::new(pool.clone())).await;
    pool.close().await;
    qc_kit::pg::drop_schema(&cfg).await.unwrap();
}
