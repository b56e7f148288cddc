//! A deterministic network simulator for the protocol core.
//!
//! N endpoints on a virtual clock that jumps straight to the next thing that happens (a
//! datagram arriving or an endpoint's `poll_timeout()`), joined by links with latency, jitter
//! (and so reordering), uniform and bursty (Gilbert–Elliott) loss, duplication and partitions.
//! Everything random comes from one seed, so a failing seed replays exactly; tests print it.

#![allow(dead_code)] // each test binary uses a different part of it

use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};
use tailchat::proto::wire::MAX_DATAGRAM;
use tailchat::proto::{Config, Endpoint, Event, Identity, Limits, MessageId, PeerId, Recipients};

pub mod attacker;

/// How one direction of a link behaves.
#[derive(Clone, Copy, Debug)]
pub struct LinkParams {
    /// One-way base latency.
    pub latency: Duration,
    /// Extra delay, uniform in [0, jitter); larger than the send spacing, it reorders.
    pub jitter: Duration,
    /// Probability a datagram is lost (in the "good" state when bursty).
    pub loss: f64,
    /// Bursty loss: probability to enter the bad state per datagram (0 = uniform loss only).
    pub burst_enter: f64,
    /// Probability to leave the bad state per datagram.
    pub burst_exit: f64,
    /// Loss probability in the bad state.
    pub burst_loss: f64,
    /// Probability a datagram is delivered twice.
    pub duplicate: f64,
}

impl LinkParams {
    /// A clean LAN link: 0.5 ms each way (1 ms RTT), a little jitter.
    pub fn lan() -> Self {
        Self {
            latency: Duration::from_micros(500),
            jitter: Duration::from_micros(100),
            loss: 0.0,
            burst_enter: 0.0,
            burst_exit: 1.0,
            burst_loss: 0.0,
            duplicate: 0.0,
        }
    }

    /// A hostile link: the given uniform loss each way, 5% duplication, and enough jitter to
    /// reorder datagrams sent back to back.
    pub fn lossy(loss: f64) -> Self {
        Self {
            loss,
            duplicate: 0.05,
            jitter: Duration::from_millis(2),
            ..Self::lan()
        }
    }
}

/// Whatever lives at addresses no node has (an attacker's hosts, say): it gets the datagrams
/// sent there and may answer.
pub trait Outside {
    /// Node datagram `bytes`, sent from `from` to `to` (an address no node has), arrived at
    /// `now`. Returns datagrams to send back, as (source, destination, bytes).
    fn receive(
        &mut self,
        now: Instant,
        from: SocketAddr,
        to: SocketAddr,
        bytes: &[u8],
    ) -> Vec<(SocketAddr, SocketAddr, Vec<u8>)>;
}

/// Hosts of limited speed: taking in and sending datagrams costs CPU time, and a host whose
/// socket holds `backlog` datagrams not yet read drops the next (its receive buffer is full).
/// Without it every datagram is handled the moment it arrives. With it, what an overloaded
/// machine does to the protocol shows on the virtual clock: answers come late, timers that
/// are too short fire and send more, and receive buffers overflow (issue 10's 250 hosts on
/// two cores). Work is served first come, first served by `cores` cores shared by all nodes
/// (`cores = nodes` gives each host its own, as in a real office).
#[derive(Clone, Copy, Debug)]
pub struct Cpu {
    /// Cores shared by all nodes.
    pub cores: usize,
    /// Taking in one datagram: the kernel's receive, the wake-up, decoding.
    pub per_datagram: Duration,
    /// Extra for a Proof or ProofReply: a signature to check (and one to make, answering a
    /// Proof).
    pub per_proof: Duration,
    /// Sending one datagram.
    pub per_send: Duration,
    /// Datagrams a node's socket holds unread; one more is dropped.
    pub backlog: usize,
}

impl Cpu {
    /// Costs measured on this project's 2-vCPU machine (100 hosts meshing used ~5 CPU-s
    /// for ~125 k datagrams sent and ~210 k received): two cores shared by every node, a
    /// receive buffer of about a thousand small datagrams.
    pub fn two_cores() -> Self {
        Self {
            cores: 2,
            per_datagram: Duration::from_micros(12),
            per_proof: Duration::from_micros(50),
            per_send: Duration::from_micros(8),
            backlog: 1000,
        }
    }
}

