//! `mfsmaster [-f] [-c CFGFILE] [start|stop|restart|reload|test|kill]`

use antler_common::cfg::{resolve, CfgFile};
use antler_common::daemon::{self, ControlStep, LockFile, Signals, UsageError};
use antler_common::durable::write_durably;
use antler_common::logging;
use antler_master::config::{MasterConfig, KNOWN_KEYS};
use antler_master::exports::{Exports, SystemIds};
use antler_master::server::{self, Core, Link};
use anyhow::{bail, Context};
use std::net::TcpListener;
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;
use tracing::{error, info, warn};

const NAME: &str = "mfsmaster";
/// Where the metadata id is kept until metadata dumps carry it (see docs/master.md).
const METAID_FILE: &str = "metaid.antler";

fn main() -> ExitCode {
    let args = match daemon::parse_args(
        NAME,
        Path::new("/etc/mfs/mfsmaster.cfg"),
        &['a', 'i', 'x', 'e'],
        std::env::args().skip(1),
    ) {
        Ok(a) => a,
        Err(UsageError::Help { usage }) => {
            println!("{usage}");
            return ExitCode::SUCCESS;
        }
        Err(UsageError::Invalid { message, usage }) => {
            eprintln!("{message}\n{usage}");
            return ExitCode::from(1);
        }
    };
    if args.show_version {
        println!(
            "version: {} (Antler {})",
            antler_protocol::version::version_str(antler_protocol::version::VERSHEX),
            env!("CARGO_PKG_VERSION")
        );
        return ExitCode::SUCCESS;
    }
    let mut notifier = None;
    let code = match run(args, &mut notifier) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e:#}");
            eprintln!("{NAME}: {e:#}");
            eprintln!("error occurred during initialization - exiting");
            ExitCode::from(1)
        }
    };
    drop(notifier);
    code
}

/// Checks `metadata.mfs` the way a normal (non `-a`) start does and returns the
/// metadata id to use.
fn check_metadata(data: &Path) -> anyhow::Result<u64> {
    let path = data.join("metadata.mfs");
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!("can't find metadata.mfs - try using option '-a'")
        }
        Err(e) => bail!("error reading metadata.mfs - try using option '-a': {e}"),
    };
    if bytes.len() < 8 || &bytes[..5] != b"MFSM " {
        bail!("metadata.mfs has wrong header - try using option '-a'");
    }
    if &bytes[..8] != b"MFSM NEW" {
        bail!(
            "{}: loading dumped metadata ('{}') is not implemented yet; only a new file system ('MFSM NEW') can be started",
            path.display(),
            String::from_utf8_lossy(&bytes[..8])
        );
    }
    let idf = data.join(METAID_FILE);
    if let Ok(b) = std::fs::read(&idf) {
        if let Ok(a) = <[u8; 8]>::try_from(b.as_slice()) {
            let id = u64::from_be_bytes(a);
            if id != 0 {
                return Ok(id);
            }
        }
        warn!(
            "{}: unreadable metadata id, making a new one",
            idf.display()
        );
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let id = (now << 32) | rand::random::<u32>() as u64;
    write_durably(&idf, &id.to_be_bytes())
        .with_context(|| format!("can't store the metadata id in {}", idf.display()))?;
    info!("new metadata id: {id:016X}");
    Ok(id)
}

fn run(
    args: daemon::DaemonArgs,
    notifier: &mut Option<daemon::StartupNotifier>,
) -> anyhow::Result<()> {
    let file = CfgFile::load_or_defaults(&args.cfg_path, NAME)?;
    let cfg = MasterConfig::from_cfg(&file)?;
    match daemon::act_on_running(&cfg.data_path, NAME, args.action, args.lock_timeout)? {
        ControlStep::Start => {}
        ControlStep::Done => return Ok(()),
        ControlStep::NotRunning => bail!("not running"),
    }
    logging::init(&cfg.syslog_ident, args.foreground, false);
    file.warn_unknown(KNOWN_KEYS);
    if args.has_flag('a') {
        warn!("-a: metadata recovery from changelogs is not implemented yet; starting from metadata.mfs");
    }
    let (exports, warnings) = Exports::load(&cfg.exports, &SystemIds)
        .with_context(|| "init: exports manager failed !!!".to_string())?;
    for w in &warnings {
        warn!("{}:{}: {}", w.path.display(), w.line, w.message);
    }
    if exports.entries.is_empty() {
        bail!(
            "{}: no usable exports - init: exports manager failed !!!",
            cfg.exports.display()
        );
    }
    let metaid = check_metadata(&cfg.data_path).context("init: metadata manager failed !!!")?;

    let cl_addr = resolve(&cfg.matocl.0, cfg.matocl.1)?;
    let cs_addr = resolve(&cfg.matocs.0, cfg.matocs.1)?;
    let cl = TcpListener::bind(cl_addr).with_context(|| format!("can't listen on {cl_addr}"))?;
    let cs = TcpListener::bind(cs_addr).with_context(|| format!("can't listen on {cs_addr}"))?;

    if !args.foreground {
        *notifier = Some(daemon::daemonize_deferred()?);
    }
    let signals = Signals::install()?;
    let lock = LockFile::acquire(&cfg.data_path, NAME)?;
    daemon::drop_privileges(&cfg.working_user, &cfg.working_group)?;
    if cfg.nice_level != 0 {
        daemon::set_nice(cfg.nice_level);
    }
    let _ = daemon::raise_nofile_limit(100_000);

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as u32)
        .unwrap_or(0);
    let core = Core::new(cfg.clone(), exports, metaid, now);
    let (tx, rx) = mpsc::channel();
    let ids = Arc::new(AtomicU64::new(1));
    let shutdown = signals.shutdown_flag();
    for (l, link, nop) in [
        (cl, Link::Client, Duration::from_secs(1)),
        (
            cs,
            Link::Chunkserver,
            Duration::from_secs((cfg.matocs_timeout / 3).max(1) as u64),
        ),
    ] {
        let (tx, ids, sd) = (tx.clone(), Arc::clone(&ids), Arc::clone(&shutdown));
        std::thread::Builder::new()
            .name(format!("listen-{link:?}"))
            .spawn(move || server::serve_listener(l, link, tx, ids, sd, nop))?;
    }
    info!(clients = %cl_addr, chunkservers = %cs_addr, metaid = format!("{metaid:016X}"), "master ready");
    if let Some(n) = notifier.take() {
        n.ready();
    }
    let core_sd = Arc::clone(&shutdown);
    let min_time = cfg.loop_min_time;
    let core_thread = std::thread::Builder::new()
        .name("core".into())
        .spawn(move || server::run_core(core, rx, core_sd, min_time))?;
    drop(tx);
    while !signals.shutdown_requested() {
        if signals.take_reload() {
            match Exports::load(&cfg.exports, &SystemIds) {
                Ok((_, w)) => {
                    for w in &w {
                        warn!("{}:{}: {}", w.path.display(), w.line, w.message);
                    }
                    warn!("reload: new exports apply after a restart");
                }
                Err(e) => warn!("reload: {e}"),
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    shutdown.store(true, Ordering::Relaxed);
    let _ = core_thread.join();
    info!("exiting");
    drop(lock);
    Ok(())
}
