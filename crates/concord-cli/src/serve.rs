//! `concord serve`: a member behind the etcd v3 gRPC API, plus an HTTP
//! endpoint for `/health` and Prometheus `/metrics`.
//!
//! Settings come from, in order of precedence: flags, `CONCORD_*`
//! environment variables, etcd's `ETCD_*` variables, the `--config-file`
//! (TOML, keys named like the flags), then defaults. etcd 3.4's own flags
//! are taken too (`etcd_flags.rs`). On SIGTERM or Ctrl-C the server hands
//! leadership over (if it leads), stops accepting, finishes in-flight
//! requests, and closes the data file cleanly.

pub mod etcd_flags;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use concord::{Concord, Config};
use concord_etcd::{MemberUrls, Metrics, ServerOptions};
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::sync::watch;

#[derive(Args, Debug, Default)]
pub struct ServeArgs {
    /// Human-readable name of this member.
    #[arg(long, env = "CONCORD_NAME")]
    name: Option<String>,
    /// Directory for the data file [default: ./concord.data].
    #[arg(long, env = "CONCORD_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// URLs to listen on for client traffic, comma-separated; `https` ones
    /// need --cert-file and --key-file [default: http://127.0.0.1:2379].
    #[arg(long, env = "CONCORD_LISTEN_CLIENT_URLS")]
    listen_client_urls: Option<String>,
    /// Client URL to advertise to clients (MemberList) [default: the listen URL].
    #[arg(long, env = "CONCORD_ADVERTISE_CLIENT_URLS")]
    advertise_client_urls: Option<String>,
    /// Peer URL to advertise to the cluster; with the cluster token it makes the member id
    /// [default: http://localhost:2380, as etcd].
    #[arg(long, env = "CONCORD_INITIAL_ADVERTISE_PEER_URLS")]
    initial_advertise_peer_urls: Option<String>,
    /// URL to listen on for the other members (Raft) [default: http://127.0.0.1:2380].
    #[arg(long, env = "CONCORD_LISTEN_PEER_URLS")]
    listen_peer_urls: Option<String>,
    /// The members of a new cluster, `name=peer-url,...` (this member included)
    /// [default: this member alone].
    #[arg(long, env = "CONCORD_INITIAL_CLUSTER")]
    initial_cluster: Option<String>,
    /// `new` to create a cluster from --initial-cluster, `existing` to join one
    /// (the member waits to be added) [default: new].
    #[arg(long, env = "CONCORD_INITIAL_CLUSTER_STATE")]
    initial_cluster_state: Option<String>,
    /// Names the cluster in every member id, so clusters built from the same URLs differ
    /// [default: etcd-cluster].
    #[arg(long, env = "CONCORD_INITIAL_CLUSTER_TOKEN")]
    initial_cluster_token: Option<String>,
    /// Raft heartbeat interval in milliseconds [default: 100].
    #[arg(long, env = "CONCORD_HEARTBEAT_INTERVAL")]
    heartbeat_interval: Option<u64>,
    /// Milliseconds without a leader before an election [default: 300].
    #[arg(long, env = "CONCORD_ELECTION_TIMEOUT")]
    election_timeout: Option<u64>,
    /// An extra URL for /health and /metrics over HTTP; they are always served on the
    /// client URL too, as etcd does [default: none].
    #[arg(long, env = "CONCORD_LISTEN_METRICS_URLS")]
    listen_metrics_urls: Option<String>,
    /// Largest request accepted, in bytes [default: 1572864].
    #[arg(long, env = "CONCORD_MAX_REQUEST_BYTES")]
    max_request_bytes: Option<usize>,
    /// Most concurrent streams per client connection [default: 1024].
    #[arg(long, env = "CONCORD_MAX_CONCURRENT_STREAMS")]
    max_concurrent_streams: Option<u32>,
    /// Space quota in bytes, counting the in-memory state and the log: a
    /// write that would take the store past it raises the NOSPACE alarm and
    /// is refused until the alarm is disarmed (after compact and defrag); 0
    /// is the default, negative disables it, as etcd's [default: 2147483648].
    #[arg(long, env = "CONCORD_QUOTA_BACKEND_BYTES", allow_negative_numbers = true)]
    quota_backend_bytes: Option<i64>,
    /// History to keep, as etcd reads it: with --auto-compaction-mode
    /// periodic (etcd's default) hours (`1`) or a duration (`30m`), with
    /// `revision` a number of revisions; 0 keeps everything [default, with
    /// neither flag given: the last 100000 revisions].
    #[arg(long, env = "CONCORD_AUTO_COMPACTION_RETENTION")]
    auto_compaction_retention: Option<String>,
    /// Log filter, e.g. `info` or `concord=debug` [default: info,openraft=warn].
    #[arg(long, env = "CONCORD_LOG_LEVEL")]
    log_level: Option<String>,
    /// The server's TLS certificate (PEM) for an `https` client URL.
    #[arg(long, env = "CONCORD_CERT_FILE")]
    cert_file: Option<PathBuf>,
    /// The key of --cert-file (PEM).
    #[arg(long, env = "CONCORD_KEY_FILE")]
    key_file: Option<PathBuf>,
    /// The CA (PEM) that signs the clients' certificates.
    #[arg(long, env = "CONCORD_TRUSTED_CA_FILE")]
    trusted_ca_file: Option<PathBuf>,
    /// Refuse clients without a certificate signed by --trusted-ca-file.
    #[arg(long, env = "CONCORD_CLIENT_CERT_AUTH")]
    client_cert_auth: bool,
    /// This member's TLS certificate (PEM) for `https` peer URLs, served
    /// to peers and presented to them.
    #[arg(long, env = "CONCORD_PEER_CERT_FILE")]
    peer_cert_file: Option<PathBuf>,
    /// The key of --peer-cert-file (PEM).
    #[arg(long, env = "CONCORD_PEER_KEY_FILE")]
    peer_key_file: Option<PathBuf>,
    /// The CA (PEM) that signs the members' certificates.
    #[arg(long, env = "CONCORD_PEER_TRUSTED_CA_FILE")]
    peer_trusted_ca_file: Option<PathBuf>,
    /// Refuse peers without a certificate signed by --peer-trusted-ca-file.
    #[arg(long, env = "CONCORD_PEER_CLIENT_CERT_AUTH")]
    peer_client_cert_auth: bool,
    /// A TOML file with any of the settings above, keys named like the flags
    /// (`data-dir = "/var/lib/concord"`).
    #[arg(long, env = "CONCORD_CONFIG_FILE")]
    config_file: Option<PathBuf>,
    /// Fault injection only: dial peers at other URLs than they advertise,
    /// `advertised=dialled,...` (concord-torture puts a proxy on each link).
    #[arg(long, env = "CONCORD_PEER_DIAL_MAP", hide = true)]
    peer_dial_map: Option<String>,
}

