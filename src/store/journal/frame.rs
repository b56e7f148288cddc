//! The journal's framing: how records are laid out in the file, and the tolerant reader that
//! finds them again in a damaged file (see the parent module's doc for the format).
//!
//! The reader works over a [`Source`]: a file read through a bounded window ([`FileWindow`], so
//! that opening or compacting a large journal never holds the whole file in memory), or bytes
//! already in memory ([`InMemory`], one stretch of a file, or a whole one in tests).

use super::view::{decode, RecordView};
use super::{JournalError, Record};
use std::fmt;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// The first bytes of every journal file: what it is, and the format's version.
pub const HEADER: [u8; 4] = *b"TCJ1";
/// The first two bytes of every record; what the reader looks for to resynchronise.
pub const MARKER: [u8; 2] = [0xC3, 0x7A];
/// The largest payload a record may have. Messages are at most 64 KiB, so anything larger is
/// corruption (a damaged length), and refusing it keeps the reader from trusting it.
pub const MAX_PAYLOAD: usize = 1 << 20;
/// Marker, length and checksum: the bytes before a record's payload.
pub(super) const FRAME_HEADER: usize = 2 + 4 + 4;
/// The most a whole record can take: enough bytes from a record's start to judge it.
const MAX_FRAME: usize = FRAME_HEADER + MAX_PAYLOAD;
/// How much of the file a [`FileWindow`] reads at once.
const WINDOW: usize = 4 << 20;
/// How far past a damaged record one step of the search for the next good one looks.
const SEARCH_STEP: usize = 1 << 20;

/// `r` framed for the file: marker, length, checksum, payload.
pub(super) fn frame(r: &Record) -> Result<Vec<u8>, JournalError> {
    let payload =
        postcard::to_allocvec(r).expect("postcard encodes any Record into a Vec: no I/O, no maps");
    if payload.len() > MAX_PAYLOAD {
        return Err(JournalError::RecordTooLarge {
            bytes: payload.len(),
        });
    }
    Ok(frame_payload(&payload))
}

/// `payload` (at most [`MAX_PAYLOAD`] bytes) framed for the file.
pub(super) fn frame_payload(payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(FRAME_HEADER + payload.len());
    frame.extend_from_slice(&MARKER);
    // Fits: callers keep payloads within MAX_PAYLOAD.
    frame.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    frame.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// Why the bytes at some offset are not a whole record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum FrameError {
    /// They do not start with [`MARKER`].
    BadMarker,
    /// The length field is over [`MAX_PAYLOAD`].
    TooLong(u32),
    /// The file ends before the record does.
    Incomplete {
        /// The bytes the record needs from its start: the frame header, plus the payload once
        /// the length is known.
        need: usize,
        /// The bytes left in the file.
        have: usize,
    },
    /// The payload's CRC does not match the checksum field.
    Checksum,
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::BadMarker => write!(f, "no record marker"),
            FrameError::TooLong(n) => {
                write!(f, "length {n} is over the limit of {MAX_PAYLOAD} bytes")
            }
            FrameError::Incomplete { need, have } => write!(
                f,
                "incomplete record ({have} of {need} bytes before the end of the file)"
            ),
            FrameError::Checksum => write!(f, "checksum mismatch"),
        }
    }
}

/// The payload of the record at `pos` and the offset just past it, if the marker, length and
/// checksum there are right. `bytes` must run to the end of the file or at least
/// [`MAX_FRAME`] bytes past `pos`, or a record cut by the slice's end reads as incomplete.
pub(super) fn read_frame(bytes: &[u8], pos: usize) -> Result<(&[u8], usize), FrameError> {
    let rest = &bytes[pos..];
    let marker_len = rest.len().min(MARKER.len());
    if rest[..marker_len] != MARKER[..marker_len] {
        return Err(FrameError::BadMarker);
    }
    if rest.len() < FRAME_HEADER {
        return Err(FrameError::Incomplete {
            need: FRAME_HEADER,
            have: rest.len(),
        });
    }
    let field =
        |at: usize| u32::from_le_bytes([rest[at], rest[at + 1], rest[at + 2], rest[at + 3]]);
    let (length, crc) = (field(2), field(6));
    if length as usize > MAX_PAYLOAD {
        return Err(FrameError::TooLong(length));
    }
    let end = FRAME_HEADER + length as usize;
    if rest.len() < end {
        return Err(FrameError::Incomplete {
            need: end,
            have: rest.len(),
        });
    }
    let payload = &rest[FRAME_HEADER..end];
    if crc32fast::hash(payload) != crc {
        return Err(FrameError::Checksum);
    }
    Ok((payload, pos + end))
}

