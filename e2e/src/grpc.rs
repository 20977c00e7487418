//! The `greeter.v1.Greeter` gRPC protocol, written by hand (no protoc, no build.rs): its
//! messages, method paths and a tonic client, shared by the `greeter` binary and tests.
//!
//! ```text
//! service Greeter {
//!   rpc SayHello(HelloRequest) returns (HelloReply);
//!   rpc StreamHellos(HelloRequest) returns (stream HelloReply);      // `count` replies
//!   rpc CollectHellos(stream HelloRequest) returns (HelloReply);     // counts what came
//!   rpc Chat(stream HelloRequest) returns (stream HelloReply);       // one reply each
//!   rpc Stats(StatsRequest) returns (StatsReply);
//! }
//! ```

use std::net::SocketAddr;
use std::path::Path;

use http::uri::PathAndQuery;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{IntoRequest, IntoStreamingRequest, Response, Status, Streaming};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use tonic_prost::ProstCodec;

/// The service's full name, as in its paths and in health checks.
pub const SERVICE: &str = "greeter.v1.Greeter";
/// `SayHello`: unary.
pub const SAY_HELLO: &str = "/greeter.v1.Greeter/SayHello";
/// `StreamHellos`: server streaming.
pub const STREAM_HELLOS: &str = "/greeter.v1.Greeter/StreamHellos";
/// `CollectHellos`: client streaming.
pub const COLLECT_HELLOS: &str = "/greeter.v1.Greeter/CollectHellos";
/// `Chat`: bidirectional streaming.
pub const CHAT: &str = "/greeter.v1.Greeter/Chat";
/// `Stats`: unary.
pub const STATS: &str = "/greeter.v1.Greeter/Stats";
/// The largest message either side sends or accepts (tonic's default is 4 MiB).
pub const MAX_MESSAGE: usize = 32 << 20;
/// The trailer an asked-for error status carries (`x-greeter-detail: why`).
pub const DETAIL_TRAILER: &str = "x-greeter-detail";

/// What a call asks of the greeter.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HelloRequest {
    #[prost(string, tag = "1")]
    pub name: String,
    /// `StreamHellos`: how many replies.
    #[prost(uint32, tag = "2")]
    pub count: u32,
    /// Bytes that only travel (counted by `CollectHellos`).
    #[prost(bytes = "vec", tag = "3")]
    pub payload: Vec<u8>,
    /// Wait this long before answering (before each reply of a stream).
    #[prost(uint32, tag = "4")]
    pub delay_ms: u32,
    /// Nonzero: end the call with this gRPC status code, message `asked for status N`
    /// and the trailer `x-greeter-detail: why`.
    #[prost(uint32, tag = "5")]
    pub status: u32,
    /// Each reply's `payload` is this many bytes.
    #[prost(uint32, tag = "6")]
    pub reply_size: u32,
}

/// One answer.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HelloReply {
    /// `Hello, NAME`.
    #[prost(string, tag = "1")]
    pub message: String,
    /// The answering greeter's `--name`.
    #[prost(string, tag = "2")]
    pub server: String,
    #[prost(bytes = "vec", tag = "3")]
    pub payload: Vec<u8>,
    /// `CollectHellos`: how many requests it read; `Chat`: this request's number (from 1).
    #[prost(uint64, tag = "4")]
    pub received: u64,
    /// `CollectHellos`: the payload bytes of all the requests it read.
    #[prost(uint64, tag = "5")]
    pub received_bytes: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct StatsRequest {}

/// What a greeter has seen (`Stats` calls not counted).
#[derive(Clone, PartialEq, prost::Message)]
pub struct StatsReply {
    /// Greeter calls started.
    #[prost(uint64, tag = "1")]
    pub calls: u64,
    /// Calls whose client went away before the greeter had answered in full.
    #[prost(uint64, tag = "2")]
    pub cancelled: u64,
}

/// A request for `name`, everything else zero.
pub fn hello(name: &str) -> HelloRequest {
    HelloRequest {
        name: name.to_owned(),
        ..HelloRequest::default()
    }
}

/// A `Greeter` (and `grpc.health.v1.Health`) client on one HTTP/2 connection.
#[derive(Clone)]
pub struct GreeterClient {
    grpc: tonic::client::Grpc<Channel>,
    channel: Channel,
}

