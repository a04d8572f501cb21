//! # antler-tests: integration-test harness
//!
//! This crate runs Antler daemons side by side with **real** MooseFS 3.0.117
//! components (the Debian packages: `mfsmaster`, `mfschunkserver`, `mfsmount`,
//! `mfscli`, `mfsfileinfo`, `mfscheckfile`, `mfssetgoal`, `mfsgetgoal`), entirely
//! on loopback. Integration tests live in `tests/tests/*.rs` and use this library:
//!
//! ```no_run
//! use antler_tests::*;
//! use std::time::Duration;
//!
//! let _lock = cluster_lock(); // one cluster at a time, machine-wide
//! let mut c = Cluster::start_real_master();
//! c.add_chunkserver(CsKind::Real);
//! c.add_chunkserver(CsKind::Antler);
//! c.wait_chunkservers(2, Duration::from_secs(60));
//! let mnt = c.mount();
//! // ... write and read files under `mnt`, inspect with c.mfsfileinfo(..) ...
//! // everything is torn down when `c` is dropped, also on panic
//! ```
//!
//! ## Rules the harness follows
//!
//! * Only loopback is used. MooseFS refuses 127.0.0.0/8 between master and
//!   chunkserver, so the master gets `REMAP_BITS = 32`,
//!   `REMAP_SOURCE_IP_CLASS = 127.0.0.1`, `REMAP_DESTINATION_IP_CLASS = 0.0.0.0`
//!   and chunkservers `MASTER_HOST = 0.0.0.0`, `BIND_HOST = 127.0.0.1`. The
//!   master therefore reports every chunkserver as `0.0.0.0:PORT`; a `connect()`
//!   to 0.0.0.0 lands on 127.0.0.1.
//! * Every [`Cluster`] owns a temporary directory `/tmp/antler-XXXXXX` and
//!   removes its mount, its processes and that directory in `Drop` (also while
//!   panicking). Processes are stopped strictly by the PIDs the harness started.
//! * Daemons are started with `PR_SET_PDEATHSIG = SIGTERM` from a long-lived
//!   helper thread, so they also stop if the test process is killed. A later
//!   [`cluster_lock`] removes directories (and, by recorded PID + start time,
//!   processes) left behind by dead harness processes; nothing else is touched.
//! * No global `sync`: only `syncfs` (`sync -f DIR`) of our own directories,
//!   and `drop_caches` is written with a bounded wait.
//! * All waits have generous timeouts; nothing asserts on speed.
//!
//! Tests must run as root (FUSE mount, `drop_caches`). The daemons run with
//! `WORKING_USER = root` (they accept it; no `chown` is needed and the
//! parent-death signal survives because the credentials do not change).
//!
//! Set `ANTLER_TESTS_KEEP=1` to keep the temporary directory (configs, logs,
//! chunk files) after the test; processes and mounts are stopped anyway.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::ffi::{OsStr, OsString};
use std::fmt::Display;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{mpsc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

// ------------------------------------------------------------------------------------------
// constants

/// The real MooseFS master binary (Debian package `moosefs-master`).
pub const REAL_MFSMASTER: &str = "/usr/sbin/mfsmaster";
/// The real MooseFS chunkserver binary (Debian package `moosefs-chunkserver`).
pub const REAL_MFSCHUNKSERVER: &str = "/usr/sbin/mfschunkserver";
/// The real MooseFS FUSE client (Debian package `moosefs-client`).
pub const REAL_MFSMOUNT: &str = "/usr/bin/mfsmount";
/// The MooseFS command-line monitor (Debian package `moosefs-cli`).
pub const MFSCLI: &str = "/usr/bin/mfscli";
/// The empty metadata image a fresh master needs as `DATA_PATH/metadata.mfs`.
pub const EMPTY_METADATA: &str = "/var/lib/mfs/metadata.mfs.empty";
/// Path of the machine-wide lock file taken by [`cluster_lock`].
pub const LOCK_PATH: &str = "/tmp/antler-tests.lock";
/// MooseFS chunk size (64 MiB).
pub const CHUNK_SIZE: usize = 64 << 20;
/// MooseFS block size inside a chunk (64 KiB).
pub const BLOCK_SIZE: usize = 64 << 10;

/// Timeout for short command-line tools (`mfsfileinfo`, `fusermount3`, ...).
const TOOL_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a daemon may take to start listening.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(60);
/// Grace period between SIGTERM and SIGKILL for chunkservers and the mount.
const STOP_GRACE: Duration = Duration::from_secs(15);
/// Grace period between SIGTERM and SIGKILL for the master (it writes metadata on exit).
const MASTER_STOP_GRACE: Duration = Duration::from_secs(30);
/// Marker file in a cluster base dir: `<pid> <starttime>` of the owning test process.
const OWNER_FILE: &str = "antler-owner";
/// File in a cluster base dir: one `<pid> <starttime> <name>` line per started daemon.
const PIDS_FILE: &str = "antler-pids";

// ------------------------------------------------------------------------------------------
// logging

fn epoch() -> Instant {
    static START: OnceLock<Instant> = OnceLock::new();
    *START.get_or_init(Instant::now)
}

/// Print a harness progress line to stderr, prefixed with the seconds since the
/// harness was first used (visible with `--nocapture`, or on failure).
pub fn note(msg: impl Display) {
    eprintln!(
        "[antler-tests {:>8.2}s] {}",
        epoch().elapsed().as_secs_f64(),
        msg
    );
}

// ------------------------------------------------------------------------------------------
// global serialisation lock

/// Guard of the machine-wide cluster lock (an exclusive `flock` on
/// [`LOCK_PATH`]). The lock is released when the guard is dropped.
#[must_use = "the lock is released as soon as the guard is dropped"]
#[derive(Debug)]
pub struct ClusterLock {
    _file: File,
}

/// Take the machine-wide exclusive cluster lock, blocking until it is free.
///
/// Every test that starts a [`Cluster`] should hold this for its whole
/// duration, so that cluster tests from different test binaries or processes
/// (nextest runs each test in its own process) and different threads never run
/// at the same time. `flock` locks belong to the open file description, so two
/// threads of one process also exclude each other.
///
/// After taking the lock, leftovers of *dead* harness processes (directories
/// `/tmp/antler-*` carrying our owner marker whose owner process is gone) are
/// cleaned up: their recorded daemons are killed by PID (after checking the
/// PID's start time), mounts under them are lazily unmounted and the directory
/// is removed. Nothing without our marker is touched.
pub fn cluster_lock() -> ClusterLock {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o666)
        .open(LOCK_PATH)
        .unwrap_or_else(|e| panic!("cannot open {LOCK_PATH}: {e}"));
    let fd = file.as_raw_fd();
    // SAFETY: `fd` is a valid open file descriptor owned by `file`.
    let r = unsafe { libc::flock(fd, libc::LOCK_EX | libc::LOCK_NB) };
    if r != 0 {
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EWOULDBLOCK) {
            panic!("flock({LOCK_PATH}) failed: {err}");
        }
        note(format!(
            "waiting for {LOCK_PATH} (another cluster test is running)"
        ));
        loop {
            // SAFETY: as above.
            let r = unsafe { libc::flock(fd, libc::LOCK_EX) };
            if r == 0 {
                break;
            }
            let err = io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::EINTR) {
                panic!("flock({LOCK_PATH}) failed: {err}");
            }
        }
    }
    reap_stale_dirs();
    ClusterLock { _file: file }
}

/// Start time (field 22 of `/proc/PID/stat`, in clock ticks) of a process, if it exists.
fn proc_starttime(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    // after ')' come fields 3.. ; starttime is field 22 => index 19 here
    after.split_whitespace().nth(19)?.parse().ok()
}

fn own_identity() -> String {
    let pid = std::process::id();
    format!("{} {}", pid, proc_starttime(pid).unwrap_or(0))
}

/// True if the process `pid` exists and has the given start time.
fn same_process_alive(pid: u32, starttime: u64) -> bool {
    proc_starttime(pid) == Some(starttime)
}

/// Clean up `/tmp/antler-*` directories whose owning harness process is dead.
fn reap_stale_dirs() {
    let Ok(rd) = fs::read_dir("/tmp") else { return };
    // SAFETY: geteuid has no preconditions.
    let my_uid = unsafe { libc::geteuid() };
    for ent in rd.flatten() {
        let name = ent.file_name();
        let Some(name) = name.to_str() else { continue };
        if !name.starts_with("antler-") || name == "antler-tests.lock" {
            continue;
        }
        let dir = ent.path();
        let Ok(md) = fs::symlink_metadata(&dir) else {
            continue;
        };
        if !md.is_dir() || md.uid() != my_uid {
            continue;
        }
        let Ok(owner) = fs::read_to_string(dir.join(OWNER_FILE)) else {
            continue;
        };
        let mut it = owner.split_whitespace();
        let (Some(Ok(pid)), Some(Ok(st))) = (
            it.next().map(str::parse::<u32>),
            it.next().map(str::parse::<u64>),
        ) else {
            continue;
        };
        if same_process_alive(pid, st) {
            continue;
        }
        note(format!(
            "cleaning up {} left by dead harness process {pid}",
            dir.display()
        ));
        if let Ok(pids) = fs::read_to_string(dir.join(PIDS_FILE)) {
            for line in pids.lines() {
                let mut it = line.split_whitespace();
                let (Some(Ok(p)), Some(Ok(s))) = (
                    it.next().map(str::parse::<u32>),
                    it.next().map(str::parse::<u64>),
                ) else {
                    continue;
                };
                if same_process_alive(p, s) {
                    note(format!(
                        "  killing stale daemon pid {p} ({})",
                        it.collect::<Vec<_>>().join(" ")
                    ));
                    // SAFETY: plain kill(2) on a PID we verified (pid + start time) to be ours.
                    unsafe { libc::kill(p as libc::pid_t, libc::SIGKILL) };
                    let t = Instant::now();
                    while same_process_alive(p, s) && t.elapsed() < Duration::from_secs(10) {
                        thread::sleep(Duration::from_millis(50));
                    }
                }
            }
        }
        for m in mounts_under(&dir).into_iter().rev() {
            note(format!("  lazily unmounting stale {}", m.display()));
            let _ = run_with_timeout(Command::new("umount").arg("-l").arg(&m), TOOL_TIMEOUT);
        }
        if mounts_under(&dir).is_empty() {
            if let Err(e) = fs::remove_dir_all(&dir) {
                note(format!("  cannot remove {}: {e}", dir.display()));
            }
        } else {
            note(format!("  {} still has mounts; leaving it", dir.display()));
        }
    }
}

