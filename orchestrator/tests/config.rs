//! Configuration loading: the shipped example loads, and every invalid field is named.

use orchestrator::config::{Backend, Config, LabelsConfig, StructuredOutput};
use std::path::Path;

const MINIMAL: &str = r#"
orders_file = "orders.json"
inventory_file = "inventory.json"
[[stations]]
id = "station_1"
source = "rtsp://127.0.0.1:8554/station_1"
"#;

fn load(s: &str) -> Result<Config, String> {
    Config::from_toml_str(s, Path::new("/etc/oa")).map_err(|e| e.to_string())
}

fn err(s: &str) -> String {
    load(s).expect_err("configuration should be refused")
}

#[test]
fn example_file_loads() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("orchestrator.example.toml");
    let c = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.stations.len(), 2);
    assert_eq!(c.stations[0].id, "station_1");
    assert_eq!(c.stations[0].pipeline, "rtsp-camera.pipeline");
    assert_eq!(c.stations[0].roi.as_deref(), Some("0,0,640,200"));
    assert_eq!(c.stations[1].roi, None);
    assert_eq!(c.orders_file, path.parent().unwrap().join("orders.json"));
    assert!(c.supervision.pipelines_dir.ends_with("../pipelines"));
    assert!(
        c.supervision
            .pipelines_dir
            .join("rtsp-camera.pipeline")
            .is_file(),
        "example points at the shipped pipelines"
    );
    assert_eq!(c.recognition.backend, Backend::Labels);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    assert_eq!(c.storage.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
}

#[test]
fn defaults() {
    let c = load(MINIMAL).unwrap();
    assert_eq!(c.http.bind.to_string(), "127.0.0.1:8080");
    assert_eq!(c.storage.bucket, "frames");
    assert_eq!(c.storage.region, "us-east-1");
    assert!(c.storage.force_path_style);
    assert_eq!(c.storage.results_bucket, None);
    assert_eq!(c.supervision.backoff_s, vec![2, 4, 8, 16, 32, 60]);
    assert_eq!(c.supervision.gst_launch, Path::new("gst-launch-1.0"));
    assert!(
        c.supervision
            .pipelines_dir
            .join("recorded-file.pipeline")
            .is_file()
    );
    assert_eq!(c.processing.frames_per_order, 3);
    assert_eq!(c.processing.max_concurrent_orders, 4);
    assert!(c.processing.claim);
    assert_eq!(c.stations[0].idle_timeout_ms, 10_000);
    assert_eq!(c.stations[0].reuse_after_s, 1_800);
    assert_eq!(c.orders_file, Path::new("/etc/oa/orders.json"));
    assert_eq!(c.recognition.backend, Backend::Labels);
    assert_eq!(
        c.recognition.labels,
        LabelsConfig {
            min_confidence: 0.5,
            max_edit_distance: 2,
            model_dir: None,
            threads: 2,
            det_max_side: 736,
        }
    );
    assert!(c.warnings.is_empty());
}

#[test]
fn a_station_without_roi_gets_advice_naming_it() {
    let c = load(MINIMAL).unwrap();
    let advice = c.advice();
    assert_eq!(advice.len(), 1, "{advice:?}");
    assert!(
        advice[0].starts_with("stations[0].roi: not set")
            && advice[0].contains("orchestrator calibrate --config FILE --station station_1"),
        "{advice:?}"
    );
    let with_roi = MINIMAL.replace(
        "source = \"rtsp://127.0.0.1:8554/station_1\"",
        "source = \"rtsp://127.0.0.1:8554/station_1\"\nroi = \"0,0,640,200\"",
    );
    assert!(load(&with_roi).unwrap().advice().is_empty());
}

