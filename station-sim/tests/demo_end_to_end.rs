//! `scenarios/demo.toml` end to end: 2 stations x 5 orders with a missing item, an extra
//! item, a wrong quantity and an unknown order; every order is found exactly once with
//! the expected status and differences, and nothing is left unprocessed.

use station_sim::run;

#[test]
fn demo_scenario_every_order_once_with_the_expected_outcome() {
    let out = run::run(&run::scenario_path("demo.toml"), "demo");
    let table = out.table();
    eprintln!("{table}\n{}\nran in {:.0} s", out.evaluate(), out.seconds);
    out.assert_segmentation();
    for e in &out.truth.orders {
        if let Err(why) = out.result_matches(e) {
            panic!("{}/{}: {why}\n{table}", e.station_id, e.order_id);
        }
    }
}
