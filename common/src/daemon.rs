//! The lifecycle shared by every MooseFS daemon (`mfschunkserver`,
//! `mfsmaster`, `mfsmetalogger`).
//!
//! * [`parse_args`]: the MooseFS command line
//!   `NAME [-f] [-c CFGFILE] [-u] [-n] [-t LOCKTIMEOUT] [-v|-h] [start|stop|restart|reload|test|kill]`,
//! * [`LockFile`], [`running_pid`], [`control_running`]: the
//!   `DATA_PATH/.NAME.lock` PID lock file (a POSIX `fcntl` record lock, so
//!   it interoperates with the C daemons, which use `lockf`) and the
//!   `stop`/`kill`/`reload`/`test` actions acting on a running instance,
//! * [`Signals`]: SIGTERM/SIGINT → shutdown, SIGHUP → reload, SIGPIPE ignored,
//! * [`daemonize`] / [`daemonize_deferred`], [`drop_privileges`],
//!   [`set_nice`], [`raise_nofile_limit`].
//!
//! A typical `main` is: parse args → load config → (without `-f`)
//! [`daemonize_deferred`] → [`crate::logging::init`] → [`drop_privileges`]
//! → [`LockFile::acquire`] → [`Signals::install`] → start threads →
//! [`StartupNotifier::ready`] → loop until [`Signals::shutdown_requested`].

use std::ffi::CString;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use thiserror::Error;

// ---------------------------------------------------------------------------
// Command line
// ---------------------------------------------------------------------------

/// What the daemon was asked to do (the trailing word of the command line).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Start the daemon (the default).
    Start,
    /// Stop a running instance (SIGTERM, wait for the lock to be released).
    Stop,
    /// Stop a running instance if any, then start.
    Restart,
    /// Ask a running instance to reload its config (SIGHUP).
    Reload,
    /// Report whether an instance is running.
    Test,
    /// Kill a running instance (SIGKILL, wait for the lock to be released).
    Kill,
}

impl Action {
    /// The command-line word for this action (`start`, `stop`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Start => "start",
            Action::Stop => "stop",
            Action::Restart => "restart",
            Action::Reload => "reload",
            Action::Test => "test",
            Action::Kill => "kill",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Action {
    type Err = String;

    /// Parses `start|stop|restart|reload|test|kill` (exact, lower-case).
    fn from_str(s: &str) -> Result<Action, String> {
        Ok(match s {
            "start" => Action::Start,
            "stop" => Action::Stop,
            "restart" => Action::Restart,
            "reload" => Action::Reload,
            "test" => Action::Test,
            "kill" => Action::Kill,
            _ => return Err(format!("unknown action '{s}'")),
        })
    }
}

/// Default for `-t LOCKTIMEOUT` (seconds), as in MooseFS.
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(1800);

/// The parsed command line of a daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonArgs {
    /// The requested action (default [`Action::Start`]).
    pub action: Action,
    /// `-c CFGFILE`, or the caller's default.
    pub cfg_path: PathBuf,
    /// `-f`: stay in the foreground, log to stderr too.
    pub foreground: bool,
    /// Caller-specific single-letter flags that were given (each once, in
    /// order of first appearance), e.g. `['a']` for `mfsmaster -a`.
    pub extra_flags: Vec<char>,
    /// `-u`: log (warn about) undefined config options.
    pub warn_undefined: bool,
    /// `-n`: do not try to raise the core dump size limit.
    pub no_core_limit: bool,
    /// `-t LOCKTIMEOUT`: how long `stop`/`restart` wait for the old
    /// instance to release the lock (default [`DEFAULT_LOCK_TIMEOUT`]).
    pub lock_timeout: Duration,
    /// `-v`: print the version and exit (the caller prints it).
    pub show_version: bool,
}

impl DaemonArgs {
    /// True when the caller-specific flag `c` was given.
    pub fn has_flag(&self, c: char) -> bool {
        self.extra_flags.contains(&c)
    }
}

/// A command-line error; its `Display` is the usage text (preceded by the
/// problem, unless it is an explicit `-h`).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum UsageError {
    /// `-h` / `-?` was given: print the usage (MooseFS then exits with 1).
    #[error("{usage}")]
    Help {
        /// The usage text.
        usage: String,
    },
    /// Something on the command line is wrong.
    #[error("{message}\n{usage}")]
    Invalid {
        /// What is wrong, e.g. `mfschunkserver: invalid option -- 'x'`.
        message: String,
        /// The usage text.
        usage: String,
    },
}

/// The usage text printed for `-h` and command-line errors.
pub fn usage_text(name: &str, default_cfg: &Path, allowed_extra: &[char]) -> String {
    let extra: String = allowed_extra.iter().collect();
    format!(
        "usage: {name} [-vfun{extra}] [-t locktimeout] [-c cfgfile] [start|stop|restart|reload|test|kill]\n\
         \n\
         -v : print version number and exit\n\
         -f : run in foreground\n\
         -u : log undefined config variables\n\
         -n : do not attempt to increase limit of core dump size\n\
         -t locktimeout : how long wait for lockfile (default {})\n\
         -c cfgfile : use given config file (default {})\n",
        DEFAULT_LOCK_TIMEOUT.as_secs(),
        default_cfg.display()
    )
}

/// Parses a daemon command line (`args` excludes `argv[0]`).
///
/// Flags may be bundled (`-fu`), option values attached (`-c/x.cfg`,
/// `-t30`) or separate, and may appear before or after the action word
/// (like GNU getopt); `--` ends the options. `allowed_extra` lists the
/// additional single-letter flags (without argument) this daemon accepts;
/// they are returned in [`DaemonArgs::extra_flags`].
pub fn parse_args(
    name: &str,
    default_cfg: &Path,
    allowed_extra: &[char],
    args: impl IntoIterator<Item = String>,
) -> Result<DaemonArgs, UsageError> {
    let invalid = |message: String| UsageError::Invalid {
        message: format!("{name}: {message}"),
        usage: usage_text(name, default_cfg, allowed_extra),
    };
    let mut parsed = DaemonArgs {
        action: Action::Start,
        cfg_path: default_cfg.to_path_buf(),
        foreground: false,
        extra_flags: Vec::new(),
        warn_undefined: false,
        no_core_limit: false,
        lock_timeout: DEFAULT_LOCK_TIMEOUT,
        show_version: false,
    };
    let mut positional = Vec::new();
    let mut options_done = false;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        if options_done || arg == "-" || !arg.starts_with('-') {
            positional.push(arg);
            continue;
        }
        if arg == "--" {
            options_done = true;
            continue;
        }
        let mut letters = arg[1..].chars();
        while let Some(c) = letters.next() {
            match c {
                'f' => parsed.foreground = true,
                'u' => parsed.warn_undefined = true,
                'n' => parsed.no_core_limit = true,
                'v' => parsed.show_version = true,
                'h' | '?' => {
                    return Err(UsageError::Help {
                        usage: usage_text(name, default_cfg, allowed_extra),
                    })
                }
                'c' | 't' => {
                    let rest = letters.as_str();
                    let value = if rest.is_empty() {
                        args.next().ok_or_else(|| {
                            invalid(format!("option requires an argument -- '{c}'"))
                        })?
                    } else {
                        rest.to_string()
                    };
                    if c == 'c' {
                        parsed.cfg_path = PathBuf::from(value);
                    } else {
                        let secs: u64 = value
                            .parse()
                            .map_err(|_| invalid(format!("bad lock timeout '{value}'")))?;
                        parsed.lock_timeout = Duration::from_secs(secs);
                    }
                    break;
                }
                c if allowed_extra.contains(&c) => {
                    if !parsed.extra_flags.contains(&c) {
                        parsed.extra_flags.push(c);
                    }
                }
                c => return Err(invalid(format!("invalid option -- '{c}'"))),
            }
        }
    }
    match positional.as_slice() {
        [] => {}
        [word] => parsed.action = word.parse().map_err(invalid)?,
        [_, extra, ..] => return Err(invalid(format!("unexpected argument '{extra}'"))),
    }
    Ok(parsed)
}

