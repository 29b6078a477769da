//! Simulated packing stations.
//!
//! A **scenario** (TOML, see `scenarios/README.md` and the examples next to it) lists per
//! station a sequence of orders: the order ID printed on the slip, the items ordered (what
//! goes into `orders.json`), the items actually packed (which may differ), how long the slip
//! is in view, the pause after it, and the look of the slip (position, font, size, rotation
//! of the slip, camera rotation, lighting, noise, motion blur), and when a hand covers the
//! slip. A seed makes the rendering reproducible.
//!
//! [`Plan`] turns a scenario into a timeline and the ground truth (expected status,
//! missing / extra / quantity mismatches, and which seconds belong to which order).
//! [`Simulator`] serves every station as an H.264 RTSP camera on 127.0.0.1 with
//! gst-rtsp-server: a light-grey table (`videotestsrc`), one `textoverlay` for the slip and
//! eight for item labels (one label per packed unit, black bold text), the slip turned on
//! the table in a pad probe ([`effects`]), an optional `rotate` for a tilted camera, and
//! motion blur, seeded luma noise and lighting applied in a second pad probe. A hand over
//! the slip ([`effects::draw_hand`]) is painted in the first probe, after the slip is
//! turned. [`Attribution`] scores the frames stored per order against the seconds shown.
//! The scene of each frame is chosen from the buffer timestamp, so a station's scenario
//! starts when its first client connects.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

pub mod chaos;
pub mod effects;
pub mod pos;
pub mod run;
pub mod shards;
pub mod vlm;
pub mod webdriver;

use gst::prelude::*;
use gst_rtsp_server::prelude::*;
use serde::{Deserialize, Serialize};

/// Item label slots in the scene: top-left corner of each label, in pixels of a 1280x720
/// frame (scaled for other sizes). Two columns far apart, so that two labels never read as
/// one line.
pub const LABEL_SLOTS: [(i32, i32); 8] = [
    (80, 250),
    (680, 250),
    (80, 360),
    (680, 360),
    (80, 470),
    (680, 470),
    (80, 580),
    (680, 580),
];

// ---- the scenario file -----------------------------------------------------------------

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Seed of every random choice (position jitter, noise).
    #[serde(default)]
    pub seed: u64,
    /// Frames per second of the served streams.
    #[serde(default = "default_fps")]
    pub fps: u32,
    #[serde(default = "default_width")]
    pub width: u32,
    #[serde(default = "default_height")]
    pub height: u32,
    /// Inventory written to `inventory.json`; empty: [`default_inventory`].
    #[serde(default)]
    pub inventory: Vec<InventoryItem>,
    /// Look of every slip unless a station or order overrides it.
    #[serde(default)]
    pub look: LookPatch,
    /// The stations' `reuse_after_s`; set, an order ID may appear again on a station at
    /// least this long (plus 2 s) after its previous order there ends: a new order, expected
    /// under the order key `{id}.{n}`. Unset: the orchestrator's default, IDs unique.
    #[serde(default)]
    pub reuse_after_s: Option<u32>,
    pub stations: Vec<Station>,
}

fn default_fps() -> u32 {
    5
}
fn default_width() -> u32 {
    1280
}
fn default_height() -> u32 {
    720
}
fn default_lead_in() -> f64 {
    2.0
}
fn default_slip_s() -> f64 {
    6.0
}
fn default_pause_s() -> f64 {
    3.0
}
fn default_quantity() -> u32 {
    1
}
fn default_true() -> bool {
    true
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct InventoryItem {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub aliases: Vec<String>,
}

/// The inventory used when a scenario names none.
pub fn default_inventory() -> Vec<InventoryItem> {
    let item = |id: &str, name: &str, aliases: &[&str]| InventoryItem {
        id: id.into(),
        name: name.into(),
        aliases: aliases.iter().map(|a| a.to_string()).collect(),
    };
    vec![
        item("001", "green apple", &["apple"]),
        item("002", "banana", &[]),
        item("003", "water bottle", &["water"]),
        item("004", "cheeseburger", &["burger"]),
        item("005", "french fries", &["fries"]),
        item("006", "orange juice", &["juice"]),
        item("007", "chicken wrap", &["wrap"]),
        item("008", "chocolate cookie", &["cookie"]),
    ]
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Station {
    /// `[A-Za-z0-9][A-Za-z0-9_-]{0,63}`; also the RTSP mount (`/station_1`).
    pub id: String,
    /// Seconds of empty table before the first order.
    #[serde(default = "default_lead_in")]
    pub lead_in_s: f64,
    #[serde(default)]
    pub look: LookPatch,
    pub orders: Vec<Order>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Order {
    /// The ID printed on the slip.
    pub id: String,
    /// What was ordered (written to `orders.json` unless `in_orders_json = false`).
    #[serde(default)]
    pub ordered: Vec<ItemQty>,
    /// What is actually packed (one label per unit); default: exactly what was ordered.
    pub packed: Option<Vec<ItemQty>>,
    /// `false`: the order is left out of `orders.json` (expected status `unknown-order`).
    #[serde(default = "default_true")]
    pub in_orders_json: bool,
    /// Seconds the slip and the items are in view.
    #[serde(default = "default_slip_s")]
    pub slip_s: f64,
    /// Seconds of empty table after the order.
    #[serde(default = "default_pause_s")]
    pub pause_s: f64,
    #[serde(default)]
    pub look: LookPatch,
    /// Times a hand covers the slip.
    #[serde(default)]
    pub occlusions: Vec<Occlusion>,
}

/// A hand over the slip: from `at_s` seconds after the slip appears, for `for_s` seconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Occlusion {
    pub at_s: f64,
    pub for_s: f64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ItemQty {
    pub name: String,
    #[serde(default = "default_quantity")]
    pub quantity: u32,
}

/// Look of a slip and its scene; every field optional (order > station > scenario >
/// defaults of [`Look`]).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LookPatch {
    /// Slip text; `{id}` is replaced by the order ID. Default `ORDER #{id}`.
    pub slip_text: Option<String>,
    /// Pango family and style of the slip, e.g. `DejaVu Sans Bold`, `Liberation Serif Bold`.
    pub font: Option<String>,
    /// Font size of the slip (points as textoverlay renders them, roughly pixels).
    pub font_size: Option<u32>,
    /// Top-left corner of the slip in pixels.
    pub x: Option<i32>,
    pub y: Option<i32>,
    /// Random extra offset of the slip, up to this many pixels in each direction (seeded).
    pub jitter_px: Option<i32>,
    /// Rotation of the slip on the table in degrees (counter-clockwise), at most 15 either
    /// way.
    pub rotation_deg: Option<f64>,
    /// Camera rotation in degrees (the whole picture, as a tilted camera), at most 15.
    pub camera_rotation_deg: Option<f64>,
    /// Horizontal motion blur: length of the smear in pixels, 0..=40.
    pub motion_blur_px: Option<u32>,
    /// Amplitude of seeded per-pixel luma noise, 0..=64 grey levels.
    pub noise: Option<u32>,
    /// Lighting: luma offset, -64..=64.
    pub brightness: Option<i32>,
    /// Pango family and style of the item labels.
    pub label_font: Option<String>,
    pub label_size: Option<u32>,
}

impl LookPatch {
    fn over(&self, base: &LookPatch) -> LookPatch {
        LookPatch {
            slip_text: self.slip_text.clone().or_else(|| base.slip_text.clone()),
            font: self.font.clone().or_else(|| base.font.clone()),
            font_size: self.font_size.or(base.font_size),
            x: self.x.or(base.x),
            y: self.y.or(base.y),
            jitter_px: self.jitter_px.or(base.jitter_px),
            rotation_deg: self.rotation_deg.or(base.rotation_deg),
            camera_rotation_deg: self.camera_rotation_deg.or(base.camera_rotation_deg),
            motion_blur_px: self.motion_blur_px.or(base.motion_blur_px),
            noise: self.noise.or(base.noise),
            brightness: self.brightness.or(base.brightness),
            label_font: self.label_font.clone().or_else(|| base.label_font.clone()),
            label_size: self.label_size.or(base.label_size),
        }
    }
}

/// A resolved look.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Look {
    pub slip_text: String,
    pub font: String,
    pub font_size: u32,
    pub x: i32,
    pub y: i32,
    pub rotation_deg: f64,
    pub camera_rotation_deg: f64,
    pub motion_blur_px: u32,
    pub noise: u32,
    pub brightness: i32,
    pub label_font: String,
    pub label_size: u32,
}

// ---- plan and ground truth ---------------------------------------------------------------

/// One order on a station's timeline.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedOrder {
    /// The ID printed on the slip.
    pub order_id: String,
    /// Where the order is stored: the ID, or `{id}.{n}` for its n-th use on the station.
    pub order_key: String,
    /// Seconds from the start of the stream: the slip and the items are in view in
    /// `[start_s, end_s)`.
    pub start_s: f64,
    pub end_s: f64,
    pub ordered: Vec<ItemQty>,
    pub packed: Vec<ItemQty>,
    pub in_orders_json: bool,
    pub look: Look,
    /// What each label slot shows.
    pub labels: Vec<String>,
    pub slip_text: String,
    /// When a hand covers the slip, relative to `start_s`.
    pub occlusions: Vec<Occlusion>,
}

