//! Builds complete snapshots from loaded files and publishes them: the only writer of live state.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use super::counters::RouteCounters;
use super::load::{load, unix_now, Failed, LoadError, Loaded};
use super::restart::{needs_restart, NeedsRestart};
use crate::config::{Config, Edge, ListenerKind, Location};
use crate::lifecycle::Lifecycle;
use crate::routes::filters::weights::Backends;
use crate::routes::Table;
use crate::state::{ListenerMode, ListenerState, RouteState, SharedSnapshot, Snapshot, Target};
use crate::telemetry::Metrics;
use crate::tls::{CertSet, LoadedCert};
use crate::upstream::{start_tasks, Resolver, ResolverWatch, Upstream};

/// Key sets fetched from JWKS URLs, by URL.
type Jwks = HashMap<String, Arc<crate::auth::RemoteJwks>>;

/// A listener the process is serving; fixed for the life of the process.
#[derive(Debug, Clone)]
pub struct RunningListener {
    pub name: String,
    /// Where it is defined (for an error when it cannot listen).
    pub at: Location,
    pub addr: SocketAddr,
    pub tls: bool,
}

/// What a reload did: what [`Reloader::reload`] logs.
#[derive(Debug)]
enum Outcome {
    /// The files are the ones last read: nothing rebuilt.
    Unchanged,
    /// The new state is live; `needs_restart` names settings that changed but
    /// cannot apply to a running process.
    Applied { needs_restart: Vec<NeedsRestart> },
    /// The files are invalid; the last good state keeps serving.
    Failed(Vec<LoadError>),
}

/// Owns the live snapshot and rebuilds it from the config file on demand.
pub struct Reloader {
    path: PathBuf,
    running: Vec<RunningListener>,
    running_admin: Option<SocketAddr>,
    running_threads: usize,
    /// The config serving now.
    applied: Config,
    /// Fingerprint of the files last read, good or bad.
    last_read: u64,
    /// Directories whose changes matter: the config's and every cert dir.
    watch_dirs: BTreeSet<PathBuf>,
    /// Upstreams serving now, by name.
    upstreams: HashMap<String, Arc<Upstream>>,
    /// The routes' rate-limit and in-flight counts, kept across reloads.
    counters: RouteCounters,
    /// Key sets fetched from JWKS URLs, by URL: kept across reloads.
    jwks: Jwks,
    /// Resolves server names for every DNS task; replaced when `[dns]` changes and on
    /// SIGHUP, which makes each task resolve its names again at once.
    resolver: tokio::sync::watch::Sender<Option<Arc<Resolver>>>,
    /// Where upstream tasks run, once the server's runtime is up.
    runtime: Option<tokio::runtime::Handle>,
    snapshot: SharedSnapshot,
    metrics: Arc<Metrics>,
    /// Takes each applied config's shutdown settings.
    lifecycle: Arc<Lifecycle>,
}

impl Reloader {
    /// Builds the first snapshot from `loaded` (read from `path`); the listeners in it
    /// become the running listeners.
    pub fn new(
        path: &Path,
        loaded: Loaded,
        metrics: Arc<Metrics>,
        lifecycle: Arc<Lifecycle>,
    ) -> Self {
        let running: Vec<RunningListener> = loaded
            .config
            .listeners
            .iter()
            .map(|l| RunningListener {
                name: l.name.clone(),
                at: l.at.clone(),
                addr: l.addr,
                tls: matches!(l.kind, ListenerKind::Https { .. }),
            })
            .collect();
        let mut upstreams = HashMap::new();
        let mut counters = RouteCounters::default();
        let mut jwks = Jwks::new();
        let listeners = listener_states(&loaded, &running, &[], &metrics);
        let snapshot = build_snapshot(
            &loaded.config,
            &loaded.route_auth,
            &loaded.upstream_tls,
            listeners,
            &running,
            (&mut upstreams, &mut jwks),
            &mut counters,
            None,
            &metrics,
        );
        crate::telemetry::access::configure(&loaded.config.access_log);
        crate::telemetry::traces::configure(loaded.config.tracing.as_ref());
        let resolver = tokio::sync::watch::Sender::new(new_resolver(&loaded.config));
        metrics.initial_load(unix_now(), cert_expiry(&loaded.certs));
        Self {
            path: path.to_path_buf(),
            running,
            running_admin: loaded.config.admin.as_ref().map(|a| a.addr),
            running_threads: loaded.config.server.threads,
            watch_dirs: watch_dirs(path, &loaded.config),
            applied: loaded.config,
            last_read: loaded.fingerprint,
            upstreams,
            counters,
            jwks,
            resolver,
            runtime: None,
            snapshot: Arc::new(ArcSwap::from_pointee(snapshot)),
            metrics,
            lifecycle,
        }
    }

