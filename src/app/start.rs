//! Start-up: the data directory opened, and what the journal remembers turned into the
//! protocol core's state (peers, their outboxes, what was already shown, where message ids
//! and sessions continue).

use crate::proto::{Config, Endpoint, Identity, Limits, MessageId, PeerId, Queued, RestoredPeer};
use crate::store::{
    self,
    journal::{HistoryLimit, Journal, JournalError, Restored},
};
use crate::ui::render::Output;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// What was opened in the data directory.
#[derive(Debug)]
pub struct Storage {
    /// The directory.
    pub dir: PathBuf,
    /// Our identity: the stored one whenever it can be read.
    pub identity: Identity,
    /// The PeerId of an identity file from before protocol 2, upgraded to `identity` at this
    /// start (the user is told: peers that knew the old id meet a new peer).
    pub upgraded_from: Option<PeerId>,
    /// The journal: writable, or read-only when the directory cannot be written (then
    /// [`Self::problem`] says so); `None` when it cannot even be read.
    pub journal: Option<Journal>,
    /// What the journal remembers.
    pub restored: Restored,
    /// The peers of file transfers left unfinished (from their records in the directory):
    /// contacted at start, and their journal records kept through compactions.
    pub transfer_peers: BTreeSet<PeerId>,
    /// What cannot be kept, for one notice at start.
    pub problem: Option<String>,
    /// Where this run's message ids and session start at the lowest, as the last run wrote
    /// ([`store::floors`]); zero when unknown.
    pub floors: store::floors::Floors,
    /// Why that could not be read (the file is damaged), for a notice.
    pub floors_problem: Option<String>,
    /// Whether the directory can be written (the floors with it), whatever became of the
    /// journal.
    pub writable: bool,
    /// Whether [`Self::identity`] is the one stored in the directory, so that a later run is
    /// this peer again: not when the directory cannot be written and held none.
    pub identity_kept: bool,
}

/// How often a journal held by another tailchat is tried again, while waiting for it.
const LOCK_RETRY: std::time::Duration = std::time::Duration::from_millis(20);

impl Storage {
    /// Whether a run with this storage (`None`: storage off) is one its peers will never meet
    /// again, as if `--ephemeral`: its identity lives only in memory.
    pub fn run_is_one_off(storage: Option<&Storage>) -> bool {
        storage.is_none_or(|s| !s.identity_kept)
    }

