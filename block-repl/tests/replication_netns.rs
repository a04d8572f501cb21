//! block-repl end to end: two daemons in two network namespaces (198.51.100.0/24), a
//! real ext4 on the replicated device, kill -9, link cuts, split brain.

mod common;

use common::*;
use std::time::Duration;

const LONG: Duration = Duration::from_secs(120);

fn kib(v: &serde_json::Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or_else(|| panic!("{key} in {v}"))
}

/// Both up, node1 forced primary (initial full sync), waits until Connected.
fn synced_pair(o: Opts) -> Pair {
    let p = Pair::new(o);
    p.up(0);
    p.up(1);
    p.wait_cstate(0, "Connected", LONG);
    let refused = p.cli_raw(0, &["primary"]);
    assert!(
        !refused.status.success(),
        "an Inconsistent node must not be promoted without --force"
    );
    assert!(String::from_utf8_lossy(&refused.stderr).contains("Inconsistent"));
    p.cli(0, &["primary", "--force"]);
    p
}

fn mkfs(p: &Pair, i: usize) {
    ok(&[
        "mkfs.ext4",
        "-q",
        "-F",
        "-E",
        "lazy_itable_init=0,lazy_journal_init=0",
        p.dev(i).to_str().unwrap(),
    ]);
}

fn check_files(files: &[(std::path::PathBuf, Vec<u8>)], new_root: &std::path::Path) {
    for (path, data) in files {
        let p = new_root.join(path.file_name().unwrap());
        let got = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        assert!(got == *data, "{} differs after failover", p.display());
    }
}

