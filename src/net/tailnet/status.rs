//! The JSON tailscaled answers, read into what tailchat uses of it: the devices of the tailnet
//! ([`Status`], from `/localapi/v0/status`) and who is at an address ([`Owner`], from
//! `/localapi/v0/whois`). Field names are tailscale's own (`ipn/ipnstate`, `tailcfg`,
//! `client/tailscale/apitype`); fields tailchat does not use are ignored, and a missing one
//! takes its empty value, so a newer or older tailscaled still reads. What does not have the
//! expected shape at all is an error, never a panic.

use serde::Deserialize;
use std::collections::HashMap;
use std::net::IpAddr;

/// The tailnet as this device sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Status {
    /// tailscaled's state: `Running` when connected; `NeedsLogin`, `Stopped`, `Starting`, …
    /// otherwise.
    pub backend_state: String,
    /// This device, when logged in.
    pub me: Option<Device>,
    /// Every other device in the network map, sorted by host name (the map in the JSON has
    /// no order).
    pub devices: Vec<Device>,
    /// The MagicDNS suffix (`tail1234.ts.net`), without dots around it, if known.
    pub magic_dns_suffix: String,
    /// The tailnet's name (`example.com`, `bob@gmail.com`), if known.
    pub tailnet_name: String,
}

/// One device of the tailnet (a `PeerStatus`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Device {
    /// The name the device gave itself (`HostName`).
    pub host_name: String,
    /// Its MagicDNS name with the trailing dot (`laptop.tail1234.ts.net.`).
    pub dns_name: String,
    /// Its tailnet addresses (IPv4 in 100.64.0.0/10, IPv6 in fd7a:115c:a1e0::/48).
    pub ips: Vec<IpAddr>,
    /// Connected to the coordination server.
    pub online: bool,
    /// Its node key has expired: nothing reaches it until it logs in again.
    pub expired: bool,
    /// Its operating system as tailscale names it (`linux`, `macOS`, `windows`, `iOS`,
    /// `android`, …).
    pub os: String,
    /// Its owner, when the status lists one (tagged devices belong to a placeholder user).
    pub owner: Option<User>,
    /// The ACL tags applied to it (`tag:server`); a tagged device belongs to no person.
    pub tags: Vec<String>,
    /// It is here only because it belongs to someone we shared a device with: it may reach
    /// us, we cannot reach it.
    pub sharee: bool,
}

/// A user profile (`tailcfg.UserProfile`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct User {
    /// `bob@example.com`, for display (the identity provider is not part of it).
    pub login_name: String,
    /// `Bob Smith`.
    pub display_name: String,
}

/// Who the tailnet says is at an address: the answer to WhoIs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Owner {
    /// The owner's profile (for a tagged device, tailscale's placeholder `tagged-devices`).
    pub user: User,
    /// The device's MagicDNS name without the suffix (`ComputedName`), else its host name.
    pub device: String,
    /// The device's ACL tags.
    pub tags: Vec<String>,
    /// The device's operating system, if it told.
    pub os: String,
}

impl Owner {
    /// Whether the device is tagged (then it belongs to no person, and [`Owner::user`] is a
    /// placeholder).
    pub fn tagged(&self) -> bool {
        !self.tags.is_empty()
    }
}

/// `ipnstate.Status`, the fields read.
#[derive(Deserialize)]
struct RawStatus {
    #[serde(rename = "BackendState", default)]
    backend_state: String,
    #[serde(rename = "Self", default)]
    me: Option<RawPeer>,
    #[serde(rename = "Peer", default)]
    peer: Option<HashMap<String, RawPeer>>,
    #[serde(rename = "User", default)]
    user: Option<HashMap<String, RawUser>>,
    #[serde(rename = "CurrentTailnet", default)]
    current_tailnet: Option<RawTailnet>,
    /// The legacy place of `CurrentTailnet.MagicDNSSuffix`.
    #[serde(rename = "MagicDNSSuffix", default)]
    magic_dns_suffix: String,
}

/// `ipnstate.TailnetStatus`.
#[derive(Deserialize)]
struct RawTailnet {
    #[serde(rename = "Name", default)]
    name: String,
    #[serde(rename = "MagicDNSSuffix", default)]
    magic_dns_suffix: String,
}

/// `ipnstate.PeerStatus`, the fields read.
#[derive(Deserialize)]
struct RawPeer {
    #[serde(rename = "HostName", default)]
    host_name: String,
    #[serde(rename = "DNSName", default)]
    dns_name: String,
    #[serde(rename = "OS", default)]
    os: String,
    #[serde(rename = "UserID", default)]
    user_id: i64,
    #[serde(rename = "TailscaleIPs", default)]
    tailscale_ips: Option<Vec<String>>,
    #[serde(rename = "Tags", default)]
    tags: Option<Vec<String>>,
    #[serde(rename = "Online", default)]
    online: bool,
    #[serde(rename = "Expired", default)]
    expired: bool,
    #[serde(rename = "ShareeNode", default)]
    sharee_node: bool,
}

