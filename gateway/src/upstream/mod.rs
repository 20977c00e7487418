//! Upstream groups: backends (`backend`), their discovery (`discovery`), health
//! checks (`health`) and the choice of one per request (`balance`).

mod backend;
mod balance;
mod discovery;
mod health;
mod multiplex;
mod pool;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::config::{self, Balance, Discovery, ServerAddr};

pub use backend::{Backend, InFlight, Outcome};
pub use balance::hash_of;
pub(crate) use balance::random_u64;
pub use discovery::{DnsError, Resolver, ResolverWatch};
pub use multiplex::{H2Conn, Lease, Multiplex};

/// Starts the background work of `upstream`: discovery (server names through
/// `resolver`) and active health checks. The tasks hold only a weak reference and end
/// once the upstream is dropped.
pub fn start_tasks(
    upstream: &Arc<Upstream>,
    resolver: &ResolverWatch,
    runtime: &tokio::runtime::Handle,
) {
    discovery::start(upstream, resolver, runtime);
    health::start(upstream, runtime);
    runtime.spawn(sweep_loop(Arc::downgrade(upstream)));
}

/// Closes the upstream's idle connections past their idle timeout (or closed by the
/// backend) while no request takes them; ends with the upstream.
async fn sweep_loop(upstream: Weak<Upstream>) {
    let Some(idle) = upstream.upgrade().map(|u| u.config.timeouts.idle) else {
        return;
    };
    let period = idle.max(Duration::from_secs(1));
    every(upstream, period, |up| {
        for backend in &up.backends().backends {
            backend.pool.sweep(idle);
            backend.h2.sweep(idle);
        }
        std::future::ready(())
    })
    .await;
}

/// Runs `round` every `period` until the upstream is closed or dropped; between rounds
/// the task holds only a weak reference.
async fn every<F, R>(upstream: Weak<Upstream>, period: Duration, mut round: F)
where
    F: FnMut(Arc<Upstream>) -> R,
    R: std::future::Future<Output = ()>,
{
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let Some(closed) = upstream.upgrade().map(|u| u.closed()) else {
        return;
    };
    tokio::pin!(closed);
    loop {
        tokio::select! {
            () = &mut closed => return,
            _ = tick.tick() => {}
        }
        let Some(up) = upstream.upgrade() else { return };
        round(up).await;
    }
}

/// The backends of an upstream at one moment.
#[derive(Debug, Default)]
pub struct BackendSet {
    pub backends: Vec<Arc<Backend>>,
    ring: Option<balance::Ring>,
}

/// A named group of backends. The set of backends changes when discovery says so
/// (DNS answers, EndpointSlices); each backend keeps its health and load state for
/// as long as its address stays in the set.
#[derive(Debug)]
pub struct Upstream {
    pub config: config::Upstream,
    /// TLS to the backends, when the upstream has `tls`.
    pub tls: Option<Arc<crate::tls::UpstreamTls>>,
    set: ArcSwap<BackendSet>,
    turns: balance::Turns,
    /// Whether discovery has answered at least once (successfully or not).
    settled: AtomicBool,
    /// Discovery outcomes, for metrics.
    pub discovery_ok: AtomicU64,
    pub discovery_failed: AtomicU64,
    /// Dropped with the upstream: its tasks wait on [`Upstream::closed`] to end.
    closing: tokio::sync::watch::Sender<()>,
}

