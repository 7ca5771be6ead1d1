//! The stream's wire format: pure encoding and decoding of messages (docs/JOURNAL.md,
//! "Streaming to a peer", lays it out byte by byte). Every malformed input is an error
//! naming what is wrong, never a panic.
//!
//! With a pre-shared [`StreamKey`] on both ends, every message after the greeting carries a
//! tag instead of a crc32c: HMAC-SHA256, truncated to [`TAG_LEN`] bytes, under a key of that
//! connection alone (both ends' nonces go into it) and over the message's direction and
//! number. So a changed, dropped, reordered, reflected or replayed message, or one made
//! without the key, does not verify. It proves who wrote a message, and hides nothing.

use std::sync::Arc;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::format::{FRAME_HEADER_LEN, MAX_RECORD_LEN};

/// First 8 bytes of a `Hello`'s body.
pub const MAGIC: [u8; 8] = *b"LSRJSTR\0";
/// The wire version a `Hello` carries; a peer refuses any other.
pub const VERSION: u32 = 2;
/// The most frame bytes one `Frames` or `SnapshotRecords` message carries (at least one
/// whole frame always fits).
pub const MAX_BATCH: usize = 4 << 20;
const _: () = assert!(FRAME_HEADER_LEN + MAX_RECORD_LEN <= MAX_BATCH);
/// The longest body of any message.
pub const MAX_BODY: usize = MAX_BATCH + 64;
/// Length of a message header: kind, body length.
pub const HEADER_LEN: usize = 5;
/// Length of the trailer of a message without a tag: crc32c of header and body.
pub const TRAILER_LEN: usize = 4;
/// Length of the trailer of a tagged message: its truncated HMAC-SHA256.
pub const TAG_LEN: usize = 16;
/// Length of a greeting's and an answer's nonce.
pub const NONCE_LEN: usize = 16;
/// The shortest [`StreamKey`].
pub const MIN_KEY_LEN: usize = 32;
/// The longest node name.
pub const MAX_NODE: usize = 255;

/// Set in a header's kind byte: the trailer is a tag, not a crc32c.
const TAGGED: u8 = 0x80;
/// The `authenticated` bit of a `Hello`'s or a `Position`'s flags byte.
const AUTHENTICATED: u8 = 1;
/// What a session key is derived for (docs/JOURNAL.md, "Stream key").
const LABEL: &[u8] = b"lessor stream v2";

const HELLO: u8 = 1;
const POSITION: u8 = 2;
const FRAMES: u8 = 3;
const SNAPSHOT_BEGIN: u8 = 4;
const SNAPSHOT_RECORDS: u8 = 5;
const SNAPSHOT_END: u8 = 6;
const ACK: u8 = 7;
const REFUSED: u8 = 8;
const PING: u8 = 9;

/// A connection's random nonce, one from each end.
pub type Nonce = [u8; NONCE_LEN];

/// One message of the stream protocol.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Msg {
    /// Sender to receiver, first: who streams, under which epoch, from which journal run.
    Hello {
        /// The sending node.
        node: String,
        /// Its fencing epoch.
        epoch: u64,
        /// Its journal's run ([`Source::run`](super::Source::run)), never 0.
        run: u64,
        /// The sender's nonce for this connection.
        nonce: Nonce,
        /// The sender has a stream key.
        authenticated: bool,
    },
    /// Receiver to sender, in answer: what it holds durable (`node` `None`: nothing yet).
    Position {
        /// The node whose stream it follows.
        node: Option<String>,
        /// That stream's epoch.
        epoch: u64,
        /// That stream's journal run (0: unknown, e.g. a position saved by an older build).
        run: u64,
        /// The last sequence it has synced.
        seq: u64,
        /// The receiver's nonce for this connection.
        nonce: Nonce,
        /// The receiver has a stream key.
        authenticated: bool,
    },
    /// Journal frames with sequences `first..first + count`.
    Frames {
        /// The sender's epoch.
        epoch: u64,
        /// The sequence of the first frame.
        first: u64,
        /// How many frames.
        count: u32,
        /// The frames, back to back.
        frames: Vec<u8>,
    },
    /// A snapshot follows, current to `position`.
    SnapshotBegin {
        /// The sender's epoch.
        epoch: u64,
        /// The last sequence the snapshot reflects.
        position: u64,
    },
    /// Some of the snapshot's records, one frame each.
    SnapshotRecords {
        /// How many frames.
        count: u32,
        /// The frames, back to back.
        frames: Vec<u8>,
    },
    /// The snapshot is complete: it held `records` records.
    SnapshotEnd {
        /// Records sent since `SnapshotBegin`.
        records: u64,
    },
    /// Receiver to sender: every frame up to `seq` of `epoch` is synced.
    Ack {
        /// The epoch acknowledged.
        epoch: u64,
        /// The last sequence synced.
        seq: u64,
    },
    /// Sender to receiver when it has sent nothing for a while: it is alive, and how far its
    /// stream is (the receiver answers with an `Ack` of what it holds).
    Ping {
        /// The sender's epoch.
        epoch: u64,
        /// The sender's last synced sequence.
        position: u64,
    },
    /// Either way: the peer refuses the stream, and why; the connection closes.
    Refused {
        /// Why.
        reason: String,
    },
}

