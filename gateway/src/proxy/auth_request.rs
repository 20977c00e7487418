//! Forward auth (nginx's `auth_request`, Traefik's ForwardAuth): before a request goes
//! on, a `GET` to the route's auth service carrying the original method, URI and host
//! (`X-Forwarded-Method`, `X-Forwarded-Uri`, `X-Forwarded-Host`), the listed request
//! fields and never the body, over the auth upstream's pooled connections. 2xx: the
//! request continues with the listed response fields (the client's own copies removed
//! first); 401: a redirect to `signin`, else the 401 and its `WWW-Authenticate`; 403:
//! 403; anything else, a timeout or no answer: 503 (fail closed), logged.

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, LOCATION, WWW_AUTHENTICATE};
use http::{HeaderMap, Method, StatusCode};

use super::downstream::{DownError, Downstream, Reply, Request};
use super::respond;
use super::{Client, Gateway, RequestCtx};
use crate::auth::Forward;
use crate::http1::{ClientConn, HeadLimits, OutBody, OutRequest, MAX_HEADER_SLOTS};
use crate::ip_text::IpText;
use crate::upstream::Outcome;

/// An auth service's answer head, as any backend's.
const LIMITS: HeadLimits = HeadLimits {
    max_head: 64 * 1024,
    max_headers: MAX_HEADER_SLOTS,
    max_target: 0,
    reserve: 0,
};

/// Body bytes of an auth answer read (and dropped) at most; more: the connection is
/// not kept.
const MAX_ANSWER_BODY: usize = 64 * 1024;

const X_FORWARDED_METHOD: &[u8] = b"x-forwarded-method";
const X_FORWARDED_URI: &[u8] = b"x-forwarded-uri";

impl Gateway {
    /// Asks `auth`'s service about `req`. `None`: the request goes on (its headers now
    /// carry the copied fields); `Some(status)`: answered here with that status.
    pub(super) async fn forward_auth<D: Downstream>(
        &self,
        down: &mut D,
        auth: &Forward,
        req: &mut Request,
        ctx: &RequestCtx,
        client: &Client,
    ) -> Result<Option<u16>, DownError> {
        let answer = self.ask(auth, req, ctx, client).await;
        let (id, hsts) = (&ctx.request_id, ctx.hsts.as_ref());
        let (status, headers) = match answer {
            Ok(answer) => answer,
            Err(reason) => {
                tracing::warn!(
                    upstream = auth.upstream.name(),
                    reason,
                    "forward auth failed: 503"
                );
                respond::json_error(down, 503, id, hsts).await?;
                return Ok(Some(503));
            }
        };
        let config = &auth.config;
        match status.as_u16() {
            200..=299 => {
                // What the auth service says replaces whatever the client sent.
                for name in &config.response_headers {
                    req.headers.remove(name);
                    for value in headers.get_all(name) {
                        req.headers.append(name.clone(), value.clone());
                    }
                }
                Ok(None)
            }
            401 => match &config.signin {
                Some(signin) => {
                    let location =
                        signin.replace("$request_url", &url_encode(&request_url(req, self.proto)));
                    let location = HeaderValue::try_from(location)
                        .unwrap_or_else(|_| HeaderValue::from_static("/"));
                    let extra = [(LOCATION, location)];
                    let reply = Reply {
                        status: StatusCode::FOUND,
                        reason: None,
                        headers: HeaderMap::new(),
                        relayed: false,
                        extra: &extra,
                        request_id: id,
                        hsts,
                        body: OutBody::Length(0),
                    };
                    down.write_head(reply, Bytes::new(), true).await?;
                    Ok(Some(302))
                }
                None => {
                    let challenge = headers.get(WWW_AUTHENTICATE).cloned();
                    match challenge {
                        Some(challenge) => {
                            respond::unauthorized(down, &challenge, id, hsts).await?
                        }
                        None => respond::json_error(down, 401, id, hsts).await?,
                    }
                    Ok(Some(401))
                }
            },
            403 => {
                respond::json_error(down, 403, id, hsts).await?;
                Ok(Some(403))
            }
            other => {
                tracing::warn!(
                    upstream = auth.upstream.name(),
                    status = other,
                    "forward auth failed: 503"
                );
                respond::json_error(down, 503, id, hsts).await?;
                Ok(Some(503))
            }
        }
    }

