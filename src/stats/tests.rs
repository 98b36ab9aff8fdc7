//! The sliding-window math on an injected clock (whole seconds), the bucket layout,
//! and recording from many threads at once.

use super::tagged::{BUCKETS, TaggedCount, bucket_of, bucket_value};
use super::*;
use std::time::Duration;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn buckets_cover_every_latency_within_a_sixteenth() {
    let mut last = 0;
    for micros in 0..5000 {
        let b = bucket_of(micros);
        assert!(
            b >= last && b <= last + 1,
            "buckets grow with the latency, none skipped"
        );
        last = b;
    }
    for micros in (0..5000)
        .chain((1..40).map(|e| (1u64 << e) - 1))
        .chain([u64::MAX])
    {
        let b = bucket_of(micros);
        assert!(b < BUCKETS, "{micros} µs → bucket {b}");
        if micros < (1 << 30) {
            let middle = bucket_value(b);
            let error = middle.abs_diff(micros) as f64 / micros.max(1) as f64;
            assert!(error <= 1.0 / 32.0 + 1e-9, "{micros} µs read as {middle}");
        }
    }
    assert_eq!(bucket_of(15), 15);
    assert_eq!(bucket_of(16), 16);
    assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
}

#[test]
fn a_tagged_count_belongs_to_its_period() {
    let c = TaggedCount::default();
    c.add(7, 2);
    c.add(7, 3);
    assert_eq!(c.get(7), 5);
    assert_eq!(c.get(6), 0);
    // A newer period starts over.
    c.add(9, 1);
    assert_eq!((c.get(7), c.get(9)), (0, 1));
    // A late writer of an older period adds to the newer one rather than erase it.
    c.add(8, 1);
    assert_eq!(c.get(9), 2);
    // A cell whose tag is far from any period near (left from a wrap of the tag) is
    // stale, not newer: it starts over.
    let stale = TaggedCount::default();
    stale.add((1 << 24) - 10, 5);
    stale.add(20_000, 1);
    assert_eq!(stale.get(20_000), 1);
    // Across the tag's wrap, the next period is newer.
    let wrap = TaggedCount::default();
    wrap.add((1 << 24) - 1, 1);
    wrap.add(1 << 24, 1);
    assert_eq!(wrap.get(1 << 24), 1);
}

#[test]
fn the_rate_counts_the_last_ten_seconds() {
    let w = RouteWindow::default();
    for at in 100..120 {
        w.record(at, 200, ms(5));
    }
    let r = w.read(119, 5);
    assert_eq!(r.rate, 1.0);
    assert_eq!(r.requests, 20);
    // Ten quiet seconds later the rate is 0, the minute still has them.
    let r = w.read(129, 5);
    assert_eq!(r.rate, 0.0);
    assert_eq!(r.requests, 20);
    // A minute later they are gone from the counts.
    assert_eq!(w.read(180, 5).requests, 0);
}

#[test]
fn errors_and_429s_are_counted_apart() {
    let w = RouteWindow::default();
    w.record(10, 200, ms(1));
    w.record(10, 502, ms(1));
    w.record(11, 503, ms(1));
    w.record(11, 429, ms(1));
    w.record(12, 404, ms(1));
    let r = w.read(12, 5);
    assert_eq!((r.requests, r.errors, r.limited), (5, 2, 1));
}

#[test]
fn the_series_is_five_minutes_oldest_first() {
    let w = RouteWindow::default();
    // 3 requests at second 1000, 1 at 1299.
    for _ in 0..3 {
        w.record(1000, 200, ms(1));
    }
    w.record(1299, 200, ms(1));
    let r = w.read(1299, 5);
    assert_eq!(r.series.len(), 60);
    assert_eq!(
        r.series[0], 3,
        "second 1000 is in the oldest point (996–1000)"
    );
    assert_eq!(r.series[59], 1);
    assert_eq!(r.series.iter().sum::<u64>(), 4);
    // A ring slot reused 300 s later does not show the old second.
    w.record(1300, 200, ms(1));
    let r = w.read(1300, 5);
    assert_eq!(r.series.iter().sum::<u64>(), 2);
    // Before the clock has five minutes, the points before 0 are empty.
    let r = RouteWindow::default().read(3, 5);
    assert_eq!(r.series.len(), 60);
}

