//! The daemon (`block-repl up`): a private mount namespace, the watchdog process, the
//! replication listener and connector, the control socket, and the device while primary.

use crate::config::Config;
use crate::control::{Reply, Request};
use crate::device::{self, Device};
use crate::fuse::{now_ms, InFlight};
use crate::node::Node;
use crate::watchdog::{self, Shared};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracing::{error, info, warn};

/// A running resource.
pub struct Daemon {
    node: Arc<Node>,
    device: Mutex<Option<Device>>,
    inflight: Arc<InFlight>,
    shared: &'static Shared,
    quit: AtomicBool,
}

/// Steps that must run while the process is still single-threaded: a private mount
/// namespace (the FUSE mount is invisible elsewhere and cannot be pinned by other
/// namespaces), fusectl for the watchdog, and the watchdog process itself.
pub fn prepare(cfg: &Config) -> std::io::Result<&'static Shared> {
    // SAFETY: unshare/mount with valid arguments; the process is single-threaded.
    unsafe {
        if libc::unshare(libc::CLONE_NEWNS) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if libc::mount(
            c"none".as_ptr(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        ) != 0
        {
            return Err(std::io::Error::last_os_error());
        }
    }
    let conns = std::path::Path::new("/sys/fs/fuse/connections");
    if conns.exists()
        && std::fs::read_dir(conns)
            .map(|mut d| d.next().is_none())
            .unwrap_or(false)
    {
        // SAFETY: as above.
        let r = unsafe {
            libc::mount(
                c"fusectl".as_ptr(),
                c"/sys/fs/fuse/connections".as_ptr(),
                c"fusectl".as_ptr(),
                0,
                std::ptr::null(),
            )
        };
        if r != 0 {
            warn!(
                "cannot mount fusectl: {}: the stall watchdog cannot abort",
                std::io::Error::last_os_error()
            );
        }
    }
    let shared = watchdog::map_shared();
    shared.heartbeat.store(now_ms(), Ordering::Release);
    // SAFETY: getpid has no preconditions.
    let daemon = unsafe { libc::getpid() };
    // SAFETY: the process is single-threaded; the child only sleeps, reads files and exits.
    match unsafe { libc::fork() } {
        -1 => return Err(std::io::Error::last_os_error()),
        0 => {
            // SAFETY: ask for SIGTERM when the daemon dies.
            unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) };
            // Write to the daemon's log, and do not hold the start-up pipe of `up` open.
            if let Ok(f) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(cfg.me.log(&cfg.name))
            {
                use std::os::fd::AsRawFd;
                // SAFETY: dup2 of a valid descriptor onto stdin/stdout/stderr.
                unsafe {
                    libc::dup2(f.as_raw_fd(), libc::STDOUT_FILENO);
                    libc::dup2(f.as_raw_fd(), libc::STDERR_FILENO);
                }
            }
            watchdog::run(shared, daemon, cfg.stall_timeout);
            // SAFETY: leave without running the daemon's destructors.
            unsafe { libc::_exit(0) }
        }
        _ => {}
    }
    Ok(shared)
}

