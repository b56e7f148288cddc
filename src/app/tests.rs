//! The application end to end, over channels: two or three chats on an in-memory network, each
//! on its own thread and runtime as the program runs it, typed lines in and rendered outputs
//! out. No sockets, no terminal.

use super::tailnet::TailnetSetup;
use super::{run_with, Network, Setup};
use crate::app::start;
use crate::net::addr;
use crate::proto::Endpoint;
use crate::store::journal::Journal;
use crate::ui::render::Output;
use crate::ui::terminal::Input;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{mpsc as std_mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// How long a test waits for an expected line before failing.
const WAIT: Duration = Duration::from_secs(10);

/// Datagrams on their way: (from, bytes).
pub(crate) type Datagram = (SocketAddr, Vec<u8>);
/// Every chat's inbox by address: the in-memory network's "switch".
pub(crate) type Switch = Arc<Mutex<HashMap<SocketAddr, mpsc::UnboundedSender<Datagram>>>>;
/// A datagram seen by a [`MemoryNet`]'s tap.
pub(crate) enum Tap<'a> {
    /// Handed to the core.
    In(&'a [u8]),
    /// One sent by the core, before it is delivered.
    Out,
}
/// Called with every datagram in and out.
pub(crate) type OnTap = Box<dyn FnMut(Tap<'_>) + Send>;

/// A [`Network`] made of channels.
struct MemoryNet {
    /// Our address on the switch.
    addr: SocketAddr,
    /// Datagrams for us.
    inbox: mpsc::UnboundedReceiver<Datagram>,
    /// Datagrams taken from the inbox by `readable` and not yet handed to the core.
    pending: VecDeque<Datagram>,
    /// Everyone's inboxes.
    switch: Switch,
    /// A check run on every datagram in and out.
    tap: Option<OnTap>,
}

impl Network for MemoryNet {
    async fn readable(&mut self) {
        if self.pending.is_empty() {
            match self.inbox.recv().await {
                Some(d) => self.pending.push_back(d),
                None => std::future::pending().await,
            }
        }
    }

    fn receive(
        &mut self,
        ep: &mut Endpoint,
        now: Instant,
        max: usize,
        admit: &mut dyn FnMut(SocketAddr) -> bool,
    ) -> usize {
        while let Ok(d) = self.inbox.try_recv() {
            self.pending.push_back(d);
        }
        let mut taken = 0;
        while taken < max {
            let Some((from, bytes)) = self.pending.pop_front() else {
                break;
            };
            if let Some(tap) = self.tap.as_mut() {
                tap(Tap::In(&bytes));
            }
            if admit(from) {
                ep.handle_datagram(now, from, &bytes);
            }
            taken += 1;
        }
        taken
    }

    async fn transmit(&mut self, ep: &mut Endpoint) {
        while ep.poll_announce().is_some() {}
        while let Some(t) = ep.poll_transmit() {
            if let Some(tap) = self.tap.as_mut() {
                tap(Tap::Out);
            }
            let to = self.switch.lock().unwrap().get(&t.to).cloned();
            if let Some(to) = to {
                let _ = to.send((self.addr, t.bytes));
            }
        }
    }

    fn rescan(&mut self) -> bool {
        false
    }

    fn discovery_interfaces(&self) -> Option<Vec<String>> {
        None
    }
}

/// One running chat, seen from outside.
pub(crate) struct Running {
    /// Typed lines.
    pub(crate) input: mpsc::UnboundedSender<Input>,
    /// What it shows.
    pub(crate) output: std_mpsc::Receiver<Output>,
    /// Its address.
    pub(crate) addr: SocketAddr,
    /// Ends when the chat's loop has returned.
    pub(crate) done: std_mpsc::Receiver<()>,
}

/// Everything shown so far, kept for failure messages.
pub(crate) struct Seen(pub(crate) Vec<Output>);

impl Running {
    /// Waits for a line that `matches`, failing the test after [`WAIT`].
    pub(crate) fn wait_for(&self, seen: &mut Seen, what: &str, matches: impl Fn(&Output) -> bool) {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.output.recv_timeout(left) {
                Ok(o) => {
                    let hit = matches(&o);
                    seen.0.push(o);
                    if hit {
                        return;
                    }
                }
                Err(_) => panic!(
                    "no {what} at {} within {WAIT:?}; saw {:#?}",
                    self.addr, seen.0
                ),
            }
        }
    }

    pub(crate) fn type_line(&self, line: &str) {
        self.input.send(Input::Line(line.to_owned())).unwrap();
    }
}

/// Starts a chat called `nick` at 10.0.0.`host`:7654 on `switch`, contacting `peers` at start.
fn start_chat(
    switch: &Switch,
    nick: &str,
    host: u8,
    peers: &[SocketAddr],
    journal: Option<Journal>,
    tap: Option<OnTap>,
) -> Running {
    let addr: SocketAddr = format!("10.0.0.{host}:7654").parse().unwrap();
    start_chat_at(switch, nick, addr, peers, journal, tap, TailnetSetup::off())
}

/// Starts a chat called `nick` at `addr` on `switch`, contacting `peers` at start, with the
/// tailnet side set up as `tailnet` says.
pub(crate) fn start_chat_at(
    switch: &Switch,
    nick: &str,
    addr: SocketAddr,
    peers: &[SocketAddr],
    journal: Option<Journal>,
    tap: Option<OnTap>,
    tailnet: TailnetSetup,
) -> Running {
    let net = (journal, tap, tailnet);
    start_chat_with(switch, nick, addr, peers, net, |_| {})
}

/// [`start_chat_at`], its journal, tap and tailnet in `more`, with `adjust` applied to the
/// setup before the chat starts.
fn start_chat_with(
    switch: &Switch,
    nick: &str,
    addr: SocketAddr,
    peers: &[SocketAddr],
    (journal, tap, tailnet): (Option<Journal>, Option<OnTap>, TailnetSetup),
    adjust: impl FnOnce(&mut Setup),
) -> Running {
    let (tx, inbox) = mpsc::unbounded_channel();
    switch.lock().unwrap().insert(addr, tx);
    let net = MemoryNet {
        addr,
        inbox,
        pending: VecDeque::new(),
        switch: Arc::clone(switch),
        tap,
    };
    let setup = Setup {
        endpoint: start::test_endpoint(nick),
        session: 1,
        peers: peers
            .iter()
            .map(|a| addr::parse(&a.to_string(), 7654).unwrap())
            .collect(),
        default_port: 7654,
        reaches: (true, true),
        journal,
        scripted: false,
        awaited: None,
        wait: Duration::from_secs(5),
        json: false,
        control_dir: None,
        unshown: Vec::new(),
        files: Default::default(),
        presence: Default::default(),
    };
    let mut setup = setup;
    adjust(&mut setup);
    let (input, input_rx) = mpsc::unbounded_channel();
    let (out_tx, output) = std_mpsc::channel();
    let (done_tx, done) = std_mpsc::channel();
    thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(run_with(
            setup,
            tailnet,
            net,
            Box::new(out_tx),
            input_rx,
            std::future::pending(),
        ));
        let _ = done_tx.send(());
    });
    Running {
        input,
        output,
        addr,
        done,
    }
}

