//! The offerer's side of the data path: one TCP listener (on the chat's port number where it
//! is free), and a thread per connection that serves an offer to whoever presents its token
//! (which connections get a thread: [`super::admit`]).
//!
//! Data sockets use BBR where the kernel has it (`TCP_CONGESTION`): it keeps the bottleneck's
//! queue short, so a chat datagram behind a bulk transfer waits a few milliseconds rather than
//! the tens of milliseconds a loss-based controller (CUBIC) fills a deep queue with
//! (`docs/BENCHMARKS.md`). Where BBR is missing, the kernel's default is used. BBR's own
//! start-up still fills a deep queue for half a second, so while a connection sends, a
//! [`Pacer`] caps its pacing rate to keep the queueing delay near a few milliseconds
//! ([`super::pacing`]).

use super::admit;
use super::data::{self, Request, Status};
use super::manifest::{reason, Manifest};
use super::pacing::{self, Pacer};
use super::tcp_info;
use super::DataEvent;
use socket2::{Domain, Protocol, SockRef, Socket, Type};
use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::net::{IpAddr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedSender;

/// Bytes copied between two looks at the cancel flag (and progress reports).
const CHUNK: u64 = 1 << 20;
/// Bytes read from a file and written to the socket at a time (as the plain copy it is
/// measured against does).
const READ_BUFFER: usize = 1 << 20;
/// How often progress is reported at most.
pub const PROGRESS_EVERY: Duration = Duration::from_millis(100);
/// How long a connection may stall (a request not sent, data not taken) before it is
/// dropped.
const STALL: Duration = Duration::from_secs(30);
/// How long one write waits before [`Taking`] looks whether the receiver took anything.
const STALL_CHECK: Duration = Duration::from_secs(5);
/// Tests only: `TAILCHAT_TEST_SEND_RATE=BYTES_PER_SEC` slows serving down, so a test can
/// interrupt a transfer half-way on loopback (where 10 MB takes milliseconds).
const TEST_RATE_VAR: &str = "TAILCHAT_TEST_SEND_RATE";

/// The rate limit of [`TEST_RATE_VAR`], if set.
fn test_rate() -> Option<u64> {
    static RATE: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
    *RATE.get_or_init(|| {
        std::env::var(TEST_RATE_VAR)
            .ok()?
            .parse()
            .ok()
            .filter(|&r| r > 0)
    })
}

/// The congestion controller asked for on data sockets.
const CONGESTION: &[u8] = b"bbr";

/// One offer being served.
#[derive(Debug)]
pub struct Serving {
    /// The offer's id.
    pub id: u64,
    /// The offered file, or the folder its files are under.
    pub root: PathBuf,
    /// Whether `root` is a folder.
    pub folder: bool,
    /// The files, in sending order.
    pub manifest: Manifest,
    /// The manifest's encoding, as offered.
    pub manifest_bytes: Vec<u8>,
    /// The peer it is offered to (its `PeerId`): the data port gives the offers to one
    /// receiver half its places at most.
    pub receiver: u64,
    /// Set when the offer is withdrawn: connections stop at the next chunk.
    pub cancelled: AtomicBool,
    /// Each file's modification time when it was hashed, where known (not for an offer
    /// restored from an earlier run): a file that changed since is not served.
    pub modified: Vec<Option<std::time::SystemTime>>,
}

impl Serving {
    /// Whether file `index`, as `meta` shows it now, changed since it was offered: another
    /// size, or another modification time than when it was hashed.
    fn changed(&self, index: usize, meta: &std::fs::Metadata) -> bool {
        let size = self.manifest.entries.get(index).map(|e| e.size);
        let then = self.modified.get(index).copied().flatten();
        Some(meta.len()) != size || then.is_some_and(|t| meta.modified().ok() != Some(t))
    }

    /// Where file `index` of the manifest is on our disk.
    fn path(&self, index: usize) -> Option<PathBuf> {
        let entry = self.manifest.entries.get(index)?;
        Some(if self.folder {
            self.root.join(&entry.path)
        } else {
            self.root.clone()
        })
    }
}

/// Why serving a connection ended early.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServeError {
    /// The connection failed or was closed (the receiver resumes later).
    Link(String),
    /// The offer was withdrawn.
    Cancelled,
    /// A file cannot be read, or changed since it was offered (the offer cannot be served).
    Unreadable(String),
}

