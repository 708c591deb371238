//! Promo over real HTTP on a loopback socket, live Redis and Postgres (issue #12): caps and
//! budgets under 1,000 concurrent applies, idempotent apply and release-once, rule CRUD with
//! versions, and bad input leaving Redis and Postgres unchanged.

use std::sync::Arc;

use qc_kit::config::{EnvSource, StoreConfig};
use qc_kit::redis_kit::KeyPrefix;
use qc_kit::testing::{delete_prefix, isolated_store_config, redis_for_test};
use qc_kit::ManualClock;
use qc_services::platform::config::PlatformConfig;
use qc_services::platform::shutdown::Shutdown;
use qc_services::promo::{self, PromoApp, PromoSettings};
use qc_tests::{code, redis_snapshot_of, serve_loopback, split, Api};
use serde_json::{json, Value};

/// 2026-12-01T08:00:00Z: 15:00 on a Tuesday in Jakarta.
const NOW: i64 = 1_796_112_000_000;

struct Promo {
    app: Arc<PromoApp>,
    api: Api,
    shutdown: Shutdown,
    store: StoreConfig,
}

impl Promo {
    async fn start() -> Self {
        Self::start_on(isolated_store_config(), &[]).await
    }

    async fn start_on(store: StoreConfig, env: &[(&str, &str)]) -> Self {
        let mut cfg = PlatformConfig::from_env(&EnvSource::from_pairs([])).unwrap();
        cfg.store = store.clone();
        let shutdown = Shutdown::new();
        let settings =
            PromoSettings::from_env(&EnvSource::from_pairs(env.iter().copied()), "test").unwrap();
        let (app, svc) = promo::build(
            &cfg,
            settings,
            Arc::new(ManualClock::new(NOW)),
            shutdown.clone(),
        )
        .await
        .unwrap_or_else(|e| panic!("promo did not start: {e}"));
        let (base, _) = serve_loopback(svc, &shutdown).await;
        Self {
            app,
            api: Api::new(base),
            shutdown,
            store,
        }
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.api.post(path, body).await
    }

    async fn put(&self, path: &str, body: Value) -> (u16, Value) {
        self.api.put(path, body).await
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.api.get(path).await
    }

    async fn rule(&self, body: Value) -> String {
        let (s, b) = self.post("/api/v1/promo/admin/rules", body).await;
        assert_eq!(s, 201, "{b}");
        b["data"]["id"].as_str().unwrap().to_string()
    }

    async fn finish(self) {
        self.shutdown.trigger();
        let mut conn = redis_for_test(&self.store).await;
        delete_prefix(&mut conn, &KeyPrefix::new(self.store.key_prefix.clone()))
            .await
            .unwrap();
        self.app.pool.close().await;
        qc_kit::pg::drop_schema(&self.store).await.unwrap();
    }
}

fn apply_body(user: &str, order: &str, total: i64) -> Value {
    json!({"user_id": user, "idempotency_key": order, "cart": {"cart_total": total, "area": "Jakarta"}})
}

