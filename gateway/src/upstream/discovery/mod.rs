//! Discovery: keeps an upstream's backend set current (DNS names re-resolved at TTL
//! expiry; Kubernetes EndpointSlices watched), in tasks that end with the upstream.

mod dns;
#[cfg(feature = "kubernetes")]
mod kubernetes;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::Duration;

pub use dns::{DnsError, Resolver};

use super::Upstream;
use crate::config::{Discovery, ServerAddr};

/// The resolver DNS tasks use (`None` when none could be built). Each new value (new
/// `[dns]` settings, SIGHUP) makes every task resolve its names again at once.
pub type ResolverWatch = tokio::sync::watch::Receiver<Option<Arc<Resolver>>>;

/// Starts the discovery task of `upstream`, if it has one.
pub(super) fn start(
    upstream: &Arc<Upstream>,
    resolver: &ResolverWatch,
    runtime: &tokio::runtime::Handle,
) {
    match &upstream.config.discovery {
        Discovery::Servers(servers) => {
            let names: Vec<(String, u16)> = servers
                .iter()
                .filter_map(|s| match s {
                    ServerAddr::Name { host, port } => Some((host.clone(), *port)),
                    ServerAddr::Ip(_) => None,
                })
                .collect();
            if names.is_empty() {
                return;
            }
            let ips = crate::config::ip_servers(servers);
            runtime.spawn(follow_dns(
                Arc::downgrade(upstream),
                resolver.clone(),
                names,
                ips,
            ));
        }
        #[cfg(feature = "kubernetes")]
        Discovery::Kubernetes(service) => kubernetes::start(upstream, service.clone(), runtime),
        #[cfg(not(feature = "kubernetes"))]
        Discovery::Kubernetes(service) => {
            tracing::error!(
                upstream = %upstream.name(),
                service = %service.service,
                "kubernetes discovery is not built into this binary; the upstream has no backends"
            );
            upstream.discovered(false);
        }
    }
}

/// Re-resolves `names` whenever the shortest TTL among them runs out, or at once when
/// the resolver changes. A failed or empty answer keeps the name's last good addresses
/// and is retried with backoff.
async fn follow_dns(
    upstream: Weak<Upstream>,
    mut resolver: ResolverWatch,
    names: Vec<(String, u16)>,
    ips: Vec<SocketAddr>,
) {
    let mut last_good: HashMap<&str, Vec<SocketAddr>> = HashMap::new();
    let mut failures: u32 = 0;
    let Some(closed) = upstream.upgrade().map(|u| u.closed()) else {
        return;
    };
    tokio::pin!(closed);
    loop {
        let current = resolver.borrow_and_update().clone();
        // `None`: no resolver to ask; wait for one.
        let next = match current {
            Some(r) => {
                let resolved = resolve_names(&upstream, &r, &names, &ips, &mut last_good).await;
                let Some((mut next, all_ok)) = resolved else {
                    return;
                };
                if all_ok {
                    failures = 0;
                } else {
                    failures = failures.saturating_add(1);
                    let backoff = r.min_ttl().saturating_mul(1 << failures.min(5));
                    next = next.min(backoff.max(Duration::from_millis(500)));
                }
                Some(next)
            }
            None => {
                let Some(up) = upstream.upgrade() else { return };
                tracing::error!(upstream = %up.name(), "no DNS resolver; server names cannot be resolved");
                up.discovered(false);
                None
            }
        };
        let sleep = async {
            match next {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = &mut closed => return,
            () = sleep => {}
            () = changed(&mut resolver) => {}
        }
    }
}

/// Resolves every name once with `resolver`, updates the upstream's backends and records
/// the outcome. Returns when to resolve again and whether every name resolved; `None`
/// once the upstream is gone.
async fn resolve_names<'n>(
    upstream: &Weak<Upstream>,
    resolver: &Resolver,
    names: &'n [(String, u16)],
    ips: &[SocketAddr],
    last_good: &mut HashMap<&'n str, Vec<SocketAddr>>,
) -> Option<(Duration, bool)> {
    let mut next = resolver.max_ttl();
    let mut all_ok = true;
    for (host, port) in names {
        match resolver.resolve(host, *port).await {
            Ok((mut addrs, ttl)) => {
                next = next.min(ttl);
                // DNS servers rotate answers: order them so a shuffle is no change.
                addrs.sort();
                last_good.insert(host, addrs);
            }
            Err(error) => {
                all_ok = false;
                let kept = last_good.get(host.as_str()).map_or(0, Vec::len);
                let up = upstream.upgrade()?;
                tracing::warn!(
                    upstream = %up.name(),
                    error = %crate::error_chain(&error),
                    kept,
                    "DNS resolution failed; keeping the last good addresses"
                );
            }
        }
    }
    let up = upstream.upgrade()?;
    // A name that has never resolved in this task has no last good addresses of its own:
    // an upstream rebuilt by a reload starts with the backends its predecessor found
    // (`inherit_backends`), and keeps them until every name has answered once.
    let unknown = names
        .iter()
        .any(|(h, _)| !last_good.contains_key(h.as_str()));
    if unknown && !up.addrs().is_empty() {
        up.discovered(all_ok);
        return Some((next, all_ok));
    }
    let mut addrs = ips.to_vec();
    for (host, _) in names {
        addrs.extend(last_good.get(host.as_str()).into_iter().flatten().copied());
    }
    if up.addrs() != addrs {
        tracing::info!(upstream = %up.name(), backends = addrs.len(), "backends changed (DNS)");
        up.set_addrs(&addrs);
    }
    up.discovered(all_ok);
    Some((next, all_ok))
}

/// Resolves when the resolver is replaced; never once its sender is gone.
async fn changed(resolver: &mut ResolverWatch) {
    if resolver.changed().await.is_err() {
        std::future::pending::<()>().await;
    }
}
