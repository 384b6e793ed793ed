//! etcd's KV service: Range, Put, DeleteRange, Txn, Compact.

use concord::{Concord, Consistency};
use tonic::{Request, Response, Status};

use crate::header::header;
use crate::metrics::Metrics;
use crate::pb::etcdserverpb::{self as pb, kv_server::Kv};
use crate::status::to_status;
use crate::{authz, convert};

/// The gRPC service KV: range, put, delete range, transactions and compaction.
pub struct KvService {
    db: Concord,
    metrics: Metrics,
}

impl KvService {
    /// The service for `db`, recording its calls in `metrics`.
    pub fn new(db: Concord, metrics: Metrics) -> Self {
        KvService { db, metrics }
    }
}

#[tonic::async_trait]
impl Kv for KvService {
    async fn range(&self, request: Request<pb::RangeRequest>) -> Result<Response<pb::RangeResponse>, Status> {
        self.metrics
            .track("Range", false, async {
                let caller = authz::caller(&self.db, &request)?;
                let req = request.into_inner();
                let (engine, post) = convert::range_request(&req)?;
                let consistency = if req.serializable { Consistency::Serializable } else { Consistency::Linearizable };
                let range = self.db.kv().range_request(engine).consistency(consistency).as_caller(caller);
                let mut resp = range.await.map_err(to_status)?;
                post.apply(&mut resp);
                let revision = resp.revision;
                Ok(Response::new(convert::range_response(resp, header(&self.db, revision))))
            })
            .await
    }

    async fn put(&self, request: Request<pb::PutRequest>) -> Result<Response<pb::PutResponse>, Status> {
        self.metrics
            .track("Put", true, async {
                let caller = authz::caller(&self.db, &request)?;
                let req = convert::put_request(request.into_inner())?;
                let resp = self.db.kv().put_request(req).as_caller(caller).await.map_err(to_status)?;
                let revision = resp.revision;
                Ok(Response::new(convert::put_response(resp, header(&self.db, revision))))
            })
            .await
    }

    async fn delete_range(
        &self,
        request: Request<pb::DeleteRangeRequest>,
    ) -> Result<Response<pb::DeleteRangeResponse>, Status> {
        self.metrics
            .track("DeleteRange", true, async {
                let caller = authz::caller(&self.db, &request)?;
                let req = convert::delete_request(request.into_inner())?;
                let resp = self.db.kv().delete_request(req).as_caller(caller).await.map_err(to_status)?;
                let revision = resp.revision;
                Ok(Response::new(convert::delete_response(resp, header(&self.db, revision))))
            })
            .await
    }

    async fn txn(&self, request: Request<pb::TxnRequest>) -> Result<Response<pb::TxnResponse>, Status> {
        self.metrics
            .track("Txn", true, async {
                let caller = authz::caller(&self.db, &request)?;
                let (txn, post) = convert::txn_request(request.into_inner())?;
                let resp = self.db.txn().request(txn).as_caller(caller).await.map_err(to_status)?;
                let header = header(&self.db, resp.revision);
                Ok(Response::new(convert::txn_response(resp, &post, header)))
            })
            .await
    }

    async fn compact(
        &self,
        request: Request<pb::CompactionRequest>,
    ) -> Result<Response<pb::CompactionResponse>, Status> {
        self.metrics
            .track("Compact", true, async {
                let caller = authz::caller(&self.db, &request)?;
                let req = request.into_inner();
                let revision = self.db.kv().compact_as(req.revision, Some(caller)).await.map_err(to_status)?;
                Ok(Response::new(pb::CompactionResponse { header: Some(header(&self.db, revision)) }))
            })
            .await
    }
}
