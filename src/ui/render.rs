//! Turns what the chat has to say into one terminal line, and makes peer text safe to print.
//!
//! Pure and unit-tested. [`render`] is the single choke point between anything a peer sent
//! and the terminal: it runs [`sanitize`] over every text it prints and [`display_nick`] over
//! every nick, and only afterwards adds its own colour sequences, so no character a peer chose
//! can move the cursor, clear the screen, retitle the window, plant a hyperlink, reorder text,
//! hide inside a name so that it passes for another, or stack marks into a tower.

use std::fmt::Write as _;

use chrono::NaiveTime;
use unicode_width::UnicodeWidthChar as _;

/// What [`sanitize`] prints in place of a line break (`\n`, `\r`, `\r\n`, `U+2028` or
/// `U+2029`) in peer text.
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
    /// A line that carries its own date and time (`/history`: `2026-12-06 14:30 <bob> hi`),
    /// shown without the clock that other lines begin with.
    Dated(String),
    /// A message (`Group` or `Direct`) that calls us — our nick as a word, or a direct
    /// message: its text is highlighted, and on a terminal the bell rings once.
    Mention(Box<Output>),
    /// An action to everyone (`/me waves`): `* alice waves`.
    Action {
        /// Who.
        nick: String,
        /// What they do.
        text: String,
    },
    /// A message that arrives late (it waited in an outbox): shown as the message followed by
    /// `(sent 09:03)`, so nobody takes it for a live line.
    Late {
        /// When it was written, as shown: `09:03`, or with the date if not today.
        sent: String,
        /// The message.
        message: Box<Output>,
    },
    /// A file transfer's line that a program may act on (an offer, how a transfer ended or
    /// paused): shown as a notice (an error, when `error`), and in JSON as a `file` object
    /// with its fields.
    File(Box<FileEvent>),
}

/// What [`Output::File`] carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEvent {
    /// What happened: `offer`, `accepted`, `received`, `sent`, `declined`, `cancelled`,
    /// `failed`, `paused`.
    pub event: &'static str,
    /// The number the user types (`/accept 3`).
    pub number: u32,
    /// `in` (we receive) or `out` (we send).
    pub direction: &'static str,
    /// The peer's nick, as it calls itself (`peer_id` tells two of the same nick apart).
    pub peer: String,
    /// The peer's id (16 hex digits).
    pub peer_id: String,
    /// The file's or folder's name (for an incoming one, as it will be saved).
    pub name: String,
    /// Bytes offered.
    pub size: u64,
    /// Files offered (1 for a file; a folder's count).
    pub files: u32,
    /// Milliseconds since its first byte moved, over restarts (on `received` and `sent`: how
    /// long it took); `None` before any did.
    pub took_ms: Option<u64>,
    /// Where in the offer its last data connection started, when that was not the start (a
    /// resume), in bytes.
    pub resumed_from: Option<u64>,
    /// Where it lands or landed (incoming, once accepted), or where it is read from
    /// (outgoing).
    pub path: Option<String>,
    /// The line a person sees.
    pub text: String,
    /// Shown as an error.
    pub error: bool,
}

/// Style of a message that calls us (bold yellow), as irssi and weechat highlight.
const MENTION_STYLE: &str = "\x1b[1;33m";
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

/// Renders `out` as one line starting with `HH:MM `, with colours when `color`: nicks through
/// [`display_nick`], every other text through [`sanitize`].
///
/// With `color == false` the result contains no ESC byte or other control character at all.
#[must_use]
pub fn render(out: &Output, time: NaiveTime, color: bool) -> String {
    let (out, highlight) = match out {
        Output::Mention(inner) => (inner.as_ref(), color),
        other => (other, false),
    };
    let (out, sent) = match out {
        Output::Late { sent, message } => (message.as_ref(), Some(sent.as_str())),
        other => (other, None),
    };
    // A message of several lines (a multi-line paste) is shown as lines, each indented to
    // where the text starts: `indent` is the width of what precedes the text.
    let text_style = |line: &mut String, text: &str, indent: usize| {
        // Blank rows are dropped: a message of ten thousand line breaks is one row.
        let mut rows = message_lines(text)
            .map(sanitize)
            .filter(|r| !r.trim().is_empty());
        let mut shown = rows.next().unwrap_or_default();
        for row in rows {
            shown.push('\n');
            shown.extend(std::iter::repeat_n(' ', indent));
            shown.push_str(&row);
        }
        if highlight {
            let _ = write!(line, "{MENTION_STYLE}{shown}{RESET}");
        } else {
            line.push_str(&shown);
        }
    };
    // `HH:MM ` before every label.
    let label_width = |label: &str| 6 + unicode_width::UnicodeWidthStr::width(label) + 1;
    let mut line = String::new();
    if let Output::Dated(text) = out {
        line.push_str(&sanitize(text));
        return line;
    }
    let clock = time.format("%H:%M");
    if color {
        let _ = write!(line, "{TIME_STYLE}{clock}{RESET} ");
    } else {
        let _ = write!(line, "{clock} ");
    }
    match out {
        Output::Group { nick, text } => {
            let nick = display_nick(nick);
            let label = format!("<{nick}>");
            push_nick(&mut line, &label, &nick, color);
            line.push(' ');
            text_style(&mut line, text, label_width(&label));
        }
        Output::Direct { from, to, text } => {
            let (label, colour_key) = match to {
                Some(to) => {
                    let to = display_nick(to);
                    (format!("*-> {to}*"), to)
                }
                None => {
                    let from = display_nick(from);
                    (format!("*{from}*"), from)
                }
            };
            push_nick(&mut line, &label, &colour_key, color);
            line.push(' ');
            text_style(&mut line, text, label_width(&label));
        }
        Output::Action { nick, text } => {
            let nick = display_nick(nick);
            let label = format!("* {nick}");
            push_nick(&mut line, &label, &nick, color);
            line.push(' ');
            text_style(&mut line, text, label_width(&label));
        }
        Output::Notice(text) => push_styled(&mut line, NOTICE_COLOUR, "-!- ", text, color),
        Output::File(f) if f.error => {
            push_styled(&mut line, ERROR_COLOUR, "error: ", &f.text, color);
        }
        Output::File(f) => push_styled(&mut line, NOTICE_COLOUR, "-!- ", &f.text, color),
        Output::Error(text) => push_styled(&mut line, ERROR_COLOUR, "error: ", text, color),
        Output::Info(text) | Output::Dated(text) => line.push_str(&sanitize(text)),
        // Nested mentions and late marks are not made; shown as their message.
        Output::Mention(inner) => return render(inner, time, color),
        Output::Late { message, .. } => return render(message, time, color),
    }
    if let Some(sent) = sent {
        let sent = sanitize(sent);
        if color {
            let _ = write!(line, " {TIME_STYLE}(sent {sent}){RESET}");
        } else {
            let _ = write!(line, " (sent {sent})");
        }
    }
    line
}

