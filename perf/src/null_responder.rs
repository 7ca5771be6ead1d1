//! `null-responder`: a stateless DHCPv4 server that answers every DISCOVER with an OFFER and
//! every REQUEST with an ACK, to measure what a load generator can reach at all.
//!
//! It keeps no lease: yiaddr is derived from the chaddr field (see [`Responder`]), and each
//! reply goes to the request's source address and port. Workers are one `SO_REUSEPORT` group,
//! steered by client like lessor's, each pinned to a core and receiving and sending in batches
//! (`recvmmsg`, `sendmmsg`), so its cost per exchange is the kernel's and little else: the
//! ceiling a real server approaches.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use anyhow::Context;
use lessor_net::v4::Socket;

use crate::batch_socket::BatchSocket;
use crate::null_common::{self, NullRunArgs};
use crate::wire::Responder;

/// `null-responder` arguments.
#[derive(Debug, clap::Args)]
pub(crate) struct NullArgs {
    /// Address to listen on.
    #[arg(long, default_value_t = Ipv4Addr::LOCALHOST)]
    bind: Ipv4Addr,
    /// UDP port to listen on.
    #[arg(long, default_value_t = 6767)]
    port: u16,
    #[command(flatten)]
    run: NullRunArgs,
    /// Option 54 in every reply.
    #[arg(long, default_value_t = Ipv4Addr::LOCALHOST)]
    server_id: Ipv4Addr,
    /// Option 51 in every reply, seconds.
    #[arg(long, default_value_t = 3600)]
    lease_time: u32,
}

/// Runs the responder; with `--duration`, prints a JSON report on stdout at the end.
pub(crate) fn run(a: &NullArgs) -> anyhow::Result<()> {
    a.run.check()?;
    let socks = Socket::open_group(a.bind, a.port, a.run.workers)
        .with_context(|| format!("listening on {}", SocketAddr::new(a.bind.into(), a.port)))?;
    // Like lessor: the kernel hands client n's requests to worker n % workers.
    lessor_net::v4::attach_steering(&socks).context("attaching the steering program")?;
    let responder = Responder {
        server_id: a.server_id,
        lease_time: a.lease_time,
    };
    null_common::run(
        &a.run,
        "null-responder",
        "null",
        socks,
        move |req, out| responder.answer(req, out),
        SocketAddrV4::new(a.bind, a.port),
    )
}
