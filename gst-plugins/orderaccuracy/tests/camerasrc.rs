//! `camerasrc` against a real gst-rtsp-server on 127.0.0.1 with basic authentication:
//! credentials from the environment deliver decoded frames, a wrong password is an error on
//! the bus, a camera without authentication needs no variables, and user info in the
//! location still works but does not read back.

use std::time::{Duration, Instant};

use gst::glib;
use gst::prelude::*;
use gst_rtsp_server::prelude::*;

const USER: &str = "viewer";
const PASSWORD: &str = "s3cr:et@pw";

/// Every variable the tests read, set once before any pipeline runs (tests run in
/// parallel threads; the environment is process-wide).
fn init() {
    use std::sync::Once;
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        // SAFETY: runs once, before any test has started a GStreamer thread that reads the
        // environment; the other test threads wait on the Once.
        unsafe {
            std::env::set_var("CAMSRC_TEST_USER", USER);
            std::env::set_var("CAMSRC_TEST_PW", PASSWORD);
            std::env::set_var("CAMSRC_TEST_BAD_PW", "not-the-password");
            std::env::remove_var("CAMSRC_TEST_UNSET");
        }
        gst::init().unwrap();
        gstorderaccuracy::plugin_register_static().unwrap();
    });
}

/// An RTSP server on 127.0.0.1 serving a live MJPEG test pattern at `/stream`, with basic
/// authentication (USER / PASSWORD) when `auth`; from its own main loop.
struct Camera {
    port: u16,
    main_loop: glib::MainLoop,
    thread: Option<std::thread::JoinHandle<()>>,
    listening: Option<(
        glib::MainContext,
        glib::SourceId,
        gst_rtsp_server::RTSPServer,
    )>,
}

impl Camera {
    fn serve(auth: bool) -> Camera {
        Camera::serve_with(
            auth,
            "( videotestsrc is-live=true \
               ! video/x-raw,format=I420,width=160,height=120,framerate=10/1 \
               ! jpegenc ! rtpjpegpay name=pay0 pt=26 )",
        )
    }

    fn serve_with(auth: bool, launch: &str) -> Camera {
        let ctx = glib::MainContext::new();
        let main_loop = glib::MainLoop::new(Some(&ctx), false);
        let server = gst_rtsp_server::RTSPServer::new();
        server.set_address("127.0.0.1");
        server.set_service("0");
        let factory = gst_rtsp_server::RTSPMediaFactory::new();
        factory.set_launch(launch);
        factory.set_shared(true);
        if auth {
            // No default token: a request without credentials is answered 401 with a
            // challenge, and only the user's token may access and construct the media.
            let auth = gst_rtsp_server::RTSPAuth::new();
            let token = gst_rtsp_server::RTSPToken::builder()
                .field(gst_rtsp_server::RTSP_TOKEN_MEDIA_FACTORY_ROLE, "user")
                .build();
            auth.add_basic(
                &gst_rtsp_server::RTSPAuth::make_basic(USER, PASSWORD),
                &token,
            );
            server.set_auth(Some(&auth));
            let perms = gst::Structure::builder("user")
                .field(gst_rtsp_server::RTSP_PERM_MEDIA_FACTORY_ACCESS, true)
                .field(gst_rtsp_server::RTSP_PERM_MEDIA_FACTORY_CONSTRUCT, true)
                .build();
            factory.add_role_from_structure(&perms);
        }
        server
            .mount_points()
            .unwrap()
            .add_factory("/stream", factory);
        let source = server.attach(Some(&ctx)).expect("RTSP server attaches");
        let port = server.bound_port();
        assert!(port > 0, "RTSP server did not bind");
        let (loop_ctx, loop2) = (ctx.clone(), main_loop.clone());
        let thread = std::thread::spawn(move || {
            loop_ctx
                .with_thread_default(|| loop2.run())
                .expect("main context acquired")
        });
        Camera {
            port: port as u16,
            main_loop,
            thread: Some(thread),
            listening: Some((ctx, source, server)),
        }
    }

    fn url(&self) -> String {
        format!("rtsp://127.0.0.1:{}/stream", self.port)
    }
}

impl Drop for Camera {
    fn drop(&mut self) {
        self.main_loop.quit();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if let Some((ctx, source, _server)) = self.listening.take()
            && let Some(source) = ctx.find_source_by_id(&source)
        {
            source.destroy();
        }
    }
}

enum Outcome {
    /// The timestamps of the frames decoded, and the caps of the first.
    Frames(Vec<gst::ClockTime>, gst::Caps),
    Error(glib::Error, String),
}

