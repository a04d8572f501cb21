//! Two `ha-agent`s with an IPv6 VIP (VRRPv3 over IPv6) on the IPv6 bridge LAN of
//! `common` (`Lan::new_v6`: n1 2001:db8:0:1::1, n2 ::2, client c1 ::50, VIP
//! 2001:db8:0:1::100/64; no IPv4 anywhere, duplicate address detection off).
//!
//! Every test builds its own namespaces and removes them, and stops only the processes
//! it started, by PID. Timeouts are generous; times are printed, never asserted.

mod common;
use antler_ha_agent::net::Vrrp6Socket;
use antler_ha_agent::packet::{Advert, Checksum, Version, VRRP_GROUP6};
use common::*;
use serde_json::Value;
use std::net::Ipv6Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

/// The status of instance VI_1 on `host`, as `ha-agent status --json` prints it.
fn status(lan: &Lan, host: &str) -> Value {
    let (ok, out) = lan.ctl(host, &["status", "--json"]);
    assert!(ok, "status on {host} failed: {out}\n{}", lan.logs());
    let v: Value = serde_json::from_str(out.trim())
        .unwrap_or_else(|e| panic!("status on {host} is not JSON ({e}): {out}"));
    v["instances"][0].clone()
}

/// The client's neighbour entries neither expire nor get re-checked during a test, so
/// only an unsolicited neighbour advertisement can move the VIP's entry to another MAC.
fn client_never_expires_neighbours(lan: &Lan) {
    sh(&[
        "ip",
        "netns",
        "exec",
        &lan.ns("c1"),
        "sh",
        "-c",
        "echo 600000 > /proc/sys/net/ipv6/neigh/eth0/base_reachable_time_ms && \
         echo 600 > /proc/sys/net/ipv6/neigh/eth0/delay_first_probe_time",
    ]);
}

/// Waits until the client's cache maps the VIP to `mac` without the client sending
/// anything (so it was told by an unsolicited neighbour advertisement).
fn cache_moves_to(lan: &Lan, mac: &str) -> Duration {
    lan.wait(
        &format!("client's neighbour cache to map the VIP to {mac} (unsolicited NA)"),
        LONG,
        || lan.client_cache().as_deref() == Some(mac),
    )
}

#[test]
fn ipv6_election_kill9_takeover_neighbour_advert_and_restore() {
    let mut lan = Lan::new_v6();
    client_never_expires_neighbours(&lan);
    lan.start_agent("n1", 150, "advert_int = 1.0");
    lan.start_agent("n2", 100, "advert_int = 1.0");
    lan.wait("n1 to be the only VIP owner", LONG, || {
        exactly_one(&lan) == Some("n1")
    });
    lan.wait("client to get replies from n1's MAC", LONG, || {
        lan.client_sees().as_deref() == Some(N1_MAC)
    });
    let n1 = status(&lan, "n1");
    assert_eq!(n1["state"], "MASTER", "{n1}");
    assert_eq!(n1["family"], "IPv6", "{n1}");
    assert_eq!(
        n1["local"], N1_LL,
        "adverts leave from the link-local address: {n1}"
    );
    assert_eq!(lan.link_local("n1"), N1_LL);
    lan.wait("n2 to hear n1 as master", LONG, || {
        let n2 = status(&lan, "n2");
        n2["state"] == "BACKUP" && n2["master"] == N1_LL && n2["peer"][1] == 150
    });
    let n2 = status(&lan, "n2");
    assert!(n2["rejected"].as_object().unwrap().is_empty(), "{n2}");
    assert!(n2["adverts_received"].as_u64().unwrap() > 0, "{n2}");

    // kill -9: n2 takes over after Master_Down_Interval; n1's kernel keeps the VIP, but
    // n2's unsolicited neighbour advertisements move the client's cache entry without
    // the client asking (its entries never expire in this test).
    let t0 = Instant::now();
    lan.signal("n1", libc::SIGKILL);
    lan.wait("n2 to take the VIP after kill -9", LONG, || {
        lan.has_vip("n2")
    });
    eprintln!("kill -9 -> n2 has the VIP after {:?}", t0.elapsed());
    let t = cache_moves_to(&lan, N2_MAC);
    eprintln!("client cache on n2's MAC {t:?} after n2 took the VIP");
    lan.wait("client to get replies from n2's MAC", LONG, || {
        lan.client_sees().as_deref() == Some(N2_MAC)
    });
    assert!(lan.notify_log("n2").contains("INSTANCE VI_1 MASTER 100"));

    // A VIP deleted behind the master's back is restored (the monitor sees IPv6
    // address deletions) and re-announced.
    sh(&[
        "ip",
        "-n",
        &lan.ns("n2"),
        "-6",
        "addr",
        "del",
        "2001:db8:0:1::100/64",
        "dev",
        "eth0",
    ]);
    lan.wait("n2 to restore its VIP", LONG, || lan.has_vip("n2"));
    let log = std::fs::read_to_string(lan.path("n2.log")).unwrap();
    assert!(log.contains("deleted behind our back"), "{log}");
    let vip_line = sh(&[
        "ip",
        "-n",
        &lan.ns("n2"),
        "-6",
        "addr",
        "show",
        "dev",
        "eth0",
    ]);
    let vip_line = vip_line
        .lines()
        .find(|l| l.contains(VIP6))
        .unwrap_or_default()
        .to_string();
    assert!(
        vip_line.contains("nodad") && !vip_line.contains("tentative"),
        "{vip_line}"
    );

    // n1 returns: removes its leftover VIP at start, preempts (150), and announces
    // itself: the client's cache follows again without asking.
    lan.start_agent("n1", 150, "advert_int = 1.0");
    lan.wait("n1 to preempt", LONG, || exactly_one(&lan) == Some("n1"));
    cache_moves_to(&lan, N1_MAC);
    lan.wait("client to get replies from n1's MAC", LONG, || {
        lan.client_sees().as_deref() == Some(N1_MAC)
    });

    // Switchover works over IPv6 too: n2's hellos reach n1 on ff02::1 from n2's
    // link-local address (the same address its adverts would come from).
    lan.wait("n1 to hear n2's hellos", LONG, || {
        status(&lan, "n1")["peer"][0] == N2_LL
    });
    let (ok, out) = lan.ctl("n1", &["switchover", "VI_1"]);
    assert!(ok, "{out}");
    assert!(out.contains(&format!("MASTER moved to {N2_LL}")), "{out}");
    lan.wait("n2 to own the VIP alone", LONG, || {
        exactly_one(&lan) == Some("n2")
    });
    cache_moves_to(&lan, N2_MAC);

    // Graceful stop of the master: priority 0, n1 takes over after Skew_Time.
    let t0 = Instant::now();
    lan.signal("n2", libc::SIGTERM);
    lan.wait("n1 to take over after n2's graceful stop", LONG, || {
        exactly_one(&lan) == Some("n1")
    });
    eprintln!("graceful stop -> n1 master after {:?}", t0.elapsed());
    cache_moves_to(&lan, N1_MAC);
    assert!(
        lan.notify_log("n2").contains("INSTANCE VI_1 STOP 100"),
        "{}",
        lan.notify_log("n2")
    );
}

