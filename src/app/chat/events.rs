//! What the core's events become: first journal records (appended and synced before any
//! datagram leaves), then lines on screen and JSON for programs; file transfers' reports.

use super::mentions;
use super::Chat;
use super::{DISCOVERY_QUIET, KNOWN_WAIT_MAX};
use crate::app::json;
use crate::app::persist::Persistence;
use crate::app::presence;
use crate::proto::{Event, PeerId, PeerInfo, PeerState};
use crate::ui::present;
use crate::ui::render::Output;
use std::collections::BTreeMap;
use std::time::Instant;

impl Chat {
    /// First half of a wake-up's output: takes the core's events and makes durable what they
    /// mean (appended and synced), before the loop lets any datagram leave. Returns the
    /// events, for [`Self::show`] once the datagrams are sent.
    pub fn take_events(&mut self) -> Vec<Event> {
        let now_ms = crate::clock::now_ms();
        self.record_shown(self.screen.reached());
        let mut events = Vec::new();
        while let Some(e) = self.ep.poll_event() {
            tracing::debug!("event: {e:?}");
            for record in Persistence::records_for(&self.ep, &e, now_ms) {
                self.append(&record);
            }
            events.push(e);
        }
        self.sync();
        events
    }

    /// Second half, once the journal is synced: the lines of this wake-up's commands (our
    /// echoes among them), then what the events mean for the user.
    pub fn show(&mut self, events: Vec<Event>) {
        self.flush_screen();
        let mut shown = BTreeMap::new();
        let mut changed_peers = false;
        for e in events {
            if let Event::AddressUnanswered { addr } = &e {
                if self.tailnet.is_tailnet_probe(*addr) {
                    // Most of a tailnet's devices run no tailchat: not worth a line.
                    continue;
                }
            }
            if let Event::AppData { from, data } = &e {
                let persist = &self.persist;
                let went_by = |nick: &str| persist.went_by(nick);
                self.files.on_app_data(&mut self.ep, *from, data, &went_by);
                continue;
            }
            if let Event::PeerJoined { peer, .. }
            | Event::PeerReachable { peer, .. }
            | Event::PeerRestarted { peer, .. } = &e
            {
                self.files.on_peer_back(&mut self.ep, *peer);
            }
            if let Event::PeerForgotten { peer, nick, .. } = &e {
                // Named as its lines were: `alice#1d79e0c2` while another alice is known.
                let name = self.current_names().name_of(*peer, nick);
                self.files.on_peer_forgotten(&mut self.ep, *peer, &name);
            }
            match &e {
                Event::PeerUnreachable { peer, .. } => {
                    self.files.on_peer_gone(&self.ep, *peer, "not answering");
                }
                Event::PeerLeft {
                    peer,
                    nick,
                    ephemeral: true,
                    ..
                } => {
                    let name = self.current_names().name_of(*peer, nick);
                    self.files.on_ephemeral_left(&mut self.ep, *peer, &name);
                }
                Event::PeerLeft { peer, .. } => self.files.on_peer_gone(&self.ep, *peer, "left"),
                _ => {}
            }
            if matches!(
                e,
                Event::PeerJoined { .. }
                    | Event::PeerReachable { .. }
                    | Event::AddressUnanswered { .. }
            ) {
                // The contact a script waited for is made (or hopeless); while it listens
                // for its LAN, a join only means the others are answering too; while peers it
                // knew from earlier runs have not answered, it waits for them.
                if let Event::PeerJoined { peer, .. } | Event::PeerReachable { peer, .. } = &e {
                    self.awaiting_known.remove(peer);
                }
                let now = Instant::now();
                let rest = match (self.discovery_hold, &e) {
                    // A LAN peer answered: the peers it passes on (who may not be on the LAN,
                    // or not announcing) are waited for as a contact's are, below.
                    (Some(cap), Event::PeerJoined { .. }) => {
                        self.exchange_hold
                            .get_or_insert(now + self.wait.min(KNOWN_WAIT_MAX));
                        Some((now + DISCOVERY_QUIET).min(cap))
                    }
                    (Some(_), _) => self.hold_until,
                    // An address the script asked for has not answered the first hellos: it
                    // still has its --wait (a stopped peer answers the hellos waiting in its
                    // socket once it goes on).
                    (None, Event::AddressUnanswered { addr })
                        if self.scripted && self.script_added.contains(addr) =>
                    {
                        self.hold_until
                    }
                    // The contact a script asked for answered: the peers it passes on arrive
                    // a round trip or two later; while they are tried, the script waits.
                    (None, Event::PeerJoined { .. })
                        if self.scripted && self.hold_until.is_some() =>
                    {
                        let cap = *self
                            .exchange_hold
                            .get_or_insert(now + self.wait.min(KNOWN_WAIT_MAX));
                        Some((now + DISCOVERY_QUIET).min(cap))
                    }
                    (None, _) => None,
                };
                self.hold_until = match self.known_hold {
                    Some(cap) if !self.awaiting_known.is_empty() => {
                        Some(rest.map_or(cap, |t| t.max(cap)))
                    }
                    _ => rest,
                };
            }
            if let Event::PeerJoined { peer, .. }
            | Event::PeerReachable { peer, .. }
            | Event::PeerRestarted { peer, .. } = &e
            {
                self.away_told.remove(peer); // back: its next absence is worth telling again
            }
            if let Event::PeerJoined { peer, addr, .. } = &e {
                self.tailnet.joined(*peer, *addr, Instant::now());
            }
            if let Event::PeerAway { peer, away, .. } = &e {
                match away {
                    Some(reason) => self
                        .away_shown
                        .insert(*peer, (reason.clone(), Instant::now())),
                    None => self.away_shown.remove(peer),
                };
            }
            changed_peers |= matches!(
                e,
                Event::PeerJoined { .. } | Event::PeerRenamed { .. } | Event::PeerLeft { .. }
            );
            if let Event::Message { from, id, .. } = &e {
                shown.insert(*from, id.0);
            }
            // A peer's nicks this run, for /whois: one known from an earlier run that comes
            // back or renames under another nick starts the list with the one it had.
            let renamed = match &e {
                Event::PeerJoined {
                    peer, was, nick, ..
                } => Some((peer, was.as_deref(), nick)),
                Event::PeerRenamed { peer, old, new } => Some((peer, Some(old.as_str()), new)),
                _ => None,
            };
            if let Some((peer, old, new)) = renamed {
                let nicks = self.nick_history.entry(*peer).or_default();
                if let (true, Some(old)) = (nicks.is_empty(), old) {
                    remember_nick(nicks, old);
                }
                remember_nick(nicks, new);
            }
            let mut unheard = None;
            if let Event::PeerForgotten { peer, .. } = &e {
                self.nick_history.remove(peer);
                unheard = self.forgetting_unheard.remove(peer);
            }
            let ep = &self.ep;
            let name = |id: PeerId| ep.nick_of(id).unwrap_or("?").to_owned();
            let as_json = (self.json || !self.clients.is_empty())
                .then(|| json::event(&e, name, crate::clock::now_ms()));
            if let Some(line) = &as_json {
                self.broadcast(line, None);
            }
            match as_json {
                Some(line) if self.json => self.screen.print_json(line),
                _ => {
                    let e = self.told_apart(e);
                    // Told together with others that stop (or start) answering meanwhile;
                    // anything else about a peer whose such notice waits lets it out first.
                    let about = match &e {
                        Event::Message { from, .. } => Some(*from),
                        Event::PeerLeft { peer, .. }
                        | Event::PeerJoined { peer, .. }
                        | Event::PeerForgotten { peer, .. }
                        | Event::PeerRenamed { peer, .. }
                        | Event::PeerRestarted { peer, .. }
                        | Event::PeerAway { peer, .. } => Some(*peer),
                        _ => None,
                    };
                    if about.is_some_and(|p| self.answering.involves(p)) {
                        for line in self.answering.due(Instant::now(), true) {
                            self.screen.print(&Output::Notice(line));
                        }
                    }
                    match &e {
                        Event::PeerUnreachable { peer, nick, queued } => {
                            let name = crate::ui::render::display_nick(nick);
                            self.answering.stopped(Instant::now(), *peer, name, *queued);
                            continue;
                        }
                        Event::PeerReachable { peer, nick } => {
                            let name = crate::ui::render::display_nick(nick);
                            self.answering.answering(Instant::now(), *peer, name);
                            continue;
                        }
                        _ => {}
                    }
                    // Peers named as lines name them (`not yet delivered to alex#2c1a6732`,
                    // while another alex is here): the names kept, taken out for the while.
                    let _ = self.current_names();
                    let (ep, names) = (&self.ep, &self.shown_names);
                    let name = |id: PeerId| {
                        let nick = ep.nick_of(id).unwrap_or("?");
                        match names {
                            Some((_, names)) => names.name_of(id, nick),
                            None => nick.to_owned(),
                        }
                    };
                    // Told together with the others to the same peer meanwhile.
                    match &e {
                        Event::DeliveryDelayed { to, id } => {
                            let quote = self.outstanding.quote(*id);
                            self.delivery
                                .delayed(Instant::now(), *to, name(*to), *id, quote);
                            continue;
                        }
                        Event::Delivered { to, id, late: true } => {
                            let quote = self.outstanding.quote(*id);
                            self.outstanding.settle(*id, *to);
                            self.delivery
                                .late(Instant::now(), *to, name(*to), *id, quote);
                            continue;
                        }
                        _ => {}
                    }
                    let calls_us = match &e {
                        Event::Message { direct, text, .. } => {
                            *direct || mentions(text, self.ep.nick())
                        }
                        _ => false,
                    };
                    let out = match &e {
                        Event::PeerForgotten { nick, dropped, .. } => unheard.map(|days| {
                            Output::Notice(present::forgotten_unheard_line(
                                nick,
                                days,
                                dropped.len(),
                            ))
                        }),
                        Event::PeerJoined {
                            nick, was, addr, ..
                        } => self.tailnet.who_at(*addr).map(|who| {
                            Output::Notice(present::joined_line(
                                nick,
                                was.as_deref(),
                                *addr,
                                Some(&who),
                            ))
                        }),
                        _ => None,
                    };
                    let out =
                        out.or_else(|| present::event_output(&e, name, &mut self.outstanding));
                    if let Some(out) = out {
                        let out = match &e {
                            Event::Message { age, .. } => {
                                present::late(out, *age, crate::clock::local_now())
                            }
                            _ => out,
                        };
                        let calls = self.presence.calls();
                        if let (true, true, Event::Message { nick, text, .. }) =
                            (calls_us, calls.notify, &e)
                        {
                            if self.presence.may_notify(Instant::now()) {
                                presence::notify(nick, calls.notify_text.then_some(text.as_str()));
                            }
                        }
                        let out = if calls_us {
                            Output::Mention(Box::new(out))
                        } else {
                            out
                        };
                        self.screen.print(&out);
                    }
                }
            }
        }
        self.await_shown(shown);
        if changed_peers {
            let peers = self.ep.peers();
            // The present peers, for completion, named as lines name them: `carol#8b5a65e1`
            // while a carol who left is known too (`/msg carol` would be ambiguous).
            let names = crate::app::lookup::shown_names(&peers, None);
            let completable = present_of(&peers)
                .into_iter()
                .map(|(id, nick)| names.name_of(id, nick))
                .collect();
            self.screen.peer_nicks(completable);
            // Named now, while the joins are being shown, rather than by the next message.
            self.shown_names = Some(self.names_with_ours(&peers));
            // Someone who joined goes by a nick like ours (we started with it, say).
            self.tell_nick_clash();
            for line in self.tailnet.check_peers(&peers) {
                self.print(Output::Notice(line));
            }
            self.flush_screen();
        }
        self.show_file_lines();
        self.flush_screen();
    }

