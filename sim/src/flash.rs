//! A flash sale in the twin (issue #15). Humans and bots compete for a few hundred units of one
//! product through the production flash-sale core (`qc_flashsale::app::FlashSale`): every
//! token mint, checkout, queue poll, confirm and release is the service's own call, and the
//! admission and reaper jobs run at their periods on the twin's clock. Memory adapters by
//! default; live mode runs the same over Redis scripts and Postgres orders.
//!
//! What is the world's: who arrives when, how people behave (a try every few seconds from one
//! phone, polling while queued, paying or not) and how bots behave (a fresh account, perfectly
//! regular requests at ~20 per human request, a new fingerprint each time, arriving before
//! opening). The measurements: units to humans and bots, oversell, queue waits, fairness of
//! admission against arrival order, bots blocked and humans falsely blocked.

use std::collections::BTreeMap;

use qc_flashsale::app::{solve, Caller, CheckoutRequest, Ids};
use qc_flashsale::model::{SaleConfig, ADMIT_EVERY_MS, REAP_EVERY_MS, REAP_GRACE_MS};
use qc_flashsale::orders::Orders;
use qc_flashsale::{Answer, FlashSale, FlashStore};
use qc_kit::idempotency::IdempotencyStore;
use rand::Rng;
use reports::summary::{Dist, FlashSaleInfo};
use serde_json::json;

use crate::backend::Exec;
use crate::engine::{Queue, SimTime};
use crate::rng::{Stream, Streams};
use crate::scenario::FlashSaleSection;

/// The twin's HMAC secret (the twin is deterministic; the service reads `HMAC_SECRET`).
const SECRET: &[u8] = b"twin-flash-sale-secret-of-32-bytes!!";
const PRODUCT: &str = "flash-1";
/// A human tries, or polls while queued, every 3–8 s (5.5 s on average).
const HUMAN_GAP_MS: (i64, i64) = (3_000, 8_000);
/// Humans give up after this long without a unit.
const HUMAN_PATIENCE_MS: i64 = 600_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Ev {
    HumanTry(usize),
    HumanPoll(usize),
    HumanPay(usize),
    BotTry(usize),
    Admit,
    Reap,
}

#[derive(Debug, Default, Clone)]
struct Human {
    arrived: SimTime,
    account_age_days: f64,
    tries: u32,
    queued_at: Option<SimTime>,
    admitted_at: Option<SimTime>,
    reservation: Option<String>,
    units: u32,
    blocked: bool,
    done: bool,
}

#[derive(Debug, Default, Clone)]
struct Bot {
    tries: u32,
    units: u32,
    blocked: bool,
}

struct Counter(u64);
impl Ids for Counter {
    fn next(&mut self) -> String {
        self.0 += 1;
        format!("{:016x}", self.0)
    }
}

fn code_of(a: &Answer) -> String {
    match a.code() {
        Some(c) => c.to_string(),
        None => a.body["data"]["status"]
            .as_str()
            .unwrap_or("ok")
            .to_string(),
    }
}

/// Spearman's rank correlation of two orders of the same items (ranks, no ties).
fn spearman(a: &[usize], b: &[usize]) -> f64 {
    let n = a.len() as f64;
    if a.len() < 2 {
        return 1.0;
    }
    let d2: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| (*x as f64 - *y as f64).powi(2))
        .sum();
    1.0 - 6.0 * d2 / (n * (n * n - 1.0))
}

pub struct FlashTwin<'a, S, I, O, X> {
    cfg: &'a FlashSaleSection,
    app: FlashSale<S, I, O>,
    exec: &'a mut X,
    q: Queue<Ev>,
    rng: Stream,
    ids: Counter,
    epoch_ms: i64,
    opens: SimTime,
    ends: SimTime,
    humans: Vec<Human>,
    bots: Vec<Bot>,
    info: FlashSaleInfo,
    /// Humans in the order they were admitted (index into `humans`).
    admitted: Vec<usize>,
}

