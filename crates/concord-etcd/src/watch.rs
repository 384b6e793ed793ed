//! etcd's Watch service: one bidi stream carries many watches (create,
//! cancel, progress requests). Each watch is an embedded-API [`Watcher`]
//! whose messages a small task forwards onto the stream.

use std::collections::HashMap;

use concord::watch::ProgressRequester;
use concord::{Concord, EventKind, WatchEvent, WatchMessage, Watcher};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::convert::{key_range, kv_to_pb};
use crate::header::{current, header};
use crate::metrics::Metrics;
use crate::pb::etcdserverpb::{self as pb, watch_request, watch_server::Watch};
use crate::pb::mvccpb;
use crate::status::COMPACTED;

/// Responses buffered per stream.
const STREAM_BUFFER: usize = 1024;

/// Most watches on one stream (each costs a task and a buffer). etcd has no
/// such limit; a create beyond it is refused like any failed create.
pub const MAX_WATCHES_PER_STREAM: usize = 10_000;

/// The gRPC service Watch: many watches per stream, progress requests and cancellation.
pub struct WatchService {
    db: Concord,
    metrics: Metrics,
    /// Becomes true when the server shuts down: every stream ends.
    stopping: watch::Receiver<bool>,
}

impl WatchService {
    /// The service for `db`, recording its calls in `metrics`.
    /// Its streams end when `stopping` turns true.
    pub fn new(db: Concord, metrics: Metrics, stopping: watch::Receiver<bool>) -> Self {
        WatchService { db, metrics, stopping }
    }
}

type WatchStream = tonic::codegen::BoxStream<pb::WatchResponse>;

#[tonic::async_trait]
impl Watch for WatchService {
    async fn watch(&self, request: Request<Streaming<pb::WatchRequest>>) -> Result<Response<WatchStream>, Status> {
        let credentials = crate::authz::Credentials::of(&request);
        credentials.caller(&self.db)?;
        let (out, rx) = mpsc::channel(STREAM_BUFFER);
        let session = Session {
            db: self.db.clone(),
            metrics: self.metrics.clone(),
            out,
            watches: HashMap::new(),
            next_id: 0,
            credentials,
        };
        tokio::spawn(session.run(request.into_inner(), self.stopping.clone()));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx).map(Ok)) as WatchStream))
    }
}

struct ActiveWatch {
    forwarder: JoinHandle<()>,
    progress: ProgressRequester,
}

/// The watches of one stream.
struct Session {
    db: Concord,
    metrics: Metrics,
    out: mpsc::Sender<pb::WatchResponse>,
    watches: HashMap<i64, ActiveWatch>,
    next_id: i64,
    /// What the stream opened with: checked again for every watch it
    /// creates, which needs read permission on its range.
    credentials: crate::authz::Credentials,
}

impl Session {
    /// Serves the stream until the client goes away or the server stops.
    /// A client that only half-closes (ends its requests, as the JSON
    /// gateway does after the request body) keeps its watches, as in etcd.
    async fn run(mut self, mut requests: Streaming<pb::WatchRequest>, mut stopping: watch::Receiver<bool>) {
        let mut requests_open = true;
        loop {
            tokio::select! {
                () = stopped(&mut stopping) => break,
                request = requests.next(), if requests_open => match request {
                    Some(Ok(request)) => self.handle(request).await,
                    Some(Err(status)) => {
                        tracing::debug!(%status, "watch stream ended by the client");
                        break;
                    }
                    None => requests_open = false,
                },
                _ = self.out.closed() => break,
            }
        }
        for (_, watch) in self.watches.drain() {
            watch.forwarder.abort();
        }
    }

    async fn handle(&mut self, request: pb::WatchRequest) {
        match request.request_union {
            Some(watch_request::RequestUnion::CreateRequest(create)) => {
                let created = self.create(create).await;
                self.metrics.count("Watch", (!created).then_some(tonic::Code::InvalidArgument));
            }
            Some(watch_request::RequestUnion::CancelRequest(cancel)) => {
                if let Some(watch) = self.watches.remove(&cancel.watch_id) {
                    watch.forwarder.abort();
                    let resp = pb::WatchResponse {
                        header: Some(current(&self.db)),
                        watch_id: cancel.watch_id,
                        canceled: true,
                        ..Default::default()
                    };
                    let _ = self.out.send(resp).await;
                }
            }
            Some(watch_request::RequestUnion::ProgressRequest(_)) => {
                // Cheap however often it comes: requests to a watcher that
                // has not answered the last one yet are merged into it.
                self.watches.retain(|_, w| !w.forwarder.is_finished());
                if self.watches.is_empty() {
                    let resp =
                        pb::WatchResponse { header: Some(current(&self.db)), watch_id: -1, ..Default::default() };
                    let _ = self.out.send(resp).await;
                }
                for watch in self.watches.values() {
                    watch.progress.request();
                }
            }
            None => {}
        }
    }

