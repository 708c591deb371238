//! The port: ETA's operational state (07 §3) — segment filters, sticky and latest answers, and
//! the calibration score windows. Adapters: [`RedisEtaStore`] (single-key Lua scripts) and
//! [`MemoryEtaStore`]; both pass [`crate::conformance`].

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::sync::Mutex;

use qc_kit::redis_kit::{bounded, BackendError, KeyPrefix};
use qc_kit::scripts::{ETA_ACI_ADAPT, ETA_KF_UPDATE, ETA_STICKY_PUT};
use redis::aio::ConnectionManager;

use crate::calibrate::{adapt, ACI_BOUNDS, ACI_GAMMA, LEVELS, WINDOW};
use crate::kalman::{self, KfState};

/// How long a sticky answer stays live by default (07 §3, `ETA_STICKY_TTL_S`); its key is
/// garbage-collected 60 s after that.
pub const STICKY_MS: i64 = 30_000;
pub const STICKY_GC_EXTRA_MS: i64 = 60_000;
/// `eta:latest:` GC, and how old a latest answer GET still serves.
pub const LATEST_MAX_AGE_MS: i64 = 7_200_000;
/// Segment filters idle this long are garbage (they have decayed to the prior anyway).
pub const KF_TTL_S: i64 = 86_400;
/// Score windows idle this long are garbage.
pub const SCORES_TTL_S: i64 = 7 * 86_400;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StickyEntry {
    pub fp: String,
    pub expires_at_ms: i64,
    pub body: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StickyPut {
    Stored,
    /// A live entry with the same fingerprint won the race: its body.
    Existing(String),
}

/// What calibrating one prediction needs: score windows (hub and band, hub, every hub; newest
/// first) and the hub's adaptive levels.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoreWindows {
    pub band: Vec<f64>,
    pub hub: Vec<f64>,
    pub all: Vec<f64>,
    pub levels: [f64; 3],
}

/// A segment's filter and its hub's (the two levels of [`kalman::update_two_level`]).
pub type Filters = (Option<KfState>, Option<KfState>);

pub trait EtaStore: Send + Sync {
    /// The filters of `segment` (a geohash6 cell) and of its hub.
    fn kf_get(
        &self,
        hub_id: &str,
        segment: &str,
    ) -> impl Future<Output = Result<Filters, BackendError>> + Send;
    /// Applies one observation to both levels atomically (07 §5); returns (segment, hub).
    fn kf_update(
        &self,
        hub_id: &str,
        segment: &str,
        now_ms: i64,
        t_ms: i64,
        ratio: f64,
    ) -> impl Future<Output = Result<(KfState, KfState), BackendError>> + Send;
    fn sticky_get(
        &self,
        order_id: &str,
    ) -> impl Future<Output = Result<Option<StickyEntry>, BackendError>> + Send;
    fn sticky_put(
        &self,
        order_id: &str,
        now_ms: i64,
        fp: &str,
        body: &str,
    ) -> impl Future<Output = Result<StickyPut, BackendError>> + Send;
    fn latest_put(
        &self,
        order_id: &str,
        body: &str,
    ) -> impl Future<Output = Result<(), BackendError>> + Send;
    fn latest_get(
        &self,
        order_id: &str,
    ) -> impl Future<Output = Result<Option<String>, BackendError>> + Send;
    fn scores_push(
        &self,
        hub: &str,
        band: u8,
        score: f64,
    ) -> impl Future<Output = Result<(), BackendError>> + Send;
    fn scores(
        &self,
        hub: &str,
        band: u8,
    ) -> impl Future<Output = Result<ScoreWindows, BackendError>> + Send;
    /// Adapts the hub's levels to a delivered order's misses at p50, p80, p95 (atomic).
    fn adapt_levels(
        &self,
        hub: &str,
        missed: [bool; 3],
    ) -> impl Future<Output = Result<[f64; 3], BackendError>> + Send;
}

/// How long this process reuses a hub's calibration windows (they change by one residual per
/// delivery; reading 1,200 of them costs more than the rest of a calculation).
pub const WINDOWS_CACHE_MS: u64 = 1000;

type WindowsCache = BTreeMap<(String, u8), (std::time::Instant, ScoreWindows)>;

#[derive(Debug, Clone)]
pub struct RedisEtaStore {
    conn: ConnectionManager,
    prefix: KeyPrefix,
    /// Bound on one Redis command (07 §5: 250 ms).
    timeout_ms: u64,
    /// Windows read within [`WINDOWS_CACHE_MS`]; a push through this store drops its hub's.
    windows: std::sync::Arc<Mutex<WindowsCache>>,
    /// How long read windows are reused (0: never, as the simulator needs: the cache's age is
    /// wall time, which must not decide a simulated answer).
    windows_cache_ms: u64,
    sticky_ms: i64,
}

