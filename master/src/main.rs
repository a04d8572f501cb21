//! `mfsmaster [-f] [-c CFGFILE] [start|stop|restart|reload|test|kill]`

use antler_common::cfg::{resolve, CfgFile};
use antler_common::daemon::{self, ControlStep, LockFile, Signals, UsageError};
use antler_common::durable::write_durably;
use antler_common::logging;
use antler_master::config::{MasterConfig, KNOWN_KEYS};
use antler_master::exports::{Exports, SystemIds};
use antler_master::server::{self, Core, Link};
use antler_master::{changelog, metadata, recovery};
use anyhow::{bail, Context};
use std::net::TcpListener;
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;
use tracing::{error, info, warn};

const NAME: &str = "mfsmaster";

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

fn unix_now() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as u32)
        .unwrap_or(0)
}

/// Loads the state: `metadata.mfs` on a plain start (refused when missing, with
/// MooseFS's hint); with `-a` the newest metadata file plus every changelog after it.
fn load_state(core: &mut Core, data: &Path, args: &daemon::DaemonArgs) -> anyhow::Result<Loaded> {
    let now = unix_now();
    if !args.has_flag('a') {
        let path = data.join("metadata.mfs");
        let new = match metadata::read_header(&path) {
            Ok(h) => h.new,
            Err(_) if !path.exists() => {
                bail!("can't find metadata.mfs - try using option '-a'")
            }
            Err(e) => bail!("{}: {e} - try using option '-a'", path.display()),
        };
        metadata::load_file(core, &path, now).with_context(|| format!("{}", path.display()))?;
        info!(
            version = core.version,
            "metadata loaded from {}",
            path.display()
        );
        return Ok(if new { Loaded::New } else { Loaded::Dump });
    }
    let mut skipped = Vec::new();
    let chosen = recovery::choose_metadata(data, args.has_flag('i'), &mut skipped);
    for (p, e) in &skipped {
        warn!("{}: {e} - skipped", p.display());
    }
    let best = chosen?;
    eprintln!(
        "loading metadata from {} (version {})",
        best.path.display(),
        best.header.version
    );
    metadata::load_file(core, &best.path, now)
        .with_context(|| format!("{}", best.path.display()))?;
    let files = recovery::changelog_files(data)?;
    let r = recovery::replay_files(core, &files, true)?;
    for (p, l) in &r.torn {
        warn!(
            "{}:{l}: incomplete last line ignored (it was never acknowledged)",
            p.display()
        );
    }
    let msg = match r.range {
        Some((a, b)) => format!("{} changes applied ({a}..{b})", r.applied),
        None => "no changes to apply".to_string(),
    };
    info!(
        version = core.version,
        "recovered from {}: {msg}",
        best.path.display()
    );
    eprintln!("{msg}; metadata version is now {}", core.version);
    Ok(Loaded::Recovered)
}

/// How the state was loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Loaded {
    /// `metadata.mfs` was `MFSM NEW`.
    New,
    /// `metadata.mfs` was a dump.
    Dump,
    /// `-a`: a metadata file plus changelogs.
    Recovered,
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
    let cl_addr = resolve(&cfg.matocl.0, cfg.matocl.1)?;
    let cs_addr = resolve(&cfg.matocs.0, cfg.matocs.1)?;
    let ml_addr = resolve(&cfg.matoml.0, cfg.matoml.1)?;

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

    let now = unix_now();
    let mut core = Core::new(cfg.clone(), exports, 0, now);
    let data = cfg.data_path.clone();
    let loaded =
        load_state(&mut core, &data, &args).context("init: metadata manager failed !!!")?;
    if core.metaid == 0 {
        core.metaid = ((now as u64) << 32) | rand::random::<u32>() as u64;
        core.fs.log(now, format!("SETMETAID({})", core.metaid));
        info!("new metadata id: {:016X}", core.metaid);
    }
    if loaded == Loaded::Recovered {
        // Anchored by a dump to metadata.mfs.back from the core loop's first turn; until
        // it is written, the files the recovery read are all still there.
        core.save_soon = true;
        // A plain start must not find an older metadata.mfs after this recovery.
        if data.join("metadata.mfs").exists() {
            metadata::shift_backs(&data, cfg.back_meta_keep_previous.max(1))?;
            std::fs::rename(data.join("metadata.mfs"), data.join("metadata.mfs.back"))?;
            antler_common::durable::sync_dir(&data)?;
        }
    } else if loaded == Loaded::New {
        // A new file system gets a real dump at once: a metalogger keeps only those.
        let bytes = core.to_image().encode();
        metadata::write_back(&data, &bytes, cfg.back_meta_keep_previous)
            .with_context(|| format!("can't write {}/metadata.mfs.back", data.display()))?;
        std::fs::remove_file(data.join("metadata.mfs"))?;
        antler_common::durable::sync_dir(&data)?;
    } else {
        // As MooseFS: the loaded file becomes metadata.mfs.back, so after a crash a
        // plain start refuses and `-a` replays the changelog on top of it.
        metadata::shift_backs(&data, cfg.back_meta_keep_previous)?;
        std::fs::rename(data.join("metadata.mfs"), data.join("metadata.mfs.back"))?;
        antler_common::durable::sync_dir(&data)?;
    }
    core.changelog = Some(
        changelog::Changelog::open(&data, cfg.back_logs, cfg.changelog_fsync)
            .with_context(|| format!("can't open {}", changelog::file_name(&data, 0).display()))?,
    );
    core.flush();
    let metaid = core.metaid;
    // Listen only once the metadata is loaded (peers that connect are served at once).
    let cl = TcpListener::bind(cl_addr).with_context(|| format!("can't listen on {cl_addr}"))?;
    let ml = TcpListener::bind(ml_addr).with_context(|| format!("can't listen on {ml_addr}"))?;
    let cs = TcpListener::bind(cs_addr).with_context(|| format!("can't listen on {cs_addr}"))?;
    let (tx, rx) = mpsc::channel();
    let ids = Arc::new(AtomicU64::new(1));
    let shutdown = signals.shutdown_flag();
    for (l, link, nop) in [
        (cl, Link::Client, Duration::from_secs(1)),
        (ml, Link::Metalogger, Duration::from_secs(10)),
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
    match core_thread.join() {
        Ok(mut core) => {
            core.flush();
            let t = std::time::Instant::now();
            let bytes = core.to_image().encode();
            write_durably(&data.join("metadata.mfs"), &bytes)
                .with_context(|| format!("can't write {}/metadata.mfs", data.display()))?;
            if let Some(c) = &mut core.changelog {
                c.rotate()?;
            }
            info!(
                version = core.version,
                ms = t.elapsed().as_millis() as u64,
                "metadata saved to metadata.mfs"
            );
        }
        Err(_) => error!("core thread panicked: metadata not saved; use -a to recover"),
    }
    info!("exiting");
    drop(lock);
    Ok(())
}
