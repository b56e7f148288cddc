//! The hosts of `/add` and `--peer`: their names looked up off the event loop, then every
//! usable address contacted.

use super::Chat;
use crate::net::addr::{self, HostSpec};
use crate::proto::PeerState;
use crate::ui::present;
use crate::ui::render::Output;
use std::net::SocketAddr;
use std::time::Instant;

/// A finished name lookup for `/add` or `--peer`.
#[derive(Debug)]
pub struct Resolved {
    /// What the user typed, for messages.
    pub spec: HostSpec,
    /// The addresses, or why there are none.
    pub result: Result<Vec<SocketAddr>, String>,
}

impl Chat {
    /// Looks a spec up off the loop; the answer comes back through `resolved_tx`.
    pub fn resolve(&mut self, spec: HostSpec) {
        if self.scripted {
            self.hold_until = Some(Instant::now() + self.wait);
        }
        let tx = self.resolved_tx.clone();
        tokio::spawn(async move {
            let result = addr::resolve(&spec).await;
            let _ = tx.send(Resolved { spec, result });
        });
    }

    /// What is left of a script's hold once a contact it asked for is hopeless: the wait for
    /// its LAN, if it still listens for it.
    fn lan_hold(&self) -> Option<Instant> {
        self.discovery_hold
            .map(|cap| self.hold_until.map_or(cap, |h| h.min(cap)))
    }

    /// A lookup finished: contact every usable address not already connected.
    pub fn on_resolved(&mut self, r: Resolved) {
        let addrs = match r.result {
            Ok(a) => a,
            Err(e) => {
                self.hold_until = self.lan_hold();
                return self.command_error(e);
            }
        };
        let (v4, v6) = self.reaches;
        let usable: Vec<SocketAddr> = addrs
            .into_iter()
            .map(|a| SocketAddr::new(a.ip().to_canonical(), a.port()))
            .filter(|a| if a.is_ipv4() { v4 } else { v6 })
            .collect();
        if usable.is_empty() {
            self.hold_until = self.lan_hold();
            return self.command_error(format!(
                "cannot reach {}: its addresses are of a family this socket does not speak (check --bind)",
                r.spec
            ));
        }
        let peers = self.ep.peers();
        let now = Instant::now();
        let ours = own_addresses(self.own_bind);
        let mut contacted = false;
        for a in &usable {
            if a.port() == self.own_port && ours(a.ip()) {
                self.added_refused = true;
                self.command_error(format!(
                    "{} is this tailchat itself (it listens on port {}) — give the other's port: /add HOST:PORT",
                    present::show_addr(*a),
                    self.own_port
                ));
                continue;
            }
            if let Some(why) = self.tailnet.never_admitted(a.ip()) {
                self.added_refused = true;
                self.command_error(why);
                continue;
            }
            if let Some(p) = peers
                .iter()
                .find(|p| p.state == PeerState::Online && p.addrs.contains(a))
            {
                let name = self.known_names(&peers).name_of(p.id, &p.nick);
                self.print(Output::Notice(format!(
                    "already connected to {name} at {}",
                    present::show_addr(*a)
                )));
                continue;
            }
            self.ep.add_address(now, *a);
            self.script_added.insert(*a);
            contacted = true;
            self.tailnet.user_added(*a);
            self.print(Output::Notice(format!(
                "contacting {}…",
                present::show_addr(*a)
            )));
        }
        if !contacted {
            // Already connected, or ourselves: a script has no contact to wait for.
            self.hold_until = self.lan_hold();
        }
    }
}

/// Whether an IP address is where our socket listens: the one `bound` names (`--bind`), else
/// any of this machine's — loopback, unspecified, or an address of one of its interfaces (read
/// once per call of the returned function's maker). So with `--bind 127.0.0.1`, another
/// tailchat on 127.0.0.2 and the same port is not taken for ourselves.
fn own_addresses(bound: Option<std::net::IpAddr>) -> impl Fn(std::net::IpAddr) -> bool {
    let local: Vec<std::net::IpAddr> = match bound {
        Some(ip) => vec![ip.to_canonical()],
        None => if_addrs::get_if_addrs()
            .map(|ifaces| ifaces.into_iter().map(|i| i.ip()).collect())
            .unwrap_or_default(),
    };
    move |ip| {
        let ip = ip.to_canonical();
        match bound {
            Some(_) => local.contains(&ip),
            None => ip.is_loopback() || ip.is_unspecified() || local.contains(&ip),
        }
    }
}
