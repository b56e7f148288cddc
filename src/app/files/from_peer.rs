//! What a peer does to file transfers: when it joins or comes back, unfinished offers to it
//! go out again and fetches from it resume; each control message it sends (offer, accept,
//! resume, decline, cancel, done) moves one transfer on.

use super::{new_transfer, now_ms, seconds, Files, Transfer};
use crate::proto::{AppDataError, Endpoint, PeerId};
use crate::transfer::control::{self, Control, ControlError, Offer};
use crate::transfer::human_size;
use crate::transfer::manifest;
use crate::transfer::record::{Record, State};
use crate::transfer::TransferKey;

/// Offers from one peer that may be open at once (waiting for an answer, or accepted and not
/// finished); more are refused, with a Cancel saying why, so that a peer cannot fill our
/// memory, screen or disk with offers.
pub(super) const OPEN_FROM_PEER: usize = 100;
/// Offers that may be open at once from all peers together.
const OPEN_IN_ALL: usize = 1000;
/// Offers from one peer that ended without being accepted (declined, refused, cancelled)
/// kept in memory to answer their repeats; older ones are forgotten (they are not on disk).
const UNTAKEN_KEPT_PER_PEER: usize = 200;

impl Files {
    /// `peer` is forgotten (`/forget`, `forget_after`, or a script that left for good): its
    /// unfinished transfers end now, with a line each, rather than wait for ever.
    pub fn on_peer_forgotten(&mut self, ep: &mut Endpoint, peer: PeerId, nick: &str) {
        self.on_peer_gone_for_good(ep, peer, nick, "is forgotten");
    }

    /// An ephemeral peer left: it never comes back (it is forgotten in a moment, and a script
    /// that stops forgets it at once), so its transfers end now rather than waiting for it —
    /// an offer it made would otherwise stay "waiting for you", and an `/accept` of it leave
    /// an empty `.part` behind.
    pub fn on_ephemeral_left(&mut self, ep: &mut Endpoint, peer: PeerId, nick: &str) {
        self.on_peer_gone_for_good(ep, peer, nick, "left for good (an ephemeral peer)");
    }

    /// [`Files::on_peer_forgotten`], saying why with `how` (`bob {how}`).
    fn on_peer_gone_for_good(&mut self, ep: &mut Endpoint, peer: PeerId, nick: &str, how: &str) {
        let nick = crate::ui::render::display_nick(nick);
        for key in self.unfinished_with(peer) {
            let t = &self.transfers[&key];
            let (name, dir) = (t.shown_name(), t.toward());
            let why =
                format!("{name} ({dir} {nick}) stopped: {nick} {how}, nothing more will come");
            self.finish(ep, key, State::Failed, Some(why));
        }
        // Its offers never taken were kept only to answer a repeat, which a forgotten peer
        // cannot send: without this, identities that come and go would each leave up to
        // [`UNTAKEN_KEPT_PER_PEER`] records behind for the rest of the run.
        self.transfers
            .retain(|_, t| !(t.peer() == peer && untaken(t)));
    }

    /// The transfers with `peer` that have not ended.
    fn unfinished_with(&self, peer: PeerId) -> Vec<TransferKey> {
        self.transfers
            .values()
            .filter(|t| t.peer() == peer && !t.record.state.is_finished())
            .map(Transfer::key)
            .collect()
    }

    /// A peer stopped answering or left (`why`, as chat says it). A transfer to it that had
    /// sent everything, its data connection ended and the receiver's check not yet come,
    /// saw no connection break: it is said to be interrupted now, once, as any other would be
    /// (and "resumed" when the receiver connects again).
    pub fn on_peer_gone(&mut self, ep: &Endpoint, peer: PeerId, why: &str) {
        let mut lines = Vec::new();
        for key in self.unfinished_with(peer) {
            let Some(t) = self.transfers.get_mut(&key) else {
                continue;
            };
            let waiting = t.record.outgoing
                && t.record.state == State::Accepted
                && t.serving == 0
                && t.started.is_some()
                && !t.paused_by_peer;
            if !waiting || t.told_interrupted || t.interrupt_pending {
                continue;
            }
            t.told_interrupted = true;
            let (name, nick, pct) = (t.shown_name(), Self::nick(ep, t), t.percent_done());
            lines.push(format!(
                "{name} to {nick}: interrupted at {pct}% ({why}) before {nick} confirmed it; it resumes when {nick} connects again"
            ));
        }
        for line in lines {
            self.notice(line);
        }
    }

