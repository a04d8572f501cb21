//! Role-change mail against a real SMTP server: `aiosmtpd` (PyPI package `aiosmtpd`)
//! run by `python3`, writing every message it receives to a file.

mod common;
use antler_ha_agent::config::Smtp;
use antler_ha_agent::email::{Mailer, RoleChange};
use antler_ha_agent::fsm::State;
use common::{decode_qp, SMTPD_SCRIPT};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

/// The server process, killed (by PID) when dropped.
struct SmtpServer {
    child: Child,
    dir: PathBuf,
}

impl SmtpServer {
    fn start(port: u16, dir: &Path, creds: Option<&str>) -> SmtpServer {
        SmtpServer::start_with_tls(port, dir, creds, None)
    }

    /// With `tls` = (certificate chain, key): STARTTLS offered and required.
    fn start_with_tls(
        port: u16,
        dir: &Path,
        creds: Option<&str>,
        tls: Option<(&Path, &Path)>,
    ) -> SmtpServer {
        let script = dir.join("smtpd.py");
        std::fs::write(&script, SMTPD_SCRIPT).unwrap();
        let mail = dir.join("mail");
        std::fs::create_dir_all(&mail).unwrap();
        let log = std::fs::File::create(dir.join("smtpd.log")).unwrap();
        let mut cmd = Command::new("python3");
        cmd.arg(&script)
            .arg("127.0.0.1")
            .arg(port.to_string())
            .arg(&mail);
        if let Some(c) = creds {
            cmd.arg(c);
        }
        if let Some((cert, key)) = tls {
            cmd.arg(cert).arg(key);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("python3 not found");
        let mut server = SmtpServer { child, dir: mail };
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(st)) = server.child.try_wait() {
                panic!(
                    "SMTP server exited ({st}); is aiosmtpd installed (pip install aiosmtpd)?\n{}",
                    std::fs::read_to_string(dir.join("smtpd.log")).unwrap_or_default()
                );
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "SMTP server did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    /// Received messages in arrival order, with `\n` line ends.
    fn mails(&self) -> Vec<String> {
        let mut names: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "eml"))
            .collect();
        names.sort();
        names
            .iter()
            .map(|p| decode_qp(&std::fs::read_to_string(p).unwrap().replace("\r\n", "\n")))
            .collect()
    }