impl PlannedOrder {
    /// Whether a hand covers the slip at second `t` of the stream.
    pub fn occluded_at(&self, t: f64) -> bool {
        self.occlusions.iter().any(|o| {
            let at = self.start_s + o.at_s;
            at <= t && t < at + o.for_s
        })
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct StationPlan {
    pub station_id: String,
    pub duration_s: f64,
    pub orders: Vec<PlannedOrder>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct QuantityMismatch {
    pub name: String,
    pub expected: u32,
    pub detected: u32,
}

/// The expected outcome of one order.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ExpectedOrder {
    pub station_id: String,
    /// The order key its result and marker are stored under (the slip's ID, or `{id}.{n}`
    /// when the number was used on the station before).
    pub order_id: String,
    /// `validated`, `mismatch` or `unknown-order` (the orchestrator's statuses).
    pub status: String,
    pub ordered: Vec<ItemQty>,
    pub packed: Vec<ItemQty>,
    pub missing: Vec<ItemQty>,
    pub extra: Vec<ItemQty>,
    pub quantity_mismatch: Vec<QuantityMismatch>,
    /// Seconds (from the start of the station's stream) the slip is in view.
    pub start_s: f64,
    pub end_s: f64,
}

/// `ground_truth.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct GroundTruth {
    pub seed: u64,
    pub fps: u32,
    /// Per station, the duration of its scenario in seconds.
    pub durations_s: BTreeMap<String, f64>,
    pub orders: Vec<ExpectedOrder>,
}

/// Frames stored for one expected order against the seconds its slip is in view.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderAttribution {
    pub station_id: String,
    pub order_id: String,
    /// Seconds the slip is in view (covered or not): the frames the order should get at the
    /// pipelines' 1 frame/s.
    pub shown_s: f64,
    /// Frames its manifest lists.
    pub stored: usize,
    /// Of those, frames captured well inside another order's seconds (more than a second
    /// from either end of them): frames stored under the wrong order.
    pub foreign: usize,
}

impl OrderAttribution {
    /// Stored frames that are the order's own, at most one per second shown.
    pub fn attributed(&self) -> f64 {
        ((self.stored - self.foreign) as f64).min(self.shown_s)
    }
}

/// Frame attribution of a run: per expected order, the frames stored against the seconds
/// shown. A pre-rolled frame of the empty table just before a slip counts for its order,
/// since no order can claim it, but never beyond the seconds shown.
#[derive(Debug, Clone, PartialEq)]
pub struct Attribution {
    pub orders: Vec<OrderAttribution>,
}

impl Attribution {
    /// `frames`: the capture times (Unix ms) each manifest lists, by (station, order);
    /// `stream_starts`: the Unix ms of second 0 of each station's stream.
    pub fn new(
        truth: &GroundTruth,
        frames: &BTreeMap<(String, String), Vec<u64>>,
        stream_starts: &BTreeMap<String, u64>,
    ) -> Attribution {
        let orders = truth
            .orders
            .iter()
            .map(|e| {
                let key = (e.station_id.clone(), e.order_id.clone());
                let times = frames.get(&key).map_or(&[][..], Vec::as_slice);
                let start = stream_starts.get(&e.station_id);
                let foreign = times
                    .iter()
                    .filter(|&&ms| {
                        let Some(&start) = start else { return false };
                        let t = (ms as f64 - start as f64) / 1000.0;
                        truth.orders.iter().any(|o| {
                            o.station_id == e.station_id
                                && o.order_id != e.order_id
                                && o.start_s + 1.0 < t
                                && t < o.end_s - 1.0
                        })
                    })
                    .count();
                OrderAttribution {
                    station_id: e.station_id.clone(),
                    order_id: e.order_id.clone(),
                    shown_s: e.end_s - e.start_s,
                    stored: times.len(),
                    foreign,
                }
            })
            .collect();
        Attribution { orders }
    }

    /// Attributed frames of every order against all seconds shown, in percent.
    pub fn percent(&self) -> f64 {
        let shown: f64 = self.orders.iter().map(|o| o.shown_s).sum();
        let got: f64 = self.orders.iter().map(OrderAttribution::attributed).sum();
        if shown == 0.0 {
            0.0
        } else {
            100.0 * got / shown
        }
    }
}

impl std::fmt::Display for Attribution {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "| order | seconds shown | frames stored | in another order |"
        )?;
        writeln!(f, "| --- | ---: | ---: | ---: |")?;
        for o in &self.orders {
            writeln!(
                f,
                "| {}/{} | {} | {} | {} |",
                o.station_id, o.order_id, o.shown_s, o.stored, o.foreign
            )?;
        }
        write!(
            f,
            "frame attribution (frames stored per order against seconds shown): {:.1} %",
            self.percent()
        )
    }
}