impl RedisEtaStore {
    pub fn new(conn: ConnectionManager, prefix: KeyPrefix, timeout_ms: u64) -> Self {
        Self {
            conn,
            prefix,
            timeout_ms,
            windows: Default::default(),
            windows_cache_ms: WINDOWS_CACHE_MS,
            sticky_ms: STICKY_MS,
        }
    }

    /// How long this process reuses calibration windows it read; 0 turns the cache off.
    pub fn with_windows_cache_ms(mut self, ms: u64) -> Self {
        self.windows_cache_ms = ms;
        self
    }

    /// How long a stored answer stays sticky.
    pub fn with_sticky_ms(mut self, sticky_ms: i64) -> Self {
        self.sticky_ms = sticky_ms;
        self
    }

    fn cached_windows(&self, hub: &str, band: u8) -> Option<ScoreWindows> {
        let c = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        c.get(&(hub.to_string(), band))
            .filter(|(at, _)| at.elapsed().as_millis() < u128::from(self.windows_cache_ms))
            .map(|(_, w)| w.clone())
    }

    fn forget_windows(&self, hub: &str) {
        let mut c = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        c.retain(|(h, _), _| h != hub);
    }
    fn key(&self, rest: &str) -> String {
        self.prefix.key(&format!("eta:{rest}"))
    }
    pub fn connection(&self) -> ConnectionManager {
        self.conn.clone()
    }
}

fn parse_state(x: &str, p: &str, t: &str, n: &str) -> Result<KfState, BackendError> {
    let bad = || BackendError::Redis(format!("unreadable filter state {x} {p} {t} {n}").into());
    Ok(KfState {
        x: x.parse().map_err(|_| bad())?,
        p: p.parse().map_err(|_| bad())?,
        t_ms: t.parse().map_err(|_| bad())?,
        n: n.parse().map_err(|_| bad())?,
    })
}

impl RedisEtaStore {
    /// `eta:kf:{<hub_id>}:<geohash6>` and the hub's `eta:kf:{<hub_id>}:*` (one slot).
    fn kf_keys(&self, hub_id: &str, segment: &str) -> (String, String) {
        let cell = segment.rsplit(':').next().unwrap_or(segment);
        (
            self.key(&format!("kf:{{{hub_id}}}:{cell}")),
            self.key(&format!("kf:{{{hub_id}}}:*")),
        )
    }
}

impl EtaStore for RedisEtaStore {
    async fn kf_get(&self, hub_id: &str, segment: &str) -> Result<Filters, BackendError> {
        let (seg, hub) = self.kf_keys(hub_id, segment);
        let mut pipe = redis::pipe();
        for k in [seg, hub] {
            pipe.cmd("HMGET").arg(k).arg(&["x", "p", "t_ms", "n"]);
        }
        let (a, b): (Vec<Option<String>>, Vec<Option<String>>) =
            bounded(self.timeout_ms, pipe.query_async(&mut self.conn.clone())).await?;
        let read = |v: Vec<Option<String>>| match v.as_slice() {
            [Some(x), Some(p), Some(t), Some(n)] => parse_state(x, p, t, n).map(Some),
            _ => Ok(None),
        };
        Ok((read(a)?, read(b)?))
    }

    async fn kf_update(
        &self,
        hub_id: &str,
        segment: &str,
        now_ms: i64,
        t_ms: i64,
        ratio: f64,
    ) -> Result<(KfState, KfState), BackendError> {
        let (seg, hub) = self.kf_keys(hub_id, segment);
        let mut inv = ETA_KF_UPDATE.prepare_invoke();
        inv.key(seg)
            .key(hub)
            .arg(now_ms)
            .arg(t_ms)
            .arg(format!("{ratio:?}"))
            .arg(format!("{:?}", kalman::SIGMA_INF2))
            .arg(format!("{:?}", kalman::TAU_S))
            .arg(format!("{:?}", kalman::R))
            .arg(format!("{:?}", kalman::CLAMP.0))
            .arg(format!("{:?}", kalman::CLAMP.1))
            .arg(format!("{:?}", kalman::SEGMENT_DEV2))
            .arg(KF_TTL_S);
        let v: Vec<String> =
            bounded(self.timeout_ms, inv.invoke_async(&mut self.conn.clone())).await?;
        match v.as_slice() {
            [x, p, t, n, hx, hp, ht, hn] => {
                Ok((parse_state(x, p, t, n)?, parse_state(hx, hp, ht, hn)?))
            }
            _ => Err(BackendError::Redis("eta_kf_update reply".into())),
        }
    }

