use std::sync::{Condvar, LazyLock, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use oa_contract::messages::{self, field};

use super::lifecycle::Lifecycle;
use crate::events::{OrderChanged, OrderComplete};
use crate::meta::{OrderTag, held_for};

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "eosmarker",
        gst::DebugColorFlags::empty(),
        Some("Order completion marker"),
    )
});

const DEFAULT_IDLE_TIMEOUT_MS: u32 = 10_000;
/// 10 minutes.
const DEFAULT_MAX_ORDER_DURATION_MS: u32 = 600_000;

#[derive(Debug, Clone, Copy)]
struct Settings {
    /// `None` disables the idle timer.
    idle_timeout: Option<Duration>,
    /// The longest segment of an order, on the frames' timestamps; `None`: no limit.
    max_order_duration: Option<Duration>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            idle_timeout: Some(Duration::from_millis(DEFAULT_IDLE_TIMEOUT_MS as u64)),
            max_order_duration: Some(Duration::from_millis(DEFAULT_MAX_ORDER_DURATION_MS as u64)),
        }
    }
}

#[derive(Debug, Default)]
struct State {
    lifecycle: Lifecycle,
    orders_completed: u64,
    /// Tells the idle timer thread to end.
    timer_stop: bool,
}

pub struct EosMarker {
    sinkpad: gst::Pad,
    srcpad: gst::Pad,
    settings: Mutex<Settings>,
    state: Mutex<State>,
    /// Wakes the idle timer when a frame arrives, settings change, or it must stop.
    timer_wake: Condvar,
    timer: Mutex<Option<JoinHandle<()>>>,
}

impl EosMarker {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    fn sink_chain(
        &self,
        _pad: &gst::Pad,
        buffer: gst::Buffer,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        let timeout = self.idle_timeout();
        let max_duration = self.max_order_duration();
        let stale = self.state().lifecycle.take_stale(buffer.pts(), timeout);
        if let Some(stale) = stale {
            self.send_complete(stale);
        }
        let finished = match OrderTag::from_buffer(&buffer) {
            Some(OrderTag {
                station_id,
                order_id: Some(order_id),
                unix_ms,
            }) => {
                let mut state = self.state();
                let admitted = state.lifecycle.frame(
                    station_id,
                    order_id,
                    buffer.pts(),
                    unix_ms,
                    Instant::now(),
                    max_duration,
                );
                if admitted.opened {
                    let (order, _) = state.lifecycle.open_order().unwrap_or_default();
                    let continued = admitted
                        .finished
                        .as_ref()
                        .is_some_and(|f| f.reason == oa_contract::CompletionReason::MaxDuration);
                    if continued {
                        gst::info!(
                            CAT,
                            imp = self,
                            "order {order} continues in a new segment (max-order-duration)"
                        );
                    } else {
                        gst::info!(CAT, imp = self, "order {order} opened");
                    }
                }
                drop(state);
                self.timer_wake.notify_all();
                admitted.finished
            }
            Some(OrderTag { order_id: None, .. }) => {
                if let Some(held) = held_for(&buffer) {
                    self.state()
                        .lifecycle
                        .held(&held, buffer.pts(), Instant::now());
                }
                None
            }
            None => None,
        };
        if let Some(finished) = finished {
            self.send_complete(finished);
        }
        self.srcpad.push(buffer)
    }

    fn sink_event(&self, pad: &gst::Pad, event: gst::Event) -> bool {
        match event.view() {
            gst::EventView::Eos(_) => {
                let open = self.state().lifecycle.end_of_stream();
                if let Some(complete) = open {
                    self.send_complete(complete);
                }
            }
            gst::EventView::CustomDownstream(_) => {
                if let Some(changed) = OrderChanged::try_parse(&event) {
                    self.on_order_changed(&changed);
                }
            }
            _ => (),
        }
        gst::Pad::event_default(pad, Some(&*self.obj()), event)
    }

    fn on_order_changed(&self, changed: &OrderChanged) {
        let finished = self
            .state()
            .lifecycle
            .order_changed(changed.order_id.as_deref());
        if let Some(finished) = finished {
            self.send_complete(finished);
        }
    }

