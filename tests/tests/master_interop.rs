//! Antler's `mfsmaster` with the real MooseFS 3.0.117 `mfsmount` and chunkservers
//! (real and Antler's), all on loopback through the harness.

use std::collections::BTreeSet;
use std::fs;
use std::time::Duration;

use antler_tests::*;

fn antler_master() -> Cluster {
    Cluster::builder().master_kind(MasterKind::Antler).start()
}

/// Files written through the real mount land on real and Antler chunkservers with the
/// goal's number of copies, read back intact after a remount, and tools see them.
#[test]
fn antler_master_serves_real_mount_and_chunkservers() {
    let _lock = cluster_lock();
    let mut c = antler_master();
    let cs0 = c.add_chunkserver(CsKind::Real);
    let cs1 = c.add_chunkserver(CsKind::Antler);
    c.wait_chunkservers(2, Duration::from_secs(90));
    let ports: BTreeSet<u16> = [c.chunkserver_port(cs0), c.chunkserver_port(cs1)].into();

    let mnt = c.mount();
    let dir = mnt.join("g2");
    fs::create_dir(&dir).unwrap();
    c.mfssetgoal(2, &dir, false);
    assert_eq!(parse_getgoal(&c.mfsgetgoal(&dir)), Some(2));

    let small = pattern_bytes(1, 3 << 20);
    let big = pattern_bytes(2, 70 << 20); // two chunks
    write_file_synced(&dir.join("small"), &small);
    write_file_synced(&dir.join("big"), &big);
    assert_eq!(parse_getgoal(&c.mfsgetgoal(&dir.join("big"))), Some(2));

    c.drop_caches();
    let mnt = c.remount();
    let dir = mnt.join("g2");
    c.drop_caches();
    assert_file_eq(&dir.join("small"), &small);
    assert_file_eq(&dir.join("big"), &big);

    for (name, nchunks) in [("small", 1usize), ("big", 2)] {
        let p = dir.join(name);
        let chunks = c.wait_copies(&p, 2, Duration::from_secs(120));
        assert_eq!(chunks.len(), nchunks, "{name}: {chunks:?}");
        for ch in chunks {
            assert_eq!(ch.valid_ports(), ports, "{name} chunk {}", ch.index);
        }
    }
    c.assert_alive();
}

/// The shell workload of the comparison test. Runs in the mount's root; `$BIG` is a
/// 70 MiB file of pattern bytes outside the mount.
const WORKLOAD: &str = r#"
set -eu
mkdir -p tree/a/b/c tree/d small
mfssetgoal 1 small >/dev/null
mfssettrashtime 7200 tree/d >/dev/null
i=0
while [ $i -lt 100 ]; do
  mkdir small/d$i
  j=0
  while [ $j -lt 100 ]; do echo "file $i $j" > small/d$i/f$j; j=$((j+1)); done
  i=$((i+1))
done
cp "$BIG" tree/big
cp "$BIG" tree/a/big2
head -c 300000 "$BIG" >> tree/a/big2
printf 'appended line\n' >> tree/big
printf 'XYZ' | dd of=tree/big conv=notrunc bs=1 seek=1000 status=none
printf 'ABC' | dd of=tree/big conv=notrunc bs=1 seek=67108860 status=none
head -c 5000000 "$BIG" > tree/trunc
truncate -s 100 tree/trunc
truncate -s 3000000 tree/trunc
head -c 200000 "$BIG" > tree/a/cut
truncate -s 67108870 tree/a/cut
truncate -s 70000 tree/a/cut
echo one > tree/r1
echo two > tree/r2
mv tree/r1 tree/r2
mv tree/a/b/c tree/d/c_moved
echo data > tree/h1
ln tree/h1 tree/h2
ln tree/h1 tree/a/h3
rm tree/h2
ln -s ../h1 tree/a/sl
ln -s /nonexistent/target tree/dangling
mkfifo tree/fifo
mknod tree/null c 1 3
mknod tree/blk b 7 200
python3 -c 'import socket; s=socket.socket(socket.AF_UNIX); s.bind("tree/sock")'
chmod 640 tree/h1
chmod 4755 tree/a/cut
chmod 1777 tree/d
chown 1234:5678 tree/r2
chown 42 tree/a/big2
touch -d '2001-02-03 04:05:06' tree/t_file tree/h1
touch -h -d '2002-03-04 05:06:07' tree/a/sl
python3 - <<'PY'
import os
os.setxattr("tree/r2", "user.colour", b"blue")
os.setxattr("tree/r2", "user.size", b"x" * 300)
os.setxattr("tree/d", "user.dir", b"1")
os.setxattr("tree/h1", "user.gone", b"1")
os.removexattr("tree/h1", "user.gone")
PY
mfsmakesnapshot tree/a snapA
mfsmakesnapshot -c tree/h1 snapA/h1copy
printf 'COW' | dd of=snapA/big2 conv=notrunc bs=1 seek=10 status=none
truncate -s 100 snapA/cut
mfsmakesnapshot -o tree/r2 snapA/cut
if mfsmakesnapshot tree/r2 snapA/cut 2>/dev/null; then echo "no -o: should fail"; exit 1; fi
mfsappendchunks snapA/joined tree/trunc tree/big
printf 'J' | dd of=snapA/joined conv=notrunc bs=1 seek=5 status=none
mfsmakesnapshot tree/d snapD
mfsrmsnapshot snapD
mfsmakesnapshot tree/a snapB
echo new > snapB/b/newfile
if mfsrmsnapshot snapB 2>/dev/null; then echo "removed a changed snapshot"; exit 1; fi
mfsrmsnapshot -f snapB
mkdir -p doomed/x/y
for k in 1 2 3; do echo $k > doomed/x/y/f$k; done
cp tree/trunc doomed/x/copy
rm -r doomed
rm small/d7/f3 small/d7/f4
rmdir small/d9/../d8 2>/dev/null || true
"#;

