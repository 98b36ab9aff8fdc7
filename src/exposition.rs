//! The two text formats `/metrics` answers in, and which one a scraper gets.
//!
//! The registry encodes OpenMetrics text: counters as a `fanout_x` family of
//! `fanout_x_total` samples, a `# EOF` line at the end, and exemplars after a bucket's
//! value (`... 7 # {trace_id="4bf9…"} 0.0123 1700000000.5`). Prometheus asks for it
//! (`Accept: application/openmetrics-text;…`) and stores the exemplars; so does every
//! client that does not say (no `Accept`, `*/*`), as `/metrics` always answered.
//!
//! A scraper that asks for the Prometheus text format (`text/plain;version=0.0.4`) and
//! prefers it to OpenMetrics cannot parse an exemplar: the classic parser reads
//! `metric{labels} value [timestamp]` and fails on the `#`. It gets the same samples in
//! that format: counter families named as their `_total` samples, no exemplars, no
//! `# EOF`.

use http::HeaderValue;

/// A text format of the metrics exposition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exposition {
    /// OpenMetrics 1.0 text, with exemplars.
    OpenMetrics,
    /// The Prometheus text format 0.0.4, without exemplars.
    PrometheusText,
}

impl Exposition {
    /// The format to answer a request with this `Accept` header in: the one with the
    /// higher quality, OpenMetrics on a tie (and when the header is absent, malformed or
    /// accepts neither: what `/metrics` always answered).
    pub fn negotiate(accept: Option<&HeaderValue>) -> Self {
        let Some(accept) = accept.and_then(|a| a.to_str().ok()) else {
            return Self::OpenMetrics;
        };
        // The quality of the most specific range naming each type: the type itself,
        // then its `type/*`, then `*/*`.
        let mut open = [None::<f32>; 3];
        let mut text = [None::<f32>; 3];
        for range in accept.split(',') {
            let mut params = range.split(';');
            let media = params.next().unwrap_or("").trim().to_ascii_lowercase();
            let quality = params
                .filter_map(|p| p.trim().strip_prefix("q="))
                .find_map(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            let slot = |q: &mut Option<f32>| *q = Some(q.map_or(quality, |old| old.max(quality)));
            match media.as_str() {
                "application/openmetrics-text" => slot(&mut open[0]),
                "application/*" => slot(&mut open[1]),
                "text/plain" => slot(&mut text[0]),
                "text/*" => slot(&mut text[1]),
                "*/*" => {
                    slot(&mut open[2]);
                    slot(&mut text[2]);
                }
                _ => {}
            }
        }
        let most_specific = |q: [Option<f32>; 3]| q.into_iter().flatten().next().unwrap_or(0.0);
        let (open, text) = (most_specific(open), most_specific(text));
        if text > open {
            Self::PrometheusText
        } else {
            Self::OpenMetrics
        }
    }

    /// The answer's `Content-Type`.
    pub fn content_type(self) -> HeaderValue {
        HeaderValue::from_static(match self {
            Self::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Self::PrometheusText => "text/plain; version=0.0.4; charset=utf-8",
        })
    }

    /// `openmetrics` (the registry's encoding) in this format.
    pub fn render(self, openmetrics: String) -> String {
        match self {
            Self::OpenMetrics => openmetrics,
            Self::PrometheusText => prometheus_text(&openmetrics),
        }
    }
}

/// OpenMetrics text as Prometheus text 0.0.4: a counter family `x` becomes `x_total`
/// (the name its samples have), `# UNIT` and `# EOF` go, and exemplars are cut.
fn prometheus_text(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    let mut lines = openmetrics.lines().peekable();
    while let Some(line) = lines.next() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if let Some(help) = line.strip_prefix("# HELP ") {
            let name = help.split(' ').next().unwrap_or("");
            let counter = format!("# TYPE {name} counter");
            if lines.peek() == Some(&counter.as_str()) && !name.ends_with("_total") {
                lines.next();
                let text = &help[name.len()..];
                out.push_str(&format!("# HELP {name}_total{text}\n"));
                out.push_str(&format!("# TYPE {name}_total counter\n"));
                continue;
            }
        }
        if line.starts_with('#') {
            out.push_str(line);
        } else {
            out.push_str(without_exemplar(line));
        }
        out.push('\n');
    }
    out
}

