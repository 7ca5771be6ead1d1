//! The lease writes `POST /` runs: `lease4-add` and `lease6-add`, `-update`, `-del`, `-wipe`,
//! and `leases-reclaim`, with Kea's argument names, texts and result codes.
//!
//! A write changes the engine shard its client is steered to (DHCPv4: by `hw-address`, as
//! the kernel steers the client's packets; DHCPv6: by DUID), then journals the events on the
//! control server's own lane, the last one, and answers success only once they are durable
//! (with `journal.sync: group`). A journal that has not synced them within [`DURABLE_WAIT`]
//! gets result 1; the change stays made and is journaled when the disk allows.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::PoisonError;
use std::time::Duration;

use lessor_engine::LeaseState;
use lessor_engine::v4::{self, ClientKey, HwAddr, LeaseInfo, PutError};
use lessor_engine::v6::{self, IaKey, IaKind, Resource};
use serde_json::Value;

use super::Parts;
use super::commands::{Service, lease4_by_identifier, lease6_at, lease6_by_identifier};
use super::kea::{Answer, Args, Code};
use super::leases::{hex_opt, subnet_id};
use crate::worker::{LeaseChange, now};

/// How long a write waits for its events to be durable before it answers result 1.
const DURABLE_WAIT: Duration = Duration::from_secs(10);

/// Journals `events` on the control lane and waits until they are durable.
fn journal<E: LeaseChange>(parts: &Parts, events: &[E]) -> Result<(), Answer> {
    let mut lane = parts.lane.lock().unwrap_or_else(PoisonError::into_inner);
    let Some(last) = events.iter().map(|e| lane.append(&e.record())).last() else {
        return Ok(());
    };
    if lane.wait_durable(last, DURABLE_WAIT) {
        return Ok(());
    }
    Err(Answer::error(format!(
        "the change is made but not durable yet: the journal has not synced it within {} s \
         (journal: {:?})",
        DURABLE_WAIT.as_secs(),
        parts.journal.health()
    )))
}

/// Answers `done` once `events` are durable, or why they are not.
fn durable<E: LeaseChange>(parts: &Parts, events: &[E], done: Answer) -> Answer {
    match journal(parts, events) {
        Ok(()) => done,
        Err(e) => e,
    }
}

/// A boolean argument, if given.
fn flag(args: &Args<'_>, key: &str) -> Result<Option<bool>, Answer> {
    match args.get(key) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(other) => Err(Answer::error(format!(
            "'{key}' must be a boolean, not {other}"
        ))),
    }
}

/// A required hex argument.
fn need_hex(args: &Args<'_>, key: &str) -> Result<Vec<u8>, Answer> {
    hex_opt(args, key)?.ok_or_else(|| Answer::error(format!("missing '{key}' argument")))
}

/// The `ip-address` argument of family `A`.
fn address<A: std::str::FromStr>(args: &Args<'_>, family: &str) -> Result<A, Answer> {
    let text = args.need_str("ip-address")?;
    text.parse().map_err(|_| {
        Answer::error(format!(
            "'ip-address' must be an {family} address, not {text:?}"
        ))
    })
}

/// The id of the configured subnet that holds `addr`, checked against `subnet-id` when it
/// is given (0 means "find it", as in Kea).
fn subnet_of(parts: &Parts, addr: IpAddr, args: &Args<'_>) -> Result<u32, Answer> {
    let id = subnet_id(&parts.config, addr);
    if id == 0 {
        return Err(Answer::error(format!(
            "'ip-address' {addr} is in no configured subnet"
        )));
    }
    match args.uint("subnet-id", u64::from(u32::MAX))? {
        Some(given) if given != 0 && given != u64::from(id) => Err(Answer::error(format!(
            "'subnet-id' {given} is not the subnet of {addr}, which is {id}"
        ))),
        _ => Ok(id),
    }
}

