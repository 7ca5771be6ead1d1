//! `dhcp-disable` and `dhcp-enable`, and the HA agent's hold: the switch every worker reads
//! once per batch.
//!
//! While it is set the workers drop every request (counted by [`drop_reason`]) and `/ready`
//! answers 503. A disable with `max-period` re-enables itself after that many seconds,
//! unless another disable or an enable came in between. The HA hold (a standby, or a fenced
//! server) is apart from the operator's switch: `dhcp-enable` does not lift it. So are the
//! load-balancing scopes the agent has this server answer ([`crate::scope`]).

use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

/// The flag's value while DHCP is served.
const SERVING: u8 = 0;
/// The flag's value while the operator has DHCP disabled.
const DISABLED: u8 = 1;

/// Why the HA agent holds DHCP back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Hold {
    /// Another server holds the leader key: this one waits.
    Standby = 2,
    /// This server cannot prove its etcd lease is alive: it must not answer.
    Fenced = 3,
}

/// Whether the flag's value `code` is an HA hold: this server does not lead, so its engines
/// are stale and must write nothing of their own (docs/HA.md, "Standing by").
pub(crate) fn ha_held(code: u8) -> bool {
    code == Hold::Standby as u8 || code == Hold::Fenced as u8
}

/// The drop counter's label for the flag's value `code` (not [`SERVING`]).
pub(crate) fn drop_reason(code: u8) -> &'static str {
    match code {
        c if c == Hold::Standby as u8 => "ha_standby",
        c if c == Hold::Fenced as u8 => "ha_fenced",
        _ => "disabled",
    }
}

/// The DHCP service switch: the flag the workers read and when it was last flipped.
#[derive(Debug, Default)]
pub(crate) struct Switch {
    /// [`SERVING`], [`DISABLED`] or a [`Hold`]: why the workers drop, if they do.
    flag: Arc<AtomicU8>,
    /// How many times an HA hold began (the server stopped leading): a worker drops every
    /// reply still waiting from before (docs/HA.md, "Losing the lead").
    holds: Arc<AtomicU64>,
    /// The load-balancing scopes the workers answer.
    scopes: Scopes,
    state: Arc<Mutex<State>>,
}

/// The mask of load-balancing scopes served: every scope until the HA agent says otherwise.
#[derive(Debug)]
struct Scopes(Arc<AtomicU8>);

impl Default for Scopes {
    fn default() -> Self {
        Scopes(Arc::new(AtomicU8::new(crate::scope::ALL)))
    }
}

#[derive(Debug, Default)]
struct State {
    /// Bumped by every disable and enable, so a timer of an older disable does nothing.
    generation: u64,
    /// When a disable with `max-period` ends.
    until: Option<Instant>,
    /// The operator disabled DHCP.
    disabled: bool,
    /// The HA agent holds DHCP back.
    hold: Option<Hold>,
}

impl State {
    /// Sets the workers' flag from the operator's switch and the HA hold (the hold first).
    fn publish(&self, flag: &AtomicU8) {
        let code = match (self.hold, self.disabled) {
            (Some(h), _) => h as u8,
            (None, true) => DISABLED,
            (None, false) => SERVING,
        };
        flag.store(code, Ordering::Relaxed);
    }
}

impl Switch {
    /// The flag the workers read: 0 while serving, else the code [`drop_reason`] names.
    pub(crate) fn flag(&self) -> Arc<AtomicU8> {
        Arc::clone(&self.flag)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the operator has DHCP disabled now.
    pub(crate) fn is_disabled(&self) -> bool {
        self.lock().disabled
    }

    /// The HA agent's hold, if any.
    pub(crate) fn hold(&self) -> Option<Hold> {
        self.lock().hold
    }

    /// The count of HA holds begun, which the workers read.
    pub(crate) fn holds(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.holds)
    }

    /// The mask of load-balancing scopes the workers answer, which they read once per batch.
    pub(crate) fn scopes(&self) -> Arc<AtomicU8> {
        Arc::clone(&self.scopes.0)
    }

    /// Has the workers answer the load-balancing scopes in `mask` from their next batch on.
    pub(crate) fn set_scopes(&self, mask: u8) {
        self.scopes.0.store(mask, Ordering::Relaxed);
    }

