//! `block-repl`: the command line (drbdadm-like verbs) and the daemon entry point.

use antler_block_repl::config::Config;
use antler_block_repl::control::{self, Request};
use antler_block_repl::daemon::{self, Daemon};
use antler_block_repl::meta::Meta;
use antler_block_repl::store::Store;
use anyhow::{bail, Context, Result};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

const USAGE: &str = "usage: block-repl -c CONFIG [--node NAME] VERB
verbs: create-md [--force] | up [--foreground] | down | primary [--force] | secondary
       connect | disconnect | status [--json] | verify | invalidate | outdate | check-config";

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn main() {
    match real_main() {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("block-repl: {e:#}");
            std::process::exit(1);
        }
    }
}

fn real_main() -> Result<i32> {
    let mut args = std::env::args().skip(1);
    let mut cfg_path: Option<PathBuf> = None;
    let mut node: Option<String> = None;
    let mut rest = Vec::new();
    while let Some(a) = args.next() {
        match a.as_str() {
            "-c" | "--config" => cfg_path = args.next().map(PathBuf::from),
            "--node" => node = args.next(),
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(0);
            }
            _ => rest.push(a),
        }
    }
    let Some(cfg_path) = cfg_path else {
        bail!("no configuration given\n{USAGE}")
    };
    let node = node.unwrap_or_else(hostname);
    let cfg = Config::load(&cfg_path, &node)?;
    let verb = rest.first().map(String::as_str).unwrap_or("");
    let flag = |f: &str| rest.iter().skip(1).any(|a| a == f);
    if let Some(bad) = rest
        .iter()
        .skip(1)
        .find(|a| !matches!(a.as_str(), "--force" | "--json" | "--foreground"))
    {
        bail!("unknown argument '{bad}'\n{USAGE}");
    }
    let sock = cfg.me.socket(&cfg.name);
    let remote = |req: Request, timeout: Duration| -> Result<i32> {
        let r = control::call(&sock, &req, timeout).with_context(|| {
            format!(
                "resource {} is not up on {} (no daemon answers at {})",
                cfg.name,
                cfg.me.name,
                sock.display()
            )
        })?;
        if !r.message.is_empty() {
            if r.ok {
                println!("{}: {}", cfg.name, r.message);
            } else {
                eprintln!("{}: {}", cfg.name, r.message);
            }
        }
        Ok(if r.ok { 0 } else { 11 })
    };
    match verb {
        "check-config" => {
            println!(
                "{}: configuration OK for node {}",
                cfg_path.display(),
                cfg.me.name
            );
            Ok(0)
        }
        "create-md" => {
            let store = Store::open(&cfg.me.disk, &cfg.me.meta)?;
            if store.has_meta() && !flag("--force") {
                bail!(
                    "{} already has block-repl metadata: use --force to overwrite it (its generations and bitmap are lost)",
                    cfg.me.disk.display()
                );
            }
            store.save_meta(&Meta::new(store.size()))?;
            println!(
                "{}: metadata created on {} ({} MiB device, Inconsistent)",
                cfg.name,
                cfg.me.disk.display(),
                store.size() >> 20
            );
            Ok(0)
        }
        "up" => up(cfg, flag("--foreground")),
        "status" => {
            let r = match control::call(&sock, &Request::Status, Duration::from_secs(10)) {
                Ok(r) => r,
                Err(_) => {
                    if flag("--json") {
                        println!("{{\"name\":\"{}\",\"running\":false}}", cfg.name);
                    } else {
                        println!("{}: not running on {} (down)", cfg.name, cfg.me.name);
                    }
                    return Ok(3);
                }
            };
            let st = r.status.context("daemon sent no status")?;
            if flag("--json") {
                println!("{}", serde_json::to_string_pretty(&st)?);
            } else {
                print!("{}", st.render(std::io::stdout().is_terminal()));
            }
            Ok(0)
        }
        "down" => {
            // `down` returns once the daemon has exited, so its port, its
            // device and its disk are free for an immediate `up`.
            let pid_file = cfg.me.run_dir.join(format!("{}.pid", cfg.name));
            let pid = std::fs::read_to_string(&pid_file)
                .ok()
                .and_then(|s| s.trim().parse::<i32>().ok());
            let rc = remote(Request::Down, Duration::from_secs(60))?;
            if let (0, Some(pid)) = (rc, pid) {
                wait_gone(pid, Duration::from_secs(60))
                    .with_context(|| format!("{}: daemon {pid} did not exit", cfg.name))?;
            }
            Ok(rc)
        }
        "primary" => remote(
            Request::Primary {
                force: flag("--force"),
            },
            Duration::from_secs(60),
        ),
        "secondary" => remote(Request::Secondary, Duration::from_secs(60)),
        "connect" => remote(Request::Connect, Duration::from_secs(10)),
        "disconnect" => remote(Request::Disconnect, Duration::from_secs(10)),
        "verify" => remote(Request::Verify, Duration::from_secs(24 * 3600)),
        "invalidate" => remote(Request::Invalidate, Duration::from_secs(10)),
        "outdate" => remote(Request::Outdate, Duration::from_secs(10)),
        "" => bail!("no verb\n{USAGE}"),
        v => bail!("unknown verb '{v}'\n{USAGE}"),
    }
}

