//! Load balancing on etcd (docs/HA.md, "Load balancing"): each peer's scope has a key,
//! `/lessor/<cluster>/scopes/<peer>`, held under the etcd lease of the server that answers
//! the scope's clients.
//!
//! A server always competes for its own scope's key, and for its partner's only while the
//! partner is not registered (its member key gone with its lease) and this server has run
//! for a TTL (a partner starting at the same time registers meanwhile). Taking a key counts
//! a term, as the leader key does in hot-standby, and a scope is served only once its records
//! are folded into the engines. A server that holds its partner's scope while the partner is
//! registered and in sync hands it back: it stops answering the scope, waits until the
//! partner has acknowledged every lease it wrote until then, deletes the key (which the
//! partner takes at its next tick) and drops the replies still waiting.

use std::sync::atomic::Ordering;
use std::time::Duration;

use etcd_client::{Client, Compare, CompareOp, PutOptions, Txn, TxnOp};
use tokio::time::{Instant, timeout};

use super::status::Role;
use super::{Members, Run, Seen, Timing, count, lock};
use crate::config::HaConfig;
use crate::scope;

/// The etcd keys of load balancing.
#[derive(Debug)]
pub(super) struct ScopeKeys {
    /// Each scope's key, in `ha.peers` order.
    scopes: [String; 2],
    /// The partner's member key: it exists while the partner's etcd lease is alive.
    partner: String,
    /// This server's scope.
    pub(super) mine: usize,
}

impl ScopeKeys {
    /// The keys of `c`'s scopes, if it balances.
    pub(super) fn new(c: &HaConfig) -> Option<ScopeKeys> {
        let names = c.scopes()?;
        let mine = c.my_index();
        Some(ScopeKeys {
            scopes: names.map(|n| format!("/lessor/{}/scopes/{n}", c.cluster)),
            partner: format!("/lessor/{}/members/{}", c.cluster, names[1 - mine]),
            mine,
        })
    }
}

/// Both scopes as one tick saw them.
#[derive(Debug)]
pub(super) struct Scopes {
    /// Each scope's key: its holder (empty when nobody holds it), epoch and whether this
    /// server's lease holds it.
    pub(super) seen: [Seen; 2],
    /// The partner is registered: its etcd lease is alive.
    pub(super) partner_up: bool,
}

/// Takes this server's scope key if nobody holds it, and the partner's when the partner is
/// not registered and `may_cover` says this server may take it; reads both keys, the term
/// count and whether the partner is registered.
pub(super) async fn campaign(
    client: &mut Client,
    keys: &ScopeKeys,
    term_key: &str,
    node: &str,
    lease: i64,
    may_cover: bool,
) -> Result<Option<Scopes>, etcd_client::Error> {
    let mut seen: [Option<Seen>; 2] = [None, None];
    let mut partner_up = true;
    for (i, key) in keys.scopes.iter().enumerate() {
        let key = key.as_str();
        let mut when = vec![Compare::create_revision(key, CompareOp::Equal, 0)];
        if i != keys.mine {
            if !may_cover {
                // Never true: only read the key.
                when.push(Compare::version(key, CompareOp::Less, 0));
            }
            when.push(Compare::create_revision(
                keys.partner.as_str(),
                CompareOp::Equal,
                0,
            ));
        }
        let txn = Txn::new()
            .when(when)
            .and_then([
                TxnOp::put(key, node, Some(PutOptions::new().with_lease(lease))),
                TxnOp::put(term_key, node, None),
                TxnOp::get(term_key, None),
            ])
            .or_else([
                TxnOp::get(key, None),
                TxnOp::get(term_key, None),
                TxnOp::get(keys.partner.as_str(), None),
            ]);
        let (response, mut gets) = super::run(client, txn).await?;
        if response.succeeded() {
            let epoch = response.header().map_or(0, |h| h.revision());
            if i != keys.mine {
                partner_up = false;
            }
            seen[i] = Some(Seen {
                leader: node.to_owned(),
                epoch: u64::try_from(epoch).unwrap_or(0),
                term: count(gets.next().flatten()),
                mine: true,
            });
            continue;
        }
        let (held, term, partner) = (
            gets.next().flatten(),
            count(gets.next().flatten()),
            gets.next().flatten(),
        );
        if i != keys.mine {
            partner_up = partner.is_some();
        }
        seen[i] = Some(match held {
            Some(kv) => Seen {
                leader: String::from_utf8_lossy(kv.value()).into_owned(),
                epoch: u64::try_from(kv.create_revision()).unwrap_or(0),
                term,
                mine: kv.lease() == lease,
            },
            None => Seen {
                leader: String::new(),
                epoch: 0,
                term,
                mine: false,
            },
        });
    }
    let [Some(a), Some(b)] = seen else {
        return Ok(None);
    };
    Ok(Some(Scopes {
        seen: [a, b],
        partner_up,
    }))
}

/// Deletes `key` if this server's `lease` holds it.
async fn give_back(client: &mut Client, key: &str, lease: i64) -> bool {
    let txn = Txn::new()
        .when([Compare::lease(key, CompareOp::Equal, lease)])
        .and_then([TxnOp::delete(key, None)]);
    matches!(client.txn(txn).await, Ok(r) if r.succeeded())
}

