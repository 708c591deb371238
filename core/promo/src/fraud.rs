//! Fraud signals (05 §6, wired in: the reference's were dead code). A device is known by an
//! HMAC of its id (never the raw id); addresses are compared after normalisation by the Jaccard
//! similarity of their character bigrams with the same digit runs; accounts linked by a shared
//! device or a matching address form components ("rings"), and a component larger than the
//! configured size is flagged.

use std::collections::BTreeMap;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use unicode_normalization::UnicodeNormalization;

/// Address similarity above which two addresses (with the same digit runs) match.
pub const ADDRESS_MATCH_J: f64 = 0.85;

/// hex HMAC-SHA256(secret, device_id).
pub fn device_hash(secret: &[u8], device_id: &str) -> String {
    let mut m = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    m.update(device_id.as_bytes());
    hex::encode(m.finalize().into_bytes())
}

/// A phone number for the logs (05 §6: hashed and logged only, no threshold): the keyed hash
/// of its digits, so "+62 812-3456" and "0812 3456" style variants of one number match.
pub fn phone_hash(secret: &[u8], phone: &str) -> String {
    let digits: String = phone.chars().filter(char::is_ascii_digit).collect();
    device_hash(secret, &digits)[..16].to_string()
}

/// NFKC, lower case, every run of non-alphanumerics → one space, trimmed.
pub fn normalise_address(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut gap = false;
    for c in s.nfkc().flat_map(char::to_lowercase) {
        if c.is_alphanumeric() {
            if gap && !out.is_empty() {
                out.push(' ');
            }
            gap = false;
            out.push(c);
        } else {
            gap = true;
        }
    }
    out
}

fn bigrams(s: &str) -> std::collections::BTreeSet<(char, char)> {
    let chars: Vec<char> = s.chars().collect();
    chars.windows(2).map(|w| (w[0], w[1])).collect()
}

/// Jaccard similarity of the character-bigram sets of two normalised addresses (spaces
/// included); 0 when either set is empty.
pub fn jaccard(a: &str, b: &str) -> f64 {
    let (x, y) = (bigrams(a), bigrams(b));
    if x.is_empty() || y.is_empty() {
        return 0.0;
    }
    let inter = x.intersection(&y).count();
    let union = x.len() + y.len() - inter;
    inter as f64 / union as f64
}

fn digit_runs(s: &str) -> Vec<String> {
    let mut runs: Vec<String> = s
        .split(|c: char| !c.is_ascii_digit())
        .filter(|r| !r.is_empty())
        .map(str::to_string)
        .collect();
    runs.sort();
    runs
}

/// Whether two raw addresses are the same place: the same multiset of digit runs (house and
/// block numbers) and a bigram Jaccard above [`ADDRESS_MATCH_J`].
pub fn same_address(a: &str, b: &str) -> bool {
    let (a, b) = (normalise_address(a), normalise_address(b));
    digit_runs(&a) == digit_runs(&b) && jaccard(&a, &b) > ADDRESS_MATCH_J
}

/// Accounts linked by shared devices or addresses (union-find; deterministic).
#[derive(Debug, Clone, Default)]
pub struct Rings {
    parent: BTreeMap<String, String>,
    size: BTreeMap<String, usize>,
    /// Signal (device hash, or `addr:` + normalised address) → the first account seen with it.
    seen: BTreeMap<String, String>,
}

impl Rings {
    fn find(&mut self, a: &str) -> String {
        let mut root = a.to_string();
        while let Some(p) = self.parent.get(&root).filter(|p| **p != root) {
            root = p.clone();
        }
        // Path compression.
        let mut cur = a.to_string();
        while cur != root {
            let next = self.parent[&cur].clone();
            self.parent.insert(cur, root.clone());
            cur = next;
        }
        root
    }

    fn add(&mut self, a: &str) {
        if !self.parent.contains_key(a) {
            self.parent.insert(a.to_string(), a.to_string());
            self.size.insert(a.to_string(), 1);
        }
    }

