//! `[[vrrp_script]]` health checks and keepalived's rule for combining their weights.
//!
//! A [`ScriptTracker`] runs `sh -c SCRIPT` every `interval` seconds on its own thread, in
//! its own process group, for at most `timeout` seconds (on expiry the whole group is
//! killed and the run counts as a failure). Exit status 0 is a success, anything else a
//! failure.
//!
//! # Status, rise and fall (keepalived's rules)
//!
//! - The tracker starts in an *initial* status that is neither OK nor failed; the
//!   instance treats it as OK until told otherwise (keepalived's default `init_state`,
//!   i.e. without `init_fail`). keepalived says of it "one success is enough": the
//!   **first result decides on its own**, whatever `rise` and `fall` are — a success
//!   makes the tracker OK, a failure makes it failed. That first result is always
//!   reported, even when it is OK, so the instance knows the check has run.
//! - After that, an OK tracker becomes failed after `fall` failures in a row, and a failed
//!   tracker becomes OK after `rise` successes in a row. Only changes are reported.
//!
//! (Starting from OK and applying `fall` to the first runs too was considered; it would
//! let a node whose service is down at boot take MASTER for `fall × interval` seconds,
//! which keepalived avoids by judging on the first result.)
//!
//! # Combining
//!
//! [`combine`] turns the (weight, OK) pairs of an instance's trackers into the priority
//! delta and the fault flag of [`crate::fsm::Event::Track`].

use crate::config::Script;
use crate::notify::{run_sh, RunOutcome};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};
use tracing::{debug, error, info, warn};

/// A tracker's status changed (or its first result arrived).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackUpdate {
    /// The `[[vrrp_script]]` name.
    pub name: String,
    /// True when healthy.
    pub ok: bool,
}

/// keepalived's rule for an instance's trackers: returns `(delta, fault)`.
///
/// For each `(weight, ok)`:
/// - weight 0 and failed: the instance goes to FAULT (`fault = true`);
/// - negative weight and failed: the weight is added (the priority drops);
/// - positive weight and OK: the weight is added (the priority rises);
/// - anything else adds nothing.
pub fn combine(weights: &[(i32, bool)]) -> (i32, bool) {
    let mut delta = 0i32;
    let mut fault = false;
    for &(weight, ok) in weights {
        let (d, f) = contribution(weight, ok);
        delta = delta.saturating_add(d);
        fault |= f;
    }
    (delta, fault)
}

/// What one tracker adds to [`combine`]: `(priority delta, forces FAULT)`.
pub fn contribution(weight: i32, ok: bool) -> (i32, bool) {
    match (weight, ok) {
        (0, false) => (0, true),
        (w, false) if w < 0 => (w, false),
        (w, true) if w > 0 => (w, false),
        _ => (0, false),
    }
}

/// What a tracker is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TrackerKind {
    /// A `[[vrrp_script]]` named in `track_script`.
    Script,
    /// An interface named in `track_interface`, or the instance's own interface.
    Interface,
}

/// Health of a tracker as `status` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TrackerState {
    /// Healthy (script succeeded, interface up and running).
    Ok,
    /// Failed (script failed `fall` times, interface down or missing).
    Failed,
    /// A script that has not finished its first run; counted as healthy.
    Unknown,
}

/// One tracker of an instance, for `ha-agent status`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TrackerStatus {
    /// Script or interface.
    pub kind: TrackerKind,
    /// The script's `name`, or the interface name.
    pub name: String,
    /// Its health.
    pub state: TrackerState,
    /// Its configured weight (interfaces: 0, i.e. FAULT while down).
    pub weight: i32,
    /// The priority change it causes now.
    pub contribution: i32,
    /// It forces FAULT now (weight 0 and failed).
    pub fault: bool,
}

