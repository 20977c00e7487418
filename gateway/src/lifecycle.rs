//! Process lifecycle: on SIGTERM, readiness fails at once while the gateway keeps
//! serving for `shutdown_delay` (load balancers take the pod out meanwhile); then
//! listeners close, idle keep-alive connections are closed (HTTP/2: GOAWAY), and
//! in-flight requests get up to `drain_timeout`; the process exits 0 as soon as none
//! is left, or when that time is over. Both durations are the live config's, as of
//! the moment each phase starts. SIGINT exits at once. SIGQUIT is pingora's graceful upgrade, which hands no
//! listener over (the listeners are our own services): a graceful stop without the delay.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicIsize, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora::server::{ShutdownSignal, ShutdownSignalWatch, ShutdownWatch};
use pingora::services::background::BackgroundService;
use tokio::signal::unix::{signal, SignalKind};

/// Worker-thread slots for counters every request writes: each thread writes its own
/// cache line, so threads never contend for one; readers (the drain, `/metrics`) sum
/// them. More threads than slots share them.
pub(crate) const SLOTS: usize = 16;

/// A counter on a cache line of its own.
#[repr(align(64))]
struct Slot(AtomicIsize);

/// This thread's slot.
pub(crate) fn thread_slot() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SLOT: usize = NEXT.fetch_add(1, Ordering::Relaxed) % SLOTS;
    }
    SLOT.with(|slot| *slot)
}

/// Requests being processed, per worker thread (a request may end on another thread
/// than it started: a slot alone can go below zero, the sum cannot).
static IN_FLIGHT: [Slot; SLOTS] = [const { Slot(AtomicIsize::new(0)) }; SLOTS];

/// Counts one request in flight until dropped.
#[derive(Debug)]
pub(crate) struct RequestGuard(&'static AtomicIsize);

impl RequestGuard {
    pub(crate) fn new() -> Self {
        let slot = &IN_FLIGHT[thread_slot()].0;
        slot.fetch_add(1, Ordering::Relaxed);
        Self(slot)
    }
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Requests in flight now.
pub fn in_flight() -> usize {
    let sum: isize = IN_FLIGHT
        .iter()
        .map(|slot| slot.0.load(Ordering::Relaxed))
        .sum();
    usize::try_from(sum).unwrap_or(0)
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

/// Set once the graceful shutdown begins (listeners close): HTTP/1 responses from then
/// on say `Connection: close`. Read per request with one relaxed load, no lock.
static STOPPING: AtomicBool = AtomicBool::new(false);

/// Whether the graceful shutdown has begun.
pub(crate) fn stopping() -> bool {
    STOPPING.load(Ordering::Relaxed)
}

/// Marks the graceful shutdown as begun (its watch says so).
pub(crate) fn stop() {
    STOPPING.store(true, Ordering::Relaxed);
}

/// A connection's view of pingora's shutdown watch: a future that resolves once the
/// server shuts down, made once per connection and polled at every wait (the keep-alive
/// loop's, the HTTP/2 loop's) without the watch's lock: after the first poll has
/// registered its waker, a poll only loads the watch's version (an atomic) until it
/// changes. The connection's task must be the only one to poll it.
pub(crate) struct Shutdown {
    probe: ShutdownWatch,
    wait: Pin<Box<dyn Future<Output = ()> + Send>>,
    registered: bool,
    done: bool,
}

impl Shutdown {
    pub(crate) fn new(watch: &ShutdownWatch) -> Self {
        let mut rx = watch.clone();
        Self {
            probe: watch.clone(),
            wait: Box::pin(async move {
                // A closed watch (the server gone) ends the wait as well.
                let _ = rx.wait_for(|down| *down).await;
            }),
            registered: false,
            done: false,
        }
    }

    /// Whether the server is shutting down now (a read of the watch, with its lock).
    pub(crate) fn now(&self) -> bool {
        *self.probe.borrow()
    }
}

impl Future for Shutdown {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(());
        }
        if this.registered && matches!(this.probe.has_changed(), Ok(false)) {
            // Still registered with this task's waker: nothing to do until it changes.
            return Poll::Pending;
        }
        this.registered = true;
        let polled = this.wait.as_mut().poll(cx);
        if polled.is_ready() {
            this.done = true;
            stop();
        }
        polled
    }
}

/// Whether the process is shutting down (readiness then fails), and the shutdown
/// settings of the config serving now.
#[derive(Debug)]
pub struct Lifecycle {
    draining: AtomicBool,
    /// `[server] shutdown_delay` and `drain_timeout`, in milliseconds.
    shutdown_delay_ms: AtomicU64,
    drain_timeout_ms: AtomicU64,
}

impl Lifecycle {
    /// The lifecycle of a process started with `server`.
    pub fn new(server: &crate::config::Server) -> Self {
        let lifecycle = Self {
            draining: AtomicBool::new(false),
            shutdown_delay_ms: AtomicU64::new(0),
            drain_timeout_ms: AtomicU64::new(0),
        };
        lifecycle.apply(server);
        lifecycle
    }

    /// Takes the shutdown settings of a newly applied config.
    pub fn apply(&self, server: &crate::config::Server) {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        self.shutdown_delay_ms
            .store(ms(server.shutdown_delay), Ordering::Relaxed);
        self.drain_timeout_ms
            .store(ms(server.drain_timeout), Ordering::Relaxed);
    }

    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    fn shutdown_delay(&self) -> Duration {
        Duration::from_millis(self.shutdown_delay_ms.load(Ordering::Relaxed))
    }

    fn drain_timeout(&self) -> Duration {
        Duration::from_millis(self.drain_timeout_ms.load(Ordering::Relaxed))
    }
}

/// Tells pingora when to shut down, after our own delay.
pub struct SignalWatch {
    pub lifecycle: Arc<Lifecycle>,
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
            _ = int.recv() => exit_now(),
            _ = quit.recv() => return ShutdownSignal::GracefulUpgrade,
            _ = term.recv() => {}
        }
        self.lifecycle.draining.store(true, Ordering::Relaxed);
        let delay = self.lifecycle.shutdown_delay();
        tracing::info!(
            ?delay,
            "SIGTERM: readiness now fails; still serving until the delay is over"
        );
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = int.recv() => exit_now(),
        }
        tracing::info!(
            in_flight = in_flight(),
            "closing listeners; draining in-flight requests"
        );
        ShutdownSignal::GracefulTerminate
    }
}