impl Run {
    /// One tick of load balancing: serves each scope whose key this server holds once its
    /// records are in the engines, stops serving a scope it no longer holds, and hands the
    /// partner's scope back when it can.
    pub(super) async fn balance(
        &self,
        scopes: Scopes,
        members: &mut Members,
        lease: i64,
        timing: Timing,
    ) {
        let Some(keys) = &self.scope_keys else {
            return;
        };
        let mut served = self.served.load(Ordering::SeqCst);
        let (mut pending, mut lost) = (false, false);
        for (i, seen) in scopes.seen.iter().enumerate() {
            let bit = 1u8 << i;
            if seen.mine && served & bit == 0 {
                // Not one answer of the scope before its records are in the engines.
                let ready = match &self.stream {
                    Some(stream) => stream.taken_over(seen.epoch, seen.term, Some(i)),
                    None => Some(Ok(())),
                };
                match ready {
                    Some(Ok(())) => {
                        served |= bit;
                        if !scopes.partner_up {
                            self.start_waiting(i);
                        }
                    }
                    Some(Err(why)) => {
                        tracing::error!(node = %self.config.node, scope = i, "HA: cannot take the scope over yet: {why}");
                    }
                    None => {}
                }
                pending |= served & bit == 0;
            } else if !seen.mine && served & bit != 0 {
                served &= !bit;
                lost = true;
                self.stop_waiting(i);
            }
        }
        self.go_on_waiting();
        if served == 0 && pending {
            // Stay as held (fenced at start) while the takeover runs: standing by would
            // abort it.
            return;
        }
        self.serve(served, &scopes, lost);
        let partner = 1 - keys.mine;
        let Some(stream) = &self.stream else {
            return;
        };
        if served & (1 << partner) == 0 || !scopes.partner_up || !stream.partner_in_sync() {
            return;
        }
        // Hand the partner's scope back: stop answering it, wait until the partner has
        // every lease of it this server wrote, then give up its key.
        tracing::info!(node = %self.config.node, "HA: handing the partner's scope back");
        let keep = served & !(1 << partner);
        self.stop_waiting(partner);
        self.live.set_dhcp_scopes(self.mask(keep));
        if !stream.partner_has_scope(timing.tick * 2).await {
            tracing::warn!(node = %self.config.node, "HA: the partner fell behind; keeping its scope");
            self.live.set_dhcp_scopes(self.mask(served));
            return;
        }
        let key = keys.scopes[partner].as_str();
        if timeout(timing.tick, give_back(&mut members.client(), key, lease))
            .await
            .unwrap_or(false)
        {
            // A reply still waiting may hold a lease the partner's takeover missed: only the
            // journal keeps it (docs/HA.md, "Losing the lead").
            self.serve(keep, &scopes, true);
        } else {
            self.live.set_dhcp_scopes(self.mask(served));
        }
    }

    /// The mask the workers read: the scopes `served`, and those whose pools wait.
    fn mask(&self, served: u8) -> u8 {
        let until = *lock(&self.waiting);
        (0..2).fold(served, |m, s| scope::with_waiting(m, s, until[s].is_some()))
    }

    /// With `ha.sync: false`, scope `s` was just taken over from a partner that is gone:
    /// its last leases may be unknown here, so for `ha.mclt` the scope's pools give no free
    /// address, and its clients get the other scope's instead (docs/HA.md, "Load
    /// balancing"). The pools wait before the workers are told to look further.
    fn start_waiting(&self, s: usize) {
        let Some(stream) = self.stream.as_ref().filter(|_| !self.config.sync) else {
            return;
        };
        if self.config.mclt == 0 {
            return;
        }
        stream.set_waiting(s, true);
        let until = Instant::now() + Duration::from_secs(self.config.mclt.into());
        lock(&self.waiting)[s] = Some(until);
        tracing::info!(node = %self.config.node, scope = s, mclt = self.config.mclt, "HA: the scope's free addresses wait out the mclt");
    }

    /// Ends scope `s`'s wait: the workers stop looking further first, then its pools give
    /// free addresses again.
    pub(super) fn stop_waiting(&self, s: usize) {
        if lock(&self.waiting)[s].take().is_none() {
            return;
        }
        self.live
            .set_dhcp_scopes(self.mask(self.served.load(Ordering::SeqCst)));
        if let Some(stream) = &self.stream {
            stream.set_waiting(s, false);
        }
        tracing::info!(node = %self.config.node, scope = s, "HA: the scope's free addresses are given again");
    }

    /// Each tick: ends the waits whose `mclt` has run out, and sets the others again in
    /// the engines (a reload may have built new ones).
    fn go_on_waiting(&self) {
        let until = *lock(&self.waiting);
        for (s, until) in until.into_iter().enumerate() {
            match (until, &self.stream) {
                (Some(t), _) if Instant::now() >= t => self.stop_waiting(s),
                (Some(_), Some(stream)) => stream.set_waiting(s, true),
                _ => {}
            }
        }
    }

    /// Answers the scopes of `served` (a mask), holding DHCP back when it is empty. A scope
    /// `lost` (its key held by another lease now, or handed back) drops every reply still
    /// waiting (docs/HA.md, "Losing the lead").
    fn serve(&self, served: u8, scopes: &Scopes, lost: bool) {
        let before = self.served.swap(served, Ordering::SeqCst);
        let role = if served == 0 {
            Role::Standby
        } else {
            Role::Leader
        };
        // Narrow first, widen last: a server never answers a scope it has not taken.
        if before & !served != 0 {
            self.live.set_dhcp_scopes(self.mask(served));
            if lost {
                self.live.drop_waiting_replies();
            }
        }
        let mine = &scopes.seen[self.scope_keys.as_ref().map_or(0, |k| k.mine)];
        self.enter(role, Some((mine.leader.clone(), mine.epoch, mine.term)));
        self.live.set_dhcp_scopes(self.mask(served));
        let view = scopes
            .seen
            .each_ref()
            .map(|s| ((!s.leader.is_empty()).then(|| s.leader.clone()), s.epoch));
        self.status.set_scopes(view, self.mask(served));
        if before != served {
            tracing::info!(node = %self.config.node, served, "HA: scopes served changed");
        }
    }
}
