//! The flash sale's application layer (03 "Pipeline"): what the service's handlers and the
//! twin both call. Every answer is an [`Answer`] — status, `{"data": …}` or the error envelope,
//! and a `Retry-After` — so the service only renders it. Time comes from the caller's clock;
//! ids (reservation, order, lease token, nonce) from the caller's id source.

use hmac::{Hmac, Mac};
use qc_kit::idempotency::{request_hash, Begin, IdempotencyStore, Stored};
use qc_kit::redis_kit::BackendError;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::bot::BotPolicy;
use crate::model::{
    valid_device, valid_id, QueueView, Reserve, ReserveCmd, SaleConfig, Status, Transition,
    ADMIT_BATCH, MAX_QTY, PASS_MS, PREQUEUE_SPAN_MS, REAP_GRACE_MS, WAITING_MAX_AGE_MS,
};
use crate::orders::{ConfirmedOrder, Orders};
use crate::store::{FlashStore, Init};
use crate::token::{self, TokenError, TOKEN_TTL_MS};

/// Admission passes granted per second (03: 10 every 500 ms); the queue's wait estimate.
pub const ADMITTED_PER_S: u64 = 20;

/// Limits and the bot defence, from configuration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    /// Requests per device fingerprint in `window_ms` (03 RL: 20 per second).
    pub device_burst: u32,
    /// Requests per user in `window_ms` (03 flaw 12: a limit that rotating fingerprints do not
    /// escape).
    pub user_burst: u32,
    pub window_ms: i64,
    pub bot: BotPolicy,
    /// Leading zero bits the token mint's proof of work must have (0: no proof).
    pub proof_bits: u8,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            device_burst: 20,
            user_burst: 10,
            window_ms: 1_000,
            bot: BotPolicy::default(),
            proof_bits: 0,
        }
    }
}

/// An answer as the service sends it.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
    pub retry_after_s: Option<u32>,
}

impl Answer {
    fn ok(status: u16, data: Value) -> Self {
        Self {
            status,
            body: json!({ "data": data }),
            retry_after_s: None,
        }
    }
    fn err(status: u16, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            body: json!({"error": {"code": code, "message": message.into()}}),
            retry_after_s: None,
        }
    }
    fn retry(mut self, s: u32) -> Self {
        self.retry_after_s = Some(s);
        self
    }
    fn invalid(message: impl Into<String>) -> Self {
        Self::err(400, "INVALID_ARGUMENT", message)
    }
    fn unavailable(e: &BackendError) -> Self {
        tracing::warn!(error = %e, "flash sale store failed");
        Self::err(503, "UNAVAILABLE", "the flash sale store is unavailable").retry(1)
    }
    /// The error code, if this is an error.
    pub fn code(&self) -> Option<&str> {
        self.body["error"]["code"].as_str()
    }
}

/// Who calls: the user, their device, and (from the gateway, trusted) their account's age.
#[derive(Debug, Clone, PartialEq)]
pub struct Caller {
    pub user_id: String,
    pub device: String,
    pub account_age_days: Option<f64>,
}

/// `POST /flash-sale/checkout`.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckoutRequest {
    pub product_id: String,
    pub user_id: String,
    pub device: String,
    pub token: String,
    pub quantity: u32,
    pub idempotency_key: String,
    /// The body's hash, to tell a replay from a different request under the same key.
    pub hash: String,
}

impl CheckoutRequest {
    /// 03's field rules (unknown fields ignored); the message names the field.
    pub fn parse(b: &Value) -> Result<Self, String> {
        let s = |k: &str| -> Result<String, String> {
            b.get(k)
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| format!("{k} is required (a string)"))
        };
        let product_id = s("product_id")?;
        let user_id = s("user_id")?;
        for (k, v) in [("product_id", &product_id), ("user_id", &user_id)] {
            if !valid_id(v) {
                return Err(format!("{k}: 1–64 characters of [A-Za-z0-9_.-]"));
            }
        }
        let device = s("device_fp")?;
        if !valid_device(&device) {
            return Err("device_fp: 1–128 printable characters other than |".into());
        }
        let token = s("token")?;
        if token.is_empty() || token.len() > 256 {
            return Err("token: 1–256 characters".into());
        }
        let quantity = match b.get("quantity") {
            None => 1,
            Some(q) => q
                .as_u64()
                .filter(|q| (1..=u64::from(MAX_QTY)).contains(q))
                .ok_or_else(|| format!("quantity: an integer 1..{MAX_QTY}"))?
                as u32,
        };
        let idempotency_key = s("idempotency_key")?;
        if !(1..=128).contains(&idempotency_key.len()) {
            return Err("idempotency_key: 1–128 characters".into());
        }
        Ok(Self {
            product_id,
            user_id,
            device,
            token,
            quantity,
            idempotency_key,
            hash: request_hash(b),
        })
    }
}

