//! The bus-message contract between a station pipeline and the orchestrator, end to end:
//! `gst-launch-1.0 -e -m` under `LC_ALL=C` runs `pipelines/test-source.pipeline` (our three
//! elements, the real OCR models) into a real S3 server, and its stdout is read with
//! `oa_contract::parse_launch_line`, the orchestrator's own parser.

use std::time::{Duration, Instant};

use oa_contract::{CompletionReason, LaunchMessage};
use oa_e2e::*;
use oa_test_support::s3::TestS3;

/// `(station, frames_received, frames_stored)` of each progress message.
fn progress(messages: &[LaunchMessage]) -> Vec<(Option<String>, u64, u64)> {
    messages
        .iter()
        .filter_map(|m| match m {
            LaunchMessage::Progress {
                station_id,
                frames_received,
                frames_stored,
                ..
            } => Some((station_id.clone(), *frames_received, *frames_stored)),
            _ => None,
        })
        .collect()
}

#[test]
fn playing_progress_and_order_stored_reach_the_orchestrator() {
    let dir = TempDir::new("messages");
    let server = TestS3::start(dir.path().join("s3"), ACCESS_KEY, SECRET_KEY, &[BUCKET]);
    let srt = dir.path().join("slips.srt");
    write_srt(
        &srt,
        &[Slip {
            start_s: 0.0,
            end_s: 600.0,
            text: "ORDER #384",
        }],
    );
    let pipeline = station_1_pipeline(
        "test-source.pipeline",
        srt.display().to_string(),
        server.endpoint(),
        "e2e-messages".into(),
    );
    let mut launch = Launch::start_with_messages(
        &pipeline,
        dir.path().join("gst-launch.log"),
        dir.path().join("stdout.log"),
    );

    // While it runs: PLAYING, then progress at the source's 1 frame/s with frames of the
    // order stored.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let messages = launch.messages();
        let stored = progress(&messages)
            .iter()
            .filter(|(_, _, stored)| *stored > 0)
            .count();
        if messages.contains(&LaunchMessage::Playing) && stored >= 3 {
            break;
        }
        launch.assert_running();
        assert!(
            Instant::now() < deadline,
            "no PLAYING and 3 progress messages with stored frames within 90 s:\n{}",
            launch.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // SIGINT, as the orchestrator stops a station: gst-launch -e turns it into EOS, which
    // completes and stores the open order.
    launch.interrupt();
    let log = launch.log_text();
    let status = launch.wait(Duration::from_secs(60));
    assert!(status.success(), "gst-launch-1.0 failed: {status}\n{log}");
    let stdout = std::fs::read_to_string(dir.path().join("stdout.log")).unwrap();
    let all: Vec<LaunchMessage> = stdout
        .lines()
        .filter_map(oa_contract::parse_launch_line)
        .collect();

    let playing = all.iter().filter(|m| **m == LaunchMessage::Playing).count();
    assert_eq!(playing, 1, "{stdout}");

    let ticks = progress(&all);
    assert!(
        ticks
            .windows(2)
            .all(|w| w[0].1 <= w[1].1 && w[0].2 <= w[1].2),
        "counters only grow: {ticks:?}"
    );
    let (first, last) = (&ticks[0], &ticks[ticks.len() - 1]);
    assert!(last.1 > first.1, "frames received grow: {ticks:?}");
    assert!(
        ticks
            .iter()
            .any(|(station, _, _)| station.as_deref() == Some("station_1")),
        "{ticks:?}"
    );

    let stored: Vec<_> = all
        .iter()
        .filter_map(|m| match m {
            LaunchMessage::OrderStored {
                station_id,
                order_id,
                frame_count,
                reason,
                key,
            } => Some((
                station_id.as_str(),
                order_id.as_str(),
                *frame_count,
                *reason,
                key.as_str(),
            )),
            _ => None,
        })
        .collect();
    let [(station, order, frame_count, reason, key)] = stored[..] else {
        panic!("one order-stored expected: {stored:?}\n{stdout}");
    };
    assert_eq!(
        (station, order, reason, key),
        (
            "station_1",
            "384",
            CompletionReason::EndOfStream,
            "station_1/384/__EOS__"
        )
    );
    // The message tells the truth about the bucket.
    let orders = stored_orders(&server.root().join(BUCKET));
    let manifest = orders["384"].manifest.as_ref().expect("marker stored");
    assert_eq!(manifest.frame_count, frame_count);
    assert!(frame_count >= 3, "{frame_count} frames");
    assert!(
        all.iter().any(|m| matches!(
            m,
            LaunchMessage::OrderComplete { order_id, reason: CompletionReason::EndOfStream, .. }
                if order_id == "384"
        )),
        "{stdout}"
    );
    server.shutdown();
}
