//! [`RecordView`]: a record as read, borrowing its text from the bytes of the file. Opening a
//! journal, compacting it and reading history look at every record but keep few, so they
//! decode into this and make an owned [`Record`] only of what they keep.
//!
//! Its variants and fields mirror [`Record`]'s exactly, in the same order (postcard numbers
//! variants by position): a test decodes one record of every kind both ways. Strings are taken
//! as the bytes postcard stores them as (a length, then UTF-8), unchecked: opening a large
//! journal need not validate every message's text, and one made into an owned string is
//! converted then (any invalid sequence, which only damage can put there, replaced).

use super::addrs;
use super::Record;
use crate::proto::{PeerId, PublicKey};
use serde::Deserialize;
use std::net::SocketAddr;

/// A [`Record`] whose strings borrow from the payload it was decoded from.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub(super) enum RecordView<'a> {
    /// See [`Record::Said`].
    Said {
        /// When it was sent.
        at_ms: i64,
        /// Its message id.
        id: u64,
        /// Our nick then.
        nick: &'a [u8],
        /// The peer it was for, if direct.
        direct_to: Option<PeerId>,
        /// Whose delivery we wait for.
        recipients: Vec<PeerId>,
        /// What we wrote.
        text: &'a [u8],
        /// An action.
        action: bool,
    },
    /// See [`Record::Heard`].
    Heard {
        /// When it arrived.
        at_ms: i64,
        /// Who wrote it.
        from: PeerId,
        /// Their nick then.
        nick: &'a [u8],
        /// Its id in the sender's numbering.
        id: u64,
        /// Whether it was a direct message.
        direct: bool,
        /// What they wrote.
        text: &'a [u8],
        /// An action.
        action: bool,
        /// When it was written, by our clock.
        written_ms: i64,
    },
    /// See [`Record::Delivered`].
    Delivered {
        /// The recipient.
        to: PeerId,
        /// Our message id.
        id: u64,
    },
    /// See [`Record::Dropped`].
    Dropped {
        /// The recipient.
        to: PeerId,
        /// Our message id.
        id: u64,
    },
    /// See [`Record::Peer`].
    Peer {
        /// The peer.
        id: PeerId,
        /// Its nick.
        nick: &'a [u8],
        /// Its addresses.
        #[serde(deserialize_with = "addrs::deserialize")]
        addrs: Vec<SocketAddr>,
        /// Added by hand.
        manual: bool,
        /// When last heard (0: not known).
        heard_ms: i64,
        /// Its pinned key.
        key: Option<PublicKey>,
    },
    /// See [`Record::Opened`].
    Opened {
        /// When.
        at_ms: i64,
        /// The run's session number.
        session: u64,
        /// Our nick at the start.
        nick: &'a [u8],
    },
    /// See [`Record::Shown`].
    Shown {
        /// The sender.
        from: PeerId,
        /// The highest of its ids shown.
        id: u64,
    },
    /// See [`Record::Received`].
    Received {
        /// The sender.
        from: PeerId,
        /// The highest of its ids heard.
        through: u64,
    },
    /// See [`Record::Compacted`].
    Compacted {
        /// When.
        at_ms: i64,
        /// Our next message id then.
        next_msg: u64,
    },
    /// See [`Record::Forgot`].
    Forgot {
        /// The peer.
        peer: PeerId,
        /// When.
        at_ms: i64,
    },
    /// See [`Record::Away`].
    Away {
        /// Why, or `None` for back.
        reason: Option<&'a [u8]>,
    },
}

/// The layout of `Said`, `Heard` and `Peer` before they gained their last fields, tried when a
/// record does not decode as the current layout (the kinds between them have not changed).
#[derive(Deserialize)]
enum OlderView<'a> {
    /// `Said` without `action`.
    Said {
        /// When it was sent.
        at_ms: i64,
        /// Its message id.
        id: u64,
        /// Our nick then.
        nick: &'a [u8],
        /// The peer it was for, if direct.
        direct_to: Option<PeerId>,
        /// Whose delivery we wait for.
        recipients: Vec<PeerId>,
        /// What we wrote.
        text: &'a [u8],
    },
    /// `Heard` without `action` and `written_ms`.
    Heard {
        /// When it arrived.
        at_ms: i64,
        /// Who wrote it.
        from: PeerId,
        /// Their nick then.
        nick: &'a [u8],
        /// Its id in the sender's numbering.
        id: u64,
        /// Whether it was a direct message.
        direct: bool,
        /// What they wrote.
        text: &'a [u8],
    },
    /// As [`RecordView::Delivered`] (unchanged: here to keep the positions).
    Delivered {
        /// The recipient.
        to: PeerId,
        /// Our message id.
        id: u64,
    },
    /// As [`RecordView::Dropped`] (unchanged).
    Dropped {
        /// The recipient.
        to: PeerId,
        /// Our message id.
        id: u64,
    },
    /// `Peer` without `heard_ms`.
    Peer {
        /// The peer.
        id: PeerId,
        /// Its nick.
        nick: &'a [u8],
        /// Its addresses.
        #[serde(deserialize_with = "addrs::deserialize")]
        addrs: Vec<SocketAddr>,
        /// Added by hand.
        manual: bool,
    },
}

