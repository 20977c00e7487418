//! Validation of `[compression]`.

use toml::Spanned;

use super::file::{AlgorithmFile, CompressionFile};
use super::{bad_value, push, RouteError};
use crate::config::edge::parse_size;
use crate::config::error::ConfigError;
use crate::config::validate::Checker;
use crate::routes::filters::compression::{
    Algorithm, Compression, Levels, MediaRange, BR_LEVELS, GZIP_LEVELS, ZSTD_LEVELS,
};

/// The section, with the defaults for what it leaves out.
pub(in crate::config) fn compression(c: &mut Checker<'_>, raw: &CompressionFile) -> Compression {
    let mut out = Compression::default();
    if let Some(enabled) = raw.enabled {
        out.enabled = enabled;
    }
    if let Some(list) = &raw.algorithms {
        if list.get_ref().is_empty() {
            let hint = "set enabled = false to compress nothing";
            push(
                c,
                list.span(),
                RouteError::Empty {
                    field: "compression.algorithms",
                    hint,
                },
            );
        } else {
            let mut algorithms = Vec::new();
            for a in list.get_ref() {
                let alg = match a.get_ref() {
                    AlgorithmFile::Zstd => Algorithm::Zstd,
                    AlgorithmFile::Br => Algorithm::Brotli,
                    AlgorithmFile::Gzip => Algorithm::Gzip,
                };
                if algorithms.contains(&alg) {
                    let value = alg.as_str().to_owned();
                    push(
                        c,
                        a.span(),
                        RouteError::Twice {
                            field: "compression.algorithms entry",
                            value,
                        },
                    );
                } else {
                    algorithms.push(alg);
                }
            }
            out.algorithms = algorithms;
        }
    }
    if let Some(v) = &raw.min_size {
        match parse_size(v.get_ref()) {
            Ok(n) => out.min_size = n,
            Err(reason) => {
                let at = c.at(v.span());
                let value = v.get_ref().clone();
                c.errors.push(ConfigError::BadSize { at, value, reason });
            }
        }
    }
    if let Some(list) = &raw.types {
        if list.get_ref().is_empty() {
            let hint = "set enabled = false to compress nothing";
            push(
                c,
                list.span(),
                RouteError::Empty {
                    field: "compression.types",
                    hint,
                },
            );
        } else {
            out.types = list
                .get_ref()
                .iter()
                .filter_map(|t| match MediaRange::parse(t.get_ref()) {
                    Ok(range) => Some(range),
                    Err(reason) => {
                        let value = t.get_ref().clone();
                        bad_value(c, t.span(), "compression.types entry", value, reason);
                        None
                    }
                })
                .collect();
        }
    }
    if let Some(l) = &raw.levels {
        let d = out.levels;
        let level = |c: &mut Checker<'_>,
                     v: &Option<Spanned<i64>>,
                     field,
                     range: (i64, i64),
                     text,
                     default: i64| match v {
            Some(v) if (range.0..=range.1).contains(v.get_ref()) => *v.get_ref(),
            Some(v) => {
                push(c, v.span(), RouteError::OutOfRange { field, range: text });
                default
            }
            None => default,
        };
        let gzip = (
            i64::from(*GZIP_LEVELS.start()),
            i64::from(*GZIP_LEVELS.end()),
        );
        let br = (i64::from(*BR_LEVELS.start()), i64::from(*BR_LEVELS.end()));
        let zstd = (
            i64::from(*ZSTD_LEVELS.start()),
            i64::from(*ZSTD_LEVELS.end()),
        );
        out.levels = Levels {
            gzip: level(
                c,
                &l.gzip,
                "compression.levels.gzip",
                gzip,
                "from 1 to 9",
                i64::from(d.gzip),
            ) as u32,
            br: level(
                c,
                &l.br,
                "compression.levels.br",
                br,
                "from 0 to 11",
                i64::from(d.br),
            ) as u32,
            zstd: level(
                c,
                &l.zstd,
                "compression.levels.zstd",
                zstd,
                "from 1 to 19",
                i64::from(d.zstd),
            ) as i32,
        };
    }
    out
}
