//! Turns what the chat has to say into one terminal line, and makes peer text safe to print.
//!
//! Pure and unit-tested. [`render`] is the single choke point between anything a peer sent
//! and the terminal: it runs [`sanitize`] over every field it prints, and only afterwards adds
//! its own colour sequences, so no byte a peer chose can move the cursor, clear the screen,
//! retitle the window, plant a hyperlink or reorder text.

use std::fmt::Write as _;

use chrono::NaiveTime;

/// What [`sanitize`] prints in place of a line break (`\n`, `\r` or `\r\n`) in peer text.
///
/// Visible rather than a plain space so a multi-line paste still reads as several lines, and
/// so a `\r` meant to overwrite the start of the line with something else shows up as what it
/// is.
pub const LINE_BREAK: &str = " ⏎ ";

/// One thing to show the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// A message to everyone, ours echoed the same way: `<alice> text`.
    Group {
        /// Who wrote it.
        nick: String,
        /// What they wrote.
        text: String,
    },
    /// A private message: received `*alice* text`, sent by us `*-> bob* text`.
    Direct {
        /// Who wrote it (ignored in the display when `to` is set, since that is us).
        from: String,
        /// `Some(recipient)` when we sent it, `None` when we received it.
        to: Option<String>,
        /// What was written.
        text: String,
    },
    /// Something that happened: `-!- alice joined (127.0.0.2:7654)`.
    Notice(String),
    /// The answer to a user mistake or a failure: `error: …`.
    Error(String),
    /// Plain lines such as `/help` and `/peers` output.
    Info(String),
}

/// Colour of `-!-` notices (cyan): present but quieter than messages.
const NOTICE_COLOUR: &str = "\x1b[36m";
/// Colour of `error:` lines (red).
const ERROR_COLOUR: &str = "\x1b[31m";
/// Style of the timestamp (dim), so the eye goes to the nick and text.
const TIME_STYLE: &str = "\x1b[2m";
/// Ends any colour or style.
const RESET: &str = "\x1b[0m";
/// Nick colours: readable on dark and light backgrounds, and none of them the red of errors
/// or the cyan of notices.
const NICK_COLOURS: [&str; 6] = [
    "\x1b[32m", // green
    "\x1b[33m", // yellow
    "\x1b[35m", // magenta
    "\x1b[92m", // bright green
    "\x1b[94m", // bright blue
    "\x1b[95m", // bright magenta
];

/// Renders `out` as one line starting with `HH:MM `, sanitized, with colours when `color`.
///
/// With `color == false` the result contains no ESC byte or other control character at all.
#[must_use]
pub fn render(out: &Output, time: NaiveTime, color: bool) -> String {
    let mut line = String::new();
    let clock = time.format("%H:%M");
    if color {
        let _ = write!(line, "{TIME_STYLE}{clock}{RESET} ");
    } else {
        let _ = write!(line, "{clock} ");
    }
    match out {
        Output::Group { nick, text } => {
            let nick = sanitize(nick);
            push_nick(&mut line, &format!("<{nick}>"), &nick, color);
            line.push(' ');
            line.push_str(&sanitize(text));
        }
        Output::Direct { from, to, text } => {
            let (label, colour_key) = match to {
                Some(to) => {
                    let to = sanitize(to);
                    (format!("*-> {to}*"), to)
                }
                None => {
                    let from = sanitize(from);
                    (format!("*{from}*"), from)
                }
            };
            push_nick(&mut line, &label, &colour_key, color);
            line.push(' ');
            line.push_str(&sanitize(text));
        }
        Output::Notice(text) => push_styled(&mut line, NOTICE_COLOUR, "-!- ", text, color),
        Output::Error(text) => push_styled(&mut line, ERROR_COLOUR, "error: ", text, color),
        Output::Info(text) => line.push_str(&sanitize(text)),
    }
    line
}

/// Makes any text safe to print on a terminal, keeping every printable character.
///
/// - Escape sequences are removed whole, not just their ESC: CSI (`ESC [` … final byte),
///   string sequences (OSC `ESC ]`, DCS `ESC P`, SOS `ESC X`, PM `ESC ^`, APC `ESC _`, up to
///   BEL or ST, or to the end of the text when unterminated), other `ESC` + intermediates +
///   final byte, and their 8-bit C1 forms (`U+009B` CSI, `U+009D` OSC, …).
/// - `\t` becomes a space; `\n`, `\r` and `\r\n` become [`LINE_BREAK`].
/// - Every other C0 control, DEL and every C1 control (`U+0080`–`U+009F`) is dropped.
/// - Bidi embeddings, overrides and isolates (`U+202A`–`U+202E`, `U+2066`–`U+2069`) are
///   dropped: they can make text display in an order other than the one it was written in.
/// - Everything else (letters, accents, CJK, emoji, …) is kept untouched.
#[must_use]
pub fn sanitize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\t' => out.push(' '),
            '\r' => {
                chars.next_if_eq(&'\n');
                out.push_str(LINE_BREAK);
            }
            '\n' => out.push_str(LINE_BREAK),
            '\u{1b}' => skip_escape(&mut chars),
            '\u{9b}' => skip_csi(&mut chars),
            '\u{90}' | '\u{98}' | '\u{9d}' | '\u{9e}' | '\u{9f}' => skip_string(&mut chars),
            c if c.is_control() || is_bidi_control(c) => {}
            c => out.push(c),
        }
    }
    out
}