/// Listing and checksums of everything under `root`: type, mode, uid, gid, size
/// (directories too: MooseFS reports an encoded recursive size), links, symlink
/// target, explicit mtimes of the `touch -d` entries, xattrs, and a checksum per file.
fn snapshot(root: &std::path::Path) -> String {
    let mut lines = tree_lines(root, "%y %m %U %G %s %n [%l] %p\n", Some(20));
    for p in ["tree/t_file", "tree/h1", "tree/a/sl"] {
        let m = fs::symlink_metadata(root.join(p)).expect("stat");
        use std::os::unix::fs::MetadataExt;
        lines.push(format!("mtime {p} {}", m.mtime()));
    }
    lines.sort();
    // Tool answers, in order (they go through the mount's proxy to the master).
    for (tool, args) in [
        ("/usr/bin/mfsdirinfo", vec!["tree", "small", "snapA"]),
        ("/usr/bin/mfsgetgoal", vec!["-r", "tree", "small", "snapA"]),
        ("/usr/bin/mfsgettrashtime", vec!["-r", "tree"]),
        ("/usr/bin/mfsgeteattr", vec!["-r", "tree", "snapA", "snapB"]),
        (
            "/usr/bin/mfsgeteattr",
            vec![
                "snapA",
                "snapA/big2",
                "snapA/cut",
                "snapA/h3",
                "snapA/h1copy",
                "snapA/joined",
                "snapA/b",
            ],
        ),
        (
            "/usr/bin/mfscheckfile",
            vec![
                "tree/big",
                "tree/a/cut",
                "tree/trunc",
                "snapA/big2",
                "snapA/joined",
            ],
        ),
    ] {
        let out = std::process::Command::new(tool)
            .args(&args)
            .current_dir(root)
            .output()
            .expect("tool");
        lines.push(format!("$ {tool} {}", args.join(" ")));
        lines.extend(
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(str::to_string),
        );
        lines.extend(
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .map(|l| format!("stderr: {l}")),
        );
    }
    lines.join("\n")
}

fn run_workload(kind: MasterKind, big: &std::path::Path) -> String {
    let mut c = Cluster::builder().master_kind(kind).start();
    c.add_chunkserver(CsKind::Real);
    c.add_chunkserver(CsKind::Antler);
    c.wait_chunkservers(2, Duration::from_secs(90));
    let mnt = c.mount();
    let out = run_with_timeout(
        std::process::Command::new("bash")
            .args(["-c", WORKLOAD])
            .env("BIG", big)
            .current_dir(&mnt),
        Duration::from_secs(900),
    )
    .expect("workload");
    assert!(
        out.status.success(),
        "{kind:?}: workload failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        c.mount_log()
    );
    c.drop_caches();
    let mnt = c.remount();
    c.drop_caches();
    let snap = snapshot(&mnt);
    c.assert_alive();
    snap
}

