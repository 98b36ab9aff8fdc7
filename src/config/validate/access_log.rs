//! Validation of `[access_log]` into an [`AccessLogSpec`]. Whether a file path can be
//! opened is not known here (the directory may be made before the gateway starts): the
//! gateway reports that at start, and a reload that names such a file is refused.

use super::Problems;
use super::parse_size;
use crate::access_log::{AccessLogSpec, LogFormat, LogPath};
use crate::config::AccessLogConfig;
use std::path::PathBuf;
use std::time::Duration;

/// The smallest and largest `buffer`: below a few lines a batch saves nothing, and the
/// buffer is held in memory.
const MIN_BUFFER: u64 = 1024;
const MAX_BUFFER: u64 = 64 << 20;

pub(super) fn access_log(c: &AccessLogConfig, p: &mut Problems) -> AccessLogSpec {
    let path = match c.path.as_str() {
        "stdout" => LogPath::Stdout,
        "stderr" => LogPath::Stderr,
        "" => {
            p.add(
                "access_log.path",
                "is empty; write \"stdout\", \"stderr\" or the path of a file, such as \"/var/log/fanout/access.log\"",
            );
            LogPath::Stderr
        }
        file if file.ends_with('/') => {
            p.add(
                "access_log.path",
                format!(
                    "\"{file}\" names a directory; name a file in it, such as \"{file}access.log\""
                ),
            );
            LogPath::Stderr
        }
        file => LogPath::File(PathBuf::from(file)),
    };
    let format = match c.format.as_str() {
        "json" => LogFormat::Json,
        "text" => LogFormat::Text,
        "combined" => LogFormat::Combined,
        other => {
            p.add(
                "access_log.format",
                format!(
                    "unknown format \"{other}\"; use \"json\", \"text\" or \"combined\" (nginx's)"
                ),
            );
            LogFormat::Json
        }
    };
    let buffer = match parse_size(&c.buffer) {
        Ok(n) if !(MIN_BUFFER..=MAX_BUFFER).contains(&n) => {
            p.add(
                "access_log.buffer",
                format!("\"{}\" is out of range; use a size from \"1KiB\" to \"64MiB\", such as \"64KiB\"", c.buffer),
            );
            MIN_BUFFER
        }
        Ok(n) => n,
        Err(e) => {
            p.add("access_log.buffer", e);
            MIN_BUFFER
        }
    };
    let flush = p.duration("access_log.flush", &c.flush);
    if flush > Duration::from_secs(3600) {
        p.add(
            "access_log.flush",
            format!("\"{}\" is longer than an hour; lines would wait that long in memory. Use a few seconds at most, such as \"1s\"", c.flush),
        );
    }
    AccessLogSpec {
        enabled: c.enabled,
        path,
        format,
        buffer: buffer as usize,
        flush,
    }
}
