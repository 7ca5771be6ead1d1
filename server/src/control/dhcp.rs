//! `dhcp-disable` and `dhcp-enable`: the switch every worker reads once per batch.
//!
//! While it is set the workers drop every request (counted as `disabled`) and `/ready`
//! answers 503. A disable with `max-period` re-enables itself after that many seconds,
//! unless another disable or an enable came in between.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

/// The DHCP service switch: the flag the workers read and when it was last flipped.
#[derive(Debug, Default)]
pub(crate) struct Switch {
    disabled: Arc<AtomicBool>,
    state: Arc<Mutex<State>>,
}

#[derive(Debug, Default)]
struct State {
    /// Bumped by every disable and enable, so a timer of an older disable does nothing.
    generation: u64,
    /// When a disable with `max-period` ends.
    until: Option<Instant>,
}

impl Switch {
    /// The flag the workers read.
    pub(crate) fn flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.disabled)
    }

    /// Whether DHCP is disabled now.
    pub(crate) fn is_disabled(&self) -> bool {
        self.disabled.load(Ordering::Relaxed)
    }

    /// Seconds until a disable with `max-period` ends by itself, if one is running.
    pub(crate) fn remaining(&self) -> Option<u64> {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let until = state.until.filter(|_| self.is_disabled())?;
        Some(until.saturating_duration_since(Instant::now()).as_secs())
    }

    /// Disables DHCP, for `max_period` at most when given.
    pub(crate) fn disable(&self, max_period: Option<Duration>) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.generation += 1;
        state.until = max_period.map(|p| Instant::now() + p);
        self.disabled.store(true, Ordering::Relaxed);
        let Some(period) = max_period else {
            return;
        };
        let mine = state.generation;
        let (flag, shared) = (Arc::clone(&self.disabled), Arc::clone(&self.state));
        let spawned = thread::Builder::new()
            .name("lessor-dhcp-enable".into())
            .spawn(move || {
                thread::sleep(period);
                let mut state = shared.lock().unwrap_or_else(PoisonError::into_inner);
                if state.generation == mine {
                    state.until = None;
                    flag.store(false, Ordering::Relaxed);
                    tracing::info!("DHCP service enabled again: max-period has passed");
                }
            });
        if let Err(e) = spawned {
            // Without the timer the disable would last until an enable: refuse it instead.
            tracing::error!("cannot start the max-period timer ({e}): DHCP stays enabled");
            state.until = None;
            self.disabled.store(false, Ordering::Relaxed);
        }
    }

    /// Enables DHCP again.
    pub(crate) fn enable(&self) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.generation += 1;
        state.until = None;
        self.disabled.store(false, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::Switch;

    #[test]
    fn max_period_re_enables_unless_a_later_command_came() {
        let s = Switch::default();
        s.disable(Some(Duration::from_millis(50)));
        assert!(s.is_disabled() && s.flag().load(std::sync::atomic::Ordering::Relaxed));
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
}
