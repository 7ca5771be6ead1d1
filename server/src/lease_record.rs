//! The journal's record type: one lease as it is after a change, keyed by its address (v4) or
//! by its address or prefix (v6).
//!
//! The payload is bincode with fixed-width little-endian integers (the journal's codec). The
//! key is an enum whose variant index comes first: `V4` is 0 and `V6` was added after it as 1,
//! so journals written before DHCPv6 existed decode unchanged (a test replays such a file).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use bincode::enc::Encoder;
use bincode::error::EncodeError;
use bincode::{Decode, Encode};
use lessor_engine::v4::{ClientKey, HwAddr};
use lessor_engine::v6::{IaKey, Resource};
use lessor_engine::{EventKind, LeaseState, v4, v6};

/// How long a released or expired lease is remembered for the client's affinity before
/// compaction may forget it.
pub const AFFINITY_MEMORY_SECS: u64 = 7 * 24 * 3600;

/// What a record is about: records with the same key supersede each other.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Encode, Decode)]
pub enum LeaseKey {
    /// An IPv4 address, as a big-endian u32.
    V4(u32),
    /// A DHCPv6 address (`len` 128) or delegated prefix: the address as a big-endian u128.
    /// New variants go after this one, never before (the variant index is on disk).
    V6 {
        /// The address, or the prefix's first address.
        addr: u128,
        /// 128 for an address, the prefix length for a prefix.
        len: u8,
    },
}

/// One lease record in the journal. Fields are plain data so the format does not depend on
/// the engine's in-memory types.
///
/// A DHCPv6 record (`key` is [`LeaseKey::V6`]) uses the same fields: `client` holds the IA's
/// key ([`IaKey::as_bytes`]: IA kind, IAID, DUID), `htype` is 0, `hw` holds the preferred
/// lifetime as 4 big-endian bytes, `hostname` is `None`; `starts` and `expires` are the start
/// and the end of the valid lifetime (or of the hold or quarantine), as for v4.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct LeaseRecord {
    /// The engine's causal version: for one address, higher is newer.
    pub version: u64,
    /// What happened: 0 bound, 1 renewed, 2 released, 3 declined, 4 expired, 5 imported.
    pub event: u8,
    /// The address.
    pub key: LeaseKey,
    /// The engine's client key bytes (option 61, or htype + chaddr).
    pub client: Vec<u8>,
    /// Hardware type.
    pub htype: u8,
    /// Hardware address bytes.
    pub hw: Vec<u8>,
    /// Host name from the client or its reservation.
    pub hostname: Option<String>,
    /// Lease state after the change: 0 offered, 1 bound, 2 released, 3 expired, 4 declined.
    pub state: u8,
    /// Unix time the lease (or quarantine) started.
    pub starts: u64,
    /// Unix time it ends.
    pub expires: u64,
}

/// Event code for records imported from another server's lease file.
pub const EVENT_IMPORTED: u8 = 5;

fn event_code(k: EventKind) -> u8 {
    match k {
        EventKind::Bound => 0,
        EventKind::Renewed => 1,
        EventKind::Released => 2,
        EventKind::Declined => 3,
        EventKind::Expired => 4,
    }
}

fn state_code(s: LeaseState) -> u8 {
    match s {
        LeaseState::Offered => 0,
        LeaseState::Bound => 1,
        LeaseState::Released => 2,
        LeaseState::Expired => 3,
        LeaseState::Declined => 4,
    }
}

fn state_from(code: u8) -> Option<LeaseState> {
    Some(match code {
        0 => LeaseState::Offered,
        1 => LeaseState::Bound,
        2 => LeaseState::Released,
        3 => LeaseState::Expired,
        4 => LeaseState::Declined,
        _ => return None,
    })
}

/// The state's name as `lessor journal dump` prints it.
pub fn state_name(code: u8) -> &'static str {
    match state_from(code) {
        Some(LeaseState::Offered) => "offered",
        Some(LeaseState::Bound) => "bound",
        Some(LeaseState::Released) => "released",
        Some(LeaseState::Expired) => "expired",
        Some(LeaseState::Declined) => "declined",
        None => "unknown",
    }
}

