//! etcd 3.4's command line and `ETCD_*` environment, so that a member
//! started the way etcd is started (a unit file, a container's environment,
//! a kubeadm-style manifest) starts as Concord unchanged — or stops at once
//! saying why.
//!
//! Runs before clap parses `concord serve`'s own flags. Every etcd flag is
//! one of:
//! - **served**: `concord serve` has the flag, with etcd's meaning. An
//!   `ETCD_X` variable is used for it when neither `--x` nor `CONCORD_X`
//!   is given (flags beat `CONCORD_*`, which beat `ETCD_*`), and etcd's
//!   `--flag=true|false` spelling of a switch is accepted;
//! - **mapped**: etcd's meaning, set from here (`EtcdSettings`);
//! - **without effect**: what it tunes does not exist in Concord (pprof, log
//!   encoding, bbolt batching): accepted, and named once in the start-up log;
//! - **refused**: running without it would quietly differ from what was
//!   asked (self-signed or revocation-checked TLS, a separate WAL
//!   directory, no fsync, discovery): the server does not start and says
//!   what to do instead.
//!
//! A flag etcd 3.4 does not have is left to clap, which refuses it.

use std::ffi::OsString;
use std::time::Duration;

/// What the etcd flags that `concord serve` has no flag of its own set.
#[derive(Debug, Default, PartialEq)]
pub struct EtcdSettings {
    /// `--snapshot-count`: applied entries between snapshots.
    pub snapshot_count: Option<u64>,
    /// `--max-txn-ops`.
    pub max_txn_ops: Option<usize>,
    /// `--auto-compaction-mode`: `periodic` (etcd's default) or `revision`.
    pub auto_compaction_mode: Option<String>,
    /// `--experimental-watch-progress-notify-interval`.
    pub watch_progress_notify_interval: Option<Duration>,
    /// `--log-outputs=stdout`.
    pub log_to_stdout: bool,
    /// One line per flag accepted without effect, for the start-up log.
    pub notes: Vec<String>,
}

enum Kind {
    /// `concord serve` has it; `switch`: a boolean etcd writes as `--x=true`.
    Served {
        switch: bool,
    },
    Mapped,
    /// Accepted without effect; `switch`: a boolean (takes no value).
    NoEffect {
        switch: bool,
        why: &'static str,
    },
    /// Refused when given (a switch: when true), with what to do instead.
    Refused {
        switch: bool,
        why: &'static str,
    },
}

use Kind::*;

const PEER_TLS: &str = "not supported: members check each other's certificates against \
     --peer-trusted-ca-file only (no revocation lists, no name or CN rules, no self-signed certificates)";

