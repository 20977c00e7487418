//! IP networks (`10.0.0.0/8`, `fd00::/8`) and sets of them, matched without
//! allocation: `trusted_proxies`, PROXY protocol `trusted`, and the listener and route
//! `allow`/`deny` lists all use [`CidrSet`].

use std::net::IpAddr;

/// An IP network such as `10.0.0.0/8` or `fd00::/8`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    /// Whether `ip` is inside the network (an IPv4-mapped IPv6 address counts as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = mask32(self.prefix);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = mask128(self.prefix);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl std::str::FromStr for Cidr {
    type Err = &'static str;

    /// `ADDR/PREFIX`, or a bare address (a /32 or /128); host bits must be zero.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| {
            "is not a network: expected an address or ADDR/PREFIX such as \"10.0.0.0/8\""
        })?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => Some(p)
                .filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|p| p.parse::<u8>().ok())
                .filter(|p| *p <= max)
                .ok_or("has a prefix length out of range (0-32 for IPv4, 0-128 for IPv6)")?,
            None => max,
        };
        let host_bits_zero = match addr {
            IpAddr::V4(a) => u32::from(a) & !mask32(prefix) == 0,
            IpAddr::V6(a) => u128::from(a) & !mask128(prefix) == 0,
        };
        if !host_bits_zero {
            return Err("has host bits set after the prefix (write the network address)");
        }
        Ok(Self { addr, prefix })
    }
}

/// The mask of the first `prefix` bits of an IPv4 address.
fn mask32(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

/// The mask of the first `prefix` bits of an IPv6 address.
fn mask128(prefix: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0)
}

/// `ip` with an IPv4-mapped IPv6 address (`::ffff:10.0.0.1`, what a dual-stack socket
/// reports for an IPv4 peer) turned into the IPv4 address.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// A set of networks, kept as sorted, merged, disjoint address ranges per family:
/// a lookup is one binary search, with no allocation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CidrSet {
    /// Inclusive ranges, sorted by start, neither overlapping nor adjacent.
    v4: Box<[(u32, u32)]>,
    v6: Box<[(u128, u128)]>,
    /// The networks as configured (for `Debug`/equality of configs and for display).
    networks: Box<[Cidr]>,
}

impl CidrSet {
    /// The set of `networks` (overlapping or repeated entries are fine).
    pub fn new(networks: impl IntoIterator<Item = Cidr>) -> Self {
        let networks: Box<[Cidr]> = networks.into_iter().collect();
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for net in networks.iter() {
            match net.addr {
                IpAddr::V4(a) => {
                    let start = u32::from(a) & mask32(net.prefix);
                    v4.push((start, start | !mask32(net.prefix)));
                }
                IpAddr::V6(a) => {
                    let start = u128::from(a) & mask128(net.prefix);
                    v6.push((start, start | !mask128(net.prefix)));
                }
            }
        }
        Self {
            v4: merge(v4).into_boxed_slice(),
            v6: merge(v6).into_boxed_slice(),
            networks,
        }
    }

    /// Whether no network is in the set.
    pub fn is_empty(&self) -> bool {
        self.networks.is_empty()
    }

    /// The networks as given.
    pub fn networks(&self) -> &[Cidr] {
        &self.networks
    }

    /// Whether `ip` is in one of the networks (an IPv4-mapped IPv6 address counts as
    /// IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match canonical(ip) {
            IpAddr::V4(ip) => in_ranges(&self.v4, u32::from(ip)),
            IpAddr::V6(ip) => in_ranges(&self.v6, u128::from(ip)),
        }
    }

    /// Whether the set holds every IPv4 address (`0.0.0.0/0`) and every IPv6 one (`::/0`).
    pub fn is_everything(&self) -> bool {
        *self.v4 == [(0, u32::MAX)] && *self.v6 == [(0, u128::MAX)]
    }
}

impl FromIterator<Cidr> for CidrSet {
    fn from_iter<I: IntoIterator<Item = Cidr>>(iter: I) -> Self {
        Self::new(iter)
    }
}

/// Sorts `ranges` and merges the overlapping and adjacent ones.
fn merge<T: Ord + Copy + Successor>(mut ranges: Vec<(T, T)>) -> Vec<(T, T)> {
    ranges.sort_unstable();
    let mut out: Vec<(T, T)> = Vec::with_capacity(ranges.len());
    for (start, end) in ranges {
        match out.last_mut() {
            Some(last) if last.1.successor().is_none_or(|next| start <= next) => {
                last.1 = last.1.max(end);
            }
            _ => out.push((start, end)),
        }
    }
    out
}

/// Whether `x` is in one of `ranges` (sorted, disjoint).
fn in_ranges<T: Ord + Copy>(ranges: &[(T, T)], x: T) -> bool {
    // The ranges starting at or before `x`; only the last of them can hold it.
    let after = ranges.partition_point(|&(start, _)| start <= x);
    after > 0 && ranges.get(after - 1).is_some_and(|&(_, end)| x <= end)
}

/// The next integer, if any (for merging adjacent ranges).
trait Successor: Sized {
    fn successor(self) -> Option<Self>;
}

impl Successor for u32 {
    fn successor(self) -> Option<Self> {
        self.checked_add(1)
    }
}

impl Successor for u128 {
    fn successor(self) -> Option<Self> {
        self.checked_add(1)
    }
}

/// Which client addresses are admitted: those in `allow` (every address when it is not
/// given) and not in `deny`. Deny wins over allow.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccessList {
    /// `None`: every address.
    pub allow: Option<CidrSet>,
    pub deny: CidrSet,
}

