//! The stream's wire format: pure encoding and decoding of messages (docs/JOURNAL.md,
//! "Streaming to a peer", lays it out byte by byte). Every malformed input is an error
//! naming what is wrong, never a panic.

use crate::format::{FRAME_HEADER_LEN, MAX_RECORD_LEN};

/// First 8 bytes of a `Hello`'s body.
pub const MAGIC: [u8; 8] = *b"LSRJSTR\0";
/// The wire version a `Hello` carries; a peer refuses any other.
pub const VERSION: u32 = 1;
/// The most frame bytes one `Frames` or `SnapshotRecords` message carries (at least one
/// whole frame always fits).
pub const MAX_BATCH: usize = 4 << 20;
const _: () = assert!(FRAME_HEADER_LEN + MAX_RECORD_LEN <= MAX_BATCH);
/// The longest body of any message.
pub const MAX_BODY: usize = MAX_BATCH + 64;
/// Length of a message header: kind, body length.
pub const HEADER_LEN: usize = 5;
/// Length of the trailer: crc32c of header and body.
pub const TRAILER_LEN: usize = 4;
/// The longest node name.
pub const MAX_NODE: usize = 255;

const HELLO: u8 = 1;
const POSITION: u8 = 2;
const FRAMES: u8 = 3;
const SNAPSHOT_BEGIN: u8 = 4;
const SNAPSHOT_RECORDS: u8 = 5;
const SNAPSHOT_END: u8 = 6;
const ACK: u8 = 7;
const REFUSED: u8 = 8;
const PING: u8 = 9;

/// One message of the stream protocol.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Msg {
    /// Sender to receiver, first: who streams, under which epoch.
    Hello {
        /// The sending node.
        node: String,
        /// Its fencing epoch.
        epoch: u64,
    },
    /// Receiver to sender, in answer: what it holds durable (`node` `None`: nothing yet).
    Position {
        /// The node whose stream it follows.
        node: Option<String>,
        /// That stream's epoch.
        epoch: u64,
        /// The last sequence it has synced.
        seq: u64,
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

/// A message that does not decode, and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("stream message malformed: {0}")]
pub struct Malformed(pub String);

fn bad<T>(s: impl Into<String>) -> Result<T, Malformed> {
    Err(Malformed(s.into()))
}

/// Appends `msg`, framed (header, body, trailer), to `out`.
pub fn encode(msg: &Msg, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0u8; HEADER_LEN]);
    let kind = match msg {
        Msg::Hello { node, epoch } => {
            out.extend_from_slice(&MAGIC);
            out.extend_from_slice(&VERSION.to_le_bytes());
            out.extend_from_slice(&epoch.to_le_bytes());
            put_node(out, node);
            HELLO
        }
        Msg::Position { node, epoch, seq } => {
            out.extend_from_slice(&epoch.to_le_bytes());
            out.extend_from_slice(&seq.to_le_bytes());
            put_node(out, node.as_deref().unwrap_or(""));
            POSITION
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
            FRAMES
        }
        Msg::SnapshotBegin { epoch, position } => {
            out.extend_from_slice(&epoch.to_le_bytes());
            out.extend_from_slice(&position.to_le_bytes());
            SNAPSHOT_BEGIN
        }
        Msg::SnapshotRecords { count, frames } => {
            out.extend_from_slice(&count.to_le_bytes());
            out.extend_from_slice(frames);
            SNAPSHOT_RECORDS
        }
        Msg::SnapshotEnd { records } => {
            out.extend_from_slice(&records.to_le_bytes());
            SNAPSHOT_END
        }
        Msg::Ack { epoch, seq } => {
            out.extend_from_slice(&epoch.to_le_bytes());
            out.extend_from_slice(&seq.to_le_bytes());
            ACK
        }
        Msg::Ping { epoch, position } => {
            out.extend_from_slice(&epoch.to_le_bytes());
            out.extend_from_slice(&position.to_le_bytes());
            PING
        }
        Msg::Refused { reason } => {
            let r = reason.as_bytes();
            out.extend_from_slice(&r[..r.len().min(4096)]);
            REFUSED
        }
    };
    let body = (out.len() - start - HEADER_LEN) as u32;
    out[start] = kind;
    out[start + 1..start + HEADER_LEN].copy_from_slice(&body.to_le_bytes());
    let crc = crc32c::crc32c(&out[start..]);
    out.extend_from_slice(&crc.to_le_bytes());
}

