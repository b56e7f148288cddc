//! Tab completion of command names and peer nicks, as a pure function of the edited line.
//!
//! The rustyline helper in `terminal.rs` only forwards to [`complete`], so the rules are
//! tested here without a terminal.

use crate::ui::command::{command_names, is_valid_nick, without_id};
use crate::ui::render::display_nick;

/// Completions for the word that ends at byte `pos` of `line`.
///
/// Returns the byte offset where that word starts (the text to replace runs from there to
/// `pos`) and the replacement candidates, sorted and without duplicates:
///
/// - a word starting with `/` at the start of the line completes to command names, each
///   followed by a space so the arguments can be typed straight away;
/// - any other word (including an empty one, to list everyone after `/msg `) completes to the
///   nicks in `nicks` that start with it, ignoring case: followed by `: ` at the start of the
///   line, by a space as a command's nick argument (`/msg bob `), by nothing in the text. Nicks that could not be typed as one
///   argument, or that do not display as they are (anything [`display_nick`] would strip, such
///   as a zero-width character that makes `b\u{200b}ob` look like `bob`), are never offered:
///   the list is printed to the terminal as is, and peers choose their own nicks.
///
/// A `pos` that is past the end of `line` or inside a character completes nothing.
#[must_use]
pub fn complete(line: &str, pos: usize, nicks: &[String]) -> (usize, Vec<String>) {
    let Some(before) = line.get(..pos) else {
        return (pos, Vec::new());
    };
    let start = before.rfind(char::is_whitespace).map_or(0, |i| {
        i + before[i..].chars().next().map_or(1, char::len_utf8)
    });
    let word = &before[start..];
    // In a command's arguments: what that argument is.
    let command = line
        .split_whitespace()
        .next()
        .filter(|c| start > 0 && c.starts_with('/') && !c.starts_with("//"))
        .map(str::to_ascii_lowercase);
    let argument = before[..start].split_whitespace().count();
    let takes_nick = match command.as_deref() {
        None => true,
        // The nick, or (in the text) a mention.
        Some("/msg") => true,
        Some("/whois" | "/history" | "/forget" | "/send") => argument == 1,
        Some("/me") => true,
        // Numbers, paths, addresses, a reason, a new nick: no peer's nick.
        Some(_) => false,
    };
    let mut candidates: Vec<String> = if start == 0 && word.starts_with('/') {
        command_names()
            .filter(|name| name.starts_with(&word.to_ascii_lowercase()))
            .map(|name| format!("{name} "))
            .collect()
    } else if command.as_deref() == Some("/help") && argument == 1 {
        command_names()
            .map(|name| name.trim_start_matches('/'))
            .filter(|name| name.starts_with(&word.trim_start_matches('/').to_ascii_lowercase()))
            .map(str::to_owned)
            .collect()
    } else if !takes_nick {
        Vec::new()
    } else {
        let word = word.to_lowercase();
        // At the start of a line a nick is an address: `bob: `, as irssi and weechat do; as
        // a command's first argument it is followed by the rest (`/msg bob `); in the text,
        // a mention, it is left as it is.
        let suffix = if start == 0 {
            ": "
        } else if command.is_some()
            && argument == 1
            && command.as_deref() != Some("/me")
            && !line
                .get(pos..)
                .is_some_and(|r| r.starts_with(char::is_whitespace))
        {
            " "
        } else {
            ""
        };
        nicks
            .iter()
            .filter(|nick| is_valid_nick(without_id(nick)) && display_nick(nick) == **nick)
            .filter(|nick| nick.to_lowercase().starts_with(&word))
            .map(|nick| format!("{nick}{suffix}"))
            .collect()
    };
    candidates.sort();
    candidates.dedup();
    (start, candidates)
}

/// Where the path being typed starts, when the cursor at byte `pos` is in one: after
/// `/send NICK `, or the folder of `/accept [N] ` (the path is the rest of the line, spaces and
/// all).
#[must_use]
pub fn path_arg_start(line: &str, pos: usize) -> Option<usize> {
    let before = line.get(..pos)?;
    let after_slash = before.strip_prefix('/')?;
    let name_end = after_slash.find(char::is_whitespace)?;
    let command = &after_slash[..name_end];
    let args = &after_slash[name_end..];
    let first_at = args.len() - args.trim_start().len();
    let first_len = args[first_at..].find(char::is_whitespace);
    let word_then_path = |len: usize| {
        let path_at = first_at + len;
        let gap = args[path_at..].len() - args[path_at..].trim_start().len();
        1 + name_end + path_at + gap
    };
    if command.eq_ignore_ascii_case("send") {
        // The nick first.
        return first_len.map(word_then_path);
    }
    if !command.eq_ignore_ascii_case("accept") {
        return None;
    }
    let number = |w: &str| !w.is_empty() && w.chars().all(|c| c.is_ascii_digit());
    match first_len {
        // `/accept 3 ~/inc`: the folder after the number.
        Some(len) if number(&args[first_at..first_at + len]) => Some(word_then_path(len)),
        // `/accept 3`: still the number.
        None if number(&args[first_at..]) => None,
        // `/accept ~/inc`: the folder alone.
        _ => Some(1 + name_end + first_at),
    }
}

