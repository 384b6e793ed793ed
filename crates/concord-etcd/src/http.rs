//! etcd's HTTP endpoints, `/health`, `/metrics` and `/version`: served on the client
//! port beside gRPC (HTTP/1.1 and HTTP/2 on one listener, as etcd serves
//! them), and on a separate listener when one is configured.

use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use concord::Concord;

use crate::metrics::Metrics;

/// The `/health`, `/metrics` and `/version` routes for `db`.
pub fn routes(db: Concord, metrics: Metrics) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(prometheus))
        .route("/version", get(version))
        .with_state((db, metrics))
}

/// `/version`: what clients of the JSON gateway read to pick its prefix
/// (`/v3` from 3.4 on). The server version is the etcd API version served.
async fn version() -> ([(axum::http::HeaderName, &'static str); 1], String) {
    let version = crate::maintenance::ETCD_API_VERSION;
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        format!("{{\"etcdserver\":\"{version}\",\"etcdcluster\":\"{version}\"}}"),
    )
}

/// `/health`: healthy when a linearizable read succeeds (as etcd's check):
/// a member without a leader, or cut off from it, is not healthy.
async fn health(State((db, _)): State<(Concord, Metrics)>) -> (StatusCode, String) {
    let check = db.kv().get("health").timeout(Duration::from_secs(1)).await;
    match check {
        Ok(_) => (StatusCode::OK, "{\"health\":\"true\"}\n".into()),
        Err(e) => {
            (StatusCode::SERVICE_UNAVAILABLE, format!("{{\"health\":\"false\",\"reason\":{:?}}}\n", e.to_string()))
        }
    }
}

async fn prometheus(State((db, metrics)): State<(Concord, Metrics)>) -> String {
    metrics.encode(&db)
}