/// Whether `c` is a bidi embedding, override or isolate control (the "Trojan Source" set).
#[must_use]
pub fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// Type of the character stream the escape skippers walk.
type Chars<'a> = std::iter::Peekable<std::str::Chars<'a>>;

/// Skips what follows an ESC that [`sanitize`] has just dropped.
fn skip_escape(chars: &mut Chars<'_>) {
    match chars.peek() {
        Some('[') => {
            chars.next();
            skip_csi(chars);
        }
        Some(']' | 'P' | 'X' | '^' | '_') => {
            chars.next();
            skip_string(chars);
        }
        // ESC, optional intermediate bytes, final byte: charset selection, keypad modes,
        // cursor save/restore, full reset (`ESC c`), SS2/SS3 …
        Some(_) => {
            while chars.next_if(|c| matches!(c, ' '..='/')).is_some() {}
            chars.next_if(|c| matches!(c, '0'..='~'));
        }
        None => {}
    }
}

/// Skips a CSI body: parameter and intermediate bytes then the final byte. Anything else ends
/// the sequence unconsumed, as terminals abort a malformed CSI; [`sanitize`] then judges that
/// character on its own.
fn skip_csi(chars: &mut Chars<'_>) {
    while chars.next_if(|c| matches!(c, ' '..='?')).is_some() {}
    chars.next_if(|c| matches!(c, '@'..='~'));
}

/// Skips a string sequence body up to and including its terminator: BEL, `ESC \` or the 8-bit
/// ST (`U+009C`). CAN or SUB abort it (and are then dropped as controls); a different escape
/// aborts it too and is handled as a sequence of its own, as terminals do.
fn skip_string(chars: &mut Chars<'_>) {
    while let Some(&c) = chars.peek() {
        match c {
            '\u{7}' | '\u{9c}' => {
                chars.next();
                return;
            }
            '\u{18}' | '\u{1a}' => return,
            '\u{1b}' => {
                chars.next();
                if chars.next_if_eq(&'\\').is_none() {
                    skip_escape(chars);
                }
                return;
            }
            _ => {
                chars.next();
            }
        }
    }
}

/// Appends `label` (already sanitized), coloured after `nick` when `color`.
fn push_nick(line: &mut String, label: &str, nick: &str, color: bool) {
    if color {
        let _ = write!(line, "{}{label}{RESET}", nick_colour(nick));
    } else {
        line.push_str(label);
    }
}

/// Appends `prefix` and the sanitized `text`, both in `style` when `color`.
fn push_styled(line: &mut String, style: &str, prefix: &str, text: &str, color: bool) {
    let text = sanitize(text);
    if color {
        let _ = write!(line, "{style}{prefix}{text}{RESET}");
    } else {
        let _ = write!(line, "{prefix}{text}");
    }
}

