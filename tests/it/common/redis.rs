//! A real `redis-server` per test (or per test module): started on a free loopback port
//! with no persistence, in a scratch directory of its own, ready once it answers PING;
//! stopped and restarted on the same port to play an outage; killed when dropped.
//!
//! It talks to the server over its own small RESP client ([`RedisServer::command`]), so
//! the tests need no `redis-cli` and no client crate of their own. A test that cannot
//! find `redis-server` fails, saying how to install it: it never skips silently.
//!
//! [`HungRedis`] is the other kind of trouble: it accepts connections and never answers.
//!
//! Shared by several suites, each using a part: what one leaves unused is not dead.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How long a start may take before the test fails: far longer than it takes.
const START_PATIENCE: Duration = Duration::from_secs(20);

/// A `redis-server` child process on `127.0.0.1:port`.
pub struct RedisServer {
    port: u16,
    dir: PathBuf,
    password: Option<String>,
    /// `redis-server` arguments beyond the test defaults (a cluster node's).
    extra: Vec<String>,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a server with no password.
    pub fn start() -> Self {
        Self::launch(None, false)
    }

    /// Starts a server that requires `password` (`requirepass`).
    pub fn start_with_password(password: &str) -> Self {
        Self::launch(Some(password.to_owned()), false)
    }

    /// Starts a server that also speaks TLS (`rediss://`) on a second port, the returned
    /// one, with the certificate `cert`/`key` (PEM files) and no client certificate asked
    /// for; the plain port stays open for this helper's own commands.
    pub fn start_with_tls(cert: &Path, key: &Path, ca: &Path) -> (Self, u16) {
        let tls_port = free_port();
        let path = |p: &Path| p.display().to_string();
        let mut server = Self {
            port: free_port(),
            dir: super::scratch_dir("redis"),
            password: None,
            extra: vec![
                "--tls-port".into(),
                tls_port.to_string(),
                "--tls-cert-file".into(),
                path(cert),
                "--tls-key-file".into(),
                path(key),
                "--tls-ca-cert-file".into(),
                path(ca),
                "--tls-auth-clients".into(),
                "no".into(),
            ],
            child: None,
        };
        server
            .spawn()
            .unwrap_or_else(|e| panic!("redis-server with TLS did not start: {e}"));
        (server, tls_port)
    }

    fn launch(password: Option<String>, cluster: bool) -> Self {
        let dir = super::scratch_dir("redis");
        // A free port can be taken between finding it and the server binding it: try a
        // few before giving up.
        let mut last_error = String::new();
        for _ in 0..5 {
            let port = free_port();
            // A cluster node's bus port (port + 10000 by default, maybe past 65535).
            let extra = if cluster {
                let node = dir.join(format!("nodes-{port}.conf"));
                vec![
                    "--cluster-enabled".into(),
                    "yes".into(),
                    "--cluster-port".into(),
                    free_port().to_string(),
                    "--cluster-config-file".into(),
                    node.display().to_string(),
                ]
            } else {
                Vec::new()
            };
            let mut server = Self {
                port,
                dir: dir.clone(),
                password: password.clone(),
                extra,
                child: None,
            };
            match server.spawn() {
                Ok(()) => return server,
                Err(e) => last_error = e,
            }
        }
        panic!("redis-server did not start: {last_error}");
    }

