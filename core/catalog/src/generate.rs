//! A generated grocery catalog as a Jakarta dark store sells it (issue #14): Indonesian product
//! names with English descriptions and tags, local brands, sizes with units, prices in rupiah
//! rounded as shelves show them, margins and a popularity that falls off with rank. The same
//! seed gives the same catalog; tests, benchmarks and the twin use it.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};

use crate::model::ProductInput;

/// One kind of product: Indonesian name, English name, the sizes it comes in (amount, unit),
/// rupiah per base size, brands, and the variants it comes in.
struct Kind {
    id: &'static str,
    name: &'static str,
    english: &'static str,
    sizes: &'static [(u32, &'static str)],
    price: i64,
    brands: &'static [&'static str],
    variants: &'static [(&'static str, &'static str)],
}

struct Aisle {
    name: &'static str,
    english: &'static str,
    kinds: &'static [Kind],
}

/// The first size is the one `Kind::price` is for.
const ML: &[(u32, &str)] = &[(1, "L"), (200, "ml"), (250, "ml"), (2, "L")];
const PCS: &[(u32, &str)] = &[(1, "pcs"), (6, "pcs"), (10, "pcs"), (30, "pcs")];
const PACK: &[(u32, &str)] = &[(1, "pack"), (5, "pack")];
const NONE: &[(&str, &str)] = &[("", "")];

