//! Which peers cost a record: a stranger — a peer that contacted us, announced itself or was
//! passed on by another, and has exchanged no message with us — is not written to the journal
//! until it becomes a real peer. Otherwise every identity a hostile sender makes up, admitted a
//! few a second, would cost a [`Record::Peer`] on disk.
//!
//! A peer is real once the journal holds any record of it (from an earlier run), once it was
//! added by hand (`--peer`, `/add`: its `Peer` record says `manual`), once we hear a message
//! from it, once we send it one, or once the user offers it a file or accepts one from it
//! ([`Admission::make_real`]: a transfer resumes after a restart only if the peer is found).
//! `accept_from` accepts by nick, so an identity that takes a listed nick is kept like one the
//! user accepted: one record each, bounded by compaction, beside the transfer it starts. Until then its latest `Peer` record is held in memory (for
//! at most [`MAX_HELD`] strangers) and written just before the record that makes it real.

use super::view::RecordView;
use super::Record;
use crate::proto::PeerId;
use std::collections::{BTreeMap, BTreeSet};

/// The most strangers whose `Peer` record is held; past it, the lowest id's is forgotten.
pub const MAX_HELD: usize = 1024;

/// The peers the journal records, and the strangers it does not yet.
#[derive(Debug, Default)]
pub(super) struct Admission {
    /// Peers the journal has a record of, or that became real in this run.
    real: BTreeSet<PeerId>,
    /// The latest `Peer` record of each stranger, written if it becomes real.
    held: BTreeMap<PeerId, Record>,
}

impl Admission {
    /// Notes a record read from the file: the peers it names are real.
    pub(super) fn note(&mut self, record: &RecordView<'_>) {
        match record {
            RecordView::Peer { id, .. } => {
                self.real.insert(*id);
            }
            RecordView::Heard { from, .. } | RecordView::Received { from, .. } => {
                self.real.insert(*from);
            }
            RecordView::Said { recipients, .. } => self.real.extend(recipients.iter().copied()),
            _ => {}
        }
    }

    /// Makes `p` a real peer. `Some` (its held `Peer` record, if any) when it was not one:
    /// then how to reach it is to be written now.
    pub(super) fn make_real(&mut self, p: PeerId) -> Option<Option<Record>> {
        let held = self.held.remove(&p);
        self.real.insert(p).then_some(held)
    }

    /// What appending `record` writes: first the held records of the peers it makes real, then
    /// itself (`true`), or nothing at all (`false`: a stranger's `Peer` record, now held).
    pub(super) fn admit(&mut self, record: &Record) -> (Vec<Record>, bool) {
        let mut before = Vec::new();
        let mut make_real = |p: PeerId, this: &mut Self| {
            if this.real.insert(p) {
                before.extend(this.held.remove(&p));
            }
        };
        match record {
            Record::Peer { id, manual, .. } => {
                if *manual || self.real.contains(id) {
                    self.held.remove(id);
                    self.real.insert(*id);
                } else {
                    self.held.insert(*id, record.clone());
                    if self.held.len() > MAX_HELD {
                        self.held.pop_first();
                    }
                    return (before, false);
                }
            }
            Record::Heard { from, .. } => make_real(*from, self),
            Record::Said {
                recipients,
                direct_to,
                ..
            } => {
                for p in recipients.iter().chain(direct_to) {
                    make_real(*p, self);
                }
            }
            _ => {}
        }
        (before, true)
    }
}