impl fmt::Display for ServeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServeError::Link(why) => write!(f, "connection lost ({why})"),
            ServeError::Cancelled => write!(f, "cancelled"),
            ServeError::Unreadable(why) => f.write_str(why),
        }
    }
}

/// Offers by token.
pub(super) type Table = Arc<Mutex<HashMap<[u8; 16], Arc<Serving>>>>;

/// The listener and the offers it serves.
#[derive(Debug)]
pub struct Server {
    /// The TCP port it listens on.
    port: u16,
    /// Offers being served, by token.
    table: Table,
    /// Bound, not yet accepting ([`Server::bind`]): connections wait in the listen queue.
    idle: Option<TcpListener>,
}

impl Server {
    /// Listens on TCP `port` of `bind` (every address, dual-stack, when unspecified), or on
    /// any free port if that one is taken, and serves connections on threads of its own,
    /// reporting to `events`.
    ///
    /// # Errors
    /// No TCP socket can be bound at all.
    pub fn start(
        bind: Option<IpAddr>,
        port: u16,
        events: UnboundedSender<DataEvent>,
    ) -> io::Result<Server> {
        let mut server = Server::bind(bind, port)?;
        server.serve(events)?;
        Ok(server)
    }

    /// Listens as [`Server::start`] does but accepts nothing until [`Server::serve`]: offers
    /// restored at start are all in place before the first request is read (one that came
    /// in between would be told "no such offer", which ends a transfer for good).
    ///
    /// # Errors
    /// No TCP socket can be bound at all.
    pub fn bind(bind: Option<IpAddr>, port: u16) -> io::Result<Server> {
        let listener = listen(bind, port).or_else(|_| listen(bind, 0))?;
        let port = listener.local_addr()?.port();
        Ok(Server {
            port,
            table: Arc::default(),
            idle: Some(listener),
        })
    }

    /// Starts accepting connections (once), reporting to `events`.
    ///
    /// # Errors
    /// No thread could be started.
    pub fn serve(&mut self, events: UnboundedSender<DataEvent>) -> io::Result<()> {
        let Some(listener) = self.idle.take() else {
            return Ok(());
        };
        let shared = Arc::clone(&self.table);
        std::thread::Builder::new()
            .name("tailchat-files".into())
            .spawn(move || admit::accept_loop(&listener, &shared, &events))?;
        Ok(())
    }

    /// The TCP port offers are served on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves `serving` to whoever presents `token`.
    pub fn offer(&self, token: [u8; 16], serving: Serving) {
        lock(&self.table).insert(token, Arc::new(serving));
    }

    /// Stops serving the offer of `token`; connections serving it stop at their next chunk.
    pub fn withdraw(&self, token: &[u8; 16]) {
        if let Some(s) = lock(&self.table).remove(token) {
            s.cancelled.store(true, Ordering::Release);
        }
    }
}

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A listening socket on `port` of `bind`: dual-stack on the unspecified address (IPv4 alone
/// where the host has no IPv6), like the chat's UDP socket.
fn listen(bind: Option<IpAddr>, port: u16) -> io::Result<TcpListener> {
    let ip = bind.unwrap_or(IpAddr::V6(Ipv6Addr::UNSPECIFIED));
    let open = |ip: IpAddr| -> io::Result<TcpListener> {
        let socket = Socket::new(
            Domain::for_address(SocketAddr::new(ip, port)),
            Type::STREAM,
            Some(Protocol::TCP),
        )?;
        if ip.is_ipv6() {
            let _ = socket.set_only_v6(false);
        }
        socket.set_reuse_address(true)?;
        set_congestion(&SockRef::from(&socket));
        socket.bind(&SocketAddr::new(ip, port).into())?;
        socket.listen(64)?;
        Ok(socket.into())
    };
    open(ip).or_else(|e| match (bind, ip) {
        (None, IpAddr::V6(_)) => open(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)),
        _ => Err(e),
    })
}

/// Asks for BBR on a data socket; keeps the kernel's default where it is not available.
pub fn set_congestion(socket: &SockRef<'_>) {
    if let Err(e) = socket.set_tcp_congestion(CONGESTION) {
        tracing::debug!("BBR not available for file transfers ({e}); using the default");
    }
}

