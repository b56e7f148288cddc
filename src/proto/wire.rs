//! The wire format: how one UDP datagram is laid out, and its encoder and decoder.
//!
//! A datagram is a fixed prelude (magic and version), a postcard-encoded [`Header`], then any
//! number of frames, each `kind` + length-prefixed body. The length prefix is what lets a peer
//! skip a frame kind it does not know, so later versions can add frames without breaking older
//! peers; and a body may carry more bytes than the fields a version knows, so later versions can
//! also append fields to a frame. `docs/PROTOCOL.md` is the normative description; the test
//! vectors there are checked against this code.
//!
//! Decoding never panics and never allocates more than the datagram's own size suggests:
//! every length is checked against the bytes that remain (postcard does this for strings and
//! sequences; ack ranges are additionally capped).

use super::cookie::Cookie;
use super::identity::{PublicKey, Signature};
use super::ids::{MessageId, PeerId};
use super::nick::is_valid_wire_nick;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::SocketAddr;

/// First four bytes of every tailchat datagram; anything else is not ours and is dropped.
pub const MAGIC: [u8; 4] = *b"TCHT";
/// The protocol version this code speaks (byte 4 of every datagram). Version 2 made identities
/// key pairs and the handshake a signed, cookie-checked exchange; a version-1 peer cannot talk
/// to it (each side reports the other's version).
pub const VERSION: u8 = 2;
/// No datagram is ever sent with a UDP payload larger than this (RFC 9000 §14; Tailscale's
/// tunnel MTU is 1280, so 1200 leaves room for IPv6 and UDP headers).
pub const MAX_DATAGRAM: usize = 1200;
/// At most this many ranges in one ack frame; more is a malformed frame.
pub const MAX_ACK_RANGES: usize = 64;
/// Longest nick accepted on the wire, in bytes. The whole rule is [`super::nick`]'s: a frame
/// whose nick breaks it is malformed.
pub use super::nick::MAX_NICK_BYTES;
/// Entries in one `Peers` frame at most.
pub const MAX_PEER_ENTRIES: usize = 16;
/// Addresses in one peer entry at most.
pub const MAX_ENTRY_ADDRS: usize = 4;

/// Frame kind numbers, as they appear on the wire.
pub mod kind {
    /// "I am here, prove yourself": a token for the address it is sent to.
    pub const HELLO: u32 = 1;
    /// The stateless answer to a hello: the hello's token echoed, and a cookie for the
    /// address, PeerId and session that said hello.
    pub const COOKIE: u32 = 2;
    /// A whole chat message that fits in one frame.
    pub const CHAT: u32 = 3;
    /// One piece of a chat message too large for one frame.
    pub const FRAGMENT: u32 = 4;
    /// Acknowledges packet numbers.
    pub const ACK: u32 = 5;
    /// Asks for an ack, to measure round-trip time and liveness.
    pub const PING: u32 = 6;
    /// The sender's nick changed.
    pub const NICK: u32 = 7;
    /// The sender is leaving.
    pub const LEAVE: u32 = 8;
    /// "I am here" to the whole LAN (broadcast or multicast); answered with a hello.
    pub const ANNOUNCE: u32 = 9;
    /// Peers the sender knows, for peer exchange.
    pub const PEERS: u32 = 10;
    /// The receiver's session as the sender knows it: a restarted receiver drops datagrams
    /// meant for its previous run.
    pub const SESSION: u32 = 11;
    /// The initiator's signed proof of its key, echoing the responder's cookie.
    pub const PROOF: u32 = 12;
    /// The responder's signed proof of its key, echoing the initiator's token.
    pub const PROOF_REPLY: u32 = 13;
    /// An opaque payload for the application (file-transfer control), ordered with the
    /// sender's other stream items. Sent only to peers whose hello has [`super::caps::APP_DATA`].
    pub const APP_DATA: u32 = 14;
    /// The sender is away (with a reason) or back, ordered with its other stream items.
    pub const PRESENCE: u32 = 15;
    /// "Your run is refused here: a later run of your identity took its place": the answer
    /// to a proof of an earlier run that is still running (a copied data directory).
    pub const SUPERSEDED: u32 = 16;
}

/// Bits of a message's `flags` (in `Chat` and `Fragment`); a receiver ignores bits it does not
/// know.
pub mod flags {
    /// An action (`/me waves`), shown as `* alice waves` rather than `<alice> waves`.
    pub const ACTION: u64 = 1;
}

