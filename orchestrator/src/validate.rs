//! Compares the detected items with the expected order.
//!
//! Both sides are first mapped to inventory names ([`Inventory::canonical`]: exact name,
//! alias, then bounded fuzzy match); names the inventory does not know are kept in their
//! normalised form, so an unknown detected item shows up as an extra. Quantities of the
//! same name are added up.
//!
//! Per name, with `e` expected and `d` detected units:
//! - `matched` holds `min(e, d)` units when both are > 0;
//! - `missing` holds names with `d == 0` (quantity `e`);
//! - `extra` holds names with `e == 0` (quantity `d`);
//! - `quantity_mismatch` holds names with `e > 0`, `d > 0` and `e != d`.
//!
//! **Accuracy** = `correct_units / (expected_units + extra_units)`, where
//! `correct_units = Σ min(e, d)`, `expected_units = Σ e` and
//! `extra_units = Σ max(d − e, 0)` (unexpected items *and* surplus units of expected
//! ones). It equals `Σ min(e, d) / Σ max(e, d)`: 1.0 only for an exact match, lowered by
//! every missing, surplus or unexpected unit. An empty order with nothing detected is 1.0;
//! an unknown order is 0.0.

use serde::{Deserialize, Serialize};

use crate::orders::{Inventory, normalize};
use crate::result::{Item, OrderStatus, QuantityMismatch};

/// Edit distance used when mapping names to the inventory during validation.
pub const VALIDATION_EDIT_DISTANCE: usize = 2;

/// The validation part of a result; [`crate::result::OrderResult`] stores it inline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Validation {
    pub status: OrderStatus,
    pub expected: Vec<Item>,
    pub detected: Vec<Item>,
    pub matched: Vec<Item>,
    pub missing: Vec<Item>,
    pub extra: Vec<Item>,
    pub quantity_mismatch: Vec<QuantityMismatch>,
    pub accuracy: f64,
}

impl Validation {
    /// An order that was not compared: nothing matched, missing or extra, accuracy 0.
    pub fn unvalidated(status: OrderStatus, expected: Vec<Item>, detected: Vec<Item>) -> Self {
        Validation {
            status,
            expected,
            detected,
            matched: Vec::new(),
            missing: Vec::new(),
            extra: Vec::new(),
            quantity_mismatch: Vec::new(),
            accuracy: 0.0,
        }
    }
}

/// Maps items to inventory names and adds up quantities, keeping first-seen order.
fn canonicalize(items: &[Item], inventory: &Inventory) -> Vec<Item> {
    let mut out: Vec<Item> = Vec::new();
    for it in items {
        if it.quantity == 0 {
            continue;
        }
        let name = inventory
            .canonical(&it.name, VALIDATION_EDIT_DISTANCE)
            .map(str::to_owned)
            .unwrap_or_else(|| normalize(&it.name));
        if name.is_empty() {
            continue;
        }
        match out.iter_mut().find(|o| o.name == name) {
            Some(o) => o.quantity = o.quantity.saturating_add(it.quantity),
            None => out.push(Item {
                name,
                quantity: it.quantity,
            }),
        }
    }
    out
}

pub fn validate(expected: Option<&[Item]>, detected: &[Item], inventory: &Inventory) -> Validation {
    let detected = canonicalize(detected, inventory);
    let Some(expected) = expected else {
        return Validation::unvalidated(OrderStatus::UnknownOrder, Vec::new(), detected);
    };
    let expected = canonicalize(expected, inventory);
    let qty = |items: &[Item], name: &str| -> u32 {
        items
            .iter()
            .find(|i| i.name == name)
            .map_or(0, |i| i.quantity)
    };

    let mut matched = Vec::new();
    let mut missing = Vec::new();
    let mut extra = Vec::new();
    let mut quantity_mismatch = Vec::new();
    let mut correct: u64 = 0;
    let mut expected_units: u64 = 0;
    let mut extra_units: u64 = 0;

    for e in &expected {
        let d = qty(&detected, &e.name);
        expected_units += u64::from(e.quantity);
        correct += u64::from(e.quantity.min(d));
        extra_units += u64::from(d.saturating_sub(e.quantity));
        if d == 0 {
            missing.push(e.clone());
            continue;
        }
        matched.push(Item {
            name: e.name.clone(),
            quantity: e.quantity.min(d),
        });
        if d != e.quantity {
            quantity_mismatch.push(QuantityMismatch {
                name: e.name.clone(),
                expected: e.quantity,
                detected: d,
            });
        }
    }
    for d in &detected {
        if qty(&expected, &d.name) == 0 {
            extra_units += u64::from(d.quantity);
            extra.push(d.clone());
        }
    }

    let denominator = expected_units + extra_units;
    let accuracy = if denominator == 0 {
        1.0
    } else {
        correct as f64 / denominator as f64
    };
    let status = if missing.is_empty() && extra.is_empty() && quantity_mismatch.is_empty() {
        OrderStatus::Validated
    } else {
        OrderStatus::Mismatch
    };
    Validation {
        status,
        expected,
        detected,
        matched,
        missing,
        extra,
        quantity_mismatch,
        accuracy,
    }
}
