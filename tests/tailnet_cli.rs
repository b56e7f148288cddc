//! The tailnet's flags on the real program, on loopback with `--no-discovery` (nothing is
//! announced, and there is no tailscaled here): an allow-list keeps a peer out, a `tailnet:`
//! entry with no tailscaled is told once, and bad entries are usage errors. Tailnet discovery
//! itself needs tailnet addresses: `scripts/netns-tailnet-test.sh` runs it in namespaces.

mod common;

use common::{command, Chat};

#[test]
fn an_allow_list_keeps_a_peer_out_and_lets_one_in() {
    let mut alice = Chat::start("alice", &["--bind", "127.0.0.1", "--allow", "127.0.0.3"]);
    let at_alice = format!("127.0.0.1:{}", alice.port);
    let mut carol = Chat::start("carol", &["--bind", "127.0.0.2", "--peer", &at_alice]);
    let mut bob = Chat::start("bob", &["--bind", "127.0.0.3", "--peer", &at_alice]);
    alice.expect("bob joined");
    bob.expect("alice joined");
    // Carol's five hellos went unanswered (she is told, as for any silent address she
    // added): alice dropped them all before the protocol saw them.
    carol.expect("no answer from 127.0.0.1");
    alice.send("/peers");
    alice.expect_where("bob in /peers", |l| {
        l.contains("bob") && l.contains("online")
    });
    alice.send("/quit");
    alice.wait_exit();
    assert!(
        !alice.seen.iter().any(|l| l.contains("carol")),
        "carol never shows: {:#?}",
        alice.seen
    );
}

#[test]
fn a_tailnet_entry_without_tailscaled_is_told_once() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("tailscaled.sock");
    let socket = socket.to_str().unwrap();
    let mut alice = Chat::start(
        "alice",
        &[
            "--bind",
            "127.0.0.1",
            "--allow",
            "tailnet:bob@example.com",
            "--tailscale-socket",
            socket,
        ],
    );
    let line = alice.expect("tailnet:");
    assert!(
        line.contains(
            "the allow-list's tailnet: entries admit nobody for now: no tailscaled socket at"
        ) && line.contains(socket),
        "{line}"
    );
    alice.send("/quit");
    alice.wait_exit();
    let told = alice
        .seen
        .iter()
        .filter(|l| l.contains("tailscaled"))
        .count();
    assert_eq!(told, 1, "{:#?}", alice.seen);
}

#[test]
fn a_bad_allow_entry_is_a_usage_error() {
    let (mut cmd, _dir) = command(&["--no-discovery", "--allow", "laptop"]);
    let out = cmd.stdin(std::process::Stdio::null()).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is not an allow-list entry"), "{err}");
    assert!(err.contains("tailnet:bob@example.com"), "{err}");
}
