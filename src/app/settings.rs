//! The options in force: the command line (clap) over the config file over the defaults.

use crate::net::addr::{self, HostSpec};
use crate::store;
use crate::store::journal::HistoryLimit;
use crate::ui::command::{is_valid_nick, NICK_RULE};
use clap::Parser;
use std::net::IpAddr;
use std::path::PathBuf;

/// The port used when none is given, here and for peers.
pub const DEFAULT_PORT: u16 = 7654;

/// Peer-to-peer chat for the terminal, for a trusted LAN or tailnet. Type a line to send it to
/// everyone; /help lists the commands.
#[derive(Parser, Debug)]
#[command(name = "tailchat", version, about, max_term_width = 100)]
pub struct Args {
    /// Your display name [default: your login name]
    #[arg(long, value_name = "NICK", value_parser = parse_nick)]
    pub nick: Option<String>,

    /// UDP port to listen on, and the port assumed for peers given without one (0: any free
    /// port) [default: 7654]
    #[arg(long, value_name = "PORT")]
    pub port: Option<u16>,

    /// Local address to listen on [default: every address, IPv6 and IPv4]
    #[arg(long, value_name = "ADDR")]
    pub bind: Option<IpAddr>,

    /// A peer to contact at start, as HOST[:PORT] (an IPv4 or IPv6 address, or a host name);
    /// repeatable
    #[arg(long = "peer", value_name = "HOST[:PORT]", value_parser = parse_peer)]
    pub peers: Vec<HostSpec>,

    /// Do not announce on or listen to the LAN (broadcast and multicast); reach peers with
    /// --peer and /add only
    #[arg(long)]
    pub no_discovery: bool,

    /// Where identity, history and undelivered messages are kept [default:
    /// $XDG_DATA_HOME/tailchat]
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

fn parse_nick(s: &str) -> Result<String, String> {
    if is_valid_nick(s) {
        Ok(s.to_owned())
    } else {
        Err(NICK_RULE.to_owned())
    }
}

/// Peers given on the command line take the default port; `--port` is only known after
/// parsing, so [`Settings::merge`] re-applies it to peers given without one.
fn parse_peer(s: &str) -> Result<HostSpec, String> {
    addr::parse(s, 0)
}

/// The options in force.
#[derive(Debug)]
pub struct Settings {
    /// Display name.
    pub nick: String,
    /// Port to listen on (0: any).
    pub port: u16,
    /// Port assumed for peers given without one.
    pub default_port: u16,
    /// Address to listen on.
    pub bind: Option<IpAddr>,
    /// Peers to contact at start: the config file's, then the command line's.
    pub peers: Vec<HostSpec>,
    /// LAN announcements wanted.
    pub discovery: bool,
    /// Where to keep data, if not the default.
    pub data_dir: Option<PathBuf>,
    /// How much history the journal keeps (config file only).
    pub history_limit: HistoryLimit,
}

impl Settings {
    /// The command line over the config file (at its usual place) over the defaults.
    ///
    /// # Errors
    /// An unreadable or invalid config file, named, with the line at fault.
    pub fn merge(args: Args) -> Result<Settings, String> {
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
            history_limit: cfg.history_limit.map(|h| h.limit()).unwrap_or_default(),
        })
    }

    /// Whether LAN discovery can run: announcements are heard only on the wildcard address
    /// (a socket bound to one address does not receive broadcasts).
    pub fn discovery_possible(&self) -> bool {
        self.discovery && self.bind.is_none_or(|ip| ip.is_unspecified())
    }

    /// How the start-up line describes discovery.
    pub fn discovery_note(&self) -> &'static str {
        match (self.discovery_possible(), self.discovery) {
            (true, _) => "LAN discovery on",
            (false, true) => "LAN discovery off: it needs the default --bind",
            (false, false) => "LAN discovery off",
        }
    }
}

fn login_name() -> Option<String> {
    ["USER", "LOGNAME"]
        .iter()
        .filter_map(|v| std::env::var(v).ok())
        .find(|n| is_valid_nick(n))
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
        assert_eq!(a.peers[0].port, 0, "filled in by merge()");
        assert_eq!(a.peers[1].port, 9);
        assert!(Args::try_parse_from(["tailchat", "--nick", "two words"]).is_err());
        assert!(Args::try_parse_from(["tailchat", "--nick", "c#dev"]).is_err());
        assert!(Args::try_parse_from(["tailchat", "--port", "70000"]).is_err());
        assert!(Args::try_parse_from(["tailchat", "--peer", "a b"]).is_err());
    }
}
