//! The config file (`config.toml`): defaults for the command line's options, so a user need
//! not type their nick and peers at every start. tailchat only reads it, never writes it.
//!
//! ```toml
//! nick = "alice"
//! port = 7654
//! peers = ["bob.tailnet.ts.net", "192.168.1.20:7654"]
//! discovery = true
//! data_dir = "/home/alice/chat"
//! tailscale_socket = "/var/run/tailscale/tailscaled.sock"
//! allow = ["100.64.0.0/10", "fd7a:115c:a1e0::/48", "tailnet:bob@example.com"]
//! download_dir = "~/Downloads/tailchat"
//! accept_from = ["bob"]
//! bell = true           # ring the terminal bell when someone calls you
//! notify = false        # and a desktop notification (notify-send), with the text unless
//! notify_text = true    #   notify_text = false
//! auto_away = 15        # minutes without typing before you are away (0: never)
//! forget_after = 30     # days a peer may stay unheard before it is forgotten (0: never)
//! ephemeral = false     # as --ephemeral
//!
//! [history_limit]       # how much history the journal keeps (see below)
//! messages = 100000
//! days = 365
//! ```
//!
//! Every key is optional; an unknown key is an error, so a typo is reported instead of being
//! silently ignored.

use crate::store::dirs::io_reason;
use crate::store::journal::HistoryLimit;
use serde::Deserialize;
use std::io;
use std::num::{NonZeroU32, NonZeroU64};
use std::path::{Path, PathBuf};

/// The settings a config file may hold. Each is `None` when the file does not set it; the
/// command line overrides whatever is set here.
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// The nick to start with, instead of `--nick`.
    pub nick: Option<String>,
    /// The UDP port to listen on, instead of `--port`.
    pub port: Option<u16>,
    /// The one address to listen on, instead of `--bind` (an IP address, no port).
    pub bind: Option<String>,
    /// Peers to contact at start, as `--peer` takes them (host, host:port, address).
    pub peers: Option<Vec<String>>,
    /// Whether to look for peers on the LAN, instead of the discovery flag.
    pub discovery: Option<bool>,
    /// Where to keep identity and history, instead of `--data-dir`.
    pub data_dir: Option<PathBuf>,
    /// tailscaled's LocalAPI socket, instead of `--tailscale-socket`.
    pub tailscale_socket: Option<PathBuf>,
    /// Who may reach us, as `--allow` takes them (addresses, networks, `tailnet:LOGIN`).
    pub allow: Option<Vec<String>>,
    /// Where received files go, instead of `--download-dir`.
    pub download_dir: Option<PathBuf>,
    /// Nicks whose file offers are accepted without asking.
    pub accept_from: Option<Vec<String>>,
    /// How much history the journal keeps; unset parts keep their defaults.
    pub history_limit: Option<HistoryLimitConfig>,
    /// Whether a line that calls us rings the terminal bell (default true).
    pub bell: Option<bool>,
    /// Whether a line that calls us also makes a desktop notification (default false).
    pub notify: Option<bool>,
    /// Whether that notification shows the message's text (default true).
    pub notify_text: Option<bool>,
    /// Minutes without typing before we are away (default 15; 0: never).
    pub auto_away: Option<u32>,
    /// Days a peer that is not heard may be kept before it is forgotten (default 30; 0: never).
    pub forget_after: Option<u32>,
    /// As `--ephemeral`.
    pub ephemeral: Option<bool>,
}

/// The `[history_limit]` table: how much of the conversation the journal keeps, for
/// `/history` to show (undelivered messages are kept whatever it says). Compaction keeps at
/// most `messages` (a message over 1 KiB counts once per whole KiB more), shared fairly among
/// the people who wrote them, and none older than `days`.
///
/// The default, 100 000 messages and no age limit, costs 10–30 MB of disk at the 100–300
/// bytes a message takes; that is years of a chat of a few dozen messages a day, months of a
/// busy one, further back than anyone reads with `/history`, and a journal that size opens
/// well within the start-up budget. An age limit is for those who want old words gone; it is
/// not needed to bound the disk.
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryLimitConfig {
    /// The most messages kept (default 100 000). Zero is refused as for `days`: it would
    /// empty the history at the next start, for good, where 0 means "never" for `auto_away`.
    pub messages: Option<NonZeroU64>,
    /// Messages older than this many days are dropped (default: no age limit).
    pub days: Option<NonZeroU32>,
}

