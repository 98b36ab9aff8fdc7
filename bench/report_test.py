#!/usr/bin/env python3
"""Tests of bench/run's report: figures in, markdown out, without running anything.

    python3 bench/report_test.py
"""

import importlib.machinery
import importlib.util
import unittest
from pathlib import Path

loader = importlib.machinery.SourceFileLoader("bench_run", str(Path(__file__).with_name("run")))
spec = importlib.util.spec_from_loader("bench_run", loader)
bench = importlib.util.module_from_spec(spec)
loader.exec_module(bench)


def figures(rps, p50_ms, user=None, kernel=None):
    f = {"rps": rps, "p50_ms": p50_ms, "p99_ms": p50_ms * 2}
    if user is not None:
        f.update(user_us_per_req=user, kernel_us_per_req=kernel, cpu_us_per_req=user + kernel,
                 peak_rss_mib=16.0)
    return f


def logged(rps, p50_ms, user, kernel, lines_per_req, bytes_per_line):
    return {**figures(rps, p50_ms, user, kernel), "access_log_lines_per_req": lines_per_req,
            "access_log_bytes_per_line": bytes_per_line}


def results():
    medians = {
        "a/fanout": figures(60000, 0.9, 4.0, 11.0),
        "a/nginx": figures(50000, 0.9, 3.0, 12.0),
        "a/nginx+log": logged(40000, 1.0, 5.0, 15.0, 1.0001, 96),
        "a/fanout+log": logged(55000, 1.0, 4.5, 12.0, 1.0002, 250),
        "b/nginx+lua": figures(25000, 2.4, 11.0, 29.0),
        "b/fanout": figures(30000, 2.0, 8.0, 24.0),
        "b/nginx+lua+log": logged(20000, 2.6, 13.0, 35.0, 1.0, 91),
        "b/fanout+log": logged(28000, 2.1, 9.0, 27.0, 0.95, 300),
        "c/fanout": figures(99000, 0.6, 3.0, 7.0),
        "g/nginx+lua": figures(15000, 3.9, 20.0, 40.0),
        "g/fanout": figures(21000, 2.8, 14.0, 26.0),
        "h/fanout": figures(30000, 2.0, 8.0, 24.0),
        "h/fanout+jwt": figures(28000, 2.1, 10.0, 24.8),
        "i/direct": figures(50000, 0.019),
        "i/fanout": figures(7000, 0.127, 20.0, 35.0),
        "i1/fanout": figures(21000, 0.044, 8.0, 15.0),
    }
    return {"repeats": 3, "seconds": 5, "medians": medians,
            "idle": {"fanout": {"rss_before_kib": 16000, "rss_after_kib": 18048,
                                "kib_per_connection": 2.048},
                     "fanout TLS": {"rss_before_kib": 20000, "rss_after_kib": 30240,
                                    "kib_per_connection": 10.24}}}


INFO = {"date": "2026-11-26 15:00 UTC",
        "machine": {"cpu": "test CPU", "cores": 2, "fanout": "abc1234", "profile": "dist"}}


