//! Watch benchmarks (not criterion: these are throughput comparisons and
//! latency distributions, printed as figures).
//!
//! Run: `cargo bench -p concord --bench watch`
//! 1. commit throughput of 64 concurrent writers with 0 and with 100
//!    watchers on the written prefix;
//! 2. event latency: from issuing a put to each of 100 watchers receiving
//!    its event (p50 / p99 / max), with one writer.

use std::sync::Arc;
use std::time::{Duration, Instant};

use concord::{Concord, Config, KeyRange, WatchMessage};
use parking_lot::Mutex;

const WRITERS: usize = 64;
const PUTS_PER_WRITER: usize = 500;
const WATCHERS: usize = 100;
const LATENCY_PUTS: usize = 1000;

async fn open(dir: &tempfile::TempDir) -> Concord {
    Config::new(dir.path()).auto_compaction_retention(Some(10_000)).open().await.unwrap()
}

/// Puts/s of `WRITERS` writers doing `PUTS_PER_WRITER` puts each.
async fn throughput(db: &Concord, round: usize) -> f64 {
    let start = Instant::now();
    let tasks: Vec<_> = (0..WRITERS)
        .map(|w| {
            let kv = db.kv();
            tokio::spawn(async move {
                for i in 0..PUTS_PER_WRITER {
                    kv.put(format!("w/{round}/{w:02}/{i:04}"), vec![b'x'; 256]).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    (WRITERS * PUTS_PER_WRITER) as f64 / start.elapsed().as_secs_f64()
}

/// Spawns `n` watchers on `prefix` that drain their streams, counting events.
async fn spawn_watchers(db: &Concord, prefix: &str, n: usize) -> (Arc<Mutex<usize>>, Vec<tokio::task::JoinHandle<()>>) {
    let count = Arc::new(Mutex::new(0usize));
    let mut tasks = Vec::new();
    for _ in 0..n {
        let mut w = db.watch(KeyRange::prefix(prefix.to_string())).await.unwrap();
        let count = count.clone();
        tasks.push(tokio::spawn(async move {
            while let Some(m) = w.next().await {
                if let WatchMessage::Events { events, .. } = m {
                    *count.lock() += events.len();
                }
            }
        }));
    }
    (count, tasks)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir_in(".").unwrap();
        let db = open(&dir).await;
        // Warm up, then alternate to even out disk noise.
        throughput(&db, 0).await;
        let mut without = Vec::new();
        let mut with = Vec::new();
        for round in 1..=3 {
            without.push(throughput(&db, round * 2).await);
            let (count, tasks) = spawn_watchers(&db, &format!("w/{}/", round * 2 + 1), WATCHERS).await;
            with.push(throughput(&db, round * 2 + 1).await);
            let expected = WATCHERS * WRITERS * PUTS_PER_WRITER;
            let deadline = Instant::now() + Duration::from_secs(60);
            while *count.lock() < expected && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            assert_eq!(*count.lock(), expected, "every watcher got every event");
            for t in tasks {
                t.abort();
            }
        }
        let best = |v: &[f64]| v.iter().cloned().fold(0.0, f64::max);
        let median = |v: &mut Vec<f64>| {
            v.sort_by(|a, b| a.partial_cmp(b).unwrap());
            v[v.len() / 2]
        };
        let (b0, b100) = (best(&without), best(&with));
        let (m0, m100) = (median(&mut without), median(&mut with));
        println!("commit throughput, {WRITERS} writers x {PUTS_PER_WRITER} puts of 256 B (3 rounds each):");
        println!("  0 watchers:   median {m0:>8.0} puts/s, best {b0:>8.0}");
        println!(
            "  {WATCHERS} watchers: median {m100:>8.0} puts/s, best {b100:>8.0}  ({:+.1}% median)",
            (m100 / m0 - 1.0) * 100.0
        );

        // Latency: one writer, 100 watchers, issue time -> delivery time.
        let issued: Arc<Mutex<Vec<Instant>>> = Arc::new(Mutex::new(Vec::with_capacity(LATENCY_PUTS)));
        let latencies: Arc<Mutex<Vec<Duration>>> = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for _ in 0..WATCHERS {
            let mut w = db.watch(KeyRange::prefix("lat/")).await.unwrap();
            let (issued, latencies) = (issued.clone(), latencies.clone());
            tasks.push(tokio::spawn(async move {
                let mut seen = 0;
                while seen < LATENCY_PUTS {
                    let Some(WatchMessage::Events { events, .. }) = w.next().await else { continue };
                    let now = Instant::now();
                    for e in events.iter() {
                        let i: usize = std::str::from_utf8(&e.kv.value).unwrap().parse().unwrap();
                        let sent = issued.lock()[i];
                        latencies.lock().push(now - sent);
                        seen += 1;
                    }
                }
            }));
        }
        let mut put_latency = Vec::new();
        for i in 0..LATENCY_PUTS {
            let start = Instant::now();
            issued.lock().push(start);
            db.kv().put(format!("lat/{i:04}"), format!("{i}")).await.unwrap();
            put_latency.push(start.elapsed());
        }
        for t in tasks {
            t.await.unwrap();
        }
        let mut l = latencies.lock().clone();
        l.sort();
        put_latency.sort();
        println!("event latency, put issued -> event received, {WATCHERS} watchers x {LATENCY_PUTS} puts:");
        println!(
            "  p50 {:?}  p99 {:?}  max {:?}   (the put itself: p50 {:?}, p99 {:?})",
            percentile(&l, 0.50),
            percentile(&l, 0.99),
            l.last().unwrap(),
            percentile(&put_latency, 0.50),
            percentile(&put_latency, 0.99)
        );
        db.shutdown().await.unwrap();
    });
}
