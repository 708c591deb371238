//! Search domain (08-search-catalog §2, §6; issue #14): how text becomes terms ([`text`]: NFKC,
//! case and diacritics folded, quantities with units in base units, a bilingual synonym table),
//! the tantivy index with its fallback tiers and filters ([`index`]), prefix autocomplete
//! ([`autocomplete`]), the composite re-rank with its total order and paging ([`rank`]), and the
//! application layer the service and the twin both run ([`app`]: the feed follower's state,
//! snapshots, one search with stock).

pub mod app;
pub mod autocomplete;
pub mod index;
pub mod rank;
pub mod text;
