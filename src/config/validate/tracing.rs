//! Validation of `[tracing]`: the collector's URL, the protocol, the sample ratio.

use super::Problems;
use crate::config::{ExportSpec, OtlpProtocol, TracingConfig, TracingSpec};

pub(super) fn tracing(t: &TracingConfig, p: &mut Problems) -> TracingSpec {
    let protocol = match t.protocol.as_str() {
        "http/protobuf" => OtlpProtocol::HttpProtobuf,
        "http/json" => OtlpProtocol::HttpJson,
        "grpc" => OtlpProtocol::Grpc,
        other => {
            p.add(
                "tracing.protocol",
                format!(
                    "unknown protocol \"{other}\"; use \"http/protobuf\", \"http/json\" or \"grpc\""
                ),
            );
            OtlpProtocol::HttpProtobuf
        }
    };
    if !(0.0..=1.0).contains(&t.sample_ratio) {
        p.add(
            "tracing.sample_ratio",
            format!(
                "{} is not a share of traces; write a number from 0.0 (only failed requests) to 1.0 (every request)",
                t.sample_ratio
            ),
        );
    }
    if t.service_name.is_empty() {
        p.add(
            "tracing.service_name",
            "must not be empty; the default is \"fanout\"",
        );
    }
    let export = t.otlp_endpoint.as_deref().and_then(|url| {
        endpoint(url, protocol)
            .map_err(|e| p.add("tracing.otlp_endpoint", e))
            .ok()
            .map(|endpoint| ExportSpec { endpoint, protocol })
    });
    TracingSpec {
        export,
        sample_ratio: t.sample_ratio,
        service_name: t.service_name.clone(),
    }
}

/// The URL spans are sent to: `text` as given, with `/v1/traces` (OTLP/HTTP's path) when
/// an HTTP protocol's URL has no path.
fn endpoint(text: &str, protocol: OtlpProtocol) -> Result<String, String> {
    let url = url::Url::parse(text).map_err(|e| {
        format!("\"{text}\" is not a URL ({e}); write the collector's, such as \"http://127.0.0.1:4318\"")
    })?;
    match url.scheme() {
        "http" => {}
        "https" => {
            return Err(format!(
                "\"{text}\": only http:// collectors are supported; send to a collector agent on \
                 the host or a sidecar, which forwards over TLS"
            ));
        }
        other => {
            return Err(format!(
                "\"{text}\": the scheme \"{other}\" is not one a collector speaks; write http://HOST:PORT"
            ));
        }
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("\"{text}\" names no host"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!(
            "\"{text}\": a collector's URL has no query or fragment"
        ));
    }
    let http = protocol != OtlpProtocol::Grpc;
    if http && url.path() == "/" && !text.ends_with('/') {
        return Ok(format!("{text}/v1/traces"));
    }
    if http && url.path() == "/" {
        return Ok(format!("{text}v1/traces"));
    }
    Ok(text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(section: &str) -> String {
        let toml = format!("[tracing]\n{section}\n");
        match crate::config::compile(&toml, &crate::config::Env::default()) {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn check_names_each_bad_key_with_its_fix() {
        assert_eq!(problems("otlp_endpoint = \"http://127.0.0.1:4318\""), "");
        let e = problems("protocol = \"thrift\"");
        assert!(
            e.contains("tracing.protocol") && e.contains("http/protobuf"),
            "{e}"
        );
        for ratio in ["1.5", "-0.1", "nan"] {
            let e = problems(&format!("sample_ratio = {ratio}"));
            assert!(
                e.contains("tracing.sample_ratio") && e.contains("0.0"),
                "{ratio}: {e}"
            );
        }
        let e = problems("otlp_endpoint = \"collector:4318\"");
        assert!(e.contains("tracing.otlp_endpoint"), "{e}");
        let e = problems("otlp_endpoint = \"https://c:4318\"");
        assert!(e.contains("only http://"), "{e}");
        let e = problems("service_name = \"\"");
        assert!(e.contains("tracing.service_name"), "{e}");
        let e = problems("endpoint = \"http://c\"");
        assert!(e.contains("tracing") && e.contains("endpoint"), "{e}");
    }

    #[test]
    fn http_endpoints_get_the_traces_path_when_they_have_none() {
        let http = OtlpProtocol::HttpProtobuf;
        assert_eq!(
            endpoint("http://c:4318", http).unwrap(),
            "http://c:4318/v1/traces"
        );
        assert_eq!(
            endpoint("http://c:4318/", http).unwrap(),
            "http://c:4318/v1/traces"
        );
        assert_eq!(
            endpoint("http://c:4318/otlp/v1/traces", http).unwrap(),
            "http://c:4318/otlp/v1/traces"
        );
        assert_eq!(
            endpoint("http://c:4317", OtlpProtocol::Grpc).unwrap(),
            "http://c:4317"
        );
        for bad in [
            "c:4318",
            "https://c:4318",
            "ftp://c",
            "http://c:4318/?x=1",
            "nope",
        ] {
            assert!(endpoint(bad, http).is_err(), "{bad}");
        }
    }
}