async fn count(app: &PromoApp, sql: &str) -> i64 {
    sqlx::query_scalar::<_, i64>(sql)
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

/// 1,000 applies at once (user and order `<tag><i>`, Rp 50,000 each); their discounts.
async fn concurrent_applies(p: &Arc<Promo>, path: &'static str, tag: &'static str) -> Vec<i64> {
    let tasks: Vec<_> = (0..1000)
        .map(|i| {
            let p = p.clone();
            tokio::spawn(async move {
                let id = format!("{tag}{i}");
                let (s, b) = p.post(path, apply_body(&id, &id, 50_000)).await;
                assert_eq!(s, 200, "{b}");
                b["data"]["total_discount"].as_i64().unwrap()
            })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_concurrent_applies_take_exactly_the_cap_or_stay_within_the_budget() {
    let p = Arc::new(Promo::start().await);
    let capped = p
        .rule(json!({"name": "First 100", "conditions": {"type": "min_transaction", "min_amount": 10000},
            "effect": {"type": "fixed", "value": 5000}, "limits": {"max_total": 100}}))
        .await;
    let granted = concurrent_applies(&p, "/api/v1/promo/apply", "u")
        .await
        .iter()
        .filter(|d| **d > 0)
        .count();
    assert_eq!(granted, 100, "exactly the cap");
    let (_, u) = p
        .get(&format!("/api/v1/promo/admin/rules/{capped}/usage"))
        .await;
    assert_eq!(u["data"]["total"], 100);

    // A money budget instead: 1,000 applies of 7,000 against 300,000.
    let (s, _) = p
        .put(
            &format!("/admin/rules/{capped}"),
            json!({"name": "off", "conditions": {"type": "min_transaction", "min_amount": 1},
            "effect": {"type": "fixed", "value": 1}, "status": "inactive"}),
        )
        .await;
    assert_eq!(s, 200);
    let budget = p
        .rule(
            json!({"name": "Budget", "conditions": {"type": "min_transaction", "min_amount": 10000},
            "effect": {"type": "fixed", "value": 7000}, "limits": {"budget": 300000}}),
        )
        .await;
    let total: i64 = concurrent_applies(&p, "/apply", "b").await.iter().sum();
    assert!(total <= 300_000, "granted {total} of a 300,000 budget");
    assert_eq!(total, 42 * 7_000, "as many as fit");
    let (_, u) = p.get(&format!("/admin/rules/{budget}/usage")).await;
    assert_eq!(u["data"]["spent"], total);
    Arc::try_unwrap(p).ok().unwrap().finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_apply_retried_concurrently_redeems_once_and_a_release_gives_back_once() {
    let p = Arc::new(Promo::start().await);
    let rule = p
        .rule(json!({"name": "Once each", "conditions": {"type": "area", "areas": ["jakarta"]},
            "effect": {"type": "percentage", "value": 10, "max_discount": 8000}, "limits": {"max_per_user": 1}}))
        .await;
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let p = p.clone();
            tokio::spawn(async move {
                p.post("/api/v1/promo/apply", apply_body("u1", "order-1", 50_000))
                    .await
            })
        })
        .collect();
    let mut ok = Vec::new();
    for t in tasks {
        let (s, b) = t.await.unwrap();
        match s {
            200 => ok.push(b["data"].clone()),
            409 => assert_eq!(code(&b), "IDEMPOTENCY_IN_PROGRESS"),
            other => panic!("{other}: {b}"),
        }
    }
    assert!(!ok.is_empty());
    assert!(
        ok.iter().all(|a| a == &ok[0]),
        "every answer is the first one"
    );
    assert_eq!(ok[0]["total_discount"], 5_000);
    let (_, u) = p.get(&format!("/admin/rules/{rule}/usage")).await;
    assert_eq!(u["data"]["total"], 1, "one redemption");
    // A later retry gets the stored answer.
    let (_, again) = p.post("/apply", apply_body("u1", "order-1", 50_000)).await;
    assert_eq!(again["data"], ok[0]);
    // The same user on another order: the lifetime cap.
    let (_, other) = p.post("/apply", apply_body("u1", "order-2", 50_000)).await;
    assert_eq!(
        other["data"]["rejected_rules"][0]["reject_reason"],
        "USER_LIMIT"
    );
    // Release twice: the quota comes back once.
    let (s, r) = p
        .post("/release", json!({"redemption_id": "order-1"}))
        .await;
    assert_eq!(
        (
            s,
            r["data"]["released"].as_i64(),
            r["data"]["already_released"].as_bool()
        ),
        (200, Some(1), Some(false))
    );
    let (s, r) = p.post("/release", json!({"order_id": "order-1"})).await;
    assert_eq!(
        (
            s,
            r["data"]["released"].as_i64(),
            r["data"]["already_released"].as_bool()
        ),
        (200, Some(0), Some(true))
    );
    let (_, u) = p.get(&format!("/admin/rules/{rule}/usage")).await;
    assert_eq!(u["data"]["total"], 0);
    let (s, b) = p.post("/release", json!({"redemption_id": "never"})).await;
    assert_eq!((s, code(&b)), (404, "REDEMPTION_NOT_FOUND"));
    let (_, third) = p.post("/apply", apply_body("u1", "order-3", 50_000)).await;
    assert_eq!(
        third["data"]["total_discount"], 5_000,
        "the user's quota is back"
    );
    let (s, _) = p
        .post("/release", json!({"redemption_id": "order-3"}))
        .await;
    assert_eq!(s, 200);
    // Rows go through one ordered writer: each release's update follows its apply's insert.
    let released = "SELECT count(*) FROM promo_redemptions WHERE status = 'released'";
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while count(&p.app, released).await < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "rows of order-1 and order-3 released"
        );
        tokio::task::yield_now().await;
    }
    assert_eq!(
        count(&p.app, "SELECT count(*) FROM promo_redemptions").await,
        2
    );
    Arc::try_unwrap(p).ok().unwrap().finish().await;
}

#[tokio::test]
async fn rules_are_versioned_and_bad_input_stores_nothing() {
    let p = Promo::start().await;
    let id = p
        .rule(json!({"name": "Weekend", "priority": 3, "conditions": {"type": "min_transaction", "min_amount": 0},
            "effect": {"type": "fixed", "value": 1000}}))
        .await;
    let (s, r) = p.get(&format!("/admin/rules/{id}")).await;
    assert_eq!(
        (
            s,
            r["data"]["version"].as_i64(),
            r["data"]["limits"]["max_total"].as_i64()
        ),
        (200, Some(1), Some(0))
    );
    let (s, r) = p
        .put(&format!("/api/v1/promo/admin/rules/{id}"), json!({"name": "Weekend+", "priority": 4,
            "conditions": {"type": "min_transaction", "min_amount": 0}, "effect": {"type": "fixed", "value": 2000}}))
        .await;
    assert_eq!(
        (s, r["data"]["version"].as_i64(), r["data"]["name"].as_str()),
        (200, Some(2), Some("Weekend+"))
    );
    assert_eq!(
        count(&p.app, "SELECT count(*) FROM promo_rule_audit").await,
        2
    );
    for (path, want) in [
        ("/admin/rules/nope", "RULE_NOT_FOUND"),
        (
            &*format!("/admin/rules/{}", "x".repeat(1000)),
            "INVALID_ARGUMENT",
        ),
    ] {
        let (_, b) = p.get(path).await;
        assert_eq!(code(&b), want, "{path}");
    }

    let conn = redis_for_test(&p.store).await;
    let prefix = KeyPrefix::new(p.store.key_prefix.clone());
    let redis_before = redis_snapshot_of(conn.clone(), &prefix).await;
    let rules_before = count(&p.app, "SELECT count(*) FROM promo_rules").await;
    let ok_rule = json!({"name": "x", "conditions": {"type": "min_transaction", "min_amount": 1},
        "effect": {"type": "fixed", "value": 1}});
    let with = |k: &str, v: Value| {
        let mut b = ok_rule.clone();
        b[k] = v;
        b
    };
    let deep = (0..200).fold(
        json!({"type": "min_transaction", "min_amount": 1}),
        |c, _| json!({"type": "not", "condition": c}),
    );
    for (body, want) in [
        (
            with("conditions", json!({"type": "not"})),
            "INVALID_CONDITIONS",
        ),
        (
            with("conditions", json!({"type": "and", "conditions": []})),
            "INVALID_CONDITIONS",
        ),
        (
            with("conditions", json!({"type": "bogus"})),
            "INVALID_CONDITIONS",
        ),
        (with("conditions", deep), "INVALID_ARGUMENT"),
        (
            with("effect", json!({"type": "bogo", "value": 1})),
            "INVALID_ARGUMENT",
        ),
        (
            with("effect", json!({"type": "fixed", "value": -5})),
            "INVALID_ARGUMENT",
        ),
        (
            with("effect", json!({"type": "fixed", "value": 10.5})),
            "INVALID_ARGUMENT",
        ),
        (
            with("effect", json!({"type": "percentage", "value": 101})),
            "INVALID_ARGUMENT",
        ),
        (
            with("limits", json!({"max_total": "ten"})),
            "INVALID_ARGUMENT",
        ),
        (with("name", json!(7)), "INVALID_ARGUMENT"),
    ] {
        let (s, b) = p.post("/admin/rules", body.clone()).await;
        assert_eq!((s, code(&b)), (400, want), "{body}");
    }
    let long = "x".repeat(1000);
    for (path, body) in [
        (
            "/apply",
            json!({"user_id": long, "cart": {"cart_total": 1}}),
        ),
        (
            "/apply",
            json!({"user_id": "u", "idempotency_key": long, "cart": {"cart_total": 1}}),
        ),
        ("/apply", json!({"cart": {"cart_total": 1}})),
        (
            "/apply",
            json!({"user_id": "u", "cart": {"cart_total": -1}}),
        ),
        (
            "/apply",
            json!({"user_id": "u", "cart": {"cart_total": 1.5}}),
        ),
        (
            "/apply",
            json!({"user_id": "u", "cart": {"cart_items": [{"id": "a", "price": 1, "quantity": 0}]}}),
        ),
        ("/apply", json!({"user_id": "u", "cart": "full"})),
        ("/validate", json!({"user_id": 5, "cart": {}})),
        ("/release", json!({"redemption_id": long})),
        ("/release", json!({})),
    ] {
        let (s, b) = p.post(path, body.clone()).await;
        assert_eq!((s, code(&b)), (400, "INVALID_ARGUMENT"), "{path} {body}");
    }
    let (s, b) = split(
        p.api
            .http
            .post(format!("{}/apply", p.api.base))
            .header("content-type", "application/json")
            .body("{not json")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, code(&b)), (400, "INVALID_ARGUMENT"));
    assert_eq!(
        redis_snapshot_of(conn, &prefix).await,
        redis_before,
        "Redis unchanged"
    );
    assert_eq!(
        count(&p.app, "SELECT count(*) FROM promo_rules").await,
        rules_before,
        "Postgres unchanged"
    );
    assert_eq!(
        count(&p.app, "SELECT count(*) FROM promo_redemptions").await,
        0
    );
    p.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_lost_with_redis_are_rebuilt_from_postgres() {
    let p = Promo::start().await;
    let rule = p
        .rule(json!({"name": "Once", "conditions": {"type": "min_transaction", "min_amount": 0},
            "effect": {"type": "fixed", "value": 3000}, "limits": {"max_per_user": 1, "budget": 100000}}))
        .await;
    for u in ["u1", "u2", "u3"] {
        let (_, a) = p
            .post("/apply", apply_body(u, &format!("o-{u}"), 20_000))
            .await;
        assert_eq!(a["data"]["total_discount"], 3000);
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while count(&p.app, "SELECT count(*) FROM promo_redemptions").await < 3 {
        assert!(std::time::Instant::now() < deadline, "rows written");
        tokio::task::yield_now().await;
    }
    // Redis restarts empty: every counter of the rule is gone.
    let mut conn = redis_for_test(&p.store).await;
    let prefix = KeyPrefix::new(p.store.key_prefix.clone());
    for k in qc_kit::testing::keys_under(&mut conn, &prefix)
        .await
        .unwrap()
    {
        if k.contains(&format!("promo:{{{rule}}}:")) {
            let _: i64 = redis::cmd("DEL")
                .arg(&k)
                .query_async(&mut conn)
                .await
                .unwrap();
        }
    }
    let (_, u) = p.get(&format!("/admin/rules/{rule}/usage")).await;
    assert_eq!(u["data"]["total"], 0);
    assert_eq!(promo::rebuild_counters(&p.app).await.unwrap(), 1);
    let (_, u) = p.get(&format!("/admin/rules/{rule}/usage")).await;
    assert_eq!(
        (u["data"]["total"].as_i64(), u["data"]["spent"].as_i64()),
        (Some(3), Some(9000))
    );
    let (_, again) = p
        .post("/apply", apply_body("u1", "o-u1-again", 20_000))
        .await;
    assert_eq!(
        again["data"]["rejected_rules"][0]["reject_reason"], "USER_LIMIT",
        "the lifetime cap survived"
    );
    assert_eq!(
        promo::rebuild_counters(&p.app).await.unwrap(),
        0,
        "present keys are left alone"
    );
    p.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_written_on_one_instance_reaches_another_by_notify() {
    let a = Promo::start().await;
    // B reloads only on NOTIFY (its timer is a minute).
    let b = Promo::start_on(a.store.clone(), &[("PROMO_RELOAD_MS", "60000")]).await;
    let cart = json!({"user_id": "u1", "cart": {"cart_total": 20000}});
    let (_, v) = b.post("/validate", cart.clone()).await;
    assert_eq!(v["data"]["total_rules"], 0);
    a.rule(
        json!({"name": "New", "conditions": {"type": "min_transaction", "min_amount": 0},
        "effect": {"type": "fixed", "value": 1000}}),
    )
    .await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let (_, v) = b.post("/validate", cart.clone()).await;
        if v["data"]["total_rules"] == 1 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "B never heard of the rule"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    b.shutdown.trigger();
    a.finish().await;
}