/// New ids for one checkout: reservation, order, idempotency lease token.
pub trait Ids: Send {
    fn next(&mut self) -> String;
}

/// Proof of work for the token mint: `sha256("<user>|<device>|<product>|<proof>")` must start
/// with `bits` zero bits. The built-in challenge (a CAPTCHA, App Attest or Play Integrity
/// verdict plugs in at the same place).
pub fn proof_ok(user: &str, device: &str, product: &str, proof: &str, bits: u8) -> bool {
    let d = Sha256::digest(format!("{user}|{device}|{product}|{proof}").as_bytes());
    let mut need = u32::from(bits);
    for byte in d {
        let z = byte.leading_zeros().min(need);
        need -= z;
        if need == 0 || z < 8 {
            break;
        }
    }
    need == 0
}

/// Solves [`proof_ok`] (clients, tests, the twin): the smallest counter that works.
pub fn solve(user: &str, device: &str, product: &str, bits: u8) -> String {
    (0u64..)
        .map(|n| n.to_string())
        .find(|p| proof_ok(user, device, product, p, bits))
        .expect("a proof exists")
}

/// A waiting-room score: before opening, a uniformly random place ahead of every later
/// arrival (keyed by the secret, so the same user always draws the same place and nobody can
/// predict it); from opening, arrival order.
pub fn queue_score(secret: &[u8], product: &str, user: &str, opens_at_ms: i64, now_ms: i64) -> i64 {
    if now_ms >= opens_at_ms {
        return now_ms;
    }
    let mut m = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    m.update(format!("prequeue|{product}|{user}").as_bytes());
    let d = m.finalize().into_bytes();
    let r = u64::from_be_bytes(d[..8].try_into().expect("8 bytes")) % PREQUEUE_SPAN_MS as u64;
    opens_at_ms - PREQUEUE_SPAN_MS + r as i64
}

fn queued(v: &QueueView) -> Value {
    json!({"status": "queued", "position": v.position, "total_in_queue": v.total_in_queue,
           "estimated_wait_seconds": v.position.div_ceil(ADMITTED_PER_S)})
}

pub struct FlashSale<S, I, O> {
    pub store: S,
    pub idem: I,
    pub orders: O,
    secret: Vec<u8>,
    pub policy: Policy,
}

impl<S: FlashStore, I: IdempotencyStore, O: Orders> FlashSale<S, I, O> {
    pub fn new(store: S, idem: I, orders: O, secret: Vec<u8>, policy: Policy) -> Self {
        Self {
            store,
            idem,
            orders,
            secret,
            policy,
        }
    }

    /// Rate limits (device, then user) and the bot score, shared by the mint and the checkout.
    async fn screen(&self, c: &Caller, now_ms: i64) -> Result<(), Answer> {
        let p = &self.policy;
        let store = |e: BackendError| Answer::unavailable(&e);
        if !self
            .store
            .hit(
                &format!("dev:{}", c.device),
                now_ms,
                p.window_ms,
                p.device_burst,
            )
            .await
            .map_err(store)?
            || !self
                .store
                .hit(
                    &format!("user:{}", c.user_id),
                    now_ms,
                    p.window_ms,
                    p.user_burst,
                )
                .await
                .map_err(store)?
        {
            return Err(Answer::err(429, "RATE_LIMITED", "too many requests").retry(1));
        }
        let mut signals = self
            .store
            .observe(&c.user_id, &c.device, now_ms)
            .await
            .map_err(store)?;
        signals.account_age_days = c.account_age_days;
        if p.bot.blocks(&signals) {
            return Err(Answer::err(
                403,
                "BOT_SUSPECTED",
                "this traffic looks automated",
            ));
        }
        Ok(())
    }