// ------------------------------------------------------------------------------------------
// ports

/// Allocate a TCP port that is currently free on 127.0.0.1.
///
/// Ports are picked at random *below* the kernel's ephemeral range
/// (`/proc/sys/net/ipv4/ip_local_port_range`), so outgoing connections of
/// other daemons cannot grab them between allocation and use; each candidate
/// is checked by binding it. A port is never handed out twice within one
/// process.
pub fn free_port() -> u16 {
    use rand::Rng;
    static GIVEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    let given = given.get_or_insert_with(HashSet::new);
    let low = fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .next()
                .and_then(|v| v.parse::<u32>().ok())
        })
        .unwrap_or(32768);
    let mut rng = rand::thread_rng();
    for _ in 0..10_000 {
        let cand: u16 = if low >= 12_000 {
            rng.gen_range(10_000..low.min(65_535) as u16)
        } else {
            match TcpListener::bind(("127.0.0.1", 0)).and_then(|l| l.local_addr()) {
                Ok(a) => a.port(),
                Err(_) => continue,
            }
        };
        if given.contains(&cand) {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", cand)).is_err() {
            continue;
        }
        given.insert(cand);
        return cand;
    }
    panic!("free_port: could not find a free port on 127.0.0.1");
}

/// True if something listens on TCP `port` (127.0.0.1, 0.0.0.0 or IPv6),
/// according to `/proc/net/tcp{,6}` (does not connect).
pub fn is_listening(port: u16) -> bool {
    let want = format!(":{port:04X}");
    for f in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(s) = fs::read_to_string(f) else {
            continue;
        };
        for line in s.lines().skip(1) {
            let mut it = line.split_whitespace();
            let (Some(_sl), Some(local), Some(_rem), Some(state)) =
                (it.next(), it.next(), it.next(), it.next())
            else {
                continue;
            };
            if state == "0A" && local.ends_with(&want) {
                return true;
            }
        }
    }
    false
}

// ------------------------------------------------------------------------------------------
// binaries

/// Locate a binary built by this workspace, e.g. `antler_bin("mfschunkserver")`.
///
/// The test executable lives in `<target>/<profile>/deps/`, so the binary is
/// looked up in `<target>/<profile>/`. The environment variable
/// `ANTLER_BIN_DIR` overrides the directory. Panics with a clear message if
/// the binary does not exist (`cargo test -p antler-tests` does not build the
/// other packages' binaries).
pub fn antler_bin(name: &str) -> PathBuf {
    let dir = match std::env::var_os("ANTLER_BIN_DIR") {
        Some(d) => PathBuf::from(d),
        None => {
            let exe = std::env::current_exe().expect("current_exe");
            let mut dir = exe
                .parent()
                .expect("test exe has a parent dir")
                .to_path_buf();
            if dir.file_name() == Some(OsStr::new("deps")) {
                dir.pop();
            }
            dir
        }
    };
    let p = dir.join(name);
    if !p.is_file() {
        panic!(
            "Antler binary `{name}` not found at {}; build it first: cargo build --workspace --bins \
             (or point ANTLER_BIN_DIR at the directory holding it)",
            p.display()
        );
    }
    p
}

/// Panics with an install hint when `p` is missing.
pub fn require_file(p: &str, what: &str) {
    if !Path::new(p).exists() {
        panic!("{p} not found: install {what} (Debian package) first");
    }
}

fn require_root() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        panic!("antler cluster tests must run as root (FUSE mounts, drop_caches)");
    }
}

// ------------------------------------------------------------------------------------------
// process helpers

type SpawnRequest = (Command, mpsc::Sender<io::Result<Child>>);

/// Spawn `cmd` from a dedicated thread that lives as long as the process, so
/// that `PR_SET_PDEATHSIG` (which fires when the *spawning thread* exits)
/// only fires when the whole test process goes away.
fn spawn_daemon_process(mut cmd: Command) -> io::Result<Child> {
    static TX: OnceLock<Mutex<mpsc::Sender<SpawnRequest>>> = OnceLock::new();
    let tx = TX.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        thread::Builder::new()
            .name("antler-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("cannot start the spawner thread");
        Mutex::new(tx)
    });
    let parent = std::process::id() as libc::pid_t;
    let pdeathsig = move || {
        // SAFETY: prctl(2), getppid(2), getpid(2) and kill(2) are async-signal-safe
        // syscalls without pointer arguments; fine between fork and exec.
        unsafe {
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGTERM as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
            // the parent may have died between fork and prctl
            if libc::getppid() != parent {
                libc::kill(libc::getpid(), libc::SIGTERM);
            }
        }
        Ok(())
    };
    // SAFETY: the hook only makes async-signal-safe syscalls (see above).
    unsafe {
        cmd.pre_exec(pdeathsig);
    }
    let (rtx, rrx) = mpsc::channel();
    tx.lock()
        .unwrap_or_else(|e| e.into_inner())
        .send((cmd, rtx))
        .map_err(|_| io::Error::other("spawner thread is gone"))?;
    rrx.recv()
        .map_err(|_| io::Error::other("spawner thread is gone"))?
}

/// Run `cmd` with stdin from /dev/null and stdout/stderr captured, killing it
/// after `timeout`. Returns the output whatever the exit status; `Err` only if
/// it could not be started or timed out.
pub fn run_with_timeout(cmd: &mut Command, timeout: Duration) -> Result<Output, String> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let desc = format!("{cmd:?}");
    let mut child = cmd.spawn().map_err(|e| format!("cannot run {desc}: {e}"))?;
    let reader = |mut r: Box<dyn Read + Send>| {
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut v = Vec::new();
            let _ = r.read_to_end(&mut v);
            let _ = tx.send(v);
        });
        rx
    };
    let out_rx = reader(Box::new(child.stdout.take().expect("piped stdout")));
    let err_rx = reader(Box::new(child.stderr.take().expect("piped stderr")));
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                let stdout = out_rx
                    .recv_timeout(Duration::from_secs(10))
                    .unwrap_or_default();
                let stderr = err_rx
                    .recv_timeout(Duration::from_secs(10))
                    .unwrap_or_default();
                return Ok(Output {
                    status,
                    stdout,
                    stderr,
                });
            }
            Ok(None) => {}
            Err(e) => return Err(format!("waiting for {desc}: {e}")),
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let t = Instant::now();
            while t.elapsed() < Duration::from_secs(5) {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                thread::sleep(Duration::from_millis(20));
            }
            return Err(format!("{desc} did not finish within {timeout:?} (killed)"));
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Run a command-line tool and return its stdout. Panics (showing stdout and
/// stderr) if it cannot be run, exits non-zero or runs longer than 120 s.
pub fn run_tool<I, S>(program: &str, args: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = Command::new(program);
    cmd.args(args);
    let desc = format!("{cmd:?}");
    let out = run_with_timeout(&mut cmd, TOOL_TIMEOUT).unwrap_or_else(|e| panic!("{e}"));
    if !out.status.success() {
        panic!(
            "{desc} failed ({}):\n--- stdout ---\n{}--- stderr ---\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Last `n` lines of a (log) file, lossily decoded; empty if unreadable.
pub fn tail_lines(path: &Path, n: usize) -> String {
    let Ok(bytes) = fs::read(path) else {
        return String::new();
    };
    let s = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = s.lines().collect();
    let start = lines.len().saturating_sub(n);
    let mut out = lines[start..].join("\n");
    out.push('\n');
    out
}

/// A long-running child process with its log file.
#[derive(Debug)]
struct Daemon {
    name: String,
    program: PathBuf,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    log: PathBuf,
    pids_file: PathBuf,
    child: Option<Child>,
    last_status: Option<ExitStatus>,
}

impl Daemon {
    fn new(
        name: &str,
        program: PathBuf,
        args: Vec<OsString>,
        log: PathBuf,
        pids_file: PathBuf,
    ) -> Daemon {
        Daemon {
            name: name.to_string(),
            program,
            args,
            env: Vec::new(),
            log,
            pids_file,
            child: None,
            last_status: None,
        }
    }

    fn start(&mut self) -> Result<u32, String> {
        if self.running() {
            return Err(format!(
                "{} is already running (pid {:?})",
                self.name,
                self.pid()
            ));
        }
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| format!("cannot open {}: {e}", self.log.display()))?;
        let _ = writeln!(
            log,
            "===== antler-tests: starting {} {}",
            self.program.display(),
            self.args
                .iter()
                .map(|a| a.to_string_lossy())
                .collect::<Vec<_>>()
                .join(" ")
        );
        let log2 = log.try_clone().map_err(|e| e.to_string())?;
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args)
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log2));
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let child = spawn_daemon_process(cmd)
            .map_err(|e| format!("cannot start {}: {e}", self.program.display()))?;
        let pid = child.id();
        if let Ok(mut f) = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.pids_file)
        {
            let _ = writeln!(
                f,
                "{pid} {} {}",
                proc_starttime(pid).unwrap_or(0),
                self.name
            );
        }
        self.child = Some(child);
        self.last_status = None;
        Ok(pid)
    }

    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Reap the child if it has exited; returns its status in that case.
    fn poll(&mut self) -> Option<ExitStatus> {
        if let Some(c) = self.child.as_mut() {
            if let Ok(Some(st)) = c.try_wait() {
                self.child = None;
                self.last_status = Some(st);
                return Some(st);
            }
            return None;
        }
        self.last_status
    }

    fn running(&mut self) -> bool {
        self.poll();
        self.child.is_some()
    }

    fn signal(&self, sig: libc::c_int) {
        if let Some(pid) = self.pid() {
            // SAFETY: kill(2) on the PID of our own unreaped child (cannot be recycled).
            unsafe { libc::kill(pid as libc::pid_t, sig) };
        }
    }

    fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let t = Instant::now();
        loop {
            if !self.running() {
                return self.last_status;
            }
            if t.elapsed() >= timeout {
                return None;
            }
            thread::sleep(Duration::from_millis(25));
        }
    }

    /// SIGTERM, wait up to `grace`, then SIGKILL and wait.
    fn stop(&mut self, grace: Duration) -> Option<ExitStatus> {
        if !self.running() {
            return self.last_status;
        }
        self.signal(libc::SIGTERM);
        if let Some(st) = self.wait_exit(grace) {
            return Some(st);
        }
        note(format!(
            "{} (pid {:?}) ignored SIGTERM for {grace:?}; sending SIGKILL",
            self.name,
            self.pid()
        ));
        self.kill()
    }

    fn kill(&mut self) -> Option<ExitStatus> {
        if !self.running() {
            return self.last_status;
        }
        self.signal(libc::SIGKILL);
        if let Some(c) = self.child.as_mut() {
            if let Ok(st) = c.wait() {
                self.child = None;
                self.last_status = Some(st);
            }
        }
        self.last_status
    }
}

