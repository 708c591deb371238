//! Catalog domain (08-search-catalog §3–4, issue #14): products, a category tree, base and
//! per-hub prices with validity windows ([`model`]: the field rules every write passes, slugs,
//! the price in force), the repository port with every write versioned and sequenced for the
//! change feed ([`repo`]: memory adapter; [`pg`]: Postgres; one conformance suite), and a
//! generated bilingual grocery catalog ([`generate`]).

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
pub mod generate;
pub mod model;
pub mod pg;
pub mod repo;

pub use model::{effective_price, slug, Category, HubPrice, Invalid, Product, ProductInput};
pub use pg::PgCatalog;
pub use repo::{price_at, CatalogError, CatalogRepo, Change, MemoryCatalog, Write};
