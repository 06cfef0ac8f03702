//! Network rules of the built-in tools (`[security] allowed_hosts` / `blocked_hosts`): which
//! URLs and addresses `http_request`, `web_fetch`, `weather` and `web_search_tool` may reach.
//!
//! Part of the security policy ([`super::Policy::net`]). SSRF-safe by default: every address
//! that is not a public unicast address (loopback, unspecified, private, link-local with the
//! cloud metadata address, CGNAT, multicast, broadcast, reserved and documentation ranges,
//! and IPv6 forms that embed an internal IPv4 address: mapped, NAT64, 6to4) is refused with
//! the rule `internal_address` unless `allowed_hosts` names the host or the address;
//! `blocked_hosts` is refused always (rule `blocked_hosts`, it wins over `allowed_hosts`);
//! schemes other than `http`/`https` are refused (rule `scheme`).
//!
//! The checks run in two places, so that a connection only ever goes to a checked address:
//! - [`NetRules::check_url`] before each request and each redirect hop: the scheme, a host
//!   name against `blocked_hosts`, and an IP literal (URLs are parsed by the `url` crate,
//!   which normalises `2130706433`, `0177.0.0.1`, `0x7f.1` and `127.1` to `127.0.0.1` as
//!   browsers do) against every rule;
//! - [`CheckedResolver`], the HTTP client's DNS resolver: it resolves a name and refuses it
//!   when any of its addresses is refused, before any connection; the client connects to the
//!   addresses it checked, so a second lookup (DNS rebinding) has nothing to swap.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;
use url::{Host, Url};

use super::Refusal;
use crate::config::SecurityConfig;

/// The most addresses of one name that are checked and handed to the connector.
const MAX_ADDRESSES: usize = 32;

/// Compiled `allowed_hosts` and `blocked_hosts`.
#[derive(Debug, Default)]
pub struct NetRules {
    allowed: HostList,
    blocked: HostList,
}

impl NetRules {
    /// Compiles the rules of `config`. `Err` names the key and the entry that is not a host
    /// name, `*.suffix`, IP address or CIDR block.
    pub fn new(config: &SecurityConfig) -> Result<Self, String> {
        Ok(Self {
            allowed: HostList::parse("allowed_hosts", &config.allowed_hosts)?,
            blocked: HostList::parse("blocked_hosts", &config.blocked_hosts)?,
        })
    }

    /// Checks what can be checked of `url` before a connection: its scheme, a host name
    /// against `blocked_hosts`, an IP literal against every rule. A host name's addresses are
    /// checked by [`CheckedResolver`] when the client resolves it.
    pub fn check_url(&self, url: &Url) -> Result<(), Refusal> {
        match url.scheme() {
            "http" | "https" => {}
            other => {
                return Err(Refusal::new(
                    "scheme",
                    format!("the scheme `{other}:` is not allowed (only http and https)"),
                ));
            }
        }
        match url.host() {
            None => Err(Refusal::new("scheme", "the URL has no host")),
            Some(Host::Domain(name)) => {
                let name = normal_name(name);
                if self.blocked.names(&name) {
                    return Err(blocked(&name));
                }
                Ok(())
            }
            Some(Host::Ipv4(ip)) => self.check_addr(None, IpAddr::V4(ip)),
            Some(Host::Ipv6(ip)) => self.check_addr(None, IpAddr::V6(ip)),
        }
    }