/// A scenario checked and laid out on time lines.
#[derive(Debug, Clone)]
pub struct Plan {
    pub scenario: Scenario,
    pub stations: Vec<StationPlan>,
}

fn valid_id(id: &str) -> bool {
    let b = id.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b'-')
}

fn norm(name: &str) -> String {
    name.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// Sums quantities per normalised name, in first-seen order.
fn merged(items: &[ItemQty]) -> Vec<ItemQty> {
    let mut out: Vec<ItemQty> = Vec::new();
    for it in items {
        let name = norm(&it.name);
        if it.quantity == 0 {
            continue;
        }
        match out.iter_mut().find(|o| o.name == name) {
            Some(o) => o.quantity += it.quantity,
            None => out.push(ItemQty {
                name,
                quantity: it.quantity,
            }),
        }
    }
    out
}

/// A small seeded generator (SplitMix64): the same seed gives the same scenes everywhere.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `-r..=r`.
    pub fn offset(&mut self, r: i32) -> i32 {
        if r <= 0 {
            return 0;
        }
        (self.next_u64() % (2 * r as u64 + 1)) as i32 - r
    }
}

impl Scenario {
    pub fn from_toml(text: &str) -> Result<Scenario, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    pub fn load(path: &Path) -> Result<Scenario, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Scenario::from_toml(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn inventory(&self) -> Vec<InventoryItem> {
        if self.inventory.is_empty() {
            default_inventory()
        } else {
            self.inventory.clone()
        }
    }
}

impl Plan {
    /// Checks the scenario and lays every station out on its time line.
    pub fn new(scenario: Scenario) -> Result<Plan, String> {
        if scenario.fps == 0 || scenario.fps > 30 {
            return Err("fps: must be 1..=30".into());
        }
        if !scenario.width.is_multiple_of(8) || scenario.width < 320 || scenario.height < 240 {
            return Err("width/height: at least 320x240, width a multiple of 8".into());
        }
        if scenario.stations.is_empty() {
            return Err("stations: at least one".into());
        }
        let inventory = scenario.inventory();
        let known = |name: &str| {
            let n = norm(name);
            inventory
                .iter()
                .any(|i| norm(&i.name) == n || i.aliases.iter().any(|a| norm(a) == n))
        };
        let mut rng = Rng::new(scenario.seed);
        let mut stations = Vec::new();
        let mut ordered_by_id: BTreeMap<String, Vec<ItemQty>> = BTreeMap::new();
        for (si, st) in scenario.stations.iter().enumerate() {
            let at = format!("stations[{si}]");
            if !valid_id(&st.id) {
                return Err(format!("{at}.id: {:?} is not a valid station ID", st.id));
            }
            if scenario.stations[..si].iter().any(|o| o.id == st.id) {
                return Err(format!("{at}.id: {:?} appears twice", st.id));
            }
            if st.orders.is_empty() {
                return Err(format!("{at}.orders: at least one"));
            }
            let station_look = st.look.over(&scenario.look);
            let mut t = st.lead_in_s.max(0.0);
            let mut orders = Vec::new();
            for (oi, o) in st.orders.iter().enumerate() {
                let at = format!("{at}.orders[{oi}]");
                if !valid_id(&o.id) {
                    return Err(format!("{at}.id: {:?} is not a valid order ID", o.id));
                }
                let before: Vec<&PlannedOrder> = orders
                    .iter()
                    .filter(|p: &&PlannedOrder| p.order_id == o.id)
                    .collect();
                if let Some(last) = before.last() {
                    let gap = t - last.end_s;
                    match scenario.reuse_after_s {
                        Some(r) if gap >= f64::from(r) + 2.0 => {}
                        Some(r) => {
                            return Err(format!(
                                "{at}.id: {:?} comes back {gap} s after its previous order on \
                                 the station ends; a reused number needs at least \
                                 reuse_after_s + 2 = {} s",
                                o.id,
                                r + 2
                            ));
                        }
                        None => {
                            return Err(format!(
                                "{at}.id: {:?} appears twice on the station (set \
                                 reuse_after_s to reuse numbers)",
                                o.id
                            ));
                        }
                    }
                }
                let order_key = oa_contract::order_key(&o.id, before.len() as u32 + 1);
                if !(o.slip_s >= 1.0 && o.pause_s >= 0.0) {
                    return Err(format!("{at}: slip_s must be >= 1 and pause_s >= 0"));
                }
                for (ci, c) in o.occlusions.iter().enumerate() {
                    if !(c.at_s >= 0.0 && c.for_s > 0.0 && c.at_s + c.for_s <= o.slip_s) {
                        return Err(format!(
                            "{at}.occlusions[{ci}]: at_s >= 0, for_s > 0 and at_s + for_s <= \
                             slip_s"
                        ));
                    }
                }
                let packed = o.packed.clone().unwrap_or_else(|| o.ordered.clone());
                let mut labels = Vec::new();
                for it in &packed {
                    if !known(&it.name) {
                        return Err(format!(
                            "{at}.packed: {:?} is not in the inventory (labels name inventory items)",
                            it.name
                        ));
                    }
                    for _ in 0..it.quantity {
                        labels.push(it.name.clone());
                    }
                }
                if labels.len() > LABEL_SLOTS.len() {
                    return Err(format!(
                        "{at}.packed: at most {} units fit on the table",
                        LABEL_SLOTS.len()
                    ));
                }
                if o.in_orders_json {
                    let ordered = merged(&o.ordered);
                    if let Some(prev) = ordered_by_id.get(&o.id)
                        && *prev != ordered
                    {
                        return Err(format!(
                            "{at}.ordered: order {:?} is ordered differently elsewhere \
                             (orders.json holds one list per ID)",
                            o.id
                        ));
                    }
                    ordered_by_id.insert(o.id.clone(), ordered);
                }
                let p = o.look.over(&station_look);
                let jitter = p.jitter_px.unwrap_or(0);
                let rotation_deg = p.rotation_deg.unwrap_or(0.0);
                if rotation_deg.abs() > 15.0 {
                    return Err(format!("{at}.look.rotation_deg: at most 15 degrees"));
                }
                let camera_rotation_deg = p.camera_rotation_deg.unwrap_or(0.0);
                if camera_rotation_deg.abs() > 15.0 {
                    return Err(format!("{at}.look.camera_rotation_deg: at most 15 degrees"));
                }
                let motion_blur_px = p.motion_blur_px.unwrap_or(0);
                if motion_blur_px > 40 {
                    return Err(format!("{at}.look.motion_blur_px: at most 40 pixels"));
                }
                let look = Look {
                    slip_text: p.slip_text.clone().unwrap_or_else(|| "ORDER #{id}".into()),
                    font: p.font.clone().unwrap_or_else(|| "DejaVu Sans Bold".into()),
                    font_size: p.font_size.unwrap_or(32),
                    x: (p.x.unwrap_or(80) + rng.offset(jitter)).max(0),
                    y: (p.y.unwrap_or(60) + rng.offset(jitter)).max(0),
                    rotation_deg,
                    camera_rotation_deg,
                    motion_blur_px,
                    noise: p.noise.unwrap_or(0).min(64),
                    brightness: p.brightness.unwrap_or(0).clamp(-64, 64),
                    label_font: p
                        .label_font
                        .clone()
                        .unwrap_or_else(|| "DejaVu Sans Bold".into()),
                    label_size: p.label_size.unwrap_or(20),
                };
                orders.push(PlannedOrder {
                    order_id: o.id.clone(),
                    order_key,
                    start_s: t,
                    end_s: t + o.slip_s,
                    ordered: o.ordered.clone(),
                    packed,
                    in_orders_json: o.in_orders_json,
                    slip_text: look.slip_text.replace("{id}", &o.id),
                    look,
                    labels,
                    occlusions: o.occlusions.clone(),
                });
                t += o.slip_s + o.pause_s;
            }
            stations.push(StationPlan {
                station_id: st.id.clone(),
                duration_s: t + 1.0,
                orders,
            });
        }
        Ok(Plan { scenario, stations })
    }