const AISLES: &[Aisle] = &[
    Aisle {
        name: "Susu & Olahan",
        english: "Dairy",
        kinds: &[
            Kind {
                id: "susu",
                name: "Susu UHT",
                english: "UHT milk",
                sizes: ML,
                price: 18_500,
                brands: &[
                    "Ultra",
                    "Indomilk",
                    "Frisian Flag",
                    "Greenfields",
                    "Diamond",
                ],
                variants: &[
                    ("Full Cream", "full cream"),
                    ("Cokelat", "chocolate"),
                    ("Stroberi", "strawberry"),
                    ("Rendah Lemak", "low fat"),
                ],
            },
            Kind {
                id: "yogurt",
                name: "Yogurt",
                english: "yoghurt",
                sizes: &[(100, "g"), (500, "g")],
                price: 9_000,
                brands: &["Cimory", "Heavenly Blush", "Biokul"],
                variants: &[
                    ("Plain", "plain"),
                    ("Stroberi", "strawberry"),
                    ("Mangga", "mango"),
                ],
            },
            Kind {
                id: "keju",
                name: "Keju Cheddar",
                english: "cheddar cheese",
                sizes: &[(165, "g"), (250, "g")],
                price: 24_000,
                brands: &["Kraft", "Prochiz"],
                variants: NONE,
            },
            Kind {
                id: "mentega",
                name: "Mentega",
                english: "butter",
                sizes: &[(200, "g")],
                price: 32_000,
                brands: &["Anchor", "Wijsman"],
                variants: NONE,
            },
        ],
    },
    Aisle {
        name: "Telur",
        english: "Eggs",
        kinds: &[
            Kind {
                id: "telur",
                name: "Telur Ayam",
                english: "chicken eggs",
                sizes: PCS,
                price: 2_600,
                brands: &["Segar Farm", "OMEGA"],
                variants: &[("Negeri", "free range"), ("Kampung", "village")],
            },
            Kind {
                id: "telur-puyuh",
                name: "Telur Puyuh",
                english: "quail eggs",
                sizes: &[(20, "pcs")],
                price: 12_000,
                brands: &["Segar Farm"],
                variants: NONE,
            },
        ],
    },
    Aisle {
        name: "Buah",
        english: "Fruit",
        kinds: &[
            Kind {
                id: "pisang",
                name: "Pisang",
                english: "banana",
                sizes: &[(1, "kg")],
                price: 22_000,
                brands: &["Sunpride"],
                variants: &[("Cavendish", "cavendish"), ("Raja", "raja")],
            },
            Kind {
                id: "apel",
                name: "Apel",
                english: "apple",
                sizes: &[(500, "g"), (1, "kg")],
                price: 45_000,
                brands: &["Fuji", "Malang"],
                variants: &[("Merah", "red"), ("Hijau", "green")],
            },
            Kind {
                id: "jeruk",
                name: "Jeruk",
                english: "orange",
                sizes: &[(1, "kg")],
                price: 30_000,
                brands: &["Pontianak", "Medan"],
                variants: NONE,
            },
            Kind {
                id: "mangga",
                name: "Mangga",
                english: "mango",
                sizes: &[(1, "kg")],
                price: 35_000,
                brands: &["Harum Manis"],
                variants: NONE,
            },
        ],
    },
    Aisle {
        name: "Sayur",
        english: "Vegetables",
        kinds: &[
            Kind {
                id: "bayam",
                name: "Bayam",
                english: "spinach",
                sizes: &[(250, "g")],
                price: 6_000,
                brands: &["Kebun Segar"],
                variants: NONE,
            },
            Kind {
                id: "wortel",
                name: "Wortel",
                english: "carrot",
                sizes: &[(500, "g")],
                price: 9_000,
                brands: &["Kebun Segar"],
                variants: NONE,
            },
            Kind {
                id: "tomat",
                name: "Tomat",
                english: "tomato",
                sizes: &[(500, "g")],
                price: 11_000,
                brands: &["Kebun Segar"],
                variants: NONE,
            },
            Kind {
                id: "bawang",
                name: "Bawang",
                english: "onion",
                sizes: &[(250, "g"), (500, "g")],
                price: 14_000,
                brands: &["Brebes"],
                variants: &[
                    ("Merah", "shallot"),
                    ("Putih", "garlic"),
                    ("Bombay", "onion"),
                ],
            },
            Kind {
                id: "cabai",
                name: "Cabai Rawit",
                english: "bird's eye chili",
                sizes: &[(100, "g")],
                price: 8_000,
                brands: &["Kebun Segar"],
                variants: NONE,
            },
        ],
    },
    Aisle {
        name: "Daging & Ayam",
        english: "Meat & Poultry",
        kinds: &[
            Kind {
                id: "ayam",
                name: "Daging Ayam",
                english: "chicken",
                sizes: &[(500, "g"), (1, "kg")],
                price: 38_000,
                brands: &["So Good", "Belfoods"],
                variants: &[
                    ("Fillet Dada", "breast fillet"),
                    ("Paha", "thigh"),
                    ("Sayap", "wings"),
                ],
            },
            Kind {
                id: "sapi",
                name: "Daging Sapi",
                english: "beef",
                sizes: &[(250, "g"), (500, "g")],
                price: 70_000,
                brands: &["Kibif", "Bernardi"],
                variants: &[("Giling", "minced"), ("Has Dalam", "tenderloin")],
            },
            Kind {
                id: "sosis",
                name: "Sosis",
                english: "sausage",
                sizes: &[(375, "g")],
                price: 29_000,
                brands: &["Champ", "Kanzler", "Fiesta"],
                variants: &[("Ayam", "chicken"), ("Sapi", "beef")],
            },
        ],
    },
    Aisle {
        name: "Ikan & Seafood",
        english: "Fish & Seafood",
        kinds: &[
            Kind {
                id: "ikan",
                name: "Ikan",
                english: "fish",
                sizes: &[(500, "g")],
                price: 42_000,
                brands: &["Laut Segar"],
                variants: &[("Salmon", "salmon"), ("Tuna", "tuna"), ("Kakap", "snapper")],
            },
            Kind {
                id: "udang",
                name: "Udang",
                english: "shrimp",
                sizes: &[(250, "g"), (500, "g")],
                price: 55_000,
                brands: &["Laut Segar"],
                variants: NONE,
            },
        ],
    },
    Aisle {
        name: "Roti & Kue",
        english: "Bakery",
        kinds: &[
            Kind {
                id: "roti",
                name: "Roti Tawar",
                english: "white bread",
                sizes: &[(1, "pack")],
                price: 16_000,
                brands: &["Sari Roti", "Breadtalk"],
                variants: &[("Kupas", "crustless"), ("Gandum", "whole wheat")],
            },
            Kind {
                id: "kue",
                name: "Kue Bolu",
                english: "sponge cake",
                sizes: &[(1, "pcs")],
                price: 25_000,
                brands: &["Holland Bakery"],
                variants: &[("Pandan", "pandan"), ("Cokelat", "chocolate")],
            },
        ],
    },
    Aisle {
        name: "Beras & Mie",
        english: "Rice & Noodles",
        kinds: &[
            Kind {
                id: "beras",
                name: "Beras",
                english: "rice",
                sizes: &[(5, "kg"), (10, "kg")],
                price: 14_000,
                brands: &["Sania", "Topi Koki", "Rojolele"],
                variants: &[("Pandan Wangi", "fragrant"), ("Merah", "red")],
            },
            Kind {
                id: "mie",
                name: "Mie Instan",
                english: "instant noodles",
                sizes: PACK,
                price: 3_500,
                brands: &["Indomie", "Mie Sedaap", "Sarimi"],
                variants: &[
                    ("Goreng", "fried"),
                    ("Soto", "soto soup"),
                    ("Ayam Bawang", "chicken onion"),
                ],
            },
            Kind {
                id: "pasta",
                name: "Spaghetti",
                english: "pasta",
                sizes: &[(500, "g")],
                price: 21_000,
                brands: &["La Fonte", "Barilla"],
                variants: NONE,
            },
        ],
    },
    Aisle {
        name: "Minuman",
        english: "Drinks",
        kinds: &[
            Kind {
                id: "air",
                name: "Air Mineral",
                english: "mineral water",
                sizes: &[(600, "ml"), (1500, "ml")],
                price: 4_000,
                brands: &["Aqua", "Le Minerale", "Cleo"],
                variants: NONE,
            },
            Kind {
                id: "jus",
                name: "Jus",
                english: "juice",
                sizes: &[(250, "ml"), (1, "L")],
                price: 9_000,
                brands: &["Buavita", "Country Choice"],
                variants: &[("Jeruk", "orange"), ("Apel", "apple"), ("Jambu", "guava")],
            },
            Kind {
                id: "soda",
                name: "Minuman Soda",
                english: "soft drink",
                sizes: &[(330, "ml"), (1500, "ml")],
                price: 7_500,
                brands: &["Coca-Cola", "Sprite", "Fanta"],
                variants: NONE,
            },
        ],
    },
    Aisle {
        name: "Kopi & Teh",
        english: "Coffee & Tea",
        kinds: &[
            Kind {
                id: "kopi",
                name: "Kopi Bubuk",
                english: "ground coffee",
                sizes: &[(165, "g"), (380, "g")],
                price: 22_000,
                brands: &["Kapal Api", "Excelso", "ABC"],
                variants: &[("Arabika", "arabica"), ("Robusta", "robusta")],
            },
            Kind {
                id: "kopi-sachet",
                name: "Kopi Sachet",
                english: "instant coffee",
                sizes: &[(10, "pcs")],
                price: 16_000,
                brands: &["Good Day", "Luwak White Koffie", "Torabika"],
                variants: NONE,
            },
            Kind {
                id: "teh",
                name: "Teh Celup",
                english: "tea bags",
                sizes: &[(25, "pcs")],
                price: 9_500,
                brands: &["Sariwangi", "Sosro", "Tong Tji"],
                variants: &[("Melati", "jasmine"), ("Hijau", "green")],
            },
        ],
    },
    Aisle {
        name: "Makanan Ringan",
        english: "Snacks",
        kinds: &[
            Kind {
                id: "keripik",
                name: "Keripik Kentang",
                english: "potato chips",
                sizes: &[(68, "g"), (180, "g")],
                price: 11_000,
                brands: &["Chitato", "Lays", "Potabee"],
                variants: &[("Sapi Panggang", "barbecue beef"), ("Original", "original")],
            },
            Kind {
                id: "biskuit",
                name: "Biskuit",
                english: "biscuits",
                sizes: &[(120, "g"), (300, "g")],
                price: 9_000,
                brands: &["Roma", "Khong Guan", "Oreo"],
                variants: &[("Kelapa", "coconut"), ("Cokelat", "chocolate")],
            },
            Kind {
                id: "cokelat",
                name: "Cokelat Batang",
                english: "chocolate bar",
                sizes: &[(50, "g"), (100, "g")],
                price: 12_000,
                brands: &["SilverQueen", "Cadbury", "Delfi"],
                variants: &[("Kacang Mete", "cashew"), ("Susu", "milk")],
            },
        ],
    },
    Aisle {
        name: "Bumbu & Saus",
        english: "Spices & Sauces",
        kinds: &[
            Kind {
                id: "kecap",
                name: "Kecap Manis",
                english: "sweet soy sauce",
                sizes: &[(275, "ml"), (520, "ml")],
                price: 11_000,
                brands: &["Bango", "ABC", "Sedaap"],
                variants: NONE,
            },
            Kind {
                id: "saus",
                name: "Saus Sambal",
                english: "chili sauce",
                sizes: &[(335, "ml")],
                price: 12_500,
                brands: &["ABC", "Indofood", "Belibis"],
                variants: NONE,
            },
            Kind {
                id: "garam",
                name: "Garam",
                english: "salt",
                sizes: &[(250, "g"), (500, "g")],
                price: 4_000,
                brands: &["Refina", "Cap Kapal"],
                variants: NONE,
            },
            Kind {
                id: "gula",
                name: "Gula Pasir",
                english: "sugar",
                sizes: &[(1, "kg")],
                price: 17_500,
                brands: &["Gulaku", "Rose Brand"],
                variants: NONE,
            },
        ],
    },
    Aisle {
        name: "Minyak",
        english: "Cooking Oil",
        kinds: &[Kind {
            id: "minyak",
            name: "Minyak Goreng",
            english: "cooking oil",
            sizes: &[(1, "L"), (2, "L")],
            price: 19_000,
            brands: &["Bimoli", "Filma", "Sania", "Tropical"],
            variants: NONE,
        }],
    },
    Aisle {
        name: "Kebersihan",
        english: "Household",
        kinds: &[
            Kind {
                id: "sabun-cuci",
                name: "Sabun Cuci Piring",
                english: "dish soap",
                sizes: &[(400, "ml"), (800, "ml")],
                price: 12_000,
                brands: &["Sunlight", "Mama Lemon"],
                variants: &[("Jeruk Nipis", "lime")],
            },
            Kind {
                id: "deterjen",
                name: "Deterjen",
                english: "laundry detergent",
                sizes: &[(800, "g"), (1800, "g")],
                price: 24_000,
                brands: &["Rinso", "So Klin", "Attack"],
                variants: NONE,
            },
            Kind {
                id: "tisu",
                name: "Tisu Wajah",
                english: "facial tissue",
                sizes: &[(250, "pcs")],
                price: 14_000,
                brands: &["Paseo", "Nice", "Tessa"],
                variants: NONE,
            },
        ],
    },
    Aisle {
        name: "Perawatan Diri",
        english: "Personal Care",
        kinds: &[
            Kind {
                id: "sabun",
                name: "Sabun Mandi",
                english: "body soap",
                sizes: &[(85, "g"), (450, "ml")],
                price: 5_000,
                brands: &["Lifebuoy", "Lux", "Nuvo"],
                variants: NONE,
            },
            Kind {
                id: "pasta-gigi",
                name: "Pasta Gigi",
                english: "toothpaste",
                sizes: &[(75, "g"), (190, "g")],
                price: 11_000,
                brands: &["Pepsodent", "Close Up", "Formula"],
                variants: NONE,
            },
            Kind {
                id: "sampo",
                name: "Sampo",
                english: "shampoo",
                sizes: &[(170, "ml"), (340, "ml")],
                price: 23_000,
                brands: &["Sunsilk", "Pantene", "Clear"],
                variants: NONE,
            },
        ],
    },
    Aisle {
        name: "Bayi",
        english: "Baby",
        kinds: &[
            Kind {
                id: "popok",
                name: "Popok Bayi",
                english: "baby diapers",
                sizes: &[(20, "pcs"), (40, "pcs")],
                price: 60_000,
                brands: &["MamyPoko", "Sweety", "Merries"],
                variants: &[("Ukuran M", "size M"), ("Ukuran L", "size L")],
            },
            Kind {
                id: "susu-formula",
                name: "Susu Formula",
                english: "infant formula",
                sizes: &[(400, "g"), (800, "g")],
                price: 95_000,
                brands: &["SGM", "Bebelac", "Dancow"],
                variants: NONE,
            },
        ],
    },
];