    /// The auth service's status and fields for `req`, within the auth timeout.
    async fn ask(
        &self,
        auth: &Forward,
        req: &Request,
        ctx: &RequestCtx,
        client: &Client,
    ) -> Result<(StatusCode, HeaderMap), &'static str> {
        let upstream = &auth.upstream;
        let config = &auth.config;
        let Some(chosen) = upstream.select(None, &[]) else {
            return Err("the auth upstream has no backends");
        };
        let backend = chosen.backend();
        let exchange = async {
            let stream = match backend.pool.take(upstream.config.timeouts.idle) {
                Some(stream) => stream,
                None => {
                    let (connected, _) =
                        Box::pin(self.connect(upstream, backend, std::time::Duration::ZERO)).await;
                    match connected {
                        Ok(stream) => stream,
                        Err(_) => {
                            backend.connect_failed(&upstream.config.passive);
                            return Err((
                                Outcome::ConnectFailure,
                                "cannot connect to the auth service",
                            ));
                        }
                    }
                }
            };
            backend.connect_succeeded();
            let mut conn = ClientConn::new(stream);
            let mut fields = HeaderMap::new();
            for name in &config.request_headers {
                for value in req.headers.get_all(name) {
                    fields.append(name.clone(), value.clone());
                }
            }
            let ip = client.ip.map(IpText::new);
            let host = super::request_host(req).unwrap_or("");
            let uri = req.uri.path_and_query().map_or("/", |p| p.as_str());
            let mut extra = super::outgoing::Extras::default();
            extra.push(b"host", host.as_bytes());
            extra.push(X_FORWARDED_METHOD, req.method.as_str().as_bytes());
            extra.push(X_FORWARDED_URI, uri.as_bytes());
            extra.push(b"x-forwarded-host", host.as_bytes());
            extra.push(b"x-forwarded-proto", self.proto.as_bytes());
            if let Some(ip) = &ip {
                extra.push(b"x-forwarded-for", ip.as_bytes());
            }
            extra.push(b"x-request-id", ctx.request_id.as_bytes());
            let skip = |_: &HeaderName| false;
            let out = OutRequest {
                method: &Method::GET,
                target: config.path.as_bytes(),
                headers: &fields,
                skip: &skip,
                extra: extra.as_slice(),
                body: OutBody::None,
            };
            let failed = |_| (Outcome::Error, "the auth service's connection failed");
            conn.write_request(out, b"", true).await.map_err(failed)?;
            let head = loop {
                let head = conn.read_response(&LIMITS).await.map_err(failed)?;
                if !head.is_interim() {
                    break head;
                }
            };
            let mut read = 0;
            while let Some(piece) = conn.read_body().await.map_err(failed)? {
                read += piece.len();
                if read > MAX_ANSWER_BODY {
                    return Ok((head.status, head.headers));
                }
            }
            if let Some(stream) = conn.into_reusable() {
                backend.pool.put(stream);
            }
            Ok((head.status, head.headers))
        };
        match tokio::time::timeout(config.timeout, exchange).await {
            Ok(Ok(answer)) => {
                backend.count(Outcome::Success);
                Ok(answer)
            }
            Ok(Err((outcome, reason))) => {
                backend.count(outcome);
                Err(reason)
            }
            Err(_) => {
                backend.count(Outcome::Error);
                Err("the auth service did not answer within the timeout")
            }
        }
    }
}

/// The URL the client asked for: `SCHEME://HOST/PATH?QUERY`.
fn request_url(req: &Request, proto: &str) -> String {
    let host = super::request_host(req).unwrap_or("");
    let path = req.uri.path_and_query().map_or("/", |p| p.as_str());
    format!("{proto}://{host}{path}")
}

/// Percent-encodes all but RFC 3986's unreserved characters.
fn url_encode(text: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(text.len() * 3);
    for &b in text.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_urls_are_percent_encoded_whole() {
        assert_eq!(
            url_encode("https://shop.test/a b?x=1&y=é"),
            "https%3A%2F%2Fshop.test%2Fa%20b%3Fx%3D1%26y%3D%C3%A9"
        );
        assert_eq!(url_encode("AZaz09-._~"), "AZaz09-._~");
    }
}
