//! Notify hooks (`notify_master`, `notify_backup`, `notify_fault`, `notify_stop`, `notify`).
//!
//! keepalived forks every hook as soon as the transition happens, so a quick
//! BACKUP -> MASTER -> BACKUP flap can run the hooks concurrently and finish them out of
//! order: the last script to exit wins, which is not necessarily the current state.
//! [`Notifier`] instead owns ONE worker thread that runs the hooks strictly one at a
//! time, in the order the transitions were queued.
//!
//! For each [`HookJob`] the worker runs, in this order:
//!
//! 1. the state's own hook (`specific`) as `sh -c CMD`, with no arguments (as keepalived);
//! 2. the generic `notify` hook as `sh -c 'CMD "$@"' sh INSTANCE NAME STATE PRIORITY`, so
//!    the command receives exactly four arguments: the word `INSTANCE`, the instance
//!    name, the state name (`MASTER`, `BACKUP`, `FAULT`, `STOP`) and the priority.
//!
//! Every hook runs in its own process group with stdin from `/dev/null`; its stdout and
//! stderr lines are logged at info with the hook and the instance. A hook still running
//! after the timeout is killed with its whole process group (`SIGKILL`), which is logged,
//! and the worker goes on with the next hook.

use crate::fsm::State;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};
use tracing::{error, info, warn};

/// One transition whose hooks are to be run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookJob {
    /// Instance name.
    pub instance: String,
    /// The state entered.
    pub state: State,
    /// The priority to pass to the generic hook.
    pub priority: u8,
    /// The hook for that state (`notify_master`, `notify_backup`, `notify_fault` or
    /// `notify_stop`), run as `sh -c CMD`.
    pub specific: Option<String>,
    /// The generic `notify` hook, run with `INSTANCE NAME STATE PRIORITY`.
    pub generic: Option<String>,
}

/// Runs notify hooks one at a time, in queue order, on its own thread.
///
/// Dropping a `Notifier` without [`Notifier::shutdown`] lets the worker finish the
/// queued hooks in the background, unsupervised.
#[derive(Debug)]
pub struct Notifier {
    tx: mpsc::Sender<HookJob>,
    worker: JoinHandle<()>,
    deadline: Arc<Mutex<Option<Instant>>>,
    timeout: Duration,
}

impl Notifier {
    /// Starts the worker thread; every hook gets at most `timeout` to finish.
    ///
    /// # Panics
    ///
    /// If the operating system refuses to create the thread.
    pub fn start(timeout: Duration) -> Notifier {
        let (tx, rx) = mpsc::channel::<HookJob>();
        let deadline = Arc::new(Mutex::new(None::<Instant>));
        let shared = Arc::clone(&deadline);
        let worker = thread::Builder::new()
            .name("ha-notify".into())
            .spawn(move || {
                for job in rx {
                    run_job(&job, timeout, &shared);
                }
            })
            .expect("cannot spawn the notify thread");
        Notifier {
            tx,
            worker,
            deadline,
            timeout,
        }
    }

    /// Queues the hooks of one transition. Never blocks: the queue is unbounded and the
    /// hooks run later on the worker thread, after every job queued before this one.
    pub fn notify(&self, job: HookJob) {
        if let Err(mpsc::SendError(job)) = self.tx.send(job) {
            // Only possible if the worker thread died (a panic).
            error!(
                instance = %job.instance,
                state = job.state.name(),
                "notify worker is gone; hooks not run"
            );
        }
    }

    /// Runs every hook still queued, then stops the worker.
    ///
    /// The wait is bounded by `2 × timeout + 5 s` (see [`Notifier::shutdown_within`]).
    pub fn shutdown(self) {
        let limit = self.timeout.saturating_mul(2) + Duration::from_secs(5);
        self.shutdown_within(limit);
    }