/// The same settings, as read from the config file.
#[derive(Deserialize, Debug, Default)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct FileSettings {
    name: Option<String>,
    data_dir: Option<PathBuf>,
    listen_client_urls: Option<String>,
    advertise_client_urls: Option<String>,
    initial_advertise_peer_urls: Option<String>,
    listen_peer_urls: Option<String>,
    initial_cluster: Option<String>,
    initial_cluster_state: Option<String>,
    initial_cluster_token: Option<String>,
    heartbeat_interval: Option<u64>,
    election_timeout: Option<u64>,
    listen_metrics_urls: Option<String>,
    max_request_bytes: Option<usize>,
    max_concurrent_streams: Option<u32>,
    quota_backend_bytes: Option<i64>,
    /// A number or a string (`"30m"`), as on the command line.
    auto_compaction_retention: Option<toml::Value>,
    auto_compaction_mode: Option<String>,
    log_level: Option<String>,
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    trusted_ca_file: Option<PathBuf>,
    client_cert_auth: Option<bool>,
    peer_cert_file: Option<PathBuf>,
    peer_key_file: Option<PathBuf>,
    peer_trusted_ca_file: Option<PathBuf>,
    peer_client_cert_auth: Option<bool>,
}

/// Settings after precedence is applied.
#[derive(Debug)]
struct Settings {
    name: String,
    data_dir: PathBuf,
    /// Each client URL: its address, and whether it is `https`.
    listen_client: Vec<(SocketAddr, bool)>,
    advertise_client_urls: Vec<String>,
    advertise_peer_urls: Vec<String>,
    listen_peer: SocketAddr,
    initial_cluster: Vec<(String, Vec<String>)>,
    join_existing: bool,
    cluster_token: String,
    heartbeat_interval: u64,
    election_timeout: u64,
    listen_metrics: Option<SocketAddr>,
    max_request_bytes: usize,
    max_concurrent_streams: u32,
    /// `None`: no quota.
    space_quota: Option<u64>,
    compaction: Compaction,
    log_level: String,
    peer_dial_map: std::collections::HashMap<String, String>,
    /// Set when a client URL is `https`.
    tls: Option<TlsFiles>,
    /// Set when the peer URL is `https`.
    peer_tls: Option<TlsFiles>,
}