    /// Starts discovery and health checks on `runtime`, for the upstreams serving now
    /// and every upstream built later.
    pub fn attach(&mut self, runtime: tokio::runtime::Handle) {
        let resolver = self.resolver.subscribe();
        for upstream in self.upstreams.values() {
            start_tasks(upstream, &resolver, &runtime);
        }
        if let Some(link) = self.counters.link() {
            crate::ratelimit::start(link, &runtime);
        }
        for remote in self.jwks.values() {
            remote.start(&runtime);
        }
        self.runtime = Some(runtime);
    }

    /// The live snapshot, for the listeners to read.
    pub fn snapshot(&self) -> &SharedSnapshot {
        &self.snapshot
    }

    /// The listeners the process serves.
    pub fn running(&self) -> &[RunningListener] {
        &self.running
    }

    /// The directories to watch for changes.
    pub fn watch_dirs(&self) -> &BTreeSet<PathBuf> {
        &self.watch_dirs
    }

    /// The config file's name, as it appears in its directory.
    pub fn config_file_name(&self) -> std::ffi::OsString {
        self.path.file_name().map(Into::into).unwrap_or_default()
    }

    /// The safety-net re-read period of the config serving now.
    pub fn poll_interval(&self) -> Duration {
        self.applied.reload.poll_interval
    }

    /// Re-reads every file; when anything changed (or `force`), builds and publishes
    /// a complete new snapshot. Logs and counts the outcome.
    pub fn reload(&mut self, cause: &str, force: bool) {
        match self.try_reload(force) {
            Outcome::Unchanged => tracing::debug!(cause, "config and certificates unchanged"),
            Outcome::Applied { needs_restart } => {
                tracing::info!(cause, "config and certificates reloaded");
                if !needs_restart.is_empty() {
                    let list: Vec<String> = needs_restart.iter().map(ToString::to_string).collect();
                    tracing::warn!(
                        "changes that need a restart to apply (everything else was applied): {}",
                        list.join(", ")
                    );
                }
            }
            Outcome::Failed(errors) => {
                for e in &errors {
                    tracing::error!(
                        cause,
                        "reload refused, still serving the last good config: {}",
                        crate::error_chain(e)
                    );
                }
            }
        }
    }

    fn try_reload(&mut self, force: bool) -> Outcome {
        let loaded = match load(&self.path) {
            Ok(loaded) => loaded,
            Err(Failed {
                errors,
                config,
                fingerprint,
            }) => {
                if let Some(config) = config {
                    self.watch_dirs = watch_dirs(&self.path, &config);
                }
                if fingerprint == self.last_read && !force {
                    return Outcome::Unchanged;
                }
                self.last_read = fingerprint;
                self.metrics.reload_failed();
                return Outcome::Failed(errors);
            }
        };
        self.watch_dirs = watch_dirs(&self.path, &loaded.config);
        if loaded.fingerprint == self.last_read && !force {
            return Outcome::Unchanged;
        }
        self.last_read = loaded.fingerprint;

        let needs_restart = needs_restart(
            &self.running,
            self.running_admin,
            self.running_threads,
            &loaded.config,
        );
        let previous = self.snapshot.load();
        let listeners = listener_states(&loaded, &self.running, &previous.listeners, &self.metrics);
        drop(previous);
        // Under new [dns] settings names may resolve differently, and SIGHUP (`force`)
        // asks for fresh answers (and /etc/resolv.conf read again): every DNS task
        // resolves again at once with a new resolver, whatever its TTL. Upstreams stay as
        // they are (IP literals and Kubernetes services do not resolve names; named ones
        // keep their pools and health state for every address that stays).
        if force || loaded.config.dns != self.applied.dns {
            self.replace_resolver(&loaded.config);
        }
        let resolver = self.resolver.subscribe();
        let started = self.runtime.as_ref().map(|rt| (&resolver, rt));
        let snapshot = build_snapshot(
            &loaded.config,
            &loaded.route_auth,
            &loaded.upstream_tls,
            listeners,
            &self.running,
            (&mut self.upstreams, &mut self.jwks),
            &mut self.counters,
            started,
            &self.metrics,
        );
        self.snapshot.store(Arc::new(snapshot));
        crate::telemetry::access::configure(&loaded.config.access_log);
        crate::telemetry::traces::configure(loaded.config.tracing.as_ref());
        self.metrics.requests.prune();
        for warning in &loaded.warnings {
            tracing::warn!("{warning}");
        }
        self.metrics
            .reload_succeeded(unix_now(), cert_expiry(&loaded.certs));
        self.lifecycle.apply(&loaded.config.server);
        self.applied = loaded.config;
        Outcome::Applied { needs_restart }
    }

