//! One HTTP/1.1 GET to tailscaled's LocalAPI over its Unix socket, the way tailscale's own
//! client makes it (`Host: local-tailscaled.sock`), under one time limit for connecting,
//! sending and reading the whole answer. HTTP itself (Content-Length, chunked, a connection
//! closed early) is hyper's business; this module turns each way it can go wrong into one
//! [`LocalApiError`] that says what happened and what the user can do.

use super::status::{self, Owner, Status};
use http_body_util::{BodyExt as _, Empty, Limited};
use hyper::body::Bytes;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::net::UnixStream;

/// The Host header tailscale's client sends; tailscaled refuses a LocalAPI request with another
/// (other than none), as a guard against browsers.
pub const HOST: &str = "local-tailscaled.sock";
/// How long one request may take, from connecting to the last byte of the answer.
pub const TIMEOUT: Duration = Duration::from_secs(3);
/// The largest answer read: the status of a tailnet of thousands of devices is a few MB.
const MAX_ANSWER: usize = 32 << 20;
/// Characters of an error answer's text quoted in a message.
const QUOTE: usize = 80;

/// tailscaled's LocalAPI at a socket path.
#[derive(Clone, Debug)]
pub struct LocalApi {
    /// The socket (`/var/run/tailscale/tailscaled.sock` on Linux, or `--tailscale-socket`).
    path: PathBuf,
    /// The limit for one request (see [`TIMEOUT`]).
    timeout: Duration,
}

/// Why a LocalAPI request gave nothing usable. Its `Display` is one line: what happened, then
/// after ` — ` what to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LocalApiError {
    /// No socket at the path: tailscaled is not installed or not running here.
    Missing(PathBuf),
    /// The socket is there but nobody listens (tailscaled stopped or crashed).
    NotListening(PathBuf),
    /// Something other than a socket is at the path (a file, a folder): a wrong
    /// `--tailscale-socket`, not a stopped tailscaled.
    NotASocket(PathBuf, &'static str),
    /// The socket may not be opened by us (file permissions), or tailscaled answered 403.
    Denied(PathBuf, String),
    /// No complete answer within the time limit.
    Timeout(PathBuf, Duration),
    /// The connection was closed before a complete answer.
    Closed(PathBuf),
    /// An HTTP error status other than 403 (and other than 404 from WhoIs, which means "no
    /// device there").
    Status(PathBuf, u16, String),
    /// The answer is not HTTP, or not the JSON tailscale sends.
    Garbage(PathBuf, String),
    /// tailscaled answers, but is not connected to a tailnet (`BackendState`).
    NotRunning(PathBuf, String),
    /// Any other failure of the socket.
    Io(PathBuf, String),
}

impl LocalApiError {
    /// Whether `other` is the same failure for a person (the details of a garbled answer or an
    /// error text may differ from one try to the next): tailchat tells the user again only
    /// when this changes.
    pub fn same_kind(&self, other: &LocalApiError) -> bool {
        use LocalApiError as E;
        match (self, other) {
            (E::Status(a, x, _), E::Status(b, y, _)) => a == b && x == y,
            (E::NotRunning(a, x), E::NotRunning(b, y)) => a == b && x == y,
            _ => std::mem::discriminant(self) == std::mem::discriminant(other),
        }
    }
}

