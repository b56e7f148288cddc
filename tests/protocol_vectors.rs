//! Checks the test vectors of `docs/PROTOCOL.md` against the real encoder and decoder.
//!
//! The spec is the contract for implementations in other languages, so its bytes must be what
//! this code produces and accepts. Every `Vector: NAME` line in the spec, followed by a fenced
//! `hex` block, is decoded with [`wire::decode`] and compared with a [`Datagram`] built here by
//! name; that datagram is then re-encoded with [`wire::encode`] and compared byte for byte with
//! the spec. A vector missing from the spec, or one the spec has and this file does not know,
//! fails the test, so the two cannot drift apart silently.
//!
//! The file-transfer vectors of §13.6 are checked in [`file_vectors`]: its control messages are
//! datagrams like the rest, and the data connection's vectors are TCP byte strings, played
//! against the real offerer and receiver.

#[path = "protocol_vectors/file_vectors.rs"]
mod file_vectors;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use tailchat::proto::identity::{Transcript, PROOF_DOMAIN, PROOF_REPLY_DOMAIN};
use tailchat::proto::wire::{
    self, Ack, AckRange, Announce, Chat, CookieReply, Datagram, DecodeError, Fragment, Frame,
    Header, Hello, NickChange, PeerEntry, PeerList, Presence, Proof, ProofReply, Superseded,
};
use tailchat::proto::{Identity, MessageId, PeerId};

/// Where the spec lives, relative to the crate root.
const SPEC: &str = "docs/PROTOCOL.md";
/// The spec promises at least this many vectors.
const MIN_VECTORS: usize = 30;
/// Frame kinds version 2 knows; anything else is skipped by a decoder.
const KNOWN_KINDS: std::ops::RangeInclusive<u64> = 1..=16;

/// One test vector as found in the spec.
#[derive(Debug)]
struct Vector {
    /// The name after `Vector: `.
    name: String,
    /// The bytes of the `hex` block.
    bytes: Vec<u8>,
    /// 1-based line of the `Vector:` line, for error messages.
    line: usize,
}

/// What re-encoding the decoded datagram must give, relative to the vector's own bytes.
#[derive(Debug)]
enum Reencoding {
    /// Exactly the vector's bytes.
    Identical,
    /// The vector's bytes minus its frames of unknown kinds (the decoder skips those).
    WithoutUnknownFrames,
    /// The bytes of another vector: the body carries fields a later version added, which the
    /// decoder ignores, so the canonical encoding is that of the plain frame.
    SameAsVector(&'static str),
}

/// What a named vector must decode to.
struct Expected {
    /// The vector's name in the spec.
    name: &'static str,
    /// The decoded datagram.
    datagram: Datagram,
    /// How its re-encoding relates to the spec's bytes.
    reencoding: Reencoding,
}

const ALICE: PeerId = PeerId(0x0123_4567_89ab_cdef);
const BOB: PeerId = PeerId(0xfedc_ba98_7654_3210);
const CAROL: PeerId = PeerId(0x00c0_ffee);

/// Carol's addresses in vector `peers`, as bob lists them.
fn carol_addrs() -> Vec<SocketAddr> {
    vec![
        SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 168, 1, 20)), 7654),
        SocketAddr::new(
            IpAddr::V6(Ipv6Addr::new(0xfd7a, 0x115c, 0xa1e0, 0, 0, 0, 0, 3)),
            7654,
        ),
    ]
}

fn alice(packet: u64) -> Header {
    Header {
        sender: ALICE,
        session: 42,
        packet,
    }
}

fn bob(packet: u64) -> Header {
    Header {
        sender: BOB,
        session: 7,
        packet,
    }
}

fn datagram(header: Header, frames: Vec<Frame>) -> Datagram {
    Datagram {
        header,
        frames,
        unknown_frames: 0,
    }
}