/// The message itself, whether or not it calls us.
fn plain(o: &Output) -> &Output {
    match o {
        Output::Mention(inner) => inner,
        other => other,
    }
}

pub(crate) fn group(o: &Output, nick: &str, text: &str) -> bool {
    matches!(plain(o), Output::Group { nick: n, text: t } if n == nick && t == text)
}

pub(crate) fn notice(o: &Output, part: &str) -> bool {
    matches!(o, Output::Notice(s) if s.contains(part))
}

fn error(o: &Output, part: &str) -> bool {
    matches!(o, Output::Error(s) if s.contains(part))
}

pub(crate) fn info(o: &Output, part: &str) -> bool {
    matches!(o, Output::Info(s) if s.contains(part))
}

#[test]
fn two_chats_meet_talk_directly_and_say_goodbye() {
    let switch = Switch::default();
    let bob = start_chat(&switch, "bob", 2, &[], None, None);
    let alice = start_chat(&switch, "alice", 1, &[bob.addr], None, None);
    let (mut a, mut b) = (Seen(Vec::new()), Seen(Vec::new()));
    alice.wait_for(&mut a, "bob joined", |o| notice(o, "bob joined"));
    bob.wait_for(&mut b, "alice joined", |o| notice(o, "alice joined"));

    alice.type_line("hello bob");
    alice.wait_for(&mut a, "the echo", |o| group(o, "alice", "hello bob"));
    bob.wait_for(&mut b, "the message", |o| group(o, "alice", "hello bob"));

    bob.type_line("/msg alice just you");
    bob.wait_for(&mut b, "the direct echo", |o| {
        matches!(o, Output::Direct { from, to: Some(to), text } if from == "bob" && to == "alice" && text == "just you")
    });
    alice.wait_for(&mut a, "the direct message", |o| {
        matches!(o, Output::Mention(inner) if matches!(inner.as_ref(),
            Output::Direct { from, to: None, text } if from == "bob" && text == "just you"))
    });

    alice.type_line("/msg carol hi");
    alice.wait_for(&mut a, "an error naming who is here", |o| {
        error(o, "no peer called 'carol'; here now: bob")
    });

    alice.type_line("/peers");
    alice.wait_for(&mut a, "bob in /peers", |o| {
        info(o, "bob") && info(o, "online") && info(o, "manual")
    });

    alice.type_line("/quit");
    bob.wait_for(&mut b, "alice left", |o| notice(o, "alice left"));
    alice
        .done
        .recv_timeout(WAIT)
        .expect("alice's loop ends after /quit");
}

#[test]
fn a_message_refused_for_a_full_queue_says_so_rather_than_nobody_is_here() {
    use crate::proto::{Config, Identity, Limits};
    let switch = Switch::default();
    let a_addr: SocketAddr = "10.0.0.1:7654".parse().unwrap();
    let small = |s: &mut Setup| {
        let limits = Limits {
            max_queued_items: 3,
            ..Limits::default()
        };
        s.endpoint = Endpoint::new(
            Config {
                identity: Identity::from_secret([7; 32]),
                nick: "alice".into(),
                port: 7654,
                seed: 7,
                discovery: false,
                session: 1,
                limits,
            },
            Instant::now(),
        );
    };
    let net = (None, None, TailnetSetup::off());
    let alice = start_chat_with(&switch, "alice", a_addr, &[], net, small);
    let bob = start_chat(&switch, "bob", 2, &[a_addr], None, None);
    let (mut a, mut b) = (Seen(Vec::new()), Seen(Vec::new()));
    alice.wait_for(&mut a, "bob joined", |o| notice(o, "bob joined"));
    bob.wait_for(&mut b, "alice joined", |o| notice(o, "alice joined"));
    bob.type_line("/quit");
    alice.wait_for(&mut a, "bob left", |o| notice(o, "bob left"));
    // Three pieces wait for bob; the fourth message has nowhere to go.
    for i in 0..4 {
        alice.type_line(&format!("message {i}"));
    }
    alice.wait_for(&mut a, "the refusal", |o| {
        error(o, "not sent: too many messages already wait for bob")
    });
    assert!(!a.0.iter().any(|o| error(o, "nobody is here")), "{:?}", a.0);
}

#[test]
fn nobody_to_send_to_and_bad_commands_are_told() {
    let switch = Switch::default();
    let alice = start_chat(&switch, "alice", 1, &[], None, None);
    let mut a = Seen(Vec::new());
    alice.type_line("anyone?");
    alice.wait_for(&mut a, "nobody is here", |o| {
        error(o, "not sent: nobody is here yet")
    });
    alice.type_line("/frobnicate");
    alice.wait_for(&mut a, "unknown command", |o| matches!(o, Output::Error(_)));
    alice.type_line("/history");
    alice.wait_for(&mut a, "storage off", |o| {
        error(o, "no history: storage is off")
    });
    alice.type_line("/nick ally");
    alice.wait_for(&mut a, "the rename", |o| notice(o, "you are now ally"));
    alice.type_line("/nick ally");
    alice.wait_for(&mut a, "no rename", |o| notice(o, "you are ally already"));
    alice.type_line("/history ally");
    alice.wait_for(&mut a, "that is you", |o| {
        error(
            o,
            "ally is you: /history NICK shows your conversation with NICK",
        )
    });
    alice.input.send(Input::Eof).unwrap();
    alice.done.recv_timeout(WAIT).expect("end of input quits");
}

