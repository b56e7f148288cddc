//! The tailnet, as the application uses it: tailscaled's device list read at start and every
//! [`POLL_EVERY`] to contact the devices that may run tailchat (see [`plan`]), who each peer
//! really is (WhoIs on its address) for join lines, `/peers` and notices, the allow-list at the
//! door of the receive path, and one line — not one per poll — when tailscaled cannot be read.
//!
//! The LocalAPI is reached off the loop ([`crate::net::tailnet::LocalApi`], each request under
//! a time limit), by a poller task and by one task per WhoIs; their answers come back to the
//! loop as [`News`]. Everything else here is plain state the loop drives, with time passed in.
//!
//! # Layout
//! - this file: [`Tailnet`], its [`TailnetSetup`] and [`News`];
//! - [`plan`]: which devices to contact, and when (pure).

pub mod plan;

use crate::app::allow::{AllowList, Verdict};
use crate::net::tailnet::{self, LocalApi, LocalApiError, Owner, Status};
use crate::proto::{Found, PeerId, PeerInfo, PeerState};
use crate::ui::present::{self, PeerNote};
use crate::ui::render::display_nick;
use plan::ProbePlan;

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// How often the device list is read again.
pub const POLL_EVERY: Duration = Duration::from_secs(30);
/// WhoIs requests under way at once at most.
const WHOIS_IN_FLIGHT: usize = 4;
/// Addresses waiting for a WhoIs at most; more are asked for when a later datagram comes.
const WHOIS_QUEUE: usize = 64;
/// Addresses whose owner is remembered at most (a flood of made-up sources cannot grow it).
const WHOIS_CACHE: usize = 4096;
/// A known owner is asked for again after this long (and used meanwhile).
const OWNER_FRESH: Duration = Duration::from_secs(600);
/// "No device there" is asked again after this long (and believed meanwhile).
const NOBODY_FRESH: Duration = Duration::from_secs(60);
/// Nicks remembered with the tailnet user they were first seen for, at most.
const NICKS_REMEMBERED: usize = 1024;
/// Characters of a name from the tailnet shown at most.
const NAME_CHARS: usize = 64;

/// How the tailnet side is set up, from the settings.
#[derive(Clone, Debug)]
pub struct TailnetSetup {
    /// tailscaled's LocalAPI socket.
    pub socket: PathBuf,
    /// Whether the user named it (`--tailscale-socket`, the config file): then a missing one
    /// is always said.
    pub socket_given: bool,
    /// Contact the tailnet's devices (off with `--no-discovery`).
    pub discovery: bool,
    /// Who may reach us; tailnet entries need WhoIs.
    pub allow: AllowList,
    /// The tailchat port contacted on each device.
    pub port: u16,
    /// How often the device list is read ([`POLL_EVERY`]; tests take less).
    pub poll_every: Duration,
}

impl TailnetSetup {
    /// No tailnet at all: no LocalAPI, no allow-list (tests and benchmarks).
    pub fn off() -> Self {
        Self {
            socket: PathBuf::from(tailnet::DEFAULT_SOCKET),
            socket_given: false,
            discovery: false,
            allow: AllowList::default(),
            port: 0,
            poll_every: POLL_EVERY,
        }
    }
}

/// An answer from the LocalAPI, for the loop.
#[derive(Debug)]
pub enum News {
    /// The device list, or why there is none.
    Status(Result<Status, LocalApiError>),
    /// Who is at an address: `None` when no device of the tailnet has it.
    WhoIs(IpAddr, Result<Option<Owner>, LocalApiError>),
}

/// What is known of who is at one address.
#[derive(Clone, Debug)]
struct Known {
    /// The last answer: `Some(None)` when there is no device there (or tailscaled could not
    /// say); `None` until the first answer.
    answer: Option<Option<Owner>>,
    /// When it was last asked for.
    asked: Instant,
    /// A request is under way or queued.
    pending: bool,
}

/// Whether tailscaled could be read, as last told to the user.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Health {
    /// Not asked yet.
    Unknown,
    /// The last status was read.
    Working,
    /// The last status failed, for this reason.
    Failing(LocalApiError),
}

