//! The suite every [`CatalogRepo`] passes (memory in unit tests, Postgres in `tests/pg.rs`).

use serde_json::json;

use crate::model::{HubPrice, ProductInput};
use crate::repo::{price_at, CatalogError, CatalogRepo, Write};

const T0: i64 = 1_800_000_000_000;

fn input(sku: &str, body: serde_json::Value) -> ProductInput {
    ProductInput::parse(&body, sku).expect("a valid body")
}

pub async fn catalog_conforms(repo: impl CatalogRepo) {
    // Create, then a duplicate create is refused; the category is created by name.
    let milk = input(
        "milk-1l",
        json!({"name": "Susu UHT Full Cream 1L", "category": "Susu & Olahan", "brand": "Ultra",
               "price": 18500, "margin_pct": 12.5, "popularity_score": 0.8, "tags": ["susu", "milk"]}),
    );
    let (p, created) = repo.write(&milk, Write::Create, T0).await.unwrap();
    assert!(created);
    assert_eq!(
        (
            p.version,
            p.category.as_str(),
            p.category_id.as_str(),
            p.margin_pct
        ),
        (1, "Susu & Olahan", "susu-olahan", 12.5)
    );
    assert_eq!((p.created_at_ms, p.updated_at_ms), (T0, T0));
    assert!(matches!(
        repo.write(&milk, Write::Create, T0).await,
        Err(CatalogError::Exists(_))
    ));
    assert_eq!(repo.get("milk-1l").await.unwrap().as_ref(), Some(&p));
    assert_eq!(repo.get("nope").await.unwrap(), None);

    // An upsert of an existing sku: version and seq move, created_at stays.
    let mut cheaper = milk.clone();
    cheaper.price = 17_900;
    let (p2, created) = repo.write(&cheaper, Write::Upsert, T0 + 1).await.unwrap();
    assert!(!created);
    assert_eq!(
        (p2.version, p2.price, p2.created_at_ms, p2.updated_at_ms),
        (2, 17_900, T0, T0 + 1)
    );
    assert!(p2.seq > p.seq);

    // A patch checked against the version read.
    assert!(matches!(
        repo.patch("milk-1l", &json!({"price": 1}), Some(1), T0 + 2)
            .await,
        Err(CatalogError::VersionConflict { current: 2 })
    ));
    assert_eq!(
        repo.get("milk-1l").await.unwrap().unwrap().price,
        17_900,
        "unchanged"
    );
    let p3 = repo
        .patch(
            "milk-1l",
            &json!({"brand": null, "tags": ["susu"]}),
            Some(2),
            T0 + 2,
        )
        .await
        .unwrap();
    assert_eq!(
        (p3.version, p3.brand.as_str(), p3.tags.clone(), p3.price),
        (3, "", vec!["susu".to_string()], 17_900)
    );
    assert!(matches!(
        repo.patch("nope", &json!({}), None, T0).await,
        Err(CatalogError::NotFound(_))
    ));
    assert!(matches!(
        repo.patch("milk-1l", &json!({"price": -5}), None, T0).await,
        Err(CatalogError::Invalid(_))
    ));

    // Categories: listed, created, refused when they exist or their parent does not.
    let eggs = input(
        "egg-10",
        json!({"name": "Telur Ayam 10 butir", "category": "Telur", "price": 28000}),
    );
    repo.write(&eggs, Write::Upsert, T0 + 3).await.unwrap();
    let cats: Vec<String> = repo
        .categories()
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(cats, ["susu-olahan", "telur"]);
    let sub = repo
        .create_category("Telur Omega", Some("telur"), T0)
        .await
        .unwrap();
    assert_eq!(
        (sub.id.as_str(), sub.parent_id.as_deref()),
        ("telur-omega", Some("telur"))
    );
    assert!(matches!(
        repo.create_category("TELUR", None, T0).await,
        Err(CatalogError::CategoryExists(_))
    ));
    assert!(matches!(
        repo.create_category("Roti", Some("nope"), T0).await,
        Err(CatalogError::Invalid(_))
    ));

    // Soft deactivation, and the list's filters and pages.
    let off = repo
        .patch("egg-10", &json!({"active": false}), None, T0 + 4)
        .await
        .unwrap();
    assert!(!off.active);
    let (all, total) = repo.list(None, None, 1, 10).await.unwrap();
    assert_eq!((all.len(), total), (2, 2));
    let (active, total) = repo.list(None, Some(true), 1, 10).await.unwrap();
    assert_eq!((active[0].sku.as_str(), total), ("milk-1l", 1));
    let (eggs_page, total) = repo.list(Some("telur"), None, 1, 10).await.unwrap();
    assert_eq!((eggs_page.len(), total), (1, 1));
    let (page2, total) = repo.list(None, None, 2, 1).await.unwrap();
    assert_eq!(
        (page2[0].sku.as_str(), total),
        ("milk-1l", 2),
        "pages in sku order"
    );

    // Hub prices: the product's seq moves; the price in force, else the base.
    let before = repo.get("milk-1l").await.unwrap().unwrap().seq;
    let row = HubPrice {
        hub_id: "jkt-01".into(),
        sku: "milk-1l".into(),
        price: 17_000,
        valid_from_ms: T0 + 10,
        valid_to_ms: Some(T0 + 20),
    };
    let after = repo.set_hub_price(&row, T0 + 5).await.unwrap();
    assert!(after.seq > before);
    assert_eq!(
        price_at(&repo, "milk-1l", "jkt-01", T0 + 15).await.unwrap(),
        Some((17_000, "hub"))
    );
    assert_eq!(
        price_at(&repo, "milk-1l", "jkt-01", T0 + 20).await.unwrap(),
        Some((17_900, "base"))
    );
    assert_eq!(
        price_at(&repo, "milk-1l", "jkt-02", T0 + 15).await.unwrap(),
        Some((17_900, "base"))
    );
    assert_eq!(
        price_at(&repo, "egg-10", "jkt-01", T0).await.unwrap(),
        None,
        "inactive"
    );
    assert_eq!(price_at(&repo, "nope", "jkt-01", T0).await.unwrap(), None);
    assert!(matches!(
        repo.set_hub_price(
            &HubPrice {
                sku: "nope".into(),
                ..row.clone()
            },
            T0
        )
        .await,
        Err(CatalogError::NotFound(_))
    ));
    assert_eq!(repo.hub_prices("milk-1l").await.unwrap(), vec![row.clone()]);

    // The change feed: every product once, latest state, in seq order, with its hub prices.
    let feed = repo.changes(0, 100).await.unwrap();
    let order: Vec<&str> = feed.iter().map(|c| c.product.sku.as_str()).collect();
    assert_eq!(order, ["egg-10", "milk-1l"], "milk's price write came last");
    assert!(feed.windows(2).all(|w| w[0].product.seq < w[1].product.seq));
    assert_eq!(feed[1].hub_prices, vec![row]);
    assert_eq!(feed[1].product.margin_pct, 12.5);
    let tail = repo.changes(feed[0].product.seq, 100).await.unwrap();
    assert_eq!(tail.len(), 1);
    assert_eq!(repo.changes(0, 1).await.unwrap().len(), 1, "limit");
    assert!(repo
        .changes(feed[1].product.seq, 100)
        .await
        .unwrap()
        .is_empty());
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_memory_catalog_conforms() {
        futures::executor::block_on(super::catalog_conforms(crate::repo::MemoryCatalog::new()));
    }
}
