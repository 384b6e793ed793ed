//! An application embedding Concord: the lease flows of the API of Concord
//! v2.0.0 (the Elixir library Concord re-creates) on an embedded store, then
//! the same store served over the etcd v3 API and checked with `etcdctl`.
//! Every step is checked; the first mismatch ends the run with an error
//! (exit status 1).
//!
//! `cargo run --manifest-path examples/app/Cargo.toml [DATA_DIR]`
//! (default: a fresh directory under the system's temporary directory,
//! removed at the end).

use std::error::Error;
use std::process::Command;
use std::time::{Duration, Instant};

use concord::{Concord, Error as ConcordError};
use concord_etcd::{Metrics, ServerOptions};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

type Result<T> = std::result::Result<T, Box<dyn Error>>;

/// Fails the run with `what` unless `ok`.
fn check(ok: bool, what: impl Into<String>) -> Result<()> {
    if ok { Ok(()) } else { Err(what.into().into()) }
}

#[tokio::main]
async fn main() {
    let (dir, fresh) = match std::env::args().nth(1) {
        Some(dir) => (std::path::PathBuf::from(dir), false),
        None => (std::env::temp_dir().join(format!("concord-example-app-{}", std::process::id())), true),
    };
    let outcome = run(&dir).await;
    if fresh {
        let _ = std::fs::remove_dir_all(&dir);
    }
    if let Err(e) = outcome {
        eprintln!("example app: FAILED: {e}");
        std::process::exit(1);
    }
    println!("example app: every step passed");
}

async fn run(dir: &std::path::Path) -> Result<()> {
    let db = Concord::open(dir).await?;
    println!("opened {} at revision {}", dir.display(), db.revision());
    let leases = lease_flows(&db).await;
    let served = match leases {
        Ok(()) => serve_and_check_with_etcdctl(&db).await,
        Err(e) => Err(e),
    };
    // Stop the store whatever happened above: its data is fsynced already.
    db.shutdown().await?;
    served
}

