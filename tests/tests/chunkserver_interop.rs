//! Antler's `mfschunkserver` against real MooseFS 3.0.117 peers: a real `mfsmaster`, a
//! real `mfsmount` and real `mfschunkserver`s, all from the Debian packages.

use std::collections::BTreeSet;
use std::fs::{self, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::time::Duration;

use antler_tests::*;

const LONG: Duration = Duration::from_secs(300);

fn antler_ports(c: &Cluster) -> BTreeSet<u16> {
    (0..c.chunkserver_count())
        .filter(|&i| c.chunkserver_kind(i) == CsKind::Antler)
        .map(|i| c.chunkserver_port(i))
        .collect()
}

fn goal_dir(c: &Cluster, mnt: &Path, name: &str, goal: u32) -> std::path::PathBuf {
    let d = mnt.join(name);
    fs::create_dir(&d).unwrap();
    c.mfssetgoal(goal, &d, false);
    d
}

/// Applies `data` at `offset` to the model and to the file.
fn write_at(path: &Path, model: &mut Vec<u8>, offset: usize, data: &[u8]) {
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .unwrap();
    f.seek(SeekFrom::Start(offset as u64)).unwrap();
    f.write_all(data).unwrap();
    f.sync_all().unwrap();
    if model.len() < offset + data.len() {
        model.resize(offset + data.len(), 0);
    }
    model[offset..offset + data.len()].copy_from_slice(data);
}

fn truncate_to(path: &Path, model: &mut Vec<u8>, len: usize) {
    let f = OpenOptions::new().write(true).open(path).unwrap();
    f.set_len(len as u64).unwrap();
    f.sync_all().unwrap();
    model.resize(len, 0);
}

#[test]
fn antler_chunkservers_serve_a_real_master_and_mount() {
    let _lock = cluster_lock();
    let mut c = Cluster::start_real_master();
    for _ in 0..3 {
        c.add_chunkserver(CsKind::Antler);
    }
    c.wait_chunkservers(3, Duration::from_secs(60));
    let ours = antler_ports(&c);
    let mnt = c.mount();

    let mut files: Vec<(std::path::PathBuf, Vec<u8>, u32)> = Vec::new();
    for goal in [1u32, 2, 3] {
        let d = goal_dir(&c, &mnt, &format!("g{goal}"), goal);

        // A file spanning several chunks (200 MiB for goal 1, smaller for the others).
        let big_len = if goal == 1 { 200 << 20 } else { 70 << 20 };
        let big = pattern_bytes(goal as u64, big_len);
        write_file_synced(&d.join("big"), &big);
        files.push((d.join("big"), big, goal));

        // Appends, crossing a chunk boundary.
        let p = d.join("append");
        let mut m = Vec::new();
        for (i, len) in [1_000_000usize, 3 << 20, 63 << 20].into_iter().enumerate() {
            let at = m.len();
            write_at(&p, &mut m, at, &pattern_bytes(100 + i as u64, len));
        }
        files.push((p, m, goal));

        // Overwrites in the middle of a chunk and truncates to unaligned sizes.
        let p = d.join("edit");
        let mut m = Vec::new();
        write_at(&p, &mut m, 0, &pattern_bytes(7, 10 << 20));
        write_at(&p, &mut m, 3_000_123, &pattern_bytes(8, 100_001));
        write_at(&p, &mut m, 65_535, &pattern_bytes(9, 3));
        truncate_to(&p, &mut m, 5_000_001);
        truncate_to(&p, &mut m, 6_543_210);
        write_at(&p, &mut m, 6_543_210 - 10, &pattern_bytes(10, 20));
        truncate_to(&p, &mut m, 1_234_567);
        files.push((p, m, goal));

        let p = d.join("cut");
        let mut m = Vec::new();
        write_at(&p, &mut m, 0, &pattern_bytes(11, 70 << 20));
        truncate_to(&p, &mut m, 65_000_007);
        files.push((p, m, goal));
    }

    c.drop_caches();
    let mnt2 = c.remount();
    c.drop_caches();
    for (p, want, goal) in &files {
        let p = mnt2.join(p.strip_prefix(&mnt).unwrap());
        assert_file_eq(&p, want);
        let chunks = c.wait_copies(&p, *goal as usize, LONG);
        for ch in &chunks {
            let ports = ch.valid_ports();
            assert_eq!(
                ports.len(),
                *goal as usize,
                "{}: chunk {} copies {ports:?}",
                p.display(),
                ch.index
            );
            assert!(
                ports.is_subset(&ours),
                "{}: copies outside Antler chunkservers: {ports:?}",
                p.display()
            );
        }
    }
    // Every chunk file really sits on an Antler disk, in MooseFS's layout. The cluster is
    // live: the master may rename (version change) or delete (freed by a truncate) a file
    // between the listing and the read, so a vanished file is skipped.
    let mut checked = 0;
    for i in 0..3 {
        for f in c.chunk_files(i) {
            let name = f.file_name().unwrap().to_str().unwrap();
            assert!(
                name.starts_with("chunk_") && name.ends_with(".mfs"),
                "{name}"
            );
            let head = match fs::read(&f) {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => panic!("{}: {e}", f.display()),
            };
            checked += 1;
            assert_eq!(&head[..8], b"MFSC 1.0", "{}", f.display());
            assert_eq!((head.len() - 8192) % 65536, 0, "{}", f.display());
        }
    }
    assert!(checked >= 10, "only {checked} chunk files checked");
    c.assert_alive();
}

#[test]
fn write_chains_mix_real_and_antler_chunkservers() {
    let _lock = cluster_lock();
    let mut c = Cluster::start_real_master();
    let real = c.add_chunkserver(CsKind::Real);
    let debug = || CsOptions {
        env: vec![(
            "RUST_LOG".into(),
            "info,antler_chunkserver::csserv=debug".into(),
        )],
        ..Default::default()
    };
    let a1 = c.add_chunkserver_opts(CsKind::Antler, debug());
    let a2 = c.add_chunkserver_opts(CsKind::Antler, debug());
    c.wait_chunkservers(3, Duration::from_secs(90));
    let real_port = c.chunkserver_port(real);
    let mnt = c.mount();
    let d = goal_dir(&c, &mnt, "g3", 3);

    let mut files = Vec::new();
    for i in 0..12u64 {
        let data = pattern_bytes(1000 + i, 3_000_000 + i as usize * 77_777);
        let p = d.join(format!("f{i}"));
        write_file_synced(&p, &data);
        files.push((p, data));
    }
    // One file spanning chunks, rewritten in the middle, so one chunk sees two chains.
    let p = d.join("multi");
    let mut m = Vec::new();
    write_at(&p, &mut m, 0, &pattern_bytes(5, 70 << 20));
    write_at(&p, &mut m, 40 << 20, &pattern_bytes(6, 1 << 20));
    files.push((p, m));

    for (p, _) in &files {
        for ch in c.wait_copies(p, 3, LONG) {
            assert_eq!(ch.valid_ports().len(), 3, "{}: {ch:?}", p.display());
        }
    }
    // Every chain holds all three servers. An Antler link whose next hop is the real
    // server means Antler -> real; an Antler link that is last means real -> Antler.
    let logs = c.chunkserver_log(a1) + &c.chunkserver_log(a2);
    let antler_then_real = logs.matches(&format!("next=0.0.0.0:{real_port}")).count();
    let real_then_antler = logs.matches("next=none").count();
    note(format!(
        "write chains: antler->real {antler_then_real}, real->antler {real_then_antler}"
    ));
    c.drop_caches();
    let mnt2 = c.remount();
    for (p, want) in &files {
        assert_file_eq(&mnt2.join(p.strip_prefix(&mnt).unwrap()), want);
    }
    // The same chunk stored by a real and by an Antler chunkserver is the same file, byte
    // for byte: header, CRC table and data.
    let mut compared = 0;
    for rf in c.chunk_files(real) {
        let name = rf.file_name().unwrap().to_owned();
        for a in [a1, a2] {
            if let Some(af) = c
                .chunk_files(a)
                .into_iter()
                .find(|f| f.file_name().unwrap() == name)
            {
                // Same name = same chunk and version; a file renamed by a version change
                // since the listing is skipped.
                let (Ok(rb), Ok(ab)) = (fs::read(&rf), fs::read(&af)) else {
                    continue;
                };
                assert_eq!(rb.len(), ab.len(), "{name:?}: sizes differ");
                if let Some(at) = rb.iter().zip(&ab).position(|(x, y)| x != y) {
                    panic!(
                        "{name:?}: real and Antler chunk files differ first at offset {at} (real {:02X?}, antler {:02X?})",
                        &rb[at..(at + 8).min(rb.len())],
                        &ab[at..(at + 8).min(ab.len())]
                    );
                }
                compared += 1;
            }
        }
    }
    assert!(compared >= 20, "only {compared} chunk files compared");
    assert!(
        antler_then_real > 0 && real_then_antler > 0,
        "chains did not pass both ways: antler->real {antler_then_real}, real->antler {real_then_antler}"
    );
    c.assert_alive();
}

/// Writes goal-1 data on one chunkserver of `kind`, swaps the daemon on the same disk and
/// data directory for the other kind, and reads everything back.
#[test]
fn chunkservers_take_over_each_others_disks() {
    let _lock = cluster_lock();
    let mut c = Cluster::start_real_master();
    let cs = c.add_chunkserver(CsKind::Real);
    c.wait_chunkservers(1, Duration::from_secs(90));
    let mnt = c.mount();
    let d = goal_dir(&c, &mnt, "g1", 1);
    let mut files = Vec::new();
    for (i, len) in [(0u64, 1usize), (1, 65_536), (2, 1_000_003), (3, 70 << 20)] {
        let data = pattern_bytes(i + 40, len);
        write_file_synced(&d.join(format!("real{i}")), &data);
        files.push((d.join(format!("real{i}")), data));
    }
    let real_chunks = c.chunk_files(cs).len();
    assert!(real_chunks >= 5);

    for (round, kind) in [CsKind::Antler, CsKind::Real].into_iter().enumerate() {
        c.stop_chunkserver(cs);
        c.wait_chunkserver_gone(cs, Duration::from_secs(60));
        c.set_chunkserver_kind(cs, kind);
        c.start_chunkserver(cs);
        c.wait_chunkserver(cs, Duration::from_secs(90));
        c.drop_caches();
        for (p, want) in &files {
            assert_file_eq(p, want);
            c.wait_copies(p, 1, LONG);
        }
        // New data written by this kind must survive the next swap.
        let data = pattern_bytes(90 + round as u64, 5_000_000);
        let p = d.join(format!("round{round}"));
        write_file_synced(&p, &data);
        files.push((p, data));
    }
    assert_eq!(c.chunk_files(cs).len(), real_chunks + 2);
    c.assert_alive();
}

#[test]
fn lost_chunkserver_is_rereplicated_by_antler_chunkservers() {
    let _lock = cluster_lock();
    let mut c = Cluster::start_real_master();
    for _ in 0..3 {
        c.add_chunkserver(CsKind::Antler);
    }
    c.wait_chunkservers(3, Duration::from_secs(60));
    let mnt = c.mount();
    let d = goal_dir(&c, &mnt, "g2", 2);
    let data = pattern_bytes(77, 70 << 20);
    let p = d.join("f");
    write_file_synced(&p, &data);
    let chunks = c.wait_copies(&p, 2, LONG);
    let victim_port = *chunks[0].valid_ports().iter().next().unwrap();
    let victim = c.chunkserver_by_port(victim_port).unwrap();
    c.kill_chunkserver(victim);
    c.wait_chunkserver_gone(victim, Duration::from_secs(60));
    c.drop_caches();
    assert_file_eq(&p, &data);
    // The master re-replicates to the remaining two servers.
    let survivors: BTreeSet<u16> = antler_ports(&c)
        .into_iter()
        .filter(|p| *p != victim_port)
        .collect();
    let chunks = wait_for("re-replication to goal 2", LONG, || {
        let info = parse_fileinfo(&c.mfsfileinfo(&p));
        info.iter()
            .all(|ch| ch.valid_ports() == survivors)
            .then_some(info)
    });
    assert_eq!(chunks.len(), 2);
    c.drop_caches();
    assert_file_eq(&p, &data);
    c.assert_alive();
}

#[test]
fn corrupted_copy_is_detected_reported_and_never_served() {
    let _lock = cluster_lock();
    let mut c = Cluster::start_real_master();
    for _ in 0..3 {
        c.add_chunkserver_opts(
            CsKind::Antler,
            CsOptions {
                extra_cfg: vec![("HDD_TEST_FREQ".into(), "1".into())],
                ..Default::default()
            },
        );
    }
    c.wait_chunkservers(3, Duration::from_secs(60));
    let mnt = c.mount_direct();
    let d = goal_dir(&c, &mnt, "g2", 2);
    let data = pattern_bytes(5, 3 << 20);
    let p = d.join("f");
    write_file_synced(&p, &data);
    let ch = c.wait_copies(&p, 2, LONG).remove(0);
    let bad_port = *ch.valid_ports().iter().next().unwrap();
    let bad = c.chunkserver_by_port(bad_port).unwrap();
    let file = c
        .chunk_files(bad)
        .into_iter()
        .find(|f| {
            f.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with(&format!("chunk_{:016X}_", ch.id))
        })
        .expect("chunk file on the chosen server");
    // Flip one byte in the data area (block 3).
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&file)
        .unwrap();
    let off = 8192 + 3 * 65536 + 123;
    let mut b = [0u8; 1];
    f.seek(SeekFrom::Start(off)).unwrap();
    f.read_exact(&mut b).unwrap();
    f.seek(SeekFrom::Start(off)).unwrap();
    f.write_all(&[b[0] ^ 0x5A]).unwrap();
    f.sync_all().unwrap();
    drop(f);

    // Reads through the mount keep returning the right bytes.
    for _ in 0..5 {
        c.drop_caches();
        assert_file_eq(&p, &data);
    }
    // The chunkserver reports the damage; the master stops counting that copy and brings
    // the chunk back to goal elsewhere.
    wait_for("damage report in the chunkserver log", LONG, || {
        c.chunkserver_log(bad)
            .contains("reporting damaged chunks to master")
            .then_some(())
    });
    wait_for("damaged copy replaced", LONG, || {
        let info = parse_fileinfo(&c.mfsfileinfo(&p));
        let ports = info[0].valid_ports();
        (ports.len() == 2 && !ports.contains(&bad_port)).then_some(())
    });
    c.drop_caches();
    assert_file_eq(&p, &data);
    c.assert_alive();
}