/// etcd 3.4's flags (`etcd --help`), but for those clap refuses anyway.
const FLAGS: &[(&str, Kind)] = &[
    ("name", Served { switch: false }),
    ("data-dir", Served { switch: false }),
    ("listen-client-urls", Served { switch: false }),
    ("advertise-client-urls", Served { switch: false }),
    ("listen-peer-urls", Served { switch: false }),
    ("initial-advertise-peer-urls", Served { switch: false }),
    ("initial-cluster", Served { switch: false }),
    ("initial-cluster-state", Served { switch: false }),
    ("initial-cluster-token", Served { switch: false }),
    ("heartbeat-interval", Served { switch: false }),
    ("election-timeout", Served { switch: false }),
    ("listen-metrics-urls", Served { switch: false }),
    ("max-request-bytes", Served { switch: false }),
    ("quota-backend-bytes", Served { switch: false }),
    ("auto-compaction-retention", Served { switch: false }),
    ("log-level", Served { switch: false }),
    ("cert-file", Served { switch: false }),
    ("key-file", Served { switch: false }),
    ("trusted-ca-file", Served { switch: false }),
    ("client-cert-auth", Served { switch: true }),
    ("config-file", Served { switch: false }),
    ("snapshot-count", Mapped),
    ("max-txn-ops", Mapped),
    ("auto-compaction-mode", Mapped),
    ("experimental-watch-progress-notify-interval", Mapped),
    ("log-outputs", Mapped),
    ("logger", NoEffect { switch: false, why: "Concord logs through tracing, as text" }),
    ("debug", NoEffect { switch: true, why: "use --log-level=debug" }),
    ("enable-pprof", NoEffect { switch: true, why: "no pprof endpoints; profile with perf" }),
    ("metrics", NoEffect { switch: false, why: "/metrics serves one set of metrics" }),
    ("strict-reconfig-check", NoEffect { switch: true, why: "membership changes are always checked strictly" }),
    ("auth-token", NoEffect { switch: false, why: "Concord issues etcd's simple tokens only" }),
    ("bcrypt-cost", NoEffect { switch: false, why: "passwords are hashed at Concord's bcrypt cost" }),
    ("cipher-suites", NoEffect { switch: false, why: "rustls' TLS 1.2/1.3 AEAD suites are used" }),
    ("enable-grpc-gateway", NoEffect { switch: true, why: "the JSON gateway is always served" }),
    ("grpc-keepalive-min-time", NoEffect { switch: false, why: "gRPC keepalive is not tuned" }),
    ("grpc-keepalive-interval", NoEffect { switch: false, why: "gRPC keepalive is not tuned" }),
    ("grpc-keepalive-timeout", NoEffect { switch: false, why: "gRPC keepalive is not tuned" }),
    ("max-snapshots", NoEffect { switch: false, why: "Concord keeps one snapshot" }),
    ("max-wals", NoEffect { switch: false, why: "Concord purges its log after each snapshot" }),
    ("backend-batch-interval", NoEffect { switch: false, why: "no bbolt backend" }),
    ("backend-batch-limit", NoEffect { switch: false, why: "no bbolt backend" }),
    ("experimental-backend-bbolt-freelist-type", NoEffect { switch: false, why: "no bbolt backend" }),
    ("experimental-initial-corrupt-check", NoEffect { switch: true, why: "members compare hashes with HashKV" }),
    ("experimental-corrupt-check-time", NoEffect { switch: false, why: "members compare hashes with HashKV" }),
    ("experimental-compaction-batch-limit", NoEffect { switch: false, why: "compaction runs in small steps" }),
    ("experimental-enable-lease-checkpoint", NoEffect { switch: true, why: "leases are always checkpointed" }),
    (
        "experimental-peer-skip-client-san-verification",
        NoEffect { switch: true, why: "peers' client SANs are not checked" },
    ),
    ("pre-vote", NoEffect { switch: true, why: "openraft's leader lease keeps a healthy leader in place" }),
    ("initial-election-tick-advance", NoEffect { switch: true, why: "elections follow --election-timeout" }),
    ("cors", NoEffect { switch: false, why: "no browser API" }),
    ("host-whitelist", NoEffect { switch: false, why: "no v2 HTTP API" }),
    ("proxy-failure-wait", NoEffect { switch: false, why: "no proxy mode" }),
    ("proxy-refresh-interval", NoEffect { switch: false, why: "no proxy mode" }),
    ("proxy-dial-timeout", NoEffect { switch: false, why: "no proxy mode" }),
    ("proxy-write-timeout", NoEffect { switch: false, why: "no proxy mode" }),
    ("proxy-read-timeout", NoEffect { switch: false, why: "no proxy mode" }),
    ("peer-cert-file", Served { switch: false }),
    ("peer-key-file", Served { switch: false }),
    ("peer-trusted-ca-file", Served { switch: false }),
    ("peer-client-cert-auth", Served { switch: true }),
    ("peer-auto-tls", Refused { switch: true, why: PEER_TLS }),
    ("peer-crl-file", Refused { switch: false, why: PEER_TLS }),
    ("peer-cert-allowed-cn", Refused { switch: false, why: PEER_TLS }),
    ("peer-cert-allowed-hostname", Refused { switch: false, why: PEER_TLS }),
    (
        "auto-tls",
        Refused { switch: true, why: "self-signed certificates are not made; give --cert-file and --key-file" },
    ),
    ("client-crl-file", Refused { switch: false, why: "certificate revocation lists are not supported" }),
    ("client-cert-allowed-hostname", Refused { switch: false, why: "client certificates are not matched by hostname" }),
    (
        "force-new-cluster",
        Refused {
            switch: true,
            why: "not supported; to recover a cluster that lost its quorum, restore one member from a snapshot \
                  (concord snapshot restore) and add the others back",
        },
    ),
    (
        "wal-dir",
        Refused { switch: false, why: "the log lives in --data-dir; a separate WAL directory is not supported" },
    ),
    ("unsafe-no-fsync", Refused { switch: true, why: "not supported: every acknowledged write is fsynced" }),
    ("enable-v2", Refused { switch: true, why: "the v2 API is not served (etcd 3.4's default is off)" }),
    ("experimental-enable-v2v3", Refused { switch: false, why: "the v2 API is not served" }),
    (
        "discovery",
        Refused { switch: false, why: "discovery is not supported; list the members with --initial-cluster" },
    ),
    (
        "discovery-srv",
        Refused { switch: false, why: "discovery is not supported; list the members with --initial-cluster" },
    ),
    ("discovery-srv-name", Refused { switch: false, why: "discovery is not supported" }),
    ("discovery-fallback", Refused { switch: false, why: "discovery is not supported" }),
    ("discovery-proxy", Refused { switch: false, why: "discovery is not supported" }),
    ("proxy", Refused { switch: false, why: "proxy mode is not supported" }),
];

fn kind(flag: &str) -> Option<&'static Kind> {
    FLAGS.iter().find(|(name, _)| *name == flag).map(|(_, kind)| kind)
}