fn describe_status(st: Option<ExitStatus>) -> String {
    match st {
        None => "still running".into(),
        Some(s) => match (s.code(), s.signal()) {
            (Some(c), _) => format!("exit code {c}"),
            (_, Some(sig)) => format!("killed by signal {sig}"),
            _ => format!("{s}"),
        },
    }
}

// ------------------------------------------------------------------------------------------
// mounts

fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn all_mountpoints() -> Vec<PathBuf> {
    let Ok(s) = fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    s.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|m| PathBuf::from(unescape_mountinfo(m)))
        .collect()
}

/// True if `path` is a mount point (from `/proc/self/mountinfo`; never blocks on a hung FUSE mount).
pub fn is_mountpoint(path: &Path) -> bool {
    all_mountpoints().iter().any(|m| m == path)
}

fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = all_mountpoints()
        .into_iter()
        .filter(|m| m.starts_with(dir))
        .collect();
    v.sort();
    v
}

/// `syncfs` of the filesystem holding `dir` (via `sync -f DIR`, bounded to 120 s).
pub fn syncfs(dir: &Path) {
    match run_with_timeout(Command::new("sync").arg("-f").arg(dir), TOOL_TIMEOUT) {
        Ok(o) if o.status.success() => {}
        Ok(o) => note(format!(
            "sync -f {} failed: {}",
            dir.display(),
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => note(format!("sync -f {}: {e}", dir.display())),
    }
}

/// Write `3` to `/proc/sys/vm/drop_caches`, waiting at most 30 s (the write
/// can block behind other users' writeback). Returns false on timeout/error.
pub fn drop_kernel_caches() -> bool {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(fs::write("/proc/sys/vm/drop_caches", "3"));
    });
    match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(Ok(())) => true,
        Ok(Err(e)) => {
            note(format!("drop_caches failed: {e}"));
            false
        }
        Err(_) => {
            note("warning: drop_caches still running after 30 s; continuing");
            false
        }
    }
}

// ------------------------------------------------------------------------------------------
// cluster

/// Which implementation a chunkserver runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CsKind {
    /// The real MooseFS 3.0.117 `/usr/sbin/mfschunkserver`.
    Real,
    /// Antler's chunkserver, `antler_bin("mfschunkserver")` (same command line and config).
    Antler,
}

impl CsKind {
    fn binary(self) -> PathBuf {
        match self {
            CsKind::Real => {
                require_file(REAL_MFSCHUNKSERVER, "moosefs-chunkserver");
                PathBuf::from(REAL_MFSCHUNKSERVER)
            }
            CsKind::Antler => antler_bin("mfschunkserver"),
        }
    }
}

/// Extra settings for [`Cluster::add_chunkserver_opts`].
#[derive(Debug, Clone, Default)]
pub struct CsOptions {
    /// Use this existing directory as the (only) hdd entry instead of a fresh `csN/hdd`.
    pub hdd_dir: Option<PathBuf>,
    /// Use this `CSSERV_LISTEN_PORT` instead of a freshly allocated one.
    pub port: Option<u16>,
    /// Additional or overriding `mfschunkserver.cfg` keys (`KEY = VALUE`).
    pub extra_cfg: Vec<(String, String)>,
    /// Additional environment variables for the process (e.g. `RUST_LOG`).
    pub env: Vec<(String, String)>,
}

/// One chunkserver as seen by the master (`mfscli -SCS`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsInfo {
    /// False for the `Disconnected chunk servers:` lines.
    pub connected: bool,
    /// Address as the master reports it (`0.0.0.0` because of the loopback remap).
    pub host: String,
    /// `CSSERV_LISTEN_PORT` of the chunkserver.
    pub port: u16,
    /// Chunkserver id assigned by the master.
    pub id: u32,
    /// Version string (`3.0.117`); empty for disconnected servers.
    pub version: String,
    /// Maintenance state (`maintenance_off`, `maintenance_on`, `maintenance_temp_on`).
    pub maintenance: String,
    /// Number of chunks the chunkserver reported (0 for disconnected servers).
    pub chunks: u64,
    /// Used bytes of its disks.
    pub used: u64,
    /// Total bytes of its disks (0 right after connecting, until its hdd scan is reported).
    pub total: u64,
}

/// Builder for a [`Cluster`] with a real master; see [`Cluster::builder`].
#[derive(Debug, Clone)]
pub struct ClusterBuilder {
    master_cfg: Vec<(String, String)>,
    master_kind: MasterKind,
}

/// Which master a [`Cluster`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MasterKind {
    /// The real MooseFS 3.0.117 `/usr/sbin/mfsmaster`.
    Real,
    /// Antler's master, `antler_bin("mfsmaster")` (same command line and config).
    Antler,
}

impl Default for ClusterBuilder {
    fn default() -> Self {
        ClusterBuilder {
            master_cfg: vec![
                // start replicating right away instead of after 60 s
                ("REPLICATIONS_DELAY_INIT".into(), "0".into()),
                // lowest accepted value (lower values are raised to 60 with a log line)
                ("CHUNKS_LOOP_MIN_TIME".into(), "60".into()),
                ("CHUNKS_LOOP_MAX_CPS".into(), "100000".into()),
            ],
            master_kind: MasterKind::Real,
        }
    }
}

impl ClusterBuilder {
    /// Set (or override) a `mfsmaster.cfg` key. The harness-managed keys
    /// (paths, listen hosts/ports, REMAP, WORKING_USER) can be overridden too.
    pub fn master_cfg(mut self, key: &str, value: impl Display) -> Self {
        set_key(&mut self.master_cfg, key, &value.to_string());
        self
    }

    /// Run `kind` as the master (the default is the real one).
    pub fn master_kind(mut self, kind: MasterKind) -> Self {
        self.master_kind = kind;
        self
    }

    /// Create the base directory and configs and start the real `mfsmaster`.
    pub fn start_real_master(self) -> Cluster {
        self.master_kind(MasterKind::Real).start()
    }

    /// Create the base directory and configs and start the chosen master.
    pub fn start(self) -> Cluster {
        require_root();
        let master_bin = match self.master_kind {
            MasterKind::Real => {
                require_file(REAL_MFSMASTER, "moosefs-master");
                PathBuf::from(REAL_MFSMASTER)
            }
            MasterKind::Antler => antler_bin("mfsmaster"),
        };
        require_file(EMPTY_METADATA, "moosefs-master");
        let base = tempfile::Builder::new()
            .prefix("antler-")
            .tempdir_in("/tmp")
            .expect("cannot create temp dir under /tmp");
        let base_path = base.path().to_path_buf();
        fs::write(base_path.join(OWNER_FILE), own_identity()).expect("write owner file");
        for d in ["etc", "logs", "master"] {
            fs::create_dir_all(base_path.join(d)).expect("mkdir");
        }
        let etc = base_path.join("etc");
        let (ml, cs, cl) = (free_port(), free_port(), free_port());
        let mut cfg: Vec<(String, String)> = Vec::new();
        let b = base_path.display();
        for (k, v) in [
            ("WORKING_USER", "root".to_string()),
            ("WORKING_GROUP", "root".to_string()),
            ("DATA_PATH", format!("{b}/master")),
            ("EXPORTS_FILENAME", format!("{b}/etc/mfsexports.cfg")),
            ("TOPOLOGY_FILENAME", format!("{b}/etc/mfstopology.cfg")),
            ("MATOML_LISTEN_HOST", "127.0.0.1".into()),
            ("MATOML_LISTEN_PORT", ml.to_string()),
            ("MATOCS_LISTEN_HOST", "127.0.0.1".into()),
            ("MATOCS_LISTEN_PORT", cs.to_string()),
            ("MATOCL_LISTEN_HOST", "127.0.0.1".into()),
            ("MATOCL_LISTEN_PORT", cl.to_string()),
            ("REMAP_BITS", "32".into()),
            ("REMAP_SOURCE_IP_CLASS", "127.0.0.1".into()),
            ("REMAP_DESTINATION_IP_CLASS", "0.0.0.0".into()),
        ] {
            set_key(&mut cfg, k, &v);
        }
        for (k, v) in &self.master_cfg {
            set_key(&mut cfg, k, v);
        }
        let cl = get_key(&cfg, "MATOCL_LISTEN_PORT")
            .and_then(|v| v.parse().ok())
            .unwrap_or(cl);
        let cs = get_key(&cfg, "MATOCS_LISTEN_PORT")
            .and_then(|v| v.parse().ok())
            .unwrap_or(cs);
        let ml = get_key(&cfg, "MATOML_LISTEN_PORT")
            .and_then(|v| v.parse().ok())
            .unwrap_or(ml);
        let master_cfg_path = etc.join("mfsmaster.cfg");
        fs::write(&master_cfg_path, render_cfg(&cfg)).expect("write mfsmaster.cfg");
        fs::write(
            etc.join("mfsexports.cfg"),
            "127.0.0.1\t/\trw,alldirs,admin,maproot=0:0\n127.0.0.1\t.\trw\n",
        )
        .expect("write mfsexports.cfg");
        fs::write(etc.join("mfstopology.cfg"), "").expect("write mfstopology.cfg");
        let data_path = get_key(&cfg, "DATA_PATH")
            .map(PathBuf::from)
            .unwrap_or(base_path.join("master"));
        fs::create_dir_all(&data_path).expect("mkdir master DATA_PATH");
        fs::copy(EMPTY_METADATA, data_path.join("metadata.mfs")).expect("copy metadata.mfs.empty");
        let pids_file = base_path.join(PIDS_FILE);
        let master = Daemon::new(
            "mfsmaster",
            master_bin,
            vec![
                "-c".into(),
                master_cfg_path.clone().into(),
                "-f".into(),
                "start".into(),
            ],
            base_path.join("logs/master.log"),
            pids_file,
        );
        // From here on the Cluster exists, so its Drop cleans up after any panic.
        let mut c = Cluster {
            base: Some(base),
            base_path,
            master_cfg_path,
            master_data: data_path,
            ml_port: ml,
            cs_port: cs,
            cl_port: cl,
            master,
            chunkservers: Vec::new(),
            mount: None,
            mount_opts: Vec::new(),
            meta_mount: None,
            trash_time_set: false,
        };
        c.launch_master(false);
        c
    }
}