/// The seed's usage block and the rest of its lease API.
async fn lease_flows(db: &Concord) -> Result<()> {
    // grant(30) -> {lease_id, ttl}
    let lease = db.lease().grant(30).await?;
    println!("grant(30)       -> lease_id: {}, ttl: {}", lease.id, lease.ttl);
    check(lease.id > 0 && lease.ttl == 30, "grant returns a positive id and the TTL asked for")?;

    // Keys attach at put time.
    db.kv().put("key1", "val1").lease(lease.id).await?;
    db.kv().put("key2", "val2").lease(lease.id).await?;
    let key1 = db.kv().get("key1").await?.ok_or("key1 was just put")?;
    check(key1.lease == Some(lease.id), "key1 carries its lease")?;
    println!("put key1, key2  -> attached to lease {}", lease.id);

    // keep_alive -> ok, and the TTL is the granted one again.
    let renewed = db.lease().keep_alive(lease.id).await?;
    check(renewed.ttl == 30, "keep-alive resets the TTL to the granted one")?;
    println!("keep_alive      -> ok (ttl {})", renewed.ttl);

    // info -> id, ttl, remaining, granted_at, keys
    let info = db.lease().info(lease.id).await?;
    let keys: Vec<String> = info.keys.iter().map(|k| String::from_utf8_lossy(k).into_owned()).collect();
    println!(
        "info            -> id: {}, ttl: {}, remaining: {}, granted_at: {}, keys: {:?}",
        info.id,
        info.ttl,
        info.remaining_secs(),
        info.granted_at,
        keys
    );
    check(info.id == lease.id && info.ttl == 30, "info names the lease and its TTL")?;
    check(
        (28..=30).contains(&info.remaining_secs()),
        format!("remaining is about 30 s, not {}", info.remaining_secs()),
    )?;
    check(info.granted_at == lease.revision, "granted_at is the revision at grant")?;
    check(keys == ["key1", "key2"], "info lists both attached keys")?;

    // list -> every active lease
    let listed: Vec<_> = db.lease().list().await?.iter().map(|l| l.id).collect();
    println!("list            -> {listed:?}");
    check(listed.contains(&lease.id), "list includes the lease")?;

    // revoke -> deleted_keys, and the keys are gone in the same commit.
    let revoked = db.lease().revoke(lease.id).await?;
    println!("revoke          -> deleted_keys: {} (revision {})", revoked.deleted_keys, revoked.revision);
    check(revoked.deleted_keys == 2, "revoke deletes both keys")?;
    check(db.kv().get("key1").await?.is_none() && db.kv().get("key2").await?.is_none(), "the keys are gone")?;

    // keep_alive of a lease that is gone -> lease_not_found, nothing written.
    let before = db.revision();
    match db.lease().keep_alive(lease.id).await {
        Err(ConcordError::LeaseNotFound(id)) if id == lease.id => println!("keep_alive      -> lease_not_found"),
        other => return Err(format!("keep-alive of a revoked lease answered {other:?}").into()),
    }
    check(db.revision() == before, "a refused keep-alive writes nothing")?;

    // Leases really expire, with their keys, and never early.
    let short = db.lease().grant(1).await?;
    let granted = Instant::now();
    db.kv().put("ephemeral", "x").lease(short.id).await?;
    while db.kv().get("ephemeral").await?.is_some() {
        check(granted.elapsed() < Duration::from_secs(10), "a 1 s lease expired within 10 s")?;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let after = granted.elapsed();
    println!("expiry          -> a 1 s lease and its key were gone after {after:?}");
    check(after >= Duration::from_secs(1), "the lease did not expire early")?;
    check(db.lease().info(short.id).await.is_err(), "the expired lease is gone")?;
    Ok(())
}

/// Serves the etcd v3 API for `db` on a free loopback port, and puts and
/// gets a key there with etcdctl.
async fn serve_and_check_with_etcdctl(db: &Concord) -> Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let endpoint = listener.local_addr()?.to_string();
    let (stop, stopped) = oneshot::channel::<()>();
    let server =
        tokio::spawn(concord_etcd::serve(db.clone(), listener, ServerOptions::default(), Metrics::new(), async {
            let _ = stopped.await;
        }));
    println!("serving the etcd v3 API on {endpoint}");
    let checked = etcdctl_put_and_get(db, &endpoint).await;
    let _ = stop.send(());
    server.await??;
    checked
}

async fn etcdctl_put_and_get(db: &Concord, endpoint: &str) -> Result<()> {
    let put = etcdctl(endpoint, &["put", "greeting", "hello from etcdctl"]).await?;
    check(put == "OK\n", format!("etcdctl put printed {put:?}"))?;
    let got = etcdctl(endpoint, &["get", "greeting"]).await?;
    check(got == "greeting\nhello from etcdctl\n", format!("etcdctl get printed {got:?}"))?;
    // The same store through the embedded API.
    let kv = db.kv().get("greeting").await?.ok_or("the key etcdctl put is not in the store")?;
    check(&kv.value[..] == b"hello from etcdctl", "the embedded API reads what etcdctl wrote")?;
    println!("etcdctl put/get -> OK, {got:?}; the embedded API reads the same value");
    Ok(())
}

/// Runs etcdctl against `endpoint`, bounded in time; its standard output.
async fn etcdctl(endpoint: &str, args: &[&str]) -> Result<String> {
    let mut cmd = tokio::process::Command::from(Command::new("etcdctl"));
    cmd.env("ETCDCTL_API", "3").arg(format!("--endpoints={endpoint}")).arg("--command-timeout=10s").args(args);
    cmd.kill_on_drop(true);
    let output = match tokio::time::timeout(Duration::from_secs(20), cmd.output()).await {
        Err(_) => return Err(format!("etcdctl {args:?} did not finish within 20 s").into()),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err("etcdctl not found: install it (Debian/Ubuntu: apt-get install etcd-client)".into());
        }
        Ok(output) => output?,
    };
    let stderr = String::from_utf8_lossy(&output.stderr);
    check(output.status.success(), format!("etcdctl {args:?} failed: {stderr}"))?;
    Ok(String::from_utf8(output.stdout)?)
}