impl HistoryLimitConfig {
    /// The limit this table sets, with the defaults for what it does not.
    pub fn limit(&self) -> HistoryLimit {
        let default = HistoryLimit::default();
        HistoryLimit {
            messages: self.messages.map_or(default.messages, NonZeroU64::get),
            days: self.days.or(default.days),
        }
    }
}

/// Reads the config file at `path`; `Ok(None)` if there is no file there.
///
/// # Errors
/// The file cannot be read, or is not valid TOML with the keys and types of [`FileConfig`]; the
/// message names the file and, where known, the 1-based line of the mistake.
pub fn load(path: &Path) -> Result<Option<FileConfig>, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(format!(
                "cannot read config file {}: {}",
                path.display(),
                io_reason(&e)
            ))
        }
    };
    toml::from_str(&text).map(Some).map_err(|e| {
        // toml's own Display draws a multi-line excerpt; one line suits a start-up error.
        let (place, key) = match e.span() {
            Some(span) => (
                format!(", line {}", line_of(&text, span.start)),
                key_before(&text, span.start)
                    .map(|k| format!(" for key `{k}`"))
                    .unwrap_or_default(),
            ),
            None => (String::new(), String::new()),
        };
        let message = e.message().trim_end();
        // The span of a key set twice is the key (or the table's name) itself.
        let twice = e
            .span()
            .and_then(|span| text.get(span))
            .map(|k| k.trim().trim_matches(['[', ']', '"']).trim())
            .filter(|k| message == "duplicate key" && !k.is_empty());
        if let Some(k) = twice {
            return format!(
                "invalid config file {}{place}: `{k}` is set twice — keep one",
                path.display()
            );
        }
        format!(
            "invalid config file {}{place}: {}{key}",
            path.display(),
            plain(message)
        )
    })
}

/// serde's message with its Rust type names said as a person would (`expected u16` is
/// `expected a whole number from 0 to 65535`).
fn plain(message: &str) -> String {
    const SAID: [(&str, &str); 8] = [
        (
            "string values must be quoted, expected literal string",
            "a value must be true or false, a number, a list, or text in quotes",
        ),
        ("expected a nonzero u32", "expected a whole number above 0"),
        ("expected a nonzero u64", "expected a whole number above 0"),
        ("expected u16", "expected a whole number from 0 to 65535"),
        ("expected u32", "expected a whole number from 0 to 4294967295"),
        ("expected u64", "expected a whole number, 0 or more"),
        ("expected a sequence", "expected a list, as [\"a\", \"b\"]"),
        (
            "expected struct HistoryLimitConfig",
            "expected a table: [history_limit] on a line of its own, then messages = … and days = …",
        ),
    ];
    SAID.iter().fold(message.to_owned(), |m, (rust, person)| {
        m.replace(rust, person)
    })
}

/// The line of `path` where `key` is set (`key = …` at the start of a line, outside any
/// table only as far as a plain search can tell), for errors found after parsing: the value
/// was of the right type but is not allowed (`nick = "a b"`).
#[must_use]
pub fn line_of_key(path: &Path, key: &str) -> Option<usize> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .position(|line| {
            line.trim_start()
                .strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        })
        .map(|i| i + 1)
}

/// The key whose value starts at byte `offset`, when it is on the same line (`port = "x"`):
/// toml 0.8 reports a bad value's place but not its key, and "expected u16" alone does not
/// say which setting is wrong.
fn key_before(text: &str, offset: usize) -> Option<&str> {
    let line_start = text.get(..offset)?.rfind('\n').map_or(0, |i| i + 1);
    let before = text.get(line_start..offset)?;
    let key = before[..before.find('=')?].trim().trim_matches('"');
    (!key.is_empty()).then_some(key)
}

