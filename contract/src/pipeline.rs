//! Station pipeline templates (`pipelines/*.pipeline`): `#` comments, lines joined with
//! spaces, `{name}` placeholders filled in before `gst-launch-1.0 -e` starts the pipeline.
//! A property whose value is empty (`roi="{roi}"` with no ROI) is left out altogether.

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
        rest = &after[close + 1..];
        // gst-launch refuses `prop=""`: an empty value leaves the property at its default.
        if value.is_empty() && (out.ends_with("=\"") && rest.starts_with('"') || out.ends_with('='))
        {
            let quoted = out.ends_with('"');
            out.truncate(out.rfind(char::is_whitespace).map_or(0, |i| i + 1));
            if quoted {
                rest = &rest[1..];
            }
            continue;
        }
        out.push_str(value);
    }
    out.push_str(rest);
    Ok(out)
}

/// Splits a rendered pipeline into `gst-launch-1.0` arguments the way a shell would
/// (`gst-launch-1.0` escapes the spaces inside each argument, so one long argument would
/// be read as a single element name). Double quotes group words and are removed.
pub fn pipeline_args(pipeline: &str) -> Vec<String> {
    let mut args = Vec::new();
    let mut current = String::new();
    let mut in_token = false;
    let mut quoted = false;
    for c in pipeline.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                in_token = true;
            }
            c if c.is_whitespace() && !quoted => {
                if in_token {
                    args.push(std::mem::take(&mut current));
                    in_token = false;
                }
            }
            c => {
                current.push(c);
                in_token = true;
            }
        }
    }
    if in_token {
        args.push(current);
    }
    args
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
    fn empty_values_drop_their_property() {
        let t = "a roi=\"{roi}\" x={x} ! b p=\"{p}\"";
        let out = render_pipeline(t, &values(&[("roi", ""), ("x", ""), ("p", "v w")])).unwrap();
        assert_eq!(out, "a   ! b p=\"v w\"");
    }

    #[test]
    fn splits_like_a_shell() {
        assert_eq!(
            pipeline_args("a  font=\"Sans Bold 9\" ! b x=1 caps=video/x-raw,width=2"),
            [
                "a",
                "font=Sans Bold 9",
                "!",
                "b",
                "x=1",
                "caps=video/x-raw,width=2"
            ]
        );
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
            render_pipeline(
                "a=\"{x}\"",
                &values(&[("x", "\" ! filesink location=/etc/x")])
            ),
            Err(TemplateError::UnsafeValue { .. })
        ));
    }
}