/// Counters of datagrams refused at the door (logged with the core's, never shown).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DoorCounters {
    /// From a source the allow-list does not admit.
    pub not_allowed: u64,
    /// From a tailnet address whose owner was not known yet (asked for).
    pub awaiting_whois: u64,
}

/// The tailnet side of the application (see the module documentation).
pub struct Tailnet {
    /// The LocalAPI, when tailnet discovery or a tailnet allow-list entry needs it.
    api: Option<LocalApi>,
    /// Contact the tailnet's devices.
    discovery: bool,
    /// The tailchat port contacted.
    port: u16,
    /// How often the device list is read.
    poll_every: Duration,
    /// Which address families the socket reaches, (v4, v6).
    reaches: (bool, bool),
    /// See [`TailnetSetup::socket_given`].
    socket_given: bool,
    /// Who may reach us.
    allow: AllowList,
    /// Where the LocalAPI tasks send their answers.
    news: Option<mpsc::UnboundedSender<News>>,
    /// Whether the device list could be read, as the user was last told.
    health: Health,
    /// When to contact which device.
    plan: ProbePlan,
    /// Every address the last device list names (ours included).
    listed_ips: HashSet<IpAddr>,
    /// Addresses handed to the core because the device list named them: peers there were
    /// found through the tailnet.
    probed: HashSet<SocketAddr>,
    /// Addresses the user asked for (`/add`, `--peer`): theirs, not the tailnet's, even when a
    /// device has them too.
    user_added: HashSet<SocketAddr>,
    /// Who is at each address asked about.
    whois: HashMap<IpAddr, Known>,
    /// Whose each address is by the last device list (a login, or the device's tags), to
    /// notice a device re-owned.
    listed_owners: HashMap<IpAddr, String>,
    /// Addresses waiting for a WhoIs request, oldest first.
    whois_queue: VecDeque<SocketAddr>,
    /// WhoIs requests under way.
    whois_in_flight: usize,
    /// Per peer, the tailnet identity last seen at its address and how it was shown: a change
    /// under the same PeerId is told.
    peer_owner: HashMap<PeerId, (String, String)>,
    /// Per displayed nick, the tailnet identity it was first seen for (and how it was shown).
    nick_owner: HashMap<String, (String, String)>,
    /// Nick clashes already told: (nick, identity, identity).
    clashes_told: HashSet<(String, String, String)>,
    /// Datagrams refused at the door.
    counters: DoorCounters,
}

impl Tailnet {
    /// No tailnet: nothing asked, everyone admitted.
    pub fn off() -> Self {
        Self::new(TailnetSetup::off(), (true, true), None)
    }

    /// The tailnet side for `setup`, on a socket reaching `reaches`; LocalAPI answers go to
    /// `news` (nothing is asked without it).
    pub fn new(
        setup: TailnetSetup,
        reaches: (bool, bool),
        news: Option<mpsc::UnboundedSender<News>>,
    ) -> Self {
        let needed = setup.discovery || setup.allow.has_tailnet_entries();
        Self {
            socket_given: setup.socket_given,
            api: (needed && news.is_some()).then(|| LocalApi::new(setup.socket)),
            discovery: setup.discovery,
            port: setup.port,
            poll_every: setup.poll_every,
            reaches,
            allow: setup.allow,
            news,
            health: Health::Unknown,
            plan: ProbePlan::new(Instant::now()),
            listed_ips: HashSet::new(),
            probed: HashSet::new(),
            user_added: HashSet::new(),
            whois: HashMap::new(),
            listed_owners: HashMap::new(),
            whois_queue: VecDeque::new(),
            whois_in_flight: 0,
            peer_owner: HashMap::new(),
            nick_owner: HashMap::new(),
            clashes_told: HashSet::new(),
            counters: DoorCounters::default(),
        }
    }

