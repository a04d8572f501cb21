//! Two `ha-agent` processes (and keepalived) on a bridge LAN built from network
//! namespaces: n1 192.0.2.1, n2 192.0.2.2, client c1 192.0.2.50, VIP 192.0.2.100.
//! Every test builds its own namespaces and removes them, and stops only the processes
//! it started, by PID.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

const VIP: &str = "192.0.2.100";

fn sh(args: &[&str]) -> String {
    let o = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn sh_ok(args: &[&str]) -> bool {
    Command::new(args[0])
        .args(&args[1..])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The LAN: a bridge namespace and three hosts.
struct Lan {
    prefix: String,
    dir: tempfile::TempDir,
    procs: Vec<(String, Child)>,
}

static SEQ: AtomicU32 = AtomicU32::new(0);

impl Lan {
    fn new() -> Lan {
        let prefix = format!(
            "hat{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let lan = Lan {
            prefix,
            dir: tempfile::Builder::new()
                .prefix("antler-ha-")
                .tempdir()
                .unwrap(),
            procs: Vec::new(),
        };
        let br = lan.ns("lan");
        sh(&["ip", "netns", "add", &br]);
        sh(&[
            "ip",
            "-n",
            &br,
            "link",
            "add",
            "br0",
            "type",
            "bridge",
            "stp_state",
            "0",
            "forward_delay",
            "0",
        ]);
        sh(&[
            "ip",
            "-n",
            &br,
            "link",
            "set",
            "br0",
            "type",
            "bridge",
            "mcast_snooping",
            "0",
        ]);
        sh(&["ip", "-n", &br, "link", "set", "br0", "up"]);
        for (host, addr, mac) in [
            ("n1", "192.0.2.1/24", "02:00:00:00:00:01"),
            ("n2", "192.0.2.2/24", "02:00:00:00:00:02"),
            ("c1", "192.0.2.50/24", "02:00:00:00:00:50"),
        ] {
            let ns = lan.ns(host);
            sh(&["ip", "netns", "add", &ns]);
            let port = format!("v{host}");
            sh(&[
                "ip", "-n", &br, "link", "add", &port, "type", "veth", "peer", "name", "eth0",
                "netns", &ns,
            ]);
            sh(&["ip", "-n", &br, "link", "set", &port, "master", "br0", "up"]);
            sh(&["ip", "-n", &ns, "link", "set", "eth0", "address", mac]);
            sh(&["ip", "-n", &ns, "addr", "add", addr, "dev", "eth0"]);
            sh(&["ip", "-n", &ns, "link", "set", "eth0", "up"]);
            sh(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
        }
        lan
    }

    fn ns(&self, host: &str) -> String {
        format!("{}-{host}", self.prefix)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Does `host` hold the VIP?
    fn has_vip(&self, host: &str) -> bool {
        sh(&[
            "ip",
            "-n",
            &self.ns(host),
            "-4",
            "addr",
            "show",
            "dev",
            "eth0",
        ])
        .contains(&format!("{VIP}/"))
    }

    /// The MAC the client resolves the VIP to after a ping (None if no answer).
    fn client_sees(&self) -> Option<String> {
        let c1 = self.ns("c1");
        if !sh_ok(&[
            "ip", "netns", "exec", &c1, "ping", "-n", "-q", "-c", "1", "-W", "1", VIP,
        ]) {
            return None;
        }
        let n = sh(&["ip", "-n", &c1, "neigh", "show", VIP]);
        n.split_whitespace()
            .skip_while(|w| *w != "lladdr")
            .nth(1)
            .map(str::to_string)
    }

    fn wait(&self, what: &str, timeout: Duration, mut f: impl FnMut() -> bool) -> Duration {
        let t = Instant::now();
        while t.elapsed() < timeout {
            if f() {
                return t.elapsed();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "timed out after {timeout:?} waiting for {what}\n{}",
            self.logs()
        );
    }

    fn logs(&self) -> String {
        let mut s = String::new();
        for (name, _) in &self.procs {
            let p = self.path(&format!("{name}.log"));
            let text = fs::read_to_string(&p).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(40).collect();
            s += &format!(
                "--- {name} log (last lines) ---\n{}\n",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        s
    }

    /// Starts a process inside `host`'s namespace; output goes to `<name>.log`.
    fn spawn(&mut self, name: &str, host: &str, argv: &[&str]) {
        let log = fs::File::create(self.path(&format!("{name}.log"))).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns(host)])
            .args(argv)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.procs.push((name.to_string(), child));
    }

    fn pid(&self, name: &str) -> u32 {
        self.procs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, c)| c.id())
            .unwrap()
    }

    fn signal(&mut self, name: &str, sig: i32) {
        let i = self.procs.iter().position(|(n, _)| n == name).unwrap();
        let (_, mut c) = self.procs.remove(i);
        // SAFETY: signalling a child process this test started, by its PID.
        unsafe { libc::kill(c.id() as i32, sig) };
        let _ = c.wait();
    }

    /// Writes an ha-agent config for `host` and starts it.
    fn start_agent(&mut self, host: &str, priority: u8, extra: &str) {
        let cfg = self.path(&format!("{host}.toml"));
        let notify = self.path(&format!("{host}-notify.log"));
        fs::write(
            &cfg,
            format!(
                "[global]\nrouter_id = \"{host}\"\n[[vrrp_instance]]\nname = \"VI_1\"\ninterface = \"eth0\"\nvirtual_router_id = 51\npriority = {priority}\nvirtual_ipaddress = [\"{VIP}/24\"]\nnotify = \"echo >> {} \"\n{extra}\n",
                notify.display()
            ),
        )
        .unwrap();
        let sock = self.path(&format!("{host}.sock"));
        let bin = env!("CARGO_BIN_EXE_ha-agent");
        self.spawn(
            host,
            host,
            &[
                bin,
                "-c",
                cfg.to_str().unwrap(),
                "--socket",
                sock.to_str().unwrap(),
            ],
        );
    }

    fn ctl(&self, host: &str, args: &[&str]) -> (bool, String) {
        let sock = self.path(&format!("{host}.sock"));
        let o = Command::new(env!("CARGO_BIN_EXE_ha-agent"))
            .arg("--socket")
            .arg(&sock)
            .args(args)
            .output()
            .unwrap();
        (
            o.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
        )
    }

    fn notify_log(&self, host: &str) -> String {
        fs::read_to_string(self.path(&format!("{host}-notify.log"))).unwrap_or_default()
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
        for (_, c) in &mut self.procs {
            // SAFETY: signalling a child process this test started, by its PID.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        }
        for (_, c) in &mut self.procs {
            for _ in 0..50 {
                if c.try_wait().ok().flatten().is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        for host in ["n1", "n2", "c1", "lan"] {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.ns(host)])
                .status();
        }
    }
}

const N1_MAC: &str = "02:00:00:00:00:01";
const N2_MAC: &str = "02:00:00:00:00:02";
const LONG: Duration = Duration::from_secs(30);

fn exactly_one(lan: &Lan) -> Option<&'static str> {
    match (lan.has_vip("n1"), lan.has_vip("n2")) {
        (true, false) => Some("n1"),
        (false, true) => Some("n2"),
        _ => None,
    }
}

#[test]
fn election_kill9_graceful_stop_and_preemption() {
    let mut lan = Lan::new();
    lan.start_agent("n1", 150, "auth_pass = \"s3cr3t\"");
    lan.start_agent("n2", 100, "auth_pass = \"s3cr3t\"");
    lan.wait("n1 to be the only VIP owner", LONG, || {
        exactly_one(&lan) == Some("n1")
    });
    lan.wait("client to answer from n1's MAC", LONG, || {
        lan.client_sees().as_deref() == Some(N1_MAC)
    });

    // kill -9: the backup takes over after Master_Down_Interval (3 s + skew 0.61 s).
    lan.signal("n1", libc::SIGKILL);
    let t = lan.wait("n2 to take the VIP after kill -9", LONG, || {
        lan.has_vip("n2")
    });
    eprintln!("kill -9 -> n2 has the VIP after {t:?}");
    // n1's kernel still has the VIP (nobody cleaned up), but the client follows n2's GARP.
    lan.wait("client to answer from n2's MAC", LONG, || {
        lan.client_sees().as_deref() == Some(N2_MAC)
    });

    // n1 returns: the leftover VIP is removed at start, then it preempts (priority 150).
    lan.start_agent("n1", 150, "auth_pass = \"s3cr3t\"");
    lan.wait("n1 to preempt", LONG, || exactly_one(&lan) == Some("n1"));
    lan.wait("client to answer from n1's MAC", LONG, || {
        lan.client_sees().as_deref() == Some(N1_MAC)
    });

    // Graceful stop: priority-0 advert, takeover after skew only.
    let t0 = Instant::now();
    lan.signal("n1", libc::SIGTERM);
    lan.wait("n2 to take over after n1's graceful stop", LONG, || {
        exactly_one(&lan) == Some("n2")
    });
    eprintln!("graceful stop -> n2 master after {:?}", t0.elapsed());
    assert!(
        lan.notify_log("n1").contains("INSTANCE VI_1 STOP 150"),
        "{}",
        lan.notify_log("n1")
    );
    assert!(
        lan.notify_log("n2").contains("INSTANCE VI_1 MASTER 100"),
        "{}",
        lan.notify_log("n2")
    );
}

#[test]
fn nopreempt_keeps_the_vip_where_it_is() {
    let mut lan = Lan::new();
    lan.start_agent("n2", 100, "");
    lan.wait("n2 master", LONG, || exactly_one(&lan) == Some("n2"));
    lan.start_agent("n1", 150, "nopreempt = true");
    std::thread::sleep(Duration::from_secs(8));
    assert_eq!(
        exactly_one(&lan),
        Some("n2"),
        "n1 preempted despite nopreempt"
    );
    lan.signal("n2", libc::SIGTERM);
    lan.wait("n1 to take over when n2 leaves", LONG, || {
        exactly_one(&lan) == Some("n1")
    });
}

#[test]
fn switchover_moves_the_vip_and_back_and_refuses_without_peer() {
    let mut lan = Lan::new();
    lan.start_agent("n1", 150, "");
    lan.wait("n1 master", LONG, || exactly_one(&lan) == Some("n1"));
    // No peer yet: refused with a reason, n1 stays master.
    let (ok, out) = lan.ctl("n1", &["switchover", "VI_1"]);
    assert!(!ok && out.contains("no peer heard"), "{out}");
    assert_eq!(exactly_one(&lan), Some("n1"));

    lan.start_agent("n2", 100, "");
    std::thread::sleep(Duration::from_secs(3)); // n2 is BACKUP and sends hellos
    let (ok, out) = lan.ctl("n1", &["switchover", "VI_1"]);
    assert!(ok, "{out}");
    assert!(out.contains("MASTER moved to 192.0.2.2"), "{out}");
    lan.wait("n2 to own the VIP alone", LONG, || {
        exactly_one(&lan) == Some("n2")
    });
    lan.wait("client to answer from n2's MAC", LONG, || {
        lan.client_sees().as_deref() == Some(N2_MAC)
    });
    // n1 (priority 150) does not preempt back after a switchover...
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(
        exactly_one(&lan),
        Some("n2"),
        "n1 took the VIP back on its own"
    );
    // ...until the operator switches back.
    let (ok, out) = lan.ctl("n2", &["switchover", "VI_1"]);
    assert!(ok, "{out}");
    lan.wait("n1 to own the VIP again", LONG, || {
        exactly_one(&lan) == Some("n1")
    });
    let (_, status) = lan.ctl("n1", &["status"]);
    assert!(status.contains("MASTER"), "{status}");
    let (_, n2) = lan.ctl("n2", &["status", "--json"]);
    assert!(n2.contains("operator switchover"), "{n2}");
}

#[test]
fn bad_adverts_are_counted_and_ignored() {
    let mut lan = Lan::new();
    lan.start_agent("n1", 100, "auth_pass = \"right\"");
    lan.wait("n1 master", LONG, || lan.has_vip("n1"));
    // n2 speaks with the wrong password and a higher priority: it must not win.
    lan.start_agent("n2", 200, "auth_pass = \"wrong\"");
    std::thread::sleep(Duration::from_secs(6));
    assert!(lan.has_vip("n1"));
    let (_, status) = lan.ctl("n1", &["status", "--json"]);
    assert!(status.contains("BadAuth"), "{status}");
    let _ = lan.pid("n2");
}

#[test]
fn check_config_names_file_line_and_key() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("bad.toml");
    fs::write(&p, "[global]\nrouter_id = \"x\"\n[[vrrp_instance]]\nname = \"VI\"\ninterface = \"eth0\"\nvirtual_router_id = 51\npriorty = 100\nvirtual_ipaddress = [\"192.0.2.100/24\"]\n").unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_ha-agent"))
        .args(["check-config"])
        .arg(&p)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains(&format!("{}:7:", p.display())) && err.contains("priorty"),
        "{err}"
    );
    let _ = Path::new("/");
}
