//! Any name from a peer made safe for our disk: no output component holds `/`, `\`, a
//! control character, is empty, `.` or `..`, or is over 255 bytes (with room for ` (n)` and
//! `.part`), and a path is never absolute.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::{Component, Path};
use tailchat::transfer::names;

fn check_component(c: &str) {
    assert!(!c.is_empty(), "empty component");
    assert!(c != "." && c != "..", "dot component {c:?}");
    assert!(!c.contains(['/', '\\', '\0']), "separator in {c:?}");
    assert!(
        !c.chars().any(char::is_control),
        "control character in {c:?}"
    );
    assert!(
        !c.chars().any(tailchat::ui::render::is_bidi_control),
        "bidi control in {c:?}"
    );
    assert!(
        !c.chars().any(tailchat::ui::render::is_invisible),
        "invisible in {c:?}"
    );
    assert_eq!(c.trim_start(), c, "leading whitespace in {c:?}");
    assert_eq!(c.trim_end(), c, "trailing whitespace in {c:?}");
    // ` (n)` for n up to 99 999 is what names.rs leaves room for (8 bytes); n stays under
    // MAX_FILES (5000) in a plan, and `unique` would need 100 000 files on the disk.
    let numbered = names::numbered(c, 99_999);
    let with_part = format!("{numbered}{}", names::PART_SUFFIX);
    assert!(
        with_part.len() <= 255,
        "{} bytes: {with_part:?}",
        with_part.len()
    );
    let p = Path::new(c);
    assert!(
        p.components().count() == 1 && matches!(p.components().next(), Some(Component::Normal(_))),
        "not one plain component: {c:?}"
    );
}

fuzz_target!(|data: &[u8]| {
    let s = String::from_utf8_lossy(data);
    if let Some(c) = names::sanitize_component(&s) {
        check_component(&c);
        assert_eq!(
            names::sanitize_component(&c).as_deref(),
            Some(c.as_str()),
            "not idempotent"
        );
    }
    if let Some(parts) = names::sanitize_path(&s) {
        assert!(!parts.is_empty() && parts.len() <= names::MAX_DEPTH);
        for c in &parts {
            check_component(c);
        }
        let joined: std::path::PathBuf = parts.iter().collect();
        assert!(joined.is_relative());
        assert!(joined
            .components()
            .all(|c| matches!(c, Component::Normal(_))));
    }
    let name = names::sanitize_name(&s);
    check_component(&name);
});
