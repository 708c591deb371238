//! A promo rule (05 §2 "Rule body"): parsed strictly from the create/replace body, with every
//! limit explicit (0 = unlimited, never "cap 0") and a money budget beside the counts.

use serde_json::{json, Map, Value};

use crate::effect::{money, Effect, EffectError};
use crate::tree::{Condition, TreeError};

/// Why a rule body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    /// 400 `INVALID_ARGUMENT`, naming the field.
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    /// 400 `INVALID_CONDITIONS`, with the JSON path.
    #[error("conditions {0}")]
    Conditions(TreeError),
}

fn invalid(field: &str, message: impl Into<String>) -> RuleError {
    RuleError::Invalid {
        field: field.to_string(),
        message: message.into(),
    }
}

impl From<EffectError> for RuleError {
    fn from(e: EffectError) -> Self {
        invalid(&format!("effect.{}", e.field), e.message)
    }
}

/// Usage limits; 0 means unlimited for each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Limits {
    pub max_total: i64,
    pub max_daily: i64,
    /// Lifetime, per user.
    pub max_per_user: i64,
    /// Money: the total discount (and cashback) the rule may ever grant, rupiah.
    pub budget: i64,
}

impl Limits {
    pub fn any(&self) -> bool {
        self.max_total > 0 || self.max_daily > 0 || self.max_per_user > 0 || self.budget > 0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Active,
    Inactive,
    /// Terminal: `end_at` has passed.
    Expired,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Active => "active",
            Status::Inactive => "inactive",
            Status::Expired => "expired",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        match s {
            "active" => Some(Status::Active),
            "inactive" => Some(Status::Inactive),
            "expired" => Some(Status::Expired),
            _ => None,
        }
    }
}

/// The fields a client sets (create, or full replace).
#[derive(Debug, Clone, PartialEq)]
pub struct RuleBody {
    pub name: String,
    pub conditions: Condition,
    pub priority: i64,
    pub effect: Effect,
    pub limits: Limits,
    pub stackable: bool,
    pub exclusivity_group: Option<String>,
    pub max_stackable: u32,
    pub start_at_ms: Option<i64>,
    pub end_at_ms: Option<i64>,
    pub status: Status,
}

const FIELDS: [&str; 11] = [
    "name",
    "conditions",
    "priority",
    "effect",
    "limits",
    "stackable",
    "exclusivity_group",
    "max_stackable",
    "start_at",
    "end_at",
    "status",
];

/// RFC 3339 UTC with milliseconds.
pub fn rfc3339(epoch_ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(epoch_ms.max(0) as u64);
    humantime::format_rfc3339_millis(t).to_string()
}

fn time(obj: &Map<String, Value>, key: &str) -> Result<Option<i64>, RuleError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => humantime::parse_rfc3339_weak(s)
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .and_then(|d| i64::try_from(d.as_millis()).ok())
            .map(Some)
            .ok_or_else(|| invalid(key, "must be an RFC 3339 time")),
        Some(_) => Err(invalid(key, "must be an RFC 3339 time or null")),
    }
}

