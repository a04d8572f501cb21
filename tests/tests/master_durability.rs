//! Antler's `mfsmaster` keeps what it acknowledged: clean restarts (the real mount
//! carries on, open files included), `kill -9` plus `-a` recovery during a write
//! workload, metadata and changelogs written by a real MooseFS 3.0.117 master, real
//! `mfsmetadump` reading our files, and `-a` refusing a corrupt changelog line.

use std::ffi::OsStr;
use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use antler_tests::*;

const MFSMETADUMP: &str = "/usr/sbin/mfsmetadump";

/// Type, mode, owner, size, links, mtime, link target and path of everything under
/// `root`, plus a checksum per file and every xattr; sorted.
fn tree_state(root: &Path) -> String {
    let mut lines = tree_lines(root, "%y %m %U %G %s %n %T@ [%l] %p\n", None);
    lines.sort();
    lines.join("\n")
}

/// A tree with every kind of change the changelog carries.
const WORKLOAD: &str = r#"
set -eu
mkdir -p w/a/b w/c
for i in $(seq 1 300); do echo "small $i" > w/a/f$i; done
head -c 3000000 /dev/urandom > w/c/data
head -c 70000000 /dev/urandom > w/c/big
echo tail >> w/c/data
truncate -s 1000 w/a/f1
truncate -s 100000 w/a/f2
ln w/a/f3 w/c/hard
ln -s ../a/f4 w/c/sym
mkfifo w/c/fifo
mv w/a/f5 w/c/moved
mv w/a/f6 w/a/f7
rm w/a/f8 w/a/f9
rmdir w/a/b
chmod 4750 w/a/f10
chown 1234:5678 w/a/f11
touch -d '2001-02-03 04:05:06' w/a/f12
python3 -c "import os; os.setxattr('w/a/f13','user.colour',b'bl,ue(x)%'); os.setxattr('w/a/f14','user.gone',b'x'); os.removexattr('w/a/f14','user.gone')"

mfssetgoal -r 1 w/a >/dev/null
mfssettrashtime 0 w/c/data >/dev/null
mfsmakesnapshot w/c w/snapC
mfsappendchunks w/joined w/c/data w/a/f20
mkdir 'w/odd name,(%)'
echo odd > 'w/odd name,(%)/x'
sync
"#;

/// Asserts two [`tree_state`]s are equal, showing only the lines that differ. The root's
/// own line is left out: a live master's recursive size of the root can lag its
/// children's by a few bytes (the real master's and ours alike, after this workload: 9
/// bytes), and a load recounts it.
fn assert_same(got: &str, want: &str, what: &str) {
    let g: std::collections::BTreeSet<&str> = got.lines().filter(|l| !l.ends_with(" .")).collect();
    let w: std::collections::BTreeSet<&str> = want.lines().filter(|l| !l.ends_with(" .")).collect();
    let missing: Vec<&&str> = w.difference(&g).collect();
    let extra: Vec<&&str> = g.difference(&w).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{what}: missing {missing:#?}\nunexpected {extra:#?}"
    );
}