/// Completions of a partly typed path: the entries of its folder that start with its last
/// component, each as the whole path typed so far plus the rest of the name (folders end in
/// `/`); hidden entries only when the component starts with `.`, and none whose name has
/// characters the screen would not show as themselves. `home` replaces a leading
/// `~` for reading, not in what is offered.
#[must_use]
pub fn complete_path(partial: &str, home: Option<&std::path::Path>) -> Vec<String> {
    let (dir_typed, prefix) = match partial.rfind('/') {
        Some(i) => (&partial[..=i], &partial[i + 1..]),
        None => ("", partial),
    };
    let dir = match (dir_typed.strip_prefix("~/"), home) {
        (Some(rest), Some(home)) => home.join(rest),
        _ if dir_typed.is_empty() => std::path::PathBuf::from("."),
        _ => std::path::PathBuf::from(dir_typed),
    };
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut found: Vec<String> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            if !name.starts_with(prefix) || (name.starts_with('.') && !prefix.starts_with('.')) {
                return None;
            }
            // A name with an escape sequence, a line break or another control or invisible
            // character would be written to the terminal as it is: not offered.
            if crate::ui::render::sanitize(&name) != name {
                return None;
            }
            let slash = if e.path().is_dir() { "/" } else { "" };
            Some(format!("{dir_typed}{name}{slash}"))
        })
        .collect();
    found.sort();
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nicks(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    fn at_end(line: &str, known: &[&str]) -> (usize, Vec<String>) {
        complete(line, line.len(), &nicks(known))
    }

    #[test]
    fn commands_complete_at_the_start_of_the_line() {
        assert_eq!(at_end("/m", &[]), (0, nicks(&["/me ", "/msg "])));
        assert_eq!(at_end("/ms", &[]), (0, vec!["/msg ".to_owned()]));
        assert_eq!(at_end("/h", &[]), (0, nicks(&["/help ", "/history "])));
        // Every command, and /exit.
        assert_eq!(
            at_end("/", &[]).1.len(),
            crate::ui::command::COMMANDS.len() + 1
        );
        assert_eq!(at_end("/ex", &[]), (0, vec!["/exit ".to_owned()]));
        assert_eq!(at_end("/Q", &[]), (0, vec!["/quit ".to_owned()]));
        assert_eq!(at_end("/zzz", &[]), (0, vec![]));
    }

    #[test]
    fn commands_do_not_complete_later_in_the_line() {
        assert_eq!(at_end("say /m", &["alice"]), (4, vec![]));
    }

    #[test]
    fn nicks_complete_the_word_under_the_cursor() {
        let known = ["alice", "Alfred", "bob"];
        assert_eq!(
            at_end("/msg al", &known),
            (5, nicks(&["Alfred ", "alice "]))
        );
        assert_eq!(
            at_end("/msg ", &known),
            (5, nicks(&["Alfred ", "alice ", "bob "]))
        );
        assert_eq!(at_end("/history B", &known), (9, nicks(&["bob "])));
        // At the start of a line, a nick is addressed: `bob: `.
        assert_eq!(at_end("bo", &known), (0, nicks(&["bob: "])));
        // The cursor in the middle of the line: only the text before it counts (and the
        // space after it is there already).
        assert_eq!(
            complete("/msg b hello", 6, &nicks(&known)),
            (5, nicks(&["bob"]))
        );
    }

    #[test]
    fn nicks_are_offered_only_where_a_nick_or_a_mention_goes() {
        let known = ["alice", "bob"];
        for line in [
            "/accept ",
            "/decline ",
            "/cancel ",
            "/add ",
            "/nick ",
            "/away ",
            "/send bob ",
            "/history bob ",
        ] {
            assert_eq!(at_end(line, &known).1, Vec::<String>::new(), "{line:?}");
        }
        assert_eq!(at_end("/whois a", &known).1, nicks(&["alice "]));
        assert_eq!(at_end("/send b", &known).1, nicks(&["bob "]));
        assert_eq!(at_end("/me waves at b", &known).1, nicks(&["bob"]));
        assert_eq!(at_end("/msg alice hi b", &known).1, nicks(&["bob"]));
        assert_eq!(at_end("hi b", &known).1, nicks(&["bob"]));
        assert_eq!(
            at_end("//etc is odd, b", &known).1,
            nicks(&["bob"]),
            "text, not a command"
        );
        assert_eq!(at_end("/help wh", &known), (6, nicks(&["whois"])));
        assert_eq!(at_end("/help /fi", &known).1, nicks(&["files"]));
    }

    #[test]
    fn nicks_are_offered_once_and_only_if_safe() {
        let known = ["bob", "bob", "bo b", "bo\u{1b}[2Jb", "bo\u{202e}b", "bó"];
        assert_eq!(at_end("/msg b", &known), (5, nicks(&["bob ", "bó "])));
        // Look-alikes: invisible characters, a joiner text would keep, too many marks.
        let known = [
            "bob",
            "b\u{200b}ob",
            "bó\u{200d}é",
            "bo\u{301}\u{301}\u{301}\u{301}\u{301}b",
            "bö",
        ];
        assert_eq!(at_end("/msg b", &known), (5, nicks(&["bob ", "bö "])));
    }

    #[test]
    fn peers_sharing_a_nick_are_offered_by_name_and_id() {
        let known = ["bob#1d79e0c2", "bob#2e80aa01", "carol"];
        assert_eq!(
            at_end("/msg b", &known),
            (5, nicks(&["bob#1d79e0c2 ", "bob#2e80aa01 "]))
        );
        assert_eq!(at_end("bob#2", &known), (0, nicks(&["bob#2e80aa01: "])));
    }

    #[test]
    fn word_start_is_a_byte_offset_after_multibyte_whitespace() {
        let line = "hé\u{3000}al";
        let (start, found) = at_end(line, &["alice"]);
        assert_eq!(&line[start..], "al");
        assert_eq!(found, nicks(&["alice"]));
    }

    #[test]
    fn paths_complete_after_send_nick_and_accept() {
        assert_eq!(path_arg_start("/send bob ~/re", 14), Some(10));
        assert_eq!(path_arg_start("/SEND  bob  a b", 15), Some(12));
        assert_eq!(path_arg_start("/send bob", 9), None, "still the nick");
        assert_eq!(path_arg_start("/msg bob x", 10), None);
        // The folder of /accept, after its number or alone.
        assert_eq!(path_arg_start("/accept 3 ~/in", 14), Some(10));
        assert_eq!(path_arg_start("/accept 3", 9), None, "still the number");
        assert_eq!(path_arg_start("/accept ~/in", 12), Some(8));
        assert_eq!(path_arg_start("/accept 3  a b", 14), Some(11));
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir(tmp.path().join("reports")).unwrap();
        std::fs::write(tmp.path().join("report.pdf"), b"").unwrap();
        std::fs::write(tmp.path().join(".hidden"), b"").unwrap();
        let typed = format!("{}/rep", tmp.path().display());
        let dir = tmp.path().display();
        assert_eq!(
            complete_path(&typed, None),
            vec![format!("{dir}/report.pdf"), format!("{dir}/reports/")]
        );
        assert_eq!(
            complete_path("~/rep", Some(tmp.path())),
            vec!["~/report.pdf", "~/reports/"]
        );
        assert_eq!(complete_path("~/.h", Some(tmp.path())), vec!["~/.hidden"]);
        // Names that would put an escape sequence or a line break on the screen.
        std::fs::write(tmp.path().join("rep\u{1b}[31mred.txt"), b"").unwrap();
        std::fs::write(tmp.path().join("rep\nsplit.txt"), b"").unwrap();
        std::fs::write(tmp.path().join("rep\u{202e}txt.exe"), b"").unwrap();
        assert_eq!(
            complete_path("~/rep", Some(tmp.path())),
            vec!["~/report.pdf", "~/reports/"]
        );
    }

    #[test]
    fn bad_cursor_positions_complete_nothing() {
        assert_eq!(
            complete("héllo", 2, &nicks(&["héllo"])).1,
            Vec::<String>::new()
        );
        assert_eq!(complete("ab", 9, &nicks(&["ab"])).1, Vec::<String>::new());
    }
}