#[test]
fn percentiles_slide_with_the_minute() {
    let w = RouteWindow::default();
    let mut reader = PercentileReader::default();
    assert_eq!(reader.route(&w, 0), None);
    // 99 fast answers and one slow one at second 100.
    for _ in 0..99 {
        w.record(100, 200, ms(10));
    }
    w.record(100, 200, ms(2000));
    let p = reader.route(&w, 100).unwrap();
    assert!((p.p50_ms - 10.0).abs() < 0.4, "{p:?}");
    assert!(
        (p.p99_ms - 10.0).abs() < 0.4,
        "p99 of 100 samples is the 99th: {p:?}"
    );
    w.record(101, 200, ms(2000));
    let p = reader.route(&w, 101).unwrap();
    assert!((p.p99_ms - 2000.0).abs() < 70.0, "{p:?}");
    // Periods of ten seconds: at 159 the samples of 100 are still in, at 160 not.
    assert!(reader.route(&w, 159).is_some());
    assert_eq!(reader.route(&w, 160), None);
}

#[test]
fn backend_outcomes_are_grouped() {
    let w = BackendWindow::default();
    for code in [
        "ok",
        "partial",
        "hit",
        "shared",
        "stale",
        "timeout",
        "bad_status",
        "connect_failed",
        "missing_value",
        "skipped",
    ] {
        w.record(50, code, ms(3));
    }
    assert_eq!(w.outcomes(50), [2, 2, 1, 1, 2, 1, 1]);
    assert_eq!(w.outcomes(120), [0; 7]);
    let p = PercentileReader::default().backend(&w, 50).unwrap();
    assert!(
        (p.p50_ms - 3.0).abs() < 0.1,
        "skipped calls have no latency: {p:?}"
    );
}

#[test]
fn many_threads_lose_no_sample() {
    const THREADS: u64 = 8;
    const EACH: u64 = 20_000;
    let route = Arc::new(RouteWindow::default());
    let backend = Arc::new(BackendWindow::default());
    // Every thread records the same second and bucket, the most contended case, and
    // half of them move on to the next second midway, which is also the next latency
    // period: readers must find every sample in one of the two.
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let (route, backend) = (route.clone(), backend.clone());
            std::thread::spawn(move || {
                for i in 0..EACH {
                    let at = if t % 2 == 1 && i >= EACH / 2 {
                        510
                    } else {
                        509
                    };
                    route.record(at, if i % 10 == 0 { 500 } else { 200 }, ms(7));
                    backend.record(at, "ok", ms(7));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let r = route.read(510, 1);
    assert_eq!(r.requests, THREADS * EACH);
    assert_eq!(r.errors, THREADS * EACH / 10);
    assert_eq!(backend.outcomes(510)[0], THREADS * EACH);
    let mut samples = 0;
    route.latencies(510, &mut |_, n| samples += n);
    assert_eq!(samples, THREADS * EACH);
}

#[test]
fn stats_keep_one_window_per_label() {
    let stats = Stats::default();
    let a = stats.route("/a");
    assert!(Arc::ptr_eq(&a, &stats.route("/a")));
    assert!(!Arc::ptr_eq(&a, &stats.route("/b")));
    let b = stats.backend("/a", "users");
    assert!(Arc::ptr_eq(&b, &stats.backend("/a", "users")));
    assert!(!Arc::ptr_eq(&b, &stats.backend("/b", "users")));
}

#[test]
fn a_window_no_snapshot_holds_is_forgotten() {
    let stats = Stats::default();
    // A snapshot with two routes, each with a backend.
    let a = stats.route("/a");
    let b = stats.route("/b");
    let a_users = stats.backend("/a", "users");
    let b_users = stats.backend("/b", "users");
    a.record(5, 200, ms(1));
    assert_eq!(stats.known(), (2, 2));
    // A reload keeps `/a` and drops `/b`: the new snapshot is built while the old one
    // still holds its windows, so `/a` keeps its history.
    let kept = stats.route("/a");
    let kept_users = stats.backend("/a", "users");
    assert!(Arc::ptr_eq(&a, &kept) && Arc::ptr_eq(&a_users, &kept_users));
    // The old snapshot goes; the next build forgets `/b`.
    drop((a, b, a_users, b_users));
    let _c = stats.route("/c");
    let _c_users = stats.backend("/c", "users");
    assert_eq!(stats.known(), (2, 2), "/a and /c, not /b");
    assert_eq!(kept.read(5, 1).requests, 1, "the kept route's history");
    drop((kept, kept_users));
    let _d = stats.route("/d");
    assert_eq!(stats.known().0, 2, "/c and /d");
}
