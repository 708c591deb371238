//! The Postgres adapter against a live Postgres: the shared conformance suite (a fresh schema per
//! check), and the `dispatch_queue` claimer under concurrent claimers.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use qc_dispatch::queue::{self, Settled};
use qc_dispatch::{conformance, PgRepo};
use qc_kit::config::StoreConfig;
use qc_kit::testing::isolated_store_config;
use serde_json::json;

async fn fresh(made: &Mutex<Vec<StoreConfig>>) -> PgRepo {
    let cfg = isolated_store_config();
    let pool = qc_kit::pg::connect_and_migrate(&cfg, 8)
        .await
        .unwrap_or_else(|e| panic!("{e}\nstart Postgres with scripts/test.sh"));
    made.lock().unwrap().push(cfg);
    PgRepo::new(pool)
}

async fn drop_all(made: &Mutex<Vec<StoreConfig>>) {
    let cfgs: Vec<StoreConfig> = made.lock().unwrap().drain(..).collect();
    for cfg in cfgs {
        qc_kit::pg::drop_schema(&cfg).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pg_repo_conforms() {
    let made = Arc::new(Mutex::new(Vec::new()));
    conformance::run_all(|| fresh(&made)).await;
    drop_all(&made).await;
}

fn payload(lat: f64) -> serde_json::Value {
    json!({"customer_id": "c1", "items": [{"product_id": "sku-1", "name": "", "quantity": 1}],
           "delivery_location": {"lat": lat, "lng": 106.8}, "total": 1000})
}

const T0: i64 = 1_764_000_000_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_claimers_take_each_row_once() {
    let made = Mutex::new(Vec::new());
    let repo = fresh(&made).await;
    let pool = repo.pool().clone();
    for i in 0..400 {
        let priority = (i % 3) as i16 + 1;
        assert!(queue::enqueue(
            &pool,
            &format!("o{i:03}"),
            "hub-1",
            priority,
            &payload(-6.2),
            T0
        )
        .await
        .unwrap());
    }
    assert!(
        !queue::enqueue(&pool, "o000", "hub-1", 1, &payload(-6.2), T0)
            .await
            .unwrap(),
        "ON CONFLICT DO NOTHING"
    );
    // Four claimers race on their own connections until the queue is empty.
    let claimers = (0..4).map(|k| {
        let pool = pool.clone();
        tokio::spawn(async move {
            let me = format!("instance-{k}");
            let mut got = Vec::new();
            loop {
                let batch = queue::claim(&pool, &me, T0, 7).await.unwrap();
                if batch.is_empty() {
                    break got;
                }
                for row in batch {
                    assert_eq!(
                        queue::settle(&pool, &me, &row, None, T0).await.unwrap(),
                        Settled::Done
                    );
                    got.push(row.order_id);
                }
            }
        })
    });
    let mut all = Vec::new();
    for c in claimers {
        all.extend(c.await.unwrap());
    }
    let unique: BTreeSet<&String> = all.iter().collect();
    assert_eq!(
        (all.len(), unique.len()),
        (400, 400),
        "every row claimed exactly once"
    );
    let left: i64 =
        sqlx::query_scalar("SELECT count(*) FROM dispatch_queue WHERE status <> 'done'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(left, 0);
    drop_all(&made).await;
}

#[tokio::test]
async fn claims_order_by_priority_back_off_fail_and_go_stale() {
    let made = Mutex::new(Vec::new());
    let repo = fresh(&made).await;
    let pool = repo.pool().clone();
    queue::enqueue(&pool, "low", "hub-1", 1, &payload(-6.2), T0)
        .await
        .unwrap();
    queue::enqueue(&pool, "high", "hub-1", 9, &payload(-6.2), T0)
        .await
        .unwrap();
    queue::enqueue(&pool, "later", "hub-1", 9, &payload(-6.2), T0 + 10_000)
        .await
        .unwrap();
    queue::enqueue(&pool, "bad", "hub-1", 1, &json!({"customer_id": "c1"}), T0)
        .await
        .unwrap();
    let rows = queue::claim(&pool, "a", T0, 50).await.unwrap();
    let ids: Vec<&str> = rows.iter().map(|r| r.order_id.as_str()).collect();
    assert_eq!(
        ids,
        ["high", "low", "bad"],
        "priority first, future rows wait"
    );
    let bad = rows.iter().find(|r| r.order_id == "bad").unwrap();
    let why = bad.to_order().unwrap_err().0;
    assert!(why.contains("items"), "{why}");
    assert_eq!(
        queue::settle(&pool, "a", bad, Some((&why, true)), T0)
            .await
            .unwrap(),
        Settled::Failed
    );
    let high = rows.iter().find(|r| r.order_id == "high").unwrap();
    let order = high.to_order().unwrap();
    assert_eq!((order.id.as_str(), order.priority), ("high", 9));
    // A transient failure backs off 2^attempts s.
    assert_eq!(
        queue::settle(&pool, "a", high, Some(("db down", false)), T0)
            .await
            .unwrap(),
        Settled::Retry { after_ms: 2000 }
    );
    assert!(queue::claim(&pool, "a", T0 + 1999, 50)
        .await
        .unwrap()
        .is_empty());
    let again = queue::claim(&pool, "b", T0 + 2000, 50).await.unwrap();
    assert_eq!(
        again
            .iter()
            .map(|r| (r.order_id.as_str(), r.attempts))
            .collect::<Vec<_>>(),
        [("high", 2)]
    );
    // Settling a row someone else holds changes nothing.
    queue::settle(&pool, "a", &again[0], None, T0)
        .await
        .unwrap();
    let status: String =
        sqlx::query_scalar("SELECT status FROM dispatch_queue WHERE order_id = 'high'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(status, "claimed");
    // "low" was claimed at T0 and never settled: stale after 60 s, claimable again.
    assert_eq!(queue::release_stale(&pool, T0 + 59_999).await.unwrap(), 0);
    assert_eq!(queue::release_stale(&pool, T0 + 60_000).await.unwrap(), 1);
    // "later" became available at T0 + 10 s; "high" (claimed at T0 + 2 s) is stale by T0 + 62 s.
    let mut back: Vec<_> = queue::claim(&pool, "b", T0 + 60_000, 50).await.unwrap();
    back.sort_by(|a, b| a.order_id.cmp(&b.order_id));
    assert_eq!(
        back.iter().map(|r| r.order_id.as_str()).collect::<Vec<_>>(),
        ["later", "low"]
    );
    // Five attempts, then failed for good.
    let mut row = back.into_iter().find(|r| r.order_id == "low").unwrap();
    let mut now = T0 + 60_000;
    loop {
        match queue::settle(&pool, "b", &row, Some(("transient", false)), now)
            .await
            .unwrap()
        {
            Settled::Retry { after_ms } => {
                now += after_ms;
                row = queue::claim(&pool, "b", now, 50)
                    .await
                    .unwrap()
                    .into_iter()
                    .find(|r| r.order_id == "low")
                    .unwrap();
            }
            Settled::Failed => break,
            Settled::Done => unreachable!(),
        }
    }
    assert_eq!(row.attempts, queue::MAX_ATTEMPTS);
    let (status, err): (String, Option<String>) =
        sqlx::query_as("SELECT status, last_error FROM dispatch_queue WHERE order_id = 'low'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(
        (status.as_str(), err.as_deref()),
        ("failed", Some("transient"))
    );
    drop_all(&made).await;
}
