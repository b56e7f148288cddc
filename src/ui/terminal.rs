//! The terminal edge: reads typed lines and prints rendered output, on two threads of its own.
//!
//! [`start`] picks one of two modes:
//!
//! - **Interactive** (stdin and stdout are both terminals, and rustyline can create an
//!   `ExternalPrinter`): rustyline runs on the `tailchat-readline` thread with the prompt
//!   `nick> `, history and tab completion. Output goes through the `ExternalPrinter`, which
//!   redraws the half-typed line below each printed line instead of clobbering it. Colours are
//!   on unless `NO_COLOR` is set to a non-empty value.
//! - **Plain** (anything else, e.g. `printf '/add host\nhello\n' | tailchat`): a thread reads
//!   stdin line by line (invalid UTF-8 replaced, `\n` or `\r\n` stripped) and then sends
//!   [`Input::Eof`]; output is written to stdout one line at a time, flushed, with no prompt
//!   and no colours.
//!
//! Input that arrives in one read (an input method committing a word, a paste without
//! bracketed paste, typing ahead over a slow link) shows whole at once. rustyline 15 showed
//! only its first character until the next key press, because with an `ExternalPrinter` it
//! waited in `select` on the terminal without looking at the bytes it had already buffered
//! (kkawakam/rustyline#976, fixed in rustyline 19); `tests/terminal.rs` keeps it fixed.
//!
//! In both modes a single `tailchat-printer` thread is the only writer of output, fed over a
//! std channel, so [`OutputSender::print`] never blocks async code (the `ExternalPrinter`
//! itself may block while rustyline redraws). Do not `println!` anywhere else while the
//! terminal runs; diagnostics (tracing) belong on stderr or in a file, and on a terminal they
//! will still land across the prompt.
//!
//! # Shutting down
//!
//! The normal ways out leave the terminal as it was found, because rustyline restores it when
//! `readline` returns and the readline thread then stops reading on its own:
//!
//! - `/quit` or `/exit`: the thread hands over the line and ends;
//! - Ctrl-D, or Ctrl-C on an empty line: the thread sends [`Input::Eof`] and ends.
//!
//! The main program should treat a quit command, [`Input::Eof`] and a closed `input` channel
//! (`recv()` returning `None`) alike: stop the network, call [`OutputSender::flush`] (it
//! blocks, so from synchronous code or `spawn_blocking`) so that the last lines are on screen,
//! and return from `main`. The threads are not joined; the process exit ends them. In plain
//! mode the stdin thread may still be blocked in `read`, which is harmless.
//!
//! Exiting for any other reason while a prompt is open (SIGTERM or SIGHUP, a fatal network
//! error, a panic) leaves the readline thread blocked in `readline` with the terminal in raw
//! mode, and rustyline offers no way to interrupt it from another thread. The terminal is put
//! back by [`crate::ui::tty::TerminalState`] instead, which the main program saves before
//! calling [`start`] and keeps until it returns.

use std::cell::RefCell;
use std::io::{self, BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;

use rustyline::completion::{Completer, Pair};
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::history::FileHistory;
use rustyline::validate::Validator;
use rustyline::{
    Cmd, CompletionType, ConditionalEventHandler, Config, Context, Editor, Event, EventContext,
    EventHandler, ExternalPrinter, Helper, KeyEvent, RepeatCount,
};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tracing::{debug, error, warn};

use crate::ui::command::{self, Command};
use crate::ui::completion;
use crate::ui::render::{render, Output};

/// How many typed lines the up-arrow history keeps (rustyline's default of 100 is short for a
/// chat where the same few commands come back all day).
const MAX_HISTORY: usize = 1000;

/// What the user typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// One line, without its line ending; feed it to [`command::parse`].
    Line(String),
    /// End of input: Ctrl-D, Ctrl-C on an empty line, or the end of a piped stdin.
    Eof,
}

/// What the rest of the program tells the prompt, over a channel the readline thread drains
/// before each prompt and at each Tab (so no lock is shared between threads).
#[derive(Debug, Clone, PartialEq, Eq)]
enum ToPrompt {
    /// Our nick changed: the prompt shows it.
    Nick(String),
    /// The nicks of the peers present, offered by tab completion.
    PeerNicks(Vec<String>),
}

/// Both ends of the running terminal, as returned by [`start`].
#[derive(Debug)]
pub struct Terminal {
    /// Typed lines, then [`Input::Eof`]; `None` from `recv()` means the same as `Eof`.
    pub input: UnboundedReceiver<Input>,
    /// Where to send everything to show; clone it freely.
    pub output: OutputSender,
}

/// Bytes of rendered lines waiting for the printer at most. While the screen does not keep up
/// (Ctrl-S, a slow ssh link, a script that stopped reading its output), lines past this are
/// counted and skipped rather than held: memory stays bounded and the network never waits.
/// Every message is in the journal, so `/history` shows what was skipped.
pub const MAX_QUEUED_OUTPUT: usize = 4 << 20;

