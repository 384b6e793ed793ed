//! A recorded client history: what each operation asked, when it was
//! invoked and when it returned, and what it returned.
//!
//! Times are nanoseconds on one monotonic clock shared by every client
//! ([`Recorder`] keeps it). An operation whose outcome the client does not
//! know (a timeout, a lost connection) is [`Outcome::Unknown`]: it may have
//! taken effect at any time after its invocation, or never. One that
//! certainly did not take effect (a refusal) is [`Outcome::Failed`] and is
//! left out of every check.

use std::sync::{Arc, Mutex};
use std::time::Instant;

/// What a client asked of one key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Call<V> {
    /// Read the key's value.
    Get,
    /// Write a value.
    Put(V),
    /// Write `new` if the key holds `expect` (`None`: if the key is absent).
    Cas { expect: Option<V>, new: V },
}

/// What the client got back.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Outcome<V> {
    /// A get's answer (`None`: the key was absent).
    Got(Option<V>),
    /// A put was acknowledged.
    Done,
    /// A compare-and-set's answer: whether it wrote.
    Swapped(bool),
    /// The client does not know whether it took effect.
    Unknown,
    /// It certainly did not take effect (refused).
    Failed,
}

/// One client operation on one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation<K, V> {
    pub client: u64,
    pub key: K,
    pub call: Call<V>,
    pub outcome: Outcome<V>,
    /// When the client invoked it (ns).
    pub invoked: u64,
    /// When it returned (ns); meaningless for [`Outcome::Unknown`].
    pub returned: u64,
}

/// A whole history, in any order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct History<K, V> {
    pub operations: Vec<Operation<K, V>>,
}

impl<K, V> Default for History<K, V> {
    fn default() -> Self {
        History { operations: Vec::new() }
    }
}

impl<K, V> History<K, V> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a finished operation (for hand-made histories).
    pub fn push(&mut self, client: u64, key: K, call: Call<V>, outcome: Outcome<V>, invoked: u64, returned: u64) {
        self.operations.push(Operation { client, key, call, outcome, invoked, returned });
    }
}

/// Records a history from concurrent clients; cheap to clone.
pub struct Recorder<K, V> {
    start: Instant,
    history: Arc<Mutex<History<K, V>>>,
}

impl<K, V> Clone for Recorder<K, V> {
    fn clone(&self) -> Self {
        Recorder { start: self.start, history: self.history.clone() }
    }
}

impl<K, V> Default for Recorder<K, V> {
    fn default() -> Self {
        Recorder { start: Instant::now(), history: Arc::new(Mutex::new(History::new())) }
    }
}

/// An invoked operation waiting for its outcome.
#[must_use = "complete the operation with its outcome"]
pub struct Pending<K, V> {
    client: u64,
    key: K,
    call: Call<V>,
    invoked: u64,
}

impl<K, V> Recorder<K, V> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Nanoseconds since the recorder was made (the history's clock).
    pub fn now(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    /// Notes the invocation of `call` on `key` by `client`, now.
    pub fn invoke(&self, client: u64, key: K, call: Call<V>) -> Pending<K, V> {
        Pending { client, key, call, invoked: self.now() }
    }

    /// Notes that `pending` returned `outcome`, now.
    pub fn complete(&self, pending: Pending<K, V>, outcome: Outcome<V>) {
        let returned = self.now();
        let Pending { client, key, call, invoked } = pending;
        let op = Operation { client, key, call, outcome, invoked, returned };
        self.history.lock().unwrap_or_else(|e| e.into_inner()).operations.push(op);
    }

    /// The history recorded so far.
    pub fn history(&self) -> History<K, V>
    where
        K: Clone,
        V: Clone,
    {
        self.history.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}
