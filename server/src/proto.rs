//! What the DHCPv4 and DHCPv6 handlers share: the shape of a handler's result and of an
//! interface learned at startup. Each family names its instance (`v4::Outcome`,
//! `v6::Outcome`, ...) with a type alias, so the handlers stay monomorphic.

/// The result of handling one datagram: a reply of type `R`, or the reason `N` for none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome<R, N> {
    /// Send the reply now in the output buffer.
    Reply(R),
    /// Send nothing.
    NoReply(N),
}

impl<R, N> From<Result<R, N>> for Outcome<R, N> {
    fn from(r: Result<R, N>) -> Self {
        match r {
            Ok(reply) => Outcome::Reply(reply),
            Err(why) => Outcome::NoReply(why),
        }
    }
}

/// An interface the server listens on, learned at startup, with its addresses `A` of one
/// family.
#[derive(Clone, Debug)]
pub struct InterfaceInfo<A> {
    /// Kernel interface index.
    pub index: u32,
    /// Interface name.
    pub name: String,
    /// Its addresses of the family.
    pub addrs: Vec<A>,
}

/// The reply in `o`; panics with the reason when there is none (tests of both families).
#[cfg(test)]
pub(crate) fn reply<R: std::fmt::Debug, N: std::fmt::Debug>(o: Outcome<R, N>) -> R {
    match o {
        Outcome::Reply(r) => r,
        Outcome::NoReply(n) => panic!("expected a reply, got {n:?}"),
    }
}

/// The reason in `o` there is no reply; panics when there is one (tests of both families).
#[cfg(test)]
pub(crate) fn no_reply<R: std::fmt::Debug, N: std::fmt::Debug>(o: Outcome<R, N>) -> N {
    match o {
        Outcome::NoReply(n) => n,
        Outcome::Reply(r) => panic!("expected no reply, got {r:?}"),
    }
}
