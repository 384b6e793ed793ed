//! etcd's Maintenance service (Status, Alarm, Hash, HashKV, Snapshot, Defragment,
//! MoveLeader). Downgrade (etcd 3.5's) answers UNIMPLEMENTED.

use concord::{Alarm, AlarmKind, Concord};
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status};

use crate::header::current;
use crate::metrics::Metrics;
use crate::pb::etcdserverpb::{self as pb, maintenance_server::Maintenance};

/// The etcd API version this server speaks (what `etcdctl endpoint status`
/// shows as VERSION).
pub const ETCD_API_VERSION: &str = "3.4.0";

type SnapshotStream = tonic::codegen::BoxStream<pb::SnapshotResponse>;

/// The gRPC service Maintenance: status, alarms, hashes, snapshots, defragmentation and leader transfer.
pub struct MaintenanceService {
    db: Concord,
    metrics: Metrics,
}

impl MaintenanceService {
    /// The service for `db`, recording its calls in `metrics`.
    pub fn new(db: Concord, metrics: Metrics) -> Self {
        MaintenanceService { db, metrics }
    }
}

#[tonic::async_trait]
impl Maintenance for MaintenanceService {
    /// etcd's Alarm: GET lists the raised alarms (of one kind, or all for
    /// NONE); ACTIVATE raises one for a member and answers it; DEACTIVATE
    /// disarms one and answers it if it was raised (etcdctl's `alarm
    /// disarm` lists, then disarms each).
    async fn alarm(&self, request: Request<pb::AlarmRequest>) -> Result<Response<pb::AlarmResponse>, Status> {
        self.metrics
            .track("Alarm", false, async {
                // Beyond etcd 3.4, which takes them from anyone: raising or
                // disarming an alarm turns every write off or back on, so
                // under auth it needs the root role. Listing stays open.
                let get = pb::alarm_request::AlarmAction::Get as i32;
                let mut caller = None;
                if request.get_ref().action != get {
                    caller = Some(crate::authz::check_maintenance_admin(&self.db, &request)?);
                }
                let request = request.into_inner();
                let kind = alarm_kind(request.alarm);
                let alarms = match pb::alarm_request::AlarmAction::try_from(request.action) {
                    Ok(pb::alarm_request::AlarmAction::Get) => {
                        self.db.alarms().into_iter().filter(|a| kind.is_none_or(|k| a.kind == k)).collect()
                    }
                    Ok(pb::alarm_request::AlarmAction::Activate) => match kind {
                        Some(kind) => vec![
                            self.db
                                .raise_alarm_as(Alarm { member: request.member_id, kind }, caller)
                                .await
                                .map_err(crate::status::to_status)?,
                        ],
                        None => Vec::new(),
                    },
                    Ok(pb::alarm_request::AlarmAction::Deactivate) => match kind {
                        Some(kind) => self
                            .db
                            .disarm_alarm_as(Alarm { member: request.member_id, kind }, caller)
                            .await
                            .map_err(crate::status::to_status)?
                            .into_iter()
                            .collect(),
                        None => Vec::new(),
                    },
                    Err(_) => return Err(Status::invalid_argument("etcdserver: unknown alarm action")),
                };
                let alarms = alarms.into_iter().map(alarm_to_pb).collect();
                Ok(Response::new(pb::AlarmResponse { header: Some(current(&self.db)), alarms }))
            })
            .await
    }

    /// A point-in-time backup (`concord::backup`), streamed as it is
    /// encoded while writes go on; its bytes end with their SHA-256, as
    /// etcd's do. `etcdctl snapshot save` writes them to a file;
    /// `concord snapshot status|restore` read it.
    async fn snapshot(&self, request: Request<pb::SnapshotRequest>) -> Result<Response<SnapshotStream>, Status> {
        self.metrics
            .track("Snapshot", false, async {
                crate::authz::check_maintenance_admin(&self.db, &request)?;
                let (size, pieces) = self.db.backup().await.map_err(crate::status::to_status)?;
                let header = current(&self.db);
                tracing::info!(bytes = size, revision = header.revision, "sending a backup");
                let mut sent = 0u64;
                let responses = tokio_stream::wrappers::ReceiverStream::new(pieces).map(move |piece| {
                    let blob = piece.map_err(crate::status::to_status)?;
                    sent += blob.len() as u64;
                    Ok(pb::SnapshotResponse {
                        header: Some(header),
                        remaining_bytes: size.saturating_sub(sent),
                        blob,
                        version: ETCD_API_VERSION.into(),
                    })
                });
                Ok(Response::new(Box::pin(responses) as SnapshotStream))
            })
            .await
    }