/// Longest away reason accepted on the wire, in bytes; a longer one makes the frame malformed.
pub const MAX_AWAY_BYTES: usize = 256;

/// Capability bits of [`Hello::caps`]; a peer ignores bits it does not know.
pub mod caps {
    /// The sender understands `AppData` frames (kind 14). A peer without it would skip the
    /// frame and leave a gap in its stream, so `AppData` goes only to peers that set it.
    /// Every version-2 peer takes `AppData` and `Presence`, whatever it sets.
    pub const APP_DATA: u64 = 1;
    /// The sender is ephemeral (a script): once it has left, nobody keeps messages for it or
    /// lists it (set in `Proof` and `ProofReply`).
    pub const EPHEMERAL: u64 = 2;
    /// The sender is a script (its input is not a person): it waits only a moment for the
    /// peers it is told of, so peer exchange with it is not delayed (set in `Proof` and
    /// `ProofReply`; spec §8.7).
    pub const SCRIPT: u64 = 4;
}

/// The largest payload of one `AppData` frame, in bytes: it travels whole in one frame, like a
/// fragment.
pub const MAX_APP_DATA: usize = super::FRAGMENT_BYTES;

/// What follows the prelude in every datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// Who sent this datagram (only a proof proves it; see `docs/PROTOCOL.md` §8).
    pub sender: PeerId,
    /// The sender's run: non-zero, larger for every later run of the same identity.
    pub session: u64,
    /// The sender's packet number towards this receiver; meaningful only when the datagram
    /// carries an ack-eliciting frame.
    pub packet: u64,
}

/// Body of `Hello`: asks whoever is at the address for a cookie.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The sender's token for the address the hello is sent to, echoed in the `Cookie` and in
    /// the `ProofReply`, which proves they answer this hello.
    pub token: Cookie,
    /// Capability bits; none are defined in version 2, so this is 0. Unknown bits are ignored.
    pub caps: u64,
}

/// Body of `Cookie`, the stateless answer to a hello.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CookieReply {
    /// The hello's token.
    pub echo: Cookie,
    /// The answerer's cookie for the hello's source address, PeerId and session, to be echoed
    /// in a `Proof`.
    pub cookie: Cookie,
}

/// Body of `Announce`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Announce {
    /// Capability bits; 0 in version 2.
    pub caps: u64,
}

/// Body of `Proof`: the initiator proves its key, answering a `Cookie`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proof {
    /// The sender's public key; the header's sender must be its PeerId.
    pub key: PublicKey,
    /// The receiver's cookie, from its `Cookie` frame.
    pub echo: Cookie,
    /// The sender's token for the receiver's address, to be echoed in the `ProofReply`.
    pub challenge: Cookie,
    /// The sender's display name.
    pub nick: String,
    /// The UDP port the sender listens on.
    pub port: u16,
    /// Capability bits; 0 in version 2.
    pub caps: u64,
    /// The sender's signature over the transcript (`identity::Transcript`, domain
    /// `identity::PROOF_DOMAIN`).
    pub signature: Signature,
}

/// Body of `ProofReply`: the responder proves its key, answering a `Proof`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProofReply {
    /// The sender's public key; the header's sender must be its PeerId.
    pub key: PublicKey,
    /// The `Proof`'s challenge: the receiver's token for the sender's address.
    pub echo: Cookie,
    /// The sender's display name.
    pub nick: String,
    /// The UDP port the sender listens on.
    pub port: u16,
    /// Capability bits; 0 in version 2.
    pub caps: u64,
    /// The sender's signature over the transcript (domain `identity::PROOF_REPLY_DOMAIN`).
    pub signature: Signature,
}

/// Body of `Superseded`: the answer to a fresh, signed `Proof` refused because it comes from
/// an earlier run of a peer whose later run took its place (spec §5.15).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Superseded {
    /// The refused `Proof`'s challenge: the receiver's token for the sender's address.
    pub echo: Cookie,
    /// The session of the later run, as the sender has it on record.
    pub session: u64,
}

/// Body of `Chat`: a whole message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chat {
    /// Position in the sender→receiver stream; orders and de-duplicates.
    pub seq: u64,
    /// The sender's message id, the same for every recipient of this message.
    pub msg: MessageId,
    /// True for a direct message to this receiver alone, false for a group message.
    pub direct: bool,
    /// The text, UTF-8.
    pub text: String,
    /// Bits of [`flags`]: how the message is meant (an action, say).
    pub flags: u64,
    /// Milliseconds between the sender writing the message and sending this datagram, by the
    /// sender's monotonic clock: the receiver takes "now minus age" as the time it was written,
    /// so neither clock needs to be right.
    pub age_ms: u64,
}

