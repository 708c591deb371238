//! Search domain (08-search-catalog §2, §6; issue #14), first part: how text becomes terms
//! ([`text`]: NFKC, case and diacritics folded, quantities with units in base units, a
//! bilingual synonym table), prefix autocomplete ([`autocomplete`]) and the composite re-rank
//! with its total order and paging ([`rank`]). The inverted index (tantivy), the fallback tiers
//! and the service come next.

pub mod autocomplete;
pub mod index;
pub mod rank;
pub mod text;