#[test]
fn file_sources_get_the_file_pipeline_and_absolute_paths() {
    let c = load(&MINIMAL.replace("rtsp://127.0.0.1:8554/station_1", "videos/a.mp4")).unwrap();
    assert_eq!(c.stations[0].source, "/etc/oa/videos/a.mp4");
    assert_eq!(c.stations[0].pipeline, "recorded-file.pipeline");
    let c = load(&MINIMAL.replace("rtsp://127.0.0.1:8554/station_1", "file:///v/a.mp4")).unwrap();
    assert_eq!(c.stations[0].source, "file:///v/a.mp4");
    assert_eq!(c.stations[0].pipeline, "recorded-file.pipeline");
    // A recording plays once unless `loop = true`; a camera is never "played once".
    assert!(c.stations[0].plays_once());
    let looped = MINIMAL.replace(
        "source = \"rtsp://127.0.0.1:8554/station_1\"",
        "source = \"/v/a.mp4\"\nloop = true",
    );
    assert!(!load(&looped).unwrap().stations[0].plays_once());
    assert!(!load(MINIMAL).unwrap().stations[0].plays_once());
    for camera in ["RTSP://cam/x", "rtspt://cam/x", "Rtsps://cam/x"] {
        let c = MINIMAL.replace("rtsp://127.0.0.1:8554/station_1", camera);
        assert!(!load(&c).unwrap().stations[0].plays_once(), "{camera}");
    }
}

#[test]
fn openai_backend() {
    let c = load(&format!(
        "{MINIMAL}\n[recognition]\nbackend = \"openai\"\n[recognition.openai]\nendpoint = \"http://127.0.0.1:8000/\"\nmodel = \"m\"\napi_key_env = \"VLM_KEY\"\n"
    ))
    .unwrap();
    assert_eq!(c.recognition.backend, Backend::OpenAi);
    let o = &c.recognition.openai;
    assert_eq!(o.endpoint, "http://127.0.0.1:8000");
    assert_eq!(o.model, "m");
    assert_eq!(o.api_key_env.as_deref(), Some("VLM_KEY"));
    assert_eq!(o.retries, 2);
    assert_eq!(o.structured_output, StructuredOutput::Auto);
    assert_eq!(o.chat_template_kwargs, None);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);

    let openai = "[recognition]\nbackend = \"openai\"\n[recognition.openai]\nendpoint = \"http://h:1\"\nmodel = \"m\"\n";
    let c = load(&format!(
        "{MINIMAL}\n{openai}structured_output = \"off\"\nmax_tokens = 2048\nchat_template_kwargs = {{ enable_thinking = false }}\n"
    ))
    .unwrap();
    let o = &c.recognition.openai;
    assert_eq!(o.structured_output, StructuredOutput::Off);
    assert_eq!(o.max_tokens, 2048);
    assert_eq!(
        o.chat_template_kwargs.as_ref().unwrap()["enable_thinking"],
        serde_json::Value::Bool(false)
    );
    for (bad, says) in [
        ("structured_output = \"maybe\"", "unknown variant"),
        ("max_tokens = 4", "recognition.openai.max_tokens"),
        ("chat_template_kwargs = 3", "expected a map"),
    ] {
        let e = err(&format!("{MINIMAL}\n{openai}{bad}\n"));
        assert!(e.contains(says), "{bad}: {e}");
    }
}

#[test]
fn first_release_flat_recognition_keys_still_load_with_a_warning() {
    let c = load(&format!(
        "{MINIMAL}\n[recognition]\nbackend = \"openai\"\nendpoint = \"http://127.0.0.1:8000/\"\nmodel = \"m\"\n"
    ))
    .unwrap();
    assert_eq!(c.recognition.backend, Backend::OpenAi);
    assert_eq!(c.recognition.openai.endpoint, "http://127.0.0.1:8000");
    assert_eq!(c.recognition.openai.model, "m");
    assert_eq!(c.warnings.len(), 2, "{:?}", c.warnings);
    assert!(
        c.warnings[0].contains("recognition.endpoint")
            && c.warnings[0].contains("recognition.openai.endpoint"),
        "{:?}",
        c.warnings
    );
    let c = load(&format!("{MINIMAL}\n[recognition]\nthreads = 1\n")).unwrap();
    assert_eq!(c.recognition.labels.threads, 1);
    assert!(c.warnings[0].contains("recognition.labels.threads"));
    // Both tables may be kept; only the chosen backend's is checked.
    let c = load(&format!(
        "{MINIMAL}\n[recognition]\nbackend = \"labels\"\n[recognition.openai]\nendpoint = \"\"\n"
    ))
    .unwrap();
    assert_eq!(c.recognition.backend, Backend::Labels);
}