/// Body of `Fragment`: piece `index` of `count` of one message's UTF-8 bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fragment {
    /// Position in the sender→receiver stream; a message's fragments take consecutive seqs.
    pub seq: u64,
    /// The message this is a piece of.
    pub msg: MessageId,
    /// True for a direct message.
    pub direct: bool,
    /// Which piece, from 0.
    pub index: u16,
    /// How many pieces the message has (2 or more).
    pub count: u16,
    /// The piece's bytes; pieces may split a UTF-8 character, the whole is valid UTF-8.
    pub data: Vec<u8>,
    /// The message's [`flags`], the same in every piece.
    pub flags: u64,
    /// As [`Chat::age_ms`], when this piece was sent.
    pub age_ms: u64,
}

/// Body of `Nick`: the sender's new nick, ordered with its messages.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NickChange {
    /// Position in the sender→receiver stream.
    pub seq: u64,
    /// The new nick.
    pub nick: String,
}

/// Body of `Presence`: whether the sender is away, ordered with its messages.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Presence {
    /// Position in the sender→receiver stream.
    pub seq: u64,
    /// `None`: here. `Some(reason)`: away, with a reason of at most [`MAX_AWAY_BYTES`] bytes
    /// (perhaps empty).
    pub away: Option<String>,
}

/// One peer in a `Peers` frame.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerEntry {
    /// Its identity.
    pub id: PeerId,
    /// Its nick.
    pub nick: String,
    /// Addresses the sender reaches it at, the one that last worked first.
    pub addrs: Vec<SocketAddr>,
    /// Seconds since the sender last heard from it.
    pub heard_secs: u32,
}

/// Body of `Peers`: some of the peers the sender knows (a long list takes several frames).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerList {
    /// Position in the sender→receiver stream.
    pub seq: u64,
    /// The peers.
    pub peers: Vec<PeerEntry>,
}

/// Body of `AppData`: an opaque payload for the application.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppData {
    /// Position in the sender→receiver stream.
    pub seq: u64,
    /// The payload, at most [`MAX_APP_DATA`] bytes; the core does not look inside.
    pub data: Vec<u8>,
}

/// One inclusive range of acknowledged packet numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AckRange {
    /// Lowest packet number in the range.
    pub first: u64,
    /// Highest packet number in the range (≥ `first`).
    pub last: u64,
}

/// Body of `Ack`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    /// Microseconds between receiving the highest acknowledged packet and sending this ack, so
    /// the sender can take it out of its round-trip-time sample.
    pub delay_us: u64,
    /// Acknowledged packet numbers, highest range first, ranges disjoint and not adjacent.
    pub ranges: Vec<AckRange>,
}

/// A decoded frame of a kind this version knows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// See [`kind::HELLO`].
    Hello(Hello),
    /// See [`kind::COOKIE`].
    Cookie(CookieReply),
    /// See [`kind::CHAT`].
    Chat(Chat),
    /// See [`kind::FRAGMENT`].
    Fragment(Fragment),
    /// See [`kind::ACK`].
    Ack(Ack),
    /// See [`kind::PING`].
    Ping,
    /// See [`kind::NICK`].
    Nick(NickChange),
    /// See [`kind::LEAVE`].
    Leave,
    /// See [`kind::ANNOUNCE`].
    Announce(Announce),
    /// See [`kind::PEERS`].
    Peers(PeerList),
    /// See [`kind::SESSION`].
    Session(u64),
    /// See [`kind::APP_DATA`].
    AppData(AppData),
    /// See [`kind::PROOF`].
    Proof(Proof),
    /// See [`kind::PROOF_REPLY`].
    ProofReply(ProofReply),
    /// See [`kind::PRESENCE`].
    Presence(Presence),
    /// See [`kind::SUPERSEDED`].
    Superseded(Superseded),
}

impl Frame {
    /// True if receiving this frame obliges the receiver to acknowledge the packet.
    pub fn is_ack_eliciting(&self) -> bool {
        matches!(
            self,
            Frame::Chat(_)
                | Frame::Fragment(_)
                | Frame::Ping
                | Frame::Nick(_)
                | Frame::Leave
                | Frame::Peers(_)
                | Frame::AppData(_)
                | Frame::Presence(_)
        )
    }

