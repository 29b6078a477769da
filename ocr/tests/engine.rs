//! The engine on the shipped models (scripts/setup.sh), without GStreamer: sessions are
//! built through `oa_ocr::session`, and images that hold no text read as nothing. Reading
//! real text is tested where text is rendered, in the plugin's `ocrsegment` tests.

use oa_ocr::{BgrImage, DET_MODEL, OcrConfig, OcrEngine, SessionOptions, resolve_model_dir};

#[test]
fn models_load_and_blank_images_read_nothing() {
    let mut engine = OcrEngine::new(&OcrConfig::default()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(engine.model_dir(), resolve_model_dir(None));
    let blank = BgrImage::filled(640, 360, [255, 255, 255]);
    assert!(engine.detect_and_recognize(&blank).unwrap().is_empty());
    assert!(engine.recognize_region(&blank).unwrap().is_empty());
    // Too small to hold text: no model runs.
    let tiny = BgrImage::filled(3, 3, [0, 0, 0]);
    assert!(engine.detect(&tiny).unwrap().is_empty());
}

#[test]
fn sessions_build_with_and_without_the_arena() {
    let model = resolve_model_dir(None).join(DET_MODEL);
    for arena in [true, false] {
        let session = SessionOptions::default()
            .with_arena(arena)
            .with_intra_threads(2)
            .load(&model)
            .unwrap_or_else(|e| panic!("arena {arena}: {e}"));
        assert_eq!(session.inputs().len(), 1);
    }
    let bogus = std::env::temp_dir().join(format!("oa-ocr-bogus-{}.onnx", std::process::id()));
    std::fs::write(&bogus, b"not a model").unwrap();
    let e = SessionOptions::default()
        .load(&bogus)
        .unwrap_err()
        .to_string();
    std::fs::remove_file(&bogus).ok();
    assert!(
        e.contains("cannot load model") && e.contains("oa-ocr-bogus"),
        "{e}"
    );
}
