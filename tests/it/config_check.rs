//! Config errors: every problem reported at once, each with its place; texts pinned.
//! Also `fanout check` as a user runs it.

use fanout::config::{Env, compile};
use std::process::Command;

fn problems(toml: &str) -> Vec<String> {
    problems_with(toml, &Env::default())
}

fn problems_with(toml: &str, env: &Env) -> Vec<String> {
    match compile(toml, env) {
        Ok(_) => Vec::new(),
        Err(e) => e.0.iter().map(ToString::to_string).collect(),
    }
}

const UPSTREAMS: &str = r#"
[upstreams.users]
url = "http://127.0.0.1:9001"
[upstreams.orders]
url = "http://127.0.0.1:9002"
"#;

#[test]
fn every_problem_is_reported_at_once_with_its_place() {
    let toml = format!(
        r#"{UPSTREAMS}
[upstreams.bad]
url = "ftp://example.com"
timeout = "2 parsecs"
max_response = "lots"

[[routes]]
path = "/a/{{id}}"
timeout = "soon"
  [[routes.backends]]
  name = "user"
  upstream = "users"
  path = "/users/{{uid}}"
  [[routes.backends]]
  name = "user"
  upstream = "ordrs"
  path = "/orders"

[[routes]]
path = "/a/{{id}}"
  [[routes.backends]]
  name = "x"
  upstream = "users"
  path = "/x"

[[routes]]
path = "/both"
proxy = {{ upstream = "users", path = "/" }}
  [[routes.backends]]
  name = "x"
  upstream = "users"
  path = "/x"

[[routes]]
path = "/neither"
"#
    );
    assert_eq!(
        problems(&toml),
        [
            "upstreams.bad.url: \"ftp://example.com\" is not an http(s) base URL; write it as \"http://host:port\" or \"https://host/prefix\", without query",
            "upstreams.bad.timeout: invalid duration \"2 parsecs\"; write a number and a unit, such as \"250ms\", \"2s\" or \"5m\"",
            "upstreams.bad.max_response: invalid size \"lots\"; write a number and a unit, such as \"64KiB\" or \"10MiB\"",
            "routes[0].timeout: invalid duration \"soon\"; write a number and a unit, such as \"250ms\", \"2s\" or \"5m\"",
            "routes[0].backends[0].path: {uid} is not a parameter of the route path; route parameters: id",
            "routes[0].backends[1].upstream: no upstream \"ordrs\"; known: bad, orders, users",
            "routes[0].backends[1].name: duplicate backend name \"user\" in this route; names are keys of the merged body and must be unique",
            "routes[1].path: duplicate route: GET /a/{id} is already declared; merge the two routes or change the path",
            "routes[2]: has both `proxy` and `backends`; a route either proxies to one upstream or aggregates backends",
            "routes[3]: has neither `backends` nor `proxy`; add [[routes.backends]] or proxy = { upstream = \"...\", path = \"/{rest}\" }",
        ]
    );
}

#[test]
fn value_limits_are_at_least_one() {
    let toml = "[server]\nmax_body_values = 0\n\
                [upstreams.users]\nurl = \"http://127.0.0.1:9001\"\nmax_values = 0\n";
    assert_eq!(
        problems(toml),
        [
            "server.max_body_values: must be at least 1; leave it out for the default of 100000",
            "upstreams.users.max_values: must be at least 1; leave it out for the default of 1000000",
        ]
    );
}

#[test]
fn unknown_keys_are_errors_in_every_section() {
    let toml = format!(
        r#"colour = "blue"
[server]
listn = "0.0.0.0:1"
{UPSTREAMS}
[upstreams.more]
url = "http://h"
timout = "1s"
[[routes]]
path = "/r"
  [[routes.backends]]
  name = "a"
  upstream = "users"
  path = "/"
  requird = true
"#
    );
    assert_eq!(
        problems(&toml),
        [
            "colour: unknown key; expected one of: server, cache, access_log, tracing, cluster, jobs, auth, upstreams, routes",
            "server.listn: unknown key `listn`, expected one of `listen`, `request_timeout`, `header_read_timeout`, `keepalive_timeout`, `send_timeout`, `shutdown_grace`, `max_body`, `max_body_values`, `health_path`, `trusted_proxies`, `workers`, `compression`, `compression_min_size`, `cors`, `max_connections`, `admin_listen`, `admin_token`, `tls`, `http2`, `redirect_http`",
            "upstreams.more.timout: unknown key `timout`, expected one of `url`, `timeout`, `connect_timeout`, `pool_idle_per_host`, `pool_idle_timeout`, `headers`, `max_response`, `max_depth`, `max_values`, `max_in_flight`, `queue_timeout`, `rate_limit`, `retries`, `hedge_after`, `circuit_breaker`, `health_check`, `tls`, `h2c`",
            "routes[0].backends[0].requird: unknown key `requird`, expected one of `name`, `upstream`, `path`, `required`, `on_error`, `timeout`, `default`, `merge`, `forward_body`, `cache_ttl`, `stale_while_revalidate`, `stale_if_error`, `cache_ignore_upstream`, `cache_scope`, `extract`, `select`, `omit`, `rename`, `for_each`, `concurrency`, `max_items`, `for_each_fail`, `method`, `body`, `idempotent`, `headers`, `when`, `upstreams`, `sticky`, `mirror`",
        ]
    );
}