fn get_version(port: u16) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    s.write_all(&[0, 0, 0, 10, 0, 0, 0, 0]).ok()?;
    let mut hdr = [0u8; 8];
    s.read_exact(&mut hdr).ok()?;
    let len = u32::from_be_bytes(hdr[4..8].try_into().unwrap()) as usize;
    let mut p = vec![0u8; len];
    s.read_exact(&mut p).ok()?;
    Some(format!(
        "{}.{}.{}",
        u16::from_be_bytes([p[0], p[1]]),
        p[2],
        p[3]
    ))
}

/// Sends raw bytes on a fresh data connection and waits until the chunkserver closes it.
fn send_and_expect_close(port: u16, bytes: &[u8]) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(bytes).unwrap();
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut sink = Vec::new();
    let _ = s.read_to_end(&mut sink);
}

#[test]
fn bad_input_closes_only_the_offending_connection() {
    let _lock = cluster_lock();
    let mut c = Cluster::builder()
        .master_cfg("AUTH_CODE", "right-secret")
        .start_real_master();
    let good = c.add_chunkserver_opts(
        CsKind::Antler,
        CsOptions {
            extra_cfg: vec![("AUTH_CODE".into(), "right-secret".into())],
            ..Default::default()
        },
    );
    let wrong = c.add_chunkserver_opts(
        CsKind::Antler,
        CsOptions {
            extra_cfg: vec![("AUTH_CODE".into(), "wrong-secret".into())],
            ..Default::default()
        },
    );
    c.wait_chunkserver(good, Duration::from_secs(60));
    let mnt = c.mount_direct();
    let data = pattern_bytes(3, 2_000_000);
    write_file_synced(&mnt.join("f"), &data);

    // Wrong AUTH_CODE: refused with a clear reason, keeps retrying, never registered.
    wait_for("AUTH_CODE refusal logged", LONG, || {
        c.chunkserver_log(wrong)
            .contains("master refused our AUTH_CODE")
            .then_some(())
    });
    let wrong_port = c.chunkserver_port(wrong);
    assert!(!c
        .chunkservers()
        .iter()
        .any(|i| i.connected && i.port == wrong_port));

    // Malformed data-port input: each bad connection is closed with a logged reason.
    let port = c.chunkserver_port(good);
    send_and_expect_close(port, &[0, 0, 0, 200, 0, 0, 0, 19, 1, 2, 3]); // CLTOCS_READ cut short
    send_and_expect_close(port, &[0, 0, 0, 200, 0, 0, 0, 19]); // ...then EOF
    let mut wrong_size = vec![0, 0, 0, 200, 0, 0, 0, 19];
    wrong_size.extend_from_slice(&[0u8; 19]);
    send_and_expect_close(port, &wrong_size); // CLTOCS_READ of 19 bytes
    send_and_expect_close(port, &[0, 0, 0, 210, 0x7F, 0, 0, 0]); // 2 GB announced
    send_and_expect_close(port, &[0, 0, 0x99, 0x99, 0, 0, 0, 0]); // unknown type
    let log = c.chunkserver_log(good);
    for needle in [
        "CLTOCS_READ: wrong size 19",
        "announces",
        "connection closed in the middle of a packet",
        "unexpected message type",
    ] {
        assert!(log.contains(needle), "no '{needle}' in the log:\n{log}");
    }
    // ...and the chunkserver still serves everyone else.
    assert_eq!(get_version(port).as_deref(), Some("3.0.117"));
    c.drop_caches();
    assert_file_eq(&mnt.join("f"), &data);
    c.assert_alive();
}

