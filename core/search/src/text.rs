//! Text to terms, the same way for products and queries, so Jakarta shoppers find what they
//! type in either language: NFKC, lowercase, diacritics folded ("crème" = "creme"), anything
//! that is not a letter or digit separates words, and a quantity with its unit becomes one
//! term in base units ("1l", "1 L", "1 liter", "1000ml" and "1,0 lt" are all `1000ml`; "1kg" and
//! "1000 gr" are `1000g`; "10 butir" is `10pcs`). Synonyms ([`synonyms`]) are a table of
//! groups, Indonesian and English, applied to query terms.

use unicode_normalization::char::is_combining_mark;
use unicode_normalization::UnicodeNormalization;

/// Units and the base unit with the factor to it.
const UNITS: &[(&str, &str, f64)] = &[
    ("ml", "ml", 1.0),
    ("mililiter", "ml", 1.0),
    ("milliliter", "ml", 1.0),
    ("l", "ml", 1000.0),
    ("lt", "ml", 1000.0),
    ("ltr", "ml", 1000.0),
    ("liter", "ml", 1000.0),
    ("litre", "ml", 1000.0),
    ("g", "g", 1.0),
    ("gr", "g", 1.0),
    ("gram", "g", 1.0),
    ("grams", "g", 1.0),
    ("kg", "g", 1000.0),
    ("kilo", "g", 1000.0),
    ("kilogram", "g", 1000.0),
    ("pcs", "pcs", 1.0),
    ("pc", "pcs", 1.0),
    ("butir", "pcs", 1.0),
    ("biji", "pcs", 1.0),
    ("pack", "pack", 1.0),
    ("pak", "pack", 1.0),
    ("bungkus", "pack", 1.0),
];

fn unit(s: &str) -> Option<(&'static str, f64)> {
    UNITS
        .iter()
        .find(|(u, _, _)| *u == s)
        .map(|(_, base, f)| (*base, *f))
}

/// NFKC, lowercase, diacritics removed.
pub fn fold(s: &str) -> String {
    s.nfkc()
        .flat_map(char::to_lowercase)
        .collect::<String>()
        .nfd()
        .filter(|c| !is_combining_mark(*c))
        .collect()
}

/// `n` in base units as a term: integers as they are, else rounded to 0.1.
fn quantity(n: f64, base: &str) -> String {
    if (n - n.round()).abs() < 1e-9 {
        format!("{}{base}", n.round() as i64)
    } else {
        format!("{:.1}{base}", n)
    }
}

/// A number as written: digits with at most one `.` or `,` decimal separator.
fn number(s: &str) -> Option<f64> {
    if s.is_empty() || !s.bytes().next().is_some_and(|b| b.is_ascii_digit()) {
        return None;
    }
    s.replace(',', ".")
        .parse()
        .ok()
        .filter(|n: &f64| n.is_finite())
}

/// Splits "1000ml" into (1000, "ml"); None if it is not number-then-letters.
fn glued(s: &str) -> Option<(f64, &str)> {
    let at = s.find(|c: char| c.is_alphabetic())?;
    let (n, u) = s.split_at(at);
    Some((number(n)?, u))
}

