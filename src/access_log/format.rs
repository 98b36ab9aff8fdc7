//! The three line formats, written by the writer thread into its buffer with no
//! allocation per line:
//!
//! The user is the subject of the identity the route's `auth` proved (`"user"` in
//! `json` and `text`, left out without one; `$remote_user` in `combined`, `-` without).
//! `client_cert`, after it in `json` and `text`, is the subject of the connection's
//! verified client certificate (mutual TLS), left out without one.
//!
//! - `json`: one object per line. Strings are JSON-escaped (`"`, `\`, control bytes as
//!   `\uXXXX`), and bytes that are not UTF-8 become U+FFFD, so a hostile path or request
//!   id never breaks a line or the JSON.
//! - `text`: `key=value` pairs (logfmt); values a client chose are quoted and escaped as
//!   in `json`.
//! - `combined`: nginx's `combined` format exactly, escaped as nginx escapes it (`"`,
//!   `\`, control and non-ASCII bytes as `\xHH`), so goaccess and awk scripts read it:
//!   `$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer"
//!   "$http_user_agent"`.
//!
//! `upstream` is the upstream a weighted canary picked (`"upstream"` after `"route"` in
//! `json`, `upstream=` in `text`; a backend's in its entry, `"upstream"` in `json`, a
//! fourth part `name:code:ms:upstream` of its `text` word), left out without a canary;
//! `combined` is nginx's exactly, so it has none.
//!
//! Times are UTC: RFC 3339 with milliseconds in `json` and `text`
//! (`2026-12-01T21:30:00.123Z`), `[01/Dec/2026:21:30:00 +0000]` in `combined`.

use super::{BackendOutcome, LogFormat, Record};
use std::borrow::Cow;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Appends `record`'s line, newline included, to `out`.
pub(super) fn write_line(format: LogFormat, record: &Record, out: &mut Vec<u8>) {
    match format {
        LogFormat::Json => json(record, out),
        LogFormat::Text => text(record, out),
        LogFormat::Combined => combined(record, out),
    }
    out.push(b'\n');
}

fn json(r: &Record, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"time\":\"");
    rfc3339(r.time, out);
    out.extend_from_slice(b"\",\"request_id\":");
    json_string(r.request_id.as_bytes(), out);
    if let Some(trace_id) = r.trace_id {
        out.extend_from_slice(b",\"trace_id\":\"");
        out.extend_from_slice(&trace_id.to_hex());
        out.push(b'"');
    }
    out.extend_from_slice(b",\"client\":\"");
    client(r, out);
    out.push(b'"');
    if let Some(user) = &r.user {
        out.extend_from_slice(b",\"user\":");
        json_string(user.as_bytes(), out);
    }
    if let Some(subject) = &r.client_cert {
        out.extend_from_slice(b",\"client_cert\":");
        json_string(subject.as_bytes(), out);
    }
    out.extend_from_slice(b",\"method\":");
    json_string(r.method.as_str().as_bytes(), out);
    out.extend_from_slice(b",\"path\":");
    json_string(target(r).as_bytes(), out);
    out.extend_from_slice(b",\"route\":");
    json_string(r.route.as_str().as_bytes(), out);
    if let Some(upstream) = &r.upstream {
        out.extend_from_slice(b",\"upstream\":");
        json_string(upstream.as_str().as_bytes(), out);
    }
    out.extend_from_slice(b",\"status\":");
    number(u64::from(r.status), out);
    out.extend_from_slice(b",\"bytes\":");
    match r.bytes {
        Some(n) => number(n, out),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"duration_ms\":");
    millis(r.duration, out);
    if let Some(backends) = &r.backends {
        out.extend_from_slice(b",\"backends\":[");
        for (i, b) in backends.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"{\"name\":");
            json_string(b.name.as_str().as_bytes(), out);
            out.extend_from_slice(b",\"code\":\"");
            out.extend_from_slice(b.code.as_bytes());
            out.extend_from_slice(b"\",\"duration_ms\":");
            millis(b.elapsed, out);
            if let Some(upstream) = &b.upstream {
                out.extend_from_slice(b",\"upstream\":");
                json_string(upstream.as_str().as_bytes(), out);
            }
            out.push(b'}');
        }
        out.push(b']');
    }
    out.push(b'}');
}