/// Serves one connection whose request is `req`: answers, and sends the data.
pub(super) fn serve(
    mut stream: TcpStream,
    req: &Request,
    table: &Table,
    events: &UnboundedSender<DataEvent>,
) {
    let _ = stream.set_read_timeout(Some(STALL));
    let _ = stream.set_write_timeout(Some(STALL_CHECK));
    set_congestion(&SockRef::from(&stream));
    let serving = lock(table).get(&req.token).cloned();
    let Some(serving) = serving.filter(|s| s.id == req.id) else {
        let _ = data::write_response(&mut stream, Status::Unknown, &[]);
        return;
    };
    if serving.cancelled.load(Ordering::Acquire) {
        let _ = data::write_response(&mut stream, Status::Cancelled, &[]);
        return;
    }
    let entries = &serving.manifest.entries;
    let first = req.file as usize;
    let in_range = match entries.get(first) {
        Some(e) => req.offset <= e.size,
        None => first == entries.len() && req.offset == 0,
    };
    if !in_range {
        let _ = data::write_response(&mut stream, Status::BadRange, &[]);
        return;
    }
    let from = serving.manifest.position(req.file, req.offset);
    let mut sent = 0;
    let result = match check_sources(&serving, first) {
        Err(why) => {
            let _ = data::write_response(&mut stream, Status::Unreadable, &[]);
            Err(ServeError::Unreadable(why))
        }
        Ok(()) => {
            let _ = events.send(DataEvent::Serving {
                id: serving.id,
                from,
            });
            send_all(&mut stream, &serving, req, from, &mut sent, events)
        }
    };
    let _ = events.send(DataEvent::ServeEnded {
        id: serving.id,
        from,
        sent,
        result,
    });
}

/// Checks that every file from `first` on still has its offered size.
fn check_sources(serving: &Serving, first: usize) -> Result<(), String> {
    for (i, e) in serving.manifest.entries.iter().enumerate().skip(first) {
        let path = serving.path(i).unwrap_or_default();
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.is_file() && !serving.changed(i, &m) => {}
            Ok(_) => return Err(changed_since(&e.path)),
            Err(err) => return Err(format!("cannot read {}: {}", path.display(), reason(&err))),
        }
    }
    Ok(())
}

/// Why a file is not served any more.
fn changed_since(name: &str) -> String {
    format!("{name} changed after it was offered: it must be offered again (/send)")
}

/// Sends the manifest, then every byte from the request's place to the end of the offer,
/// with a [`Pacer`] on a thread of its own capping the socket's pacing rate meanwhile.
fn send_all(
    stream: &mut TcpStream,
    serving: &Serving,
    req: &Request,
    from: u64,
    sent: &mut u64,
    events: &UnboundedSender<DataEvent>,
) -> Result<(), ServeError> {
    let link = |e: io::Error| ServeError::Link(reason(&e));
    data::write_response(
        &mut Taking::new(stream),
        Status::Ok,
        &serving.manifest_bytes,
    )
    .map_err(link)?;
    let (stop, stopped) = mpsc::channel::<()>();
    let shared: &TcpStream = stream;
    let pace = pacing_wanted(shared);
    if pace {
        let _ = tcp_info::set_max_pacing_rate(shared, Pacer::new().cap());
    }
    std::thread::scope(|scope| {
        if pace {
            let spawned = std::thread::Builder::new()
                .name("tailchat-pacing".into())
                .spawn_scoped(scope, move || pace_while_sending(shared, &stopped));
            if spawned.is_err() {
                let _ = tcp_info::set_max_pacing_rate(shared, u64::MAX);
            }
        }
        let r = send_files(shared, serving, req, from, sent, events);
        drop(stop);
        r
    })
}

