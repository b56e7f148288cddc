//! The tailnet side: its rules one by one (notices, the door, who is who), then whole chats
//! on the in-memory network at tailnet addresses, each with its own fake LocalAPI listing the
//! others, with nobody typing an address.

use super::*;
use crate::app::allow::parse_entry;
use crate::app::tests::{info, notice, start_chat_at, Running, Seen, Switch};
use crate::net::tailnet::fake::{FakeLocalApi, Mode};
use crate::net::tailnet::status::{parse_status, User};
use crate::ui::render::Output;
use serde_json::json;

const STATUS: &str = include_str!("../../../tests/fixtures/tailnet/status.json");

/// A device of a made-up tailnet.
#[derive(Clone, Copy)]
struct Dev {
    host: &'static str,
    login: &'static str,
    ip: &'static str,
    online: bool,
}

const fn dev(host: &'static str, login: &'static str, ip: &'static str) -> Dev {
    Dev {
        host,
        login,
        ip,
        online: true,
    }
}

fn peer_json(d: &Dev, uid: usize) -> serde_json::Value {
    json!({
        "ID": format!("n{uid}"), "PublicKey": format!("nodekey:{uid:064x}"),
        "HostName": d.host, "DNSName": format!("{}.tail1234.ts.net.", d.host), "OS": "linux",
        "UserID": uid, "TailscaleIPs": [d.ip], "Online": d.online, "Active": false,
        "InNetworkMap": true, "InMagicSock": true, "InEngine": false,
    })
}

/// The status `me` sees of a tailnet of `me` and `others`.
fn status_json(me: &Dev, others: &[Dev]) -> String {
    let all: Vec<&Dev> = std::iter::once(me).chain(others).collect();
    let users: serde_json::Map<String, serde_json::Value> = all
        .iter()
        .enumerate()
        .map(|(i, d)| {
            (
                (1000 + i).to_string(),
                json!({"ID": 1000 + i, "LoginName": d.login, "DisplayName": d.host}),
            )
        })
        .collect();
    let peers: serde_json::Map<String, serde_json::Value> = others
        .iter()
        .enumerate()
        .map(|(i, d)| (format!("nodekey:{:064x}", 1001 + i), peer_json(d, 1001 + i)))
        .collect();
    json!({
        "Version": "1.90.0", "BackendState": "Running", "TailscaleIPs": [me.ip],
        "Self": peer_json(me, 1000), "MagicDNSSuffix": "tail1234.ts.net",
        "CurrentTailnet": {"Name": "example.com", "MagicDNSSuffix": "tail1234.ts.net", "MagicDNSEnabled": true},
        "Peer": peers, "User": users,
    })
    .to_string()
}

fn whois_json(d: &Dev) -> String {
    json!({
        "Node": {"ID": 7, "Name": format!("{}.tail1234.ts.net.", d.host), "User": 1,
                 "Addresses": [format!("{}/32", d.ip)], "Hostinfo": {"Hostname": d.host, "OS": "linux"},
                 "ComputedName": d.host, "ComputedNameWithHost": d.host},
        "UserProfile": {"ID": 1, "LoginName": d.login, "DisplayName": d.host},
        "CapMap": null,
    })
    .to_string()
}

/// A fake LocalAPI for `me` in a tailnet of `me` and `others`, answering WhoIs for all.
fn fake_for(me: &Dev, others: &[Dev], mode: Mode) -> FakeLocalApi {
    let mut b = FakeLocalApi::new(mode, &status_json(me, others));
    for d in std::iter::once(me).chain(others) {
        b = b.with_whois(d.ip, &whois_json(d));
    }
    b.run()
}

fn setup(fake: &FakeLocalApi, allow: &[&str]) -> TailnetSetup {
    TailnetSetup {
        socket: fake.path().to_owned(),
        socket_given: true,
        discovery: true,
        allow: AllowList::new(allow.iter().map(|e| parse_entry(e).unwrap()).collect()),
        port: 7654,
        poll_every: Duration::from_millis(100),
    }
}

