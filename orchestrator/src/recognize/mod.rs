//! Recognition backends: what items do the selected frames show?
//!
//! - [`labels`]: OCR of the item labels with the shipped PP-OCR models (embedded default);
//! - [`openai`]: an OpenAI-compatible chat-completions endpoint serving a VLM.
//!
//! A backend returns items named by inventory name where it could map them; names it could
//! not map are passed on as they were read (normalised), so validation reports them as
//! extras. A failure is an `Err` (the order's status becomes `recognition-failed`), never a
//! panic.

pub mod downscale;
pub mod labels;
pub mod openai;
pub mod prompt;

use crate::config::{Backend, RecognitionConfig};
use crate::orders::Inventory;
use crate::result::{Item, TokenUsage};
use std::fmt;
use std::sync::Arc;

/// One selected frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Its object key (for messages).
    pub key: String,
    pub jpeg: Vec<u8>,
}

/// Why recognition failed; the text goes into the result's `error` field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecognizeError {
    pub message: String,
    /// A failure that may pass (the server refused the connection, timed out, answered
    /// 429 or 5xx, the breaker is open): the order is tried again later instead of
    /// getting a final `recognition-failed`.
    pub transient: bool,
}

impl RecognizeError {
    /// A failure that trying again will not fix (a bad reply, a broken frame).
    pub fn new(msg: impl Into<String>) -> Self {
        RecognizeError {
            message: msg.into(),
            transient: false,
        }
    }

    /// A failure that may pass by itself.
    pub fn transient(msg: impl Into<String>) -> Self {
        RecognizeError {
            message: msg.into(),
            transient: true,
        }
    }
}

impl fmt::Display for RecognizeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for RecognizeError {}

/// What a recognition found, and what it cost where the backend can tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recognition {
    pub items: Vec<Item>,
    pub usage: Option<TokenUsage>,
}

#[async_trait::async_trait]
pub trait Recognizer: Send + Sync {
    /// Backend name, recorded in every result (`labels`, `openai:<model>`).
    fn name(&self) -> &str;
    async fn recognize(&self, frames: &[Frame]) -> Result<Vec<Item>, RecognizeError>;
    /// [`Recognizer::recognize`] with the tokens it used (none by default).
    async fn recognize_with_usage(&self, frames: &[Frame]) -> Result<Recognition, RecognizeError> {
        Ok(Recognition {
            items: self.recognize(frames).await?,
            usage: None,
        })
    }
}

/// Builds the configured backend. The labels backend loads its OCR models here, so a
/// missing model fails at start-up rather than on the first order.
pub fn build(
    config: &RecognitionConfig,
    inventory: Arc<Inventory>,
) -> Result<Arc<dyn Recognizer>, String> {
    match config.backend {
        Backend::Labels => Ok(Arc::new(labels::LabelsRecognizer::new(
            &config.labels,
            inventory,
        )?)),
        Backend::OpenAi => Ok(Arc::new(openai::OpenAiRecognizer::new(
            &config.openai,
            inventory,
        )?)),
    }
}

/// Adds `quantity` of `name` to `items`, keeping first-seen order.
pub(crate) fn add_item(items: &mut Vec<Item>, name: &str, quantity: u32) {
    match items.iter_mut().find(|i| i.name == name) {
        Some(i) => i.quantity = i.quantity.saturating_add(quantity),
        None => items.push(Item {
            name: name.to_owned(),
            quantity,
        }),
    }
}
