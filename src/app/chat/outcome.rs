//! How a run went, and the exit code a script gets for it.

/// How a run went, for a script's exit code (see [`Outcome::exit_code`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// A command typed (or piped) was invalid: unknown, misused, or naming a peer or host
    /// that does not exist.
    pub invalid_command: bool,
    /// A message had nobody to go to.
    pub nobody_to_send_to: bool,
    /// Messages still unacknowledged by some recipient here (answering) when the run ended.
    pub undelivered: usize,
    /// Messages still unacknowledged by some recipient that is away (not answering, not heard
    /// in this run, or left) when the run ended: kept for them, delivered when they are back.
    pub kept_for_away: usize,
    /// Messages refused for some recipient, whose queue was full.
    pub refused: usize,
    /// Files (or folders) a script offered that had not arrived when it ended.
    pub files_unfinished: usize,
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
    /// Some messages were not delivered within the wait to a peer that is here.
    pub const UNDELIVERED: u8 = 5;
    /// Every message reached every recipient that is here; some are kept for peers away.
    pub const KEPT_FOR_AWAY: u8 = 6;

    /// The exit code: the first of these that applies — invalid command, nobody to send to,
    /// undelivered to someone here, kept for someone away — else 0.
    pub fn exit_code(&self) -> u8 {
        if self.invalid_command {
            Self::INVALID_COMMAND
        } else if self.nobody_to_send_to {
            Self::NOBODY_TO_SEND_TO
        } else if self.undelivered > 0 || self.refused > 0 || self.files_unfinished > 0 {
            Self::UNDELIVERED
        } else if self.kept_for_away > 0 {
            Self::KEPT_FOR_AWAY
        } else {
            Self::DELIVERED
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_for_peers_away_is_6_unless_someone_here_did_not_take_a_message() {
        let kept = Outcome {
            kept_for_away: 2,
            ..Outcome::default()
        };
        assert_eq!(kept.exit_code(), Outcome::KEPT_FOR_AWAY);
        let also_undelivered = Outcome {
            undelivered: 1,
            ..kept
        };
        assert_eq!(also_undelivered.exit_code(), Outcome::UNDELIVERED);
        let also_refused = Outcome { refused: 1, ..kept };
        assert_eq!(also_refused.exit_code(), Outcome::UNDELIVERED);
        let invalid = Outcome {
            invalid_command: true,
            ..kept
        };
        assert_eq!(invalid.exit_code(), Outcome::INVALID_COMMAND);
        assert_eq!(Outcome::default().exit_code(), Outcome::DELIVERED);
    }
}
