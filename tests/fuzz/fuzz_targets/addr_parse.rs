//! Any text as a `HOST[:PORT]` typed by the user: a value or a message, never a panic; a
//! parsed address prints as something that parses back to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tailchat::net::addr::{self, Host};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(spec) = addr::parse(text, 7654) {
        if let Host::Ip(_) = spec.host {
            let shown = spec.to_string();
            assert_eq!(addr::parse(&shown, 1).as_ref(), Ok(&spec), "{shown}");
        }
    }
});
