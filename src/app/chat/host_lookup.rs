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
        for a in &usable {
            if let Some(p) = peers
                .iter()
                .find(|p| p.state == PeerState::Online && p.addrs.contains(a))
            {
                self.print(Output::Notice(format!(
                    "already connected to {} at {}",
                    p.nick,
                    present::show_addr(*a)
                )));
                continue;
            }
            self.ep.add_address(now, *a);
            self.tailnet.user_added(*a);
            self.print(Output::Notice(format!(
                "contacting {}…",
                present::show_addr(*a)
            )));
        }
    }
}