#[test]
fn missing_stations() {
    let e = err("orders_file = \"o.json\"\ninventory_file = \"i.json\"\n");
    assert!(e.starts_with("stations:"), "{e}");
    let e = err("orders_file = \"o.json\"\ninventory_file = \"i.json\"\nstations = []\n");
    assert!(e.starts_with("stations:"), "{e}");
}

#[test]
fn bad_station_id() {
    let bad = format!("{MINIMAL}\n[[stations]]\nid = \"../etc\"\nsource = \"rtsp://h/x\"\n");
    let e = err(&bad);
    assert!(e.starts_with("stations[1].id:"), "{e}");
}

#[test]
fn duplicate_station_ids() {
    let dup = format!("{MINIMAL}\n[[stations]]\nid = \"station_1\"\nsource = \"rtsp://h/x\"\n");
    let e = err(&dup);
    assert!(e.starts_with("stations[1].id:"), "{e}");
    assert!(e.contains("duplicate"), "{e}");
}

#[test]
fn bad_bind_address() {
    let e = err(&format!("{MINIMAL}\n[http]\nbind = \"localhost\"\n"));
    assert!(e.starts_with("http.bind:"), "{e}");
}

#[test]
fn unknown_backend() {
    let e = err(&format!("{MINIMAL}\n[recognition]\nbackend = \"magic\"\n"));
    assert!(e.starts_with("recognition.backend:"), "{e}");
}

#[test]
fn bad_source_scheme() {
    let e = err(&MINIMAL.replace("rtsp://127.0.0.1:8554/station_1", "http://cam/1"));
    assert!(e.starts_with("stations[0].source:"), "{e}");
    assert!(e.contains("\"http\""), "{e}");
}

