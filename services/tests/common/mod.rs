//! A harness for tests that run the real `qc` binary as child processes: start it with the
//! test's isolated stores, wait until it is ready, watch its stderr for a line, `kill -9` it.

#![allow(dead_code)] // each test binary uses part of it

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use qc_kit::config::StoreConfig;

/// A running `qc` process; killed with SIGKILL when dropped.
pub struct Qc {
    child: Child,
    stderr: Receiver<String>,
    /// Every stderr line read so far (for failure messages).
    seen: Vec<String>,
}

impl Qc {
    /// `qc <args>` against `store` (its Redis prefix and Postgres schema), `ENV=test`, plus `env`.
    pub fn spawn(args: &[&str], store: &StoreConfig, env: &[(&str, String)]) -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_qc"));
        cmd.args(args)
            .env("ENV", "test")
            .env("LOG_FORMAT", "text")
            .env("LOG_LEVEL", "warn")
            .env("REDIS_URL", &store.redis_url)
            .env("DATABASE_URL", &store.database_url)
            .env("QC_KEY_PREFIX", &store.key_prefix)
            .env("QC_DB_SCHEMA", &store.db_schema)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("qc starts");
        let err = child.stderr.take().expect("stderr piped");
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Self {
            child,
            stderr: rx,
            seen: Vec::new(),
        }
    }

    /// Waits for a stderr line containing `needle`; panics with what was seen after `within`.
    pub fn wait_line(&mut self, needle: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(line) => self.seen.push(line),
                Err(_) => panic!(
                    "no {needle:?} on stderr within {within:?}; exited: {:?}; saw:\n{}",
                    self.child.try_wait().ok().flatten(),
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// SIGKILL, as `kill -9` does: no shutdown, no destructors, nothing flushed.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Qc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One raw HTTP/1.1 GET (no client library: usable before any runtime exists).
pub fn get(port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

/// Waits until `GET /ready` on `port` answers 200.
pub fn wait_ready(port: u16, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let r = get(port, "/ready");
        if r.as_deref().is_some_and(|r| r.starts_with("HTTP/1.1 200")) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "port {port} not ready within {within:?}: {r:?}"
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}
