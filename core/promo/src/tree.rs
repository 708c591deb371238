//! The condition tree (05 §3): parsed strictly from JSON (unknown node types or fields, empty
//! lists, malformed times, too deep or too big trees are refused with the JSON path of the
//! problem) and evaluated against a cart. Every malformed tree the reference took as "true" is
//! an error here.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

/// Depth limit (the root is depth 1).
pub const MAX_DEPTH: usize = 32;
/// Node limit over the whole tree.
pub const MAX_NODES: usize = 256;
/// Children of one `and`/`or`.
pub const MAX_CHILDREN: usize = 64;

/// A refused tree: what is wrong and where (`$.conditions[1].min_amount`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct TreeError {
    pub path: String,
    pub message: String,
}

fn err(path: &str, message: impl Into<String>) -> TreeError {
    TreeError {
        path: path.to_string(),
        message: message.into(),
    }
}

/// Minutes since local midnight, `HH:MM`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Minute(pub u16);

impl Minute {
    pub fn parse(s: &str) -> Option<Minute> {
        let (h, m) = s.split_once(':')?;
        if h.len() != 2 || m.len() != 2 || !h.bytes().chain(m.bytes()).all(|b| b.is_ascii_digit()) {
            return None;
        }
        let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
        (h < 24 && m < 60).then_some(Minute(h * 60 + m))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    And(Vec<Condition>),
    Or(Vec<Condition>),
    Not(Box<Condition>),
    MinTransaction(i64),
    /// Lower-cased.
    Area(BTreeSet<String>),
    /// Lower-cased.
    Category(BTreeSet<String>),
    FirstNOrder(i64),
    /// [start, end) local time; start > end spans midnight; `days` 0 = Sunday, empty = every day.
    TimeSlot {
        start: Minute,
        end: Minute,
        days: BTreeSet<u8>,
    },
}

/// What a tree is evaluated against.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalContext<'a> {
    pub cart_total: i64,
    /// Lower-cased.
    pub area: Option<&'a str>,
    /// Lower-cased: `categories` ∪ the items' categories.
    pub categories: &'a BTreeSet<String>,
    pub user_order_count: i64,
    /// Local (PROMO_TZ) minute of the day and weekday (0 = Sunday).
    pub minute: Minute,
    pub weekday: u8,
}

impl Condition {
    /// Parses and validates a tree (05 §3 limits).
    pub fn parse(v: &Value) -> Result<Condition, TreeError> {
        let mut nodes = 0;
        parse_node(v, "$", 1, &mut nodes)
    }

    pub fn eval(&self, c: &EvalContext<'_>) -> bool {
        match self {
            Condition::And(cs) => cs.iter().all(|x| x.eval(c)),
            Condition::Or(cs) => cs.iter().any(|x| x.eval(c)),
            Condition::Not(x) => !x.eval(c),
            Condition::MinTransaction(min) => c.cart_total >= *min,
            Condition::Area(areas) => c.area.is_some_and(|a| areas.contains(a)),
            Condition::Category(cats) => !cats.is_disjoint(c.categories),
            Condition::FirstNOrder(n) => c.user_order_count < *n,
            Condition::TimeSlot { start, end, days } => {
                let in_window = if start < end {
                    *start <= c.minute && c.minute < *end
                } else {
                    c.minute >= *start || c.minute < *end
                };
                // Past midnight an overnight slot belongs to the day it started.
                let day = if start > end && c.minute < *end {
                    (c.weekday + 6) % 7
                } else {
                    c.weekday
                };
                in_window && (days.is_empty() || days.contains(&day))
            }
        }
    }

    /// Back to the canonical JSON (what is stored and served).
    pub fn to_json(&self) -> Value {
        use serde_json::json;
        let hhmm = |m: Minute| format!("{:02}:{:02}", m.0 / 60, m.0 % 60);
        match self {
            Condition::And(cs) => {
                json!({"type": "and", "conditions": cs.iter().map(Condition::to_json).collect::<Vec<_>>()})
            }
            Condition::Or(cs) => {
                json!({"type": "or", "conditions": cs.iter().map(Condition::to_json).collect::<Vec<_>>()})
            }
            Condition::Not(x) => json!({"type": "not", "condition": x.to_json()}),
            Condition::MinTransaction(a) => json!({"type": "min_transaction", "min_amount": a}),
            Condition::Area(a) => json!({"type": "area", "areas": a}),
            Condition::Category(c) => json!({"type": "category", "categories": c}),
            Condition::FirstNOrder(n) => json!({"type": "first_n_order", "max_orders": n}),
            Condition::TimeSlot { start, end, days } => {
                json!({"type": "time_slot", "start": hhmm(*start), "end": hhmm(*end), "days": days})
            }
        }
    }
}

/// The node's fields other than `type`, refusing any not in `allowed`.
fn fields<'a>(
    obj: &'a Map<String, Value>,
    path: &str,
    allowed: &[&str],
) -> Result<&'a Map<String, Value>, TreeError> {
    if let Some(k) = obj
        .keys()
        .find(|k| k.as_str() != "type" && !allowed.contains(&k.as_str()))
    {
        return Err(err(&format!("{path}.{k}"), "unknown field"));
    }
    Ok(obj)
}

