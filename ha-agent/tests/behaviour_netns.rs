//! Behaviour of the `ha-agent` daemon on a bridge LAN built from network namespaces
//! (see `common/mod.rs`: n1 192.0.2.1, n2 192.0.2.2, client c1 192.0.2.50, VIP
//! 192.0.2.100): split-brain heal, track scripts, hostile packets, VIPs changed behind
//! the daemon's back, email through a real SMTP server, reload and maintenance.
//!
//! Every test builds its own LAN and stops only the processes it started. Timeouts are
//! generous; the few bounds that matter (a client following the winner of a healed
//! split brain, a transition not held up by a dead mail server) are set well below
//! what the slow path would need, not near what the fast path takes.
//!
//! Needs root, iproute2 (`ip`, `bridge`) and python3 with `aiosmtpd` (`pip install
//! aiosmtpd`; 1.4.6 is known to work).

mod common;
use antler_ha_agent::net::VrrpSocket;
use antler_ha_agent::packet::{encode_ip, Advert, Checksum, Version, VRRP_GROUP};
use common::*;
use serde_json::Value;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

const VIP_ADDR: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 100);
const C1_ADDR: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 50);

// ---------------------------------------------------------------------------------
// helpers

/// Every instance's status on `host`, as `ha-agent status --json` prints it.
fn statuses(lan: &Lan, host: &str) -> Vec<Value> {
    let (ok, out) = lan.ctl(host, &["status", "--json"]);
    assert!(ok, "status on {host} failed: {out}\n{}", lan.logs());
    let v: Value = serde_json::from_str(out.trim())
        .unwrap_or_else(|e| panic!("status on {host} is not JSON ({e}): {out}"));
    v["instances"].as_array().cloned().unwrap_or_default()
}

/// The status of instance `name` on `host`, if it runs.
fn status_of(lan: &Lan, host: &str, name: &str) -> Option<Value> {
    statuses(lan, host).into_iter().find(|i| i["name"] == name)
}

/// The status of instance VI_1 on `host`, as `ha-agent status --json` prints it.
fn status(lan: &Lan, host: &str) -> Value {
    status_of(lan, host, "VI_1").unwrap_or_else(|| panic!("no VI_1 in the status of {host}"))
}