    /// Starts reading the device list now and every [`POLL_EVERY`] (a task on the current
    /// runtime, which ends when the loop stops listening).
    pub fn start(&self) {
        let (Some(api), Some(news)) = (self.api.clone(), self.news.clone()) else {
            return;
        };
        let every = self.poll_every;
        tokio::spawn(async move {
            loop {
                let status = api.status().await;
                if news.send(News::Status(status)).is_err() {
                    return;
                }
                tokio::time::sleep(every).await;
            }
        });
    }

    /// Whether tailscaled's answers are in use (the last device list was read).
    fn working(&self) -> bool {
        self.health == Health::Working
    }

    /// Whether tailscaled is expected to name who is at a tailnet address: it is asked, and
    /// has not failed (before its first answer it is given the benefit of the doubt, for at
    /// most the LocalAPI's time limit).
    fn names_expected(&self) -> bool {
        self.api.is_some() && !matches!(self.health, Health::Failing(_))
    }

    /// A new device list, or why there is none: the plan is brought up to date, and a line for
    /// the user when the situation changed (first success, a failure, a different failure,
    /// success again) — never one per poll.
    pub fn on_status(
        &mut self,
        now: Instant,
        status: Result<Status, LocalApiError>,
    ) -> Option<String> {
        match status {
            Ok(st) => {
                self.listed_ips = st
                    .devices
                    .iter()
                    .chain(st.me.iter())
                    .flat_map(|d| d.ips.iter().copied())
                    .collect();
                self.forget_changed_owners(&st);
                let targets = if self.discovery {
                    let allow = &self.allow;
                    plan::targets(&st, self.reaches, self.port, |d, ip| {
                        allow.may_admit_device(ip, d)
                    })
                } else {
                    Vec::new()
                };
                self.plan.update(now, &targets);
                let before = std::mem::replace(&mut self.health, Health::Working);
                if before == Health::Working {
                    return None;
                }
                let online = st.devices.iter().filter(|d| d.online && !d.expired).count();
                let tailnet = if st.tailnet_name.is_empty() {
                    String::new()
                } else {
                    format!(" in {}", clean(&st.tailnet_name))
                };
                let again = if before == Health::Unknown {
                    ""
                } else {
                    " again"
                };
                Some(if self.discovery {
                    format!(
                        "tailnet discovery on{again}: {online} other device(s) online{tailnet}; looking for tailchat on UDP port {} of {} of them",
                        self.port,
                        targets.len()
                    )
                } else {
                    format!("tailnet: tailscaled answers{again}{tailnet}; the allow-list's tailnet: entries are checked")
                })
            }
            Err(e) => {
                self.plan.update(now, &[]);
                // Tailscale not installed at all (not even the default socket's folder), and
                // nothing in the allow-list needs it: a LAN-only user is not told at every start.
                let not_installed = !self.socket_given
                    && matches!(&e, crate::net::tailnet::LocalApiError::Missing(p)
                    if p.as_path() == std::path::Path::new(crate::net::tailnet::DEFAULT_SOCKET)
                        && p.parent().is_some_and(|d| !d.exists()))
                    && !self.allow.has_tailnet_entries();
                let told = not_installed
                    || matches!(&self.health, Health::Failing(old) if old.same_kind(&e));
                if not_installed {
                    tracing::debug!("tailnet discovery off: {e}");
                }
                let what = if self.discovery {
                    "tailnet discovery off"
                } else {
                    "tailnet: the allow-list's tailnet: entries admit nobody for now"
                };
                let line = format!("{what}: {e}");
                self.health = Health::Failing(e);
                (!told).then_some(line)
            }
        }
    }

    /// When [`Self::due`] next has something to start.
    pub fn next_wakeup(&self) -> Option<Instant> {
        (self.discovery && self.working())
            .then(|| self.plan.next_wakeup())
            .flatten()
    }

    /// The addresses to hand the core now (`Endpoint::add_address`), given the peers (asked
    /// for only when the tailnet is in use: building the list costs a look at every peer, and
    /// this runs at every wake-up): each is remembered as found through the tailnet, and its
    /// owner asked for at once, so that the answer to our hello is let in with a name.
    pub fn due(&mut self, now: Instant, peers: impl FnOnce() -> Vec<PeerInfo>) -> Vec<SocketAddr> {
        if !(self.discovery && self.working()) {
            return Vec::new();
        }
        let online: HashSet<SocketAddr> = peers()
            .iter()
            .filter(|p| p.state == PeerState::Online)
            .flat_map(|p| p.addrs.iter().copied())
            .collect();
        let started = self.plan.due(now, |a| online.contains(&a));
        for a in &started {
            tracing::debug!("tailnet: contacting {a}");
            self.probed.insert(*a);
            self.want(*a, now);
        }
        self.pump();
        started
    }