    async fn sticky_get(&self, order_id: &str) -> Result<Option<StickyEntry>, BackendError> {
        let v: Vec<Option<String>> = bounded(
            self.timeout_ms,
            redis::cmd("HMGET")
                .arg(self.key(&format!("result:{order_id}")))
                .arg(&["fp", "exp", "body"])
                .query_async(&mut self.conn.clone()),
        )
        .await?;
        Ok(match v.as_slice() {
            [Some(fp), Some(exp), Some(body)] => exp.parse().ok().map(|e| StickyEntry {
                fp: fp.clone(),
                expires_at_ms: e,
                body: body.clone(),
            }),
            _ => None,
        })
    }

    async fn sticky_put(
        &self,
        order_id: &str,
        now_ms: i64,
        fp: &str,
        body: &str,
    ) -> Result<StickyPut, BackendError> {
        let mut inv = ETA_STICKY_PUT.prepare_invoke();
        inv.key(self.key(&format!("result:{order_id}")))
            .arg(now_ms)
            .arg(fp)
            .arg(body)
            .arg(self.sticky_ms)
            .arg(self.sticky_ms + STICKY_GC_EXTRA_MS);
        let (stored, existing): (i64, String) =
            bounded(self.timeout_ms, inv.invoke_async(&mut self.conn.clone())).await?;
        Ok(if stored == 1 {
            StickyPut::Stored
        } else {
            StickyPut::Existing(existing)
        })
    }

    async fn latest_put(&self, order_id: &str, body: &str) -> Result<(), BackendError> {
        bounded(
            self.timeout_ms,
            redis::cmd("SET")
                .arg(self.key(&format!("latest:{order_id}")))
                .arg(body)
                .arg("PX")
                .arg(LATEST_MAX_AGE_MS)
                .query_async(&mut self.conn.clone()),
        )
        .await
    }

    async fn latest_get(&self, order_id: &str) -> Result<Option<String>, BackendError> {
        bounded(
            self.timeout_ms,
            redis::cmd("GET")
                .arg(self.key(&format!("latest:{order_id}")))
                .query_async(&mut self.conn.clone()),
        )
        .await
    }

    async fn scores_push(&self, hub: &str, band: u8, score: f64) -> Result<(), BackendError> {
        self.forget_windows(hub);
        let mut pipe = redis::pipe();
        pipe.atomic();
        for k in [
            self.key(&format!("cal:{hub}:{band}")),
            self.key(&format!("cal:{hub}")),
            self.key("cal:*all"),
        ] {
            pipe.cmd("LPUSH").arg(&k).arg(format!("{score:?}")).ignore();
            pipe.cmd("LTRIM").arg(&k).arg(0).arg(WINDOW - 1).ignore();
            pipe.cmd("EXPIRE").arg(&k).arg(SCORES_TTL_S).ignore();
        }
        bounded(self.timeout_ms, pipe.query_async(&mut self.conn.clone())).await
    }

    async fn scores(&self, hub: &str, band: u8) -> Result<ScoreWindows, BackendError> {
        if let Some(w) = self.cached_windows(hub, band) {
            return Ok(w);
        }
        let mut pipe = redis::pipe();
        for k in [
            self.key(&format!("cal:{hub}:{band}")),
            self.key(&format!("cal:{hub}")),
            self.key("cal:*all"),
        ] {
            pipe.cmd("LRANGE").arg(k).arg(0).arg(WINDOW - 1);
        }
        pipe.cmd("HMGET")
            .arg(self.key(&format!("aci:{hub}")))
            .arg(&["l1", "l2", "l3"]);
        let (a, b, c, l): (Vec<String>, Vec<String>, Vec<String>, Vec<Option<String>>) =
            bounded(self.timeout_ms, pipe.query_async(&mut self.conn.clone())).await?;
        let nums = |v: Vec<String>| v.iter().filter_map(|s| s.parse().ok()).collect();
        let mut levels = LEVELS;
        for (i, v) in l.iter().enumerate().take(3) {
            if let Some(x) = v.as_deref().and_then(|s| s.parse::<f64>().ok()) {
                levels[i] = x;
            }
        }
        let w = ScoreWindows {
            band: nums(a),
            hub: nums(b),
            all: nums(c),
            levels,
        };
        self.windows
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                (hub.to_string(), band),
                (std::time::Instant::now(), w.clone()),
            );
        Ok(w)
    }

    async fn adapt_levels(&self, hub: &str, missed: [bool; 3]) -> Result<[f64; 3], BackendError> {
        self.forget_windows(hub);
        let mut inv = ETA_ACI_ADAPT.prepare_invoke();
        inv.key(self.key(&format!("aci:{hub}")))
            .arg(0)
            .arg(0)
            .arg(format!("{:?}", ACI_BOUNDS.0))
            .arg(format!("{:?}", ACI_BOUNDS.1))
            .arg(SCORES_TTL_S);
        for i in 0..3 {
            inv.arg(format!("{:?}", LEVELS[i]))
                .arg(i64::from(missed[i]))
                .arg(format!("{:?}", ACI_GAMMA[i]));
        }
        let v: Vec<String> =
            bounded(self.timeout_ms, inv.invoke_async(&mut self.conn.clone())).await?;
        let mut out = LEVELS;
        for (i, s) in v.iter().enumerate().take(3) {
            out[i] = s
                .parse()
                .map_err(|_| BackendError::Redis("eta_aci_adapt reply".into()))?;
        }
        Ok(out)
    }
}