/// Alice's token for bob's address, in her hello (what the reference computes is its own
/// business: a fixed value here).
const TOKEN: [u8; 16] = [
    0x3a, 0x6f, 0x01, 0x9c, 0x52, 0xe8, 0x77, 0x14, 0xb0, 0x2d, 0xc9, 0x45, 0x8e, 0x63, 0xf1, 0x0b,
];
/// Bob's cookie for alice's address, PeerId and session.
const COOKIE: [u8; 16] = [
    0xc4, 0x19, 0x7e, 0x20, 0x5b, 0x93, 0x0a, 0xd6, 0x61, 0xfe, 0x38, 0x4c, 0xa7, 0x12, 0xe5, 0x80,
];

fn alice_hello() -> Frame {
    Frame::Hello(Hello {
        token: TOKEN,
        caps: 0,
    })
}

/// The key pairs of vectors `proof` and `proof-reply`: secret keys of 32 bytes 0x01 (alice)
/// and 0x02 (bob). Their PeerIds are derived from the public keys.
fn alice_key() -> Identity {
    Identity::from_secret([1; 32])
}
fn bob_key() -> Identity {
    Identity::from_secret([2; 32])
}
/// Sessions of the proof vectors.
const ALICE_SESSION: u64 = 42;
const BOB_SESSION: u64 = 7;

/// Alice's proof: she answers bob's cookie, and challenges him with her token.
fn alice_proof() -> Frame {
    let (a, b) = (alice_key(), bob_key());
    let t = Transcript {
        domain: PROOF_DOMAIN,
        echo: COOKIE,
        challenge: TOKEN,
        signer: a.peer_id(),
        receiver: b.peer_id(),
        signer_session: ALICE_SESSION,
        receiver_session: BOB_SESSION,
        key: a.public_key(),
        port: 7654,
        caps: 0,
        nick: "alice",
    };
    Frame::Proof(Proof {
        key: a.public_key(),
        echo: COOKIE,
        challenge: TOKEN,
        nick: "alice".into(),
        port: 7654,
        caps: 0,
        signature: a.sign(&t.to_bytes()),
    })
}

/// Bob's proof reply: he echoes alice's token.
fn bob_proof_reply() -> Frame {
    let (a, b) = (alice_key(), bob_key());
    let t = Transcript {
        domain: PROOF_REPLY_DOMAIN,
        echo: TOKEN,
        challenge: [0; 16],
        signer: b.peer_id(),
        receiver: a.peer_id(),
        signer_session: BOB_SESSION,
        receiver_session: ALICE_SESSION,
        key: b.public_key(),
        port: 7654,
        caps: 0,
        nick: "bob",
    };
    Frame::ProofReply(ProofReply {
        key: b.public_key(),
        echo: TOKEN,
        nick: "bob".into(),
        port: 7654,
        caps: 0,
        signature: b.sign(&t.to_bytes()),
    })
}

