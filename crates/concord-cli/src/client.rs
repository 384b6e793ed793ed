//! Client subcommands: talk gRPC to any etcd v3 endpoint (Concord or etcd).
//! Lease ids are printed and parsed in hex, as etcdctl does, so ids can be
//! passed between the two tools.

use std::time::Duration;

use bytes::Bytes;
use clap::{Args, Subcommand};
use concord_etcd::pb::etcdserverpb as pb;
use concord_etcd::pb::etcdserverpb::cluster_client::ClusterClient;
use concord_etcd::pb::etcdserverpb::kv_client::KvClient;
use concord_etcd::pb::etcdserverpb::lease_client::LeaseClient;
use concord_etcd::pb::etcdserverpb::watch_client::WatchClient;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::output::Printer;

#[derive(Args, Debug, Clone)]
pub struct Connection {
    /// Endpoint to talk to (host:port, http://host:port or https://host:port); the first of a
    /// comma-separated list that answers is used.
    #[arg(long, global = true, env = "CONCORD_ENDPOINTS", default_value = "127.0.0.1:2379")]
    endpoints: String,
    /// Timeout of each request, in seconds.
    #[arg(long, global = true, default_value_t = 5)]
    command_timeout: u64,
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    /// Verify the server's TLS certificate with this CA (PEM) instead of the
    /// system's; given (or with an `https://` endpoint), the connection is TLS.
    #[arg(long, global = true, env = "CONCORD_CACERT")]
    cacert: Option<std::path::PathBuf>,
    /// This client's certificate (PEM), for servers with --client-cert-auth.
    #[arg(long = "cert", id = "tls_cert", global = true, env = "CONCORD_CERT", requires = "tls_key")]
    cert: Option<std::path::PathBuf>,
    /// The key of --cert (PEM).
    #[arg(long = "key", id = "tls_key", global = true, env = "CONCORD_KEY", requires = "tls_cert")]
    key: Option<std::path::PathBuf>,
}

impl Connection {
    /// Whether to speak TLS to an endpoint written as `endpoint`.
    fn tls_for(&self, endpoint: &str) -> bool {
        endpoint.starts_with("https://") || self.cacert.is_some() || self.cert.is_some()
    }

    /// The endpoint to dial for `endpoint` (`host:port`, `http://…` or
    /// `https://…`), with TLS set up when it is asked for.
    fn endpoint(&self, endpoint: &str) -> Result<Endpoint, String> {
        let tls = self.tls_for(endpoint);
        let url = match endpoint.split_once("://") {
            Some((_, rest)) if tls => format!("https://{rest}"),
            Some(_) => endpoint.to_string(),
            None if tls => format!("https://{endpoint}"),
            None => format!("http://{endpoint}"),
        };
        let ep = Endpoint::from_shared(url).map_err(|e| format!("bad endpoint {endpoint}: {e}"))?;
        if !tls {
            return Ok(ep);
        }
        let read = |path: &std::path::Path, flag: &str| {
            std::fs::read(path).map_err(|e| format!("cannot read {flag} {}: {e}", path.display()))
        };
        let mut config = ClientTlsConfig::new();
        config = match &self.cacert {
            Some(ca) => config.ca_certificate(Certificate::from_pem(read(ca, "--cacert")?)),
            None => config.with_native_roots(),
        };
        if let (Some(cert), Some(key)) = (&self.cert, &self.key) {
            config = config.identity(Identity::from_pem(read(cert, "--cert")?, read(key, "--key")?));
        }
        ep.tls_config(config).map_err(|e| format!("TLS for {endpoint}: {e}"))
    }
}

#[derive(Subcommand, Debug)]
pub enum LeaseCommand {
    /// Grant a lease of TTL seconds.
    Grant { ttl: i64 },
    /// Keep a lease alive: every TTL/3 until it is gone or Ctrl-C, or once.
    KeepAlive {
        id: String,
        /// Renew once and exit.
        #[arg(long)]
        once: bool,
    },
    /// Revoke a lease, deleting its keys.
    Revoke { id: String },
    /// TTL, remaining time and attached keys of a lease.
    Info { id: String },
    /// Every active lease.
    List,
}

struct Clients {
    kv: KvClient<Channel>,
    lease: LeaseClient<Channel>,
    cluster: ClusterClient<Channel>,
    watch: WatchClient<Channel>,
    printer: Printer,
}

async fn connect(conn: &Connection) -> Result<Clients, String> {
    let timeout = Duration::from_secs(conn.command_timeout.max(1));
    let mut last_error = String::from("no endpoint given");
    for endpoint in conn.endpoints.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let ep = conn.endpoint(endpoint)?.connect_timeout(timeout).timeout(timeout);
        match ep.connect().await {
            Ok(channel) => {
                return Ok(Clients {
                    kv: KvClient::new(channel.clone()),
                    lease: LeaseClient::new(channel.clone()),
                    cluster: ClusterClient::new(channel.clone()),
                    watch: WatchClient::new(channel),
                    printer: Printer { json: conn.json },
                });
            }
            Err(e) => last_error = format!("cannot connect to {endpoint}: {e}"),
        }
    }
    Err(last_error)
}