    fn wait_mails(&self, n: usize, limit: Duration) -> Vec<String> {
        let start = Instant::now();
        loop {
            let m = self.mails();
            if m.len() >= n {
                return m;
            }
            assert!(
                start.elapsed() < limit,
                "only {} of {n} mails after {limit:?}",
                m.len()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn smtp(port: u16) -> Smtp {
    Smtp {
        server: format!("127.0.0.1:{port}"),
        from: "ha-agent@node1.example".into(),
        to: vec!["ops@example.com".into(), "oncall@example.com".into()],
        starttls: false,
        user: None,
        password_file: None,
        ca_file: None,
    }
}

fn change(instance: &str, from: State, to: State, reason: &str) -> RoleChange {
    RoleChange {
        host: "node1".into(),
        instance: instance.into(),
        from,
        to,
        vips: vec!["192.0.2.100/24".into(), "192.0.2.101/32".into()],
        reason: reason.into(),
        // 2024-12-31T23:59:59.250Z
        at: SystemTime::UNIX_EPOCH + Duration::from_millis(1_735_689_599_250),
    }
}

fn header<'a>(mail: &'a str, name: &str) -> &'a str {
    let prefix = format!("{name}: ");
    mail.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .unwrap_or_else(|| panic!("no {name} header in\n{mail}"))
}

/// The 12 flaps, alternating MASTER/BACKUP, with a numbered reason.
fn flaps(n: usize) -> Vec<RoleChange> {
    (1..=n)
        .map(|i| {
            let (from, to) = if i % 2 == 1 {
                (State::Backup, State::Master)
            } else {
                (State::Master, State::Backup)
            };
            change("VI_MFS", from, to, &format!("flap #{i:02}"))
        })
        .collect()
}

/// Checks a summary mail lists `evs` in order.
fn assert_summary(mail: &str, evs: &[RoleChange]) {
    assert_eq!(
        header(mail, "Subject"),
        format!("[ha-agent] node1: {} role changes (summary)", evs.len())
    );
    let mut last = 0;
    for (i, ev) in evs.iter().enumerate() {
        let line = format!(
            "{:>4}. 2024-12-31T23:59:59.250Z  VI_MFS  {} -> {}\n      reason: {}\n",
            i + 1,
            ev.from.name(),
            ev.to.name(),
            ev.reason
        );
        let at = mail
            .find(&line)
            .unwrap_or_else(|| panic!("missing '{line}' in\n{mail}"));
        assert!(at > last, "out of order: '{line}'\n{mail}");
        last = at;
    }
}

#[test]
fn one_mail_per_change_with_the_fields() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let server = SmtpServer::start(port, dir.path(), None);
    let mailer = Mailer::start(smtp(port), "node1".into()).unwrap();
    let evs = [
        change("VI_MFS", State::Backup, State::Master, "master timeout"),
        change(
            "VI_META",
            State::Master,
            State::Backup,
            "peer 192.0.2.2 with higher priority 200",
        ),
        change(
            "VI_MFS",
            State::Master,
            State::Fault,
            "track script or interface failed",
        ),
    ];
    for ev in &evs {
        mailer.report(ev.clone());
    }
    let mails = server.wait_mails(3, Duration::from_secs(15));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(server.mails().len(), 3);
    for (mail, ev) in mails.iter().zip(&evs) {
        assert_eq!(
            header(mail, "Subject"),
            format!(
                "[ha-agent] node1 {}: {} -> {}",
                ev.instance,
                ev.from.name(),
                ev.to.name()
            )
        );
        assert_eq!(header(mail, "X-Envelope-From"), "ha-agent@node1.example");
        assert_eq!(
            header(mail, "X-Envelope-To"),
            "ops@example.com,oncall@example.com"
        );
        assert_eq!(header(mail, "From"), "ha-agent@node1.example");
        header(mail, "Date");
        for want in [
            "host:     node1\n".to_string(),
            format!("instance: {}\n", ev.instance),
            format!("state:    {} -> {}\n", ev.from.name(), ev.to.name()),
            "vips:     192.0.2.100/24, 192.0.2.101/32\n".to_string(),
            format!("reason:   {}\n", ev.reason),
            "time:     2024-12-31T23:59:59.250Z\n".to_string(),
        ] {
            assert!(mail.contains(&want), "missing {want:?} in\n{mail}");
        }
    }
    mailer.shutdown(Duration::from_secs(2));
}

#[test]
fn mails_wait_for_a_server_that_was_down() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mailer = Mailer::start(smtp(port), "node1".into()).unwrap();
    let evs = flaps(3);
    for ev in &evs {
        let t = Instant::now();
        mailer.report(ev.clone());
        assert!(
            t.elapsed() < Duration::from_millis(50),
            "report() blocked: {:?}",
            t.elapsed()
        );
    }
    // Let a few attempts fail (coalescing window, then 1 s, 2 s backoff).
    std::thread::sleep(Duration::from_secs(4));
    let t = Instant::now();
    mailer.report(change("VI_X", State::Init, State::Backup, "startup"));
    assert!(
        t.elapsed() < Duration::from_millis(50),
        "report() blocked while retrying"
    );
    let server = SmtpServer::start(port, dir.path(), None);
    let mails = server.wait_mails(4, Duration::from_secs(20));
    let subjects: Vec<&str> = mails.iter().map(|m| header(m, "Subject")).collect();
    assert_eq!(
        subjects,
        [
            "[ha-agent] node1 VI_MFS: BACKUP -> MASTER",
            "[ha-agent] node1 VI_MFS: MASTER -> BACKUP",
            "[ha-agent] node1 VI_MFS: BACKUP -> MASTER",
            "[ha-agent] node1 VI_X: INIT -> BACKUP",
        ]
    );
    for (mail, ev) in mails.iter().zip(&evs) {
        assert!(
            mail.contains(&format!("reason:   {}\n", ev.reason)),
            "{mail}"
        );
    }
    mailer.shutdown(Duration::from_secs(2));
}

