//! When to ask the protocol core to contact a tailnet device: which devices are worth it
//! ([`targets`]), and a schedule that keeps a large tailnet cheap ([`ProbePlan`]). Pure: time
//! is passed in.
//!
//! `Endpoint::add_address` starts hellos to an address until it answers. Most devices of a
//! tailnet do not run tailchat, so starting them all at once would be a flood, and starting a
//! silent one again and again a waste. So:
//! - starts are rationed by a token bucket: [`START_BURST`] at once (a small tailnet is
//!   covered in the first second), then one every [`START_EVERY`];
//! - an address that did not answer is started again only after a back-off per address,
//!   [`RETRY_AFTER`], ever longer, up to [`RETRY_MAX`];
//! - an address some peer is already online at is not started at all;
//! - devices that more likely run tailchat go first: ours, then other people's computers,
//!   then phones and tablets.
//!
//! The bound holds with what the core does with a start: hellos at 0, 0.25, 0.75, 1.75, …
//! 31.75 s (8 in the first 32 s), then one every 30 s while it stays among the core's 64
//! probes. So a tailnet of any size costs at most 8 hellos per start — 2 a second at one start
//! every 4 s — plus one per 30 s for each of the 64 probes the core keeps: about 4 datagrams a
//! second at the very worst, falling to what the core keeps once every device has been tried.

use crate::net::tailnet::{Device, Status};
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// Starts allowed at once (the bucket's size): a tailnet this small is tried in full at start.
pub const START_BURST: u32 = 16;
/// One more start is allowed this often.
pub const START_EVERY: Duration = Duration::from_secs(4);
/// After the n-th start of an address that then did not answer, the next waits this long.
pub const RETRY_AFTER: [Duration; 4] = [
    Duration::from_secs(30),
    Duration::from_secs(120),
    Duration::from_secs(600),
    Duration::from_secs(1800),
];
/// The longest wait between starts of a silent address.
pub const RETRY_MAX: Duration = Duration::from_secs(3600);
/// An address no longer listed (device offline, or removed) is forgotten after this long; until
/// then it keeps its back-off, so a device that flaps does not reset it.
pub const FORGET_AFTER: Duration = Duration::from_secs(3600);

/// Operating systems tailchat does not run on (as tailscale names them): tried last.
const HANDHELD: [&str; 3] = ["iOS", "android", "tvOS"];

/// The addresses worth contacting in `status`, each with its rank (lower goes first): each
/// online device that has not expired and that we can reach, at one address — IPv4 when the
/// socket reaches IPv4 and the device has one, else IPv6 — on `port`, and that `wanted`
/// accepts (the allow-list: a device whose answers would be dropped is not asked). Devices
/// only there because they belong to someone we shared with (`ShareeNode`) cannot be reached
/// from here, and are left out; they can still contact us.
pub fn targets(
    status: &Status,
    reaches: (bool, bool),
    port: u16,
    wanted: impl Fn(&Device, IpAddr) -> bool,
) -> Vec<(SocketAddr, u8)> {
    let mine: Vec<IpAddr> = status.me.iter().flat_map(|d| d.ips.clone()).collect();
    let my_login = status
        .me
        .as_ref()
        .and_then(|d| d.owner.as_ref())
        .map(|u| u.login_name.as_str());
    status
        .devices
        .iter()
        .filter(|d| d.online && !d.expired && !d.sharee)
        .filter_map(|d| {
            let ip = address_for(d, reaches)?;
            if mine.contains(&ip) || !wanted(d, ip) {
                return None;
            }
            let ours = my_login.is_some()
                && d.tags.is_empty()
                && d.owner.as_ref().map(|u| u.login_name.as_str()) == my_login;
            let rank = if HANDHELD.contains(&d.os.as_str()) {
                2
            } else if ours {
                0
            } else {
                1
            };
            Some((SocketAddr::new(ip, port), rank))
        })
        .collect()
}

/// The one address of `d` to contact.
fn address_for(d: &Device, (v4, v6): (bool, bool)) -> Option<IpAddr> {
    let first = |want_v4: bool| d.ips.iter().copied().find(|ip| ip.is_ipv4() == want_v4);
    (if v4 { first(true) } else { None }).or_else(|| if v6 { first(false) } else { None })
}

/// One address of the plan.
#[derive(Clone, Debug)]
struct Planned {
    /// Lower goes first.
    rank: u8,
    /// In the latest device list.
    listed: bool,
    /// When it was last in the device list.
    last_listed: Instant,
    /// Starts since it last had a peer at it.
    starts: u32,
    /// Not started again before this.
    next: Instant,
}

/// The schedule of starts (see the module documentation).
#[derive(Clone, Debug)]
pub struct ProbePlan {
    /// Every address listed in the last [`FORGET_AFTER`].
    addrs: BTreeMap<SocketAddr, Planned>,
    /// Starts allowed now.
    tokens: u32,
    /// When the bucket last gained a token (or was full).
    refilled: Instant,
}

impl ProbePlan {
    /// A plan with a full bucket at `now`.
    pub fn new(now: Instant) -> Self {
        Self {
            addrs: BTreeMap::new(),
            tokens: START_BURST,
            refilled: now,
        }
    }

