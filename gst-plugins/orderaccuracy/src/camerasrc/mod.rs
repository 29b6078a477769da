//! `camerasrc`: an RTSP camera as raw video, with its credentials taken from the
//! environment instead of the pipeline description.
//!
//! A bin around `rtspsrc ! decodebin` with one always `src` pad, a ghost pad whose target
//! is the first video pad decodebin adds (and again after a restart). Only the first video
//! stream of the camera is set up (`rtspsrc` `select-stream`): no audio is received or
//! decoded.
//!
//! A pipeline description is visible to every local user (`/proc/PID/cmdline`, `ps`), so
//! the user name and password are read, when the element starts (READY to PAUSED), from
//! the environment variables named by `user-id-env` (default `OA_CAMERA_USER`) and
//! `user-pw-env` (default `OA_CAMERA_PASSWORD`) and given to `rtspsrc` as its `user-id`
//! and `user-pw`. A variable that is not set is fine: a camera without authentication.
//! A `location` that carries `user:password@` still works (its percent-decoded user info
//! is used and wins over the environment) but is warned about, without the secret, and
//! the `location` property then reads back without it. The password is never logged.
//!
//! With `key-frames-only` the video decoder decodebin plugs is given key frames only
//! (delta units are dropped in front of it): for cameras with one key frame per second the
//! decoder then runs once per second.
//!
//! Errors of `rtspsrc` (401 Unauthorized, 404 Not Found, a camera that cannot be
//! reached) reach the bus as they are.
//!
//! ```text
//! OA_CAMERA_USER=viewer OA_CAMERA_PASSWORD=... gst-launch-1.0 \
//!   camerasrc location="rtsp://cam-1.local/stream1" latency=300 \
//!   ! videoconvert ! autovideosink
//! ```

use gst::glib;
use gst::prelude::*;

mod imp;

glib::wrapper! {
    pub struct CameraSrc(ObjectSubclass<imp::CameraSrc>) @extends gst::Bin, gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(
        Some(plugin),
        "camerasrc",
        gst::Rank::NONE,
        CameraSrc::static_type(),
    )
}