/// SIGINT: writes out the buffered access lines and exits 0 at once. Not through
/// pingora's fast shutdown: that stops its runtimes while listener tasks still accept,
/// and pingora's accept loop retries a failed accept without yielding, so the worker
/// thread whose socket lost its reactor spins on "Accept() failed" and the process
/// never exits (seen in `sigint_exits_at_once`, 1 run in 10).
fn exit_now() -> ! {
    tracing::info!("SIGINT: exiting now");
    crate::telemetry::access::flush();
    std::process::exit(0);
}

/// Once pingora starts its graceful shutdown, exits as soon as no request is left in
/// flight and no response is left to write (pingora itself would wait out its whole
/// grace period), or once the live `drain_timeout` is over.
pub struct DrainService(pub Arc<Lifecycle>);

/// How often the drain checks for requests still in flight.
const DRAIN_POLL: Duration = Duration::from_millis(50);

#[async_trait]
impl BackgroundService for DrainService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        if shutdown.changed().await.is_err() {
            return;
        }
        stop();
        let deadline = Instant::now() + self.0.drain_timeout();
        let mut idle_polls = 0;
        loop {
            tokio::time::sleep(DRAIN_POLL).await;
            // Two idle polls in a row: a request read just now has had time to count.
            let idle = in_flight() == 0 && writing() == 0;
            idle_polls = if idle { idle_polls + 1 } else { 0 };
            if idle_polls >= 2 {
                tracing::info!("drained: no request in flight; exiting");
                break;
            }
            if Instant::now() >= deadline {
                tracing::warn!(
                    in_flight = in_flight(),
                    "drain_timeout is over; exiting with requests still in flight"
                );
                break;
            }
        }
        crate::telemetry::access::flush();
        crate::telemetry::traces::flush(SPAN_FLUSH);
        std::process::exit(0);
    }
}

/// How long the spans still queued at the end of a drain get to be exported.
const SPAN_FLUSH: Duration = Duration::from_secs(2);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_in_flight_are_summed_over_threads() {
        let before = in_flight();
        let here = RequestGuard::new();
        let there = std::thread::spawn(RequestGuard::new).join().unwrap();
        assert_eq!(in_flight(), before + 2);
        // Dropped on another thread than it started on: the sum stays right.
        std::thread::spawn(move || drop(here)).join().unwrap();
        drop(there);
        assert_eq!(in_flight(), before);
    }
}
