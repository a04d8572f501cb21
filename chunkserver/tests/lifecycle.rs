//! The MooseFS daemon lifecycle of the real binary: `start` (daemonised), `test`, a second
//! `start` refused, `reload`, `stop`, and configuration errors naming file and line.

use std::fs;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output};

fn cs(cfg: &Path, action: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mfschunkserver"))
        .arg("-c")
        .arg(cfg)
        .arg(action)
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A config for a chunkserver whose master does not exist (it keeps retrying).
fn setup(dir: &Path) -> std::path::PathBuf {
    let hdd = dir.join("hdd");
    fs::create_dir(&hdd).unwrap();
    fs::write(dir.join("hdd.cfg"), format!("{}\n", hdd.display())).unwrap();
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let data_port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = dir.join("cs.cfg");
    fs::write(
        &cfg,
        format!(
            "# test chunkserver\nDATA_PATH = {d}\nHDD_CONF_FILENAME = {d}/hdd.cfg\nWORKING_USER = root\nWORKING_GROUP = root\nMASTER_HOST = 127.0.0.1\nMASTER_PORT = {closed}\nMASTER_RECONNECTION_DELAY = 1\nCSSERV_LISTEN_HOST = 127.0.0.1\nCSSERV_LISTEN_PORT = {data_port}\nHDD_LEAVE_SPACE_DEFAULT = 0\n",
            d = dir.display()
        ),
    )
    .unwrap();
    cfg
}

#[test]
fn start_test_refuse_second_stop() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = setup(dir.path());
    let started = cs(&cfg, "start");
    assert!(started.status.success(), "start failed: {}", text(&started));
    // From here on the daemon runs; make sure it is stopped even if an assertion fails.
    struct Stop<'a>(&'a Path);
    impl Drop for Stop<'_> {
        fn drop(&mut self) {
            let _ = cs(self.0, "stop");
        }
    }
    let _stop = Stop(&cfg);

    let t = cs(&cfg, "test");
    assert!(t.status.success(), "{}", text(&t));
    let pid_text = fs::read_to_string(dir.path().join(".mfschunkserver.lock")).unwrap();
    let pid: u32 = pid_text.trim().parse().unwrap();
    assert!(
        text(&t).contains(&pid.to_string()),
        "test output {:?} does not name pid {pid}",
        text(&t)
    );

    let second = cs(&cfg, "start");
    assert!(!second.status.success());
    assert!(
        text(&second).contains("already running"),
        "{}",
        text(&second)
    );

    let r = cs(&cfg, "reload");
    assert!(r.status.success(), "{}", text(&r));

    let s = cs(&cfg, "stop");
    assert!(s.status.success(), "{}", text(&s));
    // Gone, or a zombie waiting for init to reap it (the daemon is not our child).
    let state = fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit(')').next().and_then(|r| r.trim().chars().next()));
    assert!(
        matches!(state, None | Some('Z' | 'X')),
        "daemon {pid} still alive after stop: {state:?}"
    );
    let t = cs(&cfg, "test");
    assert!(
        !t.status.success(),
        "test succeeded after stop: {}",
        text(&t)
    );
}

#[test]
fn config_errors_name_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = setup(dir.path());
    let mut body = fs::read_to_string(&cfg).unwrap();
    body.push_str("HDD_TEST_FREQ = often\n");
    let line = body.lines().count();
    fs::write(&cfg, body).unwrap();
    let o = cs(&cfg, "start");
    assert!(!o.status.success());
    assert!(
        text(&o).contains(&format!(
            "{}:{line}: HDD_TEST_FREQ = 'often'",
            cfg.display()
        )),
        "{}",
        text(&o)
    );

    let dir2 = tempfile::tempdir().unwrap();
    let cfg = setup(dir2.path());
    fs::write(dir.path().join("hdd.cfg"), "relative/path\n").unwrap();
    let mut body = fs::read_to_string(&cfg).unwrap();
    body = body.replace(
        &format!("{}/hdd.cfg", cfg.parent().unwrap().display()),
        &format!("{}/hdd.cfg", dir.path().display()),
    );
    fs::write(&cfg, body).unwrap();
    let o = cs(&cfg, "start");
    assert!(!o.status.success());
    assert!(
        text(&o).contains("hdd.cfg:1: 'relative/path' is not an absolute path"),
        "{}",
        text(&o)
    );
}