fn run_workload(mnt: &Path) {
    let out = run_with_timeout(
        Command::new("bash").args(["-c", WORKLOAD]).current_dir(mnt),
        Duration::from_secs(600),
    )
    .expect("workload");
    assert!(
        out.status.success(),
        "workload failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn antler_cluster() -> Cluster {
    let mut c = Cluster::builder().master_kind(MasterKind::Antler).start();
    c.add_chunkserver(CsKind::Real);
    c.add_chunkserver(CsKind::Antler);
    c.wait_chunkservers(2, Duration::from_secs(90));
    c
}

/// `mfsmetadump` output lines starting with `prefix`.
fn metadump_count(file: &Path, prefix: &str) -> usize {
    let out = Command::new(MFSMETADUMP)
        .arg(file)
        .output()
        .expect("mfsmetadump");
    assert!(
        out.status.success(),
        "mfsmetadump {} failed: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with(prefix))
        .count()
}

/// A clean stop and start: everything is there, the real mount carries on without a
/// remount (a file held open across the restart keeps being written), and the real
/// `mfsmetadump` reads the `metadata.mfs` our master wrote.
#[test]
fn restart_keeps_everything_and_the_mount_carries_on() {
    let _lock = cluster_lock();
    require_file(MFSMETADUMP, "moosefs-master");
    let mut c = antler_cluster();
    let mnt = c.mount();
    run_workload(&mnt);
    let mut held = fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(mnt.join("w/held"))
        .unwrap();
    held.write_all(b"before restart\n").unwrap();
    held.sync_all().unwrap();
    let before = tree_state(&mnt);

    c.stop_master();
    let meta = c.master_data_dir().join("metadata.mfs");
    assert!(meta.exists(), "no metadata.mfs after a clean stop");
    let nodes = metadump_count(&meta, "NODE|");
    let files = before.lines().filter(|l| l.starts_with("f ")).count();
    assert!(
        nodes > files,
        "mfsmetadump sees {nodes} nodes for {files} files"
    );
    assert!(metadump_count(&meta, "CHUNK|") >= 3);
    assert!(metadump_count(&meta, "EDGE|") >= files);
    assert!(metadump_count(&meta, "XATTR|") >= 1);
    c.start_master();

    // Same mount, same open file.
    held.write_all(b"after restart\n").unwrap();
    held.sync_all().unwrap();
    let after = tree_state(&mnt);
    // The held file grew, and with it the recursive sizes of `w` and the root.
    let strip = |s: &str| -> String {
        s.lines()
            .filter(|l| !l.contains("held") && !l.ends_with(" ./w") && !l.ends_with(" ."))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_same(&strip(&after), &strip(&before), "after a restart");
    fs::write(mnt.join("w/new-after-restart"), b"new").unwrap();
    let mut s = String::new();
    held.seek(SeekFrom::Start(0)).unwrap();
    held.read_to_string(&mut s).unwrap();
    assert_eq!(s, "before restart\nafter restart\n");
    drop(held);
    c.drop_caches();
    let mnt = c.remount();
    assert_eq!(
        fs::read_to_string(mnt.join("w/held")).unwrap(),
        "before restart\nafter restart\n"
    );
    c.assert_alive();
}

/// `kill -9` of the master in the middle of a write workload, then `mfsmaster -a`:
/// every file whose fsync returned before the kill is intact, the workload carries on
/// through the same mount, and the metadata version continues from where it was.
#[test]
fn kill_during_writes_and_recover_with_a() {
    let _lock = cluster_lock();
    let mut c = antler_cluster();
    let mnt = c.mount();
    fs::create_dir(mnt.join("load")).unwrap();
    let list = c.base_dir().join("synced.list");
    // Each file is written, fsynced (`sync FILE`), and only then listed with its sum.
    let script = format!(
        "set -u; i=0; while [ ! -e {stop} ]; do i=$((i+1)); f=load/f$i; head -c $(( (i % 7) * 300000 + 1000 )) /dev/urandom > $f && sync $f && md5sum $f >> {list}; done",
        stop = c.base_dir().join("stop").display(),
        list = list.display()
    );
    let mut load = Command::new("bash")
        .args(["-c", &script])
        .current_dir(&mnt)
        .spawn()
        .unwrap();
    let wait_lines = |n: usize| {
        let t = std::time::Instant::now();
        while fs::read_to_string(&list).map_or(0, |s| s.lines().count()) < n {
            assert!(t.elapsed() < Duration::from_secs(300), "workload stalled");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    wait_lines(40);
    let version_before = last_changelog_version(c.master_data_dir());
    c.kill_master();
    let synced_at_kill = fs::read_to_string(&list).unwrap().lines().count();
    std::thread::sleep(Duration::from_secs(2));
    c.start_master_recover();
    wait_lines(synced_at_kill + 20);
    fs::write(c.base_dir().join("stop"), b"").unwrap();
    let _ = load.wait();
    assert!(
        c.master_log().contains("recovered from"),
        "{}",
        c.master_log()
    );
    let version_after = last_changelog_version(c.master_data_dir());
    assert!(
        version_after > version_before,
        "version {version_after} after recovery, {version_before} before"
    );
    c.drop_caches();
    let mnt = c.remount();
    c.drop_caches();
    let out = Command::new("md5sum")
        .args(["-c", "--quiet"])
        .arg(&list)
        .current_dir(&mnt)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "files lost or damaged after kill -9 and -a: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    note(format!(
        "{synced_at_kill} files synced before the kill, {} in all; changelog version {version_before} -> {version_after}",
        fs::read_to_string(&list).unwrap().lines().count()
    ));
    c.assert_alive();
}

/// The highest version in the master's changelog files.
fn last_changelog_version(dir: &Path) -> u64 {
    let mut best = 0;
    for e in fs::read_dir(dir).unwrap().flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        if n.starts_with("changelog") {
            for l in fs::read_to_string(e.path()).unwrap_or_default().lines() {
                if let Some(v) = l.split(':').next().and_then(|v| v.parse::<u64>().ok()) {
                    best = best.max(v);
                }
            }
        }
    }
    best
}

/// A cluster run by the real master moves to Antler's: once from `metadata.mfs` after
/// a clean stop, once with `-a` from `metadata.mfs.back` plus `changelog.0.mfs` after a
/// `kill -9`. Listings, xattrs and checksums stay the same.
#[test]
fn real_master_metadata_and_changelogs_load() {
    let _lock = cluster_lock();
    let mut c = Cluster::builder().master_kind(MasterKind::Real).start();
    c.add_chunkserver(CsKind::Real);
    c.add_chunkserver(CsKind::Antler);
    c.wait_chunkservers(2, Duration::from_secs(90));
    let mnt = c.mount();
    run_workload(&mnt);

    // 1. Clean stop of the real master, plain start of ours on its metadata.mfs. The
    // reference is the real master after its own reload: a live real master can report
    // a root size that lags its children's (seen: 9 bytes), a reload recounts it.
    c.stop_master();
    c.start_master();
    let mnt = c.remount();
    let before = tree_state(&mnt);
    c.stop_master();
    c.set_master_kind(MasterKind::Antler);
    c.start_master();
    c.drop_caches();
    let mnt = c.remount();
    assert_same(
        &tree_state(&mnt),
        &before,
        "after loading the real master's metadata.mfs",
    );
    fs::write(mnt.join("w/by-antler"), b"written by antler").unwrap();
    // A write to a chunk the real master's snapshot shares: copied on write by ours.
    let data = mnt.join("w/snapC/data");
    let mut f = fs::OpenOptions::new().write(true).open(&data).unwrap();
    f.seek(SeekFrom::Start(100)).unwrap();
    f.write_all(b"copied on write by antler").unwrap();
    f.sync_all().unwrap();
    drop(f);
    assert_ne!(
        fs::read(&data).unwrap(),
        fs::read(mnt.join("w/c/data")).unwrap()
    );
    let with_ours = tree_state(&mnt);

    // 2. Back to the real master (it loads the metadata.mfs we wrote), more changes,
    // then a crash: ours recovers from metadata.mfs.back + changelog.0.mfs.
    c.stop_master();
    c.set_master_kind(MasterKind::Real);
    c.start_master();
    let mnt = c.remount();
    assert_same(
        &tree_state(&mnt),
        &with_ours,
        "real master loading our metadata.mfs",
    );
    run_with_timeout(
        Command::new("bash")
            .args([
                "-c",
                "set -e; mkdir w/late; for i in $(seq 1 50); do echo $i > w/late/x$i; done; mv w/late/x1 w/late/y1; rm w/late/x2; mfsmakesnapshot w/late/x4 w/late/snap4; mfsmakesnapshot w/snapC w/late/snapC2; python3 -c \"import os; os.setxattr('w/late/x3','user.late',b'1')\"; sync",
            ])
            .current_dir(&mnt),
        Duration::from_secs(120),
    )
    .unwrap();
    let late = tree_state(&mnt);
    std::thread::sleep(Duration::from_secs(2));
    c.kill_master();
    c.set_master_kind(MasterKind::Antler);
    c.start_master_recover();
    c.drop_caches();
    let mnt = c.remount();
    assert_same(
        &tree_state(&mnt),
        &late,
        "after -a on the real master's files",
    );
    c.assert_alive();
}

/// A corrupt line in the changelog stops `-a` with the file and line named, and
/// nothing is started.
#[test]
fn corrupt_changelog_line_stops_recovery() {
    let _lock = cluster_lock();
    let mut c = antler_cluster();
    let mnt = c.mount();
    for i in 0..20 {
        fs::write(mnt.join(format!("f{i}")), b"x").unwrap();
    }
    c.kill_master();
    let cl = c.master_data_dir().join("changelog.0.mfs");
    let text = fs::read_to_string(&cl).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    assert!(lines.len() > 10, "{text}");
    let bad = lines.len() / 2;
    lines[bad] = lines[bad].replace('(', "[");
    fs::write(&cl, lines.join("\n") + "\n").unwrap();
    let out = run_with_timeout(
        Command::new(antler_bin("mfsmaster"))
            .args(["-a", "-f", "-c"])
            .arg(c.master_cfg_path())
            .arg("start"),
        Duration::from_secs(60),
    )
    .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "started on a corrupt changelog: {err}"
    );
    let want = format!("changelog.0.mfs:{}", bad + 1);
    assert!(err.contains(&want), "error does not name {want}: {err}");
    assert!(!is_listening(c.master_client_port()));
    // Repaired, it recovers.
    fs::write(&cl, &text).unwrap();
    c.start_master_recover();
    let mnt = c.remount();
    assert_eq!(fs::read(mnt.join("f19")).unwrap(), b"x");
    c.assert_alive();
}

/// A real `mfsmetalogger` (Debian 3.0.117) started by a test; killed by PID on drop.
struct Metalogger {
    child: std::process::Child,
    dir: std::path::PathBuf,
    log: std::path::PathBuf,
}

impl Metalogger {
    fn start(base: &Path, master_ml_port: u16) -> Metalogger {
        let dir = base.join("metalogger");
        fs::create_dir_all(&dir).unwrap();
        let cfg = base.join("etc/mfsmetalogger.cfg");
        fs::write(
            &cfg,
            format!(
                "WORKING_USER = root\nWORKING_GROUP = root\nSYSLOG_IDENT = mfsmetalogger-test\nDATA_PATH = {}\nMASTER_HOST = 127.0.0.1\nMASTER_PORT = {master_ml_port}\nMASTER_RECONNECTION_DELAY = 1\n",
                dir.display()
            ),
        )
        .unwrap();
        let log = base.join("logs/metalogger.log");
        let out = fs::File::create(&log).unwrap();
        let child = Command::new("/usr/sbin/mfsmetalogger")
            .args(["-f", "-c"])
            .arg(&cfg)
            .arg("start")
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        Metalogger { child, dir, log }
    }
}

impl Drop for Metalogger {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A real metalogger follows our master (metadata download, then the live changelog);
/// the master's data directory is wiped; `-a` on the metalogger's files recovers
/// everything.
#[test]
fn real_metalogger_follows_and_restores_a_wiped_master() {
    let _lock = cluster_lock();
    require_file("/usr/sbin/mfsmetalogger", "moosefs-metalogger");
    let mut c = antler_cluster();
    let mut ml = Metalogger::start(c.base_dir(), c.master_ml_port());
    let mnt = c.mount();
    run_workload(&mnt);
    let want = tree_state(&mnt);
    let master_dir = c.master_data_dir().to_path_buf();
    let target = last_changelog_version(&master_dir);
    let t = std::time::Instant::now();
    while last_changelog_version(&ml.dir) < target {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "metalogger at version {} of {target}: {}",
            last_changelog_version(&ml.dir),
            fs::read_to_string(&ml.log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    note(format!(
        "metalogger caught up with version {target} after {:?}",
        t.elapsed()
    ));
    c.kill_master();
    let _ = ml.child.kill();
    let _ = ml.child.wait();
    for e in fs::read_dir(&master_dir).unwrap().flatten() {
        if e.path().is_file() {
            fs::remove_file(e.path()).unwrap();
        }
    }
    for e in fs::read_dir(&ml.dir).unwrap().flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        if n.starts_with("metadata_ml") || n.starts_with("changelog_ml") {
            fs::copy(e.path(), master_dir.join(&n)).unwrap();
        }
    }
    c.start_master_recover();
    c.drop_caches();
    let mnt = c.remount();
    assert_same(
        &tree_state(&mnt),
        &want,
        "after -a from the metalogger's files",
    );
    c.assert_alive();
}

/// `mfsmetarestore` offline: `-m META -o OUT CHANGELOG...` writes a file the real
/// `mfsmetadump` reads, and `-a -d DATA_PATH` turns a crashed master's directory back
/// into one a plain start accepts.
#[test]
fn mfsmetarestore_offline() {
    let _lock = cluster_lock();
    let mut c = antler_cluster();
    let mnt = c.mount();
    fs::create_dir(mnt.join("d")).unwrap();
    for i in 0..25 {
        fs::write(mnt.join(format!("d/f{i}")), format!("file {i}")).unwrap();
    }
    c.kill_master();
    let dir = c.master_data_dir().to_path_buf();
    let out = c.base_dir().join("restored.mfs");
    let r = run_with_timeout(
        Command::new(antler_bin("mfsmetarestore"))
            .arg("-m")
            .arg(dir.join("metadata.mfs.back"))
            .arg("-o")
            .arg(&out)
            .arg(dir.join("changelog.0.mfs")),
        Duration::from_secs(60),
    )
    .unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    // root, d and 25 files
    assert_eq!(metadump_count(&out, "NODE|"), 27);
    let r = run_with_timeout(
        Command::new(antler_bin("mfsmetarestore"))
            .args(["-a", "-d"])
            .arg(&dir),
        Duration::from_secs(60),
    )
    .unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    c.start_master();
    c.drop_caches();
    let mnt = c.remount();
    for i in 0..25 {
        assert_eq!(
            fs::read_to_string(mnt.join(format!("d/f{i}"))).unwrap(),
            format!("file {i}")
        );
    }
    c.assert_alive();
}

fn all_chunk_files(c: &Cluster) -> std::collections::BTreeSet<String> {
    (0..c.chunkserver_count())
        .flat_map(|i| c.chunk_files(i))
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect()
}

/// A file removed with a trash time waits in the trash with its chunks (a file with
/// trash time 0 loses them), survives a restart as a trash node, and its chunks stay.
#[test]
fn deleted_files_wait_in_the_trash_with_their_chunks() {
    let _lock = cluster_lock();
    require_file(MFSMETADUMP, "moosefs-master");
    let mut c = antler_cluster();
    let mnt = c.mount();
    fs::create_dir(mnt.join("keep")).unwrap();
    fs::create_dir(mnt.join("drop")).unwrap();
    run_tool(
        "/usr/bin/mfssettrashtime",
        [OsStr::new("3600"), mnt.join("keep").as_os_str()],
    );
    let before = all_chunk_files(&c);
    write_file_synced(&mnt.join("keep/a"), &pattern_bytes(3, 1 << 20));
    let with_a = all_chunk_files(&c);
    write_file_synced(&mnt.join("drop/b"), &pattern_bytes(4, 1 << 20));
    let with_b = all_chunk_files(&c);
    let a_files: Vec<String> = with_a.difference(&before).cloned().collect();
    let b_files: Vec<String> = with_b.difference(&with_a).cloned().collect();
    assert!(!a_files.is_empty() && !b_files.is_empty());
    fs::remove_file(mnt.join("keep/a")).unwrap();
    fs::remove_file(mnt.join("drop/b")).unwrap();
    // The mount may still hold both inodes (sustained files); its session's end lets go.
    let _mnt = c.remount();
    let t = std::time::Instant::now();
    while b_files.iter().any(|f| all_chunk_files(&c).contains(f)) {
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "b's chunks not deleted: {b_files:?} {:?}\n{}",
            all_chunk_files(&c),
            c.master_log()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    std::thread::sleep(Duration::from_secs(3));
    let now = all_chunk_files(&c);
    assert!(
        a_files.iter().all(|f| now.contains(f)),
        "a's chunks were deleted"
    );

    c.stop_master();
    let meta = c.master_data_dir().join("metadata.mfs");
    let out = Command::new(MFSMETADUMP).arg(&meta).output().unwrap();
    let dump = String::from_utf8_lossy(&out.stdout);
    assert!(dump.lines().any(|l| l.starts_with("NODE|k:T")), "{dump}");
    assert!(
        dump.lines()
            .any(|l| l.starts_with("EDGE|p:      NULL") && l.ends_with("n:keep/a")),
        "{dump}"
    );
    c.start_master();
    std::thread::sleep(Duration::from_secs(5));
    let now = all_chunk_files(&c);
    assert!(
        a_files.iter().all(|f| now.contains(f)),
        "a's chunks deleted after a restart"
    );
    c.assert_alive();
}

/// The names in a directory of a meta mount.
fn names(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// Whether a trash entry is listed in its bucket (a lookup by name alone also finds
/// sustained files: the meta mount looks entries up by the inode in their name).
fn listed(entry: &Path) -> bool {
    let name = entry.file_name().unwrap().to_string_lossy().into_owned();
    names(entry.parent().unwrap()).contains(&name)
}

/// The name a trash entry of `ino` with path `path` has on a meta mount.
fn trash_entry(meta: &Path, ino: u64, path: &str) -> std::path::PathBuf {
    meta.join(format!("trash/{:03X}", ino % 4096))
        .join(format!("{ino:08X}|{}", path.replace('/', "|")))
}

#[test]
fn meta_mount_undeletes_renames_and_purges() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let _lock = cluster_lock();
    let mut c = antler_cluster();
    let mnt = c.mount();
    fs::create_dir_all(mnt.join("d1/d2")).unwrap();
    run_tool(
        "/usr/bin/mfssettrashtime",
        [
            OsStr::new("-r"),
            OsStr::new("3600"),
            mnt.join("d1").as_os_str(),
        ],
    );
    let f_data = pattern_bytes(5, 3 << 20);
    let g_data = pattern_bytes(6, 100_000);
    let p_data = pattern_bytes(7, 1 << 20);
    write_file_synced(&mnt.join("d1/d2/f"), &f_data);
    write_file_synced(&mnt.join("d1/g"), &g_data);
    let before_p = all_chunk_files(&c);
    write_file_synced(&mnt.join("d1/p"), &p_data);
    let p_files: Vec<String> = all_chunk_files(&c).difference(&before_p).cloned().collect();
    assert!(!p_files.is_empty());
    let ino = |p: &str| fs::metadata(mnt.join(p)).unwrap().ino();
    let (f, g, p) = (ino("d1/d2/f"), ino("d1/g"), ino("d1/p"));
    // p is held open by this test while it is deleted and purged.
    let held = fs::File::open(mnt.join("d1/p")).unwrap();
    fs::remove_dir_all(mnt.join("d1")).unwrap();
    assert!(!mnt.join("d1").exists());

    let meta = c.meta_mount();
    let top = names(&meta);
    assert!(
        top.contains(&"trash".into()) && top.contains(&"sustained".into()),
        "{top:?}"
    );
    let trash = names(&meta.join("trash"));
    assert_eq!(trash.len(), 4097, "4096 buckets and undel");
    let f_entry = trash_entry(&meta, f, "d1/d2/f");
    let f_name = f_entry.file_name().unwrap().to_string_lossy().into_owned();
    assert!(listed(&f_entry), "{f_name} not listed");
    let md = fs::metadata(&f_entry).unwrap();
    assert_eq!((md.len(), md.nlink()), (f_data.len() as u64, 0));
    // The content of an entry is the path it is restored to.
    assert_eq!(fs::read_to_string(&f_entry).unwrap(), "d1/d2/f\n");

    // g goes back to another path (SETPATH), f to its own: the directories are made again.
    let g_entry = trash_entry(&meta, g, "d1/g");
    fs::write(&g_entry, "elsewhere/g2\n").unwrap();
    let g_entry = trash_entry(&meta, g, "elsewhere/g2");
    assert!(listed(&g_entry), "renamed entry not listed");
    fs::rename(&f_entry, meta.join("trash/undel").join(&f_name)).unwrap();
    let g_name = g_entry.file_name().unwrap().to_owned();
    fs::rename(&g_entry, meta.join("trash/undel").join(g_name)).unwrap();
    assert_eq!(fs::read(mnt.join("d1/d2/f")).unwrap(), f_data);
    assert_eq!(fs::read(mnt.join("elsewhere/g2")).unwrap(), g_data);
    assert_eq!(ino("d1/d2/f"), f);
    let d1 = fs::metadata(mnt.join("d1")).unwrap();
    assert_eq!((d1.permissions().mode() & 0o7777, d1.uid()), (0o755, 0));
    assert!(!f_entry.exists() && !listed(&f_entry));

    // Undel onto a name in use is refused and leaves the entry in the trash.
    fs::remove_file(mnt.join("elsewhere/g2")).unwrap();
    fs::write(mnt.join("elsewhere/g2"), b"new").unwrap();
    let g_entry = trash_entry(&meta, g, "elsewhere/g2");
    let e = fs::rename(&g_entry, meta.join("trash/undel/x")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EEXIST), "{e}");
    assert!(listed(&g_entry));

    // Purging an entry that is still open makes it sustained; its chunks go when it is
    // closed everywhere.
    let p_entry = trash_entry(&meta, p, "d1/p");
    fs::remove_file(&p_entry).unwrap();
    assert!(!listed(&p_entry));
    let sustained = names(&meta.join("sustained"));
    assert!(
        sustained.contains(&format!("{p:08X}|d1|p")),
        "{sustained:?}"
    );
    assert!(p_files.iter().all(|f| all_chunk_files(&c).contains(f)));
    drop(held);
    let mnt = c.remount();
    let t = std::time::Instant::now();
    while fs::read_dir(meta.join("sustained")).unwrap().count() > 0
        || p_files.iter().any(|f| all_chunk_files(&c).contains(f))
    {
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "p stays sustained or keeps its chunks\n{}",
            c.master_log()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // The purge of g's entry frees it at once (nothing holds it).
    fs::remove_file(&g_entry).unwrap();
    assert!(!listed(&g_entry));
    assert!(!g_entry.exists(), "g is neither in the trash nor sustained");

    // Everything above is journaled: after kill -9 and -a the state is the same.
    let want = tree_state(&mnt);
    c.umount();
    c.meta_umount();
    c.kill_master();
    c.start_master_recover();
    let mnt = c.mount();
    assert_same(&tree_state(&mnt), &want, "after -a");
    let live_chunks: Vec<String> = ["d1/d2/f", "elsewhere/g2"]
        .iter()
        .flat_map(|p| {
            let info = mfsfileinfo(&mnt.join(p));
            info.split("(id:")
                .skip(1)
                .filter_map(|t| t.split(' ').next().map(str::to_string))
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(live_chunks.len(), 2, "{live_chunks:?}");
    std::thread::sleep(Duration::from_secs(3));
    let mut log = String::new();
    for e in fs::read_dir(c.master_data_dir()).unwrap() {
        let e = e.unwrap();
        let n = e.file_name().to_string_lossy().into_owned();
        if n.starts_with("changelog") && n.ends_with(".mfs") {
            log += &fs::read_to_string(e.path()).unwrap();
        }
    }
    for op in [
        format!("|SETPATH({g},elsewhere/g2)"),
        format!("|UNDEL({f})"),
        format!("|PURGE({p})"),
        format!("|PURGE({g})"),
    ] {
        assert!(log.contains(&op), "no {op} in the changelog:\n{log}");
    }
    // The recovered master counted the chunks' files again, so its chunk loop forgets
    // none of the live ones (it did when replayed chunks kept a zero file count).
    for id in &live_chunks {
        assert!(
            !log.contains(&format!("|CHUNKDEL({id},")),
            "chunk {id} of a live file dropped:\n{log}"
        );
    }
    c.assert_alive();
}

/// Chunk ids of a file, in order (`mfsfileinfo`; holes left out).
fn chunk_ids(path: &Path) -> Vec<u64> {
    mfsfileinfo(path)
        .split("(id:")
        .skip(1)
        .filter_map(|t| t.split(' ').next().and_then(|n| n.parse().ok()))
        .collect()
}

/// Overwrites `data` at `offset` in an existing file and fsyncs it.
fn overwrite_synced(path: &Path, offset: u64, data: &[u8]) {
    let mut f = fs::OpenOptions::new().write(true).open(path).unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    f.write_all(data).unwrap();
    f.sync_all().unwrap();
}

#[test]
fn snapshots_share_chunks_until_written_and_appends_share_them_too() {
    let _lock = cluster_lock();
    let mut c = antler_cluster();
    let mnt = c.mount_direct();
    fs::create_dir_all(mnt.join("src/sub")).unwrap();
    // Two copies: one on the real chunkserver, one on Antler's; both duplicate.
    mfssetgoal(2, &mnt.join("src"), true);
    let a_old = pattern_bytes(11, 3 << 20);
    let big_old = pattern_bytes(12, 70 << 20);
    write_file_synced(&mnt.join("src/a"), &a_old);
    write_file_synced(&mnt.join("src/big"), &big_old);
    write_file_synced(&mnt.join("src/sub/c"), b"small");
    std::os::unix::fs::symlink("a", mnt.join("src/link")).unwrap();
    let files_before = all_chunk_files(&c);

    run_tool(
        "/usr/bin/mfsmakesnapshot",
        [mnt.join("src").as_os_str(), mnt.join("snap").as_os_str()],
    );
    assert_eq!(fs::read(mnt.join("snap/a")).unwrap(), a_old);
    assert_eq!(fs::read(mnt.join("snap/sub/c")).unwrap(), b"small");
    assert_eq!(
        fs::read_link(mnt.join("snap/link")).unwrap(),
        Path::new("a")
    );
    let a_ids = chunk_ids(&mnt.join("src/a"));
    assert_eq!(a_ids.len(), 1);
    assert_eq!(
        chunk_ids(&mnt.join("snap/a")),
        a_ids,
        "the snapshot shares a's chunk"
    );
    assert_eq!(
        chunk_ids(&mnt.join("snap/big")),
        chunk_ids(&mnt.join("src/big"))
    );
    assert_eq!(
        all_chunk_files(&c),
        files_before,
        "a snapshot copies no data"
    );

    // A write to the source copies the chunk first; the snapshot keeps the old bytes.
    let patch = pattern_bytes(13, 4096);
    overwrite_synced(&mnt.join("src/a"), 1 << 20, &patch);
    let mut a_new = a_old.clone();
    a_new[1 << 20..(1 << 20) + 4096].copy_from_slice(&patch);
    assert_eq!(fs::read(mnt.join("src/a")).unwrap(), a_new);
    assert_eq!(fs::read(mnt.join("snap/a")).unwrap(), a_old);
    let a_new_ids = chunk_ids(&mnt.join("src/a"));
    assert_ne!(a_new_ids, a_ids, "the written file got its own chunk");
    assert_eq!(chunk_ids(&mnt.join("snap/a")), a_ids);
    let check = mfscheckfile(&mnt.join("src/a"));
    assert!(check.contains("2 copies"), "{check}");

    // Truncating inside a shared chunk copies it truncated (DUPTRUNC).
    let cut = (64 << 20) + 1000;
    fs::OpenOptions::new()
        .write(true)
        .open(mnt.join("snap/big"))
        .unwrap()
        .set_len(cut as u64)
        .unwrap();
    assert_eq!(fs::read(mnt.join("snap/big")).unwrap(), &big_old[..cut]);
    assert_eq!(fs::read(mnt.join("src/big")).unwrap(), big_old);
    let (sb, bb) = (
        chunk_ids(&mnt.join("snap/big")),
        chunk_ids(&mnt.join("src/big")),
    );
    assert_eq!(sb[0], bb[0], "the untouched first chunk stays shared");
    assert_ne!(sb[1], bb[1]);

    // mfsappendchunks: whole chunks of a and of the snapshot's a, shared.
    run_tool(
        "/usr/bin/mfsappendchunks",
        [
            mnt.join("joined").as_os_str(),
            mnt.join("src/a").as_os_str(),
            mnt.join("snap/a").as_os_str(),
        ],
    );
    let joined = fs::read(mnt.join("joined")).unwrap();
    assert_eq!(joined.len(), (64 << 20) + a_old.len());
    assert_eq!(&joined[..a_new.len()], &a_new[..]);
    assert!(joined[a_new.len()..64 << 20].iter().all(|&b| b == 0));
    assert_eq!(&joined[64 << 20..], &a_old[..]);
    assert_eq!(chunk_ids(&mnt.join("joined")), [a_new_ids[0], a_ids[0]]);
    // Writing the joined file leaves both sources alone.
    overwrite_synced(&mnt.join("joined"), 10, b"JOINED");
    assert_eq!(fs::read(mnt.join("src/a")).unwrap(), a_new);
    assert_eq!(fs::read(mnt.join("snap/a")).unwrap(), a_old);

    // Everything is journaled: kill -9 and -a give the same tree, and no chunk of a
    // live file is dropped.
    let want = tree_state(&mnt);
    c.umount();
    c.kill_master();
    c.start_master_recover();
    let mnt = c.mount();
    assert_same(&tree_state(&mnt), &want, "after -a");
    let mut log = String::new();
    for e in fs::read_dir(c.master_data_dir()).unwrap() {
        let n = e.unwrap().file_name().to_string_lossy().into_owned();
        if n.starts_with("changelog") && n.ends_with(".mfs") {
            log += &fs::read_to_string(c.master_data_dir().join(n)).unwrap();
        }
    }
    assert!(
        log.contains("|SNAPSHOT(") && log.contains("|APPEND("),
        "{log}"
    );
    for p in ["src/a", "snap/a", "src/big", "snap/big", "joined"] {
        for id in chunk_ids(&mnt.join(p)) {
            assert!(
                !log.contains(&format!("|CHUNKDEL({id},")),
                "chunk {id} of {p} dropped:\n{log}"
            );
        }
    }
    c.assert_alive();
}
