//! Translation between etcd's protobuf messages and Concord's types. No
//! behaviour lives here beyond what the wire format implies.

use bytes::Bytes;
use concord::command::{DeleteRequest, LeaseChoice, PutRequest, RangeRequest, TxnRequest};
use concord::{
    Compare, CompareOp, CompareTarget, DeleteResponse, KeyRange, KeyValue, PutResponse, RangeResponse, TxnOp,
    TxnOpResponse, TxnResponse,
};
use tonic::Status;

use crate::pb::etcdserverpb::{self as pb, compare, request_op, response_op};
use crate::pb::mvccpb;
use crate::status::{EMPTY_KEY, LEASE_PROVIDED, VALUE_PROVIDED, invalid_argument};

/// A key-value as etcd's `mvccpb.KeyValue`.
pub fn kv_to_pb(kv: KeyValue) -> mvccpb::KeyValue {
    mvccpb::KeyValue {
        key: kv.key,
        create_revision: kv.create_revision,
        mod_revision: kv.mod_revision,
        version: kv.version,
        value: kv.value,
        lease: kv.lease.unwrap_or(0),
    }
}

/// etcd's key / range_end pair; an empty key is refused as etcd does.
pub fn key_range(key: Bytes, range_end: Bytes) -> Result<KeyRange, Status> {
    if key.is_empty() {
        return Err(invalid_argument(EMPTY_KEY));
    }
    Ok(KeyRange::from_etcd(key, range_end))
}

/// What the engine's range cannot do itself: sorting and revision filters,
/// applied after the read (etcd applies them before the limit, too).
#[derive(Debug, Clone, Copy, Default)]
pub struct RangePostProcess {
    sort_order: i32,
    sort_target: i32,
    limit: u64,
    min_mod: i64,
    max_mod: i64,
    min_create: i64,
    max_create: i64,
}

impl RangePostProcess {
    fn needed(&self) -> bool {
        let sorts = !(self.sort_order == pb::range_request::SortOrder::None as i32
            || (self.sort_order == pb::range_request::SortOrder::Ascend as i32
                && self.sort_target == pb::range_request::SortTarget::Key as i32));
        sorts || self.min_mod > 0 || self.max_mod > 0 || self.min_create > 0 || self.max_create > 0
    }

    /// Filters, sorts and limits `resp` in place.
    pub fn apply(&self, resp: &mut RangeResponse) {
        if !self.needed() {
            return;
        }
        let within = |v: i64, min: i64, max: i64| (min <= 0 || v >= min) && (max <= 0 || v <= max);
        resp.kvs.retain(|kv| {
            within(kv.mod_revision, self.min_mod, self.max_mod)
                && within(kv.create_revision, self.min_create, self.max_create)
        });
        use pb::range_request::{SortOrder, SortTarget};
        let target = SortTarget::try_from(self.sort_target).unwrap_or(SortTarget::Key);
        let mut order = SortOrder::try_from(self.sort_order).unwrap_or(SortOrder::None);
        if order == SortOrder::None && target != SortTarget::Key {
            order = SortOrder::Ascend;
        }
        if order != SortOrder::None {
            // Stable sorts over key-ordered input: ties stay in key order.
            match target {
                SortTarget::Key => {}
                SortTarget::Version => resp.kvs.sort_by_key(|kv| kv.version),
                SortTarget::Create => resp.kvs.sort_by_key(|kv| kv.create_revision),
                SortTarget::Mod => resp.kvs.sort_by_key(|kv| kv.mod_revision),
                SortTarget::Value => resp.kvs.sort_by(|a, b| a.value.cmp(&b.value)),
            }
            if order == SortOrder::Descend {
                resp.kvs.reverse();
            }
        }
        if self.limit > 0 && resp.kvs.len() as u64 > self.limit {
            resp.kvs.truncate(self.limit as usize);
            resp.more = true;
        }
    }
}

