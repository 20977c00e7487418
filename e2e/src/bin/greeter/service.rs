//! The `greeter.v1.Greeter` service on tonic's `Grpc` and `ProstCodec`, routed by path by
//! hand (what tonic-build would generate), with its call counts.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use e2e::grpc::{
    HelloReply, HelloRequest, StatsReply, StatsRequest, CHAT, COLLECT_HELLOS, DETAIL_TRAILER,
    MAX_MESSAGE, SAY_HELLO, SERVICE, STATS, STREAM_HELLOS,
};
use futures_util::stream;
use tonic::body::Body;
use tonic::codegen::{BoxFuture, BoxStream, Service};
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::server::{
    ClientStreamingService, Grpc, NamedService, ServerStreamingService, StreamingService,
    UnaryService,
};
use tonic::{Code, Request, Response, Status, Streaming};
use tonic_prost::ProstCodec;

/// The greeter: a cheap handle on what all its calls share.
#[derive(Clone)]
pub(crate) struct Greeter {
    state: Arc<State>,
}

struct State {
    /// `--name`, in every reply's `server`.
    name: String,
    calls: AtomicU64,
    cancelled: AtomicU64,
}

impl Greeter {
    pub(crate) fn new(name: String) -> Self {
        Self {
            state: Arc::new(State {
                name,
                calls: AtomicU64::new(0),
                cancelled: AtomicU64::new(0),
            }),
        }
    }
}

impl NamedService for Greeter {
    const NAME: &'static str = SERVICE;
}

impl Service<http::Request<Body>> for Greeter {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let state = self.state.clone();
        match req.uri().path() {
            SAY_HELLO => Box::pin(async move { Ok(grpc().unary(SayHello(state), req).await) }),
            STREAM_HELLOS => {
                Box::pin(async move { Ok(grpc().server_streaming(StreamHellos(state), req).await) })
            }
            COLLECT_HELLOS => {
                Box::pin(
                    async move { Ok(grpc().client_streaming(CollectHellos(state), req).await) },
                )
            }
            CHAT => Box::pin(async move { Ok(grpc().streaming(Chat(state), req).await) }),
            STATS => Box::pin(async move { Ok(grpc().unary(Stats(state), req).await) }),
            _ => Box::pin(async move { Ok(Status::unimplemented("no such method").into_http()) }),
        }
    }
}

fn grpc<Req, Reply>() -> Grpc<ProstCodec<Reply, Req>>
where
    Req: prost::Message + Default + 'static,
    Reply: prost::Message + 'static,
{
    Grpc::new(ProstCodec::default())
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE)
}

/// One greeter call: counted when it starts, and as cancelled when dropped before
/// [`Call::done`] (the client went away: hyper drops a reset stream's future and body).
struct Call {
    state: Arc<State>,
    done: bool,
}

impl Call {
    fn start(state: Arc<State>) -> Self {
        state.calls.fetch_add(1, Ordering::SeqCst);
        Self { state, done: false }
    }

    fn done(&mut self) {
        self.done = true;
    }

    fn reply(&self, name: &str, reply_size: u32) -> HelloReply {
        HelloReply {
            message: format!("Hello, {name}"),
            server: self.state.name.clone(),
            payload: vec![b'g'; reply_size as usize],
            ..HelloReply::default()
        }
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        if !self.done {
            self.state.cancelled.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// Waits `delay_ms`.
async fn pause(delay_ms: u32) {
    if delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(delay_ms.into())).await;
    }
}

/// The error status a request asks for (`status` nonzero), with its trailer.
fn asked_status(status: u32) -> Result<(), Status> {
    if status == 0 {
        return Ok(());
    }
    let mut trailers = MetadataMap::new();
    trailers.insert(DETAIL_TRAILER, MetadataValue::from_static("why"));
    let code = Code::from(i32::try_from(status).unwrap_or(i32::MAX));
    Err(Status::with_metadata(
        code,
        format!("asked for status {status}"),
        trailers,
    ))
}

struct SayHello(Arc<State>);

impl UnaryService<HelloRequest> for SayHello {
    type Response = HelloReply;
    type Future = BoxFuture<Response<HelloReply>, Status>;