    /// Checks one address that `name` (when it is a name) resolved to, or an IP literal.
    pub fn check_addr(&self, name: Option<&str>, ip: IpAddr) -> Result<(), Refusal> {
        let name = name.map(normal_name);
        let shown = match &name {
            Some(n) => format!("{n} ({ip})"),
            None => ip.to_string(),
        };
        if name.as_deref().is_some_and(|n| self.blocked.names(n)) || self.blocked.has(ip) {
            return Err(blocked(&shown));
        }
        if let Some(kind) = internal_kind(ip) {
            let allowed =
                name.as_deref().is_some_and(|n| self.allowed.names(n)) || self.allowed.has(ip);
            if !allowed {
                return Err(Refusal::new(
                    "internal_address",
                    format!(
                        "{shown} is {kind} address; the network tools reach only public \
                         addresses unless [security] allowed_hosts names the host or address"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Checks every address `name` resolved to: one refused address refuses the name.
    pub fn check_resolved(&self, name: &str, addrs: &[SocketAddr]) -> Result<(), Refusal> {
        addrs
            .iter()
            .try_for_each(|a| self.check_addr(Some(name), a.ip()))
    }
}

fn blocked(shown: &str) -> Refusal {
    Refusal::new(
        "blocked_hosts",
        format!("{shown} is listed in [security] blocked_hosts"),
    )
}

/// A host name as compared: lower case, without a trailing dot.
fn normal_name(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// One of `allowed_hosts` / `blocked_hosts`, compiled.
#[derive(Debug, Default)]
struct HostList {
    /// Exact host names.
    names: Vec<String>,
    /// `*.example.com` as `.example.com`: any name below it (not the name itself).
    suffixes: Vec<String>,
    /// Addresses (as /32 or /128) and CIDR blocks.
    nets: Vec<IpNet>,
}

impl HostList {
    fn parse(key: &str, entries: &[String]) -> Result<Self, String> {
        let mut list = Self::default();
        for entry in entries {
            list.add(entry.trim())
                .map_err(|why| format!("[security] {key}: {entry:?} is not usable: {why}"))?;
        }
        Ok(list)
    }

    fn add(&mut self, entry: &str) -> Result<(), String> {
        if entry.is_empty() {
            return Err("an entry is empty".to_owned());
        }
        if entry.contains("://") {
            return Err("not a host name: write the host alone, not a URL".to_owned());
        }
        if entry.contains('/') {
            let net: IpNet = entry
                .parse()
                .map_err(|_| "not a CIDR block (such as 10.1.0.0/16 or fd00::/8)".to_owned())?;
            self.nets.push(net.trunc());
            return Ok(());
        }
        if let Some(rest) = entry.strip_prefix("*.") {
            match parse_host(rest)? {
                Host::Domain(name) => self.suffixes.push(format!(".{}", normal_name(&name))),
                _ => return Err("a `*.` wildcard takes a domain name, not an address".to_owned()),
            }
            return Ok(());
        }
        match parse_host(entry)? {
            Host::Domain(name) => self.names.push(normal_name(&name)),
            Host::Ipv4(ip) => self.nets.push(IpNet::from(IpAddr::V4(ip))),
            Host::Ipv6(ip) => self.nets.push(IpNet::from(IpAddr::V6(ip))),
        }
        Ok(())
    }

    /// Whether the list names `name` (normalised) exactly or by a `*.` suffix.
    fn names(&self, name: &str) -> bool {
        self.names.iter().any(|n| n == name) || self.suffixes.iter().any(|s| name.ends_with(s))
    }

    /// Whether the list holds `ip`, or the IPv4 address an IPv4-mapped `ip` stands for.
    fn has(&self, ip: IpAddr) -> bool {
        let mapped = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4),
            IpAddr::V4(_) => None,
        };
        self.nets
            .iter()
            .any(|n| n.contains(&ip) || mapped.is_some_and(|m| n.contains(&m)))
    }
}

/// A host as a URL would hold it: a name (IDNA-normalised) or an address, IPv4 in any of the
/// forms browsers accept (`127.1`, `0x7f.0.0.1`, `2130706433`), IPv6 with or without `[]`.
fn parse_host(text: &str) -> Result<Host<String>, String> {
    if text.contains(':') && !text.starts_with('[') {
        return match text.parse::<Ipv6Addr>() {
            Ok(ip) => Ok(Host::Ipv6(ip)),
            Err(_) => Err("a host pattern takes no port (write the host or address alone)".into()),
        };
    }
    let host = Host::parse(text).map_err(|e| format!("not a host name or address ({e})"))?;
    if let Host::Domain(name) = &host
        && !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
    {
        return Err("not a host name (letters, digits, `-`, `_` and `.`)".to_owned());
    }
    Ok(host)
}

/// What kind of non-public address `ip` is (`"a loopback"`), or `None` for a public unicast
/// address.
pub fn internal_kind(ip: IpAddr) -> Option<Kind> {
    match ip {
        IpAddr::V4(v4) => v4_kind(v4).map(Kind::V4),
        IpAddr::V6(v6) => v6_kind(v6),
    }
}

/// The kind of a non-public address, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An IPv4 range.
    V4(&'static str),
    /// An IPv6 range.
    V6(&'static str),
    /// An IPv6 address that embeds an internal IPv4 address: how it embeds it, and the kind.
    Embedding(&'static str, Ipv4Addr, &'static str),
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::V4(kind) | Self::V6(kind) => write!(f, "{} {kind}", article(kind)),
            Self::Embedding(how, v4, kind) => {
                write!(
                    f,
                    "{} {how} form of {v4}, {} {kind}",
                    article(how),
                    article(kind)
                )
            }
        }
    }
}

fn article(word: &str) -> &'static str {
    if word.starts_with(['a', 'e', 'i', 'o', 'I'])
        || (word.starts_with('u') && !word.starts_with("uni"))
    {
        "an"
    } else {
        "a"
    }
}

/// The IPv4 special-purpose ranges that are not public unicast (IANA's registry).
fn v4_kind(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        _ if ip.is_unspecified() => "unspecified",
        (0, _, _) => "\"this network\" (0.0.0.0/8)",
        (127, _, _) => "loopback",
        (10, _, _) => "private (10.0.0.0/8)",
        (172, 16..=31, _) => "private (172.16.0.0/12)",
        (192, 168, _) => "private (192.168.0.0/16)",
        (169, 254, 169) if ip.octets()[3] == 254 => "link-local cloud metadata",
        (169, 254, _) => "link-local",
        (100, 64..=127, _) => "carrier-grade NAT (100.64.0.0/10)",
        (192, 0, 0) => "IETF protocol assignment (192.0.0.0/24)",
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => "documentation",
        (192, 88, 99) => "6to4 relay anycast",
        (198, 18..=19, _) => "benchmarking",
        (224..=239, _, _) => "multicast",
        _ if ip.is_broadcast() => "broadcast",
        (240..=255, _, _) => "reserved (240.0.0.0/4)",
        _ => return None,
    })
}

/// IPv6: forms embedding IPv4 are judged by the IPv4 address; outside `2000::/3` (global
/// unicast) everything is internal; inside it the special-purpose blocks are.
fn v6_kind(ip: Ipv6Addr) -> Option<Kind> {
    let seg = ip.segments();
    let embedded = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    let embedding =
        |how: &'static str, v4: Ipv4Addr| v4_kind(v4).map(|kind| Kind::Embedding(how, v4, kind));
    if let Some(v4) = ip.to_ipv4_mapped() {
        return embedding("IPv4-mapped IPv6", v4);
    }
    if ip.is_unspecified() {
        return Some(Kind::V6("unspecified"));
    }
    if ip.is_loopback() {
        return Some(Kind::V6("loopback"));
    }
    match seg {
        // ::a.b.c.d, IPv4-compatible (deprecated; never routed).
        [0, 0, 0, 0, 0, 0, _, _] => Some(Kind::V6("IPv4-compatible (deprecated) ::/96")),
        // ::ffff:0:a.b.c.d, IPv4-translated (SIIT).
        [0, 0, 0, 0, 0xffff, 0, hi, lo] => embedding("IPv4-translated IPv6", embedded(hi, lo)),
        // 64:ff9b::/96, NAT64 well-known prefix.
        [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] => embedding("NAT64 IPv6", embedded(hi, lo)),
        [0x64, 0xff9b, 1, ..] => Some(Kind::V6("local-use NAT64 (64:ff9b:1::/48)")),
        // 2002::/16, 6to4: the IPv4 address is in bits 16..48.
        [0x2002, hi, lo, ..] => embedding("6to4 IPv6", embedded(hi, lo)),
        [s0, ..] if s0 & 0xfe00 == 0xfc00 => Some(Kind::V6("unique local (fc00::/7)")),
        [s0, ..] if s0 & 0xffc0 == 0xfe80 => Some(Kind::V6("link-local (fe80::/10)")),
        [s0, ..] if s0 & 0xffc0 == 0xfec0 => Some(Kind::V6("site-local (fec0::/10)")),
        [s0, ..] if s0 & 0xff00 == 0xff00 => Some(Kind::V6("multicast (ff00::/8)")),
        [s0, ..] if s0 & 0xe000 != 0x2000 => Some(Kind::V6("reserved (outside 2000::/3)")),
        // 2001::/23: IETF protocol assignments (Teredo 2001::/32, benchmarking, ORCHID, ...).
        [0x2001, s1, ..] if s1 < 0x0200 => Some(Kind::V6("IETF protocol assignment (2001::/23)")),
        [0x2001, 0x0db8, ..] => Some(Kind::V6("documentation (2001:db8::/32)")),
        [s0, ..] if s0 & 0xfff0 == 0x3ff0 => Some(Kind::V6("documentation (3fff::/20)")),
        [0x5f00, ..] => Some(Kind::V6("SRv6 SID (5f00::/16)")),
        _ => None,
    }
}

/// The HTTP client's DNS resolver for the network tools: resolves a name with the system
/// resolver and refuses it, before any connection, when any address is refused by the rules.
/// The client connects to exactly the addresses returned here.
pub struct CheckedResolver {
    policy: Arc<super::Policy>,
}

impl CheckedResolver {
    /// A resolver checking against `policy`'s network rules.
    pub fn new(policy: Arc<super::Policy>) -> Self {
        Self { policy }
    }
}

impl reqwest::dns::Resolve for CheckedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy.clone();
        let name = name.as_str().to_owned();
        Box::pin(async move {
            if name.len() > 253 {
                return Err("the host name is longer than 253 bytes".into());
            }
            // `example.com.` is `example.com` (the hosts file holds names without the dot);
            // whatever the lookup answers is checked below.
            let lookup = name.strip_suffix('.').unwrap_or(&name);
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((lookup, 0))
                .await
                .map_err(|e| format!("cannot resolve {name}: {e}"))?
                .take(MAX_ADDRESSES)
                .collect();
            if addrs.is_empty() {
                return Err(format!("{name} resolved to no address").into());
            }
            policy.net.check_resolved(&name, &addrs)?;
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(allowed: &[&str], blocked: &[&str]) -> NetRules {
        NetRules::new(&SecurityConfig {
            allowed_hosts: allowed.iter().map(|s| (*s).to_owned()).collect(),
            blocked_hosts: blocked.iter().map(|s| (*s).to_owned()).collect(),
            ..SecurityConfig::default()
        })
        .unwrap()
    }

    fn url_rule(rules: &NetRules, url: &str) -> Option<&'static str> {
        let url = Url::parse(url).unwrap();
        rules.check_url(&url).err().map(|r| r.rule)
    }

    fn addr_rule(rules: &NetRules, name: Option<&str>, ip: &str) -> Option<&'static str> {
        rules
            .check_addr(name, ip.parse().unwrap())
            .err()
            .map(|r| r.rule)
    }