class ReportTest(unittest.TestCase):
    def setUp(self):
        self.text = bench.report(results(), INFO)

    def test_the_first_line_names_the_commit_and_the_profile(self):
        self.assertEqual(self.text.splitlines()[0],
                         "fanout bench, 2026-11-26 15:00 UTC: test CPU, 2 cores, 3 repeats of 5 s,"
                         " medians; fanout abc1234, cargo profile dist.")

    def test_ratios_and_split(self):
        self.assertIn("| fanout | 60,000 | 0.90 | 1.80 | 15.0 | 4.0 | 11.0 | 16.0 |  |", self.text)
        self.assertIn("| nginx | 50,000 | 0.90 | 1.80 | 15.0 | 3.0 | 12.0 | 16.0 | 1.20 |", self.text)
        self.assertIn("Cached over uncached (fanout): **3.30×**", self.text)

    def test_targets(self):
        self.assertIn("| proxy req/s over nginx | 1.20× | ≥ 1.1× | yes |", self.text)
        self.assertIn("| aggregate req/s over nginx+Lua | 1.20× | ≥ 1.5× | **no** |", self.text)
        self.assertIn("| cached over uncached aggregate | 3.30× | ≥ 3× | yes |", self.text)
        self.assertIn("| idle added latency (p50) | 108 µs | < 30 µs | **no** |", self.text)
        self.assertIn("| idle added latency (p50), all on one core | 25 µs | < 30 µs | yes |", self.text)
        self.assertIn("| resident memory per idle connection | 2.0 KiB | < 16 KiB | yes |", self.text)

    def test_idle_tls_connections_get_a_row_and_leave_the_target_to_plain_ones(self):
        self.assertIn("| fanout TLS | 19.5 | 29.5 | 10.2 |", self.text)
        self.assertEqual(self.text.count("| resident memory per idle connection |"), 1)

    def test_ceiling_is_peer_cpu_over_fanout_kernel(self):
        # nginx 15.0 / fanout kernel 11.0; nginx+Lua 40.0 / 24.0
        self.assertIn("proxy over nginx 1.36×, aggregate over nginx+Lua 1.67×.", self.text)

    def test_logged_runs_follow_and_compare_with_fanout_logged(self):
        proxy = self.text.split("(a) proxy")[1].split("(b) aggregate")[0]
        rows = [line.split(" | ")[0] for line in proxy.splitlines() if line.startswith("| ")][2:]
        self.assertEqual(rows, ["| fanout", "| nginx", "| fanout+log", "| nginx+log"])
        # 55,000 / 40,000
        self.assertIn("| nginx+log | 40,000 | 1.00 | 2.00 | 20.0 | 5.0 | 15.0 | 16.0 | 1.38 |", proxy)

    def test_production_pair(self):
        pair = self.text.split("The production pair")[1].split("**Targets**")[0]
        self.assertIn("`access_log FILE;`", pair)
        self.assertIn("| (a) fanout | 15.0 | 16.5 | 1.10 | 55,000 | 1.000 | 250 |", pair)
        self.assertIn("| (a) nginx | 15.0 | 20.0 | 1.33 | 40,000 | 1.000 | 96 |", pair)
        self.assertIn("| (b) fanout | 32.0 | 36.0 | 1.12 | 28,000 | 0.950 | 300 |", pair)
        self.assertIn("| (b) nginx+lua | 40.0 | 48.0 | 1.20 | 20,000 | 1.000 | 91 |", pair)

    def test_production_targets_compare_cpu_per_request(self):
        self.assertIn("| proxy CPU per request, access log on over off | 1.10× | ≤ 1.10× | yes |", self.text)
        self.assertIn("| aggregate CPU per request, access log on over off | 1.12× | ≤ 1.10× | **no** |",
                      self.text)
        # nginx 20.0 / fanout 16.5; nginx+Lua 48.0 / fanout 36.0
        self.assertIn("| proxy with the access log on: nginx's CPU per request over fanout's | 1.21× | ≥ 1.0×"
                      " | yes |", self.text)
        self.assertIn("| aggregate with the access log on: nginx+Lua's CPU per request over fanout's"
                      " | 1.33× | ≥ 1.2× | yes |", self.text)

    def test_buffered_nginx_log_is_named(self):
        bench.NGINX_LOG_BUFFER = "64k"
        try:
            text = bench.report(results(), INFO)
        finally:
            bench.NGINX_LOG_BUFFER = None
        self.assertIn("`access_log FILE combined buffer=64k flush=1s;`", text)

    def test_upstream_connections_leave_out_logged_runs(self):
        medians = results()["medians"]
        for key in ("a/fanout", "a/nginx", "a/fanout+log"):
            medians[key]["upstream_connections"] = {"most_open": 64, "distinct": 64}
        text = bench.report({**results(), "medians": medians}, INFO)
        upstream = text.split("upstream connections during (a)")[1].split("\n\n**")[0]
        self.assertIn("| fanout | 64 | 64 |", upstream)
        self.assertNotIn("+log", upstream)

    def test_logged_runs_sit_beside_their_pair(self):
        runs = [(s, n) for s, n, _, _ in bench.scenarios({"a", "b", "c"})]
        self.assertEqual(runs, [("a", "nginx+log"), ("a", "fanout+log"), ("a", "fanout"), ("a", "nginx"),
                                ("a", "haproxy"), ("b", "nginx+lua+log"), ("b", "fanout+log"),
                                ("b", "fanout"), ("c", "fanout"), ("b", "nginx+lua"), ("b", "fastapi")])
        urls = {n: u for s, n, u, _ in bench.scenarios({"b"})}
        self.assertEqual(urls["nginx+lua+log"], "http://127.0.0.1:9301/agg")
        self.assertEqual(urls["fanout+log"], "http://127.0.0.1:9300/agg")

    def test_write_aggregate_compares_req_per_cpu(self):
        write = self.text.split("(g) aggregate of 3 write calls")[1].split("\n\n**")[0]
        rows = [line.split(" | ")[0] for line in write.splitlines() if line.startswith("| ")][2:]
        self.assertEqual(rows, ["| fanout", "| nginx+lua"])
        # 21,000 / 15,000 req/s; 10⁶ / 40 µs and 10⁶ / 60 µs per request
        self.assertIn("| nginx+lua | 15,000 | 3.90 | 7.80 | 60.0 | 20.0 | 40.0 | 16.0 | 1.40 |", write)
        self.assertIn("req/s per CPU: fanout 25,000, nginx+lua 16,667: fanout **1.50×**", write)
        self.assertIn("| write aggregate req/s per CPU over nginx+Lua | 1.50× | ≥ 1.3× | yes |", self.text)

    def test_write_aggregate_posts_the_checkout_script(self):
        runs = bench.scenarios({"g"})
        self.assertEqual([(s, n, u) for s, n, u, _ in runs],
                         [("g", "nginx+lua", "http://127.0.0.1:9301/write"),
                          ("g", "fanout", "http://127.0.0.1:9300/write")])
        script = bench.SCRIPTS["g"].read_text()
        self.assertIn('wrk.method = "POST"', script)
        self.assertIn("application/json", script)

    def test_token_scenario_compares_cpu_with_and_without_the_token(self):
        h = self.text.split("(h) aggregate of 3 backends behind an ES256 token")[1].split("\n\n**")[0]
        rows = [line.split(" | ")[0] for line in h.splitlines() if line.startswith("| ")][2:]
        self.assertEqual(rows, ["| fanout", "| fanout+jwt"])
        # Both rows are fanout: no req/s ratio column.
        self.assertIn("| fanout+jwt | 28,000 | 2.10 | 4.20 | 34.8 | 10.0 | 24.8 | 16.0 |  |", h)
        # 34.8 / 32.0
        self.assertIn("CPU per request with the token over without: 34.8 µs over 32.0 µs, **1.09×**"
                      " (user 10.0 over 8.0 µs)", h)
        self.assertIn("No peer: nginx+Lua would verify with lua-resty-jwt, which is not a Debian package.", h)
        self.assertIn("| aggregate CPU per request, ES256 token over none | 1.09× | ≤ 1.15× | yes |", self.text)

    def test_token_target_fails_above_15_percent(self):
        medians = results()["medians"]
        medians["h/fanout+jwt"] = figures(25000, 2.3, 13.0, 24.0)  # 37 over 32
        text = bench.report({**results(), "medians": medians}, INFO)
        self.assertIn("| aggregate CPU per request, ES256 token over none | 1.16× | ≤ 1.15× | **no** |", text)

    def test_token_runs_send_the_token_to_the_protected_route_back_to_back(self):
        runs = bench.scenarios({"h"})
        self.assertEqual([(s, n, u) for s, n, u, _ in runs],
                         [("h", "fanout", "http://127.0.0.1:9300/agg"),
                          ("h", "fanout+jwt", "http://127.0.0.1:9300/agg-jwt")])
        self.assertEqual(bench.base("fanout+jwt"), "fanout")
        self.assertEqual(bench.base("nginx+lua+log"), "nginx+lua")
        bench.TOKEN = "eyJ.x.y"
        try:
            self.assertEqual(bench.run_headers("fanout+jwt"), ["Authorization: Bearer eyJ.x.y"])
            self.assertEqual(bench.run_headers("fanout"), [])
        finally:
            bench.TOKEN = None

    def test_one_core_latency_reuses_the_direct_call(self):
        one_core = self.text.split("idle added latency on one core")[1]
        self.assertIn("| direct | 50,000 | 0.019 |", one_core)
        self.assertIn("| fanout | 21,000 | 0.044 | 0.088 | 25 | 50 |", one_core)

    def test_the_idle_runs_measure_direct_once(self):
        runs = [(s, n) for s, n, _, _ in bench.scenarios({"i"})]
        self.assertEqual(runs.count(("i", "direct")), 1)
        self.assertNotIn(("i1", "direct"), runs)
        self.assertEqual({n for s, n in runs if s == "i1"}, {"fanout", "nginx", "haproxy"})