/// Where the rows of `out` after its first start when [`render`]'s line is wider than the
/// terminal (see [`wrap`]): under the text, after the label (`12:03 <alice> `, `12:03 -!- `),
/// as the rows of a message of several lines do.
#[must_use]
pub fn continuation_indent(out: &Output) -> usize {
    let width = |label: &str| 6 + unicode_width::UnicodeWidthStr::width(label) + 1;
    match out {
        Output::Group { nick, .. } => width(&format!("<{}>", display_nick(nick))),
        Output::Direct { to: Some(to), .. } => width(&format!("*-> {}*", display_nick(to))),
        Output::Direct { from, to: None, .. } => width(&format!("*{}*", display_nick(from))),
        Output::Action { nick, .. } => width(&format!("* {}", display_nick(nick))),
        Output::Notice(_) | Output::File(_) => width("-!-"),
        Output::Error(_) => width("error:"),
        Output::Info(_) => 6,
        // A line of history: under what follows its date and time (`2026-12-08 09:05 `).
        Output::Dated(_) => 17,
        Output::Mention(inner) | Output::Late { message: inner, .. } => continuation_indent(inner),
    }
}

/// Breaks a line of [`render`] into rows of at most `cols` terminal columns, each row it adds
/// starting with `indent` spaces (at most half the width; the rows of a message of several
/// lines come indented from [`render`]). So a row that starts at the left edge is always
/// the start of a line of ours, with its time: a peer's text that filled its row to the end
/// and went on with `12:03 <alice> …` would otherwise, wrapped by the terminal, pass for a line
/// of alice's. Rows break at a space where there is one (the space goes), else anywhere;
/// colour sequences take no room.
#[must_use]
pub fn wrap(line: &str, cols: usize, indent: usize) -> String {
    let indent = indent.min(cols / 2);
    let mut out = String::with_capacity(line.len() + line.len() / cols.max(1) * (indent + 1));
    let row_start = format!("\n{}", " ".repeat(indent));
    let mut col = 0;
    // The last space of the row so far: where it is in `out`, and the column after it.
    let mut space: Option<(usize, usize)> = None;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\x1b' => {
                // `ESC [` parameters and a final byte: a colour of ours.
                out.push(c);
                if let Some(open) = chars.next() {
                    out.push(open);
                    for d in chars.by_ref() {
                        out.push(d);
                        if ('@'..='~').contains(&d) {
                            break;
                        }
                    }
                }
            }
            '\n' => {
                out.push(c);
                col = 0;
                space = None;
            }
            _ => {
                // Counted as wide as any terminal may draw it, since counting short would let
                // the terminal wrap the row itself, at column 0: East Asian "ambiguous"
                // characters as two (`㉈`, which CJK locales and tmux draw wide), and so a
                // character followed by the emoji variation selector (`❤️`).
                let emoji = chars.peek() == Some(&'\u{fe0f}');
                let w = c
                    .width_cjk()
                    .unwrap_or(0)
                    .max(c.width().unwrap_or(0))
                    .max(if emoji { 2 } else { 0 });
                if col + w > cols {
                    // At the row's last space if it has one past the indent, else here.
                    if let Some((at, after)) = space.take().filter(|&(_, after)| after > indent) {
                        out.replace_range(at..=at, &row_start);
                        col = indent + (col - after);
                    }
                    if col + w > cols && col > indent {
                        out.push_str(&row_start);
                        col = indent;
                        if c == ' ' {
                            continue; // the break stands for it, as it does for the others
                        }
                    }
                }
                if c == ' ' {
                    space = Some((out.len(), col + 1));
                }
                out.push(c);
                col += w;
            }
        }
    }
    out
}