    /// Opens (creating it if needed) the data directory: `explicit`, or the default, with a
    /// journal that keeps `history_limit`. A directory that cannot be written (read-only,
    /// full) still gives its identity and its journal to read: who we are never changes
    /// because of trouble with the disk.
    ///
    /// # Errors
    /// No data directory can be made, the identity file is unreadable or damaged, or the
    /// journal is held by another tailchat (for longer than `lock_wait`: a `tailchat send`
    /// waits its turn behind another one on the same directory): each says which file and
    /// what to do. Storage is then off, under a new identity.
    pub fn open(
        explicit: Option<&Path>,
        history_limit: &HistoryLimit,
        lock_wait: std::time::Duration,
    ) -> Result<Storage, String> {
        let dir = store::dirs::data_dir(explicit)?;
        let path = dir.join(store::JOURNAL_FILE);
        let transfer_peers =
            crate::transfer::record::Store::new(&dir).unfinished_peers(crate::clock::now_ms());
        let (floors, floors_problem) = match store::floors::read(&dir) {
            Ok(floors) => (floors, None),
            Err(why) => (store::floors::Floors::default(), Some(why)),
        };
        if let Err(cannot_write) = store::dirs::check_writable(&dir) {
            let stored = store::identity::load(&dir)?;
            let found = stored.is_some();
            let identity = stored.unwrap_or_else(|| Identity::from_secret(rand::random()));
            let (journal, restored, unreadable) = match Journal::open_read_only(&path) {
                Ok((j, r)) => (Some(j), r, None),
                Err(e) => (None, Restored::default(), Some(e.to_string())),
            };
            let mut problem = format!(
                "{cannot_write} — carrying on{}, but nothing new is kept after you quit",
                if found {
                    " as the same peer, with history to read"
                } else {
                    " under a new identity"
                }
            );
            if let Some(e) = unreadable {
                problem.push_str(&format!(" (and {e})"));
            }
            return Ok(Storage {
                dir,
                identity,
                upgraded_from: None,
                journal,
                restored,
                transfer_peers,
                problem: Some(problem),
                floors,
                floors_problem,
                writable: false,
                identity_kept: found,
            });
        }
        let open = || Journal::open_keeping(&path, history_limit, transfer_peers.clone());
        let until = std::time::Instant::now() + lock_wait;
        let mut opened = open();
        while matches!(opened, Err(JournalError::Locked { .. }))
            && std::time::Instant::now() < until
        {
            std::thread::sleep(LOCK_RETRY);
            opened = open();
        }
        let (journal, restored, problem) = match opened {
            Ok((j, r)) => (Some(j), r, None),
            Err(e @ JournalError::Locked { .. }) => return Err(e.to_string()),
            Err(e) => match Journal::open_read_only(&path) {
                // Not writable after all: read what can be read, and say what cannot be kept.
                Ok((j, r)) => {
                    let why =
                        format!("{e} — history is read-only, nothing new is kept after you quit");
                    (Some(j), r, Some(why))
                }
                // Not readable either (not a journal: damaged at its very start): we are still
                // who identity.toml says, without history; the file is left for the user.
                Err(unreadable) => {
                    let why = format!(
                        "{unreadable} — carrying on as the same peer, without history, and nothing new is kept after you quit"
                    );
                    (None, Restored::default(), Some(why))
                }
            },
        };
        // Once the journal is ours: a `tailchat send` waiting its turn on a new data directory
        // reads the identity the one before it made, rather than making it and then finding
        // a journal that says a peer ran here (and warning that its key was lost).
        let loaded = store::identity::load_or_create(&dir, rand::random)?;
        let mut restored = restored;
        restored
            .warnings
            .extend(store::identity::keep_private(&dir));
        if loaded.created && (restored.last_session > 0 || floors.session_after > 0) {
            // The journal (or the floors) says a peer ran here: its key is gone.
            restored.warnings.push(format!(
                "{} was missing, though tailchat ran here before: you are a new peer ({}) — peers meet you as a newcomer, and what waited for your old identity does not come to this one (restore the file from a backup and restart to be your old self)",
                dir.join(store::IDENTITY_FILE).display(),
                loaded.identity.peer_id()
            ));
        }
        Ok(Storage {
            dir,
            identity: loaded.identity,
            upgraded_from: loaded.upgraded_from,
            journal,
            restored,
            transfer_peers,
            problem,
            floors,
            floors_problem,
            writable: true,
            identity_kept: true,
        })
    }

    /// The prompt history's path.
    pub fn prompt_history(&self) -> PathBuf {
        self.dir.join(store::PROMPT_HISTORY_FILE)
    }
}

/// The protocol core for this run, as [`endpoint`] makes it.
#[derive(Debug)]
pub struct Started {
    /// The core: our identity (stored, or new when storage is off), a fresh session, and
    /// whatever storage remembers restored into it.
    pub endpoint: Endpoint,
    /// This run's session number (recorded in the journal, so the next run's is larger).
    pub session: u64,
    /// What start-up has to tell the user (journal warnings, messages waiting from earlier).
    pub notices: Vec<Output>,
}