/// The `subnet-id` a wipe names, checked against `ids` (the family's subnets); `None` for
/// every subnet.
fn wipe_subnet(args: &Args<'_>, ids: &[u32]) -> Result<Option<u32>, Answer> {
    match args.uint("subnet-id", u64::from(u32::MAX))? {
        None | Some(0) => Ok(None),
        Some(id) if ids.contains(&(id as u32)) => Ok(Some(id as u32)),
        Some(id) => Err(Answer::error(format!(
            "'subnet-id' {id} names no configured subnet"
        ))),
    }
}

/// Kea's answer to a wipe of `n` leases from `subnets`.
fn wiped(family: &str, n: usize, subnets: &[u32]) -> Answer {
    let ids: Vec<String> = subnets.iter().map(u32::to_string).collect();
    let code = if n == 0 { Code::Empty } else { Code::Success };
    Answer::new(
        code,
        format!(
            "Deleted {n} {family} lease(s) from subnet(s) {}",
            ids.join(" ")
        ),
    )
}

/// Kea's answer to a put the engine refused; `held` is what the address's record is now.
fn refused(
    family: &str,
    err: PutError,
    addr: &str,
    subnet: u32,
    held: Option<LeaseState>,
) -> Answer {
    match (err, held) {
        (PutError::NotInPool, _) => Answer::error(format!(
            "{addr} is in no pool of subnet {subnet}: lessor adds leases of pool addresses only"
        )),
        (_, Some(LeaseState::Offered)) => Answer::new(
            Code::Conflict,
            format!("ResourceBusy: IP address:{addr} could not be added."),
        ),
        _ => Answer::new(Code::Conflict, format!("{family} lease already exists.")),
    }
}

/// Whether a record in `state` is a lease another put may not simply take over.
fn holds(state: LeaseState) -> bool {
    matches!(state, LeaseState::Bound | LeaseState::Declined)
}

/// What an update of `key`'s lease does with the record `found` (its state and client):
/// `Ok(true)` when another client's lease, or a quarantine, must go first; with no lease
/// and no `force`, Kea's "no such lease" answer naming `addr`.
fn replaces<K: PartialEq>(
    found: Option<(LeaseState, &K)>,
    key: &K,
    force: Option<bool>,
    addr: impl std::fmt::Display,
) -> Result<bool, Answer> {
    match found {
        None if !force.unwrap_or(false) => Err(Answer::new(
            Code::Empty,
            format!("failed to update the lease with address {addr} - no such lease"),
        )),
        None => Ok(false),
        Some((state, client)) => {
            Ok(holds(state) && (client != key || state == LeaseState::Declined))
        }
    }
}

/// Kea's answer to an update: the lease was `updated`, or added where there was none.
fn updated(family: &str, updated: bool) -> Answer {
    let what = if updated { "updated" } else { "added" };
    Answer::new(Code::Success, format!("{family} lease {what}."))
}

/// `done` once `events` are durable, unless the put itself failed (`put`).
fn settled<E: LeaseChange>(
    parts: &Parts,
    events: &[E],
    put: Result<(), Answer>,
    done: Answer,
) -> Answer {
    let answer = durable(parts, events, done);
    put.err().unwrap_or(answer)
}

/// A DHCPv4 lease as `lease4-add` and `lease4-update` give it.
struct Put4 {
    addr: Ipv4Addr,
    subnet: u32,
    key: ClientKey,
    hw: HwAddr,
    shard: usize,
    lease_time: u32,
    hostname: Option<String>,
}

