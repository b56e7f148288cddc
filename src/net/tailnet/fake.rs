//! A fake tailscaled LocalAPI for tests: an HTTP server on a Unix socket in a temporary
//! directory, on its own thread, answering `/localapi/v0/status` and `/localapi/v0/whois`
//! with JSON it is given — or failing on purpose in one of the ways a real one can
//! ([`Mode`]). Its mode and answers can change while it runs, so a test can break it and mend
//! it again.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{UnixListener, UnixStream};

/// How the fake answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// 200 with a Content-Length.
    Answer,
    /// 200, the body in chunks (`Transfer-Encoding: chunked`).
    Chunked,
    /// 200, HTTP/1.0 style: no length, the end of the body is the end of the connection.
    CloseDelimited,
    /// 200 with a Content-Length, written a few bytes at a time.
    Trickle,
    /// 403, as tailscaled answers a client it does not permit.
    Forbidden,
    /// Reads the request and never answers.
    Hang,
    /// 200 with a body that is not JSON.
    Garbage,
    /// Not HTTP at all.
    NotHttp,
    /// Reads the request and closes the connection.
    Close,
    /// 200, but tailscaled is logged out (`BackendState: NeedsLogin`, no peers).
    NeedsLogin,
}

/// What the server answers with, shared with its thread.
#[derive(Debug)]
struct Answers {
    /// The current mode.
    mode: Mode,
    /// The status JSON.
    status: String,
    /// WhoIs JSON by IP address (as text).
    whois: HashMap<String, String>,
    /// Request heads received, lowercased, oldest first.
    requests: Vec<String>,
}

/// A running fake; stops when dropped.
pub(crate) struct FakeLocalApi {
    /// Holds the socket's directory.
    _dir: tempfile::TempDir,
    /// The socket.
    path: PathBuf,
    /// What it answers.
    answers: Arc<Mutex<Answers>>,
    /// Ends the server's thread when dropped.
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// A fake being set up (see [`FakeLocalApi::start`]).
pub(crate) struct Builder {
    /// What it will answer.
    answers: Answers,
}

impl Builder {
    /// Answers WhoIs for `ip` with `json`.
    pub(crate) fn with_whois(mut self, ip: &str, json: &str) -> Self {
        self.answers.whois.insert(ip.to_owned(), json.to_owned());
        self
    }

    /// Starts serving.
    pub(crate) fn run(self) -> FakeLocalApi {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("tailscaled.sock");
        let answers = Arc::new(Mutex::new(self.answers));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready) = std::sync::mpsc::channel();
        let (p, a) = (path.clone(), Arc::clone(&answers));
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            rt.block_on(async move {
                let listener = UnixListener::bind(&p).expect("bind the fake's socket");
                let _ = ready_tx.send(());
                let serve = async {
                    loop {
                        if let Ok((conn, _)) = listener.accept().await {
                            tokio::spawn(serve(conn, Arc::clone(&a)));
                        }
                    }
                };
                tokio::select! {
                    () = serve => {}
                    _ = stopped => {}
                }
            });
        });
        ready.recv().expect("the fake started");
        FakeLocalApi {
            _dir: dir,
            path,
            answers,
            _stop: stop,
        }
    }
}

impl FakeLocalApi {
    /// A fake in `mode` whose status is `status`; add WhoIs answers, then `.run()`.
    #[allow(clippy::new_ret_no_self)]
    pub(crate) fn new(mode: Mode, status: &str) -> Builder {
        Builder {
            answers: Answers {
                mode,
                status: status.to_owned(),
                whois: HashMap::new(),
                requests: Vec::new(),
            },
        }
    }

    /// [`FakeLocalApi::new`] and its WhoIs answers, running, in one expression:
    /// `FakeLocalApi::start(mode, status).with_whois(ip, json).await`.
    pub(crate) fn start(mode: Mode, status: &str) -> Starting {
        Starting(Self::new(mode, status))
    }

    /// The socket's path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Changes how it answers from now on.
    pub(crate) fn set_mode(&self, mode: Mode) {
        self.answers.lock().unwrap().mode = mode;
    }

