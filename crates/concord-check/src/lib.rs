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

pub mod history;
pub mod register;

pub use history::{Call, History, Operation, Outcome, Pending, Recorder};
pub use register::{Verdict, check};