impl fmt::Display for LocalApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use LocalApiError as E;
        match self {
            E::Missing(p) => write!(
                f,
                "no tailscaled socket at {} (--tailscale-socket PATH if it is elsewhere)",
                p.display()
            ),
            E::NotListening(p) => write!(
                f,
                "tailscaled is not running ({}: connection refused) — start it (`sudo systemctl start tailscaled`)",
                p.display()
            ),
            E::NotASocket(p, what) => write!(
                f,
                "{} is {what}, not a socket — check --tailscale-socket (tailscaled's is usually /var/run/tailscale/tailscaled.sock)",
                p.display()
            ),
            E::Denied(p, why) => write!(
                f,
                "cannot read {} ({why}) — add yourself to the tailscale group, or run `sudo tailscale set --operator=$USER`",
                p.display()
            ),
            E::Timeout(p, t) => write!(
                f,
                "tailscaled did not answer on {} within {} s — is it stuck? (`tailscale status` should answer at once)",
                p.display(),
                t.as_secs()
            ),
            E::Closed(p) => write!(
                f,
                "{} closed the connection without answering — is it tailscaled's socket? (`tailscale status` should answer)",
                p.display()
            ),
            E::Status(p, code, text) => write!(
                f,
                "tailscaled on {} answered HTTP {code}: {text} — `tailscale status` may say why",
                p.display()
            ),
            E::Garbage(p, why) => write!(
                f,
                "the answer on {} is not tailscaled's ({why}) — is it tailscaled's socket? (--tailscale-socket PATH)",
                p.display()
            ),
            E::NotRunning(_, state) => write!(
                f,
                "Tailscale is not connected (its state is {state}) — run `tailscale up`"
            ),
            E::Io(p, why) => write!(f, "cannot use {}: {why}", p.display()),
        }
    }
}

impl LocalApi {
    /// The LocalAPI at `path`, with the default time limit.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            timeout: TIMEOUT,
        }
    }

    /// The same with another time limit (tests).
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The tailnet's devices (`GET /localapi/v0/status`). A tailscaled that is not connected
    /// (`BackendState` other than `Running`) is an error: its device list is not current.
    ///
    /// # Errors
    /// Every way the request or the answer can fail, as a [`LocalApiError`].
    pub async fn status(&self) -> Result<Status, LocalApiError> {
        let (code, body) = self.get("/localapi/v0/status").await?;
        if code != StatusCode::OK {
            return Err(self.status_error(code, &body));
        }
        let st = status::parse_status(&body).map_err(|e| self.garbage(&e))?;
        if st.backend_state != "Running" {
            let state = if st.backend_state.is_empty() {
                "unknown".to_owned()
            } else {
                quote(st.backend_state.as_bytes())
            };
            return Err(LocalApiError::NotRunning(self.path.clone(), state));
        }
        Ok(st)
    }

    /// Who the tailnet says is at `addr` (`GET /localapi/v0/whois?addr=IP:PORT`); `None` when
    /// no device of the tailnet has that address (HTTP 404).
    ///
    /// # Errors
    /// Every way the request or the answer can fail, as a [`LocalApiError`].
    pub async fn whois(&self, addr: SocketAddr) -> Result<Option<Owner>, LocalApiError> {
        let addr = SocketAddr::new(addr.ip().to_canonical(), addr.port());
        let path = format!(
            "/localapi/v0/whois?addr={}",
            query_escape(&addr.to_string())
        );
        let (code, body) = self.get(&path).await?;
        match code {
            StatusCode::OK => status::parse_whois(&body)
                .map(Some)
                .map_err(|e| self.garbage(&e)),
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(self.status_error(code, &body)),
        }
    }

    fn garbage(&self, why: &str) -> LocalApiError {
        LocalApiError::Garbage(self.path.clone(), quote(why.as_bytes()))
    }

    fn status_error(&self, code: StatusCode, body: &[u8]) -> LocalApiError {
        let text = quote(body);
        if code == StatusCode::FORBIDDEN {
            let why = if text.is_empty() {
                "access denied".to_owned()
            } else {
                text
            };
            LocalApiError::Denied(self.path.clone(), why)
        } else {
            LocalApiError::Status(self.path.clone(), code.as_u16(), text)
        }
    }

    /// One GET of `path_and_query`: the status and the whole body.
    async fn get(&self, path_and_query: &str) -> Result<(StatusCode, Bytes), LocalApiError> {
        tokio::time::timeout(self.timeout, self.get_unlimited(path_and_query))
            .await
            .unwrap_or_else(|_| Err(LocalApiError::Timeout(self.path.clone(), self.timeout)))
    }

    async fn get_unlimited(
        &self,
        path_and_query: &str,
    ) -> Result<(StatusCode, Bytes), LocalApiError> {
        let stream = UnixStream::connect(&self.path)
            .await
            .map_err(|e| self.connect_error(&e))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| self.http_error(&e))?;
        let request = Request::get(path_and_query)
            .header(hyper::header::HOST, HOST)
            .body(Empty::<Bytes>::new())
            .map_err(|e| LocalApiError::Io(self.path.clone(), e.to_string()))?;
        let exchange = async {
            let response = sender
                .send_request(request)
                .await
                .map_err(|e| self.http_error(&e))?;
            let code = response.status();
            let body = Limited::new(response.into_body(), MAX_ANSWER)
                .collect()
                .await
                .map_err(|e| match e.downcast::<hyper::Error>() {
                    Ok(e) => self.http_error(&e),
                    Err(e) => self.garbage(&e.to_string()),
                })?
                .to_bytes();
            Ok((code, body))
        };
        // The connection is driven in this task, beside the exchange: when the time limit
        // drops this future, the socket is closed with it, and nothing is left running.
        tokio::pin!(conn, exchange);
        tokio::select! {
            result = &mut exchange => result,
            ended = &mut conn => match ended {
                Err(e) => Err(self.http_error(&e)),
                // Closed after a complete answer (HTTP/1.0 style): the exchange has it.
                Ok(()) => exchange.await,
            },
        }
    }

    fn connect_error(&self, e: &io::Error) -> LocalApiError {
        let path = self.path.clone();
        match e.kind() {
            io::ErrorKind::NotFound => LocalApiError::Missing(path),
            io::ErrorKind::PermissionDenied => {
                LocalApiError::Denied(path, "permission denied".to_owned())
            }
            io::ErrorKind::ConnectionRefused => {
                use std::os::unix::fs::FileTypeExt;
                match std::fs::metadata(&path).map(|m| m.file_type()) {
                    Ok(t) if t.is_dir() => LocalApiError::NotASocket(path, "a folder"),
                    Ok(t) if !t.is_socket() => LocalApiError::NotASocket(path, "a file"),
                    _ => LocalApiError::NotListening(path),
                }
            }
            _ => LocalApiError::Io(path, e.to_string()),
        }
    }

    fn http_error(&self, e: &hyper::Error) -> LocalApiError {
        let path = self.path.clone();
        if e.is_parse() || e.is_parse_status() {
            LocalApiError::Garbage(path, format!("not HTTP: {e}"))
        } else if e.is_incomplete_message() || e.is_closed() || e.is_canceled() {
            LocalApiError::Closed(path)
        } else {
            LocalApiError::Io(path, e.to_string())
        }
    }
}

