//! `concord-torture`: runs a Concord cluster under faults and checks what
//! its clients saw. See docs/reliability.md.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use concord_torture::{Fault, Options};

#[derive(Parser, Debug)]
#[command(version, about = "Runs a real Concord cluster under faults and checks what clients saw")]
struct Args {
    /// The concord binary [default: `concord` beside this program].
    #[arg(long)]
    concord: Option<PathBuf>,
    /// Members of the cluster.
    #[arg(long, default_value_t = 3)]
    members: usize,
    /// Faults to inject, comma separated [default: all of them].
    #[arg(long, value_delimiter = ',')]
    faults: Vec<String>,
    /// Run rounds of faults drawn at random for this many seconds, instead of each fault once.
    #[arg(long)]
    duration: Option<u64>,
    /// Seconds each fault lasts.
    #[arg(long, default_value_t = 3.0)]
    fault_secs: f64,
    /// Seconds of calm after each fault is healed.
    #[arg(long, default_value_t = 3.0)]
    calm_secs: f64,
    #[arg(long, default_value_t = 6)]
    clients: usize,
    #[arg(long, default_value_t = 3)]
    lease_workers: usize,
    #[arg(long, default_value_t = 2)]
    watchers: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Read with etcd's serializable (local) reads: under partitions these go
    /// stale, and the run must then report a violation (a check of the checker).
    #[arg(long)]
    serializable_reads: bool,
    /// Where the members' data and logs go (kept) [default: a temporary directory, removed].
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Also write the report to this file.
    #[arg(long)]
    report: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt().with_writer(std::io::stderr).with_env_filter("info").init();
    match torture(Args::parse()).await {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::from(1),
        Err(e) => {
            tracing::error!("{e}");
            std::process::ExitCode::from(2)
        }
    }
}

async fn torture(args: Args) -> Result<bool, String> {
    let concord = match args.concord {
        Some(path) => path,
        None => std::env::current_exe().map_err(|e| e.to_string())?.with_file_name("concord"),
    };
    if !concord.exists() {
        return Err(format!(
            "{} not found: build it (cargo build --release -p concord-cli) or pass --concord",
            concord.display()
        ));
    }
    let temp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let dir = match &args.dir {
        Some(dir) => dir.clone(),
        None => temp.path().to_path_buf(),
    };
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut options = Options::new(concord, dir);
    options.members = args.members;
    if !args.faults.is_empty() {
        options.faults = args.faults.iter().map(|f| Fault::parse(f)).collect::<Result<_, _>>()?;
    }
    options.duration = args.duration.map(Duration::from_secs);
    options.fault_time = Duration::from_secs_f64(args.fault_secs);
    options.calm_time = Duration::from_secs_f64(args.calm_secs);
    options.register_clients = args.clients;
    options.lease_workers = args.lease_workers;
    options.watchers = args.watchers;
    options.seed = args.seed;
    options.serializable_reads = args.serializable_reads;
    let report = concord_torture::run(&options).await?;
    let text = report.markdown();
    println!("{text}");
    if let Some(path) = args.report {
        std::fs::write(&path, &text).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(report.passed())
}
