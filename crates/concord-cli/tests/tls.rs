//! TLS as etcd serves it. Clients: an `https` client URL with `--cert-file`
//! and `--key-file`; with `--trusted-ca-file` and `--client-cert-auth`, only
//! clients with a certificate the CA signed get in. Checked with the real
//! etcdctl and its `--cacert` / `--cert` / `--key`; certificates are made
//! for the test (a CA, a server certificate for 127.0.0.1, a client one).
//! Members: `https` peer URLs with etcd's `--peer-*` flags.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, run_bounded, stderr, stdout};
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};

/// PEM files in `dir`: ca.pem, server.pem/server.key, client.pem/client.key,
/// and other-ca.pem (a CA that signed nothing here). The CA, to sign more.
fn certificates(dir: &Path) -> (rcgen::Certificate, KeyPair) {
    let ca = |name: &str| {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        let cert = params.self_signed(&key).unwrap();
        std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).unwrap();
        (cert, key)
    };
    let signer = ca("ca");
    ca("other-ca");
    signed(dir, &signer, "server", vec!["127.0.0.1".to_string(), "localhost".into()], Some("server"));
    signed(dir, &signer, "client", vec![], Some("client"));
    signer
}

/// `dir/name.pem` and `dir/name.key`: a certificate for `sans`, with
/// `common_name` (or none) as its subject's CN, signed by `ca`.
fn signed(dir: &Path, ca: &(rcgen::Certificate, KeyPair), name: &str, sans: Vec<String>, common_name: Option<&str>) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(sans).unwrap();
    // rcgen's default subject is a CN of its own ("rcgen self signed cert").
    params.distinguished_name = rcgen::DistinguishedName::new();
    if let Some(cn) = common_name {
        params.distinguished_name.push(rcgen::DnType::CommonName, cn);
    } else {
        params.distinguished_name.push(rcgen::DnType::OrganizationName, "no common name");
    }
    let cert = params.signed_by(&key, &ca.0, &ca.1).unwrap();
    std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).unwrap();
    std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).unwrap();
}