    #[test]
    fn internal_addresses_are_refused_by_default() {
        let r = rules(&[], &[]);
        for ip in [
            "127.0.0.1",
            "127.5.6.7",
            "0.0.0.0",
            "0.1.2.3",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "169.254.1.1",
            "100.64.0.1",
            "100.100.100.200",
            "192.0.0.170",
            "192.0.2.1",
            "198.51.100.7",
            "203.0.113.9",
            "198.18.0.1",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fd00::1",
            "fd00:ec2::254",
            "fc00::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:0:127.0.0.1",
            "::127.0.0.1",
            "::8.8.8.8",
            "64:ff9b::7f00:1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b:1::1",
            "2002:7f00:1::1",
            "2002:a9fe:a9fe::1",
            "2001::1",
            "2001:db8::1",
            "3fff::1",
            "100::1",
        ] {
            assert_eq!(
                addr_rule(&r, None, ip),
                Some("internal_address"),
                "{ip} should be refused"
            );
        }
    }

    #[test]
    fn public_addresses_pass() {
        let r = rules(&[], &[]);
        for ip in [
            "8.8.8.8",
            "1.1.1.1",
            "93.184.216.34",
            "172.32.0.1",
            "172.15.255.255",
            "100.128.0.1",
            "100.63.255.255",
            "169.253.1.1",
            "2606:4700::1111",
            "2a00:1450:4001::200e",
            "::ffff:8.8.8.8",
            "2002:808:808::1",
            "64:ff9b::808:808",
        ] {
            assert_eq!(addr_rule(&r, None, ip), None, "{ip} should pass");
        }
    }