/// A data connection as something to write to, that fails once the receiver has taken nothing
/// for [`STALL`]. A write that returns is not enough to go on: the kernel's send buffer grows
/// now and then (autotuning), and a receiver that reads nothing would keep a connection (and
/// a place among [`admit::MAX_CONNECTIONS`]) for minutes. What counts is what TCP says the receiver
/// acknowledged (`TCP_INFO`); where that cannot be read, a write that took bytes.
struct Taking<'a> {
    stream: &'a TcpStream,
    /// Bytes acknowledged when last looked at.
    acked: u64,
    /// When the receiver last took something.
    since: Instant,
    /// How long it may take nothing ([`STALL`]).
    stall: Duration,
    /// When `TCP_INFO` was last read: at most once a second while writes go through (a
    /// `getsockopt` per megabyte cost the sender on loopback).
    looked: Instant,
}

impl<'a> Taking<'a> {
    fn new(stream: &'a TcpStream) -> Taking<'a> {
        Taking::stalling_after(stream, STALL)
    }

    fn stalling_after(stream: &'a TcpStream, stall: Duration) -> Taking<'a> {
        let acked = tcp_info::sample(stream).map_or(0, |s| s.bytes_acked);
        Taking {
            stream,
            acked,
            since: Instant::now(),
            stall,
            looked: Instant::now(),
        }
    }

    /// Notes whether the receiver took anything (`wrote`: the last write took bytes); an
    /// error once it has taken nothing for [`STALL`].
    fn check(&mut self, wrote: bool) -> io::Result<()> {
        if wrote && self.looked.elapsed() < Duration::from_secs(1) {
            return Ok(());
        }
        self.looked = Instant::now();
        match tcp_info::sample(self.stream) {
            Ok(s) if s.bytes_acked != self.acked => {
                self.acked = s.bytes_acked;
                self.since = Instant::now();
            }
            Ok(_) => {}
            Err(_) if wrote => self.since = Instant::now(),
            Err(_) => {}
        }
        if self.since.elapsed() >= self.stall {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the receiver took nothing for {} s", self.stall.as_secs()),
            ));
        }
        Ok(())
    }
}

impl Write for Taking<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        loop {
            let result = { self.stream }.write(buf);
            self.check(matches!(result, Ok(n) if n > 0))?;
            match result {
                // The socket's write timeout (STALL_CHECK): look again.
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                other => return other,
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        { self.stream }.flush()
    }
}

/// Measurements only: `TAILCHAT_PACING=off` leaves the kernel's pacing alone, `alternate`
/// paces every other connection, so `scripts/bench-files.sh` can compare both in one run.
const PACING_VAR: &str = "TAILCHAT_PACING";

/// Whether a connection gets a [`Pacer`]: not on loopback, where no link is shared with the
/// chat (and a sender's CPU, not a queue, makes RTTs grow), nor when [`PACING_VAR`] says so.
fn pacing_wanted(stream: &TcpStream) -> bool {
    static CONNECTIONS: AtomicUsize = AtomicUsize::new(0);
    // A dual-stack listener sees IPv4 peers as ::ffff:a.b.c.d: canonical first.
    if stream
        .peer_addr()
        .is_ok_and(|a| a.ip().to_canonical().is_loopback())
    {
        return false;
    }
    match std::env::var(PACING_VAR).as_deref() {
        Ok("off") => false,
        Ok("alternate") => CONNECTIONS
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(2),
        _ => true,
    }
}

/// Runs the connection's [`Pacer`]: reads `TCP_INFO` every [`pacing::MIN_PERIOD`] and sets
/// the cap it answers, until `stopped` says the sending is over (or the socket fails).
fn pace_while_sending(stream: &TcpStream, stopped: &mpsc::Receiver<()>) {
    let mut pacer = Pacer::new();
    let mut set = pacer.cap();
    let start = Instant::now();
    while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(pacing::MIN_PERIOD) {
        let Ok(sample) = tcp_info::sample(stream) else {
            // No reading, no pacing: the cap set so far must not stay on.
            let _ = tcp_info::set_max_pacing_rate(stream, u64::MAX);
            return;
        };
        let cap = pacer.on_sample(start.elapsed(), &sample);
        if cap != set && tcp_info::set_max_pacing_rate(stream, cap).is_ok() {
            set = cap;
        }
        if pacer.phase() == pacing::Phase::Off && set == u64::MAX {
            return; // given up for this connection: nothing more to read or set
        }
    }
}

