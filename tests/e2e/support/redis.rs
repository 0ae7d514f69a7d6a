//! A real `redis-server` (Debian package) on an ephemeral port, persistence
//! off, that a test can stop (SIGKILL) and start again on the same port;
//! and a Sentinel process watching it.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;

use super::proc::{scratch_dir, Proc};
use super::{free_port, require_binary, wait_for};

/// A running (or stopped) Redis.
pub struct Redis {
    /// Its port on 127.0.0.1.
    pub port: u16,
    proc: Mutex<Option<Proc>>,
    dir: PathBuf,
    extra: Vec<String>,
}

impl Redis {
    /// Starts a Redis with persistence off.
    pub fn start() -> Redis {
        Redis::start_with(&[])
    }

    /// Starts a Redis with extra `redis-server` arguments.
    pub fn start_with(extra: &[&str]) -> Redis {
        let r = Redis {
            port: free_port(),
            proc: Mutex::new(None),
            dir: scratch_dir("redis"),
            extra: extra.iter().map(|s| (*s).to_owned()).collect(),
        };
        r.resume();
        r
    }

    /// `redis://127.0.0.1:PORT/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Kills the server (SIGKILL); clients see connection refused.
    pub fn stop(&self) {
        if let Some(p) = self.proc.lock().unwrap().take() {
            p.kill();
        }
    }

    /// Starts the server again on the same port (empty: persistence is off)
    /// and waits until it answers PING.
    pub fn resume(&self) {
        let mut cmd = Command::new(require_binary("redis-server"));
        cmd.args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--dir", &self.dir.display().to_string()])
            .args(&self.extra)
            .current_dir(&self.dir);
        let proc = Proc::spawn("redis", cmd, &self.dir);
        let port = self.port;
        wait_for(
            "redis",
            || proc.check_alive(),
            || {
                // A server with `--requirepass` answers NOAUTH: it is up.
                let r = cli(port, &["PING"]);
                (r.trim() == "PONG" || r.contains("NOAUTH")).then_some(())
            },
        )
        .unwrap_or_else(|e| panic!("{e}\n{}", proc.logs()));
        *self.proc.lock().unwrap() = Some(proc);
    }

    /// Runs `redis-cli` against this server; its stdout.
    pub fn cli(&self, args: &[&str]) -> String {
        cli(self.port, args)
    }

    /// The server's logs.
    pub fn logs(&self) -> String {
        self.proc
            .lock()
            .unwrap()
            .as_ref()
            .map(|p| p.logs())
            .unwrap_or_default()
    }
}

/// `redis-cli -p PORT ARGS...` stdout (empty when it cannot connect).
pub fn cli(port: u16, args: &[&str]) -> String {
    Command::new(require_binary("redis-cli"))
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// A Sentinel watching `master` under the service name `mymaster`.
pub struct Sentinel {
    /// Its port.
    pub port: u16,
    /// The process.
    pub proc: Proc,
}

impl Sentinel {
    /// Starts `redis-server --sentinel` monitoring `master`.
    pub fn start(master: &Redis) -> Sentinel {
        let port = free_port();
        let dir = scratch_dir("sentinel");
        let conf = dir.join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\nsentinel monitor mymaster 127.0.0.1 {} 1\nsentinel down-after-milliseconds mymaster 5000\n",
                master.port
            ),
        )
        .unwrap();
        let mut cmd = Command::new(require_binary("redis-server"));
        cmd.arg(&conf).arg("--sentinel").current_dir(&dir);
        let proc = Proc::spawn("sentinel", cmd, &dir);
        wait_for(
            "sentinel",
            || proc.check_alive(),
            || {
                cli(port, &["SENTINEL", "get-master-addr-by-name", "mymaster"])
                    .contains(&master.port.to_string())
                    .then_some(())
            },
        )
        .unwrap_or_else(|e| panic!("{e}\n{}", proc.logs()));
        Sentinel { port, proc }
    }
}