#[test]
fn other_invalid_fields_are_named() {
    let cases: &[(&str, &str)] = &[
        ("[storage]\nbucket = \"Bad_Bucket\"\n", "storage.bucket:"),
        ("[storage]\nprefix = \"frames\"\n", "storage.prefix:"),
        (
            "[storage]\nendpoint = \"minio:9000\"\n",
            "storage.endpoint:",
        ),
        (
            "[processing]\nframes_per_order = 0\n",
            "processing.frames_per_order:",
        ),
        ("[supervision]\nbackoff_s = []\n", "supervision.backoff_s:"),
        (
            "[recognition]\nbackend = \"openai\"\n[recognition.openai]\nmodel = \"m\"\n",
            "recognition.openai.endpoint:",
        ),
        (
            "[recognition]\nbackend = \"openai\"\n[recognition.openai]\nendpoint = \"ftp://api.example.com\"\nmodel = \"m\"\n",
            "recognition.openai.endpoint:",
        ),
        (
            "[recognition]\nbackend = \"openai\"\n[recognition.openai]\nendpoint = \"https://\"\nmodel = \"m\"\n",
            "recognition.openai.endpoint:",
        ),
        (
            "[recognition]\nbackend = \"openai\"\n[recognition.openai]\nendpoint = \"http://h:1\"\nmodel = \"m\"\nca_file = \"orders.json\"\n",
            "recognition.openai.ca_file:",
        ),
        (
            "[recognition]\nbackend = \"openai\"\n[recognition.openai]\nendpoint = \"http://h:1\"\nmodel = \"m\"\nprompt_file = \"missing-prompt.txt\"\n",
            "recognition.openai.prompt_file: /etc/oa/missing-prompt.txt does not exist",
        ),
        (
            "[recognition]\nbackend = \"openai\"\n[recognition.openai]\nendpoint = \"http://h:1\"\nmodel = \"m\"\nexamples_file = \"missing.json\"\n",
            "recognition.openai.examples_file: /etc/oa/missing.json does not exist",
        ),
        (
            "[recognition]\nbackend = \"openai\"\n[recognition.openai]\nendpoint = \"https://h:1\"\nmodel = \"m\"\nca_file = \"missing.pem\"\n",
            "recognition.openai.ca_file:",
        ),
        (
            "[recognition]\nbackend = \"openai\"\n[recognition.openai]\nendpoint = \"http://h:1\"\n",
            "recognition.openai.model:",
        ),
        (
            "[recognition]\nbackend = \"labels\"\nendpoint = \"http://h:1\"\n",
            "recognition.endpoint:",
        ),
        (
            "[recognition.labels]\nmin_confidence = 1.5\n",
            "recognition.labels.min_confidence:",
        ),
        (
            "[recognition.labels]\nthreads = 0\n",
            "recognition.labels.threads:",
        ),
        // the first release's flat form: the old key is named
        (
            "[recognition]\nthreads = 0\n",
            "recognition.labels.threads:",
        ),
        (
            "[recognition.labels]\ndet_max_side = 100\n",
            "recognition.labels.det_max_side:",
        ),
        (
            "[recognition]\nbackend = \"openai\"\nendpoint = \"http://h:1\"\nmodel = \"m\"\nthreads = 2\n",
            "recognition.threads:",
        ),
        (
            "[recognition.openai]\nendpoint = \"http://h:1\"\nunknown = 2\n",
            "line ",
        ),
    ];
    for (extra, field) in cases {
        let e = err(&format!("{MINIMAL}\n{extra}"));
        assert!(e.starts_with(field), "{extra:?}: {e}");
    }
    let e = err(&MINIMAL.replace("id = \"station_1\"", "id = \"station_1\"\nroi = \"1,2,3\""));
    assert!(e.starts_with("stations[0].roi:"), "{e}");
    // The rule ocrsegment applies at start (oa_contract::Roi): check-config passing means
    // the pipeline starts.
    let e = err(&MINIMAL.replace(
        "id = \"station_1\"",
        "id = \"station_1\"\nroi = \"0,0,4,4\"",
    ));
    assert!(e.starts_with("stations[0].roi:"), "{e}");
    assert_eq!(
        oa_contract::Roi::parse("0,0,4,4").unwrap_err().to_string(),
        e.trim_start_matches("stations[0].roi: ")
    );
    let c = load(&MINIMAL.replace(
        "id = \"station_1\"",
        "id = \"station_1\"\nroi = \" 10, 20,300 ,80 \"",
    ))
    .unwrap();
    assert_eq!(c.stations[0].roi.as_deref(), Some("10,20,300,80"));
    let e = err(&MINIMAL.replace("orders_file = \"orders.json\"\n", ""));
    assert!(e.starts_with("orders_file:"), "{e}");
    // A reuse window inside the idle timeout would split one order.
    let station = |extra: &str| {
        MINIMAL.replace(
            "id = \"station_1\"",
            &format!("id = \"station_1\"\n{extra}"),
        )
    };
    let e = err(&station("idle_timeout_ms = 5000\nreuse_after_s = 5"));
    assert!(
        e.starts_with("stations[0].reuse_after_s:") && e.contains("5000 ms"),
        "{e}"
    );
    let c = load(&station("idle_timeout_ms = 5000\nreuse_after_s = 6")).unwrap();
    assert_eq!(c.stations[0].reuse_after_s, 6);
    let c = load(&station("idle_timeout_ms = 3600000")).unwrap();
    assert_eq!(
        c.stations[0].reuse_after_s, 3_601,
        "the default outgrows a longer idle timeout"
    );
    let c = load(&station("reuse_after_s = 0")).unwrap();
    assert_eq!(
        c.stations[0].reuse_after_s, 0,
        "0: numbers are never new orders"
    );
}

