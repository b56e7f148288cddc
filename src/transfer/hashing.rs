//! Hashing a received file on a thread of its own while the receiving thread reads the socket
//! and writes the file: BLAKE3 costs about a third of what receiving and writing cost, and
//! on the receiving thread it was a third more time on the critical path of a transfer
//! (docs/BENCHMARKS.md, "File transfer"). Buffers go round between the two threads, so the
//! receiver never waits for the hash unless it is a whole pool of buffers ahead.
//!
//! Fewer copies were tried and measured no faster (docs/BENCHMARKS.md, "File transfer"):
//! splice(2) from the socket through a pipe into the file, with the hash reading the written
//! range through a memory map, saves the copy out of the socket, but mapping and faulting the
//! pages in for the hash costs more than that copy did; most of the receiver's time is the
//! copy into the page cache, which a plain copy pays too.

use std::sync::mpsc::{channel, sync_channel, Receiver, Sender, SyncSender};
use std::thread::JoinHandle;

/// Bytes of each buffer: a read from the socket and a write to the file at a time. Large
/// writes cost the page cache less per byte (on tmpfs, 256 KiB writes were slower).
pub const BUFFER: usize = 1 << 20;
/// Buffers going round: the receiver may be this many buffers ahead of the hash.
const POOL: usize = 4;
/// Files smaller than this are hashed on the receiving thread (a thread per file would cost
/// more than it saves).
pub const THREADED_FROM: u64 = 4 << 20;

/// A BLAKE3 hash fed with buffers, on a thread of its own or inline.
pub struct HashPipe {
    /// The hash itself, when it is computed inline.
    inline: Option<blake3::Hasher>,
    /// Buffers to hash, with the length of their data (threaded only).
    work: Option<SyncSender<(Vec<u8>, usize)>>,
    /// Buffers hashed, to be filled again (threaded only).
    free: Option<Receiver<Vec<u8>>>,
    /// The hashing thread, which ends with the hasher once `work` is closed.
    thread: Option<JoinHandle<blake3::Hasher>>,
    /// Buffers not yet made: the pool grows to its size as the receiver needs it.
    fresh: usize,
    /// Inline: the one buffer, between a hash and the next read.
    spare: Option<Vec<u8>>,
}

impl HashPipe {
    /// Continues `hasher` (which may already have seen a resumed file's first bytes): on a
    /// thread of its own when `threaded`, else inline. If the thread cannot be started, the
    /// hash is computed inline.
    pub fn new(hasher: blake3::Hasher, threaded: bool) -> HashPipe {
        let inline = HashPipe {
            inline: Some(hasher.clone()),
            work: None,
            free: None,
            thread: None,
            fresh: 1,
            spare: None,
        };
        if !threaded {
            return inline;
        }
        let (work, to_hash) = sync_channel::<(Vec<u8>, usize)>(POOL);
        let (hashed, free): (Sender<Vec<u8>>, _) = channel();
        let spawned = std::thread::Builder::new()
            .name("tailchat-verify".into())
            .spawn(move || {
                let mut hasher = hasher;
                for (buf, len) in to_hash {
                    hasher.update(buf.get(..len).unwrap_or_default());
                    // The receiver may have stopped: then the buffer is simply freed.
                    let _ = hashed.send(buf);
                }
                hasher
            });
        match spawned {
            Ok(thread) => HashPipe {
                inline: None,
                work: Some(work),
                free: Some(free),
                thread: Some(thread),
                fresh: POOL,
                spare: None,
            },
            Err(_) => inline,
        }
    }

    /// A buffer of [`BUFFER`] bytes to fill: a new one while the pool is not all out, else
    /// the next one the hash is done with (waiting for it).
    pub fn buffer(&mut self) -> Vec<u8> {
        if let Some(buf) = self.spare.take() {
            return buf;
        }
        if self.fresh > 0 {
            self.fresh -= 1;
            return vec![0; BUFFER];
        }
        // A closed channel means the thread is gone; `finish` says so.
        self.free
            .as_ref()
            .and_then(|free| free.recv().ok())
            .unwrap_or_else(|| vec![0; BUFFER])
    }

    /// Hashes the first `len` bytes of `buf` (a buffer from [`HashPipe::buffer`]); inline,
    /// the buffer is handed straight back for the next read.
    pub fn hash(&mut self, buf: Vec<u8>, len: usize) {
        if let Some(h) = &mut self.inline {
            h.update(buf.get(..len).unwrap_or_default());
            self.spare = Some(buf);
            return;
        }
        if let Some(work) = &self.work {
            // Fails only if the thread is gone (it panicked): `finish` then says so.
            let _ = work.send((buf, len));
        }
    }

    /// The hash of everything fed, once the thread is done with it; `None` if the thread
    /// failed.
    pub fn finish(mut self) -> Option<blake3::Hash> {
        if let Some(h) = self.inline.take() {
            return Some(h.finalize());
        }
        drop(self.work.take());
        let hasher = self.thread.take()?.join().ok()?;
        Some(hasher.finalize())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `data` in reads of `step` bytes, as the receiver does.
    fn feed(mut pipe: HashPipe, data: &[u8], step: usize) -> blake3::Hash {
        for chunk in data.chunks(step) {
            let mut buf = pipe.buffer();
            assert_eq!(buf.len(), BUFFER);
            buf[..chunk.len()].copy_from_slice(chunk);
            pipe.hash(buf, chunk.len());
        }
        pipe.finish().expect("a hash")
    }

    #[test]
    fn threaded_and_inline_give_the_hash_of_the_bytes() {
        let data: Vec<u8> = (0..3 * BUFFER as u32 + 17).map(|i| (i * 7) as u8).collect();
        let want = blake3::hash(&data);
        for threaded in [false, true] {
            for step in [1000, BUFFER] {
                let got = feed(HashPipe::new(blake3::Hasher::new(), threaded), &data, step);
                assert_eq!(got, want, "threaded {threaded}, reads of {step}");
            }
        }
    }

    #[test]
    fn a_resumed_hash_continues_from_the_bytes_on_disk() {
        let data = vec![42u8; 10 * BUFFER];
        let mut start = blake3::Hasher::new();
        start.update(&data[..5000]);
        let got = feed(HashPipe::new(start, true), &data[5000..], BUFFER);
        assert_eq!(got, blake3::hash(&data));
    }
}