    /// `orders.json`: what was ordered, by order ID.
    pub fn orders_json(&self) -> serde_json::Value {
        let mut map = serde_json::Map::new();
        for st in &self.stations {
            for o in st.orders.iter().filter(|o| o.in_orders_json) {
                map.insert(
                    o.order_id.clone(),
                    serde_json::to_value(&o.ordered).unwrap(),
                );
            }
        }
        serde_json::Value::Object(map)
    }

    /// `inventory.json`.
    pub fn inventory_json(&self) -> serde_json::Value {
        serde_json::json!({ "items": self.scenario.inventory() })
    }

    /// The expected outcome of every order.
    pub fn ground_truth(&self) -> GroundTruth {
        let mut orders = Vec::new();
        let mut durations_s = BTreeMap::new();
        for st in &self.stations {
            durations_s.insert(st.station_id.clone(), st.duration_s);
            for o in &st.orders {
                let ordered = merged(&o.ordered);
                let packed = merged(&o.packed);
                let (mut missing, mut extra, mut quantity_mismatch) = (vec![], vec![], vec![]);
                let status = if !o.in_orders_json {
                    "unknown-order"
                } else {
                    for e in &ordered {
                        match packed.iter().find(|p| p.name == e.name) {
                            None => missing.push(e.clone()),
                            Some(p) if p.quantity != e.quantity => {
                                quantity_mismatch.push(QuantityMismatch {
                                    name: e.name.clone(),
                                    expected: e.quantity,
                                    detected: p.quantity,
                                })
                            }
                            Some(_) => {}
                        }
                    }
                    for p in &packed {
                        if !ordered.iter().any(|e| e.name == p.name) {
                            extra.push(p.clone());
                        }
                    }
                    if missing.is_empty() && extra.is_empty() && quantity_mismatch.is_empty() {
                        "validated"
                    } else {
                        "mismatch"
                    }
                };
                orders.push(ExpectedOrder {
                    station_id: st.station_id.clone(),
                    order_id: o.order_key.clone(),
                    status: status.into(),
                    ordered,
                    packed,
                    missing,
                    extra,
                    quantity_mismatch,
                    start_s: o.start_s,
                    end_s: o.end_s,
                });
            }
        }
        GroundTruth {
            seed: self.scenario.seed,
            fps: self.scenario.fps,
            durations_s,
            orders,
        }
    }

    /// Writes `orders.json`, `inventory.json` and `ground_truth.json` into `dir`.
    pub fn write_files(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let pretty = |v: &serde_json::Value| serde_json::to_string_pretty(v).unwrap() + "\n";
        std::fs::write(dir.join("orders.json"), pretty(&self.orders_json()))?;
        std::fs::write(dir.join("inventory.json"), pretty(&self.inventory_json()))?;
        std::fs::write(
            dir.join("ground_truth.json"),
            pretty(&serde_json::to_value(self.ground_truth()).unwrap()),
        )?;
        Ok(())
    }
}

/// Now, in Unix milliseconds.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

// ---- rendering and serving ---------------------------------------------------------------

/// What happens when a station's scenario is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AtEnd {
    /// The stream ends (EOS).
    Eos,
    /// The scenario starts over.
    Loop,
    /// The empty table stays in view until the server stops.
    Hold,
}

/// Where the rendered H.264 goes.
enum Output<'a> {
    /// An RTSP mount (the description is a bin ending in `pay0`), rendered live.
    Rtsp(AtEnd),
    /// A Matroska file, rendered as fast as the machine goes.
    File(&'a Path),
}

/// The gst-launch description of one station's media (see the module docs).
fn launch_line(plan: &StationPlan, sc: &Scenario, out: Output) -> String {
    let (w, h, fps) = (sc.width, sc.height, sc.fps);
    let num_buffers = match out {
        Output::Rtsp(AtEnd::Eos) | Output::File(_) => format!(
            " num-buffers={}",
            (plan.duration_s * fps as f64).ceil() as u64
        ),
        Output::Rtsp(_) => String::new(),
    };
    let (open, live) = match out {
        Output::Rtsp(_) => ("( ", true),
        Output::File(_) => ("", false),
    };
    let mut s = format!(
        "{open}videotestsrc name=src is-live={live} pattern=solid-color foreground-color=0xffe4e4e4{num_buffers} \
           ! video/x-raw,format=I420,width={w},height={h},framerate={fps}/1"
    );
    for i in 0..LABEL_SLOTS.len() {
        s.push_str(&format!(
            " ! textoverlay name=label{i} valignment=top halignment=left \
               color=0xff000000 shaded-background=false"
        ));
    }
    s.push_str(
        " ! textoverlay name=slip valignment=top halignment=left color=0xff000000 \
           shaded-background=false ! identity name=slipfx",
    );
    if plan
        .orders
        .iter()
        .any(|o| o.look.camera_rotation_deg != 0.0)
    {
        s.push_str(
            " ! videoconvert ! video/x-raw,format=BGRx ! rotate name=rot angle=0 \
               ! videoconvert ! video/x-raw,format=I420",
        );
    }
    s.push_str(&format!(
        " ! identity name=fx ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max={fps} \
           bitrate=2500"
    ));
    match out {
        Output::Rtsp(_) => s.push_str(" ! rtph264pay name=pay0 pt=96 config-interval=1 )"),
        Output::File(path) => s.push_str(&format!(
            " ! h264parse ! matroskamux ! filesink location=\"{}\"",
            path.display()
        )),
    }
    s
}