impl Msg {
    /// What the message is, for errors: "frames", "an ack", ...
    pub fn name(&self) -> &'static str {
        kind_name(self.kind())
    }

    fn kind(&self) -> u8 {
        match self {
            Msg::Hello { .. } => HELLO,
            Msg::Position { .. } => POSITION,
            Msg::Frames { .. } => FRAMES,
            Msg::SnapshotBegin { .. } => SNAPSHOT_BEGIN,
            Msg::SnapshotRecords { .. } => SNAPSHOT_RECORDS,
            Msg::SnapshotEnd { .. } => SNAPSHOT_END,
            Msg::Ack { .. } => ACK,
            Msg::Refused { .. } => REFUSED,
            Msg::Ping { .. } => PING,
        }
    }
}

fn kind_name(kind: u8) -> &'static str {
    match kind {
        HELLO => "a greeting",
        POSITION => "a position",
        FRAMES => "frames",
        SNAPSHOT_BEGIN => "a snapshot begin",
        SNAPSHOT_RECORDS => "snapshot records",
        SNAPSHOT_END => "a snapshot end",
        ACK => "an ack",
        REFUSED => "a refusal",
        PING => "a ping",
        _ => "a message of unknown kind",
    }
}

/// A message that does not decode, and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("stream message malformed: {0}")]
pub struct Malformed(pub String);

fn bad<T>(s: impl Into<String>) -> Result<T, Malformed> {
    Err(Malformed(s.into()))
}

/// Why a message fails the stream key's check.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// This end has a stream key; the partner greets or answers without one.
    #[error("the partner has no stream key (this server has one)")]
    PartnerHasNoKey,
    /// The partner has a stream key; this end has none.
    #[error("this server has no stream key (the partner has one)")]
    NoKey,
    /// The partner's first tagged message does not verify: its key differs, or the message
    /// was changed on the way.
    #[error("stream key mismatch or tampered message")]
    Mismatch,
    /// A later message does not verify: changed, dropped, reordered or replayed.
    #[error("tampered, reordered or replayed {kind} (its tag does not verify)")]
    BadTag {
        /// What the message says it is.
        kind: &'static str,
    },
    /// A message without a tag on a connection whose messages all carry one.
    #[error("{kind} without a tag on an authenticated stream")]
    Untagged {
        /// What the message is.
        kind: &'static str,
    },
    /// A tagged message on a connection without a stream key.
    #[error("tagged {kind} on a stream without a key")]
    Unexpected {
        /// What the message says it is.
        kind: &'static str,
    },
}

/// Why a received message is not taken.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// It does not decode.
    #[error(transparent)]
    Malformed(#[from] Malformed),
    /// It fails the stream key's check.
    #[error(transparent)]
    Auth(#[from] AuthError),
}

/// A pre-shared stream key (at least [`MIN_KEY_LEN`] bytes); `Debug` shows none of it.
#[derive(Clone, PartialEq, Eq)]
pub struct StreamKey(Arc<[u8]>);

impl StreamKey {
    /// The key of `bytes`; `None` if they are fewer than [`MIN_KEY_LEN`].
    pub fn new(bytes: &[u8]) -> Option<StreamKey> {
        (bytes.len() >= MIN_KEY_LEN).then(|| StreamKey(bytes.into()))
    }
}

impl std::fmt::Debug for StreamKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Which end of a connection: the one that greets and sends frames, or the one that
/// answers and acks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// Sends `Hello`, the snapshot, frames, pings.
    Sender,
    /// Sends `Position`, acks.
    Receiver,
}

