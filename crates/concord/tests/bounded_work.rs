//! A client must not be able to freeze the store: every request's work is
//! bounded before it is proposed, and the queue of writes waiting to be
//! proposed is bounded too. Each test is named after the hole it closes.

mod common;

use bytes::Bytes;
use concord::command::TxnRequest;
use concord::{Compare, Error, TxnOp};

fn nest(depth: usize) -> TxnRequest {
    let mut txn = TxnRequest { compare: vec![], success: vec![TxnOp::put("leaf", "v")], failure: vec![] };
    for _ in 1..depth {
        txn = TxnRequest { compare: vec![], success: vec![TxnOp::txn(txn)], failure: vec![] };
    }
    txn
}

/// Unbounded nesting recursed in check, exec and the log's encoding: a deep
/// entry in the log would crash every boot. Refused before proposing.
#[tokio::test]
async fn deeply_nested_transactions_are_refused_before_proposing() {
    let m = common::open().await;
    let before = m.db.revision();
    m.db.txn().request(nest(16)).await.expect("16 levels are allowed");
    assert_eq!(m.db.txn().request(nest(17)).await.unwrap_err(), Error::TxnTooDeep { max: 16 });
    // Much deeper: refused after looking at 17 levels.
    assert_eq!(m.db.txn().request(nest(1000)).await.unwrap_err(), Error::TxnTooDeep { max: 16 });
    assert_eq!(m.db.revision(), before + 1);
}

/// Per-list caps of 128 did not bound the total across nesting: one request
/// could hold hundreds of thousands of puts checked under the write lock.
#[tokio::test]
async fn nested_transactions_cannot_exceed_the_total_operation_cap() {
    let m = common::open().await;
    let level = |prefix: usize| -> TxnRequest {
        TxnRequest {
            compare: vec![],
            success: (0..100).map(|i| TxnOp::put(format!("{prefix}/{i}"), "v")).collect(),
            failure: vec![],
        }
    };
    // 4 nested levels of 100 puts: each list is within 128, the whole is 404.
    let mut txn = level(0);
    for p in 1..4 {
        let mut outer = level(p);
        outer.success.push(TxnOp::txn(txn));
        txn = outer;
    }
    let before = m.db.revision();
    assert!(matches!(m.db.txn().request(txn).await, Err(Error::TooManyTxnOps { max: 384, .. })));
    assert_eq!(m.db.revision(), before);
    // A flat transaction at etcd's per-list limits is still fine.
    let flat = TxnRequest {
        compare: (0..128).map(|i| Compare::version(format!("c{i}")).eq(0)).collect(),
        success: (0..128).map(|i| TxnOp::put(format!("s{i}"), "v")).collect(),
        failure: (0..128).map(|i| TxnOp::put(format!("f{i}"), "v")).collect(),
    };
    assert!(m.db.txn().request(flat).await.unwrap().succeeded);
}

/// A transaction was not checked against the request size, nor were compare values.
#[tokio::test]
async fn transactions_and_compare_values_are_size_checked() {
    let m = common::open().await;
    let before = m.db.revision();
    let half = Bytes::from(vec![b'x'; 800 * 1024]);
    let ops = vec![TxnOp::put("a", half.clone()), TxnOp::put("b", half.clone())];
    assert!(matches!(m.db.txn().and_then(ops).await, Err(Error::RequestTooLarge { max: 1_572_864, .. })));
    let huge = Bytes::from(vec![b'x'; 2 * 1024 * 1024]);
    assert!(matches!(
        m.db.txn().when([Compare::value("a").eq(huge)]).and_then([TxnOp::put("a", "v")]).await,
        Err(Error::ValueTooLarge { .. })
    ));
    assert_eq!(m.db.revision(), before);
}

/// The proposer queue was unbounded. With a small bound, a burst gets
/// `TooManyRequests` for what does not fit, and what was refused is not written.
#[tokio::test]
async fn the_proposer_queue_is_bounded() {
    let m = common::open_with(|c| c.max_pending_proposals(4)).await;
    let mut tasks = Vec::new();
    for i in 0..300 {
        let kv = m.db.kv();
        tasks.push(tokio::spawn(async move { (i, kv.put(format!("k{i:03}"), "v").await) }));
    }
    let (mut ok, mut refused) = (Vec::new(), Vec::new());
    for task in tasks {
        match task.await.unwrap() {
            (i, Ok(_)) => ok.push(i),
            (i, Err(Error::TooManyRequests { .. })) => refused.push(i),
            (i, Err(e)) => panic!("put {i}: {e}"),
        }
    }
    assert!(!refused.is_empty(), "300 concurrent puts never found the queue full");
    assert!(!ok.is_empty());
    for i in ok {
        assert!(m.db.kv().get(format!("k{i:03}")).await.unwrap().is_some());
    }
    for i in refused {
        assert!(m.db.kv().get(format!("k{i:03}")).await.unwrap().is_none(), "refused put {i} was written");
    }
}