fn text(r: &Record, out: &mut Vec<u8>) {
    out.extend_from_slice(b"time=");
    rfc3339(r.time, out);
    out.extend_from_slice(b" request_id=");
    json_string(r.request_id.as_bytes(), out);
    out.extend_from_slice(b" trace_id=");
    match r.trace_id {
        Some(id) => out.extend_from_slice(&id.to_hex()),
        None => out.push(b'-'),
    }
    out.extend_from_slice(b" client=");
    client(r, out);
    if let Some(user) = &r.user {
        out.extend_from_slice(b" user=");
        json_string(user.as_bytes(), out);
    }
    if let Some(subject) = &r.client_cert {
        out.extend_from_slice(b" client_cert=");
        json_string(subject.as_bytes(), out);
    }
    out.extend_from_slice(b" method=");
    json_string(r.method.as_str().as_bytes(), out);
    out.extend_from_slice(b" path=");
    json_string(target(r).as_bytes(), out);
    out.extend_from_slice(b" route=");
    json_string(r.route.as_str().as_bytes(), out);
    if let Some(upstream) = &r.upstream {
        out.extend_from_slice(b" upstream=");
        json_string(upstream.as_str().as_bytes(), out);
    }
    out.extend_from_slice(b" status=");
    number(u64::from(r.status), out);
    out.extend_from_slice(b" bytes=");
    match r.bytes {
        Some(n) => number(n, out),
        None => out.push(b'-'),
    }
    out.extend_from_slice(b" duration_ms=");
    millis(r.duration, out);
    if let Some(backends) = &r.backends {
        // One quoted word per backend: `name:code:duration_ms`.
        out.extend_from_slice(b" backends=\"");
        for (i, b) in backends.iter().enumerate() {
            if i > 0 {
                out.push(b' ');
            }
            backend_word(b, out);
        }
        out.push(b'"');
    }
}

/// `name:code:ms`, the name escaped as inside a JSON string (without its quotes).
fn backend_word(b: &BackendOutcome, out: &mut Vec<u8>) {
    json_escaped(b.name.as_str().as_bytes(), out);
    out.push(b':');
    out.extend_from_slice(b.code.as_bytes());
    out.push(b':');
    millis(b.elapsed, out);
    if let Some(upstream) = &b.upstream {
        out.push(b':');
        json_escaped(upstream.as_str().as_bytes(), out);
    }
}

fn combined(r: &Record, out: &mut Vec<u8>) {
    client(r, out);
    out.extend_from_slice(b" - ");
    match &r.user {
        Some(user) if !user.is_empty() => nginx_escaped(user.as_bytes(), out),
        _ => out.push(b'-'),
    }
    out.extend_from_slice(b" [");
    clf_time(r.time, out);
    out.extend_from_slice(b"] \"");
    nginx_escaped(r.method.as_str().as_bytes(), out);
    out.push(b' ');
    nginx_escaped(target(r).as_bytes(), out);
    out.push(b' ');
    out.extend_from_slice(version(r.version).as_bytes());
    out.extend_from_slice(b"\" ");
    number(u64::from(r.status), out);
    out.push(b' ');
    match r.bytes {
        Some(n) => number(n, out),
        None => out.push(b'-'),
    }
    for header in [&r.referer, &r.user_agent] {
        out.extend_from_slice(b" \"");
        match header {
            Some(value) if !value.is_empty() => nginx_escaped(value.as_bytes(), out),
            _ => out.push(b'-'),
        }
        out.push(b'"');
    }
}

