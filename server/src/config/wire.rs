//! The serde mirror of the config document: shapes only, no meaning (that is `build`'s job).
//!
//! Fields whose values need interpretation (addresses, durations, option values, pools) are kept
//! as strings or as a generic [`Value`], so that a bad value is reported by the validation layer
//! with its exact key path instead of by serde with only a position.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};

/// Declares a wire struct, written as a plain struct: each `Option` field is an optional key (absent
/// reads as `None`, and `None` is not written back); other fields are as written. `..group,`
/// splices in a field group that several sections share (the `..` rules below); its keys stay
/// plain keys of the struct, so the YAML and `deny_unknown_fields` see no difference.
macro_rules! wire_struct {
    ($(#[$a:meta])* struct $name:ident { $($body:tt)* }) => {
        wire_struct!(@field [$(#[$a])*] $name [] $($body)*);
    };
    (@field $a:tt $name:ident $out:tt ..boot, $($rest:tt)*) => {
        wire_struct!(@field $a $name $out next_server: Option<String>,
            server_hostname: Option<String>, boot_file_name: Option<String>, $($rest)*);
    };
    (@field $a:tt $name:ident $out:tt ..lease_times, $($rest:tt)*) => {
        wire_struct!(@field $a $name $out lease_time: Option<Value>,
            min_lease_time: Option<Value>, max_lease_time: Option<Value>, $($rest)*);
    };
    (@field $a:tt $name:ident $out:tt ..lifetimes, $($rest:tt)*) => {
        wire_struct!(@field $a $name $out preferred_lifetime: Option<Value>,
            valid_lifetime: Option<Value>, renew_time: Option<Value>, rebind_time: Option<Value>,
            rapid_commit: Option<bool>, preference: Option<Value>, $($rest)*);
    };
    (@field $a:tt $name:ident $out:tt ..holds, $($rest:tt)*) => {
        wire_struct!(@field $a $name $out offer_hold: Option<Value>,
            decline_probation: Option<Value>, $($rest)*);
    };
    (@field $a:tt $name:ident $out:tt ..link, $($rest:tt)*) => {
        wire_struct!(@field $a $name $out interface: Option<String>,
            relays: Option<Vec<String>>, $($rest)*);
    };
    (@field $a:tt $name:ident [$($out:tt)*]
        $(#[$fa:meta])* $f:ident: Option<$t:ty>, $($rest:tt)*) => {
        wire_struct!(@field $a $name [$($out)*
            $(#[$fa])*
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub(super) $f: Option<$t>,
        ] $($rest)*);
    };
    (@field $a:tt $name:ident [$($out:tt)*] $(#[$fa:meta])* $f:ident: $t:ty, $($rest:tt)*) => {
        wire_struct!(@field $a $name [$($out)* $(#[$fa])* pub(super) $f: $t,] $($rest)*);
    };
    (@field [$($a:tt)*] $name:ident [$($out:tt)*]) => {
        $($a)*
        pub(super) struct $name { $($out)* }
    };
}

wire_struct! {
    /// The whole document.
    #[derive(Debug, Default, serde::Deserialize, serde::Serialize)]
    #[serde(deny_unknown_fields)]
    struct Config {
        interfaces: Option<Vec<String>>,
        port: Option<u16>,
        state_dir: Option<String>,
        workers: Option<usize>,
        log_level: Option<String>,
        journal: Option<Journal>,
        control: Option<Value>,
        ha: Option<Ha>,
        v4: Option<V4>,
        v6: Option<V6>,
    }
}

wire_struct! {
    /// `journal:`
    #[derive(Debug, Default, serde::Deserialize, serde::Serialize)]
    #[serde(deny_unknown_fields)]
    struct Journal {
        sync: Option<String>,
        interval_ms: Option<u64>,
        max_backlog: Option<u64>,
        preallocate: Option<bool>,
        realtime_sync: Option<bool>,
    }
}

wire_struct! {
    /// `ha:`
    #[derive(Debug, Default, serde::Deserialize, serde::Serialize)]
    #[serde(deny_unknown_fields)]
    struct Ha {
        mode: Option<String>,
        node: Option<String>,
        cluster: Option<String>,
        peers: Option<Vec<HaPeer>>,
        etcd: Option<Vec<String>>,
        etcd_tls: Option<EtcdTls>,
        sync: Option<bool>,
        max_lag: Option<u64>,
        mclt: Option<Value>,
        lease_ttl: Option<Value>,
        stream_key_file: Option<String>,
    }
}

impl Ha {
    /// The file paths a relative value of which is resolved against the config file's folder.
    pub(super) fn paths_mut(&mut self) -> impl Iterator<Item = &mut String> {
        let tls = self.etcd_tls.as_mut().into_iter();
        let tls = tls.flat_map(|t| [&mut t.ca, &mut t.cert, &mut t.key]);
        self.stream_key_file.iter_mut().chain(tls.flatten())
    }
}

wire_struct! {
    /// `ha.etcd_tls`
    #[derive(Debug, Default, serde::Deserialize, serde::Serialize)]
    #[serde(deny_unknown_fields)]
    struct EtcdTls {
        ca: Option<String>,
        cert: Option<String>,
        key: Option<String>,
    }
}

wire_struct! {
    /// `ha.peers[i]`
    #[derive(Debug, Default, serde::Deserialize, serde::Serialize)]
    #[serde(deny_unknown_fields)]
    struct HaPeer {
        name: String,
        url: String,
        stream: Option<String>,
        role: Option<String>,
    }
}

wire_struct! {
    /// `v4:`
    #[derive(Debug, Default, serde::Deserialize, serde::Serialize)]
    #[serde(deny_unknown_fields)]
    struct V4 {
        ..lease_times,
        renew_time: Option<Value>,
        rebind_time: Option<Value>,
        ..holds,
        authoritative: Option<bool>,
        server_id: Option<String>,
        bootp_dynamic: Option<bool>,
        ..boot,
        options: Option<Value>,
        reservations: Option<Vec<Reservation>>,
        subnets: Option<Vec<Subnet>>,
        shared_networks: Option<Vec<SharedNetwork>>,
    }
}

wire_struct! {
    /// `v4.shared_networks[i]`
    #[derive(Debug, Default, serde::Deserialize, serde::Serialize)]
    #[serde(deny_unknown_fields)]
    struct SharedNetwork {
        name: String,
        relays: Option<Vec<String>>,
        interface: Option<String>,
        options: Option<Value>,
        #[serde(default)]
        subnets: Vec<Subnet>,
    }
}

wire_struct! {
    /// `v4.subnets[i]`
    #[derive(Debug, Default, serde::Deserialize, serde::Serialize)]
    #[serde(deny_unknown_fields)]
    struct Subnet {
        subnet: String,
        id: Option<u32>,
        ..link,
        ..lease_times,
        pools: Option<Vec<Value>>,
        excluded: Option<Vec<String>>,
        ..boot,
        options: Option<Value>,
        reservations: Option<Vec<Reservation>>,
    }
}

wire_struct! {
    /// `v4.subnets[i].reservations[j]`, and `v4.reservations[j]` (global)
    #[derive(Debug, Default, serde::Deserialize, serde::Serialize)]
    #[serde(deny_unknown_fields)]
    struct Reservation {
        hw_address: Option<String>,
        client_id: Option<String>,
        circuit_id: Option<String>,
        remote_id: Option<String>,
        address: String,
        hostname: Option<String>,
        bootp: Option<bool>,
        ..boot,
        options: Option<Value>,
    }
}

wire_struct! {
    /// `v6:`
    #[derive(Debug, Default, serde::Deserialize, serde::Serialize)]
    #[serde(deny_unknown_fields)]
    struct V6 {
        port: Option<u16>,
        ..lifetimes,
        ..holds,
        server_duid: Option<String>,
        server_unicast: Option<String>,
        options: Option<Value>,
        subnets: Option<Vec<Subnet6>>,
        shared_networks: Option<Vec<SharedNetwork6>>,
        reservations: Option<Vec<Reservation6>>,
        assignments_file: Option<String>,
    }
}

wire_struct! {
    /// `v6.shared_networks[i]`
    #[derive(Debug, Default, serde::Deserialize, serde::Serialize)]
    #[serde(deny_unknown_fields)]
    struct SharedNetwork6 {
        name: String,
        ..link,
        interface_ids: Option<Vec<String>>,
        options: Option<Value>,
        #[serde(default)]
        subnets: Vec<Subnet6>,
    }
}

wire_struct! {
    /// `v6.subnets[i]`
    #[derive(Debug, Default, serde::Deserialize, serde::Serialize)]
    #[serde(deny_unknown_fields)]
    struct Subnet6 {
        subnet: String,
        id: Option<u32>,
        ..link,
        interface_ids: Option<Vec<String>>,
        ..lifetimes,
        pools: Option<Vec<String>>,
        pd_pools: Option<Vec<PdPool>>,
        excluded: Option<Vec<String>>,
        options: Option<Value>,
        reservations: Option<Vec<Reservation6>>,
    }
}

wire_struct! {
    /// `v6.subnets[i].pd_pools[j]`
    #[derive(Debug, serde::Deserialize, serde::Serialize)]
    #[serde(deny_unknown_fields)]
    struct PdPool {
        prefix: String,
        delegated_len: Value,
        excluded_prefix: Option<String>,
        excluded: Option<Vec<String>>,
    }
}

wire_struct! {
    /// `v6.subnets[i].reservations[j]`
    #[derive(Debug, Default, serde::Deserialize, serde::Serialize)]
    #[serde(deny_unknown_fields)]
    struct Reservation6 {
        duid: Option<String>,
        interface_id: Option<String>,
        remote_id: Option<String>,
        subscriber_id: Option<String>,
        address: Option<String>,
        prefix: Option<String>,
        options: Option<Value>,
    }
}

/// Any YAML/JSON node, for the places whose type depends on a sibling or on a name.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Value {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    Seq(Vec<Value>),
    /// Entries in document order; keys that were numbers are kept as their decimal text.
    Map(Vec<(String, Value)>),
}

impl Value {
    /// A short description for "expected X, got Y" messages.
    pub(super) fn describe(&self) -> String {
        match self {
            Value::Null => "nothing".to_owned(),
            Value::Bool(b) => format!("the boolean {b}"),
            Value::Int(i) => format!("the number {i}"),
            Value::Float(x) => format!("the number {x}"),
            Value::Str(s) => format!("the string {s:?}"),
            Value::Seq(_) => "a list".to_owned(),
            Value::Map(_) => "a map".to_owned(),
        }
    }

    pub(super) fn str(s: impl Into<String>) -> Value {
        Value::Str(s.into())
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Int(v.into()))
    }
    fn visit_i128<E>(self, v: i128) -> Result<Value, E> {
        Ok(Value::Int(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::Str(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::Str(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Value::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Value, A::Error> {
        items(seq).map(Value::Seq)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Value, A::Error> {
        entries(map, |Key(k)| k).map(Value::Map)
    }
}

/// A sequence's items, in order (for a tree visitor's `visit_seq`).
pub(super) fn items<'de, T: Deserialize<'de>, A: SeqAccess<'de>>(
    mut seq: A,
) -> Result<Vec<T>, A::Error> {
    let mut items = Vec::new();
    while let Some(item) = seq.next_element()? {
        items.push(item);
    }
    Ok(items)
}

/// A map's entries in document order, each key turned by `key` into what the tree keeps (for
/// a tree visitor's `visit_map`).
pub(super) fn entries<'de, K, O, V, A>(
    mut map: A,
    key: impl Fn(K) -> O,
) -> Result<Vec<(O, V)>, A::Error>
where
    K: Deserialize<'de>,
    V: Deserialize<'de>,
    A: MapAccess<'de>,
{
    let mut entries = Vec::new();
    while let Some(k) = map.next_key()? {
        entries.push((key(k), map.next_value()?));
    }
    Ok(entries)
}

/// A map key: any scalar, as text (so `150:` and `"150":` are the same key).
pub(super) struct Key(pub(super) String);

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a name or a number")
            }
            fn visit_str<E>(self, v: &str) -> Result<Key, E> {
                Ok(Key(v.to_owned()))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Key, E> {
                Ok(Key(v.to_string()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Key, E> {
                Ok(Key(v.to_string()))
            }
            fn visit_bool<E>(self, v: bool) -> Result<Key, E> {
                Ok(Key(v.to_string()))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Key, E> {
                Err(E::custom("a map key must not be empty"))
            }
        }
        d.deserialize_any(KeyVisitor)
    }
}

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Null => s.serialize_unit(),
            Value::Bool(b) => s.serialize_bool(*b),
            Value::Int(i) => match i64::try_from(*i) {
                Ok(i) => s.serialize_i64(i),
                Err(_) => match u64::try_from(*i) {
                    Ok(u) => s.serialize_u64(u),
                    Err(_) => s.serialize_str(&i.to_string()),
                },
            },
            Value::Float(x) => s.serialize_f64(*x),
            Value::Str(v) => s.serialize_str(v),
            Value::Seq(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Value::Map(entries) => {
                let mut map = s.serialize_map(Some(entries.len()))?;
                for (k, v) in entries {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
    }
}
