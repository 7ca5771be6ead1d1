//! Walking the frames of a region of a file front to back in bounded chunks, with a running
//! checksum: how snapshots are verified and replayed without holding them in memory.

use std::path::Path;

use crate::error::{Error, Result};
use crate::format::{self, FRAME_HEADER_LEN, MAX_RECORD_LEN};
use crate::fs::Fs;

/// Bytes asked of [`Fs::read_range`] at a time: big enough that the per-call costs (open,
/// seek, allocation) vanish, small enough to keep memory flat. Larger than the largest frame,
/// so a frame that runs past the end of a chunk costs one re-read of a few bytes.
pub(crate) const CHUNK: usize = 4 << 20;
const _: () = assert!(CHUNK >= FRAME_HEADER_LEN + MAX_RECORD_LEN);

/// What [`Frames::next`] found.
#[derive(Debug)]
pub(crate) enum Next<'b> {
    /// A frame at `offset` (of the file) with this payload and the checksum its header
    /// states (not compared here).
    Frame {
        offset: u64,
        payload: &'b [u8],
        crc: u32,
    },
    /// The region ended exactly after the last frame.
    End,
    /// The frame at `offset` is not valid.
    Bad { offset: u64, reason: String },
}

/// The frames of `path` from `start` up to `end`, read `CHUNK` bytes at a time.
///
/// When a frame runs past the end of the chunk, the next chunk is read from that frame's
/// start (re-reading its few bytes instead of copying them), so a frame is always whole in
/// the buffer.
pub(crate) struct Frames<'a> {
    fs: &'a dyn Fs,
    path: &'a Path,
    end: u64,
    /// File bytes `buf_at..buf_at + buf.len()`.
    buf: Vec<u8>,
    buf_at: u64,
    /// Where the next frame starts in `buf`.
    pos: usize,
    /// The running crc32c of every byte consumed (frames walked), if asked for.
    crc: Option<u32>,
    /// `buf[..crc_done]` is in `crc`.
    crc_done: usize,
    /// Bytes per read (at least one frame more when a frame needs it).
    chunk: usize,
    /// The last read returned less than asked: the file ends before the region does.
    short: bool,
}

impl std::fmt::Debug for Frames<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Frames")
            .field("path", &self.path)
            .field("at", &self.offset())
            .field("end", &self.end)
            .finish_non_exhaustive()
    }
}

impl<'a> Frames<'a> {
    /// Walks `start..end` of `path`, checking the framing (lengths) of each frame but not
    /// its payload checksum: the running crc32c covers every byte at a fraction of the cost
    /// of one call per small payload. `crc_seed`: keep that running checksum of the walked
    /// bytes, starting from this value (the checksum of what precedes `start`).
    pub(crate) fn new(
        fs: &'a dyn Fs,
        path: &'a Path,
        start: u64,
        end: u64,
        crc_seed: Option<u32>,
    ) -> Self {
        Frames {
            fs,
            path,
            end,
            buf: Vec::new(),
            buf_at: start,
            pos: 0,
            crc: crc_seed,
            crc_done: 0,
            chunk: CHUNK,
            short: false,
        }
    }

    /// Reads `chunk` bytes at a time instead of [`CHUNK`] (tests: every frame boundary).
    #[cfg(test)]
    pub(crate) fn with_chunk(mut self, chunk: usize) -> Self {
        self.chunk = chunk.max(1);
        self
    }

    /// The file offset of the next frame.
    pub(crate) fn offset(&self) -> u64 {
        self.buf_at + self.pos as u64
    }