/// A channel to the first endpoint that answers, with no deadline on its
/// requests (a backup stream takes as long as the store is big).
pub async fn long_lived_channel(conn: &Connection) -> Result<Channel, String> {
    let timeout = Duration::from_secs(conn.command_timeout.max(1));
    let mut last_error = String::from("no endpoint given");
    for endpoint in conn.endpoints.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        match conn.endpoint(endpoint)?.connect_timeout(timeout).connect().await {
            Ok(channel) => return Ok(channel),
            Err(e) => last_error = format!("cannot connect to {endpoint}: {e}"),
        }
    }
    Err(last_error)
}

/// An RPC failure as one line: etcd's message, as etcdctl prints it.
pub(crate) fn rpc_error(status: tonic::Status) -> String {
    status.message().to_string()
}

pub fn parse_lease_id(id: &str) -> Result<i64, String> {
    let digits = id.trim_start_matches("0x");
    u64::from_str_radix(digits, 16)
        .map(|v| v as i64)
        .map_err(|_| format!("bad lease id {id:?}: expected hex, as printed by `lease grant`"))
}

pub async fn lease(conn: Connection, command: LeaseCommand) -> Result<(), String> {
    let mut c = connect(&conn).await?;
    match command {
        LeaseCommand::Grant { ttl } => {
            let resp = c.lease.lease_grant(pb::LeaseGrantRequest { ttl, id: 0 }).await.map_err(rpc_error)?.into_inner();
            c.printer.lease_granted(resp.id, resp.ttl);
        }
        LeaseCommand::KeepAlive { id, once } => {
            let id = parse_lease_id(&id)?;
            keep_alive(&mut c, id, once).await?;
        }
        LeaseCommand::Revoke { id } => {
            let id = parse_lease_id(&id)?;
            c.lease.lease_revoke(pb::LeaseRevokeRequest { id }).await.map_err(rpc_error)?;
            c.printer.lease_revoked(id);
        }
        LeaseCommand::Info { id } => {
            let id = parse_lease_id(&id)?;
            let resp =
                c.lease.lease_time_to_live(pb::LeaseTimeToLiveRequest { id, keys: true }).await.map_err(rpc_error)?;
            let resp = resp.into_inner();
            if resp.ttl < 0 {
                return Err(format!("lease {id:016x} not found (expired or revoked)"));
            }
            c.printer.lease_info(&resp);
        }
        LeaseCommand::List => {
            let resp = c.lease.lease_leases(pb::LeaseLeasesRequest {}).await.map_err(rpc_error)?.into_inner();
            c.printer.lease_list(&resp.leases.iter().map(|l| l.id).collect::<Vec<_>>());
        }
    }
    Ok(())
}

