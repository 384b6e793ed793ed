//! Durability that SIGKILL cannot show (it keeps the page cache): the data
//! directory's own entries are fsynced, checked by tracing the real system
//! calls of a child process with strace.

mod common;

use std::process::Command;

const CHILD_DIR: &str = "CONCORD_DIR_SYNC_CHILD";

#[tokio::test]
#[ignore = "run by the directory-fsync test under strace"]
async fn dir_sync_child() {
    let Ok(dir) = std::env::var(CHILD_DIR) else { return };
    let db = concord::Concord::open(&dir).await.unwrap();
    db.kv().put("k", "v").await.unwrap();
    db.shutdown().await.unwrap();
}

/// A new data directory and its files were never fsynced at the directory
/// level: a crash right after the first start could lose the files.
#[test]
fn a_new_data_directory_is_fsynced_after_its_files_exist() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("parent").join("data");
    let out = Command::new("strace")
        .args(["-f", "-y", "-qq", "-e", "trace=openat,fsync,fdatasync,pwrite64"])
        .arg(std::env::current_exe().unwrap())
        .args(["dir_sync_child", "--exact", "--ignored", "--test-threads=1"])
        .env(CHILD_DIR, &data)
        .output()
        .expect("strace runs (apt-get install strace; .ci/run installs it)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let trace = String::from_utf8_lossy(&out.stderr);
    let data_str = data.display().to_string();
    let parent_str = data.parent().unwrap().display().to_string();
    let lines: Vec<&str> = trace.lines().collect();
    let created =
        (lines.iter().position(|l| l.contains("openat(") && l.contains(&format!("{data_str}/snapshot.redb"))))
            .expect("snapshot.redb was created");
    let synced = |dir: &str| lines.iter().rposition(|l| l.contains("fsync(") && l.contains(&format!("<{dir}>)")));
    let dir_synced = synced(&data_str).expect("the data directory was never fsynced");
    assert!(dir_synced > created, "the directory was fsynced before its files existed");
    // The log's first segment file too, before the first write into it.
    let segment = format!("{data_str}/log-0000000000000001.wal");
    let segment_created = lines
        .iter()
        .position(|l| l.contains("openat(") && l.contains(&segment))
        .expect("the log's first segment was created");
    let first_write = lines
        .iter()
        .position(|l| l.contains("pwrite64(") && l.contains(&format!("<{segment}>")))
        .expect("nothing was written into the log's segment");
    assert!(
        lines[segment_created..first_write]
            .iter()
            .any(|l| l.contains("fsync(") && l.contains(&format!("<{data_str}>)"))),
        "the segment's directory entry was not durable before the first write into it"
    );
    let parent_synced = synced(&parent_str).expect("the parent of the new data directory was never fsynced");
    assert!(parent_synced > created);
}
