//! The `fanout` command: `run`, `check` and `demo`. Everything else lives in the library.

use clap::{Args, Parser, Subcommand};
use fanout::access_log::AccessLog;
use fanout::config::{self, Compiled, Env};
use fanout::gateway::Gateway;
use fanout::reload::{self, Reloader};
use fanout::{demo, server};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use tracing_subscriber::fmt::FmtContext;
use tracing_subscriber::fmt::format::{FormatEvent, FormatFields, Writer};
use tracing_subscriber::registry::LookupSpan;

// Many small, short-lived allocations per request (headers, bodies, futures): mimalloc
// serves them from thread-local pages instead of the system allocator's shared arenas.
// Its default purge delay (1 s in v3) is kept: purging freed pages at once would make every
// short-lived buffer fault its page back in, kernel time on every request.
// MIMALLOC_PURGE_DELAY tunes it.
#[global_allocator]
static ALLOCATOR: fanout::allocator::Allocator = fanout::allocator::Allocator;

/// fanout: an API gateway that fans one request out to several upstreams at once and
/// merges their JSON answers, and proxies everything else.
#[derive(Parser)]
#[command(name = "fanout", version)]
struct Cli {
    /// Diagnostic log lines (stderr) as `text` or `json` (one object per line). RUST_LOG
    /// sets their levels. The access log is configured in `[access_log]`.
    #[arg(long, global = true, value_enum, default_value = "text")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the routes of the config file until SIGTERM or Ctrl-C.
    Run(ConfigArg),
    /// Validate the config file without serving: print every problem with its place
    /// (exit 1), or the route table (exit 0).
    Check {
        #[command(flatten)]
        config: ConfigArg,
        /// Also show what a reload from this older config to the checked one would change.
        #[arg(long, value_name = "OLD.toml")]
        diff: Option<PathBuf>,
    },
    /// Serve the config together with built-in sample upstreams (users, orders,
    /// weather) on the addresses its upstreams name, and print curl lines to try.
    Demo {
        #[command(flatten)]
        config: ConfigArg,
        /// Serve over TLS with a self-signed certificate made at start (a CA and a
        /// certificate for localhost and 127.0.0.1, written to a printed scratch
        /// directory, removed when the demo stops); the curl lines trust the CA with
        /// `--cacert`.
        #[arg(long)]
        tls: bool,
        /// Count the sample config's shared rate limit and cache in this Redis
        /// (`redis://HOST:PORT/DB`), as several gateways on it would: sets
        /// FANOUT__CLUSTER__REDIS and FANOUT_DEMO_SCOPE=cluster for the config, and
        /// prints how to start a second gateway on the same Redis.
        #[arg(long, value_name = "URL")]
        redis: Option<String>,
    },
}

#[derive(Args)]
struct ConfigArg {
    /// Path of the config file. FANOUT__SECTION__KEY environment variables override
    /// its keys; ${VAR} inside its strings is read from the environment.
    #[arg(short, long, default_value = "gateway.toml")]
    config: PathBuf,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Demo {
        redis: Some(url), ..
    } = &cli.command
    {
        // SAFETY: before any other thread exists (the runtime, the logger), so nothing
        // reads the environment concurrently.
        for (name, value) in demo::redis_env(url) {
            unsafe { std::env::set_var(name, value) };
        }
    }
    // Before any other thread exists: the demo's certificates reach the config (and
    // every reload of it) as `FANOUT__SERVER__TLS__*` overrides.
    let demo_ca = match &cli.command {
        Command::Demo { tls: true, .. } => match demo_certificates() {
            Ok(ca) => Some(ca),
            Err(e) => {
                eprint(&format!("fanout: {e}\n"));
                return ExitCode::FAILURE;
            }
        },
        _ => None,
    };
    // Before any thread: the TLS clients dependencies build take the process's provider.
    fanout::tls::install_default_provider();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter);
    match cli.log_format {
        LogFormat::Json => logs
            .event_format(ListsAsArrays(tracing_subscriber::fmt::format().json()))
            .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
            .init(),
        LogFormat::Text => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
    match cli.command {
        Command::Check { config, diff } => check(&config.config, diff.as_deref()),
        Command::Run(arg) => serve(&arg.config, None),
        Command::Demo { config, redis, .. } => {
            let certs = demo_ca.as_ref().map(|c| c.dir.clone());
            let code = serve(
                &config.config,
                Some(Demo {
                    ca: demo_ca.map(|c| c.ca),
                    redis,
                }),
            );
            // The certificates were made for this run only; a stopped demo leaves no key
            // behind in the temporary directory.
            if let Some(dir) = certs {
                let _ = std::fs::remove_dir_all(dir);
            }
            code
        }
    }
}