    /// `GET /flash-sale/token`: screened, the proof checked, the product known; a token bound
    /// to this user, device and product with a fresh `nonce`.
    pub async fn mint(
        &self,
        c: &Caller,
        product: &str,
        proof: &str,
        nonce: &str,
        now_ms: i64,
    ) -> Answer {
        if !valid_id(&c.user_id) || !valid_id(product) {
            return Answer::invalid("user_id and product_id: 1–64 characters of [A-Za-z0-9_.-]");
        }
        if !valid_device(&c.device) {
            return Answer::invalid("device_fp: 1–128 printable characters other than |");
        }
        if let Err(a) = self.screen(c, now_ms).await {
            return a;
        }
        if !proof_ok(
            &c.user_id,
            &c.device,
            product,
            proof,
            self.policy.proof_bits,
        ) {
            return Answer::err(401, "INVALID_PROOF", "the proof of work does not hold");
        }
        match self.store.stock(product).await {
            Ok(Some(_)) => {}
            Ok(None) => return Answer::err(404, "NOT_FOUND", "no flash sale for this product"),
            Err(e) => return Answer::unavailable(&e),
        }
        let (token, expires_at) =
            token::mint(&self.secret, &c.user_id, &c.device, product, nonce, now_ms);
        Answer::ok(
            200,
            json!({"token": token, "expires_at": expires_at, "expires_in": TOKEN_TTL_MS / 1000}),
        )
    }

    /// `POST /flash-sale/checkout`, 03's pipeline in order: idempotency, token (spent once),
    /// limits and bot score, the sale, a slot, the reservation or the waiting room. Terminal
    /// answers (200, 202, 409 limit) are stored under the key; others free it.
    pub async fn checkout(
        &self,
        r: &CheckoutRequest,
        age_days: Option<f64>,
        ids: &mut dyn Ids,
        now_ms: i64,
    ) -> Answer {
        let lease = ids.next();
        match self
            .idem
            .begin(&r.user_id, &r.idempotency_key, &lease, now_ms)
            .await
        {
            Ok(Begin::Run) => {}
            Ok(Begin::Replay(s)) => {
                let same = s.request_hash == r.hash;
                let mut a = Answer::err(
                    409,
                    "IDEMPOTENCY_CONFLICT",
                    if same {
                        "this request was already answered"
                    } else {
                        "this idempotency key was used for another request"
                    },
                );
                a.body["error"]["details"] =
                    json!({"original_status": s.status, "data": s.body.get("data")});
                return a;
            }
            Ok(Begin::InProgress) => {
                let mut a = Answer::err(
                    409,
                    "IDEMPOTENCY_IN_PROGRESS",
                    "a request with this key is running",
                )
                .retry(1);
                a.body["error"]["details"] = json!({"original_status": "in_progress"});
                return a;
            }
            Err(e) => return Answer::unavailable(&e),
        }
        let answer = self.pipeline(r, age_days, ids, now_ms).await;
        let terminal =
            matches!(answer.status, 200 | 202) || answer.code() == Some("PURCHASE_LIMIT_EXCEEDED");
        let stored = terminal.then(|| Stored {
            status: answer.status,
            body: answer.body.clone(),
            request_hash: r.hash.clone(),
        });
        if let Err(e) = self
            .idem
            .finish(
                &r.user_id,
                &r.idempotency_key,
                &lease,
                stored.as_ref(),
                now_ms,
            )
            .await
        {
            tracing::warn!(error = %e, "flash sale answer not stored for replays");
        }
        answer
    }

