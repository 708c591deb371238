//! Search's application layer (08 §2, §6): what the service and the twin both run. A
//! [`Followed`] view of Catalog's change feed, the [`Snapshot`] built from it (index and
//! autocomplete, swapped in whole), and [`search`]: the index's candidates, stock for them in
//! one read through Inventory's store port, the composite order and the page.

use std::collections::BTreeMap;

use qc_catalog::Change;
use qc_inventory::{HubId, Sku, StockStore};

use crate::autocomplete::{entries, Autocomplete};
use crate::index::{Doc, Index, Request, Results};
use crate::rank::Weights;

/// What a search reads: the index and the autocomplete of one build.
#[derive(Debug)]
pub struct Snapshot {
    pub index: Index,
    pub autocomplete: Autocomplete,
    /// The last feed seq this build includes.
    pub seq: i64,
}

impl Snapshot {
    /// Indexes `docs` (the active products) for the feed up to `seq`.
    pub fn build(docs: Vec<Doc>, seq: i64) -> Result<Self, String> {
        let mut autocomplete = Autocomplete::new();
        for d in &docs {
            autocomplete.add(&entries(&d.name, &d.brand, &d.tags));
        }
        autocomplete.refresh();
        Ok(Self {
            index: Index::build(docs)?,
            autocomplete,
            seq,
        })
    }
}

/// Every product the feed has shown (active or not) and the last seq read.
#[derive(Debug, Clone, Default)]
pub struct Followed {
    docs: BTreeMap<String, (Doc, bool)>,
    seq: i64,
}

impl Followed {
    /// The last feed seq applied.
    pub fn seq(&self) -> i64 {
        self.seq
    }

    /// Applies a page of the feed: each product's latest version and whether it is active.
    pub fn apply(&mut self, changes: impl IntoIterator<Item = (Doc, bool)>, last_seq: i64) {
        for (d, active) in changes {
            self.docs.insert(d.sku.clone(), (d, active));
        }
        self.seq = self.seq.max(last_seq);
    }

    /// Applies the catalog core's own changes (the twin reads them in process).
    pub fn apply_changes(&mut self, changes: &[Change]) {
        let last = changes.iter().map(|c| c.product.seq).max().unwrap_or(0);
        self.apply(
            changes
                .iter()
                .map(|c| (Doc::from_change(c), c.product.active)),
            last,
        );
    }

    /// The active products, in sku order.
    pub fn live(&self) -> Vec<Doc> {
        self.docs
            .values()
            .filter(|(_, active)| *active)
            .map(|(d, _)| d.clone())
            .collect()
    }

    /// A fresh build of the active products.
    pub fn snapshot(&self) -> Result<Snapshot, String> {
        Snapshot::build(self.live(), self.seq)
    }
}

/// A search's answer, and whether stock could not be read (then ranked without it).
#[derive(Debug, Clone, PartialEq)]
pub struct Searched {
    pub results: Results,
    pub stock_degraded: bool,
}

/// One search: candidates from the index, with a hub their available stock in one read of
/// `stock` (a failed read degrades to ranking without stock, 08 §6), then the composite order
/// and the requested page. An `Err` is the index failing.
pub async fn search<S: StockStore>(
    index: &Index,
    req: &Request,
    stock: &S,
    weights: &Weights,
    now_ms: i64,
) -> Result<Searched, String> {
    let c = index.candidates(req, now_ms)?;
    let hub = req.hub.as_deref().and_then(|h| HubId::parse(h).ok());
    let mut stock_degraded = false;
    let qty = match &hub {
        None => None,
        Some(h) => {
            // Catalog and Inventory share the id rule, so every sku parses.
            let skus: Result<Vec<Sku>, _> = index.skus(&c).into_iter().map(Sku::parse).collect();
            let read = match skus {
                Ok(skus) => stock.available(h, &skus).await,
                Err(e) => Err(e),
            };
            match read {
                Ok(v) => Some(v),
                Err(e) => {
                    tracing::warn!(error = %e, "search without stock");
                    stock_degraded = true;
                    None
                }
            }
        }
    };
    Ok(Searched {
        results: index.finish(&c, qty.as_deref(), req, weights, now_ms),
        stock_degraded,
    })
}
