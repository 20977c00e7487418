//! Active health checks on every backend each `interval`, over the upstream's own
//! protocol (TLS and HTTP/2 included): `GET path` (2xx and 3xx are healthy), or for
//! `grpc = true` the standard `grpc.health.v1.Health/Check` (healthy: `SERVING`).

use std::net::SocketAddr;
use std::sync::{Arc, Weak};

use bytes::Bytes;
use pingora::protocols::{Stream, ALPN};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::Upstream;
use crate::config::{ActiveHealth, Protocol};

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
                let (health, name, up) = (health.clone(), name.clone(), up.clone());
                checks.spawn(async move {
                    let ok = check(&up, backend.addr, &health).await;
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

/// One check within the timeout: connect (and the TLS handshake), then the request
/// over HTTP/1.1 or HTTP/2 as the upstream speaks.
async fn check(up: &Upstream, addr: SocketAddr, health: &ActiveHealth) -> bool {
    let attempt = async {
        let stream = up.dial(addr).await.ok()?;
        let h2 = match up.config.protocol {
            Protocol::H2 | Protocol::H2c => true,
            Protocol::Auto => stream.selected_alpn_proto() == Some(ALPN::H2),
            Protocol::Http1 => false,
        };
        match (h2, &health.grpc) {
            (true, Some(service)) => grpc_check(stream, addr, service).await,
            (true, None) => h2_get(stream, addr, &health.path).await,
            (false, _) => h1_get(stream, addr, &health.path).await,
        }
    };
    matches!(
        tokio::time::timeout(health.timeout, attempt).await,
        Ok(Some(true))
    )
}

/// `GET path` over HTTP/1.1: the status line's code.
async fn h1_get(mut stream: Stream, addr: SocketAddr, path: &str) -> Option<bool> {
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: {USER_AGENT}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.ok()?;
    stream.flush().await.ok()?;
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
}

const USER_AGENT: &str = "gateway-health-check";

/// An HTTP/2 connection for one check: its handle, its connection driven by a task
/// that ends when the handle is dropped.
async fn h2_client(stream: Stream) -> Option<h2::client::SendRequest<Bytes>> {
    let (send, connection) = h2::client::handshake(stream).await.ok()?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    send.ready().await.ok()
}

fn h2_request(method: http::Method, addr: SocketAddr, path: &str) -> Option<http::Request<()>> {
    http::Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"))
        .header(http::header::USER_AGENT, USER_AGENT)
        .body(())
        .ok()
}

/// `GET path` over HTTP/2: the response's status.
async fn h2_get(stream: Stream, addr: SocketAddr, path: &str) -> Option<bool> {
    let mut send = h2_client(stream).await?;
    let request = h2_request(http::Method::GET, addr, path)?;
    let (response, _) = send.send_request(request, true).ok()?;
    let status = response.await.ok()?.status();
    Some(status.is_success() || status.is_redirection())
}

/// `grpc.health.v1.Health/Check` for `service` (the empty name: the server as a
/// whole): healthy when the answer is `SERVING` with `grpc-status: 0`.
async fn grpc_check(stream: Stream, addr: SocketAddr, service: &str) -> Option<bool> {
    let mut send = h2_client(stream).await?;
    let mut request = h2_request(http::Method::POST, addr, "/grpc.health.v1.Health/Check")?;
    let headers = request.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/grpc"),
    );
    headers.insert(http::header::TE, http::HeaderValue::from_static("trailers"));
    let (response, mut body) = send.send_request(request, false).ok()?;
    body.send_data(grpc_health_request(service)?, true).ok()?;
    let response = response.await.ok()?;
    if response.status() != http::StatusCode::OK {
        return Some(false);
    }
    let mut recv = response.into_body();
    let mut message = Vec::new();
    while let Some(data) = recv.data().await {
        let data = data.ok()?;
        let _ = recv.flow_control().release_capacity(data.len());
        message.extend_from_slice(&data);
        if message.len() > 1024 {
            return Some(false);
        }
    }
    let trailers = recv.trailers().await.ok()?;
    let status = trailers.as_ref().and_then(|t| t.get("grpc-status"));
    Some(status.is_some_and(|s| s == "0") && serving(&message))
}

/// The `HealthCheckRequest { service }` message, length-prefixed as gRPC frames it.
fn grpc_health_request(service: &str) -> Option<Bytes> {
    let len = u8::try_from(service.len()).ok().filter(|n| *n < 128)?;
    let mut message = vec![0u8];
    let body_len = if len == 0 { 0 } else { 2 + u32::from(len) };
    message.extend_from_slice(&body_len.to_be_bytes());
    if len > 0 {
        message.push(0x0a); // field 1, length-delimited
        message.push(len);
        message.extend_from_slice(service.as_bytes());
    }
    Some(Bytes::from(message))
}

/// Whether a framed `HealthCheckResponse` says `status = SERVING` (field 1, varint 1).
fn serving(framed: &[u8]) -> bool {
    let Some(message) = framed.get(5..) else {
        return false;
    };
    let declared = framed
        .get(1..5)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map(u32::from_be_bytes);
    framed.first() == Some(&0)
        && declared == u32::try_from(message.len()).ok()
        && message.windows(2).any(|w| w == [0x08, 0x01])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_requests_and_answers_are_framed_as_grpc() {
        assert_eq!(&grpc_health_request("").unwrap()[..], &[0, 0, 0, 0, 0]);
        let named = grpc_health_request("greeter.v1.Greeter").unwrap();
        assert_eq!(&named[..7], &[0, 0, 0, 0, 20, 0x0a, 18]);
        assert_eq!(&named[7..], b"greeter.v1.Greeter");
        assert!(grpc_health_request(&"x".repeat(200)).is_none());
        assert!(serving(&[0, 0, 0, 0, 2, 0x08, 0x01]));
        assert!(!serving(&[0, 0, 0, 0, 2, 0x08, 0x02]), "NOT_SERVING");
        assert!(
            !serving(&[0, 0, 0, 0, 0]),
            "UNKNOWN (the default, not sent)"
        );
        assert!(!serving(&[1, 0, 0, 0, 2, 0x08, 0x01]), "compressed");
        assert!(!serving(&[0, 0, 0, 0, 9, 0x08, 0x01]), "length mismatch");
    }
}
