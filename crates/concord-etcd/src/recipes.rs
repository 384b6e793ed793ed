//! The building blocks of etcd's Lock and Election services, as etcd's
//! `clientv3/concurrency` package builds its mutex and election on the KV
//! API (etcd's servers run that package against themselves; here the same
//! steps call the engine directly).
//!
//! The protocol, which clients of etcd's services and of its client-side
//! recipes share (so both kinds can queue for one lock):
//! - a session is a lease; its key under a name is `name/` followed by the
//!   lease id in lowercase hex, attached to that lease (a client that goes
//!   away leaves its key only until the lease expires);
//! - waiters are ordered by their key's create revision; the oldest holds
//!   the lock (or is the leader);
//! - a waiter with create revision `r` waits until no key under the prefix
//!   has a create revision below `r` (`wait_deletes`): it watches only the
//!   newest older key, so a release wakes one waiter, not all.
//!
//! Every step runs as the calling client (etcd runs the recipe with the
//! caller's credentials): each read and write is checked against the
//! caller's permissions where it takes effect, on the keys it really
//! touches — the key a `LeaderKey` names included, whatever name it
//! claims to belong to. The identity is the one the call authenticated
//! with ([`Caller::established`]), checked afresh at every step of a wait
//! that may outlive many auth changes.

use bytes::Bytes;
use concord::auth::Caller;
use concord::{Concord, Consistency, EventKind, KeyRange, KeyValue, WatchMessage};
use tokio::sync::watch;
use tonic::Status;

use crate::convert;
use crate::header::header;
use crate::pb::etcdserverpb as pb;
use crate::status::to_status;

/// The TTL of the lease a request that names none gets (etcd's session
/// default).
pub const SESSION_TTL_SECS: i64 = 60;

/// `name/`: where the keys of a lock's or an election's sessions live.
pub fn prefix(name: &[u8]) -> Bytes {
    let mut prefix = name.to_vec();
    prefix.push(b'/');
    Bytes::from(prefix)
}

/// The session key of `lease` under `prefix`.
pub fn session_key(prefix: &[u8], lease: i64) -> Bytes {
    let mut key = prefix.to_vec();
    key.extend_from_slice(format!("{lease:x}").as_bytes());
    Bytes::from(key)
}

/// `lease`, or a new lease of [`SESSION_TTL_SECS`] if it is 0.
pub async fn session_lease(db: &Concord, caller: &Caller, lease: i64) -> Result<i64, Status> {
    if lease != 0 {
        return Ok(lease);
    }
    Ok(db.lease().grant(SESSION_TTL_SECS).as_caller(caller.clone()).await.map_err(to_status)?.id)
}

/// A transaction given as etcd's request, run as `caller`, answered as
/// etcd's response.
pub async fn txn(db: &Concord, caller: &Caller, req: pb::TxnRequest) -> Result<pb::TxnResponse, Status> {
    let (txn, post) = convert::txn_request(req)?;
    let resp = db.txn().request(txn).as_caller(caller.clone()).await.map_err(to_status)?;
    let header = header(db, resp.revision);
    Ok(convert::txn_response(resp, &post, header))
}

/// `create_revision(key) == revision`.
pub fn created_at(key: &Bytes, revision: i64) -> pb::Compare {
    pb::Compare {
        result: pb::compare::CompareResult::Equal as i32,
        target: pb::compare::CompareTarget::Create as i32,
        key: key.clone(),
        target_union: Some(pb::compare::TargetUnion::CreateRevision(revision)),
        ..Default::default()
    }
}

/// A transaction put of `key` (`lease` 0: none; `ignore_lease`: keep the key's).
pub fn put_op(key: &Bytes, value: Bytes, lease: i64, ignore_lease: bool) -> pb::RequestOp {
    let put = pb::PutRequest { key: key.clone(), value, lease, ignore_lease, ..Default::default() };
    pb::RequestOp { request: Some(pb::request_op::Request::RequestPut(put)) }
}

/// A transaction get of `key`.
pub fn get_op(key: &Bytes) -> pb::RequestOp {
    let get = pb::RangeRequest { key: key.clone(), ..Default::default() };
    pb::RequestOp { request: Some(pb::request_op::Request::RequestRange(get)) }
}

/// A transaction delete of `key`.
pub fn delete_op(key: &Bytes) -> pb::RequestOp {
    let delete = pb::DeleteRangeRequest { key: key.clone(), ..Default::default() };
    pb::RequestOp { request: Some(pb::request_op::Request::RequestDeleteRange(delete)) }
}

/// The first key of the transaction's `index`th response (a range).
pub fn first_kv(resp: &pb::TxnResponse, index: usize) -> Option<&crate::pb::mvccpb::KeyValue> {
    match resp.responses.get(index)?.response.as_ref()? {
        pb::response_op::Response::ResponseRange(range) => range.kvs.first(),
        _ => None,
    }
}

/// A session's place in the queue under a name: its key, put with `value`
/// and `lease` unless the session is already there.
pub struct Joined {
    /// The header of the transaction that joined (or found the key).
    pub header: pb::ResponseHeader,
    /// The key's create revision: its place in the queue.
    pub revision: i64,
    /// The key as it was when the session was already there.
    pub existing: Option<crate::pb::mvccpb::KeyValue>,
}

