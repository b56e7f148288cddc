//! The data connection (`docs/PROTOCOL.md` §13.4): the receiver opens a TCP connection to the
//! offerer's port and sends a fixed 41-byte [`Request`]; the offerer answers with a
//! [`Status`] byte after the same prelude and, when it is [`Status::Ok`], the manifest's
//! length and bytes, then the files' bytes from the requested place to the end of the offer,
//! back to back in manifest order, and closes. Integers are little-endian, fixed width.

use std::io::{self, Read, Write};

/// First bytes of both directions of a data connection.
pub const MAGIC: [u8; 4] = *b"TCHF";
/// The data connection's version.
pub const VERSION: u8 = 1;
/// Bytes of a request.
pub const REQUEST_LEN: usize = 41;

/// What the receiver asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    /// The offer's token: the only thing that authenticates the connection.
    pub token: [u8; 16],
    /// The offer's id.
    pub id: u64,
    /// Index of the first file wanted.
    pub file: u32,
    /// Bytes of that file to skip (already on the receiver's disk).
    pub offset: u64,
}

impl Request {
    /// Its 41 bytes: magic, version, token, id, file, offset.
    pub fn encode(&self) -> [u8; REQUEST_LEN] {
        let mut b = [0u8; REQUEST_LEN];
        let mut at = 0;
        for part in [
            &MAGIC[..],
            &[VERSION],
            &self.token,
            &self.id.to_le_bytes(),
            &self.file.to_le_bytes(),
            &self.offset.to_le_bytes(),
        ] {
            if let Some(dst) = b.get_mut(at..at + part.len()) {
                dst.copy_from_slice(part);
            }
            at += part.len();
        }
        b
    }

    /// Reads one request.
    ///
    /// # Errors
    /// The stream ends or fails first, or the magic or version is wrong (`InvalidData`).
    pub fn read(r: &mut impl Read) -> io::Result<Request> {
        let mut b = [0u8; REQUEST_LEN];
        r.read_exact(&mut b)?;
        let (head, rest) = b.split_at(5);
        if head[..4] != MAGIC || head[4] != VERSION {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "not a tailchat file request",
            ));
        }
        let (token, rest) = rest.split_at(16);
        let (id, rest) = rest.split_at(8);
        let (file, offset) = rest.split_at(4);
        Ok(Request {
            token: token.try_into().unwrap_or_default(),
            id: u64::from_le_bytes(id.try_into().unwrap_or_default()),
            file: u32::from_le_bytes(file.try_into().unwrap_or_default()),
            offset: u64::from_le_bytes(offset.try_into().unwrap_or_default()),
        })
    }
}

/// The offerer's answer to a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Here comes the manifest, then the data.
    Ok = 0,
    /// No offer with this token and id (never made, finished, or declined).
    Unknown = 1,
    /// The offer was cancelled.
    Cancelled = 2,
    /// The file index or offset lies outside the offer.
    BadRange = 3,
    /// A file cannot be read any more, or has changed since it was offered.
    Unreadable = 4,
}

impl Status {
    /// The status of a byte on the wire.
    pub fn from_byte(b: u8) -> Option<Status> {
        Some(match b {
            0 => Status::Ok,
            1 => Status::Unknown,
            2 => Status::Cancelled,
            3 => Status::BadRange,
            4 => Status::Unreadable,
            _ => return None,
        })
    }
}

/// Writes the response prelude: magic, version, status, and for [`Status::Ok`] the
/// manifest's length (u32) and bytes.
///
/// # Errors
/// Writing fails.
pub fn write_response(w: &mut impl Write, status: Status, manifest: &[u8]) -> io::Result<()> {
    let mut head = Vec::with_capacity(10 + manifest.len());
    head.extend_from_slice(&MAGIC);
    head.push(VERSION);
    head.push(status as u8);
    if status == Status::Ok {
        let len = u32::try_from(manifest.len()).unwrap_or(u32::MAX);
        head.extend_from_slice(&len.to_le_bytes());
        head.extend_from_slice(manifest);
    }
    w.write_all(&head)
}

/// Reads the response prelude up to the status, and for [`Status::Ok`] the manifest length.
///
/// # Errors
/// The stream ends or fails, or the prelude is not a tailchat response (`InvalidData`).
pub fn read_response(r: &mut impl Read) -> io::Result<(Status, u32)> {
    let mut head = [0u8; 6];
    r.read_exact(&mut head)?;
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "not a tailchat file response");
    if head[..4] != MAGIC || head[4] != VERSION {
        return Err(bad());
    }
    // A tailchat's answer, with a status this version does not know: any status but 0 ends
    // the transfer for good (§13.4), so it is told apart from a broken connection.
    let status = Status::from_byte(head[5]).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::Unsupported,
            format!(
                "its answer has a status this tailchat does not know ({})",
                head[5]
            ),
        )
    })?;
    if status != Status::Ok {
        return Ok((status, 0));
    }
    let mut len = [0u8; 4];
    r.read_exact(&mut len)?;
    Ok((status, u32::from_le_bytes(len)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_round_trips_in_41_bytes() {
        let r = Request {
            token: [5; 16],
            id: 0x0102_0304_0506_0708,
            file: 3,
            offset: 1 << 33,
        };
        let b = r.encode();
        assert_eq!(&b[..5], b"TCHF\x01");
        assert_eq!(&b[21..29], &[8, 7, 6, 5, 4, 3, 2, 1]);
        assert_eq!(Request::read(&mut &b[..]).unwrap(), r);
        let mut bad = b;
        bad[4] = 2;
        assert!(Request::read(&mut &bad[..]).is_err());
        assert!(Request::read(&mut &b[..40]).is_err());
    }

    #[test]
    fn responses_round_trip() {
        let mut out = Vec::new();
        write_response(&mut out, Status::Ok, b"abc").unwrap();
        assert_eq!(out, b"TCHF\x01\x00\x03\x00\x00\x00abc");
        let mut r = &out[..];
        assert_eq!(read_response(&mut r).unwrap(), (Status::Ok, 3));
        assert_eq!(r, b"abc");
        let mut out = Vec::new();
        write_response(&mut out, Status::Cancelled, b"ignored").unwrap();
        assert_eq!(out, b"TCHF\x01\x02");
        assert_eq!(
            read_response(&mut &out[..]).unwrap(),
            (Status::Cancelled, 0)
        );
        // An unknown status is told apart from a broken or foreign answer: it ends the
        // transfer, where those are retried.
        let unknown = read_response(&mut &b"TCHF\x01\x09"[..]).unwrap_err();
        assert_eq!(unknown.kind(), io::ErrorKind::Unsupported);
        let foreign = read_response(&mut &b"HTTP/1"[..]).unwrap_err();
        assert_eq!(foreign.kind(), io::ErrorKind::InvalidData);
    }
}