    /// The stream sequence number of a stream frame (`Chat`, `Fragment`, `Nick`, `Peers`).
    pub fn stream_seq(&self) -> Option<u64> {
        match self {
            Frame::Chat(c) => Some(c.seq),
            Frame::Fragment(f) => Some(f.seq),
            Frame::Nick(n) => Some(n.seq),
            Frame::Peers(p) => Some(p.seq),
            Frame::AppData(a) => Some(a.seq),
            Frame::Presence(p) => Some(p.seq),
            _ => None,
        }
    }

    /// This frame's kind number on the wire.
    fn kind(&self) -> u32 {
        match self {
            Frame::Hello(_) => kind::HELLO,
            Frame::Cookie(_) => kind::COOKIE,
            Frame::Chat(_) => kind::CHAT,
            Frame::Fragment(_) => kind::FRAGMENT,
            Frame::Ack(_) => kind::ACK,
            Frame::Ping => kind::PING,
            Frame::Nick(_) => kind::NICK,
            Frame::Leave => kind::LEAVE,
            Frame::Announce(_) => kind::ANNOUNCE,
            Frame::Peers(_) => kind::PEERS,
            Frame::Session(_) => kind::SESSION,
            Frame::AppData(_) => kind::APP_DATA,
            Frame::Proof(_) => kind::PROOF,
            Frame::ProofReply(_) => kind::PROOF_REPLY,
            Frame::Presence(_) => kind::PRESENCE,
            Frame::Superseded(_) => kind::SUPERSEDED,
        }
    }

    /// Appends this frame (kind, length, body) to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let body = match self {
            Frame::Hello(h) => to_vec(h),
            Frame::Cookie(c) => to_vec(c),
            Frame::Announce(a) => to_vec(a),
            Frame::Proof(p) => to_vec(p),
            Frame::ProofReply(p) => to_vec(p),
            Frame::Peers(p) => to_vec(p),
            Frame::Session(s) => to_vec(s),
            Frame::Chat(c) => to_vec(c),
            Frame::Fragment(f) => to_vec(f),
            Frame::Ack(a) => to_vec(a),
            Frame::Nick(n) => to_vec(n),
            Frame::AppData(a) => to_vec(a),
            Frame::Presence(p) => to_vec(p),
            Frame::Superseded(s) => to_vec(s),
            Frame::Ping | Frame::Leave => Vec::new(),
        };
        extend(out, &(self.kind(), body.as_slice()));
    }

    /// The number of bytes [`Frame::encode_into`] appends.
    pub fn encoded_len(&self) -> usize {
        let mut v = Vec::new();
        self.encode_into(&mut v);
        v.len()
    }
}

/// Why a datagram could not be decoded. The datagram is dropped and counted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// Shorter than the prelude, or does not start with [`MAGIC`]: not a tailchat datagram.
    NotTailchat,
    /// A tailchat datagram of another protocol version.
    UnsupportedVersion(u8),
    /// The header is cut short or malformed.
    BadHeader,
    /// A frame of a known kind whose body does not decode (or breaks a limit).
    BadFrame(u32),
    /// The frame list is cut short (a kind or length runs past the end).
    Truncated,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::NotTailchat => write!(f, "not a tailchat datagram"),
            DecodeError::UnsupportedVersion(v) => {
                write!(f, "protocol version {v} (this program speaks {VERSION})")
            }
            DecodeError::BadHeader => write!(f, "malformed header"),
            DecodeError::BadFrame(k) => write!(f, "malformed frame of kind {k}"),
            DecodeError::Truncated => write!(f, "truncated frame list"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// A decoded datagram.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Datagram {
    /// Sender, session and packet number.
    pub header: Header,
    /// The frames this version knows, in order.
    pub frames: Vec<Frame>,
    /// How many frames of unknown kinds were skipped.
    pub unknown_frames: u32,
}

impl Datagram {
    /// True if the receiver must acknowledge this datagram's packet number.
    pub fn is_ack_eliciting(&self) -> bool {
        self.frames.iter().any(Frame::is_ack_eliciting)
    }
}

/// Writes the prelude and header that start every datagram.
pub fn encode_header(header: &Header, out: &mut Vec<u8>) {
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    extend(out, header);
}