/// etcd's boolean spellings.
fn truth(value: &str, flag: &str) -> Result<bool, String> {
    match value {
        "true" | "1" | "t" | "T" | "TRUE" | "True" => Ok(true),
        "false" | "0" | "f" | "F" | "FALSE" | "False" => Ok(false),
        _ => Err(format!("--{flag}: {value:?} is not true or false")),
    }
}

/// `ETCD_DATA_DIR` → `data-dir`.
fn flag_of_env(var: &str) -> Option<String> {
    Some(var.strip_prefix("ETCD_")?.to_ascii_lowercase().replace('_', "-"))
}

/// Splits `concord serve`'s arguments (after `serve`) into what clap parses
/// and what is set here; `env` is the process environment.
pub fn extract(args: Vec<OsString>, env: &[(String, String)]) -> Result<(Vec<OsString>, EtcdSettings), String> {
    let mut kept = Vec::with_capacity(args.len());
    let mut settings = EtcdSettings::default();
    let mut given: Vec<String> = Vec::new();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let Some(text) = arg.to_str().and_then(|a| a.strip_prefix("--")).map(str::to_string) else {
            kept.push(arg);
            continue;
        };
        let (flag, inline) = match text.split_once('=') {
            Some((f, v)) => (f.to_string(), Some(v.to_string())),
            None => (text.clone(), None),
        };
        let Some(kind) = kind(&flag) else {
            kept.push(arg);
            continue;
        };
        given.push(flag.clone());
        let switch =
            matches!(kind, Served { switch: true } | NoEffect { switch: true, .. } | Refused { switch: true, .. });
        let value = match inline {
            Some(v) => v,
            None if switch => "true".into(),
            None => match args.next() {
                Some(v) => v.into_string().map_err(|_| format!("--{flag}: the value is not UTF-8"))?,
                None => return Err(format!("--{flag} needs a value")),
            },
        };
        apply(&flag, kind, &value, &mut kept, &mut settings)?;
    }
    // ETCD_* variables, for flags given neither way.
    for (var, value) in env {
        let Some(flag) = flag_of_env(var) else { continue };
        let Some(kind) = kind(&flag) else {
            settings.notes.push(format!("{var} is not an etcd 3.4 setting Concord knows; ignored"));
            continue;
        };
        let concord_var = format!("CONCORD_{}", &var["ETCD_".len()..]);
        if given.contains(&flag) || env.iter().any(|(v, _)| *v == concord_var) {
            continue;
        }
        apply(&flag, kind, value, &mut kept, &mut settings)?;
    }
    Ok((kept, settings))
}

fn apply(
    flag: &str,
    kind: &Kind,
    value: &str,
    kept: &mut Vec<OsString>,
    settings: &mut EtcdSettings,
) -> Result<(), String> {
    match kind {
        Served { switch: true } => {
            if truth(value, flag)? {
                kept.push(format!("--{flag}").into());
            }
        }
        Served { switch: false } => kept.push(format!("--{flag}={value}").into()),
        Mapped => map(flag, value, settings)?,
        NoEffect { switch, why } => {
            if !*switch || truth(value, flag)? {
                settings.notes.push(format!("--{flag}={value} has no effect: {why}"));
            }
        }
        Refused { switch, why } => {
            if !*switch || truth(value, flag)? {
                return Err(format!("--{flag}: {why}"));
            }
        }
    }
    Ok(())
}

fn map(flag: &str, value: &str, settings: &mut EtcdSettings) -> Result<(), String> {
    let number = |v: &str| v.parse::<u64>().map_err(|_| format!("--{flag}: {v:?} is not a number"));
    match flag {
        "snapshot-count" => settings.snapshot_count = Some(number(value)?.max(1)),
        "max-txn-ops" => settings.max_txn_ops = Some(number(value)? as usize),
        "auto-compaction-mode" => match value {
            "periodic" | "revision" => settings.auto_compaction_mode = Some(value.to_string()),
            other => return Err(format!("--auto-compaction-mode: {other:?} is neither periodic nor revision")),
        },
        "experimental-watch-progress-notify-interval" => {
            settings.watch_progress_notify_interval = Some(go_duration(value).map_err(|e| format!("--{flag}: {e}"))?)
        }
        "log-outputs" => match value {
            "default" | "stderr" => {}
            "stdout" => settings.log_to_stdout = true,
            other => return Err(format!("--log-outputs: {other:?}: Concord logs to stderr or stdout only")),
        },
        _ => unreachable!("every mapped flag is handled: {flag}"),
    }
    Ok(())
}

/// A Go duration (`time.ParseDuration`): `300ms`, `1.5h`, `2h45m`.
pub fn go_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("{text:?} is not a duration like 10m, 1h or 500ms");
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let mut rest = text;
    let mut total = 0f64;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).ok_or_else(bad)?;
        let amount: f64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let seconds = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        total += amount * seconds;
        rest = &rest[unit_len..];
    }
    Ok(Duration::from_secs_f64(total))
}