/// Where the reader takes bytes from. Offsets are the file's.
pub(super) trait Source {
    /// The offset where the bytes end (the end of the file, or of the stretch being read).
    fn end(&self) -> u64;
    /// The bytes from `at` on: at least `want` of them, or every one up to [`Source::end`].
    ///
    /// # Errors
    /// Reading the file failed.
    fn bytes_at(&mut self, at: u64, want: usize) -> io::Result<&[u8]>;
}

/// Bytes already in memory: the stretch of a file that starts at offset `base`.
pub(super) struct InMemory<'a> {
    /// The bytes.
    pub(super) bytes: &'a [u8],
    /// The file offset of `bytes[0]`.
    pub(super) base: u64,
}

impl Source for InMemory<'_> {
    fn end(&self) -> u64 {
        self.base + self.bytes.len() as u64
    }

    fn bytes_at(&mut self, at: u64, _want: usize) -> io::Result<&[u8]> {
        Ok(&self.bytes[(at - self.base) as usize..])
    }
}

/// A file read through a window of a few MiB, up to `end`: memory stays bounded whatever the
/// file's size.
pub(super) struct FileWindow<'f> {
    /// The file.
    file: &'f File,
    /// Where reading stops.
    end: u64,
    /// The offset of `buf[0]`.
    start: u64,
    /// The bytes read last.
    buf: Vec<u8>,
}

impl<'f> FileWindow<'f> {
    /// A window over `file` up to offset `end`.
    pub(super) fn new(file: &'f File, end: u64) -> Self {
        Self {
            file,
            end,
            start: 0,
            buf: Vec::new(),
        }
    }
}

impl Source for FileWindow<'_> {
    fn end(&self) -> u64 {
        self.end
    }

    fn bytes_at(&mut self, at: u64, want: usize) -> io::Result<&[u8]> {
        let wanted_end = self.end.min(at.saturating_add(want as u64));
        let held_end = self.start + self.buf.len() as u64;
        if at < self.start || wanted_end > held_end {
            let len = (self.end - at).min(want.max(WINDOW) as u64) as usize;
            self.buf.resize(len, 0);
            let mut got = 0;
            while got < len {
                match self.file.read_at(&mut self.buf[got..], at + got as u64) {
                    // Shorter than expected (cut by someone else): the end is where it ends.
                    Ok(0) => break,
                    Ok(n) => got += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            self.buf.truncate(got);
            if got < len {
                self.end = at + got as u64;
            }
            self.start = at;
        }
        Ok(&self.buf[(at - self.start) as usize..])
    }
}

/// The bytes after the last whole record, none of which start a whole record.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Tail {
    /// Where they start: the end of the last good record (or of the header).
    pub(super) at: u64,
    /// Why the first record there is not whole.
    pub(super) error: FrameError,
}

impl Tail {
    /// A warning about this tail (without the path, nor what was done about it).
    pub(super) fn describe(&self, file_len: u64) -> String {
        match self.error {
            FrameError::Incomplete { .. } => format!(
                "offset {}: torn tail, {} — a write cut short (a crash, a power loss, or a full disk)",
                self.at, self.error
            ),
            _ => format!(
                "offset {}: {}, and no good record in the {} bytes from there to the end",
                self.at,
                self.error,
                file_len - self.at
            ),
        }
    }
}

/// One whole record found by [`scan_source`].
pub(super) struct Found<'a> {
    /// Where its frame starts.
    pub(super) at: u64,
    /// Where its frame ends.
    pub(super) end: u64,
    /// Its payload as stored.
    pub(super) payload: &'a [u8],
    /// The payload decoded, or `None` when this version cannot decode it (then skipped with a
    /// warning, and kept in the file).
    pub(super) record: Option<RecordView<'a>>,
}

/// What [`scan_source`] says about damage.
#[derive(Debug, Default)]
pub(super) struct Damage {
    /// Damage skipped before the end, one line each (without the path), in file order.
    pub(super) warnings: Vec<String>,
    /// Damage at the end, if any.
    pub(super) tail: Option<Tail>,
}