impl GreeterClient {
    /// A client on `channel`, with [`MAX_MESSAGE`] both ways.
    pub fn new(channel: Channel) -> Self {
        let grpc = tonic::client::Grpc::new(channel.clone())
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE);
        Self { grpc, channel }
    }

    /// Connects over h2c (HTTP/2 with prior knowledge, no TLS) to `addr`.
    pub async fn h2c(addr: SocketAddr) -> Result<Self, String> {
        let endpoint = Endpoint::from_shared(format!("http://{addr}")).map_err(chain)?;
        Self::connect(endpoint, addr).await
    }

    /// Connects over TLS (ALPN h2) to `addr`, verifying its certificate for `server_name`
    /// (also the SNI and `:authority`) against the CA certificates in the PEM file `ca`.
    pub async fn tls(addr: SocketAddr, ca: &Path, server_name: &str) -> Result<Self, String> {
        Self::tls_with(addr, tls_config(ca, server_name)?, server_name).await
    }

    /// [`GreeterClient::tls`], presenting the client certificate `cert` (PEM, chain
    /// first) with its key `key`.
    pub async fn mtls(
        addr: SocketAddr,
        ca: &Path,
        server_name: &str,
        cert: &Path,
        key: &Path,
    ) -> Result<Self, String> {
        let identity = Identity::from_pem(read(cert)?, read(key)?);
        let config = tls_config(ca, server_name)?.identity(identity);
        Self::tls_with(addr, config, server_name).await
    }

    async fn tls_with(
        addr: SocketAddr,
        config: ClientTlsConfig,
        server_name: &str,
    ) -> Result<Self, String> {
        let origin = format!("https://{server_name}")
            .parse()
            .map_err(|e| format!("{server_name} as an authority: {e}"))?;
        let endpoint = Endpoint::from_shared(format!("https://{addr}"))
            .map_err(chain)?
            .origin(origin)
            .tls_config(config)
            .map_err(chain)?;
        Self::connect(endpoint, addr).await
    }

    async fn connect(endpoint: Endpoint, addr: SocketAddr) -> Result<Self, String> {
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| format!("connect {addr}: {}", chain(e)))?;
        Ok(Self::new(channel))
    }

    async fn ready(&mut self) -> Result<(), Status> {
        self.grpc
            .ready()
            .await
            .map_err(|e| Status::unavailable(format!("connection not ready: {}", chain(e))))
    }

    /// `SayHello`.
    pub async fn say_hello(
        &mut self,
        request: impl IntoRequest<HelloRequest>,
    ) -> Result<Response<HelloReply>, Status> {
        self.ready().await?;
        let path = PathAndQuery::from_static(SAY_HELLO);
        self.grpc
            .unary(request.into_request(), path, ProstCodec::default())
            .await
    }

    /// `StreamHellos`: the replies as they come.
    pub async fn stream_hellos(
        &mut self,
        request: impl IntoRequest<HelloRequest>,
    ) -> Result<Response<Streaming<HelloReply>>, Status> {
        self.ready().await?;
        let path = PathAndQuery::from_static(STREAM_HELLOS);
        self.grpc
            .server_streaming(request.into_request(), path, ProstCodec::default())
            .await
    }

    /// `CollectHellos`: sends the stream, then reads the one reply.
    pub async fn collect_hellos(
        &mut self,
        requests: impl IntoStreamingRequest<Message = HelloRequest>,
    ) -> Result<Response<HelloReply>, Status> {
        self.ready().await?;
        let path = PathAndQuery::from_static(COLLECT_HELLOS);
        self.grpc
            .client_streaming(
                requests.into_streaming_request(),
                path,
                ProstCodec::default(),
            )
            .await
    }

    /// `Chat`: replies come while requests are still being sent.
    pub async fn chat(
        &mut self,
        requests: impl IntoStreamingRequest<Message = HelloRequest>,
    ) -> Result<Response<Streaming<HelloReply>>, Status> {
        self.ready().await?;
        let path = PathAndQuery::from_static(CHAT);
        self.grpc
            .streaming(
                requests.into_streaming_request(),
                path,
                ProstCodec::default(),
            )
            .await
    }

    /// `Stats`.
    pub async fn stats(&mut self) -> Result<StatsReply, Status> {
        self.ready().await?;
        let path = PathAndQuery::from_static(STATS);
        let reply = self
            .grpc
            .unary(StatsRequest {}.into_request(), path, ProstCodec::default())
            .await?;
        Ok(reply.into_inner())
    }

    /// `grpc.health.v1.Health/Check` of `service` ("" for the whole server).
    pub async fn health(&mut self, service: &str) -> Result<ServingStatus, Status> {
        let request = HealthCheckRequest {
            service: service.to_owned(),
        };
        let reply = HealthClient::new(self.channel.clone())
            .check(request)
            .await?
            .into_inner();
        ServingStatus::try_from(reply.status)
            .map_err(|_| Status::internal(format!("unknown serving status {}", reply.status)))
    }
}

/// Trusts the CA certificates in `ca` and verifies the server as `server_name`.
fn tls_config(ca: &Path, server_name: &str) -> Result<ClientTlsConfig, String> {
    Ok(ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read(ca)?))
        .domain_name(server_name))
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("read {}: {e}", path.display()))
}

/// An error with its sources, `: `-separated (tonic's own text is often just
/// "transport error").
pub fn chain(e: impl std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
