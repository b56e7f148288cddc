//! The control messages of a file transfer, carried as `AppData` payloads in the chat's
//! reliable, ordered stream (`docs/PROTOCOL.md` §13.2).
//!
//! A payload is one tag byte, [`TAG_FILES`], then one postcard-encoded [`Control`]. Every
//! message names its transfer by the id the offerer gave it. Each is idempotent: a peer that
//! restarts may see one again, and answers a repeated offer of a transfer it has finished
//! with the message that finished it.

use serde::{Deserialize, Serialize};
use std::fmt;

/// First byte of every file-transfer payload; other values belong to other uses of `AppData`.
pub const TAG_FILES: u8 = 1;
/// Longest offered name, in bytes of UTF-8.
pub const MAX_NAME_BYTES: usize = 255;
/// Longest reason in a [`Control::Cancel`] or [`Control::Pause`], in bytes (longer ones are
/// cut when sent).
pub const MAX_REASON_BYTES: usize = 200;

/// An offer: what is offered, and how to fetch it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offer {
    /// The offerer's random id for this transfer.
    pub id: u64,
    /// The secret that authenticates a data connection for this transfer.
    pub token: [u8; 16],
    /// The file's or folder's name (one path component; the receiver sanitises it anyway).
    pub name: String,
    /// Bytes in all, the sum of the manifest's sizes.
    pub size: u64,
    /// Files in the manifest.
    pub files: u32,
    /// A folder (its files keep their relative paths) rather than one file.
    pub folder: bool,
    /// BLAKE3 of the manifest's encoding: the manifest, and through it every file's hash, is
    /// fixed by the offer.
    pub manifest_hash: [u8; 32],
    /// Bytes of the manifest's encoding.
    pub manifest_len: u32,
    /// The TCP port the offerer serves the data on (at the address its datagrams come from).
    pub port: u16,
}

/// One control message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Control {
    /// Offerer → receiver: this is on offer. Sent again whenever the receiver rejoins until
    /// the transfer is finished (the port may have changed).
    Offer(Offer),
    /// Receiver → offerer: the user accepted; a data connection follows.
    Accept {
        /// The transfer.
        id: u64,
    },
    /// Receiver → offerer: the user declined.
    Decline {
        /// The transfer.
        id: u64,
    },
    /// Receiver → offerer: fetching again from file `file`, byte `offset` (after a cut link
    /// or a restart); a data connection follows.
    Resume {
        /// The transfer.
        id: u64,
        /// Index of the first file still wanted, in manifest order.
        file: u32,
        /// Bytes of that file already on the receiver's disk.
        offset: u64,
    },
    /// Either side: the transfer is stopped, for good.
    Cancel {
        /// The transfer.
        id: u64,
        /// Whether the sender of this message is the offerer (the id is its own) or the
        /// receiver.
        by_offerer: bool,
        /// Why, for the other side's user.
        reason: String,
    },
    /// Receiver → offerer: every file arrived and matched its hash.
    Done {
        /// The transfer.
        id: u64,
    },
    /// Receiver → offerer: fetching stopped for now (its disk is full, say); what it has,
    /// `at` bytes of the offer, is kept, and it fetches again when its user says so. The
    /// offerer keeps serving.
    Pause {
        /// The transfer.
        id: u64,
        /// Bytes of the offer the receiver has on its disk.
        at: u64,
        /// Why, for the offerer's user.
        reason: String,
    },
}

/// Why a payload is not a control message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ControlError {
    /// Its tag is not [`TAG_FILES`]: another use of `AppData`, ignored.
    OtherTag,
    /// A file-transfer payload that does not decode, or breaks a limit.
    Malformed,
}

impl fmt::Display for ControlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ControlError::OtherTag => "not a file-transfer message",
            ControlError::Malformed => "a malformed file-transfer message",
        })
    }
}

impl Control {
    /// The transfer it is about.
    pub fn id(&self) -> u64 {
        match self {
            Control::Offer(o) => o.id,
            Control::Accept { id }
            | Control::Decline { id }
            | Control::Resume { id, .. }
            | Control::Cancel { id, .. }
            | Control::Pause { id, .. }
            | Control::Done { id } => *id,
        }
    }
}

