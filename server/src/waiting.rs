//! Replies that wait for the journal: with `journal.sync: group` a reply that binds or extends
//! a lease leaves only once its record is durable ("durable ACK" in docs/ARCHITECTURE.md).
//! Every worker keeps its own queue ([`crate::worker`]).

use std::collections::VecDeque;

use lessor_journal::Ticket;

/// A reply that may leave once the journal has made `ticket` durable, and where it goes.
struct Waiting<D> {
    ticket: Ticket,
    buf: Vec<u8>,
    dst: D,
}

/// A worker's replies waiting for the journal, oldest first, with the buffers of replies
/// already sent kept for reuse (no allocation per reply once warm).
pub(crate) struct WaitQueue<D> {
    queue: VecDeque<Waiting<D>>,
    spare: Vec<Vec<u8>>,
    limit: usize,
}

/// Reply buffers made up front, each with room for a whole reply: what one sync's worth of
/// waiting replies needs at a few tens of thousands of exchanges per second, so that the
/// first bursts do not allocate either. More are made (and then kept) when more wait.
const READY: usize = 128;

impl<D> WaitQueue<D> {
    /// At most `limit` replies wait; past that the oldest is dropped ("oldest dropped
    /// first"). Replies are at most `reply_len` bytes.
    pub(crate) fn new(limit: usize, reply_len: usize) -> Self {
        let ready = READY.min(limit);
        WaitQueue {
            queue: VecDeque::with_capacity(ready),
            spare: (0..ready).map(|_| Vec::with_capacity(reply_len)).collect(),
            limit,
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// The ticket the oldest reply waits for.
    pub(crate) fn oldest(&self) -> Option<Ticket> {
        self.queue.front().map(|w| w.ticket)
    }

    /// Queues a copy of `reply`. Returns true if the oldest waiting reply had to be dropped
    /// to stay within the limit (its lease is still recorded; the client retries).
    pub(crate) fn push(&mut self, ticket: Ticket, reply: &[u8], dst: D) -> bool {
        let mut buf = self.spare.pop().unwrap_or_default();
        buf.clear();
        buf.extend_from_slice(reply);
        self.queue.push_back(Waiting { ticket, buf, dst });
        if self.queue.len() > self.limit
            && let Some(old) = self.queue.pop_front()
        {
            self.spare.push(old.buf);
            return true;
        }
        false
    }

    /// Drops every waiting reply (their leases stay recorded) and returns how many.
    pub(crate) fn clear(&mut self) -> usize {
        let n = self.queue.len();
        self.spare.extend(self.queue.drain(..).map(|w| w.buf));
        n
    }

    /// Hands every reply whose ticket is at most `durable` to `send`, oldest first.
    pub(crate) fn release(&mut self, durable: Ticket, mut send: impl FnMut(&[u8], &D)) {
        while self.queue.front().is_some_and(|w| w.ticket <= durable) {
            let Some(w) = self.queue.pop_front() else {
                break;
            };
            send(&w.buf, &w.dst);
            self.spare.push(w.buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases_in_order_up_to_the_durable_ticket_and_drops_the_oldest_past_the_limit() {
        let mut q = WaitQueue::new(3, 16);
        assert!(!q.push(Ticket(1), b"a", 'a'));
        assert!(!q.push(Ticket(2), b"b", 'b'));
        assert!(!q.push(Ticket(2), b"c", 'c'));
        assert!(q.push(Ticket(3), b"d", 'd'), "over the limit");
        assert_eq!(q.oldest(), Some(Ticket(2)));
        let mut sent = Vec::new();
        q.release(Ticket(2), |buf, dst| sent.push((buf.to_vec(), *dst)));
        assert_eq!(sent, vec![(b"b".to_vec(), 'b'), (b"c".to_vec(), 'c')]);
        assert_eq!(q.oldest(), Some(Ticket(3)));
        q.release(Ticket(9), |_, dst| assert_eq!(*dst, 'd'));
        assert!(q.is_empty());
        // Buffers are kept for reuse: the three made up front and the one the fourth reply
        // needed.
        assert_eq!(q.spare.len(), 4);
        q.push(Ticket(10), b"e", 'e');
        assert_eq!(q.spare.len(), 3);
        q.push(Ticket(11), b"f", 'f');
        assert_eq!(q.clear(), 2);
        assert!(q.is_empty());
        q.release(Ticket(99), |_, dst| panic!("{dst} was dropped"));
        assert_eq!(q.spare.len(), 4, "the buffers are kept");
    }
}
