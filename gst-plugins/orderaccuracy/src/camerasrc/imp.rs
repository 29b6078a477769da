use std::sync::{LazyLock, Mutex};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;

use oa_contract::camera::{PASSWORD_VAR, USER_VAR, Userinfo, split_userinfo};

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "camerasrc",
        gst::DebugColorFlags::empty(),
        Some("RTSP camera source with credentials from the environment"),
    )
});

const DEFAULT_USER_ID_ENV: &str = USER_VAR;
const DEFAULT_USER_PW_ENV: &str = PASSWORD_VAR;
const DEFAULT_LATENCY_MS: u32 = 300;
const DEFAULT_PROTOCOLS: &str = "tcp";
const DEFAULT_KEY_FRAMES_ONLY: bool = false;

#[derive(Debug, Clone)]
struct Settings {
    /// Without user info.
    location: Option<String>,
    /// The user info `location` was set with (not shown by the property).
    location_userinfo: Option<Userinfo>,
    user_id_env: Option<String>,
    user_pw_env: Option<String>,
    latency_ms: u32,
    protocols: String,
    key_frames_only: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            location: None,
            location_userinfo: None,
            user_id_env: Some(DEFAULT_USER_ID_ENV.to_owned()),
            user_pw_env: Some(DEFAULT_USER_PW_ENV.to_owned()),
            latency_ms: DEFAULT_LATENCY_MS,
            protocols: DEFAULT_PROTOCOLS.to_owned(),
            key_frames_only: DEFAULT_KEY_FRAMES_ONLY,
        }
    }
}

#[derive(Debug, Default)]
struct State {
    /// The camera stream `rtspsrc` was told to set up (the first video stream).
    video_stream: Option<u32>,
}

pub struct CameraSrc {
    srcpad: gst::GhostPad,
    settings: Mutex<Settings>,
    state: Mutex<State>,
    /// `None` when `rtspsrc` or `decodebin` is not installed (an error at NULL to READY).
    rtspsrc: Mutex<Option<gst::Element>>,
}

/// The value of the environment variable `name`; unset and empty are both `None`.
fn env_value(name: Option<&str>) -> Result<Option<String>, String> {
    let Some(name) = name.filter(|n| !n.is_empty()) else {
        return Ok(None);
    };
    match std::env::var(name) {
        Ok(v) if v.is_empty() => Ok(None),
        Ok(v) => Ok(Some(v)),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => {
            Err(format!("environment variable {name} is not valid UTF-8"))
        }
    }
}

impl CameraSrc {
    fn build_children(&self) -> Result<gst::Element, glib::BoolError> {
        let rtspsrc = gst::ElementFactory::make("rtspsrc")
            .name("rtspsrc")
            .build()?;
        let decodebin = gst::ElementFactory::make("decodebin")
            .name("decodebin")
            .build()?;
        let obj = self.obj();
        obj.add_many([&rtspsrc, &decodebin])?;

        let weak = obj.downgrade();
        rtspsrc.connect("select-stream", false, move |args| {
            // (rtspsrc, stream number, stream caps) -> whether to set the stream up.
            let num = args.get(1).and_then(|v| v.get::<u32>().ok());
            let caps = args.get(2).and_then(|v| v.get::<gst::Caps>().ok());
            let selected = match (weak.upgrade(), num, caps) {
                (Some(obj), Some(num), Some(caps)) => obj.imp().select_stream(num, &caps),
                _ => false,
            };
            Some(selected.to_value())
        });

        let decode_sink = decodebin
            .static_pad("sink")
            .ok_or_else(|| glib::bool_error!("decodebin has no sink pad"))?;
        let weak = obj.downgrade();
        rtspsrc.connect_pad_added(move |_, pad| {
            if decode_sink.is_linked() {
                // Only one stream is selected; a second one would be a camera reconnect.
                return;
            }
            if let Err(err) = pad.link(&decode_sink)
                && let Some(obj) = weak.upgrade()
            {
                gst::warning!(CAT, obj = obj, "cannot link {}: {err:?}", pad.name());
            }
        });

        let weak = obj.downgrade();
        obj.connect_deep_element_added(move |_, _, element| {
            if let Some(obj) = weak.upgrade() {
                obj.imp().element_added(element);
            }
        });

        let weak = obj.downgrade();
        decodebin.connect_pad_added(move |_, pad| {
            if let Some(obj) = weak.upgrade() {
                obj.imp().decoded_pad_added(pad);
            }
        });
        let weak = obj.downgrade();
        decodebin.connect_pad_removed(move |_, pad| {
            if let Some(obj) = weak.upgrade() {
                let imp = obj.imp();
                if imp.srcpad.target().as_ref() == Some(pad) {
                    gst::debug!(CAT, imp = imp, "decoded pad {} removed", pad.name());
                    let _ = imp.srcpad.set_target(None::<&gst::Pad>);
                }
            }
        });
        Ok(rtspsrc)
    }