impl Daemon {
    /// Opens the resource and binds its sockets.
    pub fn start(
        cfg: Config,
        shared: &'static Shared,
    ) -> Result<(Arc<Daemon>, TcpListener, UnixListener), String> {
        let node = Node::open(cfg).map_err(|e| e.to_string())?;
        let c = &node.cfg;
        let listener = TcpListener::bind(c.me.address)
            .map_err(|e| format!("cannot listen on {}: {e}", c.me.address))?;
        std::fs::create_dir_all(&c.me.run_dir)
            .map_err(|e| format!("{}: {e}", c.me.run_dir.display()))?;
        let sock = c.me.socket(&c.name);
        if crate::control::call(&sock, &Request::Status, Duration::from_secs(2)).is_ok() {
            return Err(format!("already running ({} answers)", sock.display()));
        }
        let _ = std::fs::remove_file(&sock);
        let control = UnixListener::bind(&sock).map_err(|e| format!("{}: {e}", sock.display()))?;
        let _ = std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o600));
        let _ = std::fs::write(
            c.me.run_dir.join(format!("{}.pid", c.name)),
            format!("{}\n", std::process::id()),
        );
        Ok((
            Arc::new(Daemon {
                node,
                device: Mutex::new(None),
                inflight: Arc::new(InFlight::new(256)),
                shared,
                quit: AtomicBool::new(false),
            }),
            listener,
            control,
        ))
    }

    /// Runs until `down` or a termination signal.
    pub fn run(
        self: &Arc<Self>,
        listener: TcpListener,
        control: UnixListener,
        term: Arc<AtomicBool>,
    ) {
        let n = Arc::clone(&self.node);
        std::thread::Builder::new()
            .name("connector".into())
            .spawn(move || n.run_connector(listener))
            .expect("spawn connector");
        let me = Arc::clone(self);
        std::thread::Builder::new()
            .name("heartbeat".into())
            .spawn(move || loop {
                me.shared.heartbeat.store(now_ms(), Ordering::Release);
                me.shared
                    .oldest
                    .store(me.inflight.oldest().unwrap_or(0), Ordering::Release);
                std::thread::sleep(Duration::from_millis(250));
            })
            .expect("spawn heartbeat");
        control
            .set_nonblocking(true)
            .expect("nonblocking control socket");
        while !self.quit.load(Ordering::Relaxed) {
            if term.load(Ordering::Relaxed) {
                info!("signal: going down");
                let r = self.handle(Request::Down);
                if !r.ok {
                    warn!("cannot go down: {}", r.message);
                    term.store(false, Ordering::Relaxed);
                }
                continue;
            }
            match control.accept() {
                Ok((s, _)) => {
                    let me = Arc::clone(self);
                    std::thread::spawn(move || me.serve(s));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
        let c = &self.node.cfg;
        let _ = std::fs::remove_file(c.me.socket(&c.name));
        let _ = std::fs::remove_file(c.me.run_dir.join(format!("{}.pid", c.name)));
        info!("down");
    }

    fn serve(&self, s: UnixStream) {
        let _ = s.set_nonblocking(false);
        let mut line = String::new();
        let mut r = BufReader::new(&s);
        if r.read_line(&mut line).is_err() {
            return;
        }
        let reply = match serde_json::from_str::<Request>(&line) {
            Ok(req) => self.handle(req),
            Err(e) => Reply {
                ok: false,
                message: format!("bad request: {e}"),
                status: None,
            },
        };
        let mut out = serde_json::to_string(&reply).unwrap_or_default();
        out.push('\n');
        let _ = (&s).write_all(out.as_bytes());
    }

    /// Carries out one operator request.
    pub fn handle(&self, req: Request) -> Reply {
        let res: Result<String, String> = match req {
            Request::Status => Ok(String::new()),
            Request::Primary { force } => self.primary(force),
            Request::Secondary => self.secondary(),
            Request::Connect => Ok(self.node.connect()),
            Request::Disconnect => Ok(self.node.disconnect()),
            Request::Verify => self
                .node
                .verify()
                .map(|kib| {
                    format!(
                        "verify finished: {kib} KiB out of sync{}",
                        if kib > 0 {
                            " (marked; resynced at the next connect: disconnect and connect)"
                        } else {
                            ""
                        }
                    )
                })
                .map_err(|e| e.to_string()),
            Request::Invalidate => self.node.invalidate().map_err(|e| e.to_string()),
            Request::Outdate => self.node.outdate().map_err(|e| e.to_string()),
            Request::Down => self.down(),
        };
        let (ok, message) = match res {
            Ok(m) => (true, m),
            Err(m) => (false, m),
        };
        Reply {
            ok,
            message,
            status: Some(self.node.status()),
        }
    }

    fn primary(&self, force: bool) -> Result<String, String> {
        let mut dev = self.device.lock().unwrap_or_else(|p| p.into_inner());
        let msg = self.node.promote(force).map_err(|e| e.to_string())?;
        if dev.is_none() {
            match device::attach(Arc::clone(&self.node), Arc::clone(&self.inflight)) {
                Ok(d) => {
                    self.shared.conn_id.store(d.conn_id, Ordering::Release);
                    self.node.set_device(Some(d.link().display().to_string()));
                    let m = format!(
                        "{msg}: device {} -> {}",
                        d.link().display(),
                        d.loopdev.display()
                    );
                    *dev = Some(d);
                    return Ok(m);
                }
                Err(e) => {
                    error!("promotion failed: {e}");
                    self.node.abort_promotion();
                    return Err(format!("promotion failed: {e}"));
                }
            }
        }
        Ok(msg)
    }

    fn secondary(&self) -> Result<String, String> {
        let mut dev = self.device.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(d) = dev.as_mut() {
            d.detach().map_err(|e| e.to_string())?;
        }
        *dev = None;
        self.shared.conn_id.store(0, Ordering::Release);
        if self.node.is_primary() {
            self.node.demote();
        }
        Ok("Secondary".into())
    }

    fn down(&self) -> Result<String, String> {
        self.secondary()?;
        self.node.stop();
        self.quit.store(true, Ordering::Relaxed);
        Ok("down".into())
    }
}