/// The shared machine's state when [`Sim::cpu`] is set.
struct Machine {
    /// When each core is next free.
    free: Vec<Instant>,
    /// Datagrams taken off the wire, to be handled when their CPU time is done.
    ready: BinaryHeap<Reverse<InFlight>>,
    /// Per node: datagrams waiting in its socket (queued for the CPU, not yet handled).
    waiting: Vec<usize>,
}

impl Machine {
    /// Runs `cost` of work arriving at `now` on the core free first; returns when it is done.
    fn run(&mut self, now: Instant, cost: Duration) -> Instant {
        let core = (0..self.free.len())
            .min_by_key(|&c| self.free[c])
            .expect("a core");
        let done = self.free[core].max(now) + cost;
        self.free[core] = done;
        done
    }
}

/// A datagram from a made-up identity (random PeerId, session 1) carrying one frame: what a
/// flood test sends.
pub fn from_stranger(rng: &mut impl RngExt, frame: tailchat::proto::wire::Frame) -> Vec<u8> {
    let header = tailchat::proto::wire::Header {
        sender: PeerId(rng.random()),
        session: 1,
        packet: 0,
    };
    tailchat::proto::wire::encode(&header, &[frame])
}

/// A proof (`reply`: a proof reply) signed by `identity` in run `session`, for the peer `to`
/// (its PeerId and session), echoing `echo`: what a real peer sends, for tests that replay or
/// forge one.
pub fn signed_proof(
    identity: &Identity,
    session: u64,
    to: (PeerId, u64),
    echo: [u8; 16],
    nick: &str,
    reply: bool,
) -> Vec<u8> {
    use tailchat::proto::identity::{Transcript, PROOF_DOMAIN, PROOF_REPLY_DOMAIN};
    use tailchat::proto::wire::{self, Frame, Header, Proof, ProofReply};
    let challenge = [0x33; 16];
    let t = Transcript {
        domain: if reply {
            PROOF_REPLY_DOMAIN
        } else {
            PROOF_DOMAIN
        },
        echo,
        challenge: if reply { [0; 16] } else { challenge },
        signer: identity.peer_id(),
        receiver: to.0,
        signer_session: session,
        receiver_session: to.1,
        key: identity.public_key(),
        port: 7654,
        caps: 0,
        nick,
    };
    let signature = identity.sign(&t.to_bytes());
    let frame = if reply {
        Frame::ProofReply(ProofReply {
            key: identity.public_key(),
            echo,
            nick: nick.into(),
            port: 7654,
            caps: 0,
            signature,
        })
    } else {
        Frame::Proof(Proof {
            key: identity.public_key(),
            echo,
            challenge,
            nick: nick.into(),
            port: 7654,
            caps: 0,
            signature,
        })
    };
    let header = Header {
        sender: identity.peer_id(),
        session,
        packet: 0,
    };
    wire::encode(&header, &[frame])
}

/// One simulated host.
pub struct Node {
    /// The protocol core under test.
    pub ep: Endpoint,
    /// Its key pair (kept, so a restart can run as the same peer).
    pub identity: Identity,
    /// Its address.
    pub addr: SocketAddr,
    /// Everything it reported, with the virtual time.
    pub events: Vec<(Instant, Event)>,
}

/// A datagram on the wire.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct InFlight {
    /// When it arrives.
    at: Instant,
    /// Tie-breaker so equal times keep send order (determinism).
    order: u64,
    /// Destination node index.
    to: usize,
    /// Source address.
    from: SocketAddr,
    /// Payload.
    bytes: Vec<u8>,
}

