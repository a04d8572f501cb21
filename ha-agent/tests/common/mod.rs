//! Shared fixture of the ha-agent integration tests: a bridge LAN in network namespaces
//! (n1 192.0.2.1, n2 192.0.2.2, client c1 192.0.2.50; VIP 192.0.2.100) with helpers to
//! start ha-agent (or any program) inside a host and to observe VIP ownership.
//! [`Lan::new_v6`] builds the same LAN with IPv6 only (2001:db8:0:1::1, ::2, ::50 and
//! link-local addresses; VIP 2001:db8:0:1::100/64).
#![allow(dead_code)]

use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub const VIP: &str = "192.0.2.100";
pub const VIP6: &str = "2001:db8:0:1::100";
/// Link-local addresses the kernel derives (EUI-64) from the fixed MACs of n1 and n2.
pub const N1_LL: &str = "fe80::ff:fe00:1";
pub const N2_LL: &str = "fe80::ff:fe00:2";

pub fn sh(args: &[&str]) -> String {
    let o = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn sh_ok(args: &[&str]) -> bool {
    Command::new(args[0])
        .args(&args[1..])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The LAN: a bridge namespace and three hosts.
pub struct Lan {
    prefix: String,
    dir: tempfile::TempDir,
    procs: Vec<(String, Child)>,
    /// IPv6 only (see [`Lan::new_v6`]).
    v6: bool,
}

static SEQ: AtomicU32 = AtomicU32::new(0);

impl Lan {
    pub fn new() -> Lan {
        Lan::build(false)
    }

    /// The LAN with IPv6 instead of IPv4: n1 2001:db8:0:1::1/64, n2 ::2, c1 ::50, each
    /// with its EUI-64 link-local address. Duplicate address detection is off in every
    /// namespace (so no address is ever tentative), and the constructor returns once
    /// every host has its link-local address.
    pub fn new_v6() -> Lan {
        Lan::build(true)
    }

    /// The VIP of this LAN (IPv4 or IPv6).
    pub fn vip(&self) -> &'static str {
        if self.v6 {
            VIP6
        } else {
            VIP
        }
    }

    fn build(v6: bool) -> Lan {
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
            v6,
        };
        let br = lan.ns("lan");
        sh(&["ip", "netns", "add", &br]);
        if v6 {
            no_dad(&br);
        }
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
        for (host, addr4, addr6, mac) in [
            (
                "n1",
                "192.0.2.1/24",
                "2001:db8:0:1::1/64",
                "02:00:00:00:00:01",
            ),
            (
                "n2",
                "192.0.2.2/24",
                "2001:db8:0:1::2/64",
                "02:00:00:00:00:02",
            ),
            (
                "c1",
                "192.0.2.50/24",
                "2001:db8:0:1::50/64",
                "02:00:00:00:00:50",
            ),
        ] {
            let ns = lan.ns(host);
            sh(&["ip", "netns", "add", &ns]);
            if v6 {
                no_dad(&ns);
            }
            let addr = if v6 { addr6 } else { addr4 };
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
        if v6 {
            for host in ["n1", "n2", "c1"] {
                lan.wait(&format!("{host}: link-local address"), LONG, || {
                    let a = sh(&[
                        "ip",
                        "-n",
                        &lan.ns(host),
                        "-6",
                        "addr",
                        "show",
                        "dev",
                        "eth0",
                        "scope",
                        "link",
                    ]);
                    a.contains("inet6 fe80:") && !a.contains("tentative")
                });
            }
        }
        lan
    }

    pub fn ns(&self, host: &str) -> String {
        format!("{}-{host}", self.prefix)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn family_flag(&self) -> &'static str {
        if self.v6 {
            "-6"
        } else {
            "-4"
        }
    }

    /// Does `host` hold the VIP?
    pub fn has_vip(&self, host: &str) -> bool {
        sh(&[
            "ip",
            "-n",
            &self.ns(host),
            self.family_flag(),
            "addr",
            "show",
            "dev",
            "eth0",
        ])
        .contains(&format!(" {}/", self.vip()))
    }

    /// The MAC the client resolves the VIP to after a ping (None if no answer).
    pub fn client_sees(&self) -> Option<String> {
        let c1 = self.ns("c1");
        if !sh_ok(&[
            "ip",
            "netns",
            "exec",
            &c1,
            "ping",
            self.family_flag(),
            "-n",
            "-q",
            "-c",
            "1",
            "-W",
            "1",
            self.vip(),
        ]) {
            return None;
        }
        self.client_cache()
    }

    /// The MAC in the client's neighbour (ARP / NDP) cache for the VIP, without
    /// sending anything.
    pub fn client_cache(&self) -> Option<String> {
        let n = sh(&[
            "ip",
            "-n",
            &self.ns("c1"),
            self.family_flag(),
            "neigh",
            "show",
            self.vip(),
        ]);
        n.split_whitespace()
            .skip_while(|w| *w != "lladdr")
            .nth(1)
            .map(str::to_string)
    }

    /// The link-local address of `host`'s eth0 (IPv6 LANs).
    pub fn link_local(&self, host: &str) -> String {
        let a = sh(&[
            "ip",
            "-n",
            &self.ns(host),
            "-6",
            "-o",
            "addr",
            "show",
            "dev",
            "eth0",
            "scope",
            "link",
        ]);
        a.split_whitespace()
            .skip_while(|w| *w != "inet6")
            .nth(1)
            .and_then(|w| w.split('/').next())
            .unwrap_or_else(|| panic!("{host}: no link-local address: {a}"))
            .to_string()
    }

    pub fn wait(&self, what: &str, timeout: Duration, mut f: impl FnMut() -> bool) -> Duration {
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

    pub fn logs(&self) -> String {
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
    pub fn spawn(&mut self, name: &str, host: &str, argv: &[&str]) {
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

    pub fn pid(&self, name: &str) -> u32 {
        self.procs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, c)| c.id())
            .unwrap()
    }

    pub fn signal(&mut self, name: &str, sig: i32) {
        let i = self.procs.iter().position(|(n, _)| n == name).unwrap();
        let (_, mut c) = self.procs.remove(i);
        // SAFETY: signalling a child process this test started, by its PID.
        unsafe { libc::kill(c.id() as i32, sig) };
        let _ = c.wait();
    }

    /// Writes an ha-agent config for `host` and starts it.
    pub fn start_agent(&mut self, host: &str, priority: u8, extra: &str) {
        let cfg = self.path(&format!("{host}.toml"));
        let notify = self.path(&format!("{host}-notify.log"));
        fs::write(
            &cfg,
            format!(
                "[global]\nrouter_id = \"{host}\"\n[[vrrp_instance]]\nname = \"VI_1\"\ninterface = \"eth0\"\nvirtual_router_id = 51\npriority = {priority}\nvirtual_ipaddress = [\"{}\"]\nnotify = \"echo >> {} \"\n{}{extra}\n",
                if self.v6 { format!("{VIP6}/64") } else { format!("{VIP}/24") },
                notify.display(),
                // VRRPv2 is IPv4 only.
                if self.v6 && !extra.contains("version =") { "version = 3\n" } else { "" },
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

    pub fn ctl(&self, host: &str, args: &[&str]) -> (bool, String) {
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

    pub fn notify_log(&self, host: &str) -> String {
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

/// Turns duplicate address detection off in namespace `ns` for the links created after.
fn no_dad(ns: &str) {
    sh(&[
        "ip",
        "netns",
        "exec",
        ns,
        "sh",
        "-c",
        "echo 0 > /proc/sys/net/ipv6/conf/all/accept_dad && \
         echo 0 > /proc/sys/net/ipv6/conf/default/accept_dad",
    ]);
}

pub const N1_MAC: &str = "02:00:00:00:00:01";
pub const N2_MAC: &str = "02:00:00:00:00:02";
pub const LONG: Duration = Duration::from_secs(30);

pub fn exactly_one(lan: &Lan) -> Option<&'static str> {
    match (lan.has_vip("n1"), lan.has_vip("n2")) {
        (true, false) => Some("n1"),
        (false, true) => Some("n2"),
        _ => None,
    }
}

/// Undoes a quoted-printable body (soft line breaks and `=XX`).
pub fn decode_qp(mail: &str) -> String {
    let Some((head, body)) = mail.split_once("\n\n") else {
        return mail.to_string();
    };
    if !head.contains("Content-Transfer-Encoding: quoted-printable") {
        return mail.to_string();
    }
    let body = body.replace("=\n", "");
    let mut out = Vec::new();
    let b = body.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match (
            b[i],
            body.get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok()),
        ) {
            (b'=', Some(x)) => {
                out.push(x);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    format!("{head}\n\n{}", String::from_utf8_lossy(&out))
}

/// An aiosmtpd server (args: HOST PORT DIR [USER:PASS [CERT KEY]]) writing each message
/// to `NNNN.eml` (envelope first, as `X-Envelope-*` lines, then `X-TLS:` with the TLS
/// version of the session or `none`) and each AUTH attempt to `auth.log`. With CERT and
/// KEY it offers STARTTLS, requires it before MAIL and AUTH, and adds the session's
/// TLS version to each `auth.log` line.
pub const SMTPD_SCRIPT: &str = r#"
import os, ssl, sys, time
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

host, port, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
creds = sys.argv[4].split(":", 1) if len(sys.argv) > 4 else None
cert = sys.argv[5:7] if len(sys.argv) > 6 else None

def tls_of(session):
    info = session.ssl
    if not info:
        return "none"
    cipher = info.get("cipher")
    return cipher[1] if cipher else "yes"

class Handler:
    n = 0
    async def handle_DATA(self, server, session, envelope):
        Handler.n += 1
        tmp = os.path.join(out, ".%04d.tmp" % Handler.n)
        with open(tmp, "wb") as f:
            f.write(("X-Envelope-From: %s\r\n" % envelope.mail_from).encode())
            f.write(("X-Envelope-To: %s\r\n" % ",".join(envelope.rcpt_tos)).encode())
            f.write(("X-TLS: %s\r\n" % tls_of(session)).encode())
            f.write(envelope.content)
        os.rename(tmp, os.path.join(out, "%04d.eml" % Handler.n))
        return "250 OK"

def authenticator(server, session, envelope, mechanism, auth_data):
    ok = (isinstance(auth_data, LoginPassword)
          and auth_data.login.decode() == creds[0]
          and auth_data.password.decode() == creds[1])
    with open(os.path.join(out, "auth.log"), "a") as f:
        tls = (" tls=%s" % tls_of(session)) if cert else ""
        f.write("%s %s %s%s\n" % (mechanism, auth_data.login.decode(), "ok" if ok else "fail", tls))
    return AuthResult(success=ok)

kw = {}
if creds:
    kw = dict(authenticator=authenticator, auth_required=True, auth_require_tls=bool(cert))
if cert:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert[0], cert[1])
    kw.update(tls_context=ctx, require_starttls=True)
c = Controller(Handler(), hostname=host, port=port, **kw)
c.start()
print("ready", flush=True)
while True:
    time.sleep(3600)
"#;