fn start(switch: &Switch, d: &Dev, peers: &[SocketAddr], tailnet: TailnetSetup) -> Running {
    let nick = d.host.split('-').next().unwrap();
    let addr = SocketAddr::new(d.ip.parse().unwrap(), 7654);
    start_chat_at(switch, nick, addr, peers, None, None, tailnet)
}

/// Collects what `r` shows for `d`.
fn collect(r: &Running, seen: &mut Seen, d: Duration) {
    let until = Instant::now() + d;
    while let Ok(o) = r
        .output
        .recv_timeout(until.saturating_duration_since(Instant::now()))
    {
        seen.0.push(o);
    }
}

/// Waits for a line that `matches`, unless one was seen already (lines of different peers
/// come in either order).
fn seen_or_wait(r: &Running, seen: &mut Seen, what: &str, matches: impl Fn(&Output) -> bool) {
    if !seen.0.iter().any(&matches) {
        r.wait_for(seen, what, matches);
    }
}

fn count(seen: &Seen, part: &str) -> usize {
    seen.0.iter().filter(|o| notice(o, part)).count()
}

const ALICE: Dev = dev("alice-desk", "alice@example.com", "100.64.0.1");
const BOB: Dev = dev("bob-laptop", "bob@example.com", "100.64.0.2");
const CAROL: Dev = dev("carol-pc", "carol@example.com", "100.64.0.3");
/// Online, but runs no tailchat.
const SILENT: Dev = dev("printer", "ops@example.com", "100.64.0.9");
/// Offline.
const GONE: Dev = Dev {
    online: false,
    ..dev("old-box", "ops@example.com", "100.64.0.8")
};

#[test]
fn tailnet_chats_meet_with_no_add_and_know_who_is_who() {
    let switch = Switch::default();
    let devices = [ALICE, BOB, CAROL, SILENT, GONE];
    let others =
        |me: &Dev| -> Vec<Dev> { devices.iter().filter(|d| d.ip != me.ip).copied().collect() };
    let fakes: Vec<FakeLocalApi> = [ALICE, BOB, CAROL]
        .iter()
        .map(|d| fake_for(d, &others(d), Mode::Answer))
        .collect();
    let alice = start(&switch, &ALICE, &[], setup(&fakes[0], &[]));
    let bob = start(&switch, &BOB, &[], setup(&fakes[1], &[]));
    let carol = start(&switch, &CAROL, &[], setup(&fakes[2], &[]));
    let (mut a, mut b, mut c) = (Seen(Vec::new()), Seen(Vec::new()), Seen(Vec::new()));
    seen_or_wait(&alice, &mut a, "bob's join line naming him", |o| {
        notice(
            o,
            "bob joined (100.64.0.2:7654, bob@example.com on bob-laptop)",
        )
    });
    seen_or_wait(&alice, &mut a, "carol's", |o| {
        notice(
            o,
            "carol joined (100.64.0.3:7654, carol@example.com on carol-pc)",
        )
    });
    seen_or_wait(&bob, &mut b, "alice's", |o| {
        notice(
            o,
            "alice joined (100.64.0.1:7654, alice@example.com on alice-desk)",
        )
    });
    seen_or_wait(&carol, &mut c, "bob's", |o| {
        notice(o, "bob joined (100.64.0.2:7654")
    });
    assert_eq!(count(&a, "tailnet discovery on"), 1, "{:#?}", a.0);
    alice.type_line("/peers");
    alice.wait_for(&mut a, "bob in /peers, found through the tailnet", |o| {
        info(o, "bob") && info(o, "tailnet") && info(o, "(bob@example.com on bob-laptop)")
    });
    alice.type_line("hello tailnet");
    bob.wait_for(
        &mut b,
        "alice's line",
        |o| matches!(o, Output::Group { nick, text } if nick == "alice" && text == "hello tailnet"),
    );
    // The printer never answers: the core would say so after 5 hellos (3.75 s); it is a
    // tailnet device, not an address the user asked for, so nothing is shown.
    collect(&alice, &mut a, Duration::from_millis(4500));
    assert_eq!(count(&a, "no answer"), 0, "{:#?}", a.0);
    assert!(
        a.0.iter().all(|o| !notice(o, "100.64.0.8")),
        "the offline box is not contacted"
    );
    assert!(
        fakes[0]
            .requests()
            .iter()
            .any(|r| r.contains("/localapi/v0/whois?addr=100.64.0.2%3a7654")),
        "WhoIs asked for bob"
    );
    assert_eq!(count(&a, "tailnet discovery"), 1, "said once: {:#?}", a.0);
}

