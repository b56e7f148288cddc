//! Who a peer is (protocol 2): an ed25519 key pair. Its [`PeerId`] is derived from the public
//! key, so nobody can claim a PeerId without the secret key that goes with it, and the handshake
//! proves the key by signing a transcript that names both ends, both runs and a cookie bound to
//! the address (see `docs/PROTOCOL.md` §7 and §8).
//!
//! - [`PublicKey`]: 32 bytes; [`PublicKey::peer_id`] = the first 8 bytes of BLAKE3(key), read
//!   big-endian, so a PeerId printed in hex is the start of the key's hash.
//! - [`Identity`]: the key pair (never printed, never sent).
//! - [`Transcript`]: exactly what a `Proof` or `ProofReply` signs, laid out without postcard so
//!   that another implementation can build it from the spec alone.

use super::ids::PeerId;
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use serde::de::{self, SeqAccess, Visitor};
use serde::ser::SerializeTuple;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// Bytes of a public key.
pub const PUBLIC_KEY_LEN: usize = 32;
/// Bytes of a secret key (an ed25519 seed).
pub const SECRET_KEY_LEN: usize = 32;
/// Bytes of a signature.
pub const SIGNATURE_LEN: usize = 64;
/// What a `Proof` (the initiator's, answering a `Cookie`) signs first: a Proof can never be
/// taken for a ProofReply, nor either for anything else signed with the same key.
pub const PROOF_DOMAIN: &[u8] = b"tailchat/2 proof";
/// What a `ProofReply` (the responder's, answering a `Proof`) signs first.
pub const PROOF_REPLY_DOMAIN: &[u8] = b"tailchat/2 proof-reply";

/// A peer's ed25519 public key, as it travels in `Proof` and `ProofReply` frames.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PublicKey(pub [u8; PUBLIC_KEY_LEN]);

impl PublicKey {
    /// The PeerId this key stands for: the first 8 bytes of BLAKE3(key), big-endian.
    pub fn peer_id(&self) -> PeerId {
        let hash = blake3::hash(&self.0);
        let mut first = [0u8; 8];
        first.copy_from_slice(hash.as_bytes().get(..8).unwrap_or(&[0; 8]));
        PeerId(u64::from_be_bytes(first))
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

/// An ed25519 signature: 64 raw bytes on the wire (postcard writes a fixed array as its bytes,
/// with no length; serde only derives that up to 32 elements, hence the hand-written impls).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Signature(pub [u8; SIGNATURE_LEN]);

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature(")?;
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))?;
        write!(f, ")")
    }
}

impl Serialize for Signature {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut t = serializer.serialize_tuple(SIGNATURE_LEN)?;
        for b in &self.0 {
            t.serialize_element(b)?;
        }
        t.end()
    }
}

impl<'de> Deserialize<'de> for Signature {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        /// Reads exactly [`SIGNATURE_LEN`] bytes.
        struct Bytes;
        impl<'de> Visitor<'de> for Bytes {
            type Value = Signature;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{SIGNATURE_LEN} bytes")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Signature, A::Error> {
                let mut out = [0u8; SIGNATURE_LEN];
                for (i, slot) in out.iter_mut().enumerate() {
                    *slot = seq
                        .next_element()?
                        .ok_or_else(|| de::Error::invalid_length(i, &self))?;
                }
                Ok(Signature(out))
            }
        }
        deserializer.deserialize_tuple(SIGNATURE_LEN, Bytes)
    }
}

/// This peer's key pair. Its `Debug` shows the PeerId only: the secret key is never printed.
#[derive(Clone)]
pub struct Identity {
    /// The ed25519 key pair.
    key: SigningKey,
    /// Its public half, as sent.
    public: PublicKey,
    /// The PeerId derived from `public`.
    id: PeerId,
}

impl Identity {
    /// The identity whose secret key (ed25519 seed) is `secret`.
    pub fn from_secret(secret: [u8; SECRET_KEY_LEN]) -> Self {
        let key = SigningKey::from_bytes(&secret);
        let public = PublicKey(key.verifying_key().to_bytes());
        Self {
            id: public.peer_id(),
            key,
            public,
        }
    }

    /// The secret key, to store (mode 0600).
    pub fn secret(&self) -> [u8; SECRET_KEY_LEN] {
        self.key.to_bytes()
    }

    /// The public key, as sent in proofs.
    pub fn public_key(&self) -> PublicKey {
        self.public
    }

    /// The PeerId: derived from the public key.
    pub fn peer_id(&self) -> PeerId {
        self.id
    }

    /// Signs `message` (ed25519 signatures are deterministic: the same bytes give the same
    /// signature, which keeps the simulator replayable).
    pub fn sign(&self, message: &[u8]) -> Signature {
        Signature(self.key.sign(message).to_bytes())
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Identity({})", self.id)
    }
}

/// Whether `signature` is `key`'s over `message`. Strict verification: a key of small order or a
/// non-canonical signature is refused, so a signature cannot be reshaped into another valid one.
pub fn verify(key: &PublicKey, message: &[u8], signature: &Signature) -> bool {
    let Ok(key) = VerifyingKey::from_bytes(&key.0) else {
        return false;
    };
    let signature = ed25519_dalek::Signature::from_bytes(&signature.0);
    key.verify_strict(message, &signature).is_ok()
}

