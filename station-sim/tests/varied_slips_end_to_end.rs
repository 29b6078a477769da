//! `scenarios/varied-slips.toml` end to end: slips at different positions, turned up to
//! 10 degrees on the table, a tilted camera, in two fonts, with noise, motion blur and
//! lighting changes: every order ID is read,
//! each order is found exactly once and nothing is left unprocessed.

use station_sim::run;

#[test]
fn varied_slips_every_order_id_is_read() {
    let out = run::run(&run::scenario_path("varied-slips.toml"), "varied");
    eprintln!(
        "{}\n{}\nran in {:.0} s",
        out.table(),
        out.evaluate(),
        out.seconds
    );
    out.assert_segmentation();
}