#[test]
fn server_and_cors_values_are_checked() {
    let toml = format!(
        r#"[server]
listen = "localhost"
admin_listen = "0.0.0.0:9901"
request_timeout = "0s"
send_timeout = "0s"
health_path = "health"
workers = 0
compression_min_size = "big"
[server.cors]
allow_origins = ["*", "https://dash.example.com/"]
allow_credentials = true
allow_methods = ["FETCH"]
{UPSTREAMS}
[[routes]]
path = "/r"
methods = []
forward_headers = ["authorization", "Host", "bad header"]
  [[routes.backends]]
  name = "1bad"
  upstream = "users"
  path = "/"
"#
    );
    assert_eq!(
        problems(&toml),
        [
            "server.listen: \"localhost\" is not an address; write IP:PORT, such as \"0.0.0.0:8080\"",
            "server.health_path: \"health\" must start with \"/\"",
            "server.workers: must be at least 1; leave it out to use every core",
            "server.request_timeout: duration \"0s\" is zero; use a positive duration such as \"250ms\" or \"2s\"",
            "server.send_timeout: duration \"0s\" is zero; use a positive duration such as \"250ms\" or \"2s\"",
            "server.compression_min_size: invalid size \"big\"; write a number and a unit, such as \"64KiB\" or \"10MiB\"",
            "server.cors.allow_origins: \"*\" allows every origin; list it alone",
            "server.cors.allow_credentials: browsers refuse credentials with origin \"*\"; list the allowed origins instead",
            "server.cors.allow_origins[1]: \"https://dash.example.com/\" is not an origin; write scheme://host[:port] with no path, such as \"https://dash.example.com\"",
            "server.cors.allow_methods[0]: unknown method \"FETCH\"; use one of: GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS",
            "server.admin_token: is required when the admin listener is not on loopback (0.0.0.0:9901): anyone who reaches it could reload the config",
            "routes[0].methods: is empty; list at least one method, such as [\"GET\"]",
            "routes[0].forward_headers[1]: \"Host\" describes the connection, not the request, and cannot be forwarded",
            "routes[0].forward_headers[2]: \"bad header\" is not a valid header name",
            "routes[0].backends[0].name: \"1bad\" is not a backend name; use letters, digits, _ and -, starting with a letter",
        ]
    );
}

#[test]
fn templates_and_routes_are_checked() {
    let toml = format!(
        r#"{UPSTREAMS}
[[routes]]
path = "/r/{{id}}"
errors_field = "a"
  [[routes.backends]]
  name = "a"
  upstream = "users"
  path = "users/{{id}}"
  [[routes.backends]]
  name = "b"
  upstream = "users"
  path = "/u/{{user.city}}"
  [[routes.backends]]
  name = "c"
  upstream = "users"
  path = "/u"
  merge = "root"
  default = [1]
  forward_body = true
[[routes]]
path = "/s/{{other}}"
methods = ["POST"]
max_body = "huge"
proxy = {{ upstream = "files", path = "/{{rest}}", idle_timeout = "never" }}
[[routes]]
path = "no-slash"
proxy = {{ upstream = "users" }}
"#
    );
    assert_eq!(
        problems(&toml),
        [
            "routes[0].backends[2].forward_body: the route answers only GET/HEAD, which carry no body; add POST, PUT, PATCH or DELETE to methods",
            "routes[0].backends[0].path: \"users/{id}\" must start with \"/\"",
            "routes[0].backends[1].path: {user.city}: no backend \"user\" in this route; write {BACKEND.path} with a backend of this route (a, b, c), or {query.NAME} or {header.NAME}",
            "routes[0].backends[2].default: a backend with merge = \"root\" spreads an object's fields: its default must be a table, such as {}",
            "routes[0].errors_field: \"a\" is also a backend name; pick another key, such as \"_errors\"",
            "routes[1].max_body: invalid size \"huge\"; write a number and a unit, such as \"64KiB\" or \"10MiB\"",
            "routes[1].proxy.upstream: no upstream \"files\"; known: orders, users",
            "routes[1].proxy.idle_timeout: invalid duration \"never\"; write a number and a unit, such as \"250ms\", \"2s\" or \"5m\"",
            "routes[1].proxy.path: {rest} is not a parameter of the route path; route parameters: other",
            "routes[2].path: \"no-slash\" must start with \"/\"",
        ]
    );
}

#[test]
fn a_fragment_anywhere_in_a_template_is_refused() {
    // Found by fuzz/fuzz_targets/template.rs: only a `#` after the last placeholder was
    // caught, so `/u#x/{id}` loaded and every call lost the path after the `#`.
    let toml = format!(
        r#"{UPSTREAMS}
[[routes]]
path = "/r/{{id}}"
  [[routes.backends]]
  name = "a"
  upstream = "users"
  path = "/u#x/{{id}}"
[[routes]]
path = "/p/{{*rest}}"
proxy = {{ upstream = "users", path = "/v1#/{{rest}}" }}
"#
    );
    assert_eq!(
        problems(&toml),
        [
            "routes[0].backends[0].path: \"/u#x/{id}\" must not contain a fragment (#)",
            "routes[1].proxy.path: \"/v1#/{rest}\" must not contain a fragment (#)",
        ]
    );
}

