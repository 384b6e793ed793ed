//! A real `concord serve` process on free loopback ports, and the real
//! etcdctl to talk to it.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
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

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Server {
    pub fn start() -> Server {
        Server::start_in(tempfile::tempdir().unwrap(), &[])
    }

    pub fn start_with(args: &[&str]) -> Server {
        Server::start_in(tempfile::tempdir().unwrap(), args)
    }

    /// Starts `concord serve` on `dir` (data in `dir/data`).
    pub fn start_in(dir: TempDir, args: &[&str]) -> Server {
        let (client, metrics) = (free_port(), free_port());
        let endpoint = format!("127.0.0.1:{client}");
        let metrics = format!("127.0.0.1:{metrics}");
        let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_concord"))
            .arg("serve")
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .arg(format!("--listen-client-urls=http://{endpoint}"))
            .arg(format!("--listen-metrics-urls=http://{metrics}"))
            .args(args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start concord serve");
        let server = Server { child: Some(child), endpoint, metrics, dir };
        server.wait_ready();
        server
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Some((200, _)) = http_get(&self.metrics, "/health") {
                return;
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

    /// Runs the real etcdctl against this server.
    pub fn etcdctl(&self, args: &[&str]) -> Output {
        self.etcdctl_stdin(args, None)
    }

    pub fn etcdctl_stdin(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut child = Command::new(etcdctl_path())
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", self.endpoint))
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
        child.wait_with_output().unwrap()
    }

    /// Starts a long-running client command (etcdctl or concord) whose
    /// output is read later; it is killed when the returned guard drops.
    pub fn spawn_background(&self, program: &str, args: &[&str]) -> Background {
        let out_path = self.dir.path().join(format!("bg-{}.out", free_port()));
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
        Command::new(env!("CARGO_BIN_EXE_concord"))
            .args(args)
            .arg(format!("--endpoints={}", self.endpoint))
            .output()
            .expect("run concord")
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