    /// A peer joined (or came back): offers to it go out again, and fetches from it resume.
    pub fn on_peer_back(&mut self, ep: &mut Endpoint, peer: PeerId) {
        for key in self.unfinished_with(peer) {
            let t = &self.transfers[&key];
            if t.record.outgoing {
                if let Some(offer) = t.offer.clone() {
                    if let Err(e @ AppDataError::Unsupported) =
                        Self::control(ep, peer, &Control::Offer(offer))
                    {
                        self.refused_by_peer(ep, key, e);
                    }
                }
            } else if t.record.state == State::Accepted && t.paused {
                // Paused for lack of space: it is told again (it may have restarted since).
                let _ = Self::control(ep, peer, &t.pause());
            } else if t.record.state == State::Accepted && t.fetching.is_none() {
                let _ = Self::control(
                    ep,
                    peer,
                    &Control::Resume {
                        id: key.id,
                        file: t.record.files_done,
                        offset: 0,
                    },
                );
                self.start_fetch(ep, key);
            }
        }
    }

    /// A payload from a peer: a control message, done. `went_by` says which identities our
    /// journal recorded under a nick at some time (see [`Self::accepted_from`]); asked only
    /// for an offer.
    pub fn on_app_data(
        &mut self,
        ep: &mut Endpoint,
        from: PeerId,
        data: &[u8],
        went_by: &dyn Fn(&str) -> Vec<PeerId>,
    ) {
        let c = match control::decode(data) {
            Ok(c) => c,
            Err(ControlError::OtherTag) => return,
            Err(ControlError::Malformed) => {
                // Once per peer and run: a peer (hostile, or of another version) sending
                // many is not shown many times.
                if !self.told_malformed.insert(from) {
                    return;
                }
                let nick = ep.nick_of(from).unwrap_or("?").to_owned();
                return self.notice(format!(
                    "{} sent a malformed file-transfer message: ignored",
                    crate::ui::render::display_nick(&nick)
                ));
            }
        };
        let mine = TransferKey {
            offerer: self.me,
            id: c.id(),
        };
        let theirs = TransferKey {
            offerer: from,
            id: c.id(),
        };
        match c {
            Control::Offer(offer) => self.on_offer(ep, from, offer, went_by),
            Control::Cancel {
                by_offerer, reason, ..
            } => {
                let key = if by_offerer { theirs } else { mine };
                let Some(t) = self
                    .transfers
                    .get(&key)
                    .filter(|t| t.peer() == from && !t.record.state.is_finished())
                else {
                    return;
                };
                let (nick, name) = (Self::nick(ep, t), t.shown_name());
                let reason = crate::ui::render::sanitize(&reason);
                let line = if reason.is_empty() {
                    format!("{nick} cancelled {name}")
                } else {
                    format!("{nick} stopped {name}: {reason}")
                };
                self.finish_remote(ep, key, State::Cancelled, line);
            }
            other => {
                if matches!(other, Control::Accept { .. } | Control::Resume { .. }) {
                    // For a transfer not ours (any more: its record was lost or damaged, or
                    // it ended long ago) or ended on our side while the receiver was away:
                    // said, or the receiver would try our data port for ever. (Not our own
                    // line as the reason: it may name our folders.)
                    let ended = match self.transfers.get(&mine).filter(|t| t.peer() == from) {
                        None => Some("it is no longer offered (the sender has no record of it)"),
                        Some(t) if t.record.state == State::Failed => {
                            Some("it ended on the sender's side (it failed there)")
                        }
                        // By either side: a receiver that cancelled, then accepted after all.
                        Some(t) if t.record.state == State::Cancelled => {
                            Some("it was cancelled already")
                        }
                        Some(_) => None,
                    };
                    if let Some(why) = ended {
                        let reason = format!("{why}: ask for it to be sent again");
                        let cancel = Control::Cancel {
                            id: mine.id,
                            by_offerer: true,
                            reason,
                        };
                        let _ = Self::control(ep, from, &cancel);
                        return;
                    }
                }
                let Some(t) = self.transfers.get_mut(&mine).filter(|t| t.peer() == from) else {
                    return;
                };
                if t.record.state.is_finished() {
                    return;
                }
                let nick = Self::nick(ep, t);
                let name = t.shown_name();
                match other {
                    Control::Accept { .. } if t.record.state == State::Offered => {
                        t.record.state = State::Accepted;
                        self.save(mine);
                        self.event(ep, mine, "accepted", format!("{nick} accepted {name}"));
                    }
                    Control::Resume { .. } if t.record.state == State::Offered => {
                        // Its Accept was missed (we restarted before it came): the same line.
                        t.record.state = State::Accepted;
                        self.save(mine);
                        self.event(ep, mine, "accepted", format!("{nick} accepted {name}"));
                    }
                    Control::Decline { .. } => {
                        self.finish_remote(
                            ep,
                            mine,
                            State::Declined,
                            format!("{nick} declined {name}"),
                        );
                    }
                    Control::Done { .. } => self.sent_done(ep, mine),
                    // Once per pause: a peer repeating it is not shown again (data moving
                    // again ends the pause).
                    Control::Pause { at, reason, .. }
                        if t.record.state == State::Accepted && !t.paused_by_peer =>
                    {
                        // Said instead of "interrupted": the receiver stopped on purpose,
                        // and the line when it goes again says where from.
                        t.told_interrupted = true;
                        t.paused_by_peer = true;
                        // Where it will resume (a lying peer's `at` moves nothing but this
                        // line and /files; a restarted sender knows no better).
                        t.record.bytes_done = at.min(t.record.offer.size);
                        // The reference pauses for a full disk, or (it keeps trying) when it
                        // cannot reach our data port: what happens next is said accordingly.
                        let reason = crate::ui::render::sanitize(&reason);
                        let next = if reason == PAUSED_FULL {
                            format!("it goes on when {nick} has made room")
                        } else {
                            format!("{nick} keeps trying")
                        };
                        let line = format!(
                            "{nick} paused {name} at {}%: {reason} — {next}",
                            t.percent_done(),
                        );
                        self.event(ep, mine, "paused", line);
                    }
                    _ => {}
                }
            }
        }
    }

