//! The connection to the master: registration, reports, and the master's chunk orders.
//!
//! One thread reads packets from the master and forwards them, with job replies and a
//! periodic tick, into one event channel; the session loop owns the write side, so
//! packets never interleave. Orders run on their own threads and answer through the
//! channel, so a long replication never blocks keep-alives.
//!
//! The master is re-resolved at every connection attempt, so a master that restarts,
//! or moves to another node behind the same name or VIP, is found again after
//! MASTER_RECONNECTION_DELAY.

use crate::config::{resolve, CsConfig};
use crate::ids::{self, Identity};
use crate::net::{read_packet, PacketError};
use crate::replicator;
use crate::store::Store;
use antler_protocol::auth::challenge_response;
use antler_protocol::codes::{status, MATOCS_MAXPACKETSIZE};
use antler_protocol::cstoma::{
    Accepted, ChunkOpArgs, ChunkOpKind, CsToMaster, MasterToCs, RegisterBegin, StatusKind,
};
use antler_protocol::version::{check_peer_version, version_str, VERSHEX};
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddrV4, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{error, info, info_span, warn};

/// Registration progress, as a pure state machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegState {
    /// BEGIN sent, waiting for the master's verdict.
    Unregistered,
    /// Sending chunk batches; `next` indexes the next batch start.
    InProgress {
        /// Index of the next chunk to send.
        next: usize,
    },
    /// END sent; the master knows all our chunks.
    Registered,
    /// The master asked us to wait (Pro follower).
    Waiting,
}

/// What the session must do after an acknowledgement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegAction {
    /// Send this packet.
    Send(CsToMaster),
    /// Remember the id and metaid the master gave us.
    Remember(Identity),
    /// Stop: this master belongs to another instance.
    Fatal(String),
}

/// Registration state with the chunk list being reported.
#[derive(Debug, Clone)]
pub struct Registration {
    /// Where we are.
    pub state: RegState,
    chunks: Vec<(u64, u32)>,
    batch: usize,
}

impl Registration {
    /// Starts a registration that will report `chunks` in batches of `batch`.
    pub fn new(chunks: Vec<(u64, u32)>, batch: usize) -> Self {
        Registration {
            state: RegState::Unregistered,
            chunks,
            batch: batch.max(1),
        }
    }

    fn next_batch(&mut self, from: usize) -> CsToMaster {
        if from >= self.chunks.len() {
            self.state = RegState::Registered;
            CsToMaster::RegisterEnd
        } else {
            let to = (from + self.batch).min(self.chunks.len());
            self.state = RegState::InProgress { next: to };
            CsToMaster::RegisterChunks(self.chunks[from..to].to_vec())
        }
    }

    /// Handles `MATOCS_MASTER_ACK` (accepted forms). `ours` is our stored identity and
    /// `disks` the metaid found on our disks.
    pub fn on_ack(&mut self, a: Accepted, ours: Identity, disks: Option<u64>) -> Vec<RegAction> {
        let mut out = Vec::new();
        if a.version.is_some() {
            let master_meta = a.metaid.unwrap_or(0);
            if let Err(e) = ids::check_master_metaid(master_meta, ours.metaid, disks) {
                return vec![RegAction::Fatal(e.to_string())];
            }
            let csid = a.csid.unwrap_or(0);
            let new_id = Identity {
                csid: if csid > 0 { csid } else { ours.csid },
                metaid: if master_meta > 0 {
                    master_meta
                } else {
                    ours.metaid
                },
            };
            if new_id != ours {
                out.push(RegAction::Remember(new_id));
            }
        }
        match self.state {
            RegState::Unregistered | RegState::Waiting => {
                out.push(RegAction::Send(CsToMaster::Labels(0)));
                let b = self.next_batch(0);
                out.push(RegAction::Send(b));
            }
            RegState::InProgress { next } => {
                let b = self.next_batch(next);
                out.push(RegAction::Send(b));
            }
            RegState::Registered => {}
        }
        out
    }
}

enum Ev {
    Packet(u32, Vec<u8>),
    Closed(String),
    Reply(Vec<u8>),
}

/// Why a session ended.
#[derive(Debug, PartialEq, Eq)]
enum End {
    Reconnect,
    Shutdown,
    Fatal,
}

