//! The bus messages a station pipeline posts for the orchestrator, and a reader of the
//! lines `gst-launch-1.0 -m` prints for them.
//!
//! The elements post element messages with the names and fields below. The orchestrator
//! does not link GStreamer: it runs the pipeline with `gst-launch-1.0 -e -m` under
//! `LC_ALL=C` (the line prefix is translated in other locales) and reads the messages
//! back from stdout with [`parse_launch_line`]. A line looks like
//!
//! ```text
//! Got message #93 from element "sink" (element): order-stored, station-id=(string)station_1, order-id=(string)384, frame-count=(uint)8, reason=(string)next-order, key=(string)station_1/384/__EOS__;
//! ```
//!
//! where the text after `: ` is the message's structure as `gst_structure_to_string`
//! writes it: strings with characters outside `[A-Za-z0-9_+/:.-]` are quoted with
//! backslash escapes, and a NULL string is written `NULL`.

use std::collections::BTreeMap;

use crate::CompletionReason;

/// `minioframesink`: an order's marker is stored; every frame it lists is in the bucket.
/// Fields: [`field::STATION_ID`], [`field::ORDER_ID`], [`field::FRAME_COUNT`],
/// [`field::REASON`], [`field::KEY`] (the marker's key).
pub const ORDER_STORED: &str = "order-stored";
/// `minioframesink`, at most every `progress-interval` seconds while buffers arrive and
/// once on reaching PLAYING: the liveness signal of a pipeline. Fields:
/// [`field::STATION_ID`] (absent until a tagged frame arrived), [`field::FRAMES_RECEIVED`],
/// [`field::FRAMES_STORED`], [`field::FRAMES_DROPPED`], [`field::MARKERS_WRITTEN`], all
/// counted since the sink started.
pub const SINK_PROGRESS: &str = "sink-progress";
/// `eosmarker`: an order is complete. Fields: [`field::STATION_ID`], [`field::ORDER_ID`],
/// [`field::REASON`], [`field::FRAME_COUNT`].
pub const ORDER_COMPLETE: &str = "order-complete";
/// `ocrsegment`: a slip's order became current with no order current before. Fields:
/// [`field::STATION_ID`], [`field::ORDER_ID`], [`field::PREVIOUS`], [`field::CONFIDENCE`].
pub const ORDER_STARTED: &str = "order-started";
/// `ocrsegment`: a different order replaced the current one; fields as [`ORDER_STARTED`].
pub const ORDER_CHANGED: &str = "order-changed";
/// `ocrsegment`: the current order is no longer read ([`field::ORDER_ID`] is NULL).
pub const ORDER_RELEASED: &str = "order-released";
/// `ocrsegment`: one OCR run. Fields: [`field::STATION_ID`], [`field::TEXT`],
/// [`field::ORDER_ID`] (NULL when nothing usable was read), [`field::CONFIDENCE`],
/// [`field::REJECTED`], [`field::OCR_MS`].
pub const OCR_READ: &str = "ocr-read";

/// Field names of the messages above.
pub mod field {
    pub const STATION_ID: &str = "station-id";
    pub const ORDER_ID: &str = "order-id";
    pub const PREVIOUS: &str = "previous";
    pub const CONFIDENCE: &str = "confidence";
    pub const FRAME_COUNT: &str = "frame-count";
    pub const REASON: &str = "reason";
    pub const KEY: &str = "key";
    pub const TEXT: &str = "text";
    pub const REJECTED: &str = "rejected";
    pub const OCR_MS: &str = "ocr-ms";
    pub const FRAMES_RECEIVED: &str = "frames-received";
    pub const FRAMES_STORED: &str = "frames-stored";
    pub const FRAMES_DROPPED: &str = "frames-dropped";
    pub const MARKERS_WRITTEN: &str = "markers-written";
}