/// The simulated network.
pub struct Sim {
    /// Seed, printed on failure.
    pub seed: u64,
    /// Virtual time now.
    pub now: Instant,
    /// Virtual time zero.
    pub start: Instant,
    /// The hosts.
    pub nodes: Vec<Node>,
    /// Per-direction link behaviour, `links[from][to]`.
    pub links: Vec<Vec<LinkParams>>,
    /// Bad-state flags of bursty links.
    burst_bad: Vec<Vec<bool>>,
    /// Directions currently cut, as (from, to).
    pub cut: BTreeSet<(usize, usize)>,
    /// Directions in which LAN announcements do not arrive, as (from, to) (a filtered kind of
    /// multicast, a switch that drops it): other datagrams go through.
    pub deaf: BTreeSet<(usize, usize)>,
    /// Datagrams in flight.
    queue: BinaryHeap<Reverse<InFlight>>,
    /// Order counter.
    order: u64,
    /// The randomness.
    rng: ChaCha8Rng,
    /// Datagrams sent, dropped and delivered.
    pub sent: u64,
    /// Datagrams lost on links.
    pub lost: u64,
    /// Largest datagram seen.
    pub largest_datagram: usize,
    /// Datagrams sent by each node.
    pub sent_by: Vec<u64>,
    /// Each node's LAN segment: announcements reach the other nodes of the same one.
    pub segment: Vec<Option<u32>>,
    /// Announcements sent.
    pub announces: u64,
    /// Datagrams sent from one node to another's address, `sent_pairs[from][to]`, whether or
    /// not the link delivered them.
    pub sent_pairs: Vec<Vec<u64>>,
    /// The limits every endpoint is built with (restarted ones included).
    pub limits: Limits,
    /// Extra addresses that reach a node (a second interface).
    pub aliases: BTreeMap<SocketAddr, usize>,
    /// Source addresses other than a node's own, for datagrams from one node to another:
    /// `routes[(from, to)]` (a second interface that the route to `to` goes out of).
    pub routes: BTreeMap<(usize, usize), SocketAddr>,
    /// A node's IPv6 link-local address (also put in `aliases`): its announcements go out a
    /// second time from there to the nodes that have one too (the IPv6 multicast copy), and
    /// its datagrams to a link-local address leave from it.
    pub link_local: BTreeMap<usize, SocketAddr>,
    /// Addresses whose datagrams, to or from them, are lost (an IPv4 outage, say).
    pub dead: BTreeSet<SocketAddr>,
    /// What answers at addresses no node has.
    pub outside: Option<Box<dyn Outside>>,
    /// Datagrams sent to addresses no node has.
    pub sent_outside: u64,
    /// When set, every datagram a node sends is recorded here: (sender node, destination,
    /// bytes).
    pub tap: Option<Vec<(usize, SocketAddr, Vec<u8>)>>,
    /// Each node's `poll_timeout()` as of its last flush: an endpoint's timer changes only with
    /// its inputs, and asking a hundred endpoints of a hundred peers at every step would make
    /// large simulations crawl. Refreshed whole when a run starts (tests may touch an endpoint
    /// directly in between).
    timeouts: Vec<Option<Instant>>,
    /// Hosts of limited speed (see [`Cpu`]); `None`: infinitely fast.
    cpu: Option<(Cpu, Machine)>,
    /// Datagrams dropped because the receiving node's socket was full ([`Cpu::backlog`]).
    pub rcvbuf_drops: u64,
}

impl Sim {
    /// `n` nodes joined pairwise by links with `params`. Nothing is connected yet.
    pub fn new(seed: u64, n: usize, params: LinkParams) -> Self {
        Self::build(seed, n, params, false)
    }

    /// `n` nodes on one LAN segment (0) with discovery on: their announcements reach each
    /// other, as broadcast and multicast would.
    pub fn new_lan(seed: u64, n: usize, params: LinkParams) -> Self {
        let mut sim = Self::build(seed, n, params, true);
        sim.segment = vec![Some(0); n];
        sim
    }

    /// `n` nodes like [`Sim::new`], built with `limits` instead of the defaults, so a test
    /// reaches a bound in a few steps.
    pub fn with_limits(seed: u64, n: usize, params: LinkParams, limits: Limits) -> Self {
        Self::build_with(seed, n, params, false, limits)
    }

    fn build(seed: u64, n: usize, params: LinkParams, discovery: bool) -> Self {
        Self::build_with(seed, n, params, discovery, Limits::default())
    }