#[test]
fn a_message_heard_is_on_disk_before_anything_is_sent_after_it() {
    // Long lines travel one to a datagram, so the burst draws immediate acks (every second
    // packet), not only delayed ones that a later wake-up would send after the sync anyway.
    const LINES: usize = 20;
    let line = |i: usize| format!("durable marker {i:02} {}", "x".repeat(900));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal");
    let (journal, _) = Journal::open(&path).unwrap();
    // (markers heard, datagrams checked, complaints)
    let state = Arc::new(Mutex::new((
        Vec::<Vec<u8>>::new(),
        0usize,
        Vec::<String>::new(),
    )));
    let tap: OnTap = {
        let state = Arc::clone(&state);
        Box::new(move |tap: Tap<'_>| {
            let mut s = state.lock().unwrap();
            match tap {
                Tap::In(bytes) => {
                    for i in 0..LINES {
                        let marker = format!("durable marker {i:02} ").into_bytes();
                        if contains(bytes, &marker) && !s.0.contains(&marker) {
                            s.0.push(marker);
                        }
                    }
                }
                // Whatever bob sends (its acks among it) must find every message it has
                // heard already in the journal file.
                Tap::Out if !s.0.is_empty() => {
                    s.1 += 1;
                    let on_disk = std::fs::read(&path).unwrap_or_default();
                    let missing = s.0.iter().filter(|m| !contains(&on_disk, m)).count();
                    if missing > 0 {
                        s.2.push(format!(
                            "a datagram left with {missing} heard message(s) not on disk"
                        ));
                    }
                }
                Tap::Out => {}
            }
        })
    };
    let switch = Switch::default();
    let bob = start_chat(&switch, "bob", 2, &[], Some(journal), Some(tap));
    let alice = start_chat(&switch, "alice", 1, &[bob.addr], None, None);
    let (mut a, mut b) = (Seen(Vec::new()), Seen(Vec::new()));
    alice.wait_for(&mut a, "bob joined", |o| notice(o, "bob joined"));
    for i in 0..LINES {
        alice.type_line(&line(i));
    }
    bob.wait_for(&mut b, "the last line", |o| {
        group(o, "alice", &line(LINES - 1))
    });
    alice.type_line("/quit");
    alice.done.recv_timeout(WAIT).unwrap();
    let s = state.lock().unwrap();
    assert_eq!(s.0.len(), LINES);
    assert!(s.2.is_empty(), "{:?}", s.2);
    assert!(s.1 > 0, "bob never sent an ack");
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn a_look_alike_nick_cannot_pass_for_another_peer_or_for_us() {
    let switch = Switch::default();
    let alice = start_chat(&switch, "alice", 1, &[], None, None);
    let bob = start_chat(&switch, "bob", 2, &[alice.addr], None, None);
    let fake_bob = start_chat(&switch, "b\u{200b}ob", 3, &[alice.addr], None, None);
    let fake_alice = start_chat(&switch, "alice", 4, &[alice.addr], None, None);
    let mut a = Seen(Vec::new());
    for _ in 0..3 {
        alice.wait_for(&mut a, "a join", |o| notice(o, "joined"));
    }
    // And each of them has alice too (else a line typed now would have nobody to go to).
    for who in [&bob, &fake_bob, &fake_alice] {
        who.wait_for(&mut Seen(Vec::new()), "alice's join", |o| {
            notice(o, "joined")
        });
    }
    let from = |o: &Output, text: &str| match plain(o) {
        Output::Group { nick, text: t } if t == text => Some(nick.clone()),
        _ => None,
    };
    bob.type_line("from the real bob");
    alice.wait_for(&mut a, "bob's line", |o| {
        from(o, "from the real bob").is_some()
    });
    fake_bob.type_line("from the fake bob");
    alice.wait_for(&mut a, "the fake's line", |o| {
        from(o, "from the fake bob").is_some()
    });
    fake_alice.type_line("from a second alice");
    alice.wait_for(&mut a, "the second alice's line", |o| {
        from(o, "from a second alice").is_some()
    });
    let name = |text: &str| a.0.iter().find_map(|o| from(o, text)).unwrap();
    let (real, fake, other) = (
        name("from the real bob"),
        name("from the fake bob"),
        name("from a second alice"),
    );
    assert!(
        real.starts_with("bob#") && fake.starts_with("bob#"),
        "{real} {fake}"
    );
    assert_ne!(real, fake);
    assert!(other.starts_with("alice#"), "{other}");
}

#[test]
fn a_sender_once_alone_in_its_name_is_told_apart_when_a_look_alike_arrives_and_not_after() {
    // The names are kept between messages: each change of who is present must renew them.
    let switch = Switch::default();
    let alice = start_chat(&switch, "alice", 1, &[], None, None);
    let bob = start_chat(&switch, "bob", 2, &[alice.addr], None, None);
    let carol = start_chat(&switch, "carol", 3, &[alice.addr], None, None);
    let mut a = Seen(Vec::new());
    for _ in 0..2 {
        alice.wait_for(&mut a, "a join", |o| notice(o, "joined"));
    }
    // And each of them has alice too (else a line typed now would have nobody to go to).
    for who in [&bob, &carol] {
        who.wait_for(&mut Seen(Vec::new()), "alice joined", |o| {
            notice(o, "alice joined")
        });
    }
    let said = |alice: &Running, a: &mut Seen, who: &Running, text: &str| {
        who.type_line(text);
        alice.wait_for(
            a,
            text,
            |o| matches!(plain(o), Output::Group { text: t, .. } if t == text),
        );
        a.0.iter()
            .find_map(|o| match plain(o) {
                Output::Group { nick, text: t } if t == text => Some(nick.clone()),
                _ => None,
            })
            .unwrap()
    };
    assert_eq!(said(&alice, &mut a, &bob, "one"), "bob");
    carol.type_line("/nick bob");
    alice.wait_for(&mut a, "carol's new nick", |o| {
        notice(o, "carol is now bob")
    });
    // Told apart from the bob already here: it does not read as bob's own rename.
    let carol_as_bob = match a.0.last() {
        Some(Output::Notice(n)) if n.starts_with("carol is now bob#") => {
            n.trim_start_matches("carol is now ").to_owned()
        }
        other => panic!("{other:?}"),
    };
    let two = said(&alice, &mut a, &bob, "two");
    assert!(two.starts_with("bob#"), "{two}");
    carol.type_line("/quit");
    alice.wait_for(&mut a, "carol leaving", |o| notice(o, "left"));
    // A peer that left is still known: bob stays told apart from it (else a newcomer calling
    // itself bob just after bob quit would read as bob) until it is forgotten.
    let still = said(&alice, &mut a, &bob, "still two");
    assert!(still.starts_with("bob#"), "{still}");
    alice.type_line(&format!("/forget {carol_as_bob}"));
    alice.wait_for(&mut a, "carol forgotten", |o| notice(o, "forgot"));
    assert_eq!(said(&alice, &mut a, &bob, "three"), "bob");
    let fake = start_chat(&switch, "b\u{200b}ob", 4, &[alice.addr], None, None);
    alice.wait_for(&mut a, "the look-alike joining", |o| notice(o, "joined"));
    let four = said(&alice, &mut a, &bob, "four");
    assert!(four.starts_with("bob#"), "{four}");
    let fakes = said(&alice, &mut a, &fake, "five");
    assert!(fakes.starts_with("bob#") && fakes != four, "{fakes} {four}");
}