async fn keep_alive(c: &mut Clients, id: i64, once: bool) -> Result<(), String> {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(pb::LeaseKeepAliveRequest { id }).await.map_err(|e| e.to_string())?;
    let mut responses = c
        .lease
        .lease_keep_alive(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .map_err(rpc_error)?
        .into_inner();
    loop {
        let resp = match responses.message().await.map_err(rpc_error)? {
            Some(resp) => resp,
            None => return Err("the server closed the keep-alive stream".into()),
        };
        if resp.ttl <= 0 {
            return Err(format!("lease {id:016x} expired or revoked"));
        }
        c.printer.lease_kept_alive(id, resp.ttl);
        if once {
            return Ok(());
        }
        let pause = Duration::from_millis((resp.ttl as u64 * 1000 / 3).max(500));
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
        tx.send(pb::LeaseKeepAliveRequest { id }).await.map_err(|e| e.to_string())?;
    }
}

/// Cluster membership commands (etcdctl's `member`).
#[derive(Subcommand, Debug)]
pub enum MemberCommand {
    /// Every member: id, status, name, peer URLs, client URLs, learner.
    List,
    /// Adds a member; start it afterwards with the printed settings.
    Add {
        /// The new member's name (for the printed settings).
        name: String,
        /// Comma-separated peer URLs of the new member.
        #[arg(long = "peer-urls")]
        peer_urls: String,
        /// Add it as a learner (it does not vote until promoted).
        #[arg(long)]
        learner: bool,
    },
    /// Makes a learner a voter (refused until it has caught up).
    Promote {
        /// The member id, in hex.
        id: String,
    },
    /// Removes a member.
    Remove {
        /// The member id, in hex.
        id: String,
    },
    /// Changes a member's peer URLs.
    Update {
        /// The member id, in hex.
        id: String,
        /// Comma-separated new peer URLs.
        #[arg(long = "peer-urls")]
        peer_urls: String,
    },
}

fn parse_member_id(id: &str) -> Result<u64, String> {
    u64::from_str_radix(id.trim_start_matches("0x"), 16)
        .map_err(|_| format!("bad member ID arg ({id:?}), expecting ID in Hex"))
}

fn split_urls(urls: &str) -> Vec<String> {
    urls.split(',').map(str::trim).filter(|u| !u.is_empty()).map(String::from).collect()
}

pub async fn member(conn: Connection, command: MemberCommand) -> Result<(), String> {
    let mut c = connect(&conn).await?;
    match command {
        MemberCommand::List => {
            let resp = c.cluster.member_list(pb::MemberListRequest { linearizable: true }).await.map_err(rpc_error)?;
            c.printer.member_list(&resp.into_inner().members);
        }
        MemberCommand::Add { name, peer_urls, learner } => {
            let peer_urls = split_urls(&peer_urls);
            let req = pb::MemberAddRequest { peer_ur_ls: peer_urls.clone(), is_learner: learner };
            let resp = c.cluster.member_add(req).await.map_err(rpc_error)?.into_inner();
            c.printer.member_added(&resp, &name, &peer_urls);
        }
        MemberCommand::Promote { id } => {
            let id = parse_member_id(&id)?;
            let resp = c.cluster.member_promote(pb::MemberPromoteRequest { id }).await.map_err(rpc_error)?;
            c.printer.member_changed("promoted in", id, resp.into_inner().header);
        }
        MemberCommand::Remove { id } => {
            let id = parse_member_id(&id)?;
            let resp = c.cluster.member_remove(pb::MemberRemoveRequest { id }).await.map_err(rpc_error)?;
            c.printer.member_changed("removed from", id, resp.into_inner().header);
        }
        MemberCommand::Update { id, peer_urls } => {
            let id = parse_member_id(&id)?;
            let req = pb::MemberUpdateRequest { id, peer_ur_ls: split_urls(&peer_urls) };
            let resp = c.cluster.member_update(req).await.map_err(rpc_error)?;
            c.printer.member_changed("updated in", id, resp.into_inner().header);
        }
    }
    Ok(())
}

pub async fn put(conn: Connection, key: String, value: String, lease: Option<String>) -> Result<(), String> {
    let mut c = connect(&conn).await?;
    let lease = lease.as_deref().map(parse_lease_id).transpose()?.unwrap_or(0);
    let req = pb::PutRequest { key: key.into(), value: value.into(), lease, ..Default::default() };
    let resp = c.kv.put(req).await.map_err(rpc_error)?.into_inner();
    c.printer.put_ok(resp.header.map_or(0, |h| h.revision));
    Ok(())
}

fn range_end(key: &str, prefix: bool) -> Bytes {
    if !prefix {
        return Bytes::new();
    }
    concord::prefix_end(key.as_bytes()).unwrap_or_else(|| Bytes::from_static(b"\0"))
}

/// etcd's encoding of "every key": key and range end both "\0".
fn start_key(key: &str, prefix: bool) -> Bytes {
    if prefix && key.is_empty() { Bytes::from_static(b"\0") } else { Bytes::copy_from_slice(key.as_bytes()) }
}

pub async fn get(conn: Connection, key: String, prefix: bool) -> Result<(), String> {
    let mut c = connect(&conn).await?;
    let req =
        pb::RangeRequest { key: start_key(&key, prefix), range_end: range_end(&key, prefix), ..Default::default() };
    let resp = c.kv.range(req).await.map_err(rpc_error)?.into_inner();
    c.printer.kvs(&resp.kvs, resp.header.map_or(0, |h| h.revision));
    Ok(())
}

pub async fn del(conn: Connection, key: String, prefix: bool) -> Result<(), String> {
    let mut c = connect(&conn).await?;
    let req = pb::DeleteRangeRequest {
        key: start_key(&key, prefix),
        range_end: range_end(&key, prefix),
        ..Default::default()
    };
    let resp = c.kv.delete_range(req).await.map_err(rpc_error)?.into_inner();
    c.printer.deleted(resp.deleted, resp.header.map_or(0, |h| h.revision));
    Ok(())
}

pub async fn watch(conn: Connection, key: String, prefix: bool, rev: i64, prev_kv: bool) -> Result<(), String> {
    let mut c = connect(&conn).await?;
    let create = pb::WatchCreateRequest {
        key: start_key(&key, prefix),
        range_end: range_end(&key, prefix),
        start_revision: rev,
        prev_kv,
        ..Default::default()
    };
    let request = pb::WatchRequest { request_union: Some(pb::watch_request::RequestUnion::CreateRequest(create)) };
    // Keep the request side open for as long as we watch.
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tx.send(request).await.map_err(|e| e.to_string())?;
    let mut responses =
        c.watch.watch(tokio_stream::wrappers::ReceiverStream::new(rx)).await.map_err(rpc_error)?.into_inner();
    loop {
        let message = tokio::select! {
            message = responses.message() => message.map_err(rpc_error)?,
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        let Some(resp) = message else { return Err("the server closed the watch".into()) };
        if resp.canceled {
            return Err(format!("watch canceled: {}", resp.cancel_reason));
        }
        for event in &resp.events {
            c.printer.event(event);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_ids_are_hex_like_etcdctl() {
        assert_eq!(parse_lease_id("2040a2174b508e05").unwrap(), 0x2040a2174b508e05);
        assert_eq!(parse_lease_id("0x1f").unwrap(), 31);
        assert!(parse_lease_id("xyz").is_err());
        assert_eq!(crate::output::hex(31), "000000000000001f");
    }
}
