//! How [`Record::Peer`](super::Record::Peer)'s addresses are stored. serde's own encoding of a
//! `SocketAddr` in a binary format drops an IPv6 address's scope id, and a link-local address
//! (`fe80::…%2`), common on a LAN, cannot be reached without it.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};

/// One address as the journal holds it.
#[derive(Serialize, Deserialize)]
enum StoredAddr {
    /// IPv4 address and port.
    V4([u8; 4], u16),
    /// IPv6 address, port, flow info and scope id: all that `SocketAddrV6` holds.
    V6([u8; 16], u16, u32, u32),
}

impl From<&SocketAddr> for StoredAddr {
    fn from(addr: &SocketAddr) -> StoredAddr {
        match addr {
            SocketAddr::V4(a) => StoredAddr::V4(a.ip().octets(), a.port()),
            SocketAddr::V6(a) => {
                StoredAddr::V6(a.ip().octets(), a.port(), a.flowinfo(), a.scope_id())
            }
        }
    }
}

impl From<StoredAddr> for SocketAddr {
    fn from(addr: StoredAddr) -> SocketAddr {
        match addr {
            StoredAddr::V4(ip, port) => SocketAddrV4::new(ip.into(), port).into(),
            StoredAddr::V6(ip, port, flowinfo, scope_id) => {
                SocketAddrV6::new(ip.into(), port, flowinfo, scope_id).into()
            }
        }
    }
}

/// serde `with` hook: writes `addrs` as a sequence of [`StoredAddr`].
pub(super) fn serialize<S: Serializer>(addrs: &[SocketAddr], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(addrs.iter().map(StoredAddr::from))
}

/// serde `with` hook: reads a sequence of [`StoredAddr`].
pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<SocketAddr>, D::Error> {
    let stored = Vec::<StoredAddr>::deserialize(d)?;
    Ok(stored.into_iter().map(SocketAddr::from).collect())
}