def rate_limit_results(cluster_user=10.5, cluster_kernel=27.0):
    """(r): the local limiter's run, then the cluster-scoped one with Redis's figures."""
    local = {**figures(28000, 2.0, 8.5, 24.0), "redis_cpu_us_per_req": 0.0, "redis_calls_per_req": 0.0}
    cluster = {**figures(25000, 2.3, cluster_user, cluster_kernel), "redis_cpu_us_per_req": 6.2,
               "redis_calls_per_req": 1.0}
    one_local = {**figures(4000, 0.240, 20.0, 40.0), "redis_cpu_us_per_req": 0.0, "redis_calls_per_req": 0.0}
    one_cluster = {**figures(3500, 0.275, 23.0, 44.0), "redis_cpu_us_per_req": 9.0, "redis_calls_per_req": 1.0}
    medians = {"r/fanout": local, "r/fanout+cluster": cluster, "r1/fanout": one_local,
               "r1/fanout+cluster": one_cluster}
    return {"repeats": 3, "seconds": 5, "medians": medians, "idle": {}}


class RateLimitReportTest(unittest.TestCase):
    def setUp(self):
        self.text = bench.report(rate_limit_results(), INFO)

    def test_both_runs_with_redis_beside_them(self):
        r = self.text.split("(r) aggregate of 3 backends behind a rate limit")[1].split("\n\n**")[0]
        rows = [line.split(" | ")[0] for line in r.splitlines() if line.startswith("| ")][2:]
        self.assertEqual(rows, ["| fanout", "| fanout+cluster"])
        self.assertIn("| fanout | 28,000 | 2.00 | 4.00 | 32.5 | 8.5 | 24.0 | 0.0 | 0.00 |", r)
        self.assertIn("| fanout+cluster | 25,000 | 2.30 | 4.60 | 37.5 | 10.5 | 27.0 | 6.2 | 1.00 |", r)

    def test_what_the_cluster_scope_adds(self):
        # 37.5 - 32.5 µs of CPU (user 10.5 - 8.5, kernel 27.0 - 24.0), p50 2.3 - 2.0 ms
        self.assertIn("Cluster scope over local: fanout **+5.0 µs** of CPU per request (user +2.0,"
                      " kernel +3.0), p50 **+300 µs**; Redis 6.2 µs of CPU per request.", self.text)
        self.assertIn("| cluster rate limit: fanout CPU added per request | 5.0 µs | < 15 µs | yes |", self.text)

    def test_one_connection_shows_the_latency_added(self):
        one = self.text.split("(r) the same on 1 connection")[1].split("\n\n**")[0]
        self.assertIn("| fanout+cluster | 3,500 | 0.28 | 0.55 | 67.0 | 23.0 | 44.0 | 9.0 | 1.00 |", one)
        # 0.275 - 0.240 ms
        self.assertIn("p50 **+35 µs**", one)
        self.assertIn("| cluster rate limit: p50 added on 1 connection | 35 µs | (reported) | – |", self.text)
        # The CPU target is the 64-connection run's.
        self.assertIn("| cluster rate limit: fanout CPU added per request | 5.0 µs | < 15 µs | yes |", self.text)

    def test_the_target_counts_the_gateway_not_redis(self):
        text = bench.report(rate_limit_results(cluster_user=16.0, cluster_kernel=32.0), INFO)
        # 48.0 - 32.5: over 15 µs; Redis's 6.2 µs is not in it.
        self.assertIn("| cluster rate limit: fanout CPU added per request | 15.5 µs | < 15 µs | **no** |", text)

    def test_the_runs_go_to_the_two_routes_back_to_back(self):
        runs = bench.scenarios({"r"})
        self.assertEqual([(s, n, u, c) for s, n, u, c in runs],
                         [("r", "fanout", "http://127.0.0.1:9300/agg-local", 64),
                          ("r", "fanout+cluster", "http://127.0.0.1:9300/agg-cluster", 64),
                          ("r1", "fanout", "http://127.0.0.1:9300/agg-local", 1),
                          ("r1", "fanout+cluster", "http://127.0.0.1:9300/agg-cluster", 1)])
        self.assertEqual(bench.base("fanout+cluster"), "fanout")
        self.assertEqual(bench.CONFIGS["r"].name, "fanout-cluster.toml")
        config = bench.CONFIGS["r"].read_text()
        self.assertIn(f'redis = "redis://127.0.0.1:{bench.REDIS_PORT}/0"', config)
        self.assertIn('path = "/agg-local"\nrate_limit = { rate = "100000/s", key = "ip", scope = "local" }', config)
        self.assertIn('path = "/agg-cluster"\nrate_limit = { rate = "100000/s", key = "ip", scope = "cluster" }',
                      config)

    def test_a_run_that_did_not_reach_redis_is_not_a_measure(self):
        results = rate_limit_results()
        del results["medians"]["r1/fanout"], results["medians"]["r1/fanout+cluster"]
        results["medians"]["r/fanout+cluster"]["redis_calls_per_req"] = 0.4
        text = bench.report(results, INFO)
        self.assertIn("**Not measured**: the cluster-scoped run made 0.40 EVALSHA calls per request, not 1", text)
        self.assertNotIn("Cluster scope over local", text)
        self.assertNotIn("cluster rate limit: fanout CPU added", text)

    def test_no_section_without_the_runs(self):
        self.assertNotIn("(r) aggregate", bench.report(results(), INFO))
        self.assertNotIn("cluster rate limit", bench.report(results(), INFO))


