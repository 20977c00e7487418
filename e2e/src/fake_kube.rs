//! A FAKE Kubernetes API server, for tests only: it serves EndpointSlices
//! (discovery.k8s.io/v1) with the real LIST and WATCH JSON, over plain HTTP on
//! 127.0.0.1. It keeps an event log so a watch resumes from its resourceVersion, can
//! break every open watch, and can expire old resourceVersions (410 Gone, sent as an
//! ERROR event in a 200 watch response, as the real API server does).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};
use tokio::sync::mpsc;

/// One endpoint of a slice: address, ready, terminating.
pub(crate) type Endpoint = (IpAddr, bool, bool);

#[derive(Default)]
struct State {
    resource_version: u64,
    /// Slice name -> object.
    slices: BTreeMap<String, Value>,
    /// (resourceVersion, watch event line) for resuming watches.
    log: Vec<(u64, String)>,
    /// Watches from before this resourceVersion get 410 Gone.
    oldest_valid: u64,
    watchers: Vec<mpsc::UnboundedSender<String>>,
    /// Open connections, aborted when the server stops.
    connections: Vec<tokio::task::AbortHandle>,
    lists: usize,
    lists_received: usize,
    watches: usize,
}

/// The fake API server; stops when dropped.
pub struct FakeKubeApi {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    /// `false` while LIST requests are held (see [`FakeKubeApi::hold_lists`]).
    lists_open: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    namespace: String,
    service: String,
}

impl FakeKubeApi {
    /// Serves EndpointSlices of `service` in `namespace` on an ephemeral port.
    pub async fn start(namespace: &str, service: &str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new(Mutex::new(State {
            resource_version: 100,
            ..State::default()
        }));
        let shared = state.clone();
        let lists_open = tokio::sync::watch::Sender::new(true);
        let gate = lists_open.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let state = shared.clone();
                let gate = gate.clone();
                let conn = tokio::spawn(async move {
                    let service =
                        service_fn(move |req| handle(req, state.clone(), gate.subscribe()));
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
                if let Ok(mut st) = shared.lock() {
                    st.connections.retain(|c| !c.is_finished());
                    st.connections.push(conn.abort_handle());
                }
            }
        });
        Self {
            addr,
            state,
            lists_open,
            task,
            namespace: namespace.to_owned(),
            service: service.to_owned(),
        }
    }

    /// Writes a kubeconfig pointing at this server into `dir`; returns its path.
    pub fn kubeconfig(&self, dir: &Path) -> PathBuf {
        let path = dir.join("kubeconfig");
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: http://{}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n    namespace: {}\ncurrent-context: fake\nusers:\n- name: fake\n  user: {{}}\n",
            self.addr, self.namespace
        );
        std::fs::write(&path, text).expect("write kubeconfig");
        path
    }

    /// Creates or replaces slice `name` with `endpoints` on port `port_name`/`port`.
    pub fn set_slice(&self, name: &str, endpoints: &[Endpoint], port_name: &str, port: u16) {
        let mut st = self.state.lock().expect("state");
        st.resource_version += 1;
        let rv = st.resource_version;
        let object = json!({
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": name,
                "namespace": self.namespace,
                "resourceVersion": rv.to_string(),
                "labels": {"kubernetes.io/service-name": self.service}
            },
            "addressType": "IPv4",
            "endpoints": endpoints.iter().map(|(ip, ready, terminating)| json!({
                "addresses": [ip.to_string()],
                "conditions": {"ready": ready, "serving": ready, "terminating": terminating}
            })).collect::<Vec<_>>(),
            "ports": [{"name": port_name, "port": port, "protocol": "TCP"}]
        });
        let kind = if st.slices.contains_key(name) {
            "MODIFIED"
        } else {
            "ADDED"
        };
        st.slices.insert(name.to_owned(), object.clone());
        publish(&mut st, rv, kind, object);
    }

    /// Deletes slice `name`.
    pub fn delete_slice(&self, name: &str) {
        let mut st = self.state.lock().expect("state");
        st.resource_version += 1;
        let rv = st.resource_version;
        if let Some(mut object) = st.slices.remove(name) {
            object["metadata"]["resourceVersion"] = json!(rv.to_string());
            publish(&mut st, rv, "DELETED", object);
        }
    }

    /// Ends every open watch (the client must re-watch from its last resourceVersion).
    pub fn break_watches(&self) {
        self.state.lock().expect("state").watchers.clear();
    }

    /// Expires every resourceVersion seen so far: open watches get a 410 Gone ERROR
    /// event and end; a watch from an old version gets one too, so the client relists.
    pub fn expire(&self) {
        let mut st = self.state.lock().expect("state");
        st.resource_version += 1;
        st.oldest_valid = st.resource_version;
        st.log.clear();
        let gone = gone_event(st.resource_version);
        for w in st.watchers.drain(..) {
            let _ = w.send(gone.clone());
        }
    }

    /// Holds every LIST request (unanswered, its connection open) until
    /// [`FakeKubeApi::release_lists`]: an API server too slow to answer yet.
    pub fn hold_lists(&self) {
        self.lists_open.send_replace(false);
    }

    /// Answers the held LIST requests, and later ones at once.
    pub fn release_lists(&self) {
        self.lists_open.send_replace(true);
    }

    /// LIST requests received so far, answered or held.
    pub fn lists_received(&self) -> usize {
        self.state.lock().expect("state").lists_received
    }

    /// LIST and WATCH requests served so far.
    pub fn requests(&self) -> (usize, usize) {
        let st = self.state.lock().expect("state");
        (st.lists, st.watches)
    }
}