    /// `rtspsrc`'s `select-stream`: the first video stream only (no audio is received).
    fn select_stream(&self, num: u32, caps: &gst::Caps) -> bool {
        let media = caps
            .structure(0)
            .and_then(|s| s.get::<&str>("media").ok())
            .unwrap_or_default();
        let mut state = self.state.lock().unwrap();
        let selected = media == "video" && state.video_stream.is_none_or(|n| n == num);
        if selected {
            state.video_stream = Some(num);
        }
        gst::debug!(
            CAT,
            imp = self,
            "stream {num} ({media}): {}",
            if selected { "selected" } else { "skipped" }
        );
        selected
    }

    /// With `key-frames-only`, the video decoder decodebin plugs gets key frames only, as
    /// `identity drop-buffer-flags=delta-unit` in front of it would.
    fn element_added(&self, element: &gst::Element) {
        let is_video_decoder = element.factory().is_some_and(|f| {
            let klass = f.klass();
            klass.contains("Decoder") && klass.contains("Video")
        });
        if !is_video_decoder || !self.settings.lock().unwrap().key_frames_only {
            return;
        }
        let Some(sink) = element.static_pad("sink") else {
            return;
        };
        gst::info!(
            CAT,
            imp = self,
            "decoding key frames only with {}",
            element.name()
        );
        // `Handled` (the probe consumed the buffer) rather than `Drop`: with GStreamer 1.22
        // gstreamer-rs hands `Drop`ped buffers back as NULL, which core then unrefs.
        sink.add_probe(gst::PadProbeType::BUFFER, |_, info| match info.buffer() {
            Some(b) if b.flags().contains(gst::BufferFlags::DELTA_UNIT) => {
                gst::PadProbeReturn::Handled
            }
            _ => gst::PadProbeReturn::Ok,
        });
    }

    fn decoded_pad_added(&self, pad: &gst::Pad) {
        let caps = pad.current_caps().unwrap_or_else(|| pad.query_caps(None));
        let is_video = caps
            .structure(0)
            .is_some_and(|s| s.name().starts_with("video/"));
        if !is_video {
            gst::debug!(CAT, imp = self, "ignoring decoded pad with caps {caps}");
            return;
        }
        if self.srcpad.target().is_some() {
            gst::debug!(
                CAT,
                imp = self,
                "already have a video pad, ignoring {}",
                pad.name()
            );
            return;
        }
        match self.srcpad.set_target(Some(pad)) {
            Ok(()) => gst::info!(CAT, imp = self, "decoding video: {caps}"),
            Err(err) => gst::element_imp_error!(
                self,
                gst::CoreError::Negotiation,
                ["Cannot expose the decoded video pad: {err}"]
            ),
        }
    }

