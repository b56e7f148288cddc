//! LAN discovery, the socket side: which interfaces to announce on, joining the multicast
//! groups, and sending one announcement to every broadcast and multicast address. What to
//! announce and when is the protocol core's business (`Endpoint::poll_announce`).
//!
//! Announcements go, on every interface that is up and not loopback, to:
//! - the IPv4 subnet broadcast address, computed as `ip | !netmask` (if-addrs' own broadcast
//!   field can be wrong) on interfaces that can broadcast — which leaves out point-to-point
//!   tunnels such as `tailscale0`, where broadcast means nothing;
//! - the administratively scoped IPv4 multicast group [`MULTICAST_V4`] on those interfaces;
//! - the link-local IPv6 multicast group [`MULTICAST_V6`] on every such interface where the
//!   group can be joined (that is, where IPv6 is on), chosen by scope id. if-addrs does not
//!   list link-local IPv6 addresses, which are all many LAN interfaces have, so an interface
//!   is tried by its index whatever addresses it lists, and left out if the join fails.
//!
//! Both groups are joined on every such interface, so the socket hears announcements however
//! they were sent. Interfaces are scanned again every few seconds, so a laptop that joins a
//! network is picked up.

use crate::net::socket;
use socket2::SockRef;
use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};
use tokio::net::UdpSocket;

/// The IPv4 group announcements go to: administratively scoped (RFC 2365), so routers keep it
/// inside the site; ".76.54" after the default port.
pub const MULTICAST_V4: Ipv4Addr = Ipv4Addr::new(239, 255, 76, 54);
/// The IPv6 group: link-local scope (ff02::/16), group id after the default port.
pub const MULTICAST_V6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x7654);

/// An IPv4 interface address we can broadcast on.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Lan4 {
    /// Interface name, for messages.
    pub name: String,
    /// Our address on it (also selects the interface for multicast).
    pub ip: Ipv4Addr,
    /// Its subnet broadcast address.
    pub broadcast: Ipv4Addr,
}

/// Where announcements go, from one scan of the interfaces.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Targets {
    /// Broadcast-capable IPv4 interface addresses.
    pub v4: BTreeSet<Lan4>,
    /// Indexes of the interfaces to try IPv6 multicast on, with their names.
    pub v6: BTreeSet<(u32, String)>,
}

/// The subnet broadcast address of `ip` with `netmask`.
pub fn broadcast_of(ip: Ipv4Addr, netmask: Ipv4Addr) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(ip) | !u32::from(netmask))
}

/// Scans the interfaces. An error (no permission, say) gives no targets: discovery is then
/// silent, and manual `/add` still works.
pub fn scan() -> Targets {
    let mut t = Targets::default();
    let Ok(ifaces) = if_addrs::get_if_addrs() else {
        return t;
    };
    // Not loopback, not point-to-point (a tunnel has no one else on it) and operationally up.
    for iface in ifaces
        .into_iter()
        .filter(|i| !i.is_loopback() && !i.is_p2p() && i.is_oper_up())
    {
        match &iface.addr {
            if_addrs::IfAddr::V4(v4) => {
                // No broadcast address: nowhere to announce. A /32 has no one else on it.
                if v4.broadcast.is_some() && v4.prefixlen < 32 {
                    t.v4.insert(Lan4 {
                        name: iface.name.clone(),
                        ip: v4.ip,
                        broadcast: broadcast_of(v4.ip, v4.netmask),
                    });
                }
            }
            if_addrs::IfAddr::V6(_) => {}
        }
        // IPv6 multicast is joined by interface index, whatever addresses are listed.
        if let Some(index) = iface.index {
            t.v6.insert((index, iface.name.clone()));
        }
    }
    t
}

/// The interfaces we announce on and the groups joined so far.
#[derive(Debug)]
pub struct Discovery {
    /// The port the others listen on, where announcements go: ours, or the one we asked
    /// for when we had to take another ([`crate::net::udp::UdpIo::new`]).
    port: u16,
    /// Whether the socket is IPv6 (then IPv4 destinations are mapped).
    ipv6_socket: bool,
    /// The last scan.
    targets: Targets,
    /// Interfaces (by index) where the IPv6 group could not be joined: no IPv6 there, so no
    /// IPv6 announcements either.
    v6_refused: BTreeSet<u32>,
}