/// A raw IPv6 protocol-112 socket in `host`'s namespace whose multicast hop limit is
/// `hops` (a hostile sender; the kernel picks its link-local source address).
fn hostile_socket(lan: &Lan, host: &str, hops: i32) -> OwnedFd {
    let path = format!("/var/run/netns/{}", lan.ns(host));
    std::thread::spawn(move || {
        let f = std::fs::File::open(&path).unwrap();
        // SAFETY: `f` is an open namespace file; setns moves only this short-lived
        // thread, and the socket stays in the namespace it was opened in.
        assert_eq!(unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) }, 0);
        // SAFETY: socket(2) takes no pointers; the result is checked.
        let fd = unsafe { libc::socket(libc::AF_INET6, libc::SOCK_RAW, 112) };
        assert!(fd >= 0, "{}", std::io::Error::last_os_error());
        // SAFETY: `fd` is a fresh descriptor owned by nothing else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let ifindex = antler_ha_agent::net::if_info("eth0").unwrap().index as libc::c_int;
        for (opt, val) in [
            (libc::IPV6_MULTICAST_IF, ifindex),
            (libc::IPV6_MULTICAST_HOPS, hops),
        ] {
            // SAFETY: `val` is a live c_int of the size passed.
            let r = unsafe {
                libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::IPPROTO_IPV6,
                    opt,
                    (&val as *const libc::c_int).cast(),
                    4,
                )
            };
            assert_eq!(r, 0, "{}", std::io::Error::last_os_error());
        }
        fd
    })
    .join()
    .unwrap()
}

fn send_to_group(fd: &OwnedFd, payload: &[u8]) {
    // SAFETY: sockaddr_in6 is plain old data; all-zero is valid.
    let mut sa: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
    sa.sin6_family = libc::AF_INET6 as u16;
    sa.sin6_addr.s6_addr = VRRP_GROUP6.octets();
    // SAFETY: `payload` and `sa` are live for the call and of the sizes passed.
    let r = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            payload.as_ptr().cast(),
            payload.len(),
            0,
            (&sa as *const libc::sockaddr_in6).cast(),
            std::mem::size_of::<libc::sockaddr_in6>() as u32,
        )
    };
    assert_eq!(
        r,
        payload.len() as isize,
        "{}",
        std::io::Error::last_os_error()
    );
}

/// The client's link-local address (source of its hostile packets).
fn c1_link_local(lan: &Lan) -> Ipv6Addr {
    lan.link_local("c1").parse().unwrap()
}

