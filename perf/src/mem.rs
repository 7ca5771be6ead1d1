//! The process's memory as the kernel counts it (`/proc/self/status`).

use anyhow::Context;
use serde::Serialize;

/// Resident set now and at its peak, in bytes.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub(crate) struct Rss {
    /// `VmRSS`.
    pub(crate) now: u64,
    /// `VmHWM`: the peak since the process started.
    pub(crate) peak: u64,
}

/// Reads `VmRSS` and `VmHWM`.
pub(crate) fn rss() -> anyhow::Result<Rss> {
    let status =
        std::fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    let field = |name: &str| -> anyhow::Result<u64> {
        let line = status
            .lines()
            .find(|l| l.starts_with(name))
            .with_context(|| format!("no {name} in /proc/self/status"))?;
        let kb: u64 = line[name.len()..]
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .with_context(|| format!("bad {name} line {line:?}"))?;
        Ok(kb * 1024)
    };
    Ok(Rss {
        now: field("VmRSS:")?,
        peak: field("VmHWM:")?,
    })
}