/// The same shell workload through the real mount gives the same tree (listing,
/// xattrs, checksums) against Antler's master as against the real master.
#[test]
fn shell_workload_matches_real_master() {
    let _lock = cluster_lock();
    let tmp = tempfile::tempdir().unwrap();
    let big = tmp.path().join("big");
    fs::write(&big, pattern_bytes(7, 70 << 20)).unwrap();
    let real = run_workload(MasterKind::Real, &big);
    let ours = run_workload(MasterKind::Antler, &big);
    assert!(real.lines().count() > 10_000, "listing too short:\n{real}");
    if real != ours {
        let diff: Vec<String> = {
            let r: BTreeSet<&str> = real.lines().collect();
            let o: BTreeSet<&str> = ours.lines().collect();
            r.symmetric_difference(&o)
                .map(|l| format!("{} {l}", if r.contains(l) { "real:" } else { "ours:" }))
                .collect()
        };
        panic!(
            "listings differ ({} lines):\n{}",
            diff.len(),
            diff.join("\n")
        );
    }
}

/// Goals 1, 2 and 3 end with that many copies; a chunkserver that leaves is replaced
/// by copies on one that joins; `mfssetgoal -r` changes existing files.
#[test]
fn goals_and_replication_with_servers_leaving_and_joining() {
    let _lock = cluster_lock();
    let mut c = antler_master();
    c.add_chunkserver(CsKind::Real);
    c.add_chunkserver(CsKind::Antler);
    let leaving = c.add_chunkserver(CsKind::Real);
    c.wait_chunkservers(3, Duration::from_secs(90));
    let mnt = c.mount();
    let mut files = Vec::new();
    for g in 1..=3u32 {
        let d = mnt.join(format!("g{g}"));
        fs::create_dir(&d).unwrap();
        c.mfssetgoal(g, &d, false);
        let f = d.join("f");
        let data = pattern_bytes(g as u64, 5 << 20);
        write_file_synced(&f, &data);
        files.push((g as usize, f, data));
    }
    for (g, f, _) in &files {
        c.wait_copies(f, *g, Duration::from_secs(120));
    }
    // A server leaves: the goal-3 file is down to two copies, and comes back to three
    // once another server joins.
    c.stop_chunkserver(leaving);
    c.wait_chunkserver_gone(leaving, Duration::from_secs(60));
    let g3 = &files[2].1;
    c.wait_copies(g3, 2, Duration::from_secs(120));
    let joined = c.add_chunkserver(CsKind::Antler);
    c.wait_chunkserver(joined, Duration::from_secs(90));
    let chunks = c.wait_copies(g3, 3, Duration::from_secs(180));
    assert!(
        chunks
            .iter()
            .all(|ch| ch.valid_ports().contains(&c.chunkserver_port(joined))),
        "{chunks:?}"
    );
    // Recursive goal change on existing files: everything down to one copy.
    c.mfssetgoal(1, &mnt, true);
    for (_, f, _) in &files {
        c.wait_copies(f, 1, Duration::from_secs(180));
    }
    c.drop_caches();
    for (_, f, data) in &files {
        assert_file_eq(f, data);
    }
    c.assert_alive();
}