    /// A new device list: its addresses, with their ranks (see [`targets`]).
    pub fn update(&mut self, now: Instant, targets: &[(SocketAddr, u8)]) {
        for p in self.addrs.values_mut() {
            p.listed = false;
        }
        for (addr, rank) in targets {
            let p = self.addrs.entry(*addr).or_insert(Planned {
                rank: *rank,
                listed: true,
                last_listed: now,
                starts: 0,
                next: now,
            });
            p.rank = *rank;
            p.listed = true;
            p.last_listed = now;
        }
        self.addrs
            .retain(|_, p| p.listed || now.saturating_duration_since(p.last_listed) < FORGET_AFTER);
    }

    /// The addresses to start now, best first; `connected` says whether a peer is online at an
    /// address (then it is not started, and its back-off starts over).
    pub fn due(&mut self, now: Instant, connected: impl Fn(SocketAddr) -> bool) -> Vec<SocketAddr> {
        self.refill(now);
        let mut ready: Vec<(u8, Instant, SocketAddr)> = Vec::new();
        for (addr, p) in self.addrs.iter_mut().filter(|(_, p)| p.listed) {
            if connected(*addr) {
                p.starts = 0;
                p.next = now + RETRY_AFTER[0];
            } else if p.next <= now {
                ready.push((p.rank, p.next, *addr));
            }
        }
        ready.sort();
        let take = ready.len().min(self.tokens as usize);
        let mut started = Vec::with_capacity(take);
        for (_, _, addr) in ready.into_iter().take(take) {
            if let Some(p) = self.addrs.get_mut(&addr) {
                p.starts += 1;
                p.next = now + retry_after(p.starts);
                started.push(addr);
            }
        }
        self.tokens -= take as u32;
        started
    }

    /// When [`Self::due`] may next start something.
    pub fn next_wakeup(&self) -> Option<Instant> {
        let token = if self.tokens > 0 {
            self.refilled
        } else {
            self.refilled + START_EVERY
        };
        self.addrs
            .values()
            .filter(|p| p.listed)
            .map(|p| p.next.max(token))
            .min()
    }

    /// How many addresses are listed.
    pub fn listed(&self) -> usize {
        self.addrs.values().filter(|p| p.listed).count()
    }

    fn refill(&mut self, now: Instant) {
        if self.tokens >= START_BURST {
            self.refilled = now;
            return;
        }
        // Whole tokens, counted in integers: a wake-up exactly at the refill time finds its
        // token (a float could come out a hair short, and the loop would spin until later).
        let gained =
            now.saturating_duration_since(self.refilled).as_nanos() / START_EVERY.as_nanos();
        let gained = u32::try_from(gained).unwrap_or(u32::MAX);
        if gained > 0 {
            self.tokens = self.tokens.saturating_add(gained).min(START_BURST);
            self.refilled = if self.tokens == START_BURST {
                now
            } else {
                self.refilled + START_EVERY * gained
            };
        }
    }
}