/// A delivery notice about one of two peers sharing a nick says which one, as its lines do.
#[test]
fn a_delivery_notice_names_which_of_two_bobs() {
    let switch = Switch::default();
    let (alice, _bob1, bob2, mut a) = alice_and_two_bobs(&switch);
    // The second bob stops hearing anything: alice's line to both waits for him alone.
    switch.lock().unwrap().remove(&bob2.addr);
    alice.type_line("hello both");
    alice.wait_for(&mut a, "the delay notice", |o| {
        notice(o, "not yet delivered to bob")
    });
    let said =
        a.0.iter()
            .rev()
            .find_map(|o| match o {
                Output::Notice(n) if n.starts_with("not yet delivered to") => Some(n.clone()),
                _ => None,
            })
            .unwrap();
    assert!(said.starts_with("not yet delivered to bob#"), "{said}");
}

/// Commands given the wrong way round, or to ourselves, say what to type.
#[test]
fn mistaken_commands_say_what_to_type() {
    let switch = Switch::default();
    let (alice, _bob, mut a, _) = two_met(&switch);
    alice.type_line("/send /tmp/report.pdf bob");
    alice.wait_for(&mut a, "the order", |o| {
        error(o, "no peer called '/tmp/report.pdf'")
            && error(o, "the nick comes first: /send bob /tmp/report.pdf")
    });
    alice.type_line("/msg alice note to self");
    alice.wait_for(&mut a, "that it is her", |o| {
        error(o, "alice is you: /msg NICK goes to someone else")
    });
    alice.type_line("/forget alice");
    alice.wait_for(&mut a, "that it is her", |o| {
        error(o, "alice is you: /forget is for peers")
    });
    alice.type_line("/send alice /tmp");
    alice.wait_for(&mut a, "that it is her", |o| {
        error(o, "alice is you: /send NICK PATH offers it")
    });
}

/// A burst to a peer that stopped hearing us is one "not yet delivered" line, not one per
/// message.
#[test]
fn a_delayed_burst_is_told_in_one_line() {
    let switch = Switch::default();
    let (alice, bob, mut a, _) = two_met(&switch);
    switch.lock().unwrap().remove(&bob.addr);
    for i in 0..50 {
        alice.type_line(&format!("burst {i}"));
    }
    alice.wait_for(&mut a, "the delay notice", |o| {
        notice(
            o,
            "not yet delivered to bob: “burst 0” and 49 more (still trying)",
        )
    });
    let delays =
        a.0.iter()
            .filter(|o| notice(o, "not yet delivered"))
            .count();
    assert_eq!(delays, 1, "{:#?}", a.0);
}

/// Who starts with a nick a peer here already goes by is told, as a `/nick` to it is.
#[test]
fn starting_with_a_nick_in_use_is_told() {
    let switch = Switch::default();
    let alice = start_chat(&switch, "alice", 1, &[], None, None);
    let other = start_chat(&switch, "alice", 2, &[alice.addr], None, None);
    let mut o = Seen(Vec::new());
    other.wait_for(&mut o, "the warning", |out| {
        notice(out, "someone here is also called alice")
    });
    let told = o.0.iter().filter(|out| notice(out, "someone here")).count();
    assert_eq!(told, 1, "{:#?}", o.0);
}

/// Alice, and two peers called bob who contact her; once she has seen both join, with what
/// she saw.
fn alice_and_two_bobs(switch: &Switch) -> (Running, Running, Running, Seen) {
    let alice = start_chat(switch, "alice", 1, &[], None, None);
    let bob1 = start_chat(switch, "bob", 2, &[alice.addr], None, None);
    let bob2 = start_chat(switch, "bob", 3, &[alice.addr], None, None);
    let mut a = Seen(Vec::new());
    let bob_joined = |o: &Output| matches!(o, Output::Notice(n) if n.starts_with("bob") && n.contains(" joined"));
    alice.wait_for(&mut a, "a bob joining", bob_joined);
    alice.wait_for(&mut a, "another bob joining", bob_joined);
    (alice, bob1, bob2, a)
}

