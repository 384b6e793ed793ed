//! `concord snapshot save | status | restore`: backups of a running store
//! and new data directories from them (`concord::backup`), in the shape of
//! etcdctl's and etcdutl's commands.

use std::io::Write;
use std::path::PathBuf;

use clap::Subcommand;
use concord::node::Config;
use concord_etcd::pb::etcdserverpb as pb;
use pb::maintenance_client::MaintenanceClient;

use crate::client::{Connection, long_lived_channel, rpc_error};

#[derive(Subcommand, Debug)]
pub enum SnapshotCommand {
    /// Saves a backup of the store behind the endpoint to FILE (written
    /// beside it, synced, then renamed into place).
    Save { file: PathBuf },
    /// Checks a backup file and prints its checksum, revision, keys and size.
    Status {
        file: PathBuf,
        /// `simple`, `table` or `json`.
        #[arg(long, short = 'w', default_value = "simple")]
        write_out: String,
    },
    /// Writes a new data directory from a backup, for one member of a new
    /// cluster (run it for every member, each with its own settings).
    Restore {
        file: PathBuf,
        /// The data directory to create (it must not exist, or be empty).
        #[arg(long)]
        data_dir: PathBuf,
        /// This member's name.
        #[arg(long, default_value = "default")]
        name: String,
        /// The new cluster's members, `name=peer-url,...` [default: this member alone].
        #[arg(long)]
        initial_cluster: Option<String>,
        /// This member's peer URLs.
        #[arg(long, default_value = "http://localhost:2380")]
        initial_advertise_peer_urls: String,
        /// The new cluster's token (member ids derive from it).
        #[arg(long, default_value = "etcd-cluster")]
        initial_cluster_token: String,
        /// Restore without checking the SHA-256 at the file's end (a
        /// database file copied from an etcd member has none).
        #[arg(long)]
        skip_hash_check: bool,
    },
}

pub async fn run(conn: Connection, command: SnapshotCommand) -> Result<(), String> {
    match command {
        SnapshotCommand::Save { file } => save(&conn, file).await,
        SnapshotCommand::Status { file, write_out } => status(file, &write_out),
        SnapshotCommand::Restore {
            file,
            data_dir,
            name,
            initial_cluster,
            initial_advertise_peer_urls,
            initial_cluster_token,
            skip_hash_check,
        } => {
            let mut config = Config::new(&data_dir).name(name).cluster_token(initial_cluster_token);
            config.advertise_peer_urls = initial_advertise_peer_urls.split(',').map(|u| u.trim().to_string()).collect();
            if let Some(spec) = initial_cluster {
                config.initial_cluster = concord::cluster::parse_initial_cluster(&spec)?;
            }
            let restored = match skip_hash_check {
                false => concord::backup::restore(&file, &config).await,
                true => concord::backup::restore_unchecked(&file, &config).await,
            }
            .map_err(|e| e.to_string())?;
            println!(
                "restored {} keys and {} leases at revision {} into {} (member {:x} of cluster {:x})",
                restored.header.keys,
                restored.header.leases,
                restored.header.revision,
                data_dir.display(),
                restored.member_id,
                restored.cluster_id
            );
            Ok(())
        }
    }
}

async fn save(conn: &Connection, file: PathBuf) -> Result<(), String> {
    let mut client = MaintenanceClient::new(long_lived_channel(conn).await?).max_decoding_message_size(usize::MAX);
    let mut stream = client.snapshot(pb::SnapshotRequest {}).await.map_err(rpc_error)?.into_inner();
    let part = file.with_extension("part");
    let cannot = |e: std::io::Error| format!("cannot write {}: {e}", part.display());
    let mut out = std::io::BufWriter::new(std::fs::File::create(&part).map_err(cannot)?);
    let mut last_remaining = None;
    while let Some(piece) = stream.message().await.map_err(rpc_error)? {
        out.write_all(&piece.blob).map_err(cannot)?;
        last_remaining = Some(piece.remaining_bytes);
    }
    if last_remaining != Some(0) {
        let _ = std::fs::remove_file(&part);
        return Err("the backup stream ended early".into());
    }
    let out = out.into_inner().map_err(|e| cannot(e.into_error()))?;
    out.sync_all().map_err(cannot)?;
    drop(out);
    // The whole file is checked before it takes the name.
    if let Err(e) = concord::backup::status(&part) {
        let _ = std::fs::remove_file(&part);
        return Err(e.to_string());
    }
    std::fs::rename(&part, &file)
        .map_err(|e| format!("cannot rename {} to {}: {e}", part.display(), file.display()))?;
    println!("Snapshot saved at {}", file.display());
    Ok(())
}

/// etcdctl's `snapshot status` columns: hash, revision, total keys, size —
/// the hash, entry count and size computed as etcdctl computes them from
/// the file's bolt database (a file from before backups were bolt files:
/// its SHA-256's first bytes, its live keys and its size), the revision the
/// store had when the backup was taken.
fn status(file: PathBuf, write_out: &str) -> Result<(), String> {
    let status = concord::backup::status(&file).map_err(|e| e.to_string())?;
    let h = &status.header;
    let (hash, total_keys, total_size) = match status.etcd {
        Some(etcd) => (etcd.hash, etcd.total_keys, etcd.total_size),
        None => (
            u32::from_be_bytes([status.sha256[0], status.sha256[1], status.sha256[2], status.sha256[3]]),
            h.keys,
            status.size,
        ),
    };
    let hex = format!("{hash:x}");
    let size = human_size(total_size);
    match write_out {
        "simple" => println!("{hex}, {}, {total_keys}, {size}", h.revision),
        "table" => {
            let rows = [
                ["HASH".to_string(), "REVISION".into(), "TOTAL KEYS".into(), "TOTAL SIZE".into()],
                [hex, h.revision.to_string(), total_keys.to_string(), size],
            ];
            let widths: Vec<usize> = (0..4).map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0)).collect();
            let line = format!("+{}+", widths.iter().map(|w| "-".repeat(w + 2)).collect::<Vec<_>>().join("+"));
            // As etcdctl's table: titles centred, values to the right.
            let row = |r: &[String; 4], centred: bool| {
                let cell = |c: usize| match centred {
                    true => format!(" {:^w$} ", r[c], w = widths[c]),
                    false => format!(" {:>w$} ", r[c], w = widths[c]),
                };
                format!("|{}|", (0..4).map(cell).collect::<Vec<_>>().join("|"))
            };
            println!("{line}\n{}\n{line}\n{}\n{line}", row(&rows[0], true), row(&rows[1], false));
        }
        "json" => println!(
            "{}",
            serde_json::json!({
                "hash": hash,
                "revision": h.revision,
                "totalKey": total_keys,
                "totalSize": total_size,
                "liveKeys": h.keys,
                "leases": h.leases,
                "compactRevision": h.compact_revision,
            })
        ),
        other => return Err(format!("unknown output format {other:?}: simple, table or json")),
    }
    Ok(())
}

/// Sizes as etcdctl prints them (go-humanize: decimal units, one decimal
/// below 10).
fn human_size(bytes: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < units.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    match unit {
        0 => format!("{bytes} B"),
        _ if value < 10.0 => format!("{value:.1} {}", units[unit]),
        _ => format!("{value:.0} {}", units[unit]),
    }
}
