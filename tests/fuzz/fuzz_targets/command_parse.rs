//! Any typed line into the command parser, and any line into the JSON command parser (the
//! control socket, `--json`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let line = String::from_utf8_lossy(data);
    let _ = tailchat::ui::command::parse(&line);
    let _ = tailchat::app::json::parse_command(&line);
});