impl TrackerStatus {
    /// A tracker's status from its weight and health (`None` = no result yet, which
    /// counts as healthy, see the module documentation).
    pub fn new(kind: TrackerKind, name: &str, weight: i32, ok: Option<bool>) -> TrackerStatus {
        let (contribution, fault) = contribution(weight, ok.unwrap_or(true));
        TrackerStatus {
            kind,
            name: name.to_string(),
            state: match ok {
                Some(true) => TrackerState::Ok,
                Some(false) => TrackerState::Failed,
                None => TrackerState::Unknown,
            },
            weight,
            contribution,
            fault,
        }
    }
}

/// Sums [`TrackerStatus`]es as [`combine`] does: `(delta, fault)`.
pub fn combine_status(trackers: &[TrackerStatus]) -> (i32, bool) {
    trackers.iter().fold((0i32, false), |(d, f), t| {
        (d.saturating_add(t.contribution), f | t.fault)
    })
}

/// Status of one check, with keepalived's rise/fall counting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    /// No result yet.
    Init,
    /// Healthy; `fails` failures in a row so far.
    Ok { fails: u32 },
    /// Failed; `successes` successes in a row so far.
    Failed { successes: u32 },
}

impl Status {
    /// Applies one result; returns the new health when it must be reported.
    fn apply(&mut self, success: bool, rise: u32, fall: u32) -> Option<bool> {
        let (next, report) = match (*self, success) {
            (Status::Init, true) => (Status::Ok { fails: 0 }, Some(true)),
            (Status::Init, false) => (Status::Failed { successes: 0 }, Some(false)),
            (Status::Ok { .. }, true) => (Status::Ok { fails: 0 }, None),
            (Status::Ok { fails }, false) if fails + 1 >= fall => {
                (Status::Failed { successes: 0 }, Some(false))
            }
            (Status::Ok { fails }, false) => (Status::Ok { fails: fails + 1 }, None),
            (Status::Failed { successes }, true) if successes + 1 >= rise => {
                (Status::Ok { fails: 0 }, Some(true))
            }
            (Status::Failed { successes }, true) => (
                Status::Failed {
                    successes: successes + 1,
                },
                None,
            ),
            (Status::Failed { .. }, false) => (Status::Failed { successes: 0 }, None),
        };
        *self = next;
        report
    }
}

/// Runs one `[[vrrp_script]]` periodically on its own thread and reports its status
/// changes. Dropping it (or [`ScriptTracker::stop`]) stops the thread, killing a run
/// in progress.
#[derive(Debug)]
pub struct ScriptTracker {
    name: String,
    cancel: Arc<AtomicBool>,
    wake: Option<Sender<()>>,
    worker: Option<JoinHandle<()>>,
}

impl ScriptTracker {
    /// Starts checking `script`: the first run is immediate, then one run starts every
    /// `interval` (a run longer than the interval delays the next one). Status changes
    /// go to `updates`; the thread stops by itself when `updates` is disconnected.
    ///
    /// # Panics
    ///
    /// If the operating system refuses to create the thread.
    pub fn start(script: Script, updates: Sender<TrackUpdate>) -> ScriptTracker {
        let cancel = Arc::new(AtomicBool::new(false));
        let (wake, woken) = mpsc::channel::<()>();
        let name = script.name.clone();
        let flag = Arc::clone(&cancel);
        let worker = thread::Builder::new()
            .name(format!("ha-track-{name}"))
            .spawn(move || run_tracker(script, updates, flag, woken))
            .expect("cannot spawn a track_script thread");
        ScriptTracker {
            name,
            cancel,
            wake: Some(wake),
            worker: Some(worker),
        }
    }

