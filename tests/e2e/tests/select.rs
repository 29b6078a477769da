//! Frame selection on synthetic JPEGs (encoded by GStreamer's jpegenc).

use orchestrator::select::{SelectError, select_frames, select_frames_scored};

/// Downscale and upscale again: the same picture, blurred.
const BLUR: &str = "videoscale ! video/x-raw,width=40,height=30 ! videoscale ! video/x-raw,width=320,height=240 ! ";

/// JPEGs of `pattern` (a videotestsrc pattern).
/// `filter` is a pipeline fragment ending in `! ` inserted before the encoder.
fn jpegs(pattern: &str, count: usize, filter: &str) -> Vec<Vec<u8>> {
    let out = oa_test_support::buffers(&format!(
        "videotestsrc pattern={pattern} num-buffers={count} ! video/x-raw,width=320,height=240 ! {filter}jpegenc ! appsink name=sink sync=false"
    ));
    assert_eq!(out.len(), count);
    out
}

#[test]
fn empty_and_all_corrupt_are_errors() {
    assert_eq!(select_frames(&[], 3), Err(SelectError::NoFrames));
    let e = select_frames(&[b"nope".to_vec(), vec![0xFF, 0xD8, 0xFF, 0x00, 1, 2]], 2).unwrap_err();
    assert!(
        matches!(e, SelectError::AllCorrupt { count: 2, .. }),
        "{e:?}"
    );
    assert!(e.to_string().contains("corrupt"), "{e}");
}

#[test]
fn corrupt_frames_are_skipped() {
    let mut frames = jpegs("smpte", 2, "");
    frames.insert(1, b"garbage".to_vec());
    let mut truncated = frames[0].clone();
    truncated.truncate(truncated.len() / 3);
    frames.push(truncated);
    let chosen = select_frames(&frames, 10).unwrap();
    assert!(!chosen.contains(&1), "{chosen:?}");
    assert!(chosen.contains(&0) && chosen.contains(&2), "{chosen:?}");
}

#[test]
fn prefers_sharp_frames_and_returns_capture_order() {
    let sharp = jpegs("checkers-8", 1, "");
    let blurred = jpegs("checkers-8", 1, BLUR);
    let frames = vec![blurred[0].clone(), sharp[0].clone(), blurred[0].clone()];
    assert_eq!(select_frames(&frames, 1).unwrap(), vec![1]);
    let two = select_frames_scored(&frames, 2).unwrap();
    assert_eq!(two.len(), 2);
    assert!(two[0].0 < two[1].0, "ascending");
    assert!(two.iter().any(|(i, _)| *i == 1));
    let sharp_score = two.iter().find(|(i, _)| *i == 1).unwrap().1;
    assert!(sharp_score.sharpness > 0.99, "{sharp_score:?}");
}

#[test]
fn prefers_different_frames() {
    // Two identical sharp frames and one different: with k = 2 the different one is taken
    // over the duplicate.
    let a = jpegs("smpte", 1, "").remove(0);
    let b = jpegs("smpte", 1, "videoflip video-direction=horiz ! ").remove(0);
    let frames = vec![a.clone(), a, b];
    let all = select_frames_scored(&frames, 3).unwrap();
    let chosen = select_frames(&frames, 2).unwrap();
    assert!(chosen.contains(&2), "{chosen:?} {all:?}");
    assert_eq!(select_frames(&frames, 0).unwrap(), Vec::<usize>::new());
    assert_eq!(select_frames(&frames, 5).unwrap(), vec![0, 1, 2]);
}

#[test]
fn rgb_coded_jpegs_are_scored() {
    // jpegenc fed RGB writes RGB-coded JPEGs (no luma plane), as a station pipeline
    // without a YUV conversion does; they must be scored, not called corrupt.
    let frames = jpegs("smpte", 3, "videoconvert ! video/x-raw,format=RGB ! ");
    let chosen = select_frames(&frames, 2).unwrap();
    assert_eq!(chosen.len(), 2, "{chosen:?}");
}
