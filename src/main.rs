//! The `tailchat` program: command line, logging, start-up, and exit codes.

use clap::Parser;
use std::io::IsTerminal;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tailchat::net::addr::{self, HostSpec};
use tailchat::net::driver::{self, Setup, UiPort};
use tailchat::net::socket;
use tailchat::proto::{Config, Endpoint, MessageId, PeerId, RestoredPeer};
use tailchat::store::{
    self,
    journal::{Journal, Restored},
};
use tailchat::ui::command::{is_valid_nick, NICK_RULE};
use tailchat::ui::render::Output;
use tailchat::ui::terminal::{self, Shared};

/// The port used when none is given, here and for peers.
const DEFAULT_PORT: u16 = 7654;

/// Peer-to-peer chat for the terminal, for a trusted LAN or tailnet. Type a line to send it to
/// everyone; /help lists the commands.
#[derive(Parser, Debug)]
#[command(name = "tailchat", version, about, max_term_width = 100)]
pub struct Args {
    /// Your display name [default: your login name]
    #[arg(long, value_name = "NICK", value_parser = parse_nick)]
    nick: Option<String>,

    /// UDP port to listen on, and the port assumed for peers given without one (0: any free
    /// port) [default: 7654]
    #[arg(long, value_name = "PORT")]
    port: Option<u16>,

    /// Local address to listen on [default: every address, IPv6 and IPv4]
    #[arg(long, value_name = "ADDR")]
    bind: Option<IpAddr>,

    /// A peer to contact at start, as HOST[:PORT] (an IPv4 or IPv6 address, or a host name);
    /// repeatable
    #[arg(long = "peer", value_name = "HOST[:PORT]", value_parser = parse_peer)]
    peers: Vec<HostSpec>,

    /// Do not announce on or listen to the LAN (broadcast and multicast); reach peers with
    /// --peer and /add only
    #[arg(long)]
    no_discovery: bool,

    /// Where identity, history and undelivered messages are kept [default:
    /// $XDG_DATA_HOME/tailchat]
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
}

fn parse_nick(s: &str) -> Result<String, String> {
    if is_valid_nick(s) {
        Ok(s.to_owned())
    } else {
        Err(NICK_RULE.to_owned())
    }
}

/// Peers given on the command line take the default port; `--port` is only known after
/// parsing, so `main` re-applies it to peers given without one.
fn parse_peer(s: &str) -> Result<HostSpec, String> {
    addr::parse(s, 0)
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tailchat: {e}");
            ExitCode::from(1)
        }
    }
}