    /// The `[[vrrp_script]]` name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Stops the thread (a run in progress is killed) and waits for it.
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for ScriptTracker {
    fn drop(&mut self) {
        self.cancel.store(true, Ordering::Relaxed);
        drop(self.wake.take());
        if let Some(w) = self.worker.take() {
            if w.join().is_err() {
                error!(script = %self.name, "track_script thread panicked");
            }
        }
    }
}

fn secs(s: f64) -> Duration {
    Duration::try_from_secs_f64(s).unwrap_or(Duration::from_secs(1))
}

fn run_tracker(
    cfg: Script,
    updates: Sender<TrackUpdate>,
    cancel: Arc<AtomicBool>,
    woken: mpsc::Receiver<()>,
) {
    let interval = secs(cfg.interval);
    let timeout = secs(cfg.timeout);
    let (rise, fall) = (cfg.rise.max(1), cfg.fall.max(1));
    let mut status = Status::Init;
    let mut last_exit: Option<String> = None;
    loop {
        let started = Instant::now();
        let name = cfg.name.clone();
        let on_line = move |stream: &'static str, line: &str| {
            debug!(script = %name, stream, "{line}");
        };
        let success = match run_sh(&cfg.script, &[], timeout, Some(&cancel), on_line) {
            RunOutcome::Cancelled => return,
            RunOutcome::Exited(st) => {
                let text = st.to_string();
                if last_exit.as_deref() != Some(text.as_str()) {
                    debug!(script = %cfg.name, status = %text, "script now returns");
                    last_exit = Some(text);
                }
                st.success()
            }
            RunOutcome::TimedOut => {
                warn!(script = %cfg.name, ?timeout, "script timed out: killed its process group");
                last_exit = None;
                false
            }
            RunOutcome::SpawnFailed(e) => {
                error!(script = %cfg.name, error = %e, "cannot run script");
                false
            }
        };
        if let Some(ok) = status.apply(success, rise, fall) {
            if ok {
                info!(script = %cfg.name, "script succeeded: OK");
            } else {
                warn!(script = %cfg.name, "script failed: FAILED");
            }
            if updates
                .send(TrackUpdate {
                    name: cfg.name.clone(),
                    ok,
                })
                .is_err()
            {
                debug!(script = %cfg.name, "nobody listens for track updates; stopping");
                return;
            }
        }
        let next = started + interval;
        match woken.recv_timeout(next.saturating_duration_since(Instant::now())) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
        }
        if cancel.load(Ordering::Relaxed) {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn combine_follows_keepalived() {
        assert_eq!(combine(&[]), (0, false));
        assert_eq!(combine(&[(0, true)]), (0, false));
        assert_eq!(combine(&[(0, false)]), (0, true));
        assert_eq!(combine(&[(-60, true)]), (0, false));
        assert_eq!(combine(&[(-60, false)]), (-60, false));
        assert_eq!(combine(&[(20, true)]), (20, false));
        assert_eq!(combine(&[(20, false)]), (0, false));
        let t = [
            TrackerStatus::new(TrackerKind::Script, "a", -60, Some(false)),
            TrackerStatus::new(TrackerKind::Script, "b", 20, None),
            TrackerStatus::new(TrackerKind::Interface, "eth0", 0, Some(true)),
        ];
        assert_eq!(t[0].state, TrackerState::Failed);
        assert_eq!((t[0].contribution, t[0].fault), (-60, false));
        assert_eq!(t[1].state, TrackerState::Unknown);
        assert_eq!((t[1].contribution, t[1].fault), (20, false));
        assert_eq!(combine_status(&t), (-40, false));
        let down = TrackerStatus::new(TrackerKind::Interface, "eth1", 0, Some(false));
        assert_eq!((down.contribution, down.fault), (0, true));
        assert_eq!(combine_status(&[down]), (0, true));
        assert_eq!(
            combine(&[(-60, false), (20, true), (-5, false), (7, false)]),
            (-45, false)
        );
        assert_eq!(
            combine(&[(-60, false), (0, false), (10, true)]),
            (-50, true)
        );
    }

    fn run(results: &[bool], rise: u32, fall: u32) -> Vec<(usize, bool)> {
        let mut s = Status::Init;
        results
            .iter()
            .enumerate()
            .filter_map(|(i, &r)| s.apply(r, rise, fall).map(|ok| (i, ok)))
            .collect()
    }

    #[test]
    fn first_result_decides_then_rise_and_fall() {
        // One success is enough at start, whatever rise is.
        assert_eq!(run(&[true, true], 3, 2), [(0, true)]);
        // One failure is enough at start, whatever fall is.
        assert_eq!(run(&[false, false], 3, 2), [(0, false)]);
        // OK -> failed after `fall` failures in a row; a success resets the count.
        assert_eq!(
            run(&[true, false, true, false, false], 3, 2),
            [(0, true), (4, false)]
        );
        // failed -> OK after `rise` successes in a row; a failure resets the count.
        assert_eq!(
            run(&[false, true, true, false, true, true, true], 3, 2),
            [(0, false), (6, true)]
        );
        // rise = fall = 1 flips on every change.
        assert_eq!(
            run(&[true, false, true], 1, 1),
            [(0, true), (1, false), (2, true)]
        );
    }

    fn script(
        name: &str,
        cmd: String,
        interval: f64,
        timeout: f64,
        rise: u32,
        fall: u32,
    ) -> Script {
        Script {
            name: name.into(),
            script: cmd,
            interval,
            timeout,
            fall,
            rise,
            weight: -10,
        }
    }

    fn lines(p: &std::path::Path) -> Vec<String> {
        std::fs::read_to_string(p)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Trailing run of `word` in the log.
    fn trailing(log: &[String], word: &str) -> usize {
        log.iter().rev().take_while(|l| *l == word).count()
    }

    #[test]
    fn tracker_honours_fall_and_rise_on_a_flag_file() {
        let dir = tempfile::tempdir().unwrap();
        let (flag, log) = (dir.path().join("healthy"), dir.path().join("runs"));
        let cmd = format!(
            "if test -e '{f}'; then echo ok >> '{l}'; else echo fail >> '{l}'; exit 1; fi",
            f = flag.display(),
            l = log.display()
        );
        std::fs::write(&flag, "").unwrap();
        let (tx, rx) = mpsc::channel();
        let (rise, fall) = (3, 2);
        let t = ScriptTracker::start(script("chk", cmd, 0.4, 2.0, rise, fall), tx);
        assert_eq!(t.name(), "chk");
        let next = || {
            rx.recv_timeout(Duration::from_secs(10))
                .expect("no track update")
        };

        // The first result is reported at once, whatever `rise` is.
        assert_eq!(
            next(),
            TrackUpdate {
                name: "chk".into(),
                ok: true
            }
        );
        assert_eq!(lines(&log), ["ok"]);

        // Failed only after `fall` failures in a row.
        std::fs::remove_file(&flag).unwrap();
        assert_eq!(
            next(),
            TrackUpdate {
                name: "chk".into(),
                ok: false
            }
        );
        let l = lines(&log);
        assert_eq!(trailing(&l, "fail"), fall as usize, "{l:?}");

        // OK again only after `rise` successes in a row.
        std::fs::write(&flag, "").unwrap();
        assert_eq!(
            next(),
            TrackUpdate {
                name: "chk".into(),
                ok: true
            }
        );
        let l = lines(&log);
        assert_eq!(trailing(&l, "ok"), rise as usize, "{l:?}");

        // Nothing more while healthy.
        assert!(rx.recv_timeout(Duration::from_millis(1000)).is_err());
        t.stop();
        let runs = lines(&log).len();
        std::thread::sleep(Duration::from_millis(800));
        assert_eq!(lines(&log).len(), runs, "still running after stop()");
    }

    #[test]
    fn a_timeout_is_a_failure_and_stop_kills_a_running_script() {
        let (tx, rx) = mpsc::channel();
        let t = ScriptTracker::start(script("slow", "sleep 30".into(), 0.2, 0.3, 1, 1), tx);
        let start = Instant::now();
        let u = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("no track update");
        assert_eq!(
            u,
            TrackUpdate {
                name: "slow".into(),
                ok: false
            }
        );
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "{:?}",
            start.elapsed()
        );
        drop(t);

        let (tx, _rx) = mpsc::channel();
        let t = ScriptTracker::start(script("hung", "sleep 30".into(), 1.0, 60.0, 1, 1), tx);
        std::thread::sleep(Duration::from_millis(200));
        let start = Instant::now();
        t.stop();
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{:?}",
            start.elapsed()
        );
    }
}
