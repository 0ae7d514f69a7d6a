//! Child processes with captured logs, killed on drop and at exit.
//!
//! Every child is spawned from one long-lived thread with
//! `PR_SET_PDEATHSIG` (the kernel signal is tied to the spawning thread, and
//! test threads come and go), so even a test binary that is killed leaves no
//! process behind. A normal exit runs an `atexit` hook that kills the
//! children still registered (those held in statics) and removes the
//! scratch directory.

use std::ffi::{c_int, c_ulong};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};

extern "C" {
    fn prctl(option: c_int, ...) -> c_int;
    fn atexit(cb: extern "C" fn()) -> c_int;
    fn kill(pid: c_int, sig: c_int) -> c_int;
    fn waitpid(pid: c_int, status: *mut c_int, options: c_int) -> c_int;
}

const PR_SET_PDEATHSIG: c_int = 1;
const SIGKILL: c_int = 9;

/// Pids of running children, for the exit hook.
static LIVE: Mutex<Vec<u32>> = Mutex::new(Vec::new());
/// The per-run scratch directory.
static SCRATCH: OnceLock<PathBuf> = OnceLock::new();

type SpawnJob = (Command, mpsc::Sender<std::io::Result<Child>>);
static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnJob>>> = OnceLock::new();

extern "C" fn at_exit() {
    if let Ok(live) = LIVE.lock() {
        for pid in live.iter() {
            // SAFETY: plain syscall on a pid this process spawned.
            unsafe { kill(*pid as c_int, SIGKILL) };
        }
        for pid in live.iter() {
            let mut status = 0;
            // SAFETY: reaps our own child; `status` outlives the call.
            unsafe { waitpid(*pid as c_int, &mut status, 0) };
        }
    }
    if std::env::var_os("E2E_KEEP_LOGS").is_none() {
        if let Some(dir) = SCRATCH.get() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// A fresh directory for one component's files, under the run's scratch
/// directory (removed at exit unless `E2E_KEEP_LOGS` is set).
pub fn scratch_dir(name: &str) -> PathBuf {
    let root = SCRATCH.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("portcullis-e2e-")
            .tempdir()
            .expect("create scratch dir")
            .keep();
        // SAFETY: registering a plain extern "C" function.
        unsafe { atexit(at_exit) };
        dir
    });
    tempfile::Builder::new()
        .prefix(&format!("{name}-"))
        .tempdir_in(root)
        .expect("create component dir")
        .keep()
}

fn spawn_on_keeper(cmd: Command) -> std::io::Result<Child> {
    let sender = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnJob>();
        std::thread::Builder::new()
            .name("e2e-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("spawn the process keeper thread");
        Mutex::new(tx)
    });
    let (tx, rx) = mpsc::channel();
    sender
        .lock()
        .unwrap()
        .send((cmd, tx))
        .expect("process keeper thread is gone");
    rx.recv().expect("process keeper thread is gone")
}

/// A running component.
pub struct Proc {
    name: String,
    child: Mutex<Child>,
    pid: u32,
    stdout: PathBuf,
    stderr: PathBuf,
    /// Extra log files the component writes itself (nginx's error log).
    extra_logs: Vec<PathBuf>,
}

impl Proc {
    /// Spawns `cmd` with stdout and stderr captured in `dir`.
    pub fn spawn(name: &str, mut cmd: Command, dir: &Path) -> Proc {
        let stdout = dir.join(format!("{name}.stdout"));
        let stderr = dir.join(format!("{name}.stderr"));
        cmd.stdin(Stdio::null())
            .stdout(File::create(&stdout).expect("create stdout log"))
            .stderr(File::create(&stderr).expect("create stderr log"));
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(|| {
                prctl(PR_SET_PDEATHSIG, SIGKILL as c_ulong);
                Ok(())
            });
        }
        let program = format!("{:?}", cmd.get_program());
        let child = spawn_on_keeper(cmd).unwrap_or_else(|e| {
            panic!(
                "cannot start {name} ({program}): {e}; {}",
                super::INSTALL_HINT
            )
        });
        let pid = child.id();
        LIVE.lock().unwrap().push(pid);
        Proc {
            name: name.to_owned(),
            child: Mutex::new(child),
            pid,
            stdout,
            stderr,
            extra_logs: Vec::new(),
        }
    }

    /// Also print `path` with this component's logs.
    pub fn add_log(&mut self, path: PathBuf) {
        self.extra_logs.push(path);
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The component's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Captured stdout.
    pub fn stdout(&self) -> String {
        read_log(&self.stdout)
    }

    /// Captured stderr (ANSI colour codes removed).
    pub fn stderr(&self) -> String {
        strip_ansi(&read_log(&self.stderr))
    }

    /// `Err` with the logs when the process has exited.
    pub fn check_alive(&self) -> Result<(), String> {
        match self.child.lock().unwrap().try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(format!(
                "{} exited early ({status})\n{}",
                self.name,
                self.logs()
            )),
            Err(e) => Err(format!("{}: wait failed: {e}", self.name)),
        }
    }

    /// Waits at most `limit` for the process to exit on its own: its exit
    /// status, or `None` when it is still running.
    pub fn wait_exit(&self, limit: std::time::Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.child.lock().unwrap().try_wait() {
                return Some(status);
            }
            if std::time::Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// Kills the process (SIGKILL) and reaps it.
    pub fn kill(&self) {
        let mut child = self.child.lock().unwrap();
        let _ = child.kill();
        let _ = child.wait();
        LIVE.lock().unwrap().retain(|p| *p != self.pid);
    }

    /// Every log of this component, for failure output.
    pub fn logs(&self) -> String {
        let mut out = format!(
            "----- {} stdout ({}) -----\n{}",
            self.name,
            self.stdout.display(),
            tail(&self.stdout(), 150)
        );
        out.push_str(&format!(
            "\n----- {} stderr ({}) -----\n{}",
            self.name,
            self.stderr.display(),
            tail(&self.stderr(), 150)
        ));
        for p in &self.extra_logs {
            out.push_str(&format!(
                "\n----- {} {} -----\n{}",
                self.name,
                p.display(),
                tail(&read_log(p), 150)
            ));
        }
        out
    }

    /// Prints the logs to the test's output.
    pub fn print_logs(&self) {
        eprintln!("{}", self.logs());
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.print_logs();
        }
        self.kill();
    }
}

fn read_log(p: &Path) -> String {
    std::fs::read(p)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    let skip = lines.len().saturating_sub(n);
    let mut out = String::new();
    if skip > 0 {
        out.push_str(&format!("[... {skip} earlier lines ...]\n"));
    }
    out.push_str(&lines[skip..].join("\n"));
    out
}

/// Removes ANSI escape sequences (coloured log output).
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Prints the logs of shared components (held in statics) when the test
/// holding this guard fails.
pub struct LogsOnFailure<'a>(pub Vec<&'a Proc>);

impl Drop for LogsOnFailure<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for p in &self.0 {
                p.print_logs();
            }
        }
    }
}
