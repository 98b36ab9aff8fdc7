use super::*;

#[test]
fn exposition_has_every_family() {
    let m = Metrics::new();
    let route = Label::new("/api/{id}");
    // Through the route's series and by lookup, the same series.
    let series = m.route_series(&route, false);
    m.request(&route, Some(&series), 200, Duration::from_millis(3), None);
    m.request(&route, None, 200, Duration::from_millis(3), None);
    m.request(&route, Some(&series), 404, Duration::from_millis(3), None);
    let user = Label::new("user");
    let backend = m.backend_series(&route, &user);
    m.backend(&route, &user, &backend, "hit", Duration::from_millis(1));
    m.backend(&route, &user, &backend, "timeout", Duration::from_millis(1));
    m.rate_limited(&route);
    m.reload(true);
    m.config_hash("abc");
    m.config_hash("def");
    m.cache.hits.inc();
    let _flight = m.in_flight();
    let text = m.encode();
    for line in [
        "fanout_requests_total{route=\"/api/{id}\",status=\"200\"} 2",
        "fanout_requests_total{route=\"/api/{id}\",status=\"404\"} 1",
        "fanout_request_duration_seconds_count{route=\"/api/{id}\"} 3",
        "fanout_backend_duration_seconds_count{route=\"/api/{id}\",backend=\"user\"} 2",
        "fanout_backend_outcomes_total{route=\"/api/{id}\",backend=\"user\",code=\"hit\"} 1",
        "fanout_backend_outcomes_total{route=\"/api/{id}\",backend=\"user\",code=\"timeout\"} 1",
        "fanout_backend_outcomes_total{route=\"/api/{id}\",backend=\"user\",code=\"ok\"} 0",
        "fanout_rate_limited_total{route=\"/api/{id}\"} 1",
        "fanout_requests_in_flight 1",
        "fanout_reloads_total{result=\"ok\"} 1",
        "fanout_config_info{hash=\"def\"} 1",
        "fanout_cache_hits_total 1",
    ] {
        assert!(text.contains(line), "missing {line} in\n{text}");
    }
    assert!(!text.contains("hash=\"abc\""), "the old hash is gone");
}

#[test]
fn a_sampled_request_is_its_buckets_exemplar() {
    let m = Metrics::new();
    let route = Label::new("/api");
    let series = m.route_series(&route, false);
    let first = TraceId::from_hex(b"4bf92f3577b34da6a3ce929d0e0e4736").unwrap();
    let latest = TraceId::from_hex(b"0af7651916cd43dd8448eb211c80319c").unwrap();
    // 3 ms falls in the 4 ms bucket; 100 ms in the 128 ms one.
    m.request(
        &route,
        Some(&series),
        200,
        Duration::from_millis(3),
        Some(first),
    );
    m.request(
        &route,
        Some(&series),
        200,
        Duration::from_millis(3),
        Some(latest),
    );
    m.request(&route, Some(&series), 200, Duration::from_millis(3), None);
    m.request(&route, None, 502, Duration::from_millis(100), Some(first));
    m.request(&route, None, 200, Duration::from_millis(20), None);
    let text = m.encode();
    let bucket = |le: &str| {
        let start =
            format!("fanout_request_duration_seconds_bucket{{le=\"{le}\",route=\"/api\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(start.as_str()))
            .unwrap_or_else(|| panic!("no bucket {le} in\n{text}"))
            .to_string()
    };
    // The latest sampled request of a bucket is its exemplar; unsampled ones leave it.
    let ms4 = bucket("0.004");
    let (count, exemplar) = ms4.split_once(" # ").expect("an exemplar");
    assert_eq!(count, "3");
    let mut parts = exemplar.split(' ');
    assert_eq!(
        parts.next(),
        Some("{trace_id=\"0af7651916cd43dd8448eb211c80319c\"}")
    );
    assert_eq!(parts.next(), Some("0.003"));
    let stamp: f64 = parts.next().expect("a timestamp").parse().unwrap();
    assert!(stamp > 1.7e9, "seconds since the epoch: {stamp}");
    assert!(
        bucket("0.128").starts_with("5 # {trace_id=\"4bf92f3577b34da6a3ce929d0e0e4736\"} 0.1 "),
        "{text}"
    );
    // No sampled request in these buckets: no exemplar.
    assert_eq!(bucket("0.032"), "4");
    assert_eq!(bucket("0.002"), "0");
    assert!(text.ends_with("# EOF\n"));
}