    /// Defragments this member's data files (`Concord::defragment`: a
    /// snapshot, a log purge, an in-place compaction of both files).
    async fn defragment(
        &self,
        request: Request<pb::DefragmentRequest>,
    ) -> Result<Response<pb::DefragmentResponse>, Status> {
        self.metrics
            .track("Defragment", false, async {
                crate::authz::check_maintenance_admin(&self.db, &request)?;
                self.db.defragment().await.map_err(crate::status::to_status)?;
                // etcd answers a defragment with no header.
                Ok(Response::new(pb::DefragmentResponse { header: None }))
            })
            .await
    }

    async fn hash(&self, request: Request<pb::HashRequest>) -> Result<Response<pb::HashResponse>, Status> {
        self.metrics
            .track("Hash", false, async {
                crate::authz::check_maintenance_admin(&self.db, &request)?;
                let (hash, _) = self.db.hash().map_err(crate::status::to_status)?;
                Ok(Response::new(pb::HashResponse { header: Some(current(&self.db)), hash }))
            })
            .await
    }

    async fn hash_kv(&self, request: Request<pb::HashKvRequest>) -> Result<Response<pb::HashKvResponse>, Status> {
        self.metrics
            .track("HashKV", false, async {
                crate::authz::check_maintenance_admin(&self.db, &request)?;
                let (hash, compact_revision, hash_revision) =
                    self.db.hash_kv(request.into_inner().revision).map_err(crate::status::to_status)?;
                let header = Some(current(&self.db));
                Ok(Response::new(pb::HashKvResponse { header, hash, compact_revision, hash_revision }))
            })
            .await
    }

    /// etcd's MoveLeader: served by the leader only ("not leader"
    /// elsewhere, which etcdctl's `move-leader` relies on to find it); the
    /// target must be a voter ("bad leader transferee"). Answers once the
    /// target leads, without a header, as etcd 3.4 does.
    async fn move_leader(
        &self,
        request: Request<pb::MoveLeaderRequest>,
    ) -> Result<Response<pb::MoveLeaderResponse>, Status> {
        self.metrics
            .track("MoveLeader", false, async {
                crate::authz::check_maintenance_admin(&self.db, &request)?;
                let target = request.into_inner().target_id;
                let timeout = self.db.config().request_timeout;
                self.db.move_leader(target, timeout).await.map_err(crate::status::to_status)?;
                Ok(Response::new(pb::MoveLeaderResponse { header: None }))
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
                    // As etcd 3.4 words them (`etcdctl endpoint status` shows them).
                    errors: self
                        .db
                        .alarms()
                        .iter()
                        .map(|a| format!("memberID:{} alarm:{} ", a.member, a.kind.as_str()))
                        .collect(),
                    db_size_in_use: s.db_size_in_use as i64,
                    is_learner: s.role == "learner",
                    ..Default::default()
                }))
            })
            .await
    }
}

/// `None` for etcd's NONE (every kind) and for unknown values.
fn alarm_kind(value: i32) -> Option<AlarmKind> {
    match pb::AlarmType::try_from(value) {
        Ok(pb::AlarmType::Nospace) => Some(AlarmKind::NoSpace),
        Ok(pb::AlarmType::Corrupt) => Some(AlarmKind::Corrupt),
        _ => None,
    }
}

fn alarm_to_pb(alarm: Alarm) -> pb::AlarmMember {
    let kind = match alarm.kind {
        AlarmKind::NoSpace => pb::AlarmType::Nospace,
        AlarmKind::Corrupt => pb::AlarmType::Corrupt,
    };
    pb::AlarmMember { member_id: alarm.member, alarm: kind as i32 }
}