    fn build_with(
        seed: u64,
        n: usize,
        params: LinkParams,
        discovery: bool,
        limits: Limits,
    ) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let start = Instant::now();
        let nodes = (0..n)
            .map(|i| {
                let identity = Identity::from_secret(rng.random());
                let cfg = Config {
                    identity: identity.clone(),
                    nick: format!("n{i}"),
                    port: 7654,
                    seed: rng.random(),
                    discovery,
                    session: (1 << 16) | u64::from(rng.random::<u16>()),
                    limits,
                };
                Node {
                    ep: Endpoint::new(cfg, start),
                    identity,
                    addr: SocketAddr::from((Ipv4Addr::new(10, 0, 0, i as u8 + 1), 7654)),
                    events: Vec::new(),
                }
            })
            .collect();
        Self {
            seed,
            now: start,
            start,
            nodes,
            links: vec![vec![params; n]; n],
            burst_bad: vec![vec![false; n]; n],
            cut: BTreeSet::new(),
            deaf: BTreeSet::new(),
            queue: BinaryHeap::new(),
            order: 0,
            rng,
            sent: 0,
            lost: 0,
            largest_datagram: 0,
            sent_by: vec![0; n],
            segment: vec![None; n],
            sent_pairs: vec![vec![0; n]; n],
            announces: 0,
            limits,
            aliases: BTreeMap::new(),
            routes: BTreeMap::new(),
            link_local: BTreeMap::new(),
            dead: BTreeSet::new(),
            outside: None,
            sent_outside: 0,
            tap: None,
            timeouts: vec![None; n],
            cpu: None,
            rcvbuf_drops: 0,
        }
    }

    /// How far behind the shared machine is: how long work arriving now waits for a core.
    pub fn cpu_lag(&self) -> Duration {
        self.cpu.as_ref().map_or(Duration::ZERO, |(_, m)| {
            let free = m.free.iter().min().copied().unwrap_or(self.now);
            free.saturating_duration_since(self.now)
        })
    }

    /// Makes the hosts limited in speed from now on (see [`Cpu`]).
    pub fn set_cpu(&mut self, cpu: Cpu) {
        let machine = Machine {
            free: vec![self.now; cpu.cores.max(1)],
            ready: BinaryHeap::new(),
            waiting: vec![0; self.nodes.len()],
        };
        self.cpu = Some((cpu, machine));
    }

    /// Charges sending one datagram to the machine, if hosts are limited in speed.
    fn charge_send(&mut self) {
        let now = self.now;
        if let Some((cpu, machine)) = &mut self.cpu {
            machine.run(now, cpu.per_send);
        }
    }

    /// A datagram off the wire for node `d.to`: handled now, or queued for the CPU (or dropped
    /// when that node's socket is full).
    fn arrive(&mut self, d: InFlight) {
        let now = self.now;
        let Some((cpu, machine)) = &mut self.cpu else {
            self.nodes[d.to].ep.handle_datagram(now, d.from, &d.bytes);
            self.flush(d.to);
            return;
        };
        if machine.waiting[d.to] >= cpu.backlog {
            self.rcvbuf_drops += 1;
            return;
        }
        let proof = matches!(
            tailchat::proto::wire::decode(&d.bytes).map(|w| w.frames.into_iter().next()),
            Ok(Some(
                tailchat::proto::wire::Frame::Proof(_)
                    | tailchat::proto::wire::Frame::ProofReply(_)
            ))
        );
        let cost = cpu.per_datagram + if proof { cpu.per_proof } else { Duration::ZERO };
        let done = machine.run(now, cost);
        machine.waiting[d.to] += 1;
        machine.ready.push(Reverse(InFlight { at: done, ..d }));
    }

    /// A session number for a node started now: larger than any earlier one, as the program's
    /// (clock milliseconds in the high bits).
    fn next_session(&mut self) -> u64 {
        let ms = self.elapsed().as_millis() as u64 + 2;
        (ms << 16) | u64::from(self.rng.random::<u16>())
    }

    /// Replaces node `i` with a fresh process at the same address: a new identity and session,
    /// nothing remembered.
    pub fn restart_node(&mut self, i: usize) {
        let discovery = self.segment[i].is_some();
        self.start_fresh(i, discovery);
    }

    /// Replaces node `i` with a fresh process, as [`Sim::restart_node`], run without discovery
    /// (`--no-discovery`): it stays on its LAN segment, so it hears the others'
    /// announcements, but makes none.
    pub fn restart_node_without_discovery(&mut self, i: usize) {
        self.start_fresh(i, false);
    }

    fn start_fresh(&mut self, i: usize, discovery: bool) {
        let identity = Identity::from_secret(self.rng.random());
        self.nodes[i].identity = identity.clone();
        let cfg = Config {
            identity,
            nick: format!("n{i}"),
            port: 7654,
            seed: self.rng.random(),
            discovery,
            session: self.next_session(),
            limits: self.limits,
        };
        self.nodes[i].ep = Endpoint::new(cfg, self.now);
        self.nodes[i].events.clear();
        self.flush(i);
    }

    /// Replaces node `i` with a new run of the same peer (same identity, new session) that
    /// remembers what storage would give it.
    pub fn restart_node_as(
        &mut self,
        i: usize,
        next_msg: tailchat::proto::MessageId,
        restored: Vec<tailchat::proto::RestoredPeer>,
    ) {
        let cfg = Config {
            identity: self.nodes[i].identity.clone(),
            nick: format!("n{i}"),
            port: 7654,
            seed: self.rng.random(),
            discovery: self.segment[i].is_some(),
            session: self.next_session(),
            limits: self.limits,
        };
        let now = self.now;
        self.nodes[i].ep = Endpoint::new(cfg, now);
        self.nodes[i].ep.restore(now, next_msg, restored);
        self.flush(i);
    }

    /// Sets both directions between every pair to `params`.
    pub fn set_all_links(&mut self, params: LinkParams) {
        for row in &mut self.links {
            for l in row.iter_mut() {
                *l = params;
            }
        }
    }

    /// Time since the start.
    pub fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    /// Node `i`'s PeerId.
    pub fn id(&self, i: usize) -> PeerId {
        self.nodes[i].ep.peer_id()
    }

    /// Node `i`'s session.
    pub fn session(&self, i: usize) -> u64 {
        self.nodes[i].ep.session()
    }

    /// Node `from` adds node `to`'s address, as `/add` would.
    pub fn add(&mut self, from: usize, to: usize) {
        let addr = self.nodes[to].addr;
        let now = self.now;
        self.nodes[from].ep.add_address(now, addr);
        self.flush(from);
    }

    /// Every node adds node 0, and the simulation runs until all know each other.
    pub fn connect_star(&mut self) {
        for i in 1..self.nodes.len() {
            self.add(i, 0);
        }
        let n = self.nodes.len();
        for i in 1..n {
            for j in (i + 1)..n {
                self.add(i, j);
            }
        }
        let ok = self.run_until_cond(Duration::from_secs(120), |s| {
            s.nodes.iter().all(|node| {
                node.ep.peers().len() == n - 1
                    && node
                        .ep
                        .peers()
                        .iter()
                        .all(|p| p.state == tailchat::proto::PeerState::Online)
            })
        });
        assert!(ok, "seed {}: nodes did not all meet", self.seed);
    }

    /// Node `i` sends `text`.
    pub fn send(&mut self, i: usize, to: Recipients, text: &str) -> MessageId {
        let now = self.now;
        let sent = self.nodes[i]
            .ep
            .send_message(now, to, text)
            .unwrap_or_else(|e| panic!("seed {}: send refused: {e}", self.seed));
        self.flush(i);
        sent.id
    }

    /// Hands raw bytes to node `to` as if from `from`.
    pub fn inject(&mut self, to: usize, from: SocketAddr, bytes: &[u8]) {
        let now = self.now;
        self.nodes[to].ep.handle_datagram(now, from, bytes);
        self.flush(to);
    }

    /// Drains node `i`'s events into its log, then its transmits onto the links: the order the
    /// protocol core documents (a real driver makes the events durable in between).
    pub fn flush(&mut self, i: usize) {
        let now = self.now;
        while let Some(e) = self.nodes[i].ep.poll_event() {
            self.nodes[i].events.push((now, e));
        }
        while let Some(t) = self.nodes[i].ep.poll_transmit() {
            self.send_transmit(i, t);
        }
        while let Some(bytes) = self.nodes[i].ep.poll_announce() {
            self.announces += 1;
            self.charge_send();
            assert!(bytes.len() <= MAX_DATAGRAM);
            let Some(seg) = self.segment[i] else { continue };
            for to in 0..self.nodes.len() {
                if to != i && self.segment[to] == Some(seg) && !self.deaf.contains(&(i, to)) {
                    self.transmit(i, to, bytes.clone());
                    if let (Some(&ll), true) =
                        (self.link_local.get(&i), self.link_local.contains_key(&to))
                    {
                        self.transmit_from(i, to, ll, bytes.clone());
                    }
                }
            }
            // Multicast loops back to the sender, which must ignore its own announcement.
            let own = self.nodes[i].addr;
            self.order += 1;
            self.queue.push(Reverse(InFlight {
                at: self.now,
                order: self.order,
                to: i,
                from: own,
                bytes,
            }));
        }
        self.timeouts[i] = self.nodes[i].ep.poll_timeout();
    }

    /// Puts one of node `i`'s transmits on the wire (or hands it to what lives outside).
    pub fn send_transmit(&mut self, i: usize, t: tailchat::proto::Transmit) {
        if let Some(tap) = &mut self.tap {
            tap.push((i, t.to, t.bytes.clone()));
        }
        self.sent += 1;
        self.sent_by[i] += 1;
        self.charge_send();
        self.largest_datagram = self.largest_datagram.max(t.bytes.len());
        assert!(
            t.bytes.len() <= MAX_DATAGRAM,
            "seed {}: datagram of {} bytes",
            self.seed,
            t.bytes.len()
        );
        if std::env::var_os("SIM_TRACE").is_some() {
            let d = tailchat::proto::wire::decode(&t.bytes);
            eprintln!("{:?} {i}->{}: {d:?}", self.elapsed(), t.to);
        }
        let Some(to) = self.node_at(t.to) else {
            self.sent_outside += 1;
            self.hand_outside(i, t.to, &t.bytes);
            return;
        };
        self.sent_pairs[i][to] += 1;
        let link_local =
            matches!(t.to.ip(), std::net::IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80);
        let src = match self.link_local.get(&i) {
            Some(&ll) if link_local => ll,
            _ => self.source(i, to),
        };
        if self.dead.contains(&t.to) {
            self.lost += 1;
            return;
        }
        self.transmit_from(i, to, src, t.bytes);
    }

    /// The cookie node `to` gives `sender` (run `session`) saying hello from `from`: what
    /// someone who receives at `from` can learn. Node `to`'s other datagrams go out as usual.
    pub fn cookie_for(
        &mut self,
        to: usize,
        from: SocketAddr,
        sender: PeerId,
        session: u64,
    ) -> [u8; 16] {
        use tailchat::proto::wire::{self, Frame, Header, Hello};
        let hello = wire::encode(
            &Header {
                sender,
                session,
                packet: 0,
            },
            &[Frame::Hello(Hello {
                token: [0; 16],
                caps: 0,
            })],
        );
        let now = self.now;
        self.nodes[to].ep.handle_datagram(now, from, &hello);
        let mut cookie = None;
        while let Some(t) = self.nodes[to].ep.poll_transmit() {
            let d = wire::decode(&t.bytes).unwrap();
            match d.frames.first() {
                Some(Frame::Cookie(c)) if t.to == from => cookie = Some(c.cookie),
                _ => self.send_transmit(to, t),
            }
        }
        self.flush(to);
        cookie.expect("a cookie")
    }

    /// The node an address reaches, if any.
    pub fn node_at(&self, addr: SocketAddr) -> Option<usize> {
        self.nodes
            .iter()
            .position(|n| n.addr == addr)
            .or_else(|| self.aliases.get(&addr).copied())
    }

    /// The source address of node `from`'s datagrams to node `to`.
    fn source(&self, from: usize, to: usize) -> SocketAddr {
        self.routes
            .get(&(from, to))
            .copied()
            .unwrap_or(self.nodes[from].addr)
    }

    /// Hands a datagram to what lives outside, and puts its answers on the wire (LAN latency).
    fn hand_outside(&mut self, from: usize, to: SocketAddr, bytes: &[u8]) {
        let Some(mut outside) = self.outside.take() else {
            return;
        };
        let src = self.nodes[from].addr;
        let now = self.now;
        for (src, dst, reply) in outside.receive(now, src, to, bytes) {
            self.send_from_outside(src, dst, reply);
        }
        self.outside = Some(outside);
    }

    /// Puts a datagram from outside (source `src`) on the wire to `dst`, arriving after LAN
    /// latency.
    pub fn send_from_outside(&mut self, src: SocketAddr, dst: SocketAddr, bytes: Vec<u8>) {
        let Some(to) = self.node_at(dst) else { return };
        self.order += 1;
        self.queue.push(Reverse(InFlight {
            at: self.now + LinkParams::lan().latency,
            order: self.order,
            to,
            from: src,
            bytes,
        }));
    }

    /// Loses every datagram on the wire now (those queued for a node's CPU stay).
    pub fn drop_in_flight(&mut self) {
        self.lost += self.queue.len() as u64;
        self.queue.clear();
    }

    fn transmit(&mut self, from: usize, to: usize, bytes: Vec<u8>) {
        let src = self.source(from, to);
        self.transmit_from(from, to, src, bytes);
    }

    /// [`Sim::transmit`] from source address `src`.
    fn transmit_from(&mut self, from: usize, to: usize, src: SocketAddr, bytes: Vec<u8>) {
        if self.cut.contains(&(from, to)) || self.dead.contains(&src) {
            self.lost += 1;
            return;
        }
        let p = self.links[from][to];
        let bad = &mut self.burst_bad[from][to];
        if *bad {
            if self.rng.random_bool(p.burst_exit) {
                *bad = false;
            }
        } else if p.burst_enter > 0.0 && self.rng.random_bool(p.burst_enter) {
            *bad = true;
        }
        let loss = if *bad { p.burst_loss } else { p.loss };
        if self.rng.random_bool(loss) {
            self.lost += 1;
            return;
        }
        let copies = if self.rng.random_bool(p.duplicate) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let jitter = if p.jitter.is_zero() {
                Duration::ZERO
            } else {
                Duration::from_nanos(self.rng.random_range(0..p.jitter.as_nanos() as u64))
            };
            self.order += 1;
            self.queue.push(Reverse(InFlight {
                at: self.now + p.latency + jitter,
                order: self.order,
                to,
                from: src,
                bytes: bytes.clone(),
            }));
        }
    }

    /// The next moment anything happens.
    fn next_time(&self) -> Option<Instant> {
        let net = self.queue.peek().map(|r| r.0.at);
        let cpu = self
            .cpu
            .as_ref()
            .and_then(|(_, m)| m.ready.peek().map(|r| r.0.at));
        let timers = self.timeouts.iter().flatten().copied();
        net.into_iter().chain(cpu).chain(timers).min()
    }

    /// Reads every node's timer again.
    fn refresh_timeouts(&mut self) {
        self.timeouts = self.nodes.iter().map(|n| n.ep.poll_timeout()).collect();
    }

    /// Advances to the next moment anything happens, if it is no later than `limit`.
    pub fn step(&mut self, limit: Instant) -> bool {
        let Some(t) = self.next_time() else {
            return false;
        };
        if t > limit {
            return false;
        }
        self.now = self.now.max(t);
        let now = self.now;
        while self.queue.peek().is_some_and(|r| r.0.at <= now) {
            let d = self.queue.pop().expect("peeked").0;
            self.arrive(d);
        }
        while let Some(d) = self.cpu.as_mut().and_then(|(_, m)| {
            m.ready.peek().is_some_and(|r| r.0.at <= now).then(|| {
                let d = m.ready.pop().expect("peeked").0;
                m.waiting[d.to] -= 1;
                d
            })
        }) {
            self.nodes[d.to].ep.handle_datagram(now, d.from, &d.bytes);
            self.flush(d.to);
        }
        for i in 0..self.nodes.len() {
            if self.timeouts[i].is_some_and(|t| t <= now) {
                self.nodes[i].ep.handle_timeout(now);
                self.flush(i);
            }
        }
        true
    }

    /// Runs for `d` of virtual time.
    pub fn run_for(&mut self, d: Duration) {
        self.refresh_timeouts();
        let limit = self.now + d;
        let mut steps = 0u64;
        while self.step(limit) {
            steps += 1;
            assert!(
                steps < 50_000_000,
                "seed {}: simulation does not settle",
                self.seed
            );
        }
        self.now = limit;
    }

    /// Runs until `cond` holds (checked after every step) or `max` passes; returns whether it
    /// held.
    pub fn run_until_cond(&mut self, max: Duration, cond: impl Fn(&Sim) -> bool) -> bool {
        self.refresh_timeouts();
        let limit = self.now + max;
        let mut steps = 0u64;
        loop {
            if cond(self) {
                return true;
            }
            if !self.step(limit) {
                self.now = limit;
                return cond(self);
            }
            steps += 1;
            assert!(
                steps < 50_000_000,
                "seed {}: simulation does not settle",
                self.seed
            );
        }
    }

    /// Messages node `i` received, as (sender, id, direct, text), in arrival order.
    pub fn received(&self, i: usize) -> Vec<(PeerId, MessageId, bool, String)> {
        self.nodes[i]
            .events
            .iter()
            .filter_map(|(_, e)| match e {
                Event::Message {
                    from,
                    id,
                    direct,
                    text,
                    ..
                } => Some((*from, *id, *direct, text.clone())),
                _ => None,
            })
            .collect()
    }

    /// Whether node `i` has seen an event matching `f`.
    pub fn saw(&self, i: usize, f: impl Fn(&Event) -> bool) -> bool {
        self.nodes[i].events.iter().any(|(_, e)| f(e))
    }
}
