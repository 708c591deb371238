//! Pure inventory rules: request validation, bucket choice and spread, and how a transition's
//! outcome becomes a reply. No IO, no clock.

use std::collections::HashSet;

use serde::Deserialize;

use crate::error::InventoryError;
use crate::model::*;

pub const MAX_ITEMS: usize = 50;
pub const MAX_ITEM_QUANTITY: i64 = 50;
pub const MAX_TTL_S: i64 = 3600;
pub const MAX_ON_HAND: i64 = 1_000_000_000;
pub const MAX_BUCKETS: i64 = 10;

/// A reserve request as received (types checked by the decoder, ranges checked here).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ReserveInput {
    pub hub_id: Option<String>,
    pub cart_id: Option<String>,
    pub user_id: Option<String>,
    pub items: Option<Vec<ItemInput>>,
    pub ttl_seconds: Option<i64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ItemInput {
    pub sku: Option<String>,
    pub quantity: Option<i64>,
}

fn required<'a>(field: &str, v: &'a Option<String>) -> Result<&'a str, InventoryError> {
    v.as_deref()
        .ok_or_else(|| InventoryError::Invalid(format!("{field} is required")))
}

fn invalid(msg: impl Into<String>) -> InventoryError {
    InventoryError::Invalid(msg.into())
}

/// Checks a reserve request: ids, 1..=50 unique SKUs, quantities 1..=50, ttl 1..=3600.
pub fn validate_reserve(
    input: &ReserveInput,
    reservation_id: ReservationId,
    idempotency_key: Option<IdempotencyKey>,
    default_ttl_s: u32,
) -> Result<ReserveCommand, InventoryError> {
    let hub_id = HubId::parse(required("hub_id", &input.hub_id)?)?;
    let cart_id = CartId::parse(required("cart_id", &input.cart_id)?)?;
    let user_id = UserId::parse(required("user_id", &input.user_id)?)?;
    let raw_items = input
        .items
        .as_ref()
        .ok_or_else(|| invalid("items is required"))?;
    if raw_items.is_empty() || raw_items.len() > MAX_ITEMS {
        return Err(invalid(format!(
            "items must hold 1 to {MAX_ITEMS} entries, got {}",
            raw_items.len()
        )));
    }
    let mut seen = HashSet::with_capacity(raw_items.len());
    let mut items = Vec::with_capacity(raw_items.len());
    for (i, it) in raw_items.iter().enumerate() {
        let sku = it
            .sku
            .as_deref()
            .ok_or_else(|| invalid(format!("items[{i}].sku is required")))?;
        let sku = Sku::parse(sku).map_err(|e| invalid(format!("items[{i}].{e}")))?;
        let q = it
            .quantity
            .ok_or_else(|| invalid(format!("items[{i}].quantity is required")))?;
        if !(1..=MAX_ITEM_QUANTITY).contains(&q) {
            return Err(invalid(format!(
                "items[{i}].quantity must be an integer within [1, {MAX_ITEM_QUANTITY}], got {q}"
            )));
        }
        if !seen.insert(sku.clone()) {
            return Err(invalid(format!(
                "items[{i}].sku {sku} appears more than once"
            )));
        }
        items.push(Item {
            sku,
            quantity: q as u32,
        });
    }
    let ttl_s = match input.ttl_seconds {
        None => default_ttl_s,
        Some(t) if (1..=MAX_TTL_S).contains(&t) => t as u32,
        Some(t) => {
            return Err(invalid(format!(
                "ttl_seconds must be within [1, {MAX_TTL_S}], got {t}"
            )))
        }
    };
    Ok(ReserveCommand {
        reservation_id,
        hub_id,
        cart_id,
        user_id,
        items,
        ttl_s,
        idempotency_key,
    })
}

/// A stock set as received (`POST /admin/stock` and, with `physical_quantity`, cycle counts).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct SetStockInput {
    pub hub_id: Option<String>,
    pub sku: Option<String>,
    pub quantity: Option<i64>,
    pub physical_quantity: Option<i64>,
    pub buckets: Option<i64>,
    pub counted_by: Option<String>,
}

/// Checks `POST /admin/stock`: quantity 0..=1e9, buckets 1..=10 (default 1).
pub fn validate_set_stock(
    input: &SetStockInput,
    actor: &str,
) -> Result<SetStockCommand, InventoryError> {
    let hub_id = HubId::parse(required("hub_id", &input.hub_id)?)?;
    let sku = Sku::parse(required("sku", &input.sku)?)?;
    let on_hand = input
        .quantity
        .ok_or_else(|| invalid("quantity is required"))?;
    check_on_hand("quantity", on_hand)?;
    let buckets = input.buckets.unwrap_or(1);
    if !(1..=MAX_BUCKETS).contains(&buckets) {
        return Err(invalid(format!(
            "buckets must be within [1, {MAX_BUCKETS}], got {buckets}"
        )));
    }
    Ok(SetStockCommand {
        hub_id,
        sku,
        on_hand,
        buckets: buckets as u8,
        reason: StockSetReason::AdminSet,
        actor: actor.to_string(),
    })
}

