//! Answers the gateway writes itself: JSON errors and the HTTPS redirect.

use bytes::Bytes;
use std::time::Duration;

use http::header::{
    HeaderName, HeaderValue, CONTENT_TYPE, LOCATION, RETRY_AFTER, WWW_AUTHENTICATE,
};
use http::{HeaderMap, StatusCode};

use super::downstream::{DownError, Downstream, Reply, Request, RequestId};
use crate::http1::OutBody;
use crate::routes::filters::rate_limit::RateLimit;

/// A short JSON error body for `status`; never carries internal error text.
pub(crate) fn error_body(status: u16) -> &'static str {
    match status {
        400 => r#"{"error":"bad request"}"#,
        401 => r#"{"error":"unauthorized"}"#,
        403 => r#"{"error":"forbidden"}"#,
        405 => r#"{"error":"method not allowed"}"#,
        404 => r#"{"error":"no route"}"#,
        413 => r#"{"error":"request body too large"}"#,
        414 => r#"{"error":"request target too long"}"#,
        421 => r#"{"error":"misdirected request"}"#,
        429 => r#"{"error":"too many requests"}"#,
        431 => r#"{"error":"request headers too large"}"#,
        502 => r#"{"error":"bad gateway"}"#,
        503 => r#"{"error":"service unavailable"}"#,
        504 => r#"{"error":"gateway timeout"}"#,
        505 => r#"{"error":"gRPC needs HTTP/2"}"#,
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
    let extra = [(CONTENT_TYPE, HeaderValue::from_static("application/json"))];
    json_reply(down, status, &extra, request_id, hsts).await
}

/// [`json_error`] with the gateway's own fields `extra` (the content type among them).
async fn json_reply<D: Downstream>(
    down: &mut D,
    status: u16,
    extra: &[(HeaderName, HeaderValue)],
    request_id: &RequestId,
    hsts: Option<&HeaderValue>,
) -> Result<(), DownError> {
    let body = error_body(status);
    let reply = Reply {
        status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        reason: None,
        headers: HeaderMap::new(),
        relayed: false,
        extra,
        request_id,
        hsts,
        body: OutBody::Length(body.len() as u64),
    };
    down.write_head(reply, Bytes::from_static(body.as_bytes()), true)
        .await
}

/// Writes `429 {"error":"too many requests"}` with `Retry-After` (whole seconds, at
/// least 1) and the IETF draft's `RateLimit-Policy` and `RateLimit` fields
/// (draft-ietf-httpapi-ratelimit-headers: quota `q` per window `w`; remaining `r`, and
/// `t` seconds until it is worth retrying).
pub(crate) async fn rate_limited<D: Downstream>(
    down: &mut D,
    policy: &RateLimit,
    retry_after: Duration,
    request_id: &RequestId,
    hsts: Option<&HeaderValue>,
) -> Result<(), DownError> {
    let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
    let secs = secs.max(1);
    let window = policy.per.as_secs().max(1);
    let values = [
        secs.to_string(),
        format!("\"default\";q={};w={window}", policy.requests),
        format!("\"default\";r=0;t={secs}"),
    ];
    let [retry, quota, state] = values.map(|v| HeaderValue::try_from(v).ok());
    let mut extra = vec![(CONTENT_TYPE, HeaderValue::from_static("application/json"))];
    let names = [RETRY_AFTER, RATELIMIT_POLICY, RATELIMIT];
    for (name, value) in names.into_iter().zip([retry, quota, state]) {
        extra.extend(value.map(|v| (name, v)));
    }
    json_reply(down, 429, &extra, request_id, hsts).await
}

/// Writes `401 {"error":"unauthorized"}` with the route's `WWW-Authenticate` challenge.
pub(crate) async fn unauthorized<D: Downstream>(
    down: &mut D,
    challenge: &HeaderValue,
    request_id: &RequestId,
    hsts: Option<&HeaderValue>,
) -> Result<(), DownError> {
    let extra = [
        (CONTENT_TYPE, HeaderValue::from_static("application/json")),
        (WWW_AUTHENTICATE, challenge.clone()),
    ];
    json_reply(down, 401, &extra, request_id, hsts).await
}

const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

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