/// A recording with no slip in it (a test pattern), H.264 in Matroska at 5 frames/s, of
/// `seconds` at `width`x`height`: what a check of it must refuse to call orders.
pub fn record_blank(path: &Path, width: u32, height: u32, seconds: u32) -> Result<(), String> {
    let status = std::process::Command::new("gst-launch-1.0")
        .arg("-q")
        .arg("videotestsrc")
        .arg(format!("num-buffers={}", seconds * 5))
        .args(["pattern=smpte", "!"])
        .arg(format!(
            "video/x-raw,width={width},height={height},framerate=5/1"
        ))
        .args([
            "!",
            "x264enc",
            "!",
            "h264parse",
            "!",
            "matroskamux",
            "!",
            "filesink",
        ])
        .arg(format!("location={}", path.display()))
        .status()
        .map_err(|e| format!("gst-launch-1.0: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!(
            "gst-launch-1.0 could not write {}: {status}",
            path.display()
        ))
    }
}

/// Renders station `station` of `plan` into a Matroska file of H.264 (the same scene the
/// RTSP camera shows), as fast as the machine goes, for [`Simulator::replay`].
pub fn record(plan: &Plan, station: usize, path: &Path) -> Result<(), String> {
    gst::init().map_err(|e| e.to_string())?;
    let st = plan
        .stations
        .get(station)
        .ok_or_else(|| format!("the scenario has no station number {station}"))?;
    let line = launch_line(st, &plan.scenario, Output::File(path));
    let pipeline = gst::parse::launch(&line)
        .map_err(|e| format!("cannot build the recording pipeline: {e}"))?
        .downcast::<gst::Pipeline>()
        .map_err(|_| "the recording description is not a pipeline".to_string())?;
    configure_media(
        pipeline.upcast_ref(),
        Arc::new(st.clone()),
        &plan.scenario,
        AtEnd::Eos,
        Arc::new(Mutex::new(None)),
    );
    let bus = pipeline.bus().unwrap();
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|e| format!("cannot start recording into {}: {e}", path.display()))?;
    let mut result = Ok(());
    for msg in bus.iter_timed(gst::ClockTime::NONE) {
        match msg.view() {
            gst::MessageView::Eos(_) => break,
            gst::MessageView::Error(e) => {
                result = Err(format!(
                    "recording into {} failed: {} ({:?})",
                    path.display(),
                    e.error(),
                    e.debug()
                ));
                break;
            }
            _ => {}
        }
    }
    let _ = pipeline.set_state(gst::State::Null);
    result
}

/// Luma effects applied to the frame being shown.
#[derive(Debug, Clone, Copy, Default)]
struct Fx {
    noise: u32,
    brightness: i32,
    motion_blur_px: u32,
}

/// Where the shown slip lies and how it is turned.
#[derive(Debug, Clone, Copy, Default)]
struct SlipFx {
    x: usize,
    y: usize,
    /// Generous size of the printed text, to find its ink.
    max_w: usize,
    max_h: usize,
    rotation_deg: f64,
    /// Index of the order shown, for its occlusions.
    order: Option<usize>,
}

