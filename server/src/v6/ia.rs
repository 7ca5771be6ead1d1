//! The DHCPv6 messages that carry IAs (RFC 8415 §18.3): SOLICIT, REQUEST, RENEW, REBIND,
//! CONFIRM, RELEASE and DECLINE, each IA bound, extended or given back in the engine.

use std::net::Ipv6Addr;

use lessor_engine::v6::{BindError, BindRequest, IaKey, IaKind, PoolId, Resource, SolicitRequest};
use lessor_engine::{EventKind, LeaseState};

use super::context::{Static, Tables};
use super::handler::{Handling, NoReply, Reply};
use super::packet::{self, Ia, IaType, Kind, opt};
use super::reply::{Encoder, ReplyKind, Status};
use crate::config::Subnet6;

/// The resources of one IA kind in a subnet, and the client's static one.
struct Candidates<'c> {
    kind: IaKind,
    pools: &'c [PoolId],
    reserved: Option<Resource>,
}

impl<'h> Handling<'h, '_> {
    /// No subnet matches the client's link: as Kea, an ADVERTISE (SOLICIT) or REPLY whose every
    /// IA says NoAddrsAvail / NoPrefixAvail (RFC 8415 §18.3.9, §18.3.2), or NoBinding for a
    /// RENEW (§18.3.4), with the global options the ORO asks for.
    pub(super) fn no_subnet(&mut self) -> Result<Reply, NoReply> {
        let req = self.req;
        let kind = match req.kind {
            Kind::Solicit => ReplyKind::Advertise,
            _ => ReplyKind::Reply,
        };
        let mut enc = self.open(kind);
        for ia in req.ias() {
            let status = match (req.kind, ia.kind) {
                (Kind::Renew, _) => Status::NoBinding,
                (_, IaType::Pd) => Status::NoPrefixAvail,
                _ => Status::NoAddrsAvail,
            };
            write_ia(&mut enc, &ia, 0, 0, |e| e.status(status));
        }
        self.options(&mut enc, None, self.client_static(None));
        self.no_subnet = true;
        self.finish(enc, kind)
    }

    pub(super) fn subnet(&self, s: usize) -> &'h Subnet6 {
        let t: &'h Tables = self.t;
        &t.cfg.subnets[s]
    }

    /// The subnets on `s`'s link: `s` alone, or its shared network's, in order.
    fn link(&self, s: usize) -> &'h [usize] {
        let t: &'h Tables = self.t;
        &t.cfg.links[t.cfg.subnets[s].link].subnets
    }

    /// Whether `addr` is on `s`'s link (in any of its subnets).
    fn on_link(&self, s: usize, addr: Ipv6Addr) -> bool {
        self.link(s)
            .iter()
            .any(|&m| self.subnet(m).net.contains(&addr))
    }

    /// The subnet of `s`'s link that `r` belongs to (whose lifetimes it gets): the one holding
    /// the address, or the delegation pool holding the prefix; `s` when none does (a reserved
    /// prefix outside the pools).
    fn home(&self, s: usize, kind: IaKind, r: Resource) -> usize {
        self.home_in_link(s, kind, r).unwrap_or(s)
    }

    /// The subnet of `s`'s link that `r` belongs to, if any (see [`Self::home`]).
    fn home_in_link(&self, s: usize, kind: IaKind, r: Resource) -> Option<usize> {
        self.link(s).iter().copied().find(|&m| {
            let sub = self.subnet(m);
            match kind {
                IaKind::Na => sub.net.contains(&r.addr),
                IaKind::Pd => sub.pd_pools.iter().any(|p| p.prefix.contains(&r.addr)),
            }
        })
    }

    /// The pools and static resource for IAs of `kind`; the static one goes only to the first
    /// IA of its kind (`first`), and an address only when it is on the client's link.
    fn candidates(
        &self,
        s: usize,
        kind: IaKind,
        st: Option<Static<'_>>,
        first: bool,
    ) -> Candidates<'h> {
        let t: &'h Tables = self.t;
        let reserved = st.filter(|_| first).and_then(|st| match kind {
            IaKind::Na => st
                .address
                .filter(|a| self.on_link(s, *a))
                .map(Resource::address),
            IaKind::Pd => st.prefix,
        });
        let pools = match kind {
            IaKind::Na => &t.na_pools[self.scope][self.subnet(s).link],
            IaKind::Pd => &t.pd_pools[self.scope][self.subnet(s).link],
        };
        Candidates {
            kind,
            pools,
            reserved,
        }
    }

    /// Opens a reply of `kind` and writes each IA of the request into it: an IA_TA, which is
    /// not served, gets `refused`; any other what `per_ia` writes, given its key and
    /// candidates. Only the first IA of each kind may get the static resource. Returns the
    /// reply and the client's static assignment (for the options).
    fn each_ia(
        &mut self,
        s: usize,
        kind: ReplyKind,
        refused: Status,
        mut per_ia: impl FnMut(&mut Self, &mut Encoder, &Ia<'_>, IaKey, Candidates<'h>),
    ) -> (Encoder, Option<Static<'h>>) {
        let req = self.req;
        let st = self.client_static(Some(s));
        let mut enc = self.open(kind);
        let (mut first_na, mut first_pd) = (true, true);
        for ia in req.ias() {
            let Some(key) = self.key(&ia) else {
                write_ia(&mut enc, &ia, 0, 0, |e| e.status(refused));
                continue;
            };
            let first = match key.kind() {
                IaKind::Na => std::mem::replace(&mut first_na, false),
                IaKind::Pd => std::mem::replace(&mut first_pd, false),
            };
            let c = self.candidates(s, key.kind(), st, first);
            per_ia(self, &mut enc, &ia, key, c);
        }
        (enc, st)
    }

    fn key(&self, ia: &Ia<'_>) -> Option<IaKey> {
        let kind = match ia.kind {
            IaType::Na => IaKind::Na,
            IaType::Pd => IaKind::Pd,
            IaType::Ta => return None,
        };
        Some(IaKey::new(self.duid, ia.iaid, kind))
    }

    fn bind(
        &mut self,
        key: &IaKey,
        c: &Candidates<'_>,
        resource: Resource,
        s: usize,
    ) -> Result<Resource, BindError> {
        let sub = self.subnet(self.home(s, c.kind, resource));
        let req = BindRequest {
            client: key,
            address: resource,
            pools: c.pools,
            reserved: c.reserved == Some(resource),
            grant: lessor_engine::v6::Grant {
                preferred: sub.preferred_lifetime,
                valid: sub.valid_lifetime,
            },
        };
        let view = self.engine.bind(self.shard, &req, self.now, self.events)?;
        self.bound = true;
        let renewed = (self.events.last()).is_some_and(|e| e.kind == EventKind::Renewed);
        let n = &mut self.granted[usize::from(c.kind == IaKind::Pd)][usize::from(renewed)];
        *n = n.saturating_add(1);
        Ok(view.resource)
    }

    /// A fresh resource for the IA (held, then bound when `bind`).
    fn allocate(
        &mut self,
        key: &IaKey,
        c: &Candidates<'_>,
        hint: Option<Resource>,
        s: usize,
        bind: bool,
    ) -> Option<Resource> {
        let link = self.link(s);
        let view = if link.len() == 1 {
            let sr = SolicitRequest {
                client: key,
                pools: c.pools,
                reserved: c.reserved,
                requested: hint,
                info: (),
            };
            self.engine.solicit(self.shard, &sr, self.now)?
        } else {
            // A shared network: one subnet at a time, so the engine (which takes what its own
            // shard has free in any listed pool before borrowing) fills them in order. The
            // subnet of the IA's record, or of its hint, comes first: that is where the engine
            // gives the same resource back.
            let t: &'h Tables = self.t;
            let known = self
                .engine
                .lookup(self.shard, key)
                .map(|v| v.resource)
                .or(hint)
                .and_then(|r| self.home_in_link(s, c.kind, r));
            let order = known
                .into_iter()
                .chain(link.iter().copied().filter(|&m| Some(m) != known));
            let mut found = None;
            for m in order {
                let pools = match c.kind {
                    IaKind::Na => &t.subnet_na_pools[self.scope][m],
                    IaKind::Pd => &t.subnet_pd_pools[self.scope][m],
                };
                let sr = SolicitRequest {
                    client: key,
                    pools,
                    reserved: c.reserved,
                    requested: hint,
                    info: (),
                };
                found = self.engine.solicit(self.shard, &sr, self.now);
                if found.is_some() {
                    break;
                }
            }
            found?
        };
        if bind {
            self.bind(key, c, view.resource, s).ok()
        } else {
            Some(view.resource)
        }
    }

    /// RFC 8415 §18.3.1 / §18.3.9: an ADVERTISE, or with Rapid Commit (when the subnet allows
    /// it) a REPLY that binds.
    pub(super) fn solicit(&mut self, s: usize) -> Result<Reply, NoReply> {
        let req = self.req;
        let rapid = req.rapid_commit && self.subnet(s).rapid_commit;
        let kind = if rapid {
            ReplyKind::Reply
        } else {
            ReplyKind::Advertise
        };
        let (mut enc, st) = self.each_ia(s, kind, Status::NoAddrsAvail, |h, enc, ia, key, c| {
            let hint = listed(ia);
            match h.allocate(&key, &c, hint, s, rapid) {
                Some(r) => h.write_granted(enc, ia, s, r),
                // RFC 8415 §18.3.9: an IA we cannot serve comes back with NoAddrsAvail
                // (NoPrefixAvail for IA_PD) inside it, even when no IA is served, and the
                // requested options still go with it.
                None => {
                    h.exhausted = h.exhausted.saturating_add(1);
                    write_ia(enc, ia, 0, 0, |e| e.status(unavailable(c.kind)));
                }
            }
        });
        if rapid {
            enc.put(opt::RAPID_COMMIT, &[]);
        }
        if let (false, Some(p)) = (rapid, self.subnet(s).preference) {
            enc.put(packet::opt::PREFERENCE, &[p]);
        }
        self.options(&mut enc, Some(s), st);
        self.finish(enc, kind)
    }

    /// RFC 8415 §18.3.2: binds what the client asks for in each IA (what we advertised), or
    /// something else when that is gone.
    pub(super) fn request(&mut self, s: usize) -> Result<Reply, NoReply> {
        let (mut enc, st) = self.each_ia(
            s,
            ReplyKind::Reply,
            Status::NoAddrsAvail,
            |h, enc, ia, key, c| {
                let asked = listed(ia);
                if c.kind == IaKind::Na
                    && c.reserved.is_none()
                    && let Some(a) = asked.filter(|a| !h.on_link(s, a.addr))
                {
                    tracing::debug!(addr = %a.addr, "REQUEST for an address off the client's link");
                    write_ia(enc, ia, 0, 0, |e| e.status(Status::NotOnLink));
                    return;
                }
                // The static resource, else what the client asks for, else what we advertised.
                let target = c.reserved.or(asked).or_else(|| {
                    h.engine
                        .lookup(h.shard, &key)
                        .filter(|v| matches!(v.state, LeaseState::Offered | LeaseState::Bound))
                        .map(|v| v.resource)
                });
                let got = match target {
                    Some(r) => match h.bind(&key, &c, r, s) {
                        Ok(r) => Some(r),
                        // Gone, or not ours to give: give another one.
                        Err(_) => h.allocate(&key, &c, None, s, true),
                    },
                    None => h.allocate(&key, &c, None, s, true),
                };
                match got {
                    Some(r) => h.write_granted(enc, ia, s, r),
                    None => {
                        h.exhausted = h.exhausted.saturating_add(1);
                        write_ia(enc, ia, 0, 0, |e| e.status(unavailable(c.kind)));
                    }
                }
            },
        );
        self.options(&mut enc, Some(s), st);
        self.finish(enc, ReplyKind::Reply)
    }

    /// RFC 8415 §18.3.4 (RENEW) and §18.3.5 (REBIND): extends each IA's binding. What the
    /// client lists that is not (or no longer) its binding comes back with lifetimes 0.
    pub(super) fn extend(&mut self, s: usize, rebind: bool) -> Result<Reply, NoReply> {
        let (mut enc, st) = self.each_ia(
            s,
            ReplyKind::Reply,
            Status::NoBinding,
            |h, enc, ia, key, c| {
                let current = self
                    .engine
                    .lookup(h.shard, &key)
                    .filter(|v| v.state != LeaseState::Declined)
                    .map(|v| v.resource);
                // A changed static assignment replaces the binding; without any binding a REBIND
                // may take back what the client lists when it is still free (§18.3.5).
                let target = match (current, c.reserved) {
                    (Some(cur), Some(r)) if cur != r => Some(r),
                    (Some(cur), _) => Some(cur),
                    (None, _) if rebind => listed(ia),
                    (None, _) => None,
                };
                let Some(target) = target else {
                    write_ia(enc, ia, 0, 0, |e| e.status(Status::NoBinding));
                    return;
                };
                let result = h.bind(&key, &c, target, s);
                if !rebind
                    && current.is_some()
                    && matches!(result, Err(BindError::Taken | BindError::Quarantined))
                {
                    write_ia(enc, ia, 0, 0, |e| e.status(Status::NoBinding));
                    return;
                }
                let sub = h.subnet(h.home(s, c.kind, target));
                let (t1, t2) = match result {
                    Ok(_) => (sub.renew_time, sub.rebind_time),
                    Err(_) => (0, 0),
                };
                let (preferred, valid) = (sub.preferred_lifetime, sub.valid_lifetime);
                let pd_exclude = h.pd_exclude_for(&key, target);
                let kind = c.kind;
                write_ia(enc, ia, t1, t2, |e| {
                    if result.is_ok() {
                        e.resource(
                            kind == IaKind::Pd,
                            target.addr,
                            target.len,
                            preferred,
                            valid,
                            pd_exclude,
                        );
                    } else {
                        // Not (or no longer) appropriate, or another's: stop using it.
                        e.resource(kind == IaKind::Pd, target.addr, target.len, 0, 0, None);
                    }
                    for x in ia.entries() {
                        let r = Resource::prefix(x.addr, x.len);
                        if r != target {
                            e.resource(kind == IaKind::Pd, x.addr, x.len, 0, 0, None);
                        }
                    }
                });
            },
        );
        self.options(&mut enc, Some(s), st);
        self.finish(enc, ReplyKind::Reply)
    }

    /// RFC 8415 §18.3.3: are the client's addresses on its link?
    pub(super) fn confirm(&mut self, s: usize) -> Result<Reply, NoReply> {
        let req = self.req;
        let mut any = false;
        let mut on_link = true;
        for ia in req.ias().filter(|ia| ia.kind != IaType::Pd) {
            for e in ia.entries() {
                any = true;
                on_link &= self.on_link(s, e.addr);
            }
        }
        if !any {
            return Err(NoReply::NothingToConfirm);
        }
        let mut enc = self.open(ReplyKind::Reply);
        enc.status(if on_link {
            Status::Success
        } else {
            Status::NotOnLink
        });
        self.options(&mut enc, Some(s), None);
        self.finish(enc, ReplyKind::Reply)
    }

    /// RFC 8415 §18.3.7 (RELEASE) and §18.3.8 (DECLINE): each listed resource the IA holds is
    /// released (declined: quarantined); IAs with none get NoBinding. DECLINE is about
    /// addresses only: its IA_PDs are ignored.
    pub(super) fn release_or_decline(&mut self, decline: bool) -> Result<Reply, NoReply> {
        let req = self.req;
        let mut enc = self.open(ReplyKind::Reply);
        for ia in req.ias() {
            if decline && ia.kind == IaType::Pd {
                continue;
            }
            let mut done = false;
            if let Some(key) = self.key(&ia) {
                for e in ia.entries() {
                    let r = Resource::prefix(e.addr, e.len);
                    let hit = if decline {
                        self.engine
                            .decline(self.shard, &key, r, self.now, self.events)
                    } else {
                        self.engine
                            .release(self.shard, &key, r, self.now, self.events)
                    };
                    if hit && decline {
                        tracing::warn!(addr = %e.addr, duid = %super::format_duid(self.duid),
                            "client declined the address: it is in use on the network; quarantined");
                    }
                    done |= hit;
                }
            }
            if !done {
                write_ia(&mut enc, &ia, 0, 0, |e| e.status(Status::NoBinding));
            }
        }
        // §18.3.7 / §18.3.8: the identifiers and the statuses, no configuration.
        enc.status(Status::Success);
        self.finish(enc, ReplyKind::Reply)
    }

    /// The PD-Exclude payload for a prefix the IA gets, when its pool has an excluded prefix
    /// and the client asked for option 67 (RFC 6603 §4.1).
    fn pd_exclude_for(&self, key: &IaKey, r: Resource) -> Option<&[u8]> {
        if key.kind() != IaKind::Pd || !self.req.requests(opt::PD_EXCLUDE) {
            return None;
        }
        let view = self.engine.lookup(self.shard, key)?;
        if view.resource != r {
            return None;
        }
        self.t
            .pools
            .get(view.pool?.0 as usize)?
            .pd_exclude
            .as_deref()
    }

    /// An IA with the resource it gets and the subnet's timers and lifetimes.
    fn write_granted(&self, enc: &mut Encoder, ia: &Ia<'_>, s: usize, r: Resource) {
        let prefix = ia.kind == IaType::Pd;
        let kind = if prefix { IaKind::Pd } else { IaKind::Na };
        let sub = self.subnet(self.home(s, kind, r));
        let pd_exclude = self.key(ia).and_then(|k| self.pd_exclude_for(&k, r));
        let (preferred, valid) = (sub.preferred_lifetime, sub.valid_lifetime);
        write_ia(enc, ia, sub.renew_time, sub.rebind_time, |e| {
            e.resource(prefix, r.addr, r.len, preferred, valid, pd_exclude);
        });
    }
}

/// The first address or prefix the client lists in `ia`, unless it is the unspecified address
/// (which some clients send as a mere length hint).
fn listed(ia: &Ia<'_>) -> Option<Resource> {
    ia.first()
        .filter(|e| !e.addr.is_unspecified())
        .map(|e| Resource::prefix(e.addr, e.len))
}

fn unavailable(kind: IaKind) -> Status {
    match kind {
        IaKind::Na => Status::NoAddrsAvail,
        IaKind::Pd => Status::NoPrefixAvail,
    }
}

/// Writes an IA option echoing `ia`'s type and IAID, with timers `t1`/`t2` (IA_TA has none)
/// and a body.
fn write_ia(enc: &mut Encoder, ia: &Ia<'_>, t1: u32, t2: u32, body: impl FnOnce(&mut Encoder)) {
    let code = match ia.kind {
        IaType::Na => opt::IA_NA,
        IaType::Ta => opt::IA_TA,
        IaType::Pd => opt::IA_PD,
    };
    let m = enc.open(code);
    enc.extend(&ia.iaid.to_be_bytes());
    if ia.kind != IaType::Ta {
        enc.extend(&t1.to_be_bytes());
        enc.extend(&t2.to_be_bytes());
    }
    body(enc);
    enc.close(m);
}