def tls_results():
    """(t): the proxy over HTTP/1.1 and the handshakes, fanout above nginx on the first
    and below on the second; the HTTP/2 proxy with h2load's mean in place of p50."""
    h2 = {"rps": 40000, "mean_ms": 1.5, "requests": 200000, "user_us_per_req": 10.0,
          "kernel_us_per_req": 10.0, "cpu_us_per_req": 20.0}
    medians = {
        "t1p/nginx+log": logged(30000, 2.0, 12.0, 13.0, 1.0, 96),
        "t1p/fanout+log": logged(32000, 1.9, 10.0, 12.0, 1.0, 250),
        "t1p/fanout": figures(36000, 1.8, 8.0, 12.0),
        "t1p/nginx": figures(33000, 1.9, 10.0, 12.0),
        "t2p/fanout": h2,
        "t2p/nginx": {**h2, "rps": 38000, "mean_ms": 1.6, "user_us_per_req": 12.0, "cpu_us_per_req": 22.0},
        "t2b/fanout": {**h2, "rps": 20000, "cpu_us_per_req": 45.0},
        "th/fanout": figures(4000, 15.0, 150.0, 100.0),
        "th/nginx": figures(4200, 14.0, 120.0, 80.0),
    }
    negotiated = {"fanout": ["TLSv1.3", "TLS_AES_256_GCM_SHA384", "X25519", "h2"],
                  "nginx": ["TLSv1.3", "TLS_AES_256_GCM_SHA384", "X25519", "h2"]}
    return {"repeats": 3, "seconds": 5, "medians": medians, "idle": {}, "tls": negotiated}


