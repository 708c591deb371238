//! The index over a generated Jakarta catalog: both languages, units, typos, prefixes, stock,
//! filters and the fallback tiers.

use std::collections::HashMap;

use qc_catalog::generate::catalog;
use qc_search::index::{qty_of, Doc, Index, Request};
use qc_search::rank::{Sort, Weights};

const NOW: i64 = 1_800_000_000_000;

fn index() -> Index {
    let docs = catalog(3000, 7)
        .iter()
        .map(|g| Doc::from_input(g.input()))
        .collect();
    Index::build(docs).unwrap()
}

fn req(q: &str) -> Request {
    Request {
        q: q.into(),
        hub: None,
        category: None,
        min_price: None,
        max_price: None,
        sort: Sort::Relevance,
        page: 1,
        page_size: 10,
    }
}

fn names(ix: &Index, r: &Request) -> (u8, Vec<String>, usize) {
    let c = ix.candidates(r, NOW).unwrap();
    let res = ix.finish(&c, None, r, &Weights::default(), NOW);
    (
        res.tier,
        res.hits.iter().map(|h| h.doc.name.clone()).collect(),
        res.total,
    )
}

#[test]
fn both_languages_units_typos_and_prefixes_find_the_product() {
    let ix = index();
    for (q, want, tier) in [
        ("susu", "Susu", 0),
        ("milk", "Susu", 0),
        ("susu uht 1l", "Susu UHT", 0),
        ("milk 1 liter", "Susu UHT", 0),
        ("telur ayam", "Telur Ayam", 0),
        ("eggs", "Telur", 0),
        ("tel", "Telur", 0),
        ("indomei goreng", "Indomie", 1),
        ("chiken", "Ayam", 1),
        ("beras 5kg", "Beras", 0),
    ] {
        let (t, got, _) = names(&ix, &req(q));
        assert_eq!(t, tier, "{q}: {got:?}");
        assert!(
            got.iter().take(3).all(|n| n.contains(want)),
            "{q}: top results {got:?} should all contain {want}"
        );
    }
    let (_, got, _) = names(&ix, &req("susu uht 1l"));
    assert!(got[0].ends_with("1 L"), "the litre pack first: {got:?}");
}

#[test]
fn stock_filters_and_the_fallback_tiers() {
    let ix = index();
    let mut r = req("susu");
    r.hub = Some("jkt-01".into());
    let c = ix.candidates(&r, NOW).unwrap();
    let skus = ix.skus(&c);
    // Only one milk in stock: it comes first whatever its relevance.
    let stock: HashMap<String, i64> = [(skus[skus.len() - 1].to_string(), 7)].into();
    let qty = qty_of(&skus, &stock);
    let res = ix.finish(&c, Some(&qty), &r, &Weights::default(), NOW);
    assert_eq!(res.hits[0].doc.sku, skus[skus.len() - 1]);
    assert_eq!(res.hits[0].stock_qty, Some(7));
    assert_eq!(res.hits[1].stock_qty, Some(0));

    let mut r = req("susu");
    r.max_price = Some(10_000);
    let c = ix.candidates(&r, NOW).unwrap();
    let res = ix.finish(&c, None, &r, &Weights::default(), NOW);
    assert!(res.total > 0 && res.hits.iter().all(|h| h.price <= 10_000));
    let mut r = req("");
    r.category = Some("telur".into());
    let (tier, got, total) = names(&ix, &r);
    assert!(
        tier == 0 && total > 0 && got.iter().all(|n| n.contains("Telur")),
        "{got:?}"
    );
    let (tier, _, total) = names(&ix, &req(""));
    assert_eq!((tier, total), (0, 0), "an empty query finds nothing");
    let (tier, got, total) = names(&ix, &req("qwxzyv plmokn"));
    assert_eq!((tier, total), (4, 20), "the popular tier: {got:?}");
    let (tier, got, _) = names(&ix, &req("susu qwxzyv"));
    assert_eq!(tier, 2, "any term: {got:?}");
    // Pages are stable and the total is counted before paging.
    let mut r = req("susu");
    let (_, p1, total) = names(&ix, &r);
    r.page = 2;
    let (_, p2, total2) = names(&ix, &r);
    assert_eq!(total, total2);
    assert!(p1.iter().all(|n| !p2.contains(n)));
}
