//! `--trusted-proxy`: the client's address behind a reverse proxy.
//!
//! Behind nginx every stream comes from the proxy's address, so the per-IP limit would count
//! the proxy, not the clients. When the connection comes from a trusted proxy, the client is
//! the right-most address of `X-Forwarded-For` that is not itself a trusted proxy (each proxy
//! appends the address it got the request from; addresses further left were written by the
//! client and prove nothing). From any other peer the header is ignored: a client cannot pick
//! its own address. CIDR matching is written here: it is a few lines, and no crate of the tree
//! does it.

use std::net::IpAddr;

use http::HeaderMap;

/// An address block: `10.0.0.0/8`, `127.0.0.1` (one address), `::1/128`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    bits: u8,
}

impl Cidr {
    /// Parses `ADDR` or `ADDR/BITS`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (addr, bits) = match text.trim().split_once('/') {
            Some((a, b)) => (a, Some(b)),
            None => (text.trim(), None),
        };
        let net: IpAddr = addr
            .parse()
            .map_err(|_| format!("{text:?} is not an address or a CIDR block"))?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let bits = match bits {
            None => max,
            Some(b) => b
                .parse::<u8>()
                .ok()
                .filter(|b| *b <= max)
                .ok_or_else(|| format!("{text:?}: the prefix length is 0 to {max}"))?,
        };
        Ok(Self { net, bits })
    }

    /// Whether `ip` is in the block (an IPv4-mapped IPv6 address counts as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.net, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.bits)).unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.bits))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// The client's address: the peer, or, when the peer is a trusted proxy, the right-most
/// untrusted address of `X-Forwarded-For`.
pub(crate) fn client_ip(
    trusted: &[Cidr],
    headers: &HeaderMap,
    peer: Option<IpAddr>,
) -> Option<IpAddr> {
    let peer = peer?;
    let is_trusted = |ip: IpAddr| trusted.iter().any(|c| c.contains(ip));
    if !is_trusted(peer) {
        return Some(peer);
    }
    let mut hops: Vec<IpAddr> = Vec::new();
    for value in headers.get_all("x-forwarded-for") {
        let Ok(text) = value.to_str() else {
            return Some(peer);
        };
        for part in text.split(',') {
            match part.trim().parse::<IpAddr>() {
                Ok(ip) => hops.push(ip),
                // A hop we cannot read ends what we can trust.
                Err(_) => hops.clear(),
            }
        }
    }
    hops.into_iter()
        .rev()
        .find(|ip| !is_trusted(*ip))
        .or(Some(peer))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn blocks_contain_what_they_should() {
        let c = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(c.contains(ip("10.1.2.3")) && !c.contains(ip("11.0.0.1")));
        assert!(Cidr::parse("127.0.0.1").unwrap().contains(ip("127.0.0.1")));
        assert!(!Cidr::parse("127.0.0.1").unwrap().contains(ip("127.0.0.2")));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains(ip("8.8.8.8")));
        assert!(Cidr::parse("::1/128").unwrap().contains(ip("::1")));
        assert!(Cidr::parse("127.0.0.0/8")
            .unwrap()
            .contains(ip("::ffff:127.0.0.9")));
        for bad in ["", "10.0.0.0/33", "x", "::/129", "1.2.3.4/"] {
            assert!(Cidr::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn forwarded_for_is_believed_only_from_a_trusted_proxy() {
        let trusted = [Cidr::parse("127.0.0.1").unwrap()];
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", "6.6.6.6, 203.0.113.7".parse().unwrap());
        assert_eq!(
            client_ip(&trusted, &h, Some(ip("127.0.0.1"))),
            Some(ip("203.0.113.7"))
        );
        assert_eq!(
            client_ip(&trusted, &h, Some(ip("198.51.100.1"))),
            Some(ip("198.51.100.1"))
        );
        assert_eq!(
            client_ip(&[], &h, Some(ip("127.0.0.1"))),
            Some(ip("127.0.0.1"))
        );
        let chain = [
            Cidr::parse("127.0.0.0/8").unwrap(),
            Cidr::parse("10.0.0.0/8").unwrap(),
        ];
        h.insert("x-forwarded-for", "203.0.113.7, 10.0.0.5".parse().unwrap());
        assert_eq!(
            client_ip(&chain, &h, Some(ip("127.0.0.1"))),
            Some(ip("203.0.113.7"))
        );
        h.insert("x-forwarded-for", "garbage".parse().unwrap());
        assert_eq!(
            client_ip(&trusted, &h, Some(ip("127.0.0.1"))),
            Some(ip("127.0.0.1"))
        );
    }
}
