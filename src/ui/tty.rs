//! Leaving the terminal as it was found, however the program ends.
//!
//! rustyline puts the terminal in raw mode (no echo, no line discipline) for each `readline`
//! call and puts it back when the call returns. The readline thread spends its life inside
//! that call and nothing can make it return from another thread, so when the program ends
//! while a prompt is open for any reason but the user ending it (SIGTERM or SIGHUP through
//! the shutdown path, a fatal error returned from `run`, a panic), the process would exit
//! with the terminal still raw: no echo, no line editing, the shell's prompt glued to ours.
//!
//! [`TerminalState::save_interactive`] reads the terminal's attributes (`tcgetattr`) before
//! the first prompt, in interactive mode only, and puts them back (`tcsetattr`) when the
//! returned value is dropped at the end of `run`, and from a panic hook on a panic in any
//! thread. The hook then calls the previous one, so the panic message lands on a terminal
//! that ends its lines again. After a panic on a thread the program survives (the printer,
//! say), the prompt goes on in the restored modes until the next `readline` call sets raw
//! mode again: a garbled line is a smaller harm than a shell left raw if the panic is fatal.
//!
//! Putting back does nothing if the terminal already has the saved attributes: `readline`
//! returned and rustyline restored them (`/quit`, Ctrl-D). Otherwise a prompt was open, so it
//! also ends the prompt line, so that what the shell prints next starts a row of its own, and
//! turns bracketed paste off, which rustyline turns on for each `readline` and off when the
//! call returns. One window stays open: a `readline` call that starts between the putting
//! back and the process exit (a line entered at that very moment) sets raw mode again.

use std::fs::File;
use std::io::{self, IsTerminal, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::panic;
use std::sync::{Arc, Mutex, PoisonError};

use nix::sys::termios::{self, SetArg, Termios};
use tracing::debug;

/// Written before the attributes are put back on a terminal left raw: ends the open prompt
/// line, then turns bracketed paste off (CSI ? 2004 l, what rustyline writes when `readline`
/// returns).
const END_OF_PROMPT: &[u8] = b"\r\n\x1b[?2004l";

/// The terminal's attributes as the program found them, put back when this is dropped and on
/// a panic (see the module documentation).
#[derive(Debug)]
#[must_use = "the terminal is put back when this is dropped, so keep it until the end"]
pub struct TerminalState {
    /// What is saved; the panic hook holds it only weakly, so that once this value is dropped
    /// a later panic leaves the terminal alone.
    saved: Arc<Saved>,
}

/// One terminal's saved attributes and the handles to put them back through.
#[derive(Debug)]
struct Saved {
    /// The terminal whose attributes rustyline changes (standard input), duplicated so that it
    /// stays open whatever becomes of the original descriptor.
    input: File,
    /// Where rustyline writes (standard output), for [`END_OF_PROMPT`]; duplicated likewise.
    output: File,
    /// The attributes found at start. In a mutex because `Termios` is not `Sync` (the panic
    /// hook must be), and held while putting back, so that a panic hook and the drop running
    /// at once do not both end the prompt line.
    attributes: Mutex<Termios>,
}

impl TerminalState {
    /// In interactive mode (standard input and output both terminals, as for
    /// [`crate::ui::terminal::start`]), saves the terminal's attributes and installs the panic
    /// hook. Call it before the first prompt. Returns `None`, changing nothing, when not on a
    /// terminal or when the attributes cannot be read (logged at debug level).
    pub fn save_interactive() -> Option<TerminalState> {
        let (stdin, stdout) = (io::stdin(), io::stdout());
        if !(stdin.is_terminal() && stdout.is_terminal()) {
            return None;
        }
        match TerminalState::save(stdin.as_fd(), stdout.as_fd()) {
            Ok(state) => {
                state.restore_on_panic();
                Some(state)
            }
            Err(e) => {
                debug!("cannot save the terminal's modes ({e}); they are not restored at exit");
                None
            }
        }
    }

    /// Saves the attributes of the terminal `input`; [`END_OF_PROMPT`] goes to `output`.
    ///
    /// # Errors
    /// A descriptor cannot be duplicated, or `input` is not a terminal.
    fn save(input: BorrowedFd<'_>, output: BorrowedFd<'_>) -> io::Result<TerminalState> {
        let input = File::from(input.try_clone_to_owned()?);
        let output = File::from(output.try_clone_to_owned()?);
        let attributes = termios::tcgetattr(&input)?;
        Ok(TerminalState {
            saved: Arc::new(Saved {
                input,
                output,
                attributes: Mutex::new(attributes),
            }),
        })
    }

    /// Installs a panic hook that puts the terminal back while this value lives, then calls
    /// the hook installed before. Apart from `save_interactive`, only the panic test calls
    /// it: hooks are process-wide, and two tests replacing them at once could lose one.
    fn restore_on_panic(&self) {
        let saved = Arc::downgrade(&self.saved);
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if let Some(saved) = saved.upgrade() {
                // Nothing better to do on failure; the panic message follows anyway.
                let _ = saved.restore();
            }
            previous(info);
        }));
    }
}