#[test]
fn peers_sharing_a_nick_are_named_by_id_and_taking_a_used_nick_warns() {
    let switch = Switch::default();
    let (alice, bob1, bob2, mut a) = alice_and_two_bobs(&switch);
    // The second is told apart from the first as it arrives (the first too, if the second
    // was known by the time its line was made).
    assert!(
        matches!(a.0.last(), Some(Output::Notice(n)) if n.starts_with("bob#")),
        "{:?}",
        a.0
    );
    alice.type_line("/msg bob hi");
    alice.wait_for(&mut a, "the ambiguity", |o| error(o, "is ambiguous"));
    let Some(Output::Error(e)) = a.0.last() else {
        unreachable!()
    };
    let first = e
        .split_whitespace()
        .find(|w| w.starts_with("bob#"))
        .unwrap()
        .trim_end_matches(',')
        .to_owned();
    alice.type_line(&format!("/msg {first} just you"));
    alice.wait_for(
        &mut a,
        "the echo naming that bob",
        |o| matches!(o, Output::Direct { to: Some(to), .. } if *to == first),
    );
    let mut b1 = Seen(Vec::new());
    let mut b2 = Seen(Vec::new());
    let got = |seen: &Seen| {
        seen.0
            .iter()
            .any(|o| matches!(plain(o), Output::Direct { text, .. } if text == "just you"))
    };
    // Exactly one of the two got it; the other then hears the group line after it.
    alice.type_line("to both");
    bob1.wait_for(&mut b1, "the group line", |o| group(o, "alice", "to both"));
    bob2.wait_for(&mut b2, "the group line", |o| group(o, "alice", "to both"));
    assert!(got(&b1) != got(&b2), "one bob only");

    // Their presence is told apart too: which bob went away.
    bob2.type_line("/away lunch");
    alice.wait_for(&mut a, "which bob is away", |o| {
        matches!(o, Output::Notice(n) if n.starts_with("bob#") && n.ends_with(" is away: lunch"))
    });

    alice.type_line("/nick bob");
    alice.wait_for(&mut a, "the warning", |o| {
        notice(o, "someone here is also called bob")
    });
}

/// Alice and bob, who contacts her, once each has seen the other join, with what they saw.
fn alice_and_bob(switch: &Switch) -> (Running, Running, Seen, Seen) {
    let alice = start_chat(switch, "alice", 1, &[], None, None);
    let bob = start_chat(switch, "bob", 2, &[alice.addr], None, None);
    let mut a = Seen(Vec::new());
    alice.wait_for(&mut a, "bob joined", |o| notice(o, "bob joined"));
    let mut b = Seen(Vec::new());
    bob.wait_for(&mut b, "alice joined", |o| notice(o, "alice joined"));
    (alice, bob, a, b)
}

/// Taking the nick of a peer that is not here now (not answering) says so, rather than that
/// someone here has it.
#[test]
fn taking_the_nick_of_a_peer_not_here_says_it_is_not_here() {
    let switch = Switch::default();
    let (alice, bob, mut a, _) = two_met(&switch);
    switch.lock().unwrap().remove(&bob.addr);
    alice.type_line("are you there?");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !a.0.iter().any(|o| notice(o, "bob is not answering")) {
        let left = deadline.saturating_duration_since(Instant::now());
        let o = alice
            .output
            .recv_timeout(left)
            .expect("bob not answering within 30 s");
        a.0.push(o);
    }
    alice.type_line("/nick bob");
    alice.wait_for(&mut a, "the warning", |o| {
        notice(o, "a peer you know (not here now) is also called bob")
    });
}

/// A peer whose nick looks like ours (`Bob` for `bob`) is named with its id everywhere: in
/// `/peers` and in the echo of `/msg`, as in its lines; and one who takes such a nick is told.
#[test]
fn a_nick_that_looks_like_ours_is_shown_with_its_id() {
    let switch = Switch::default();
    let (alice, bob, mut a, mut b) = alice_and_bob(&switch);
    alice.type_line("/nick Bob");
    alice.wait_for(&mut a, "the warning", |o| {
        notice(o, "someone here goes by bob, which looks like Bob")
    });
    bob.wait_for(&mut b, "the rename", |o| notice(o, "alice is now Bob#"));
    bob.type_line("/peers");
    bob.wait_for(
        &mut b,
        "her row, with her id",
        |o| matches!(o, Output::Info(l) if l.starts_with("Bob#") && l.contains("online")),
    );
    bob.type_line("/msg Bob yo");
    bob.wait_for(&mut b, "the echo, with her id", |o| {
        matches!(o, Output::Direct { to: Some(to), text, .. } if to.starts_with("Bob#") && text == "yo")
    });
    // And on her side, the bob who is not her.
    alice.type_line("/peers");
    alice.wait_for(
        &mut a,
        "his row, with his id",
        |o| matches!(o, Output::Info(l) if l.starts_with("bob#") && l.contains("online")),
    );
}

#[test]
fn whois_tells_everything_about_one_peer() {
    let switch = Switch::default();
    let (alice, bob, mut a, _) = alice_and_bob(&switch);
    bob.type_line("/nick robert");
    alice.wait_for(&mut a, "the rename", |o| notice(o, "bob is now robert"));
    alice.type_line("/whois robert");
    alice.wait_for(&mut a, "the last line", |o| info(o, "last heard"));
    for part in [
        "robert — id ",
        "online",
        "10.0.0.2:7654",
        "found: incoming",
        "last heard",
    ] {
        assert!(
            a.0.iter().any(|o| info(o, part)),
            "no {part:?} in {:#?}",
            a.0
        );
    }
    alice.type_line("/whois carol");
    alice.wait_for(&mut a, "an error", |o| error(o, "no peer called 'carol'"));
}

/// A chat at 10.0.0.`host` whose identity is always the same for the same `secret`, in run
/// `session`: the same person starting tailchat again.
fn start_as(
    switch: &Switch,
    nick: &str,
    host: u8,
    peers: &[SocketAddr],
    secret: u8,
    session: u64,
) -> Running {
    use crate::proto::{Config, Identity, Limits};
    let addr: SocketAddr = format!("10.0.0.{host}:7654").parse().unwrap();
    let nick_owned = nick.to_owned();
    let same = move |s: &mut Setup| {
        s.endpoint = Endpoint::new(
            Config {
                identity: Identity::from_secret([secret; 32]),
                nick: nick_owned,
                port: 7654,
                seed: u64::from(secret),
                discovery: false,
                session,
                limits: Limits::default(),
            },
            Instant::now(),
        );
        s.session = session;
    };
    start_chat_with(
        switch,
        nick,
        addr,
        peers,
        (None, None, TailnetSetup::off()),
        same,
    )
}