#[test]
fn dependencies_and_for_each_are_checked() {
    let toml = format!(
        r#"{UPSTREAMS}
[[routes]]
path = "/cycle"
  [[routes.backends]]
  name = "a"
  upstream = "users"
  path = "/a/{{c.id}}"
  [[routes.backends]]
  name = "b"
  upstream = "users"
  path = "/b/{{a.id}}"
  [[routes.backends]]
  name = "c"
  upstream = "users"
  path = "/c/{{b.id}}"
[[routes]]
path = "/refs/{{id}}"
  [[routes.backends]]
  name = "user"
  upstream = "users"
  path = "/u/{{user.id}}"
  [[routes.backends]]
  name = "city"
  upstream = "users"
  path = "/w/{{usr.address.city}}?whole={{user}}"
  [[routes.backends]]
  name = "stray"
  upstream = "users"
  path = "/s/{{item.id}}"
[[routes]]
path = "/each"
  [[routes.backends]]
  name = "user"
  upstream = "users"
  path = "/u"
  [[routes.backends]]
  name = "friends"
  upstream = "users"
  path = "/u/1"
  for_each = "friends.ids"
  merge = "root"
  concurrency = 0
  max_items = 0
  [[routes.backends]]
  name = "more"
  upstream = "users"
  path = "/u/{{item}}"
  for_each = "nobody.ids"
"#
    );
    assert_eq!(
        problems(&toml),
        [
            "routes[0].backends: their answers form a cycle (a → b → c → a): each waits for another's; remove one of these references",
            "routes[1].backends[0].path: reads this backend's own answer ({user.…}); read another backend's",
            "routes[1].backends[1].path: {usr.address.city}: no backend \"usr\" in this route; write {BACKEND.path} with a backend of this route (user, city, stray), or {query.NAME} or {header.NAME}",
            "routes[1].backends[2].path: {item.id}: no backend \"item\" in this route; {item} is the element of a for_each; set for_each = \"BACKEND.path\" on this backend",
            "routes[2].backends[1].for_each: \"friends.ids\" is this backend's own answer; name another backend's array",
            "routes[2].backends[1].merge: merge = \"root\" spreads an object's fields, but a for_each answer is an array; use merge = \"key\"",
            "routes[2].backends[1].path: a for_each backend calls once per element; put {item} or {item.FIELD} in the path",
            "routes[2].backends[1].concurrency: must be at least 1",
            "routes[2].backends[1].max_items: must be at least 1",
            "routes[2].backends[2].for_each: no backend \"nobody\" in this route; write \"BACKEND.path\" with one of: user, friends, more",
        ]
    );
    let bad_values = format!(
        r#"{UPSTREAMS}
[[routes]]
path = "/w"
  [[routes.backends]]
  name = "user"
  upstream = "users"
  path = "/u"
  merge = "rot"
  for_each_fail = "some"
"#
    );
    assert_eq!(
        problems(&bad_values),
        [
            "routes[0].backends[0].merge: \"rot\" is not allowed here; write \"key\" or \"root\"",
            "routes[0].backends[0].for_each_fail: \"some\" is not allowed here; write \"null\" or \"all\"",
        ]
    );
    // A whole answer is not a value.
    let whole = format!(
        r#"{UPSTREAMS}
[[routes]]
path = "/w"
  [[routes.backends]]
  name = "user"
  upstream = "users"
  path = "/u"
  [[routes.backends]]
  name = "w"
  upstream = "users"
  path = "/w?u={{user}}"
"#
    );
    assert_eq!(
        problems(&whole),
        [
            "routes[0].backends[1].path: {user} is a whole answer; name one of its fields, such as {user.id}"
        ]
    );
}

#[test]
fn cache_settings_are_checked() {
    let toml = format!(
        r#"[cache]
max_size = "a lot"
{UPSTREAMS}
[[routes]]
path = "/r"
methods = ["POST"]
cache_ttl = "1m"
  [[routes.backends]]
  name = "a"
  upstream = "users"
  path = "/"
  stale_while_revalidate = "1m"
  [[routes.backends]]
  name = "b"
  upstream = "users"
  path = "/"
  cache_ttl = "forever"
  stale_if_error = "1m"
  [[routes.backends]]
  name = "c"
  upstream = "users"
  path = "/"
  cache_ttl = "10s"
  forward_body = true
  extract = "data..items"
  select = ["ok", ""]
  rename = {{ old = "" }}
[[routes]]
path = "/p"
methods = ["POST"]
cache_ttl = "10s"
proxy = {{ upstream = "users" }}
"#
    );
    assert_eq!(
        problems(&toml),
        [
            "cache.max_size: invalid size \"a lot\"; write a number and a unit, such as \"64KiB\" or \"10MiB\"",
            "routes[0].cache_ttl: an aggregate route caches per backend: set cache_ttl in its [[routes.backends]]",
            "routes[0].backends[0].cache_ttl: is required by stale_while_revalidate and stale_if_error: they extend it",
            "routes[0].backends[1].cache_ttl: invalid duration \"forever\"; write a number and a unit, such as \"250ms\", \"2s\" or \"5m\"",
            "routes[0].backends[2].cache_ttl: a backend with forward_body is not cached: its answer depends on the body",
            "routes[0].backends[2].extract: \"data..items\" is not a dotted path; write one such as \"data.items\" or \"items.0\"",
            "routes[0].backends[2].select[1]: \"\" is not a dotted path; write one such as \"data.items\" or \"items.0\"",
            "routes[0].backends[2].rename.old: the new name is empty; write rename = { old = \"new\" }",
            "routes[1].cache_ttl: only answers to GET are cached; add GET to methods or remove cache_ttl",
        ]
    );
}

