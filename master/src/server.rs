//! The network shell of the master: listener threads, one reader and one writer thread
//! per connection, and a single core thread that owns all state ([`Core`]) and handles
//! every packet in order, as the MooseFS master's event loop does.
//!
//! Bad input (an unknown type, a malformed packet, a packet too large) closes only that
//! connection, with the reason logged and the peer named.

use crate::changelog::Changelog;
use crate::chunks::{Chunks, CsId, Location, Server};
use crate::config::MasterConfig;
use crate::exports::{Export, Exports, Request};
use crate::fs::{sesflag, Ctx, Fs, Kind, CHUNK_SIZE};
use antler_protocol::changelog::escape;
use antler_protocol::cltoma::{self as cl, node_type as T, ClRequest, Creds, Register, Reply};
use antler_protocol::codes::{self, status as st};
use antler_protocol::cstoma::{Accepted, CsToMaster, MasterToCs, StatusKind};
use antler_protocol::frame::Header;
use antler_protocol::version::VERSHEX;
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddrV4, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tracing::{debug, error, info, warn};

/// Connection id.
pub type ConnId = u64;

/// mfscli: master info.
const CLTOMA_INFO: u32 = 510;
/// mfscli: chunkserver list.
const CLTOMA_CSERV_LIST: u32 = 500;

/// Which listener a connection came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// Mounts and tools (9421).
    Client,
    /// Chunkservers (9420).
    Chunkserver,
    /// Metaloggers (9419).
    Metalogger,
}

/// What reader threads and listeners tell the core.
#[derive(Debug)]
pub enum Event {
    /// A new connection.
    Open {
        /// Id.
        conn: ConnId,
        /// Listener.
        link: Link,
        /// Peer address.
        peer: SocketAddrV4,
        /// Queue of its writer thread.
        tx: Sender<Vec<u8>>,
        /// A handle to shut it down or change its timeout.
        stream: TcpStream,
    },
    /// One packet.
    Packet {
        /// Id.
        conn: ConnId,
        /// Message type.
        msg_type: u32,
        /// Payload.
        payload: Vec<u8>,
    },
    /// The connection ended (reason for the log).
    Closed {
        /// Id.
        conn: ConnId,
        /// Why.
        reason: String,
    },
}

fn unix_now() -> u32 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as u32)
        .unwrap_or(0)
}

fn ip_str(ip: u32) -> std::net::Ipv4Addr {
    std::net::Ipv4Addr::from(ip)
}

/// A client session (survives its connection for `SESSION_SUSTAIN_TIME`).
#[derive(Debug, Clone)]
pub struct Session {
    /// Id.
    pub id: u32,
    /// Root inode of the export.
    pub root: u32,
    /// Export flags.
    pub sesflags: u8,
    /// Export umask.
    pub umask: u16,
    /// maproot uid / gid.
    pub rootuid: u32,
    /// maproot gid.
    pub rootgid: u32,
    /// mapall uid.
    pub mapalluid: u32,
    /// mapall gid.
    pub mapallgid: u32,
    /// Goal limits.
    pub mingoal: u8,
    /// Goal limits.
    pub maxgoal: u8,
    /// Trash time limits.
    pub mintrash: u32,
    /// Trash time limits.
    pub maxtrash: u32,
    /// Disabled command classes.
    pub disables: u32,
    /// Client address.
    pub ip: u32,
    /// Mount point (display).
    pub info: Arc<str>,
    /// Current connection.
    pub conn: Option<ConnId>,
    /// When it lost its connection.
    pub disconnected_at: u32,
    /// Closed cleanly (removed when its connection ends).
    pub closed: bool,
}

#[derive(Debug)]
enum ConnState {
    Client {
        session: Option<u32>,
        random: Option<[u8; 32]>,
        tools: bool,
    },
    Cs {
        csid: Option<CsId>,
        random: Option<[u8; 32]>,
    },
    Ml {
        registered: bool,
        /// The file being downloaded, and the changelogs snapshotted with the metadata.
        upload: Option<Arc<Vec<u8>>>,
        chain: [Option<Arc<Vec<u8>>>; 2],
    },
}

#[derive(Debug)]
struct Conn {
    peer: SocketAddrV4,
    tx: Sender<Vec<u8>>,
    stream: TcpStream,
    state: ConnState,
}

/// A client request waiting for a chunk operation.
#[derive(Debug, Clone)]
enum Waiter {
    Write {
        conn: ConnId,
        msgid: u32,
        inode: u32,
        index: u32,
        /// The chunk the slot held before a new one was made for this write (0: a
        /// hole; a shared chunk when copied on write); `None` for a version bump.
        replaced: Option<u64>,
    },
    Truncate {
        conn: ConnId,
        msgid: u32,
        inode: u32,
        length: u64,
        prev: u64,
        session: u32,
        /// (index, shared chunk) when the truncate copies a shared chunk.
        replaced: Option<(u32, u64)>,
    },
}

/// All master state, driven by [`Core::handle`] and [`Core::tick`].
pub struct Core {
    /// Namespace.
    pub fs: Fs,
    /// Chunks and chunkservers.
    pub chunks: Chunks,
    /// Sessions by id.
    pub sessions: BTreeMap<u32, Session>,
    pub(crate) next_session: u32,
    conns: HashMap<ConnId, Conn>,
    exports: Exports,
    /// Metadata id of this file system instance.
    pub metaid: u64,
    /// Metadata version: the number the next change gets.
    pub version: u64,
    /// Where changes are journaled (none in tests and offline tools).
    pub changelog: Option<Changelog>,
    pub(crate) cfg: MasterConfig,
    waiting: HashMap<u64, Vec<Waiter>>,
    cs_conn: HashMap<CsId, ConnId>,
    pub(crate) csdb: HashMap<(u32, u16), CsId>,
    pub(crate) next_csid: CsId,
    /// Virtual ends of files being appended to (`TRUNCATE` with RESERVE).
    append_res: HashMap<u32, u64>,
    /// Inodes each session holds open (kept apart so request handling can copy a
    /// session's settings cheaply).
    pub(crate) open_files: HashMap<u32, HashSet<u32>>,
    /// Packets to send once the changes they acknowledge are journaled.
    outbox: RefCell<Vec<(ConnId, Vec<u8>)>>,
    /// Sections of a loaded MooseFS file written back as they were.
    pub(crate) kept: crate::metadata::Kept,
    /// Dump to `metadata.mfs.back` (and rotate the changelog) at the next loop turn:
    /// set after a recovery, so the restored state is anchored without delaying the start.
    pub save_soon: bool,
    /// When the trash is next checked for expired files.
    next_trash_sweep: u32,
}

fn normalize_path(p: &[u8]) -> Option<String> {
    let s = std::str::from_utf8(p).ok()?;
    let parts: Vec<&str> = s.split('/').filter(|x| !x.is_empty()).collect();
    Some(format!("/{}", parts.join("/")))
}

impl Core {
    /// A core over an empty namespace.
    pub fn new(cfg: MasterConfig, exports: Exports, metaid: u64, now: u32) -> Core {
        let mut fs = Fs::new(now);
        fs.inode_reuse_delay = cfg.inode_reuse_delay;
        Core {
            fs,
            chunks: Chunks::new(now, cfg.loop_params.clone()),
            sessions: BTreeMap::new(),
            next_session: 1,
            conns: HashMap::new(),
            exports,
            metaid,
            version: 1,
            changelog: None,
            cfg,
            waiting: HashMap::new(),
            cs_conn: HashMap::new(),
            csdb: HashMap::new(),
            next_csid: 1,
            append_res: HashMap::new(),
            open_files: HashMap::new(),
            outbox: RefCell::new(Vec::new()),
            kept: Default::default(),
            save_soon: false,
            next_trash_sweep: 0,
        }
    }

    /// Journals the changes made so far, then sends the packets that acknowledge them.
    pub fn flush(&mut self) {
        let journal = self.fs.take_journal();
        if !journal.is_empty() {
            self.feed_metaloggers(self.version, &journal);
            match &mut self.changelog {
                Some(c) => {
                    if let Err(e) = c.append(&mut self.version, &journal) {
                        error!("can't write changelog: {e}");
                    }
                }
                None => self.version += journal.len() as u64,
            }
        }
        for (conn, pkt) in self.outbox.get_mut().drain(..) {
            if let Some(c) = self.conns.get(&conn) {
                let _ = c.tx.send(pkt);
            }
        }
    }

    /// Removes a session and releases what it held open.
    pub(crate) fn remove_session(&mut self, id: u32, now: u32) {
        if self.sessions.remove(&id).is_some() {
            self.fs.log(now, format!("SESDEL({id})"));
            for ino in self.open_files.remove(&id).unwrap_or_default() {
                self.fs.release(ino, now);
            }
        }
    }

    /// Drops one open file of a session.
    pub(crate) fn release_in_session(&mut self, sid: u32, ino: u32, now: u32) {
        if self
            .open_files
            .get_mut(&sid)
            .is_some_and(|o| o.remove(&ino))
        {
            self.fs.log(now, format!("RELEASE({sid},{ino})"));
            self.fs.release(ino, now);
        }
    }

    /// A core with default settings and no exports: for offline tools (metadata
    /// restore) and tests.
    pub fn offline(now: u32) -> Core {
        let file = antler_common::cfg::CfgFile::parse(std::path::Path::new("(defaults)"), "")
            .expect("an empty config parses");
        let cfg = MasterConfig::from_cfg(&file).expect("defaults are valid");
        let exports = Exports {
            path: Default::default(),
            entries: Vec::new(),
        };
        Core::new(cfg, exports, 0, now)
    }

    /// Replaces the exports (reload).
    pub fn set_exports(&mut self, e: Exports) {
        self.exports = e;
    }

    fn send(&self, conn: ConnId, pkt: Vec<u8>) {
        self.outbox.borrow_mut().push((conn, pkt));
    }

    fn close(&mut self, conn: ConnId, why: &str) {
        if let Some(c) = self.conns.get(&conn) {
            warn!(peer = %c.peer, "closing connection: {why}");
            let _ = c.stream.shutdown(Shutdown::Both);
        }
    }

    /// Handles one event, journals its changes and sends its answers.
    pub fn handle(&mut self, ev: Event) {
        self.process(ev);
        self.flush();
    }

    /// Handles one event; its changes and answers wait for [`Core::flush`] (so a batch
    /// of events shares one changelog write and sync).
    pub fn process(&mut self, ev: Event) {
        let now = unix_now();
        match ev {
            Event::Open {
                conn,
                link,
                peer,
                tx,
                stream,
            } => {
                let state = match link {
                    Link::Client => ConnState::Client {
                        session: None,
                        random: None,
                        tools: false,
                    },
                    Link::Chunkserver => ConnState::Cs {
                        csid: None,
                        random: None,
                    },
                    Link::Metalogger => ConnState::Ml {
                        registered: false,
                        upload: None,
                        chain: [None, None],
                    },
                };
                debug!(%peer, ?link, "connection opened");
                self.conns.insert(
                    conn,
                    Conn {
                        peer,
                        tx,
                        stream,
                        state,
                    },
                );
            }
            Event::Closed { conn, reason } => self.closed(conn, &reason, now),
            Event::Packet {
                conn,
                msg_type,
                payload,
            } => {
                match self.conns.get(&conn).map(|c| &c.state) {
                    Some(ConnState::Cs { .. }) => self.cs_packet(conn, msg_type, &payload, now),
                    Some(ConnState::Ml { .. }) => self.ml_packet(conn, msg_type, &payload),
                    _ => self.client_packet(conn, msg_type, &payload, now),
                }
                self.after_ops(now);
            }
        }
    }