/// Runs `camerasrc PROPS ! videoconvert ! appsink` until 3 frames arrived, an error
/// reached the bus, or 20 s passed.
fn run(props: &str) -> Outcome {
    let pipeline = gst::parse::launch(&format!(
        "camerasrc name=cam {props} ! videoconvert ! appsink name=sink sync=false"
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let sink = pipeline
        .by_name("sink")
        .unwrap()
        .downcast::<gst_app::AppSink>()
        .unwrap();
    let bus = pipeline.bus().unwrap();
    let _ = pipeline.set_state(gst::State::Playing);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut frames = Vec::new();
    let mut caps = None;
    let outcome = loop {
        if let Some(msg) = bus.pop_filtered(&[gst::MessageType::Error]) {
            let gst::MessageView::Error(err) = msg.view() else {
                unreachable!()
            };
            break Outcome::Error(
                err.error(),
                err.debug().map(|d| d.to_string()).unwrap_or_default(),
            );
        }
        if let Some(sample) = sink.try_pull_sample(gst::ClockTime::from_mseconds(100)) {
            frames.push(sample.buffer().and_then(|b| b.pts()).unwrap_or_default());
            caps = caps.or_else(|| sample.caps_owned());
            if frames.len() >= 3 {
                break Outcome::Frames(frames, caps.clone().unwrap());
            }
        }
        assert!(
            Instant::now() < deadline,
            "no outcome within 20 s ({} frames)",
            frames.len()
        );
    };
    pipeline.set_state(gst::State::Null).unwrap();
    outcome
}

#[test]
fn credentials_from_the_environment_deliver_decoded_frames() {
    init();
    let cam = Camera::serve(true);
    let props = format!(
        "location=\"{}\" user-id-env=CAMSRC_TEST_USER user-pw-env=CAMSRC_TEST_PW latency=100",
        cam.url()
    );
    match run(&props) {
        Outcome::Frames(frames, caps) => {
            assert!(frames.len() >= 3);
            assert_eq!(caps.structure(0).unwrap().name(), "video/x-raw");
        }
        Outcome::Error(e, debug) => panic!("error instead of frames: {e} ({debug})"),
    }
}

#[test]
fn a_wrong_password_is_an_error_on_the_bus() {
    init();
    let cam = Camera::serve(true);
    let props = format!(
        "location=\"{}\" user-id-env=CAMSRC_TEST_USER user-pw-env=CAMSRC_TEST_BAD_PW",
        cam.url()
    );
    match run(&props) {
        Outcome::Frames(..) => panic!("frames with a wrong password"),
        Outcome::Error(e, debug) => {
            assert!(
                e.matches(gst::ResourceError::NotAuthorized),
                "{e} ({debug})"
            );
            assert!(!format!("{e} {debug}").contains("not-the-password"));
        }
    }
}

#[test]
fn no_credentials_are_an_error_for_a_camera_that_needs_them() {
    init();
    let cam = Camera::serve(true);
    let props = format!(
        "location=\"{}\" user-id-env=CAMSRC_TEST_UNSET user-pw-env=CAMSRC_TEST_UNSET",
        cam.url()
    );
    assert!(matches!(run(&props), Outcome::Error(..)));
}

#[test]
fn a_camera_without_authentication_needs_no_variables() {
    init();
    let cam = Camera::serve(false);
    let props = format!(
        "location=\"{}\" user-id-env=CAMSRC_TEST_UNSET user-pw-env=CAMSRC_TEST_UNSET",
        cam.url()
    );
    assert!(matches!(run(&props), Outcome::Frames(..)));
}

#[test]
fn user_info_in_the_location_works_but_does_not_read_back() {
    init();
    let cam = Camera::serve(true);
    let url = cam.url();
    let with_info = url.replace("rtsp://", "rtsp://viewer:s3cr%3Aet%40pw@");
    let src = gst::ElementFactory::make("camerasrc")
        .property("location", &with_info)
        .build()
        .unwrap();
    assert_eq!(
        src.property::<Option<String>>("location"),
        Some(url.clone())
    );
    // The location's user info wins over the (unset) variables.
    let props = format!(
        "location=\"{with_info}\" user-id-env=CAMSRC_TEST_UNSET user-pw-env=CAMSRC_TEST_UNSET"
    );
    assert!(matches!(run(&props), Outcome::Frames(..)));
}

#[test]
fn every_property_is_documented_with_its_default() {
    init();
    let src = gst::ElementFactory::make("camerasrc").build().unwrap();
    for name in [
        "location",
        "user-id-env",
        "user-pw-env",
        "latency",
        "protocols",
    ] {
        let pspec = src.find_property(name).unwrap();
        let blurb = pspec.blurb().unwrap_or_default();
        assert!(blurb.contains("default"), "{name}: {blurb}");
    }
    assert_eq!(src.property::<u32>("latency"), 300);
    assert_eq!(src.property::<String>("protocols"), "tcp");
    assert_eq!(src.property::<String>("user-id-env"), "OA_CAMERA_USER");
    assert_eq!(src.property::<String>("user-pw-env"), "OA_CAMERA_PASSWORD");
}

#[test]
fn key_frames_only_decodes_one_frame_per_key_frame() {
    init();
    // 10 frames/s with a key frame every 5: two decoded frames per second.
    let cam = Camera::serve_with(
        false,
        "( videotestsrc is-live=true \
           ! video/x-raw,format=I420,width=160,height=120,framerate=10/1 \
           ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=5 \
           ! rtph264pay name=pay0 pt=96 config-interval=1 )",
    );
    let props = format!("location=\"{}\" key-frames-only=true", cam.url());
    let Outcome::Frames(frames, _) = run(&props) else {
        panic!("no frames");
    };
    for pair in frames.windows(2) {
        let gap = pair[1].saturating_sub(pair[0]);
        assert!(
            gap >= gst::ClockTime::from_mseconds(400),
            "frames {frames:?}: a delta frame was decoded"
        );
    }
}