/// Mounts (journal replay), unmounts, and requires a clean `e2fsck -fn`.
fn fsck_clean(p: &Pair, i: usize) {
    let m = p.mount(i, "replay");
    p.umount(&m);
    let o = run(&["e2fsck", "-fn", p.dev(i).to_str().unwrap()]);
    assert!(
        o.status.success(),
        "e2fsck not clean: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn kill9_failover_keeps_fsynced_files_and_reconnect_resyncs_only_dirty_blocks() {
    let p = Pair::new(Opts {
        disk: "resync_rate = \"40MiB\"\nal_extents = 4".into(),
        ..Default::default()
    });
    p.up(0);
    p.up(1);
    p.wait_cstate(0, "Connected", LONG);
    p.cli(0, &["primary", "--force"]);
    // The initial full sync at 40 MiB/s: status shows progress and an ETA meanwhile.
    wait_for("resync progress in status", LONG, || {
        let t = String::from_utf8_lossy(&p.cli_raw(0, &["status"]).stdout).into_owned();
        t.contains("cs:SyncSource")
            && t.contains("sync'ed:")
            && t.contains("finish: ")
            && t.contains("speed:")
    });
    let j = p.status(1);
    assert_eq!(j["cstate"], "SyncTarget", "{j}");
    assert!(j["resync"][0].as_u64().unwrap() > 200_000, "{j}");
    p.wait_cstate(0, "Connected", LONG);
    assert_eq!(p.status(1)["disk"], "UpToDate");

    mkfs(&p, 0);
    let m = p.mount(0, "a");
    let files = write_files(&m, "f", 30, 200_000);
    // kill -9 the primary's daemon: the secondary has every fsynced file.
    p.kill9(0);
    p.wait_cstate(1, "WFConnection", LONG);
    p.cli(1, &["primary"]);
    let _ = run(&["umount", "-l", m.to_str().unwrap()]);
    p.detach_stale_loops(0);
    fsck_clean(&p, 1);
    let m2 = p.mount(1, "b");
    check_files(&files, &m2);

    // Changes on the new primary while the old one is away.
    let more = write_files(&m2, "g", 8, 1 << 20);
    let before = p.status(1);
    // The old primary comes back as secondary: only dirty blocks (plus its activity log
    // of 4 x 4 MiB) travel, not the 256 MiB device.
    p.up(0);
    p.wait_cstate(0, "Connected", LONG);
    p.wait_cstate(1, "Connected", LONG);
    let after = p.status(1);
    let resync_kib = kib(&after, "sent_kib") - kib(&before, "sent_kib");
    let dirty_kib = kib(&before, "out_of_sync_kib");
    assert!(
        dirty_kib >= 8 * 1024,
        "dirty {dirty_kib} KiB < the 8 MiB written"
    );
    assert!(
        resync_kib >= 8 * 1024 && resync_kib <= dirty_kib + 16 * 1024 + 2048,
        "resync sent {resync_kib} KiB for {dirty_kib} KiB dirty"
    );
    assert!(
        resync_kib < 64 * 1024,
        "resync sent {resync_kib} KiB: that is most of the device"
    );
    let v = p.cli(1, &["verify"]);
    assert!(v.contains("verify finished: 0 KiB out of sync"), "{v}");
    check_files(&more, &m2);
}

#[test]
fn link_cut_then_kill_fences_and_the_secondary_has_everything_acknowledged() {
    let p = synced_pair(Opts {
        disk: "fencing = \"resource-only\"".into(),
        ..Default::default()
    });
    p.wait_cstate(0, "Connected", LONG);
    mkfs(&p, 0);
    let m = p.mount(0, "a");
    let files = write_files(&m, "f", 20, 100_000);
    p.link(false);
    p.wait_cstate(0, "WFConnection", LONG);
    // The primary ran the fence-peer handler and marks the peer Outdated.
    wait_for("fence handler", LONG, || {
        std::fs::read_to_string(p.dir.join("fence.log")).is_ok_and(|s| s.contains("fenced node2"))
    });
    assert_eq!(p.status(0)["peer_disk"], "Outdated");
    p.kill9(0);
    p.wait_cstate(1, "WFConnection", LONG);
    p.cli(1, &["primary"]);
    let _ = run(&["umount", "-l", m.to_str().unwrap()]);
    p.detach_stale_loops(0);
    fsck_clean(&p, 1);
    let m2 = p.mount(1, "b");
    check_files(&files, &m2);
}

#[test]
fn split_brain_is_detected_never_merged_and_discard_zero_changes_resolves_it() {
    let p = synced_pair(Opts {
        net: "after_sb_0pri = \"discard-zero-changes\"".into(),
        ..Default::default()
    });
    p.wait_cstate(0, "Connected", LONG);
    mkfs(&p, 0);
    // Both sides write while disconnected: split brain.
    p.cli(0, &["disconnect"]);
    p.cli(1, &["disconnect"]);
    p.wait_cstate(1, "StandAlone", LONG);
    p.cli(1, &["primary", "--force"]);
    let m1 = p.mount(0, "a");
    let m2 = p.mount(1, "b");
    let a = write_files(&m1, "a", 3, 50_000);
    let b = write_files(&m2, "b", 3, 50_000);
    p.umount(&m1);
    p.umount(&m2);
    p.cli(0, &["secondary"]);
    p.cli(1, &["secondary"]);
    p.cli(0, &["connect"]);
    p.cli(1, &["connect"]);
    wait_for("split-brain hook", LONG, || {
        std::fs::read_to_string(p.dir.join("split.log")).is_ok_and(|s| s.lines().count() >= 2)
    });
    for i in 0..2 {
        p.wait_cstate(i, "StandAlone", LONG);
        let s = p.status(i);
        assert!(
            s["note"].as_str().unwrap_or("").contains("split brain"),
            "{s}"
        );
    }
    // Nothing merged: each side still has its own files only.
    p.cli(0, &["primary"]);
    let m1 = p.mount(0, "a2");
    check_files(&a, &m1);
    assert!(!m1.join("b0").exists());
    p.umount(&m1);
    p.cli(0, &["secondary"]);
    p.cli(1, &["primary"]);
    let m2 = p.mount(1, "b2");
    check_files(&b, &m2);
    assert!(!m2.join("a0").exists());
    p.umount(&m2);
    p.cli(1, &["secondary"]);

    // Second split: node1 keeps still, node2 writes. discard-zero-changes resolves it.
    p.cli(0, &["connect"]);
    p.cli(1, &["invalidate"]); // settle the first split brain: node2 takes node1's data
    p.cli(1, &["connect"]);
    p.wait_cstate(0, "Connected", LONG);
    p.wait_cstate(1, "Connected", LONG);
    p.cli(0, &["disconnect"]);
    p.cli(1, &["disconnect"]);
    p.wait_cstate(1, "StandAlone", LONG);
    p.cli(0, &["primary"]);
    p.cli(0, &["secondary"]);
    p.cli(1, &["primary"]);
    let m2 = p.mount(1, "c");
    let c = write_files(&m2, "c", 3, 50_000);
    p.umount(&m2);
    p.cli(1, &["secondary"]);
    p.cli(0, &["connect"]);
    p.cli(1, &["connect"]);
    p.wait_cstate(0, "Connected", LONG);
    p.wait_cstate(1, "Connected", LONG);
    assert!(
        p.log(0).contains("split brain resolved by policy"),
        "{}",
        p.log(0)
    );
    let v = p.cli(1, &["verify"]);
    assert!(v.contains(" 0 KiB out of sync"), "{v}");
    p.cli(0, &["primary"]);
    let m1 = p.mount(0, "d");
    check_files(&c, &m1);
    check_files(&a, &m1);
    assert!(!m1.join("b0").exists());
}

#[test]
fn outdated_promotion_and_a_wrong_secret_are_refused() {
    let p = synced_pair(Opts::default());
    p.wait_cstate(1, "Connected", LONG);
    p.cli(1, &["disconnect"]);
    p.wait_cstate(1, "StandAlone", LONG);
    p.cli(1, &["outdate"]);
    let o = p.cli_raw(1, &["primary"]);
    assert_eq!(o.status.code(), Some(11));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("Outdated"), "{err}");
    assert_eq!(p.status(1)["primary"], false);

    // Wrong secret: node2 restarts with another shared_secret.
    p.cli(1, &["down"]);
    let text = std::fs::read_to_string(&p.cfg).unwrap();
    let bad = p.dir.join("bad.toml");
    std::fs::write(&bad, text.replace("t3st-secret", "wrong-secret")).unwrap();
    let o = run(&[
        "ip",
        "netns",
        "exec",
        &p.ns[1],
        bin(),
        "-c",
        bad.to_str().unwrap(),
        "--node",
        "node2",
        "up",
    ]);
    assert!(
        o.status.success(),
        "up with a wrong secret: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    for i in 0..2 {
        wait_for("authentication refusal", LONG, || {
            let s = p.status(i);
            s["cstate"] == "StandAlone"
                && s["note"].as_str().unwrap_or("").contains("shared_secret")
        });
    }
}

