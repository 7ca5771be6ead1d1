//! The on-disk format: file names, headers, record frames and the snapshot footer.
//!
//! Everything here is pure (bytes in, bytes or verdicts out); the layout is documented byte by
//! byte in the crate docs.

use std::path::{Path, PathBuf};

/// First 8 bytes of every segment file.
pub(crate) const SEGMENT_MAGIC: [u8; 8] = *b"LSRJLOG\0";
/// First 8 bytes of every snapshot file.
pub(crate) const SNAPSHOT_MAGIC: [u8; 8] = *b"LSRJSNP\0";
/// First 8 bytes of the snapshot footer.
pub(crate) const FOOTER_MAGIC: [u8; 8] = *b"LSRJEND\0";
/// The format version written into every header. Readers reject any other.
pub(crate) const FORMAT_VERSION: u32 = 1;

/// Length of a segment header: magic, version, seq, prev_len, crc.
pub(crate) const SEGMENT_HEADER_LEN: usize = 32;
/// Length of a snapshot header: magic, version, cut, crc.
pub(crate) const SNAPSHOT_HEADER_LEN: usize = 24;
/// Length of the snapshot footer: magic, count, body crc, footer crc.
pub(crate) const FOOTER_LEN: usize = 24;
/// Length of a record frame header: len, crc.
pub(crate) const FRAME_HEADER_LEN: usize = 8;
/// The largest payload a frame may carry. Anything longer is corruption on read and refused on
/// write: a lease record is a few hundred bytes, and a corrupted length must not make a reader
/// allocate gigabytes.
pub const MAX_RECORD_LEN: usize = 1 << 20;

/// The bincode configuration of every payload: fixed-width little-endian integers, so a
/// record's size does not depend on its values, and a decode limit of [`MAX_RECORD_LEN`].
pub(crate) fn codec() -> impl bincode::config::Config {
    bincode::config::standard()
        .with_fixed_int_encoding()
        .with_little_endian()
        .with_limit::<MAX_RECORD_LEN>()
}

/// `NNNNNNNNNNNNNNNN.log`.
pub(crate) fn segment_name(seq: u64) -> String {
    format!("{seq:016}.log")
}

/// `snapshot-NNNNNNNNNNNNNNNN.snap`.
pub(crate) fn snapshot_name(cut: u64) -> String {
    format!("snapshot-{cut:016}.snap")
}

/// Where a snapshot is written before it is complete and renamed.
pub(crate) fn snapshot_tmp_name(cut: u64) -> String {
    format!("snapshot-{cut:016}.snap.tmp")
}

pub(crate) fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(segment_name(seq))
}

pub(crate) fn snapshot_path(dir: &Path, cut: u64) -> PathBuf {
    dir.join(snapshot_name(cut))
}

fn sixteen_digits(s: &str) -> Option<u64> {
    if s.len() == 16 && s.bytes().all(|b| b.is_ascii_digit()) {
        s.parse().ok()
    } else {
        None
    }
}

/// What a file name in the journal directory is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FileName {
    Segment(u64),
    Snapshot(u64),
    /// A `*.tmp` left by an interrupted snapshot or repair.
    Temporary,
    /// The directory lock file.
    Lock,
    /// Anything else: left alone.
    Other,
}

pub(crate) const LOCK_NAME: &str = "LOCK";

