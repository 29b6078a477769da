//! The `labels` backend on frames rendered by GStreamer (`textoverlay` on a white picture,
//! JPEG-encoded by `jpegenc`), read by the shipped PP-OCR models.

use orchestrator::config::RecognitionConfig;
use orchestrator::orders::Inventory;
use orchestrator::recognize::labels::{ORDER_SLIP_PATTERN, count_labels, merge_max};
use orchestrator::recognize::{Frame, Recognizer, build};
use orchestrator::result::Item;
use std::sync::{Arc, OnceLock};

fn inventory() -> Arc<Inventory> {
    Arc::new(
        Inventory::from_json(
            r#"{"items":[{"id":"1","name":"green apple","aliases":["apple"]},
                {"id":"2","name":"banana"},
                {"id":"3","name":"water bottle","aliases":["water"]}]}"#,
        )
        .unwrap(),
    )
}

fn item(name: &str, quantity: u32) -> Item {
    Item {
        name: name.into(),
        quantity,
    }
}

/// A 1280x720 white JPEG with black `texts`, one per row (`ypos` 0..1 from the top).
fn render(texts: &[&str]) -> Vec<u8> {
    let mut desc = String::from(
        "videotestsrc pattern=white num-buffers=1 ! video/x-raw,width=1280,height=720,framerate=30/1",
    );
    for (i, text) in texts.iter().enumerate() {
        let ypos = 0.1 + 0.8 * i as f64 / texts.len().max(1) as f64;
        desc.push_str(&format!(
            " ! textoverlay text=\"{text}\" font-desc=\"Sans Bold 40\" halignment=position \
             valignment=position xpos=0.1 ypos={ypos:.2} color=0xff000000 draw-outline=false \
             draw-shadow=false"
        ));
    }
    desc.push_str(" ! videoconvert ! jpegenc quality=90 ! appsink name=sink sync=false");
    oa_test_support::buffers(&desc).remove(0)
}

/// One backend for the whole file: the OCR models load once.
fn recognizer() -> Arc<dyn Recognizer> {
    static R: OnceLock<Arc<dyn Recognizer>> = OnceLock::new();
    R.get_or_init(|| {
        let cfg = RecognitionConfig::default();
        build(&cfg, inventory()).unwrap_or_else(|e| panic!("labels backend: {e}"))
    })
    .clone()
}

fn frame(key: &str, texts: &[&str]) -> Frame {
    Frame {
        key: key.into(),
        jpeg: render(texts),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_labels_and_takes_the_maximum_per_frame() {
    let r = recognizer();
    assert_eq!(r.name(), "labels");
    let a = frame("a", &["green apple", "ORDER #384", "green apple", "banana"]);
    let b = frame("b", &["GREEN APPLE", "water bottle"]);
    let items = r.recognize(std::slice::from_ref(&a)).await.unwrap();
    assert_eq!(items, vec![item("green apple", 2), item("banana", 1)]);
    let items = r.recognize(&[a, b]).await.unwrap();
    let mut sorted = items.clone();
    sorted.sort_by(|x, y| x.name.cmp(&y.name));
    // green apple: 2 on frame a, 1 on frame b -> 2 (the same apples, seen twice)
    assert_eq!(
        sorted,
        vec![
            item("banana", 1),
            item("green apple", 2),
            item("water bottle", 1)
        ],
        "{items:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aliases_and_unrelated_text() {
    let r = recognizer();
    let items = r
        .recognize(&[frame("c", &["apple", "Thank you!", "#651"])])
        .await
        .unwrap();
    assert_eq!(items, vec![item("green apple", 1)]);
    let items = r.recognize(&[frame("d", &[])]).await.unwrap();
    assert!(items.is_empty(), "{items:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_frames_are_skipped_and_all_corrupt_fails() {
    let r = recognizer();
    let bad = Frame {
        key: "bad".into(),
        jpeg: b"not a jpeg".to_vec(),
    };
    let items = r
        .recognize(&[bad.clone(), frame("ok", &["banana"])])
        .await
        .unwrap();
    assert_eq!(items, vec![item("banana", 1)]);
    let e = r.recognize(&[bad]).await.unwrap_err();
    assert!(e.to_string().contains("bad"), "{e}");
}

#[test]
fn counting_rules_without_ocr() {
    let inv = inventory();
    let slip = regex::Regex::new(ORDER_SLIP_PATTERN).unwrap();
    let frame1 = count_labels(
        [
            ("green apple", 0.9),
            ("grean apple", 0.8),
            ("ORDER #384", 0.99),
            ("Order 384", 0.99),
            ("384", 0.99),
            ("banana", 0.3),
            ("water", 0.9),
        ],
        &inv,
        0.5,
        2,
        &slip,
    );
    assert_eq!(
        frame1,
        vec![item("green apple", 2), item("water bottle", 1)]
    );
    let frame2 = vec![item("green apple", 1), item("banana", 3)];
    assert_eq!(
        merge_max(&[frame1, frame2]),
        vec![
            item("green apple", 2),
            item("water bottle", 1),
            item("banana", 3)
        ]
    );
}