/// Automatic compaction, as the two etcd flags set it.
#[derive(Debug, PartialEq)]
enum Compaction {
    Off,
    KeepRevisions(u64),
    KeepPeriod(Duration),
}

impl Compaction {
    /// etcd's `--auto-compaction-mode` and `--auto-compaction-retention`
    /// (periodic by default; 0 is off). Neither given: Concord's default,
    /// the last 100000 revisions (history lives in memory here, so it is
    /// bounded unless asked otherwise).
    fn from_flags(mode: Option<&str>, retention: Option<&str>) -> Result<Compaction, String> {
        let Some(retention) = retention else {
            return Ok(if mode.is_some() { Compaction::Off } else { Compaction::KeepRevisions(100_000) });
        };
        match mode.unwrap_or("periodic") {
            "revision" => match retention.parse::<u64>() {
                Ok(0) => Ok(Compaction::Off),
                Ok(revisions) => Ok(Compaction::KeepRevisions(revisions)),
                Err(_) => Err(format!("--auto-compaction-retention: {retention:?} is not a number of revisions")),
            },
            "periodic" => match etcd_flags::retention_period(retention)? {
                period if period.is_zero() => Ok(Compaction::Off),
                period => Ok(Compaction::KeepPeriod(period)),
            },
            other => Err(format!("--auto-compaction-mode: {other:?} is neither periodic nor revision")),
        }
    }
}

/// Where the client TLS material is.
#[derive(Debug)]
struct TlsFiles {
    cert: PathBuf,
    key: PathBuf,
    trusted_ca: Option<PathBuf>,
    client_cert_auth: bool,
}

impl TlsFiles {
    /// The peer TLS settings, read from the files.
    fn load_peer(&self) -> Result<concord::PeerTls, String> {
        let read = |path: &PathBuf, flag: &str| {
            std::fs::read(path).map_err(|e| format!("cannot read {flag} {}: {e}", path.display()))
        };
        Ok(concord::PeerTls {
            cert_pem: read(&self.cert, "--peer-cert-file")?,
            key_pem: read(&self.key, "--peer-key-file")?,
            trusted_ca_pem: self.trusted_ca.as_ref().map(|ca| read(ca, "--peer-trusted-ca-file")).transpose()?,
            client_cert_auth: self.client_cert_auth,
        })
    }

    fn load(&self) -> Result<concord_etcd::tls::ClientTlsAcceptor, String> {
        let read = |path: &PathBuf, flag: &str| {
            std::fs::read(path).map_err(|e| format!("cannot read {flag} {}: {e}", path.display()))
        };
        concord_etcd::ClientTls {
            cert_pem: read(&self.cert, "--cert-file")?,
            key_pem: read(&self.key, "--key-file")?,
            client_ca_pem: self.trusted_ca.as_ref().map(|ca| read(ca, "--trusted-ca-file")).transpose()?,
            client_cert_required: self.client_cert_auth,
        }
        .acceptor()
    }
}

