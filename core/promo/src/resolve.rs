//! Resolution (05 §4) as a pure, deterministic state machine: it says which rule to reserve
//! next and with what grant, and is told whether the reservation succeeded. The application
//! layer runs the reservations (the store's atomic script) in between. Order: candidates by
//! priority desc, created_at asc, id asc; exclusivity groups first, in the order of their best
//! member, each member ranked by its discount on the subtotal, the first successful
//! reservation winning the group; then ungrouped rules with the stacking rules. Every grant is
//! computed on what is left of the subtotal, so the discounts never exceed it.

use crate::effect::{Effect, Grant};

/// Why a candidate was not applied (05 §4, plus the money budget).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    ExclusiveLost,
    MaxStackable,
    NotStackable,
    ZeroDiscount,
    TotalLimit,
    DailyLimit,
    UserLimit,
    DeviceLimit,
    BudgetLimit,
    FraudAddress,
    FraudRing,
    /// The ring rule's action is `review`: no promo until a person looks.
    ReviewRequired,
    CounterUnavailable,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::ExclusiveLost => "EXCLUSIVE_LOST",
            Reason::MaxStackable => "MAX_STACKABLE",
            Reason::NotStackable => "NOT_STACKABLE",
            Reason::ZeroDiscount => "ZERO_DISCOUNT",
            Reason::TotalLimit => "TOTAL_LIMIT",
            Reason::DailyLimit => "DAILY_LIMIT",
            Reason::UserLimit => "USER_LIMIT",
            Reason::DeviceLimit => "DEVICE_LIMIT",
            Reason::BudgetLimit => "BUDGET_LIMIT",
            Reason::FraudAddress => "FRAUD_ADDRESS",
            Reason::FraudRing => "FRAUD_RING",
            Reason::ReviewRequired => "REVIEW_REQUIRED",
            Reason::CounterUnavailable => "COUNTER_UNAVAILABLE",
        }
    }
}

/// A rule that passed its conditions, dates and counters, as resolution sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub rule_id: String,
    pub priority: i64,
    pub created_at_ms: i64,
    pub group: Option<String>,
    pub stackable: bool,
    /// 0 = no limit.
    pub max_stackable: u32,
    pub effect: Effect,
}

#[derive(Debug, Clone, PartialEq)]
enum Slot {
    /// Members' indices, ranked.
    Group(Vec<usize>),
    Single(usize),
}

/// The resolution of one cart.
#[derive(Debug, Clone)]
pub struct Resolver {
    candidates: Vec<Candidate>,
    subtotal: i64,
    shipping_fee: i64,
    slots: Vec<Slot>,
    slot: usize,
    member: usize,
    remaining: i64,
    stackables: u32,
    stopped: bool,
    /// The rule asked for, its grant, and whether it is a group's member.
    pending: Option<(usize, Grant, bool)>,
    pub applied: Vec<(usize, Grant)>,
    pub rejected: Vec<(usize, Reason)>,
}

impl Resolver {
    /// `candidates` in any order; they are sorted here.
    pub fn new(mut candidates: Vec<Candidate>, subtotal: i64, shipping_fee: i64) -> Self {
        candidates.sort_by(|a, b| {
            b.priority
                .cmp(&a.priority)
                .then(a.created_at_ms.cmp(&b.created_at_ms))
                .then(a.rule_id.cmp(&b.rule_id))
        });
        let on_subtotal = |c: &Candidate| c.effect.grant(subtotal, shipping_fee, subtotal).discount;
        let mut groups: Vec<(String, Vec<usize>)> = Vec::new();
        let mut singles = Vec::new();
        for (i, c) in candidates.iter().enumerate() {
            match c.group.as_deref().filter(|g| !g.is_empty()) {
                Some(g) => match groups.iter_mut().find(|(name, _)| name == g) {
                    Some((_, members)) => members.push(i),
                    // Groups are met in the order of their best member.
                    None => groups.push((g.to_string(), vec![i])),
                },
                None => singles.push(i),
            }
        }
        let mut slots: Vec<Slot> = groups
            .into_iter()
            .map(|(_, mut members)| {
                // By discount on the subtotal, then the candidates' order (a stable sort).
                members.sort_by_key(|i| std::cmp::Reverse(on_subtotal(&candidates[*i])));
                Slot::Group(members)
            })
            .collect();
        slots.extend(singles.into_iter().map(Slot::Single));
        Self {
            candidates,
            subtotal,
            shipping_fee,
            slots,
            slot: 0,
            member: 0,
            remaining: subtotal,
            stackables: 0,
            stopped: false,
            pending: None,
            applied: Vec::new(),
            rejected: Vec::new(),
        }
    }