    /// Why the allow-list will never let `ip` in, if it will not: said to a user who asks to
    /// contact it (its answers would be dropped, and "no answer" would blame the other side).
    pub fn never_admitted(&self, ip: std::net::IpAddr) -> Option<String> {
        self.allow.never_admits(ip).then(|| {
            let list: Vec<String> = self
                .allow
                .entries()
                .iter()
                .map(ToString::to_string)
                .collect();
            format!(
                "{ip} is not in your allow-list ({}): everything from it would be dropped — add it (--allow {ip}, or to allow in the config file) to reach it",
                list.join(", ")
            )
        })
    }

    /// The user asked for `addr` (`/add`, `--peer`).
    pub fn user_added(&mut self, addr: SocketAddr) {
        self.user_added.insert(addr);
    }

    /// Whether `addr` is contacted because the tailnet listed it (not because the user asked):
    /// its "no answer" notice is not for the user, since most devices run no tailchat.
    pub fn is_tailnet_probe(&self, addr: SocketAddr) -> bool {
        self.probed.contains(&addr) && !self.user_added.contains(&addr)
    }

    /// The door of the receive path: whether a datagram from `from` may reach the core. A
    /// tailnet address whose owner is not known yet waits for WhoIs (its datagrams dropped;
    /// the core resends), so that a peer's first line already says who it is; the allow-list
    /// refuses the rest of what it does not admit.
    pub fn admit(&mut self, from: SocketAddr, now: Instant) -> bool {
        let ip = from.ip().to_canonical();
        let asks = self.api.is_some()
            && (self.names_expected()
                && (tailnet::in_tailnet_range(ip) || self.listed_ips.contains(&ip))
                || self.allow.has_tailnet_entries() && !self.allow.admits_address(ip));
        let known = self.whois.get(&ip).and_then(|k| k.answer.as_ref());
        if asks && known.is_none() {
            self.counters.awaiting_whois += 1;
            self.want(from, now);
            return false;
        }
        let verdict = self.allow.verdict(ip, known.map(Option::as_ref));
        if asks {
            self.refresh(from, now);
        }
        match verdict {
            Verdict::Admit => true,
            Verdict::Refuse => {
                self.counters.not_allowed += 1;
                false
            }
            Verdict::AskWhoIs => {
                self.counters.awaiting_whois += 1;
                false
            }
        }
    }

    /// Whether the allow-list surely refuses every one of `addrs` (a peer known only there is
    /// not heard while it stands): not when there is no list, no address, or one whose owner
    /// a tailnet entry could admit and that is not known yet.
    pub fn shuts_out(&self, addrs: &[SocketAddr]) -> bool {
        !addrs.is_empty()
            && addrs.iter().all(|a| {
                let ip = a.ip().to_canonical();
                let known = self.whois.get(&ip).and_then(|k| k.answer.as_ref());
                self.allow.verdict(ip, known.map(Option::as_ref)) == Verdict::Refuse
            })
    }

    /// Datagrams refused so far.
    pub fn counters(&self) -> DoorCounters {
        self.counters
    }

