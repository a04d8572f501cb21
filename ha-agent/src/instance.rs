//! The thin shell around one VRRP instance: sockets, timers, VIPs, hooks and email.
//!
//! One thread owns the [`Instance`] state machine. Everything that happens reaches it as
//! an [`Input`] on its channel (decoded packets from a receiver thread, tracker changes,
//! address and link events, operator commands); it feeds the machine and carries out the
//! returned actions in order. Hooks and email run on their own threads and never delay
//! a transition.
//!
//! An instance is IPv4 or IPv6, as its VIPs are. IPv4: raw socket with our own IPv4
//! header, advert source = the interface's primary address, gratuitous ARPs. IPv6
//! (VRRPv3 only): raw IPv6 socket, advert source = the interface's link-local address,
//! unsolicited neighbour advertisements where IPv4 sends gratuitous ARPs.

use crate::config::{InstanceCfg, Vip};
use crate::email::{Mailer, RoleChange};
use crate::fsm::{Action, Event, Instance, Params, Peer, Reason, State};
use crate::net::{GarpSender, NetEvent, Netlink, Vrrp6Socket, VrrpSocket};
use crate::notify::{HookJob, Notifier};
use crate::packet::{
    decode_ip, decode_v6, encode_ip, Advert, Checksum, DecodeError, Received, Version, VRRP_GROUP,
    VRRP_GROUP6,
};
use crate::track::TrackerStatus;
use crate::validate::{check, Expect, Reject, RejectCounters};
use serde::Serialize;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tracing::{error, info, info_span, warn};

/// Messages to an instance thread.
#[derive(Debug)]
pub enum Input {
    /// A packet from the VRRP socket, decoded (or why it could not be).
    Packet(Box<Result<Received, DecodeError>>),
    /// Nothing happened; lets the receiver thread notice that the instance is gone.
    Idle,
    /// Tracked priority delta and fault flag, with the trackers behind them.
    Track {
        /// Sum of weights.
        delta: i32,
        /// A weight-0 tracker failed or a tracked interface is down.
        fault: bool,
        /// Every tracker of the instance, for `status`.
        trackers: Vec<TrackerStatus>,
    },
    /// Kernel address or link event.
    Net(NetEvent),
    /// Operator command with a reply channel.
    Control(Command, Sender<Result<String, String>>),
    /// New settings from `reload` (same instance name).
    Reload(Box<InstanceCfg>),
    /// A backup hello from a peer ha-agent.
    Hello(crate::hello::Hello),
    /// Stop the instance.
    Shutdown,
}

/// Operator commands for one instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Hand MASTER to the peer and wait until it is master.
    Switchover,
    /// Maintenance on/off.
    Maintenance(bool),
}

/// Status snapshot of one instance (for `ha-agent status`).
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// Instance name.
    pub name: String,
    /// Current state.
    pub state: State,
    /// Effective priority.
    pub priority: u8,
    /// Configured priority.
    pub base_priority: u8,
    /// Address family of the instance: `"IPv4"` or `"IPv6"`.
    pub family: &'static str,
    /// Our advert source address (primary IPv4, or IPv6 link-local).
    pub local: IpAddr,
    /// Address of the current master, if known.
    pub master: Option<IpAddr>,
    /// Last transition: from, to, reason, seconds since the Unix epoch.
    pub last_transition: Option<(State, State, String, f64)>,
    /// Last advert from a peer.
    pub peer: Option<(IpAddr, u8)>,
    /// Maintenance mode.
    pub maintenance: bool,
    /// Tracker delta and fault.
    pub track_delta: i32,
    /// A tracker forces FAULT.
    pub track_fault: bool,
    /// Each tracker (scripts, then interfaces) with its state and contribution.
    pub trackers: Vec<TrackerStatus>,
    /// Adverts sent.
    pub adverts_sent: u64,
    /// Valid adverts received.
    pub adverts_received: u64,
    /// Rejected packets by reason.
    pub rejected: RejectCounters,
    /// VIPs.
    pub vips: Vec<String>,
}

/// Shared status, updated by the instance thread.
pub type SharedStatus = Arc<Mutex<Status>>;

/// What an instance thread needs from the daemon.
pub struct Env {
    /// This node's name.
    pub router_id: String,
    /// Hook runner.
    pub notifier: Arc<Notifier>,
    /// Mailer, if configured.
    pub mailer: Option<Arc<Mailer>>,
    /// Socket for backup hellos.
    pub hello: Arc<crate::hello::HelloSocket>,
}