/// A handle on the printer thread, the only writer of output, and on the prompt.
#[derive(Debug, Clone)]
pub struct OutputSender {
    /// Queue to the printer thread; never waits (see [`MAX_QUEUED_OUTPUT`]).
    lines: mpsc::Sender<ToPrinter>,
    /// What the printer and the senders share: bytes queued, lines skipped, marks reached.
    state: Arc<PrinterState>,
    /// Queue to the readline thread (its receiver is gone in plain mode: sends then fail
    /// harmlessly).
    prompt: mpsc::Sender<ToPrompt>,
    /// Whether [`render`] adds colours: decided once at start for the mode and `NO_COLOR`.
    color: bool,
    /// Whether a line that calls us ([`Output::Mention`]) rings the terminal bell (BEL):
    /// interactive mode only, never into a pipe.
    bell: bool,
    /// Whether lines wider than the terminal are wrapped here, their rows after the first
    /// indented ([`render::wrap`]): whenever standard output is a terminal.
    wrap: bool,
    /// The same for errors, which plain mode writes to standard error: only when that is a
    /// terminal too (a log of errors keeps each whole, on one line).
    wrap_errors: bool,
}

/// What the printer thread is asked to do, in order.
#[derive(Debug)]
enum ToPrinter {
    /// Write this already rendered line, the `.0`th printed; `.2`: it is an error (in plain
    /// mode errors go to standard error, so standard output carries only the conversation).
    Line(u64, String, bool),
    /// Signal the sender once everything queued before has been written; lines up to `.1`
    /// are then all written or skipped.
    Flush(mpsc::Sender<()>, u64),
    /// Lines were skipped from here on: the printer says how many when it gets here, even if
    /// nothing is printed after them.
    Skipped,
}

/// Counters shared by the senders and the printer thread.
#[derive(Debug, Default)]
struct PrinterState {
    /// Bytes of lines queued and not yet written.
    queued: AtomicUsize,
    /// Lines refused because the queue was full, not yet reported.
    skipped: AtomicU64,
    /// Lines printed so far (written, queued or skipped): the number of the last one.
    printed: AtomicU64,
    /// The number of the last line written; every line before it is written or skipped.
    written: AtomicU64,
    /// The number of the first line skipped in this run (0: none). Marks are never reached
    /// past it: a message that was skipped was not seen, so it is not confirmed as shown, and
    /// the next start shows it (with the ones after it, which may then come twice: at least
    /// once, never lost).
    first_skipped: AtomicU64,
    /// How the line that counts skipped lines is written, when not as a human line (`--json`
    /// sets one that writes a JSON `error` object).
    skipped_line: std::sync::OnceLock<fn(String) -> String>,
}

/// The line that says `skipped` lines were not shown.
fn skipped_text(skipped: u64) -> String {
    format!(
        "{skipped} line(s) not shown: the screen was not keeping up — /history shows the messages, and the next start shows again what was not seen"
    )
}

impl OutputSender {
    /// Renders `out` with the local time of day and queues it for printing. Never blocks; if
    /// the printer thread is gone, the line is dropped.
    pub fn print(&self, out: &Output) {
        let mut line = render(out, crate::clock::local_now().time(), self.color);
        let error = matches!(out, Output::Error(_));
        if if error { self.wrap_errors } else { self.wrap } {
            if let Some((terminal_size::Width(cols), _)) = terminal_size::terminal_size() {
                line = crate::ui::render::wrap(
                    &line,
                    usize::from(cols),
                    crate::ui::render::continuation_indent(out),
                );
            }
        }
        if self.bell && matches!(out, Output::Mention(_)) {
            line.insert(0, '\u{7}');
        }
        self.queue(line, error);
    }

    /// Queues a rendered line (`error`: for standard error in plain mode), or counts it as
    /// skipped when the queue is full.
    fn queue(&self, line: String, error: bool) {
        let len = line.len();
        let number = self.state.printed.fetch_add(1, Ordering::AcqRel) + 1;
        if self.state.queued.fetch_add(len, Ordering::AcqRel) + len > MAX_QUEUED_OUTPUT {
            self.state.queued.fetch_sub(len, Ordering::AcqRel);
            if self.state.skipped.fetch_add(1, Ordering::AcqRel) == 0 {
                let _ = self.lines.send(ToPrinter::Skipped);
            }
            let _ = self.state.first_skipped.compare_exchange(
                0,
                number,
                Ordering::AcqRel,
                Ordering::Acquire,
            );
            return;
        }
        // Sending fails only once the printer thread has ended, when there is nowhere left to
        // write to anyway.
        let _ = self.lines.send(ToPrinter::Line(number, line, error));
    }

    /// Writes the line that counts skipped lines with `as_line` (from its text) rather than as
    /// a human line: for `--json`, whose output must be JSON objects only. Once, at start.
    pub fn skipped_lines_as(&self, as_line: fn(String) -> String) {
        let _ = self.state.skipped_line.set(as_line);
    }

    /// Queues a line that is already safe to print as it is (a JSON object, escaped), like
    /// [`Self::print`] in every other way.
    pub fn print_raw(&self, line: String) {
        self.queue(line, false);
    }

