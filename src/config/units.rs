//! Human units in config strings: durations (`"250ms"`, `"2s"`, `"5m"`) and byte sizes
//! (`"10MiB"`), parsed with the error texts `fanout check` shows.

use std::time::Duration;

/// Parses a duration such as `250ms`, `2s`, `1m30s`. Zero is refused: every duration in
/// the config is a limit, and a zero limit would fail every request.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    match humantime::parse_duration(text.trim()) {
        Ok(d) if d.is_zero() => Err(format!(
            "duration \"{text}\" is zero; use a positive duration such as \"250ms\" or \"2s\""
        )),
        Ok(d) => Ok(d),
        Err(_) => Err(format!(
            "invalid duration \"{text}\"; write a number and a unit, such as \"250ms\", \"2s\" or \"5m\""
        )),
    }
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
        assert_eq!(
            parse_duration("2x"),
            Err("invalid duration \"2x\"; write a number and a unit, such as \"250ms\", \"2s\" or \"5m\"".into())
        );
        assert!(parse_duration("").is_err());
        assert!(parse_duration("0s").unwrap_err().contains("is zero"));
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