/// A [`LeaseRecord`] as a view of an engine lease: what the workers hand to the journal. It
/// encodes byte for byte as the owned record would (field by field, in the order of the
/// record's derive), so a lease change is journaled without building the record and its
/// allocations. The owned record is made from the view ([`LeaseRecordRef::to_record`]), so the
/// two cannot map a lease differently.
#[derive(Clone, Copy, Debug)]
pub struct LeaseRecordRef<'a> {
    version: u64,
    event: u8,
    key: LeaseKey,
    client: &'a [u8],
    htype: u8,
    /// `hw` bytes: a hardware address (at most 16 bytes) or a v6 preferred lifetime (4).
    hw: [u8; 16],
    hw_len: u8,
    hostname: Option<&'a str>,
    state: u8,
    starts: u64,
    expires: u64,
}

impl<'a> LeaseRecordRef<'a> {
    /// The view of a v4 engine event.
    pub fn from_event(e: &'a v4::LeaseEvent) -> Self {
        Self::from_lease(&e.lease, event_code(e.kind))
    }

    /// The view of a v4 lease as the engine holds it.
    pub fn from_lease(l: &'a v4::Lease, event: u8) -> Self {
        let (hw, hw_len) = hw_field(l.hw.bytes());
        LeaseRecordRef {
            version: l.version,
            event,
            key: LeaseKey::V4(u32::from(l.address)),
            client: l.client.as_bytes(),
            htype: l.hw.htype(),
            hw,
            hw_len,
            hostname: l.hostname.as_deref(),
            state: state_code(l.state),
            starts: l.starts,
            expires: l.expires,
        }
    }

    /// The view of a v6 engine event.
    pub fn from_v6_event(e: &'a v6::LeaseEvent) -> Self {
        Self::from_v6_lease(&e.lease, event_code(e.kind))
    }

    /// The view of a v6 lease as the engine holds it.
    pub fn from_v6_lease(l: &'a v6::Lease, event: u8) -> Self {
        let (hw, hw_len) = hw_field(&l.preferred.to_be_bytes());
        LeaseRecordRef {
            version: l.version,
            event,
            key: LeaseKey::V6 {
                addr: u128::from(l.resource.addr),
                len: l.resource.len,
            },
            client: l.client.as_bytes(),
            htype: 0,
            hw,
            hw_len,
            hostname: None,
            state: state_code(l.state),
            starts: l.starts,
            expires: l.expires,
        }
    }

    fn hw(&self) -> &[u8] {
        &self.hw[..usize::from(self.hw_len)]
    }

    /// The owned record.
    pub fn to_record(&self) -> LeaseRecord {
        LeaseRecord {
            version: self.version,
            event: self.event,
            key: self.key,
            client: self.client.to_vec(),
            htype: self.htype,
            hw: self.hw().to_vec(),
            hostname: self.hostname.map(str::to_owned),
            state: self.state,
            starts: self.starts,
            expires: self.expires,
        }
    }
}

/// `bytes` (a hardware address, at most 16 bytes as `HwAddr` holds) in a fixed array.
fn hw_field(bytes: &[u8]) -> ([u8; 16], u8) {
    let mut hw = [0u8; 16];
    let n = bytes.len().min(16);
    hw[..n].copy_from_slice(&bytes[..n]);
    (hw, n as u8)
}

impl Encode for LeaseRecordRef<'_> {
    /// `LeaseRecord`'s fields in their order; a slice encodes as a `Vec` of it, an
    /// `Option<&str>` as an `Option<String>`.
    fn encode<E: Encoder>(&self, e: &mut E) -> Result<(), EncodeError> {
        self.version.encode(e)?;
        self.event.encode(e)?;
        self.key.encode(e)?;
        self.client.encode(e)?;
        self.htype.encode(e)?;
        self.hw().encode(e)?;
        self.hostname.encode(e)?;
        self.state.encode(e)?;
        self.starts.encode(e)?;
        self.expires.encode(e)
    }
}

impl lessor_journal::EncodesAs<LeaseRecord> for LeaseRecordRef<'_> {}