/// What a proof signs: every value the receiver takes from the proof, bound to the two ends,
/// their two runs and the receiver's cookie (which binds the address it was sent to).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transcript<'a> {
    /// [`PROOF_DOMAIN`] or [`PROOF_REPLY_DOMAIN`].
    pub domain: &'a [u8],
    /// The receiver's cookie (in a Proof) or token (in a ProofReply), echoed.
    pub echo: [u8; 16],
    /// The initiator's token for the responder (a Proof's `challenge`); 16 zero bytes in a
    /// ProofReply, which has none.
    pub challenge: [u8; 16],
    /// Who signs.
    pub signer: PeerId,
    /// Whom it is for.
    pub receiver: PeerId,
    /// The signer's session.
    pub signer_session: u64,
    /// The receiver's session, as the signer learned it from the receiver's datagram.
    pub receiver_session: u64,
    /// The signer's public key.
    pub key: PublicKey,
    /// The signer's UDP port.
    pub port: u16,
    /// The signer's capability bits.
    pub caps: u64,
    /// The signer's nick (at most 64 bytes, so its length fits one byte).
    pub nick: &'a str,
}

impl Transcript<'_> {
    /// The bytes signed: the domain, a zero byte, then the fields in declaration order, integers
    /// big-endian and fixed-width, the nick as one length byte and its UTF-8 bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.domain.len() + 1 + 16 + 16 + 32 + 32 + 10 + 1 + 64);
        out.extend_from_slice(self.domain);
        out.push(0);
        out.extend_from_slice(&self.echo);
        out.extend_from_slice(&self.challenge);
        out.extend_from_slice(&self.signer.0.to_be_bytes());
        out.extend_from_slice(&self.receiver.0.to_be_bytes());
        out.extend_from_slice(&self.signer_session.to_be_bytes());
        out.extend_from_slice(&self.receiver_session.to_be_bytes());
        out.extend_from_slice(&self.key.0);
        out.extend_from_slice(&self.port.to_be_bytes());
        out.extend_from_slice(&self.caps.to_be_bytes());
        // Nicks on the wire are at most 64 bytes (`nick::MAX_NICK_BYTES`); one longer than 255
        // never reaches here, and would be cut rather than wrap the length.
        let nick = self.nick.as_bytes();
        let len = nick.len().min(usize::from(u8::MAX));
        out.push(u8::try_from(len).unwrap_or(u8::MAX));
        out.extend_from_slice(nick.get(..len).unwrap_or_default());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_peer_id_is_the_start_of_the_keys_hash() {
        let me = Identity::from_secret([7; 32]);
        let hash = blake3::hash(&me.public_key().0);
        assert_eq!(
            format!("{}", me.peer_id()),
            hash.to_hex().get(..16).unwrap().to_string()
        );
        assert_eq!(me.public_key().peer_id(), me.peer_id());
        assert_eq!(Identity::from_secret(me.secret()).peer_id(), me.peer_id());
        assert_eq!(format!("{me:?}"), format!("Identity({})", me.peer_id()));
    }

    #[test]
    fn signatures_verify_only_for_their_key_and_message() {
        let me = Identity::from_secret([1; 32]);
        let other = Identity::from_secret([2; 32]);
        let sig = me.sign(b"hello");
        assert_eq!(sig, me.sign(b"hello"), "deterministic");
        assert!(verify(&me.public_key(), b"hello", &sig));
        assert!(!verify(&me.public_key(), b"hellO", &sig));
        assert!(!verify(&other.public_key(), b"hello", &sig));
        let mut bent = sig;
        bent.0[5] ^= 1;
        assert!(!verify(&me.public_key(), b"hello", &bent));
        assert!(!verify(&PublicKey([0; 32]), b"hello", &sig), "a weak key");
    }

    #[test]
    fn a_signature_is_64_raw_bytes_in_postcard() {
        let sig = Signature([9; 64]);
        let bytes = postcard::to_allocvec(&sig).unwrap();
        assert_eq!(bytes, vec![9; 64]);
        assert_eq!(postcard::from_bytes::<Signature>(&bytes).unwrap(), sig);
        assert!(postcard::from_bytes::<Signature>(&bytes[..63]).is_err());
    }

    #[test]
    fn the_transcript_is_laid_out_as_the_spec_says() {
        let t = Transcript {
            domain: PROOF_DOMAIN,
            echo: [1; 16],
            challenge: [2; 16],
            signer: PeerId(0x0102_0304_0506_0708),
            receiver: PeerId(9),
            signer_session: 10,
            receiver_session: 11,
            key: PublicKey([3; 32]),
            port: 7654,
            caps: 0,
            nick: "al",
        };
        let b = t.to_bytes();
        assert_eq!(
            b.len(),
            PROOF_DOMAIN.len() + 1 + 16 + 16 + 8 * 4 + 32 + 2 + 8 + 1 + 2
        );
        assert!(b.starts_with(b"tailchat/2 proof\0"));
        let at = PROOF_DOMAIN.len() + 1 + 32;
        assert_eq!(&b[at..at + 8], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert!(b.ends_with(&[0x1d, 0xe6, 0, 0, 0, 0, 0, 0, 0, 0, 2, b'a', b'l']));
    }
}