/// Runs the master connection until `shutdown` is set or the master is fatally wrong.
/// Returns `Err` with the reason in the latter case.
pub fn run(
    cfg: &CsConfig,
    store: Arc<Store>,
    my_port: u16,
    my_ip: Ipv4Addr,
    shutdown: Arc<AtomicBool>,
) -> Result<(), String> {
    let mut ident = ids::load_identity(&cfg.data_path);
    let disks_metaid = store
        .disks()
        .iter()
        .filter_map(|d| ids::load_disk_metaid(&d.path))
        .find(|m| *m != 0);
    loop {
        if shutdown.load(Ordering::Relaxed) {
            return Ok(());
        }
        let addr = match resolve(&cfg.master_host, cfg.master_port) {
            Ok(a) => a,
            Err(e) => {
                warn!(master = %cfg.master_host, "can't resolve master host/port: {e}");
                sleep_unless(&shutdown, cfg.reconnection_delay);
                continue;
            }
        };
        match connect(cfg, addr) {
            Ok(s) => {
                info!(master = %addr, "connected to master");
                let span = info_span!("master", %addr);
                let _g = span.enter();
                let end = session(
                    cfg,
                    &store,
                    s,
                    my_ip,
                    my_port,
                    &mut ident,
                    disks_metaid,
                    &shutdown,
                );
                match end {
                    Ok(End::Shutdown) => return Ok(()),
                    Ok(End::Fatal) => {
                        return Err("master belongs to another MooseFS instance".into())
                    }
                    Ok(End::Reconnect) => {}
                    Err(e) => warn!("connection with master lost: {e}"),
                }
            }
            Err(e) => warn!(master = %addr, "connect to master failed: {e}"),
        }
        sleep_unless(&shutdown, cfg.reconnection_delay);
    }
}

