//! Who gets a place on the data port: at most [`MAX_CONNECTIONS`] connections are served at
//! once, a request must arrive within [`REQUEST_WAIT`], and one token holds at most
//! [`PER_TOKEN`] places, so neither idle connections nor one receiver (or whoever learned one
//! token) can keep the others out (`docs/PROTOCOL.md` §13.4). Each admitted connection is
//! served on a thread of its own by [`super::serve`].

use super::data::Request;
use super::serve::{lock, serve, Table};
use super::DataEvent;
use std::collections::{HashMap, VecDeque};
use std::io::{self, Read};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedSender;

/// Data connections served at once at most. One more makes room by closing the oldest that
/// has not sent its request yet (so idle or junk connections cannot keep a transfer out), or is
/// closed at once when all of them have.
pub(super) const MAX_CONNECTIONS: usize = 16;
/// How long a connection has to send its whole request.
const REQUEST_WAIT: Duration = Duration::from_secs(10);
/// The connections that have not sent their request yet, oldest first, by serial number.
type Waiting = Arc<Mutex<VecDeque<(u64, TcpStream)>>>;

/// Connections served per token at once: a receiver fetches over one, and one that connects
/// again (it took the old one for stalled) may overlap it for a moment. More would let one
/// receiver, or anyone who learned one token, take every slot and keep the others out.
const PER_TOKEN: usize = 2;

/// The connections being served, by the token they asked with, oldest first.
type ByToken = Arc<Mutex<HashMap<[u8; 16], VecDeque<(u64, TcpStream)>>>>;

/// Counts connection `serial` under `token`, closing the oldest ones of the token beyond
/// [`PER_TOKEN`] (their threads then fail to write and end).
fn admit_for_token(by_token: &ByToken, token: [u8; 16], serial: u64, stream: &TcpStream) {
    let mut by = lock(by_token);
    let list = by.entry(token).or_default();
    if let Ok(handle) = stream.try_clone() {
        list.push_back((serial, handle));
    }
    while list.len() > PER_TOKEN {
        if let Some((_, old)) = list.pop_front() {
            let _ = old.shutdown(std::net::Shutdown::Both);
        }
    }
}

/// Forgets connection `serial` of `token` (its thread is done).
fn leave_token(by_token: &ByToken, token: [u8; 16], serial: u64) {
    let mut by = lock(by_token);
    if let Some(list) = by.get_mut(&token) {
        list.retain(|(s, _)| *s != serial);
        if list.is_empty() {
            by.remove(&token);
        }
    }
}

/// Accepts connections for ever, one thread each, at most [`MAX_CONNECTIONS`] at once.
pub(super) fn accept_loop(
    listener: &TcpListener,
    table: &Table,
    events: &UnboundedSender<DataEvent>,
) {
    let active = Arc::new(AtomicUsize::new(0));
    let waiting: Waiting = Arc::default();
    let by_token: ByToken = Arc::default();
    for (serial, conn) in (0u64..).zip(listener.incoming()) {
        let Ok(stream) = conn else { continue };
        // A closed connection's thread ends at once, but is counted until it has: twice the
        // limit bounds the threads even while a flood of connections makes room this way.
        let open = active.load(Ordering::Acquire);
        if open >= MAX_CONNECTIONS {
            let oldest = if open < 2 * MAX_CONNECTIONS {
                lock(&waiting).pop_front()
            } else {
                None
            };
            match oldest {
                Some((_, idle)) => {
                    let _ = idle.shutdown(std::net::Shutdown::Both);
                }
                None => continue, // dropped: closed at once
            }
        }
        if let Ok(handle) = stream.try_clone() {
            lock(&waiting).push_back((serial, handle));
        }
        active.fetch_add(1, Ordering::AcqRel);
        let (table, events) = (Arc::clone(table), events.clone());
        let (thread_active, thread_waiting) = (Arc::clone(&active), Arc::clone(&waiting));
        let thread_tokens = Arc::clone(&by_token);
        let spawned = std::thread::Builder::new()
            .name("tailchat-serve".into())
            .spawn(move || {
                let request = read_request(&stream);
                lock(&thread_waiting).retain(|(s, _)| *s != serial);
                if let Ok(req) = request {
                    admit_for_token(&thread_tokens, req.token, serial, &stream);
                    serve(stream, &req, &table, &events);
                    leave_token(&thread_tokens, req.token, serial);
                }
                thread_active.fetch_sub(1, Ordering::AcqRel);
            });
        if spawned.is_err() {
            tracing::warn!("cannot start a thread to serve a file transfer");
            lock(&waiting).retain(|(s, _)| *s != serial);
            active.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// Reads a connection's request, which must arrive whole within [`REQUEST_WAIT`]; an error
/// when it does not, or is not a tailchat file request (no answer is sent then).
fn read_request(stream: &TcpStream) -> io::Result<Request> {
    /// Reads until a deadline, however slowly the bytes come.
    struct Until<'a>(&'a TcpStream, Instant);
    impl Read for Until<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let left = self.1.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::ErrorKind::TimedOut.into());
            }
            self.0.set_read_timeout(Some(left))?;
            let mut stream = self.0;
            stream.read(buf)
        }
    }
    Request::read(&mut Until(stream, Instant::now() + REQUEST_WAIT))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_holds_two_connections_at_most_the_oldest_closed_first() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let by_token: ByToken = Arc::default();
        let mut clients = Vec::new();
        for serial in 0..3u64 {
            let client = TcpStream::connect(addr).unwrap();
            let (served, _) = listener.accept().unwrap();
            admit_for_token(&by_token, [7; 16], serial, &served);
            clients.push((client, served));
        }
        // Another token has its own places.
        let other = TcpStream::connect(addr).unwrap();
        let (other_served, _) = listener.accept().unwrap();
        admit_for_token(&by_token, [8; 16], 9, &other_served);
        assert_eq!(lock(&by_token)[&[7; 16]].len(), 2);
        assert_eq!(lock(&by_token)[&[8; 16]].len(), 1);
        // The first was shut down: its client reads the end at once.
        let mut byte = [0u8; 1];
        let (first, _) = &mut clients[0];
        first
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        assert_eq!(first.read(&mut byte).unwrap(), 0);
        // The newest is still open: nothing to read, and no end.
        let (last, _) = &mut clients[2];
        last.set_nonblocking(true).unwrap();
        assert_eq!(
            last.read(&mut byte).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        leave_token(&by_token, [7; 16], 1);
        leave_token(&by_token, [7; 16], 2);
        assert!(!lock(&by_token).contains_key(&[7; 16]));
        drop(other);
    }
}