/// The aisles' names, Indonesian and English (the category names and their synonyms).
pub fn aisles() -> Vec<(&'static str, &'static str)> {
    AISLES.iter().map(|a| (a.name, a.english)).collect()
}

/// A generated product: its body as `PUT /products/{sku}` takes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Generated {
    pub sku: String,
    pub body: Value,
}

impl Generated {
    pub fn input(&self) -> ProductInput {
        ProductInput::parse(&self.body, &self.sku).expect("generated bodies are valid")
    }
}

fn size_text(amount: u32, unit: &str) -> String {
    format!("{amount} {unit}")
}

/// The price of `amount unit` at `base` rupiah for the kind's first size, rounded to Rp 500
/// (below Rp 10,000: Rp 100).
fn price_of(base: i64, first: (u32, &str), size: (u32, &str), jitter: f64) -> i64 {
    let grams = |(a, u): (u32, &str)| -> f64 {
        f64::from(a)
            * match u {
                "kg" | "L" => 1000.0,
                _ => 1.0,
            }
    };
    let ratio = (grams(size) / grams(first)).max(0.05);
    // Bigger packs are cheaper per unit (a 0.85 power).
    let raw = base as f64 * ratio.powf(0.85) * jitter;
    let step = if raw < 10_000.0 { 100.0 } else { 500.0 };
    ((raw / step).round() * step).max(step) as i64
}