fn sleep_unless(flag: &AtomicBool, d: Duration) {
    let end = Instant::now() + d;
    while Instant::now() < end && !flag.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn connect(cfg: &CsConfig, addr: SocketAddrV4) -> std::io::Result<TcpStream> {
    let bind = resolve(&cfg.bind_host, 0)?;
    let s = if bind.ip().is_unspecified() {
        TcpStream::connect_timeout(&addr.into(), Duration::from_secs(10))?
    } else {
        socket2_connect(bind, addr)?
    };
    s.set_nodelay(true)?;
    Ok(s)
}

/// Connects from a specific local address (BIND_HOST).
fn socket2_connect(bind: SocketAddrV4, addr: SocketAddrV4) -> std::io::Result<TcpStream> {
    use std::os::fd::FromRawFd;
    // SAFETY: plain socket(2) call; the descriptor is owned by the TcpStream below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh socket we own; from_raw_fd takes ownership and closes it on drop.
    let stream = unsafe { TcpStream::from_raw_fd(fd) };
    let sa = |a: SocketAddrV4| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: a.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*a.ip()).to_be(),
        },
        sin_zero: [0; 8],
    };
    let b = sa(bind);
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: `b` is a valid sockaddr_in for the duration of the call.
    if unsafe { libc::bind(fd, &b as *const _ as *const libc::sockaddr, len) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let a = sa(addr);
    // SAFETY: `a` is a valid sockaddr_in for the duration of the call (blocking connect).
    if unsafe { libc::connect(fd, &a as *const _ as *const libc::sockaddr, len) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(stream)
}

#[allow(clippy::too_many_arguments)]
fn session(
    cfg: &CsConfig,
    store: &Arc<Store>,
    s: TcpStream,
    my_ip: Ipv4Addr,
    my_port: u16,
    ident: &mut Identity,
    disks_metaid: Option<u64>,
    shutdown: &Arc<AtomicBool>,
) -> Result<End, String> {
    let (tx, rx) = mpsc::channel::<Ev>();
    {
        let mut r = s.try_clone().map_err(|e| e.to_string())?;
        let tx = tx.clone();
        std::thread::Builder::new()
            .name("master-reader".into())
            .spawn(move || {
                let mut buf = Vec::new();
                loop {
                    match read_packet(&mut r, &mut buf, MATOCS_MAXPACKETSIZE) {
                        Ok(Some(t)) => {
                            if tx.send(Ev::Packet(t, std::mem::take(&mut buf))).is_err() {
                                return;
                            }
                        }
                        Ok(None) => {
                            let _ = tx.send(Ev::Closed("master closed the connection".into()));
                            return;
                        }
                        Err(PacketError::Io(e)) => {
                            let _ = tx.send(Ev::Closed(format!("read error: {e}")));
                            return;
                        }
                        Err(e) => {
                            let _ = tx.send(Ev::Closed(format!("bad packet from master: {e}")));
                            return;
                        }
                    }
                }
            })
            .map_err(|e| e.to_string())?;
    }
    let mut reg = Registration::new(store.chunk_list(), cfg.chunks_per_register_packet as usize);
    let csid = ident.csid;
    let begin = |auth: Option<[u8; 16]>| {
        CsToMaster::RegisterBegin(RegisterBegin {
            auth,
            version: VERSHEX,
            ip: u32::from(my_ip),
            port: my_port,
            timeout: cfg.master_timeout,
            csid,
            space: store.space(),
        })
    };
    let mut out = Out {
        s,
        last: Instant::now(),
    };
    out.send(&begin(None).encode())?;
    let mut auth_sent = false;
    let mut timeout = Duration::from_secs(if cfg.master_timeout > 0 {
        cfg.master_timeout as u64
    } else {
        10
    });
    let mut last_read = Instant::now();
    let mut last_reports = Instant::now();
    let mut last_load = Instant::now();
    let end = loop {
        if shutdown.load(Ordering::Relaxed) {
            if reg.state == RegState::Registered {
                info!("sending unregister command");
                let _ = out.send(&CsToMaster::RegisterDisconnect.encode());
            }
            break End::Shutdown;
        }
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(Ev::Packet(t, p)) => {
                last_read = Instant::now();
                let msg = match MasterToCs::decode(t, &p) {
                    Ok(m) => m,
                    Err(e) => {
                        warn!("bad packet from master: {e}; reconnecting");
                        break End::Reconnect;
                    }
                };
                match msg {
                    MasterToCs::Nop => {}
                    MasterToCs::Ack(a) => {
                        if let Some(v) = a.version {
                            if let Err(e) = check_peer_version(v) {
                                error!("{e}; refusing this master");
                                break End::Reconnect;
                            }
                            if a.timeout.is_some() && cfg.master_timeout == 0 {
                                timeout =
                                    Duration::from_secs(a.timeout.unwrap_or(10).max(1) as u64);
                            }
                            info!(master_version = %version_str(v), "master accepted registration");
                        }
                        let mut fatal = false;
                        for act in reg.on_ack(a, *ident, disks_metaid) {
                            match act {
                                RegAction::Send(m) => out.send(&m.encode())?,
                                RegAction::Remember(id) => {
                                    *ident = id;
                                    if let Err(e) = ids::save_identity(&cfg.data_path, id) {
                                        warn!("can't store chunkserver id: {e}");
                                    }
                                    for d in store.disks() {
                                        if let Err(e) = ids::save_disk_metaid(&d.path, id.metaid) {
                                            warn!(disk = %d.path.display(), "can't write .metaid: {e}");
                                        }
                                    }
                                }
                                RegAction::Fatal(msg) => {
                                    error!("MATOCS_MASTER_ACK - {msg}. Can't connect to master");
                                    fatal = true;
                                }
                            }
                        }
                        if fatal {
                            break End::Fatal;
                        }
                        if reg.state == RegState::Registered {
                            info!(chunks = store.len(), "registered with master");
                        }
                    }
                    MasterToCs::AuthChallenge(rnd) => match &cfg.auth_code {
                        Some(code) => {
                            out.send(
                                &begin(Some(challenge_response(&rnd, code.as_bytes()))).encode(),
                            )?;
                            auth_sent = true;
                        }
                        None => {
                            error!("master needs authorization, but AUTH_CODE is not set");
                            break End::Reconnect;
                        }
                    },
                    MasterToCs::Redirect { ip } => {
                        info!(leader = %Ipv4Addr::from(ip), "master redirects to another master; reconnecting");
                        break End::Reconnect;
                    }
                    MasterToCs::Wait { .. } => {
                        reg.state = RegState::Waiting;
                    }
                    order => spawn_order(order, Arc::clone(store), tx.clone()),
                }
            }
            Ok(Ev::Reply(p)) => {
                out.send(&p)?;
            }
            Ok(Ev::Closed(reason)) => {
                if auth_sent && reg.state == RegState::Unregistered {
                    error!("master refused our AUTH_CODE (check AUTH_CODE in the chunkserver and master configs)");
                }
                return Err(reason);
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return Err("reader gone".into()),
        }
        if last_read.elapsed() > timeout {
            warn!(
                "master connection timed out ({} s without a packet)",
                timeout.as_secs()
            );
            break End::Reconnect;
        }
        if reg.state == RegState::Registered {
            if last_reports.elapsed() >= Duration::from_secs(1) {
                last_reports = Instant::now();
                let r = store.take_reports();
                for _ in 0..r.errors {
                    out.send(&CsToMaster::ErrorOccurred.encode())?;
                }
                if !r.damaged.is_empty() {
                    warn!(chunks = ?r.damaged, "reporting damaged chunks to master");
                    out.send(&CsToMaster::ChunkDamaged(r.damaged).encode())?;
                }
                if !r.lost.is_empty() {
                    warn!(chunks = ?r.lost, "reporting lost chunks to master");
                    out.send(&CsToMaster::ChunkLost(r.lost).encode())?;
                }
                if store.take_space_changed() {
                    out.send(&CsToMaster::Space(store.space()).encode())?;
                }
            }
            if last_load.elapsed() >= Duration::from_secs(60) {
                last_load = Instant::now();
                out.send(
                    &CsToMaster::CurrentLoad {
                        load: 0,
                        hlstatus: 1,
                    }
                    .encode(),
                )?;
            }
        }
        if out.last.elapsed() > timeout / 3 {
            out.send(&CsToMaster::Nop.encode())?;
        }
    };
    let _ = out.s.shutdown(std::net::Shutdown::Both);
    Ok(end)
}

/// The write side of the master connection; remembers when it last sent anything, so
/// keep-alive NOPs go out only when the link has been quiet for timeout/3.
struct Out {
    s: TcpStream,
    last: Instant,
}

impl Out {
    fn send(&mut self, p: &[u8]) -> Result<(), String> {
        self.s
            .write_all(p)
            .map_err(|e| format!("write error: {e}"))?;
        self.last = Instant::now();
        Ok(())
    }
}

/// Runs one order on its own thread and sends the answer back through `tx`.
fn spawn_order(order: MasterToCs, store: Arc<Store>, tx: Sender<Ev>) {
    let _ = std::thread::Builder::new()
        .name("cs-job".into())
        .spawn(move || {
            let reply = execute(&store, order);
            if let Some(r) = reply {
                let _ = tx.send(Ev::Reply(r.encode()));
            }
        });
}

fn code(r: Result<(), u8>) -> u8 {
    r.err().unwrap_or(status::OK)
}

/// Carries out one of the master's orders and builds the answer.
pub fn execute(store: &Arc<Store>, order: MasterToCs) -> Option<CsToMaster> {
    let st = |kind, chunkid, status| {
        Some(CsToMaster::Status {
            kind,
            chunkid,
            status,
        })
    };
    match order {
        MasterToCs::Create { chunkid, version } => st(
            StatusKind::Create,
            chunkid,
            code(store.create(chunkid, version)),
        ),
        MasterToCs::Delete { chunkid, version } => st(
            StatusKind::Delete,
            chunkid,
            code(store.delete(chunkid, version)),
        ),
        MasterToCs::SetVersion {
            chunkid,
            new_version,
            old_version,
        } => st(
            StatusKind::SetVersion,
            chunkid,
            code(store.set_version(chunkid, old_version, new_version)),
        ),
        MasterToCs::Duplicate {
            new_chunkid,
            new_version,
            src_chunkid,
            src_version,
        } => st(
            StatusKind::Duplicate,
            new_chunkid,
            code(store.duplicate(src_chunkid, src_version, new_chunkid, new_version, None)),
        ),
        MasterToCs::Truncate {
            chunkid,
            length,
            new_version,
            old_version,
        } => st(
            StatusKind::Truncate,
            chunkid,
            code(store.truncate(chunkid, old_version, new_version, length)),
        ),
        MasterToCs::DupTrunc {
            new_chunkid,
            new_version,
            src_chunkid,
            src_version,
            length,
        } => st(
            StatusKind::DupTrunc,
            new_chunkid,
            code(store.duplicate(
                src_chunkid,
                src_version,
                new_chunkid,
                new_version,
                Some(length),
            )),
        ),
        MasterToCs::ChunkOp(a) => Some(CsToMaster::ChunkOpStatus(a, code(chunkop(store, &a)))),
        MasterToCs::Replicate {
            chunkid,
            version,
            ip,
            port,
        } => {
            let status = replicator::replicate(store, chunkid, version, ip, port);
            Some(CsToMaster::ReplicateStatus {
                chunkid,
                version,
                status,
            })
        }
        MasterToCs::GetChunkBlocks { chunkid, version } => {
            let (blocks, status) = match store.blocks(chunkid, version) {
                Ok(b) => (b, status::OK),
                Err(s) => (0, s),
            };
            Some(CsToMaster::ChunkBlocks {
                chunkid,
                version,
                blocks,
                status,
            })
        }
        MasterToCs::GetChunkChecksum { chunkid, version } => Some(CsToMaster::ChunkChecksum {
            chunkid,
            version,
            result: store
                .crc_table(chunkid, version)
                .map(|t| antler_protocol::crc::crc32(&t[..])),
        }),
        MasterToCs::GetChunkChecksumTab { chunkid, version } => {
            Some(CsToMaster::ChunkChecksumTab {
                chunkid,
                version,
                result: store.crc_table(chunkid, version),
            })
        }
        MasterToCs::Nop
        | MasterToCs::Ack(_)
        | MasterToCs::Redirect { .. }
        | MasterToCs::Wait { .. }
        | MasterToCs::AuthChallenge(_) => None,
    }
}

fn chunkop(store: &Arc<Store>, a: &ChunkOpArgs) -> Result<(), u8> {
    match a.kind() {
        ChunkOpKind::SetVersion => store.set_version(a.chunkid, a.version, a.new_version),
        ChunkOpKind::Duplicate => {
            store.duplicate(a.chunkid, a.version, a.copy_chunkid, a.copy_version, None)?;
            if a.new_version != a.version {
                store.set_version(a.chunkid, a.version, a.new_version)?;
            }
            Ok(())
        }
        ChunkOpKind::Truncate => store.truncate(a.chunkid, a.version, a.new_version, a.length),
        ChunkOpKind::DupTrunc => {
            store.duplicate(
                a.chunkid,
                a.version,
                a.copy_chunkid,
                a.copy_version,
                Some(a.length),
            )?;
            if a.new_version != a.version {
                store.set_version(a.chunkid, a.version, a.new_version)?;
            }
            Ok(())
        }
        ChunkOpKind::Delete => store.delete(a.chunkid, a.version),
        ChunkOpKind::Create => store.create(a.chunkid, a.version),
        ChunkOpKind::Test => store.test(a.chunkid, a.version),
        ChunkOpKind::Invalid => Err(status::EINVAL),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full_ack(metaid: u64) -> Accepted {
        Accepted {
            version: Some(VERSHEX),
            timeout: Some(10),
            csid: Some(4),
            metaid: Some(metaid),
        }
    }
    const FLOW: Accepted = Accepted {
        version: None,
        timeout: None,
        csid: None,
        metaid: None,
    };

    #[test]
    fn registration_sends_batches_one_per_ack() {
        let chunks: Vec<(u64, u32)> = (1..=5).map(|i| (i, 1)).collect();
        let mut r = Registration::new(chunks, 2);
        let a = r.on_ack(full_ack(9), Identity::default(), None);
        assert_eq!(
            a,
            vec![
                RegAction::Remember(Identity { csid: 4, metaid: 9 }),
                RegAction::Send(CsToMaster::Labels(0)),
                RegAction::Send(CsToMaster::RegisterChunks(vec![(1, 1), (2, 1)])),
            ]
        );
        assert_eq!(
            r.on_ack(FLOW, Identity::default(), None),
            vec![RegAction::Send(CsToMaster::RegisterChunks(vec![
                (3, 1),
                (4, 1)
            ]))]
        );
        assert_eq!(
            r.on_ack(FLOW, Identity::default(), None),
            vec![RegAction::Send(CsToMaster::RegisterChunks(vec![(5, 1)]))]
        );
        assert_eq!(
            r.on_ack(FLOW, Identity::default(), None),
            vec![RegAction::Send(CsToMaster::RegisterEnd)]
        );
        assert_eq!(r.state, RegState::Registered);
        assert!(r.on_ack(FLOW, Identity::default(), None).is_empty());
    }

    #[test]
    fn empty_store_registers_at_once_and_wrong_instance_is_fatal() {
        let mut r = Registration::new(vec![], 10);
        let a = r.on_ack(full_ack(9), Identity { csid: 4, metaid: 9 }, Some(9));
        assert_eq!(
            a,
            vec![
                RegAction::Send(CsToMaster::Labels(0)),
                RegAction::Send(CsToMaster::RegisterEnd)
            ]
        );
        let mut r = Registration::new(vec![], 10);
        let a = r.on_ack(full_ack(9), Identity { csid: 4, metaid: 8 }, None);
        assert!(matches!(a.as_slice(), [RegAction::Fatal(_)]));
        let mut r = Registration::new(vec![], 10);
        let a = r.on_ack(full_ack(9), Identity::default(), Some(7));
        assert!(matches!(a.as_slice(), [RegAction::Fatal(_)]));
    }
}