fn settings(args: ServeArgs, etcd: &etcd_flags::EtcdSettings) -> Result<Settings, String> {
    let file = match &args.config_file {
        Some(path) if path.extension().is_some_and(|e| e == "yml" || e == "yaml") => {
            return Err(format!(
                "config file {}: etcd's YAML config files are not read; give the settings as flags, \
                 ETCD_* variables, or a TOML file with the same keys",
                path.display()
            ));
        }
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read config file {}: {e}", path.display()))?;
            toml::from_str::<FileSettings>(&text).map_err(|e| format!("config file {}: {e}", path.display()))?
        }
        None => FileSettings::default(),
    };
    let client_url =
        args.listen_client_urls.or(file.listen_client_urls).unwrap_or_else(|| "http://127.0.0.1:2379".into());
    let listen_client = client_url
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(parse_client_url)
        .collect::<Result<Vec<_>, _>>()?;
    if listen_client.is_empty() {
        return Err("--listen-client-urls: no URL given".into());
    }
    let client_https = listen_client.iter().any(|(_, https)| *https);
    let trusted_ca = args.trusted_ca_file.or(file.trusted_ca_file);
    let client_cert_auth = args.client_cert_auth || file.client_cert_auth.unwrap_or(false);
    if client_cert_auth && trusted_ca.is_none() {
        return Err("--client-cert-auth needs --trusted-ca-file (the CA that signs the clients' certificates)".into());
    }
    let tls = match (client_https, args.cert_file.or(file.cert_file), args.key_file.or(file.key_file)) {
        (false, _, _) => None,
        (true, Some(cert), Some(key)) => Some(TlsFiles { cert, key, trusted_ca, client_cert_auth }),
        (true, _, _) => {
            return Err(format!(
                "TLS key/cert (--cert-file, --key-file) must be provided for client url {client_url} with HTTPS scheme"
            ));
        }
    };
    // Without an explicit advertise URL, the listen URL is advertised (with
    // the port actually bound, once known, if it was 0).
    let advertise = args.advertise_client_urls.or(file.advertise_client_urls).unwrap_or_default();
    let peer = (args.initial_advertise_peer_urls.or(file.initial_advertise_peer_urls))
        .unwrap_or_else(|| "http://localhost:2380".into());
    let peer_listen_url =
        args.listen_peer_urls.or(file.listen_peer_urls).unwrap_or_else(|| "http://127.0.0.1:2380".into());
    let (listen_peer, peer_https) = parse_listen_url(&peer_listen_url, "--listen-peer-urls")?;
    if peer.split(',').any(|u| u.trim().starts_with("https://")) != peer_https {
        return Err(format!(
            "--listen-peer-urls {peer_listen_url} and --initial-advertise-peer-urls {peer} disagree on https"
        ));
    }
    let peer_trusted_ca = args.peer_trusted_ca_file.or(file.peer_trusted_ca_file);
    let peer_client_cert_auth = args.peer_client_cert_auth || file.peer_client_cert_auth.unwrap_or(false);
    if peer_client_cert_auth && peer_trusted_ca.is_none() {
        return Err(
            "--peer-client-cert-auth needs --peer-trusted-ca-file (the CA that signs the members' certificates)".into(),
        );
    }
    let peer_tls = match (
        peer_https,
        args.peer_cert_file.or(file.peer_cert_file),
        args.peer_key_file.or(file.peer_key_file),
    ) {
        (false, _, _) => None,
        (true, Some(cert), Some(key)) => {
            Some(TlsFiles { cert, key, trusted_ca: peer_trusted_ca, client_cert_auth: peer_client_cert_auth })
        }
        (true, _, _) => {
            return Err(format!(
                "TLS key/cert (--peer-cert-file, --peer-key-file) must be provided for peer url {peer_listen_url} with HTTPS scheme"
            ));
        }
    };
    let initial_cluster = match args.initial_cluster.or(file.initial_cluster) {
        Some(spec) => concord::cluster::parse_initial_cluster(&spec)?,
        None => Vec::new(),
    };
    let join_existing = match args.initial_cluster_state.or(file.initial_cluster_state).as_deref() {
        None | Some("new") => false,
        Some("existing") => true,
        Some(other) => return Err(format!("--initial-cluster-state must be new or existing, not {other:?}")),
    };
    let metrics_url = args.listen_metrics_urls.or(file.listen_metrics_urls).unwrap_or_default();
    let listen_metrics =
        if metrics_url.is_empty() { None } else { Some(parse_url(&metrics_url, "--listen-metrics-urls")?) };
    Ok(Settings {
        name: args.name.or(file.name).unwrap_or_else(|| "default".into()),
        data_dir: args.data_dir.or(file.data_dir).unwrap_or_else(|| PathBuf::from("concord.data")),
        listen_client,
        advertise_client_urls: advertise.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect(),
        advertise_peer_urls: peer.split(',').map(|s| s.trim().to_string()).collect(),
        listen_peer,
        initial_cluster,
        join_existing,
        cluster_token: args
            .initial_cluster_token
            .or(file.initial_cluster_token)
            .unwrap_or_else(|| "etcd-cluster".into()),
        heartbeat_interval: args.heartbeat_interval.or(file.heartbeat_interval).unwrap_or(100),
        election_timeout: args.election_timeout.or(file.election_timeout).unwrap_or(300),
        listen_metrics,
        max_request_bytes: args.max_request_bytes.or(file.max_request_bytes).unwrap_or(1536 * 1024),
        max_concurrent_streams: args.max_concurrent_streams.or(file.max_concurrent_streams).unwrap_or(1024),
        space_quota: match args.quota_backend_bytes.or(file.quota_backend_bytes).unwrap_or(0) {
            0 => Some(concord::alarm::DEFAULT_QUOTA_BYTES),
            bytes if bytes < 0 => None,
            bytes => Some(bytes as u64),
        },
        compaction: Compaction::from_flags(
            etcd.auto_compaction_mode.as_deref().or(file.auto_compaction_mode.as_deref()),
            args.auto_compaction_retention
                .or(file.auto_compaction_retention.map(|v| match v {
                    toml::Value::String(s) => s,
                    other => other.to_string(),
                }))
                .as_deref(),
        )?,
        log_level: args.log_level.or(file.log_level).unwrap_or_else(|| "info,openraft=warn".into()),
        peer_dial_map: parse_dial_map(args.peer_dial_map.as_deref().unwrap_or(""))?,
        tls,
        peer_tls,
    })
}

