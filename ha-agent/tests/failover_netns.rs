//! Two `ha-agent` processes (and keepalived) on a bridge LAN built from network
//! namespaces: n1 192.0.2.1, n2 192.0.2.2, client c1 192.0.2.50, VIP 192.0.2.100.
//! Every test builds its own namespaces and removes them, and stops only the processes
//! it started, by PID.

mod common;
use common::*;
use std::fs;
use std::process::Command;
use std::time::{Duration, Instant};

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
}
