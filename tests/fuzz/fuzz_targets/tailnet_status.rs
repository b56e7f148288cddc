//! Any bytes as the tailscale LocalAPI's status and whois answers.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tailchat::net::tailnet::status;

fuzz_target!(|data: &[u8]| {
    let _ = status::parse_status(data);
    let _ = status::parse_whois(data);
});
