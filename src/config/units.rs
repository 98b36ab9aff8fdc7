//! Human units in config strings: durations (`"250ms"`, `"2s"`, `"1m30s"`) and byte sizes
//! (`"10MiB"`), parsed with the error texts `fanout check` shows.
//!
//! Durations are read strictly, as the README documents them: whole numbers, each with
//! one of the units `ms`, `s`, `m`, `h`, `d`, written together (`"1h30m"`). Anything
//! else is refused, with the documented spelling of the same value when there is one
//! (`"1.5 seconds"`: write `"1500ms"`), so a value never means something its writer
//! did not expect.

use std::time::Duration;

/// The longest duration accepted: every duration in the config is a timeout, an
/// interval or a cache lifetime, none of which is sensible beyond a year, and a far
/// larger one would overflow the clock when added to the current instant.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// The units a duration may use, longest name first so `ms` is not read as `m`.
const UNITS: &[(&str, u64)] = &[
    ("ms", 1),
    ("s", 1_000),
    ("m", 60_000),
    ("h", 3_600_000),
    ("d", 86_400_000),
];

/// Other spellings of the same units, for the hint only.
const SPELLINGS: &[(&[&str], u64)] = &[
    (&["msec", "msecs", "millisecond", "milliseconds"], 1),
    (&["sec", "secs", "second", "seconds"], 1_000),
    (&["min", "mins", "minute", "minutes"], 60_000),
    (&["hr", "hrs", "hour", "hours"], 3_600_000),
    (&["day", "days"], 86_400_000),
    (&["y", "year", "years"], 365 * 86_400_000),
];

/// Parses a duration such as `250ms`, `2s`, `1m30s`. Zero is refused: every duration in
/// the config is a limit, and a zero limit would fail every request.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    if !trimmed.is_empty() && trimmed.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "duration \"{text}\" has no unit; write \"{trimmed}ms\" or \"{trimmed}s\""
        ));
    }
    let millis = match strict_millis(trimmed) {
        Some(Ok(ms)) => ms,
        Some(Err(TooLong)) => return Err(too_long(text)),
        None => {
            return Err(match loose_millis(trimmed) {
                Some(ms) if ms > MAX_DURATION.as_millis() as f64 => too_long(text),
                Some(ms) if ms >= 1.0 && ms.fract() == 0.0 => format!(
                    "duration \"{text}\" is not written the documented way; write \"{}\"",
                    canonical(ms as u64)
                ),
                _ => format!(
                    "invalid duration \"{text}\"; write a number and a unit, such as \"250ms\", \"2s\" or \"5m\""
                ),
            });
        }
    };
    let duration = Duration::from_millis(millis);
    if duration.is_zero() {
        return Err(format!(
            "duration \"{text}\" is zero; use a positive duration such as \"250ms\" or \"2s\""
        ));
    }
    if duration > MAX_DURATION {
        return Err(too_long(text));
    }
    Ok(duration)
}

struct TooLong;

fn too_long(text: &str) -> String {
    format!("duration \"{text}\" is longer than 365 days, the longest fanout accepts")
}

/// Milliseconds of a duration in the documented form, or `None` when it is not in it.
fn strict_millis(text: &str) -> Option<Result<u64, TooLong>> {
    let mut rest = text;
    let mut total: u64 = 0;
    let mut overflow = false;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let (number, after) = rest.split_at(digits);
        let &(unit, factor) = UNITS.iter().find(|(u, _)| after.starts_with(u))?;
        rest = &after[unit.len()..];
        match number
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(factor))
            .and_then(|ms| ms.checked_add(total))
        {
            Some(sum) => total = sum,
            None => overflow = true,
        }
    }
    Some(if overflow { Err(TooLong) } else { Ok(total) })
}

/// Reads `1.5 seconds`, `2 min`, `1y`: one number (maybe with a fraction) and one
/// unit, spelled any common way, as milliseconds. Only used for the error's hint.
fn loose_millis(text: &str) -> Option<f64> {
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let unit = unit.trim().to_ascii_lowercase();
    let factor = UNITS
        .iter()
        .find(|(u, _)| *u == unit)
        .map(|&(_, f)| f)
        .or_else(|| {
            SPELLINGS
                .iter()
                .find(|(names, _)| names.contains(&unit.as_str()))
                .map(|&(_, f)| f)
        })?;
    Some(number * factor as f64)
}

/// The documented spelling of a whole number of milliseconds, in its largest exact unit.
fn canonical(ms: u64) -> String {
    UNITS
        .iter()
        .rev()
        .find(|(_, factor)| ms.is_multiple_of(*factor))
        .map(|(unit, factor)| format!("{}{unit}", ms / factor))
        .unwrap_or_else(|| format!("{ms}ms"))
}

/// Parses a byte size such as `512KiB`, `10MiB`, `1GB` or a plain number of bytes.
pub fn parse_size(text: &str) -> Result<u64, String> {
    text.trim()
        .parse::<bytesize::ByteSize>()
        .map(|b| b.as_u64())
        .map_err(|_| {
            format!(
                "invalid size \"{text}\"; write a number and a unit, such as \"64KiB\" or \"10MiB\""
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration(" 2s "), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("365d"), Ok(MAX_DURATION));
        assert_eq!(
            parse_duration("2x"),
            Err("invalid duration \"2x\"; write a number and a unit, such as \"250ms\", \"2s\" or \"5m\"".into())
        );
        assert!(parse_duration("").is_err());
        assert!(parse_duration("0s").unwrap_err().contains("is zero"));
    }

    #[test]
    fn what_the_readme_does_not_document_is_refused_with_its_spelling() {
        let hint = |t: &str| parse_duration(t).unwrap_err();
        assert_eq!(
            hint("300"),
            "duration \"300\" has no unit; write \"300ms\" or \"300s\""
        );
        assert_eq!(
            hint("1.5 seconds"),
            "duration \"1.5 seconds\" is not written the documented way; write \"1500ms\""
        );
        assert!(hint("1.5s").ends_with("write \"1500ms\""));
        assert!(hint("2 min").ends_with("write \"2m\""));
        assert!(hint("2 hours").ends_with("write \"2h\""));
        assert!(hint("90 seconds").ends_with("write \"90s\""));
        assert!(hint("1m 30s").starts_with("invalid duration"));
        assert!(hint("1y").ends_with("write \"365d\""));
        assert!(hint("0.5ms").starts_with("invalid duration"));
        assert!(hint("-1s").starts_with("invalid duration"));
    }

    #[test]
    fn durations_that_would_overflow_the_clock_are_refused() {
        let long = "duration \"500000000000d\" is longer than 365 days, the longest fanout accepts";
        assert_eq!(parse_duration("500000000000d"), Err(long.into()));
        assert!(
            parse_duration("99999999999999999999999s")
                .unwrap_err()
                .contains("longer than 365 days")
        );
        assert!(
            parse_duration("366d")
                .unwrap_err()
                .contains("longer than 365 days")
        );
        assert_eq!(
            parse_duration("500000000000y").unwrap_err(),
            "duration \"500000000000y\" is longer than 365 days, the longest fanout accepts"
        );
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("10MiB"), Ok(10 * 1024 * 1024));
        assert_eq!(parse_size("1KiB"), Ok(1024));
        assert_eq!(parse_size("1 KB"), Ok(1000));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(
            parse_size("ten"),
            Err(
                "invalid size \"ten\"; write a number and a unit, such as \"64KiB\" or \"10MiB\""
                    .into()
            )
        );
        assert!(parse_size("10XB").is_err());
    }
}