    async fn pipeline(
        &self,
        r: &CheckoutRequest,
        age_days: Option<f64>,
        ids: &mut dyn Ids,
        now_ms: i64,
    ) -> Answer {
        let v = match token::verify(
            &self.secret,
            &r.token,
            &r.user_id,
            &r.device,
            &r.product_id,
            now_ms,
        ) {
            Ok(v) => v,
            Err(e) => return Answer::err(401, "INVALID_ATTESTATION", e.to_string()),
        };
        match self
            .store
            .spend_nonce(&v.nonce, v.expires_at_ms, now_ms)
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                return Answer::err(401, "INVALID_ATTESTATION", TokenError::Replayed.to_string())
            }
            Err(e) => return Answer::unavailable(&e),
        }
        let caller = Caller {
            user_id: r.user_id.clone(),
            device: r.device.clone(),
            account_age_days: age_days,
        };
        if let Err(a) = self.screen(&caller, now_ms).await {
            return a;
        }
        let sale = match self.store.stock(&r.product_id).await {
            Ok(Some(s)) => s,
            Ok(None) => return Answer::err(404, "NOT_FOUND", "no flash sale for this product"),
            Err(e) => return Answer::unavailable(&e),
        };
        let max_slots = match self.store.max_slots(&r.product_id).await {
            Ok(m) => m.unwrap_or(1),
            Err(e) => return Answer::unavailable(&e),
        };
        match self
            .store
            .slot(&r.product_id, &r.user_id, max_slots, now_ms)
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                return Answer::err(503, "SLOT_POOL_FULL", "too many buyers at once").retry(5)
            }
            Err(e) => return Answer::unavailable(&e),
        }
        let cmd = ReserveCmd {
            product_id: r.product_id.clone(),
            user_id: r.user_id.clone(),
            device: r.device.clone(),
            quantity: r.quantity,
            reservation_id: format!("RES-{}", ids.next()),
            order_id: format!("ORD-{:x}-{}", now_ms, ids.next()),
            now_ms,
        };
        let outcome = self.store.reserve(&cmd).await;
        if !matches!(outcome, Ok(Reserve::Reserved { .. })) {
            if let Err(e) = self.store.free_slot(&r.product_id, &r.user_id).await {
                tracing::warn!(error = %e, "slot not freed (its lease lapses)");
            }
        }
        match outcome {
            Ok(Reserve::Reserved { expires_at_ms, .. }) => Answer::ok(
                200,
                json!({"status": "completed", "order_id": cmd.order_id, "reservation_id": cmd.reservation_id,
                       "reservation_expires_at": expires_at_ms}),
            ),
            Ok(Reserve::Queue) => {
                let score = queue_score(
                    &self.secret,
                    &r.product_id,
                    &r.user_id,
                    sale.opens_at_ms,
                    now_ms,
                );
                match self.store.enqueue(&r.product_id, &r.user_id, score).await {
                    Ok(v) => Answer::ok(202, queued(&v)),
                    Err(e) => Answer::unavailable(&e),
                }
            }
            Ok(Reserve::LimitExceeded) => Answer::err(
                409,
                "PURCHASE_LIMIT_EXCEEDED",
                "you hold as many as one buyer may",
            ),
            Ok(Reserve::NotFound) => {
                Answer::err(404, "NOT_FOUND", "no flash sale for this product")
            }
            Err(e) => Answer::unavailable(&e),
        }
    }

    /// `POST /flash-sale/confirm`: the confirm script, then the order and its outbox event in
    /// one transaction (also on a repeat, so a write that failed once is made by the retry).
    pub async fn confirm(&self, reservation_id: &str, user_id: &str, now_ms: i64) -> Answer {
        if !valid_id(user_id) || reservation_id.is_empty() || reservation_id.len() > 64 {
            return Answer::invalid("reservation_id and user_id are required");
        }
        let t = match self.store.confirm(reservation_id, user_id, now_ms).await {
            Ok(t) => t,
            Err(e) => return Answer::unavailable(&e),
        };
        match t {
            Transition::Done { .. } | Transition::Already { .. } => {
                let res = match self.store.reservation(reservation_id).await {
                    Ok(Some(r)) => r,
                    Ok(None) => return Answer::err(404, "NOT_FOUND", "no such reservation"),
                    Err(e) => return Answer::unavailable(&e),
                };
                let order = ConfirmedOrder {
                    order_id: res.order_id.clone(),
                    reservation_id: res.id.clone(),
                    product_id: res.product_id.clone(),
                    user_id: res.user_id.clone(),
                    quantity: res.quantity,
                    confirmed_at_ms: now_ms,
                };
                if let Err(e) = self.orders.record(&order).await {
                    // Confirmed in Redis; the client's retry (a repeat) writes the row.
                    return Answer::unavailable(&e);
                }
                Answer::ok(200, json!({"confirmed": true, "order_id": res.order_id}))
            }
            Transition::NotFound => Answer::err(404, "NOT_FOUND", "no such reservation"),
            Transition::NotOwner => Answer::err(403, "FORBIDDEN", "not your reservation"),
            Transition::Conflict(s) => Answer::err(
                409,
                "RESERVATION_NOT_ACTIVE",
                format!("the reservation is {}", s.as_str()),
            ),
        }
    }

    /// `POST /flash-sale/release` by the reservation's owner.
    pub async fn release(&self, reservation_id: &str, user_id: &str, now_ms: i64) -> Answer {
        if !valid_id(user_id) || reservation_id.is_empty() || reservation_id.len() > 64 {
            return Answer::invalid("reservation_id and user_id are required");
        }
        match self
            .store
            .release(reservation_id, Some(user_id), Status::Released, now_ms)
            .await
        {
            Ok(Transition::Done { .. }) => Answer::ok(200, json!({"released": true})),
            Ok(Transition::Already { .. }) => {
                Answer::ok(200, json!({"released": true, "already": true}))
            }
            Ok(Transition::NotFound) => Answer::err(404, "NOT_FOUND", "no such reservation"),
            Ok(Transition::NotOwner) => Answer::err(403, "FORBIDDEN", "not your reservation"),
            Ok(Transition::Conflict(_)) => Answer::err(
                409,
                "RESERVATION_CONFIRMED",
                "a confirmed reservation stays",
            ),
            Err(e) => Answer::unavailable(&e),
        }
    }

    /// `GET /flash-sale/queue-status`.
    pub async fn queue_status(&self, product: &str, user: &str, now_ms: i64) -> Answer {
        if !valid_id(product) || !valid_id(user) {
            return Answer::invalid(
                "product_id and user_id are required: 1–64 characters of [A-Za-z0-9_.-]",
            );
        }
        match self.store.queue(product, user, now_ms).await {
            Ok(v) => Answer::ok(
                200,
                json!({"product_id": product, "user_id": user, "status": v.status, "position": v.position,
                       "total_in_queue": v.total_in_queue,
                       "estimated_wait_seconds": v.position.div_ceil(ADMITTED_PER_S)}),
            ),
            Err(e) => Answer::unavailable(&e),
        }
    }

    /// `POST /admin/flash-sale/init-product`.
    pub async fn init(&self, cfg: &SaleConfig, force: bool) -> Answer {
        if let Some((field, rule)) = cfg.problem() {
            return Answer::invalid(format!("{field}: {rule}"));
        }
        match self.store.init(cfg, force).await {
            Ok(Init::Ready { epoch }) => Answer::ok(
                200,
                json!({"product_id": cfg.product_id, "total_stock": cfg.total_stock,
                       "bucket_count": cfg.bucket_count, "epoch": epoch, "opens_at": cfg.opens_at_ms}),
            ),
            Ok(Init::Active) => Answer::err(
                409,
                "SALE_ACTIVE",
                "units are reserved: pass force to reinitialise",
            ),
            Err(e) => Answer::unavailable(&e),
        }
    }

    /// `GET /admin/flash-sale/stock`.
    pub async fn stock(&self, product: &str) -> Answer {
        if !valid_id(product) {
            return Answer::invalid("product_id: 1–64 characters of [A-Za-z0-9_.-]");
        }
        match self.store.stock(product).await {
            Ok(Some(v)) => Answer::ok(200, serde_json::to_value(v).expect("a view serialises")),
            Ok(None) => Answer::err(404, "NOT_FOUND", "no flash sale for this product"),
            Err(e) => Answer::unavailable(&e),
        }
    }

    /// `GET /flash-sale/slot-status`.
    pub async fn slot_status(&self, product: &str, now_ms: i64) -> Answer {
        if !valid_id(product) {
            return Answer::invalid("product_id: 1–64 characters of [A-Za-z0-9_.-]");
        }
        let max = match self.store.max_slots(product).await {
            Ok(Some(m)) => m,
            Ok(None) => return Answer::err(404, "NOT_FOUND", "no flash sale for this product"),
            Err(e) => return Answer::unavailable(&e),
        };
        match self.store.slots_used(product, now_ms).await {
            Ok(used) => {
                let available = u64::from(max).saturating_sub(used);
                Answer::ok(
                    200,
                    json!({"available": available, "max": max, "has_capacity": available > 0}),
                )
            }
            Err(e) => Answer::unavailable(&e),
        }
    }

    /// The reaper (03: every 10 s): reservations past `expires_at` + 15 s expire, their units
    /// back in stock (then the admission job hands them to the queue). How many expired.
    pub async fn reap_once(&self, now_ms: i64) -> Result<u64, BackendError> {
        let mut n = 0;
        for pid in self.store.products().await? {
            for rid in self
                .store
                .overdue(&pid, now_ms - REAP_GRACE_MS, 100)
                .await?
            {
                if matches!(
                    self.store
                        .release(&rid, None, Status::Expired, now_ms)
                        .await?,
                    Transition::Done { .. }
                ) {
                    n += 1;
                }
            }
        }
        Ok(n)
    }

    /// Admission (03: every 500 ms): passes for the head of each sale's queue, as many as there
    /// are units not promised to live passes. The users admitted, by product.
    pub async fn admit_once(
        &self,
        now_ms: i64,
    ) -> Result<Vec<(String, Vec<String>)>, BackendError> {
        let mut out = Vec::new();
        for pid in self.store.products().await? {
            let users = self.store.admit(&pid, now_ms, ADMIT_BATCH, PASS_MS).await?;
            if !users.is_empty() {
                out.push((pid, users));
            }
        }
        Ok(out)
    }

    /// Waiting-room cleanup (03: every 30 s): users waiting over 10 minutes leave.
    pub async fn cleanup_once(&self, now_ms: i64) -> Result<u64, BackendError> {
        let mut n = 0;
        for pid in self.store.products().await? {
            n += self
                .store
                .cleanup(&pid, now_ms - WAITING_MAX_AGE_MS)
                .await?;
        }
        Ok(n)
    }
}