    fn closed(&mut self, conn: ConnId, reason: &str, now: u32) {
        let Some(c) = self.conns.remove(&conn) else {
            return;
        };
        match c.state {
            ConnState::Ml { registered, .. } => {
                if registered {
                    info!(peer = %c.peer, "metalogger disconnected ({reason})");
                }
            }
            ConnState::Client { session, .. } => {
                debug!(peer = %c.peer, "client connection closed: {reason}");
                if let Some(sid) = session {
                    if let Some(s) = self.sessions.get_mut(&sid) {
                        if s.conn == Some(conn) {
                            s.conn = None;
                            s.disconnected_at = now;
                        }
                    }
                }
            }
            ConnState::Cs { csid, .. } => {
                if let Some(id) = csid {
                    if let Some(s) = self.chunks.servers.get(&id) {
                        info!(
                            "chunkserver disconnected - ip: {} / port: {}, usedspace: {}, totalspace: {} ({reason})",
                            ip_str(s.ip),
                            s.port,
                            s.space.used,
                            s.space.total
                        );
                    }
                    self.cs_conn.remove(&id);
                    self.chunks.remove_server(id);
                    self.broadcast_invalidate();
                    self.after_ops(now);
                }
            }
        }
    }

    fn broadcast_invalidate(&self) {
        let pkt = Reply::with_msgid(cl::MATOCL_FUSE_INVALIDATE_CHUNK_CACHE, 0).finish();
        for c in self.conns.values() {
            if let ConnState::Client {
                session: Some(_),
                tools: false,
                ..
            } = c.state
            {
                let _ = c.tx.send(pkt.clone());
            }
        }
    }

    /// Periodic work: chunk loop, session expiry, trash expiry (once a minute).
    pub fn tick(&mut self, now: u32, budget: usize) {
        self.chunks.tick(now, budget);
        if now >= self.next_trash_sweep {
            self.next_trash_sweep = now + 60;
            let n = self.fs.expire_trash(now);
            if n > 0 {
                info!(files = n, "trash: expired files purged");
            }
        }
        let sustain = self.cfg.session_sustain_time;
        let expired: Vec<u32> = self
            .sessions
            .values()
            .filter(|s| {
                s.conn.is_none() && (s.closed || now.saturating_sub(s.disconnected_at) > sustain)
            })
            .map(|s| s.id)
            .collect();
        for id in expired {
            info!(session = id, "session removed");
            self.remove_session(id, now);
        }
        self.after_ops(now);
        self.flush();
    }

    /// Sends queued chunkserver orders, answers clients whose chunk operation finished
    /// and drops chunk references the namespace released.
    fn after_ops(&mut self, now: u32) {
        for (id, goal) in self.fs.take_goal_changes() {
            self.chunks.set_goal(id, goal);
        }
        loop {
            // Finished operations may roll file slots back, releasing chunks again.
            for id in self.fs.take_released() {
                self.chunks.unref(id);
            }
            for (id, goal) in self.fs.take_referenced() {
                self.chunks.add_ref(id, goal);
            }
            for (id, v) in self.chunks.take_removed() {
                self.fs.log(now, format!("CHUNKDEL({id},{v})"));
            }
            let orders = self.chunks.take_orders();
            let finished = self.chunks.take_finished();
            if orders.is_empty() && finished.is_empty() {
                break;
            }
            for (cs, o) in orders {
                if let Some(&conn) = self.cs_conn.get(&cs) {
                    self.send(conn, o.encode());
                }
            }
            for (id, status) in finished {
                for w in self.waiting.remove(&id).unwrap_or_default() {
                    self.finish_waiter(w, id, status, now);
                }
            }
        }
    }

    fn finish_waiter(&mut self, w: Waiter, chunkid: u64, status: u8, now: u32) {
        match w {
            Waiter::Write {
                conn,
                msgid,
                inode,
                index,
                replaced,
            } => {
                if status == st::OK {
                    let pkt =
                        self.chunk_reply(cl::CLTOMA_FUSE_WRITE_CHUNK + 1, msgid, inode, index);
                    self.send(conn, pkt);
                } else {
                    if let Some(prev) = replaced {
                        self.roll_back_slot(inode, index, prev, chunkid, now);
                    }
                    self.chunk_failed(chunkid, now);
                    self.send(
                        conn,
                        Reply::status(cl::CLTOMA_FUSE_WRITE_CHUNK + 1, msgid, status),
                    );
                }
            }
            Waiter::Truncate {
                conn,
                msgid,
                inode,
                length,
                prev,
                session,
                replaced,
            } => {
                let t = cl::CLTOMA_FUSE_TRUNCATE + 1;
                if status != st::OK {
                    if let Some((index, old)) = replaced {
                        self.roll_back_slot(inode, index, old, chunkid, now);
                    }
                    self.chunk_failed(chunkid, now);
                    self.send(conn, Reply::status(t, msgid, status));
                    return;
                }
                self.chunks.unlock(chunkid);
                self.fs.log(now, format!("UNLOCK({chunkid})"));
                let _ = self.fs.set_length(inode, length, now, true);
                let pkt = match self.session_ctx(session) {
                    Some(ctx) => match self.fs.attr(inode, &ctx) {
                        Ok(a) => Reply::with_msgid(t, msgid).u64(prev).attr(&a).finish(),
                        Err(e) => Reply::status(t, msgid, e),
                    },
                    None => Reply::status(t, msgid, st::BADSESSIONID),
                };
                self.send(conn, pkt);
            }
        }
    }

    /// A new chunk made for a write or truncate failed: the file's slot gets the chunk it
    /// held before (a hole, or the shared chunk that was being copied).
    fn roll_back_slot(&mut self, inode: u32, index: u32, prev: u64, chunkid: u64, now: u32) {
        if matches!(self.fs.file_chunk(inode, index), Ok((_, c)) if c == chunkid) {
            let _ = self.fs.set_chunk(inode, index, prev, 0);
            if prev != 0 {
                self.chunks.add_ref(prev, 0);
            }
            self.chunks.unref(chunkid);
            self.fs
                .log(now, format!("ROLLBACK({inode},{index},{prev},{chunkid})"));
        }
    }

    /// A write or truncate operation on a chunk failed: its version may have gone back,
    /// and it is unlocked.
    fn chunk_failed(&mut self, chunkid: u64, now: u32) {
        self.chunks.unlock(chunkid);
        if let Some(c) = self.chunks.map.get(&chunkid) {
            self.fs
                .log(now, format!("SETVERSION({chunkid},{})", c.version));
        }
        self.fs.log(now, format!("UNLOCK({chunkid})"));
    }

    fn session_ctx(&self, sid: u32) -> Option<Ctx> {
        let s = self.sessions.get(&sid)?;
        Some(Ctx {
            uid: 0,
            gids: vec![0],
            sesflags: s.sesflags,
            umask: s.umask,
        })
    }

    fn locations(&self, chunkid: u64) -> (u32, Vec<Location>) {
        self.chunks.locations(chunkid).unwrap_or((0, Vec::new()))
    }

    fn chunk_reply(&self, t: u32, msgid: u32, inode: u32, index: u32) -> Vec<u8> {
        let Ok((length, chunkid)) = self.fs.file_chunk(inode, index) else {
            return Reply::status(t, msgid, st::ENOENT);
        };
        let (version, locs) = if chunkid == 0 {
            (0, Vec::new())
        } else {
            self.locations(chunkid)
        };
        let mut r = Reply::with_msgid(t, msgid)
            .u8(2)
            .u64(length)
            .u64(chunkid)
            .u32(version);
        for l in locs.iter().take(100) {
            r = r.u32(l.ip).u16(l.port).u32(l.version).u32(l.labelmask);
        }
        r.finish()
    }

    // ---------------------------------------------------------------- clients

    /// mfscli's monitoring queries (`CLTOMA_INFO`, `CLTOMA_CSERV_LIST`), answered in the
    /// 3.0.117 layouts on any client connection.
    fn monitoring(&mut self, conn: ConnId, t: u32) {
        let (mut total, mut avail, mut copies) = (0u64, 0u64, 0u32);
        for s in self.chunks.servers.values() {
            total += s.space.total;
            avail += s.space.total.saturating_sub(s.space.used);
            copies += s.space.chunks;
        }
        if t == CLTOMA_INFO {
            let st = self.fs.node_stats(crate::fs::ROOT);
            let pkt = Reply::new(CLTOMA_INFO + 1)
                .u16(3)
                .u8(0)
                .u8(117)
                .u64(0)
                .u64(0)
                .u64(0)
                .u64(total)
                .u64(avail)
                .u64(avail)
                .u64(0)
                .u32(0)
                .u64(0)
                .u32(0)
                .u32(st.inodes)
                .u32(st.dirs)
                .u32(st.files)
                .u32(self.chunks.map.len() as u32)
                .u32(copies)
                .u32(0)
                .u32(0)
                .u32(0)
                .u8(0)
                .u32(0xFFFF_FFFF)
                .u32(0)
                .u32(0)
                .u64(0)
                .u64(0)
                .u64(0)
                .u32(0)
                .finish();
            self.send(conn, pkt);
        } else {
            let mut r = Reply::new(CLTOMA_CSERV_LIST + 1);
            for (&id, s) in &self.chunks.servers {
                r = r
                    .u32(s.version & 0xFF_FFFF)
                    .u32(s.ip)
                    .u16(s.port)
                    .u16(id as u16)
                    .u64(s.space.used)
                    .u64(s.space.total)
                    .u32(s.space.chunks)
                    .u64(s.space.td_used)
                    .u64(s.space.td_total)
                    .u32(s.space.td_chunks)
                    .u32(0)
                    .u32(0)
                    .u32(0)
                    .u32(s.labelmask)
                    .u8(0);
            }
            self.send(conn, r.finish());
        }
    }

