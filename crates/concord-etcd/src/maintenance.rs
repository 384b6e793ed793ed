//! etcd's Maintenance service (Status, Alarm, HashKV). Other methods answer
//! UNIMPLEMENTED.

use concord::Concord;
use tonic::{Request, Response, Status};

use crate::header::current;
use crate::metrics::Metrics;
use crate::pb::etcdserverpb::{self as pb, maintenance_server::Maintenance};

/// The etcd API version this server speaks (what `etcdctl endpoint status`
/// shows as VERSION).
pub const ETCD_API_VERSION: &str = "3.4.0";

pub struct MaintenanceService {
    db: Concord,
    metrics: Metrics,
}

impl MaintenanceService {
    pub fn new(db: Concord, metrics: Metrics) -> Self {
        MaintenanceService { db, metrics }
    }
}

#[tonic::async_trait]
impl Maintenance for MaintenanceService {
    async fn alarm(&self, _request: Request<pb::AlarmRequest>) -> Result<Response<pb::AlarmResponse>, Status> {
        // No alarms are ever raised (no space quota, no corruption check yet).
        self.metrics
            .track("Alarm", false, async {
                Ok(Response::new(pb::AlarmResponse { header: Some(current(&self.db)), alarms: Vec::new() }))
            })
            .await
    }

    async fn hash_kv(&self, request: Request<pb::HashKvRequest>) -> Result<Response<pb::HashKvResponse>, Status> {
        self.metrics
            .track("HashKV", false, async {
                let (hash, compact_revision, hash_revision) =
                    self.db.hash_kv(request.into_inner().revision).map_err(crate::status::to_status)?;
                let header = Some(current(&self.db));
                Ok(Response::new(pb::HashKvResponse { header, hash, compact_revision, hash_revision }))
            })
            .await
    }

    async fn status(&self, _request: Request<pb::StatusRequest>) -> Result<Response<pb::StatusResponse>, Status> {
        self.metrics
            .track("Status", false, async {
                let s = self.db.status();
                Ok(Response::new(pb::StatusResponse {
                    header: Some(current(&self.db)),
                    version: ETCD_API_VERSION.into(),
                    db_size: s.db_size as i64,
                    leader: s.leader.unwrap_or(0),
                    raft_index: s.raft_index,
                    raft_term: s.raft_term,
                    raft_applied_index: s.raft_applied_index,
                    errors: Vec::new(),
                    db_size_in_use: s.db_size as i64,
                    is_learner: false,
                    ..Default::default()
                }))
            })
            .await
    }
}