impl Put4 {
    /// Reads `ip-address`, `hw-address`, `client-id`, `subnet-id`, `valid-lft`, `hostname`.
    fn of(parts: &Parts, args: &Args<'_>) -> Result<Put4, Answer> {
        let addr: Ipv4Addr = address(args, "IPv4")?;
        let subnet = subnet_of(parts, IpAddr::V4(addr), args)?;
        let mac = need_hex(args, "hw-address")?;
        let hw = HwAddr::new(1, &mac)
            .ok_or_else(|| Answer::error("'hw-address' must be at most 16 bytes"))?;
        let key = match hex_opt(args, "client-id")? {
            Some(id) => ClientKey::client_id(&id),
            None => ClientKey::hardware(1, &mac),
        };
        // The client's packets are steered by their 16-byte chaddr field.
        let mut chaddr = [0u8; 16];
        chaddr[..mac.len()].copy_from_slice(&mac);
        let shard = crate::v4::steer_hash(&chaddr) as usize % parts.engine.shards();
        let config = &parts.config.v4;
        let default = config
            .subnets
            .iter()
            .find(|s| s.id == subnet)
            .map_or(config.lease_time, |s| s.lease_time);
        let lease_time = args
            .uint("valid-lft", u64::from(u32::MAX))?
            .map_or(default, |v| v as u32);
        let hostname = args
            .str("hostname")?
            .filter(|h| !h.is_empty())
            .map(str::to_owned);
        Ok(Put4 {
            addr,
            subnet,
            key,
            hw,
            shard,
            lease_time,
            hostname,
        })
    }

    /// Puts the lease into the engine, its events into `events`.
    fn put(
        &self,
        parts: &Parts,
        events: &mut Vec<lessor_engine::v4::LeaseEvent>,
    ) -> Result<(), Answer> {
        let grant = v4::Grant {
            lease_time: self.lease_time,
            info: LeaseInfo {
                hw: self.hw,
                hostname: self.hostname.as_deref(),
            },
        };
        let put = parts
            .engine
            .put(self.shard, &self.key, self.addr, grant, now(), events);
        put.map(drop).map_err(|e| {
            let held = parts.engine.get(self.addr).map(|l| l.state);
            refused("IPv4", e, &self.addr.to_string(), self.subnet, held)
        })
    }
}

/// `lease4-add`: a new lease, refused (result 4) if the address has one.
pub(crate) fn lease4_add(parts: &Parts, _: Service, args: &Args<'_>) -> Answer {
    let lease = match Put4::of(parts, args) {
        Ok(l) => l,
        Err(e) => return e,
    };
    if parts.engine.get(lease.addr).is_some_and(|l| holds(l.state)) {
        return Answer::new(Code::Conflict, "IPv4 lease already exists.");
    }
    let mut events = Vec::new();
    let put = lease.put(parts, &mut events);
    let done = Answer::new(
        Code::Success,
        format!(
            "Lease for address {}, subnet-id {} added.",
            lease.addr, lease.subnet
        ),
    );
    settled(parts, &events, put, done)
}

/// `lease4-update`: replaces the address's lease (result 3 if it has none, unless
/// `force-create`).
pub(crate) fn lease4_update(parts: &Parts, _: Service, args: &Args<'_>) -> Answer {
    let (lease, force) =
        match Put4::of(parts, args).and_then(|l| Ok((l, flag(args, "force-create")?))) {
            Ok(x) => x,
            Err(e) => return e,
        };
    let now = now();
    let mut events = Vec::new();
    let existing = parts
        .engine
        .get(lease.addr)
        .filter(|l| l.state != LeaseState::Offered);
    let found = existing.as_ref().map(|l| (l.state, &l.client));
    match replaces(found, &lease.key, force, lease.addr) {
        Ok(true) => {
            parts.engine.remove(lease.addr, now, &mut events);
        }
        Ok(false) => {}
        Err(e) => return e,
    }
    let put = lease.put(parts, &mut events);
    settled(parts, &events, put, updated("IPv4", existing.is_some()))
}

/// The address of the DHCPv4 lease `identifier-type` (`hw-address`, `client-id`),
/// `identifier` and `subnet-id` name.
fn find4(parts: &Parts, args: &Args<'_>) -> Result<Option<Ipv4Addr>, Answer> {
    let kind = args.need_str("identifier-type")?;
    if !matches!(kind, "hw-address" | "client-id") {
        return Err(Answer::error(format!(
            "'identifier-type' must be hw-address or client-id, not {kind:?}"
        )));
    }
    let id = need_hex(args, "identifier")?;
    let subnet = args
        .uint("subnet-id", u64::from(u32::MAX))?
        .ok_or_else(|| Answer::error("missing 'subnet-id' argument"))?;
    Ok(lease4_by_identifier(parts, kind, &id, subnet as u32).map(|l| l.address))
}

