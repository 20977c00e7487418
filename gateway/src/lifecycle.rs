//! Process lifecycle: on SIGTERM, readiness fails at once while the gateway keeps
//! serving for `shutdown_delay` (load balancers take the pod out meanwhile); then
//! listeners close, idle keep-alive connections are closed (HTTP/2: GOAWAY), and
//! in-flight requests get up to `drain_timeout`; the process exits 0 as soon as none
//! is left. SIGINT exits at once. SIGQUIT is pingora's graceful upgrade, which hands no
//! listener over (the listeners are our own services): a graceful stop without the delay.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::{ShutdownSignal, ShutdownSignalWatch, ShutdownWatch};
use pingora::services::background::BackgroundService;
use tokio::signal::unix::{signal, SignalKind};

/// Requests being processed, process-wide.
static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

/// Counts one request in flight until dropped.
#[derive(Debug)]
pub struct RequestGuard(());

impl RequestGuard {
    pub fn new() -> Self {
        IN_FLIGHT.fetch_add(1, Ordering::Relaxed);
        Self(())
    }
}

impl Default for RequestGuard {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        IN_FLIGHT.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Requests in flight now.
pub fn in_flight() -> usize {
    IN_FLIGHT.load(Ordering::Relaxed)
}

/// Connections still sending responses, process-wide.
static WRITING: AtomicUsize = AtomicUsize::new(0);

/// Counts a connection still sending responses until dropped: the drain waits for them
/// as for requests (an HTTP/2 response is written after its request has ended).
#[derive(Debug)]
pub(crate) struct WritingGuard(());

impl WritingGuard {
    pub(crate) fn new() -> Self {
        WRITING.fetch_add(1, Ordering::Relaxed);
        Self(())
    }
}

impl Drop for WritingGuard {
    fn drop(&mut self) {
        WRITING.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Connections still sending responses now.
pub(crate) fn writing() -> usize {
    WRITING.load(Ordering::Relaxed)
}

/// Whether the process is shutting down (readiness then fails).
#[derive(Debug, Default)]
pub struct Lifecycle {
    draining: AtomicBool,
}

impl Lifecycle {
    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }
}

/// Tells pingora when to shut down, after our own delay.
pub struct SignalWatch {
    pub lifecycle: Arc<Lifecycle>,
    pub shutdown_delay: Duration,
}

#[async_trait]
impl ShutdownSignalWatch for SignalWatch {
    async fn recv(&self) -> ShutdownSignal {
        let (Ok(mut term), Ok(mut int), Ok(mut quit)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::quit()),
        ) else {
            tracing::error!("cannot install signal handlers; stopping");
            return ShutdownSignal::FastShutdown;
        };
        tokio::select! {
            _ = int.recv() => {
                tracing::info!("SIGINT: exiting now");
                return ShutdownSignal::FastShutdown;
            }
            _ = quit.recv() => return ShutdownSignal::GracefulUpgrade,
            _ = term.recv() => {}
        }
        self.lifecycle.draining.store(true, Ordering::Relaxed);
        tracing::info!(
            delay = ?self.shutdown_delay,
            "SIGTERM: readiness now fails; still serving until the delay is over"
        );
        tokio::select! {
            _ = tokio::time::sleep(self.shutdown_delay) => {}
            _ = int.recv() => return ShutdownSignal::FastShutdown,
        }
        tracing::info!(
            in_flight = in_flight(),
            "closing listeners; draining in-flight requests"
        );
        ShutdownSignal::GracefulTerminate
    }
}

/// Once pingora starts its graceful shutdown, exits as soon as no request is left in
/// flight and no response is left to write (pingora itself would wait out the whole
/// drain timeout).
pub struct DrainService;

/// How often the drain checks for requests still in flight.
const DRAIN_POLL: Duration = Duration::from_millis(50);

#[async_trait]
impl BackgroundService for DrainService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        if shutdown.changed().await.is_err() {
            return;
        }
        let mut idle_polls = 0;
        loop {
            tokio::time::sleep(DRAIN_POLL).await;
            // Two idle polls in a row: a request read just now has had time to count.
            let idle = in_flight() == 0 && writing() == 0;
            idle_polls = if idle { idle_polls + 1 } else { 0 };
            if idle_polls >= 2 {
                tracing::info!("drained: no request in flight; exiting");
                crate::telemetry::access::flush();
                std::process::exit(0);
            }
        }
    }
}
