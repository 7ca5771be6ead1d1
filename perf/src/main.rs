//! lessor-perf: measurements of lessor that criterion cannot make: multi-million-lease
//! journals, the server's startup replay against them, and where its time and memory go.
//!
//! Every subcommand prints one JSON object on stdout (progress goes to stderr), so runs can be
//! collected and compared.

mod journal_gen;
mod mem;
mod replay;
mod synth;

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
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let res = match &cli.command {
        Command::JournalGen(a) => journal_gen::run(a),
        Command::Replay(t) => replay::replay(t),
        Command::ReplayBreakdown(t) => replay::breakdown(t),
    };
    match res {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lessor-perf: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