impl LeaseRecord {
    /// The record for a lease as the engine holds it.
    pub fn from_lease(l: &v4::Lease, event: u8) -> Self {
        LeaseRecordRef::from_lease(l, event).to_record()
    }

    /// The IPv4 address of the record; `0.0.0.0` for a DHCPv6 record.
    pub fn ipv4(&self) -> Ipv4Addr {
        match self.key {
            LeaseKey::V4(a) => Ipv4Addr::from(a),
            LeaseKey::V6 { .. } => Ipv4Addr::UNSPECIFIED,
        }
    }

    /// Whether this is a DHCPv6 record.
    pub fn is_v6(&self) -> bool {
        matches!(self.key, LeaseKey::V6 { .. })
    }

    /// The record's address: IPv4, or the v6 address or prefix start.
    pub fn address(&self) -> IpAddr {
        match self.key {
            LeaseKey::V4(a) => IpAddr::V4(Ipv4Addr::from(a)),
            LeaseKey::V6 { addr, .. } => IpAddr::V6(Ipv6Addr::from(addr)),
        }
    }

    /// What the record is about as `lessor journal dump` would print it: `10.0.0.5`,
    /// `2001:db8::5` or `2001:db8:100::/56`.
    pub fn resource_text(&self) -> String {
        match self.v6_resource() {
            Some(r) => r.to_string(),
            None => self.ipv4().to_string(),
        }
    }

    /// The v6 address or prefix of a DHCPv6 record.
    pub fn v6_resource(&self) -> Option<Resource> {
        match self.key {
            LeaseKey::V6 { addr, len } => Some(Resource::prefix(Ipv6Addr::from(addr), len)),
            LeaseKey::V4(_) => None,
        }
    }

    /// The record for a v6 engine event.
    pub fn from_v6_event(e: &v6::LeaseEvent) -> Self {
        LeaseRecordRef::from_v6_event(e).to_record()
    }

    /// The record for a v6 lease as the engine holds it.
    pub fn from_v6_lease(l: &v6::Lease, event: u8) -> Self {
        LeaseRecordRef::from_v6_lease(l, event).to_record()
    }

    /// The IA of a DHCPv6 record (whose DUID picks its shard, `v6::Engine::owner`).
    pub fn v6_client(&self) -> Option<IaKey> {
        self.is_v6().then(|| IaKey::from_bytes(&self.client))?
    }

    /// The v6 engine lease a DHCPv6 record describes, or `None` for a v4 record or one with a
    /// field out of range (replay counts and skips it).
    pub fn to_v6_lease(&self) -> Option<v6::Lease> {
        let resource = self.v6_resource().filter(|r| r.len <= 128)?;
        let preferred = u32::from_be_bytes(self.hw.as_slice().try_into().ok()?);
        Some(v6::Lease {
            resource,
            pool: None,
            client: self.v6_client()?,
            state: state_from(self.state)?,
            starts: self.starts,
            preferred,
            expires: self.expires,
            version: self.version,
        })
    }

    /// The engine lease this record describes, or `None` if a field is out of range (a record
    /// from a newer format, say) or it is a DHCPv6 record: replay counts and skips it.
    pub fn to_lease(&self) -> Option<v4::Lease> {
        if self.is_v6() {
            return None;
        }
        Some(v4::Lease {
            address: self.ipv4(),
            pool: None,
            client: ClientKey::from_bytes(&self.client),
            hw: HwAddr::new(self.htype, &self.hw)?,
            hostname: self.hostname.as_deref().map(Into::into),
            state: state_from(self.state)?,
            starts: self.starts,
            expires: self.expires,
            version: self.version,
        })
    }

    /// The engine lease this record describes, borrowed (replay allocates nothing per record),
    /// or `None` if a field is out of range or it is a DHCPv6 record.
    pub fn to_lease_ref(&self) -> Option<v4::LeaseRef<'_>> {
        if self.is_v6() {
            return None;
        }
        Some(v4::LeaseRef {
            address: self.ipv4(),
            client: &self.client,
            hw: HwAddr::new(self.htype, &self.hw)?,
            hostname: self.hostname.as_deref(),
            state: state_from(self.state)?,
            starts: self.starts,
            expires: self.expires,
            version: self.version,
        })
    }

    /// The 16-byte chaddr field the client would send, for steering the record to its shard
    /// (all zero for a DHCPv6 record, which steers by its DUID instead).
    pub fn chaddr_field(&self) -> [u8; 16] {
        if self.is_v6() {
            return [0u8; 16];
        }
        hw_field(&self.hw).0
    }
}

