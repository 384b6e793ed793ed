//! A backup of this member's state as a stream of bytes (`crate::backup`):
//! etcd's `Maintenance.Snapshot`.

use bytes::Bytes;
use tokio::sync::mpsc;

use super::Concord;
use crate::backup::{BackupHeader, backup_size, plan_backup, write_backup};
use crate::error::{Error, Result};

/// Bytes per piece of a backup stream.
const PIECE: usize = 1024 * 1024;

impl Concord {
    /// A point-in-time backup of the state this member has applied: its
    /// size in bytes and the bytes as a stream of pieces (`crate::backup`
    /// describes them). Writes go on meanwhile: the state is copied under
    /// the lock (keys and values are shared, not copied) and encoded from
    /// the copy — once to lay it out, once to send it, a piece at a time
    /// as the receiver takes them.
    pub async fn backup(&self) -> Result<(u64, mpsc::Receiver<Result<Bytes>>)> {
        let (state, applied) = {
            let applier = self.shared().applier.read();
            (applier.machine.state.clone(), applier.last_applied.map_or(0, |id| id.index))
        };
        let header = BackupHeader::of(&state, applied, self.inner.cluster_id);
        let (state, header, plan) =
            tokio::task::spawn_blocking(move || plan_backup(&state, &header).map(|plan| (state, header, plan)))
                .await
                .map_err(|e| Error::Storage(e.to_string()))??;
        let (tx, rx) = mpsc::channel(4);
        tokio::task::spawn_blocking(move || {
            let mut out = PieceWriter { tx: tx.clone(), piece: Vec::with_capacity(PIECE) };
            if let Err(e) = write_backup(&state, &header, &plan, &mut out) {
                // A receiver that went away is not an error worth sending.
                let _ = tx.blocking_send(Err(e));
            }
        });
        Ok((backup_size(&plan), rx))
    }
}

/// Cuts what is written into pieces sent down the channel.
struct PieceWriter {
    tx: mpsc::Sender<Result<Bytes>>,
    piece: Vec<u8>,
}

impl std::io::Write for PieceWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.piece.extend_from_slice(buf);
        if self.piece.len() >= PIECE {
            self.flush()?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.piece.is_empty() {
            return Ok(());
        }
        let piece = Bytes::from(std::mem::replace(&mut self.piece, Vec::with_capacity(PIECE)));
        self.tx.blocking_send(Ok(piece)).map_err(|_| std::io::Error::other(Error::Shutdown.to_string()))
    }
}