pub(crate) fn classify(name: &str) -> FileName {
    if name == LOCK_NAME {
        FileName::Lock
    } else if name.ends_with(".tmp") {
        FileName::Temporary
    } else if let Some(n) = name.strip_suffix(".log").and_then(sixteen_digits) {
        FileName::Segment(n)
    } else if let Some(n) = name
        .strip_prefix("snapshot-")
        .and_then(|s| s.strip_suffix(".snap"))
        .and_then(sixteen_digits)
    {
        FileName::Snapshot(n)
    } else {
        FileName::Other
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// A segment header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SegmentHeader {
    /// The segment's number; must equal the one in its file name.
    pub(crate) seq: u64,
    /// How many bytes of segment `seq - 1` are valid (its length when it was sealed, or its
    /// last synced length when the writer abandoned it after an IO error). 0 when there is no
    /// predecessor.
    pub(crate) prev_len: u64,
}

/// A file header: `magic`, [`FORMAT_VERSION`], each of `fields`, then the crc32c of all that
/// in the last 4 bytes (the layout of both segment and snapshot headers).
fn encode_header<const N: usize>(magic: &[u8; 8], fields: &[u64]) -> [u8; N] {
    let mut b = [0u8; N];
    b[0..8].copy_from_slice(magic);
    b[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    for (i, f) in fields.iter().enumerate() {
        b[12 + 8 * i..20 + 8 * i].copy_from_slice(&f.to_le_bytes());
    }
    let crc = crc32c::crc32c(&b[0..N - 4]);
    b[N - 4..N].copy_from_slice(&crc.to_le_bytes());
    b
}

/// Checks the length, magic, checksum and version of a `len`-byte header laid out as
/// [`encode_header`] does; `what` names the kind of file in the error.
fn check_header(b: &[u8], magic: &[u8; 8], len: usize, what: &str) -> Result<(), String> {
    if b.len() < len {
        return Err(format!("{what} header is {} bytes, needs {len}", b.len()));
    }
    if b[0..8] != *magic {
        return Err(format!("not a journal {what} (bad magic)"));
    }
    if crc32c::crc32c(&b[0..len - 4]) != u32_at(b, len - 4) {
        return Err(format!("{what} header checksum mismatch"));
    }
    let version = u32_at(b, 8);
    if version != FORMAT_VERSION {
        return Err(format!(
            "{what} format version {version}, this build reads {FORMAT_VERSION}"
        ));
    }
    Ok(())
}

impl SegmentHeader {
    pub(crate) fn encode(&self) -> [u8; SEGMENT_HEADER_LEN] {
        encode_header(&SEGMENT_MAGIC, &[self.seq, self.prev_len])
    }

    /// Parses the first bytes of a segment file; the error is the reason it is not a header.
    pub(crate) fn decode(b: &[u8]) -> Result<Self, String> {
        check_header(b, &SEGMENT_MAGIC, SEGMENT_HEADER_LEN, "segment")?;
        Ok(SegmentHeader {
            seq: u64_at(b, 12),
            prev_len: u64_at(b, 20),
        })
    }
}

/// A snapshot header.
pub(crate) fn encode_snapshot_header(cut: u64) -> [u8; SNAPSHOT_HEADER_LEN] {
    encode_header(&SNAPSHOT_MAGIC, &[cut])
}

/// Parses a snapshot header; returns its cut.
pub(crate) fn decode_snapshot_header(b: &[u8]) -> Result<u64, String> {
    check_header(b, &SNAPSHOT_MAGIC, SNAPSHOT_HEADER_LEN, "snapshot")?;
    Ok(u64_at(b, 12))
}

/// The footer that proves a snapshot complete: `body` is everything before it.
pub(crate) fn encode_footer(count: u64, body_crc: u32) -> [u8; FOOTER_LEN] {
    let mut b = [0u8; FOOTER_LEN];
    b[0..8].copy_from_slice(&FOOTER_MAGIC);
    b[8..16].copy_from_slice(&count.to_le_bytes());
    b[16..20].copy_from_slice(&body_crc.to_le_bytes());
    let crc = crc32c::crc32c(&b[0..20]);
    b[20..24].copy_from_slice(&crc.to_le_bytes());
    b
}

/// What a snapshot footer says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Footer {
    /// How many record frames the snapshot holds.
    pub(crate) count: u64,
    /// crc32c of every byte of the file before the footer.
    pub(crate) body_crc: u32,
}

/// Parses the last [`FOOTER_LEN`] bytes of a snapshot; the error says why they are not a
/// footer (the snapshot is incomplete or damaged).
pub(crate) fn decode_footer(f: &[u8]) -> Result<Footer, String> {
    if f.len() != FOOTER_LEN || f[0..8] != FOOTER_MAGIC {
        return Err("snapshot footer missing (incomplete)".into());
    }
    if crc32c::crc32c(&f[0..20]) != u32_at(f, 20) {
        return Err("snapshot footer checksum mismatch".into());
    }
    Ok(Footer {
        count: u64_at(f, 8),
        body_crc: u32_at(f, 16),
    })
}

/// Checks a whole snapshot file: header, footer, body checksum. Returns the cut and the record
/// count the footer promises; the caller still walks the frames and compares the count.
#[cfg(test)]
pub(crate) fn check_snapshot(file: &[u8]) -> Result<(u64, u64), (u64, String)> {
    let cut = decode_snapshot_header(file).map_err(|e| (0, e))?;
    if file.len() < SNAPSHOT_HEADER_LEN + FOOTER_LEN {
        return Err((
            file.len() as u64,
            "snapshot ends before its footer (incomplete)".into(),
        ));
    }
    let at = file.len() - FOOTER_LEN;
    let footer = decode_footer(&file[at..]).map_err(|e| (at as u64, e))?;
    if crc32c::crc32c(&file[..at]) != footer.body_crc {
        return Err((
            SNAPSHOT_HEADER_LEN as u64,
            "snapshot body checksum mismatch".into(),
        ));
    }
    Ok((cut, footer.count))
}

/// Appends one frame (`len | crc | payload`) holding `rec` to `buf`. On error `buf` is left as
/// it was.
pub(crate) fn encode_frame<T: bincode::Encode + ?Sized>(
    buf: &mut Vec<u8>,
    rec: &T,
) -> Result<(), String> {
    let start = buf.len();
    buf.extend_from_slice(&[0u8; FRAME_HEADER_LEN]);
    let res = bincode::encode_into_std_write(rec, buf, codec());
    let len = buf.len() - start - FRAME_HEADER_LEN;
    let err = match res {
        Err(e) => Some(format!("record does not encode: {e}")),
        Ok(_) if len == 0 => Some("record encodes to zero bytes".into()),
        Ok(_) if len > MAX_RECORD_LEN => Some(format!(
            "record encodes to {len} bytes, more than the {MAX_RECORD_LEN} allowed"
        )),
        Ok(_) => None,
    };
    if let Some(e) = err {
        buf.truncate(start);
        return Err(e);
    }
    let crc = crc32c::crc32c(&buf[start + FRAME_HEADER_LEN..]);
    buf[start..start + 4].copy_from_slice(&(len as u32).to_le_bytes());
    buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    Ok(())
}

/// Appends a frame around an already encoded payload (repair copies payloads it cannot decode).
pub(crate) fn encode_raw_frame(buf: &mut Vec<u8>, payload: &[u8]) {
    buf.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    buf.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    buf.extend_from_slice(payload);
}

/// Decodes one payload; the whole payload must be consumed.
pub(crate) fn decode_payload<T: bincode::Decode<()>>(payload: &[u8]) -> Result<T, String> {
    match bincode::decode_from_slice::<T, _>(payload, codec()) {
        Ok((v, used)) if used == payload.len() => Ok(v),
        Ok((_, used)) => Err(format!(
            "payload of {} bytes decodes from only {used}: not this record type",
            payload.len()
        )),
        Err(e) => Err(format!("payload does not decode: {e}")),
    }
}

/// The frame at `at` in `buf` (which ends at `end`), if it is a whole, valid frame: returns
/// the payload range. The error says why not.
pub(crate) fn frame_at(buf: &[u8], at: usize, end: usize) -> Result<(usize, usize), String> {
    let (p, q) = frame_bounds(buf, at, end)?;
    check_payload(buf, at, p, q)?;
    Ok((p, q))
}

/// The declared length of the frame whose header starts at `at`, if `buf` holds that header.
pub(crate) fn frame_len_at(buf: &[u8], at: usize) -> Option<usize> {
    (buf.len() >= at + FRAME_HEADER_LEN).then(|| u32_at(buf, at) as usize)
}

/// Whether the payload `p..q` of the frame at `at` matches the checksum in its header.
fn check_payload(buf: &[u8], at: usize, p: usize, q: usize) -> Result<(), String> {
    if crc32c::crc32c(&buf[p..q]) != u32_at(buf, at + 4) {
        return Err("record checksum mismatch".into());
    }
    Ok(())
}

/// The framing half of [`frame_at`]: the length is in range and the payload is all there
/// (its checksum is not looked at). Returns the payload range.
pub(crate) fn frame_bounds(buf: &[u8], at: usize, end: usize) -> Result<(usize, usize), String> {
    let rest = end.saturating_sub(at);
    if rest < FRAME_HEADER_LEN {
        return Err(format!(
            "{rest} bytes left, a frame header needs {FRAME_HEADER_LEN}"
        ));
    }
    let len = u32_at(buf, at) as usize;
    if len == 0 || len > MAX_RECORD_LEN {
        return Err(format!(
            "record length {len} is out of range 1..={MAX_RECORD_LEN}"
        ));
    }
    if rest - FRAME_HEADER_LEN < len {
        return Err(format!(
            "record of {len} bytes is cut short ({} bytes left)",
            rest - FRAME_HEADER_LEN
        ));
    }
    let p = at + FRAME_HEADER_LEN;
    Ok((p, p + len))
}

/// How a walk over frames ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum WalkEnd {
    /// Every byte up to `end` was a valid frame.
    Clean,
    /// Valid frames up to `offset`, then only zero bytes up to `end`: the unused space of a
    /// preallocated segment (a zero length is never a valid frame). At the end of the last
    /// segment that is where its records end; inside a sealed segment's valid length it is
    /// lost data.
    Zeros { offset: u64 },
    /// The frame at `offset` is not valid.
    Bad { offset: u64, reason: String },
}