/// Reads the records of `src` from offset `from` (a record's start, or the end of the header),
/// skipping damage, and hands each whole one to `each` in file order.
///
/// # Errors
/// Reading the file failed.
pub(super) fn scan_source(
    src: &mut impl Source,
    from: u64,
    mut each: impl FnMut(Found<'_>),
) -> io::Result<Damage> {
    let mut out = Damage::default();
    let mut pos = from;
    while pos < src.end() {
        let framed = {
            let bytes = src.bytes_at(pos, MAX_FRAME)?;
            read_frame(bytes, 0).map(|(payload, len)| (payload.len(), len))
        };
        match framed {
            Ok((payload_len, len)) => {
                let bytes = src.bytes_at(pos, len)?;
                let payload = &bytes[FRAME_HEADER..FRAME_HEADER + payload_len];
                let record = match decode(payload) {
                    Ok(view) => Some(view),
                    Err(why) => {
                        out.warnings.push(format!("offset {pos}: {why}"));
                        None
                    }
                };
                let end = pos + len as u64;
                each(Found {
                    at: pos,
                    end,
                    payload,
                    record,
                });
                pos = end;
            }
            Err(error) => match next_frame(src, pos + 1)? {
                Some(next) => {
                    out.warnings.push(format!(
                        "offset {pos}: {error}; skipped {} bytes to the next good record at \
                         offset {next}",
                        next - pos
                    ));
                    pos = next;
                }
                None => {
                    out.tail = Some(Tail { at: pos, error });
                    break;
                }
            },
        }
    }
    Ok(out)
}

/// The start of the first whole record (right marker, length and checksum) at or after `from`.
fn next_frame(src: &mut impl Source, from: u64) -> io::Result<Option<u64>> {
    let mut at = from;
    while at + 1 < src.end() {
        let at_end = src.end();
        let bytes = src.bytes_at(at, SEARCH_STEP + MAX_FRAME)?;
        // Only where every candidate can be judged whole: `MAX_FRAME` bytes after it, or the
        // end of the source.
        let searchable = if at + bytes.len() as u64 >= at_end {
            bytes.len()
        } else {
            bytes.len().saturating_sub(MAX_FRAME).clamp(1, SEARCH_STEP)
        };
        let found = (0..searchable.min(bytes.len().saturating_sub(1)))
            .filter(|&i| bytes[i..].starts_with(&MARKER))
            .find(|&i| read_frame(bytes, i).is_ok());
        if let Some(i) = found {
            return Ok(Some(at + i as u64));
        }
        at += searchable as u64;
    }
    Ok(None)
}

/// The records that decode in `bytes` (a whole file, header included), skipping damage.
#[cfg(test)]
pub(super) fn scan(bytes: &[u8]) -> Vec<super::Record> {
    let mut records = Vec::new();
    let mut src = InMemory { bytes, base: 0 };
    let from = HEADER.len().min(bytes.len()) as u64;
    scan_source(&mut src, from, |found| {
        records.extend(found.record.map(|v| v.to_record()));
    })
    .expect("reading memory cannot fail");
    records
}

/// The record whose frame starts at `at` in `file`, read again (one known to be whole).
///
/// # Errors
/// Reading failed, or the bytes there are no longer a whole record of a known kind.
pub(super) fn read_record_at(file: &File, at: u64) -> io::Result<Record> {
    let mut header = [0; FRAME_HEADER];
    file.read_exact_at(&mut header, at)?;
    let length = u32::from_le_bytes([header[2], header[3], header[4], header[5]]) as usize;
    let mut bytes = header.to_vec();
    bytes.resize(FRAME_HEADER + length.min(MAX_PAYLOAD), 0);
    file.read_exact_at(&mut bytes[FRAME_HEADER..], at + FRAME_HEADER as u64)?;
    let (payload, _) = read_frame(&bytes, 0)
        .map_err(|e| io::Error::other(format!("offset {at}: {e}, on reading it again")))?;
    decode(payload)
        .map(|v| v.to_record())
        .map_err(|why| io::Error::other(format!("offset {at}: {why}, on reading it again")))
}

/// The offsets where the whole records of `bytes` (a whole file without damage) start.
#[cfg(test)]
pub(super) fn scan_offsets(bytes: &[u8]) -> Vec<u64> {
    let mut at = Vec::new();
    let mut src = InMemory { bytes, base: 0 };
    scan_source(&mut src, HEADER.len() as u64, |found| at.push(found.at))
        .expect("reading memory cannot fail");
    at
}
