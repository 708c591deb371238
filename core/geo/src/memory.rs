//! In-process adapter of [`HubStore`] with the same index, cache and version rules as Redis.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use qc_kit::redis_kit::BackendError;

use crate::registry::index_cells;
use crate::store::{CellLookup, HubStore};
use crate::{Hub, Resolution};

#[derive(Debug, Default)]
struct State {
    /// id → (hub, creation order key).
    hubs: BTreeMap<String, (Hub, (i64, u64))>,
    next_seq: u64,
    cell_hubs: BTreeMap<String, BTreeSet<String>>,
    hub_cells: BTreeMap<String, BTreeSet<String>>,
    cache: BTreeMap<String, String>,
    version: i64,
    ready: bool,
}

impl State {
    fn reindex(&mut self, hub: &Hub, res: Resolution) -> usize {
        let new = index_cells(hub, res);
        let old = self.hub_cells.remove(&hub.id).unwrap_or_default();
        for c in old.union(&new) {
            self.cache.remove(c);
        }
        for c in old.difference(&new) {
            if let Some(s) = self.cell_hubs.get_mut(c) {
                s.remove(&hub.id);
            }
        }
        for c in &new {
            self.cell_hubs
                .entry(c.clone())
                .or_default()
                .insert(hub.id.clone());
        }
        let n = new.len();
        self.hub_cells.insert(hub.id.clone(), new);
        n
    }
}

#[derive(Debug, Default)]
pub struct MemoryHubs {
    s: Mutex<State>,
}

impl MemoryHubs {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.s.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Forgets the index and cache, as a Redis restart without persistence would.
    pub fn lose_index(&self) {
        let mut s = self.lock();
        s.cell_hubs.clear();
        s.hub_cells.clear();
        s.cache.clear();
        s.ready = false;
        s.version = 0;
    }
}

impl HubStore for MemoryHubs {
    async fn put_hub(
        &self,
        hub: &Hub,
        res: Resolution,
        now_ms: i64,
    ) -> Result<(bool, usize), BackendError> {
        let mut s = self.lock();
        let created = !s.hubs.contains_key(&hub.id);
        let order = match s.hubs.get(&hub.id) {
            Some((_, order)) => *order,
            None => {
                s.next_seq += 1;
                (now_ms, s.next_seq)
            }
        };
        s.hubs.insert(hub.id.clone(), (hub.clone(), order));
        let cells = s.reindex(hub, res);
        s.version += 1;
        Ok((created, cells))
    }

    async fn hubs(&self) -> Result<Vec<Hub>, BackendError> {
        let s = self.lock();
        let mut v: Vec<&(Hub, (i64, u64))> = s.hubs.values().collect();
        v.sort_by(|a, b| a.1 .0.cmp(&b.1 .0).then(a.0.id.cmp(&b.0.id)));
        Ok(v.into_iter().map(|(h, _)| h.clone()).collect())
    }

    async fn version(&self) -> Result<i64, BackendError> {
        Ok(self.lock().version)
    }

    async fn lookup(&self, cell: &str) -> Result<CellLookup, BackendError> {
        let s = self.lock();
        Ok(CellLookup {
            cached: s.cache.get(cell).cloned(),
            ready: s.ready,
            candidates: s
                .cell_hubs
                .get(cell)
                .map(|c| c.iter().cloned().collect())
                .unwrap_or_default(),
        })
    }

    async fn cache_winner(
        &self,
        cell: &str,
        snapshot_version: i64,
        hub_id: &str,
        _now_ms: i64,
    ) -> Result<bool, BackendError> {
        let mut s = self.lock();
        if s.version != snapshot_version {
            return Ok(false);
        }
        s.cache.insert(cell.to_string(), hub_id.to_string());
        Ok(true)
    }

    async fn bootstrap(&self, res: Resolution) -> Result<bool, BackendError> {
        let mut s = self.lock();
        if s.ready {
            return Ok(false);
        }
        let hubs: Vec<Hub> = s.hubs.values().map(|(h, _)| h.clone()).collect();
        for h in &hubs {
            s.reindex(h, res);
        }
        s.version += 1;
        s.ready = true;
        Ok(true)
    }
}
