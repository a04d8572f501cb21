//! `ha_agent::net` against the real kernel: every test builds its own network
//! namespaces joined by a veth pair (`va` in A, `vb` in B), uses only 192.0.2.0/24,
//! 2001:db8::/32 and link-local addresses, and
//! deletes the namespaces in a Drop guard, also when the test fails. Socket work runs
//! on threads that `setns(2)` into a namespace; sockets stay in the namespace they
//! were opened in, so they can then be used from any thread.
//!
//! Needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN, CAP_NET_RAW) and iproute2.

use antler_ha_agent::net::{
    if_info, link_local_ipv6, primary_ipv4, raw_os_error, Datagram6, GarpSender, NetEvent,
    NetMonitor, Netlink, Vrrp6Socket, VrrpSocket,
};
use antler_ha_agent::packet::{
    decode_ip, decode_v6, encode_ip, garp_frame, na_frame, Advert, Checksum, Received, Version,
    VRRP_GROUP, VRRP_GROUP6,
};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Once;
use std::time::{Duration, Instant};

const A_ADDR: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const B_ADDR: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
const VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 100);
const VIP2: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 101);
/// Upper bound for anything that should happen "soon"; generous for loaded CI.
const PATIENCE: Duration = Duration::from_secs(15);

/// Runs `ip ARGS`, panicking with its stderr on failure; returns stdout.
fn ip(args: &[&str]) -> String {
    let out = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run ip {args:?}: {e}"));
    assert!(
        out.status.success(),
        "ip {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Deletes `hanet-PID-*` namespaces left by test processes that no longer run
/// (killed before their guards ran). Namespaces of live processes are left alone.
fn sweep_stale() {
    static SWEEP: Once = Once::new();
    SWEEP.call_once(|| {
        let list = Command::new("ip").args(["netns", "list"]).output();
        let Ok(list) = list else { return };
        for line in String::from_utf8_lossy(&list.stdout).lines() {
            let Some(name) = line.split_whitespace().next() else {
                continue;
            };
            let Some(pid) = name
                .strip_prefix("hanet-")
                .and_then(|r| r.split('-').next())
            else {
                continue;
            };
            if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
                let _ = Command::new("ip").args(["netns", "del", name]).status();
            }
        }
    });
}

/// A network namespace that exists for the guard's lifetime.
struct Netns {
    name: String,
}

impl Netns {
    fn new(tag: &str) -> Netns {
        static N: AtomicUsize = AtomicUsize::new(0);
        sweep_stale();
        let name = format!(
            "hanet-{}-{}-{tag}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        ip(&["netns", "add", &name]);
        Netns { name }
    }

    /// Runs `f` on a thread inside this namespace and returns its result (re-raising
    /// its panic).
    fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/var/run/netns/{}", self.name);
        let h = std::thread::spawn(move || {
            enter_netns(&path);
            f()
        });
        h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting the namespace also destroys the veth ends inside it.
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Moves the calling thread into the namespace bound at `path`.
fn enter_netns(path: &str) {
    let f = std::fs::File::open(path).unwrap_or_else(|e| panic!("open {path}: {e}"));
    // SAFETY: `f` is an open namespace file for the duration of the call; setns only
    // changes the calling thread's network namespace.
    let r = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(r, 0, "setns {path}: {}", std::io::Error::last_os_error());
}

/// Two namespaces joined by veth: `va` (A, 192.0.2.1/24) and `vb` (B, 192.0.2.2/24),
/// both up and operationally running.
struct Pair {
    a: Netns,
    b: Netns,
}

impl Pair {
    fn new() -> Pair {
        let p = Pair {
            a: Netns::new("a"),
            b: Netns::new("b"),
        };
        let (a, b) = (p.a.name.as_str(), p.b.name.as_str());
        ip(&[
            "-n", a, "link", "add", "va", "type", "veth", "peer", "name", "vb", "netns", b,
        ]);
        ip(&["-n", a, "addr", "add", "192.0.2.1/24", "dev", "va"]);
        ip(&["-n", b, "addr", "add", "192.0.2.2/24", "dev", "vb"]);
        ip(&["-n", a, "link", "set", "va", "up"]);
        ip(&["-n", b, "link", "set", "vb", "up"]);
        p.wait_running();
        p
    }

    /// Waits until both ends report `state UP` (linkwatch has run and the qdisc is
    /// attached, so frames are no longer dropped).
    fn wait_running(&self) {
        let deadline = Instant::now() + PATIENCE;
        for (ns, dev) in [(&self.a.name, "va"), (&self.b.name, "vb")] {
            while !ip(&["-n", ns, "-o", "link", "show", dev]).contains("state UP") {
                assert!(Instant::now() < deadline, "{dev} in {ns} never came up");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

fn fmt_mac(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Lines of `ip -4 addr show dev DEV` in `ns` that mention `addr/`.
fn ip_addr_lines(ns: &str, dev: &str, addr: Ipv4Addr) -> Vec<String> {
    ip(&["-n", ns, "-4", "addr", "show", "dev", dev])
        .lines()
        .filter(|l| l.contains(&format!("inet {addr}/")))
        .map(|l| l.trim().to_string())
        .collect()
}

#[test]
fn addresses_add_query_delete() {
    let p = Pair::new();
    let ns = p.a.name.clone();
    p.a.run(move || {
        let info = if_info("va").unwrap();
        assert!(info.index > 0);
        assert!(info.up, "{info:?}");
        assert_eq!(info.addrs, vec![(A_ADDR, 24)]);
        let link = ip(&["-n", &ns, "-o", "link", "show", "va"]);
        assert!(
            link.contains(&format!("link/ether {}", fmt_mac(info.mac))),
            "{link}"
        );
        let idx = info.index;

        let nl = Netlink::open().unwrap();
        assert!(!nl.has_addr(idx, VIP).unwrap());
        nl.add_addr(idx, VIP, 24).unwrap();
        nl.add_addr(idx, VIP, 24).unwrap(); // EEXIST is success
        assert!(nl.has_addr(idx, VIP).unwrap());
        let lines = ip_addr_lines(&ns, "va", VIP);
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(
            lines[0].starts_with("inet 192.0.2.100/24 brd 192.0.2.255 scope global"),
            "{lines:?}"
        );
        assert!(lines[0].ends_with(" va"), "label: {lines:?}");
        assert_eq!(nl.addrs(idx).unwrap(), vec![(A_ADDR, 24), (VIP, 24)]);
        assert_eq!(if_info("va").unwrap().addrs, vec![(A_ADDR, 24), (VIP, 24)]);

        // The advert source skips the virtual addresses.
        assert_eq!(primary_ipv4("va", &[VIP]).unwrap(), A_ADDR);
        let e = primary_ipv4("va", &[A_ADDR, VIP]).unwrap_err();
        assert!(e.to_string().contains("va"), "{e}");

        nl.del_addr(idx, VIP, 24).unwrap();
        nl.del_addr(idx, VIP, 24).unwrap(); // EADDRNOTAVAIL is success
        assert!(!nl.has_addr(idx, VIP).unwrap());
        assert!(ip_addr_lines(&ns, "va", VIP).is_empty());
        assert!(nl.has_addr(idx, A_ADDR).unwrap(), "primary untouched");

        // A keepalived-style /32 VIP: no broadcast.
        nl.add_addr(idx, VIP2, 32).unwrap();
        let lines = ip_addr_lines(&ns, "va", VIP2);
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(lines[0].starts_with("inet 192.0.2.101/32 scope global"));
        assert!(nl.has_addr(idx, VIP2).unwrap());
        nl.del_addr(idx, VIP2, 32).unwrap();
        assert!(!nl.has_addr(idx, VIP2).unwrap());
        assert!(ip_addr_lines(&ns, "va", VIP2).is_empty());

        // Errors name what failed.
        let e = if_info("nosuch0").unwrap_err();
        assert!(e.to_string().contains("nosuch0"), "{e}");
        assert_eq!(raw_os_error(&e), Some(libc::ENODEV), "{e}");
        let e = nl.add_addr(999_999, VIP, 24).unwrap_err();
        assert!(e.to_string().contains("192.0.2.100/24"), "{e}");
        assert!(e.to_string().contains("999999"), "{e}");
        let e = VrrpSocket::open("nosuch0", true).unwrap_err();
        assert!(e.to_string().contains("nosuch0"), "{e}");
        let e = GarpSender::open("nosuch0").unwrap_err();
        assert!(e.to_string().contains("nosuch0"), "{e}");
    });
}

/// Reads events until one equals `want`; panics with everything seen otherwise.
fn wait_event(mon: &NetMonitor, want: NetEvent) {
    let deadline = Instant::now() + PATIENCE;
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        let left = deadline.saturating_duration_since(Instant::now());
        let ev = mon.recv(left).unwrap();
        if ev.contains(&want) {
            return;
        }
        seen.extend(ev);
    }
    panic!("never saw {want:?}; saw {seen:?}");
}

#[test]
fn monitor_sees_address_and_link_changes() {
    let p = Pair::new();
    let ns = p.a.name.clone();
    p.a.run(move || {
        let idx = if_info("va").unwrap().index;
        let mon = NetMonitor::open().unwrap();

        // Nothing happening: the timeout is honoured.
        let t0 = Instant::now();
        let _ = mon.recv(Duration::from_millis(200)).unwrap();
        assert!(t0.elapsed() < Duration::from_secs(5));

        ip(&["-n", &ns, "addr", "add", "192.0.2.100/24", "dev", "va"]);
        wait_event(
            &mon,
            NetEvent::AddrAdded {
                ifindex: idx,
                addr: VIP.into(),
            },
        );
        ip(&["-n", &ns, "addr", "del", "192.0.2.100/24", "dev", "va"]);
        wait_event(
            &mon,
            NetEvent::AddrRemoved {
                ifindex: idx,
                addr: VIP.into(),
            },
        );

        // Our own Netlink changes are seen the same way.
        let nl = Netlink::open().unwrap();
        nl.add_addr(idx, VIP2, 32).unwrap();
        wait_event(
            &mon,
            NetEvent::AddrAdded {
                ifindex: idx,
                addr: VIP2.into(),
            },
        );
        nl.del_addr(idx, VIP2, 32).unwrap();
        wait_event(
            &mon,
            NetEvent::AddrRemoved {
                ifindex: idx,
                addr: VIP2.into(),
            },
        );

        ip(&["-n", &ns, "link", "set", "va", "down"]);
        wait_event(
            &mon,
            NetEvent::Link {
                ifindex: idx,
                up: false,
            },
        );
        assert!(!if_info("va").unwrap().up);
        ip(&["-n", &ns, "link", "set", "va", "up"]);
        wait_event(
            &mon,
            NetEvent::Link {
                ifindex: idx,
                up: true,
            },
        );
        assert!(if_info("va").unwrap().up);
    });
}

/// Sends `packet` to `dst` on `tx` every 200 ms until `rx` receives a VRRP packet
/// from `src` to `dst`, which is returned decoded.
fn exchange(
    tx: &VrrpSocket,
    packet: &[u8],
    dst: Ipv4Addr,
    rx: &VrrpSocket,
    src: Ipv4Addr,
) -> Received {
    let got = AtomicBool::new(false);
    std::thread::scope(|s| {
        let receiver = s.spawn(|| {
            let deadline = Instant::now() + PATIENCE;
            let mut buf = [0u8; 2048];
            let mut other = Vec::new();
            while Instant::now() < deadline {
                let Some(n) = rx.recv(&mut buf, Duration::from_millis(500)).unwrap() else {
                    continue;
                };
                match decode_ip(&buf[..n]) {
                    Ok(r) if r.src == src && r.dst == dst => {
                        got.store(true, Ordering::SeqCst);
                        return r;
                    }
                    r => other.push(r),
                }
            }
            got.store(true, Ordering::SeqCst);
            panic!(
                "{}: nothing from {src} to {dst} (other packets: {other:?})",
                rx.ifname()
            );
        });
        let deadline = Instant::now() + PATIENCE;
        while !got.load(Ordering::SeqCst) && Instant::now() < deadline {
            tx.send(packet, dst).unwrap();
            std::thread::sleep(Duration::from_millis(200));
        }
        receiver
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}

/// Every decodable packet `rx` receives within `window`.
fn drain(rx: &VrrpSocket, window: Duration) -> Vec<Received> {
    let deadline = Instant::now() + window;
    let mut buf = [0u8; 2048];
    let mut out = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return out;
        }
        if let Some(n) = rx.recv(&mut buf, left).unwrap() {
            out.extend(decode_ip(&buf[..n]).ok());
        }
    }
}

fn packet(a: &Advert, src: Ipv4Addr, dst: Ipv4Addr, id: u16, cs: Checksum) -> Vec<u8> {
    encode_ip(src, dst, id, &a.encode(src, dst, cs))
}

#[test]
fn vrrp_multicast_between_namespaces() {
    let p = Pair::new();
    let sa = p.a.run(|| VrrpSocket::open("va", true).unwrap());
    let sb = p.b.run(|| VrrpSocket::open("vb", true).unwrap());
    assert_eq!(sa.ifname(), "va");
    assert!(sa.ifindex() > 0);

    let adv_a = Advert {
        version: Version::V3,
        vrid: 51,
        priority: 150,
        interval_cs: 100,
        auth: None,
        addrs: vec![VIP.into(), VIP2.into()],
    };
    let pkt = packet(&adv_a, A_ADDR, VRRP_GROUP, 1, Checksum::PseudoHeader);
    let r = exchange(&sa, &pkt, VRRP_GROUP, &sb, A_ADDR);
    assert_eq!(r.advert, adv_a);
    assert_eq!(r.ttl, 255);
    assert_eq!(r.dst, VRRP_GROUP);
    assert_eq!(r.checksum, Checksum::PseudoHeader);

    // B -> A with a v2 advert, sent from a clone while the original is receiving.
    let adv_b = Advert {
        version: Version::V2,
        vrid: 51,
        priority: 100,
        interval_cs: 100,
        auth: Some(*b"secret\0\0"),
        addrs: vec![VIP.into()],
    };
    let sb_tx = sb.try_clone().unwrap();
    let pkt = packet(&adv_b, B_ADDR, VRRP_GROUP, 2, Checksum::Plain);
    let r = exchange(&sb_tx, &pkt, VRRP_GROUP, &sa, B_ADDR);
    assert_eq!(r.advert, adv_b);
    assert_eq!(r.ttl, 255);

    // Multicast loop is off: B never received any of its own adverts.
    let own: Vec<_> = drain(&sb, Duration::from_secs(1))
        .into_iter()
        .filter(|r| r.src == B_ADDR)
        .collect();
    assert!(own.is_empty(), "B received its own sends: {own:?}");
}

#[test]
fn vrrp_unicast_and_group_membership() {
    let p = Pair::new();
    let sa = p.a.run(|| VrrpSocket::open("va", false).unwrap());
    let (sb_uni, sb_mc) = p.b.run(|| {
        (
            VrrpSocket::open("vb", false).unwrap(),
            VrrpSocket::open("vb", true).unwrap(),
        )
    });
    let adv = Advert {
        version: Version::V3,
        vrid: 7,
        priority: 200,
        interval_cs: 50,
        auth: None,
        addrs: vec![VIP.into()],
    };

    // Unicast peer mode.
    let pkt = packet(&adv, A_ADDR, B_ADDR, 3, Checksum::PseudoHeader);
    let r = exchange(&sa, &pkt, B_ADDR, &sb_uni, A_ADDR);
    assert_eq!(
        (r.advert.clone(), r.dst, r.ttl),
        (adv.clone(), B_ADDR.into(), 255)
    );

    // A multicast advert reaches the socket that joined the group ...
    let pkt = packet(&adv, A_ADDR, VRRP_GROUP, 4, Checksum::PseudoHeader);
    let r = exchange(&sa, &pkt, VRRP_GROUP, &sb_mc, A_ADDR);
    assert_eq!(r.dst, VRRP_GROUP);
    // ... but not the unicast-only one, although the interface is in the group.
    let mc: Vec<_> = drain(&sb_uni, Duration::from_secs(1))
        .into_iter()
        .filter(|r| r.dst == VRRP_GROUP)
        .collect();
    assert!(mc.is_empty(), "unicast socket got multicast: {mc:?}");
}

/// An `AF_PACKET` socket receiving frames of one EtherType on one interface (test-side
/// capture).
struct ArpCapture(OwnedFd);

impl ArpCapture {
    fn open(ifname: &str) -> ArpCapture {
        ArpCapture::open_type(ifname, 0x0806)
    }

    fn open_type(ifname: &str, ethertype: u16) -> ArpCapture {
        let idx = if_info(ifname).unwrap().index;
        let proto = ethertype.to_be();
        // SAFETY: socket(2) takes no pointers; the result is checked.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, libc::c_int::from(proto)) };
        assert!(fd >= 0, "{}", std::io::Error::last_os_error());
        // SAFETY: `fd` is a fresh descriptor owned by nothing else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
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
        ArpCapture(fd)
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

#[test]
fn gratuitous_arp_reaches_peer() {
    let p = Pair::new();
    let (b_ns, repeat) = (p.b.name.clone(), 3u32);
    // Let B learn neighbours from gratuitous ARP (the kernel default ignores new ones).
    ip(&[
        "netns",
        "exec",
        &b_ns,
        "sh",
        "-c",
        "echo 1 > /proc/sys/net/ipv4/conf/vb/arp_accept",
    ]);
    let mac_a = p.a.run(|| if_info("va").unwrap().mac);
    let cap = p.b.run(|| ArpCapture::open("vb"));
    let tx = p.a.run(|| GarpSender::open("va").unwrap());
    assert_eq!(tx.ifname(), "va");

    tx.send_burst(mac_a, &[VIP, VIP2], repeat, Duration::from_millis(100))
        .unwrap();

    let want = [garp_frame(mac_a, VIP), garp_frame(mac_a, VIP2)];
    let mut counts = [0u32; 2];
    let mut others = Vec::new();
    let deadline = Instant::now() + PATIENCE;
    // Until all expected frames arrived, then one more quiet second for extras.
    let mut quiet_until = None;
    loop {
        let now = Instant::now();
        match quiet_until {
            Some(t) if now >= t => break,
            None if now >= deadline => break,
            _ => {}
        }
        let Some(f) = cap.recv(Duration::from_millis(200)) else {
            continue;
        };
        match want.iter().position(|w| w[..] == f[..]) {
            Some(i) => counts[i] += 1,
            None => others.push(f),
        }
        if quiet_until.is_none() && counts == [repeat; 2] {
            quiet_until = Some(Instant::now() + Duration::from_secs(1));
        }
    }
    assert_eq!(
        counts, [repeat; 2],
        "frames seen per VIP; other ARP frames: {others:?}"
    );

    // B's neighbour table learned the VIP at A's MAC.
    let mac = fmt_mac(mac_a);
    let deadline = Instant::now() + PATIENCE;
    loop {
        let n = ip(&["-n", &b_ns, "neigh", "show", "192.0.2.100", "dev", "vb"]);
        if n.contains(&format!("lladdr {mac}")) {
            break;
        }
        assert!(Instant::now() < deadline, "neighbour not learned: {n:?}");
        std::thread::sleep(Duration::from_millis(100));
    }

    // A single frame through `send`.
    tx.send(&garp_frame(mac_a, VIP)).unwrap();
    let deadline = Instant::now() + PATIENCE;
    loop {
        if cap
            .recv(Duration::from_millis(200))
            .is_some_and(|f| f.len() == 42 && f[..] == want[0][..])
        {
            break;
        }
        assert!(Instant::now() < deadline, "single GARP not received");
    }
}

// ---------------------------------------------------------------------------------
// IPv6 (2001:db8::/32 and link-local addresses only)

const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, 0x100);
const A6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, 1);
const B6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, 2);

/// `net.ipv6.conf.{all,default}.accept_dad` in namespace `ns` (before its links exist,
/// so they inherit it).
fn set_dad(ns: &str, on: bool) {
    let v = if on { "1" } else { "0" };
    ip(&[
        "netns",
        "exec",
        ns,
        "sh",
        "-c",
        &format!(
            "echo {v} > /proc/sys/net/ipv6/conf/all/accept_dad && \
             echo {v} > /proc/sys/net/ipv6/conf/default/accept_dad"
        ),
    ]);
}

impl Pair {
    /// The pair with IPv6: `va` 2001:db8:0:1::1/64, `vb` ::2/64, both with link-local
    /// addresses; duplicate address detection stays on when `dad` is true (the
    /// addresses are then usable only after about a second).
    fn new_v6(dad: bool) -> Pair {
        let p = Pair {
            a: Netns::new("a"),
            b: Netns::new("b"),
        };
        set_dad(&p.a.name, dad);
        set_dad(&p.b.name, dad);
        let (a, b) = (p.a.name.as_str(), p.b.name.as_str());
        ip(&[
            "-n", a, "link", "add", "va", "type", "veth", "peer", "name", "vb", "netns", b,
        ]);
        ip(&[
            "-n",
            a,
            "-6",
            "addr",
            "add",
            "2001:db8:0:1::1/64",
            "dev",
            "va",
        ]);
        ip(&[
            "-n",
            b,
            "-6",
            "addr",
            "add",
            "2001:db8:0:1::2/64",
            "dev",
            "vb",
        ]);
        ip(&["-n", a, "link", "set", "va", "up"]);
        ip(&["-n", b, "link", "set", "vb", "up"]);
        p.wait_running();
        p
    }
}

/// The EUI-64 link-local address the kernel derives from `mac`.
fn eui64_link_local(mac: [u8; 6]) -> Ipv6Addr {
    Ipv6Addr::new(
        0xfe80,
        0,
        0,
        0,
        u16::from_be_bytes([mac[0] ^ 2, mac[1]]),
        u16::from_be_bytes([mac[2], 0xff]),
        u16::from_be_bytes([0xfe, mac[3]]),
        u16::from_be_bytes([mac[4], mac[5]]),
    )
}

/// Waits until `link_local_ipv6(dev)` succeeds (DAD done), in the calling thread's
/// namespace.
fn usable_link_local(dev: &str) -> Ipv6Addr {
    let deadline = Instant::now() + PATIENCE;
    loop {
        match link_local_ipv6(dev) {
            Ok(a) => return a,
            Err(e) => {
                assert!(Instant::now() < deadline, "{dev}: {e}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

#[test]
fn ipv6_addresses_nodad_link_local_and_monitor() {
    // DAD on: an address added the usual way is tentative for a while, ours is not.
    let p = Pair::new_v6(true);
    let ns = p.a.name.clone();
    p.a.run(move || {
        let info = if_info("va").unwrap();
        let idx = info.index;
        // Until DAD has run the link-local address is not usable, and the error says so.
        let ll = usable_link_local("va");
        assert_eq!(ll, eui64_link_local(info.mac));
        let info = if_info("va").unwrap();
        assert!(info.addrs6.contains(&(ll, 64)), "{info:?}");
        assert!(info.addrs6.contains(&(A6, 64)), "{info:?}");
        assert!(info.addrs.is_empty(), "no IPv4 here: {info:?}");

        let mon = NetMonitor::open().unwrap();
        let nl = Netlink::open().unwrap();
        assert!(!nl.has_addr(idx, VIP6).unwrap());
        nl.add_addr(idx, VIP6, 64).unwrap();
        nl.add_addr(idx, VIP6, 64).unwrap(); // EEXIST is success
        assert!(nl.has_addr(idx, VIP6).unwrap());
        assert!(nl.addrs6(idx).unwrap().contains(&(VIP6, 64)));
        let shown = ip(&["-n", &ns, "-6", "addr", "show", "dev", "va"]);
        let line = shown
            .lines()
            .find(|l| l.contains("inet6 2001:db8:0:1::100/64"))
            .unwrap_or_else(|| panic!("{shown}"));
        assert!(line.contains("nodad"), "{line}");
        assert!(!line.contains("tentative"), "usable at once: {line}");
        wait_event(
            &mon,
            NetEvent::AddrAdded {
                ifindex: idx,
                addr: VIP6.into(),
            },
        );

        // Deleted by someone else: the monitor reports it (this is how a VIP removed
        // behind the daemon's back is noticed).
        ip(&[
            "-n",
            &ns,
            "-6",
            "addr",
            "del",
            "2001:db8:0:1::100/64",
            "dev",
            "va",
        ]);
        wait_event(
            &mon,
            NetEvent::AddrRemoved {
                ifindex: idx,
                addr: VIP6.into(),
            },
        );
        nl.add_addr(idx, VIP6, 64).unwrap();
        nl.del_addr(idx, VIP6, 64).unwrap();
        nl.del_addr(idx, VIP6, 64).unwrap(); // EADDRNOTAVAIL is success
        wait_event(
            &mon,
            NetEvent::AddrRemoved {
                ifindex: idx,
                addr: VIP6.into(),
            },
        );
        assert!(!nl.has_addr(idx, VIP6).unwrap());
        assert!(nl.has_addr(idx, A6).unwrap(), "static address untouched");
        let e = nl.add_addr(idx, VIP6, 129).unwrap_err();
        assert!(e.to_string().contains("2001:db8:0:1::100/129"), "{e}");
    });
}

/// A plain raw IPv6 protocol-112 socket on `dev` whose multicast hop limit is `hops`
/// (a hostile sender; the kernel picks the source address).
fn raw6_with_hops(dev: &str, hops: i32) -> OwnedFd {
    // SAFETY: socket(2) takes no pointers; the result is checked.
    let fd = unsafe { libc::socket(libc::AF_INET6, libc::SOCK_RAW, 112) };
    assert!(fd >= 0, "{}", std::io::Error::last_os_error());
    // SAFETY: `fd` is a fresh descriptor owned by nothing else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let idx = if_info(dev).unwrap().index as libc::c_int;
    for (opt, val) in [
        (libc::IPV6_MULTICAST_IF, idx),
        (libc::IPV6_MULTICAST_HOPS, hops),
        (libc::IPV6_MULTICAST_LOOP, 0),
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
}

fn send_raw6(fd: &OwnedFd, payload: &[u8], dst: Ipv6Addr, scope: u32) {
    // SAFETY: sockaddr_in6 is plain old data; all-zero is valid.
    let mut sa: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
    sa.sin6_family = libc::AF_INET6 as u16;
    sa.sin6_addr.s6_addr = dst.octets();
    sa.sin6_scope_id = scope;
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

/// Sends with `send` every 200 ms until `rx` receives a datagram from `src` to `dst`,
/// which is returned with its payload.
fn exchange6(
    send: impl Fn(),
    rx: &Vrrp6Socket,
    src: Ipv6Addr,
    dst: Ipv6Addr,
) -> (Datagram6, Vec<u8>) {
    let got = AtomicBool::new(false);
    std::thread::scope(|s| {
        let receiver = s.spawn(|| {
            let deadline = Instant::now() + PATIENCE;
            let mut buf = [0u8; 2048];
            let mut other = Vec::new();
            while Instant::now() < deadline {
                let Some(d) = rx.recv(&mut buf, Duration::from_millis(500)).unwrap() else {
                    continue;
                };
                if d.src == src && d.dst == dst {
                    got.store(true, Ordering::SeqCst);
                    return (d, buf[..d.len].to_vec());
                }
                other.push(d);
            }
            got.store(true, Ordering::SeqCst);
            panic!(
                "{}: nothing from {src} to {dst} (other: {other:?})",
                rx.ifname()
            );
        });
        let deadline = Instant::now() + PATIENCE;
        while !got.load(Ordering::SeqCst) && Instant::now() < deadline {
            send();
            std::thread::sleep(Duration::from_millis(200));
        }
        receiver
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}

/// Every datagram `rx` receives within `window`.
fn drain6(rx: &Vrrp6Socket, window: Duration) -> Vec<Datagram6> {
    let deadline = Instant::now() + window;
    let mut buf = [0u8; 2048];
    let mut out = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return out;
        }
        if let Some(d) = rx.recv(&mut buf, left).unwrap() {
            out.push(d);
        }
    }
}

#[test]
fn vrrp6_multicast_unicast_hop_limit_and_group_membership() {
    let p = Pair::new_v6(false);
    let (sa, lla) = p.a.run(|| {
        (
            Vrrp6Socket::open("va", true).unwrap(),
            usable_link_local("va"),
        )
    });
    let (sb, sb_uni, llb) = p.b.run(|| {
        (
            Vrrp6Socket::open("vb", true).unwrap(),
            Vrrp6Socket::open("vb", false).unwrap(),
            usable_link_local("vb"),
        )
    });
    assert_eq!(sa.ifname(), "va");
    let adv = Advert {
        version: Version::V3,
        vrid: 51,
        priority: 150,
        interval_cs: 100,
        auth: None,
        addrs: vec![
            VIP6.into(),
            Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0x100).into(),
        ],
    };

    // Multicast from the link-local source: destination and hop limit 255 arrive as
    // ancillary data; the checksum over the pseudo-header verifies.
    let payload = adv.encode(lla, VRRP_GROUP6, Checksum::PseudoHeader);
    let (d, bytes) = exchange6(
        || sa.send(&payload, lla, VRRP_GROUP6).unwrap(),
        &sb,
        lla,
        VRRP_GROUP6,
    );
    assert_eq!(d.hop_limit, 255);
    assert_eq!(bytes, payload, "the kernel left the VRRP message as it was");
    let r = decode_v6(&bytes, d.src, d.dst, d.hop_limit).unwrap();
    assert_eq!(
        (r.advert, r.checksum),
        (adv.clone(), Checksum::PseudoHeader)
    );

    // Unicast to B's global address, still from A's link-local address.
    let payload = adv.encode(lla, B6, Checksum::PseudoHeader);
    let (d, bytes) = exchange6(|| sa.send(&payload, lla, B6).unwrap(), &sb_uni, lla, B6);
    assert_eq!(d.hop_limit, 255);
    assert_eq!(
        decode_v6(&bytes, d.src, d.dst, d.hop_limit).unwrap().advert,
        adv
    );
    // And to B's link-local address.
    let payload = adv.encode(lla, llb, Checksum::PseudoHeader);
    let (d, _) = exchange6(|| sa.send(&payload, lla, llb).unwrap(), &sb_uni, lla, llb);
    assert_eq!(d.hop_limit, 255);

    // A sender with another hop limit is seen with it (so validation can reject it).
    let hostile = p.a.run(|| raw6_with_hops("va", 64));
    let idx_a = p.a.run(|| if_info("va").unwrap().index);
    let payload = adv.encode(lla, VRRP_GROUP6, Checksum::PseudoHeader);
    let (d, _) = exchange6(
        || send_raw6(&hostile, &payload, VRRP_GROUP6, idx_a),
        &sb,
        lla,
        VRRP_GROUP6,
    );
    assert_eq!(d.hop_limit, 64);

    // Multicast loop is off (A never hears itself), and the multicast socket (bound to
    // ff02::12) never got the unicast adverts. (A unicast-mode socket is not bound and
    // does see link multicast: a raw IPv6 socket filters groups only when bound.)
    let own: Vec<_> = drain6(&sa, Duration::from_secs(1))
        .into_iter()
        .filter(|d| d.src == lla)
        .collect();
    assert!(own.is_empty(), "A received its own sends: {own:?}");
    let uni: Vec<_> = drain6(&sb, Duration::from_secs(1))
        .into_iter()
        .filter(|d| d.dst != VRRP_GROUP6)
        .collect();
    assert!(uni.is_empty(), "multicast socket got unicast: {uni:?}");
}

#[test]
fn unsolicited_neighbour_advert_overrides_the_peer_cache() {
    let p = Pair::new_v6(false);
    let b_ns = p.b.name.clone();
    let (mac_a, tx) = p.a.run(|| {
        let info = if_info("va").unwrap();
        Netlink::open()
            .unwrap()
            .add_addr(info.index, VIP6, 64)
            .unwrap();
        (info.mac, GarpSender::open("va").unwrap())
    });
    // B believes the VIP is elsewhere (as a client would after a failover).
    ip(&[
        "-n",
        &b_ns,
        "-6",
        "neigh",
        "replace",
        "2001:db8:0:1::100",
        "lladdr",
        "02:00:00:00:00:99",
        "dev",
        "vb",
        "nud",
        "stale",
    ]);
    let cap = p.b.run(|| ArpCapture::open_type("vb", 0x86dd));
    tx.send_na_burst(mac_a, &[VIP6], false, 3, Duration::from_millis(100))
        .unwrap();

    // The frames arrive byte for byte as built.
    let want = na_frame(mac_a, VIP6, false);
    let deadline = Instant::now() + PATIENCE;
    let mut seen = 0;
    while seen < 3 && Instant::now() < deadline {
        if let Some(f) = cap.recv(Duration::from_millis(200)) {
            if f.len() >= 54 && f[20] == 58 && f[54] == 136 {
                assert_eq!(f[..], want[..], "NA frame differs");
                seen += 1;
            }
        }
    }
    assert_eq!(seen, 3, "neighbour advertisements received");

    // The kernel accepted them (checksum, hop limit, flags): B's entry now has A's MAC.
    let mac = fmt_mac(mac_a);
    let deadline = Instant::now() + PATIENCE;
    loop {
        let n = ip(&[
            "-n",
            &b_ns,
            "-6",
            "neigh",
            "show",
            "2001:db8:0:1::100",
            "dev",
            "vb",
        ]);
        if n.contains(&format!("lladdr {mac}")) {
            break;
        }
        assert!(Instant::now() < deadline, "neighbour not updated: {n:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
