//! Continuous, bounded load from keep-alive clients, recording every failure.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::client::{Client, Proto};

/// Hard limits, so a load never outlives a hung test.
const MAX_DURATION: Duration = Duration::from_secs(300);
const MAX_REQUESTS_PER_CLIENT: u64 = 2_000_000;

/// What a load saw.
#[derive(Debug, Default)]
pub struct LoadReport {
    pub ok: u64,
    /// Every failed request or connection, described.
    pub failures: Vec<String>,
    /// Successful responses per `x-hello-instance`.
    pub by_instance: HashMap<String, u64>,
}

/// Clients that each keep one connection open and send GET `/` back to back.
pub struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<LoadReport>>,
}

impl Load {
    /// Starts `clients` connections to `addr` with SNI `sni`.
    pub fn start(
        client: &Client,
        addr: SocketAddr,
        sni: &str,
        clients: usize,
        proto: Proto,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        let tasks = (0..clients)
            .map(|_| {
                let (client, sni, stop, ok) =
                    (client.clone(), sni.to_owned(), stop.clone(), ok.clone());
                tokio::spawn(async move {
                    let mut report = LoadReport::default();
                    let mut conn = None;
                    let mut sent = 0;
                    while !stop.load(Ordering::Relaxed)
                        && started.elapsed() < MAX_DURATION
                        && sent < MAX_REQUESTS_PER_CLIENT
                    {
                        sent += 1;
                        if conn.is_none() {
                            match client.connect(addr, Some(&sni), proto).await {
                                Ok(c) => conn = Some(c),
                                Err(e) => {
                                    report.failures.push(format!("connect: {e}"));
                                    tokio::time::sleep(Duration::from_millis(10)).await;
                                    continue;
                                }
                            }
                        }
                        let Some(c) = conn.as_mut() else { continue };
                        match c.get("/").await {
                            Ok(resp) if resp.status == 200 => {
                                report.ok += 1;
                                ok.fetch_add(1, Ordering::Relaxed);
                                let instance = resp.header("x-hello-instance").to_owned();
                                *report.by_instance.entry(instance).or_default() += 1;
                            }
                            Ok(resp) => report.failures.push(format!(
                                "status {}: {}",
                                resp.status,
                                resp.text()
                            )),
                            Err(e) => {
                                report.failures.push(e);
                                conn = None;
                            }
                        }
                    }
                    report
                })
            })
            .collect();
        Self { stop, ok, tasks }
    }

    /// Successful requests so far.
    pub fn ok(&self) -> u64 {
        self.ok.load(Ordering::Relaxed)
    }

    /// Waits until `n` more requests succeeded than now (or panics after `deadline`).
    pub async fn wait_for_more(&self, n: u64, deadline: Duration) {
        let target = self.ok() + n;
        let start = Instant::now();
        while self.ok() < target {
            assert!(start.elapsed() < deadline, "load made no progress");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Stops every client and merges what they saw.
    pub async fn stop(self) -> LoadReport {
        self.stop.store(true, Ordering::Relaxed);
        let mut total = LoadReport::default();
        for task in self.tasks {
            let report = task.await.expect("load task");
            total.ok += report.ok;
            total.failures.extend(report.failures);
            for (k, v) in report.by_instance {
                *total.by_instance.entry(k).or_default() += v;
            }
        }
        total
    }
}
