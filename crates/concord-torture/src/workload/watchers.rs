//! Watchers of every key. Each keeps one logical watch for the whole run:
//! when its stream fails it moves to the next member and resumes from the
//! revision after the last it received, as etcd clients do. It finishes
//! once it has received everything up to the revision it is told.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use concord_check::{WatchEvent, Watcher};
use concord_etcd_proto::etcdserverpb as pb;
use concord_etcd_proto::mvccpb;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;

use super::Shared;

/// What a watcher received, and what went wrong on the way.
pub struct Watched {
    pub watcher: Watcher,
    pub problems: Vec<String>,
    pub reconnects: u64,
}

/// Watches every key from revision 1 until it has everything up to the
/// revision `finish` names, or `finish`'s deadline passes.
pub async fn watcher(
    id: u64,
    shared: Arc<Shared>,
    first_member: usize,
    mut finish: watch::Receiver<Option<(u64, tokio::time::Instant)>>,
) -> Watched {
    let mut watcher = Watcher { id, range: (Vec::new(), Vec::new()), start_revision: 1, ..Default::default() };
    let mut problems = Vec::new();
    let mut member = first_member;
    let mut next = 1u64;
    let mut reconnects = 0;
    let reached = |next: u64, finish: &watch::Receiver<Option<(u64, tokio::time::Instant)>>| match *finish.borrow() {
        Some((until, _)) if next > until => Some(until),
        Some((_, deadline)) if tokio::time::Instant::now() >= deadline => Some(next - 1),
        _ => None,
    };
    'run: loop {
        if finish.has_changed().is_err() && finish.borrow().is_none() {
            problems.push(format!("watcher {id} was abandoned"));
            break;
        }
        if let Some(until) = reached(next, &finish) {
            watcher.complete_to = until.min(next - 1);
            if next <= until {
                problems.push(format!("watcher {id} received revisions up to {} of {until} only", next - 1));
            }
            break;
        }
        let (tx, rx) = mpsc::channel(1);
        let create = pb::WatchCreateRequest {
            key: Bytes::from_static(b"\0"),
            range_end: Bytes::from_static(b"\0"),
            start_revision: next as i64,
            ..Default::default()
        };
        let _ = tx
            .send(pb::WatchRequest { request_union: Some(pb::watch_request::RequestUnion::CreateRequest(create)) })
            .await;
        let mut client = pb::watch_client::WatchClient::new(shared.channels[member].clone());
        let opened = tokio::time::timeout(shared.op_timeout, client.watch(ReceiverStream::new(rx))).await;
        let mut stream = match opened {
            Ok(Ok(response)) => response.into_inner(),
            _ => {
                member = (member + 1) % shared.members();
                reconnects += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        loop {
            let message = tokio::select! {
                m = stream.message() => m,
                changed = finish.changed() => {
                    if changed.is_err() || reached(next, &finish).is_some() { continue 'run } else { continue }
                }
                _ = tokio::time::sleep(Duration::from_millis(200)) => {
                    if reached(next, &finish).is_some() { continue 'run } else { continue }
                }
            };
            let response = match message {
                Ok(Some(response)) => response,
                _ => break,
            };
            // A watch the member could not create (its permission check
            // found no settled state in time): try another member.
            if response.canceled && response.compact_revision == 0 {
                break;
            }
            if response.compact_revision > 0 {
                problems.push(format!("watcher {id}: revision {next} was compacted"));
                watcher.complete_to = next - 1;
                break 'run;
            }
            for event in response.events {
                let Some(kv) = event.kv else { continue };
                let revision = kv.mod_revision as u64;
                let value = (event.r#type == mvccpb::event::EventType::Put as i32).then(|| kv.value.to_vec());
                watcher.events.push(WatchEvent { revision, key: kv.key.to_vec(), value });
                next = next.max(revision + 1);
            }
            if reached(next, &finish).is_some() {
                continue 'run;
            }
        }
        drop(tx);
        member = (member + 1) % shared.members();
        reconnects += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Watched { watcher, problems, reconnects }
}