fn set_key(cfg: &mut Vec<(String, String)>, key: &str, value: &str) {
    if let Some(e) = cfg.iter_mut().find(|(k, _)| k == key) {
        e.1 = value.to_string();
    } else {
        cfg.push((key.to_string(), value.to_string()));
    }
}

fn get_key<'a>(cfg: &'a [(String, String)], key: &str) -> Option<&'a str> {
    cfg.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

fn render_cfg(cfg: &[(String, String)]) -> String {
    let mut s = String::from("# written by antler-tests\n");
    for (k, v) in cfg {
        s.push_str(&format!("{k} = {v}\n"));
    }
    s
}

#[derive(Debug)]
struct Chunkserver {
    kind: CsKind,
    port: u16,
    hdd_dir: PathBuf,
    daemon: Daemon,
}

/// A MooseFS-compatible test cluster: a real master, any mix of real and
/// Antler chunkservers and optionally a real `mfsmount`, all under one
/// temporary directory. Dropping it unmounts, stops every process it started
/// (SIGTERM, then SIGKILL) and removes the directory.
///
/// Layout of [`Cluster::base_dir`]: `etc/` (configs), `logs/` (`master.log`,
/// `csN.log`, `mount.log`), `master/` (master DATA_PATH), `csN/` (chunkserver
/// DATA_PATH) with `csN/hdd/` (its chunk storage), `mnt/` (mount point).
#[derive(Debug)]
pub struct Cluster {
    base: Option<tempfile::TempDir>,
    base_path: PathBuf,
    master_cfg_path: PathBuf,
    master_data: PathBuf,
    ml_port: u16,
    cs_port: u16,
    cl_port: u16,
    master: Daemon,
    chunkservers: Vec<Chunkserver>,
    mount: Option<Daemon>,
    mount_opts: Vec<String>,
    meta_mount: Option<Daemon>,
    trash_time_set: bool,
}

impl Cluster {
    /// A builder to tweak the master configuration before starting it.
    pub fn builder() -> ClusterBuilder {
        ClusterBuilder::default()
    }

    /// Start a real `mfsmaster` with the default test configuration
    /// (see [`ClusterBuilder`]) and wait until its client port listens.
    pub fn start_real_master() -> Cluster {
        ClusterBuilder::default().start_real_master()
    }

    // ---------------------------------------------------------------- accessors

    /// The cluster's temporary base directory.
    pub fn base_dir(&self) -> &Path {
        &self.base_path
    }

    /// Master port for clients and tools (`MATOCL_LISTEN_PORT`).
    pub fn master_client_port(&self) -> u16 {
        self.cl_port
    }

    /// Master port for chunkservers (`MATOCS_LISTEN_PORT`).
    pub fn master_cs_port(&self) -> u16 {
        self.cs_port
    }

    /// Master port for metaloggers (`MATOML_LISTEN_PORT`).
    pub fn master_ml_port(&self) -> u16 {
        self.ml_port
    }

    /// Path of the generated `mfsmaster.cfg`.
    pub fn master_cfg_path(&self) -> &Path {
        &self.master_cfg_path
    }

    /// The master's DATA_PATH (metadata, changelogs).
    pub fn master_data_dir(&self) -> &Path {
        &self.master_data
    }

    /// PID of the running master, if it is running.
    pub fn master_pid(&self) -> Option<u32> {
        self.master.pid()
    }

    /// Full contents of the master log (stdout + stderr of `mfsmaster -f`).
    pub fn master_log(&self) -> String {
        String::from_utf8_lossy(&fs::read(&self.master.log).unwrap_or_default()).into_owned()
    }

    /// Full contents of the mount log (stdout + stderr of `mfsmount -f`).
    pub fn mount_log(&self) -> String {
        String::from_utf8_lossy(
            &fs::read(self.base_path.join("logs/mount.log")).unwrap_or_default(),
        )
        .into_owned()
    }

    // ---------------------------------------------------------------- master control

    fn launch_master(&mut self, recover: bool) {
        let mut args: Vec<OsString> = Vec::new();
        if recover {
            args.push("-a".into());
        }
        args.extend([
            "-c".into(),
            self.master_cfg_path.clone().into(),
            "-f".into(),
            "start".into(),
        ]);
        self.master.args = args;
        let pid = self.master.start().unwrap_or_else(|e| self.fail(&e));
        if let Err(e) = wait_listening(self.cl_port, &mut self.master, LISTEN_TIMEOUT) {
            self.fail(&format!("mfsmaster did not come up: {e}"));
        }
        note(format!(
            "mfsmaster pid {pid} up (ml {} cs {} cl {}) in {}",
            self.ml_port,
            self.cs_port,
            self.cl_port,
            self.base_path.display()
        ));
    }

    /// Stop the master gracefully (SIGTERM; it writes `metadata.mfs`), waiting for it.
    pub fn stop_master(&mut self) {
        let st = self.master.stop(MASTER_STOP_GRACE);
        note(format!("mfsmaster stopped: {}", describe_status(st)));
    }

    /// Kill the master with SIGKILL (a crash); restart it with [`Cluster::start_master_recover`].
    pub fn kill_master(&mut self) {
        self.master.kill();
        note("mfsmaster killed (SIGKILL)");
    }

    /// Run `kind` as the master from its next start on (same config and data directory):
    /// a migration between the real master and Antler's.
    pub fn set_master_kind(&mut self, kind: MasterKind) {
        self.master.program = match kind {
            MasterKind::Real => PathBuf::from(REAL_MFSMASTER),
            MasterKind::Antler => antler_bin("mfsmaster"),
        };
    }

    /// Start the master again (plain start; needs `metadata.mfs`, i.e. after [`Cluster::stop_master`]).
    pub fn start_master(&mut self) {
        self.launch_master(false);
    }

    /// Start the master with `-a` (replay changelogs; needed after [`Cluster::kill_master`]).
    pub fn start_master_recover(&mut self) {
        self.launch_master(true);
    }

    // ---------------------------------------------------------------- chunkservers

    /// Add and start a chunkserver with fresh data and hdd directories; returns its index.
    pub fn add_chunkserver(&mut self, kind: CsKind) -> usize {
        self.add_chunkserver_opts(kind, CsOptions::default())
    }

    /// Add and start a chunkserver that uses an existing hdd directory (e.g.
    /// the [`Cluster::chunkserver_hdd`] of a stopped one); returns its index.
    pub fn add_chunkserver_with_hdd(&mut self, kind: CsKind, hdd_dir: &Path) -> usize {
        self.add_chunkserver_opts(
            kind,
            CsOptions {
                hdd_dir: Some(hdd_dir.to_path_buf()),
                ..CsOptions::default()
            },
        )
    }

    /// Add and start a chunkserver with extra options; returns its index.
    ///
    /// Writes `etc/mfschunkserverN.cfg` (DATA_PATH `csN/`, HDD_CONF_FILENAME
    /// `etc/mfshddN.cfg`, `MASTER_HOST = 0.0.0.0`, `BIND_HOST = 127.0.0.1`,
    /// `CSSERV_LISTEN_HOST = 127.0.0.1`, a fresh `CSSERV_LISTEN_PORT`,
    /// `HDD_LEAVE_SPACE_DEFAULT = 256MiB`, `WORKING_USER/GROUP = root`) and
    /// starts `BINARY -c CFG -f start`, waiting until it listens on its port.
    pub fn add_chunkserver_opts(&mut self, kind: CsKind, opts: CsOptions) -> usize {
        let i = self.chunkservers.len();
        let data_dir = self.base_path.join(format!("cs{i}"));
        let hdd_dir = opts.hdd_dir.clone().unwrap_or_else(|| data_dir.join("hdd"));
        fs::create_dir_all(&data_dir).expect("mkdir chunkserver DATA_PATH");
        fs::create_dir_all(&hdd_dir).expect("mkdir chunkserver hdd");
        let port = opts.port.unwrap_or_else(free_port);
        let etc = self.base_path.join("etc");
        let cfg_path = etc.join(format!("mfschunkserver{i}.cfg"));
        let hdd_cfg = etc.join(format!("mfshdd{i}.cfg"));
        let mut cfg: Vec<(String, String)> = Vec::new();
        for (k, v) in [
            ("WORKING_USER", "root".to_string()),
            ("WORKING_GROUP", "root".to_string()),
            ("SYSLOG_IDENT", format!("mfscs{i}")),
            ("DATA_PATH", data_dir.display().to_string()),
            ("HDD_CONF_FILENAME", hdd_cfg.display().to_string()),
            ("MASTER_HOST", "0.0.0.0".into()),
            ("MASTER_PORT", self.cs_port.to_string()),
            ("BIND_HOST", "127.0.0.1".into()),
            ("CSSERV_LISTEN_HOST", "127.0.0.1".into()),
            ("CSSERV_LISTEN_PORT", port.to_string()),
            ("HDD_LEAVE_SPACE_DEFAULT", "256MiB".into()),
        ] {
            set_key(&mut cfg, k, &v);
        }
        for (k, v) in &opts.extra_cfg {
            set_key(&mut cfg, k, v);
        }
        fs::write(&cfg_path, render_cfg(&cfg)).expect("write mfschunkserver.cfg");
        fs::write(&hdd_cfg, format!("{}\n", hdd_dir.display())).expect("write mfshdd.cfg");
        let mut daemon = Daemon::new(
            &format!("cs{i}"),
            PathBuf::new(),
            vec!["-c".into(), cfg_path.into(), "-f".into(), "start".into()],
            self.base_path.join(format!("logs/cs{i}.log")),
            self.base_path.join(PIDS_FILE),
        );
        daemon.env = opts.env.iter().map(|(k, v)| (k.into(), v.into())).collect();
        self.chunkservers.push(Chunkserver {
            kind,
            port,
            hdd_dir,
            daemon,
        });
        self.start_chunkserver(i);
        i
    }

    fn cs(&mut self, i: usize) -> &mut Chunkserver {
        let n = self.chunkservers.len();
        self.chunkservers
            .get_mut(i)
            .unwrap_or_else(|| panic!("no chunkserver {i} (have {n})"))
    }