/// One line of `gst-launch-1.0 -m` output that the orchestrator acts on.
#[derive(Debug, Clone, PartialEq)]
pub enum LaunchMessage {
    /// The pipeline itself (not one of its elements) reached PLAYING.
    Playing,
    /// [`ORDER_STORED`].
    OrderStored {
        station_id: String,
        order_id: String,
        frame_count: u32,
        reason: CompletionReason,
        key: String,
    },
    /// [`SINK_PROGRESS`].
    Progress {
        station_id: Option<String>,
        frames_received: u64,
        frames_stored: u64,
        frames_dropped: u64,
        markers_written: u64,
    },
    /// [`ORDER_COMPLETE`].
    OrderComplete {
        station_id: String,
        order_id: String,
        reason: CompletionReason,
        frame_count: u32,
    },
    /// Any other element message (e.g. [`OCR_READ`]), with its non-NULL fields as text.
    Element {
        source: String,
        name: String,
        fields: BTreeMap<String, String>,
    },
}

const PREFIX: &str = "Got message #";

/// Reads one stdout line of `gst-launch-1.0 -m` run under `LC_ALL=C`. `None` for every
/// other line, and for one of our messages that lacks a field the contract requires.
pub fn parse_launch_line(line: &str) -> Option<LaunchMessage> {
    let rest = &line[line.find(PREFIX)? + PREFIX.len()..];
    let rest = rest.trim_start_matches(|c: char| c.is_ascii_digit());
    let rest = rest.strip_prefix(" from element \"")?;
    // Element names cannot hold a quote in practice; gst-launch prints them raw.
    let (source, rest) = rest.split_once("\" (")?;
    let (kind, structure) = rest.split_once("): ")?;
    match kind {
        "state-changed" => {
            let (_, fields) = parse_structure(structure)?;
            let playing = fields
                .get("new-state")
                .is_some_and(|s| s.to_ascii_lowercase().ends_with("playing"));
            (is_pipeline(source) && playing).then_some(LaunchMessage::Playing)
        }
        "element" => {
            let (name, fields) = parse_structure(structure)?;
            element_message(source, name, fields)
        }
        _ => None,
    }
}