    /// Says once per nick of ours that a peer here goes by one like it (`/nick` to it, or a
    /// start with `--nick` in a room that has it): peers then see us with our id.
    /// From the kept names: one look of our nick, not one per peer at every change.
    pub(super) fn tell_nick_clash(&mut self) {
        let (me, nick) = (self.ep.peer_id(), self.ep.nick().to_owned());
        if self.clash_told.as_deref() == Some(nick.as_str()) {
            return;
        }
        let alike = self.current_names().alike(me, &nick);
        let taken = alike
            .into_iter()
            .filter_map(|id| self.ep.peer(id))
            .find(|p| p.state != PeerState::Left);
        let Some(other) = taken else {
            return;
        };
        self.clash_told = Some(nick.clone());
        let id = &self.ep.peer_id().to_string()[..8];
        let theirs = crate::ui::render::display_nick(&other.nick);
        // Here (answering), or known from before and not here now.
        let who = if other.state == PeerState::Online {
            "someone here"
        } else {
            "a peer you know (not here now)"
        };
        self.print(Output::Notice(if theirs == nick {
            format!("{who} is also called {nick}: peers will tell you apart by your id ({nick}#{id})")
        } else {
            format!("{who} goes by {theirs}, which looks like {nick}: peers will tell you apart by your id ({nick}#{id})")
        }));
    }

