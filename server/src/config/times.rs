//! Durations and the lease times and lifetimes each level resolves (what a subnet leaves out is
//! inherited from its family's section), with the key path of every value for messages.

use std::time::Duration;

use super::error::{ConfigError, invalid};
use super::path::join;
use super::wire::Value;

type Result<T> = std::result::Result<T, ConfigError>;

pub(super) const DEFAULT_OFFER_HOLD: u32 = 30;

pub(super) const DEFAULT_DECLINE_PROBATION: u32 = 86_400;

pub(super) const DEFAULT_LEASE_TIME: u32 = 3600;

pub(super) const DEFAULT_PREFERRED: u32 = 3600;

pub(super) const DEFAULT_VALID: u32 = 7200;

/// `offer_hold` (at least 1 second) and `decline_probation` of a section, with their defaults.
pub(super) fn hold_times(
    section: &str,
    offer_hold: Option<&Value>,
    decline_probation: Option<&Value>,
) -> Result<(u32, u32)> {
    let opath = join(section, "offer_hold");
    let offer_hold = opt_seconds(&opath, offer_hold)?.unwrap_or(DEFAULT_OFFER_HOLD);
    if offer_hold == 0 {
        return Err(invalid(opath, "must be at least 1 second"));
    }
    let decline_probation = opt_seconds(&join(section, "decline_probation"), decline_probation)?
        .unwrap_or(DEFAULT_DECLINE_PROBATION);
    Ok((offer_hold, decline_probation))
}

pub(super) fn opt_seconds(path: &str, v: Option<&Value>) -> Result<Option<u32>> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(v) => seconds(path, v).map(Some),
    }
}

/// Whole seconds: an integer, or a humantime string such as `"1h"`, `"30m"`, `"1h 30m"`.
fn seconds(path: &str, v: &Value) -> Result<u32> {
    let too_big = || invalid(path, format!("is too long (at most {} seconds)", u32::MAX));
    match v {
        Value::Int(i) if *i < 0 => Err(invalid(path, "must not be negative")),
        Value::Int(i) => u32::try_from(*i).map_err(|_| too_big()),
        Value::Str(s) => {
            let t = s.trim();
            if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
                return t.parse::<u32>().map_err(|_| too_big());
            }
            let d: Duration = humantime::parse_duration(t).map_err(|e| {
                invalid(
                    path,
                    format!(
                        "{s:?} is not a duration ({e}); write seconds or e.g. \"1h\", \"30m\", \
                         \"90s\""
                    ),
                )
            })?;
            if d.subsec_nanos() != 0 {
                return Err(invalid(
                    path,
                    format!("{s:?} is not a whole number of seconds"),
                ));
            }
            u32::try_from(d.as_secs()).map_err(|_| too_big())
        }
        other => Err(invalid(
            path,
            format!(
                "expected seconds or a duration such as \"1h\", got {}",
                other.describe()
            ),
        )),
    }
}

/// A lease-time triple as resolved at one level.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) struct Leases {
    pub(super) lease: u32,
    pub(super) min: u32,
    pub(super) max: u32,
}

/// Resolves `[lease_time, min_lease_time, max_lease_time]` under `path`.
///
/// At the `v4` level min and max default to the lease time. A subnet that sets none of the three
/// inherits all of them; otherwise what it does not set is inherited, with an inherited min or
/// max widened to include the subnet's own lease time.
pub(super) fn lease_times(
    path: &str,
    [lease, min, max]: [&Option<Value>; 3],
    parent: Option<Leases>,
) -> Result<Leases> {
    let lpath = join(path, "lease_time");
    let minpath = join(path, "min_lease_time");
    let maxpath = join(path, "max_lease_time");
    let given = (
        opt_seconds(&lpath, lease.as_ref())?,
        opt_seconds(&minpath, min.as_ref())?,
        opt_seconds(&maxpath, max.as_ref())?,
    );
    let out = match parent {
        None => {
            let lease = given.0.unwrap_or(DEFAULT_LEASE_TIME);
            Leases {
                lease,
                min: given.1.unwrap_or(lease),
                max: given.2.unwrap_or(lease),
            }
        }
        Some(p) if given == (None, None, None) => return Ok(p),
        Some(p) => {
            let lease = given.0.unwrap_or(p.lease);
            Leases {
                lease,
                min: given.1.unwrap_or(p.min.min(lease)),
                max: given.2.unwrap_or(p.max.max(lease)),
            }
        }
    };
    for (p, t) in [
        (&lpath, out.lease),
        (&minpath, out.min),
        (&maxpath, out.max),
    ] {
        if t == 0 {
            return Err(invalid(p.as_str(), "must be at least 1 second"));
        }
    }
    if out.min > out.max {
        return Err(if given.2.is_some() {
            invalid(
                maxpath,
                format!(
                    "max_lease_time {} is less than min_lease_time {}",
                    out.max, out.min
                ),
            )
        } else {
            invalid(
                minpath,
                format!(
                    "min_lease_time {} is greater than max_lease_time {}",
                    out.min, out.max
                ),
            )
        });
    }
    if out.lease < out.min {
        let p = if given.0.is_some() { lpath } else { minpath };
        return Err(invalid(
            p,
            format!(
                "lease_time {} is below min_lease_time {}",
                out.lease, out.min
            ),
        ));
    }
    if out.lease > out.max {
        let p = if given.0.is_some() { lpath } else { maxpath };
        return Err(invalid(
            p,
            format!(
                "lease_time {} is above max_lease_time {}",
                out.lease, out.max
            ),
        ));
    }
    Ok(out)
}

