//! `authsvc`: a forward-auth service for the gateway's tests, answering as oauth2-proxy's
//! `/oauth2/auth` does, by the `session` cookie: `ok-USER` 200 with
//! `x-auth-request-user: USER` and `x-auth-request-email: USER@example.test`;
//! `forbidden` 403; `broken` 500; anything else (or none) 401 with
//! `WWW-Authenticate: Bearer realm="test"`. `--delay-ms N` delays every answer.
//! `GET /_last` answers the previous auth request as lines: `method target`, then its
//! `name: value` headers, then `body-bytes: N` (for tests of what the gateway sends).
//!
//! `authsvc --listen ADDR [--delay-ms N]`; prints `listening on ADDR` once ready.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderValue, COOKIE};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

fn main() -> ExitCode {
    let mut listen = None;
    let mut delay = Duration::ZERO;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--listen", Some(v)) => listen = v.parse::<SocketAddr>().ok(),
            ("--delay-ms", Some(v)) => match v.parse() {
                Ok(ms) => delay = Duration::from_millis(ms),
                Err(_) => return usage(),
            },
            _ => return usage(),
        }
    }
    let Some(listen) = listen else {
        return usage();
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("authsvc: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(listen, delay)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("authsvc: {e}");
            ExitCode::FAILURE
        }
    }
}

fn usage() -> ExitCode {
    eprintln!("usage: authsvc --listen ADDR [--delay-ms N]");
    ExitCode::from(2)
}

async fn serve(listen: SocketAddr, delay: Duration) -> std::io::Result<()> {
    let listener = TcpListener::bind(listen).await?;
    println!("listening on {}", listener.local_addr()?);
    let last = Arc::new(Mutex::new(String::new()));
    loop {
        let (tcp, _) = listener.accept().await?;
        let last = last.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| answer(req, last.clone(), delay));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), service)
                .await;
        });
    }
}

async fn answer(
    req: Request<hyper::body::Incoming>,
    last: Arc<Mutex<String>>,
    delay: Duration,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.uri().path() == "/_last" {
        let text = last.lock().map(|t| t.clone()).unwrap_or_default();
        return Ok(Response::new(Full::new(Bytes::from(text))));
    }
    let mut seen = format!("{} {}\n", req.method(), req.uri());
    for (name, value) in req.headers() {
        seen.push_str(&format!(
            "{name}: {}\n",
            String::from_utf8_lossy(value.as_bytes())
        ));
    }
    let session = session(req.headers().get_all(COOKIE).iter());
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes().len())
        .unwrap_or(0);
    seen.push_str(&format!("body-bytes: {body}\n"));
    if let Ok(mut l) = last.lock() {
        *l = seen;
    }
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let mut response = Response::new(Full::new(Bytes::new()));
    match session.as_deref() {
        Some(s) if s.starts_with("ok-") => {
            let user = &s[3..];
            let h = response.headers_mut();
            if let Ok(v) = HeaderValue::try_from(user) {
                h.insert("x-auth-request-user", v);
            }
            if let Ok(v) = HeaderValue::try_from(format!("{user}@example.test")) {
                h.insert("x-auth-request-email", v);
            }
        }
        Some("forbidden") => *response.status_mut() = StatusCode::FORBIDDEN,
        Some("broken") => *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR,
        _ => {
            *response.status_mut() = StatusCode::UNAUTHORIZED;
            response.headers_mut().insert(
                "www-authenticate",
                HeaderValue::from_static("Bearer realm=\"test\""),
            );
        }
    }
    Ok(response)
}

/// The `session` cookie's value among the `Cookie` headers.
fn session<'a>(cookies: impl Iterator<Item = &'a HeaderValue>) -> Option<String> {
    for value in cookies {
        let text = value.to_str().ok()?;
        for pair in text.split(';') {
            if let Some(v) = pair.trim().strip_prefix("session=") {
                return Some(v.to_owned());
            }
        }
    }
    None
}