impl<'a> From<OlderView<'a>> for RecordView<'a> {
    fn from(old: OlderView<'a>) -> Self {
        match old {
            OlderView::Said {
                at_ms,
                id,
                nick,
                direct_to,
                recipients,
                text,
            } => RecordView::Said {
                at_ms,
                id,
                nick,
                direct_to,
                recipients,
                text,
                action: false,
            },
            OlderView::Heard {
                at_ms,
                from,
                nick,
                id,
                direct,
                text,
            } => RecordView::Heard {
                at_ms,
                from,
                nick,
                id,
                direct,
                text,
                action: false,
                written_ms: at_ms,
            },
            OlderView::Delivered { to, id } => RecordView::Delivered { to, id },
            OlderView::Dropped { to, id } => RecordView::Dropped { to, id },
            OlderView::Peer {
                id,
                nick,
                addrs,
                manual,
            } => RecordView::Peer {
                id,
                nick,
                addrs,
                manual,
                heard_ms: 0,
                key: None,
            },
        }
    }
}

impl RecordView<'_> {
    /// The peer this record names and what it calls it, for a `Heard` or `Peer` record.
    pub(super) fn name(&self) -> Option<(PeerId, &[u8])> {
        match self {
            RecordView::Heard { from: id, nick, .. } | RecordView::Peer { id, nick, .. } => {
                Some((*id, nick))
            }
            _ => None,
        }
    }

    /// The owned record.
    pub(super) fn to_record(&self) -> Record {
        match self.clone() {
            RecordView::Said {
                at_ms,
                id,
                nick,
                direct_to,
                recipients,
                text,
                action,
            } => Record::Said {
                at_ms,
                id,
                nick: string(nick),
                direct_to,
                recipients,
                text: string(text),
                action,
            },
            RecordView::Heard {
                at_ms,
                from,
                nick,
                id,
                direct,
                text,
                action,
                written_ms,
            } => Record::Heard {
                at_ms,
                from,
                nick: string(nick),
                id,
                direct,
                text: string(text),
                action,
                written_ms,
            },
            RecordView::Delivered { to, id } => Record::Delivered { to, id },
            RecordView::Dropped { to, id } => Record::Dropped { to, id },
            RecordView::Peer {
                id,
                nick,
                addrs,
                manual,
                heard_ms,
                key,
            } => Record::Peer {
                id,
                nick: string(nick),
                addrs,
                manual,
                heard_ms,
                key,
            },
            RecordView::Opened {
                at_ms,
                session,
                nick,
            } => Record::Opened {
                at_ms,
                session,
                nick: string(nick),
            },
            RecordView::Shown { from, id } => Record::Shown { from, id },
            RecordView::Received { from, through } => Record::Received { from, through },
            RecordView::Compacted { at_ms, next_msg } => Record::Compacted { at_ms, next_msg },
            RecordView::Forgot { peer, at_ms } => Record::Forgot { peer, at_ms },
            RecordView::Away { reason } => Record::Away {
                reason: reason.map(string),
            },
        }
    }
}

