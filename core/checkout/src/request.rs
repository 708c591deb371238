//! The checkout request (04 "POST /api/v1/checkout"), parsed strictly. Prices are not the
//! client's: a line's `unit_price` is validated for range and then replaced by the catalog's.

use std::collections::BTreeSet;

use qc_kit::ids::validate_id;
use serde_json::{Map, Value};

pub const MAX_LINES: usize = 50;
pub const MAX_QUANTITY: u32 = 50;
pub const MAX_UNIT_PRICE: i64 = 100_000_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub sku: String,
    pub name: Option<String>,
    pub quantity: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CheckoutRequest {
    pub user_id: String,
    pub hub_id: String,
    pub lines: Vec<Line>,
    pub method: String,
    pub card_token: Option<String>,
    pub currency: String,
    pub lat: f64,
    pub lng: f64,
    pub area: Option<String>,
    pub priority: u8,
    /// The cart's hold taken through Inventory before checkout, if any: the saga takes it
    /// over (it must be this user's, at this hub, for exactly these items) instead of holding
    /// the stock a second time.
    pub reservation_id: Option<String>,
}

/// 400 `INVALID_ARGUMENT`, naming the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct RequestError {
    pub field: String,
    pub message: String,
}

fn bad(field: impl Into<String>, message: impl Into<String>) -> RequestError {
    RequestError {
        field: field.into(),
        message: message.into(),
    }
}

fn only(obj: &Map<String, Value>, path: &str, allowed: &[&str]) -> Result<(), RequestError> {
    match obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(bad(format!("{path}{k}"), "unknown field")),
        None => Ok(()),
    }
}

fn id(obj: &Map<String, Value>, key: &str, path: &str) -> Result<String, RequestError> {
    let f = format!("{path}{key}");
    let v = obj
        .get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| bad(&f, "required: a string"))?;
    validate_id("id", v).map_err(|_| bad(&f, "must match ^[A-Za-z0-9_.-]{1,64}$"))?;
    Ok(v.to_string())
}

fn text(
    obj: &Map<String, Value>,
    key: &str,
    path: &str,
    max: usize,
) -> Result<Option<String>, RequestError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.chars().count() <= max => Ok(Some(s.clone())),
        Some(_) => Err(bad(
            format!("{path}{key}"),
            format!("a string of at most {max} characters"),
        )),
    }
}