#[test]
fn a_tailscaled_that_fails_is_told_once_per_reason_and_the_chat_carries_on() {
    let switch = Switch::default();
    let fake = fake_for(&ALICE, &[BOB], Mode::Forbidden);
    let bob = start(&switch, &BOB, &[], TailnetSetup::off());
    let bob_addr = bob.addr;
    let alice = start(&switch, &ALICE, &[bob_addr], setup(&fake, &[]));
    let mut a = Seen(Vec::new());
    alice.wait_for(&mut a, "the one line", |o| {
        notice(o, "tailnet discovery off: cannot read")
            && notice(o, "(status access denied)")
            && notice(o, "tailscale set --operator")
    });
    alice.wait_for(&mut a, "bob, added by hand", |o| notice(o, "bob joined"));
    collect(&alice, &mut a, Duration::from_millis(600)); // six polls, all refused
    assert_eq!(count(&a, "tailnet discovery"), 1, "{:#?}", a.0);
    fake.set_mode(Mode::Garbage);
    alice.wait_for(&mut a, "a new reason", |o| notice(o, "is not tailscaled's"));
    fake.set_mode(Mode::Close);
    alice.wait_for(&mut a, "another", |o| notice(o, "closed the connection"));
    fake.set_mode(Mode::NeedsLogin);
    alice.wait_for(&mut a, "another", |o| notice(o, "`tailscale up`"));
    fake.set_mode(Mode::Answer);
    alice.wait_for(&mut a, "working again", |o| {
        notice(o, "tailnet discovery on again")
    });
    collect(&alice, &mut a, Duration::from_millis(600));
    let lines: Vec<&Output> = a.0.iter().filter(|o| notice(o, "tailnet")).collect();
    assert_eq!(lines.len(), 5, "one line per change: {lines:#?}");
    alice.type_line("still here");
    let mut b = Seen(Vec::new());
    bob.wait_for(
        &mut b,
        "the chat unaffected",
        |o| matches!(o, Output::Group { text, .. } if text == "still here"),
    );
}

#[test]
fn the_allow_list_keeps_out_whoever_it_does_not_name() {
    let switch = Switch::default();
    let devices = [ALICE, BOB, CAROL];
    let others =
        |me: &Dev| -> Vec<Dev> { devices.iter().filter(|d| d.ip != me.ip).copied().collect() };
    let fakes: Vec<FakeLocalApi> = devices
        .iter()
        .map(|d| fake_for(d, &others(d), Mode::Answer))
        .collect();
    let alice = start(
        &switch,
        &ALICE,
        &[],
        setup(&fakes[0], &["tailnet:BOB@example.com"]),
    );
    let bob = start(&switch, &BOB, &[], setup(&fakes[1], &[]));
    let carol = start(&switch, &CAROL, &[], setup(&fakes[2], &[]));
    let (mut a, mut b, mut c) = (Seen(Vec::new()), Seen(Vec::new()), Seen(Vec::new()));
    alice.wait_for(&mut a, "bob, who is allowed", |o| notice(o, "bob joined"));
    seen_or_wait(&bob, &mut b, "carol", |o| notice(o, "carol joined"));
    // Both sides of bob and carol's handshake are done before carol speaks.
    seen_or_wait(&carol, &mut c, "bob", |o| notice(o, "bob joined"));
    carol.type_line("can alice hear me?");
    bob.wait_for(
        &mut b,
        "carol's line",
        |o| matches!(o, Output::Group { text, .. } if text == "can alice hear me?"),
    );
    collect(&alice, &mut a, Duration::from_millis(1500));
    alice.type_line("/peers");
    collect(&alice, &mut a, Duration::from_millis(300));
    assert!(
        a.0.iter().all(|o| !format!("{o:?}").contains("carol")),
        "carol never shows: {:#?}",
        a.0
    );
    // Alice does not contact carol's device; carol may still hear alice's hellos through
    // peer exchange (the list filters what comes in, not what others hear).
    drop((carol, c));
}

