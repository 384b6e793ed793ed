//! The workloads. Each prepares what it needs (untimed), runs the timed
//! part through the driver, and returns a report.

mod kv;
mod lease;
mod watch;

use crate::pool::Pool;
use crate::stats::Report;
use crate::{Common, Workload};

pub async fn run(common: Common, workload: Workload) -> Result<Report, String> {
    let pool = Pool::connect(&common).await?;
    match workload {
        Workload::Put => kv::put(&common, &pool).await,
        Workload::Range { consistency } => kv::range(&common, &pool, &consistency).await,
        Workload::TxnPut => kv::txn_put(&common, &pool).await,
        Workload::Mixed { read_ratio } => kv::mixed(&common, &pool, read_ratio).await,
        Workload::LeaseGrant { keep } => lease::grant(&common, &pool, keep).await,
        Workload::LeaseKeepalive { leases } => lease::keep_alive(&common, &pool, leases).await,
        Workload::LeaseRevoke { keys, repeat } => lease::revoke(&common, &pool, keys, repeat).await,
        Workload::LeaseExpiry { leases, ttl } => lease::expiry(&common, &pool, leases, ttl).await,
        Workload::Watch { watchers } => watch::watch(&common, &pool, watchers).await,
    }
}

/// A report from a driver outcome.
pub fn report(name: &str, common: &Common, pool: &Pool, outcome: crate::driver::Outcome) -> Report {
    let mut r = Report::new(name, &pool.endpoint, common.clients, &outcome.latencies, outcome.errors, outcome.elapsed);
    r.first_error = outcome.first_error;
    r
}
