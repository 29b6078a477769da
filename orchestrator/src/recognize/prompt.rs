//! What the `openai` backend tells the VLM before the order's photos: the instructions
//! (built in, or a store's own from `prompt_file`), always followed by the inventory with
//! its aliases and the answer's form, and optional worked examples (`examples_file`) sent
//! as earlier turns of the conversation: photos of a packed order, then the right answer.
//!
//! The examples file is JSON, its image paths relative to the file's folder:
//!
//! ```json
//! [{"images": ["examples/order-1.jpg"], "items": [{"name": "banana", "quantity": 2}]}]
//! ```
//!
//! Every name must be the inventory's (an example that teaches a name the schema refuses
//! would teach the wrong thing); an example needs 1 to [`MAX_EXAMPLE_IMAGES`] images.

use crate::config::OpenAiConfig;
use crate::orders::Inventory;
use serde::Deserialize;
use serde_json::json;
use std::path::Path;

/// Instructions used when no `prompt_file` is set.
pub const DEFAULT_INSTRUCTIONS: &str = "You check packed food orders at a quick-service \
     restaurant. You get photos of one order taken at the packing station. Count the items \
     packed for the order; an item seen on several photos is still one item. Ignore the \
     printed order slip.";
/// Worked examples at most (each costs its images' tokens on every request).
pub const MAX_EXAMPLES: usize = 8;
/// Images per example at most.
pub const MAX_EXAMPLE_IMAGES: usize = 8;
/// A prompt file larger than this is refused (it goes with every request).
const MAX_PROMPT_BYTES: usize = 64 << 10;

/// One worked example: its photos (JPEG as stored) and the answer, as the model should
/// give it.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    pub images: Vec<Vec<u8>>,
    pub answer: String,
}

/// The system prompt and the examples that precede every order.
#[derive(Debug, Clone, PartialEq)]
pub struct Prompt {
    pub system: String,
    pub examples: Vec<Example>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExampleFile {
    images: Vec<String>,
    items: Vec<ExampleItem>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExampleItem {
    name: String,
    quantity: u32,
}

impl Prompt {
    /// The prompt of `config`, its files read and checked against `inventory`; errors name
    /// the setting and the file.
    pub fn load(config: &OpenAiConfig, inventory: &Inventory) -> Result<Prompt, String> {
        let instructions = match &config.prompt_file {
            Some(p) => read_instructions(p)
                .map_err(|e| format!("recognition.openai.prompt_file: {}: {e}", p.display()))?,
            None => DEFAULT_INSTRUCTIONS.to_owned(),
        };
        let examples = match &config.examples_file {
            Some(p) => load_examples(p, inventory)
                .map_err(|e| format!("recognition.openai.examples_file: {}: {e}", p.display()))?,
            None => Vec::new(),
        };
        Ok(Prompt {
            system: system_prompt(&instructions, inventory),
            examples,
        })
    }
}

fn read_instructions(path: &Path) -> Result<String, String> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    if bytes.len() > MAX_PROMPT_BYTES {
        return Err(format!(
            "{} bytes; at most {MAX_PROMPT_BYTES} (it is sent with every order)",
            bytes.len()
        ));
    }
    let text = String::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_owned())?;
    let text = text.trim();
    if text.is_empty() {
        return Err("empty".into());
    }
    Ok(text.to_owned())
}

/// The instructions, then what the model may not be left to guess: the names to use and
/// the form of the answer.
pub fn system_prompt(instructions: &str, inventory: &Inventory) -> String {
    let mut list = String::new();
    for it in &inventory.items {
        list.push_str("- ");
        list.push_str(&it.name);
        if !it.aliases.is_empty() {
            list.push_str(" (also called: ");
            list.push_str(&it.aliases.join(", "));
            list.push(')');
        }
        list.push('\n');
    }
    format!(
        "{instructions}\n\
         Use these inventory names:\n{list}\
         If you see an item that is not in the list, give it a short plain name.\n\
         Answer with JSON only, no prose and no code fences, exactly in this form:\n\
         {{\"items\":[{{\"name\":\"<inventory name>\",\"quantity\":<integer>}}]}}\n\
         If the photos show no items, answer {{\"items\":[]}}."
    )
}