/// The payload for `c`: [`TAG_FILES`], then `c` postcard-encoded. A cancel's reason is cut to
/// [`MAX_REASON_BYTES`] (on a character boundary).
pub fn encode(c: &Control) -> Vec<u8> {
    let mut c = c.clone();
    if let Control::Cancel { reason, .. } | Control::Pause { reason, .. } = &mut c {
        let mut end = reason.len().min(MAX_REASON_BYTES);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        reason.truncate(end);
    }
    let mut out = vec![TAG_FILES];
    // Encoding plain structs into a Vec cannot fail.
    out.extend(postcard::to_allocvec(&c).unwrap_or_default());
    out
}

/// The control message in a payload.
///
/// # Errors
/// [`ControlError::OtherTag`] for a payload of another use (or none: empty);
/// [`ControlError::Malformed`] if it
/// does not decode, or an offer's name is empty or longer than [`MAX_NAME_BYTES`], or a
/// reason longer than [`MAX_REASON_BYTES`]. Bytes after the message are ignored (a later
/// version's fields).
pub fn decode(payload: &[u8]) -> Result<Control, ControlError> {
    // An empty payload has no tag: not one of ours (§13.2: only a first byte 01 is).
    let (tag, body) = payload.split_first().ok_or(ControlError::OtherTag)?;
    if *tag != TAG_FILES {
        return Err(ControlError::OtherTag);
    }
    let (c, _rest): (Control, _) =
        postcard::take_from_bytes(body).map_err(|_| ControlError::Malformed)?;
    let ok = match &c {
        Control::Offer(o) => !o.name.is_empty() && o.name.len() <= MAX_NAME_BYTES,
        Control::Cancel { reason, .. } | Control::Pause { reason, .. } => {
            reason.len() <= MAX_REASON_BYTES
        }
        _ => true,
    };
    if ok {
        Ok(c)
    } else {
        Err(ControlError::Malformed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer() -> Offer {
        Offer {
            id: 7,
            token: [0xaa; 16],
            name: "report.pdf".into(),
            size: 4_200_000,
            files: 1,
            folder: false,
            manifest_hash: [1; 32],
            manifest_len: 47,
            port: 7654,
        }
    }

    #[test]
    fn every_message_round_trips_and_fits_one_frame() {
        let long = Offer {
            name: "n".repeat(MAX_NAME_BYTES),
            id: u64::MAX,
            size: u64::MAX,
            ..offer()
        };
        for c in [
            Control::Offer(offer()),
            Control::Offer(long),
            Control::Accept { id: 7 },
            Control::Decline { id: 7 },
            Control::Resume {
                id: 7,
                file: 3,
                offset: 1 << 40,
            },
            Control::Cancel {
                id: 7,
                by_offerer: true,
                reason: "cancelled".into(),
            },
            Control::Done { id: 7 },
            Control::Pause {
                id: 7,
                at: 5_000_000,
                reason: "the disk is full".into(),
            },
        ] {
            let bytes = encode(&c);
            assert!(bytes.len() <= crate::proto::wire::MAX_APP_DATA, "{c:?}");
            assert_eq!(decode(&bytes), Ok(c));
        }
    }

    #[test]
    fn hostile_payloads_are_typed_errors() {
        assert_eq!(decode(&[]), Err(ControlError::OtherTag));
        assert_eq!(decode(&[2, 0]), Err(ControlError::OtherTag));
        assert_eq!(decode(&[TAG_FILES, 99]), Err(ControlError::Malformed));
        let mut o = offer();
        o.name = String::new();
        assert_eq!(
            decode(&encode(&Control::Offer(o))),
            Err(ControlError::Malformed)
        );
        let mut body = vec![TAG_FILES];
        body.extend(
            postcard::to_allocvec(&Control::Cancel {
                id: 1,
                by_offerer: false,
                reason: "x".repeat(MAX_REASON_BYTES + 1),
            })
            .unwrap(),
        );
        assert_eq!(decode(&body), Err(ControlError::Malformed));
        let cut = encode(&Control::Offer(offer()));
        for len in 1..cut.len() {
            assert!(decode(&cut[..len]).is_err(), "{len}");
        }
    }

    #[test]
    fn a_long_reason_is_cut_on_a_character_boundary() {
        let c = Control::Cancel {
            id: 1,
            by_offerer: false,
            reason: "é".repeat(MAX_REASON_BYTES),
        };
        let Ok(Control::Cancel { reason, .. }) = decode(&encode(&c)) else {
            panic!("decodes");
        };
        assert_eq!(reason.len(), MAX_REASON_BYTES);
    }
}
