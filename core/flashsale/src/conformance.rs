//! The suite every [`FlashStore`] adapter passes (memory in unit tests, Redis in
//! `tests/redis.rs`): init and re-init, the reservation's every answer, bucket splits, the
//! waiting room's order and passes, freed units going to the queue's head, confirm against the
//! reaper, releases, limits, slots and nonces. Product ids are made unique per run by `tag`.

use crate::model::{Reserve, ReserveCmd, SaleConfig, Status, Transition, PASS_MS};
use crate::store::{FlashStore, Init};

const T: i64 = 1_800_000_000_000;

fn cmd(pid: &str, user: &str, qty: u32, n: u32, now: i64) -> ReserveCmd {
    ReserveCmd {
        product_id: pid.into(),
        user_id: user.into(),
        device: format!("fp-{user}"),
        quantity: qty,
        reservation_id: format!("r-{pid}-{user}-{n}"),
        order_id: format!("o-{pid}-{user}-{n}"),
        now_ms: now,
    }
}

fn reserved(r: &Reserve) -> bool {
    matches!(r, Reserve::Reserved { .. })
}

async fn remaining<S: FlashStore>(s: &S, pid: &str) -> i64 {
    s.stock(pid).await.unwrap().unwrap().remaining
}

pub async fn flash_conforms<S: FlashStore>(s: &S, tag: &str) {
    sale_lifecycle(s, &format!("a{tag}")).await;
    freed_units_go_to_the_head_of_the_queue(s, &format!("b{tag}")).await;
    confirm_cannot_race_the_reaper(s, &format!("c{tag}")).await;
    limits_slots_nonces_and_windows(s, &format!("d{tag}")).await;
    prequeue_and_opening(s, &format!("e{tag}")).await;
}

