//! How an endpoint is set up: who it is and how it presents itself ([`Config`]), and the
//! bounds on what it keeps in memory ([`Limits`]).

use super::identity::Identity;
use super::{MAX_PEERS, MAX_PEERS_PER_IP, MAX_QUEUED_ITEMS};

/// How this endpoint presents itself.
#[derive(Clone, Debug)]
pub struct Config {
    /// Our key pair; our PeerId is derived from its public key.
    pub identity: Identity,
    /// Our display name.
    pub nick: String,
    /// The UDP port we listen on, told to peers in hellos.
    pub port: u16,
    /// Seed for all randomness (announcement jitter, the cookie secret), so runs can be
    /// replayed.
    pub seed: u64,
    /// Whether to announce ourselves on the LAN (see [`crate::proto::Endpoint::poll_announce`])
    /// and to answer the announcements of others. Without it, announcements heard are dropped
    /// (counted in [`crate::proto::Stats::discovery_off`]).
    pub discovery: bool,
    /// This run's session number: non-zero, and larger than any earlier run's of the same
    /// identity (the driver takes the wall clock in milliseconds, shifted left 16 bits, plus
    /// random low bits), so a late hello from an earlier run is recognised as such.
    pub session: u64,
    /// Bounds on memory; [`Limits::default`] everywhere but in tests that need to reach them.
    pub limits: Limits,
}

/// Bounds on what an endpoint keeps, so that no peer and no stranger can make it grow without
/// limit. The defaults are the protocol's ([`MAX_QUEUED_ITEMS`], [`MAX_PEERS`]); tests shrink
/// them to reach a bound in a few steps instead of thousands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Items (messages and fragments) queued for one peer at most; a message that would pass
    /// this is refused for that peer with [`crate::proto::Event::Undelivered`]. Messages
    /// restored from storage are queued whole, past it.
    pub max_queued_items: usize,
    /// Known peers at most; beyond it a newcomer is refused (after evicting a peer that has no
    /// message waiting and was not heard in the last day).
    pub max_peers: usize,
    /// Peers at one IP address at most, those the user added by hand apart: a host with many
    /// ports that answer cannot fill the table with identities.
    pub max_peers_per_ip: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_queued_items: MAX_QUEUED_ITEMS,
            max_peers: MAX_PEERS,
            max_peers_per_ip: MAX_PEERS_PER_IP,
        }
    }
}