    #[test]
    fn odd_ipv4_forms_in_urls_are_caught() {
        let r = rules(&[], &[]);
        for url in [
            "http://127.0.0.1/",
            "http://2130706433/",
            "http://0177.0.0.1/",
            "http://0x7f.1/",
            "http://0x7f000001/",
            "http://017700000001/",
            "http://127.1/",
            "http://127.0.1/",
            "http://127.0.0.1./",
            "http://0/",
            "http://0.0.0.0:8080/",
            "http://[::1]/",
            "http://[::]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::ffff:7f00:1]/",
            "https://169.254.169.254/latest/meta-data/",
            "http://0xa9.0xfe.0xa9.0xfe/",
            "http://2852039166/",
            "http://[fd00::1]:80/",
            "http://user:pw@127.0.0.1:22/",
        ] {
            assert_eq!(
                url_rule(&r, url),
                Some("internal_address"),
                "{url} should be refused"
            );
        }
        // A name is for the resolver, not refused here.
        assert_eq!(url_rule(&r, "http://localhost/"), None);
        assert_eq!(url_rule(&r, "https://example.com/"), None);
    }

    #[test]
    fn only_http_and_https_are_reached() {
        let r = rules(&["127.0.0.1"], &[]);
        for url in [
            "file:///etc/passwd",
            "ftp://example.com/",
            "gopher://127.0.0.1:6379/_INFO",
            "data:text/plain,hi",
            "javascript:alert(1)",
            "ws://example.com/",
            "dict://127.0.0.1:11211/",
        ] {
            assert_eq!(url_rule(&r, url), Some("scheme"), "{url}");
        }
        let refusal = r
            .check_url(&Url::parse("file:///etc/passwd").unwrap())
            .unwrap_err();
        assert!(refusal.message.contains("`file:`"), "{refusal}");
    }

