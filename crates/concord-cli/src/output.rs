//! How client results are printed: etcdctl-like text by default, one JSON
//! object per result with `--json`.

use concord_etcd::pb::etcdserverpb as pb;
use concord_etcd::pb::mvccpb::KeyValue;
use serde_json::json;

pub struct Printer {
    pub json: bool,
}

pub fn hex(id: i64) -> String {
    format!("{:016x}", id as u64)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

impl Printer {
    pub fn lease_granted(&self, id: i64, ttl: i64) {
        if self.json {
            println!("{}", json!({ "id": hex(id), "ttl": ttl }));
        } else {
            println!("lease {} granted with TTL({ttl}s)", hex(id));
        }
    }

    pub fn lease_kept_alive(&self, id: i64, ttl: i64) {
        if self.json {
            println!("{}", json!({ "id": hex(id), "ttl": ttl }));
        } else {
            println!("lease {} keepalived with TTL({ttl})", hex(id));
        }
    }

    pub fn lease_revoked(&self, id: i64) {
        if self.json {
            println!("{}", json!({ "id": hex(id), "revoked": true }));
        } else {
            println!("lease {} revoked", hex(id));
        }
    }

    pub fn lease_info(&self, resp: &pb::LeaseTimeToLiveResponse) {
        let keys: Vec<String> = resp.keys.iter().map(|k| text(k)).collect();
        if self.json {
            let mut info = json!({ "id": hex(resp.id), "ttl": resp.granted_ttl, "remaining": resp.ttl, "keys": keys });
            // Only Concord says when a lease was granted (an extension
            // field etcd leaves out).
            if resp.concord_granted_at > 0 {
                info["granted_at"] = json!(resp.concord_granted_at);
            }
            println!("{info}");
        } else {
            println!(
                "lease {} granted with TTL({}s), remaining({}s), attached keys([{}])",
                hex(resp.id),
                resp.granted_ttl,
                resp.ttl,
                keys.join(" ")
            );
        }
    }

    pub fn lease_list(&self, ids: &[i64]) {
        if self.json {
            println!("{}", json!({ "leases": ids.iter().map(|id| hex(*id)).collect::<Vec<_>>() }));
        } else {
            println!("found {} leases", ids.len());
            for id in ids {
                println!("{}", hex(*id));
            }
        }
    }

    /// etcdctl's `member list` lines (or one JSON object).
    pub fn member_list(&self, members: &[pb::Member]) {
        if self.json {
            let members: Vec<_> = members
                .iter()
                .map(|m| {
                    json!({ "id": hex(m.id as i64), "name": m.name, "peer_urls": m.peer_ur_ls,
                            "client_urls": m.client_ur_ls, "is_learner": m.is_learner })
                })
                .collect();
            println!("{}", json!({ "members": members }));
        } else {
            for m in members {
                let status = if m.name.is_empty() { "unstarted" } else { "started" };
                println!(
                    "{}, {status}, {}, {}, {}, {}",
                    hex(m.id as i64),
                    m.name,
                    m.peer_ur_ls.join(","),
                    m.client_ur_ls.join(","),
                    m.is_learner
                );
            }
        }
    }

    /// etcdctl's `member add` output: the new member, then the settings to
    /// start it with.
    pub fn member_added(&self, resp: &pb::MemberAddResponse, name: &str, peer_urls: &[String]) {
        let cluster = resp.header.as_ref().map_or(0, |h| h.cluster_id);
        let Some(member) = &resp.member else { return };
        if self.json {
            println!(
                "{}",
                json!({ "cluster_id": hex(cluster as i64), "id": hex(member.id as i64),
                        "peer_urls": member.peer_ur_ls, "is_learner": member.is_learner })
            );
            return;
        }
        let as_learner = if member.is_learner { " as learner " } else { " " };
        println!("Member {:16x} added{as_learner}to cluster {cluster:16x}", member.id);
        let initial: Vec<String> = (resp.members.iter())
            .flat_map(|m| {
                let n = if m.id == member.id { name } else { m.name.as_str() };
                m.peer_ur_ls.iter().map(move |u| format!("{n}={u}"))
            })
            .collect();
        println!();
        println!("ETCD_NAME={name:?}");
        println!("ETCD_INITIAL_CLUSTER={:?}", initial.join(","));
        println!("ETCD_INITIAL_ADVERTISE_PEER_URLS={:?}", peer_urls.join(","));
        println!("ETCD_INITIAL_CLUSTER_STATE=\"existing\"");
    }

    /// etcdctl's `member promote|remove|update` line.
    pub fn member_changed(&self, what: &str, id: u64, header: Option<pb::ResponseHeader>) {
        let cluster = header.map_or(0, |h| h.cluster_id);
        if self.json {
            println!("{}", json!({ "cluster_id": hex(cluster as i64), "id": hex(id as i64) }));
        } else {
            println!("Member {id:16x} {what} cluster {cluster:16x}");
        }
    }

    pub fn put_ok(&self, revision: i64) {
        if self.json {
            println!("{}", json!({ "revision": revision }));
        } else {
            println!("OK");
        }
    }

    pub fn kvs(&self, kvs: &[KeyValue], revision: i64) {
        if self.json {
            let kvs: Vec<_> = kvs
                .iter()
                .map(|kv| {
                    json!({
                        "key": text(&kv.key), "value": text(&kv.value),
                        "create_revision": kv.create_revision, "mod_revision": kv.mod_revision,
                        "version": kv.version, "lease": if kv.lease == 0 { None } else { Some(hex(kv.lease)) },
                    })
                })
                .collect();
            println!("{}", json!({ "revision": revision, "kvs": kvs }));
        } else {
            for kv in kvs {
                println!("{}\n{}", text(&kv.key), text(&kv.value));
            }
        }
    }

    pub fn event(&self, event: &concord_etcd::pb::mvccpb::Event) {
        let kind =
            if event.r#type == concord_etcd::pb::mvccpb::event::EventType::Delete as i32 { "DELETE" } else { "PUT" };
        let kv = event.kv.clone().unwrap_or_default();
        if self.json {
            let prev = event.prev_kv.as_ref().map(|p| text(&p.value));
            println!(
                "{}",
                json!({ "type": kind, "key": text(&kv.key), "value": text(&kv.value),
                        "mod_revision": kv.mod_revision, "prev_value": prev })
            );
        } else {
            // etcdctl's layout: type, [previous key and value], key, value.
            println!("{kind}");
            if let Some(prev) = &event.prev_kv {
                println!("{}\n{}", text(&prev.key), text(&prev.value));
            }
            println!("{}\n{}", text(&kv.key), text(&kv.value));
        }
    }

    pub fn deleted(&self, deleted: i64, revision: i64) {
        if self.json {
            println!("{}", json!({ "deleted": deleted, "revision": revision }));
        } else {
            println!("{deleted}");
        }
    }
}
