//! The gRPC server: every service over one listener, with request size and
//! stream limits.

use std::future::Future;
use std::time::Duration;

use concord::Concord;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_stream::StreamExt;
use tonic::service::Routes;
use tonic::transport::server::TcpIncoming;

use crate::auth::AuthService;
use crate::cluster::{ClusterService, MemberUrls};
use crate::connection::ClientConnection;
use crate::election::ElectionService;
use crate::kv::KvService;
use crate::lease::LeaseService;
use crate::lock::LockService;
use crate::maintenance::MaintenanceService;
use crate::metrics::Metrics;
use crate::pb::etcdserverpb::auth_server::AuthServer;
use crate::pb::etcdserverpb::cluster_server::ClusterServer;
use crate::pb::etcdserverpb::kv_server::KvServer;
use crate::pb::etcdserverpb::lease_server::LeaseServer;
use crate::pb::etcdserverpb::maintenance_server::MaintenanceServer;
use crate::pb::etcdserverpb::watch_server::WatchServer;
use crate::pb::v3electionpb::election_server::ElectionServer;
use crate::pb::v3lockpb::lock_server::LockServer;
use crate::tls::ClientTlsAcceptor;
use crate::watch::WatchService;

/// gRPC adds framing around a request; etcd allows this much on top of its
/// request limit before gRPC itself refuses a message.
const GRPC_OVERHEAD_BYTES: usize = 512 * 1024;

/// Messages up to this many times the request limit are decoded, so that an
/// oversized value (up to about twice the limit) gets etcd's own
/// "request is too large" error rather than a transport-level refusal.
const DECODE_HEADROOM: usize = 2;

/// How [`serve`] serves: limits, the member's URLs, TLS.
#[derive(Clone)]
pub struct ServerOptions {
    /// Largest request accepted, in bytes (etcd's `--max-request-bytes`).
    pub max_request_bytes: usize,
    /// Most concurrent HTTP/2 streams per client connection.
    pub max_concurrent_streams: u32,
    /// This member's URLs, as the Cluster service reports them.
    pub urls: MemberUrls,
    /// Serve over TLS (an `https` client URL) with this.
    pub tls: Option<ClientTlsAcceptor>,
}

impl std::fmt::Debug for ServerOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerOptions")
            .field("max_request_bytes", &self.max_request_bytes)
            .field("max_concurrent_streams", &self.max_concurrent_streams)
            .field("urls", &self.urls)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            max_request_bytes: 1536 * 1024,
            max_concurrent_streams: 1024,
            urls: MemberUrls::default(),
            tls: None,
        }
    }
}

/// How long in-flight requests get to finish after shutdown is asked for;
/// after that the server returns anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Serves the etcd v3 API for `db` on `listener` until `shutdown` resolves;
/// then stops accepting, ends every watch and keep-alive stream (a client
/// that keeps a stream open must not keep the server alive), lets in-flight
/// requests finish for up to five seconds, and returns.
pub async fn serve(
    db: Concord,
    listener: TcpListener,
    options: ServerOptions,
    metrics: Metrics,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let max = options.max_request_bytes * DECODE_HEADROOM + GRPC_OVERHEAD_BYTES;
    let (stopping_tx, stopping) = watch::channel(false);
    let signal = async move {
        shutdown.await;
        let _ = stopping_tx.send(true);
    };
    // gRPC services and etcd's HTTP endpoints on one listener: HTTP/1.1
    // requests (curl, health probes, the JSON gateway) reach /health,
    // /metrics and /v3/…, HTTP/2 (gRPC) the services; an unknown gRPC
    // method answers UNIMPLEMENTED. The gateway calls a set of the services
    // of its own, in process.
    let services = |base: Routes| add_services(base, &db, &options, &metrics, &stopping, max);
    let http = crate::http::routes(db.clone(), metrics.clone())
        .merge(crate::gateway::routes(services(Routes::default()), max))
        .fallback(unimplemented);
    let routes = services(Routes::from(http));
    let router = tonic::transport::Server::builder()
        .accept_http1(true)
        .max_concurrent_streams(options.max_concurrent_streams)
        .tcp_nodelay(true)
        .add_routes(routes);
    let server: std::pin::Pin<Box<dyn Future<Output = Result<(), tonic::transport::Error>> + Send>> =
        match options.tls.clone() {
            // Nagle off on every accepted connection (the builder's
            // tcp_nodelay only applies to listeners tonic binds itself):
            // small responses must not wait for delayed ACKs.
            None => Box::pin(router.serve_with_incoming_shutdown(
                TcpIncoming::from(listener).with_nodelay(Some(true)).map(|c| c.map(ClientConnection::new)),
                signal,
            )),
            Some(acceptor) => Box::pin(router.serve_with_incoming_shutdown(
                crate::tls::incoming(listener, acceptor).map(|c| c.map(ClientConnection::new)),
                signal,
            )),
        };
    let mut stopped = stopping;
    let grace_over = async move {
        let _ = stopped.wait_for(|s| *s).await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    tokio::select! {
        served = server => served,
        () = grace_over => {
            tracing::warn!(grace = ?SHUTDOWN_GRACE, "requests still open after the shutdown grace period; stopping anyway");
            Ok(())
        }
    }
}

/// etcd's gRPC services, added to `base`.
fn add_services(
    base: Routes,
    db: &Concord,
    options: &ServerOptions,
    metrics: &Metrics,
    stopping: &watch::Receiver<bool>,
    max_decoding: usize,
) -> Routes {
    base.add_service(KvServer::new(KvService::new(db.clone(), metrics.clone())).max_decoding_message_size(max_decoding))
        .add_service(
            LeaseServer::new(LeaseService::new(db.clone(), metrics.clone(), stopping.clone()))
                .max_decoding_message_size(max_decoding),
        )
        .add_service(
            WatchServer::new(WatchService::new(db.clone(), metrics.clone(), stopping.clone()))
                .max_decoding_message_size(max_decoding),
        )
        .add_service(MaintenanceServer::new(MaintenanceService::new(db.clone(), metrics.clone())))
        .add_service(ClusterServer::new(ClusterService::new(db.clone(), options.urls.clone(), metrics.clone())))
        .add_service(AuthServer::new(AuthService::new(db.clone(), metrics.clone())))
        .add_service(LockServer::new(LockService::new(db.clone(), metrics.clone(), stopping.clone())))
        .add_service(ElectionServer::new(ElectionService::new(db.clone(), metrics.clone(), stopping.clone())))
}

/// gRPC's answer for a method no service has.
async fn unimplemented() -> axum::response::Response {
    let (parts, ()) = tonic::Status::unimplemented("").into_http::<()>().into_parts();
    axum::response::Response::from_parts(parts, axum::body::Body::empty())
}