    #[test]
    fn allowed_hosts_lets_named_hosts_and_addresses_in() {
        let r = rules(
            &[
                "127.0.0.1",
                "10.0.0.0/8",
                "fd00::/8",
                "localhost",
                "*.corp.internal",
            ],
            &[],
        );
        assert_eq!(addr_rule(&r, None, "127.0.0.1"), None);
        assert_eq!(addr_rule(&r, None, "::ffff:127.0.0.1"), None);
        assert_eq!(addr_rule(&r, None, "127.0.0.2"), Some("internal_address"));
        assert_eq!(addr_rule(&r, None, "10.9.8.7"), None);
        assert_eq!(addr_rule(&r, None, "fd12::1"), None);
        assert_eq!(addr_rule(&r, None, "fc00::1"), Some("internal_address"));
        assert_eq!(addr_rule(&r, Some("localhost"), "::1"), None);
        assert_eq!(addr_rule(&r, Some("LocalHost."), "127.0.0.9"), None);
        assert_eq!(
            addr_rule(&r, Some("other"), "127.0.0.9"),
            Some("internal_address")
        );
        assert_eq!(addr_rule(&r, Some("db.corp.internal"), "192.168.1.1"), None);
        assert_eq!(
            addr_rule(&r, Some("a.b.corp.internal"), "192.168.1.1"),
            None
        );
        assert_eq!(
            addr_rule(&r, Some("corp.internal"), "192.168.1.1"),
            Some("internal_address")
        );
        assert_eq!(
            addr_rule(&r, Some("evilcorp.internal"), "192.168.1.1"),
            Some("internal_address")
        );
        // Odd forms in the config are normalised like URLs.
        let r = rules(&["127.1"], &[]);
        assert_eq!(addr_rule(&r, None, "127.0.0.1"), None);
        let r = rules(&["[::1]"], &[]);
        assert_eq!(url_rule(&r, "http://[::1]:8080/"), None);
    }

