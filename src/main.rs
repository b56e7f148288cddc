//! The `tailchat` program: command line, logging, start-up, and exit codes.

use clap::Parser;
use std::io::IsTerminal;
use std::os::unix::fs::OpenOptionsExt;
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::Instant;
use tailchat::app::chat::Outcome;
use tailchat::app::settings::{Action, Args, Settings};
use tailchat::app::start::{self, Storage};
use tailchat::app::{self, Setup};
use tailchat::app::{client, control};
use tailchat::net::socket;
use tailchat::net::udp::UdpIo;
use tailchat::store;
use tailchat::ui::render::Output;
use tailchat::ui::terminal;

/// The options given that set what a running tailchat has its own of (nick, port, peers …).
fn own_settings_given(args: &Args) -> Vec<&'static str> {
    [
        ("--nick", args.nick.is_some()),
        ("--port", args.port.is_some()),
        ("--bind", args.bind.is_some()),
        ("--peer", !args.peers.is_empty()),
        ("--no-discovery", args.no_discovery),
        ("--tailscale-socket", args.tailscale_socket.is_some()),
        ("--allow", !args.allow.is_empty()),
        ("--download-dir", args.download_dir.is_some()),
        ("--ephemeral", args.ephemeral),
    ]
    .into_iter()
    .filter(|(_, given)| *given)
    .map(|(option, _)| option)
    .collect()
}

fn main() -> ExitCode {
    let mut args = Args::parse();
    let action = args.action.take();
    if matches!(action, Some(Action::Attach)) && !args.json {
        // A usage error, as clap's own are.
        eprintln!("error: attach speaks JSON lines: use tailchat attach --json");
        return ExitCode::from(2);
    }
    // Options a running tailchat has its own of: `attach` refuses them, and `send` through
    // one says it did not use them.
    let own_settings = own_settings_given(&args);
    if matches!(action, Some(Action::Attach)) {
        // It drives the tailchat already running, which has its own; taking them silently
        // would let `attach --nick zed` look as if it were zed.
        let mut given = own_settings.clone();
        if args.wait.is_some() {
            given.push("--wait");
        }
        if !given.is_empty() {
            eprintln!(
                "error: attach takes only --json and --data-dir (the running tailchat has its own settings): drop {}",
                given.join(", ")
            );
            return ExitCode::from(2);
        }
    }
    if matches!(action, Some(Action::Send { .. })) && args.json {
        // Its text is a message, not a JSON command; its answers are exit codes.
        eprintln!(
            "error: send takes no --json: tailchat send [--to NICK]... TEXT, or tailchat attach --json for JSON"
        );
        return ExitCode::from(2);
    }
    let result = Settings::merge(args).and_then(|settings| match action {
        None => run(settings, None, None),
        Some(Action::Send { to, text }) => send(settings, &to, text, own_settings),
        Some(Action::Attach) => attach(&settings).map(|refused| Outcome {
            invalid_command: refused,
            ..Outcome::default()
        }),
    });
    match result {
        Ok(outcome) => ExitCode::from(outcome.exit_code()),
        Err(e) => {
            eprintln!("tailchat: {e}");
            ExitCode::from(Outcome::COULD_NOT_START)
        }
    }
}