/// Every vector the spec must contain, and what each decodes to.
fn expectations() -> Vec<Expected> {
    use Reencoding::*;
    vec![
        Expected {
            name: "hello",
            datagram: datagram(alice(0), vec![alice_hello()]),
            reencoding: Identical,
        },
        Expected {
            name: "cookie",
            datagram: datagram(
                bob(0),
                vec![Frame::Cookie(CookieReply {
                    echo: TOKEN,
                    cookie: COOKIE,
                })],
            ),
            reencoding: Identical,
        },
        Expected {
            name: "proof",
            datagram: datagram(
                Header {
                    sender: alice_key().peer_id(),
                    session: ALICE_SESSION,
                    packet: 0,
                },
                vec![alice_proof()],
            ),
            reencoding: Identical,
        },
        Expected {
            name: "proof-reply",
            datagram: datagram(
                Header {
                    sender: bob_key().peer_id(),
                    session: BOB_SESSION,
                    packet: 0,
                },
                vec![bob_proof_reply()],
            ),
            reencoding: Identical,
        },
        Expected {
            name: "chat",
            datagram: datagram(
                alice(3),
                vec![Frame::Chat(Chat {
                    seq: 2,
                    msg: MessageId(3),
                    direct: false,
                    text: "héllo".into(),
                    flags: 0,
                    age_ms: 0,
                })],
            ),
            reencoding: Identical,
        },
        Expected {
            name: "fragment",
            datagram: datagram(
                alice(200),
                vec![Frame::Fragment(Fragment {
                    seq: 130,
                    msg: MessageId(4),
                    direct: true,
                    index: 2,
                    count: 3,
                    data: b"ld!".to_vec(),
                    flags: 0,
                    age_ms: 183_000,
                })],
            ),
            reencoding: Identical,
        },
        Expected {
            name: "ack",
            datagram: datagram(
                bob(2),
                vec![Frame::Ack(Ack {
                    delay_us: 1500,
                    ranges: vec![
                        AckRange { first: 5, last: 6 },
                        AckRange { first: 0, last: 3 },
                    ],
                })],
            ),
            reencoding: Identical,
        },
        Expected {
            name: "ack-chat-unknown",
            datagram: Datagram {
                header: alice(5),
                frames: vec![
                    Frame::Ack(Ack {
                        delay_us: 0,
                        ranges: vec![AckRange { first: 0, last: 2 }],
                    }),
                    Frame::Chat(Chat {
                        seq: 4,
                        msg: MessageId(5),
                        direct: false,
                        text: "ok".into(),
                        flags: 0,
                        age_ms: 0,
                    }),
                ],
                unknown_frames: 1,
            },
            reencoding: WithoutUnknownFrames,
        },
        Expected {
            name: "nick",
            datagram: datagram(
                alice(6),
                vec![Frame::Nick(NickChange {
                    seq: 5,
                    nick: "alicia".into(),
                })],
            ),
            reencoding: Identical,
        },
        Expected {
            name: "superseded",
            datagram: datagram(
                bob(0),
                vec![Frame::Superseded(Superseded {
                    echo: TOKEN,
                    session: 43,
                })],
            ),
            reencoding: Identical,
        },
        Expected {
            name: "ping",
            datagram: datagram(bob(3), vec![Frame::Ping]),
            reencoding: Identical,
        },
        Expected {
            name: "leave",
            datagram: datagram(alice(7), vec![Frame::Leave]),
            reencoding: Identical,
        },
        Expected {
            name: "hello-extended",
            datagram: datagram(alice(0), vec![alice_hello()]),
            reencoding: SameAsVector("hello"),
        },
        Expected {
            name: "announce",
            datagram: datagram(alice(0), vec![Frame::Announce(Announce { caps: 0 })]),
            reencoding: Identical,
        },
        Expected {
            name: "peers",
            datagram: datagram(
                bob(4),
                vec![Frame::Peers(PeerList {
                    seq: 3,
                    peers: vec![PeerEntry {
                        id: CAROL,
                        nick: "carol".into(),
                        addrs: carol_addrs(),
                        heard_secs: 3,
                    }],
                })],
            ),
            reencoding: Identical,
        },
        Expected {
            name: "action",
            datagram: datagram(
                alice(9),
                vec![Frame::Chat(Chat {
                    seq: 6,
                    msg: MessageId(10),
                    direct: false,
                    text: "waves".into(),
                    flags: wire::flags::ACTION,
                    age_ms: 0,
                })],
            ),
            reencoding: Identical,
        },
        Expected {
            name: "presence",
            datagram: datagram(
                alice(10),
                vec![
                    Frame::Presence(Presence {
                        seq: 7,
                        away: Some("lunch".into()),
                    }),
                    Frame::Presence(Presence { seq: 8, away: None }),
                ],
            ),
            reencoding: Identical,
        },
        Expected {
            name: "session-ack-chat",
            datagram: datagram(
                alice(8),
                vec![
                    Frame::Session(7),
                    Frame::Ack(Ack {
                        delay_us: 2000,
                        ranges: vec![AckRange { first: 0, last: 4 }],
                    }),
                    Frame::Chat(Chat {
                        seq: 0,
                        msg: MessageId(9),
                        direct: true,
                        text: "hi bob".into(),
                        flags: 0,
                        age_ms: 12,
                    }),
                ],
            ),
            reencoding: Identical,
        },
        // §13.6: alice offers bob the folder `notes`; bob accepts, resumes after a cut link
        // and is done (or declines, or cancels instead).
        Expected {
            name: "file-offer",
            datagram: datagram(alice(9), vec![file_vectors::app_data("file-offer", 6)]),
            reencoding: Identical,
        },
        Expected {
            name: "file-accept",
            datagram: datagram(bob(5), vec![file_vectors::app_data("file-accept", 4)]),
            reencoding: Identical,
        },
        Expected {
            name: "file-decline",
            datagram: datagram(bob(5), vec![file_vectors::app_data("file-decline", 4)]),
            reencoding: Identical,
        },
        Expected {
            name: "file-resume",
            datagram: datagram(bob(8), vec![file_vectors::app_data("file-resume", 5)]),
            reencoding: Identical,
        },
        Expected {
            name: "file-cancel",
            datagram: datagram(bob(8), vec![file_vectors::app_data("file-cancel", 5)]),
            reencoding: Identical,
        },
        Expected {
            name: "file-done",
            datagram: datagram(bob(9), vec![file_vectors::app_data("file-done", 6)]),
            reencoding: Identical,
        },
        Expected {
            name: "file-pause",
            datagram: datagram(bob(8), vec![file_vectors::app_data("file-pause", 5)]),
            reencoding: Identical,
        },
    ]
}