/// The VRRP socket of an instance's family.
enum Sock {
    V4(Arc<VrrpSocket>),
    V6(Arc<Vrrp6Socket>),
}

struct Shell {
    cfg: InstanceCfg,
    fsm: Instance,
    sock: Sock,
    nl: Netlink,
    garp: GarpSender,
    ifindex: u32,
    mac: [u8; 6],
    vips: Vec<Vip>,
    epoch: Instant,
    ip_id: u16,
    status: SharedStatus,
    env: Arc<Env>,
    maintenance: bool,
    pending_switchover: Option<(Instant, Sender<Result<String, String>>)>,
    last_reject_log: Option<Instant>,
    next_garp_refresh: Option<Instant>,
    hello_dst: SocketAddr,
    next_hello: Instant,
}

fn params(cfg: &InstanceCfg, local: IpAddr) -> Params {
    Params {
        version: cfg.vrrp_version(),
        vrid: cfg.virtual_router_id,
        priority: cfg.priority,
        advert_int_cs: cfg.advert_int_cs(),
        preempt: !cfg.nopreempt,
        preempt_delay: cfg.preempt_delay(),
        auth: cfg.auth_bytes(),
        local_addr: local,
        vips: cfg.vips().iter().map(|v| v.addr).collect(),
    }
}

/// Whether a reloaded `new` configuration of an instance can be applied to the running
/// instance (see [`Input::Reload`]) or needs it stopped and started again: a change of
/// interface, address family, or multicast/unicast mode needs other sockets.
pub fn restart_needed(old: &InstanceCfg, new: &InstanceCfg) -> bool {
    old.interface != new.interface
        || old.is_ipv6() != new.is_ipv6()
        || old.unicast_peer.is_empty() != new.unicast_peer.is_empty()
}

/// How long an IPv6 instance waits at start for its interface's link-local address to
/// leave the tentative state (duplicate address detection takes about 1 s by default).
const LINK_LOCAL_WAIT: Duration = Duration::from_secs(10);

