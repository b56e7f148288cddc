//! Hashing a received file while the receiving thread reads the socket and writes the file,
//! with a helper thread taking what it can.
//!
//! BLAKE3 is a tree: a file is cut into [`UNIT`]s of 1 MiB, each a whole subtree of the
//! file's tree, whose chaining value does not depend on any other unit. So units can be hashed
//! in any order, on any thread, and merged into the file's hash at the end (the
//! `blake3::hazmat` interface, checked here against `blake3::hash` for files of 0 to 9
//! units, on both sides of each power of two up to 8, in any order of arrival).
//! The receiving thread hands each unit it has written to a helper; when the helper is a few
//! units behind, it hashes the unit itself, while it is still in its cache. Neither waits for
//! the other, so the hash costs the transfer only what the machine has no spare core for:
//! on two cores that a loopback copy keeps busy, the helper takes most units on the sender's
//! core and the receiving thread the rest (docs/BENCHMARKS.md, "File transfer").
//!
//! Fewer copies were tried and measured no faster (docs/BENCHMARKS.md, "File transfer"):
//! splice(2) from the socket through a pipe into the file, with the hash reading the written
//! range through a memory map, saves the copy out of the socket, but mapping and faulting the
//! pages in for the hash costs more than that copy did; most of the receiver's time is the
//! copy into the page cache, which a plain copy pays too.

use blake3::hazmat::{self, ChainingValue, HasherExt, Mode};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::thread::JoinHandle;

/// Bytes in a unit: what the receiver reads, writes and hashes at a time. A power of two of
/// at least a BLAKE3 chunk, so that every unit but a file's last is a whole subtree.
pub const UNIT: usize = 1 << 20;
/// Units waiting for the helper beyond the one it hashes: when they are this many, the
/// receiving thread hashes the next unit itself.
const QUEUE: usize = 2;
/// Files smaller than this are hashed on the receiving thread only (a thread per file would
/// cost more than it saves).
pub const THREADED_FROM: u64 = 4 << 20;

/// How many units a file of `len` bytes has (one, even when it is empty).
pub fn units(len: u64) -> u64 {
    len.div_ceil(UNIT as u64).max(1)
}

/// Bytes of unit `index` of a file of `len` bytes (0 past its end).
pub fn unit_len(len: u64, index: u64) -> usize {
    let start = index.saturating_mul(UNIT as u64);
    usize::try_from(len.saturating_sub(start)).map_or(UNIT, |left| left.min(UNIT))
}

/// What hashing unit `index` of a file of `len` bytes gives: the file's hash itself when the
/// file has one unit, else the unit's chaining value. A unit past the end (which [`Tree`]
/// ignores) gives zeros: the hazmat interface would panic on it.
fn hash_unit(len: u64, index: u64, bytes: &[u8]) -> [u8; 32] {
    if index >= units(len) || (bytes.is_empty() && len > 0) {
        return [0; 32];
    }
    if units(len) == 1 {
        return *blake3::hash(bytes).as_bytes();
    }
    let mut hasher = blake3::Hasher::new();
    hasher.set_input_offset(index.saturating_mul(UNIT as u64));
    hasher.update(bytes);
    hasher.finalize_non_root()
}

/// The units' values merged into the file's hash as they come, in any order: those that
/// arrive early wait until the ones before them are in (those the receiving thread hashed
/// while the helper still had earlier ones: 32 bytes each), and the merged ones are kept as
/// BLAKE3's own stack of subtrees, so memory stays small for any size of file.
struct Tree {
    /// The file's length.
    len: u64,
    /// Units merged so far (0, 1, ... in order).
    merged: u64,
    /// Chaining values of whole subtrees merged so far, the largest first.
    stack: Vec<ChainingValue>,
    /// Values of units that came before their turn.
    early: BTreeMap<u64, [u8; 32]>,
}

impl Tree {
    fn new(len: u64) -> Tree {
        Tree {
            len,
            merged: 0,
            stack: Vec::new(),
            early: BTreeMap::new(),
        }
    }

    /// Takes unit `index`'s value (from [`hash_unit`]).
    fn add(&mut self, index: u64, value: [u8; 32]) {
        if index < self.merged || index >= units(self.len) {
            return;
        }
        self.early.insert(index, value);
        while let Some(value) = self.early.remove(&self.merged) {
            // As blake3's own Hasher does: before a subtree goes on the stack, the ones below
            // it that are complete are merged (as many stay as the count has bits set).
            let keep = self.merged.count_ones() as usize;
            while self.stack.len() > keep {
                let (Some(right), Some(left)) = (self.stack.pop(), self.stack.pop()) else {
                    break;
                };
                self.stack
                    .push(hazmat::merge_subtrees_non_root(&left, &right, Mode::Hash));
            }
            self.stack.push(value);
            self.merged += 1;
        }
    }