    /// (Re)start chunkserver `i` with its existing configuration and wait until it listens.
    pub fn start_chunkserver(&mut self, i: usize) {
        let cs = self.cs(i);
        cs.daemon.program = cs.kind.binary();
        let (port, kind) = (cs.port, cs.kind);
        let res = cs.daemon.start().and_then(|pid| {
            wait_listening(port, &mut cs.daemon, LISTEN_TIMEOUT)?;
            Ok(pid)
        });
        match res {
            Ok(pid) => note(format!(
                "chunkserver {i} ({kind:?}) pid {pid} listening on {port}"
            )),
            Err(e) => self.fail(&format!("chunkserver {i} ({kind:?}) did not start: {e}")),
        }
    }

    /// Stop chunkserver `i` gracefully (SIGTERM, wait; SIGKILL after 15 s).
    /// Note: a real master puts a gracefully stopped chunkserver into
    /// temporary maintenance (no re-replication of its chunks for
    /// `CS_TEMP_MAINTENANCE_MODE_TIMEOUT`, default 1800 s).
    pub fn stop_chunkserver(&mut self, i: usize) {
        let st = self.cs(i).daemon.stop(STOP_GRACE);
        note(format!("chunkserver {i} stopped: {}", describe_status(st)));
    }

    /// Kill chunkserver `i` with SIGKILL and reap it.
    pub fn kill_chunkserver(&mut self, i: usize) {
        self.cs(i).daemon.kill();
        note(format!("chunkserver {i} killed (SIGKILL)"));
    }

    /// Change the implementation chunkserver `i` runs on its next
    /// [`Cluster::start_chunkserver`] (same config, data dir, hdd dir and port).
    /// Panics if it is running.
    pub fn set_chunkserver_kind(&mut self, i: usize, kind: CsKind) {
        let cs = self.cs(i);
        assert!(
            !cs.daemon.running(),
            "chunkserver {i} must be stopped before changing its kind"
        );
        cs.kind = kind;
    }

    /// Number of chunkservers added so far (running or not).
    pub fn chunkserver_count(&self) -> usize {
        self.chunkservers.len()
    }

    /// Implementation of chunkserver `i`.
    pub fn chunkserver_kind(&self, i: usize) -> CsKind {
        self.chunkservers[i].kind
    }

    /// The hdd directory (chunk storage) of chunkserver `i`.
    pub fn chunkserver_hdd(&self, i: usize) -> PathBuf {
        self.chunkservers[i].hdd_dir.clone()
    }

    /// `CSSERV_LISTEN_PORT` of chunkserver `i` (the port `mfsfileinfo` shows).
    pub fn chunkserver_port(&self, i: usize) -> u16 {
        self.chunkservers[i].port
    }

    /// Index of the chunkserver listening on `port`, if any.
    pub fn chunkserver_by_port(&self, port: u16) -> Option<usize> {
        self.chunkservers.iter().position(|c| c.port == port)
    }

    /// PID of chunkserver `i` if it is running.
    pub fn chunkserver_pid(&self, i: usize) -> Option<u32> {
        self.chunkservers[i].daemon.pid()
    }

    /// True if chunkserver `i`'s process is running (reaps it if it exited).
    pub fn chunkserver_running(&mut self, i: usize) -> bool {
        self.cs(i).daemon.running()
    }

    /// Full log (stdout + stderr) of chunkserver `i`, all its runs appended.
    pub fn chunkserver_log(&self, i: usize) -> String {
        String::from_utf8_lossy(&fs::read(&self.chunkservers[i].daemon.log).unwrap_or_default())
            .into_owned()
    }

    /// Chunk files (`chunk_*.mfs`) currently in chunkserver `i`'s hdd directory.
    pub fn chunk_files(&self, i: usize) -> Vec<PathBuf> {
        let mut v = Vec::new();
        let hdd = &self.chunkservers[i].hdd_dir;
        if let Ok(rd) = fs::read_dir(hdd) {
            for sub in rd.flatten() {
                if let Ok(rd2) = fs::read_dir(sub.path()) {
                    for f in rd2.flatten() {
                        let n = f.file_name();
                        let n = n.to_string_lossy();
                        if n.starts_with("chunk_") && n.ends_with(".mfs") {
                            v.push(f.path());
                        }
                    }
                }
            }
        }
        v.sort();
        v
    }

    // ---------------------------------------------------------------- master queries

    /// Run `mfscli -H 127.0.0.1 -P <client port> -n ARGS` and return stdout
    /// (plain tab-separated output, since stdout is not a tty).
    pub fn mfscli(&self, args: &[&str]) -> String {
        let port = self.cl_port.to_string();
        let mut all: Vec<&str> = vec!["-H", "127.0.0.1", "-P", &port, "-n"];
        all.extend_from_slice(args);
        run_tool(MFSCLI, all)
    }

    /// Chunkservers the master knows (`mfscli -SCS`), connected and disconnected.
    pub fn chunkservers(&self) -> Vec<CsInfo> {
        parse_mfscli_cs(&self.mfscli(&["-SCS"]))
    }

    /// Wait until at least `n` chunkservers are connected to the master *and*
    /// report a non-zero total space (i.e. their hdd scan is registered and
    /// they can receive chunks). Panics with the master log tail and the
    /// chunkserver logs on timeout, or if the master or a started chunkserver
    /// process died. Note that it counts *at least* `n`: right after killing a
    /// chunkserver, use [`Cluster::wait_chunkserver`] for a specific one.
    pub fn wait_chunkservers(&mut self, n: usize, timeout: Duration) {
        self.poll_cs_list(timeout, &format!("{n} registered chunkservers"), |v| {
            v.iter().filter(|c| c.connected && c.total > 0).count() >= n
        });
    }

    /// Wait until chunkserver `i` (by its port) is connected to the master
    /// with a non-zero total space. Panics like [`Cluster::wait_chunkservers`].
    pub fn wait_chunkserver(&mut self, i: usize, timeout: Duration) {
        let port = self.chunkserver_port(i);
        self.poll_cs_list(
            timeout,
            &format!("chunkserver {i} (port {port}) to register"),
            |v| {
                v.iter()
                    .any(|c| c.connected && c.total > 0 && c.port == port)
            },
        );
    }

    /// Wait until chunkserver `i` is no longer listed as connected by the master.
    pub fn wait_chunkserver_gone(&mut self, i: usize, timeout: Duration) {
        let port = self.chunkserver_port(i);
        self.poll_cs_list(
            timeout,
            &format!("master to drop chunkserver {i} (port {port})"),
            |v| !v.iter().any(|c| c.connected && c.port == port),
        );
    }

    fn poll_cs_list(&mut self, timeout: Duration, what: &str, done: impl Fn(&[CsInfo]) -> bool) {
        let t = Instant::now();
        loop {
            let port = self.cl_port.to_string();
            let last = match run_with_timeout(
                Command::new(MFSCLI).args(["-H", "127.0.0.1", "-P", &port, "-n", "-SCS"]),
                TOOL_TIMEOUT,
            ) {
                Ok(o) if o.status.success() => {
                    let out = String::from_utf8_lossy(&o.stdout).into_owned();
                    if done(&parse_mfscli_cs(&out)) {
                        note(format!(
                            "{what}: done after {:.1} s",
                            t.elapsed().as_secs_f64()
                        ));
                        return;
                    }
                    out
                }
                Ok(o) => format!("mfscli failed: {}", String::from_utf8_lossy(&o.stderr)),
                Err(e) => e,
            };
            if !self.master.running() {
                let st = self.master.last_status;
                self.fail(&format!(
                    "mfsmaster exited ({}) while waiting for {what}",
                    describe_status(st)
                ));
            }
            for i in 0..self.chunkservers.len() {
                let d = &mut self.chunkservers[i].daemon;
                if d.child.is_some() && !d.running() {
                    let st = d.last_status;
                    self.fail(&format!(
                        "chunkserver {i} exited ({}) while waiting for {what}",
                        describe_status(st)
                    ));
                }
            }
            if t.elapsed() > timeout {
                self.fail(&format!(
                    "timeout ({timeout:?}) waiting for {what}; last mfscli -SCS:\n{last}"
                ));
            }
            thread::sleep(Duration::from_millis(250));
        }
    }

    /// Poll `mfscheckfile`/`mfsfileinfo` on `path` until every chunk has
    /// exactly `copies` VALID copies; returns the parsed `mfsfileinfo`. Panics
    /// (with outputs and logs) after `timeout`.
    pub fn wait_copies(&mut self, path: &Path, copies: usize, timeout: Duration) -> Vec<FileChunk> {
        let t = Instant::now();
        loop {
            let check = mfscheckfile(path);
            let info = mfsfileinfo(path);
            let chunks = parse_fileinfo(&info);
            let hist = parse_checkfile(&check);
            if hist.keys().all(|&k| k as usize == copies)
                && chunks.iter().all(|c| c.valid_copies() == copies)
            {
                return chunks;
            }
            if t.elapsed() > timeout {
                self.fail(&format!(
                    "timeout ({timeout:?}) waiting for {copies} copies of every chunk of {}:\n{check}{info}",
                    path.display()
                ));
            }
            thread::sleep(Duration::from_millis(500));
        }
    }

    /// Panic (with logs) if the master, a chunkserver that should be running,
    /// or the mount process has exited.
    pub fn assert_alive(&mut self) {
        let mut dead = Vec::new();
        if self.master.child.is_some() && !self.master.running() {
            dead.push(format!(
                "mfsmaster ({})",
                describe_status(self.master.last_status)
            ));
        }
        for (i, cs) in self.chunkservers.iter_mut().enumerate() {
            if cs.daemon.child.is_some() && !cs.daemon.running() {
                dead.push(format!(
                    "chunkserver {i} ({})",
                    describe_status(cs.daemon.last_status)
                ));
            }
        }
        if let Some(m) = self.mount.as_mut() {
            if !m.running() {
                dead.push(format!("mfsmount ({})", describe_status(m.last_status)));
            }
        }
        if !dead.is_empty() {
            self.fail(&format!("processes died unexpectedly: {}", dead.join(", ")));
        }
    }

    // ---------------------------------------------------------------- mount

    /// The mount point path (`<base>/mnt`), mounted or not.
    pub fn mount_path(&self) -> PathBuf {
        self.base_path.join("mnt")
    }

    /// True if the cluster's mount is currently mounted.
    pub fn is_mounted(&self) -> bool {
        is_mountpoint(&self.mount_path())
    }