#[test]
fn rate_limits_and_trusted_proxies_are_checked() {
    let toml = format!(
        r#"[server]
trusted_proxies = ["10.0.0.0/8", "proxy.internal"]
{UPSTREAMS}
[[routes]]
path = "/a"
rate_limit = {{ rate = "many", key = "user" }}
proxy = {{ upstream = "users" }}
[[routes]]
path = "/b"
rate_limit = {{ rate = "10/s", burst = 0, kee = "ip" }}
proxy = {{ upstream = "users" }}
"#
    );
    assert_eq!(
        problems(&toml),
        [
            "routes[1].rate_limit.kee: unknown key `kee`, expected one of `rate`, `burst`, `key`, `max_keys`, `scope`",
            "server.trusted_proxies[1]: \"proxy.internal\" is not an address or CIDR; write one such as \"10.0.0.0/8\" or \"192.0.2.7\"",
            "routes[0].rate_limit.rate: invalid rate \"many\"; write a count per period, such as \"100/s\", \"600/min\" or \"1000/hour\"",
            "routes[0].rate_limit.key: unknown key \"user\"; use ip, global, header:NAME, auth:sub, auth:CLAIM or client_cert",
            "routes[1].rate_limit.burst: must be at least 1; leave it out to allow the rate's count at once",
        ]
    );
}

#[test]
fn max_keys_and_max_depth_are_checked() {
    let toml = r#"[upstreams.users]
url = "http://127.0.0.1:9001"
max_depth = 0
[upstreams.deep]
url = "http://127.0.0.1:9002"
max_depth = 129
[[routes]]
path = "/a"
rate_limit = { rate = "10/s", max_keys = 0 }
proxy = { upstream = "users" }
"#;
    assert_eq!(
        problems(toml),
        [
            "upstreams.deep.max_depth: 129 is out of range; write a nesting depth from 1 to 128",
            "upstreams.users.max_depth: 0 is out of range; write a nesting depth from 1 to 128",
            "routes[0].rate_limit.max_keys: must be at least 1; leave it out for the default of 100000",
        ]
    );
}

#[test]
fn overlapping_paths_are_errors_but_other_methods_are_not() {
    let toml = format!(
        r#"{UPSTREAMS}
[[routes]]
path = "/u/{{id}}"
methods = ["GET"]
proxy = {{ upstream = "users" }}
[[routes]]
path = "/u/{{id}}"
methods = ["POST"]
proxy = {{ upstream = "users" }}
[[routes]]
path = "/u/{{name}}"
methods = ["PUT"]
proxy = {{ upstream = "users" }}
"#
    );
    assert_eq!(
        problems(&toml),
        [
            "routes[2].path: path /u/{name} overlaps the route path /u/{id}: a request could match both; make one of them more specific"
        ]
    );
}

#[test]
fn proxy_paths_upgrades_and_header_names_are_checked() {
    let toml = format!(
        r#"{UPSTREAMS}
[[routes]]
path = "/p/%73ecret"
proxy = {{ upstream = "users", upgrade = ["websocket", "H2C", "bad token"] }}
[[routes]]
path = "/u/{{id}}//x"
proxy = {{ upstream = "users" }}
[[routes]]
path = "/a;b"
forward_headers = ["x_user"]
  [[routes.backends]]
  name = "a"
  upstream = "users"
  path = "/"
[[routes]]
path = "/ok"
forward_headers = ["x_user"]
underscores_in_headers = true
  [[routes.backends]]
  name = "a"
  upstream = "users"
  path = "/"
"#
    );
    assert_eq!(
        problems(&toml),
        [
            "routes[0].path: can never match: requests are matched on their normalized path (escapes of characters that may stand as they are decoded, other escapes in upper case, `//` merged); write \"/p/secret\"",
            "routes[0].proxy.upgrade[1]: h2c is never passed: an upstream that accepts it turns the connection into an HTTP/2 tunnel to any of its paths, past routes, limits and logs; remove it",
            "routes[0].proxy.upgrade[2]: \"bad token\" is not a protocol name; write one such as \"websocket\"",
            "routes[1].path: can never match: requests are matched on their normalized path (escapes of characters that may stand as they are decoded, other escapes in upper case, `//` merged)",
            "routes[2].path: can never match: it has a \";\" (or %3B), which is not forwarded; requests with such a path are refused (400)",
            "routes[2].forward_headers[0]: \"x_user\" has an underscore, and such headers are dropped on the way upstream; set underscores_in_headers = true on the route to pass them",
        ]
    );
}

#[test]
fn a_catch_all_and_a_route_for_its_bare_prefix_do_not_overlap() {
    for order in [["/api", "/api/{{*rest}}"], ["/api/{{*rest}}", "/api"]] {
        let toml = format!(
            "{UPSTREAMS}\n[[routes]]\npath = \"{}\"\nproxy = {{ upstream = \"users\" }}\n\
             [[routes]]\npath = \"{}\"\nproxy = {{ upstream = \"orders\" }}\n",
            order[0].replace("{{", "{").replace("}}", "}"),
            order[1].replace("{{", "{").replace("}}", "}")
        );
        assert_eq!(problems(&toml), Vec::<String>::new(), "{order:?}");
    }
}

#[test]
fn environment_variables_and_overrides() {
    let toml = r#"
[server]
listen = "127.0.0.1:1"
[upstreams.users]
url = "http://127.0.0.1:9001"
headers = { authorization = "Bearer ${USERS_TOKEN}" }
[[routes]]
path = "/r"
proxy = { upstream = "users" }
"#;
    assert_eq!(
        problems(toml),
        [
            "upstreams.users.headers.authorization: environment variable USERS_TOKEN is not set; set it, give a default with ${USERS_TOKEN:-default}, or remove ${USERS_TOKEN}"
        ]
    );
    let env = Env::from_pairs([
        ("USERS_TOKEN", "s3cret"),
        ("FANOUT__SERVER__LISTEN", "127.0.0.1:9999"),
        ("FANOUT__UPSTREAMS__USERS__TIMEOUT", "3s"),
        ("FANOUT__SERVER__WORKERS", "3"),
    ]);
    let compiled = compile(toml, &env).unwrap();
    assert_eq!(compiled.server.listen.port(), 9999);
    assert_eq!(compiled.server.workers, Some(3));
    let users = &compiled.upstreams["users"];
    assert_eq!(users.timeout, std::time::Duration::from_secs(3));
    assert_eq!(users.headers["authorization"], "Bearer s3cret");
    assert!(
        users.headers["authorization"].is_sensitive(),
        "kept out of Debug output"
    );
}