    /// The file's hash, once every unit is in.
    fn root(mut self) -> Option<blake3::Hash> {
        if self.merged != units(self.len) {
            return None;
        }
        let mut right = self.stack.pop()?;
        if self.stack.is_empty() {
            return Some(blake3::Hash::from_bytes(right)); // one unit: its value is the hash
        }
        while let Some(left) = self.stack.pop() {
            if self.stack.is_empty() {
                return Some(hazmat::merge_subtrees_root(&left, &right, Mode::Hash));
            }
            right = hazmat::merge_subtrees_non_root(&left, &right, Mode::Hash);
        }
        None
    }
}

/// A unit for the helper: its buffer and index.
type Work = (Vec<u8>, u64);
/// A unit the helper is done with: its buffer (to fill again), index and value.
type Done = (Vec<u8>, u64, [u8; 32]);

/// The hash of one file, fed unit by unit; with a helper thread when asked for.
pub struct HashPipe {
    /// The values merged so far.
    tree: Tree,
    /// Units for the helper (threaded only).
    work: Option<SyncSender<Work>>,
    /// Units the helper has hashed (threaded only).
    done: Option<Receiver<Done>>,
    /// The helper, which ends once `work` is closed and empty.
    thread: Option<JoinHandle<()>>,
    /// Buffers not yet made: the pool grows to its size as the receiver needs it.
    fresh: usize,
    /// A buffer the receiving thread hashed itself, to be filled again.
    spare: Option<Vec<u8>>,
    /// Whether the receiving thread hashes a unit itself when the helper is behind (else it
    /// waits for the helper, as before units: measurements only, see [`Sharing`]).
    share: bool,
}

/// Measurements only: `TAILCHAT_VERIFY=helper` leaves every unit to the helper (the receiving
/// thread waits when it is behind, as the hash did before units), `alternate` does so for
/// every other file, so `scripts/bench-files.sh` can compare both in one run.
pub struct Sharing;

impl Sharing {
    const VAR: &'static str = "TAILCHAT_VERIFY";

    /// Whether the next file's receiving thread shares the hashing.
    pub fn next() -> bool {
        static FILES: AtomicUsize = AtomicUsize::new(0);
        match std::env::var(Sharing::VAR).as_deref() {
            Ok("helper") => false,
            Ok("alternate") => FILES.fetch_add(1, Ordering::Relaxed) % 2 == 1,
            _ => true,
        }
    }
}

impl HashPipe {
    /// The hash of a file of `len` bytes: with a helper thread when `threaded`, else on the
    /// caller's thread. If the helper cannot be started, everything is hashed by the caller.
    /// With `share` false, the caller never hashes a unit the helper could ([`Sharing`]).
    pub fn new(len: u64, threaded: bool, share: bool) -> HashPipe {
        let mut pipe = HashPipe {
            tree: Tree::new(len),
            work: None,
            done: None,
            thread: None,
            fresh: 1,
            spare: None,
            share,
        };
        if !threaded {
            return pipe;
        }
        let (work, to_hash) = sync_channel::<Work>(QUEUE);
        let (hashed, done) = sync_channel::<Done>(QUEUE + 2);
        let spawned = std::thread::Builder::new()
            .name("tailchat-verify".into())
            .spawn(move || {
                for (buf, index) in to_hash {
                    let n = unit_len(len, index);
                    let value = hash_unit(len, index, buf.get(..n).unwrap_or_default());
                    // The receiver may have stopped: then the buffer is simply freed.
                    let _ = hashed.send((buf, index, value));
                }
            });
        if let Ok(thread) = spawned {
            pipe.work = Some(work);
            pipe.done = Some(done);
            pipe.thread = Some(thread);
            // One being filled, one being hashed by the helper, the queue's.
            pipe.fresh = QUEUE + 2;
        }
        pipe
    }

    /// A buffer for a unit, to fill: one hashed already if there is one, a new one while the
    /// pool is not all out, else the next one the helper is done with (waiting for it). It
    /// holds [`UNIT`] bytes, or the file's size if that is less (a folder of small files does
    /// not cost a megabyte a file).
    pub fn buffer(&mut self) -> Vec<u8> {
        if let Some(buf) = self.spare.take() {
            return buf;
        }
        if let Some(Ok(buf)) = self.done.as_ref().map(Receiver::try_recv) {
            return self.took(buf);
        }
        if self.fresh > 0 {
            self.fresh -= 1;
            return self.new_buffer();
        }
        match self.done.as_ref().map(Receiver::recv) {
            Some(Ok(buf)) => self.took(buf),
            // The helper is gone (it panicked): `finish` says so.
            _ => self.new_buffer(),
        }
    }