impl RuleBody {
    pub fn parse(v: &Value) -> Result<RuleBody, RuleError> {
        let obj = v
            .as_object()
            .ok_or_else(|| invalid("body", "must be a JSON object"))?;
        if let Some(k) = obj.keys().find(|k| !FIELDS.contains(&k.as_str())) {
            return Err(invalid(k, "unknown field"));
        }
        let name = obj
            .get("name")
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|n| (1..=200).contains(&n.chars().count()))
            .ok_or_else(|| invalid("name", "required: 1..200 characters"))?
            .to_string();
        let conditions = match obj.get("conditions") {
            None | Some(Value::Null) => return Err(invalid("conditions", "required")),
            Some(c) => Condition::parse(c).map_err(RuleError::Conditions)?,
        };
        let priority = match obj.get("priority") {
            None | Some(Value::Null) => 0,
            Some(p) => p
                .as_i64()
                .filter(|p| p.abs() <= 1_000_000_000)
                .ok_or_else(|| invalid("priority", "must be an integer"))?,
        };
        let effect = Effect::parse(
            obj.get("effect")
                .filter(|e| !e.is_null())
                .ok_or_else(|| invalid("effect", "required"))?,
        )?;
        let limits = match obj.get("limits") {
            None | Some(Value::Null) => Limits::default(),
            Some(Value::Object(l)) => {
                if let Some(k) = l.keys().find(|k| {
                    !["max_total", "max_daily", "max_per_user", "budget"].contains(&k.as_str())
                }) {
                    return Err(invalid(&format!("limits.{k}"), "unknown field"));
                }
                let n = |k: &'static str| -> Result<i64, RuleError> {
                    match l.get(k) {
                        None | Some(Value::Null) => Ok(0),
                        Some(x) => money(x, k).map_err(|_| {
                            invalid(
                                &format!("limits.{k}"),
                                "must be an integer ≥ 0 (0 = unlimited)",
                            )
                        }),
                    }
                };
                Limits {
                    max_total: n("max_total")?,
                    max_daily: n("max_daily")?,
                    max_per_user: n("max_per_user")?,
                    budget: n("budget")?,
                }
            }
            Some(_) => return Err(invalid("limits", "must be an object")),
        };
        let stackable = match obj.get("stackable") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(invalid("stackable", "must be true or false")),
        };
        let exclusivity_group = match obj.get("exclusivity_group") {
            None | Some(Value::Null) => None,
            Some(Value::String(g)) if g.is_empty() => None,
            Some(Value::String(g)) if g.chars().count() <= 64 => Some(g.clone()),
            Some(_) => return Err(invalid("exclusivity_group", "a string of ≤ 64 characters")),
        };
        let max_stackable = match obj.get("max_stackable") {
            None | Some(Value::Null) => 0,
            Some(x) => x
                .as_u64()
                .filter(|n| *n <= 1000)
                .ok_or_else(|| invalid("max_stackable", "an integer in 0..=1000"))?
                as u32,
        };
        let (start_at_ms, end_at_ms) = (time(obj, "start_at")?, time(obj, "end_at")?);
        if let (Some(s), Some(e)) = (start_at_ms, end_at_ms) {
            if e <= s {
                return Err(invalid("end_at", "must be after start_at"));
            }
        }
        let status = match obj.get("status") {
            None | Some(Value::Null) => Status::Active,
            Some(Value::String(s)) if s == "active" || s == "inactive" => {
                Status::parse(s).expect("checked")
            }
            Some(_) => return Err(invalid("status", "active or inactive")),
        };
        Ok(RuleBody {
            name,
            conditions,
            priority,
            effect,
            limits,
            stackable,
            exclusivity_group,
            max_stackable,
            start_at_ms,
            end_at_ms,
            status,
        })
    }

    /// Whether the rule can apply at `now_ms` (status and dates).
    pub fn live_at(&self, now_ms: i64) -> bool {
        self.status == Status::Active
            && self.start_at_ms.is_none_or(|s| s <= now_ms)
            && self.end_at_ms.is_none_or(|e| now_ms <= e)
    }

    /// The body as clients send it (canonical JSON; `status` included).
    pub fn to_json(&self) -> Value {
        let time = |t: Option<i64>| t.map(rfc3339);
        json!({"name": self.name, "conditions": self.conditions.to_json(),
               "priority": self.priority, "effect": self.effect.to_json(),
               "limits": self.limits_json(), "stackable": self.stackable,
               "exclusivity_group": self.exclusivity_group, "max_stackable": self.max_stackable,
               "start_at": time(self.start_at_ms), "end_at": time(self.end_at_ms),
               "status": self.status.as_str()})
    }

    pub fn limits_json(&self) -> Value {
        let l = self.limits;
        json!({"max_total": l.max_total, "max_daily": l.max_daily,
               "max_per_user": l.max_per_user, "budget": l.budget})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body() -> Value {
        json!({"name": "Lunch 10%", "conditions": {"type": "min_transaction", "min_amount": 50000},
               "effect": {"type": "percentage", "value": 10, "max_discount": 25000},
               "limits": {"max_per_user": 1}, "priority": 5, "stackable": true,
               "start_at": "2026-12-01T00:00:00Z", "end_at": "2026-12-31T00:00:00Z"})
    }

    #[test]
    fn an_unset_limit_is_unlimited_and_dates_bound_the_rule() {
        let r = RuleBody::parse(&body()).unwrap();
        assert_eq!(
            r.limits,
            Limits {
                max_total: 0,
                max_daily: 0,
                max_per_user: 1,
                budget: 0
            }
        );
        let dec1 = 1_796_083_200_000;
        assert!(r.live_at(dec1));
        assert!(!r.live_at(dec1 - 1));
        assert!(!r.live_at(dec1 + 31 * 86_400_000));
    }

    #[test]
    fn bad_bodies_name_their_field() {
        for (patch, field) in [
            (json!({"name": ""}), "name"),
            (json!({"name": "x".repeat(201)}), "name"),
            (json!({"conditions": null}), "conditions"),
            (json!({"priority": 1.5}), "priority"),
            (
                json!({"effect": {"type": "percentage", "value": 150}}),
                "effect.value",
            ),
            (json!({"limits": {"max_total": -1}}), "limits.max_total"),
            (json!({"limits": {"max_total": 2.5}}), "limits.max_total"),
            (json!({"limits": {"cap": 1}}), "limits.cap"),
            (json!({"stackable": "yes"}), "stackable"),
            (
                json!({"exclusivity_group": "g".repeat(65)}),
                "exclusivity_group",
            ),
            (json!({"end_at": "2026-11-01T00:00:00Z"}), "end_at"),
            (json!({"start_at": "tomorrow"}), "start_at"),
            (json!({"status": "expired"}), "status"),
            (json!({"promo_ids": [1]}), "promo_ids"),
        ] {
            let mut b = body();
            for (k, v) in patch.as_object().unwrap() {
                b[k] = v.clone();
            }
            match RuleBody::parse(&b) {
                Err(RuleError::Invalid { field: f, .. }) => assert_eq!(f, field, "{patch}"),
                other => panic!("{patch}: {other:?}"),
            }
        }
        let mut b = body();
        b["conditions"] = json!({"type": "not"});
        assert!(matches!(RuleBody::parse(&b), Err(RuleError::Conditions(_))));
    }
}