#[test]
fn broken_toml_names_the_line() {
    let p = problems("[server\nlisten = 1");
    assert_eq!(p.len(), 1);
    assert!(
        p[0].starts_with("config: not valid TOML: TOML parse error at line 1, column 8"),
        "{}",
        p[0]
    );
}

#[test]
fn the_sample_config_is_valid() {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/gateway.toml")).unwrap();
    assert_eq!(problems(&text), Vec::<String>::new());
}

/// Writes `toml` to a file of its own and returns its path.
fn config_file(toml: &str) -> std::path::PathBuf {
    let path = crate::common::scratch_dir("check").join("gateway.toml");
    std::fs::write(&path, toml).unwrap();
    path
}

fn fanout_check(toml: &str) -> std::process::Output {
    fanout_check_env(toml, &[])
}

/// `fanout check` on `toml` with exactly these environment variables.
fn fanout_check_env(toml: &str, env: &[(&str, &str)]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_fanout"))
        .args(["check", "-c"])
        .arg(config_file(toml))
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

/// The problems `fanout check` prints (exit 1), without their indent.
fn check_problems(toml: &str, env: &[(&str, &str)]) -> Vec<String> {
    let out = fanout_check_env(toml, env);
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    stderr
        .lines()
        .skip(1)
        .map(|l| l.strip_prefix("  ").unwrap_or(l).to_string())
        .collect()
}

#[test]
fn fanout_check_exits_1_and_lists_every_problem() {
    let out = fanout_check(&format!(
        "{UPSTREAMS}\n[[routes]]\npath = \"/r\"\n[[routes.backends]]\nname = \"a\"\nupstream = \"ordrs\"\npath = \"/\"\ntimeout = \"x\"\n"
    ));
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("gateway.toml: 2 problems\n"), "{stderr}");
    assert!(
        stderr.contains(
            "  routes[0].backends[0].upstream: no upstream \"ordrs\"; known: orders, users\n"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("  routes[0].backends[0].timeout: invalid duration \"x\""),
        "{stderr}"
    );
}

#[test]
fn fanout_check_prints_the_route_table() {
    let out = fanout_check(&format!(
        "{UPSTREAMS}\n[[routes]]\npath = \"/u/{{id}}\"\n[[routes.backends]]\nname = \"user\"\nupstream = \"users\"\npath = \"/users/{{id}}\"\nrequired = true\n\
         [[routes.backends]]\nname = \"friends\"\nupstream = \"users\"\npath = \"/users/{{item}}?o={{orders.0.id}}\"\nfor_each = \"user.friend_ids\"\n\
         [[routes.backends]]\nname = \"orders\"\nupstream = \"orders\"\npath = \"/orders?u={{user.id}}\"\n\
         [[routes]]\npath = \"/files/{{*rest}}\"\nmethods = [\"GET\", \"PUT\"]\nproxy = {{ upstream = \"orders\", path = \"/{{rest}}\" }}\n"
    ));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let table: Vec<&str> = stdout.lines().skip(1).collect();
    assert_eq!(
        table,
        [
            "METHODS  PATH            KIND       TARGETS",
            "GET      /u/{id}         aggregate  user (users /users/{id}, required), friends (users /users/{item}?o={orders.0.id}, for each user.friend_ids, after user and orders), orders (orders /orders?u={user.id}, after user)",
            "GET,PUT  /files/{*rest}  proxy      orders /{rest}",
        ]
    );
}

#[test]
fn fanout_check_diff_shows_what_a_reload_would_change() {
    let dir = crate::common::scratch_dir("diff");
    let old = dir.join("old.toml");
    std::fs::write(
        &old,
        format!("{UPSTREAMS}\n[[routes]]\npath = \"/a\"\nproxy = {{ upstream = \"users\" }}\n[[routes]]\npath = \"/gone\"\nproxy = {{ upstream = \"users\" }}\n"),
    )
    .unwrap();
    let new = format!(
        "{}\n[[routes]]\npath = \"/a\"\ntimeout = \"5s\"\nproxy = {{ upstream = \"users\" }}\n[[routes]]\npath = \"/b\"\nproxy = {{ upstream = \"orders\" }}\n",
        UPSTREAMS.replace("9002", "9003")
    );
    std::fs::write(dir.join("gateway.toml"), new).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_fanout"))
        .args(["check", "-c"])
        .arg(dir.join("gateway.toml"))
        .arg("--diff")
        .arg(&old)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let diff: Vec<&str> = stdout
        .lines()
        .skip_while(|l| !l.starts_with("reload from"))
        .skip(1)
        .collect();
    assert_eq!(
        diff,
        [
            "  route added: * /b",
            "  route removed: * /gone",
            "  route changed: * /a",
            "  upstream changed: orders",
            "  routes[* /a].timeout: unset → \"5s\"",
            "  upstreams.orders.url: \"http://127.0.0.1:9002\" → \"http://127.0.0.1:9003\"",
        ]
    );
}

/// The lines `fanout check --diff OLD` prints after its heading.
fn check_diff(old: &str, new: &str) -> Vec<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_fanout"))
        .args(["check", "-c"])
        .arg(config_file(new))
        .arg("--diff")
        .arg(config_file(old))
        .env_clear()
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .skip_while(|l| !l.starts_with("reload from"))
        .skip(1)
        .map(|l| l.trim_start().to_string())
        .collect()
}

