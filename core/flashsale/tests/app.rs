//! The application layer over the memory adapters: 03's pipeline answers, the tokens that
//! must not work, the bot defence, the queue, and the jobs on a manual clock.

use qc_flashsale::app::{solve, Caller, CheckoutRequest, Ids};
use qc_flashsale::model::SaleConfig;
use qc_flashsale::orders::{MemoryOrders, Orders};
use qc_flashsale::{Answer, FlashSale, FlashStore, MemoryFlash, Policy};
use qc_kit::idempotency::MemoryIdempotency;
use serde_json::{json, Value};

const SECRET: &[u8] = b"flash-sale-secret-of-thirty-two-bytes-or-more";
const T: i64 = 1_800_000_000_000;

struct Counter(u64);
impl Ids for Counter {
    fn next(&mut self) -> String {
        self.0 += 1;
        format!("{:016x}", self.0)
    }
}

type App = FlashSale<MemoryFlash, MemoryIdempotency, MemoryOrders>;

fn app(policy: Policy) -> App {
    FlashSale::new(
        MemoryFlash::new(),
        MemoryIdempotency::default(),
        MemoryOrders::default(),
        SECRET.to_vec(),
        policy,
    )
}

fn caller(user: &str, device: &str) -> Caller {
    Caller {
        user_id: user.into(),
        device: device.into(),
        account_age_days: None,
    }
}

async fn token(
    a: &App,
    user: &str,
    device: &str,
    product: &str,
    now: i64,
    ids: &mut Counter,
) -> String {
    let nonce = format!("{:032x}", u128::from(ids.0) << 64 | 0xfeed);
    ids.0 += 1;
    let proof = solve(user, device, product, a.policy.proof_bits);
    let m = a
        .mint(&caller(user, device), product, &proof, &nonce, now)
        .await;
    assert_eq!(m.status, 200, "{m:?}");
    m.body["data"]["token"].as_str().unwrap().to_string()
}

fn body(product: &str, user: &str, device: &str, token: &str, key: &str) -> Value {
    json!({"product_id": product, "user_id": user, "device_fp": device, "token": token,
           "quantity": 1, "idempotency_key": key})
}

async fn checkout(a: &App, b: &Value, now: i64, ids: &mut Counter) -> Answer {
    match CheckoutRequest::parse(b) {
        Ok(r) => a.checkout(&r, None, ids, now).await,
        Err(e) => panic!("{e}"),
    }
}

#[tokio::test]
async fn forged_expired_replayed_and_transplanted_tokens_reserve_nothing() {
    let a = app(Policy::default());
    let mut ids = Counter(0);
    for p in ["p1", "p2"] {
        assert_eq!(a.init(&SaleConfig::new(p, 10, T), false).await.status, 200);
    }
    let t = token(&a, "u1", "fp1", "p1", T, &mut ids).await;
    let forged_sig = {
        let (head, sig) = t.rsplit_once('.').unwrap();
        let flipped = if sig.starts_with('0') { "1" } else { "0" };
        format!("{head}.{flipped}{}", &sig[1..])
    };
    let other = token(&a, "u2", "fp2", "p1", T, &mut ids).await;
    let cases: Vec<(&str, Value, i64)> = vec![
        (
            "forged signature",
            body("p1", "u1", "fp1", &forged_sig, "k1"),
            T + 1,
        ),
        (
            "garbage",
            body("p1", "u1", "fp1", "not-a-token", "k2"),
            T + 1,
        ),
        (
            "another user's",
            body("p1", "u1", "fp1", &other, "k3"),
            T + 1,
        ),
        ("another device", body("p1", "u1", "fp9", &t, "k4"), T + 1),
        ("another product", body("p2", "u1", "fp1", &t, "k5"), T + 1),
        ("expired", body("p1", "u1", "fp1", &t, "k6"), T + 30_001),
    ];
    for (what, b, at) in &cases {
        let r = checkout(&a, b, *at, &mut ids).await;
        assert_eq!(
            (r.status, r.code()),
            (401, Some("INVALID_ATTESTATION")),
            "{what}: {r:?}"
        );
    }
    // The real one works once; the same token again (a new key) is a replay.
    let ok = checkout(&a, &body("p1", "u1", "fp1", &t, "k7"), T + 2, &mut ids).await;
    assert_eq!(ok.status, 200, "{ok:?}");
    let again = checkout(&a, &body("p1", "u1", "fp1", &t, "k8"), T + 3, &mut ids).await;
    assert_eq!(
        (again.status, again.code()),
        (401, Some("INVALID_ATTESTATION")),
        "{again:?}"
    );
    // A 401 is not stored: the same key with a good token runs.
    let t2 = token(&a, "u1", "fp1", "p1", T + 4, &mut ids).await;
    let retried = checkout(&a, &body("p1", "u1", "fp1", &t2, "k1"), T + 5, &mut ids).await;
    assert_eq!(retried.status, 200, "{retried:?}");
    for p in ["p1", "p2"] {
        let v = a.store.stock(p).await.unwrap().unwrap();
        assert_eq!(v.reserved_qty, if p == "p1" { 2 } else { 0 }, "{p}: {v:?}");
    }
}

