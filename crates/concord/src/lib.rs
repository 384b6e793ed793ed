//! # Concord
//!
//! An embeddable, strongly consistent key-value store with revisions, leases
//! and transactions — "SQLite for distributed coordination".
//!
//! ```no_run
//! # async fn demo() -> concord::Result<()> {
//! let db = concord::Concord::open("./concord.data").await?;
//! let lease = db.lease().grant(30).await?;
//! db.kv().put("service/a", "10.0.0.1").lease(lease.id).await?;
//! db.lease().keep_alive(lease.id).await?;
//! let revoked = db.lease().revoke(lease.id).await?;
//! assert_eq!(revoked.deleted_keys, 1);
//! db.shutdown().await?;
//! # Ok(()) }
//! ```
//!
//! Layers, top to bottom (dependencies point down only):
//! - [`node`]: the embedded API ([`Concord`], [`Kv`], [`Leases`], [`Txn`])
//!   and the leader-side tasks (lease expiry, checkpoints, compaction);
//! - `replication`: openraft with the Raft log in redb (group commit);
//! - [`state_machine`]: deterministic apply, the only place where
//!   [`mvcc`] and [`lease`] meet;
//! - [`types`] and [`command`]: plain data shared by all layers.
//!
//! See `docs/design.md` for the invariants.

pub mod alarm;
pub mod auth;
pub mod backup;
pub mod cluster;
pub mod command;
pub mod error;
pub mod failpoints;
pub mod lease;
pub mod limits;
pub mod mvcc;
pub mod node;
mod replication;
pub mod state_machine;
pub mod types;
pub mod watch;

pub use alarm::{Alarm, AlarmKind};
pub use command::{
    Compare, CompareOp, CompareTarget, DeleteResponse, PutResponse, RangeResponse, TxnOp, TxnOpResponse, TxnRequest,
    TxnResponse,
};
pub use error::{Error, Result};
pub use lease::LeaseLimits;
pub use limits::Limits;
pub use node::{
    Cluster, Concord, Config, Consistency, DefragmentReport, Kv, LeaseGrant, LeaseInfo, LeaseKeepAlive, LeaseRevoke,
    Leases, MemberStatus, NumberCompare, PeerListen, StorageFactory, TokenError, Txn, ValueCompare,
};
/// What a [`StorageFactory`] returns: redb's storage interface.
pub use redb::StorageBackend;
pub use replication::network::tls::PeerTls;
pub use types::{Event, EventKind, KeyRange, KeyValue, LeaseId, RangeEnd, Revision, WatchEvent, prefix_end};
pub use watch::{WatchMessage, Watcher};

/// The README's example, compiled as a doc test so it stays true.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
mod readme_example {}