impl Discovery {
    /// Discovery announcing to `port` (see the field).
    pub fn new(port: u16, ipv6_socket: bool) -> Self {
        Self {
            port,
            ipv6_socket,
            targets: Targets::default(),
            v6_refused: BTreeSet::new(),
        }
    }

    /// Names of the interfaces announced on, for the user.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .targets
            .v4
            .iter()
            .map(|l| l.name.clone())
            .chain(self.v6_targets().map(|(_, n)| n.clone()))
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// The IPv6 interfaces whose group was joined.
    fn v6_targets(&self) -> impl Iterator<Item = &(u32, String)> {
        let usable = self.ipv6_socket;
        self.targets
            .v6
            .iter()
            .filter(move |(index, _)| usable && !self.v6_refused.contains(index))
    }

    /// Scans again and joins the multicast groups on interfaces that are new. Returns true if
    /// an interface appeared (then it is time to announce).
    pub fn refresh(&mut self, socket: &UdpSocket) -> bool {
        let now = scan();
        let sock = SockRef::from(socket);
        let mut appeared = false;
        for lan in now.v4.difference(&self.targets.v4) {
            appeared = true;
            if let Err(e) = sock.join_multicast_v4(&MULTICAST_V4, &lan.ip) {
                tracing::debug!("cannot join {MULTICAST_V4} on {}: {e}", lan.name);
            }
        }
        for (index, name) in now.v6.difference(&self.targets.v6) {
            if !self.ipv6_socket {
                continue;
            }
            match sock.join_multicast_v6(&MULTICAST_V6, *index) {
                Ok(()) => {
                    appeared = true;
                    self.v6_refused.remove(index);
                }
                Err(e) => {
                    tracing::debug!("cannot join {MULTICAST_V6} on {name}: {e}");
                    self.v6_refused.insert(*index);
                }
            }
        }
        self.targets = now;
        appeared
    }

    /// Sends one announcement everywhere. Failures (an interface that just went away) are
    /// logged and skipped.
    pub async fn announce(&self, socket: &UdpSocket, bytes: &[u8]) {
        let sock = SockRef::from(socket);
        for lan in &self.targets.v4 {
            let to = SocketAddr::new(IpAddr::V4(lan.broadcast), self.port);
            send(socket, bytes, socket::for_socket(to, self.ipv6_socket)).await;
            if sock.set_multicast_if_v4(&lan.ip).is_ok() {
                let to = SocketAddr::new(IpAddr::V4(MULTICAST_V4), self.port);
                send(socket, bytes, socket::for_socket(to, self.ipv6_socket)).await;
            }
        }
        for (index, _) in self.v6_targets() {
            let to = SocketAddrV6::new(MULTICAST_V6, self.port, 0, *index);
            send(socket, bytes, SocketAddr::V6(to)).await;
        }
    }
}

async fn send(socket: &UdpSocket, bytes: &[u8], to: SocketAddr) {
    if let Err(e) = socket.send_to(bytes, to).await {
        tracing::debug!("announcement to {to} failed: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcast_is_computed_from_the_netmask() {
        let ip = Ipv4Addr::new(192, 168, 1, 7);
        assert_eq!(
            broadcast_of(ip, Ipv4Addr::new(255, 255, 255, 0)),
            Ipv4Addr::new(192, 168, 1, 255)
        );
        assert_eq!(
            broadcast_of(Ipv4Addr::new(10, 1, 2, 3), Ipv4Addr::new(255, 255, 240, 0)),
            Ipv4Addr::new(10, 1, 15, 255)
        );
    }

    #[test]
    fn groups_are_scoped_to_the_site_and_the_link() {
        assert!(MULTICAST_V4.is_multicast());
        assert_eq!(MULTICAST_V4.octets()[..2], [239, 255]);
        assert!(MULTICAST_V6.is_multicast());
        assert_eq!(MULTICAST_V6.segments()[0], 0xff02);
    }
}
