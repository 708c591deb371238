//! Idempotency keys (00, 04 "Idempotency", 03 script I), for every service that takes them:
//! per `<user_id>:<key>`, a stored terminal outcome (status, body and the request's hash) is
//! replayed — or refused for another body — and a 30 s lease (longer than Checkout's 20 s saga
//! deadline) keeps a second run out while the first is going. Memory and Redis adapters (two
//! scripts, both keys under the user's hash tag; each service has its own key scope).

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;

use crate::redis_kit::{bounded, BackendError, KeyPrefix};
use crate::scripts::{CHECKOUT_IDEM_BEGIN, CHECKOUT_IDEM_FINISH};
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The lease, and how long an outcome is replayed.
pub const LEASE_MS: i64 = 30_000;
pub const RESULT_MS: i64 = 86_400_000;

/// A terminal answer as it was sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stored {
    pub status: u16,
    pub body: Value,
    pub request_hash: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Begin {
    /// The lease is ours: run the saga.
    Run,
    /// An outcome is stored for this key.
    Replay(Stored),
    /// Another request with this key is running.
    InProgress,
}

/// SHA-256 (hex) of the body in canonical form: object keys sorted at every level, whatever
/// order the client sent them in.
pub fn request_hash(body: &Value) -> String {
    fn canon(v: &Value, out: &mut String) {
        match v {
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                out.push('{');
                for (i, k) in keys.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&Value::String((*k).clone()).to_string());
                    out.push(':');
                    canon(&m[*k], out);
                }
                out.push('}');
            }
            Value::Array(a) => {
                out.push('[');
                for (i, x) in a.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    canon(x, out);
                }
                out.push(']');
            }
            other => out.push_str(&other.to_string()),
        }
    }
    let mut s = String::new();
    canon(body, &mut s);
    hex::encode(Sha256::digest(s.as_bytes()))
}

pub trait IdempotencyStore: Send + Sync {
    fn begin(
        &self,
        user: &str,
        key: &str,
        token: &str,
        now_ms: i64,
    ) -> impl Future<Output = Result<Begin, BackendError>> + Send;
    /// Stores `outcome` (terminal answers only) and frees the lease if `token` still holds it.
    fn finish(
        &self,
        user: &str,
        key: &str,
        token: &str,
        outcome: Option<&Stored>,
        now_ms: i64,
    ) -> impl Future<Output = Result<(), BackendError>> + Send;
}

/// A key's stored outcome — (status, body as JSON text, request hash), kept as text as Redis
/// keeps it — and its lease (token, expires).
type Slot = (Option<(u16, String, String)>, Option<(String, i64)>);

#[derive(Debug, Default)]
pub struct MemoryIdempotency {
    /// (user, key) → slot
    slots: Mutex<HashMap<(String, String), Slot>>,
}

impl IdempotencyStore for MemoryIdempotency {
    async fn begin(
        &self,
        user: &str,
        key: &str,
        token: &str,
        now_ms: i64,
    ) -> Result<Begin, BackendError> {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let slot = slots
            .entry((user.to_string(), key.to_string()))
            .or_default();
        if let Some((status, body, hash)) = &slot.0 {
            return Ok(Begin::Replay(Stored {
                status: *status,
                body: serde_json::from_str(body).unwrap_or(Value::Null),
                request_hash: hash.clone(),
            }));
        }
        if slot
            .1
            .as_ref()
            .is_some_and(|(t, exp)| t != token && *exp > now_ms)
        {
            return Ok(Begin::InProgress);
        }
        slot.1 = Some((token.to_string(), now_ms + LEASE_MS));
        Ok(Begin::Run)
    }

    async fn finish(
        &self,
        user: &str,
        key: &str,
        token: &str,
        outcome: Option<&Stored>,
        _now_ms: i64,
    ) -> Result<(), BackendError> {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(slot) = slots.get_mut(&(user.to_string(), key.to_string())) {
            if slot.1.as_ref().is_some_and(|(t, _)| t == token) {
                if let Some(o) = outcome {
                    slot.0 = Some((o.status, o.body.to_string(), o.request_hash.clone()));
                }
                slot.1 = None;
            }
        }
        Ok(())
    }
}

/// `<scope>:idem:{<user_id>}:result:<key>` and `:lock:<key>` (`checkout`, `flash`).
#[derive(Debug, Clone)]
pub struct RedisIdempotency {
    pub conn: ConnectionManager,
    pub prefix: KeyPrefix,
    pub timeout_ms: u64,
    pub scope: &'static str,
}