/// What `fanout demo` adds to serving: the sample upstreams and the curl lines.
struct Demo {
    /// With `--tls`: the CA file of the certificate served, for the curl lines.
    ca: Option<PathBuf>,
    /// With `--redis`: the URL given, for the second gateway's command line.
    redis: Option<String>,
}

/// Makes the certificates of `fanout demo --tls` in a scratch directory, prints where,
/// and points `[server.tls]` at them through the environment, so a reload of the
/// config keeps serving them. Returns where they are. Must run before any thread starts.
fn demo_certificates() -> Result<demo::DemoCertificates, demo::tls::DemoTlsError> {
    let certs = demo::DemoCertificates::make(&demo::DemoCertificates::scratch_dir())?;
    // SAFETY: called from `main` before the runtime, the logger or any other thread
    // exists, so nothing reads the environment concurrently.
    unsafe {
        std::env::set_var("FANOUT__SERVER__TLS__CERT", &certs.cert);
        std::env::set_var("FANOUT__SERVER__TLS__KEY", &certs.key);
    }
    print(&format!(
        "demo certificates in {}: CA {}, certificate {} for {}\n",
        certs.dir.display(),
        certs.ca.display(),
        certs.cert.display(),
        demo::tls::DEMO_TLS_NAMES.join(" and ")
    ));
    Ok(certs)
}

/// The JSON log format, with list fields as JSON arrays: a field recorded as a list
/// (`backends = ?list`, whose text is `["user:ok", "orders:timeout"]`) reaches tracing's
/// JSON formatter as that text in a string, and is written as the array it spells.
struct ListsAsArrays<F>(F);

impl<S, N, F> FormatEvent<S, N> for ListsAsArrays<F>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let mut line = String::new();
        self.0.format_event(ctx, Writer::new(&mut line), event)?;
        if !line.contains("\"[") {
            return writer.write_str(&line);
        }
        let Ok(mut entry) = serde_json::from_str::<serde_json::Value>(&line) else {
            return writer.write_str(&line);
        };
        if let Some(fields) = entry.get_mut("fields").and_then(|f| f.as_object_mut()) {
            for value in fields.values_mut() {
                let list = value
                    .as_str()
                    .filter(|t| t.starts_with('[') && t.ends_with(']'))
                    .and_then(|t| serde_json::from_str::<Vec<serde_json::Value>>(t).ok());
                if let Some(list) = list {
                    *value = serde_json::Value::Array(list);
                }
            }
        }
        writeln!(writer, "{entry}")
    }
}

fn check(path: &Path, old: Option<&Path>) -> ExitCode {
    let compiled = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let mut out = format!("{}: ok (hash {})\n", path.display(), compiled.hash);
    for warning in &compiled.warnings {
        out.push_str(&format!("warning: {warning}\n"));
    }
    out.push_str(&compiled.route_table());
    if let Some(old_path) = old {
        let old = match load(old_path) {
            Ok(c) => c,
            Err(code) => return code,
        };
        let d = reload::diff(&old, &compiled);
        out.push_str(&format!(
            "\nreload from {} (hash {}):\n",
            old_path.display(),
            old.hash
        ));
        if d.is_empty() {
            out.push_str("  no changes\n");
        }
        for line in d.lines() {
            out.push_str(&format!("  {line}\n"));
        }
    }
    print(&out);
    ExitCode::SUCCESS
}

/// Writes `text` to stdout. A reader that went away (`fanout check | head -1`) is not an
/// error: the rest of the output is dropped quietly, where `println!` would panic.
fn print(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush());
}