/// The vectors that are datagrams (all but the data connection's byte strings).
fn datagram_vectors() -> Vec<Vector> {
    let stream = file_vectors::stream_vector_names();
    load()
        .into_iter()
        .filter(|v| !stream.contains(&v.name.as_str()))
        .collect()
}

/// Reads the spec and extracts its vectors.
fn load() -> Vec<Vector> {
    let path = format!("{}/{SPEC}", env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"));
    parse_vectors(&doc)
}

/// Finds every line `Vector: NAME` and the fenced `hex` block after it (blank lines and prose
/// may not come between them). Panics with the line number on anything malformed, so a typo
/// in the spec cannot hide a vector from the test.
fn parse_vectors(doc: &str) -> Vec<Vector> {
    let lines: Vec<&str> = doc.lines().collect();
    let mut vectors: Vec<Vector> = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let Some(name) = lines[i].strip_prefix("Vector: ") else {
            i += 1;
            continue;
        };
        let line = i + 1;
        let name = name.trim();
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
            "{SPEC}:{line}: vector name {name:?} must be lowercase letters, digits and '-'"
        );
        assert!(
            vectors.iter().all(|v| v.name != name),
            "{SPEC}:{line}: vector {name:?} appears twice"
        );
        i += 1;
        while i < lines.len() && lines[i].trim().is_empty() {
            i += 1;
        }
        assert!(
            i < lines.len() && lines[i] == "```hex",
            "{SPEC}:{line}: `Vector: {name}` must be followed by a ```hex block"
        );
        i += 1;
        let mut bytes = Vec::new();
        while i < lines.len() && lines[i] != "```" {
            bytes.extend(parse_hex_line(lines[i], i + 1));
            i += 1;
        }
        assert!(i < lines.len(), "{SPEC}:{line}: unterminated hex block");
        i += 1;
        assert!(!bytes.is_empty(), "{SPEC}:{line}: empty hex block");
        vectors.push(Vector {
            name: name.to_owned(),
            bytes,
            line,
        });
    }
    vectors
}