/// `advertised=dialled,...` to a map.
fn parse_dial_map(spec: &str) -> Result<std::collections::HashMap<String, String>, String> {
    spec.split(',')
        .map(str::trim)
        .filter(|pair| !pair.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((from, to)) if !from.is_empty() && !to.is_empty() => Ok((from.to_string(), to.to_string())),
            _ => Err(format!("--peer-dial-map: {pair:?} is not advertised-url=dialled-url")),
        })
        .collect()
}

/// A client URL: its address, and whether it is `https`.
fn parse_client_url(url: &str) -> Result<(SocketAddr, bool), String> {
    parse_listen_url(url, "--listen-client-urls")
}

/// A listen URL: its address, and whether it is `https`.
fn parse_listen_url(url: &str, flag: &str) -> Result<(SocketAddr, bool), String> {
    match url.strip_prefix("https://") {
        Some(rest) => Ok((parse_url(&format!("http://{rest}"), flag)?, true)),
        None => Ok((parse_url(url, flag)?, false)),
    }
}

/// `http://host:port` (one URL) to a socket address. As etcd, a listen URL
/// names an IP address (or localhost).
fn parse_url(url: &str, flag: &str) -> Result<SocketAddr, String> {
    if url.contains(',') {
        return Err(format!("{flag}: only one URL is supported, got {url}"));
    }
    let rest = match url.split_once("://") {
        Some(("http", rest)) => rest,
        Some(("https", _)) => return Err(format!("{flag}: TLS (https) is not served here: {url}")),
        Some((scheme, _)) => return Err(format!("{flag}: unsupported scheme {scheme}: {url}")),
        None => url,
    };
    let hostport = rest.trim_end_matches('/');
    let hostport = hostport.replace("localhost", "127.0.0.1");
    hostport.parse().map_err(|_| format!("{flag}: {url} is not http://IP:PORT"))
}