    /// A mark after every line printed so far: [`Self::reached`] passes it once those lines
    /// are written (or skipped and counted), so the caller can tell what the user has seen.
    pub fn mark(&self) -> u64 {
        self.state.printed.load(Ordering::Acquire)
    }

    /// Bytes of lines queued and not yet written.
    pub fn backlog(&self) -> usize {
        self.state.queued.load(Ordering::Acquire)
    }

    /// The last mark the printer has reached: never past a line that was skipped.
    pub fn reached(&self) -> u64 {
        let written = self.state.written.load(Ordering::Acquire);
        match self.state.first_skipped.load(Ordering::Acquire) {
            0 => written,
            first => written.min(first - 1),
        }
    }

    /// No bell for mentions (`bell = false` in the config file).
    pub fn silence_bell(&mut self) {
        self.bell = false;
    }

    /// Shows `nick` in the prompt from the next prompt on.
    pub fn set_nick(&self, nick: &str) {
        let _ = self.prompt.send(ToPrompt::Nick(nick.to_owned()));
    }

    /// Offers `nicks` to tab completion from the next Tab on.
    pub fn set_peer_nicks(&self, nicks: Vec<String>) {
        let _ = self.prompt.send(ToPrompt::PeerNicks(nicks));
    }

    /// Blocks until every line queued before this call has been written (or the printer
    /// thread is gone). Meant for the end of the program; not for async code.
    pub fn flush(&self) {
        let (done, written) = mpsc::channel();
        let through = self.mark();
        if self.lines.send(ToPrinter::Flush(done, through)).is_ok() {
            // An error here means the printer thread died, so nothing more will be written.
            let _ = written.recv();
        }
    }
}

/// Starts reading input and printing output, in interactive or plain mode (see the module
/// documentation). `history_file`, if given, is loaded now (a missing file is fine) and each
/// new line is appended to it; any trouble with it is logged and otherwise ignored. Plain mode
/// keeps no history. The prompt starts as `nick> `.
#[must_use]
pub fn start(nick: &str, history_file: Option<PathBuf>) -> Terminal {
    let (input_tx, input) = unbounded_channel();
    let interactive = io::stdin().is_terminal() && io::stdout().is_terminal();
    let output = if interactive {
        start_interactive(nick, history_file, input_tx).unwrap_or_else(start_plain)
    } else {
        start_plain(input_tx)
    };
    Terminal { input, output }
}

/// Sets up rustyline and its printer, or gives `input_tx` back when this terminal cannot have
/// them, so the caller can fall back to plain mode.
fn start_interactive(
    nick: &str,
    history_file: Option<PathBuf>,
    input_tx: UnboundedSender<Input>,
) -> Result<OutputSender, UnboundedSender<Input>> {
    let config = match Config::builder().max_history_size(MAX_HISTORY) {
        Ok(builder) => builder,
        Err(e) => {
            debug!("cannot size the history ({e}); plain mode");
            return Err(input_tx);
        }
    }
    .auto_add_history(false)
    .completion_type(CompletionType::List)
    .build();
    let mut editor: Editor<ChatHelper, FileHistory> = match Editor::with_config(config) {
        Ok(editor) => editor,
        Err(e) => {
            debug!("cannot start line editing ({e}); plain mode");
            return Err(input_tx);
        }
    };
    let mut printer = match editor.create_external_printer() {
        Ok(printer) => printer,
        Err(e) => {
            debug!("cannot print above the prompt ({e}); plain mode");
            return Err(input_tx);
        }
    };
    let (prompt, updates) = mpsc::channel();
    editor.set_helper(Some(ChatHelper {
        updates,
        nick: RefCell::new(nick.to_owned()),
        peer_nicks: RefCell::new(Vec::new()),
    }));
    editor.bind_sequence(
        KeyEvent::ctrl('C'),
        EventHandler::Conditional(Box::new(CtrlCOnEmptyLineEnds)),
    );
    if let Some(path) = &history_file {
        match editor.load_history(path) {
            Ok(()) => {}
            Err(ReadlineError::Io(e)) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => warn!("cannot read history from {}: {e}", path.display()),
        }
    }
    let color = std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty());
    // The ExternalPrinter writes the line as is while rustyline is not in raw mode (between
    // two prompts), so the line ending must be ours.
    let mut output = spawn_printer(color, prompt, move |line, _error| {
        printer.print(format!("{line}\n")).map_err(io::Error::other)
    });
    output.bell = true;
    output.wrap = true;
    output.wrap_errors = true;
    spawn_named("tailchat-readline", move || {
        read_interactive(editor, history_file.as_deref(), &input_tx);
    });
    Ok(output)
}

/// Plain mode: stdin lines in, stdout lines out. On a terminal without line editing
/// (`TERM=dumb`, say) lines are still wrapped here, so that a peer's text padded to a row's end
/// cannot start a row at the left edge that looks like a line of its own.
fn start_plain(input_tx: UnboundedSender<Input>) -> OutputSender {
    let mut output = plain_printer();
    output.wrap = io::stdout().is_terminal();
    output.wrap_errors = output.wrap && io::stderr().is_terminal();
    spawn_named("tailchat-stdin", move || {
        read_plain(io::stdin().lock(), &input_tx);
    });
    output
}