/// Stored text as a string.
pub(super) fn string(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `payload` decoded as a view; `Err` with the reason when this version cannot decode it.
pub(super) fn decode(payload: &[u8]) -> Result<RecordView<'_>, String> {
    match postcard::take_from_bytes::<RecordView<'_>>(payload) {
        Ok((view, [])) => Ok(view),
        // A `Said` or `Heard` of the older layout is cut short as the newer one.
        _ if matches!(
            postcard::take_from_bytes::<OlderView<'_>>(payload),
            Ok((_, []))
        ) =>
        {
            postcard::from_bytes::<OlderView<'_>>(payload)
                .map(RecordView::from)
                .map_err(|e| e.to_string())
        }
        Ok((_, extra)) => Err(format!(
            "skipped a record with {} unexpected bytes after it",
            extra.len()
        )),
        // Whole and checksummed, so written on purpose: most likely a kind of record from a
        // newer tailchat. Kept in the file, skipped here.
        Err(e) => Err(format!("skipped a record this version cannot decode ({e})")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_view_decodes_every_kind_as_the_record_does() {
        let peer = PeerId(0xb0b);
        let records = [
            Record::Said {
                at_ms: -5,
                id: u64::MAX,
                nick: "".into(),
                direct_to: Some(peer),
                recipients: vec![peer, PeerId(1)],
                text: "ünïcødé ✓".into(),
                action: false,
            },
            Record::Said {
                at_ms: 1,
                id: 2,
                nick: "me".into(),
                direct_to: None,
                recipients: vec![],
                text: "".into(),
                action: true,
            },
            Record::Heard {
                at_ms: 3,
                from: peer,
                nick: "bob".into(),
                id: 4,
                direct: true,
                text: "hi".into(),
                action: true,
                written_ms: -180_000,
            },
            Record::Delivered { to: peer, id: 5 },
            Record::Dropped { to: peer, id: 6 },
            Record::Peer {
                id: peer,
                nick: "bob".into(),
                addrs: vec![
                    "192.0.2.1:7654".parse().unwrap(),
                    "[fe80::1%2]:7654".parse().unwrap(),
                ],
                manual: true,
                heard_ms: 1_700_000_000_000,
                key: Some(PublicKey([9; 32])),
            },
            Record::Opened {
                at_ms: 7,
                session: 8,
                nick: "alice".into(),
            },
            Record::Shown { from: peer, id: 9 },
            Record::Received {
                from: peer,
                through: 10,
            },
            Record::Compacted {
                at_ms: 11,
                next_msg: 12,
            },
            Record::Forgot { peer, at_ms: 13 },
            Record::Away {
                reason: Some("lunch".into()),
            },
            Record::Away { reason: None },
        ];
        let mut kinds = std::collections::BTreeSet::new();
        for r in records {
            kinds.insert(kind(&r));
            let payload = postcard::to_allocvec(&r).unwrap();
            assert_eq!(decode(&payload).unwrap().to_record(), r);
        }
        assert_eq!(kinds.len(), 11, "one of every kind");
    }

    /// The variant's position: a new kind of record fails to compile here until it is added
    /// to the view and to the test above.
    fn kind(r: &Record) -> usize {
        match r {
            Record::Said { .. } => 0,
            Record::Heard { .. } => 1,
            Record::Delivered { .. } => 2,
            Record::Dropped { .. } => 3,
            Record::Peer { .. } => 4,
            Record::Opened { .. } => 5,
            Record::Shown { .. } => 6,
            Record::Received { .. } => 7,
            Record::Compacted { .. } => 8,
            Record::Forgot { .. } => 9,
            Record::Away { .. } => 10,
        }
    }

    /// `Said`, `Heard` and `Peer` as a version before `action`, `written_ms` and `heard_ms`
    /// wrote them: read with the missing fields filled in.
    #[test]
    fn records_of_the_older_layout_are_read() {
        #[derive(serde::Serialize)]
        #[allow(dead_code)] // `Dropped` keeps the positions
        enum Older {
            Said {
                at_ms: i64,
                id: u64,
                nick: String,
                direct_to: Option<PeerId>,
                recipients: Vec<PeerId>,
                text: String,
            },
            Heard {
                at_ms: i64,
                from: PeerId,
                nick: String,
                id: u64,
                direct: bool,
                text: String,
            },
            Delivered {
                to: PeerId,
                id: u64,
            },
            Dropped {
                to: PeerId,
                id: u64,
            },
            Peer {
                id: PeerId,
                nick: String,
                #[serde(serialize_with = "super::addrs::serialize")]
                addrs: Vec<SocketAddr>,
                manual: bool,
            },
        }
        let peer = PeerId(7);
        let cases = [
            (
                Older::Said {
                    at_ms: 1,
                    id: 2,
                    nick: "me".into(),
                    direct_to: None,
                    recipients: vec![peer],
                    text: "hello".into(),
                },
                Record::Said {
                    at_ms: 1,
                    id: 2,
                    nick: "me".into(),
                    direct_to: None,
                    recipients: vec![peer],
                    text: "hello".into(),
                    action: false,
                },
            ),
            (
                Older::Heard {
                    at_ms: 3,
                    from: peer,
                    nick: "bob".into(),
                    id: 4,
                    direct: false,
                    text: "hi".into(),
                },
                Record::Heard {
                    at_ms: 3,
                    from: peer,
                    nick: "bob".into(),
                    id: 4,
                    direct: false,
                    text: "hi".into(),
                    action: false,
                    written_ms: 3,
                },
            ),
            (
                Older::Peer {
                    id: peer,
                    nick: "bob".into(),
                    addrs: vec!["192.0.2.1:7654".parse().unwrap()],
                    manual: false,
                },
                Record::Peer {
                    id: peer,
                    nick: "bob".into(),
                    addrs: vec!["192.0.2.1:7654".parse().unwrap()],
                    manual: false,
                    heard_ms: 0,
                    key: None,
                },
            ),
            (
                Older::Delivered { to: peer, id: 9 },
                Record::Delivered { to: peer, id: 9 },
            ),
        ];
        for (older, now) in cases {
            let payload = postcard::to_allocvec(&older).unwrap();
            assert_eq!(decode(&payload).unwrap().to_record(), now);
        }
    }
}