impl<'a, S: FlashStore, I: IdempotencyStore, O: Orders, X: Exec> FlashTwin<'a, S, I, O, X> {
    pub fn new(
        cfg: &'a FlashSaleSection,
        store: S,
        idem: I,
        orders: O,
        exec: &'a mut X,
        streams: &Streams,
        epoch_ms: i64,
    ) -> Self {
        let opens = cfg.opens_after.ms();
        Self {
            cfg,
            app: FlashSale::new(
                store,
                idem,
                orders,
                SECRET.to_vec(),
                qc_flashsale::Policy::default(),
            ),
            exec,
            q: Queue::new(),
            rng: streams.stream("flash-sale"),
            ids: Counter(0),
            epoch_ms,
            opens,
            ends: opens + cfg.lasts.ms(),
            humans: Vec::new(),
            bots: vec![Bot::default(); cfg.bots as usize],
            info: FlashSaleInfo::default(),
            admitted: Vec::new(),
        }
    }

    fn now_ms(&self) -> i64 {
        self.epoch_ms + self.q.now()
    }

    fn nonce(&mut self) -> String {
        format!("{:032x}", self.rng.random::<u128>())
    }

    fn gap(&mut self) -> i64 {
        self.rng.random_range(HUMAN_GAP_MS.0..=HUMAN_GAP_MS.1)
    }

    fn count(&mut self, a: &Answer) {
        *self.info.answers.entry(code_of(a)).or_default() += 1;
    }

    /// Runs the sale to its end and the reaper past the last reservation's expiry.
    pub fn run(mut self) -> Result<FlashSaleInfo, String> {
        let c = self.cfg;
        let mut sale = SaleConfig::new(PRODUCT, i64::from(c.units), self.epoch_ms + self.opens);
        sale.per_user_limit = c.per_user_limit;
        sale.reservation_ttl_s = c.reservation_ttl_s;
        let init = self.exec.run("flash.init", self.app.init(&sale, true));
        if init.status != 200 {
            return Err(format!("flash sale init: {}", init.body));
        }
        let early = (c.humans_early_s * 1000.0) as i64;
        let late = (c.humans_late_s * 1000.0) as i64;
        for i in 0..c.humans as usize {
            let at = (self.opens - early + self.rng.random_range(0..=early + late)).max(0);
            let new = self.rng.random::<f64>() < c.humans_new_accounts;
            let age = if new {
                0.5
            } else {
                self.rng.random_range(30.0..1500.0)
            };
            self.humans.push(Human {
                arrived: at,
                account_age_days: age,
                ..Human::default()
            });
            self.q.at(at, Ev::HumanTry(i));
        }
        let bot_gap = (HUMAN_GAP_MS.0 + HUMAN_GAP_MS.1) / 2;
        let bot_every = ((bot_gap as f64) / c.bot_requests_per_human)
            .round()
            .max(1.0) as i64;
        for b in 0..c.bots as usize {
            // Staggered by a few ms each, then perfectly regular.
            let at = (self.opens - (c.bots_early_s * 1000.0) as i64 + b as i64 * 7).max(0);
            self.q.at(at, Ev::BotTry(b));
        }
        self.q.at(self.opens, Ev::Admit);
        self.q.at(self.opens, Ev::Reap);
        let last =
            self.ends + i64::from(c.reservation_ttl_s) * 1000 + REAP_GRACE_MS + REAP_EVERY_MS;
        while let Some((t, ev)) = self.q.pop() {
            if t > last {
                break;
            }
            match ev {
                Ev::HumanTry(h) => self.human_try(h)?,
                Ev::HumanPoll(h) => self.human_poll(h),
                Ev::HumanPay(h) => self.human_pay(h),
                Ev::BotTry(b) => self.bot_try(b, bot_every),
                Ev::Admit => {
                    let now = self.now_ms();
                    let admitted = self
                        .exec
                        .run("flash.admit", self.app.admit_once(now))
                        .map_err(|e| e.to_string())?;
                    for (_, users) in admitted {
                        self.info.admitted += users.len() as u64;
                        for u in users {
                            if let Some(h) =
                                u.strip_prefix('h').and_then(|n| n.parse::<usize>().ok())
                            {
                                self.humans[h].admitted_at.get_or_insert(t);
                                self.admitted.push(h);
                            }
                        }
                    }
                    if t < self.ends {
                        self.q.after(ADMIT_EVERY_MS, Ev::Admit);
                    }
                }
                Ev::Reap => {
                    let now = self.now_ms();
                    self.info.expired += self
                        .exec
                        .run("flash.reap", self.app.reap_once(now))
                        .map_err(|e| e.to_string())?;
                    if t + REAP_EVERY_MS <= last {
                        self.q.after(REAP_EVERY_MS, Ev::Reap);
                    }
                }
            }
        }
        self.finish()
    }