impl End {
    /// The direction byte a tag covers: what this end sends.
    fn direction(self) -> u8 {
        match self {
            End::Sender => 1,
            End::Receiver => 2,
        }
    }
}

/// Whether a connection is authenticated, from whether each end has a key: both or
/// neither, else which one lacks it.
pub fn agree(key: Option<&StreamKey>, partner: bool) -> Result<Option<&StreamKey>, AuthError> {
    match (key, partner) {
        (Some(k), true) => Ok(Some(k)),
        (None, false) => Ok(None),
        (Some(_), false) => Err(AuthError::PartnerHasNoKey),
        (None, true) => Err(AuthError::NoKey),
    }
}

/// Tags one direction of an authenticated connection, in order: the session key and the
/// number of the next message that way.
#[derive(Clone)]
pub struct Tagger {
    mac: Hmac<Sha256>,
    direction: u8,
    next: u64,
}

impl std::fmt::Debug for Tagger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tagger")
            .field("direction", &self.direction)
            .field("next", &self.next)
            .finish_non_exhaustive()
    }
}

/// The taggers of `end` of the connection that `node`'s greeting in `epoch` from journal
/// `run` began: what it sends, what it receives. The session key is HMAC-SHA256(`key`,
/// "lessor stream v2" | node | epoch | run | the sender's nonce | the receiver's nonce).
pub fn session(
    key: &StreamKey,
    (node, epoch, run): (&str, u64, u64),
    nonces: [&Nonce; 2],
    end: End,
) -> (Tagger, Tagger) {
    let node = &node.as_bytes()[..node.len().min(MAX_NODE)];
    let mut m = hmac(&key.0);
    m.update(LABEL);
    m.update(&[node.len() as u8]);
    m.update(node);
    m.update(&epoch.to_le_bytes());
    m.update(&run.to_le_bytes());
    m.update(nonces[0]);
    m.update(nonces[1]);
    let mac = hmac(&m.finalize().into_bytes());
    let tagger = |end: End| Tagger {
        mac: mac.clone(),
        direction: end.direction(),
        next: 0,
    };
    let other = match end {
        End::Sender => End::Receiver,
        End::Receiver => End::Sender,
    };
    (tagger(end), tagger(other))
}

fn hmac(key: &[u8]) -> Hmac<Sha256> {
    <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes a key of any length")
}

impl Tagger {
    /// The MAC of the next message, `header` and `body`.
    fn mac(&self, header: &[u8], body: &[u8]) -> Hmac<Sha256> {
        let mut m = self.mac.clone();
        m.update(&[self.direction]);
        m.update(&self.next.to_le_bytes());
        m.update(header);
        m.update(body);
        m
    }

    fn tag(&mut self, header: &[u8], body: &[u8]) -> [u8; TAG_LEN] {
        let full = self.mac(header, body).finalize().into_bytes();
        self.next += 1;
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&full[..TAG_LEN]);
        tag
    }

    /// Checks the next message's `tag` in constant time.
    fn verify(
        &mut self,
        kind: u8,
        header: &[u8],
        body: &[u8],
        tag: &[u8],
    ) -> Result<(), AuthError> {
        match self.mac(header, body).verify_truncated_left(tag) {
            Ok(()) => {
                self.next += 1;
                Ok(())
            }
            Err(_) if self.next == 0 => Err(AuthError::Mismatch),
            Err(_) => Err(AuthError::BadTag {
                kind: kind_name(kind),
            }),
        }
    }
}