/// Plain mode with these `lines` as the whole input (then end of input), standard input
/// untouched: for `tailchat send`, whose message comes from its command line.
#[must_use]
pub fn start_with_input(lines: Vec<String>) -> Terminal {
    let (input_tx, input) = unbounded_channel();
    for line in lines {
        let _ = input_tx.send(Input::Line(line));
    }
    let _ = input_tx.send(Input::Eof);
    Terminal {
        input,
        output: plain_printer(),
    }
}

/// The plain printer: standard output, errors to standard error.
fn plain_printer() -> OutputSender {
    spawn_printer(false, mpsc::channel().0, |line, error| {
        if error {
            let mut stderr = io::stderr().lock();
            writeln!(stderr, "{line}")?;
            return stderr.flush();
        }
        let mut stdout = io::stdout().lock();
        writeln!(stdout, "{line}")?;
        stdout.flush()
    })
}

/// Starts the printer thread writing every rendered line through `sink`.
fn spawn_printer(
    color: bool,
    prompt: mpsc::Sender<ToPrompt>,
    sink: impl FnMut(String, bool) -> io::Result<()> + Send + 'static,
) -> OutputSender {
    let (lines, queue) = mpsc::channel();
    let state = Arc::new(PrinterState::default());
    let shared = Arc::clone(&state);
    spawn_named("tailchat-printer", move || {
        run_printer(&queue, &shared, sink)
    });
    OutputSender {
        lines,
        state,
        prompt,
        color,
        bell: false,
        wrap: false,
        wrap_errors: false,
    }
}

/// The printer loop: until every [`OutputSender`] is dropped, write lines in order and answer
/// flushes. A failing sink (closed stdout, …) is reported once, not once per line. Once a
/// line could not be written to standard output, no later line counts as written (the
/// messages among them were not shown: the next start shows them), even if a write succeeds
/// again.
fn run_printer(
    queue: &mpsc::Receiver<ToPrinter>,
    state: &PrinterState,
    mut sink: impl FnMut(String, bool) -> io::Result<()>,
) {
    let mut reported = false;
    let mut lost = false;
    let mut write = |line: String, error: bool, lost: &mut bool| {
        if let Err(e) = sink(line, error) {
            if !reported {
                // A reader that went away (`| head`) is no surprise: said only in the log,
                // as `cat` or `grep` say nothing then.
                if e.kind() == io::ErrorKind::BrokenPipe {
                    tracing::debug!("cannot write output: {e}");
                } else {
                    warn!("cannot write output: {e}");
                }
                reported = true;
            }
            *lost |= !error;
        }
    };
    for message in queue {
        match message {
            ToPrinter::Line(number, line, error) => {
                let len = line.len();
                write(line, error, &mut lost);
                state.queued.fetch_sub(len, Ordering::AcqRel);
                if !lost {
                    state.written.fetch_max(number, Ordering::AcqRel);
                }
            }
            ToPrinter::Flush(done, through) => {
                if !lost {
                    state.written.fetch_max(through, Ordering::AcqRel);
                }
                let _ = done.send(());
            }
            // Where the skipping began, after the lines queued before it: how many lines were
            // skipped, on standard output, where they would have been (a notice, or with
            // `--json` the object `skipped_lines_as` makes).
            ToPrinter::Skipped => {
                let skipped = state.skipped.swap(0, Ordering::AcqRel);
                if skipped > 0 {
                    let text = skipped_text(skipped);
                    match state.skipped_line.get() {
                        Some(as_line) => write(as_line(text), false, &mut lost),
                        None => write(
                            render(
                                &Output::Notice(text),
                                crate::clock::local_now().time(),
                                false,
                            ),
                            false,
                            &mut lost,
                        ),
                    }
                }
            }
        }
    }
}

/// The readline loop; see the module documentation for when it ends.
fn read_interactive(
    mut editor: Editor<ChatHelper, FileHistory>,
    history_file: Option<&Path>,
    input_tx: &UnboundedSender<Input>,
) {
    let mut history_file = history_file;
    loop {
        // The nick is ours, but it may come from anywhere (config, another peer's rename
        // notice), and rustyline prints the prompt verbatim.
        let nick = editor.helper().map(ChatHelper::nick).unwrap_or_default();
        let prompt = format!("{}> ", crate::ui::render::display_nick(&nick));
        match editor.readline(&prompt) {
            Ok(line) => {
                remember(&mut editor, &line, &mut history_file);
                let parsed = command::parse(&line);
                if matches!(
                    parsed,
                    Ok(Some(Command::Say(_) | Command::Me(_) | Command::Msg { .. }))
                ) {
                    erase_accepted_line(&mut editor, &prompt, &line);
                }
                if let (Ok(Some(Command::Nick(nick))), Some(helper)) = (&parsed, editor.helper()) {
                    // Shown at once: the application's confirmation comes after the prompt.
                    // Updates still queued (the confirmation of an earlier /nick) are applied
                    // first, or the next prompt would show that older nick.
                    helper.refresh();
                    helper.nick.borrow_mut().clone_from(nick);
                }
                let quit = matches!(parsed, Ok(Some(Command::Quit)));
                if input_tx.send(Input::Line(line)).is_err() || quit {
                    return;
                }
            }
            // Ctrl-C on a non-empty line: rustyline has dropped the line, prompt again.
            Err(ReadlineError::Interrupted) => {}
            Err(ReadlineError::Eof) => {
                let _ = input_tx.send(Input::Eof);
                return;
            }
            Err(e) => {
                warn!("cannot read the terminal: {e}");
                let _ = input_tx.send(Input::Eof);
                return;
            }
        }
    }
}

