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
    let find = std::process::Command::new("find")
        .arg(".")
        .args([
            "-path",
            "./.*",
            "-prune",
            "-o",
            "-printf",
            "%y %m %U %G %s %n [%l] %p\n",
        ])
        .current_dir(root)
        .output()
        .expect("find");
    let mut lines: Vec<String> = String::from_utf8_lossy(&find.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    for p in ["tree/t_file", "tree/h1", "tree/a/sl"] {
        let m = fs::symlink_metadata(root.join(p)).expect("stat");
        use std::os::unix::fs::MetadataExt;
        lines.push(format!("mtime {p} {}", m.mtime()));
    }
    let files = std::process::Command::new("sh")
        .args([
            "-c",
            "find . -path './.*' -prune -o -type f -print0 | sort -z | xargs -0 md5sum",
        ])
        .current_dir(root)
        .output()
        .expect("md5sum");
    lines.extend(
        String::from_utf8_lossy(&files.stdout)
            .lines()
            .map(str::to_string),
    );
    let xattrs = std::process::Command::new("python3")
        .args(["-c", "import os\nfor d,ds,fs in os.walk('.'):\n  for n in sorted(ds+fs):\n    p=os.path.join(d,n)\n    for a in sorted(os.listxattr(p,follow_symlinks=False)):\n      print('xattr',p,a,os.getxattr(p,a,follow_symlinks=False)[:20])"])
        .current_dir(root)
        .output()
        .expect("xattrs");
    lines.extend(
        String::from_utf8_lossy(&xattrs.stdout)
            .lines()
            .map(str::to_string),
    );
    lines.sort();
    // Tool answers, in order (they go through the mount's proxy to the master).
    for (tool, args) in [
        ("/usr/bin/mfsdirinfo", vec!["tree", "small"]),
        ("/usr/bin/mfsgetgoal", vec!["-r", "tree", "small"]),
        ("/usr/bin/mfsgettrashtime", vec!["-r", "tree"]),
        (
            "/usr/bin/mfscheckfile",
            vec!["tree/big", "tree/a/cut", "tree/trunc"],
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