impl AccessList {
    /// Whether the list admits every address (nothing to check).
    pub fn admits_all(&self) -> bool {
        self.deny.is_empty() && self.allow.as_ref().is_none_or(CidrSet::is_everything)
    }

    /// Whether `ip` is admitted.
    pub fn admits(&self, ip: IpAddr) -> bool {
        !self.deny.contains(ip) && self.allow.as_ref().is_none_or(|a| a.contains(ip))
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    const V4_ANY: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
    const V6_ANY: IpAddr = IpAddr::V6(Ipv6Addr::UNSPECIFIED);

    fn set(nets: &[&str]) -> CidrSet {
        nets.iter().map(|n| n.parse::<Cidr>().unwrap()).collect()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn networks_parse_and_match() {
        let net: Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(net.contains(ip("10.255.0.1")));
        assert!(!net.contains(ip("11.0.0.1")));
        assert!(
            net.contains(ip("::ffff:10.0.0.1")),
            "IPv4-mapped counts as IPv4"
        );
        let host: Cidr = "192.0.2.1".parse().unwrap();
        assert_eq!(host.prefix, 32);
        let v6: Cidr = "fd00::/8".parse().unwrap();
        assert!(v6.contains(ip("fd12::1")));
        assert!(!v6.contains(ip("10.0.0.1")));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("203.0.113.1")));
        for bad in [
            "10.0.0.1/8",
            "10.0.0.0/33",
            "fd00::/129",
            "ten/8",
            "10.0.0.0/x",
            "10.0.0.0/",
            "10.0.0.0/+8",
            "fd00::1/8",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_set_matches_what_its_networks_match() {
        let s = set(&[
            "10.0.0.0/8",
            "192.168.1.0/24",
            "192.168.2.0/24",
            "203.0.113.7",
            "fd00::/8",
            "2001:db8::/32",
        ]);
        for (addr, inside) in [
            ("10.0.0.0", true),
            ("10.255.255.255", true),
            ("9.255.255.255", false),
            ("11.0.0.0", false),
            ("192.168.0.255", false),
            ("192.168.1.0", true),
            ("192.168.2.255", true),
            ("192.168.3.0", false),
            ("203.0.113.7", true),
            ("203.0.113.6", false),
            ("203.0.113.8", false),
            ("::ffff:192.168.1.9", true),
            ("fdff:ffff::1", true),
            ("fe00::", false),
            ("2001:db8:ffff::1", true),
            ("2001:db9::", false),
            ("::1", false),
        ] {
            assert_eq!(s.contains(ip(addr)), inside, "{addr}");
        }
        assert!(!CidrSet::default().contains(ip("10.0.0.1")));
    }

    #[test]
    fn overlapping_and_adjacent_networks_merge() {
        let s = set(&["10.0.0.0/9", "10.128.0.0/9", "10.1.0.0/16", "10.0.0.0/8"]);
        assert_eq!(&*s.v4, &[(0x0a00_0000, 0x0aff_ffff)]);
        let edges = set(&["0.0.0.0/1", "128.0.0.0/1", "::/0"]);
        assert!(edges.is_everything());
        assert!(edges.contains(ip("255.255.255.255")) && edges.contains(ip("0.0.0.0")));
        assert!(edges.contains(ip("ffff::")));
        assert!(!set(&["0.0.0.0/0"]).is_everything(), "IPv6 is not covered");
    }

    #[test]
    fn sets_agree_with_a_linear_scan() {
        // A fixed pseudo-random sample of networks and addresses.
        let mut x: u32 = 0x9e37_79b9;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x
        };
        let nets: Vec<Cidr> = (0..200)
            .map(|_| {
                let prefix = (next() % 33) as u8;
                let addr = next() & mask32(prefix);
                Cidr {
                    addr: IpAddr::V4(Ipv4Addr::from(addr)),
                    prefix,
                }
            })
            .filter(|c| c.prefix >= 8)
            .collect();
        let s = CidrSet::new(nets.iter().copied());
        for _ in 0..20_000 {
            let probe = IpAddr::V4(Ipv4Addr::from(next()));
            let linear = nets.iter().any(|n| n.contains(probe));
            assert_eq!(s.contains(probe), linear, "{probe}");
        }
        // Addresses at the edges of each network.
        for n in &nets {
            let IpAddr::V4(a) = n.addr else { continue };
            let end = u32::from(a) | !mask32(n.prefix);
            for probe in [
                u32::from(a),
                end,
                end.wrapping_add(1),
                u32::from(a).wrapping_sub(1),
            ] {
                let probe = IpAddr::V4(Ipv4Addr::from(probe));
                assert_eq!(s.contains(probe), nets.iter().any(|n| n.contains(probe)));
            }
        }
    }

    #[test]
    fn deny_wins_over_allow() {
        let open = AccessList::default();
        assert!(open.admits_all() && open.admits(ip("203.0.113.1")));
        let list = AccessList {
            allow: Some(set(&["0.0.0.0/0", "::/0"])),
            deny: set(&["203.0.113.0/24"]),
        };
        assert!(!list.admits_all());
        assert!(list.admits(ip("198.51.100.1")));
        assert!(!list.admits(ip("203.0.113.9")));
        assert!(!list.admits(ip("::ffff:203.0.113.9")));
        let only = AccessList {
            allow: Some(set(&["10.0.0.0/8"])),
            deny: CidrSet::default(),
        };
        assert!(only.admits(ip("10.1.1.1")) && !only.admits(ip("11.1.1.1")));
        assert!(!only.admits(V6_ANY) && !only.admits(V4_ANY));
        let everything = AccessList {
            allow: Some(set(&["0.0.0.0/0", "::/0"])),
            deny: CidrSet::default(),
        };
        assert!(everything.admits_all());
    }
}
