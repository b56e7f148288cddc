//! Peers as callers see them: a snapshot for `/peers` ([`PeerInfo`], with its [`PeerState`] and
//! how it was [`Found`]), and a peer as storage remembers it across runs ([`RestoredPeer`]).

use super::identity::PublicKey;
use super::ids::{MessageId, PeerId};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// How a peer came to be known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Found {
    /// We added its address (`/add`, `--peer`).
    Manual,
    /// It announced itself on the LAN.
    Announced,
    /// Another peer told us of it (peer exchange).
    Learned,
    /// It contacted us first.
    Incoming,
    /// Known from an earlier run: contacted at the addresses the data directory kept.
    Remembered,
}

/// A peer's state as the user sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerState {
    /// Known from an earlier run, not heard from since this one started.
    Offline,
    /// Answering.
    Online,
    /// Not acknowledging; messages wait in its queue.
    Unreachable,
    /// Said goodbye.
    Left,
}

/// A snapshot of one peer, for `/peers`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerInfo {
    /// Identity.
    pub id: PeerId,
    /// Nick.
    pub nick: String,
    /// Known addresses, the one in use first.
    pub addrs: Vec<SocketAddr>,
    /// How it was found.
    pub found: Found,
    /// When we last heard from it.
    pub last_heard: Instant,
    /// Smoothed round-trip time, once measured.
    pub rtt: Option<Duration>,
    /// Our messages not yet acknowledged by it.
    pub undelivered: usize,
    /// Offline (restored, not heard from in this run), online, unreachable or left.
    pub state: PeerState,
    /// Away with this reason (perhaps empty), as it last said; `None`: here.
    pub away: Option<String>,
    /// It said it is ephemeral (a script): forgotten once it leaves.
    pub ephemeral: bool,
    /// The key it proved (or was restored with), pinned to its PeerId.
    pub key: Option<PublicKey>,
}

/// One of our messages an earlier run queued for a peer, as storage remembers it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Queued {
    /// Its id.
    pub id: MessageId,
    /// To that peer alone rather than to the group.
    pub direct: bool,
    /// An action (`/me`).
    pub action: bool,
    /// How long before the restore it was written.
    pub written_ago: Duration,
    /// What it says.
    pub text: String,
}

/// A peer as storage remembers it, for [`crate::proto::Endpoint::restore`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestoredPeer {
    /// Its identity.
    pub id: PeerId,
    /// Its public key, as [`crate::proto::Endpoint::peer_key`] gave it when it was known:
    /// when it returns it must prove this very key, not just one whose hash starts like its
    /// PeerId. `None` if storage does not have it (any key hashing to `id` is then taken, and
    /// pinned). A key that does not hash to `id` is ignored.
    pub key: Option<PublicKey>,
    /// How long before this restore it was last heard from, if storage knows: a peer heard in
    /// the last day is never evicted to make room. `None`: unknown (it may be evicted if
    /// nothing waits for it).
    pub heard_ago: Option<Duration>,
    /// Its last nick.
    pub nick: String,
    /// Its last addresses, the one that last worked first.
    pub addrs: Vec<SocketAddr>,
    /// Whether the user added it by hand (then it is contacted at start).
    pub manual: bool,
    /// Whether the application has business with it that it keeps outside the message queue
    /// (an unfinished file transfer): then it is ranked and contacted at start like a peer
    /// with messages waiting.
    pub wanted: bool,
    /// The highest message id from it already shown.
    pub delivered_through: MessageId,
    /// Our messages it has not acknowledged, in id order.
    pub outbox: Vec<Queued>,
}

impl Queued {
    /// A plain message (not an action) written just before the restore.
    pub fn message(id: MessageId, direct: bool, text: &str) -> Self {
        Self {
            id,
            direct,
            action: false,
            written_ago: Duration::ZERO,
            text: text.to_owned(),
        }
    }

    /// Queues it again on `link`, past the queue bound.
    pub(crate) fn requeue(&self, now: Instant, link: &mut super::link::Link) {
        let style = super::link::Style::new(self.direct, self.action);
        link.requeue_message(now, self.written_ago, self.id, style, &self.text);
    }
}
