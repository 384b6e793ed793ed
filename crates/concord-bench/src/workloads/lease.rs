//! lease-grant, lease-keepalive, lease-revoke, lease-expiry.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use concord_etcd_proto::etcdserverpb as pb;
use concord_etcd_proto::mvccpb::event::EventType;
use parking_lot::Mutex;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::report;
use crate::Common;
use crate::driver::{self, Load, Stop};
use crate::pool::{Keys, Pool};
use crate::stats::{Report, histogram, record};

fn msg(s: tonic::Status) -> String {
    s.message().to_string()
}

pub async fn grant(common: &Common, pool: &Pool, keep: bool) -> Result<Report, String> {
    let granted = Arc::new(Mutex::new(Vec::new()));
    let (pool2, granted2) = (pool.clone(), granted.clone());
    let outcome = driver::run(common.load(), move |client, _| {
        let mut lease = pool2.lease(client);
        let granted = granted2.clone();
        async move {
            let resp = lease.lease_grant(pb::LeaseGrantRequest { ttl: 3600, id: 0 }).await.map_err(msg)?;
            granted.lock().push(resp.into_inner().id);
            Ok(())
        }
    })
    .await;
    let r = report("lease-grant", common, pool, outcome);
    if !keep {
        let ids = std::mem::take(&mut *granted.lock());
        revoke_all(common, pool, ids).await?;
    }
    Ok(r)
}

/// Revokes `ids` (untimed cleanup).
async fn revoke_all(common: &Common, pool: &Pool, ids: Vec<i64>) -> Result<(), String> {
    let ids = Arc::new(ids);
    let load = Load { clients: common.clients.max(16), stop: Stop::Total(ids.len() as u64), rate: 0 };
    let pool = pool.clone();
    let outcome = driver::run(load, move |client, seq| {
        let mut lease = pool.lease(client);
        let id = ids[seq as usize];
        async move { lease.lease_revoke(pb::LeaseRevokeRequest { id }).await.map(|_| ()).map_err(msg) }
    })
    .await;
    outcome.first_error.map_or(Ok(()), |e| Err(format!("cleanup failed: {e}")))
}

/// Grants `n` leases of `ttl` seconds (untimed).
async fn grant_many(common: &Common, pool: &Pool, n: u64, ttl: i64) -> Result<Vec<i64>, String> {
    let granted = Arc::new(Mutex::new(Vec::with_capacity(n as usize)));
    let load = Load { clients: common.clients.max(16), stop: Stop::Total(n), rate: 0 };
    let (pool2, granted2) = (pool.clone(), granted.clone());
    let outcome = driver::run(load, move |client, _| {
        let mut lease = pool2.lease(client);
        let granted = granted2.clone();
        async move {
            let id = lease.lease_grant(pb::LeaseGrantRequest { ttl, id: 0 }).await.map_err(msg)?.into_inner().id;
            granted.lock().push(id);
            Ok(())
        }
    })
    .await;
    if let Some(e) = outcome.first_error {
        return Err(format!("granting leases failed: {e}"));
    }
    Ok(std::mem::take(&mut *granted.lock()))
}

/// Each client keeps its own bidi stream and renews leases round-robin,
/// waiting for each answer (latency = one keep-alive round trip).
pub async fn keep_alive(common: &Common, pool: &Pool, leases: u64) -> Result<Report, String> {
    let ids = Arc::new(grant_many(common, pool, leases.max(1), 3600).await?);
    let mut streams = Vec::new();
    for client in 0..common.clients.max(1) {
        let (tx, rx) = mpsc::channel::<pb::LeaseKeepAliveRequest>(1);
        // Some servers (etcd) send response headers only with the first
        // response: send a request before waiting for the call to open.
        tx.send(pb::LeaseKeepAliveRequest { id: ids[0] }).await.map_err(|e| e.to_string())?;
        let mut responses =
            pool.lease(client).lease_keep_alive(ReceiverStream::new(rx)).await.map_err(msg)?.into_inner();
        responses.message().await.map_err(msg)?.ok_or("the keep-alive stream closed at once")?;
        streams.push(Arc::new(tokio::sync::Mutex::new((tx, responses))));
    }
    let streams = Arc::new(streams);
    let ids2 = ids.clone();
    let outcome = driver::run(common.load(), move |client, seq| {
        let stream = streams[client].clone();
        let id = ids2[(seq % ids2.len() as u64) as usize];
        async move {
            let mut guard = stream.lock().await;
            let (tx, responses) = &mut *guard;
            tx.send(pb::LeaseKeepAliveRequest { id }).await.map_err(|e| e.to_string())?;
            match responses.message().await.map_err(msg)? {
                Some(resp) if resp.ttl > 0 => Ok(()),
                Some(_) => Err(format!("lease {id:x} was not renewed (TTL 0)")),
                None => Err("the keep-alive stream closed".into()),
            }
        }
    })
    .await;
    let r = report("lease-keepalive", common, pool, outcome).with("leases", leases as f64);
    revoke_all(common, pool, ids.to_vec()).await?;
    Ok(r)
}

