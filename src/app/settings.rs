//! The options in force: the command line (clap) over the config file over the defaults.

use crate::app::allow::{self, AllowEntry, AllowList};
use crate::app::tailnet::TailnetSetup;
use crate::net::addr::{self, HostSpec};
use crate::proto::nick::NICK_RULE;
use crate::store;
use crate::store::journal::HistoryLimit;
use crate::ui::command::{is_valid_own_nick, own_nick_problem};
use clap::{Parser, Subcommand};
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The port used when none is given, here and for peers.
pub const DEFAULT_PORT: u16 = 7654;

/// Peer-to-peer chat for the terminal, for a trusted LAN or tailnet. Type a line to send it to
/// everyone; /help lists the commands.
#[derive(Parser, Debug)]
#[command(
    name = "tailchat",
    version,
    about,
    max_term_width = 100,
    // `--no-discovery` twice (an alias that has it, and the line typed) is not an error: the
    // last of a repeated option counts (repeatable ones such as --peer still add up).
    args_override_self = true,
    after_help = "Defaults for these options, and settings with no option (accept_from, bell, notify, notify_text, auto_away, forget_after, [history_limit]), are read from $XDG_CONFIG_HOME/tailchat/config.toml, usually ~/.config/tailchat/config.toml: see the README's \"Config file\". At the prompt, /help lists the commands."
)]
// The field docs are the --help text, where `HOST[:PORT]` is meant literally.
#[allow(rustdoc::broken_intra_doc_links)]
pub struct Args {
    /// Your display name [default: the nick this data directory used last, else your login
    /// name]
    #[arg(long, global = true, value_name = "NICK", value_parser = parse_nick)]
    pub nick: Option<String>,

    /// UDP port to listen on, and the port assumed for peers given without one (0: any free
    /// port) [default: 7654]
    #[arg(long, global = true, value_name = "PORT")]
    pub port: Option<u16>,

    /// Local address to listen on [default: every address, IPv6 and IPv4]
    #[arg(long, global = true, value_name = "ADDR", value_parser = parse_bind)]
    pub bind: Option<IpAddr>,

    /// A peer to contact at start, as HOST[:PORT] (an IPv4 or IPv6 address, or a host name);
    /// repeatable
    #[arg(long = "peer", global = true, value_name = "HOST[:PORT]", value_parser = parse_peer)]
    pub peers: Vec<HostSpec>,

    /// Do not announce on or listen to the LAN (broadcast and multicast), and do not contact
    /// the devices of the tailnet; reach peers with --peer and /add only
    #[arg(long, global = true)]
    pub no_discovery: bool,

    /// tailscaled's LocalAPI socket, read for the tailnet's devices and who is at an address
    /// [default: /var/run/tailscale/tailscaled.sock]
    #[arg(long, global = true, value_name = "PATH")]
    pub tailscale_socket: Option<PathBuf>,

    /// Take datagrams only from here: an address, a network (100.64.0.0/10,
    /// fd7a:115c:a1e0::/48), or tailnet:LOGIN / tailnet:tag:NAME (checked with tailscaled);
    /// repeatable, added to the config file's `allow` list [default: from anywhere]
    #[arg(long = "allow", global = true, value_name = "ENTRY", value_parser = allow::parse_entry)]
    pub allow: Vec<AllowEntry>,

    /// Where identity, history and undelivered messages are kept [default:
    /// $XDG_DATA_HOME/tailchat]
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Where received files go [default: your download folder (XDG), in a tailchat folder]
    #[arg(long, global = true, value_name = "DIR")]
    pub download_dir: Option<PathBuf>,

    /// Scripts: how long to wait for a peer asked for with /add or --peer (or the LAN, with
    /// discovery) to answer, and at the end for every message to be acknowledged (the exit
    /// code says if one was not)
    /// [default: 5]
    #[arg(long, global = true, value_name = "SECONDS", value_parser = parse_wait, allow_negative_numbers = true)]
    pub wait: Option<Duration>,

    /// For scripts and bots: say so to peers, who then keep nothing for us once we have left
    /// and do not list us after
    #[arg(long, global = true)]
    pub ephemeral: bool,

    /// For programs: every event is one JSON object per line on standard output, and every
    /// input line is a JSON command (schema in the README, "Scripts and bots")
    #[arg(long, global = true)]
    pub json: bool,

    /// What to do instead of chatting at the prompt
    #[command(subcommand)]
    pub action: Option<Action>,
}