/// The request target: path and query as the client sent them, but for the values of
/// the query parameters that carry a credential (`Record::redact_query`).
fn target(r: &Record) -> Cow<'_, str> {
    let whole = r.uri.path_and_query().map_or("/", |pq| pq.as_str());
    match (&r.redact_query, r.uri.query()) {
        (Some(names), Some(query)) => redacted(whole, query, names),
        _ => Cow::Borrowed(whole),
    }
}

/// `whole` with the value of every `query` parameter named in `names` (compared after
/// percent-decoding, as the provider reads them) replaced by `REDACTED`.
fn redacted<'a>(whole: &'a str, query: &str, names: &[String]) -> Cow<'a, str> {
    let secret = |pair: &str| {
        let name = pair.split_once('=').map_or(pair, |(name, _)| name);
        let name = percent_encoding::percent_decode_str(name).decode_utf8_lossy();
        names.iter().any(|n| *n == name)
    };
    if !query.split('&').any(secret) {
        return Cow::Borrowed(whole);
    }
    let path = &whole[..whole.len() - query.len() - 1];
    let mut out = String::with_capacity(whole.len());
    out.push_str(path);
    for (i, pair) in query.split('&').enumerate() {
        out.push(if i == 0 { '?' } else { '&' });
        if secret(pair) {
            let name = pair.split_once('=').map_or(pair, |(name, _)| name);
            out.push_str(name);
            out.push_str("=REDACTED");
        } else {
            out.push_str(pair);
        }
    }
    Cow::Owned(out)
}

/// The client's address; an IPv4 one written with integers, not the formatter.
fn client(r: &Record, out: &mut Vec<u8>) {
    use std::io::Write;
    match r.client {
        std::net::IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                number(u64::from(octet), out);
            }
        }
        // An address prints as ASCII into a Vec: this cannot fail.
        v6 => {
            let _ = write!(out, "{v6}");
        }
    }
}

fn version(v: http::Version) -> &'static str {
    match v {
        http::Version::HTTP_09 => "HTTP/0.9",
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_2 => "HTTP/2.0",
        http::Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
}

fn number(n: u64, out: &mut Vec<u8>) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// Milliseconds with microsecond precision: `12.345`.
pub(super) fn millis(d: Duration, out: &mut Vec<u8>) {
    let micros = d.as_micros().min(u128::from(u64::MAX)) as u64;
    number(micros / 1000, out);
    out.push(b'.');
    let frac = micros % 1000;
    out.extend_from_slice(&[
        b'0' + (frac / 100) as u8,
        b'0' + (frac / 10 % 10) as u8,
        b'0' + (frac % 10) as u8,
    ]);
}

/// A JSON string, quotes included.
pub(super) fn json_string(bytes: &[u8], out: &mut Vec<u8>) {
    out.push(b'"');
    json_escaped(bytes, out);
    out.push(b'"');
}

/// The bytes a JSON string holds as they are: printable ASCII but `"` and `\`. A table:
/// one load per byte.
const PLAIN: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0x20;
    while b < 0x7f {
        table[b] = b != b'"' as usize && b != b'\\' as usize;
        b += 1;
    }
    table
};

/// The inside of a JSON string: `"` and `\` escaped, control characters as `\n`, `\r`,
/// `\t` or `\u00XX`, and each run of bytes that is not UTF-8 as U+FFFD. Runs of bytes
/// that need nothing (most of every line) are copied whole.
fn json_escaped(bytes: &[u8], out: &mut Vec<u8>) {
    if bytes.iter().all(|&b| PLAIN[usize::from(b)]) {
        out.extend_from_slice(bytes);
        return;
    }
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for chunk in bytes.utf8_chunks() {
        for &b in chunk.valid().as_bytes() {
            match b {
                b'"' => out.extend_from_slice(b"\\\""),
                b'\\' => out.extend_from_slice(b"\\\\"),
                b'\n' => out.extend_from_slice(b"\\n"),
                b'\r' => out.extend_from_slice(b"\\r"),
                b'\t' => out.extend_from_slice(b"\\t"),
                0..=0x1f | 0x7f => out.extend_from_slice(&[
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    HEX[usize::from(b >> 4)],
                    HEX[usize::from(b & 0xf)],
                ]),
                _ => out.push(b),
            }
        }
        if !chunk.invalid().is_empty() {
            out.extend_from_slice("\u{fffd}".as_bytes());
        }
    }
}