// The rules, one by one.

fn owner(login: &str, device: &str) -> Owner {
    Owner {
        user: User {
            login_name: login.into(),
            display_name: String::new(),
        },
        device: device.into(),
        tags: Vec::new(),
        os: "linux".into(),
    }
}

fn peer(id: u64, nick: &str, addr: &str) -> PeerInfo {
    PeerInfo {
        id: PeerId(id),
        nick: nick.into(),
        addrs: vec![addr.parse().unwrap()],
        found: Found::Incoming,
        last_heard: Instant::now(),
        rtt: None,
        undelivered: 0,
        state: PeerState::Online,
        away: None,
        ephemeral: false,
        key: None,
    }
}

fn quiet_tailnet(discovery: bool) -> Tailnet {
    let setup = TailnetSetup {
        discovery,
        ..TailnetSetup::off()
    };
    Tailnet::new(setup, (true, true), None)
}

#[test]
fn tailscaled_is_told_about_when_its_state_changes_not_at_every_poll() {
    let mut t = quiet_tailnet(true);
    let now = Instant::now();
    let p = PathBuf::from("/run/ts.sock");
    let denied = || Err(LocalApiError::Denied(p.clone(), "permission denied".into()));
    let line = t.on_status(now, denied()).unwrap();
    assert_eq!(
        line,
        "tailnet discovery off: cannot read /run/ts.sock (permission denied) — add yourself to the tailscale group, or run `sudo tailscale set --operator=$USER`"
    );
    assert_eq!(t.on_status(now, denied()), None, "the same reason: quiet");
    let timeout = Err(LocalApiError::Timeout(p.clone(), Duration::from_secs(3)));
    assert!(t
        .on_status(now, timeout)
        .unwrap()
        .contains("did not answer"));
    let st = parse_status(STATUS.as_bytes()).unwrap();
    let on = t.on_status(now, Ok(st.clone())).unwrap();
    assert_eq!(
        on,
        "tailnet discovery on again: 6 other device(s) online in example.com; looking for tailchat on UDP port 0 of 5 of them"
    );
    assert_eq!(t.on_status(now, Ok(st)), None);
    assert!(t.next_wakeup().is_some());
    let mut first = quiet_tailnet(true);
    let st = parse_status(STATUS.as_bytes()).unwrap();
    assert!(first
        .on_status(now, Ok(st))
        .unwrap()
        .starts_with("tailnet discovery on: "));
}

#[test]
fn a_changed_tailnet_user_and_a_nick_of_two_users_are_told_once() {
    let mut t = quiet_tailnet(false);
    let now = Instant::now();
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    t.on_whois(
        now,
        ip("100.64.0.2"),
        Ok(Some(owner("bob@example.com", "laptop"))),
    );
    t.on_whois(
        now,
        ip("100.64.0.9"),
        Ok(Some(owner("mallory@example.com", "desk"))),
    );
    t.on_whois(
        now,
        ip("100.64.0.7"),
        Ok(Some(owner("Bob@Example.com", "pi"))),
    );
    // Bob's join line named him; nothing more to say.
    t.joined(PeerId(1), "100.64.0.2:7654".parse().unwrap(), now);
    assert!(t
        .check_peers(&[peer(1, "bob", "100.64.0.2:7654")])
        .is_empty());
    // The same tailchat identity now speaks from mallory's device.
    let moved = [peer(1, "bob", "100.64.0.9:7654")];
    let lines = t.check_peers(&moved);
    assert_eq!(
        lines,
        [
            "bob's tailnet user changed: it was bob@example.com on laptop, it is now mallory@example.com on desk (100.64.0.9:7654), under the same tailchat identity 00000000",
            "bob (100.64.0.9:7654) is mallory@example.com on desk, but bob was first seen here as bob@example.com on laptop: two tailnet users use the nick bob — /peers tells them apart",
        ]
    );
    assert!(t.check_peers(&moved).is_empty(), "told once");
    // Another of bob's own devices, under another identity: the same user, nothing to say
    // beyond who it is (its join line had no name).
    let lines = t.check_peers(&[peer(2, "bob", "100.64.0.7:7654")]);
    assert_eq!(lines, ["bob (100.64.0.7:7654) is Bob@Example.com on pi"]);
    // Nobody known at an address: nothing said.
    assert!(t.check_peers(&[peer(3, "eve", "10.0.0.3:7654")]).is_empty());
}

