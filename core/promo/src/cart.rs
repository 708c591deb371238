//! The cart a promo is judged on (05 §2), parsed strictly. The subtotal comes from the items
//! when there are any (a `cart_total` that disagrees with them is refused: the reference trusted
//! it); categories are the request's plus the items'.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use crate::effect::money;

pub const MAX_ITEMS: usize = 200;
pub const MAX_TEXT: usize = 256;
pub const MAX_ID: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CartItem {
    pub id: String,
    pub price: i64,
    pub quantity: i64,
    pub category: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cart {
    pub user_id: String,
    pub subtotal: i64,
    pub items: Vec<CartItem>,
    /// Lower-cased.
    pub area: Option<String>,
    /// Lower-cased: the request's and the items'.
    pub categories: BTreeSet<String>,
    pub user_order_count: i64,
    pub shipping_fee: i64,
    pub device_id: Option<String>,
    pub phone: Option<String>,
    pub address: Option<String>,
}

/// 400 `INVALID_ARGUMENT`, naming the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct CartError {
    pub field: String,
    pub message: String,
}

fn bad(field: impl Into<String>, message: impl Into<String>) -> CartError {
    CartError {
        field: field.into(),
        message: message.into(),
    }
}

fn text(obj: &Map<String, Value>, key: &str, max: usize) -> Result<Option<String>, CartError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.chars().count() <= max => {
            Ok(Some(s.trim().to_string()).filter(|s| !s.is_empty()))
        }
        Some(_) => Err(bad(key, format!("a string of at most {max} characters"))),
    }
}

fn amount(obj: &Map<String, Value>, key: &str) -> Result<Option<i64>, CartError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => money(v, "value")
            .map(Some)
            .map_err(|_| bad(key, "an integer amount in 0..=1e12 rupiah")),
    }
}

const CART_FIELDS: [&str; 11] = [
    "user_id",
    "cart_total",
    "cart_items",
    "area",
    "categories",
    "user_order_count",
    "shipping_fee",
    "device_id",
    "phone",
    "address",
    "now",
];