#[test]
fn a_peer_back_under_another_nick_is_told_as_the_one_it_was() {
    let switch = Switch::default();
    let alice = start_chat(&switch, "alice", 1, &[], None, None);
    let bob = start_as(&switch, "bob", 2, &[alice.addr], 9, 1);
    let mut a = Seen(Vec::new());
    alice.wait_for(&mut a, "bob joined", |o| {
        notice(o, "bob joined (10.0.0.2:7654)")
    });
    bob.type_line("/quit");
    alice.wait_for(&mut a, "bob left", |o| notice(o, "bob left"));
    bob.done
        .recv_timeout(WAIT)
        .expect("bob's loop ends after /quit");
    // He starts again, as carl.
    let _carl = start_as(&switch, "carl", 2, &[alice.addr], 9, 2);
    alice.wait_for(&mut a, "carl joined, once bob", |o| {
        notice(o, "carl joined (10.0.0.2:7654), known before as bob")
    });
    alice.type_line("/whois carl");
    alice.wait_for(&mut a, "both nicks", |o| {
        info(o, "nicks      bob → carl (this run)")
    });
}

#[test]
fn a_direct_message_to_someone_who_left_waits_for_them() {
    let switch = Switch::default();
    let alice = start_chat(&switch, "alice", 1, &[], None, None);
    let bob = start_chat(&switch, "bob", 2, &[alice.addr], None, None);
    let (mut a, mut b) = (Seen(Vec::new()), Seen(Vec::new()));
    alice.wait_for(&mut a, "bob joined", |o| notice(o, "bob joined"));
    // Bob's side of the handshake ends a moment after alice's; a leave goes only to peers
    // whose session is established, so bob quits once he has seen alice too.
    bob.wait_for(&mut b, "alice joined", |o| notice(o, "alice joined"));
    bob.type_line("/quit");
    alice.wait_for(&mut a, "bob left", |o| notice(o, "bob left"));
    alice.type_line("/msg bob see you tomorrow");
    alice.wait_for(&mut a, "the echo", |o| {
        matches!(o, Output::Direct { to: Some(to), text, .. } if to == "bob" && text == "see you tomorrow")
    });
    alice.wait_for(&mut a, "that it waits", |o| {
        notice(o, "bob is not here: messages to them are kept")
    });
    alice.type_line("/msg nobody hi");
    alice.wait_for(&mut a, "who is known", |o| {
        error(o, "no peer called 'nobody'; known, not here now: bob")
    });
    // `bob:` as Tab completes it at the start of a line: bob.
    alice.type_line("/msg bob: and the day after");
    alice.wait_for(&mut a, "the echo to bob", |o| {
        matches!(o, Output::Direct { to: Some(to), text, .. } if to == "bob" && text == "and the day after")
    });
}

/// Two chats that have met, each having seen the other join.
fn two_met(switch: &Switch) -> (Running, Running, Seen, Seen) {
    let alice = start_chat(switch, "alice", 1, &[], None, None);
    let bob = start_chat(switch, "bob", 2, &[alice.addr], None, None);
    let (mut a, mut b) = (Seen(Vec::new()), Seen(Vec::new()));
    alice.wait_for(&mut a, "bob joined", |o| notice(o, "bob joined"));
    bob.wait_for(&mut b, "alice joined", |o| notice(o, "alice joined"));
    (alice, bob, a, b)
}

#[test]
fn an_action_is_shown_as_one_to_everyone() {
    let switch = Switch::default();
    let (alice, bob, mut a, mut b) = two_met(&switch);
    alice.type_line("/me waves at bob");
    let action = |o: &Output| matches!(plain(o), Output::Action { nick, text } if nick == "alice" && text == "waves at bob");
    alice.wait_for(&mut a, "the echo", action);
    bob.wait_for(&mut b, "the action, calling bob", |o| {
        matches!(o, Output::Mention(_)) && action(o)
    });
    alice.type_line("/me");
    alice.wait_for(&mut a, "the usage", |o| error(o, "usage: /me TEXT"));
}

#[test]
fn away_and_back_are_seen_by_peers_in_notices_peers_and_msg() {
    let switch = Switch::default();
    let (alice, bob, mut a, mut b) = two_met(&switch);
    alice.type_line("/away out for lunch");
    alice.wait_for(&mut a, "our own notice", |o| {
        notice(o, "you are away: out for lunch")
    });
    bob.wait_for(&mut b, "alice away", |o| {
        notice(o, "alice is away: out for lunch")
    });
    bob.type_line("/peers");
    bob.wait_for(&mut b, "away in /peers", |o| {
        info(o, "alice") && info(o, "away: out for lunch")
    });
    bob.type_line("/msg alice are you there?");
    bob.wait_for(
        &mut b,
        "the echo",
        |o| matches!(o, Output::Direct { text, .. } if text == "are you there?"),
    );
    bob.type_line("/whois alice");
    bob.wait_for(&mut b, "away in /whois", |o| {
        info(o, "away") && info(o, "out for lunch")
    });
    // Typing does not end an away set by hand; /back does.
    alice.type_line("still eating");
    alice.wait_for(&mut a, "the echo", |o| group(o, "alice", "still eating"));
    alice.type_line("/back");
    alice.wait_for(&mut a, "back", |o| notice(o, "you are back"));
    bob.wait_for(&mut b, "alice back", |o| notice(o, "alice is back"));
    let away_notices = b.0.iter().filter(|o| notice(o, "alice is away")).count();
    assert_eq!(
        away_notices, 1,
        "once as news; the /msg right after does not say it again: {:#?}",
        b.0
    );
}

#[test]
fn forget_drops_a_departed_peer_and_its_queue() {
    let switch = Switch::default();
    let (alice, bob, mut a, mut b) = two_met(&switch);
    alice.type_line("/forget bob");
    alice.wait_for(&mut a, "refused while bob is here", |o| {
        error(
            o,
            "bob is here: /forget is for peers who have left for good",
        )
    });
    bob.type_line("/quit");
    alice.wait_for(&mut a, "bob left", |o| notice(o, "bob left"));
    drop(b.0.drain(..));
    alice.type_line("kept for bob");
    alice.wait_for(&mut a, "kept", |o| {
        notice(o, "bob is not here: messages to them are kept")
    });
    alice.type_line("/forget bob");
    alice.wait_for(&mut a, "forgotten", |o| {
        notice(o, "forgot bob: 1 message waiting for them dropped")
    });
    alice.type_line("/peers");
    alice.wait_for(&mut a, "no peers", |o| info(o, "no peers yet"));
    alice.type_line("/msg bob hello?");
    alice.wait_for(&mut a, "unknown now", |o| error(o, "no peer called 'bob'"));
    alice.type_line("/forget nobody");
    alice.wait_for(&mut a, "unknown", |o| error(o, "no peer called 'nobody'"));
}