/// Makes any text safe to print on a terminal: nothing in it can hide, reorder or fake what
/// is shown.
///
/// - Escape sequences are removed whole, not just their ESC: CSI (`ESC [` … final byte),
///   string sequences (OSC `ESC ]`, DCS `ESC P`, SOS `ESC X`, PM `ESC ^`, APC `ESC _`, up to
///   BEL or ST, or to the end of the text when unterminated), other `ESC` + intermediates +
///   final byte, and their 8-bit C1 forms (`U+009B` CSI, `U+009D` OSC, …).
/// - `\t` becomes a space; `\n`, `\r`, `\r\n`, the line separator `U+2028` and the paragraph
///   separator `U+2029` become [`LINE_BREAK`].
/// - Every other C0 control, DEL and every C1 control (`U+0080`–`U+009F`) is dropped.
/// - Invisible characters are dropped (see [`is_invisible`]): bidi embeddings, overrides,
///   isolates and marks, which make text display in an order other than the one it was
///   written in; zero-width spaces, word joiners, invisible operators, the BOM, soft hyphens,
///   Hangul fillers and the other format and default-ignorable characters, which would let
///   `b\u{200b}ob` pass for `bob` or smuggle text nobody sees; tag characters, which spell
///   hidden ASCII (so the subdivision flags of England, Scotland and Wales show as a plain
///   black flag).
/// - The joiners `U+200D` (ZWJ) and `U+200C` (ZWNJ) are kept only between two non-ASCII
///   characters, where scripts and emoji need them (`👩\u{200d}💻`, Persian
///   `می\u{200c}خواهم`, Devanagari `क्\u{200d}ष`); anywhere else they are dropped. Variation
///   selectors are kept (`❤\u{fe0f}` needs one).
/// - After any character that takes up room on screen, at most [`MAX_MARKS`] zero-width
///   characters (combining marks, kept joiners and variation selectors, conjoining jamo) are
///   kept and the rest of the run dropped, so marks cannot stack into a tower over the line or
///   make a message that shows nothing out of thousands of characters. Dropped characters do
///   not end a run.
/// - Everything else (letters, accents, CJK, emoji, …) is kept untouched.
///
/// Idempotent, and the result contains none of the characters it drops.
#[must_use]
pub fn sanitize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut run = MarkRun::default();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\t' => run.push(&mut out, ' '),
            '\r' => {
                chars.next_if_eq(&'\n');
                push_line_break(&mut out, &mut run);
            }
            '\n' | '\u{2028}' | '\u{2029}' => push_line_break(&mut out, &mut run),
            '\u{1b}' => skip_escape(&mut chars),
            '\u{9b}' => skip_csi(&mut chars),
            '\u{90}' | '\u{98}' | '\u{9d}' | '\u{9e}' | '\u{9f}' => skip_string(&mut chars),
            c if c.is_control() || is_invisible(c) => {}
            c if is_joiner(c) => {
                let after_non_ascii = out
                    .chars()
                    .next_back()
                    .is_some_and(|before| !before.is_ascii() && !is_joiner(before));
                let before_non_ascii = chars.peek().is_some_and(|&next| is_kept_wide(next));
                if after_non_ascii && before_non_ascii {
                    run.push(&mut out, c);
                }
            }
            c => run.push(&mut out, c),
        }
    }
    out
}

/// Appends [`LINE_BREAK`], which ends any run of zero-width characters.
fn push_line_break(out: &mut String, run: &mut MarkRun) {
    out.push_str(LINE_BREAK);
    run.kept = 0;
}

/// Whether [`sanitize`] keeps `c` as it is and `c` takes up room on screen and is not ASCII:
/// what may follow a joiner that [`sanitize`] keeps. Because such a character is always kept,
/// a joiner kept once is kept again when the result is sanitized a second time.
fn is_kept_wide(c: char) -> bool {
    !c.is_ascii()
        && !c.is_control()
        && !matches!(c, '\u{2028}' | '\u{2029}')
        && !is_invisible(c)
        && c.width().is_some_and(|w| w > 0)
}

/// Whether `c` is a bidi embedding, override or isolate control (the "Trojan Source" set).
#[must_use]
pub fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

// Characters that hide or fake text. This part depends on no UI type, so that it can move to
// the protocol as is when nicks are normalised on the wire.

/// Zero-width characters kept after one character that takes up room on screen.
///
/// Four, after Unicode's own advice for spotting spoofed text (UTS #39, section 5.4: "Forbid
/// sequences of more than 4 nonspacing marks"). Real text stays well within it: a Vietnamese
/// vowel carries two marks (`ệ` decomposed is `e` + dot below + circumflex), a decomposed
/// Hangul syllable two jamo, Devanagari at most a nukta, a virama and a joiner, pointed Hebrew
/// three to four, an emoji a variation selector and a joiner. Zalgo text stacks dozens.
pub const MAX_MARKS: usize = 4;

/// What [`display_nick`] shows for a nick that has nothing visible left.
pub const NO_VISIBLE_NICK: &str = "\u{fffd}";

/// Counts the zero-width characters kept since the last character that takes up room on
/// screen, to keep at most [`MAX_MARKS`] of them.
#[derive(Debug, Default)]
struct MarkRun {
    /// Zero-width characters kept since the last character of non-zero width.
    kept: usize,
}

impl MarkRun {
    /// Whether `c` may be appended after what was kept so far, counting it if so.
    fn admits(&mut self, c: char) -> bool {
        if c.width() == Some(0) {
            if self.kept >= MAX_MARKS {
                return false;
            }
            self.kept += 1;
        } else {
            self.kept = 0;
        }
        true
    }

    /// Appends `c` to `out` unless it would be one zero-width character too many.
    fn push(&mut self, out: &mut String, c: char) {
        if self.admits(c) {
            out.push(c);
        }
    }
}

