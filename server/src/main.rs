//! The `lessor` binary: runs the DHCP server and its operator subcommands.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use lessor_server::Server;
use lessor_server::config::Config;
use lessor_server::reload::Overrides;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// lessor: a fast DHCP server with an in-memory lease engine and an append-only journal.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Configuration file (YAML, or JSON when it ends in .json). Without it lessor runs on an
    /// embedded default that listens on loopback only.
    #[arg(long, short, global = true)]
    config: Option<PathBuf>,
    /// Override the config's UDP port.
    #[arg(long)]
    port: Option<u16>,
    /// Override the number of worker threads (default: one per core).
    #[arg(long)]
    workers: Option<usize>,
    /// Override where the control server listens (ADDRESS:PORT, port 0 for any), or `off`.
    #[arg(long, value_name = "ADDRESS:PORT|off")]
    control: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server (the default).
    Run,
    /// Validate a configuration file and print the effective configuration; with --against,
    /// say what it would do to the leases of a state directory instead.
    CheckConfig {
        /// The file to check (defaults to --config).
        file: Option<PathBuf>,
        /// A state directory whose journal to read (read-only): print the leases the new file
        /// would orphan per subnet, reservations another client holds, and the subnets added
        /// and removed (against --config, the running file, when given).
        #[arg(long, value_name = "STATE_DIR")]
        against: Option<PathBuf>,
    },
    /// Inspect and maintain the lease journal (the tools that write need the server stopped).
    Journal {
        /// The state directory (defaults to the config's state_dir).
        #[arg(long, global = true)]
        state_dir: Option<PathBuf>,
        #[command(subcommand)]
        cmd: JournalCmd,
    },
}

#[derive(Debug, Subcommand)]
enum JournalCmd {
    /// One line per lease: address, hw_address, client_id, hostname, state, times, subnet.
    Dump {
        /// jsonl or csv.
        #[arg(long, default_value = "jsonl")]
        format: String,
    },
    /// Files, sizes and record counts.
    Stats,
    /// Check every file; change nothing. Exits non-zero on any problem.
    Verify,
    /// Fold the journal into a new snapshot now (server stopped).
    Compact,
    /// Salvage every valid record of a damaged journal and report what was dropped.
    Repair,
    /// Import a Kea memfile lease file (leases4.csv), so no lease is lost in the switch.
    ImportKea {
        /// Kea's lease file.
        file: PathBuf,
    },
}

