//! Which peer a nick typed by the user means. Pure: a function of the peer list, so the rules
//! are tested without a network.

use crate::proto::{PeerId, PeerInfo, PeerState};
use std::net::SocketAddr;

/// Hex digits of a peer id shown to tell apart peers that share a nick.
const ID_PREFIX: usize = 8;

/// Nicks of the peers that have not left (for completion and error messages).
pub fn present_nicks(peers: &[PeerInfo]) -> Vec<String> {
    peers
        .iter()
        .filter(|p| p.state != PeerState::Left)
        .map(|p| p.nick.clone())
        .collect()
}

/// The names peers are shown under (`bob#1d79e0c2` while another peer, or we, goes by a nick
/// that looks the same): every peer of `peers`, those that have left too (a newcomer calling
/// itself bob just after bob quit is not bob), and us (`me`, when given).
pub fn shown_names(
    peers: &[PeerInfo],
    me: Option<(PeerId, &str)>,
) -> crate::ui::present::ShownNames {
    let mut all: Vec<(PeerId, &str)> = peers.iter().map(|p| (p.id, p.nick.as_str())).collect();
    all.extend(me);
    crate::ui::present::ShownNames::new(&all)
}

/// Whether `wanted`, as `NICK#IDPREFIX`, names the peer `nick` whose id (16 hex digits) is
/// `id`: the nick, and the start of the id in either case.
pub fn by_id_prefix(wanted: &str, nick: &str, id: &str) -> bool {
    wanted
        .rsplit_once('#')
        .is_some_and(|(n, prefix)| n == nick && id.starts_with(&prefix.to_ascii_lowercase()))
}

