//! Tests that need a process to kill: the test binary runs itself again on
//! one ignored "child" test, with a data directory in an environment
//! variable. The child reports progress as lines starting with `@`; they are
//! read on a thread, so waiting for one is always bounded.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

pub struct ChildTest {
    child: Child,
    lines: Receiver<String>,
}

impl ChildTest {
    /// Runs the ignored test `test` of this binary with `env` set to `dir`.
    pub fn spawn(test: &str, env: &str, dir: &Path) -> ChildTest {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([test, "--exact", "--ignored", "--nocapture", "--test-threads=1"])
            .env(env, dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the child test process");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                // libtest may print "test name ... " before the first report.
                if let Some(at) = line.find('@')
                    && tx.send(line[at + 1..].to_string()).is_err()
                {
                    return;
                }
            }
        });
        ChildTest { child, lines }
    }

    /// The next report (without its `@`), waiting at most `within`.
    pub fn next(&self, within: Duration) -> Result<String, RecvTimeoutError> {
        self.lines.recv_timeout(within)
    }

    /// The next report, which must start with `what`.
    pub fn expect(&self, what: &str, within: Duration) -> String {
        let line = self.next(within).unwrap_or_else(|e| panic!("no {what} from the child: {e}"));
        assert!(line.starts_with(what), "expected {what}, got {line}");
        line
    }

    /// SIGKILL, and wait for the process to be gone.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for ChildTest {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