    /// An offer from `from`: a new one is shown (or accepted, for `accept_from`); a known one
    /// updates the port and resumes, or is answered with how it ended.
    fn on_offer(
        &mut self,
        ep: &mut Endpoint,
        from: PeerId,
        offer: Offer,
        went_by: &dyn Fn(&str) -> Vec<PeerId>,
    ) {
        let key = TransferKey {
            offerer: from,
            id: offer.id,
        };
        let nick = Self::nick_of(ep, from);
        if let Some(t) = self.transfers.get_mut(&key) {
            let answer = match t.record.state {
                State::Done => Some(Control::Done { id: key.id }),
                State::Declined => Some(Control::Decline { id: key.id }),
                State::Cancelled | State::Failed => Some(Control::Cancel {
                    id: key.id,
                    by_offerer: false,
                    reason: t
                        .record
                        .reason
                        .clone()
                        .unwrap_or_else(|| "cancelled".into()),
                }),
                State::Offered | State::Accepted => None,
            };
            if let Some(answer) = answer {
                let _ = Self::control(ep, from, &answer);
                return;
            }
            let same = t
                .offer
                .as_ref()
                .is_some_and(|o| o.token == offer.token && o.manifest_hash == offer.manifest_hash);
            if !same {
                return; // an offer that changed under the same id: not trusted
            }
            // Only its port may change (the offerer restarted on another): the rest is the
            // offer as first made, whatever a repeat says.
            t.record.offer.port = offer.port;
            if let Some(o) = &mut t.offer {
                o.port = offer.port;
            }
            self.save(key);
            self.start_fetch(ep, key);
            return;
        }
        if self.too_many_offers(ep, from, offer.id) {
            return;
        }
        self.forget_untaken(from);
        let number = self.number();
        let nick_then = ep.nick_of(from).unwrap_or("?").to_owned();
        let record = Record::offered(from.0, from.0, nick_then, false, &offer, now_ms());
        let t = new_transfer(number, record, Some(offer.clone()), None);
        let (name, size) = (t.shown_name(), t.shown_size());
        self.transfers.insert(key, t);
        if let Some(why) = unacceptable(&offer) {
            let why = format!("{nick} offered {name} {why}: refused");
            self.finish(ep, key, State::Failed, Some(why));
            return;
        }
        match self.accepted_from(ep, from, went_by) {
            // Said as it is: "accepted" only if it is, else why not and what to do.
            AcceptFrom::Yes => match self.accept_checks(key, None) {
                Ok(dir) => {
                    self.event(ep, key, "offer", format!(
                        "{nick} offers {name} ({size}) — accepted (accept_from)"
                    ));
                    if let Err(e) = self.accept_into(ep, key, &dir) {
                        self.error(e);
                    }
                }
                Err(why) => self.event(ep, key, "offer", format!(
                    "{nick} offers {name} ({size}) — accept_from would take it, but {why} (/decline {number} refuses it)"
                )),
            },
            AcceptFrom::Shared(listed, pinned) => self.event(ep, key, "offer", format!(
                "{nick} offers {name} ({size}) — not accepted by itself: another peer you know goes or went by {listed} (accept_from = [\"{pinned}\"] would name this one) — /accept {number} or /decline {number}"
            )),
            AcceptFrom::No => self.event(ep, key, "offer", format!(
                "{nick} offers {name} ({size}) — /accept {number} or /decline {number}"
            )),
        }
    }

