//! `orders.json` (what each order should hold) and `inventory.json` (the item names and
//! their aliases), in the upstream Python system's formats.
//!
//! ```json
//! {"384": [{"name": "green apple", "quantity": 2}, {"name": "banana", "quantity": 1}]}
//! {"items": [{"id": "001", "name": "green apple", "aliases": ["apple"]}]}
//! ```

use crate::result::Item;
use serde::Deserialize;
use std::collections::HashMap;
use std::path::Path;

/// Expected items per order ID.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Orders {
    orders: HashMap<String, Vec<Item>>,
}

#[derive(Deserialize)]
struct RawItem {
    name: String,
    /// Missing means one.
    #[serde(default = "one")]
    quantity: u32,
}

fn one() -> u32 {
    1
}

impl Orders {
    pub fn load(path: &Path) -> Result<Orders, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read orders file {}: {e}", path.display()))?;
        Orders::from_json(&text).map_err(|e| format!("orders file {}: {e}", path.display()))
    }

    /// Parses `{"order_id": [{"name", "quantity"}, ...], ...}`. Names are trimmed; empty
    /// names and zero quantities are refused, as are order IDs outside the key alphabet.
    pub fn from_json(s: &str) -> Result<Orders, String> {
        let raw: HashMap<String, Vec<RawItem>> =
            serde_json::from_str(s).map_err(|e| format!("invalid orders JSON: {e}"))?;
        let mut orders = HashMap::with_capacity(raw.len());
        for (id, items) in raw {
            oa_contract::validate_id(oa_contract::IdKind::Order, &id)
                .map_err(|e| format!("order {id:?}: {e}"))?;
            let mut out = Vec::with_capacity(items.len());
            for (i, it) in items.into_iter().enumerate() {
                let name = it.name.trim();
                if name.is_empty() {
                    return Err(format!("order {id:?} item {i}: empty name"));
                }
                if it.quantity == 0 {
                    return Err(format!("order {id:?} item {i} ({name}): quantity 0"));
                }
                out.push(Item {
                    name: name.to_owned(),
                    quantity: it.quantity,
                });
            }
            orders.insert(id, out);
        }
        Ok(Orders { orders })
    }

    /// The expected items of an order, `None` when the order is not known.
    pub fn get(&self, order_id: &str) -> Option<&[Item]> {
        self.orders.get(order_id).map(Vec::as_slice)
    }

    pub fn len(&self) -> usize {
        self.orders.len()
    }

    pub fn is_empty(&self) -> bool {
        self.orders.is_empty()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Inventory {
    pub items: Vec<InventoryItem>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct InventoryItem {
    #[serde(default)]
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub aliases: Vec<String>,
}

impl Inventory {
    pub fn load(path: &Path) -> Result<Inventory, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read inventory file {}: {e}", path.display()))?;
        Inventory::from_json(&text).map_err(|e| format!("inventory file {}: {e}", path.display()))
    }

    pub fn from_json(s: &str) -> Result<Inventory, String> {
        let inv: Inventory =
            serde_json::from_str(s).map_err(|e| format!("invalid inventory JSON: {e}"))?;
        for (i, it) in inv.items.iter().enumerate() {
            if normalize(&it.name).is_empty() {
                return Err(format!("items[{i}]: empty name"));
            }
        }
        Ok(inv)
    }

    /// The inventory name that `name` stands for: an exact name, then an alias, then the
    /// closest name or alias within a bounded edit distance. Comparison is on normalised
    /// text (see [`normalize`]).
    ///
    /// The fuzzy step allows at most `max_edit_distance` edits and at most one edit per
    /// four characters of the candidate (so "tea" never becomes "pea"); when two different
    /// items are equally close the match is ambiguous and `None` is returned.
    pub fn canonical(&self, name: &str, max_edit_distance: usize) -> Option<&str> {
        let n = normalize(name);
        if n.is_empty() {
            return None;
        }
        if let Some(it) = self.items.iter().find(|it| normalize(&it.name) == n) {
            return Some(&it.name);
        }
        if let Some(it) = self
            .items
            .iter()
            .find(|it| it.aliases.iter().any(|a| normalize(a) == n))
        {
            return Some(&it.name);
        }
        if max_edit_distance == 0 {
            return None;
        }
        let mut best: Option<(usize, usize)> = None; // (distance, item index)
        let mut ambiguous = false;
        for (idx, it) in self.items.iter().enumerate() {
            let cands = std::iter::once(&it.name).chain(it.aliases.iter());
            let Some(d) = cands
                .filter_map(|c| {
                    let c = normalize(c);
                    let limit = max_edit_distance.min(c.chars().count().min(n.chars().count()) / 4);
                    bounded_levenshtein(&n, &c, limit)
                })
                .min()
            else {
                continue;
            };
            match best {
                Some((bd, bi)) if d == bd && bi != idx => ambiguous = true,
                Some((bd, _)) if d >= bd => {}
                _ => {
                    best = Some((d, idx));
                    ambiguous = false;
                }
            }
        }
        match best {
            Some((_, idx)) if !ambiguous => Some(&self.items[idx].name),
            _ => None,
        }
    }
}

/// Lowercase, `-`, `_` and `/` read as spaces, other punctuation dropped, spaces collapsed.
pub fn normalize(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut pending_space = false;
    for c in s.chars().flat_map(char::to_lowercase) {
        if c.is_alphanumeric() {
            if pending_space && !out.is_empty() {
                out.push(' ');
            }
            pending_space = false;
            out.push(c);
        } else if c.is_whitespace() || matches!(c, '-' | '_' | '/') {
            pending_space = true;
        }
    }
    out
}

/// Levenshtein distance between `a` and `b` when it is at most `limit`.
pub fn bounded_levenshtein(a: &str, b: &str, limit: usize) -> Option<usize> {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    if a.len().abs_diff(b.len()) > limit {
        return None;
    }
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        cur[0] = i + 1;
        let mut row_min = cur[0];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
            row_min = row_min.min(cur[j + 1]);
        }
        if row_min > limit {
            return None;
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    let d = prev[b.len()];
    (d <= limit).then_some(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inv() -> Inventory {
        Inventory::from_json(
            r#"{"items":[{"id":"1","name":"green apple","aliases":["apple"]},
            {"id":"2","name":"banana"},{"id":"3","name":"water bottle","aliases":["water"]},
            {"id":"4","name":"tea"},{"id":"5","name":"pea"}]}"#,
        )
        .unwrap()
    }

    #[test]
    fn normalises() {
        assert_eq!(normalize("  Green-APPLE!! "), "green apple");
        assert_eq!(normalize("Coca_Cola  (330ml)"), "coca cola 330ml");
    }

    #[test]
    fn levenshtein_is_bounded() {
        assert_eq!(
            bounded_levenshtein("grean apple", "green apple", 2),
            Some(1)
        );
        assert_eq!(bounded_levenshtein("kitten", "sitting", 2), None);
        assert_eq!(bounded_levenshtein("kitten", "sitting", 3), Some(3));
    }

    #[test]
    fn canonical_names() {
        let i = inv();
        assert_eq!(i.canonical("Green Apple", 2), Some("green apple"));
        assert_eq!(i.canonical("APPLE", 2), Some("green apple"));
        assert_eq!(i.canonical("grean apple", 2), Some("green apple"));
        assert_eq!(i.canonical("grean apple", 0), None);
        assert_eq!(i.canonical("bananna", 2), Some("banana"));
        assert_eq!(i.canonical("tee", 2), None, "short names never fuzzy-match");
        assert_eq!(i.canonical("pizza", 2), None);
        assert_eq!(i.canonical("", 2), None);
    }

    #[test]
    fn orders_parse() {
        let o =
            Orders::from_json(r#"{"384":[{"name":"green apple","quantity":2},{"name":"banana"}]}"#)
                .unwrap();
        assert_eq!(o.get("384").unwrap()[1].quantity, 1);
        assert!(o.get("385").is_none());
        assert!(Orders::from_json(r#"{"../x":[]}"#).is_err());
        assert!(Orders::from_json(r#"{"1":[{"name":"a","quantity":-1}]}"#).is_err());
    }
}
