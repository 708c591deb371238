//! Crash safety of the checkout saga with real processes (issue #13): `qc serve checkout` is
//! stopped at each saga point (`CHECKOUT_FAILPOINT`) and killed with SIGKILL there, one order
//! per point; then a fresh process starts and its saga recovery finishes every order. At the
//! end: no stock held without an order, no charge without a confirmed order or a refund, every
//! confirmed order has its `dispatch_queue` row and outbox events, every undone order released
//! its promo and none of its rows were queued or announced. Promo runs as its own `qc` process;
//! the payment gateway is 04's simulator over HTTP in this test (its ledger outlives the kills).

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{wait_ready, Qc};
use qc_checkout::saga::POINTS;
use qc_checkout::SimulatedGateway;
use qc_inventory::store::HoldPolicy;
use qc_inventory::{HubId, RedisStore, SetStockCommand, Sku, StockSetReason, StockStore};
use qc_kit::redis_kit::KeyPrefix;
use qc_kit::testing::{delete_prefix, free_port, isolated_store_config, redis_for_test};
use serde_json::{json, Value};

const PRICES: &str = r#"{"milk": 18500, "bread": 15000}"#;

fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

async fn post(url: &str, key: Option<&str>, body: Value) -> Result<(u16, Value), String> {
    let mut r = reqwest::Client::new().post(url).json(&body);
    if let Some(k) = key {
        r = r.header("Idempotency-Key", k);
    }
    let r = r.send().await.map_err(|e| e.to_string())?;
    let status = r.status().as_u16();
    Ok((status, r.json().await.unwrap_or(Value::Null)))
}