class TlsReportTest(unittest.TestCase):
    def setUp(self):
        self.text = bench.report(tls_results(), INFO)

    def test_requests_per_cpu_second_and_fanout_over_the_peer(self):
        h1 = self.text.split("(t) TLS 1.3, proxy, HTTP/1.1 keep-alive")[1].split("\n\n**")[0]
        rows = [line.split(" | ")[0] for line in h1.splitlines() if line.startswith("| ")][2:]
        self.assertEqual(rows, ["| fanout", "| nginx", "| fanout+log", "| nginx+log"])
        # 10⁶ / 20 µs = 50,000 per CPU-second for fanout, 10⁶ / 22 µs = 45,455 for nginx
        self.assertIn("| nginx | 33,000 | 1.90 | 3.80 | 22.0 | 10.0 | 12.0 | 45,455 | 1.10 |", h1)
        # logged: 10⁶ / 22 over 10⁶ / 25, compared with fanout's logged run
        self.assertIn("| nginx+log | 30,000 | 2.00 | 4.00 | 25.0 | 12.0 | 13.0 | 40,000 | 1.14 |", h1)

    def test_http2_rows_show_the_mean_and_no_percentiles(self):
        h2 = self.text.split("(t) TLS 1.3, proxy, HTTP/2 (h2load)")[1].split("\n\n**")[0]
        self.assertIn("| system | req/s | mean ms | p99 ms |", h2)
        self.assertIn("| nginx | 38,000 | 1.60 | – | 22.0 | 12.0 | 10.0 | 45,455 | 1.10 |", h2)

    def test_handshakes_are_counted_per_cpu_second(self):
        th = self.text.split("(t) TLS 1.3, new handshakes")[1].split("\n\n**")[0]
        self.assertIn("| system | handshakes/s |", th)
        # 10⁶ / 250 µs = 4,000 against 10⁶ / 200 µs = 5,000: 0.80
        self.assertIn("| nginx | 4,200 | 14.00 | 28.00 | 200.0 | 120.0 | 80.0 | 5,000 | 0.80 |", th)

    def test_targets_at_least_nginx_per_cpu_each(self):
        self.assertIn("| TLS proxy, HTTP/1.1: per CPU over nginx | 1.10× | ≥ 1.0× | yes |", self.text)
        self.assertIn("| TLS proxy, HTTP/1.1, access log on: per CPU over nginx | 1.14× | ≥ 1.0× | yes |",
                      self.text)
        self.assertIn("| TLS new handshakes: per CPU over nginx | 0.80× | ≥ 1.0× | **no** |", self.text)
        self.assertNotIn("TLS aggregate, HTTP/1.1", self.text)
        self.assertNotIn("TLS aggregate, HTTP/2", self.text.split("**Targets**")[1])

    def test_http2_aggregate_has_no_peer_and_says_why(self):
        t2b = self.text.split("(t) TLS 1.3, aggregate of 3 backends, HTTP/2")[1].split("\n\n**")[0]
        rows = [line.split(" | ")[0] for line in t2b.splitlines() if line.startswith("| ")][2:]
        self.assertEqual(rows, ["| fanout"])
        self.assertIn("No peer: lua-nginx-module refuses `capture_multi` in an HTTP/2 request", self.text)
        runs = [(s, n) for s, n, _, _ in bench.scenarios({"t"}) if s == "t2b"]
        self.assertEqual(runs, [("t2b", "fanout+log"), ("t2b", "fanout")])

    def test_negotiated_suites_are_named(self):
        self.assertIn("Negotiated over HTTP/2 (h2load): fanout TLSv1.3 TLS_AES_256_GCM_SHA384 X25519 h2;"
                      " nginx TLSv1.3 TLS_AES_256_GCM_SHA384 X25519 h2", self.text)

    def test_runs_over_tls_to_the_certificate_name(self):
        runs = [(s, n, u) for s, n, u, _ in bench.scenarios({"t"})]
        self.assertEqual(runs[:4], [("t1p", "nginx+log", "https://localhost:9311/p/item"),
                                    ("t1p", "fanout+log", "https://localhost:9310/p/item"),
                                    ("t1p", "fanout", "https://localhost:9310/p/item"),
                                    ("t1p", "nginx", "https://localhost:9311/p/item")])
        self.assertIn(("t1b", "nginx+lua", "https://localhost:9311/agg"), runs)
        self.assertEqual({s for s, _, _ in runs}, {"t1p", "t1b", "t2p", "t2b", "th"})
        self.assertEqual(bench.run_headers("fanout", "t1p"), [])
        # The handshake runs open 256 new connections per round.
        self.assertEqual({c for s, _, _, c in bench.scenarios({"t"}) if s == "th"}, {256})

    def test_h2load_output_is_read(self):
        out = """finished in 5.00s, 24380.60 req/s, 3.37MB/s
requests: 121903 total, 121903 started, 121903 done, 121900 succeeded, 3 failed, 0 errored, 0 timeout
status codes: 121900 2xx, 0 3xx, 0 4xx, 0 5xx
TLS Protocol: TLSv1.3
Cipher: TLS_AES_256_GCM_SHA384
Server Temp Key: X25519 253 bits
Application protocol: h2
                     min         max         mean         sd        +/- sd
time for request:      210us     12.34ms      2.61ms       1.1ms    70.00%
"""
        f = bench.parse_h2load(out)
        self.assertEqual((f["requests"], f["rps"], f["errors"]), (121900, 24380.60, 3))
        self.assertAlmostEqual(f["mean_ms"], 2.61)
        self.assertEqual((f["cipher"], f["key_exchange"], f["alpn"]), ("TLS_AES_256_GCM_SHA384", "X25519", "h2"))

    def test_h2load_rounds_under_a_second_are_read(self):
        out = """finished in 125.32ms, 2042.77 req/s, 500KB/s
requests: 256 total, 256 started, 256 done, 256 succeeded, 0 failed, 0 errored, 0 timeout
status codes: 256 2xx, 0 3xx, 0 4xx, 0 5xx
time for request:      1.1ms     90.2ms     40.5ms      20ms    60.00%
"""
        f = bench.parse_h2load(out)
        self.assertEqual((f["requests"], f["rps"]), (256, 2042.77))