    pub fn candidates(&self) -> &[Candidate] {
        &self.candidates
    }

    fn grant(&self, i: usize) -> Grant {
        self.candidates[i]
            .effect
            .grant(self.remaining, self.shipping_fee, self.remaining)
    }

    /// The next rule to reserve and its grant; None when resolution is over.
    pub fn next_reservation(&mut self) -> Option<(usize, Grant)> {
        assert!(self.pending.is_none(), "answer the last reservation first");
        while self.slot < self.slots.len() {
            match &self.slots[self.slot] {
                Slot::Group(members) => {
                    let Some(&i) = members.get(self.member) else {
                        self.slot += 1;
                        self.member = 0;
                        continue;
                    };
                    self.member += 1;
                    let g = self.grant(i);
                    if g.is_zero() {
                        self.rejected.push((i, Reason::ZeroDiscount));
                        continue;
                    }
                    self.pending = Some((i, g, true));
                    return Some((i, g));
                }
                &Slot::Single(i) => {
                    self.slot += 1;
                    let c = &self.candidates[i];
                    if self.stopped {
                        self.rejected.push((i, Reason::NotStackable));
                        continue;
                    }
                    if c.stackable {
                        if c.max_stackable > 0 && self.stackables >= c.max_stackable {
                            self.rejected.push((i, Reason::MaxStackable));
                            continue;
                        }
                    } else if !self.applied.is_empty() {
                        self.rejected.push((i, Reason::NotStackable));
                        continue;
                    }
                    let g = self.grant(i);
                    if g.is_zero() {
                        self.rejected.push((i, Reason::ZeroDiscount));
                        continue;
                    }
                    self.pending = Some((i, g, false));
                    return Some((i, g));
                }
            }
        }
        None
    }

    /// The outcome of the reservation [`Resolver::next_reservation`] asked for.
    pub fn reserved(&mut self, outcome: Result<(), Reason>) {
        let (i, g, in_group) = self.pending.take().expect("a reservation was asked for");
        match outcome {
            Err(r) => self.rejected.push((i, r)),
            Ok(()) => {
                self.applied.push((i, g));
                self.remaining -= g.discount;
                if in_group {
                    if let Slot::Group(members) = &self.slots[self.slot] {
                        for &m in &members[self.member..] {
                            self.rejected.push((m, Reason::ExclusiveLost));
                        }
                    }
                    self.slot += 1;
                    self.member = 0;
                } else if self.candidates[i].stackable {
                    self.stackables += 1;
                } else {
                    self.stopped = true;
                }
            }
        }
    }

    pub fn total_discount(&self) -> i64 {
        self.subtotal - self.remaining
    }

    pub fn total_cashback(&self) -> i64 {
        self.applied.iter().map(|(_, g)| g.cashback).sum()
    }

    pub fn final_amount(&self) -> i64 {
        self.remaining
    }
}

