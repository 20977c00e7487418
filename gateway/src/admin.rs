//! The admin listener: `/healthz` (liveness) and `/readyz` (readiness) for kubelet probes.

use async_trait::async_trait;
use http::{Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

/// Serves the admin endpoints.
pub struct AdminApp;

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let (status, body): (StatusCode, &[u8]) = match session.req_header().uri.path() {
            "/healthz" => (StatusCode::OK, b"ok\n"),
            "/readyz" => (StatusCode::OK, b"ready\n"),
            _ => (StatusCode::NOT_FOUND, b"not found\n"),
        };
        Response::builder()
            .status(status)
            .header(http::header::CONTENT_TYPE, "text/plain")
            .header(http::header::CONTENT_LENGTH, body.len())
            .body(body.to_vec())
            .unwrap_or_default()
    }
}