/// Sends the files of `req` (the manifest is sent).
fn send_files(
    mut stream: &TcpStream,
    serving: &Serving,
    req: &Request,
    from: u64,
    sent: &mut u64,
    events: &UnboundedSender<DataEvent>,
) -> Result<(), ServeError> {
    let link = |e: io::Error| ServeError::Link(reason(&e));
    let mut reported = Instant::now();
    let started = Instant::now();
    let mut buffer = Vec::new();
    // Progress is what the receiver acknowledged, not what the send buffer took; returns
    // what is still unacknowledged (0 where that cannot be read).
    let report = |sent: u64| {
        let unacked = tcp_info::unacked(stream).unwrap_or(0);
        let _ = events.send(DataEvent::ServeProgress {
            id: serving.id,
            done: from + sent.saturating_sub(unacked),
        });
        unacked
    };
    let mut out = Taking::new(stream);
    let (chunk, rate) = match test_rate() {
        Some(rate) => (CHUNK / 16, Some(rate)),
        None => (CHUNK, None),
    };
    for (i, e) in serving
        .manifest
        .entries
        .iter()
        .enumerate()
        .skip(req.file as usize)
    {
        let path = serving.path(i).unwrap_or_default();
        let unreadable = |err: io::Error| {
            ServeError::Unreadable(format!("cannot read {}: {}", path.display(), reason(&err)))
        };
        let mut file = File::options()
            .read(true)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(&path)
            .map_err(unreadable)?;
        let skip = if i == req.file as usize {
            req.offset
        } else {
            0
        };
        file.seek(SeekFrom::Start(skip)).map_err(unreadable)?;
        let mut left = e.size - skip;
        while left > 0 {
            if serving.cancelled.load(Ordering::Acquire) {
                report(*sent); // where it stopped, for the quit lines
                return Err(ServeError::Cancelled);
            }
            let n = send_chunk(&mut file, &mut out, left.min(chunk), &mut buffer).map_err(link)?;
            if n == 0 {
                return Err(ServeError::Unreadable(format!(
                    "{} changed since it was offered (shorter)",
                    e.path
                )));
            }
            left -= n;
            *sent += n;
            if let Some(rate) = rate {
                let due = Duration::from_secs_f64(*sent as f64 / rate as f64);
                std::thread::sleep(due.saturating_sub(started.elapsed()));
            }
            if reported.elapsed() >= PROGRESS_EVERY || left == 0 {
                reported = Instant::now();
                report(*sent);
                // Written to meanwhile: what it sends now is not what it hashed.
                if file.metadata().is_ok_and(|m| serving.changed(i, &m)) {
                    return Err(ServeError::Unreadable(changed_since(&e.path)));
                }
            }
        }
    }
    stream.flush().map_err(link)?;
    let _ = stream.shutdown(std::net::Shutdown::Write);
    wait_until_received(stream, *sent, &report);
    Ok(())
}

/// After the last byte is written: waits while the receiver still has some of the `sent` bytes
/// to take, reporting progress by what it acknowledged (`report` says what is left), until TCP
/// acknowledged everything (our FIN too), the receiver closed, or it took nothing for
/// [`STALL`]. Whatever the end,
/// the receiver's Done or Resume says what arrived; this only keeps progress and rate true
/// while the send buffer (megabytes on a slow link) drains.
fn wait_until_received(stream: &TcpStream, sent: u64, report: &impl Fn(u64) -> u64) {
    let _ = stream.set_read_timeout(Some(PROGRESS_EVERY));
    let mut last = (u64::MAX, Instant::now());
    loop {
        let left = report(sent);
        if left == 0 {
            return;
        }
        if left != last.0 {
            last = (left, Instant::now());
        } else if last.1.elapsed() >= STALL {
            return;
        }
        match { stream }.read(&mut [0u8; 1]) {
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            // Closed (it has all it wanted), failed, or sent bytes it has no business sending.
            _ => return,
        }
    }
}

