//! Prefix autocomplete (08 §6 "Autocomplete"): entries are the folded names, brands and tags
//! of active products; an entry's score is how many products contribute it; a prefix matches
//! the start of a whole entry ("blue" does not match "wireless bluetooth"); answers are score
//! desc, then text. Updates count entries up and down and drop them at zero, so a renamed or
//! deactivated product stops being suggested.
//!
//! Entries live in a sorted map (a prefix is one range); the top answers of every prefix of up
//! to four characters — the ranges that are large — are kept ready and refreshed after a
//! change, so no lookup walks much of the map.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::text::fold;

/// Answers kept ready per short prefix (the API's largest `limit`).
const READY: usize = 50;
/// Prefixes up to this many characters have their answers kept ready (longer ones cover few
/// entries).
const SHORT: usize = 4;

#[derive(Debug, Default, Clone)]
pub struct Autocomplete {
    counts: BTreeMap<String, u32>,
    ready: HashMap<String, Vec<(Arc<str>, u32)>>,
    stale: bool,
}

/// One product's entries: its name, brand and tags, folded; empty ones and anything over 200
/// characters skipped.
pub fn entries(name: &str, brand: &str, tags: &[String]) -> Vec<String> {
    let mut out: Vec<String> = std::iter::once(name)
        .chain(std::iter::once(brand))
        .chain(tags.iter().map(String::as_str))
        .map(|s| fold(s).split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|s| !s.is_empty() && s.chars().count() <= 200)
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

impl Autocomplete {
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts one product's entries in (`+1`) or out (`-1`).
    pub fn add(&mut self, entries: &[String]) {
        for e in entries {
            *self.counts.entry(e.clone()).or_default() += 1;
        }
        self.stale = true;
    }

    pub fn remove(&mut self, entries: &[String]) {
        for e in entries {
            if let Some(c) = self.counts.get_mut(e) {
                *c -= 1;
                if *c == 0 {
                    self.counts.remove(e);
                }
            }
        }
        self.stale = true;
    }

    /// Rebuilds the ready answers after changes (cheap to call when nothing changed).
    pub fn refresh(&mut self) {
        if !self.stale {
            return;
        }
        let mut by_prefix: HashMap<String, Vec<(Arc<str>, u32)>> = HashMap::new();
        for (text, n) in &self.counts {
            let shared: Arc<str> = Arc::from(text.as_str());
            for (i, c) in text.char_indices().take(SHORT) {
                let p = &text[..i + c.len_utf8()];
                by_prefix
                    .entry(p.to_string())
                    .or_default()
                    .push((shared.clone(), *n));
            }
        }
        self.ready = by_prefix
            .into_iter()
            .map(|(p, mut v)| {
                v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
                v.truncate(READY);
                v.shrink_to_fit();
                (p, v)
            })
            .collect();
        self.stale = false;
    }

    /// Up to `limit` entries starting with `prefix` (folded first); empty for an empty prefix.
    pub fn lookup(&self, prefix: &str, limit: usize) -> Vec<(String, u32)> {
        let p = fold(prefix)
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        if p.is_empty() || limit == 0 {
            return Vec::new();
        }
        if !self.stale && p.chars().count() <= SHORT {
            return self
                .ready
                .get(&p)
                .map(|v| {
                    v.iter()
                        .take(limit)
                        .map(|(t, n)| (t.to_string(), *n))
                        .collect()
                })
                .unwrap_or_default();
        }
        // A longer prefix covers fewer entries: one pass keeping the best `limit`, by
        // reference, cloning only the answers.
        let mut best: Vec<(&str, u32)> = Vec::with_capacity(limit + 1);
        for (t, n) in self.counts.range(p.clone()..) {
            if !t.starts_with(&p) {
                break;
            }
            if best.len() == limit && best[limit - 1].1 >= *n {
                continue;
            }
            let at = best.partition_point(|(bt, bn)| *bn > *n || (*bn == *n && *bt < t.as_str()));
            best.insert(at, (t, *n));
            best.truncate(limit);
        }
        best.into_iter().map(|(t, n)| (t.to_string(), n)).collect()
    }

    pub fn len(&self) -> usize {
        self.counts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The best `k` of a range by a full sort (what the ready lists and the one-pass scan
    /// must agree with).
    fn top(range: impl Iterator<Item = (String, u32)>, k: usize) -> Vec<(String, u32)> {
        let mut all: Vec<(String, u32)> = range.collect();
        all.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        all.truncate(k);
        all
    }

    fn ac(products: &[(&str, &str, &[&str])]) -> Autocomplete {
        let mut a = Autocomplete::new();
        for (n, b, t) in products {
            let tags: Vec<String> = t.iter().map(|s| s.to_string()).collect();
            a.add(&entries(n, b, &tags));
        }
        a.refresh();
        a
    }

    #[test]
    fn prefixes_of_whole_entries_ranked_by_how_many_products_share_them() {
        let a = ac(&[
            ("Ultra Susu UHT 1 L", "Ultra", &["susu", "milk"]),
            ("Ultra Susu UHT 250 ml", "Ultra", &["susu", "milk"]),
            ("Indomilk Susu Kental", "Indomilk", &["susu"]),
            ("Wireless Bluetooth Headphones", "", &[]),
        ]);
        assert_eq!(
            a.lookup("SU", 10),
            [("susu".to_string(), 3)],
            "the tag three products share"
        );
        let u: Vec<String> = a.lookup("ul", 10).into_iter().map(|e| e.0).collect();
        assert_eq!(u, ["ultra", "ultra susu uht 1 l", "ultra susu uht 250 ml"]);
        assert!(a.lookup("blue", 10).is_empty(), "only whole-entry prefixes");
        assert_eq!(a.lookup("wire", 10).len(), 1);
        assert_eq!(a.lookup("ultra s", 1).len(), 1, "limit");
        assert!(a.lookup("  ", 10).is_empty());
        assert_eq!(
            a.lookup("ÙLTRA", 10).len(),
            3,
            "the prefix is folded like the entries"
        );
    }

    #[test]
    fn a_removed_product_stops_being_suggested() {
        let mut a = ac(&[
            ("Roti Tawar", "Sari Roti", &["roti"]),
            ("Roti Gandum", "Sari Roti", &["roti"]),
        ]);
        assert_eq!(a.lookup("ro", 5)[0], ("roti".to_string(), 2));
        a.remove(&entries("Roti Tawar", "Sari Roti", &["roti".into()]));
        a.refresh();
        assert_eq!(
            a.lookup("ro", 5),
            [("roti".to_string(), 1), ("roti gandum".to_string(), 1)]
        );
        assert_eq!(a.lookup("sa", 5), [("sari roti".to_string(), 1)]);
        a.remove(&entries("Roti Gandum", "Sari Roti", &["roti".into()]));
        a.refresh();
        assert!(a.lookup("r", 5).is_empty() && a.lookup("sari", 5).is_empty() && a.is_empty());
    }

    #[test]
    fn short_prefixes_answer_from_the_ready_lists_the_same_as_a_scan() {
        let names: Vec<String> = (0..500).map(|i| format!("a{} item", i % 37)).collect();
        let mut a = Autocomplete::new();
        for n in &names {
            a.add(&entries(n, "", &[]));
        }
        let scanned = a.lookup("a1", 50); // stale: answered by a scan
        a.refresh();
        assert_eq!(a.lookup("a1", 50), scanned);
        assert_eq!(a.lookup("a", 7), top(a.counts.clone().into_iter(), 7));
    }
}