impl RedisIdempotency {
    fn keys(&self, user: &str, key: &str) -> (String, String) {
        let scope = self.scope;
        (
            self.prefix
                .key(&format!("{scope}:idem:{{{user}}}:result:{key}")),
            self.prefix
                .key(&format!("{scope}:idem:{{{user}}}:lock:{key}")),
        )
    }
}

fn unreadable(e: impl std::fmt::Display) -> BackendError {
    BackendError::Redis(format!("unreadable stored outcome: {e}").into())
}

impl IdempotencyStore for RedisIdempotency {
    async fn begin(
        &self,
        user: &str,
        key: &str,
        token: &str,
        now_ms: i64,
    ) -> Result<Begin, BackendError> {
        let (result, lock) = self.keys(user, key);
        let mut inv = CHECKOUT_IDEM_BEGIN.prepare_invoke();
        inv.key(result)
            .key(lock)
            .arg(now_ms)
            .arg(token)
            .arg(LEASE_MS);
        let v: Vec<redis::Value> =
            bounded(self.timeout_ms, inv.invoke_async(&mut self.conn.clone())).await?;
        let code: i64 = match v.first() {
            Some(c) => redis::from_redis_value(c.clone()).map_err(unreadable)?,
            None => 0,
        };
        Ok(match code {
            2 => {
                let json: String = redis::from_redis_value(v[1].clone()).map_err(unreadable)?;
                Begin::Replay(serde_json::from_str(&json).map_err(unreadable)?)
            }
            1 => Begin::Run,
            _ => Begin::InProgress,
        })
    }

    async fn finish(
        &self,
        user: &str,
        key: &str,
        token: &str,
        outcome: Option<&Stored>,
        now_ms: i64,
    ) -> Result<(), BackendError> {
        let (result, lock) = self.keys(user, key);
        let json = outcome
            .map(|o| serde_json::to_string(o).expect("an outcome serialises"))
            .unwrap_or_default();
        let mut inv = CHECKOUT_IDEM_FINISH.prepare_invoke();
        inv.key(result)
            .key(lock)
            .arg(now_ms)
            .arg(token)
            .arg(json)
            .arg(RESULT_MS);
        let _: i64 = bounded(self.timeout_ms, inv.invoke_async(&mut self.conn.clone())).await?;
        Ok(())
    }
}

/// The suite both adapters pass.
#[cfg(any(test, feature = "testing"))]
pub async fn idempotency_conforms(s: impl IdempotencyStore) {
    use serde_json::json;
    const T: i64 = 1_800_000_000_000;
    assert_eq!(s.begin("u1", "k1", "a", T).await.unwrap(), Begin::Run);
    assert_eq!(
        s.begin("u1", "k1", "b", T + 1).await.unwrap(),
        Begin::InProgress
    );
    assert_eq!(
        s.begin("u2", "k1", "b", T + 1).await.unwrap(),
        Begin::Run,
        "keys are per user"
    );
    // A lease that lapsed (a crashed holder) can be taken.
    assert_eq!(
        s.begin("u1", "k1", "c", T + LEASE_MS + 1).await.unwrap(),
        Begin::Run
    );
    // The old holder's finish no longer counts.
    let stored = Stored {
        status: 201,
        body: json!({"data": {"order_id": "o1"}}),
        request_hash: "h".into(),
    };
    s.finish("u1", "k1", "a", Some(&stored), T + LEASE_MS + 2)
        .await
        .unwrap();
    assert_eq!(
        s.begin("u1", "k1", "d", T + LEASE_MS + 3).await.unwrap(),
        Begin::InProgress
    );
    s.finish("u1", "k1", "c", Some(&stored), T + LEASE_MS + 4)
        .await
        .unwrap();
    assert_eq!(
        s.begin("u1", "k1", "e", T + LEASE_MS + 5).await.unwrap(),
        Begin::Replay(stored)
    );
    // A 5xx stores nothing: the lease goes and the next try runs afresh.
    s.finish("u2", "k1", "b", None, T + 2).await.unwrap();
    assert_eq!(s.begin("u2", "k1", "f", T + 3).await.unwrap(), Begin::Run);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_hash_ignores_key_order() {
        let a = json!({"user_id": "u", "items": [{"sku": "a", "quantity": 1}], "hub_id": "h"});
        let b = json!({"hub_id": "h", "items": [{"quantity": 1, "sku": "a"}], "user_id": "u"});
        assert_eq!(request_hash(&a), request_hash(&b));
        let c = json!({"hub_id": "h", "items": [{"quantity": 2, "sku": "a"}], "user_id": "u"});
        assert_ne!(request_hash(&a), request_hash(&c));
    }

    #[test]
    fn the_memory_store_conforms() {
        futures::executor::block_on(idempotency_conforms(MemoryIdempotency::default()));
    }
}