/// Appends `msg`, framed (header, body, trailer), to `out`: tagged by `tagger` (the next
/// message its way), else with a crc32c. A `Refused` never carries a tag: the peer may be
/// unable to check one, and that is often why it is refused.
pub fn encode(msg: &Msg, out: &mut Vec<u8>, tagger: Option<&mut Tagger>) {
    let start = out.len();
    out.extend_from_slice(&[0u8; HEADER_LEN]);
    match msg {
        Msg::Hello {
            node,
            epoch,
            run,
            nonce,
            authenticated,
        } => {
            out.extend_from_slice(&MAGIC);
            out.extend_from_slice(&VERSION.to_le_bytes());
            out.extend_from_slice(&epoch.to_le_bytes());
            out.extend_from_slice(&run.to_le_bytes());
            put_node(out, node);
            out.extend_from_slice(nonce);
            out.push(flags(*authenticated));
        }
        Msg::Position {
            node,
            epoch,
            run,
            seq,
            nonce,
            authenticated,
        } => {
            out.extend_from_slice(&epoch.to_le_bytes());
            out.extend_from_slice(&run.to_le_bytes());
            out.extend_from_slice(&seq.to_le_bytes());
            put_node(out, node.as_deref().unwrap_or(""));
            out.extend_from_slice(nonce);
            out.push(flags(*authenticated));
        }
        Msg::Frames {
            epoch,
            first,
            count,
            frames,
        } => {
            out.extend_from_slice(&epoch.to_le_bytes());
            out.extend_from_slice(&first.to_le_bytes());
            out.extend_from_slice(&count.to_le_bytes());
            out.extend_from_slice(frames);
        }
        Msg::SnapshotBegin { epoch, position } => {
            out.extend_from_slice(&epoch.to_le_bytes());
            out.extend_from_slice(&position.to_le_bytes());
        }
        Msg::SnapshotRecords { count, frames } => {
            out.extend_from_slice(&count.to_le_bytes());
            out.extend_from_slice(frames);
        }
        Msg::SnapshotEnd { records } => {
            out.extend_from_slice(&records.to_le_bytes());
        }
        Msg::Ack { epoch, seq } => {
            out.extend_from_slice(&epoch.to_le_bytes());
            out.extend_from_slice(&seq.to_le_bytes());
        }
        Msg::Ping { epoch, position } => {
            out.extend_from_slice(&epoch.to_le_bytes());
            out.extend_from_slice(&position.to_le_bytes());
        }
        Msg::Refused { reason } => {
            let r = reason.as_bytes();
            out.extend_from_slice(&r[..r.len().min(4096)]);
        }
    };
    let tagger = tagger.filter(|_| !matches!(msg, Msg::Refused { .. }));
    let body = (out.len() - start - HEADER_LEN) as u32;
    out[start] = msg.kind() | if tagger.is_some() { TAGGED } else { 0 };
    out[start + 1..start + HEADER_LEN].copy_from_slice(&body.to_le_bytes());
    match tagger {
        Some(t) => {
            let (header, body) = out[start..].split_at(HEADER_LEN);
            let tag = t.tag(header, body);
            out.extend_from_slice(&tag);
        }
        None => {
            let crc = crc32c::crc32c(&out[start..]);
            out.extend_from_slice(&crc.to_le_bytes());
        }
    }
}

fn flags(authenticated: bool) -> u8 {
    if authenticated { AUTHENTICATED } else { 0 }
}

fn put_node(out: &mut Vec<u8>, node: &str) {
    let n = &node.as_bytes()[..node.len().min(MAX_NODE)];
    out.push(n.len() as u8);
    out.extend_from_slice(n);
}

/// What a message's header announces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// The message kind.
    pub kind: u8,
    /// The body's length, at most [`MAX_BODY`].
    pub body: usize,
    /// The trailer is a tag ([`TAG_LEN`] bytes), not a crc32c.
    pub tagged: bool,
}

impl Header {
    /// The bytes that follow the header: body and trailer.
    pub fn rest(&self) -> usize {
        self.body + if self.tagged { TAG_LEN } else { TRAILER_LEN }
    }
}

/// What a header announces; the body length is bounded by [`MAX_BODY`].
pub fn decode_header(h: &[u8; HEADER_LEN]) -> Result<Header, Malformed> {
    let len = u32::from_le_bytes([h[1], h[2], h[3], h[4]]) as usize;
    let kind = h[0] & !TAGGED;
    if !(HELLO..=PING).contains(&kind) {
        return bad(format!("unknown message kind {}", h[0]));
    }
    if len > MAX_BODY {
        return bad(format!(
            "body of {len} bytes, more than the {MAX_BODY} allowed"
        ));
    }
    Ok(Header {
        kind,
        body: len,
        tagged: h[0] & TAGGED != 0,
    })
}

/// A reader over a body that errs, naming the field, instead of running off its end.
struct Body<'a> {
    b: &'a [u8],
    at: usize,
}