/// The subcommands.
#[derive(Subcommand, Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send one message as you and exit: through your running tailchat when one runs on the
    /// same data directory, else as yourself for a moment, on --port (any free port if that is
    /// taken; what cannot be delivered within --wait stays queued). Exit codes as for scripts
    #[command(
        after_help = "When your tailchat runs on the data directory, the message goes through it: only --to, --wait and --data-dir apply (it has its own nick, port, peers and the rest). Else every option above applies but --json (for JSON, tailchat attach --json)."
    )]
    Send {
        /// Send it to NICK only, as a direct message; repeatable. Without it: to everyone
        #[arg(long = "to", value_name = "NICK")]
        to: Vec<String>,
        /// The message (several words are joined with spaces); standard input when none
        #[arg(value_name = "TEXT")]
        text: Vec<std::ffi::OsString>,
    },
    /// Follow and drive your running tailchat: JSON events out, JSON commands in (needs
    /// --json)
    #[command(
        // The global options would all be listed: attach takes two of them.
        help_template = "{about-with-newline}\n{usage-heading} {usage}\n\nOptions:\n      --json            Required: events are JSON lines on standard output, commands JSON lines on standard input (schema in the README, \"Scripts and bots\")\n      --data-dir <DIR>  The data directory of the running tailchat [default: $XDG_DATA_HOME/tailchat]\n  -h, --help            Print help{after-help}",
        after_help = "Only --json and --data-dir apply: the running tailchat has its own nick, port, peers and the rest, and attach refuses the other options."
    )]
    Attach,
}

/// How long a script waits when `--wait` is not given.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(5);

fn parse_wait(s: &str) -> Result<Duration, String> {
    s.parse::<f64>()
        .ok()
        .filter(|w| w.is_finite() && (0.0..=86_400.0).contains(w))
        .map(Duration::from_secs_f64)
        .ok_or_else(|| "a number of seconds from 0 to 86400, e.g. 5 or 0.5".to_owned())
}

fn parse_nick(s: &str) -> Result<String, String> {
    match own_nick_problem(s) {
        None => Ok(s.to_owned()),
        Some(why) => Err(format!("{why} — {NICK_RULE}")),
    }
}

/// Peers given on the command line take the default port; `--port` is only known after
/// parsing, so [`Settings::merge`] re-applies it to peers given without one.
fn parse_peer(s: &str) -> Result<HostSpec, String> {
    addr::parse(s, 0)
}

/// `--bind`: an IP address. One given with a port says where the port goes instead.
fn parse_bind(s: &str) -> Result<IpAddr, String> {
    if let Ok(ip) = s.trim_matches(|c| c == '[' || c == ']').parse() {
        return Ok(ip);
    }
    match s.parse::<std::net::SocketAddr>() {
        Ok(with_port) => Err(format!(
            "--bind takes an address without a port: --bind {} --port {}",
            with_port.ip(),
            with_port.port()
        )),
        Err(_) => Err(
            "not an IP address (such as 127.0.0.1, ::1 or 100.64.0.1; a host name is not taken here)"
                .to_owned(),
        ),
    }
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
    /// Whether the port was chosen (command line or config file) rather than defaulted: a
    /// script may then not fall back to another one.
    pub port_chosen: bool,
    /// How long a script waits (see [`Args::wait`]).
    pub wait: Duration,
    /// Whether the nick was chosen (command line or config file) rather than defaulted: a
    /// nick remembered from the last run then wins over the login name.
    pub nick_chosen: bool,
    /// JSON lines in and out (see [`Args::json`]).
    pub json: bool,
    /// tailscaled's LocalAPI socket.
    pub tailscale_socket: PathBuf,
    /// Whether the user named it (`--tailscale-socket`, `tailscale_socket` in the config).
    pub tailscale_socket_given: bool,
    /// Who may reach us: the config file's entries, then the command line's (empty: anyone).
    pub allow: Vec<AllowEntry>,
    /// Where received files go, if not the default (see [`Args::download_dir`]).
    pub download_dir: Option<PathBuf>,
    /// Peers whose file offers are accepted without asking (config file).
    pub accept_from: Vec<String>,
    /// How much history the journal keeps (config file only).
    pub history_limit: HistoryLimit,
    /// Mentions and direct messages: bell, desktop notification (config file only).
    pub calls: Calls,
    /// Away after this long without typing (`None`: never; config file only).
    pub auto_away: Option<Duration>,
    /// Peers not heard for this long are forgotten (`None`: never; config file only).
    pub forget_after: Option<Duration>,
    /// We say we are ephemeral (`--ephemeral`, config file).
    pub ephemeral: bool,
}

