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

struct Running {
    tx: Sender<Input>,
    status: SharedStatus,
    handle: std::thread::JoinHandle<()>,
}

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
        running.insert(i.name.clone(), Running { tx, status, handle });
    }
    let senders: Senders = Arc::new(Mutex::new(
        running
            .iter()
            .map(|(n, r)| (n.clone(), r.tx.clone()))
            .collect(),
    ));

    // Trackers: scripts and interfaces combine into (delta, fault) per instance.
    let (track_tx, track_rx) = mpsc::channel::<track::TrackUpdate>();
    let mut trackers = Vec::new();
    for s in &cfg.vrrp_script {
        trackers.push(track::ScriptTracker::start(s.clone(), track_tx.clone()));
    }
    let link_state: Arc<Mutex<HashMap<u32, bool>>> = Arc::new(Mutex::new(HashMap::new()));
    {
        let cfg = cfg.clone();
        let senders = Arc::clone(&senders);
        let link_state = Arc::clone(&link_state);
        std::thread::Builder::new()
            .name("trackers".into())
            .spawn(move || {
                let mut script_ok: HashMap<String, bool> = cfg
                    .vrrp_script
                    .iter()
                    .map(|s| (s.name.clone(), true))
                    .collect();
                let mut last: HashMap<String, (i32, bool)> = HashMap::new();
                loop {
                    let update = track_rx.recv_timeout(Duration::from_millis(250));
                    match update {
                        Ok(u) => {
                            script_ok.insert(u.name, u.ok);
                        }
                        Err(mpsc::RecvTimeoutError::Timeout) => {}
                        Err(mpsc::RecvTimeoutError::Disconnected) => return,
                    }
                    for i in &cfg.vrrp_instance {
                        let mut weights: Vec<(i32, bool)> = i
                            .track_script
                            .iter()
                            .filter_map(|n| cfg.vrrp_script.iter().find(|s| &s.name == n))
                            .map(|s| (s.weight, *script_ok.get(&s.name).unwrap_or(&true)))
                            .collect();
                        for ifname in i
                            .track_interface
                            .iter()
                            .chain(std::iter::once(&i.interface))
                        {
                            let up = if_info(ifname)
                                .map(|x| *link_state.lock().unwrap().get(&x.index).unwrap_or(&x.up))
                                .unwrap_or(false);
                            weights.push((0, up));
                        }
                        let v = track::combine(&weights);
                        if last.get(&i.name) != Some(&v) {
                            last.insert(i.name.clone(), v);
                            for (n, tx) in senders.lock().unwrap().iter() {
                                if n == &i.name {
                                    let _ = tx.send(Input::Track {
                                        delta: v.0,
                                        fault: v.1,
                                    });
                                }
                            }
                        }
                    }
                }
            })?;
    }

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
    let statuses: Arc<Mutex<Vec<SharedStatus>>> = Arc::new(Mutex::new(
        running.values().map(|r| Arc::clone(&r.status)).collect(),
    ));
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

    while !signals.shutdown_requested() {
        if signals.take_reload()
            || reload_requested.swap(false, std::sync::atomic::Ordering::Relaxed)
        {
            match Config::load(cfg_path) {
                Ok(new) => {
                    for i in &new.vrrp_instance {
                        match running.get(&i.name) {
                            Some(r) => {
                                let _ = r.tx.send(Input::Reload(Box::new(i.clone())));
                            }
                            None => {
                                warn!(instance = %i.name, "new instance in the reloaded config: restart ha-agent to start it")
                            }
                        }
                    }
                    for n in running
                        .keys()
                        .filter(|n| !new.vrrp_instance.iter().any(|i| &i.name == *n))
                    {
                        warn!(instance = %n, "instance removed from the config: restart ha-agent to stop it");
                    }
                    info!("reload: configuration applied");
                }
                Err(e) => error!("reload refused: {e}"),
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    info!("shutting down");
    for r in running.values() {
        let _ = r.tx.send(Input::Shutdown);
    }
    for (_, r) in running.drain() {
        let _ = r.handle.join();
    }
    drop(trackers);
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

fn handle(
    req: Request,
    senders: &Mutex<Vec<(String, Sender<Input>)>>,
    statuses: &Mutex<Vec<SharedStatus>>,
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
                .map(|s| s.lock().unwrap().clone())
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
