//! etcd's Lease service: grant, revoke, the keep-alive stream, time-to-live
//! and listing, with etcd's answers for unknown leases (keep-alive TTL 0,
//! time-to-live TTL -1).

use std::sync::Arc;

use concord::auth::Caller;
use concord::limits::{MAX_TTL_SECS, MIN_TTL_SECS};
use concord::{Concord, Error};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::header::{current, header};
use crate::metrics::Metrics;
use crate::pb::etcdserverpb::{self as pb, lease_server::Lease};
use crate::status::{LEASE_TTL_TOO_LARGE, to_status};

/// Renewals of one keep-alive stream in progress at once, at most. Clients
/// send every lease's keep-alives down one stream, so renewals run
/// concurrently (and share fsyncs) rather than one after another.
const KEEP_ALIVES_IN_FLIGHT: usize = 256;

/// The gRPC service Lease: grant, revoke, keep-alive streams, time-to-live and the list of leases.
pub struct LeaseService {
    db: Concord,
    metrics: Metrics,
    /// Becomes true when the server shuts down: keep-alive streams end.
    stopping: watch::Receiver<bool>,
}

impl LeaseService {
    /// The service for `db`, recording its calls in `metrics`.
    /// Its streams end when `stopping` turns true.
    pub fn new(db: Concord, metrics: Metrics, stopping: watch::Receiver<bool>) -> Self {
        LeaseService { db, metrics, stopping }
    }
}

type KeepAliveStream = tonic::codegen::BoxStream<pb::LeaseKeepAliveResponse>;

#[tonic::async_trait]
impl Lease for LeaseService {
    async fn lease_grant(
        &self,
        request: Request<pb::LeaseGrantRequest>,
    ) -> Result<Response<pb::LeaseGrantResponse>, Status> {
        self.metrics
            .track("LeaseGrant", true, async {
                let caller = crate::authz::caller(&self.db, &request)?;
                let req = request.into_inner();
                if req.ttl > MAX_TTL_SECS {
                    return Err(Status::out_of_range(LEASE_TTL_TOO_LARGE));
                }
                // As etcd, a TTL below the minimum is raised to it (but the
                // minimum is Concord's 1 s, not etcd's 2 s: see MIN_TTL_SECS).
                let mut grant = self.db.lease().grant(req.ttl.max(MIN_TTL_SECS)).as_caller(caller);
                if req.id != 0 {
                    grant = grant.id(req.id);
                }
                let granted = grant.await.map_err(to_status)?;
                Ok(Response::new(pb::LeaseGrantResponse {
                    header: Some(header(&self.db, granted.revision)),
                    id: granted.id,
                    ttl: granted.ttl,
                    error: String::new(),
                }))
            })
            .await
    }

    async fn lease_revoke(
        &self,
        request: Request<pb::LeaseRevokeRequest>,
    ) -> Result<Response<pb::LeaseRevokeResponse>, Status> {
        self.metrics
            .track("LeaseRevoke", true, async {
                // Revoking deletes every attached key: write on each, as
                // they are when the revoke applies.
                let caller = crate::authz::caller(&self.db, &request)?;
                let id = request.into_inner().id;
                let revoked = self.db.lease().revoke(id).as_caller(caller).await.map_err(to_status)?;
                Ok(Response::new(pb::LeaseRevokeResponse { header: Some(header(&self.db, revoked.revision)) }))
            })
            .await
    }