#[test]
fn unknown_keys_and_syntax_errors_give_the_line() {
    let e = err(&format!("{MINIMAL}\n[http]\nbindd = \"1.2.3.4:5\"\n"));
    assert!(e.starts_with("line "), "{e}");
    assert!(e.contains("bindd"), "{e}");
    let e = err("stations = [");
    assert!(e.starts_with("line "), "{e}");
}

#[test]
fn load_names_a_missing_file() {
    let e = Config::load(Path::new("/nonexistent/oa.toml")).unwrap_err();
    assert!(e.to_string().starts_with("/nonexistent/oa.toml:"), "{e}");
}

#[test]
fn selection_detector() {
    assert_eq!(
        load(MINIMAL).unwrap().detector(),
        None,
        "no detector by default"
    );
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let model = fixtures.join("tiny_yolo.onnx");
    let table = |body: &str| {
        format!(
            "{MINIMAL}\n[selection]\ndetector_model = {:?}\n{body}",
            model.display().to_string()
        )
    };
    let c = load(&table(
        "classes = [\"person\", \"item\"]\ndrop_classes = [\"person\"]\n",
    ))
    .unwrap();
    let d = c.detector().expect("a detector");
    assert_eq!(d.model, model);
    assert_eq!(d.classes, ["person", "item"]);
    assert_eq!(d.drop_classes, ["person"]);
    assert_eq!(
        (d.min_confidence, d.dominate_fraction, d.input_size),
        (0.25, 0.4, 640)
    );
    // Relative model paths are resolved against the configuration's folder.
    let c = Config::from_toml_str(
        &format!(
            "{MINIMAL}\n[selection]\ndetector_model = \"tiny_yolo.onnx\"\nclasses = [\"person\", \"item\"]\nmin_confidence = 0.5\ndominate_fraction = 0.6\n"
        ),
        &fixtures,
    )
    .unwrap();
    let d = c.detector().unwrap();
    assert_eq!(d.model, model);
    assert_eq!((d.min_confidence, d.dominate_fraction), (0.5, 0.6));
    assert!(d.drop_classes.is_empty());

    let cases: Vec<(String, &str)> = vec![
        (
            table("classes = [\"person\", \"item\"]\ndrop_classes = [\"hand\"]\n"),
            "selection.drop_classes:",
        ),
        (table(""), "selection.classes:"),
        (
            table("classes = [\"item\", \"item\"]\n"),
            "selection.classes:",
        ),
        (
            table("classes = [\"person\"]\nmin_confidence = 0\n"),
            "selection.min_confidence:",
        ),
        (
            table("classes = [\"person\"]\ndominate_fraction = 1.5\n"),
            "selection.dominate_fraction:",
        ),
        (
            table("classes = [\"person\"]\ninput_size = 100\n"),
            "selection.input_size:",
        ),
        (
            format!("{MINIMAL}\n[selection]\nclasses = [\"person\"]\n"),
            "selection.classes:",
        ),
        (
            format!(
                "{MINIMAL}\n[selection]\ndetector_model = \"/nonexistent/yolo.onnx\"\nclasses = [\"person\"]\n"
            ),
            "selection.detector_model:",
        ),
    ];
    for (text, field) in &cases {
        let e = err(text);
        assert!(e.starts_with(field), "{text:?}: {e}");
    }
    let e = err(&table(
        "classes = [\"person\", \"item\"]\ndrop_classes = [\"hand\"]\n",
    ));
    assert!(e.contains("\"hand\""), "{e}");
    let e = err(&format!("{MINIMAL}\n[selection]\nclasses = [\"person\"]\n"));
    assert!(e.contains("detector_model"), "{e}");
}