/// Encodes a whole datagram (used by tests and the spec's test vectors).
pub fn encode(header: &Header, frames: &[Frame]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    encode_header(header, &mut out);
    for f in frames {
        f.encode_into(&mut out);
    }
    out
}

/// Decodes one datagram.
///
/// # Errors
/// Returns a [`DecodeError`] saying what was wrong; never panics, whatever the bytes.
pub fn decode(bytes: &[u8]) -> Result<Datagram, DecodeError> {
    let (prelude, after) = bytes.split_at_checked(5).ok_or(DecodeError::NotTailchat)?;
    let (magic, version) = prelude.split_at(4);
    if magic != MAGIC {
        return Err(DecodeError::NotTailchat);
    }
    if version != [VERSION] {
        let v = version.first().copied().unwrap_or_default();
        return Err(DecodeError::UnsupportedVersion(v));
    }
    let (header, mut rest): (Header, &[u8]) =
        postcard::take_from_bytes(after).map_err(|_| DecodeError::BadHeader)?;
    let mut frames = Vec::new();
    let mut unknown_frames = 0;
    while !rest.is_empty() {
        let ((kind, body), tail): ((u32, &[u8]), &[u8]) =
            postcard::take_from_bytes(rest).map_err(|_| DecodeError::Truncated)?;
        rest = tail;
        match decode_frame(kind, body) {
            Ok(Some(frame)) => frames.push(frame),
            Ok(None) => unknown_frames += 1,
            Err(()) => return Err(DecodeError::BadFrame(kind)),
        }
    }
    Ok(Datagram {
        header,
        frames,
        unknown_frames,
    })
}

/// Decodes a frame body of the given kind: `Ok(None)` for a kind this version does not know.
fn decode_frame(kind: u32, body: &[u8]) -> Result<Option<Frame>, ()> {
    let frame = match kind {
        kind::HELLO => Frame::Hello(take(body)?),
        kind::COOKIE => Frame::Cookie(take(body)?),
        kind::CHAT => Frame::Chat(take(body)?),
        kind::FRAGMENT => {
            let f: Fragment = take(body)?;
            if f.count < 2 || f.index >= f.count || f.data.is_empty() {
                return Err(());
            }
            Frame::Fragment(f)
        }
        kind::ACK => {
            let a: Ack = take(body)?;
            let ordered = a
                .ranges
                .iter()
                .zip(a.ranges.iter().skip(1))
                .all(|(higher, lower)| lower.last.saturating_add(1) < higher.first);
            if a.ranges.is_empty()
                || a.ranges.len() > MAX_ACK_RANGES
                || !ordered
                || a.ranges.iter().any(|r| r.first > r.last)
            {
                return Err(());
            }
            Frame::Ack(a)
        }
        kind::PING => Frame::Ping,
        kind::NICK => {
            let n: NickChange = take(body)?;
            check_nick(&n.nick)?;
            Frame::Nick(n)
        }
        kind::LEAVE => Frame::Leave,
        kind::ANNOUNCE => Frame::Announce(take(body)?),
        kind::SESSION => Frame::Session(take(body)?),
        kind::APP_DATA => {
            let a: AppData = take(body)?;
            if a.data.len() > MAX_APP_DATA {
                return Err(());
            }
            Frame::AppData(a)
        }
        kind::PEERS => {
            let p: PeerList = take(body)?;
            let entries_ok = p.peers.iter().all(|e| {
                is_valid_wire_nick(&e.nick)
                    && !e.addrs.is_empty()
                    && e.addrs.len() <= MAX_ENTRY_ADDRS
            });
            if p.peers.is_empty() || p.peers.len() > MAX_PEER_ENTRIES || !entries_ok {
                return Err(());
            }
            Frame::Peers(p)
        }
        kind::PROOF => {
            let p: Proof = take(body)?;
            check_nick(&p.nick)?;
            Frame::Proof(p)
        }
        kind::PROOF_REPLY => {
            let p: ProofReply = take(body)?;
            check_nick(&p.nick)?;
            Frame::ProofReply(p)
        }
        kind::PRESENCE => {
            let p: Presence = take(body)?;
            if p.away.as_ref().is_some_and(|r| r.len() > MAX_AWAY_BYTES) {
                return Err(());
            }
            Frame::Presence(p)
        }
        kind::SUPERSEDED => Frame::Superseded(take(body)?),
        _ => return Ok(None),
    };
    Ok(Some(frame))
}