/// What happens when a line calls us (mentions our nick, or is a direct message to us).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Calls {
    /// The terminal bell rings.
    pub bell: bool,
    /// A desktop notification says who.
    pub notify: bool,
    /// And what they wrote.
    pub notify_text: bool,
}

impl Default for Calls {
    fn default() -> Self {
        Self {
            bell: true,
            notify: false,
            notify_text: true,
        }
    }
}

/// Minutes without typing before we are away, unless the config file says otherwise.
pub const DEFAULT_AUTO_AWAY_MINUTES: u32 = 15;
/// Days a peer may go unheard before it is forgotten, unless the config file says otherwise.
pub const DEFAULT_FORGET_AFTER_DAYS: u32 = 30;

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
        // "invalid config file PATH, line N: …", the line found by the key the message
        // starts with (`nick '…': …`, `allow: …`).
        let in_file = |what: &str| {
            let key: String = what
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let line = file
                .as_deref()
                .zip((!key.is_empty()).then_some(key.as_str()))
                .and_then(|(p, k)| store::config::line_of_key(p, k))
                .map(|n| format!(", line {n}"))
                .unwrap_or_default();
            format!(
                "invalid config file {}{line}: {what}",
                file.as_deref()
                    .map_or("?".into(), |p| p.display().to_string())
            )
        };
        if let Some(why) = cfg.nick.as_deref().and_then(own_nick_problem) {
            return Err(in_file(&format!("nick: {why} — {NICK_RULE}")));
        }
        // Checked even where --bind overrides it, as every key of the file is.
        let cfg_bind = match cfg.bind.as_deref() {
            None => None,
            Some(text) => Some(
                parse_bind(text)
                    .map_err(|e| in_file(&format!("bind: {}", e.replace("--bind", "bind"))))?,
            ),
        };
        let bind = args.bind.or(cfg_bind);
        let port_chosen = args.port.or(cfg.port).is_some();
        let port = args.port.or(cfg.port).unwrap_or(DEFAULT_PORT);
        let default_port = if port == 0 { DEFAULT_PORT } else { port };
        let mut peers = Vec::new();
        for p in cfg.peers.iter().flatten() {
            peers.push(
                addr::parse(p, default_port)
                    .map_err(|e| in_file(&format!("peers entry '{p}': {e}")))?,
            );
        }
        peers.extend(args.peers.into_iter().map(|mut p| {
            if p.port == 0 {
                p.port = default_port;
            }
            p
        }));
        let mut allow = Vec::new();
        for entry in cfg.allow.iter().flatten() {
            allow.push(allow::parse_entry(entry).map_err(|e| in_file(&format!("allow: {e}")))?);
        }
        allow.extend(args.allow);
        for entry in cfg.accept_from.iter().flatten() {
            crate::app::files::check_accept_from(entry)
                .map_err(|e| in_file(&format!("accept_from: {e}")))?;
        }
        let nick_chosen = args.nick.is_some() || cfg.nick.is_some();
        let path_in_file = |key: &str, value: Option<PathBuf>| {
            value
                .map(|v| config_path(key, &v))
                .transpose()
                .map_err(|e| in_file(&e))
        };
        let cfg_data_dir = path_in_file("data_dir", cfg.data_dir)?;
        let cfg_download_dir = path_in_file("download_dir", cfg.download_dir)?;
        let cfg_tailscale_socket = path_in_file("tailscale_socket", cfg.tailscale_socket)?;
        // Said now, not at the first /accept, where the error could not say where it was set.
        let from_args = args.download_dir.is_some();
        if let Some(dir) = args.download_dir.as_ref().or(cfg_download_dir.as_ref()) {
            if dir.exists() && !dir.is_dir() {
                let set = if from_args {
                    "--download-dir".to_owned()
                } else {
                    in_file("download_dir")
                };
                return Err(format!(
                    "{}: {} is not a folder; received files go into a folder",
                    set,
                    dir.display()
                ));
            }
        }
        Ok(Settings {
            nick_chosen,
            nick: args
                .nick
                .or(cfg.nick)
                .or_else(login_name)
                .unwrap_or_else(|| "anon".to_owned()),
            port,
            default_port,
            bind,
            peers,
            discovery: !args.no_discovery && cfg.discovery.unwrap_or(true),
            data_dir: args.data_dir.or(cfg_data_dir),
            port_chosen,
            wait: args.wait.unwrap_or(DEFAULT_WAIT),
            json: args.json,
            tailscale_socket_given: args.tailscale_socket.is_some()
                || cfg_tailscale_socket.is_some(),
            tailscale_socket: args
                .tailscale_socket
                .or(cfg_tailscale_socket)
                .unwrap_or_else(|| PathBuf::from(crate::net::tailnet::DEFAULT_SOCKET)),
            allow,
            download_dir: args.download_dir.or(cfg_download_dir),
            accept_from: cfg.accept_from.unwrap_or_default(),
            history_limit: cfg.history_limit.map(|h| h.limit()).unwrap_or_default(),
            calls: Calls {
                bell: cfg.bell.unwrap_or(true),
                notify: cfg.notify.unwrap_or(false),
                notify_text: cfg.notify_text.unwrap_or(true),
            },
            auto_away: Some(cfg.auto_away.unwrap_or(DEFAULT_AUTO_AWAY_MINUTES))
                .filter(|m| *m > 0)
                .map(|m| Duration::from_secs(u64::from(m) * 60)),
            forget_after: Some(cfg.forget_after.unwrap_or(DEFAULT_FORGET_AFTER_DAYS))
                .filter(|d| *d > 0)
                .map(|d| Duration::from_secs(u64::from(d) * 86_400)),
            ephemeral: args.ephemeral || cfg.ephemeral.unwrap_or(false),
        })
    }

    /// The tailnet side: its devices are contacted when discovery is on and the socket can
    /// reach them (not when bound to loopback); the LocalAPI is also read for an allow-list
    /// with tailnet entries.
    pub fn tailnet_setup(&self) -> TailnetSetup {
        TailnetSetup {
            socket: self.tailscale_socket.clone(),
            socket_given: self.tailscale_socket_given,
            discovery: self.discovery && !self.bind.is_some_and(|ip| ip.is_loopback()),
            allow: AllowList::new(self.allow.clone()),
            port: self.default_port,
            poll_every: crate::app::tailnet::POLL_EVERY,
        }
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

/// A path from the config file with a leading `~` or `$HOME` replaced by the home directory
/// (`data_dir = "~/chat"` means the user's, not a directory called `~`). Other paths, and
/// these when no home directory is known, are left as they are.
/// A path from the config file: `~`, `$HOME` and `${HOME}` at its start are the home
/// directory; what is left must be absolute, since a relative path would mean another place
/// (for the data directory: another identity) in each folder tailchat is started from.
fn config_path(key: &str, value: &std::path::Path) -> Result<PathBuf, String> {
    if value.as_os_str().is_empty() {
        return Err(format!(
            "{key} is empty: give a path, or leave the line out"
        ));
    }
    let path = expand_home(value);
    if path.is_absolute() {
        return Ok(path);
    }
    let shown = value.display();
    Err(if shown.to_string().starts_with('~') {
        format!("{key} '{shown}': only ~ alone or ~/… is your home directory here; write the whole path")
    } else {
        format!("{key} '{shown}' is relative: write the whole path, or start it with ~/ for your home directory")
    })
}

pub(crate) fn expand_home(path: &std::path::Path) -> PathBuf {
    let Some(text) = path.to_str() else {
        return path.to_path_buf();
    };
    let rest = ["~", "$HOME", "${HOME}"].iter().find_map(|prefix| {
        let rest = text.strip_prefix(prefix)?;
        (rest.is_empty() || rest.starts_with('/')).then_some(rest)
    });
    let home = std::env::var_os("HOME").map(PathBuf::from).or_else(|| {
        nix::unistd::User::from_uid(nix::unistd::getuid())
            .ok()
            .flatten()
            .map(|u| u.dir)
    });
    match (rest, home) {
        (Some(rest), Some(home)) => home.join(rest.trim_start_matches('/')),
        _ => path.to_path_buf(),
    }
}

/// The user's login name: from the password database, else `$USER` or `$LOGNAME` (a service
/// or container may run with neither set, or as a user the database does not know).
fn login_name() -> Option<String> {
    let from_passwd = nix::unistd::User::from_uid(nix::unistd::getuid())
        .ok()
        .flatten()
        .map(|u| u.name);
    from_passwd
        .into_iter()
        .chain(
            ["USER", "LOGNAME"]
                .iter()
                .filter_map(|v| std::env::var(v).ok()),
        )
        .find(|n| is_valid_own_nick(n))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_login_name_comes_from_the_password_database() {
        // The tests run as a user the database knows (root in CI): no environment needed.
        let expected = nix::unistd::User::from_uid(nix::unistd::getuid())
            .unwrap()
            .map(|u| u.name);
        assert_eq!(login_name(), expected);
    }

    #[test]
    fn bind_takes_an_address_and_says_where_a_port_goes() {
        assert_eq!(parse_bind("127.0.0.1"), Ok("127.0.0.1".parse().unwrap()));
        assert_eq!(parse_bind("[::1]"), Ok("::1".parse().unwrap()));
        assert_eq!(
            parse_bind("127.0.0.1:47001"),
            Err("--bind takes an address without a port: --bind 127.0.0.1 --port 47001".into())
        );
        assert_eq!(
            parse_bind("[::1]:7000"),
            Err("--bind takes an address without a port: --bind ::1 --port 7000".into())
        );
        assert!(parse_bind("laptop")
            .unwrap_err()
            .contains("not an IP address"));
    }

    #[test]
    fn config_paths_expand_the_home_directory() {
        let home = PathBuf::from(std::env::var_os("HOME").expect("HOME in tests"));
        let p = |s: &str| expand_home(std::path::Path::new(s));
        assert_eq!(p("~/chat"), home.join("chat"));
        assert_eq!(p("$HOME/a/b"), home.join("a/b"));
        assert_eq!(p("${HOME}"), home);
        assert_eq!(p("~"), home);
        assert_eq!(p("/srv/chat"), PathBuf::from("/srv/chat"));
        assert_eq!(
            p("~bob/chat"),
            PathBuf::from("~bob/chat"),
            "another user's: left alone"
        );
        assert_eq!(p("./~/x"), PathBuf::from("./~/x"));
    }

    #[test]
    fn config_paths_must_be_whole() {
        let c = |s: &str| config_path("data_dir", std::path::Path::new(s));
        assert!(c("~/chat").unwrap().is_absolute());
        assert_eq!(c("/srv/chat").unwrap(), PathBuf::from("/srv/chat"));
        assert_eq!(
            c("").unwrap_err(),
            "data_dir is empty: give a path, or leave the line out"
        );
        assert_eq!(
            c("relative/dd").unwrap_err(),
            "data_dir 'relative/dd' is relative: write the whole path, or start it with ~/ for your home directory"
        );
        assert!(c("~bob/chat").unwrap_err().contains("only ~ alone or ~/…"));
    }

    #[test]
    fn command_line_definition_is_valid() {
        Args::command().debug_assert();
    }

    #[test]
    fn attach_help_lists_only_what_attach_takes() {
        let help = match Args::try_parse_from(["tailchat", "attach", "--help"]) {
            Err(e) if e.kind() == clap::error::ErrorKind::DisplayHelp => e.to_string(),
            other => panic!("no help: {other:?}"),
        };
        for taken in [
            "--json",
            "--data-dir <DIR>",
            "attach refuses the other options",
        ] {
            assert!(help.contains(taken), "{taken} missing from {help}");
        }
        for refused in ["--nick", "--port", "--peer", "--wait"] {
            assert!(!help.contains(refused), "{refused} listed in {help}");
        }
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
        let send = Args::try_parse_from([
            "tailchat", "send", "--to", "bob", "build", "ok", "--wait", "2",
        ])
        .unwrap();
        assert_eq!(
            send.action,
            Some(Action::Send {
                to: vec!["bob".into()],
                text: vec!["build".into(), "ok".into()]
            })
        );
        assert_eq!(send.wait, Some(Duration::from_secs(2)));
        let t = Args::try_parse_from([
            "tailchat",
            "--allow",
            "100.64.0.0/10",
            "--allow",
            "tailnet:bob@example.com",
            "--tailscale-socket",
            "/run/ts.sock",
        ])
        .unwrap();
        assert_eq!(t.allow.len(), 2);
        assert_eq!(t.tailscale_socket, Some(PathBuf::from("/run/ts.sock")));
        assert!(Args::try_parse_from(["tailchat", "--allow", "laptop"]).is_err());
        let w = Args::try_parse_from(["tailchat", "--wait", "0.5"]).unwrap();
        assert_eq!(w.wait, Some(Duration::from_millis(500)));
        for bad in ["-1", "nan", "inf", "soon", "100000"] {
            assert!(
                Args::try_parse_from(["tailchat", "--wait", bad]).is_err(),
                "{bad}"
            );
        }
    }
}
