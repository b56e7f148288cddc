//! The allow-list (`allow = [...]` in the config file, `--allow`): when it is set, datagrams
//! from anywhere else are dropped before the protocol core sees them — counted, never shown.
//!
//! An entry is an address (`100.64.0.7`), a network (`100.64.0.0/10`, `fd7a:115c:a1e0::/48`),
//! or a tailnet identity: `tailnet:bob@example.com` (any device of that user) or
//! `tailnet:tag:server` (any device with that ACL tag), checked through tailscaled's WhoIs.
//! Addresses are only as trustworthy as the network that carries them: on a tailnet, WireGuard
//! ties each address to one device's key; on a LAN, anyone can send from any address.

use crate::net::tailnet::{Device, Owner};
use std::fmt;
use std::net::IpAddr;

/// One entry of the allow-list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AllowEntry {
    /// A network: an address and how many leading bits must match (32 or 128 for one
    /// address).
    Net(IpAddr, u8),
    /// A tailnet user's login name, or an ACL tag (`tag:…`), as WhoIs reports it.
    Tailnet(String),
}

impl fmt::Display for AllowEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AllowEntry::Net(ip, bits) => write!(f, "{ip}/{bits}"),
            AllowEntry::Tailnet(who) => write!(f, "tailnet:{who}"),
        }
    }
}

/// What the allow-list says about a datagram's source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Let it in.
    Admit,
    /// Drop it.
    Refuse,
    /// Only a tailnet entry could let it in, and who is at the address is not known yet: drop
    /// it, and ask tailscaled.
    AskWhoIs,
}

/// How an allow-list entry is written, for error messages.
pub const ALLOW_USAGE: &str = "expected an address (100.64.0.7), a network (100.64.0.0/10, fd7a:115c:a1e0::/48) or tailnet:LOGIN (tailnet:bob@example.com, tailnet:tag:server)";

/// Parses one entry.
///
/// # Errors
/// A message quoting the entry and saying what forms are accepted.
pub fn parse_entry(text: &str) -> Result<AllowEntry, String> {
    let text = text.trim();
    let bad = || format!("'{text}' is not an allow-list entry: {ALLOW_USAGE}");
    if let Some(who) = text.strip_prefix("tailnet:") {
        let ok = !who.is_empty()
            && who.len() <= 256
            && !who.chars().any(|c| c.is_whitespace() || c.is_control());
        return ok
            .then(|| AllowEntry::Tailnet(who.to_owned()))
            .ok_or_else(bad);
    }
    let (ip, bits) = match text.split_once('/') {
        Some((ip, bits)) => (ip, Some(bits)),
        None => (text, None),
    };
    let ip: IpAddr = ip.parse().map_err(|_| bad())?;
    let ip = ip.to_canonical();
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let bits = match bits {
        None => max,
        Some(b) => b.parse::<u8>().ok().filter(|b| *b <= max).ok_or_else(bad)?,
    };
    Ok(AllowEntry::Net(ip, bits))
}

/// The allow-list in force; empty means everyone is admitted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AllowList {
    /// The entries, as given.
    entries: Vec<AllowEntry>,
}

impl AllowList {
    /// The list of `entries`.
    pub fn new(entries: Vec<AllowEntry>) -> Self {
        Self { entries }
    }

    /// Whether the list is set (then it filters).
    pub fn is_set(&self) -> bool {
        !self.entries.is_empty()
    }

    /// Whether some entry names a tailnet identity (then WhoIs is needed).
    pub fn has_tailnet_entries(&self) -> bool {
        self.entries
            .iter()
            .any(|e| matches!(e, AllowEntry::Tailnet(_)))
    }

    /// The entries, for messages.
    pub fn entries(&self) -> &[AllowEntry] {
        &self.entries
    }

    /// Whether `ip` is in one of the networks.
    pub fn admits_address(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.entries.iter().any(|e| match e {
            AllowEntry::Net(net, bits) => in_network(ip, *net, *bits),
            AllowEntry::Tailnet(_) => false,
        })
    }

