//! Peer addresses as users type them (`/add`, `--peer`): `HOST[:PORT]` where HOST is an IPv4
//! address, an IPv6 address (bare, or in brackets when a port follows), or a name resolved by
//! the system resolver, the way MagicDNS names are used on a tailnet.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

/// A parsed `HOST[:PORT]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostSpec {
    /// The host: an address or a name.
    pub host: Host,
    /// The port given, or the default.
    pub port: u16,
}

/// The host part of a [`HostSpec`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Host {
    /// A literal address.
    Ip(IpAddr),
    /// A name for the resolver.
    Name(String),
}

impl fmt::Display for HostSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]:{}", self.port),
            Host::Ip(ip) => write!(f, "{ip}:{}", self.port),
            Host::Name(n) => write!(f, "{n}:{}", self.port),
        }
    }
}

/// Parses `HOST[:PORT]`, using `default_port` when none is given.
///
/// # Errors
/// A message saying what is wrong with the text and what form is expected.
pub fn parse(text: &str, default_port: u16) -> Result<HostSpec, String> {
    let text = text.trim();
    let usage = "expected HOST[:PORT], e.g. 192.168.1.7, [fd7a::1]:7654, laptop or laptop.tail1234.ts.net:7654";
    if text.is_empty() {
        return Err(format!("no host given; {usage}"));
    }
    let port = |p: &str| -> Result<u16, String> {
        match p.parse::<u16>() {
            Ok(0) | Err(_) => Err(format!("'{p}' is not a port (1–65535); {usage}")),
            Ok(n) => Ok(n),
        }
    };
    if let Some(rest) = text.strip_prefix('[') {
        let (ip, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("missing ']' in '{text}'; {usage}"))?;
        let ip: IpAddr = ip
            .parse()
            .map_err(|_| format!("'{ip}' is not an IPv6 address; {usage}"))?;
        let port = match after {
            "" => default_port,
            p => port(
                p.strip_prefix(':')
                    .ok_or_else(|| format!("unexpected '{p}' after ']'; {usage}"))?,
            )?,
        };
        return Ok(HostSpec {
            host: Host::Ip(ip),
            port,
        });
    }
    if let Ok(ip) = text.parse::<IpAddr>() {
        // Covers IPv4 and bare IPv6 (several colons, so no port can follow).
        return Ok(HostSpec {
            host: Host::Ip(ip),
            port: default_port,
        });
    }
    if let Ok(sa) = text.parse::<SocketAddr>() {
        return Ok(HostSpec {
            host: Host::Ip(sa.ip()),
            port: port(&sa.port().to_string())?,
        });
    }
    let (name, port) = match text.rsplit_once(':') {
        Some((name, p)) => (name, port(p)?),
        None => (text, default_port),
    };
    let valid = !name.is_empty()
        && name.len() <= 253
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'));
    if !valid {
        return Err(format!("'{name}' is not a host name or address; {usage}"));
    }
    // Digits and dots alone are a mistyped IPv4 address, never a name (no top-level domain is
    // all digits): said so, rather than asked of the resolver.
    if name.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return Err(format!(
            "'{name}' is not an IPv4 address (four numbers from 0 to 255, e.g. 192.168.1.7); {usage}"
        ));
    }
    Ok(HostSpec {
        host: Host::Name(name.to_owned()),
        port,
    })
}

/// Resolves a spec to addresses (a literal address resolves to itself).
///
/// # Errors
/// A message naming the host and suggesting what to check.
pub async fn resolve(spec: &HostSpec) -> Result<Vec<SocketAddr>, String> {
    match &spec.host {
        Host::Ip(ip) => Ok(vec![SocketAddr::new(*ip, spec.port)]),
        Host::Name(name) => {
            let found = tokio::net::lookup_host((name.as_str(), spec.port))
                .await
                .map_err(|e| {
                    format!(
                        "cannot resolve '{name}': {e} — check the name (on a tailnet: is MagicDNS on? `tailscale status` lists names)"
                    )
                })?;
            let mut addrs: Vec<SocketAddr> = Vec::new();
            for a in found {
                if !addrs.contains(&a) {
                    addrs.push(a);
                }
            }
            if addrs.is_empty() {
                return Err(format!("'{name}' has no addresses"));
            }
            Ok(addrs)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> HostSpec {
        parse(text, 7654).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn accepts_every_documented_form() {
        assert_eq!(ok("192.168.1.7").to_string(), "192.168.1.7:7654");
        assert_eq!(ok("192.168.1.7:9000").to_string(), "192.168.1.7:9000");
        assert_eq!(ok("fd7a::1").to_string(), "[fd7a::1]:7654");
        assert_eq!(ok("[fd7a::1]").to_string(), "[fd7a::1]:7654");
        assert_eq!(ok("[fd7a::1]:9000").to_string(), "[fd7a::1]:9000");
        assert_eq!(ok("laptop").to_string(), "laptop:7654");
        assert_eq!(
            ok("laptop.tail1234.ts.net:9000").to_string(),
            "laptop.tail1234.ts.net:9000"
        );
        assert_eq!(ok(" localhost ").host, Host::Name("localhost".into()));
    }

    #[test]
    fn rejects_nonsense_with_a_hint() {
        for bad in [
            "",
            "host:0",
            "host:99999",
            "host:x",
            "[fd7a::1",
            "[zz]:1",
            "a b",
            "[::1]x",
            "bad/name",
            "999.1.1.1",
            "10.0.0",
            "10.0.0.1.5:7654",
        ] {
            let e = parse(bad, 7654).unwrap_err();
            assert!(e.contains("expected HOST[:PORT]"), "{bad}: {e}");
        }
        // Never asked of the resolver: said to be a mistyped address.
        let e = parse("999.1.1.1", 7654).unwrap_err();
        assert!(e.contains("is not an IPv4 address"), "{e}");
    }

    #[tokio::test]
    async fn resolves_literals_and_localhost() {
        assert_eq!(
            resolve(&ok("127.0.0.1:5")).await.unwrap(),
            vec!["127.0.0.1:5".parse::<SocketAddr>().unwrap()]
        );
        let local = resolve(&ok("localhost:5")).await.unwrap();
        assert!(local.iter().all(|a| a.ip().is_loopback() && a.port() == 5));
    }

    #[tokio::test]
    async fn an_unknown_name_is_a_clear_error() {
        let e = resolve(&ok("no-such-host.invalid")).await.unwrap_err();
        assert!(
            e.starts_with("cannot resolve 'no-such-host.invalid'"),
            "{e}"
        );
    }
}