    /// Mount the filesystem with the real `mfsmount` (default options) and
    /// return the mount point.
    pub fn mount(&mut self) -> PathBuf {
        self.mount_with_options(&[])
    }

    /// Mount with `-o mfscachemode=DIRECT`, so reads bypass the page cache
    /// and go to the chunkservers.
    pub fn mount_direct(&mut self) -> PathBuf {
        self.mount_with_options(&["mfscachemode=DIRECT"])
    }

    /// Mount with extra `-o` options (e.g. `mfscachemode=DIRECT`,
    /// `mfsioretries=5`). Runs `mfsmount MNT -f -H 127.0.0.1 -P PORT [-o ...]`
    /// as a child and waits until MNT is a mount point. On the first mount of
    /// the cluster, the root's trash time is set to 0 so deleted files release
    /// their chunks at once.
    pub fn mount_with_options(&mut self, opts: &[&str]) -> PathBuf {
        require_file(REAL_MFSMOUNT, "moosefs-client");
        if self.mount.is_some() {
            self.fail("mount(): already mounted; call umount() first");
        }
        let mnt = self.mount_path();
        fs::create_dir_all(&mnt).expect("mkdir mnt");
        let mut args: Vec<OsString> = vec![
            mnt.clone().into(),
            "-f".into(),
            "-H".into(),
            "127.0.0.1".into(),
            "-P".into(),
            self.cl_port.to_string().into(),
        ];
        if !opts.is_empty() {
            args.push("-o".into());
            args.push(opts.join(",").into());
        }
        let (d, pid) = self
            .start_mfsmount("mfsmount", &mnt, args, "logs/mount.log")
            .unwrap_or_else(|e| self.fail(&e));
        self.mount = Some(d);
        self.mount_opts = opts.iter().map(|s| s.to_string()).collect();
        note(format!(
            "mfsmount pid {pid} mounted {} (options {:?})",
            mnt.display(),
            opts
        ));
        if !self.trash_time_set {
            run_tool(
                "/usr/bin/mfssettrashtime",
                [OsStr::new("0"), mnt.as_os_str()],
            );
            self.trash_time_set = true;
        }
        mnt
    }

    /// Starts the real `mfsmount` with `args` and waits until `mnt` is a mount point;
    /// on failure it is stopped again and the error says why.
    fn start_mfsmount(
        &self,
        name: &str,
        mnt: &Path,
        args: Vec<OsString>,
        log: &str,
    ) -> Result<(Daemon, u32), String> {
        let mut d = Daemon::new(
            name,
            PathBuf::from(REAL_MFSMOUNT),
            args,
            self.base_path.join(log),
            self.base_path.join(PIDS_FILE),
        );
        let pid = d.start()?;
        let t = Instant::now();
        while !is_mountpoint(mnt) {
            if !d.running() {
                return Err(format!(
                    "{name} exited before mounting ({})",
                    describe_status(d.last_status)
                ));
            }
            if t.elapsed() > LISTEN_TIMEOUT {
                d.stop(STOP_GRACE);
                return Err(format!("timeout waiting for {name} to mount"));
            }
            thread::sleep(Duration::from_millis(50));
        }
        Ok((d, pid))
    }

    fn umount_inner(&mut self) -> Result<(), String> {
        let meta = unmount(&self.meta_mount_path(), self.meta_mount.take());
        let main = unmount(&self.mount_path(), self.mount.take());
        match (meta, main) {
            (Ok(()), Ok(())) => Ok(()),
            (a, b) => Err([a.err(), b.err()]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join("; ")),
        }
    }

    /// Unmounts the meta mount (no-op if not mounted).
    pub fn meta_umount(&mut self) {
        if let Err(e) = unmount(&self.meta_mount_path(), self.meta_mount.take()) {
            self.fail(&e);
        }
    }

    /// The meta mount point path (`<base>/meta`).
    pub fn meta_mount_path(&self) -> PathBuf {
        self.base_path.join("meta")
    }

    /// Mounts the meta file system (`mfsmount -m`: `trash/`, `sustained/`) with the
    /// real `mfsmount` at `<base>/meta`; the exports allow `.` from 127.0.0.1.
    pub fn meta_mount(&mut self) -> PathBuf {
        require_file(REAL_MFSMOUNT, "moosefs-client");
        if self.meta_mount.is_some() {
            self.fail("meta_mount(): already mounted");
        }
        let mnt = self.meta_mount_path();
        fs::create_dir_all(&mnt).expect("mkdir meta");
        let args: Vec<OsString> = vec![
            mnt.clone().into(),
            "-f".into(),
            "-m".into(),
            "-H".into(),
            "127.0.0.1".into(),
            "-P".into(),
            self.cl_port.to_string().into(),
        ];
        let (d, pid) = self
            .start_mfsmount("mfsmount -m", &mnt, args, "logs/meta-mount.log")
            .unwrap_or_else(|e| self.fail(&e));
        self.meta_mount = Some(d);
        note(format!("mfsmount -m pid {pid} mounted {}", mnt.display()));
        mnt
    }

    /// Unmount (`fusermount3 -u`, falling back to `umount -l`) and wait for
    /// the `mfsmount` process to exit. No-op if not mounted.
    pub fn umount(&mut self) {
        if let Err(e) = unmount(&self.mount_path(), self.mount.take()) {
            self.fail(&e);
        }
        note("unmounted");
    }

    /// Unmount and mount again with the same options (empties all client caches).
    pub fn remount(&mut self) -> PathBuf {
        let opts = self.mount_opts.clone();
        self.umount();
        let opts: Vec<&str> = opts.iter().map(String::as_str).collect();
        self.mount_with_options(&opts)
    }

    /// `syncfs` the mount (if mounted) and the base dir, then drop the
    /// kernel's clean caches (bounded wait), so later reads hit the chunkservers' disks.
    pub fn drop_caches(&self) {
        if self.is_mounted() {
            syncfs(&self.mount_path());
        }
        syncfs(&self.base_path);
        drop_kernel_caches();
    }

    // ---------------------------------------------------------------- tools (delegating)

    /// `mfsfileinfo PATH` (see [`mfsfileinfo`]).
    pub fn mfsfileinfo(&self, path: &Path) -> String {
        mfsfileinfo(path)
    }

    /// `mfscheckfile PATH` (see [`mfscheckfile`]).
    pub fn mfscheckfile(&self, path: &Path) -> String {
        mfscheckfile(path)
    }

    /// `mfssetgoal [-r] GOAL PATH` (see [`mfssetgoal`]).
    pub fn mfssetgoal(&self, goal: u32, path: &Path, recursive: bool) -> String {
        mfssetgoal(goal, path, recursive)
    }

    /// `mfsgetgoal PATH` (see [`mfsgetgoal`]).
    pub fn mfsgetgoal(&self, path: &Path) -> String {
        mfsgetgoal(path)
    }

    // ---------------------------------------------------------------- diagnostics & teardown

    /// Tails of all logs (master, chunkservers, mount) as one string.
    pub fn log_tails(&self, lines: usize) -> String {
        let mut s = String::new();
        let mut add = |title: String, p: &Path| {
            s.push_str(&format!(
                "----- {title}: {} (last {lines} lines)\n",
                p.display()
            ));
            s.push_str(&tail_lines(p, lines));
        };
        add("master".into(), &self.master.log);
        for (i, cs) in self.chunkservers.iter().enumerate() {
            add(
                format!("chunkserver {i} ({:?}, port {})", cs.kind, cs.port),
                &cs.daemon.log,
            );
        }
        let ml = self.base_path.join("logs/mount.log");
        if ml.exists() {
            add("mount".into(), &ml);
        }
        s
    }

    /// Panic with `msg` followed by the log tails.
    fn fail(&self, msg: &str) -> ! {
        panic!("{msg}\n{}", self.log_tails(40));
    }

    fn teardown(&mut self) {
        if let Err(e) = self.umount_inner() {
            note(format!("teardown: {e}"));
        }
        for cs in &mut self.chunkservers {
            if cs.daemon.running() {
                cs.daemon.signal(libc::SIGTERM);
            }
        }
        for cs in &mut self.chunkservers {
            cs.daemon.stop(STOP_GRACE);
        }
        self.master.stop(MASTER_STOP_GRACE);
        let keep = std::env::var_os("ANTLER_TESTS_KEEP").is_some_and(|v| !v.is_empty() && v != "0");
        let left = mounts_under(&self.base_path);
        if let Some(base) = self.base.take() {
            if keep || !left.is_empty() {
                let p = base.keep();
                if !left.is_empty() {
                    note(format!(
                        "teardown: mounts remain under {} ({left:?}); NOT removing it",
                        p.display()
                    ));
                } else {
                    note(format!("ANTLER_TESTS_KEEP: keeping {}", p.display()));
                }
            } else if let Err(e) = base.close() {
                note(format!(
                    "teardown: cannot remove {}: {e}",
                    self.base_path.display()
                ));
            }
        }
    }
}