#[derive(Debug, Default)]
struct Mem {
    kf: BTreeMap<String, KfState>,
    sticky: BTreeMap<String, StickyEntry>,
    latest: BTreeMap<String, String>,
    scores: BTreeMap<String, VecDeque<f64>>,
    levels: BTreeMap<String, [f64; 3]>,
}

/// In-process adapter (tests, the simulator): same rules, no GC, the default sticky period.
#[derive(Debug, Default)]
pub struct MemoryEtaStore {
    m: Mutex<Mem>,
}

impl MemoryEtaStore {
    pub fn new() -> Self {
        Self::default()
    }
    fn lock(&self) -> std::sync::MutexGuard<'_, Mem> {
        self.m.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl EtaStore for MemoryEtaStore {
    async fn kf_get(&self, hub_id: &str, segment: &str) -> Result<Filters, BackendError> {
        let m = self.lock();
        Ok((
            m.kf.get(segment).copied(),
            m.kf.get(&format!("{hub_id}:*")).copied(),
        ))
    }

    async fn kf_update(
        &self,
        hub_id: &str,
        segment: &str,
        _now_ms: i64,
        t_ms: i64,
        ratio: f64,
    ) -> Result<(KfState, KfState), BackendError> {
        let mut m = self.lock();
        let hub_key = format!("{hub_id}:*");
        let (s, h) = kalman::update_two_level(
            m.kf.get(segment).copied(),
            m.kf.get(&hub_key).copied(),
            t_ms,
            ratio,
        );
        m.kf.insert(segment.to_string(), s);
        m.kf.insert(hub_key, h);
        Ok((s, h))
    }

    async fn sticky_get(&self, order_id: &str) -> Result<Option<StickyEntry>, BackendError> {
        Ok(self.lock().sticky.get(order_id).cloned())
    }

    async fn sticky_put(
        &self,
        order_id: &str,
        now_ms: i64,
        fp: &str,
        body: &str,
    ) -> Result<StickyPut, BackendError> {
        let mut m = self.lock();
        if let Some(e) = m.sticky.get(order_id) {
            if e.fp == fp && now_ms < e.expires_at_ms {
                return Ok(StickyPut::Existing(e.body.clone()));
            }
        }
        m.sticky.insert(
            order_id.to_string(),
            StickyEntry {
                fp: fp.to_string(),
                expires_at_ms: now_ms + STICKY_MS,
                body: body.to_string(),
            },
        );
        Ok(StickyPut::Stored)
    }

    async fn latest_put(&self, order_id: &str, body: &str) -> Result<(), BackendError> {
        self.lock()
            .latest
            .insert(order_id.to_string(), body.to_string());
        Ok(())
    }

    async fn latest_get(&self, order_id: &str) -> Result<Option<String>, BackendError> {
        Ok(self.lock().latest.get(order_id).cloned())
    }

    async fn scores_push(&self, hub: &str, band: u8, score: f64) -> Result<(), BackendError> {
        let mut m = self.lock();
        for k in [format!("{hub}:{band}"), hub.to_string(), "*all".to_string()] {
            let w = m.scores.entry(k).or_default();
            w.push_front(score);
            w.truncate(WINDOW);
        }
        Ok(())
    }

    async fn scores(&self, hub: &str, band: u8) -> Result<ScoreWindows, BackendError> {
        let m = self.lock();
        let get = |k: String| {
            m.scores
                .get(&k)
                .map(|w| w.iter().copied().collect())
                .unwrap_or_default()
        };
        Ok(ScoreWindows {
            band: get(format!("{hub}:{band}")),
            hub: get(hub.to_string()),
            all: get("*all".into()),
            levels: m.levels.get(hub).copied().unwrap_or(LEVELS),
        })
    }

    async fn adapt_levels(&self, hub: &str, missed: [bool; 3]) -> Result<[f64; 3], BackendError> {
        let mut m = self.lock();
        let l = m.levels.entry(hub.to_string()).or_insert(LEVELS);
        *l = adapt(*l, missed);
        Ok(*l)
    }
}
