//! `concord-bench`: a load generator for any etcd v3 endpoint, in the
//! spirit of etcd's own `benchmark` tool. The same client and the same load
//! run against Concord or etcd, so the figures compare.
//!
//! `concord-bench put --clients 64 --total 100000`, `... range --consistency s`,
//! `... lease-expiry --leases 1000 --ttl 2`, `... watch --watchers 100`;
//! `--json` prints one machine-readable record per run.

mod driver;
mod pool;
mod stats;
mod workloads;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use driver::{Load, Stop};

#[derive(Parser)]
#[command(name = "concord-bench", version, about = "Load generator for etcd v3 endpoints (Concord or etcd)")]
struct Cli {
    #[command(flatten)]
    common: Common,
    #[command(subcommand)]
    workload: Workload,
}

/// Options every workload takes.
#[derive(Args, Debug, Clone)]
pub struct Common {
    /// Endpoints (host:port, comma-separated); connections are spread over them.
    #[arg(long, global = true, default_value = "127.0.0.1:2379")]
    pub endpoints: String,
    /// gRPC connections to open.
    #[arg(long, global = true, default_value_t = 1)]
    pub conns: usize,
    /// Concurrent requests (each client has one in flight).
    #[arg(long, global = true, default_value_t = 1)]
    pub clients: usize,
    /// Requests in total (default 10,000 unless --duration is given).
    #[arg(long, global = true)]
    pub total: Option<u64>,
    /// Run for this many seconds instead of a total.
    #[arg(long, global = true)]
    pub duration: Option<f64>,
    /// Key size in bytes.
    #[arg(long, global = true, default_value_t = 8)]
    pub key_size: usize,
    /// Value size in bytes.
    #[arg(long, global = true, default_value_t = 256)]
    pub val_size: usize,
    /// Number of distinct keys.
    #[arg(long, global = true, default_value_t = 10_000)]
    pub key_space: u64,
    /// Walk the key space in order instead of at random.
    #[arg(long, global = true)]
    pub sequential_keys: bool,
    /// Requests per second over all clients; 0 = as fast as possible.
    #[arg(long, global = true, default_value_t = 0)]
    pub rate: u64,
    /// Print one JSON record instead of text.
    #[arg(long, global = true)]
    pub json: bool,
}

impl Common {
    pub fn load(&self) -> Load {
        let stop = match self.duration {
            Some(secs) => Stop::Duration(Duration::from_secs_f64(secs)),
            None => Stop::Total(self.total.unwrap_or(10_000)),
        };
        Load { clients: self.clients, stop, rate: self.rate }
    }
}

#[derive(Subcommand, Debug, Clone)]
pub enum Workload {
    /// Puts.
    Put,
    /// Single-key reads of a pre-filled key space.
    Range {
        /// l = linearizable, s = serializable.
        #[arg(long, default_value = "l")]
        consistency: String,
    },
    /// Transactions: compare the key's mod revision, then put.
    TxnPut,
    /// Reads and puts mixed.
    Mixed {
        /// Fraction of reads.
        #[arg(long, default_value_t = 0.9)]
        read_ratio: f64,
    },
    /// Lease grants (revoked afterwards, untimed).
    LeaseGrant {
        /// Keep the leases instead of revoking them (to measure memory).
        #[arg(long)]
        keep: bool,
    },
    /// Keep-alives of N leases over one stream per client.
    LeaseKeepalive {
        #[arg(long, default_value_t = 1000)]
        leases: u64,
    },
    /// Time to revoke one lease with N attached keys, repeated.
    LeaseRevoke {
        #[arg(long, default_value_t = 10_000)]
        keys: u64,
        #[arg(long, default_value_t = 10)]
        repeat: u64,
    },
    /// Lateness of lease expiry, seen through a watch: N leases of T seconds.
    LeaseExpiry {
        #[arg(long, default_value_t = 1000)]
        leases: u64,
        #[arg(long, default_value_t = 2)]
        ttl: i64,
    },
    /// Commit throughput without and with M watchers on the written prefix,
    /// and event delivery latency.
    Watch {
        #[arg(long, default_value_t = 100)]
        watchers: usize,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("Error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(workloads::run(cli.common.clone(), cli.workload)) {
        Ok(report) => {
            report.print(cli.common.json);
            if report.errors > 0 { ExitCode::from(2) } else { ExitCode::SUCCESS }
        }
        Err(e) => {
            eprintln!("Error: {e}");
            ExitCode::FAILURE
        }
    }
}