/// Whether `buf[at..end]` holds only zero bytes (preallocated space).
pub(crate) fn all_zero(buf: &[u8], at: usize, end: usize) -> bool {
    buf[at.min(end)..end].iter().all(|&b| b == 0)
}

/// Calls `each(offset, payload)` for every valid frame from `start` up to `end`, stopping at the
/// first invalid one. `each` may stop the walk by returning an error (offset, reason).
pub(crate) fn walk_frames(
    buf: &[u8],
    start: usize,
    end: usize,
    mut each: impl FnMut(u64, &[u8]) -> Result<(), String>,
) -> Result<WalkEnd, (u64, String)> {
    let mut at = start;
    while at < end {
        match frame_at(buf, at, end) {
            Ok((p, q)) => {
                each(at as u64, &buf[p..q]).map_err(|e| (at as u64, e))?;
                at = q;
            }
            Err(_) if all_zero(buf, at, end) => {
                return Ok(WalkEnd::Zeros { offset: at as u64 });
            }
            Err(reason) => {
                return Ok(WalkEnd::Bad {
                    offset: at as u64,
                    reason,
                });
            }
        }
    }
    Ok(WalkEnd::Clean)
}

/// From `from`, the offset of the next valid frame before `end` (repair's resync).
pub(crate) fn resync(buf: &[u8], from: usize, end: usize) -> Option<usize> {
    (from..end).find(|&at| frame_at(buf, at, end).is_ok())
}

