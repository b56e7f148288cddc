//! Batched datagram I/O for an [`Endpoint`]: the bound socket and LAN discovery, moving bytes
//! between the kernel and the protocol core and nothing else. What the bytes mean, and when
//! they may leave, is decided elsewhere; this module only promises not to block the caller
//! longer than the kernel makes it.

use crate::net::discovery::Discovery;
use crate::net::socket::{self, Bound};
use crate::proto::Endpoint;

use std::io;
use std::net::SocketAddr;
use std::time::Instant;
use tokio::net::UdpSocket;

/// Largest datagram we read: anything bigger than the protocol allows is still read whole (so
/// it is counted and dropped by the core, not truncated into something that parses).
const RECV_BUFFER: usize = 65536;

/// The socket, its discovery, and what went wrong sending (logged, never fatal).
#[derive(Debug)]
pub struct UdpIo {
    /// The bound socket, registered with tokio.
    socket: UdpSocket,
    /// Whether the socket is IPv6 (IPv4 peers then use mapped addresses).
    ipv6: bool,
    /// Which address families the socket reaches, (v4, v6).
    reaches: (bool, bool),
    /// LAN announcements, when on.
    discovery: Option<Discovery>,
    /// Where datagrams are read into.
    buf: Vec<u8>,
    /// Datagrams the kernel refused to send.
    send_errors: u64,
}

impl UdpIo {
    /// Takes over a bound socket; with `discovery`, scans the interfaces and joins the
    /// multicast groups at once. Announcements go to `peers_port`, the port the others listen
    /// on: ours, unless we had to take another one because it was in use (a script beside a
    /// running tailchat), when the others still listen on the one asked for.
    ///
    /// # Errors
    /// Only if the socket cannot be handed to tokio (no runtime, or the descriptor is bad).
    pub fn new(bound: Bound, discovery: bool, peers_port: u16) -> io::Result<Self> {
        let socket = UdpSocket::from_std(bound.socket)?;
        let mut discovery = discovery.then(|| Discovery::new(peers_port, bound.ipv6));
        if let Some(d) = discovery.as_mut() {
            d.refresh(&socket);
        }
        Ok(Self {
            socket,
            ipv6: bound.ipv6,
            reaches: (bound.reaches_v4, bound.reaches_v6),
            discovery,
            buf: vec![0; RECV_BUFFER],
            send_errors: 0,
        })
    }

    /// The local port.
    ///
    /// # Errors
    /// When the kernel cannot say (not expected for a bound socket).
    pub fn port(&self) -> io::Result<u16> {
        Ok(self.socket.local_addr()?.port())
    }

    /// Which address families the socket reaches, (v4, v6).
    pub fn reaches(&self) -> (bool, bool) {
        self.reaches
    }

    /// Names of the interfaces announced on, when discovery is on (`None` when it is off).
    pub fn discovery_interfaces(&self) -> Option<Vec<String>> {
        self.discovery.as_ref().map(Discovery::names)
    }

    /// Completes when a datagram may be waiting (readiness can be spurious: [`Self::receive`]
    /// then takes nothing).
    pub async fn readable(&self) {
        if let Err(e) = self.socket.readable().await {
            tracing::debug!("socket readiness error: {e}");
        }
    }

    /// Hands every datagram already waiting, up to `max`, to `ep`; returns how many.
    pub fn receive(&mut self, ep: &mut Endpoint, now: Instant, max: usize) -> usize {
        self.receive_admitted(ep, now, max, &mut |_| true)
    }

    /// [`Self::receive`], except that a datagram whose source `admit` refuses is dropped
    /// before the core sees it (still counted in the return value, so a flood of refused
    /// datagrams cannot keep the caller here). The caller decides who is admitted; this
    /// module only asks.
    pub fn receive_admitted(
        &mut self,
        ep: &mut Endpoint,
        now: Instant,
        max: usize,
        admit: &mut dyn FnMut(SocketAddr) -> bool,
    ) -> usize {
        let mut taken = 0;
        while taken < max {
            match self.socket.try_recv_from(&mut self.buf) {
                Ok((n, from)) => {
                    let from = socket::normalize(from);
                    if admit(from) {
                        let bytes = self.buf.get(..n).unwrap_or_default();
                        ep.handle_datagram(now, from, bytes);
                    }
                    taken += 1;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                // ICMP errors surface here on some systems; the protocol copes. Counted as
                // taken so a stream of them cannot spin this loop forever.
                Err(e) => {
                    tracing::debug!("receive error: {e}");
                    taken += 1;
                }
            }
        }
        taken
    }

    /// Sends everything `ep` has to send: announcements (when discovery is on), then
    /// datagrams. A datagram the kernel refuses is counted and logged; the protocol resends.
    pub async fn transmit(&mut self, ep: &mut Endpoint) {
        while let Some(bytes) = ep.poll_announce() {
            if let Some(d) = &self.discovery {
                d.announce(&self.socket, &bytes).await;
            }
        }
        while let Some(t) = ep.poll_transmit() {
            let to = socket::for_socket(t.to, self.ipv6);
            if let Err(e) = self.socket.send_to(&t.bytes, to).await {
                self.send_errors += 1;
                tracing::debug!("cannot send to {to}: {e}");
            }
        }
    }

    /// Scans the interfaces again (when discovery is on); true when one appeared, so it is
    /// time to announce.
    pub fn rescan(&mut self) -> bool {
        let socket = &self.socket;
        self.discovery.as_mut().is_some_and(|d| d.refresh(socket))
    }

    /// Whether LAN discovery runs (interfaces are worth rescanning).
    pub fn discovering(&self) -> bool {
        self.discovery.is_some()
    }

    /// Datagrams the kernel refused to send so far.
    pub fn send_errors(&self) -> u64 {
        self.send_errors
    }
}