/// A frame whose nick breaks the wire's nick rule (`docs/PROTOCOL.md` §3.4) is malformed.
fn check_nick(nick: &str) -> Result<(), ()> {
    if is_valid_wire_nick(nick) {
        Ok(())
    } else {
        Err(())
    }
}

/// Decodes a body's known fields; bytes after them are a later version's fields and ignored.
fn take<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, ()> {
    postcard::take_from_bytes(body)
        .map(|(v, _rest)| v)
        .map_err(|_| ())
}

/// Encodes the fields of a stream frame that follow its sequence number: a sender encodes
/// them once per message and only prefixes `kind`, length and `seq` each time it (re)sends.
pub fn stream_fields<T: Serialize>(fields: &T) -> Vec<u8> {
    to_vec(fields)
}

/// Appends a stream frame (`Chat`, `Fragment`, `Nick`, `Peers`, `AppData` or `Presence`) from
/// its kind, sequence number, the fields after it (see [`stream_fields`]) and, for a message's
/// frames, its age in milliseconds (the last field, which changes from one sending to the
/// next); the same bytes as [`Frame::encode_into`].
pub fn encode_stream_frame(
    kind: u32,
    seq: u64,
    fields: &[u8],
    age_ms: Option<u64>,
    out: &mut Vec<u8>,
) {
    let age_len = age_ms.map_or(0, varint_len);
    extend(out, &kind);
    extend(out, &((varint_len(seq) + fields.len() + age_len) as u64));
    extend(out, &seq);
    out.extend_from_slice(fields);
    if let Some(age) = age_ms {
        extend(out, &age);
    }
}

/// The length of what [`encode_stream_frame`] appends.
pub fn stream_frame_len(kind: u32, seq: u64, fields_len: usize, age_ms: Option<u64>) -> usize {
    let body = varint_len(seq) + fields_len + age_ms.map_or(0, varint_len);
    varint_len(u64::from(kind)) + varint_len(body as u64) + body
}

/// Bytes of a postcard varint.
fn varint_len(v: u64) -> usize {
    (64 - v.max(1).leading_zeros() as usize).div_ceil(7)
}

/// `value` postcard-encoded.
fn to_vec<T: Serialize>(value: &T) -> Vec<u8> {
    let mut v = Vec::new();
    extend(&mut v, value);
    v
}

/// Appends `value`, postcard-encoded, to `out`.
fn extend<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    // Serializing plain structs into a Vec cannot fail: postcard only errors on unsupported
    // serde types (none here) or on a full fixed buffer (a Vec grows).
    let buf = std::mem::take(out);
    *out = postcard::to_extend(value, buf).expect("postcard encoding into a Vec is infallible");
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)] // a test that indexes out of bounds fails, as it should
mod tests {
    use super::*;

    fn header() -> Header {
        Header {
            sender: PeerId(0x0123_4567_89ab_cdef),
            session: 42,
            packet: 7,
        }
    }

    fn proof(nick: &str) -> Proof {
        Proof {
            key: PublicKey([3; 32]),
            echo: [4; 16],
            challenge: [5; 16],
            nick: nick.into(),
            port: 7654,
            caps: 0,
            signature: Signature([6; 64]),
        }
    }

    fn proof_reply(nick: &str) -> ProofReply {
        ProofReply {
            key: PublicKey([7; 32]),
            echo: [8; 16],
            nick: nick.into(),
            port: 1,
            caps: 3,
            signature: Signature([9; 64]),
        }
    }