/// The colour of `nick`: FNV-1a of its bytes picks one of [`NICK_COLOURS`]. A hash spelled out
/// here, not `std`'s, because `std` does not promise the same value across releases and a
/// friend's colour should not change when tailchat is rebuilt.
fn nick_colour(nick: &str) -> &'static str {
    let hash = nick.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    // The remainder is below 6, so the cast cannot truncate.
    NICK_COLOURS[(hash % NICK_COLOURS.len() as u64) as usize]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Hostile inputs paired with what must be left of them.
    const HOSTILE: &[(&str, &str)] = &[
        ("a\u{1b}[2Jb", "ab"),                    // clear screen
        ("\u{1b}[H\u{1b}[2J\u{1b}[3Jx", "x"),     // home + clear + scrollback
        ("\u{1b}[31;1mred\u{1b}[0m", "red"),      // SGR colours
        ("\u{1b}[?1049h alt", " alt"),            // alternate screen (private)
        ("\u{1b}]0;pwned\u{7}after", "after"),    // OSC title with BEL
        ("\u{1b}]2;pwned\u{1b}\\after", "after"), // OSC title with ST
        (
            "\u{1b}]8;;http://evil/\u{1b}\\click\u{1b}]8;;\u{1b}\\",
            "click",
        ), // OSC 8 hyperlink
        ("\u{1b}]52;c;ZXZpbA==\u{7}x", "x"),      // OSC 52 clipboard write
        ("\u{1b}P+q544e\u{1b}\\x", "x"),          // DCS request
        ("\u{1b}_apc\u{1b}\\x", "x"),             // APC
        ("a\u{9b}2Jb", "ab"),                     // 8-bit CSI
        ("\u{9d}0;title\u{9c}x", "x"),            // 8-bit OSC and ST
        ("\u{1b}]0;never ends", ""),              // unterminated OSC
        ("\u{1b}]0;t\u{18}x", "x"),               // OSC cancelled by CAN
        ("\u{1b}]0;t\u{1b}[2Jx", "x"),            // OSC cut short by a CSI
        ("\u{1b}(0qqq\u{1b}(B", "qqq"),           // charset switch
        ("\u{1b}c", ""),                          // full reset
        ("\u{1b}7\u{1b}8x", "x"),                 // save/restore cursor
        ("end\u{1b}", "end"),                     // lone ESC at the end
        ("end\u{1b}[", "end"),                    // CSI cut off
        ("\u{1b}\u{1b}[2Jx", "x"),                // doubled ESC
        ("\u{1b}[1\u{7}x", "x"),                  // BEL inside a CSI
        ("\u{1b}é", "é"),                         // ESC before non-ASCII
        ("ok\rEVIL", "ok ⏎ EVIL"),                // carriage-return overwrite
        ("ok\r\nnext\nlast", "ok ⏎ next ⏎ last"), // line breaks
        ("a\u{8}\u{8}b", "ab"),                   // backspaces
        ("bell\u{7}\u{0}\u{7f}", "bell"),         // BEL, NUL, DEL
        ("a\u{85}b\u{9f}", "ab"),                 // other C1 controls
        ("tab\there", "tab here"),                // tab
        ("\u{202e}txt.exe\u{202c}", "txt.exe"),   // right-to-left override
        ("a\u{2066}b\u{2067}c\u{2068}d\u{2069}", "abcd"), // isolates
        ("\u{202a}\u{202b}\u{202d}x", "x"),       // embeddings, LTR override
    ];

    fn assert_terminal_safe(s: &str) {
        for c in s.chars() {
            assert!(
                !c.is_control() && !is_bidi_control(c),
                "unsafe {:?} in {s:?}",
                c
            );
        }
    }

    #[test]
    fn hostile_text_is_neutralised() {
        for (input, expected) in HOSTILE {
            let clean = sanitize(input);
            assert_eq!(&clean, expected, "sanitize({input:?})");
            assert_terminal_safe(&clean);
        }
    }

    #[test]
    fn printable_unicode_survives_untouched() {
        for text in [
            "plain ASCII, with punctuation: (a) [b] {c} ~!@#$%^&*",
            "accents: café, naïve, Ærøskøbing, ğüşıöç",
            "CJK: 你好世界 こんにちは 안녕하세요",
            "emoji: 👋🏽 👨‍👩‍👧 🇫🇷 ❤️",
            "right-to-left script itself is fine: שלום مرحبا",
            "combining: e\u{301} zero-width joiner: a\u{200d}b",
            "",
        ] {
            assert_eq!(sanitize(text), text);
        }
    }

    #[test]
    fn every_output_kind_without_colour() {
        let time = NaiveTime::from_hms_opt(9, 5, 59).unwrap();
        let cases = [
            (
                Output::Group {
                    nick: "alice".into(),
                    text: "hi all".into(),
                },
                "09:05 <alice> hi all",
            ),
            (
                Output::Direct {
                    from: "alice".into(),
                    to: None,
                    text: "psst".into(),
                },
                "09:05 *alice* psst",
            ),
            (
                Output::Direct {
                    from: "me".into(),
                    to: Some("bob".into()),
                    text: "psst".into(),
                },
                "09:05 *-> bob* psst",
            ),
            (
                Output::Notice("alice joined (127.0.0.2:7654)".into()),
                "09:05 -!- alice joined (127.0.0.2:7654)",
            ),
            (
                Output::Error("no peer called bob".into()),
                "09:05 error: no peer called bob",
            ),
            (
                Output::Info("/help  show this".into()),
                "09:05 /help  show this",
            ),
        ];
        for (out, expected) in cases {
            assert_eq!(render(&out, time, false), expected);
        }
    }

    #[test]
    fn every_output_kind_with_colour() {
        let time = NaiveTime::from_hms_opt(23, 0, 0).unwrap();
        let alice = nick_colour("alice");
        let bob = nick_colour("bob");
        let group = Output::Group {
            nick: "alice".into(),
            text: "hi".into(),
        };
        assert_eq!(
            render(&group, time, true),
            format!("\x1b[2m23:00\x1b[0m {alice}<alice>\x1b[0m hi")
        );
        let received = Output::Direct {
            from: "alice".into(),
            to: None,
            text: "psst".into(),
        };
        assert_eq!(
            render(&received, time, true),
            format!("\x1b[2m23:00\x1b[0m {alice}*alice*\x1b[0m psst")
        );
        let sent = Output::Direct {
            from: "alice".into(),
            to: Some("bob".into()),
            text: "psst".into(),
        };
        assert_eq!(
            render(&sent, time, true),
            format!("\x1b[2m23:00\x1b[0m {bob}*-> bob*\x1b[0m psst")
        );
        assert_eq!(
            render(&Output::Notice("bob left".into()), time, true),
            "\x1b[2m23:00\x1b[0m \x1b[36m-!- bob left\x1b[0m"
        );
        assert_eq!(
            render(&Output::Error("oops".into()), time, true),
            "\x1b[2m23:00\x1b[0m \x1b[31merror: oops\x1b[0m"
        );
        assert_eq!(
            render(&Output::Info("plain".into()), time, true),
            "\x1b[2m23:00\x1b[0m plain"
        );
    }

    #[test]
    fn every_field_is_sanitized() {
        let time = NaiveTime::from_hms_opt(12, 0, 0).unwrap();
        let evil = "x\u{1b}]0;t\u{7}\u{1b}[2J\u{202e}\r\u{9b}1m";
        let outputs = [
            Output::Group {
                nick: evil.into(),
                text: evil.into(),
            },
            Output::Direct {
                from: evil.into(),
                to: None,
                text: evil.into(),
            },
            Output::Direct {
                from: "me".into(),
                to: Some(evil.into()),
                text: evil.into(),
            },
            Output::Notice(evil.into()),
            Output::Error(evil.into()),
            Output::Info(evil.into()),
        ];
        for out in &outputs {
            let plain = render(out, time, false);
            assert_terminal_safe(&plain);
            assert!(plain.contains("x ⏎ "), "{plain:?}");
            // With colour, the only escapes are ours: every ESC starts one of our SGR codes.
            let coloured = render(out, time, true);
            let ours = coloured
                .split('\u{1b}')
                .skip(1)
                .all(|rest| rest.starts_with('[') && rest[1..].find('m').is_some_and(|m| m <= 3));
            assert!(ours, "{coloured:?}");
            let stripped: String = coloured
                .split('\u{1b}')
                .enumerate()
                .map(|(i, part)| {
                    if i == 0 {
                        part
                    } else {
                        &part[part.find('m').unwrap() + 1..]
                    }
                })
                .collect();
            assert_eq!(stripped, plain, "colour must not change the text");
        }
    }

    #[test]
    fn nick_colours_are_stable_and_varied() {
        assert_eq!(nick_colour("alice"), nick_colour("alice"));
        let nicks = [
            "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi",
        ];
        let distinct: std::collections::HashSet<_> = nicks.iter().map(|n| nick_colour(n)).collect();
        assert!(distinct.len() >= 3, "colours should spread: {distinct:?}");
        // Pinned (FNV-1a values worked out independently) so that an accidental change of
        // hash, which would recolour everyone, is noticed.
        assert_eq!(nick_colour("alice"), NICK_COLOURS[5]);
        assert_eq!(nick_colour("bob"), NICK_COLOURS[0]);
        assert_eq!(nick_colour("carol"), NICK_COLOURS[4]);
        assert_eq!(nick_colour("dave"), NICK_COLOURS[3]);
    }

    proptest! {
        #[test]
        fn sanitized_text_is_always_terminal_safe(text in any::<String>()) {
            let clean = sanitize(&text);
            prop_assert!(clean.chars().all(|c| !c.is_control() && !is_bidi_control(c)));
        }

        #[test]
        fn sanitize_is_idempotent(text in any::<String>()) {
            let once = sanitize(&text);
            prop_assert_eq!(sanitize(&once), once);
        }

        #[test]
        fn safe_text_is_unchanged(text in "[^\\p{Cc}\u{202a}-\u{202e}\u{2066}-\u{2069}]*") {
            prop_assert_eq!(sanitize(&text), text);
        }

        #[test]
        fn uncoloured_render_has_no_control_characters(
            nick in any::<String>(),
            text in any::<String>(),
        ) {
            let time = NaiveTime::from_hms_opt(1, 2, 3).unwrap();
            let line = render(&Output::Group { nick, text }, time, false);
            prop_assert!(line.chars().all(|c| !c.is_control() && !is_bidi_control(c)));
        }
    }
}
