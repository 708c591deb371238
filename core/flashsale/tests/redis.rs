//! The Redis adapter against a real Redis: the conformance suite, and the memory adapter and
//! Redis answering the same random operation sequences alike.

use proptest::prelude::*;
use qc_flashsale::conformance::flash_conforms;
use qc_flashsale::model::{Reserve, ReserveCmd, SaleConfig, Status, PASS_MS};
use qc_flashsale::{FlashStore, MemoryFlash, RedisFlash};
use qc_kit::redis_kit::KeyPrefix;
use qc_kit::testing::{delete_prefix, isolated_store_config, redis_for_test};

async fn redis() -> (RedisFlash, redis::aio::ConnectionManager, KeyPrefix) {
    let cfg = isolated_store_config();
    let conn = redis_for_test(&cfg).await;
    let prefix = KeyPrefix::new(cfg.key_prefix.clone());
    (
        RedisFlash::new(conn.clone(), prefix.clone(), 2000),
        conn,
        prefix,
    )
}

#[tokio::test]
async fn the_redis_store_conforms() {
    let (s, mut conn, prefix) = redis().await;
    flash_conforms(&s, "r").await;
    delete_prefix(&mut conn, &prefix).await.unwrap();
}

#[derive(Debug, Clone)]
enum Op {
    Reserve { user: u8, qty: u32 },
    Enqueue { user: u8 },
    Admit,
    Confirm { user: u8 },
    Release { user: u8 },
    Expire { user: u8 },
    Tick(i64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..6, 1u32..4).prop_map(|(user, qty)| Op::Reserve { user, qty }),
        2 => (0u8..6).prop_map(|user| Op::Enqueue { user }),
        2 => Just(Op::Admit),
        2 => (0u8..6).prop_map(|user| Op::Confirm { user }),
        2 => (0u8..6).prop_map(|user| Op::Release { user }),
        1 => (0u8..6).prop_map(|user| Op::Expire { user }),
        1 => (1i64..120_000).prop_map(Op::Tick),
    ]
}

/// Runs `ops` on a store; every answer, and the counters after each step.
async fn play<S: FlashStore>(s: &S, pid: &str, ops: &[Op]) -> Vec<String> {
    let t0 = 1_800_000_000_000;
    let mut cfg = SaleConfig::new(pid, 5, t0);
    cfg.bucket_count = 3;
    cfg.per_user_limit = 4;
    cfg.reservation_ttl_s = 60;
    s.init(&cfg, false).await.unwrap();
    let mut now = t0;
    let mut out = Vec::new();
    let mut n = 0;
    for o in ops {
        n += 1;
        let rid = |u: u8| format!("r{pid}-{u}");
        let line = match o {
            Op::Reserve { user, qty } => {
                let c = ReserveCmd {
                    product_id: pid.into(),
                    user_id: format!("u{user}"),
                    device: format!("fp{user}"),
                    quantity: *qty,
                    reservation_id: format!("{}-{n}", rid(*user)),
                    order_id: format!("o{n}"),
                    now_ms: now,
                };
                match s.reserve(&c).await.unwrap() {
                    Reserve::Reserved { remaining, .. } => format!("reserved {remaining}"),
                    other => format!("{other:?}"),
                }
            }
            Op::Enqueue { user } => format!(
                "{:?}",
                s.enqueue(pid, &format!("u{user}"), now).await.unwrap()
            ),
            Op::Admit => format!("{:?}", s.admit(pid, now, 2, PASS_MS).await.unwrap()),
            Op::Confirm { user } | Op::Release { user } | Op::Expire { user } => {
                // The user's latest reservation, if any.
                let mut last = None;
                for k in (1..n).rev() {
                    let id = format!("{}-{k}", rid(*user));
                    if s.reservation(&id).await.unwrap().is_some() {
                        last = Some(id);
                        break;
                    }
                }
                match (o, last) {
                    (_, None) => "none".into(),
                    (Op::Confirm { user }, Some(id)) => format!(
                        "{:?}",
                        s.confirm(&id, &format!("u{user}"), now).await.unwrap()
                    ),
                    (Op::Release { user }, Some(id)) => {
                        format!(
                            "{:?}",
                            s.release(&id, Some(&format!("u{user}")), Status::Released, now)
                                .await
                                .unwrap()
                        )
                    }
                    (_, Some(id)) => format!(
                        "{:?}",
                        s.release(&id, None, Status::Expired, now).await.unwrap()
                    ),
                }
            }
            Op::Tick(ms) => {
                now += ms;
                format!("{:?}", s.overdue(pid, now, 100).await.unwrap().len())
            }
        };
        let v = s.stock(pid).await.unwrap().unwrap();
        assert!(
            v.remaining >= 0 && v.remaining + v.reserved_qty + v.confirmed_qty == 5,
            "{v:?}"
        );
        out.push(format!(
            "{line} | {} {} {} {}",
            v.remaining, v.reserved_qty, v.confirmed_qty, v.queue_length
        ));
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
    #[test]
    fn memory_and_redis_answer_alike(ops in proptest::collection::vec(op(), 1..40)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let (r, mut conn, prefix) = redis().await;
            let m = MemoryFlash::new();
            let a = play(&m, "p", &ops).await;
            let b = play(&r, "p", &ops).await;
            delete_prefix(&mut conn, &prefix).await.unwrap();
            assert_eq!(a, b);
        });
    }
}