/// One line of a hex block: lowercase hex pairs separated by single spaces.
fn parse_hex_line(text: &str, line: usize) -> Vec<u8> {
    let bytes: Vec<u8> = text
        .split(' ')
        .map(|pair| {
            let ok = pair.len() == 2
                && pair
                    .chars()
                    .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c));
            assert!(
                ok,
                "{SPEC}:{line}: {pair:?} is not a lowercase hex pair (pairs are separated by one space)"
            );
            u8::from_str_radix(pair, 16).expect("checked above")
        })
        .collect();
    bytes
}

/// Reads one unsigned LEB128 varint; this is an independent reading of the spec's encoding
/// rule, not a call into the code under test.
fn read_varint(bytes: &[u8], pos: &mut usize) -> u64 {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let b = bytes[*pos];
        *pos += 1;
        value |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return value;
        }
    }
    panic!("varint longer than 10 bytes");
}

/// The datagram with its frames of unknown kinds cut out, walking the frame list as the spec
/// describes it: after the header, each frame is varint kind, varint body length, body.
fn without_unknown_frames(bytes: &[u8]) -> Vec<u8> {
    let mut pos = 5;
    for _ in 0..3 {
        read_varint(bytes, &mut pos);
    }
    let mut out = bytes[..pos].to_vec();
    while pos < bytes.len() {
        let start = pos;
        let kind = read_varint(bytes, &mut pos);
        let len = usize::try_from(read_varint(bytes, &mut pos)).expect("small length");
        pos += len;
        assert!(pos <= bytes.len(), "frame body runs past the datagram");
        if KNOWN_KINDS.contains(&kind) {
            out.extend_from_slice(&bytes[start..pos]);
        }
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn the_spec_has_every_expected_vector_and_no_other() {
    let vectors = load();
    assert!(
        vectors.len() >= MIN_VECTORS,
        "{SPEC} has {} vectors, at least {MIN_VECTORS} expected",
        vectors.len()
    );
    let mut expected: Vec<&str> = expectations().iter().map(|e| e.name).collect();
    expected.extend(file_vectors::stream_vector_names());
    for name in &expected {
        assert!(
            vectors.iter().any(|v| v.name == *name),
            "{SPEC} lacks `Vector: {name}`"
        );
    }
    for v in &vectors {
        assert!(
            expected.contains(&v.name.as_str()),
            "{SPEC}:{}: vector {:?} has no expectation in tests/protocol_vectors.rs",
            v.line,
            v.name
        );
    }
}

#[test]
fn every_vector_decodes_to_its_datagram_and_reencodes_to_the_spec_bytes() {
    let vectors = load();
    for e in expectations() {
        let Some(v) = vectors.iter().find(|v| v.name == e.name) else {
            continue; // reported by the_spec_has_every_expected_vector_and_no_other
        };
        let at = format!("{SPEC}:{} (vector {})", v.line, v.name);
        assert!(
            v.bytes.len() <= wire::MAX_DATAGRAM,
            "{at}: over the datagram limit"
        );

        let decoded = wire::decode(&v.bytes).unwrap_or_else(|err| panic!("{at}: {err}"));
        assert_eq!(decoded, e.datagram, "{at}: decoded value differs");

        let reencoded = wire::encode(&decoded.header, &decoded.frames);
        let want = match e.reencoding {
            Reencoding::Identical => v.bytes.clone(),
            Reencoding::WithoutUnknownFrames => {
                assert!(decoded.unknown_frames > 0, "{at}: no unknown frame skipped");
                let known = without_unknown_frames(&v.bytes);
                assert!(known.len() < v.bytes.len(), "{at}: nothing was cut");
                known
            }
            Reencoding::SameAsVector(other) => {
                let other = vectors
                    .iter()
                    .find(|o| o.name == other)
                    .unwrap_or_else(|| panic!("{at}: refers to missing vector {other:?}"));
                assert_ne!(
                    v.bytes, other.bytes,
                    "{at}: must differ from {}",
                    other.name
                );
                other.bytes.clone()
            }
        };
        assert_eq!(
            hex(&reencoded),
            hex(&want),
            "{at}: re-encoding differs from the spec's bytes"
        );
    }
}

#[test]
fn the_unknown_frame_vector_skips_exactly_kind_42() {
    let vectors = load();
    let v = vectors
        .iter()
        .find(|v| v.name == "ack-chat-unknown")
        .expect("vector present");
    let decoded = wire::decode(&v.bytes).expect("decodes");
    assert_eq!(decoded.unknown_frames, 1);
    assert_eq!(decoded.frames.len(), 2);
    let cut = v.bytes.len() - without_unknown_frames(&v.bytes).len();
    assert_eq!(cut, 5, "kind 42 + length 3 + 3 body bytes");
}

#[test]
fn the_prelude_rules_hold_for_every_vector() {
    for v in datagram_vectors() {
        let mut wrong_magic = v.bytes.clone();
        wrong_magic[0] ^= 0x20;
        assert_eq!(
            wire::decode(&wrong_magic),
            Err(DecodeError::NotTailchat),
            "{}",
            v.name
        );
        for other in [1u8, 3] {
            let mut other_version = v.bytes.clone();
            other_version[4] = other;
            assert_eq!(
                wire::decode(&other_version),
                Err(DecodeError::UnsupportedVersion(other)),
                "{}",
                v.name
            );
        }
        let mut last_frame_cut = v.bytes.clone();
        last_frame_cut.pop();
        assert!(
            wire::decode(&last_frame_cut).is_err(),
            "{}: a datagram whose last frame is cut short must be dropped whole",
            v.name
        );
    }
}

/// Version 2's announcement is caps alone (it proves nothing, so it carries nothing to take),
/// and neither it nor any handshake frame elicits an ack.
#[test]
fn announce_and_handshake_frames_elicit_no_ack() {
    let vectors = load();
    let find = |name: &str| {
        vectors
            .iter()
            .find(|v| v.name == name)
            .unwrap_or_else(|| panic!("vector {name} present"))
    };
    let announce = find("announce");
    assert_eq!(
        &announce.bytes[16..],
        &[9, 1, 0],
        "kind 9, one byte: caps 0"
    );
    for name in ["announce", "hello", "cookie", "proof", "proof-reply"] {
        let decoded = wire::decode(&find(name).bytes).expect("decodes");
        assert!(!decoded.is_ack_eliciting(), "{name}");
    }
    let peers = wire::decode(&find("peers").bytes).expect("decodes");
    assert!(peers.is_ack_eliciting());
}

/// Walks vector `peers` by the rules of the spec (§3.3, §5.9) without the code under test:
/// socket addresses are a varint variant index (0 IPv4, 1 IPv6), the raw octets, and the port
/// as a varint, with no flow label or scope id.
#[test]
fn the_peers_vector_follows_the_socket_address_rules() {
    let vectors = load();
    let v = vectors
        .iter()
        .find(|v| v.name == "peers")
        .expect("vector present");
    let b = &v.bytes;
    let mut pos = 5;
    for _ in 0..3 {
        read_varint(b, &mut pos);
    }
    assert_eq!(read_varint(b, &mut pos), 10, "kind Peers");
    let body_len = usize::try_from(read_varint(b, &mut pos)).expect("small");
    assert_eq!(pos + body_len, b.len(), "the frame ends the datagram");
    assert_eq!(read_varint(b, &mut pos), 3, "seq");
    assert_eq!(read_varint(b, &mut pos), 1, "one entry");
    assert_eq!(read_varint(b, &mut pos), CAROL.0, "id");
    let nick_len = usize::try_from(read_varint(b, &mut pos)).expect("small");
    assert_eq!(&b[pos..pos + nick_len], b"carol");
    pos += nick_len;
    let count = read_varint(b, &mut pos);
    let mut addrs = Vec::new();
    for _ in 0..count {
        let ip = match read_varint(b, &mut pos) {
            0 => {
                let o: [u8; 4] = b[pos..pos + 4].try_into().expect("4 bytes");
                pos += 4;
                IpAddr::V4(Ipv4Addr::from(o))
            }
            1 => {
                let o: [u8; 16] = b[pos..pos + 16].try_into().expect("16 bytes");
                pos += 16;
                IpAddr::V6(Ipv6Addr::from(o))
            }
            other => panic!("variant {other} is neither IPv4 nor IPv6"),
        };
        let port = u16::try_from(read_varint(b, &mut pos)).expect("a u16 port");
        addrs.push(SocketAddr::new(ip, port));
    }
    assert_eq!(addrs, carol_addrs());
    assert_eq!(read_varint(b, &mut pos), 3, "heard_secs");
    assert_eq!(pos, b.len(), "nothing left over");
}

/// Walks vector `session-ack-chat` by the rules of the spec (§4, §5.10) without the code under
/// test: right after the header comes a Session frame (kind 11) whose body is the receiver's
/// session as a varint, bob's 7 here; the Session frame alone elicits no ack, the Chat does.
#[test]
fn the_session_vector_starts_with_the_receivers_session() {
    let vectors = load();
    let v = vectors
        .iter()
        .find(|v| v.name == "session-ack-chat")
        .expect("vector session-ack-chat present");
    let b = &v.bytes;
    let mut pos = 5;
    assert_eq!(read_varint(b, &mut pos), ALICE.0, "sender");
    assert_eq!(read_varint(b, &mut pos), 42, "alice's session");
    read_varint(b, &mut pos);
    assert_eq!(read_varint(b, &mut pos), 11, "first frame: kind Session");
    let body_len = usize::try_from(read_varint(b, &mut pos)).expect("small");
    let body_end = pos + body_len;
    assert_eq!(read_varint(b, &mut pos), 7, "bob's session");
    assert_eq!(pos, body_end, "the body is one varint");
    let mut kinds = Vec::new();
    while pos < b.len() {
        kinds.push(read_varint(b, &mut pos));
        let len = usize::try_from(read_varint(b, &mut pos)).expect("small");
        pos += len;
    }
    assert_eq!(kinds, vec![5, 3], "then an Ack and a Chat");
    assert_eq!(pos, b.len(), "nothing left over");

    let session_only = wire::encode(&alice(0), &[Frame::Session(7)]);
    let decoded = wire::decode(&session_only).expect("decodes");
    assert!(
        !decoded.is_ack_eliciting(),
        "a Session frame elicits no ack"
    );
    assert!(wire::decode(b).expect("decodes").is_ack_eliciting());
}

/// Walks vectors `proof` and `proof-reply` by the rules of the spec (§5.11, §5.12, §7)
/// without the code under test: the key's BLAKE3 hash starts with the sender's PeerId, and the
/// signature verifies over the transcript laid out by hand.
#[test]
fn the_proof_vectors_are_signed_as_the_spec_says() {
    let vectors = load();
    for (name, domain, receiver, receiver_session, has_challenge, nick) in [
        (
            "proof",
            &b"tailchat/2 proof"[..],
            "1eed29b1654fbca9",
            7u64,
            true,
            "alice",
        ),
        (
            "proof-reply",
            &b"tailchat/2 proof-reply"[..],
            "83561adb398fd87f",
            42,
            false,
            "bob",
        ),
    ] {
        let v = vectors
            .iter()
            .find(|v| v.name == name)
            .expect("vector present");
        let b = &v.bytes;
        let mut pos = 5;
        let sender = read_varint(b, &mut pos);
        let session = read_varint(b, &mut pos);
        read_varint(b, &mut pos);
        let kind = read_varint(b, &mut pos);
        assert_eq!(kind, if has_challenge { 12 } else { 13 });
        let body_len = usize::try_from(read_varint(b, &mut pos)).expect("small");
        assert_eq!(pos + body_len, b.len(), "the frame ends the datagram");
        let key: [u8; 32] = b[pos..pos + 32].try_into().unwrap();
        pos += 32;
        let hash = blake3::hash(&key);
        let id = u64::from_be_bytes(hash.as_bytes()[..8].try_into().unwrap());
        assert_eq!(id, sender, "{name}: PeerId = first 8 bytes of BLAKE3(key)");
        let echo = &b[pos..pos + 16];
        pos += 16;
        let challenge = if has_challenge {
            pos += 16;
            &b[pos - 16..pos]
        } else {
            &[0u8; 16][..]
        };
        let nick_len = usize::from(b[pos]);
        pos += 1;
        assert_eq!(&b[pos..pos + nick_len], nick.as_bytes());
        pos += nick_len;
        assert_eq!(read_varint(b, &mut pos), 7654, "port");
        assert_eq!(read_varint(b, &mut pos), 0, "caps");
        let signature: [u8; 64] = b[pos..pos + 64].try_into().unwrap();
        pos += 64;
        assert_eq!(pos, b.len(), "nothing left over");
        let mut signed = domain.to_vec();
        signed.push(0);
        signed.extend_from_slice(echo);
        signed.extend_from_slice(challenge);
        signed.extend_from_slice(&sender.to_be_bytes());
        signed.extend_from_slice(&u64::from_str_radix(receiver, 16).unwrap().to_be_bytes());
        signed.extend_from_slice(&session.to_be_bytes());
        signed.extend_from_slice(&receiver_session.to_be_bytes());
        signed.extend_from_slice(&key);
        signed.extend_from_slice(&7654u16.to_be_bytes());
        signed.extend_from_slice(&0u64.to_be_bytes());
        signed.push(nick_len as u8);
        signed.extend_from_slice(nick.as_bytes());
        let key = ed25519_dalek::VerifyingKey::from_bytes(&key).expect("a valid key");
        let signature = ed25519_dalek::Signature::from_bytes(&signature);
        assert!(
            key.verify_strict(&signed, &signature).is_ok(),
            "{name}: the signature does not verify over the transcript"
        );
    }
}

/// §13.6, the control messages: each AppData payload decodes to its message, and the offer,
/// walked by hand, fixes the manifest and through it the files.
#[test]
fn the_file_control_vectors_carry_their_messages() {
    file_vectors::check_control_payloads(&load());
}

/// §13.6, the data connection: each vector is what the code writes and reads, and follows the
/// layout tables of §13.4.
#[test]
fn the_data_connection_vectors_follow_the_layout() {
    let vectors = load();
    file_vectors::check_stream_vectors(&vectors);
    file_vectors::check_data_layout(&vectors);
}

/// §13.6 against the running code: the real offerer answers the request vectors with the
/// response vectors, and the real receiver, served those, sends the request vectors and puts
/// the files in place.
#[test]
fn the_real_offerer_and_receiver_speak_the_data_vectors() {
    let vectors = load();
    file_vectors::check_real_offerer(&vectors);
    file_vectors::check_real_receiver(&vectors);
}

/// Prints every expected datagram as the spec writes it (run with `--ignored --nocapture` to
/// regenerate the hex blocks after a deliberate change).
#[test]
#[ignore]
fn print_vectors() {
    for e in expectations() {
        let bytes = wire::encode(&e.datagram.header, &e.datagram.frames);
        println!("{}: {}", e.name, hex(&bytes));
    }
    for (name, bytes) in file_vectors::stream_vectors() {
        println!("{name}: {}", hex(&bytes));
    }
    for (name, id) in [("alice", alice_key()), ("bob", bob_key())] {
        println!("{name}: key {} id {}", id.public_key(), id.peer_id());
    }
}