/// Puts `key` under `lease` unless it exists, as etcd's recipes join a queue
/// (lock waiters, election candidates); where the caller stands afterwards.
pub async fn join(db: &Concord, caller: &Caller, key: &Bytes, value: Bytes, lease: i64) -> Result<Joined, Status> {
    let resp = txn(
        db,
        caller,
        pb::TxnRequest {
            compare: vec![created_at(key, 0)],
            success: vec![put_op(key, value, lease, false)],
            failure: vec![get_op(key)],
        },
    )
    .await?;
    let header = resp.header.unwrap_or_default();
    let existing = if resp.succeeded { None } else { first_kv(&resp, 0).cloned() };
    let revision = existing.as_ref().map_or(header.revision, |kv| kv.create_revision);
    Ok(Joined { header, revision, existing })
}

/// Every key under `prefix` (linearizable), with the revision read at.
pub async fn keys_under(db: &Concord, caller: &Caller, prefix: &Bytes) -> Result<(Vec<KeyValue>, i64), Status> {
    let resp = db
        .kv()
        .range(KeyRange::prefix(prefix.clone()))
        .consistency(Consistency::Linearizable)
        .as_caller(caller.clone())
        .await
        .map_err(to_status)?;
    Ok((resp.kvs, resp.revision))
}

/// The oldest key under `prefix` (the lock holder, the leader).
pub async fn first_created(db: &Concord, caller: &Caller, prefix: &Bytes) -> Result<(Option<KeyValue>, i64), Status> {
    let (kvs, revision) = keys_under(db, caller, prefix).await?;
    Ok((kvs.into_iter().min_by_key(|kv| kv.create_revision), revision))
}

/// Waits until no key under `prefix` was created at or before
/// `max_create_revision`; the header of the read that saw none.
pub async fn wait_deletes(
    db: &Concord,
    caller: &Caller,
    prefix: &Bytes,
    max_create_revision: i64,
    stopping: &watch::Receiver<bool>,
) -> Result<pb::ResponseHeader, Status> {
    loop {
        let (kvs, revision) = keys_under(db, caller, prefix).await?;
        let newest_older =
            kvs.into_iter().filter(|kv| kv.create_revision <= max_create_revision).max_by_key(|kv| kv.create_revision);
        match newest_older {
            None => return Ok(header(db, revision)),
            Some(kv) => wait_delete(db, &kv.key, revision, stopping).await?,
        }
    }
}

/// Waits for `key`, which existed at `revision`, to be deleted (or for
/// its history to be compacted away: the caller reads again).
async fn wait_delete(db: &Concord, key: &Bytes, revision: i64, stopping: &watch::Receiver<bool>) -> Result<(), Status> {
    let mut watcher = db.watch(KeyRange::key(key.clone())).from_revision(revision + 1).await.map_err(to_status)?;
    loop {
        tokio::select! {
            message = watcher.next() => match message {
                Some(WatchMessage::Events { events, .. }) => {
                    if events.iter().any(|e| e.kind == EventKind::Delete) {
                        return Ok(());
                    }
                }
                Some(WatchMessage::Progress { .. }) => {}
                Some(WatchMessage::Canceled { .. }) => return Ok(()),
                None => return Err(shutting_down()),
            },
            () = stopped(stopping) => return Err(shutting_down()),
        }
    }
}

/// Resolves once the server is stopping.
pub async fn stopped(stopping: &watch::Receiver<bool>) {
    let mut stopping = stopping.clone();
    let _ = stopping.wait_for(|s| *s).await;
}

/// What a wait answers when the server stops under it.
pub fn shutting_down() -> Status {
    Status::unavailable("etcdserver: server stopped")
}

/// Deletes `key` when dropped unless disarmed: a waiter that gives up (the
/// client cancelled, the server stops) takes its key out of the queue, as
/// etcd's recipes do on a cancelled context.
pub struct Withdraw {
    db: Concord,
    caller: Caller,
    key: Bytes,
    /// Delete only if the key is still the one created at this revision.
    revision: i64,
    armed: bool,
}

impl Withdraw {
    /// Deletes `key` when dropped unless [`disarm`](Self::disarm)ed, if it
    /// is still the one created at `revision`.
    pub fn new(db: &Concord, caller: &Caller, key: Bytes, revision: i64) -> Self {
        Withdraw { db: db.clone(), caller: caller.clone(), key, revision, armed: true }
    }

    /// Keeps the key: the call it guarded succeeded.
    pub fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for Withdraw {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let (db, caller, key, revision) = (self.db.clone(), self.caller.clone(), self.key.clone(), self.revision);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let req = pb::TxnRequest {
                    compare: vec![created_at(&key, revision)],
                    success: vec![delete_op(&key)],
                    failure: vec![],
                };
                if let Err(e) = txn(&db, &caller, req).await {
                    tracing::debug!(error = %e, "could not withdraw a lock or election key");
                }
            });
        }
    }
}