/// How long `tailchat send` waits for another one to release the data directory.
const SEND_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// `tailchat send`: through the running tailchat on this data directory when there is one
/// (the options in `unused`, which set what it has its own of, are then said not to be used),
/// else as a one-shot script of this identity.
fn send(
    settings: Settings,
    to: &[String],
    words: Vec<std::ffi::OsString>,
    unused: Vec<&str>,
) -> Result<Outcome, String> {
    // `--to bob --to bob` (an alias and the line typed, say) is one message to bob.
    let mut once: Vec<String> = Vec::new();
    for nick in to {
        if !once.contains(nick) {
            once.push(nick.clone());
        }
    }
    let to = once.as_slice();
    let text = if words.is_empty() {
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut bytes)
            .map_err(|e| format!("cannot read the message from standard input: {e}"))?;
        // As a piped script's lines: bytes that are not UTF-8 become U+FFFD, not an error.
        let text = String::from_utf8_lossy(&bytes);
        text.trim_end_matches(['\n', '\r']).to_owned()
    } else {
        // Bytes that are not UTF-8 become U+FFFD here too (a word taken from a Latin-1 log).
        let words: Vec<String> = words
            .iter()
            .map(|w| w.to_string_lossy().into_owned())
            .collect();
        words.join(" ")
    };
    if text.trim().is_empty() {
        // A usage error (exit 2), as clap's own are: no TEXT, and none on standard input.
        eprintln!("error: nothing to send — tailchat send [--to NICK]... TEXT, or the text on standard input");
        std::process::exit(2);
    }
    let dir = store::dirs::data_dir(settings.data_dir.as_deref())?;
    if let Some(stream) = control::socket_to_use(&dir)?.and_then(|p| client::connect(&p).ok()) {
        if !unused.is_empty() {
            eprintln!(
                "note: your running tailchat sends it, with its own settings: {} not used",
                unused.join(", ")
            );
        }
        return client::send(stream, to, &text, settings.wait);
    }
    // Nobody runs here: be that peer for as long as it takes. A leading '/' is text, not a
    // command ('//' is sent as '/').
    let escaped = if text.starts_with('/') {
        format!("/{text}")
    } else {
        text.clone()
    };
    let lines = if to.is_empty() {
        vec![escaped]
    } else {
        to.iter()
            .map(|nick| format!("/msg {nick} {text}"))
            .collect()
    };
    // At start it waits for the peers it knows to answer: only for these, when named.
    let awaited = (!to.is_empty()).then(|| to.to_vec());
    run(settings, Some(lines), awaited)
}

/// The data directory, the UDP port and the nick of the tailchat that runs on it, if one
/// does: its control socket answers, and says them in its first line (`ready`).
fn running_here(settings: &Settings) -> Option<(std::path::PathBuf, u16, String)> {
    use std::io::BufRead;
    let dir = store::dirs::data_dir_path(settings.data_dir.as_deref()).ok()?;
    let path = control::socket_to_use(&dir).ok()??;
    let stream = client::connect(&path).ok()?;
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(1)))
        .ok()?;
    let mut ready = String::new();
    std::io::BufReader::new(stream).read_line(&mut ready).ok()?;
    let ready: serde_json::Value = serde_json::from_str(&ready).ok()?;
    let port = u16::try_from(ready["port"].as_u64()?).ok()?;
    let nick = ready["nick"].as_str().unwrap_or_default().to_owned();
    Some((dir, port, nick))
}

/// `tailchat attach --json`: relays between this program's standard streams and the running
/// tailchat's control socket; whether a command of ours was refused.
fn attach(settings: &Settings) -> Result<bool, String> {
    let dir = store::dirs::data_dir_path(settings.data_dir.as_deref())?;
    let path = control::socket_to_use(&dir)?.ok_or_else(|| {
        format!(
            "no tailchat is running on data directory {} (no {} there) — start one first",
            dir.display(),
            control::SOCKET_FILE
        )
    })?;
    let stream = client::connect(&path).map_err(|e| match e.kind() {
        // The socket file of a tailchat that stopped without quitting (killed, say).
        std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::NotFound => format!(
            "no tailchat is running on data directory {} (its {} was left by one that stopped without quitting) — start one first",
            dir.display(),
            control::SOCKET_FILE
        ),
        _ => format!(
            "cannot reach the tailchat of data directory {} on {}: {e}",
            dir.display(),
            path.display()
        ),
    })?;
    client::attach(stream, &path)
}