fn load_examples(path: &Path, inventory: &Inventory) -> Result<Vec<Example>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let entries: Vec<ExampleFile> =
        serde_json::from_str(&text).map_err(|e| format!("not a JSON list of examples: {e}"))?;
    if entries.len() > MAX_EXAMPLES {
        return Err(format!(
            "{} examples; at most {MAX_EXAMPLES} (each one's images go with every order)",
            entries.len()
        ));
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut out = Vec::with_capacity(entries.len());
    for (i, e) in entries.into_iter().enumerate() {
        let at = |m: String| format!("example {}: {m}", i + 1);
        if e.images.is_empty() || e.images.len() > MAX_EXAMPLE_IMAGES {
            return Err(at(format!(
                "{} images; give 1 to {MAX_EXAMPLE_IMAGES}",
                e.images.len()
            )));
        }
        let mut images = Vec::with_capacity(e.images.len());
        for img in &e.images {
            let p = dir.join(img);
            let jpeg = std::fs::read(&p).map_err(|err| at(format!("{}: {err}", p.display())))?;
            if !jpeg.starts_with(&[0xff, 0xd8]) {
                return Err(at(format!("{} is not a JPEG", p.display())));
            }
            images.push(jpeg);
        }
        let mut items = Vec::with_capacity(e.items.len());
        for it in e.items {
            let Some(name) = inventory.canonical(&it.name, 0) else {
                return Err(at(format!(
                    "{:?} is not an inventory name or alias",
                    it.name
                )));
            };
            if it.quantity == 0 {
                return Err(at(format!("{name}: quantity 0 (leave the item out)")));
            }
            items.push(json!({"name": name, "quantity": it.quantity}));
        }
        out.push(Example {
            images,
            answer: json!({ "items": items }).to_string(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inventory() -> Inventory {
        Inventory::from_json(
            r#"{"items":[{"id":"1","name":"green apple","aliases":["apple"]},{"id":"2","name":"banana"}]}"#,
        )
        .unwrap()
    }

    #[test]
    fn the_inventory_and_the_answer_form_follow_any_instructions() {
        let p = system_prompt("Count the fruit.", &inventory());
        assert!(p.starts_with("Count the fruit.\n"), "{p}");
        assert!(
            p.contains("- green apple (also called: apple)\n- banana\n"),
            "{p}"
        );
        assert!(p.contains(r#"{"items":[{"name":"<inventory name>""#), "{p}");
    }

    #[test]
    fn examples_are_checked_against_the_inventory() {
        let dir = std::env::temp_dir().join(format!("oa-prompt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("a.jpg"), [0xff, 0xd8, 0xff, 0xd9]).unwrap();
        std::fs::write(dir.join("not.jpg"), b"text").unwrap();
        let inv = inventory();
        let case = |json: &str| {
            let f = dir.join("examples.json");
            std::fs::write(&f, json).unwrap();
            load_examples(&f, &inv)
        };
        let ok = case(r#"[{"images":["a.jpg"],"items":[{"name":"apple","quantity":2}]}]"#).unwrap();
        assert_eq!(ok.len(), 1);
        assert_eq!(ok[0].images, vec![vec![0xff, 0xd8, 0xff, 0xd9]]);
        assert_eq!(
            ok[0].answer,
            r#"{"items":[{"name":"green apple","quantity":2}]}"#
        );
        for (json, want) in [
            (
                r#"[{"images":["a.jpg"],"items":[{"name":"pear","quantity":1}]}]"#,
                "example 1: \"pear\" is not an inventory name",
            ),
            (r#"[{"images":[],"items":[]}]"#, "example 1: 0 images"),
            (r#"[{"images":["gone.jpg"],"items":[]}]"#, "gone.jpg"),
            (r#"[{"images":["not.jpg"],"items":[]}]"#, "is not a JPEG"),
            (
                r#"[{"images":["a.jpg"],"items":[{"name":"banana","quantity":0}]}]"#,
                "quantity 0",
            ),
            (r#"{"images":["a.jpg"]}"#, "not a JSON list of examples"),
            (
                r#"[{"images":["a.jpg"],"items":[],"note":"x"}]"#,
                "unknown field `note`",
            ),
        ] {
            let e = case(json).unwrap_err();
            assert!(e.contains(want), "{json}: {e}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