    /// Gives `rtspsrc` the location, transport and credentials; READY to PAUSED.
    fn configure(&self) -> Result<(), gst::StateChangeError> {
        let settings = self.settings.lock().unwrap().clone();
        let rtspsrc = self.rtspsrc.lock().unwrap();
        let Some(rtspsrc) = rtspsrc.as_ref() else {
            return Err(gst::StateChangeError);
        };
        let Some(location) = settings.location.as_deref() else {
            gst::element_imp_error!(
                self,
                gst::ResourceError::NotFound,
                ["No location set (an rtsp:// URL)"]
            );
            return Err(gst::StateChangeError);
        };
        let protocols_type = rtspsrc
            .find_property("protocols")
            .map(|p| p.value_type())
            .ok_or(gst::StateChangeError)?;
        let protocols = match glib::Value::deserialize(&settings.protocols, protocols_type) {
            Ok(v) => v,
            Err(_) => {
                gst::element_imp_error!(
                    self,
                    gst::LibraryError::Settings,
                    [
                        "Invalid protocols {:?} (e.g. \"tcp\", \"udp\", \"tcp+udp\")",
                        settings.protocols
                    ]
                );
                return Err(gst::StateChangeError);
            }
        };
        let env_user = env_value(settings.user_id_env.as_deref());
        let env_pw = env_value(settings.user_pw_env.as_deref());
        let (env_user, env_pw) = match (env_user, env_pw) {
            (Ok(u), Ok(p)) => (u, p),
            (Err(e), _) | (_, Err(e)) => {
                gst::element_imp_error!(self, gst::LibraryError::Settings, ["{e}"]);
                return Err(gst::StateChangeError);
            }
        };
        let url_user = settings
            .location_userinfo
            .as_ref()
            .map(|u| u.user.clone())
            .filter(|u| !u.is_empty());
        let url_pw = settings
            .location_userinfo
            .as_ref()
            .and_then(|u| u.password.clone());
        if settings.location_userinfo.is_some() {
            gst::warning!(
                CAT,
                imp = self,
                "location carries a user name or password, which every local user can read \
                 on the command line: set the environment variables {} and {} instead (the \
                 ones in the location are used)",
                settings
                    .user_id_env
                    .as_deref()
                    .unwrap_or(DEFAULT_USER_ID_ENV),
                settings
                    .user_pw_env
                    .as_deref()
                    .unwrap_or(DEFAULT_USER_PW_ENV),
            );
        }
        let user = url_user.or(env_user);
        let password = url_pw.or(env_pw);

        rtspsrc.set_property("location", location);
        rtspsrc.set_property("latency", settings.latency_ms);
        rtspsrc.set_property_from_value("protocols", &protocols);
        // rtspsrc authenticates only with both; a user without a password has an empty one.
        let password = match (&user, password) {
            (Some(_), None) => Some(String::new()),
            (_, p) => p,
        };
        rtspsrc.set_property("user-id", user.as_deref());
        rtspsrc.set_property("user-pw", password.as_deref());
        gst::info!(
            CAT,
            imp = self,
            "connecting to {location} ({}), latency {} ms, protocols {}",
            if user.is_some() {
                "with a user name and password"
            } else {
                "without credentials"
            },
            settings.latency_ms,
            settings.protocols
        );
        *self.state.lock().unwrap() = State::default();
        Ok(())
    }
}

#[glib::object_subclass]
impl ObjectSubclass for CameraSrc {
    const NAME: &'static str = "OaCameraSrc";
    type Type = super::CameraSrc;
    type ParentType = gst::Bin;

    fn with_class(klass: &Self::Class) -> Self {
        let templ = klass.pad_template("src").unwrap();
        let srcpad = gst::GhostPad::builder_from_template(&templ).build();
        CameraSrc {
            srcpad,
            settings: Mutex::new(Settings::default()),
            state: Mutex::new(State::default()),
            rtspsrc: Mutex::new(None),
        }
    }
}