/// The one peer `wanted` means, with its nick: a peer whose nick is exactly `wanted`, or, when
/// several share a nick, `NICK#IDPREFIX` (hex digits of its id), or `#IDPREFIX` alone (4 to 16
/// hex digits: a nick that cannot be typed). One that has left is found too (a message to it
/// waits for its return), and is as much a candidate as one present: a newcomer who takes the
/// nick of a peer who left does not get what was meant for that peer. An exact nick is
/// tried first, so a nick that itself contains `#` (allowed by older versions) still works;
/// then the nick as the screen shows it, so a peer whose nick holds control or invisible
/// characters (`ev<ESC>[7mil`, shown `ev[7mil`) can be named as it is seen.
///
/// # Errors
/// A message for the user: who is known when nobody matches, or how to pick one of several.
pub fn find_peer(peers: &[PeerInfo], wanted: &str) -> Result<(PeerId, String), String> {
    // By the nick itself (exactly, then `NICK#ID`), or by the nick as the screen shows it.
    let matching = |shown: bool| -> Vec<&PeerInfo> {
        if let Some(prefix) = wanted
            .strip_prefix('#')
            .filter(|_| crate::ui::command::is_id_alone(wanted))
        {
            // By the start of its id alone (`#1d79e0c2`): any nick, shown or not.
            let prefix = prefix.to_ascii_lowercase();
            return peers
                .iter()
                .filter(|p| !shown && p.id.to_string().starts_with(&prefix))
                .collect();
        }
        if shown {
            return peers
                .iter()
                .filter(|p| {
                    let shown = crate::ui::render::display_nick(&p.nick);
                    shown != p.nick
                        && (shown == wanted || by_id_prefix(wanted, &shown, &p.id.to_string()))
                })
                .collect();
        }
        let exact: Vec<&PeerInfo> = peers.iter().filter(|p| p.nick == wanted).collect();
        if !exact.is_empty() {
            return exact;
        }
        peers
            .iter()
            .filter(|p| by_id_prefix(wanted, &p.nick, &p.id.to_string()))
            .collect()
    };
    // The shown form last of all: a peer that left, named exactly, is not taken over by one
    // here whose nick only looks the same (`bob` + an invisible character).
    let candidates = [false, true]
        .into_iter()
        .map(matching)
        .find(|found| !found.is_empty())
        .unwrap_or_default();
    match candidates.as_slice() {
        [one] => Ok((one.id, one.nick.clone())),
        [] => {
            // Here: answering this run (or lately). Away: left, or not seen since the start.
            let (gone, here): (Vec<&PeerInfo>, Vec<&PeerInfo>) = peers
                .iter()
                .partition(|p| matches!(p.state, PeerState::Left | PeerState::Offline));
            // Each named as lines name it: two bobs as `bob#1d79e0c2` and `bob#2e01a9f3`.
            let names = shown_names(peers, None);
            let here: Vec<String> = here.iter().map(|p| names.name_of(p.id, &p.nick)).collect();
            let gone: Vec<String> = gone.iter().map(|p| names.name_of(p.id, &p.nick)).collect();
            // Nicks differ by case (`Alice` may be someone else than `alice`): never taken for
            // one another, but pointed out.
            let folded = wanted.to_lowercase();
            let near: Vec<String> = peers
                .iter()
                .filter(|p| p.nick.to_lowercase() == folded)
                .map(|p| names.name_of(p.id, &p.nick))
                .collect();
            let hint = if near.is_empty() {
                String::new()
            } else {
                format!(
                    " — nicks differ by case: did you mean {}?",
                    near.join(" or ")
                )
            };
            let err = match (here.is_empty(), gone.is_empty()) {
                (true, true) => {
                    format!("no peer called '{wanted}'; nobody is known yet — /add HOST[:PORT]")
                }
                (false, true) => {
                    format!("no peer called '{wanted}'; here now: {}", here.join(", "))
                }
                (true, false) => format!(
                    "no peer called '{wanted}'; known, not here now: {}",
                    gone.join(", ")
                ),
                (false, false) => format!(
                    "no peer called '{wanted}'; here now: {}; known, not here now: {}",
                    here.join(", "),
                    gone.join(", ")
                ),
            };
            Err(err + &hint)
        }
        many => {
            let names: Vec<String> = many
                .iter()
                .map(|p| {
                    let id = p.id.to_string();
                    let addr = p.addrs.first().map(|a| show(*a)).unwrap_or_default();
                    let short = id.get(..ID_PREFIX).unwrap_or(&id);
                    let nick = crate::ui::render::display_nick(&p.nick);
                    format!("{nick}#{short} ({addr})")
                })
                .collect();
            // One answering, the others gone (left, or not heard since we started): most
            // likely a peer that reinstalled (a new identity), which is no proof (someone else
            // may have taken the nick), so asked all the same; the old identity can be
            // forgotten.
            let stale: Vec<&&PeerInfo> = many
                .iter()
                .filter(|p| matches!(p.state, PeerState::Offline | PeerState::Left))
                .collect();
            let answering = many.iter().filter(|p| p.state == PeerState::Online).count();
            let hint = if answering == 1 && stale.len() + 1 == many.len() {
                let named: Vec<String> = stale
                    .iter()
                    .map(|p| {
                        let id = p.id.to_string();
                        let short = id.get(..ID_PREFIX).unwrap_or(&id);
                        format!(
                            "/forget {}#{short}",
                            crate::ui::render::display_nick(&p.nick)
                        )
                    })
                    .collect();
                format!(
                    " (only one answers now; if the other{} gone for good — reinstalled, say — {} ends the doubt)",
                    if stale.len() == 1 { " is" } else { "s are" },
                    named.join(", ")
                )
            } else {
                String::new()
            };
            Err(format!(
                "'{wanted}' is ambiguous: {} — name one as NICK#ID{hint}",
                names.join(", ")
            ))
        }
    }
}