/// Sends up to `len` bytes of `file` from its current offset, and says how many (fewer only
/// at its end), in reads and writes of [`READ_BUFFER`] through `buffer`.
///
/// `std::io::copy` from a `Take<&mut File>` used 8 KiB reads and sends here, which cost the
/// sender more CPU than the plain TCP copy it is compared with. sendfile(2) was tried too and
/// measured no faster end to end on loopback: the receiver then copies out of our page cache
/// instead of fresh socket buffers, and the receiver is the slower side
/// (docs/BENCHMARKS.md, "File transfer").
fn send_chunk(
    file: &mut File,
    stream: &mut impl Write,
    len: u64,
    buffer: &mut Vec<u8>,
) -> io::Result<u64> {
    buffer.resize(READ_BUFFER, 0);
    let mut sent = 0;
    while sent < len {
        let want = usize::try_from(len - sent).map_or(READ_BUFFER, |l| l.min(READ_BUFFER));
        let n = match file.read(&mut buffer[..want]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        stream.write_all(&buffer[..n])?;
        sent += n as u64;
    }
    Ok(sent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_receiver_that_takes_nothing_is_dropped_though_writes_return() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (served, _) = listener.accept().unwrap();
        served
            .set_write_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let mut out = Taking::stalling_after(&served, Duration::from_millis(500));
        let started = Instant::now();
        let chunk = vec![0u8; 1 << 20];
        // The client reads nothing: the buffers fill, then the writer must give up.
        let err = loop {
            if let Err(e) = out.write_all(&chunk) {
                break e;
            }
            assert!(started.elapsed() < Duration::from_secs(20), "never gave up");
        };
        assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err}");
        assert!(started.elapsed() >= Duration::from_millis(500));
        drop(client);
    }

    #[test]
    fn progress_after_the_last_write_follows_what_the_receiver_took() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (served, _) = listener.accept().unwrap();
        // Room for the whole megabyte on our side; little on the receiver's, which reads
        // nothing yet: most of what we wrote waits in our send buffer.
        SockRef::from(&served)
            .set_send_buffer_size(4 << 20)
            .unwrap();
        SockRef::from(&client)
            .set_recv_buffer_size(64 << 10)
            .unwrap();
        const SENT: u64 = 1 << 20;
        let (tx, rx) = std::sync::mpsc::channel();
        let sender = std::thread::spawn(move || {
            (&served).write_all(&vec![1u8; SENT as usize]).unwrap();
            let _ = served.shutdown(std::net::Shutdown::Write);
            wait_until_received(&served, SENT, &|done: u64| {
                let left = tcp_info::unacked(&served).unwrap_or(0);
                let _ = tx.send(done.saturating_sub(left));
                left
            });
        });
        let first = rx.recv().unwrap();
        assert!(
            first < SENT / 2,
            "reported {first} of {SENT} before the receiver read any"
        );
        let mut got = Vec::new();
        client.read_to_end(&mut got).unwrap();
        assert_eq!(got.len() as u64, SENT);
        sender.join().unwrap();
        let last = rx.iter().last().unwrap_or(first);
        assert_eq!(
            last, SENT,
            "everything taken is reported before the wait ends"
        );
    }
}

#[cfg(test)]
mod restore_tests {
    use super::*;
    use crate::transfer::data::{self, Request, Status};

    /// A request that arrives while a restarted sender puts its offers back is answered
    /// once they are in, not with "no such offer" (which ends the transfer for good).
    #[test]
    fn a_request_before_the_restored_offers_are_in_waits_for_them() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("f.bin");
        std::fs::write(&file, b"the bytes").unwrap();
        let prepared = crate::transfer::manifest::prepare(&file).unwrap();
        let mut server = Server::bind(Some("127.0.0.1".parse().unwrap()), 0).unwrap();
        // The receiver connects and asks at once (the listen queue takes it).
        let mut client = TcpStream::connect(("127.0.0.1", server.port())).unwrap();
        let token = [7; 16];
        let request = Request {
            token,
            id: 1,
            file: 0,
            offset: 0,
        };
        client.write_all(&request.encode()).unwrap();
        // Only then is the offer put back, and the server starts accepting.
        server.offer(
            token,
            Serving {
                id: 1,
                root: prepared.root.clone(),
                folder: false,
                manifest_bytes: prepared.manifest.encode(),
                manifest: prepared.manifest,
                receiver: 2,
                cancelled: AtomicBool::new(false),
                modified: Vec::new(),
            },
        );
        let (events, _rx) = tokio::sync::mpsc::unbounded_channel();
        server.serve(events).unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let (status, _) = data::read_response(&mut client).unwrap();
        assert_eq!(status, Status::Ok);
    }
}