    /// Must be called with the sink pad's stream lock held, so that the event is
    /// serialized with the frames.
    fn send_complete(&self, complete: OrderComplete) {
        gst::info!(
            CAT,
            imp = self,
            "order {} complete ({}, {} frames)",
            complete.order_id,
            complete.reason,
            complete.frame_count
        );
        self.state().orders_completed += 1;
        let msg = gst::Structure::builder(messages::ORDER_COMPLETE)
            .field(field::STATION_ID, complete.station_id.as_str())
            .field(field::ORDER_ID, complete.order_id.as_str())
            .field(field::REASON, complete.reason.as_str())
            .field(field::FRAME_COUNT, complete.frame_count)
            .build();
        let _ = self.obj().post_message(
            gst::message::Element::builder(msg)
                .src(&*self.obj())
                .build(),
        );
        if !self.srcpad.push_event(gst::Event::from(&complete)) {
            gst::warning!(
                CAT,
                imp = self,
                "downstream refused the completion of order {}",
                complete.order_id
            );
        }
    }

    fn idle_timeout(&self) -> Option<Duration> {
        self.settings.lock().unwrap().idle_timeout
    }

    fn max_order_duration(&self) -> Option<Duration> {
        self.settings.lock().unwrap().max_order_duration
    }

    fn timer_loop(&self) {
        let mut state = self.state();
        loop {
            if state.timer_stop {
                return;
            }
            let wait = state
                .lifecycle
                .idle_wait(self.idle_timeout(), Instant::now())
                // Nothing to time: sleep until a frame or a setting wakes us.
                .unwrap_or(Duration::from_secs(3600));
            if wait.is_zero() {
                drop(state);
                self.complete_idle_order();
                state = self.state();
                continue;
            }
            state = self.timer_wake.wait_timeout(state, wait).unwrap().0;
        }
    }

    fn complete_idle_order(&self) {
        // Taken before the state, as the streaming thread does, to serialize the
        // completion with frames that may be in flight right now.
        let _stream_lock = self.sinkpad.stream_lock();
        let Some(timeout) = self.idle_timeout() else {
            return;
        };
        // A frame may have arrived while we waited for the stream lock.
        let finished = self.state().lifecycle.take_idle(timeout, Instant::now());
        if let Some(finished) = finished {
            self.send_complete(finished);
        }
    }

    fn start_timer(&self) -> Result<(), gst::StateChangeError> {
        self.state().timer_stop = false;
        let weak = self.obj().downgrade();
        let handle = std::thread::Builder::new()
            .name("eosmarker-idle".into())
            .spawn(move || {
                if let Some(obj) = weak.upgrade() {
                    obj.imp().timer_loop();
                }
            })
            .map_err(|err| {
                gst::element_imp_error!(
                    self,
                    gst::CoreError::Failed,
                    ["Could not start the idle timer thread: {err}"]
                );
                gst::StateChangeError
            })?;
        *self.timer.lock().unwrap() = Some(handle);
        Ok(())
    }

    fn stop_timer(&self) {
        self.state().timer_stop = true;
        self.timer_wake.notify_all();
        if let Some(handle) = self.timer.lock().unwrap().take() {
            let _ = handle.join();
        }
    }
}

#[glib::object_subclass]
impl ObjectSubclass for EosMarker {
    const NAME: &'static str = "OaEosMarker";
    type Type = super::EosMarker;
    type ParentType = gst::Element;

    fn with_class(klass: &Self::Class) -> Self {
        let templ = klass.pad_template("sink").unwrap();
        let sinkpad = gst::Pad::builder_from_template(&templ)
            .chain_function(|pad, parent, buffer| {
                EosMarker::catch_panic_pad_function(
                    parent,
                    || Err(gst::FlowError::Error),
                    |imp| imp.sink_chain(pad, buffer),
                )
            })
            .event_function(|pad, parent, event| {
                EosMarker::catch_panic_pad_function(
                    parent,
                    || false,
                    |imp| imp.sink_event(pad, event),
                )
            })
            .flags(
                gst::PadFlags::PROXY_CAPS
                    | gst::PadFlags::PROXY_ALLOCATION
                    | gst::PadFlags::PROXY_SCHEDULING,
            )
            .build();
        let templ = klass.pad_template("src").unwrap();
        let srcpad = gst::Pad::builder_from_template(&templ)
            .flags(
                gst::PadFlags::PROXY_CAPS
                    | gst::PadFlags::PROXY_ALLOCATION
                    | gst::PadFlags::PROXY_SCHEDULING,
            )
            .build();
        EosMarker {
            sinkpad,
            srcpad,
            settings: Mutex::new(Settings::default()),
            state: Mutex::new(State::default()),
            timer_wake: Condvar::new(),
            timer: Mutex::new(None),
        }
    }
}