impl ObjectImpl for CameraSrc {
    fn constructed(&self) {
        self.parent_constructed();
        let obj = self.obj();
        obj.add_pad(&self.srcpad).unwrap();
        match self.build_children() {
            Ok(rtspsrc) => *self.rtspsrc.lock().unwrap() = Some(rtspsrc),
            // Reported as an error when the element starts.
            Err(err) => gst::error!(CAT, imp = self, "cannot build rtspsrc ! decodebin: {err}"),
        }
    }

    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            vec![
                glib::ParamSpecString::builder("location")
                    .nick("Location")
                    .blurb(
                        "Camera URL, rtsp://host[:port]/path (default: none). User info in it \
                         (user:password@) works but is warned about, and the property reads \
                         back without it: put the credentials in the environment variables \
                         named by user-id-env and user-pw-env",
                    )
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("user-id-env")
                    .nick("User name variable")
                    .blurb(
                        "Name of the environment variable read at start for the camera's user \
                         name (default: OA_CAMERA_USER; unset or empty: no authentication)",
                    )
                    .default_value(Some(DEFAULT_USER_ID_ENV))
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("user-pw-env")
                    .nick("Password variable")
                    .blurb(
                        "Name of the environment variable read at start for the camera's \
                         password (default: OA_CAMERA_PASSWORD); its value is never logged",
                    )
                    .default_value(Some(DEFAULT_USER_PW_ENV))
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("latency")
                    .nick("Latency")
                    .blurb(
                        "Jitter buffer of rtspsrc in milliseconds (default: 300, less than \
                         rtspsrc's 2000)",
                    )
                    .default_value(DEFAULT_LATENCY_MS)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("protocols")
                    .nick("Protocols")
                    .blurb(
                        "Lower transports rtspsrc may use, as its protocols property: tcp, udp, \
                         udp-mcast or several joined with + (default: tcp, interleaved in the \
                         RTSP connection: one port, no loss)",
                    )
                    .default_value(Some(DEFAULT_PROTOCOLS))
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoolean::builder("key-frames-only")
                    .nick("Key frames only")
                    .blurb(
                        "Give the video decoder key frames only (default: false): with one key \
                         frame per second the decoder runs once per second instead of at the \
                         camera's frame rate",
                    )
                    .default_value(DEFAULT_KEY_FRAMES_ONLY)
                    .mutable_ready()
                    .build(),
            ]
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut settings = self.settings.lock().unwrap();
        match pspec.name() {
            "location" => {
                let location: Option<String> = value.get().expect("type checked upstream");
                let (location, userinfo) = match location {
                    Some(l) => {
                        let (l, info) = split_userinfo(&l);
                        (Some(l), info)
                    }
                    None => (None, None),
                };
                gst::debug!(
                    CAT,
                    imp = self,
                    "location: {}{}",
                    location.as_deref().unwrap_or("none"),
                    if userinfo.is_some() {
                        " (user info removed)"
                    } else {
                        ""
                    }
                );
                settings.location = location;
                settings.location_userinfo = userinfo;
            }
            "user-id-env" => settings.user_id_env = value.get().expect("type checked upstream"),
            "user-pw-env" => settings.user_pw_env = value.get().expect("type checked upstream"),
            "latency" => settings.latency_ms = value.get().expect("type checked upstream"),
            "key-frames-only" => {
                settings.key_frames_only = value.get().expect("type checked upstream")
            }
            "protocols" => {
                settings.protocols = value
                    .get::<Option<String>>()
                    .expect("type checked upstream")
                    .unwrap_or_else(|| DEFAULT_PROTOCOLS.to_owned());
            }
            _ => unimplemented!(),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let settings = self.settings.lock().unwrap();
        match pspec.name() {
            "location" => settings.location.to_value(),
            "user-id-env" => settings.user_id_env.to_value(),
            "user-pw-env" => settings.user_pw_env.to_value(),
            "latency" => settings.latency_ms.to_value(),
            "protocols" => settings.protocols.to_value(),
            "key-frames-only" => settings.key_frames_only.to_value(),
            _ => unimplemented!(),
        }
    }
}

impl GstObjectImpl for CameraSrc {}

impl ElementImpl for CameraSrc {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "RTSP camera source",
                "Source/Video/Network",
                "Receives and decodes the video of an RTSP camera (rtspsrc ! decodebin), with \
                 the user name and password read from environment variables instead of the \
                 pipeline description",
                "order-accuracy developers",
            )
        });
        Some(&*METADATA)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static PAD_TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            let caps = gst::Caps::builder("video/x-raw").any_features().build();
            vec![
                gst::PadTemplate::new(
                    "src",
                    gst::PadDirection::Src,
                    gst::PadPresence::Always,
                    &caps,
                )
                .unwrap(),
            ]
        });
        PAD_TEMPLATES.as_ref()
    }

    fn change_state(
        &self,
        transition: gst::StateChange,
    ) -> Result<gst::StateChangeSuccess, gst::StateChangeError> {
        match transition {
            gst::StateChange::NullToReady if self.rtspsrc.lock().unwrap().is_none() => {
                gst::element_imp_error!(
                    self,
                    gst::CoreError::MissingPlugin,
                    ["camerasrc needs rtspsrc (gst-plugins-good) and decodebin (gst-plugins-base)"]
                );
                return Err(gst::StateChangeError);
            }
            gst::StateChange::ReadyToPaused => self.configure()?,
            _ => (),
        }
        let ret = self.parent_change_state(transition)?;
        if transition == gst::StateChange::PausedToReady {
            *self.state.lock().unwrap() = State::default();
        }
        Ok(ret)
    }
}

impl BinImpl for CameraSrc {}