/// Configures the elements of a freshly built media: the scene follows the timestamps.
fn configure_media(
    bin: &gst::Bin,
    plan: Arc<StationPlan>,
    sc: &Scenario,
    at_end: AtEnd,
    started: Arc<Mutex<Option<u64>>>,
) {
    let (w, h) = (sc.width, sc.height);
    let (sx, sy) = (w as f64 / 1280.0, h as f64 / 720.0);
    let seed = sc.seed;
    let fx = Arc::new(Mutex::new(Fx::default()));
    let slip = bin.by_name("slip").expect("slip overlay");
    let labels: Vec<gst::Element> = (0..LABEL_SLOTS.len())
        .map(|i| bin.by_name(&format!("label{i}")).expect("label overlay"))
        .collect();
    let rot = bin.by_name("rot");
    let src = bin.by_name("src").expect("source");
    // usize::MAX: nothing applied yet; plan.orders.len(): empty table.
    let shown = std::sync::atomic::AtomicUsize::new(usize::MAX);
    let fx_set = fx.clone();
    let slip_fx = Arc::new(Mutex::new(SlipFx::default()));
    let slip_fx_set = slip_fx.clone();
    let plan_fx = plan.clone();
    // A camera keeps its clock: a media built for a client that reconnects starts where the
    // station's scene is now, not at second 0 (ms from this media's PTS to scenario time).
    let offset_ms = Arc::new(std::sync::OnceLock::<u64>::new());
    let offset_fx = offset_ms.clone();
    src.static_pad("src")
        .unwrap()
        .add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            let Some(pts) = info.buffer().and_then(|b| b.pts()) else {
                return gst::PadProbeReturn::Ok;
            };
            let offset = *offset_ms.get_or_init(|| {
                let zero = unix_ms().saturating_sub(pts.mseconds());
                let first = *started.lock().unwrap().get_or_insert(zero);
                zero.saturating_sub(first)
            });
            let mut t = (pts.mseconds() + offset) as f64 / 1e3;
            if at_end == AtEnd::Loop {
                t %= plan.duration_s;
            }
            let now = plan
                .orders
                .iter()
                .position(|o| o.start_s <= t && t < o.end_s)
                .unwrap_or(plan.orders.len());
            if shown.swap(now, Ordering::SeqCst) == now {
                return gst::PadProbeReturn::Ok;
            }
            match plan.orders.get(now) {
                Some(o) => {
                    let l = &o.look;
                    slip.set_property("font-desc", format!("{} {}", l.font, l.font_size));
                    slip.set_property("xpad", ((l.x as f64) * sx) as i32);
                    slip.set_property("ypad", ((l.y as f64) * sy) as i32);
                    slip.set_property("text", &o.slip_text);
                    for (i, el) in labels.iter().enumerate() {
                        let (x, y) = LABEL_SLOTS[i];
                        el.set_property("font-desc", format!("{} {}", l.label_font, l.label_size));
                        el.set_property("xpad", ((x as f64) * sx) as i32);
                        el.set_property("ypad", ((y as f64) * sy) as i32);
                        el.set_property("text", o.labels.get(i).map_or("", String::as_str));
                    }
                    if let Some(rot) = &rot {
                        rot.set_property("angle", l.camera_rotation_deg.to_radians());
                    }
                    *fx_set.lock().unwrap() = Fx {
                        noise: l.noise,
                        brightness: l.brightness,
                        motion_blur_px: l.motion_blur_px,
                    };
                    let lines = o.slip_text.lines().count().max(1);
                    let chars = o.slip_text.lines().map(|t| t.chars().count()).max();
                    *slip_fx_set.lock().unwrap() = SlipFx {
                        x: ((l.x as f64) * sx) as usize,
                        y: ((l.y as f64) * sy) as usize,
                        // textoverlay scales fonts with the frame, about 2.3x at 1280x720.
                        max_w: chars.unwrap_or(0) * l.font_size as usize * 3 + 16,
                        // Never down into the item labels.
                        max_h: (lines * l.font_size as usize * 3 + 16).min(
                            ((LABEL_SLOTS[0].1 as f64 * sy) as usize)
                                .saturating_sub(((l.y as f64) * sy) as usize + 4),
                        ),
                        rotation_deg: l.rotation_deg,
                        order: Some(now),
                    };
                }
                None => {
                    slip.set_property("text", "");
                    for el in &labels {
                        el.set_property("text", "");
                    }
                    *fx_set.lock().unwrap() = Fx::default();
                    *slip_fx_set.lock().unwrap() = SlipFx::default();
                }
            }
            gst::PadProbeReturn::Ok
        });
    let (wu, hu) = (w as usize, h as usize);
    let luma = wu * hu;
    bin.by_name("slipfx")
        .expect("slip fx identity")
        .static_pad("src")
        .unwrap()
        .add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            let f = *slip_fx.lock().unwrap();
            let occluded = f
                .order
                .and_then(|i| plan_fx.orders.get(i))
                .is_some_and(|o| {
                    let pts = info.buffer().and_then(|b| b.pts());
                    let offset = offset_fx.get().copied().unwrap_or(0);
                    let mut t = pts.map_or(-1.0, |p| (p.mseconds() + offset) as f64 / 1e3);
                    if at_end == AtEnd::Loop {
                        t %= plan_fx.duration_s;
                    }
                    o.occluded_at(t)
                });
            if f.rotation_deg == 0.0 && !occluded {
                return gst::PadProbeReturn::Ok;
            }
            let Some(buf) = info.buffer_mut() else {
                return gst::PadProbeReturn::Ok;
            };
            if let Ok(mut map) = buf.make_mut().map_writable() {
                let data = &mut map.as_mut_slice()[..luma];
                let window = effects::Rect {
                    x0: f.x.saturating_sub(8),
                    y0: f.y.saturating_sub(8),
                    x1: f.x + f.max_w,
                    y1: f.y + f.max_h,
                };
                if f.rotation_deg != 0.0
                    && let Some(ink) = effects::ink_bbox(data, wu, hu, window)
                {
                    let pad = 4;
                    let bbox = effects::Rect {
                        x0: ink.x0.saturating_sub(pad),
                        y0: ink.y0.saturating_sub(pad),
                        x1: (ink.x1 + pad).min(wu),
                        y1: (ink.y1 + pad).min(hu),
                    };
                    let background = data[bbox.y0 * wu + bbox.x0];
                    effects::rotate_region(data, wu, hu, bbox, f.rotation_deg, background);
                }
                if occluded {
                    // After the turn, so that the hand covers the slip as it lies; a turned
                    // slip may reach a little beyond the window at its ends.
                    let wide = effects::Rect {
                        x0: window.x0.saturating_sub(24),
                        y0: window.y0.saturating_sub(64),
                        x1: window.x1 + 24,
                        y1: window.y1,
                    };
                    let cover = effects::ink_bbox(data, wu, hu, wide).unwrap_or(window);
                    effects::draw_hand(data, wu, hu, cover);
                }
            }
            gst::PadProbeReturn::Ok
        });
    let fx_el = bin.by_name("fx").expect("fx identity");
    fx_el
        .static_pad("src")
        .unwrap()
        .add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            let f = *fx.lock().unwrap();
            if f.noise == 0 && f.brightness == 0 && f.motion_blur_px == 0 {
                return gst::PadProbeReturn::Ok;
            }
            let Some(buf) = info.buffer_mut() else {
                return gst::PadProbeReturn::Ok;
            };
            let frame_no = buf.pts().map_or(0, |p| p.nseconds() / 1_000_000);
            let b = buf.make_mut();
            if let Ok(mut map) = b.map_writable() {
                let data = map.as_mut_slice();
                let n = luma.min(data.len());
                effects::motion_blur(&mut data[..n], wu, hu, f.motion_blur_px as usize);
                let mut rng = Rng::new(seed ^ frame_no.wrapping_mul(0x2545_F491_4F6C_DD1D));
                let amp = f.noise as i32;
                let mut bits = 0u64;
                for (i, px) in data[..n].iter_mut().enumerate() {
                    let noise = if amp > 0 {
                        if i % 4 == 0 {
                            bits = rng.next_u64();
                        }
                        let r = ((bits >> ((i % 4) * 16)) & 0xffff) as i32;
                        r % (2 * amp + 1) - amp
                    } else {
                        0
                    };
                    *px = (*px as i32 + f.brightness + noise).clamp(0, 255) as u8;
                }
            }
            gst::PadProbeReturn::Ok
        });
}

/// Raises `flag` when the stream of a media's `pay0` ends.
fn flag_eos(bin: &gst::Bin, flag: Arc<AtomicBool>) {
    if let Some(pay) = bin.by_name("pay0") {
        pay.static_pad("sink").unwrap().add_probe(
            gst::PadProbeType::EVENT_DOWNSTREAM,
            move |_, info| {
                if let Some(ev) = info.event()
                    && ev.type_() == gst::EventType::Eos
                {
                    flag.store(true, Ordering::SeqCst);
                }
                gst::PadProbeReturn::Ok
            },
        );
    }
}