// ---------------------------------------------------------------------------
// Lock file
// ---------------------------------------------------------------------------

/// Errors about the PID lock file and controlling a running instance.
#[derive(Debug, Error)]
pub enum LockError {
    /// The lock file could not be created, opened, locked or written.
    #[error("cannot use lock file {}: {source}", path.display())]
    Io {
        /// The lock file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Another process (or this one) holds the lock.
    #[error("{name} is already running (pid {pid}, lock file {})", path.display())]
    AlreadyRunning {
        /// The daemon name, e.g. `mfschunkserver`.
        name: String,
        /// The lock file.
        path: PathBuf,
        /// PID of the holder (0 when it could not be determined).
        pid: u32,
    },
    /// `stop`/`kill` sent its signal but the lock was not released in time.
    #[error("{name} (pid {pid}) did not terminate within {} s", timeout.as_secs_f64())]
    StopTimeout {
        /// The daemon name.
        name: String,
        /// PID of the instance that did not stop.
        pid: u32,
        /// How long we waited.
        timeout: Duration,
    },
    /// The lock is held but its owner's PID is unknown (e.g. another PID
    /// namespace), so no signal can be sent safely.
    #[error("{name} is running but the pid of the lock owner is unknown (lock file {})", path.display())]
    UnknownPid {
        /// The daemon name.
        name: String,
        /// The lock file.
        path: PathBuf,
    },
    /// The lock is held by this very process; refusing to signal ourselves.
    #[error("{name}: the lock is held by this process (pid {pid}); refusing to signal it")]
    OwnProcess {
        /// The daemon name.
        name: String,
        /// Our PID.
        pid: u32,
    },
    /// Sending a signal failed (typically EPERM).
    #[error("cannot send {signal} to {name} (pid {pid}): {source}")]
    Signal {
        /// The daemon name.
        name: String,
        /// Target PID.
        pid: u32,
        /// Signal name, e.g. `SIGTERM`.
        signal: &'static str,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

/// Lock files held by this process (keyed by canonical path).
///
/// POSIX record locks are per process, and closing *any* descriptor of the
/// file drops all of the process's locks on it, so the lock file must never
/// be opened a second time while we hold it; this registry makes
/// [`LockFile::acquire`] fail and [`running_pid`] answer without touching
/// the file in that case.
static HELD_LOCKS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

fn held_locks() -> MutexGuard<'static, Vec<PathBuf>> {
    HELD_LOCKS.lock().unwrap_or_else(|e| e.into_inner())
}

/// `DATA_PATH/.NAME.lock`, the MooseFS lock file path.
pub fn lock_path(data_path: &Path, name: &str) -> PathBuf {
    data_path.join(format!(".{name}.lock"))
}

fn registry_key(data_path: &Path, name: &str) -> PathBuf {
    let dir = data_path
        .canonicalize()
        .unwrap_or_else(|_| data_path.to_path_buf());
    lock_path(&dir, name)
}

fn whole_file_lock(kind: libc::c_int) -> libc::flock {
    // SAFETY: `flock` is a plain C struct for which all-zero bytes is a
    // valid value; the relevant fields are set below.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = 0;
    fl.l_len = 0; // to end of file, i.e. the whole file (as lockf(fd, F_TLOCK, 0) at offset 0)
    fl
}

/// Tries to take a non-blocking write lock on the whole file.
fn try_lock(file: &File) -> io::Result<()> {
    let fl = whole_file_lock(libc::F_WRLCK);
    // SAFETY: the fd is valid for the lifetime of `file`, and `fl` is a
    // valid `flock` that outlives the call.
    let rc = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETLK, &fl) };
    if rc == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Who would block a write lock on the whole file: `None` if nobody,
/// `Some(pid)` otherwise (`pid` may be 0 when unknown).
fn lock_owner(file: &File) -> io::Result<Option<i32>> {
    let mut fl = whole_file_lock(libc::F_WRLCK);
    // SAFETY: as in `try_lock`; F_GETLK writes into `fl`, which we own.
    let rc = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GETLK, &mut fl) };
    if rc == -1 {
        return Err(io::Error::last_os_error());
    }
    if fl.l_type == libc::F_UNLCK as libc::c_short {
        Ok(None)
    } else {
        Ok(Some(fl.l_pid.max(0)))
    }
}

/// The PID written in the lock file, if it parses.
fn pid_from_contents(mut file: &File) -> Option<u32> {
    let mut text = String::new();
    file.read_to_string(&mut text).ok()?;
    text.trim().parse().ok().filter(|&p| p > 0)
}

fn is_lock_conflict(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EAGAIN) | Some(libc::EACCES))
}

/// The held MooseFS PID lock (`DATA_PATH/.NAME.lock`); released on drop.
///
/// Note: POSIX record locks are not inherited by `fork`, so acquire it
/// *after* [`daemonize`]. And closing *any* descriptor of the lock file
/// drops the process's lock, so never open the file directly while holding
/// it (use [`running_pid`], which knows about locks held here).
#[derive(Debug)]
pub struct LockFile {
    file: Option<File>,
    path: PathBuf,
    key: PathBuf,
}

impl LockFile {
    /// Creates/opens `DATA_PATH/.NAME.lock`, takes a non-blocking `fcntl`
    /// write lock on it and writes our PID (`"1234\n"`).
    ///
    /// Fails with [`LockError::AlreadyRunning`] when another process holds
    /// the lock, or when this process already holds it.
    pub fn acquire(data_path: &Path, name: &str) -> Result<LockFile, LockError> {
        let path = lock_path(data_path, name);
        let key = registry_key(data_path, name);
        let io_err = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        let mut held = held_locks();
        if held.contains(&key) {
            return Err(LockError::AlreadyRunning {
                name: name.to_string(),
                path,
                pid: std::process::id(),
            });
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o666)
            .open(&path)
            .map_err(io_err)?;
        if let Err(e) = try_lock(&file) {
            if !is_lock_conflict(&e) {
                return Err(io_err(e));
            }
            let pid = match lock_owner(&file) {
                Ok(Some(pid)) if pid > 0 => pid as u32,
                _ => pid_from_contents(&file).unwrap_or(0),
            };
            return Err(LockError::AlreadyRunning {
                name: name.to_string(),
                path,
                pid,
            });
        }
        file.set_len(0).map_err(io_err)?;
        (&file)
            .write_all(format!("{}\n", std::process::id()).as_bytes())
            .map_err(io_err)?;
        held.push(key.clone());
        Ok(LockFile {
            file: Some(file),
            path,
            key,
        })
    }