    /// A human's try: a token from their phone, then the checkout.
    fn human_try(&mut self, i: usize) -> Result<(), String> {
        let t = self.q.now();
        let h = &self.humans[i];
        if h.done || h.units > 0 || t >= self.ends || t - h.arrived > HUMAN_PATIENCE_MS {
            self.humans[i].done = true;
            return Ok(());
        }
        self.humans[i].tries += 1;
        let (user, device) = (format!("h{i}"), format!("hd{i}"));
        let caller = Caller {
            user_id: user.clone(),
            device: device.clone(),
            account_age_days: Some(self.humans[i].account_age_days),
        };
        let answer = self.attempt(&caller, true);
        match (answer.status, answer.code()) {
            (200, _) => {
                self.humans[i].reservation = answer.body["data"]["reservation_id"]
                    .as_str()
                    .map(str::to_string);
                let pay = self.rng.random_range(10_000..60_000);
                self.q.after(pay, Ev::HumanPay(i));
            }
            (202, _) => {
                self.humans[i].queued_at.get_or_insert(t);
                let g = self.gap();
                self.q.after(g, Ev::HumanPoll(i));
            }
            (403, _) => {
                self.humans[i].blocked = true;
                self.q.after(10_000, Ev::HumanTry(i));
            }
            (409, Some("PURCHASE_LIMIT_EXCEEDED")) => self.humans[i].done = true,
            _ => {
                let g = self.gap();
                self.q.after(g, Ev::HumanTry(i));
            }
        }
        Ok(())
    }

    /// Mint and checkout; the checkout's answer (or the mint's when it refused).
    fn attempt(&mut self, caller: &Caller, human: bool) -> Answer {
        let now = self.now_ms();
        let nonce = self.nonce();
        let proof = solve(
            &caller.user_id,
            &caller.device,
            PRODUCT,
            self.app.policy.proof_bits,
        );
        let minted = self.exec.run(
            "flash.token",
            self.app.mint(caller, PRODUCT, &proof, &nonce, now),
        );
        let requests = if human {
            &mut self.info.human_requests
        } else {
            &mut self.info.bot_requests
        };
        *requests += 1;
        if minted.status != 200 {
            self.count(&minted);
            return minted;
        }
        let key = self.ids.next();
        let body = json!({"product_id": PRODUCT, "user_id": caller.user_id, "device_fp": caller.device,
            "token": minted.body["data"]["token"], "quantity": 1, "idempotency_key": key});
        let req = CheckoutRequest::parse(&body).expect("the twin's bodies are valid");
        let answer = self.exec.run(
            "flash.checkout",
            self.app
                .checkout(&req, caller.account_age_days, &mut self.ids, now),
        );
        if human {
            self.info.human_requests += 1;
        } else {
            self.info.bot_requests += 1;
        }
        self.count(&answer);
        answer
    }

    fn human_poll(&mut self, i: usize) {
        let t = self.q.now();
        if t >= self.ends {
            self.humans[i].done = true;
            return;
        }
        let now = self.now_ms();
        let a = self.exec.run(
            "flash.queue",
            self.app.queue_status(PRODUCT, &format!("h{i}"), now),
        );
        match a.body["data"]["status"].as_str() {
            Some("queued") => {
                let g = self.gap();
                self.q.after(g, Ev::HumanPoll(i));
            }
            // Admitted (or dropped from the queue): try again now.
            _ => self.q.after(0, Ev::HumanTry(i)),
        }
    }

    fn human_pay(&mut self, i: usize) {
        let Some(rid) = self.humans[i].reservation.take() else {
            return;
        };
        let now = self.now_ms();
        let user = format!("h{i}");
        let roll = self.rng.random::<f64>();
        if roll < self.cfg.pay_share {
            let a = self
                .exec
                .run("flash.confirm", self.app.confirm(&rid, &user, now));
            if a.status == 200 {
                self.humans[i].units += 1;
            }
            self.count(&a);
        } else if roll < (1.0 + self.cfg.pay_share) / 2.0 {
            let a = self
                .exec
                .run("flash.release", self.app.release(&rid, &user, now));
            self.count(&a);
        }
        // Otherwise the reservation is left to expire.
        self.humans[i].done = true;
    }