impl Drop for FakeKubeApi {
    /// Stops accepting and closes every connection, like an API server going away.
    fn drop(&mut self) {
        self.task.abort();
        if let Ok(mut st) = self.state.lock() {
            st.watchers.clear();
            for c in st.connections.drain(..) {
                c.abort();
            }
        }
    }
}

fn publish(st: &mut State, rv: u64, kind: &str, object: Value) {
    let line = format!("{}\n", json!({"type": kind, "object": object}));
    st.log.push((rv, line.clone()));
    st.watchers.retain(|w| w.send(line.clone()).is_ok());
}

fn gone_event(rv: u64) -> String {
    let status = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": format!("too old resource version (current {rv})"), "reason": "Expired", "code": 410
    });
    format!("{}\n", json!({"type": "ERROR", "object": status}))
}

type Body = BoxBody<Bytes, Infallible>;

async fn handle(
    req: Request<hyper::body::Incoming>,
    state: Arc<Mutex<State>>,
    mut lists_open: tokio::sync::watch::Receiver<bool>,
) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    let param = |name: &str| {
        query
            .split('&')
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .map(str::to_owned)
    };
    if !path.ends_with("/endpointslices")
        || !path.starts_with("/apis/discovery.k8s.io/v1/namespaces/")
    {
        let body = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404});
        return Ok(json_response(404, body.to_string()));
    }
    let watch = param("watch").as_deref() == Some("true") || param("watch").as_deref() == Some("1");
    if !watch {
        state.lock().expect("state").lists_received += 1;
        // Held until released (or the server stops, which ends the connection).
        let _ = lists_open.wait_for(|open| *open).await;
    }
    let mut st = state.lock().expect("state");
    if watch {
        st.watches += 1;
        let from: u64 = param("resourceVersion")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let (tx, rx) = mpsc::unbounded_channel();
        if from < st.oldest_valid {
            let _ = tx.send(gone_event(st.resource_version));
        } else {
            for (_, line) in st.log.iter().filter(|(rv, _)| *rv > from) {
                let _ = tx.send(line.clone());
            }
            st.watchers.push(tx);
        }
        let stream = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv()
                .await
                .map(|line| (Ok(Frame::data(Bytes::from(line))), rx))
        });
        let body = StreamBody::new(stream).boxed();
        let resp = Response::builder()
            .header("content-type", "application/json")
            .body(body)
            .unwrap_or_default();
        return Ok(resp);
    }
    st.lists += 1;
    let list = json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSliceList",
        "metadata": {"resourceVersion": st.resource_version.to_string()},
        "items": st.slices.values().cloned().collect::<Vec<_>>()
    });
    Ok(json_response(200, list.to_string()))
}

fn json_response(status: u16, body: String) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)).boxed())
        .unwrap_or_default()
}
