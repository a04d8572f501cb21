//! The daemon's core: one resource on one node. It owns the local copy, the role, the
//! connection to the peer and the resync, and offers the block operations the FUSE
//! adapter calls (`read`, `write`, `discard`, `flush`).
//!
//! Ordering: every write and every resync read holds its byte range (a [`RangeLocks`]
//! lock) around "touch the local copy + queue the frame", so overlapping operations
//! reach the peer in the order they happened locally while disjoint ones run at the
//! same time. The receiving side applies bulk frames on a few threads, again holding
//! each frame's range, so overlapping frames apply in arrival order; every other frame
//! waits until the bulk frames before it are applied. Block operations complete
//! through a [`Done`] callback, so the FUSE threads
//! never wait for the network: with protocol C the callback runs when the peer's
//! (cumulative) ack arrives; a lost connection marks the unacknowledged ranges dirty and
//! (with fencing) runs the fence-peer handler before any of them completes.

use crate::acks::Acks;
use crate::al::ActivityLog;
use crate::config::{Config, Protocol};
use crate::frame::{DiskState, Frame, Payload};
use crate::gi::JUST_CREATED;
use crate::handshake::{plan, Plan, View};
use crate::hooks::{self, HookEnv};
use crate::meta::Meta;
use crate::outbox::{Outbox, Wait};
use crate::ranges::{RangeGuard, RangeLocks};
use crate::status::Status;
use crate::store::{Store, StoreError, BLOCK};
use crate::wire::{auth_ok, auth_response, read_frame, read_frame_into, ReadError};
use std::collections::BTreeMap;
use std::io::{BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tracing::{debug, error, info, info_span, warn};

/// Completion of a block operation; called exactly once, from whichever thread finishes it.
pub type Done = Box<dyn FnOnce(std::io::Result<()>) + Send>;

/// Connection state, as DRBD names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CState {
    /// Not trying to connect.
    StandAlone,
    /// Waiting for the peer.
    WFConnection,
    /// Connected, in sync.
    Connected,
    /// Connected, sending a resync.
    SyncSource,
    /// Connected, receiving a resync.
    SyncTarget,
}

/// Largest amount of queued, unsent replication bytes before writers wait.
const MAX_QUEUED: u64 = 64 << 20;
/// Largest amount of resync data in flight (sent, not acknowledged).
const MAX_RESYNC_INFLIGHT: u64 = 64 << 20;
/// Largest resync / verify request.
const RUN_BLOCKS: u64 = 256;
/// Extents the activity log takes in after a missed one (streaming writes).
const AL_READ_AHEAD: u32 = 7;
/// Most finished requests the reader holds back one cumulative ack for while it has more
/// input buffered (appliers acknowledge at once).
const ACK_BATCH: u32 = 16;
/// Threads applying received bulk frames (writes and resync data) at once.
const APPLIERS: usize = 4;
/// Most received bulk frames being applied at once (a bound on the memory they hold).
const MAX_APPLYING: usize = 32;

struct Conn {
    out: Arc<Outbox>,
    stream: TcpStream,
}

impl Drop for Conn {
    fn drop(&mut self) {
        // Nothing queued will leave any more: writers must not wait for it.
        self.out.close();
    }
}

/// A received bulk frame for an applier thread, holding its range until applied.
struct Job<'a> {
    frame: Frame,
    range: RangeGuard<'a>,
}

#[derive(Default, Clone, Copy)]
struct Counters {
    sent: u64,
    received: u64,
    written: u64,
    read: u64,
}

struct Resync {
    total_blocks: u64,
    started: Instant,
    done_blocks: u64,
    inflight: u64,
    since_persist: u64,
}

/// Mutable state, under one lock.
struct State {
    meta: Meta,
    al: ActivityLog,
    primary: bool,
    promoted_at: u64,
    want_connect: bool,
    cstate: CState,
    conn: Option<Conn>,
    conn_gen: u64,
    peer: Option<(bool, DiskState)>,
    next_seq: u64,
    acked: u64,
    pending: BTreeMap<u64, (u64, u64)>,
    /// Completions waiting for the peer's ack of their sequence number.
    waiters: BTreeMap<u64, Done>,
    counters: Counters,
    resync: Option<Resync>,
    note: Option<String>,
    fencing: bool,
    device: Option<String>,
    verify_tx: Option<mpsc::Sender<(u64, Vec<u32>)>>,
    bitmap_dirty: bool,
    stopping: bool,
    /// The connection is being closed on purpose to redo the handshake.
    renegotiate: bool,
}

/// A node's resource.
pub struct Node {
    /// Configuration, seen from this node.
    pub cfg: Config,
    store: Store,
    st: Mutex<State>,
    cv: Condvar,
    /// Ranges being written locally and queued, or read for a resync or verify.
    ranges: RangeLocks,
    /// Storage of applied bulk frames, for the next ones (reused memory stays mapped).
    spare: Mutex<Vec<Payload>>,
    /// A writer waits for the outbox to drain (the sender then wakes the condvar).
    throttled: AtomicBool,
}

/// Why an operator request was refused.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(1)
        .max(1)
}

fn fresh_gi() -> u64 {
    loop {
        let g: u64 = rand::random::<u64>() & !1;
        if g > JUST_CREATED {
            return g;
        }
    }
}

impl Node {
    /// Opens the local copy. A copy left behind by a crashed primary marks its
    /// activity-log extents out of sync.
    pub fn open(cfg: Config) -> Result<Arc<Node>, StoreError> {
        let store = Store::open(&cfg.me.disk, &cfg.me.meta)?;
        let mut meta = store.load_meta()?;
        if meta.was_primary {
            warn!(
                extents = meta.al.len(),
                "this node was Primary when it stopped: marking its activity log out of sync"
            );
            for e in meta.al.clone() {
                let off = e as u64 * crate::al::EXTENT;
                if off < meta.size {
                    let len = crate::al::EXTENT.min(meta.size - off);
                    meta.bitmap.set_range(off, len);
                }
            }
            meta.al.clear();
            meta.was_primary = false;
            meta.gi.current |= 1;
            store.save_meta(&meta)?;
        }
        let device_extents = meta.size.div_ceil(crate::al::EXTENT).min(u32::MAX as u64) as u32;
        let al = ActivityLog::new(cfg.al_extents as usize)
            .with_read_ahead(AL_READ_AHEAD, device_extents);
        Ok(Arc::new(Node {
            st: Mutex::new(State {
                meta,
                al,
                primary: false,
                promoted_at: 0,
                want_connect: true,
                cstate: CState::WFConnection,
                conn: None,
                conn_gen: 0,
                peer: None,
                next_seq: 1,
                acked: 0,
                pending: BTreeMap::new(),
                waiters: BTreeMap::new(),
                counters: Counters::default(),
                resync: None,
                note: None,
                fencing: false,
                device: None,
                verify_tx: None,
                bitmap_dirty: false,
                stopping: false,
                renegotiate: false,
            }),
            store,
            cfg,
            cv: Condvar::new(),
            ranges: RangeLocks::new(0),
            spare: Mutex::new(Vec::new()),
            throttled: AtomicBool::new(false),
        }))
    }