pub async fn run(args: ServeArgs, etcd: etcd_flags::EtcdSettings) -> Result<(), String> {
    let settings = settings(args, &etcd)?;
    // Unreadable TLS files stop the server before it opens anything.
    let tls_config = settings.tls.as_ref().map(TlsFiles::load).transpose()?;
    let peer_tls = settings.peer_tls.as_ref().map(TlsFiles::load_peer).transpose()?;
    let filter = tracing_subscriber::EnvFilter::try_new(etcd_log_level(&settings.log_level))
        .map_err(|e| format!("--log-level {}: {e}", settings.log_level))?;
    use std::io::IsTerminal;
    if etcd.log_to_stdout {
        let colors = std::io::stdout().is_terminal();
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stdout).with_ansi(colors).init();
    } else {
        let colors = std::io::stderr().is_terminal();
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(colors).init();
    }
    for note in &etcd.notes {
        tracing::info!("{note}");
    }

    let metrics = Metrics::new();
    let (revisions, period) = match settings.compaction {
        Compaction::Off => (None, None),
        Compaction::KeepRevisions(revisions) => (Some(revisions), None),
        Compaction::KeepPeriod(period) => (None, Some(period)),
    };
    let config = Config::new(&settings.data_dir)
        .name(settings.name.clone())
        .auto_compaction_retention(revisions)
        .auto_compaction_period(period)
        .fsync_observer(metrics.fsync_observer())
        .heartbeat_interval(Duration::from_millis(settings.heartbeat_interval))
        .election_timeout(Duration::from_millis(settings.election_timeout))
        .cluster_token(settings.cluster_token.clone());
    let mut config = config;
    if let Some(entries) = etcd.snapshot_count {
        config.snapshot_after_entries = entries;
    }
    if let Some(ops) = etcd.max_txn_ops {
        config.limits.max_txn_ops = ops;
    }
    if let Some(interval) = etcd.watch_progress_notify_interval.filter(|i| !i.is_zero()) {
        config.watch_progress_interval = interval;
    }
    config.advertise_peer_urls = settings.advertise_peer_urls.clone();
    config.initial_cluster = settings.initial_cluster.clone();
    config.join_existing = settings.join_existing;
    config.peer_dial_map = settings.peer_dial_map.clone();
    config.peer_tls = peer_tls;
    if let Some(storage) = concord::failpoints::storage_from_env() {
        tracing::warn!(
            control = ?std::env::var_os(concord::failpoints::CONTROL_FILE_VAR),
            "failpoints compiled in: the data files' fsyncs obey the control file"
        );
        config.storage = Some(storage);
    }
    config.limits.max_value_bytes = settings.max_request_bytes;
    config.limits.max_request_bytes = settings.max_request_bytes;
    config.space_quota = settings.space_quota;

    let mut client_listeners = Vec::with_capacity(settings.listen_client.len());
    for (addr, https) in &settings.listen_client {
        let listener = TcpListener::bind(addr).await.map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        client_listeners.push((listener, *https));
    }
    let metrics_listener = match settings.listen_metrics {
        Some(addr) => Some(TcpListener::bind(addr).await.map_err(|e| format!("cannot listen on {addr}: {e}"))?),
        None => None,
    };
    // Bound before opening, so that a port 0 is known (and reported) and the
    // member serves peers from the moment Raft starts.
    let peer_socket = std::net::TcpListener::bind(settings.listen_peer)
        .map_err(|e| format!("cannot listen for peers on {}: {e}", settings.listen_peer))?;
    let peer_addr = peer_socket.local_addr().map_err(|e| e.to_string())?;
    config.listen_peer = Some(concord::PeerListen::Bound(std::sync::Arc::new(peer_socket)));
    // Without an explicit advertise URL, the listen URLs are advertised
    // (with the ports actually bound, where they were 0).
    let mut bound_urls = Vec::with_capacity(client_listeners.len());
    for (listener, https) in &client_listeners {
        let scheme = if *https { "https" } else { "http" };
        bound_urls.push(format!("{scheme}://{}", listener.local_addr().map_err(|e| e.to_string())?));
    }
    let client_urls =
        if settings.advertise_client_urls.is_empty() { bound_urls } else { settings.advertise_client_urls.clone() };
    config.advertise_client_urls = client_urls.clone();
    let db =
        Concord::open_with(config).await.map_err(|e| format!("cannot open {}: {e}", settings.data_dir.display()))?;
    tracing::info!(addr = %peer_addr, member = %format!("{:x}", db.member_id()), "serving peers");

    let (stop_tx, stop_rx) = watch::channel(false);
    {
        let db = db.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = wait_for_signal() => tracing::info!("shutting down: finishing in-flight requests"),
                // As etcd's: a removed member stops serving and exits (0, so
                // that a supervisor does not restart it into the refusal).
                _ = db.removed() => tracing::warn!("this member was removed from the cluster; exiting"),
            }
            let _ = stop_tx.send(true);
        });
    }

    if let Some(listener) = metrics_listener {
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        tracing::info!(%addr, "serving /health and /metrics");
        let app = concord_etcd::http::routes(db.clone(), metrics.clone());
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let shutdown = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(shutdown).await {
                tracing::error!(error = %e, "metrics endpoint failed");
            }
        });
    }

    let options = ServerOptions {
        max_request_bytes: settings.max_request_bytes,
        max_concurrent_streams: settings.max_concurrent_streams,
        urls: MemberUrls { client_urls, peer_urls: settings.advertise_peer_urls },
        tls: None,
    };
    let servers = client_listeners.into_iter().map(|(listener, https)| {
        let addr = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
        tracing::info!(%addr, tls = https, name = %settings.name, data_dir = %settings.data_dir.display(), "serving the etcd v3 API");
        let options = ServerOptions { tls: if https { tls_config.clone() } else { None }, ..options.clone() };
        let mut stop = stop_rx.clone();
        let shutdown = async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        concord_etcd::serve(db.clone(), listener, options, metrics.clone(), shutdown)
    });
    let served = futures_util::future::join_all(servers).await;
    let closed = db.shutdown().await;
    tracing::info!("stopped");
    for result in served {
        result.map_err(|e| format!("gRPC server failed: {e}"))?;
    }
    closed.map_err(|e| format!("shutdown: {e}"))
}