    /// Forgets what WhoIs said of the addresses of a device whose owner (or tags) changed
    /// since the last device list: re-owned or tagged in the admin console. The next datagram
    /// from there waits for a new answer, so the allow-list and the names follow the change
    /// within a poll rather than when the answer would be old ([`OWNER_FRESH`]). Compared
    /// with the list before, not with WhoIs: the two need not spell an owner alike.
    fn forget_changed_owners(&mut self, st: &Status) {
        let mut listed = HashMap::new();
        for d in st.devices.iter().chain(st.me.iter()) {
            let owner = if d.tags.is_empty() {
                d.owner.as_ref().map(|u| u.login_name.to_lowercase())
            } else {
                let mut tags = d.tags.clone();
                tags.sort();
                Some(tags.join(","))
            };
            let Some(owner) = owner else {
                continue;
            };
            for ip in &d.ips {
                listed.insert(ip.to_canonical(), owner.clone());
            }
        }
        for (ip, owner) in &listed {
            if self
                .listed_owners
                .get(ip)
                .is_some_and(|before| before != owner)
                && self.whois.remove(ip).is_some()
            {
                tracing::debug!("tailnet: the owner at {ip} changed in the device list");
            }
        }
        self.listed_owners = listed;
    }

    /// Asks again for an address whose answer is old.
    fn refresh(&mut self, addr: SocketAddr, now: Instant) {
        let stale = self.whois.get(&addr.ip().to_canonical()).is_some_and(|k| {
            let fresh = match k.answer {
                Some(Some(_)) => OWNER_FRESH,
                _ => NOBODY_FRESH,
            };
            !k.pending && now.saturating_duration_since(k.asked) >= fresh
        });
        if stale {
            self.want(addr, now);
        }
    }

    /// Queues a WhoIs for `addr` (unless one is under way, or the bounds are reached).
    fn want(&mut self, addr: SocketAddr, now: Instant) {
        if self.api.is_none() {
            return;
        }
        let ip = addr.ip().to_canonical();
        if self.whois.get(&ip).is_some_and(|k| k.pending) || self.whois_queue.len() >= WHOIS_QUEUE {
            return;
        }
        if !self.whois.contains_key(&ip) && self.whois.len() >= WHOIS_CACHE {
            // Full: forget the answers that would be asked again anyway.
            self.whois
                .retain(|_, k| k.pending || now.saturating_duration_since(k.asked) < NOBODY_FRESH);
            if self.whois.len() >= WHOIS_CACHE {
                return;
            }
        }
        let k = self.whois.entry(ip).or_insert(Known {
            answer: None,
            asked: now,
            pending: false,
        });
        k.pending = true;
        k.asked = now;
        self.whois_queue.push_back(addr);
    }

    /// Starts queued WhoIs requests, up to [`WHOIS_IN_FLIGHT`] at once.
    pub fn pump(&mut self) {
        let (Some(api), Some(news)) = (&self.api, &self.news) else {
            return;
        };
        while self.whois_in_flight < WHOIS_IN_FLIGHT {
            let Some(addr) = self.whois_queue.pop_front() else {
                return;
            };
            self.whois_in_flight += 1;
            let (api, news) = (api.clone(), news.clone());
            tokio::spawn(async move {
                let answer = api.whois(addr).await;
                let _ = news.send(News::WhoIs(addr.ip().to_canonical(), answer));
            });
        }
    }

    /// A WhoIs answer. A failure keeps an earlier answer (and counts as "nobody there" when
    /// there was none); failures are logged, never shown: the device list's notice covers a
    /// tailscaled that cannot be read.
    pub fn on_whois(
        &mut self,
        now: Instant,
        ip: IpAddr,
        answer: Result<Option<Owner>, LocalApiError>,
    ) {
        self.whois_in_flight = self.whois_in_flight.saturating_sub(1);
        let k = self.whois.entry(ip).or_insert(Known {
            answer: None,
            asked: now,
            pending: false,
        });
        k.pending = false;
        match answer {
            Ok(owner) => k.answer = Some(owner),
            Err(e) => {
                tracing::debug!("tailnet: whois {ip}: {e}");
                k.answer.get_or_insert(None);
            }
        }
        self.pump();
    }

    /// The owner known at `addr`.
    fn owner_at(&self, addr: SocketAddr) -> Option<&Owner> {
        self.whois
            .get(&addr.ip().to_canonical())
            .and_then(|k| k.answer.as_ref())
            .and_then(Option::as_ref)
    }

    /// Who the tailnet says is at `addr`, for a line: `bob@example.com on laptop`.
    pub fn who_at(&self, addr: SocketAddr) -> Option<String> {
        self.owner_at(addr).map(who)
    }

