//! The composite re-rank and the result order (08 §6 "Composite", "Order"), pure: candidates
//! with their raw relevance, margin, popularity and stock come in; the ordered list comes out.
//! The order is total, so pages never repeat or skip an item.

use std::cmp::Ordering;

/// `SEARCH_W_{RELEVANCE,STOCK,MARGIN,POPULARITY}`; they must sum to 1.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Weights {
    pub relevance: f64,
    pub stock: f64,
    pub margin: f64,
    pub popularity: f64,
}

impl Default for Weights {
    fn default() -> Self {
        Self {
            relevance: 0.40,
            stock: 0.25,
            margin: 0.20,
            popularity: 0.15,
        }
    }
}

impl Weights {
    /// The weights if each is within 0..=1 and they sum to 1 (±1e-9), else why not.
    pub fn checked(self) -> Result<Self, String> {
        let all = [self.relevance, self.stock, self.margin, self.popularity];
        if all.iter().any(|w| !(0.0..=1.0).contains(w)) {
            return Err("each weight must be within 0..=1".into());
        }
        let sum: f64 = all.iter().sum();
        if (sum - 1.0).abs() > 1e-9 {
            return Err(format!("the weights sum to {sum}, not 1"));
        }
        Ok(self)
    }
}

/// The stock term: 0 for no stock or unknown; else min(1, log10(qty + 1) / 2).
pub fn stock_term(qty: Option<i64>) -> f64 {
    match qty {
        Some(q) if q > 0 => ((q as f64 + 1.0).log10() / 2.0).min(1.0),
        _ => 0.0,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sort {
    Relevance,
    PriceAsc,
    PriceDesc,
    Popularity,
}

impl Sort {
    /// Anything else is relevance (08 §2).
    pub fn parse(s: Option<&str>) -> Self {
        match s {
            Some("price_asc") => Sort::PriceAsc,
            Some("price_desc") => Sort::PriceDesc,
            Some("popularity") => Sort::Popularity,
            _ => Sort::Relevance,
        }
    }
}

/// One candidate as ranking sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate<'a> {
    pub sku: &'a str,
    pub name: &'a str,
    /// Raw relevance (> 0 for a match).
    pub raw: f64,
    pub margin_pct: f64,
    pub popularity: f64,
    /// The effective price (the hub's when scoped).
    pub price: i64,
    /// Units available at the hub: None without a hub or when stock could not be read.
    pub qty: Option<i64>,
}

/// A candidate's place: its index in the input and its composite score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ranked {
    pub index: usize,
    pub score: f64,
}

