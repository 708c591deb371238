//! Products, categories and hub prices (08 §3–4), and the field rules every write passes.

use serde::Serialize;
use serde_json::{json, Map, Value};
use unicode_normalization::UnicodeNormalization;

/// The highest price a product or hub row may carry (Rp 100 million, as Checkout's unit price).
pub const MAX_PRICE: i64 = 100_000_000;

/// A product as the catalog keeps it. `price` is the base price (rupiah).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Product {
    pub sku: String,
    pub name: String,
    pub description: String,
    /// The category's name, and its id (slug); empty when none.
    pub category: String,
    pub category_id: String,
    pub brand: String,
    pub price: i64,
    pub margin_pct: f64,
    pub popularity_score: f64,
    pub tags: Vec<String>,
    pub image_url: String,
    pub active: bool,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub version: i32,
    pub seq: i64,
}

impl Product {
    /// The product as the public API shows it (no margin).
    pub fn to_json(&self) -> Value {
        json!({"sku": self.sku, "name": self.name, "description": self.description,
            "category": self.category, "category_id": self.category_id, "brand": self.brand,
            "price": self.price, "popularity_score": self.popularity_score, "tags": self.tags,
            "image_url": self.image_url, "active": self.active,
            "created_at": rfc3339(self.created_at_ms), "updated_at": rfc3339(self.updated_at_ms),
            "version": self.version, "seq": self.seq})
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Category {
    pub id: String,
    pub name: String,
    pub parent_id: Option<String>,
    pub active: bool,
}

/// A hub's price for a product from `valid_from_ms`, until `valid_to_ms` if set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HubPrice {
    pub hub_id: String,
    pub sku: String,
    pub price: i64,
    pub valid_from_ms: i64,
    pub valid_to_ms: Option<i64>,
}

impl HubPrice {
    pub fn valid_at(&self, now_ms: i64) -> bool {
        self.valid_from_ms <= now_ms && self.valid_to_ms.is_none_or(|t| now_ms < t)
    }
}

/// The price in force at `now_ms`: the valid hub row with the latest `valid_from`, else the
/// base price. Returns (price, "hub" | "base").
pub fn effective_price(base: i64, hub_rows: &[HubPrice], now_ms: i64) -> (i64, &'static str) {
    hub_rows
        .iter()
        .filter(|r| r.valid_at(now_ms))
        .max_by_key(|r| r.valid_from_ms)
        .map_or((base, "base"), |r| (r.price, "hub"))
}

pub fn rfc3339(epoch_ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(epoch_ms.max(0) as u64);
    humantime::format_rfc3339_millis(t).to_string()
}

fn parse_time(v: &str) -> Option<i64> {
    humantime::parse_rfc3339_weak(v)
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()
        .map(|d| d.as_millis() as i64)
}

/// A broken field rule: 400 `INVALID_ARGUMENT` naming the field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct Invalid {
    pub field: String,
    pub message: String,
}

fn bad(field: &str, message: impl Into<String>) -> Invalid {
    Invalid {
        field: field.into(),
        message: message.into(),
    }
}

/// A category id: lowercase, runs of non-alphanumerics → `-`, trimmed of `-` (08 §3).
pub fn slug(name: &str) -> String {
    let mut out = String::new();
    let mut dash = false;
    for c in name.nfkc().flat_map(char::to_lowercase) {
        if c.is_alphanumeric() {
            if dash && !out.is_empty() {
                out.push('-');
            }
            dash = false;
            out.push(c);
        } else {
            dash = true;
        }
    }
    out
}

/// `sku`: 1–64 of `[A-Za-z0-9._-]`.
pub fn check_sku(sku: &str) -> Result<(), Invalid> {
    if (1..=64).contains(&sku.len())
        && sku
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        Ok(())
    } else {
        Err(bad("sku", "1–64 characters of [A-Za-z0-9._-]"))
    }
}

/// The writable fields of a product (a full PUT, or the result of a merge-patch).
#[derive(Debug, Clone, PartialEq)]
pub struct ProductInput {
    pub sku: String,
    pub name: String,
    pub description: String,
    pub category: String,
    pub brand: String,
    pub price: i64,
    pub margin_pct: f64,
    pub popularity_score: f64,
    pub tags: Vec<String>,
    pub image_url: String,
    pub active: bool,
}

const FIELDS: [&str; 11] = [
    "sku",
    "name",
    "description",
    "category",
    "brand",
    "price",
    "margin_pct",
    "popularity_score",
    "tags",
    "image_url",
    "active",
];

fn text(obj: &Map<String, Value>, key: &str, min: usize, max: usize) -> Result<String, Invalid> {
    let s = match obj.get(key) {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.nfkc().collect::<String>().trim().to_string(),
        Some(_) => return Err(bad(key, "must be a string")),
    };
    let n = s.chars().count();
    if n < min || n > max {
        return Err(bad(
            key,
            if min > 0 {
                format!("{min}–{max} characters")
            } else {
                format!("at most {max} characters")
            },
        ));
    }
    if s.chars().any(char::is_control) {
        return Err(bad(key, "no control characters"));
    }
    Ok(s)
}

