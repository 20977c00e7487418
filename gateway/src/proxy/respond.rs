//! Answers the gateway writes itself: JSON errors and the HTTPS redirect.

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE, LOCATION};
use http::{HeaderMap, StatusCode};

use super::downstream::{DownError, Downstream, Reply, Request, RequestId};
use crate::http1::OutBody;

/// A short JSON error body for `status`; never carries internal error text.
pub(crate) fn error_body(status: u16) -> &'static str {
    match status {
        400 => r#"{"error":"bad request"}"#,
        403 => r#"{"error":"forbidden"}"#,
        405 => r#"{"error":"method not allowed"}"#,
        404 => r#"{"error":"no route"}"#,
        413 => r#"{"error":"request body too large"}"#,
        414 => r#"{"error":"request target too long"}"#,
        421 => r#"{"error":"misdirected request"}"#,
        431 => r#"{"error":"request headers too large"}"#,
        502 => r#"{"error":"bad gateway"}"#,
        503 => r#"{"error":"service unavailable"}"#,
        504 => r#"{"error":"gateway timeout"}"#,
        _ => r#"{"error":"internal error"}"#,
    }
}

/// The `Strict-Transport-Security` header.
pub(crate) const HSTS: http::header::HeaderName = http::header::STRICT_TRANSPORT_SECURITY;

/// Writes a complete `status` response with the JSON error body (and `hsts`, on an
/// HTTPS listener that sets it).
pub(crate) async fn json_error<D: Downstream>(
    down: &mut D,
    status: u16,
    request_id: &RequestId,
    hsts: Option<&HeaderValue>,
) -> Result<(), DownError> {
    let body = error_body(status);
    let extra = [(CONTENT_TYPE, HeaderValue::from_static("application/json"))];
    let reply = Reply {
        status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        reason: None,
        headers: HeaderMap::new(),
        relayed: false,
        extra: &extra,
        request_id,
        hsts,
        body: OutBody::Length(body.len() as u64),
    };
    down.write_head(reply, Bytes::from_static(body.as_bytes()), true)
        .await
}

/// Writes a 308 to the `https://` URL of the request; `port` is put in the URL
/// when set (the request's own port never is: it is the plain listener's).
///
/// A request without a host gets 400: there is nothing to redirect to.
pub(crate) async fn redirect_to_https<D: Downstream>(
    down: &mut D,
    req: &Request,
    port: Option<u16>,
    request_id: &RequestId,
) -> Result<u16, DownError> {
    let location = https_location(req, port).and_then(|l| HeaderValue::from_str(&l).ok());
    let Some(location) = location else {
        json_error(down, 400, request_id, None).await?;
        return Ok(400);
    };
    let extra = [(LOCATION, location)];
    let reply = Reply {
        status: StatusCode::PERMANENT_REDIRECT,
        reason: None,
        headers: HeaderMap::new(),
        relayed: false,
        extra: &extra,
        request_id,
        hsts: None,
        body: OutBody::Length(0),
    };
    down.write_head(reply, Bytes::new(), true).await?;
    Ok(308)
}

fn https_location(req: &Request, port: Option<u16>) -> Option<String> {
    let host = super::request_host(req).filter(|h| !h.is_empty())?;
    let path = req.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let mut url = String::with_capacity(8 + host.len() + 6 + path.len());
    url.push_str("https://");
    url.push_str(host);
    if let Some(port) = port.filter(|&p| p != 443) {
        url.push(':');
        url.push_str(&port.to_string());
    }
    url.push_str(path);
    Some(url)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{Method, Uri, Version};

    fn req(uri: &'static str, host: Option<&'static str>) -> Request {
        let mut headers = HeaderMap::new();
        if let Some(h) = host {
            headers.insert("host", HeaderValue::from_static(h));
        }
        Request {
            method: Method::GET,
            uri: Uri::from_static(uri),
            version: Version::HTTP_11,
            headers,
        }
    }

    #[test]
    fn location_keeps_path_and_query_and_drops_the_listen_port() {
        let r = req("/a/b?c=d&e", Some("Example.com:8080"));
        assert_eq!(
            https_location(&r, None).as_deref(),
            Some("https://Example.com/a/b?c=d&e")
        );
        assert_eq!(
            https_location(&r, Some(8443)).as_deref(),
            Some("https://Example.com:8443/a/b?c=d&e")
        );
        assert_eq!(
            https_location(&r, Some(443)).as_deref(),
            Some("https://Example.com/a/b?c=d&e")
        );
        let v6 = req("/", Some("[::1]:8080"));
        assert_eq!(https_location(&v6, None).as_deref(), Some("https://[::1]/"));
        assert_eq!(https_location(&req("/", None), None), None);
    }
}
