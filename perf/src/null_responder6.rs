//! `null-responder6`: a stateless DHCPv6 server that answers every SOLICIT with an ADVERTISE and
//! every REQUEST, RENEW, REBIND and RELEASE with a REPLY, to measure what a load generator (or
//! `perfdhcp -6`) can reach at all.
//!
//! It keeps no lease: addresses and delegated prefixes are derived from the client's DUID (see
//! [`Responder`]), relay levels are unwrapped and wrapped back with their Interface-IDs, and
//! each reply goes to the request's source address and port. Workers are one `SO_REUSEPORT`
//! group, each pinned to a core and receiving and sending in batches (`recvmmsg`, `sendmmsg`),
//! as in `null-responder`, and steered like lessor's: the group's classic BPF program hands
//! each datagram to the worker of its client's DUID (`lessor_net::v6::attach_steering`), so one
//! relay's clients spread over the workers.

use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6};

use anyhow::{Context, ensure};
use lessor_net::v6::Socket;

use crate::batch_socket::BatchSocket;
use crate::null_common::{self, NullRunArgs};
use crate::wire6::{NULL_SERVER_DUID, Responder};

/// `null-responder6` arguments.
#[derive(Debug, clap::Args)]
pub(crate) struct NullArgs6 {
    /// Address to listen on.
    #[arg(long, default_value_t = Ipv6Addr::LOCALHOST)]
    bind: Ipv6Addr,
    /// UDP port to listen on.
    #[arg(long, default_value_t = 6547)]
    port: u16,
    #[command(flatten)]
    run: NullRunArgs,
    /// IA_NA addresses: this /64, the lower 64 bits from the client's DUID.
    #[arg(long, default_value = "fd00:231::")]
    na_prefix: Ipv6Addr,
    /// IA_PD prefixes: inside this prefix (`ADDR/LEN`), the client's DUID filling the bits up
    /// to --pd-len.
    #[arg(long, default_value = "fd00:2300::/32")]
    pd_prefix: String,
    /// Delegated prefix length.
    #[arg(long, default_value_t = 56)]
    pd_len: u8,
    /// Preferred lifetime, seconds (T1 and T2 are 50% and 80% of it).
    #[arg(long, default_value_t = 3600)]
    preferred: u32,
    /// Valid lifetime, seconds.
    #[arg(long, default_value_t = 7200)]
    valid: u32,
    /// Answer a SOLICIT with Rapid Commit with an ADVERTISE anyway.
    #[arg(long)]
    no_rapid_commit: bool,
}

/// `ADDR/LEN` with the bits after LEN zero.
fn parse_prefix(s: &str) -> anyhow::Result<(u128, u8)> {
    let (a, l) = s
        .split_once('/')
        .with_context(|| format!("{s:?}: write ADDR/LEN"))?;
    let a: Ipv6Addr = a.parse().with_context(|| format!("{s:?}: bad address"))?;
    let l: u8 = l.parse().with_context(|| format!("{s:?}: bad length"))?;
    ensure!(l <= 128, "{s:?}: length above 128");
    let a = u128::from(a);
    let host = u128::MAX.checked_shr(u32::from(l)).unwrap_or(0);
    ensure!(a & host == 0, "{s:?}: bits set after the prefix length");
    Ok((a, l))
}

/// Runs the responder; with `--duration`, prints a JSON report on stdout at the end.
pub(crate) fn run(a: &NullArgs6) -> anyhow::Result<()> {
    a.run.check()?;
    let (pd_base, pd_base_len) = parse_prefix(&a.pd_prefix).context("--pd-prefix")?;
    ensure!(
        pd_base_len < a.pd_len && a.pd_len <= 128,
        "--pd-len must be longer than --pd-prefix's length and at most 128"
    );
    ensure!(
        u128::from(a.na_prefix) as u64 == 0,
        "--na-prefix must be a /64 (lower 64 bits zero)"
    );
    let responder = Responder {
        server_duid: NULL_SERVER_DUID,
        na_prefix: (u128::from(a.na_prefix) >> 64) as u64,
        pd_base,
        pd_base_len,
        pd_len: a.pd_len,
        preferred: a.preferred,
        valid: a.valid,
        rapid_commit: !a.no_rapid_commit,
    };
    let socks = Socket::open_group(a.bind, a.port, a.run.workers)
        .with_context(|| format!("listening on {}", SocketAddr::new(a.bind.into(), a.port)))?;
    // Like lessor: the kernel hands each client's requests to the worker of its DUID.
    lessor_net::v6::attach_steering(&socks).context("attaching the DHCPv6 steering program")?;
    null_common::run(
        &a.run,
        "null-responder6",
        "null6",
        socks,
        move |req, out| responder.answer(req, out),
        SocketAddrV6::new(a.bind, a.port, 0, 0),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes() {
        assert_eq!(
            parse_prefix("fd00:2300::/32").expect("parses"),
            (0xfd00_2300_u128 << 96, 32)
        );
        assert!(parse_prefix("fd00:2300::1/32").is_err());
        assert!(parse_prefix("fd00:2300::").is_err());
        assert!(parse_prefix("fd00::/129").is_err());
        assert_eq!(parse_prefix("::/0").expect("parses"), (0, 0));
    }
}
