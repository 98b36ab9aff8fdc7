//! The weighted canary's sample services, `recs-v1` and `recs-v2`: one recommendations
//! service in two versions that answer `GET /recommendations?user=ID` differently (v2
//! ranks by a new model and says so), so the demo shows which one a request reached.

use http::StatusCode;
use std::time::Duration;

/// Titles both versions recommend from.
const TITLES: [&str; 8] = [
    "Dune",
    "Neuromancer",
    "Foundation",
    "Hyperion",
    "Solaris",
    "Snow Crash",
    "The Left Hand of Darkness",
    "Blindsight",
];

/// The answer of version 2 (`v2`) or 1 to a read of `path` for `user` (0 when absent).
pub(super) fn read(v2: bool, path: &str, user: u64) -> (StatusCode, Duration, String) {
    if path != "/recommendations" {
        return (
            StatusCode::NOT_FOUND,
            Duration::from_millis(5),
            r#"{"error":"not found"}"#.to_string(),
        );
    }
    let n = TITLES.len() as u64;
    let (version, model, latency, picks) = if v2 {
        // The new model: a different order, and faster.
        let picks: Vec<&str> = (0..3)
            .map(|k| TITLES[((user * 5 + k * 3) % n) as usize])
            .collect();
        ("v2", "embeddings-2", 15, picks)
    } else {
        let picks: Vec<&str> = (0..3).map(|k| TITLES[((user + k) % n) as usize]).collect();
        ("v1", "popularity", 25, picks)
    };
    let body = serde_json::json!({
        "version": version,
        "model": model,
        "user": user,
        "items": picks,
    });
    (
        StatusCode::OK,
        Duration::from_millis(latency),
        body.to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::read;

    #[test]
    fn the_two_versions_answer_differently() {
        let (s1, _, v1) = read(false, "/recommendations", 7);
        let (s2, _, v2) = read(true, "/recommendations", 7);
        assert_eq!((s1.as_u16(), s2.as_u16()), (200, 200));
        assert!(v1.contains("\"version\":\"v1\"") && v2.contains("\"version\":\"v2\""));
        assert_eq!(read(true, "/other", 1).0.as_u16(), 404);
    }
}