    /// `redis://127.0.0.1:PORT/0`, with `:PASSWORD@` when the server has one.
    pub fn url(&self) -> String {
        match &self.password {
            Some(p) => format!("redis://:{p}@127.0.0.1:{}/0", self.port),
            None => format!("redis://127.0.0.1:{}/0", self.port),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Kills the server and waits for it to exit: connections drop, the port is closed,
    /// and its data is gone (there is no persistence).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port (empty), once its PING answers.
    pub fn restart(&mut self) {
        self.stop();
        let started = Instant::now();
        // The old socket may linger a moment; retry until the port is ours again.
        loop {
            match self.spawn() {
                Ok(()) => return,
                Err(e) if started.elapsed() > START_PATIENCE => {
                    panic!("redis-server did not restart on port {}: {e}", self.port)
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    fn spawn(&mut self) -> Result<(), String> {
        let log = self.dir.join(format!("redis-{}.log", self.port));
        let mut command = Command::new("redis-server");
        command
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .args(["--protected-mode", "no"])
            .args(["--daemonize", "no"])
            .args(["--loglevel", "warning"])
            .arg("--dir")
            .arg(&self.dir)
            .arg("--logfile")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(p) = &self.password {
            command.args(["--requirepass", p]);
        }
        command.args(&self.extra);
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
                "redis-server is not installed, and the cluster tests need a real one: \
                 install it (`apt-get install -y redis-server`; `.ci/run` does) and run again"
            ),
            Err(e) => panic!("redis-server could not be run: {e}"),
        };
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                let logged = std::fs::read_to_string(&log).unwrap_or_default();
                return Err(format!("it exited ({status}): {logged}"));
            }
            if self.ping() {
                self.child = Some(child);
                return Ok(());
            }
            if started.elapsed() > START_PATIENCE {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("no PONG within {START_PATIENCE:?}"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn ping(&self) -> bool {
        self.try_command(&["PING"])
            .is_ok_and(|reply| reply == Reply::Simple("PONG".into()))
    }

    /// Sends one command (authenticating first when the server has a password) and
    /// returns its reply; panics when the server cannot be reached.
    pub fn command(&self, args: &[&str]) -> Reply {
        self.try_command(args)
            .unwrap_or_else(|e| panic!("redis {args:?}: {e}"))
    }

    fn try_command(&self, args: &[&str]) -> std::io::Result<Reply> {
        let stream = TcpStream::connect_timeout(&self.addr(), Duration::from_secs(2))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut reader = BufReader::new(stream.try_clone()?);
        let mut writer = stream;
        if let Some(p) = &self.password {
            writer.write_all(&encode(&["AUTH", p]))?;
            read_reply(&mut reader)?;
        }
        writer.write_all(&encode(args))?;
        read_reply(&mut reader)
    }

    /// The keys matching `pattern`, each once, sorted (by `SCAN`, so a big keyspace is
    /// walked in steps).
    pub fn keys(&self, pattern: &str) -> Vec<String> {
        let mut cursor = "0".to_owned();
        let mut keys = Vec::new();
        loop {
            let Reply::Array(parts) = self.command(&["SCAN", &cursor, "MATCH", pattern]) else {
                panic!("SCAN answered something else");
            };
            let [Reply::Bulk(Some(next)), Reply::Array(found)] = &parts[..] else {
                panic!("SCAN answered {parts:?}");
            };
            keys.extend(found.iter().filter_map(Reply::text));
            cursor = next.clone();
            if cursor == "0" {
                // SCAN may return a key twice (when the table is resized mid-scan).
                keys.sort();
                keys.dedup();
                return keys;
            }
        }
    }

    /// How many times the server has run `command` (lowercase: `"evalsha"`) since it
    /// started or since [`RedisServer::reset_stats`], from `INFO commandstats`.
    pub fn calls(&self, command: &str) -> u64 {
        let info = self.command(&["INFO", "commandstats"]);
        let text = info.text().unwrap_or_default();
        let prefix = format!("cmdstat_{command}:calls=");
        text.lines()
            .find_map(|line| line.strip_prefix(&prefix))
            .and_then(|rest| rest.split(',').next())
            .map_or(0, |n| n.parse().unwrap())
    }

    /// Every command the server has run since it started or the last reset, counted
    /// together (the test's own `INFO` and `CONFIG` included).
    pub fn total_calls(&self) -> u64 {
        let info = self.command(&["INFO", "commandstats"]);
        info.text()
            .unwrap_or_default()
            .lines()
            .filter_map(|line| line.split_once(":calls=")?.1.split(',').next())
            .map(|n| n.parse::<u64>().unwrap())
            .sum()
    }

    /// Zeroes the command counts (`CONFIG RESETSTAT`).
    pub fn reset_stats(&self) {
        self.command(&["CONFIG", "RESETSTAT"]);
    }

    /// Drops every key.
    pub fn flush(&self) {
        self.command(&["FLUSHALL"]);
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A Redis Cluster of `redis-server` nodes, every one a master with its share of the
/// 16384 slots, ready once every node says `cluster_state:ok`.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    pub fn start(masters: usize) -> Self {
        let nodes: Vec<RedisServer> = (0..masters)
            .map(|_| RedisServer::launch(None, true))
            .collect();
        let per = 16384 / masters;
        for (i, node) in nodes.iter().enumerate() {
            let first = i * per;
            let last = if i + 1 == masters {
                16383
            } else {
                first + per - 1
            };
            let reply = node.command(&[
                "CLUSTER",
                "ADDSLOTSRANGE",
                &first.to_string(),
                &last.to_string(),
            ]);
            assert_eq!(reply, Reply::Simple("OK".into()), "ADDSLOTSRANGE");
        }
        for other in &nodes[1..] {
            let bus = other.extra[3].as_str();
            let port = other.port().to_string();
            let reply = nodes[0].command(&["CLUSTER", "MEET", "127.0.0.1", &port, bus]);
            assert_eq!(reply, Reply::Simple("OK".into()), "MEET");
        }
        let started = Instant::now();
        while !nodes.iter().all(|n| {
            let info = n.command(&["CLUSTER", "INFO"]).text().unwrap_or_default();
            info.contains("cluster_state:ok")
                && info.contains(&format!("cluster_known_nodes:{masters}"))
        }) {
            assert!(
                started.elapsed() < START_PATIENCE,
                "the cluster did not form"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { nodes }
    }

    /// The nodes' URLs: `redis = [...]` seeds.
    pub fn urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("redis://127.0.0.1:{}", n.port()))
            .collect()
    }

    /// How many keys each node holds.
    pub fn keys_per_node(&self) -> Vec<i64> {
        self.nodes
            .iter()
            .map(|n| n.command(&["DBSIZE"]).integer().unwrap())
            .collect()
    }
}

/// A port nothing listens on right now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One RESP reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Simple(String),
    Error(String),
    Integer(i64),
    Bulk(Option<String>),
    Array(Vec<Reply>),
}

impl Reply {
    /// The text of a simple or bulk string reply.
    pub fn text(&self) -> Option<String> {
        match self {
            Reply::Simple(s) | Reply::Bulk(Some(s)) => Some(s.clone()),
            _ => None,
        }
    }

    pub fn integer(&self) -> Option<i64> {
        match self {
            Reply::Integer(n) => Some(*n),
            _ => None,
        }
    }
}

fn encode(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out
}

fn read_reply(reader: &mut impl BufRead) -> std::io::Result<Reply> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    let line = line.trim_end_matches("\r\n");
    let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, line.to_owned());
    let (kind, rest) = line.split_at_checked(1).ok_or_else(bad)?;
    Ok(match kind {
        "+" => Reply::Simple(rest.to_owned()),
        "-" => Reply::Error(rest.to_owned()),
        ":" => Reply::Integer(rest.parse().map_err(|_| bad())?),
        "$" => {
            let len: i64 = rest.parse().map_err(|_| bad())?;
            if len < 0 {
                Reply::Bulk(None)
            } else {
                let mut buf = vec![0; len as usize + 2];
                reader.read_exact(&mut buf)?;
                buf.truncate(len as usize);
                Reply::Bulk(Some(String::from_utf8_lossy(&buf).into_owned()))
            }
        }
        "*" => {
            let len: i64 = rest.parse().map_err(|_| bad())?;
            let mut items = Vec::new();
            for _ in 0..len.max(0) {
                items.push(read_reply(reader)?);
            }
            Reply::Array(items)
        }
        _ => return Err(bad()),
    })
}

/// A "Redis" that accepts connections and reads what it is sent, but never answers: the
/// hung store a timeout must cut short. Counts connections and bytes received, so a test
/// can tell whether the gateway still calls it.
pub struct HungRedis {
    pub addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    received: Arc<AtomicUsize>,
}

impl HungRedis {
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let received = Arc::new(AtomicUsize::new(0));
        let (c, r) = (connections.clone(), received.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                c.fetch_add(1, Ordering::SeqCst);
                let r = r.clone();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    while let Ok(n @ 1..) = stream.read(&mut buf) {
                        r.fetch_add(n, Ordering::SeqCst);
                    }
                });
            }
        });
        Self {
            addr,
            connections,
            received,
        }
    }

    pub fn url(&self) -> String {
        format!("redis://{}/0", self.addr)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Bytes received so far (every command sent adds some).
    pub fn received(&self) -> usize {
        self.received.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_starts_answers_stops_and_restarts_on_its_port() {
        let mut redis = RedisServer::start();
        assert_eq!(
            redis.command(&["SET", "k", "v"]),
            Reply::Simple("OK".into())
        );
        assert_eq!(redis.keys("k*"), vec!["k".to_owned()]);
        assert!(redis.calls("set") >= 1);
        let port = redis.port();
        redis.stop();
        assert!(
            TcpStream::connect(redis.addr()).is_err(),
            "stopped, yet listening"
        );
        redis.restart();
        assert_eq!(redis.port(), port);
        // No persistence: the restart is empty.
        assert_eq!(redis.command(&["GET", "k"]), Reply::Bulk(None));
    }

    #[test]
    fn a_password_is_required_and_sent() {
        let redis = RedisServer::start_with_password("s3cret");
        assert!(redis.url().contains(":s3cret@"));
        assert_eq!(redis.command(&["PING"]), Reply::Simple("PONG".into()));
        let mut bare = TcpStream::connect(redis.addr()).unwrap();
        bare.write_all(&encode(&["GET", "k"])).unwrap();
        let reply = read_reply(&mut BufReader::new(bare)).unwrap();
        assert!(matches!(reply, Reply::Error(e) if e.starts_with("NOAUTH")));
    }
}