#[tokio::test]
async fn the_door_waits_for_whois_on_tailnet_addresses_and_applies_the_allow_list() {
    let dir = tempfile::tempdir().unwrap();
    let (tx, _rx) = mpsc::unbounded_channel();
    let setup = TailnetSetup {
        socket: dir.path().join("none.sock"),
        socket_given: true,
        discovery: true,
        allow: AllowList::new(vec![
            parse_entry("tailnet:bob@example.com").unwrap(),
            parse_entry("192.168.1.0/24").unwrap(),
        ]),
        port: 7654,
        poll_every: POLL_EVERY,
    };
    let mut t = Tailnet::new(setup, (true, true), Some(tx));
    let now = Instant::now();
    t.on_status(now, Ok(parse_status(STATUS.as_bytes()).unwrap()));
    let bob: SocketAddr = "100.64.0.2:7654".parse().unwrap();
    let frank: SocketAddr = "100.64.0.7:7654".parse().unwrap();
    assert!(!t.admit(bob, now), "not known yet");
    assert!(!t.admit(bob, now));
    assert_eq!(t.whois_queue.len(), 1, "asked once");
    t.on_whois(now, bob.ip(), Ok(Some(owner("bob@example.com", "laptop"))));
    assert!(t.admit(bob, now));
    t.on_whois(now, frank.ip(), Ok(Some(owner("frank@example.com", "pc"))));
    assert!(!t.admit(frank, now), "not on the list");
    assert!(t.admit("192.168.1.7:7654".parse().unwrap(), now));
    // Outside the tailnet and the networks listed: asked once (tailscaled may know it), then
    // refused.
    let lan: SocketAddr = "10.9.9.9:7654".parse().unwrap();
    assert!(!t.admit(lan, now));
    t.on_whois(now, lan.ip(), Ok(None));
    assert!(!t.admit(lan, now));
    let c = t.counters();
    assert_eq!((c.awaiting_whois, c.not_allowed), (3, 2));
    // A stale answer is used while it is asked again.
    let later = now + OWNER_FRESH;
    assert!(t.admit(bob, later));
    assert!(t.whois.get(&bob.ip()).is_some_and(|k| k.pending));
}

#[tokio::test]
async fn without_a_list_only_the_first_datagrams_of_a_tailnet_address_wait() {
    let dir = tempfile::tempdir().unwrap();
    let (tx, _rx) = mpsc::unbounded_channel();
    let setup = TailnetSetup {
        socket: dir.path().join("none.sock"),
        socket_given: true,
        discovery: true,
        ..TailnetSetup::off()
    };
    let mut t = Tailnet::new(setup, (true, true), Some(tx));
    let now = Instant::now();
    let lan: SocketAddr = "192.168.1.7:7654".parse().unwrap();
    let tail: SocketAddr = "100.64.0.2:7654".parse().unwrap();
    assert!(
        !t.admit(tail, now),
        "before tailscaled's first answer, it is expected to name it"
    );
    t.on_status(now, Ok(parse_status(STATUS.as_bytes()).unwrap()));
    assert!(t.admit(lan, now));
    assert!(!t.admit(tail, now));
    t.on_whois(
        now,
        tail.ip(),
        Err(LocalApiError::Closed(PathBuf::from("/s"))),
    );
    assert!(
        t.admit(tail, now),
        "tailscaled could not say: let in, unnamed"
    );
    assert_eq!(t.who_at(tail), None);
    // tailscaled fails: nothing waits for it any more.
    t.on_status(now, Err(LocalApiError::Closed(PathBuf::from("/s"))));
    assert!(t.admit("100.64.0.3:7654".parse().unwrap(), now));
}