impl Drop for TerminalState {
    fn drop(&mut self) {
        // A failure (the terminal hung up, SIGHUP) leaves nothing to restore; and this runs on
        // the way out, where a log line could land on the very terminal that failed.
        let _ = self.saved.restore();
    }
}

impl Saved {
    /// Puts the saved attributes back if the terminal's differ, after [`END_OF_PROMPT`].
    /// `TCSANOW`, not `TCSADRAIN` as rustyline uses: waiting for output to drain could hang
    /// the exit, or a panic, on a terminal that stopped reading.
    ///
    /// # Errors
    /// The terminal cannot be read, written or set.
    fn restore(&self) -> io::Result<()> {
        let attributes = self
            .attributes
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if termios::tcgetattr(&self.input)? == *attributes {
            return Ok(());
        }
        let written = (&self.output).write_all(END_OF_PROMPT);
        termios::tcsetattr(&self.input, SetArg::TCSANOW, &attributes)?;
        written
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::pty::{openpty, OpenptyResult};
    use nix::sys::termios::{InputFlags, LocalFlags};
    use std::io::Read;
    use std::os::fd::OwnedFd;
    use std::thread;

    /// A fresh pseudo-terminal, in the kernel's default (canonical, echoing) modes.
    fn pty() -> (File, OwnedFd, Termios) {
        let OpenptyResult { master, slave } = openpty(None, None).expect("openpty");
        let cooked = termios::tcgetattr(&slave).expect("tcgetattr");
        assert!(cooked
            .local_flags
            .contains(LocalFlags::ICANON | LocalFlags::ECHO));
        (File::from(master), slave, cooked)
    }

    /// Sets the modes rustyline's `readline` sets (output processing stays on).
    fn make_raw(terminal: &OwnedFd) {
        let mut raw = termios::tcgetattr(terminal).expect("tcgetattr");
        raw.local_flags
            .remove(LocalFlags::ECHO | LocalFlags::ICANON | LocalFlags::IEXTEN | LocalFlags::ISIG);
        raw.input_flags
            .remove(InputFlags::ICRNL | InputFlags::IXON | InputFlags::BRKINT);
        termios::tcsetattr(terminal, SetArg::TCSANOW, &raw).expect("tcsetattr");
    }

    fn attributes(terminal: &OwnedFd) -> Termios {
        termios::tcgetattr(terminal).expect("tcgetattr")
    }

    /// Writes `marker` on the terminal, then reads from the other side until it arrives, and
    /// returns what came before it with carriage returns dropped (the terminal adds one to
    /// each line feed). Blocks only until the marker arrives, which it does: it was written.
    fn written_before(master: &mut File, terminal: &OwnedFd, marker: &str) -> String {
        File::from(terminal.try_clone().expect("dup"))
            .write_all(marker.as_bytes())
            .expect("write");
        let mut seen = Vec::new();
        let mut buf = [0; 256];
        while !seen.ends_with(marker.as_bytes()) {
            let n = master.read(&mut buf).expect("read");
            seen.extend_from_slice(&buf[..n]);
        }
        seen.truncate(seen.len() - marker.len());
        String::from_utf8_lossy(&seen).replace('\r', "")
    }

    #[test]
    fn dropping_puts_back_a_terminal_left_raw_on_a_line_of_its_own() {
        let (mut master, terminal, cooked) = pty();
        let state = TerminalState::save(terminal.as_fd(), terminal.as_fd()).unwrap();
        make_raw(&terminal);
        drop(state);
        assert_eq!(attributes(&terminal), cooked);
        assert_eq!(
            written_before(&mut master, &terminal, "end"),
            "\n\x1b[?2004l"
        );
    }

    #[test]
    fn dropping_leaves_a_terminal_already_as_found_alone() {
        let (mut master, terminal, cooked) = pty();
        let state = TerminalState::save(terminal.as_fd(), terminal.as_fd()).unwrap();
        drop(state);
        assert_eq!(attributes(&terminal), cooked);
        assert_eq!(written_before(&mut master, &terminal, "end"), "");
    }

    #[test]
    fn a_panic_puts_back_the_terminal_while_the_state_lives() {
        let (_master, terminal, cooked) = pty();
        let state = TerminalState::save(terminal.as_fd(), terminal.as_fd()).unwrap();
        state.restore_on_panic();
        let panic_in_a_thread = || {
            let ended = thread::spawn(|| panic!("deliberate, to test the panic hook")).join();
            assert!(ended.is_err());
        };

        make_raw(&terminal);
        panic_in_a_thread();
        assert_eq!(attributes(&terminal), cooked, "put back by the hook");

        make_raw(&terminal);
        drop(state);
        assert_eq!(attributes(&terminal), cooked, "put back by the drop");

        // Once the state is dropped, the hook is inert: the terminal may be the shell's again.
        make_raw(&terminal);
        let raw = attributes(&terminal);
        panic_in_a_thread();
        assert_eq!(attributes(&terminal), raw);
    }
}