    fn call(&mut self, request: Request<HelloRequest>) -> Self::Future {
        let mut call = Call::start(self.0.clone());
        Box::pin(async move {
            let req = request.into_inner();
            pause(req.delay_ms).await;
            call.done();
            asked_status(req.status)?;
            Ok(Response::new(call.reply(&req.name, req.reply_size)))
        })
    }
}

struct StreamHellos(Arc<State>);

impl ServerStreamingService<HelloRequest> for StreamHellos {
    type Response = HelloReply;
    type ResponseStream = BoxStream<HelloReply>;
    type Future = BoxFuture<Response<Self::ResponseStream>, Status>;

    /// `count` replies, `delay_ms` before each, then the asked-for status (if any).
    fn call(&mut self, request: Request<HelloRequest>) -> Self::Future {
        let call = Call::start(self.0.clone());
        let req = Arc::new(request.into_inner());
        let replies = stream::unfold((call, 0u32), move |(mut call, sent)| {
            let req = Arc::clone(&req);
            async move {
                if call.done {
                    return None;
                }
                if sent == req.count {
                    call.done();
                    return asked_status(req.status)
                        .err()
                        .map(|e| (Err(e), (call, sent)));
                }
                pause(req.delay_ms).await;
                let reply = call.reply(&req.name, req.reply_size);
                Some((Ok(reply), (call, sent + 1)))
            }
        });
        Box::pin(async move { Ok(Response::new(Box::pin(replies) as BoxStream<HelloReply>)) })
    }
}

struct CollectHellos(Arc<State>);

impl ClientStreamingService<HelloRequest> for CollectHellos {
    type Response = HelloReply;
    type Future = BoxFuture<Response<HelloReply>, Status>;

    /// Reads every request, then answers the first one's name with the counts, after
    /// the last one's `delay_ms`, or with the first asked-for status.
    fn call(&mut self, request: Request<Streaming<HelloRequest>>) -> Self::Future {
        let mut call = Call::start(self.0.clone());
        Box::pin(async move {
            let mut requests = request.into_inner();
            let mut first = None::<HelloRequest>;
            let (mut received, mut bytes, mut status, mut delay_ms) = (0u64, 0u64, 0, 0);
            while let Some(req) = requests.message().await? {
                received += 1;
                bytes += req.payload.len() as u64;
                if status == 0 {
                    status = req.status;
                }
                delay_ms = req.delay_ms;
                first.get_or_insert(req);
            }
            let first = first.unwrap_or_default();
            pause(delay_ms).await;
            call.done();
            asked_status(status)?;
            Ok(Response::new(HelloReply {
                received,
                received_bytes: bytes,
                ..call.reply(&first.name, first.reply_size)
            }))
        })
    }
}

struct Chat(Arc<State>);

impl StreamingService<HelloRequest> for Chat {
    type Response = HelloReply;
    type ResponseStream = BoxStream<HelloReply>;
    type Future = BoxFuture<Response<Self::ResponseStream>, Status>;

    /// One reply per request as each arrives (after its `delay_ms`); a request asking
    /// for a status ends the call with it.
    fn call(&mut self, request: Request<Streaming<HelloRequest>>) -> Self::Future {
        let call = Call::start(self.0.clone());
        let requests = request.into_inner();
        // The state is `None` once the call is over (answered, or its client gone).
        let replies = stream::unfold(Some((call, requests, 0u64)), |state| async move {
            let (mut call, mut requests, n) = state?;
            let req = match requests.message().await {
                Ok(Some(req)) => req,
                Ok(None) => {
                    call.done();
                    return None;
                }
                // The client's stream broke: no one reads a reply any more.
                Err(e) => return Some((Err(e), None)),
            };
            pause(req.delay_ms).await;
            if let Err(e) = asked_status(req.status) {
                call.done();
                return Some((Err(e), None));
            }
            let reply = HelloReply {
                received: n + 1,
                ..call.reply(&req.name, req.reply_size)
            };
            Some((Ok(reply), Some((call, requests, n + 1))))
        });
        Box::pin(async move { Ok(Response::new(Box::pin(replies) as BoxStream<HelloReply>)) })
    }
}

struct Stats(Arc<State>);

impl UnaryService<StatsRequest> for Stats {
    type Response = StatsReply;
    type Future = BoxFuture<Response<StatsReply>, Status>;

    fn call(&mut self, _: Request<StatsRequest>) -> Self::Future {
        let reply = StatsReply {
            calls: self.0.calls.load(Ordering::SeqCst),
            cancelled: self.0.cancelled.load(Ordering::SeqCst),
        };
        Box::pin(async move { Ok(Response::new(reply)) })
    }
}
