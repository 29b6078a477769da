//! Station pipeline templates (`pipelines/*.pipeline`): `#` comments, lines joined with
//! spaces, `{name}` placeholders filled in before `gst-launch-1.0 -e` starts the pipeline.

use std::collections::BTreeMap;
use std::fmt;

/// Why a template could not be filled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateError {
    /// The template uses a placeholder no value was given for.
    Missing(String),
    /// A `{` without its `}`.
    Unclosed(usize),
    /// A value would break out of its quotes or the pipeline syntax.
    UnsafeValue { name: String, value: String },
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TemplateError::Missing(name) => {
                write!(f, "pipeline template needs a value for {{{name}}}")
            }
            TemplateError::Unclosed(at) => {
                write!(f, "pipeline template has an unclosed '{{' at byte {at}")
            }
            TemplateError::UnsafeValue { name, value } => write!(
                f,
                "value {value:?} for {{{name}}} contains a quote, backslash, '!' or newline \
                 and cannot be placed in a pipeline"
            ),
        }
    }
}

impl std::error::Error for TemplateError {}

/// Fills `template` with `values`; comments are dropped and lines joined.
pub fn render_pipeline(
    template: &str,
    values: &BTreeMap<&str, String>,
) -> Result<String, TemplateError> {
    let joined = template
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect::<Vec<_>>()
        .join(" ");
    let mut out = String::with_capacity(joined.len());
    let mut rest = joined.as_str();
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let close = after
            .find('}')
            .ok_or(TemplateError::Unclosed(joined.len() - rest.len() + open))?;
        let name = &after[..close];
        let value = values
            .get(name)
            .ok_or_else(|| TemplateError::Missing(name.to_owned()))?;
        if value.contains(['"', '\\', '\n', '!']) {
            return Err(TemplateError::UnsafeValue {
                name: name.to_owned(),
                value: value.clone(),
            });
        }
        out.push_str(value);
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(pairs: &[(&'static str, &str)]) -> BTreeMap<&'static str, String> {
        pairs.iter().map(|(k, v)| (*k, v.to_string())).collect()
    }

    #[test]
    fn fills_joins_and_drops_comments() {
        let t = "# a comment\nsrc location=\"{source}\"\n  ! sink id={station_id}\n";
        let out = render_pipeline(
            t,
            &values(&[("source", "rtsp://h/x"), ("station_id", "s1")]),
        )
        .unwrap();
        assert_eq!(out, "src location=\"rtsp://h/x\" ! sink id=s1");
    }

    #[test]
    fn refuses_missing_unclosed_and_unsafe() {
        assert_eq!(
            render_pipeline("a {x}", &values(&[])),
            Err(TemplateError::Missing("x".into()))
        );
        assert_eq!(
            render_pipeline("a {x", &values(&[("x", "1")])),
            Err(TemplateError::Unclosed(2))
        );
        assert!(matches!(
            render_pipeline("a=\"{x}\"", &values(&[("x", "\" ! filesink location=/etc/x")])),
            Err(TemplateError::UnsafeValue { .. })
        ));
    }
}
