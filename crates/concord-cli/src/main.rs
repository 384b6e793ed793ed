//! `concord`: run a member (`concord serve`) or talk to one (any etcd v3
//! endpoint) in the seed's vocabulary: `concord lease grant 30`,
//! `concord put k v --lease ID`, `concord get k --prefix`, ...

mod client;
mod output;
mod serve;
mod snapshot;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "concord",
    version,
    about = "Concord: a strongly consistent key-value store with leases, speaking etcd v3"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a member: the embedded engine behind an etcd v3 gRPC server.
    // A flag given twice takes its last value, as etcd's do.
    #[command(args_override_self = true)]
    Serve(Box<serve::ServeArgs>),
    /// Lease operations against an endpoint.
    Lease {
        #[command(flatten)]
        conn: client::Connection,
        #[command(subcommand)]
        command: client::LeaseCommand,
    },
    /// Cluster membership against an endpoint.
    Member {
        #[command(flatten)]
        conn: client::Connection,
        #[command(subcommand)]
        command: client::MemberCommand,
    },
    /// Backups: save one from an endpoint, check one, restore one into a
    /// new data directory.
    Snapshot {
        #[command(flatten)]
        conn: client::Connection,
        #[command(subcommand)]
        command: snapshot::SnapshotCommand,
    },
    /// Write a key.
    Put {
        #[command(flatten)]
        conn: client::Connection,
        key: String,
        value: String,
        /// Attach the key to this lease (hex id, as printed by `lease grant`).
        #[arg(long)]
        lease: Option<String>,
    },
    /// Read a key, or every key with a prefix.
    Get {
        #[command(flatten)]
        conn: client::Connection,
        key: String,
        /// Read every key starting with KEY.
        #[arg(long)]
        prefix: bool,
    },
    /// Print changes to a key, or to every key with a prefix, until Ctrl-C.
    Watch {
        #[command(flatten)]
        conn: client::Connection,
        key: String,
        /// Watch every key starting with KEY.
        #[arg(long)]
        prefix: bool,
        /// Replay history from this revision first.
        #[arg(long, default_value_t = 0)]
        rev: i64,
        /// Also print each key's previous value.
        #[arg(long)]
        prev_kv: bool,
    },
    /// Delete a key, or every key with a prefix.
    Del {
        #[command(flatten)]
        conn: client::Connection,
        key: String,
        /// Delete every key starting with KEY.
        #[arg(long)]
        prefix: bool,
    },
}

/// jemalloc instead of glibc's malloc: the server allocates and frees small
/// buffers on many threads (gRPC frames, log entries, replies), and glibc
/// spent ~15% of a member's CPU in malloc/free under load. jemalloc cut CPU
/// per put ~10% with p99 unchanged; mimalloc cut more CPU but raised p99 by
/// half (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    // etcd's flags and ETCD_* variables for `concord serve` (serve/etcd_flags.rs).
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let mut etcd = serve::etcd_flags::EtcdSettings::default();
    if args.get(1).and_then(|a| a.to_str()) == Some("serve") {
        let env: Vec<(String, String)> =
            std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))).collect();
        match serve::etcd_flags::extract(args.split_off(2), &env) {
            Ok((rest, settings)) => {
                args.extend(rest);
                etcd = settings;
            }
            Err(message) => {
                eprintln!("Error: {message}");
                return ExitCode::FAILURE;
            }
        }
    }
    let cli = Cli::parse_from(args);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("Error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => serve::run(*args, etcd).await,
            Command::Lease { conn, command } => client::lease(conn, command).await,
            Command::Member { conn, command } => client::member(conn, command).await,
            Command::Snapshot { conn, command } => snapshot::run(conn, command).await,
            Command::Put { conn, key, value, lease } => client::put(conn, key, value, lease).await,
            Command::Get { conn, key, prefix } => client::get(conn, key, prefix).await,
            Command::Del { conn, key, prefix } => client::del(conn, key, prefix).await,
            Command::Watch { conn, key, prefix, rev, prev_kv } => client::watch(conn, key, prefix, rev, prev_kv).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("Error: {message}");
            ExitCode::FAILURE
        }
    }
}