/// `/add` of an address a peer here answers at says so, naming the peer as lines do.
#[test]
fn adding_the_address_of_a_peer_here_says_who_it_is() {
    let switch = Switch::default();
    let (alice, bob, mut a, _) = two_met(&switch);
    alice.type_line(&format!("/add {}", bob.addr));
    alice.wait_for(&mut a, "already connected", |o| {
        notice(o, &format!("already connected to bob at {}", bob.addr))
    });
}

/// A mistyped `/add`: nobody answers there, and `/forget ADDR` stops the trying.
#[test]
fn forget_stops_trying_an_added_address_nobody_answers() {
    let switch = Switch::default();
    let alice = start_chat(&switch, "alice", 1, &[], None, None);
    let mut a = Seen(Vec::new());
    alice.type_line("/add 10.9.9.9:7688");
    alice.wait_for(&mut a, "the contact begun", |o| {
        notice(o, "contacting 10.9.9.9:7688")
    });
    alice.type_line("/forget 10.9.9.9:7688");
    alice.wait_for(&mut a, "the trying stopped", |o| {
        notice(o, "no longer trying 10.9.9.9:7688 (nobody answered there)")
    });
    alice.type_line("/forget 10.9.9.9:7688");
    alice.wait_for(&mut a, "nothing left to stop", |o| {
        error(o, "nothing is being tried at 10.9.9.9:7688: /forget ADDR stops an address you /added where nobody answers")
    });
}

/// A peer unheard for `forget_after` is forgotten, but not one that messages wait for: those
/// are the user's, and a clock set weeks ahead looks like a month away; said once, with the
/// `/forget` that drops them.
#[test]
fn forget_after_keeps_a_peer_that_messages_wait_for() {
    let switch = Switch::default();
    let a_addr: SocketAddr = "10.0.0.1:7654".parse().unwrap();
    let soon = |s: &mut Setup| {
        s.presence.forget_after = Some(Duration::from_millis(300));
        s.presence.forget_check_every = Some(Duration::from_millis(50));
    };
    let net = (None, None, TailnetSetup::off());
    let alice = start_chat_with(&switch, "alice", a_addr, &[], net, soon);
    let bob = start_chat(&switch, "bob", 2, &[a_addr], None, None);
    let carol = start_chat(&switch, "carol", 3, &[a_addr], None, None);
    let mut a = Seen(Vec::new());
    for _ in 0..2 {
        alice.wait_for(&mut a, "a join", |o| notice(o, " joined"));
    }
    for (chat, nick) in [(&bob, "bob"), (&carol, "carol")] {
        let mut seen = Seen(Vec::new());
        chat.wait_for(&mut seen, "alice joined", |o| notice(o, "alice joined"));
        chat.type_line("/quit");
        alice.wait_for(&mut a, "a leave", |o| notice(o, &format!("{nick} left")));
    }
    alice.type_line("/msg bob for when you are back");
    let forgot_carol = |o: &Output| notice(o, "forgot carol: not heard for 0 days (forget_after)");
    let kept_bob = |o: &Output| {
        notice(
            o,
            "bob not heard for 0 days (forget_after), but 1 message waits for them: kept — /forget bob drops them",
        )
    };
    // (In either order.)
    for _ in 0..2 {
        alice.wait_for(&mut a, "carol forgotten, bob kept", |o| {
            forgot_carol(o) || kept_bob(o)
        });
    }
    assert!(
        a.0.iter().any(forgot_carol) && a.0.iter().any(kept_bob),
        "{:?}",
        a.0
    );
    let told = a.0.iter().filter(|o| notice(o, "bob not heard")).count();
    assert_eq!(told, 1, "{:?}", a.0);
    assert!(!a.0.iter().any(|o| notice(o, "forgot bob")), "{:?}", a.0);
}

/// Two bobs, one gone: `/msg bob` asks which; `/forget bob` means the one that left (the
/// other is here), and the line names it apart from the one still here.
#[test]
fn forget_by_a_shared_nick_means_the_one_that_left() {
    let switch = Switch::default();
    let (alice, bob1, bob2, mut a) = alice_and_two_bobs(&switch);
    // Bob's side of the handshake done too, or his leave has nobody to go to (alice would
    // see him go only when he stops answering, 15 s later).
    let mut b1 = Seen(Vec::new());
    bob1.wait_for(&mut b1, "alice joined", |o| notice(o, "alice joined"));
    bob1.type_line("/quit");
    alice.wait_for(&mut a, "a bob leaving", |o| notice(o, " left"));
    // The bob here may be someone who took the nick of the one who left: asked which.
    alice.type_line("/msg bob which of you?");
    alice.wait_for(&mut a, "the question", |o| {
        error(o, "'bob' is ambiguous: bob#") && error(o, "ends the doubt")
    });
    alice.type_line("/forget bob");
    alice.wait_for(&mut a, "the departed bob forgotten", |o| {
        notice(o, "forgot bob#")
    });
    alice.type_line("/msg bob still here?");
    let mut b2 = Seen(Vec::new());
    bob2.wait_for(
        &mut b2,
        "the message to the bob still here",
        |o| matches!(plain(o), Output::Direct { text, .. } if text == "still here?"),
    );
}

/// Our lines are marked echoed once the screen has written them, so that only one sent but
/// never echoed (a crash between the two, here a `Said` appended by hand after the run) is
/// shown again at the next start.
#[test]
fn our_lines_echoed_are_marked_so_only_one_never_echoed_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal");
    let (journal, _) = Journal::open(&path).unwrap();
    let switch = Switch::default();
    let with = (Some(journal), None, TailnetSetup::off());
    let a_addr: SocketAddr = "10.0.0.1:7654".parse().unwrap();
    let alice = start_chat_with(&switch, "alice", a_addr, &[], with, |_| {});
    let bob = start_chat(&switch, "bob", 2, &[a_addr], None, None);
    let (mut a, mut b) = (Seen(Vec::new()), Seen(Vec::new()));
    alice.wait_for(&mut a, "bob joined", |o| notice(o, "bob joined"));
    bob.wait_for(&mut b, "alice joined", |o| notice(o, "alice joined"));
    for text in ["first", "second"] {
        alice.type_line(text);
        alice.wait_for(
            &mut a,
            "the echo",
            |o| matches!(o, Output::Group { text: t, .. } if t == text),
        );
    }
    alice.type_line("/quit");
    alice.done.recv_timeout(WAIT).unwrap();
    let (mut journal, restored) = Journal::open(&path).unwrap();
    assert!(restored.unshown.is_empty(), "{:?}", restored.unshown);
    journal
        .append(&crate::store::journal::Record::Said {
            at_ms: 0,
            id: restored.next_msg,
            nick: "alice".into(),
            direct_to: None,
            recipients: vec![],
            text: "never echoed".into(),
            action: false,
        })
        .unwrap();
    journal.sync().unwrap();
    drop(journal);
    let (_journal, restored) = Journal::open(&path).unwrap();
    let texts: Vec<&str> = restored
        .unshown
        .iter()
        .map(|u| u.line.text.as_str())
        .collect();
    assert_eq!(texts, ["never echoed"]);
}

