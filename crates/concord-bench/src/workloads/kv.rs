//! put, range, txn-put, mixed.

use std::sync::Arc;

use concord_etcd_proto::etcdserverpb::{self as pb, compare};
use rand::Rng;

use super::report;
use crate::Common;
use crate::driver::{self, Load, Stop};
use crate::pool::{Keys, Pool, value};
use crate::stats::Report;

pub async fn put(common: &Common, pool: &Pool) -> Result<Report, String> {
    let keys = Keys::new(common, "put/");
    let outcome = driver::run(common.load(), put_op(pool.clone(), keys, common.val_size)).await;
    Ok(report("put", common, pool, outcome))
}

/// One put per call, on the client's connection.
pub fn put_op(
    pool: Pool,
    keys: Keys,
    val_size: usize,
) -> impl Fn(usize, u64) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send>>
+ Send
+ Sync
+ 'static {
    let val = value(val_size);
    move |client, seq| {
        let mut kv = pool.kv(client);
        let req = pb::PutRequest { key: keys.pick(seq), value: val.clone(), ..Default::default() };
        Box::pin(async move { kv.put(req).await.map(|_| ()).map_err(|s| s.message().to_string()) })
    }
}

/// Writes every key of the key space once (untimed), so reads find data.
async fn fill(common: &Common, pool: &Pool, keys: &Keys) -> Result<(), String> {
    let load = Load { clients: common.clients.max(16), stop: Stop::Total(keys.space()), rate: 0 };
    let (pool, keys, val) = (pool.clone(), keys.clone(), value(common.val_size));
    let outcome = driver::run(load, move |client, seq| {
        let mut kv = pool.kv(client);
        let req = pb::PutRequest { key: keys.nth(seq), value: val.clone(), ..Default::default() };
        async move { kv.put(req).await.map(|_| ()).map_err(|s| s.message().to_string()) }
    })
    .await;
    match outcome.first_error {
        Some(e) => Err(format!("filling the key space failed: {e}")),
        None => Ok(()),
    }
}

pub async fn range(common: &Common, pool: &Pool, consistency: &str) -> Result<Report, String> {
    let serializable = match consistency {
        "l" | "linearizable" => false,
        "s" | "serializable" => true,
        other => return Err(format!("--consistency must be l or s, not {other}")),
    };
    let keys = Keys::new(common, "range/");
    fill(common, pool, &keys).await?;
    let pool2 = pool.clone();
    let outcome = driver::run(common.load(), move |client, seq| {
        let mut kv = pool2.kv(client);
        let req = pb::RangeRequest { key: keys.pick(seq), serializable, ..Default::default() };
        async move {
            let resp = kv.range(req).await.map_err(|s| s.message().to_string())?;
            if resp.into_inner().kvs.is_empty() { Err("a filled key was not found".into()) } else { Ok(()) }
        }
    })
    .await;
    let name = if serializable { "range-serializable" } else { "range-linearizable" };
    Ok(report(name, common, pool, outcome))
}

pub async fn txn_put(common: &Common, pool: &Pool) -> Result<Report, String> {
    let keys = Keys::new(common, "txn/");
    let (pool2, val) = (pool.clone(), value(common.val_size));
    let outcome = driver::run(common.load(), move |client, seq| {
        let mut kv = pool2.kv(client);
        let key = keys.pick(seq);
        // Compare the key's mod revision (any revision is below i64::MAX, so
        // the put always runs: the cost measured is the compare-then-put path).
        let cmp = pb::Compare {
            result: compare::CompareResult::Less as i32,
            target: compare::CompareTarget::Mod as i32,
            key: key.clone(),
            target_union: Some(compare::TargetUnion::ModRevision(i64::MAX)),
            ..Default::default()
        };
        let put = pb::RequestOp {
            request: Some(pb::request_op::Request::RequestPut(pb::PutRequest {
                key,
                value: val.clone(),
                ..Default::default()
            })),
        };
        let req = pb::TxnRequest { compare: vec![cmp], success: vec![put], failure: vec![] };
        async move {
            let resp = kv.txn(req).await.map_err(|s| s.message().to_string())?.into_inner();
            if resp.succeeded { Ok(()) } else { Err("compare failed".into()) }
        }
    })
    .await;
    Ok(report("txn-put", common, pool, outcome))
}

pub async fn mixed(common: &Common, pool: &Pool, read_ratio: f64) -> Result<Report, String> {
    let keys = Keys::new(common, "mixed/");
    fill(common, pool, &keys).await?;
    let (pool2, val) = (pool.clone(), value(common.val_size));
    let keys = Arc::new(keys);
    let outcome = driver::run(common.load(), move |client, seq| {
        let mut kv = pool2.kv(client);
        let key = keys.pick(seq);
        let read = rand::rng().random_bool(read_ratio.clamp(0.0, 1.0));
        let val = val.clone();
        async move {
            let result = if read {
                kv.range(pb::RangeRequest { key, ..Default::default() }).await.map(|_| ())
            } else {
                kv.put(pb::PutRequest { key, value: val, ..Default::default() }).await.map(|_| ())
            };
            result.map_err(|s| s.message().to_string())
        }
    })
    .await;
    Ok(report("mixed", common, pool, outcome).with("read_ratio", read_ratio))
}
