//! etcd's Election service (`v3electionpb.Election`): leader election on a
//! name, with the leader's value readable and observable by everyone
//! (`recipes` has the protocol).
//!
//! - `Campaign` puts the session's key `name/<lease hex>` with the value
//!   (or, if the session already campaigns, proclaims the new value) and
//!   returns once it is the oldest key: the caller leads, and the returned
//!   `LeaderKey` (name, key, create revision, lease) proves it.
//! - `Proclaim` and `Resign` act only if the key is still the one created
//!   at the `LeaderKey`'s revision ("election: not leader" otherwise for
//!   `Proclaim`; `Resign` of a lost leadership does nothing).
//! - `Leader` reads the oldest key; `Observe` streams it and every value it
//!   takes, then the next leader's, in order.
//!
//! Every step runs as the caller (`recipes`): `Proclaim` and `Resign`
//! need read and write on the `LeaderKey`'s key itself, checked at apply
//! before its create revision is compared, so a caller cannot write, delete
//! or probe a key outside its permissions by naming it in a `LeaderKey`.
//!
//! Errors are etcd's: a plain error, so gRPC's UNKNOWN with etcd's text.

use bytes::Bytes;
use concord::auth::{Access, Caller};
use concord::{Concord, EventKind, KeyRange, WatchMessage};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::authz;
use crate::convert::kv_to_pb;
use crate::header::header;
use crate::metrics::Metrics;
use crate::pb::etcdserverpb as pb;
use crate::pb::v3electionpb::election_server::Election;
use crate::pb::v3electionpb::{
    CampaignRequest, CampaignResponse, LeaderKey, LeaderRequest, LeaderResponse, ProclaimRequest, ProclaimResponse,
    ResignRequest, ResignResponse,
};
use crate::recipes::{self, Withdraw};
use crate::status::to_status;

fn not_leader() -> Status {
    Status::unknown("election: not leader")
}

fn no_leader() -> Status {
    Status::unknown("election: no leader")
}

fn missing_leader_key() -> Status {
    Status::unknown("\"leader\" field must be provided")
}

/// The gRPC service Election: etcd's leader election recipe (campaign, proclaim, leader, observe, resign) on the KV API.
pub struct ElectionService {
    db: Concord,
    metrics: Metrics,
    stopping: watch::Receiver<bool>,
}

impl ElectionService {
    /// The service for `db`, recording its calls in `metrics`.
    /// Its streams end when `stopping` turns true.
    pub fn new(db: Concord, metrics: Metrics, stopping: watch::Receiver<bool>) -> Self {
        ElectionService { db, metrics, stopping }
    }

    /// Puts `value` on the leader key if it is still the one created at `rev`.
    async fn proclaim_value(
        &self,
        caller: &Caller,
        key: &Bytes,
        rev: i64,
        value: Bytes,
    ) -> Result<pb::TxnResponse, Status> {
        let resp = recipes::txn(
            &self.db,
            caller,
            pb::TxnRequest {
                compare: vec![recipes::created_at(key, rev)],
                success: vec![recipes::put_op(key, value, 0, true)],
                failure: vec![],
            },
        )
        .await?;
        if !resp.succeeded {
            return Err(not_leader());
        }
        Ok(resp)
    }

    /// An early refusal on the election's name (every step is checked
    /// where it applies, on the keys it touches).
    fn check(&self, caller: &Caller, name: &[u8]) -> Result<(), Status> {
        let range = KeyRange::prefix(recipes::prefix(name));
        authz::check(&self.db, caller, &range, Access::Write)?;
        authz::check(&self.db, caller, &range, Access::Read)
    }
}

type ObserveStream = tonic::codegen::BoxStream<LeaderResponse>;

#[tonic::async_trait]
impl Election for ElectionService {
    async fn campaign(&self, request: Request<CampaignRequest>) -> Result<Response<CampaignResponse>, Status> {
        self.metrics
            .track("Campaign", true, async {
                let caller = Caller::established(authz::caller(&self.db, &request)?.user);
                let req = request.into_inner();
                self.check(&caller, &req.name)?;
                let prefix = recipes::prefix(&req.name);
                let lease = recipes::session_lease(&self.db, &caller, req.lease).await?;
                let key = recipes::session_key(&prefix, lease);
                let joined = recipes::join(&self.db, &caller, &key, req.value.clone(), lease).await?;
                let rev = joined.revision;
                let withdraw = Withdraw::new(&self.db, &caller, key.clone(), rev);
                // A session already campaigning keeps its place and takes the new value.
                if joined.existing.is_some_and(|kv| kv.value != req.value) {
                    self.proclaim_value(&caller, &key, rev, req.value.clone()).await?;
                }
                recipes::wait_deletes(&self.db, &caller, &prefix, rev - 1, &self.stopping).await?;
                withdraw.disarm();
                let leader = LeaderKey { name: req.name, key, rev, lease };
                Ok(Response::new(CampaignResponse { header: Some(joined.header), leader: Some(leader) }))
            })
            .await
    }