    fn client_packet(&mut self, conn: ConnId, t: u32, p: &[u8], now: u32) {
        if (t == CLTOMA_INFO || t == CLTOMA_CSERV_LIST) && p.is_empty() {
            self.monitoring(conn, t);
            return;
        }
        let req = match ClRequest::decode(t, p) {
            Ok(r) => r,
            Err(e) => {
                let registered = matches!(
                    self.conns.get(&conn).map(|c| &c.state),
                    Some(ConnState::Client {
                        session: Some(_),
                        ..
                    })
                );
                if registered
                    && matches!(e, antler_protocol::DecodeError::UnknownType(_))
                    && p.len() >= 4
                {
                    // Friendlier than 3.0.117 (which drops the link): the client turns this
                    // into ENOTSUP for the one call.
                    let pkt =
                        Reply::with_msgid(codes::ANTOAN_UNKNOWN_COMMAND, ClRequest::msgid_of(p))
                            .u32(t)
                            .u32(p.len() as u32)
                            .u32(VERSHEX)
                            .finish();
                    warn!("client sent unsupported command {t}; answered UNKNOWN_COMMAND");
                    self.send(conn, pkt);
                } else {
                    self.close(conn, &format!("bad packet: {e}"));
                }
                return;
            }
        };
        debug!(conn, "request {req:?}");
        let session = match self.conns.get(&conn).map(|c| &c.state) {
            Some(ConnState::Client { session, .. }) => *session,
            _ => return,
        };
        match req {
            ClRequest::Nop => {}
            ClRequest::GetVersion { msgid } => {
                let mut r = Reply::new(codes::ANTOAN_VERSION);
                if let Some(m) = msgid {
                    r = r.u32(m);
                }
                self.send(conn, r.u32(VERSHEX).bytes(b"3.0.117-1").finish());
            }
            ClRequest::GetConfig { msgid, .. } => self.send(
                conn,
                Reply::with_msgid(cl::ANTOAN_CONFIG_VALUE, msgid)
                    .u8(0)
                    .finish(),
            ),
            ClRequest::Register(r) => self.register(conn, r),
            ClRequest::TimeSync { msgid } => {
                let usec = SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map(|d| d.as_micros() as u64)
                    .unwrap_or(0);
                let mut r = Reply::new(cl::MATOCL_FUSE_TIME_SYNC);
                if let Some(m) = msgid {
                    r = r.u32(m);
                }
                self.send(conn, r.u64(usec).finish());
            }
            req => {
                let Some(sid) = session else {
                    self.close(conn, "request before registration");
                    return;
                };
                let meta_session = self.sessions.get(&sid).is_some_and(|s| s.root == 0);
                if meta_session && !meta_allowed(&req) {
                    // The meta mount never sends these; there is no namespace to act on.
                    self.send(
                        conn,
                        Reply::status(t + 1, ClRequest::msgid_of(p), st::EPERM),
                    );
                    return;
                }
                if let Some(pkt) = self.fuse(conn, sid, req, now) {
                    self.send(conn, pkt);
                }
            }
        }
    }

