//! A backend address that never answers a connect: a listening socket whose accept queue
//! is full, so the kernel drops every SYN sent to it (no RST, as with an unreachable
//! host), on loopback and without any network.

use std::net::{SocketAddr, TcpStream};

/// A listening socket that never accepts, with its one-slot accept queue filled.
pub struct Blackhole {
    pub addr: SocketAddr,
    listener: Option<socket2::Socket>,
    _filler: Option<TcpStream>,
}

impl Default for Blackhole {
    fn default() -> Self {
        Self::new()
    }
}

impl Blackhole {
    /// Listens on an ephemeral port of 127.0.0.1 with a backlog of 0 (one queued
    /// connection on Linux) and queues one connection, so later connects hang.
    pub fn new() -> Self {
        use socket2::{Domain, Socket, Type};
        let listener = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
        let any: SocketAddr = "127.0.0.1:0".parse().expect("literal address");
        listener.bind(&any.into()).expect("bind");
        listener.listen(0).expect("listen");
        let addr = listener
            .local_addr()
            .expect("local addr")
            .as_socket()
            .expect("an IP address");
        let filler = TcpStream::connect(addr).expect("fill the accept queue");
        Self {
            addr,
            listener: Some(listener),
            _filler: Some(filler),
        }
    }

    /// Stops listening: the next SYN a pending connect retransmits is refused.
    pub fn close(&mut self) {
        self.listener = None;
        self._filler = None;
    }

    /// How many times a connect waiting on this address has retransmitted its SYN (from
    /// `/proc/net/tcp`); `None` when no connect to it is pending.
    pub fn pending_connect(&self) -> Option<u32> {
        let SocketAddr::V4(v4) = self.addr else {
            return None;
        };
        // The kernel prints the address as the u32 it stores (network order read in the
        // machine's order) and the port in host order.
        let remote = format!(
            "{:08X}:{:04X}",
            u32::from_ne_bytes(v4.ip().octets()),
            v4.port()
        );
        let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
        table.lines().skip(1).find_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            const SYN_SENT: &str = "02";
            if fields.get(2) != Some(&remote.as_str()) || fields.get(3) != Some(&SYN_SENT) {
                return None;
            }
            u32::from_str_radix(fields.get(6)?, 16).ok()
        })
    }
}