impl Upstream {
    /// A new connection to backend `addr` (no pool, no timeout): TCP, then TLS when the
    /// upstream has `tls`. The request path's plain connections go through pingora's
    /// connector instead.
    pub async fn dial(&self, addr: SocketAddr) -> pingora::Result<pingora::protocols::Stream> {
        let tcp = tokio::net::TcpStream::connect(addr).await.map_err(|e| {
            let context = format!("connecting to {addr}");
            pingora::Error::because(pingora::ErrorType::ConnectError, context, e)
        })?;
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            Some(tls) => tls.handshake(tcp, addr).await,
            None => Ok(Box::new(pingora::protocols::l4::stream::Stream::from(tcp))),
        }
    }

    /// An upstream for `config`: IP literals are backends at once; names and
    /// Kubernetes services get theirs from discovery.
    pub fn new(config: config::Upstream, tls: Option<Arc<crate::tls::UpstreamTls>>) -> Self {
        let (ips, dynamic) = match &config.discovery {
            Discovery::Servers(servers) => {
                let ips = config::ip_servers(servers);
                let dynamic = ips.len() != servers.len();
                (ips, dynamic)
            }
            Discovery::Kubernetes(_) => (Vec::new(), true),
        };
        let upstream = Self {
            config,
            tls,
            set: ArcSwap::from_pointee(BackendSet::default()),
            turns: balance::Turns::default(),
            settled: AtomicBool::new(!dynamic),
            discovery_ok: AtomicU64::new(0),
            discovery_failed: AtomicU64::new(0),
            closing: tokio::sync::watch::channel(()).0,
        };
        upstream.set_addrs(&ips);
        upstream
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// Replaces the backends with `addrs` (duplicates ignored); backends whose address
    /// stays keep their state.
    pub fn set_addrs(&self, addrs: &[SocketAddr]) {
        let old = self.set.load();
        let mut backends: Vec<Arc<Backend>> = Vec::with_capacity(addrs.len());
        for addr in addrs {
            if backends.iter().any(|b| b.addr == *addr) {
                continue;
            }
            let existing = old.backends.iter().find(|b| b.addr == *addr).cloned();
            backends.push(
                existing.unwrap_or_else(|| Arc::new(Backend::new(*addr, &self.config.timeouts))),
            );
        }
        let ring = matches!(self.config.balance, Balance::ConsistentHash(_))
            .then(|| balance::Ring::new(&backends));
        self.set.store(Arc::new(BackendSet { backends, ring }));
    }

    /// Resolves once the upstream is dropped: background tasks select on it.
    pub fn closed(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.closing.subscribe();
        async move { while rx.changed().await.is_ok() {} }
    }

    /// Starts with `old`'s backends (new state objects, same addresses), settled if it was.
    pub fn inherit_backends(&self, old: &Upstream) {
        let mut addrs = self.addrs();
        addrs.extend(old.addrs());
        self.set_addrs(&addrs);
        if old.settled() {
            self.settled.store(true, Ordering::Relaxed);
        }
    }

    /// The current backends.
    pub fn backends(&self) -> arc_swap::Guard<Arc<BackendSet>> {
        self.set.load()
    }

    /// Addresses of the current backends.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.set.load().backends.iter().map(|b| b.addr).collect()
    }

    /// Chooses a backend for a request, avoiding `tried` ones, and counts it in flight.
    /// `key` is the request's hash key for `consistent_hash` (`None`: round robin).
    pub fn select(&self, key: Option<u64>, tried: &[SocketAddr]) -> Option<InFlight> {
        let set = self.set.load();
        let b = &set.backends;
        let chosen = match (&self.config.balance, &set.ring, key) {
            (Balance::Random, _, _) => balance::random(b, tried),
            (Balance::LeastRequests, _, _) => balance::least_requests(b, tried),
            (Balance::ConsistentHash(_), Some(ring), Some(key)) => {
                balance::consistent(b, ring, key, tried)
            }
            // Round robin, and consistent_hash for requests without the key.
            _ => balance::round_robin(b, &self.turns, tried),
        };
        let counted = matches!(self.config.balance, Balance::LeastRequests);
        chosen.map(|backend| backend.start_request(counted))
    }

    /// Records that discovery answered (`ok`) or failed.
    pub fn discovered(&self, ok: bool) {
        let counter = if ok {
            &self.discovery_ok
        } else {
            &self.discovery_failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.settled.store(true, Ordering::Relaxed);
    }

    /// Whether some backends come from DNS names.
    pub fn resolves_names(&self) -> bool {
        matches!(&self.config.discovery, Discovery::Servers(s) if s.iter().any(|s| matches!(s, ServerAddr::Name { .. })))
    }

    /// Whether discovery has answered at least once.
    pub fn settled(&self) -> bool {
        self.settled.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{PassiveHealth, Timeouts};
    use std::time::Duration;

    pub(crate) fn config(servers: Vec<ServerAddr>, balance: Balance) -> config::Upstream {
        config::Upstream {
            name: "u".into(),
            discovery: Discovery::Servers(servers),
            balance,
            health: None,
            passive: PassiveHealth {
                unhealthy_after: 3,
                cooldown: Duration::from_secs(10),
            },
            retries: 2,
            timeouts: Timeouts {
                connect: Duration::from_secs(1),
                read: Duration::from_secs(1),
                write: Duration::from_secs(1),
                idle: Duration::from_secs(1),
            },
            protocol: config::Protocol::Http1,
            tls: None,
            max_streams: 100,
        }
    }

    #[test]
    fn backends_keep_their_state_across_set_changes() {
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:2".parse().unwrap();
        let up = Upstream::new(config(vec![ServerAddr::Ip(a)], Balance::RoundRobin), None);
        assert!(up.settled(), "IP literals need no discovery");
        let before = up.backends().backends[0].clone();
        up.set_addrs(&[b, a, a]);
        let after = up.backends();
        assert_eq!(after.backends.len(), 2);
        assert!(Arc::ptr_eq(&before, &after.backends[1]));
        let named = Upstream::new(
            config(
                vec![ServerAddr::Name {
                    host: "hello".into(),
                    port: 80,
                }],
                Balance::RoundRobin,
            ),
            None,
        );
        assert!(!named.settled() && named.select(None, &[]).is_none());
    }

    #[test]
    fn in_flight_is_counted_until_the_guard_drops() {
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let up = Upstream::new(
            config(vec![ServerAddr::Ip(a)], Balance::LeastRequests),
            None,
        );
        let guard = up.select(None, &[]).unwrap();
        assert_eq!(guard.backend().in_flight(), 1);
        let backend = guard.backend().clone();
        drop(guard);
        assert_eq!(backend.in_flight(), 0);
    }
}