    fn register(&mut self, conn: ConnId, r: Register) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let peer_ip = u32::from(*c.peer.ip());
        let ConnState::Client {
            session: csess,
            random,
            ..
        } = &mut c.state
        else {
            return;
        };
        let reg_t = cl::MATOCL_FUSE_REGISTER;
        if csess.is_some() && !matches!(r, Register::CloseSession { .. }) {
            self.close(conn, "second registration on one connection");
            return;
        }
        match r {
            Register::GetRandom => {
                let rnd: [u8; 32] = rand::random();
                *random = Some(rnd);
                let pkt = Reply::new(reg_t).bytes(&rnd).finish();
                self.send(conn, pkt);
            }
            Register::NewSession {
                version,
                info,
                path,
                sessionid,
                metaid,
                passcode,
            } => {
                let rnd = *random;
                let Some(want) = normalize_path(&path) else {
                    self.send(conn, Reply::new(reg_t).u8(st::EINVAL).finish());
                    return;
                };
                let req = Request {
                    ip: peer_ip,
                    version,
                    meta: false,
                    path: &want,
                    random: rnd,
                    passcode,
                };
                let e: Export = match self.exports.choose(&req) {
                    Ok(e) => e.clone(),
                    Err(refusal) => {
                        info!(ip = %ip_str(peer_ip), path = %want, "mount refused: {refusal}");
                        self.send(conn, Reply::new(reg_t).u8(refusal.status()).finish());
                        return;
                    }
                };
                // Resolve the subfolder.
                let mut root = crate::fs::ROOT;
                for part in want.split('/').filter(|x| !x.is_empty()) {
                    match self.fs.lookup(&Ctx::root(), root, part.as_bytes()) {
                        Ok(i) if self.fs.node(i).is_some_and(|n| n.ntype == T::DIRECTORY) => {
                            root = i
                        }
                        Ok(_) => {
                            self.send(conn, Reply::new(reg_t).u8(st::ENOTDIR).finish());
                            return;
                        }
                        Err(s) => {
                            self.send(conn, Reply::new(reg_t).u8(s).finish());
                            return;
                        }
                    }
                }
                self.open_session(conn, peer_ip, &e, root, &info, &want, sessionid, metaid);
            }
            Register::Reconnect {
                sessionid, metaid, ..
            }
            | Register::Tools {
                sessionid, metaid, ..
            } => {
                let status = match self.sessions.get(&sessionid) {
                    _ if metaid.is_some_and(|m| m != self.metaid) => st::BADSESSIONID,
                    None => st::BADSESSIONID,
                    Some(s) if s.ip != peer_ip => st::EPERM,
                    Some(_) => st::OK,
                };
                let tools_req = matches!(r, Register::Tools { .. });
                if status == st::OK {
                    if let Some(Conn {
                        state: ConnState::Client { session, tools, .. },
                        ..
                    }) = self.conns.get_mut(&conn)
                    {
                        *session = Some(sessionid);
                        *tools = tools_req;
                    }
                    if !tools_req {
                        if let Some(s) = self.sessions.get_mut(&sessionid) {
                            s.conn = Some(conn);
                            info!(session = sessionid, "session reconnected");
                        }
                    }
                }
                let pkt = if tools_req {
                    Reply::new(reg_t).u8(status).finish()
                } else {
                    Reply::new(reg_t).u32(VERSHEX).u8(status).finish()
                };
                self.send(conn, pkt);
            }
            Register::NewMetaSession {
                version,
                info,
                sessionid,
                metaid,
                passcode,
            } => {
                let req = Request {
                    ip: peer_ip,
                    version,
                    meta: true,
                    path: "",
                    random: *random,
                    passcode,
                };
                let e: Export = match self.exports.choose(&req) {
                    Ok(e) => e.clone(),
                    Err(refusal) => {
                        info!(ip = %ip_str(peer_ip), "meta mount refused: {refusal}");
                        self.send(conn, Reply::new(reg_t).u8(refusal.status()).finish());
                        return;
                    }
                };
                // Root 0 marks a meta session (trash and sustained files only).
                self.open_session(conn, peer_ip, &e, 0, &info, ".", sessionid, metaid);
            }
            Register::CloseSession { sessionid, metaid } => {
                let status = if metaid.is_some_and(|m| m != self.metaid) {
                    st::BADSESSIONID
                } else {
                    if let Some(s) = self.sessions.get_mut(&sessionid) {
                        s.closed = true;
                        info!(session = sessionid, "session closed by client");
                    }
                    st::OK
                };
                self.send(conn, Reply::new(reg_t).u8(status).finish());
            }
        }
    }

    /// Creates (or takes over) the session of a register request that an export
    /// accepted, journals it and answers; `root` 0 is a meta session.
    #[allow(clippy::too_many_arguments)]
    fn open_session(
        &mut self,
        conn: ConnId,
        peer_ip: u32,
        e: &Export,
        root: u32,
        info: &[u8],
        path: &str,
        sessionid: Option<u32>,
        metaid: Option<u64>,
    ) {
        let reg_t = cl::MATOCL_FUSE_REGISTER;
        let reuse = match (sessionid, metaid) {
            (Some(id), Some(m)) if m == self.metaid => Some(id),
            (Some(id), None) => Some(id),
            _ => None,
        }
        .filter(|id| self.sessions.contains_key(id));
        let id = reuse.unwrap_or_else(|| {
            let id = self.next_session;
            self.next_session += 1;
            id
        });
        let s = Session {
            id,
            root,
            sesflags: e.sesflags,
            umask: e.umask,
            rootuid: e.rootuid,
            rootgid: e.rootgid,
            mapalluid: e.mapalluid,
            mapallgid: e.mapallgid,
            mingoal: e.mingoal,
            maxgoal: e.maxgoal,
            mintrash: e.mintrashtime,
            maxtrash: e.maxtrashtime,
            disables: e.disables,
            ip: peer_ip,
            info: String::from_utf8_lossy(info).trim_end_matches('\0').into(),
            conn: Some(conn),
            disconnected_at: 0,
            closed: false,
        };
        info!(session = id, ip = %ip_str(peer_ip), path = %path, mountpoint = %s.info, reused = reuse.is_some(), "session registered");
        let args = format!(
            "#0,{},{},0{:03o},{},{},{},{},{},{},{},{},0x{:08X},{},{}",
            s.root,
            s.sesflags,
            s.umask,
            s.rootuid,
            s.rootgid,
            s.mapalluid,
            s.mapallgid,
            s.mingoal,
            s.maxgoal,
            s.mintrash,
            s.maxtrash,
            s.disables,
            s.ip,
            escape(s.info.as_bytes())
        );
        let now = unix_now();
        if reuse.is_some() {
            self.fs.log(now, format!("SESCHANGED({id},{args})"));
        } else {
            self.fs.log(now, format!("SESADD({args}):{id}"));
        }
        let pkt = if root == 0 {
            // A meta session's answer has no umask, uid/gid maps or disables.
            Reply::new(reg_t)
                .u32(VERSHEX)
                .u32(id)
                .u64(self.metaid)
                .u8(s.sesflags)
                .u8(s.mingoal)
                .u8(s.maxgoal)
                .u32(s.mintrash)
                .u32(s.maxtrash)
                .finish()
        } else {
            Reply::new(reg_t)
                .u32(VERSHEX)
                .u32(id)
                .u64(self.metaid)
                .u8(s.sesflags)
                .u16(s.umask)
                .u32(s.rootuid)
                .u32(s.rootgid)
                .u32(s.mapalluid)
                .u32(s.mapallgid)
                .u8(s.mingoal)
                .u8(s.maxgoal)
                .u32(s.mintrash)
                .u32(s.maxtrash)
                .u32(s.disables)
                .finish()
        };
        self.sessions.insert(id, s);
        if let Some(Conn {
            state: ConnState::Client { session, .. },
            ..
        }) = self.conns.get_mut(&conn)
        {
            *session = Some(id);
        }
        self.send(conn, pkt);
    }

    /// maproot / mapall applied to a request's credentials.
    fn ctx(&self, s: &Session, c: &Creds) -> Ctx {
        let mut uid = c.uid;
        let mut gids = if c.gids.is_empty() {
            vec![0]
        } else {
            c.gids.clone()
        };
        if uid == 0 {
            uid = s.rootuid;
            gids[0] = s.rootgid;
        } else if s.sesflags & sesflag::MAPALL != 0 {
            uid = s.mapalluid;
            gids = vec![s.mapallgid];
        }
        Ctx {
            uid,
            gids,
            sesflags: s.sesflags,
            umask: s.umask,
        }
    }

    fn disabled(s: &Session, bit: u32) -> bool {
        s.disables & (1 << bit) != 0
    }

    /// Handles one registered request; `None` when the answer is deferred or there is none.
    fn fuse(&mut self, conn: ConnId, sid: u32, req: ClRequest, now: u32) -> Option<Vec<u8>> {
        let s = self.sessions.get(&sid)?.clone();
        let root = s.root;
        let map_in = |i: u32| if i == crate::fs::ROOT { root } else { i };
        let map_out = move |i: u32| if i == root { crate::fs::ROOT } else { i };
        use ClRequest as Q;
        macro_rules! try_st {
            ($t:expr, $msgid:expr, $e:expr) => {
                match $e {
                    Ok(v) => v,
                    Err(code) => return Some(Reply::status($t, $msgid, code)),
                }
            };
        }
        let created_reply = |core: &Core, t: u32, msgid: u32, ino: u32, ctx: &Ctx| -> Vec<u8> {
            match core.fs.attr(ino, ctx) {
                Ok(a) => Reply::with_msgid(t, msgid)
                    .u32(map_out(ino))
                    .attr(&a)
                    .finish(),
                Err(e) => Reply::status(t, msgid, e),
            }
        };
        let meta = root == 0;
        let ro = s.sesflags & sesflag::READONLY != 0;
        // The meta mount's requests: only a meta session may send them, and a
        // read-only one may only look.
        let meta_check = |t: u32, msgid: u32, writes: bool| -> Option<Vec<u8>> {
            if !meta {
                Some(Reply::status(t, msgid, st::EPERM))
            } else if writes && ro {
                Some(Reply::status(t, msgid, st::EROFS))
            } else {
                None
            }
        };
        Some(match req {
            Q::Snapshot {
                msgid,
                src,
                dst_parent,
                name,
                creds,
                smode,
                umask,
            } => {
                let t = cl::CLTOMA_FUSE_SNAPSHOT + 1;
                let refused = if smode & crate::fs::smode::DELETE != 0 {
                    // mfsrmsnapshot counts as unlink and rmdir.
                    Self::disabled(&s, 7) || Self::disabled(&s, 8)
                } else {
                    Self::disabled(&s, 19)
                };
                if refused {
                    return Some(Reply::status(t, msgid, st::EPERM));
                }
                let ctx = self.ctx(&s, &creds);
                // Without a umask (old tools) the copies cannot be made like `cp`.
                let (smode, umask) = match umask {
                    Some(u) => (smode, u | s.umask),
                    None => (smode & !crate::fs::smode::CPLIKE_ATTR, s.umask),
                };
                let r = self.fs.snapshot(
                    &ctx,
                    map_in(src),
                    map_in(dst_parent),
                    &name,
                    smode,
                    umask,
                    now,
                );
                if let Ok(c) = &r {
                    info!(session = s.id, src, "snapshot made: {c:?}");
                }
                Reply::status(t, msgid, r.err().unwrap_or(st::OK))
            }
            Q::AppendSlice {
                msgid,
                flags,
                dst,
                src,
                from,
                to,
                creds,
            } => {
                let t = cl::CLTOMA_FUSE_APPEND_SLICE + 1;
                if Self::disabled(&s, 18) {
                    return Some(Reply::status(t, msgid, st::EPERM));
                }
                let ctx = self.ctx(&s, &creds);
                let r = self
                    .fs
                    .append_slice(&ctx, map_in(dst), map_in(src), flags, from, to, now);
                Reply::status(t, msgid, r.err().unwrap_or(st::OK))
            }
            Q::GetTrash { msgid, bucket } => {
                let t = cl::CLTOMA_FUSE_GETTRASH + 1;
                if let Some(r) = meta_check(t, msgid, false) {
                    return Some(r);
                }
                detached_list(t, msgid, self.fs.trash_entries(bucket))
            }
            Q::GetSustained { msgid } => {
                let t = cl::CLTOMA_FUSE_GETSUSTAINED + 1;
                if let Some(r) = meta_check(t, msgid, false) {
                    return Some(r);
                }
                detached_list(t, msgid, self.fs.sustained_entries())
            }
            Q::GetDetachedAttr {
                msgid,
                inode,
                dtype,
            } => {
                let t = cl::CLTOMA_FUSE_GETDETACHEDATTR + 1;
                if let Some(r) = meta_check(t, msgid, false) {
                    return Some(r);
                }
                let a = try_st!(t, msgid, self.fs.detached_attr(inode, dtype));
                Reply::with_msgid(t, msgid).attr(&a).finish()
            }
            Q::GetTrashPath { msgid, inode } => {
                let t = cl::CLTOMA_FUSE_GETTRASHPATH + 1;
                if let Some(r) = meta_check(t, msgid, false) {
                    return Some(r);
                }
                let p = try_st!(t, msgid, self.fs.trash_path_of(inode));
                Reply::with_msgid(t, msgid)
                    .u32(p.len() as u32 + 1)
                    .bytes(p)
                    .u8(0)
                    .finish()
            }
            Q::SetTrashPath { msgid, inode, path } => {
                let t = cl::CLTOMA_FUSE_SETTRASHPATH + 1;
                if let Some(r) = meta_check(t, msgid, true) {
                    return Some(r);
                }
                let r = self.fs.set_trash_path(inode, &path, now);
                Reply::status(t, msgid, r.err().unwrap_or(st::OK))
            }
            Q::Undel { msgid, inode } => {
                let t = cl::CLTOMA_FUSE_UNDEL + 1;
                if let Some(r) = meta_check(t, msgid, true) {
                    return Some(r);
                }
                let r = self.fs.undel(inode, now);
                Reply::status(t, msgid, r.err().unwrap_or(st::OK))
            }
            Q::Purge { msgid, inode } => {
                let t = cl::CLTOMA_FUSE_PURGE + 1;
                if let Some(r) = meta_check(t, msgid, true) {
                    return Some(r);
                }
                let r = self.fs.purge_trash(inode, now);
                Reply::status(t, msgid, r.err().unwrap_or(st::OK))
            }
            // A meta session sees no space (MooseFS answers zeros too).
            Q::Statfs { msgid } if meta => Reply::with_msgid(cl::CLTOMA_FUSE_STATFS + 1, msgid)
                .u64(0)
                .u64(0)
                .u64(0)
                .u64(0)
                .u64(0)
                .u32(0)
                .finish(),
            Q::Statfs { msgid } => {
                let (total, used) = self
                    .chunks
                    .servers
                    .values()
                    .fold((0u64, 0u64), |(t, u), s| {
                        (t + s.space.total, u + s.space.used)
                    });
                let avail = total.saturating_sub(used);
                let inodes = self.fs.node_stats(root).inodes;
                Reply::with_msgid(cl::CLTOMA_FUSE_STATFS + 1, msgid)
                    .u64(total)
                    .u64(avail)
                    .u64(avail)
                    .u64(0)
                    .u64(0)
                    .u32(inodes)
                    .finish()
            }
            Q::Access {
                msgid,
                inode,
                creds,
                mask,
            } => {
                let ctx = self.ctx(&s, &creds);
                let r = self.fs.access(&ctx, map_in(inode), mask);
                Reply::status(cl::CLTOMA_FUSE_ACCESS + 1, msgid, r.err().unwrap_or(st::OK))
            }
            Q::Lookup {
                msgid,
                parent,
                name,
                creds,
            } => {
                let t = cl::CLTOMA_FUSE_LOOKUP + 1;
                let ctx = self.ctx(&s, &creds);
                let ino = try_st!(t, msgid, self.fs.lookup(&ctx, map_in(parent), &name));
                let mut a = try_st!(t, msgid, self.fs.attr(ino, &ctx));
                a.flags &= !cl::MATTR_ALLOWDATACACHE;
                let n = self.fs.node(ino)?;
                let mut lflags = self.fs.accmode(n, &ctx) as u16;
                if s.sesflags & sesflag::READONLY != 0 {
                    lflags |= 0x0200;
                }
                Reply::with_msgid(t, msgid)
                    .u32(map_out(ino))
                    .attr(&a)
                    .u16(lflags)
                    .finish()
            }
            Q::Getattr {
                msgid,
                inode,
                uid,
                gid,
                ..
            } => {
                let t = cl::CLTOMA_FUSE_GETATTR + 1;
                let ctx = self.ctx(
                    &s,
                    &Creds {
                        uid,
                        gids: vec![gid],
                    },
                );
                let a = try_st!(t, msgid, self.fs.attr(map_in(inode), &ctx));
                Reply::with_msgid(t, msgid).attr(&a).finish()
            }
            Q::Setattr {
                msgid,
                inode,
                creds,
                attr,
                ..
            } => {
                let t = cl::CLTOMA_FUSE_SETATTR + 1;
                if (Self::disabled(&s, 0) && attr.setmask & (cl::SET_UID | cl::SET_GID) != 0)
                    || (Self::disabled(&s, 1) && attr.setmask & cl::SET_MODE != 0)
                {
                    return Some(Reply::status(t, msgid, st::EPERM));
                }
                let ctx = self.ctx(&s, &creds);
                let ino = map_in(inode);
                try_st!(t, msgid, self.fs.setattr(&ctx, ino, &attr, now));
                let a = try_st!(t, msgid, self.fs.attr(ino, &ctx));
                Reply::with_msgid(t, msgid).attr(&a).finish()
            }
            Q::Readlink { msgid, inode } => {
                let t = cl::CLTOMA_FUSE_READLINK + 1;
                let target = try_st!(t, msgid, self.fs.readlink(map_in(inode), now));
                Reply::with_msgid(t, msgid)
                    .u32(target.len() as u32 + 1)
                    .bytes(&target)
                    .u8(0)
                    .finish()
            }
            Q::Symlink {
                msgid,
                parent,
                name,
                target,
                creds,
            } => {
                let t = cl::CLTOMA_FUSE_SYMLINK + 1;
                if Self::disabled(&s, 2) {
                    return Some(Reply::status(t, msgid, st::EPERM));
                }
                if target.is_empty() || target.len() > 4096 || target.contains(&0) {
                    return Some(Reply::status(t, msgid, st::EINVAL));
                }
                let ctx = self.ctx(&s, &creds);
                let ino = try_st!(
                    t,
                    msgid,
                    self.fs.create(
                        &ctx,
                        map_in(parent),
                        &name,
                        T::SYMLINK,
                        0o777,
                        0,
                        0,
                        false,
                        Some(&target),
                        now
                    )
                );
                created_reply(self, t, msgid, ino, &ctx)
            }
            Q::Mknod {
                msgid,
                parent,
                name,
                ntype,
                mode,
                umask,
                creds,
                rdev,
            } => {
                let t = cl::CLTOMA_FUSE_MKNOD + 1;
                let bit = match ntype {
                    T::FIFO => 3,
                    T::BLOCKDEV | T::CHARDEV => 4,
                    T::SOCKET => 5,
                    T::DIRECTORY => 6,
                    T::FILE => 12,
                    _ => return Some(Reply::status(t, msgid, st::EINVAL)),
                };
                if Self::disabled(&s, bit) {
                    return Some(Reply::status(t, msgid, st::EPERM));
                }
                let ctx = self.ctx(&s, &creds);
                let ino = try_st!(
                    t,
                    msgid,
                    self.fs.create(
                        &ctx,
                        map_in(parent),
                        &name,
                        ntype,
                        mode,
                        umask,
                        rdev,
                        true,
                        None,
                        now
                    )
                );
                created_reply(self, t, msgid, ino, &ctx)
            }
            Q::Mkdir {
                msgid,
                parent,
                name,
                mode,
                umask,
                creds,
                copysgid,
            } => {
                let t = cl::CLTOMA_FUSE_MKDIR + 1;
                if Self::disabled(&s, 6) {
                    return Some(Reply::status(t, msgid, st::EPERM));
                }
                let ctx = self.ctx(&s, &creds);
                let ino = try_st!(
                    t,
                    msgid,
                    self.fs.create(
                        &ctx,
                        map_in(parent),
                        &name,
                        T::DIRECTORY,
                        mode,
                        umask,
                        0,
                        copysgid,
                        None,
                        now
                    )
                );
                created_reply(self, t, msgid, ino, &ctx)
            }
            Q::Unlink {
                msgid,
                parent,
                name,
                creds,
            } => {
                let t = cl::CLTOMA_FUSE_UNLINK + 1;
                if Self::disabled(&s, 7) {
                    return Some(Reply::status(t, msgid, st::EPERM));
                }
                let ctx = self.ctx(&s, &creds);
                let ino = try_st!(t, msgid, self.fs.unlink(&ctx, map_in(parent), &name, now));
                Reply::with_msgid(t, msgid).u32(map_out(ino)).finish()
            }
            Q::Rmdir {
                msgid,
                parent,
                name,
                creds,
            } => {
                let t = cl::CLTOMA_FUSE_RMDIR + 1;
                if Self::disabled(&s, 8) {
                    return Some(Reply::status(t, msgid, st::EPERM));
                }
                let ctx = self.ctx(&s, &creds);
                let ino = try_st!(t, msgid, self.fs.rmdir(&ctx, map_in(parent), &name, now));
                Reply::with_msgid(t, msgid).u32(map_out(ino)).finish()
            }
            Q::Rename {
                msgid,
                src_parent,
                src_name,
                dst_parent,
                dst_name,
                creds,
            } => {
                let t = cl::CLTOMA_FUSE_RENAME + 1;
                let (sp, dp) = (map_in(src_parent), map_in(dst_parent));
                if (Self::disabled(&s, 9) && Self::disabled(&s, 10))
                    || (Self::disabled(&s, 9) && src_name != dst_name)
                    || (Self::disabled(&s, 10) && sp != dp)
                {
                    return Some(Reply::status(t, msgid, st::EPERM));
                }
                let ctx = self.ctx(&s, &creds);
                let ino = try_st!(
                    t,
                    msgid,
                    self.fs.rename(&ctx, sp, &src_name, dp, &dst_name, now)
                );
                created_reply(self, t, msgid, ino, &ctx)
            }
            Q::Link {
                msgid,
                inode,
                dst_parent,
                dst_name,
                creds,
            } => {
                let t = cl::CLTOMA_FUSE_LINK + 1;
                if Self::disabled(&s, 11) {
                    return Some(Reply::status(t, msgid, st::EPERM));
                }
                let ctx = self.ctx(&s, &creds);
                let ino = map_in(inode);
                try_st!(
                    t,
                    msgid,
                    self.fs.link(&ctx, ino, map_in(dst_parent), &dst_name, now)
                );
                created_reply(self, t, msgid, ino, &ctx)
            }
            Q::Readdir {
                msgid,
                inode,
                creds,
                flags,
                ..
            } => {
                let t = cl::CLTOMA_FUSE_READDIR + 1;
                if Self::disabled(&s, 13) {
                    return Some(Reply::status(t, msgid, st::EPERM));
                }
                let ctx = self.ctx(&s, &creds);
                let ino = map_in(inode);
                let with_attr = flags & 1 != 0;
                let entries = try_st!(t, msgid, self.fs.readdir(&ctx, ino, with_attr, now));
                let mut r = Reply::with_msgid(t, msgid).u64(0x7FFF_FFFF_FFFF_FFFF);
                for (i, e) in entries.iter().enumerate() {
                    // ".." of the session root is the root itself.
                    let target = if i == 1 && ino == root { root } else { e.inode };
                    let buf = r.buf_mut();
                    buf.push(e.name.len() as u8);
                    buf.extend_from_slice(&e.name);
                    buf.extend_from_slice(&map_out(target).to_be_bytes());
                    if with_attr {
                        match self.fs.attr(target, &ctx) {
                            Ok(a) => a.put(buf),
                            Err(_) => cl::Attr::default().put(buf),
                        }
                    } else {
                        buf.push(self.fs.node(target).map_or(T::FILE, |n| n.ntype));
                    }
                }
                r.finish()
            }
            Q::Open {
                msgid,
                inode,
                creds,
                flags,
            } => {
                let t = cl::CLTOMA_FUSE_OPEN + 1;
                let ctx = self.ctx(&s, &creds);
                let ino = map_in(inode);
                if flags & 0x08 != 0 && Self::disabled(&s, 16) {
                    return Some(Reply::status(t, msgid, st::EPERM));
                }
                if flags & 0x08 != 0 {
                    // O_TRUNC: the chunk data beyond 0 goes with the released chunks.
                    if let Ok((_, c)) = self.fs.file_chunk(ino, 0) {
                        if c != 0 && self.chunks.map.get(&c).is_some_and(|k| k.lockedto >= now) {
                            return Some(Reply::status(t, msgid, st::LOCKED));
                        }
                    }
                }
                try_st!(t, msgid, self.fs.open_check(&ctx, ino, flags, now));
                self.open_in_session(sid, ino, now);
                let mut a = try_st!(t, msgid, self.fs.attr(ino, &ctx));
                a.flags &= !cl::MATTR_ALLOWDATACACHE;
                Reply::with_msgid(t, msgid).u8(0).attr(&a).finish()
            }
            Q::Create {
                msgid,
                parent,
                name,
                mode,
                umask,
                creds,
            } => {
                let t = cl::CLTOMA_FUSE_CREATE + 1;
                if Self::disabled(&s, 12) {
                    return Some(Reply::status(t, msgid, st::EPERM));
                }
                let ctx = self.ctx(&s, &creds);
                let ino = try_st!(
                    t,
                    msgid,
                    self.fs.create(
                        &ctx,
                        map_in(parent),
                        &name,
                        T::FILE,
                        mode,
                        umask,
                        0,
                        true,
                        None,
                        now
                    )
                );
                self.open_in_session(sid, ino, now);
                let mut a = try_st!(t, msgid, self.fs.attr(ino, &ctx));
                a.flags &= !cl::MATTR_ALLOWDATACACHE;
                Reply::with_msgid(t, msgid)
                    .u8(0)
                    .u32(map_out(ino))
                    .attr(&a)
                    .finish()
            }
            Q::ReadChunk {
                msgid,
                inode,
                index,
                ..
            } => {
                let t = cl::CLTOMA_FUSE_READ_CHUNK + 1;
                if Self::disabled(&s, 14) {
                    return Some(Reply::status(t, msgid, st::EPERM));
                }
                if index > 0x7FFF_FFFF {
                    return Some(Reply::status(t, msgid, st::INDEXTOOBIG));
                }
                match self.fs.node(inode).map(|n| n.ntype) {
                    None => return Some(Reply::status(t, msgid, st::ENOENT)),
                    Some(T::FILE) => {}
                    Some(_) => return Some(Reply::status(t, msgid, st::EPERM)),
                }
                self.chunk_reply(t, msgid, inode, index)
            }
            Q::WriteChunk {
                msgid,
                inode,
                index,
                flags,
            } => return self.write_chunk(conn, &s, msgid, inode, index, flags, now),
            Q::WriteChunkEnd {
                msgid,
                chunkid,
                inode,
                length,
                ..
            } => {
                let t = cl::CLTOMA_FUSE_WRITE_CHUNK_END + 1;
                if s.sesflags & sesflag::READONLY != 0 {
                    return Some(Reply::status(t, msgid, st::EROFS));
                }
                let status = match self.fs.node(inode).map(|n| n.ntype) {
                    None => st::ENOENT,
                    Some(T::FILE) => {
                        if length > 0 {
                            let _ = self.fs.extend_length(inode, length, now);
                        }
                        st::OK
                    }
                    Some(_) => st::EPERM,
                };
                self.chunks.unlock(chunkid);
                self.fs.log(now, format!("UNLOCK({chunkid})"));
                Reply::status(t, msgid, status)
            }
            Q::Truncate {
                msgid,
                inode,
                flags,
                creds,
                length,
            } => return self.truncate(conn, &s, msgid, map_in(inode), flags, &creds, length, now),
            Q::Getxattr {
                msgid,
                inode,
                name,
                mode,
                opened,
                creds,
            } => {
                let t = cl::CLTOMA_FUSE_GETXATTR + 1;
                if mode > 1 {
                    return Some(Reply::status(t, msgid, st::EINVAL));
                }
                let ctx = self.ctx(&s, &creds);
                let v = try_st!(
                    t,
                    msgid,
                    self.fs.getxattr(&ctx, map_in(inode), &name, opened)
                );
                if v.len() > 65536 {
                    return Some(Reply::status(t, msgid, st::ERANGE));
                }
                let r = Reply::with_msgid(t, msgid).u32(v.len() as u32);
                if mode == 0 { r.bytes(&v) } else { r }.finish()
            }
            Q::Setxattr {
                msgid,
                inode,
                name,
                value,
                mode,
                opened,
                creds,
            } => {
                let t = cl::CLTOMA_FUSE_SETXATTR + 1;
                if Self::disabled(&s, 23) {
                    return Some(Reply::status(t, msgid, st::EPERM));
                }
                let ctx = self.ctx(&s, &creds);
                let r = self
                    .fs
                    .setxattr(&ctx, map_in(inode), &name, &value, mode, opened, now);
                Reply::status(t, msgid, r.err().unwrap_or(st::OK))
            }
            Q::GetFacl { msgid, inode, .. } => {
                let t = cl::CLTOMA_FUSE_GETFACL + 1;
                let st_ = if self.fs.node(map_in(inode)).is_some() {
                    st::ENOATTR
                } else {
                    st::ENOENT
                };
                Reply::status(t, msgid, st_)
            }
            Q::SetFacl { msgid, .. } => {
                Reply::status(cl::CLTOMA_FUSE_SETFACL + 1, msgid, st::ENOTSUP)
            }
            Q::Flock { msgid, .. } => Reply::status(cl::CLTOMA_FUSE_FLOCK + 1, msgid, st::OK),
            Q::PosixLock { msgid, cmd, .. } => {
                let t = cl::CLTOMA_FUSE_POSIX_LOCK + 1;
                if cmd == 0 {
                    // GET: no conflicting lock.
                    Reply::with_msgid(t, msgid)
                        .u32(0)
                        .u8(0)
                        .u64(0)
                        .u64(0)
                        .finish()
                } else {
                    Reply::status(t, msgid, st::OK)
                }
            }
            Q::SustainedInodes(list) => {
                let want: HashSet<u32> = list.into_iter().filter(|&i| i != 0).collect();
                let have = self.open_files.get(&sid).cloned().unwrap_or_default();
                for &i in have.difference(&want) {
                    self.release_in_session(sid, i, now);
                }
                for &i in &want {
                    if !have.contains(&i) && self.fs.node(i).is_some() {
                        self.open_in_session(sid, i, now);
                    }
                }
                return None;
            }
            Q::AmtimeInodes(list) => {
                for (i, a, m) in list {
                    if i != 0 {
                        self.fs.amtime(i, a, m, now);
                    }
                }
                return None;
            }
            Q::Check {
                msgid,
                inode,
                index,
            } => {
                let t = cl::CLTOMA_FUSE_CHECK + 1;
                let ino = map_in(inode);
                let chunks = match self.fs.node(ino).map(|n| &n.kind) {
                    Some(Kind::File { chunks, .. }) => chunks.clone(),
                    Some(_) => return Some(Reply::status(t, msgid, st::EPERM)),
                    None => return Some(Reply::status(t, msgid, st::ENOENT)),
                };
                match index {
                    None => {
                        let mut counts = [0u32; 12];
                        for c in chunks {
                            if c == 0 {
                                counts[11] += 1;
                            } else {
                                counts[self.chunks.valid_count(c).min(10)] += 1;
                            }
                        }
                        let mut r = Reply::with_msgid(t, msgid);
                        for c in counts {
                            r = r.u32(c);
                        }
                        r.finish()
                    }
                    Some(i) => {
                        let c = chunks.get(i as usize).copied().unwrap_or(0);
                        let (version, copies) = if c == 0 {
                            (0, Vec::new())
                        } else {
                            self.chunks.copy_report(c).unwrap_or((0, Vec::new()))
                        };
                        let mut r = Reply::with_msgid(t, msgid).u64(c).u32(version);
                        for (ip, port, ty) in copies {
                            r = r.u32(ip).u16(port).u8(ty);
                        }
                        r.finish()
                    }
                }
            }
            Q::GetTrashtime {
                msgid,
                inode,
                gmode,
            } => {
                let t = cl::CLTOMA_FUSE_GETTRASHTIME + 1;
                let (f, d) = try_st!(
                    t,
                    msgid,
                    self.census(map_in(inode), gmode, |n| n.trash_hours as u32 * 3600)
                );
                Self::census_reply(t, msgid, &f, &d, true)
            }
            Q::GetSclass {
                msgid,
                inode,
                gmode,
            } => {
                let t = cl::CLTOMA_FUSE_GETSCLASS + 1;
                let (f, d) = try_st!(
                    t,
                    msgid,
                    self.census(map_in(inode), gmode, |n| n.goal as u32)
                );
                Self::census_reply(t, msgid, &f, &d, false)
            }
            Q::GetEattr {
                msgid,
                inode,
                gmode,
            } => {
                let t = cl::CLTOMA_FUSE_GETEATTR + 1;
                let (f, d) = try_st!(t, msgid, self.eattr_census(map_in(inode), gmode));
                Self::census_reply(t, msgid, &f, &d, false)
            }
            Q::SetTrashtime {
                msgid,
                inode,
                uid,
                trashtime,
                smode,
            } => {
                let t = cl::CLTOMA_FUSE_SETTRASHTIME + 1;
                if Self::disabled(&s, 20) {
                    return Some(Reply::status(t, msgid, st::EPERM));
                }
                if smode & 3 == 3 || smode > 7 {
                    return Some(Reply::status(t, msgid, st::EINVAL));
                }
                if trashtime < s.mintrash || trashtime > s.maxtrash {
                    return Some(Reply::status(t, msgid, st::EPERM));
                }
                if s.sesflags & sesflag::READONLY != 0 {
                    return Some(Reply::status(t, msgid, st::EROFS));
                }
                let uid = if uid == 0 { s.rootuid } else { uid };
                let counts = try_st!(
                    t,
                    msgid,
                    self.fs
                        .tool_trashtime(map_in(inode), uid, trashtime, smode, now)
                );
                Self::counts_reply(t, msgid, counts)
            }
            Q::SetSclass {
                msgid,
                inode,
                uid,
                goal,
                smode,
            } => {
                let t = cl::CLTOMA_FUSE_SETSCLASS + 1;
                if Self::disabled(&s, 21) {
                    return Some(Reply::status(t, msgid, st::EPERM));
                }
                if !(1..=9).contains(&goal) || smode & 3 == 3 || smode > 7 {
                    return Some(Reply::status(t, msgid, st::EINVAL));
                }
                if goal < s.mingoal || goal > s.maxgoal {
                    return Some(Reply::status(t, msgid, st::EPERM));
                }
                if s.sesflags & sesflag::READONLY != 0 {
                    return Some(Reply::status(t, msgid, st::EROFS));
                }
                let uid = if uid == 0 { s.rootuid } else { uid };
                let counts = try_st!(
                    t,
                    msgid,
                    self.fs.tool_goal(map_in(inode), uid, goal, smode, now)
                );
                Self::counts_reply(t, msgid, counts)
            }
            Q::SetEattr {
                msgid,
                inode,
                uid,
                eattr,
                smode,
            } => {
                let t = cl::CLTOMA_FUSE_SETEATTR + 1;
                if Self::disabled(&s, 22) {
                    return Some(Reply::status(t, msgid, st::EPERM));
                }
                if eattr & 0xE0 != 0 && s.sesflags & sesflag::ADMIN == 0 {
                    return Some(Reply::status(t, msgid, st::EPERM));
                }
                if smode & 3 == 3 || smode > 7 {
                    return Some(Reply::status(t, msgid, st::EINVAL));
                }
                let uid = if uid == 0 { s.rootuid } else { uid };
                let counts = try_st!(
                    t,
                    msgid,
                    self.fs.tool_eattr(map_in(inode), uid, eattr, smode, now)
                );
                Self::counts_reply(t, msgid, counts)
            }
            Q::GetDirStats { msgid, inode } => {
                let t = cl::CLTOMA_FUSE_GETDIRSTATS + 1;
                let ino = map_in(inode);
                match self.fs.node(ino).map(|n| n.ntype) {
                    None => return Some(Reply::status(t, msgid, st::ENOENT)),
                    Some(T::FILE | T::DIRECTORY) => {}
                    Some(_) => return Some(Reply::status(t, msgid, st::EPERM)),
                }
                let x = self.fs.node_stats(ino);
                let tools = matches!(
                    self.conns.get(&conn).map(|c| &c.state),
                    Some(ConnState::Client { tools: true, .. })
                );
                let r = Reply::with_msgid(t, msgid)
                    .u32(x.inodes)
                    .u32(x.dirs)
                    .u32(x.files);
                if tools {
                    r.u32(x.chunks)
                } else {
                    r.u32(0).u32(0).u32(x.chunks).u32(0).u32(0)
                }
                .u64(x.length)
                .u64(x.size)
                .u64(x.realsize)
                .finish()
            }
            Q::Nop
            | Q::GetVersion { .. }
            | Q::GetConfig { .. }
            | Q::Register(_)
            | Q::TimeSync { .. } => return None,
        })
    }

    pub(crate) fn open_in_session(&mut self, sid: u32, ino: u32, now: u32) {
        if self.sessions.contains_key(&sid) && self.open_files.entry(sid).or_default().insert(ino) {
            self.fs.log(now, format!("ACQUIRE({sid},{ino})"));
            self.fs.acquire(ino);
        }
    }

    fn counts_reply(
        t: u32,
        msgid: u32,
        (changed, notchanged, notpermitted): (u32, u32, u32),
    ) -> Vec<u8> {
        Reply::with_msgid(t, msgid)
            .u32(changed)
            .u32(notchanged)
            .u32(notpermitted)
            .finish()
    }

    /// Answer to GETTRASHTIME (`wide`: 32-bit counts and values) or GETSCLASS/GETEATTR
    /// (8-bit): the two counts, then files' `(value, count)` pairs, then directories'.
    fn census_reply(t: u32, msgid: u32, f: &[(u32, u32)], d: &[(u32, u32)], wide: bool) -> Vec<u8> {
        let mut r = Reply::with_msgid(t, msgid);
        r = if wide {
            r.u32(f.len() as u32).u32(d.len() as u32)
        } else {
            r.u8(f.len() as u8).u8(d.len() as u8)
        };
        for &(v, c) in f.iter().chain(d) {
            r = if wide { r.u32(v) } else { r.u8(v as u8) }.u32(c);
        }
        r.finish()
    }

    /// Extra-attribute census as MooseFS counts it: every node that is not a directory
    /// (symlinks, devices and trash-like nodes too) on the "files" side, without the
    /// directory-only `noentrycache` bit.
    #[allow(clippy::type_complexity)]
    fn eattr_census(&self, ino: u32, gmode: u8) -> Result<(Vec<(u32, u32)>, Vec<(u32, u32)>), u8> {
        if gmode > 1 {
            return Err(st::EINVAL);
        }
        self.fs.node(ino).ok_or(st::ENOENT)?;
        let nodes = if gmode == 1 {
            self.fs.subtree(ino)
        } else {
            vec![ino]
        };
        let mut f: BTreeMap<u32, u32> = BTreeMap::new();
        let mut d: BTreeMap<u32, u32> = BTreeMap::new();
        for n in nodes.iter().filter_map(|&i| self.fs.node(i)) {
            if n.ntype == T::DIRECTORY {
                *d.entry(n.eattr as u32).or_default() += 1;
            } else {
                *f.entry((n.eattr & !crate::fs::eattr::NOECACHE) as u32)
                    .or_default() += 1;
            }
        }
        Ok((f.into_iter().collect(), d.into_iter().collect()))
    }

    /// Value → count maps for files and directories (non-recursive unless gmode = 1).
    #[allow(clippy::type_complexity)]
    fn census(
        &self,
        ino: u32,
        gmode: u8,
        value: impl Fn(&crate::fs::Node) -> u32,
    ) -> Result<(Vec<(u32, u32)>, Vec<(u32, u32)>), u8> {
        if gmode > 1 {
            return Err(st::EINVAL);
        }
        let n = self.fs.node(ino).ok_or(st::ENOENT)?;
        let nodes = if gmode == 1 {
            self.fs.subtree(ino)
        } else {
            vec![ino]
        };
        if gmode == 0 && !matches!(n.ntype, T::FILE | T::DIRECTORY) {
            return Err(st::EPERM);
        }
        let mut f: BTreeMap<u32, u32> = BTreeMap::new();
        let mut d: BTreeMap<u32, u32> = BTreeMap::new();
        for i in nodes {
            if let Some(n) = self.fs.node(i) {
                match n.ntype {
                    T::FILE => *f.entry(value(n)).or_default() += 1,
                    T::DIRECTORY => *d.entry(value(n)).or_default() += 1,
                    _ => {}
                }
            }
        }
        Ok((f.into_iter().collect(), d.into_iter().collect()))
    }

    /// Runs a tool setter on a node (or its subtree with smode bit 4); returns
    /// (changed, not changed, not permitted).
    #[allow(clippy::too_many_arguments)]
    fn write_chunk(
        &mut self,
        conn: ConnId,
        s: &Session,
        msgid: u32,
        inode: u32,
        index: u32,
        flags: u8,
        now: u32,
    ) -> Option<Vec<u8>> {
        let t = cl::CLTOMA_FUSE_WRITE_CHUNK + 1;
        if Self::disabled(s, 15) {
            return Some(Reply::status(t, msgid, st::EPERM));
        }
        if s.sesflags & sesflag::READONLY != 0 {
            return Some(Reply::status(t, msgid, st::EROFS));
        }
        if index > 0x7FFF_FFFF {
            return Some(Reply::status(t, msgid, st::INDEXTOOBIG));
        }
        let (goal, eattr) = match self.fs.node(inode) {
            None => return Some(Reply::status(t, msgid, st::ENOENT)),
            Some(n) if n.ntype != T::FILE => return Some(Reply::status(t, msgid, st::EPERM)),
            Some(n) => (n.goal, n.eattr),
        };
        if eattr & crate::fs::eattr::IMMUTABLE != 0 {
            return Some(Reply::status(t, msgid, st::EPERM));
        }
        let (_, cid) = self.fs.file_chunk(inode, index).ok()?;
        let min_len = (index as u64) * CHUNK_SIZE;
        let continue_op = flags & 0x02 != 0;
        // (chunk the slot gets, whether the client waits for an operation, what the
        // slot held before when the chunk is new)
        let planned = if cid == 0 {
            self.chunks.create(goal, now).map(|id| (id, true, Some(0)))
        } else if self.chunks.shared(cid) {
            // Copy on write: the file gets its own copy of a chunk a snapshot shares.
            self.chunks
                .duplicate(cid, goal, None, now, continue_op)
                .map(|id| (id, true, Some(cid)))
        } else {
            self.chunks
                .modify(cid, now, continue_op)
                .map(|waits| (cid, waits, None))
        };
        let (id, waits, replaced) = match planned {
            Ok(p) => p,
            Err(e) => return Some(Reply::status(t, msgid, e)),
        };
        let _ = self.fs.set_chunk(inode, index, id, min_len);
        self.fs.log(
            now,
            format!("WRITE({inode},{index},{},0):{id}", waits as u8),
        );
        if !waits {
            return Some(self.chunk_reply(t, msgid, inode, index));
        }
        self.waiting.entry(id).or_default().push(Waiter::Write {
            conn,
            msgid,
            inode,
            index,
            replaced,
        });
        None
    }

    #[allow(clippy::too_many_arguments)]
    fn truncate(
        &mut self,
        conn: ConnId,
        s: &Session,
        msgid: u32,
        ino: u32,
        flags: u8,
        creds: &Creds,
        length: u64,
        now: u32,
    ) -> Option<Vec<u8>> {
        let t = cl::CLTOMA_FUSE_TRUNCATE + 1;
        if Self::disabled(s, 16) && Self::disabled(s, 17) {
            return Some(Reply::status(t, msgid, st::EPERM));
        }
        let ctx = self.ctx(s, creds);
        let prev = match self.fs.truncate_check(&ctx, ino, flags, length) {
            Ok(p) => p,
            Err(e) => return Some(Reply::status(t, msgid, e)),
        };
        let reply = |core: &Core| -> Vec<u8> {
            match core.fs.attr(ino, &ctx) {
                Ok(a) => Reply::with_msgid(t, msgid).u64(prev).attr(&a).finish(),
                Err(e) => Reply::status(t, msgid, e),
            }
        };
        if flags & 0x08 != 0 {
            // RESERVE (O_APPEND writes): `length` is a delta; hand out the range at the
            // current virtual end, which the client then writes. The file length follows
            // with the write's end.
            let start = self.append_res.get(&ino).copied().unwrap_or(0).max(prev);
            let Some(end) = start.checked_add(length) else {
                return Some(Reply::status(t, msgid, st::INDEXTOOBIG));
            };
            self.append_res.insert(ino, end);
            return Some(match self.fs.attr(ino, &ctx) {
                Ok(a) => Reply::with_msgid(t, msgid).u64(start).attr(&a).finish(),
                Err(e) => Reply::status(t, msgid, e),
            });
        }
        if flags & 0x02 != 0 {
            // UPDATE: only ever grows (sent after buffered writes).
            if length > prev {
                let _ = self.fs.extend_length(ino, length, now);
            }
            return Some(reply(self));
        }
        self.append_res.remove(&ino);
        if length < prev && !length.is_multiple_of(CHUNK_SIZE) {
            let idx = (length / CHUNK_SIZE) as u32;
            if let Ok((_, cid)) = self.fs.file_chunk(ino, idx) {
                if cid != 0 {
                    let in_chunk = (length % CHUNK_SIZE) as u32;
                    let r = if self.chunks.shared(cid) {
                        // Copy on write: the truncated copy becomes the file's own chunk.
                        let goal = self.fs.node(ino).map_or(1, |n| n.goal);
                        self.chunks
                            .duplicate(cid, goal, Some(in_chunk), now, false)
                            .map(|id| {
                                let _ = self.fs.set_chunk(ino, idx, id, 0);
                                (id, Some((idx, cid)))
                            })
                    } else {
                        self.chunks
                            .truncate(cid, in_chunk, now)
                            .map(|()| (cid, None))
                    };
                    return match r {
                        Ok((id, replaced)) => {
                            self.fs.log(now, format!("TRUNC({ino},{idx}):{id}"));
                            self.waiting.entry(id).or_default().push(Waiter::Truncate {
                                conn,
                                msgid,
                                inode: ino,
                                length,
                                prev,
                                session: s.id,
                                replaced,
                            });
                            None
                        }
                        Err(e) => Some(Reply::status(t, msgid, e)),
                    };
                }
            }
        }
        let touch = !(flags & 0x04 != 0 && length == prev);
        let _ = self.fs.set_length(ino, length, now, touch);
        Some(reply(self))
    }

    // ---------------------------------------------------------------- chunkservers

    fn cs_packet(&mut self, conn: ConnId, t: u32, p: &[u8], now: u32) {
        if t == codes::ANTOAN_UNKNOWN_COMMAND || t == codes::ANTOAN_BAD_COMMAND_SIZE {
            return;
        }
        if t == codes::ANTOAN_GET_VERSION {
            let mut r = Reply::new(codes::ANTOAN_VERSION);
            if p.len() == 4 {
                r = r.bytes(p);
            }
            self.send(conn, r.u32(VERSHEX).bytes(b"3.0.117-1").finish());
            return;
        }
        let msg = match CsToMaster::decode(t, p) {
            Ok(m) => m,
            Err(e) => {
                self.close(conn, &format!("bad packet from chunkserver: {e}"));
                return;
            }
        };
        let (peer, csid, random) = match self.conns.get(&conn) {
            Some(Conn {
                peer,
                state: ConnState::Cs { csid, random },
                ..
            }) => (*peer, *csid, *random),
            _ => return,
        };
        if csid.is_none() && !matches!(msg, CsToMaster::RegisterBegin(_) | CsToMaster::Nop) {
            self.close(
                conn,
                &format!("got command type {t} from unregistered chunk server"),
            );
            return;
        }
        match msg {
            CsToMaster::Nop => {}
            CsToMaster::RegisterBegin(b) => {
                if csid.is_some() {
                    self.close(conn, "second BEGIN");
                    return;
                }
                if let Some(code) = &self.cfg.auth_code {
                    match (b.auth, random) {
                        (None, _) => {
                            let rnd: [u8; 32] = rand::random();
                            if let Some(Conn {
                                state: ConnState::Cs { random, .. },
                                ..
                            }) = self.conns.get_mut(&conn)
                            {
                                *random = Some(rnd);
                            }
                            self.send(conn, MasterToCs::AuthChallenge(rnd).encode());
                            return;
                        }
                        (Some(d), Some(rnd))
                            if antler_protocol::auth::challenge_response(&rnd, code.as_bytes())
                                == d => {}
                        _ => {
                            self.close(
                                conn,
                                "CSTOMA_REGISTER (ver 6:BEGIN) - access denied - check password",
                            );
                            return;
                        }
                    }
                }
                if b.timeout > 0 && b.timeout < 10 {
                    self.close(conn, "communication timeout too small");
                    return;
                }
                let mut ip = if b.ip == 0 {
                    u32::from(*peer.ip())
                } else {
                    b.ip
                };
                if let Some(r) = self.cfg.remap {
                    ip = r.apply(ip);
                }
                if ip >> 24 == 127 {
                    self.close(conn, &format!("chunkserver connected using localhost (IP: {}) - you cannot use localhost for communication between chunkserver and master", ip_str(ip)));
                    return;
                }
                let id = match self.csdb.get(&(ip, b.port)) {
                    Some(&id) if self.cs_conn.contains_key(&id) => {
                        self.close(
                            conn,
                            &format!(
                                "can't accept chunkserver (ip: {} / port: {}): still connected",
                                ip_str(ip),
                                b.port
                            ),
                        );
                        return;
                    }
                    Some(&id) => id,
                    None => {
                        let id = self.next_csid;
                        self.next_csid += 1;
                        self.csdb.insert((ip, b.port), id);
                        id
                    }
                };
                let timeout = if b.timeout == 0 {
                    self.cfg.matocs_timeout
                } else {
                    b.timeout
                };
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.state = ConnState::Cs {
                        csid: Some(id),
                        random: None,
                    };
                    let _ = c
                        .stream
                        .set_read_timeout(Some(Duration::from_secs(timeout as u64)));
                }
                self.cs_conn.insert(id, conn);
                self.chunks.add_server(
                    id,
                    Server {
                        ip,
                        port: b.port,
                        version: b.version,
                        space: b.space,
                        ..Server::default()
                    },
                );
                info!("chunkserver register begin (ip: {} / port: {}, csid {id}), usedspace: {}, totalspace: {}", ip_str(ip), b.port, b.space.used, b.space.total);
                self.send(
                    conn,
                    MasterToCs::Ack(Accepted {
                        version: Some(VERSHEX),
                        timeout: Some(timeout),
                        csid: Some(id as u16),
                        metaid: Some(self.metaid),
                    })
                    .encode(),
                );
            }
            CsToMaster::RegisterChunks(list) => {
                let id = csid.unwrap_or_default();
                for (c, v) in list {
                    self.chunks.has_chunk(id, c, v, now);
                }
                self.send(
                    conn,
                    MasterToCs::Ack(Accepted {
                        version: None,
                        timeout: None,
                        csid: None,
                        metaid: None,
                    })
                    .encode(),
                );
            }
            CsToMaster::RegisterEnd => {
                if let Some(s) = csid.and_then(|id| self.chunks.servers.get_mut(&id)) {
                    s.registered = true;
                    info!(
                        "chunkserver register end (ip: {} / port: {})",
                        ip_str(s.ip),
                        s.port
                    );
                }
                self.broadcast_invalidate();
            }
            CsToMaster::RegisterDisconnect => {
                info!(%peer, "chunkserver graceful disconnection");
                self.close(conn, "graceful disconnection");
            }
            CsToMaster::Space(sp) => self.chunks.set_space(csid.unwrap_or_default(), sp),
            CsToMaster::ChunkDamaged(v) => {
                for c in v {
                    self.chunks.damaged(csid.unwrap_or_default(), c);
                }
            }
            CsToMaster::ChunkLost(v) => {
                for c in v {
                    self.chunks.lost(csid.unwrap_or_default(), c);
                }
            }
            CsToMaster::ChunkNew(v) => {
                for (c, ver) in v {
                    self.chunks.has_chunk(csid.unwrap_or_default(), c, ver, now);
                }
            }
            CsToMaster::Labels(m) => {
                if let Some(s) = csid.and_then(|id| self.chunks.servers.get_mut(&id)) {
                    s.labelmask = m;
                }
            }
            CsToMaster::CurrentLoad { .. } | CsToMaster::ErrorOccurred => {}
            CsToMaster::Status {
                kind,
                chunkid,
                status,
            } => {
                let id = csid.unwrap_or_default();
                if status != st::OK {
                    warn!(%peer, "chunk {chunkid:016X} {kind:?} status: {}", codes::status::name(status));
                }
                match kind {
                    StatusKind::Delete => self.chunks.delete_status(id, chunkid, status),
                    _ => self.chunks.op_status(id, chunkid, status),
                }
            }
            CsToMaster::ReplicateStatus {
                chunkid,
                version,
                status,
            } => {
                if status != st::OK {
                    warn!(%peer, "chunk {chunkid:016X} replication status: {}", codes::status::name(status));
                }
                self.chunks
                    .replicate_status(csid.unwrap_or_default(), chunkid, version, status)
            }
            other => debug!(%peer, "ignored chunkserver message {other:?}"),
        }
    }
}

