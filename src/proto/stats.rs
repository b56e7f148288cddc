//! Counters of what came in, went out and was dropped, for diagnostics and tests: the
//! endpoint's ([`Stats`]) and the links' ([`LinkCounters`], summed over peers into
//! [`Stats::links`]).

/// Counters of what came in and what was dropped, for diagnostics and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Datagrams handed to [`crate::proto::Endpoint::handle_datagram`].
    pub datagrams_in: u64,
    /// Datagrams produced by [`crate::proto::Endpoint::poll_transmit`] and
    /// [`crate::proto::Endpoint::poll_announce`].
    pub datagrams_out: u64,
    /// Dropped: not a tailchat datagram.
    pub not_tailchat: u64,
    /// Dropped: another protocol version.
    pub bad_version: u64,
    /// Dropped: malformed header or frame (an invalid nick included, see
    /// [`crate::proto::nick`]).
    pub malformed: u64,
    /// Dropped: our own datagram (heard back from a broadcast).
    pub own: u64,
    /// Dropped: a datagram (not a handshake) from a PeerId we do not know.
    pub unknown_sender: u64,
    /// Dropped: a datagram (not a handshake) from a known PeerId at an address its current
    /// session has not proved itself at (someone claiming it, or the peer moved: either way it
    /// gets a hello and must prove itself there).
    pub unproven_address: u64,
    /// Dropped: a datagram from an old or unknown session of a known peer, or a proof from an
    /// earlier run of it.
    pub stale_session: u64,
    /// Dropped: a cookie, proof or proof reply whose echoed token or cookie is not one we
    /// made for its source address (forged, replayed from elsewhere, or expired).
    pub bad_cookie: u64,
    /// Dropped: a proof or proof reply whose key is not its sender's (by hash, or not the key
    /// pinned for that PeerId) or whose signature does not verify.
    pub bad_proof: u64,
    /// Dropped: a proof from a new peer that could not be admitted (the table full of peers
    /// that must stay, or its IP address holding as many peers as one may).
    pub table_full: u64,
    /// New addresses not taken: an online peer proved itself at one, but then answered at an
    /// address it had proven before (it did not move; the new one may be a third party
    /// relaying its datagrams, §8.3 "Roaming").
    pub address_kept: u64,
    /// Dropped: a LAN announcement heard while discovery is off
    /// ([`crate::proto::Config::discovery`]).
    pub discovery_off: u64,
    /// Frames of unknown kinds skipped.
    pub unknown_frames: u64,
    /// The links' counters, summed over peers (duplicates, retransmissions, timeouts…).
    pub links: LinkCounters,
}

/// Counts a link keeps for the endpoint's statistics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LinkCounters {
    /// Stream items that arrived again after delivery.
    pub duplicates: u64,
    /// Stream items sent again after a loss.
    pub retransmitted: u64,
    /// Retransmission timeouts that fired.
    pub timeouts: u64,
    /// Acks that named a packet already declared lost: it was late, not lost (each brings
    /// an RTT sample that lengthens the timeout).
    pub spurious: u64,
    /// Datagrams dropped because an item lay beyond the receive window.
    pub out_of_window: u64,
    /// Fragments that did not fit the message being reassembled, and reassemblies abandoned.
    pub bad_fragments: u64,
}

impl LinkCounters {
    /// Adds what one link counted since `counted` (its counters when last added), and moves
    /// `counted` on to `now`: links only count up, so the sum stays exact without walking
    /// every link each time.
    pub(crate) fn add_since(&mut self, counted: &mut LinkCounters, now: LinkCounters) {
        self.duplicates += now.duplicates - counted.duplicates;
        self.retransmitted += now.retransmitted - counted.retransmitted;
        self.timeouts += now.timeouts - counted.timeouts;
        self.spurious += now.spurious - counted.spurious;
        self.out_of_window += now.out_of_window - counted.out_of_window;
        self.bad_fragments += now.bad_fragments - counted.bad_fragments;
        *counted = now;
    }
}
