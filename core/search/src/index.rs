//! The search index (08 §6) on tantivy: every active product's name, brand, category, tags and
//! description as folded terms (`text::terms`, so units and diacritics match the query's
//! folding), BM25 per field with the spec's weights as boosts (name 3, category 2, brand 2,
//! tags 2, description 1), each query term matching its synonyms. Fallback tiers: 0 every term
//! (the last also as a prefix), 1 every term within its AUTO edit distance, 2 any term, 3 the
//! category, 4 the most popular. A search is two steps around the stock read the caller does:
//! [`Index::candidates`] (CPU only), then [`Index::finish`] with the quantities.

use std::collections::HashMap;
use std::sync::Arc;

use qc_catalog::{effective_price, Change, HubPrice};
use tantivy::collector::{Count, TopDocs};
use tantivy::query::{BooleanQuery, BoostQuery, FuzzyTermQuery, Occur, Query, TermQuery};
use tantivy::schema::{Field, IndexRecordOption, Schema, FAST, STORED, TEXT};
use tantivy::{doc, Searcher, Term};

use crate::rank::{page, rank, Candidate, Sort, Weights};
use crate::text::{alternatives, auto_distance, fold, query_terms, terms};

/// Candidates re-ranked per search at most (the best by relevance).
pub const MAX_CANDIDATES: usize = 2000;
/// The popular tier's size.
const POPULAR: usize = 20;

/// A product as search serves it.
#[derive(Debug, Clone, PartialEq)]
pub struct Doc {
    pub sku: String,
    pub name: String,
    pub description: String,
    pub category: String,
    pub brand: String,
    pub price: i64,
    pub margin_pct: f64,
    pub popularity: f64,
    pub tags: Vec<String>,
    pub image_url: String,
    pub hub_prices: Vec<HubPrice>,
}

impl Doc {
    pub fn from_change(c: &Change) -> Self {
        let p = &c.product;
        Self {
            sku: p.sku.clone(),
            name: p.name.clone(),
            description: p.description.clone(),
            category: p.category.clone(),
            brand: p.brand.clone(),
            price: p.price,
            margin_pct: p.margin_pct,
            popularity: p.popularity_score,
            tags: p.tags.clone(),
            image_url: p.image_url.clone(),
            hub_prices: c.hub_prices.clone(),
        }
    }

    /// A product as a catalog write has it (no hub prices yet).
    pub fn from_input(p: qc_catalog::ProductInput) -> Self {
        Self {
            sku: p.sku,
            name: p.name,
            description: p.description,
            category: p.category,
            brand: p.brand,
            price: p.price,
            margin_pct: p.margin_pct,
            popularity: p.popularity_score,
            tags: p.tags,
            image_url: p.image_url,
            hub_prices: Vec::new(),
        }
    }

    /// The price at `hub` (the base without one) at `now_ms`.
    pub fn price_at(&self, hub: Option<&str>, now_ms: i64) -> i64 {
        match hub {
            None => self.price,
            Some(h) => {
                let rows: Vec<HubPrice> = self
                    .hub_prices
                    .iter()
                    .filter(|r| r.hub_id == h)
                    .cloned()
                    .collect();
                effective_price(self.price, &rows, now_ms).0
            }
        }
    }
}

/// A search as 08 §2 takes it (already parsed; `q` raw).
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub q: String,
    pub hub: Option<String>,
    pub category: Option<String>,
    pub min_price: Option<i64>,
    pub max_price: Option<i64>,
    pub sort: Sort,
    pub page: i64,
    pub page_size: i64,
}

impl Request {
    /// Query `q` with 08 §2's defaults: no hub, no filters, relevance, page 1 of 20.
    pub fn new(q: &str) -> Self {
        Self {
            q: q.to_string(),
            hub: None,
            category: None,
            min_price: None,
            max_price: None,
            sort: Sort::Relevance,
            page: 1,
            page_size: 20,
        }
    }
}

/// The matches of a search before stock: documents with their raw relevance, and the tier.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidates {
    pub tier: u8,
    pub hits: Vec<(usize, f64)>,
}

/// One result.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    pub doc: Arc<Doc>,
    pub price: i64,
    pub score: f64,
    pub stock_qty: Option<i64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Results {
    pub hits: Vec<Hit>,
    pub total: usize,
    pub page: usize,
    pub page_size: usize,
    pub tier: u8,
}

struct Fields {
    name: Field,
    brand: Field,
    category: Field,
    tags: Field,
    description: Field,
    ix: Field,
}