fn number(obj: &Map<String, Value>, key: &str, lo: f64, hi: f64) -> Result<f64, Invalid> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(0.0),
        Some(v) => v
            .as_f64()
            .filter(|x| x.is_finite() && (lo..=hi).contains(x))
            .ok_or_else(|| bad(key, format!("a number within {lo}..={hi}"))),
    }
}

impl ProductInput {
    /// A full product body (PUT). `path_sku` is the sku in the URL: a body sku that differs
    /// is refused.
    pub fn parse(body: &Value, path_sku: &str) -> Result<Self, Invalid> {
        let obj = body
            .as_object()
            .ok_or_else(|| bad("body", "must be a JSON object"))?;
        if let Some(k) = obj.keys().find(|k| !FIELDS.contains(&k.as_str())) {
            return Err(bad(k, "unknown field"));
        }
        check_sku(path_sku)?;
        match obj.get("sku") {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) if s == path_sku => {}
            Some(_) => return Err(bad("sku", "differs from the path")),
        }
        let price = match obj.get("price") {
            None | Some(Value::Null) => 0,
            Some(v) => v
                .as_i64()
                .filter(|p| (0..=MAX_PRICE).contains(p))
                .ok_or_else(|| bad("price", "an integer of rupiah in 0..=100000000"))?,
        };
        let margin_pct = number(obj, "margin_pct", 0.0, 100.0)?;
        let tags = match obj.get("tags") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(a)) => {
                if a.len() > 20 {
                    return Err(bad("tags", "at most 20"));
                }
                let mut tags: Vec<String> = Vec::with_capacity(a.len());
                for (i, t) in a.iter().enumerate() {
                    let t = t
                        .as_str()
                        .map(|s| s.nfkc().collect::<String>().trim().to_string())
                        .filter(|s| (1..=50).contains(&s.chars().count()))
                        .ok_or_else(|| bad(&format!("tags[{i}]"), "a string of 1–50 characters"))?;
                    if !tags.contains(&t) {
                        tags.push(t);
                    }
                }
                tags
            }
            Some(_) => return Err(bad("tags", "must be a list of strings")),
        };
        let active = match obj.get("active") {
            None | Some(Value::Null) => true,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(bad("active", "must be true or false")),
        };
        Ok(Self {
            sku: path_sku.to_string(),
            name: text(obj, "name", 1, 200)?,
            description: text(obj, "description", 0, 2000)?,
            category: text(obj, "category", 0, 100)?,
            brand: text(obj, "brand", 0, 100)?,
            price,
            margin_pct: (margin_pct * 100.0).round() / 100.0,
            popularity_score: number(obj, "popularity_score", 0.0, 1.0)?,
            tags,
            image_url: text(obj, "image_url", 0, 500)?,
            active,
        })
    }

    /// The body of `current` with a JSON merge-patch applied (RFC 7396; `null` clears an
    /// optional field), then checked as a full body.
    pub fn merge(current: &Product, patch: &Value) -> Result<Self, Invalid> {
        let p = patch
            .as_object()
            .ok_or_else(|| bad("body", "must be a JSON object"))?;
        let mut body = json!({"name": current.name, "description": current.description,
            "category": current.category, "brand": current.brand, "price": current.price,
            "margin_pct": current.margin_pct, "popularity_score": current.popularity_score,
            "tags": current.tags, "image_url": current.image_url, "active": current.active});
        let obj = body.as_object_mut().expect("an object");
        for (k, v) in p {
            if k == "sku" {
                if v.as_str() != Some(current.sku.as_str()) {
                    return Err(bad("sku", "cannot change"));
                }
                continue;
            }
            if v.is_null() {
                obj.remove(k);
            } else {
                obj.insert(k.clone(), v.clone());
            }
        }
        Self::parse(&body, &current.sku)
    }
}

