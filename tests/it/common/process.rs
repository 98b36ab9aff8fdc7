//! The gateway binary as its own process, so its memory can be measured apart from the
//! test's clients and mocks.

use super::gateway::scratch_dir;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The gateway binary, run as its own process so its memory can be measured apart from
/// the test's clients and mocks. Killed when dropped.
pub struct GatewayProcess {
    pub addr: SocketAddr,
    /// The config file it serves.
    pub path: std::path::PathBuf,
    child: std::process::Child,
    logs: Arc<Mutex<Vec<String>>>,
}

impl GatewayProcess {
    /// Starts `fanout run` on `toml`, whose listen address must be `127.0.0.1:0`; its
    /// admin listener goes to a free port too.
    pub fn start(toml: &str) -> Self {
        Self::start_with(toml, &[])
    }

    /// Like [`GatewayProcess::start`], with extra arguments before `run`.
    pub fn start_with(toml: &str, args: &[&str]) -> Self {
        Self::spawn(toml, args, &[], None)
    }

    /// Like [`GatewayProcess::start_with`], with these environment variables set.
    pub fn start_env(toml: &str, args: &[&str], env: &[(&str, &str)]) -> Self {
        Self::spawn(toml, args, env, None)
    }

    /// Like [`GatewayProcess::start`], allowed at most `nofile` open file descriptors
    /// (`ulimit -n` in a shell that then becomes the gateway).
    pub fn start_limited(toml: &str, nofile: u32) -> Self {
        Self::spawn(toml, &[], &[], Some(nofile))
    }

    fn spawn(toml: &str, args: &[&str], env: &[(&str, &str)], nofile: Option<u32>) -> Self {
        let toml = toml.replacen(
            "[server]\n",
            "[server]\nadmin_listen = \"127.0.0.1:0\"\n",
            1,
        );
        use std::io::BufRead;
        let dir = scratch_dir("proc");
        let path = dir.join("gateway.toml");
        std::fs::write(&path, &toml).unwrap();
        let binary = env!("CARGO_BIN_EXE_fanout");
        let mut command = match nofile {
            None => std::process::Command::new(binary),
            Some(n) => {
                let mut sh = std::process::Command::new("sh");
                sh.arg("-c")
                    .arg(format!("ulimit -n {n} && exec \"$0\" \"$@\""))
                    .arg(binary);
                sh
            }
        };
        let mut child = command
            .args(args)
            .args(["run", "-c"])
            .arg(&path)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let addr = loop {
            let line = lines
                .next()
                .expect("the gateway exited before listening")
                .unwrap();
            logs.lock().unwrap().push(line.clone());
            // The admin listener logs its own address; skip its line.
            if line.contains("admin") {
                continue;
            }
            if let Some(addr) = logged_addr(&line) {
                break addr;
            }
        };
        // Keep draining its log so the process never blocks on a full pipe.
        let sink = logs.clone();
        std::thread::spawn(move || {
            lines
                .map_while(Result::ok)
                .for_each(|l| sink.lock().unwrap().push(l))
        });
        Self {
            addr,
            path,
            child,
            logs,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The admin listener's address, once it has logged it (within 10 s).
    pub fn admin_addr(&self) -> SocketAddr {
        let started = std::time::Instant::now();
        loop {
            let found = self
                .logs()
                .iter()
                .filter(|l| l.contains("admin listening"))
                .find_map(|l| logged_addr(l));
            if let Some(addr) = found {
                return addr;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "no admin listener in the log"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// What it has logged so far.
    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().unwrap().clone()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends it `signal` (`"USR1"`, `"TERM"`, ...), as `kill -SIGNAL PID` does.
    pub fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal}");
    }

    /// Sends SIGTERM and waits for the process to exit (within its shutdown grace).
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        self.signal("TERM");
        self.child.wait().unwrap()
    }

    /// Peak resident memory so far (VmHWM), in bytes.
    pub fn peak_rss(&self) -> u64 {
        self.status_bytes("VmHWM:")
    }

    /// Resident memory now (VmRSS), in bytes.
    pub fn rss(&self) -> u64 {
        self.status_bytes("VmRSS:")
    }

    fn status_bytes(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let line = status.lines().find(|l| l.starts_with(field)).unwrap();
        let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        kib * 1024
    }

    /// CPU time (user and system, every thread) used so far.
    pub fn cpu_time(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap();
        // The fields after the command name, which is in parentheses and may hold spaces.
        let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..]
            .split_whitespace()
            .collect();
        let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        // USER_HZ is 100 on every Linux the tests run on.
        Duration::from_millis(ticks * 10)
    }

    /// Open file descriptors now.
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id())).map_or(0, |d| d.count())
    }
}

/// The `addr=` of a log line, in text or JSON format.
fn logged_addr(line: &str) -> Option<SocketAddr> {
    if let Some(at) = line.find("addr=") {
        return line[at + 5..].split_whitespace().next()?.parse().ok();
    }
    let at = line.find("\"addr\":\"")?;
    line[at + 8..].split('"').next()?.parse().ok()
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