/// The 1-based line number of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    /// Writes `contents` to a config file in a new temporary directory.
    fn file_with(contents: &str) -> (tempfile::TempDir, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("config.toml");
        fs::write(&path, contents).unwrap();
        (tmp, path)
    }

    #[test]
    fn missing_file_is_none() {
        let tmp = tempfile::tempdir().unwrap();
        assert_eq!(load(&tmp.path().join("config.toml")), Ok(None));
    }

    #[test]
    fn empty_file_sets_nothing() {
        let (_tmp, path) = file_with("# nothing yet\n");
        assert_eq!(load(&path), Ok(Some(FileConfig::default())));
    }

    #[test]
    fn full_file() {
        let (_tmp, path) = file_with(
            "nick = \"alice\"\nport = 7654\npeers = [\"bob:7000\", \"10.0.0.2\"]\n\
             discovery = false\ndata_dir = \"/srv/chat\"\n\
             download_dir = \"/srv/in\"\naccept_from = [\"bob\"]\n",
        );
        assert_eq!(
            load(&path),
            Ok(Some(FileConfig {
                nick: Some("alice".into()),
                port: Some(7654),
                peers: Some(vec!["bob:7000".into(), "10.0.0.2".into()]),
                discovery: Some(false),
                data_dir: Some(PathBuf::from("/srv/chat")),
                tailscale_socket: None,
                allow: None,
                download_dir: Some(PathBuf::from("/srv/in")),
                accept_from: Some(vec!["bob".into()]),
                history_limit: None,
                ..FileConfig::default()
            }))
        );
    }

    #[test]
    fn tailnet_keys() {
        let (_tmp, path) = file_with(
            "tailscale_socket = \"/run/ts.sock\"\nallow = [\"100.64.0.0/10\", \"tailnet:bob@example.com\"]\n",
        );
        let cfg = load(&path).unwrap().unwrap();
        assert_eq!(cfg.tailscale_socket, Some(PathBuf::from("/run/ts.sock")));
        assert_eq!(
            cfg.allow,
            Some(vec![
                "100.64.0.0/10".into(),
                "tailnet:bob@example.com".into()
            ])
        );
    }

    #[test]
    fn history_limit_table_with_defaults_for_what_it_omits() {
        let (_tmp, path) = file_with("[history_limit]\nmessages = 500\n");
        let cfg = load(&path).unwrap().unwrap();
        let limit = cfg.history_limit.unwrap().limit();
        assert_eq!(
            limit,
            HistoryLimit {
                messages: 500,
                ..HistoryLimit::default()
            }
        );
        let (_tmp, path) = file_with("history_limit = { days = 30 }\n");
        let limit = load(&path).unwrap().unwrap().history_limit.unwrap().limit();
        assert_eq!(limit.days, NonZeroU32::new(30));
        assert_eq!(limit.messages, HistoryLimit::default().messages);
    }

    #[test]
    fn history_limit_mistakes_name_the_line() {
        let (_tmp, path) = file_with("nick = \"a\"\n[history_limit]\ndays = 0\n");
        let err = load(&path).unwrap_err();
        assert!(
            err.starts_with(&format!("invalid config file {}, line 3: ", path.display())),
            "{err}"
        );
        let (_tmp, path) = file_with("[history_limit]\nmessage = 5\n");
        let err = load(&path).unwrap_err();
        assert!(err.contains("unknown field `message`"), "{err}");
    }

    #[test]
    fn wrong_type_names_file_line_and_key() {
        let (_tmp, path) = file_with("nick = \"alice\"\n\nport = \"x\"\n");
        assert_eq!(
            load(&path).unwrap_err(),
            format!(
                "invalid config file {}, line 3: invalid type: string \"x\", expected a whole \
                 number from 0 to 65535 for key `port`",
                path.display()
            )
        );
    }

    #[test]
    fn types_are_said_as_a_person_would() {
        for (text, said) in [
            (
                "auto_away = -1\n",
                "expected a whole number from 0 to 4294967295 for key `auto_away`",
            ),
            (
                "history_limit = 5\n",
                "expected a table: [history_limit] on a line of its own",
            ),
            (
                "peers = \"laptop\"\n",
                "expected a list, as [\"a\", \"b\"] for key `peers`",
            ),
            (
                "[history_limit]\ndays = 0\n",
                "expected a whole number above 0 for key `days`",
            ),
            (
                "[history_limit]\nmessages = 0\n",
                "expected a whole number above 0 for key `messages`",
            ),
        ] {
            let (_tmp, path) = file_with(text);
            let err = load(&path).unwrap_err();
            assert!(err.contains(said), "{text:?}: {err}");
            assert!(!err.contains(" u32") && !err.contains("struct"), "{err}");
        }
    }

    #[test]
    fn out_of_range_port() {
        let (_tmp, path) = file_with("port = 70000\n");
        let err = load(&path).unwrap_err();
        assert!(
            err.starts_with(&format!("invalid config file {}, line 1: ", path.display())),
            "{err}"
        );
    }

    #[test]
    fn a_key_set_twice_is_named() {
        for (text, key, line) in [
            ("nick = \"a\"\nnick = \"b\"\n", "nick", 2),
            (
                "[history_limit]\ndays = 1\n[history_limit]\n",
                "history_limit",
                3,
            ),
            ("[history_limit]\ndays = 1\ndays = 2\n", "days", 3),
        ] {
            let (_tmp, path) = file_with(text);
            let err = load(&path).unwrap_err();
            assert_eq!(
                err,
                format!(
                    "invalid config file {}, line {line}: `{key}` is set twice — keep one",
                    path.display()
                )
            );
        }
    }

    #[test]
    fn unknown_key_is_an_error() {
        let (_tmp, path) = file_with("nick = \"a\"\nprot = 7654\n");
        let err = load(&path).unwrap_err();
        assert!(
            err.starts_with(&format!(
                "invalid config file {}, line 2: unknown field `prot`",
                path.display()
            )),
            "{err}"
        );
    }

    #[test]
    fn bad_toml_is_an_error() {
        let (_tmp, path) = file_with("nick = \"alice\"\npeers = [\"a\",\n");
        let err = load(&path).unwrap_err();
        assert!(
            err.starts_with(&format!("invalid config file {}, line ", path.display())),
            "{err}"
        );
    }

    #[test]
    fn unreadable_file_names_it() {
        // A directory in place of the file cannot be read, even by root.
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("config.toml");
        fs::create_dir(&path).unwrap();
        let err = load(&path).unwrap_err();
        assert_eq!(
            err,
            format!("cannot read config file {}: is a directory", path.display())
        );
    }

    #[test]
    fn not_utf8_is_unreadable() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("config.toml");
        fs::write(&path, b"nick = \"\xff\"\n").unwrap();
        let err = load(&path).unwrap_err();
        assert!(
            err.starts_with(&format!("cannot read config file {}: ", path.display())),
            "{err}"
        );
    }

    #[test]
    fn wrong_type_in_array_names_the_key() {
        let (_tmp, path) = file_with("peers = [\"a\", 7]\n");
        assert_eq!(
            load(&path).unwrap_err(),
            format!(
                "invalid config file {}, line 1: invalid type: integer `7`, expected a string \
                 for key `peers`",
                path.display()
            )
        );
    }

    #[test]
    fn keys_before_values() {
        assert_eq!(key_before("a = 1\nport = \"x\"", 13), Some("port"));
        assert_eq!(key_before("\"nick\" = 5", 9), Some("nick"));
        assert_eq!(key_before("prot = 1", 0), None);
        assert_eq!(key_before("peers = [\n  1]", 12), None);
        assert_eq!(key_before("x", 99), None);
    }

    #[test]
    fn line_numbers() {
        assert_eq!(line_of("a\nb\nc", 0), 1);
        assert_eq!(line_of("a\nb\nc", 2), 2);
        assert_eq!(line_of("a\nb\nc", 4), 3);
        assert_eq!(line_of("a\n", 99), 2);
    }
}