/// A hub price body: `{price, valid_from?, valid_to?}` (RFC 3339; `valid_from` defaults to now).
pub fn parse_hub_price(
    body: &Value,
    sku: &str,
    hub_id: &str,
    now_ms: i64,
) -> Result<HubPrice, Invalid> {
    let obj = body
        .as_object()
        .ok_or_else(|| bad("body", "must be a JSON object"))?;
    if let Some(k) = obj
        .keys()
        .find(|k| !["price", "valid_from", "valid_to"].contains(&k.as_str()))
    {
        return Err(bad(k, "unknown field"));
    }
    qc_kit::validate_id("hub_id", hub_id).map_err(|e| bad("hub_id", e.to_string()))?;
    let price = obj
        .get("price")
        .and_then(Value::as_i64)
        .filter(|p| (0..=MAX_PRICE).contains(p))
        .ok_or_else(|| bad("price", "required: an integer of rupiah in 0..=100000000"))?;
    let time = |k: &str| -> Result<Option<i64>, Invalid> {
        match obj.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => parse_time(s)
                .map(Some)
                .ok_or_else(|| bad(k, "an RFC 3339 time")),
            Some(_) => Err(bad(k, "an RFC 3339 time")),
        }
    };
    let from = time("valid_from")?.unwrap_or(now_ms);
    let to = time("valid_to")?;
    if to.is_some_and(|t| t <= from) {
        return Err(bad("valid_to", "must be after valid_from"));
    }
    Ok(HubPrice {
        hub_id: hub_id.to_string(),
        sku: sku.to_string(),
        price,
        valid_from_ms: from,
        valid_to_ms: to,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_fold_case_and_runs_of_punctuation() {
        assert_eq!(slug("Susu & Produk Olahan"), "susu-produk-olahan");
        assert_eq!(slug("  Buah--Segar!! "), "buah-segar");
        assert_eq!(slug("Ｍｉｌｋ"), "milk", "NFKC: full-width letters");
    }

    #[test]
    fn every_field_rule_names_its_field() {
        let ok = json!({"name": "Susu UHT 1L", "price": 18500, "tags": ["susu", "milk"]});
        assert!(ProductInput::parse(&ok, "milk-1l").is_ok());
        for (body, sku, field) in [
            (json!({"name": ""}), "a", "name"),
            (json!({"name": "x".repeat(201)}), "a", "name"),
            (
                json!({"name": "x", "description": "d".repeat(2001)}),
                "a",
                "description",
            ),
            (
                json!({"name": "x", "category": "c".repeat(101)}),
                "a",
                "category",
            ),
            (json!({"name": "x", "brand": 5}), "a", "brand"),
            (json!({"name": "x", "price": -1}), "a", "price"),
            (json!({"name": "x", "price": 1.5}), "a", "price"),
            (json!({"name": "x", "margin_pct": 101}), "a", "margin_pct"),
            (
                json!({"name": "x", "popularity_score": 1.2}),
                "a",
                "popularity_score",
            ),
            (json!({"name": "x", "tags": vec!["t"; 21]}), "a", "tags"),
            (
                json!({"name": "x", "tags": ["t".repeat(51)]}),
                "a",
                "tags[0]",
            ),
            (
                json!({"name": "x", "image_url": "u".repeat(501)}),
                "a",
                "image_url",
            ),
            (json!({"name": "x", "active": "yes"}), "a", "active"),
            (json!({"name": "x", "sku": "b"}), "a", "sku"),
            (json!({"name": "x", "colour": "red"}), "a", "colour"),
            (json!({"name": "x"}), "bad sku!", "sku"),
            (json!({"name": "x"}), "", "sku"),
            (json!([1]), "a", "body"),
        ] {
            let e = ProductInput::parse(&body, sku).unwrap_err();
            assert_eq!(e.field, field, "{body}");
        }
    }

    #[test]
    fn a_merge_patch_changes_only_what_it_names() {
        let p = ProductInput::parse(
            &json!({"name": "Telur Ayam 10 butir", "brand": "Segar",
            "price": 28000, "tags": ["telur"]}),
            "egg-10",
        )
        .unwrap();
        let current = Product {
            sku: p.sku.clone(),
            name: p.name.clone(),
            description: String::new(),
            category: String::new(),
            category_id: String::new(),
            brand: p.brand.clone(),
            price: p.price,
            margin_pct: 0.0,
            popularity_score: 0.0,
            tags: p.tags.clone(),
            image_url: String::new(),
            active: true,
            created_at_ms: 0,
            updated_at_ms: 0,
            version: 1,
            seq: 1,
        };
        let m = ProductInput::merge(&current, &json!({"price": 27500, "brand": null})).unwrap();
        assert_eq!(
            (m.price, m.brand.as_str(), m.name.as_str()),
            (27500, "", "Telur Ayam 10 butir")
        );
        assert!(
            ProductInput::merge(&current, &json!({"name": null})).is_err(),
            "name is required"
        );
    }

    #[test]
    fn the_latest_valid_hub_price_wins_else_the_base() {
        let row = |p, from, to| HubPrice {
            hub_id: "h".into(),
            sku: "s".into(),
            price: p,
            valid_from_ms: from,
            valid_to_ms: to,
        };
        let rows = [row(900, 0, None), row(800, 100, Some(200))];
        assert_eq!(effective_price(1000, &rows, 50), (900, "hub"));
        assert_eq!(effective_price(1000, &rows, 150), (800, "hub"));
        assert_eq!(effective_price(1000, &rows, 200), (900, "hub"));
        assert_eq!(effective_price(1000, &[], 200), (1000, "base"));
        assert_eq!(
            effective_price(1000, &[row(1, 500, None)], 200),
            (1000, "base")
        );
    }
}
