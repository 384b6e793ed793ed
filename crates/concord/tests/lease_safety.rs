//! Lease safety regressions: each test is named after a hole it closes.
//!
//! The restart-loop test runs a child process (this test binary again, on
//! the `restart_loop_child` test) that is killed with SIGKILL over and over,
//! as a crash-looping service would be.

mod common;

use std::time::{Duration, Instant};

use concord::{Config, Error, LeaseLimits};

/// A keep-alive that arrives after the lease's deadline, while its expiry is
/// not committed yet, must not renew it (etcd: "requested lease not found").
#[tokio::test]
async fn keep_alive_after_the_deadline_does_not_resurrect_the_lease() {
    // Expiry paused: the lease stays past its deadline, unexpired.
    let m = common::open_with(|c| c.lease_expiry_batch(0)).await;
    let lease = m.db.lease().grant(1).await.unwrap();
    m.db.kv().put("k", "v").lease(lease.id).await.unwrap();
    m.db.lease().keep_alive(lease.id).await.expect("renewal before the deadline works");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(m.db.lease().keep_alive(lease.id).await.unwrap_err(), Error::LeaseNotFound(lease.id));
    // A network client's renewal (proposed with its caller) neither.
    let client = concord::auth::Caller::established(None);
    assert_eq!(m.db.lease().keep_alive(lease.id).as_caller(client).await.unwrap_err(), Error::LeaseNotFound(lease.id));
    assert!(m.db.lease().info(lease.id).await.unwrap().remaining.is_zero());
}

/// A clean shutdown records every lease's remaining time: a 5 s lease shut
/// down 2.5 s after its grant comes back with 2.5 s, not 5 s.
#[tokio::test]
async fn a_clean_restart_resumes_each_lease_where_it_was() {
    // Checkpoints far apart: only the shutdown can have recorded the time.
    let slow = |c: Config| c.lease_checkpoint_interval(Duration::from_secs(600));
    let m = common::open_with(slow).await;
    let granted = Instant::now();
    let lease = m.db.lease().grant(5).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let m = m.restart(slow).await;
    let info = m.db.lease().info(lease.id).await.unwrap();
    let elapsed = granted.elapsed();
    assert!(info.remaining <= Duration::from_millis(2_500), "remaining {:?} after a clean restart", info.remaining);
    // Never shorter than the truth.
    assert!(info.remaining + elapsed >= Duration::from_secs(5), "remaining {:?} after {elapsed:?}", info.remaining);
}

/// Lease limits are replicated: a restart with other local settings neither
/// refuses what was acknowledged nor accepts what the cluster refuses.
#[tokio::test]
async fn lease_limits_do_not_follow_local_settings_on_restart() {
    let tight = LeaseLimits { max_leases: 2, max_keys_per_lease: 2 };
    let m = common::open_with(|c| c.lease_limits(tight)).await;
    let a = m.db.lease().grant(60).await.unwrap();
    m.db.kv().put("a1", "v").lease(a.id).await.unwrap();
    m.db.kv().put("a2", "v").lease(a.id).await.unwrap();
    m.db.lease().grant(60).await.unwrap();
    assert!(matches!(m.db.lease().grant(60).await, Err(Error::TooManyLeases { max: 2 })));
    // Reopen with a lower and then a higher local limit: replay keeps every
    // acknowledged key, and the cluster's limit still holds.
    let m = m.restart(|c| c.lease_limits(LeaseLimits { max_leases: 1, max_keys_per_lease: 1 })).await;
    assert_eq!(m.db.lease().info(a.id).await.unwrap().keys.len(), 2, "replay refused acknowledged puts");
    assert_eq!(m.db.lease_limits(), tight);
    let m = m.restart(|c| c.lease_limits(LeaseLimits::default())).await;
    assert!(matches!(m.db.lease().grant(60).await, Err(Error::TooManyLeases { max: 2 })));
    // Changing them is a replicated command.
    m.db.set_lease_limits(LeaseLimits { max_leases: 3, max_keys_per_lease: 2 }).await.unwrap();
    m.db.lease().grant(60).await.unwrap();
    let m = m.restart(|c| c).await;
    assert_eq!(m.db.lease_limits().max_leases, 3);
}

const LOOP_DIR: &str = "CONCORD_RESTART_LOOP_DIR";
const LOOP_TTL: u64 = 3;

