//! Live reload: load files (`load`), rebuild and publish state (`reloader`), name what
//! only a restart applies (`restart`), and the background service that reloads on file
//! changes, a periodic re-read and SIGHUP.

mod counters;
mod load;
mod reloader;
mod restart;
mod watcher;

use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

pub(crate) use load::unix_now;
pub use load::{load, CertWarning, Failed, LoadError, Loaded};
pub use reloader::{Reloader, RunningListener};
use watcher::DirWatcher;

/// How long to wait after a change is seen before reading: one kubelet swap or
/// editor save raises several events within a few milliseconds.
const DEBOUNCE: Duration = Duration::from_millis(100);

/// Waits out a burst of change events once its first one is received: [`DEBOUNCE`]
/// later, the events that came meanwhile are dropped, and one reload serves them all.
async fn settle(changed: &mut mpsc::UnboundedReceiver<()>) {
    tokio::time::sleep(DEBOUNCE).await;
    while changed.try_recv().is_ok() {}
}

/// Reloads config and certificates whenever they change on disk.
pub struct ReloadService {
    reloader: Mutex<Option<Reloader>>,
}

impl ReloadService {
    pub fn new(reloader: Reloader) -> Self {
        Self {
            reloader: Mutex::new(Some(reloader)),
        }
    }
}

#[async_trait]
impl BackgroundService for ReloadService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let taken = self.reloader.lock().map(|mut r| r.take()).unwrap_or(None);
        let Some(mut reloader) = taken else {
            return; // started twice: the first start owns the reloader
        };
        reloader.attach(tokio::runtime::Handle::current());
        let (changed_tx, mut changed) = mpsc::unbounded_channel();
        let file_name = reloader.config_file_name();
        let mut watcher = match DirWatcher::new(changed_tx, file_name) {
            Ok(w) => Some(w),
            Err(error) => {
                tracing::warn!(%error, "cannot watch files; changes are picked up by the periodic re-read only");
                None
            }
        };
        if let Some(w) = watcher.as_mut() {
            w.watch(reloader.watch_dirs());
        }
        let mut hangup = match signal(SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(error) => {
                tracing::warn!(%error, "cannot handle SIGHUP");
                None
            }
        };
        let mut period = reloader.poll_interval();
        let mut poll = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

        loop {
            let (cause, force) = tokio::select! {
                _ = shutdown.changed() => return,
                Some(()) = changed.recv() => {
                    settle(&mut changed).await;
                    ("file change", false)
                }
                _ = poll.tick() => ("periodic re-read", false),
                Some(()) = recv_hangup(&mut hangup) => ("SIGHUP", true),
            };
            // Reading files and resolving names block: keep them off the async workers.
            let job = tokio::task::spawn_blocking(move || {
                reloader.reload(cause, force);
                reloader
            });
            reloader = match job.await {
                Ok(r) => r,
                Err(error) => {
                    tracing::error!(%error, "reload task failed; live reload stops");
                    return;
                }
            };
            if let Some(w) = watcher.as_mut() {
                w.watch(reloader.watch_dirs());
            }
            if reloader.poll_interval() != period {
                period = reloader.poll_interval();
                poll = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            }
        }
    }
}

/// The next SIGHUP, or never when the signal cannot be handled.
async fn recv_hangup(hangup: &mut Option<tokio::signal::unix::Signal>) -> Option<()> {
    match hangup {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_burst_of_events_is_one_reload_100ms_after_its_first() {
        let (tx, mut changed) = mpsc::unbounded_channel();
        for _ in 0..4 {
            tx.send(()).unwrap();
        }
        let started = std::time::Instant::now();
        changed.recv().await.unwrap();
        settle(&mut changed).await;
        assert!(
            started.elapsed() >= Duration::from_millis(100),
            "the README's 100 ms"
        );
        assert!(
            changed.try_recv().is_err(),
            "the whole burst is served by one reload"
        );
        tx.send(()).unwrap();
        assert!(
            changed.try_recv().is_ok(),
            "a later change is another reload"
        );
    }
}
