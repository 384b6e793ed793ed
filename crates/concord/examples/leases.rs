//! The seed's usage block, on an embedded single member:
//! grant a lease, attach two keys, keep it alive, inspect it, list leases,
//! revoke it (deleting both keys), then watch a short lease really expire.
//!
//! Run: `cargo run --example leases` (data in ./concord.data, or the
//! directory given as the first argument).

use std::time::Duration;

use concord::{Concord, Error};

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "concord=info".into()),
        )
        .init();
    let dir = std::env::args().nth(1).unwrap_or_else(|| "concord.data".into());
    let db = Concord::open(&dir).await?;
    println!("opened {dir} at revision {}", db.revision());

    // Grant a 30-second lease.
    let lease = db.lease().grant(30).await?;
    println!("grant(30)          -> lease_id: {}, ttl: {}", lease.id, lease.ttl);

    // Attach keys to the lease.
    db.kv().put("key1", "val1").lease(lease.id).await?;
    db.kv().put("key2", "val2").lease(lease.id).await?;
    println!("put key1, key2 with lease {}", lease.id);

    // Keep alive (reset TTL).
    db.lease().keep_alive(lease.id).await?;
    println!("keep_alive         -> ok");

    let info = db.lease().info(lease.id).await?;
    let keys: Vec<_> = info.keys.iter().map(|k| String::from_utf8_lossy(k).into_owned()).collect();
    println!(
        "info               -> id: {}, ttl: {}, remaining: {}, granted_at: {}, keys: {:?}",
        info.id,
        info.ttl,
        info.remaining_secs(),
        info.granted_at,
        keys
    );
    let listed: Vec<_> = db.lease().list().await?.iter().map(|l| l.id).collect();
    println!("list               -> {listed:?}");

    // Revoke (deletes all attached keys atomically).
    let revoked = db.lease().revoke(lease.id).await?;
    println!("revoke             -> deleted_keys: {} (at revision {})", revoked.deleted_keys, revoked.revision);
    assert!(db.kv().get("key1").await?.is_none() && db.kv().get("key2").await?.is_none());

    // Unknown leases are refused, and nothing is written.
    match db.lease().keep_alive(lease.id).await {
        Err(Error::LeaseNotFound(id)) => println!("keep_alive({id})   -> lease_not_found"),
        other => println!("unexpected: {other:?}"),
    }

    // Leases really expire.
    let short = db.lease().grant(1).await?;
    db.kv().put("ephemeral", "x").lease(short.id).await?;
    let start = std::time::Instant::now();
    while db.kv().get("ephemeral").await?.is_some() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!("a 1 s lease expired after {:?}; its key is gone", start.elapsed());

    db.shutdown().await?;
    Ok(())
}