#[test]
fn fanout_check_diff_shows_every_value_a_reload_changes_or_keeps() {
    let upstream = |token: &str| {
        format!(
            "[upstreams.users]\nurl = \"http://127.0.0.1:9001\"\nheaders = {{ authorization = \"Bearer {token}\" }}\n"
        )
    };
    let backend = |name: &str, path: &str, extra: &str| {
        format!(
            "[[routes.backends]]\nname = \"{name}\"\nupstream = \"users\"\npath = \"{path}\"\n{extra}"
        )
    };
    let old = format!(
        "{}[[routes]]\npath = \"/agg\"\n{}{}",
        upstream("one"),
        backend("user", "/u", ""),
        backend("orders", "/o", "timeout = \"1s\"\n")
    );
    let new = format!(
        "[server]\nlisten = \"127.0.0.1:1\"\nadmin_listen = \"127.0.0.1:9911\"\nhealth_path = \"/h\"\n\
         [cache]\nmax_size = \"1MiB\"\n[jobs]\nmax_memory = \"64MiB\"\n{}[[routes]]\npath = \"/agg\"\n{}{}",
        upstream("two"),
        backend("user", "/u", "cache_ttl = \"10s\"\n"),
        backend("friends", "/f", "")
    );
    assert_eq!(
        check_diff(&old, &new),
        [
            "route changed: GET /agg",
            "upstream changed: users",
            "routes[GET /agg].backends[user].cache_ttl: unset → \"10s\"",
            "routes[GET /agg].backends[orders]: {\"upstream\":\"users\",\"path\":\"/o\"} → unset",
            "routes[GET /agg].backends[friends]: unset → {\"upstream\":\"users\",\"path\":\"/f\"}",
            "upstreams.users: a redacted value changed",
            "server.listen: \"0.0.0.0:8080\" → \"127.0.0.1:1\" (needs a restart; a reload keeps the running value)",
            "server.admin_listen: \"127.0.0.1:9901\" → \"127.0.0.1:9911\" (needs a restart; a reload keeps the running value)",
            "server.health_path: \"/__health\" → \"/h\"",
            "jobs.max_memory: \"256MiB\" → \"64MiB\"",
            "cache.max_size: \"256MiB\" → \"1MiB\" (the reload starts an empty cache)",
        ]
    );
    assert_eq!(check_diff(&old, &old), ["no changes"]);
}

#[test]
fn an_unknown_key_does_not_hide_the_rest_of_its_route() {
    let toml = format!(
        r#"{UPSTREAMS}
[[routes]]
path = "/r"
timeot = "1s"
  [[routes.backends]]
  name = "a"
  upstream = "ordrs"
  path = "/"
  requird = true
  merge = "rot"
  for_each_fail = "some"
"#
    );
    let p = check_problems(&toml, &[]);
    assert_eq!(p.len(), 5, "{p:#?}");
    assert!(
        p[0].starts_with("routes[0].timeot: unknown key `timeot`, expected one of `path`,"),
        "{p:#?}"
    );
    assert!(
        p[1].starts_with("routes[0].backends[0].requird: unknown key `requird`"),
        "{p:#?}"
    );
    assert_eq!(
        p[2..],
        [
            "routes[0].backends[0].merge: \"rot\" is not allowed here; write \"key\" or \"root\"",
            "routes[0].backends[0].for_each_fail: \"some\" is not allowed here; write \"null\" or \"all\"",
            "routes[0].backends[0].upstream: no upstream \"ordrs\"; known: orders, users",
        ]
    );
}

#[test]
fn problems_from_environment_overrides_name_the_variable() {
    let toml = format!(
        "{UPSTREAMS}\n[[routes]]\npath = \"/r\"\n[[routes.backends]]\nname = \"a\"\nupstream = \"users\"\npath = \"/\"\n\
         [[routes]]\npath = \"/p\"\nproxy = {{ upstream = \"users\" }}\n"
    );
    let p = check_problems(
        &toml,
        &[
            ("FANOUT__UPSTREAMS__USERS__TIMEOUT", "soon"),
            ("FANOUT__SERVER__LISTN", "127.0.0.1:1"),
            ("FANOUT__ROUTES__5__TIMEOUT", "1s"),
            ("FANOUT__ROUTES__0__BACKENDS__0__UPSTREAM", "ordrs"),
            ("FANOUT__ROUTES__1__METHODS", "POST"),
        ],
    );
    assert_eq!(p.len(), 5, "{p:#?}");
    assert_eq!(
        p[..2],
        [
            "FANOUT__ROUTES__5__TIMEOUT: there is no routes[5]: the file declares routes[0] to routes[1]; an override can change an entry the file declares, not add one",
            "FANOUT__ROUTES__1__METHODS: routes[1].methods is a list, which cannot be set from the environment; write it in the file (${VAR} works inside its elements)",
        ]
    );
    assert!(
        p[2].starts_with("FANOUT__SERVER__LISTN: unknown key `listn`, expected one of `listen`"),
        "{p:#?}"
    );
    assert_eq!(
        p[3..],
        [
            "FANOUT__UPSTREAMS__USERS__TIMEOUT: invalid duration \"soon\"; write a number and a unit, such as \"250ms\", \"2s\" or \"5m\"",
            "FANOUT__ROUTES__0__BACKENDS__0__UPSTREAM: no upstream \"ordrs\"; known: orders, users",
        ]
    );

    // Route keys, down to a backend's, can be overridden.
    let out = fanout_check_env(
        &toml,
        &[
            ("FANOUT__ROUTES__0__TIMEOUT", "5s"),
            ("FANOUT__ROUTES__0__BACKENDS__0__PATH", "/v2"),
        ],
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("a (users /v2)"), "{stdout}");
    let env = Env::from_pairs([("FANOUT__ROUTES__0__TIMEOUT", "5s")]);
    assert_eq!(
        compile(&toml, &env).unwrap().routes[0].timeout,
        std::time::Duration::from_secs(5)
    );
}