/// Removes the line just entered from the screen: a message comes back at once as its echo
/// (`12:03 <alice> hi`), and showing it twice is clutter. Between two `readline` calls this
/// thread owns the terminal (the external printer waits for the next call), so nothing else
/// is written meanwhile. The rows are counted as rustyline lays the line out
/// ([`entered_rows`]).
fn erase_accepted_line(editor: &mut Editor<ChatHelper, FileHistory>, prompt: &str, line: &str) {
    let Some((cols, _)) = editor.dimensions().filter(|(c, _)| *c > 0) else {
        return;
    };
    let Some(rows) = entered_rows(prompt, line, usize::from(cols)) else {
        return;
    };
    let mut out = std::io::stdout().lock();
    // CSI n F: to the start of the line n rows up; CSI J: erase to the end of the screen.
    let _ = write!(out, "\x1b[{rows}F\x1b[J");
    let _ = out.flush();
}

/// How many rows of a `cols`-wide terminal the entered `line` took after `prompt`, up to the
/// row of the cursor when Enter was pressed, laid out as rustyline lays it out
/// (`calculate_position`, with the terminal widths of `unicode-width`, as its default
/// `WcWidth` mode): each character takes its width (a CJK character two columns), one that no
/// longer fits goes to the next row whole, each further line of a pasted multi-line entry
/// starts at the left edge, and a line that ends exactly at the right edge puts the cursor on
/// the row below. `None` for a carriage return or a tab, whose layout is not worth guessing.
fn entered_rows(prompt: &str, line: &str, cols: usize) -> Option<usize> {
    use unicode_width::UnicodeWidthChar as _;
    if line.contains(['\r', '\t']) || cols == 0 {
        return None;
    }
    let (mut row, mut col) = (0, 0);
    for c in prompt.chars().chain(line.chars()) {
        if c == '\n' {
            (row, col) = (row + 1, 0);
            continue;
        }
        let width = c.width().unwrap_or(0);
        col += width;
        if col > cols {
            (row, col) = (row + 1, width);
        }
    }
    if col == cols {
        row += 1;
    }
    Some(row + 1)
}

/// Adds a non-blank `line` to the up-arrow history and appends it to the history file. After
/// the first failure to write the file, gives up on it (`history_file` becomes `None`) rather
/// than warning on every line.
fn remember(
    editor: &mut Editor<ChatHelper, FileHistory>,
    line: &str,
    history_file: &mut Option<&Path>,
) {
    if line.trim().is_empty() {
        return;
    }
    match editor.add_history_entry(line) {
        Ok(true) => {}
        // Ignored as a repeat of the previous line: nothing new to save.
        Ok(false) => return,
        Err(e) => {
            warn!("cannot add to history: {e}");
            return;
        }
    }
    if let Some(path) = *history_file {
        if let Err(e) = editor.append_history(path) {
            warn!(
                "cannot save history to {}: {e}; not trying again",
                path.display()
            );
            *history_file = None;
        }
    }
}

