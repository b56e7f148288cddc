//! How a run went, and the exit code a script gets for it.

/// How a run went, for a script's exit code (see [`Outcome::exit_code`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// A command typed (or piped) was invalid: unknown, misused, or naming a peer or host
    /// that does not exist.
    pub invalid_command: bool,
    /// A message had nobody to go to.
    pub nobody_to_send_to: bool,
    /// Messages still unacknowledged by some recipient when the run ended.
    pub undelivered: usize,
    /// Messages refused for some recipient, whose queue was full.
    pub refused: usize,
}

impl Outcome {
    /// Everything sent was delivered to every recipient.
    pub const DELIVERED: u8 = 0;
    /// tailchat could not start (socket, data directory, config file); clap's own usage
    /// errors exit 2.
    pub const COULD_NOT_START: u8 = 1;
    /// A command was invalid.
    pub const INVALID_COMMAND: u8 = 3;
    /// A message had nobody to go to.
    pub const NOBODY_TO_SEND_TO: u8 = 4;
    /// Some messages were not delivered within the wait.
    pub const UNDELIVERED: u8 = 5;

    /// The exit code: the first of these that applies — invalid command, nobody to send to,
    /// undelivered — else 0.
    pub fn exit_code(&self) -> u8 {
        if self.invalid_command {
            Self::INVALID_COMMAND
        } else if self.nobody_to_send_to {
            Self::NOBODY_TO_SEND_TO
        } else if self.undelivered > 0 || self.refused > 0 {
            Self::UNDELIVERED
        } else {
            Self::DELIVERED
        }
    }
}