/// Whether `c` is invisible and no text needs it on a terminal: every default-ignorable code
/// point (Unicode's `Default_Ignorable_Code_Point`, assigned or reserved) apart from the two
/// joiners and the variation selectors, and the format characters (general category `Cf`)
/// that have no visible form: the interlinear annotation characters `U+FFF9`–`U+FFFB` and the
/// Egyptian hieroglyph format controls. In full: soft hyphen `U+00AD`, combining grapheme
/// joiner `U+034F`, Arabic letter mark `U+061C`, Hangul fillers (`U+115F`, `U+1160`, `U+3164`,
/// `U+FFA0`), Khmer inherent vowels `U+17B4`–`U+17B5`, Mongolian vowel separator `U+180E`,
/// zero-width space `U+200B`, left-to-right and right-to-left marks `U+200E`–`U+200F`, bidi
/// embeddings and overrides `U+202A`–`U+202E`, word joiner, invisible operators, bidi
/// isolates and deprecated format characters `U+2060`–`U+206F`, zero-width no-break space
/// (BOM) `U+FEFF`, `U+FFF0`–`U+FFFB`, Egyptian format controls `U+13430`–`U+1343F`,
/// shorthand format controls `U+1BCA0`–`U+1BCA3`, musical format controls
/// `U+1D173`–`U+1D17A`, and tags and reserved code points `U+E0000`–`U+E0FFF` except the
/// variation selectors `U+E0100`–`U+E01EF`.
#[must_use]
pub fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{ad}'
            | '\u{34f}'
            | '\u{61c}'
            | '\u{115f}'..='\u{1160}'
            | '\u{17b4}'..='\u{17b5}'
            | '\u{180e}'
            | '\u{200b}'
            | '\u{200e}'..='\u{200f}'
            | '\u{202a}'..='\u{202e}'
            | '\u{2060}'..='\u{206f}'
            | '\u{3164}'
            | '\u{feff}'
            | '\u{ffa0}'
            | '\u{fff0}'..='\u{fffb}'
            | '\u{13430}'..='\u{1343f}'
            | '\u{1bca0}'..='\u{1bca3}'
            | '\u{1d173}'..='\u{1d17a}'
            | '\u{e0000}'..='\u{e00ff}'
            | '\u{e01f0}'..='\u{e0fff}'
    )
}

/// Whether `c` is the zero-width joiner or non-joiner, which emoji sequences and some scripts
/// need between two characters and which are invisible anywhere else.
fn is_joiner(c: char) -> bool {
    matches!(c, '\u{200c}' | '\u{200d}')
}

/// Whether `c` is a variation selector: invisible, it picks a glyph for the character before
/// it (emoji or text presentation, a CJK ideograph variant, a Mongolian letter form).
fn is_variation_selector(c: char) -> bool {
    matches!(
        c,
        '\u{180b}'..='\u{180d}' | '\u{180f}' | '\u{fe00}'..='\u{fe0f}' | '\u{e0100}'..='\u{e01ef}'
    )
}

/// Whether `c` is a format character (`Cf`) that is drawn, spanning the digits after it: the
/// Arabic, Syriac and Kaithi number and year signs (Unicode's prepended concatenation marks).
fn is_prepended_sign(c: char) -> bool {
    matches!(
        c,
        '\u{600}'..='\u{605}'
            | '\u{6dd}'
            | '\u{70f}'
            | '\u{890}'..='\u{891}'
            | '\u{8e2}'
            | '\u{110bd}'
            | '\u{110cd}'
    )
}