/// `n` products, deterministic in `seed`. Every (kind, brand, variant, size) appears once
/// before any repeats; repeats beyond that are numbered pack variants ("isi 2", "isi 3", ...),
/// so skus and names stay unique.
pub fn catalog(n: usize, seed: u64) -> Vec<Generated> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    /// (aisle, kind, brand, variant, size)
    type Combo<'a> = (
        &'a Aisle,
        &'a Kind,
        &'a str,
        (&'a str, &'a str),
        (u32, &'a str),
    );
    let mut combos: Vec<Combo> = Vec::new();
    for a in AISLES {
        for k in a.kinds {
            for b in k.brands {
                for v in k.variants {
                    for s in k.sizes {
                        combos.push((a, k, b, *v, *s));
                    }
                }
            }
        }
    }
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let round = i / combos.len();
        let (a, k, brand, (v_id, v_en), (amount, unit)) = combos[i % combos.len()];
        let size = size_text(amount, unit);
        let pack = if round > 0 {
            format!(" isi {}", round + 1)
        } else {
            String::new()
        };
        let name = [brand, k.name, v_id, &size]
            .iter()
            .filter(|s| !s.is_empty())
            .copied()
            .collect::<Vec<_>>()
            .join(" ")
            + &pack;
        let english = [v_en, k.english]
            .iter()
            .filter(|s| !s.is_empty())
            .copied()
            .collect::<Vec<_>>()
            .join(" ");
        let jitter = 0.9 + rng.random::<f64>() * 0.2;
        let price = price_of(k.price, k.sizes[0], (amount, unit), jitter) * (round as i64 + 1);
        // Popularity falls off with the product's place in the catalog's own order of appeal.
        let popularity = (1.0 / (1.0 + (i % combos.len()) as f64 / 40.0)).clamp(0.0, 1.0);
        let mut tags: Vec<String> = vec![k.id.replace('-', " "), k.english.to_string()];
        if !v_en.is_empty() {
            tags.push(v_en.to_string());
        }
        tags.dedup();
        let sku = format!("{}-{:06}", k.id, i);
        out.push(Generated {
            body: json!({
                "name": name,
                "description": format!("{} {english}, {size}. {}.", brand, a.english),
                "category": a.name,
                "brand": brand,
                "price": price,
                "margin_pct": (5.0 + rng.random::<f64>() * 30.0).round(),
                "popularity_score": (popularity * 1000.0).round() / 1000.0,
                "tags": tags,
                "image_url": format!("https://img.example/{sku}.jpg"),
            }),
            sku,
        });
    }
    out
}