/// RTSP cameras for every station of a plan, on 127.0.0.1, served from their own GLib
/// main loop thread. Each station's scenario starts when its first client connects.
pub struct Simulator {
    urls: Vec<(String, String)>,
    server: gst_rtsp_server::RTSPServer,
    factories: Vec<(String, gst_rtsp_server::RTSPMediaFactory)>,
    started: Vec<Arc<Mutex<Option<u64>>>>,
    ended: Vec<Arc<AtomicBool>>,
    main_loop: glib::MainLoop,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Simulator {
    /// Serves on `port` (0: a free port).
    pub fn serve(plan: &Plan, port: u16, at_end: AtEnd) -> Result<Simulator, String> {
        gst::init().map_err(|e| e.to_string())?;
        for el in ["videotestsrc", "textoverlay", "x264enc", "rtph264pay"] {
            if gst::ElementFactory::find(el).is_none() {
                return Err(format!(
                    "GStreamer element {el} is missing (Debian: gstreamer1.0-plugins-base/good/ugly)"
                ));
            }
        }
        let mut factories = Vec::new();
        let mut ended = Vec::new();
        let mut started = Vec::new();
        for st in &plan.stations {
            let factory = gst_rtsp_server::RTSPMediaFactory::new();
            factory.set_launch(&launch_line(st, &plan.scenario, Output::Rtsp(at_end)));
            factory.set_shared(true);
            let id = st.station_id.clone();
            let st = Arc::new(st.clone());
            let sc = plan.scenario.clone();
            let flag = Arc::new(AtomicBool::new(false));
            ended.push(flag.clone());
            let start = Arc::new(Mutex::new(None));
            started.push(start.clone());
            factory.connect_media_configure(move |_, media| {
                let element = media.element();
                let Some(bin) = element.downcast_ref::<gst::Bin>() else {
                    return;
                };
                configure_media(bin, st.clone(), &sc, at_end, start.clone());
                flag_eos(bin, flag.clone());
            });
            factories.push((id, factory));
        }
        Simulator::run_server(port, factories, started, ended)
    }

    /// Serves `recording` (from [`record`]) on one mount per station ID, each client from
    /// the start of the file, paced to the clock: a camera whose frames cost only demuxing.
    pub fn replay(
        recording: &Path,
        station_ids: &[String],
        port: u16,
    ) -> Result<Simulator, String> {
        gst::init().map_err(|e| e.to_string())?;
        if !recording.is_file() {
            return Err(format!("recording {} does not exist", recording.display()));
        }
        let mut factories = Vec::new();
        let mut ended = Vec::new();
        for id in station_ids {
            let factory = gst_rtsp_server::RTSPMediaFactory::new();
            // The file is not live: identity sync=true paces it like a camera.
            factory.set_launch(&format!(
                "( filesrc location=\"{}\" ! matroskademux ! h264parse ! identity sync=true \
                   ! rtph264pay name=pay0 pt=96 config-interval=1 )",
                recording.display()
            ));
            let flag = Arc::new(AtomicBool::new(false));
            ended.push(flag.clone());
            factory.connect_media_configure(move |_, media| {
                if let Some(bin) = media.element().downcast_ref::<gst::Bin>() {
                    flag_eos(bin, flag.clone());
                }
            });
            factories.push((id.clone(), factory));
        }
        let started = station_ids
            .iter()
            .map(|_| Arc::new(Mutex::new(None)))
            .collect();
        Simulator::run_server(port, factories, started, ended)
    }

    /// Serves each `(station ID, factory)` on `/{station ID}` at 127.0.0.1:`port` from a
    /// GLib main loop of its own.
    fn run_server(
        port: u16,
        factories: Vec<(String, gst_rtsp_server::RTSPMediaFactory)>,
        started: Vec<Arc<Mutex<Option<u64>>>>,
        ended: Vec<Arc<AtomicBool>>,
    ) -> Result<Simulator, String> {
        let ctx = glib::MainContext::new();
        let main_loop = glib::MainLoop::new(Some(&ctx), false);
        let server = gst_rtsp_server::RTSPServer::new();
        server.set_address("127.0.0.1");
        server.set_service(&port.to_string());
        let mounts = server.mount_points().unwrap();
        for (id, factory) in &factories {
            mounts.add_factory(&format!("/{id}"), factory.clone());
        }
        let source = server
            .attach(Some(&ctx))
            .map_err(|e| format!("RTSP server cannot listen on 127.0.0.1:{port}: {e}"))?;
        let bound = server.bound_port();
        if bound <= 0 {
            return Err(format!("RTSP server did not bind 127.0.0.1:{port}"));
        }
        let urls = factories
            .iter()
            .map(|(id, _)| {
                let url = format!("rtsp://127.0.0.1:{bound}/{id}");
                (id.clone(), url)
            })
            .collect();
        let loop2 = main_loop.clone();
        let server_ref = server.clone();
        let thread = std::thread::spawn(move || {
            ctx.with_thread_default(|| loop2.run()).unwrap();
            if let Some(source) = ctx.find_source_by_id(&source) {
                source.destroy();
            }
            drop(server);
        });
        Ok(Simulator {
            urls,
            server: server_ref,
            factories,
            started,
            ended,
            main_loop,
            thread: Some(thread),
        })
    }

    /// `(station ID, rtsp:// URL)` per station.
    pub fn urls(&self) -> &[(String, String)] {
        &self.urls
    }

    /// Per station (in scenario order), the wall-clock time (Unix ms) of second 0 of its
    /// scenario, once its first client has connected.
    pub fn stream_starts(&self) -> Vec<Option<u64>> {
        self.started.iter().map(|s| *s.lock().unwrap()).collect()
    }

    /// Takes station `id`'s camera off the network (its mount refuses new clients and its
    /// connected clients are dropped, as a camera losing power) or brings it back, showing
    /// the scene where the station's clock has it. Returns false for an unknown station.
    pub fn set_camera_online(&self, id: &str, online: bool) -> bool {
        let Some((_, factory)) = self.factories.iter().find(|(s, _)| s == id) else {
            return false;
        };
        let Some(mounts) = self.server.mount_points() else {
            return false;
        };
        let path = format!("/{id}");
        if online {
            mounts.add_factory(&path, factory.clone());
        } else {
            mounts.remove_factory(&path);
            // Only this station's clients: their sessions hold a media of this mount.
            self.server.client_filter(Some(&mut |_, client| {
                let mut ours = false;
                client.session_filter(Some(&mut |_, session| {
                    session.filter(Some(&mut |_, media| {
                        ours |= media.matches(&path).is_some();
                        gst_rtsp_server::RTSPFilterResult::Keep
                    }));
                    gst_rtsp_server::RTSPFilterResult::Keep
                }));
                if ours {
                    gst_rtsp_server::RTSPFilterResult::Remove
                } else {
                    gst_rtsp_server::RTSPFilterResult::Keep
                }
            }));
        }
        true
    }

    /// Whether every station's stream has reached its end (only with [`AtEnd::Eos`]).
    pub fn all_ended(&self) -> bool {
        self.ended.iter().all(|f| f.load(Ordering::SeqCst))
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        self.main_loop.quit();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: &str = r#"
seed = 7
[[stations]]
id = "s1"
[[stations.orders]]
id = "101"
ordered = [{ name = "banana", quantity = 2 }, { name = "green apple" }]
packed = [{ name = "banana" }, { name = "water bottle" }]
[[stations.orders]]
id = "102"
ordered = [{ name = "banana" }]
[[stations.orders]]
id = "999"
in_orders_json = false
packed = [{ name = "banana" }]
"#;

    #[test]
    fn ground_truth_of_a_small_scenario() {
        let plan = Plan::new(Scenario::from_toml(SMALL).unwrap()).unwrap();
        let gt = plan.ground_truth();
        assert_eq!(gt.orders.len(), 3);
        let o = &gt.orders[0];
        assert_eq!(o.status, "mismatch");
        assert_eq!(o.missing[0].name, "green apple");
        assert_eq!(o.extra[0].name, "water bottle");
        assert_eq!(o.quantity_mismatch[0].expected, 2);
        assert_eq!(o.quantity_mismatch[0].detected, 1);
        assert_eq!((o.start_s, o.end_s), (2.0, 8.0));
        assert_eq!(gt.orders[1].status, "validated");
        assert_eq!(gt.orders[1].start_s, 11.0);
        assert_eq!(gt.orders[2].status, "unknown-order");
        let orders = plan.orders_json();
        assert!(orders.get("999").is_none());
        assert_eq!(orders["101"][0]["quantity"], 2);
        assert_eq!(
            plan.stations[0].orders[0].labels,
            ["banana", "water bottle"]
        );
    }

    #[test]
    fn bad_scenarios_are_refused_with_the_field() {
        let bad = SMALL.replace("\"101\"", "\"../x\"");
        let e = Plan::new(Scenario::from_toml(&bad).unwrap()).unwrap_err();
        assert!(e.starts_with("stations[0].orders[0].id"), "{e}");
        let bad = SMALL.replace("water bottle", "pizza");
        let e = Plan::new(Scenario::from_toml(&bad).unwrap()).unwrap_err();
        assert!(e.contains("not in the inventory"), "{e}");
        assert!(Scenario::from_toml("stations = []\nbogus = 1").is_err());
        for (look, field) in [
            ("rotation_deg = 20.0", "look.rotation_deg"),
            ("camera_rotation_deg = -16.0", "look.camera_rotation_deg"),
            ("motion_blur_px = 41", "look.motion_blur_px"),
        ] {
            let bad = SMALL.replace(
                "id = \"102\"",
                &format!("id = \"102\"\nlook = {{ {look} }}"),
            );
            let e = Plan::new(Scenario::from_toml(&bad).unwrap()).unwrap_err();
            assert!(
                e.starts_with(&format!("stations[0].orders[1].{field}")),
                "{e}"
            );
        }
    }

    #[test]
    fn a_reused_number_is_a_new_order_key_only_after_reuse_after_s() {
        // 101 ends at 8 s, 102 shows 11..17 s; with pause_s = 3 the third order starts at 20 s.
        let again = SMALL.replace("\"999\"", "\"101\"").replace(
            "in_orders_json = false\n",
            "ordered = [{ name = \"banana\", quantity = 2 }, { name = \"green apple\" }]\n",
        );
        let e = Plan::new(Scenario::from_toml(&again).unwrap()).unwrap_err();
        assert!(
            e.contains("appears twice") && e.contains("reuse_after_s"),
            "{e}"
        );
        let soon = format!("reuse_after_s = 11\n{again}");
        let e = Plan::new(Scenario::from_toml(&soon).unwrap()).unwrap_err();
        assert!(
            e.starts_with("stations[0].orders[2].id") && e.contains("13 s"),
            "{e}"
        );
        let later = format!("reuse_after_s = 10\n{again}");
        let plan = Plan::new(Scenario::from_toml(&later).unwrap()).unwrap();
        let keys: Vec<&str> = plan.stations[0]
            .orders
            .iter()
            .map(|o| o.order_key.as_str())
            .collect();
        assert_eq!(keys, ["101", "102", "101.2"]);
        let gt = plan.ground_truth();
        assert_eq!(gt.orders[2].order_id, "101.2");
        assert_eq!(
            gt.orders[2].status, "mismatch",
            "the same expected items as 101"
        );
        assert_eq!(plan.stations[0].orders[2].slip_text, "ORDER #101");
        assert_eq!(plan.orders_json().as_object().unwrap().len(), 2);
    }

    #[test]
    fn shipped_scenarios_load() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
        let plan = Plan::new(Scenario::load(&dir.join("reused-numbers.toml")).unwrap()).unwrap();
        assert_eq!(plan.stations[0].orders[2].order_key, "384.2");
        for f in ["demo.toml", "varied-slips.toml", "occlusions.toml"] {
            let plan = Plan::new(Scenario::load(&dir.join(f)).unwrap()).unwrap();
            assert_eq!(plan.stations.len(), 2, "{f}");
            assert!(plan.stations.iter().all(|s| s.orders.len() >= 5), "{f}");
        }
    }

    #[test]
    fn occlusions_are_planned_and_checked() {
        let with = SMALL.replace(
            "id = \"102\"",
            "id = \"102\"\nocclusions = [{ at_s = 0, for_s = 2 }, { at_s = 4, for_s = 1 }]",
        );
        let plan = Plan::new(Scenario::from_toml(&with).unwrap()).unwrap();
        let o = &plan.stations[0].orders[1];
        assert_eq!(o.start_s, 11.0);
        assert!(o.occluded_at(11.0) && o.occluded_at(12.9) && o.occluded_at(15.5));
        assert!(!o.occluded_at(13.0) && !o.occluded_at(16.0) && !o.occluded_at(10.9));
        assert!(!plan.stations[0].orders[0].occluded_at(3.0));
        for bad in [
            "{ at_s = 5, for_s = 2 }",
            "{ at_s = -1, for_s = 1 }",
            "{ at_s = 1, for_s = 0 }",
        ] {
            let bad = SMALL.replace(
                "id = \"102\"",
                &format!("id = \"102\"\nocclusions = [{bad}]"),
            );
            let e = Plan::new(Scenario::from_toml(&bad).unwrap()).unwrap_err();
            assert!(e.starts_with("stations[0].orders[1].occlusions[0]"), "{e}");
        }
        let bad = SMALL.replace("id = \"102\"", "id = \"102\"\nocclusions = [{ at = 1 }]");
        assert!(Scenario::from_toml(&bad).is_err());
    }

    #[test]
    fn attribution_counts_frames_against_seconds_shown() {
        let plan = Plan::new(Scenario::from_toml(SMALL).unwrap()).unwrap();
        let gt = plan.ground_truth();
        // Orders at [2, 8), [11, 17), [20, 26) of a stream starting at Unix ms 1000.
        let at = |secs: &[f64]| -> Vec<u64> {
            secs.iter().map(|s| 1_000 + (s * 1000.0) as u64).collect()
        };
        let key = |o: &str| ("s1".to_string(), o.to_string());
        let frames = BTreeMap::from([
            // One pre-rolled frame of the table, 6 of its own: capped at 6.
            (key("101"), at(&[1.3, 2.3, 3.3, 4.3, 5.3, 6.3, 7.3])),
            // 4 of 6, and one frame from the middle of 999.
            (key("102"), at(&[11.3, 12.3, 13.3, 14.3, 23.0])),
        ]);
        let starts = BTreeMap::from([("s1".to_string(), 1_000)]);
        let a = Attribution::new(&gt, &frames, &starts);
        let rows: Vec<(usize, usize)> = a.orders.iter().map(|o| (o.stored, o.foreign)).collect();
        assert_eq!(rows, [(7, 0), (5, 1), (0, 0)]);
        assert!((a.percent() - 100.0 * 10.0 / 18.0).abs() < 1e-9);
        assert!(a.to_string().contains("| s1/102 | 6 | 5 | 1 |"), "{a}");
    }

    #[test]
    fn jitter_is_reproducible() {
        let a: Vec<i32> = {
            let mut r = Rng::new(3);
            (0..5).map(|_| r.offset(20)).collect()
        };
        let mut r = Rng::new(3);
        assert_eq!(a, (0..5).map(|_| r.offset(20)).collect::<Vec<_>>());
        assert!(a.iter().all(|v| v.abs() <= 20));
    }
}