    async fn lease_keep_alive(
        &self,
        request: Request<Streaming<pb::LeaseKeepAliveRequest>>,
    ) -> Result<Response<KeepAliveStream>, Status> {
        // Each renewal checks the stream's credentials again (a token ended
        // meanwhile ends its rights) and is checked at apply.
        let credentials = crate::authz::Credentials::of(&request);
        credentials.caller(&self.db)?;
        let mut requests = request.into_inner();
        let (tx, rx) = mpsc::channel(KEEP_ALIVES_IN_FLIGHT);
        let db = self.db.clone();
        let metrics = self.metrics.clone();
        let mut stopping = self.stopping.clone();
        tokio::spawn(async move {
            let in_flight = Arc::new(Semaphore::new(KEEP_ALIVES_IN_FLIGHT));
            loop {
                let item = tokio::select! {
                    item = requests.next() => item,
                    () = crate::watch::stopped(&mut stopping) => break,
                };
                let Some(item) = item else { break };
                let req = match item {
                    Ok(req) => req,
                    Err(status) => {
                        tracing::debug!(%status, "keep-alive stream ended by the client");
                        break;
                    }
                };
                let Ok(permit) = in_flight.clone().acquire_owned().await else { break };
                let (db, tx, metrics, credentials) = (db.clone(), tx.clone(), metrics.clone(), credentials.clone());
                tokio::spawn(async move {
                    let resp = metrics.track("LeaseKeepAlive", true, keep_alive(&db, req.id, &credentials)).await;
                    let _ = tx.send(resp).await;
                    drop(permit);
                });
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx)) as KeepAliveStream))
    }

    async fn lease_time_to_live(
        &self,
        request: Request<pb::LeaseTimeToLiveRequest>,
    ) -> Result<Response<pb::LeaseTimeToLiveResponse>, Status> {
        self.metrics
            .track("LeaseTimeToLive", false, async {
                let caller = crate::authz::caller(&self.db, &request)?;
                let req = request.into_inner();
                let mut info = self.db.lease().info(req.id);
                if req.keys {
                    // Listing the keys needs read on each (CVE-2023-32082).
                    info = info.as_caller(caller);
                }
                match info.await {
                    Ok(info) => Ok(Response::new(pb::LeaseTimeToLiveResponse {
                        header: Some(current(&self.db)),
                        id: info.id,
                        // etcd truncates: a fresh 10 s lease reports 9.
                        ttl: info.remaining.as_secs() as i64,
                        granted_ttl: info.ttl,
                        keys: if req.keys { info.keys } else { Vec::new() },
                        concord_granted_at: info.granted_at,
                    })),
                    Err(Error::LeaseNotFound(_) | Error::InvalidLeaseId(_)) => {
                        Ok(Response::new(pb::LeaseTimeToLiveResponse {
                            header: Some(current(&self.db)),
                            id: req.id,
                            ttl: -1,
                            granted_ttl: 0,
                            keys: Vec::new(),
                            concord_granted_at: 0,
                        }))
                    }
                    Err(e) => Err(to_status(e)),
                }
            })
            .await
    }

    async fn lease_leases(
        &self,
        request: Request<pb::LeaseLeasesRequest>,
    ) -> Result<Response<pb::LeaseLeasesResponse>, Status> {
        self.metrics
            .track("LeaseLeases", false, async {
                crate::authz::caller(&self.db, &request)?;
                // Anonymous (per-key TTL) leases too: their ids appear on keys.
                let leases = self.db.lease().list().include_anonymous().await.map_err(to_status)?;
                Ok(Response::new(pb::LeaseLeasesResponse {
                    header: Some(current(&self.db)),
                    leases: leases.into_iter().map(|l| pb::LeaseStatus { id: l.id }).collect(),
                }))
            })
            .await
    }
}

/// One renewal; an unknown lease answers TTL 0 rather than an error, as etcd.
/// A renewal is idempotent, so one that meets an election (no leader yet,
/// or the leader changed under it) is retried until the request timeout
/// instead of ending the client's stream: keep-alive streams survive a
/// leader change.
async fn keep_alive(
    db: &Concord,
    id: i64,
    credentials: &crate::authz::Credentials,
) -> Result<pb::LeaseKeepAliveResponse, Status> {
    let user = credentials.caller(db)?.user;
    // The header is taken before renewing, as etcd does.
    let header = current(db);
    let deadline = tokio::time::Instant::now() + db.config().request_timeout;
    let renew = || db.lease().keep_alive(id).as_caller(Caller::established(user.clone()));
    let mut renewed = renew().await;
    while matches!(renewed, Err(Error::NotReady(_) | Error::LeaderChanged)) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        renewed = renew().await;
    }
    match renewed {
        Ok(kept) => Ok(pb::LeaseKeepAliveResponse { header: Some(header), id, ttl: kept.ttl }),
        Err(Error::LeaseNotFound(_) | Error::InvalidLeaseId(_)) => {
            Ok(pb::LeaseKeepAliveResponse { header: Some(header), id, ttl: 0 })
        }
        Err(e) => Err(to_status(e)),
    }
}
