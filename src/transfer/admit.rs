//! Who gets a place on the data port: at most [`MAX_CONNECTIONS`] connections are served at
//! once, a request must arrive within [`REQUEST_WAIT`], one token holds at most [`PER_TOKEN`]
//! places and the offers to one receiver at most [`PER_PEER`], so neither idle connections nor
//! one receiver (holding one token or several, or whoever learned them) can keep the others out
//! (`docs/PROTOCOL.md` §13.4). Each admitted connection is served on a thread of its own by
//! [`super::serve`].

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

/// Connections served at once for the offers to one receiver: half the places. A receiver that
/// holds several offers' tokens could otherwise take every place with slow connections (a
/// tailchat receiver fetches at most four offers from one peer at once).
const PER_PEER: usize = MAX_CONNECTIONS / 2;

/// One connection being served: its serial number, the token it asked with, and a handle to
/// close it by.
type Place = (u64, [u8; 16], TcpStream);

/// The connections being served, by the receiver of the offer they asked for (`None` for a
/// token no offer has: such a request is answered at once), oldest first.
type Places = Arc<Mutex<HashMap<Option<u64>, VecDeque<Place>>>>;

/// Takes a place for connection `serial`, which asked with `token` for an offer to `peer`.
/// The oldest connections of the same token beyond [`PER_TOKEN`] are closed (a receiver that
/// connects again supersedes its earlier connection; their threads then fail to write and
/// end), and so is the oldest of the token when `peer` holds all its [`PER_PEER`] places.
/// A new token of a peer that holds them all gets none (`false`): the caller closes it
/// without an answer, and the receiver connects again later, as after any cut link.
fn take_place(
    places: &Places,
    peer: Option<u64>,
    token: [u8; 16],
    serial: u64,
    stream: &TcpStream,
) -> bool {
    let mut all = lock(places);
    let list = all.entry(peer).or_default();
    let same = list.iter().filter(|(_, t, _)| *t == token).count();
    let mut close = (same + 1).saturating_sub(PER_TOKEN);
    if peer.is_some() && list.len().saturating_sub(close) >= PER_PEER {
        if same <= close {
            return false;
        }
        close += 1;
    }
    list.retain(|(_, t, old)| {
        if close == 0 || *t != token {
            return true;
        }
        close -= 1;
        let _ = old.shutdown(std::net::Shutdown::Both);
        false
    });
    if let Ok(handle) = stream.try_clone() {
        list.push_back((serial, token, handle));
    }
    true
}

/// Gives back the place of connection `serial` (its thread is done).
fn leave_place(places: &Places, peer: Option<u64>, serial: u64) {
    let mut all = lock(places);
    if let Some(list) = all.get_mut(&peer) {
        list.retain(|(s, _, _)| *s != serial);
        if list.is_empty() {
            all.remove(&peer);
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
    let places: Places = Arc::default();
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
        let thread_places = Arc::clone(&places);
        let spawned = std::thread::Builder::new()
            .name("tailchat-serve".into())
            .spawn(move || {
                let request = read_request(&stream);
                lock(&thread_waiting).retain(|(s, _)| *s != serial);
                if let Ok(req) = request {
                    let peer = lock(&table).get(&req.token).map(|s| s.receiver);
                    if take_place(&thread_places, peer, req.token, serial, &stream) {
                        serve(stream, &req, &table, &events);
                        leave_place(&thread_places, peer, serial);
                    } else {
                        let _ = stream.shutdown(std::net::Shutdown::Both);
                    }
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

    /// A connection to `listener` and the served end of it.
    fn pair(listener: &TcpListener) -> (TcpStream, TcpStream) {
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (served, _) = listener.accept().unwrap();
        (client, served)
    }

    /// Whether the server closed `client`'s connection (it reads the end at once), or it is
    /// still open (nothing to read, no end, for 200 ms).
    fn closed(client: &mut TcpStream) -> bool {
        let mut byte = [0u8; 1];
        client
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        match client.read(&mut byte) {
            Ok(0) => true,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                false
            }
            other => panic!("{other:?}"),
        }
    }

    fn held(places: &Places, peer: Option<u64>) -> usize {
        lock(places).get(&peer).map_or(0, VecDeque::len)
    }

    #[test]
    fn a_token_holds_two_connections_at_most_the_oldest_closed_first() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let places: Places = Arc::default();
        let mut clients = Vec::new();
        for serial in 0..3u64 {
            let (client, served) = pair(&listener);
            assert!(take_place(&places, Some(1), [7; 16], serial, &served));
            clients.push((client, served));
        }
        // Another token has its own places.
        let (_other, other_served) = pair(&listener);
        assert!(take_place(&places, Some(1), [8; 16], 9, &other_served));
        assert_eq!(held(&places, Some(1)), 3);
        assert!(
            closed(&mut clients[0].0),
            "the oldest of the token is closed"
        );
        assert!(!closed(&mut clients[2].0), "the newest is still open");
        for serial in [1, 2, 9] {
            leave_place(&places, Some(1), serial);
        }
        assert!(!lock(&places).contains_key(&Some(1)));
    }

    /// One receiver holding many offers' tokens gets half the places; a connection with a
    /// token it already uses still supersedes the old one; another receiver is let in.
    #[test]
    fn a_receiver_holds_half_the_places_whatever_its_tokens() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let places: Places = Arc::default();
        let mut clients = Vec::new();
        for serial in 0..PER_PEER as u64 {
            let (client, served) = pair(&listener);
            let token = [serial as u8; 16];
            assert!(take_place(&places, Some(1), token, serial, &served));
            clients.push((client, served));
        }
        let (_refused, served) = pair(&listener);
        assert!(
            !take_place(&places, Some(1), [99; 16], 100, &served),
            "a new token beyond the receiver's share"
        );
        assert_eq!(held(&places, Some(1)), PER_PEER);
        // Its first offer, connecting again twice: in, in place of its earlier connection.
        let (_again, served) = pair(&listener);
        assert!(take_place(&places, Some(1), [0; 16], 101, &served));
        let (_again2, served2) = pair(&listener);
        assert!(take_place(&places, Some(1), [0; 16], 102, &served2));
        assert_eq!(held(&places, Some(1)), PER_PEER);
        assert!(closed(&mut clients[0].0), "superseded: closed");
        assert!(!take_place(&places, Some(1), [98; 16], 103, &served));
        // Another receiver has its own share.
        let (_bob, served) = pair(&listener);
        assert!(take_place(&places, Some(2), [50; 16], 104, &served));
        // A token of no offer is never refused (it is answered at once).
        let mut unknown = Vec::new();
        for serial in 200..220u64 {
            let (client, served) = pair(&listener);
            assert!(take_place(
                &places,
                None,
                [serial as u8; 16],
                serial,
                &served
            ));
            unknown.push((client, served));
        }
    }
}
