//! Reassembly of a message sent as fragments. Fragments come out of the ordered stream, so a
//! message's pieces arrive one after the other, from index 0; anything else is a broken
//! message, dropped and counted. At most one message is being reassembled per peer.

use super::send::Style;
use crate::proto::ids::MessageId;
use crate::proto::{MAX_MESSAGE_BYTES, REASSEMBLY_TIMEOUT};
use std::time::Instant;

/// One fragment as it came out of the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piece {
    /// The message it belongs to.
    pub msg: MessageId,
    /// Direct or group, action or not.
    pub style: Style,
    /// How long ago the message was written, as the sender said when it sent this piece.
    pub age_ms: u64,
    /// Which piece, from 0.
    pub index: u16,
    /// Of how many.
    pub count: u16,
    /// Its bytes (which may split a UTF-8 character).
    pub data: Vec<u8>,
}

/// A reassembled message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Whole {
    /// Its id.
    pub msg: MessageId,
    /// Direct or group, action or not (as its first piece said).
    pub style: Style,
    /// How long ago it was written, as its last piece said.
    pub age_ms: u64,
    /// Its text.
    pub text: String,
}

/// A message being reassembled from fragments.
#[derive(Debug)]
struct Partial {
    /// Which message.
    msg: MessageId,
    /// Direct or group, action or not.
    style: Style,
    /// Pieces in all.
    count: u16,
    /// Bytes so far.
    data: Vec<u8>,
    /// Pieces so far.
    next: u16,
    /// When the last piece came, for [`REASSEMBLY_TIMEOUT`].
    last_progress: Instant,
}

/// The message being reassembled from one peer, if any.
#[derive(Debug, Default)]
pub struct ReassemblyBuffer {
    /// The unfinished message.
    partial: Option<Partial>,
    /// Fragments that did not fit, and unfinished messages abandoned (for
    /// [`crate::proto::LinkCounters`]).
    discarded: u64,
}

impl ReassemblyBuffer {
    /// Takes the next fragment. Index 0 starts a message (abandoning an unfinished one); a
    /// piece that does not continue the message being reassembled drops both. Returns the
    /// message once its last piece is in, if it is valid UTF-8.
    pub fn push(&mut self, now: Instant, piece: Piece) -> Option<Whole> {
        if piece.index == 0 {
            self.abandon();
            self.partial = Some(Partial {
                msg: piece.msg,
                style: piece.style,
                count: piece.count,
                data: Vec::new(),
                next: 0,
                last_progress: now,
            });
        }
        let fits = self.partial.as_ref().is_some_and(|p| {
            p.msg == piece.msg
                && p.count == piece.count
                && p.next == piece.index
                && p.data.len() + piece.data.len() <= MAX_MESSAGE_BYTES
        });
        if !fits {
            self.discarded += 1;
            self.partial = None;
            return None;
        }
        let p = self.partial.as_mut()?;
        p.data.extend_from_slice(&piece.data);
        p.next += 1;
        p.last_progress = now;
        if p.next < p.count {
            return None;
        }
        let p = self.partial.take()?;
        match String::from_utf8(p.data) {
            Ok(text) => Some(Whole {
                msg: p.msg,
                style: p.style,
                age_ms: piece.age_ms,
                text,
            }),
            Err(_) => {
                self.discarded += 1;
                None
            }
        }
    }

    /// Drops the unfinished message, if any (a whole message came in its place), counting it.
    pub fn abandon(&mut self) {
        if self.partial.take().is_some() {
            self.discarded += 1;
        }
    }

    /// Drops the unfinished message without counting it: the peer restarted, so its stream
    /// (and this message with it) starts again.
    pub fn clear(&mut self) {
        self.partial = None;
    }

    /// When an unfinished message would time out (see [`ReassemblyBuffer::expire`]).
    pub fn deadline(&self) -> Option<Instant> {
        self.partial
            .as_ref()
            .map(|p| p.last_progress + REASSEMBLY_TIMEOUT)
    }

    /// Drops an unfinished message that made no progress for [`REASSEMBLY_TIMEOUT`]. Only for
    /// a peer that has left: while it is here, its ordered stream must complete the message,
    /// and dropping the pieces already acknowledged would lose it silently.
    pub fn expire(&mut self, now: Instant) {
        if self.deadline().is_some_and(|d| d <= now) {
            self.abandon();
        }
    }