    /// Device size in bytes.
    pub fn size(&self) -> u64 {
        self.store.size()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.st.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits on the state condvar for at most `ms` milliseconds.
    fn wait<'a>(&self, st: MutexGuard<'a, State>, ms: u64) -> MutexGuard<'a, State> {
        self.cv
            .wait_timeout(st, Duration::from_millis(ms))
            .unwrap_or_else(|p| p.into_inner())
            .0
    }

    /// Writes what `out` holds (see [`Outbox::flush`]) and wakes throttled writers.
    fn pump(&self, out: &Outbox, wait: Wait) {
        out.flush(wait);
        self.unthrottle();
    }

    fn unthrottle(&self) {
        if self.throttled.swap(false, Ordering::Relaxed) {
            self.cv.notify_all();
        }
    }

    fn persist(&self, st: &mut State) {
        if let Err(e) = self.store.save_meta(&st.meta) {
            error!("cannot write metadata: {e}");
        }
        st.bitmap_dirty = false;
    }

    fn send(&self, st: &mut State, f: &Frame) -> bool {
        self.send_bytes(st, f.encode())
    }

    /// Queues a frame for the sender thread (the path for everything but bulk data
    /// and acks, which their threads write themselves).
    fn send_bytes(&self, st: &mut State, b: Vec<u8>) -> bool {
        let Some(c) = &st.conn else { return false };
        let Some(n) = c.out.push_owned(b) else {
            return false;
        };
        c.out.wake();
        st.counters.sent += n as u64;
        true
    }

    /// Queues a frame without waking anyone; returns the outbox the caller flushes
    /// once it has dropped its locks.
    fn queue(&self, st: &mut State, encode: impl FnOnce(&mut Vec<u8>)) -> Option<Arc<Outbox>> {
        let c = st.conn.as_ref()?;
        let n = c.out.push_with(encode)?;
        st.counters.sent += n as u64;
        Some(Arc::clone(&c.out))
    }

    /// [`Node::queue`] for a whole frame.
    fn queue_frame(&self, st: &mut State, f: &Frame) -> Option<Arc<Outbox>> {
        self.queue(st, |b| b.extend_from_slice(&f.encode()))
    }

    fn hook_env(&self) -> HookEnv<'_> {
        HookEnv {
            resource: &self.cfg.name,
            node: &self.cfg.me.name,
            peer: &self.cfg.peer.name,
            peer_address: self.cfg.peer.address.to_string(),
        }
    }

    // ---------------------------------------------------------------- block operations

    /// Reads from the local copy.
    pub fn read(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        self.store.read_at(buf, offset)?;
        self.lock().counters.read += buf.len() as u64;
        Ok(())
    }

    /// Waits until replication has room and no fencing is in progress; then records the
    /// range in the activity log (persisting it first when it changed).
    fn admit(&self, offset: u64, len: u64) -> std::io::Result<()> {
        let mut st = self.lock();
        loop {
            if !st.primary {
                return Err(std::io::Error::from_raw_os_error(libc::EROFS));
            }
            let queued = st.conn.as_ref().map(|c| c.out.queued()).unwrap_or(0);
            if !st.fencing && queued < MAX_QUEUED {
                break;
            }
            self.throttled.store(true, Ordering::Relaxed);
            st = self.wait(st, 100);
        }
        if st.al.touch(offset, len) {
            st.meta.al = st.al.extents();
            st.meta.was_primary = true;
            self.persist(&mut st);
        }
        Ok(())
    }

    /// Applies a write or discard locally and queues it for the peer; `done` runs when
    /// the operation is complete (protocol C: when the peer has acknowledged it).
    fn replicate(
        &self,
        offset: u64,
        len: u64,
        local: impl FnOnce() -> std::io::Result<()>,
        frame: impl FnOnce(&mut Vec<u8>, u64),
        done: Done,
    ) {
        if offset.checked_add(len).is_none_or(|e| e > self.size()) {
            return done(Err(std::io::Error::from_raw_os_error(libc::EINVAL)));
        }
        if let Err(e) = self.admit(offset, len) {
            return done(Err(e));
        }
        let range = self.ranges.lock(offset, len);
        if let Err(e) = local() {
            return done(Err(e));
        }
        let mut st = self.lock();
        st.counters.written += len;
        let seq = st.next_seq;
        if let Some(out) = self.queue(&mut st, |b| frame(b, seq)) {
            st.next_seq += 1;
            st.pending.insert(seq, (offset, len));
            let done = if self.cfg.protocol == Protocol::C {
                st.waiters.insert(seq, done);
                None
            } else {
                Some(done)
            };
            drop(st);
            drop(range);
            self.pump(&out, Wait::Block);
            if let Some(done) = done {
                done(Ok(()));
            }
            return;
        }
        st.meta.bitmap.set_range(offset, len);
        st.bitmap_dirty = true;
        if self.must_wait_for_fence(&st) {
            // The connection is being lost (its outbox closed, `lost` not done yet) or the
            // peer is being fenced: like an unacknowledged write, this one completes only
            // after the fence-peer handler, when `lost` completes the waiters.
            let seq = st.next_seq;
            st.next_seq += 1;
            st.waiters.insert(seq, done);
            return;
        }
        drop(st);
        done(Ok(()))
    }

    /// True while a lost connection has not been handled yet or the peer is being
    /// fenced: with fencing, nothing may complete locally during that time.
    fn must_wait_for_fence(&self, st: &State) -> bool {
        self.cfg.fencing && (st.conn.is_some() || st.fencing)
    }

    /// A block write; `done` runs when both copies have it (protocol C).
    pub fn write(&self, offset: u64, data: &[u8], done: Done) {
        self.replicate(
            offset,
            data.len() as u64,
            || self.store.write_at(data, offset),
            |b, seq| crate::frame::encode_data_into(b, seq, offset, data),
            done,
        )
    }

    /// A discard or write-zeroes, replicated.
    pub fn discard(&self, offset: u64, len: u64, zero: bool, done: Done) {
        self.replicate(
            offset,
            len,
            || self.store.discard(offset, len, zero),
            |b, seq| {
                b.extend_from_slice(
                    &Frame::Discard {
                        seq,
                        offset,
                        len,
                        zero,
                    }
                    .encode(),
                )
            },
            done,
        )
    }

    /// A flush: local data stable (synchronously, in the caller's thread), and with
    /// protocol C the peer's too; `done` runs when both are.
    pub fn flush(&self, done: Done) {
        let w = {
            let mut st = self.lock();
            while st.fencing {
                st = self.wait(st, 100);
            }
            let seq = st.next_seq;
            self.queue_frame(&mut st, &Frame::Flush { seq }).map(|out| {
                st.next_seq += 1;
                (seq, st.conn_gen, out)
            })
        };
        let w = w.map(|(seq, gen, out)| {
            self.pump(&out, Wait::Block);
            (seq, gen)
        });
        if let Err(e) = self.store.sync() {
            return done(Err(e));
        }
        let mut st = self.lock();
        if st.bitmap_dirty {
            self.persist(&mut st);
        }
        match w {
            // Not acknowledged yet, and either still connected or the loss is still
            // being handled (fencing): `lost` or the ack completes it.
            Some((seq, gen))
                if self.cfg.protocol == Protocol::C
                    && (st.conn_gen == gen && st.acked < seq
                        || st.conn_gen != gen && st.fencing) =>
            {
                st.waiters.insert(seq, done);
            }
            // Not sent because the connection is being lost or fenced: as in `replicate`.
            None if self.must_wait_for_fence(&st) => {
                let seq = st.next_seq;
                st.next_seq += 1;
                st.waiters.insert(seq, done);
            }
            _ => {
                drop(st);
                done(Ok(()))
            }
        }
    }

    // ---------------------------------------------------------------- connection

    /// Runs the connection loop for ever (its own thread).
    pub fn run_connector(self: &Arc<Self>, listener: TcpListener) {
        let dialer = self.cfg.me.name < self.cfg.peer.name;
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        loop {
            {
                let mut st = self.lock();
                if st.stopping {
                    return;
                }
                if !st.want_connect {
                    st.cstate = CState::StandAlone;
                    drop(st);
                    // Refuse whoever dials meanwhile.
                    while let Ok((s, _)) = listener.accept() {
                        drop(s);
                    }
                    std::thread::sleep(Duration::from_millis(200));
                    continue;
                }
                st.cstate = CState::WFConnection;
            }
            let stream = if dialer {
                match TcpStream::connect_timeout(&self.cfg.peer.address, Duration::from_secs(2)) {
                    Ok(s) => Some(s),
                    Err(e) => {
                        debug!("connect to {}: {e}", self.cfg.peer.address);
                        std::thread::sleep(Duration::from_millis(500));
                        None
                    }
                }
            } else {
                match listener.accept() {
                    Ok((s, from)) => {
                        debug!("connection from {from}");
                        Some(s)
                    }
                    Err(_) => {
                        std::thread::sleep(Duration::from_millis(100));
                        None
                    }
                }
            };
            if let Some(s) = stream {
                let span =
                    info_span!("peer", node = %self.cfg.peer.name, addr = %self.cfg.peer.address);
                let _e = span.enter();
                self.session(s);
            }
        }
    }

    fn session(self: &Arc<Self>, s: TcpStream) {
        let _ = s.set_nonblocking(false);
        let _ = s.set_nodelay(true);
        let _ = s.set_read_timeout(Some(self.cfg.timeout));
        let _ = s.set_write_timeout(Some(self.cfg.timeout));
        let mut r = match s.try_clone() {
            Ok(r) => std::io::BufReader::with_capacity(1 << 20, r),
            Err(e) => {
                warn!("socket: {e}");
                return;
            }
        };
        let mut w = match s.try_clone() {
            Ok(w) => w,
            Err(_) => return,
        };
        let gen = match self.handshake(&mut r, &mut w, &s) {
            Ok(Some(g)) => g,
            Ok(None) => return,
            Err(e) => {
                warn!("handshake failed: {e}");
                let _ = s.shutdown(Shutdown::Both);
                return;
            }
        };
        let reason = self.receive_loop(&mut r, gen);
        self.lost(gen, &reason);
    }

    fn refuse(&self, reason: String, s: &TcpStream) {
        error!("{reason}");
        let mut st = self.lock();
        st.want_connect = false;
        st.note = Some(reason);
        let _ = s.shutdown(Shutdown::Both);
    }

    fn view(&self, st: &State) -> View {
        View {
            node: self.cfg.me.name.clone(),
            gi: st.meta.gi,
            primary: st.primary,
            disk: st.meta.disk,
            dirty: st.meta.bitmap.count(),
            promoted_at: st.promoted_at,
        }
    }

    fn state_frame(&self, st: &State) -> Frame {
        Frame::State {
            current: st.meta.gi.current,
            bitmap: st.meta.gi.bitmap,
            history: st.meta.gi.history,
            primary: st.primary,
            disk: st.meta.disk,
            dirty: st.meta.bitmap.count(),
            promoted_at: st.promoted_at,
        }
    }

    /// Hello, authentication, state exchange, plan, bitmaps. Returns the connection
    /// generation when connected.
    fn handshake(
        self: &Arc<Self>,
        r: &mut impl std::io::Read,
        w: &mut TcpStream,
        s: &TcpStream,
    ) -> Result<Option<u64>, ReadError> {
        let challenge: [u8; 32] = rand::random();
        w.write_all(
            &Frame::Hello {
                node: self.cfg.me.name.clone(),
                size: self.size(),
                challenge,
            }
            .encode(),
        )?;
        let (peer_challenge, peer_size) = match read_frame(r)?.0 {
            Frame::Hello {
                node,
                size,
                challenge,
            } => {
                if node != self.cfg.peer.name {
                    self.refuse(
                        format!(
                            "peer at {} calls itself '{node}', expected '{}'",
                            self.cfg.peer.address, self.cfg.peer.name
                        ),
                        s,
                    );
                    return Ok(None);
                }
                (challenge, size)
            }
            f => {
                warn!("expected Hello, got {f:?}: closing");
                return Ok(None);
            }
        };
        w.write_all(
            &Frame::Auth {
                response: auth_response(&self.cfg.secret, &peer_challenge, &self.cfg.me.name),
            }
            .encode(),
        )?;
        match read_frame(r)?.0 {
            Frame::Auth { response }
                if auth_ok(&self.cfg.secret, &challenge, &self.cfg.peer.name, &response) => {}
            Frame::Auth { .. } => {
                self.refuse(
                    format!(
                        "peer {} ({}) failed authentication: shared_secret differs",
                        self.cfg.peer.name, self.cfg.peer.address
                    ),
                    s,
                );
                return Ok(None);
            }
            f => {
                warn!("expected Auth, got {f:?}: closing");
                return Ok(None);
            }
        }
        if peer_size != self.size() {
            self.refuse(
                format!(
                    "device sizes differ: {} bytes here, {peer_size} on {}: refusing to connect",
                    self.size(),
                    self.cfg.peer.name
                ),
                s,
            );
            return Ok(None);
        }
        // Exchange state.
        let mine = {
            let st = self.lock();
            w.write_all(&self.state_frame(&st).encode())?;
            self.view(&st)
        };
        let peer = match read_frame(r)?.0 {
            Frame::State {
                current,
                bitmap,
                history,
                primary,
                disk,
                dirty,
                promoted_at,
            } => View {
                node: self.cfg.peer.name.clone(),
                gi: crate::gi::Gi {
                    current,
                    bitmap,
                    history,
                },
                primary,
                disk,
                dirty,
                promoted_at,
            },
            f => {
                warn!("expected State, got {f:?}: closing");
                return Ok(None);
            }
        };
        let p = plan(&self.cfg.policies, &mine, &peer);
        info!(me = ?mine.gi, peer = ?peer.gi, "connect: {p:?}");
        match p {
            Plan::Refuse(reason) => {
                self.refuse(reason, s);
                Ok(None)
            }
            Plan::SplitBrain(reason) => {
                self.refuse(reason, s);
                if let Some(h) = &self.cfg.handlers.split_brain {
                    let env = self.hook_env();
                    hooks::run("split-brain", h, &env, Duration::from_secs(60));
                }
                Ok(None)
            }
            Plan::InSync => {
                let out = Arc::new(Outbox::new(w.try_clone()?));
                let mut st = self.lock();
                if peer.disk == DiskState::UpToDate && st.meta.disk != DiskState::Inconsistent {
                    st.meta.disk = DiskState::UpToDate;
                }
                if st.meta.disk == DiskState::UpToDate && peer.disk == DiskState::UpToDate {
                    st.meta.gi.clear_bitmap();
                    st.meta.peer_outdated = false;
                }
                self.persist(&mut st);
                let gen = self.connected(&mut st, Arc::clone(&out), s, &peer, CState::Connected);
                drop(st);
                self.spawn_sender(out);
                Ok(Some(gen))
            }
            Plan::Resync {
                source,
                full,
                after_split_brain,
            } => {
                if after_split_brain {
                    warn!(
                        "split brain resolved by policy: {} becomes sync {}",
                        self.cfg.me.name,
                        if source {
                            "source"
                        } else {
                            "target (its changes are discarded)"
                        }
                    );
                }
                // Bitmaps both ways.
                let words = {
                    let st = self.lock();
                    st.meta.bitmap.words().to_vec()
                };
                for (i, c) in words.chunks(65_536).enumerate() {
                    w.write_all(
                        &Frame::Bitmap {
                            first: (i * 65_536) as u64,
                            words: c.to_vec(),
                        }
                        .encode(),
                    )?;
                }
                let mut theirs = vec![0u64; words.len()];
                let mut got = 0usize;
                while got < words.len() {
                    match read_frame(r)?.0 {
                        Frame::Bitmap { first, words: ws } => {
                            let f = first as usize;
                            if f != got || f + ws.len() > theirs.len() {
                                warn!("bitmap frame out of place: closing");
                                return Ok(None);
                            }
                            theirs[f..f + ws.len()].copy_from_slice(&ws);
                            got += ws.len();
                        }
                        f => {
                            warn!("expected Bitmap, got {f:?}: closing");
                            return Ok(None);
                        }
                    }
                }
                let out = Arc::new(Outbox::new(w.try_clone()?));
                let mut st = self.lock();
                st.meta.bitmap.merge_words(&theirs);
                if full {
                    st.meta.bitmap.set_all();
                }
                if !source {
                    st.meta.disk = DiskState::Inconsistent;
                }
                self.persist(&mut st);
                let total = st.meta.bitmap.count();
                info!(
                    "resync as {}: {} KiB out of sync{}",
                    if source { "SyncSource" } else { "SyncTarget" },
                    total * 4,
                    if full { " (full)" } else { "" }
                );
                st.resync = Some(Resync {
                    total_blocks: total,
                    started: Instant::now(),
                    done_blocks: 0,
                    inflight: 0,
                    since_persist: 0,
                });
                let cs = if source {
                    CState::SyncSource
                } else {
                    CState::SyncTarget
                };
                let gen = self.connected(&mut st, Arc::clone(&out), s, &peer, cs);
                drop(st);
                self.spawn_sender(out);
                if source {
                    let me = Arc::clone(self);
                    std::thread::Builder::new()
                        .name("resync".into())
                        .spawn(move || me.resync_source(gen))
                        .expect("spawn resync");
                }
                Ok(Some(gen))
            }
        }
    }

    fn connected(
        &self,
        st: &mut State,
        out: Arc<Outbox>,
        s: &TcpStream,
        peer: &View,
        cs: CState,
    ) -> u64 {
        st.conn_gen += 1;
        st.conn = Some(Conn {
            out,
            stream: s.try_clone().expect("clone socket"),
        });
        st.cstate = cs;
        st.peer = Some((peer.primary, peer.disk));
        st.note = None;
        st.acked = st.next_seq - 1;
        if st.meta.peer_outdated && cs == CState::Connected {
            st.meta.peer_outdated = false;
        }
        info!("connected to {} ({cs:?})", self.cfg.peer.name);
        self.cv.notify_all();
        st.conn_gen
    }

    fn spawn_sender(self: &Arc<Self>, out: Arc<Outbox>) {
        let me = Arc::clone(self);
        let idle = self.cfg.timeout / 3;
        std::thread::Builder::new()
            .name("sender".into())
            .spawn(move || out.run_sender(idle, &Frame::Ping.encode(), || me.unthrottle()))
            .expect("spawn sender");
    }

    /// Reads and applies frames until the connection ends; returns why it ended. Bulk
    /// frames (writes, resync data) go to [`APPLIERS`] threads, each holding its range;
    /// any other frame first waits until every bulk frame before it is applied.
    fn receive_loop(&self, r: &mut BufReader<impl Read>, gen: u64) -> String {
        let ranges = RangeLocks::new(MAX_APPLYING);
        let acks = Mutex::new(Acks::new(ACK_BATCH));
        let failed = Mutex::new(None::<String>);
        let (tx, rx) = mpsc::channel::<Job<'_>>();
        let rx = Mutex::new(rx);
        std::thread::scope(|s| {
            for i in 0..APPLIERS {
                let (rx, acks, failed) = (&rx, &acks, &failed);
                std::thread::Builder::new()
                    .name(format!("apply-{i}"))
                    .spawn_scoped(s, move || loop {
                        let job = rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
                        let Ok(job) = job else { return };
                        self.run_job(job, acks, failed);
                    })
                    .expect("spawn applier");
            }
            let reason = self.read_frames(r, gen, &ranges, &acks, &failed, &tx);
            // The appliers finish what they hold (it is valid data), then exit.
            drop(tx);
            reason
        })
    }

    fn read_frames<'a>(
        &self,
        r: &mut BufReader<impl Read>,
        gen: u64,
        ranges: &'a RangeLocks,
        acks: &Mutex<Acks>,
        failed: &Mutex<Option<String>>,
        tx: &mpsc::Sender<Job<'a>>,
    ) -> String {
        let failure = || failed.lock().unwrap_or_else(|p| p.into_inner()).take();
        loop {
            if r.buffer().is_empty() {
                // About to wait for input: whatever finished is acknowledged now.
                self.flush_acks(acks);
            }
            let (f, n) = match read_frame_into(r, |len| self.storage(len)) {
                Ok(x) => x,
                // An applier's failure closed the connection: that is the reason.
                Err(e) => return failure().unwrap_or_else(|| self.read_failure(e)),
            };
            let primary = {
                let mut st = self.lock();
                if st.conn_gen != gen || st.conn.is_none() {
                    return "connection closed locally".into();
                }
                st.counters.received += n as u64;
                st.primary
            };
            if let Err(reason) = self.check_bulk(&f, primary) {
                return reason;
            }
            // Writes that go straight to the disk wait for it: an applier takes them.
            // Small ones only copy into the page cache: applied here, without a
            // thread switch, after any overlapping write still being applied.
            let bulk = match &f {
                Frame::Data { seq, offset, data } => {
                    acks.lock().unwrap_or_else(|p| p.into_inner()).arrived(*seq);
                    Some((*offset, data.len()))
                }
                Frame::ResyncData { offset, data } => Some((*offset, data.len())),
                _ => None,
            };
            let range = match bulk {
                Some((offset, len)) => {
                    let range = ranges.lock(offset, len as u64);
                    if self.store.is_direct(len, offset) {
                        let resync = matches!(f, Frame::ResyncData { .. });
                        let _ = tx.send(Job { frame: f, range });
                        if resync {
                            // Not a request: nothing may stay held behind a stream of them.
                            self.flush_acks(acks);
                        }
                        continue;
                    }
                    Some(range)
                }
                None => {
                    ranges.wait_idle();
                    None
                }
            };
            if let Some(reason) = failure() {
                return reason;
            }
            let applied = self.apply(f);
            drop(range);
            match applied {
                Err(reason) => return reason,
                Ok(Some((seq, status))) => {
                    let hold = !r.buffer().is_empty();
                    self.ack(acks, |a| {
                        if bulk.is_none() {
                            a.arrived(seq);
                        }
                        a.finished(seq, status, hold)
                    });
                }
                // Not a request (resync data, ping, state...): acknowledge what is held, so
                // a stream of such frames cannot keep a finished request waiting.
                Ok(None) => self.flush_acks(acks),
            }
        }
    }

    fn read_failure(&self, e: ReadError) -> String {
        match e {
            ReadError::Io(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                format!("peer silent for {:?} (timeout)", self.cfg.timeout)
            }
            ReadError::Io(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                "peer closed the connection".into()
            }
            e => e.to_string(),
        }
    }

    /// Applies one bulk frame (an applier thread), then acknowledges it.
    fn run_job(&self, job: Job<'_>, acks: &Mutex<Acks>, failed: &Mutex<Option<String>>) {
        match self.apply(job.frame) {
            Ok(Some((seq, status))) => self.ack(acks, |a| a.finished(seq, status, false)),
            Ok(None) => {}
            Err(reason) => {
                // The reader reports it: close the connection under it.
                *failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(reason);
                self.close_connection(&mut self.lock());
            }
        }
        drop(job.range);
    }

    /// Queues the acks `owed` computes, in order (an error ack must not be overtaken by
    /// a later cumulative one), and sends them without blocking.
    fn ack(&self, acks: &Mutex<Acks>, owed: impl FnOnce(&mut Acks) -> Vec<(u64, u32)>) {
        let out = {
            let mut a = acks.lock().unwrap_or_else(|p| p.into_inner());
            let mut out = None;
            for (seq, status) in owed(&mut a) {
                out = self
                    .queue_frame(&mut self.lock(), &Frame::Ack { seq, status })
                    .or(out);
            }
            out
        };
        if let Some(out) = out {
            // The reader shares this socket: nobody here may block on it.
            self.pump(&out, Wait::NoBlock);
        }
    }

    /// Storage for a received bulk frame's data: a spare one if there is one.
    fn storage(&self, len: usize) -> Payload {
        let spare = self.spare.lock().unwrap_or_else(|p| p.into_inner()).pop();
        match spare {
            Some(p) => p.resized(len),
            None => Payload::zeroed(len),
        }
    }

    /// Keeps an applied frame's storage for a later frame.
    fn recycle(&self, p: Payload) {
        let mut spare = self.spare.lock().unwrap_or_else(|p| p.into_inner());
        if spare.len() < MAX_APPLYING + 2 {
            spare.push(p);
        }
    }

    /// Sends the ack for successes held back, if any.
    fn flush_acks(&self, acks: &Mutex<Acks>) {
        self.ack(acks, |a| a.flush().into_iter().collect());
    }

    /// The checks a bulk frame passes before it is queued for an applier (`primary`:
    /// this node's role when the frame arrived).
    fn check_bulk(&self, f: &Frame, primary: bool) -> Result<(), String> {
        let (what, offset, len, aligned) = match f {
            Frame::Data { offset, data, .. } => ("Data", *offset, data.len() as u64, true),
            Frame::ResyncData { offset, data } => (
                "ResyncData",
                *offset,
                data.len() as u64,
                offset.is_multiple_of(BLOCK) && (data.len() as u64).is_multiple_of(BLOCK),
            ),
            _ => return Ok(()),
        };
        if primary {
            return Err(format!("protocol error: peer sent {what} to a Primary"));
        }
        if offset.checked_add(len).is_none_or(|e| e > self.size()) {
            return Err(format!(
                "protocol error: request beyond the device ({offset}+{len})"
            ));
        }
        if !aligned {
            return Err("protocol error: unaligned resync block".into());
        }
        Ok(())
    }

    /// Applies one frame; returns the (sequence, status) a request is owed an ack with.
    fn apply(&self, f: Frame) -> Result<Option<(u64, u32)>, String> {
        let status = |res: std::io::Result<()>| match res {
            Ok(()) => 0,
            Err(e) => {
                error!("local I/O failed on a replicated request: {e}");
                e.raw_os_error().unwrap_or(libc::EIO) as u32
            }
        };
        let secondary_only = |what: &str| -> Result<(), String> {
            if self.lock().primary {
                Err(format!("protocol error: peer sent {what} to a Primary"))
            } else {
                Ok(())
            }
        };
        let in_range = |off: u64, len: u64| -> Result<(), String> {
            if off.checked_add(len).is_none_or(|e| e > self.size()) {
                Err(format!(
                    "protocol error: request beyond the device ({off}+{len})"
                ))
            } else {
                Ok(())
            }
        };
        match f {
            // Bulk frames passed `check_bulk` before they were queued.
            Frame::Data { seq, offset, data } => {
                let res = self.store.write_at(&data, offset);
                self.lock().counters.written += data.len() as u64;
                self.recycle(data);
                return Ok(Some((seq, status(res))));
            }
            Frame::Discard {
                seq,
                offset,
                len,
                zero,
            } => {
                secondary_only("Discard")?;
                in_range(offset, len)?;
                let res = self.store.discard(offset, len, zero);
                return Ok(Some((seq, status(res))));
            }
            Frame::Flush { seq } => {
                let res = self.store.sync();
                if res.is_err() {
                    // Writes acknowledged before may not be stable here: this copy can no
                    // longer be trusted (as DRBD detaches a disk after an I/O error).
                    let mut st = self.lock();
                    st.meta.disk = DiskState::Inconsistent;
                    self.persist(&mut st);
                }
                return Ok(Some((seq, status(res))));
            }
            Frame::Ack { seq, status } => {
                let mut st = self.lock();
                if status != 0 {
                    error!(
                        "peer failed request {seq}: {}",
                        std::io::Error::from_raw_os_error(status as i32)
                    );
                    match st.pending.get(&seq) {
                        Some(&(off, len)) => st.meta.bitmap.set_range(off, len),
                        None => {
                            // A flush failed: any block the peer acknowledged may be lost
                            // there. Everything is resynced after a reconnect.
                            error!("the peer could not flush: all blocks marked out of sync, reconnecting");
                            st.meta.bitmap.set_all();
                            self.close_connection(&mut st);
                        }
                    }
                    st.bitmap_dirty = true;
                }
                st.acked = st.acked.max(seq);
                st.pending = st.pending.split_off(&(seq + 1));
                let later = st.waiters.split_off(&(seq + 1));
                let done = std::mem::replace(&mut st.waiters, later);
                if st.bitmap_dirty && !done.is_empty() {
                    // A peer error dirtied the bitmap: durable before anything completes.
                    self.persist(&mut st);
                }
                drop(st);
                for d in done.into_values() {
                    d(Ok(()));
                }
            }
            Frame::ResyncData { offset, data } => {
                let res = self.store.write_at(&data, offset);
                let len = data.len() as u64;
                self.recycle(data);
                let mut st = self.lock();
                if let Err(e) = res {
                    return Err(format!("local write failed during resync: {e}"));
                }
                st.counters.written += len;
                for b in offset / BLOCK..(offset + len) / BLOCK {
                    st.meta.bitmap.clear(b);
                }
                let persist = if let Some(rs) = &mut st.resync {
                    rs.done_blocks += len / BLOCK;
                    rs.since_persist += len;
                    if rs.since_persist >= 64 << 20 {
                        rs.since_persist = 0;
                        true
                    } else {
                        false
                    }
                } else {
                    false
                };
                if persist {
                    // Cleared bits are persisted only over data known to be stable.
                    if let Err(e) = self.store.sync() {
                        return Err(format!("local flush failed during resync: {e}"));
                    }
                    self.persist(&mut st);
                }
                self.send(
                    &mut st,
                    &Frame::ResyncAck {
                        offset,
                        len: len as u32,
                    },
                );
            }
            Frame::ResyncAck { offset, len } => {
                in_range(offset, len as u64)?;
                let mut st = self.lock();
                for b in offset / BLOCK..(offset + len as u64).div_ceil(BLOCK) {
                    st.meta.bitmap.clear(b);
                }
                if let Some(rs) = &mut st.resync {
                    rs.inflight = rs.inflight.saturating_sub(len as u64);
                    rs.done_blocks += len as u64 / BLOCK;
                }
                // Cleared bits need not be durable at once (a crash only resends those
                // blocks): the resync persists them every 64 MiB and at the end, instead
                // of one synchronous metadata write per acknowledged run.
                self.cv.notify_all();
            }
            Frame::ResyncDone {
                current,
                bitmap,
                history,
            } => {
                secondary_only("ResyncDone")?;
                self.store
                    .sync()
                    .map_err(|e| format!("local flush failed after resync: {e}"))?;
                let mut st = self.lock();
                let left = st.meta.bitmap.count();
                if left != 0 {
                    return Err(format!(
                        "protocol error: resync reported done with {left} blocks still out of sync here"
                    ));
                }
                st.meta.gi.adopt(&crate::gi::Gi {
                    current,
                    bitmap,
                    history,
                });
                st.meta.disk = DiskState::UpToDate;
                st.cstate = CState::Connected;
                if let Some(rs) = st.resync.take() {
                    info!(
                        "resync finished: {} KiB in {:.1?}",
                        rs.total_blocks * 4,
                        rs.started.elapsed()
                    );
                }
                self.persist(&mut st);
                let f = self.state_frame(&st);
                self.send(&mut st, &f);
            }
            Frame::State { primary, disk, .. } => {
                let mut st = self.lock();
                st.peer = Some((primary, disk));
            }
            Frame::Outdate => {
                let mut st = self.lock();
                if !st.primary && st.meta.disk == DiskState::UpToDate {
                    st.meta.disk = DiskState::Outdated;
                    self.persist(&mut st);
                }
            }
            Frame::VerifyReq { offset, len } => {
                in_range(offset, len as u64)?;
                if len as u64 > RUN_BLOCKS * BLOCK || !(len as u64).is_multiple_of(BLOCK) {
                    return Err("protocol error: bad verify request".into());
                }
                let crcs = self
                    .block_crcs(offset, len as u64)
                    .map_err(|e| format!("local read failed during verify: {e}"))?;
                let mut st = self.lock();
                self.send(&mut st, &Frame::VerifyReply { offset, crcs });
            }
            Frame::VerifyReply { offset, crcs } => {
                let st = self.lock();
                if let Some(tx) = &st.verify_tx {
                    let _ = tx.send((offset, crcs));
                }
            }
            Frame::Ping => {
                let mut st = self.lock();
                self.send(&mut st, &Frame::PingAck);
            }
            Frame::PingAck => {}
            f @ (Frame::Hello { .. } | Frame::Auth { .. } | Frame::Bitmap { .. }) => {
                return Err(format!(
                    "protocol error: unexpected {f:?} after the handshake"
                ))
            }
        }
        Ok(None)
    }

    fn block_crcs(&self, offset: u64, len: u64) -> std::io::Result<Vec<u32>> {
        let mut b = vec![0u8; len as usize];
        self.store.read_at(&mut b, offset)?;
        Ok(b.chunks(BLOCK as usize).map(crc32fast::hash).collect())
    }

    /// The connection `gen` ended: mark unacknowledged writes dirty, fence the peer if
    /// this node is primary, start a new generation.
    fn lost(&self, gen: u64, reason: &str) {
        let mut st = self.lock();
        if st.conn_gen != gen {
            return;
        }
        warn!("connection to {} lost: {reason}", self.cfg.peer.name);
        if let Some(c) = st.conn.take() {
            let _ = c.stream.shutdown(Shutdown::Both);
        }
        st.conn_gen += 1;
        st.peer = None;
        st.cstate = if st.want_connect {
            CState::WFConnection
        } else {
            CState::StandAlone
        };
        st.resync = None;
        st.verify_tx = None;
        let pending = std::mem::take(&mut st.pending);
        for (off, len) in pending.values() {
            st.meta.bitmap.set_range(*off, *len);
        }
        let renegotiate = std::mem::take(&mut st.renegotiate);
        if st.primary && !renegotiate {
            let fresh = fresh_gi();
            st.meta.gi.new_generation(fresh, true);
            let fence = self.cfg.fencing && !st.meta.peer_outdated && !st.stopping;
            if fence {
                st.fencing = true;
            }
            self.persist(&mut st);
            drop(st);
            if fence {
                let rc = self.cfg.handlers.fence_peer.as_deref().map(|h| {
                    hooks::run("fence-peer", h, &self.hook_env(), Duration::from_secs(60))
                });
                let mut st = self.lock();
                st.meta.peer_outdated = true;
                st.fencing = false;
                info!(
                    "peer {} marked Outdated (fence-peer handler: {rc:?})",
                    self.cfg.peer.name
                );
                self.persist(&mut st);
            }
        } else {
            self.persist(&mut st);
            drop(st);
        }
        // The unacknowledged ranges are marked dirty (and the peer fenced): complete them.
        let done = std::mem::take(&mut self.lock().waiters);
        for d in done.into_values() {
            d(Ok(()));
        }
        self.cv.notify_all();
    }

    /// Sends every out-of-sync block to the peer (its own thread), at `resync_rate`.
    fn resync_source(self: &Arc<Self>, gen: u64) {
        let rate = self.cfg.resync_rate as f64;
        let start = Instant::now();
        let mut sent = 0f64;
        let mut cursor = 0u64;
        let blocks = self.size() / BLOCK;
        loop {
            let mut st = self.lock();
            if st.conn_gen != gen {
                return;
            }
            let inflight = st.resync.as_ref().map(|r| r.inflight).unwrap_or(0);
            let next = st.meta.bitmap.next_dirty(cursor).filter(|b| *b < blocks);
            let Some(first) = next else {
                if st.meta.bitmap.count() > 0 {
                    if inflight == 0 {
                        cursor = 0;
                        continue;
                    }
                } else if inflight == 0 {
                    // Done.
                    let _ = self.store.sync();
                    let gi = st.meta.gi;
                    st.meta.gi.clear_bitmap();
                    st.meta.peer_outdated = false;
                    st.cstate = CState::Connected;
                    st.peer = st.peer.map(|(p, _)| (p, DiskState::UpToDate));
                    if let Some(rs) = st.resync.take() {
                        info!(
                            "resync finished: {} KiB in {:.1?}",
                            rs.total_blocks * 4,
                            rs.started.elapsed()
                        );
                    }
                    self.persist(&mut st);
                    self.send(
                        &mut st,
                        &Frame::ResyncDone {
                            current: gi.current,
                            bitmap: gi.bitmap,
                            history: gi.history,
                        },
                    );
                    return;
                }
                drop(self.wait(st, 50));
                continue;
            };
            if inflight >= MAX_RESYNC_INFLIGHT {
                drop(self.wait(st, 50));
                continue;
            }
            let mut n = 1;
            while n < RUN_BLOCKS && first + n < blocks && st.meta.bitmap.get(first + n) {
                n += 1;
            }
            drop(st);
            // Rate limit.
            let ahead = sent / rate - start.elapsed().as_secs_f64();
            if ahead > 0.0 {
                std::thread::sleep(Duration::from_secs_f64(ahead));
            }
            let len = n * BLOCK;
            let _range = self.ranges.lock(first * BLOCK, len);
            let buf = match crate::frame::encode_resync_with(first * BLOCK, len as usize, |b| {
                self.store.read_at(b, first * BLOCK)
            }) {
                Ok(b) => b,
                Err(e) => {
                    error!("resync read at {}: {e}", first * BLOCK);
                    return;
                }
            };
            let mut st = self.lock();
            if st.conn_gen != gen {
                return;
            }
            st.counters.read += len;
            if let Some(rs) = &mut st.resync {
                rs.inflight += len;
                rs.since_persist += len;
                if rs.since_persist >= 64 << 20 {
                    rs.since_persist = 0;
                    st.bitmap_dirty = true;
                }
            }
            if st.bitmap_dirty {
                self.persist(&mut st);
            }
            sent += len as f64;
            self.send_bytes(&mut st, buf);
            cursor = first + n;
        }
    }

    // ---------------------------------------------------------------- operator verbs

    fn close_connection(&self, st: &mut State) {
        if let Some(c) = &st.conn {
            let _ = c.stream.shutdown(Shutdown::Both);
        }
    }

    /// `primary [--force]`: checks whether this node may be promoted and records it. The
    /// caller then attaches the device.
    pub fn promote(&self, force: bool) -> Result<String, Refused> {
        let mut st = self.lock();
        if st.primary {
            return Ok("already Primary".into());
        }
        if let Some((true, _)) = st.peer {
            return Err(Refused(format!(
                "the peer {} is Primary: demote it first (no dual-primary)",
                self.cfg.peer.name
            )));
        }
        if st.cstate == CState::SyncTarget {
            return Err(Refused(
                "a resync to this node is running: its data is not usable yet".into(),
            ));
        }
        let refusal = st.meta.promotion_refusal();
        if let Some(r) = &refusal {
            if !force {
                return Err(Refused(format!(
                    "refusing to promote: {r} (use --force to override)"
                )));
            }
            warn!("forced promotion: {r}");
        }
        let connected = st.conn.is_some();
        let mut msg = "Primary".to_string();
        if !connected || refusal.is_some() {
            let fresh = fresh_gi();
            st.meta.gi.new_generation(fresh, true);
            st.promoted_at = unix_now();
        }
        st.meta.gi.current |= 1;
        if refusal.is_some() {
            st.meta.disk = DiskState::UpToDate;
            if connected {
                msg += " (forced: reconnecting so the peer resyncs from this node)";
                st.renegotiate = true;
                self.close_connection(&mut st);
            }
        }
        st.primary = true;
        st.meta.was_primary = true;
        self.persist(&mut st);
        let f = self.state_frame(&st);
        self.send(&mut st, &f);
        info!(
            "promoted to Primary{}",
            if force { " (--force)" } else { "" }
        );
        Ok(msg)
    }

    /// Reverts a promotion whose device could not be set up.
    pub fn abort_promotion(&self) {
        let mut st = self.lock();
        st.primary = false;
        st.meta.was_primary = false;
        self.persist(&mut st);
    }

    /// `secondary`: records the demotion (the caller detached the device first).
    pub fn demote(&self) {
        let mut st = self.lock();
        st.primary = false;
        st.device = None;
        st.al.clear();
        st.meta.al.clear();
        st.meta.was_primary = false;
        self.persist(&mut st);
        let f = self.state_frame(&st);
        self.send(&mut st, &f);
        info!("demoted to Secondary");
    }

    /// Whether this node is primary.
    pub fn is_primary(&self) -> bool {
        self.lock().primary
    }

    /// Records the device path shown in `status`.
    pub fn set_device(&self, d: Option<String>) {
        self.lock().device = d;
    }

    /// `connect`.
    pub fn connect(&self) -> String {
        let mut st = self.lock();
        st.want_connect = true;
        st.note = None;
        "connecting".into()
    }

    /// `disconnect`.
    pub fn disconnect(&self) -> String {
        let mut st = self.lock();
        st.want_connect = false;
        self.close_connection(&mut st);
        "disconnected".into()
    }

    /// `outdate`: marks a disconnected secondary's data Outdated.
    pub fn outdate(&self) -> Result<String, Refused> {
        let mut st = self.lock();
        if st.primary {
            return Err(Refused("cannot outdate a Primary".into()));
        }
        if st.conn.is_some() {
            return Err(Refused(
                "connected: the peer keeps this node up to date; disconnect first".into(),
            ));
        }
        if st.meta.disk == DiskState::UpToDate || st.meta.disk == DiskState::Consistent {
            st.meta.disk = DiskState::Outdated;
            self.persist(&mut st);
        }
        Ok(format!("disk is {:?}", st.meta.disk))
    }

    /// `invalidate`: discards this secondary's data; it will be fully resynced.
    pub fn invalidate(&self) -> Result<String, Refused> {
        let mut st = self.lock();
        if st.primary {
            return Err(Refused("cannot invalidate a Primary".into()));
        }
        st.meta.gi = crate::gi::Gi::new();
        st.meta.disk = DiskState::Inconsistent;
        st.meta.bitmap.set_all();
        self.persist(&mut st);
        st.renegotiate = true;
        self.close_connection(&mut st);
        Ok("local data invalidated: a full resync from the peer follows".into())
    }

    /// `verify`: compares every block's checksum with the peer's; marks differing
    /// blocks out of sync (resynced at the next connect). Returns the KiB found.
    pub fn verify(&self) -> Result<u64, Refused> {
        let (rx, gen) = {
            let mut st = self.lock();
            if st.cstate != CState::Connected {
                return Err(Refused(format!(
                    "verify needs a Connected resource (now {:?})",
                    st.cstate
                )));
            }
            let (tx, rx) = mpsc::channel();
            st.verify_tx = Some(tx);
            (rx, st.conn_gen)
        };
        let mut bad = 0u64;
        let mut off = 0;
        let size = self.size();
        while off < size {
            let len = (RUN_BLOCKS * BLOCK).min(size - off);
            {
                let mut st = self.lock();
                if st.conn_gen != gen {
                    return Err(Refused("connection lost during verify".into()));
                }
                self.send(
                    &mut st,
                    &Frame::VerifyReq {
                        offset: off,
                        len: len as u32,
                    },
                );
            }
            let (roff, theirs) = rx
                .recv_timeout(self.cfg.timeout * 2)
                .map_err(|_| Refused("peer did not answer a verify request".into()))?;
            let mine = {
                let _range = self.ranges.lock(off, len);
                self.block_crcs(off, len)
                    .map_err(|e| Refused(format!("local read failed: {e}")))?
            };
            if roff != off || theirs.len() != mine.len() {
                return Err(Refused("peer answered a different verify request".into()));
            }
            let mut st = self.lock();
            for (i, (a, b)) in mine.iter().zip(&theirs).enumerate() {
                if a != b {
                    bad += 1;
                    st.meta.bitmap.set_range(off + i as u64 * BLOCK, BLOCK);
                }
            }
            off += len;
        }
        let mut st = self.lock();
        st.verify_tx = None;
        if bad > 0 {
            self.persist(&mut st);
        }
        info!("verify finished: {} KiB out of sync", bad * 4);
        Ok(bad * 4)
    }

    /// Marks the node as stopping (no fencing on the way down).
    pub fn stop(&self) {
        let mut st = self.lock();
        st.stopping = true;
        st.want_connect = false;
        self.close_connection(&mut st);
        if !st.primary {
            st.meta.was_primary = false;
        }
        self.persist(&mut st);
    }

    /// The status view.
    pub fn status(&self) -> Status {
        let st = self.lock();
        let cstate = format!("{:?}", st.cstate);
        let resync = st.resync.as_ref().map(|rs| {
            let secs = rs.started.elapsed().as_secs_f64().max(0.001);
            (
                rs.total_blocks * 4,
                (rs.done_blocks as f64 * 4.0 / secs) as u64,
            )
        });
        Status {
            name: self.cfg.name.clone(),
            cstate,
            primary: st.primary,
            peer_primary: st.peer.map(|p| p.0),
            disk: st.meta.disk,
            peer_disk: st.peer.map(|p| p.1).or(if st.meta.peer_outdated {
                Some(DiskState::Outdated)
            } else {
                None
            }),
            protocol: match self.cfg.protocol {
                Protocol::A => 'A',
                Protocol::C => 'C',
            },
            sent_kib: st.counters.sent / 1024,
            received_kib: st.counters.received / 1024,
            written_kib: st.counters.written / 1024,
            read_kib: st.counters.read / 1024,
            out_of_sync_kib: st.meta.bitmap.count() * 4,
            resync,
            device: st.device.clone(),
            note: st.note.clone(),
        }
    }
}