/// Like [`print`], for stderr.
fn eprint(text: &str) {
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

fn load(path: &Path) -> Result<Compiled, ExitCode> {
    let env = Env::from_process();
    let result = config::compile_file(path, &env);
    result.map_err(|e| {
        let n = e.0.len();
        let mut text = format!(
            "{}: {n} problem{}\n",
            path.display(),
            if n == 1 { "" } else { "s" }
        );
        for problem in &e.0 {
            text.push_str(&format!("  {problem}\n"));
        }
        eprint(&text);
        ExitCode::FAILURE
    })
}

fn serve(path: &Path, demo: Option<Demo>) -> ExitCode {
    let compiled = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let workers = compiled
        .server
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let runtime = if workers == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .enable_all()
            .build()
    };
    let runtime = match runtime {
        Ok(rt) => rt,
        Err(e) => {
            eprint(&format!("cannot start the runtime: {e}\n"));
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(start(path, compiled, demo)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprint(&format!("fanout: {e}\n"));
            ExitCode::FAILURE
        }
    }
}

async fn start(
    path: &Path,
    compiled: Compiled,
    with_demo: Option<Demo>,
) -> Result<(), Box<dyn std::error::Error>> {
    let listen = compiled.server.listen;
    if with_demo.is_some() {
        for (name, addr) in demo::start(&compiled).await? {
            print(&format!("sample upstream {name} on http://{addr}\n"));
        }
    }
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| format!("server.listen: cannot listen on {listen}: {e}"))?;
    if let Some(with_demo) = &with_demo {
        let addr = listener.local_addr()?;
        let tls = with_demo.ca.is_some() || compiled.server.tls.is_some();
        let scheme = if tls { "https" } else { "http" };
        let mut text = format!("fanout demo on {scheme}://{addr}; try:\n");
        for line in demo::curl_lines_tls(&compiled, addr, with_demo.ca.as_deref()) {
            text.push_str(&format!("  {line}\n"));
        }
        let config_text = std::fs::read_to_string(path).unwrap_or_default();
        let shared = demo::cluster_lines(
            &compiled,
            path,
            &config_text,
            with_demo.redis.as_deref(),
            addr,
        );
        for line in shared {
            text.push_str(&format!("  {line}\n"));
        }
        // The dashboard, moved by a few calls a second (plain HTTP only).
        if let Some(url) = demo::traffic::dashboard_url(&compiled) {
            text.push_str(&format!("dashboard: {url}\n"));
        }
        if !tls {
            tokio::spawn(demo::traffic::run(addr, demo::traffic::targets(&compiled)));
        }
        print(&text);
    }
    let admin = match compiled.server.admin_listen {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| format!("server.admin_listen: cannot listen on {addr}: {e}"))?,
        ),
        None => None,
    };
    reload::log_warnings(&compiled);
    let redirect = match compiled.server.redirect_http {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| format!("server.redirect_http: cannot listen on {addr}: {e}"))?,
        ),
        None => None,
    };
    let https_port = listener.local_addr()?.port();
    let header_read_timeout = compiled.server.header_read_timeout;
    let gateway = Gateway::build(compiled, None)?;
    // JWT providers with `jwks_url` get a bounded wait for their first fetch, so the
    // first requests are not refused for keys that were a moment away; a provider still
    // without keys answers 503 until they arrive (its fetch task logs why).
    let first_fetches =
        futures_util::future::join_all(gateway.auth.values().map(|provider| provider.ready()));
    if tokio::time::timeout(JWKS_STARTUP_WAIT, first_fetches)
        .await
        .is_err()
    {
        tracing::warn!(
            "a JWKS fetch did not finish in time; serving, its routes answer 503 until it does"
        );
    }
    let access_log = gateway.access_log.clone();
    let live = Arc::new(arc_swap::ArcSwap::from_pointee(gateway));
    tokio::spawn(reopen_on_sigusr1(access_log.clone()));
    let reloader = Reloader::new(path, live.clone());
    let _watcher = reload::watch(reloader.clone())
        .map_err(|e| format!("cannot watch {} for changes: {e}", path.display()))?;
    let _tls_watch = reload::watch_tls(reloader.clone())
        .map_err(|e| format!("cannot watch the [server.tls] files for changes: {e}"))?;
    tokio::spawn(reload::on_sighup(reloader.clone()));
    if let Some(admin) = admin {
        tokio::spawn(fanout::admin::run(
            admin,
            live.clone(),
            reloader.clone(),
            std::future::pending(),
        ));
    }
    // The redirect listener stops when the main one does.
    let (stop_redirect, mut redirect_stops) = tokio::sync::watch::channel(());
    if let Some(redirect) = redirect {
        tokio::spawn(server::run_redirect(
            redirect,
            https_port,
            header_read_timeout,
            async move {
                let _ = redirect_stops.changed().await;
            },
        ));
    }
    let shutdown = async move {
        server::shutdown_signal().await;
        stop_redirect.send_replace(());
    };
    let served = server::run(listener, live, shutdown).await;
    // Every line queued is written before the process exits.
    access_log.shutdown();
    served?;
    Ok(())
}

/// How long start waits for the JWT providers' first JWKS fetches.
const JWKS_STARTUP_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Reopens the access log's file on every SIGUSR1 (logrotate's `postrotate`). The
/// handler is installed when this is called, so a SIGUSR1 after the listener is up
/// never ends the process, as the signal's default action would.
fn reopen_on_sigusr1(log: Arc<AccessLog>) -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let usr1 = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined1());
    async move {
        #[cfg(unix)]
        {
            let Ok(mut usr1) = usr1 else {
                tracing::warn!("cannot listen for SIGUSR1; the access log is not reopened on it");
                return;
            };
            while usr1.recv().await.is_some() {
                log.reopen();
            }
        }
        #[cfg(not(unix))]
        let _ = log;
    }
}