/// Reads lines from `reader` until it ends or fails, then sends [`Input::Eof`].
fn read_plain(mut reader: impl BufRead, input_tx: &UnboundedSender<Input>) {
    let mut bytes = Vec::new();
    loop {
        bytes.clear();
        match reader.read_until(b'\n', &mut bytes) {
            Ok(0) => break,
            Ok(_) => {
                // A line cut short by the end of input: a terminal's Ctrl-D in the middle of
                // a line hands it over, and a second Ctrl-D ends it. The end is not sticky on a
                // terminal, so reading on would wait for a third.
                let ended = !bytes.ends_with(b"\n");
                if !ended {
                    bytes.pop();
                    if bytes.ends_with(b"\r") {
                        bytes.pop();
                    }
                }
                let line = String::from_utf8_lossy(&bytes).into_owned();
                if input_tx.send(Input::Line(line)).is_err() {
                    return;
                }
                if ended {
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                warn!("cannot read stdin: {e}");
                break;
            }
        }
    }
    let _ = input_tx.send(Input::Eof);
}

/// Starts a named thread (names show in debuggers and panics). Failing to start one is logged:
/// the channels it held close, which reads as end of input or as output going nowhere.
fn spawn_named(name: &str, body: impl FnOnce() + Send + 'static) {
    if let Err(e) = thread::Builder::new().name(name.to_owned()).spawn(body) {
        error!("cannot start thread {name}: {e}");
    }
}

/// The rustyline helper: the prompt's state, and tab completion from
/// [`completion::complete`]. Lives on the readline thread only.
struct ChatHelper {
    /// Updates from the rest of the program, drained before each prompt and at each Tab.
    updates: mpsc::Receiver<ToPrompt>,
    /// Our nick, shown in the prompt.
    nick: RefCell<String>,
    /// Nicks of the peers present, offered by completion.
    peer_nicks: RefCell<Vec<String>>,
}

impl ChatHelper {
    /// Applies every update sent so far.
    fn refresh(&self) {
        for update in self.updates.try_iter() {
            match update {
                ToPrompt::Nick(nick) => *self.nick.borrow_mut() = nick,
                ToPrompt::PeerNicks(nicks) => *self.peer_nicks.borrow_mut() = nicks,
            }
        }
    }

    /// Our nick as it stands.
    fn nick(&self) -> String {
        self.refresh();
        self.nick.borrow().clone()
    }
}

impl Completer for ChatHelper {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        self.refresh();
        if let Some(start) = completion::path_arg_start(line, pos) {
            let home = std::env::var_os("HOME").map(PathBuf::from);
            let found = completion::complete_path(&line[start..pos], home.as_deref());
            let candidates = found
                .into_iter()
                .map(|replacement| Pair {
                    display: replacement
                        .rsplit('/')
                        .find(|s| !s.is_empty())
                        .unwrap_or(&replacement)
                        .to_owned(),
                    replacement,
                })
                .collect();
            return Ok((start, candidates));
        }
        let (start, found) = completion::complete(line, pos, &self.peer_nicks.borrow());
        let candidates = found
            .into_iter()
            .map(|replacement| Pair {
                display: replacement.trim_end().to_owned(),
                replacement,
            })
            .collect();
        Ok((start, candidates))
    }
}

impl Hinter for ChatHelper {
    type Hint = String;
}

impl Highlighter for ChatHelper {}

impl Validator for ChatHelper {}

impl Helper for ChatHelper {}

/// Ctrl-C ends the session on an empty line (like Ctrl-D) and only clears a non-empty one,
/// so a habitual Ctrl-C never throws away a half-typed message *and* quits.
struct CtrlCOnEmptyLineEnds;

impl ConditionalEventHandler for CtrlCOnEmptyLineEnds {
    fn handle(
        &self,
        _event: &Event,
        _count: RepeatCount,
        _positive: bool,
        ctx: &EventContext,
    ) -> Option<Cmd> {
        // `None` keeps rustyline's own Ctrl-C: readline returns `Interrupted`.
        ctx.line().is_empty().then_some(Cmd::EndOfFile)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Mutex, MutexGuard, PoisonError};

    fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
        mutex.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn drain(input: &mut UnboundedReceiver<Input>) -> Vec<Input> {
        let mut all = Vec::new();
        while let Ok(item) = input.try_recv() {
            all.push(item);
        }
        all
    }

    fn line(text: &str) -> Input {
        Input::Line(text.to_owned())
    }

    #[test]
    fn plain_input_strips_line_endings_then_ends() {
        let (tx, mut rx) = unbounded_channel();
        let stdin: &[u8] = b"/add host\r\nhello\n\n  spaced  \nno newline at end";
        read_plain(stdin, &tx);
        assert_eq!(
            drain(&mut rx),
            [
                line("/add host"),
                line("hello"),
                line(""),
                line("  spaced  "),
                line("no newline at end"),
                Input::Eof
            ]
        );
    }

    #[test]
    fn ctrl_d_in_the_middle_of_a_line_on_a_terminal_ends_the_input_at_the_second() {
        /// A terminal: each Ctrl-D ends one `read` (the first hands over the half line, the
        /// second reads nothing), and the end is not sticky: reading on would block for more.
        struct Tty(Vec<&'static [u8]>);
        impl io::Read for Tty {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let chunk = self.0.remove(0);
                buf[..chunk.len()].copy_from_slice(chunk);
                Ok(chunk.len())
            }
        }
        let (tx, mut rx) = unbounded_channel();
        // "hello" then Ctrl-D, Ctrl-D; what follows would need a third (and here, a panic).
        read_plain(io::BufReader::new(Tty(vec![b"hello", b""])), &tx);
        assert_eq!(drain(&mut rx), [line("hello"), Input::Eof]);
    }