/// Checks `POST /admin/cycle-count`; the layout stays as it is (`current_buckets`).
pub fn validate_cycle_count(
    input: &SetStockInput,
    current_buckets: u8,
) -> Result<SetStockCommand, InventoryError> {
    let hub_id = HubId::parse(required("hub_id", &input.hub_id)?)?;
    let sku = Sku::parse(required("sku", &input.sku)?)?;
    let on_hand = input
        .physical_quantity
        .ok_or_else(|| invalid("physical_quantity is required"))?;
    check_on_hand("physical_quantity", on_hand)?;
    let counted_by = required("counted_by", &input.counted_by)?;
    if counted_by.is_empty() || counted_by.len() > 128 || counted_by.chars().any(char::is_control) {
        return Err(invalid("counted_by must be 1-128 printable characters"));
    }
    Ok(SetStockCommand {
        hub_id,
        sku,
        on_hand,
        buckets: current_buckets,
        reason: StockSetReason::CycleCount,
        actor: counted_by.to_string(),
    })
}

fn check_on_hand(field: &str, v: i64) -> Result<(), InventoryError> {
    if (0..=MAX_ON_HAND).contains(&v) {
        Ok(())
    } else {
        Err(invalid(format!(
            "{field} must be an integer within [0, {MAX_ON_HAND}], got {v}"
        )))
    }
}

/// FNV-1a, 32 bit.
pub fn fnv1a32(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
    })
}

/// The first bucket a user's hold drains (01 §5): FNV-1a-32(`<sku>:<user_id>`) mod N.
pub fn start_bucket(sku: &Sku, user: &UserId, buckets: u8) -> u8 {
    if buckets <= 1 {
        return 0;
    }
    let key = format!("{sku}:{user}");
    (fnv1a32(key.as_bytes()) % u32::from(buckets)) as u8
}

/// Spreads a counter evenly over `n` buckets, the remainder to the lowest indices (works for
/// negative counters too: floor division, as the Lua script does).
pub fn spread(counter: i64, n: u8) -> Vec<i64> {
    let n64 = i64::from(n.max(1));
    let base = counter.div_euclid(n64);
    let extra = counter.rem_euclid(n64);
    (0..n64).map(|i| base + i64::from(i < extra)).collect()
}

/// The bucket a take recorded as `sku#b` credits back under the SKU's current layout.
pub fn credit_bucket(taken_from: u8, current_buckets: u8) -> u8 {
    if current_buckets <= 1 {
        0
    } else {
        taken_from % current_buckets
    }
}

/// Reply for `POST /release`: the status the hold ends in.
pub fn release_reply(o: TransitionOutcome) -> Result<ReservationStatus, InventoryError> {
    match o {
        TransitionOutcome::Done => Ok(ReservationStatus::Released),
        TransitionOutcome::Expired => Ok(ReservationStatus::Expired),
        TransitionOutcome::Already(s) => Ok(s),
        TransitionOutcome::InvalidState(s) => Err(InventoryError::InvalidState { status: s }),
        TransitionOutcome::NotFound => Err(InventoryError::ReservationNotFound),
        TransitionOutcome::NotDue | TransitionOutcome::Skip(_) => Err(InventoryError::Invalid(
            "unexpected outcome for release".into(),
        )),
    }
}

/// Reply for `POST /confirm`.
pub fn confirm_reply(o: TransitionOutcome) -> Result<ReservationStatus, InventoryError> {
    match o {
        TransitionOutcome::Done | TransitionOutcome::Already(_) => Ok(ReservationStatus::Confirmed),
        TransitionOutcome::Expired => Err(InventoryError::ReservationExpired),
        TransitionOutcome::InvalidState(s) => Err(InventoryError::InvalidState { status: s }),
        TransitionOutcome::NotFound => Err(InventoryError::ReservationNotFound),
        TransitionOutcome::NotDue | TransitionOutcome::Skip(_) => Err(InventoryError::Invalid(
            "unexpected outcome for confirm".into(),
        )),
    }
}

