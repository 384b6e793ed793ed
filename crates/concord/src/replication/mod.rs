//! Replication: openraft wired to our storage.
//!
//! - [`log_writer`]: the single thread that writes the log (group commit);
//! - [`wal`]: the log's entries in append-only segment files;
//! - [`log_store`]: openraft's log storage (entries, vote, committed pointer);
//! - [`state_store`]: openraft's state machine (apply, snapshots, deadlines);
//! - [`snapshot_store`]: snapshots, in a file of their own;
//! - [`files`]: the data directory itself (created and fsynced);
//! - [`network`]: the peer network (gRPC between members) and its server.
//!
//! Every state change, from the embedded API or a leader task, is a
//! [`Command`] written through `Raft::client_write`; a single-member cluster
//! is a one-voter Raft group and takes exactly the same path.

pub(crate) mod files;
pub(crate) mod log_store;
pub(crate) mod log_writer;
pub(crate) mod network;
pub(crate) mod snapshot_store;
pub(crate) mod state_store;
pub(crate) mod wal;

use crate::command::{Applied, Command};

openraft::declare_raft_types!(
    /// Concord's Raft type configuration.
    pub TypeConfig:
        D = Command,
        R = Applied,
        NodeId = crate::cluster::MemberId,
        Node = crate::cluster::Member,
        SnapshotData = snapshot_store::SnapshotData,
);

/// The Raft handle.
pub type ConcordRaft = openraft::Raft<TypeConfig>;