    #[test]
    fn an_entered_line_is_counted_in_rows() {
        assert_eq!(entered_rows("alice> ", "hi", 80), Some(1));
        assert_eq!(entered_rows("alice> ", &"x".repeat(72), 80), Some(1));
        // Up to the right edge exactly: the cursor is on the row below.
        assert_eq!(entered_rows("alice> ", &"x".repeat(73), 80), Some(2));
        assert_eq!(entered_rows("alice> ", &"x".repeat(74), 80), Some(2));
        assert_eq!(entered_rows("bob> ", &"y".repeat(35), 40), Some(2));
        // Wide characters take two columns; one that does not fit goes to the next row.
        assert_eq!(entered_rows("bob> ", &"字".repeat(17), 40), Some(1));
        assert_eq!(entered_rows("bob> ", &"字".repeat(18), 40), Some(2));
        assert_eq!(entered_rows("bob> ", &"字".repeat(36), 40), Some(2));
        // 17 on the first row, 20 filling the second to its edge.
        assert_eq!(entered_rows("bob> ", &"字".repeat(37), 40), Some(3));
        assert_eq!(entered_rows("bob> ", &"字".repeat(37), 80), Some(1));
        // A pasted entry: its further lines start at the left edge.
        assert_eq!(entered_rows("alice> ", "one\ntwo\n\nfour", 80), Some(4));
        assert_eq!(
            entered_rows("alice> ", &format!("one\n{}", "y".repeat(81)), 80),
            Some(3)
        );
        assert_eq!(entered_rows("alice> ", "one\rtwo", 80), None);
    }

    #[test]
    fn plain_input_replaces_invalid_utf8() {
        let (tx, mut rx) = unbounded_channel();
        let stdin: &[u8] = b"caf\xc3\xa9 \xff!\n";
        read_plain(stdin, &tx);
        assert_eq!(drain(&mut rx), [line("café \u{fffd}!"), Input::Eof]);
    }

    #[test]
    fn plain_input_stops_when_nobody_listens() {
        let (tx, rx) = unbounded_channel();
        drop(rx);
        // Must return instead of reading an endless stdin.
        read_plain(io::BufReader::new(io::repeat(b'\n')), &tx);
    }

