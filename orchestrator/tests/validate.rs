//! Validation against upstream-style orders: matching through names, aliases and fuzzy
//! names; quantity mismatches, extras, missing items, unknown orders and accuracy.

use orchestrator::orders::{Inventory, Orders};
use orchestrator::result::{Item, OrderStatus, QuantityMismatch};
use orchestrator::validate::validate;

const ORDERS: &str = r#"{
  "384": [{"name": "green apple", "quantity": 2}, {"name": "banana", "quantity": 1}],
  "651": [{"name": "water bottle", "quantity": 1}, {"name": "banana", "quantity": 3}],
  "925": [{"name": "green apple", "quantity": 1}, {"name": "water bottle", "quantity": 2},
          {"name": "potato chips", "quantity": 1}]
}"#;

const INVENTORY: &str = r#"{"items": [
  {"id": "001", "name": "green apple", "aliases": ["apple", "granny smith"]},
  {"id": "002", "name": "banana", "aliases": []},
  {"id": "003", "name": "water bottle", "aliases": ["water", "aqua"]},
  {"id": "004", "name": "potato chips", "aliases": ["crisps"]},
  {"id": "005", "name": "orange juice", "aliases": ["oj"]}
]}"#;

fn item(name: &str, quantity: u32) -> Item {
    Item {
        name: name.into(),
        quantity,
    }
}

fn setup() -> (Orders, Inventory) {
    (
        Orders::from_json(ORDERS).unwrap(),
        Inventory::from_json(INVENTORY).unwrap(),
    )
}

#[test]
fn exact_order_is_validated() {
    let (o, inv) = setup();
    let v = validate(
        o.get("384"),
        &[item("green apple", 2), item("banana", 1)],
        &inv,
    );
    assert_eq!(v.status, OrderStatus::Validated);
    assert_eq!(v.matched, vec![item("green apple", 2), item("banana", 1)]);
    assert!(v.missing.is_empty() && v.extra.is_empty() && v.quantity_mismatch.is_empty());
    assert_eq!(v.accuracy, 1.0);
}

#[test]
fn aliases_fuzzy_names_and_case_match() {
    let (o, inv) = setup();
    // "apple" is an alias, "grean apple" one edit away, "BANANA!" normalises.
    let v = validate(
        o.get("384"),
        &[item("apple", 1), item("grean apple", 1), item("BANANA!", 1)],
        &inv,
    );
    assert_eq!(v.status, OrderStatus::Validated, "{v:?}");
    assert_eq!(v.detected, vec![item("green apple", 2), item("banana", 1)]);
    assert_eq!(v.accuracy, 1.0);
}

#[test]
fn quantity_mismatch() {
    let (o, inv) = setup();
    let v = validate(o.get("651"), &[item("water", 1), item("banana", 2)], &inv);
    assert_eq!(v.status, OrderStatus::Mismatch);
    assert_eq!(
        v.quantity_mismatch,
        vec![QuantityMismatch {
            name: "banana".into(),
            expected: 3,
            detected: 2
        }]
    );
    assert_eq!(v.matched, vec![item("water bottle", 1), item("banana", 2)]);
    assert!(v.missing.is_empty() && v.extra.is_empty());
    // 3 of 4 expected units found.
    assert!((v.accuracy - 0.75).abs() < 1e-9, "{}", v.accuracy);
}

#[test]
fn surplus_units_lower_accuracy() {
    let (o, inv) = setup();
    let v = validate(
        o.get("384"),
        &[item("green apple", 4), item("banana", 1)],
        &inv,
    );
    assert_eq!(v.status, OrderStatus::Mismatch);
    assert_eq!(v.quantity_mismatch.len(), 1);
    // correct 3 / (expected 3 + surplus 2)
    assert!((v.accuracy - 0.6).abs() < 1e-9, "{}", v.accuracy);
}

#[test]
fn extras_and_missing() {
    let (o, inv) = setup();
    let v = validate(
        o.get("925"),
        &[
            item("green apple", 1),
            item("aqua", 2),
            item("oj", 1),
            item("hamburger", 1),
        ],
        &inv,
    );
    assert_eq!(v.status, OrderStatus::Mismatch);
    assert_eq!(v.missing, vec![item("potato chips", 1)]);
    assert_eq!(v.extra, vec![item("orange juice", 1), item("hamburger", 1)]);
    assert_eq!(
        v.matched,
        vec![item("green apple", 1), item("water bottle", 2)]
    );
    // correct 3 / (expected 4 + extra 2)
    assert!((v.accuracy - 0.5).abs() < 1e-9, "{}", v.accuracy);
}

#[test]
fn nothing_detected() {
    let (o, inv) = setup();
    let v = validate(o.get("384"), &[], &inv);
    assert_eq!(v.status, OrderStatus::Mismatch);
    assert_eq!(v.missing.len(), 2);
    assert_eq!(v.accuracy, 0.0);
}

#[test]
fn unknown_order() {
    let (o, inv) = setup();
    let v = validate(o.get("999"), &[item("apple", 1)], &inv);
    assert_eq!(v.status, OrderStatus::UnknownOrder);
    assert!(v.expected.is_empty());
    assert_eq!(v.detected, vec![item("green apple", 1)]);
    assert_eq!(v.accuracy, 0.0);
}

#[test]
fn empty_order_with_nothing_detected_is_validated() {
    let inv = Inventory::from_json(INVENTORY).unwrap();
    let v = validate(Some(&[]), &[], &inv);
    assert_eq!(v.status, OrderStatus::Validated);
    assert_eq!(v.accuracy, 1.0);
}

#[test]
fn expected_names_are_canonicalised_too() {
    let inv = Inventory::from_json(INVENTORY).unwrap();
    let expected = [item("Apple", 1), item("green apple", 1)];
    let v = validate(Some(&expected), &[item("granny smith", 2)], &inv);
    assert_eq!(v.status, OrderStatus::Validated, "{v:?}");
    assert_eq!(v.expected, vec![item("green apple", 2)]);
}