/// The interface's usable link-local address, waiting up to [`LINK_LOCAL_WAIT`] while it
/// is still tentative.
fn wait_link_local(ifname: &str) -> std::io::Result<Ipv6Addr> {
    let deadline = Instant::now() + LINK_LOCAL_WAIT;
    loop {
        match crate::net::link_local_ipv6(ifname) {
            Ok(a) => return Ok(a),
            Err(e) if Instant::now() < deadline && e.to_string().contains("tentative") => {
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Starts an instance: opens its sockets, removes leftover VIPs and enters BACKUP (or
/// MASTER for an address owner). Returns the input channel and the status handle.
pub fn spawn(
    cfg: InstanceCfg,
    env: Arc<Env>,
) -> anyhow::Result<(Sender<Input>, SharedStatus, std::thread::JoinHandle<()>)> {
    let info = crate::net::if_info(&cfg.interface)?;
    let vips = cfg.vips();
    let multicast = cfg.unicast_peer.is_empty();
    let (local, hello_dst, sock) = if cfg.is_ipv6() {
        let local = wait_link_local(&cfg.interface)?;
        let sock = Vrrp6Socket::open(&cfg.interface, multicast)?;
        (
            IpAddr::V6(local),
            crate::hello::ipv6_destination(info.index),
            Sock::V6(Arc::new(sock)),
        )
    } else {
        let vip_addrs: Vec<Ipv4Addr> = vips
            .iter()
            .filter_map(|v| match v.addr {
                IpAddr::V4(a) => Some(a),
                IpAddr::V6(_) => None,
            })
            .collect();
        let local = crate::net::primary_ipv4(&cfg.interface, &vip_addrs)?;
        let prefix = info
            .addrs
            .iter()
            .find(|(a, _)| *a == local)
            .map(|(_, p)| *p)
            .unwrap_or(24);
        let dst = crate::hello::broadcast(local, prefix);
        let sock = VrrpSocket::open(&cfg.interface, multicast)?;
        (
            IpAddr::V4(local),
            SocketAddr::from((dst, crate::hello::HELLO_PORT)),
            Sock::V4(Arc::new(sock)),
        )
    };
    let nl = Netlink::open()?;
    let garp = GarpSender::open(&cfg.interface)?;
    let fsm = Instance::new(params(&cfg, local));
    let status = Arc::new(Mutex::new(Status {
        name: cfg.name.clone(),
        state: State::Init,
        priority: cfg.priority,
        base_priority: cfg.priority,
        family: if local.is_ipv6() { "IPv6" } else { "IPv4" },
        local,
        master: None,
        last_transition: None,
        peer: None,
        maintenance: false,
        track_delta: 0,
        track_fault: false,
        trackers: Vec::new(),
        adverts_sent: 0,
        adverts_received: 0,
        rejected: RejectCounters::default(),
        vips: cfg.virtual_ipaddress.clone(),
    }));
    let (tx, rx) = mpsc::channel();
    // Receiver thread: decoded packets into the channel (decoding is pure, and the
    // IPv6 socket's ancillary data is at hand here).
    {
        let sock = match &sock {
            Sock::V4(s) => Sock::V4(Arc::clone(s)),
            Sock::V6(s) => Sock::V6(Arc::clone(s)),
        };
        let tx = tx.clone();
        let name = cfg.name.clone();
        std::thread::Builder::new()
            .name(format!("vrrp-rx-{name}"))
            .spawn(move || {
                let mut buf = vec![0u8; 4096];
                let wait = Duration::from_millis(500);
                loop {
                    let got = match &sock {
                        Sock::V4(s) => s
                            .recv(&mut buf, wait)
                            .map(|r| r.map(|n| decode_ip(&buf[..n]))),
                        Sock::V6(s) => s.recv(&mut buf, wait).map(|r| {
                            r.map(|d| decode_v6(&buf[..d.len], d.src, d.dst, d.hop_limit))
                        }),
                    };
                    let input = match got {
                        Ok(Some(r)) => Input::Packet(Box::new(r)),
                        Ok(None) => Input::Idle,
                        Err(e) => {
                            warn!(instance = %name, "VRRP receive error: {e}");
                            std::thread::sleep(Duration::from_millis(200));
                            Input::Idle
                        }
                    };
                    // Stop when the instance thread is gone.
                    if tx.send(input).is_err() {
                        return;
                    }
                }
            })?;
    }
    let mut shell = Shell {
        cfg,
        fsm,
        sock,
        nl,
        garp,
        ifindex: info.index,
        mac: info.mac,
        vips,
        epoch: Instant::now(),
        ip_id: rand::random(),
        status: Arc::clone(&status),
        env,
        maintenance: false,
        pending_switchover: None,
        last_reject_log: None,
        next_garp_refresh: None,
        hello_dst,
        next_hello: Instant::now(),
    };
    let h = std::thread::Builder::new()
        .name(format!("vrrp-{}", shell.cfg.name))
        .spawn(move || {
            let span =
                info_span!("instance", name = %shell.cfg.name, vrid = shell.cfg.virtual_router_id);
            let _g = span.enter();
            shell.run(rx);
        })?;
    Ok((tx, status, h))
}

impl Shell {
    fn now(&self) -> Duration {
        self.epoch.elapsed()
    }

    fn run(&mut self, rx: Receiver<Input>) {
        let start = self.fsm.handle(Event::Startup, self.now());
        self.apply(start);
        loop {
            let wait = self
                .fsm
                .next_deadline()
                .map(|d| d.saturating_sub(self.now()))
                .unwrap_or(Duration::from_secs(1))
                .min(Duration::from_millis(200));
            match rx.recv_timeout(wait) {
                Ok(Input::Idle) => {}
                Ok(Input::Packet(p)) => self.packet(*p),
                Ok(Input::Track {
                    delta,
                    fault,
                    trackers,
                }) => {
                    {
                        let mut s = self.status.lock().unwrap();
                        s.track_delta = delta;
                        s.track_fault = fault;
                        s.trackers = trackers;
                    }
                    let a = self.fsm.handle(Event::Track { delta, fault }, self.now());
                    self.apply(a);
                }
                Ok(Input::Net(ev)) => self.net_event(ev),
                Ok(Input::Hello(h)) => {
                    // Hellos of the other family belong to another instance's link.
                    let same_family = h.src.is_ipv6() == self.fsm.params.local_addr.is_ipv6();
                    if h.vrid == self.cfg.virtual_router_id && same_family {
                        // A peer not heard for a while is back (a healed split brain
                        // whose loser heard us first and stepped down without a word
                        // to us, or a restarted peer): re-announce, so that clients
                        // that followed it come back now rather than at ARP expiry.
                        let reappeared = self.fsm.state == State::Master
                            && h.src != self.fsm.params.local_addr
                            && self.fsm.peer_recent(self.now()).is_none();
                        if reappeared {
                            info!(peer = %h.src, "peer back after a silence; re-announcing with gratuitous ARPs");
                            self.send_garp();
                        }
                        let a = self.fsm.handle(
                            Event::PeerHello {
                                src: h.src,
                                priority: h.priority,
                            },
                            self.now(),
                        );
                        self.apply(a);
                    }
                }
                Ok(Input::Control(cmd, reply)) => self.control(cmd, reply),
                Ok(Input::Reload(cfg)) => self.reload(*cfg),
                Ok(Input::Shutdown) | Err(RecvTimeoutError::Disconnected) => {
                    let a = self.fsm.handle(Event::Shutdown, self.now());
                    self.apply(a);
                    return;
                }
                Err(RecvTimeoutError::Timeout) => {}
            }
            let a = self.fsm.handle(Event::Tick, self.now());
            self.apply(a);
            self.check_switchover();
            self.garp_refresh();
            self.send_hello();
            self.publish();
        }
    }

    fn packet(&mut self, p: Result<Received, DecodeError>) {
        let expect = Expect {
            vrid: self.cfg.virtual_router_id,
            version: self.cfg.vrrp_version(),
            auth: self.cfg.auth_bytes(),
            interval_cs: self.cfg.advert_int_cs(),
        };
        let r = match p {
            Ok(r) => check(&r, &expect).map(|_| r),
            Err(e) => Err(Reject::from_decode(&e)),
        };
        match r {
            Ok(r) => {
                if !self.cfg.unicast_peer.is_empty() && !self.cfg.unicast_peer.contains(&r.src) {
                    return;
                }
                self.status.lock().unwrap().adverts_received += 1;
                let a = self.fsm.handle(
                    Event::Advert {
                        src: r.src,
                        advert: r.advert,
                    },
                    self.now(),
                );
                self.apply(a);
            }
            Err(Reject::OtherVrid) => {}
            Err(reason) => {
                self.status.lock().unwrap().rejected.add(reason);
                // Rate-limited: bad input must not flood the log.
                if self
                    .last_reject_log
                    .is_none_or(|t| t.elapsed() >= Duration::from_secs(10))
                {
                    self.last_reject_log = Some(Instant::now());
                    warn!("ignored VRRP packet: {} (further rejections counted in status, logged every 10 s)", reason.as_str());
                }
            }
        }
    }

    fn send_advert(&mut self, priority: u8) {
        let local = self.fsm.params.local_addr;
        let advert = Advert {
            version: self.cfg.vrrp_version(),
            vrid: self.cfg.virtual_router_id,
            priority,
            interval_cs: self.cfg.advert_int_cs(),
            auth: self.cfg.auth_bytes(),
            addrs: self.vips.iter().map(|v| v.addr).collect(),
        };
        let targets: Vec<IpAddr> = if !self.cfg.unicast_peer.is_empty() {
            self.cfg.unicast_peer.clone()
        } else if local.is_ipv6() {
            vec![VRRP_GROUP6.into()]
        } else {
            vec![VRRP_GROUP.into()]
        };
        for dst in targets {
            // keepalived's default v3 checksum includes the pseudo-header (the only
            // form over IPv6).
            let mode = if advert.version == Version::V3 {
                Checksum::PseudoHeader
            } else {
                Checksum::Plain
            };
            let sent = match (&self.sock, local, dst) {
                (Sock::V4(s), IpAddr::V4(src), IpAddr::V4(dst)) => {
                    self.ip_id = self.ip_id.wrapping_add(1);
                    let pkt = encode_ip(src, dst, self.ip_id, &advert.encode(src, dst, mode));
                    s.send(&pkt, dst)
                }
                (Sock::V6(s), IpAddr::V6(src), IpAddr::V6(dst)) => {
                    s.send(&advert.encode(src, dst, mode), src, dst)
                }
                // Excluded by config validation (one family per instance).
                _ => Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "address family mismatch",
                )),
            };
            if let Err(e) = sent {
                warn!("advert send to {dst} failed: {e}");
            }
        }
        self.status.lock().unwrap().adverts_sent += 1;
    }

    fn add_vips(&mut self) {
        for v in &self.vips {
            if let Err(e) = self.nl.add_addr(self.ifindex, v.addr, v.prefix) {
                error!(vip = %v, "adding VIP failed: {e}");
            }
        }
        self.next_garp_refresh = (self.cfg.garp_refresh > 0.0)
            .then(|| Instant::now() + Duration::from_secs_f64(self.cfg.garp_refresh));
    }

    fn remove_vips(&mut self) {
        for v in &self.vips {
            if let Err(e) = self.nl.del_addr(self.ifindex, v.addr, v.prefix) {
                error!(vip = %v, "removing VIP failed: {e}");
            }
        }
        self.next_garp_refresh = None;
    }

    /// Announces the VIPs: gratuitous ARPs for IPv4, unsolicited neighbour
    /// advertisements for IPv6, `garp_repeat` rounds `garp_interval` apart.
    fn send_garp(&self) {
        let interval = Duration::from_secs_f64(self.cfg.garp_interval);
        let repeat = self.cfg.garp_repeat;
        let v4: Vec<Ipv4Addr> = self
            .vips
            .iter()
            .filter_map(|v| match v.addr {
                IpAddr::V4(a) => Some(a),
                IpAddr::V6(_) => None,
            })
            .collect();
        let v6: Vec<Ipv6Addr> = self
            .vips
            .iter()
            .filter_map(|v| match v.addr {
                IpAddr::V6(a) => Some(a),
                IpAddr::V4(_) => None,
            })
            .collect();
        if !v4.is_empty() {
            if let Err(e) = self.garp.send_burst(self.mac, &v4, repeat, interval) {
                warn!("gratuitous ARP failed: {e}");
            }
        }
        if !v6.is_empty() {
            let router = crate::net::ipv6_forwarding(&self.cfg.interface);
            if let Err(e) = self
                .garp
                .send_na_burst(self.mac, &v6, router, repeat, interval)
            {
                warn!("unsolicited neighbour advertisement failed: {e}");
            }
        }
    }

    fn apply(&mut self, actions: Vec<Action>) {
        for a in actions {
            match a {
                Action::SendAdvert { priority } => self.send_advert(priority),
                Action::AddVips => self.add_vips(),
                Action::RemoveVips => self.remove_vips(),
                Action::SendGarp => self.send_garp(),
                Action::Transition { from, to, reason } => self.transition(from, to, reason),
            }
        }
    }

    fn transition(&mut self, from: State, to: State, reason: Reason) {
        info!(from = from.name(), to = to.name(), %reason, "entering {} state", to.name());
        let specific = match to {
            State::Master => self.cfg.notify_master.clone(),
            State::Backup => self.cfg.notify_backup.clone(),
            State::Fault => self.cfg.notify_fault.clone(),
            State::Stopped => self.cfg.notify_stop.clone(),
            State::Init => None,
        };
        if from != State::Init
            || to != State::Backup
            || specific.is_some()
            || self.cfg.notify.is_some()
        {
            self.env.notifier.notify(HookJob {
                instance: self.cfg.name.clone(),
                state: to,
                priority: self.fsm.effective_priority(),
                specific,
                generic: self.cfg.notify.clone(),
            });
        }
        if let Some(m) = &self.env.mailer {
            m.report(RoleChange {
                host: self.env.router_id.clone(),
                instance: self.cfg.name.clone(),
                from,
                to,
                vips: self.cfg.virtual_ipaddress.clone(),
                reason: reason.to_string(),
                at: SystemTime::now(),
            });
        }
        self.publish();
    }

    fn net_event(&mut self, ev: NetEvent) {
        match ev {
            NetEvent::AddrRemoved { ifindex, addr }
                if ifindex == self.ifindex && self.fsm.state == State::Master =>
            {
                if let Some(v) = self.vips.iter().find(|v| v.addr == addr).copied() {
                    warn!(vip = %v, "VIP was deleted behind our back while MASTER; restoring it");
                    if let Err(e) = self.nl.add_addr(self.ifindex, v.addr, v.prefix) {
                        error!(vip = %v, "restoring VIP failed: {e}");
                    }
                    self.send_garp();
                }
            }
            NetEvent::AddrAdded { ifindex, addr }
                if ifindex == self.ifindex && self.fsm.state != State::Master =>
            {
                if let Some(v) = self.vips.iter().find(|v| v.addr == addr).copied() {
                    warn!(vip = %v, "VIP appeared while not MASTER; removing it");
                    let _ = self.nl.del_addr(self.ifindex, v.addr, v.prefix);
                }
            }
            _ => {}
        }
    }

    fn control(&mut self, cmd: Command, reply: Sender<Result<String, String>>) {
        match cmd {
            Command::Maintenance(on) => {
                self.maintenance = on;
                let a = self.fsm.handle(Event::Maintenance(on), self.now());
                self.apply(a);
                let _ = reply.send(Ok(format!(
                    "{}: maintenance {}",
                    self.cfg.name,
                    if on { "on" } else { "off" }
                )));
            }
            Command::Switchover => match self.fsm.can_switchover(self.now()) {
                Err(e) => {
                    let _ = reply.send(Err(format!("{}: switchover refused: {e}", self.cfg.name)));
                }
                Ok(peer) => {
                    info!(peer = %peer.addr, "operator switchover: handing MASTER to the peer");
                    let a = self.fsm.handle(Event::Switchover, self.now());
                    self.apply(a);
                    self.pending_switchover = Some((Instant::now(), reply));
                }
            },
        }
    }

    /// Completes a pending switchover once the peer advertises as master.
    fn check_switchover(&mut self) {
        let Some((started, _)) = &self.pending_switchover else {
            return;
        };
        let started = *started;
        let peer_master = self.fsm.state == State::Backup
            && self
                .fsm
                .current_master
                .is_some_and(|m| m != self.fsm.params.local_addr)
            && self
                .fsm
                .peer
                .is_some_and(|p: Peer| p.priority > 0 && self.epoch + p.at > started);
        let limit = Duration::from_millis(10 * self.cfg.advert_int_cs() as u64 * 10 + 5000);
        if peer_master {
            let (_, reply) = self.pending_switchover.take().expect("checked");
            let peer = self.fsm.current_master.expect("checked");
            let _ = reply.send(Ok(format!(
                "{}: MASTER moved to {peer} in {} ms",
                self.cfg.name,
                started.elapsed().as_millis()
            )));
        } else if started.elapsed() > limit {
            let (_, reply) = self.pending_switchover.take().expect("checked");
            let _ = reply.send(Err(format!(
                "{}: peer did not become MASTER within {} ms",
                self.cfg.name,
                limit.as_millis()
            )));
        }
    }

    /// While BACKUP, tells a master that we are alive (every advert interval).
    fn send_hello(&mut self) {
        if self.fsm.state != State::Backup || Instant::now() < self.next_hello {
            return;
        }
        self.next_hello =
            Instant::now() + Duration::from_millis(self.cfg.advert_int_cs() as u64 * 10);
        if let Err(e) = self.env.hello.send(
            self.hello_dst,
            self.cfg.virtual_router_id,
            self.fsm.effective_priority(),
        ) {
            warn!("backup hello to {} failed: {e}", self.hello_dst);
        }
    }

    fn garp_refresh(&mut self) {
        if let Some(t) = self.next_garp_refresh {
            if Instant::now() >= t && self.fsm.state == State::Master {
                self.send_garp();
                self.next_garp_refresh =
                    Some(Instant::now() + Duration::from_secs_f64(self.cfg.garp_refresh));
            }
        }
    }

    /// Applies a reloaded configuration without dropping VIPs that did not change.
    /// Interface, family and multicast mode are the same (see [`restart_needed`]).
    fn reload(&mut self, cfg: InstanceCfg) {
        let new_vips = cfg.vips();
        if self.fsm.state == State::Master {
            for v in self.vips.iter().filter(|v| !new_vips.contains(v)) {
                let _ = self.nl.del_addr(self.ifindex, v.addr, v.prefix);
            }
            for v in new_vips.iter().filter(|v| !self.vips.contains(v)) {
                if let Err(e) = self.nl.add_addr(self.ifindex, v.addr, v.prefix) {
                    error!(vip = %v, "adding VIP failed: {e}");
                }
            }
        }
        let local = self.fsm.params.local_addr;
        self.fsm.params = params(&cfg, local);
        self.vips = new_vips;
        self.status.lock().unwrap().vips = cfg.virtual_ipaddress.clone();
        self.cfg = cfg;
        info!("configuration reloaded");
    }

    fn publish(&self) {
        let mut s = self.status.lock().unwrap();
        s.state = self.fsm.state;
        s.priority = self.fsm.effective_priority();
        s.base_priority = self.cfg.priority;
        s.master = self.fsm.current_master;
        s.maintenance = self.maintenance;
        s.peer = self.fsm.peer.map(|p| (p.addr, p.priority));
        s.last_transition = self.fsm.last_transition.as_ref().map(|(f, t, r, at)| {
            let wall = SystemTime::now() - (self.now().saturating_sub(*at));
            let secs = wall
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0);
            (*f, *t, r.to_string(), secs)
        });
    }
}