/// Going away by itself is not kept for the next run (whoever starts tailchat again is at the
/// keyboard); an away set by hand is.
#[test]
fn an_automatic_away_is_not_kept_for_the_next_run() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal");
    let (journal, _) = Journal::open(&path).unwrap();
    let switch = Switch::default();
    let addr: SocketAddr = "10.0.0.1:7654".parse().unwrap();
    let with = (Some(journal), None, TailnetSetup::off());
    let alice = start_chat_with(&switch, "alice", addr, &[], with, |s| {
        s.presence.auto_away = Some(Duration::from_millis(100));
    });
    let mut a = Seen(Vec::new());
    alice.wait_for(&mut a, "idle", |o| notice(o, "you are away: idle"));
    alice.type_line("/away lunch");
    alice.wait_for(&mut a, "lunch", |o| notice(o, "you are away: lunch"));
    alice.type_line("/back");
    alice.wait_for(&mut a, "back", |o| notice(o, "you are back"));
    alice.wait_for(&mut a, "idle again", |o| notice(o, "you are away: idle"));
    let (_, restored) = Journal::open_read_only(&path).unwrap();
    assert_eq!(
        restored.away, None,
        "the next run does not start away: idle"
    );
}

#[test]
fn idle_for_auto_away_means_away_until_the_next_line_typed() {
    let switch = Switch::default();
    let addr: SocketAddr = "10.0.0.1:7654".parse().unwrap();
    let none = (None, None, TailnetSetup::off());
    let alice = start_chat_with(&switch, "alice", addr, &[], none, |s| {
        s.presence.auto_away = Some(Duration::from_millis(300));
    });
    let bob = start_chat(&switch, "bob", 2, &[alice.addr], None, None);
    let (mut a, mut b) = (Seen(Vec::new()), Seen(Vec::new()));
    alice.wait_for(&mut a, "bob joined", |o| notice(o, "bob joined"));
    alice.wait_for(&mut a, "idle", |o| notice(o, "you are away: idle"));
    bob.wait_for(&mut b, "alice idle", |o| notice(o, "alice is away: idle"));
    alice.type_line("back at my desk");
    alice.wait_for(&mut a, "back", |o| notice(o, "you are back"));
    bob.wait_for(&mut b, "alice back", |o| notice(o, "alice is back"));
    bob.wait_for(&mut b, "her line", |o| group(o, "alice", "back at my desk"));
    // Back first, then the line: bob's notice comes before it.
    let back = b.0.iter().position(|o| notice(o, "alice is back"));
    let line =
        b.0.iter()
            .position(|o| group(o, "alice", "back at my desk"));
    assert!(back < line, "{:#?}", b.0);
}

/// Three peers cut off at once (a switch between them and alice fails): alice reads one line
/// naming all three, not a line each; and one line again when they are back.
#[test]
fn peers_cut_off_together_are_told_in_one_line() {
    let switch = Switch::default();
    let alice = start_chat(&switch, "alice", 1, &[], None, None);
    let mut a = Seen(Vec::new());
    let others: Vec<Running> = ["bob", "carol", "dave"]
        .iter()
        .zip(2u8..)
        .map(|(nick, host)| start_chat(&switch, nick, host, &[alice.addr], None, None))
        .collect();
    // The three joins, in whatever order they come.
    let joined = |a: &Seen| {
        ["bob", "carol", "dave"]
            .iter()
            .all(|n| a.0.iter().any(|o| notice(o, &format!("{n} joined"))))
    };
    while !joined(&a) {
        alice.wait_for(&mut a, "the joins", |o| notice(o, " joined"));
    }
    // Cut: whatever goes to the three, or comes from them, is lost.
    let inboxes: Vec<_> = {
        let mut s = switch.lock().unwrap();
        others
            .iter()
            .map(|r| (r.addr, s.remove(&r.addr).unwrap()))
            .collect()
    };
    // Their datagrams to alice are lost too: her inbox on the switch is a dead end meanwhile.
    let (cut_tx, _cut_rx) = mpsc::unbounded_channel::<Datagram>();
    let alice_inbox = switch.lock().unwrap().insert(alice.addr, cut_tx).unwrap();
    alice.type_line("anyone there?");
    let deadline = Instant::now() + Duration::from_secs(30);
    let said = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let o = alice
            .output
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no 'not answering' within 30 s; saw {:#?}", a.0));
        let hit = notice(&o, "not answering");
        a.0.push(o);
        if hit {
            break a.0.last().cloned().unwrap();
        }
    };
    let Output::Notice(line) = said else {
        panic!("{said:?}")
    };
    assert!(
        line.contains(" are not answering")
            && ["bob", "carol", "dave"].iter().all(|n| line.contains(n)),
        "{line}"
    );
    // Mended: one line again.
    let mut s = switch.lock().unwrap();
    s.insert(alice.addr, alice_inbox);
    for (addr, inbox) in inboxes {
        s.insert(addr, inbox);
    }
    drop(s);
    alice.wait_for(&mut a, "the three back", |o| {
        notice(o, " are answering again")
            && ["bob", "carol", "dave"]
                .iter()
                .all(|n| matches!(o, Output::Notice(l) if l.contains(n)))
    });
    assert!(
        !a.0.iter()
            .any(|o| notice(o, " is not answering") || notice(o, " is answering again")),
        "{:#?}",
        a.0
    );
    drop(others);
}
