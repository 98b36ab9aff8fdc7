use super::*;

const SPEC: &[u8] = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn headers(pairs: &[(&HeaderName, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (name, value) in pairs {
        h.append((*name).clone(), HeaderValue::from_str(value).unwrap());
    }
    h
}

#[test]
fn the_spec_example_parses_and_writes_back_the_same() {
    let tp = TraceParent::parse(SPEC).unwrap();
    assert_eq!(tp.trace_id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(tp.span_id.to_string(), "00f067aa0ba902b7");
    assert!(tp.sampled());
    assert_eq!(&tp.encode()[..], SPEC);
    assert_eq!(tp.header_value().as_bytes(), SPEC);
    let unsampled = TraceParent::parse(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00");
    assert!(!unsampled.unwrap().sampled());
}

#[test]
fn invalid_version_00_values_are_refused() {
    let bad: &[&[u8]] = &[
        b"",
        b"00",
        // uppercase
        b"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        b"00-4bf92f3577b34da6a3ce929d0e0e4736-00F067AA0BA902B7-01",
        b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0A",
        // all-zero ids
        b"00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        b"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        // lengths
        b"00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        b"00-4bf92f3577b34da6a3ce929d0e0e47366-00f067aa0ba902b7-01",
        b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b-01",
        b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
        b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-011",
        // version 00 takes no more fields
        b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        // separators, non-hex
        b"00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        b"00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-01",
        b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7_01",
        b"00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
        b" 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    ];
    for text in bad {
        assert_eq!(
            TraceParent::parse(text),
            None,
            "{}",
            String::from_utf8_lossy(text)
        );
    }
}

#[test]
fn versions_are_read_forward_compatibly() {
    // A later version is read by its first 55 characters, further fields after a `-`.
    let v1 = TraceParent::parse(b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
    assert!(v1.unwrap().sampled());
    let extra = TraceParent::parse(
        b"cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-holds",
    );
    let extra = extra.unwrap();
    assert_eq!(extra.span_id.to_string(), "00f067aa0ba902b7");
    // ... and written back as version 00, with only the flags this version knows.
    assert_eq!(&extra.encode()[..], SPEC);
    let flags = TraceParent::parse(b"02-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-ff");
    assert_eq!(flags.unwrap().flags, SAMPLED);
    for bad in [
        &b"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"[..],
        b"cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01.what",
        b"cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",
        b"0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        b"CC-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    ] {
        assert_eq!(
            TraceParent::parse(bad),
            None,
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
}

#[test]
fn a_valid_traceparent_is_continued_with_a_span_of_our_own() {
    let h = headers(&[
        (&TRACEPARENT, std::str::from_utf8(SPEC).unwrap()),
        (&TRACESTATE, "congo=t61rcWkgMzE"),
        (&TRACESTATE, "rojo=00f067aa0ba902b7"),
        (&BAGGAGE, "userId=alice"),
    ]);
    let cx = TraceContext::of(&h, |_| panic!("a continued trace keeps its decision"));
    let client = TraceParent::parse(SPEC).unwrap();
    assert_eq!(cx.server.trace_id, client.trace_id);
    assert_ne!(cx.server.span_id, client.span_id);
    assert_eq!(cx.parent, Some(client.span_id));
    assert!(cx.server.sampled());
    assert_eq!(
        cx.tracestate.unwrap(),
        "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"
    );
    assert_eq!(cx.baggage.unwrap(), "userId=alice");
    let child = cx.server.child();
    assert_eq!(child.trace_id, cx.server.trace_id);
    assert_ne!(child.span_id, cx.server.span_id);
}

#[test]
fn an_invalid_traceparent_starts_a_trace_and_drops_its_tracestate() {
    for tp in [
        "garbage",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
    ] {
        let h = headers(&[(&TRACEPARENT, tp), (&TRACESTATE, "a=b"), (&BAGGAGE, "k=v")]);
        let cx = TraceContext::of(&h, |_| true);
        assert_eq!(cx.parent, None);
        assert!(cx.server.sampled());
        assert_eq!(
            cx.tracestate, None,
            "tracestate means nothing without its parent"
        );
        assert_eq!(
            cx.baggage.unwrap(),
            "k=v",
            "baggage is not tied to the trace"
        );
    }
    let twice = headers(&[
        (&TRACEPARENT, std::str::from_utf8(SPEC).unwrap()),
        (&TRACEPARENT, std::str::from_utf8(SPEC).unwrap()),
    ]);
    assert_eq!(TraceContext::of(&twice, |_| false).parent, None);
    let new = TraceContext::of(&HeaderMap::new(), |_| false);
    assert!(!new.server.sampled(), "the sampler decides a new trace");
}

#[test]
fn tracestate_is_bounded_and_checked() {
    assert!(valid_tracestate(b"congo=t61rcWkgMzE"));
    assert!(valid_tracestate(b"a=1 , b=2,,"));
    assert!(valid_tracestate(b"tenant@system=x,0tenant@sys-tem=y"));
    assert!(valid_tracestate(b""));
    let max: Vec<String> = (0..32).map(|i| format!("k{i}=v")).collect();
    assert!(valid_tracestate(max.join(",").as_bytes()));
    let over: Vec<String> = (0..33).map(|i| format!("k{i}=v")).collect();
    assert!(!valid_tracestate(over.join(",").as_bytes()), "33 members");
    let long =
        format!("a={}", "x".repeat(250)) + &format!(",b={}", "y".repeat(250)) + ",c=zzzzzzzz";
    assert!(long.len() > 512);
    assert!(!valid_tracestate(long.as_bytes()), "over 512 characters");
    for bad in [
        &b"Congo=x"[..],
        b"congo",
        b"congo=",
        b"congo=a,b",
        b"a=1,a=2",
        b"1abc=x",
        b"a=b=c",
        b"tenant@=x",
        b"tenant@system-too-long=x",
        b"a=x\x01",
    ] {
        assert!(!valid_tracestate(bad), "{}", String::from_utf8_lossy(bad));
    }
    let h = headers(&[
        (&TRACEPARENT, std::str::from_utf8(SPEC).unwrap()),
        (&TRACESTATE, "Bad=1"),
    ]);
    assert_eq!(TraceContext::of(&h, |_| true).tracestate, None);
}

#[test]
fn baggage_is_passed_as_is_within_its_bound() {
    let big = "k=".to_string() + &"v".repeat(BAGGAGE_MAX_LEN);
    let h = headers(&[(&BAGGAGE, &big)]);
    assert_eq!(TraceContext::of(&h, |_| true).baggage, None);
    let h = headers(&[(&BAGGAGE, "a=1;p"), (&BAGGAGE, "b=%20")]);
    assert_eq!(
        TraceContext::of(&h, |_| true).baggage.unwrap(),
        "a=1;p,b=%20"
    );
}

#[test]
fn pass_on_replaces_what_a_client_sent() {
    let h = headers(&[
        (&TRACEPARENT, std::str::from_utf8(SPEC).unwrap()),
        (&TRACESTATE, "a=1"),
    ]);
    let cx = TraceContext::of(&h, |_| true);
    let mut out = h.clone();
    out.append(BAGGAGE.clone(), HeaderValue::from_static("x=1"));
    cx.pass_on(&mut out);
    assert!(!out.contains_key(&TRACEPARENT));
    assert_eq!(out[&TRACESTATE], "a=1");
    assert!(!out.contains_key(&BAGGAGE), "the client sent none");
}

#[test]
fn pass_on_removes_any_one_of_the_three_sent_alone() {
    let cx = TraceContext::of(&headers(&[]), |_| true);
    for name in [&TRACEPARENT, &TRACESTATE, &BAGGAGE] {
        let mut out = headers(&[(name, "x=1"), (&http::header::ACCEPT, "*/*")]);
        cx.pass_on(&mut out);
        assert!(!out.contains_key(name), "{name}");
        assert_eq!(out.len(), 1, "{name}: the other header stays");
    }
    // Nothing to replace, nothing to add: the headers stay as they are.
    let mut out = headers(&[(&http::header::ACCEPT, "*/*")]);
    cx.pass_on(&mut out);
    assert_eq!(out, headers(&[(&http::header::ACCEPT, "*/*")]));
}
