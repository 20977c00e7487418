//! Kubernetes discovery: the ready endpoints of a Service's EndpointSlices, watched
//! through the API server (in-cluster config, else KUBECONFIG).

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::{reflector, watcher, WatchStreamExt};
use kube::Api;

use super::super::Upstream;
use crate::config::{KubernetesService, ServicePort};

/// The label the EndpointSlice controller puts on a Service's slices.
const SERVICE_LABEL: &str = "kubernetes.io/service-name";
/// Wait before trying again when no client can be built (no config found).
const CLIENT_RETRY: Duration = Duration::from_secs(5);

/// Starts watching `service` for `upstream`.
pub(super) fn start(
    upstream: &Arc<Upstream>,
    service: KubernetesService,
    runtime: &tokio::runtime::Handle,
) {
    runtime.spawn(follow(Arc::downgrade(upstream), service));
}

async fn follow(upstream: Weak<Upstream>, service: KubernetesService) {
    let client = loop {
        match kube::Client::try_default().await {
            Ok(client) => break client,
            Err(error) => {
                let Some(up) = upstream.upgrade() else { return };
                tracing::error!(upstream = %up.name(), %error, "cannot reach the Kubernetes API; retrying");
                up.discovered(false);
                drop(up);
                tokio::time::sleep(CLIENT_RETRY).await;
            }
        }
    };
    let namespace = service
        .namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().trim().to_owned());
    let api: Api<EndpointSlice> = Api::namespaced(client, &namespace);
    let selector = format!("{SERVICE_LABEL}={}", service.service);
    let (reader, writer) = reflector::store::<EndpointSlice>();
    // The watcher relists on 410 Gone, re-watches from the last resourceVersion when a
    // watch ends, and backs off on errors; the store keeps the last complete list.
    let mut events = watcher(api, watcher::Config::default().labels(&selector))
        .default_backoff()
        .reflect(writer)
        .boxed();
    let Some(closed) = upstream.upgrade().map(|u| u.closed()) else {
        return;
    };
    tokio::pin!(closed);
    loop {
        let event = tokio::select! {
            () = &mut closed => return,
            event = events.next() => match event {
                Some(event) => event,
                None => return,
            },
        };
        let Some(up) = upstream.upgrade() else { return };
        match event {
            Ok(watcher::Event::Init | watcher::Event::InitApply(_)) => continue,
            Ok(watcher::Event::InitDone | watcher::Event::Apply(_) | watcher::Event::Delete(_)) => {
                let addrs = ready_endpoints(&reader.state(), &service.port);
                if up.addrs() != addrs {
                    tracing::info!(
                        upstream = %up.name(),
                        service = %service.service,
                        %namespace,
                        backends = addrs.len(),
                        "backends changed (EndpointSlices)"
                    );
                    up.set_addrs(&addrs);
                }
                up.discovered(true);
            }
            Err(error) => {
                tracing::warn!(
                    upstream = %up.name(),
                    service = %service.service,
                    %error,
                    "EndpointSlice watch failed; keeping the last good backends"
                );
                up.discovered(false);
            }
        }
    }
}

/// Addresses of the endpoints that take traffic: ready (a missing condition means
/// ready) and not terminating, on the slice port named `port` (the Service port's
/// name) or numbered `port` (the endpoints' port, i.e. the target port).
pub(super) fn ready_endpoints(
    slices: &[Arc<EndpointSlice>],
    port: &ServicePort,
) -> Vec<SocketAddr> {
    let mut addrs = Vec::new();
    for slice in slices {
        if slice.address_type == "FQDN" {
            continue;
        }
        let ports = slice.ports.as_deref().unwrap_or_default();
        let number = match port {
            ServicePort::Name(name) => ports
                .iter()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .and_then(|p| p.port),
            ServicePort::Number(n) => ports
                .iter()
                .find(|p| p.port == Some(i32::from(*n)))
                .and_then(|p| p.port),
        };
        let Some(number) = number.and_then(|n| u16::try_from(n).ok()) else {
            let name = slice.metadata.name.as_deref().unwrap_or("?");
            tracing::warn!(
                slice = name,
                ?port,
                "EndpointSlice has no such port; its endpoints are not used"
            );
            continue;
        };
        for endpoint in &slice.endpoints {
            let conditions = endpoint.conditions.as_ref();
            let ready = conditions.and_then(|c| c.ready).unwrap_or(true);
            let terminating = conditions.and_then(|c| c.terminating).unwrap_or(false);
            if !ready || terminating {
                continue;
            }
            addrs.extend(
                endpoint
                    .addresses
                    .iter()
                    .filter_map(|a| a.parse::<IpAddr>().ok())
                    .map(|ip| SocketAddr::new(ip, number)),
            );
        }
    }
    addrs.sort();
    addrs.dedup();
    addrs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slice(json: serde_json::Value) -> Arc<EndpointSlice> {
        Arc::new(serde_json::from_value(json).unwrap())
    }

    #[test]
    fn only_ready_endpoints_on_the_named_port() {
        let s = slice(serde_json::json!({
            "metadata": {"name": "hello-a"},
            "addressType": "IPv4",
            "endpoints": [
                {"addresses": ["10.0.0.1"], "conditions": {"ready": true}},
                {"addresses": ["10.0.0.2"], "conditions": {"ready": false}},
                {"addresses": ["10.0.0.3"], "conditions": {"ready": true, "terminating": true}},
                {"addresses": ["10.0.0.4"]}
            ],
            "ports": [{"name": "http", "port": 8080}, {"name": "admin", "port": 9090}]
        }));
        let addrs = ready_endpoints(std::slice::from_ref(&s), &ServicePort::Name("http".into()));
        assert_eq!(
            addrs,
            [
                "10.0.0.1:8080".parse().unwrap(),
                "10.0.0.4:8080".parse().unwrap()
            ]
        );
        let by_number = ready_endpoints(std::slice::from_ref(&s), &ServicePort::Number(9090));
        assert_eq!(by_number.len(), 2);
        assert!(ready_endpoints(std::slice::from_ref(&s), &ServicePort::Number(80)).is_empty());
        assert!(ready_endpoints(&[s], &ServicePort::Name("grpc".into())).is_empty());
    }
}