/// The protocol core for this run (see [`Started`]). A script (`contact_known`) contacts every
/// peer it knows at start, as it is about to talk to them; a person's chat only those that
/// matter now (added by hand, messages or a transfer waiting): the rest find us again.
pub fn endpoint(
    nick: &str,
    port: u16,
    discovery: bool,
    storage: Option<&Storage>,
    contact_known: bool,
    now: Instant,
) -> Started {
    let after = storage.map_or(0, |s| {
        let floor = if s.writable {
            s.floors.session_after
        } else {
            0
        };
        s.restored.last_session.max(floor)
    });
    let session = new_session(unix_ms(), after);
    let mut ep = Endpoint::new(
        Config {
            identity: storage.map_or_else(
                || Identity::from_secret(rand::random()),
                |s| s.identity.clone(),
            ),
            nick: nick.to_owned(),
            port,
            seed: rand::random(),
            discovery,
            session,
            limits: Limits::default(),
        },
        now,
    );
    let mut notices = Vec::new();
    if let Some(line) = clock_problem(crate::clock::reading_ms()) {
        notices.push(Output::Error(line));
    }
    if let Some(s) = storage {
        if let Some(old) = s.upgraded_from {
            notices.push(Output::Notice(format!(
                "your identity is now a key pair (tailchat protocol 2): your peer id changed \
                 from {old} to {}, once — peers that knew you meet you as a new peer",
                s.identity.peer_id()
            )));
        }
        notices.extend(s.restored.warnings.iter().cloned().map(Output::Notice));
        let waiting: usize = s.restored.outbox.values().map(Vec::len).sum();
        if waiting > 0 {
            let (wait, go) = match waiting {
                1 => ("waits", "goes"),
                _ => ("wait", "go"),
            };
            notices.push(Output::Notice(format!(
                "{} from earlier {wait} for their recipients and {go} out when they are back",
                crate::ui::present::messages(waiting)
            )));
        }
        if s.problem.is_none() && s.floors.session_after > 0 && s.restored.last_session == 0 {
            // Every run records its start; an earlier run wrote its floors, so it ran here.
            notices.push(Output::Notice(format!(
                "the journal in {} knows of no earlier run, though one ran here: it was emptied, cut short or deleted — the history and messages that waited from before are gone",
                s.dir.display()
            )));
        }
        if let Some(why) = &s.floors_problem {
            notices.push(Output::Notice(format!(
                "{why}; message ids and sessions go on from the journal and the clock"
            )));
        }
        // Without LAN discovery, nothing else brings back at once the peers met by peer
        // exchange or that contacted us: those heard lately are contacted too.
        let contact = if contact_known {
            Contact::All
        } else if discovery {
            Contact::Wanted
        } else {
            Contact::HeardWithin(CONTACT_HEARD_WITHIN)
        };
        let (next_msg, peers) = restored_peers(&s.restored, &s.transfer_peers, contact);
        // Ids also grow with the clock, and start at or above what the last run reserved, so
        // they never repeat even if the journal was lost or a write failed and the clock was
        // set back since (a receiver would take a repeated id for a message it showed). The
        // floor is used only once this run's own is written: the next run would otherwise
        // read the same one and start where this run did.
        let base = next_msg.0.max(clock_message_floor(unix_ms()));
        let mut next_msg = MessageId(base);
        if s.writable {
            let from = base.max(s.floors.message_ids_from);
            let floors = store::floors::Floors {
                message_ids_from: from.saturating_add(store::floors::RESERVED),
                session_after: session,
            };
            match store::floors::write(&s.dir, floors) {
                Ok(()) => next_msg = MessageId(from),
                Err(e) => tracing::warn!(
                    "cannot write {} in {}: {e}; message ids and sessions go on from the journal and the clock",
                    store::floors::FLOORS_FILE,
                    s.dir.display()
                ),
            }
        }
        ep.restore(now, next_msg, peers);
        // Peers forgotten in earlier runs: what they were shown, should they come back.
        ep.restore_forgotten(s.restored.forgotten.iter().filter_map(|id| {
            let through = s.restored.delivered_from.get(id)?;
            Some((*id, MessageId(*through)))
        }));
    }
    Started {
        endpoint: ep,
        session,
        notices,
    }
}

/// How long before `now_ms` the moment `then_ms` was (zero if it is later).
pub fn ago(now_ms: i64, then_ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(now_ms.saturating_sub(then_ms)).unwrap_or(0))
}