    /// A buffer big enough for any unit of the file.
    fn new_buffer(&self) -> Vec<u8> {
        vec![0; unit_len(self.tree.len, 0)]
    }

    /// Notes the value of a unit the helper is done with, and gives back its buffer.
    fn took(&mut self, (buf, index, value): Done) -> Vec<u8> {
        self.tree.add(index, value);
        buf
    }

    /// Hashes unit `index`, whose bytes are the start of `buf` (a buffer from
    /// [`HashPipe::buffer`]): by the helper if it is not too far behind, else here.
    pub fn hash(&mut self, buf: Vec<u8>, index: u64) {
        let buf = match &self.work {
            Some(work) if !self.share => match work.send((buf, index)) {
                Ok(()) => return,
                Err(e) => e.0 .0,
            },
            Some(work) => match work.try_send((buf, index)) {
                Ok(()) => return,
                Err(TrySendError::Full((buf, _)) | TrySendError::Disconnected((buf, _))) => buf,
            },
            None => buf,
        };
        let len = self.tree.len;
        let n = unit_len(len, index);
        let value = hash_unit(len, index, buf.get(..n).unwrap_or_default());
        self.tree.add(index, value);
        self.spare = Some(buf);
    }

    /// The hash of the whole file, once every unit is hashed; `None` if the helper failed or a
    /// unit is missing.
    pub fn finish(mut self) -> Option<blake3::Hash> {
        drop(self.work.take());
        if let Some(done) = self.done.take() {
            for (_, index, value) in done {
                self.tree.add(index, value);
            }
        }
        if let Some(thread) = self.thread.take() {
            thread.join().ok()?;
        }
        self.tree.root()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Feeds `data` unit by unit as the receiver does, in the given order of units.
    fn feed(mut pipe: HashPipe, data: &[u8], order: &[u64]) -> Option<blake3::Hash> {
        let len = data.len() as u64;
        for &index in order {
            let mut buf = pipe.buffer();
            assert_eq!(buf.len(), unit_len(len, 0));
            let start = (index as usize) * UNIT;
            let n = unit_len(len, index);
            buf[..n].copy_from_slice(&data[start..start + n]);
            pipe.hash(buf, index);
        }
        pipe.finish()
    }

    fn bytes(len: usize) -> Vec<u8> {
        (0..len as u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect()
    }

    /// Every shape of tree: empty, within a chunk, one unit, a unit and a byte, powers of two
    /// of units and one off them, with and without the helper.
    #[test]
    fn the_units_merge_into_the_hash_of_the_file() {
        let k = 1024;
        let u = UNIT;
        for len in [
            0,
            1,
            k,
            k + 1,
            u - 1,
            u,
            u + 1,
            2 * u,
            2 * u + k,
            3 * u,
            4 * u - 1,
            4 * u,
            4 * u + 1,
            5 * u + 7,
            8 * u,
            9 * u + 3,
        ] {
            let data = bytes(len);
            let order: Vec<u64> = (0..units(len as u64)).collect();
            for (threaded, share) in [(false, true), (true, true), (true, false)] {
                let got = feed(HashPipe::new(len as u64, threaded, share), &data, &order);
                assert_eq!(
                    got,
                    Some(blake3::hash(&data)),
                    "{len} bytes, threaded {threaded}, shared {share}"
                );
            }
        }
    }

    #[test]
    fn a_missing_unit_gives_no_hash() {
        let data = bytes(3 * UNIT);
        for threaded in [false, true] {
            assert_eq!(
                feed(
                    HashPipe::new(data.len() as u64, threaded, true),
                    &data,
                    &[0, 2]
                ),
                None
            );
        }
    }

    #[test]
    fn units_sizes_cover_the_file() {
        assert_eq!(units(0), 1);
        assert_eq!(units(UNIT as u64), 1);
        assert_eq!(units(UNIT as u64 + 1), 2);
        assert_eq!(unit_len(UNIT as u64 + 1, 1), 1);
        assert_eq!(unit_len(UNIT as u64 + 1, 2), 0);
        assert_eq!(unit_len(u64::MAX, u64::MAX), 0);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        /// Units merged in any order (as the helper and the receiving thread finish them)
        /// give the file's hash.
        #[test]
        fn units_in_any_order_give_the_hash(len in 0usize..(6 * UNIT + 5), seed: u64) {
            let data = bytes(len);
            let mut order: Vec<u64> = (0..units(len as u64)).collect();
            // A shuffle by the seed (units arrive at most a few early; any order must do).
            let mut s = seed | 1;
            for i in (1..order.len()).rev() {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                order.swap(i, (s % (i as u64 + 1)) as usize);
            }
            let got = feed(HashPipe::new(len as u64, false, true), &data, &order);
            prop_assert_eq!(got, Some(blake3::hash(&data)));
        }
    }
}
