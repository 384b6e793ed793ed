//! Checks what clients saw against what Concord promises.
//!
//! A test (or a torture run) records every client operation — when it was
//! invoked, when it returned, and what it returned (or that its outcome is
//! unknown: a timeout, a lost connection) — and hands the history to a
//! checker here. Checkers answer one question each and never trust the
//! server: the history alone decides.
//!
//! - [`register`]: every key behaves as one linearizable register under
//!   get / put / compare-and-set (Wing & Gong's search with the memoisation
//!   of Lowe and porcupine; histories are split per key first, which is
//!   sound because linearizability is compositional).
//! - [`lease`]: leases are never gone early, never come back, and take
//!   their keys with them at one revision; how late they went is measured.
//! - [`watch`]: watchers see every revision of their range once, in order,
//!   agreeing with each other and with what writers and readers saw.

pub mod history;
pub mod lease;
pub mod register;
pub mod watch;

pub use history::{Call, History, Operation, Outcome, Pending, Recorder};
pub use lease::{LeaseEvent, LeaseEventKind, LeaseHistory, LeaseReport, LeaseViolation};
pub use register::{Verdict, check};
pub use watch::{WatchEvent, WatchHistory, WatchViolation, Watcher};