fn state(lan: &Lan, host: &str) -> String {
    status(lan, host)["state"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Everything a process started with `lan.spawn(name, ..)` wrote so far.
fn log_of(lan: &Lan, name: &str) -> String {
    std::fs::read_to_string(lan.path(&format!("{name}.log"))).unwrap_or_default()
}

fn ip(lan: &Lan, host: &str, args: &[&str]) {
    let ns = lan.ns(host);
    let mut argv = vec!["ip", "-n", ns.as_str()];
    argv.extend_from_slice(args);
    sh(&argv);
}

/// The client neither expires nor re-checks its neighbour entries within a test: an
/// entry stays REACHABLE for 10 minutes, and a STALE one (as left by a gratuitous ARP)
/// waits 10 minutes in DELAY before it is probed. So nothing but a gratuitous ARP can
/// move the VIP's entry to another MAC; the ARP-expiry path would take minutes.
fn client_never_expires_arp(lan: &Lan) {
    sh(&[
        "ip",
        "netns",
        "exec",
        &lan.ns("c1"),
        "sh",
        "-c",
        "echo 600000 > /proc/sys/net/ipv4/neigh/eth0/base_reachable_time_ms && \
         echo 600 > /proc/sys/net/ipv4/neigh/eth0/delay_first_probe_time",
    ]);
}

/// Sets the state of a switch port (0 = disabled, 3 = forwarding) and checks it took.
/// (`ip link set PORT type bridge_slave state N` is silently ignored by iproute2 6.1.)
fn port_state(lan: &Lan, port: &str, state: &str, name: &str) {
    let br = lan.ns("lan");
    sh(&[
        "bridge", "-n", &br, "link", "set", "dev", port, "state", state,
    ]);
    let shown = sh(&["bridge", "-n", &br, "link", "show", "dev", port]);
    assert!(shown.contains(&format!("state {name} ")), "{shown}");
}

fn both_masters_hold_the_vip(lan: &Lan) -> bool {
    lan.has_vip("n1") && lan.has_vip("n2")
}

// ---------------------------------------------------------------------------------
// 1. split brain

/// Cuts n1 off at the switch until both hold the VIP and the client talks to n2.
fn split_brain(lan: &Lan) {
    lan.wait("n1 to be the only VIP owner", LONG, || {
        exactly_one(lan) == Some("n1")
    });
    lan.wait("client to answer from n1's MAC", LONG, || {
        lan.client_sees().as_deref() == Some(N1_MAC)
    });
    port_state(lan, "vn1", "0", "disabled");
    lan.wait("n2 to become master too (split brain)", LONG, || {
        both_masters_hold_the_vip(lan)
    });
    lan.wait(
        "client to answer from n2's MAC during the split",
        LONG,
        || lan.client_sees().as_deref() == Some(N2_MAC),
    );
    assert_eq!(state(lan, "n1"), "MASTER");
    assert_eq!(state(lan, "n2"), "MASTER");
}

fn assert_n2_lost_to_n1(lan: &Lan) {
    let n2 = status(lan, "n2");
    assert_eq!(n2["state"], "BACKUP", "{n2}");
    let lt = n2["last_transition"].to_string();
    assert!(
        lt.contains("MASTER")
            && lt.contains("BACKUP")
            && lt.contains("peer 192.0.2.1 with higher priority 150"),
        "{lt}"
    );
    // The winner never left MASTER: its last transition is still the one of its start.
    let n1 = status(lan, "n1");
    assert_eq!(n1["state"], "MASTER", "{n1}");
    assert!(n1["last_transition"].to_string().contains("BACKUP"), "{n1}");
}

/// (a) Heal in two steps. First only the winner hears the loser (multicast towards n2
/// is switched off at its port): n2 still holds the VIP, so the client can only move
/// to n1 because n1 re-announces itself with gratuitous ARPs when it hears a
/// lower-priority master. Then n2 hears n1 too and gives the VIP up.
#[test]
fn split_brain_heal_winner_reannounces_and_loser_steps_down() {
    let mut lan = Lan::new();
    client_never_expires_arp(&lan);
    lan.start_agent("n1", 150, "");
    lan.start_agent("n2", 100, "");
    split_brain(&lan);

    mcast_flood(&lan, "vn2", "off");
    port_state(&lan, "vn1", "3", "forwarding");
    let t = lan.wait(
        "client to answer from n1's MAC (n1's re-announcement)",
        Duration::from_secs(10),
        || lan.client_sees().as_deref() == Some(N1_MAC),
    );
    eprintln!("one-way heal: client follows n1 after {t:?}");
    assert!(
        both_masters_hold_the_vip(&lan),
        "n2 gave the VIP up although it cannot hear n1: the test proves nothing"
    );
    assert_eq!(state(&lan, "n2"), "MASTER");

    // Full heal: n2 hears n1 and drops to BACKUP, removing the VIP.
    mcast_flood(&lan, "vn2", "on");
    let t = lan.wait(
        "n2 to step down once it hears n1",
        Duration::from_secs(15),
        || exactly_one(&lan) == Some("n1"),
    );
    eprintln!("full heal: n1 alone after {t:?}");
    assert_n2_lost_to_n1(&lan);
    for _ in 0..5 {
        assert_eq!(lan.client_sees().as_deref(), Some(N1_MAC));
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(log_of(&lan, "n2").contains("entering BACKUP state"));
}

/// (b) Heal at once: within seconds exactly one (n1) holds the VIP and the client,
/// which was talking to the loser, answers from n1's MAC (its ARP entry would not
/// expire for 10 minutes). Here n2 mostly hears n1 first and steps down without ever
/// advertising to n1, so n1 has no lower-priority master to react to; it learns of the
/// healed split from n2's first backup hello after a silence and re-announces then.
#[test]
fn split_brain_heal_at_once_client_follows_without_arp_expiry() {
    let mut lan = Lan::new();
    client_never_expires_arp(&lan);
    lan.start_agent("n1", 150, "");
    lan.start_agent("n2", 100, "");
    split_brain(&lan);

    let healed = Instant::now();
    port_state(&lan, "vn1", "3", "forwarding");
    lan.wait(
        "exactly one VIP owner (n1) after the heal",
        Duration::from_secs(15),
        || exactly_one(&lan) == Some("n1"),
    );
    lan.wait(
        "client to answer from n1's MAC after the heal",
        Duration::from_secs(10),
        || lan.client_sees().as_deref() == Some(N1_MAC),
    );
    eprintln!(
        "heal: n1 alone and seen by the client after {:?}",
        healed.elapsed()
    );
    assert_n2_lost_to_n1(&lan);
    // It stays that way.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(exactly_one(&lan), Some("n1"));
    assert_eq!(lan.client_sees().as_deref(), Some(N1_MAC));
}

// ---------------------------------------------------------------------------------
// 2. track scripts

fn track_extra(flag: &Path, fall: u32, weight: i32) -> String {
    format!(
        "track_script = [\"chk\"]\n\
         [[vrrp_script]]\n\
         name = \"chk\"\n\
         script = \"test -f {}\"\n\
         interval = 0.5\n\
         timeout = 2.0\n\
         fall = {fall}\n\
         rise = 1\n\
         weight = {weight}\n",
        flag.display()
    )
}

#[test]
fn track_script_negative_weight_moves_the_vip_and_back() {
    let mut lan = Lan::new();
    let flag = lan.path("healthy");
    std::fs::write(&flag, "").unwrap();
    lan.start_agent("n1", 150, &track_extra(&flag, 2, -60));
    lan.start_agent("n2", 100, "");
    lan.wait("n1 master", LONG, || exactly_one(&lan) == Some("n1"));

    std::fs::remove_file(&flag).unwrap();
    lan.wait("the VIP to move to n2 (n1 at 150-60 = 90)", LONG, || {
        exactly_one(&lan) == Some("n2")
    });
    let s = status(&lan, "n1");
    assert_eq!(s["state"], "BACKUP", "{s}");
    assert_eq!(s["priority"], 90, "{s}");
    assert_eq!(s["base_priority"], 150, "{s}");
    assert_eq!(s["track_delta"], -60, "{s}");
    assert_eq!(s["track_fault"], false, "{s}");
    // Each tracker with its state, weight and what it contributes now.
    assert_eq!(
        s["trackers"],
        serde_json::json!([
            {"kind": "script", "name": "chk", "state": "failed", "weight": -60,
             "contribution": -60, "fault": false},
            {"kind": "interface", "name": "eth0", "state": "ok", "weight": 0,
             "contribution": 0, "fault": false},
        ]),
        "{s}"
    );
    let (ok, text) = lan.ctl("n1", &["status"]);
    assert!(ok, "{text}");
    assert!(
        text.contains("  track script chk: failed weight -60 contribution -60\n")
            && text.contains("  track interface eth0: ok weight 0 contribution 0\n"),
        "{text}"
    );
    // n2 took over from a lower-priority master: by preemption or by n1 yielding.
    lan.wait("client to answer from n2's MAC", LONG, || {
        lan.client_sees().as_deref() == Some(N2_MAC)
    });

    std::fs::write(&flag, "").unwrap();
    lan.wait("n1 to preempt back at 150", LONG, || {
        exactly_one(&lan) == Some("n1")
    });
    let s = status(&lan, "n1");
    assert_eq!(s["priority"], 150, "{s}");
    assert_eq!(s["track_delta"], 0, "{s}");
    assert_eq!(s["trackers"][0]["state"], "ok", "{s}");
    assert_eq!(s["trackers"][0]["contribution"], 0, "{s}");
    lan.wait("client to answer from n1's MAC", LONG, || {
        lan.client_sees().as_deref() == Some(N1_MAC)
    });
}

#[test]
fn track_script_weight_zero_means_fault() {
    let mut lan = Lan::new();
    let flag = lan.path("healthy");
    std::fs::write(&flag, "").unwrap();
    lan.start_agent("n1", 150, &track_extra(&flag, 1, 0));
    lan.start_agent("n2", 100, "");
    lan.wait("n1 master", LONG, || exactly_one(&lan) == Some("n1"));

    std::fs::remove_file(&flag).unwrap();
    lan.wait("n1 to enter FAULT", LONG, || state(&lan, "n1") == "FAULT");
    lan.wait("n2 to take the VIP from the faulty n1", LONG, || {
        exactly_one(&lan) == Some("n2")
    });
    let s = status(&lan, "n1");
    assert_eq!(s["track_fault"], true, "{s}");
    assert_eq!(
        s["trackers"][0],
        serde_json::json!({"kind": "script", "name": "chk", "state": "failed",
                           "weight": 0, "contribution": 0, "fault": true}),
        "{s}"
    );
    let (_, text) = lan.ctl("n1", &["status"]);
    assert!(
        text.contains("  track script chk: failed weight 0 contribution 0 (FAULT)\n"),
        "{text}"
    );
    assert!(!lan.has_vip("n1"));
    assert!(
        s["last_transition"]
            .to_string()
            .contains("track script or interface failed"),
        "{s}"
    );
    // FAULT is kept while the check fails, whatever n2 does.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(state(&lan, "n1"), "FAULT");
    assert_eq!(exactly_one(&lan), Some("n2"));
    assert!(lan.notify_log("n1").contains("INSTANCE VI_1 FAULT"));

    std::fs::write(&flag, "").unwrap();
    lan.wait("n1 to recover and preempt", LONG, || {
        exactly_one(&lan) == Some("n1")
    });
    assert_eq!(state(&lan, "n1"), "MASTER");
    assert_eq!(status(&lan, "n1")["track_fault"], false);
}

// ---------------------------------------------------------------------------------
// 3. hostile packets

/// A raw protocol-112 socket opened inside `host`'s namespace (it stays there).
fn raw_socket_in(lan: &Lan, host: &str) -> VrrpSocket {
    let path = format!("/var/run/netns/{}", lan.ns(host));
    std::thread::spawn(move || {
        let f = std::fs::File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
        // SAFETY: `f` is an open namespace file; setns only moves this (short-lived)
        // thread into the namespace.
        let r = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(r, 0, "setns {path}: {}", std::io::Error::last_os_error());
        VrrpSocket::open("eth0", false).expect("raw VRRP socket in the client namespace")
    })
    .join()
    .unwrap()
}

fn advert(vrid: u8, auth: &[u8; 8]) -> Advert {
    Advert {
        version: Version::V2,
        vrid,
        // Would win against everybody if it were accepted.
        priority: 254,
        interval_cs: 100,
        auth: Some(*auth),
        addrs: vec![VIP_ADDR.into()],
    }
}

fn ip_packet(vrrp: &[u8]) -> Vec<u8> {
    encode_ip(C1_ADDR, VRRP_GROUP, 0, vrrp)
}

/// Recomputes the VRRP checksum of a hand-edited message.
fn fix_checksum(v: &mut [u8]) {
    v[6] = 0;
    v[7] = 0;
    let c = antler_ha_agent::packet::inet_checksum(&[v]);
    v[6..8].copy_from_slice(&c.to_be_bytes());
}

#[test]
fn bad_packets_are_counted_and_ignored() {
    let mut lan = Lan::new();
    lan.start_agent("n1", 150, "auth_pass = \"s3cr3t\"");
    lan.start_agent("n2", 100, "auth_pass = \"s3cr3t\"");
    lan.wait("n1 master", LONG, || exactly_one(&lan) == Some("n1"));
    let n1_before = status(&lan, "n1");
    let received_before = n1_before["adverts_received"].as_u64().unwrap();

    let right = *b"s3cr3t\0\0";
    let good = advert(51, &right).encode(C1_ADDR, VRRP_GROUP, Checksum::Plain);
    let mut kinds: Vec<(&str, Vec<u8>)> = Vec::new();
    kinds.push((
        "other VRID",
        ip_packet(&advert(52, &right).encode(C1_ADDR, VRRP_GROUP, Checksum::Plain)),
    ));
    kinds.push((
        "wrong password",
        ip_packet(&advert(51, b"wrong\0\0\0").encode(C1_ADDR, VRRP_GROUP, Checksum::Plain)),
    ));
    let mut ttl64 = ip_packet(&good);
    ttl64[8] = 64; // the kernel recomputes the IP header checksum
    kinds.push(("TTL 64", ttl64));
    let mut bad_sum = good.clone();
    bad_sum[6] ^= 0x5a;
    kinds.push(("bad checksum", ip_packet(&bad_sum)));
    kinds.push(("truncated header", ip_packet(&good[..4])));
    kinds.push(("truncated advert", ip_packet(&good[..12])));
    let mut v4 = good.clone();
    v4[0] = 0x41;
    fix_checksum(&mut v4);
    kinds.push(("version 4", ip_packet(&v4)));
    let mut carp = vec![0u8; 36];
    carp[0] = 0x21;
    carp[1] = 51;
    carp[3] = 7;
    fix_checksum(&mut carp);
    kinds.push(("CARP", ip_packet(&carp)));

    let sock = raw_socket_in(&lan, "c1");
    const ROUNDS: u64 = 10;
    for _ in 0..ROUNDS {
        for (what, p) in &kinds {
            sock.send(p, VRRP_GROUP)
                .unwrap_or_else(|e| panic!("sending the {what} packet: {e}"));
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(100));
    }

    let expected: Vec<(&str, u64)> = vec![
        ("BadAuth", ROUNDS),
        ("BadTtl", ROUNDS),
        ("BadChecksum", ROUNDS),
        ("Malformed", ROUNDS),
        ("BadLength", 2 * ROUNDS), // truncated advert and CARP
        ("WrongVersion", ROUNDS),
    ];
    let counters = |s: &Value| -> Vec<(String, u64)> {
        let mut v: Vec<(String, u64)> = s["rejected"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, n)| (k.clone(), n.as_u64().unwrap_or(0)))
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    };
    let mut want: Vec<(String, u64)> = expected.iter().map(|(k, n)| (k.to_string(), *n)).collect();
    want.sort();
    for host in ["n1", "n2"] {
        lan.wait(&format!("{host} to count every bad packet"), LONG, || {
            counters(&status(&lan, host)) == want
        });
    }
    // Nothing else was counted (in particular not the other VRID) and nothing changed.
    std::thread::sleep(Duration::from_secs(2));
    let n1 = status(&lan, "n1");
    assert_eq!(counters(&n1), want, "{n1}");
    assert_eq!(n1["state"], "MASTER", "{n1}");
    assert_eq!(
        n1["adverts_received"].as_u64().unwrap(),
        received_before,
        "a bad packet was taken for an advert: {n1}"
    );
    assert_eq!(n1["last_transition"], n1_before["last_transition"], "{n1}");
    assert_eq!(state(&lan, "n2"), "BACKUP");
    assert_eq!(exactly_one(&lan), Some("n1"));

    // The log says so, rate-limited (once per 10 s, the sending took about 1.5 s).
    for host in ["n1", "n2"] {
        let log = log_of(&lan, host);
        let n = log.matches("ignored VRRP packet").count();
        assert!(
            (1..=2).contains(&n),
            "{host}: {n} 'ignored VRRP packet' lines:\n{log}"
        );
    }
}

// ---------------------------------------------------------------------------------
// 4. VIPs changed behind the daemon's back

#[test]
fn vip_changes_behind_our_back_are_undone() {
    let mut lan = Lan::new();
    lan.start_agent("n1", 150, "");
    lan.start_agent("n2", 100, "");
    lan.wait("n1 master", LONG, || exactly_one(&lan) == Some("n1"));

    ip(
        &lan,
        "n1",
        &["addr", "del", "192.0.2.100/24", "dev", "eth0"],
    );
    let t = lan.wait("n1 to restore its VIP", LONG, || lan.has_vip("n1"));
    eprintln!("deleted VIP restored after {t:?}");
    lan.wait("the restore to be logged", LONG, || {
        log_of(&lan, "n1").contains("deleted behind our back")
    });
    assert_eq!(state(&lan, "n1"), "MASTER");
    assert_eq!(exactly_one(&lan), Some("n1"));
    lan.wait("client to answer from n1's MAC", LONG, || {
        lan.client_sees().as_deref() == Some(N1_MAC)
    });

    ip(
        &lan,
        "n2",
        &["addr", "add", "192.0.2.100/24", "dev", "eth0"],
    );
    let t = lan.wait(
        "the BACKUP n2 to remove the VIP added by hand",
        LONG,
        || !lan.has_vip("n2"),
    );
    eprintln!("VIP added on the backup removed after {t:?}");
    lan.wait("the removal to be logged", LONG, || {
        log_of(&lan, "n2").contains("VIP appeared while not MASTER")
    });
    assert_eq!(state(&lan, "n2"), "BACKUP");
    assert_eq!(exactly_one(&lan), Some("n1"));
    // Twice in a row works too (the daemons keep watching).
    ip(
        &lan,
        "n1",
        &["addr", "del", "192.0.2.100/24", "dev", "eth0"],
    );
    lan.wait("n1 to restore its VIP again", LONG, || lan.has_vip("n1"));
    ip(
        &lan,
        "n2",
        &["addr", "add", "192.0.2.100/24", "dev", "eth0"],
    );
    lan.wait("n2 to remove the VIP again", LONG, || !lan.has_vip("n2"));
    assert_eq!(exactly_one(&lan), Some("n1"));
}

/// Lets multicast (the VRRP adverts) through a bridge port, or stops it.
fn mcast_flood(lan: &Lan, port: &str, on_off: &str) {
    sh(&[
        "bridge",
        "-n",
        &lan.ns("lan"),
        "link",
        "set",
        "dev",
        port,
        "mcast_flood",
        on_off,
    ]);
}

// ---------------------------------------------------------------------------------
// 5. email end to end

/// Accepts connections (the kernel does) and never says a word: an SMTP client waits
/// for the greeting until its own timeout.
const BLACKHOLE: &str = r#"
import socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(64)
print("ready", flush=True)
while True:
    time.sleep(3600)
"#;

const SMTP_PORT: &str = "2525";

fn smtp_extra() -> String {
    format!(
        "[smtp]\nserver = \"127.0.0.1:{SMTP_PORT}\"\nfrom = \"ha-agent@n1.example\"\nto = [\"ops@example.com\"]\n"
    )
}

/// Starts the SMTP server inside n1's namespace (where n1's 127.0.0.1 is).
fn start_smtpd(lan: &mut Lan, name: &str, maildir: &Path) {
    let script = lan.path("smtpd.py");
    std::fs::write(&script, SMTPD_SCRIPT).unwrap();
    std::fs::create_dir_all(maildir).unwrap();
    lan.spawn(
        name,
        "n1",
        &[
            "python3",
            script.to_str().unwrap(),
            "127.0.0.1",
            SMTP_PORT,
            maildir.to_str().unwrap(),
        ],
    );
    lan.wait(
        "the SMTP server to listen (is aiosmtpd installed? pip install aiosmtpd)",
        LONG,
        || log_of(lan, name).contains("ready"),
    );
}

fn mails(dir: &Path) -> Vec<String> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "eml"))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
        .iter()
        .map(|p| decode_qp(&std::fs::read_to_string(p).unwrap().replace("\r\n", "\n")))
        .collect()
}

