//! Any peer text and nick through the terminal renderer: without colour the line holds no
//! control character but the `\n` the renderer puts between rows of a multi-line message;
//! with colour, once the renderer's own SGR sequences are taken out, the same. `sanitize` and
//! `display_nick` are idempotent, and a displayed nick is unchanged by `sanitize`.
#![no_main]

use chrono::NaiveTime;
use libfuzzer_sys::fuzz_target;
use tailchat::ui::render::{display_nick, is_bidi_control, is_invisible, render, sanitize, Output};

/// The SGR sequences render.rs writes (its colour constants).
const OWN: [&str; 11] = [
    "\x1b[1;33m",
    "\x1b[36m",
    "\x1b[31m",
    "\x1b[2m",
    "\x1b[0m",
    "\x1b[32m",
    "\x1b[33m",
    "\x1b[35m",
    "\x1b[92m",
    "\x1b[94m",
    "\x1b[95m",
];

fn check_clean(what: &str, s: &str, allow_newline: bool) {
    for c in s.chars() {
        if c == '\n' && allow_newline {
            continue;
        }
        assert!(!c.is_control(), "{what}: control {c:?} in {s:?}");
        assert!(!is_bidi_control(c), "{what}: bidi control {c:?} in {s:?}");
        assert!(!is_invisible(c), "{what}: invisible {c:?} in {s:?}");
    }
}

fn strip_own(s: &str) -> String {
    let mut s = s.to_owned();
    for seq in OWN {
        s = s.replace(seq, "");
    }
    s
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    // The first half (up to a 0x00) is the nick, the rest the text.
    let (nick, body) = text.split_once('\0').unwrap_or(("bob", &text));
    let s = sanitize(body);
    check_clean("sanitize", &s, false);
    assert_eq!(sanitize(&s), s, "sanitize is not idempotent");
    let n = display_nick(nick);
    check_clean("display_nick", &n, false);
    assert!(!n.is_empty());
    assert_eq!(display_nick(&n), n, "display_nick is not idempotent");
    assert_eq!(sanitize(&n), n, "sanitize changes a displayed nick");

    let time = NaiveTime::from_hms_opt(9, 3, 0).unwrap();
    let outputs = [
        Output::Group {
            nick: nick.into(),
            text: body.into(),
        },
        Output::Direct {
            from: nick.into(),
            to: None,
            text: body.into(),
        },
        Output::Direct {
            from: "me".into(),
            to: Some(nick.into()),
            text: body.into(),
        },
        Output::Action {
            nick: nick.into(),
            text: body.into(),
        },
        Output::Notice(body.into()),
        Output::Error(body.into()),
        Output::Info(body.into()),
        Output::Dated(body.into()),
        Output::Mention(Box::new(Output::Group {
            nick: nick.into(),
            text: body.into(),
        })),
        Output::Late {
            sent: nick.into(),
            message: Box::new(Output::Group {
                nick: nick.into(),
                text: body.into(),
            }),
        },
    ];
    for out in &outputs {
        let plain = render(out, time, false);
        check_clean("render", &plain, true);
        let coloured = render(out, time, true);
        check_clean(
            "render (colour, own SGR taken out)",
            &strip_own(&coloured),
            true,
        );
    }
});