#[test]
fn undocumented_spellings_are_refused_with_the_documented_one() {
    let toml = format!(
        r#"{UPSTREAMS}
[[routes]]
path = "/users/:id"
timeout = 300
rate_limit = {{ rate = "600/minute" }}
  [[routes.backends]]
  name = "a"
  upstream = "users"
  path = "/"
  timeout = "1.5 seconds"
[[routes]]
path = "/files/*rest"
proxy = {{ upstream = "orders" }}
"#
    );
    assert_eq!(
        check_problems(&toml, &[]),
        [
            "routes[0].path: \":id\" in \"/users/:id\" would match only that literal text; write a parameter as {id}",
            "routes[0].timeout: duration \"300\" has no unit; write \"300ms\" or \"300s\"",
            "routes[0].rate_limit.rate: rate \"600/minute\" is not written the documented way; write \"600/min\"",
            "routes[0].backends[0].timeout: duration \"1.5 seconds\" is not written the documented way; write \"1500ms\"",
            "routes[1].path: \"*rest\" in \"/files/*rest\" would match only that literal text; write a parameter as {*rest}",
        ]
    );
}

#[test]
fn variables_take_shell_style_defaults() {
    let toml = r#"
[upstreams.users]
url = "http://${USERS_HOST:-127.0.0.1}:9001"
timeout = "${USERS_TIMEOUT:-2s}"
[[routes]]
path = "/r"
proxy = { upstream = "users", path = "/${PREFIX:?missing}" }
"#;
    assert_eq!(
        check_problems(toml, &[]),
        [
            "routes[0].proxy.path: \"${PREFIX:?missing}\" is not supported; write ${NAME}, ${NAME:-default} (unset or empty: the default) or ${NAME-default} (unset: the default)"
        ]
    );
    let toml = toml.replace("${PREFIX:?missing}", "${PREFIX:-v1}");
    let out = fanout_check_env(&toml, &[("USERS_TIMEOUT", "")]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let defaults = compile(&toml, &Env::default()).unwrap();
    assert_eq!(defaults.upstreams["users"].base, "http://127.0.0.1:9001");
    let set = compile(
        &toml,
        &Env::from_pairs([("USERS_HOST", "10.0.0.7"), ("USERS_TIMEOUT", "3s")]),
    )
    .unwrap();
    assert_eq!(set.upstreams["users"].base, "http://10.0.0.7:9001");
    assert_eq!(
        set.upstreams["users"].timeout,
        std::time::Duration::from_secs(3)
    );
}

#[test]
fn check_refuses_what_would_break_run() {
    let toml = r#"
[server]
max_connections = 2305843009213693952
workers = 100000
admin_token = "   "
[upstreams.users]
url = "http://127.0.0.1:9001"
timeout = "500000000000y"
max_in_flight = 2305843009213693952
health_check = { path = "/h", interval = "50ms" }
[[routes]]
path = "/r"
proxy = { upstream = "users", idle_timeout = "9999999999999d" }
"#;
    assert_eq!(
        check_problems(toml, &[]),
        [
            "server.max_connections: 2305843009213693952 is more than any process can hold open; the most is 1073741824, or leave it out for no limit",
            "server.workers: 100000 threads is more than 1024; use about one per core, or leave it out to use every core",
            "server.admin_token: is empty; set a long random token (such as the output of `openssl rand -hex 32`), or remove the key for no token",
            "upstreams.users.timeout: duration \"500000000000y\" is longer than 365 days, the longest fanout accepts",
            "upstreams.users.max_in_flight: 2305843009213693952 is more calls than can be counted at once; the most is 1073741824, or leave it out for no limit",
            "upstreams.users.health_check.interval: \"50ms\" is shorter than 100ms: probes that often load the upstream more than they tell; use \"1s\" or more",
            "routes[0].proxy.idle_timeout: duration \"9999999999999d\" is longer than 365 days, the longest fanout accepts",
        ]
    );
    let empty = "[server]\nadmin_token = \"\"\n[upstreams.u]\nurl = \"http://h\"\n[[routes]]\npath = \"/r\"\nproxy = { upstream = \"u\" }\n";
    assert_eq!(
        check_problems(empty, &[]),
        [
            "server.admin_token: is empty; set a long random token (such as the output of `openssl rand -hex 32`), or remove the key for no token"
        ]
    );
}

#[test]
fn fanout_check_into_a_closed_pipe_exits_quietly() {
    let path = config_file(&format!(
        "{UPSTREAMS}[[routes]]\npath = \"/r\"\nproxy = {{ upstream = \"users\" }}\n"
    ));
    // The reader is gone before the first write, as after `| head -1` has read its line.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = Command::new(env!("CARGO_BIN_EXE_fanout"))
        .args(["check", "-c"])
        .arg(&path)
        .env_clear()
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
        .wait_with_output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(stderr, "", "nothing on stderr, no panic");
}

/// The fenced blocks of a README section, and its text.
fn readme_section(title: &str) -> String {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme
        .find(&format!("\n## {title}\n"))
        .unwrap_or_else(|| panic!("no section {title}"));
    let rest = &readme[start + 4..];
    let end = rest.find("\n## ").unwrap_or(rest.len());
    rest[..end].to_string()
}

#[test]
fn the_readme_configuration_passes_check_as_written() {
    let section = readme_section("Configuration by example");
    let block = section
        .split("```toml\n")
        .nth(1)
        .and_then(|b| b.split("\n```").next())
        .expect("a toml block");
    // The variables it needs, from the command the README gives for it.
    let command = section
        .lines()
        .find(|l| l.contains("fanout check -c example.toml"))
        .expect("the command that checks the example");
    let command = &command[command.find('`').unwrap() + 1..];
    let env: Vec<(&str, &str)> = command
        .split_whitespace()
        .map_while(|word| word.split_once('='))
        .collect();
    assert!(!env.is_empty(), "{command}");
    let out = fanout_check_env(block, &env);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Without the variables, check says which are missing.
    let missing = check_problems(block, &[]);
    for (name, _) in &env {
        assert!(
            missing
                .iter()
                .any(|p| p.contains(&format!("environment variable {name} is not set"))),
            "{missing:#?}"
        );
    }
}

#[test]
fn the_readme_check_outputs_are_real() {
    let sample =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/gateway.toml")).unwrap();
    let section = readme_section("Commands");
    let blocks: Vec<&str> = section
        .split("```\n")
        .filter(|b| b.starts_with("$ fanout check\n"))
        .collect();
    assert_eq!(blocks.len(), 2, "an ok and a failed run");
    let diff_block = section
        .split("```\n")
        .find(|b| b.starts_with("$ fanout check --diff old.toml\n"))
        .expect("a --diff example");
    // The README's typos: the dashboard's orders backend's upstream (the first; the
    // checkout's order backend names it too) and the route's timeout.
    assert!(
        sample.find("upstream = \"orders\"") < sample.find("path = \"/api/users/{id}/checkout\"")
    );
    assert_eq!(sample.matches("timeout = \"1s\"").count(), 1);
    let typos = sample
        .replacen("upstream = \"orders\"", "upstream = \"ordrs\"", 1)
        .replace("timeout = \"1s\"", "timeout = \"soon\"");
    for (block, toml) in blocks.into_iter().zip([sample.clone(), typos]) {
        let dir = config_file(&toml).parent().unwrap().to_path_buf();
        let out = Command::new(env!("CARGO_BIN_EXE_fanout"))
            .arg("check")
            .current_dir(&dir)
            .env_clear()
            .output()
            .unwrap();
        let real = String::from_utf8(out.stdout).unwrap() + &String::from_utf8(out.stderr).unwrap();
        let shown = block.strip_prefix("$ fanout check\n").unwrap();
        assert_eq!(mask_hashes(shown), mask_hashes(&real));
    }
    // The --diff example: the edits the README describes.
    let edited = sample
        .replace("listen = \"127.0.0.1:8080\"", "listen = \"127.0.0.1:9000\"")
        .replace("timeout = \"500ms\"", "timeout = \"800ms\"")
        .replace("cache_ttl = \"10s\"", "cache_ttl = \"30s\"")
        .replacen(
            "[upstreams.users]",
            "[cache]\nmax_size = \"64MiB\"\n\n[upstreams.users]",
            1,
        );
    let path = config_file(&edited);
    let dir = path.parent().unwrap();
    std::fs::write(dir.join("old.toml"), &sample).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_fanout"))
        .args(["check", "--diff", "old.toml"])
        .current_dir(dir)
        .env_clear()
        .output()
        .unwrap();
    let real = String::from_utf8(out.stdout).unwrap();
    let shown = diff_block
        .strip_prefix("$ fanout check --diff old.toml\n")
        .unwrap();
    assert_eq!(mask_hashes(shown), mask_hashes(&real));
}

/// `(hash 0123456789abcdef)` → `(hash …)`: the hash follows every edit of the sample.
fn mask_hashes(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find("(hash ") {
        out.push_str(&rest[..at]);
        out.push_str("(hash …)");
        rest = &rest[(at + 23).min(rest.len())..];
    }
    out.push_str(rest);
    out
}

#[test]
fn access_log_problems_name_their_key_and_the_fix() {
    let found = problems(
        "[access_log]\npath = \"\"\nformat = \"apache\"\nbuffer = \"100MiB\"\nflush = \"soon\"\n",
    );
    assert_eq!(
        found,
        [
            "access_log.path: is empty; write \"stdout\", \"stderr\" or the path of a file, such as \"/var/log/fanout/access.log\"",
            "access_log.format: unknown format \"apache\"; use \"json\", \"text\" or \"combined\" (nginx's)",
            "access_log.buffer: \"100MiB\" is out of range; use a size from \"1KiB\" to \"64MiB\", such as \"64KiB\"",
            "access_log.flush: invalid duration \"soon\"; write a number and a unit, such as \"250ms\", \"2s\" or \"5m\"",
        ]
    );
    assert_eq!(
        problems("[access_log]\nlevel = \"info\"\n"),
        [
            "access_log.level: unknown key `level`, expected one of `enabled`, `path`, `format`, `buffer`, `flush`"
        ],
        "an unknown key"
    );
    assert_eq!(
        problems("[access_log]\npath = \"logs/\"\n"),
        [
            "access_log.path: \"logs/\" names a directory; name a file in it, such as \"logs/access.log\""
        ]
    );
    // The defaults and every accepted value.
    for log in [
        "",
        "enabled = false\npath = \"stdout\"\nformat = \"text\"",
        "path = \"/var/log/fanout/access.log\"\nformat = \"combined\"\nbuffer = \"1MiB\"\nflush = \"250ms\"",
    ] {
        assert_eq!(
            problems(&format!("[access_log]\n{log}\n")),
            Vec::<String>::new()
        );
    }
}
