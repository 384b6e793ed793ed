//! Response headers: every etcd response says which cluster and member
//! answered, at which store revision, in which Raft term.

use concord::Concord;

use crate::pb::etcdserverpb::ResponseHeader;

/// A header for a response produced at `revision`.
pub fn header(db: &Concord, revision: i64) -> ResponseHeader {
    ResponseHeader { cluster_id: db.cluster_id(), member_id: db.member_id(), revision, raft_term: db.raft_term() }
}

/// A header at the store's current revision.
pub fn current(db: &Concord) -> ResponseHeader {
    header(db, db.revision())
}
