//! Search domain (08-search-catalog §2, §6; issue #14), first part: how text becomes terms
//! ([`text`]: NFKC, case and diacritics folded, quantities with units in base units, a
//! bilingual synonym table) and prefix autocomplete ([`autocomplete`]). The inverted index
//! (tantivy), the composite ranking, the fallback tiers and the service come next.

pub mod autocomplete;
pub mod text;
