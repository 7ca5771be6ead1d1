//! lessor-perf: measurements of lessor that criterion cannot make: multi-million-lease
//! journals, the server's startup replay against them, and where its time and memory go; and
//! the wire-level load: batched DHCPv4 and DHCPv6 load generators and stateless null
//! responders.
//!
//! Every subcommand prints one JSON object on stdout (progress goes to stderr), so runs can be
//! collected and compared.

mod batch_socket;
mod journal_gen;
mod load;
mod mem;
mod null_common;
mod null_responder;
mod null_responder6;
mod replay;
mod synth;
mod wire;
mod wire6;

use clap::{Parser, Subcommand};

// The allocator of the `lessor` binary: memory per lease depends on it.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Measurements of lessor beyond criterion's reach.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write a journal of N bound leases (distinct addresses, MACs and clients) into
    /// STATE_DIR/journal.
    JournalGen(journal_gen::GenArgs),
    /// Replay the journal exactly as the server does at startup; report time and memory.
    Replay(replay::Target),
    /// Replay's work split into phases (read, checksums, decode, fold, restore), each timed
    /// and weighed, plus a lazy fold for comparison.
    ReplayBreakdown(replay::Target),
    /// DHCPv4 load as a relay on loopback (like perfdhcp, batched): DORAs open or closed
    /// loop, drops, latency percentiles, and a check that no address went to two clients.
    Load(load::v4::LoadArgs),
    /// A stateless DHCPv4 server answering every DISCOVER and REQUEST: the ceiling a load
    /// generator and a real server can reach on this machine.
    NullResponder(null_responder::NullArgs),
    /// DHCPv6 load as one relay agent on loopback (like perfdhcp -6 -A 1, batched): SOLICIT,
    /// ADVERTISE, REQUEST, REPLY (or rapid commit), renew and release mixes, IA_NA and IA_PD,
    /// drops, latency percentiles, and a check that no address or prefix went to two clients.
    Load6(load::v6::LoadArgs),
    /// A stateless DHCPv6 server answering every relayed SOLICIT, REQUEST, RENEW and RELEASE:
    /// the ceiling `load6` and perfdhcp -6 can reach on this machine.
    NullResponder6(null_responder6::NullArgs6),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    if matches!(
        cli.command,
        Command::Load(_)
            | Command::Load6(_)
            | Command::NullResponder(_)
            | Command::NullResponder6(_)
    ) {
        // The load tools must not disturb what they measure: with transparent huge pages on,
        // their allocations woke kcompactd, whose page migration stalled the server under test
        // for 13 ms every 100 ms or so (perf sched, docs/PERFORMANCE.md).
        let _ = nix::sys::prctl::set_thp_disable(true);
    }
    let res = match &cli.command {
        Command::JournalGen(a) => journal_gen::run(a),
        Command::Replay(t) => replay::replay(t),
        Command::ReplayBreakdown(t) => replay::breakdown(t),
        Command::Load(a) => load::v4::run(a),
        Command::NullResponder(a) => null_responder::run(a),
        Command::Load6(a) => load::v6::run(a),
        Command::NullResponder6(a) => null_responder6::run(a),
    };
    match res {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lessor-perf: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