    /// Builds the resolver for `config` and hands it to every DNS task. When it cannot be
    /// built, names keep resolving with the previous one (logged).
    fn replace_resolver(&self, config: &Config) {
        match Resolver::new(&config.dns) {
            Ok(r) => {
                self.resolver.send_replace(Some(Arc::new(r)));
            }
            Err(error) => tracing::error!(
                error = %crate::error_chain(&error),
                "cannot build the DNS resolver for these [dns] settings; names keep resolving as before"
            ),
        }
    }
}

/// The state of each running listener under `loaded`. A running listener whose
/// config is gone or changed TLS on/off keeps its previous state until a restart.
fn listener_states(
    loaded: &Loaded,
    running: &[RunningListener],
    previous: &[Arc<ListenerState>],
    metrics: &Metrics,
) -> Vec<Arc<ListenerState>> {
    running
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let unrouted = metrics.requests.series(&r.name, "-", "-");
            let found = loaded
                .config
                .listeners
                .iter()
                .position(|l| l.name == r.name);
            let same_tls = |j: usize| {
                matches!(loaded.config.listeners[j].kind, ListenerKind::Https { .. }) == r.tls
            };
            match found {
                Some(j) if same_tls(j) => {
                    let certs = loaded.certs.get(j).map(Vec::as_slice).unwrap_or_default();
                    let (mode, certs) = match loaded.config.listeners[j].kind {
                        ListenerKind::Https { .. } => {
                            let client = loaded.client_auth.get(j).cloned().flatten();
                            let set = CertSet::new(certs).map(|s| s.with_client_auth(client));
                            (ListenerMode::Serve, set.map(Arc::new))
                        }
                        ListenerKind::Http => (ListenerMode::Serve, None),
                        ListenerKind::RedirectToHttps { port } => {
                            (ListenerMode::RedirectToHttps { port }, None)
                        }
                    };
                    let edge = loaded.config.listeners[j].edge.clone();
                    Arc::new(ListenerState::new(mode, unrouted, certs, edge))
                }
                _ => previous.get(i).cloned().unwrap_or_else(|| {
                    Arc::new(ListenerState::new(
                        ListenerMode::Serve,
                        unrouted,
                        None,
                        Edge::default(),
                    ))
                }),
            }
        })
        .collect()
}