#[tokio::test]
async fn the_pipeline_answers_as_03_says() {
    let a = app(Policy::default());
    let mut ids = Counter(0);
    let mut cfg = SaleConfig::new("p", 1, T);
    cfg.per_user_limit = 1;
    a.init(&cfg, false).await;
    let t = token(&a, "u1", "fp1", "p", T, &mut ids).await;
    let b = body("p", "u1", "fp1", &t, "k");
    let first = checkout(&a, &b, T + 1, &mut ids).await;
    assert_eq!(first.body["data"]["status"], "completed");
    let rid = first.body["data"]["reservation_id"]
        .as_str()
        .unwrap()
        .to_string();
    // The same key again: a replay of the stored answer, not a second reservation.
    let replay = checkout(&a, &b, T + 2, &mut ids).await;
    assert_eq!(
        (replay.status, replay.code()),
        (409, Some("IDEMPOTENCY_CONFLICT"))
    );
    assert_eq!(replay.body["error"]["details"]["original_status"], 200);
    // Sold out: queued (202) with a place and a wait.
    let t2 = token(&a, "u2", "fp2", "p", T + 3, &mut ids).await;
    let q = checkout(&a, &body("p", "u2", "fp2", &t2, "k"), T + 4, &mut ids).await;
    assert_eq!(q.status, 202);
    assert_eq!(q.body["data"]["position"], 1);
    assert_eq!(
        a.queue_status("p", "u2", T + 5).await.body["data"]["status"],
        "queued"
    );
    // Limit: u1 holds 1 of 1; give it back, take it again, then one more is over the limit.
    assert_eq!(a.release(&rid, "u2", T + 6).await.status, 403);
    assert_eq!(a.release(&rid, "u1", T + 6).await.status, 200);
    assert_eq!(
        a.release(&rid, "u1", T + 7).await.body["data"]["already"],
        true
    );
    assert_eq!(
        a.confirm(&rid, "u1", T + 8).await.code(),
        Some("RESERVATION_NOT_ACTIVE")
    );
    // The freed unit is u2's (admitted), not u1's.
    let t3 = token(&a, "u1", "fp1", "p", T + 9, &mut ids).await;
    let u1 = checkout(&a, &body("p", "u1", "fp1", &t3, "k2"), T + 10, &mut ids).await;
    assert_eq!(u1.status, 202, "{u1:?}");
    let admitted = a.admit_once(T + 11).await.unwrap();
    assert_eq!(admitted, [("p".to_string(), vec!["u2".to_string()])]);
    let t4 = token(&a, "u2", "fp2", "p", T + 12, &mut ids).await;
    let u2 = checkout(&a, &body("p", "u2", "fp2", &t4, "k2"), T + 13, &mut ids).await;
    assert_eq!(u2.status, 200, "{u2:?}");
    let rid2 = u2.body["data"]["reservation_id"]
        .as_str()
        .unwrap()
        .to_string();
    let c = a.confirm(&rid2, "u2", T + 14).await;
    assert_eq!(c.body["data"]["confirmed"], true, "{c:?}");
    assert_eq!(a.confirm(&rid2, "u2", T + 15).await.status, 200);
    assert_eq!(a.orders.sold("p").await.unwrap(), 1);
    assert_eq!(a.confirm("RES-none", "u2", T).await.status, 404);
    assert_eq!(
        a.release(&rid2, "u2", T + 16).await.code(),
        Some("RESERVATION_CONFIRMED")
    );
    // Unknown product: 404 at the mint.
    let m = a
        .mint(&caller("u3", "fp3"), "nope", "0", &format!("{:032x}", 9), T)
        .await;
    assert_eq!(m.status, 404);
    // Admin: a re-init while nothing is reserved, a bad config, and a busy one.
    let mut bad = SaleConfig::new("p", 1, T);
    bad.bucket_count = 65;
    assert_eq!(a.init(&bad, false).await.status, 400);
    assert_eq!(a.stock("p").await.body["data"]["confirmed_qty"], 1);
    assert_eq!(a.stock("nope").await.status, 404);
    assert_eq!(a.slot_status("p", T).await.body["data"]["max"], 1000);
}