    /// The lock file path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for LockFile {
    fn drop(&mut self) {
        let mut held = held_locks();
        // Closing the descriptor releases the lock. Do it while holding the
        // registry so no other thread can open the file in between.
        drop(self.file.take());
        held.retain(|k| k != &self.key);
    }
}

/// The PID of the process holding `DATA_PATH/.NAME.lock`, or `None` when
/// nobody holds it (or the file does not exist).
///
/// Returns our own PID when this process holds it, and `Some(0)` when the
/// lock is held but the owner's PID cannot be determined.
pub fn running_pid(data_path: &Path, name: &str) -> Option<u32> {
    let held = held_locks();
    if held.contains(&registry_key(data_path, name)) {
        return Some(std::process::id());
    }
    let file = File::open(lock_path(data_path, name)).ok()?;
    let owner = lock_owner(&file).ok()??;
    let pid = if owner > 0 {
        owner as u32
    } else {
        pid_from_contents(&file).unwrap_or(0)
    };
    drop(file);
    drop(held);
    Some(pid)
}

/// What [`control_running`] found or did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlOutcome {
    /// No instance holds the lock (nothing was signalled).
    NotRunning,
    /// An instance is running (`test`, or `start` asked of this function).
    Running {
        /// Its PID.
        pid: u32,
    },
    /// The instance was sent SIGHUP (`reload`).
    Signalled {
        /// Its PID.
        pid: u32,
    },
    /// The instance was sent SIGTERM/SIGKILL and released the lock.
    Stopped {
        /// Its PID.
        pid: u32,
    },
}

impl ControlOutcome {
    /// The PID involved, if any.
    pub fn pid(&self) -> Option<u32> {
        match *self {
            ControlOutcome::NotRunning => None,
            ControlOutcome::Running { pid }
            | ControlOutcome::Signalled { pid }
            | ControlOutcome::Stopped { pid } => Some(pid),
        }
    }

    /// A one-line, MooseFS-like report for the operator, e.g.
    /// `mfschunkserver pid: 1234` or `mfschunkserver is not running`.
    pub fn message(&self, name: &str) -> String {
        match *self {
            ControlOutcome::NotRunning => format!("{name} is not running"),
            ControlOutcome::Running { pid } => format!("{name} pid: {pid}"),
            ControlOutcome::Signalled { pid } => {
                format!("reload signal has been sent to {name} (pid {pid})")
            }
            ControlOutcome::Stopped { pid } => format!("{name} (pid {pid}) terminated"),
        }
    }
}

fn send_signal(name: &str, pid: u32, sig: libc::c_int) -> Result<bool, LockError> {
    let signal = match sig {
        libc::SIGTERM => "SIGTERM",
        libc::SIGKILL => "SIGKILL",
        libc::SIGHUP => "SIGHUP",
        _ => "signal",
    };
    // A non-positive pid would address process groups; never do that.
    let target = match libc::pid_t::try_from(pid) {
        Ok(t) if t > 0 => t,
        _ => {
            return Err(LockError::Signal {
                name: name.to_string(),
                pid,
                signal,
                source: io::Error::from_raw_os_error(libc::ESRCH),
            })
        }
    };
    // SAFETY: kill(2) has no memory-safety preconditions.
    if unsafe { libc::kill(target, sig) } == 0 {
        return Ok(true);
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::ESRCH) {
        return Ok(false); // already gone
    }
    Err(LockError::Signal {
        name: name.to_string(),
        pid,
        signal,
        source: err,
    })
}

/// What a daemon's `main` does after [`act_on_running`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlStep {
    /// Go on and start (the action was `start`, or `restart` stopped the old instance).
    Start,
    /// The action is complete; exit successfully.
    Done,
    /// `test` found no running instance; exit with an error.
    NotRunning,
}

/// Carries out the command-line action on a running instance (stop, kill, reload,
/// test, the stop half of restart), printing MooseFS's messages.
pub fn act_on_running(
    data_path: &Path,
    name: &str,
    action: Action,
    timeout: Duration,
) -> Result<ControlStep, LockError> {
    match action {
        Action::Start => Ok(ControlStep::Start),
        Action::Restart => {
            let out = control_running(data_path, name, Action::Stop, timeout)?;
            println!("{}", out.message(name));
            Ok(ControlStep::Start)
        }
        Action::Stop | Action::Kill | Action::Reload | Action::Test => {
            let out = control_running(data_path, name, action, timeout)?;
            println!("{}", out.message(name));
            if action == Action::Test && out.pid().is_none() {
                Ok(ControlStep::NotRunning)
            } else {
                Ok(ControlStep::Done)
            }
        }
    }
}

/// Acts on the running instance of `name` (found through its lock file):
///
/// * `Test` (and `Start`): reports [`ControlOutcome::Running`] or
///   [`ControlOutcome::NotRunning`],
/// * `Reload`: sends SIGHUP → [`ControlOutcome::Signalled`],
/// * `Stop` and `Restart`: sends SIGTERM, `Kill`: sends SIGKILL; then waits
///   (up to `timeout`) until the lock is released → [`ControlOutcome::Stopped`],
///   or [`LockError::StopTimeout`]. For `Restart` the caller then starts.
///
/// Nothing is signalled when no instance runs ([`ControlOutcome::NotRunning`]).
pub fn control_running(
    data_path: &Path,
    name: &str,
    action: Action,
    timeout: Duration,
) -> Result<ControlOutcome, LockError> {
    let Some(pid) = running_pid(data_path, name) else {
        return Ok(ControlOutcome::NotRunning);
    };
    if matches!(action, Action::Start | Action::Test) {
        return Ok(ControlOutcome::Running { pid });
    }
    if pid == 0 {
        return Err(LockError::UnknownPid {
            name: name.to_string(),
            path: lock_path(data_path, name),
        });
    }
    if pid == std::process::id() {
        return Err(LockError::OwnProcess {
            name: name.to_string(),
            pid,
        });
    }
    let sig = match action {
        Action::Reload => {
            send_signal(name, pid, libc::SIGHUP)?;
            return Ok(ControlOutcome::Signalled { pid });
        }
        Action::Kill => libc::SIGKILL,
        _ => libc::SIGTERM,
    };
    send_signal(name, pid, sig)?;
    let deadline = Instant::now() + timeout;
    loop {
        if running_pid(data_path, name) != Some(pid) {
            return Ok(ControlOutcome::Stopped { pid });
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(LockError::StopTimeout {
                name: name.to_string(),
                pid,
                timeout,
            });
        }
        std::thread::sleep((deadline - now).min(Duration::from_millis(50)));
    }
}