/// As nginx escapes variables in `log_format` (its default `escape=default`): `"`, `\`,
/// and bytes below 0x20 or from 0x7f up as `\xHH`, upper-case hex.
pub(super) fn nginx_escaped(bytes: &[u8], out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in bytes {
        if b == b'"' || b == b'\\' || !(0x20..0x7f).contains(&b) {
            out.extend_from_slice(&[
                b'\\',
                b'x',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xf)],
            ]);
        } else {
            out.push(b);
        }
    }
}

/// A UTC civil time, to the second.
struct Civil {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
}

/// Splits a time into its UTC calendar fields, to the second (Howard Hinnant's `civil_from_days`). A
/// time before 1970 (a clock set wrong) prints as 1970-01-01.
fn civil(time: SystemTime) -> Civil {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs() as i64;
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400) as u32);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    Civil {
        year,
        month,
        day,
        hour: rest / 3600,
        minute: rest / 60 % 60,
        second: rest % 60,
    }
}

fn two(n: u32, out: &mut Vec<u8>) {
    out.extend_from_slice(&[b'0' + (n / 10 % 10) as u8, b'0' + (n % 10) as u8]);
}

fn year(y: i64, out: &mut Vec<u8>) {
    let y = y.clamp(0, 9999) as u32;
    two(y / 100, out);
    two(y % 100, out);
}

/// `2026-12-01T21:30:00.123Z`. The text up to the second is made once per second and
/// kept: lines come in bursts within one.
pub(super) fn rfc3339(time: SystemTime, out: &mut Vec<u8>) {
    thread_local! {
        static LAST: std::cell::RefCell<(u64, Vec<u8>)> = const { std::cell::RefCell::new((u64::MAX, Vec::new())) };
    }
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let milli = since.subsec_millis();
    LAST.with_borrow_mut(|(secs, text)| {
        if *secs != since.as_secs() {
            *secs = since.as_secs();
            text.clear();
            rfc3339_seconds(time, text);
        }
        out.extend_from_slice(text);
    });
    out.extend_from_slice(&[
        b'.',
        b'0' + (milli / 100) as u8,
        b'0' + (milli / 10 % 10) as u8,
        b'0' + (milli % 10) as u8,
        b'Z',
    ]);
}

/// `2026-12-01T21:30:00`.
fn rfc3339_seconds(time: SystemTime, out: &mut Vec<u8>) {
    let c = civil(time);
    year(c.year, out);
    out.push(b'-');
    two(c.month, out);
    out.push(b'-');
    two(c.day, out);
    out.push(b'T');
    two(c.hour, out);
    out.push(b':');
    two(c.minute, out);
    out.push(b':');
    two(c.second, out);
}

/// `01/Dec/2026:21:30:00 +0000`, nginx's `$time_local` in UTC.
pub(super) fn clf_time(time: SystemTime, out: &mut Vec<u8>) {
    const MONTHS: [&[u8; 3]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    let c = civil(time);
    two(c.day, out);
    out.push(b'/');
    out.extend_from_slice(MONTHS[(c.month - 1) as usize]);
    out.push(b'/');
    year(c.year, out);
    out.push(b':');
    two(c.hour, out);
    out.push(b':');
    two(c.minute, out);
    out.push(b':');
    two(c.second, out);
    out.extend_from_slice(b" +0000");
}