/// A range request as the engine runs it, plus what must happen afterwards.
pub fn range_request(req: &pb::RangeRequest) -> Result<(RangeRequest, RangePostProcess), Status> {
    let range = key_range(req.key.clone(), req.range_end.clone())?;
    let post = RangePostProcess {
        sort_order: req.sort_order,
        sort_target: req.sort_target,
        limit: req.limit.max(0) as u64,
        min_mod: req.min_mod_revision,
        max_mod: req.max_mod_revision,
        min_create: req.min_create_revision,
        max_create: req.max_create_revision,
    };
    let engine = RangeRequest {
        range: Some(range),
        revision: req.revision,
        // With sorting or filters the limit applies afterwards.
        limit: if post.needed() { 0 } else { post.limit },
        keys_only: req.keys_only,
        count_only: req.count_only,
    };
    Ok((engine, post))
}

/// A range result as etcd's `RangeResponse`, with `header`.
pub fn range_response(resp: RangeResponse, header: pb::ResponseHeader) -> pb::RangeResponse {
    pb::RangeResponse {
        header: Some(header),
        count: resp.count as i64,
        more: resp.more,
        kvs: resp.kvs.into_iter().map(kv_to_pb).collect(),
    }
}

/// etcd's `PutRequest` as Concord's, or etcd's error for an invalid one.
pub fn put_request(req: pb::PutRequest) -> Result<PutRequest, Status> {
    if req.key.is_empty() {
        return Err(invalid_argument(EMPTY_KEY));
    }
    if req.ignore_value && !req.value.is_empty() {
        return Err(invalid_argument(VALUE_PROVIDED));
    }
    if req.ignore_lease && req.lease != 0 {
        return Err(invalid_argument(LEASE_PROVIDED));
    }
    let lease = if req.ignore_lease {
        LeaseChoice::Keep
    } else if req.lease != 0 {
        LeaseChoice::Lease(req.lease)
    } else {
        LeaseChoice::None
    };
    Ok(PutRequest {
        key: req.key,
        value: if req.ignore_value { None } else { Some(req.value) },
        lease,
        prev_kv: req.prev_kv,
    })
}

/// A put result as etcd's `PutResponse`, with `header`.
pub fn put_response(resp: PutResponse, header: pb::ResponseHeader) -> pb::PutResponse {
    pb::PutResponse { header: Some(header), prev_kv: resp.prev_kv.map(kv_to_pb) }
}

/// etcd's `DeleteRangeRequest` as Concord's.
pub fn delete_request(req: pb::DeleteRangeRequest) -> Result<DeleteRequest, Status> {
    Ok(DeleteRequest { range: key_range(req.key, req.range_end)?, prev_kv: req.prev_kv })
}

/// A delete result as etcd's `DeleteRangeResponse`, with `header`.
pub fn delete_response(resp: DeleteResponse, header: pb::ResponseHeader) -> pb::DeleteRangeResponse {
    pb::DeleteRangeResponse {
        header: Some(header),
        deleted: resp.deleted as i64,
        prev_kvs: resp.prev_kvs.into_iter().map(kv_to_pb).collect(),
    }
}

/// etcd's `Compare` as Concord's, or etcd's error for an invalid one.
pub fn compare(c: pb::Compare) -> Result<Compare, Status> {
    let range = key_range(c.key, c.range_end)?;
    let op = match compare::CompareResult::try_from(c.result) {
        Ok(compare::CompareResult::Equal) => CompareOp::Equal,
        Ok(compare::CompareResult::NotEqual) => CompareOp::NotEqual,
        Ok(compare::CompareResult::Greater) => CompareOp::Greater,
        Ok(compare::CompareResult::Less) => CompareOp::Less,
        Err(_) => return Err(invalid_argument("etcdserver: unknown compare result")),
    };
    use compare::TargetUnion as U;
    let target = match (compare::CompareTarget::try_from(c.target), c.target_union) {
        (Ok(compare::CompareTarget::Version), Some(U::Version(v))) => CompareTarget::Version(v),
        (Ok(compare::CompareTarget::Create), Some(U::CreateRevision(v))) => CompareTarget::CreateRevision(v),
        (Ok(compare::CompareTarget::Mod), Some(U::ModRevision(v))) => CompareTarget::ModRevision(v),
        (Ok(compare::CompareTarget::Value), Some(U::Value(v))) => CompareTarget::Value(v),
        (Ok(compare::CompareTarget::Lease), Some(U::Lease(v))) => CompareTarget::Lease(v),
        // proto3 drops zero values: a missing union means the zero of the target.
        (Ok(compare::CompareTarget::Version), None) => CompareTarget::Version(0),
        (Ok(compare::CompareTarget::Create), None) => CompareTarget::CreateRevision(0),
        (Ok(compare::CompareTarget::Mod), None) => CompareTarget::ModRevision(0),
        (Ok(compare::CompareTarget::Value), None) => CompareTarget::Value(Bytes::new()),
        (Ok(compare::CompareTarget::Lease), None) => CompareTarget::Lease(0),
        _ => return Err(invalid_argument("etcdserver: compare target does not match its value")),
    };
    Ok(Compare { range, target, op })
}