fn wait_listening(port: u16, d: &mut Daemon, timeout: Duration) -> Result<(), String> {
    let t = Instant::now();
    loop {
        if is_listening(port) {
            return Ok(());
        }
        if !d.running() {
            return Err(format!(
                "{} exited ({})",
                d.name,
                describe_status(d.last_status)
            ));
        }
        if t.elapsed() > timeout {
            return Err(format!(
                "{} not listening on {port} after {timeout:?}",
                d.name
            ));
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// Unmounts `mnt` (`fusermount3 -u`, falling back to `umount -l`) and waits for its
/// `mfsmount` to exit.
fn unmount(mnt: &Path, daemon: Option<Daemon>) -> Result<(), String> {
    let mut errors = Vec::new();
    if is_mountpoint(mnt) {
        let ok = matches!(
            run_with_timeout(Command::new("fusermount3").arg("-u").arg(mnt), TOOL_TIMEOUT),
            Ok(o) if o.status.success()
        );
        if !ok || is_mountpoint(mnt) {
            note(format!(
                "fusermount3 -u {} failed; using umount -l",
                mnt.display()
            ));
            let _ = run_with_timeout(Command::new("umount").arg("-l").arg(mnt), TOOL_TIMEOUT);
        }
        if is_mountpoint(mnt) {
            errors.push(format!("{} is still mounted", mnt.display()));
        }
    }
    if let Some(mut d) = daemon {
        // mfsmount exits by itself once unmounted
        if d.wait_exit(STOP_GRACE).is_none() {
            note(format!(
                "{} still running after unmount; stopping it",
                d.name
            ));
            d.stop(STOP_GRACE);
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!(
                "===== antler-tests: test failed; log tails of {}\n{}",
                self.base_path.display(),
                self.log_tails(60)
            );
        }
        self.teardown();
    }
}

// ------------------------------------------------------------------------------------------
// MooseFS tools

/// `mfsfileinfo PATH`: per-chunk copy list (see [`parse_fileinfo`]). Panics on failure.
pub fn mfsfileinfo(path: &Path) -> String {
    run_tool("/usr/bin/mfsfileinfo", [path])
}

/// `mfscheckfile PATH`: copy-count histogram (see [`parse_checkfile`]). Panics on failure.
pub fn mfscheckfile(path: &Path) -> String {
    run_tool("/usr/bin/mfscheckfile", [path])
}

/// `mfssetgoal [-r] GOAL PATH`. Panics on failure.
pub fn mfssetgoal(goal: u32, path: &Path, recursive: bool) -> String {
    let g = goal.to_string();
    let mut args: Vec<&OsStr> = Vec::new();
    if recursive {
        args.push(OsStr::new("-r"));
    }
    args.push(OsStr::new(&g));
    args.push(path.as_os_str());
    run_tool("/usr/bin/mfssetgoal", args)
}

/// `mfsgetgoal PATH` (output `PATH: GOAL`; see [`parse_getgoal`]). Panics on failure.
pub fn mfsgetgoal(path: &Path) -> String {
    run_tool("/usr/bin/mfsgetgoal", [path])
}

/// Parse `mfsgetgoal PATH` output (`/mnt/dir: 2`) into the goal.
pub fn parse_getgoal(out: &str) -> Option<u32> {
    out.lines().next()?.rsplit(": ").next()?.trim().parse().ok()
}

/// Parse `mfscli -SCS` plain output into [`CsInfo`]s.
///
/// Format (tab-separated, `-n`, stdout not a tty):
/// `chunk servers:\tIP\tPORT\tID\tLABELS\tVERSION\tLOAD\tMAINTENANCE\tCHUNKS\tUSED\tTOTAL\t-\t0\t0\t0`
/// and, for servers the master knows but that are not connected,
/// `Disconnected chunk servers:\tIP\tPORT\tID\tMAINTENANCE`.
pub fn parse_mfscli_cs(out: &str) -> Vec<CsInfo> {
    let mut v = Vec::new();
    for line in out.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        match f.first().copied() {
            Some("chunk servers:") if f.len() >= 11 => v.push(CsInfo {
                connected: true,
                host: f[1].to_string(),
                port: f[2].parse().unwrap_or(0),
                id: f[3].parse().unwrap_or(0),
                version: f[5].to_string(),
                maintenance: f[7].to_string(),
                chunks: f[8].parse().unwrap_or(0),
                used: f[9].parse().unwrap_or(0),
                total: f[10].parse().unwrap_or(0),
            }),
            Some("Disconnected chunk servers:") if f.len() >= 4 => v.push(CsInfo {
                connected: false,
                host: f[1].to_string(),
                port: f[2].parse().unwrap_or(0),
                id: f[3].parse().unwrap_or(0),
                version: String::new(),
                maintenance: f.get(4).unwrap_or(&"").to_string(),
                chunks: 0,
                used: 0,
                total: 0,
            }),
            _ => {}
        }
    }
    v
}

/// Parse `mfscheckfile` output into a map *number of copies → number of chunks*.
///
/// Format:
/// ```text
/// /mnt/d/big:
///  chunks with 2 copies:            2
///  chunks with 1 copy:              1
///  chunks with 0 copies:            1
/// ```
/// (`10+ copies` is mapped to 10). An empty file yields an empty map. With
/// several files in the output the counts are summed.
pub fn parse_checkfile(out: &str) -> BTreeMap<u32, u64> {
    let mut m = BTreeMap::new();
    for line in out.lines() {
        let l = line.trim();
        let Some(rest) = l.strip_prefix("chunks with ") else {
            continue;
        };
        let Some((copies, count)) = rest.split_once(':') else {
            continue;
        };
        let copies = copies
            .split_whitespace()
            .next()
            .unwrap_or("")
            .trim_end_matches('+');
        if let (Ok(c), Ok(n)) = (copies.parse::<u32>(), count.trim().parse::<u64>()) {
            *m.entry(c).or_insert(0) += n;
        }
    }
    m
}

/// True if `mfscheckfile` output says every chunk has exactly `copies` copies
/// (vacuously true for a file without chunks).
pub fn all_chunks_have_copies(checkfile_out: &str, copies: u32) -> bool {
    parse_checkfile(checkfile_out).keys().all(|&k| k == copies)
}

/// One copy of a chunk, from `mfsfileinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkCopy {
    /// Address as reported (`0.0.0.0` with the loopback remap).
    pub host: String,
    /// Chunkserver port (`CSSERV_LISTEN_PORT`).
    pub port: u16,
    /// `VALID`, `INVALID`, `MARKED FOR REMOVAL`, `WRONG VERSION`, ...
    pub status: String,
}

impl ChunkCopy {
    /// True for status `VALID`.
    pub fn is_valid(&self) -> bool {
        self.status == "VALID"
    }
}

/// One chunk of a file, from `mfsfileinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileChunk {
    /// Chunk index within the file (offset / 64 MiB).
    pub index: u32,
    /// Chunk id (0 for a sparse `empty` chunk).
    pub id: u64,
    /// Chunk version.
    pub version: u32,
    /// Copies listed (empty for `no valid copies !!!` and `empty`).
    pub copies: Vec<ChunkCopy>,
}

impl FileChunk {
    /// Number of VALID copies.
    pub fn valid_copies(&self) -> usize {
        self.copies.iter().filter(|c| c.is_valid()).count()
    }

    /// Ports of the chunkservers holding a VALID copy.
    pub fn valid_ports(&self) -> BTreeSet<u16> {
        self.copies
            .iter()
            .filter(|c| c.is_valid())
            .map(|c| c.port)
            .collect()
    }
}

/// Parse `mfsfileinfo` output.
///
/// Format (3.0.117):
/// ```text
/// /mnt/d/big:
/// \tchunk 0: 0000000000000002_00000001 / (id:2 ver:1)
/// \t\tcopy 1: 0.0.0.0:39422 (status:VALID)
/// \t\tcopy 2: 0.0.0.0:39423 (status:VALID)
/// \tchunk 1: 0000000000000003_00000001 / (id:3 ver:1)
/// \t\tno valid copies !!!
/// \tchunk 2: empty
/// ```
/// An empty file prints `\tno chunks - empty file`. With `-c` the status
/// part is `(status:VALID ; blocks: N ; checksum digest: ...)`, also accepted.
pub fn parse_fileinfo(out: &str) -> Vec<FileChunk> {
    let mut v: Vec<FileChunk> = Vec::new();
    for line in out.lines() {
        let l = line.trim();
        if let Some(rest) = l.strip_prefix("chunk ") {
            let Some((idx, desc)) = rest.split_once(": ") else {
                continue;
            };
            let Ok(index) = idx.trim().parse::<u32>() else {
                continue;
            };
            let desc = desc.trim();
            if desc == "empty" {
                v.push(FileChunk {
                    index,
                    id: 0,
                    version: 0,
                    copies: Vec::new(),
                });
                continue;
            }
            let hex = desc.split_whitespace().next().unwrap_or("");
            let (id, ver) = hex.split_once('_').unwrap_or(("", ""));
            v.push(FileChunk {
                index,
                id: u64::from_str_radix(id, 16).unwrap_or(0),
                version: u32::from_str_radix(ver, 16).unwrap_or(0),
                copies: Vec::new(),
            });
        } else if let Some(rest) = l.strip_prefix("copy ") {
            let Some((_, desc)) = rest.split_once(": ") else {
                continue;
            };
            let (addr, status_part) = desc.split_once(" (").unwrap_or((desc, ""));
            let Some((host, port)) = addr.rsplit_once(':') else {
                continue;
            };
            let status = status_part
                .strip_prefix("status:")
                .unwrap_or(status_part)
                .split([';', ')'])
                .next()
                .unwrap_or("")
                .trim()
                .to_string();
            if let Some(last) = v.last_mut() {
                last.copies.push(ChunkCopy {
                    host: host.to_string(),
                    port: port.parse().unwrap_or(0),
                    status,
                });
            }
        }
    }
    v
}

/// Number of VALID copies of each chunk, in file order, from `mfsfileinfo` output.
pub fn copies_per_chunk(fileinfo_out: &str) -> Vec<usize> {
    parse_fileinfo(fileinfo_out)
        .iter()
        .map(FileChunk::valid_copies)
        .collect()
}

/// Ports of all chunkservers holding a VALID copy of any chunk, from `mfsfileinfo` output.
pub fn ports_holding_data(fileinfo_out: &str) -> BTreeSet<u16> {
    parse_fileinfo(fileinfo_out)
        .iter()
        .flat_map(FileChunk::valid_ports)
        .collect()
}

// ------------------------------------------------------------------------------------------
// data helpers

/// Deterministic pseudo-random bytes (SplitMix64 stream) for `seed`.
/// The same `(seed, len)` always yields the same bytes, and a shorter length
/// is a prefix of a longer one.
pub fn pattern_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    let mut s = seed ^ 0x5851_F42D_4C95_7F2D;
    for chunk in v.chunks_mut(8) {
        s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        chunk.copy_from_slice(&z.to_le_bytes()[..chunk.len()]);
    }
    v
}

/// Streaming 64-bit non-cryptographic digest (to compare contents cheaply).
#[derive(Debug, Clone)]
pub struct Digest {
    h: u64,
    len: u64,
    pending: [u8; 8],
    npending: usize,
}

impl Default for Digest {
    fn default() -> Self {
        Digest {
            h: 0xCBF2_9CE4_8422_2325,
            len: 0,
            pending: [0; 8],
            npending: 0,
        }
    }
}

impl Digest {
    /// A fresh digest.
    pub fn new() -> Digest {
        Digest::default()
    }

    fn word(&mut self, w: u64) {
        self.h = (self.h ^ w)
            .wrapping_mul(0x0000_0100_0000_01B3)
            .rotate_left(23)
            ^ (self.h >> 29);
    }

