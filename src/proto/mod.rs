//! The protocol core: a pure, deterministic state machine (no sockets, no clock, no tokio).
//!
//! [`Endpoint`] turns "send this text to these peers" into datagrams and datagrams back into
//! messages, exactly once and in order per sender, over a network that loses, duplicates and
//! reorders. Time is passed in (`now`), randomness comes from a seed, so the same inputs always
//! give the same outputs; the simulator in `tests/` relies on that.
//!
//! # Driving it
//!
//! Inputs: [`Endpoint::handle_datagram`], [`Endpoint::handle_timeout`], and the commands
//! [`Endpoint::send_message`], [`Endpoint::send_app_data`], [`Endpoint::add_address`],
//! [`Endpoint::set_nick`], [`Endpoint::leave`] (and, once at start, [`Endpoint::restore`]). After any input, drain the
//! outputs in this order:
//!
//! 1. [`Endpoint::poll_event`] until `None`; record what must survive a crash (received
//!    messages, delivery reports) and make it durable (sync the journal);
//! 2. only then [`Endpoint::poll_announce`] and [`Endpoint::poll_transmit`] until `None`, and
//!    send what they give;
//! 3. arm one timer for [`Endpoint::poll_timeout`].
//!
//! The order keeps the durability promise: the datagrams of a batch carry the acks of the
//! messages its events report, and once a peer has an ack it never sends that message again.
//! Sending before the journal is synced could acknowledge a message that a crash then loses.
//!
//! # Layout
//! - Public types, apart from the state machine: `config` ([`Config`], [`Limits`]), `output`
//!   ([`Transmit`], [`Event`]), `sending` ([`Recipients`], [`Sent`], [`SendError`]),
//!   `peer_info` ([`PeerInfo`], [`PeerState`], [`Found`], [`RestoredPeer`]), `stats`
//!   ([`Stats`], [`LinkCounters`]), [`ids`] ([`PeerId`], [`MessageId`]), [`identity`] (key
//!   pairs, PeerIds derived from keys, what a proof signs), [`cookie`] (stateless proofs of an
//!   address) and [`nick`] (the one rule for nicks).
//! - [`wire`]: the datagram format (see `docs/PROTOCOL.md`).
//! - `endpoint`: [`Endpoint`], the inputs and outputs above; beside it `endpoint/peers` (the
//!   peer table: admission, eviction), `endpoint/handshake` (hello, cookie, proof, sessions
//!   and proven addresses), `endpoint/discovery` (probes and LAN announcements),
//!   `endpoint/hints` (addresses learned from peer lists, probed at a bounded rate),
//!   `endpoint/limits` (token buckets and the per-address hello limiter) and
//!   `endpoint/exchange` (peer exchange).
//! - `link`: one peer's reliable stream and its state (offline, online, unreachable, left);
//!   beside it `link/send` (queue, window, packing datagrams), `link/recovery` (packets in
//!   flight, loss detection, retransmission timeout), `link/receive` (acks owed, ordering,
//!   de-duplication) and `link/reassembly` (fragments).
//! - [`rtt`]: the round-trip-time estimator and timeout constants.
//! - [`ranges`]: the range set behind acks.

#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

mod config;
pub mod cookie;
mod endpoint;
pub mod identity;
pub mod ids;
mod link;
pub mod nick;
mod output;
mod peer_info;
pub mod ranges;
pub mod rtt;
mod sending;
mod stats;
pub mod wire;

pub use config::{Config, Limits};
pub use endpoint::{Endpoint, Footprint};
pub use identity::{Identity, PublicKey};
pub use ids::{MessageId, PeerId};
pub use output::{Event, ForgetReason, Transmit, UndeliveredReason};
pub use peer_info::{Found, PeerInfo, PeerState, Queued, RestoredPeer};
pub use sending::{AppDataError, Recipients, SendError, Sent};
pub use stats::{LinkCounters, Stats};

use std::time::Duration;