/// An address as people write it.
fn show(a: SocketAddr) -> String {
    SocketAddr::new(a.ip().to_canonical(), a.port()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::Found;
    use std::time::Instant;

    /// A nick that cannot be typed (escape sequences, bidi controls) is named by its id alone.
    #[test]
    fn a_peer_is_found_by_the_start_of_its_id_alone() {
        let peers = [
            peer(
                0x1d79_e0c2_0000_0001,
                "w17\u{1b}]2;x\u{7}\u{202e}",
                PeerState::Online,
            ),
            peer(0x2e01_a9f3_0000_0000, "bob", PeerState::Online),
        ];
        assert_eq!(
            find_peer(&peers, "#1D79e0c2").unwrap().0,
            PeerId(0x1d79_e0c2_0000_0001)
        );
        assert_eq!(find_peer(&peers, "#2e01").unwrap().1, "bob");
        assert!(find_peer(&peers, "#3f00").is_err());
        assert!(crate::ui::command::is_id_alone("#1d79"));
        assert!(!crate::ui::command::is_id_alone("#1d7"));
        assert!(!crate::ui::command::is_id_alone("#xyz0"));
    }

    fn peer(id: u64, nick: &str, state: PeerState) -> PeerInfo {
        PeerInfo {
            id: PeerId(id),
            nick: nick.into(),
            addrs: vec!["[::ffff:10.0.0.2]:7654".parse().unwrap()],
            found: Found::Manual,
            last_heard: Instant::now(),
            rtt: None,
            undelivered: 0,
            state,
            away: None,
            ephemeral: false,
            key: None,
        }
    }

    #[test]
    fn a_nick_finds_its_peer_present_or_away() {
        let peers = [
            peer(1, "bob", PeerState::Online),
            peer(2, "carol", PeerState::Left),
        ];
        assert_eq!(find_peer(&peers, "bob"), Ok((PeerId(1), "bob".into())));
        // carol has left: a message to her waits for her return.
        assert_eq!(find_peer(&peers, "carol"), Ok((PeerId(2), "carol".into())));
        let err = find_peer(&peers, "dave").unwrap_err();
        assert_eq!(
            err,
            "no peer called 'dave'; here now: bob; known, not here now: carol"
        );
        let err = find_peer(&[], "bob").unwrap_err();
        assert!(err.contains("nobody is known yet"), "{err}");
        // Another case is another nick (it may be someone else), but it is pointed out.
        let err = find_peer(&peers, "BOB").unwrap_err();
        assert_eq!(
            err,
            "no peer called 'BOB'; here now: bob; known, not here now: carol — nicks differ by case: did you mean bob?"
        );
    }

    #[test]
    fn a_nick_with_a_hash_is_found_whole_before_it_is_split() {
        // An older peer may call itself c#dev: `/msg c#dev` must reach it.
        let peers = [peer(0xabcd, "c#dev", PeerState::Online)];
        assert_eq!(
            find_peer(&peers, "c#dev"),
            Ok((PeerId(0xabcd), "c#dev".into()))
        );
    }

    #[test]
    fn shared_nicks_are_told_apart_by_an_id_prefix() {
        let a = 0x1d79_0000_0000_0001;
        let b = 0x2e80_0000_0000_0002;
        let peers = [
            peer(a, "bob", PeerState::Online),
            peer(b, "bob", PeerState::Unreachable),
        ];
        let err = find_peer(&peers, "bob").unwrap_err();
        assert!(err.contains("ambiguous"), "{err}");
        assert!(err.contains("bob#1d790000 (10.0.0.2:7654)"), "{err}");
        assert!(err.contains("bob#2e800000"), "{err}");
        assert!(
            err.ends_with("— name one as NICK#ID"),
            "for /whois and /history too: {err}"
        );
        assert_eq!(find_peer(&peers, "bob#1D7"), Ok((PeerId(a), "bob".into())));
        assert_eq!(find_peer(&peers, "bob#2e"), Ok((PeerId(b), "bob".into())));
        assert!(find_peer(&peers, "bob#ff").is_err());
    }

    #[test]
    fn a_present_peer_does_not_take_what_is_meant_for_a_departed_one_of_the_same_nick() {
        let peers = [
            peer(1, "bob", PeerState::Left),
            peer(2, "bob", PeerState::Online),
        ];
        // A newcomer who took the nick of one who left: asked which, with how to end the doubt.
        let err = find_peer(&peers, "bob").unwrap_err();
        let old = PeerId(1).to_string();
        assert!(
            err.contains("is ambiguous")
                && err.contains(&format!("/forget bob#{} ends the doubt", &old[..ID_PREFIX])),
            "{err}"
        );
        assert_eq!(
            find_peer(&peers, &format!("bob#{}", PeerId(2))),
            Ok((PeerId(2), "bob".into()))
        );
        // Listed apart when no one matches: not 'here now: bob; known, not here now: bob'.
        let err = find_peer(&peers, "erin").unwrap_err();
        // (All 16 digits: these two ids share their first 8.)
        let bob = |id: u64| PeerId(id).to_string();
        assert_eq!(
            err,
            format!(
                "no peer called 'erin'; here now: bob#{}; known, not here now: bob#{}",
                bob(2),
                bob(1)
            )
        );
    }

    #[test]
    fn a_nick_shared_with_an_identity_not_heard_since_the_start_is_still_asked_about() {
        // bob reinstalled, or someone else took "bob" while bob is away: no proof either way.
        let peers = [
            peer(1, "bob", PeerState::Offline),
            peer(2, "bob", PeerState::Online),
        ];
        let err = find_peer(&peers, "bob").unwrap_err();
        assert!(err.contains("is ambiguous"), "{err}");
        let old = PeerId(1).to_string();
        assert!(
            err.contains(&format!("only one answers now; if the other is gone for good — reinstalled, say — /forget bob#{} ends the doubt", &old[..ID_PREFIX])),
            "{err}"
        );
        // Both answering: no such hint.
        let peers = [
            peer(1, "bob", PeerState::Online),
            peer(2, "bob", PeerState::Online),
        ];
        assert!(!find_peer(&peers, "bob").unwrap_err().contains("/forget"));
    }

    #[test]
    fn a_nick_with_control_characters_is_found_as_it_is_shown() {
        let peers = [
            peer(1, "ev\u{1b}[7mil", PeerState::Online),
            peer(2, "ev\u{1b}[7mil", PeerState::Online),
            peer(3, "zero\u{200b}width", PeerState::Online),
        ];
        assert_eq!(find_peer(&peers, "zerowidth").map(|f| f.0), Ok(PeerId(3)));
        let one = format!("ev[7mil#{}", PeerId(2));
        assert_eq!(find_peer(&peers, &one).map(|f| f.0), Ok(PeerId(2)));
        let err = find_peer(&peers, "ev[7mil").unwrap_err();
        assert!(
            err.contains("ambiguous") && !err.contains('\u{1b}'),
            "{err}"
        );
        // A nick that is shown as it is still needs its exact spelling.
        assert!(find_peer(&[peer(4, "bob", PeerState::Online)], "Bob").is_err());
        // A peer that left, named exactly, is not taken over by one here that only looks
        // like it.
        let peers = [
            peer(5, "bob", PeerState::Left),
            peer(6, "bob\u{200b}", PeerState::Online),
        ];
        assert_eq!(find_peer(&peers, "bob").map(|f| f.0), Ok(PeerId(5)));
    }

    #[test]
    fn present_nicks_leave_out_who_left() {
        let peers = [
            peer(1, "bob", PeerState::Offline),
            peer(2, "carol", PeerState::Left),
            peer(3, "dave", PeerState::Online),
        ];
        assert_eq!(present_nicks(&peers), ["bob", "dave"]);
        // Not found: only who answers is 'here now'; one not seen this run is away.
        assert_eq!(
            find_peer(&peers, "erin").unwrap_err(),
            "no peer called 'erin'; here now: dave; known, not here now: bob, carol"
        );
    }
}