#[test]
fn malformed_master_packet_makes_the_chunkserver_reconnect() {
    let _lock = cluster_lock();
    // A hand-made "master" that answers registration with a broken acknowledgement.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let dir = tempfile::Builder::new()
        .prefix("antler-badmaster-")
        .tempdir()
        .unwrap();
    let hdd = dir.path().join("hdd");
    fs::create_dir(&hdd).unwrap();
    fs::write(dir.path().join("hdd.cfg"), format!("{}\n", hdd.display())).unwrap();
    let cs_port = free_port();
    fs::write(
        dir.path().join("cs.cfg"),
        format!(
            "WORKING_USER = root\nWORKING_GROUP = root\nDATA_PATH = {d}\nHDD_CONF_FILENAME = {d}/hdd.cfg\nMASTER_HOST = 127.0.0.1\nMASTER_PORT = {port}\nMASTER_RECONNECTION_DELAY = 1\nCSSERV_LISTEN_HOST = 127.0.0.1\nCSSERV_LISTEN_PORT = {cs_port}\nHDD_LEAVE_SPACE_DEFAULT = 0\n",
            d = dir.path().display()
        ),
    )
    .unwrap();
    let log = dir.path().join("cs.log");
    let child = std::process::Command::new(antler_bin("mfschunkserver"))
        .args(["-f", "-c"])
        .arg(dir.path().join("cs.cfg"))
        .arg("start")
        .stdout(fs::File::create(&log).unwrap())
        .stderr(fs::File::create(dir.path().join("cs.err")).unwrap())
        .spawn()
        .unwrap();
    // Stops our chunkserver (by its PID) whatever happens below.
    struct Guard(std::process::Child);
    impl Drop for Guard {
        fn drop(&mut self) {
            // SAFETY: signalling our own child process by its PID.
            unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
            let _ = self.0.wait();
        }
    }
    let guard = Guard(child);
    let mut conns = 0;
    for _ in 0..2 {
        let (mut s, _) = l.accept().unwrap();
        conns += 1;
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut hdr = [0u8; 8];
        s.read_exact(&mut hdr).unwrap();
        assert_eq!(
            u32::from_be_bytes(hdr[..4].try_into().unwrap()),
            100,
            "first packet is CSTOMA_REGISTER"
        );
        let mut p = vec![0u8; u32::from_be_bytes(hdr[4..].try_into().unwrap()) as usize];
        s.read_exact(&mut p).unwrap();
        assert_eq!(p[0], 60);
        // MATOCS_MASTER_ACK with 3 bytes: no such form exists.
        s.write_all(&[0, 0, 0, 104, 0, 0, 0, 3, 0, 1, 2]).unwrap();
    }
    assert_eq!(conns, 2, "the chunkserver reconnected after the bad packet");
    // The data port kept serving all along.
    assert_eq!(get_version(cs_port).as_deref(), Some("3.0.117"));
    drop(guard);
    let text =
        fs::read_to_string(dir.path().join("cs.err")).unwrap() + &fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("MATOCS_MASTER_ACK: wrong size 3"),
        "log:\n{text}"
    );
}