// ---------------------------------------------------------------------------
// Signals
// ---------------------------------------------------------------------------

/// Flags set by signal handlers: SIGTERM/SIGINT → shutdown, SIGHUP → reload.
///
/// Cheap to clone (shares the flags). The handlers stay installed for the
/// life of the process, so keep using the same `Signals`.
#[derive(Debug, Clone, Default)]
pub struct Signals {
    shutdown: Arc<AtomicBool>,
    reload: Arc<AtomicBool>,
}

impl Signals {
    /// Installs the handlers (via `signal-hook`) and ignores SIGPIPE.
    pub fn install() -> io::Result<Signals> {
        let signals = Signals::unhooked();
        for sig in [libc::SIGTERM, libc::SIGINT] {
            signal_hook::flag::register(sig, Arc::clone(&signals.shutdown))?;
        }
        signal_hook::flag::register(libc::SIGHUP, Arc::clone(&signals.reload))?;
        // SAFETY: setting the disposition to SIG_IGN installs no handler
        // code; SIGPIPE is not managed by signal-hook here.
        if unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) } == libc::SIG_ERR {
            return Err(io::Error::last_os_error());
        }
        Ok(signals)
    }

    /// Flags not connected to any signal (for tests and embedding).
    pub fn unhooked() -> Signals {
        Signals::default()
    }

    /// True once SIGTERM/SIGINT arrived or [`Signals::request_shutdown`] was called.
    pub fn shutdown_requested(&self) -> bool {
        self.shutdown.load(Ordering::SeqCst)
    }

    /// True if SIGHUP arrived since the last call (clears the flag).
    pub fn take_reload(&self) -> bool {
        self.reload.swap(false, Ordering::SeqCst)
    }

    /// The shutdown flag itself, to hand to worker threads.
    pub fn shutdown_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.shutdown)
    }

    /// Sets the shutdown flag, as SIGTERM would.
    pub fn request_shutdown(&self) {
        self.shutdown.store(true, Ordering::SeqCst);
    }
}

// ---------------------------------------------------------------------------
// Daemonizing
// ---------------------------------------------------------------------------