/// `lease4-del`: by `ip-address`, or by identifier as `lease4-get` finds it.
pub(crate) fn lease4_del(parts: &Parts, _: Service, args: &Args<'_>) -> Answer {
    let addr = if args.get("ip-address").is_some() {
        address(args, "IPv4").map(Some)
    } else {
        find4(parts, args)
    };
    let addr = match addr {
        Ok(Some(a)) => a,
        Ok(None) => return Answer::new(Code::Empty, "IPv4 lease not found."),
        Err(e) => return e,
    };
    let mut events = Vec::new();
    let gone = parts.engine.remove(addr, now(), &mut events);
    let done = match gone {
        Some(_) => Answer::new(Code::Success, "IPv4 lease deleted."),
        None => Answer::new(Code::Empty, "IPv4 lease not found."),
    };
    durable(parts, &events, done)
}

/// `lease4-wipe`: every lease of `subnet-id`, or of every subnet.
pub(crate) fn lease4_wipe(parts: &Parts, _: Service, args: &Args<'_>) -> Answer {
    let config = &parts.config;
    let ids: Vec<u32> = config.v4.subnets.iter().map(|s| s.id).collect();
    let only = match wipe_subnet(args, &ids) {
        Ok(s) => s,
        Err(e) => return e,
    };
    let mut events = Vec::new();
    let n = parts.engine.wipe(
        |a, _| only.is_none_or(|id| subnet_id(config, IpAddr::V4(a)) == id),
        &mut events,
    );
    let subnets = only.map_or(ids, |id| vec![id]);
    durable(parts, &events, wiped("IPv4", n, &subnets))
}

/// A DHCPv6 lease as `lease6-add` and `lease6-update` give it.
struct Put6 {
    res: Resource,
    subnet: u32,
    key: IaKey,
    shard: usize,
    grant: v6::Grant,
}

/// The `type` argument: `IA_NA` (the default) or `IA_PD`.
fn ia_kind(args: &Args<'_>) -> Result<IaKind, Answer> {
    match args.str("type")? {
        None | Some("IA_NA") => Ok(IaKind::Na),
        Some("IA_PD") => Ok(IaKind::Pd),
        Some(other) => Err(Answer::error(format!(
            "'type' must be IA_NA or IA_PD, not {other:?}"
        ))),
    }
}

/// The resource `ip-address` and `prefix-len` name for `kind`; `None` for a prefix whose
/// length is not given.
fn resource(args: &Args<'_>, kind: IaKind) -> Result<(Ipv6Addr, Option<Resource>), Answer> {
    let addr: Ipv6Addr = address(args, "IPv6")?;
    let len = args.uint("prefix-len", 128)?;
    let res = match (kind, len) {
        (IaKind::Na, None | Some(128)) => Some(Resource::address(addr)),
        (IaKind::Na, Some(len)) => {
            return Err(Answer::error(format!(
                "'prefix-len' of an IA_NA lease must be 128, not {len}"
            )));
        }
        (IaKind::Pd, Some(len)) => Some(Resource::prefix(addr, len as u8)),
        (IaKind::Pd, None) => None,
    };
    Ok((addr, res))
}

/// The DHCPv6 engine, or the answer when DHCPv6 is off.
fn engine6(parts: &Parts) -> Result<&v6::Engine, Answer> {
    parts
        .engine6
        .as_deref()
        .ok_or_else(|| Answer::error("DHCPv6 is off: lessor's config has no v6 subnets"))
}