impl CheckoutRequest {
    pub fn parse(body: &Value) -> Result<CheckoutRequest, RequestError> {
        let obj = body
            .as_object()
            .ok_or_else(|| bad("body", "must be a JSON object"))?;
        only(
            obj,
            "",
            &[
                "user_id",
                "hub_id",
                "items",
                "payment",
                "delivery_location",
                "area",
                "priority",
                "reservation_id",
            ],
        )?;
        let user_id = id(obj, "user_id", "")?;
        let hub_id = id(obj, "hub_id", "")?;
        let items = obj
            .get("items")
            .and_then(Value::as_array)
            .ok_or_else(|| bad("items", "required: a list"))?;
        if items.is_empty() || items.len() > MAX_LINES {
            return Err(bad("items", format!("1..={MAX_LINES} items")));
        }
        let mut seen = BTreeSet::new();
        let mut lines = Vec::with_capacity(items.len());
        for (i, it) in items.iter().enumerate() {
            let path = format!("items[{i}].");
            let o = it
                .as_object()
                .ok_or_else(|| bad(format!("items[{i}]"), "an object"))?;
            only(o, &path, &["sku", "name", "quantity", "unit_price"])?;
            let sku = id(o, "sku", &path)?;
            if !seen.insert(sku.clone()) {
                return Err(bad(format!("{path}sku"), format!("{sku} appears twice")));
            }
            let quantity = o
                .get("quantity")
                .and_then(Value::as_u64)
                .filter(|q| (1..=u64::from(MAX_QUANTITY)).contains(q))
                .ok_or_else(|| bad(format!("{path}quantity"), "an integer in 1..=50"))?
                as u32;
            if let Some(p) = o.get("unit_price").filter(|p| !p.is_null()) {
                p.as_i64()
                    .filter(|p| (0..=MAX_UNIT_PRICE).contains(p))
                    .ok_or_else(|| {
                        bad(format!("{path}unit_price"), "an integer in 0..=100000000")
                    })?;
            }
            lines.push(Line {
                sku,
                name: text(o, "name", &path, 200)?,
                quantity,
            });
        }
        let pay = obj
            .get("payment")
            .and_then(Value::as_object)
            .ok_or_else(|| bad("payment", "required: an object"))?;
        only(pay, "payment.", &["method", "card_token", "currency"])?;
        let method = text(pay, "method", "payment.", 32)?
            .filter(|m| !m.is_empty())
            .ok_or_else(|| bad("payment.method", "required"))?;
        let currency = text(pay, "currency", "payment.", 3)?.unwrap_or_else(|| "IDR".into());
        if currency != "IDR" {
            return Err(bad("payment.currency", "only IDR"));
        }
        let loc = obj
            .get("delivery_location")
            .and_then(Value::as_object)
            .ok_or_else(|| bad("delivery_location", "required: {lat, lng}"))?;
        only(loc, "delivery_location.", &["lat", "lng"])?;
        let coord = |k: &str, lim: f64| {
            loc.get(k)
                .and_then(Value::as_f64)
                .filter(|v| v.is_finite() && v.abs() <= lim)
                .ok_or_else(|| {
                    bad(
                        format!("delivery_location.{k}"),
                        format!("a number within ±{lim}"),
                    )
                })
        };
        let (lat, lng) = (coord("lat", 90.0)?, coord("lng", 180.0)?);
        if lat == 0.0 && lng == 0.0 {
            return Err(bad("delivery_location", "(0, 0) is not a delivery point"));
        }
        let priority = match obj.get("priority") {
            None | Some(Value::Null) => 1,
            Some(p) => {
                p.as_u64()
                    .filter(|p| (1..=9).contains(p))
                    .ok_or_else(|| bad("priority", "an integer in 1..=9"))? as u8
            }
        };
        Ok(CheckoutRequest {
            user_id,
            hub_id,
            lines,
            method,
            card_token: text(pay, "card_token", "payment.", 256)?,
            currency,
            lat,
            lng,
            area: text(obj, "area", "", 256)?,
            priority,
            reservation_id: match obj.get("reservation_id") {
                None | Some(Value::Null) => None,
                Some(v) => Some(
                    v.as_str()
                        .filter(|r| uuid::Uuid::parse_str(r).is_ok())
                        .ok_or_else(|| bad("reservation_id", "a UUID"))?
                        .to_string(),
                ),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body() -> Value {
        json!({"user_id": "u-1", "hub_id": "jkt-01",
               "items": [{"sku": "milk-1l", "name": "Milk", "quantity": 2, "unit_price": 18500}],
               "payment": {"method": "card", "card_token": "tok_ok", "currency": "IDR"},
               "delivery_location": {"lat": -6.2, "lng": 106.8}, "area": "Jakarta"})
    }

    #[test]
    fn a_good_request_parses() {
        let r = CheckoutRequest::parse(&body()).unwrap();
        assert_eq!((r.lines.len(), r.lines[0].quantity, r.priority), (1, 2, 1));
    }

    #[test]
    fn every_field_rule_names_its_field() {
        let many: Vec<Value> = (0..51)
            .map(|i| json!({"sku": format!("s{i}"), "quantity": 1}))
            .collect();
        for (patch, field) in [
            (json!({"user_id": "a b"}), "user_id"),
            (json!({"hub_id": "x".repeat(65)}), "hub_id"),
            (json!({"items": []}), "items"),
            (json!({"items": many}), "items"),
            (
                json!({"items": [{"sku": "a", "quantity": 1}, {"sku": "a", "quantity": 2}]}),
                "items[1].sku",
            ),
            (
                json!({"items": [{"sku": "a", "quantity": 0}]}),
                "items[0].quantity",
            ),
            (
                json!({"items": [{"sku": "a", "quantity": 51}]}),
                "items[0].quantity",
            ),
            (
                json!({"items": [{"sku": "a", "quantity": 1, "unit_price": -1}]}),
                "items[0].unit_price",
            ),
            (
                json!({"items": [{"sku": "a", "quantity": 1, "unit_price": 1.5}]}),
                "items[0].unit_price",
            ),
            (
                json!({"items": [{"sku": "a", "quantity": 1, "unit_price": 100_000_001}]}),
                "items[0].unit_price",
            ),
            (json!({"payment": {"card_token": "t"}}), "payment.method"),
            (
                json!({"payment": {"method": "card", "currency": "USD"}}),
                "payment.currency",
            ),
            (
                json!({"delivery_location": {"lat": 0, "lng": 0}}),
                "delivery_location",
            ),
            (
                json!({"delivery_location": {"lat": 91, "lng": 0}}),
                "delivery_location.lat",
            ),
            (json!({"priority": 10}), "priority"),
            (json!({"customer_id": "x"}), "customer_id"),
        ] {
            let mut b = body();
            for (k, v) in patch.as_object().unwrap() {
                b[k] = v.clone();
            }
            let e = CheckoutRequest::parse(&b).unwrap_err();
            assert_eq!(e.field, field, "{patch}: {e}");
        }
    }
}