/// An immutable snapshot: rebuilt from the catalog and swapped in whole.
pub struct Index {
    docs: Vec<Arc<Doc>>,
    searcher: Searcher,
    f: Fields,
    /// Doc indices by popularity desc, then sku.
    popular: Vec<usize>,
}

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Index")
            .field("docs", &self.docs.len())
            .finish()
    }
}

fn folded(s: &str) -> String {
    terms(s).join(" ")
}

fn err(e: tantivy::TantivyError) -> String {
    e.to_string()
}

impl Index {
    /// Indexes `docs` (active products only).
    pub fn build(docs: Vec<Doc>) -> Result<Self, String> {
        let mut sb = Schema::builder();
        let f = Fields {
            name: sb.add_text_field("name", TEXT),
            brand: sb.add_text_field("brand", TEXT),
            category: sb.add_text_field("category", TEXT),
            tags: sb.add_text_field("tags", TEXT),
            description: sb.add_text_field("description", TEXT),
            ix: sb.add_u64_field("ix", FAST | STORED),
        };
        let index = tantivy::Index::create_in_ram(sb.build());
        let mut w: tantivy::IndexWriter =
            index.writer_with_num_threads(1, 50_000_000).map_err(err)?;
        for (i, d) in docs.iter().enumerate() {
            w.add_document(doc!(
                f.name => folded(&d.name),
                f.brand => folded(&d.brand),
                f.category => folded(&d.category),
                f.tags => folded(&d.tags.join(" . ")),
                f.description => folded(&d.description),
                f.ix => i as u64,
            ))
            .map_err(err)?;
        }
        w.commit().map_err(err)?;
        let reader = index.reader().map_err(err)?;
        let mut popular: Vec<usize> = (0..docs.len()).collect();
        popular.sort_by(|a, b| {
            docs[*b]
                .popularity
                .total_cmp(&docs[*a].popularity)
                .then_with(|| docs[*a].sku.cmp(&docs[*b].sku))
        });
        Ok(Self {
            docs: docs.into_iter().map(Arc::new).collect(),
            searcher: reader.searcher(),
            f,
            popular,
        })
    }

    pub fn len(&self) -> usize {
        self.docs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.docs.is_empty()
    }

    pub fn docs(&self) -> &[Arc<Doc>] {
        &self.docs
    }

    fn boosted(&self) -> [(Field, f32); 5] {
        [
            (self.f.name, 3.0),
            (self.f.category, 2.0),
            (self.f.brand, 2.0),
            (self.f.tags, 2.0),
            (self.f.description, 1.0),
        ]
    }

    /// One query term in every field, with its synonyms; `mode` 0 exact, 1 exact or as a prefix,
    /// 2 exact or within the AUTO distance.
    fn term_query(&self, term: &str, mode: u8) -> Box<dyn Query> {
        let mut any: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        for alt in alternatives(term) {
            for (field, boost) in self.boosted() {
                let t = Term::from_field_text(field, alt);
                let q: Box<dyn Query> = match mode {
                    1 if alt.chars().count() >= 3 => {
                        Box::new(FuzzyTermQuery::new_prefix(t.clone(), 0, true))
                    }
                    2 if auto_distance(alt) > 0 => {
                        Box::new(FuzzyTermQuery::new(t.clone(), auto_distance(alt), true))
                    }
                    _ => Box::new(TermQuery::new(t, IndexRecordOption::WithFreqs)),
                };
                any.push((Occur::Should, Box::new(BoostQuery::new(q, boost))));
            }
        }
        Box::new(BooleanQuery::new(any))
    }

