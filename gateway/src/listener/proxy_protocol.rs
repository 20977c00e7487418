//! The PROXY protocol header (HAProxy's, versions 1 and 2) a load balancer sends before
//! a connection's first byte: parsed without allocation, and read from the socket
//! without reading past it (what follows is put back for TLS or HTTP).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use pingora::protocols::l4::stream::Stream as L4Stream;
use tokio::io::AsyncReadExt;

/// The version 2 signature.
const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// A version 1 header is at most 107 bytes, its CRLF included.
const V1_MAX: usize = 107;
/// Bytes read at a time: a version 1 header, or a version 2 one with IPv6 addresses and
/// a few TLVs, arrives in one read (longer TLVs are read through and dropped).
const READ_BUF: usize = 256;

/// What a header says of the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The client's address and port as the sender saw them.
    Client(SocketAddr),
    /// `LOCAL` (the sender's own health check), `UNKNOWN`, or an address family other
    /// than TCP over IPv4/IPv6: the connection's own peer stands.
    Peer,
}

/// A header that is not one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    #[error("the connection does not start with a PROXY protocol header")]
    NotProxy,
    #[error("the version 1 header has no CRLF within 107 bytes")]
    V1TooLong,
    #[error("the version 1 header is not \"PROXY TCP4|TCP6|UNKNOWN src dst sport dport\"")]
    V1Syntax,
    #[error("the version 2 header has version {0}, not 2")]
    V2Version(u8),
    #[error("the version 2 header has command {0}, neither LOCAL (0) nor PROXY (1)")]
    V2Command(u8),
    #[error("the version 2 header's length is shorter than its addresses")]
    V2Short,
    #[error("the connection closed before sending anything")]
    Silent,
    #[error("the connection closed inside the PROXY protocol header")]
    Closed,
    #[error("reading the PROXY protocol header failed")]
    Read,
}

/// How far the bytes so far go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// Not enough bytes to decide.
    Incomplete,
    /// A whole header's meaning: it is `len` bytes long (version 2: possibly more than
    /// the bytes so far, its TLVs to be read through).
    Done { len: usize, origin: Origin },
}

/// Parses the start of a connection (at least one byte of it: the reader never asks
/// about none).
pub fn parse(buf: &[u8]) -> Result<Parsed, Malformed> {
    let v2_prefix = buf.len().min(V2_SIGNATURE.len());
    if buf.get(..v2_prefix) == V2_SIGNATURE.get(..v2_prefix) && !buf.is_empty() {
        return parse_v2(buf);
    }
    let v1_prefix = buf.len().min(6);
    if buf.get(..v1_prefix) == b"PROXY ".get(..v1_prefix) && !buf.is_empty() {
        return parse_v1(buf);
    }
    Err(Malformed::NotProxy)
}

fn parse_v1(buf: &[u8]) -> Result<Parsed, Malformed> {
    let window = buf.get(..buf.len().min(V1_MAX)).unwrap_or_default();
    let Some(lf) = window.iter().position(|&b| b == b'\n') else {
        return if buf.len() >= V1_MAX {
            Err(Malformed::V1TooLong)
        } else {
            Ok(Parsed::Incomplete)
        };
    };
    // The line ends in CRLF; a bare LF is no header.
    let cr = lf
        .checked_sub(1)
        .filter(|&cr| window.get(cr) == Some(&b'\r'));
    let cr = cr.ok_or(Malformed::V1Syntax)?;
    let line = window.get(6..cr).ok_or(Malformed::V1Syntax)?;
    let line = std::str::from_utf8(line).map_err(|_| Malformed::V1Syntax)?;
    let mut fields = line.split(' ');
    let origin = match fields.next() {
        // Whatever follows UNKNOWN is ignored.
        Some("UNKNOWN") => Origin::Peer,
        Some(family @ ("TCP4" | "TCP6")) => {
            let v4 = family == "TCP4";
            let mut next = || fields.next().ok_or(Malformed::V1Syntax);
            let (src, dst, sport, dport) = (next()?, next()?, next()?, next()?);
            if fields.next().is_some() {
                return Err(Malformed::V1Syntax);
            }
            let (ip, port) = (v1_addr(src, v4)?, v1_port(sport)?);
            v1_addr(dst, v4)?;
            v1_port(dport)?;
            Origin::Client(SocketAddr::new(ip, port))
        }
        _ => return Err(Malformed::V1Syntax),
    };
    Ok(Parsed::Done {
        len: cr + 2,
        origin,
    })
}

