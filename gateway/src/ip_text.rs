//! IP addresses as text on the stack, for request headers and access lines: IPv4 (the
//! common case, once per request) is written without the formatting machinery.

use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr};

/// The longest text of an IP address (`INET6_ADDRSTRLEN` without its NUL); `Display`
/// writes at most 39 bytes for an IPv6 address, 15 for an IPv4 one.
const MAX_LEN: usize = 45;

/// An IP address written as its `Display` writes it, held on the stack.
#[derive(Clone, Copy)]
pub struct IpText {
    buf: [u8; MAX_LEN],
    len: usize,
}

impl IpText {
    /// The text of `ip`.
    pub fn new(ip: IpAddr) -> Self {
        let mut text = Self {
            buf: [0; MAX_LEN],
            len: 0,
        };
        match ip {
            IpAddr::V4(v4) => text.ipv4(v4),
            IpAddr::V6(v6) => {
                let mut cursor = std::io::Cursor::new(&mut text.buf[..]);
                // Within MAX_LEN: the write cannot fail.
                let _ = write!(cursor, "{v6}");
                text.len = usize::try_from(cursor.position()).unwrap_or(MAX_LEN);
            }
        }
        text
    }

    /// The text, ASCII.
    pub fn as_bytes(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or_default()
    }

    fn ipv4(&mut self, ip: Ipv4Addr) {
        for (i, octet) in ip.octets().into_iter().enumerate() {
            if i > 0 {
                self.push(b'.');
            }
            if octet >= 100 {
                self.push(b'0' + octet / 100);
            }
            if octet >= 10 {
                self.push(b'0' + octet / 10 % 10);
            }
            self.push(b'0' + octet % 10);
        }
    }

    /// Appends `byte`; an IPv4 address takes at most 15 of the buffer's bytes.
    fn push(&mut self, byte: u8) {
        if let Some(slot) = self.buf.get_mut(self.len) {
            *slot = byte;
            self.len += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_written_as_display_writes_them() {
        for ip in [
            "0.0.0.0",
            "9.10.99.100",
            "255.255.255.255",
            "192.0.2.7",
            "::1",
            "::",
            "::ffff:1.2.3.4",
            "2001:db8::ff00:42:8329",
            "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255",
            "fe80:1234:5678:9abc:def0:1234:5678:9abc",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(IpText::new(ip).as_bytes(), ip.to_string().as_bytes());
        }
    }
}