/// The child: opens the member (granting the lease on the first run), says
/// whether the leased key is there, then runs until killed.
#[tokio::test]
#[ignore = "run by the restart-loop test in a child process"]
async fn restart_loop_child() {
    let Ok(dir) = std::env::var(LOOP_DIR) else { return };
    // The default checkpoint interval (5 s) is longer than the lease and
    // than each life of the process.
    let db = Config::new(&dir).open().await.unwrap();
    if db.kv().get("marker").await.unwrap().is_none() {
        let lease = db.lease().grant(LOOP_TTL as i64).await.unwrap();
        db.kv().put("leased", "x").lease(lease.id).await.unwrap();
        db.kv().put("marker", "x").await.unwrap();
    }
    let present = db.kv().get("leased").await.unwrap().is_some();
    println!("@present {present}");
    tokio::time::sleep(Duration::from_secs(60)).await;
}

/// Issue: a checkpoint was due only an interval after the last record and
/// every restart reset that clock, so a process restarting faster than the
/// interval kept an abandoned lease alive forever.
#[test]
fn leases_run_out_in_a_restart_loop() {
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let mut gone_after = None;
    for _ in 0..40 {
        let child = common::child::ChildTest::spawn("restart_loop_child", LOOP_DIR, dir.path());
        let present = child.expect("present ", Duration::from_secs(20)).ends_with("true");
        std::thread::sleep(Duration::from_millis(700));
        child.kill(); // SIGKILL: no clean-shutdown checkpoint
        if !present {
            gone_after = Some(started.elapsed());
            break;
        }
    }
    let gone_after = gone_after.expect("the abandoned lease outlived 40 restarts");
    assert!(gone_after >= Duration::from_secs(LOOP_TTL), "expired early: {gone_after:?}");
    // At least half of each life is recorded: about 2 x TTL of uptime, plus
    // the time each start costs.
    assert!(gone_after < Duration::from_secs(30), "took {gone_after:?}");
}

/// A new leader extends every lease by a grace (two election timeouts) once
/// its leadership is confirmed; a checkpoint it measured before that and
/// applied after cut the grace back to the old deadline (the tracker keeps
/// the earlier of the two). Slow follower disks make the confirmation take
/// longer than the checkpoint task's first wake-up, so such a checkpoint
/// would be measured before the extension and committed after it.
#[tokio::test(flavor = "multi_thread")]
async fn a_new_leaders_checkpoint_does_not_cut_its_grace_back() {
    let election = Duration::from_secs(2);
    let members = common::disk_cluster::start_with(3, |c| {
        c.election_timeout(election).heartbeat_interval(Duration::from_millis(100))
    })
    .await;
    let leader = common::disk_cluster::leader_index(&members).await;
    let lease = members[leader].db.lease().grant(3).await.unwrap().id;
    members[leader].db.kv().put("k", "v").lease(lease).await.unwrap();
    // Old enough to be checkpointed as soon as a new leader's task looks.
    tokio::time::sleep(Duration::from_millis(600)).await;
    for m in &members {
        m.disk.delay_syncs(Duration::from_millis(300));
    }
    // Moved from whoever leads now: on a loaded machine the leadership can
    // change hands on its own meanwhile (as it once did in CI).
    let mut tries = 0;
    let to = loop {
        let leader = common::disk_cluster::leader_index(&members).await;
        let to = (leader + 1) % 3;
        match members[leader].db.move_leader(members[to].db.member_id(), Duration::from_secs(10)).await {
            Ok(()) => break to,
            Err(Error::NotLeader { .. }) if tries < 5 => tries += 1,
            Err(e) => panic!("move_leader: {e}"),
        }
    };
    let moved = Instant::now();
    // Promoted (confirmed, extended), and the first checkpoints applied.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    // A linearizable read may find no quorum for a moment on these disks.
    let left = loop {
        match members[to].db.lease().info(lease).await {
            Ok(info) => break info.remaining,
            Err(Error::NotReady(_)) if moved.elapsed() < Duration::from_millis(1800) => {}
            Err(e) => panic!("lease info: {e}"),
        }
    };
    // Without the grace the lease has under 2.4 s - 1.2 s left; with it,
    // 2 × 2 s from the promotion, less the time since.
    assert!(
        left > Duration::from_millis(2400),
        "the grace was cut back: {left:?} left {:?} after the move",
        moved.elapsed()
    );
    for m in &members {
        m.disk.delay_syncs(Duration::ZERO);
    }
    common::disk_cluster::shutdown(members).await;
}
