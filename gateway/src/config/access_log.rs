//! Validation of `[access_log]`: `format` ("json", "text", or a template of
//! `$variables`) and the extra `fields` of the JSON and text lines.

use serde::Deserialize;
use toml::Spanned;

use super::edge::bad_value;
use super::error::ConfigError;
use super::validate::Checker;
use crate::telemetry::access_format::{
    parse_template, AccessFormat, Shape, Var, STANDARD, VAR_NAMES,
};

/// `[access_log]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AccessLogFile {
    pub(crate) format: Option<Spanned<String>>,
    pub(crate) fields: Option<Spanned<Vec<Spanned<String>>>>,
}

pub(super) fn access_log(c: &mut Checker<'_>, raw: &AccessLogFile) -> AccessFormat {
    let shape = match raw.format.as_ref() {
        None => Shape::Default,
        Some(f) => match f.get_ref().as_str() {
            "json" => Shape::Json,
            "text" => Shape::Text,
            "" => {
                bad_value(
                    c,
                    f,
                    "access_log.format",
                    "must be \"json\", \"text\" or a template",
                );
                Shape::Default
            }
            template => match parse_template(template) {
                Ok(pieces) => Shape::Template(pieces),
                Err(e) => {
                    let at = c.at(inside(c, f.span(), template, e.offset, e.name.len()));
                    let (name, known) = (e.name, VAR_NAMES);
                    c.errors
                        .push(ConfigError::UnknownLogVariable { at, name, known });
                    Shape::Default
                }
            },
        },
    };
    let mut fields: Vec<Var> = Vec::new();
    if let Some(list) = &raw.fields {
        if matches!(shape, Shape::Template(_)) {
            let reason = "applies to the json and text formats (a template names its variables)";
            bad_value(c, list, "access_log.fields", reason);
        }
        for name in list.get_ref() {
            match Var::from_name(name.get_ref()) {
                Some(v) if STANDARD.contains(&v) || fields.contains(&v) => {
                    let reason = "names a field every line already has (or one listed twice)";
                    bad_value(c, name, "access_log.fields", reason);
                }
                Some(Var::Time) => {
                    bad_value(
                        c,
                        name,
                        "access_log.fields",
                        "names the line's own timestamp",
                    );
                }
                Some(v) => fields.push(v),
                None => {
                    let at = c.at(name.span());
                    let (name, known) = (name.get_ref().clone(), VAR_NAMES);
                    c.errors
                        .push(ConfigError::UnknownLogVariable { at, name, known });
                }
            }
        }
    }
    AccessFormat {
        shape,
        fields: fields.into(),
    }
}

/// The span of `len` bytes at `offset` of a string value whose whole TOML value (quotes
/// included) is at `span`; the whole value when its source holds escapes.
fn inside(
    c: &Checker<'_>,
    span: std::ops::Range<usize>,
    value: &str,
    offset: usize,
    len: usize,
) -> std::ops::Range<usize> {
    let raw = c.source_of(span.clone());
    let quotes = if raw.starts_with("'''") || raw.starts_with("\"\"\"") {
        3
    } else {
        1
    };
    match raw.get(quotes..quotes + value.len()) {
        Some(body) if body == value => {
            let start = span.start + quotes + offset;
            start..start + len.max(1)
        }
        _ => span,
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::from_str;
    use crate::config::tests::errors;
    use crate::telemetry::access_format::{Piece, Shape, Var};

    const HEAD: &str = "[[listener]]\nname = \"a\"\nlisten = \"127.0.0.1:1\"\n\n[upstream.u]\nservers = [\"127.0.0.1:1\"]\n\n[[route]]\nupstream = \"u\"\n\n";

    #[test]
    fn formats_templates_and_fields_are_read() {
        let src = format!(
            "{HEAD}[access_log]\nformat = \"json\"\nfields = [\"referer\", \"tls_version\"]\n"
        );
        let cfg = from_str(Path::new("/etc/gw/gateway.toml"), &src).unwrap();
        assert_eq!(cfg.access_log.shape, Shape::Json);
        assert_eq!(&*cfg.access_log.fields, &[Var::Referer, Var::TlsVersion]);
        let src = format!("{HEAD}[access_log]\nformat = '$client \"$user_agent\" $upstream_ms'\n");
        let cfg = from_str(Path::new("/etc/gw/gateway.toml"), &src).unwrap();
        let Shape::Template(pieces) = &cfg.access_log.shape else {
            panic!("a template");
        };
        assert_eq!(pieces[0], Piece::Var(Var::Client));
        assert_eq!(pieces.len(), 5);
        let cfg = from_str(Path::new("/etc/gw/gateway.toml"), HEAD).unwrap();
        assert_eq!(cfg.access_log.shape, Shape::Default);
    }

    #[test]
    fn access_log_errors_are_located() {
        let cases = [
            (
                "format = '$client $remote_addr'",
                ":12:19: access_log: unknown variable \"remote_addr\" (known: listener, client",
            ),
            (
                "format = '''$oops'''",
                ":12:13: access_log: unknown variable \"oops\"",
            ),
            (
                "format = \"\\t$oops\"",
                ":12:10: access_log: unknown variable \"oops\"",
            ),
            ("format = \"\"", ":12:10: access_log.format must be"),
            (
                "fields = [\"referer\", \"nope\"]",
                ":12:22: access_log: unknown variable \"nope\"",
            ),
            (
                "fields = [\"status\"]",
                ":12:11: access_log.fields names a field every line already has",
            ),
            (
                "fields = [\"route\", \"route\"]",
                ":12:20: access_log.fields names a field every line already has",
            ),
            (
                "fields = [\"time\"]",
                ":12:11: access_log.fields names the line's own timestamp",
            ),
            (
                "format = '$status'\nfields = [\"route\"]",
                ":13:10: access_log.fields applies to the json and text formats",
            ),
            ("colour = true", "unknown field `colour`"),
        ];
        let mut wrong = Vec::new();
        for (line, want) in cases {
            let errs = errors(&format!("{HEAD}[access_log]\n{line}\n"));
            if !errs.iter().any(|e| e.contains(want)) {
                wrong.push(format!("{line}: want {want}, got {errs:?}"));
            }
        }
        assert!(wrong.is_empty(), "{wrong:#?}");
    }
}