/// `tailcfg.UserProfile`, the fields read.
#[derive(Deserialize)]
struct RawUser {
    #[serde(rename = "LoginName", default)]
    login_name: String,
    #[serde(rename = "DisplayName", default)]
    display_name: String,
}

/// `apitype.WhoIsResponse`.
#[derive(Deserialize)]
struct RawWhoIs {
    #[serde(rename = "Node")]
    node: RawNode,
    #[serde(rename = "UserProfile")]
    user_profile: RawUser,
}

/// `tailcfg.Node`, the fields read.
#[derive(Deserialize)]
struct RawNode {
    /// The FQDN with a trailing dot.
    #[serde(rename = "Name", default)]
    name: String,
    #[serde(rename = "ComputedName", default)]
    computed_name: String,
    #[serde(rename = "Hostinfo", default)]
    hostinfo: Option<RawHostinfo>,
    #[serde(rename = "Tags", default)]
    tags: Option<Vec<String>>,
}

/// `tailcfg.Hostinfo`, the fields read.
#[derive(Deserialize, Default)]
struct RawHostinfo {
    #[serde(rename = "Hostname", default)]
    hostname: String,
    #[serde(rename = "OS", default)]
    os: String,
}

/// Reads the answer to `/localapi/v0/status`.
///
/// # Errors
/// The text is not JSON, or not of the shape of tailscale's status (a field of the wrong
/// type); the message is serde's, short.
pub fn parse_status(bytes: &[u8]) -> Result<Status, String> {
    let raw: RawStatus = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    let users = raw.user.unwrap_or_default();
    let device = |p: RawPeer| Device {
        owner: users.get(&p.user_id.to_string()).map(|u| User {
            login_name: u.login_name.clone(),
            display_name: u.display_name.clone(),
        }),
        host_name: p.host_name,
        dns_name: p.dns_name,
        ips: p
            .tailscale_ips
            .unwrap_or_default()
            .iter()
            .filter_map(|ip| ip.parse().ok())
            .collect(),
        online: p.online,
        expired: p.expired,
        os: p.os,
        tags: p.tags.unwrap_or_default(),
        sharee: p.sharee_node,
    };
    let mut devices: Vec<Device> = raw
        .peer
        .unwrap_or_default()
        .into_values()
        .map(device)
        .collect();
    devices.sort_by(|a, b| {
        (a.host_name.as_str(), a.dns_name.as_str()).cmp(&(b.host_name.as_str(), &b.dns_name))
    });
    let (tailnet_name, suffix) = match raw.current_tailnet {
        Some(t) => (t.name, t.magic_dns_suffix),
        None => (String::new(), String::new()),
    };
    Ok(Status {
        backend_state: raw.backend_state,
        me: raw.me.map(device),
        devices,
        magic_dns_suffix: if suffix.is_empty() {
            raw.magic_dns_suffix
        } else {
            suffix
        },
        tailnet_name,
    })
}

