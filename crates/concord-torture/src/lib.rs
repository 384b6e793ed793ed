//! Concord under faults: a real cluster of `concord serve` processes on
//! loopback, clients recording everything they do and see, a nemesis that
//! kills, pauses, partitions, removes, replaces and re-addresses members, and the checkers of
//! `concord-check` deciding from the records alone whether every promise
//! held (linearizable keys, leases never early and gone at one revision,
//! watchers that miss nothing).
//!
//! Used by the `concord-torture` binary (long runs, on demand) and by the
//! test suite (one round of each fault).

pub mod cluster;
pub mod membership;
pub mod nemesis;
pub mod proxy;
pub mod report;
pub mod run;
pub mod workload;

pub use nemesis::Fault;
pub use report::Report;
pub use run::{Options, run};
