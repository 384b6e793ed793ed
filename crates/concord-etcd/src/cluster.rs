//! etcd's Cluster service: MemberList, MemberAdd, MemberRemove,
//! MemberUpdate, MemberPromote — each the embedded API's `db.cluster()`
//! call, refused with etcd's codes and texts (`status.rs`).
//!
//! etcd's cluster responses carry no store revision in their header, and
//! list every member after the change (etcdctl prints
//! `ETCD_INITIAL_CLUSTER` for a new member from that list).

use concord::Concord;
use concord::cluster::{MemberInfo, MembershipChanged};
use tonic::{Request, Response, Status};

use crate::metrics::Metrics;
use crate::pb::etcdserverpb::{self as pb, cluster_server::Cluster};
use crate::status::to_status;

/// How this member is reached, for MemberList.
#[derive(Debug, Clone, Default)]
pub struct MemberUrls {
    /// The URLs clients reach this member at (etcd's `--advertise-client-urls`).
    pub client_urls: Vec<String>,
    /// The URLs other members reach this member at (etcd's `--initial-advertise-peer-urls`).
    pub peer_urls: Vec<String>,
}

/// The gRPC service Cluster: member list, add, remove, update and promote.
pub struct ClusterService {
    db: Concord,
    urls: MemberUrls,
    metrics: Metrics,
}

impl ClusterService {
    /// The service for `db`, recording its calls in `metrics`.
    pub fn new(db: Concord, urls: MemberUrls, metrics: Metrics) -> Self {
        ClusterService { db, urls, metrics }
    }

    fn member(&self, m: MemberInfo) -> pb::Member {
        // This member's own URLs are known before it has published them
        // through the log.
        let client_urls = if m.id == self.db.member_id() && m.client_urls.is_empty() {
            self.urls.client_urls.clone()
        } else {
            m.client_urls
        };
        pb::Member {
            id: m.id,
            name: m.name,
            peer_ur_ls: m.peer_urls,
            client_ur_ls: client_urls,
            is_learner: m.is_learner,
        }
    }

    fn members(&self, members: Vec<MemberInfo>) -> Vec<pb::Member> {
        members.into_iter().map(|m| self.member(m)).collect()
    }

    /// Membership changes need the root role under auth, as etcd's
    /// `checkMembershipOperationPermission` (MemberList stays open).
    fn check_admin<T>(&self, request: &Request<T>) -> Result<(), Status> {
        crate::authz::check_admin(&self.db, &crate::authz::caller(&self.db, request)?)
    }

    fn header(&self) -> Option<pb::ResponseHeader> {
        Some(crate::header::header(&self.db, 0))
    }
}

fn changed(result: concord::Result<MembershipChanged>) -> Result<MembershipChanged, Status> {
    result.map_err(to_status)
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_list(
        &self,
        _request: Request<pb::MemberListRequest>,
    ) -> Result<Response<pb::MemberListResponse>, Status> {
        self.metrics
            .track("MemberList", false, async {
                let members = self.members(self.db.members());
                Ok(Response::new(pb::MemberListResponse { header: self.header(), members }))
            })
            .await
    }

    async fn member_add(
        &self,
        request: Request<pb::MemberAddRequest>,
    ) -> Result<Response<pb::MemberAddResponse>, Status> {
        self.metrics
            .track("MemberAdd", true, async {
                self.check_admin(&request)?;
                let request = request.into_inner();
                let cluster = self.db.cluster();
                let added = if request.is_learner {
                    cluster.add_learner(request.peer_ur_ls).await
                } else {
                    cluster.add_voter(request.peer_ur_ls).await
                };
                let added = changed(added)?;
                let mut member = self.member(added.member);
                // Added as a voter: it votes once caught up (etcd lists it a
                // voter at once).
                member.is_learner = request.is_learner;
                Ok(Response::new(pb::MemberAddResponse {
                    header: self.header(),
                    member: Some(member),
                    members: self.members(added.members),
                }))
            })
            .await
    }

    async fn member_remove(
        &self,
        request: Request<pb::MemberRemoveRequest>,
    ) -> Result<Response<pb::MemberRemoveResponse>, Status> {
        self.metrics
            .track("MemberRemove", true, async {
                self.check_admin(&request)?;
                let removed = changed(self.db.cluster().remove(request.into_inner().id).await)?;
                Ok(Response::new(pb::MemberRemoveResponse {
                    header: self.header(),
                    members: self.members(removed.members),
                }))
            })
            .await
    }

    async fn member_update(
        &self,
        request: Request<pb::MemberUpdateRequest>,
    ) -> Result<Response<pb::MemberUpdateResponse>, Status> {
        self.metrics
            .track("MemberUpdate", true, async {
                self.check_admin(&request)?;
                let request = request.into_inner();
                let updated = changed(self.db.cluster().update(request.id, request.peer_ur_ls).await)?;
                Ok(Response::new(pb::MemberUpdateResponse {
                    header: self.header(),
                    members: self.members(updated.members),
                }))
            })
            .await
    }

    async fn member_promote(
        &self,
        request: Request<pb::MemberPromoteRequest>,
    ) -> Result<Response<pb::MemberPromoteResponse>, Status> {
        self.metrics
            .track("MemberPromote", true, async {
                self.check_admin(&request)?;
                let promoted = changed(self.db.cluster().promote(request.into_inner().id).await)?;
                Ok(Response::new(pb::MemberPromoteResponse {
                    header: self.header(),
                    members: self.members(promoted.members),
                }))
            })
            .await
    }
}
