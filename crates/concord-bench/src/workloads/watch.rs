//! watch: commit throughput without and with M watchers on the written
//! prefix, and the delay from issuing a put to each watcher receiving it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use concord_etcd_proto::etcdserverpb as pb;
use parking_lot::Mutex;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::kv::put_op;
use super::report;
use crate::Common;
use crate::driver;
use crate::pool::{Keys, Pool};
use crate::stats::{Report, histogram, record};

pub async fn watch(common: &Common, pool: &Pool, watchers: usize) -> Result<Report, String> {
    // 1. Without watchers.
    let plain = driver::run(common.load(), put_op(pool.clone(), Keys::new(common, "plain/"), common.val_size)).await;
    let without = plain.latencies.len() as f64 / plain.elapsed.as_secs_f64();

    // 2. With watchers on the written prefix. Values carry the send time.
    let base = Instant::now();
    let keys = Keys::new(common, "watched/");
    let (start, end) = keys.prefix_range();
    let delivered = Arc::new(AtomicU64::new(0));
    let delays = Arc::new(Mutex::new(histogram()));
    let mut tasks = Vec::new();
    for i in 0..watchers {
        let (tx, rx) = mpsc::channel(1);
        let create = pb::WatchCreateRequest { key: start.clone(), range_end: end.clone(), ..Default::default() };
        tx.send(pb::WatchRequest { request_union: Some(pb::watch_request::RequestUnion::CreateRequest(create)) })
            .await
            .map_err(|e| e.to_string())?;
        let mut stream =
            pool.watch(i).watch(ReceiverStream::new(rx)).await.map_err(|s| s.message().to_string())?.into_inner();
        let created = stream.message().await.map_err(|s| s.message().to_string())?;
        if !created.is_some_and(|r| r.created) {
            return Err("a watch was not created".into());
        }
        let (delivered, delays) = (delivered.clone(), delays.clone());
        tasks.push(tokio::spawn(async move {
            let _keep_open = tx;
            let mut local = histogram();
            while let Ok(Some(resp)) = stream.message().await {
                let now = base.elapsed();
                for e in &resp.events {
                    let Some(kv) = &e.kv else { continue };
                    if let Some(sent) = kv.value.get(..8) {
                        let sent = Duration::from_nanos(u64::from_le_bytes(sent.try_into().expect("8 bytes")));
                        record(&mut local, now.saturating_sub(sent));
                    }
                }
                delivered.fetch_add(resp.events.len() as u64, Ordering::Relaxed);
                if local.len() >= 1000 {
                    let _ = delays.lock().add(&local);
                    local.reset();
                }
            }
            let _ = delays.lock().add(&local);
        }));
    }
    let val_size = common.val_size.max(8);
    let pool2 = pool.clone();
    let outcome = driver::run(common.load(), move |client, seq| {
        let mut kv = pool2.kv(client);
        let mut value = vec![b'x'; val_size];
        value[..8].copy_from_slice(&(base.elapsed().as_nanos() as u64).to_le_bytes());
        let req = pb::PutRequest { key: keys.pick(seq), value: value.into(), ..Default::default() };
        async move { kv.put(req).await.map(|_| ()).map_err(|s| s.message().to_string()) }
    })
    .await;
    let with = outcome.latencies.len() as f64 / outcome.elapsed.as_secs_f64();
    let expected = outcome.latencies.len() * watchers as u64;
    let deadline = Instant::now() + Duration::from_secs(30);
    while delivered.load(Ordering::Relaxed) < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for t in &tasks {
        t.abort();
    }
    let got = delivered.load(Ordering::Relaxed);
    let delays = delays.lock().clone();
    let mut r = report("watch", common, pool, outcome);
    // The latency columns report event delivery (put issued -> event received).
    let ms = |q: f64| if delays.is_empty() { 0.0 } else { delays.value_at_quantile(q) as f64 / 1000.0 };
    (r.p50_ms, r.p90_ms, r.p99_ms, r.p999_ms) = (ms(0.5), ms(0.9), ms(0.99), ms(0.999));
    r.max_ms = if delays.is_empty() { 0.0 } else { delays.max() as f64 / 1000.0 };
    if got < expected {
        r.errors += expected - got;
        r.first_error.get_or_insert(format!("{} events never arrived", expected - got));
    }
    Ok(r.with("watchers", watchers as f64)
        .with("puts_per_sec_without_watchers", without)
        .with("puts_per_sec_with_watchers", with)
        .with("throughput_change_pct", (with / without - 1.0) * 100.0))
}