#[test]
fn embedded_s3_defaults_and_checks_its_endpoint() {
    let base = "orders_file = \"o.json\"\ninventory_file = \"i.json\"\n[[stations]]\nid = \"s1\"\nsource = \"rtsp://127.0.0.1:8554/s1\"\n";
    let dir = std::path::Path::new("/cfg");
    let c = orchestrator::config::Config::from_toml_str(
        &format!("{base}[storage]\nembedded_root = \"s3-data\"\n"),
        dir,
    )
    .unwrap();
    assert_eq!(
        c.storage.embedded_root.as_deref(),
        Some(std::path::Path::new("/cfg/s3-data"))
    );
    assert_eq!(c.storage.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
    let e = orchestrator::config::Config::from_toml_str(
        &format!(
            "{base}[storage]\nembedded_root = \"d\"\nendpoint = \"http://minio.local:9000\"\n"
        ),
        dir,
    )
    .unwrap_err()
    .to_string();
    assert!(e.starts_with("storage.endpoint"), "{e}");
}

/// `Tokens::load` for `s` at /etc/oa/orchestrator.toml, with `env` as the environment.
fn tokens(
    s: &str,
    env: &[(&str, &str)],
) -> Result<Option<std::sync::Arc<orchestrator::http::auth::Tokens>>, String> {
    let c = load(s)?;
    orchestrator::http::auth::Tokens::load(&c.http, Path::new("/etc/oa/orchestrator.toml"), |k| {
        env.iter()
            .find(|(name, _)| *name == k)
            .map(|(_, v)| v.to_string())
    })
    .map_err(|e| e.to_string())
}

#[test]
fn http_token_keys_default_and_tokens_never_come_from_the_config_file() {
    let c = load(MINIMAL).unwrap();
    assert_eq!(c.http.tokens_file, None);
    assert!(!c.http.allow_anonymous);
    // Only a path to them: a token in the file itself is an unknown key.
    let e = err(&format!(
        "{MINIMAL}[http]\ntokens = [\"0123456789abcdef\"]\n"
    ));
    assert!(e.contains("unknown field") && e.contains("tokens"), "{e}");
    let c = load(&format!(
        "{MINIMAL}[http]\nbind = \"0.0.0.0:8080\"\ntokens_file = \"api-tokens\"\nallow_anonymous = true\n"
    ))
    .unwrap();
    assert_eq!(
        c.http.tokens_file_in(Path::new("/etc/oa")).as_deref(),
        Some(Path::new("/etc/oa/api-tokens")),
        "relative to the configuration's folder"
    );
    assert!(c.http.allow_anonymous);
}

#[test]
fn beyond_loopback_an_api_without_tokens_is_refused_naming_http_bind() {
    let open = |bind: &str, extra: &str| format!("{MINIMAL}[http]\nbind = \"{bind}\"\n{extra}");
    for bind in ["0.0.0.0:8080", "192.168.1.10:8080", "[::]:8080"] {
        let e = tokens(&open(bind, ""), &[]).unwrap_err();
        assert!(e.starts_with("http.bind: "), "{e}");
        assert!(
            e.contains("no API tokens") && e.contains("allow_anonymous"),
            "{e}"
        );
        assert!(!e.contains('\n'), "one line: {e}");
        // Explicitly open.
        assert!(
            tokens(&open(bind, "allow_anonymous = true\n"), &[])
                .unwrap()
                .is_none()
        );
        // With tokens.
        let t = tokens(
            &open(bind, ""),
            &[("OA_API_READ_TOKENS", "read-token-0123456789")],
        )
        .unwrap()
        .expect("tokens");
        assert_eq!(t.len(), 1);
    }
    // On loopback, no tokens keeps the API open as before.
    for bind in ["127.0.0.1:8080", "[::1]:8080", "[::ffff:127.0.0.1]:8080"] {
        assert!(tokens(&open(bind, ""), &[]).unwrap().is_none(), "{bind}");
    }
    assert!(tokens(MINIMAL, &[]).unwrap().is_none());
    // Tokens are asked for on loopback too once configured.
    assert!(
        tokens(
            MINIMAL,
            &[("OA_API_WRITE_TOKENS", "write-token-0123456789")]
        )
        .unwrap()
        .is_some()
    );
    // A short token is a configuration error, whatever the bind.
    let e = tokens(MINIMAL, &[("OA_API_WRITE_TOKENS", "short")]).unwrap_err();
    assert!(e.starts_with("OA_API_WRITE_TOKENS: token 1: "), "{e}");
    assert!(e.contains("guessed"), "{e}");
}

#[test]
fn tokens_file_is_read_relative_to_the_config_and_errors_name_its_line() {
    use orchestrator::http::auth::{Scope, Tokens};
    let dir = std::env::temp_dir().join(format!("oa-config-tokens-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("orchestrator.toml");
    std::fs::write(
        &config,
        format!("{MINIMAL}[http]\nbind = \"0.0.0.0:8080\"\ntokens_file = \"api-tokens\"\n"),
    )
    .unwrap();
    let c = Config::load(&config).unwrap();
    let env = |_: &str| None;
    let e = Tokens::load(&c.http, &config, env).unwrap_err().to_string();
    assert!(e.starts_with("http.tokens_file: "), "{e}");
    assert!(
        e.contains(&dir.join("api-tokens").display().to_string()),
        "{e}"
    );

    let file = dir.join("api-tokens");
    std::fs::write(
        &file,
        "# the till\nwrite write-token-0123456789\n\nread read-token-0123456789\n",
    )
    .unwrap();
    let t = Tokens::load(&c.http, &config, env).unwrap().unwrap();
    assert_eq!(t.scope_of("write-token-0123456789"), Some(Scope::Write));
    assert_eq!(t.scope_of("read-token-0123456789"), Some(Scope::Read));
    // The environment's are added to the file's.
    let t = Tokens::load(&c.http, &config, |k| {
        (k == "OA_API_READ_TOKENS").then(|| "read-token-from-the-env".to_owned())
    })
    .unwrap()
    .unwrap();
    assert_eq!(t.len(), 3);

    std::fs::write(&file, "read read-token-0123456789\nread-token-0123456789\n").unwrap();
    let e = Tokens::load(&c.http, &config, env).unwrap_err().to_string();
    assert_eq!(
        e,
        format!(
            "http.tokens_file: {} line 2: expected `read <token>` or `write <token>`",
            file.display()
        )
    );
    // A file without tokens would silently open the API on loopback: refused.
    std::fs::write(&file, "# nobody yet\n").unwrap();
    let e = Tokens::load(&c.http, &config, env).unwrap_err().to_string();
    assert!(e.contains("holds no tokens"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn retention_defaults_and_checks() {
    let c = load(MINIMAL).unwrap();
    let r = &c.retention;
    assert_eq!(
        (
            r.frames_days,
            r.results_days,
            r.interval_s,
            r.batch,
            r.pause_ms
        ),
        (7, 0, 3600, 500, 200),
        "frames of customers go after 7 days, results are kept"
    );
    let with = |t: &str| format!("{MINIMAL}\n[retention]\n{t}\n");
    let c = load(&with("frames_days = 0\nresults_days = 0\nbatch = 1000")).unwrap();
    assert_eq!((c.retention.frames_days, c.retention.batch), (0, 1000));
    assert!(!c.retention.enabled());
    let c = load(&with("frames_days = 7\nresults_days = 30")).unwrap();
    assert_eq!(c.retention.results_days, 30);
    for (toml, field) in [
        ("batch = 1001", "retention.batch: "),
        ("batch = 0", "retention.batch: "),
        ("interval_s = 0", "retention.interval_s: "),
        ("results_days = 3", "retention.results_days: "),
        (
            "frames_days = 0\nresults_days = 30",
            "retention.results_days: ",
        ),
    ] {
        let e = err(&with(toml));
        assert!(e.starts_with(field), "{toml}: {e}");
    }
    let e = err(&with("frame_days = 3"));
    assert!(e.contains("frame_days"), "{e}");
}