/// A peer's nick as it may be shown: what the user reads as that peer's name, so two nicks
/// that display alike are equal strings. Pure, and the same rule wherever a nick is shown.
///
/// - Control characters are dropped one by one, without [`sanitize`]'s parsing of escape
///   sequences: what is printable of a sequence stays, so `\u{1b}[0mbob` shows as `[0mbob`
///   rather than passing for `bob`.
/// - Every format character (`Cf`) and every default-ignorable code point is dropped,
///   including the joiners (a ZWJ emoji shows as its parts) and the variation selectors:
///   [`is_invisible`], `U+200C`–`U+200D`, `U+180B`–`U+180D`, `U+180F`, `U+FE00`–`U+FE0F`,
///   `U+E0100`–`U+E01EF`, and the number signs `U+0600`–`U+0605`, `U+06DD`, `U+070F`,
///   `U+0890`–`U+0891`, `U+08E2`, `U+110BD`, `U+110CD`.
/// - Whitespace of any kind (tab, line breaks, `U+2028`, no-break and wide spaces, …) becomes
///   one ASCII space; runs of it become one, and none is left at either end, so `bob ` is
///   shown as `bob`.
/// - Zero-width characters (combining marks, conjoining jamo) before the first visible
///   character are dropped, and at most [`MAX_MARKS`] are kept after any other one.
/// - A nick with nothing left is shown as [`NO_VISIBLE_NICK`].
///
/// The result is unchanged by `display_nick` and by [`sanitize`].
#[must_use]
pub fn display_nick(nick: &str) -> String {
    let mut out = String::with_capacity(nick.len());
    // No mark may come before the first visible character: there would be nothing of the
    // nick's own for it to sit on.
    let mut run = MarkRun { kept: MAX_MARKS };
    let mut space_pending = false;
    for c in nick.chars() {
        if c.is_whitespace() {
            if !out.is_empty() {
                space_pending = true;
                run.kept = 0;
            }
        } else if !(c.is_control()
            || is_invisible(c)
            || is_joiner(c)
            || is_variation_selector(c)
            || is_prepended_sign(c))
            && run.admits(c)
        {
            if space_pending {
                out.push(' ');
                space_pending = false;
            }
            out.push(c);
        }
    }
    if out.is_empty() {
        out.push_str(NO_VISIBLE_NICK);
    }
    out
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

/// Appends `label` (already made safe), coloured after the displayed `nick` when `color`, so
/// that nicks which display alike are also coloured alike and colour tells nothing hidden.
fn push_nick(line: &mut String, label: &str, nick: &str, color: bool) {
    if color {
        let _ = write!(line, "{}{label}{RESET}", nick_colour(nick));
    } else {
        line.push_str(label);
    }
}

/// The lines of a message: split at `\r\n`, `\n`, `\r`, and the Unicode line and paragraph
/// separators.
fn message_lines(text: &str) -> impl Iterator<Item = &str> {
    text.split("\r\n")
        .flat_map(|part| part.split(['\n', '\r', '\u{2028}', '\u{2029}']))
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
        ("b\u{200b}ob", "bob"),                   // zero-width space
        ("b\u{200c}o\u{200d}b", "bob"),           // joiners between ASCII letters
        ("\u{200d}👩", "👩"),                     // joiner with nothing before it
        ("👩\u{200d}", "👩"),                     // joiner with nothing after it
        ("👩\u{200d}a", "👩a"),                   // joiner before ASCII
        ("👩\u{200d}\u{200d}💻", "👩\u{200d}💻"), // doubled joiner
        ("a\u{200e}b\u{200f}c\u{61c}d", "abcd"),  // LRM, RLM, ALM
        ("a\u{2060}b\u{2061}c\u{2064}d", "abcd"), // word joiner, invisible operators
        ("\u{feff}bom", "bom"),                   // BOM / zero-width no-break space
        ("soft\u{ad}hyphen", "softhyphen"),       // soft hyphen
        ("a\u{180e}b\u{34f}c", "abc"),            // Mongolian vowel separator, CGJ
        ("a\u{fff9}b\u{fffa}c\u{fffb}", "abc"),   // interlinear annotation
        ("\u{3164}\u{ffa0}\u{115f}\u{1160}x", "x"), // Hangul fillers
        ("ok\u{e0020}\u{e0068}\u{e0069}\u{e007f}", "ok"), // tags spelling hidden text
        ("one\u{2028}two\u{2029}three", "one ⏎ two ⏎ three"), // line and paragraph separators
    ];

    fn assert_terminal_safe(s: &str) {
        for c in s.chars() {
            assert!(
                !c.is_control() && !is_bidi_control(c) && !is_invisible(c),
                "unsafe {:?} in {s:?}",
                c
            );
        }
    }

    /// The longest run of zero-width characters in `s`.
    fn longest_mark_run(s: &str) -> usize {
        let mut longest = 0;
        let mut run = 0;
        for c in s.chars() {
            if c.width() == Some(0) {
                run += 1;
                longest = longest.max(run);
            } else {
                run = 0;
            }
        }
        longest
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
            "emoji: 👋🏽 👨‍👩‍👧 🇫🇷 ❤️ 👩\u{200d}💻 🏳\u{fe0f}\u{200d}🌈 1\u{fe0f}\u{20e3}",
            "right-to-left script itself is fine: שלום مرحبا",
            "combining: e\u{301}, Vietnamese: Tiếng Việt, decomposed: Tie\u{302}\u{301}ng Vie\u{323}\u{302}t",
            "Hindi: नमस्ते, conjunct forms: क्\u{200d}ष क्\u{200c}ष",
            "Persian with a non-joiner: می\u{200c}خواهم",
            "pointed Hebrew: שָׁלוֹם בְּרֵאשִׁית, Thai: น้ำ ที่",
            "decomposed Hangul: \u{1112}\u{1161}\u{11ab}\u{1100}\u{1173}\u{11af}",
            "a CJK variant: 葛\u{e0100}",
            "",
        ] {
            assert_eq!(sanitize(text), text);
        }
    }

    #[test]
    fn zalgo_is_cut_to_a_few_marks_per_character() {
        let zalgo = "Z\u{351}\u{36b}\u{343}\u{36a}\u{302}\u{36b}\u{33d}\u{34f}\u{334}\u{319}\u{324}\u{31e}\u{349}\u{35a}a\u{300}\u{301}\u{302}\u{303}\u{304}\u{305}l\u{316}g\u{317}\u{318}o";
        let clean = sanitize(zalgo);
        assert_eq!(
            clean,
            "Z\u{351}\u{36b}\u{343}\u{36a}a\u{300}\u{301}\u{302}\u{303}l\u{316}g\u{317}\u{318}o"
        );
        assert_eq!(longest_mark_run(&clean), MAX_MARKS);
    }

    #[test]
    fn a_message_of_marks_alone_shows_almost_nothing() {
        // The case: 64 KiB of combining marks (two bytes each) was one line of
        // 32,768 characters.
        let marks = "\u{301}".repeat(32 * 1024);
        assert_eq!(marks.len(), 64 * 1024);
        assert_eq!(sanitize(&marks), "\u{301}".repeat(MAX_MARKS));
        // Marks hidden behind dropped characters still count as one run.
        let interleaved = "x\u{301}\u{200b}".repeat(1000);
        let clean = sanitize(&interleaved);
        assert_eq!(clean.chars().count(), 1000 * 2);
        let stacked = format!("x{}", "\u{301}\u{200b}\u{1b}[0m".repeat(1000));
        assert_eq!(
            sanitize(&stacked),
            format!("x{}", "\u{301}".repeat(MAX_MARKS))
        );
    }

    #[test]
    fn line_breaks_and_tabs_end_a_run_of_marks() {
        let m4 = "\u{301}".repeat(MAX_MARKS);
        assert_eq!(
            sanitize(&format!("a{m4}\n{m4}\t{m4}\u{2028}{m4}")),
            format!("a{m4}{LINE_BREAK}{m4} {m4}{LINE_BREAK}{m4}")
        );
    }

    #[test]
    fn tricky_inputs_sanitize_the_same_twice() {
        for text in [
            "👩\u{200d}\u{2028}",
            "👩\u{200d}\u{200b}💻",
            "👩\u{200d}\u{200b}a",
            "é\u{200d}\u{200c}ü",
            "é\u{200d}\u{1b}[0mü",
            "é\u{200d}\u{85}ü",
            "é\u{301}\u{301}\u{301}\u{200d}ü",
            "é\u{301}\u{301}\u{301}\u{301}\u{200d}ü",
            "\u{301}\u{301}\n\u{301}\u{301}\u{301}\u{301}\u{301}",
        ] {
            let once = sanitize(text);
            assert_eq!(sanitize(&once), once, "sanitize({text:?})");
        }
    }

    #[test]
    fn nicks_show_without_anything_hidden() {
        for (nick, shown) in [
            ("bob", "bob"),
            ("b\u{200b}ob", "bob"),
            ("\u{feff}bob\u{200e}", "bob"),
            ("bob\u{2063}\u{2060}", "bob"),
            ("b\u{ad}ob", "bob"),
            ("bo\u{34f}b", "bob"),
            ("bob\u{e0041}\u{e0042}", "bob"),
            ("\u{202e}bob", "bob"),
            // Joiners, even where text keeps them, and variation selectors.
            ("👩\u{200d}💻", "👩💻"),
            ("ё\u{200c}ж", "ёж"),
            ("❤\u{fe0f}", "❤"),
            // Whitespace, line breaks included, is one space inside and none at the ends.
            ("  bob\t\n", "bob"),
            ("bob\u{a0}", "bob"),
            ("bob\u{3000}smith", "bob smith"),
            ("bob\r\n\u{2028}smith", "bob smith"),
            // Controls go one by one; what is printable of an escape sequence stays in sight.
            ("\u{1b}[31mbob", "[31mbob"),
            ("bo\u{7}\u{9b}b", "bob"),
            // Marks: none before the first character, at most MAX_MARKS after one.
            ("\u{301}\u{301}bob", "bob"),
            (" \u{301}bob", "bob"),
            ("e\u{301}", "e\u{301}"),
            ("bob \u{301}", "bob \u{301}"),
            (
                "o\u{300}\u{301}\u{302}\u{303}\u{304}\u{305}",
                "o\u{300}\u{301}\u{302}\u{303}",
            ),
            ("Việt", "Việt"),
            ("नमस्ते", "नमस्ते"),
            ("李小龍", "李小龍"),
            // Nothing visible at all.
            ("", NO_VISIBLE_NICK),
            ("\u{200b}\u{200d}", NO_VISIBLE_NICK),
            ("\u{301}", NO_VISIBLE_NICK),
            (" \t ", NO_VISIBLE_NICK),
        ] {
            assert_eq!(display_nick(nick), shown, "display_nick({nick:?})");
        }
    }

    #[test]
    fn every_invisible_class_is_dropped_from_nicks_at_both_ends() {
        // The first and last code point of every range the nick rule drops.
        for c in [
            '\u{ad}',
            '\u{34f}',
            '\u{61c}',
            '\u{115f}',
            '\u{1160}',
            '\u{17b4}',
            '\u{17b5}',
            '\u{180b}',
            '\u{180d}',
            '\u{180e}',
            '\u{180f}',
            '\u{200b}',
            '\u{200f}',
            '\u{202a}',
            '\u{202e}',
            '\u{2060}',
            '\u{206f}',
            '\u{3164}',
            '\u{fe00}',
            '\u{fe0f}',
            '\u{feff}',
            '\u{ffa0}',
            '\u{fff0}',
            '\u{fffb}',
            '\u{600}',
            '\u{605}',
            '\u{6dd}',
            '\u{70f}',
            '\u{890}',
            '\u{891}',
            '\u{8e2}',
            '\u{110bd}',
            '\u{110cd}',
            '\u{13430}',
            '\u{1343f}',
            '\u{1bca0}',
            '\u{1bca3}',
            '\u{1d173}',
            '\u{1d17a}',
            '\u{e0000}',
            '\u{e0fff}',
            '\u{e0100}',
            '\u{e01ef}',
        ] {
            assert_eq!(display_nick(&format!("a{c}b")), "ab", "{c:?}");
        }
    }

    #[test]
    fn nicks_are_rendered_as_displayed() {
        let time = NaiveTime::from_hms_opt(9, 0, 0).unwrap();
        let group = Output::Group {
            nick: "b\u{200b}ob\u{1b}[0m".into(),
            text: "hi".into(),
        };
        assert_eq!(render(&group, time, false), "09:00 <bob[0m> hi");
        let received = Output::Direct {
            from: "\u{feff}eve\u{200d}".into(),
            to: None,
            text: "psst".into(),
        };
        assert_eq!(render(&received, time, false), "09:00 *eve* psst");
        let sent = Output::Direct {
            from: "me".into(),
            to: Some("b\u{2060}ob".into()),
            text: "psst".into(),
        };
        assert_eq!(render(&sent, time, false), "09:00 *-> bob* psst");
        // Alike on screen, alike in colour: colour gives nothing hidden away either.
        let plain = Output::Group {
            nick: "bob".into(),
            text: "hi".into(),
        };
        let hidden = Output::Group {
            nick: "b\u{200b}ob".into(),
            text: "hi".into(),
        };
        assert_eq!(render(&plain, time, true), render(&hidden, time, true));
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
        // A history line has its own time: not a second one in front of it.
        let old = "2026-12-05 09:30 <bob> hi\x1b[2J";
        assert_eq!(
            render(&Output::Dated(old.into()), time, true),
            "2026-12-05 09:30 <bob> hi"
        );
        assert_eq!(
            render(&Output::Dated(old.into()), time, false),
            "2026-12-05 09:30 <bob> hi"
        );
    }

    /// The terminal's columns of `row`, colour sequences left out.
    fn columns(row: &str) -> usize {
        let mut plain = String::new();
        let mut chars = row.chars();
        while let Some(c) = chars.next() {
            if c == '\x1b' {
                chars
                    .by_ref()
                    .find(|d| ('@'..='~').contains(d) && *d != '[');
            } else {
                plain.push(c);
            }
        }
        unicode_width::UnicodeWidthStr::width(plain.as_str())
    }

    /// A long line of history goes on under what follows its date and time.
    #[test]
    fn a_line_of_history_wraps_under_its_date() {
        let out = Output::Dated(format!("2026-12-08 09:05 <alice> {}", "word ".repeat(30)));
        let line = render(&out, NaiveTime::from_hms_opt(9, 6, 0).unwrap(), false);
        let wrapped = wrap(&line, 60, continuation_indent(&out));
        let rows: Vec<&str> = wrapped.split('\n').collect();
        assert!(rows.len() >= 3, "{rows:#?}");
        for row in &rows[1..] {
            assert!(
                row.starts_with(&" ".repeat(17)) && !row[17..].starts_with(' '),
                "{rows:#?}"
            );
        }
    }

    /// A message padded to the end of its row and going on like a line of alice's: wrapped by
    /// us, the row it goes on in starts indented, never at the left edge where lines start.
    #[test]
    fn text_that_fills_its_row_cannot_start_a_row_that_passes_for_another_line() {
        let time = NaiveTime::from_hms_opt(12, 3, 0).unwrap();
        let cols = 60;
        for (nick, width) in [("mallory", 16), ("m", 10), ("世界", 13)] {
            let head = "ok, see you";
            let pad = " ".repeat(cols - width - head.len());
            let out = Output::Group {
                nick: nick.into(),
                text: format!(
                    "{head}{pad}12:03 <alice> mallory is our new admin, {}",
                    "x ".repeat(60)
                ),
            };
            assert_eq!(continuation_indent(&out), width, "{nick}");
            for color in [false, true] {
                let line = render(&out, time, color);
                let rows: Vec<String> = wrap(&line, cols, continuation_indent(&out))
                    .split('\n')
                    .map(str::to_owned)
                    .collect();
                assert!(rows.len() >= 3, "{rows:#?}");
                assert!(columns(&rows[0]) <= cols, "{rows:#?}");
                for row in &rows[1..] {
                    assert!(columns(row) <= cols, "{rows:#?}");
                    let start: String = row.chars().take(width).collect();
                    assert!(start.trim().is_empty(), "{nick}, color {color}: {rows:#?}");
                }
            }
        }
        // Wide characters are not cut: a row is never wider than the terminal.
        let wide = Output::Notice("界".repeat(100));
        let line = render(&wide, time, false);
        let wrapped = wrap(&line, 31, continuation_indent(&wide));
        assert!(wrapped.split('\n').all(|r| columns(r) <= 31), "{wrapped}");
        assert_eq!(wrapped.replace(['\n', ' '], ""), line.replace(' ', ""));
        // Rows break between words where they can.
        let words = Output::Notice("word ".repeat(40));
        let wrapped = wrap(
            &render(&words, time, false),
            33,
            continuation_indent(&words),
        );
        for row in wrapped.split('\n').skip(1) {
            assert!(columns(row) <= 33, "{wrapped}");
            assert!(
                row.trim().split(' ').all(|w| w.starts_with("word")),
                "{wrapped}"
            );
        }
        // Characters a terminal may draw wider than their own width says: a message of them
        // wrapped at `cols`, its first row as a terminal drawing each `drawn` wide.
        let first_row_drawn = |run: &str, cols: usize, drawn: fn(char) -> usize| {
            let out = Output::Group {
                nick: "m".into(),
                text: format!("{run}12:03 <alice> fake"),
            };
            let wrapped = wrap(&render(&out, time, false), cols, continuation_indent(&out));
            let first = wrapped.split('\n').next().unwrap_or_default();
            (first.chars().map(drawn).sum::<usize>(), wrapped)
        };
        // An emoji with its variation selector counts two columns, as terminals draw it.
        let (drawn, wrapped) = first_row_drawn(&"\u{2764}\u{fe0f}".repeat(35), 80, |c| match c {
            '\u{2764}' => 2,
            '\u{fe0f}' => 0,
            c => c.width().unwrap_or(0),
        });
        assert!(drawn <= 80, "{drawn} columns drawn: {wrapped}");
        // Ambiguous-width characters count two, as a terminal may draw them.
        let (drawn, wrapped) =
            first_row_drawn(&"\u{3248}".repeat(30), 60, |c| c.width_cjk().unwrap_or(0));
        assert!(drawn <= 60, "{drawn} columns drawn: {wrapped}");
        // A label that fills the row: the space after it is where the row breaks, and every
        // row after the first starts with the indent alone, the first as the others.
        let long = Output::Group {
            nick: "abcdefghijklmnopqrstuvwxyz012345".into(),
            text: "this is a message from someone with a very long nick".into(),
        };
        let wrapped = wrap(&render(&long, time, false), 40, continuation_indent(&long));
        for row in wrapped.split('\n').skip(1) {
            assert!(row.starts_with(&" ".repeat(20)), "{wrapped}");
            assert!(!row[20..].starts_with(' '), "{wrapped}");
        }
        // A narrow line is left as it is; on a very narrow terminal the indent shrinks.
        assert_eq!(wrap(&line, 1000, 10), line);
        assert!(wrap("12:03 abc", 2, 10)
            .split('\n')
            .all(|r| columns(r) <= 2));
    }

    #[test]
    fn a_message_of_several_lines_is_shown_as_indented_rows() {
        let time = NaiveTime::from_hms_opt(9, 5, 0).unwrap();
        let out = Output::Group {
            nick: "alice".into(),
            text: "first line\nsecond\r\n\n\nthird\n".into(),
        };
        assert_eq!(
            render(&out, time, false),
            "09:05 <alice> first line\n              second\n              third"
        );
        let wide = Output::Direct {
            from: "世界".into(),
            to: None,
            text: "a\nb".into(),
        };
        // `*世界*` is 6 columns wide: the second row starts under `a`.
        assert_eq!(render(&wide, time, false), "09:05 *世界* a\n             b");
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
            // A message's lines are rows of their own; everything else stays on one row.
            for row in plain.split('\n') {
                assert_terminal_safe(row);
            }
            if matches!(out, Output::Group { .. } | Output::Direct { .. }) {
                assert!(!plain.contains('⏎'), "{plain:?}");
            } else {
                assert!(plain.contains("x ⏎ "), "{plain:?}");
            }
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
            prop_assert!(clean.chars().all(|c| !is_invisible(c)));
            prop_assert!(longest_mark_run(&clean) <= MAX_MARKS);
        }

        #[test]
        fn sanitize_drops_every_invisible_character(
            before in "[a-zé]{0,3}",
            c in "[\\p{Default_Ignorable_Code_Point}\\p{Cf}--\\u{200c}\\u{200d}\\p{Variation_Selector}\\u{600}-\\u{605}\\u{6dd}\\u{70f}\\u{890}\\u{891}\\u{8e2}\\u{110bd}\\u{110cd}]",
            after in "[a-zé]{0,3}",
        ) {
            prop_assert_eq!(sanitize(&format!("{before}{c}{after}")), format!("{before}{after}"));
        }

        /// Idempotence where it is hard: joiners next to marks, separators, escapes and
        /// dropped characters, which arbitrary strings almost never put side by side.
        #[test]
        fn sanitize_is_idempotent_around_joiners(
            text in "[aé👩💻 \\u{200d}\\u{200c}\\u{200b}\\u{2028}\\u{301}\\u{fe0f}\\u{1b}\\u{85}\\n\\r\\[m]*",
        ) {
            let once = sanitize(&text);
            prop_assert_eq!(sanitize(&once), once);
        }

        #[test]
        fn marks_on_marks_never_pile_up(text in "[a\\p{Mn}\\p{Me}\\u{200d}\\u{fe0f}]*") {
            prop_assert!(longest_mark_run(&sanitize(&text)) <= MAX_MARKS);
            prop_assert!(longest_mark_run(&display_nick(&text)) <= MAX_MARKS);
        }

        #[test]
        fn displayed_nicks_are_safe_settled_and_sanitized(nick in any::<String>()) {
            let shown = display_nick(&nick);
            prop_assert!(!shown.is_empty());
            prop_assert!(shown.chars().all(|c| !c.is_control() && !is_invisible(c)));
            let hidden = ['\u{200c}', '\u{200d}', '\u{fe0f}', '\u{2028}'];
            prop_assert!(!shown.contains(hidden), "{:?}", shown);
            prop_assert!(!shown.starts_with(' ') && !shown.ends_with(' ') && !shown.contains("  "));
            prop_assert!(longest_mark_run(&shown) <= MAX_MARKS);
            prop_assert_eq!(&display_nick(&shown), &shown);
            prop_assert_eq!(&sanitize(&shown), &shown);
        }

        #[test]
        fn nicks_lose_every_format_and_default_ignorable_character(
            c in "[\\p{Cf}\\p{Default_Ignorable_Code_Point}]",
        ) {
            prop_assert_eq!(display_nick(&format!("b{c}ob")), "bob");
        }

        #[test]
        fn sanitize_is_idempotent(text in any::<String>()) {
            let once = sanitize(&text);
            prop_assert_eq!(sanitize(&once), once);
        }

        /// Safe text: characters that take up room on screen (no controls, format or
        /// default-ignorable characters, line or paragraph separators, marks, conjoining or
        /// prepended characters, or code points unassigned in Unicode 16), each followed by
        /// up to [`MAX_MARKS`] combining marks. Narrower than before the marks limit and the
        /// invisible characters were added to the rule, and by exactly those.
        #[test]
        fn safe_text_is_unchanged(
            text in "([^\\p{Cc}\\p{Cf}\\p{Default_Ignorable_Code_Point}\\p{Zl}\\p{Zp}\\p{M}\\p{Cn}\\p{gcb=V}\\p{gcb=T}\\p{gcb=Prepend}\\u{a8fa}][\\p{Mn}\\p{Me}--\\p{Default_Ignorable_Code_Point}]{0,4})*",
        ) {
            prop_assert_eq!(sanitize(&text), text);
        }

        #[test]
        fn uncoloured_render_has_no_control_characters(
            nick in any::<String>(),
            text in any::<String>(),
        ) {
            let time = NaiveTime::from_hms_opt(1, 2, 3).unwrap();
            let line = render(&Output::Group { nick, text }, time, false);
            // Rows of a multi-line message are separated by '\n' and indented; nothing else.
            for row in line.split('\n') {
                prop_assert!(row.chars().all(|c| !c.is_control() && !is_bidi_control(c)));
            }
        }
    }
}
