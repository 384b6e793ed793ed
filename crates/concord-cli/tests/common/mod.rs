//! A real `concord serve` process on free loopback ports, and the real
//! etcdctl to talk to it.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

pub struct Server {
    child: Option<Child>,
    /// host:port of the gRPC API.
    pub endpoint: String,
    /// host:port of /health and /metrics.
    pub metrics: String,
    pub dir: TempDir,
}

/// A port nobody listens on right now: for a client that must find nothing
/// there, or for peer URLs that every member of a cluster must know before
/// it starts (a lone server binds port 0 and reports what it got). Below
/// the kernel's ephemeral range, so no outgoing connection takes it first.
pub fn free_port() -> u16 {
    concord_torture::cluster::free_addr().unwrap().port()
}

/// Runs a command to completion, failing the test after 60 s.
pub fn run_bounded(cmd: &mut Command) -> Output {
    let child = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn");
    wait_bounded(child, CLIENT_LIMIT, &format!("{cmd:?}"))
}

/// Longest any single etcdctl or concord client run may take in a test.
const CLIENT_LIMIT: Duration = Duration::from_secs(60);

/// Waits for `child` to exit, killing it (and failing the test) after `limit`.
pub fn wait_bounded(mut child: Child, limit: Duration, what: &str) -> Output {
    let deadline = Instant::now() + limit;
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "{what} did not finish within {limit:?}\nstdout: {}\nstderr: {}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

impl Server {
    pub fn start() -> Server {
        Server::start_in(tempfile::tempdir().unwrap(), &[])
    }

    pub fn start_with(args: &[&str]) -> Server {
        Server::start_in(tempfile::tempdir().unwrap(), args)
    }

    /// Starts `concord serve` on `dir` (data in `dir/data`), on ports the
    /// server binds itself (port 0) and reports in its log.
    pub fn start_in(dir: TempDir, args: &[&str]) -> Server {
        let mut server = Server::spawn_in(dir, &[&["--listen-peer-urls=http://127.0.0.1:0"], args].concat());
        server.wait_ready();
        server
    }

    /// Starts `concord serve` without waiting for it to be ready (a cluster
    /// member is ready only once a quorum runs).
    pub fn spawn_in(dir: TempDir, args: &[&str]) -> Server {
        Server::spawn_in_env(dir, args, &[])
    }

    /// `spawn_in` with these environment variables set.
    pub fn spawn_in_env(dir: TempDir, args: &[&str], env: &[(&str, &str)]) -> Server {
        let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_concord"))
            .envs(env.iter().copied())
            .arg("serve")
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .arg("--listen-client-urls=http://127.0.0.1:0")
            .arg("--listen-metrics-urls=http://127.0.0.1:0")
            .args(args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start concord serve");
        Server { child: Some(child), endpoint: String::new(), metrics: String::new(), dir }
    }

    /// Reads the bound addresses from the log, then waits for /health.
    pub fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let address = |log: &str, message: &str| {
            let line = log.lines().find(|l| l.contains(message))?;
            let at = line.find("addr=")? + 5;
            Some(line[at..].split_whitespace().next()?.to_string())
        };
        while Instant::now() < deadline {
            let log = self.log();
            if let (Some(endpoint), Some(metrics)) =
                (address(&log, "serving the etcd v3 API"), address(&log, "serving /health and /metrics"))
            {
                (self.endpoint, self.metrics) = (endpoint, metrics);
                if let Some((200, _)) = http_get(&self.metrics, "/health") {
                    return;
                }
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!("concord serve exited ({status}); log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("concord serve did not become ready; log:\n{}", self.log());
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    pub fn data_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("data")
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// SIGKILL, and wait until the process is gone; returns the directory.
    pub fn kill(mut self) -> TempDir {
        let mut child = self.child.take().unwrap();
        let _ = child.kill();
        let _ = child.wait();
        std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap())
    }

    /// Sends SIGTERM and waits for a clean exit; returns the exit status and
    /// the directory (so a test can restart on it).
    pub fn stop(mut self) -> (std::process::ExitStatus, TempDir) {
        let mut child = self.child.take().unwrap();
        Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
                return (status, dir);
            }
            assert!(Instant::now() < deadline, "concord serve did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits (at most `limit`) for the process to exit on its own.
    pub fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        let child = self.child.as_mut().expect("running");
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                return status;
            }
            assert!(Instant::now() < deadline, "concord serve did not exit; log:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs the real etcdctl against this server.
    pub fn etcdctl(&self, args: &[&str]) -> Output {
        self.etcdctl_stdin(args, None)
    }

    pub fn etcdctl_stdin(&self, args: &[&str], stdin: Option<&str>) -> Output {
        etcdctl_stdin_at(&self.endpoint, args, stdin)
    }

    /// Starts a long-running client command (etcdctl or concord) whose
    /// output is read later; it is killed when the returned guard drops.
    pub fn spawn_background(&self, program: &str, args: &[&str]) -> Background {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let out_path = self.dir.path().join(format!("bg-{n}.out"));
        let out = std::fs::File::create(&out_path).unwrap();
        let mut cmd = Command::new(program);
        if program.ends_with("etcdctl") {
            cmd.env("ETCDCTL_API", "3").arg(format!("--endpoints={}", self.endpoint));
        }
        cmd.args(args);
        if !program.ends_with("etcdctl") {
            cmd.arg(format!("--endpoints={}", self.endpoint));
        }
        let child = cmd.stdout(out).stderr(Stdio::null()).spawn().expect("spawn background client");
        Background { child, out_path }
    }

    /// Runs our own `concord` client subcommands against this server.
    pub fn concord(&self, args: &[&str]) -> Output {
        let child = Command::new(env!("CARGO_BIN_EXE_concord"))
            .args(args)
            .arg(format!("--endpoints={}", self.endpoint))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run concord");
        wait_bounded(child, CLIENT_LIMIT, &format!("concord {args:?}"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A client process running in the background.
pub struct Background {
    child: Child,
    out_path: std::path::PathBuf,
}

impl Background {
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.out_path).unwrap_or_default()
    }

    /// Waits until the output has `lines` lines (or panics after 10 s).
    pub fn wait_lines(&self, lines: usize) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let out = self.output();
            if out.lines().count() >= lines {
                return out;
            }
            assert!(Instant::now() < deadline, "expected {lines} lines, got:\n{out}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// etcdctl from Debian's etcd-client (installed by .ci/run).
pub fn etcdctl_path() -> &'static str {
    for candidate in ["/usr/bin/etcdctl", "/usr/local/bin/etcdctl"] {
        if Path::new(candidate).exists() {
            return candidate;
        }
    }
    panic!("etcdctl not found: install it with `apt-get install etcd-client` (as .ci/run does)");
}

/// A minimal HTTP/1.0 GET: (status, body).
pub fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Some((status, body))
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts `text` matches the regex `pattern` (anchored, multi-line).
#[track_caller]
pub fn assert_shape(text: &str, pattern: &str) {
    let re = regex::Regex::new(&format!("^(?s:{pattern})$")).unwrap();
    assert!(re.is_match(text), "output:\n{text}\ndoes not match:\n{pattern}");
}

/// A peer URL on a free loopback port.
pub fn free_peer_url() -> String {
    format!("http://127.0.0.1:{}", free_port())
}

/// Starts `n` members of a new cluster and waits until each is healthy;
/// the members and each one's arguments (to start it again).
pub fn start_cluster(n: usize) -> (Vec<Server>, Vec<Vec<String>>) {
    let peers: Vec<String> = (0..n).map(|_| free_peer_url()).collect();
    let initial = peers.iter().enumerate().map(|(i, p)| format!("m{i}={p}")).collect::<Vec<_>>().join(",");
    let token = format!("test-{}", std::process::id());
    let args: Vec<Vec<String>> = (0..n)
        .map(|i| {
            vec![
                format!("--name=m{i}"),
                format!("--listen-peer-urls={}", peers[i]),
                format!("--initial-advertise-peer-urls={}", peers[i]),
                format!("--initial-cluster={initial}"),
                format!("--initial-cluster-token={token}"),
            ]
        })
        .collect();
    let mut servers: Vec<Server> = args
        .iter()
        .map(|a| Server::spawn_in(tempfile::tempdir().unwrap(), &a.iter().map(String::as_str).collect::<Vec<_>>()))
        .collect();
    for s in &mut servers {
        s.wait_ready();
    }
    (servers, args)
}

/// Standard base64 of `bytes` (etcd's JSON carries keys and values so).
pub fn b64(bytes: impl AsRef<[u8]>) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes = bytes.as_ref();
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | (*b as u32) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The bytes of standard base64 `text` (padding optional).
pub fn b64_decode(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let digits: Vec<u32> = text
        .bytes()
        .filter(|b| *b != b'=')
        .map(|b| ALPHABET.iter().position(|a| *a == b).expect("base64") as u32)
        .collect();
    let mut out = Vec::new();
    for chunk in digits.chunks(4) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, d)| n | d << (18 - 6 * i));
        for i in 0..chunk.len().saturating_sub(1) {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    out
}

/// `curl -X POST` of `body` to the JSON gateway's `path`, with `token` in
/// the `Authorization` header if given: (HTTP status, the JSON answer).
pub fn gateway_post(server: &Server, token: Option<&str>, path: &str, body: &str) -> (u16, serde_json::Value) {
    let url = format!("http://{}{path}", server.endpoint);
    let mut curl = Command::new("curl");
    curl.args(["-s", "-m", "10", "-X", "POST", "-w", "\n%{http_code}", "-d", body, &url]);
    if let Some(token) = token {
        curl.args(["-H", &format!("Authorization: {token}")]);
    }
    let out = run_bounded(&mut curl);
    let text = String::from_utf8(out.stdout).unwrap();
    let (json, code) = text.rsplit_once('\n').unwrap_or_else(|| panic!("curl {path}: {text:?}"));
    let value = serde_json::from_str(json).unwrap_or(serde_json::Value::String(json.to_string()));
    (code.parse().unwrap(), value)
}

/// Runs the real etcdctl against `endpoint` (from a thread that holds no
/// `Server`).
pub fn etcdctl_at(endpoint: &str, args: &[&str]) -> Output {
    etcdctl_stdin_at(endpoint, args, None)
}

fn etcdctl_stdin_at(endpoint: &str, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(etcdctl_path())
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoint}"))
        .arg("--command-timeout=10s")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run etcdctl");
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    wait_bounded(child, CLIENT_LIMIT, &format!("etcdctl {args:?}"))
}