    /// Fragments and messages discarded since the start.
    pub fn discarded(&self) -> u64 {
        self.discarded
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn piece(msg: u64, index: u16, count: u16, data: &[u8]) -> Piece {
        Piece {
            msg: MessageId(msg),
            style: Style {
                direct: true,
                flags: 0,
            },
            age_ms: u64::from(index),
            index,
            count,
            data: data.to_vec(),
        }
    }

    #[test]
    fn pieces_in_order_make_the_message() {
        let now = Instant::now();
        let mut r = ReassemblyBuffer::default();
        assert_eq!(r.push(now, piece(1, 0, 3, "hé".as_bytes())), None);
        // A piece may split a character: "é" is 0xc3 0xa9.
        assert_eq!(r.push(now, piece(1, 1, 3, &[b'l', 0xc3])), None);
        let whole = r.push(now, piece(1, 2, 3, &[0xa9, b'!'])).unwrap();
        assert_eq!(whole.text, "hélé!");
        assert_eq!((whole.msg, whole.style.direct), (MessageId(1), true));
        assert_eq!(whole.age_ms, 2, "the age the last piece gave");
        assert_eq!(r.deadline(), None);
        assert_eq!(r.discarded(), 0);
    }

    #[test]
    fn a_piece_that_does_not_continue_the_message_drops_it() {
        let now = Instant::now();
        for wrong in [
            piece(1, 2, 3, b"c"), // skips index 1
            piece(2, 1, 3, b"b"), // another message
            piece(1, 1, 4, b"b"), // another count
        ] {
            let mut r = ReassemblyBuffer::default();
            r.push(now, piece(1, 0, 3, b"a"));
            assert_eq!(r.push(now, wrong.clone()), None, "{wrong:?}");
            assert_eq!(r.discarded(), 1);
            assert_eq!(
                r.push(now, piece(1, 2, 3, b"c")),
                None,
                "nothing left to finish"
            );
            assert_eq!(r.discarded(), 2);
        }
    }

    #[test]
    fn a_new_first_piece_or_a_whole_message_abandons_the_unfinished_one() {
        let now = Instant::now();
        let mut r = ReassemblyBuffer::default();
        r.push(now, piece(1, 0, 2, b"a"));
        r.push(now, piece(2, 0, 2, b"x"));
        assert_eq!(r.discarded(), 1);
        assert_eq!(r.push(now, piece(2, 1, 2, b"y")).unwrap().text, "xy");
        r.push(now, piece(3, 0, 2, b"a"));
        r.abandon();
        assert_eq!(r.discarded(), 2);
        r.abandon();
        assert_eq!(r.discarded(), 2, "nothing to abandon");
    }

    #[test]
    fn invalid_utf8_is_dropped_and_counted() {
        let now = Instant::now();
        let mut r = ReassemblyBuffer::default();
        r.push(now, piece(1, 0, 2, &[0xff]));
        assert_eq!(r.push(now, piece(1, 1, 2, &[0xfe])), None);
        assert_eq!(r.discarded(), 1);
    }

    #[test]
    fn an_unfinished_message_expires_without_progress() {
        let now = Instant::now();
        let mut r = ReassemblyBuffer::default();
        r.push(now, piece(1, 0, 3, b"a"));
        let later = now + REASSEMBLY_TIMEOUT / 2;
        r.push(later, piece(1, 1, 3, b"b"));
        assert_eq!(r.deadline(), Some(later + REASSEMBLY_TIMEOUT));
        r.expire(now + REASSEMBLY_TIMEOUT);
        assert!(r.deadline().is_some(), "progress moved the deadline");
        r.expire(later + REASSEMBLY_TIMEOUT);
        assert_eq!(r.deadline(), None);
        assert_eq!(r.discarded(), 1);
        r.clear();
        assert_eq!(r.discarded(), 1);
    }

    #[test]
    fn a_message_cannot_grow_past_the_largest_allowed() {
        let now = Instant::now();
        let mut r = ReassemblyBuffer::default();
        let big = vec![b'x'; 1000];
        let count = u16::try_from(MAX_MESSAGE_BYTES / 1000 + 2).unwrap();
        let mut whole = None;
        for i in 0..count {
            whole = r.push(now, piece(1, i, count, &big));
        }
        assert_eq!(whole, None);
        assert_eq!(
            r.discarded(),
            2,
            "the piece past the limit, and the one after it"
        );
    }
}