    /// Runs the queued hooks for at most `limit`, then stops the worker.
    ///
    /// A hook still running at the limit is killed with its process group; jobs not
    /// started by then are skipped, and each skipped job is logged.
    pub fn shutdown_within(self, limit: Duration) {
        let until = Instant::now() + limit;
        *self.deadline.lock().unwrap_or_else(|e| e.into_inner()) = Some(until);
        drop(self.tx);
        // The worker notices the deadline within one poll of the running hook.
        let give_up = until + Duration::from_secs(2);
        while !self.worker.is_finished() && Instant::now() < give_up {
            thread::sleep(Duration::from_millis(10));
        }
        if self.worker.is_finished() {
            if self.worker.join().is_err() {
                error!("notify worker panicked");
            }
        } else {
            warn!("notify worker did not stop in time; leaving it behind");
        }
    }
}

/// Runs the hooks of one job, in order.
fn run_job(job: &HookJob, timeout: Duration, deadline: &Mutex<Option<Instant>>) {
    let state = job.state.name();
    let priority = job.priority.to_string();
    let specific_name = match job.state {
        State::Master => "notify_master",
        State::Backup => "notify_backup",
        State::Fault => "notify_fault",
        State::Stopped => "notify_stop",
        State::Init => "notify_init",
    };
    let hooks: [(&'static str, Option<String>, Vec<&str>); 2] = [
        (specific_name, job.specific.clone(), vec![]),
        (
            "notify",
            job.generic.as_ref().map(|g| format!("{g} \"$@\"")),
            vec!["INSTANCE", job.instance.as_str(), state, priority.as_str()],
        ),
    ];
    for (hook, cmd, args) in hooks {
        let Some(cmd) = cmd else { continue };
        let mut budget = timeout;
        let stop_at = *deadline.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(stop_at) = stop_at {
            let left = stop_at.saturating_duration_since(Instant::now());
            if left.is_zero() {
                warn!(hook, instance = %job.instance, state, "shutting down: hook skipped");
                continue;
            }
            budget = budget.min(left);
        }
        info!(hook, instance = %job.instance, state, command = %cmd, "running hook");
        let started = Instant::now();
        let instance = job.instance.clone();
        let on_line = move |stream: &'static str, line: &str| {
            info!(hook, instance = %instance, stream, "{line}");
        };
        match run_sh(&cmd, &args, budget, None, on_line) {
            RunOutcome::Exited(st) if st.success() => {
                let elapsed = started.elapsed();
                info!(hook, instance = %job.instance, state, ?elapsed, "hook done");
            }
            RunOutcome::Exited(st) => {
                warn!(hook, instance = %job.instance, state, status = %st, "hook failed");
            }
            RunOutcome::TimedOut => {
                warn!(
                    hook, instance = %job.instance, state, timeout = ?budget,
                    "hook timed out: killed its process group"
                );
            }
            RunOutcome::Cancelled => {}
            RunOutcome::SpawnFailed(e) => {
                error!(hook, instance = %job.instance, state, error = %e, "cannot run hook");
            }
        }
    }
}

/// How a [`run_sh`] run ended.
#[derive(Debug)]
pub(crate) enum RunOutcome {
    /// The shell exited (or was killed by someone else).
    Exited(ExitStatus),
    /// Still running at the timeout: the process group was killed.
    TimedOut,
    /// The cancel flag was raised: the process group was killed.
    Cancelled,
    /// `sh` could not be started.
    SpawnFailed(std::io::Error),
}

/// How long to wait, after the shell exited, for the output of background children that
/// still hold its stdout/stderr open.
const OUTPUT_GRACE: Duration = Duration::from_millis(500);

