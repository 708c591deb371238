//! Several instances starting at once against a database that does not exist yet: one creates
//! it, all apply the migrations, none fails.

use qc_kit::pg::connect_and_migrate;
use qc_kit::testing::isolated_store_config;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_starts_create_the_database_and_migrate_once() {
    let mut cfg = isolated_store_config();
    let db = format!("qc_{}", cfg.db_schema);
    let base = cfg.database_url.rsplit_once('/').unwrap().0.to_string();
    cfg.database_url = format!("{base}/{db}");
    cfg.db_schema = "public".into();
    let starts = (0..4).map(|_| {
        let cfg = cfg.clone();
        tokio::spawn(async move { connect_and_migrate(&cfg, 2).await })
    });
    let pools: Vec<_> = futures::future::join_all(starts)
        .await
        .into_iter()
        .map(|r| r.unwrap().expect("every instance starts"))
        .collect();
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success")
        .fetch_one(&pools[0])
        .await
        .unwrap();
    assert_eq!(applied as usize, qc_kit::pg::MIGRATOR.iter().count());
    let tables: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'
         AND table_name IN ('inventory_stock', 'reservations', 'reservation_items', 'stock_movements')",
    )
    .fetch_one(&pools[1])
    .await
    .unwrap();
    assert_eq!(tables, 4);
    for p in pools {
        p.close().await;
    }
    let admin = sqlx::PgPool::connect(&format!("{base}/postgres"))
        .await
        .unwrap();
    sqlx::query(&format!("DROP DATABASE {db} WITH (FORCE)"))
        .execute(&admin)
        .await
        .unwrap();
}