// -------------------------------------------------------------------- threads

/// Accepts connections on `listener` and starts their reader and writer threads.
pub fn serve_listener(
    listener: TcpListener,
    link: Link,
    events: Sender<Event>,
    ids: Arc<AtomicU64>,
    shutdown: Arc<AtomicBool>,
    nop_every: Duration,
) {
    let _ = listener.set_nonblocking(true);
    while !shutdown.load(Ordering::Relaxed) {
        let (stream, peer) = match listener.accept() {
            Ok(x) => x,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
            Err(e) => {
                warn!("accept failed: {e}");
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        let std::net::SocketAddr::V4(peer) = peer else {
            continue;
        };
        let _ = stream.set_nonblocking(false);
        let _ = stream.set_nodelay(true);
        let conn = ids.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel::<Vec<u8>>();
        let (Ok(rd), Ok(wr), Ok(ctl)) =
            (stream.try_clone(), stream.try_clone(), stream.try_clone())
        else {
            continue;
        };
        let _ = rd.set_read_timeout(Some(Duration::from_secs(10)));
        if events
            .send(Event::Open {
                conn,
                link,
                peer,
                tx,
                stream: ctl,
            })
            .is_err()
        {
            return;
        }
        let ev = events.clone();
        let max = match link {
            Link::Client => cl::CLTOMA_MAXPACKETSIZE,
            Link::Chunkserver => codes::CSTOMA_MAXPACKETSIZE,
            Link::Metalogger => 1_500_000,
        };
        let nop = match link {
            Link::Client => Reply::with_msgid(codes::ANTOAN_NOP, 0).finish(),
            Link::Chunkserver | Link::Metalogger => Reply::new(codes::ANTOAN_NOP).finish(),
        };
        let _ = std::thread::Builder::new()
            .name(format!("rd-{conn}"))
            .spawn(move || reader(rd, conn, max, ev));
        let _ = std::thread::Builder::new()
            .name(format!("wr-{conn}"))
            .spawn(move || writer(wr, rx, nop, nop_every));
    }
}

fn reader(mut s: TcpStream, conn: ConnId, max: u32, events: Sender<Event>) {
    let mut r = std::io::BufReader::with_capacity(64 * 1024, &mut s);
    let reason = loop {
        let mut h = [0u8; 8];
        if let Err(e) = r.read_exact(&mut h) {
            break format!("read: {e}");
        }
        let hdr = match Header::decode(&h, max) {
            Ok(h) => h,
            Err(e) => {
                warn!(conn, "{e}; closing");
                break e.to_string();
            }
        };
        let mut payload = vec![0u8; hdr.len as usize];
        if let Err(e) = r.read_exact(&mut payload) {
            break format!("read: {e}");
        }
        if events
            .send(Event::Packet {
                conn,
                msg_type: hdr.msg_type,
                payload,
            })
            .is_err()
        {
            return;
        }
    };
    let _ = events.send(Event::Closed { conn, reason });
}

fn writer(mut s: TcpStream, rx: Receiver<Vec<u8>>, nop: Vec<u8>, every: Duration) {
    let mut sent_any = false;
    loop {
        match rx.recv_timeout(every) {
            Ok(mut pkt) => {
                // Coalesce what is already queued into one write.
                while let Ok(more) = rx.try_recv() {
                    pkt.extend_from_slice(&more);
                    if pkt.len() > 1 << 20 {
                        break;
                    }
                }
                if s.write_all(&pkt).is_err() {
                    break;
                }
                sent_any = true;
            }
            Err(RecvTimeoutError::Timeout) => {
                if sent_any && s.write_all(&nop).is_err() {
                    break;
                }
            }
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    let _ = s.shutdown(Shutdown::Both);
}

/// Runs the core loop until `shutdown` is set, then hands the core back (for the final
/// metadata dump). Every hour the changelog is rotated; every METADATA_SAVE_FREQ hours
/// the state is dumped to `metadata.mfs.back` by a background writer thread (the image
/// is built on the core thread, the file is written off it).
pub fn run_core(
    mut core: Core,
    events: Receiver<Event>,
    shutdown: Arc<AtomicBool>,
    loop_min_time: u32,
) -> Core {
    let mut last_tick = Instant::now();
    let mut last_rotation = Instant::now();
    let mut rotations = 0u32;
    let mut writer: Option<std::thread::JoinHandle<()>> = None;
    while !shutdown.load(Ordering::Relaxed) {
        match events.recv_timeout(Duration::from_millis(100)) {
            Ok(ev) => {
                // Everything already queued forms one batch: one changelog write (and
                // sync), then all the answers.
                core.process(ev);
                let mut n = 1;
                while n < 256 {
                    match events.try_recv() {
                        Ok(ev) => core.process(ev),
                        Err(_) => break,
                    }
                    n += 1;
                }
                core.flush();
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        if last_tick.elapsed() >= Duration::from_millis(200) {
            last_tick = Instant::now();
            // One full pass over the chunks takes at least loop_min_time, at most
            // max_cps chunks a second.
            let n = core.chunks.map.len();
            let per_tick = (n / (loop_min_time.max(1) as usize * 5)).max(100);
            let cap = (core.chunks.params.max_cps as usize / 5).max(1);
            core.tick(unix_now(), per_tick.min(cap));
        }
        if std::mem::take(&mut core.save_soon) {
            if let Some(w) = writer.take() {
                let _ = w.join();
            }
            writer = core.periodic_save(true);
        }
        if last_rotation.elapsed() >= Duration::from_secs(3600) {
            last_rotation = Instant::now();
            rotations += 1;
            let dump = rotations.is_multiple_of(core.cfg.metadata_save_freq.max(1));
            if let Some(w) = writer.take() {
                let _ = w.join();
            }
            writer = core.periodic_save(dump);
        }
    }
    if let Some(w) = writer.take() {
        let _ = w.join();
    }
    core
}

impl Core {
    /// Rotates the changelog and, with `dump`, starts writing `metadata.mfs.back` in a
    /// background thread (returned). The image and the rotation happen together, so the
    /// new `changelog.0.mfs` starts exactly at the dump's version.
    pub fn periodic_save(&mut self, dump: bool) -> Option<std::thread::JoinHandle<()>> {
        self.flush();
        let bytes = dump.then(|| self.to_image().encode());
        if let Some(c) = &mut self.changelog {
            if let Err(e) = c.rotate() {
                error!("can't rotate changelog: {e}");
            }
        }
        self.to_metaloggers(antler_protocol::matoml::log_rotate());
        let bytes = bytes?;
        let dir = self.cfg.data_path.clone();
        let keep = self.cfg.back_meta_keep_previous;
        let version = self.version;
        std::thread::Builder::new()
            .name("bgsaver".into())
            .spawn(move || {
                let t = Instant::now();
                match crate::metadata::write_back(&dir, &bytes, keep) {
                    Ok(()) => info!(
                        version,
                        bytes = bytes.len(),
                        ms = t.elapsed().as_millis() as u64,
                        "metadata saved to metadata.mfs.back"
                    ),
                    Err(e) => error!("can't save metadata to {}: {e}", dir.display()),
                }
            })
            .ok()
    }
}

// ------------------------------------------------------------------ metaloggers

impl Core {
    /// Sends `pkt` to every registered metalogger.
    fn to_metaloggers(&self, pkt: Vec<u8>) {
        for c in self.conns.values() {
            if let ConnState::Ml {
                registered: true, ..
            } = c.state
            {
                let _ = c.tx.send(pkt.clone());
            }
        }
    }

    /// Streams journaled changes (versions `first`, `first + 1`, ...) to the metaloggers.
    fn feed_metaloggers(&self, first: u64, journal: &[(u32, String)]) {
        let any = self.conns.values().any(|c| {
            matches!(
                c.state,
                ConnState::Ml {
                    registered: true,
                    ..
                }
            )
        });
        if !any {
            return;
        }
        for (i, (ts, body)) in journal.iter().enumerate() {
            self.to_metaloggers(antler_protocol::matoml::changes_log(
                first + i as u64,
                &format!("{ts}|{body}"),
            ));
        }
    }

    fn ml_packet(&mut self, conn: ConnId, t: u32, p: &[u8]) {
        use antler_protocol::matoml::{self as ml, MlToMaster};
        let msg = match MlToMaster::decode(t, p) {
            Ok(m) => m,
            Err(e) => return self.close(conn, &format!("metalogger: {e}")),
        };
        let data = self.cfg.data_path.clone();
        let Some(Conn {
            state:
                ConnState::Ml {
                    registered,
                    upload,
                    chain,
                },
            peer,
            tx,
            ..
        }) = self.conns.get_mut(&conn)
        else {
            return;
        };
        let read = |name: &str| std::fs::read(data.join(name)).ok().map(Arc::new);
        match msg {
            MlToMaster::Nop => {}
            MlToMaster::Register {
                version,
                timeout,
                next_version,
            } => {
                if *registered {
                    let why = "metalogger registered twice";
                    return self.close(conn, why);
                }
                *registered = true;
                // Nothing is replayed from memory: a metalogger asking for old changes
                // (version-2 form) sees a gap and downloads the metadata again.
                info!(peer = %peer, version = %antler_protocol::version::version_str(version), timeout, ?next_version, "metalogger registered");
            }
            MlToMaster::DownloadStart { file } => {
                let size = match file {
                    1 => {
                        *upload = read("metadata.mfs.back");
                        *chain = [read("changelog.0.mfs"), read("changelog.1.mfs")];
                        upload.as_ref().map(|u| u.len() as u64)
                    }
                    11 | 12 => {
                        *upload = chain[(file - 11) as usize].take();
                        Some(upload.as_ref().map_or(0, |u| u.len() as u64))
                    }
                    other => {
                        let why = format!("metalogger asked for unknown file {other}");
                        return self.close(conn, &why);
                    }
                };
                debug!(peer = %peer, file, ?size, "metalogger download");
                let _ = tx.send(ml::download_info(size));
            }
            MlToMaster::DownloadRequest { offset, leng } => {
                let Some(u) = upload.as_ref() else {
                    return self.close(conn, "metalogger: download request without a file");
                };
                let start = (offset as usize).min(u.len());
                let end = start.saturating_add(leng as usize).min(u.len());
                if end - start != leng as usize {
                    let why = format!("metalogger: request beyond the end ({offset}+{leng})");
                    return self.close(conn, &why);
                }
                let _ = tx.send(ml::download_data(offset, &u[start..end]));
            }
            MlToMaster::DownloadEnd => *upload = None,
        }
    }
}

/// A GETTRASH / GETSUSTAINED answer: `nleng:8 name inode:32` per entry.
fn detached_list(t: u32, msgid: u32, entries: Vec<(Vec<u8>, u32)>) -> Vec<u8> {
    let mut r = Reply::with_msgid(t, msgid);
    for (name, ino) in entries {
        r = r.u8(name.len() as u8).bytes(&name).u32(ino);
    }
    r.finish()
}

/// What a meta session may send besides keep-alives and registration.
fn meta_allowed(q: &ClRequest) -> bool {
    use ClRequest as Q;
    matches!(
        q,
        Q::Statfs { .. }
            | Q::GetTrash { .. }
            | Q::GetSustained { .. }
            | Q::GetDetachedAttr { .. }
            | Q::GetTrashPath { .. }
            | Q::SetTrashPath { .. }
            | Q::Undel { .. }
            | Q::Purge { .. }
            | Q::SustainedInodes(_)
            | Q::AmtimeInodes(_)
    )
}