/// gst-launch names its top-level pipeline `pipeline0` (`gst_parse_launch` numbers them).
fn is_pipeline(source: &str) -> bool {
    source
        .strip_prefix("pipeline")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

fn element_message(
    source: &str,
    name: String,
    mut fields: BTreeMap<String, String>,
) -> Option<LaunchMessage> {
    let mut text = |f: &str| fields.remove(f);
    let msg = match name.as_str() {
        ORDER_STORED => LaunchMessage::OrderStored {
            station_id: text(field::STATION_ID)?,
            order_id: text(field::ORDER_ID)?,
            frame_count: text(field::FRAME_COUNT)?.parse().ok()?,
            reason: CompletionReason::parse(&text(field::REASON)?)?,
            key: text(field::KEY)?,
        },
        SINK_PROGRESS => {
            let mut count = |f: &str| text(f)?.parse::<u64>().ok();
            LaunchMessage::Progress {
                frames_received: count(field::FRAMES_RECEIVED)?,
                frames_stored: count(field::FRAMES_STORED)?,
                frames_dropped: count(field::FRAMES_DROPPED)?,
                markers_written: count(field::MARKERS_WRITTEN)?,
                station_id: text(field::STATION_ID),
            }
        }
        ORDER_COMPLETE => LaunchMessage::OrderComplete {
            station_id: text(field::STATION_ID)?,
            order_id: text(field::ORDER_ID)?,
            reason: CompletionReason::parse(&text(field::REASON)?)?,
            frame_count: text(field::FRAME_COUNT)?.parse().ok()?,
        },
        _ => LaunchMessage::Element {
            source: source.to_owned(),
            name,
            fields,
        },
    };
    Some(msg)
}

/// Splits `name, a=(type)v, b=(type)"q\ x";` into the name and the fields' values
/// (types dropped, quotes and escapes undone, NULL strings left out).
fn parse_structure(s: &str) -> Option<(String, BTreeMap<String, String>)> {
    let s = s.trim_end().strip_suffix(';').unwrap_or(s.trim_end());
    let mut parts = split_top_level(s).into_iter();
    let name = parts.next()?.trim().to_owned();
    if name.is_empty() {
        return None;
    }
    let mut fields = BTreeMap::new();
    for part in parts {
        let Some((key, value)) = part.trim().split_once('=') else {
            continue;
        };
        let value = match value.strip_prefix('(') {
            Some(typed) => typed.split_once(')').map_or(value, |(_, v)| v),
            None => value,
        };
        let value = if let Some(quoted) = value.strip_prefix('"') {
            unescape(quoted.strip_suffix('"').unwrap_or(quoted))
        } else if value == "NULL" {
            continue;
        } else {
            value.to_owned()
        };
        fields.insert(key.trim().to_owned(), value);
    }
    Some((name, fields))
}

/// Splits at the commas that separate fields: not inside quotes, nor inside the `{ }`,
/// `< >` and `[ ]` of lists, arrays and ranges.
fn split_top_level(s: &str) -> Vec<&str> {
    let (mut parts, mut start, mut depth) = (Vec::new(), 0, 0i32);
    let (mut quoted, mut escaped) = (false, false);
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' => escaped = true,
            '"' => quoted = !quoted,
            '{' | '<' | '[' if !quoted => depth += 1,
            '}' | '>' | ']' if !quoted => depth -= 1,
            ',' if !quoted && depth <= 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

/// Undoes `gst_value_serialize_string`: `\` before a character keeps it, `\ooo` is an
/// octal byte (how non-ASCII UTF-8 is written).
fn unescape(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 1 < bytes.len() {
            let octal = bytes
                .get(i + 1..i + 4)
                .filter(|o| o.iter().all(|b| (b'0'..=b'7').contains(b)));
            if let Some(o) = octal {
                let v = o.iter().fold(0u32, |acc, b| acc * 8 + u32::from(b - b'0'));
                out.push(v as u8);
                i += 4;
                continue;
            }
            out.push(bytes[i + 1]);
            i += 2;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(source: &str, kind: &str, structure: &str) -> String {
        format!("Got message #57 from element \"{source}\" ({kind}): {structure}")
    }

    #[test]
    fn order_stored() {
        let l = line(
            "sink",
            "element",
            "order-stored, station-id=(string)station_1, order-id=(string)A7-5521, \
             frame-count=(uint)8, reason=(string)next-order, key=(string)station_1/A7-5521/__EOS__;",
        );
        assert_eq!(
            parse_launch_line(&l),
            Some(LaunchMessage::OrderStored {
                station_id: "station_1".into(),
                order_id: "A7-5521".into(),
                frame_count: 8,
                reason: CompletionReason::NextOrder,
                key: "station_1/A7-5521/__EOS__".into(),
            })
        );
        // A required field missing: not an order-stored the orchestrator can act on.
        let l = line(
            "sink",
            "element",
            "order-stored, station-id=(string)s, order-id=(string)1;",
        );
        assert_eq!(parse_launch_line(&l), None);
    }

    #[test]
    fn progress_with_and_without_a_station() {
        let l = line(
            "minioframesink0",
            "element",
            "sink-progress, frames-received=(guint64)0, frames-stored=(guint64)0, \
             frames-dropped=(guint64)0, markers-written=(guint64)0;",
        );
        assert_eq!(
            parse_launch_line(&l),
            Some(LaunchMessage::Progress {
                station_id: None,
                frames_received: 0,
                frames_stored: 0,
                frames_dropped: 0,
                markers_written: 0,
            })
        );
        let l = line(
            "sink",
            "element",
            "sink-progress, station-id=(string)station_1, frames-received=(guint64)12, \
             frames-stored=(guint64)9, frames-dropped=(guint64)2, markers-written=(guint64)1;",
        );
        let Some(LaunchMessage::Progress {
            station_id,
            frames_received,
            frames_stored,
            frames_dropped,
            markers_written,
        }) = parse_launch_line(&l)
        else {
            panic!("{l}");
        };
        assert_eq!(station_id.as_deref(), Some("station_1"));
        assert_eq!(
            (
                frames_received,
                frames_stored,
                frames_dropped,
                markers_written
            ),
            (12, 9, 2, 1)
        );
    }

    #[test]
    fn playing_is_the_pipeline_reaching_playing() {
        let state = |from: &str, to: &str| {
            format!(
                "GstMessageStateChanged, old-state=(GstState){from}, new-state=(GstState){to}, \
                 pending-state=(GstState)void-pending;"
            )
        };
        let playing = state("paused", "playing");
        assert_eq!(
            parse_launch_line(&line("pipeline0", "state-changed", &playing)),
            Some(LaunchMessage::Playing)
        );
        // Older GStreamer writes enum names rather than nicks.
        let old = state("GST_STATE_PAUSED", "GST_STATE_PLAYING");
        assert_eq!(
            parse_launch_line(&line("pipeline0", "state-changed", &old)),
            Some(LaunchMessage::Playing)
        );
        // An element of the pipeline, or the pipeline reaching another state, is not it.
        assert_eq!(
            parse_launch_line(&line("sink", "state-changed", &playing)),
            None
        );
        assert_eq!(
            parse_launch_line(&line(
                "pipeline0",
                "state-changed",
                &state("ready", "paused")
            )),
            None
        );
        assert_eq!(parse_launch_line("Setting pipeline to PLAYING ..."), None);
    }

    #[test]
    fn other_lines_are_not_messages() {
        for l in [
            "",
            "Pipeline is PREROLLED ...",
            "New clock: GstSystemClock",
            "Got message #37 from element \"sink\" (latency): no message details",
            "Got message #21 from pad \"videotestsrc0:src\" (stream-status): GstMessageStreamStatus, \
             type=(GstStreamStatusType)create;",
            // Another locale's prefix.
            "Nachricht #57 von Element »sink« (element) erhalten: order-stored, order-id=(string)1;",
        ] {
            assert_eq!(parse_launch_line(l), None, "{l}");
        }
    }

    #[test]
    fn other_element_messages_keep_their_fields() {
        // progressreport posts a "progress" message: not ours.
        let l = line(
            "progressreport0",
            "element",
            "progress, current=(gint64)0, format=(GstFormat)time;",
        );
        let Some(LaunchMessage::Element {
            source,
            name,
            fields,
        }) = parse_launch_line(&l)
        else {
            panic!("{l}");
        };
        assert_eq!(
            (source.as_str(), name.as_str()),
            ("progressreport0", "progress")
        );
        assert_eq!(fields["format"], "time");
        // Quoted text with escapes, octal UTF-8, a NULL string and a nested list.
        let l = line(
            "ocr",
            "element",
            "ocr-read, station-id=(string)s1, text=(string)\"ORDER\\ #384\\,\\ \\\"x\\\"\\nCaf\\303\\251\", \
             order-id=(string)NULL, list=(int){ 1, 2 }, confidence=(float)0.96;",
        );
        let Some(LaunchMessage::Element { name, fields, .. }) = parse_launch_line(&l) else {
            panic!("{l}");
        };
        assert_eq!(name, OCR_READ);
        assert_eq!(fields[field::TEXT], "ORDER #384, \"x\"nCafé");
        assert!(!fields.contains_key(field::ORDER_ID));
        assert_eq!(fields["list"], "{ 1, 2 }");
        assert_eq!(fields[field::CONFIDENCE], "0.96");
    }

    #[test]
    fn order_complete() {
        let l = line(
            "eosmarker0",
            "element",
            "order-complete, station-id=(string)station_1, order-id=(string)384, \
             reason=(string)idle-timeout, frame-count=(uint)3;",
        );
        assert_eq!(
            parse_launch_line(&l),
            Some(LaunchMessage::OrderComplete {
                station_id: "station_1".into(),
                order_id: "384".into(),
                reason: CompletionReason::IdleTimeout,
                frame_count: 3,
            })
        );
    }
}