/// Runs a resolution with `reserve` answering each reservation (tests and previews).
pub fn resolve_with(
    candidates: Vec<Candidate>,
    subtotal: i64,
    shipping_fee: i64,
    mut reserve: impl FnMut(&Candidate, Grant) -> Result<(), Reason>,
) -> Resolver {
    let mut r = Resolver::new(candidates, subtotal, shipping_fee);
    while let Some((i, g)) = r.next_reservation() {
        let outcome = reserve(&r.candidates()[i], g);
        r.reserved(outcome);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(
        id: &str,
        priority: i64,
        group: Option<&str>,
        stackable: bool,
        effect: Effect,
    ) -> Candidate {
        Candidate {
            rule_id: id.into(),
            priority,
            created_at_ms: 0,
            group: group.map(str::to_string),
            stackable,
            max_stackable: 0,
            effect,
        }
    }

    fn pct(p: i64) -> Effect {
        Effect::Percentage {
            bp: p * 100,
            max_discount: 0,
        }
    }

    type Applied<'a> = Vec<(&'a str, i64)>;
    type Rejected<'a> = Vec<(&'a str, &'static str)>;

    fn ids(r: &Resolver) -> (Applied<'_>, Rejected<'_>) {
        let cs = r.candidates();
        (
            r.applied
                .iter()
                .map(|(i, g)| (cs[*i].rule_id.as_str(), g.discount))
                .collect(),
            r.rejected
                .iter()
                .map(|(i, why)| (cs[*i].rule_id.as_str(), why.as_str()))
                .collect(),
        )
    }

    #[test]
    fn groups_take_their_best_member_that_can_be_reserved_then_stackables_on_the_rest() {
        let cands = vec![
            c("g-small", 10, Some("g"), false, pct(5)),
            c("g-big", 1, Some("g"), false, pct(20)),
            c("s1", 5, None, true, Effect::Fixed(10_000)),
            c("s2", 4, None, true, Effect::Cashback(3_000)),
        ];
        let r = resolve_with(cands.clone(), 100_000, 0, |_, _| Ok(()));
        assert_eq!(
            ids(&r),
            (
                vec![("g-big", 20_000), ("s1", 10_000), ("s2", 0)],
                vec![("g-small", "EXCLUSIVE_LOST")]
            )
        );
        assert_eq!(
            (r.total_discount(), r.final_amount(), r.total_cashback()),
            (30_000, 70_000, 3_000)
        );
        // The big one's cap is used up: the group falls to the next member, not lost.
        let r = resolve_with(cands, 100_000, 0, |c, _| {
            if c.rule_id == "g-big" {
                Err(Reason::TotalLimit)
            } else {
                Ok(())
            }
        });
        assert_eq!(
            ids(&r).0,
            vec![("g-small", 5_000), ("s1", 10_000), ("s2", 0)]
        );
        assert_eq!(ids(&r).1, vec![("g-big", "TOTAL_LIMIT")]);
    }

    #[test]
    fn a_non_stackable_rule_applies_alone_and_ends_resolution() {
        let cands = vec![
            c("solo", 9, None, false, pct(10)),
            c("later", 1, None, true, Effect::Fixed(1_000)),
            c("other-solo", 0, None, false, pct(50)),
        ];
        let r = resolve_with(cands, 50_000, 0, |_, _| Ok(()));
        assert_eq!(
            ids(&r),
            (
                vec![("solo", 5_000)],
                vec![("later", "NOT_STACKABLE"), ("other-solo", "NOT_STACKABLE")]
            )
        );
        // With something applied first, a non-stackable rule is refused, later ones go on.
        let cands = vec![
            c("s", 9, None, true, Effect::Fixed(1_000)),
            c("solo", 5, None, false, pct(10)),
            c("s2", 1, None, true, Effect::Fixed(500)),
        ];
        let r = resolve_with(cands, 50_000, 0, |_, _| Ok(()));
        assert_eq!(
            ids(&r),
            (
                vec![("s", 1_000), ("s2", 500)],
                vec![("solo", "NOT_STACKABLE")]
            )
        );
    }

    #[test]
    fn discounts_never_exceed_the_subtotal_and_zero_grants_take_nothing() {
        let mut capped = c("s3", 1, None, true, Effect::Fixed(1_000));
        capped.max_stackable = 2;
        let cands = vec![
            c("s1", 3, None, true, Effect::Fixed(30_000)),
            c("s2", 2, None, true, pct(100)),
            capped,
            c("ship", 0, None, true, Effect::FreeShipping { cap: 0 }),
        ];
        let mut reserved = Vec::new();
        let r = resolve_with(cands, 40_000, 0, |c, g| {
            reserved.push((c.rule_id.clone(), g.discount));
            Ok(())
        });
        assert_eq!(r.total_discount(), 40_000);
        assert_eq!(r.final_amount(), 0);
        assert_eq!(
            reserved,
            vec![("s1".to_string(), 30_000), ("s2".to_string(), 10_000)]
        );
        assert_eq!(
            ids(&r).1,
            vec![("s3", "MAX_STACKABLE"), ("ship", "ZERO_DISCOUNT")]
        );
    }

    #[test]
    fn the_order_is_deterministic_whatever_the_input_order() {
        let mut a = c("b", 5, Some("x"), false, pct(10));
        a.created_at_ms = 2;
        let mut b = c("a", 5, Some("x"), false, pct(10));
        b.created_at_ms = 2;
        let d = c("c", 5, Some("y"), false, pct(10));
        let one = resolve_with(vec![a.clone(), b.clone(), d.clone()], 10_000, 0, |_, _| {
            Ok(())
        });
        let two = resolve_with(vec![d, b, a], 10_000, 0, |_, _| Ok(()));
        assert_eq!(ids(&one), ids(&two));
        assert_eq!(ids(&one).0[0].0, "c", "created earlier");
    }
}
