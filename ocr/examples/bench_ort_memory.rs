//! Peak RSS of the PP-OCR detection model in ONNX Runtime, with and without ORT's CPU
//! arena and memory pattern: evidence for what bounds a station pipeline's memory.
//!
//! `cargo run --release -p oa-ocr --example bench_ort_memory`
//! (prints one `BENCH_JSON {...}` line per configuration)
//!
//! Each configuration runs in a child process (a fresh `VmHWM`): one session of
//! `PP-OCRv6_det_small.onnx`, built by [`oa_ocr::SessionOptions`] as every model of the
//! project is (one intra-op thread), 5 runs on a WxH input.

use oa_ocr::SessionOptions;
use ort::value::TensorRef;

fn vm(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
        .unwrap_or(0)
}

fn child(w: usize, h: usize, arena: bool) {
    let model = oa_ocr::resolve_model_dir(None).join(oa_ocr::DET_MODEL);
    let mut det = SessionOptions::default()
        .with_arena(arena)
        .load(&model)
        .unwrap_or_else(|e| panic!("{e}"));
    let loaded = vm("VmRSS:");
    let input = vec![0.5f32; 3 * w * h];
    for _ in 0..5 {
        let t = TensorRef::from_array_view(([1usize, 3, h, w], &*input)).unwrap();
        det.run(ort::inputs![t]).unwrap();
    }
    println!(
        "det {w}x{h}, arena+pattern {:<3}: RSS after load {:>4} MiB, peak {:>4} MiB",
        if arena { "on" } else { "off" },
        loaded / 1024,
        vm("VmHWM:") / 1024
    );
    println!(
        "BENCH_JSON {{\"ort_det_peak_mib {w}x{h} arena {}\":{}}}",
        if arena { "on" } else { "off" },
        vm("VmHWM:") / 1024
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() == 4 {
        let (w, h) = (args[1].parse().unwrap(), args[2].parse().unwrap());
        return child(w, h, args[3] == "on");
    }
    for (w, h) in [(960, 544), (1312, 736)] {
        for arena in ["on", "off"] {
            let st = std::process::Command::new(&args[0])
                .args([w.to_string(), h.to_string(), arena.into()])
                .status()
                .unwrap();
            assert!(st.success());
        }
    }
}