    /// Whether the list is set and can never admit `ip`: not by its address, and not by a
    /// tailnet entry either (WhoIs names tailnet addresses only). Such an address is not worth
    /// contacting: its answers would be dropped.
    pub fn never_admits(&self, ip: IpAddr) -> bool {
        self.is_set()
            && !self.admits_address(ip)
            && !(self.has_tailnet_entries() && crate::net::tailnet::in_tailnet_range(ip))
    }

    /// Whether a device that `owner` describes matches a tailnet entry: its user's login name
    /// (compared without regard to case, as e-mail addresses are), or one of its tags.
    pub fn admits_owner(&self, owner: &Owner) -> bool {
        self.admits_identity(&owner.user.login_name, &owner.tags)
    }

    /// Whether a device of the tailnet's list, at `ip`, could be admitted: there is no list,
    /// or its address or its owner (as the list names it) is on it. Only such devices are
    /// worth contacting.
    pub fn may_admit_device(&self, ip: IpAddr, device: &Device) -> bool {
        let login = device.owner.as_ref().map_or("", |u| u.login_name.as_str());
        !self.is_set() || self.admits_address(ip) || self.admits_identity(login, &device.tags)
    }

    fn admits_identity(&self, login: &str, tags: &[String]) -> bool {
        self.entries.iter().any(|e| match e {
            AllowEntry::Tailnet(who) if who.starts_with("tag:") => tags.contains(who),
            AllowEntry::Tailnet(who) => tags.is_empty() && login.eq_ignore_ascii_case(who),
            AllowEntry::Net(..) => false,
        })
    }

    /// The verdict on a datagram from `ip`, given who is known to be there: `None` when
    /// nobody has asked yet, `Some(None)` when tailscaled knows no device there (or could not
    /// say), `Some(Some(owner))` when it named one.
    pub fn verdict(&self, ip: IpAddr, known: Option<Option<&Owner>>) -> Verdict {
        if !self.is_set() || self.admits_address(ip) {
            return Verdict::Admit;
        }
        if !self.has_tailnet_entries() {
            return Verdict::Refuse;
        }
        match known {
            None => Verdict::AskWhoIs,
            Some(Some(owner)) if self.admits_owner(owner) => Verdict::Admit,
            Some(_) => Verdict::Refuse,
        }
    }
}

