//! Effects (05 §3): what a rule gives, in integer rupiah. Percentages are held in basis points
//! (at most two decimals) and round down; every discount is capped by what is left of the
//! subtotal, so the total discount never exceeds it.

use serde_json::{json, Map, Value};

/// The largest amount of money accepted anywhere (1e12 rupiah).
pub const MAX_MONEY: i64 = 1_000_000_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Basis points (1..=10_000) of the base, capped by `max_discount` when > 0.
    Percentage {
        bp: i64,
        max_discount: i64,
    },
    Fixed(i64),
    /// The shipping fee, capped by the value when > 0.
    FreeShipping {
        cap: i64,
    },
    /// Paid back later; the payable does not change.
    Cashback(i64),
}

/// What a rule grants on a cart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Grant {
    pub discount: i64,
    pub cashback: i64,
}

impl Grant {
    pub fn is_zero(&self) -> bool {
        self.discount == 0 && self.cashback == 0
    }
}

/// A refused effect (400 `INVALID_ARGUMENT`, naming the field).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("effect.{field}: {message}")]
pub struct EffectError {
    pub field: &'static str,
    pub message: String,
}

fn bad(field: &'static str, message: impl Into<String>) -> EffectError {
    EffectError {
        field,
        message: message.into(),
    }
}

/// An integer amount of money in 0..=1e12 (a JSON integer; `1.0` or `-5` are refused).
pub fn money(v: &Value, field: &'static str) -> Result<i64, EffectError> {
    match v {
        Value::Number(n) if n.is_i64() || n.is_u64() => n
            .as_i64()
            .filter(|x| (0..=MAX_MONEY).contains(x))
            .ok_or_else(|| bad(field, "must be an integer amount in 0..=1e12 rupiah")),
        _ => Err(bad(field, "must be an integer amount in 0..=1e12 rupiah")),
    }
}

