//! # Concord
//!
//! An embeddable, strongly consistent key-value store with revisions, leases
//! and transactions — "SQLite for distributed coordination". It runs inside
//! your process on a data directory; every write goes through Raft and is
//! fsynced before it is acknowledged. One member is the default; more
//! members make a replicated cluster ([`Config`]).
//!
//! ## Leases, with the API of the Elixir library Concord v2.0.0
//!
//! A lease is a TTL contract: keys attached to it are deleted together, in
//! one commit, when it expires or is revoked.
//!
//! ```
//! use std::time::Duration;
//!
//! use concord::{Concord, Error};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let data = tempfile::tempdir()?;
//! # let data_dir = data.path();
//! let db = Concord::open(data_dir).await?;
//!
//! // Grant a 30-second lease: {lease_id, ttl}.
//! let lease = db.lease().grant(30).await?;
//! assert_eq!(lease.ttl, 30);
//!
//! // Attach keys to the lease when putting them.
//! db.kv().put("key1", "val1").lease(lease.id).await?;
//! db.kv().put("key2", "val2").lease(lease.id).await?;
//!
//! // Keep alive: the remaining time is the full TTL again.
//! db.lease().keep_alive(lease.id).await?;
//!
//! // Info: id, ttl, remaining, granted_at (the revision at grant), keys.
//! let info = db.lease().info(lease.id).await?;
//! assert_eq!((info.id, info.ttl, info.granted_at), (lease.id, 30, lease.revision));
//! assert!(info.remaining <= Duration::from_secs(30));
//! assert_eq!(info.keys, ["key1", "key2"]);
//!
//! // List the active leases.
//! assert_eq!(db.lease().list().await?.len(), 1);
//!
//! // Revoke: every attached key is deleted, atomically.
//! let revoked = db.lease().revoke(lease.id).await?;
//! assert_eq!(revoked.deleted_keys, 2);
//! assert!(db.kv().get("key1").await?.is_none());
//!
//! // A lease that is gone is refused, and nothing is written.
//! assert!(matches!(db.lease().keep_alive(lease.id).await, Err(Error::LeaseNotFound(_))));
//!
//! // Leases really expire, and their keys go with them.
//! let short = db.lease().grant(1).await?;
//! db.kv().put("session", "alive").lease(short.id).await?;
//! # tokio::time::timeout(Duration::from_secs(10), async {
//! while db.kv().get("session").await?.is_some() {
//!     tokio::time::sleep(Duration::from_millis(50)).await;
//! }
//! # Ok::<_, Error>(()) }).await??;
//!
//! db.shutdown().await?;
//! # Ok(())
//! # }
//! ```
//!
//! Beyond leases: [`Kv`] (put, get, ranges, reads at past revisions,
//! history, compaction), [`Txn`] (compare, then success or failure
//! operations, at one revision), [`Concord::watch`] (ordered change
//! streams, replayed from a past revision), [`Consistency`] (linearizable
//! or serializable reads), and [`Cluster`] (members, learners, leader
//! transfer). The crate `concord-etcd` serves the same store over etcd's
//! v3 API.
//!
//! Layers, top to bottom (a module uses only modules below it; one circle
//! remains, between `replication`'s shared applied state and [`watch`]'s
//! hub, to be undone):
//! - [`node`]: the embedded API ([`Concord`], [`Kv`], [`Leases`], [`Txn`],
//!   the watch builder) and the running member (routing, forwarding,
//!   proposing, background tasks); [`backup`] and [`config`] (settings,
//!   which name the storage and peer-TLS types of `replication`) beside it;
//! - `replication` and [`watch`]: openraft with the Raft log in segment
//!   files and redb (group commit), snapshots, the peer network; watchers
//!   and their hub;
//! - [`state_machine`]: deterministic apply, the only place where
//!   [`mvcc`] and [`lease`] meet;
//! - [`command`] (what the log stores), then [`alarm`], then [`mvcc`] and
//!   [`lease`];
//! - [`request`] (requests, responses, apply's refusals), [`limits`],
//!   [`error`], [`auth`], [`cluster`] and [`types`]: plain data at the
//!   bottom.
//!
//! `docs/design.md` in [Concord's repository](https://github.com/concord-kv/concord)
//! states the invariants and where each is tested.

#![warn(missing_docs)]

pub mod alarm;
pub mod auth;
pub mod backup;
pub mod cluster;
pub mod command;
pub mod config;
pub mod error;
pub mod failpoints;
pub mod lease;
pub mod limits;
pub mod mvcc;
pub mod node;
mod replication;
pub mod request;
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

/// The crate README's example, compiled as a doc test so it stays true
/// (`tests/readme.rs` checks that the repository's README shows the same).
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
mod readme_example {}