    /// Sets or lifts the HA agent's hold.
    pub(crate) fn set_hold(&self, hold: Option<Hold>) {
        let mut state = self.lock();
        let begins = state.hold.is_none() && hold.is_some();
        state.hold = hold;
        state.publish(&self.flag);
        if begins {
            self.holds.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Holds DHCP back as a standby does, but lets the replies already waiting go out: the
    /// leader hands the lead over to a partner that acknowledges all of them first.
    pub(crate) fn hold_for_handover(&self) {
        let mut state = self.lock();
        state.hold = Some(Hold::Standby);
        state.publish(&self.flag);
    }

    /// Makes the workers drop every reply still waiting, as a hold that begins does.
    pub(crate) fn drop_waiting(&self) {
        self.holds.fetch_add(1, Ordering::SeqCst);
    }

    /// Seconds until a disable with `max-period` ends by itself, if one is running.
    pub(crate) fn remaining(&self) -> Option<u64> {
        let state = self.lock();
        let until = state.until.filter(|_| state.disabled)?;
        Some(until.saturating_duration_since(Instant::now()).as_secs())
    }

    /// Disables DHCP, for `max_period` at most when given.
    pub(crate) fn disable(&self, max_period: Option<Duration>) {
        let mut state = self.lock();
        state.generation += 1;
        state.until = max_period.map(|p| Instant::now() + p);
        state.disabled = true;
        state.publish(&self.flag);
        let Some(period) = max_period else {
            return;
        };
        let mine = state.generation;
        let (flag, shared) = (Arc::clone(&self.flag), Arc::clone(&self.state));
        let spawned = thread::Builder::new()
            .name("lessor-dhcp-enable".into())
            .spawn(move || {
                thread::sleep(period);
                let mut state = shared.lock().unwrap_or_else(PoisonError::into_inner);
                if state.generation == mine {
                    state.until = None;
                    state.disabled = false;
                    state.publish(&flag);
                    tracing::info!("DHCP service enabled again: max-period has passed");
                }
            });
        if let Err(e) = spawned {
            // Without the timer the disable would last until an enable: refuse it instead.
            tracing::error!("cannot start the max-period timer ({e}): DHCP stays enabled");
            state.until = None;
            state.disabled = false;
            state.publish(&self.flag);
        }
    }

    /// Enables DHCP again.
    pub(crate) fn enable(&self) {
        let mut state = self.lock();
        state.generation += 1;
        state.until = None;
        state.disabled = false;
        state.publish(&self.flag);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use std::sync::atomic::Ordering;

    use super::{Hold, Switch, drop_reason};

    #[test]
    fn max_period_re_enables_unless_a_later_command_came() {
        let s = Switch::default();
        s.disable(Some(Duration::from_millis(50)));
        assert!(s.is_disabled() && s.flag().load(Ordering::Relaxed) != 0);
        assert_eq!(s.remaining(), Some(0));
        std::thread::sleep(Duration::from_millis(300));
        assert!(!s.is_disabled(), "max-period re-enables");
        assert_eq!(s.remaining(), None);

        // A disable without max-period after a timed one: the old timer must not enable.
        s.disable(Some(Duration::from_millis(50)));
        s.disable(None);
        std::thread::sleep(Duration::from_millis(300));
        assert!(
            s.is_disabled(),
            "a later disable outlives the earlier timer"
        );
        s.enable();
        assert!(!s.is_disabled());
    }

    #[test]
    fn every_scope_is_served_until_the_agent_says_otherwise() {
        let s = Switch::default();
        let seen = s.scopes();
        assert_eq!(seen.load(Ordering::Relaxed), crate::scope::ALL);
        s.set_scopes(0b10);
        assert_eq!(
            seen.load(Ordering::Relaxed),
            0b10,
            "the workers' copy follows"
        );
        s.disable(None);
        s.enable();
        assert_eq!(
            seen.load(Ordering::Relaxed),
            0b10,
            "dhcp-enable leaves the scopes"
        );
    }

    #[test]
    fn the_ha_hold_outlasts_an_enable_and_names_its_drops() {
        let s = Switch::default();
        s.set_hold(Some(Hold::Standby));
        s.enable();
        let code = s.flag().load(Ordering::Relaxed);
        assert_eq!(
            drop_reason(code),
            "ha_standby",
            "dhcp-enable does not lift a hold"
        );
        assert!(!s.is_disabled());
        s.disable(None);
        s.set_hold(Some(Hold::Fenced));
        assert_eq!(drop_reason(s.flag().load(Ordering::Relaxed)), "ha_fenced");
        s.set_hold(None);
        assert_eq!(drop_reason(s.flag().load(Ordering::Relaxed)), "disabled");
        s.enable();
        assert_eq!(s.flag().load(Ordering::Relaxed), 0);
    }
}