#[test]
fn flaps_while_the_server_is_down_make_one_summary() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mailer = Mailer::start(smtp(port), "node1".into()).unwrap();
    let evs = flaps(12);
    let t = Instant::now();
    for ev in &evs {
        mailer.report(ev.clone());
    }
    assert!(
        t.elapsed() < Duration::from_millis(50),
        "report() blocked: {:?}",
        t.elapsed()
    );
    std::thread::sleep(Duration::from_secs(3));
    let server = SmtpServer::start(port, dir.path(), None);
    let mails = server.wait_mails(1, Duration::from_secs(20));
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        server.mails().len(),
        1,
        "expected one summary, got {:#?}",
        server.mails()
    );
    assert_summary(&mails[0], &evs);
    assert!(
        mails[0].contains(
            "   VI_MFS: BACKUP since 2024-12-31T23:59:59.250Z\n      \
             vips: 192.0.2.100/24, 192.0.2.101/32\n"
        ),
        "{}",
        mails[0]
    );
    mailer.shutdown(Duration::from_secs(2));
}

#[test]
fn a_burst_is_coalesced_then_single_mails_resume() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let server = SmtpServer::start(port, dir.path(), None);
    let mailer = Mailer::start(smtp(port), "node1".into()).unwrap();
    let evs = flaps(8);
    for ev in &evs {
        mailer.report(ev.clone());
        std::thread::sleep(Duration::from_millis(50));
    }
    let mails = server.wait_mails(1, Duration::from_secs(15));
    assert_summary(&mails[0], &evs);
    std::thread::sleep(Duration::from_millis(500));
    mailer.report(change(
        "VI_MFS",
        State::Backup,
        State::Master,
        "master timeout",
    ));
    let mails = server.wait_mails(2, Duration::from_secs(15));
    assert_eq!(
        header(&mails[1], "Subject"),
        "[ha-agent] node1 VI_MFS: BACKUP -> MASTER"
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(server.mails().len(), 2);
    mailer.shutdown(Duration::from_secs(2));
}

#[test]
fn shutdown_flushes_without_waiting_for_the_window() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let server = SmtpServer::start(port, dir.path(), None);
    let mailer = Mailer::start(smtp(port), "node1".into()).unwrap();
    mailer.report(change("VI_MFS", State::Master, State::Stopped, "shutdown"));
    let t = Instant::now();
    mailer.shutdown(Duration::from_secs(10));
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    let mails = server.mails();
    assert_eq!(mails.len(), 1);
    assert_eq!(
        header(&mails[0], "Subject"),
        "[ha-agent] node1 VI_MFS: MASTER -> STOP"
    );

    // With the server gone, shutdown gives up after its grace.
    drop(server);
    let mailer = Mailer::start(smtp(port), "node1".into()).unwrap();
    mailer.report(change("VI_MFS", State::Master, State::Stopped, "shutdown"));
    let t = Instant::now();
    mailer.shutdown(Duration::from_secs(1));
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
}

#[test]
fn auth_uses_a_private_password_file() {
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("smtp.pass");
    std::fs::write(&pw, "s3cret pass\n").unwrap();
    let port = free_port();
    let mut cfg = smtp(port);
    cfg.user = Some("ha".into());
    cfg.password_file = Some(pw.clone());

    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o640)).unwrap();
    let err = Mailer::start(cfg.clone(), "node1".into())
        .unwrap_err()
        .to_string();
    assert!(err.contains(&pw.display().to_string()), "{err}");
    assert!(err.contains("0640") && err.contains("chmod 600"), "{err}");

    let mut missing = cfg.clone();
    missing.password_file = Some(dir.path().join("nope"));
    let err = Mailer::start(missing, "node1".into())
        .unwrap_err()
        .to_string();
    assert!(err.contains("nope"), "{err}");

    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).unwrap();
    let server = SmtpServer::start(port, dir.path(), Some("ha:s3cret pass"));
    let mailer = Mailer::start(cfg, "node1".into()).unwrap();
    mailer.report(change(
        "VI_MFS",
        State::Backup,
        State::Master,
        "master timeout",
    ));
    let mails = server.wait_mails(1, Duration::from_secs(15));
    assert_eq!(
        header(&mails[0], "Subject"),
        "[ha-agent] node1 VI_MFS: BACKUP -> MASTER"
    );
    let auth = std::fs::read_to_string(server.dir.join("auth.log")).unwrap();
    assert_eq!(auth.lines().last(), Some("PLAIN ha ok"), "{auth}");
    mailer.shutdown(Duration::from_secs(2));
}