    /// Feed bytes (any split of the same stream gives the same result).
    pub fn update(&mut self, mut data: &[u8]) {
        self.len += data.len() as u64;
        if self.npending > 0 {
            let take = (8 - self.npending).min(data.len());
            self.pending[self.npending..self.npending + take].copy_from_slice(&data[..take]);
            self.npending += take;
            data = &data[take..];
            if self.npending < 8 {
                return;
            }
            let w = u64::from_le_bytes(self.pending);
            self.word(w);
            self.npending = 0;
        }
        let mut it = data.chunks_exact(8);
        for c in &mut it {
            self.word(u64::from_le_bytes(c.try_into().expect("8 bytes")));
        }
        let rem = it.remainder();
        self.pending[..rem.len()].copy_from_slice(rem);
        self.npending = rem.len();
    }

    /// The digest value (includes the length).
    pub fn finish(&self) -> u64 {
        let mut d = self.clone();
        if d.npending > 0 {
            let mut buf = [0u8; 8];
            buf[..d.npending].copy_from_slice(&d.pending[..d.npending]);
            d.word(u64::from_le_bytes(buf) ^ 0xFF);
        }
        d.word(d.len);
        let mut z = d.h;
        z = (z ^ (z >> 33)).wrapping_mul(0xFF51_AFD7_ED55_8CCD);
        z ^ (z >> 33)
    }
}

/// [`Digest`] of a byte slice.
pub fn digest(data: &[u8]) -> u64 {
    let mut d = Digest::new();
    d.update(data);
    d.finish()
}

/// [`Digest`] of a file's contents (streamed in 1 MiB reads). Panics on I/O errors.
pub fn file_digest(path: &Path) -> u64 {
    let mut f = File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let mut buf = vec![0u8; 1 << 20];
    let mut d = Digest::new();
    loop {
        let n = f
            .read(&mut buf)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        if n == 0 {
            break;
        }
        d.update(&buf[..n]);
    }
    d.finish()
}

/// Create/truncate `path`, write `data` and `fsync` it. Panics on errors.
pub fn write_file_synced(path: &Path, data: &[u8]) {
    let mut f = File::create(path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    f.write_all(data)
        .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    f.sync_all()
        .unwrap_or_else(|e| panic!("fsync {}: {e}", path.display()));
}

/// Assert that the file at `path` holds exactly `expected`, reading it in
/// 1 MiB pieces. On mismatch, panics with the first differing offset (and its
/// chunk index / 64 KiB block) and the number of differing bytes in that piece.
pub fn assert_file_eq(path: &Path, expected: &[u8]) {
    let mut f = File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let mut buf = vec![0u8; 1 << 20];
    let mut off = 0usize;
    loop {
        let mut n = 0;
        while n < buf.len() {
            let r = f
                .read(&mut buf[n..])
                .unwrap_or_else(|e| panic!("read {} at {}: {e}", path.display(), off + n));
            if r == 0 {
                break;
            }
            n += r;
        }
        if n == 0 {
            break;
        }
        if off + n > expected.len() {
            panic!(
                "{} is longer than expected ({} bytes): read past offset {}",
                path.display(),
                expected.len(),
                off + n
            );
        }
        let got = &buf[..n];
        let want = &expected[off..off + n];
        if got != want {
            let first = got.iter().zip(want).position(|(a, b)| a != b).unwrap_or(0);
            let ndiff = got.iter().zip(want).filter(|(a, b)| a != b).count();
            let at = off + first;
            panic!(
                "{}: content differs at offset {at} (chunk {}, block {} within chunk): got {:#04x}, want {:#04x}; \
                 {ndiff} differing bytes in the 1 MiB piece at {off}",
                path.display(),
                at / CHUNK_SIZE,
                (at % CHUNK_SIZE) / BLOCK_SIZE,
                got[first],
                want[first]
            );
        }
        off += n;
        if n < buf.len() {
            break;
        }
    }
    if off != expected.len() {
        panic!(
            "{} is shorter than expected: {off} bytes, want {}",
            path.display(),
            expected.len()
        );
    }
}

// ------------------------------------------------------------------------------------------
// waiting

/// Poll `f` every 200 ms until it returns `Some`, for at most `timeout`;
/// panics with `what` on timeout.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let t = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        if t.elapsed() > timeout {
            panic!("timeout ({timeout:?}) waiting for {what}");
        }
        thread::sleep(Duration::from_millis(200));
    }
}

/// Poll `f` every 200 ms until it returns true; returns false after `timeout`.
pub fn poll_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let t = Instant::now();
    loop {
        if f() {
            return true;
        }
        if t.elapsed() > timeout {
            return false;
        }
        thread::sleep(Duration::from_millis(200));
    }
}

// ------------------------------------------------------------------------------------------
// unit tests (no cluster needed)

/// Lines describing the tree under `root`, hidden entries left out and unsorted: one
/// `find -printf FIND_FORMAT` line per entry, an `md5sum` line per regular file, and
/// `xattr PATH NAME VALUE` per extended attribute (the value as Python prints bytes,
/// cut to `xattr_max` bytes when given).
pub fn tree_lines(root: &Path, find_format: &str, xattr_max: Option<usize>) -> Vec<String> {
    let run = |cmd: &mut Command, what: &str| -> Vec<String> {
        let out = cmd.current_dir(root).output().expect(what);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect()
    };
    let mut lines = run(
        Command::new("find").arg(".").args([
            "-path",
            "./.*",
            "-prune",
            "-o",
            "-printf",
            find_format,
        ]),
        "find",
    );
    lines.extend(run(
        Command::new("sh").args([
            "-c",
            "find . -path './.*' -prune -o -type f -print0 | sort -z | xargs -0 -r md5sum",
        ]),
        "md5sum",
    ));
    let cut = xattr_max.map_or(String::new(), |n| format!("[:{n}]"));
    let script = format!(
        "import os\nfor d,ds,fs in os.walk('.'):\n  for n in sorted(ds+fs):\n    p=os.path.join(d,n)\n    for a in sorted(os.listxattr(p,follow_symlinks=False)):\n      print('xattr',p,a,os.getxattr(p,a,follow_symlinks=False){cut})"
    );
    lines.extend(run(Command::new("python3").args(["-c", &script]), "xattrs"));
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILEINFO: &str = "/tmp/antler-x/mnt/d/big:\n\tchunk 0: 0000000000000002_00000001 / (id:2 ver:1)\n\t\tcopy 1: 0.0.0.0:39422 (status:VALID)\n\t\tcopy 2: 0.0.0.0:39423 (status:VALID)\n\tchunk 1: 000000000000000A_0000000B / (id:10 ver:11)\n\t\tno valid copies !!!\n\tchunk 2: empty\n\tchunk 3: 0000000000000004_00000001 / (id:4 ver:1)\n\t\tcopy 1: 0.0.0.0:39423 (status:MARKED FOR REMOVAL)\n\t\tcopy 2: 0.0.0.0:39424 (status:VALID ; blocks: 16 ; checksum digest: 0123)\n";

    #[test]
    fn fileinfo_parses() {
        let c = parse_fileinfo(FILEINFO);
        assert_eq!(c.len(), 4);
        assert_eq!((c[0].index, c[0].id, c[0].version), (0, 2, 1));
        assert_eq!(c[0].valid_ports(), BTreeSet::from([39422, 39423]));
        assert_eq!((c[1].id, c[1].version, c[1].copies.len()), (10, 11, 0));
        assert_eq!((c[2].index, c[2].id), (2, 0));
        assert_eq!(c[3].copies[0].status, "MARKED FOR REMOVAL");
        assert_eq!(c[3].copies[1].status, "VALID");
        assert_eq!(copies_per_chunk(FILEINFO), vec![2, 0, 0, 1]);
        assert_eq!(
            ports_holding_data(FILEINFO),
            BTreeSet::from([39422, 39423, 39424])
        );
        assert!(parse_fileinfo("/x/empty:\n\tno chunks - empty file\n").is_empty());
    }

    #[test]
    fn checkfile_parses() {
        let out = "/m/big:\n chunks with 1 copy:              2\n chunks with 0 copies:            1\n chunks with 10+ copies:  3\n";
        assert_eq!(
            parse_checkfile(out),
            BTreeMap::from([(0, 1), (1, 2), (10, 3)])
        );
        assert!(all_chunks_have_copies(
            "/m/s:\n chunks with 2 copies:            1\n",
            2
        ));
        assert!(!all_chunks_have_copies(out, 1));
        assert!(all_chunks_have_copies("/m/empty:\n", 2));
    }

    #[test]
    fn mfscli_parses() {
        let out = "chunk servers:\t0.0.0.0\t39422\t1\t-\t3.0.117\t0\tmaintenance_off\t4\t12610912256\t97572749312\t-\t0\t0\t0\n\
                   chunk servers:\t0.0.0.0\t39424\t3\t-\t3.0.117\t0\tmaintenance_off\t0\t0\t0\t-\t0\t0\t0\n\n\n\
                   Disconnected chunk servers:\t0.0.0.0\t39423\t2\tmaintenance_temp_on\n";
        let v = parse_mfscli_cs(out);
        assert_eq!(v.len(), 3);
        assert!(
            v[0].connected && v[0].port == 39422 && v[0].chunks == 4 && v[0].total == 97572749312
        );
        assert!(v[1].connected && v[1].total == 0);
        assert!(!v[2].connected && v[2].port == 39423 && v[2].maintenance == "maintenance_temp_on");
    }

    #[test]
    fn getgoal_parses() {
        assert_eq!(parse_getgoal("/tmp/antler-x/mnt/d: 2\n"), Some(2));
    }

    #[test]
    fn pattern_and_digest() {
        let a = pattern_bytes(7, 1000);
        assert_eq!(a, pattern_bytes(7, 1000));
        assert_eq!(&pattern_bytes(7, 1003)[..1000], &a[..]);
        assert_ne!(a, pattern_bytes(8, 1000));
        let mut d = Digest::new();
        d.update(&a[..3]);
        d.update(&a[3..501]);
        d.update(&a[501..]);
        assert_eq!(d.finish(), digest(&a));
        assert_ne!(digest(&a), digest(&a[..999]));
    }

    #[test]
    fn ports_are_distinct_and_free() {
        let ps: HashSet<u16> = (0..20).map(|_| free_port()).collect();
        assert_eq!(ps.len(), 20);
    }

    #[test]
    fn mountinfo_unescape() {
        assert_eq!(unescape_mountinfo("/a\\040b"), "/a b");
        assert_eq!(unescape_mountinfo("/plain"), "/plain");
    }
}