fn cart(user: &str, milk: u32) -> Value {
    json!({"user_id": user, "hub_id": "jkt-01",
        "items": [{"sku": "milk", "quantity": milk}, {"sku": "bread", "quantity": 1}],
        "payment": {"method": "card", "card_token": "tok_visa"},
        "delivery_location": {"lat": -6.21, "lng": 106.81}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_every_saga_point_then_a_restart_leaves_nothing_stranded() {
    let store = isolated_store_config();
    let gateway = Arc::new(SimulatedGateway::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gateway_url = format!("http://{}", listener.local_addr().unwrap());
    let router = qc_services::checkout::gateway_simulator(gateway.clone());
    tokio::spawn(async move { axum::serve(listener, router).await });

    let promo_port = free_port();
    let promo = blocking(|| {
        let p = Qc::spawn(
            &["serve", "promo"],
            &store,
            &[("PORT", promo_port.to_string())],
        );
        wait_ready(promo_port, Duration::from_secs(30));
        p
    });
    let promo_url = format!("http://127.0.0.1:{promo_port}");
    let (s, rule) = post(
        &format!("{promo_url}/api/v1/promo/admin/rules"),
        None,
        json!({"name": "10% off", "conditions": {"type": "min_transaction", "min_amount": 10000},
               "effect": {"type": "percentage", "value": 10}, "limits": {"max_total": 100}}),
    )
    .await
    .unwrap();
    assert_eq!(s, 201, "{rule}");
    let rule_id = rule["data"]["id"].as_str().unwrap().to_string();

    let conn = redis_for_test(&store).await;
    let inventory = RedisStore::new(
        conn.clone(),
        KeyPrefix::new(store.key_prefix.clone()),
        HoldPolicy::default(),
        2000,
    );
    let hub = HubId::parse("jkt-01").unwrap();
    for sku in ["milk", "bread"] {
        inventory
            .set_stock(
                1,
                &SetStockCommand {
                    hub_id: hub.clone(),
                    sku: Sku::parse(sku).unwrap(),
                    on_hand: 40,
                    buckets: 1,
                    reason: StockSetReason::AdminSet,
                    actor: "t".into(),
                },
            )
            .await
            .unwrap();
    }

    let port = free_port();
    let checkout_env = |extra: &[(&'static str, String)]| {
        let mut env = vec![
            ("PORT", port.to_string()),
            ("PROMO_URL", promo_url.clone()),
            ("CHECKOUT_PAYMENT_GATEWAY_URL", gateway_url.clone()),
            ("CHECKOUT_PRICES", PRICES.to_string()),
        ];
        env.extend(extra.iter().cloned());
        env
    };
    let url = format!("http://127.0.0.1:{port}/api/v1/checkout");

    // One order per point, each process killed there.
    for (i, point) in POINTS.iter().enumerate() {
        let mut qc = blocking(|| {
            let qc = Qc::spawn(
                &["serve", "checkout"],
                &store,
                &checkout_env(&[
                    ("CHECKOUT_FAILPOINT", point.to_string()),
                    ("CHECKOUT_RECOVERY_MS", "3600000".into()),
                ]),
            );
            wait_ready(port, Duration::from_secs(30));
            qc
        });
        let (u, body) = (format!("u-{i}"), cart(&format!("u-{i}"), 2));
        let key = format!("k-{i}");
        let url = url.clone();
        let call = tokio::spawn(async move { post(&url, Some(&key), body).await });
        blocking(|| qc.wait_line(&format!("FAILPOINT {point}"), Duration::from_secs(20)));
        blocking(|| qc.kill9());
        assert!(
            call.await.unwrap().is_err(),
            "{u}: the client got no answer from a killed process"
        );
    }

    // A fresh process: its recovery takes over every pending order.
    let qc = blocking(|| {
        let qc = Qc::spawn(
            &["serve", "checkout"],
            &store,
            &checkout_env(&[
                ("CHECKOUT_RECOVERY_MS", "100".into()),
                ("CHECKOUT_RECOVERY_IDLE_MS", "300".into()),
            ]),
        );
        wait_ready(port, Duration::from_secs(30));
        qc
    });
    let pool = qc_kit::pg::connect(&store, 2).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let orders: Vec<(String, String, String, Option<String>, i64)> = loop {
        let rows = sqlx::query_as(
            "SELECT user_id, status, payment_status, transaction_id, total FROM checkout_orders
             ORDER BY user_id",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        let rows: Vec<(String, String, String, Option<String>, i64)> = rows;
        if rows.len() == POINTS.len() && rows.iter().all(|r| r.1 != "pending") {
            break rows;
        }
        assert!(Instant::now() < deadline, "not recovered: {rows:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    // Before the charge: undone. From the charge on: confirmed (rolled forward).
    let expected = [
        ("u-0", "cancelled", "none"),
        ("u-1", "cancelled", "none"),
        ("u-2", "cancelled", "none"),
        ("u-3", "confirmed", "charged"),
        ("u-4", "confirmed", "charged"),
        ("u-5", "confirmed", "charged"),
    ];
    let got: Vec<(&str, &str, &str)> = orders
        .iter()
        .map(|o| (o.0.as_str(), o.1.as_str(), o.2.as_str()))
        .collect();
    assert_eq!(got, expected, "per point: {POINTS:?}");

    // Stock: nothing held; sold exactly what the confirmed orders bought.
    for (sku, each) in [("milk", 2), ("bread", 1)] {
        let s = inventory
            .stock(&hub, &Sku::parse(sku).unwrap())
            .await
            .unwrap();
        assert_eq!((s.available, s.reserved), (40 - 3 * each, 0), "{sku}");
    }

    // Money: every charge belongs to a confirmed order with that transaction, or was refunded.
    let charges = gateway.charges.lock().unwrap().clone();
    let refunds = gateway.refunds.lock().unwrap().clone();
    let confirmed: BTreeMap<String, i64> = orders
        .iter()
        .filter(|o| o.1 == "confirmed")
        .map(|o| (o.3.clone().unwrap(), o.4))
        .collect();
    assert_eq!(charges.len(), 3, "{charges:?}");
    for (key, (txn, amount)) in &charges {
        let refunded = refunds.contains_key(&format!("refund:{key}"));
        assert!(
            confirmed.get(txn) == Some(amount) || refunded,
            "charge {txn} of {amount}: no confirmed order, no refund"
        );
    }

    // Hand-over: each confirmed order queued once and announced; the undone ones neither.
    let queued: Vec<String> = sqlx::query_scalar(
        "SELECT o.user_id FROM dispatch_queue q JOIN checkout_orders o ON o.id::text = q.order_id
         ORDER BY 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(queued, ["u-3", "u-4", "u-5"]);
    let events: Vec<(String, String)> = sqlx::query_as(
        "SELECT o.user_id, e.event_type FROM checkout_outbox e
         JOIN checkout_orders o ON o.id = e.aggregate_id ORDER BY 1, 2",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let mut want = Vec::new();
    for u in ["u-3", "u-4", "u-5"] {
        want.push((u.to_string(), "order.confirmed".to_string()));
        want.push((u.to_string(), "payment.charged".to_string()));
    }
    assert_eq!(events, want);

    // Promo: only the confirmed orders still count against the rule.
    let usage: Value = reqwest::get(format!(
        "{promo_url}/api/v1/promo/admin/rules/{rule_id}/usage"
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(usage["data"]["total"], 3, "{usage}");

    // And the restarted process takes new orders.
    let (s, b) = post(&url, Some("k-new"), cart("u-new", 1)).await.unwrap();
    assert_eq!(s, 201, "{b}");

    blocking(|| {
        qc.kill9();
        promo.kill9();
    });
    let mut c = conn.clone();
    delete_prefix(&mut c, &KeyPrefix::new(store.key_prefix.clone()))
        .await
        .unwrap();
    qc_kit::pg::drop_schema(&store).await.unwrap();
}