impl Body<'_> {
    fn take(&mut self, n: usize, what: &str) -> Result<&[u8], Malformed> {
        if self.b.len() - self.at < n {
            return bad(format!(
                "body ends inside `{what}` (needs {n} bytes at {}, has {})",
                self.at,
                self.b.len() - self.at
            ));
        }
        let s = &self.b[self.at..self.at + n];
        self.at += n;
        Ok(s)
    }
    fn u64(&mut self, what: &str) -> Result<u64, Malformed> {
        let s = self.take(8, what)?;
        Ok(u64::from_le_bytes(s.try_into().unwrap_or([0; 8])))
    }
    fn u32(&mut self, what: &str) -> Result<u32, Malformed> {
        let s = self.take(4, what)?;
        Ok(u32::from_le_bytes(s.try_into().unwrap_or([0; 4])))
    }
    fn nonce(&mut self) -> Result<Nonce, Malformed> {
        let s = self.take(NONCE_LEN, "nonce")?;
        Ok(s.try_into().unwrap_or([0; NONCE_LEN]))
    }
    fn authenticated(&mut self) -> Result<bool, Malformed> {
        match self.take(1, "flags")?[0] {
            0 => Ok(false),
            AUTHENTICATED => Ok(true),
            f => bad(format!("unknown flags {f:#04x}")),
        }
    }
    fn node(&mut self) -> Result<String, Malformed> {
        let n = self.take(1, "node length")?[0] as usize;
        let s = self.take(n, "node")?;
        match std::str::from_utf8(s) {
            Ok(s) => Ok(s.to_owned()),
            Err(_) => bad("`node` is not UTF-8"),
        }
    }
    fn rest(&mut self) -> Vec<u8> {
        let r = self.b[self.at..].to_vec();
        self.at = self.b.len();
        r
    }
    fn end(&self) -> Result<(), Malformed> {
        if self.at != self.b.len() {
            return bad(format!(
                "{} bytes after the last field",
                self.b.len() - self.at
            ));
        }
        Ok(())
    }
}

/// Decodes a message from its header and `rest` (its body then the trailer), checking the
/// trailer first: with `tagger` (the connection is authenticated) a tag, which every
/// message but a `Refused` must carry; without, a crc32c.
pub fn decode(
    header: &[u8; HEADER_LEN],
    rest: &[u8],
    tagger: Option<&mut Tagger>,
) -> Result<Msg, DecodeError> {
    let (h, body) = split(header, rest)?;
    let trailer = &rest[h.body..];
    match (h.tagged, tagger) {
        (true, Some(t)) => t.verify(h.kind, header, body, trailer)?,
        (true, None) => {
            return Err(AuthError::Unexpected {
                kind: kind_name(h.kind),
            }
            .into());
        }
        (false, tagger) => {
            let mut crc = crc32c::crc32c(header);
            crc = crc32c::crc32c_append(crc, body);
            if crc.to_le_bytes() != trailer {
                return Err(Malformed("message checksum mismatch".into()).into());
            }
            if tagger.is_some() && h.kind != REFUSED {
                return Err(AuthError::Untagged {
                    kind: kind_name(h.kind),
                }
                .into());
            }
        }
    }
    Ok(parse(h.kind, body)?)
}

/// The receiver's answer to a greeting (`node`, `epoch`, `run`, `nonce`), as the sender with `key`
/// takes it: a `Position` (tagged, if both ends have a key: the taggers of the connection
/// come with it, derived from the nonce inside) or a `Refused`. A `Position` that says the
/// two ends disagree on having a key is an [`AuthError`].
pub fn decode_answer(
    header: &[u8; HEADER_LEN],
    rest: &[u8],
    key: Option<&StreamKey>,
    (node, epoch, run, nonce): (&str, u64, u64, &Nonce),
) -> Result<(Msg, Option<(Tagger, Tagger)>), DecodeError> {
    let (h, body) = split(header, rest)?;
    if h.kind != POSITION || !h.tagged {
        let m = decode(header, rest, None)?;
        if let Msg::Position { authenticated, .. } = m
            && agree(key, authenticated)?.is_some()
        {
            return Err(AuthError::Untagged {
                kind: kind_name(POSITION),
            }
            .into());
        }
        return Ok((m, None));
    }
    let Some(key) = key else {
        return Err(AuthError::NoKey.into());
    };
    // The nonce is read before the tag is checked: the tag's key needs it.
    let Msg::Position { nonce: theirs, .. } = parse(POSITION, body)? else {
        return Err(Malformed("not a position".into()).into());
    };
    let greeting = (node, epoch, run);
    let (send, mut recv) = session(key, greeting, [nonce, &theirs], End::Sender);
    let m = decode(header, rest, Some(&mut recv))?;
    if let Msg::Position {
        authenticated: false,
        ..
    } = m
    {
        return Err(Malformed("a tagged position from a receiver without a key".into()).into());
    }
    Ok((m, Some((send, recv))))
}