/// Reads the answer to `/localapi/v0/whois`.
///
/// # Errors
/// The text is not JSON, or has no `Node` or `UserProfile` object.
pub fn parse_whois(bytes: &[u8]) -> Result<Owner, String> {
    let raw: RawWhoIs = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    let hostinfo = raw.node.hostinfo.unwrap_or_default();
    let device = [
        raw.node.computed_name.as_str(),
        raw.node.name.split('.').next().unwrap_or_default(),
        hostinfo.hostname.as_str(),
    ]
    .into_iter()
    .find(|n| !n.is_empty())
    .unwrap_or_default()
    .to_owned();
    Ok(Owner {
        user: User {
            login_name: raw.user_profile.login_name,
            display_name: raw.user_profile.display_name,
        },
        device,
        tags: raw.node.tags.unwrap_or_default(),
        os: hostinfo.os,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = include_str!("../../../tests/fixtures/tailnet/status.json");
    const WHOIS_BOB: &str = include_str!("../../../tests/fixtures/tailnet/whois-bob-laptop.json");
    const WHOIS_TAGGED: &str = include_str!("../../../tests/fixtures/tailnet/whois-tagged.json");

    fn by_host<'a>(st: &'a Status, host: &str) -> &'a Device {
        st.devices
            .iter()
            .find(|d| d.host_name == host)
            .unwrap_or_else(|| panic!("no {host} in {st:#?}"))
    }

    #[test]
    fn the_status_fixture_reads_with_every_kind_of_device() {
        let st = parse_status(STATUS.as_bytes()).unwrap();
        assert_eq!(st.backend_state, "Running");
        assert_eq!(st.magic_dns_suffix, "tail1234.ts.net");
        assert_eq!(st.tailnet_name, "example.com");
        let me = st.me.as_ref().unwrap();
        assert_eq!(me.host_name, "alice-desk");
        assert_eq!(me.owner.as_ref().unwrap().login_name, "alice@example.com");
        let hosts: Vec<&str> = st.devices.iter().map(|d| d.host_name.as_str()).collect();
        assert_eq!(
            hosts,
            [
                "bob-laptop",
                "bob-phone",
                "build-1",
                "carol-nas",
                "dave-old",
                "erin-v6",
                "frank-pc",
                "guest-laptop"
            ]
        );

        let laptop = by_host(&st, "bob-laptop");
        assert!(laptop.online && !laptop.expired && !laptop.sharee);
        assert_eq!(laptop.dns_name, "bob-laptop.tail1234.ts.net.");
        assert_eq!(
            laptop.ips,
            vec![
                "100.64.0.2".parse::<IpAddr>().unwrap(),
                "fd7a:115c:a1e0::2".parse().unwrap()
            ]
        );
        assert_eq!(laptop.os, "linux");
        let bob = laptop.owner.as_ref().unwrap();
        assert_eq!(
            (bob.login_name.as_str(), bob.display_name.as_str()),
            ("bob@example.com", "Bob Smith")
        );
        // A user with two devices: both name the same profile.
        assert_eq!(by_host(&st, "bob-phone").owner.as_ref(), Some(bob));
        assert_eq!(by_host(&st, "bob-phone").os, "iOS");

        let tagged = by_host(&st, "build-1");
        assert_eq!(tagged.tags, ["tag:server", "tag:ci"]);
        assert_eq!(tagged.owner.as_ref().unwrap().login_name, "tagged-devices");
        assert!(by_host(&st, "guest-laptop").sharee);
        assert!(!by_host(&st, "carol-nas").online, "offline");
        assert!(by_host(&st, "dave-old").expired, "expired");
        let v6 = by_host(&st, "erin-v6");
        assert_eq!(v6.ips, vec!["fd7a:115c:a1e0::6".parse::<IpAddr>().unwrap()]);
        // A user missing from the User map: no owner, not an error.
        assert_eq!(by_host(&st, "frank-pc").owner, None);
    }

    #[test]
    fn whois_names_the_user_and_the_device() {
        let bob = parse_whois(WHOIS_BOB.as_bytes()).unwrap();
        assert_eq!(bob.user.login_name, "bob@example.com");
        assert_eq!(bob.user.display_name, "Bob Smith");
        assert_eq!(bob.device, "bob-laptop");
        assert_eq!(bob.os, "linux");
        assert!(!bob.tagged());
        let tagged = parse_whois(WHOIS_TAGGED.as_bytes()).unwrap();
        assert!(tagged.tagged());
        assert_eq!(tagged.tags, ["tag:server", "tag:ci"]);
        assert_eq!(tagged.user.login_name, "tagged-devices");
        assert_eq!(tagged.device, "build-1");
    }

    #[test]
    fn a_logged_out_tailscaled_has_no_peers_and_that_is_no_error() {
        let st = parse_status(
            br#"{"BackendState":"NeedsLogin","Self":null,"Peer":null,"User":null,"CurrentTailnet":null}"#,
        )
        .unwrap();
        assert_eq!(st.backend_state, "NeedsLogin");
        assert!(st.me.is_none() && st.devices.is_empty());
        let st = parse_status(b"{}").unwrap();
        assert_eq!(st, Status::default());
    }

    #[test]
    fn the_device_name_falls_back_to_the_fqdn_then_the_host_name() {
        let o = parse_whois(
            br#"{"Node":{"Name":"nas.tail1234.ts.net.","Hostinfo":{"Hostname":"NAS"}},"UserProfile":{"LoginName":"c@x"}}"#,
        )
        .unwrap();
        assert_eq!(o.device, "nas");
        let o =
            parse_whois(br#"{"Node":{"Hostinfo":{"Hostname":"NAS"}},"UserProfile":{}}"#).unwrap();
        assert_eq!(o.device, "NAS");
    }

    #[test]
    fn what_is_not_a_status_is_an_error_not_a_panic() {
        for bad in [
            &b"<html>hello</html>"[..],
            b"",
            b"[1,2,3]",
            br#"{"Peer": 7}"#,
            br#"{"Peer": {"k": {"TailscaleIPs": "100.64.0.1"}}}"#,
            br#"{"Peer": {"k": {"Online": "yes"}}}"#,
            b"{\"BackendState\": \"Runn",
        ] {
            assert!(
                parse_status(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        // An address that does not parse is left out, the rest kept.
        let st = parse_status(
            br#"{"Peer":{"k":{"HostName":"x","TailscaleIPs":["nonsense","100.64.0.9"]}}}"#,
        )
        .unwrap();
        assert_eq!(
            st.devices[0].ips,
            vec!["100.64.0.9".parse::<IpAddr>().unwrap()]
        );
        for bad in [&b"{}"[..], br#"{"Node":{}}"#, b"null", b"garbage"] {
            assert!(
                parse_whois(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