#[test]
fn names_from_the_tailnet_are_shown_short_and_clean() {
    assert_eq!(
        who(&owner("bob@example.com", "laptop")),
        "bob@example.com on laptop"
    );
    let mut tagged = owner("tagged-devices", "build-1");
    tagged.tags = vec!["tag:server".into(), "tag:ci".into()];
    assert_eq!(who(&tagged), "tag:server,tag:ci on build-1");
    let long = "x".repeat(100);
    assert_eq!(
        who(&owner("a@b", &long)),
        format!("a@b on {}…", "x".repeat(64))
    );
    assert_eq!(who(&owner("a@b", "evil\x1b[2Jhost")), "a@b on evil[2Jhost");
    assert_eq!(who(&owner("", "")), "an unknown user");
}

/// A machine without Tailscale (not even the default socket's folder): a LAN-only user is not
/// told at every start that tailnet discovery is off; a missing socket elsewhere (given with
/// --tailscale-socket, or Tailscale installed and stopped) is still said.
#[test]
fn no_tailscale_installed_is_not_said() {
    let default = std::path::PathBuf::from(crate::net::tailnet::DEFAULT_SOCKET);
    if default.parent().is_some_and(std::path::Path::exists) {
        eprintln!("skipped: Tailscale's folder exists on this machine");
        return;
    }
    let missing = |path: std::path::PathBuf, given: bool, allow: &[&str]| {
        let setup = TailnetSetup {
            socket: path.clone(),
            socket_given: given,
            discovery: true,
            allow: AllowList::new(allow.iter().map(|e| parse_entry(e).unwrap()).collect()),
            port: 7654,
            poll_every: Duration::from_secs(60),
        };
        let mut t = Tailnet::new(setup, (true, true), None);
        t.on_status(Instant::now(), Err(LocalApiError::Missing(path)))
    };
    assert_eq!(missing(default.clone(), false, &[]), None);
    let line = missing(default.clone(), false, &["tailnet:bob@example.com"]).expect("said");
    assert!(line.contains("no tailscaled socket"), "{line}");
    // Named by the user, even where it would be by default: said.
    let line = missing(default, true, &[]).expect("said");
    assert!(line.contains("no tailscaled socket"), "{line}");
    let elsewhere = std::path::PathBuf::from("/nonexistent-tailscale/ts.sock");
    let line = missing(elsewhere, true, &[]).expect("said");
    assert!(
        line.starts_with("tailnet discovery off: no tailscaled socket"),
        "{line}"
    );
}

/// A device re-owned in the admin console: the next device list, which names another owner
/// than the one before, makes its WhoIs answer forgotten, so the next datagram from there
/// waits for a new one (and the allow-list and the names follow), instead of the old owner
/// standing for ten minutes more.
#[test]
fn an_owner_changed_in_the_device_list_is_asked_again() {
    let mut t = quiet_tailnet(false);
    let now = Instant::now();
    let me = dev("me", "me@example.com", "100.64.0.1");
    let (bob, carol) = (
        dev("laptop", "bob@example.com", "100.64.0.2"),
        dev("pi", "carol@example.com", "100.64.0.3"),
    );
    for d in [&bob, &carol] {
        t.on_whois(now, d.ip.parse().unwrap(), Ok(Some(owner(d.login, d.host))));
    }
    let at = |d: &Dev| SocketAddr::new(d.ip.parse().unwrap(), 7654);
    // The first list, then one that differs only in the login's case: nothing forgotten.
    let st = parse_status(status_json(&me, &[bob, carol]).as_bytes()).unwrap();
    let _ = t.on_status(now, Ok(st));
    let agrees = dev("laptop", "Bob@Example.com", "100.64.0.2");
    let st = parse_status(status_json(&me, &[agrees, carol]).as_bytes()).unwrap();
    let _ = t.on_status(now, Ok(st));
    assert_eq!(
        t.who_at(at(&bob)).as_deref(),
        Some("bob@example.com on laptop")
    );
    // The laptop now belongs to mallory.
    let moved = dev("laptop", "mallory@example.com", "100.64.0.2");
    let st = parse_status(status_json(&me, &[moved, carol]).as_bytes()).unwrap();
    let _ = t.on_status(now, Ok(st));
    assert_eq!(t.who_at(at(&bob)), None, "asked again");
    assert_eq!(
        t.who_at(at(&carol)).as_deref(),
        Some("carol@example.com on pi")
    );
}