fn put_node(out: &mut Vec<u8>, node: &str) {
    let n = &node.as_bytes()[..node.len().min(MAX_NODE)];
    out.push(n.len() as u8);
    out.extend_from_slice(n);
}

/// The kind and body length a header announces; the body length is bounded by [`MAX_BODY`].
pub fn decode_header(h: &[u8; HEADER_LEN]) -> Result<(u8, usize), Malformed> {
    let len = u32::from_le_bytes([h[1], h[2], h[3], h[4]]) as usize;
    if !(HELLO..=PING).contains(&h[0]) {
        return bad(format!("unknown message kind {}", h[0]));
    }
    if len > MAX_BODY {
        return bad(format!(
            "body of {len} bytes, more than the {MAX_BODY} allowed"
        ));
    }
    Ok((h[0], len))
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
/// trailer's crc32c first.
pub fn decode(header: &[u8; HEADER_LEN], rest: &[u8]) -> Result<Msg, Malformed> {
    let (kind, len) = decode_header(header)?;
    if rest.len() != len + TRAILER_LEN {
        return bad(format!(
            "body and trailer are {} bytes, the header says {}",
            rest.len(),
            len + TRAILER_LEN
        ));
    }
    let (body, trailer) = rest.split_at(len);
    let mut crc = crc32c::crc32c(header);
    crc = crc32c::crc32c_append(crc, body);
    if crc.to_le_bytes() != trailer {
        return bad("message checksum mismatch");
    }
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
            let node = b.node()?;
            if node.is_empty() {
                return bad("`node` is empty");
            }
            Msg::Hello { node, epoch }
        }
        POSITION => {
            let epoch = b.u64("epoch")?;
            let seq = b.u64("seq")?;
            let node = b.node()?;
            Msg::Position {
                node: (!node.is_empty()).then_some(node),
                epoch,
                seq,
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

    fn roundtrip(m: Msg) {
        let mut out = Vec::new();
        encode(&m, &mut out);
        let h: [u8; HEADER_LEN] = out[..HEADER_LEN].try_into().unwrap();
        assert_eq!(decode(&h, &out[HEADER_LEN..]).unwrap(), m);
        // Every single-bit flip is refused, never decoded as something else.
        for i in 0..out.len() * 8 {
            let mut o = out.clone();
            o[i / 8] ^= 1 << (i % 8);
            let h: [u8; HEADER_LEN] = o[..HEADER_LEN].try_into().unwrap();
            assert!(decode(&h, &o[HEADER_LEN..]).is_err(), "bit {i} of {m:?}");
        }
        // Every truncation is refused.
        for n in HEADER_LEN..out.len() {
            assert!(decode(&h, &out[HEADER_LEN..n]).is_err());
        }
    }

    #[test]
    fn every_message_roundtrips_and_damage_is_refused() {
        roundtrip(Msg::Hello {
            node: "a".into(),
            epoch: 7,
        });
        roundtrip(Msg::Position {
            node: Some("b".into()),
            epoch: 7,
            seq: 9,
        });
        roundtrip(Msg::Position {
            node: None,
            epoch: 0,
            seq: 0,
        });
        let mut f = Vec::new();
        crate::format::encode_raw_frame(&mut f, b"xyz");
        roundtrip(Msg::Frames {
            epoch: 1,
            first: 3,
            count: 1,
            frames: f.clone(),
        });
        roundtrip(Msg::SnapshotBegin {
            epoch: 1,
            position: 3,
        });
        roundtrip(Msg::SnapshotRecords {
            count: 1,
            frames: f,
        });
        roundtrip(Msg::SnapshotEnd { records: 1 });
        roundtrip(Msg::Ack { epoch: 1, seq: 2 });
        roundtrip(Msg::Ping {
            epoch: 1,
            position: 2,
        });
        roundtrip(Msg::Refused {
            reason: "no".into(),
        });
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
        encode(
            &Msg::Hello {
                node: "a".into(),
                epoch: 1,
            },
            &mut out,
        );
        out[HEADER_LEN + 8] = 2;
        let n = out.len() - TRAILER_LEN;
        let crc = crc32c::crc32c(&out[..n]);
        out[n..].copy_from_slice(&crc.to_le_bytes());
        let h: [u8; HEADER_LEN] = out[..HEADER_LEN].try_into().unwrap();
        let e = decode(&h, &out[HEADER_LEN..]).unwrap_err();
        assert!(e.0.contains("wire version 2"), "{e}");
    }
}