    /// Request heads received so far, lowercased.
    pub(crate) fn requests(&self) -> Vec<String> {
        self.answers.lock().unwrap().requests.clone()
    }
}

/// A fake about to start, awaited to run it (see [`FakeLocalApi::start`]).
pub(crate) struct Starting(Builder);

impl Starting {
    /// Answers WhoIs for `ip` with `json`.
    pub(crate) fn with_whois(self, ip: &str, json: &str) -> Self {
        Self(self.0.with_whois(ip, json))
    }
}

impl std::future::IntoFuture for Starting {
    type Output = FakeLocalApi;
    type IntoFuture = std::future::Ready<FakeLocalApi>;

    fn into_future(self) -> Self::IntoFuture {
        std::future::ready(self.0.run())
    }
}

/// Serves one connection: one request, one answer.
async fn serve(mut conn: UnixStream, answers: Arc<Mutex<Answers>>) {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
        match conn.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let head = String::from_utf8_lossy(&head).to_lowercase();
    let target = head.split(' ').nth(1).unwrap_or_default().to_owned();
    let (mode, code, body) = {
        let mut a = answers.lock().unwrap();
        a.requests.push(head.trim_end().to_owned());
        let (code, body) = if target == "/localapi/v0/status" {
            if a.mode == Mode::NeedsLogin {
                (
                    200,
                    r#"{"BackendState":"NeedsLogin","Self":null,"Peer":null}"#.to_owned(),
                )
            } else {
                (200, a.status.clone())
            }
        } else if let Some(addr) = target.strip_prefix("/localapi/v0/whois?addr=") {
            let addr = percent_decode(addr);
            let ip = match addr.strip_prefix('[') {
                Some(rest) => rest.split(']').next().unwrap_or_default().to_owned(),
                None => addr.split(':').next().unwrap_or_default().to_owned(),
            };
            match a.whois.get(&ip) {
                Some(json) => (200, json.clone()),
                None => (404, "no match for IP:port\n".to_owned()),
            }
        } else {
            (404, "404 page not found\n".to_owned())
        };
        (a.mode, code, body)
    };
    let reason = if code == 200 { "OK" } else { "Not Found" };
    let answer = match mode {
        Mode::Answer | Mode::NeedsLogin => format!(
            "HTTP/1.1 {code} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
        Mode::Chunked => {
            let mut a = format!(
                "HTTP/1.1 {code} {reason}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
            );
            for piece in body.as_bytes().chunks(700) {
                a.push_str(&format!("{:x}\r\n", piece.len()));
                a.push_str(&String::from_utf8_lossy(piece));
                a.push_str("\r\n");
            }
            a.push_str("0\r\n\r\n");
            a
        }
        Mode::CloseDelimited => format!("HTTP/1.0 {code} {reason}\r\n\r\n{body}"),
        Mode::Trickle => {
            let whole = format!(
                "HTTP/1.1 {code} {reason}\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            for piece in whole.as_bytes().chunks(997) {
                if conn.write_all(piece).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            return;
        }
        Mode::Forbidden => {
            let text = "status access denied\n";
            format!(
                "HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n\r\n{text}",
                text.len()
            )
        }
        Mode::Hang => {
            std::future::pending::<()>().await;
            return;
        }
        Mode::Garbage => {
            let text = "<html><body>hello</body></html>";
            format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{text}",
                text.len()
            )
        }
        Mode::NotHttp => "SSH-2.0-OpenSSH_9.6\r\n".to_owned(),
        Mode::Close => return,
    };
    let _ = conn.write_all(answer.as_bytes()).await;
    let _ = conn.shutdown().await;
}

/// `%XX` escapes decoded (the fake only needs what an address can contain).
fn percent_decode(s: &str) -> String {
    let mut out = Vec::new();
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hex: String = bytes.by_ref().take(2).map(char::from).collect();
            out.push(u8::from_str_radix(&hex, 16).unwrap_or(b'?'));
        } else {
            out.push(b);
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