/// SIGCONTs a stopped daemon when dropped, so a failing test can still clean up.
struct Resume(i32);
impl Drop for Resume {
    fn drop(&mut self) {
        // SAFETY: signalling a process this test started.
        unsafe { libc::kill(self.0, libc::SIGCONT) };
    }
}

#[test]
fn a_stalled_daemon_makes_io_fail_instead_of_hanging() {
    let p = synced_pair(Opts {
        disk: "stall_timeout = 3.0".into(),
        ..Default::default()
    });
    p.wait_cstate(0, "Connected", LONG);
    mkfs(&p, 0);
    let m = p.mount(0, "a");
    write_files(&m, "f", 2, 10_000);
    let pid = p.pid(0).unwrap();
    // SAFETY: stopping a process this test started; Resume continues it.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let _resume = Resume(pid);
    let target = format!("of={}", m.join("stalled").display());
    let mut dd = std::process::Command::new("dd")
        .args(["if=/dev/zero", &target, "bs=1M", "count=8", "conv=fsync"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let t = std::time::Instant::now();
    let status = loop {
        if let Some(s) = dd.try_wait().unwrap() {
            break s;
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "I/O still hangs 60 s after the daemon stopped: the watchdog did not abort"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        !status.success(),
        "dd cannot succeed while the daemon is stopped"
    );
    let mut err = String::new();
    std::io::Read::read_to_string(&mut dd.stderr.take().unwrap(), &mut err).unwrap();
    assert!(err.contains("Input/output error"), "{err}");
    assert!(p.log(0).contains("aborted FUSE connection"), "{}", p.log(0));
}

/// Many writers at once, of sizes from 4 KiB to 1 MiB, over the same 32 MiB of the raw
/// device: writes overlap all the time, large ones go to the disk directly and are
/// applied on several threads on the secondary, small ones through the page cache. Both
/// copies must end identical, block for block.
#[test]
fn concurrent_overlapping_writes_leave_identical_copies() {
    let p = synced_pair(Opts {
        mib: 64,
        ..Default::default()
    });
    p.wait_cstate(0, "Connected", LONG);
    let dev = p.dev(0);
    let filename = format!("--filename={}", dev.display());
    ok(&[
        "fio",
        "--name=overlap",
        &filename,
        "--rw=randwrite",
        "--bsrange=4k-1m",
        "--ioengine=libaio",
        "--iodepth=16",
        "--direct=1",
        "--numjobs=4",
        "--size=32M",
        "--io_size=96M",
        "--norandommap",
        "--randrepeat=0",
        "--refill_buffers",
        "--end_fsync=1",
    ]);
    let v = p.cli(0, &["verify"]);
    assert!(v.contains("verify finished: 0 KiB out of sync"), "{v}");
    // The same bytes in both images, not only the same checksums.
    let read = |n: &str| {
        let mut b = vec![0u8; 64 << 20];
        use std::os::unix::fs::FileExt;
        std::fs::File::open(p.dir.join(format!("{n}.img")))
            .unwrap()
            .read_exact_at(&mut b, 0)
            .unwrap();
        b
    };
    let (a, b) = (read("node1"), read("node2"));
    let differ = a
        .chunks(4096)
        .zip(b.chunks(4096))
        .filter(|(x, y)| x != y)
        .count();
    assert_eq!(differ, 0, "{differ} blocks differ between the two copies");
    assert!(
        a[..32 << 20]
            .chunks(4096)
            .filter(|c| c.iter().any(|x| *x != 0))
            .count()
            > 4000,
        "the writes did not reach the device"
    );
}