fn header<'a>(mail: &'a str, name: &str) -> &'a str {
    let prefix = format!("{name}: ");
    mail.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .unwrap_or_else(|| panic!("no {name} header in\n{mail}"))
}

fn body_field<'a>(mail: &'a str, name: &str) -> &'a str {
    let prefix = format!("{name}:");
    mail.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no '{name}:' line in\n{mail}"))
}

/// Seconds since the Unix epoch of `2024-05-01T12:34:56.789Z`.
fn parse_time(t: &str) -> f64 {
    let n = |r: std::ops::Range<usize>| -> i64 {
        t.get(r.clone())
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad time {t:?} at {r:?}"))
    };
    assert!(t.len() == 24 && t.ends_with('Z'), "bad time {t:?}");
    let (y, m, d) = (n(0..4), n(5..7), n(8..10));
    // days from civil (H. Hinnant)
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + n(11..13) * 3600 + n(14..16) * 60 + n(17..19);
    secs as f64 + n(20..23) as f64 / 1000.0
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Checks one role-change mail of n1 and returns the time it reports.
fn check_mail(mail: &str, from: &str, to: &str, reason: &str, after: f64, before: f64) -> f64 {
    assert_eq!(
        header(mail, "Subject"),
        format!("[ha-agent] n1 VI_1: {from} -> {to}"),
        "{mail}"
    );
    assert_eq!(header(mail, "X-Envelope-To"), "ops@example.com", "{mail}");
    assert_eq!(header(mail, "From"), "ha-agent@n1.example", "{mail}");
    assert_eq!(body_field(mail, "host"), "n1", "{mail}");
    assert_eq!(body_field(mail, "instance"), "VI_1", "{mail}");
    assert_eq!(
        body_field(mail, "state"),
        format!("{from} -> {to}"),
        "{mail}"
    );
    assert_eq!(body_field(mail, "vips"), format!("{VIP}/24"), "{mail}");
    assert!(
        body_field(mail, "reason").contains(reason),
        "reason {reason:?} missing in\n{mail}"
    );
    let at = parse_time(body_field(mail, "time"));
    assert!(
        at >= after - 1.0 && at <= before + 1.0,
        "time {at} not within [{after}, {before}]\n{mail}"
    );
    at
}

fn wait_mails(lan: &Lan, dir: &Path, n: usize, limit: Duration) -> Vec<String> {
    lan.wait(&format!("{n} mails in {}", dir.display()), limit, || {
        mails(dir).len() >= n
    });
    mails(dir)
}

#[test]
fn email_one_mail_per_transition_of_the_daemon() {
    let mut lan = Lan::new();
    let maildir = lan.path("mail");
    start_smtpd(&mut lan, "smtpd", &maildir);
    let t0 = unix_now();
    lan.start_agent("n1", 150, &smtp_extra());
    lan.wait("n1 master", LONG, || exactly_one(&lan) == Some("n1"));

    // INIT -> BACKUP at start, BACKUP -> MASTER when nobody else is heard.
    let m = wait_mails(&lan, &maildir, 2, LONG);
    let now = unix_now();
    let t_backup = check_mail(&m[0], "INIT", "BACKUP", "startup", t0, now);
    let t_master = check_mail(&m[1], "BACKUP", "MASTER", "master timeout", t0, now);
    assert!(t_backup <= t_master);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(mails(&maildir).len(), 2, "{:#?}", mails(&maildir));

    // Two more transitions, two more mails: MASTER -> BACKUP (maintenance) and, once
    // maintenance is off, BACKUP -> MASTER again (nobody else is there).
    let t1 = unix_now();
    let (ok, out) = lan.ctl("n1", &["maintenance", "VI_1", "on"]);
    assert!(ok, "{out}");
    let m = wait_mails(&lan, &maildir, 3, LONG);
    check_mail(
        &m[2],
        "MASTER",
        "BACKUP",
        "operator maintenance",
        t1,
        unix_now(),
    );
    assert!(!lan.has_vip("n1"));
    std::thread::sleep(Duration::from_secs(3));
    let t2 = unix_now();
    let (ok, out) = lan.ctl("n1", &["maintenance", "VI_1", "off"]);
    assert!(ok, "{out}");
    let m = wait_mails(&lan, &maildir, 4, LONG);
    check_mail(&m[3], "BACKUP", "MASTER", "master timeout", t2, unix_now());
    assert!(lan.has_vip("n1"));
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(mails(&maildir).len(), 4, "{:#?}", mails(&maildir));
}

/// Needs `main.rs` to drop its `Env` before `Arc::try_unwrap` of the notifier and the
/// mailer at shutdown; otherwise neither is shut down and the STOP mail (and, racily,
/// the STOP hook) is lost when the process exits.
#[test]
fn email_stop_is_mailed_before_the_daemon_exits() {
    let mut lan = Lan::new();
    let maildir = lan.path("mail");
    start_smtpd(&mut lan, "smtpd", &maildir);
    lan.start_agent("n1", 150, &smtp_extra());
    lan.wait("n1 master", LONG, || exactly_one(&lan) == Some("n1"));
    wait_mails(&lan, &maildir, 2, LONG);

    // SIGTERM: MASTER -> STOP, mailed before the daemon exits (the daemon has
    // exited when signal() returns).
    let t1 = unix_now();
    lan.signal("n1", libc::SIGTERM);
    let limit = Instant::now() + Duration::from_secs(15);
    while mails(&maildir).len() < 3 {
        assert!(
            Instant::now() < limit,
            "no STOP mail after SIGTERM; n1's log:\n{}",
            log_of(&lan, "n1")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let m = mails(&maildir);
    check_mail(&m[2], "MASTER", "STOP", "shutdown", t1, unix_now());
    assert!(!lan.has_vip("n1"));
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(mails(&maildir).len(), 3, "{:#?}", mails(&maildir));
    assert!(
        lan.notify_log("n1").contains("INSTANCE VI_1 STOP 150"),
        "STOP hook not run before exit: {:?}",
        lan.notify_log("n1")
    );
}

#[test]
fn email_dead_server_does_not_delay_transitions_and_mails_follow() {
    let mut lan = Lan::new();
    let maildir = lan.path("mail");
    // A server that accepts and never answers: each attempt hangs for the SMTP timeout.
    let bh = lan.path("blackhole.py");
    std::fs::write(&bh, BLACKHOLE).unwrap();
    lan.spawn(
        "blackhole",
        "n1",
        &["python3", bh.to_str().unwrap(), SMTP_PORT],
    );
    lan.wait("the silent server to listen", LONG, || {
        log_of(&lan, "blackhole").contains("ready")
    });
    let t0 = unix_now();
    lan.start_agent("n1", 150, &smtp_extra());
    lan.wait("n1 master", LONG, || exactly_one(&lan) == Some("n1"));
    let s = status(&lan, "n1");
    assert_eq!(s["state"], "MASTER", "{s}");
    assert!(mails(&maildir).is_empty());

    // Then nothing listens for a while, then a real server.
    std::thread::sleep(Duration::from_secs(3));
    lan.signal("blackhole", libc::SIGKILL);
    std::thread::sleep(Duration::from_secs(2));
    start_smtpd(&mut lan, "smtpd", &maildir);
    let m = wait_mails(&lan, &maildir, 2, Duration::from_secs(120));
    let now = unix_now();
    let t_backup = check_mail(&m[0], "INIT", "BACKUP", "startup", t0, now);
    let t_master = check_mail(&m[1], "BACKUP", "MASTER", "master timeout", t0, now);
    // Master_Down_Interval at priority 150 is 3.41 s; one hung SMTP attempt alone
    // would take 10 s.
    assert!(
        t_master - t_backup < 8.0,
        "BACKUP -> MASTER took {} s with the mail server hanging",
        t_master - t_backup
    );
    assert!(
        log_of(&lan, "n1").contains("entering MASTER state"),
        "{}",
        log_of(&lan, "n1")
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(mails(&maildir).len(), 2, "{:#?}", mails(&maildir));
}

// ---------------------------------------------------------------------------------
// 6. reload

/// Lines of `ip monitor address` about the VIP: (added, deleted).
fn vip_events(lan: &Lan, name: &str) -> (usize, usize) {
    let log = log_of(lan, name);
    let lines = log.lines().filter(|l| l.contains(&format!("inet {VIP}/")));
    let (del, add): (Vec<&str>, Vec<&str>) = lines.partition(|l| l.starts_with("Deleted"));
    (add.len(), del.len())
}

#[test]
fn reload_applies_priority_without_bouncing_the_vip_and_refuses_bad_config() {
    let mut lan = Lan::new();
    lan.start_agent("n1", 150, "");
    lan.start_agent("n2", 100, "");
    lan.wait("n1 master", LONG, || exactly_one(&lan) == Some("n1"));
    lan.spawn("mon", "n1", &["ip", "monitor", "address"]);
    std::thread::sleep(Duration::from_secs(1));

    let cfg = lan.path("n1.toml");
    let original = std::fs::read_to_string(&cfg).unwrap();
    assert!(original.contains("priority = 150\n"), "{original}");

    // A reload that changes nothing about the VIP leaves it alone.
    std::fs::write(
        &cfg,
        original.replace("priority = 150\n", "priority = 150\ngarp_repeat = 3\n"),
    )
    .unwrap();
    let (ok, out) = lan.ctl("n1", &["reload"]);
    assert!(ok, "{out}");
    lan.wait("the reload to be applied", LONG, || {
        log_of(&lan, "n1").matches("configuration reloaded").count() == 1
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(vip_events(&lan, "mon"), (0, 0), "{}", log_of(&lan, "mon"));
    assert_eq!(exactly_one(&lan), Some("n1"));

    // Priority 150 -> 50: n2 (100) preempts; n1 drops the VIP once, when it yields.
    std::fs::write(
        &cfg,
        original.replace("priority = 150\n", "priority = 50\n"),
    )
    .unwrap();
    let (ok, out) = lan.ctl("n1", &["reload"]);
    assert!(ok, "{out}");
    lan.wait("the VIP to move to n2", LONG, || {
        exactly_one(&lan) == Some("n2")
    });
    let s = status(&lan, "n1");
    assert_eq!(s["state"], "BACKUP", "{s}");
    assert_eq!(s["base_priority"], 50, "{s}");
    assert_eq!(s["priority"], 50, "{s}");
    assert!(
        s["last_transition"]
            .to_string()
            .contains("peer 192.0.2.2 with higher priority 100"),
        "{s}"
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        vip_events(&lan, "mon"),
        (0, 1),
        "n1 should only have removed the VIP once:\n{}",
        log_of(&lan, "mon")
    );

    // A broken config is refused; the daemon keeps the old one and keeps working.
    std::fs::write(
        &cfg,
        original.replace("priority = 150\n", "priorty = 150\n"),
    )
    .unwrap();
    let (ok, out) = lan.ctl("n1", &["reload"]);
    assert!(ok, "{out}");
    lan.wait("the bad reload to be refused", LONG, || {
        log_of(&lan, "n1").contains("reload refused")
    });
    let log = log_of(&lan, "n1");
    let line = log.lines().find(|l| l.contains("reload refused")).unwrap();
    assert!(
        line.contains(&format!("{}:", cfg.display())) && line.contains("priorty"),
        "{line}"
    );
    std::thread::sleep(Duration::from_secs(2));
    let s = status(&lan, "n1");
    assert_eq!(s["base_priority"], 50, "{s}");
    assert_eq!(s["state"], "BACKUP", "{s}");
    assert_eq!(exactly_one(&lan), Some("n2"));

    // And a good config afterwards is applied: back at 150, n1 preempts.
    std::fs::write(&cfg, &original).unwrap();
    let (ok, out) = lan.ctl("n1", &["reload"]);
    assert!(ok, "{out}");
    lan.wait("n1 to preempt at 150 again", LONG, || {
        exactly_one(&lan) == Some("n1")
    });
    assert_eq!(status(&lan, "n1")["base_priority"], 150);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(vip_events(&lan, "mon"), (1, 1), "{}", log_of(&lan, "mon"));
}

/// A second instance (VI_2: VRID 52, VIP 192.0.2.101/24) for `host`'s config file.
fn second_instance(lan: &Lan, host: &str, priority: u8) -> String {
    format!(
        "[[vrrp_instance]]\n\
         name = \"VI_2\"\n\
         interface = \"eth0\"\n\
         virtual_router_id = 52\n\
         priority = {priority}\n\
         virtual_ipaddress = [\"192.0.2.101/24\"]\n\
         notify = \"echo >> {} \"\n\
         notify_stop = \"echo VI_2 stopped >> {}\"\n",
        lan.path(&format!("{host}-notify.log")).display(),
        lan.path(&format!("{host}-stop.log")).display(),
    )
}

fn has(lan: &Lan, host: &str, addr: &str) -> bool {
    sh(&[
        "ip",
        "-n",
        &lan.ns(host),
        "-4",
        "addr",
        "show",
        "dev",
        "eth0",
    ])
    .contains(&format!(" {addr}/"))
}

#[test]
fn reload_starts_added_and_stops_removed_instances() {
    let mut lan = Lan::new();
    let maildir = lan.path("mail");
    start_smtpd(&mut lan, "smtpd", &maildir);
    lan.start_agent("n1", 150, &smtp_extra());
    let extra = second_instance(&lan, "n2", 100);
    lan.start_agent("n2", 100, &extra);
    lan.wait("n1 master of VI_1", LONG, || {
        exactly_one(&lan) == Some("n1")
    });
    lan.wait("n2 master of VI_2 (alone in it)", LONG, || {
        has(&lan, "n2", "192.0.2.101")
    });
    // From now on VI_1's VIP on n1 must not be touched.
    lan.spawn("mon", "n1", &["ip", "monitor", "address"]);
    std::thread::sleep(Duration::from_secs(1));

    // Reload with VI_2 added (priority 150): it starts and preempts n2; VI_1 is left
    // alone.
    let cfg = lan.path("n1.toml");
    let original = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        format!("{original}{}", second_instance(&lan, "n1", 150)),
    )
    .unwrap();
    let (ok, out) = lan.ctl("n1", &["reload"]);
    assert!(ok, "{out}");
    lan.wait("n1 to start VI_2 and take its VIP", LONG, || {
        has(&lan, "n1", "192.0.2.101") && !has(&lan, "n2", "192.0.2.101")
    });
    assert!(log_of(&lan, "n1").contains("reload: instance started"));
    let names: Vec<Value> = statuses(&lan, "n1")
        .iter()
        .map(|i| i["name"].clone())
        .collect();
    assert_eq!(names, vec!["VI_1", "VI_2"]);
    lan.wait("n1's VI_2 to report MASTER", LONG, || {
        status_of(&lan, "n1", "VI_2").is_some_and(|s| s["state"] == "MASTER")
    });
    assert_eq!(status(&lan, "n1")["state"], "MASTER");
    assert_eq!(exactly_one(&lan), Some("n1"));
    lan.wait("n1's hook for VI_2 MASTER", LONG, || {
        lan.notify_log("n1").contains("INSTANCE VI_2 MASTER 150")
    });

    // Reload without VI_2: it stops as at shutdown. Priority-0 advert (the last advert
    // n2 heard from n1 has priority 0), VIP removed, STOP hooks and a STOP mail; VI_1
    // and its VIP stay.
    let t1 = unix_now();
    std::fs::write(&cfg, &original).unwrap();
    let (ok, out) = lan.ctl("n1", &["reload"]);
    assert!(ok, "{out}");
    lan.wait("n2 to take VI_2 back", LONG, || {
        has(&lan, "n2", "192.0.2.101") && !has(&lan, "n1", "192.0.2.101")
    });
    lan.wait("n1 to list VI_1 only", LONG, || {
        statuses(&lan, "n1").len() == 1
    });
    lan.wait("n2's VI_2 to report MASTER", LONG, || {
        status_of(&lan, "n2", "VI_2").is_some_and(|s| s["state"] == "MASTER")
    });
    let n2 = status_of(&lan, "n2", "VI_2").unwrap();
    assert_eq!(n2["peer"], serde_json::json!(["192.0.2.1", 0]), "{n2}");
    assert!(
        n2["last_transition"]
            .to_string()
            .contains("master sent priority 0"),
        "{n2}"
    );
    assert!(
        log_of(&lan, "n1").contains("reload: instance removed from the configuration"),
        "{}",
        log_of(&lan, "n1")
    );
    lan.wait("the STOP hooks of VI_2", LONG, || {
        lan.notify_log("n1").contains("INSTANCE VI_2 STOP 150")
            && std::fs::read_to_string(lan.path("n1-stop.log"))
                .is_ok_and(|t| t.contains("VI_2 stopped"))
    });
    let vi2_stop = |m: &String| header(m, "Subject") == "[ha-agent] n1 VI_2: MASTER -> STOP";
    lan.wait("the STOP mail of the removed VI_2", LONG, || {
        mails(&maildir).iter().any(vi2_stop)
    });
    let m = mails(&maildir);
    let stop = m.iter().find(|m| vi2_stop(m)).unwrap();
    assert_eq!(body_field(stop, "instance"), "VI_2", "{stop}");
    assert_eq!(body_field(stop, "vips"), "192.0.2.101/24", "{stop}");
    assert!(body_field(stop, "reason").contains("shutdown"), "{stop}");
    assert!(parse_time(body_field(stop, "time")) >= t1 - 1.0, "{stop}");
    // VI_1 never noticed.
    assert_eq!(status(&lan, "n1")["state"], "MASTER");
    assert_eq!(exactly_one(&lan), Some("n1"));
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(vip_events(&lan, "mon"), (0, 0), "{}", log_of(&lan, "mon"));
}

// ---------------------------------------------------------------------------------
// 7. maintenance

#[test]
fn maintenance_hands_the_vip_over_and_holds_it_back() {
    let mut lan = Lan::new();
    lan.start_agent("n1", 150, "");
    lan.start_agent("n2", 100, "");
    lan.wait("n1 master", LONG, || exactly_one(&lan) == Some("n1"));
    std::thread::sleep(Duration::from_secs(2));

    let (ok, out) = lan.ctl("n1", &["maintenance", "VI_1", "on"]);
    assert!(ok && out.contains("maintenance on"), "{out}");
    lan.wait("the VIP to move to n2", LONG, || {
        exactly_one(&lan) == Some("n2")
    });
    lan.wait("client to answer from n2's MAC", LONG, || {
        lan.client_sees().as_deref() == Some(N2_MAC)
    });
    let s = status(&lan, "n1");
    assert_eq!(s["state"], "BACKUP", "{s}");
    assert_eq!(s["maintenance"], true, "{s}");
    assert!(
        s["last_transition"]
            .to_string()
            .contains("operator maintenance"),
        "{s}"
    );

    // Our priority (150) is higher, but we stay out while in maintenance.
    for _ in 0..8 {
        std::thread::sleep(Duration::from_secs(1));
        assert_eq!(
            exactly_one(&lan),
            Some("n2"),
            "n1 took the VIP back in maintenance"
        );
    }
    assert_eq!(state(&lan, "n1"), "BACKUP");

    let (ok, out) = lan.ctl("n1", &["maintenance", "VI_1", "off"]);
    assert!(ok && out.contains("maintenance off"), "{out}");
    lan.wait("n1 to preempt after maintenance", LONG, || {
        exactly_one(&lan) == Some("n1")
    });
    assert_eq!(status(&lan, "n1")["maintenance"], false);
    lan.wait("client to answer from n1's MAC", LONG, || {
        lan.client_sees().as_deref() == Some(N1_MAC)
    });
}