fn run(args: Args) -> Result<(), String> {
    let interactive = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    let settings = Settings::merge(args)?;
    let bound = socket::bind(settings.bind, settings.port)?;
    let local = bound
        .socket
        .local_addr()
        .map_err(|e| format!("cannot read the socket's address: {e}"))?;
    // Announcements are heard only on the wildcard address: a socket bound to one address does
    // not receive broadcasts.
    let bound_to_one = settings.bind.is_some_and(|ip| !ip.is_unspecified());
    let discovery = settings.discovery && !bound_to_one;
    let (storage, storage_error) = match Storage::open(settings.data_dir.as_deref()) {
        Ok(s) => (Some(s), None),
        Err(e) => (None, Some(e)),
    };
    init_logging(interactive, storage.as_ref().map(|s| s.dir.as_path()));
    let now = Instant::now();
    let mut endpoint = Endpoint::new(
        Config {
            peer_id: storage
                .as_ref()
                .map_or_else(|| PeerId(rand::random()), |s| s.id),
            nick: settings.nick.clone(),
            port: local.port(),
            seed: rand::random(),
            discovery,
            session: new_session(),
        },
        now,
    );
    let shared = Arc::new(Shared::new(settings.nick.clone()));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    let prompt_history = storage
        .as_ref()
        .map(|s| s.dir.join(store::PROMPT_HISTORY_FILE));
    // Before the first prompt; puts the terminal back however this function ends, or panics.
    let _terminal_state = tailchat::ui::tty::TerminalState::save_interactive();
    let term = terminal::start(shared.clone(), prompt_history);
    let discovery_note = match (discovery, bound_to_one) {
        (true, _) => "LAN discovery on",
        (false, true) if settings.discovery => "LAN discovery off: it needs the default --bind",
        (false, _) => "LAN discovery off",
    };
    term.output.print(&Output::Notice(format!(
        "tailchat {}: you are {}, listening on UDP port {} ({discovery_note}). /help lists commands.",
        env!("CARGO_PKG_VERSION"),
        settings.nick,
        local.port()
    )));
    let journal = match (storage, storage_error) {
        (Some(s), _) => {
            for w in &s.restored.warnings {
                term.output.print(&Output::Notice(w.clone()));
            }
            let waiting: usize = s.restored.outbox.values().map(Vec::len).sum();
            if waiting > 0 {
                term.output.print(&Output::Notice(format!(
                    "{waiting} message(s) from earlier wait for their recipients and go out when they are back"
                )));
            }
            let (next_msg, peers) = restored_peers(&s.restored);
            // Ids also grow with the clock, so they never repeat even if the journal was lost
            // or a write failed (a receiver would take a repeated id for a message it showed).
            let next_msg = MessageId(next_msg.0.max(clock_message_floor()));
            endpoint.restore(now, next_msg, peers);
            Some(s.journal)
        }
        (None, Some(e)) => {
            term.output.print(&Output::Error(format!(
                "storage off: {e} — the chat works, but nothing is kept after you quit"
            )));
            None
        }
        (None, None) => None,
    };
    let setup = Setup {
        endpoint,
        bound,
        peers: settings.peers,
        default_port: settings.default_port,
        discovery,
        journal,
        scripted: !interactive,
    };
    let output = term.output.clone();
    let ui = UiPort {
        input: term.input,
        output: Box::new(term.output),
        shared,
    };
    let result = runtime
        .block_on(driver::run(setup, ui, shutdown_signal()))
        .map_err(|e| format!("network driver failed: {e}"));
    // The printer thread owns the screen: let it write the last lines before we exit.
    output.flush();
    result
}

/// The options in force: the command line over the config file over the defaults.
struct Settings {
    /// Display name.
    nick: String,
    /// Port to listen on (0: any).
    port: u16,
    /// Port assumed for peers given without one.
    default_port: u16,
    /// Address to listen on.
    bind: Option<IpAddr>,
    /// Peers to contact at start: the config file's, then the command line's.
    peers: Vec<HostSpec>,
    /// LAN announcements wanted.
    discovery: bool,
    /// Where to keep data, if not the default.
    data_dir: Option<PathBuf>,
}

impl Settings {
    /// # Errors
    /// An unreadable or invalid config file, named, with the line at fault.
    fn merge(args: Args) -> Result<Settings, String> {
        let file = store::dirs::config_file();
        let cfg = match &file {
            Some(path) => store::config::load(path)?.unwrap_or_default(),
            None => store::config::FileConfig::default(),
        };
        let in_file = |what: &str| {
            format!(
                "invalid config file {}: {what}",
                file.as_deref()
                    .map_or("?".into(), |p| p.display().to_string())
            )
        };
        if let Some(n) = cfg.nick.as_deref().filter(|n| !is_valid_nick(n)) {
            return Err(in_file(&format!("nick '{n}': {NICK_RULE}")));
        }
        let port = args.port.or(cfg.port).unwrap_or(DEFAULT_PORT);
        let default_port = if port == 0 { DEFAULT_PORT } else { port };
        let mut peers = Vec::new();
        for p in cfg.peers.iter().flatten() {
            peers.push(
                addr::parse(p, default_port).map_err(|e| in_file(&format!("peer '{p}': {e}")))?,
            );
        }
        peers.extend(args.peers.into_iter().map(|mut p| {
            if p.port == 0 {
                p.port = default_port;
            }
            p
        }));
        Ok(Settings {
            nick: args
                .nick
                .or(cfg.nick)
                .or_else(login_name)
                .unwrap_or_else(|| "anon".to_owned()),
            port,
            default_port,
            bind: args.bind,
            peers,
            discovery: !args.no_discovery && cfg.discovery.unwrap_or(true),
            data_dir: args.data_dir.or(cfg.data_dir),
        })
    }
}

