//! The journal's record type: one lease as it is after a change, keyed by its address.

use std::net::Ipv4Addr;

use bincode::{Decode, Encode};
use lessor_engine::{ClientKey, EventKind, HwAddr, Lease, LeaseEvent, LeaseRef, LeaseState};

/// How long a released or expired lease is remembered for the client's affinity before
/// compaction may forget it.
pub const AFFINITY_MEMORY_SECS: u64 = 7 * 24 * 3600;

/// The address a record is about. Room for DHCPv6 addresses and prefixes comes with v6.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Encode, Decode)]
pub enum LeaseKey {
    /// An IPv4 address, as a big-endian u32.
    V4(u32),
}

/// One lease record in the journal. Fields are plain data so the format does not depend on
/// the engine's in-memory types.
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

impl LeaseRecord {
    /// The record for an engine event.
    pub fn from_event(e: &LeaseEvent) -> Self {
        let event = match e.kind {
            EventKind::Bound => 0,
            EventKind::Renewed => 1,
            EventKind::Released => 2,
            EventKind::Declined => 3,
            EventKind::Expired => 4,
        };
        Self::from_lease(&e.lease, event)
    }

    /// The record for a lease as the engine holds it.
    pub fn from_lease(l: &Lease, event: u8) -> Self {
        LeaseRecord {
            version: l.version,
            event,
            key: LeaseKey::V4(u32::from(l.address)),
            client: l.client.as_bytes().to_vec(),
            htype: l.hw.htype(),
            hw: l.hw.bytes().to_vec(),
            hostname: l.hostname.as_deref().map(str::to_owned),
            state: state_code(l.state),
            starts: l.starts,
            expires: l.expires,
        }
    }

    /// The IPv4 address of the record.
    pub fn ipv4(&self) -> Ipv4Addr {
        match self.key {
            LeaseKey::V4(a) => Ipv4Addr::from(a),
        }
    }

    /// The engine lease this record describes, or `None` if a field is out of range (a record
    /// from a newer format, say): replay counts and skips it.
    pub fn to_lease(&self) -> Option<Lease> {
        Some(Lease {
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
    /// or `None` if a field is out of range.
    pub fn to_lease_ref(&self) -> Option<LeaseRef<'_>> {
        Some(LeaseRef {
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

    /// The 16-byte chaddr field the client would send, for steering the record to its shard.
    pub fn chaddr_field(&self) -> [u8; 16] {
        let mut f = [0u8; 16];
        let n = self.hw.len().min(16);
        f[..n].copy_from_slice(&self.hw[..n]);
        f
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
    /// for a week after it ended so the client gets the same address back.
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
    use lessor_journal::Record;

    fn lease(state: LeaseState) -> Lease {
        Lease {
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

    #[test]
    fn steering_field_matches_the_packet() {
        let r = LeaseRecord::from_lease(&lease(LeaseState::Bound), 0);
        assert_eq!(&r.chaddr_field()[..6], &[2, 0, 0, 0, 0, 9]);
        assert_eq!(&r.chaddr_field()[6..], &[0; 10]);
    }
}
