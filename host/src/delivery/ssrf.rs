//! The SSRF guard's decision: may the engine connect to this IP address? Pure; the
//! connector in `client.rs` asks it for every address a host name resolves to, at connect
//! time, so DNS rebinding cannot slip an internal address past it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

/// Which destinations are allowed.
#[derive(Debug, Clone, Default)]
pub struct NetworkPolicy {
    /// Allow every internal address (`[delivery] allow_private_networks`).
    pub allow_private: bool,
    /// Internal ranges allowed anyway (`[delivery] allowed_cidrs`).
    pub allowlist: Vec<IpNet>,
}

impl NetworkPolicy {
    /// `Some(reason)` when `ip` must not be contacted.
    pub fn blocked(&self, ip: IpAddr) -> Option<&'static str> {
        let reason = internal_reason(ip)?;
        if self.allow_private || self.allowlist.iter().any(|net| net.contains(&ip)) {
            return None;
        }
        Some(reason)
    }
}

/// Why `ip` is internal, or `None` for a public address. IPv4 addresses embedded in IPv6
/// (mapped, compatible, NAT64, 6to4) are judged by the IPv4 address.
pub fn internal_reason(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => v4_reason(v4),
        IpAddr::V6(v6) => v6_reason(v6),
    }
}

fn v4_reason(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        _ if ip == Ipv4Addr::new(169, 254, 169, 254) => "a cloud metadata address",
        _ if ip.is_unspecified() || a == 0 => "an unspecified address",
        (127, _, _) => "a loopback address",
        (10, _, _) | (172, 16..=31, _) | (192, 168, _) => "a private address",
        (169, 254, _) => "a link-local address",
        (100, 64..=127, _) => "a carrier-grade NAT address",
        (224..=239, _, _) => "a multicast address",
        (240..=255, _, _) => "a reserved address",
        (192, 0, 0) | (198, 18..=19, _) => "a reserved address",
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => "a documentation address",
        _ => return None,
    })
}

fn v6_reason(ip: Ipv6Addr) -> Option<&'static str> {
    if let Some(v4) = embedded_v4(ip) {
        return v4_reason(v4);
    }
    let seg = ip.segments();
    Some(match seg[0] {
        _ if ip.is_loopback() => "a loopback address",
        _ if ip.is_unspecified() => "an unspecified address",
        _ if ip == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) => "a cloud metadata address",
        0x64 if seg[1] == 0xff9b && seg[2] == 1 => "a local-use NAT64 address",
        s if s & 0xfe00 == 0xfc00 => "an IPv6 unique local address",
        s if s & 0xffc0 == 0xfe80 => "a link-local address",
        s if s & 0xffc0 == 0xfec0 => "a site-local address",
        s if s & 0xff00 == 0xff00 => "a multicast address",
        0x2001 if seg[1] == 0x0db8 => "a documentation address",
        _ => return None,
    })
}

/// The IPv4 address inside an IPv4-mapped (`::ffff:a.b.c.d`), IPv4-compatible
/// (`::a.b.c.d`), NAT64 (`64:ff9b::a.b.c.d`) or 6to4 (`2002:aabb:ccdd::`) address.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let seg = ip.segments();
    let tail = Ipv4Addr::new(
        (seg[6] >> 8) as u8,
        seg[6] as u8,
        (seg[7] >> 8) as u8,
        seg[7] as u8,
    );
    if let Some(v4) = ip.to_ipv4_mapped() {
        return Some(v4);
    }
    if seg[..6] == [0, 0, 0, 0, 0, 0] && !ip.is_loopback() && !ip.is_unspecified() {
        return Some(tail);
    }
    if seg[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return Some(tail);
    }
    if seg[0] == 0x2002 {
        return Some(Ipv4Addr::new(
            (seg[1] >> 8) as u8,
            seg[1] as u8,
            (seg[2] >> 8) as u8,
            seg[2] as u8,
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(s: &str) -> Option<&'static str> {
        internal_reason(s.parse().unwrap())
    }

    #[test]
    fn internal_addresses_are_blocked_with_a_reason() {
        let cases = [
            ("64:ff9b:1::a00:1", "a local-use NAT64 address"),
            ("64:ff9b:1:ffff::1", "a local-use NAT64 address"),
            ("127.0.0.1", "a loopback address"),
            ("127.8.9.10", "a loopback address"),
            ("10.1.2.3", "a private address"),
            ("172.16.0.1", "a private address"),
            ("172.31.255.255", "a private address"),
            ("192.168.1.1", "a private address"),
            ("169.254.169.254", "a cloud metadata address"),
            ("169.254.1.1", "a link-local address"),
            ("100.64.0.1", "a carrier-grade NAT address"),
            ("0.0.0.0", "an unspecified address"),
            ("224.0.0.1", "a multicast address"),
            ("255.255.255.255", "a reserved address"),
            ("::1", "a loopback address"),
            ("::", "an unspecified address"),
            ("fd00:ec2::254", "a cloud metadata address"),
            ("fd12:3456::1", "an IPv6 unique local address"),
            ("fe80::1", "a link-local address"),
            ("ff02::1", "a multicast address"),
            ("::ffff:127.0.0.1", "a loopback address"),
            ("::ffff:169.254.169.254", "a cloud metadata address"),
            ("::ffff:10.0.0.1", "a private address"),
            ("64:ff9b::7f00:1", "a loopback address"),
            ("2002:7f00:1::", "a loopback address"),
            ("::127.0.0.1", "a loopback address"),
        ];
        for (ip, want) in cases {
            assert_eq!(reason(ip), Some(want), "{ip}");
        }
    }

    #[test]
    fn public_addresses_pass() {
        for ip in [
            "93.184.216.34",
            "1.1.1.1",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert_eq!(reason(ip), None, "{ip}");
        }
    }

    #[test]
    fn opt_outs() {
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        assert!(NetworkPolicy::default().blocked(ip).is_some());
        let all = NetworkPolicy {
            allow_private: true,
            allowlist: vec![],
        };
        assert_eq!(all.blocked(ip), None);
        let listed = NetworkPolicy {
            allow_private: false,
            allowlist: vec!["127.0.0.0/8".parse().unwrap()],
        };
        assert_eq!(listed.blocked(ip), None);
        assert!(listed.blocked("10.0.0.1".parse().unwrap()).is_some());
    }
}