    /// The next frame. IO errors are errors; a bad frame is [`Next::Bad`] (and the walk
    /// should stop there).
    pub(crate) fn next(&mut self) -> Result<Next<'_>> {
        let at = self.offset();
        if at >= self.end {
            self.fold_crc();
            return Ok(Next::End);
        }
        loop {
            // What the next frame needs in the buffer: its header, then (if its length is in
            // range; a wrong one is bad without looking further) all of it.
            let need = match format::frame_len_at(&self.buf, self.pos) {
                Some(len) if (1..=MAX_RECORD_LEN).contains(&len) => FRAME_HEADER_LEN + len,
                Some(_) => 0,
                None => FRAME_HEADER_LEN,
            };
            let buf_end = self.buf_at + self.buf.len() as u64;
            if self.buf.len() - self.pos >= need || buf_end >= self.end || self.short {
                break;
            }
            self.refill(need)?;
        }
        // A file shorter than the region (it shrank under us) reads short: the frame that
        // runs past the data is cut short.
        let limit = (self.end - self.buf_at).min(self.buf.len() as u64) as usize;
        let (p, q) = match format::frame_bounds(&self.buf, self.pos, limit) {
            Ok(range) => range,
            Err(reason) => return Ok(Next::Bad { offset: at, reason }),
        };
        self.pos = q;
        let crc = u32::from_le_bytes(self.buf[p - 4..p].try_into().expect("4 bytes"));
        Ok(Next::Frame {
            offset: at,
            payload: &self.buf[p..q],
            crc,
        })
    }

    /// The running checksum of everything walked (after [`Next::End`]: of the whole region
    /// and what preceded it).
    pub(crate) fn crc(&self) -> Option<u32> {
        self.crc
    }

    /// After a bad frame: folds the rest of the region, unframed, into the running checksum
    /// and returns it (to tell damage from a snapshot that was written wrong).
    pub(crate) fn crc_to_end(self) -> Result<u32> {
        let mut crc = self.crc.unwrap_or(0);
        let limit = (self.end - self.buf_at).min(self.buf.len() as u64) as usize;
        crc = crc32c::crc32c_append(crc, &self.buf[self.crc_done..limit]);
        let mut at = self.buf_at + limit as u64;
        while at < self.end {
            let want = (self.end - at).min(self.chunk as u64) as usize;
            let chunk = self
                .fs
                .read_range(self.path, at, want)
                .map_err(|e| Error::io("read", self.path, e))?;
            if chunk.is_empty() {
                // The file ends before the region does.
                break;
            }
            crc = crc32c::crc32c_append(crc, &chunk);
            at += chunk.len() as u64;
        }
        Ok(crc)
    }

    fn fold_crc(&mut self) {
        if let Some(c) = &mut self.crc {
            *c = crc32c::crc32c_append(*c, &self.buf[self.crc_done..self.pos]);
            self.crc_done = self.pos;
        }
    }

    /// Reads the next chunk (at least `need` bytes), from the start of the next frame.
    fn refill(&mut self, need: usize) -> Result<()> {
        self.fold_crc();
        let at = self.offset();
        let want = (self.end - at).min(self.chunk.max(need) as u64) as usize;
        self.buf = self
            .fs
            .read_range(self.path, at, want)
            .map_err(|e| Error::io("read", self.path, e))?;
        self.short = self.buf.len() < want;
        self.buf_at = at;
        self.pos = 0;
        self.crc_done = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::testing::FaultyFs;

    /// A frame's offset and payload.
    type Frame = (u64, Vec<u8>);

    /// A file of 5 bytes of "header", then frames with payloads of 1 to 40 bytes, then
    /// 3 bytes of "footer". Returns it, its frames, and where they end.
    fn file() -> (Vec<u8>, Vec<Frame>, usize) {
        let mut b = vec![9u8; 5];
        let mut frames = Vec::new();
        for i in 0..60u8 {
            let payload: Vec<u8> = (0..1 + (i as usize * 7) % 40)
                .map(|j| i ^ j as u8)
                .collect();
            frames.push((b.len() as u64, payload.clone()));
            format::encode_raw_frame(&mut b, &payload);
        }
        let end = b.len();
        b.extend_from_slice(&[7, 7, 7]);
        (b, frames, end)
    }

    /// Walks `w` to its first bad frame: how many good frames came before it, and its
    /// offset; `None` if the walk ends without one.
    fn first_bad(w: &mut Frames<'_>) -> Option<(usize, u64)> {
        let mut n = 0;
        loop {
            match w.next().unwrap() {
                Next::Frame { .. } => n += 1,
                Next::End => return None,
                Next::Bad { offset, .. } => return Some((n, offset)),
            }
        }
    }

    fn put(bytes: &[u8]) -> (FaultyFs, PathBuf) {
        let fs = FaultyFs::new();
        let p = PathBuf::from("/f");
        fs.write_file(&p, bytes);
        (fs, p)
    }

    #[test]
    fn every_chunk_size_walks_every_frame_and_checksums_the_region() {
        let (bytes, want, end) = file();
        let (fs, p) = put(&bytes);
        for chunk in 1..=120 {
            let mut w = Frames::new(&fs, &p, 5, end as u64, Some(crc32c::crc32c(&bytes[..5])))
                .with_chunk(chunk);
            let mut got = Vec::new();
            loop {
                match w.next().unwrap() {
                    Next::Frame {
                        offset, payload, ..
                    } => got.push((offset, payload.to_vec())),
                    Next::End => break,
                    Next::Bad { offset, reason } => panic!("chunk {chunk}: {offset}: {reason}"),
                }
            }
            assert_eq!(got, want, "chunk {chunk}");
            assert_eq!(
                w.crc(),
                Some(crc32c::crc32c(&bytes[..end])),
                "chunk {chunk}"
            );
        }
    }

    #[test]
    fn a_bad_frame_stops_the_walk_at_its_offset_at_every_chunk_size() {
        let (bytes, want, end) = file();
        for victim in [0usize, 1, 30, 59] {
            let at = want[victim].0 as usize;
            for (what, damage) in [
                ("zero length", 0u32),
                // (A wrong length that stays inside the region is not bad framing: the
                // running checksum is what catches it.)
                ("length past the end", 100_000),
                ("length out of range", u32::MAX),
            ] {
                let mut b = bytes.clone();
                b[at..at + 4].copy_from_slice(&damage.to_le_bytes());
                let (fs, p) = put(&b);
                for chunk in [1, 7, 8, 9, 50, 4096] {
                    let mut w = Frames::new(&fs, &p, 5, end as u64, Some(0)).with_chunk(chunk);
                    let (n, bad) = first_bad(&mut w)
                        .unwrap_or_else(|| panic!("{what} at frame {victim} not found"));
                    assert_eq!((n, bad), (victim, at as u64), "{what}, chunk {chunk}");
                    // The checksum of the whole region is still there for the caller.
                    assert_eq!(
                        w.crc_to_end().unwrap(),
                        crc32c::crc32c_append(0, &b[5..end]),
                        "{what}, chunk {chunk}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_file_shorter_than_the_region_cuts_the_last_frame_short() {
        let (bytes, want, end) = file();
        let cut = want[40].0 as usize + 3;
        let (fs, p) = put(&bytes[..cut]);
        for chunk in [1, 64, CHUNK] {
            let mut w = Frames::new(&fs, &p, 5, end as u64, Some(0)).with_chunk(chunk);
            let (n, bad) = first_bad(&mut w).expect("the short file read as whole");
            assert_eq!((n, bad), (40, want[40].0), "chunk {chunk}");
            assert_eq!(
                w.crc_to_end().unwrap(),
                crc32c::crc32c_append(0, &bytes[5..cut])
            );
        }
    }
}