/// The header and the body of a message, its length checked against the header's.
fn split<'a>(header: &[u8; HEADER_LEN], rest: &'a [u8]) -> Result<(Header, &'a [u8]), Malformed> {
    let h = decode_header(header)?;
    if rest.len() != h.rest() {
        return bad(format!(
            "body and trailer are {} bytes, the header says {}",
            rest.len(),
            h.rest()
        ));
    }
    Ok((h, &rest[..h.body]))
}

/// Decodes the body of a message of `kind`.
fn parse(kind: u8, body: &[u8]) -> Result<Msg, Malformed> {
    let mut b = Body { b: body, at: 0 };
    let msg = match kind {
        HELLO => {
            if b.take(8, "magic")? != MAGIC {
                return bad("not a journal stream (bad magic)");
            }
            let version = b.u32("version")?;
            if version != VERSION {
                return bad(format!(
                    "wire version {version}, this build speaks {VERSION}"
                ));
            }
            let epoch = b.u64("epoch")?;
            let run = b.u64("run")?;
            if run == 0 {
                return bad("`run` is 0");
            }
            let node = b.node()?;
            if node.is_empty() {
                return bad("`node` is empty");
            }
            Msg::Hello {
                node,
                epoch,
                run,
                nonce: b.nonce()?,
                authenticated: b.authenticated()?,
            }
        }
        POSITION => {
            let epoch = b.u64("epoch")?;
            let run = b.u64("run")?;
            let seq = b.u64("seq")?;
            let node = b.node()?;
            Msg::Position {
                node: (!node.is_empty()).then_some(node),
                epoch,
                run,
                seq,
                nonce: b.nonce()?,
                authenticated: b.authenticated()?,
            }
        }
        FRAMES => {
            let epoch = b.u64("epoch")?;
            let first = b.u64("first")?;
            let count = b.u32("count")?;
            if first == 0 || count == 0 {
                return bad(format!(
                    "`first` {first} and `count` {count} must be at least 1"
                ));
            }
            Msg::Frames {
                epoch,
                first,
                count,
                frames: b.rest(),
            }
        }
        SNAPSHOT_BEGIN => Msg::SnapshotBegin {
            epoch: b.u64("epoch")?,
            position: b.u64("position")?,
        },
        SNAPSHOT_RECORDS => Msg::SnapshotRecords {
            count: b.u32("count")?,
            frames: b.rest(),
        },
        SNAPSHOT_END => Msg::SnapshotEnd {
            records: b.u64("records")?,
        },
        ACK => Msg::Ack {
            epoch: b.u64("epoch")?,
            seq: b.u64("seq")?,
        },
        PING => Msg::Ping {
            epoch: b.u64("epoch")?,
            position: b.u64("position")?,
        },
        _ => Msg::Refused {
            reason: String::from_utf8_lossy(&b.rest()).into_owned(),
        },
    };
    b.end()?;
    Ok(msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(out: &[u8]) -> [u8; HEADER_LEN] {
        out[..HEADER_LEN].try_into().unwrap()
    }

    fn roundtrip(m: Msg) {
        let mut out = Vec::new();
        encode(&m, &mut out, None);
        let h = header(&out);
        assert_eq!(decode(&h, &out[HEADER_LEN..], None).unwrap(), m);
        // Every single-bit flip is refused, never decoded as something else.
        for i in 0..out.len() * 8 {
            let mut o = out.clone();
            o[i / 8] ^= 1 << (i % 8);
            let h = header(&o);
            assert!(
                decode(&h, &o[HEADER_LEN..], None).is_err(),
                "bit {i} of {m:?}"
            );
        }
        // Every truncation is refused.
        for n in HEADER_LEN..out.len() {
            assert!(decode(&h, &out[HEADER_LEN..n], None).is_err());
        }
    }

    fn every_message() -> Vec<Msg> {
        let mut f = Vec::new();
        crate::format::encode_raw_frame(&mut f, b"xyz");
        vec![
            Msg::Hello {
                node: "a".into(),
                epoch: 7,
                run: 0x0102_0304_0506_0708,
                nonce: [3; NONCE_LEN],
                authenticated: true,
            },
            Msg::Position {
                node: Some("b".into()),
                epoch: 7,
                run: 11,
                seq: 9,
                nonce: [4; NONCE_LEN],
                authenticated: false,
            },
            Msg::Position {
                node: None,
                epoch: 0,
                run: 0,
                seq: 0,
                nonce: [0; NONCE_LEN],
                authenticated: true,
            },
            Msg::Frames {
                epoch: 1,
                first: 3,
                count: 1,
                frames: f.clone(),
            },
            Msg::SnapshotBegin {
                epoch: 1,
                position: 3,
            },
            Msg::SnapshotRecords {
                count: 1,
                frames: f,
            },
            Msg::SnapshotEnd { records: 1 },
            Msg::Ack { epoch: 1, seq: 2 },
            Msg::Ping {
                epoch: 1,
                position: 2,
            },
            Msg::Refused {
                reason: "no".into(),
            },
        ]
    }

    #[test]
    fn every_message_roundtrips_and_damage_is_refused() {
        for m in every_message() {
            roundtrip(m);
        }
    }

    #[test]
    fn a_huge_length_is_refused_before_anything_is_read() {
        let mut h = [FRAMES, 0, 0, 0, 0];
        h[1..].copy_from_slice(&u32::MAX.to_le_bytes());
        let e = decode_header(&h).unwrap_err();
        assert!(e.0.contains("more than"), "{e}");
        assert!(
            decode_header(&[0, 0, 0, 0, 0])
                .unwrap_err()
                .0
                .contains("kind 0")
        );
    }

    #[test]
    fn a_wrong_version_is_named() {
        let mut out = Vec::new();
        let hello = Msg::Hello {
            node: "a".into(),
            epoch: 1,
            run: 1,
            nonce: [0; NONCE_LEN],
            authenticated: false,
        };
        encode(&hello, &mut out, None);
        // A peer of version 1, before stream keys.
        out[HEADER_LEN + 8] = 1;
        let n = out.len() - TRAILER_LEN;
        let crc = crc32c::crc32c(&out[..n]);
        out[n..].copy_from_slice(&crc.to_le_bytes());
        let e = decode(&header(&out), &out[HEADER_LEN..], None).unwrap_err();
        assert!(e.to_string().contains("wire version 1"), "{e}");
    }

    const KEY: [u8; MIN_KEY_LEN] = [7; MIN_KEY_LEN];

    /// The sender's and the receiver's taggers (each: what it sends, what it receives) of a
    /// connection with nonces `ns` and `nr`.
    fn connection(key: &[u8], ns: u8, nr: u8) -> [(Tagger, Tagger); 2] {
        let key = StreamKey::new(key).unwrap();
        let nonces = [&[ns; NONCE_LEN], &[nr; NONCE_LEN]];
        [End::Sender, End::Receiver].map(|end| session(&key, ("a", 7, 3), nonces, end))
    }

    fn sealed(m: &Msg, tagger: &mut Tagger) -> Vec<u8> {
        let mut out = Vec::new();
        encode(m, &mut out, Some(tagger));
        out
    }

    fn open(out: &[u8], tagger: &mut Tagger) -> Result<Msg, DecodeError> {
        decode(&header(out), &out[HEADER_LEN..], Some(tagger))
    }

    #[test]
    fn tagged_messages_roundtrip_and_any_damage_is_refused() {
        for m in every_message() {
            let [(mut send, _), (_, recv)] = connection(&KEY, 1, 2);
            let out = sealed(&m, &mut send);
            let tagged = !matches!(m, Msg::Refused { .. });
            let trailer = if tagged { TAG_LEN } else { TRAILER_LEN };
            assert_eq!(
                out.len(),
                HEADER_LEN + decode_header(&header(&out)).unwrap().body + trailer
            );
            assert_eq!(open(&out, &mut recv.clone()).unwrap(), m);
            for i in 0..out.len() * 8 {
                let mut o = out.clone();
                o[i / 8] ^= 1 << (i % 8);
                assert!(open(&o, &mut recv.clone()).is_err(), "bit {i} of {m:?}");
            }
            for n in HEADER_LEN..out.len() {
                assert!(
                    open(&out[..n], &mut recv.clone()).is_err(),
                    "{n} bytes of {m:?}"
                );
            }
        }
    }

    #[test]
    fn a_tag_fails_under_another_key_session_direction_or_place() {
        let ack = |seq| Msg::Ack { epoch: 7, seq };
        let [(mut s_send, mut s_recv), (mut r_send, mut r_recv)] = connection(&KEY, 1, 2);
        let first = sealed(&ack(1), &mut r_send);
        let second = sealed(&ack(2), &mut r_send);
        // Another key, another connection's nonces, or a greeting of another journal run:
        // the first message does not verify.
        let [(_, mut other_key), _] = connection(&[8; MIN_KEY_LEN], 1, 2);
        let [(_, mut other_nonce), _] = connection(&KEY, 1, 3);
        let nonces = [&[1; NONCE_LEN], &[2; NONCE_LEN]];
        let key = StreamKey::new(&KEY).unwrap();
        let (_, mut other_run) = session(&key, ("a", 7, 4), nonces, End::Sender);
        for t in [&mut other_key, &mut other_nonce, &mut other_run] {
            assert_eq!(open(&first, t), Err(AuthError::Mismatch.into()));
        }
        // Reordered: the second before the first.
        assert_eq!(
            open(&second, &mut s_recv.clone()),
            Err(AuthError::Mismatch.into())
        );
        assert_eq!(open(&first, &mut s_recv), Ok(ack(1)));
        // Replayed: the first again, where the second belongs; the kind is named.
        let again = Err(AuthError::BadTag { kind: "an ack" }.into());
        assert_eq!(open(&first, &mut s_recv.clone()), again);
        assert_eq!(open(&second, &mut s_recv), Ok(ack(2)));
        // Reflected: a receiver's message back to the receiver.
        assert_eq!(open(&first, &mut r_recv), Err(AuthError::Mismatch.into()));
        // Without a tag, where one belongs; with one, where none does.
        let mut plain = Vec::new();
        encode(&ack(3), &mut plain, None);
        assert_eq!(
            open(&plain, &mut s_recv),
            Err(AuthError::Untagged { kind: "an ack" }.into())
        );
        let tagged = sealed(&ack(3), &mut s_send);
        assert_eq!(
            decode(&header(&tagged), &tagged[HEADER_LEN..], None),
            Err(AuthError::Unexpected { kind: "an ack" }.into())
        );
    }

    /// The sender's reading of the answer `position` (tagged by a receiver with `key_r`) to its
    /// greeting, with `key_s`.
    fn answer(key_s: Option<&[u8]>, key_r: Option<&[u8]>) -> Result<Msg, DecodeError> {
        let (ks, kr) = (
            key_s.map(|k| StreamKey::new(k).unwrap()),
            key_r.map(|k| StreamKey::new(k).unwrap()),
        );
        let (ns, nr) = ([1; NONCE_LEN], [2; NONCE_LEN]);
        let both = agree(kr.as_ref(), ks.is_some()).ok().flatten();
        let mut tagger = both.map(|k| session(k, ("a", 7, 3), [&ns, &nr], End::Receiver).0);
        let position = Msg::Position {
            node: Some("a".into()),
            epoch: 7,
            run: 3,
            seq: 5,
            nonce: nr,
            authenticated: kr.is_some(),
        };
        let mut out = Vec::new();
        encode(&position, &mut out, tagger.as_mut());
        let (m, taggers) = decode_answer(
            &header(&out),
            &out[HEADER_LEN..],
            ks.as_ref(),
            ("a", 7, 3, &ns),
        )?;
        assert_eq!(m, position);
        assert_eq!(taggers.is_some(), both.is_some());
        Ok(m)
    }

    #[test]
    fn the_answer_to_a_greeting_says_whether_the_keys_agree() {
        assert!(answer(None, None).is_ok());
        assert!(answer(Some(&KEY), Some(&KEY)).is_ok());
        assert_eq!(
            answer(Some(&KEY), Some(&[8; 40])),
            Err(AuthError::Mismatch.into())
        );
        assert_eq!(
            answer(Some(&KEY), None),
            Err(AuthError::PartnerHasNoKey.into())
        );
        assert_eq!(answer(None, Some(&KEY)), Err(AuthError::NoKey.into()));
        assert_eq!(
            AuthError::NoKey.to_string(),
            "this server has no stream key (the partner has one)"
        );
    }

    #[test]
    fn a_stream_key_is_long_and_never_shown() {
        assert_eq!(StreamKey::new(&[1; MIN_KEY_LEN - 1]), None);
        let k = StreamKey::new(b"0123456789abcdef0123456789abcdef").unwrap();
        assert_eq!(format!("{k:?}"), "<redacted>");
    }
}
