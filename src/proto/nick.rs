//! The one rule for nicks, shared by the wire decoder, [`crate::proto::Endpoint::set_nick`] and
//! the user interface.
//!
//! A nick is what people type after `/msg`, so it must be one word that displays as itself:
//! 1 to [`MAX_NICK_CHARS`] characters and at most [`MAX_NICK_BYTES`] bytes of UTF-8 (the
//! characters bound gives non-Latin nicks the same room; the bytes bound is the wire's, which
//! 32 emoji would pass), with no whitespace, no control character, no bidi override or isolate
//! (which would make it display as another nick), and no [`NICK_ID_SEPARATOR`] (`#`), which
//! the user interface uses to tell apart peers with the same nick (`/msg bob#1a2b hi`).
//!
//! On the wire the rule is the protocol's ([`is_valid_wire_nick`], `docs/PROTOCOL.md` §3.4):
//! 1 to [`MAX_NICK_BYTES`] bytes, no `#`. Our own nick keeps to the stricter rule above (a
//! subset, so everything we send is valid); what others chose is accepted and shown safely by
//! the user interface. A `Hello`, `HelloReply`, `Announce`, `Nick` or `Peers` frame whose nick
//! breaks the wire rule is malformed: the whole datagram is dropped and counted
//! ([`crate::proto::Stats::malformed`]), as for any other malformed frame.

/// Longest nick, in characters (not bytes, so non-Latin nicks get the same room).
pub const MAX_NICK_CHARS: usize = 32;
/// Longest nick, in bytes of UTF-8: the wire's limit.
pub const MAX_NICK_BYTES: usize = 64;
/// The character that separates a nick from a peer-id prefix where nicks are shared
/// (`bob#1a2b`); never part of a nick.
pub const NICK_ID_SEPARATOR: char = '#';
/// What a valid nick is, for the user (error messages).
pub const NICK_RULE: &str = "a nick is 1 to 32 characters (at most 64 bytes), without spaces, \
     control characters or '#'";

/// Whether `nick` follows the rule described in the module documentation.
#[must_use]
pub fn is_valid_nick(nick: &str) -> bool {
    nick_problem(nick).is_none()
}

/// What breaks the rule in `nick`, said so that the user can fix it (a character by its code
/// point, never as itself); `None` when nothing does: [`is_valid_nick`].
#[must_use]
pub fn nick_problem(nick: &str) -> Option<String> {
    let chars = nick.chars().count();
    let first = |f: fn(char) -> bool| nick.chars().find(|c| f(*c));
    Some(if nick.is_empty() {
        "a nick cannot be empty".to_owned()
    } else if first(char::is_whitespace).is_some() {
        "no spaces in a nick: it is one word (bob_smith, not bob smith)".to_owned()
    } else if nick.contains(NICK_ID_SEPARATOR) {
        "no '#' in a nick: it separates a nick from an id (bob#1d79e0c2)".to_owned()
    } else if let Some(c) = first(char::is_control) {
        format!(
            "U+{:04X} is a control character: not in a nick",
            u32::from(c)
        )
    } else if let Some(c) = first(is_bidi_control) {
        format!(
            "U+{:04X} changes the direction of the text (it would make the nick read as another): not in a nick",
            u32::from(c)
        )
    } else if chars > MAX_NICK_CHARS {
        format!("{chars} characters is too long (at most {MAX_NICK_CHARS})")
    } else if nick.len() > MAX_NICK_BYTES {
        format!(
            "{} bytes of UTF-8 is too long (at most {MAX_NICK_BYTES}: an emoji takes 4)",
            nick.len()
        )
    } else {
        return None;
    })
}

/// Whether a nick received is valid on the wire (`docs/PROTOCOL.md` §3.4): 1 to
/// [`MAX_NICK_BYTES`] bytes (it is UTF-8, as every string decoded), without
/// [`NICK_ID_SEPARATOR`]. Whitespace, control and bidi characters are the display's business.
#[must_use]
pub fn is_valid_wire_nick(nick: &str) -> bool {
    (1..=MAX_NICK_BYTES).contains(&nick.len()) && !nick.contains(NICK_ID_SEPARATOR)
}

/// Whether `c` is a bidi embedding, override or isolate control (the "Trojan Source" set).
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wire_accepts_what_others_may_choose_but_not_hash_or_too_long() {
        for nick in ["bob smith", "a\u{7}b", "x\u{202e}y", "😀", "alice"] {
            assert!(is_valid_wire_nick(nick), "{nick:?}");
        }
        assert!(!is_valid_wire_nick(""));
        assert!(!is_valid_wire_nick("c#dev"));
        assert!(is_valid_wire_nick(&"a".repeat(MAX_NICK_BYTES)));
        assert!(!is_valid_wire_nick(&"a".repeat(MAX_NICK_BYTES + 1)));
        // Everything we may choose is valid on the wire.
        for nick in ["alice", "Zoë_世界", &"é".repeat(MAX_NICK_CHARS)] {
            assert!(is_valid_nick(nick) && is_valid_wire_nick(nick));
        }
    }

    #[test]
    fn ordinary_nicks_are_valid() {
        for nick in [
            "a",
            "alice",
            "Zoë_世界",
            "n0",
            "bob-2",
            "a.b",
            "42",
            "o'brien",
        ] {
            assert!(is_valid_nick(nick), "{nick:?}");
        }
    }

    #[test]
    fn length_is_bounded_in_characters_and_in_bytes() {
        assert!(!is_valid_nick(""));
        assert!(is_valid_nick(&"é".repeat(MAX_NICK_CHARS)));
        assert!(!is_valid_nick(&"é".repeat(MAX_NICK_CHARS + 1)));
        // 16 emoji are 64 bytes; 17 are 17 characters but 68 bytes.
        assert!(is_valid_nick(&"😀".repeat(16)));
        assert!(!is_valid_nick(&"😀".repeat(17)));
    }

    #[test]
    fn characters_that_would_not_display_as_one_word_are_refused() {
        for nick in [
            "bob smith",
            "a\tb",
            "a\u{a0}b",   // no-break space is whitespace
            "a\u{7}b",    // C0 control
            "a\u{85}b",   // C1 control
            "a\u{1b}[2J", // an escape sequence
            "\u{202e}evil",
            "a\u{2066}b", // bidi isolate
        ] {
            assert!(!is_valid_nick(nick), "{nick:?}");
        }
    }

    #[test]
    fn the_id_separator_is_not_part_of_a_nick() {
        assert!(!is_valid_nick("c#dev"));
        assert!(!is_valid_nick("#"));
        assert!(!is_valid_nick("bob#"));
    }

    #[test]
    fn the_rule_text_states_the_bounds() {
        assert!(NICK_RULE.contains(&MAX_NICK_CHARS.to_string()));
        assert!(NICK_RULE.contains(&MAX_NICK_BYTES.to_string()));
        assert!(NICK_RULE.contains(NICK_ID_SEPARATOR));
    }
}