impl Cart {
    /// `cart` is the request's `cart` object; `user_id` the request's top-level one, which wins.
    pub fn parse(cart: &Value, user_id: Option<&str>) -> Result<Cart, CartError> {
        let obj = cart
            .as_object()
            .ok_or_else(|| bad("cart", "required: an object"))?;
        if let Some(k) = obj.keys().find(|k| !CART_FIELDS.contains(&k.as_str())) {
            return Err(bad(format!("cart.{k}"), "unknown field"));
        }
        let user_id = match user_id {
            Some(u) => u.to_string(),
            None => text(obj, "user_id", MAX_ID)?.unwrap_or_default(),
        };
        if user_id.chars().count() > MAX_ID {
            return Err(bad("user_id", "at most 128 characters"));
        }
        let mut items = Vec::new();
        let mut categories = BTreeSet::new();
        if let Some(list) = obj.get("cart_items").filter(|v| !v.is_null()) {
            let list = list
                .as_array()
                .ok_or_else(|| bad("cart.cart_items", "a list"))?;
            if list.len() > MAX_ITEMS {
                return Err(bad("cart.cart_items", "at most 200 items"));
            }
            for (i, it) in list.iter().enumerate() {
                let f = |k: &str| format!("cart.cart_items[{i}].{k}");
                let o = it.as_object().ok_or_else(|| bad(f("id"), "an object"))?;
                if let Some(k) = o.keys().find(|k| {
                    !["id", "name", "price", "quantity", "category"].contains(&k.as_str())
                }) {
                    return Err(bad(f(k), "unknown field"));
                }
                let id = text(o, "id", MAX_ID)
                    .map_err(|e| bad(f("id"), e.message))?
                    .ok_or_else(|| bad(f("id"), "required"))?;
                text(o, "name", MAX_TEXT).map_err(|e| bad(f("name"), e.message))?;
                let price = amount(o, "price")
                    .map_err(|e| bad(f("price"), e.message))?
                    .ok_or_else(|| bad(f("price"), "required"))?;
                let quantity = o
                    .get("quantity")
                    .and_then(Value::as_i64)
                    .filter(|q| (1..=10_000).contains(q))
                    .ok_or_else(|| bad(f("quantity"), "an integer in 1..=10000"))?;
                let category = text(o, "category", MAX_TEXT)
                    .map_err(|e| bad(f("category"), e.message))?
                    .map(|c| c.to_lowercase());
                categories.extend(category.clone());
                items.push(CartItem {
                    id,
                    price,
                    quantity,
                    category,
                });
            }
        }
        let from_items = items
            .iter()
            .try_fold(0i64, |acc, it| {
                acc.checked_add(it.price.checked_mul(it.quantity)?)
            })
            .filter(|t| *t <= crate::MAX_MONEY)
            .ok_or_else(|| bad("cart.cart_items", "the total exceeds 1e12 rupiah"))?;
        let subtotal = match amount(obj, "cart_total")? {
            Some(t) if !items.is_empty() && t != from_items => {
                return Err(bad(
                    "cart.cart_total",
                    format!("{t} disagrees with the items' total {from_items}"),
                ))
            }
            Some(t) => t,
            None => from_items,
        };
        if let Some(list) = obj.get("categories").filter(|v| !v.is_null()) {
            let list = list
                .as_array()
                .ok_or_else(|| bad("cart.categories", "a list of strings"))?;
            for (i, c) in list.iter().enumerate() {
                let c = c
                    .as_str()
                    .filter(|c| c.chars().count() <= MAX_TEXT)
                    .ok_or_else(|| bad(format!("cart.categories[{i}]"), "a string"))?;
                categories.insert(c.trim().to_lowercase());
            }
        }
        let user_order_count = match obj.get("user_order_count") {
            None | Some(Value::Null) => 0,
            Some(v) => v
                .as_i64()
                .filter(|n| *n >= 0)
                .ok_or_else(|| bad("cart.user_order_count", "an integer ≥ 0"))?,
        };
        Ok(Cart {
            user_id,
            subtotal,
            items,
            area: text(obj, "area", MAX_TEXT)?.map(|a| a.to_lowercase()),
            categories,
            user_order_count,
            shipping_fee: amount(obj, "shipping_fee")?.unwrap_or(0),
            device_id: text(obj, "device_id", MAX_TEXT)?,
            phone: text(obj, "phone", MAX_TEXT)?,
            address: text(obj, "address", MAX_TEXT)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_subtotal_comes_from_the_items() {
        let c = Cart::parse(
            &json!({"user_id": "u-inner", "area": "Jakarta Selatan", "categories": ["Promo"],
                    "cart_items": [{"id": "milk", "price": 18500, "quantity": 2, "category": "Dairy"},
                                   {"id": "bread", "price": 15000, "quantity": 1}]}),
            Some("u-1"),
        )
        .unwrap();
        assert_eq!(c.user_id, "u-1", "the top-level user id wins");
        assert_eq!(c.subtotal, 52_000);
        assert_eq!(c.area.as_deref(), Some("jakarta selatan"));
        assert_eq!(
            c.categories,
            BTreeSet::from(["dairy".to_string(), "promo".to_string()])
        );
        let only_total = Cart::parse(&json!({"cart_total": 70000}), Some("u")).unwrap();
        assert_eq!(only_total.subtotal, 70_000);
    }

    #[test]
    fn bad_carts_name_their_field() {
        for (cart, field) in [
            (
                json!({"cart_total": 1000, "cart_items": [{"id": "a", "price": 500, "quantity": 1}]}),
                "cart.cart_total",
            ),
            (json!({"cart_total": -1}), "cart_total"),
            (json!({"cart_total": 10.5}), "cart_total"),
            (
                json!({"cart_items": [{"id": "a", "price": 1.5, "quantity": 1}]}),
                "cart.cart_items[0].price",
            ),
            (
                json!({"cart_items": [{"id": "a", "price": 1, "quantity": 0}]}),
                "cart.cart_items[0].quantity",
            ),
            (
                json!({"cart_items": [{"price": 1, "quantity": 1}]}),
                "cart.cart_items[0].id",
            ),
            (
                json!({"cart_items": [{"id": "a", "price": 1, "quantity": 1, "discount": 5}]}),
                "cart.cart_items[0].discount",
            ),
            (
                json!({"cart_items": (0..201).map(|i| json!({"id": i.to_string(), "price": 1, "quantity": 1})).collect::<Vec<_>>()}),
                "cart.cart_items",
            ),
            (json!({"address": "x".repeat(257)}), "address"),
            (json!({"user_order_count": -1}), "cart.user_order_count"),
            (json!({"promo_ids": ["x"]}), "cart.promo_ids"),
        ] {
            let e = Cart::parse(&cart, Some("u")).unwrap_err();
            assert_eq!(e.field, field, "{cart}: {e}");
        }
        assert_eq!(
            Cart::parse(&json!({}), Some(&"u".repeat(129)))
                .unwrap_err()
                .field,
            "user_id"
        );
    }
}