/// A version 1 address of the family the header names.
fn v1_addr(s: &str, v4: bool) -> Result<IpAddr, Malformed> {
    if v4 {
        s.parse::<Ipv4Addr>().map(IpAddr::V4)
    } else {
        s.parse::<Ipv6Addr>().map(IpAddr::V6)
    }
    .map_err(|_| Malformed::V1Syntax)
}

/// A version 1 port: 1 to 5 decimal digits, at most 65535.
fn v1_port(s: &str) -> Result<u16, Malformed> {
    if s.is_empty() || s.len() > 5 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Malformed::V1Syntax);
    }
    s.parse().map_err(|_| Malformed::V1Syntax)
}

fn parse_v2(buf: &[u8]) -> Result<Parsed, Malformed> {
    let Some(&[ver_cmd, fam, len_hi, len_lo]) = buf.get(12..16) else {
        return Ok(Parsed::Incomplete);
    };
    if ver_cmd >> 4 != 2 {
        return Err(Malformed::V2Version(ver_cmd >> 4));
    }
    let declared = usize::from(u16::from_be_bytes([len_hi, len_lo]));
    let len = 16 + declared;
    let command = ver_cmd & 0x0f;
    // The address block's size for TCP (STREAM) over IPv4 and IPv6.
    let addresses = match fam {
        0x11 => 12,
        0x21 => 36,
        _ => 0,
    };
    match command {
        0 => {
            return Ok(Parsed::Done {
                len,
                origin: Origin::Peer,
            })
        }
        1 => {}
        other => return Err(Malformed::V2Command(other)),
    }
    if addresses == 0 {
        // UNSPEC, UNIX or datagram: the connection's own endpoints stand.
        return Ok(Parsed::Done {
            len,
            origin: Origin::Peer,
        });
    }
    if declared < addresses {
        return Err(Malformed::V2Short);
    }
    let Some(block) = buf.get(16..16 + addresses) else {
        return Ok(Parsed::Incomplete);
    };
    let client = if let Ok([a, b, c, d, _, _, _, _, p0, p1, _, _]) = <[u8; 12]>::try_from(block) {
        SocketAddr::new(
            Ipv4Addr::new(a, b, c, d).into(),
            u16::from_be_bytes([p0, p1]),
        )
    } else {
        let ip: [u8; 16] = block
            .get(..16)
            .and_then(|b| b.try_into().ok())
            .unwrap_or_default();
        let port = block
            .get(32..34)
            .and_then(|p| <[u8; 2]>::try_from(p).ok())
            .map_or(0, u16::from_be_bytes);
        SocketAddr::new(Ipv6Addr::from(ip).into(), port)
    };
    Ok(Parsed::Done {
        len,
        origin: Origin::Client(client),
    })
}

/// Reads the header at the start of `tcp` and puts back what follows it.
pub(crate) async fn read(tcp: &mut L4Stream) -> Result<Origin, Malformed> {
    let mut buf = [0u8; READ_BUF];
    let mut filled = 0;
    let (len, origin) = loop {
        let n = match tcp.read(buf.get_mut(filled..).unwrap_or_default()).await {
            Ok(0) if filled == 0 => return Err(Malformed::Silent),
            Ok(0) => return Err(Malformed::Closed),
            Ok(n) => n,
            Err(_) => return Err(Malformed::Read),
        };
        filled += n;
        match parse(buf.get(..filled).unwrap_or_default())? {
            Parsed::Done { len, origin } => break (len, origin),
            // A version 2 header whose addresses do not fit cannot occur (36 < 256);
            // a version 1 one is decided by 107 bytes.
            Parsed::Incomplete if filled < buf.len() => {}
            Parsed::Incomplete => return Err(Malformed::V1TooLong),
        }
    };
    if len <= filled {
        tcp.rewind(buf.get(len..filled).unwrap_or_default());
        return Ok(origin);
    }
    // TLVs past the buffer: read through them.
    let mut left = len - filled;
    while left > 0 {
        let want = left.min(buf.len());
        let n = match tcp.read(buf.get_mut(..want).unwrap_or_default()).await {
            Ok(0) => return Err(Malformed::Closed),
            Ok(n) => n,
            Err(_) => return Err(Malformed::Read),
        };
        left -= n;
    }
    Ok(origin)
}

#[cfg(test)]
mod tests;
