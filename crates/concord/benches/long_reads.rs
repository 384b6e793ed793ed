//! Do long reads stall writes? A member with many keys; one task writes and
//! measures each put's latency while another reads the whole keyspace over
//! and over (and lists every lease). Prints latency with and without the
//! readers; no criterion (the figure is the tail, not a mean).
//!
//! Run: `cargo bench -p concord --bench long_reads` (CONCORD_BENCH_KEYS sets
//! the key count, default 1,000,000; CONCORD_BENCH_DIR the data directory's
//! parent).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use concord::{Concord, Config, KeyRange};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p) as usize]
}

async fn measure_puts(db: &Concord, for_how_long: Duration) -> Vec<Duration> {
    let mut latencies = Vec::new();
    let start = Instant::now();
    let mut i = 0u64;
    while start.elapsed() < for_how_long {
        let t = Instant::now();
        db.kv().put(format!("probe/{}", i % 100), "v").await.unwrap();
        latencies.push(t.elapsed());
        i += 1;
    }
    latencies.sort();
    latencies
}

fn report(label: &str, latencies: &[Duration], reads: u64, read_time: Duration) {
    println!(
        "{label:<28} puts {:>6}  p50 {:>8.2?}  p99 {:>8.2?}  max {:>8.2?}   reads {reads} ({:.0?} each)",
        latencies.len(),
        percentile(latencies, 0.5),
        percentile(latencies, 0.99),
        latencies.last().unwrap(),
        if reads > 0 { read_time / reads as u32 } else { Duration::ZERO },
    );
}

fn main() {
    let keys: u64 = std::env::var("CONCORD_BENCH_KEYS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let parent = std::env::var("CONCORD_BENCH_DIR").unwrap_or_else(|_| ".".into());
    let dir = tempfile::tempdir_in(parent).unwrap();
    rt.block_on(async {
        let db = Config::new(dir.path()).auto_compaction_retention(None).open().await.unwrap();
        let loading = Instant::now();
        let mut writers = Vec::new();
        for w in 0..64u64 {
            let kv = db.kv();
            writers.push(tokio::spawn(async move {
                for i in (w..keys).step_by(64) {
                    kv.put(format!("key/{i:08}"), "value-value-value").await.unwrap();
                }
            }));
        }
        for w in writers {
            w.await.unwrap();
        }
        for _ in 0..10_000 {
            db.lease().grant(600).await.unwrap();
        }
        println!("loaded {keys} keys and 10,000 leases in {:.1?}", loading.elapsed());

        let quiet = measure_puts(&db, Duration::from_secs(3)).await;
        report("no readers", &quiet, 0, Duration::ZERO);

        let stop = Arc::new(AtomicBool::new(false));
        let (reads, read_nanos) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let reader = {
            let (db, stop, reads, read_nanos) = (db.clone(), stop.clone(), reads.clone(), read_nanos.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    let r = db.kv().range(KeyRange::prefix("key/")).keys_only().serializable().await.unwrap();
                    assert_eq!(r.kvs.len() as u64, keys);
                    db.lease().list().await.unwrap();
                    read_nanos.fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
                    reads.fetch_add(1, Ordering::Relaxed);
                }
            })
        };
        let busy = measure_puts(&db, Duration::from_secs(6)).await;
        stop.store(true, Ordering::Relaxed);
        reader.await.unwrap();
        let n = reads.load(Ordering::Relaxed);
        report("full-range reader running", &busy, n, Duration::from_nanos(read_nanos.load(Ordering::Relaxed)));
        db.shutdown().await.unwrap();
    });
}
