//! An HTTPS client for tests: verifies against a given CA, sends a chosen SNI,
//! speaks HTTP/1.1 or HTTP/2 by ALPN, and reports the certificate it was served.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Version};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore, SupportedProtocolVersion};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// The HTTP version to offer by ALPN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    H1,
    H2,
}

/// A complete response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub version: Version,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Response {
    /// A header's value as text ("" when absent).
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Client settings: trusted CA and TLS versions.
#[derive(Clone)]
pub struct Client {
    roots: Arc<RootCertStore>,
    versions: Vec<&'static SupportedProtocolVersion>,
}

/// An open TLS connection that can carry several requests.
pub struct Conn {
    sender: Sender,
    /// The leaf certificate the server presented.
    pub peer_cert: CertificateDer<'static>,
    pub tls_version: rustls::ProtocolVersion,
    sni: String,
}

enum Sender {
    H1(http1::SendRequest<BoxBody<Bytes, Infallible>>),
    H2(http2::SendRequest<BoxBody<Bytes, Infallible>>),
}

impl Client {
    /// Trusts the CA certificates in the PEM file `ca`; TLS 1.2 and 1.3.
    pub fn new(ca: &Path) -> Self {
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(ca).expect("read CA file") {
            roots.add(cert.expect("CA PEM")).expect("add CA");
        }
        Self {
            roots: Arc::new(roots),
            versions: vec![&rustls::version::TLS13, &rustls::version::TLS12],
        }
    }

    /// The same client, offering only `versions`.
    pub fn with_versions(mut self, versions: &[&'static SupportedProtocolVersion]) -> Self {
        self.versions = versions.to_vec();
        self
    }

    /// Connects to `addr` with SNI `sni` (`None`: an IP address is used, so no SNI is sent).
    pub async fn connect(
        &self,
        addr: SocketAddr,
        sni: Option<&str>,
        proto: Proto,
    ) -> Result<Conn, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&self.versions)
            .map_err(|e| e.to_string())?
            .with_root_certificates(self.roots.clone())
            .with_no_client_auth();
        config.alpn_protocols = vec![match proto {
            Proto::H1 => b"http/1.1".to_vec(),
            Proto::H2 => b"h2".to_vec(),
        }];
        let name = match sni {
            Some(s) => ServerName::try_from(s.to_owned()).map_err(|e| e.to_string())?,
            None => ServerName::IpAddress(addr.ip().into()),
        };
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        let tls = TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS handshake with {addr}: {e}"))?;
        let (_, session) = tls.get_ref();
        let peer_cert = session
            .peer_certificates()
            .and_then(|c| c.first())
            .ok_or("no peer certificate")?
            .clone()
            .into_owned();
        let tls_version = session.protocol_version().ok_or("no TLS version")?;
        let negotiated_h2 = session.alpn_protocol() == Some(b"h2");
        if negotiated_h2 != (proto == Proto::H2) {
            return Err(format!(
                "ALPN: asked for {proto:?}, got {:?}",
                session.alpn_protocol()
            ));
        }
        let io = TokioIo::new(tls);
        let sender = match proto {
            Proto::H1 => {
                let (sender, conn) = http1::handshake(io).await.map_err(|e| e.to_string())?;
                tokio::spawn(conn);
                Sender::H1(sender)
            }
            Proto::H2 => {
                let (sender, conn) = http2::handshake(TokioExecutor::new(), io)
                    .await
                    .map_err(|e| e.to_string())?;
                tokio::spawn(conn);
                Sender::H2(sender)
            }
        };
        Ok(Conn {
            sender,
            peer_cert,
            tls_version,
            sni: sni.map_or_else(|| addr.to_string(), str::to_owned),
        })
    }

    /// One GET on a new connection; panics on any connection error.
    pub async fn get(&self, addr: SocketAddr, sni: &str, path: &str, proto: Proto) -> Response {
        let mut conn = self.connect(addr, Some(sni), proto).await.expect("connect");
        conn.get(path).await.expect("request")
    }
}

impl Conn {
    /// GET `path` with the SNI name as host.
    pub async fn get(&mut self, path: &str) -> Result<Response, String> {
        let host = self.sni.clone();
        self.get_with_host(path, &host).await
    }

    /// GET `path` with `host` as Host (HTTP/1.1) or `:authority` (HTTP/2).
    pub async fn get_with_host(&mut self, path: &str, host: &str) -> Result<Response, String> {
        let req = match &self.sender {
            Sender::H1(_) => Request::get(path).header(http::header::HOST, host),
            Sender::H2(_) => Request::get(format!("https://{host}{path}")).version(Version::HTTP_2),
        };
        self.send(req.body(Empty::new()).map_err(|e| e.to_string())?)
            .await
    }

    /// Sends `req` as it is and reads the whole response.
    pub async fn send<B>(&mut self, req: Request<B>) -> Result<Response, String>
    where
        B: hyper::body::Body<Data = Bytes, Error = Infallible> + Send + Sync + 'static,
    {
        let path = req.uri().path().to_owned();
        let req = req.map(BodyExt::boxed);
        let result = match &mut self.sender {
            Sender::H1(s) => {
                s.ready()
                    .await
                    .map_err(|e| format!("connection closed: {e}"))?;
                s.send_request(req).await
            }
            Sender::H2(s) => {
                s.ready()
                    .await
                    .map_err(|e| format!("connection closed: {e}"))?;
                s.send_request(req).await
            }
        };
        let resp = result.map_err(|e| format!("request {path}: {e}"))?;
        let (parts, body) = resp.into_parts();
        let body = body
            .collect()
            .await
            .map_err(|e| format!("body of {path}: {e}"))?
            .to_bytes();
        Ok(Response {
            status: parts.status.as_u16(),
            version: parts.version,
            headers: parts.headers,
            body,
        })
    }
}

/// A rustls client config trusting the CA in the PEM file `ca`, offering `alpn`.
pub fn tls_config(ca: &Path, alpn: &[&[u8]]) -> ClientConfig {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).expect("read CA file") {
        roots.add(cert.expect("CA PEM")).expect("add CA");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config
}

/// A raw HTTP/2 client connection over TLS to `addr` (SNI `localhost`, trusting the CA
/// in `ca`): its request handle, and the task driving the connection (it ends when the
/// connection does).
pub async fn h2_connect(
    addr: SocketAddr,
    ca: &Path,
) -> (
    h2::client::SendRequest<Bytes>,
    tokio::task::JoinHandle<Result<(), h2::Error>>,
) {
    let config = tls_config(ca, &[b"h2"]);
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let name = ServerName::try_from("localhost").expect("server name");
    let tls = TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .expect("TLS handshake");
    let (send, conn) = h2::client::handshake(tls).await.expect("HTTP/2 handshake");
    (send, tokio::spawn(conn))
}

/// A bodiless `method` request for `target` to `host` with `headers`: `host` as Host on
/// HTTP/1.1, in the URL (`:authority`) on HTTP/2.
pub fn request_to(
    proto: Proto,
    method: &Method,
    host: &str,
    target: &str,
    headers: &[(&str, &str)],
) -> Request<Empty<Bytes>> {
    let mut req = match proto {
        Proto::H1 => Request::builder()
            .uri(target)
            .header(http::header::HOST, host),
        Proto::H2 => Request::builder()
            .uri(format!("https://{host}{target}"))
            .version(Version::HTTP_2),
    }
    .method(method.clone());
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    req.body(Empty::new()).expect("a valid request")
}