impl ObjectImpl for EosMarker {
    fn constructed(&self) {
        self.parent_constructed();
        let obj = self.obj();
        obj.add_pad(&self.sinkpad).unwrap();
        obj.add_pad(&self.srcpad).unwrap();
    }

    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            vec![
                glib::ParamSpecUInt::builder("idle-timeout")
                    .nick("Idle timeout")
                    .blurb(
                        "Complete the open order when none of its frames arrived for this many \
                         milliseconds, even if no frames flow at all (0 = never)",
                    )
                    .default_value(DEFAULT_IDLE_TIMEOUT_MS)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("max-order-duration")
                    .nick("Maximum order duration")
                    .blurb(
                        "Complete an order still in view, with reason max-duration, once its \
                         current segment spans this many milliseconds of frame timestamps; \
                         later frames of the same order ID continue it as its next segment, \
                         completed again after another max-order-duration, an idle timeout, \
                         the next order or end of stream, so no order grows without bound \
                         (0 = no limit)",
                    )
                    .default_value(DEFAULT_MAX_ORDER_DURATION_MS)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt64::builder("orders-completed")
                    .nick("Orders completed")
                    .blurb("Number of orders completed since the element started")
                    .read_only()
                    .build(),
                glib::ParamSpecString::builder("current-order")
                    .nick("Current order")
                    .blurb("ID of the open order, or NULL when no order is open")
                    .read_only()
                    .build(),
            ]
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut settings = self.settings.lock().unwrap();
        match pspec.name() {
            "idle-timeout" => {
                let ms: u32 = value.get().expect("type checked upstream");
                settings.idle_timeout = (ms > 0).then(|| Duration::from_millis(ms.into()));
            }
            "max-order-duration" => {
                let ms: u32 = value.get().expect("type checked upstream");
                settings.max_order_duration = (ms > 0).then(|| Duration::from_millis(ms.into()));
            }
            _ => unimplemented!(),
        }
        drop(settings);
        // The timer sleeps for the old timeout: wake it to wait for the new one.
        self.timer_wake.notify_all();
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        // Not the settings lock across the match: the timer thread takes it while holding
        // the state lock, which the counters below need.
        match pspec.name() {
            "idle-timeout" => self
                .idle_timeout()
                .map_or(0, |d| d.as_millis() as u32)
                .to_value(),
            "max-order-duration" => self
                .max_order_duration()
                .map_or(0, |d| d.as_millis() as u32)
                .to_value(),
            "orders-completed" => self.state().orders_completed.to_value(),
            "current-order" => self
                .state()
                .lifecycle
                .open_order()
                .map(|(order, _)| order.to_owned())
                .to_value(),
            _ => unimplemented!(),
        }
    }
}

impl GstObjectImpl for EosMarker {}

impl ElementImpl for EosMarker {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "Order completion marker",
                "Generic",
                "Passes frames through and sends one serialized order-complete event per \
                 order: on the next order, after an idle timeout, or at end of stream; an order \
                 longer than max-order-duration is completed in segments",
                "order-accuracy developers",
            )
        });
        Some(&*METADATA)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static PAD_TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            let caps = gst::Caps::new_any();
            vec![
                gst::PadTemplate::new(
                    "src",
                    gst::PadDirection::Src,
                    gst::PadPresence::Always,
                    &caps,
                )
                .unwrap(),
                gst::PadTemplate::new(
                    "sink",
                    gst::PadDirection::Sink,
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
        if transition == gst::StateChange::ReadyToPaused {
            let mut state = self.state();
            state.lifecycle = Lifecycle::default();
            state.orders_completed = 0;
            drop(state);
            self.start_timer()?;
        }
        let ret = self.parent_change_state(transition);
        if transition == gst::StateChange::PausedToReady || ret.is_err() {
            self.stop_timer();
            let abandoned = self.state().lifecycle.abandon();
            if let Some((order_id, frame_count)) = abandoned {
                // Without EOS there is no serialized place left to complete it; say so
                // loudly instead of dropping it silently. `gst-launch-1.0 -e` avoids this.
                gst::warning!(
                    CAT,
                    imp = self,
                    "order {order_id} was still open ({frame_count} frames) when the pipeline \
                     stopped without EOS"
                );
            }
        }
        ret
    }
}
