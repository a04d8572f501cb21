//! `mfschunkserver [-f] [-c CFGFILE] [start|stop|restart|reload|test|kill]`

use antler_chunkserver::config::{resolve, CsConfig, KNOWN_KEYS};
use antler_chunkserver::store::{Store, StoreOptions};
use antler_chunkserver::{csserv, hddcfg, ids, masterconn};
use antler_common::cfg::CfgFile;
use antler_common::daemon::{self, ControlStep, LockFile, Signals, UsageError};
use antler_common::logging;
use anyhow::{bail, Context};
use std::net::TcpListener;
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tracing::{error, info, warn};

const NAME: &str = "mfschunkserver";

fn main() -> ExitCode {
    let args = match daemon::parse_args(
        NAME,
        Path::new("/etc/mfs/mfschunkserver.cfg"),
        &[],
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
    // When daemonised, the notifier relays the daemon's stderr to the terminal that ran
    // `start`; keep it alive until a start-up error has been printed.
    let mut notifier = None;
    let code = match run(args, &mut notifier) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e:#}");
            eprintln!("{NAME}: {e:#}");
            ExitCode::from(1)
        }
    };
    drop(notifier);
    code
}

fn run(
    args: daemon::DaemonArgs,
    notifier: &mut Option<daemon::StartupNotifier>,
) -> anyhow::Result<()> {
    let file = CfgFile::load_or_defaults(&args.cfg_path, NAME)?;
    let cfg = CsConfig::from_cfg(&file)?;
    match daemon::act_on_running(&cfg.data_path, NAME, args.action, args.lock_timeout)? {
        ControlStep::Start => {}
        ControlStep::Done => return Ok(()),
        ControlStep::NotRunning => bail!("not running"),
    }
    logging::init(&cfg.syslog_ident, args.foreground, false);
    file.warn_unknown(KNOWN_KEYS);
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

    // Disks: refuse a disk whose .metaid names another file system instance.
    let ident = ids::load_identity(&cfg.data_path);
    let mut lines = hddcfg::load(&cfg.hdd_conf)?;
    lines.retain(|l| match ids::load_disk_metaid(&l.path) {
        Some(m) if ident.metaid != 0 && m != ident.metaid => {
            error!(disk = %l.path.display(), "wrong meta id in {}/.metaid ({m:016X}, expected {:016X}): disk belongs to another MooseFS instance; ignored (remove the file to use it)", l.path.display(), ident.metaid);
            false
        }
        _ => true,
    });
    let store = Arc::new(Store::new(
        &lines,
        StoreOptions {
            leave_space_default: cfg.leave_space_default,
            fsync_before_close: cfg.fsync_before_close,
        },
    )?);
    let scan = store.scan();
    info!(chunks = scan.chunks, bad = scan.bad, "hdd scan complete");

    let listen = resolve(&cfg.listen_host, cfg.listen_port)?;
    let listener =
        TcpListener::bind(listen).with_context(|| format!("can't listen on {listen}"))?;
    info!(%listen, "listening for data connections");
    {
        let store = Arc::clone(&store);
        std::thread::Builder::new()
            .name("csserv".into())
            .spawn(move || csserv::serve(listener, store))?;
    }
    {
        let store = Arc::clone(&store);
        std::thread::Builder::new()
            .name("hdd-close".into())
            .spawn(move || loop {
                std::thread::sleep(Duration::from_secs(1));
                store.close_idle(Duration::from_secs(2));
            })?;
    }
    if cfg.hdd_test_freq > 0 {
        let store = Arc::clone(&store);
        let every = Duration::from_secs(cfg.hdd_test_freq as u64);
        std::thread::Builder::new()
            .name("hdd-test".into())
            .spawn(move || chunk_tester(store, every))?;
    }
    if let Some(n) = notifier.take() {
        n.ready();
    }
    let shutdown = signals.shutdown_flag();
    let master = {
        let cfg = cfg.clone();
        let store = Arc::clone(&store);
        let shutdown = Arc::clone(&shutdown);
        std::thread::Builder::new()
            .name("masterconn".into())
            .spawn(move || masterconn::run(&cfg, store, listen.port(), *listen.ip(), shutdown))?
    };
    while !signals.shutdown_requested() && !master.is_finished() {
        if signals.take_reload() {
            warn!("reload: mfshdd.cfg and connection settings take effect after a restart");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    shutdown.store(true, Ordering::Relaxed);
    let r = master
        .join()
        .map_err(|_| anyhow::anyhow!("master connection thread panicked"))?;
    info!("exiting");
    drop(lock);
    r.map_err(|e| anyhow::anyhow!(e))
}

/// Tests one chunk every `every`, round robin, so silent disk corruption is found and
/// reported even for data nobody reads.
fn chunk_tester(store: Arc<Store>, every: Duration) {
    let mut queue: Vec<u64> = Vec::new();
    loop {
        std::thread::sleep(every);
        if queue.is_empty() {
            queue = store.ids();
        }
        if let Some(id) = queue.pop() {
            if let Some(v) = store.version_of(id) {
                let _ = store.test(id, v);
            }
        }
    }
}
