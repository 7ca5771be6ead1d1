//! Pool usage by subnet: the engines' per-pool counts, summed over each subnet's pools.
//!
//! What `lessor_leases`, `lessor_pool_size` and Kea's `subnet[ID].…` statistics show; the
//! orphans reloads left ([`Reloader::orphans`](crate::reload::Reloader::orphans)) are
//! counted in the subnet they were in. Engine pool ids map to subnets through the layout the
//! contexts number them by (`v4::Context::engine_config`, `v6::Context::engine_config`: a
//! configured pool may be two engine pools, in load-balancing).

use std::net::IpAddr;

use lessor_engine::v6::IaKind;

use super::Parts;
use crate::config::Config;

/// What a subnet hands out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Address,
    Prefix,
}

impl Kind {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Kind::Address => "address",
            Kind::Prefix => "prefix",
        }
    }
}

/// One subnet's pools of one kind, summed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Usage {
    /// "v4" or "v6".
    pub(crate) family: &'static str,
    /// The subnet's `id` from the config; `None` for a subnet a reload removed, which only
    /// orphans name.
    pub(crate) id: Option<u32>,
    /// The subnet's CIDR, its identity.
    pub(crate) cidr: String,
    pub(crate) kind: Kind,
    /// Dynamic addresses (prefixes) in its pools.
    pub(crate) total: u128,
    pub(crate) offered: u64,
    pub(crate) bound: u64,
    pub(crate) declined: u64,
    pub(crate) released: u64,
    pub(crate) expired: u64,
    /// Bound leases a reload left outside every pool.
    pub(crate) orphaned: u64,
}

impl Usage {
    fn new(family: &'static str, id: Option<u32>, cidr: String, kind: Kind) -> Usage {
        Usage {
            family,
            id,
            cidr,
            kind,
            total: 0,
            offered: 0,
            bound: 0,
            declined: 0,
            released: 0,
            expired: 0,
            orphaned: 0,
        }
    }

