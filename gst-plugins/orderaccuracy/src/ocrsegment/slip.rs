//! The order ID in the text of a slip: `order-pattern`'s first capture, if it is a valid
//! order ID of the storage contract read with enough confidence.

use super::debounce::Read;
use oa_contract::{IdKind, validate_id};
use oa_ocr::TextLine;
use regex::Regex;

/// `order-pattern`'s default, in the contract: `orchestrator calibrate` looks for it too.
pub use oa_contract::DEFAULT_ORDER_PATTERN;

/// Compiles `order-pattern`, which must have exactly one capture group (the ID).
pub fn compile_pattern(p: &str) -> Result<Regex, String> {
    let re = Regex::new(p).map_err(|e| format!("order-pattern {p:?} is not a valid regex: {e}"))?;
    let groups = re.captures_len() - 1;
    if groups != 1 {
        return Err(format!(
            "order-pattern {p:?} has {groups} capture groups, it needs exactly one (the order ID)"
        ));
    }
    Ok(re)
}

/// What one OCR run yielded.
#[derive(Debug, Default)]
pub struct Outcome {
    pub read: Option<Read>,
    /// `(id, why)` of each match that was not usable.
    pub rejected: Vec<(String, String)>,
}

/// The first usable order ID in `lines`, in reading order; matches that fail the
/// confidence or ID checks are returned as rejected. When no single line holds an ID the
/// lines are joined, because the detector may split `ORDER` and `384` into two boxes.
pub fn find_read(lines: &[TextLine], pattern: &Regex, min_confidence: f32) -> Outcome {
    let mut rejected = Vec::new();
    let scan = |text: &str, confidence: f32, rejected: &mut Vec<(String, String)>| {
        for caps in pattern.captures_iter(text) {
            let Some(id) = caps.get(1).map(|m| m.as_str()) else {
                continue;
            };
            if let Err(e) = validate_id(IdKind::Order, id) {
                rejected.push((id.to_owned(), e.to_string()));
            } else if confidence < min_confidence {
                rejected.push((
                    id.to_owned(),
                    format!(
                        "confidence {confidence:.2} is below min-confidence {min_confidence:.2}"
                    ),
                ));
            } else {
                return Some(Read {
                    id: id.to_owned(),
                    confidence,
                });
            }
        }
        None
    };
    for line in lines {
        if let Some(read) = scan(&line.text, line.confidence, &mut rejected) {
            return Outcome {
                read: Some(read),
                rejected,
            };
        }
    }
    if lines.len() > 1 && rejected.is_empty() {
        let joined = lines
            .iter()
            .map(|l| l.text.as_str())
            .collect::<Vec<_>>()
            .join(" ");
        let confidence = lines.iter().map(|l| l.confidence).fold(f32::MAX, f32::min);
        let read = scan(&joined, confidence, &mut rejected);
        return Outcome { read, rejected };
    }
    Outcome {
        read: None,
        rejected,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oa_ocr::{Quad, Rect};

    fn line(text: &str, confidence: f32) -> TextLine {
        TextLine {
            text: text.into(),
            confidence,
            bbox: Rect::default(),
            quad: Quad::axis_aligned(0.0, 0.0, 1.0, 1.0),
        }
    }

    fn read_of(texts: &[&str]) -> Option<String> {
        let re = compile_pattern(DEFAULT_ORDER_PATTERN).unwrap();
        let lines: Vec<TextLine> = texts.iter().map(|t| line(t, 0.9)).collect();
        find_read(&lines, &re, 0.5).read.map(|r| r.id)
    }

    #[test]
    fn default_pattern_reads_slip_variants() {
        for (texts, want) in [
            (&["#384"][..], Some("384")),
            (&["ORDER 384"], Some("384")),
            (&["ORDER #384"], Some("384")),
            (&["ORDER#384"], Some("384")),
            (&["ORDER384"], Some("384")),
            (&["order no. 77"], Some("77")),
            (&["Order #A7-5521"], Some("A7-5521")),
            (&["ORDER", "384"], Some("384")),
            (&["ORDER SUMMARY", "Total 12.50"], None),
            (&["hello world"], None),
        ] {
            assert_eq!(read_of(texts).as_deref(), want, "{texts:?}");
        }
    }

    #[test]
    fn invalid_and_weak_ids_are_rejected() {
        let re = compile_pattern(r"ORDER\s*(\S+)").unwrap();
        let o = find_read(&[line("ORDER ../x", 0.99)], &re, 0.5);
        assert_eq!(o.read, None);
        assert_eq!(o.rejected.len(), 1);
        let o = find_read(&[line("ORDER 42", 0.3), line("ORDER 43", 0.8)], &re, 0.5);
        assert_eq!(o.read.unwrap().id, "43");
        assert_eq!(o.rejected.len(), 1);
    }

    #[test]
    fn pattern_needs_one_group() {
        assert!(
            compile_pattern("(a")
                .unwrap_err()
                .contains("not a valid regex")
        );
        assert!(
            compile_pattern("a")
                .unwrap_err()
                .contains("0 capture groups")
        );
        assert!(
            compile_pattern("(a)(b)")
                .unwrap_err()
                .contains("2 capture groups")
        );
    }
}
