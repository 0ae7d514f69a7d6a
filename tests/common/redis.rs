//! A real `redis-server` (Debian package) on an ephemeral port, persistence
//! off, that a test can stop (SIGKILL) and start again on the same port
//! (optionally TLS-only with a test CA's certificate, or a replica of
//! another); and a Sentinel process watching a master.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;

use std::time::{Duration, Instant};

use super::ca::TestCa;
use super::proc::{scratch_dir, Proc};
use super::{free_port, require_binary, wait_for};

/// The `[session]` of a Redis store on `redis` with its local cache on, 12 h
/// sessions and no idle timeout: what the session benchmarks measure.
pub fn bench_session_config(redis: &Redis) -> portcullis::config::SessionConfig {
    use portcullis::base::secret::Secret;
    portcullis::config::SessionConfig {
        cookie_name: "_portcullis".into(),
        cookie_domain: None,
        cookie_secure: true,
        secrets: vec![Secret::new(vec![7; 32])],
        lifetime: Duration::from_secs(12 * 3600),
        idle_timeout: None,
        refresh: false,
        store: portcullis::config::StoreKind::Redis,
        redis_urls: vec![Secret::new(redis.url())],
        redis_ca: None,
        local_cache: true,
    }
}

/// A running (or stopped) Redis.
pub struct Redis {
    /// Its port on 127.0.0.1.
    pub port: u16,
    proc: Mutex<Option<Proc>>,
    dir: PathBuf,
    extra: Vec<String>,
    /// `redis-cli` arguments reaching it (TLS and its CA), empty for plain TCP.
    cli_tls: Vec<String>,
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
            cli_tls: Vec::new(),
        };
        r.resume();
        r
    }

    /// Starts a Redis that speaks only TLS on its port, with `ca`'s server
    /// certificate (client certificates not required), and extra arguments.
    pub fn start_tls(ca: &TestCa, extra: &[&str]) -> Redis {
        let dir = scratch_dir("redis-tls");
        let [ca_file, cert, key] = ca.write_to(&dir).map(|p| p.display().to_string());
        let mut args: Vec<String> = [
            "--port",
            "0",
            "--tls-cert-file",
            &cert,
            "--tls-key-file",
            &key,
            "--tls-ca-cert-file",
            &ca_file,
            "--tls-auth-clients",
            "no",
        ]
        .map(str::to_owned)
        .into();
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        let r = Redis {
            port: free_port(),
            proc: Mutex::new(None),
            dir,
            extra: args,
            cli_tls: vec!["--tls".into(), "--cacert".into(), ca_file],
        };
        r.resume();
        r
    }

    /// Starts a replica of `master` and waits until it has synchronised.
    pub fn start_replica(master: &Redis) -> Redis {
        let r = Redis::start_with(&["--replicaof", "127.0.0.1", &master.port.to_string()]);
        let t0 = Instant::now();
        while !r
            .cli(&["INFO", "replication"])
            .contains("master_link_status:up")
        {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "the replica never synchronised:\n{}",
                r.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        r
    }

    /// Waits until `replica` has received every write this server (its
    /// master) has taken so far. (`WAIT` from `redis-cli` would not do: it
    /// waits only for that connection's own writes.)
    pub fn wait_replicated_to(&self, replica: &Redis) {
        let offset = |r: &Redis, field: &str| -> Option<u64> {
            r.cli(&["INFO", "replication"])
                .lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.trim().parse().ok())
        };
        let target = offset(self, "master_repl_offset:").expect("the master's offset");
        let t0 = Instant::now();
        while offset(replica, "slave_repl_offset:").unwrap_or(0) < target {
            assert!(
                t0.elapsed() < Duration::from_secs(5),
                "the replica did not catch up:\n{}",
                replica.cli(&["INFO", "replication"])
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `redis://127.0.0.1:PORT/0` (`rediss://` for a TLS server).
    pub fn url(&self) -> String {
        let scheme = if self.cli_tls.is_empty() {
            "redis"
        } else {
            "rediss"
        };
        format!("{scheme}://127.0.0.1:{}/0", self.port)
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
        let port_flag = if self.cli_tls.is_empty() {
            "--port"
        } else {
            "--tls-port"
        };
        let mut cmd = Command::new(require_binary("redis-server"));
        cmd.args([port_flag, &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--dir", &self.dir.display().to_string()])
            .args(&self.extra)
            .current_dir(&self.dir);
        let proc = Proc::spawn("redis", cmd, &self.dir);
        wait_for(
            "redis",
            || proc.check_alive(),
            || {
                // A server with `--requirepass` answers NOAUTH: it is up.
                let r = self.cli(&["PING"]);
                (r.trim() == "PONG" || r.contains("NOAUTH")).then_some(())
            },
        )
        .unwrap_or_else(|e| panic!("{e}\n{}", proc.logs()));
        *self.proc.lock().unwrap() = Some(proc);
    }

    /// Runs `redis-cli` against this server; its stdout.
    pub fn cli(&self, args: &[&str]) -> String {
        let tls: Vec<&str> = self.cli_tls.iter().map(String::as_str).collect();
        cli(self.port, &[&tls[..], args].concat())
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
    cli_tls: Vec<String>,
}

impl Sentinel {
    /// Starts `redis-server --sentinel` monitoring `master` (down after 5 s).
    pub fn start(master: &Redis) -> Sentinel {
        Sentinel::start_with(master, 5000)
    }

    /// Starts a sentinel (quorum 1) that declares `master` down after
    /// `down_after_ms` and then fails over to a replica. For a TLS master,
    /// the sentinel speaks only TLS too (same certificate) and reaches the
    /// master over TLS.
    pub fn start_with(master: &Redis, down_after_ms: u64) -> Sentinel {
        let port = free_port();
        let dir = scratch_dir("sentinel");
        let conf = dir.join("sentinel.conf");
        let listen = if master.cli_tls.is_empty() {
            format!("port {port}\n")
        } else {
            let file = |name: &str| master.dir.join(name).display().to_string();
            format!(
                "port 0\ntls-port {port}\ntls-cert-file {}\ntls-key-file {}\ntls-ca-cert-file {}\ntls-auth-clients no\ntls-replication yes\n",
                file("cert.pem"),
                file("key.pem"),
                file("ca.pem"),
            )
        };
        std::fs::write(
            &conf,
            format!(
                "{listen}bind 127.0.0.1\nsentinel monitor mymaster 127.0.0.1 {} 1\nsentinel down-after-milliseconds mymaster {down_after_ms}\nsentinel failover-timeout mymaster 10000\n",
                master.port
            ),
        )
        .unwrap();
        let mut cmd = Command::new(require_binary("redis-server"));
        cmd.arg(&conf).arg("--sentinel").current_dir(&dir);
        let proc = Proc::spawn("sentinel", cmd, &dir);
        let sentinel = Sentinel {
            port,
            proc,
            cli_tls: master.cli_tls.clone(),
        };
        wait_for(
            "sentinel",
            || sentinel.proc.check_alive(),
            || {
                (sentinel.master_port() == Some(master.port)
                    && sentinel
                        .cli(&["SENTINEL", "master", "mymaster"])
                        .contains("flags\nmaster\n"))
                .then_some(())
            },
        )
        .unwrap_or_else(|e| panic!("{e}\n{}", sentinel.proc.logs()));
        sentinel
    }

    /// Runs `redis-cli` against this sentinel; its stdout.
    pub fn cli(&self, args: &[&str]) -> String {
        let tls: Vec<&str> = self.cli_tls.iter().map(String::as_str).collect();
        cli(self.port, &[&tls[..], args].concat())
    }

    /// The port of the server this sentinel names as master now.
    pub fn master_port(&self) -> Option<u16> {
        self.cli(&["SENTINEL", "get-master-addr-by-name", "mymaster"])
            .lines()
            .nth(1)
            .and_then(|p| p.trim().parse().ok())
    }
}