async fn sale_lifecycle<S: FlashStore>(s: &S, pid: &str) {
    assert_eq!(
        s.reserve(&cmd(pid, "u1", 1, 0, T)).await.unwrap(),
        Reserve::NotFound
    );
    assert!(s.stock(pid).await.unwrap().is_none());
    let mut cfg = SaleConfig::new(pid, 7, T);
    cfg.bucket_count = 3;
    assert_eq!(s.init(&cfg, false).await.unwrap(), Init::Ready { epoch: 1 });
    assert!(s.products().await.unwrap().contains(&pid.to_string()));
    assert_eq!(s.max_slots(pid).await.unwrap(), Some(1000));
    // 7 units in 3 buckets (3, 2, 2): 5 of them for one buyer span buckets (no false sold-out).
    let r = s.reserve(&cmd(pid, "u1", 5, 0, T)).await.unwrap();
    assert_eq!(
        r,
        Reserve::Reserved {
            remaining: 2,
            expires_at_ms: T + 300_000
        }
    );
    let res = s
        .reservation(&format!("r-{pid}-u1-0"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (res.status, res.quantity, res.user_id.as_str()),
        (Status::Reserved, 5, "u1")
    );
    // Re-init refuses while units are reserved, unless forced.
    assert_eq!(s.init(&cfg, false).await.unwrap(), Init::Active);
    let view = s.stock(pid).await.unwrap().unwrap();
    assert_eq!(
        (
            view.initial_stock,
            view.remaining,
            view.reserved_qty,
            view.confirmed_qty
        ),
        (7, 2, 5, 0)
    );
    // 3 more than remain: the buyer waits.
    assert_eq!(
        s.reserve(&cmd(pid, "u2", 3, 0, T)).await.unwrap(),
        Reserve::Queue
    );
    assert!(reserved(
        &s.reserve(&cmd(pid, "u3", 2, 0, T)).await.unwrap()
    ));
    assert_eq!(remaining(s, pid).await, 0);
    // Release by a stranger, by the owner, twice; the units come back to the buckets.
    let r1 = format!("r-{pid}-u1-0");
    assert_eq!(
        s.release(&r1, Some("u9"), Status::Released, T)
            .await
            .unwrap(),
        Transition::NotOwner
    );
    assert!(matches!(
        s.release(&r1, Some("u1"), Status::Released, T)
            .await
            .unwrap(),
        Transition::Done { quantity: 5, .. }
    ));
    assert!(matches!(
        s.release(&r1, Some("u1"), Status::Released, T)
            .await
            .unwrap(),
        Transition::Already { .. }
    ));
    assert_eq!(
        s.confirm(&r1, "u1", T).await.unwrap(),
        Transition::Conflict(Status::Released)
    );
    assert_eq!(remaining(s, pid).await, 5);
    // Confirm: stranger, owner, repeat; a confirmed reservation cannot be released.
    let r3 = format!("r-{pid}-u3-0");
    assert_eq!(s.confirm(&r3, "u1", T).await.unwrap(), Transition::NotOwner);
    assert!(matches!(
        s.confirm(&r3, "u3", T + 1).await.unwrap(),
        Transition::Done { quantity: 2, .. }
    ));
    assert!(matches!(
        s.confirm(&r3, "u3", T + 2).await.unwrap(),
        Transition::Already { .. }
    ));
    assert_eq!(
        s.release(&r3, Some("u3"), Status::Released, T)
            .await
            .unwrap(),
        Transition::Conflict(Status::Confirmed)
    );
    assert_eq!(
        s.confirm("r-none", "u3", T).await.unwrap(),
        Transition::NotFound
    );
    let view = s.stock(pid).await.unwrap().unwrap();
    assert_eq!(
        (view.remaining, view.reserved_qty, view.confirmed_qty),
        (5, 0, 2)
    );
    // Forced re-init: a new epoch; the old reservation's release changes its status only.
    assert!(reserved(
        &s.reserve(&cmd(pid, "u4", 1, 0, T)).await.unwrap()
    ));
    assert_eq!(s.init(&cfg, true).await.unwrap(), Init::Ready { epoch: 2 });
    let r4 = format!("r-{pid}-u4-0");
    assert!(matches!(
        s.release(&r4, Some("u4"), Status::Released, T)
            .await
            .unwrap(),
        Transition::Done { .. }
    ));
    let view = s.stock(pid).await.unwrap().unwrap();
    assert_eq!(
        (
            view.remaining,
            view.reserved_qty,
            view.confirmed_qty,
            view.epoch
        ),
        (7, 0, 0, 2)
    );
}

async fn freed_units_go_to_the_head_of_the_queue<S: FlashStore>(s: &S, pid: &str) {
    s.init(&SaleConfig::new(pid, 2, T), false).await.unwrap();
    assert!(reserved(&s.reserve(&cmd(pid, "a", 1, 0, T)).await.unwrap()));
    assert!(reserved(&s.reserve(&cmd(pid, "b", 1, 0, T)).await.unwrap()));
    // Sold out: c, then d, wait (FIFO after opening).
    for (u, at) in [("c", T + 10), ("d", T + 20)] {
        assert_eq!(
            s.reserve(&cmd(pid, u, 1, 0, at)).await.unwrap(),
            Reserve::Queue
        );
        s.enqueue(pid, u, at).await.unwrap();
    }
    let q = s.queue(pid, "d", T + 30).await.unwrap();
    assert_eq!((q.status, q.position, q.total_in_queue), ("queued", 2, 2));
    // Joining again keeps the place.
    assert_eq!(s.enqueue(pid, "c", T + 40).await.unwrap().position, 1);
    // No unit free: nobody admitted.
    assert!(s.admit(pid, T + 50, 10, PASS_MS).await.unwrap().is_empty());
    // a releases: the unit is the head's, not the next caller's.
    s.release(&format!("r-{pid}-a-0"), Some("a"), Status::Released, T + 60)
        .await
        .unwrap();
    assert_eq!(
        s.reserve(&cmd(pid, "late", 1, 0, T + 61)).await.unwrap(),
        Reserve::Queue
    );
    assert_eq!(s.admit(pid, T + 70, 10, PASS_MS).await.unwrap(), ["c"]);
    assert_eq!(s.queue(pid, "c", T + 71).await.unwrap().status, "admitted");
    // Even with the waiting room empty of c, a stranger cannot take the unit promised to c.
    assert_eq!(
        s.reserve(&cmd(pid, "e", 1, 0, T + 72)).await.unwrap(),
        Reserve::Queue
    );
    assert!(reserved(
        &s.reserve(&cmd(pid, "c", 1, 0, T + 80)).await.unwrap()
    ));
    assert_eq!(
        s.queue(pid, "c", T + 81).await.unwrap().status,
        "not_in_queue"
    );
    // b's hold expires: d is next.
    s.release(&format!("r-{pid}-b-0"), None, Status::Expired, T + 90)
        .await
        .unwrap();
    assert_eq!(s.admit(pid, T + 100, 10, PASS_MS).await.unwrap(), ["d"]);
    // d's pass lapses unused: the unit goes to the next in line (the queue still holds "late"
    // and "e" only if they joined; they did not, so nobody is admitted and the unit is free).
    assert!(s
        .admit(pid, T + 100 + PASS_MS + 1, 10, PASS_MS)
        .await
        .unwrap()
        .is_empty());
    assert!(reserved(
        &s.reserve(&cmd(pid, "f", 1, 0, T + 100 + PASS_MS + 2))
            .await
            .unwrap()
    ));
    let view = s.stock(pid).await.unwrap().unwrap();
    assert_eq!((view.remaining, view.reserved_qty), (0, 2));
}

async fn confirm_cannot_race_the_reaper<S: FlashStore>(s: &S, pid: &str) {
    let mut cfg = SaleConfig::new(pid, 1, T);
    cfg.reservation_ttl_s = 30;
    s.init(&cfg, false).await.unwrap();
    assert!(reserved(&s.reserve(&cmd(pid, "u", 1, 0, T)).await.unwrap()));
    let rid = format!("r-{pid}-u-0");
    // Past expires_at, before the reaper's grace: confirm refuses; nothing is due yet.
    assert_eq!(
        s.confirm(&rid, "u", T + 30_001).await.unwrap(),
        Transition::Conflict(Status::Expired)
    );
    assert!(s
        .overdue(pid, T + 30_001 - 15_000, 100)
        .await
        .unwrap()
        .is_empty());
    // The reaper expires it; a confirm after that is refused; the unit is sold once.
    assert_eq!(
        s.overdue(pid, T + 45_000, 100).await.unwrap(),
        std::slice::from_ref(&rid)
    );
    assert!(matches!(
        s.release(&rid, None, Status::Expired, T + 45_000)
            .await
            .unwrap(),
        Transition::Done { .. }
    ));
    assert_eq!(
        s.confirm(&rid, "u", T + 45_001).await.unwrap(),
        Transition::Conflict(Status::Expired)
    );
    assert!(reserved(
        &s.reserve(&cmd(pid, "v", 1, 0, T + 46_000)).await.unwrap()
    ));
    let rv = format!("r-{pid}-v-0");
    // Confirmed first: the reaper finds nothing due and cannot give the unit back.
    assert!(matches!(
        s.confirm(&rv, "v", T + 46_001).await.unwrap(),
        Transition::Done { .. }
    ));
    assert!(s.overdue(pid, T + 1_000_000, 100).await.unwrap().is_empty());
    assert_eq!(
        s.release(&rv, None, Status::Expired, T + 1_000_000)
            .await
            .unwrap(),
        Transition::Conflict(Status::Confirmed)
    );
    let view = s.stock(pid).await.unwrap().unwrap();
    assert_eq!(
        (view.remaining, view.reserved_qty, view.confirmed_qty),
        (0, 0, 1)
    );
}

async fn limits_slots_nonces_and_windows<S: FlashStore>(s: &S, pid: &str) {
    let mut cfg = SaleConfig::new(pid, 10, T);
    cfg.per_user_limit = 2;
    cfg.max_slots = 2;
    s.init(&cfg, false).await.unwrap();
    assert!(reserved(&s.reserve(&cmd(pid, "u", 2, 0, T)).await.unwrap()));
    assert_eq!(
        s.reserve(&cmd(pid, "u", 1, 1, T)).await.unwrap(),
        Reserve::LimitExceeded
    );
    // Giving units back gives the allowance back.
    s.release(&format!("r-{pid}-u-0"), Some("u"), Status::Released, T)
        .await
        .unwrap();
    assert!(reserved(&s.reserve(&cmd(pid, "u", 1, 2, T)).await.unwrap()));
    // Slots: two users, a refresh, a third refused, a free, a lapse.
    assert!(s.slot(pid, "a", 2, T).await.unwrap());
    assert!(s.slot(pid, "b", 2, T).await.unwrap());
    assert!(s.slot(pid, "a", 2, T + 1).await.unwrap());
    assert!(!s.slot(pid, "c", 2, T + 2).await.unwrap());
    assert_eq!(s.slots_used(pid, T + 2).await.unwrap(), 2);
    s.free_slot(pid, "b").await.unwrap();
    assert!(s.slot(pid, "c", 2, T + 3).await.unwrap());
    assert!(!s.slot(pid, "d", 2, T + 4).await.unwrap());
    assert!(s
        .slot(pid, "d", 2, T + 3 + crate::model::SLOT_LEASE_MS)
        .await
        .unwrap());
    // Nonces are spent once.
    let nonce = format!("{pid}-nonce");
    assert!(s.spend_nonce(&nonce, T + 30_000, T).await.unwrap());
    assert!(!s.spend_nonce(&nonce, T + 30_000, T + 1).await.unwrap());
    // A window of 3 per second.
    let key = format!("dev:{pid}");
    for i in 0..3 {
        assert!(s.hit(&key, T + i, 1000, 3).await.unwrap());
    }
    assert!(!s.hit(&key, T + 500, 1000, 3).await.unwrap());
    assert!(s.hit(&key, T + 1001, 1000, 3).await.unwrap());
    // Signals: request times and devices per user.
    let user = format!("{pid}-sig");
    for (i, fp) in ["x", "y", "x", "z"].iter().enumerate() {
        let sig = s.observe(&user, fp, T + 100 * i as i64).await.unwrap();
        assert_eq!(sig.times_ms.len(), i + 1);
    }
    let sig = s.observe(&user, "x", T + 400).await.unwrap();
    assert_eq!(
        (sig.devices, sig.times_ms.clone()),
        (3, vec![T, T + 100, T + 200, T + 300, T + 400])
    );
    let later = s
        .observe(&user, "x", T + 400 + crate::store::SIGNAL_WINDOW_MS)
        .await
        .unwrap();
    assert_eq!((later.devices, later.times_ms.len()), (1, 1));
}

async fn prequeue_and_opening<S: FlashStore>(s: &S, pid: &str) {
    let opens = T + 60_000;
    s.init(&SaleConfig::new(pid, 1, opens), false)
        .await
        .unwrap();
    // Before opening nobody buys; early arrivals hold the scores the app drew for them.
    assert_eq!(
        s.reserve(&cmd(pid, "early", 1, 0, T)).await.unwrap(),
        Reserve::Queue
    );
    s.enqueue(pid, "early", opens - 10).await.unwrap();
    s.enqueue(pid, "earlier-but-unlucky", opens - 5)
        .await
        .unwrap();
    s.enqueue(pid, "after-open", opens + 1).await.unwrap();
    assert_eq!(
        s.queue(pid, "earlier-but-unlucky", opens)
            .await
            .unwrap()
            .position,
        2
    );
    // At opening the queue is served first.
    assert_eq!(
        s.reserve(&cmd(pid, "walk-in", 1, 0, opens)).await.unwrap(),
        Reserve::Queue
    );
    assert_eq!(s.admit(pid, opens, 10, PASS_MS).await.unwrap(), ["early"]);
    assert!(reserved(
        &s.reserve(&cmd(pid, "early", 1, 0, opens + 1))
            .await
            .unwrap()
    ));
    // The waiting room's cleanup drops those who joined long ago.
    assert_eq!(s.cleanup(pid, opens).await.unwrap(), 1);
    assert_eq!(s.queue(pid, "after-open", opens).await.unwrap().position, 1);
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_memory_store_conforms() {
        futures::executor::block_on(super::flash_conforms(
            &crate::store::MemoryFlash::new(),
            "m",
        ));
    }
}
