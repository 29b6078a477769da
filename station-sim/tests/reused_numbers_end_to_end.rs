//! `scenarios/reused-numbers.toml` end to end: an order number that comes back at a station
//! after `reuse_after_s` is a new order (`384.2`) with its own frames, marker and result,
//! validated against the same expected items, while the first `384` keeps its frames and
//! its result; the same number at another station is that station's own.

use station_sim::run;

#[test]
fn a_reused_number_is_a_new_order_and_the_first_is_untouched() {
    let out = run::run(&run::scenario_path("reused-numbers.toml"), "reused");
    let table = out.table();
    eprintln!("{table}\n{}\nran in {:.0} s", out.evaluate(), out.seconds);
    let keys: Vec<(&str, &str)> = out
        .truth
        .orders
        .iter()
        .map(|e| (e.station_id.as_str(), e.order_id.as_str()))
        .collect();
    assert_eq!(
        keys,
        [
            ("station_1", "384"),
            ("station_1", "385"),
            ("station_1", "384.2"),
            ("station_2", "384")
        ]
    );
    out.assert_segmentation();
    for e in &out.truth.orders {
        if let Err(why) = out.result_matches(e) {
            panic!("{}/{}: {why}\n{table}", e.station_id, e.order_id);
        }
    }
    let result = |order: &str| &out.results[&("station_1".to_owned(), order.to_owned())];
    let (first, again) = (result("384"), result("384.2"));
    assert_eq!(first["status"], "validated", "{first}");
    assert_eq!(again["status"], "mismatch", "{again}");
    assert_eq!(
        first["revision"], 1,
        "the first order was not processed again: {first}"
    );
    assert!(first.get("occurrence").is_none(), "{first}");
    assert_eq!(again["occurrence"], 2, "{again}");
    assert_eq!(again["order_id"], "384.2");

    // Each marker lists only its own order's frames: all of the first inside its seconds,
    // all of the second inside its own.
    let starts = &out.stream_starts["station_1"];
    let seconds = |order: &str| -> Vec<f64> {
        out.frames[&("station_1".to_owned(), order.to_owned())]
            .iter()
            .map(|&ms| (ms as f64 - *starts as f64) / 1000.0)
            .collect()
    };
    for (order, from, to) in [("384", 1.0, 8.0), ("384.2", 17.0, 25.0)] {
        let s = seconds(order);
        assert!(s.len() >= 4, "{order}: {} frames", s.len());
        assert!(
            s.iter().all(|&t| from <= t && t <= to),
            "{order}: frames at {s:?} s, outside {from}..{to}"
        );
    }
}
