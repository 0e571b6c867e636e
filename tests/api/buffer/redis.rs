//! Redis for the buffer's tests: the machine's shared Redis with a prefix
//! of the test's own, or a `redis-server` of the test's own (a free port,
//! a temporary directory, stopped by its PID) where a test needs
//! persistence or kills Redis.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The shared Redis (no persistence), as CI starts it.
pub const SHARED: &str = "redis://127.0.0.1:6379";

/// A prefix no other test (or run) uses.
pub fn unique_prefix(test: &str) -> String {
    format!("beacon-test-{test}-{}", uuid_like())
}

fn uuid_like() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{}-{nanos}", std::process::id())
}

/// Asserts that the shared Redis answers (CI starts it; a test never
/// passes silently without it).
pub fn require_shared() {
    let ok = redis_cli(6379, &["PING"]).is_some_and(|out| out.trim() == "PONG");
    assert!(
        ok,
        "the buffer's tests need Redis on 127.0.0.1:6379 (.ci/run starts it: \
         redis-server --bind 127.0.0.1 --port 6379 --save '' --appendonly no --daemonize yes)"
    );
}

/// `redis-cli -p PORT ARGS…`'s output, or `None` if it failed.
pub fn redis_cli(port: u16, args: &[&str]) -> Option<String> {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Deletes every key of a test's prefix on the shared Redis.
pub fn clean_shared(prefix: &str) {
    for suffix in ["events", "dead", "live-readers"] {
        let _ = redis_cli(6379, &["DEL", &format!("{prefix}:{suffix}")]);
    }
}

/// A `redis-server` of the test's own, with an append-only file that is
/// synced on every write.
pub struct OwnRedis {
    pub port: u16,
    pub dir: tempfile::TempDir,
    child: Option<Child>,
}

impl OwnRedis {
    pub fn start() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("beacon-redis-")
            .tempdir()
            .unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut redis = Self {
            port,
            dir,
            child: None,
        };
        redis.spawn();
        redis
    }

    /// Starts the server (again) on the same port and directory.
    pub fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args([
                "--bind",
                "127.0.0.1",
                "--port",
                &self.port.to_string(),
                "--dir",
                &self.dir.path().display().to_string(),
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts (the package redis-server; .ci/run installs it)");
        self.child = Some(child);
        let started = Instant::now();
        while redis_cli(self.port, &["PING"]).is_none_or(|o| o.trim() != "PONG") {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "redis-server on port {} did not answer",
                self.port
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// `kill -9`, then waits for the process to be gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Every byte of the append-only files.
    pub fn aof_bytes(&self) -> Vec<u8> {
        let mut all = Vec::new();
        collect(self.dir.path(), &mut all);
        all
    }
}

fn collect(dir: &Path, out: &mut Vec<u8>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(&path, out);
        } else if let Ok(bytes) = std::fs::read(&path) {
            out.extend(bytes);
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.kill();
    }
}
