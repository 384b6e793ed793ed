//! Embedded engine benchmarks on a real data directory (every write fsynced).
//!
//! Run: `cargo bench -p concord --bench engine` (add `-- put` to filter).
//! Criterion reports time per operation and, for throughput groups,
//! operations per second. Figures and the machine go in docs/benchmarks.md.

use std::future::IntoFuture;
use std::sync::Arc;
use std::time::{Duration, Instant};

use concord::{Concord, Config, KeyRange, TxnOp};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use tokio::runtime::Runtime;

struct Bench {
    rt: Runtime,
    db: Concord,
    _dir: tempfile::TempDir,
}

fn open() -> Bench {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let dir = tempfile::tempdir_in(std::env::var("CONCORD_BENCH_DIR").unwrap_or_else(|_| ".".into())).unwrap();
    // Keep history bounded so long runs measure steady state, not growth.
    let config = Config::new(dir.path()).auto_compaction_retention(Some(10_000));
    let db = rt.block_on(config.open()).unwrap();
    Bench { rt, db, _dir: dir }
}

/// `iters` puts spread over `writers` concurrent tasks; returns the wall time.
async fn concurrent_puts(db: &Concord, writers: u64, iters: u64, value: Arc<Vec<u8>>) -> Duration {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let kv = db.kv();
        let value = value.clone();
        let n = iters / writers + u64::from(w < iters % writers);
        tasks.push(tokio::spawn(async move {
            for i in 0..n {
                kv.put(format!("bench/{w:03}/{:06}", i % 1000), value.to_vec()).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    start.elapsed()
}

fn puts(c: &mut Criterion) {
    let b = open();
    let value = Arc::new(vec![b'x'; 256]);
    let mut group = c.benchmark_group("put_256B");
    group.throughput(Throughput::Elements(1)).sample_size(10).measurement_time(Duration::from_secs(5));
    for writers in [1u64, 64] {
        group.bench_with_input(BenchmarkId::new("writers", writers), &writers, |bench, &writers| {
            bench.to_async(&b.rt).iter_custom(|iters| {
                let (db, value) = (b.db.clone(), value.clone());
                async move { concurrent_puts(&db, writers, iters, value).await }
            })
        });
    }
    group.finish();
    b.rt.block_on(b.db.shutdown()).unwrap();
}

fn gets(c: &mut Criterion) {
    let b = open();
    b.rt.block_on(async {
        for i in 0..1000 {
            b.db.kv().put(format!("key/{i:04}"), "value").await.unwrap();
        }
    });
    let mut group = c.benchmark_group("get");
    group.throughput(Throughput::Elements(1)).sample_size(20).measurement_time(Duration::from_secs(3));
    group.bench_function("linearizable", |bench| {
        let mut i = 0u32;
        bench.to_async(&b.rt).iter(|| {
            i = (i + 1) % 1000;
            let kv = b.db.kv();
            async move { kv.get(format!("key/{i:04}")).await.unwrap() }
        })
    });
    group.bench_function("serializable", |bench| {
        let mut i = 0u32;
        bench.to_async(&b.rt).iter(|| {
            i = (i + 1) % 1000;
            let kv = b.db.kv();
            async move { kv.get(format!("key/{i:04}")).serializable().await.unwrap() }
        })
    });
    group.bench_function("linearizable_64_readers", |bench| {
        bench.to_async(&b.rt).iter_custom(|iters| {
            let db = b.db.clone();
            async move {
                let start = Instant::now();
                let tasks: Vec<_> = (0..64u64)
                    .map(|r| {
                        let kv = db.kv();
                        tokio::spawn(async move {
                            for i in 0..iters / 64 + 1 {
                                kv.get(format!("key/{:04}", (i + r) % 1000)).await.unwrap();
                            }
                        })
                    })
                    .collect();
                for t in tasks {
                    t.await.unwrap();
                }
                start.elapsed()
            }
        })
    });
    group.finish();
    b.rt.block_on(b.db.shutdown()).unwrap();
}

fn leases(c: &mut Criterion) {
    let b = open();
    let mut group = c.benchmark_group("lease");
    group.throughput(Throughput::Elements(1)).sample_size(10).measurement_time(Duration::from_secs(3));
    group.bench_function("grant", |bench| {
        bench.to_async(&b.rt).iter(|| {
            let leases = b.db.lease();
            async move { leases.grant(3600).await.unwrap() }
        })
    });
    let id = b.rt.block_on(b.db.lease().grant(3600).into_future()).unwrap().id;
    group.bench_function("keep_alive", |bench| {
        bench.to_async(&b.rt).iter(|| {
            let leases = b.db.lease();
            async move { leases.keep_alive(id).await.unwrap() }
        })
    });
    group.finish();

    let mut group = c.benchmark_group("lease_revoke");
    group.sample_size(10).measurement_time(Duration::from_secs(10));
    group.bench_function("10000_keys", |bench| {
        bench.to_async(&b.rt).iter_custom(|iters| {
            let db = b.db.clone();
            async move {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let lease = db.lease().grant(3600).await.unwrap();
                    attach_keys(&db, lease.id, 10_000).await;
                    let start = Instant::now();
                    let revoked = db.lease().revoke(lease.id).await.unwrap();
                    total += start.elapsed();
                    assert_eq!(revoked.deleted_keys, 10_000);
                }
                total
            }
        })
    });
    group.finish();
    b.rt.block_on(b.db.shutdown()).unwrap();
}

/// Attaches `n` keys to a lease, 100 per transaction.
async fn attach_keys(db: &Concord, lease: i64, n: usize) {
    for chunk in (0..n).collect::<Vec<_>>().chunks(100) {
        let ops = chunk.iter().map(|i| TxnOp::put_with_lease(format!("revoke/{i:05}"), "v", lease));
        db.txn().and_then(ops).await.unwrap();
    }
    let count = db.kv().range(KeyRange::prefix("revoke/")).count_only().await.unwrap().count;
    assert_eq!(count, n as u64);
}

criterion_group!(benches, puts, gets, leases);
criterion_main!(benches);