    async fn proclaim(&self, request: Request<ProclaimRequest>) -> Result<Response<ProclaimResponse>, Status> {
        self.metrics
            .track("Proclaim", true, async {
                let caller = authz::caller(&self.db, &request)?;
                let req = request.into_inner();
                let leader = req.leader.ok_or_else(missing_leader_key)?;
                self.check(&caller, &leader.name)?;
                let resp = self.proclaim_value(&caller, &leader.key, leader.rev, req.value).await?;
                Ok(Response::new(ProclaimResponse { header: resp.header }))
            })
            .await
    }

    async fn leader(&self, request: Request<LeaderRequest>) -> Result<Response<LeaderResponse>, Status> {
        self.metrics
            .track("Leader", false, async {
                let caller = authz::caller(&self.db, &request)?;
                let req = request.into_inner();
                let (first, revision) = recipes::first_created(&self.db, &caller, &recipes::prefix(&req.name)).await?;
                let kv = first.ok_or_else(no_leader)?;
                Ok(Response::new(LeaderResponse { header: Some(header(&self.db, revision)), kv: Some(kv_to_pb(kv)) }))
            })
            .await
    }

    async fn observe(&self, request: Request<LeaderRequest>) -> Result<Response<ObserveStream>, Status> {
        let caller = Caller::established(authz::caller(&self.db, &request)?.user);
        let req = request.into_inner();
        let prefix = recipes::prefix(&req.name);
        // Refused before the stream starts, after the read index.
        self.db.authorize_read(&caller, &[KeyRange::prefix(prefix.clone())]).await.map_err(to_status)?;
        let (tx, rx) = mpsc::channel(16);
        let (db, stopping) = (self.db.clone(), self.stopping.clone());
        tokio::spawn(async move {
            tokio::select! {
                ended = observe(&db, &caller, &prefix, &tx) => if let Err(e) = ended { let _ = tx.send(Err(e)).await; },
                () = recipes::stopped(&stopping) => {}
                () = tx.closed() => {}
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn resign(&self, request: Request<ResignRequest>) -> Result<Response<ResignResponse>, Status> {
        self.metrics
            .track("Resign", true, async {
                let caller = authz::caller(&self.db, &request)?;
                let req = request.into_inner();
                let leader = req.leader.ok_or_else(missing_leader_key)?;
                self.check(&caller, &leader.name)?;
                let resp = recipes::txn(
                    &self.db,
                    &caller,
                    pb::TxnRequest {
                        compare: vec![recipes::created_at(&leader.key, leader.rev)],
                        success: vec![recipes::delete_op(&leader.key)],
                        failure: vec![],
                    },
                )
                .await?;
                Ok(Response::new(ResignResponse { header: resp.header }))
            })
            .await
    }
}

/// Sends each leader under `prefix` and every value it takes, until the
/// receiver goes away.
async fn observe(
    db: &Concord,
    caller: &Caller,
    prefix: &Bytes,
    tx: &mpsc::Sender<Result<LeaderResponse, Status>>,
) -> Result<(), Status> {
    loop {
        let (first, revision) = recipes::first_created(db, caller, prefix).await?;
        let (leader, revision) = match first {
            Some(kv) => (kv, revision),
            None => match first_put(db, prefix, revision).await? {
                Some(found) => found,
                None => continue, // history compacted under the watch: read again
            },
        };
        let send = |kv: concord::KeyValue, revision| LeaderResponse {
            header: Some(header(db, revision)),
            kv: Some(kv_to_pb(kv)),
        };
        let created = leader.create_revision;
        if tx.send(Ok(send(leader.clone(), revision))).await.is_err() {
            return Ok(());
        }
        // Follow the leader's key until it goes.
        let mut watcher =
            db.watch(KeyRange::key(leader.key.clone())).from_revision(revision + 1).await.map_err(to_status)?;
        'leader: loop {
            match watcher.next().await {
                Some(WatchMessage::Events { events, .. }) => {
                    for event in events.iter() {
                        if event.kind == EventKind::Delete || event.kv.create_revision != created {
                            break 'leader;
                        }
                        if tx.send(Ok(send(event.kv.clone(), event.kv.mod_revision))).await.is_err() {
                            return Ok(());
                        }
                    }
                }
                Some(WatchMessage::Progress { .. }) => {}
                Some(WatchMessage::Canceled { .. }) => break 'leader,
                None => return Err(recipes::shutting_down()),
            }
        }
    }
}

/// With no key under `prefix` at `revision`: the first key put after it,
/// and the revision it was put at (`None` if the watch lost its history).
async fn first_put(db: &Concord, prefix: &Bytes, revision: i64) -> Result<Option<(concord::KeyValue, i64)>, Status> {
    let mut watcher =
        db.watch(KeyRange::prefix(prefix.clone())).from_revision(revision + 1).await.map_err(to_status)?;
    loop {
        match watcher.next().await {
            Some(WatchMessage::Events { events, .. }) => {
                if let Some(put) = events.iter().find(|e| e.kind == EventKind::Put) {
                    return Ok(Some((put.kv.clone(), put.kv.mod_revision)));
                }
            }
            Some(WatchMessage::Progress { .. }) => {}
            Some(WatchMessage::Canceled { .. }) => return Ok(None),
            None => return Err(recipes::shutting_down()),
        }
    }
}
