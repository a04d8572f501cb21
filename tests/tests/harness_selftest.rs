//! Self-tests of the harness itself (real MooseFS components only): cleanup
//! after a panicking test, and the chunkserver stop / kill / restart /
//! reuse-hdd lifecycle that the Antler compatibility tests build on.

use std::collections::BTreeSet;
use std::fs;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use antler_tests::*;

fn pid_exists(pid: u32) -> bool {
    // our children are reaped by the harness, so a vanished PID means "gone"
    std::path::Path::new(&format!("/proc/{pid}")).exists()
        && !fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z")
}

#[test]
fn cleanup_after_panic() {
    let _lock = cluster_lock();
    let seen: Mutex<(Option<PathBuf>, Vec<u32>)> = Mutex::new((None, Vec::new()));
    let r = catch_unwind(AssertUnwindSafe(|| {
        let mut c = Cluster::start_real_master();
        let i = c.add_chunkserver(CsKind::Real);
        c.wait_chunkservers(1, Duration::from_secs(90));
        let mnt = c.mount();
        fs::write(mnt.join("f"), b"hello").unwrap();
        let mut s = seen.lock().unwrap();
        s.0 = Some(c.base_dir().to_path_buf());
        s.1 = vec![c.master_pid().unwrap(), c.chunkserver_pid(i).unwrap()];
        drop(s);
        panic!("deliberate panic to exercise teardown");
    }));
    assert!(r.is_err());
    let (base, pids) = seen.into_inner().unwrap();
    let base = base.expect("cluster was started");
    assert!(!base.exists(), "{} not removed", base.display());
    assert!(!is_mountpoint(&base.join("mnt")));
    for p in pids {
        assert!(!pid_exists(p), "pid {p} still running");
    }
}

#[test]
fn chunkserver_lifecycle() {
    let _lock = cluster_lock();
    let mut c = Cluster::start_real_master();
    let a = c.add_chunkserver(CsKind::Real);
    let b = c.add_chunkserver(CsKind::Real);
    c.wait_chunkservers(2, Duration::from_secs(90));
    let mnt = c.mount();
    let dir = mnt.join("d");
    fs::create_dir(&dir).unwrap();
    c.mfssetgoal(2, &dir, false);
    let data = pattern_bytes(42, 5 << 20);
    let f = dir.join("f");
    write_file_synced(&f, &data);
    c.wait_copies(&f, 2, Duration::from_secs(300));

    // graceful stop of a: master lists it as disconnected, data still readable from b
    c.stop_chunkserver(a);
    assert!(!c.chunkserver_running(a));
    c.wait_chunkserver_gone(a, Duration::from_secs(60));
    let pa = c.chunkserver_port(a);
    assert!(c
        .chunkservers()
        .iter()
        .any(|i| i.port == pa && !i.connected));
    c.drop_caches();
    assert_file_eq(&f, &data);

    // kill b; a new chunkserver on a's old hdd dir (new port) serves the data
    c.kill_chunkserver(b);
    let hdd_a = c.chunkserver_hdd(a);
    let n = c.add_chunkserver_with_hdd(CsKind::Real, &hdd_a);
    assert_eq!(c.chunkserver_hdd(n), hdd_a);
    c.wait_chunkserver(n, Duration::from_secs(90));
    let pn = c.chunkserver_port(n);
    wait_for(
        "chunks of the reused hdd to be registered",
        Duration::from_secs(120),
        || {
            ports_holding_data(&c.mfsfileinfo(&f))
                .contains(&pn)
                .then_some(())
        },
    );
    // direct-I/O mount: reads bypass the page cache and hit the chunkserver
    c.umount();
    assert!(!c.is_mounted());
    c.mount_direct();
    assert_file_eq(&f, &data);

    // restart b with its old config: back to 2 copies on b and n
    c.start_chunkserver(b);
    c.wait_chunkserver(b, Duration::from_secs(90));
    c.wait_chunkservers(2, Duration::from_secs(90));
    let chunks = c.wait_copies(&f, 2, Duration::from_secs(300));
    let want: BTreeSet<u16> = [c.chunkserver_port(b), pn].into();
    for ch in &chunks {
        assert_eq!(ch.valid_ports(), want, "{chunks:?}");
    }
    assert!(
        c.chunkserver_log(b)
            .matches("===== antler-tests: starting")
            .count()
            == 2
    );
    c.assert_alive();
}
