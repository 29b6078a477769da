//! Peak RSS of the PP-OCR detection model in ONNX Runtime, with and without ORT's CPU
//! arena and memory pattern: evidence for what bounds a station pipeline's memory.
//!
//! `cargo run --release -p gst-plugin-orderaccuracy --example bench_ort_memory`
//! (prints one `BENCH_JSON {...}` line per configuration)
//!
//! Each configuration runs in a child process (a fresh `VmHWM`): one session of
//! `PP-OCRv6_det_small.onnx`, one intra-op thread, 5 runs on a WxH input.

use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
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
    let env = gstorderaccuracy::ocr::ort_environment().expect("ort");
    let model = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../models/PP-OCRv6_det_small.onnx");
    let mut b = Session::builder(env)
        .unwrap()
        .with_optimization_level(GraphOptimizationLevel::Level3)
        .unwrap()
        .with_intra_threads(1)
        .unwrap()
        .with_inter_threads(1)
        .unwrap()
        .with_intra_op_spinning(false)
        .unwrap();
    if !arena {
        b = b
            .with_memory_pattern(false)
            .unwrap()
            .with_execution_providers([ort::ep::CPU::default().with_arena_allocator(false).build()])
            .unwrap();
    }
    let mut det = b.commit_from_file(model).unwrap();
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