/// Builds the routing part of a snapshot. Upstreams whose definition did not change
/// are reused (they keep their pools and their backends' health and load state); new
/// ones get their tasks started when `started` gives a runtime. `upstreams` becomes
/// the new set; dropped upstreams end their tasks. JWKS URLs keep their fetched keys
/// while the URL and its upstream stay.
#[allow(clippy::too_many_arguments)] // the parts of one snapshot
fn build_snapshot(
    config: &Config,
    route_auth: &[Option<Arc<crate::auth::RouteAuth>>],
    upstream_tls: &[Option<Arc<crate::tls::UpstreamTls>>],
    listeners: Vec<Arc<ListenerState>>,
    running: &[RunningListener],
    (upstreams, jwks): (&mut HashMap<String, Arc<Upstream>>, &mut Jwks),
    counters: &mut RouteCounters,
    started: Option<(&ResolverWatch, &tokio::runtime::Handle)>,
    metrics: &Metrics,
) -> Snapshot {
    let link = shared_link(counters.link(), config, started.map(|(_, rt)| rt), metrics);
    let mut next_counters = RouteCounters::with_link(link);
    let mut next = HashMap::with_capacity(config.upstreams.len());
    let built: Vec<Arc<Upstream>> = config
        .upstreams
        .iter()
        .enumerate()
        .map(|(i, u)| {
            let tls = upstream_tls.get(i).cloned().flatten();
            let same_tls = |existing: &Upstream| {
                existing.tls.as_ref().map(|t| t.fingerprint) == tls.as_ref().map(|t| t.fingerprint)
            };
            let upstream = match upstreams.get(&u.name) {
                Some(existing) if existing.config == *u && same_tls(existing) => existing.clone(),
                existing => {
                    let fresh = Arc::new(Upstream::new(u.clone(), tls));
                    // Same discovery source: serve the known backends until discovery
                    // answers, rather than nothing (502) in between.
                    if let Some(old) = existing.filter(|old| old.config.discovery == u.discovery) {
                        fresh.inherit_backends(old);
                    }
                    if let Some((resolver, runtime)) = started {
                        start_tasks(&fresh, resolver, runtime);
                    }
                    fresh
                }
            };
            next.insert(u.name.clone(), upstream.clone());
            upstream
        })
        .collect();
    *upstreams = next;
    let mut next_jwks = Jwks::new();
    let routes = config
        .routes
        .iter()
        .zip(&config.rules)
        .enumerate()
        .map(|(i, (r, rule))| {
            let label = rule.label();
            // A redirect route has no backends (it answers before any is picked).
            let weights = rule.backends.clone().unwrap_or_else(|| Backends::one(0));
            let targets = rule
                .backends
                .iter()
                .flat_map(|b| b.entries())
                .filter_map(|&(u, _)| built.get(u).cloned())
                .map(|upstream| Target {
                    series: running
                        .iter()
                        .map(|l| metrics.requests.series(&l.name, &label, upstream.name()))
                        .collect(),
                    upstream,
                })
                .collect();
            let chain = rule.chain.clone();
            Arc::new(RouteState {
                label: label.as_str().into(),
                weights: indexed(&weights),
                targets,
                chain: (!chain.is_empty()).then(|| Arc::new(chain)),
                max_body_size: r.max_body_size,
                websocket: r.websocket,
                access: r.access.clone(),
                in_flight: r
                    .max_in_flight
                    .map(|max| next_counters.in_flight(counters, &label, max)),
                rate_limit: r
                    .rate_limit
                    .as_ref()
                    .map(|rl| next_counters.limiter(counters, &label, rl)),
                auth: match &r.auth {
                    Some(crate::config::RouteAuth::Forward(f)) => built.get(f.upstream).map(|u| {
                        Arc::new(crate::auth::RouteAuth::Forward(crate::auth::Forward {
                            config: f.clone(),
                            upstream: u.clone(),
                        }))
                    }),
                    Some(crate::config::RouteAuth::Jwt(jwt)) => match &jwt.jwks {
                        crate::config::JwksSource::Url {
                            url,
                            upstream,
                            path,
                        } => built.get(*upstream).map(|u| {
                            let remote = remote_jwks(url, path, u, jwks, &mut next_jwks);
                            if let Some((_, runtime)) = started {
                                remote.start(runtime);
                            }
                            let keys = crate::auth::Keys::Remote(remote);
                            let check = crate::auth::Jwt::new(jwt.clone(), keys);
                            Arc::new(crate::auth::RouteAuth::Jwt(Box::new(check)))
                        }),
                        crate::config::JwksSource::File(_) => route_auth.get(i).cloned().flatten(),
                    },
                    _ => route_auth.get(i).cloned().flatten(),
                },
            })
        })
        .collect();
    *counters = next_counters;
    *jwks = next_jwks;
    Snapshot {
        table: Table::new(config.rules.iter().map(|r| &r.matches)),
        routes,
        upstreams: built,
        listeners,
    }
}