#[test]
fn chunkservers_reconnect_when_the_master_restarts() {
    let _lock = cluster_lock();
    let mut c = Cluster::start_real_master();
    for _ in 0..2 {
        c.add_chunkserver(CsKind::Antler);
    }
    c.wait_chunkservers(2, Duration::from_secs(60));
    let mnt = c.mount();
    let d = goal_dir(&c, &mnt, "g2", 2);
    let data = pattern_bytes(21, 5_000_000);
    write_file_synced(&d.join("before"), &data);
    c.wait_copies(&d.join("before"), 2, LONG);

    c.umount();
    c.stop_master();
    c.start_master();
    // Both chunkservers find the restarted master by themselves and report their chunks.
    c.wait_chunkservers(2, Duration::from_secs(120));
    let mnt = c.mount();
    let d = mnt.join("g2");
    let chunks = c.wait_copies(&d.join("before"), 2, LONG);
    assert_eq!(chunks.len(), 1);
    c.drop_caches();
    assert_file_eq(&d.join("before"), &data);
    let more = pattern_bytes(22, 3_000_000);
    write_file_synced(&d.join("after"), &more);
    c.drop_caches();
    assert_file_eq(&d.join("after"), &more);
    for i in 0..2 {
        assert!(
            c.chunkserver_log(i)
                .matches("registered with master")
                .count()
                >= 2,
            "cs{i} did not register twice"
        );
    }
    c.assert_alive();
}

