//! The journal's framing: how records are laid out in the file, and the tolerant reader that
//! finds them again in a damaged file (see the parent module's doc for the format).

use super::{JournalError, Record};
use std::fmt;

/// The first bytes of every journal file: what it is, and the format's version.
pub const HEADER: [u8; 4] = *b"TCJ1";
/// The first two bytes of every record; what the reader looks for to resynchronise.
pub const MARKER: [u8; 2] = [0xC3, 0x7A];
/// The largest payload a record may have. Messages are at most 64 KiB, so anything larger is
/// corruption (a damaged length), and refusing it keeps the reader from trusting it.
pub const MAX_PAYLOAD: usize = 1 << 20;
/// Marker, length and checksum: the bytes before a record's payload.
pub(super) const FRAME_HEADER: usize = 2 + 4 + 4;

/// `r` framed for the file: marker, length, checksum, payload.
pub(super) fn frame(r: &Record) -> Result<Vec<u8>, JournalError> {
    let payload =
        postcard::to_allocvec(r).expect("postcard encodes any Record into a Vec: no I/O, no maps");
    if payload.len() > MAX_PAYLOAD {
        return Err(JournalError::RecordTooLarge {
            bytes: payload.len(),
        });
    }
    let mut frame = Vec::with_capacity(FRAME_HEADER + payload.len());
    frame.extend_from_slice(&MARKER);
    // Fits: checked against MAX_PAYLOAD above.
    frame.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    frame.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    frame.extend_from_slice(&payload);
    Ok(frame)
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
/// checksum there are right.
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

/// The start of the first whole record (right marker, length and checksum) at or after `from`.
pub(super) fn next_frame(bytes: &[u8], from: usize) -> Option<usize> {
    (from..bytes.len().saturating_sub(1))
        .filter(|&at| bytes[at..].starts_with(&MARKER))
        .find(|&at| read_frame(bytes, at).is_ok())
}

/// The bytes after the last whole record, none of which start a whole record.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Tail {
    /// Where they start: the end of the last good record (or of the header).
    pub(super) at: usize,
    /// Why the first record there is not whole.
    pub(super) error: FrameError,
}

impl Tail {
    /// A warning about this tail (without the path, nor what was done about it).
    pub(super) fn describe(&self, file_len: usize) -> String {
        match self.error {
            FrameError::Incomplete { .. } => format!(
                "offset {}: torn tail, {} — a write cut short by a crash or power loss",
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

/// Everything [`scan`] found in a journal's bytes.
#[derive(Debug, Default)]
pub(super) struct Scan {
    /// The records that decoded, in file order.
    pub(super) records: Vec<Record>,
    /// Damage skipped in the middle of the file, one line each (without the path).
    pub(super) warnings: Vec<String>,
    /// Damage at the end of the file, if any.
    pub(super) tail: Option<Tail>,
}

/// Reads the records in `bytes` (a whole file, header included), skipping damage.
pub(super) fn scan(bytes: &[u8]) -> Scan {
    let mut out = Scan::default();
    let mut pos = HEADER.len().min(bytes.len());
    while pos < bytes.len() {
        match read_frame(bytes, pos) {
            Ok((payload, end)) => {
                match postcard::take_from_bytes::<Record>(payload) {
                    Ok((record, [])) => out.records.push(record),
                    Ok((_, extra)) => out.warnings.push(format!(
                        "offset {pos}: skipped a record with {} unexpected bytes after it",
                        extra.len()
                    )),
                    // Whole and checksummed, so written on purpose: most likely a kind of
                    // record from a newer tailchat. Kept in the file, skipped here.
                    Err(e) => out.warnings.push(format!(
                        "offset {pos}: skipped a record this version cannot decode ({e})"
                    )),
                }
                pos = end;
            }
            Err(error) => match next_frame(bytes, pos + 1) {
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
    out
}