    /// A report from a file transfer's data thread.
    pub fn on_file_event(&mut self, ev: crate::transfer::DataEvent) {
        self.files.on_data(&mut self.ep, ev);
        self.show_file_lines();
    }

    /// Queues what file transfers have to say (see [`Self::flush_screen`]), and keeps the
    /// peers they involve in the journal.
    pub(super) fn show_file_lines(&mut self) {
        for peer in self.files.take_kept() {
            if let Some(failure) = self.persist.keep_peer(&self.ep, peer) {
                self.print(Output::Error(failure));
            }
        }
        for line in self.files.take_lines() {
            // Offers and end lines are events for every connected program too (`attach`), as
            // the chat's are; the one whose command this answers gets it as its answer.
            if matches!(line, Output::File(_)) && !self.clients.is_empty() {
                self.broadcast(&json::line(&line), self.reply_to);
            }
            self.print(line);
        }
        self.files_to_mark.extend(self.files.take_untold());
    }

    /// Every known peer's name as lines show it, `bob#1d79e0c2` while another known peer (or
    /// we) goes by the same nick, away or not.
    pub(super) fn known_names(&self, peers: &[PeerInfo]) -> present::ShownNames {
        crate::app::lookup::shown_names(peers, Some((self.ep.peer_id(), self.ep.nick())))
    }