/// Waits until process `pid` no longer exists.
fn wait_gone(pid: i32, limit: Duration) -> Result<()> {
    let t0 = std::time::Instant::now();
    // A zombie (exited, not yet reaped by whoever adopted it) counts as gone.
    let alive = || {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| s.rsplit_once(") ").map(|(_, r)| !r.starts_with('Z')))
            .unwrap_or(false)
    };
    while alive() {
        if t0.elapsed() > limit {
            bail!("still running after {} s", limit.as_secs());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

fn up(cfg: Config, foreground: bool) -> Result<i32> {
    // Fail early, on the terminal, for what can be checked without the daemon.
    {
        let store = Store::open(&cfg.me.disk, &cfg.me.meta)?;
        store.load_meta()?;
    }
    let sock = cfg.me.socket(&cfg.name);
    if control::call(&sock, &Request::Status, Duration::from_secs(2)).is_ok() {
        println!("{}: already up on {}", cfg.name, cfg.me.name);
        return Ok(0);
    }
    std::fs::create_dir_all(&cfg.me.run_dir)
        .with_context(|| cfg.me.run_dir.display().to_string())?;
    let notifier = if foreground {
        None
    } else {
        Some(antler_common::daemon::daemonize_deferred()?)
    };
    antler_common::logging::init(
        "block-repl",
        true,
        std::env::var_os("BLOCK_REPL_DEBUG").is_some(),
    );
    let log = cfg.me.log(&cfg.name);
    let (name, node) = (cfg.name.clone(), cfg.me.name.clone());
    let shared = daemon::prepare(&cfg).context("private mount namespace / watchdog")?;
    let (d, listener, control) = match Daemon::start(cfg, shared) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("block-repl: {e}");
            if let Some(n) = notifier {
                n.failed(1);
            }
            return Ok(1);
        }
    };
    let term = Arc::new(AtomicBool::new(false));
    for sig in [libc::SIGTERM, libc::SIGINT] {
        signal_hook::flag::register(sig, Arc::clone(&term))?;
    }
    if let Some(n) = notifier {
        eprintln!("block-repl: {name} up on {node} (log: {})", log.display());
        n.ready();
        // Daemon output goes to the log file from now on.
        if let Ok(f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
        {
            use std::os::fd::AsRawFd;
            // SAFETY: dup2 onto stderr/stdout with a valid open descriptor.
            unsafe {
                libc::dup2(f.as_raw_fd(), libc::STDERR_FILENO);
                libc::dup2(f.as_raw_fd(), libc::STDOUT_FILENO);
            }
            antler_common::logging::set_stderr_enabled(true);
        }
    }
    d.run(listener, control, term);
    Ok(0)
}