/// Where the bytes of `buf` end: after its last non-zero byte (0 if it is all zeros). The
/// zeros after it are a preallocated segment's unused space, or nothing at all.
pub(crate) fn real_end(buf: &[u8]) -> usize {
    buf.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1)
}

/// What a salvaging walk over the last segment found (see [`walk_salvaging`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Salvage {
    /// Where the last valid frame ends (the walk's start if there is none).
    pub(crate) end: u64,
    /// Where the segment's bytes end ([`real_end`], at least the walk's start).
    pub(crate) real_end: u64,
    /// Damaged ranges with valid frames after them: offset, length, why the frame at the
    /// offset is not valid.
    pub(crate) damaged: Vec<(u64, u64, String)>,
    /// A damaged range with nothing valid after it, up to `real_end` (a torn write): offset,
    /// length, why.
    pub(crate) torn: Option<(u64, u64, String)>,
    /// Valid frames after the first damaged range.
    pub(crate) salvaged: u64,
    /// Valid frames in all.
    pub(crate) frames: u64,
}

/// Calls `each(offset, payload)` for every valid frame of `buf` from `start` on, resyncing
/// after damage on the next offset whose length and checksum verify (as `repair` does) and
/// stopping where the bytes end (preallocated zeros or the end of the file), never scanning
/// those zeros. `each` may stop the walk by returning an error (offset, reason).
pub(crate) fn walk_salvaging(
    buf: &[u8],
    start: usize,
    mut each: impl FnMut(u64, &[u8]) -> Result<(), String>,
) -> Result<Salvage, (u64, String)> {
    let real = real_end(buf).max(start);
    let mut s = Salvage {
        end: start as u64,
        real_end: real as u64,
        ..Salvage::default()
    };
    let mut at = start;
    while at < real {
        match frame_at(buf, at, buf.len()) {
            Ok((p, q)) => {
                each(at as u64, &buf[p..q]).map_err(|e| (at as u64, e))?;
                s.frames += 1;
                if !s.damaged.is_empty() {
                    s.salvaged += 1;
                }
                s.end = q as u64;
                at = q;
            }
            Err(reason) => match (at + 1..real).find(|&p| frame_at(buf, p, buf.len()).is_ok()) {
                Some(next) => {
                    s.damaged.push((at as u64, (next - at) as u64, reason));
                    at = next;
                }
                None => {
                    s.torn = Some((at as u64, (real - at) as u64, reason));
                    break;
                }
            },
        }
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        assert_eq!(segment_name(7), "0000000000000007.log");
        assert_eq!(classify(&segment_name(7)), FileName::Segment(7));
        assert_eq!(classify(&snapshot_name(42)), FileName::Snapshot(42));
        assert_eq!(classify(&snapshot_tmp_name(42)), FileName::Temporary);
        assert_eq!(classify("LOCK"), FileName::Lock);
        assert_eq!(classify("7.log"), FileName::Other);
        assert_eq!(classify("000000000000000x.log"), FileName::Other);
        assert_eq!(
            classify("snapshot-0000000000000001.snap.bad"),
            FileName::Other
        );
    }

    #[test]
    fn segment_header_round_trips_and_detects_damage() {
        let h = SegmentHeader {
            seq: 9,
            prev_len: 1234,
        };
        let mut b = h.encode();
        assert_eq!(SegmentHeader::decode(&b), Ok(h));
        assert!(SegmentHeader::decode(&b[..31]).is_err());
        for i in 0..SEGMENT_HEADER_LEN {
            b[i] ^= 0x10;
            assert!(SegmentHeader::decode(&b).is_err(), "flip at {i} undetected");
            b[i] ^= 0x10;
        }
    }

    #[test]
    fn snapshot_header_is_the_documented_bytes_and_detects_damage() {
        let mut b = encode_snapshot_header(77);
        let mut want = b"LSRJSNP\0".to_vec();
        want.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        want.extend_from_slice(&77u64.to_le_bytes());
        want.extend_from_slice(&crc32c::crc32c(&want).to_le_bytes());
        assert_eq!(b.to_vec(), want);
        assert_eq!(decode_snapshot_header(&b), Ok(77));
        assert!(decode_snapshot_header(&b[..SNAPSHOT_HEADER_LEN - 1]).is_err());
        for i in 0..SNAPSHOT_HEADER_LEN {
            b[i] ^= 0x10;
            assert!(
                decode_snapshot_header(&b).is_err(),
                "flip at {i} undetected"
            );
            b[i] ^= 0x10;
        }
    }

    #[test]
    fn frames_round_trip_and_detect_damage() {
        let mut buf = Vec::new();
        encode_frame(&mut buf, &(7u32, String::from("abc"))).unwrap();
        encode_frame(&mut buf, &(8u32, String::from("de"))).unwrap();
        let mut seen = Vec::new();
        let end = walk_frames(&buf, 0, buf.len(), |at, p| {
            seen.push((at, decode_payload::<(u32, String)>(p)?));
            Ok(())
        })
        .unwrap();
        assert_eq!(end, WalkEnd::Clean);
        // 4 (u32) + 8 (fixed-int string length) + 3 = 15 bytes of payload.
        assert_eq!(seen, vec![(0, (7, "abc".into())), (23, (8, "de".into()))]);
        for i in 0..buf.len() {
            let mut b = buf.clone();
            b[i] ^= 1;
            let end = walk_frames(&b, 0, b.len(), |_, _| Ok(())).unwrap();
            assert!(matches!(end, WalkEnd::Bad { .. }), "flip at {i} undetected");
        }
        // Eight zero bytes (a zero-filled tail after a crash) are not an empty record.
        assert!(frame_at(&[0u8; 8], 0, 8).is_err());
        assert_eq!(resync(&buf, 1, buf.len()), Some(23));
    }

    #[test]
    fn zeros_after_the_last_frame_end_the_walk_and_zeros_before_data_do_not() {
        let mut buf = Vec::new();
        encode_frame(&mut buf, &(7u32, String::from("abc"))).unwrap();
        let frames = buf.len();
        // A payload that ends in zero bytes is still one whole frame.
        encode_frame(&mut buf, &(0u32, 0u64)).unwrap();
        let data = buf.len();
        buf.resize(data + 100, 0);
        let mut n = 0;
        let end = walk_frames(&buf, 0, buf.len(), |_, _| {
            n += 1;
            Ok(())
        })
        .unwrap();
        assert_eq!(
            end,
            WalkEnd::Zeros {
                offset: data as u64
            }
        );
        assert_eq!(n, 2);
        // A hole of zeros with a frame after it is damage, not the end.
        let mut holed = buf[..frames].to_vec();
        holed.extend_from_slice(&[0u8; 16]);
        holed.extend_from_slice(&buf[..frames]);
        let end = walk_frames(&holed, 0, holed.len(), |_, _| Ok(())).unwrap();
        assert!(
            matches!(end, WalkEnd::Bad { offset, .. } if offset == frames as u64),
            "{end:?}"
        );
    }

    #[test]
    fn oversized_records_are_refused_on_write() {
        let mut buf = vec![1, 2, 3];
        let big = vec![0u8; MAX_RECORD_LEN];
        assert!(encode_frame(&mut buf, &big).is_err());
        assert_eq!(buf, vec![1, 2, 3]);
    }

    #[test]
    fn snapshot_footer_is_checked() {
        let mut f = encode_snapshot_header(5).to_vec();
        encode_frame(&mut f, &1u64).unwrap();
        let crc = crc32c::crc32c(&f);
        f.extend_from_slice(&encode_footer(1, crc));
        assert_eq!(check_snapshot(&f), Ok((5, 1)));
        assert!(check_snapshot(&f[..f.len() - 1]).is_err());
        let mut g = f.clone();
        g[SNAPSHOT_HEADER_LEN + 9] ^= 4;
        assert!(check_snapshot(&g).is_err());
    }
}
