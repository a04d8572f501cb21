//! ha-agent and a real keepalived (2.2.7, `/usr/sbin/keepalived`) in one VRRP group on
//! the netns LAN of `common` (n1 192.0.2.1, n2 192.0.2.2, client c1; VIP 192.0.2.100;
//! or its IPv6 twin: n1 2001:db8:0:1::1, n2 ::2, c1 ::50, VIP 2001:db8:0:1::100/64).
//!
//! Election, kill -9 / SIGTERM takeovers and preemption in both directions for VRRPv2
//! with PASS authentication (advert_int 1), VRRPv3 at advert_int 0.1, and VRRPv3 over
//! IPv6 (advert_int 1); keepalived's IPv6 adverts and neighbour advertisements byte for
//! byte against ours; nopreempt; and a
//! wrong password on either side. keepalived runs as in `keepalived-ref/run.sh`:
//! `keepalived -n -l -D -P -G -f CONF -p .. -r .. -c .. -b ..` with its own pid files in
//! the test's temp dir. It is started through `Lan::spawn` (so the fixture tracks and
//! reaps it); `Rig`'s Drop also stops the VRRP child, by PID, SIGTERM then SIGKILL.
//! Timings are printed, never asserted.

mod common;
use common::*;
use std::fs;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::time::{Duration, Instant};

const PASS: &str = "s3cr3t";

fn keepalived_bin() -> &'static str {
    if std::path::Path::new("/usr/sbin/keepalived").exists() {
        "/usr/sbin/keepalived"
    } else {
        "keepalived"
    }
}

/// VRRP settings shared by both daemons of a test.
#[derive(Clone, Copy)]
struct Proto {
    version: u8,
    /// Seconds.
    advert_int: f64,
    /// v2 PASS password (None for v3).
    auth: Option<&'static str>,
    /// VRRPv3 over IPv6 (the IPv6 LAN and VIP).
    v6: bool,
}

const V2: Proto = Proto {
    version: 2,
    advert_int: 1.0,
    auth: Some(PASS),
    v6: false,
};
const V3: Proto = Proto {
    version: 3,
    advert_int: 0.1,
    auth: None,
    v6: false,
};
const V3_IPV6: Proto = Proto {
    version: 3,
    advert_int: 1.0,
    auth: None,
    v6: true,
};

impl Proto {
    /// The extra ha-agent TOML lines for `Lan::start_agent`.
    fn agent(&self, auth: Option<&str>, nopreempt: bool) -> String {
        let mut s = format!(
            "version = {}\nadvert_int = {}\n",
            self.version, self.advert_int
        );
        if let Some(p) = auth {
            s += &format!("auth_pass = \"{p}\"\n");
        }
        if nopreempt {
            s += "state = \"BACKUP\"\nnopreempt = true\n";
        }
        s
    }

    /// A keepalived.conf like the baseline's (keepalived-ref/run.sh `mkconf`), always
    /// `state BACKUP`. For v3 no checksum option is set, so keepalived uses its default:
    /// the RFC 5798 checksum over the IPv4 pseudo-header (checked by
    /// `keepalived_v3_adverts_use_the_pseudo_header_checksum`).
    fn keepalived(&self, host: &str, priority: u8, auth: Option<&str>, nopreempt: bool) -> String {
        let auth = match (self.version, auth) {
            (2, Some(p)) => format!(
                "    authentication {{\n        auth_type PASS\n        auth_pass {p}\n    }}\n"
            ),
            _ => String::new(),
        };
        format!(
            "global_defs {{\n    router_id ka-{host}\n    enable_script_security\n    script_user root\n    vrrp_version {}\n}}\n\
             vrrp_instance VI_1 {{\n    state BACKUP\n    interface eth0\n    virtual_router_id 51\n    priority {priority}\n    advert_int {}\n{auth}{}    virtual_ipaddress {{\n        {}\n    }}\n}}\n",
            self.version,
            self.advert_int,
            if nopreempt { "    nopreempt\n" } else { "" },
            if self.v6 { format!("{VIP6}/64") } else { format!("{VIP}/24") },
        )
    }

