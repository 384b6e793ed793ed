//! etcd's HTTP endpoints, `/health` and `/metrics`: served on the client
//! port beside gRPC (HTTP/1.1 and HTTP/2 on one listener, as etcd serves
//! them), and on a separate listener when one is configured.

use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use concord::Concord;

use crate::metrics::Metrics;

/// The `/health` and `/metrics` routes for `db`.
pub fn routes(db: Concord, metrics: Metrics) -> Router {
    Router::new().route("/health", get(health)).route("/metrics", get(prometheus)).with_state((db, metrics))
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
