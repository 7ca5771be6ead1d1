//! The serde mirror of the config document: shapes only, no meaning (that is `build`'s job).
//!
//! Fields whose values need interpretation (addresses, durations, option values, pools) are kept
//! as strings or as a generic [`Value`], so that a bad value is reported by the validation layer
//! with its exact key path instead of by serde with only a position.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};

/// The whole document.
#[derive(Debug, Default, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Config {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) interfaces: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) state_dir: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) workers: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) log_level: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) journal: Option<Journal>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) v4: Option<V4>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) v6: Option<V6>,
}

/// `journal:`
#[derive(Debug, Default, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Journal {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) sync: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) interval_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) max_backlog: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) preallocate: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) realtime_sync: Option<bool>,
}

/// `v4:`
#[derive(Debug, Default, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct V4 {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) lease_time: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) min_lease_time: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) max_lease_time: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) renew_time: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) rebind_time: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) offer_hold: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) decline_probation: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) authoritative: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) server_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) bootp_dynamic: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) next_server: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) server_hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) boot_file_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) options: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) reservations: Option<Vec<Reservation>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) subnets: Option<Vec<Subnet>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) shared_networks: Option<Vec<SharedNetwork>>,
}

/// `v4.shared_networks[i]`
#[derive(Debug, Default, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SharedNetwork {
    pub(super) name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) relays: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) interface: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) options: Option<Value>,
    #[serde(default)]
    pub(super) subnets: Vec<Subnet>,
}

/// `v4.subnets[i]`
#[derive(Debug, Default, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Subnet {
    pub(super) subnet: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) id: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) interface: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) relays: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) lease_time: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) min_lease_time: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) max_lease_time: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) pools: Option<Vec<Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) excluded: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) next_server: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) server_hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) boot_file_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) options: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) reservations: Option<Vec<Reservation>>,
}

/// `v4.subnets[i].reservations[j]`, and `v4.reservations[j]` (global)
#[derive(Debug, Default, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Reservation {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) hw_address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) client_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) circuit_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) remote_id: Option<String>,
    pub(super) address: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) bootp: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) next_server: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) server_hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) boot_file_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) options: Option<Value>,
}

/// `v6:`
#[derive(Debug, Default, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct V6 {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) preferred_lifetime: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) valid_lifetime: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) renew_time: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) rebind_time: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) rapid_commit: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) preference: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) offer_hold: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) decline_probation: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) server_duid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) server_unicast: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) options: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) subnets: Option<Vec<Subnet6>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) shared_networks: Option<Vec<SharedNetwork6>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) reservations: Option<Vec<Reservation6>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) assignments_file: Option<String>,
}

/// `v6.shared_networks[i]`
#[derive(Debug, Default, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SharedNetwork6 {
    pub(super) name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) interface: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) relays: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) interface_ids: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) options: Option<Value>,
    #[serde(default)]
    pub(super) subnets: Vec<Subnet6>,
}

/// `v6.subnets[i]`
#[derive(Debug, Default, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Subnet6 {
    pub(super) subnet: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) id: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) interface: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) relays: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) interface_ids: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) preferred_lifetime: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) valid_lifetime: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) renew_time: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) rebind_time: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) rapid_commit: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) preference: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) pools: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) pd_pools: Option<Vec<PdPool>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) excluded: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) options: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) reservations: Option<Vec<Reservation6>>,
}

/// `v6.subnets[i].pd_pools[j]`
#[derive(Debug, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PdPool {
    pub(super) prefix: String,
    pub(super) delegated_len: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) excluded_prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) excluded: Option<Vec<String>>,
}

/// `v6.subnets[i].reservations[j]`
#[derive(Debug, Default, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Reservation6 {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) duid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) interface_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) remote_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) subscriber_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) options: Option<Value>,
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
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut entries = Vec::new();
        while let Some(Key(k)) = map.next_key()? {
            entries.push((k, map.next_value()?));
        }
        Ok(Value::Map(entries))
    }
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