/// etcd's `--auto-compaction-retention` in periodic mode: a bare number is
/// hours, anything else a Go duration.
pub fn retention_period(value: &str) -> Result<Duration, String> {
    match value.parse::<u64>() {
        Ok(hours) => Ok(Duration::from_secs(hours * 3600)),
        Err(_) => go_duration(value).map_err(|e| format!("--auto-compaction-retention: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str], env: &[(&str, &str)]) -> Result<(Vec<String>, EtcdSettings), String> {
        let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let (kept, settings) = extract(args.iter().map(OsString::from).collect(), &env)?;
        Ok((kept.into_iter().map(|a| a.into_string().unwrap()).collect(), settings))
    }

    /// A kubeadm-style command line: served flags pass (switches in etcd's
    /// `=true` spelling), mapped ones are read, no-effect ones noted.
    #[test]
    fn an_etcd_command_line_is_taken() {
        let (kept, s) = run(
            &[
                "--name=m1",
                "--data-dir",
                "/var/lib/etcd",
                "--client-cert-auth=true",
                "--snapshot-count=10000",
                "--max-txn-ops",
                "256",
                "--experimental-initial-corrupt-check=true",
                "--logger=zap",
                "--enable-v2=false",
                "--auto-compaction-mode=revision",
                "--experimental-watch-progress-notify-interval=5s",
            ],
            &[],
        )
        .unwrap();
        assert_eq!(kept, ["--name=m1", "--data-dir=/var/lib/etcd", "--client-cert-auth"]);
        assert_eq!(s.snapshot_count, Some(10000));
        assert_eq!(s.max_txn_ops, Some(256));
        assert_eq!(s.auto_compaction_mode.as_deref(), Some("revision"));
        assert_eq!(s.watch_progress_notify_interval, Some(Duration::from_secs(5)));
        assert_eq!(s.notes.len(), 2, "{:?}", s.notes);
        let (kept, _) = run(&["--client-cert-auth=false", "--unknown-flag"], &[]).unwrap();
        assert_eq!(kept, ["--unknown-flag"], "a false switch is dropped; clap refuses what etcd lacks");
    }

    /// Flags beat CONCORD_* beats ETCD_*; unknown ETCD_* variables are noted.
    #[test]
    fn etcd_environment_variables_fill_in() {
        let env = [
            ("ETCD_NAME", "from-env"),
            ("ETCD_DATA_DIR", "/data"),
            ("CONCORD_DATA_DIR", "/concord"),
            ("ETCD_CLIENT_CERT_AUTH", "true"),
            ("ETCD_SNAPSHOT_COUNT", "500"),
            ("ETCD_UNHEARD_OF", "x"),
            ("PATH", "/bin"),
        ];
        let (kept, s) = run(&["--name=flag"], &env).unwrap();
        assert_eq!(kept, ["--name=flag", "--client-cert-auth"]);
        assert_eq!(s.snapshot_count, Some(500));
        assert_eq!(s.notes, ["ETCD_UNHEARD_OF is not an etcd 3.4 setting Concord knows; ignored"]);
    }

    #[test]
    fn what_would_quietly_differ_is_refused() {
        for args in [
            &["--peer-crl-file=/p.crl"][..],
            &["--peer-auto-tls=true"],
            &["--force-new-cluster"],
            &["--wal-dir", "/wal"],
            &["--unsafe-no-fsync=true"],
            &["--enable-v2=true"],
            &["--discovery=https://discovery.etcd.io/x"],
            &["--auto-compaction-mode=sometimes"],
            &["--log-outputs=/var/log/etcd.log"],
            &["--snapshot-count"],
        ] {
            let err = run(args, &[]).unwrap_err();
            assert!(err.starts_with("--"), "{args:?}: {err}");
        }
        assert!(run(&[], &[("ETCD_PEER_CERT_ALLOWED_CN", "m")]).unwrap_err().contains("--peer-trusted-ca-file only"));
        assert!(run(&["--peer-auto-tls=false", "--force-new-cluster=false"], &[]).is_ok());
    }

    #[test]
    fn durations_read_as_go_and_etcd_read_them() {
        assert_eq!(go_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(go_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(go_duration("1.5h").unwrap(), Duration::from_secs(5400));
        assert_eq!(go_duration("0").unwrap(), Duration::ZERO);
        assert!(go_duration("10").is_err());
        assert!(go_duration("10x").is_err());
        assert_eq!(retention_period("1").unwrap(), Duration::from_secs(3600));
        assert_eq!(retention_period("30m").unwrap(), Duration::from_secs(1800));
        assert!(retention_period("soon").is_err());
    }
}