    /// Whether a new offer `id` from `from` is one too many: [`OPEN_FROM_PEER`] of its offers,
    /// or [`OPEN_IN_ALL`] of everyone's, are open already. It is refused then, with a Cancel
    /// saying why, and the user is told once (until an offer from that peer is taken again).
    fn too_many_offers(&mut self, ep: &mut Endpoint, from: PeerId, id: u64) -> bool {
        let theirs = self.open_incoming().filter(|t| t.peer() == from).count();
        let all = self.open_incoming().count();
        if theirs < OPEN_FROM_PEER && all < OPEN_IN_ALL {
            // Told again only once half of them have ended: a peer at the limit that ends one
            // and offers two, over and over, is not told every time.
            if theirs < OPEN_FROM_PEER / 2 {
                self.told_too_many.remove(&from);
            }
            return false;
        }
        let reason = if theirs >= OPEN_FROM_PEER {
            format!("{theirs} of your offers are open here already: offer it again once some have ended")
        } else {
            format!("{all} offers are open here already: offer it again later")
        };
        let _ = Self::control(
            ep,
            from,
            &Control::Cancel {
                id,
                by_offerer: false,
                reason: reason.clone(),
            },
        );
        if self.told_too_many.insert(from) {
            let nick = Self::nick_of(ep, from);
            self.notice(if theirs >= OPEN_FROM_PEER {
                format!("{nick} has {theirs} offers open here (waiting for you, or being received): more are refused and not shown, and {nick} is told so")
            } else {
                format!("{all} offers are open here (waiting for you, or being received): more are refused and not shown, and their senders are told so")
            });
        }
        true
    }

    /// Forgets the oldest offers from `from` that ended without being accepted, beyond
    /// [`UNTAKEN_KEPT_PER_PEER`]: they are kept in memory only, to answer a repeat.
    fn forget_untaken(&mut self, from: PeerId) {
        let mut untaken: Vec<(u32, TransferKey)> = self
            .transfers
            .values()
            .filter(|t| t.peer() == from && untaken(t))
            .map(|t| (t.number, t.key()))
            .collect();
        let over = (untaken.len() + 1).saturating_sub(UNTAKEN_KEPT_PER_PEER);
        untaken.sort_unstable();
        for (_, key) in untaken.into_iter().take(over) {
            self.transfers.remove(&key);
        }
    }

    /// Whether `accept_from` takes offers from `from`: an entry `NICK#IDPREFIX` names one
    /// identity; a bare nick is not proof, so it counts only while no other peer we know (or
    /// we) goes by it, and no other identity ever went by it in our journal (`went_by`: the
    /// bob we accepted renamed, and someone else took "bob").
    fn accepted_from(
        &self,
        ep: &Endpoint,
        from: PeerId,
        went_by: &dyn Fn(&str) -> Vec<PeerId>,
    ) -> AcceptFrom {
        let Some(nick) = ep.nick_of(from) else {
            return AcceptFrom::No;
        };
        let id = from.to_string();
        let list = &self.setup.accept_from;
        if list
            .iter()
            .any(|n| pinned(n) && crate::app::lookup::by_id_prefix(n, nick, &id))
        {
            return AcceptFrom::Yes;
        }
        if !list.iter().any(|n| n == nick) {
            return AcceptFrom::No;
        }
        let shared = nick == ep.nick()
            || ep.peers().iter().any(|p| p.id != from && p.nick == nick)
            || went_by(nick).iter().any(|id| *id != from);
        if shared {
            // The whole id: a prefix an impostor could grind a key for is no proof.
            let pinned = format!("{nick}#{id}");
            AcceptFrom::Shared(crate::ui::render::display_nick(nick), pinned)
        } else {
            AcceptFrom::Yes
        }
    }