#[test]
fn ipv6_bad_adverts_are_counted_and_ignored() {
    let mut lan = Lan::new_v6();
    lan.start_agent("n1", 100, "advert_int = 1.0");
    lan.wait("n1 master", LONG, || exactly_one(&lan) == Some("n1"));
    let before = status(&lan, "n1");

    // From the client: adverts that would win (priority 254) if they were accepted.
    let src = c1_link_local(&lan);
    let advert = |version| Advert {
        version,
        vrid: 51,
        priority: 254,
        interval_cs: 100,
        auth: None,
        addrs: vec![VIP6.parse::<Ipv6Addr>().unwrap().into()],
    };
    let good = advert(Version::V3).encode(src, VRRP_GROUP6, Checksum::PseudoHeader);
    let mut bad_sum = good.clone();
    bad_sum[6] ^= 0x5a;
    // A checksum computed without the pseudo-header (what "v3 as v2" would send).
    let mut plain = good.clone();
    plain[6..8].copy_from_slice(&[0, 0]);
    let c = antler_ha_agent::packet::inet_checksum(&[&plain]);
    plain[6..8].copy_from_slice(&c.to_be_bytes());
    let mut v2 = good.clone();
    v2[0] = 0x21;
    let truncated = good[..20].to_vec();

    let hop64 = hostile_socket(&lan, "c1", 64);
    let hop255 = hostile_socket(&lan, "c1", 255);
    const ROUNDS: u64 = 5;
    for _ in 0..ROUNDS {
        send_to_group(&hop64, &good);
        for p in [&bad_sum, &plain, &v2, &truncated] {
            send_to_group(&hop255, p);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let want = serde_json::json!({
        "BadTtl": ROUNDS,
        "BadChecksum": 2 * ROUNDS,
        "WrongVersion": ROUNDS,
        "BadLength": ROUNDS,
    });
    lan.wait("n1 to count every bad packet", LONG, || {
        status(&lan, "n1")["rejected"] == want
    });
    std::thread::sleep(Duration::from_secs(2));
    let n1 = status(&lan, "n1");
    assert_eq!(n1["rejected"], want, "{n1}");
    assert_eq!(n1["state"], "MASTER", "{n1}");
    assert_eq!(n1["last_transition"], before["last_transition"], "{n1}");
    assert!(lan.has_vip("n1"));

    // The same advert with hop limit 255 and the right checksum is a real advert:
    // n1 yields to the higher priority (this proves the rejections above were for
    // the hop limit and checksum, not for something else in the packet).
    let sock = {
        let path = format!("/var/run/netns/{}", lan.ns("c1"));
        std::thread::spawn(move || {
            let f = std::fs::File::open(&path).unwrap();
            // SAFETY: as above, only this thread changes namespace.
            assert_eq!(unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) }, 0);
            Vrrp6Socket::open("eth0", false).unwrap()
        })
        .join()
        .unwrap()
    };
    let t = Instant::now();
    while lan.has_vip("n1") && t.elapsed() < LONG {
        sock.send(&good, src, VRRP_GROUP6).unwrap();
        std::thread::sleep(Duration::from_millis(200));
    }
    let n1 = status(&lan, "n1");
    assert_eq!(n1["state"], "BACKUP", "{n1}\n{}", lan.logs());
    assert_eq!(n1["master"], src.to_string(), "{n1}");
}

/// Unicast peers over IPv6 are given by their link-local addresses (the source of
/// their adverts): election and takeover work without ff02::12.
#[test]
fn ipv6_unicast_peers_by_link_local_address() {
    let mut lan = Lan::new_v6();
    lan.start_agent(
        "n1",
        150,
        &format!("advert_int = 1.0\nunicast_peer = [\"{N2_LL}\"]"),
    );
    lan.start_agent(
        "n2",
        100,
        &format!("advert_int = 1.0\nunicast_peer = [\"{N1_LL}\"]"),
    );
    lan.wait("n1 to be the only VIP owner", LONG, || {
        exactly_one(&lan) == Some("n1")
    });
    lan.wait("n2 to hear n1's unicast adverts", LONG, || {
        let n2 = status(&lan, "n2");
        n2["state"] == "BACKUP" && n2["master"] == N1_LL && n2["peer"][1] == 150
    });
    // Nothing went to the multicast group: n1's socket is not in it.
    let groups = sh(&[
        "ip",
        "-n",
        &lan.ns("n1"),
        "-6",
        "maddr",
        "show",
        "dev",
        "eth0",
    ]);
    assert!(!groups.contains("ff02::12"), "{groups}");
    // The client knows the VIP at n1 (the killed node's kernel keeps answering for
    // it, so a client that asks only afterwards could get either MAC).
    lan.wait("client to get replies from n1's MAC", LONG, || {
        lan.client_sees().as_deref() == Some(N1_MAC)
    });
    lan.signal("n1", libc::SIGKILL);
    lan.wait("n2 to take the VIP after kill -9", LONG, || {
        lan.has_vip("n2")
    });
    lan.wait("client to get replies from n2's MAC", LONG, || {
        lan.client_sees().as_deref() == Some(N2_MAC)
    });
    assert!(status(&lan, "n2")["rejected"]
        .as_object()
        .unwrap()
        .is_empty());
}
