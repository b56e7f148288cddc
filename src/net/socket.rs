//! Socket setup, kept in one place: one UDP socket, dual-stack where possible, with broadcast
//! allowed and a receive buffer large enough for a burst.

use socket2::{Domain, Protocol, Socket, Type};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Receive buffer we ask for: a burst of full-size datagrams must not overflow it while the
/// driver is busy (the kernel may grant less; that is not an error).
const RECV_BUFFER: usize = 1 << 20;

/// A bound socket and what it can reach.
#[derive(Debug)]
pub struct Bound {
    /// The socket, non-blocking, ready for tokio.
    pub socket: std::net::UdpSocket,
    /// Whether it is an IPv6 socket (then IPv4 peers are reached through mapped addresses).
    pub ipv6: bool,
    /// Whether it can reach IPv4 peers.
    pub reaches_v4: bool,
    /// Whether it can reach IPv6 peers.
    pub reaches_v6: bool,
}

/// Binds the UDP socket.
///
/// With no address: `[::]:port` dual-stack, falling back to `0.0.0.0:port` where IPv6 is
/// unavailable. With an address: exactly that address.
///
/// # Errors
/// A message naming the address and saying what to do, e.g. when the port is in use.
pub fn bind(addr: Option<IpAddr>, port: u16) -> Result<Bound, String> {
    let result = match addr {
        None => bind_one(SocketAddr::from((Ipv6Addr::UNSPECIFIED, port)))
            .or_else(|_| bind_one(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)))),
        Some(ip) => bind_one(SocketAddr::new(ip, port)),
    };
    result.map_err(|(at, e)| explain_bind_error(at, &e))
}

/// [`bind`], and with `fallback`, any free port when `port` is in use. Returns the socket and
/// whether it fell back.
///
/// # Errors
/// As [`bind`].
pub fn bind_or_any(
    addr: Option<IpAddr>,
    port: u16,
    fallback: bool,
) -> Result<(Bound, bool), String> {
    match bind(addr, port) {
        Err(e) if fallback && port != 0 && bind_in_use(addr, port) => {
            bind(addr, 0).map(|b| (b, true)).map_err(|_| e)
        }
        other => other.map(|b| (b, false)),
    }
}

/// Whether binding `port` fails because it is in use.
fn bind_in_use(addr: Option<IpAddr>, port: u16) -> bool {
    let at = SocketAddr::new(addr.unwrap_or(IpAddr::V6(Ipv6Addr::UNSPECIFIED)), port);
    let v4 = SocketAddr::new(addr.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)), port);
    [at, v4]
        .into_iter()
        .any(|a| matches!(bind_one(a), Err((_, e)) if e.kind() == io::ErrorKind::AddrInUse))
}

fn bind_one(at: SocketAddr) -> Result<Bound, (SocketAddr, io::Error)> {
    let wrap = |e| (at, e);
    let domain = if at.is_ipv6() {
        Domain::IPV6
    } else {
        Domain::IPV4
    };
    let socket = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP)).map_err(wrap)?;
    let dual = match at.ip() {
        IpAddr::V6(ip) if ip.is_unspecified() => socket.set_only_v6(false).is_ok(),
        _ => false,
    };
    socket.set_broadcast(true).map_err(wrap)?;
    // Best effort: a smaller buffer only means more loss under a burst, which we survive.
    let _ = socket.set_recv_buffer_size(RECV_BUFFER);
    socket.set_nonblocking(true).map_err(wrap)?;
    socket.bind(&at.into()).map_err(wrap)?;
    let ipv6 = at.is_ipv6();
    Ok(Bound {
        socket: socket.into(),
        ipv6,
        reaches_v4: !ipv6
            || dual
            || matches!(at.ip(), IpAddr::V6(ip) if ip.to_ipv4_mapped().is_some()),
        reaches_v6: ipv6,
    })
}

fn explain_bind_error(at: SocketAddr, e: &io::Error) -> String {
    let hint = match e.kind() {
        io::ErrorKind::AddrInUse => format!(
            "another program (perhaps another tailchat) uses UDP port {}; stop it or pick another with --port (or port in the config file)",
            at.port()
        ),
        io::ErrorKind::AddrNotAvailable => {
            "that address is not on this machine; check --bind (see `ip addr`)".to_owned()
        }
        io::ErrorKind::PermissionDenied => {
            "permission denied; ports below 1024 need root, pick another with --port (or port in the config file)".to_owned()
        }
        _ => "check --bind and --port".to_owned(),
    };
    format!("cannot bind UDP {at}: {e} — {hint}")
}

/// The address as people write it: an IPv4-mapped IPv6 address becomes plain IPv4.
pub fn normalize(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

/// The address to hand the socket: IPv4 peers are reached through mapped addresses on an IPv6
/// socket.
pub fn for_socket(addr: SocketAddr, ipv6_socket: bool) -> SocketAddr {
    match addr {
        SocketAddr::V4(v4) if ipv6_socket => {
            SocketAddr::new(IpAddr::V6(v4.ip().to_ipv6_mapped()), v4.port())
        }
        _ => addr,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapped_addresses_are_shown_as_ipv4_and_mapped_back() {
        let v4: SocketAddr = "127.0.0.2:7654".parse().unwrap();
        let mapped: SocketAddr = "[::ffff:127.0.0.2]:7654".parse().unwrap();
        assert_eq!(normalize(mapped), v4);
        assert_eq!(for_socket(v4, true), mapped);
        assert_eq!(for_socket(v4, false), v4);
        let v6: SocketAddr = "[fd7a::1]:7654".parse().unwrap();
        assert_eq!(normalize(v6), v6);
        assert_eq!(for_socket(v6, true), v6);
    }

    #[test]
    fn binding_a_used_port_says_what_to_do() {
        let first = bind(Some("127.0.0.1".parse().unwrap()), 0).unwrap();
        let port = first.socket.local_addr().unwrap().port();
        let err = bind(Some("127.0.0.1".parse().unwrap()), port).unwrap_err();
        assert!(err.contains("cannot bind UDP 127.0.0.1:"), "{err}");
        assert!(err.contains("--port"), "{err}");
    }

    #[test]
    fn a_used_port_falls_back_to_a_free_one_only_when_asked() {
        let lo = Some("127.0.0.1".parse().unwrap());
        let first = bind(lo, 0).unwrap();
        let port = first.socket.local_addr().unwrap().port();
        assert!(bind_or_any(lo, port, false).is_err());
        let (other, fell_back) = bind_or_any(lo, port, true).unwrap();
        assert!(fell_back);
        assert_ne!(other.socket.local_addr().unwrap().port(), port);
    }

    #[test]
    fn default_bind_is_dual_stack() {
        let b = bind(None, 0).unwrap();
        assert!(b.reaches_v4);
    }
}