/// Regression: an idle, registered chunkserver must keep the link alive with NOPs; the
/// master drops a chunkserver it has not heard from within its timeout (10 s).
#[test]
fn idle_chunkserver_stays_registered() {
    let _lock = cluster_lock();
    let mut c = Cluster::start_real_master();
    let cs = c.add_chunkserver(CsKind::Antler);
    c.wait_chunkservers(1, Duration::from_secs(60));
    std::thread::sleep(Duration::from_secs(25));
    let mlog = c.master_log();
    assert!(
        !mlog.contains("timed out"),
        "master timed the chunkserver out:\n{mlog}"
    );
    let log = c.chunkserver_log(cs);
    assert_eq!(
        log.matches("registered with master").count(),
        1,
        "chunkserver re-registered:\n{log}"
    );
    c.assert_alive();
}

/// Disks remember the metadata id of their file system instance (`.metaid`); a
/// chunkserver must refuse to serve a master of another instance, as real ones do.
#[test]
fn master_of_another_instance_is_refused() {
    let _lock = cluster_lock();
    let mut a = Cluster::start_real_master();
    let cs = a.add_chunkserver(CsKind::Antler);
    a.wait_chunkservers(1, Duration::from_secs(60));
    let hdd = a.chunkserver_hdd(cs);
    let mnt = a.mount();
    write_file_synced(&mnt.join("f"), &pattern_bytes(1, 100_000));
    a.umount();
    a.stop_chunkserver(cs);
    let metaid = fs::read(hdd.join(".metaid")).unwrap();
    assert_eq!(metaid.len(), 8, ".metaid holds the 8-byte metadata id");

    // A fresh master has a new metadata id. Start our chunkserver on A's disk while B's
    // master is down, then bring B up.
    let mut b = Cluster::start_real_master();
    b.stop_master();
    let other = b.add_chunkserver_with_hdd(CsKind::Antler, &hdd);
    b.start_master();
    wait_for("chunkserver to stop", LONG, || {
        (!b.chunkserver_running(other)).then_some(())
    });
    let log = b.chunkserver_log(other);
    assert!(
        log.contains("belongs to another MooseFS instance"),
        "log:\n{log}"
    );
    assert!(
        !b.chunkservers().iter().any(|i| i.connected),
        "master B accepted the chunkserver"
    );
    assert_eq!(
        fs::read(hdd.join(".metaid")).unwrap(),
        metaid,
        ".metaid was overwritten"
    );
    assert!(
        !a.chunk_files(cs).is_empty(),
        "chunk files of instance A vanished"
    );
}
