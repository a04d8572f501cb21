//! The stall watchdog: a separate process (so it keeps running when the daemon is
//! stopped or wedged) that aborts the FUSE connection when a block request has waited
//! longer than `stall_timeout`, or the daemon stopped beating while requests wait. The
//! kernel then fails those requests with EIO instead of leaving writers hung in D state.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// What the daemon shares with its watchdog (in a shared anonymous mapping).
#[repr(C)]
pub struct Shared {
    /// Daemon's last heartbeat (ms since the epoch).
    pub heartbeat: AtomicU64,
    /// Start of the oldest request in progress (0 = none).
    pub oldest: AtomicU64,
    /// FUSE connection number of the attached device (0 = none).
    pub conn_id: AtomicU64,
}

/// Maps the shared page (before forking the watchdog).
pub fn map_shared() -> &'static Shared {
    // SAFETY: an anonymous shared mapping of one page, never unmapped; zeroed memory is
    // a valid `Shared` (three zero atomics) and atomics make the cross-process access sound.
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        assert!(p != libc::MAP_FAILED, "mmap for the watchdog failed");
        &*(p as *const Shared)
    }
}

/// The decision, pure: abort when a request is older than `stall`, or when requests are
/// waiting and the daemon has not beaten for `stall`.
pub fn should_abort(now: u64, heartbeat: u64, oldest: u64, waiting: u64, stall: u64) -> bool {
    let old_request = oldest != 0 && now.saturating_sub(oldest) > stall;
    let dead_daemon = waiting > 0 && now.saturating_sub(heartbeat) > stall;
    old_request || dead_daemon
}

/// The watchdog loop (in the forked child; returns when the daemon is gone).
pub fn run(shared: &Shared, daemon: libc::pid_t, stall: Duration) {
    let stall_ms = stall.as_millis() as u64;
    loop {
        std::thread::sleep(Duration::from_millis(500));
        // SAFETY: getppid has no preconditions.
        if unsafe { libc::getppid() } != daemon {
            return;
        }
        let id = shared.conn_id.load(Ordering::Acquire);
        if id == 0 {
            continue;
        }
        let dir = format!("/sys/fs/fuse/connections/{id}");
        let waiting = std::fs::read_to_string(format!("{dir}/waiting"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        let now = crate::fuse::now_ms();
        if should_abort(
            now,
            shared.heartbeat.load(Ordering::Acquire),
            shared.oldest.load(Ordering::Acquire),
            waiting,
            stall_ms,
        ) {
            let r = std::fs::write(format!("{dir}/abort"), "1");
            eprintln!(
                "block-repl watchdog: block requests stalled for more than {stall:?} \
                 ({waiting} waiting): aborted FUSE connection {id} ({r:?}); I/O now fails with EIO"
            );
            shared.conn_id.store(0, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aborts_only_on_a_real_stall() {
        let s = 5_000;
        assert!(!should_abort(100_000, 99_900, 0, 3, s)); // busy, beating
        assert!(!should_abort(100_000, 99_900, 96_000, 3, s)); // request 4 s old
        assert!(should_abort(100_000, 99_900, 94_000, 3, s)); // request 6 s old
        assert!(should_abort(100_000, 90_000, 0, 1, s)); // daemon stopped, I/O waiting
        assert!(!should_abort(100_000, 90_000, 0, 0, s)); // stopped but idle
    }
}
