//! The closed-loop driver: `clients` concurrent tasks each run one
//! operation at a time until the total count or the duration is reached,
//! optionally paced to an overall rate. Every operation's latency is
//! recorded; failures are counted, and the first one kept for the report.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use parking_lot::Mutex;

use crate::stats::{histogram, record};

/// When a run stops.
#[derive(Debug, Clone, Copy)]
pub enum Stop {
    Total(u64),
    Duration(Duration),
}

#[derive(Debug, Clone, Copy)]
pub struct Load {
    pub clients: usize,
    pub stop: Stop,
    /// Operations per second over all clients; 0 = as fast as possible.
    pub rate: u64,
}

pub struct Outcome {
    pub latencies: Histogram<u64>,
    pub errors: u64,
    pub first_error: Option<String>,
    pub elapsed: Duration,
}

/// Runs `op(client, sequence)` under `load`. `op` returns Err(message) on
/// failure.
pub async fn run<F, Fut>(load: Load, op: F) -> Outcome
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send,
{
    let op = Arc::new(op);
    let next = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let first_error = Arc::new(Mutex::new(None));
    let start = Instant::now();
    let interval = (load.rate > 0).then(|| Duration::from_secs_f64(1.0 / load.rate as f64));
    let mut tasks = Vec::new();
    for client in 0..load.clients.max(1) {
        let (op, next, errors, first_error) = (op.clone(), next.clone(), errors.clone(), first_error.clone());
        tasks.push(tokio::spawn(async move {
            let mut h = histogram();
            loop {
                let seq = next.fetch_add(1, Ordering::Relaxed);
                match load.stop {
                    Stop::Total(total) if seq >= total => break,
                    Stop::Duration(d) if start.elapsed() >= d => break,
                    _ => {}
                }
                if let Some(every) = interval {
                    let due = start + every * seq as u32;
                    tokio::time::sleep_until(due.into()).await;
                }
                let t = Instant::now();
                match op(client, seq).await {
                    Ok(()) => record(&mut h, t.elapsed()),
                    Err(e) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        first_error.lock().get_or_insert(e);
                    }
                }
            }
            h
        }));
    }
    let mut latencies = histogram();
    for t in tasks {
        if let Ok(h) = t.await {
            let _ = latencies.add(h);
        }
    }
    let elapsed = start.elapsed();
    Outcome { latencies, errors: errors.load(Ordering::Relaxed), first_error: first_error.lock().take(), elapsed }
}