    #[test]
    fn blocked_hosts_win_over_allowed_hosts() {
        let r = rules(
            &["127.0.0.1", "*.example.com"],
            &[
                "127.0.0.1",
                "bad.example.com",
                "*.evil.test",
                "93.184.216.0/24",
            ],
        );
        assert_eq!(addr_rule(&r, None, "127.0.0.1"), Some("blocked_hosts"));
        assert_eq!(
            addr_rule(&r, None, "::ffff:127.0.0.1"),
            Some("blocked_hosts")
        );
        assert_eq!(
            url_rule(&r, "http://BAD.example.com./x"),
            Some("blocked_hosts")
        );
        assert_eq!(url_rule(&r, "http://good.example.com/x"), None);
        assert_eq!(
            url_rule(&r, "https://a.b.evil.test/"),
            Some("blocked_hosts")
        );
        assert_eq!(addr_rule(&r, None, "93.184.216.34"), Some("blocked_hosts"));
        assert_eq!(
            addr_rule(&r, Some("good.example.com"), "93.184.216.34"),
            Some("blocked_hosts")
        );
        assert_eq!(url_rule(&r, "http://93.184.216.34/"), Some("blocked_hosts"));
    }

    #[test]
    fn one_refused_address_refuses_the_name() {
        let r = rules(&[], &[]);
        let addrs: Vec<SocketAddr> = vec![
            "93.184.216.34:0".parse().unwrap(),
            "127.0.0.1:0".parse().unwrap(),
        ];
        let refusal = r.check_resolved("rebind.test", &addrs).unwrap_err();
        assert_eq!(refusal.rule, "internal_address");
        assert!(
            refusal
                .message
                .contains("rebind.test (127.0.0.1) is a loopback address"),
            "{refusal}"
        );
        r.check_resolved("example.com", &addrs[..1]).unwrap();
    }

    #[test]
    fn messages_say_what_kind_of_address() {
        let r = rules(&[], &[]);
        let message = |ip: &str| r.check_addr(None, ip.parse().unwrap()).unwrap_err().message;
        assert!(message("169.254.169.254").contains("link-local cloud metadata address"));
        assert!(
            message("::ffff:127.0.0.1")
                .contains("an IPv4-mapped IPv6 form of 127.0.0.1, a loopback address"),
            "{}",
            message("::ffff:127.0.0.1")
        );
        assert!(message("fd00::1").contains("a unique local (fc00::/7) address"));
        assert!(message("0.0.0.0").contains("an unspecified address"));
    }

    #[tokio::test]
    async fn the_resolver_refuses_a_loopback_name_and_hands_out_only_checked_addresses() {
        use reqwest::dns::Resolve;
        use std::str::FromStr;
        let home = tempfile::tempdir().unwrap();
        let resolver = |allowed: &[&str]| {
            let config = SecurityConfig {
                allowed_hosts: allowed.iter().map(|s| (*s).to_owned()).collect(),
                ..SecurityConfig::default()
            };
            CheckedResolver::new(Arc::new(
                super::super::Policy::new(&config, home.path()).unwrap(),
            ))
        };
        let name = || reqwest::dns::Name::from_str("localhost").unwrap();
        let Err(err) = resolver(&[]).resolve(name()).await else {
            panic!("localhost resolved under the default rules");
        };
        let refusal = err.downcast_ref::<Refusal>().expect("a Refusal");
        assert_eq!(refusal.rule, "internal_address");
        assert!(refusal.message.starts_with("localhost ("), "{refusal}");
        // Allowed by name: the addresses it checked are the ones handed to the connector.
        let addrs: Vec<SocketAddr> = resolver(&["localhost"])
            .resolve(name())
            .await
            .unwrap()
            .collect();
        assert!(!addrs.is_empty());
        assert!(addrs.iter().all(|a| a.ip().is_loopback()), "{addrs:?}");
        // A trailing dot is the same name.
        let dotted = reqwest::dns::Name::from_str("localhost.").unwrap();
        assert!(resolver(&[]).resolve(dotted).await.is_err());
    }

    #[test]
    fn bad_patterns_name_the_key_and_entry() {
        for (entry, why) in [
            ("10.0.0.0/33", "CIDR"),
            ("exa mple.com", "not a host name"),
            ("example.com:80", "no port"),
            ("", "empty"),
            ("*.10.0.0.1", "wildcard"),
            ("http://example.com/", "not a host name"),
        ] {
            let err = NetRules::new(&SecurityConfig {
                blocked_hosts: vec![entry.to_owned()],
                ..SecurityConfig::default()
            })
            .unwrap_err();
            assert!(err.contains("[security] blocked_hosts"), "{err}");
            assert!(err.contains(why), "{entry}: {err}");
        }
    }
}