/// What was opened in the data directory.
struct Storage {
    /// The directory.
    dir: PathBuf,
    /// Our identity.
    id: PeerId,
    /// The open journal.
    journal: Journal,
    /// What the journal remembers.
    restored: Restored,
}

impl Storage {
    /// # Errors
    /// The data directory cannot be created or written, the identity file is unreadable, or
    /// the journal cannot be opened: each says which file and what to do.
    fn open(explicit: Option<&std::path::Path>) -> Result<Storage, String> {
        let dir = store::dirs::data_dir(explicit)?;
        store::dirs::check_writable(&dir)?;
        let id = store::identity::load_or_create(&dir, rand::random)?;
        let (journal, restored) =
            Journal::open(&dir.join(store::JOURNAL_FILE)).map_err(|e| e.to_string())?;
        Ok(Storage {
            dir,
            id,
            journal,
            restored,
        })
    }
}

/// The journal's summary as the protocol core takes it back.
fn restored_peers(r: &Restored) -> (MessageId, Vec<RestoredPeer>) {
    let mut ids: Vec<PeerId> = r.peers.keys().copied().collect();
    ids.extend(r.outbox.keys().copied());
    ids.extend(r.delivered_from.keys().copied());
    ids.sort();
    ids.dedup();
    let peers = ids
        .into_iter()
        .map(|id| {
            let known = r.peers.get(&id);
            RestoredPeer {
                id,
                nick: known.map_or_else(|| id.to_string(), |p| p.nick.clone()),
                addrs: known.map(|p| p.addrs.clone()).unwrap_or_default(),
                manual: known.is_some_and(|p| p.manual),
                delivered_through: MessageId(r.delivered_from.get(&id).copied().unwrap_or(0)),
                outbox: r
                    .outbox
                    .get(&id)
                    .map(|v| {
                        v.iter()
                            .map(|o| (MessageId(o.id), o.direct, o.text.clone()))
                            .collect()
                    })
                    .unwrap_or_default(),
            }
        })
        .collect();
    (MessageId(r.next_msg), peers)
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

/// The lowest message id this run may use: wall-clock milliseconds × 4096, so every run starts
/// above any earlier run's ids unless that run sent over 4096 messages per millisecond.
fn clock_message_floor() -> u64 {
    (unix_ms() << 12).max(1)
}

/// Wall-clock milliseconds since the Unix epoch (0 if the clock reads before it).
fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// This run's session number: larger than any earlier run's (wall-clock milliseconds in the
/// high bits), unpredictable in the low 16, never 0.
fn new_session() -> u64 {
    (unix_ms() << 16) | u64::from(rand::random::<u16>()) | 1
}

fn login_name() -> Option<String> {
    ["USER", "LOGNAME"]
        .iter()
        .filter_map(|v| std::env::var(v).ok())
        .find(|n| is_valid_nick(n))
}

/// Logs never reach the prompt line: without a terminal they go to stderr; on a terminal, only
/// when RUST_LOG asks for them, to `tailchat.log` in the data directory.
fn init_logging(interactive: bool, data_dir: Option<&std::path::Path>) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    if !interactive {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_line_definition_is_valid() {
        Args::command().debug_assert();
    }

    #[test]
    fn peers_take_the_port_given_later() {
        let a =
            Args::try_parse_from(["tailchat", "--peer", "laptop", "--peer", "[::1]:9"]).unwrap();
        assert_eq!(a.peers[0].port, 0, "filled in by run()");
        assert_eq!(a.peers[1].port, 9);
        assert!(Args::try_parse_from(["tailchat", "--nick", "two words"]).is_err());
        assert!(Args::try_parse_from(["tailchat", "--port", "70000"]).is_err());
        assert!(Args::try_parse_from(["tailchat", "--peer", "a b"]).is_err());
    }
}