    /// Records by state, as `lessor_leases` labels them.
    pub(crate) fn states(&self) -> [(&'static str, u64); 6] {
        [
            ("bound", self.bound),
            ("offered", self.offered),
            ("declined", self.declined),
            ("released", self.released),
            ("expired", self.expired),
            ("orphaned", self.orphaned),
        ]
    }
}

/// The subnet (index) of each DHCPv4 engine pool, and of each DHCPv6 one with its kind.
fn owners(config: &Config) -> (Vec<usize>, Vec<(usize, Kind)>) {
    let v4 = (crate::v4::layout(config).parts().iter())
        .map(|p| p.subnet)
        .collect();
    let v6 = (crate::v6::layout(config).parts().iter())
        .map(|p| match p.kind {
            IaKind::Na => (p.subnet, Kind::Address),
            IaKind::Pd => (p.subnet, Kind::Prefix),
        })
        .collect();
    (v4, v6)
}

/// Every subnet's usage: the v4 subnets (kind address), then each v6 subnet's addresses
/// and prefixes, then any removed subnet that still has orphans.
pub(crate) fn usage(parts: &Parts) -> Vec<Usage> {
    let mut out = pools(parts);
    for o in parts.reload.orphans(crate::worker::now()) {
        let (family, kind) = match o.addr {
            IpAddr::V4(_) => ("v4", Kind::Address),
            IpAddr::V6(_) if o.len == 128 => ("v6", Kind::Address),
            IpAddr::V6(_) => ("v6", Kind::Prefix),
        };
        let at =
            (out.iter()).position(|u| u.family == family && u.kind == kind && u.cidr == o.subnet);
        let at = at.unwrap_or_else(|| {
            out.push(Usage::new(family, None, o.subnet, kind));
            out.len() - 1
        });
        out[at].orphaned += 1;
    }
    out
}

/// The usage of the configured subnets' pools.
fn pools(parts: &Parts) -> Vec<Usage> {
    let config = &parts.config;
    let (owners4, owners6) = owners(config);
    let mut out: Vec<Usage> = (config.v4.subnets.iter())
        .map(|s| Usage::new("v4", Some(s.id), s.net.to_string(), Kind::Address))
        .collect();
    for (pool, stat) in parts.engine.stats().iter().enumerate() {
        let Some(&subnet) = owners4.get(pool) else {
            continue;
        };
        let u = &mut out[subnet];
        u.total += u128::from(stat.total);
        u.offered += stat.offered;
        u.bound += stat.bound;
        u.declined += stat.declined;
        u.released += stat.released;
        u.expired += stat.expired;
    }
    let Some(engine6) = &parts.engine6 else {
        return out;
    };
    let first6 = out.len();
    for s in &config.v6.subnets {
        for kind in [Kind::Address, Kind::Prefix] {
            out.push(Usage::new("v6", Some(s.id), s.net.to_string(), kind));
        }
    }
    for (pool, stat) in engine6.stats().iter().enumerate() {
        let Some(&(subnet, kind)) = owners6.get(pool) else {
            continue;
        };
        let u = &mut out[first6 + 2 * subnet + usize::from(kind == Kind::Prefix)];
        u.total = u.total.saturating_add(stat.total);
        u.offered += stat.offered;
        u.bound += stat.bound;
        u.declined += stat.declined;
        u.released += stat.released;
        u.expired += stat.expired;
    }
    out
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use lessor_engine::v4::PoolId as V4Pool;
    use lessor_engine::v6::{IaKind, PoolId as V6Pool, PoolSpec};

    use crate::config::{Assignments, Config};
    use crate::v4;
    use crate::v6;

    use super::{Kind, owners};

    const A: Kind = Kind::Address;
    const P: Kind = Kind::Prefix;

    const CONFIG: &str = r#"
v4:
  subnets:
    - subnet: 10.0.0.0/24
      pools: [ "10.0.0.10-10.0.0.20", "10.0.0.30-10.0.0.40" ]
    - subnet: 10.0.1.0/24
      pools: [ "10.0.1.10-10.0.1.20" ]
v6:
  subnets:
    - subnet: 2001:db8:1::/64
      pools: [ "2001:db8:1::100-2001:db8:1::1ff" ]
      pd_pools: [ { prefix: "2001:db8:100::/40", delegated_len: 56 } ]
    - subnet: 2001:db8:2::/64
      pools: [ "2001:db8:2::100-2001:db8:2::1ff" ]
"#;

    /// The numbering here is the contexts': each engine pool lies in the subnet it is
    /// mapped to, and is of its kind; in load-balancing each configured pool is two.
    #[test]
    fn pool_ids_map_to_the_subnets_the_contexts_built_them_from() {
        let balanced = format!("{CONFIG}{}", crate::scope::BALANCED_HA);
        let cases = [
            (CONFIG, vec![0, 0, 1], vec![(0, A), (0, P), (1, A)]),
            (
                balanced.as_str(),
                vec![0, 0, 0, 0, 1, 1],
                vec![(0, A), (0, A), (0, P), (0, P), (1, A), (1, A)],
            ),
        ];
        for (yaml, want4, want6) in cases {
            let config = Config::from_yaml_str(yaml).unwrap();
            let (o4, o6) = owners(&config);
            let ctx4 = v4::Context::new(&config, &[]);
            let e4 = ctx4.engine_config(1);
            assert_eq!(o4, want4);
            assert_eq!(o4.len(), e4.pools.len());
            for (i, (pool, &subnet)) in e4.pools.iter().zip(&o4).enumerate() {
                assert!(config.v4.subnets[subnet].net.contains(&pool.first));
                assert!(config.v4.subnets[subnet].net.contains(&pool.last));
                assert_eq!(ctx4.pool_subnet(V4Pool(i as u32)), Some(subnet));
            }
            let ctx6 = v6::Context::new(&config, &[0, 1], &[], Arc::new(Assignments::default()));
            let e6 = ctx6.engine_config(1);
            assert_eq!(o6, want6);
            assert_eq!(o6.len(), e6.pools.len());
            for (i, (pool, &(subnet, kind))) in e6.pools.iter().zip(&o6).enumerate() {
                let s = &config.v6.subnets[subnet];
                let ia = match (pool, kind) {
                    (PoolSpec::Na { first, last, .. }, Kind::Address) => {
                        assert!(s.net.contains(first) && s.net.contains(last));
                        IaKind::Na
                    }
                    (PoolSpec::Pd { prefix, .. }, Kind::Prefix) => {
                        assert!(s.pd_pools.iter().any(|p| p.prefix.contains(prefix)));
                        IaKind::Pd
                    }
                    other => panic!("pool of the wrong kind: {other:?}"),
                };
                assert_eq!(ctx6.pool_subnet(V6Pool(i as u32)), Some((subnet, ia)));
            }
        }
    }
}