fn pipe_cloexec() -> io::Result<(File, File)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` is a valid array of two ints for pipe2 to fill.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded, so both fds are open and owned by nobody else.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    Ok((File::from(r), File::from(w)))
}

fn fork() -> io::Result<libc::pid_t> {
    // SAFETY: callers of `daemonize*` guarantee the process is still
    // single-threaded, so the child is in a consistent state.
    let pid = unsafe { libc::fork() };
    if pid == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(pid)
    }
}

fn exit_now(code: i32) -> ! {
    // SAFETY: _exit(2) has no preconditions; it skips atexit handlers and
    // stdio buffers that belong to the process we forked from.
    unsafe { libc::_exit(code) }
}

/// Points fd `target` at `src` (dup2).
fn redirect_fd(src: &File, target: libc::c_int) -> io::Result<()> {
    // SAFETY: both descriptors are valid; dup2 atomically replaces `target`.
    if unsafe { libc::dup2(src.as_raw_fd(), target) } == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// In the daemon after [`daemonize_deferred`]: tells the waiting original
/// process how start-up went, so `NAME start` exits with a meaningful code.
///
/// Until then the daemon's stdout/stderr are relayed to the terminal of the
/// original process; afterwards they go to `/dev/null`. Dropping it without
/// calling [`StartupNotifier::ready`] reports failure (exit code 1).
#[derive(Debug)]
pub struct StartupNotifier {
    status: Option<File>,
}

impl StartupNotifier {
    /// Start-up succeeded: the original process exits with 0.
    pub fn ready(mut self) {
        self.finish(0);
    }

    /// Start-up failed: the original process exits with `code` (at least 1).
    pub fn failed(mut self, code: u8) {
        self.finish(code.max(1));
    }

    fn finish(&mut self, code: u8) {
        let Some(mut status) = self.status.take() else {
            return;
        };
        let _ = io::stdout().flush();
        let _ = io::stderr().flush();
        crate::logging::set_stderr_enabled(false);
        if let Ok(null) = OpenOptions::new().read(true).write(true).open("/dev/null") {
            let _ = redirect_fd(&null, libc::STDOUT_FILENO);
            let _ = redirect_fd(&null, libc::STDERR_FILENO);
        }
        let _ = status.write_all(&[code]);
    }
}

impl Drop for StartupNotifier {
    fn drop(&mut self) {
        self.finish(1);
    }
}

/// Classic daemonizing: fork, `setsid`, fork again, `chdir /`, stdin/out/err
/// to `/dev/null`; the original process exits with 0.
///
/// Must be called while the process is single-threaded (before spawning
/// any thread), and before taking the [`LockFile`].
pub fn daemonize() -> io::Result<()> {
    daemonize_deferred()?.ready();
    Ok(())
}

/// Like [`daemonize`], but the original process stays in the foreground,
/// relaying the daemon's stdout/stderr, until the daemon calls
/// [`StartupNotifier::ready`]/[`StartupNotifier::failed`] (or drops the
/// notifier, or dies), and then exits with the reported code. This is how
/// MooseFS daemons report start-up errors to the terminal.
///
/// Returns only in the daemon (the grandchild). Must be called while the
/// process is single-threaded.
pub fn daemonize_deferred() -> io::Result<StartupNotifier> {
    let _ = io::stdout().flush();
    let _ = io::stderr().flush();
    let (mut msg_r, msg_w) = pipe_cloexec()?;
    let (mut status_r, status_w) = pipe_cloexec()?;
    let child = fork()?;
    if child > 0 {
        // Original process: relay output until the daemon detaches its
        // stdout/stderr, then exit with the status it sent.
        drop(msg_w);
        drop(status_w);
        let _ = io::copy(&mut msg_r, &mut io::stderr().lock());
        let mut code = [1u8];
        let code = match status_r.read(&mut code) {
            Ok(1) => i32::from(code[0]),
            _ => 1,
        };
        // SAFETY: reaping our own child; a null status pointer is allowed.
        unsafe { libc::waitpid(child, std::ptr::null_mut(), 0) };
        exit_now(code);
    }
    drop(msg_r);
    drop(status_r);
    let fail = |what: &str, err: io::Error| -> ! {
        let _ = (&msg_w).write_all(format!("daemonize: {what}: {err}\n").as_bytes());
        exit_now(1)
    };
    // SAFETY: setsid(2) has no memory-safety preconditions.
    if unsafe { libc::setsid() } == -1 {
        fail("setsid", io::Error::last_os_error());
    }
    match fork() {
        Err(e) => fail("fork", e),
        Ok(0) => {}
        Ok(_) => exit_now(0), // the session leader goes away
    }
    if let Err(e) = std::env::set_current_dir("/") {
        fail("chdir /", e);
    }
    let null = match File::open("/dev/null") {
        Ok(f) => f,
        Err(e) => fail("open /dev/null", e),
    };
    for (src, fd) in [
        (&null, libc::STDIN_FILENO),
        (&msg_w, libc::STDOUT_FILENO),
        (&msg_w, libc::STDERR_FILENO),
    ] {
        if let Err(e) = redirect_fd(src, fd) {
            fail("dup2", e);
        }
    }
    drop(msg_w);
    Ok(StartupNotifier {
        status: Some(status_w),
    })
}

// ---------------------------------------------------------------------------
// Privileges, priority, limits
// ---------------------------------------------------------------------------

/// Errors resolving or switching to the working user/group.
#[derive(Debug, Error)]
pub enum PrivError {
    /// No such user.
    #[error("unknown user '{user}'")]
    UnknownUser {
        /// The user as configured (WORKING_USER).
        user: String,
    },
    /// No such group.
    #[error("unknown group '{group}' (for user '{user}')")]
    UnknownGroup {
        /// The user as configured.
        user: String,
        /// The group as configured (WORKING_GROUP).
        group: String,
    },
    /// A numeric user without passwd entry and no group given.
    #[error(
        "user '{user}' has no passwd entry, so its primary group is unknown; set WORKING_GROUP"
    )]
    NoPrimaryGroup {
        /// The user as configured.
        user: String,
    },
    /// The user/group database lookup itself failed.
    #[error("cannot look up '{name}' (for user '{user}'): {source}")]
    Lookup {
        /// The user as configured.
        user: String,
        /// The name being looked up (user or group).
        name: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// setgroups/setgid/setuid failed.
    #[error("cannot switch to user '{user}' (uid {uid}, gid {gid}): {call} failed: {source}")]
    Switch {
        /// The user as configured.
        user: String,
        /// Target uid.
        uid: u32,
        /// Target gid.
        gid: u32,
        /// The failing call: `setgroups`, `setgid` or `setuid`.
        call: &'static str,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

/// Runs a `get*_r` style lookup with a growing buffer.
fn with_nss_buffer<T>(
    mut call: impl FnMut(&mut [u8]) -> (libc::c_int, Option<T>),
) -> io::Result<Option<T>> {
    let mut buf = vec![0u8; 4096];
    loop {
        let (rc, found) = call(&mut buf);
        match rc {
            0 => return Ok(found),
            libc::ERANGE if buf.len() < (1 << 22) => buf.resize(buf.len() * 2, 0),
            libc::ENOENT | libc::ESRCH => return Ok(None),
            rc => return Err(io::Error::from_raw_os_error(rc)),
        }
    }
}

/// `(uid, primary gid)` of a user name (`None`: no such user).
pub fn user_by_name(name: &CString) -> io::Result<Option<(u32, u32)>> {
    with_nss_buffer(|buf| {
        // SAFETY: zeroed passwd is a valid out-parameter value.
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: all pointers are valid for the call; `buf` is writable for
        // `buf.len()` bytes and outlives the use of `pwd`'s string fields
        // (we only read the numeric ids).
        let rc = unsafe {
            libc::getpwnam_r(
                name.as_ptr(),
                &mut pwd,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut result,
            )
        };
        (rc, (!result.is_null()).then_some((pwd.pw_uid, pwd.pw_gid)))
    })
}

/// Primary gid of a uid (`None`: no passwd entry).
pub fn gid_of_uid(uid: u32) -> io::Result<Option<u32>> {
    with_nss_buffer(|buf| {
        // SAFETY: as in `user_by_name`.
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: as in `user_by_name`.
        let rc = unsafe {
            libc::getpwuid_r(
                uid,
                &mut pwd,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut result,
            )
        };
        (rc, (!result.is_null()).then_some(pwd.pw_gid))
    })
}

/// gid of a group name (`None`: no such group).
pub fn group_by_name(name: &CString) -> io::Result<Option<u32>> {
    with_nss_buffer(|buf| {
        // SAFETY: zeroed group is a valid out-parameter value.
        let mut grp: libc::group = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::group = std::ptr::null_mut();
        // SAFETY: as in `user_by_name`.
        let rc = unsafe {
            libc::getgrnam_r(
                name.as_ptr(),
                &mut grp,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut result,
            )
        };
        (rc, (!result.is_null()).then_some(grp.gr_gid))
    })
}

/// `#123` or `123` → 123 (the MooseFS `#` prefix forces a numeric id).
fn numeric_id(s: &str) -> Option<u32> {
    let digits = s.strip_prefix('#').unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Resolves a WORKING_USER/WORKING_GROUP pair to `(uid, gid)`.
///
/// Names are looked up first; `#N` (MooseFS syntax) or a plain number is
/// taken as a numeric id. An empty `group` means the user's primary group.
pub fn resolve_user_group(user: &str, group: &str) -> Result<(u32, u32), PrivError> {
    let lookup_err = |name: &str, source| PrivError::Lookup {
        user: user.to_string(),
        name: name.to_string(),
        source,
    };
    let by_name = match (user.starts_with('#'), CString::new(user)) {
        (false, Ok(c)) if !user.is_empty() => user_by_name(&c).map_err(|e| lookup_err(user, e))?,
        _ => None,
    };
    let (uid, primary_gid) = match by_name {
        Some((uid, gid)) => (uid, Some(gid)),
        None => {
            let uid = numeric_id(user).ok_or_else(|| PrivError::UnknownUser {
                user: user.to_string(),
            })?;
            (uid, gid_of_uid(uid).map_err(|e| lookup_err(user, e))?)
        }
    };
    let gid = if group.is_empty() {
        primary_gid.ok_or_else(|| PrivError::NoPrimaryGroup {
            user: user.to_string(),
        })?
    } else {
        let by_name = match (group.starts_with('#'), CString::new(group)) {
            (false, Ok(c)) => group_by_name(&c).map_err(|e| lookup_err(group, e))?,
            _ => None,
        };
        match by_name.or_else(|| numeric_id(group)) {
            Some(gid) => gid,
            None => {
                return Err(PrivError::UnknownGroup {
                    user: user.to_string(),
                    group: group.to_string(),
                })
            }
        }
    };
    Ok((uid, gid))
}

/// When running as root, switches to `user`/`group` (see
/// [`resolve_user_group`]): `setgroups([gid])`, `setgid`, `setuid`.
/// Does nothing when not root. MooseFS's default user is `mfs`.
pub fn drop_privileges(user: &str, group: &str) -> Result<(), PrivError> {
    // SAFETY: geteuid(2) has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(());
    }
    let (uid, gid) = resolve_user_group(user, group)?;
    let switch_err = |call: &'static str| PrivError::Switch {
        user: user.to_string(),
        uid,
        gid,
        call,
        source: io::Error::last_os_error(),
    };
    // SAFETY: `&gid` points to one valid gid_t for the duration of the call.
    if unsafe { libc::setgroups(1, &gid) } == -1 {
        return Err(switch_err("setgroups"));
    }
    // SAFETY: setgid(2) has no memory-safety preconditions.
    if unsafe { libc::setgid(gid) } == -1 {
        return Err(switch_err("setgid"));
    }
    // SAFETY: setuid(2) has no memory-safety preconditions.
    if unsafe { libc::setuid(uid) } == -1 {
        return Err(switch_err("setuid"));
    }
    tracing::info!("set gid to {gid}");
    tracing::info!("set uid to {uid}");
    Ok(())
}