    fn union(&mut self, a: &str, b: &str) {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra == rb {
            return;
        }
        // The smaller id is the root (deterministic whatever the order of links).
        let (root, child) = if ra < rb { (ra, rb) } else { (rb, ra) };
        let moved = self.size.remove(&child).unwrap_or(1);
        *self.size.entry(root.clone()).or_insert(1) += moved;
        self.parent.insert(child, root);
    }

    /// Records that `account` used `signal` (a device hash, or an address); links it to every
    /// account that used the same signal before.
    pub fn observe(&mut self, account: &str, signal: &str) {
        self.add(account);
        if self.seen.get(signal).is_some_and(|first| first == account) {
            return;
        }
        match self.seen.get(signal).cloned() {
            Some(first) => self.union(account, &first),
            None => {
                self.seen.insert(signal.to_string(), account.to_string());
            }
        }
    }

    /// Accounts in `account`'s component (1 for an unknown or lone account).
    pub fn component_size(&mut self, account: &str) -> usize {
        if !self.parent.contains_key(account) {
            return 1;
        }
        let root = self.find(account);
        self.size.get(&root).copied().unwrap_or(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_specs_address_vectors() {
        let base = "Jl. Sudirman No. 5";
        let n = |s| normalise_address(s);
        assert_eq!(n(base), "jl sudirman no 5");
        assert_eq!(jaccard(&n(base), &n("JL. SUDIRMAN NO.5")), 1.0);
        assert!(same_address(base, "JL. SUDIRMAN NO.5"));
        let j = jaccard(&n(base), &n("Jl. Sudirman No. 15"));
        assert!((j - 0.8235).abs() < 1e-4, "{j}");
        assert!(!same_address(base, "Jl. Sudirman No. 15"));
        let j = jaccard(&n(base), &n("Jalan Sudirman Nomor 5"));
        assert!((j - 0.5455).abs() < 1e-4, "{j}");
        assert!(!same_address(base, "Jalan Sudirman Nomor 5"));
        assert_eq!(jaccard("", ""), 0.0);
        assert!(!same_address("", ""));
        // The reference skipped spaces: "Blok A" = "Blok B". Here they differ.
        assert!(jaccard(&n("Blok A"), &n("Blok B")) < 1.0);
        assert_eq!(jaccard("a", "a"), 0.0, "a single letter has no bigram");
        // NFKC: full-width digits are digits.
        assert_eq!(n("Ｊｌ. Sudirman Ｎｏ. ５"), "jl sudirman no 5");
    }

    #[test]
    fn phones_hash_by_their_digits() {
        assert_eq!(
            phone_hash(b"k", "+62 812-3456"),
            phone_hash(b"k", "62812 3456")
        );
        assert_ne!(phone_hash(b"k", "0812"), phone_hash(b"k", "0813"));
    }

    #[test]
    fn devices_are_keyed_hashes() {
        let h = device_hash(b"k1", "dev-1");
        assert_eq!(h.len(), 64);
        assert_ne!(h, device_hash(b"k2", "dev-1"));
        assert_ne!(h, device_hash(b"k1", "dev-2"));
    }

    #[test]
    fn accounts_sharing_devices_or_addresses_form_rings() {
        let mut r = Rings::default();
        // A ring: five accounts, two phones, one address.
        for (acc, dev) in [("a1", "d1"), ("a2", "d1"), ("a3", "d2"), ("a4", "d2")] {
            r.observe(acc, dev);
        }
        r.observe("a3", "addr:jl melati 7");
        r.observe("a1", "addr:jl melati 7");
        r.observe("a5", "addr:jl melati 7");
        // An honest household: two accounts on one address.
        r.observe("h1", "addr:jl mawar 2");
        r.observe("h2", "addr:jl mawar 2");
        r.observe("loner", "d9");
        assert_eq!(r.component_size("a4"), 5);
        assert_eq!(r.component_size("h1"), 2);
        assert_eq!(r.component_size("loner"), 1);
        assert_eq!(r.component_size("unknown"), 1);
    }
}
