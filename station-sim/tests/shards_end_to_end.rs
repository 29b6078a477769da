//! Scaled out: 3 `--role stations` replicas sharding 12 stations and 2 `--role consumer`
//! replicas, with a consumer and a station replica SIGKILLed mid-order (see
//! `station_sim::shards`). Needs the release binaries and the plugin (scripts/test.sh).

use station_sim::shards::{STATIONS, run_shards};

#[test]
fn every_station_has_one_pipeline_and_every_order_one_result_through_kills() {
    let out = run_shards();
    let table = out.table();
    println!("{table}");
    // A passing test's output is hidden: scripts/test.sh prints this file after the tests.
    let _ = std::fs::write(
        station_sim::run::release_dir().join("shards-table.txt"),
        &table,
    );
    let ran: usize = out.stations_by_shard.values().map(Vec::len).sum();
    assert_eq!(ran, STATIONS, "{table}");
    assert!(out.doubly_run.is_empty() && out.unrun.is_empty(), "{table}");
    for (k, ids) in &out.stations_by_shard {
        assert_eq!(out.pipelines_by_shard.get(k), Some(&ids.len()), "{table}");
        assert_eq!(
            out.pipelines_after_restart.get(k),
            Some(&ids.len()),
            "{table}"
        );
    }
    assert!(
        out.consumer_killed.is_some(),
        "no consumer was killed: {table}"
    );
    assert!(out.replica_killed.is_some(), "{table}");
    let (t, _, from, to) = out.replica_killed_during.clone().expect("killed mid-order");
    assert!(
        from < t && t < to,
        "the replica was not killed mid-order: {table}"
    );
    assert_eq!(out.expected, STATIONS * 3, "{table}");
    assert!(out.lost.is_empty(), "{table}");
    assert_eq!(out.duplicated, 0, "{table}");
    assert_eq!(out.frames_left_out, 0, "{table}");
    assert!(out.notes.is_empty(), "{table}");
}
