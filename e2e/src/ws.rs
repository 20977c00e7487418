//! A real WebSocket client (tokio-tungstenite) over plain TCP or TLS, for tests of
//! upgrades through the gateway.

use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::handshake::client::Response;
use tokio_tungstenite::WebSocketStream;

use crate::Transport;

/// Any async byte stream a WebSocket can run over.
pub trait AsyncWire: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> AsyncWire for T {}

/// A client WebSocket connection.
pub type WebSocket = WebSocketStream<Pin<Box<dyn AsyncWire>>>;

/// How long one step of a WebSocket exchange may take before the test fails: a safety
/// net against a hung test, not a measured bound.
pub const WS_STEP: Duration = Duration::from_secs(30);

/// Opens a WebSocket to `ws(s)://localhost<path>` on 127.0.0.1:`port` over `transport`
/// (TLS trusts the CA at `ca`, offers `http/1.1`): the stream and the server's 101
/// response (whose `Sec-WebSocket-Accept` the library has checked).
pub async fn websocket(
    port: u16,
    transport: Transport,
    ca: &Path,
    path: &str,
) -> Result<(WebSocket, Response), String> {
    let tcp = TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let (wire, scheme): (Pin<Box<dyn AsyncWire>>, _) = match transport {
        Transport::Tcp => (Box::pin(tcp), "ws"),
        Transport::Tls => {
            let config = crate::client::tls_config(ca, &[b"http/1.1"]);
            let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
            let tls = TlsConnector::from(Arc::new(config))
                .connect(name, tcp)
                .await
                .map_err(|e| format!("TLS handshake: {e}"))?;
            (Box::pin(tls), "wss")
        }
    };
    let url = format!("{scheme}://localhost{path}");
    let handshake = tokio_tungstenite::client_async(url, wire);
    tokio::time::timeout(WS_STEP, handshake)
        .await
        .map_err(|_| "no answer to the upgrade".to_owned())?
        .map_err(|e| format!("WebSocket handshake: {e}"))
}