/// Runs `openssl ARGS` in `dir`, panicking with its output on failure.
fn openssl(dir: &Path, args: &[&str]) {
    let o = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl not found");
    assert!(
        o.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// A throwaway CA (`ca.pem`) and a server certificate for 127.0.0.1 signed by it
/// (`server.pem`, `server.key`) in `dir`, valid for two days.
fn make_private_ca(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=ha-agent test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    );
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
         keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-set_serial",
            "2",
            "-days",
            "2",
            "-extfile",
            "server.ext",
            "-out",
            "server.pem",
        ],
    );
}

/// STARTTLS with AUTH against a relay whose certificate comes from a private CA: with
/// `ca_file` the mail goes through over TLS with AUTH; without it (public roots only)
/// the certificate is refused and nothing, not even the password, is sent.
#[test]
fn starttls_with_a_private_ca_and_auth() {
    let dir = tempfile::tempdir().unwrap();
    make_private_ca(dir.path());
    let pw = dir.path().join("smtp.pass");
    std::fs::write(&pw, "s3cret pass\n").unwrap();
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).unwrap();
    let port = free_port();
    let server = SmtpServer::start_with_tls(
        port,
        dir.path(),
        Some("ha:s3cret pass"),
        Some((
            &dir.path().join("server.pem"),
            &dir.path().join("server.key"),
        )),
    );
    let mut cfg = smtp(port);
    cfg.starttls = true;
    cfg.user = Some("ha".into());
    cfg.password_file = Some(pw);

    // Public roots only: the private CA is not trusted, the mail stays queued.
    let untrusting = Mailer::start(cfg.clone(), "node1".into()).unwrap();
    untrusting.report(change("VI_MFS", State::Init, State::Backup, "startup"));
    std::thread::sleep(Duration::from_secs(5));
    assert!(server.mails().is_empty(), "{:?}", server.mails());
    assert!(
        !server.dir.join("auth.log").exists(),
        "AUTH attempted over an untrusted connection"
    );
    untrusting.shutdown(Duration::from_millis(200));

    // A ca_file that holds no certificate is refused at start, naming the file.
    let mut bad = cfg.clone();
    bad.ca_file = Some(pw_like(dir.path()));
    let e = Mailer::start(bad, "node1".into()).unwrap_err().to_string();
    assert!(
        e.contains("not-a-ca.pem") && e.contains("no PEM certificate"),
        "{e}"
    );

    // With the private CA: delivered over TLS, after AUTH over TLS.
    cfg.ca_file = Some(dir.path().join("ca.pem"));
    let mailer = Mailer::start(cfg, "node1".into()).unwrap();
    mailer.report(change(
        "VI_MFS",
        State::Backup,
        State::Master,
        "master timeout",
    ));
    let mails = server.wait_mails(1, Duration::from_secs(20));
    let m = &mails[0];
    assert_eq!(
        header(m, "Subject"),
        "[ha-agent] node1 VI_MFS: BACKUP -> MASTER"
    );
    let tls = header(m, "X-TLS");
    assert!(tls.starts_with("TLSv1."), "{m}");
    let auth = std::fs::read_to_string(server.dir.join("auth.log")).unwrap();
    assert_eq!(
        auth.lines().last(),
        Some(format!("PLAIN ha ok tls={tls}").as_str()),
        "{auth}"
    );
    mailer.shutdown(Duration::from_secs(2));
    assert_eq!(server.mails().len(), 1, "{:?}", server.mails());
}

/// A file that is not a CA certificate.
fn pw_like(dir: &Path) -> PathBuf {
    let p = dir.join("not-a-ca.pem");
    std::fs::write(&p, "hello\n").unwrap();
    p
}
