//! `scenarios/occlusions.toml` end to end (loopback RTSP, the S3 server, the orchestrator
//! with `pipelines/rtsp-camera.pipeline`): a hand over the slip for 1, 2 or 3 s in the
//! middle of an order, back-to-back orders and slips covered from their first second cost
//! no order its frames: frames stored per order within 1 of the seconds shown, no order
//! split, no frame of one order in another, frame attribution of at least 95 %.

use station_sim::{Attribution, run};

#[test]
fn occluded_slips_keep_their_frames() {
    let out = run::run(&run::scenario_path("occlusions.toml"), "occlusions");
    let attribution = Attribution::new(&out.truth, &out.frames, &out.stream_starts);
    let table = out.table();
    let ev = out.evaluate();
    eprintln!("{table}\n{attribution}\n{ev}\nran in {:.0} s", out.seconds);
    out.assert_segmentation();
    assert_eq!(ev.split, 0, "an order was split\n{table}");
    for o in &attribution.orders {
        assert!(
            (o.stored as f64 - o.shown_s).abs() <= 1.0,
            "{}/{}: {} frames stored for {} s shown\n{attribution}",
            o.station_id,
            o.order_id,
            o.stored,
            o.shown_s
        );
        assert_eq!(
            o.foreign, 0,
            "{}/{}: frames of another order\n{attribution}",
            o.station_id, o.order_id
        );
    }
    assert!(
        attribution.percent() >= 95.0,
        "attribution {:.1} %\n{attribution}",
        attribution.percent()
    );
    for e in &out.truth.orders {
        if let Err(why) = out.result_matches(e) {
            panic!("{}/{}: {why}\n{table}", e.station_id, e.order_id);
        }
    }
}