/// The journal's summary as the protocol core takes it back: the next message id, and every
/// peer the journal knows of (by a peer record, an outbox, or messages already shown); those
/// in `wanted` (peers of unfinished file transfers), or all of them (`all_wanted`: a script), are
/// marked so.
pub fn restored_peers(
    r: &Restored,
    wanted: &BTreeSet<PeerId>,
    contact: Contact,
) -> (MessageId, Vec<RestoredPeer>) {
    let mut ids: Vec<PeerId> = r.peers.keys().copied().collect();
    ids.extend(r.outbox.keys().copied());
    ids.extend(
        r.delivered_from
            .keys()
            .filter(|id| !r.forgotten.contains(id))
            .copied(),
    );
    ids.sort();
    ids.dedup();
    let now_ms = crate::clock::now_ms();
    let peers = ids
        .into_iter()
        .map(|id| {
            let known = r.peers.get(&id);
            RestoredPeer {
                id,
                // A peer recorded before keys were kept takes any key hashing to its id.
                key: known.and_then(|p| p.key),
                heard_ago: known
                    .filter(|p| p.heard_ms > 0)
                    .map(|p| ago(now_ms, p.heard_ms)),
                nick: known.map_or_else(|| id.to_string(), |p| p.nick.clone()),
                addrs: known.map(|p| p.addrs.clone()).unwrap_or_default(),
                manual: known.is_some_and(|p| p.manual),
                wanted: wanted.contains(&id)
                    || match contact {
                        Contact::All => true,
                        Contact::Wanted => false,
                        Contact::HeardWithin(within) => known
                            .is_some_and(|p| p.heard_ms > 0 && ago(now_ms, p.heard_ms) <= within),
                    },
                delivered_through: MessageId(r.delivered_from.get(&id).copied().unwrap_or(0)),
                outbox: r
                    .outbox
                    .get(&id)
                    .map(|v| {
                        v.iter()
                            .map(|o| Queued {
                                id: MessageId(o.id),
                                direct: o.direct,
                                action: o.action,
                                written_ago: ago(now_ms, o.at_ms),
                                text: o.text.clone(),
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
            }
        })
        .collect();
    (MessageId(r.next_msg), peers)
}

/// Which restored peers are contacted at start besides those added by hand or with messages
/// waiting (the core's own rule, spec §8.8).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Contact {
    /// Every one (a script: it is about to talk to them).
    All,
    /// Those given (peers of unfinished file transfers) only: LAN discovery brings the rest.
    Wanted,
    /// Those, and those heard from within this long before (no LAN discovery).
    HeardWithin(Duration),
}

/// How recently a peer must have been heard for a chat without LAN discovery to contact it at
/// start ([`Contact::HeardWithin`]): a week.
pub const CONTACT_HEARD_WITHIN: Duration = Duration::from_secs(7 * 24 * 3600);

/// The lowest message id a run starting at `unix_ms` may use: milliseconds × 4096, so every
/// run starts above any earlier run's ids unless that run sent over 4096 messages per
/// millisecond.
pub fn clock_message_floor(unix_ms: u64) -> u64 {
    (unix_ms << 12).max(1)
}

/// The session number of a run starting at `unix_ms`, after a run whose session was `after`
/// (0: none known): larger than `after` whatever the clock says (it may have stepped back),
/// and otherwise clock milliseconds in the high bits, so it also grows when the journal was
/// lost; unpredictable in the low 16 bits; never 0.
pub fn new_session(unix_ms: u64, after: u64) -> u64 {
    let clock = (unix_ms << 16) | u64::from(rand::random::<u16>()) | 1;
    clock.max(after.saturating_add(1))
}

/// Wall-clock milliseconds since the Unix epoch (0 if the clock reads before it).
/// A clock that reads before this program was written (2026) is wrong: what to tell the user.
fn clock_problem(now_ms: i64) -> Option<String> {
    const WRITTEN_MS: i64 = 1_767_225_600_000; // 2026-01-01 UTC
    (now_ms < WRITTEN_MS).then(|| {
        format!(
            "your clock reads {}: the times of your messages and of your history will be wrong — set the system clock (timedatectl, or ntp)",
            crate::clock::local_at(now_ms).format("%Y-%m-%d %H:%M")
        )
    })
}

fn unix_ms() -> u64 {
    u64::try_from(crate::clock::now_ms()).unwrap_or(0)
}

/// A core for unit tests: no storage, no discovery.
#[cfg(test)]
pub fn test_endpoint(nick: &str) -> Endpoint {
    endpoint(nick, 7654, false, None, false, Instant::now()).endpoint
}

/// A chat's setup for unit tests: alice, a script, no storage, nobody to contact.
#[cfg(test)]
pub fn test_setup() -> super::Setup {
    super::Setup {
        endpoint: test_endpoint("alice"),
        session: 1,
        peers: Vec::new(),
        default_port: 7654,
        reaches: (true, true),
        journal: None,
        scripted: true,
        awaited: None,
        wait: std::time::Duration::from_secs(5),
        json: false,
        control_dir: None,
        files: Default::default(),
        unshown: Vec::new(),
        presence: Default::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::journal::{Outgoing, PeerRecord};

    #[test]
    fn sessions_and_id_floors_grow_with_the_clock() {
        let (a, b) = (new_session(1_000, 0), new_session(1_001, 0));
        assert!(b > a && a != 0);
        // The clock stepped back an hour: the session still grows past the recorded one.
        let recorded = new_session(10_000_000, 0);
        assert!(new_session(10_000_000 - 3_600_000, recorded) > recorded);
        assert!(clock_message_floor(1_001) > clock_message_floor(1_000));
        assert_eq!(clock_message_floor(0), 1);
    }

    /// Without LAN discovery, a chat contacts at start the peers heard within a week (a
    /// script all of them), besides those the core contacts anyway.
    #[test]
    fn peers_heard_lately_are_contacted_at_start_without_discovery() {
        let now = crate::clock::now_ms();
        let mut r = Restored::default();
        for (id, heard_ms) in [(1, now - 86_400_000), (2, now - 30 * 86_400_000), (3, 0)] {
            r.peers.insert(
                PeerId(id),
                PeerRecord {
                    nick: format!("p{id}"),
                    addrs: vec!["127.0.0.1:7654".parse().unwrap()],
                    manual: false,
                    heard_ms,
                    key: None,
                },
            );
        }
        let wanted = |contact| -> Vec<u64> {
            let (_, peers) = restored_peers(&r, &BTreeSet::new(), contact);
            peers.iter().filter(|p| p.wanted).map(|p| p.id.0).collect()
        };
        assert_eq!(wanted(Contact::HeardWithin(CONTACT_HEARD_WITHIN)), [1]);
        assert_eq!(wanted(Contact::Wanted), Vec::<u64>::new());
        assert_eq!(wanted(Contact::All), [1, 2, 3]);
    }

    #[test]
    fn every_peer_the_journal_knows_of_is_restored_once() {
        let mut r = Restored {
            next_msg: 42,
            ..Restored::default()
        };
        r.peers.insert(
            PeerId(1),
            PeerRecord {
                nick: "bob".into(),
                addrs: vec!["127.0.0.1:7654".parse().unwrap()],
                manual: true,
                heard_ms: 0,
                key: Some(crate::proto::PublicKey([7; 32])),
            },
        );
        r.outbox.insert(
            PeerId(1),
            vec![Outgoing {
                id: 7,
                direct: false,
                text: "later".into(),
                at_ms: crate::clock::now_ms() + 60_000,
                action: true,
            }],
        );
        r.delivered_from.insert(PeerId(2), 9);
        let (next, peers) = restored_peers(&r, &BTreeSet::from([PeerId(2)]), Contact::Wanted);
        assert_eq!(next, MessageId(42));
        assert_eq!(peers.len(), 2);
        let bob = &peers[0];
        assert_eq!(
            (bob.id, bob.nick.as_str(), bob.manual),
            (PeerId(1), "bob", true)
        );
        // Written "in a minute" (a clock that went back): no age, not a negative one.
        let later = Queued {
            action: true,
            ..Queued::message(MessageId(7), false, "later")
        };
        assert_eq!(bob.outbox, [later]);
        assert_eq!(
            bob.key,
            Some(crate::proto::PublicKey([7; 32])),
            "its key stays pinned"
        );
        let unnamed = &peers[1];
        assert_eq!(unnamed.nick, PeerId(2).to_string());
        assert_eq!(unnamed.delivered_through, MessageId(9));
        assert!(unnamed.addrs.is_empty());
        // The peer of an unfinished file transfer is wanted; bob is not.
        assert!(unnamed.wanted && !bob.wanted);
    }
}