/// Scores every candidate over the set (rel = raw / max raw, margin = margin / max margin or
/// 0, pop clamped, the stock term) and orders them: in stock first when `hub_scoped`, then by
/// `sort` (relevance: score desc, name asc, sku asc; the others: their key, then score desc,
/// then sku).
pub fn rank(cands: &[Candidate<'_>], w: &Weights, sort: Sort, hub_scoped: bool) -> Vec<Ranked> {
    let max_raw = cands.iter().map(|c| c.raw).fold(0.0, f64::max);
    let max_margin = cands.iter().map(|c| c.margin_pct).fold(0.0, f64::max);
    let mut out: Vec<Ranked> = cands
        .iter()
        .enumerate()
        .map(|(index, c)| {
            let rel = if max_raw > 0.0 { c.raw / max_raw } else { 0.0 };
            let margin = if max_margin > 0.0 {
                c.margin_pct / max_margin
            } else {
                0.0
            };
            let score = w.relevance * rel
                + w.stock * stock_term(c.qty)
                + w.margin * margin
                + w.popularity * c.popularity.clamp(0.0, 1.0);
            Ranked { index, score }
        })
        .collect();
    let in_stock = |r: &Ranked| hub_scoped && cands[r.index].qty.is_some_and(|q| q > 0);
    out.sort_by(|a, b| {
        let (ca, cb) = (&cands[a.index], &cands[b.index]);
        let by_score = || b.score.total_cmp(&a.score);
        in_stock(b)
            .cmp(&in_stock(a))
            .then_with(|| match sort {
                Sort::Relevance => by_score()
                    .then_with(|| ca.name.cmp(cb.name))
                    .then_with(|| ca.sku.cmp(cb.sku)),
                Sort::PriceAsc => ca
                    .price
                    .cmp(&cb.price)
                    .then_with(by_score)
                    .then_with(|| ca.sku.cmp(cb.sku)),
                Sort::PriceDesc => cb
                    .price
                    .cmp(&ca.price)
                    .then_with(by_score)
                    .then_with(|| ca.sku.cmp(cb.sku)),
                Sort::Popularity => cb
                    .popularity
                    .total_cmp(&ca.popularity)
                    .then_with(by_score)
                    .then_with(|| ca.sku.cmp(cb.sku)),
            })
            .then(Ordering::Equal)
    });
    out
}

/// 08 §2's paging: page < 1 → 1; size < 1 → 20, > 100 → 100. Returns (page, size, range of
/// the ordered list); a page past the end is an empty range.
pub fn page(total: usize, page: i64, size: i64) -> (usize, usize, std::ops::Range<usize>) {
    let page = page.max(1) as usize;
    let size = match size {
        s if s < 1 => 20,
        s => s.min(100) as usize,
    };
    let start = (page - 1).saturating_mul(size).min(total);
    (page, size, start..(start + size).min(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c<'a>(sku: &'a str, raw: f64, qty: Option<i64>, price: i64, pop: f64) -> Candidate<'a> {
        Candidate {
            sku,
            name: sku,
            raw,
            margin_pct: 10.0,
            popularity: pop,
            price,
            qty,
        }
    }

    #[test]
    fn the_stock_term_follows_the_spec_table() {
        for (q, want) in [
            (1, 0.1505),
            (5, 0.3891),
            (9, 0.5),
            (10, 0.5207),
            (50, 0.8538),
            (99, 1.0),
            (5000, 1.0),
        ] {
            assert!((stock_term(Some(q)) - want).abs() < 1e-4, "{q}");
        }
        assert_eq!(
            (stock_term(Some(0)), stock_term(Some(-3)), stock_term(None)),
            (0.0, 0.0, 0.0)
        );
    }

    #[test]
    fn weights_must_sum_to_one() {
        assert!(Weights::default().checked().is_ok());
        let w = Weights {
            relevance: 0.5,
            ..Weights::default()
        };
        assert!(w.checked().unwrap_err().contains("sum"));
        let w = Weights {
            relevance: -0.1,
            stock: 0.75,
            ..Weights::default()
        };
        assert!(w.checked().is_err());
    }

    #[test]
    fn in_stock_first_then_score_then_name_and_sku() {
        let cands = [
            c("a", 1.0, Some(0), 100, 0.0),
            c("b", 0.2, Some(3), 100, 0.0),
            c("c", 0.9, Some(50), 100, 0.0),
            c("d", 0.9, Some(50), 100, 0.0),
        ];
        let order: Vec<&str> = rank(&cands, &Weights::default(), Sort::Relevance, true)
            .iter()
            .map(|r| cands[r.index].sku)
            .collect();
        assert_eq!(
            order,
            ["c", "d", "b", "a"],
            "the best match out of stock comes last"
        );
        // Without a hub, stock is unknown and relevance leads.
        let cands = [c("a", 1.0, None, 100, 0.0), c("b", 0.2, None, 100, 0.0)];
        let order: Vec<&str> = rank(&cands, &Weights::default(), Sort::Relevance, false)
            .iter()
            .map(|r| cands[r.index].sku)
            .collect();
        assert_eq!(order, ["a", "b"]);
    }

    #[test]
    fn a_sort_applies_inside_each_stock_group_with_total_ties() {
        let cands = [
            c("x", 1.0, Some(5), 300, 0.1),
            c("y", 1.0, Some(5), 100, 0.9),
            c("z", 1.0, Some(0), 50, 1.0),
            c("w", 1.0, Some(5), 100, 0.9),
        ];
        let order = |s| -> Vec<&str> {
            rank(&cands, &Weights::default(), s, true)
                .iter()
                .map(|r| cands[r.index].sku)
                .collect()
        };
        assert_eq!(order(Sort::PriceAsc), ["w", "y", "x", "z"]);
        assert_eq!(order(Sort::PriceDesc), ["x", "w", "y", "z"]);
        assert_eq!(order(Sort::Popularity), ["w", "y", "x", "z"]);
        assert_eq!(Sort::parse(Some("cheapest")), Sort::Relevance);
    }

    #[test]
    fn pages_clamp_and_a_page_past_the_end_is_empty() {
        assert_eq!(page(45, 0, 0), (1, 20, 0..20));
        assert_eq!(page(45, 3, 20), (3, 20, 40..45));
        assert_eq!(page(45, 9, 500), (9, 100, 45..45));
        assert_eq!(page(45, i64::MAX, 100).2, 45..45);
    }
}
