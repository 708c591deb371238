//! Shoppers who search (issue #14). The twin's catalog is the generated assortment
//! (`qc_catalog::generate::assortment`), written through the catalog core and indexed by the
//! search core's own follower and snapshot (`qc_search::app`), exactly as the Search service
//! builds its index from Catalog's feed. Every search runs `qc_search::app::search` with the
//! shopper's hub, so stock comes from the twin's inventory store (Redis in live mode).
//!
//! What is the world's and not production code lives here: what a shopper types for the
//! product they want (its Indonesian name, its English words, a prefix, a typo, sometimes the
//! size), and what they do with the answer.

use std::collections::HashMap;

use qc_catalog::generate::Generated;
use qc_catalog::{CatalogRepo, MemoryCatalog, Write};
use qc_inventory::{HubId, StockStore};
use qc_search::app::{search, Followed, Snapshot};
use qc_search::index::Request;
use qc_search::rank::Weights;
use rand::Rng;
use reports::summary::SearchInfo;

use crate::backend::{Exec, Immediate};
use crate::rng::{Stream, Streams};
use crate::scenario::SearchSection;

/// Query kinds, in the scenario's mix order.
const KINDS: [&str; 4] = ["exact", "english", "prefix", "typo"];

/// What a shopper can type about one product.
#[derive(Debug, Clone)]
struct Words {
    /// The product name without its size, lower case ("ultra susu uht cokelat").
    name: String,
    /// Brand and English words ("ultra chocolate uht milk").
    english: String,
    /// The size as shoppers write it ("1l", "250ml"); empty when the name has none.
    size: String,
}

fn words_of(g: &Generated) -> Words {
    let p = g.input();
    let mut toks: Vec<String> = p.name.split_whitespace().map(str::to_lowercase).collect();
    // Drop a pack suffix ("isi 2"), then the size (an amount and its unit).
    if toks.len() >= 2 && toks[toks.len() - 2] == "isi" {
        toks.truncate(toks.len() - 2);
    }
    let mut size = String::new();
    if toks.len() >= 3 && toks[toks.len() - 2].chars().all(|c| c.is_ascii_digit()) {
        size = format!("{}{}", toks[toks.len() - 2], toks[toks.len() - 1]);
        toks.truncate(toks.len() - 2);
    }
    let english = p
        .description
        .split(',')
        .next()
        .unwrap_or_default()
        .to_lowercase();
    Words {
        name: toks.join(" "),
        english,
        size,
    }
}