def cpu(value):
    return {"cpu_us_per_req": value, "requests": 1000, "warmup_requests": 100}


class TlsPairsTest(unittest.TestCase):
    """(t) compares fanout with its peer run by run: blocks, their order, and the median
    of the pairs in place of the medians' ratio."""

    def test_fanout_and_its_peer_with_the_log_alike_are_one_block(self):
        got = [[(s, n) for s, n, _, _ in block] for block in bench.blocks(bench.scenarios({"t"}))]
        self.assertEqual(got[:2], [[("t1p", "nginx+log"), ("t1p", "fanout+log")],
                                   [("t1p", "fanout"), ("t1p", "nginx")]])
        # No peer over HTTP/2 for the aggregate: its runs stay on their own.
        self.assertIn([("t2b", "fanout+log")], got)
        self.assertIn([("t2b", "fanout")], got)
        # Outside (t), every run is a block of its own.
        self.assertTrue(all(len(b) == 1 for b in bench.blocks(bench.scenarios({"a", "b"}))))

    def test_a_block_measures_by_turns_and_warms_once(self):
        calls, stopped = [], []

        class Proc:
            def __init__(self, name):
                self.name, self.access_log = name, None

            def stop(self):
                stopped.append(self.name)

        saved = bench.start_system, bench.measure
        bench.start_system = lambda name, *a, **k: Proc(name)
        bench.measure = lambda proc, url, conns, seconds, warmup, **k: (
            calls.append((proc.name, warmup)) or cpu(20.0))
        try:
            block = [("t1p", "fanout", "u1", 64), ("t1p", "nginx", "u2", 64)]
            args = type("Args", (), {"seconds": 5, "warmup": 2})()
            out = bench.alternating_block(block, None, args)
        finally:
            bench.start_system, bench.measure = saved
        self.assertEqual(calls, [("fanout", 2), ("nginx", 2), ("nginx", 0), ("fanout", 0),
                                 ("fanout", 0), ("nginx", 0)])
        self.assertEqual(sorted(stopped), ["fanout", "nginx"])
        self.assertEqual({k: len(v) for k, v in out.items()}, {"t1p/fanout": 3, "t1p/nginx": 3})

    def test_the_ratio_is_the_median_of_the_pairs(self):
        results = tls_results()
        # Pairs 22/20, 27/30, 24/20: 1.10, 0.90, 1.20, median 1.10; the medians' ratio
        # (24 over 20) would say 1.20.
        results["runs"] = {"t1p/fanout": [cpu(20.0), cpu(30.0), cpu(20.0)],
                           "t1p/nginx": [cpu(22.0), cpu(27.0), cpu(24.0)]}
        results["medians"]["t1p/fanout"] = figures(36000, 1.8, 8.0, 12.0)
        results["medians"]["t1p/nginx"] = figures(33000, 1.9, 12.0, 12.0)
        text = bench.report(results, INFO)
        self.assertIn("| TLS proxy, HTTP/1.1: per CPU over nginx | 1.10× | ≥ 1.0× | yes |", text)
        h1 = text.split("(t) TLS 1.3, proxy, HTTP/1.1 keep-alive")[1].split("\n\n**")[0]
        self.assertIn("| nginx | 33,000 | 1.90 | 3.80 | 24.0 | 12.0 | 12.0 | 41,667 | 1.10 |", h1)
        self.assertIn("fanout × per CPU, round by round (each run against nginx's beside it):"
                      " log off 1.10, 0.90, 1.20", text)
        # The logged rows have no runs here: their ratio is the medians' (25 over 22).
        self.assertIn("| TLS proxy, HTTP/1.1, access log on: per CPU over nginx | 1.14× |", text)

    def test_a_median_below_one_misses_the_target(self):
        results = tls_results()
        results["runs"] = {"t2p/fanout": [cpu(21.0), cpu(20.0), cpu(22.0)],
                           "t2p/nginx": [cpu(20.0), cpu(22.0), cpu(21.0)]}
        text = bench.report(results, INFO)
        self.assertIn("| TLS proxy, HTTP/2: per CPU over nginx | 0.95× | ≥ 1.0× | **no** |", text)

    def test_runs_that_do_not_pair_up_are_not_paired(self):
        runs = {"t1p/fanout": [cpu(20.0)], "t1p/nginx": [cpu(22.0), cpu(23.0)]}
        self.assertEqual(bench.pair_ratios(runs, "t1p", "nginx"), [])


if __name__ == "__main__":
    unittest.main()
