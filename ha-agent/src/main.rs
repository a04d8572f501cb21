//! `ha-agent`: VRRP failover of virtual IPs with notify hooks, email and operator control.
//!
//! ```text
//! ha-agent -c /etc/ha-agent/ha-agent.toml [--socket PATH]    run in the foreground
//! ha-agent check-config FILE
//! ha-agent status [--json]            | switchover INSTANCE
//! ha-agent maintenance INSTANCE on|off | reload               (all take --socket PATH)
//! ```

use antler_common::daemon::Signals;
use antler_ha_agent::config::Config;
use antler_ha_agent::control::{self, Reply, Request, DEFAULT_SOCKET};
use antler_ha_agent::instance::{self, Command, Env, Input, SharedStatus};
use antler_ha_agent::net::{if_info, NetEvent, NetMonitor};
use antler_ha_agent::{email, notify, track};
use anyhow::{bail, Context};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracing::{error, info, warn};

const USAGE: &str = "usage: ha-agent -c FILE [--socket PATH]
       ha-agent check-config FILE
       ha-agent [--socket PATH] status [--json] | switchover INSTANCE | maintenance INSTANCE on|off | reload";

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut socket = PathBuf::from(DEFAULT_SOCKET);
    if let Some(i) = args.iter().position(|a| a == "--socket") {
        if i + 1 >= args.len() {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
        socket = PathBuf::from(args.remove(i + 1));
        args.remove(i);
    }
    let r = match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["-c", file] => run(Path::new(file), &socket),
        ["check-config", file] => Config::load(Path::new(file))
            .map(|c| println!("{file}: OK ({} instances)", c.vrrp_instance.len()))
            .map_err(Into::into),
        ["status"] => client(&socket, Request::Status, false),
        ["status", "--json"] => client(&socket, Request::Status, true),
        ["switchover", inst] => client(
            &socket,
            Request::Switchover {
                instance: inst.to_string(),
            },
            false,
        ),
        ["maintenance", inst, onoff @ ("on" | "off")] => client(
            &socket,
            Request::Maintenance {
                instance: inst.to_string(),
                on: *onoff == "on",
            },
            false,
        ),
        ["reload"] => client(&socket, Request::Reload, false),
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ha-agent: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn client(socket: &Path, req: Request, json: bool) -> anyhow::Result<()> {
    let r = control::call(socket, &req, Duration::from_secs(60)).map_err(anyhow::Error::msg)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else if let Some(list) = &r.instances {
        for i in list.as_array().into_iter().flatten() {
            println!(
                "{}: {} priority {} (base {}) master {} peer {} last {} rejected {}",
                i["name"].as_str().unwrap_or("?"),
                i["state"].as_str().unwrap_or("?"),
                i["priority"],
                i["base_priority"],
                i["master"].as_str().unwrap_or("-"),
                i["peer"],
                i["last_transition"],
                i["rejected"],
            );
            for t in i["trackers"].as_array().into_iter().flatten() {
                println!(
                    "  track {} {}: {} weight {} contribution {}{}",
                    t["kind"].as_str().unwrap_or("?"),
                    t["name"].as_str().unwrap_or("?"),
                    t["state"].as_str().unwrap_or("?"),
                    t["weight"],
                    t["contribution"],
                    if t["fault"] == true { " (FAULT)" } else { "" },
                );
            }
        }
    } else {
        println!("{}", r.message);
    }
    if !r.ok {
        bail!("{}", r.message);
    }
    Ok(())
}

/// The input channels of the running instances, by name.
type Senders = Arc<Mutex<Vec<(String, Sender<Input>)>>>;

/// The status handles of the running instances, in configuration order.
type Statuses = Arc<Mutex<Vec<(String, SharedStatus)>>>;

struct Running {
    cfg: antler_ha_agent::config::InstanceCfg,
    tx: Sender<Input>,
    status: SharedStatus,
    handle: std::thread::JoinHandle<()>,
}

/// The configuration the tracker thread works from, with a generation number that a
/// reload bumps.
type SharedConfig = Arc<Mutex<(u64, Config)>>;

fn run(cfg_path: &Path, socket: &Path) -> anyhow::Result<()> {
    let cfg = Config::load(cfg_path)?;
    antler_common::logging::init("ha-agent", true, false);
    let signals = Signals::install()?;
    let listener =
        control::bind(socket).with_context(|| format!("control socket {}", socket.display()))?;
    let notifier = Arc::new(notify::Notifier::start(Duration::from_secs(30)));
    let mailer = match &cfg.smtp {
        Some(s) => Some(Arc::new(email::Mailer::start(
            s.clone(),
            cfg.global.router_id.clone(),
        )?)),
        None => None,
    };
    let hello =
        Arc::new(antler_ha_agent::hello::HelloSocket::open().context("backup hello socket")?);
    let env = Arc::new(Env {
        router_id: cfg.global.router_id.clone(),
        notifier: Arc::clone(&notifier),
        mailer: mailer.clone(),
        hello: Arc::clone(&hello),
    });

    let mut running: HashMap<String, Running> = HashMap::new();
    for i in &cfg.vrrp_instance {
        let (tx, status, handle) = instance::spawn(i.clone(), Arc::clone(&env))
            .with_context(|| format!("instance {}", i.name))?;
        running.insert(
            i.name.clone(),
            Running {
                cfg: i.clone(),
                tx,
                status,
                handle,
            },
        );
    }
    let senders: Senders = Arc::new(Mutex::new(Vec::new()));
    let statuses: Statuses = Arc::new(Mutex::new(Vec::new()));
    publish(&cfg, &running, &senders, &statuses);

    // Trackers: scripts and interfaces combine into (delta, fault) per instance.
    let shared_cfg: SharedConfig = Arc::new(Mutex::new((0, cfg.clone())));
    let link_state: Arc<Mutex<HashMap<u32, bool>>> = Arc::new(Mutex::new(HashMap::new()));
    let tracker_thread = {
        let shared_cfg = Arc::clone(&shared_cfg);
        let senders = Arc::clone(&senders);
        let link_state = Arc::clone(&link_state);
        std::thread::Builder::new()
            .name("trackers".into())
            .spawn(move || track_loop(shared_cfg, senders, link_state))?
    };

    // Backup hellos from peers, to every instance (each filters on its VRID).
    {
        let senders = Arc::clone(&senders);
        let rx = hello.try_clone()?;
        std::thread::Builder::new()
            .name("hello-rx".into())
            .spawn(move || loop {
                match rx.recv(Duration::from_millis(500)) {
                    Ok(Some(h)) => {
                        for (_, tx) in senders.lock().unwrap().iter() {
                            let _ = tx.send(Input::Hello(h));
                        }
                    }
                    Ok(None) => {}
                    Err(e) => {
                        warn!("hello receive: {e}");
                        std::thread::sleep(Duration::from_secs(1));
                    }
                }
            })?;
    }

    // Kernel events: VIP deletions behind our back, link changes.
    {
        let senders = Arc::clone(&senders);
        let link_state = Arc::clone(&link_state);
        let mon = NetMonitor::open()?;
        std::thread::Builder::new()
            .name("netmon".into())
            .spawn(move || loop {
                match mon.recv(Duration::from_millis(500)) {
                    Ok(evs) => {
                        for ev in evs {
                            if let NetEvent::Link { ifindex, up } = ev {
                                link_state.lock().unwrap().insert(ifindex, up);
                            }
                            for (_, tx) in senders.lock().unwrap().iter() {
                                let _ = tx.send(Input::Net(ev));
                            }
                        }
                    }
                    Err(e) => {
                        warn!("netlink monitor: {e}");
                        std::thread::sleep(Duration::from_secs(1));
                    }
                }
            })?;
    }

    // Operator control.
    let reload_requested = Arc::new(std::sync::atomic::AtomicBool::new(false));
    {
        let senders = Arc::clone(&senders);
        let statuses = Arc::clone(&statuses);
        let reload_requested = Arc::clone(&reload_requested);
        std::thread::Builder::new()
            .name("control".into())
            .spawn(move || {
                control::serve(listener, move |req| {
                    handle(req, &senders, &statuses, &reload_requested)
                });
            })?;
    }
    info!(instances = running.len(), socket = %socket.display(), "ha-agent running");

    let mut current = cfg;
    while !signals.shutdown_requested() {
        if signals.take_reload()
            || reload_requested.swap(false, std::sync::atomic::Ordering::Relaxed)
        {
            match Config::load(cfg_path) {
                Ok(new) => {
                    reload(&current, &new, &mut running, &env, &senders, &statuses);
                    let mut g = shared_cfg.lock().unwrap();
                    *g = (g.0 + 1, new.clone());
                    current = new;
                    info!("reload: configuration applied");
                }
                Err(e) => error!("reload refused: {e}"),
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    info!("shutting down");
    senders.lock().unwrap().clear();
    for r in running.values() {
        let _ = r.tx.send(Input::Shutdown);
    }
    for (_, r) in running.drain() {
        let _ = r.handle.join();
    }
    // Stops the script checks (the tracker thread owns them; a running check is killed)
    // before the process exits.
    shared_cfg.lock().unwrap().0 = u64::MAX;
    let _ = tracker_thread.join();
    // The instances are gone; drop our handle on the shared environment so the notifier
    // and the mailer can be shut down (flushing the STOP hook and mail) below.
    drop(env);
    if let Ok(n) = Arc::try_unwrap(notifier) {
        n.shutdown();
    }
    if let Some(m) = mailer {
        if let Ok(m) = Arc::try_unwrap(m) {
            m.shutdown(Duration::from_secs(5));
        }
    }
    let _ = std::fs::remove_file(socket);
    Ok(())
}

/// Rebuilds the instance channel and status lists from `running`, in `cfg`'s order.
fn publish(
    cfg: &Config,
    running: &HashMap<String, Running>,
    senders: &Senders,
    statuses: &Statuses,
) {
    let order = cfg
        .vrrp_instance
        .iter()
        .filter_map(|i| running.get(&i.name).map(|r| (i.name.clone(), r)));
    let (s, t): (Vec<_>, Vec<_>) = order
        .map(|(n, r)| ((n.clone(), r.tx.clone()), (n, Arc::clone(&r.status))))
        .unzip();
    *senders.lock().unwrap() = s;
    *statuses.lock().unwrap() = t;
}

/// Applies a new configuration: stops the instances that are gone (as at shutdown:
/// priority-0 advert if master, VIPs removed, STOP hook and mail), hands the others
/// their new settings (VIPs that did not change stay), and starts the new ones. An
/// instance whose interface, address family or multicast mode changed is stopped and
/// started again.
fn reload(
    old: &Config,
    new: &Config,
    running: &mut HashMap<String, Running>,
    env: &Arc<Env>,
    senders: &Senders,
    statuses: &Statuses,
) {
    if old.global != new.global || old.smtp != new.smtp {
        warn!("reload: [global] and [smtp] changes take effect at the next restart");
    }
    let stop: Vec<String> = running
        .iter()
        .filter(|(n, r)| {
            new.vrrp_instance
                .iter()
                .find(|i| &i.name == *n)
                .is_none_or(|i| instance::restart_needed(&r.cfg, i))
        })
        .map(|(n, _)| n.clone())
        .collect();
    // Nobody may address the leaving instances any more.
    senders.lock().unwrap().retain(|(n, _)| !stop.contains(n));
    statuses.lock().unwrap().retain(|(n, _)| !stop.contains(n));
    for n in &stop {
        let r = running.remove(n).expect("listed above");
        let restart = new.vrrp_instance.iter().any(|i| &i.name == n);
        if restart {
            info!(instance = %n, "reload: interface, address family or multicast mode changed; restarting the instance");
        } else {
            info!(instance = %n, "reload: instance removed from the configuration; stopping it");
        }
        let _ = r.tx.send(Input::Shutdown);
        let _ = r.handle.join();
    }
    for i in &new.vrrp_instance {
        match running.get_mut(&i.name) {
            Some(r) => {
                let _ = r.tx.send(Input::Reload(Box::new(i.clone())));
                r.cfg = i.clone();
            }
            None => match instance::spawn(i.clone(), Arc::clone(env)) {
                Ok((tx, status, handle)) => {
                    info!(instance = %i.name, "reload: instance started");
                    running.insert(
                        i.name.clone(),
                        Running {
                            cfg: i.clone(),
                            tx,
                            status,
                            handle,
                        },
                    );
                }
                Err(e) => error!(instance = %i.name, "reload: cannot start the instance: {e:#}"),
            },
        }
    }
    publish(new, running, senders, statuses);
}

/// The tracker thread: runs the `[[vrrp_script]]` checks of the current configuration
/// (restarting those a reload changed), watches tracked interfaces, and sends every
/// instance its trackers and their combined `(delta, fault)` when they change.
fn track_loop(
    shared_cfg: SharedConfig,
    senders: Senders,
    link_state: Arc<Mutex<HashMap<u32, bool>>>,
) {
    let (track_tx, track_rx) = mpsc::channel::<track::TrackUpdate>();
    let mut scripts: HashMap<String, (antler_ha_agent::config::Script, track::ScriptTracker)> =
        HashMap::new();
    // Health of each script: None until its first result.
    let mut script_ok: HashMap<String, Option<bool>> = HashMap::new();
    let mut generation = None;
    let mut cfg = shared_cfg.lock().unwrap().1.clone();
    let mut last: HashMap<String, Vec<track::TrackerStatus>> = HashMap::new();
    loop {
        let (g, c) = {
            let guard = shared_cfg.lock().unwrap();
            (
                guard.0,
                if Some(guard.0) != generation {
                    Some(guard.1.clone())
                } else {
                    None
                },
            )
        };
        if g == u64::MAX {
            return; // the daemon is stopping; dropping `scripts` stops every check
        }
        if let Some(c) = c {
            generation = Some(g);
            cfg = c;
            // Stop the checks that are gone or changed, forget what they reported...
            let changed: Vec<String> = scripts
                .iter()
                .filter(|(n, (s, _))| !cfg.vrrp_script.iter().any(|x| &x.name == *n && x == s))
                .map(|(n, _)| n.clone())
                .collect();
            for n in &changed {
                if let Some((_, t)) = scripts.remove(n) {
                    t.stop();
                }
            }
            while let Ok(u) = track_rx.try_recv() {
                if !changed.contains(&u.name) {
                    script_ok.insert(u.name, Some(u.ok));
                }
            }
            for n in &changed {
                script_ok.remove(n);
            }
            // ...and start the new ones.
            for s in &cfg.vrrp_script {
                if !scripts.contains_key(&s.name) {
                    script_ok.insert(s.name.clone(), None);
                    let t = track::ScriptTracker::start(s.clone(), track_tx.clone());
                    scripts.insert(s.name.clone(), (s.clone(), t));
                }
            }
            // Every instance hears again (a restarted one starts from nothing).
            last.clear();
        }
        match track_rx.recv_timeout(Duration::from_millis(250)) {
            Ok(u) => {
                script_ok.insert(u.name, Some(u.ok));
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        }
        for i in &cfg.vrrp_instance {
            let mut trackers: Vec<track::TrackerStatus> = i
                .track_script
                .iter()
                .filter_map(|n| cfg.vrrp_script.iter().find(|s| &s.name == n))
                .map(|s| {
                    track::TrackerStatus::new(
                        track::TrackerKind::Script,
                        &s.name,
                        s.weight,
                        script_ok.get(&s.name).copied().flatten(),
                    )
                })
                .collect();
            let mut ifaces: Vec<&String> = i.track_interface.iter().collect();
            if !ifaces.contains(&&i.interface) {
                ifaces.push(&i.interface);
            }
            for ifname in ifaces {
                let up = if_info(ifname)
                    .map(|x| *link_state.lock().unwrap().get(&x.index).unwrap_or(&x.up))
                    .unwrap_or(false);
                trackers.push(track::TrackerStatus::new(
                    track::TrackerKind::Interface,
                    ifname,
                    0,
                    Some(up),
                ));
            }
            if last.get(&i.name) != Some(&trackers) {
                let (delta, fault) = track::combine_status(&trackers);
                for (n, tx) in senders.lock().unwrap().iter() {
                    if n == &i.name
                        && tx
                            .send(Input::Track {
                                delta,
                                fault,
                                trackers: trackers.clone(),
                            })
                            .is_ok()
                    {
                        last.insert(i.name.clone(), trackers.clone());
                    }
                }
            }
        }
    }
}

fn handle(
    req: Request,
    senders: &Mutex<Vec<(String, Sender<Input>)>>,
    statuses: &Mutex<Vec<(String, SharedStatus)>>,
    reload: &std::sync::atomic::AtomicBool,
) -> Reply {
    let to_instance = |name: &str, cmd: Command| -> Reply {
        let tx = senders
            .lock()
            .unwrap()
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t.clone());
        let Some(tx) = tx else {
            return Reply {
                ok: false,
                message: format!("no instance named '{name}'"),
                instances: None,
            };
        };
        let (rtx, rrx) = mpsc::channel();
        if tx.send(Input::Control(cmd, rtx)).is_err() {
            return Reply {
                ok: false,
                message: format!("instance '{name}' is not running"),
                instances: None,
            };
        }
        match rrx.recv_timeout(Duration::from_secs(50)) {
            Ok(Ok(m)) => Reply {
                ok: true,
                message: m,
                instances: None,
            },
            Ok(Err(m)) => Reply {
                ok: false,
                message: m,
                instances: None,
            },
            Err(_) => Reply {
                ok: false,
                message: format!("instance '{name}' did not answer"),
                instances: None,
            },
        }
    };
    match req {
        Request::Status => {
            let list: Vec<_> = statuses
                .lock()
                .unwrap()
                .iter()
                .map(|(_, s)| s.lock().unwrap().clone())
                .collect();
            Reply {
                ok: true,
                message: String::new(),
                instances: serde_json::to_value(list).ok(),
            }
        }
        Request::Switchover { instance } => to_instance(&instance, Command::Switchover),
        Request::Maintenance { instance, on } => to_instance(&instance, Command::Maintenance(on)),
        Request::Reload => {
            reload.store(true, std::sync::atomic::Ordering::Relaxed);
            Reply {
                ok: true,
                message: "reload requested".into(),
                instances: None,
            }
        }
    }
}