/// The engine's transaction, and per op the post-processing of range reads.
pub fn txn_request(req: pb::TxnRequest) -> Result<(TxnRequest, TxnPost), Status> {
    let compare = req.compare.into_iter().map(compare).collect::<Result<Vec<_>, _>>()?;
    let (success, success_post) = ops(req.success)?;
    let (failure, failure_post) = ops(req.failure)?;
    Ok((TxnRequest { compare, success, failure }, TxnPost { success: success_post, failure: failure_post }))
}

/// Post-processing for the range reads of each branch (nested too).
#[derive(Debug, Default)]
pub struct TxnPost {
    success: Vec<OpPost>,
    failure: Vec<OpPost>,
}

#[derive(Debug)]
enum OpPost {
    Range(RangePostProcess),
    Txn(TxnPost),
    None,
}

fn ops(list: Vec<pb::RequestOp>) -> Result<(Vec<TxnOp>, Vec<OpPost>), Status> {
    let mut out = Vec::with_capacity(list.len());
    let mut post = Vec::with_capacity(list.len());
    for op in list {
        match op.request {
            Some(request_op::Request::RequestRange(r)) => {
                let (engine, p) = range_request(&r)?;
                out.push(TxnOp::Range(engine));
                post.push(OpPost::Range(p));
            }
            Some(request_op::Request::RequestPut(p)) => {
                out.push(TxnOp::Put(put_request(p)?));
                post.push(OpPost::None);
            }
            Some(request_op::Request::RequestDeleteRange(d)) => {
                out.push(TxnOp::DeleteRange(delete_request(d)?));
                post.push(OpPost::None);
            }
            Some(request_op::Request::RequestTxn(t)) => {
                let (txn, p) = txn_request(t)?;
                out.push(TxnOp::Txn(txn));
                post.push(OpPost::Txn(p));
            }
            None => return Err(invalid_argument("etcdserver: empty operation in txn request")),
        }
    }
    Ok((out, post))
}

/// Builds etcd's transaction response; every header carries `header`.
pub fn txn_response(resp: TxnResponse, post: &TxnPost, header: pb::ResponseHeader) -> pb::TxnResponse {
    let posts = if resp.succeeded { &post.success } else { &post.failure };
    let responses = resp
        .responses
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            let response = match (r, posts.get(i)) {
                (TxnOpResponse::Range(mut r), Some(OpPost::Range(p))) => {
                    p.apply(&mut r);
                    response_op::Response::ResponseRange(range_response(r, header))
                }
                (TxnOpResponse::Range(r), _) => response_op::Response::ResponseRange(range_response(r, header)),
                (TxnOpResponse::Put(r), _) => response_op::Response::ResponsePut(put_response(r, header)),
                (TxnOpResponse::DeleteRange(r), _) => {
                    response_op::Response::ResponseDeleteRange(delete_response(r, header))
                }
                (TxnOpResponse::Txn(t), Some(OpPost::Txn(p))) => {
                    response_op::Response::ResponseTxn(txn_response(t, p, header))
                }
                (TxnOpResponse::Txn(t), _) => {
                    response_op::Response::ResponseTxn(txn_response(t, &TxnPost::default(), header))
                }
            };
            pb::ResponseOp { response: Some(response) }
        })
        .collect();
    pb::TxnResponse { header: Some(header), succeeded: resp.succeeded, responses }
}