/// Grant a lease, attach `keys` keys (untimed, 128 per transaction), then
/// time the revoke; `repeat` times.
pub async fn revoke(common: &Common, pool: &Pool, keys: u64, repeat: u64) -> Result<Report, String> {
    let mut h = histogram();
    let mut errors = 0;
    let mut first_error = None;
    let mut kv = pool.kv(0);
    let mut lease = pool.lease(0);
    let started = Instant::now();
    for round in 0..repeat.max(1) {
        let id = lease.lease_grant(pb::LeaseGrantRequest { ttl: 3600, id: 0 }).await.map_err(msg)?.into_inner().id;
        let names = Keys::new(common, &format!("revoke/{round}/"));
        for chunk in (0..keys).collect::<Vec<_>>().chunks(128) {
            let ops = chunk
                .iter()
                .map(|i| pb::RequestOp {
                    request: Some(pb::request_op::Request::RequestPut(pb::PutRequest {
                        key: names.nth(*i),
                        value: "v".into(),
                        lease: id,
                        ..Default::default()
                    })),
                })
                .collect();
            kv.txn(pb::TxnRequest { success: ops, ..Default::default() }).await.map_err(msg)?;
        }
        let t = Instant::now();
        match lease.lease_revoke(pb::LeaseRevokeRequest { id }).await {
            Ok(_) => record(&mut h, t.elapsed()),
            Err(e) => {
                errors += 1;
                first_error.get_or_insert(msg(e));
            }
        }
    }
    let mut r = Report::new("lease-revoke", &pool.endpoint, 1, &h, errors, started.elapsed())
        .with("keys_per_lease", keys as f64);
    r.first_error = first_error;
    Ok(r)
}

/// Grants `leases` leases of `ttl` s, each with one key, and watches the
/// keys: lateness = when the DELETE arrived minus the latest the deadline
/// can be (grant answered + TTL). A DELETE before (grant sent + TTL) is early.
pub async fn expiry(common: &Common, pool: &Pool, leases: u64, ttl: i64) -> Result<Report, String> {
    let keys = Keys::new(common, "expiry/");
    let (start, end) = keys.prefix_range();
    let seen: Arc<Mutex<HashMap<bytes::Bytes, Instant>>> = Arc::new(Mutex::new(HashMap::new()));
    let (tx, rx) = mpsc::channel(1);
    let create = pb::WatchCreateRequest { key: start, range_end: end, ..Default::default() };
    tx.send(pb::WatchRequest { request_union: Some(pb::watch_request::RequestUnion::CreateRequest(create)) })
        .await
        .map_err(|e| e.to_string())?;
    let mut events = pool.watch(0).watch(ReceiverStream::new(rx)).await.map_err(msg)?.into_inner();
    let created = events.message().await.map_err(msg)?;
    if !created.is_some_and(|r| r.created) {
        return Err("the watch was not created".into());
    }
    let seen2 = seen.clone();
    let watcher = tokio::spawn(async move {
        while let Ok(Some(resp)) = events.message().await {
            let now = Instant::now();
            for e in resp.events {
                if e.r#type == EventType::Delete as i32
                    && let Some(kv) = e.kv
                {
                    seen2.lock().insert(kv.key, now);
                }
            }
        }
        drop(tx);
    });

    let windows: Arc<Mutex<HashMap<bytes::Bytes, (Instant, Instant)>>> = Arc::new(Mutex::new(HashMap::new()));
    let load = Load { clients: common.clients, stop: Stop::Total(leases), rate: common.rate };
    let (pool2, windows2, keys2) = (pool.clone(), windows.clone(), keys.clone());
    let granted = driver::run(load, move |client, seq| {
        let (mut lease, mut kv) = (pool2.lease(client), pool2.kv(client));
        let (windows, key) = (windows2.clone(), keys2.nth(seq));
        async move {
            let sent = Instant::now();
            let id = lease.lease_grant(pb::LeaseGrantRequest { ttl, id: 0 }).await.map_err(msg)?.into_inner().id;
            let answered = Instant::now();
            kv.put(pb::PutRequest { key: key.clone(), value: "v".into(), lease: id, ..Default::default() })
                .await
                .map_err(msg)?;
            windows.lock().insert(key, (sent, answered));
            Ok(())
        }
    })
    .await;

    let ttl_d = Duration::from_secs(ttl.max(0) as u64);
    let deadline = Instant::now() + ttl_d + Duration::from_secs(30);
    while seen.lock().len() < windows.lock().len() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    watcher.abort();
    let (mut lateness, mut early, mut missing) = (histogram(), 0u64, 0u64);
    let seen = seen.lock();
    for (key, (sent, answered)) in windows.lock().iter() {
        match seen.get(key) {
            Some(at) if *at < *sent + ttl_d => early += 1,
            Some(at) => record(&mut lateness, at.saturating_duration_since(*answered + ttl_d)),
            None => missing += 1,
        }
    }
    let mut r = Report::new(
        "lease-expiry",
        &pool.endpoint,
        common.clients,
        &lateness,
        granted.errors + early + missing,
        granted.elapsed,
    )
    .with("ttl_s", ttl as f64)
    .with("early", early as f64)
    .with("never_expired", missing as f64);
    r.first_error = granted
        .first_error
        .or_else(|| (early + missing > 0).then(|| format!("{early} early, {missing} never expired")));
    // Latencies here are lateness after the deadline, not request latency.
    r.ops_per_sec = 0.0;
    Ok(r)
}