    #[test]
    fn every_frame_round_trips() {
        let frames = vec![
            Frame::Hello(Hello {
                token: [1; 16],
                caps: 0,
            }),
            Frame::Cookie(CookieReply {
                echo: [1; 16],
                cookie: [2; 16],
            }),
            Frame::Proof(proof("alice")),
            Frame::ProofReply(proof_reply("bob")),
            Frame::Chat(Chat {
                seq: 0,
                msg: MessageId(1),
                direct: false,
                text: "héllo 👋".into(),
                flags: flags::ACTION,
                age_ms: 183_000,
            }),
            Frame::Fragment(Fragment {
                seq: 300,
                msg: MessageId(2),
                direct: true,
                index: 1,
                count: 3,
                data: vec![0, 255, 7],
                flags: 0,
                age_ms: 0,
            }),
            Frame::Ack(Ack {
                delay_us: 1234,
                ranges: vec![
                    AckRange {
                        first: 10,
                        last: 12,
                    },
                    AckRange { first: 1, last: 5 },
                ],
            }),
            Frame::Ping,
            Frame::Nick(NickChange {
                seq: 9,
                nick: "alicia".into(),
            }),
            Frame::Leave,
            Frame::Session(u64::MAX),
            Frame::AppData(AppData {
                seq: 12,
                data: vec![0, 1, 255],
            }),
            Frame::Announce(Announce { caps: 0 }),
            Frame::Presence(Presence {
                seq: 13,
                away: Some("lunch".into()),
            }),
            Frame::Presence(Presence {
                seq: 14,
                away: None,
            }),
            Frame::Peers(PeerList {
                seq: 4,
                peers: vec![PeerEntry {
                    id: PeerId(77),
                    nick: "dave".into(),
                    addrs: vec![
                        "10.1.2.3:7654".parse().unwrap(),
                        "[fd7a::5]:7000".parse().unwrap(),
                    ],
                    heard_secs: 3,
                }],
            }),
        ];
        let bytes = encode(&header(), &frames);
        let d = decode(&bytes).unwrap();
        assert_eq!(d.header, header());
        assert_eq!(d.frames, frames);
        assert_eq!(d.unknown_frames, 0);
    }

    #[test]
    fn stream_frames_encoded_from_fields_match_whole_frames() {
        for (seq, text) in [
            (0u64, ""),
            (127, "x"),
            (128, "é"),
            (1 << 40, &"y".repeat(300)[..]),
        ] {
            let whole = Frame::Chat(Chat {
                seq,
                msg: MessageId(9),
                direct: true,
                text: text.into(),
                flags: 1,
                age_ms: seq,
            });
            let fields = stream_fields(&(MessageId(9), true, text, 1u64));
            let mut out = Vec::new();
            encode_stream_frame(kind::CHAT, seq, &fields, Some(seq), &mut out);
            let mut expected = Vec::new();
            whole.encode_into(&mut expected);
            assert_eq!(out, expected);
            assert_eq!(
                stream_frame_len(kind::CHAT, seq, fields.len(), Some(seq)),
                out.len()
            );
        }
        let fragment = Frame::Fragment(Fragment {
            seq: 3,
            msg: MessageId(2),
            direct: false,
            index: 1,
            count: 4,
            data: vec![1, 2, 3],
            flags: 0,
            age_ms: 70_000,
        });
        let mut out = Vec::new();
        let fields = stream_fields(&(MessageId(2), false, 1u16, 4u16, &[1u8, 2, 3][..], 0u64));
        encode_stream_frame(kind::FRAGMENT, 3, &fields, Some(70_000), &mut out);
        let mut expected = Vec::new();
        fragment.encode_into(&mut expected);
        assert_eq!(out, expected);
        let nick = Frame::Nick(NickChange {
            seq: 5,
            nick: "n".into(),
        });
        let mut out = Vec::new();
        encode_stream_frame(kind::NICK, 5, &stream_fields(&"n"), None, &mut out);
        let mut expected = Vec::new();
        nick.encode_into(&mut expected);
        assert_eq!(out, expected);
    }

    #[test]
    fn unknown_frames_are_skipped_and_counted() {
        let mut bytes = encode(&header(), &[Frame::Ping]);
        extend(&mut bytes, &(99u32, &[1u8, 2, 3][..]));
        Frame::Leave.encode_into(&mut bytes);
        let d = decode(&bytes).unwrap();
        assert_eq!(d.frames, vec![Frame::Ping, Frame::Leave]);
        assert_eq!(d.unknown_frames, 1);
    }

    #[test]
    fn longer_bodies_are_accepted_for_forward_compatibility() {
        let mut body = to_vec(&proof("a"));
        body.extend_from_slice(&[9, 9, 9]);
        let mut bytes = encode(&header(), &[]);
        extend(&mut bytes, &(kind::PROOF, body.as_slice()));
        let d = decode(&bytes).unwrap();
        assert_eq!(d.frames, vec![Frame::Proof(proof("a"))]);
    }

