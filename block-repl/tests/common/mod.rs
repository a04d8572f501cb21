//! Two block-repl nodes for tests: either in two network namespaces joined by a veth
//! pair (198.51.100.1 and .2), or on loopback. Everything the fixture creates (daemons,
//! ext4 mounts, loop devices, namespaces, files) is removed on drop, also on failure.
#![allow(dead_code)]

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Tests share loop devices and 2 CPUs: one pair at a time.
static SERIAL: Mutex<()> = Mutex::new(());
static SEQ: AtomicU32 = AtomicU32::new(0);

/// The block-repl binary.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_block-repl")
}

/// Runs a command, returns its output.
pub fn run(args: &[&str]) -> Output {
    Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

/// Runs a command that must succeed; returns stdout.
pub fn ok(args: &[&str]) -> String {
    let o = run(args);
    assert!(
        o.status.success(),
        "{args:?} failed: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Polls `f` until true; panics with `what` after `timeout`.
pub fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(
            t.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Options of a pair.
pub struct Opts {
    /// Network namespaces (else loopback).
    pub netns: bool,
    /// Device size in MiB (the image gets room for the metadata on top).
    pub mib: u64,
    /// Extra `[net]` lines.
    pub net: String,
    /// Extra `[disk]` lines.
    pub disk: String,
    /// Protocol.
    pub protocol: &'static str,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            netns: true,
            mib: 256,
            net: String::new(),
            disk: String::new(),
            protocol: "C",
        }
    }
}

/// A pair of nodes.
pub struct Pair {
    _serial: MutexGuard<'static, ()>,
    /// Scratch directory.
    pub dir: PathBuf,
    /// Namespace names (empty on loopback).
    pub ns: [String; 2],
    /// Node names.
    pub names: [&'static str; 2],
    mounts: Mutex<Vec<PathBuf>>,
    loops: Mutex<Vec<(usize, PathBuf)>>,
    /// Config file.
    pub cfg: PathBuf,
}

impl Pair {
    /// Builds the network and the configuration, and creates the metadata on both disks.
    pub fn new(o: Opts) -> Pair {
        let serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
        let id = format!(
            "{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let dir = std::env::temp_dir().join(format!("brp-test-{id}"));
        std::fs::create_dir_all(&dir).unwrap();
        let names = ["node1", "node2"];
        let ns = if o.netns {
            [format!("brp{id}a"), format!("brp{id}b")]
        } else {
            [String::new(), String::new()]
        };
        let mut p = Pair {
            _serial: serial,
            dir: dir.clone(),
            ns: ns.clone(),
            names,
            mounts: Mutex::new(Vec::new()),
            loops: Mutex::new(Vec::new()),
            cfg: dir.join("r.toml"),
        };
        let addrs = if o.netns {
            let (va, vb) = (
                format!("vb{}a", &id[..id.len().min(8)]),
                format!("vb{}b", &id[..id.len().min(8)]),
            );
            ok(&["ip", "netns", "add", &ns[0]]);
            ok(&["ip", "netns", "add", &ns[1]]);
            ok(&[
                "ip", "link", "add", &va, "netns", &ns[0], "type", "veth", "peer", "name", &vb,
                "netns", &ns[1],
            ]);
            for (n, v, a) in [
                (&ns[0], &va, "198.51.100.1/24"),
                (&ns[1], &vb, "198.51.100.2/24"),
            ] {
                ok(&["ip", "-n", n, "addr", "add", a, "dev", v]);
                ok(&["ip", "-n", n, "link", "set", v, "up"]);
                ok(&["ip", "-n", n, "link", "set", "lo", "up"]);
            }
            [
                "198.51.100.1:7789".to_string(),
                "198.51.100.2:7789".to_string(),
            ]
        } else {
            let base = 20000
                + (std::process::id() % 20000) as u16
                + 2 * SEQ.load(Ordering::Relaxed) as u16;
            [
                format!("127.0.0.1:{base}"),
                format!("127.0.0.1:{}", base + 1),
            ]
        };
        let mut text = format!(
            "[resource]\nname = \"r0\"\nprotocol = \"{}\"\nshared_secret = \"t3st-secret\"\n",
            o.protocol
        );
        for (i, n) in names.iter().enumerate() {
            let img = dir.join(format!("{n}.img"));
            std::fs::File::create(&img)
                .unwrap()
                .set_len((o.mib << 20) + (4 << 20))
                .unwrap();
            text += &format!(
                "[[node]]\nname = \"{n}\"\naddress = \"{}\"\ndisk = \"{}\"\nmeta_disk = \"internal\"\ndevice = \"{}\"\nrun_dir = \"{}\"\n",
                addrs[i],
                img.display(),
                dir.join(format!("dev-{n}")).display(),
                dir.join(format!("run-{n}")).display()
            );
        }
        text += &format!("[net]\ntimeout = 2.0\n{}\n", o.net);
        let stall = if o.disk.contains("stall_timeout") {
            ""
        } else {
            "stall_timeout = 20.0\n"
        };
        text += &format!("[disk]\n{stall}{}\n", o.disk);
        text += &format!(
            "[handlers]\nfence_peer = \"echo fenced $BLOCK_REPL_PEER >> {d}/fence.log; exit 5\"\nsplit_brain = \"echo split $BLOCK_REPL_NODE $BLOCK_REPL_PEER >> {d}/split.log\"\n",
            d = dir.display()
        );
        std::fs::write(&p.cfg, text).unwrap();
        for i in 0..2 {
            p.cli(i, &["create-md"]);
        }
        p.ns = ns;
        p
    }

    /// `block-repl -c CFG --node NAME args...` (inside the node's namespace).
    pub fn cli_raw(&self, i: usize, args: &[&str]) -> Output {
        let cfg = self.cfg.to_str().unwrap();
        let mut argv: Vec<&str> = Vec::new();
        if !self.ns[i].is_empty() {
            argv.extend(["ip", "netns", "exec", &self.ns[i]]);
        }
        argv.extend([bin(), "-c", cfg, "--node", self.names[i]]);
        argv.extend(args);
        run(&argv)
    }

    /// Like [`Pair::cli_raw`], must succeed; returns stdout.
    pub fn cli(&self, i: usize, args: &[&str]) -> String {
        let o = self.cli_raw(i, args);
        if args.first() == Some(&"primary") && o.status.success() {
            self.note_loop(i);
        }
        assert!(
            o.status.success(),
            "{} {args:?} failed: {}{}\nlog:\n{}",
            self.names[i],
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr),
            self.log(i)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Starts node `i`'s daemon.
    pub fn up(&self, i: usize) {
        self.cli(i, &["up"]);
    }

    /// The daemon log.
    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(self.dir.join(format!("run-{}/r0.log", self.names[i])))
            .unwrap_or_default()
    }

    /// The daemon's pid (None when not running).
    pub fn pid(&self, i: usize) -> Option<i32> {
        let p: i32 =
            std::fs::read_to_string(self.dir.join(format!("run-{}/r0.pid", self.names[i])))
                .ok()?
                .trim()
                .parse()
                .ok()?;
        let cmd = std::fs::read(format!("/proc/{p}/cmdline")).ok()?;
        String::from_utf8_lossy(&cmd)
            .contains("block-repl")
            .then_some(p)
    }

    /// kill -9 of node `i`'s daemon; waits until it is gone.
    pub fn kill9(&self, i: usize) {
        let p = self.pid(i).expect("daemon running");
        // SAFETY: signalling a process we started.
        unsafe { libc::kill(p, libc::SIGKILL) };
        wait_for("daemon exit", Duration::from_secs(20), || {
            !Path::new(&format!("/proc/{p}")).exists()
                || std::fs::read_to_string(format!("/proc/{p}/stat"))
                    .map(|s| s.contains(") Z "))
                    .unwrap_or(true)
        });
        let _ = std::fs::remove_file(self.dir.join(format!("run-{}/r0.pid", self.names[i])));
    }

    /// Status as JSON.
    pub fn status(&self, i: usize) -> Value {
        let o = self.cli_raw(i, &["status", "--json"]);
        serde_json::from_slice(&o.stdout).unwrap_or(Value::Null)
    }

    /// Waits until node `i`'s connection state is `cs`.
    pub fn wait_cstate(&self, i: usize, cs: &str, timeout: Duration) {
        wait_for(&format!("{} {cs}", self.names[i]), timeout, || {
            self.status(i)["cstate"] == cs
        });
    }

    /// Node `i`'s device link.
    pub fn dev(&self, i: usize) -> PathBuf {
        self.dir.join(format!("dev-{}", self.names[i]))
    }

    /// Mounts node `i`'s device at a fresh directory (remembered for cleanup).
    pub fn mount(&self, i: usize, tag: &str) -> PathBuf {
        let m = self.dir.join(format!("mnt-{}-{tag}", self.names[i]));
        std::fs::create_dir_all(&m).unwrap();
        ok(&["mount", self.dev(i).to_str().unwrap(), m.to_str().unwrap()]);
        self.mounts.lock().unwrap().push(m.clone());
        m
    }

    /// Unmounts.
    pub fn umount(&self, m: &Path) {
        ok(&["umount", m.to_str().unwrap()]);
        self.mounts.lock().unwrap().retain(|x| x != m);
    }

    /// Records node `i`'s loop device after a promotion (for cleanup).
    pub fn note_loop(&self, i: usize) {
        if let Ok(l) = std::fs::read_link(self.dev(i)) {
            self.loops.lock().unwrap().push((i, l));
        }
    }

    /// Detaches the loop devices node `i` had (a killed daemon leaves its loop device
    /// attached to the dead FUSE file).
    pub fn detach_stale_loops(&self, i: usize) {
        let mut loops = self.loops.lock().unwrap();
        for (_, l) in loops.iter().filter(|(n, _)| *n == i) {
            let name = l.file_name().unwrap().to_str().unwrap();
            let bf = std::fs::read_to_string(format!("/sys/block/{name}/loop/backing_file"))
                .unwrap_or_default();
            // Still ours: the FUSE file of this pair (or of a dead, invisible mount).
            if bf.trim_end().ends_with("/disk") {
                let _ = run(&["losetup", "-d", l.to_str().unwrap()]);
            }
        }
        loops.retain(|(n, _)| *n != i);
    }

    /// Cuts (or restores) the replication link.
    pub fn link(&self, up: bool) {
        let out = ok(&[
            "ip",
            "-n",
            &self.ns[0],
            "-o",
            "link",
            "show",
            "type",
            "veth",
        ]);
        let name = out
            .split(':')
            .nth(1)
            .unwrap()
            .trim()
            .split('@')
            .next()
            .unwrap()
            .to_string();
        ok(&[
            "ip",
            "-n",
            &self.ns[0],
            "link",
            "set",
            &name,
            if up { "up" } else { "down" },
        ]);
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        for m in self.mounts.lock().unwrap().drain(..).rev() {
            let _ = run(&["umount", "-l", m.to_str().unwrap()]);
        }
        for i in 0..2 {
            if let Some(p) = self.pid(i) {
                // SAFETY: signalling a process we started.
                unsafe { libc::kill(p, libc::SIGKILL) };
            }
        }
        std::thread::sleep(Duration::from_millis(300));
        self.detach_stale_loops(0);
        self.detach_stale_loops(1);
        for n in &self.ns {
            if !n.is_empty() {
                let _ = run(&["ip", "netns", "del", n]);
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Writes `n` files of `size` random bytes with an fsync each; returns (name, content).
pub fn write_files(dir: &Path, prefix: &str, n: usize, size: usize) -> Vec<(PathBuf, Vec<u8>)> {
    use std::io::Write;
    (0..n)
        .map(|i| {
            let p = dir.join(format!("{prefix}{i}"));
            let data: Vec<u8> = (0..size).map(|_| rand::random::<u8>()).collect();
            let mut f = std::fs::File::create(&p).unwrap();
            f.write_all(&data).unwrap();
            f.sync_all().unwrap();
            (p, data)
        })
        .collect()
}