    /// "v2", "v3", or "v3/IPv6" for the printed timings.
    fn label(&self) -> String {
        format!("v{}{}", self.version, if self.v6 { "/IPv6" } else { "" })
    }

    /// The address `host`'s adverts come from (its IPv4 address, or its link-local
    /// IPv6 address), as ha-agent's status shows it.
    fn addr_of(&self, host: &str) -> String {
        match (self.v6, host) {
            (true, "n1") => N1_LL.into(),
            (true, _) => N2_LL.into(),
            (false, "n1") => "192.0.2.1".into(),
            (false, _) => "192.0.2.2".into(),
        }
    }
}

/// One keepalived run: the parent (our child, tracked by `Lan`) and its VRRP child.
struct Ka {
    name: String,
    parent: i32,
    child: i32,
}

/// The LAN plus the keepalived processes started on it.
struct Rig {
    lan: Lan,
    kas: Vec<Ka>,
}

impl std::ops::Deref for Rig {
    type Target = Lan;
    fn deref(&self) -> &Lan {
        &self.lan
    }
}

impl std::ops::DerefMut for Rig {
    fn deref_mut(&mut self) -> &mut Lan {
        &mut self.lan
    }
}

/// `pid` exists and is not a zombie.
fn alive(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => s
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|st| st != "Z" && st != "X"),
        Err(_) => false,
    }
}

/// `pid` is alive and runs keepalived (guards against a reused PID).
fn is_keepalived(pid: i32) -> bool {
    alive(pid)
        && fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "keepalived")
}

fn kill(pid: i32, sig: i32) {
    // SAFETY: plain kill(2) on a PID this test started (checked by the callers).
    unsafe { libc::kill(pid, sig) };
}

impl Rig {
    fn new() -> Rig {
        Rig::for_proto(V2)
    }

    /// The IPv4 LAN, or the IPv6 one for `p.v6`.
    fn for_proto(p: Proto) -> Rig {
        assert!(
            std::path::Path::new(keepalived_bin()).exists() || which_keepalived(),
            "keepalived is not installed (apt-get install keepalived)"
        );
        Rig {
            lan: if p.v6 { Lan::new_v6() } else { Lan::new() },
            kas: Vec::new(),
        }
    }

    /// Starts keepalived in `host` with `conf`; returns its name. Waits for the VRRP
    /// child's pid file.
    fn start_ka(&mut self, host: &str, conf: &str) -> String {
        let name = format!("ka-{host}-{}", self.kas.len());
        let cfg = self.lan.path(&format!("{name}.conf"));
        fs::write(&cfg, conf).unwrap();
        let pidf = |k: &str| -> PathBuf { self.lan.path(&format!("{name}-{k}.pid")) };
        let (p, r, c, b) = (pidf("main"), pidf("vrrp"), pidf("chk"), pidf("bfd"));
        for f in [&p, &r, &c, &b] {
            let _ = fs::remove_file(f);
        }
        let s = |p: &PathBuf| p.to_str().unwrap().to_string();
        let argv = [
            keepalived_bin().to_string(),
            "-n".into(),
            "-l".into(),
            "-D".into(),
            "-P".into(),
            "-G".into(),
            "-f".into(),
            s(&cfg),
            "-p".into(),
            s(&p),
            "-r".into(),
            s(&r),
            "-c".into(),
            s(&c),
            "-b".into(),
            s(&b),
        ];
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        self.lan.spawn(&name, host, &argv);
        let parent = self.lan.pid(&name) as i32;
        // Recorded before waiting, so Drop stops the parent even if the child never shows.
        self.kas.push(Ka {
            name: name.clone(),
            parent,
            child: 0,
        });
        let mut child = 0;
        self.lan.wait(
            &format!("{name}: VRRP child pid file"),
            Duration::from_secs(10),
            || {
                child = fs::read_to_string(&r)
                    .ok()
                    .and_then(|t| t.trim().parse().ok())
                    .unwrap_or(0);
                child > 0 && alive(child)
            },
        );
        self.kas.last_mut().unwrap().child = child;
        name
    }

