//! The control socket: a Unix socket in the data directory (`control.sock`, mode 0600) through
//! which programs reach the running tailchat — `tailchat send` hands it a message to send as
//! the user, `tailchat attach --json` follows everything. Each connection speaks the JSON lines
//! of [`super::json`]: commands in, events out (answers to its own commands go to it alone;
//! what happens in the chat goes to every connection).
//!
//! Only the user may connect: the socket is created 0600 in the private data directory, and a
//! client refuses a socket that is not the user's own or that others could open.

use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;

/// The socket's file name in the data directory.
pub const SOCKET_FILE: &str = "control.sock";
/// Lines queued for one connection at most; a program that stops reading is disconnected
/// rather than allowed to hold memory.
const CLIENT_QUEUE: usize = 4096;
/// The longest command line a connection may send.
const MAX_LINE: usize = 128 * 1024;

/// The longest path a Unix socket address holds (`sun_path`, 108 bytes with its NUL).
const MAX_SOCKET_PATH: usize = 107;

/// A path by which the socket file `path` can be bound or connected to: `path` itself, or, when
/// it is longer than a socket address holds (a deep data directory), the same file reached
/// through `/proc/self/fd/N/`, N being its directory opened and held by the returned handle
/// (keep it while the path is used).
///
/// # Errors
/// The directory of a long path cannot be opened.
pub fn addressable(path: &Path) -> io::Result<(PathBuf, Option<std::fs::File>)> {
    use std::os::fd::AsRawFd;
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Ok((path.to_owned(), None));
    };
    if path.as_os_str().len() <= MAX_SOCKET_PATH {
        return Ok((path.to_owned(), None));
    }
    let held = std::fs::File::open(dir)?;
    let short = PathBuf::from(format!("/proc/self/fd/{}", held.as_raw_fd())).join(name);
    Ok((short, Some(held)))
}

/// A connection's number, for routing answers.
pub type ClientId = u64;

/// What the connections tell the event loop.
#[derive(Debug)]
pub enum FromClient {
    /// A command line.
    Line(ClientId, String),
    /// The connection closed (or sent something unreadable).
    Gone(ClientId),
}

/// The listening socket; removes its file when dropped.
#[derive(Debug)]
pub struct ControlServer {
    /// The listener.
    listener: UnixListener,
    /// Its path, to remove at the end.
    path: PathBuf,
    /// The next connection's number.
    next: ClientId,
}

impl ControlServer {
    /// Listens on `dir/control.sock`. A socket file left by a tailchat that died is replaced;
    /// one that answers belongs to a running tailchat, which cannot be (the journal lock
    /// already keeps a second one off a data directory).
    ///
    /// # Errors
    /// The socket cannot be created or restricted to the user.
    pub fn bind(dir: &Path) -> io::Result<ControlServer> {
        let path = dir.join(SOCKET_FILE);
        let (address, _held) = addressable(&path)?;
        if std::os::unix::net::UnixStream::connect(&address).is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                "another tailchat answers on it",
            ));
        }
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let listener = UnixListener::bind(&address)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        Ok(ControlServer {
            listener,
            path,
            next: 1,
        })
    }

    /// Waits for the next connection and starts serving it: its lines go to `to_loop`; the
    /// returned sender takes the lines for it.
    pub async fn accept(
        &mut self,
        to_loop: &mpsc::UnboundedSender<FromClient>,
    ) -> Option<(ClientId, mpsc::Sender<String>)> {
        let (stream, _) = match self.listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!("control socket accept failed: {e}");
                return None;
            }
        };
        let id = self.next;
        self.next += 1;
        Some((id, serve(id, stream, to_loop.clone())))
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Starts the reader and writer tasks of one connection.
fn serve(
    id: ClientId,
    stream: UnixStream,
    to_loop: mpsc::UnboundedSender<FromClient>,
) -> mpsc::Sender<String> {
    let (read, mut write) = stream.into_split();
    let (tx, mut rx) = mpsc::channel::<String>(CLIENT_QUEUE);
    tokio::spawn(async move {
        while let Some(mut line) = rx.recv().await {
            line.push('\n');
            if write.write_all(line.as_bytes()).await.is_err() {
                break;
            }
        }
    });
    tokio::spawn(async move {
        let mut reader = BufReader::new(read);
        let mut line = Vec::new();
        loop {
            let chunk = match reader.fill_buf().await {
                Ok([]) | Err(_) => break,
                Ok(chunk) => chunk,
            };
            let end = chunk.iter().position(|b| *b == b'\n');
            let taken = end.map_or(chunk.len(), |i| i + 1);
            line.extend_from_slice(chunk.get(..taken).unwrap_or_default());
            reader.consume(taken);
            if line.len() > MAX_LINE {
                break; // not a command: a runaway writer
            }
            if end.is_some() {
                let text = String::from_utf8_lossy(&line)
                    .trim_end_matches(['\n', '\r'])
                    .to_owned();
                line.clear();
                if to_loop.send(FromClient::Line(id, text)).is_err() {
                    return;
                }
            }
        }
        let _ = to_loop.send(FromClient::Gone(id));
    });
    tx
}

/// The socket path in `dir`, if a tailchat may be listening there and the socket is safe to
/// use: owned by us, and no one else may open it.
///
/// # Errors
/// The socket exists but belongs to another user or is open to others: refused, with why.
pub fn socket_to_use(dir: &Path) -> Result<Option<PathBuf>, String> {
    let path = dir.join(SOCKET_FILE);
    let meta = match std::fs::symlink_metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot check {}: {e}", path.display())),
    };
    let me = nix::unistd::getuid().as_raw();
    if meta.uid() != me {
        return Err(format!(
            "{} belongs to another user (uid {}); refusing to use it",
            path.display(),
            meta.uid()
        ));
    }
    if meta.mode() & 0o077 != 0 {
        return Err(format!(
            "{} can be opened by other users (mode {:o}); refusing to use it — chmod 600 {} \
             (or restart tailchat, which makes it 0600)",
            path.display(),
            meta.mode() & 0o777,
            path.display()
        ));
    }
    Ok(Some(path))
}
