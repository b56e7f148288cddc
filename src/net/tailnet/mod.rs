//! Tailscale's LocalAPI, the tailnet side of discovery: tailscaled serves HTTP on a Unix
//! socket, and two of its answers are all tailchat reads — the device list
//! (`GET /localapi/v0/status`, what `tailscale status --json` prints) to know where tailchat
//! might run, and `GET /localapi/v0/whois?addr=IP:PORT` to know who is at an address.
//!
//! # Layout
//! - [`localapi`]: [`LocalApi`], one HTTP/1.1 GET over the socket under a time limit, and
//!   [`LocalApiError`], which says in one line what went wrong and what to do.
//! - [`status`]: the JSON of both answers, read into [`Status`], [`Device`] and [`Owner`];
//!   pure, tested on fixtures with the real field names.
//! - `fake` (tests only): a LocalAPI on a Unix socket that answers, refuses, hangs or talks
//!   nonsense on purpose.

pub mod localapi;
pub mod status;

#[cfg(test)]
pub(crate) mod fake;

pub use localapi::{LocalApi, LocalApiError};
pub use status::{Device, Owner, Status};

use std::net::IpAddr;

/// Where tailscaled listens on Linux (tailscale's `paths.DefaultTailscaledSocket`).
pub const DEFAULT_SOCKET: &str = "/var/run/tailscale/tailscaled.sock";

/// Whether `ip` is in the ranges Tailscale assigns: 100.64.0.0/10 (the CGNAT range) and
/// fd7a:115c:a1e0::/48. An IPv4-mapped IPv6 address counts as its IPv4 address.
pub fn in_tailnet_range(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            a == 100 && (64..128).contains(&b)
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            s[0] == 0xfd7a && s[1] == 0x115c && s[2] == 0xa1e0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tailnet_ranges() {
        for yes in [
            "100.64.0.1",
            "100.127.255.254",
            "fd7a:115c:a1e0::1",
            "fd7a:115c:a1e0:ab12::7",
            "::ffff:100.100.1.2",
        ] {
            assert!(in_tailnet_range(yes.parse().unwrap()), "{yes}");
        }
        for no in [
            "100.63.255.255",
            "100.128.0.1",
            "10.0.0.1",
            "fd7a:115c:a1e1::1",
            "::1",
        ] {
            assert!(!in_tailnet_range(no.parse().unwrap()), "{no}");
        }
    }
}