/// The number of distinct products before [`catalog`] repeats them as packs.
pub fn distinct() -> usize {
    AISLES
        .iter()
        .flat_map(|a| a.kinds)
        .map(|k| k.brands.len() * k.variants.len() * k.sizes.len())
        .sum()
}

/// A dark store's assortment of `n` products: spread evenly over every aisle, kind and brand
/// (where [`catalog`] lists kind after kind), in an order of appeal shuffled by `seed`, each
/// product's `popularity_score` set from its place in that order (the first sells most). The
/// twin's shoppers want product `k` with the scenario's Zipf weight of rank `k`.
pub fn assortment(n: usize, seed: u64) -> Vec<Generated> {
    let all = catalog(n.max(distinct()), seed);
    let mut picked: Vec<Generated> = (0..n).map(|i| all[i * all.len() / n].clone()).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed_a550);
    for i in (1..picked.len()).rev() {
        picked.swap(i, rng.random_range(0..=i));
    }
    for (rank, g) in picked.iter_mut().enumerate() {
        let popularity = 1.0 / (1.0 + rank as f64 / 40.0);
        g.body["popularity_score"] = json!((popularity * 1000.0).round() / 1000.0);
    }
    picked
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_catalog_is_valid_unique_and_the_same_for_a_seed() {
        let a = catalog(3000, 7);
        assert_eq!(a, catalog(3000, 7));
        let mut skus: Vec<&str> = a.iter().map(|g| g.sku.as_str()).collect();
        let mut names: Vec<String> = a.iter().map(|g| g.input().name).collect();
        skus.sort_unstable();
        skus.dedup();
        names.sort_unstable();
        names.dedup();
        assert_eq!((skus.len(), names.len()), (3000, 3000));
        let milk = a
            .iter()
            .map(Generated::input)
            .find(|p| p.name == "Ultra Susu UHT Full Cream 1 L")
            .expect("a familiar product");
        assert_eq!(milk.category, "Susu & Olahan");
        assert!(milk.tags.contains(&"UHT milk".to_string()));
        assert!((15_000..=25_000).contains(&milk.price), "{}", milk.price);
        for p in a.iter().map(Generated::input) {
            assert!(p.price > 0 && p.price % 100 == 0, "{} {}", p.name, p.price);
        }
    }

    #[test]
    fn an_assortment_spans_the_aisles_in_a_shuffled_order_of_appeal() {
        let a = assortment(60, 3);
        assert_eq!(a, assortment(60, 3));
        let aisles: std::collections::BTreeSet<String> =
            a.iter().map(|g| g.input().category).collect();
        assert_eq!(aisles.len(), super::aisles().len(), "{aisles:?}");
        let pop: Vec<f64> = a.iter().map(|g| g.input().popularity_score).collect();
        assert!(pop.windows(2).all(|w| w[0] >= w[1]), "{pop:?}");
        // Not the catalog's aisle order: the first ten are not all one aisle.
        let first: std::collections::BTreeSet<String> =
            a[..10].iter().map(|g| g.input().category).collect();
        assert!(first.len() > 2, "{first:?}");
        let mut skus: Vec<&str> = a.iter().map(|g| g.sku.as_str()).collect();
        skus.sort_unstable();
        skus.dedup();
        assert_eq!(skus.len(), 60);
        assert_eq!(assortment(distinct() + 5, 3).len(), distinct() + 5);
    }
}