fn load(path: Option<&PathBuf>) -> anyhow::Result<Config> {
    match path {
        // report() adds the offending line of the file under the one-line message.
        Some(p) => Config::from_file(p).map_err(|e| anyhow::anyhow!(e.report())),
        None => Ok(Config::default_loopback()),
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match real_main(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lessor: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn real_main(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Some(Command::CheckConfig { file, against }) => {
            let running = match (&file, &cli.config, &against) {
                (Some(_), Some(r), Some(_)) => Some(load(Some(r))?),
                _ => None,
            };
            let path = file
                .or(cli.config)
                .context("check-config needs a FILE (or --config)")?;
            let config = load(Some(&path))?;
            match against {
                None => print!("{}", config.effective_yaml()),
                Some(dir) => {
                    let impact =
                        lessor_server::reload::check_against(&dir, running.as_ref(), &config)
                            .map_err(anyhow::Error::msg)?;
                    print!("{}", impact.to_text());
                }
            }
            eprintln!("lessor: {} is valid", path.display());
            Ok(())
        }
        Some(Command::Journal { state_dir, cmd }) => {
            let config = load(cli.config.as_ref())?;
            let dir = state_dir.unwrap_or_else(|| config.state_dir.clone());
            journal_command(&dir, &config, cmd)
        }
        None | Some(Command::Run) => {
            let mut config = load(cli.config.as_ref())?;
            if let Some(w) = cli.workers {
                anyhow::ensure!(w >= 1, "--workers must be at least 1");
            }
            let control = cli
                .control
                .as_deref()
                .map(|c| control_override(c, config.control.clone()))
                .transpose()?;
            // A reload of the file changes it as the command line did at the start.
            let overrides = Overrides {
                port: cli.port,
                workers: cli.workers,
                control,
            };
            overrides.apply(&mut config);
            init_logging(config.log_level.as_deref());
            run(&config, cli.config.map(|p| (p, overrides)))
        }
    }
}

/// `--control`: `off`, or a new address for the control server (keeping its credentials).
fn control_override(
    arg: &str,
    current: Option<lessor_server::config::ControlConfig>,
) -> anyhow::Result<Option<lessor_server::config::ControlConfig>> {
    if arg == "off" {
        return Ok(None);
    }
    let listen = arg
        .parse()
        .with_context(|| format!("--control: must be ADDRESS:PORT or off, not {arg:?}"))?;
    let c = lessor_server::config::ControlConfig {
        listen,
        ..current.unwrap_or_default()
    };
    anyhow::ensure!(
        c.credentials.is_some() || c.listen.ip().is_loopback(),
        "--control: {listen} is not a loopback address; set control.user and control.password"
    );
    Ok(Some(c))
}

fn journal_command(dir: &std::path::Path, config: &Config, cmd: JournalCmd) -> anyhow::Result<()> {
    use lessor_server::journal_cli::{self as j, DumpFormat};
    match cmd {
        JournalCmd::Dump { format } => {
            let format = match format.as_str() {
                "jsonl" => DumpFormat::Jsonl,
                "csv" => DumpFormat::Csv,
                other => anyhow::bail!("--format: {other:?} is not jsonl or csv"),
            };
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            let dumped = j::dump(dir, config, format, &mut out)
                .map_err(anyhow::Error::from)
                .and_then(|_| Ok(out.flush()?));
            match dumped {
                // `lessor journal dump | head` closing the pipe early is not an error.
                Err(e)
                    if e.chain().any(|c| {
                        c.downcast_ref::<std::io::Error>()
                            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
                    }) => {}
                other => other?,
            }
        }
        JournalCmd::Stats => println!("{}", j::stats(dir)?),
        JournalCmd::Verify => println!("{}", j::verify(dir)?),
        JournalCmd::Compact => println!("{}", j::compact(dir)?),
        JournalCmd::Repair => println!("{}", j::repair(dir)?),
        JournalCmd::ImportKea { file } => {
            let n = j::import_kea(dir, &file)?;
            println!("lessor: imported {n} lease rows from {}", file.display());
        }
    }
    Ok(())
}

/// `STATE_DIR/health`: `ok` or `failing: <error>`, for monitoring.
///
/// It lives on the journal's filesystem, which may be the thing that is full, so it is
/// opened once and rewritten in place (a short text within the block it already has needs
/// no new space); if even that fails it is truncated to nothing, never left saying `ok`.
/// The log and the shutdown summary say the same.
struct HealthFile {
    path: std::path::PathBuf,
    file: Option<std::fs::File>,
}

impl HealthFile {
    fn open(path: std::path::PathBuf) -> HealthFile {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| tracing::warn!(path = %path.display(), error = %e, "cannot open the health file"))
            .ok();
        HealthFile { path, file }
    }

    fn write(&mut self, h: &lessor_journal::Health) {
        use std::os::unix::fs::FileExt;
        let text = match h {
            lessor_journal::Health::Failing { error } => format!("failing: {error}\n"),
            _ => "ok\n".to_owned(),
        };
        let Some(f) = &self.file else { return };
        let written = f
            .write_all_at(text.as_bytes(), 0)
            .and_then(|()| f.set_len(text.len() as u64));
        if let Err(e) = written {
            // Nothing stale: an empty file says nothing, an old `ok` would lie.
            let _ = f.set_len(0);
            tracing::warn!(path = %self.path.display(), error = %e, "could not update the health file; it is left empty");
        }
    }
}

fn init_logging(level: Option<&str>) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level.unwrap_or("info")));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour only on a terminal: a log file or the journal gets plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// Runs the server until SIGINT or SIGTERM; `source` is the config file and what the command
/// line changed in it, which SIGHUP and `config-reload` read again.
fn run(config: &Config, source: Option<(PathBuf, Overrides)>) -> anyhow::Result<()> {
    // No transparent huge pages for the server: mimalloc asks for them, and the first touch
    // of each 2 MiB page (a growing slab, a new hash table) can then take milliseconds while
    // a shard lock is held. Measured on the project VM (docs/PERFORMANCE.md): DORA p99 at
    // 38.7k/s 1.0-1.4 ms without, 2.1-4.3 ms with, and the same maximum rate either way.
    if let Err(e) = nix::sys::prctl::set_thp_disable(true) {
        tracing::debug!(error = %e, "could not turn transparent huge pages off");
    }
    let server = Server::start(config)?;
    if let Some((path, overrides)) = source {
        server.reloader().set_source(path, overrides);
    }
    let stop = server.stop_flag();
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, std::sync::Arc::clone(&stop))
            .context("installing signal handlers")?;
    }
    let mode = if config.port == lessor_server::v4::SERVER_PORT {
        ""
    } else {
        " (test mode: replies go to the request's source address and port)"
    };
    for l in server.listening() {
        println!("lessor: DHCPv4 listening on {l}{mode}");
    }
    let mode6 = if config.v6.port == lessor_server::v6::SERVER_PORT {
        ""
    } else {
        " (test mode: replies go to the request's source address and port)"
    };
    for l in server.listening6() {
        println!("lessor: DHCPv6 listening on {l}{mode6}");
    }
    if let Some(addr) = server.control_addr() {
        println!("lessor: control on http://{addr}");
    }
    // SIGHUP reloads the config file (and v6.assignments_file); see docs/RELOAD.md.
    let reload = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(&reload))
        .context("installing the SIGHUP handler")?;
    let subnets = config.v4.subnets.len();
    let subnets6 = config.v6.subnets.len();
    let (replay, skipped) = server.replay();
    println!(
        "lessor: {} worker(s), {subnets} v4 subnet(s), {subnets6} v6 subnet(s); journal {} (sync: {}): replayed {} records, {} leases live, {skipped} skipped, in {:.3}s{}",
        server.stats().len(),
        lessor_server::state_dir::journal_dir(&config.state_dir).display(),
        config.journal.sync.name(),
        replay.records_read,
        replay.live,
        replay.elapsed.as_secs_f64(),
        replay_notes(replay),
    );
    let mut health_file = HealthFile::open(config.state_dir.join("health"));
    let mut health = lessor_journal::Health::Ok;
    health_file.write(&health);
    let mut last_summary = std::time::Instant::now();
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
        if last_summary.elapsed() >= SUMMARY_EVERY {
            last_summary = std::time::Instant::now();
            tracing::info!("{} journal={}", server.summary(), health_word(&health));
        }
        if reload.swap(false, Ordering::Relaxed) {
            sighup(&server);
        }
        let now = server.journal_health();
        if now != health {
            match &now {
                lessor_journal::Health::Failing { error } => tracing::error!(
                    %error,
                    "journal writes are failing: no lease is acknowledged until they work again \
                     (OFFERs and INFORMs continue; clients retry)"
                ),
                _ => tracing::info!("journal writes work again: acknowledging leases"),
            }
            health_file.write(&now);
            health = now;
        }
    }
    println!("lessor: stopping");
    let summary = server.join()?;
    println!("lessor: {summary} journal={}", health_word(&health));
    Ok(())
}

