//! Leases (00-platform): a lock whose value carries its own expiry, so a crashed holder's lease
//! lapses by the clock rather than by a TTL.

use redis::aio::ConnectionManager;

use crate::redis_kit::{bounded, BackendError};
use crate::scripts::{LEASE_ACQUIRE, LEASE_RELEASE};

#[derive(Debug, Clone)]
pub struct Lease {
    pub key: String,
    pub token: String,
    pub ttl_ms: i64,
}

impl Lease {
    pub fn new(key: String, token: String, ttl_ms: i64) -> Self {
        Self { key, token, ttl_ms }
    }

    /// Takes or renews the lease; false when another holder's lease is still running.
    pub async fn acquire(
        &self,
        conn: &mut ConnectionManager,
        now_ms: i64,
        timeout_ms: u64,
    ) -> Result<bool, BackendError> {
        let mut inv = LEASE_ACQUIRE.prepare_invoke();
        inv.key(&self.key)
            .arg(now_ms)
            .arg(&self.token)
            .arg(self.ttl_ms);
        let got: i64 = bounded(timeout_ms, inv.invoke_async(conn)).await?;
        Ok(got == 1)
    }

    /// Gives the lease up if we still hold it.
    pub async fn release(
        &self,
        conn: &mut ConnectionManager,
        now_ms: i64,
        timeout_ms: u64,
    ) -> Result<bool, BackendError> {
        let mut inv = LEASE_RELEASE.prepare_invoke();
        inv.key(&self.key).arg(now_ms).arg(&self.token);
        let got: i64 = bounded(timeout_ms, inv.invoke_async(conn)).await?;
        Ok(got == 1)
    }
}