    /// The receiver says everything arrived and matched: the sender's end line.
    pub(super) fn sent_done(&mut self, ep: &mut Endpoint, key: TransferKey) {
        let Some(t) = self.transfers.get_mut(&key) else {
            return;
        };
        if t.serving > 0 {
            // Its last bytes were read before our thread said it ended: its figures come
            // with that report, and so does this line.
            t.done_waiting = true;
            return;
        }
        let took = t.stop_clock();
        let resumed = t.resumed("sent");
        let size = t.record.offer.size;
        let line = match t.last_connection {
            // Nothing served in this run: an earlier one sent it, or the receiver had it.
            None => format!(
                "{} says {} arrived whole ({}); none of it was sent in this run (an earlier run sent it, or they had it)",
                Self::nick(ep, t),
                t.shown_name(),
                t.shown_size()
            ),
            // Each connection serves from where the receiver has it to the end: when none
            // reached the end, a "done" is a receiver that says more than it was sent.
            Some(_) if t.served_to < size => format!(
                "{} says {} arrived whole ({}), but only {} of it was sent",
                Self::nick(ep, t),
                t.shown_name(),
                t.shown_size(),
                human_size(t.served_to)
            ),
            Some(_) => format!(
                "sent {} to {} ({}{}{})",
                t.shown_name(),
                Self::nick(ep, t),
                t.shown_size(),
                took.map(|d| format!(" in {}", seconds(d)))
                    .unwrap_or_default(),
                resumed
            ),
        };
        t.record.bytes_done = t.record.offer.size;
        self.finish(ep, key, State::Done, None);
        self.event(ep, key, "sent", line);
    }
}

/// Why an offer is refused before it is shown, if it is: past the limits every receiver keeps
/// (spec §13.2), or a single file that says it is several.
fn unacceptable(offer: &Offer) -> Option<String> {
    if offer.files as usize > manifest::MAX_FILES {
        Some(format!(
            "with {} files (at most {} are taken)",
            offer.files,
            manifest::MAX_FILES
        ))
    } else if offer.manifest_len > manifest::MAX_MANIFEST_BYTES {
        Some(format!(
            "with a file list of {} bytes (at most {} are taken)",
            offer.manifest_len,
            manifest::MAX_MANIFEST_BYTES
        ))
    } else if !offer.folder && offer.files != 1 {
        Some(format!(
            "as a single file made of {} files (a broken offer)",
            offer.files
        ))
    } else {
        None
    }
}

/// What `accept_from` says of an offer's sender.
enum AcceptFrom {
    /// Listed: accepted without asking.
    Yes,
    /// Listed by a nick that another peer also goes by (shown here): asked, as unlisted;
    /// with the entry that would name this peer alone.
    Shared(String, String),
    /// Not listed.
    No,
}

/// The reason a receiver gives in a Pause for a full disk.
pub(super) const PAUSED_FULL: &str = "the disk is full";

/// The fewest hex digits of an id an `accept_from` entry `NICK#ID` must give to name one
/// identity (with fewer the config file is refused at start, see [`super::check_accept_from`]).
pub(super) const PIN_DIGITS: usize = 8;

/// Whether `entry` is `NICK#ID` with at least [`PIN_DIGITS`] hex digits.
pub(super) fn pinned(entry: &str) -> bool {
    entry.rsplit_once('#').is_some_and(|(nick, id)| {
        !nick.is_empty()
            && id.len() >= PIN_DIGITS
            && id.len() <= 16
            && id.bytes().all(|b| b.is_ascii_hexdigit())
    })
}

/// An offer to us that ended without being accepted: kept in memory only (never on disk), to
/// answer a repeat.
fn untaken(t: &Transfer) -> bool {
    !t.record.outgoing && t.record.dest.is_none() && t.record.state.is_finished()
}