/// SIGHUP: reloads the config file; on error the running config stays (logged, counted).
fn sighup(server: &Server) {
    match server.reloader().reload_file() {
        Ok(o) => {
            let pause = o.pause.map_or("no pause".to_owned(), |p| {
                format!("workers paused {:.3} ms", p.as_secs_f64() * 1e3)
            });
            println!(
                "lessor: reloaded the configuration ({pause}, {} lease(s) orphaned)",
                o.impact.orphans()
            );
            if let Some(n) = o.assignments {
                println!("lessor: reloaded v6.assignments_file: {n} assignment(s)");
            }
        }
        Err(e) => println!("lessor: SIGHUP: configuration not reloaded: {e}"),
    }
}

/// How often the counter summary and the journal's health are logged while running.
const SUMMARY_EVERY: Duration = Duration::from_secs(300);

/// The journal's health as the summary lines give it.
fn health_word(h: &lessor_journal::Health) -> String {
    match h {
        lessor_journal::Health::Failing { error } => format!("failing ({error})"),
        _ => "ok".to_owned(),
    }
}

/// What the startup line says of a damaged journal tail, if anything.
fn replay_notes(r: &lessor_journal::ReplayReport) -> String {
    let mut s = String::new();
    if let Some((f, off, n)) = &r.truncated {
        s += &format!(
            "; torn tail of {} cleared at byte {off} ({n} bytes)",
            f.display()
        );
    }
    for (f, off, n) in &r.damaged {
        s += &format!(
            "; DAMAGED record dropped in {} at byte {off} ({n} bytes)",
            f.display()
        );
    }
    if r.salvaged > 0 {
        s += &format!(
            "; {} records after damage kept (a copy of the damaged bytes is beside the segment)",
            r.salvaged
        );
    }
    s
}