impl lessor_journal::Record for LeaseRecord {
    type Key = LeaseKey;

    fn key(&self) -> LeaseKey {
        self.key
    }

    fn version(&self) -> u64 {
        self.version
    }

    /// Holds (bound, declined, offered) are always kept; a released or expired lease is kept
    /// for a week after it ended so the client gets the same address back. The same for v6
    /// addresses and prefixes.
    fn keep(&self, now: u64) -> bool {
        match state_from(self.state) {
            Some(LeaseState::Released | LeaseState::Expired) => {
                self.expires.saturating_add(AFFINITY_MEMORY_SECS) > now
            }
            Some(_) => true,
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lessor_engine::v6::IaKind;
    use lessor_journal::Record;
    use proptest::prelude::*;

    fn lease(state: LeaseState) -> v4::Lease {
        v4::Lease {
            address: Ipv4Addr::new(10, 0, 0, 7),
            pool: None,
            client: ClientKey::client_id(&[1, 2, 3]),
            hw: HwAddr::new(1, &[2, 0, 0, 0, 0, 9]).unwrap(),
            hostname: Some("h".into()),
            state,
            starts: 100,
            expires: 200,
            version: 42,
        }
    }

    #[test]
    fn round_trips_through_the_engine_lease() {
        for s in [
            LeaseState::Offered,
            LeaseState::Bound,
            LeaseState::Released,
            LeaseState::Expired,
            LeaseState::Declined,
        ] {
            let l = lease(s);
            let r = LeaseRecord::from_lease(&l, 0);
            assert_eq!(r.to_lease(), Some(l));
            let bytes = bincode::encode_to_vec(&r, bincode::config::standard()).unwrap();
            let (back, _): (LeaseRecord, _) =
                bincode::decode_from_slice(&bytes, bincode::config::standard()).unwrap();
            assert_eq!(back, r);
        }
    }

    #[test]
    fn released_leases_are_forgotten_after_the_affinity_window() {
        let r = LeaseRecord::from_lease(&lease(LeaseState::Released), 2);
        assert!(r.keep(200 + AFFINITY_MEMORY_SECS - 1));
        assert!(!r.keep(200 + AFFINITY_MEMORY_SECS));
        let b = LeaseRecord::from_lease(&lease(LeaseState::Bound), 0);
        assert!(b.keep(u64::MAX), "a binding is never dropped by compaction");
    }

    /// Segment `0000000000000001.log` as `append_offline` wrote it before the v6 variant
    /// existed (two v4 records: 10.231.0.100 bound, 10.231.0.101 released), byte for byte.
    const V4_SEGMENT_BEFORE_V6: &str = concat!(
        "4c53524a4c4f4700010000000100000000000000000000000000000014ffcf2c4e000000238b2276",
        "070000000000000000000000006400e70a0700000000000000010200000000010106000000000000",
        "00020000000001010500000000000000686f7374310100d2496b0000000010e0496b000000004100",
        "0000cbd1cc06090000000000000002000000006500e70a0700000000000000010200000000020106",
        "00000000000000020000000002000264d2496b00000000c8d2496b00000000",
    );

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn v4_records_of_the_fixture() -> Vec<LeaseRecord> {
        // (version, event, n: client 1:2:0:0:0:0:n on 10.231.0.(99+n), hostname, state,
        // starts, expires)
        [
            (7, 0, 1, Some("host1"), 1, 1_800_000_000, 1_800_003_600),
            (9, 2, 2, None, 2, 1_800_000_100, 1_800_000_200),
        ]
        .into_iter()
        .map(
            |(version, event, n, hostname, state, starts, expires)| LeaseRecord {
                version,
                event,
                key: LeaseKey::V4(0x0ae7_0063 + u32::from(n)),
                client: vec![1, 2, 0, 0, 0, 0, n],
                htype: 1,
                hw: vec![2, 0, 0, 0, 0, n],
                hostname: hostname.map(Into::into),
                state,
                starts,
                expires,
            },
        )
        .collect()
    }

    /// A journal written before DHCPv6 (the fixture) replays to the same records, and
    /// today's encoding of those records is byte for byte what was written then.
    #[test]
    fn a_v4_journal_from_before_v6_still_replays() {
        let dir = tempfile::tempdir().unwrap();
        let old = unhex(V4_SEGMENT_BEFORE_V6);
        std::fs::write(dir.path().join("0000000000000001.log"), &old).unwrap();
        let (mut live, report) = lessor_journal::read_live::<LeaseRecord>(dir.path()).unwrap();
        live.sort_by_key(|r| r.key);
        assert_eq!(live, v4_records_of_the_fixture(), "{report:?}");
        let live_lease = live[0].to_lease().unwrap();
        assert_eq!(live_lease.address, Ipv4Addr::new(10, 231, 0, 100));

        let fresh = tempfile::tempdir().unwrap();
        lessor_journal::append_offline(fresh.path(), v4_records_of_the_fixture()).unwrap();
        let new = std::fs::read(fresh.path().join("0000000000000001.log")).unwrap();
        assert_eq!(new, old, "the v4 record encoding changed");
    }

    /// Bytes of `v` in the journal's codec and in bincode's default one.
    fn encodings(v: &impl Encode) -> [Vec<u8>; 2] {
        let fixed = bincode::config::standard().with_fixed_int_encoding();
        [
            bincode::encode_to_vec(v, fixed).unwrap(),
            bincode::encode_to_vec(v, bincode::config::standard()).unwrap(),
        ]
    }

    fn any_state() -> impl Strategy<Value = LeaseState> {
        prop_oneof![
            Just(LeaseState::Offered),
            Just(LeaseState::Bound),
            Just(LeaseState::Released),
            Just(LeaseState::Expired),
            Just(LeaseState::Declined),
        ]
    }

    proptest! {
        /// The view the workers journal encodes exactly as the owned record the journal
        /// decodes: v4 leases with any client key (inline or on the heap), hardware address
        /// and host name.
        #[test]
        fn the_v4_view_encodes_as_the_record(
            address: u32,
            client in proptest::collection::vec(any::<u8>(), 1..80),
            htype: u8,
            hw in proptest::collection::vec(any::<u8>(), 0..=16),
            hostname in proptest::option::of("[a-z0-9.-]{0,40}"),
            state in any_state(),
            event in 0u8..6,
            (starts, expires, version) in (any::<u64>(), any::<u64>(), any::<u64>()),
        ) {
            let l = v4::Lease {
                address: Ipv4Addr::from(address),
                pool: None,
                client: ClientKey::from_bytes(&client),
                hw: HwAddr::new(htype, &hw).unwrap(),
                hostname: hostname.as_deref().map(Into::into),
                state,
                starts,
                expires,
                version,
            };
            let view = LeaseRecordRef::from_lease(&l, event);
            let owned = view.to_record();
            prop_assert_eq!(encodings(&view), encodings(&owned));
            prop_assert_eq!(owned.to_lease(), Some(l));
        }

        /// The same for v6 addresses and prefixes.
        #[test]
        fn the_v6_view_encodes_as_the_record(
            addr: u128,
            len in 0u8..=128,
            duid in proptest::collection::vec(any::<u8>(), 1..130),
            iaid: u32,
            state in any_state(),
            (starts, preferred, expires, version) in (any::<u64>(), any::<u32>(), any::<u64>(), any::<u64>()),
        ) {
            let kind = if len == 128 { IaKind::Na } else { IaKind::Pd };
            let l = v6::Lease {
                resource: Resource::prefix(Ipv6Addr::from(addr), len),
                pool: None,
                client: IaKey::new(&duid, iaid, kind),
                state,
                starts,
                preferred,
                expires,
                version,
            };
            let view = LeaseRecordRef::from_v6_lease(&l, 0);
            let owned = view.to_record();
            prop_assert_eq!(encodings(&view), encodings(&owned));
            prop_assert_eq!(owned.to_v6_lease(), Some(l));
        }
    }

    fn v6_lease(state: LeaseState, len: u8) -> v6::Lease {
        let kind = if len == 128 { IaKind::Na } else { IaKind::Pd };
        v6::Lease {
            resource: Resource::prefix("2001:db8:100::".parse().unwrap(), len),
            pool: None,
            client: IaKey::new(&[0, 3, 0, 1, 2, 0, 0, 0, 0, 9], 0xdead_beef, kind),
            state,
            starts: 100,
            preferred: 1800,
            expires: 3700,
            version: 42,
        }
    }

    #[test]
    fn v6_records_round_trip_through_the_engine_lease_and_the_journal() {
        let dir = tempfile::tempdir().unwrap();
        let mut recs = vec![LeaseRecord::from_lease(&lease(LeaseState::Bound), 0)];
        for (i, s) in [
            LeaseState::Bound,
            LeaseState::Released,
            LeaseState::Declined,
        ]
        .into_iter()
        .enumerate()
        {
            for len in [128u8, 56] {
                let mut l = v6_lease(s, len);
                l.resource.addr = Ipv6Addr::from(u128::from(l.resource.addr) + ((i as u128) << 80));
                // Far enough ahead that replay keeps the released one too.
                l.expires = 4_000_000_000;
                let r = LeaseRecord::from_v6_event(&v6::LeaseEvent {
                    kind: EventKind::Bound,
                    lease: l.clone(),
                });
                assert!(r.is_v6());
                assert_eq!(r.to_v6_lease(), Some(l.clone()));
                assert_eq!(r.v6_client().unwrap().duid(), l.client.duid());
                assert_eq!(r.to_lease(), None, "a v6 record is no v4 lease");
                assert_eq!(r.to_lease_ref(), None);
                assert_eq!(r.ipv4(), Ipv4Addr::UNSPECIFIED);
                assert_eq!(r.chaddr_field(), [0; 16]);
                recs.push(r);
            }
        }
        assert_eq!(recs[2].resource_text(), "2001:db8:100::/56");
        assert_eq!(recs[1].resource_text(), "2001:db8:100::");
        assert_eq!(recs[0].resource_text(), "10.0.0.7");
        assert_eq!(recs[0].to_v6_lease(), None);
        lessor_journal::append_offline(dir.path(), recs.clone()).unwrap();
        let (mut live, _) = lessor_journal::read_live::<LeaseRecord>(dir.path()).unwrap();
        live.sort_by_key(|r| r.key);
        let mut want = recs;
        want.sort_by_key(|r| r.key);
        assert_eq!(live, want);
    }

    #[test]
    fn v6_keys_are_address_and_length() {
        // An address and the /64 starting at it are two records.
        let a = LeaseRecord::from_v6_lease(&v6_lease(LeaseState::Bound, 128), 0);
        let p = LeaseRecord::from_v6_lease(&v6_lease(LeaseState::Bound, 64), 0);
        assert_ne!(a.key(), p.key());
        assert_eq!(a.address(), p.address());
        // Compaction keeps v6 leases exactly like v4 ones.
        let released = LeaseRecord::from_v6_lease(&v6_lease(LeaseState::Released, 56), 2);
        assert!(released.keep(3700 + AFFINITY_MEMORY_SECS - 1));
        assert!(!released.keep(3700 + AFFINITY_MEMORY_SECS));
        assert!(p.keep(u64::MAX));
        // A preferred lifetime that is not 4 bytes is a damaged record: skipped, not a panic.
        let mut bad = p.clone();
        bad.hw.push(0);
        assert_eq!(bad.to_v6_lease(), None);
        bad.hw.truncate(4);
        bad.client = vec![9];
        assert_eq!(bad.to_v6_lease(), None);
    }

    #[test]
    fn steering_field_matches_the_packet() {
        let r = LeaseRecord::from_lease(&lease(LeaseState::Bound), 0);
        assert_eq!(&r.chaddr_field()[..6], &[2, 0, 0, 0, 0, 9]);
        assert_eq!(&r.chaddr_field()[6..], &[0; 10]);
    }
}