    fn ka(&self, name: &str) -> &Ka {
        self.kas.iter().find(|k| k.name == name).unwrap()
    }

    /// SIGTERM (graceful: keepalived sends a priority-0 advert), without waiting.
    fn term_ka(&self, name: &str) {
        let k = self.ka(name);
        if is_keepalived(k.parent) {
            kill(k.parent, libc::SIGTERM);
        }
    }

    /// Waits until both processes of `name` are gone, then reaps the parent.
    fn reap_ka(&mut self, name: &str) {
        let (parent, child) = {
            let k = self.ka(name);
            (k.parent, k.child)
        };
        let t = Instant::now();
        while (alive(parent) || alive(child)) && t.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(50));
        }
        if is_keepalived(child) {
            kill(child, libc::SIGKILL);
        }
        self.lan.signal(name, libc::SIGKILL);
    }

    /// A crash as in the baseline: SIGSTOP the parent (so it cannot respawn the child),
    /// SIGKILL the VRRP child, SIGKILL the parent. Nothing is cleaned up: the VIP stays.
    fn hardkill_ka(&mut self, name: &str) {
        let (parent, child) = {
            let k = self.ka(name);
            (k.parent, k.child)
        };
        assert!(
            is_keepalived(parent) && is_keepalived(child),
            "{name} not running"
        );
        kill(parent, libc::SIGSTOP);
        kill(child, libc::SIGKILL);
        kill(parent, libc::SIGKILL);
        self.lan.signal(name, libc::SIGKILL);
        self.lan
            .wait(&format!("{name}: VRRP child gone"), LONG, || !alive(child));
    }

    fn ka_log(&self, name: &str) -> String {
        fs::read_to_string(self.lan.path(&format!("{name}.log"))).unwrap_or_default()
    }

    /// `ha-agent status --json` of the instance on `host`.
    fn status(&self, host: &str) -> serde_json::Value {
        let (ok, out) = self.lan.ctl(host, &["status", "--json"]);
        assert!(ok, "status on {host}: {out}");
        let v: serde_json::Value =
            serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
        v["instances"][0].clone()
    }

    /// Waits until the client pings the VIP and resolves it to `mac`.
    fn client_on(&self, mac: &str) {
        self.lan
            .wait(&format!("client to get replies from {mac}"), LONG, || {
                self.lan.client_sees().as_deref() == Some(mac)
            });
    }

    /// Asserts for `secs` that only `host` holds the VIP.
    fn holds_for(&self, host: &str, secs: u64) {
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(secs) {
            let who = exactly_one(&self.lan);
            assert_eq!(
                who,
                Some(host),
                "VIP owner changed after {:?}\n{}",
                t.elapsed(),
                self.lan.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn which_keepalived() -> bool {
    std::process::Command::new("sh")
        .args(["-c", "command -v keepalived"])
        .output()
        .is_ok_and(|o| o.status.success())
}

impl Drop for Rig {
    fn drop(&mut self) {
        // keepalived first (Lan's own Drop runs afterwards and reaps the parents).
        for k in &self.kas {
            if is_keepalived(k.parent) {
                kill(k.parent, libc::SIGCONT);
                kill(k.parent, libc::SIGTERM);
            } else if is_keepalived(k.child) {
                kill(k.child, libc::SIGTERM);
            }
        }
        let t = Instant::now();
        while self.kas.iter().any(|k| alive(k.parent) || alive(k.child))
            && t.elapsed() < Duration::from_secs(5)
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        for k in &self.kas {
            for pid in [k.child, k.parent] {
                if pid > 0 && is_keepalived(pid) {
                    kill(pid, libc::SIGKILL);
                }
            }
        }
    }
}

fn assert_no_rejects(st: &serde_json::Value) {
    let rejected = st["rejected"].as_object().cloned().unwrap_or_default();
    assert!(
        rejected.is_empty(),
        "ha-agent rejected keepalived's adverts: {st}"
    );
}

fn peer_of(st: &serde_json::Value) -> (String, u64) {
    (
        st["peer"][0].as_str().unwrap_or("-").to_string(),
        st["peer"][1].as_u64().unwrap_or(999),
    )
}

// ---------------------------------------------------------------------------------
// ha-agent (n1, priority 150) vs keepalived (n2, priority 100)

fn agent_master_keepalived_backup(p: Proto) {
    let mut rig = Rig::for_proto(p);
    let conf = p.keepalived("n2", 100, p.auth, false);
    let ka = rig.start_ka("n2", &conf);
    rig.wait("keepalived (alone) to become master", LONG, || {
        exactly_one(&rig) == Some("n2")
    });
    rig.client_on(N2_MAC);

    // ha-agent joins with a higher priority: it accepts keepalived's adverts (no
    // rejects), starts in BACKUP and preempts after its Master_Down_Interval.
    rig.start_agent("n1", 150, &p.agent(p.auth, false));
    let t = rig.wait("ha-agent to preempt keepalived", LONG, || {
        exactly_one(&rig) == Some("n1")
    });
    eprintln!(
        "v{}: ha-agent preempted keepalived {t:?} after start",
        p.label()
    );
    rig.client_on(N1_MAC);
    let st = rig.status("n1");
    assert_eq!(st["state"], "MASTER", "{st}");
    assert!(st["adverts_received"].as_u64().unwrap_or(0) > 0, "{st}");
    assert_eq!(peer_of(&st), (p.addr_of("n2"), 100), "{st}");
    assert_no_rejects(&st);
    // keepalived saw the higher-priority advert and stepped down.
    rig.wait("keepalived to log BACKUP", LONG, || {
        rig.ka_log(&ka).matches("Entering BACKUP STATE").count() >= 2
    });

    // kill -9 of ha-agent: keepalived takes over after Master_Down_Interval. n1 keeps
    // the VIP (nobody cleans up), the client follows keepalived's GARP.
    let t0 = Instant::now();
    rig.signal("n1", libc::SIGKILL);
    rig.wait("keepalived to take the VIP after kill -9", LONG, || {
        rig.has_vip("n2")
    });
    eprintln!(
        "v{}: kill -9 ha-agent -> keepalived has the VIP after {:?}",
        p.label(),
        t0.elapsed()
    );
    rig.client_on(N2_MAC);
    let t1 = t0.elapsed();
    eprintln!(
        "v{}: kill -9 ha-agent -> client on n2 after {t1:?}",
        p.label()
    );

    // ha-agent restarts: it removes the leftover VIP and preempts back.
    rig.start_agent("n1", 150, &p.agent(p.auth, false));
    rig.wait("ha-agent to preempt back after restart", LONG, || {
        exactly_one(&rig) == Some("n1")
    });
    rig.client_on(N1_MAC);
    let st = rig.status("n1");
    assert_eq!(st["state"], "MASTER", "{st}");
    assert_no_rejects(&st);
    assert!(
        is_keepalived(rig.ka(&ka).child),
        "keepalived died\n{}",
        rig.ka_log(&ka)
    );
}

#[test]
fn v2_pass_agent_master_kill9_keepalived_takes_over_agent_preempts_back() {
    agent_master_keepalived_backup(V2);
}

#[test]
fn v3_100ms_agent_master_kill9_keepalived_takes_over_agent_preempts_back() {
    agent_master_keepalived_backup(V3);
}

// ---------------------------------------------------------------------------------
// keepalived (n1, priority 150) vs ha-agent (n2, priority 100)

fn keepalived_master_agent_backup(p: Proto) {
    let mut rig = Rig::for_proto(p);
    rig.start_agent("n2", 100, &p.agent(p.auth, false));
    rig.wait("ha-agent (alone) to become master", LONG, || {
        exactly_one(&rig) == Some("n2")
    });
    rig.client_on(N2_MAC);

    // keepalived joins with a higher priority and preempts; ha-agent yields.
    let conf = p.keepalived("n1", 150, p.auth, false);
    let ka = rig.start_ka("n1", &conf);
    rig.wait("keepalived to preempt ha-agent", LONG, || {
        exactly_one(&rig) == Some("n1")
    });
    rig.client_on(N1_MAC);
    rig.wait("ha-agent to report BACKUP under keepalived", LONG, || {
        let st = rig.status("n2");
        st["state"] == "BACKUP" && st["master"] == p.addr_of("n1").as_str()
    });
    let st = rig.status("n2");
    assert_eq!(peer_of(&st), (p.addr_of("n1"), 150), "{st}");
    assert_no_rejects(&st);

    // SIGTERM: keepalived sends a priority-0 advert; ha-agent takes over after Skew_Time.
    let t0 = Instant::now();
    rig.term_ka(&ka);
    rig.wait(
        "ha-agent to take over after keepalived's SIGTERM",
        LONG,
        || exactly_one(&rig) == Some("n2"),
    );
    eprintln!(
        "v{}: SIGTERM keepalived -> ha-agent alone holds the VIP after {:?}",
        p.label(),
        t0.elapsed()
    );
    rig.client_on(N2_MAC);
    let st = rig.status("n2");
    assert_eq!(st["state"], "MASTER", "{st}");
    // The last advert heard from keepalived is its priority-0 "leaving" advert.
    assert_eq!(peer_of(&st), (p.addr_of("n1"), 0), "{st}");
    assert_no_rejects(&st);
    rig.reap_ka(&ka);

    // keepalived restarts and preempts again.
    let ka = rig.start_ka("n1", &conf);
    rig.wait("restarted keepalived to preempt ha-agent", LONG, || {
        exactly_one(&rig) == Some("n1")
    });
    rig.client_on(N1_MAC);
    rig.wait("ha-agent BACKUP again", LONG, || {
        rig.status("n2")["state"] == "BACKUP"
    });

    // Hard crash of keepalived: ha-agent takes over after Master_Down_Interval; the
    // VIP stays on n1 as well, the client follows ha-agent's GARP.
    let t0 = Instant::now();
    rig.hardkill_ka(&ka);
    rig.wait(
        "ha-agent to take the VIP after keepalived's crash",
        LONG,
        || rig.has_vip("n2"),
    );
    eprintln!(
        "v{}: kill -9 keepalived -> ha-agent has the VIP after {:?}",
        p.label(),
        t0.elapsed()
    );
    rig.client_on(N2_MAC);
    let st = rig.status("n2");
    assert_eq!(st["state"], "MASTER", "{st}");
    assert_no_rejects(&st);
}

#[test]
fn v2_pass_keepalived_master_sigterm_agent_takes_over() {
    keepalived_master_agent_backup(V2);
}

#[test]
fn v3_100ms_keepalived_master_sigterm_agent_takes_over() {
    keepalived_master_agent_backup(V3);
}

#[test]
fn ipv6_agent_master_kill9_keepalived_takes_over_agent_preempts_back() {
    agent_master_keepalived_backup(V3_IPV6);
}

#[test]
fn ipv6_keepalived_master_sigterm_agent_takes_over() {
    keepalived_master_agent_backup(V3_IPV6);
}

/// keepalived's v3 adverts carry the RFC 5798 pseudo-header checksum (its default, which
/// ha-agent also sends), seen from n1 with ha-agent's own socket and decoder.
#[test]
fn keepalived_v3_adverts_use_the_pseudo_header_checksum() {
    use antler_ha_agent::net::VrrpSocket;
    use antler_ha_agent::packet::{decode_ip, Checksum, Version};
    let mut rig = Rig::new();
    rig.start_ka("n2", &V3.keepalived("n2", 100, None, false));
    rig.wait("keepalived to become master", LONG, || rig.has_vip("n2"));
    let path = format!("/var/run/netns/{}", rig.ns("n1"));
    let got = std::thread::spawn(move || {
        let f = fs::File::open(&path).unwrap();
        // SAFETY: `f` is an open namespace file; setns changes only this thread's netns.
        assert_eq!(unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) }, 0);
        let sock = VrrpSocket::open("eth0", true).unwrap();
        let mut buf = [0u8; 2048];
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(10) {
            if let Some(n) = sock.recv(&mut buf, Duration::from_millis(500)).unwrap() {
                if let Ok(r) = decode_ip(&buf[..n]) {
                    if r.advert.vrid == 51 {
                        return Some(r);
                    }
                }
            }
        }
        None
    })
    .join()
    .unwrap()
    .expect("no decodable advert from keepalived");
    assert_eq!(got.advert.version, Version::V3);
    assert_eq!(got.advert.interval_cs, 10);
    assert_eq!(got.checksum, Checksum::PseudoHeader, "{got:?}");
    assert_eq!(got.src.to_string(), "192.0.2.2");
}

/// keepalived's VRRPv3 adverts over IPv6 and its unsolicited neighbour advertisements,
/// seen with ha-agent's own socket (from n1) and an `AF_PACKET` capture (on the client),
/// are exactly what ha-agent builds: the same checksum over the IPv6 pseudo-header, hop
/// limit 255, link-local source, and the same NA frame byte for byte.
#[test]
fn keepalived_ipv6_adverts_and_neighbour_adverts_match_ours() {
    use antler_ha_agent::net::Vrrp6Socket;
    use antler_ha_agent::packet::{decode_v6, na_frame, Checksum, Version, VRRP_GROUP6};
    use std::net::{IpAddr, Ipv6Addr};
    let mut rig = Rig::for_proto(V3_IPV6);
    let enter = |ns: String| {
        move || {
            let f = fs::File::open(format!("/var/run/netns/{ns}")).unwrap();
            // SAFETY: `f` is an open namespace file; setns changes only this thread's
            // netns, and sockets stay in the namespace they were opened in.
            assert_eq!(unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) }, 0);
        }
    };
    // Listen before keepalived starts, so its first neighbour advertisements are seen.
    let n1 = enter(rig.ns("n1"));
    let sock = std::thread::spawn(move || {
        n1();
        Vrrp6Socket::open("eth0", true).unwrap()
    })
    .join()
    .unwrap();
    let c1 = enter(rig.ns("c1"));
    let cap = std::thread::spawn(move || {
        c1();
        PacketCapture::open("eth0", 0x86dd)
    })
    .join()
    .unwrap();
    rig.start_ka("n2", &V3_IPV6.keepalived("n2", 100, None, false));
    rig.wait("keepalived to become master", LONG, || rig.has_vip("n2"));

    let mut buf = [0u8; 2048];
    let t = Instant::now();
    let (d, payload) = loop {
        assert!(t.elapsed() < LONG, "no advert from keepalived");
        if let Some(d) = sock.recv(&mut buf, Duration::from_millis(500)).unwrap() {
            break (d, buf[..d.len].to_vec());
        }
    };
    let n2_ll: Ipv6Addr = N2_LL.parse().unwrap();
    assert_eq!(
        (d.src, d.dst, d.hop_limit),
        (n2_ll, VRRP_GROUP6, 255),
        "{d:?}"
    );
    let r = decode_v6(&payload, d.src, d.dst, d.hop_limit).unwrap();
    assert_eq!(r.advert.version, Version::V3);
    assert_eq!(r.advert.interval_cs, 100);
    assert_eq!(r.advert.priority, 100);
    assert_eq!(r.checksum, Checksum::PseudoHeader, "{r:?}");
    let vip: Ipv6Addr = VIP6.parse().unwrap();
    assert_eq!(r.advert.addrs, vec![IpAddr::V6(vip)]);
    assert_eq!(
        r.advert.encode(d.src, d.dst, Checksum::PseudoHeader),
        payload,
        "keepalived's advert does not re-encode byte for byte"
    );

    // keepalived's unsolicited neighbour advertisements for the VIP.
    let mac = [2, 0, 0, 0, 0, 2];
    let want = na_frame(mac, vip, false);
    let t = Instant::now();
    let mut seen = 0;
    while seen < 2 && t.elapsed() < LONG {
        let Some(f) = cap.recv(Duration::from_millis(500)) else {
            continue;
        };
        // ICMPv6 neighbour advertisement from n2.
        if f.len() > 54 && f[6..12] == mac && f[20] == 58 && f[54] == 136 {
            assert_eq!(f[..], want[..], "keepalived's NA differs from ours");
            seen += 1;
        }
    }
    assert!(seen >= 1, "no neighbour advertisement from keepalived");
}

