//! Whether a line calls us: our nick in it as a word of its own.

/// Whether `text` calls `nick`: the nick as a word of its own, ignoring case (`alice:`,
/// `hi Alice!`, not `malice`).
pub fn mentions(text: &str, nick: &str) -> bool {
    let (text, nick) = (text.to_lowercase(), nick.to_lowercase());
    if nick.is_empty() {
        return false;
    }
    let word_char = |c: char| c.is_alphanumeric() || c == '_';
    text.match_indices(&nick).any(|(at, _)| {
        let before = text.get(..at).and_then(|s| s.chars().next_back());
        let after = text.get(at + nick.len()..).and_then(|s| s.chars().next());
        !before.is_some_and(word_char) && !after.is_some_and(word_char)
    })
}

#[cfg(test)]
mod mention_tests {
    use super::mentions;

    #[test]
    fn a_nick_is_mentioned_as_a_word_in_any_case() {
        for text in [
            "alice: lunch?",
            "hi Alice!",
            "ALICE",
            "ping @alice.",
            "(alice)",
        ] {
            assert!(mentions(text, "alice"), "{text}");
        }
        for text in ["malice", "alices", "alice_2 here", "al ice", ""] {
            assert!(!mentions(text, "alice"), "{text}");
        }
        assert!(mentions("ça va, zoë ?", "Zoë"));
    }
}
