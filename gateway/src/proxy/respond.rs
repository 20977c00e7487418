//! Answers the gateway writes itself: JSON errors and the HTTPS redirect.

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::protocols::http::ServerSession;

/// A short JSON error body for `status`; never carries internal error text.
pub(crate) fn error_body(status: u16) -> &'static str {
    match status {
        400 => r#"{"error":"bad request"}"#,
        405 => r#"{"error":"method not allowed"}"#,
        404 => r#"{"error":"no route"}"#,
        413 => r#"{"error":"request body too large"}"#,
        414 => r#"{"error":"request target too long"}"#,
        421 => r#"{"error":"misdirected request"}"#,
        431 => r#"{"error":"request headers too large"}"#,
        502 => r#"{"error":"bad gateway"}"#,
        504 => r#"{"error":"gateway timeout"}"#,
        _ => r#"{"error":"internal error"}"#,
    }
}

/// The `Strict-Transport-Security` header.
pub(crate) const HSTS: http::header::HeaderName = http::header::STRICT_TRANSPORT_SECURITY;

/// Writes a complete `status` response with the JSON error body (and `hsts`, on an
/// HTTPS listener that sets it).
pub(crate) async fn json_error(
    session: &mut ServerSession,
    status: u16,
    request_id: &HeaderValue,
    hsts: Option<&HeaderValue>,
) -> pingora::Result<()> {
    let body = error_body(status);
    let mut resp = ResponseHeader::build(status, Some(4))?;
    resp.insert_header(CONTENT_TYPE, "application/json")?;
    resp.insert_header(super::REQUEST_ID, request_id)?;
    if let Some(hsts) = hsts {
        resp.insert_header(HSTS, hsts)?;
    }
    resp.insert_header(CONTENT_LENGTH, body.len())?;
    session.write_response_header(Box::new(resp)).await?;
    session
        .write_response_body(Bytes::from_static(body.as_bytes()), true)
        .await
}

/// Writes a 308 to the `https://` URL of the request; `port` is put in the URL
/// when set (the request's own port never is: it is the plain listener's).
///
/// A request without a host gets 400: there is nothing to redirect to.
pub(crate) async fn redirect_to_https(
    session: &mut ServerSession,
    port: Option<u16>,
    request_id: &HeaderValue,
) -> pingora::Result<u16> {
    let Some(location) = https_location(session.req_header(), port) else {
        json_error(session, 400, request_id, None).await?;
        return Ok(400);
    };
    let mut resp = ResponseHeader::build(308, Some(3))?;
    resp.insert_header(super::REQUEST_ID, request_id)?;
    resp.insert_header(LOCATION, location)?;
    resp.insert_header(CONTENT_LENGTH, 0)?;
    session.write_response_header(Box::new(resp)).await?;
    session.write_response_body(Bytes::new(), true).await?;
    Ok(308)
}

fn https_location(req: &RequestHeader, port: Option<u16>) -> Option<String> {
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

    fn req(uri: &str, host: Option<&str>) -> RequestHeader {
        let mut r = RequestHeader::build("GET", uri.as_bytes(), None).unwrap();
        if let Some(h) = host {
            r.insert_header("host", h).unwrap();
        }
        r
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