/// The largest message, in bytes of UTF-8, that [`Endpoint::send_message`] accepts.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// A message longer than this many bytes travels as fragments of at most this many bytes.
/// Chosen so that a full chat or fragment frame, the largest header and an ack frame still fit
/// in [`wire::MAX_DATAGRAM`].
pub const FRAGMENT_BYTES: usize = 1000;
/// Stream items a receiver buffers beyond the next expected one, and so the most a sender has
/// in flight to one peer. Bounds per-peer reordering memory to about 150 KB.
pub const WINDOW: u64 = 128;
/// Items (messages and fragments) queued for one peer at most, by default
/// ([`Limits::max_queued_items`]); a message that would pass the bound is refused for that
/// peer with [`Event::Undelivered`].
pub const MAX_QUEUED_ITEMS: usize = 8192;
/// Known peers at most, by default ([`Limits::max_peers`]); beyond it a newcomer is refused
/// (after evicting a peer with nothing waiting that was not heard in the last day).
pub const MAX_PEERS: usize = 256;
/// Peers at one IP address at most, by default ([`Limits::max_peers_per_ip`]), not counting
/// those the user added by hand.
pub const MAX_PEERS_PER_IP: usize = 16;
/// A newcomer refused for a full peer table is told ([`Event::NewcomerRefused`]) at most this
/// often.
pub const REFUSED_TOLD_EVERY: Duration = Duration::from_secs(600);
/// A peer heard from this recently is never evicted to make room (nor one with messages
/// waiting).
pub const PROTECTED_AFTER_HEARD: Duration = Duration::from_secs(24 * 60 * 60);
/// A peer that never wrote us a message we showed (its watermark is 0) and that the user did
/// not add is kept from eviction only this long after it was last heard, whatever waits for it: identities made by the hundred, that prove
/// themselves and go silent, would otherwise hold every place for a day — for ever once a
/// group message waits for them.
pub const UNENGAGED_PROTECTED_AFTER_HEARD: Duration = Duration::from_secs(10 * 60);
/// A peer whose outstanding data has not been acknowledged for this long is unreachable.
pub const UNREACHABLE_AFTER: Duration = Duration::from_secs(10);
/// Idle peers are pinged this often, keeping round-trip time and liveness current (with up to
/// [`KEEPALIVE_PEERS`] peers online; see [`keepalive_interval`]).
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
/// Up to this many peers online, idle links are pinged every [`KEEPALIVE_INTERVAL`]; beyond it
/// the interval grows with their number, one second per this many peers / 5.
pub const KEEPALIVE_PEERS: usize = 50;

/// How long a link stays idle before it pings, with `peers` online: 5 s up to 50 peers, then
/// one more second per 10 peers (25 s at 250). An idle link carries one Ping and its Ack per
/// interval, so a host's keepalive traffic stays near 10 Pings and Acks a second however
/// large the LAN, instead of growing with it: at 250 peers, pinging each every 5 s alone kept
/// a 2-core machine running 250 hosts busy. A silent peer is found unreachable later in a
/// large office (the interval, then [`UNREACHABLE_AFTER`]).
pub fn keepalive_interval(peers: usize) -> Duration {
    let per_sec = KEEPALIVE_PEERS / 5;
    KEEPALIVE_INTERVAL.max(Duration::from_secs(peers.div_ceil(per_sec) as u64))
}
/// A message not acknowledged this long after it was queued is reported as delayed.
pub const DELAYED_AFTER: Duration = Duration::from_secs(2);
/// A partly reassembled message from a peer that has left is dropped after this long without
/// progress (while the peer is here, its ordered stream always completes the message).
pub const REASSEMBLY_TIMEOUT: Duration = Duration::from_secs(60);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keepalives_slow_down_past_fifty_peers() {
        assert_eq!(keepalive_interval(0), KEEPALIVE_INTERVAL);
        assert_eq!(keepalive_interval(50), Duration::from_secs(5));
        assert_eq!(keepalive_interval(51), Duration::from_secs(6));
        assert_eq!(keepalive_interval(100), Duration::from_secs(10));
        assert_eq!(keepalive_interval(250), Duration::from_secs(25));
    }
}