/// Runs `sh -c script [sh ARGS...]` in a new process group, with stdin from
/// `/dev/null`, every output line passed to `on_line` (`"stdout"` or `"stderr"`, line),
/// for at most `timeout`; on expiry, or when `cancel` becomes true, the whole process
/// group is killed with `SIGKILL`.
pub(crate) fn run_sh<F>(
    script: &str,
    args: &[&str],
    timeout: Duration,
    cancel: Option<&AtomicBool>,
    on_line: F,
) -> RunOutcome
where
    F: Fn(&'static str, &str) + Send + Sync + 'static,
{
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c").arg(script);
    if !args.is_empty() {
        cmd.arg("sh").args(args);
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return RunOutcome::SpawnFailed(e),
    };
    let pid = child.id() as libc::pid_t;

    let on_line = Arc::new(on_line);
    let (out_tx, out_done) = mpsc::channel::<()>();
    let pipes: [(&'static str, Option<Box<dyn Read + Send>>); 2] = [
        (
            "stdout",
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        ),
        (
            "stderr",
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        ),
    ];
    for (stream, pipe) in pipes {
        let Some(pipe) = pipe else { continue };
        let on_line = Arc::clone(&on_line);
        let alive = out_tx.clone();
        let spawned = thread::Builder::new()
            .name("ha-hook-output".into())
            .spawn(move || {
                let _alive = alive;
                let mut reader = BufReader::new(pipe);
                let mut buf = Vec::new();
                loop {
                    buf.clear();
                    match reader.read_until(b'\n', &mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {
                            let line = String::from_utf8_lossy(&buf);
                            on_line(stream, line.trim_end_matches(['\n', '\r']));
                        }
                    }
                }
            });
        if let Err(e) = spawned {
            warn!(error = %e, "cannot start a thread to read hook output; output is dropped");
        }
    }
    drop(out_tx);

    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(1);
    let outcome = loop {
        match child.try_wait() {
            Ok(Some(status)) => break RunOutcome::Exited(status),
            Ok(None) => {}
            Err(e) => {
                warn!(pid, error = %e, "cannot wait for a child; killing its process group");
                kill_group(pid);
                match child.wait() {
                    Ok(status) => break RunOutcome::Exited(status),
                    Err(_) => break RunOutcome::TimedOut,
                }
            }
        }
        if cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
            kill_group(pid);
            let _ = child.wait();
            break RunOutcome::Cancelled;
        }
        let now = Instant::now();
        if now >= deadline {
            // The shell is not reaped yet, so its pid (= the group id) cannot be reused.
            kill_group(pid);
            let _ = child.wait();
            break RunOutcome::TimedOut;
        }
        thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(Duration::from_millis(20));
    };

    // Wait (bounded) for the readers so that the output is logged before the outcome:
    // nobody sends on this channel, it disconnects when both readers are done.
    let _ = out_done.recv_timeout(OUTPUT_GRACE);
    outcome
}

/// Sends `SIGKILL` to the process group `pgid`.
fn kill_group(pgid: libc::pid_t) {
    // SAFETY: killpg only sends a signal; pgid is the id of a group we created (the child
    // is not reaped yet, so the id still names that group).
    let rc = unsafe { libc::killpg(pgid, libc::SIGKILL) };
    if rc != 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::ESRCH) {
            warn!(pgid, error = %e, "cannot kill process group");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_sh_reports_exit_status_and_output() {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let l = Arc::clone(&lines);
        let out = run_sh(
            "echo out; echo err >&2; echo \"$#:$1:$2\"; exit 3",
            &["a b", "c"],
            Duration::from_secs(5),
            None,
            move |s, line| l.lock().unwrap().push(format!("{s} {line}")),
        );
        match out {
            RunOutcome::Exited(st) => assert_eq!(st.code(), Some(3)),
            o => panic!("{o:?}"),
        }
        let mut got = lines.lock().unwrap().clone();
        got.sort();
        assert_eq!(got, ["stderr err", "stdout 2:a b:c", "stdout out"]);
    }

    #[test]
    fn run_sh_cancel_kills() {
        let flag = Arc::new(AtomicBool::new(false));
        let f = Arc::clone(&flag);
        let t = thread::spawn(move || {
            thread::sleep(Duration::from_millis(200));
            f.store(true, Ordering::Relaxed);
        });
        let start = Instant::now();
        let out = run_sh(
            "sleep 30",
            &[],
            Duration::from_secs(30),
            Some(&flag),
            |_, _| {},
        );
        t.join().unwrap();
        assert!(matches!(out, RunOutcome::Cancelled), "{out:?}");
        assert!(start.elapsed() < Duration::from_secs(5));
    }
}