impl Put6 {
    /// Reads `ip-address`, `type`, `prefix-len`, `duid`, `iaid`, `subnet-id`, `valid-lft`,
    /// `preferred-lft`.
    fn of(parts: &Parts, args: &Args<'_>) -> Result<Put6, Answer> {
        let engine = engine6(parts)?;
        let kind = ia_kind(args)?;
        let (addr, res) = resource(args, kind)?;
        let res = res.ok_or_else(|| Answer::error("missing 'prefix-len' argument"))?;
        let subnet = subnet_of(parts, IpAddr::V6(addr), args)?;
        let duid = need_hex(args, "duid")?;
        let iaid = args
            .uint("iaid", u64::from(u32::MAX))?
            .ok_or_else(|| Answer::error("missing 'iaid' argument"))? as u32;
        let config = &parts.config.v6;
        let (preferred, valid) = config
            .subnets
            .iter()
            .find(|s| s.id == subnet)
            .map_or((config.preferred_lifetime, config.valid_lifetime), |s| {
                (s.preferred_lifetime, s.valid_lifetime)
            });
        let max = u64::from(u32::MAX);
        let valid = args.uint("valid-lft", max)?.map_or(valid, |v| v as u32);
        let preferred = args
            .uint("preferred-lft", max)?
            .map_or(preferred, |v| v as u32);
        // DHCPv6 leases keep no host name: a string is taken and not kept.
        args.str("hostname")?;
        Ok(Put6 {
            res,
            subnet,
            key: IaKey::new(&duid, iaid, kind),
            shard: engine.owner(&duid),
            grant: v6::Grant { preferred, valid },
        })
    }

    /// Puts the lease into `engine`, its events into `events`.
    fn put(&self, engine: &v6::Engine, events: &mut Vec<v6::LeaseEvent>) -> Result<(), Answer> {
        let put = engine.put(self.shard, &self.key, self.res, self.grant, now(), events);
        put.map(drop).map_err(|e| {
            let held = engine.get(self.res).map(|l| l.state);
            refused("IPv6", e, &self.text(), self.subnet, held)
        })
    }

    /// The address, or the prefix with its length.
    fn text(&self) -> String {
        match self.key.kind() {
            IaKind::Na => self.res.addr.to_string(),
            IaKind::Pd => format!("{}/{}", self.res.addr, self.res.len),
        }
    }
}

/// `lease6-add`: a new lease, refused (result 4) if the resource has one.
pub(crate) fn lease6_add(parts: &Parts, _: Service, args: &Args<'_>) -> Answer {
    let (engine, lease) = match engine6(parts).and_then(|e| Ok((e, Put6::of(parts, args)?))) {
        Ok(x) => x,
        Err(e) => return e,
    };
    if engine.get(lease.res).is_some_and(|l| holds(l.state)) {
        return Answer::new(Code::Conflict, "IPv6 lease already exists.");
    }
    let mut events = Vec::new();
    let put = lease.put(engine, &mut events);
    let what = match lease.key.kind() {
        IaKind::Na => "address",
        IaKind::Pd => "prefix",
    };
    let done = Answer::new(
        Code::Success,
        format!(
            "Lease for {what} {}, subnet-id {} added.",
            lease.text(),
            lease.subnet
        ),
    );
    settled(parts, &events, put, done)
}

/// `lease6-update`: replaces the resource's lease (result 3 if it has none, unless
/// `force-create`).
pub(crate) fn lease6_update(parts: &Parts, _: Service, args: &Args<'_>) -> Answer {
    let got =
        engine6(parts).and_then(|e| Ok((e, Put6::of(parts, args)?, flag(args, "force-create")?)));
    let (engine, lease, force) = match got {
        Ok(x) => x,
        Err(e) => return e,
    };
    let now = now();
    let mut events = Vec::new();
    let existing = engine
        .get(lease.res)
        .filter(|l| l.state != LeaseState::Offered);
    let found = existing.as_ref().map(|l| (l.state, &l.client));
    match replaces(found, &lease.key, force, lease.text()) {
        Ok(true) => {
            engine.remove(lease.res, now, &mut events);
        }
        Ok(false) => {}
        Err(e) => return e,
    }
    let put = lease.put(engine, &mut events);
    settled(parts, &events, put, updated("IPv6", existing.is_some()))
}