/// Best-effort `setpriority` (NICE_LEVEL); failures are logged as warnings.
///
/// On Linux this changes the calling thread (and threads spawned later),
/// so call it early, before starting workers.
pub fn set_nice(level: i32) {
    // SAFETY: setpriority(2) has no memory-safety preconditions.
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, level) } == -1 {
        tracing::warn!(
            "cannot set nice level to {level}: {}",
            io::Error::last_os_error()
        );
    }
}

/// Raises the soft (and, when allowed, hard) RLIMIT_NOFILE to at least
/// `wanted`; returns the resulting soft limit. Never lowers the limit.
pub fn raise_nofile_limit(wanted: u64) -> io::Result<u64> {
    // SAFETY: zeroed rlimit is valid; getrlimit fills it.
    let mut rl: libc::rlimit = unsafe { std::mem::zeroed() };
    // SAFETY: `rl` is a valid, writable rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) } == -1 {
        return Err(io::Error::last_os_error());
    }
    if rl.rlim_cur >= wanted {
        return Ok(rl.rlim_cur);
    }
    let mut new = libc::rlimit {
        rlim_cur: wanted,
        rlim_max: rl.rlim_max.max(wanted),
    };
    // SAFETY: `new` is a valid rlimit.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &new) } == -1 {
        // Not allowed to raise the hard limit: go as far as it permits.
        new = libc::rlimit {
            rlim_cur: wanted.min(rl.rlim_max),
            rlim_max: rl.rlim_max,
        };
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &new) } == -1 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(new.rlim_cur)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader};
    use std::os::unix::process::ExitStatusExt;
    use std::process::{Child, ChildStdout, Command, Stdio};

    const NAME: &str = "mfschunkserver";

    fn parse(args: &[&str]) -> Result<DaemonArgs, UsageError> {
        parse_args(
            NAME,
            Path::new("/etc/mfs/mfschunkserver.cfg"),
            &[],
            args.iter().map(|s| s.to_string()),
        )
    }

    fn parse_extra(extra: &[char], args: &[&str]) -> Result<DaemonArgs, UsageError> {
        parse_args(
            "mfsmaster",
            Path::new("/etc/mfs/mfsmaster.cfg"),
            extra,
            args.iter().map(|s| s.to_string()),
        )
    }

    #[test]
    fn args_defaults() {
        let a = parse(&[]).unwrap();
        assert_eq!(a.action, Action::Start);
        assert_eq!(a.cfg_path, Path::new("/etc/mfs/mfschunkserver.cfg"));
        assert!(!a.foreground && !a.warn_undefined && !a.no_core_limit && !a.show_version);
        assert!(a.extra_flags.is_empty());
        assert_eq!(a.lock_timeout, DEFAULT_LOCK_TIMEOUT);
    }

    #[test]
    fn args_variants() {
        let a = parse(&["-f", "-c", "/x.cfg", "stop"]).unwrap();
        assert_eq!(
            (a.action, a.cfg_path.as_path(), a.foreground),
            (Action::Stop, Path::new("/x.cfg"), true)
        );
        let a = parse(&["-fc/y.cfg"]).unwrap();
        assert!(a.foreground);
        assert_eq!(a.cfg_path, Path::new("/y.cfg"));
        let a = parse(&["-c/z.cfg", "-t", "30", "reload"]).unwrap();
        assert_eq!(a.cfg_path, Path::new("/z.cfg"));
        assert_eq!(a.lock_timeout, Duration::from_secs(30));
        assert_eq!(a.action, Action::Reload);
        assert_eq!(
            parse(&["-t5"]).unwrap().lock_timeout,
            Duration::from_secs(5)
        );
        let a = parse(&["restart", "-f"]).unwrap();
        assert_eq!((a.action, a.foreground), (Action::Restart, true));
        let a = parse(&["-u", "-nv"]).unwrap();
        assert!(a.warn_undefined && a.no_core_limit && a.show_version);
        assert_eq!(parse(&["--", "test"]).unwrap().action, Action::Test);
        assert_eq!(parse(&["kill"]).unwrap().action, Action::Kill);
        assert_eq!(parse(&["start"]).unwrap().action, Action::Start);

        let a = parse_extra(&['a', 'e'], &["-a", "-fa", "start"]).unwrap();
        assert_eq!(a.extra_flags, vec!['a']);
        assert!(a.has_flag('a') && !a.has_flag('e') && a.foreground);
        let a = parse_extra(&['a', 'e'], &["-ea"]).unwrap();
        assert_eq!(a.extra_flags, vec!['e', 'a']);
    }

    #[test]
    fn args_errors() {
        let invalid = |r: Result<DaemonArgs, UsageError>| match r {
            Err(UsageError::Invalid { message, .. }) => message,
            other => panic!("expected a usage error, got {other:?}"),
        };
        assert_eq!(
            invalid(parse(&["-x"])),
            "mfschunkserver: invalid option -- 'x'"
        );
        assert_eq!(
            invalid(parse(&["-a"])),
            "mfschunkserver: invalid option -- 'a'"
        );
        assert_eq!(
            invalid(parse(&["-c"])),
            "mfschunkserver: option requires an argument -- 'c'"
        );
        assert!(invalid(parse(&["-t", "abc"])).contains("bad lock timeout 'abc'"));
        assert!(invalid(parse(&["foo"])).contains("unknown action 'foo'"));
        assert!(invalid(parse(&["start", "stop"])).contains("unexpected argument 'stop'"));
        assert!(invalid(parse(&["--", "-f"])).contains("unknown action '-f'"));

        let err = parse(&["-f", "-x"]).unwrap_err().to_string();
        assert!(
            err.starts_with("mfschunkserver: invalid option -- 'x'\nusage: mfschunkserver "),
            "{err}"
        );
        assert!(
            err.contains("[start|stop|restart|reload|test|kill]"),
            "{err}"
        );
        assert!(err.contains("/etc/mfs/mfschunkserver.cfg"), "{err}");

        match parse(&["-h"]) {
            Err(e @ UsageError::Help { .. }) => {
                assert!(e.to_string().starts_with("usage: mfschunkserver [-vfun]"))
            }
            other => panic!("expected help, got {other:?}"),
        }
        assert!(matches!(parse(&["-?"]), Err(UsageError::Help { .. })));
        let help = parse_extra(&['a'], &["-h"]).unwrap_err().to_string();
        assert!(help.starts_with("usage: mfsmaster [-vfuna]"), "{help}");
    }

    #[test]
    fn action_names_round_trip() {
        for a in [
            Action::Start,
            Action::Stop,
            Action::Restart,
            Action::Reload,
            Action::Test,
            Action::Kill,
        ] {
            assert_eq!(a.as_str().parse::<Action>(), Ok(a));
            assert_eq!(a.to_string(), a.as_str());
        }
        assert!("START".parse::<Action>().is_err());
    }

    /// Can another process (python's lockf, as the C daemons use) lock it?
    fn python_can_lock(path: &Path) -> bool {
        Command::new("python3")
            .arg("-c")
            .arg("import fcntl,sys; f=open(sys.argv[1],'r+'); fcntl.lockf(f, fcntl.LOCK_EX|fcntl.LOCK_NB)")
            .arg(path)
            .stderr(Stdio::null())
            .status()
            .expect("run python3")
            .success()
    }

    const HOLDER: &str = r#"