    /// A peer's join line was shown with its owner (see [`Self::who_at`]): remembered, so the
    /// owner is not told again, and a change is.
    pub fn joined(&mut self, peer: PeerId, addr: SocketAddr, now: Instant) {
        if let Some(owner) = self.owner_at(addr) {
            let entry = (identity(owner), who(owner));
            self.peer_owner.insert(peer, entry);
        } else if self.api.is_some() && tailnet::in_tailnet_range(addr.ip().to_canonical()) {
            self.want(addr, now);
            self.pump();
        }
    }

    /// What `/peers` adds for a peer: found through the tailnet, and who is at its address.
    pub fn note(&self, p: &PeerInfo) -> PeerNote {
        let tailnet = matches!(p.found, Found::Manual | Found::Incoming)
            && p.addrs.iter().any(|a| self.is_tailnet_probe(*a));
        PeerNote {
            tailnet,
            who: p.addrs.first().and_then(|a| self.who_at(*a)),
        }
    }

    /// Lines about who the peers are, after their owners or addresses may have changed: a
    /// peer whose owner was not in its join line (now known), a peer whose tailnet user
    /// changed under the same PeerId, a nick seen for a second tailnet user. Each is told
    /// once.
    pub fn check_peers(&mut self, peers: &[PeerInfo]) -> Vec<String> {
        let mut lines = Vec::new();
        for p in peers.iter().filter(|p| p.state != PeerState::Left) {
            let Some(&addr) = p.addrs.first() else {
                continue;
            };
            let Some(owner) = self.owner_at(addr) else {
                continue;
            };
            let (key, shown) = (identity(owner), who(owner));
            let nick = display_nick(&p.nick);
            let place = present::show_addr(addr);
            match self.peer_owner.get(&p.id) {
                None => lines.push(format!("{nick} ({place}) is {shown}")),
                Some((old, old_shown)) if *old != key => lines.push(format!(
                    "{nick}'s tailnet user changed: it was {old_shown}, it is now {shown} ({place}), under the same tailchat identity {}",
                    &p.id.to_string()[..8]
                )),
                Some(_) => {}
            }
            self.peer_owner.insert(p.id, (key.clone(), shown.clone()));
            match self.nick_owner.get(&nick) {
                None if self.nick_owner.len() < NICKS_REMEMBERED => {
                    self.nick_owner.insert(nick, (key, shown));
                }
                Some((first, first_shown)) if *first != key => {
                    let told = (nick.clone(), first.clone(), key.clone());
                    if self.clashes_told.insert(told) {
                        lines.push(format!(
                            "{nick} ({place}) is {shown}, but {nick} was first seen here as {first_shown}: two tailnet users use the nick {nick} — /peers tells them apart"
                        ));
                    }
                }
                _ => {}
            }
        }
        lines
    }
}

/// A device's identity, for comparing: its tags when it has some (it then belongs to no
/// person), else its user's login name, in lower case.
fn identity(owner: &Owner) -> String {
    if owner.tagged() {
        owner.tags.join(",")
    } else {
        owner.user.login_name.to_lowercase()
    }
}

/// An owner as a line shows it: `bob@example.com on laptop`, `tag:server on build-1`.
pub fn who(owner: &Owner) -> String {
    let whose = if owner.tagged() {
        clean(&owner.tags.join(","))
    } else if owner.user.login_name.is_empty() {
        clean(&owner.user.display_name)
    } else {
        clean(&owner.user.login_name)
    };
    let whose = if whose.is_empty() {
        "an unknown user".to_owned()
    } else {
        whose
    };
    match clean(&owner.device) {
        device if device.is_empty() => whose,
        device => format!("{whose} on {device}"),
    }
}

/// A name from the tailnet made safe and short for a line (device names are chosen by their
/// owners).
fn clean(name: &str) -> String {
    let mut s: String = name
        .chars()
        .filter(|c| !c.is_control())
        .take(NAME_CHARS)
        .collect();
    if name.chars().filter(|c| !c.is_control()).count() > NAME_CHARS {
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests;