    /// [`Self::known_names`], as of the endpoint's roster version.
    fn names_with_ours(&self, peers: &[PeerInfo]) -> (u64, present::ShownNames) {
        (self.ep.roster_version(), self.known_names(peers))
    }

    /// A message whose sender's nick looks like another present peer's (or ours) is shown
    /// under the name that tells them apart (`bob#1d79e0c2`): a peer cannot pass for another
    /// by choosing a look-alike nick.
    fn told_apart(&mut self, mut e: Event) -> Event {
        // Joins, leaves and the rest too: an impostor's arrival reads `alice#abdf0fda joined`.
        if let Event::PeerRenamed { peer, old, new } = &mut e {
            // Both names as lines show them: `alice is now bob#1d79e0c2` when another bob
            // (or we) is here, so the rename does not read as bob's own.
            let names = self.current_names();
            *old = names.name_of(*peer, old);
            *new = names.name_of(*peer, new);
            return e;
        }
        let (from, nick) = match &mut e {
            Event::Message { from, nick, .. } => (from, nick),
            Event::PeerJoined { peer, nick, .. }
            | Event::PeerLeft { peer, nick, .. }
            | Event::PeerUnreachable { peer, nick, .. }
            | Event::PeerReachable { peer, nick }
            | Event::PeerRestarted { peer, nick }
            | Event::PeerAway { peer, nick, .. }
            | Event::PeerForgotten { peer, nick, .. } => (peer, nick),
            _ => return e,
        };
        let names = self.current_names();
        *nick = names.name_of(*from, nick);
        e
    }

    /// The present peers' names and ours, kept while the roster does not change.
    pub(super) fn current_names(&mut self) -> &present::ShownNames {
        let version = self.ep.roster_version();
        let names = match self.shown_names.take() {
            Some((v, names)) if v == version => (v, names),
            _ => self.names_with_ours(&self.ep.peers()),
        };
        &self.shown_names.insert(names).1
    }
}

/// The peers that have not left, each with its nick.
fn present_of(peers: &[PeerInfo]) -> Vec<(PeerId, &str)> {
    peers
        .iter()
        .filter(|p| p.state != PeerState::Left)
        .map(|p| (p.id, p.nick.as_str()))
        .collect()
}

/// Nicks of one peer kept for `/whois`: the latest ones, each once (a peer renaming itself
/// without end must not grow our memory).
const NICKS_KEPT: usize = 16;

/// Notes that a peer goes by `nick` now, in its `nicks` (oldest first): a nick it had before
/// moves to the end, and only the last [`NICKS_KEPT`] are kept.
fn remember_nick(nicks: &mut Vec<String>, nick: &str) {
    if nicks.last().is_some_and(|last| last == nick) {
        return;
    }
    nicks.retain(|n| n != nick);
    nicks.push(nick.to_owned());
    if nicks.len() > NICKS_KEPT {
        nicks.drain(..nicks.len() - NICKS_KEPT);
    }
}

#[cfg(test)]
mod nick_tests {
    use super::*;

    #[test]
    fn a_peer_renaming_without_end_keeps_its_last_sixteen_nicks_each_once() {
        let mut nicks = Vec::new();
        for i in 0..100_000 {
            remember_nick(&mut nicks, &format!("n{}", i % 40));
        }
        let want: Vec<String> = (24..40).map(|i| format!("n{i}")).collect();
        assert_eq!(nicks, want);
        remember_nick(&mut nicks, "n30");
        assert_eq!(nicks.last().map(String::as_str), Some("n30"));
        assert_eq!(nicks.iter().filter(|n| *n == "n30").count(), 1);
        assert_eq!(nicks.len(), NICKS_KEPT);
    }
}