import fcntl, os, signal, sys, time
if sys.argv[2] == "ignore-term":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
signal.signal(signal.SIGHUP, lambda *a: print("hup", flush=True))
f = open(sys.argv[1], "a+")
fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
f.truncate(0)
f.write("%d\n" % os.getpid())
f.flush()
print("locked", flush=True)
time.sleep(60)
"#;

    /// A python3 process holding the lock; SIGKILLed on drop if still alive.
    struct Holder {
        child: Child,
        out: BufReader<ChildStdout>,
    }

    impl Holder {
        fn spawn(path: &Path, mode: &str) -> Holder {
            let mut child = Command::new("python3")
                .arg("-c")
                .arg(HOLDER)
                .arg(path)
                .arg(mode)
                .stdout(Stdio::piped())
                .spawn()
                .expect("spawn python3");
            let out = BufReader::new(child.stdout.take().unwrap());
            let mut h = Holder { child, out };
            assert_eq!(h.line(), "locked");
            h
        }

        fn line(&mut self) -> String {
            let mut s = String::new();
            self.out.read_line(&mut s).unwrap();
            s.trim().to_string()
        }

        fn pid(&self) -> u32 {
            self.child.id()
        }
    }

    impl Drop for Holder {
        fn drop(&mut self) {
            if let Ok(None) = self.child.try_wait() {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
    }

    #[test]
    fn lock_file_acquire_and_release() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(running_pid(dir.path(), NAME), None);
        let lock = LockFile::acquire(dir.path(), NAME).unwrap();
        let path = dir.path().join(".mfschunkserver.lock");
        assert_eq!(lock.path(), path.as_path());
        assert_eq!(lock_path(dir.path(), NAME), path);
        let me = std::process::id();
        // Read it from another process: opening and closing the file here
        // would drop our own POSIX lock (that is how fcntl locks work).
        let content = Command::new("cat").arg(&path).output().unwrap().stdout;
        assert_eq!(String::from_utf8(content).unwrap(), format!("{me}\n"));
        assert!(
            !python_can_lock(&path),
            "lock not visible to other processes"
        );
        assert_eq!(running_pid(dir.path(), NAME), Some(me));

        // A second acquire in this process fails and does not drop the lock.
        match LockFile::acquire(dir.path(), NAME) {
            Err(LockError::AlreadyRunning { pid, path: p, name }) => {
                assert_eq!(
                    (pid, p.as_path(), name.as_str()),
                    (me, path.as_path(), NAME)
                );
            }
            other => panic!("expected AlreadyRunning, got {other:?}"),
        }
        assert!(!python_can_lock(&path), "failed acquire released the lock");
        assert_eq!(
            control_running(dir.path(), NAME, Action::Test, Duration::ZERO).unwrap(),
            ControlOutcome::Running { pid: me }
        );
        assert!(matches!(
            control_running(dir.path(), NAME, Action::Stop, Duration::ZERO),
            Err(LockError::OwnProcess { .. })
        ));

        // Other names are independent.
        let other = LockFile::acquire(dir.path(), "mfsmaster").unwrap();
        drop(lock);
        assert!(python_can_lock(&path));
        assert_eq!(running_pid(dir.path(), NAME), None);
        assert_eq!(running_pid(dir.path(), "mfsmaster"), Some(me));
        drop(other);
        let again = LockFile::acquire(dir.path(), NAME).unwrap();
        drop(again);
    }

    #[test]
    fn lock_file_in_missing_dir_is_io_error() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        let err = LockFile::acquire(&missing, NAME).unwrap_err();
        assert!(matches!(err, LockError::Io { .. }), "{err:?}");
        assert!(err.to_string().contains(".mfschunkserver.lock"), "{err}");
    }

    #[test]
    fn held_by_other_process_then_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let path = lock_path(dir.path(), NAME);
        let mut holder = Holder::spawn(&path, "normal");
        let pid = holder.pid();
        assert_eq!(running_pid(dir.path(), NAME), Some(pid));
        let err = LockFile::acquire(dir.path(), NAME).unwrap_err();
        assert!(matches!(err, LockError::AlreadyRunning { pid: p, .. } if p == pid));
        assert_eq!(
            err.to_string(),
            format!(
                "mfschunkserver is already running (pid {pid}, lock file {})",
                path.display()
            )
        );
        let ctl = |action, timeout| control_running(dir.path(), NAME, action, timeout);
        let test = ctl(Action::Test, Duration::ZERO).unwrap();
        assert_eq!(test, ControlOutcome::Running { pid });
        assert_eq!(test.message(NAME), format!("mfschunkserver pid: {pid}"));

        assert_eq!(
            ctl(Action::Reload, Duration::ZERO).unwrap(),
            ControlOutcome::Signalled { pid }
        );
        assert_eq!(holder.line(), "hup");

        assert_eq!(
            ctl(Action::Stop, Duration::from_secs(10)).unwrap(),
            ControlOutcome::Stopped { pid }
        );
        let status = holder.child.wait().unwrap();
        assert_eq!(status.signal(), Some(libc::SIGTERM));
        assert_eq!(running_pid(dir.path(), NAME), None);
        let not = ctl(Action::Test, Duration::ZERO).unwrap();
        assert_eq!(not, ControlOutcome::NotRunning);
        assert_eq!(not.message(NAME), "mfschunkserver is not running");
        assert_eq!(
            ctl(Action::Stop, Duration::ZERO).unwrap(),
            ControlOutcome::NotRunning
        );
        assert_eq!(
            ctl(Action::Reload, Duration::ZERO).unwrap(),
            ControlOutcome::NotRunning
        );
        drop(LockFile::acquire(dir.path(), NAME).unwrap());
    }

    #[test]
    fn stop_timeout_then_kill() {
        let dir = tempfile::tempdir().unwrap();
        let path = lock_path(dir.path(), NAME);
        let mut holder = Holder::spawn(&path, "ignore-term");
        let pid = holder.pid();
        let ctl = |action, timeout| control_running(dir.path(), NAME, action, timeout);
        match ctl(Action::Stop, Duration::from_millis(300)) {
            Err(LockError::StopTimeout { pid: p, .. }) => assert_eq!(p, pid),
            other => panic!("expected StopTimeout, got {other:?}"),
        }
        assert_eq!(running_pid(dir.path(), NAME), Some(pid));
        assert_eq!(
            ctl(Action::Kill, Duration::from_secs(10)).unwrap(),
            ControlOutcome::Stopped { pid }
        );
        let status = holder.child.wait().unwrap();
        assert_eq!(status.signal(), Some(libc::SIGKILL));
    }

    #[test]
    fn signals_set_flags() {
        let s = Signals::install().unwrap();
        assert!(!s.take_reload());
        signal_hook::low_level::raise(libc::SIGHUP).unwrap();
        assert!(s.take_reload());
        assert!(!s.take_reload(), "reload flag must clear when read");
        let flag = s.shutdown_flag();
        signal_hook::low_level::raise(libc::SIGTERM).unwrap();
        assert!(s.shutdown_requested());
        assert!(flag.load(Ordering::SeqCst));

        let u = Signals::unhooked();
        assert!(!u.shutdown_requested());
        let clone = u.clone();
        u.request_shutdown();
        assert!(clone.shutdown_requested());
    }

    /// Re-runs one test of this binary in a fresh process (for fork/setuid tests).
    fn run_helper(test: &str, env: (&str, String)) -> std::process::Output {
        Command::new(std::env::current_exe().unwrap())
            .args(["--exact", test, "--nocapture", "--test-threads=1"])
            .env(env.0, env.1)
            .stdin(Stdio::null())
            .output()
            .expect("run test helper")
    }

    /// Helper: only does something when started by `daemonize_*` below.
    #[test]
    fn daemonize_helper() {
        let Ok(spec) = std::env::var("ANTLER_TEST_DAEMONIZE") else {
            return;
        };
        let (mode, dir) = spec.split_once(':').unwrap();
        let dir = PathBuf::from(dir);
        let notifier = daemonize_deferred().unwrap();
        eprintln!("daemon says hello");
        println!("daemon stdout");
        // SAFETY: getsid has no preconditions.
        let sid = unsafe { libc::getsid(0) };
        let cwd = std::env::current_dir().unwrap();
        let info = format!("{} {} {}", std::process::id(), sid, cwd.display());
        std::fs::write(dir.join("info"), info).unwrap();
        if mode == "ok" {
            notifier.ready();
        } else {
            eprintln!("start-up failed");
            drop(notifier);
        }
        eprintln!("must not be relayed");
        std::fs::write(dir.join("done"), "").unwrap();
        exit_now(0);
    }

    fn wait_for(path: &Path) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !path.exists() {
            assert!(
                Instant::now() < deadline,
                "{} never appeared",
                path.display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn daemonize_reports_ready() {
        let dir = tempfile::tempdir().unwrap();
        let out = run_helper(
            "daemon::tests::daemonize_helper",
            (
                "ANTLER_TEST_DAEMONIZE",
                format!("ok:{}", dir.path().display()),
            ),
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "status {:?}, stderr {stderr}",
            out.status
        );
        assert!(stderr.contains("daemon says hello"), "{stderr}");
        assert!(stderr.contains("daemon stdout"), "{stderr}");
        wait_for(&dir.path().join("done"));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("must not be relayed"), "{stderr}");
        let info = std::fs::read_to_string(dir.path().join("info")).unwrap();
        let parts: Vec<&str> = info.split(' ').collect();
        let (pid, sid): (i32, i32) = (parts[0].parse().unwrap(), parts[1].parse().unwrap());
        // SAFETY: getsid has no preconditions.
        let our_sid = unsafe { libc::getsid(0) };
        assert_ne!(sid, our_sid, "daemon must be in a new session");
        assert_ne!(pid, sid, "daemon must not be a session leader");
        assert_eq!(parts[2], "/");
    }

    #[test]
    fn daemonize_reports_failure() {
        let dir = tempfile::tempdir().unwrap();
        let out = run_helper(
            "daemon::tests::daemonize_helper",
            (
                "ANTLER_TEST_DAEMONIZE",
                format!("fail:{}", dir.path().display()),
            ),
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "stderr {stderr}");
        assert!(stderr.contains("start-up failed"), "{stderr}");
        wait_for(&dir.path().join("done"));
    }

    #[test]
    fn resolve_users_and_groups() {
        assert_eq!(resolve_user_group("root", "").unwrap(), (0, 0));
        assert_eq!(resolve_user_group("root", "root").unwrap(), (0, 0));
        assert_eq!(resolve_user_group("#0", "#0").unwrap(), (0, 0));
        assert_eq!(resolve_user_group("0", "").unwrap(), (0, 0));
        assert_eq!(
            resolve_user_group("#4000000", "#5").unwrap(),
            (4_000_000, 5)
        );
        assert!(matches!(
            resolve_user_group("#4000000", ""),
            Err(PrivError::NoPrimaryGroup { .. })
        ));
        let err = resolve_user_group("no_such_user_antler", "").unwrap_err();
        assert_eq!(err.to_string(), "unknown user 'no_such_user_antler'");
        assert!(matches!(
            resolve_user_group("root", "no_such_group_antler"),
            Err(PrivError::UnknownGroup { .. })
        ));
        assert!(resolve_user_group("", "").is_err());
        assert!(resolve_user_group("#x", "").is_err());
    }

    /// Helper: only does something when started by `drop_privileges_as_root`.
    #[test]
    fn drop_privileges_helper() {
        if std::env::var_os("ANTLER_TEST_DROP_PRIV").is_none() {
            return;
        }
        let (uid, gid) = resolve_user_group("nobody", "").unwrap();
        drop_privileges("nobody", "").unwrap();
        // SAFETY: these getters have no preconditions.
        let ids = unsafe {
            (
                libc::getuid(),
                libc::geteuid(),
                libc::getgid(),
                libc::getegid(),
            )
        };
        assert_eq!(ids, (uid, uid, gid, gid));
        let mut groups = [0 as libc::gid_t; 8];
        // SAFETY: `groups` has room for 8 entries, as passed.
        let n = unsafe { libc::getgroups(8, groups.as_mut_ptr()) };
        assert_eq!(&groups[..n as usize], &[gid]);
        // No way back.
        // SAFETY: setuid has no memory-safety preconditions.
        assert_eq!(unsafe { libc::setuid(0) }, -1);
    }

    #[test]
    fn drop_privileges_as_root() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 || resolve_user_group("nobody", "").is_err() {
            eprintln!("skipped: needs root and a 'nobody' user");
            // Not root: drop_privileges must be a no-op.
            drop_privileges("no_such_user_antler", "").unwrap();
            return;
        }
        let out = run_helper(
            "daemon::tests::drop_privileges_helper",
            ("ANTLER_TEST_DROP_PRIV", "1".to_string()),
        );
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // As root, an unknown user is an error naming it.
        let err = drop_privileges("no_such_user_antler", "").unwrap_err();
        assert!(err.to_string().contains("no_such_user_antler"));
    }

    #[test]
    fn nofile_limit_never_lowers() {
        let cur = raise_nofile_limit(1).unwrap();
        assert!(cur >= 1);
        assert_eq!(raise_nofile_limit(1).unwrap(), cur);
    }

    #[test]
    fn outcome_messages() {
        assert_eq!(ControlOutcome::NotRunning.pid(), None);
        assert_eq!(ControlOutcome::Stopped { pid: 7 }.pid(), Some(7));
        assert_eq!(
            ControlOutcome::Stopped { pid: 7 }.message("mfsmaster"),
            "mfsmaster (pid 7) terminated"
        );
    }
}