/// Whether the first `bits` bits of `ip` and `net` agree (of the same family).
fn in_network(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    let (a, b, width) = match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(b)) => (u128::from(u32::from(a)), u128::from(u32::from(b)), 32),
        (IpAddr::V6(a), IpAddr::V6(b)) => (u128::from(a), u128::from(b), 128),
        _ => return false,
    };
    let bits = u32::from(bits).min(width);
    if bits == 0 {
        return true;
    }
    let shift = width - bits;
    (a >> shift) == (b >> shift)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::tailnet::status::User;

    fn list(entries: &[&str]) -> AllowList {
        AllowList::new(entries.iter().map(|e| parse_entry(e).unwrap()).collect())
    }

    fn owner(login: &str, tags: &[&str]) -> Owner {
        Owner {
            user: User {
                login_name: login.into(),
                display_name: String::new(),
            },
            device: "laptop".into(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            os: "linux".into(),
        }
    }

    #[test]
    fn entries_parse_in_every_documented_form() {
        assert_eq!(
            parse_entry("100.64.0.0/10"),
            Ok(AllowEntry::Net("100.64.0.0".parse().unwrap(), 10))
        );
        assert_eq!(
            parse_entry(" fd7a:115c:a1e0::/48 "),
            Ok(AllowEntry::Net("fd7a:115c:a1e0::".parse().unwrap(), 48))
        );
        assert_eq!(
            parse_entry("100.64.0.7"),
            Ok(AllowEntry::Net("100.64.0.7".parse().unwrap(), 32))
        );
        assert_eq!(
            parse_entry("::ffff:10.0.0.1/32"),
            Ok(AllowEntry::Net("10.0.0.1".parse().unwrap(), 32))
        );
        assert_eq!(
            parse_entry("tailnet:bob@example.com"),
            Ok(AllowEntry::Tailnet("bob@example.com".into()))
        );
        for bad in [
            "",
            "tailnet:",
            "tailnet:two words",
            "100.64.0.0/33",
            "fd7a::/129",
            "laptop",
            "100.64.0.0/x",
            "10.0.0.0/8/8",
        ] {
            let e = parse_entry(bad).unwrap_err();
            assert!(e.contains("expected an address"), "{bad}: {e}");
        }
        assert_eq!(
            parse_entry("100.64.0.0/10").unwrap().to_string(),
            "100.64.0.0/10"
        );
    }

    /// Only an address that neither an entry nor a WhoIs answer could let in is never
    /// admitted (tailnet entries can admit tailnet addresses only).
    #[test]
    fn never_admits_what_no_entry_could_let_in() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(!AllowList::default().never_admits(ip("192.0.2.1")));
        let nets = list(&["10.1.0.0/16"]);
        assert!(!nets.never_admits(ip("10.1.2.3")));
        assert!(nets.never_admits(ip("10.2.0.1")));
        assert!(nets.never_admits(ip("127.0.0.1")));
        assert!(nets.never_admits(ip("100.64.0.1")));
        let people = list(&["tailnet:bob@example.com"]);
        assert!(!people.never_admits(ip("100.100.1.2")));
        assert!(!people.never_admits(ip("fd7a:115c:a1e0::9")));
        assert!(people.never_admits(ip("192.168.1.9")));
    }

    #[test]
    fn an_empty_list_admits_everyone() {
        let l = AllowList::default();
        assert_eq!(
            l.verdict("192.0.2.1".parse().unwrap(), None),
            Verdict::Admit
        );
    }

    #[test]
    fn networks_admit_their_addresses_only() {
        let l = list(&["100.64.0.0/10", "fd7a:115c:a1e0::/48", "192.168.1.9"]);
        for yes in [
            "100.64.0.1",
            "100.127.255.255",
            "fd7a:115c:a1e0::9",
            "192.168.1.9",
            "::ffff:100.64.3.4",
        ] {
            assert_eq!(
                l.verdict(yes.parse().unwrap(), None),
                Verdict::Admit,
                "{yes}"
            );
        }
        for no in [
            "100.128.0.1",
            "192.168.1.10",
            "fd7a:115c:a1e1::1",
            "127.0.0.1",
        ] {
            assert_eq!(
                l.verdict(no.parse().unwrap(), None),
                Verdict::Refuse,
                "{no}"
            );
        }
        assert!(list(&["0.0.0.0/0"]).admits_address("203.0.113.5".parse().unwrap()));
        assert!(!list(&["0.0.0.0/0"]).admits_address("::1".parse().unwrap()));
    }

    #[test]
    fn tailnet_entries_wait_for_whois_then_match_user_or_tag() {
        let l = list(&["tailnet:Bob@Example.com", "tailnet:tag:chat", "10.0.0.0/8"]);
        let ip = "100.64.0.2".parse().unwrap();
        assert_eq!(l.verdict(ip, None), Verdict::AskWhoIs);
        assert_eq!(
            l.verdict(ip, Some(None)),
            Verdict::Refuse,
            "no device there"
        );
        let bob = owner("bob@example.com", &[]);
        assert_eq!(l.verdict(ip, Some(Some(&bob))), Verdict::Admit);
        let mallory = owner("mallory@example.com", &[]);
        assert_eq!(l.verdict(ip, Some(Some(&mallory))), Verdict::Refuse);
        let bot = owner("tagged-devices", &["tag:server", "tag:chat"]);
        assert_eq!(l.verdict(ip, Some(Some(&bot))), Verdict::Admit);
        // A tagged device is no person's, whatever its placeholder user says.
        let tagged_bob = owner("bob@example.com", &["tag:ci"]);
        assert_eq!(l.verdict(ip, Some(Some(&tagged_bob))), Verdict::Refuse);
        // Networks are checked first: no WhoIs needed for them.
        assert_eq!(l.verdict("10.1.2.3".parse().unwrap(), None), Verdict::Admit);
    }
}