/// The resource of the DHCPv6 lease `args` name: `ip-address` (with `type`, and
/// `prefix-len` or a look-up for a prefix), or `identifier-type` `duid`, `identifier`,
/// `iaid` and `subnet-id`.
fn find6(parts: &Parts, args: &Args<'_>) -> Result<Option<Resource>, Answer> {
    let kind = ia_kind(args)?;
    if args.get("ip-address").is_some() {
        let (addr, res) = resource(args, kind)?;
        return Ok(res.or_else(|| lease6_at(parts, kind, addr).map(|l| l.resource)));
    }
    let id_kind = args.need_str("identifier-type")?;
    if id_kind != "duid" {
        return Err(Answer::error(format!(
            "'identifier-type' must be duid, not {id_kind:?}"
        )));
    }
    let duid = need_hex(args, "identifier")?;
    let iaid = args
        .uint("iaid", u64::from(u32::MAX))?
        .ok_or_else(|| Answer::error("missing 'iaid' argument"))?;
    let subnet = args
        .uint("subnet-id", u64::from(u32::MAX))?
        .ok_or_else(|| Answer::error("missing 'subnet-id' argument"))?;
    let found = lease6_by_identifier(parts, kind, &duid, iaid as u32, subnet as u32);
    Ok(found.map(|l| l.resource))
}

/// `lease6-del`: by `ip-address` (and `type`), or by DUID as `lease6-get` finds it.
pub(crate) fn lease6_del(parts: &Parts, _: Service, args: &Args<'_>) -> Answer {
    let found = engine6(parts).and_then(|e| Ok((e, find6(parts, args)?)));
    let (engine, res) = match found {
        Ok((e, Some(r))) => (e, r),
        Ok((_, None)) => return Answer::new(Code::Empty, "IPv6 lease not found."),
        Err(e) => return e,
    };
    let mut events = Vec::new();
    let done = match engine.remove(res, now(), &mut events) {
        Some(_) => Answer::new(Code::Success, "IPv6 lease deleted."),
        None => Answer::new(Code::Empty, "IPv6 lease not found."),
    };
    durable(parts, &events, done)
}

/// `lease6-wipe`: every lease of `subnet-id`, or of every subnet.
pub(crate) fn lease6_wipe(parts: &Parts, _: Service, args: &Args<'_>) -> Answer {
    let engine = match engine6(parts) {
        Ok(e) => e,
        Err(e) => return e,
    };
    let config = &parts.config;
    let ids: Vec<u32> = config.v6.subnets.iter().map(|s| s.id).collect();
    let only = match wipe_subnet(args, &ids) {
        Ok(s) => s,
        Err(e) => return e,
    };
    let mut events = Vec::new();
    let n = engine.wipe(
        |r, _| only.is_none_or(|id| subnet_id(config, IpAddr::V6(r.addr)) == id),
        &mut events,
    );
    let subnets = only.map_or(ids, |id| vec![id]);
    durable(parts, &events, wiped("IPv6", n, &subnets))
}

/// `leases-reclaim`: every lease whose time has passed ends now, as the workers' sweep
/// would end it; with `remove`, every expired or released record then goes too (Kea
/// deletes reclaimed leases instead of keeping them; lessor's are the clients' memories).
pub(crate) fn leases_reclaim(parts: &Parts, service: Service, args: &Args<'_>) -> Answer {
    let remove = match flag(args, "remove") {
        Ok(Some(r)) => r,
        Ok(None) => return Answer::error("missing 'remove' argument"),
        Err(e) => return e,
    };
    let now = now();
    let ended = |state| matches!(state, LeaseState::Expired | LeaseState::Released);
    if service != Service::Dhcp6 {
        let mut events = Vec::new();
        parts.engine.reclaim_all(now, &mut events);
        if remove {
            parts.engine.wipe(|_, s| ended(s), &mut events);
        }
        if let Err(e) = journal(parts, &events) {
            return e;
        }
    }
    if let (Some(engine), true) = (parts.engine6.as_deref(), service != Service::Dhcp4) {
        let mut events = Vec::new();
        engine.reclaim_all(now, &mut events);
        if remove {
            engine.wipe(|_, s| ended(s), &mut events);
        }
        if let Err(e) = journal(parts, &events) {
            return e;
        }
    }
    Answer::new(Code::Success, "Reclamation of expired leases is complete.")
}