/// etcd's `--log-level` values as filters (`panic` and `fatal` log errors).
fn etcd_log_level(level: &str) -> &str {
    match level {
        "panic" | "fatal" | "dpanic" => "error",
        other => other,
    }
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_beat_the_file_which_beats_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("concord.toml");
        std::fs::write(&file, "name = \"from-file\"\ndata-dir = \"/tmp/file-dir\"\nmax-request-bytes = 1000\n")
            .unwrap();
        let args = ServeArgs { name: Some("from-flag".into()), config_file: Some(file), ..Default::default() };
        let s = settings(args, &Default::default()).unwrap();
        assert_eq!(s.name, "from-flag");
        assert_eq!(s.data_dir, PathBuf::from("/tmp/file-dir"));
        assert_eq!(s.max_request_bytes, 1000);
        assert_eq!(s.listen_client, vec![("127.0.0.1:2379".parse().unwrap(), false)]);
    }

    /// etcd's `--quota-backend-bytes`: 0 is the default (2 GiB), a negative
    /// value disables the quota.
    #[test]
    fn the_quota_flag_reads_as_etcds() {
        let quota = |bytes: Option<i64>| {
            settings(ServeArgs { quota_backend_bytes: bytes, ..Default::default() }, &Default::default())
                .unwrap()
                .space_quota
        };
        assert_eq!(quota(None), Some(2 * 1024 * 1024 * 1024));
        assert_eq!(quota(Some(0)), Some(2 * 1024 * 1024 * 1024));
        assert_eq!(quota(Some(1_000_000)), Some(1_000_000));
        assert_eq!(quota(Some(-1)), None);
    }

    /// etcd's two compaction flags: periodic by default (hours or a
    /// duration), revision counts in revision mode, 0 off; with neither,
    /// Concord's bounded default.
    #[test]
    fn compaction_flags_read_as_etcds() {
        use Compaction::*;
        let hour = Duration::from_secs(3600);
        assert_eq!(Compaction::from_flags(None, None), Ok(KeepRevisions(100_000)));
        assert_eq!(Compaction::from_flags(None, Some("1")), Ok(KeepPeriod(hour)));
        assert_eq!(Compaction::from_flags(Some("periodic"), Some("30m")), Ok(KeepPeriod(hour / 2)));
        assert_eq!(Compaction::from_flags(Some("revision"), Some("1000")), Ok(KeepRevisions(1000)));
        assert_eq!(Compaction::from_flags(Some("revision"), Some("0")), Ok(Off));
        assert_eq!(Compaction::from_flags(None, Some("0")), Ok(Off));
        assert_eq!(Compaction::from_flags(Some("revision"), None), Ok(Off));
        assert!(Compaction::from_flags(Some("revision"), Some("1h")).is_err());
        assert!(Compaction::from_flags(Some("hourly"), Some("1")).is_err());
    }

    #[test]
    fn urls_are_checked() {
        assert_eq!(parse_url("http://127.0.0.1:1234", "x").unwrap(), "127.0.0.1:1234".parse().unwrap());
        assert_eq!(parse_url("http://localhost:1234/", "x").unwrap(), "127.0.0.1:1234".parse().unwrap());
        assert!(parse_url("https://127.0.0.1:1", "x").unwrap_err().contains("TLS"));
        assert_eq!(parse_listen_url("https://127.0.0.1:1", "x").unwrap(), ("127.0.0.1:1".parse().unwrap(), true));
        assert!(parse_url("http://a:1,http://b:2", "x").is_err());
        assert!(parse_url("http://nohost", "x").is_err());
    }

    #[test]
    fn unknown_config_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "data_dir = \"x\"\n").unwrap();
        let err =
            settings(ServeArgs { config_file: Some(file), ..Default::default() }, &Default::default()).unwrap_err();
        assert!(err.contains("unknown field"), "{err}");
    }
}
