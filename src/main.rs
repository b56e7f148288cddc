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
use tailchat::proto::{Config, Endpoint, PeerId};
use tailchat::ui::command::{is_valid_nick, MAX_NICK_CHARS};
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
    /// port)
    #[arg(long, value_name = "PORT", default_value_t = DEFAULT_PORT)]
    port: u16,

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

    /// Where history and identity are kept [default: $XDG_DATA_HOME/tailchat]
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
}

fn parse_nick(s: &str) -> Result<String, String> {
    if is_valid_nick(s) {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "a nick is 1 to {MAX_NICK_CHARS} characters, without spaces or control characters"
        ))
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
    init_logging(interactive, args.data_dir.as_ref());
    let nick = args
        .nick
        .clone()
        .or_else(login_name)
        .unwrap_or_else(|| "anon".to_owned());
    let bound = socket::bind(args.bind, args.port)?;
    let local = bound
        .socket
        .local_addr()
        .map_err(|e| format!("cannot read the socket's address: {e}"))?;
    let default_port = if args.port == 0 {
        DEFAULT_PORT
    } else {
        args.port
    };
    let peers = args
        .peers
        .into_iter()
        .map(|mut p| {
            if p.port == 0 {
                p.port = default_port;
            }
            p
        })
        .collect();
    // Announcements are heard only on the wildcard address: a socket bound to one address does
    // not receive broadcasts.
    let bound_to_one = args.bind.is_some_and(|ip| !ip.is_unspecified());
    let discovery = !args.no_discovery && !bound_to_one;
    let endpoint = Endpoint::new(
        Config {
            peer_id: PeerId(rand::random()),
            nick: nick.clone(),
            port: local.port(),
            seed: rand::random(),
            discovery,
        },
        Instant::now(),
    );
    let shared = Arc::new(Shared::new(nick.clone()));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    let term = terminal::start(shared.clone(), None);
    let discovery_note = match (discovery, bound_to_one) {
        (true, _) => "LAN discovery on",
        (false, true) if !args.no_discovery => "LAN discovery off: it needs the default --bind",
        (false, _) => "LAN discovery off",
    };
    term.output.print(&Output::Notice(format!(
        "tailchat {}: you are {nick}, listening on UDP port {} ({discovery_note}). /help lists commands.",
        env!("CARGO_PKG_VERSION"),
        local.port()
    )));
    let setup = Setup {
        endpoint,
        bound,
        peers,
        default_port,
        discovery,
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

/// Completes on Ctrl-C (when not reading a terminal) or SIGTERM: both mean "/quit".
async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}

fn login_name() -> Option<String> {
    ["USER", "LOGNAME"]
        .iter()
        .filter_map(|v| std::env::var(v).ok())
        .find(|n| is_valid_nick(n))
}

/// Logs never reach the prompt line: without a terminal they go to stderr; on a terminal, only
/// when RUST_LOG asks for them, to `tailchat.log` in the data directory.
fn init_logging(interactive: bool, data_dir: Option<&PathBuf>) {
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
    let Some(dir) = data_dir.cloned().or_else(default_data_dir) else {
        return;
    };
    if std::fs::create_dir_all(&dir).is_err() {
        return;
    }
    let Ok(file) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("tailchat.log"))
    else {
        return;
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(Mutex::new(file))
        .try_init();
}

fn default_data_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))?;
    Some(base.join("tailchat"))
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