/// The words of folded text: runs of letters and digits, a decimal separator between digits
/// kept ("1,5").
fn words(folded: &str) -> Vec<String> {
    let chars: Vec<char> = folded.chars().collect();
    let mut out = Vec::new();
    let mut cur = String::new();
    for (i, &c) in chars.iter().enumerate() {
        let decimal = (c == ',' || c == '.')
            && i > 0
            && chars[i - 1].is_ascii_digit()
            && chars.get(i + 1).is_some_and(char::is_ascii_digit);
        if c.is_alphanumeric() || decimal {
            cur.push(c);
        } else if !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// The terms of `s`, in order (repeats kept; see [`query_terms`] for queries).
pub fn terms(s: &str) -> Vec<String> {
    let w = words(&fold(s));
    let mut out = Vec::with_capacity(w.len());
    let mut i = 0;
    while i < w.len() {
        if let Some((n, u)) = glued(&w[i]) {
            if let Some((base, f)) = unit(u) {
                out.push(quantity(n * f, base));
                i += 1;
                continue;
            }
        }
        if let (Some(n), Some((base, f))) = (number(&w[i]), w.get(i + 1).and_then(|u| unit(u))) {
            out.push(quantity(n * f, base));
            i += 2;
            continue;
        }
        out.push(w[i].clone());
        i += 1;
    }
    out
}

/// A query's terms: [`terms`], repeats dropped, the first 16 (08 §6).
pub fn query_terms(q: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for t in terms(q) {
        if !out.contains(&t) {
            out.push(t);
        }
        if out.len() == 16 {
            break;
        }
    }
    out
}

/// Groups of words that mean the same to a Jakarta shopper (Indonesian, English, common
/// spellings and plurals). A query term in a group matches any word of it.
pub const SYNONYMS: &[&[&str]] = &[
    &["susu", "milk"],
    &["telur", "telor", "egg", "eggs"],
    &["ayam", "chicken"],
    &["roti", "bread"],
    &["beras", "rice"],
    &["mie", "mi", "noodle", "noodles"],
    &["air", "water"],
    &["minyak", "oil"],
    &["gula", "sugar"],
    &["garam", "salt"],
    &["kopi", "coffee"],
    &["teh", "tea"],
    &["pisang", "banana", "bananas"],
    &["apel", "apple", "apples"],
    &["jeruk", "orange", "oranges"],
    &["mangga", "mango", "mangoes"],
    &["sapi", "beef"],
    &["daging", "meat"],
    &["ikan", "fish"],
    &["udang", "shrimp", "prawn", "prawns"],
    &["sabun", "soap"],
    &["keju", "cheese"],
    &["mentega", "butter"],
    &["sayur", "sayuran", "vegetable", "vegetables", "veggies"],
    &["buah", "fruit", "fruits"],
    &["bawang", "onion", "onions"],
    &["cabai", "cabe", "chili", "chilli", "chilies"],
    &["tomat", "tomato", "tomatoes"],
    &["wortel", "carrot", "carrots"],
    &["bayam", "spinach"],
    &["kentang", "potato", "potatoes"],
    &["keripik", "kripik", "chips", "crisps"],
    &["biskuit", "biscuit", "biscuits", "cookies"],
    &["cokelat", "coklat", "chocolate"],
    &["jus", "juice"],
    &["saus", "sauce"],
    &["sampo", "shampoo"],
    &["popok", "diaper", "diapers"],
    &["tisu", "tissue", "tissues"],
    &["deterjen", "detergent"],
    &["yogurt", "yoghurt"],
    &["sosis", "sausage", "sausages"],
    &["tawar", "plain"],
    &["gandum", "wheat"],
    &["pasta", "spaghetti"],
    &["bayi", "baby"],
    &["minuman", "drink", "drinks", "beverage"],
    &["cuci", "wash"],
    &["gigi", "tooth", "teeth"],
    &["mandi", "bath"],
];

/// The words a query term matches: its synonym group, or itself.
pub fn alternatives(term: &str) -> Vec<&str> {
    match SYNONYMS.iter().find(|g| g.contains(&term)) {
        Some(g) => g.to_vec(),
        None => vec![term],
    }
}

/// Damerau-Levenshtein AUTO distance for a term (08 §6): length ≤ 2 → 0, 3–5 → 1, ≥ 6 → 2.
pub fn auto_distance(term: &str) -> u8 {
    match term.chars().count() {
        0..=2 => 0,
        3..=5 => 1,
        _ => 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_synonym_table_is_the_one_in_the_code() {
        let doc = include_str!("../../../docs/search-language.md");
        let rows: Vec<&str> = doc
            .lines()
            .skip_while(|l| *l != "| group |")
            .skip(2)
            .take_while(|l| l.starts_with("| "))
            .collect();
        let code: Vec<String> = SYNONYMS
            .iter()
            .map(|g| format!("| {} |", g.join(", ")))
            .collect();
        assert_eq!(
            rows, code,
            "docs/search-language.md lists the synonym groups as the code has them"
        );
        for (u, _, _) in UNITS {
            assert!(doc.contains(&format!("`{u}`")), "unit {u} is documented");
        }
    }

    #[test]
    fn case_diacritics_and_width_fold() {
        assert_eq!(terms("Crème BRÛLÉE"), ["creme", "brulee"]);
        assert_eq!(terms("ＵＨＴ　Susu"), ["uht", "susu"]);
        assert_eq!(terms("usb-c  /  kabel!!"), ["usb", "c", "kabel"]);
    }

    #[test]
    fn quantities_become_one_term_in_base_units() {
        for q in [
            "1l",
            "1 L",
            "1 liter",
            "1000ml",
            "1000 ML",
            "1,0 lt",
            "1.0 litre",
        ] {
            assert_eq!(terms(q), ["1000ml"], "{q}");
        }
        assert_eq!(terms("susu 1,5l"), ["susu", "1500ml"]);
        assert_eq!(terms("beras 5 kg"), ["beras", "5000g"]);
        assert_eq!(terms("1000 gr"), ["1000g"]);
        assert_eq!(terms("telur 10 butir"), ["telur", "10pcs"]);
        assert_eq!(terms("0.25 l"), ["250ml"]);
        // A number without a unit, and a unit without a number, are words.
        assert_eq!(terms("pepsodent 190"), ["pepsodent", "190"]);
        assert_eq!(terms("l kg"), ["l", "kg"]);
    }

    #[test]
    fn queries_drop_repeats_and_keep_sixteen_terms() {
        assert_eq!(query_terms("susu SUSU susu"), ["susu"]);
        let long = (0..40)
            .map(|i| format!("w{i}"))
            .collect::<Vec<_>>()
            .join(" ");
        assert_eq!(query_terms(&long).len(), 16);
        assert!(query_terms("  !!! ").is_empty());
        assert!(query_terms("🥛🥚").is_empty(), "emoji are not words");
        assert_eq!(
            query_terms("حليب milk"),
            ["حليب", "milk"],
            "RTL letters are words"
        );
    }

    #[test]
    fn synonyms_go_both_ways_and_distances_follow_auto() {
        assert!(alternatives("milk").contains(&"susu"));
        assert!(alternatives("susu").contains(&"milk"));
        assert!(alternatives("eggs").contains(&"telur"));
        assert_eq!(alternatives("ultra"), ["ultra"]);
        for g in SYNONYMS {
            for w in *g {
                assert_eq!(fold(w), *w, "table words are folded already");
            }
        }
        assert_eq!(
            (
                auto_distance("mi"),
                auto_distance("susu"),
                auto_distance("yoghurt")
            ),
            (0, 1, 2)
        );
    }
}