impl Effect {
    pub fn parse(v: &Value) -> Result<Effect, EffectError> {
        let obj: &Map<String, Value> = v.as_object().ok_or_else(|| bad("type", "an object"))?;
        if let Some(k) = obj
            .keys()
            .find(|k| !["type", "value", "max_discount"].contains(&k.as_str()))
        {
            return Err(bad("type", format!("unknown field {k:?}")));
        }
        let kind = obj
            .get("type")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("type", "required"))?;
        let value = obj.get("value").filter(|v| !v.is_null());
        let max_discount = match obj.get("max_discount").filter(|v| !v.is_null()) {
            Some(m) => money(m, "max_discount")?,
            None => 0,
        };
        let positive = |field| {
            let v = money(value.ok_or_else(|| bad(field, "required"))?, field)?;
            if v == 0 {
                return Err(bad(field, "must be > 0"));
            }
            Ok(v)
        };
        match kind {
            "percentage" => {
                let v = value
                    .and_then(Value::as_f64)
                    .ok_or_else(|| bad("value", "required: a percentage"))?;
                let bp = (v * 100.0).round();
                if !(v > 0.0 && v <= 100.0) || (v * 100.0 - bp).abs() > 1e-6 {
                    return Err(bad(
                        "value",
                        "a percentage must be in (0, 100] with at most two decimals",
                    ));
                }
                Ok(Effect::Percentage {
                    bp: bp as i64,
                    max_discount,
                })
            }
            "fixed" => Ok(Effect::Fixed(positive("value")?)),
            "free_shipping" => Ok(Effect::FreeShipping {
                cap: match value {
                    Some(v) => money(v, "value")?,
                    None => 0,
                },
            }),
            "cashback" => Ok(Effect::Cashback(positive("value")?)),
            other => Err(bad("type", format!("unknown effect type {other:?}"))),
        }
    }

    pub fn to_json(&self) -> Value {
        match *self {
            Effect::Percentage { bp, max_discount } => {
                let value = if bp % 100 == 0 {
                    json!(bp / 100)
                } else {
                    json!(bp as f64 / 100.0)
                };
                json!({"type": "percentage", "value": value, "max_discount": max_discount})
            }
            Effect::Fixed(v) => json!({"type": "fixed", "value": v}),
            Effect::FreeShipping { cap } => json!({"type": "free_shipping", "value": cap}),
            Effect::Cashback(v) => json!({"type": "cashback", "value": v}),
        }
    }

    /// The grant on `base` (the subtotal, or what is left of it), never more than `remaining`.
    pub fn grant(&self, base: i64, shipping_fee: i64, remaining: i64) -> Grant {
        let remaining = remaining.max(0);
        let discount = match *self {
            Effect::Percentage { bp, max_discount } => {
                let d = (i128::from(base.max(0)) * i128::from(bp) / 10_000) as i64;
                if max_discount > 0 {
                    d.min(max_discount)
                } else {
                    d
                }
            }
            Effect::Fixed(v) => v.min(base.max(0)),
            Effect::FreeShipping { cap } => {
                if cap > 0 {
                    shipping_fee.min(cap)
                } else {
                    shipping_fee
                }
            }
            Effect::Cashback(_) => 0,
        };
        Grant {
            discount: discount.clamp(0, remaining),
            cashback: match *self {
                Effect::Cashback(v) => v,
                _ => 0,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: Value) -> Result<Effect, EffectError> {
        Effect::parse(&v)
    }

    #[test]
    fn money_is_integer_rupiah_and_percentages_round_down_in_basis_points() {
        let p = parse(json!({"type": "percentage", "value": 12.5, "max_discount": 20000})).unwrap();
        assert_eq!(
            p,
            Effect::Percentage {
                bp: 1250,
                max_discount: 20_000
            }
        );
        assert_eq!(
            p.grant(99_999, 0, i64::MAX).discount,
            12_499,
            "floor(12,499.875)"
        );
        assert_eq!(p.grant(1_000_000, 0, i64::MAX).discount, 20_000, "capped");
        assert_eq!(
            p.grant(100_000, 0, 5_000).discount,
            5_000,
            "capped by remaining"
        );
        let f = parse(json!({"type": "fixed", "value": 30000})).unwrap();
        assert_eq!(
            f.grant(20_000, 0, 20_000).discount,
            20_000,
            "never above the base"
        );
        let s = parse(json!({"type": "free_shipping"})).unwrap();
        assert_eq!(s.grant(50_000, 9_000, 50_000).discount, 9_000);
        let s = parse(json!({"type": "free_shipping", "value": 5000})).unwrap();
        assert_eq!(s.grant(50_000, 9_000, 50_000).discount, 5_000);
        let c = parse(json!({"type": "cashback", "value": 7000})).unwrap();
        assert_eq!(
            c.grant(50_000, 0, 50_000),
            Grant {
                discount: 0,
                cashback: 7_000
            }
        );
        assert_eq!(Effect::parse(&p.to_json()).unwrap(), p);
    }

    #[test]
    fn bad_effects_are_refused() {
        for v in [
            json!({"type": "percentage", "value": 0}),
            json!({"type": "percentage", "value": 100.01}),
            json!({"type": "percentage", "value": -5}),
            json!({"type": "percentage", "value": 10.125}),
            json!({"type": "fixed", "value": 0}),
            json!({"type": "fixed", "value": 10.5}),
            json!({"type": "fixed", "value": -1}),
            json!({"type": "fixed", "value": 1_000_000_000_001i64}),
            json!({"type": "fixed", "value": "100"}),
            json!({"type": "cashback"}),
            json!({"type": "percentage", "value": 10, "max_discount": 1.5}),
            json!({"type": "bogo", "value": 1}),
            json!({"type": "fixed", "value": 1, "extra": 1}),
            json!("fixed"),
        ] {
            assert!(Effect::parse(&v).is_err(), "{v}");
        }
    }
}