/// The start of `bytes` as one short line of text.
fn quote(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let line: String = text
        .trim()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(QUOTE)
        .collect();
    if text.trim().chars().count() > QUOTE {
        format!("{line}…")
    } else {
        line
    }
}

/// `text` escaped for a URL query value, as Go's `url.QueryEscape` does it for what an
/// address can contain.
fn query_escape(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::tailnet::fake::{FakeLocalApi, Mode};

    const STATUS: &str = include_str!("../../../tests/fixtures/tailnet/status.json");
    const WHOIS_BOB: &str = include_str!("../../../tests/fixtures/tailnet/whois-bob-laptop.json");

    #[test]
    fn addresses_are_escaped_like_go_does() {
        assert_eq!(query_escape("100.64.0.2:7654"), "100.64.0.2%3A7654");
        assert_eq!(
            query_escape("[fd7a:115c:a1e0::2]:7654"),
            "%5Bfd7a%3A115c%3Aa1e0%3A%3A2%5D%3A7654"
        );
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    /// Runs `check` against a fake in `mode` answering with the fixtures.
    fn with_fake<F, Fut>(mode: Mode, check: F)
    where
        F: FnOnce(LocalApi, FakeLocalApi) -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        rt().block_on(async {
            let fake = FakeLocalApi::start(mode, STATUS)
                .with_whois("100.64.0.2", WHOIS_BOB)
                .await;
            let api = LocalApi::new(fake.path()).with_timeout(Duration::from_millis(500));
            check(api, fake).await;
        });
    }

    #[test]
    fn status_and_whois_are_read_over_the_socket() {
        for mode in [
            Mode::Answer,
            Mode::Chunked,
            Mode::CloseDelimited,
            Mode::Trickle,
        ] {
            with_fake(mode, |api, fake| async move {
                let st = api
                    .status()
                    .await
                    .unwrap_or_else(|e| panic!("{mode:?}: {e}"));
                assert_eq!(st.devices.len(), 8, "{mode:?}");
                let bob = api.whois("100.64.0.2:7654".parse().unwrap()).await.unwrap();
                assert_eq!(bob.unwrap().user.login_name, "bob@example.com");
                let nobody = api.whois("100.64.0.99:7654".parse().unwrap()).await;
                assert_eq!(nobody, Ok(None), "404 means no device there");
                let heads = fake.requests();
                assert!(
                    heads
                        .iter()
                        .all(|h| h.contains("host: local-tailscaled.sock")),
                    "{heads:?}"
                );
                assert!(
                    heads
                        .iter()
                        .any(|h| h.starts_with("get /localapi/v0/whois?addr=100.64.0.2%3a7654 ")),
                    "{heads:?}"
                );
            });
        }
    }

    #[test]
    fn every_failure_is_one_error_that_says_what_to_do() {
        type Case = (Mode, fn(&LocalApiError) -> bool, &'static str);
        let cases: [Case; 5] = [
            (
                Mode::Forbidden,
                |e| matches!(e, LocalApiError::Denied(..)),
                "tailscale set --operator",
            ),
            (
                Mode::Hang,
                |e| matches!(e, LocalApiError::Timeout(..)),
                "did not answer",
            ),
            (
                Mode::Garbage,
                |e| matches!(e, LocalApiError::Garbage(..)),
                "not tailscaled's",
            ),
            (
                Mode::NotHttp,
                |e| matches!(e, LocalApiError::Garbage(..)),
                "not HTTP",
            ),
            (
                Mode::Close,
                |e| matches!(e, LocalApiError::Closed(..)),
                "closed the connection",
            ),
        ];
        for (mode, is, says) in cases {
            with_fake(mode, |api, fake| async move {
                let _running = fake;
                let e = api.status().await.unwrap_err();
                assert!(is(&e), "{mode:?}: {e:?}");
                let line = e.to_string();
                assert!(
                    line.contains(says) && !line.contains('\n'),
                    "{mode:?}: {line}"
                );
            });
        }
        with_fake(Mode::NeedsLogin, |api, fake| async move {
            let _running = fake;
            let e = api.status().await.unwrap_err();
            assert!(e.to_string().contains("`tailscale up`"), "{e}");
        });
    }

    #[test]
    fn a_missing_or_dead_socket_is_told_apart() {
        rt().block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let missing = LocalApi::new(dir.path().join("nope.sock"));
            let e = missing.status().await.unwrap_err();
            assert!(matches!(e, LocalApiError::Missing(_)), "{e:?}");
            assert!(e.to_string().contains("--tailscale-socket"), "{e}");
            // A socket file nobody listens on any more.
            let dead = dir.path().join("dead.sock");
            drop(std::os::unix::net::UnixListener::bind(&dead).unwrap());
            let e = LocalApi::new(&dead).status().await.unwrap_err();
            assert!(matches!(e, LocalApiError::NotListening(_)), "{e:?}");
            // A wrong path: a file or a folder, not a stopped tailscaled.
            let file = dir.path().join("plain");
            std::fs::write(&file, b"").unwrap();
            for (path, what) in [(file.as_path(), "a file"), (dir.path(), "a folder")] {
                let e = LocalApi::new(path).status().await.unwrap_err();
                assert_eq!(e, LocalApiError::NotASocket(path.to_path_buf(), what));
                assert!(e.to_string().contains("check --tailscale-socket"), "{e}");
            }
        });
    }

    #[test]
    fn failures_of_one_kind_are_the_same_for_a_person() {
        let p = PathBuf::from("/s");
        let g = |w: &str| LocalApiError::Garbage(p.clone(), w.into());
        assert!(g("x").same_kind(&g("y")));
        assert!(!g("x").same_kind(&LocalApiError::Closed(p.clone())));
        let s = |c| LocalApiError::Status(p.clone(), c, "t".into());
        assert!(s(500).same_kind(&s(500)) && !s(500).same_kind(&s(502)));
    }
}