    #[test]
    fn wrong_magic_version_and_truncation_are_typed_errors() {
        let bytes = encode(&header(), &[Frame::Ping]);
        assert_eq!(decode(b"TCH"), Err(DecodeError::NotTailchat));
        assert_eq!(decode(b"XXXX\x02abc"), Err(DecodeError::NotTailchat));
        let mut v1 = bytes.clone();
        v1[4] = 1;
        assert_eq!(decode(&v1), Err(DecodeError::UnsupportedVersion(1)));
        assert_eq!(decode(&bytes[..6]), Err(DecodeError::BadHeader));
        let chat = encode(
            &header(),
            &[Frame::Chat(Chat {
                seq: 1,
                msg: MessageId(1),
                direct: false,
                text: "hello".into(),
                flags: 0,
                age_ms: 0,
            })],
        );
        let header_len = encode(&header(), &[]).len();
        for cut in (5..chat.len()).filter(|&c| c != header_len) {
            assert!(decode(&chat[..cut]).is_err(), "cut at {cut} decoded");
        }
        assert_eq!(decode(&chat[..header_len]).unwrap().frames, vec![]);
    }

    #[test]
    fn limits_are_enforced() {
        let bad_acks = [
            vec![],
            vec![AckRange { first: 5, last: 4 }],
            vec![
                AckRange { first: 1, last: 2 },
                AckRange { first: 5, last: 6 },
            ],
            vec![
                AckRange { first: 5, last: 6 },
                AckRange { first: 1, last: 4 },
            ],
        ];
        for ranges in bad_acks {
            let bytes = encode(
                &header(),
                &[Frame::Ack(Ack {
                    delay_us: 0,
                    ranges,
                })],
            );
            assert_eq!(decode(&bytes), Err(DecodeError::BadFrame(kind::ACK)));
        }
        let long_nick = Frame::Nick(NickChange {
            seq: 0,
            nick: "x".repeat(MAX_NICK_BYTES + 1),
        });
        assert!(decode(&encode(&header(), &[long_nick])).is_err());
        let bad_fragment = Frame::Fragment(Fragment {
            seq: 0,
            msg: MessageId(1),
            direct: false,
            index: 2,
            count: 2,
            data: vec![1],
            flags: 0,
            age_ms: 0,
        });
        assert!(decode(&encode(&header(), &[bad_fragment])).is_err());
        let too_long = Frame::AppData(AppData {
            seq: 0,
            data: vec![7; MAX_APP_DATA + 1],
        });
        assert_eq!(
            decode(&encode(&header(), &[too_long])),
            Err(DecodeError::BadFrame(kind::APP_DATA))
        );
        let long_reason = Frame::Presence(Presence {
            seq: 0,
            away: Some("z".repeat(MAX_AWAY_BYTES + 1)),
        });
        assert_eq!(
            decode(&encode(&header(), &[long_reason])),
            Err(DecodeError::BadFrame(kind::PRESENCE))
        );
    }

    #[test]
    fn a_nick_that_breaks_the_nick_rule_makes_its_frame_malformed() {
        let entry = |nick: &str| PeerEntry {
            id: PeerId(5),
            nick: nick.into(),
            addrs: vec!["10.0.0.5:7654".parse().unwrap()],
            heard_secs: 0,
        };
        // The wire's rule (§3.4): 1 to 64 bytes, no '#'; the rest is for the display to make safe.
        let too_long = "a".repeat(MAX_NICK_BYTES + 1);
        for bad in ["", "c#dev", too_long.as_str()] {
            let frames = [
                (kind::PROOF, Frame::Proof(proof(bad))),
                (kind::PROOF_REPLY, Frame::ProofReply(proof_reply(bad))),
                (
                    kind::NICK,
                    Frame::Nick(NickChange {
                        seq: 0,
                        nick: bad.into(),
                    }),
                ),
                (
                    kind::PEERS,
                    Frame::Peers(PeerList {
                        seq: 0,
                        peers: vec![entry("ok"), entry(bad)],
                    }),
                ),
            ];
            for (k, frame) in frames {
                let bytes = encode(&header(), &[Frame::Ping, frame]);
                assert_eq!(decode(&bytes), Err(DecodeError::BadFrame(k)), "{bad:?}");
            }
        }
        let ok = encode(&header(), &[Frame::Proof(proof("c-dev"))]);
        assert!(decode(&ok).is_ok());
    }

    #[test]
    fn invalid_utf8_text_is_rejected() {
        let mut body = Vec::new();
        extend(&mut body, &(0u64, 1u64, false));
        extend(&mut body, &[0xffu8, 0xfe][..]);
        let mut bytes = encode(&header(), &[]);
        extend(&mut bytes, &(kind::CHAT, body.as_slice()));
        assert_eq!(decode(&bytes), Err(DecodeError::BadFrame(kind::CHAT)));
    }
}