/// The keys of a JWKS URL: the ones serving now when its upstream stays, else a new set
/// (which serves the old keys until it has its own).
fn remote_jwks(
    url: &str,
    path: &str,
    upstream: &Arc<Upstream>,
    current: &Jwks,
    next: &mut Jwks,
) -> Arc<crate::auth::RemoteJwks> {
    if let Some(remote) = next.get(url) {
        return remote.clone();
    }
    let remote = match current.get(url) {
        Some(r) if Arc::ptr_eq(r.upstream(), upstream) => r.clone(),
        old => {
            let fresh = crate::auth::RemoteJwks::new(url, path, upstream.clone());
            if let Some(old) = old {
                fresh.inherit(old);
            }
            Arc::new(fresh)
        }
    };
    next.insert(url.to_owned(), remote.clone());
    remote
}

/// The link to Redis for `config`'s `[rate_limit] shared`: the current one when the
/// setting stays, else a new one (its task started on `runtime` when running).
fn shared_link(
    current: Option<&Arc<crate::ratelimit::SharedLink>>,
    config: &Config,
    runtime: Option<&tokio::runtime::Handle>,
    metrics: &Metrics,
) -> Option<Arc<crate::ratelimit::SharedLink>> {
    let Some(settings) = &config.rate_limit else {
        metrics.rate_limits.set_configured(false);
        return None;
    };
    if let Some(link) = current.filter(|l| l.settings == *settings) {
        return Some(link.clone());
    }
    match crate::ratelimit::SharedLink::new(settings.clone(), metrics.rate_limits.clone()) {
        Ok(link) => {
            if let Some(runtime) = runtime {
                crate::ratelimit::start(&link, runtime);
            }
            Some(link)
        }
        Err(error) => {
            tracing::error!(%error, "shared rate limits: cannot use the Redis URL; limits stay per replica");
            None
        }
    }
}

/// `backends` with each upstream replaced by its position in the list (the index of
/// the route's target).
fn indexed(backends: &Backends) -> Backends {
    let entries = backends.entries();
    Backends::new(
        entries
            .iter()
            .enumerate()
            .map(|(i, &(_, w))| (i, w))
            .collect(),
    )
    .unwrap_or_else(|| Backends::one(0))
}

/// The DNS resolver for `config`, or `None` (logged) when it cannot be built.
fn new_resolver(config: &Config) -> Option<Arc<Resolver>> {
    match Resolver::new(&config.dns) {
        Ok(r) => Some(Arc::new(r)),
        Err(error) => {
            tracing::error!(error = %crate::error_chain(&error), "cannot build the DNS resolver; server names will not resolve");
            None
        }
    }
}

/// The config file's directory and every certificate and client CA directory.
fn watch_dirs(path: &Path, config: &Config) -> BTreeSet<PathBuf> {
    let mut dirs = BTreeSet::new();
    dirs.insert(path.parent().unwrap_or(Path::new(".")).to_path_buf());
    for l in &config.listeners {
        if let ListenerKind::Https { certs, client } = &l.kind {
            dirs.extend(certs.iter().map(|c| c.path.clone()));
            dirs.extend(client.iter().map(|c| c.ca.path.clone()));
        }
    }
    for auth in config.routes.iter().filter_map(|r| r.auth.as_ref()) {
        let file = match auth {
            crate::config::RouteAuth::Basic { users, .. } => Some(users),
            crate::config::RouteAuth::Jwt(jwt) => match &jwt.jwks {
                crate::config::JwksSource::File(path) => Some(path),
                crate::config::JwksSource::Url { .. } => None,
            },
            crate::config::RouteAuth::Forward(_) => None,
        };
        dirs.extend(file.and_then(|f| f.parent()).map(Path::to_path_buf));
    }
    for tls in config.upstreams.iter().filter_map(|u| u.tls.as_ref()) {
        dirs.extend(tls.ca.iter().map(|d| d.path.clone()));
        dirs.extend(tls.client_cert.iter().map(|d| d.path.clone()));
    }
    dirs
}

fn cert_expiry(certs: &[Vec<LoadedCert>]) -> Vec<(String, i64)> {
    certs
        .iter()
        .flatten()
        .map(|c| (c.dir.display().to_string(), c.not_after))
        .collect()
}