    /// A printer thread writing into a vector, as the real one writes to the terminal.
    fn recording_printer(color: bool) -> (OutputSender, Arc<Mutex<Vec<String>>>) {
        let written = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&written);
        let output = spawn_printer(color, mpsc::channel().0, move |line, _| {
            lock(&sink).push(line);
            Ok(())
        });
        (output, written)
    }

    #[test]
    fn flush_waits_for_every_earlier_line_in_order() {
        let (output, written) = recording_printer(false);
        let other = output.clone();
        for i in 0..100 {
            output.print(&Output::Info(format!("line {i}")));
            other.print(&Output::Notice(format!("notice {i}")));
        }
        output.flush();
        let written = lock(&written).clone();
        assert_eq!(written.len(), 200);
        for (i, pair) in written.chunks(2).enumerate() {
            // Each line is "HH:MM " then the body.
            assert_eq!(&pair[0][6..], format!("line {i}"));
            assert_eq!(&pair[1][6..], format!("-!- notice {i}"));
        }
    }

    #[test]
    fn printed_lines_are_rendered_and_sanitized() {
        let (plain, plain_written) = recording_printer(false);
        let evil = Output::Group {
            nick: "mallory".into(),
            text: "\u{1b}]0;owned\u{7}hi\u{1b}[2J".into(),
        };
        plain.print(&evil);
        plain.flush();
        let line = lock(&plain_written).pop().unwrap();
        assert!(line.ends_with(" <mallory> hi"), "{line:?}");
        assert!(!line.contains('\u{1b}'), "{line:?}");

        let (coloured, coloured_written) = recording_printer(true);
        coloured.print(&evil);
        coloured.flush();
        assert!(lock(&coloured_written).pop().unwrap().contains('\u{1b}'));
    }

    #[test]
    fn a_failing_sink_does_not_stop_the_printer() {
        let (queue_tx, queue) = mpsc::channel();
        let mut attempts = 0;
        let (done, flushed) = mpsc::channel();
        queue_tx
            .send(ToPrinter::Line(1, "a".into(), false))
            .unwrap();
        queue_tx.send(ToPrinter::Line(2, "b".into(), true)).unwrap();
        queue_tx.send(ToPrinter::Flush(done, 2)).unwrap();
        drop(queue_tx);
        run_printer(&queue, &PrinterState::default(), |_, _| {
            attempts += 1;
            Err(io::Error::from(io::ErrorKind::BrokenPipe))
        });
        assert_eq!(attempts, 2);
        assert_eq!(flushed.try_recv(), Ok(()));
    }

    /// A line that could not be written to standard output (its reader gone) was not shown:
    /// neither it nor any later line counts as written, so the messages among them are shown
    /// at the next start. An error line that could not be written does not count.
    #[test]
    fn lines_after_a_failed_write_do_not_count_as_written() {
        let (queue_tx, queue) = mpsc::channel();
        let (done, flushed) = mpsc::channel();
        for (n, line, error) in [(1, "ok", false), (2, "err", true), (3, "ok", false)] {
            queue_tx
                .send(ToPrinter::Line(n, line.into(), error))
                .unwrap();
        }
        queue_tx
            .send(ToPrinter::Line(4, "fails".into(), false))
            .unwrap();
        queue_tx
            .send(ToPrinter::Line(5, "ok".into(), false))
            .unwrap();
        queue_tx.send(ToPrinter::Flush(done, 6)).unwrap();
        drop(queue_tx);
        let state = PrinterState::default();
        run_printer(&queue, &state, |line, error| {
            if error || line == "fails" {
                Err(io::Error::from(io::ErrorKind::BrokenPipe))
            } else {
                Ok(())
            }
        });
        assert_eq!(state.written.load(Ordering::Acquire), 3);
        assert_eq!(flushed.try_recv(), Ok(()), "the flush is still answered");
    }

    /// A printer whose sink blocks on its first line until released (the terminal under
    /// Ctrl-S), and what it wrote: each line, and whether it went to standard error.
    type Written = Arc<Mutex<Vec<(String, bool)>>>;
    fn stalled_printer() -> (OutputSender, mpsc::Sender<()>, Written) {
        let (release, gate) = mpsc::channel::<()>();
        let written: Written = Arc::default();
        let sink = Arc::clone(&written);
        let output = spawn_printer(false, mpsc::channel().0, move |line, error| {
            if lock(&sink).is_empty() {
                let _ = gate.recv();
            }
            lock(&sink).push((line, error));
            Ok(())
        });
        (output, release, written)
    }

    #[test]
    fn a_stalled_screen_skips_and_counts_lines_instead_of_growing() {
        let (output, release, written) = stalled_printer();
        let line = "x".repeat(1000);
        let total = 2 * MAX_QUEUED_OUTPUT / 1000;
        for _ in 0..total {
            output.print(&Output::Info(line.clone()));
        }
        assert!(output.state.queued.load(Ordering::Acquire) <= MAX_QUEUED_OUTPUT);
        let skipped = output.state.skipped.load(Ordering::Acquire);
        assert!(
            skipped as usize >= total / 3,
            "{skipped} of {total} skipped"
        );
        let mark = output.mark();
        assert_eq!(
            mark, total as u64,
            "every line is numbered, skipped ones too"
        );
        assert!(
            output.reached() < mark,
            "the stalled screen has not written them"
        );
        release.send(()).unwrap();
        output.print(&Output::Info("after the stall".into()));
        output.flush();
        // Everything is written or skipped now, but a skipped line was never seen: the mark
        // stops before the first one, so what it held is not confirmed as shown.
        let first = output.state.first_skipped.load(Ordering::Acquire);
        assert!(first > 0 && first <= mark);
        assert_eq!(output.reached(), first - 1);
        let written: Vec<String> = lock(&written).iter().map(|(l, _)| l.clone()).collect();
        assert_eq!(written.len() as u64 + skipped, total as u64 + 2);
        // Where the gap is: after the lines written before the first skipped one.
        let notice = &written[usize::try_from(first - 1).unwrap()];
        assert!(
            notice.contains(&format!("{skipped} line(s) not shown")),
            "{notice}"
        );
        assert!(written.last().unwrap().ends_with("after the stall"));
    }

    #[test]
    fn with_json_the_count_of_skipped_lines_is_a_json_line_on_standard_output() {
        let (output, release, written) = stalled_printer();
        output.skipped_lines_as(|text| format!("{{\"type\":\"notice\",\"text\":\"{text}\"}}"));
        let line = "x".repeat(1 << 20);
        for _ in 0..8 {
            output.print_raw(line.clone());
        }
        release.send(()).unwrap();
        output.print_raw("{}".into());
        output.flush();
        let written = lock(&written).clone();
        let (notice, error) = written
            .iter()
            .find(|(l, _)| l.contains("not shown"))
            .expect("a notice of the skipped lines");
        assert!(notice.starts_with("{\"type\":\"notice\""), "{notice}");
        assert!(!error, "with the other JSON, not on standard error");
    }

    #[test]
    fn flush_returns_when_the_printer_is_gone() {
        let (lines, queue) = mpsc::channel();
        drop(queue);
        let output = OutputSender {
            lines,
            state: Arc::default(),
            prompt: mpsc::channel().0,
            color: false,
            bell: false,
            wrap: false,
            wrap_errors: false,
        };
        output.print(&Output::Info("dropped".into()));
        output.flush();
    }
}

#[cfg(test)]
mod prompt_tests {
    use super::*;

    #[test]
    fn the_prompt_takes_the_latest_nick_and_peer_list_sent() {
        let (prompt, updates) = mpsc::channel();
        let helper = ChatHelper {
            updates,
            nick: RefCell::new("alice".into()),
            peer_nicks: RefCell::new(Vec::new()),
        };
        let (lines, _queue) = mpsc::channel();
        let output = OutputSender {
            lines,
            state: Arc::default(),
            prompt,
            color: false,
            bell: false,
            wrap: false,
            wrap_errors: false,
        };
        assert_eq!(helper.nick(), "alice");
        output.set_nick("ally");
        output.set_peer_nicks(vec!["bob".into()]);
        output.set_peer_nicks(vec!["bob".into(), "carol".into()]);
        assert_eq!(helper.nick(), "ally");
        assert_eq!(*helper.peer_nicks.borrow(), ["bob", "carol"]);
    }
}
