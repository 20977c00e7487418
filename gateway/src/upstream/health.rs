//! Active HTTP health checks: GET `path` on every backend each `interval`;
//! 2xx and 3xx are healthy.

use std::net::SocketAddr;
use std::sync::{Arc, Weak};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::Upstream;
use crate::config::ActiveHealth;

/// Starts the active checks of `upstream`, if it has them. The task ends with the upstream.
pub(super) fn start(upstream: &Arc<Upstream>, runtime: &tokio::runtime::Handle) {
    if let Some(health) = upstream.config.health.clone() {
        runtime.spawn(check_loop(Arc::downgrade(upstream), health));
    }
}

async fn check_loop(upstream: Weak<Upstream>, health: ActiveHealth) {
    let period = health.interval;
    super::every(upstream, period, |up| {
        let backends = up.backends().backends.clone();
        let name = up.name().to_owned();
        let health = health.clone();
        async move {
            let mut checks = tokio::task::JoinSet::new();
            for backend in backends {
                let (health, name) = (health.clone(), name.clone());
                checks.spawn(async move {
                    let ok = check(backend.addr, &health).await;
                    let (was, now) =
                        backend.record_check(ok, health.healthy_after, health.unhealthy_after);
                    if was != now {
                        let verdict = if now { "healthy" } else { "unhealthy" };
                        tracing::warn!(upstream = %name, backend = %backend.addr, "backend is now {verdict} (active check)");
                    }
                });
            }
            while checks.join_next().await.is_some() {}
        }
    })
    .await;
}

/// One check: connect, `GET path`, read the status line, all within the timeout.
async fn check(addr: SocketAddr, health: &ActiveHealth) -> bool {
    let attempt = async {
        let mut stream = TcpStream::connect(addr).await.ok()?;
        let request = format!(
            "GET {} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: gateway-health-check\r\nConnection: close\r\n\r\n",
            health.path
        );
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut head = [0u8; 16];
        let mut read = 0;
        while read < 12 {
            let n = stream.read(&mut head[read..]).await.ok()?;
            if n == 0 {
                break;
            }
            read += n;
        }
        let status: u16 = std::str::from_utf8(head.get(9..12)?).ok()?.parse().ok()?;
        Some((200..400).contains(&status))
    };
    matches!(
        tokio::time::timeout(health.timeout, attempt).await,
        Ok(Some(true))
    )
}