/// One letter changed in the longest word of at least five letters: a neighbour swap, a
/// dropped letter or a doubled one.
fn typo(q: &str, r: &mut Stream) -> String {
    let mut words: Vec<Vec<char>> = q.split(' ').map(|w| w.chars().collect()).collect();
    let Some(i) = (0..words.len())
        .filter(|i| words[*i].len() >= 5)
        .max_by_key(|i| (words[*i].len(), std::cmp::Reverse(*i)))
    else {
        return q.to_string();
    };
    let w = &mut words[i];
    // Never the first letter: shoppers rarely get that wrong.
    let at = r.random_range(1..w.len() - 1);
    match r.random_range(0..3) {
        0 => w.swap(at, at + 1),
        1 => {
            w.remove(at);
        }
        _ => {
            let c = w[at];
            w.insert(at, c);
        }
    }
    words
        .iter()
        .map(|w| w.iter().collect::<String>())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The name as typed so far: the last word cut to its first three letters.
fn prefix(q: &str) -> String {
    match q.rsplit_once(' ') {
        Some((head, last)) if last.chars().count() > 3 => {
            format!("{head} {}", last.chars().take(3).collect::<String>())
        }
        None if q.chars().count() > 3 => q.chars().take(3).collect(),
        _ => q.to_string(),
    }
}

pub struct SearchTwin {
    cfg: SearchSection,
    snapshot: Snapshot,
    weights: Weights,
    words: Vec<Words>,
    sku_ix: HashMap<String, usize>,
    rng: Stream,
    info: SearchInfo,
}

impl SearchTwin {
    /// The twin's catalog: product `k` of the assortment is the world's sku `k` (its Zipf rank
    /// `k`), priced at `prices[k]`, written through the catalog core and indexed from its feed.
    pub fn new(
        cfg: &SearchSection,
        catalog: &[Generated],
        prices: &[i64],
        streams: &Streams,
    ) -> Self {
        // The memory catalog completes every call at once.
        let repo = MemoryCatalog::new();
        for (g, price) in catalog.iter().zip(prices) {
            let mut input = g.input();
            input.price = *price;
            Immediate
                .run("catalog.write", repo.write(&input, Write::Upsert, 0))
                .expect("the generated assortment is a valid catalog");
        }
        let mut followed = Followed::default();
        let changes = Immediate
            .run("catalog.changes", repo.changes(0, catalog.len().max(1)))
            .expect("the memory catalog's feed");
        followed.apply_changes(&changes);
        Self {
            cfg: cfg.clone(),
            snapshot: followed.snapshot().expect("the twin's index"),
            weights: Weights::default(),
            words: catalog.iter().map(words_of).collect(),
            sku_ix: catalog
                .iter()
                .enumerate()
                .map(|(i, g)| (g.sku.clone(), i))
                .collect(),
            rng: streams.stream("search"),
            info: SearchInfo::default(),
        }
    }

    /// Whether the next shopper searches.
    pub fn searches(&mut self) -> bool {
        self.rng.random::<f64>() < self.cfg.share
    }

    fn kind(&mut self) -> usize {
        let c = &self.cfg;
        let mix = [c.exact, c.english, c.prefix, c.typo];
        let mut pick = self.rng.random::<f64>() * mix.iter().sum::<f64>();
        for (i, w) in mix.iter().enumerate() {
            if pick < *w {
                return i;
            }
            pick -= w;
        }
        mix.iter().rposition(|w| *w > 0.0).unwrap_or(0)
    }

    fn query(&mut self, sku: usize, kind: usize) -> String {
        let w = &self.words[sku];
        let sized = |base: &str, r: &mut Stream, share: f64| {
            if !w.size.is_empty() && r.random::<f64>() < share {
                format!("{base} {}", w.size)
            } else {
                base.to_string()
            }
        };
        match kind {
            0 => sized(&w.name, &mut self.rng, self.cfg.with_size),
            1 => sized(&w.english, &mut self.rng, self.cfg.with_size),
            2 => prefix(&w.name),
            _ => typo(&w.name, &mut self.rng),
        }
    }

    /// A searching shopper fills the basket: one search per wanted item at `hub`; the item if
    /// the first page shows it in stock, else the first result in stock (a substitute), else
    /// nothing.
    pub fn shop<S: StockStore, X: Exec>(
        &mut self,
        exec: &mut X,
        store: &S,
        hub: &HubId,
        wanted: Vec<(usize, u32)>,
        now_ms: i64,
    ) -> Result<Vec<(usize, u32)>, String> {
        self.info.shoppers += 1;
        let mut basket: Vec<(usize, u32)> = Vec::with_capacity(wanted.len());
        for (sku, qty) in wanted {
            let kind = self.kind();
            let q = self.query(sku, kind);
            let req = Request {
                hub: Some(hub.to_string()),
                page_size: i64::from(self.cfg.page_size),
                ..Request::new(&q)
            };
            let found = exec.run(
                "search",
                search(&self.snapshot.index, &req, store, &self.weights, now_ms),
            )?;
            let hits = &found.results.hits;
            let matched = found.results.tier < 4 && !hits.is_empty();
            let rank = hits
                .iter()
                .position(|h| self.sku_ix.get(&h.doc.sku) == Some(&sku))
                .map(|p| p + 1);
            self.info.all.count(matched, rank);
            self.info
                .by_kind
                .entry(KINDS[kind].to_string())
                .or_default()
                .count(matched, rank);
            // The wanted product if it is shown in stock; else the first result in stock.
            let in_stock = |i: usize| hits[i].stock_qty.is_some_and(|q| q > 0);
            let take = match rank {
                Some(r) if in_stock(r - 1) => Some(sku),
                _ if matched => (0..hits.len())
                    .find(|i| in_stock(*i))
                    .and_then(|i| self.sku_ix.get(&hits[i].doc.sku).copied()),
                _ => None,
            };
            match take {
                Some(s) if basket.iter().all(|(b, _)| *b != s) => {
                    self.info.substituted += u64::from(s != sku);
                    basket.push((s, qty));
                }
                _ => self.info.dropped += 1,
            }
        }
        self.info.shoppers_left += u64::from(basket.is_empty());
        Ok(basket)
    }

    pub fn summarise(&self) -> SearchInfo {
        let mut info = self.info.clone();
        info.all.finish();
        for row in info.by_kind.values_mut() {
            row.finish();
        }
        info
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use qc_catalog::generate::assortment;
    use rand::SeedableRng;

    #[test]
    fn shoppers_type_names_prefixes_and_typos() {
        let g = assortment(400, 1);
        let milk = g
            .iter()
            .map(words_of)
            .find(|w| w.name.contains("susu uht") && w.size == "1l")
            .expect("a litre of milk");
        assert!(!milk.name.ends_with(" l"), "{}", milk.name);
        assert!(milk.english.contains("milk"), "{}", milk.english);
        assert_eq!(prefix("ultra susu uht cokelat"), "ultra susu uht cok");
        assert_eq!(prefix("kopi"), "kop");
        assert_eq!(prefix("teh"), "teh");
        let mut r = Stream::seed_from_u64(3);
        for _ in 0..50 {
            let t = typo("ultra susu cokelat", &mut r);
            assert_ne!(t, "ultra susu cokelat");
            assert!(t.starts_with("ultra susu c"), "{t}");
            let d = t.len() as i64 - "ultra susu cokelat".len() as i64;
            assert!(d.abs() <= 1, "{t}");
        }
        assert_eq!(typo("teh susu", &mut r), "teh susu");
    }
}