/// Whether a replayed idempotency key matches the request it is replayed with.
pub fn same_request(original: &Reservation, cmd: &ReserveCommand) -> bool {
    let mut wanted = cmd.items.clone();
    wanted.sort_by(|a, b| a.sku.cmp(&b.sku));
    original.hub_id == cmd.hub_id
        && original.cart_id == cmd.cart_id
        && original.user_id == cmd.user_id
        && original.items == wanted
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn input(items: Vec<(&str, i64)>) -> ReserveInput {
        ReserveInput {
            hub_id: Some("h1".into()),
            cart_id: Some("c1".into()),
            user_id: Some("u1".into()),
            items: Some(
                items
                    .into_iter()
                    .map(|(s, q)| ItemInput {
                        sku: Some(s.into()),
                        quantity: Some(q),
                    })
                    .collect(),
            ),
            ttl_seconds: None,
        }
    }

    fn check(i: &ReserveInput) -> Result<ReserveCommand, InventoryError> {
        validate_reserve(i, ReservationId::new_random(), None, 900)
    }

    #[test]
    fn a_good_request_passes_with_default_ttl() {
        let cmd = check(&input(vec![("a", 1), ("b", 50)])).unwrap();
        assert_eq!(cmd.ttl_s, 900);
        assert_eq!(cmd.items.len(), 2);
    }

    #[test]
    fn bad_quantities_and_lists_are_refused() {
        for q in [0, -1, 51, i64::MAX] {
            let e = check(&input(vec![("a", q)])).unwrap_err();
            assert!(e.to_string().contains("items[0].quantity"), "{e}");
        }
        assert!(check(&input(vec![])).is_err());
        let many: Vec<(&str, i64)> = (0..51).map(|_| ("a", 1)).collect();
        assert!(check(&input(many))
            .unwrap_err()
            .to_string()
            .contains("1 to 50"));
        let dup = check(&input(vec![("a", 1), ("a", 2)])).unwrap_err();
        assert!(dup.to_string().contains("more than once"), "{dup}");
        let mut bad_sku = input(vec![("a:b", 1)]);
        assert!(check(&bad_sku).is_err());
        bad_sku.items = None;
        assert!(check(&bad_sku)
            .unwrap_err()
            .to_string()
            .contains("items is required"));
    }

    #[test]
    fn ttl_bounds() {
        let mut i = input(vec![("a", 1)]);
        i.ttl_seconds = Some(0);
        assert!(check(&i).is_err());
        i.ttl_seconds = Some(3601);
        assert!(check(&i).is_err());
        i.ttl_seconds = Some(3600);
        assert_eq!(check(&i).unwrap().ttl_s, 3600);
    }

    #[test]
    fn set_stock_accepts_zero_and_refuses_negative() {
        let mut i = SetStockInput {
            hub_id: Some("h".into()),
            sku: Some("s".into()),
            quantity: Some(0),
            ..Default::default()
        };
        assert_eq!(validate_set_stock(&i, "admin").unwrap().on_hand, 0);
        i.quantity = Some(-1);
        assert!(validate_set_stock(&i, "admin").is_err());
        i.quantity = Some(MAX_ON_HAND + 1);
        assert!(validate_set_stock(&i, "admin").is_err());
        i.quantity = Some(5);
        i.buckets = Some(11);
        assert!(validate_set_stock(&i, "admin").is_err());
    }

    #[test]
    fn fnv_matches_reference_vectors() {
        assert_eq!(fnv1a32(b""), 0x811c9dc5);
        assert_eq!(fnv1a32(b"a"), 0xe40c292c);
        assert_eq!(fnv1a32(b"foobar"), 0xbf9cf968);
    }

    #[test]
    fn release_and_confirm_replies() {
        use ReservationStatus::*;
        assert_eq!(release_reply(TransitionOutcome::Done), Ok(Released));
        assert_eq!(release_reply(TransitionOutcome::Expired), Ok(Expired));
        assert_eq!(
            release_reply(TransitionOutcome::InvalidState(Confirmed)),
            Err(InventoryError::InvalidState { status: Confirmed })
        );
        assert_eq!(
            confirm_reply(TransitionOutcome::Expired),
            Err(InventoryError::ReservationExpired)
        );
        assert_eq!(
            confirm_reply(TransitionOutcome::Already(Confirmed)),
            Ok(Confirmed)
        );
    }

    proptest! {
        #[test]
        fn spread_conserves_and_is_even(counter in -10_000i64..10_000, n in 1u8..=10) {
            let parts = spread(counter, n);
            prop_assert_eq!(parts.len(), n as usize);
            prop_assert_eq!(parts.iter().sum::<i64>(), counter);
            let (mn, mx) = (parts.iter().min().unwrap(), parts.iter().max().unwrap());
            prop_assert!(mx - mn <= 1);
            prop_assert!(parts.windows(2).all(|w| w[0] >= w[1]));
        }

        #[test]
        fn start_bucket_is_in_range(n in 1u8..=10, user in "[a-z0-9]{1,12}") {
            let b = start_bucket(&Sku::parse("sku1").unwrap(), &UserId::parse(&user).unwrap(), n);
            prop_assert!(b < n.max(1));
        }
    }
}
