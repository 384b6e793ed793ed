//! Lease workers: grant a lease, attach keys to it, then keep it alive for
//! a while and either revoke it or let it expire while polling it (and its
//! keys) until it is gone. Every answer is recorded for the lease model.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use concord_check::LeaseEventKind;
use concord_etcd_proto::etcdserverpb as pb;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio_stream::StreamExt;

use super::{Shared, back_off};

/// TTL of every lease granted (seconds): short, so that many expire.
pub const TTL_SECS: i64 = 2;
/// Keys attached to each lease.
pub const KEYS_PER_LEASE: usize = 2;
/// How often an expiring lease is polled.
const POLL: Duration = Duration::from_millis(100);
/// Keep-alive interval (a third of the TTL, as etcd clients do).
const KEEP_ALIVE_EVERY: Duration = Duration::from_millis(600);

/// One worker; runs until the run stops (finishing the lease in hand).
pub async fn worker(id: u64, seed: u64, shared: Arc<Shared>) {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x1ea5e ^ id);
    let mut member = id as usize % shared.members();
    while !shared.stopping() {
        let Some(lease) = grant(&shared, id, member).await else {
            member = (member + 1) % shared.members();
            back_off().await;
            continue;
        };
        let attached = attach(&shared, member, lease).await;
        let keep_for = Duration::from_millis(rng.random_range(0..3_000));
        let deadline = tokio::time::Instant::now() + keep_for;
        while tokio::time::Instant::now() < deadline && !shared.stopping() {
            tokio::time::sleep(KEEP_ALIVE_EVERY.min(deadline - tokio::time::Instant::now())).await;
            keep_alive(&shared, id, member, lease).await;
        }
        if rng.random_bool(0.3) {
            revoke(&shared, id, member, lease).await;
        }
        // Watch it go (a revoked one too: it must stay gone).
        let give_up = tokio::time::Instant::now() + Duration::from_secs(TTL_SECS as u64 + 20);
        let mut polled = 0;
        while tokio::time::Instant::now() < give_up {
            let gone = observe(&shared, id, member, lease, attached).await;
            polled += 1;
            if gone == Some(true) {
                // Once more, from another member: it must stay gone.
                observe(&shared, id, (member + 1) % shared.members(), lease, attached).await;
                break;
            }
            if gone.is_none() {
                member = (member + 1) % shared.members();
            }
            if shared.stopping() && polled > 50 {
                break;
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

async fn grant(shared: &Shared, id: u64, member: usize) -> Option<i64> {
    let mut client = pb::lease_client::LeaseClient::new(shared.channels[member].clone());
    let invoked = shared.now();
    let request = pb::LeaseGrantRequest { ttl: TTL_SECS, id: 0 };
    let granted = shared.bounded(client.lease_grant(shared.request(request))).await.ok()?;
    let ttl_ms = granted.ttl as u64 * 1000;
    shared.leases.lock().push(id, granted.id, LeaseEventKind::Granted { ttl_ms }, invoked, shared.now());
    Some(granted.id)
}

fn lease_key(lease: i64, n: usize) -> String {
    format!("l/{lease}/{n}")
}

/// Puts the lease's keys; true if every put was acknowledged.
async fn attach(shared: &Shared, member: usize, lease: i64) -> bool {
    let mut kv = pb::kv_client::KvClient::new(shared.channels[member].clone());
    let mut all = true;
    for n in 0..KEYS_PER_LEASE {
        let key = lease_key(lease, n);
        shared.watch.lock().attempt(key.as_bytes(), b"leased");
        let request =
            pb::PutRequest { key: Bytes::from(key), value: Bytes::from_static(b"leased"), lease, ..Default::default() };
        all &= shared.bounded(kv.put(shared.request(request))).await.is_ok();
    }
    all
}

async fn keep_alive(shared: &Shared, id: u64, member: usize, lease: i64) {
    let mut client = pb::lease_client::LeaseClient::new(shared.channels[member].clone());
    let invoked = shared.now();
    let requests = tokio_stream::iter([pb::LeaseKeepAliveRequest { id: lease }]);
    let answer = shared
        .bounded(async {
            let mut responses = client.lease_keep_alive(requests).await?.into_inner();
            match responses.next().await {
                Some(answer) => answer.map(tonic::Response::new),
                None => Err(tonic::Status::unavailable("keep-alive stream closed")),
            }
        })
        .await;
    let kind = match answer {
        Ok(kept) if kept.ttl > 0 => LeaseEventKind::KeptAlive { ttl_ms: kept.ttl as u64 * 1000 },
        Ok(_) => LeaseEventKind::SeenGone,
        Err(_) => LeaseEventKind::RenewalUnknown { ttl_ms: TTL_SECS as u64 * 1000 },
    };
    shared.leases.lock().push(id, lease, kind, invoked, shared.now());
}

async fn revoke(shared: &Shared, id: u64, member: usize, lease: i64) {
    let mut client = pb::lease_client::LeaseClient::new(shared.channels[member].clone());
    let invoked = shared.now();
    let answer = shared.bounded(client.lease_revoke(shared.request(pb::LeaseRevokeRequest { id: lease }))).await;
    let acknowledged = answer.is_ok();
    shared.leases.lock().push(id, lease, LeaseEventKind::Revoked { acknowledged }, invoked, shared.now());
}

/// Asks whether the lease is gone (and, if its keys were all attached,
/// whether they are): `Some(gone)`, or `None` if the member did not answer.
async fn observe(shared: &Shared, id: u64, member: usize, lease: i64, attached: bool) -> Option<bool> {
    let mut client = pb::lease_client::LeaseClient::new(shared.channels[member].clone());
    let invoked = shared.now();
    let request = pb::LeaseTimeToLiveRequest { id: lease, keys: false };
    let answer = shared.bounded(client.lease_time_to_live(shared.request(request))).await.ok()?;
    let gone = answer.ttl < 0;
    let kind = if gone { LeaseEventKind::SeenGone } else { LeaseEventKind::SeenAlive };
    shared.leases.lock().push(id, lease, kind, invoked, shared.now());
    if attached {
        let mut kv = pb::kv_client::KvClient::new(shared.channels[member].clone());
        let prefix = format!("l/{lease}/");
        let mut end = prefix.clone().into_bytes();
        *end.last_mut().expect("not empty") += 1;
        let request = pb::RangeRequest {
            key: Bytes::from(prefix),
            range_end: Bytes::from(end),
            count_only: true,
            ..Default::default()
        };
        let invoked = shared.now();
        if let Ok(range) = shared.bounded(kv.range(shared.request(request))).await {
            let kind = match range.count as usize {
                0 => LeaseEventKind::SeenGone,
                KEYS_PER_LEASE => LeaseEventKind::SeenAlive,
                _ => LeaseEventKind::SeenPartial,
            };
            shared.leases.lock().push(id, lease, kind, invoked, shared.now());
        }
    }
    Some(gone)
}
