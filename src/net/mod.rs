//! The network room: the socket, addresses as users type them, LAN discovery, the tailnet's
//! device list, and batched datagram I/O for the protocol core. Imports [`crate::proto`] and nothing else of ours.
//!
//! # Layout
//! - [`socket`]: binding (dual-stack, broadcast, buffer size) and address normalisation.
//! - [`addr`]: `HOST[:PORT]` as users type it, and name resolution.
//! - [`discovery`]: the interfaces to announce on, and the multicast groups.
//! - [`udp`]: [`udp::UdpIo`], which moves datagrams between the socket and an `Endpoint`.
//! - [`tailnet`]: tailscaled's LocalAPI — the tailnet's devices, and who is at an address.

pub mod addr;
pub mod discovery;
pub mod socket;
pub mod tailnet;
pub mod udp;