    /// Creates a watch; answers `created` (and `canceled` if it cannot be).
    async fn create(&mut self, create: pb::WatchCreateRequest) -> bool {
        let id = if create.watch_id != 0 {
            create.watch_id
        } else {
            while self.is_taken(self.next_id) {
                self.next_id += 1;
            }
            self.next_id
        };
        let now = current(&self.db);
        let refuse = move |reason: String| pb::WatchResponse {
            header: Some(now),
            watch_id: id,
            created: true,
            canceled: true,
            cancel_reason: reason,
            ..Default::default()
        };
        if self.is_taken(id) {
            let _ =
                self.out.send(refuse("etcdserver: mvcc: duplicate watch ID provided on the WatchStream".into())).await;
            return false;
        }
        if self.watches.len() >= MAX_WATCHES_PER_STREAM {
            self.watches.retain(|_, w| !w.forwarder.is_finished());
            if self.watches.len() >= MAX_WATCHES_PER_STREAM {
                let reason = format!("etcdserver: too many watches on one stream (limit {MAX_WATCHES_PER_STREAM})");
                let _ = self.out.send(refuse(reason)).await;
                return false;
            }
        }
        // etcd watches an empty key as "\0" (with a range end, every key from it).
        let key = if create.key.is_empty() { bytes::Bytes::from_static(b"\0") } else { create.key };
        let range = match key_range(key, create.range_end) {
            Ok(range) => range,
            Err(status) => {
                let _ = self.out.send(refuse(status.message().to_string())).await;
                return false;
            }
        };
        // Credentials still valid now, then permission after the read
        // index when the cluster gives one (`authorize_watch`): a member
        // that lags behind a permission revoke does not start a watch the
        // revoke forbids, and a partitioned one still creates watches.
        let user = match self.credentials.caller(&self.db) {
            Ok(caller) => caller.user,
            Err(status) => {
                let _ = self.out.send(refuse(status.message().to_string())).await;
                return false;
            }
        };
        let caller = concord::auth::Caller::established(user);
        if let Err(e) = self.db.authorize_watch(&caller, std::slice::from_ref(&range)).await {
            let _ = self.out.send(refuse(crate::status::to_status(e).message().to_string())).await;
            return false;
        }
        let mut builder = self.db.watch(range).from_revision(create.start_revision);
        if create.prev_kv {
            builder = builder.prev_kv();
        }
        if create.progress_notify {
            builder = builder.progress_notify();
        }
        for filter in &create.filters {
            match pb::watch_create_request::FilterType::try_from(*filter) {
                Ok(pb::watch_create_request::FilterType::Noput) => builder = builder.no_put(),
                Ok(pb::watch_create_request::FilterType::Nodelete) => builder = builder.no_delete(),
                Err(_) => {}
            }
        }
        let watcher = match builder.await {
            Ok(watcher) => watcher,
            Err(e) => {
                let _ = self.out.send(refuse(crate::status::to_status(e).message().to_string())).await;
                return false;
            }
        };
        let created = pb::WatchResponse {
            header: Some(header(&self.db, watcher.created_revision())),
            watch_id: id,
            created: true,
            ..Default::default()
        };
        if self.out.send(created).await.is_err() {
            return false;
        }
        self.next_id = self.next_id.max(id + 1);
        let progress = watcher.progress_requester();
        let forwarder = tokio::spawn(forward(self.db.clone(), id, watcher, self.out.clone()));
        self.watches.insert(id, ActiveWatch { forwarder, progress });
        true
    }
}

/// Resolves once the server is shutting down.
pub(crate) async fn stopped(stopping: &mut watch::Receiver<bool>) {
    let _ = stopping.wait_for(|s| *s).await;
}

impl Session {
    /// Whether `id` names a watch of this stream that is still running (a
    /// finished one, canceled for compaction, frees its id at once).
    fn is_taken(&mut self, id: i64) -> bool {
        match self.watches.get(&id) {
            Some(w) if w.forwarder.is_finished() => {
                self.watches.remove(&id);
                false
            }
            Some(_) => true,
            None => false,
        }
    }
}

/// Forwards one watcher's messages onto the stream until it ends.
async fn forward(db: Concord, id: i64, mut watcher: Watcher, out: mpsc::Sender<pb::WatchResponse>) {
    while let Some(message) = watcher.next().await {
        let (resp, last) = match message {
            WatchMessage::Events { revision, events } => (
                pb::WatchResponse {
                    header: Some(header(&db, revision)),
                    watch_id: id,
                    events: events.iter().cloned().map(event_to_pb).collect(),
                    ..Default::default()
                },
                false,
            ),
            WatchMessage::Progress { revision } => {
                (pb::WatchResponse { header: Some(header(&db, revision)), watch_id: id, ..Default::default() }, false)
            }
            WatchMessage::Canceled { compact_revision } => (
                pb::WatchResponse {
                    header: Some(current(&db)),
                    watch_id: id,
                    canceled: true,
                    compact_revision,
                    cancel_reason: COMPACTED.into(),
                    ..Default::default()
                },
                true,
            ),
        };
        if out.send(resp).await.is_err() || last {
            return;
        }
    }
}

fn event_to_pb(e: WatchEvent) -> mvccpb::Event {
    let kind = match e.kind {
        EventKind::Put => mvccpb::event::EventType::Put,
        EventKind::Delete => mvccpb::event::EventType::Delete,
    };
    mvccpb::Event { r#type: kind as i32, kv: Some(kv_to_pb(e.kv)), prev_kv: e.prev_kv.map(kv_to_pb) }
}