/// The wait after the `starts`-th start of an address that does not answer.
pub fn retry_after(starts: u32) -> Duration {
    let i = starts.saturating_sub(1) as usize;
    RETRY_AFTER.get(i).copied().unwrap_or(RETRY_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::tailnet::status::parse_status;
    use std::collections::HashSet;

    const STATUS: &str = include_str!("../../../tests/fixtures/tailnet/status.json");

    fn addr(i: u32) -> SocketAddr {
        let ip = std::net::Ipv4Addr::from(u32::from(std::net::Ipv4Addr::new(100, 64, 0, 0)) + i);
        SocketAddr::new(IpAddr::V4(ip), 7654)
    }

    #[test]
    fn targets_are_the_reachable_online_devices_at_one_address_each() {
        let st = parse_status(STATUS.as_bytes()).unwrap();
        let t = targets(&st, (true, true), 7654, |_, _| true);
        let shown: Vec<(String, u8)> = t.iter().map(|(a, r)| (a.to_string(), *r)).collect();
        // Sorted as the device list is (by host name): offline carol, expired dave and the
        // sharee guest are left out; ourselves too.
        assert_eq!(
            shown,
            [
                ("100.64.0.2:7654".to_owned(), 1),          // bob-laptop
                ("100.64.0.3:7654".to_owned(), 2),          // bob-phone: a phone, last
                ("100.64.0.4:7654".to_owned(), 1),          // build-1, tagged
                ("[fd7a:115c:a1e0::6]:7654".to_owned(), 1), // erin-v6: IPv6 only
                ("100.64.0.7:7654".to_owned(), 1),          // frank-pc, owner unknown
            ]
        );
        // An IPv6-only socket takes every device's IPv6 address; an IPv4-only one cannot reach
        // erin.
        let v6: Vec<String> = targets(&st, (false, true), 7654, |_, _| true)
            .iter()
            .map(|(a, _)| a.to_string())
            .collect();
        assert_eq!(v6.len(), 5);
        assert!(
            v6.iter().all(|a| a.starts_with("[fd7a:115c:a1e0::")),
            "{v6:?}"
        );
        assert_eq!(targets(&st, (true, false), 7654, |_, _| true).len(), 4);
        // Our own other devices go first.
        let mut mine = st.clone();
        if let Some(me) = mine.me.as_mut() {
            me.owner = st.devices[0].owner.clone(); // we are bob now
        }
        let ranks: Vec<u8> = targets(&mine, (true, true), 9, |_, _| true)
            .iter()
            .map(|t| t.1)
            .collect();
        assert_eq!(
            ranks,
            [0, 2, 1, 1, 1],
            "bob's laptop first, his phone still last"
        );
        // Devices the allow-list would not let answer are not asked.
        let only_bob = targets(&st, (true, true), 1, |d, _| d.host_name == "bob-laptop");
        assert_eq!(only_bob.len(), 1);
    }

    #[test]
    fn a_small_tailnet_is_tried_at_once_and_silent_devices_ever_more_rarely() {
        let t0 = Instant::now();
        let mut plan = ProbePlan::new(t0);
        let list: Vec<(SocketAddr, u8)> = (1..=5).map(|i| (addr(i), 1)).collect();
        plan.update(t0, &list);
        assert_eq!(plan.next_wakeup(), Some(t0));
        assert_eq!(plan.due(t0, |_| false).len(), 5, "all at once");
        assert!(plan.due(t0, |_| false).is_empty());
        // Address 1 never answers: started again after 30 s, 2 min, 10 min, 30 min, then hourly.
        let mut at = t0;
        let mut gaps = Vec::new();
        for _ in 0..6 {
            let next = plan.next_wakeup().unwrap();
            gaps.push((next - at).as_secs());
            at = next;
            assert!(plan.due(at, |_| false).contains(&addr(1)));
        }
        assert_eq!(gaps, [30, 120, 600, 1800, 3600, 3600]);
    }

    #[test]
    fn a_large_tailnet_costs_a_few_starts_a_minute_whatever_its_size() {
        let t0 = Instant::now();
        let mut plan = ProbePlan::new(t0);
        let list: Vec<(SocketAddr, u8)> = (1..=500).map(|i| (addr(i), 1)).collect();
        plan.update(t0, &list);
        let mut starts: Vec<(Duration, SocketAddr)> = Vec::new();
        let mut now = t0;
        let end = t0 + Duration::from_secs(4 * 3600);
        while let Some(next) = plan.next_wakeup() {
            if next > end {
                break;
            }
            now = next.max(now);
            for a in plan.due(now, |_| false) {
                starts.push((now - t0, a));
            }
            if plan.next_wakeup() == Some(now) {
                now += Duration::from_millis(1); // nothing due until the next token
            }
        }
        // At most the burst at once, then never more than one start per START_EVERY.
        let in_first_second = starts.iter().filter(|(t, _)| t.as_secs() < 1).count();
        assert_eq!(in_first_second, START_BURST as usize);
        for window in 0..(4 * 3600 / 60) {
            let per_minute = starts
                .iter()
                .filter(|(t, _)| t.as_secs() / 60 == window && t.as_secs() >= 1)
                .count();
            assert!(per_minute <= 16, "minute {window}: {per_minute} starts");
        }
        // Every device is tried within the first sweep: 500 − 16 at one per 4 s.
        let tried: HashSet<SocketAddr> = starts
            .iter()
            .filter(|(t, _)| *t <= START_EVERY * 485)
            .map(|(_, a)| *a)
            .collect();
        assert_eq!(tried.len(), 500);
        // And a silent device is then tried rarely: at most 6 times in 4 hours.
        for i in [1, 250, 500] {
            let n = starts.iter().filter(|(_, a)| *a == addr(i)).count();
            assert!((1..=6).contains(&n), "address {i}: {n} starts");
        }
    }

    #[test]
    fn connected_addresses_are_skipped_and_better_ranks_go_first() {
        let t0 = Instant::now();
        let mut plan = ProbePlan::new(t0);
        let mut list: Vec<(SocketAddr, u8)> = (1..=20).map(|i| (addr(i), 2)).collect();
        list.push((addr(30), 0));
        list.push((addr(31), 1));
        plan.update(t0, &list);
        let first = plan.due(t0, |a| a == addr(1));
        assert_eq!(first.len(), START_BURST as usize);
        assert_eq!(&first[..2], &[addr(30), addr(31)]);
        assert!(!first.contains(&addr(1)), "a peer is online there");
        // A device that goes offline leaves the list; back within the hour, it keeps its
        // back-off rather than being started again at once.
        plan.update(t0 + Duration::from_secs(1), &list[1..]);
        plan.update(t0 + Duration::from_secs(2), &list);
        let again = plan.due(t0 + Duration::from_secs(2), |_| false);
        assert!(!again.contains(&addr(30)), "{again:?}");
        // Unlisted for longer than FORGET_AFTER: forgotten.
        let later = t0 + FORGET_AFTER + Duration::from_secs(10);
        plan.update(later, &[]);
        assert_eq!(plan.listed(), 0);
        assert!(plan.addrs.is_empty());
        assert_eq!(plan.next_wakeup(), None);
    }
}