/// How long a `tailchat send` whose turn came waits for its port, which the send before it
/// holds until it has exited.
const SEND_PORT_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Binds the chat's socket ([`socket::bind_or_any`]); for a `send`, trying again while the
/// port is in use, up to [`SEND_PORT_WAIT`].
fn bind_for(
    settings: &Settings,
    fallback: bool,
    send: bool,
) -> Result<(socket::Bound, bool), String> {
    let until = std::time::Instant::now() + SEND_PORT_WAIT;
    loop {
        match socket::bind_or_any(settings.bind, settings.port, fallback) {
            Err(e) if send && e.contains("uses UDP port") && std::time::Instant::now() < until => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

/// Runs the chat: at the prompt, or as a script (standard input, or `script` lines, which go
/// to the peers `awaited` names, if it names them).
fn run(
    mut settings: Settings,
    script: Option<Vec<String>>,
    awaited: Option<Vec<String>>,
) -> Result<Outcome, String> {
    let interactive =
        script.is_none() && std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    // `tailchat send` (its lines given): another send on the same data directory holds the
    // journal for a moment; this one waits its turn, so that it speaks as the same peer.
    let lock_wait = if script.is_some() {
        SEND_LOCK_WAIT
    } else {
        std::time::Duration::ZERO
    };
    let (mut storage, storage_error) = match Storage::open(
        settings.data_dir.as_deref(),
        &settings.history_limit,
        lock_wait,
    ) {
        Ok(s) => (Some(s), None),
        Err(e) => (None, Some(e)),
    };
    // A script on a machine where someone already chats on the default port takes any free
    // port rather than failing: it reaches its peers with --peer or /add. A `send` whose turn
    // came (above) may find the port still held for a moment by the one before it, exiting.
    let fallback = !interactive && !settings.port_chosen;
    let (bound, fell_back) = bind_for(&settings, fallback, script.is_some())
        .map_err(|e| match running_here(&settings) {
            // The port is taken by our own tailchat: what to do then is not "stop it".
            Some((dir, port, _)) if port == settings.port && e.contains("uses UDP port") => {
                let what = e.split(" — ").next().unwrap_or(&e);
                format!(
                    "{what} — your tailchat already runs on this port, with data directory {}: chat there, or reach it with tailchat send or tailchat attach --json",
                    dir.display()
                )
            }
            _ => e,
        })?;
    let port = bound
        .socket
        .local_addr()
        .map_err(|e| format!("cannot read the socket's address: {e}"))?
        .port();
    let discovery = settings.discovery_possible();
    init_logging(interactive, storage.as_ref().map(|s| s.dir.as_path()));
    // The tailchat that holds this data directory, when this one cannot use it.
    let holder = storage_error.as_ref().and_then(|_| running_here(&settings));
    // Not told which nick: the one this data directory used last (the running tailchat's, when
    // one holds it), else the login name.
    if let Some(last) = storage
        .as_ref()
        .and_then(|s| s.restored.last_nick.clone())
        .or_else(|| holder.as_ref().map(|(_, _, nick)| nick.clone()))
        .filter(|n| !settings.nick_chosen && tailchat::proto::nick::is_valid_nick(n))
    {
        settings.nick = last;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    // Before the first prompt; puts the terminal back however this function ends, or panics.
    let _terminal_state = tailchat::ui::tty::TerminalState::save_interactive();
    let mut term = match script {
        Some(lines) => terminal::start_with_input(lines),
        None => terminal::start(
            &settings.nick,
            storage.as_ref().map(Storage::prompt_history),
        ),
    };
    let json = settings.json;
    if json {
        term.output
            .skipped_lines_as(|text| app::json::line(&Output::Notice(text)));
    }
    let say = |out: Output| {
        if json {
            term.output.print_raw(app::json::line(&out));
        } else {
            term.output.print(&out);
        }
    };
    let mut first = vec![Output::Notice(format!(
        "tailchat {}: you are {}, listening on UDP port {port} ({}).{}",
        env!("CARGO_PKG_VERSION"),
        settings.nick,
        settings.discovery_note(),
        // Only a person at the prompt types commands.
        if interactive {
            " /help lists commands."
        } else {
            ""
        },
    ))];
    if discovery && settings.default_port != app::settings::DEFAULT_PORT {
        // Announcements go to our own port, where only tailchats on that port listen.
        first.push(Output::Notice(format!(
            "LAN discovery: announcing to UDP port {0}, where only tailchats started with --port {0} listen; others on the LAN meet you when you /add them or they /add you",
            settings.default_port
        )));
    }
    if fell_back {
        first.push(Output::Notice(format!(
            "UDP port {} is in use (another tailchat?), so this script listens on {port}",
            settings.port
        )));
    }
    let mut started = start::endpoint(
        &settings.nick,
        port,
        discovery,
        storage.as_ref(),
        !interactive,
        Instant::now(),
    );
    // An identity that lives only in memory never comes back: its peers need not keep
    // anything for it, nor list it, once it has left.
    let one_off = app::start::Storage::run_is_one_off(storage.as_ref());
    started
        .endpoint
        .set_ephemeral(settings.ephemeral || one_off);
    started.endpoint.set_script(!interactive);
    // A program reads `ready` first (the README's promise); a person, who we are first.
    if json {
        term.output.print_raw(app::json::ready(
            &settings.nick,
            started.endpoint.peer_id(),
            port,
        ));
    }
    for n in first.into_iter().chain(started.notices.iter().cloned()) {
        say(n);
    }
    // Said only where the user did not ask for it.
    let forgotten = if one_off && !settings.ephemeral {
        "; this run's identity is new and not kept, so peers forget it when you leave (as with --ephemeral)"
    } else {
        ""
    };
    if let Some(problem) = storage.as_ref().and_then(|s| s.problem.clone()) {
        say(Output::Error(format!("storage: {problem}{forgotten}")));
    }
    if let Some(e) = storage_error {
        // A script beside the user's tailchat most likely meant to speak through it.
        let through = if holder.is_some() && !interactive {
            "; to speak as yourself from a script, use tailchat send (it goes through your running tailchat)"
        } else {
            ""
        };
        say(Output::Error(format!(
            "storage off: {e} — the chat works, but nothing is kept after you quit{forgotten}{through}"
        )));
    }
    let reaches = (bound.reaches_v4, bound.reaches_v6);
    // Programs reach this tailchat through its data directory, when it has one of its own.
    let control_dir = storage
        .as_ref()
        .filter(|s| s.journal.as_ref().is_some_and(|j| j.writable()))
        .map(|s| s.dir.clone());
    let tailnet = settings.tailnet_setup();
    let files = app::files::FilesSetup {
        data_dir: control_dir.clone(),
        download_dir: settings.download_dir.clone(),
        accept_from: settings.accept_from.clone(),
        bind: settings.bind,
        port,
    };
    let presence = app::presence::PresenceSetup {
        auto_away: settings.auto_away,
        forget_after: settings.forget_after,
        away: storage.as_ref().and_then(|s| s.restored.away.clone()),
        heard_ms: storage
            .as_ref()
            .map(|s| {
                s.restored
                    .peers
                    .iter()
                    .filter(|(_, p)| p.heard_ms > 0)
                    .map(|(id, p)| (*id, p.heard_ms))
                    .collect()
            })
            .unwrap_or_default(),
        calls: settings.calls,
        forget_check_every: None,
    };
    if !settings.calls.bell {
        term.output.silence_bell();
    }
    let setup = Setup {
        presence,
        files,
        endpoint: started.endpoint,
        session: started.session,
        peers: settings.peers,
        default_port: settings.default_port,
        reaches,
        unshown: storage
            .as_mut()
            .map(|s| std::mem::take(&mut s.restored.unshown))
            .unwrap_or_default(),
        journal: storage.and_then(|s| s.journal),
        scripted: !interactive,
        awaited,
        wait: settings.wait,
        json: settings.json,
        control_dir,
    };
    let output = term.output.clone();
    let result = runtime.block_on(async {
        let net = UdpIo::new(bound, discovery, settings.default_port)
            .map_err(|e| format!("cannot use the socket: {e}"))?;
        let screen = Box::new(term.output);
        Ok(app::run_with(setup, tailnet, net, screen, term.input, shutdown_signal()).await)
    });
    // The printer thread owns the screen: let it write the last lines before we exit.
    output.flush();
    // The exit codes tell a script how its input went; a person at the prompt has seen every
    // error already, and a typo an hour ago does not make the session a failure.
    result.map(|outcome| {
        if interactive {
            Outcome::default()
        } else {
            outcome
        }
    })
}

/// Completes on Ctrl-C (when not reading a terminal), SIGTERM or SIGHUP (the terminal window
/// was closed): all mean "/quit", so peers hear that we left.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let wait_for = |kind: SignalKind| async move {
        match signal(kind) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = wait_for(SignalKind::terminate()) => {}
        () = wait_for(SignalKind::hangup()) => {}
    }
}

/// Logs never reach the prompt line: without a terminal they go to stderr; on a terminal, only
/// when RUST_LOG asks for them, to `tailchat.log` in the data directory.
fn init_logging(interactive: bool, data_dir: Option<&std::path::Path>) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    if !interactive {
        // Colours only for a person watching standard error, not in a file or a pipe.
        let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(colour)
            .with_writer(std::io::stderr)
            .try_init();
        return;
    }
    if std::env::var_os("RUST_LOG").is_none() {
        return;
    }
    let Some(dir) = data_dir else {
        return;
    };
    let Ok(file) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(dir.join(store::LOG_FILE))
    else {
        return;
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(Mutex::new(file))
        .try_init();
}