struct TlsServer {
    child: Child,
    endpoint: String,
    dir: PathBuf,
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl TlsServer {
    fn start(dir: &Path, extra: &[String]) -> TlsServer {
        let port = free_port();
        let log = std::fs::File::create(dir.join("server.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_concord"))
            .arg("serve")
            .arg("--data-dir")
            .arg(dir.join("data"))
            .arg(format!("--listen-client-urls=https://127.0.0.1:{port}"))
            .arg("--listen-peer-urls=http://127.0.0.1:0")
            .arg(format!("--cert-file={}", dir.join("server.pem").display()))
            .arg(format!("--key-file={}", dir.join("server.key").display()))
            .args(extra)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        TlsServer { child, endpoint: format!("https://127.0.0.1:{port}"), dir: dir.to_path_buf() }
    }

    /// Concord's own client subcommands, with `tls` flags.
    fn concord(&self, tls: &[&str], args: &[&str]) -> std::process::Output {
        let tls: Vec<String> = tls.iter().map(|a| a.replace("{dir}", &self.dir.display().to_string())).collect();
        run_bounded(
            Command::new(env!("CARGO_BIN_EXE_concord"))
                .args(args)
                .arg(format!("--endpoints={}", self.endpoint))
                .args(&tls),
        )
    }

    fn etcdctl(&self, tls: &[&str], args: &[&str]) -> std::process::Output {
        let tls: Vec<String> = tls.iter().map(|a| a.replace("{dir}", &self.dir.display().to_string())).collect();
        run_bounded(
            Command::new(common::etcdctl_path())
                .env("ETCDCTL_API", "3")
                .arg(format!("--endpoints={}", self.endpoint))
                .arg("--dial-timeout=2s")
                .arg("--command-timeout=5s")
                .args(&tls)
                .args(args),
        )
    }

    /// Waits until etcdctl with `tls` can write.
    fn wait_ready(&mut self, tls: &[&str]) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if self.etcdctl(tls, &["put", "ready", "yes"]).status.success() {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "concord serve exited ({status}): {}",
                    std::fs::read_to_string(self.dir.join("server.log")).unwrap()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("no TLS answer: {}", std::fs::read_to_string(self.dir.join("server.log")).unwrap());
    }
}

#[test]
fn clients_reach_an_https_url_with_the_servers_ca() {
    let dir = tempfile::tempdir().unwrap();
    certificates(dir.path());
    let mut s = TlsServer::start(dir.path(), &[]);
    let ca = ["--cacert={dir}/ca.pem"];
    s.wait_ready(&ca);
    let got = s.etcdctl(&ca, &["get", "ready", "--print-value-only"]);
    assert_eq!(stdout(&got), "yes\n", "{}", stderr(&got));
    // The member advertises its https URL.
    let members = s.etcdctl(&ca, &["member", "list"]);
    assert!(stdout(&members).contains(&s.endpoint), "{}", stdout(&members));
    // HTTP/1.1 over TLS too, on the same port (health probes, the JSON gateway).
    for http in ["--http1.1", "--http2"] {
        let health = run_bounded(Command::new("curl").args([
            "-sS",
            http,
            "--cacert",
            dir.path().join("ca.pem").to_str().unwrap(),
            &format!("{}/health", s.endpoint),
        ]));
        assert_eq!(stdout(&health).trim_end(), r#"{"health":"true"}"#, "{http}: {}", stderr(&health));
    }
    // Concord's own client, and a backup over TLS.
    let put = s.concord(&ca, &["put", "by-concord", "v"]);
    assert!(put.status.success(), "{}", stderr(&put));
    assert_eq!(stdout(&s.concord(&ca, &["get", "by-concord"])).trim_end(), "by-concord\nv");
    let backup = dir.path().join("backup.db");
    let saved = s.concord(&ca, &["snapshot", "save", backup.to_str().unwrap()]);
    assert!(saved.status.success(), "{}", stderr(&saved));
    // A client that does not trust the server's CA is refused.
    let untrusted = s.etcdctl(&["--cacert={dir}/other-ca.pem"], &["get", "ready"]);
    assert!(!untrusted.status.success());
    // Plain HTTP/2 to the TLS port gets nowhere.
    let plain = run_bounded(
        Command::new(common::etcdctl_path())
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", s.endpoint.replace("https://", "http://")))
            .args(["--dial-timeout=2s", "--command-timeout=3s", "get", "ready"]),
    );
    assert!(!plain.status.success());
}

#[test]
fn client_cert_auth_admits_only_clients_the_ca_signed() {
    let dir = tempfile::tempdir().unwrap();
    certificates(dir.path());
    let ca_flag = format!("--trusted-ca-file={}", dir.path().join("ca.pem").display());
    let mut s = TlsServer::start(dir.path(), &[ca_flag, "--client-cert-auth".into()]);
    let with_cert = ["--cacert={dir}/ca.pem", "--cert={dir}/client.pem", "--key={dir}/client.key"];
    s.wait_ready(&with_cert);
    let got = s.etcdctl(&with_cert, &["get", "ready", "--print-value-only"]);
    assert_eq!(stdout(&got), "yes\n", "{}", stderr(&got));
    let without = s.etcdctl(&["--cacert={dir}/ca.pem"], &["get", "ready"]);
    assert!(!without.status.success(), "a client without a certificate got in");
    let by_concord = s.concord(&with_cert, &["get", "ready"]);
    assert_eq!(stdout(&by_concord).trim_end(), "ready\nyes", "{}", stderr(&by_concord));
    assert!(!s.concord(&["--cacert={dir}/ca.pem"], &["get", "ready"]).status.success());
}

/// Under `--client-cert-auth`, a request that carries no token is from the
/// user its client certificate's common name names, as etcd has it: no
/// password, that user's permissions (a root certificate administers); a
/// certificate without a CN, or naming no user, gets nothing; a token
/// (`--user`) wins over the certificate. The JSON gateway counts only
/// tokens, as etcd's.
#[test]
fn a_client_certificates_common_name_is_the_user_under_client_cert_auth() {
    let dir = tempfile::tempdir().unwrap();
    let ca = certificates(dir.path());
    for (name, common_name) in
        [("alice", Some("alice")), ("root", Some("root")), ("nameless", None), ("mallory", Some("mallory"))]
    {
        signed(dir.path(), &ca, name, vec![], common_name);
    }
    let ca_flag = format!("--trusted-ca-file={}", dir.path().join("ca.pem").display());
    let mut s = TlsServer::start(dir.path(), &[ca_flag, "--client-cert-auth".into()]);
    let tls = |name: &str| {
        ["--cacert={dir}/ca.pem".to_string(), format!("--cert={{dir}}/{name}.pem"), format!("--key={{dir}}/{name}.key")]
    };
    let client = tls("client");
    s.wait_ready(&client.iter().map(String::as_str).collect::<Vec<_>>());
    let with = |name: &str, args: &[&str]| {
        let tls = tls(name);
        s.etcdctl(&tls.iter().map(String::as_str).collect::<Vec<_>>(), args)
    };
    let ok = |out: std::process::Output| {
        assert!(out.status.success(), "etcdctl failed: {}{}", stdout(&out), stderr(&out));
        stdout(&out)
    };
    let refused = |out: std::process::Output| {
        assert!(!out.status.success(), "expected a refusal, got: {}", stdout(&out));
        stderr(&out).lines().filter(|l| l.starts_with("Error:")).collect::<Vec<_>>().join("\n")
    };
    for args in [
        &["user", "add", "root", "--new-user-password=rootpw"][..],
        &["user", "add", "alice", "--new-user-password=alicepw"],
        &["role", "add", "e"],
        &["role", "grant-permission", "e", "readwrite", "e/", "--prefix"],
        &["user", "grant-role", "alice", "e"],
        &["put", "secret/x", "0"],
        &["auth", "enable"],
    ] {
        ok(with("client", args));
    }

    // alice's certificate: alice, without a password.
    assert_eq!(ok(with("alice", &["put", "e/x", "1"])), "OK\n");
    assert_eq!(ok(with("alice", &["get", "e/x", "--print-value-only"])), "1\n");
    assert_eq!(refused(with("alice", &["put", "secret/x", "1"])), "Error: etcdserver: permission denied");
    assert_eq!(refused(with("alice", &["get", "secret/", "--prefix"])), "Error: etcdserver: permission denied");
    assert_eq!(refused(with("alice", &["user", "list"])), "Error: etcdserver: permission denied");
    let backup = dir.path().join("backup.db");
    let backup = backup.to_str().unwrap();
    assert!(refused(with("alice", &["snapshot", "save", backup])).contains("auth: permission denied"));
    // root's certificate administers.
    assert_eq!(ok(with("root", &["user", "list"])), "alice\nroot\n");
    assert!(ok(with("root", &["snapshot", "save", backup])).contains("Snapshot saved"));
    assert_eq!(ok(with("root", &["get", "secret/x", "--print-value-only"])), "0\n");
    // A certificate without a common name, or naming no user, is no one.
    assert_eq!(refused(with("nameless", &["get", "e/x"])), "Error: etcdserver: permission denied");
    assert_eq!(refused(with("nameless", &["user", "list"])), "Error: etcdserver: user name is empty");
    assert!(refused(with("nameless", &["snapshot", "save", backup])).contains("auth: user name is empty"));
    assert_eq!(refused(with("mallory", &["put", "e/x", "2"])), "Error: etcdserver: permission denied");
    assert_eq!(refused(with("mallory", &["user", "list"])), "Error: etcdserver: user name not found");
    assert!(refused(with("mallory", &["snapshot", "save", backup])).contains("auth: user name not found"));
    // A token wins over the certificate, either way.
    assert_eq!(ok(with("alice", &["--user=root:rootpw", "put", "secret/x", "3"])), "OK\n");
    assert_eq!(
        refused(with("root", &["--user=alice:alicepw", "put", "secret/x", "4"])),
        "Error: etcdserver: permission denied"
    );
    assert_eq!(ok(with("root", &["get", "secret/x", "--print-value-only"])), "3\n");

    // The JSON gateway: the token only, as etcd's.
    let curl = |name: &str, path: &str, extra: &[&str], body: &str| {
        let file = |ext: &str| dir.path().join(format!("{name}.{ext}")).display().to_string();
        let ca = dir.path().join("ca.pem").display().to_string();
        let (cert, key) = (file("pem"), file("key"));
        let url = format!("{}{path}", s.endpoint);
        let args = ["-sS", "--max-time", "5", "--cacert", &ca, "--cert", &cert, "--key", &key, "-X", "POST"];
        stdout(&run_bounded(Command::new("curl").args(args).args(extra).args(["-d", body, &url])))
    };
    let range = r#"{"key":"ZS94"}"#; // e/x
    let anonymous = curl("root", "/v3/kv/range", &[], range);
    assert!(anonymous.contains("user name is empty"), "{anonymous}");
    let token = curl("alice", "/v3/auth/authenticate", &[], r#"{"name":"alice","password":"alicepw"}"#);
    let token = token.split(r#""token":""#).nth(1).and_then(|t| t.split('"').next()).expect(&token).to_string();
    let by_token = curl("root", "/v3/kv/range", &["-H", &format!("Authorization: {token}")], range);
    assert!(by_token.contains(r#""value":"MQ=="#), "{by_token}");
}

#[test]
fn an_https_url_without_a_certificate_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_bounded(Command::new(env!("CARGO_BIN_EXE_concord")).args([
        "serve",
        "--data-dir",
        dir.path().join("data").to_str().unwrap(),
        "--listen-client-urls=https://127.0.0.1:0",
    ]));
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(
            "TLS key/cert (--cert-file, --key-file) must be provided for client url https://127.0.0.1:0 with HTTPS scheme"
        ),
        "{}",
        stderr(&out)
    );
    assert!(!dir.path().join("data").exists(), "a refused start wrote a data directory");
    let out = run_bounded(Command::new(env!("CARGO_BIN_EXE_concord")).args([
        "serve",
        "--data-dir",
        dir.path().join("data").to_str().unwrap(),
        "--client-cert-auth",
    ]));
    assert!(!out.status.success() && stderr(&out).contains("--client-cert-auth needs --trusted-ca-file"));
}

/// TLS between members, with etcd's flags: three members on `https` peer
/// URLs, each checking the others' certificates against the CA
/// (`--peer-client-cert-auth=true`, etcd's spelling). Writes through any
/// member reach every member; the peer port refuses plain HTTP/2 and a TLS
/// client without a certificate.
#[test]
fn members_talk_over_tls_and_refuse_peers_without_a_certificate() {
    let certs = tempfile::tempdir().unwrap();
    certificates(certs.path());
    let file = |name: &str| certs.path().join(name).display().to_string();
    let peers: Vec<String> = (0..3).map(|_| format!("https://127.0.0.1:{}", free_port())).collect();
    let initial = peers.iter().enumerate().map(|(i, p)| format!("m{i}={p}")).collect::<Vec<_>>().join(",");
    let mut members: Vec<common::Server> = (0..3)
        .map(|i| {
            let args = [
                format!("--name=m{i}"),
                format!("--listen-peer-urls={}", peers[i]),
                format!("--initial-advertise-peer-urls={}", peers[i]),
                format!("--initial-cluster={initial}"),
                format!("--peer-cert-file={}", file("server.pem")),
                format!("--peer-key-file={}", file("server.key")),
                format!("--peer-trusted-ca-file={}", file("ca.pem")),
                "--peer-client-cert-auth=true".to_string(),
            ];
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            common::Server::spawn_in(tempfile::tempdir().unwrap(), &args)
        })
        .collect();
    for m in &mut members {
        m.wait_ready();
    }
    let put = members[0].etcdctl(&["put", "over-tls", "yes"]);
    assert!(put.status.success(), "{}", stderr(&put));
    for m in &members {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let got = m.etcdctl(&["get", "over-tls", "--print-value-only"]);
            if stdout(&got) == "yes\n" {
                break;
            }
            assert!(Instant::now() < deadline, "a member never saw the write: {}", stderr(&got));
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let listed = stdout(&members[2].etcdctl(&["member", "list"]));
    assert!(peers.iter().all(|p| listed.contains(p.as_str())), "{listed}");
    // A write through a follower is forwarded over the TLS peer link.
    for m in &members {
        let put = m.etcdctl(&["put", "through", "any"]);
        assert!(put.status.success(), "{}", stderr(&put));
    }

    let peer = peers[0].trim_start_matches("https://");
    let curl = |args: &[&str]| run_bounded(Command::new("curl").args(["-sS", "--max-time", "5"]).args(args));
    let (ca, cert, key) = (file("ca.pem"), file("client.pem"), file("client.key"));
    let https = format!("https://{peer}/");
    let plain = curl(&["--http2-prior-knowledge", &format!("http://{peer}/")]);
    assert!(!plain.status.success(), "the peer port answered plain HTTP/2: {}", stdout(&plain));
    let anonymous = curl(&["--http2", "--cacert", &ca, &https]);
    assert!(!anonymous.status.success(), "the peer port let in a client without a certificate");
    let with_cert = curl(&[
        "--http2",
        "--cacert",
        &ca,
        "--cert",
        &cert,
        "--key",
        &key,
        "-o",
        "/dev/null",
        "-w",
        "%{http_version}",
        &https,
    ]);
    assert_eq!(
        stdout(&with_cert),
        "2",
        "a client with a CA-signed certificate gets through TLS: {}",
        stderr(&with_cert)
    );
}