/// An `AF_PACKET` socket receiving the frames of one EtherType on one interface.
struct PacketCapture(std::os::fd::OwnedFd);

impl PacketCapture {
    fn open(ifname: &str, ethertype: u16) -> PacketCapture {
        use std::os::fd::FromRawFd;
        let idx = antler_ha_agent::net::if_info(ifname).unwrap().index;
        let proto = ethertype.to_be();
        // SAFETY: socket(2) takes no pointers; the result is checked.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, libc::c_int::from(proto)) };
        assert!(fd >= 0, "{}", std::io::Error::last_os_error());
        // SAFETY: `fd` is a fresh descriptor owned by nothing else.
        let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
        // SAFETY: sockaddr_ll is plain old data; all-zero is valid.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = proto;
        sll.sll_ifindex = idx as i32;
        // SAFETY: `sll` is a live sockaddr_ll of the size passed.
        let r = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        assert_eq!(r, 0, "{}", std::io::Error::last_os_error());
        PacketCapture(fd)
    }

    /// One frame, or `None` after `timeout`.
    fn recv(&self, timeout: Duration) -> Option<Vec<u8>> {
        let mut pfd = libc::pollfd {
            fd: self.0.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one live pollfd, count 1.
        if unsafe { libc::poll(&mut pfd, 1, timeout.as_millis() as i32) } <= 0 {
            return None;
        }
        let mut buf = [0u8; 2048];
        // SAFETY: `buf` is a live writable buffer of the length passed.
        let n = unsafe {
            libc::recv(
                self.0.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT,
            )
        };
        (n >= 0).then(|| buf[..n as usize].to_vec())
    }
}

// ---------------------------------------------------------------------------------
// nopreempt

/// ha-agent (n1, priority 150, nopreempt, state BACKUP) joins while keepalived (n2, 100)
/// is master: the VIP stays on keepalived until keepalived leaves.
#[test]
fn nopreempt_agent_joins_keepalived_master_keeps_the_vip() {
    let mut rig = Rig::new();
    let ka = rig.start_ka("n2", &V2.keepalived("n2", 100, Some(PASS), false));
    rig.wait("keepalived master", LONG, || {
        exactly_one(&rig) == Some("n2")
    });
    rig.start_agent("n1", 150, &V2.agent(Some(PASS), true));
    rig.wait("ha-agent BACKUP", LONG, || {
        rig.ctl("n1", &["status", "--json"]).0 && rig.status("n1")["state"] == "BACKUP"
    });
    rig.holds_for("n2", 7);
    let st = rig.status("n1");
    assert_eq!(st["state"], "BACKUP", "{st}");
    assert_eq!(st["master"], "192.0.2.2", "{st}");
    assert_no_rejects(&st);
    rig.client_on(N2_MAC);
    // When keepalived leaves (priority 0), the nopreempt node takes over.
    rig.term_ka(&ka);
    rig.wait("ha-agent to take over when keepalived leaves", LONG, || {
        exactly_one(&rig) == Some("n1")
    });
    rig.client_on(N1_MAC);
    rig.reap_ka(&ka);
}

/// The reverse: keepalived (n1, 150, nopreempt, state BACKUP) joins while ha-agent
/// (n2, 100) is master: the VIP stays on ha-agent.
#[test]
fn nopreempt_keepalived_joins_agent_master_keeps_the_vip() {
    let mut rig = Rig::new();
    rig.start_agent("n2", 100, &V2.agent(Some(PASS), false));
    rig.wait("ha-agent master", LONG, || exactly_one(&rig) == Some("n2"));
    let ka = rig.start_ka("n1", &V2.keepalived("n1", 150, Some(PASS), true));
    rig.wait("keepalived BACKUP", LONG, || {
        rig.ka_log(&ka).contains("Entering BACKUP STATE")
    });
    rig.holds_for("n2", 7);
    let st = rig.status("n2");
    assert_eq!(st["state"], "MASTER", "{st}");
    assert_no_rejects(&st);
    rig.client_on(N2_MAC);
    rig.signal("n2", libc::SIGTERM);
    rig.wait("keepalived to take over when ha-agent leaves", LONG, || {
        exactly_one(&rig) == Some("n1")
    });
    rig.client_on(N1_MAC);
}

// ---------------------------------------------------------------------------------
// wrong password

/// keepalived with another password (and a higher priority) must not disturb the
/// ha-agent master. keepalived rejects ha-agent's adverts too, so it also becomes MASTER
/// (a split brain, as two keepalived with different passwords would do); ha-agent must
/// stay MASTER with its VIP and count the rejected adverts as BadAuth.
#[test]
fn wrong_password_keepalived_does_not_disturb_agent_master() {
    let mut rig = Rig::new();
    rig.start_agent("n1", 100, &V2.agent(Some(PASS), false));
    rig.wait("ha-agent master", LONG, || exactly_one(&rig) == Some("n1"));
    let ka = rig.start_ka("n2", &V2.keepalived("n2", 200, Some("wrong"), false));
    rig.wait(
        "keepalived to send adverts (ha-agent counts BadAuth)",
        LONG,
        || {
            rig.status("n1")["rejected"]["BadAuth"]
                .as_u64()
                .unwrap_or(0)
                > 0
        },
    );
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(7) {
        assert!(rig.has_vip("n1"), "ha-agent lost the VIP\n{}", rig.logs());
        assert_eq!(rig.status("n1")["state"], "MASTER");
        std::thread::sleep(Duration::from_millis(200));
    }
    let st = rig.status("n1");
    assert_eq!(st["adverts_received"], 0, "{st}");
    // Not one per second: keepalived 2.2.7 as MASTER delays its own adverts while it
    // keeps receiving (rejected) packets, so it sends one only every few seconds here.
    assert!(st["rejected"]["BadAuth"].as_u64().unwrap() >= 1, "{st}");
    eprintln!("ha-agent status: {st}");
    eprintln!(
        "keepalived's view: {:?}",
        rig.ka_log(&ka)
            .lines()
            .filter(|l| l.contains("VI_1"))
            .take(8)
            .collect::<Vec<_>>()
    );
}

/// The reverse: ha-agent with another password (and a higher priority) must not
/// disturb the keepalived master; ha-agent counts keepalived's adverts as BadAuth.
#[test]
fn wrong_password_agent_does_not_disturb_keepalived_master() {
    let mut rig = Rig::new();
    let ka = rig.start_ka("n1", &V2.keepalived("n1", 100, Some(PASS), false));
    rig.wait("keepalived master", LONG, || {
        exactly_one(&rig) == Some("n1")
    });
    rig.start_agent("n2", 200, &V2.agent(Some("wrong"), false));
    rig.wait("ha-agent to count BadAuth", LONG, || {
        rig.ctl("n2", &["status", "--json"]).0
            && rig.status("n2")["rejected"]["BadAuth"]
                .as_u64()
                .unwrap_or(0)
                > 0
    });
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(7) {
        assert!(rig.has_vip("n1"), "keepalived lost the VIP\n{}", rig.logs());
        std::thread::sleep(Duration::from_millis(200));
    }
    let st = rig.status("n2");
    assert_eq!(st["adverts_received"], 0, "{st}");
    let log = rig.ka_log(&ka);
    assert_eq!(
        log.matches("Entering MASTER STATE").count(),
        1,
        "keepalived left MASTER\n{log}"
    );
    assert!(is_keepalived(rig.ka(&ka).child), "keepalived died\n{log}");
}
