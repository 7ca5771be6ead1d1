//! What the DHCPv4 and DHCPv6 handlers share: the shape of the datagram a handler takes, of its
//! result and of an interface learned at startup, and the look-up of the subnet containing an
//! address. Each family names its instance (`v4::Received`, `v4::Outcome`, `v6::Outcome`, ...)
//! with a type alias, so the handlers stay monomorphic.

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

/// A datagram as a handler takes it: its bytes, how it reached the server (the family's
/// `Arrival`, `A`) and when. Each family names its instance `Received`.
#[derive(Clone, Copy, Debug)]
pub struct Received<'a, A> {
    /// The datagram's bytes.
    pub data: &'a [u8],
    /// How it reached the server.
    pub arrival: A,
    /// When it was received.
    pub now: lessor_engine::Time,
    /// The load-balancing scopes the server answers now (bit `s` for scope `s`, see
    /// [`crate::scope`]); ignored outside load-balancing.
    pub scopes: u8,
}

impl<'a, A> Received<'a, A> {
    /// `data`, which arrived as `arrival` says at `now`, for a server that answers every
    /// scope.
    pub fn new(data: &'a [u8], arrival: A, now: lessor_engine::Time) -> Self {
        Received {
            data,
            arrival,
            now,
            scopes: crate::scope::ALL,
        }
    }

    /// The same datagram, for a server that answers the scopes in `mask`.
    pub fn serving(self, mask: u8) -> Self {
        Received {
            scopes: mask,
            ..self
        }
    }
}

/// Declares a family's `NoReply` (why no reply was sent, each reason with a stable counter
/// label) and its `Outcome` over the `Reply` in scope. `Malformed(Malformed)` comes first and
/// takes its label from the `Malformed` in scope. The stats count reasons by these labels, so
/// a label never changes.
macro_rules! no_reply_reasons {
    ($($(#[$doc:meta])* $reason:ident => $label:literal,)*) => {
        /// Why no reply was sent.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum NoReply {
            /// The datagram failed validation.
            Malformed(Malformed),
            $($(#[$doc])* $reason,)*
        }

        impl NoReply {
            /// A stable short name, used as a counter label.
            pub fn label(self) -> &'static str {
                match self {
                    NoReply::Malformed(m) => m.label(),
                    $(NoReply::$reason => $label,)*
                }
            }
        }

        /// The result of handling one datagram.
        pub type Outcome = $crate::proto::Outcome<Reply, NoReply>;
    };
}
pub(crate) use no_reply_reasons;

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

/// A subnet prefix of one family, as [`SubnetIndex`] searches it.
pub(crate) trait Prefix: Copy {
    /// The family's address.
    type Addr: Ord + Copy;
    /// The prefix's first address.
    fn network(&self) -> Self::Addr;
    /// Whether `ip` lies in the prefix.
    fn holds(&self, ip: Self::Addr) -> bool;
}

impl Prefix for ipnet::Ipv4Net {
    type Addr = std::net::Ipv4Addr;
    fn network(&self) -> Self::Addr {
        ipnet::Ipv4Net::network(self)
    }
    fn holds(&self, ip: Self::Addr) -> bool {
        self.contains(&ip)
    }
}

impl Prefix for ipnet::Ipv6Net {
    type Addr = std::net::Ipv6Addr;
    fn network(&self) -> Self::Addr {
        ipnet::Ipv6Net::network(self)
    }
    fn holds(&self, ip: Self::Addr) -> bool {
        self.contains(&ip)
    }
}

/// The configured subnets' indexes sorted by network address, for containment look-ups.
///
/// Subnets never overlap (the config refuses it), so the subnet containing an address, if
/// any, is the last one whose network address is not above it.
#[derive(Clone, Debug)]
pub(crate) struct SubnetIndex(Vec<usize>);

impl SubnetIndex {
    /// Sorts the subnets `0..count`; `net(i)` is subnet `i`'s prefix.
    pub(crate) fn new<P: Prefix>(count: usize, net: impl Fn(usize) -> P) -> Self {
        let mut by_network: Vec<usize> = (0..count).collect();
        by_network.sort_by_key(|&i| net(i).network());
        SubnetIndex(by_network)
    }

    /// The subnet containing `ip`, if any; `net(i)` is subnet `i`'s prefix.
    pub(crate) fn containing<P: Prefix>(
        &self,
        ip: P::Addr,
        net: impl Fn(usize) -> P,
    ) -> Option<usize> {
        let pos = self.0.partition_point(|&i| net(i).network() <= ip);
        let i = *self.0.get(pos.checked_sub(1)?)?;
        net(i).holds(ip).then_some(i)
    }
}

/// The reply in `o`; panics with the reason when there is none (tests of both families).
#[cfg(test)]
pub(crate) fn reply<R: std::fmt::Debug, N: std::fmt::Debug>(o: Outcome<R, N>) -> R {
    match o {
        Outcome::Reply(r) => r,
        Outcome::NoReply(n) => panic!("expected a reply, got {n:?}"),
    }
}

/// Asserts that `o` is no reply, for the reason `want` (tests of both families).
#[cfg(test)]
#[track_caller]
pub(crate) fn assert_no_reply<R, N>(o: Outcome<R, N>, want: N)
where
    R: std::fmt::Debug,
    N: std::fmt::Debug + PartialEq,
{
    assert_eq!(no_reply(o), want);
}

/// The reason in `o` there is no reply; panics when there is one (tests of both families).
#[cfg(test)]
pub(crate) fn no_reply<R: std::fmt::Debug, N: std::fmt::Debug>(o: Outcome<R, N>) -> N {
    match o {
        Outcome::NoReply(n) => n,
        Outcome::Reply(r) => panic!("expected no reply, got {r:?}"),
    }
}