/// A sample line without its exemplar: everything before the first ` #` outside the
/// label set's quoted values.
fn without_exemplar(line: &str) -> &str {
    let bytes = line.as_bytes();
    let (mut quoted, mut escaped) = (false, false);
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            _ if escaped => escaped = false,
            b'\\' if quoted => escaped = true,
            b'"' => quoted = !quoted,
            b'#' if !quoted && i > 0 && bytes[i - 1] == b' ' => return &line[..i - 1],
            _ => {}
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn negotiate(accept: &str) -> Exposition {
        Exposition::negotiate(Some(&HeaderValue::from_str(accept).unwrap()))
    }

    #[test]
    fn scrapers_get_the_format_they_prefer() {
        use Exposition::*;
        assert_eq!(Exposition::negotiate(None), OpenMetrics);
        // Prometheus 2.x and 3.x.
        assert_eq!(
            negotiate(
                "application/openmetrics-text;version=1.0.0,application/openmetrics-text;\
                 version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
            ),
            OpenMetrics
        );
        // Prometheus 1.x, and scrapers that only read the classic format.
        assert_eq!(
            negotiate("text/plain;version=0.0.4;q=1,*/*;q=0.1"),
            PrometheusText
        );
        assert_eq!(negotiate("text/plain"), PrometheusText);
        assert_eq!(negotiate("text/*"), PrometheusText);
        assert_eq!(
            negotiate("application/openmetrics-text;q=0.2, text/plain;q=0.9"),
            PrometheusText
        );
        // curl, browsers, a tie, nothing we speak, garbage.
        assert_eq!(negotiate("*/*"), OpenMetrics);
        assert_eq!(
            negotiate("text/html,application/xhtml+xml,*/*;q=0.8"),
            OpenMetrics
        );
        assert_eq!(
            negotiate("text/plain, application/openmetrics-text"),
            OpenMetrics
        );
        assert_eq!(negotiate("application/json"), OpenMetrics);
        assert_eq!(negotiate(";;,q=x"), OpenMetrics);
    }

    #[test]
    fn prometheus_text_names_counters_by_their_samples_and_cuts_exemplars() {
        let openmetrics = "\
# HELP fanout_requests Requests answered.
# TYPE fanout_requests counter
fanout_requests_total{route=\"/a # {b}\",status=\"200\"} 3
# HELP fanout_request_duration_seconds Time to answer.
# TYPE fanout_request_duration_seconds histogram
fanout_request_duration_seconds_sum{route=\"/a\"} 0.5
fanout_request_duration_seconds_bucket{le=\"0.001\",route=\"/a \\\" # x\"} 1 \
# {trace_id=\"4bf92f3577b34da6a3ce929d0e0e4736\"} 0.0005 1700000000.5
# HELP fanout_requests_in_flight Requests being answered now.
# TYPE fanout_requests_in_flight gauge
fanout_requests_in_flight 1
# EOF
";
        let text = Exposition::PrometheusText.render(openmetrics.to_string());
        assert_eq!(
            text,
            "\
# HELP fanout_requests_total Requests answered.
# TYPE fanout_requests_total counter
fanout_requests_total{route=\"/a # {b}\",status=\"200\"} 3
# HELP fanout_request_duration_seconds Time to answer.
# TYPE fanout_request_duration_seconds histogram
fanout_request_duration_seconds_sum{route=\"/a\"} 0.5
fanout_request_duration_seconds_bucket{le=\"0.001\",route=\"/a \\\" # x\"} 1
# HELP fanout_requests_in_flight Requests being answered now.
# TYPE fanout_requests_in_flight gauge
fanout_requests_in_flight 1
"
        );
        assert_eq!(
            Exposition::OpenMetrics.render(openmetrics.to_string()),
            openmetrics
        );
    }
}