/// Lifetimes and timers as resolved at one level, each with the key path that set it (for
/// messages about a value that was inherited).
#[derive(Clone)]
pub(super) struct Lifetimes {
    pub(super) preferred: (u32, String),
    pub(super) valid: (u32, String),
    pub(super) renew: Option<(u32, String)>,
    pub(super) rebind: Option<(u32, String)>,
}

impl Lifetimes {
    /// T1 and T2 as sent: the configured ones, else 50% and 80% of the preferred lifetime
    /// (RFC 8415 §21.4).
    pub(super) fn timers(&self) -> (u32, u32) {
        let p = u64::from(self.preferred.0);
        let t2 = self.rebind.as_ref().map_or((p * 4 / 5) as u32, |r| r.0);
        let t1 = self.renew.as_ref().map_or((p / 2) as u32, |r| r.0);
        (t1, t2)
    }
}

/// Reads the four lifetime keys under `path` (`[preferred_lifetime, valid_lifetime,
/// renew_time, rebind_time]`), over `parent` (None at `v6` level).
pub(super) fn lifetimes(
    path: &str,
    [preferred, valid, renew, rebind]: [&Option<Value>; 4],
    parent: Option<&Lifetimes>,
) -> Result<Lifetimes> {
    let read = |key: &str, v: &Option<Value>| -> Result<Option<(u32, String)>> {
        let p = join(path, key);
        match opt_seconds(&p, v.as_ref())? {
            Some(0) => Err(invalid(p, "must be at least 1 second")),
            Some(t) => Ok(Some((t, p))),
            None => Ok(None),
        }
    };
    let given = (
        read("preferred_lifetime", preferred)?,
        read("valid_lifetime", valid)?,
        read("renew_time", renew)?,
        read("rebind_time", rebind)?,
    );
    let (gave_preferred, gave_valid) = (given.0.is_some(), given.1.is_some());
    let out = match parent {
        None => Lifetimes {
            preferred: given
                .0
                .unwrap_or((DEFAULT_PREFERRED, join(path, "preferred_lifetime"))),
            valid: given
                .1
                .unwrap_or((DEFAULT_VALID, join(path, "valid_lifetime"))),
            renew: given.2,
            rebind: given.3,
        },
        Some(p) => Lifetimes {
            preferred: given.0.unwrap_or_else(|| p.preferred.clone()),
            valid: given.1.unwrap_or_else(|| p.valid.clone()),
            renew: given.2.or_else(|| p.renew.clone()),
            rebind: given.3.or_else(|| p.rebind.clone()),
        },
    };
    // RFC 8415 §21.6: a client discards an address whose preferred lifetime exceeds its valid
    // lifetime; §21.4: and an IA whose T1 exceeds T2.
    let ((pref, ppath), (valid, vpath)) = (&out.preferred, &out.valid);
    if pref > valid {
        let blame = if gave_preferred || !gave_valid {
            ppath
        } else {
            vpath
        };
        return Err(invalid(
            blame.as_str(),
            format!("preferred_lifetime {pref} must not exceed valid_lifetime {valid}"),
        ));
    }
    let (t1, t2) = out.timers();
    let describe = |key: &str, given: &Option<(u32, String)>, t: u32, share: &str| match given {
        Some(_) => format!("{key} {t}"),
        None => format!("{key} {t} ({share} of preferred_lifetime {pref} by default)"),
    };
    let (renew_path, rebind_path) = (
        out.renew
            .as_ref()
            .map_or_else(|| join(path, "renew_time"), |r| r.1.clone()),
        out.rebind
            .as_ref()
            .map_or_else(|| join(path, "rebind_time"), |r| r.1.clone()),
    );
    if t1 >= t2 {
        let blame = if out.renew.is_some() {
            renew_path
        } else {
            rebind_path
        };
        return Err(invalid(
            blame,
            format!(
                "{} must be less than {}",
                describe("renew_time", &out.renew, t1, "50%"),
                describe("rebind_time", &out.rebind, t2, "80%")
            ),
        ));
    }
    if t2 >= *valid {
        let blame = if out.rebind.is_some() {
            rebind_path
        } else {
            vpath.clone()
        };
        return Err(invalid(
            blame,
            format!(
                "{} must be less than valid_lifetime {valid}",
                describe("rebind_time", &out.rebind, t2, "80%")
            ),
        ));
    }
    Ok(out)
}
