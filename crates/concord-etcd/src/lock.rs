//! etcd's Lock service (`v3lockpb.Lock`): a distributed mutex on a name,
//! held through a lease (`recipes` has the protocol).
//!
//! `Lock` puts the session's key `name/<lease hex>` if it is not there yet
//! and returns once it is the oldest key under `name/`: the key is the
//! caller's proof of ownership, valid while the lease lives. `Unlock`
//! deletes that key. A `Lock` whose caller gives up while waiting takes its
//! key out of the queue.

use concord::Concord;
use concord::auth::{Access, Caller};
use tokio::sync::watch;
use tonic::{Request, Response, Status};

use crate::authz;
use crate::header::header;
use crate::metrics::Metrics;
use crate::pb::v3lockpb::{LockRequest, LockResponse, UnlockRequest, UnlockResponse, lock_server::Lock};
use crate::recipes::{self, Withdraw};
use crate::status::to_status;

/// The gRPC service Lock: etcd's distributed lock recipe (lock, unlock) on the KV API.
pub struct LockService {
    db: Concord,
    metrics: Metrics,
    stopping: watch::Receiver<bool>,
}

impl LockService {
    /// The service for `db`, recording its calls in `metrics`.
    /// Its streams end when `stopping` turns true.
    pub fn new(db: Concord, metrics: Metrics, stopping: watch::Receiver<bool>) -> Self {
        LockService { db, metrics, stopping }
    }
}

#[tonic::async_trait]
impl Lock for LockService {
    async fn lock(&self, request: Request<LockRequest>) -> Result<Response<LockResponse>, Status> {
        self.metrics
            .track("Lock", true, async {
                let caller = Caller::established(authz::caller(&self.db, &request)?.user);
                let req = request.into_inner();
                let prefix = recipes::prefix(&req.name);
                let range = concord::KeyRange::prefix(prefix.clone());
                // Early refusals (each step is checked where it applies).
                authz::check(&self.db, &caller, &range, Access::Write)?;
                authz::check(&self.db, &caller, &range, Access::Read)?;
                let lease = recipes::session_lease(&self.db, &caller, req.lease).await?;
                let key = recipes::session_key(&prefix, lease);
                // Join the queue (or find this session already in it).
                let my_revision = recipes::join(&self.db, &caller, &key, Default::default(), lease).await?.revision;
                let withdraw = Withdraw::new(&self.db, &caller, key.clone(), my_revision);
                let header = recipes::wait_deletes(&self.db, &caller, &prefix, my_revision - 1, &self.stopping).await?;
                withdraw.disarm();
                Ok(Response::new(LockResponse { header: Some(header), key }))
            })
            .await
    }

    async fn unlock(&self, request: Request<UnlockRequest>) -> Result<Response<UnlockResponse>, Status> {
        self.metrics
            .track("Unlock", true, async {
                let caller = authz::caller(&self.db, &request)?;
                let req = request.into_inner();
                let resp = self.db.kv().delete(req.key).as_caller(caller).await.map_err(to_status)?;
                Ok(Response::new(UnlockResponse { header: Some(header(&self.db, resp.revision)) }))
            })
            .await
    }
}