    /// A bot's try: a fresh fingerprint every time, on a perfectly regular beat; a unit it gets
    /// is paid at once.
    fn bot_try(&mut self, b: usize, every: i64) {
        let t = self.q.now();
        if t >= self.ends {
            return;
        }
        self.bots[b].tries += 1;
        let caller = Caller {
            user_id: format!("b{b}"),
            device: format!("bd{b}-{}", self.bots[b].tries),
            account_age_days: Some(0.2),
        };
        let a = self.attempt(&caller, false);
        match (a.status, a.code()) {
            (200, _) => {
                if let Some(rid) = a.body["data"]["reservation_id"].as_str() {
                    let now = self.now_ms();
                    let c = self
                        .exec
                        .run("flash.confirm", self.app.confirm(rid, &caller.user_id, now));
                    if c.status == 200 {
                        self.bots[b].units += 1;
                    }
                }
            }
            (403, _) => self.bots[b].blocked = true,
            _ => {}
        }
        if self.bots[b].units < self.cfg.per_user_limit.max(1) {
            self.q.after(every, Ev::BotTry(b));
        }
    }

    fn finish(mut self) -> Result<FlashSaleInfo, String> {
        let stock = self
            .exec
            .run("flash.stock", self.app.store.stock(PRODUCT))
            .map_err(|e| e.to_string())?
            .ok_or("the sale vanished")?;
        let sold = self
            .exec
            .run("flash.sold", self.app.orders.sold(PRODUCT))
            .map_err(|e| e.to_string())?;
        let i = &mut self.info;
        i.units = u64::from(self.cfg.units);
        i.units_to_humans = self.humans.iter().map(|h| u64::from(h.units)).sum();
        i.units_to_bots = self.bots.iter().map(|b| u64::from(b.units)).sum();
        let sold_units = i.units_to_humans + i.units_to_bots;
        i.humans_share = if sold_units == 0 {
            0.0
        } else {
            (i.units_to_humans as f64 / sold_units as f64 * 10_000.0).round() / 10_000.0
        };
        i.reserved_at_end = stock.reserved_qty.max(0) as u64;
        i.oversell = (stock.confirmed_qty + stock.reserved_qty - stock.initial_stock).max(0) as u64
            + (sold_units as i64 - i64::from(self.cfg.units)).max(0) as u64;
        i.orders_recorded = sold.max(0) as u64;
        i.humans = self.humans.len() as u64;
        i.humans_with_units = self.humans.iter().filter(|h| h.units > 0).count() as u64;
        i.humans_blocked = self.humans.iter().filter(|h| h.blocked).count() as u64;
        i.humans_blocked_share =
            (i.humans_blocked as f64 / i.humans.max(1) as f64 * 10_000.0).round() / 10_000.0;
        i.bots = self.bots.len() as u64;
        i.bots_blocked = self.bots.iter().filter(|b| b.blocked).count() as u64;
        i.bots_blocked_share =
            (i.bots_blocked as f64 / i.bots.max(1) as f64 * 10_000.0).round() / 10_000.0;
        i.bots_with_units = self.bots.iter().filter(|b| b.units > 0).count() as u64;
        i.queue_wait_s = Dist::of(
            self.humans
                .iter()
                .filter_map(|h| Some((h.admitted_at? - h.queued_at?) as f64 / 1000.0))
                .collect(),
        );
        // FIFO after opening: admission order against arrival order, for those who arrived
        // after opening.
        let fifo: Vec<usize> = self
            .admitted
            .iter()
            .copied()
            .filter(|h| self.humans[*h].arrived >= self.opens)
            .collect();
        let mut by_arrival = fifo.clone();
        by_arrival.sort_by_key(|h| (self.humans[*h].queued_at, *h));
        let rank: BTreeMap<usize, usize> = by_arrival
            .iter()
            .enumerate()
            .map(|(r, h)| (*h, r))
            .collect();
        let admitted_ranks: Vec<usize> = (0..fifo.len()).collect();
        let arrival_ranks: Vec<usize> = fifo.iter().map(|h| rank[h]).collect();
        i.fairness = (spearman(&admitted_ranks, &arrival_ranks) * 10_000.0).round() / 10_000.0;
        Ok(self.info)
    }
}