fn try_mount(c: &Cluster, opts: &str) -> (bool, String) {
    let mnt = c.base_dir().join("mnt-try");
    fs::create_dir_all(&mnt).unwrap();
    let out = run_with_timeout(
        std::process::Command::new(REAL_MFSMOUNT).arg(&mnt).args([
            "-H",
            "127.0.0.1",
            "-P",
            &c.master_client_port().to_string(),
            "-o",
            opts,
        ]),
        Duration::from_secs(60),
    )
    .expect("mfsmount");
    let mounted = is_mountpoint(&mnt);
    if mounted {
        let _ = run_with_timeout(
            std::process::Command::new("fusermount3")
                .arg("-u")
                .arg(&mnt),
            Duration::from_secs(60),
        );
    }
    (
        out.status.success() && mounted,
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Exports: passwords, addresses, `ro` and subdirectory exports behave as with MooseFS.
#[test]
fn exports_refuse_and_confine() {
    let _lock = cluster_lock();
    let mut c = antler_master();
    fs::write(
        c.base_dir().join("etc/mfsexports.cfg"),
        "127.0.0.1 / rw,alldirs,maproot=0:0,password=sekret\n\
         127.0.0.1 /ro ro,maproot=0:0\n\
         127.0.0.1 /sub rw,maproot=0:0\n\
         192.0.2.0/24 /other rw\n",
    )
    .unwrap();
    c.stop_master();
    c.start_master();
    c.add_chunkserver(CsKind::Antler);
    c.wait_chunkservers(1, Duration::from_secs(90));

    let (ok, out) = try_mount(&c, "mfssubfolder=/");
    assert!(!ok, "mount without password succeeded: {out}");
    assert!(out.to_lowercase().contains("password"), "{out}");
    let (ok, out) = try_mount(&c, "mfspassword=wrong");
    assert!(!ok, "mount with a wrong password succeeded: {out}");
    assert!(out.to_lowercase().contains("password"), "{out}");
    // Only 192.0.2.0/24 may mount /other.
    let (ok, out) = try_mount(&c, "mfssubfolder=/other,mfspassword=sekret");
    assert!(!ok, "mount from a non-matching address succeeded: {out}");

    let mnt = c.mount_with_options(&["mfspassword=sekret"]);
    for d in ["ro", "sub", "other"] {
        fs::create_dir(mnt.join(d)).unwrap();
    }
    fs::write(mnt.join("ro/r"), b"read me").unwrap();
    fs::write(mnt.join("sub/inside"), b"in").unwrap();
    fs::write(mnt.join("outside"), b"out").unwrap();
    c.umount();

    let mnt = c.mount_with_options(&["mfssubfolder=/ro"]);
    assert_eq!(fs::read(mnt.join("r")).unwrap(), b"read me");
    let e = fs::write(mnt.join("new"), b"x").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc_erofs()), "{e}");
    c.umount();

    let mnt = c.mount_with_options(&["mfssubfolder=/sub"]);
    let names: BTreeSet<String> = fs::read_dir(&mnt)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, BTreeSet::from(["inside".to_string()]));
    assert!(fs::metadata(mnt.join("outside")).is_err());
    fs::write(mnt.join("inside2"), b"ok").unwrap();
    c.umount();
    // What the confined client created landed inside /sub.
    let mnt = c.mount_with_options(&["mfspassword=sekret"]);
    assert_eq!(fs::read(mnt.join("sub/inside2")).unwrap(), b"ok");
    assert!(fs::metadata(mnt.join("inside2")).is_err());
    c.umount();
    c.assert_alive();
}

fn libc_erofs() -> i32 {
    30
}

/// Malformed packets close only the connection that sent them, with a logged reason;
/// the master keeps serving the mount.
#[test]
fn bad_packets_close_one_connection() {
    use std::io::{Read, Write};
    let _lock = cluster_lock();
    let mut c = antler_master();
    c.add_chunkserver(CsKind::Antler);
    c.wait_chunkservers(1, Duration::from_secs(90));
    let mnt = c.mount();
    fs::write(mnt.join("before"), b"1").unwrap();
    let port = c.master_client_port();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("wrong register blob", {
            let mut p = vec![0u8; 65];
            p[64] = 2;
            frame(400, &p)
        }),
        (
            "request before registration",
            frame(
                406,
                &[0, 0, 0, 1, 0, 0, 0, 1, 1, b'a', 0, 0, 0, 0, 0, 0, 0, 0],
            ),
        ),
        ("packet too large", {
            let mut h = 400u32.to_be_bytes().to_vec();
            h.extend_from_slice(&60_000_000u32.to_be_bytes());
            h
        }),
        ("truncated register", frame(400, b"DjI1GAQD")),
    ];
    for (what, bytes) in cases {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s.write_all(&bytes).unwrap();
        let mut buf = [0u8; 64];
        let n = s.read(&mut buf).unwrap_or(0);
        assert_eq!(n, 0, "{what}: the master answered instead of closing");
    }
    // Chunkserver port: garbage before registration.
    let mut s = std::net::TcpStream::connect(("127.0.0.1", c.master_cs_port())).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(&frame(101, &[0; 40])).unwrap();
    let mut buf = [0u8; 8];
    assert_eq!(s.read(&mut buf).unwrap_or(0), 0);

    let log = c.master_log();
    for reason in [
        "bad packet",
        "before registration",
        "announces 60000000 bytes",
        "unregistered chunk server",
    ] {
        assert!(
            log.contains(reason),
            "no '{reason}' in the master log:\n{log}"
        );
    }
    fs::write(mnt.join("after"), b"2").unwrap();
    assert_eq!(fs::read(mnt.join("before")).unwrap(), b"1");
    c.assert_alive();
}

fn frame(t: u32, p: &[u8]) -> Vec<u8> {
    let mut v = t.to_be_bytes().to_vec();
    v.extend_from_slice(&(p.len() as u32).to_be_bytes());
    v.extend_from_slice(p);
    v
}