    fn run(&self, q: &dyn Query) -> Result<Vec<(usize, f64)>, String> {
        let (top, _count) = self
            .searcher
            .search(
                q,
                &(TopDocs::with_limit(MAX_CANDIDATES).order_by_score(), Count),
            )
            .map_err(err)?;
        // One column reader per segment, not per hit.
        let mut columns: HashMap<u32, tantivy::columnar::Column<u64>> = HashMap::new();
        let mut out = Vec::with_capacity(top.len());
        for (score, addr) in top {
            let col = match columns.entry(addr.segment_ord) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(v) => v.insert(
                    self.searcher
                        .segment_reader(addr.segment_ord)
                        .fast_fields()
                        .u64("ix")
                        .map_err(err)?,
                ),
            };
            let ix = col
                .first(addr.doc_id)
                .ok_or_else(|| "a document without its index".to_string())?;
            out.push((ix as usize, f64::from(score)));
        }
        Ok(out)
    }

    fn keep(&self, i: usize, req: &Request, now_ms: i64) -> bool {
        let d = &self.docs[i];
        let price = d.price_at(req.hub.as_deref(), now_ms);
        req.category
            .as_ref()
            .is_none_or(|c| fold(c) == fold(&d.category))
            && req.min_price.is_none_or(|m| price >= m)
            && req.max_price.is_none_or(|m| price <= m)
    }

    /// The tier that finds something, and its matches after the filters.
    pub fn candidates(&self, req: &Request, now_ms: i64) -> Result<Candidates, String> {
        let words = query_terms(&req.q);
        let filtered = |hits: Vec<(usize, f64)>| -> Vec<(usize, f64)> {
            hits.into_iter()
                .filter(|(i, _)| self.keep(*i, req, now_ms))
                .collect()
        };
        if words.is_empty() {
            // Empty q: nothing, or the whole category (raw 1).
            let hits = match &req.category {
                None => Vec::new(),
                Some(_) => filtered((0..self.docs.len()).map(|i| (i, 1.0)).collect()),
            };
            return Ok(Candidates { tier: 0, hits });
        }
        let last = words.len() - 1;
        let all = |mode_of: &dyn Fn(usize) -> u8| -> Box<dyn Query> {
            Box::new(BooleanQuery::new(
                words
                    .iter()
                    .enumerate()
                    .map(|(i, w)| (Occur::Must, self.term_query(w, mode_of(i))))
                    .collect(),
            ))
        };
        let tier0 = filtered(self.run(&*all(&|i| u8::from(i == last)))?);
        if !tier0.is_empty() {
            return Ok(Candidates {
                tier: 0,
                hits: tier0,
            });
        }
        let tier1 = filtered(self.run(&*all(&|_| 2))?);
        if !tier1.is_empty() {
            return Ok(Candidates {
                tier: 1,
                hits: tier1,
            });
        }
        if words.len() >= 2 {
            let any: Box<dyn Query> = Box::new(BooleanQuery::new(
                words
                    .iter()
                    .map(|w| (Occur::Should, self.term_query(w, 2)))
                    .collect(),
            ));
            let tier2 = filtered(self.run(&*any)?);
            if !tier2.is_empty() {
                return Ok(Candidates {
                    tier: 2,
                    hits: tier2,
                });
            }
        }
        if req.category.is_some() {
            let tier3 = filtered((0..self.docs.len()).map(|i| (i, 1.0)).collect());
            if !tier3.is_empty() {
                return Ok(Candidates {
                    tier: 3,
                    hits: tier3,
                });
            }
        }
        Ok(Candidates {
            tier: 4,
            hits: self
                .popular
                .iter()
                .take(POPULAR)
                .map(|i| (*i, self.docs[*i].popularity))
                .collect(),
        })
    }

    /// Ranks the candidates with their stock (`qty[i]` for `c.hits[i]`; None without a hub or
    /// when stock could not be read) and cuts the page.
    pub fn finish(
        &self,
        c: &Candidates,
        qty: Option<&[i64]>,
        req: &Request,
        w: &Weights,
        now_ms: i64,
    ) -> Results {
        let prices: Vec<i64> = c
            .hits
            .iter()
            .map(|(i, _)| self.docs[*i].price_at(req.hub.as_deref(), now_ms))
            .collect();
        let cands: Vec<Candidate<'_>> = c
            .hits
            .iter()
            .enumerate()
            .map(|(k, (i, raw))| {
                let d = &self.docs[*i];
                Candidate {
                    sku: &d.sku,
                    name: &d.name,
                    raw: *raw,
                    margin_pct: d.margin_pct,
                    popularity: d.popularity,
                    price: prices[k],
                    qty: qty.and_then(|q| q.get(k).copied()),
                }
            })
            .collect();
        let ranked = rank(&cands, w, req.sort, req.hub.is_some() && qty.is_some());
        let (page_no, size, range) = page(ranked.len(), req.page, req.page_size);
        let hits = ranked[range]
            .iter()
            .map(|r| Hit {
                doc: self.docs[c.hits[r.index].0].clone(),
                price: prices[r.index],
                score: (r.score * 1e6).round() / 1e6,
                stock_qty: cands[r.index].qty,
            })
            .collect();
        Results {
            hits,
            total: ranked.len(),
            page: page_no,
            page_size: size,
            tier: c.tier,
        }
    }

    /// Skus of the candidates, for the stock read.
    pub fn skus<'a>(&'a self, c: &Candidates) -> Vec<&'a str> {
        c.hits
            .iter()
            .map(|(i, _)| self.docs[*i].sku.as_str())
            .collect()
    }
}

/// An index over stock given as a map (tests, the twin without live stock).
pub fn qty_of(skus: &[&str], stock: &HashMap<String, i64>) -> Vec<i64> {
    skus.iter()
        .map(|s| stock.get(*s).copied().unwrap_or(0))
        .collect()
}
