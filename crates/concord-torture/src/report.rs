//! What a torture run did and found, written as Markdown.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

use concord_check::{Call, History, LeaseViolation, Outcome, Verdict, WatchViolation};

use crate::nemesis::Fault;

/// One fault round, times on the history's clock (ns).
#[derive(Debug, Clone)]
pub struct Round {
    pub fault: Fault,
    pub targets: Vec<String>,
    pub injected: u64,
    pub healed: u64,
    pub settled: u64,
}

#[derive(Debug, Default)]
pub struct Report {
    pub members: usize,
    pub seed: u64,
    pub elapsed: Duration,
    /// Register operations by kind and outcome.
    pub operations: BTreeMap<(&'static str, &'static str), u64>,
    pub leases_granted: u64,
    pub leases_revoked: u64,
    pub watch_events: Vec<usize>,
    pub watch_reconnects: u64,
    pub rounds: Vec<Round>,
    pub register: Option<String>,
    pub lease_violations: Vec<LeaseViolation>,
    pub watch_violations: Vec<WatchViolation>,
    /// Anything else that broke a promise (a watcher that never caught up,
    /// a cluster that did not recover).
    pub problems: Vec<String>,
    pub lateness_ms: Vec<u64>,
    /// Per fault kind: the longest time without an acknowledged write
    /// from injection until the round settled (ms).
    pub unavailability_ms: BTreeMap<Fault, u64>,
    /// Writes read back through the member that acknowledged them
    /// (serializable), and those the read missed.
    pub own_writes_checked: u64,
    pub own_writes_missed: Vec<String>,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.register.is_none()
            && self.lease_violations.is_empty()
            && self.watch_violations.is_empty()
            && self.own_writes_missed.is_empty()
            && self.problems.is_empty()
    }

    pub fn count_operations(&mut self, history: &History<String, String>) {
        for op in &history.operations {
            let kind = match op.call {
                Call::Get => "get",
                Call::Put(_) => "put",
                Call::Cas { .. } => "cas",
            };
            let outcome = match op.outcome {
                Outcome::Unknown => "unknown",
                Outcome::Failed => "failed",
                _ => "ok",
            };
            *self.operations.entry((kind, outcome)).or_default() += 1;
        }
    }

    pub fn register_verdict(&mut self, verdict: Verdict<String, String>) {
        if let Verdict::NotLinearizable { key, operations } = verdict {
            let mut text = format!("key {key} is not linearizable; its {} operations:\n", operations.len());
            for op in operations.iter().take(60) {
                let _ = writeln!(text, "  {op:?}");
            }
            self.register = Some(text);
        }
    }

    /// Measures [`Report::unavailability_ms`] on the register history.
    pub fn measure_unavailability(&mut self, history: &History<String, String>) {
        let mut successes: Vec<u64> = history
            .operations
            .iter()
            .filter(|op| matches!(op.outcome, Outcome::Done | Outcome::Swapped(_)))
            .map(|op| op.returned)
            .collect();
        successes.sort_unstable();
        let mut worst = BTreeMap::new();
        for round in &self.rounds {
            let from = successes.partition_point(|&t| t <= round.injected);
            let to = successes.partition_point(|&t| t <= round.settled);
            let points =
                std::iter::once(round.injected).chain(successes[from..to].iter().copied()).chain([round.settled]);
            let gap = points.collect::<Vec<_>>().windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
            let entry = worst.entry(round.fault).or_insert(0);
            *entry = (*entry).max(gap / 1_000_000);
        }
        self.unavailability_ms = worst;
    }

    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let verdict = if self.passed() { "PASSED" } else { "FAILED" };
        let _ = writeln!(out, "## Torture run: {verdict}\n");
        let _ = writeln!(
            out,
            "{} members, seed {}, {:.0} s, {} fault rounds.\n",
            self.members,
            self.seed,
            self.elapsed.as_secs_f64(),
            self.rounds.len()
        );
        let _ = writeln!(out, "| operation | ok | unknown | failed |\n|---|---:|---:|---:|");
        for kind in ["get", "put", "cas"] {
            let n = |o| self.operations.get(&(kind, o)).copied().unwrap_or(0);
            let _ = writeln!(out, "| {kind} | {} | {} | {} |", n("ok"), n("unknown"), n("failed"));
        }
        let _ = writeln!(
            out,
            "\nLeases granted {}, revoked {}; watch events received per watcher {:?} ({} resumes).\n",
            self.leases_granted, self.leases_revoked, self.watch_events, self.watch_reconnects
        );
        let _ = writeln!(
            out,
            "Writes read back through the member that acknowledged them (serializable): {}, missed {}.\n",
            self.own_writes_checked,
            self.own_writes_missed.len()
        );
        let _ = writeln!(out, "| fault | rounds | longest without a write (ms) |\n|---|---:|---:|");
        for (fault, ms) in &self.unavailability_ms {
            let rounds = self.rounds.iter().filter(|r| r.fault == *fault).count();
            let _ = writeln!(out, "| {} | {rounds} | {ms} |", fault.name());
        }
        let mut lateness = self.lateness_ms.clone();
        lateness.sort_unstable();
        if !lateness.is_empty() {
            let at = |q: f64| lateness[((lateness.len() - 1) as f64 * q).round() as usize];
            let _ = writeln!(
                out,
                "\nLeases that expired on their own: {}; seen gone after their deadline by p50 {} ms, p99 {} ms, max {} ms \
                 (upper bounds: observers poll every 100 ms).",
                lateness.len(),
                at(0.5),
                at(0.99),
                at(1.0)
            );
        }
        let _ = writeln!(out, "\nViolations:");
        let mut none = true;
        if let Some(register) = &self.register {
            let _ = writeln!(out, "- register: {register}");
            none = false;
        }
        for v in &self.lease_violations {
            let _ = writeln!(out, "- lease: {v:?}");
            none = false;
        }
        for v in self.watch_violations.iter().take(20) {
            let _ = writeln!(out, "- watch: {v:?}");
            none = false;
        }
        for m in self.own_writes_missed.iter().take(20) {
            let _ = writeln!(out, "- read-your-writes: {m}");
            none = false;
        }
        for p in &self.problems {
            let _ = writeln!(out, "- {p}");
            none = false;
        }
        if none {
            let _ = writeln!(out, "- none");
        }
        out
    }
}