fn non_negative(obj: &Map<String, Value>, path: &str, key: &str) -> Result<i64, TreeError> {
    let p = format!("{path}.{key}");
    match obj.get(key) {
        None | Some(Value::Null) => Err(err(&p, "required")),
        Some(v) => v
            .as_i64()
            .filter(|n| *n >= 0 && *n <= crate::effect::MAX_MONEY)
            .ok_or_else(|| err(&p, "must be an integer in 0..=1e12")),
    }
}

fn strings(obj: &Map<String, Value>, path: &str, key: &str) -> Result<BTreeSet<String>, TreeError> {
    let p = format!("{path}.{key}");
    let list = obj
        .get(key)
        .and_then(Value::as_array)
        .ok_or_else(|| err(&p, "required: a list of strings"))?;
    if list.is_empty() {
        return Err(err(&p, "must not be empty"));
    }
    list.iter()
        .enumerate()
        .map(|(i, v)| {
            v.as_str()
                .filter(|s| !s.trim().is_empty() && s.len() <= 256)
                .map(|s| s.trim().to_lowercase())
                .ok_or_else(|| err(&format!("{p}[{i}]"), "must be a non-empty string (≤ 256)"))
        })
        .collect()
}

fn parse_node(
    v: &Value,
    path: &str,
    depth: usize,
    nodes: &mut usize,
) -> Result<Condition, TreeError> {
    if depth > MAX_DEPTH {
        return Err(err(path, format!("deeper than {MAX_DEPTH} levels")));
    }
    *nodes += 1;
    if *nodes > MAX_NODES {
        return Err(err(path, format!("more than {MAX_NODES} nodes")));
    }
    let obj = v
        .as_object()
        .ok_or_else(|| err(path, "a condition must be an object"))?;
    let kind = obj
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| err(&format!("{path}.type"), "required"))?;
    match kind {
        "and" | "or" => {
            let f = fields(obj, path, &["conditions"])?;
            let p = format!("{path}.conditions");
            let list = f
                .get("conditions")
                .and_then(Value::as_array)
                .ok_or_else(|| err(&p, "required: a list of conditions"))?;
            if list.is_empty() || list.len() > MAX_CHILDREN {
                return Err(err(&p, format!("must hold 1..={MAX_CHILDREN} conditions")));
            }
            let children = list
                .iter()
                .enumerate()
                .map(|(i, c)| parse_node(c, &format!("{p}[{i}]"), depth + 1, nodes))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(if kind == "and" {
                Condition::And(children)
            } else {
                Condition::Or(children)
            })
        }
        "not" => {
            let f = fields(obj, path, &["condition"])?;
            let child = f.get("condition").filter(|c| !c.is_null()).ok_or_else(|| {
                err(
                    &format!("{path}.condition"),
                    "required: exactly one condition",
                )
            })?;
            Ok(Condition::Not(Box::new(parse_node(
                child,
                &format!("{path}.condition"),
                depth + 1,
                nodes,
            )?)))
        }
        "min_transaction" => {
            let f = fields(obj, path, &["min_amount"])?;
            Ok(Condition::MinTransaction(non_negative(
                f,
                path,
                "min_amount",
            )?))
        }
        "first_n_order" => {
            let f = fields(obj, path, &["max_orders"])?;
            Ok(Condition::FirstNOrder(non_negative(f, path, "max_orders")?))
        }
        "area" => {
            let f = fields(obj, path, &["areas"])?;
            Ok(Condition::Area(strings(f, path, "areas")?))
        }
        "category" => {
            let f = fields(obj, path, &["categories"])?;
            Ok(Condition::Category(strings(f, path, "categories")?))
        }
        "time_slot" => {
            let f = fields(obj, path, &["start", "end", "days"])?;
            let time = |key: &str| {
                let p = format!("{path}.{key}");
                f.get(key)
                    .and_then(Value::as_str)
                    .and_then(Minute::parse)
                    .ok_or_else(|| err(&p, "required: HH:MM"))
            };
            let (start, end) = (time("start")?, time("end")?);
            if start == end {
                return Err(err(&format!("{path}.end"), "must differ from start"));
            }
            let mut days = BTreeSet::new();
            if let Some(d) = f.get("days").filter(|d| !d.is_null()) {
                let p = format!("{path}.days");
                let list = d
                    .as_array()
                    .ok_or_else(|| err(&p, "a list of days 0..=6"))?;
                for (i, day) in list.iter().enumerate() {
                    let n = day
                        .as_u64()
                        .filter(|n| *n <= 6)
                        .ok_or_else(|| err(&format!("{p}[{i}]"), "a day 0..=6 (0 = Sunday)"))?;
                    if !days.insert(n as u8) {
                        return Err(err(&format!("{p}[{i}]"), "repeated day"));
                    }
                }
            }
            Ok(Condition::TimeSlot { start, end, days })
        }
        other => Err(err(
            &format!("{path}.type"),
            format!("unknown condition type {other:?}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx<'a>(cats: &'a BTreeSet<String>) -> EvalContext<'a> {
        EvalContext {
            cart_total: 100_000,
            area: Some("jakarta selatan"),
            categories: cats,
            user_order_count: 2,
            minute: Minute(12 * 60),
            weekday: 1,
        }
    }

    #[test]
    fn a_valid_tree_evaluates_and_round_trips() {
        let tree = json!({"type": "and", "conditions": [
            {"type": "min_transaction", "min_amount": 50000},
            {"type": "or", "conditions": [
                {"type": "area", "areas": ["Jakarta Selatan"]},
                {"type": "category", "categories": ["dairy"]}]},
            {"type": "not", "condition": {"type": "first_n_order", "max_orders": 1}},
            {"type": "time_slot", "start": "11:00", "end": "14:00", "days": [1, 2]}]});
        let c = Condition::parse(&tree).unwrap();
        let cats = BTreeSet::from(["snacks".to_string()]);
        assert!(c.eval(&ctx(&cats)));
        assert_eq!(Condition::parse(&c.to_json()).unwrap(), c);
        let mut x = ctx(&cats);
        x.cart_total = 49_999;
        assert!(!c.eval(&x));
    }

    #[test]
    fn first_n_order_counts_strictly_and_overnight_slots_wrap() {
        let cats = BTreeSet::new();
        let first = Condition::parse(&json!({"type": "first_n_order", "max_orders": 2})).unwrap();
        let mut x = ctx(&cats);
        assert!(!first.eval(&x), "2 orders done: not among the first 2");
        x.user_order_count = 1;
        assert!(first.eval(&x));
        let night = Condition::parse(
            &json!({"type": "time_slot", "start": "22:00", "end": "02:00", "days": [5]}),
        )
        .unwrap();
        for (minute, weekday, want) in [
            (23 * 60, 5, true),
            (60, 6, true), // Saturday 01:00 belongs to Friday's slot
            (60, 5, false),
            (3 * 60, 6, false),
            (21 * 60 + 59, 5, false),
        ] {
            x.minute = Minute(minute);
            x.weekday = weekday;
            assert_eq!(night.eval(&x), want, "{minute} {weekday}");
        }
    }

    #[test]
    fn malformed_trees_are_refused_with_their_path() {
        let deep = (0..40).fold(
            json!({"type": "min_transaction", "min_amount": 1}),
            |c, _| json!({"type": "not", "condition": c}),
        );
        let deep_path = format!("${}", ".condition".repeat(32));
        let wide = json!({"type": "or", "conditions": (0..65).map(|_| json!({"type": "first_n_order", "max_orders": 1})).collect::<Vec<_>>()});
        let big = json!({"type": "and", "conditions": (0..60).map(|_| json!({"type": "or", "conditions": [
            {"type": "first_n_order", "max_orders": 1}, {"type": "first_n_order", "max_orders": 1},
            {"type": "first_n_order", "max_orders": 1}, {"type": "first_n_order", "max_orders": 1}]})).collect::<Vec<_>>()});
        for (tree, path) in [
            (json!({"type": "not"}), "$.condition"),
            (
                json!({"type": "not", "conditions": [{"type": "area", "areas": ["a"]}]}),
                "$.conditions",
            ),
            (json!({"type": "and", "conditions": []}), "$.conditions"),
            (json!({"type": "or"}), "$.conditions"),
            (
                json!({"type": "category", "categories": []}),
                "$.categories",
            ),
            (json!({"type": "area", "areas": [""]}), "$.areas[0]"),
            (json!({"type": "min_transaction"}), "$.min_amount"),
            (
                json!({"type": "min_transaction", "min_amount": -1}),
                "$.min_amount",
            ),
            (
                json!({"type": "min_transaction", "min_amount": 1.5}),
                "$.min_amount",
            ),
            (
                json!({"type": "first_n_order", "max_orders": "3"}),
                "$.max_orders",
            ),
            (
                json!({"type": "time_slot", "start": "9:00", "end": "10:00"}),
                "$.start",
            ),
            (
                json!({"type": "time_slot", "start": "24:00", "end": "10:00"}),
                "$.start",
            ),
            (
                json!({"type": "time_slot", "start": "10:00", "end": "10:00"}),
                "$.end",
            ),
            (
                json!({"type": "time_slot", "start": "10:00", "end": "11:00", "days": [7]}),
                "$.days[0]",
            ),
            (
                json!({"type": "time_slot", "start": "10:00", "end": "11:00", "days": [1, 1]}),
                "$.days[1]",
            ),
            (json!({"type": "AND", "children": []}), "$.type"),
            (
                json!({"type": "area", "areas": ["a"], "operator": "in"}),
                "$.operator",
            ),
            (
                json!({"type": "and", "conditions": [{"type": "teleport"}]}),
                "$.conditions[0].type",
            ),
            (json!([1]), "$"),
            (deep, deep_path.as_str()),
            (wide, "$.conditions"),
        ] {
            let e = Condition::parse(&tree).unwrap_err();
            assert_eq!(e.path, path, "{tree}: {e}");
        }
        let e = Condition::parse(&big).unwrap_err();
        assert!(e.message.contains("256"), "{e}");
    }
}