#[tokio::test]
async fn bad_bodies_are_400_with_the_field_named() {
    for (b, field) in [
        (json!({}), "product_id"),
        (json!({"product_id": "p:1", "user_id": "u"}), "product_id"),
        (
            json!({"product_id": "p", "user_id": "u", "device_fp": "a|b"}),
            "device_fp",
        ),
        (
            json!({"product_id": "p", "user_id": "u", "device_fp": "d"}),
            "token",
        ),
        (
            json!({"product_id": "p", "user_id": "u", "device_fp": "d", "token": "t", "quantity": 11}),
            "quantity",
        ),
        (
            json!({"product_id": "p", "user_id": "u", "device_fp": "d", "token": "t", "quantity": "1"}),
            "quantity",
        ),
        (
            json!({"product_id": "p", "user_id": "u", "device_fp": "d", "token": "t"}),
            "idempotency_key",
        ),
    ] {
        let e = CheckoutRequest::parse(&b).unwrap_err();
        assert!(e.starts_with(field), "{b}: {e}");
    }
}

#[tokio::test]
async fn bots_are_refused_by_rate_score_and_proof() {
    let a = app(Policy {
        proof_bits: 8,
        ..Policy::default()
    });
    let mut ids = Counter(0);
    a.init(&SaleConfig::new("p", 10, T), false).await;
    // No proof: refused.
    let m = a
        .mint(&caller("u", "fp"), "p", "wrong", &format!("{:032x}", 1), T)
        .await;
    assert_eq!((m.status, m.code()), (401, Some("INVALID_PROOF")));
    // A script: one request every 100 ms from a new fingerprint each time.
    let mut codes = Vec::new();
    for i in 0..12 {
        let c = Caller {
            user_id: "bot".into(),
            device: format!("fp{i}"),
            account_age_days: Some(0.1),
        };
        let proof = solve("bot", &c.device, "p", 8);
        codes.push(
            a.mint(
                &c,
                "p",
                &proof,
                &format!("{:032x}", 100 + i),
                T + 100 * i as i64,
            )
            .await
            .status,
        );
    }
    assert!(codes.contains(&403), "{codes:?}");
    // A person tapping a few times on one phone is never refused.
    for (i, at) in [0, 2_300, 2_900, 7_800, 8_400, 15_000].iter().enumerate() {
        let proof = solve("human", "phone", "p", 8);
        let m = a
            .mint(
                &caller("human", "phone"),
                "p",
                &proof,
                &format!("{:032x}", 500 + i),
                T + at,
            )
            .await;
        assert_eq!(m.status, 200, "{m:?}");
    }
    // 20 per second per device, 10 per user: the 11th request of one user in a second is 429.
    let mut last = 0;
    for i in 0..11 {
        let c = Caller {
            user_id: "quick".into(),
            device: "d".into(),
            account_age_days: Some(500.0),
        };
        let proof = solve("quick", "d", "p", 8);
        last = a
            .mint(
                &c,
                "p",
                &proof,
                &format!("{:032x}", 900 + i),
                T + 20_000 + i as i64 * 7,
            )
            .await
            .status;
    }
    assert_eq!(last, 429);
    let _ = ids.next();
}

#[tokio::test]
async fn the_reaper_returns_expired_units_and_a_late_confirm_is_refused() {
    let a = app(Policy::default());
    let mut ids = Counter(0);
    let mut cfg = SaleConfig::new("p", 1, T);
    cfg.reservation_ttl_s = 30;
    a.init(&cfg, false).await;
    let t = token(&a, "u", "fp", "p", T, &mut ids).await;
    let r = checkout(&a, &body("p", "u", "fp", &t, "k"), T, &mut ids).await;
    let rid = r.body["data"]["reservation_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(a.reap_once(T + 44_999).await.unwrap(), 0);
    assert_eq!(a.reap_once(T + 45_000).await.unwrap(), 1);
    assert_eq!(
        a.confirm(&rid, "u", T + 45_001).await.code(),
        Some("RESERVATION_NOT_ACTIVE")
    );
    let v = a.store.stock("p").await.unwrap().unwrap();
    assert_eq!((v.remaining, v.reserved_qty, v.confirmed_qty), (1, 0, 0));
    assert_eq!(a.orders.sold("p").await.unwrap(), 0);
}
