//! Redis helpers: a self-healing multiplexed connection, a bound on every round trip, and key
//! naming under `QC_KEY_PREFIX`.

use std::future::Future;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::collections::HashMap;

use redis::{RedisResult, Value};

/// A dependency could not be reached or did not answer in time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    #[error("redis: {0}")]
    Redis(#[source] Cause),
    #[error("postgres: {0}")]
    Postgres(#[source] Cause),
    #[error("{0} did not answer within {1} ms")]
    Timeout(&'static str, u64),
    /// Another service over HTTP (unreachable, or an answer that is not its contract).
    #[error("service: {0}")]
    Service(#[source] Cause),
}

/// Why a store call failed: what we were doing, and the driver's own error kept as the
/// `source` (typed, so a caller can look at it), not flattened to text. Its text is the
/// context and the cause's, so a log line or a CLI message is whole on its own.
#[derive(Debug, Clone)]
pub struct Cause {
    message: String,
    source: Option<std::sync::Arc<dyn std::error::Error + Send + Sync + 'static>>,
}

impl Cause {
    /// The driver's error itself.
    pub fn of(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self {
            message: e.to_string(),
            source: Some(std::sync::Arc::new(e)),
        }
    }

    /// What failed, and the driver's error.
    pub fn context(
        context: impl std::fmt::Display,
        e: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self {
            message: format!("{context}: {e}"),
            source: Some(std::sync::Arc::new(e)),
        }
    }

    /// The same cause with more words after it (e.g. which URL).
    pub fn annotated(mut self, more: impl std::fmt::Display) -> Self {
        self.message = format!("{}{more}", self.message);
        self
    }

    pub fn message(&self) -> &str {
        &self.message
    }
}

/// A failure with no driver error beneath it (an unexpected reply, a refused name).
impl From<String> for Cause {
    fn from(message: String) -> Self {
        Self {
            message,
            source: None,
        }
    }
}

impl From<&str> for Cause {
    fn from(message: &str) -> Self {
        message.to_string().into()
    }
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Cause {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// Causes compare by what they say (errors of the drivers are not comparable).
impl PartialEq for Cause {
    fn eq(&self, other: &Self) -> bool {
        self.message == other.message
    }
}

impl Eq for Cause {}

impl From<redis::RedisError> for BackendError {
    fn from(e: redis::RedisError) -> Self {
        BackendError::Redis(Cause::of(e))
    }
}

impl From<sqlx::Error> for BackendError {
    fn from(e: sqlx::Error) -> Self {
        BackendError::Postgres(Cause::of(e))
    }
}

/// Opens a connection manager that reconnects by itself; every command is bounded by
/// `timeout_ms`, and so is each connection attempt.
pub async fn connect(url: &str, timeout_ms: u64) -> Result<ConnectionManager, BackendError> {
    let client = redis::Client::open(url).map_err(|e| {
        BackendError::Redis(Cause::context(
            format!("bad REDIS_URL {}", redact_url(url)),
            e,
        ))
    })?;
    let timeout = Duration::from_millis(timeout_ms);
    let config = ConnectionManagerConfig::new()
        .set_response_timeout(Some(timeout))
        .set_connection_timeout(Some(timeout))
        .set_number_of_retries(2)
        .set_min_delay(Duration::from_millis(20))
        .set_max_delay(Duration::from_millis(500));
    bounded(
        timeout_ms,
        ConnectionManager::new_with_config(client, config),
    )
    .await
    .map_err(|e| {
        BackendError::Redis(Cause::context(
            format!("cannot reach Redis at {}", redact_url(url)),
            e,
        ))
    })
}

/// A URL fit for logs: any `user:password@` is replaced by `***@`.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            format!("{}***{}", &url[..scheme_end + 3], &url[at..])
        }
        _ => url.to_string(),
    }
}

/// Runs one Redis future with an upper bound, so a dead server gives an error, never a hang.
pub async fn bounded<T>(
    timeout_ms: u64,
    fut: impl Future<Output = RedisResult<T>>,
) -> Result<T, BackendError> {
    match tokio::time::timeout(Duration::from_millis(timeout_ms), fut).await {
        Ok(r) => r.map_err(BackendError::from),
        Err(_) => Err(BackendError::Timeout("redis", timeout_ms)),
    }
}

/// Builds keys under the configured prefix.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyPrefix(String);

impl KeyPrefix {
    pub fn new(prefix: impl Into<String>) -> Self {
        Self(prefix.into())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// `<prefix><rest>`.
    pub fn key(&self, rest: &str) -> String {
        let mut k = String::with_capacity(self.0.len() + rest.len());
        k.push_str(&self.0);
        k.push_str(rest);
        k
    }
}

/// Deletes every key under `prefix`.
pub async fn delete_prefix(
    conn: &mut ConnectionManager,
    prefix: &KeyPrefix,
) -> redis::RedisResult<u64> {
    assert!(!prefix.as_str().is_empty(), "refusing to delete every key");
    let keys = keys_under(conn, prefix).await?;
    for chunk in keys.chunks(1000) {
        let _: () = redis::cmd("DEL").arg(chunk).query_async(conn).await?;
    }
    Ok(keys.len() as u64)
}

/// Keys under `prefix`, sorted (for asserting that nothing changed).
pub async fn keys_under(
    conn: &mut ConnectionManager,
    prefix: &KeyPrefix,
) -> redis::RedisResult<Vec<String>> {
    let mut cursor: u64 = 0;
    let mut all = Vec::new();
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{}*", prefix.as_str()))
            .arg("COUNT")
            .arg(1000)
            .query_async(conn)
            .await?;
        all.extend(keys);
        if next == 0 {
            all.sort();
            return Ok(all);
        }
        cursor = next;
    }
}

/// One stream entry: its id and fields.
pub type StreamEntry = (String, std::collections::HashMap<String, String>);

/// A reply value as text (bulk or simple string, integer; nil is empty).
pub fn text(v: &Value) -> String {
    match v {
        Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        Value::SimpleString(s) => s.clone(),
        Value::Int(i) => i.to_string(),
        Value::Nil => String::new(),
        other => format!("{other:?}"),
    }
}

/// A RESP2 flat array or RESP3 map of field/value pairs.
pub fn flat_map(v: &Value) -> HashMap<String, String> {
    match v {
        Value::Array(a) => a
            .chunks(2)
            .filter(|c| c.len() == 2)
            .map(|c| (text(&c[0]), text(&c[1])))
            .collect(),
        Value::Map(m) => m.iter().map(|(k, v)| (text(k), text(v))).collect(),
        _ => HashMap::new(),
    }
}

/// XRANGE-style entries: [[id, [f, v, ...]], ...].
pub fn entries_of(v: &Value) -> Vec<StreamEntry> {
    let Value::Array(entries) = v else {
        return Vec::new();
    };
    entries
        .iter()
        .filter_map(|e| match e {
            Value::Array(p) if p.len() == 2 => Some((text(&p[0]), flat_map(&p[1]))),
            _ => None,
        })
        .collect()
}

/// XREADGROUP's reply: [[key, [[id, [f, v, ...]], ...]], ...] (or a RESP3 map).
pub fn stream_reply(v: &Value) -> Vec<(String, Vec<StreamEntry>)> {
    match v {
        Value::Array(streams) => streams
            .iter()
            .filter_map(|s| match s {
                Value::Array(p) if p.len() == 2 => Some((text(&p[0]), entries_of(&p[1]))),
                _ => None,
            })
            .collect(),
        Value::Map(m) => m.iter().map(|(k, v)| (text(k), entries_of(v))).collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_failure_keeps_its_cause() {
        use std::error::Error;
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let e = BackendError::Redis(Cause::context("cannot reach Redis at 127.0.0.1:1", io));
        assert_eq!(
            e.to_string(),
            "redis: cannot reach Redis at 127.0.0.1:1: refused",
            "the message is whole on its own"
        );
        let cause = e.source().expect("the cause is the source");
        let driver = cause.source().expect("and the driver's error beneath it");
        let io = driver
            .downcast_ref::<std::io::Error>()
            .expect("typed, not text");
        assert_eq!(io.kind(), std::io::ErrorKind::ConnectionRefused);
        let bare = BackendError::Postgres("unreadable row".into());
        assert!(bare.source().unwrap().source().is_none());
    }

    #[test]
    fn keys_carry_the_prefix() {
        assert_eq!(KeyPrefix::new("t1:").key("inv:hubs"), "t1:inv:hubs");
        assert_eq!(KeyPrefix::default().key("inv:hubs"), "inv:hubs");
    }

    #[test]
    fn credentials_never_reach_logs() {
        assert_eq!(
            redact_url("redis://:s3cret@cache:6379/0"),
            "redis://***@cache:6379/0"
        );
        assert_eq!(redact_url("postgres://app:pw@db/q"), "postgres://***@db/q");
        assert_eq!(
            redact_url("redis://127.0.0.1:6379/"),
            "redis://127.0.0.1:6379/"
        );
    }

    #[tokio::test]
    async fn unreachable_redis_is_an_error_within_the_bound() {
        let started = std::time::Instant::now();
        // Port 1 on loopback refuses connections.
        let err = connect("redis://127.0.0.1:1/", 300).await.unwrap_err();
        assert!(err.to_string().contains("127.0.0.1:1"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(3));
    }
}
